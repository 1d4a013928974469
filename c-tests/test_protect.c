/* Write protection: WCPT_PROTECT=off, stray writes faulting (pkeys only),
 * and reads from signal handlers. Tests that need pkeys are skipped, with
 * the reason, where pkey_alloc is refused (CPU, kernel or valgrind). */
#include "check.h"
#include "wcpt.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *self_path;

static volatile uint64_t *entry_word(wcpt_handle h) {
  return (volatile uint64_t *)((uintptr_t)wcpt_table_base() +
                               (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE + WCPT_ENTRYPOINT_OFFSET);
}

static void test_protect_off_reports_none(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("WCPT_PROTECT", "off", 1);
    check_exec_self(self_path, "--report-mode");
    _exit(99);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 10 + WCPT_PROTECTION_NONE);
}

/* A write through the entry's address, not through the library, faults with
 * SIGSEGV and leaves the entry unchanged: before and after library writes. */
static void test_stray_write_faults(void) {
  if (wcpt_protection_mode() != WCPT_PROTECTION_PKEYS) SKIP("no pkeys on this machine");
  wcpt_handle h = wcpt_alloc(0x7000, 1);
  for (int round = 0; round < 2; round++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      *entry_word(h) = 0x41414141; /* must fault */
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    CHECK_EQ(wcpt_get(h), round == 0 ? 0x7000 : 0x8000);
    CHECK_EQ(wcpt_set(h, 0x8000), WCPT_OK); /* the window closes again after */
  }
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static void test_fork_child_keeps_protection(void) {
  wcpt_handle h = wcpt_alloc(0x7100, 1);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (wcpt_get(h) != 0x7100) _exit(1);
    if (wcpt_set(h, 0x7200) != WCPT_OK || wcpt_get(h) != 0x7200) _exit(2);
    wcpt_handle k = wcpt_alloc(0x7300, 2);
    if (wcpt_get(k) != 0x7300 || wcpt_free(k) != WCPT_OK) _exit(3);
    if (wcpt_protection_mode() == WCPT_PROTECTION_PKEYS) *entry_word(h) = 1; /* faults */
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (wcpt_protection_mode() == WCPT_PROTECTION_PKEYS)
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  else
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_EQ(wcpt_get(h), 0x7100);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static wcpt_handle sig_handle;
static volatile uintptr_t sig_via_get, sig_direct;

static void on_signal(int sig) {
  (void)sig;
  sig_via_get = wcpt_get(sig_handle); /* works with no setup */
  wcpt_signal_enter();                /* then direct reads work too */
  sig_direct = (uintptr_t)*entry_word(sig_handle);
}

static void test_signal_handler_reads(void) {
  sig_handle = wcpt_alloc(0x7400, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  CHECK_EQ(sig_via_get, 0x7400);
  CHECK_EQ(sig_direct, 0x7400);
  /* And the library keeps working after the handler returns. */
  CHECK_EQ(wcpt_set(sig_handle, 0x7500), WCPT_OK);
  CHECK_EQ(wcpt_get(sig_handle), 0x7500);
  CHECK_EQ(wcpt_free(sig_handle), WCPT_OK);
}

int main(int argc, char **argv) {
  self_path = argv[0];
  if (argc > 1 && strcmp(argv[1], "--report-mode") == 0) return 10 + (int)wcpt_protection_mode();
  printf("  protection mode: %s\n", wcpt_protection_mode() == WCPT_PROTECTION_PKEYS ? "pkeys" : wcpt_protection_mode() == WCPT_PROTECTION_ALIAS ? "alias" : "none");
  RUN(test_protect_off_reports_none);
  RUN(test_stray_write_faults);
  RUN(test_fork_child_keeps_protection);
  RUN(test_signal_handler_reads);
  return check_finish("test_protect");
}
