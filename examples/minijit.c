/* minijit: a tiny JIT (x86-64 and AArch64) that calls its code through wcpt.
 *
 * It writes machine code for a few functions into memory it maps, registers
 * that memory as code, allocates a table entry per function with a signature
 * hash, and emits its own call thunk -- the sequence generated code would
 * use (docs/CALL_SEQUENCE.md has both architectures'); on x86-64:
 *
 *     mov   eax, edi                 ; the handle
 *     and   eax, WCPT_INDEX_MASK     ; -> index (the table is 2^24 entries: no bounds check)
 *     shl   rax, 4                   ; * WCPT_ENTRY_SIZE
 *     mov   rcx, <table base>
 *     add   rcx, rax                 ; the entry
 *     mov   eax, edi                 ; the check word wcpt_check_word(handle, sig):
 *     shr   eax, 24                  ;   the handle's generation
 *     shl   rax, 56                  ;   above
 *     mov   r8, <signature>          ;   the signature
 *     or    rax, r8
 *     mov   r9, [rcx]                ; the entrypoint first (docs/CALL_SEQUENCE.md)
 *     cmp   [rcx + 8], rax           ; one compare: live handle and right type
 *     jne   mismatch
 *     jmp   r9                       ; tail call through the entrypoint
 *
 * and on AArch64 (the entrypoint with a load-acquire, which x86's ordering
 * gives a plain load):
 *
 *     and   w9, w0, #0xffffff        ; index
 *     ldr   x10, =<table base>
 *     add   x10, x10, x9, lsl #4     ; the entry
 *     lsr   w11, w0, #24             ; generation
 *     ldr   x12, =<signature>
 *     orr   x11, x12, x11, lsl #56   ; the check word
 *     ldar  x14, [x10]               ; the entrypoint, then
 *     ldr   x13, [x10, #8]           ; the check word
 *     cmp   x13, x11
 *     b.ne  mismatch
 *     br    x14                      ; tail call (arguments moved down first)
 *
 * (wcpt_call_target in wcpt.h is the same sequence in C.) Then it tiers a
 * function up by emitting a faster version and calling wcpt_set, calls a
 * host function through a native handle, shows a wrong signature and a
 * stale handle being refused by the generated code itself, even once its
 * slot holds a function of the same signature, frees and sweeps. */
#include "wcpt.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
int main(void) {
  printf("minijit emits x86-64 and AArch64 machine code, and this machine is neither.\n"
         "wcpt itself works here; only this example needs one of them.\n");
  return 0;
}
#else

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* Signature hashes the engine assigns to its function types. */
#define SIG_I64_I64_TO_I64 0x0067a1b2c3d4e5f6ull /* (i64, i64) -> i64; 56 bits */
#define SIG_I64_TO_I64 0x00000000a1b2c3d4ull     /* (i64) -> i64 */
#define MISMATCH 0x7fffffffffffbad5ll            /* what the thunk returns on a bad signature */

typedef long (*thunk_fn)(wcpt_handle, long, long);

/* A page of code: written while RW, then flipped to RX (never both). */
struct code {
  unsigned char *base;
  size_t len, cap;
};

static int code_map(struct code *c, size_t cap) {
  c->base = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  c->len = 0;
  c->cap = cap;
  return c->base == MAP_FAILED ? -1 : 0;
}
static void emit(struct code *c, const void *bytes, size_t n) {
  memcpy(c->base + c->len, bytes, n);
  c->len += n;
}
static void emit64(struct code *c, uint64_t v) { emit(c, &v, 8); }
static unsigned char *here(struct code *c) { return c->base + c->len; }
static void seal(struct code *c) {
  mprotect(c->base, c->cap, PROT_READ | PROT_EXEC);
  /* AArch64's instruction cache is not coherent with stores: flush. */
  __builtin___clear_cache((char *)c->base, (char *)c->base + c->len);
}

#if defined(__x86_64__)
#define ARCH "x86-64"

