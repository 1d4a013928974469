/* The alias protection (WCPT_PROTECTION_ALIAS), the default where pkeys are
 * missing. The program re-executes itself with WCPT_PROTECT=alias unless it
 * already runs in that mode, so it tests the alias everywhere (natively in
 * `make check`, and in the pkeys VM too). It checks that
 * - the mode is chosen and reported truthfully (WCPT_PROTECT);
 * - a stray store to the public view faults (SEGV_ACCERR) from the main
 *   thread, another thread, a signal handler and a fork child, at live,
 *   free and never-committed entries, and changes nothing;
 * - a fork child has every handle, its writes never reach the parent, and
 *   a child made by _Fork (no fork handlers) faults instead of sharing;
 * - reading every page of the table allocates nothing;
 * - commit/release/sweep cycles with concurrent readers never fault and
 *   never show a wrong value;
 * - the alias sits at a random address, next to nothing, away from the
 *   view by a different distance in every process. */
#include "check.h"
#include "stray.h"
#include "wcpt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *self_path;

static volatile uint64_t *entry_word(wcpt_handle h) {
  return (volatile uint64_t *)((uintptr_t)wcpt_table_base() + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
}

/* The mode a fresh process reports with WCPT_PROTECT=value (NULL: unset). */
static int mode_with(const char *value) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (value) setenv("WCPT_PROTECT", value, 1); else unsetenv("WCPT_PROTECT");
    check_exec_self(self_path, "--report-mode");
    _exit(99);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) - 10 : -1;
}

/* valgrind reports a fault at its own translation of the store, which
 * stray.h cannot step over: the stray-write checks need a native run. */
static int under_valgrind(void) {
  const char *p = getenv("LD_PRELOAD");
  return p && strstr(p, "vgpreload") != NULL;
}
#define NEEDS_NATIVE_FAULTS() \
  do {                       \
    if (under_valgrind()) SKIP("stray-write probes need a native run (valgrind)"); \
  } while (0)

static int pkeys_work(void) {
  long key = syscall(SYS_pkey_alloc, 0, 0);
  if (key < 0) return 0;
  syscall(SYS_pkey_free, key);
  return 1;
}

static void test_mode_selection(void) {
  int strongest = pkeys_work() ? WCPT_PROTECTION_PKEYS : WCPT_PROTECTION_ALIAS;
  CHECK_EQ(mode_with(NULL), strongest);
  CHECK_EQ(mode_with("pkeys"), strongest); /* falls back to the alias */
  CHECK_EQ(mode_with("alias"), WCPT_PROTECTION_ALIAS);
  CHECK_EQ(mode_with("off"), WCPT_PROTECTION_NONE);
  CHECK_EQ(wcpt_protection_mode(), WCPT_PROTECTION_ALIAS);
}

/* Stray stores at a live, a free and a never-committed entry fault with
 * SEGV_ACCERR and change nothing. */
static int stray_round(wcpt_handle live, wcpt_handle freed, uintptr_t ep) {
  int bad = 0;
  bad |= stray_write(entry_word(live), 0x4141414141ull) != SEGV_ACCERR;
  bad |= stray_write(entry_word(live) + 1, 0) != SEGV_ACCERR;
  bad |= stray_write(entry_word(freed), 0x4242) != SEGV_ACCERR;
  bad |= stray_write(entry_word(0xFFFFF0), 0x4343) != SEGV_ACCERR; /* never committed */
  bad |= wcpt_get(live) != ep || wcpt_get(freed) != 0 || wcpt_get(0xFFFFF0) != 0;
  return bad;
}

static wcpt_handle g_live, g_freed;
static volatile int sig_bad = -1;

static void *stray_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)stray_round(g_live, g_freed, 0x7000);
}

static void on_usr1(int sig) {
  (void)sig;
  sig_bad = stray_round(g_live, g_freed, 0x7000);
}

