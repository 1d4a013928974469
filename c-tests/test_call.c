/* The header's inline sequences (wcpt_check_word, wcpt_call_target for
 * generated code, wcpt_lookup for C callers; layout 2): it answers exactly the live handle with its
 * signature, refuses stale handles even when the slot was reused for a
 * function of the same signature, refuses wide signatures, and never faults
 * whatever the handle. */
#include "check.h"
#include "wcpt.h"

#include <stdint.h>

#define EP 0x500000u

static const void *base(void) { return wcpt_table_base(); }

static void test_check_word(void) {
  CHECK_EQ(wcpt_check_word(0xAB123456u, 0x77), 0xAB00000000000077ull);
  CHECK_EQ(wcpt_check_word(0x00000001u, WCPT_NATIVE_SIGNATURE), 0x00FFFFFFFFFFFFFFull);
  wcpt_handle h = wcpt_alloc(EP, 0x1234);
  const uint64_t *entry = (const uint64_t *)((const unsigned char *)base() + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
  CHECK_EQ(entry[1], wcpt_check_word(h, 0x1234));
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static void test_live_handle_and_signature(void) {
  wcpt_handle h = wcpt_alloc(EP, 9);
  CHECK_EQ(wcpt_call_target(base(), h, 9), EP);
  CHECK_EQ(wcpt_call_target(base(), h, 10), 0);
  CHECK_EQ(wcpt_call_target(base(), h + (1u << 24), 9), 0); /* another generation */
  CHECK_EQ(wcpt_set(h, EP + 0x40), WCPT_OK);                 /* tier-up */
  CHECK_EQ(wcpt_call_target(base(), h, 9), EP + 0x40);
  wcpt_handle n = wcpt_native_handle(0x600000);
  CHECK_EQ(wcpt_call_target(base(), n, WCPT_NATIVE_SIGNATURE), 0x600000);
  CHECK_EQ(wcpt_call_target(base(), n, 9), 0);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static void test_stale_handle_with_reused_slot_and_same_signature(void) {
  wcpt_handle old = wcpt_alloc(EP, 5);
  CHECK_EQ(wcpt_free(old), WCPT_OK);
  CHECK_EQ(wcpt_call_target(base(), old, 5), 0);
  wcpt_handle new_ = wcpt_alloc(EP + 0x80, 5);
  CHECK_EQ(new_ & WCPT_INDEX_MASK, old & WCPT_INDEX_MASK); /* the slot was reused */
  CHECK_EQ(wcpt_call_target(base(), old, 5), 0);           /* refused by the sequence itself */
  CHECK_EQ(wcpt_call_target(base(), new_, 5), EP + 0x80);
  for (uint32_t g = 0; g < 256; g++) {
    wcpt_handle h = (g << 24) | (new_ & WCPT_INDEX_MASK);
    CHECK_EQ(wcpt_call_target(base(), h, 5) != 0, h == new_);
  }
  CHECK_EQ(wcpt_free(new_), WCPT_OK);
}

static void test_free_entries_answer_no_issued_handle(void) {
  /* Many frees of one slot (LIFO reuse): every old handle stays refused, for
   * any of the signatures it could have had, until the generation wraps. */
  enum { ROUNDS = 200 };
  wcpt_handle hs[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    hs[i] = wcpt_alloc(EP + 16 * (uintptr_t)i, (uint64_t)i);
    CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
  }
  for (int i = 0; i < ROUNDS; i++)
    for (uint64_t sig = 0; sig < ROUNDS; sig += 7) CHECK_EQ(wcpt_call_target(base(), hs[i], sig), 0);
}

static void test_wide_signatures(void) {
  CHECK_EQ(wcpt_alloc(EP, (uint64_t)1 << 56), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_INVALID_ARGUMENT);
  wcpt_handle h = wcpt_alloc(EP, 3);
  uint64_t wide = 3 | ((uint64_t)(h >> 24) << 56); /* would collide with the generation bits */
  CHECK_EQ(wcpt_call_target(base(), h, wide), 0);
  CHECK_EQ(wcpt_get_checked(h, wide), 0);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static void test_never_faults(void) {
  unsigned long long s = 0x9E3779B97F4A7C15ull;
  uintptr_t seen = 0;
  for (int i = 0; i < check_scale(1000000); i++) {
    wcpt_handle h = (wcpt_handle)check_rand(&s);
    seen |= wcpt_call_target(base(), h, check_rand(&s) & 0xFF);
  }
  CHECK_EQ(seen, 0); /* nothing live with those signatures */
}

/* wcpt_lookup (inline in the header) answers exactly what wcpt_get does,
 * for live, tiered-up, freed, stale (slot reused), native, null, invalid
 * and arbitrary handles. */
static void test_inline_lookup_agrees_with_wcpt_get(void) {
  wcpt_handle live = wcpt_alloc(EP, 3), gone = wcpt_alloc(EP + 16, 3);
  CHECK_EQ(wcpt_free(gone), WCPT_OK);
  wcpt_handle reused = wcpt_alloc(EP + 32, 3); /* may take gone's slot */
  wcpt_handle native = wcpt_native_handle(0x610000);
  CHECK_EQ(wcpt_set(live, EP + 48), WCPT_OK);
  CHECK_EQ(wcpt_lookup(base(), live), EP + 48);
  CHECK_EQ(wcpt_lookup(base(), gone), 0);
  CHECK_EQ(wcpt_lookup(base(), native), 0x610000);
  const wcpt_handle fixed[] = {live, gone, reused, native, WCPT_NULL_HANDLE, WCPT_INVALID_HANDLE,
                               live ^ 0x01000000u, reused + (1u << 24), 0x00FFFFFEu};
  int differ = 0;
  for (unsigned i = 0; i < sizeof fixed / sizeof fixed[0]; i++) differ += wcpt_lookup(base(), fixed[i]) != wcpt_get(fixed[i]);
  unsigned long long seed = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < check_scale(200000); i++) {
    wcpt_handle h = (wcpt_handle)check_rand(&seed);
    if (i % 4 == 0) h = (h & 0xFF000000u) | (live & WCPT_INDEX_MASK); /* live's entry, any generation */
    differ += wcpt_lookup(base(), h) != wcpt_get(h);
  }
  CHECK_EQ(differ, 0);
  CHECK_EQ(wcpt_free(live), WCPT_OK);
  CHECK_EQ(wcpt_free(reused), WCPT_OK);
}

int main(void) {
  RUN(test_check_word);
  RUN(test_live_handle_and_signature);
  RUN(test_stale_handle_with_reused_slot_and_same_signature);
  RUN(test_free_entries_answer_no_issued_handle);
  RUN(test_wide_signatures);
  RUN(test_never_faults);
  RUN(test_inline_lookup_agrees_with_wcpt_get);
  return check_finish("test_call");
}
