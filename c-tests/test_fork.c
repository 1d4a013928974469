/* fork from a multi-threaded parent whose other threads keep allocating,
 * freeing, creating native handles and sweeping: every child can use the
 * table without deadlocking on a lock inherited from the parent, and sees
 * the parent's handles intact. */
#include "check.h"
#include "wcpt.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void *busy(void *arg) {
  int id = (int)(intptr_t)arg;
  unsigned n = 0;
  while (!atomic_load(&stop)) {
    wcpt_handle h = wcpt_alloc(0x1000 + 16 * (uintptr_t)(n % 100000), (uint64_t)id);
    if (wcpt_get_checked(h, (uint64_t)id) != 0x1000 + 16 * (uintptr_t)(n % 100000)) atomic_fetch_add(&check_failures, 1);
    wcpt_free(h);
    if (n % 64 == 0) wcpt_native_handle(0x7e0000000000ull + 64 * (uintptr_t)(n % 5000) + (uintptr_t)id * 0x1000000);
    if (n % 4096 == 0) wcpt_sweep(0);
    n++;
  }
  return NULL;
}

static int child_work(const wcpt_handle *mine, int count) {
  alarm(20); /* a deadlock kills the child, which the parent reports */
  for (int i = 0; i < count; i++)
    if (wcpt_get_checked(mine[i], 9) != 0x900000 + 16 * (uintptr_t)i) return 2;
  for (int i = 0; i < check_scale(20000); i++) {
    wcpt_handle h = wcpt_alloc(0x2000, 1);
    if (h == WCPT_INVALID_HANDLE || wcpt_get(h) != 0x2000) return 3;
    if (wcpt_free(h) != WCPT_OK) return 4;
  }
  wcpt_handle n = wcpt_native_handle(0x7d0000000000ull);
  if (n == WCPT_INVALID_HANDLE || wcpt_native_handle(0x7d0000000000ull) != n) return 5;
  wcpt_sweep(0);
  wcpt_stats_t s;
  if (wcpt_stats(&s) != WCPT_OK) return 6;
  if (wcpt_free(mine[0]) != WCPT_OK || wcpt_get(mine[0]) != 0) return 7;
  return 0;
}

static void test_fork_while_threads_work(void) {
  enum { MINE = 1000, BUSY = 3 };
  const int FORKS = check_scale(100) < 5 ? 5 : check_scale(100);
  static wcpt_handle mine[MINE];
  for (int i = 0; i < MINE; i++) mine[i] = wcpt_alloc(0x900000 + 16 * (uintptr_t)i, 9);
  pthread_t t[BUSY];
  atomic_store(&stop, 0);
  for (int i = 0; i < BUSY; i++) pthread_create(&t[i], NULL, busy, (void *)(intptr_t)i);
  int ok = 0;
  for (int f = 0; f < FORKS; f++) {
    pid_t pid = fork();
    if (pid == 0) _exit(child_work(mine, MINE));
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else fprintf(stderr, "  child %d: %s %d\n", f, WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < BUSY; i++) pthread_join(t[i], NULL);
  CHECK_EQ(ok, FORKS);
  for (int i = 0; i < MINE; i++) CHECK_EQ(wcpt_get_checked(mine[i], 9), 0x900000 + 16 * (uintptr_t)i);
}

int main(void) {
  RUN(test_fork_while_threads_work);
  return check_finish("test_fork");
}
