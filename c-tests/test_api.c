/* Every function of the C API and every status, single-threaded. */
#include "check.h"
#include "wcpt.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EP ((uintptr_t)0x555500001000ull)

void test_api_dummy_native(void);
void test_api_dummy_native(void) {}
void test_api_typed_native(void);
void test_api_typed_native(void) {}
#define NON_CANONICAL ((uintptr_t)1 << 47)

static void test_init_is_idempotent(void) {
  CHECK_EQ(wcpt_init(), WCPT_OK);
  CHECK_EQ(wcpt_init(), WCPT_OK);
}

static void test_alloc_get_set_free(void) {
  wcpt_handle h = wcpt_alloc(EP, 42);
  CHECK(h != WCPT_INVALID_HANDLE && h != 0);
  CHECK_EQ(wcpt_get(h), EP);
  CHECK_EQ(wcpt_get_checked(h, 42), EP);
  CHECK_EQ(wcpt_get_checked(h, 43), 0);
  CHECK_EQ(wcpt_set(h, EP + 0x100), WCPT_OK);
  CHECK_EQ(wcpt_get_checked(h, 42), EP + 0x100); /* signature kept */
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_EQ(wcpt_get(h), 0);
  CHECK_EQ(wcpt_get_checked(h, 42), 0);
}

/* The C definition of struct wcpt_stats (written in cbindgen.toml) has the
 * layout of the Rust one (asserted in src/ffi.rs): six size_t. */
_Static_assert(sizeof(struct wcpt_stats) == 6 * sizeof(size_t), "struct wcpt_stats layout");
_Static_assert(offsetof(struct wcpt_stats, native) == 5 * sizeof(size_t), "struct wcpt_stats layout");
_Static_assert(sizeof(wcpt_stats_t) == sizeof(struct wcpt_stats), "the 0.1 name still works");

