/* wcpt_init_with: the embedder's configuration. Every case runs in a forked
 * child of its own (the parent never creates a table), so each starts with
 * no table and the library's load-time state.
 *
 * - every malformed configuration is refused with WCPT_ERR_INVALID_ARGUMENT
 *   and creates nothing (a later init with another configuration works);
 * - the already-initialised rules, and a new configuration after teardown;
 * - max_entries caps live entries (alloc, batch, natives) and stats;
 * - the protection modes, exact or AUTO, the environment only where a field
 *   is left at its default, and WCPT_CONFIG_REQUIRE_PROTECTION;
 * - with PKU (make check-pkeys runs this with WCPT_TEST_REQUIRE_PKU=1, so
 *   there these cases fail rather than skip): an engine's shared key, with
 *   windows nesting both ways and stray writes faulting from every kind of
 *   thread and from signal handlers; a key the process never allocated;
 *   and the fallback when the kernel has no key left. */
#include "check.h"
#include "stray.h"
#include "wcpt.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs `fn` in a child; its exit status 0 is success, anything else is the
 * failing step (printed). */
static void in_child(const char *name, int (*fn)(void)) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(60);
    stray_install();
    _exit(fn());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "  %s: %s %d\n", name, WIFEXITED(status) ? "failed at step" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static struct wcpt_config defaults(void) {
  struct wcpt_config c;
  memset(&c, 0xAB, sizeof c); /* wcpt_config_init must set every field */
  wcpt_config_init(&c);
  return c;
}

static struct wcpt_config capped(uint32_t n) {
  struct wcpt_config c = defaults();
  c.max_entries = n;
  return c;
}

__attribute__((unused)) static long sys_pkey_alloc(unsigned long flags, unsigned long rights) { return syscall(SYS_pkey_alloc, flags, rights); }
__attribute__((unused)) static long sys_pkey_free(int key) { return syscall(SYS_pkey_free, key); }
__attribute__((unused)) static long sys_pkey_mprotect(void *p, size_t len, int prot, int key) {
  return syscall(SYS_pkey_mprotect, p, len, prot, key);
}

/* Whether this machine has PKU enabled by the OS (CPUID leaf 7, OSPKE):
 * pkey_alloc's ENOSPC also means "no PKU at all". */
static int pku_available(void) {
#if defined(__x86_64__)
  unsigned eax, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0), "c"(0));
  if (eax < 7) return 0;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
  return (ecx >> 4) & 1;
#else
  return 0; /* arm64's POE: not tested (QEMU 7.2 has none); see README */
#endif
}

static int require_pku(void) {
  const char *s = getenv("WCPT_TEST_REQUIRE_PKU");
  return s && *s == '1';
}

/* ---- defaults and refusals ---- */

static int child_defaults(void) {
  struct wcpt_config c = defaults();
  if (c.size != sizeof(struct wcpt_config) || c.protection != WCPT_PROTECTION_AUTO || c.pkey != -1 ||
      c.max_entries != 0 || c.flags != 0)
    return 1;
  wcpt_config_init(NULL); /* does nothing */
  if (wcpt_init_with(&c) != WCPT_OK) return 2;
  /* The defaults are what a lazily created table has. */
  if (wcpt_init_with(&c) != WCPT_OK || wcpt_init() != WCPT_OK) return 3;
  struct wcpt_stats s;
  if (wcpt_stats(&s) != WCPT_OK || s.capacity != WCPT_CAPACITY) return 4;
  return 0;
}

