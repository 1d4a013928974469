/* The bad-input catalogue (docs/BAD_INPUT.md): one test per row. Every test
 * also checks that the refusal changed nothing. */
#include "check.h"
#include "wcpt.h"

#include <stdint.h>
#include <string.h>

#define EP ((uintptr_t)0x4444000010ull)

static wcpt_handle witness;   /* a live handle that must never change */
static struct wcpt_stats baseline;

static void snapshot(void) { wcpt_stats(&baseline); }

static void unchanged(void) {
  struct wcpt_stats now;
  CHECK_EQ(wcpt_stats(&now), WCPT_OK);
  CHECK_EQ(now.live, baseline.live);
  CHECK_EQ(now.native, baseline.native);
  CHECK_EQ(now.free, baseline.free);
  CHECK_EQ(wcpt_get_checked(witness, 7), EP);
}

static void refused_everywhere(wcpt_handle h, wcpt_status free_status) {
  snapshot();
  CHECK_EQ(wcpt_get(h), 0);
  CHECK_EQ(wcpt_get_checked(h, 7), 0);
  CHECK_EQ(wcpt_free(h), free_status);
  CHECK_EQ(wcpt_set(h, EP + 16), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_set_many(&h, &(uintptr_t){EP}, 1), WCPT_ERR_INVALID_HANDLE);
  unchanged();
}

static void row_null_handle(void) { refused_everywhere(0, WCPT_ERR_INVALID_HANDLE); }
static void row_invalid_handle(void) { refused_everywhere(WCPT_INVALID_HANDLE, WCPT_ERR_INVALID_HANDLE); }
static void row_last_index_any_generation(void) {
  for (unsigned g = 0; g < 256; g += 51) refused_everywhere((g << 24) | WCPT_INDEX_MASK, WCPT_ERR_INVALID_HANDLE);
}
static void row_never_allocated_index(void) {
  refused_everywhere(0x00ABCDEF, WCPT_ERR_INVALID_HANDLE);
  refused_everywhere((witness & WCPT_INDEX_MASK) + 17, WCPT_ERR_INVALID_HANDLE);
}
static void row_live_index_generation_never_issued(void) {
  refused_everywhere(witness + (5u << 24), WCPT_ERR_INVALID_HANDLE);
}

static void row_stale_handle(void) {
  wcpt_handle h = wcpt_alloc(EP + 32, 7);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  refused_everywhere(h, WCPT_ERR_DOUBLE_FREE);
}

static void row_stale_handle_slot_reused(void) {
  wcpt_handle h = wcpt_alloc(EP + 32, 7);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  wcpt_handle occupant = wcpt_alloc(EP + 48, 7);
  CHECK_EQ(occupant & WCPT_INDEX_MASK, h & WCPT_INDEX_MASK);
  refused_everywhere(h, WCPT_ERR_DOUBLE_FREE);
  CHECK_EQ(wcpt_get_checked(occupant, 7), EP + 48); /* the occupant is untouched */
  CHECK_EQ(wcpt_free(occupant), WCPT_OK);
}

static void row_stale_handle_segment_swept(void) {
  enum { N = 2 * WCPT_ENTRIES_PER_SEGMENT };
  static wcpt_handle hs[N];
  for (int i = 0; i < N; i++) hs[i] = wcpt_alloc(EP, 1);
  for (int i = 0; i < N; i++) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
  CHECK(wcpt_sweep(0) >= 1);
  for (int i = 0; i < N; i += 97) refused_everywhere(hs[i], WCPT_ERR_DOUBLE_FREE);
  /* Reallocating the released segments does not revive them either. */
  for (int i = 0; i < N; i++) hs[i] = wcpt_alloc(EP, 1);
  CHECK_EQ(wcpt_get(hs[0]), EP);
  for (int i = 0; i < N; i++) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
}

static void row_double_free(void) {
  wcpt_handle h = wcpt_alloc(EP, 7);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  snapshot();
  for (int i = 0; i < 3; i++) CHECK_EQ(wcpt_free(h), WCPT_ERR_DOUBLE_FREE);
  unchanged();
}

static void row_native_handle_free_or_set(void) {
  wcpt_handle n = wcpt_native_handle(0x7a0000000000ull);
  snapshot();
  CHECK_EQ(wcpt_free(n), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_set(n, EP), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_set_many(&n, &(uintptr_t){EP}, 1), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_get(n), 0x7a0000000000ull);
  unchanged();
}

static void row_non_canonical_entrypoint(void) {
  uintptr_t bad[] = {(uintptr_t)1 << 47, (uintptr_t)1 << 63, UINTPTR_MAX, (uintptr_t)0xFFFE000000000000ull};
  snapshot();
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ(wcpt_alloc(bad[i], 7), WCPT_INVALID_HANDLE);
    CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
    CHECK_EQ(wcpt_set(witness, bad[i]), WCPT_ERR_INVALID_ARGUMENT);
    CHECK_EQ(wcpt_set_many(&witness, &bad[i], 1), WCPT_ERR_INVALID_ARGUMENT);
  }
  unchanged();
}

