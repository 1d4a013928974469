/* wasm2c on wcpt: what the spec suite cannot show.
 *
 * Built by `make check-wasm2c` from funcs.wat through the rewriting wasm2c
 * wrapper and the patched runtime. Checks that table elements hold handles,
 * that host functions get typed native handles, that stale, forged and
 * mistyped funcrefs trap instead of calling, and that instantiate/free
 * cycles leak no table entry. */
#include <stdio.h>
#include <string.h>

#include "funcs.h"
#include "wasm-rt-impl.h"
#include "wcpt.h"

static int failures, passed;

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                \
      failures++;                                                    \
    } else {                                                         \
      passed++;                                                      \
    }                                                                \
  } while (0)

/* The trap an expression raises, or 0 if it returns. */
#define TRAP_OF(expr)                  \
  ({                                   \
    int trap_ = wasm_rt_impl_try();    \
    if (trap_ == 0) {                  \
      (void)(expr);                    \
    }                                  \
    trap_;                             \
  })

struct Z_host_instance_t {
  int calls;
};

u32 Z_hostZ_add1(struct Z_host_instance_t* host, u32 x) {
  (void)host; /* wasm2c 1.0.32 passes a pointer to the importer's field */
  return x + 1;
}

static struct Z_host_instance_t host;

static u32 i2i_type(void) {
  return wasm_rt_register_func_type(1, 1, WASM_RT_I32, WASM_RT_I32);
}

static void test_calls_and_type_checks(void) {
  Z_funcs_instance_t m;
  Z_funcs_instantiate(&m, &host);
  CHECK(Z_funcsZ_call(&m, 0, 21) == 42);      /* $double */
  CHECK(Z_funcsZ_call(&m, 2, 41) == 42);      /* host $add1 */
  CHECK(Z_funcsZ_call(&m, 3, 41) == 42);      /* $inc */
  CHECK(TRAP_OF(Z_funcsZ_call(&m, 1, 0)) == WASM_RT_TRAP_CALL_INDIRECT); /* $seven: () -> i32 */
  CHECK(TRAP_OF(Z_funcsZ_call(&m, 5, 0)) == WASM_RT_TRAP_CALL_INDIRECT); /* null */
  CHECK(TRAP_OF(Z_funcsZ_call(&m, 8, 0)) == WASM_RT_TRAP_CALL_INDIRECT); /* out of bounds */
  Z_funcs_free(&m);
}

static void test_elements_hold_handles(void) {
  Z_funcs_instance_t m;
  Z_funcs_instantiate(&m, &host);
  u64 sig = WASM_RT_WCPT_SIGNATURE(i2i_type());
  wasm_rt_funcref_t dbl = Z_funcsZ_get(&m, 0), add1 = Z_funcsZ_get(&m, 2);
  CHECK(sizeof dbl.func == sizeof(wcpt_handle));
  CHECK(dbl.func != WCPT_NULL_HANDLE && dbl.func != WCPT_INVALID_HANDLE);
  CHECK(wcpt_call_target(wcpt_table_base(), dbl.func, sig) != 0);
  /* A host function placed by an element segment: its typed native handle. */
  CHECK(add1.func == wcpt_native_handle_typed((uintptr_t)&Z_hostZ_add1, sig));
  CHECK(wcpt_free(add1.func) == WCPT_ERR_NATIVE_HANDLE);
  CHECK(wcpt_call_target(wcpt_table_base(), add1.func, sig + 1) == 0);
  /* ref.func gives the same handle as the element segment for $inc. */
  CHECK(Z_funcsZ_ref_inc(&m).func == Z_funcsZ_get(&m, 3).func);
  /* table.grow fills with ref.func; the new slots call $inc. */
  CHECK(Z_funcsZ_grow(&m, 2) == 8 && Z_funcsZ_size(&m) == 10);
  CHECK(Z_funcsZ_call(&m, 9, 1) == 2);
  /* ref.is_null still works: null funcrefs hold WCPT_NULL_HANDLE. */
  CHECK(Z_funcsZ_get(&m, 5).func == WCPT_NULL_HANDLE);
  Z_funcs_free(&m);
}

