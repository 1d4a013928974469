/* A tour of wcpt: allocate entries for two functions, call through the table
 * the way generated code would, tier one up with wcpt_set, catch a stale
 * handle and a wrong signature, use a native handle, free, sweep and print
 * the table's stats. */
#include "wcpt.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef long (*binop)(long, long);

static long add_slow(long a, long b) { long r = a; for (long i = 0; i < b; i++) r++; return r; }
static long add_fast(long a, long b) { return a + b; }
static long mul(long a, long b) { return a * b; }
static long host_max(long a, long b) { return a > b ? a : b; }

/* The signature hash an engine would compute for "(i64, i64) -> i64". */
#define SIG_BINOP 0xB1B0B1B0ull

/* What generated code does: one load from the table, one compare. */
static long call_through(wcpt_handle h, long a, long b) {
  const unsigned char *entry = (const unsigned char *)wcpt_table_base() +
                               (size_t)(h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE;
  uint64_t sig;
  uintptr_t target;
  memcpy(&sig, entry + WCPT_SIGNATURE_OFFSET, sizeof sig);
  memcpy(&target, entry + WCPT_ENTRYPOINT_OFFSET, sizeof target);
  if (sig != SIG_BINOP) {
    printf("    signature mismatch: the call is refused\n");
    return -1;
  }
  binop f;
  memcpy(&f, &target, sizeof f);
  return f(a, b);
}

static void show_stats(const char *when) {
  wcpt_stats_t s;
  wcpt_stats(&s);
  printf("  stats %-22s live=%zu native=%zu free=%zu segments=%zu (%zu KiB)\n", when, s.live,
         s.native, s.free, s.committed_segments, s.committed_bytes >> 10);
}

int main(void) {
  printf("wcpt %s, protection: %s\n", wcpt_version(),
         wcpt_protection_mode() == WCPT_PROTECTION_PKEYS ? "pkeys (table is write-protected)"
                                                          : "none (no pkeys here)");
  if (wcpt_init() != WCPT_OK) return 1;

  wcpt_handle h_add = wcpt_alloc((uintptr_t)&add_slow, SIG_BINOP);
  wcpt_handle h_mul = wcpt_alloc((uintptr_t)&mul, SIG_BINOP);
  printf("1. allocated handles add=%#010x mul=%#010x\n", h_add, h_mul);
  printf("   add(40, 2) through the table = %ld\n", call_through(h_add, 40, 2));
  printf("   mul(6, 7)  through the table = %ld\n", call_through(h_mul, 6, 7));

  wcpt_set(h_add, (uintptr_t)&add_fast);
  printf("2. tier-up: wcpt_set(add, add_fast); add(40, 2) = %ld (same handle)\n",
         call_through(h_add, 40, 2));

  printf("3. checked lookup with the wrong signature: %#lx (0 = refused)\n",
         (unsigned long)wcpt_get_checked(h_mul, 0xDEAD));

  wcpt_handle h_host = wcpt_native_handle((uintptr_t)&host_max);
  printf("4. native handle for host_max: %#010x (again: %#010x); host_max(3, 9) = %ld\n",
         h_host, wcpt_native_handle((uintptr_t)&host_max),
         ((binop)wcpt_get(h_host))(3, 9));
  printf("   freeing it: %s\n", wcpt_status_str(wcpt_free(h_host)));

  wcpt_free(h_mul);
  wcpt_handle h_new = wcpt_alloc((uintptr_t)&add_slow, SIG_BINOP);
  printf("5. freed mul; its slot was reused by %#010x\n", h_new);
  printf("   stale mul handle: wcpt_get = %#lx, wcpt_free -> %s\n",
         (unsigned long)wcpt_get(h_mul), wcpt_status_str(wcpt_free(h_mul)));
  wcpt_handle bad = wcpt_alloc((uintptr_t)1 << 47, 0);
  printf("   bad entrypoint: wcpt_alloc(1 << 47) -> %#x (%s)\n", bad,
         wcpt_status_str(wcpt_last_error()));

  enum { MANY = 100000 };
  static wcpt_handle many[MANY];
  for (int i = 0; i < MANY; i++) many[i] = wcpt_alloc((uintptr_t)&mul, SIG_BINOP);
  show_stats("after 100000 allocs:");
  for (int i = 0; i < MANY; i++) wcpt_free(many[i]);
  show_stats("after freeing them:");
  size_t released = wcpt_sweep(0);
  printf("6. wcpt_sweep(0) gave %zu segments back to the OS\n", released);
  show_stats("after the sweep:");
  printf("   add still works: add(1, 2) = %ld\n", call_through(h_add, 1, 2));
  wcpt_teardown();
  return 0;
}