static void row_bad_native_address(void) {
  snapshot();
  CHECK_EQ(wcpt_native_handle(0), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_native_handle((uintptr_t)1 << 47), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  unchanged();
}

static void row_random_u32_handles(void) {
  unsigned long long s = 0xDEADBEEFCAFEull;
  snapshot();
  for (int i = 0; i < check_scale(200000); i++) {
    wcpt_handle h = (wcpt_handle)check_rand(&s);
    if ((h & WCPT_INDEX_MASK) == (witness & WCPT_INDEX_MASK)) continue;
    /* Only natives from earlier rows could be named; never by accident. */
    CHECK_EQ(wcpt_get(h), 0);
    wcpt_status st = wcpt_set(h, EP);
    CHECK(st == WCPT_ERR_INVALID_HANDLE);
  }
  unchanged();
}

static void row_sweep_threshold_zero_and_max(void) {
  enum { N = 2 * WCPT_ENTRIES_PER_SEGMENT };
  static wcpt_handle hs[N];
  for (int i = 0; i < N; i++) hs[i] = wcpt_alloc(EP, 1);
  for (int i = 0; i < N; i++) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
  snapshot();
  CHECK_EQ(wcpt_sweep(SIZE_MAX), 0); /* never met: nothing is released */
  unchanged();
  CHECK(wcpt_sweep(0) >= 1); /* 0 counts as one segment's worth */
  CHECK_EQ(wcpt_get_checked(witness, 7), EP);
}

static void row_null_out_pointers(void) {
  snapshot();
  CHECK_EQ(wcpt_stats(NULL), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_set_many(NULL, NULL, 3), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_set_many(&witness, NULL, 1), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_set_many(NULL, &(uintptr_t){EP}, 1), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_set_many(NULL, NULL, 0), WCPT_OK);
  unchanged();
}

static void row_set_many_with_one_bad_element(void) {
  wcpt_handle a = wcpt_alloc(EP, 7), dead = wcpt_alloc(EP, 7);
  CHECK_EQ(wcpt_free(dead), WCPT_OK);
  wcpt_handle hs[3] = {a, witness, dead};
  uintptr_t eps[3] = {EP + 1, EP + 2, EP + 3};
  snapshot();
  CHECK_EQ(wcpt_set_many(hs, eps, 3), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(a), EP);
  unchanged();
  CHECK_EQ(wcpt_free(a), WCPT_OK);
}

static void row_entrypoint_outside_code_regions(void) {
  static unsigned char code[256];
  CHECK_EQ(wcpt_code_region_add((uintptr_t)code, sizeof code), WCPT_OK);
  snapshot();
  CHECK_EQ(wcpt_alloc(EP, 7), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_NOT_CODE);
  CHECK_EQ(wcpt_set(witness, EP + 16), WCPT_ERR_NOT_CODE);
  unchanged();
  CHECK_EQ(wcpt_code_region_remove((uintptr_t)code, sizeof code), WCPT_OK);
}

static void row_bad_code_regions(void) {
  static unsigned char code[256];
  uintptr_t c = (uintptr_t)code;
  CHECK_EQ(wcpt_code_region_add(c, 0), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_add((uintptr_t)1 << 47, 16), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_add(UINTPTR_MAX - 8, 64), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_remove(c, 16), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_add(c, 64), WCPT_OK);
  CHECK_EQ(wcpt_code_region_add(c + 32, 64), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_remove(c, 64), WCPT_OK);
  /* More than WCPT_MAX_CODE_REGIONS. */
  int added = 0;
  for (uintptr_t i = 0; i < WCPT_MAX_CODE_REGIONS; i++) added += wcpt_code_region_add(0x100000 + i * 32, 16) == WCPT_OK;
  CHECK_EQ(added, WCPT_MAX_CODE_REGIONS);
  CHECK_EQ(wcpt_code_region_add(0x900000, 16), WCPT_ERR_CAPACITY);
  for (uintptr_t i = 0; i < WCPT_MAX_CODE_REGIONS; i++) CHECK_EQ(wcpt_code_region_remove(0x100000 + i * 32, 16), WCPT_OK);
  CHECK(wcpt_alloc(EP, 7) != WCPT_INVALID_HANDLE); /* no region left: no check */
}

static void row_unknown_status(void) {
  CHECK(strcmp(wcpt_status_str((wcpt_status)0xFFFFFFFFu), "unknown status") == 0);
  CHECK(strcmp(wcpt_status_str((wcpt_status)11), "unknown status") == 0);
}

static void row_calls_after_teardown(void) {
  wcpt_teardown();
  /* A fresh table: the old witness is not live in it. */
  CHECK_EQ(wcpt_get(witness), 0);
  CHECK_EQ(wcpt_free(witness), WCPT_ERR_INVALID_HANDLE);
  struct wcpt_stats s;
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  CHECK_EQ(s.live + s.native, 0);
  witness = wcpt_alloc(EP, 7);
  CHECK_EQ(wcpt_get_checked(witness, 7), EP);
}

static void row_calls_before_init(void) {
  /* Runs first: nothing has initialised the table yet. */
  CHECK_EQ(wcpt_get(0x01000001), 0);
  CHECK_EQ(wcpt_free(0x01000001), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_sweep(0), 0);
  CHECK(wcpt_table_base() != NULL);
}

int main(void) {
  RUN(row_calls_before_init);
  witness = wcpt_alloc(EP, 7);
  RUN(row_null_handle);
  RUN(row_invalid_handle);
  RUN(row_last_index_any_generation);
  RUN(row_never_allocated_index);
  RUN(row_live_index_generation_never_issued);
  RUN(row_stale_handle);
  RUN(row_stale_handle_slot_reused);
  RUN(row_stale_handle_segment_swept);
  RUN(row_double_free);
  RUN(row_native_handle_free_or_set);
  RUN(row_non_canonical_entrypoint);
  RUN(row_bad_native_address);
  RUN(row_random_u32_handles);
  RUN(row_sweep_threshold_zero_and_max);
  RUN(row_null_out_pointers);
  RUN(row_set_many_with_one_bad_element);
  RUN(row_entrypoint_outside_code_regions);
  RUN(row_bad_code_regions);
  RUN(row_unknown_status);
  RUN(row_calls_after_teardown);
  return check_finish("test_bad_input");
}