/* One malformed configuration per case number; -1 past the last. */
static int bad_case;
static int apply_bad(struct wcpt_config *c, unsigned char *big) {
  switch (bad_case) {
  case 0: return 0; /* NULL, below */
  case 1: c->size = 0; return 1;
  case 2: c->size = sizeof *c - 1; return 1;
  case 3: c->size = 4097; return 1;
  case 4: /* a newer header's struct with a non-zero field this version lacks */
    memcpy(big, c, sizeof *c);
    ((struct wcpt_config *)big)->size = 64;
    big[40] = 1;
    return 2;
  case 5: c->protection = 4; return 1;
  case 6: c->protection = 0xFFFFFFFF; return 1;
  case 7: c->flags = 4; return 1;
  case 8: c->flags = 0x80000000u; return 1;
  case 9: c->pkey = -2; return 1;
  case 10: c->pkey = 3; return 1; /* a key with AUTO */
  case 11: c->pkey = 3, c->protection = WCPT_PROTECTION_ALIAS; return 1;
  case 12: c->pkey = 0, c->protection = WCPT_PROTECTION_PKEYS; return 1;
  case 13: c->pkey = 16, c->protection = WCPT_PROTECTION_PKEYS; return 1;
  case 14: c->protection = WCPT_PROTECTION_NONE, c->flags = WCPT_CONFIG_REQUIRE_PROTECTION; return 1;
  default: return -1;
  }
}

static int child_bad(void) {
  struct wcpt_config c = defaults();
  unsigned char big[64];
  memset(big, 0, sizeof big);
  int which = apply_bad(&c, big);
  wcpt_status s = which == 0 ? wcpt_init_with(NULL) : wcpt_init_with(which == 2 ? (struct wcpt_config *)big : &c);
  if (s != WCPT_ERR_INVALID_ARGUMENT) return 1;
  /* Nothing was created: another configuration still applies. */
  struct wcpt_config cap = capped(100);
  if (wcpt_init_with(&cap) != WCPT_OK) return 2;
  struct wcpt_stats st;
  if (wcpt_stats(&st) != WCPT_OK || st.capacity != 100) return 3;
  return 0;
}

static void test_malformed_configurations_are_refused_and_create_nothing(void) {
  in_child("defaults", child_defaults);
  for (bad_case = 0; bad_case < 64; bad_case++) {
    struct wcpt_config c;
    unsigned char big[64];
    if (apply_bad(&c, big) < 0) break;
    char name[32];
    snprintf(name, sizeof name, "malformed #%d", bad_case);
    in_child(name, child_bad);
  }
}

static int child_newer_header(void) {
  /* A larger struct from a newer header, the extra bytes zero: accepted. */
  unsigned char big[96];
  memset(big, 0, sizeof big);
  struct wcpt_config c = capped(77);
  memcpy(big, &c, sizeof c);
  ((struct wcpt_config *)big)->size = sizeof big;
  if (wcpt_init_with((struct wcpt_config *)big) != WCPT_OK) return 1;
  struct wcpt_stats st;
  return wcpt_stats(&st) == WCPT_OK && st.capacity == 77 ? 0 : 2;
}

static void test_a_newer_headers_larger_struct_is_accepted(void) { in_child("newer header", child_newer_header); }

/* ---- already initialised ---- */

static int child_already(void) {
  struct wcpt_config a = capped(1000), b = capped(2000), d = defaults();
  if (wcpt_init_with(&a) != WCPT_OK) return 1;
  if (wcpt_init_with(&a) != WCPT_OK) return 2;          /* the same: OK */
  if (wcpt_init_with(&b) != WCPT_ERR_ALREADY_INITIALIZED) return 3;
  if (wcpt_init_with(&d) != WCPT_ERR_ALREADY_INITIALIZED) return 4;
  if (wcpt_init() != WCPT_OK) return 5;                 /* any table will do */
  struct wcpt_stats st;
  if (wcpt_stats(&st) != WCPT_OK || st.capacity != 1000) return 6; /* unchanged */
  wcpt_teardown();
  if (wcpt_init_with(&b) != WCPT_OK) return 7;          /* a new one after teardown */
  if (wcpt_stats(&st) != WCPT_OK || st.capacity != 2000) return 8;
  wcpt_teardown();
  /* A table created lazily by another call has the defaults. */
  if (wcpt_alloc(0x5000, 1) == WCPT_INVALID_HANDLE) return 9;
  if (wcpt_init_with(&d) != WCPT_OK) return 10;
  if (wcpt_init_with(&a) != WCPT_ERR_ALREADY_INITIALIZED) return 11;
  if (wcpt_last_error() != WCPT_OK) return 12;
  if (strcmp(wcpt_status_str(WCPT_ERR_ALREADY_INITIALIZED), "already initialized with another configuration") != 0)
    return 13;
  return 0;
}

