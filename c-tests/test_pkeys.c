/* Write protection with protection keys on, run by `make check-pkeys` in a
 * guest with emulated PKU. It fails, and never skips, where pkeys are off.
 *
 * Every "stray" write below is a plain store to protected memory, outside
 * the library; it must fault with SEGV_PKUERR and leave the memory as it
 * was. Every library call must work from any thread state, and no sequence
 * of them may leave a thread able to write the table.
 *
 * WCPT_PKEYS_LOOPS (default 300) sizes the loops: every emulated WRPKRU
 * costs microseconds in the guest. */
#include "check.h"
#include "stray.h"
#include "wcpt.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>

static int loops(void) {
  const char *s = getenv("WCPT_PKEYS_LOOPS");
  int n = s ? atoi(s) : 0;
  return n > 0 ? n : 300;
}

static volatile uint64_t *entry_word(wcpt_handle h) {
  return (volatile uint64_t *)((uintptr_t)wcpt_table_base() + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
}

static int key;
static uint32_t ad, wd; /* the key's access-disable and write-disable bits */

/* The entry of h is protected: a stray write faults with SEGV_PKUERR and
 * the entry still holds `expect` (checked through the library). */
#define CHECK_PROTECTED(h, expect)                                             \
  do {                                                                         \
    CHECK_EQ(stray_write(entry_word(h), 0x4141414141ull), SEGV_PKUERR);        \
    CHECK_EQ(wcpt_get(h), (expect));                                           \
  } while (0)

/* The calling thread's rights for the key are exactly read-only. */
#define CHECK_READ_ONLY() CHECK_EQ(test_pkru_read() & (ad | wd), wd)

static uintptr_t ep(int i) { return 0x10000 + 16 * (uintptr_t)i; }

/* ---- the main thread, before and after every kind of library call ---- */

static void test_main_thread_every_call(void) {
  wcpt_handle h = wcpt_alloc(0x7000, 1);
  CHECK_PROTECTED(h, 0x7000);
  CHECK_READ_ONLY();
  wcpt_handle k = wcpt_alloc(0x7100, 2);
  CHECK_PROTECTED(h, 0x7000);
  CHECK_EQ(wcpt_get_checked(k, 2), 0x7100);
  CHECK_PROTECTED(h, 0x7000);
  CHECK_EQ(wcpt_set(k, 0x7200), WCPT_OK);
  CHECK_PROTECTED(h, 0x7000);
  CHECK_EQ(wcpt_set(h, 0x7300), WCPT_OK);
  CHECK_PROTECTED(h, 0x7300);
  uintptr_t eps[2] = {0x7400, 0x7500};
  wcpt_handle hs[2] = {h, k};
  CHECK_EQ(wcpt_set_many(hs, eps, 2), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_free(k), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_free(k), WCPT_ERR_DOUBLE_FREE); /* refused: opens no window */
  CHECK_PROTECTED(h, 0x7400);
  wcpt_handle n = wcpt_native_handle(0x7600);
  CHECK_EQ(wcpt_get(n), 0x7600);
  CHECK_PROTECTED(n, 0x7600);
  CHECK_PROTECTED(h, 0x7400);
  wcpt_sweep(0);
  CHECK_PROTECTED(h, 0x7400);
  struct wcpt_stats s;
  CHECK_EQ(wcpt_stats(&s), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_thread_attach(), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  wcpt_signal_enter();
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_code_region_add(0x7000, 0x1000), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_set(h, 0x9000), WCPT_ERR_NOT_CODE);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_code_region_remove(0x7000, 0x1000), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_EQ(wcpt_alloc((uintptr_t)1 << 63, 1), WCPT_INVALID_HANDLE); /* refused */
  CHECK_PROTECTED(h, 0x7400);
  (void)wcpt_last_error();
  (void)wcpt_status_str(WCPT_OK);
  (void)wcpt_version();
  (void)wcpt_protection_mode();
  (void)wcpt_pkru_writes();
  CHECK_EQ(wcpt_init(), WCPT_OK);
  CHECK_PROTECTED(h, 0x7400);
  CHECK_READ_ONLY();
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_EQ(stray_write(entry_word(h), 0x4141), SEGV_PKUERR); /* a free entry too */
}

/* ---- a thread created after the library was loaded ---- */

static wcpt_handle shared_h;

static void *after_load_thread(void *arg) {
  (void)arg;
  CHECK_READ_ONLY(); /* inherited from the main thread */
  CHECK_EQ(*entry_word(shared_h), 0x7700); /* direct reads work */
  CHECK_PROTECTED(shared_h, 0x7700);
  wcpt_handle h = wcpt_alloc(0x7800, 3);
  CHECK_PROTECTED(h, 0x7800);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_PROTECTED(shared_h, 0x7700);
  return NULL;
}

static void test_thread_created_after_load(void) {
  shared_h = wcpt_alloc(0x7700, 1);
  pthread_t t;
  pthread_create(&t, NULL, after_load_thread, NULL);
  pthread_join(t, NULL);
  CHECK_EQ(wcpt_free(shared_h), WCPT_OK);
}

/* ---- signal handlers ---- */

static wcpt_handle sig_h;
static volatile int sig_first, sig_after_get, sig_after_enter, sig_after_alloc;
static volatile uintptr_t sig_got, sig_direct;

static void on_usr1(int sig) {
  (void)sig;
  sig_first = stray_write(entry_word(sig_h), 1); /* no access at all yet */
  sig_got = wcpt_get(sig_h);
  sig_after_get = stray_write(entry_word(sig_h), 2);
  wcpt_signal_enter();
  sig_direct = *entry_word(sig_h);
  sig_after_enter = stray_write(entry_word(sig_h), 3);
  wcpt_handle k = wcpt_alloc(0x7a00, 4); /* a write window inside the handler */
  sig_after_alloc = stray_write(entry_word(sig_h), 4);
  wcpt_free(k);
}

static void test_signal_handler(void) {
  sig_h = wcpt_alloc(0x7900, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  CHECK_EQ(sig_first, SEGV_PKUERR);
  CHECK_EQ(sig_got, 0x7900);
  CHECK_EQ(sig_after_get, SEGV_PKUERR);
  CHECK_EQ(sig_direct, 0x7900);
  CHECK_EQ(sig_after_enter, SEGV_PKUERR);
  CHECK_EQ(sig_after_alloc, SEGV_PKUERR);
  CHECK_READ_ONLY(); /* the handler's changes did not leak out */
  CHECK_PROTECTED(sig_h, 0x7900);
  CHECK_EQ(wcpt_free(sig_h), WCPT_OK);
}

/* SIGALRM at a high rate while the main thread loops over alloc, set and
 * free: handlers that interrupt a write window must not be able to write,
 * and the interrupted window must still be open when they return (else the
 * library's own store would fault and stray.h would exit 97). */
static wcpt_handle alrm_h;
static volatile int alrm_runs, alrm_bad, alrm_in_window;
static unsigned pkru_offset; /* of PKRU in the XSAVE area of a signal frame */

static void on_alrm(int sig, siginfo_t *si, void *ctx) {
  (void)sig;
  (void)si;
  ucontext_t *uc = ctx;
  alrm_runs++;
  if (pkru_offset && uc->uc_mcontext.fpregs) {
    const unsigned char *xs = (const unsigned char *)uc->uc_mcontext.fpregs;
    uint64_t xstate_bv;
    memcpy(&xstate_bv, xs + 512, 8);
    uint32_t interrupted = 0;
    if (xstate_bv & (1u << 9)) memcpy(&interrupted, xs + pkru_offset, 4);
    if ((xstate_bv & (1u << 9)) && (interrupted & (ad | wd)) == 0) alrm_in_window++;
  }
  if (stray_write(entry_word(alrm_h), 5) != SEGV_PKUERR) alrm_bad++;
  if (wcpt_get(alrm_h) != 0x7b00) alrm_bad++;
  if (stray_write(entry_word(alrm_h), 6) != SEGV_PKUERR) alrm_bad++;
}

static void test_signal_interrupting_windows(void) {
  unsigned eax, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0xD), "c"(9));
  pkru_offset = eax >= 4 ? ebx : 0;
  alrm_h = wcpt_alloc(0x7b00, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_alrm;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &it, NULL);
  int n = loops() * 20, wrong = 0;
  for (int i = 0; i < n; i++) {
    wcpt_handle h = wcpt_alloc(ep(i), 7);
    if (wcpt_set(h, ep(i) + 8) != WCPT_OK || wcpt_get_checked(h, 7) != ep(i) + 8) wrong++;
    uintptr_t e = ep(i) + 16;
    if (wcpt_set_many(&h, &e, 1) != WCPT_OK || wcpt_get(h) != e) wrong++;
    if (wcpt_free(h) != WCPT_OK) wrong++;
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  signal(SIGALRM, SIG_DFL);
  printf("  %d handlers ran, %d interrupted an open write window\n", alrm_runs, alrm_in_window);
  CHECK_EQ(wrong, 0);
  CHECK_EQ(alrm_bad, 0);
  CHECK(alrm_runs > 0);
  CHECK(alrm_in_window > 0); /* the case the test is for did happen */
  CHECK_READ_ONLY();
  CHECK_PROTECTED(alrm_h, 0x7b00);
  CHECK_EQ(wcpt_free(alrm_h), WCPT_OK);
}

/* ---- siglongjmp out of a handler ---- */

static sigjmp_buf jump;
static volatile int jump_enter;

static void on_usr2(int sig) {
  (void)sig;
  if (jump_enter) wcpt_signal_enter();
  siglongjmp(jump, 1);
}

static void test_after_siglongjmp(void) {
  wcpt_handle h = wcpt_alloc(0x7c00, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  for (jump_enter = 0; jump_enter < 2; jump_enter++) {
    if (sigsetjmp(jump, 1) == 0) raise(SIGUSR2);
    /* The handler's rights stayed: none, or read-only after signal_enter. */
    CHECK_EQ(test_pkru_read() & (ad | wd), jump_enter ? wd : ad);
    CHECK_EQ(stray_write(entry_word(h), 7), SEGV_PKUERR);
    CHECK_EQ(wcpt_thread_attach(), WCPT_OK); /* the documented repair */
    CHECK_READ_ONLY();
    CHECK_EQ(*entry_word(h), 0x7c00);
    CHECK_PROTECTED(h, 0x7c00);
  }
  /* A library call repairs too (to read-only). */
  if (sigsetjmp(jump, 1) == 0) raise(SIGUSR2);
  CHECK_EQ(wcpt_get(h), 0x7c00);
  CHECK_READ_ONLY();
  CHECK_PROTECTED(h, 0x7c00);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

/* ---- a fork child ---- */

static void test_fork_child(void) {
  wcpt_handle h = wcpt_alloc(0x7d00, 1);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = 0;
    bad |= stray_write(entry_word(h), 8) != SEGV_PKUERR;
    bad |= (wcpt_set(h, 0x7e00) != WCPT_OK || wcpt_get(h) != 0x7e00) << 1;
    bad |= (stray_write(entry_word(h), 9) != SEGV_PKUERR) << 2;
    wcpt_handle k = wcpt_alloc(0x7f00, 2);
    bad |= (wcpt_free(k) != WCPT_OK) << 3;
    bad |= (stray_write(entry_word(h), 10) != SEGV_PKUERR || wcpt_get(h) != 0x7e00) << 4;
    _exit(bad);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
  CHECK_PROTECTED(h, 0x7d00); /* the child's set stayed in the child */
  CHECK_EQ(wcpt_free(h), WCPT_OK);
}

/* ---- every protected region, not only entries ---- */

/* Every mapping tagged with the table's key: entries, metadata, generation
 * bytes, freelist heads, segment states and claims, native map arrays. A
 * stray write anywhere in any of them must fault. */
static void test_every_protected_region(void) {
  /* Make sure every kind of region exists: entries, natives, a freed entry. */
  wcpt_handle h = wcpt_alloc(0x8000, 1);
  for (int i = 0; i < 100; i++) wcpt_native_handle(0x8100 + 16 * (uintptr_t)i); /* map grows */
  wcpt_handle f = wcpt_alloc(0x8200, 1);
  wcpt_free(f);
  FILE *maps = fopen("/proc/self/smaps", "r");
  CHECK(maps != NULL);
  if (!maps) return;
  char line[512];
  unsigned long lo = 0, hi = 0;
  char perms[8] = "";
  int regions = 0, pages = 0, bad = 0;
  unsigned long los[256], his[256];
  while (fgets(line, sizeof line, maps)) {
    int k;
    unsigned long l, h_;
    char p[8];
    /* A header line; sscanf may assign before failing on other lines. */
    if (sscanf(line, "%lx-%lx %7s", &l, &h_, p) == 3 && strchr(line, '-') < strchr(line, ' ')) {
      lo = l, hi = h_;
      memcpy(perms, p, sizeof perms);
      continue;
    }
    if (sscanf(line, "ProtectionKey: %d", &k) == 1 && k == key && perms[1] == 'w' && regions < 256) {
      los[regions] = lo;
      his[regions] = hi;
      regions++;
    }
  }
  fclose(maps);
  /* Probe after reading smaps (probing while reading would change nothing,
   * but keeps the output simple). Every page's first and last word. */
  for (int r = 0; r < regions; r++) {
    int first = stray_write((volatile void *)los[r], 0x4242);
    printf("    %#lx-%#lx (%lu KiB): %s\n", los[r], his[r], (his[r] - los[r]) / 1024,
           first == SEGV_PKUERR ? "SEGV_PKUERR" : first == 0 ? "WRITTEN" : "other fault");
    for (unsigned long p = los[r]; p < his[r] && pages < 200000; p += 4096, pages++) {
      if (stray_write((volatile void *)p, 0x4242) != SEGV_PKUERR) bad++;
      if (stray_write((volatile void *)(p + 4088), 0x4242) != SEGV_PKUERR) bad++;
    }
  }
  printf("  %d mappings tagged with key %d (%d pages probed)\n", regions, key, pages);
  CHECK_EQ(bad, 0);
  CHECK(regions >= 4); /* entries, metadata, generation bytes, control state */
  CHECK_PROTECTED(h, 0x8000);
  CHECK_EQ(wcpt_get(f), 0);
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_EQ(wcpt_native_handle(0x8100), wcpt_native_handle(0x8100));
}

/* ---- every export from a thread with no access at all ---- */

static void no_access(void) { test_pkru_write((test_pkru_read() & ~(ad | wd)) | ad); }

static void *no_access_thread(void *arg) {
  (void)arg;
  wcpt_handle h;
  uintptr_t e = 0x8400;
  struct wcpt_stats s;
#define FROM_NOTHING(call)                                                     \
  do {                                                                         \
    no_access();                                                               \
    call;                                                                      \
    CHECK_EQ(stray_write(entry_word(h), 0x4343), SEGV_PKUERR);                 \
  } while (0)
  no_access();
  h = wcpt_alloc(0x8300, 5);
  CHECK(h != WCPT_INVALID_HANDLE);
  CHECK_EQ(stray_write(entry_word(h), 0x4343), SEGV_PKUERR);
  FROM_NOTHING(CHECK_EQ(wcpt_init(), WCPT_OK));
  FROM_NOTHING(CHECK_EQ(wcpt_get(h), 0x8300));
  FROM_NOTHING(CHECK_EQ(wcpt_get_checked(h, 5), 0x8300));
  FROM_NOTHING(CHECK_EQ(wcpt_set(h, 0x8400), WCPT_OK));
  FROM_NOTHING(CHECK_EQ(wcpt_set_many(&h, &e, 1), WCPT_OK));
  FROM_NOTHING(CHECK(wcpt_native_handle(0x8500) != WCPT_INVALID_HANDLE));
  FROM_NOTHING(CHECK(wcpt_native_handle(0x8500) != WCPT_INVALID_HANDLE));
  FROM_NOTHING(wcpt_sweep(0));
  FROM_NOTHING(CHECK_EQ(wcpt_stats(&s), WCPT_OK));
  FROM_NOTHING(CHECK(wcpt_table_base() != NULL));
  FROM_NOTHING(CHECK_EQ(wcpt_thread_attach(), WCPT_OK));
  FROM_NOTHING(wcpt_signal_enter());
  FROM_NOTHING(CHECK_EQ(wcpt_code_region_add(0x8000, 0x1000), WCPT_OK));
  FROM_NOTHING(CHECK_EQ(wcpt_code_region_remove(0x8000, 0x1000), WCPT_OK));
  FROM_NOTHING(CHECK(wcpt_status_str(WCPT_OK) != NULL));
  FROM_NOTHING((void)wcpt_last_error());
  FROM_NOTHING(CHECK_EQ(wcpt_protection_mode(), WCPT_PROTECTION_PKEYS));
  FROM_NOTHING((void)wcpt_pkru_writes());
  FROM_NOTHING(CHECK(wcpt_version() != NULL));
  FROM_NOTHING(CHECK_EQ(wcpt_free(h + (1u << 24)), WCPT_ERR_INVALID_HANDLE));
  no_access();
  CHECK_EQ(wcpt_free(h), WCPT_OK);
  CHECK_EQ(stray_write(entry_word(h), 0x4343), SEGV_PKUERR);
  no_access();
  CHECK_EQ(wcpt_get(h), 0);
  return NULL;
}

static void test_every_export_from_no_access(void) {
  pthread_t t;
  pthread_create(&t, NULL, no_access_thread, NULL);
  pthread_join(t, NULL);
}

/* ---- PKRU writes per call, when the thread's rights are already right ---- */

#define WRITES(call) (before_ = wcpt_pkru_writes(), (void)(call), wcpt_pkru_writes() - before_)

static void test_pkru_write_counts(void) {
  uint64_t before_;
  CHECK_EQ(wcpt_thread_attach(), WCPT_OK);
  wcpt_handle h = wcpt_alloc(0x8600, 1);
  enum { N = 1000 };
  static wcpt_handle many[N];
  static uintptr_t eps[N];
  for (int i = 0; i < N; i++) many[i] = wcpt_alloc(ep(i), 2), eps[i] = ep(i) + 4;
  wcpt_handle n = wcpt_native_handle(0x8700);
  struct wcpt_stats s;
  wcpt_handle k;
  uint64_t c;
  printf("  PKRU writes per call (rights already read-only):\n");
#define COUNT(name, call, limit)                                               \
  c = WRITES(call);                                                            \
  printf("    %-28s %llu\n", name, (unsigned long long)c);                    \
  CHECK(c <= (limit))
  COUNT("wcpt_get", wcpt_get(h), 0);
  COUNT("wcpt_get_checked", wcpt_get_checked(h, 1), 0);
  COUNT("wcpt_native_handle (known)", wcpt_native_handle(0x8700), 0);
  COUNT("wcpt_stats", wcpt_stats(&s), 0);
  COUNT("wcpt_thread_attach", wcpt_thread_attach(), 0);
  COUNT("wcpt_signal_enter", wcpt_signal_enter(), 0);
  COUNT("wcpt_alloc", k = wcpt_alloc(0x8800, 3), 2);
  COUNT("wcpt_set", wcpt_set(k, 0x8900), 2);
  COUNT("wcpt_free", wcpt_free(k), 2);
  COUNT("wcpt_free (refused)", wcpt_free(k), 0);
  COUNT("wcpt_set_many (n = 1)", wcpt_set_many(many, eps, 1), 2);
  COUNT("wcpt_set_many (n = 1000)", wcpt_set_many(many, eps, N), 2);
  CHECK_EQ(WRITES(wcpt_set_many(many, eps, N)), 2); /* exactly one window */
  {
    static wcpt_handle batch[N];
    static uint64_t sigs[N];
    for (int i = 0; i < N; i++) sigs[i] = 5;
    COUNT("wcpt_alloc_many (n = 1000)", wcpt_alloc_many(eps, sigs, N, batch), 2);
    CHECK_EQ(c, 2); /* one window, whatever n */
    COUNT("wcpt_free_many (n = 1000)", wcpt_free_many(batch, N), 2);
    CHECK_EQ(c, 2);
    COUNT("wcpt_free_many (refused)", wcpt_free_many(batch, N), 0);
  }
  CHECK_EQ(WRITES(wcpt_alloc(0x8a00, 3)), 2);
  /* A sweep opens one window, and only when it releases something. */
  COUNT("wcpt_sweep (nothing to release)", wcpt_sweep((size_t)-1), 0);
  enum { SEG = 3 * 4096 };
  static wcpt_handle seg[SEG];
  for (int i = 0; i < SEG; i++) seg[i] = wcpt_alloc(ep(i), 4);
  for (int i = 0; i < SEG; i++) wcpt_free(seg[i]);
  size_t released = 0;
  COUNT("wcpt_sweep (releasing)", released = wcpt_sweep(0), 2);
  CHECK(released > 0);
  /* From no access, a lookup repairs with one write. */
  no_access();
  COUNT("wcpt_get (from no access)", wcpt_get(h), 1);
  CHECK_EQ(c, 1);
  CHECK_READ_ONLY();
  for (int i = 0; i < N; i++) wcpt_free(many[i]);
  wcpt_free(h);
  (void)n;
}

int main(void) {
  stray_install();
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (wcpt_protection_mode() != WCPT_PROTECTION_PKEYS) {
    printf("  FAIL: protection mode is not WCPT_PROTECTION_PKEYS: this guest has no working pkeys\n");
    printf("test_pkeys: 0 passed, 1 failed, 0 skipped\n");
    return 1;
  }
  wcpt_handle probe = wcpt_alloc(0x1234, 0);
  key = stray_key_of((const void *)entry_word(probe));
  wcpt_free(probe);
  ad = 1u << (2 * key);
  wd = 2u << (2 * key);
  printf("  protection key %d, PKRU %#x\n", key, test_pkru_read());
  CHECK(key > 0);
  RUN(test_main_thread_every_call);
  RUN(test_thread_created_after_load);
  RUN(test_signal_handler);
  RUN(test_signal_interrupting_windows);
  RUN(test_after_siglongjmp);
  RUN(test_fork_child);
  RUN(test_every_protected_region);
  RUN(test_every_export_from_no_access);
  RUN(test_pkru_write_counts);
  return check_finish("test_pkeys");
}