static void test_jit_style_read_through_base(void) {
  wcpt_handle h = wcpt_alloc(EP, 0xFEEDull);
  const unsigned char *base = (const unsigned char *)wcpt_table_base();
  CHECK(base != NULL);
  const unsigned char *entry = base + (size_t)(h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE;
  uint64_t ep, check;
  memcpy(&ep, entry + WCPT_ENTRYPOINT_OFFSET, 8);
  memcpy(&check, entry + WCPT_CHECK_OFFSET, 8);
  CHECK_EQ(ep, EP);
  CHECK_EQ(check, ((uint64_t)(h >> WCPT_INDEX_BITS) << WCPT_SIGNATURE_BITS) | 0xFEEDull);
  CHECK_EQ(check, wcpt_check_word(h, 0xFEED));
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  memcpy(&ep, entry + WCPT_ENTRYPOINT_OFFSET, 8);
  memcpy(&check, entry + WCPT_CHECK_OFFSET, 8);
  CHECK(ep >> 47 != 0); /* a free entry is not callable */
  CHECK(check >> WCPT_SIGNATURE_BITS != h >> WCPT_INDEX_BITS); /* nor does it answer h */
  /* Masking the invalid handle never reaches a live entry. */
  memcpy(&ep, base + (size_t)(WCPT_INVALID_HANDLE & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE, 8);
  CHECK_EQ(ep, 0);
  CHECK_EQ(sizeof(wcpt_handle), 4);
  CHECK_EQ(WCPT_INDEX_BITS, 24);
  CHECK_EQ(WCPT_INDEX_MASK, 0x00FFFFFFu);
  CHECK_EQ(WCPT_INVALID_HANDLE, 0xFFFFFFFFu);
  CHECK_EQ(WCPT_ENTRY_SIZE, 16);
  CHECK_EQ(WCPT_ENTRYPOINT_OFFSET, 0);
  CHECK_EQ(WCPT_CHECK_OFFSET, 8);
  CHECK_EQ(WCPT_SIGNATURE_OFFSET, 8);
  CHECK_EQ(WCPT_SIGNATURE_BITS, 56);
  CHECK_EQ(WCPT_NATIVE_SIGNATURE, 0x00FFFFFFFFFFFFFFull);
  CHECK_EQ(WCPT_ENTRIES_PER_SEGMENT, 4096);
}

static void test_invalid_handles(void) {
  wcpt_handle live = wcpt_alloc(EP, 1);
  /* The last one names live's entry with the next generation, which has not
   * been issued yet. (An earlier generation of a reused entry was issued and
   * has ended: freeing it is a double free.) */
  wcpt_handle bad[] = {0, WCPT_INVALID_HANDLE, WCPT_INDEX_MASK, 0x00ABCDEF,
                       (live & WCPT_INDEX_MASK) + 1000, live + (1u << WCPT_INDEX_BITS)};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ(wcpt_get(bad[i]), 0);
    CHECK_EQ(wcpt_get_checked(bad[i], 1), 0);
    CHECK_EQ(wcpt_free(bad[i]), WCPT_ERR_INVALID_HANDLE);
    CHECK_EQ(wcpt_set(bad[i], EP), WCPT_ERR_INVALID_HANDLE);
  }
  CHECK_EQ(wcpt_get(live), EP); /* refusals changed nothing */
  CHECK_EQ(wcpt_free(live), WCPT_OK);
}

static void test_double_free_and_stale_handles(void) {
  wcpt_handle h = wcpt_alloc(EP, 1);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_EQ(wcpt_free(h), WCPT_ERR_DOUBLE_FREE);
  wcpt_handle reuse = wcpt_alloc(EP + 16, 1);
  CHECK_EQ(reuse & WCPT_INDEX_MASK, h & WCPT_INDEX_MASK); /* slot reused */
  CHECK(reuse != h);
  CHECK_EQ(wcpt_get(h), 0);                      /* stale: never answers */
  CHECK_EQ(wcpt_free(h), WCPT_ERR_DOUBLE_FREE);  /* even after reuse */
  CHECK_EQ(wcpt_set(h, EP), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(reuse), EP + 16);
  CHECK_EQ(wcpt_free(reuse), WCPT_OK);
}

static void test_native_handles(void) {
  wcpt_handle a = wcpt_native_handle((uintptr_t)&test_native_handles);
  wcpt_handle b = wcpt_native_handle((uintptr_t)&test_api_dummy_native);
  CHECK(a != WCPT_INVALID_HANDLE && b != WCPT_INVALID_HANDLE && a != b);
  CHECK_EQ(wcpt_native_handle((uintptr_t)&test_native_handles), a);
  CHECK_EQ(wcpt_get(a), (uintptr_t)&test_native_handles);
  CHECK_EQ(wcpt_get_checked(a, WCPT_NATIVE_SIGNATURE), (uintptr_t)&test_native_handles);
  CHECK_EQ(wcpt_free(a), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_set(a, EP), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_get(a), (uintptr_t)&test_native_handles);
  CHECK_EQ(wcpt_native_handle(0), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_native_handle(NON_CANONICAL), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
}

/* Typed native handles: one per (address, signature) pair; calls through
 * them are type-checked by the header's sequence like allocated handles. */
static void test_typed_native_handles(void) {
  uintptr_t f = (uintptr_t)&test_api_typed_native;
  const void *base = wcpt_table_base();
  struct wcpt_stats before, after;
  CHECK_EQ(wcpt_stats(&before), WCPT_OK);
  wcpt_handle a = wcpt_native_handle_typed(f, 7);
  wcpt_handle b = wcpt_native_handle_typed(f, 8);
  CHECK(a != WCPT_INVALID_HANDLE && b != WCPT_INVALID_HANDLE && a != b);
  CHECK_EQ(wcpt_native_handle_typed(f, 7), a);
  CHECK_EQ(wcpt_native_handle_typed(f, 8), b);
  CHECK_EQ(wcpt_native_handle_typed(f, WCPT_NATIVE_SIGNATURE), wcpt_native_handle(f));
  CHECK(wcpt_native_handle(f) != a && wcpt_native_handle(f) != b);
  CHECK_EQ(wcpt_call_target(base, a, 7), f);
  CHECK_EQ(wcpt_call_target(base, a, 8), 0);
  CHECK_EQ(wcpt_call_target(base, b, 8), f);
  CHECK_EQ(wcpt_call_target(base, b, 7), 0);
  CHECK_EQ(wcpt_get_checked(a, 7), f);
  CHECK_EQ(wcpt_get_checked(a, WCPT_NATIVE_SIGNATURE), 0);
  CHECK_EQ(wcpt_free(a), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_set(b, EP), WCPT_ERR_NATIVE_HANDLE);
  CHECK_EQ(wcpt_call_target(base, a, 7), f);
  CHECK_EQ(wcpt_native_handle_typed(f, (uint64_t)1 << WCPT_SIGNATURE_BITS), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_native_handle_typed(0, 7), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_native_handle_typed(NON_CANONICAL, 7), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_stats(&after), WCPT_OK);
  CHECK_EQ(after.native, before.native + 3); /* a, b and wcpt_native_handle(f) */
  CHECK_EQ(after.live, before.live);
}

/* wcpt_alloc_many and wcpt_free_many: all or nothing, arguments first. */
static void test_batch_calls(void) {
  enum { N = 5000 };
  static uintptr_t eps[N];
  static uint64_t sigs[N];
  static wcpt_handle hs[N], out[N];
  struct wcpt_stats before, after;
  for (int i = 0; i < N; i++) eps[i] = EP + 16 * (uintptr_t)i, sigs[i] = (uint64_t)i % 11;
  CHECK_EQ(wcpt_stats(&before), WCPT_OK);
  CHECK_EQ(wcpt_alloc_many(eps, sigs, N, hs), WCPT_OK);
  int wrong = 0;
  for (int i = 0; i < N; i++) wrong += wcpt_call_target(wcpt_table_base(), hs[i], sigs[i]) != eps[i];
  CHECK_EQ(wrong, 0);
  CHECK_EQ(wcpt_stats(&after), WCPT_OK);
  CHECK_EQ(after.live, before.live + N);
  /* Bad arguments anywhere: nothing allocated, out untouched. */
  for (int i = 0; i < 3; i++) out[i] = 0x1234;
  uintptr_t bad_eps[3] = {EP, NON_CANONICAL, EP};
  uint64_t bad_sigs[3] = {1, (uint64_t)1 << WCPT_SIGNATURE_BITS, 2};
  CHECK_EQ(wcpt_alloc_many(bad_eps, sigs, 3, out), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_alloc_many(eps, bad_sigs, 3, out), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_alloc_many(NULL, sigs, 3, out), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_alloc_many(eps, sigs, 3, NULL), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_alloc_many(NULL, NULL, 0, NULL), WCPT_OK);
  CHECK_EQ(wcpt_alloc_many(eps, sigs, 0, out), WCPT_OK); /* n = 0: nothing, out untouched */
  CHECK(out[0] == 0x1234 && out[1] == 0x1234 && out[2] == 0x1234);
  /* Bad arguments in several places: the first in array order decides. */
  uintptr_t two_bad[3] = {EP, 0x2000, NON_CANONICAL};
  uint64_t later_bad_sig[3] = {1, 2, (uint64_t)1 << WCPT_SIGNATURE_BITS};
  CHECK_EQ(wcpt_code_region_add(EP, 0x1000), WCPT_OK);
  CHECK_EQ(wcpt_alloc_many(two_bad, later_bad_sig, 3, out), WCPT_ERR_NOT_CODE);
  CHECK_EQ(wcpt_code_region_remove(EP, 0x1000), WCPT_OK);
  CHECK(out[0] == 0x1234 && out[1] == 0x1234 && out[2] == 0x1234);
  CHECK_EQ(wcpt_stats(&before), WCPT_OK);
  CHECK_EQ(before.live, after.live);
  /* free_many: a repeated, stale or native handle frees none. */
  wcpt_handle stale = wcpt_alloc(EP, 1);
  CHECK_EQ(wcpt_free(stale), WCPT_OK);
  wcpt_handle bad[3] = {hs[10], stale, wcpt_native_handle(EP)};
  wcpt_status why[3] = {WCPT_ERR_DOUBLE_FREE, WCPT_ERR_DOUBLE_FREE, WCPT_ERR_NATIVE_HANDLE};
  for (int b = 0; b < 3; b++) {
    wcpt_handle saved = hs[N / 2];
    hs[N / 2] = bad[b];
    wcpt_status st = wcpt_free_many(hs, N);
    hs[N / 2] = saved;
    CHECK_EQ(st, why[b]);
    CHECK_EQ(wcpt_stats(&before), WCPT_OK);
    CHECK_EQ(before.live, after.live); /* nothing freed */
  }
  /* Several different bad handles: the first in array order that wcpt_free
   * would refuse on its own gives the status; a repeat only when none is. */
  {
    wcpt_handle native = wcpt_native_handle(EP);
    wcpt_handle mixed[4][4] = {{hs[1], 0, stale, native},
                               {hs[1], stale, native, 0},
                               {hs[1], native, 0, stale},
                               {hs[1], hs[1], native, hs[2]}};
    wcpt_status first[4] = {WCPT_ERR_INVALID_HANDLE, WCPT_ERR_DOUBLE_FREE, WCPT_ERR_NATIVE_HANDLE,
                            WCPT_ERR_NATIVE_HANDLE};
    for (int b = 0; b < 4; b++) CHECK_EQ(wcpt_free_many(mixed[b], 4), first[b]);
    wcpt_handle repeat[3] = {hs[1], hs[2], hs[1]};
    CHECK_EQ(wcpt_free_many(repeat, 3), WCPT_ERR_DOUBLE_FREE);
    CHECK_EQ(wcpt_stats(&before), WCPT_OK);
    CHECK_EQ(before.live, after.live); /* nothing freed */
    CHECK(wcpt_get(hs[1]) == eps[1] && wcpt_get(hs[2]) == eps[2]);
  }
  /* n = 0 with real arrays: OK, nothing freed. */
  CHECK_EQ(wcpt_free_many(hs, 0), WCPT_OK);
  CHECK(wcpt_get(hs[0]) == eps[0]);
  CHECK_EQ(wcpt_free_many(NULL, 1), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_free_many(NULL, 0), WCPT_OK);
  CHECK_EQ(wcpt_free_many(hs, N), WCPT_OK);
  CHECK_EQ(wcpt_get(hs[0]), 0);
  CHECK_EQ(wcpt_free_many(hs, 1), WCPT_ERR_DOUBLE_FREE);
  CHECK_EQ(wcpt_stats(&before), WCPT_OK);
  CHECK_EQ(before.live, after.live - N);
  /* Entrypoint 0 is accepted by the batch as by wcpt_alloc: an entry
   * reserved before its code exists answers 0 until it is set. */
  uintptr_t reserved[3] = {0, EP, 0};
  uint64_t rsigs[3] = {4, 5, 6};
  wcpt_handle r[3];
  CHECK_EQ(wcpt_alloc_many(reserved, rsigs, 3, r), WCPT_OK);
  CHECK(r[0] != WCPT_INVALID_HANDLE && r[2] != WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(r[0]), 0);
  CHECK_EQ(wcpt_call_target(wcpt_table_base(), r[0], 4), 0);
  CHECK_EQ(wcpt_get(r[1]), EP);
  CHECK_EQ(wcpt_set(r[0], EP + 32), WCPT_OK);
  CHECK_EQ(wcpt_call_target(wcpt_table_base(), r[0], 4), EP + 32);
  wcpt_handle single = wcpt_alloc(0, 4);
  CHECK(single != WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(single), 0);
  CHECK_EQ(wcpt_free(single), WCPT_OK);
  CHECK_EQ(wcpt_free_many(r, 3), WCPT_OK);
}

static void test_invalid_arguments(void) {
  uintptr_t bad[] = {NON_CANONICAL, (uintptr_t)1 << 63, UINTPTR_MAX, (uintptr_t)0xFFFE000000000001ull};
  struct wcpt_stats before, after;
  CHECK_EQ(wcpt_stats(&before), WCPT_OK);
  wcpt_handle h = wcpt_alloc(EP, 5);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ(wcpt_alloc(bad[i], 0), WCPT_INVALID_HANDLE);
    CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
    CHECK_EQ(wcpt_set(h, bad[i]), WCPT_ERR_INVALID_ARGUMENT);
  }
  CHECK_EQ(wcpt_get(h), EP);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_EQ(wcpt_stats(&after), WCPT_OK);
  CHECK_EQ(after.live, before.live);
  CHECK_EQ(wcpt_stats(NULL), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_set_many(NULL, NULL, 1), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_set_many(NULL, NULL, 0), WCPT_OK);
}

static void test_entrypoint_zero_is_a_placeholder(void) {
  wcpt_handle h = wcpt_alloc(0, 9);
  CHECK(h != WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(h), 0);
  CHECK_EQ(wcpt_set(h, EP), WCPT_OK);
  CHECK_EQ(wcpt_get_checked(h, 9), EP);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static void test_set_many(void) {
  wcpt_handle hs[3];
  uintptr_t eps[3] = {EP + 0x10, EP + 0x20, EP + 0x30};
  for (int i = 0; i < 3; i++) hs[i] = wcpt_alloc(EP, 7);
  CHECK_EQ(wcpt_set_many(hs, eps, 3), WCPT_OK);
  for (int i = 0; i < 3; i++) CHECK_EQ(wcpt_get_checked(hs[i], 7), eps[i]);
  CHECK_EQ(wcpt_free(hs[1]), WCPT_OK);
  uintptr_t again[3] = {EP, EP, EP};
  CHECK_EQ(wcpt_set_many(hs, again, 3), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(hs[0]), eps[0]); /* checked first: nothing written */
  CHECK_EQ(wcpt_free(hs[0]), WCPT_OK);
  CHECK_EQ(wcpt_free(hs[2]), WCPT_OK);
}

static void test_code_regions(void) {
  static unsigned char code_a[4096], code_b[4096];
  uintptr_t a = (uintptr_t)code_a, b = (uintptr_t)code_b;
  wcpt_handle before = wcpt_alloc(EP, 0);
  CHECK_EQ(wcpt_code_region_add(a, sizeof code_a), WCPT_OK);
  CHECK_EQ(wcpt_code_region_add(b, sizeof code_b), WCPT_OK);
  CHECK_EQ(wcpt_code_region_add(a + 16, 16), WCPT_ERR_INVALID_ARGUMENT); /* overlap */
  CHECK_EQ(wcpt_code_region_add(a, 0), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_add(NON_CANONICAL, 16), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_alloc(EP, 0), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_NOT_CODE);
  CHECK_EQ(wcpt_alloc(a + sizeof code_a, 0) == WCPT_INVALID_HANDLE || a + sizeof code_a == b, 1);
  wcpt_handle h = wcpt_alloc(a + 100, 0);
  CHECK(h != WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_set(h, b + 8), WCPT_OK);
  CHECK_EQ(wcpt_set(h, EP), WCPT_ERR_NOT_CODE);
  CHECK_EQ(wcpt_get(h), b + 8);
  CHECK_EQ(wcpt_set(before, EP), WCPT_ERR_NOT_CODE);
  CHECK(wcpt_alloc(0, 0) != WCPT_INVALID_HANDLE); /* placeholders exempt */
  CHECK(wcpt_native_handle(EP + 0x999000) != WCPT_INVALID_HANDLE); /* natives exempt */
  CHECK_EQ(wcpt_code_region_remove(a, 16), WCPT_ERR_INVALID_ARGUMENT);
  CHECK_EQ(wcpt_code_region_remove(a, sizeof code_a), WCPT_OK);
  CHECK_EQ(wcpt_code_region_remove(b, sizeof code_b), WCPT_OK);
  CHECK_EQ(wcpt_code_region_remove(b, sizeof code_b), WCPT_ERR_INVALID_ARGUMENT);
  CHECK(wcpt_alloc(EP, 0) != WCPT_INVALID_HANDLE); /* no regions: no check */
  CHECK_EQ(wcpt_set(before, EP + 32), WCPT_OK);
}

static void test_sweep_thresholds_and_stats(void) {
  enum { N = 3 * WCPT_ENTRIES_PER_SEGMENT };
  static wcpt_handle hs[N];
  struct wcpt_stats s0, s1, s2;
  CHECK_EQ(wcpt_stats(&s0), WCPT_OK);
  CHECK_EQ(s0.capacity, WCPT_CAPACITY);
  for (int i = 0; i < N; i++) hs[i] = wcpt_alloc(EP + 16 * (uintptr_t)i, 3);
  CHECK_EQ(wcpt_stats(&s1), WCPT_OK);
  CHECK_EQ(s1.live, s0.live + N);
  CHECK(s1.committed_segments >= 3);
  CHECK_EQ(s1.committed_bytes, s1.committed_segments * WCPT_ENTRIES_PER_SEGMENT * WCPT_ENTRY_SIZE);
  for (int i = 0; i < N; i++) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
  CHECK_EQ(wcpt_stats(&s2), WCPT_OK);
  CHECK_EQ(s2.live, s0.live);
  CHECK_EQ(s2.free, s1.free + N);
  CHECK_EQ(wcpt_sweep(SIZE_MAX), 0); /* threshold never met */
  CHECK_EQ(wcpt_sweep(s2.free + 1), 0);
  size_t released = wcpt_sweep(0);
  CHECK(released >= 2);
  struct wcpt_stats s3;
  CHECK_EQ(wcpt_stats(&s3), WCPT_OK);
  CHECK_EQ(s3.committed_segments, s2.committed_segments - released);
  /* Segment 0 holds native handles from earlier tests, so every released
   * segment was a full one. */
  CHECK_EQ(s3.free, s2.free - released * WCPT_ENTRIES_PER_SEGMENT);
  CHECK_EQ(s3.live, s2.live);
  for (int i = 0; i < N; i++) CHECK_EQ(wcpt_get(hs[i]), 0);
  CHECK_EQ(wcpt_sweep(0), 0); /* nothing left to release */
}

static void test_status_strings(void) {
  wcpt_status all[] = {WCPT_OK, WCPT_ERR_INVALID_HANDLE, WCPT_ERR_DOUBLE_FREE,
                       WCPT_ERR_NATIVE_HANDLE, WCPT_ERR_INVALID_ARGUMENT,
                       WCPT_ERR_CAPACITY, WCPT_ERR_OUT_OF_MEMORY, WCPT_ERR_NOT_CODE,
                       WCPT_ERR_PROTECTION, WCPT_ERR_INTERNAL};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    const char *s = wcpt_status_str(all[i]);
    CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown status") != 0);
  }
  CHECK_EQ(WCPT_OK, 0);
  CHECK(strcmp(wcpt_status_str((wcpt_status)12345), "unknown status") == 0);
}

static void test_version_and_protection(void) {
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", WCPT_VERSION_MAJOR, WCPT_VERSION_MINOR, WCPT_VERSION_PATCH);
  CHECK(strcmp(wcpt_version(), expect) == 0);
  wcpt_protection p = wcpt_protection_mode();
  CHECK(p == WCPT_PROTECTION_NONE || p == WCPT_PROTECTION_PKEYS || p == WCPT_PROTECTION_ALIAS);
  CHECK_EQ(wcpt_thread_attach(), WCPT_OK);
  wcpt_signal_enter();
  printf("  protection: %s\n", p == WCPT_PROTECTION_PKEYS ? "pkeys" : p == WCPT_PROTECTION_ALIAS ? "alias" : "none");
}

static void test_random_u32_handles(void) {
  unsigned long long s = 0x9E3779B97F4A7C15ull;
  wcpt_handle live = wcpt_alloc(EP, 77);
  int answered = 0;
  for (int i = 0; i < check_scale(1000000); i++) {
    wcpt_handle h = (wcpt_handle)check_rand(&s);
    if (h == live) continue;
    answered += wcpt_get(h) != 0;
    answered += wcpt_get_checked(h, 77) != 0;
    wcpt_status st = wcpt_free(h);
    /* A random handle can only name a live entry by guessing its handle. */
    CHECK(st == WCPT_ERR_INVALID_HANDLE || st == WCPT_ERR_DOUBLE_FREE || st == WCPT_ERR_NATIVE_HANDLE);
  }
  CHECK_EQ(answered, 0);
  CHECK_EQ(wcpt_get_checked(live, 77), EP);
  CHECK_EQ(wcpt_free(live), WCPT_OK);
}

int main(void) {
  RUN(test_init_is_idempotent);
  RUN(test_random_u32_handles); /* first: no other handle is live yet */
  RUN(test_alloc_get_set_free);
  RUN(test_jit_style_read_through_base);
  RUN(test_invalid_handles);
  RUN(test_double_free_and_stale_handles);
  RUN(test_native_handles);
  RUN(test_typed_native_handles);
  RUN(test_batch_calls);
  RUN(test_invalid_arguments);
  RUN(test_entrypoint_zero_is_a_placeholder);
  RUN(test_set_many);
  RUN(test_code_regions);
  RUN(test_sweep_thresholds_and_stats);
  RUN(test_status_strings);
  RUN(test_version_and_protection);
  return check_finish("test_api");
}