static void test_already_initialized_rules(void) { in_child("already initialized", child_already); }

/* ---- max_entries ---- */

static int fill(wcpt_handle *out, int most) {
  int n = 0;
  while (n < most) {
    wcpt_handle h = wcpt_alloc(0x10000 + 16 * (uintptr_t)n, 1);
    if (h == WCPT_INVALID_HANDLE) break;
    out[n++] = h;
  }
  return n;
}

static int child_cap(void) {
  enum { CAP = 5000, MORE = CAP + 100 }; /* spans two segments */
  static wcpt_handle hs[MORE];
  struct wcpt_config c = capped(CAP);
  if (wcpt_init_with(&c) != WCPT_OK) return 1;
  int n = fill(hs, MORE);
  if (n != CAP || wcpt_last_error() != WCPT_ERR_CAPACITY) return 2;
  for (int i = 0; i < n; i++)
    if ((hs[i] & WCPT_INDEX_MASK) == 0 || (hs[i] & WCPT_INDEX_MASK) > CAP) return 3;
  struct wcpt_stats st;
  if (wcpt_stats(&st) != WCPT_OK || st.capacity != CAP || st.live != CAP || st.free != 0) return 4;
  if (st.committed_segments != 2) return 5; /* no segment beyond the cap */
  /* A free makes room for exactly one. */
  if (wcpt_free(hs[17]) != WCPT_OK) return 6;
  uintptr_t eps[2] = {0x9000, 0x9010};
  uint64_t sigs[2] = {1, 1};
  wcpt_handle two[2] = {0x1234, 0x1234};
  if (wcpt_alloc_many(eps, sigs, 2, two) != WCPT_ERR_CAPACITY || two[0] != 0x1234) return 7;
  if (wcpt_native_handle(0x7f0000) == WCPT_INVALID_HANDLE) return 8; /* natives take entries too */
  if (wcpt_alloc(0x9000, 1) != WCPT_INVALID_HANDLE || wcpt_last_error() != WCPT_ERR_CAPACITY) return 9;
  /* Freeing and sweeping keep the cap. */
  for (int i = 0; i < n; i++)
    if (i != 17 && wcpt_free(hs[i]) != WCPT_OK) return 10;
  wcpt_sweep(0);
  n = fill(hs, MORE);
  if (n != CAP - 1) return 11; /* one is the native */
  if (wcpt_stats(&st) != WCPT_OK || st.capacity != CAP || st.live != CAP - 1 || st.native != 1) return 12;
  return 0;
}

static int child_cap_small(void) {
  static wcpt_handle hs[200];
  struct wcpt_config c = capped(100);
  c.flags = WCPT_CONFIG_NO_THREAD_CACHE;
  if (wcpt_init_with(&c) != WCPT_OK) return 1;
  if (fill(hs, 200) != 100) return 2;
  if (wcpt_free(hs[50]) != WCPT_OK || fill(hs + 100, 10) != 1) return 3;
  return 0;
}

static void test_max_entries_caps_live_entries(void) {
  in_child("max_entries 5000", child_cap);
  in_child("max_entries 100, no thread cache", child_cap_small);
}

/* ---- protection modes ---- */

static wcpt_status init_mode(wcpt_protection mode, uint32_t flags) {
  struct wcpt_config c = defaults();
  c.protection = mode;
  c.flags = flags;
  return wcpt_init_with(&c);
}

