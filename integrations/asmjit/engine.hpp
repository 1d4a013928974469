// A small JIT engine on wcpt and asmjit: it compiles a module of functions
// at run time, registers their code region, puts them in the table with
// one batch call, and calls between them only through handles, emitting
// the checked call sequence (mask, load entry, compare check word, trap,
// call) with asmjit's assembler, for x86-64 and AArch64 (the latter run
// under QEMU by `make check-aarch64`).
//
// A function is `r = x * mul + add` (type A, i64(i64)) or
// `r = x * mul + y + add` (type B, i64(i64, i64)), then, if it has a
// callee, `r ^= callee(r)`: a call through the handle in the function's
// call slot, checked against type A. The slots live in the engine's data,
// as a real engine's function tables do, so a test can make a slot stale
// (free the callee) or mistyped (point it at a type-B function): the call
// then traps (ud2, SIGILL) in generated code without entering the callee.
// Every function counts its entries, so tests can tell.
#ifndef WCPT_ASMJIT_ENGINE_HPP
#define WCPT_ASMJIT_ENGINE_HPP

#include <wcpt.hpp>

#if defined(__x86_64__)
#include <asmjit/x86.h>
#elif defined(__aarch64__)
#include <asmjit/arm.h>
#include <asmjit/arm/a64assembler.h>
#else
#error "the asmjit engine emits x86-64 and AArch64"
#endif

#include <cstdint>
#include <memory>
#include <vector>

