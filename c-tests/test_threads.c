/* Concurrency through the C ABI: churn with value and ownership checks,
 * racing double frees, native handles from many threads, and V8's
 * ConcurrentSweep scenario with the assertions V8 lacks. */
#include "check.h"
#include "wcpt.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define THREADS 4

/* One flag per entry index: set while a thread holds it. */
static atomic_uchar owner[1u << 24];
static atomic_int stop_sweeping;

static void take(wcpt_handle h) {
  unsigned char prev = atomic_exchange(&owner[h & WCPT_INDEX_MASK], 1);
  CHECK_EQ(prev, 0); /* no index is handed out twice */
}
static void give(wcpt_handle h) { atomic_store(&owner[h & WCPT_INDEX_MASK], 0); }

static uintptr_t value(int thread, unsigned n) {
  return ((uintptr_t)(thread + 1) << 36) | ((uintptr_t)n << 4);
}

static void *sweeper(void *arg) {
  atomic_size_t *released = arg;
  while (!atomic_load(&stop_sweeping)) atomic_fetch_add(released, wcpt_sweep(0));
  return NULL;
}

static void *churn(void *arg) {
  int id = (int)(intptr_t)arg;
  enum { RING = 256 };
  const unsigned ROUNDS = (unsigned)check_scale(300000) + RING;
  wcpt_handle ring[RING];
  uintptr_t eps[RING];
  unsigned long long rng = 0x1234 + (unsigned long long)id;
  for (int i = 0; i < RING; i++) {
    eps[i] = value(id, (unsigned)i);
    ring[i] = wcpt_alloc(eps[i], (uint64_t)id);
    CHECK(ring[i] != WCPT_INVALID_HANDLE);
    take(ring[i]);
  }
  for (unsigned n = RING; n < ROUNDS; n++) {
    int i = (int)(check_rand(&rng) % RING);
    CHECK_EQ(wcpt_get_checked(ring[i], (uint64_t)id), eps[i]);
    wcpt_handle old = ring[i];
    give(old);
    CHECK_EQ(wcpt_free(old), WCPT_OK);
    CHECK_EQ(wcpt_get(old), 0);
    eps[i] = value(id, n);
    ring[i] = wcpt_alloc(eps[i], (uint64_t)id);
    CHECK(ring[i] != WCPT_INVALID_HANDLE);
    take(ring[i]);
    if ((n & 0x3FF) == 0) {
      for (int j = 0; j < RING; j++) CHECK_EQ(wcpt_get_checked(ring[j], (uint64_t)id), eps[j]);
    }
  }
  for (int i = 0; i < RING; i++) {
    give(ring[i]);
    CHECK_EQ(wcpt_free(ring[i]), WCPT_OK);
  }
  return NULL;
}

static void test_churn_verifies_values_and_ownership(void) {
  pthread_t t[THREADS], s;
  atomic_size_t released = 0;
  atomic_store(&stop_sweeping, 0);
  pthread_create(&s, NULL, sweeper, &released);
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, churn, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  atomic_store(&stop_sweeping, 1);
  pthread_join(s, NULL);
  struct wcpt_stats st;
  CHECK_EQ(wcpt_stats(&st), WCPT_OK);
  CHECK_EQ(st.live, 0);
}

enum { RACE = 4096 };
static wcpt_handle race_handles[RACE];
static atomic_int race_wins, race_double;
static pthread_barrier_t race_barrier;

static void *race_free(void *arg) {
  (void)arg;
  pthread_barrier_wait(&race_barrier);
  for (int i = 0; i < RACE; i++) {
    wcpt_status s = wcpt_free(race_handles[i]);
    if (s == WCPT_OK) atomic_fetch_add(&race_wins, 1);
    else if (s == WCPT_ERR_DOUBLE_FREE) atomic_fetch_add(&race_double, 1);
    else CHECK(0 && "unexpected status");
  }
  return NULL;
}

static void test_racing_double_free_has_one_winner(void) {
  for (int round = 0; round < check_scale(20); round++) {
    for (int i = 0; i < RACE; i++) race_handles[i] = wcpt_alloc(0x1000 + 16 * (uintptr_t)i, 0);
    atomic_store(&race_wins, 0);
    atomic_store(&race_double, 0);
    pthread_barrier_init(&race_barrier, NULL, 3);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, race_free, NULL);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&race_barrier);
    CHECK_EQ(atomic_load(&race_wins), RACE);
    CHECK_EQ(atomic_load(&race_double), 2 * RACE);
  }
}

/* Overlapping free_many batches (a caller bug): three threads free
 * [0, 2K), [K, 3K) and [2K, 4K) at once, plus a thread doing single frees of
 * [3K, 4K). No handle is freed twice, each batch frees all or nothing, and
 * afterwards a handle is dead exactly when a call that covered it won. */
enum { K = 512 };
static wcpt_handle over[4 * K];
static wcpt_status over_status[3];
static atomic_int over_single_wins;
static pthread_barrier_t over_barrier;

static void *over_batch(void *arg) {
  int b = (int)(intptr_t)arg;
  pthread_barrier_wait(&over_barrier);
  over_status[b] = wcpt_free_many(&over[b * K], 2 * K);
  return NULL;
}

static void *over_single(void *arg) {
  (void)arg;
  pthread_barrier_wait(&over_barrier);
  for (int i = 3 * K; i < 4 * K; i++) atomic_fetch_add(&over_single_wins, wcpt_free(over[i]) == WCPT_OK);
  return NULL;
}

