/* wasm2c runtime on wcpt: funcrefs hold wcpt handles, not code pointers.
 *
 * Included at the end of the patched wasm-rt.h (see ../wcpt-wasm2c.py), so
 * generated code and the runtime see these declarations everywhere. In a
 * wasm_rt_funcref_t, `func` is a wcpt_handle: the table entry that holds the
 * function's address and its type. `call_indirect` is the Wasm table's bounds
 * check, then wasm_rt_wcpt_target(), which traps as stock wasm2c does
 * (WASM_RT_TRAP_CALL_INDIRECT) on a null, stale, freed or mistyped handle. */
#ifndef WASM_RT_WCPT_H_
#define WASM_RT_WCPT_H_

#include <stddef.h>
#include <stdint.h>

#include "wcpt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The table base, in a page of its own that is read-only once
 * wasm_rt_init() has set it: generated code loads it on every call_indirect,
 * so a stray write must not be able to point it at a forged table. */
typedef union {
  const void* base;
  char page[4096];
} wasm_rt_wcpt_base_page_t;
#if defined(__GNUC__) && !defined(_WIN32)
/* Hidden: generated code and the runtime are linked into one executable or
 * library, so the page is reached PC-relative, without a GOT load. */
__attribute__((visibility("hidden")))
#endif
extern wasm_rt_wcpt_base_page_t wasm_rt_wcpt_base_page;

/* The signature under which a function of wasm2c type `func_type` (an index
 * from wasm_rt_register_func_type) is stored in the table. Type indices are
 * process-wide and structural, so equal Wasm types have equal signatures.
 * Bit 32 is always set, so no signature is 0 (see wasm_rt_wcpt_target). */
#define WASM_RT_WCPT_SIGNATURE(func_type) \
  (((uint64_t)1 << 32) | (uint64_t)(uint32_t)(func_type))

/* What call_indirect may call through `handle` for type `func_type`: the
 * header's call sequence (one masked load, one compare of the check word),
 * or a CALL_INDIRECT trap. Define WASM_RT_WCPT_UNCHECKED_SIGNATURE to drop
 * the type check (the test suite's negative control; never in production). */
static inline wasm_rt_function_ptr_t wasm_rt_wcpt_target(wcpt_handle handle,
                                                         uint32_t func_type) {
#ifdef WASM_RT_WCPT_UNCHECKED_SIGNATURE
  uintptr_t target = wcpt_get(handle);
  (void)func_type;
  if (UNLIKELY(target == 0))
    wasm_rt_trap(WASM_RT_TRAP_CALL_INDIRECT);
  return (wasm_rt_function_ptr_t)target;
#else
  /* wcpt_call_target's loads and compare, with the trap branch taken only
   * on a mismatch: the signature has bit 32 set, so no all-zero entry (the
   * null handle's, or a never-committed or released one) matches, and a
   * matching check word means a live entry whose entrypoint is a real
   * address; the 0 that wcpt_call_target returns needs no second test. */
  const uint64_t* entry =
      (const uint64_t*)((const unsigned char*)wasm_rt_wcpt_base_page.base +
                        (uintptr_t)(handle & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
  uint64_t entrypoint = __atomic_load_n(&entry[0], __ATOMIC_ACQUIRE);
  uint64_t check = __atomic_load_n(&entry[1], __ATOMIC_RELAXED);
  if (UNLIKELY(check != wcpt_check_word(handle, WASM_RT_WCPT_SIGNATURE(func_type))))
    wasm_rt_trap(WASM_RT_TRAP_CALL_INDIRECT);
  return (wasm_rt_function_ptr_t)(uintptr_t)entrypoint;
#endif
}

/* The funcref of the module's own function `func` of type `func_type`
 * closed over `module_instance` (an instance between its _instantiate and
 * its _free): what stock wasm2c writes as a compound literal. Its handle is
 * one per (func, func_type, module_instance), allocated on first use and
 * freed when the instance is freed. Traps with WASM_RT_TRAP_EXHAUSTION if
 * the table or memory is exhausted; aborts if module_instance is not a live
 * instance (generated code that was not rewritten). */
wasm_rt_funcref_t wasm_rt_wcpt_funcref(uint32_t func_type,
                                       wasm_rt_function_ptr_t func,
                                       void* module_instance);

/* The funcref of an imported function (a host function, or another
 * module's export): its handle is wcpt_native_handle_typed(func, type),
 * one per (function, type), stable for the life of the process. */
wasm_rt_funcref_t wasm_rt_wcpt_import_funcref(uint32_t func_type,
                                              wasm_rt_function_ptr_t func,
                                              void* module_instance);

/* Called first thing by every patched <module>_instantiate: from now on
 * funcrefs of functions closed over [instance, instance + size) belong to
 * this instance. */
void wasm_rt_wcpt_instance_begin(void* instance, size_t size);

/* Called first thing by every patched <module>_free: frees the handles of
 * the instance's funcrefs. Funcrefs that escaped into other tables become
 * stale, so calling them traps instead of reaching a freed instance. */
void wasm_rt_wcpt_instance_free(void* instance, size_t size);

/* Handles the runtime currently owns for live instances (for leak checks). */
size_t wasm_rt_wcpt_owned_handles(void);

/* Sets up the table and the read-only base page; called by wasm_rt_init().
 * Aborts with a message if the table cannot be created. */
void wasm_rt_wcpt_init(void);

#ifdef __cplusplus
}
#endif

#endif /* WASM_RT_WCPT_H_ */
