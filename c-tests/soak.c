/* A bounded soak run: churn with signature checks, sweeps and native handles
 * on all cores, verifying values and ownership throughout. Prints the
 * operations done and the anomalies found (which must be zero).
 *
 *   soak [seconds]     (default 120) */
#include "wcpt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_uchar owner[1u << 24];
/* Allocations of each index so far: a stale handle may answer again only
 * after its slot's 8-bit generation wrapped, i.e. 256 allocations later. */
static atomic_uint allocs[1u << 24];
static atomic_ullong wrap_aliases;
static atomic_int stop;
static atomic_ullong ops, lookups, anomalies, sweeps_released, natives_made;

#define ANOMALY(...)                                 \
  do {                                               \
    atomic_fetch_add(&anomalies, 1);                 \
    fprintf(stderr, "anomaly: " __VA_ARGS__);        \
  } while (0)

static unsigned long long rnd(unsigned long long *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  enum { RING = 1024 };
  wcpt_handle ring[RING] = {0};
  uintptr_t eps[RING];
  uint64_t sigs[RING];
  wcpt_handle stale[64] = {0};
  unsigned stale_count[64] = {0};
  unsigned long long s = 0x9E3779B97F4A7C15ull * (unsigned long long)(id + 1), local = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    int i = (int)(rnd(&s) % RING);
    if (ring[i]) {
      if (wcpt_get_checked(ring[i], sigs[i]) != eps[i]) ANOMALY("t%d: %#x lost its value\n", id, ring[i]);
      if (wcpt_get_checked(ring[i], sigs[i] ^ 1) != 0) ANOMALY("t%d: wrong signature accepted\n", id);
      if (rnd(&s) % 8 == 0) {
        eps[i] += 16;
        if (wcpt_set(ring[i], eps[i]) != WCPT_OK) ANOMALY("t%d: set refused\n", id);
      }
      atomic_store(&owner[ring[i] & WCPT_INDEX_MASK], 0);
      if (wcpt_free(ring[i]) != WCPT_OK) ANOMALY("t%d: free refused\n", id);
      stale[local % 64] = ring[i];
      stale_count[local % 64] = atomic_load(&allocs[ring[i] & WCPT_INDEX_MASK]);
      ring[i] = 0;
    } else {
      eps[i] = ((uintptr_t)(id + 1) << 40) | (uintptr_t)(rnd(&s) & 0xFFFFFFF0u);
      sigs[i] = rnd(&s) & ((UINT64_C(1) << WCPT_SIGNATURE_BITS) - 1); /* 56-bit signatures */
      ring[i] = wcpt_alloc(eps[i], sigs[i]);
      if (ring[i] == WCPT_INVALID_HANDLE) {
        ANOMALY("t%d: alloc failed: %s\n", id, wcpt_status_str(wcpt_last_error()));
        ring[i] = 0;
        continue;
      }
      atomic_fetch_add(&allocs[ring[i] & WCPT_INDEX_MASK], 1);
      if (atomic_exchange(&owner[ring[i] & WCPT_INDEX_MASK], 1) != 0)
        ANOMALY("t%d: index %#x handed out twice\n", id, ring[i] & WCPT_INDEX_MASK);
    }
    unsigned k = (unsigned)(rnd(&s) % 64);
    wcpt_handle old = stale[k];
    if (old && wcpt_get(old) != 0) {
      /* Allowed only once the slot was allocated 256 times since (minus a
       * margin for allocations whose count is not yet incremented). */
      unsigned since = atomic_load(&allocs[old & WCPT_INDEX_MASK]) - stale_count[k];
      if (since >= 256 - 8) atomic_fetch_add(&wrap_aliases, 1);
      else ANOMALY("t%d: stale %#x answered after only %u reuses\n", id, old, since);
    }
    local++;
    if ((local & 1023) == 0) atomic_fetch_add_explicit(&ops, 1024, memory_order_relaxed);
    if (local % 200000 == 0) {
      /* Drop the whole ring now and then, so segments empty out and the
       * sweepers release them under the other workers' feet. */
      for (int k = 0; k < RING; k++)
        if (ring[k]) {
          atomic_store(&owner[ring[k] & WCPT_INDEX_MASK], 0);
          if (wcpt_free(ring[k]) != WCPT_OK) ANOMALY("t%d: free refused\n", id);
          ring[k] = 0;
        }
      usleep(1000); /* a window for the sweepers */
    }
  }
  for (int i = 0; i < RING; i++)
    if (ring[i]) {
      atomic_store(&owner[ring[i] & WCPT_INDEX_MASK], 0);
      if (wcpt_free(ring[i]) != WCPT_OK) ANOMALY("t%d: final free refused\n", id);
    }
  return NULL;
}