static void test_stale_and_forged_handles_trap(void) {
  Z_funcs_instance_t a, b;
  Z_funcs_instantiate(&a, &host);
  Z_funcs_instantiate(&b, &host);
  wasm_rt_funcref_t from_a = Z_funcsZ_get(&a, 0);
  Z_funcsZ_set(&b, 4, from_a); /* escapes into b's table: valid while a lives */
  CHECK(Z_funcsZ_call(&b, 4, 5) == 10);
  Z_funcs_free(&a);
  CHECK(wcpt_get(from_a.func) == 0);
  CHECK(TRAP_OF(Z_funcsZ_call(&b, 4, 5)) == WASM_RT_TRAP_CALL_INDIRECT);
  /* A stale handle placed in a table traps even after its entry is reused
   * by a function of the same type. */
  Z_funcs_instantiate(&a, &host);
  CHECK(Z_funcsZ_call(&a, 0, 5) == 10);
  CHECK(TRAP_OF(Z_funcsZ_call(&b, 4, 5)) == WASM_RT_TRAP_CALL_INDIRECT);
  /* Forged: another generation of a live entry, and a live entry of
   * another type reached through a right-typed call. */
  wasm_rt_funcref_t forged = Z_funcsZ_get(&b, 0);
  forged.func += 1u << 24;
  Z_funcsZ_set(&b, 4, forged);
  CHECK(TRAP_OF(Z_funcsZ_call(&b, 4, 5)) == WASM_RT_TRAP_CALL_INDIRECT);
  Z_funcsZ_set(&b, 4, Z_funcsZ_get(&b, 1));
  CHECK(TRAP_OF(Z_funcsZ_call(&b, 4, 5)) == WASM_RT_TRAP_CALL_INDIRECT);
  Z_funcs_free(&a);
  Z_funcs_free(&b);
}

static void test_cycles_leak_nothing(void) {
  struct wcpt_stats before, after;
  Z_funcs_instance_t warm;
  Z_funcs_instantiate(&warm, &host); /* the host's native handle exists */
  Z_funcs_free(&warm);
  CHECK(wcpt_stats(&before) == WCPT_OK);
  for (int i = 0; i < 1000; i++) {
    Z_funcs_instance_t* m = malloc(sizeof *m);
    Z_funcs_instantiate(m, &host);
    Z_funcsZ_grow(m, 3);
    CHECK(Z_funcsZ_call(m, 10, i) == (u32)i + 1);
    Z_funcs_free(m);
    free(m);
  }
  CHECK(wcpt_stats(&after) == WCPT_OK);
  CHECK(after.live == before.live);
  CHECK(after.native == before.native);
  CHECK(wasm_rt_wcpt_owned_handles() == 0);
  printf("  1000 instantiate/free cycles: live %zu -> %zu, native %zu -> %zu\n",
         before.live, after.live, before.native, after.native);
}

static void test_base_page_is_read_only(void) {
  /* The page generated code reads the table base from cannot be written:
   * a store to it would fault. Check through /proc/self/maps instead of
   * faulting. */
  FILE* maps = fopen("/proc/self/maps", "r");
  uintptr_t page = (uintptr_t)&wasm_rt_wcpt_base_page;
  char line[512], perms[8] = "";
  CHECK(maps != NULL);
  while (maps && fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    char p[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, p) == 3 && page >= lo && page < hi)
      strcpy(perms, p);
  }
  if (maps)
    fclose(maps);
  CHECK(perms[0] == 'r' && perms[1] == '-');
  CHECK(wasm_rt_wcpt_base_page.base == wcpt_table_base());
}

int main(void) {
  wasm_rt_init();
  Z_funcs_init_module();
  test_calls_and_type_checks();
  test_elements_hold_handles();
  test_stale_and_forged_handles_trap();
  test_cycles_leak_nothing();
  test_base_page_is_read_only();
  wasm_rt_free();
  printf("test_wasm2c: %d passed, %d failed\n", passed, failures);
  return failures != 0;
}