static void test_overlapping_free_many_batches(void) {
  int wins[3] = {0, 0, 0}, both = 0;
  for (int round = 0; round < check_scale(200); round++) {
    static uintptr_t eps[4 * K];
    static uint64_t sigs[4 * K];
    for (int i = 0; i < 4 * K; i++) eps[i] = 0x100000 + 16 * (uintptr_t)i, sigs[i] = 3;
    CHECK_EQ(wcpt_alloc_many(eps, sigs, 4 * K, over), WCPT_OK);
    atomic_store(&over_single_wins, 0);
    pthread_barrier_init(&over_barrier, NULL, 4);
    pthread_t t[4];
    for (int b = 0; b < 3; b++) pthread_create(&t[b], NULL, over_batch, (void *)(intptr_t)b);
    pthread_create(&t[3], NULL, over_single, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&over_barrier);
    int ok[3];
    for (int b = 0; b < 3; b++) {
      ok[b] = over_status[b] == WCPT_OK;
      CHECK(ok[b] || over_status[b] == WCPT_ERR_DOUBLE_FREE);
      wins[b] += ok[b];
    }
    /* Neighbouring batches overlap: both cannot have freed. */
    CHECK(!(ok[0] && ok[1]) && !(ok[1] && ok[2]));
    both += ok[0] && ok[2];
    int bad = 0, singles = 0;
    for (int i = 0; i < 4 * K; i++) {
      int q = i / K; /* quarter */
      int freed_by_batch = (q <= 1 && ok[0]) || (q >= 1 && q <= 2 && ok[1]) || (q >= 2 && ok[2]);
      int dead = wcpt_get(over[i]) == 0;
      if (q < 3) bad += dead != freed_by_batch;
      else bad += !dead, singles += !freed_by_batch;
    }
    CHECK_EQ(bad, 0);
    /* The single frees won exactly the quarter-3 handles no batch freed. */
    CHECK_EQ(atomic_load(&over_single_wins), singles);
    for (int i = 0; i < 3 * K; i++)
      if (wcpt_get(over[i]) != 0) CHECK_EQ(wcpt_free(over[i]), WCPT_OK);
  }
  printf("  batches won: [0,2K) %d, [K,3K) %d, [2K,4K) %d times; both outer batches %d times\n", wins[0], wins[1],
         wins[2], both);
}

enum { NATIVES = 2000 };
static wcpt_handle native_seen[THREADS][NATIVES];

static void *natives(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int j = 0; j < NATIVES; j++) {
    int i = (j * 7 + id * 311) % NATIVES;
    native_seen[id][i] = wcpt_native_handle(0x7f0000000000ull + 64 * (uintptr_t)i);
  }
  return NULL;
}

static void test_native_handles_from_many_threads(void) {
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, natives, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < NATIVES; i++) {
    CHECK(native_seen[0][i] != WCPT_INVALID_HANDLE);
    for (int k = 1; k < THREADS; k++) CHECK_EQ(native_seen[k][i], native_seen[0][i]);
    CHECK_EQ(wcpt_get(native_seen[0][i]), 0x7f0000000000ull + 64 * (uintptr_t)i);
  }
  struct wcpt_stats st;
  CHECK_EQ(wcpt_stats(&st), WCPT_OK);
  CHECK(st.native >= NATIVES);
}

/* V8's WasmCodePointerTableTest.ConcurrentSweep: allocation with holes while
 * two threads sweep; here every kept handle is checked afterwards. */
static void test_concurrent_sweep_keeps_values(void) {
  enum { MAX_ROUNDS = 16, PER = 3 * WCPT_ENTRIES_PER_SEGMENT };
  const int ROUNDS = check_scale(MAX_ROUNDS) < 2 ? 2 : check_scale(MAX_ROUNDS);
  static wcpt_handle kept[MAX_ROUNDS * PER];
  static uintptr_t kept_ep[MAX_ROUNDS * PER];
  static wcpt_handle batch[PER];
  size_t nkept = 0;
  atomic_size_t released = 0;
  pthread_t s[2];
  atomic_store(&stop_sweeping, 0);
  for (int i = 0; i < 2; i++) pthread_create(&s[i], NULL, sweeper, &released);
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < PER; i++) batch[i] = wcpt_alloc(0x100000 + 16 * (uintptr_t)(r * PER + i), 5);
    for (int i = 0; i < PER; i++) {
      CHECK(batch[i] != WCPT_INVALID_HANDLE);
      if (i % 5 == 0) {
        kept[nkept] = batch[i];
        kept_ep[nkept++] = 0x100000 + 16 * (uintptr_t)(r * PER + i);
      } else {
        CHECK_EQ(wcpt_free(batch[i]), WCPT_OK);
      }
    }
    /* Free whole segments' worth of the kept ones sometimes, so segments
     * empty out while the sweepers run. */
    if (r % 2 == 1) {
      size_t from = nkept - PER / 5;
      for (size_t k = from; k < nkept; k++) CHECK_EQ(wcpt_free(kept[k]), WCPT_OK);
      nkept = from;
    }
  }
  atomic_store(&stop_sweeping, 1);
  for (int i = 0; i < 2; i++) pthread_join(s[i], NULL);
  for (size_t k = 0; k < nkept; k++) CHECK_EQ(wcpt_get_checked(kept[k], 5), kept_ep[k]);
  printf("  %zu kept handles intact, %zu segments released during the run\n", nkept,
         (size_t)atomic_load(&released));
  for (size_t k = 0; k < nkept; k++) CHECK_EQ(wcpt_free(kept[k]), WCPT_OK);
}

int main(void) {
  RUN(test_churn_verifies_values_and_ownership);
  RUN(test_racing_double_free_has_one_winner);
  RUN(test_overlapping_free_many_batches);
  RUN(test_native_handles_from_many_threads);
  RUN(test_concurrent_sweep_keeps_values);
  return check_finish("test_threads");
}