/* The table works and a stray write to it faults exactly when protected. */
static int works_and_protected_as(wcpt_protection mode) {
  if (wcpt_protection_mode() != mode) return 0;
  wcpt_handle h = wcpt_alloc(0x5000, 1);
  if (h == WCPT_INVALID_HANDLE || wcpt_get(h) != 0x5000) return 0;
  volatile uint64_t *e = (volatile uint64_t *)((uintptr_t)wcpt_table_base() + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
  /* valgrind and the sanitizers get in the way of deliberate faults. */
  if (check_instrumented()) return wcpt_free(h) == WCPT_OK;
  int code = stray_write(e, 0x4141);
  int ok = mode == WCPT_PROTECTION_NONE ? code == 0 : code != 0;
  if (mode == WCPT_PROTECTION_NONE) *e = 0x5000; /* put it back */
  return ok && wcpt_get(h) == 0x5000 && wcpt_free(h) == WCPT_OK;
}

static int child_modes(void) {
  int pku = pku_available();
  /* Exact modes: what was asked, or WCPT_ERR_PROTECTION; never another. */
  if (init_mode(WCPT_PROTECTION_NONE, 0) != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_NONE)) return 1;
  wcpt_teardown();
  if (init_mode(WCPT_PROTECTION_ALIAS, WCPT_CONFIG_REQUIRE_PROTECTION) != WCPT_OK ||
      !works_and_protected_as(WCPT_PROTECTION_ALIAS))
    return 2;
  wcpt_teardown();
  wcpt_status s = init_mode(WCPT_PROTECTION_PKEYS, 0);
  if (pku ? s != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_PKEYS) : s != WCPT_ERR_PROTECTION) return 3;
  wcpt_teardown();
  /* AUTO: the best that works here. */
  if (init_mode(WCPT_PROTECTION_AUTO, WCPT_CONFIG_REQUIRE_PROTECTION) != WCPT_OK ||
      !works_and_protected_as(pku ? WCPT_PROTECTION_PKEYS : WCPT_PROTECTION_ALIAS))
    return 5;
  wcpt_teardown();
  return 0;
}

static int child_env(void) {
  /* WCPT_PROTECT applies only where the embedder left the default. */
  setenv("WCPT_PROTECT", "off", 1);
  if (init_mode(WCPT_PROTECTION_AUTO, 0) != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_NONE)) return 1;
  wcpt_teardown();
  if (init_mode(WCPT_PROTECTION_ALIAS, 0) != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_ALIAS)) return 2;
  wcpt_teardown();
  /* Required protection: the environment cannot switch it off. */
  if (init_mode(WCPT_PROTECTION_AUTO, WCPT_CONFIG_REQUIRE_PROTECTION) != WCPT_ERR_PROTECTION) return 3;
  if (init_mode(WCPT_PROTECTION_ALIAS, 0) != WCPT_OK) return 4; /* the refusal created nothing */
  wcpt_teardown();
  setenv("WCPT_PROTECT", "alias", 1);
  if (init_mode(WCPT_PROTECTION_AUTO, 0) != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_ALIAS)) return 5;
  wcpt_teardown();
  if (init_mode(WCPT_PROTECTION_NONE, 0) != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_NONE)) return 6;
  return 0;
}

static void test_protection_modes_exact_auto_and_required(void) {
  in_child("protection modes", child_modes);
  in_child("environment", child_env);
}

/* ---- an engine's shared key (PKU only) ---- */

#if defined(__x86_64__)

static int engine_key;
static uint32_t kbits, kwd; /* the key's two bits, and write-disable alone */
static volatile uint64_t *code_page;

static void engine_window(int open) {
  uint32_t p = test_pkru_read() & ~kbits;
  test_pkru_write(open ? p : p | kwd);
}