/* add(a, b) = a + b:   lea rax, [rdi + rsi]; ret */
static void *emit_add(struct code *c) {
  void *f = here(c);
  emit(c, "\x48\x8d\x04\x37\xc3", 5);
  return f;
}
/* mul(a, b) = a * b:   mov rax, rdi; imul rax, rsi; ret */
static void *emit_mul(struct code *c) {
  void *f = here(c);
  emit(c, "\x48\x89\xf8\x48\x0f\xaf\xc6\xc3", 8);
  return f;
}
/* sum_to(n), tier 0: a loop adding n + (n-1) + ... + 1 */
static void *emit_sum_to_loop(struct code *c) {
  void *f = here(c);
  emit(c, "\x31\xc0"         /*      xor eax, eax      */
          "\x48\x85\xff"     /*      test rdi, rdi     */
          "\x7e\x08"         /*      jle done          */
          "\x48\x01\xf8"     /* top: add rax, rdi      */
          "\x48\xff\xcf"     /*      dec rdi           */
          "\x75\xf8"         /*      jnz top           */
          "\xc3",            /* done: ret              */
       16);
  return f;
}
/* sum_to(n), tier 1: n * (n + 1) / 2 */
static void *emit_sum_to_closed(struct code *c) {
  void *f = here(c);
  emit(c, "\x48\x8d\x47\x01"  /* lea rax, [rdi + 1] */
          "\x48\x0f\xaf\xc7"  /* imul rax, rdi      */
          "\x48\xd1\xe8"      /* shr rax, 1         */
          "\xc3",             /* ret                */
       12);
  return f;
}

/* The call sequence generated code uses: thunk(handle, a, b) calls the
 * handle's entrypoint with (a, b) if the entry's check word is
 * wcpt_check_word(handle, sig) -- the handle is live and of that type --
 * else returns MISMATCH. The table base and the signature are baked in. */
static thunk_fn emit_call_thunk(struct code *c, const void *table_base, uint64_t sig) {
  void *f = here(c);
  emit(c, "\x89\xf8", 2);                 /* mov eax, edi               */
  emit(c, "\x25\xff\xff\xff\x00", 5);     /* and eax, WCPT_INDEX_MASK   */
  emit(c, "\x48\xc1\xe0\x04", 4);         /* shl rax, 4 (entry size 16) */
  emit(c, "\x48\xb9", 2);                 /* mov rcx, imm64             */
  emit64(c, (uint64_t)(uintptr_t)table_base);
  emit(c, "\x48\x01\xc1", 3);             /* add rcx, rax               */
  emit(c, "\x89\xf8", 2);                 /* mov eax, edi               */
  emit(c, "\xc1\xe8\x18", 3);             /* shr eax, 24 (generation)   */
  emit(c, "\x48\xc1\xe0\x38", 4);         /* shl rax, 56                */
  emit(c, "\x49\xb8", 2);                 /* mov r8, imm64              */
  emit64(c, sig);
  emit(c, "\x4c\x09\xc0", 3);             /* or rax, r8                 */
  emit(c, "\x4c\x8b\x09", 3);             /* mov r9, [rcx] (entrypoint first) */
  emit(c, "\x48\x39\x41\x08", 4);         /* cmp [rcx + 8], rax         */
  emit(c, "\x75\x09", 2);                 /* jne mismatch               */
  emit(c, "\x48\x89\xf7", 3);             /* mov rdi, rsi               */
  emit(c, "\x48\x89\xd6", 3);             /* mov rsi, rdx               */
  emit(c, "\x41\xff\xe1", 3);             /* jmp r9                     */
  emit(c, "\x48\xb8", 2);                 /* mismatch: mov rax, imm64   */
  emit64(c, (uint64_t)MISMATCH);
  emit(c, "\xc3", 1);                     /* ret                        */
  _Static_assert(WCPT_INDEX_MASK == 0x00FFFFFF && WCPT_ENTRY_SIZE == 16 && WCPT_CHECK_OFFSET == 8 &&
                     WCPT_ENTRYPOINT_OFFSET == 0 && WCPT_INDEX_BITS == 24 && WCPT_SIGNATURE_BITS == 56,
                 "the thunk bakes in the entry layout");
  thunk_fn t;
  memcpy(&t, &f, sizeof t);
  return t;
}

#elif defined(__aarch64__)
#define ARCH "AArch64"