namespace wcpt_jit {

constexpr std::uint64_t SIG_A = 0xA11CE;  // i64(i64)
constexpr std::uint64_t SIG_B = 0xB0B;    // i64(i64, i64)

struct Func {
  bool two_args;         // type B
  std::int64_t mul, add;
  std::int32_t callee;   // -1: none; else a type-A function's index
};

using FnA = std::int64_t (*)(std::int64_t);
using FnB = std::int64_t (*)(std::int64_t, std::int64_t);

#if defined(__x86_64__)
using Assembler = asmjit::x86::Assembler;

// Emits the checked indirect call of a type-`sig` function through the
// handle at `slot`, argument already in rdi; clobbers rax, rcx, rdx, r8,
// r9 (all caller-saved). Jumps to `trap` on a stale, freed, forged or
// mistyped handle, before anything of the callee runs.
inline void emit_checked_call(asmjit::x86::Assembler& a, const std::uint32_t* slot, const void* table_base,
                              std::uint64_t sig, const asmjit::Label& trap) {
  using namespace asmjit::x86;
  a.mov(rax, reinterpret_cast<std::uint64_t>(slot));
  a.mov(ecx, dword_ptr(rax));                              // the handle
  a.mov(eax, ecx);
  a.and_(eax, WCPT_INDEX_MASK);                            // index = handle & mask
  a.shl(rax, 4);                                           // * WCPT_ENTRY_SIZE
  a.mov(rdx, reinterpret_cast<std::uint64_t>(table_base));
  a.shr(ecx, WCPT_INDEX_BITS);                             // check = generation << 56 | signature
  a.shl(rcx, WCPT_SIGNATURE_BITS);
  a.mov(r9, sig);
  a.or_(rcx, r9);
  a.mov(r8, qword_ptr(rdx, rax, 0, WCPT_ENTRYPOINT_OFFSET)); // the entrypoint, then
  if (trap.isValid()) {
    a.cmp(qword_ptr(rdx, rax, 0, WCPT_CHECK_OFFSET), rcx);   // the check word
    a.jne(trap);
  }
  a.call(r8);
}

// Function i's body (see the top of this file), with its entry counter.
inline void emit_function(Assembler& a, const Func& f, std::uint64_t* counter, const std::uint32_t* slot,
                          const void* base, bool checked, const asmjit::Label& trap) {
  using namespace asmjit::x86;
  a.push(rbx);                                // r lives in rbx across the call; aligns the stack
  a.mov(rax, reinterpret_cast<std::uint64_t>(counter));
  a.inc(qword_ptr(rax));                      // entered
  a.mov(rcx, static_cast<std::uint64_t>(f.mul));
  a.mov(rax, rdi);
  a.imul(rax, rcx);
  if (f.two_args) a.add(rax, rsi);
  a.mov(rcx, static_cast<std::uint64_t>(f.add));
  a.add(rax, rcx);
  if (f.callee >= 0) {
    a.mov(rbx, rax);
    a.mov(rdi, rax);
    emit_checked_call(a, slot, base, checked ? SIG_A : 0, checked ? trap : asmjit::Label());
    a.xor_(rax, rbx);
  }
  a.pop(rbx);
  a.ret();
}

inline void emit_trap(Assembler& a) { a.ud2(); }

#elif defined(__aarch64__)
using Assembler = asmjit::a64::Assembler;

// The same sequence for AArch64 (docs/CALL_SEQUENCE.md): the argument is
// already in x0; clobbers x9-x16 (caller-saved). The entrypoint is loaded
// with LDAR, before the check word: the ordering rule.
inline void emit_checked_call(Assembler& a, const std::uint32_t* slot, const void* table_base, std::uint64_t sig,
                              const asmjit::Label& trap) {
  using namespace asmjit::a64;
  a.mov(x9, reinterpret_cast<std::uint64_t>(slot));
  a.ldr(w10, ptr(x9));                                     // the handle
  a.and_(w11, w10, WCPT_INDEX_MASK);                       // index
  a.mov(x12, reinterpret_cast<std::uint64_t>(table_base));
  a.add(x12, x12, x11, asmjit::arm::lsl(4));               // the entry
  a.lsr(w13, w10, WCPT_INDEX_BITS);                        // generation
  a.mov(x14, sig);
  a.orr(x13, x14, x13, asmjit::arm::lsl(WCPT_SIGNATURE_BITS)); // the check word
  a.ldar(x15, ptr(x12));                                   // the entrypoint, acquire
  if (trap.isValid()) {
    a.ldr(x16, ptr(x12, WCPT_CHECK_OFFSET));               // then the check word
    a.cmp(x16, x13);
    a.b_ne(trap);
  }
  a.blr(x15);
}

// Function i's body (see the top of this file), with its entry counter.
inline void emit_function(Assembler& a, const Func& f, std::uint64_t* counter, const std::uint32_t* slot,
                          const void* base, bool checked, const asmjit::Label& trap) {
  using namespace asmjit::a64;
  a.stp(x29, x30, ptr_pre(sp, -32));
  a.str(x19, ptr(sp, 16));
  a.mov(x9, reinterpret_cast<std::uint64_t>(counter));
  a.ldr(x10, ptr(x9));
  a.add(x10, x10, 1);
  a.str(x10, ptr(x9));                                     // entered
  a.mov(x9, static_cast<std::uint64_t>(f.mul));
  a.mul(x0, x0, x9);
  if (f.two_args) a.add(x0, x0, x1);
  a.mov(x9, static_cast<std::uint64_t>(f.add));
  a.add(x0, x0, x9);
  if (f.callee >= 0) {
    a.mov(x19, x0);
    emit_checked_call(a, slot, base, checked ? SIG_A : 0, checked ? trap : asmjit::Label());
    a.eor(x0, x0, x19);
  }
  a.ldr(x19, ptr(sp, 16));
  a.ldp(x29, x30, ptr_post(sp, 32));
  a.ret(x30);
}

inline void emit_trap(Assembler& a) { a.udf(0); }
#endif

class Engine {
 public:
  // Compiles `funcs` (a callee must be a type-A function) into one code
  // buffer, registers it as a code region, and allocates every function's
  // handle with one wcpt_alloc_many. `ok()` says whether all of it worked.
  // `checked` false emits the same call without the check-word compare:
  // only for the tests' negative control.
  explicit Engine(std::vector<Func> funcs, bool checked = true) : funcs_(std::move(funcs)) {
    std::size_t n = funcs_.size();
    slots_.reset(new std::uint32_t[n]());
    counters_.reset(new std::uint64_t[n]());
    handles_.assign(n, WCPT_INVALID_HANDLE);
    const void* base = wcpt::table_base();
    asmjit::CodeHolder code;
    code.init(rt_.environment());
    Assembler a(&code);
    std::vector<asmjit::Label> starts;
    asmjit::Label trap = a.newLabel();
    for (std::size_t i = 0; i < n; i++) {
      starts.push_back(a.newLabel());
      a.align(asmjit::AlignMode::kCode, 16);
      a.bind(starts.back());
      emit_function(a, funcs_[i], &counters_[i], &slots_[i], base, checked, trap);
    }
    a.bind(trap);
    emit_trap(a);
    void* entry = nullptr;
    if (rt_.add(&entry, &code) != asmjit::kErrorOk) return;
    code_ = entry;
    code_size_ = code.codeSize();
    if (wcpt::code_region_add(code_, code_size_)) return;
    region_ = true;
    std::vector<std::uintptr_t> eps(n);
    std::vector<std::uint64_t> sigs(n);
    for (std::size_t i = 0; i < n; i++) {
      eps[i] = reinterpret_cast<std::uintptr_t>(entry) + code.labelOffsetFromBase(starts[i]);
      sigs[i] = funcs_[i].two_args ? SIG_B : SIG_A;
    }
    if (wcpt::alloc_many(eps, sigs, handles_)) return;
    for (std::size_t i = 0; i < n; i++)
      slots_[i] = funcs_[i].callee >= 0 ? handles_[funcs_[i].callee] : WCPT_INVALID_HANDLE;
    ok_ = true;
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine() {
    if (ok_) {
      // Every handle the engine still owns, in one batch.
      std::vector<wcpt_handle> live;
      for (std::size_t i = 0; i < handles_.size(); i++)
        if (i >= freed_.size() || !freed_[i]) live.push_back(handles_[i]);
      (void)wcpt::free_many(live);
    }
    if (region_) (void)wcpt::code_region_remove(code_, code_size_);
    if (code_) rt_.release(code_);
  }

  bool ok() const { return ok_; }
  std::size_t size() const { return funcs_.size(); }
  const Func& func(std::size_t i) const { return funcs_[i]; }
  wcpt_handle handle(std::size_t i) const { return handles_[i]; }
  std::uint32_t& slot(std::size_t i) { return slots_[i]; }
  std::uint64_t entries(std::size_t i) const { return counters_[i]; }

  // Frees function i's handle (its callers' slots go stale).
  std::error_code free_function(std::size_t i) {
    std::error_code ec = wcpt_free(handles_[i]);
    if (!ec) {
      freed_.resize(handles_.size());
      freed_[i] = true;
    }
    return ec;
  }

  // Calls function i from C++ through its handle, checked like generated
  // code; false if the handle does not answer with the function's type.
  bool call(std::size_t i, std::int64_t x, std::int64_t y, std::int64_t* result) const {
    const void* base = wcpt::table_base();
    if (funcs_[i].two_args) {
      auto f = wcpt::call_target<std::int64_t(std::int64_t, std::int64_t)>(base, handles_[i], SIG_B);
      if (!f) return false;
      *result = f(x, y);
    } else {
      auto f = wcpt::call_target<std::int64_t(std::int64_t)>(base, handles_[i], SIG_A);
      if (!f) return false;
      *result = f(x);
    }
    return true;
  }

  // The reference interpreter: what function i computes.
  std::int64_t interpret(std::size_t i, std::int64_t x, std::int64_t y) const {
    const Func& f = funcs_[i];
    std::uint64_t r = static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(f.mul) +
                      (f.two_args ? static_cast<std::uint64_t>(y) : 0) + static_cast<std::uint64_t>(f.add);
    if (f.callee >= 0) r ^= static_cast<std::uint64_t>(interpret(static_cast<std::size_t>(f.callee), static_cast<std::int64_t>(r), 0));
    return static_cast<std::int64_t>(r);
  }

 private:
  asmjit::JitRuntime rt_;
  std::vector<Func> funcs_;
  std::unique_ptr<std::uint32_t[]> slots_;
  std::unique_ptr<std::uint64_t[]> counters_;
  std::vector<wcpt_handle> handles_;
  std::vector<bool> freed_;
  void* code_ = nullptr;
  std::size_t code_size_ = 0;
  bool region_ = false, ok_ = false;
};

// A deterministic module of `n` functions: every fourth is type B; most
// call an earlier type-A function.
inline std::vector<Func> make_module(std::size_t n, std::uint64_t seed) {
  std::vector<Func> funcs;
  std::vector<std::int32_t> type_a;
  for (std::size_t i = 0; i < n; i++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    Func f{};
    f.two_args = i % 4 == 3;
    f.mul = static_cast<std::int64_t>(seed % 1000) - 500;
    f.add = static_cast<std::int64_t>(seed >> 20);
    f.callee = !type_a.empty() && seed % 5 != 0 ? type_a[(seed >> 8) % type_a.size()] : -1;
    if (!f.two_args) type_a.push_back(static_cast<std::int32_t>(i));
    funcs.push_back(f);
  }
  return funcs;
}

}  // namespace wcpt_jit

#endif
