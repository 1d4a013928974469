/* A minimal test harness for the C tests: RUN(test) runs one test function,
 * CHECK* record failures with file and line, and check_finish() prints the
 * closing "NAME: N passed, N failed, N skipped" line and returns the exit
 * status. Thread-safe (failures may be recorded from any thread). */
#ifndef WCPT_CHECK_H
#define WCPT_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_int check_failures;
static int check_passed, check_failed, check_skipped;
static int check_skip_flag;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      atomic_fetch_add(&check_failures, 1);                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    unsigned long long check_a_ = (unsigned long long)(a);                     \
    unsigned long long check_b_ = (unsigned long long)(b);                     \
    if (check_a_ != check_b_) {                                                \
      atomic_fetch_add(&check_failures, 1);                                    \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%#llx != %#llx)\n",   \
              __FILE__, __LINE__, #a, #b, check_a_, check_b_);                 \
    }                                                                          \
  } while (0)

/* Marks the running test as skipped, with the reason. */
#define SKIP(reason)                                                           \
  do {                                                                         \
    printf("  skip: %s\n", reason);                                            \
    check_skip_flag = 1;                                                       \
    return;                                                                    \
  } while (0)

#define RUN(test)                                                              \
  do {                                                                         \
    int before_ = atomic_load(&check_failures);                                \
    check_skip_flag = 0;                                                       \
    test();                                                                    \
    if (atomic_load(&check_failures) != before_) {                             \
      check_failed++;                                                          \
      printf("  FAIL %s\n", #test);                                            \
    } else if (check_skip_flag) {                                              \
      check_skipped++;                                                         \
      printf("  skip %s\n", #test);                                            \
    } else {                                                                   \
      check_passed++;                                                          \
      printf("  ok   %s\n", #test);                                            \
    }                                                                          \
    fflush(stdout);                                                            \
  } while (0)

static inline int check_finish(const char *name) {
  printf("%s: %d passed, %d failed, %d skipped\n", name, check_passed,
         check_failed, check_skipped);
  return check_failed ? 1 : 0;
}

/* WCPT_TEST_QUICK=1 (set by `make sanitize` for valgrind and the
 * sanitizers) shrinks loop counts by this factor. */
static inline int check_scale(int n) {
  const char *q = getenv("WCPT_TEST_QUICK");
  return (q && *q && *q != '0') ? (n / 20 > 0 ? n / 20 : 1) : n;
}

/* Set by `make sanitize` under valgrind and the sanitizers, whose own
 * memory makes RLIMIT_DATA and RSS figures meaningless. */
static inline int check_instrumented(void) {
  const char *q = getenv("WCPT_TEST_INSTRUMENTED");
  return q && *q && *q != '0';
}

/* Set by `make check-aarch64`, which runs the tests under QEMU's user-mode
 * emulator: a few kernel behaviours (MADV_DONTFORK) are not emulated. */
static inline int check_emulated(void) {
  const char *q = getenv("WCPT_TEST_EMULATED");
  return q && *q && *q != '0';
}

/* execv of this test program itself, through WCPT_TEST_EXEC_WRAPPER if set
 * (under QEMU's user-mode emulator with no binfmt_misc, the emulator runs
 * the program: `qemu-aarch64-static PROGRAM ARGS`). Returns only on
 * failure. */
static inline void check_exec_self(const char *self, const char *arg) {
  const char *wrapper = getenv("WCPT_TEST_EXEC_WRAPPER");
  if (wrapper && *wrapper)
    execl(wrapper, wrapper, self, arg, (char *)NULL);
  else
    execl(self, self, arg, (char *)NULL);
}

/* A small deterministic generator for tests. */
static inline unsigned long long check_rand(unsigned long long *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

#endif
