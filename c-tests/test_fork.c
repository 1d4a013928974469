/* fork from a multi-threaded parent whose other threads loop over set,
 * set_many, alloc, free, native handles and sweep, so that forks land in the
 * middle of every operation. Every child runs under a watchdog (a hang kills
 * it, which the parent reports) and checks:
 * - the parent's untouched handles are intact;
 * - handles the parent was setting hold one of the values it wrote, and can
 *   be set, set_many'd and freed (no pin left behind by a thread it lacks);
 * - handles the parent was allocating and freeing are either live or freed,
 *   never half: wcpt_get answers exactly when wcpt_free succeeds;
 * - a batch (wcpt_alloc_many, wcpt_free_many) is done or not done in the
 *   child, never half;
 * - alloc, free, native handles, sweep and stats all work. */
#include "check.h"
#include "wcpt.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MINE = 1000, SETS = 64, CHURNERS = 2, TRACK = 64 };

static atomic_int stop;
static wcpt_handle mine[MINE];
static wcpt_handle settable[SETS];
/* The handles each churner allocated last (it may be freeing them). */
static _Atomic wcpt_handle tracked[CHURNERS][TRACK];

/* The batcher's last batch: the array is complete when the state is 1
 * (allocated, live) or 2 (being freed or freed); 0 while it is rewritten. */
enum { BATCH = 64 };
static _Atomic wcpt_handle batch_hs[BATCH];
static atomic_int batch_state;

static void *batcher(void *arg) {
  (void)arg;
  wcpt_handle local[BATCH];
  uintptr_t eps[BATCH];
  uint64_t sigs[BATCH];
  for (int i = 0; i < BATCH; i++) eps[i] = 0xD00000 + 16 * (uintptr_t)i, sigs[i] = 7;
  while (!atomic_load(&stop)) {
    if (wcpt_alloc_many(eps, sigs, BATCH, local) != WCPT_OK) {
      atomic_fetch_add(&check_failures, 1);
      break;
    }
    atomic_store(&batch_state, 0);
    for (int i = 0; i < BATCH; i++) atomic_store(&batch_hs[i], local[i]);
    atomic_store(&batch_state, 1);
    atomic_store(&batch_state, 2);
    if (wcpt_free_many(local, BATCH) != WCPT_OK) atomic_fetch_add(&check_failures, 1);
  }
  return NULL;
}

static uintptr_t mine_ep(int i) { return 0x900000 + 16 * (uintptr_t)i; }
/* Values a setter writes to settable[i]: 0xA00000 + 16*(i*4 + k), k < 4. */
static uintptr_t set_ep(int i, int k) { return 0xA00000 + 16 * (uintptr_t)(i * 4 + k); }

static void *setter(void *arg) {
  (void)arg;
  unsigned n = 0;
  uintptr_t eps[SETS];
  while (!atomic_load(&stop)) {
    int k = (int)(n % 4);
    if (n % 2) {
      for (int i = 0; i < SETS; i++) wcpt_set(settable[i], set_ep(i, k));
    } else {
      for (int i = 0; i < SETS; i++) eps[i] = set_ep(i, k);
      wcpt_set_many(settable, eps, SETS);
    }
    n++;
  }
  return NULL;
}

static void *churner(void *arg) {
  int id = (int)(intptr_t)arg;
  unsigned n = 0;
  while (!atomic_load(&stop)) {
    int slot = (int)(n % TRACK);
    wcpt_handle old = atomic_load(&tracked[id][slot]);
    if (old) wcpt_free(old);
    wcpt_handle h = wcpt_alloc(0x100000 + 16 * (uintptr_t)(n % 50000), (uint64_t)id + 1);
    if (wcpt_get_checked(h, (uint64_t)id + 1) != 0x100000 + 16 * (uintptr_t)(n % 50000)) atomic_fetch_add(&check_failures, 1);
    atomic_store(&tracked[id][slot], h);
    if (n % 64 == 0) wcpt_native_handle(0x7e0000000000ull + 64 * (uintptr_t)(n % 5000) + (uintptr_t)id * 0x1000000);
    if (n % 2048 == 0) wcpt_sweep(0);
    n++;
  }
  return NULL;
}

