/* Exhaustion (every allocatable entry in use) and the OS refusing memory. */
#include "check.h"
#include "wcpt.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* A thread that frees one handle (onto its own stack of free entries),
 * tells the main thread, then waits until told to exit. */
struct holder {
  wcpt_handle h;
  sem_t freed, done;
  int wait;
  wcpt_status status;
};

static void *hold(void *arg) {
  struct holder *x = arg;
  x->status = wcpt_free(x->h);
  sem_post(&x->freed);
  if (x->wait) sem_wait(&x->done);
  return NULL;
}

/* While the table is full: an entry freed by another thread is on that
 * thread's stack, not on a freelist. An allocation takes it back, whether
 * that thread is still alive (and idle) or has exited. */
static void full_table_reaches_other_threads_stacks(wcpt_handle *hs) {
  for (int wait = 1; wait >= 0; wait--) {
    struct holder x = {.h = *hs, .wait = wait};
    sem_init(&x.freed, 0, 0);
    sem_init(&x.done, 0, 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, hold, &x), 0);
    sem_wait(&x.freed);
    CHECK_EQ(x.status, WCPT_OK);
    if (!wait) pthread_join(t, NULL);
    wcpt_handle again = wcpt_alloc(0x7000, 2);
    CHECK(again != WCPT_INVALID_HANDLE);
    CHECK_EQ(again & WCPT_INDEX_MASK, *hs & WCPT_INDEX_MASK);
    CHECK_EQ(wcpt_get_checked(again, 2), 0x7000);
    CHECK_EQ(wcpt_alloc(0x7000, 2), WCPT_INVALID_HANDLE);
    CHECK_EQ(wcpt_last_error(), WCPT_ERR_CAPACITY);
    *hs = again;
    if (wait) {
      sem_post(&x.done);
      pthread_join(t, NULL);
    }
    sem_destroy(&x.freed);
    sem_destroy(&x.done);
  }
}

static void test_exhaustion(void) {
  if (getenv("WCPT_TEST_QUICK")) SKIP("16.7 million allocations are too slow in quick mode");
  wcpt_handle nat = wcpt_native_handle(0x7c0000000000ull);
  CHECK(nat != WCPT_INVALID_HANDLE);
  size_t want = WCPT_CAPACITY - 1; /* minus the native handle */
  wcpt_handle *hs = malloc(want * sizeof *hs);
  CHECK(hs != NULL);
  if (!hs) return;
  for (size_t i = 0; i < want; i++) {
    hs[i] = wcpt_alloc(0x10000 + 16 * (uintptr_t)(i & 0xFFFFF), (uint64_t)i);
    if (hs[i] == WCPT_INVALID_HANDLE) {
      CHECK(0 && "allocation failed before the table was full");
      free(hs);
      return;
    }
  }
  CHECK_EQ(wcpt_alloc(0x5000, 0), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_CAPACITY);
  CHECK_EQ(wcpt_native_handle(0x7c0000001000ull), WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_last_error(), WCPT_ERR_CAPACITY);
  /* Everything else keeps working while full. */
  CHECK_EQ(wcpt_native_handle(0x7c0000000000ull), nat);
  CHECK_EQ(wcpt_get(nat), 0x7c0000000000ull);
  CHECK_EQ(wcpt_sweep(0), 0);
  CHECK_EQ(wcpt_get_checked(hs[12345], 12345), 0x10000 + 16 * (uintptr_t)12345);
  struct wcpt_stats s;
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  CHECK_EQ(s.free, 0);
  CHECK_EQ(s.live + s.native, WCPT_CAPACITY);
  /* Freeing one makes alloc work again, and only once. */
  CHECK_EQ(wcpt_free(hs[777777]), WCPT_OK);
  wcpt_handle again = wcpt_alloc(0x6000, 1);
  CHECK(again != WCPT_INVALID_HANDLE);
  CHECK_EQ(again & WCPT_INDEX_MASK, hs[777777] & WCPT_INDEX_MASK);
  CHECK_EQ(wcpt_alloc(0x6000, 1), WCPT_INVALID_HANDLE);
  hs[777777] = again;
  full_table_reaches_other_threads_stacks(&hs[4242424]);
  /* Free everything; the sweep gives back all but segment 0's native. */
  for (size_t i = 0; i < want; i++) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
  size_t released = wcpt_sweep(0);
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  printf("  filled %zu entries, released %zu segments, %zu left\n", want, released, s.committed_segments);
  CHECK_EQ(s.committed_segments, 1);
  CHECK_EQ(wcpt_get(nat), 0x7c0000000000ull);
  free(hs);
}

static size_t vm_data_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmData:", 7) == 0) kb = (size_t)strtoull(line + 7, NULL, 10);
  if (f) fclose(f);
  return kb << 10;
}

/* In a child: limit the data segment so that committing segments fails. */
static int oom_child(void) {
  enum { KEEP = 100 };
  wcpt_handle keep[KEEP];
  for (int i = 0; i < KEEP; i++) keep[i] = wcpt_alloc(0x3000 + 16 * (uintptr_t)i, 3);
  struct rlimit rl;
  getrlimit(RLIMIT_DATA, &rl);
  struct rlimit tight = {vm_data_bytes() + (1u << 20), rl.rlim_max};
  if (setrlimit(RLIMIT_DATA, &tight) != 0) return 10;
  size_t n = 0;
  wcpt_handle h;
  while ((h = wcpt_alloc(0x4000, 4)) != WCPT_INVALID_HANDLE) {
    if (++n > 10000000) return 11; /* the limit did not bite */
  }
  if (wcpt_last_error() != WCPT_ERR_OUT_OF_MEMORY) return 12;
  for (int i = 0; i < KEEP; i++)
    if (wcpt_get_checked(keep[i], 3) != 0x3000 + 16 * (uintptr_t)i) return 13;
  if (wcpt_alloc(0x4000, 4) != WCPT_INVALID_HANDLE) return 14;
  /* Memory becomes available again: allocation works again, once the
   * remembered refusal is retried (at the next tick of the coarse clock,
   * 4 ms here; until then refusals cost no lock and no scan). */
  if (setrlimit(RLIMIT_DATA, &rl) != 0) return 15;
  usleep(20000);
  h = wcpt_alloc(0x4000, 4);
  if (h == WCPT_INVALID_HANDLE || wcpt_get(h) != 0x4000) return 16;
  printf("  OOM after %zu entries; allocation resumed once the limit was lifted\n", n);
  fflush(stdout);
  return 0;
}

static void test_out_of_memory(void) {
  if (check_instrumented()) SKIP("RLIMIT_DATA also limits the sanitizer's or valgrind's own memory");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) _exit(oom_child());
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
}

int main(void) {
  RUN(test_out_of_memory); /* first: before the table is large */
  RUN(test_exhaustion);
  return check_finish("test_limits");
}
