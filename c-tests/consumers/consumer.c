/* An embedder's program, built against an installed wcpt. */
#include <wcpt.h>

#include <stdio.h>
#include <string.h>

static long twice(long x) { return 2 * x; }

int main(void) {
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", WCPT_VERSION_MAJOR, WCPT_VERSION_MINOR, WCPT_VERSION_PATCH);
  if (strcmp(wcpt_version(), expect) != 0) return 1;
  wcpt_handle h = wcpt_alloc((uintptr_t)&twice, 77);
  long (*f)(long) = (long (*)(long))wcpt_get_checked(h, 77);
  if (!f || f(21) != 42) return 2;
  if (wcpt_free(h) != WCPT_OK || wcpt_free(h) != WCPT_ERR_DOUBLE_FREE) return 3;
  printf("consumer: wcpt %s works\n", wcpt_version());
  return 0;
}