static void *sweeper(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    atomic_fetch_add(&sweeps_released, wcpt_sweep(0));
    usleep(200);
  }
  return NULL;
}

static void *natives(void *arg) {
  (void)arg;
  enum { N = 50000 };
  static wcpt_handle known[N];
  unsigned long long s = 42;
  while (!atomic_load(&stop)) {
    unsigned i = (unsigned)(rnd(&s) % N);
    uintptr_t addr = 0x7e0000000000ull + 16 * (uintptr_t)i;
    wcpt_handle h = wcpt_native_handle(addr);
    if (h == WCPT_INVALID_HANDLE) ANOMALY("native failed\n");
    if (known[i] == 0) {
      known[i] = h;
      atomic_fetch_add(&natives_made, 1);
    } else if (known[i] != h) {
      ANOMALY("native %#lx changed handle\n", (unsigned long)addr);
    }
    if (wcpt_get_checked(h, WCPT_NATIVE_SIGNATURE) != addr) ANOMALY("native value\n");
    atomic_fetch_add_explicit(&lookups, 1, memory_order_relaxed);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int seconds = argc > 1 ? atoi(argv[1]) : 120;
  int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  int workers = cores * 2; /* oversubscribed on purpose: preemption matters */
  pthread_t t[256], sw[2], nat;
  if (workers > 256) workers = 256;
  printf("soak: %d s, %d workers, 2 sweepers, 1 native-handle thread on %d cores\n", seconds, workers, cores);
  for (int i = 0; i < workers; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  for (int i = 0; i < 2; i++) pthread_create(&sw[i], NULL, sweeper, NULL);
  pthread_create(&nat, NULL, natives, NULL);
  for (int s = 1; s <= seconds; s++) {
    sleep(1);
    if (s % 10 == 0 || s == seconds) {
      struct wcpt_stats st;
      wcpt_stats(&st);
      printf("  %3ds: %llu table ops, %llu native lookups, %llu anomalies, live=%zu native=%zu segments=%zu released=%llu\n", s,
             (unsigned long long)atomic_load(&ops), (unsigned long long)atomic_load(&lookups),
             (unsigned long long)atomic_load(&anomalies), st.live,
             st.native, st.committed_segments, (unsigned long long)atomic_load(&sweeps_released));
      fflush(stdout);
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < workers; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 2; i++) pthread_join(sw[i], NULL);
  pthread_join(nat, NULL);
  struct wcpt_stats st;
  wcpt_stats(&st);
  if (st.live != 0) ANOMALY("%zu entries still live after every worker freed its own\n", st.live);
  unsigned long long a = atomic_load(&anomalies);
  printf("soak: %llu table ops (alloc/free/set with checks), %llu native lookups, %llu native handles, "
         "%llu segments released by sweeps, %llu stale handles answering after a generation wrap, %llu anomalies\n",
         (unsigned long long)atomic_load(&ops), (unsigned long long)atomic_load(&lookups),
         (unsigned long long)atomic_load(&natives_made),
         (unsigned long long)atomic_load(&sweeps_released), (unsigned long long)atomic_load(&wrap_aliases), a);
  printf("soak: %d passed, %d failed\n", a == 0, a != 0);
  return a == 0 ? 0 : 1;
}
