/* Memory exhaustion at every allocation site: RLIMIT_AS and RLIMIT_DATA set
 * to each limit in a window around what an operation needs (table creation,
 * the first segment, native map growth, a 16M-element set_many, fork). Each
 * probe runs in a child of its own: every call must return a status
 * (nothing aborts), a refusal must change nothing, and the table must work
 * again once the limit is raised. For the sites with a threshold, the
 * window must see both outcomes, so it really straddles the threshold. */
#include "check.h"
#include "rlimit.h"
#include "wcpt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* The table works: alloc, get, set, free, a native handle, sweep, stats. */
static int table_works(void) {
  wcpt_handle h = wcpt_alloc(0x5000, 1);
  if (h == WCPT_INVALID_HANDLE || wcpt_get(h) != 0x5000) return 0;
  if (wcpt_set(h, 0x6000) != WCPT_OK || wcpt_free(h) != WCPT_OK) return 0;
  if (wcpt_native_handle(0x7f0000) == WCPT_INVALID_HANDLE) return 0;
  wcpt_sweep(0);
  struct wcpt_stats s;
  return wcpt_stats(&s) == WCPT_OK;
}

/* Child exit codes: 0 the limited call succeeded, 1 it was refused with
 * WCPT_ERR_OUT_OF_MEMORY (or, for fork, the OS refused the fork), anything
 * else a failure. */
typedef int (*site_fn)(int resource, long delta_kib);

static int site_init(int resource, long delta) {
  limit_above_use(resource, delta);
  wcpt_status s = wcpt_init();
  if (s != WCPT_OK && s != WCPT_ERR_OUT_OF_MEMORY) return 2;
  if (s == WCPT_ERR_OUT_OF_MEMORY && wcpt_get(0x01000001) != 0) return 3;
  limit(resource, -1);
  if (wcpt_init() != WCPT_OK || !table_works()) return 4;
  return s == WCPT_OK ? 0 : 1;
}

static int site_first_segment(int resource, long delta) {
  if (wcpt_init() != WCPT_OK) return 5;
  limit_above_use(resource, delta);
  wcpt_handle h = wcpt_alloc(0x5000, 1);
  int refused = h == WCPT_INVALID_HANDLE;
  if (refused && wcpt_last_error() != WCPT_ERR_OUT_OF_MEMORY) return 2;
  struct wcpt_stats st;
  if (wcpt_stats(&st) != WCPT_OK || st.live != (refused ? 0u : 1u)) return 3;
  /* Refused again while the limit holds; once raised, the very next
   * call succeeds (no remembered refusal outlives memory's return). */
  if (refused && wcpt_alloc(0x5000, 1) != WCPT_INVALID_HANDLE) return 6;
  limit(resource, -1);
  if (!table_works()) return 4;
  return refused;
}

static int site_native_growth(int resource, long delta) {
  enum { BEFORE = 31, MORE = 400 };
  wcpt_handle known[BEFORE + MORE];
  for (int i = 0; i < BEFORE; i++) known[i] = wcpt_native_handle(0x600000 + 16 * (uintptr_t)i);
  limit_above_use(resource, delta);
  int made = BEFORE, refused = 0;
  for (; made < BEFORE + MORE; made++) {
    known[made] = wcpt_native_handle(0x600000 + 16 * (uintptr_t)made);
    if (known[made] == WCPT_INVALID_HANDLE) {
      if (wcpt_last_error() != WCPT_ERR_OUT_OF_MEMORY) return 2;
      refused = 1;
      break;
    }
  }
  for (int i = 0; i < made; i++)
    if (wcpt_native_handle(0x600000 + 16 * (uintptr_t)i) != known[i] || wcpt_get(known[i]) != 0x600000 + 16 * (uintptr_t)i)
      return 3;
  struct wcpt_stats st;
  if (wcpt_stats(&st) != WCPT_OK || st.native != (size_t)made || st.live != 0) return 7;
  limit(resource, -1);
  for (int i = made; i < BEFORE + MORE; i++)
    if (wcpt_native_handle(0x600000 + 16 * (uintptr_t)i) == WCPT_INVALID_HANDLE) return 4;
  return refused;
}