static void emit32(struct code *c, uint32_t insn) { emit(c, &insn, 4); }
static void *align8(struct code *c) {
  while (c->len % 8) emit32(c, 0xd503201f); /* nop */
  return here(c);
}

/* add(a, b) = a + b:   add x0, x0, x1; ret */
static void *emit_add(struct code *c) {
  void *f = align8(c);
  emit32(c, 0x8b010000);
  emit32(c, 0xd65f03c0);
  return f;
}
/* mul(a, b) = a * b:   mul x0, x0, x1; ret */
static void *emit_mul(struct code *c) {
  void *f = align8(c);
  emit32(c, 0x9b017c00);
  emit32(c, 0xd65f03c0);
  return f;
}
/* sum_to(n), tier 0: a loop adding n + (n-1) + ... + 1 */
static void *emit_sum_to_loop(struct code *c) {
  void *f = align8(c);
  emit32(c, 0xaa0003e1); /*      mov  x1, x0        */
  emit32(c, 0xd2800000); /*      mov  x0, #0        */
  emit32(c, 0xf100003f); /*      cmp  x1, #0        */
  emit32(c, 0x5400008d); /*      b.le done (+4)     */
  emit32(c, 0x8b010000); /* top: add  x0, x0, x1    */
  emit32(c, 0xf1000421); /*      subs x1, x1, #1    */
  emit32(c, 0x54ffffc1); /*      b.ne top (-2)      */
  emit32(c, 0xd65f03c0); /* done: ret               */
  return f;
}
/* sum_to(n), tier 1: n * (n + 1) / 2 */
static void *emit_sum_to_closed(struct code *c) {
  void *f = align8(c);
  emit32(c, 0x91000401); /* add x1, x0, #1  */
  emit32(c, 0x9b017c00); /* mul x0, x0, x1  */
  emit32(c, 0xd341fc00); /* lsr x0, x0, #1  */
  emit32(c, 0xd65f03c0); /* ret             */
  return f;
}

/* The call sequence, as on x86-64: thunk(handle, a, b). Literals for the
 * table base, the signature and MISMATCH follow the code (8-aligned). */
static thunk_fn emit_call_thunk(struct code *c, const void *table_base, uint64_t sig) {
  _Static_assert(WCPT_INDEX_MASK == 0x00FFFFFF && WCPT_ENTRY_SIZE == 16 && WCPT_CHECK_OFFSET == 8 &&
                     WCPT_ENTRYPOINT_OFFSET == 0 && WCPT_INDEX_BITS == 24 && WCPT_SIGNATURE_BITS == 56,
                 "the thunk bakes in the entry layout");
  void *f = align8(c);
#define LDR_LIT(rt, words) (0x58000000u | ((uint32_t)(words) << 5) | (rt)) /* ldr xRt, pc + 4*words */
  emit32(c, 0x12005c09);      /*  0: and  w9, w0, #0xffffff     */
  emit32(c, LDR_LIT(10, 15)); /*  1: ldr  x10, =table_base (16) */
  emit32(c, 0x8b09114a);      /*  2: add  x10, x10, x9, lsl #4  */
  emit32(c, 0x53187c0b);      /*  3: lsr  w11, w0, #24          */
  emit32(c, LDR_LIT(12, 14)); /*  4: ldr  x12, =sig (18)        */
  emit32(c, 0xaa0be18b);      /*  5: orr  x11, x12, x11, lsl #56 */
  emit32(c, 0xc8dffd4e);      /*  6: ldar x14, [x10]            */
  emit32(c, 0xf940054d);      /*  7: ldr  x13, [x10, #8]        */
  emit32(c, 0xeb0b01bf);      /*  8: cmp  x13, x11              */
  emit32(c, 0x54000081);      /*  9: b.ne mismatch (13)         */
  emit32(c, 0xaa0103e0);      /* 10: mov  x0, x1                */
  emit32(c, 0xaa0203e1);      /* 11: mov  x1, x2                */
  emit32(c, 0xd61f01c0);      /* 12: br   x14                   */
  emit32(c, LDR_LIT(0, 7));   /* 13: mismatch: ldr x0, =MISMATCH (20) */
  emit32(c, 0xd65f03c0);      /* 14: ret                        */
  emit32(c, 0xd503201f);      /* 15: nop (aligns the literals)  */
#undef LDR_LIT
  emit64(c, (uint64_t)(uintptr_t)table_base); /* 16 */
  emit64(c, sig);                             /* 18 */
  emit64(c, (uint64_t)MISMATCH);              /* 20 */
  thunk_fn t;
  memcpy(&t, &f, sizeof t);
  return t;
}
#endif

