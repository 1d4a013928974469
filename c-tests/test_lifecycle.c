/* Lazy initialisation, calls before init, teardown and re-initialisation. */
#include "check.h"
#include "wcpt.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_calls_before_init_initialise_lazily(void) {
  /* No wcpt_init() yet: every call works on a fresh table. */
  CHECK_EQ(wcpt_get(0x00000001), 0);
  CHECK_EQ(wcpt_free(0x00000001), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_sweep(0), 0);
  struct wcpt_stats s;
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  CHECK_EQ(s.live, 0);
  CHECK(wcpt_table_base() != NULL);
  CHECK_EQ(wcpt_init(), WCPT_OK);
}

static void test_teardown_releases_and_reinitialises(void) {
  wcpt_handle h = wcpt_alloc(0x4000, 1);
  wcpt_handle n = wcpt_native_handle(0x5000);
  CHECK(h != WCPT_INVALID_HANDLE && n != WCPT_INVALID_HANDLE);
  wcpt_teardown();
  wcpt_teardown(); /* idempotent */
  /* After teardown: a fresh table, and handles from before do not answer,
   * even once the same index is allocated again. */
  struct wcpt_stats s;
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  CHECK_EQ(s.live, 0);
  CHECK_EQ(s.native, 0);
  CHECK_EQ(s.committed_segments, 0);
  CHECK_EQ(wcpt_get(h), 0);
  wcpt_handle h2 = wcpt_alloc(0x6000, 1);
  CHECK_EQ(h2 & WCPT_INDEX_MASK, h & WCPT_INDEX_MASK);
  CHECK(h2 != h);
  CHECK_EQ(wcpt_get(h), 0);
  CHECK_EQ(wcpt_free(h), WCPT_ERR_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(h2), 0x6000);
  wcpt_handle n2 = wcpt_native_handle(0x5000);
  CHECK(n2 != WCPT_INVALID_HANDLE);
  CHECK_EQ(wcpt_get(n2), 0x5000);
  CHECK_EQ(wcpt_free(h2), WCPT_OK);
}

static void test_many_teardowns(void) {
  for (int i = 0; i < 50; i++) {
    CHECK_EQ(wcpt_init(), WCPT_OK);
    wcpt_handle h = wcpt_alloc(0x1000 + 16 * (uintptr_t)i, 0);
    CHECK_EQ(wcpt_get(h), 0x1000 + 16 * (uintptr_t)i);
    wcpt_teardown();
  }
  CHECK_EQ(wcpt_get(1), 0);
}

/* Lookups and signal_enter from a signal handler in every state of the
 * process: before the table exists, while the main thread creates it, while
 * it exists, while it is torn down. A lookup that took the lifecycle lock
 * or allocated would deadlock (the watchdog ends the child) or corrupt. */
static volatile sig_atomic_t handler_runs, handler_bad;

static void on_alarm(int sig) {
  (void)sig;
  handler_runs++;
  wcpt_signal_enter();
  if (wcpt_get(0x01000001) != 0 || wcpt_get_checked(0x01000001, 1) != 0) handler_bad++;
}

static void test_lookups_from_handlers_in_every_state(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    wcpt_teardown(); /* this child starts with no table */
    alarm(20);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_PROF, &it, NULL);
    for (int i = 0; i < check_scale(20000); i++) {
      if (wcpt_init() != WCPT_OK) _exit(2);
      wcpt_teardown();
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    printf("  %d handler runs during %d init/teardown cycles\n", (int)handler_runs, check_scale(20000));
    fflush(stdout);
    _exit(handler_bad ? 3 : handler_runs == 0 ? 4 : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
}

int main(void) {
  RUN(test_calls_before_init_initialise_lazily);
  RUN(test_teardown_releases_and_reinitialises);
  RUN(test_many_teardowns);
  RUN(test_lookups_from_handlers_in_every_state);
  return check_finish("test_lifecycle");
}
