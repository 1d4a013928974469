/* wcpt_sweep gives whole free segments back to the OS: the process RSS drops. */
#include "check.h"
#include "wcpt.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void test_sweep_drops_rss(void) {
  if (check_instrumented()) SKIP("RSS is not the table's under valgrind or a sanitizer");
  enum { N = 1000000 };
  wcpt_handle *hs = malloc(N * sizeof *hs);
  CHECK(hs != NULL);
  size_t before = rss_bytes();
  for (int i = 0; i < N; i++) hs[i] = wcpt_alloc(0x10000 + 16 * (uintptr_t)i, 1);
  size_t full = rss_bytes();
  /* Keep one entry in every 16th segment. */
  for (int i = 0; i < N; i++)
    if (i % (16 * WCPT_ENTRIES_PER_SEGMENT) != 7) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
  struct wcpt_stats s;
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  size_t released = wcpt_sweep(0);
  size_t after = rss_bytes();
  printf("  RSS: %zu KiB before, %zu KiB allocated, %zu KiB after sweeping %zu of %zu segments\n",
         before >> 10, full >> 10, after >> 10, released, s.committed_segments);
  CHECK(released > 200);
  CHECK(full - before > 14u << 20);          /* 1M entries: 16 MB of table */
  CHECK(full - after >= released * 60000u);  /* ~64 KiB per released segment */
  for (int i = 0; i < N; i++)
    if (i % (16 * WCPT_ENTRIES_PER_SEGMENT) == 7) CHECK_EQ(wcpt_get_checked(hs[i], 1), 0x10000 + 16 * (uintptr_t)i);
  free(hs);
}

int main(void) {
  RUN(test_sweep_drops_rss);
  return check_finish("test_sweep_rss");
}