static int site_set_many_huge(int resource, long delta) {
  const size_t n = (size_t)16 * 1024 * 1024 + 1;
  wcpt_handle h = wcpt_alloc(0x5000, 1);
  /* Zero pages, never written: handles[1] is 0, so the call must refuse. */
  wcpt_handle *hs = mmap(NULL, n * sizeof *hs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  uintptr_t *es = mmap(NULL, n * sizeof *es, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (hs == MAP_FAILED || es == MAP_FAILED) return 8;
  hs[0] = h;
  limit_above_use(resource, delta);
  if (wcpt_set_many(hs, es, n) != WCPT_ERR_INVALID_HANDLE) return 2;
  if (wcpt_get(h) != 0x5000) return 3;
  limit(resource, -1);
  return table_works() ? 0 : 4;
}

static int site_fork(int resource, long delta) {
  wcpt_handle h = wcpt_alloc(0x5000, 1);
  limit_above_use(resource, delta);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    alarm(10);
    limit(resource, -1);
    _exit(wcpt_get(h) == 0x5000 && table_works() ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 2;
  limit(resource, -1);
  return wcpt_get(h) == 0x5000 && table_works() ? 0 : 4;
}

/* Probes `site` with the limit at the current use + delta, for every delta
 * from `lo` to `hi` KiB in steps of `step`. */
static void sweep_window(const char *name, site_fn site, int resource, long lo, long hi, long step, int need_both) {
  int ok = 0, refused = 0, bad = 0;
  for (long d = lo; d <= hi; d += step) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20);
      _exit(site(resource, d));
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 1) refused++;
    else {
      bad++;
      fprintf(stderr, "  %s %s +%ld KiB: %s %d\n", name, resource == RLIMIT_AS ? "RLIMIT_AS" : "RLIMIT_DATA", d,
              WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
  }
  printf("  %-14s %-11s: %d limits, %d succeeded, %d refused with a status, %d failed\n", name,
         resource == RLIMIT_AS ? "RLIMIT_AS" : "RLIMIT_DATA", ok + refused + bad, ok, refused, bad);
  CHECK_EQ(bad, 0);
  if (need_both) CHECK(ok > 0 && refused > 0);
}

/* The table's address space: 256 MiB of entries, 32 MiB of metadata, 16 MiB
 * of generation bytes, plus about 370 KiB of control state (64 KiB of it the
 * per-thread stacks of free entries); in the alias
 * mode, another 256 MiB for the alias of the entries. */
#define RESERVE_KIB (304L * 1024 + (wcpt_protection_mode() == WCPT_PROTECTION_ALIAS ? 256L * 1024 : 0))

static void test_init_under_limits(void) {
  sweep_window("init", site_init, RLIMIT_AS, RESERVE_KIB - 256, RESERVE_KIB + 768, 16, 1);
  sweep_window("init", site_init, RLIMIT_DATA, 0, 512, 8, 1);
}

static void test_first_segment_under_limits(void) {
  /* Committing counts against RLIMIT_DATA only: the reservation is already
   * in the address space, so under RLIMIT_AS every limit succeeds. */
  sweep_window("first segment", site_first_segment, RLIMIT_AS, 0, 160, 4, 0);
  sweep_window("first segment", site_first_segment, RLIMIT_DATA, 0, 160, 4, 1);
}

static void test_native_growth_under_limits(void) {
  sweep_window("native growth", site_native_growth, RLIMIT_AS, 0, 256, 4, 1);
  sweep_window("native growth", site_native_growth, RLIMIT_DATA, 0, 256, 4, 1);
}

static void test_set_many_under_limits(void) {
  sweep_window("set_many 16M", site_set_many_huge, RLIMIT_AS, 0, 256, 16, 0);
}

static void test_fork_under_limits(void) {
  sweep_window("fork", site_fork, RLIMIT_AS, 0, 256, 16, 0);
  sweep_window("fork", site_fork, RLIMIT_DATA, 0, 256, 16, 0);
}

int main(void) {
  if (check_instrumented()) {
    /* Sanitizers and valgrind map memory of their own: limits mean nothing. */
    printf("  skip: the sanitizers' own memory makes RLIMIT probes meaningless\n");
    printf("test_oom: 0 passed, 0 failed, 1 skipped\n");
    return 0;
  }
  /* First, while this process has no table: each child creates its own. */
  RUN(test_init_under_limits);
  RUN(test_first_segment_under_limits);
  RUN(test_native_growth_under_limits);
  RUN(test_set_many_under_limits);
  RUN(test_fork_under_limits);
  return check_finish("test_oom");
}