/* A host (C) function the JIT code calls through a native handle. */
static long host_max(long a, long b) { return a > b ? a : b; }

static void stats(const char *when) {
  struct wcpt_stats s;
  wcpt_stats(&s);
  printf("   table %s: %zu live, %zu native, %zu free in %zu committed segment(s) (%zu KiB)\n", when,
         s.live, s.native, s.free, s.committed_segments, s.committed_bytes >> 10);
}

static void show(const char *what, long got) {
  if (got == MISMATCH) printf("   %-34s -> refused: check word mismatch\n", what);
  else printf("   %-34s -> %ld\n", what, got);
}

int main(void) {
  printf("minijit: " ARCH " code called through wcpt %s (write protection: %s)\n\n", wcpt_version(),
         wcpt_protection_mode() == WCPT_PROTECTION_PKEYS   ? "pkeys"
         : wcpt_protection_mode() == WCPT_PROTECTION_ALIAS ? "alias"
                                                           : "none");
  if (wcpt_init() != WCPT_OK) return 1;

  struct code tier0, tier1, thunks;
  if (code_map(&tier0, 4096) || code_map(&tier1, 4096) || code_map(&thunks, 4096)) return 1;

  printf("1. Compile add, mul and sum_to (a loop) into a fresh code page, register it.\n");
  void *add = emit_add(&tier0), *mul = emit_mul(&tier0), *sum_loop = emit_sum_to_loop(&tier0);
  seal(&tier0);
  wcpt_code_region_add((uintptr_t)tier0.base, tier0.cap);
  /* The module's functions in one batch call: all or nothing, one write window. */
  const uintptr_t module_eps[3] = {(uintptr_t)add, (uintptr_t)mul, (uintptr_t)sum_loop};
  const uint64_t module_sigs[3] = {SIG_I64_I64_TO_I64, SIG_I64_I64_TO_I64, SIG_I64_TO_I64};
  wcpt_handle module[3];
  wcpt_status st = wcpt_alloc_many(module_eps, module_sigs, 3, module);
  if (st != WCPT_OK) {
    printf("   wcpt_alloc_many: %s\n", wcpt_status_str(st));
    return 1;
  }
  wcpt_handle h_add = module[0], h_mul = module[1], h_sum = module[2];
  printf("   wcpt_alloc_many: handles add=%#010x mul=%#010x sum_to=%#010x\n", h_add, h_mul, h_sum);
  static long not_code;
  wcpt_handle bad = wcpt_alloc((uintptr_t)&not_code, SIG_I64_TO_I64);
  printf("   an entry pointing at data instead of code: %s\n",
         bad == WCPT_INVALID_HANDLE ? wcpt_status_str(wcpt_last_error()) : "accepted?!");

  printf("\n2. Emit the call sequence generated code uses (one per signature) and call through it.\n");
  thunk_fn call2 = emit_call_thunk(&thunks, wcpt_table_base(), SIG_I64_I64_TO_I64);
  thunk_fn call1 = emit_call_thunk(&thunks, wcpt_table_base(), SIG_I64_TO_I64);
  thunk_fn call_native = emit_call_thunk(&thunks, wcpt_table_base(), WCPT_NATIVE_SIGNATURE);
  seal(&thunks);
  show("add(40, 2)", call2(h_add, 40, 2));
  show("mul(6, 7)", call2(h_mul, 6, 7));
  show("sum_to(1000000) [tier 0: loop]", call1(h_sum, 1000000, 0));

  printf("\n3. Tier up sum_to: emit n*(n+1)/2 on a new page and wcpt_set the same handle.\n");
  void *sum_closed = emit_sum_to_closed(&tier1);
  seal(&tier1);
  printf("   before registering the new page: wcpt_set -> %s\n",
         wcpt_status_str(wcpt_set(h_sum, (uintptr_t)sum_closed)));
  wcpt_code_region_add((uintptr_t)tier1.base, tier1.cap);
  printf("   after registering it:            wcpt_set -> %s\n",
         wcpt_status_str(wcpt_set(h_sum, (uintptr_t)sum_closed)));
  show("sum_to(1000000) [tier 1: closed]", call1(h_sum, 1000000, 0));

  printf("\n4. Call a host function through its native handle.\n");
  wcpt_handle h_host = wcpt_native_handle((uintptr_t)&host_max);
  printf("   native handle for host_max: %#010x (asked again: %#010x)\n", h_host,
         wcpt_native_handle((uintptr_t)&host_max));
  show("host_max(3, 9)", call_native(h_host, 3, 9));
  printf("   wcpt_free on it: %s\n", wcpt_status_str(wcpt_free(h_host)));

  printf("\n5. Bad calls are caught.\n");
  show("mul through the (i64)->i64 thunk", call1(h_mul, 6, 7));
  printf("   wcpt_get_checked(mul, wrong signature) = %#lx\n",
         (unsigned long)wcpt_get_checked(h_mul, SIG_I64_TO_I64));
  wcpt_free(h_mul);
  printf("   mul freed. Its stale handle: wcpt_get = %#lx, wcpt_free again -> %s\n",
         (unsigned long)wcpt_get(h_mul), wcpt_status_str(wcpt_free(h_mul)));
  long stale = call2(h_mul, 6, 7);
  show("the stale mul through the thunk", stale);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    /* A jump through the entry with no check at all: a freed entry's
     * entrypoint is non-canonical, so even that faults. */
    const uint64_t *entry = (const uint64_t *)((const unsigned char *)wcpt_table_base() +
                                               (h_mul & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
    long (*raw)(long, long);
    uint64_t word = entry[0];
    memcpy(&raw, &word, sizeof raw);
    raw(6, 7);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  printf("   an unchecked jump through the freed entry (in a child): %s\n",
         WIFSIGNALED(status) ? "faulted instead of jumping anywhere" : "returned?!");
  wcpt_handle reuse = wcpt_alloc((uintptr_t)add, SIG_I64_I64_TO_I64);
  long stale_after_reuse = call2(h_mul, 6, 7);
  printf("   the slot is reused by %#010x, a function of the same signature:\n", reuse);
  show("the stale mul through the thunk", stale_after_reuse);
  show("the new handle through the thunk", call2(reuse, 40, 2));
  if (stale != MISMATCH || stale_after_reuse != MISMATCH || !WIFSIGNALED(status) || call2(reuse, 40, 2) != 42) {
    printf("FAILED: a stale handle was not refused\n");
    return 1;
  }
  printf("   (the check word holds the generation: generated code refuses stale handles by itself)\n");

  printf("\n6. Free and sweep.\n");
  enum { MANY = 50000 };
  static wcpt_handle many[MANY];
  static uintptr_t many_eps[MANY];
  static uint64_t many_sigs[MANY];
  for (int i = 0; i < MANY; i++) many_eps[i] = (uintptr_t)add, many_sigs[i] = SIG_I64_I64_TO_I64;
  if (wcpt_alloc_many(many_eps, many_sigs, MANY, many) != WCPT_OK) return 1;
  stats("with 50000 more functions (one wcpt_alloc_many)");
  /* A batch with one handle twice is a double free: nothing is freed. */
  wcpt_handle twice[2] = {many[0], many[0]};
  printf("   wcpt_free_many with a handle twice: %s\n", wcpt_status_str(wcpt_free_many(twice, 2)));
  if (wcpt_free_many(many, MANY) != WCPT_OK) return 1;
  printf("   freed them; wcpt_sweep(0) gave %zu segment(s) back to the OS\n", wcpt_sweep(0));
  stats("after the sweep");
  show("add(1, 2) still works", call2(h_add, 1, 2));

  wcpt_teardown();
  munmap(tier0.base, tier0.cap);
  munmap(tier1.base, tier1.cap);
  munmap(thunks.base, thunks.cap);
  return 0;
}
#endif
