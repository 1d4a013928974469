/* Every constant in wcpt.h has the type of what it is compared with, so
 * printing each with its natural format is warning-free (C11 and C++17). */
#include <inttypes.h>
#include <stdio.h>
#include <wcpt.h>

int main(void) {
  wcpt_handle h = WCPT_INVALID_HANDLE;
  printf("%u %u %u %u %u\n", WCPT_INVALID_HANDLE, WCPT_NULL_HANDLE, WCPT_INDEX_MASK, WCPT_INDEX_BITS,
         WCPT_SIGNATURE_BITS);
  printf("%zu %zu %zu %zu %zu %zu %zu\n", WCPT_ENTRY_SIZE, WCPT_ENTRYPOINT_OFFSET, WCPT_CHECK_OFFSET,
         WCPT_SIGNATURE_OFFSET, WCPT_ENTRIES_PER_SEGMENT, WCPT_CAPACITY, WCPT_MAX_CODE_REGIONS);
  printf("%" PRIu64 "\n", WCPT_NATIVE_SIGNATURE);
#if WCPT_VERSION_MAJOR > 0 || WCPT_VERSION_MINOR >= 2
  printf("%d.%d.%d\n", WCPT_VERSION_MAJOR, WCPT_VERSION_MINOR, WCPT_VERSION_PATCH);
#endif
  return h == WCPT_INVALID_HANDLE ? 0 : 1;
}
