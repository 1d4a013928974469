/* Memory limits for the out-of-memory tests: what this process uses now,
 * and a soft limit set relative to it. */
#ifndef WCPT_RLIMIT_H
#define WCPT_RLIMIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* VmSize or VmData of this process, in KiB. */
static long vm_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') v = atol(line + n + 1);
  if (f) fclose(f);
  return v;
}

/* The /proc/self/status field that `resource` limits. */
static const char *field_of(int resource) { return resource == RLIMIT_AS ? "VmSize" : "VmData"; }

/* The soft limit of `resource` at `kib`, or back to the hard limit for
 * kib < 0. */
static void limit(int resource, long kib) {
  struct rlimit r;
  getrlimit(resource, &r);
  r.rlim_cur = kib < 0 ? r.rlim_max : (rlim_t)kib * 1024;
  setrlimit(resource, &r);
}

/* The soft limit at what `resource` counts now, plus `delta` KiB. */
static void limit_above_use(int resource, long delta) { limit(resource, vm_kib(field_of(resource)) + delta); }

#endif