static void test_stray_writes_fault_everywhere(void) {
  NEEDS_NATIVE_FAULTS();
  g_live = wcpt_alloc(0x7000, 3);
  g_freed = wcpt_alloc(0x7100, 3);
  CHECK_EQ(wcpt_free(g_freed), WCPT_OK);
  CHECK_EQ(stray_round(g_live, g_freed, 0x7000), 0);
  pthread_t t;
  void *r = (void *)1;
  pthread_create(&t, NULL, stray_thread, NULL);
  pthread_join(t, &r);
  CHECK_EQ((intptr_t)r, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  CHECK_EQ(sig_bad, 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) _exit(stray_round(g_live, g_freed, 0x7000) ? 1 : 0);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* The library still writes (through the alias), and a store after its
   * writes faults again. */
  CHECK_EQ(wcpt_set(g_live, 0x7200), WCPT_OK);
  CHECK_EQ(stray_round(g_live, g_freed, 0x7200), 0);
  CHECK_EQ(wcpt_free(g_live), WCPT_OK);
}

static void test_fork_children_own_their_table(void) {
  NEEDS_NATIVE_FAULTS();
  enum { N = 20000 }; /* several segments */
  static wcpt_handle hs[N];
  for (int i = 0; i < N; i++) hs[i] = wcpt_alloc(0x100000 + 16 * (uintptr_t)i, 5);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < N; i++)
      if (wcpt_get(hs[i]) != 0x100000 + 16 * (uintptr_t)i) _exit(1);
    for (int i = 0; i < N; i += 2)
      if (wcpt_set(hs[i], 0x900000) != WCPT_OK) _exit(2);
    for (int i = 1; i < N; i += 2)
      if (wcpt_free(hs[i]) != WCPT_OK) _exit(3);
    for (int i = 0; i < 5000; i++)
      if (wcpt_alloc(0xA00000, 6) == WCPT_INVALID_HANDLE) _exit(4);
    if (stray_write(entry_word(hs[0]), 1) != SEGV_ACCERR) _exit(5);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  int intact = 1;
  for (int i = 0; i < N; i++) intact &= wcpt_get(hs[i]) == 0x100000 + 16 * (uintptr_t)i;
  CHECK(intact); /* none of the child's writes reached the parent */
  for (int i = 0; i < N; i++) CHECK_EQ(wcpt_free(hs[i]), WCPT_OK);
}

static void test_fork_without_handlers_fails_loudly(void) {
  NEEDS_NATIVE_FAULTS();
  if (check_emulated()) SKIP("QEMU's user mode does not emulate MADV_DONTFORK");
  wcpt_handle h = wcpt_alloc(0x7300, 1);
  fflush(stdout);
  pid_t pid = _Fork();
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);
    (void)wcpt_get(h); /* the library's mapping of the entries is not here */
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  CHECK_EQ(wcpt_get(h), 0x7300);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

static void test_hole_reads_allocate_nothing(void) {
  wcpt_sweep(0);
  long before = rss_kib();
  uint64_t sum = 0;
  for (uintptr_t off = 0; off < ((uintptr_t)1 << 24) * WCPT_ENTRY_SIZE; off += 4096)
    sum += *(volatile uint64_t *)((uintptr_t)wcpt_table_base() + off);
  for (uint32_t i = 0; i < 100000; i++) sum += wcpt_get(i * 2654435761u);
  long after = rss_kib();
  printf("  65,536 page reads and 100,000 lookups: RSS %ld -> %ld KiB (sum %llu)\n", before, after,
         (unsigned long long)sum);
  CHECK(after - before < 1024);
}

enum { CYCLE_N = 3 * 4096, READERS = 2 };
static wcpt_handle anchors[64];
static _Atomic wcpt_handle churned[CYCLE_N];
static atomic_int stop_readers;
static atomic_long reader_errors, reader_reads;

static void *reader(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  long errors = 0, reads = 0;
  while (!atomic_load(&stop_readers)) {
    for (int i = 0; i < 64; i++) errors += wcpt_get(anchors[i]) != 0x500000 + 16 * (uintptr_t)i;
    for (int i = 0; i < 256; i++) {
      seed = seed * 1103515245u + 12345u;
      wcpt_handle h = atomic_load(&churned[seed % CYCLE_N]);
      uintptr_t ep = wcpt_get(h);
      uintptr_t direct = wcpt_call_target(wcpt_table_base(), h, 9);
      errors += ep != 0 && ep != 0x600000;
      errors += direct != 0 && direct != 0x600000;
      reads += 2;
    }
  }
  atomic_fetch_add(&reader_errors, errors);
  atomic_fetch_add(&reader_reads, reads);
  return NULL;
}

