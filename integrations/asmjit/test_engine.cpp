// The asmjit engine's tests: a module of a few hundred functions compiled
// at run time computes what the reference interpreter computes, calling
// between its functions only through wcpt handles; a stale and a mistyped
// handle trap in generated code without entering the callee.
#include "engine.hpp"

#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstring>

using namespace wcpt_jit;

static int passed, failed, failures;
#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) failures++, std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
  } while (0)
#define RUN(test)                                   \
  do {                                              \
    int before = failures;                          \
    test();                                         \
    if (failures == before)                         \
      passed++, std::printf("  ok   %s\n", #test);  \
    else                                            \
      failed++, std::printf("  FAIL %s\n", #test);  \
  } while (0)

static sigjmp_buf trap_env;
static volatile sig_atomic_t traps;
static void on_sigill(int) {
  traps++;
  siglongjmp(trap_env, 1);
}

// Calls function i through the engine; true if generated code trapped.
static bool traps_on_call(Engine& e, std::size_t i, std::int64_t x) {
  if (sigsetjmp(trap_env, 1) == 0) {
    std::int64_t r = 0;
    CHECK(e.call(i, x, 0, &r));
    return false;
  }
  return true;
}

static const std::int64_t inputs[] = {0, 1, -1, 42, 123456789, INT64_MIN, INT64_MAX};

static void test_results_equal_the_interpreter() {
  Engine e(make_module(400, 0x9E3779B97F4A7C15ull));
  CHECK(e.ok());
  if (!e.ok()) return;
  int wrong = 0, calls = 0;
  for (std::size_t i = 0; i < e.size(); i++)
    for (std::int64_t x : inputs) {
      std::int64_t r = 0, y = x ^ 0x5555;
      if (!e.call(i, x, y, &r) || r != e.interpret(i, x, y)) wrong++;
      calls++;
    }
  CHECK(wrong == 0);
  std::printf("  %d calls into %zu jitted functions, %d wrong\n", calls, e.size(), wrong);
  // Its code region is registered: an entrypoint outside it is refused.
  std::error_code ec;
  auto stray = wcpt::unique_handle::alloc(std::uintptr_t(0x1000), SIG_A, ec);
  CHECK(!stray && ec == WCPT_ERR_NOT_CODE);
}

// A type-A function with a type-A callee, and a type-B function.
static void pick(const Engine& e, std::size_t* caller, std::size_t* type_b) {
  *caller = *type_b = SIZE_MAX;
  for (std::size_t i = 0; i < e.size(); i++) {
    if (*caller == SIZE_MAX && !e.func(i).two_args && e.func(i).callee >= 0) *caller = i;
    if (*type_b == SIZE_MAX && e.func(i).two_args) *type_b = i;
  }
}

static void test_a_stale_handle_traps_without_entering_the_callee() {
  Engine e(make_module(300, 12345));
  std::size_t caller, type_b;
  pick(e, &caller, &type_b);
  CHECK(e.ok() && caller != SIZE_MAX);
  if (!e.ok() || caller == SIZE_MAX) return;
  std::size_t callee = static_cast<std::size_t>(e.func(caller).callee);
  CHECK(!traps_on_call(e, caller, 7)); // live: works
  std::uint64_t entered = e.entries(callee), caller_entered = e.entries(caller);
  CHECK(!e.free_function(callee));
  CHECK(traps_on_call(e, caller, 7));  // the slot's handle is stale now
  CHECK(e.entries(callee) == entered); // the callee never ran
  CHECK(e.entries(caller) == caller_entered + 1);
  // Another allocation may reuse the entry: the stale handle still traps.
  std::error_code ec;
  std::vector<wcpt::unique_handle> fresh;
  for (int i = 0; i < 64; i++) fresh.push_back(wcpt::unique_handle::alloc(wcpt::get(e.handle(caller)), SIG_A, ec));
  CHECK(traps_on_call(e, caller, 7));
  CHECK(e.entries(callee) == entered);
}

static void test_a_mistyped_handle_traps_without_entering_the_callee() {
  Engine e(make_module(300, 777));
  std::size_t caller, type_b;
  pick(e, &caller, &type_b);
  CHECK(e.ok() && caller != SIZE_MAX && type_b != SIZE_MAX);
  if (!e.ok() || caller == SIZE_MAX || type_b == SIZE_MAX) return;
  std::uint32_t good = e.slot(caller);
  std::uint64_t entered = e.entries(type_b);
  e.slot(caller) = e.handle(type_b); // a live handle of the wrong type
  CHECK(traps_on_call(e, caller, 3));
  CHECK(e.entries(type_b) == entered);
  e.slot(caller) = WCPT_NULL_HANDLE; // the null handle, and a forged one
  CHECK(traps_on_call(e, caller, 3));
  e.slot(caller) = good ^ 0x01000000u;
  CHECK(traps_on_call(e, caller, 3));
  e.slot(caller) = good; // back: works again, with the right result
  std::int64_t r = 0;
  CHECK(!traps_on_call(e, caller, 3) && e.call(caller, 3, 0, &r) && r == e.interpret(caller, 3, 0));
}

// The negative control: without the compare, the same mistyped call does
// enter the callee, so the test above can fail.
static void test_negative_control_without_the_check_enters_the_callee() {
  Engine e(make_module(300, 777), /*checked=*/false);
  std::size_t caller, type_b;
  pick(e, &caller, &type_b);
  CHECK(e.ok() && caller != SIZE_MAX && type_b != SIZE_MAX);
  if (!e.ok() || caller == SIZE_MAX || type_b == SIZE_MAX) return;
  std::uint64_t entered = e.entries(type_b);
  e.slot(caller) = e.handle(type_b);
  CHECK(!traps_on_call(e, caller, 3));
  CHECK(e.entries(type_b) == entered + 1);
}

int main() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigill;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGILL, &sa, nullptr);
  RUN(test_results_equal_the_interpreter);
  RUN(test_a_stale_handle_traps_without_entering_the_callee);
  RUN(test_a_mistyped_handle_traps_without_entering_the_callee);
  RUN(test_negative_control_without_the_check_enters_the_callee);
  wcpt::stats st{};
  CHECK(!wcpt::get_stats(st) && st.live == 0); // every engine freed its handles
  if (st.live != 0 && failed == 0) failed++;
  std::printf("test_asmjit_engine: %d passed, %d failed, 0 skipped\n", passed, failed);
  return failed ? 1 : 0;
}
