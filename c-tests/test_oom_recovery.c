/* Memory comes back, allocation comes back: after the OS refuses memory
 * (RLIMIT_DATA or RLIMIT_AS lowered in a forked child), raising the limit
 * again must make the very next allocation succeed, from any thread, and a
 * burst of several segments' worth after it too. No refusal may outlive a
 * successful commit. Threads racing at the limit get statuses, never one
 * entry twice: every handle taken is checked to answer with the address it
 * was given, and all of them are distinct. */
#include "check.h"
#include "rlimit.h"
#include "wcpt.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { THREADS = 4, BURST = 3 * WCPT_ENTRIES_PER_SEGMENT + 100, MAX_HANDLES = 1 << 20 };

/* Every handle taken in a child, with the address it was given: mapped
 * before any limit is lowered (never malloc'd under a limit). */
static wcpt_handle *handles;
static uintptr_t *addresses;
static atomic_int taken;
static atomic_int bad; /* a status other than OK / OUT_OF_MEMORY, or a wrong answer */

static uintptr_t next_address(void) {
  static atomic_uintptr_t next = 0x100000;
  return atomic_fetch_add(&next, 16);
}

/* Allocates one entry; records it. Returns 1 on success, 0 on
 * OUT_OF_MEMORY, and counts anything else as bad. */
static int take_one(void) {
  uintptr_t a = next_address();
  wcpt_handle h = wcpt_alloc(a, 7);
  if (h == WCPT_INVALID_HANDLE) {
    if (wcpt_last_error() != WCPT_ERR_OUT_OF_MEMORY) atomic_fetch_add(&bad, 1);
    return 0;
  }
  int i = atomic_fetch_add(&taken, 1);
  if (i >= MAX_HANDLES) {
    atomic_fetch_add(&bad, 1);
    return 1;
  }
  handles[i] = h;
  addresses[i] = a;
  return 1;
}

static int cmp_handle(const void *a, const void *b) {
  wcpt_handle x = *(const wcpt_handle *)a, y = *(const wcpt_handle *)b;
  return (x > y) - (x < y);
}