static void test_commit_release_cycles_with_readers(void) {
  for (int i = 0; i < 64; i++) anchors[i] = wcpt_alloc(0x500000 + 16 * (uintptr_t)i, 8);
  pthread_t t[READERS];
  for (int i = 0; i < READERS; i++) pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)(i + 1));
  size_t released = 0;
  int cycles = getenv("WCPT_TEST_QUICK") ? 6 : 30;
  for (int cycle = 0; cycle < cycles; cycle++) {
    for (int i = 0; i < CYCLE_N; i++) atomic_store(&churned[i], wcpt_alloc(0x600000, 9));
    for (int i = 0; i < CYCLE_N; i++) CHECK_EQ(wcpt_free(atomic_load(&churned[i])), WCPT_OK);
    released += wcpt_sweep(0);
  }
  atomic_store(&stop_readers, 1);
  for (int i = 0; i < READERS; i++) pthread_join(t[i], NULL);
  printf("  %d cycles: %zu segments released, %ld reads, %ld wrong\n", cycles, released,
         atomic_load(&reader_reads), atomic_load(&reader_errors));
  CHECK(released >= (size_t)cycles);
  CHECK_EQ(atomic_load(&reader_errors), 0);
  for (int i = 0; i < 64; i++) CHECK_EQ(wcpt_free(anchors[i]), WCPT_OK);
}

/* The start of the view and of the alias, and whether anything is mapped
 * right next to the alias, from /proc/self/maps. */
struct placement {
  uintptr_t view, alias;
  int alias_has_neighbour;
};

static struct placement find_placement(void) {
  struct placement p = {0, 0, 0};
  uintptr_t base = (uintptr_t)wcpt_table_base(), size = ((uintptr_t)1 << 24) * WCPT_ENTRY_SIZE;
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  uintptr_t prev_end = 0;
  uintptr_t lo, hi;
  /* The alias: the writable mapping of the memfd. */
  while (f && fgets(line, sizeof line, f)) {
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && strstr(line, "memfd:wcpt") && perms[1] == 'w' &&
        !(lo >= base && lo < base + size))
      if (!p.alias || lo < p.alias) p.alias = lo;
  }
  p.view = base;
  if (!f) return p;
  /* The alias reservation is size bytes from the first segment's mapping
   * (segment 0 is committed, so the alias starts with it). */
  rewind(f);
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
    if (hi == p.alias) p.alias_has_neighbour = 1;                       /* adjacent below */
    if (lo == p.alias + size) p.alias_has_neighbour = 1;                /* adjacent above */
    prev_end = hi;
  }
  (void)prev_end;
  fclose(f);
  return p;
}

static void test_alias_is_random_and_alone(void) {
  wcpt_handle h = wcpt_alloc(0x7400, 1); /* segment 0 is committed */
  struct placement here = find_placement();
  CHECK(here.alias != 0);
  CHECK(!here.alias_has_neighbour);
  /* Other processes: the alias is elsewhere, at another distance from the
   * view (children print theirs). */
  int distinct = 0;
  for (int i = 0; i < 8; i++) {
    int fds[2];
    if (pipe(fds) != 0) break;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      check_exec_self(self_path, "--print-placement");
      _exit(99);
    }
    close(fds[1]);
    char buf[64] = "";
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    unsigned long long distance = 0;
    if (n > 0 && sscanf(buf, "%llx", &distance) == 1 && distance != (unsigned long long)(here.alias - here.view))
      distinct++;
  }
  CHECK_EQ(distinct, 8);
  /* And in a fork child, its own alias (the parent's is not inherited;
   * QEMU's user mode does not emulate MADV_DONTFORK, which that needs). */
  if (check_emulated()) {
    CHECK_EQ(wcpt_free(h), WCPT_OK);
    return;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    struct placement child = find_placement();
    _exit(child.alias != 0 && child.alias != here.alias && child.view == here.view ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

int main(int argc, char **argv) {
  self_path = argv[0];
  if (argc > 1 && strcmp(argv[1], "--report-mode") == 0) return 10 + (int)wcpt_protection_mode();
  if (argc > 1 && strcmp(argv[1], "--print-placement") == 0) {
    wcpt_handle h = wcpt_alloc(0x7400, 1);
    struct placement p = find_placement();
    printf("%llx\n", (unsigned long long)(p.alias - p.view));
    return h == WCPT_INVALID_HANDLE;
  }
  if (wcpt_protection_mode() != WCPT_PROTECTION_ALIAS) {
    const char *mode = getenv("WCPT_PROTECT");
    if (mode && strcmp(mode, "alias") == 0) {
      printf("test_alias: WCPT_PROTECT=alias did not give the alias mode\n");
      return 1;
    }
    setenv("WCPT_PROTECT", "alias", 1);
    fflush(stdout);
    execv(self_path, argv);
    return 1;
  }
  stray_install();
  RUN(test_mode_selection);
  RUN(test_stray_writes_fault_everywhere);
  RUN(test_fork_children_own_their_table);
  RUN(test_fork_without_handlers_fails_loudly);
  RUN(test_hole_reads_allocate_nothing);
  RUN(test_commit_release_cycles_with_readers);
  RUN(test_alias_is_random_and_alone);
  return check_finish("test_alias");
}
