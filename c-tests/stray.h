/* Stray-write probes for the protection tests (x86-64 Linux).
 *
 * stray_write(p, v) stores v at p with one `mov %rsi,(%rdi)` instruction and
 * returns the si_code of the SIGSEGV it caused (SEGV_PKUERR, SEGV_ACCERR,
 * ...) or 0 if the store went through. The SIGSEGV handler only accepts
 * faults at that instruction: it records the code and returns past the
 * store (x86-64 `mov`, arm64 `str`), so the thread's key register is
 * exactly what it was before (the kernel restores it on sigreturn). Any other SIGSEGV ends the process with
 * exit status 97 and a message, so a library write that faults is a failure.
 *
 * test_pkru_read/test_pkru_write let a test put a thread in a given state
 * (say, no access at all, as Linux gives a thread that predates the key). */
#ifndef WCPT_STRAY_H
#define WCPT_STRAY_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef SEGV_PKUERR
#define SEGV_PKUERR 4
#endif

/* The one store instruction, per architecture, and its length. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl wcpt_test_store\n"
        ".type wcpt_test_store,@function\n"
        "wcpt_test_store:\n"
        "  movq %rsi, (%rdi)\n" /* 48 89 37: 3 bytes */
        "  ret\n"
        ".size wcpt_test_store, .-wcpt_test_store\n");
#define STRAY_STORE_LEN 3
#define STRAY_PC(uc) ((uc)->uc_mcontext.gregs[REG_RIP])
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl wcpt_test_store\n"
        ".type wcpt_test_store,%function\n"
        "wcpt_test_store:\n"
        "  str x1, [x0]\n" /* 4 bytes */
        "  ret\n"
        ".size wcpt_test_store, .-wcpt_test_store\n");
#define STRAY_STORE_LEN 4
#define STRAY_PC(uc) ((uc)->uc_mcontext.pc)
#else
#error "stray.h: add this architecture's store instruction"
#endif
void wcpt_test_store(volatile uint64_t *p, uint64_t v);

static _Thread_local volatile int stray_code;
static volatile sig_atomic_t stray_faults;

static void stray_on_segv(int sig, siginfo_t *si, void *ctx) {
  (void)sig;
  ucontext_t *uc = ctx;
  uintptr_t rip = (uintptr_t)STRAY_PC(uc);
  if (rip != (uintptr_t)&wcpt_test_store) {
    char msg[160];
    int n = snprintf(msg, sizeof msg, "unexpected SIGSEGV at rip %#lx addr %p code %d\n",
                     (unsigned long)rip, si->si_addr, si->si_code);
    if (n > 0) (void)!write(2, msg, (size_t)n);
    _exit(97);
  }
  stray_code = si->si_code ? si->si_code : -1;
  stray_faults++;
  STRAY_PC(uc) += STRAY_STORE_LEN;
}

static inline void stray_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = stray_on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, NULL);
}

/* The si_code of the fault a store of v to p caused, or 0 if it went through. */
static inline int stray_write(volatile void *p, uint64_t v) {
  stray_code = 0;
  wcpt_test_store((volatile uint64_t *)p, v);
  return stray_code;
}

#if defined(__x86_64__)
static inline uint32_t test_pkru_read(void) {
  uint32_t eax, edx;
  __asm__ volatile("rdpkru" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

static inline void test_pkru_write(uint32_t v) {
  __asm__ volatile("wrpkru" : : "a"(v), "c"(0), "d"(0) : "memory");
}
#else
/* arm64's POE is not tested (QEMU 7.2 has none, README): these tests
 * never run with keys there, and would fail, not pass, if they did. */
static inline uint32_t test_pkru_read(void) { return 0; }
static inline void test_pkru_write(uint32_t v) { (void)v; }
#endif

/* The table's key, read from /proc/self/smaps for the mapping holding p
 * (-1 if there is no such line). */
static inline int stray_key_of(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int inside = 0, key = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    } else if (inside && sscanf(line, "ProtectionKey: %d", &key) == 1) {
      break;
    }
  }
  fclose(f);
  return key;
}

#endif
