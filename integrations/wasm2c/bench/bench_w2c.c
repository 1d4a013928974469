/* call_indirect loops of funcs.wat, built once with stock wasm2c and once on
 * wcpt (see `make bench-wasm2c`): "loop" ($n calls through one slot to a
 * one-instruction function) or "dispatch" (alternating between two slots).
 * Prints the best of ROUNDS runs in ns per call. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "funcs.h"
#include "wasm-rt-impl.h"

struct Z_host_instance_t {
  int unused;
};

u32 Z_hostZ_add1(struct Z_host_instance_t* host, u32 x) {
  (void)host;
  return x + 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* What "dispatch" computes: $inc on odd n, $double on even n, n from CALLS down. */
static u32 expected_dispatch(u32 n) {
  u32 acc = 0;
  for (; n != 0; n--)
    acc = (n & 1) ? acc + 1 : acc * 2;
  return acc;
}

int main(int argc, char** argv) {
  int dispatch = argc > 1 && strcmp(argv[1], "dispatch") == 0;
  enum { CALLS = 20000000, ROUNDS = 5 };
  static struct Z_host_instance_t host;
  Z_funcs_instance_t m;
  wasm_rt_init();
  Z_funcs_init_module();
  Z_funcs_instantiate(&m, &host);
  double best = 1e30;
  for (int r = 0; r < ROUNDS; r++) {
    double t0 = now();
    u32 acc = dispatch ? Z_funcsZ_dispatch(&m, CALLS) : Z_funcsZ_loop(&m, CALLS);
    double t1 = now();
    if (acc != (dispatch ? expected_dispatch(CALLS) : (u32)CALLS)) {
      fprintf(stderr, "bench_w2c: wrong result %u\n", acc);
      return 1;
    }
    if (t1 - t0 < best)
      best = t1 - t0;
  }
  printf("%.3f\n", best / CALLS);
  Z_funcs_free(&m);
  wasm_rt_free();
  return 0;
}