static volatile uint64_t *entry_of(wcpt_handle h) {
  return (volatile uint64_t *)((uintptr_t)wcpt_table_base() + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
}

/* Every kind of wcpt call leaves the thread's rights for the key exactly
 * as they were; returns how many did not. */
static int calls_keep_rights(void) {
  int bad = 0;
  uint32_t before = test_pkru_read() & kbits;
#define KEEP(call)                                                                                   \
  do {                                                                                               \
    call;                                                                                            \
    if ((test_pkru_read() & kbits) != before) bad++, fprintf(stderr, "  rights changed by %s\n", #call); \
  } while (0)
  wcpt_handle h = 0, n = 0;
  KEEP(h = wcpt_alloc(0x6000, 2));
  KEEP((void)wcpt_get(h));
  KEEP((void)wcpt_get_checked(h, 2));
  KEEP((void)wcpt_set(h, 0x6100));
  uintptr_t eps[3] = {0x6200, 0x6300, 0x6400};
  uint64_t sigs[3] = {1, 2, 3};
  wcpt_handle many[3];
  KEEP((void)wcpt_alloc_many(eps, sigs, 3, many));
  KEEP((void)wcpt_free_many(many, 3));
  KEEP(n = wcpt_native_handle(0x6500));
  KEEP((void)n);
  struct wcpt_stats st;
  KEEP((void)wcpt_stats(&st));
  KEEP((void)wcpt_free(h));
  KEEP((void)wcpt_free(h)); /* refused */
  KEEP((void)wcpt_sweep(0));
  KEEP((void)wcpt_thread_attach());
  KEEP(wcpt_signal_enter());
#undef KEEP
  return bad;
}

static volatile int handler_table_fault, handler_code_fault, handler_read_ok, handler_after_fault;
static wcpt_handle handler_h;

static void on_usr1(int sig) {
  (void)sig;
  /* Linux starts a handler with no access to keys other than 0. */
  handler_table_fault = stray_write(entry_of(handler_h), 1);
  handler_code_fault = stray_write(code_page, 1);
  handler_read_ok = wcpt_get(handler_h) == 0x6600;
  wcpt_handle k = wcpt_alloc(0x6700, 1);
  wcpt_free(k);
  handler_after_fault = stray_write(entry_of(handler_h), 2) && stray_write(code_page, 2);
}

static void *other_thread(void *arg) {
  (void)arg;
  /* Created while the engine's window was closed: inherits that. */
  intptr_t bad = 0;
  if (stray_write(entry_of(handler_h), 3) != SEGV_PKUERR) bad |= 1;
  if (stray_write(code_page, 3) != SEGV_PKUERR) bad |= 2;
  if (calls_keep_rights()) bad |= 4;
  if (stray_write(entry_of(handler_h), 4) != SEGV_PKUERR || stray_write(code_page, 4) != SEGV_PKUERR) bad |= 8;
  engine_window(1);
  if (calls_keep_rights() || stray_write(code_page, 5) != 0) bad |= 16;
  engine_window(0);
  return (void *)bad;
}

static int child_shared_key(void) {
  engine_key = (int)sys_pkey_alloc(0, 0);
  if (engine_key <= 0) return 1;
  kbits = 3u << (2 * engine_key), kwd = 2u << (2 * engine_key);
  /* The engine's code page, under its key, writable only in its windows. */
  code_page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code_page == MAP_FAILED || sys_pkey_mprotect((void *)code_page, 4096, PROT_READ | PROT_WRITE, engine_key))
    return 2;
  engine_window(0);
  struct wcpt_config c = defaults();
  c.protection = WCPT_PROTECTION_PKEYS;
  c.pkey = engine_key;
  c.flags = WCPT_CONFIG_REQUIRE_PROTECTION;
  if (wcpt_init_with(&c) != WCPT_OK || wcpt_protection_mode() != WCPT_PROTECTION_PKEYS) return 3;
  handler_h = wcpt_alloc(0x6600, 1);
  if (stray_key_of((const void *)(uintptr_t)entry_of(handler_h)) != engine_key) return 4; /* the table is under the engine's key */
  /* Outside the engine's window: stray writes to both fault, and wcpt
   * calls leave the key closed. */
  if (stray_write(entry_of(handler_h), 9) != SEGV_PKUERR || stray_write(code_page, 9) != SEGV_PKUERR) return 5;
  if (calls_keep_rights()) return 6;
  if (stray_write(entry_of(handler_h), 9) != SEGV_PKUERR || stray_write(code_page, 9) != SEGV_PKUERR) return 7;
  /* Inside it: wcpt calls leave it open. */
  engine_window(1);
  if (stray_write(code_page, 10) != 0) return 8;
  if (calls_keep_rights()) return 9;
  if (stray_write(code_page, 11) != 0 || *code_page != 11) return 10;
  engine_window(0);
  if (stray_write(code_page, 12) != SEGV_PKUERR || wcpt_get(handler_h) != 0x6600) return 11;
  /* Another thread, and a signal handler. */
  pthread_t t;
  void *bad = NULL;
  if (pthread_create(&t, NULL, other_thread, NULL) != 0) return 12;
  pthread_join(t, &bad);
  if (bad) return 13;
  signal(SIGUSR1, on_usr1);
  raise(SIGUSR1);
  if (handler_table_fault != SEGV_PKUERR || handler_code_fault != SEGV_PKUERR || !handler_read_ok ||
      !handler_after_fault)
    return 14;
  if ((test_pkru_read() & kbits) != kwd) return 15; /* the handler's rights did not leak */
  /* Teardown never frees the engine's key: it is still ours to free. */
  wcpt_teardown();
  if (sys_pkey_free(engine_key) != 0) return 16;
  return 0;
}

static int child_unallocated_key(void) {
  int k = (int)sys_pkey_alloc(0, 0);
  if (k <= 0 || sys_pkey_free(k) != 0) return 1;
  struct wcpt_config c = defaults();
  c.protection = WCPT_PROTECTION_PKEYS;
  c.pkey = k; /* allocated by nobody now */
  if (wcpt_init_with(&c) != WCPT_ERR_INVALID_ARGUMENT) return 2;
  if (init_mode(WCPT_PROTECTION_ALIAS, 0) != WCPT_OK) return 3; /* created nothing */
  return 0;
}

static int child_keys_exhausted(void) {
  /* Share a key once, so that wcpt gives its own back; then take every
   * key left, so that wcpt cannot allocate one. */
  int k = (int)sys_pkey_alloc(0, 0);
  if (k <= 0) return 1;
  struct wcpt_config c = defaults();
  c.protection = WCPT_PROTECTION_PKEYS;
  c.pkey = k;
  if (wcpt_init_with(&c) != WCPT_OK) return 2;
  wcpt_teardown();
  int taken[16], n = 0;
  for (long got; n < 16 && (got = sys_pkey_alloc(0, 0)) > 0;) taken[n++] = (int)got;
  if (sys_pkey_alloc(0, 0) >= 0 || errno != ENOSPC) return 3;
  /* AUTO falls back to the alias, and says so; PKEYS exactly refuses. */
  if (init_mode(WCPT_PROTECTION_AUTO, WCPT_CONFIG_REQUIRE_PROTECTION) != WCPT_OK) return 4;
  if (!works_and_protected_as(WCPT_PROTECTION_ALIAS)) return 5;
  wcpt_teardown();
  if (init_mode(WCPT_PROTECTION_PKEYS, 0) != WCPT_ERR_PROTECTION) return 6;
  /* One key back: PKEYS works again, with a key of wcpt's own. */
  sys_pkey_free(taken[--n]);
  if (init_mode(WCPT_PROTECTION_PKEYS, 0) != WCPT_OK || !works_and_protected_as(WCPT_PROTECTION_PKEYS)) return 7;
  return 0;
}

#endif /* __x86_64__ */

static void test_shared_key_nesting_and_exhaustion(void) {
  if (!pku_available()) {
    if (require_pku()) {
      CHECK(!"PKU is required here (WCPT_TEST_REQUIRE_PKU=1) but pkey_alloc fails");
      return;
    }
    SKIP("no PKU on this machine: make check-pkeys runs these in a guest with emulated PKU");
  }
#if defined(__x86_64__)
  in_child("shared key", child_shared_key);
  in_child("unallocated key", child_unallocated_key);
  in_child("keys exhausted", child_keys_exhausted);
#endif
}

int main(void) {
  RUN(test_malformed_configurations_are_refused_and_create_nothing);
  RUN(test_a_newer_headers_larger_struct_is_accepted);
  RUN(test_already_initialized_rules);
  RUN(test_max_entries_caps_live_entries);
  RUN(test_protection_modes_exact_auto_and_required);
  RUN(test_shared_key_nesting_and_exhaustion);
  return check_finish("test_config");
}