static int child_work(void) {
  alarm(20); /* a hang kills the child, which the parent reports */
  for (int i = 0; i < MINE; i++)
    if (wcpt_get_checked(mine[i], 9) != mine_ep(i)) return 2;
  for (int i = 0; i < SETS; i++) {
    uintptr_t v = wcpt_get(settable[i]);
    if (v != set_ep(i, 0) && v != set_ep(i, 1) && v != set_ep(i, 2) && v != set_ep(i, 3)) return 3;
    if (wcpt_set(settable[i], 0xB00000) != WCPT_OK || wcpt_get(settable[i]) != 0xB00000) return 4;
  }
  uintptr_t eps[SETS];
  for (int i = 0; i < SETS; i++) eps[i] = 0xC00000 + 16 * (uintptr_t)i;
  if (wcpt_set_many(settable, eps, SETS) != WCPT_OK) return 5;
  for (int i = 0; i < SETS; i++) {
    if (wcpt_get(settable[i]) != eps[i]) return 6;
    if (wcpt_free(settable[i]) != WCPT_OK || wcpt_get(settable[i]) != 0) return 7;
  }
  for (int c = 0; c < CHURNERS; c++) {
    for (int t = 0; t < TRACK; t++) {
      wcpt_handle h = atomic_load(&tracked[c][t]);
      if (!h) continue;
      int live = wcpt_get(h) != 0;
      wcpt_status st = wcpt_free(h);
      if (live != (st == WCPT_OK)) return 8; /* half done */
      if (wcpt_get(h) != 0 || wcpt_free(h) != WCPT_ERR_DOUBLE_FREE) return 9;
    }
  }
  int state = atomic_load(&batch_state), live = 0;
  for (int i = 0; i < BATCH; i++) live += wcpt_get_checked(atomic_load(&batch_hs[i]), 7) == 0xD00000 + 16 * (uintptr_t)i;
  if ((state == 1 && live != BATCH) || (state == 2 && live != 0 && live != BATCH)) return 16; /* half a batch */
  if (state != 0 && live == BATCH) {
    wcpt_handle hs[BATCH];
    for (int i = 0; i < BATCH; i++) hs[i] = atomic_load(&batch_hs[i]);
    if (wcpt_free_many(hs, BATCH) != WCPT_OK || wcpt_free_many(hs, 1) != WCPT_ERR_DOUBLE_FREE) return 17;
  }
  struct wcpt_stats before;
  if (wcpt_stats(&before) != WCPT_OK) return 10;
  static wcpt_handle fresh[5000];
  for (int r = 0; r < 4; r++) {
    for (int i = 0; i < 5000; i++) {
      fresh[i] = wcpt_alloc(0x2000 + 16 * (uintptr_t)i, 1);
      if (fresh[i] == WCPT_INVALID_HANDLE || wcpt_get(fresh[i]) != 0x2000 + 16 * (uintptr_t)i) return 11;
    }
    for (int i = 0; i < 5000; i++)
      if (wcpt_free(fresh[i]) != WCPT_OK) return 12;
  }
  struct wcpt_stats after;
  if (wcpt_stats(&after) != WCPT_OK || after.live != before.live) return 13;
  wcpt_handle n = wcpt_native_handle(0x7d0000000000ull);
  if (n == WCPT_INVALID_HANDLE || wcpt_native_handle(0x7d0000000000ull) != n) return 14;
  wcpt_sweep(0);
  if (wcpt_free(mine[0]) != WCPT_OK || wcpt_get(mine[0]) != 0) return 15;
  return 0;
}

static void test_fork_while_threads_work(void) {
  const int FORKS = check_scale(300) < 10 ? 10 : check_scale(300);
  for (int i = 0; i < MINE; i++) mine[i] = wcpt_alloc(mine_ep(i), 9);
  for (int i = 0; i < SETS; i++) settable[i] = wcpt_alloc(set_ep(i, 0), 8);
  pthread_t t[2 + CHURNERS];
  atomic_store(&stop, 0);
  pthread_create(&t[0], NULL, setter, NULL);
  for (int i = 0; i < CHURNERS; i++) pthread_create(&t[1 + i], NULL, churner, (void *)(intptr_t)i);
  pthread_create(&t[1 + CHURNERS], NULL, batcher, NULL);
  int ok = 0;
  for (int f = 0; f < FORKS; f++) {
    pid_t pid = fork();
    if (pid == 0) _exit(child_work());
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else fprintf(stderr, "  child %d: %s %d\n", f, WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    usleep((unsigned)(f % 7) * 100); /* land at different points */
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2 + CHURNERS; i++) pthread_join(t[i], NULL);
  printf("  %d of %d children passed\n", ok, FORKS);
  CHECK_EQ(ok, FORKS);
  for (int i = 0; i < MINE; i++) CHECK_EQ(wcpt_get_checked(mine[i], 9), mine_ep(i));
  for (int i = 0; i < MINE; i++) CHECK_EQ(wcpt_free(mine[i]), WCPT_OK);
  for (int i = 0; i < SETS; i++) CHECK_EQ(wcpt_free(settable[i]), WCPT_OK);
  for (int c = 0; c < CHURNERS; c++)
    for (int s = 0; s < TRACK; s++) wcpt_free(atomic_load(&tracked[c][s]));
}

int main(void) {
  RUN(test_fork_while_threads_work);
  return check_finish("test_fork");
}