/* Every handle answers with its own address, and no entry was given twice. */
static int all_distinct_and_answering(void) {
  int n = atomic_load(&taken);
  for (int i = 0; i < n; i++)
    if (wcpt_get_checked(handles[i], 7) != addresses[i]) return 0;
  wcpt_handle *sorted = mmap(NULL, (size_t)n * sizeof *sorted + 1, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (sorted == MAP_FAILED) return 0;
  memcpy(sorted, handles, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_handle);
  int ok = 1;
  for (int i = 1; i < n; i++)
    if ((sorted[i] & WCPT_INDEX_MASK) == (sorted[i - 1] & WCPT_INDEX_MASK)) ok = 0;
  munmap(sorted, (size_t)n * sizeof *sorted + 1);
  return ok;
}

/* ---- threads that allocate until refused, then wait ---- */

static pthread_barrier_t start, first_refusals, refused_all, raised, retried;
static int resource_under_test;
static int retry_from_threads; /* the threads retry after the raise, not main */
static int hammer;             /* each thread is refused this many times first */
static atomic_int first_retry_failed;

static void *allocator(void *arg) {
  (void)arg;
  pthread_barrier_wait(&start);
  while (take_one()) {
  }
  /* Until every thread has been refused once, another thread may still
   * hold entries it took onto its stack just after a refusal's scan (a
   * refusal is a snapshot); once all were refused, every stack is empty. */
  pthread_barrier_wait(&first_refusals);
  for (int i = 1; i < hammer; i++)
    if (take_one()) atomic_fetch_add(&bad, 1); /* nothing was raised yet: must stay refused */
  pthread_barrier_wait(&refused_all);
  pthread_barrier_wait(&raised);
  if (retry_from_threads) {
    if (hammer <= 1) {
      if (!take_one()) atomic_fetch_add(&first_retry_failed, 1);
    } else {
      /* Deep in its backoff: memory must be seen again within a tick of
       * the coarse clock (a few ms), or at the next power of two. */
      struct timespec t0, t1;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      int tries = 0;
      while (!take_one() && ++tries < 1 << 22) {
      }
      clock_gettime(CLOCK_MONOTONIC, &t1);
      long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
      if (ms > 50 && tries > 2 * hammer) atomic_fetch_add(&first_retry_failed, 1);
    }
  }
  pthread_barrier_wait(&retried);
  return NULL;
}

/* One round in a child: threads exhaust memory under the limit, the limit
 * is raised, and the very next allocation (from main, or from each
 * refused thread) succeeds, then a burst of three segments' worth. */
static int round_threads(int delta_kib) {
  pthread_t t[THREADS];
  int at_start = atomic_load(&taken);
  pthread_barrier_init(&start, NULL, THREADS + 1);
  pthread_barrier_init(&first_refusals, NULL, THREADS + 1);
  pthread_barrier_init(&refused_all, NULL, THREADS + 1);
  pthread_barrier_init(&raised, NULL, THREADS + 1);
  pthread_barrier_init(&retried, NULL, THREADS + 1);
  for (int i = 0; i < THREADS; i++)
    if (pthread_create(&t[i], NULL, allocator, NULL) != 0) return 10;
  /* The threads' stacks are mapped: now the limit. */
  limit_above_use(resource_under_test, delta_kib);
  pthread_barrier_wait(&start);
  pthread_barrier_wait(&first_refusals);
  pthread_barrier_wait(&refused_all);
  int before = atomic_load(&taken);
  limit(resource_under_test, -1);
  pthread_barrier_wait(&raised);
  if (!retry_from_threads && !take_one()) atomic_fetch_add(&first_retry_failed, 1);
  pthread_barrier_wait(&retried);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  if (atomic_load(&first_retry_failed)) return 2;
  for (int i = 0; i < BURST; i++)
    if (!take_one()) return 3;
  if (atomic_load(&bad)) return 4;
  if (before == at_start) return 5; /* nothing allocated under the limit: not a real probe */
  return 0;
}

/* ---- the batch call and the native map ---- */

static int round_batch(int delta_kib) {
  static uintptr_t es[BURST];
  static uint64_t sigs[BURST];
  static wcpt_handle out[BURST];
  for (int i = 0; i < BURST; i++) es[i] = next_address(), sigs[i] = 7;
  limit_above_use(RLIMIT_DATA, delta_kib);
  int refused = 0;
  for (int k = 0; k < 64 && !refused; k++) {
    wcpt_status s = wcpt_alloc_many(es, sigs, BURST, out);
    if (s == WCPT_ERR_OUT_OF_MEMORY) refused = 1;
    else if (s != WCPT_OK) return 2;
    else
      for (int i = 0; i < BURST; i++) { /* keep them: the next batch needs new segments */
        int j = atomic_fetch_add(&taken, 1);
        if (j >= MAX_HANDLES) return 6;
        handles[j] = out[i], addresses[j] = es[i];
        es[i] = next_address();
      }
  }
  if (!refused) return 5;
  limit(RLIMIT_DATA, -1);
  if (wcpt_alloc_many(es, sigs, BURST, out) != WCPT_OK) return 3;
  for (int i = 0; i < BURST; i++) {
    int j = atomic_fetch_add(&taken, 1);
    handles[j] = out[i], addresses[j] = es[i];
  }
  /* And a single allocation right after, from the same thread. */
  return take_one() ? 0 : 4;
}

static int round_natives(int resource, int delta_kib) {
  static uintptr_t next_native = 0x40000000;
  limit_above_use(resource, delta_kib);
  int refused = 0;
  for (int k = 0; k < (1 << 20) && !refused; k++) {
    wcpt_handle h = wcpt_native_handle(next_native);
    if (h == WCPT_INVALID_HANDLE) {
      if (wcpt_last_error() != WCPT_ERR_OUT_OF_MEMORY) return 2;
      refused = 1;
    } else {
      next_native += 16;
    }
  }
  if (!refused) return 5;
  limit(resource, -1);
  /* The refused address, then enough more to make the map grow again. */
  for (int k = 0; k < 5000; k++, next_native += 16)
    if (wcpt_native_handle(next_native) == WCPT_INVALID_HANDLE) return 3;
  return take_one() ? 0 : 4;
}

/* ---- the children ---- */

/* KiB of RLIMIT_DATA that one new segment takes: its metadata and
 * generation bytes (12 KiB), and its entries (64 KiB) unless they live in
 * the alias mode's shared memory, which the limit does not count. */
static long segment_kib(void) { return wcpt_protection_mode() == WCPT_PROTECTION_ALIAS ? 12 : 76; }

/* Room for one to four more segments under the limit. */
static int room(int round) { return (int)(segment_kib() * (1 + round % 4) + 4); }

typedef int (*child_fn)(int round);

static int child_threads_main(int round) {
  resource_under_test = RLIMIT_DATA, retry_from_threads = 0, hammer = 1;
  return round_threads(room(round));
}
static int child_threads_each(int round) {
  resource_under_test = RLIMIT_DATA, retry_from_threads = 1, hammer = 1;
  return round_threads(room(round));
}
static int child_threads_hammered(int round) {
  resource_under_test = RLIMIT_DATA, retry_from_threads = 1, hammer = 1000 + round;
  return round_threads(room(1));
}
static int child_batch(int round) { return round_batch(room(round)); }
static int child_natives_data(int round) { return round_natives(RLIMIT_DATA, 16 * (round % 8)); }
static int child_natives_as(int round) { return round_natives(RLIMIT_AS, 16 * (round % 8)); }

/* Runs `rounds` rounds in each of `children` forked children, each round
 * starting from what the rounds before left allocated. */
static void in_children(const char *name, child_fn fn, int children, int rounds) {
  int failed = 0;
  for (int c = 0; c < children; c++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(60);
      if (wcpt_init() != WCPT_OK) _exit(20);
      handles = mmap(NULL, MAX_HANDLES * sizeof *handles, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      addresses = mmap(NULL, MAX_HANDLES * sizeof *addresses, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (handles == MAP_FAILED || addresses == MAP_FAILED) _exit(21);
      memset(handles, 0, MAX_HANDLES * sizeof *handles); /* commit now, not under a limit */
      memset(addresses, 0, MAX_HANDLES * sizeof *addresses);
      for (int r = 0; r < rounds; r++) {
        int rc = fn(r);
        if (rc) {
          fprintf(stderr, "  %s: child %d round %d: failed at step %d (taken %d, bad %d)\n", name, c, r, rc,
                  atomic_load(&taken), atomic_load(&bad));
          _exit(rc);
        }
      }
      _exit(all_distinct_and_answering() ? 0 : 30);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed++;
      if (!WIFEXITED(status)) fprintf(stderr, "  %s: child %d: signal %d\n", name, c, WTERMSIG(status));
    }
  }
  printf("  %-26s %d children x %d rounds, %d failed\n", name, children, rounds, failed);
  CHECK_EQ(failed, 0);
}

static void test_main_allocates_right_after_threads_were_refused(void) {
  in_children("threads refused, main", child_threads_main, check_scale(20), 4);
}
static void test_each_refused_thread_allocates_right_after(void) {
  in_children("threads refused, each", child_threads_each, check_scale(20), 4);
}
static void test_a_thread_deep_in_its_backoff_sees_memory_return(void) {
  in_children("threads hammered", child_threads_hammered, check_scale(6), 2);
}
static void test_a_refused_batch_is_followed_by_a_whole_batch(void) {
  in_children("alloc_many", child_batch, check_scale(10), 3);
}
static void test_native_map_growth_comes_back(void) {
  in_children("natives RLIMIT_DATA", child_natives_data, check_scale(10), 3);
  in_children("natives RLIMIT_AS", child_natives_as, check_scale(10), 3);
}

int main(void) {
  if (check_instrumented()) {
    printf("  skip: the sanitizers' own memory makes RLIMIT probes meaningless\n");
    printf("test_oom_recovery: 0 passed, 0 failed, 1 skipped\n");
    return 0;
  }
  RUN(test_main_allocates_right_after_threads_were_refused);
  RUN(test_each_refused_thread_allocates_right_after);
  RUN(test_a_thread_deep_in_its_backoff_sees_memory_return);
  RUN(test_a_refused_batch_is_followed_by_a_whole_batch);
  RUN(test_native_map_growth_comes_back);
  return check_finish("test_oom_recovery");
}
