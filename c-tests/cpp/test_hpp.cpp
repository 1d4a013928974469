// Tests of include/wcpt.hpp: RAII under moves, errors as std::error_code,
// batch calls over containers, native handles, stats, threads. Built twice
// by `make check-cpp`: with exceptions and RTTI, and with -fno-exceptions
// -fno-rtti (then the throwing forms are absent and not tested).
#include <wcpt.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

static std::atomic<int> failures{0};
static int passed, failed;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      failures++;                                                            \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

#define RUN(test)                                  \
  do {                                             \
    int before = failures.load();                  \
    test();                                        \
    if (failures.load() == before)                 \
      passed++, std::printf("  ok   %s\n", #test); \
    else                                           \
      failed++, std::printf("  FAIL %s\n", #test); \
  } while (0)

static long twice(long x) { return 2 * x; }
static long thrice(long x) { return 3 * x; }
constexpr std::uint64_t SIG = 0x1234;

static std::size_t live() {
  wcpt::stats s{};
  CHECK(!wcpt::get_stats(s));
  return s.live;
}

static void test_raii_under_moves() {
  std::size_t base = live();
  std::error_code ec;
  wcpt_handle first;
  {
    wcpt::unique_handle a = wcpt::unique_handle::alloc(&twice, SIG, ec);
    CHECK(!ec && a && a.get() == reinterpret_cast<std::uintptr_t>(&twice));
    first = a.handle();
    CHECK(live() == base + 1);
    wcpt::unique_handle b(std::move(a)); // move-construct: a is empty
    CHECK(!a && a.handle() == WCPT_INVALID_HANDLE && b.handle() == first);
    wcpt::unique_handle c = wcpt::unique_handle::alloc(&thrice, SIG, ec);
    wcpt_handle second = c.handle();
    c = std::move(b); // move-assign: c's old handle is freed
    CHECK(c.handle() == first && wcpt::get(second) == 0 && live() == base + 1);
    wcpt::unique_handle& self = c;
    c = std::move(self); // self-move keeps it
    CHECK(c.handle() == first && wcpt::get(first) != 0);
    CHECK(!c.set(reinterpret_cast<std::uintptr_t>(&thrice)));
    auto f = wcpt::call_target<long(long)>(wcpt::table_base(), c.handle(), SIG);
    CHECK(f != nullptr && f(5) == 15);
    CHECK(wcpt::call_target<long(long)>(wcpt::table_base(), c.handle(), SIG + 1) == nullptr);
    wcpt_handle raw = c.release(); // release: not freed
    CHECK(!c && wcpt::get(raw) != 0);
    c.reset(raw); // owned again
    CHECK(c.handle() == raw);
  } // destroyed: freed
  CHECK(wcpt::get(first) == 0 && live() == base);
  wcpt::unique_handle d = wcpt::unique_handle::alloc(&twice, SIG, ec);
  wcpt_handle h = d.handle();
  CHECK(!d.reset()); // frees
  CHECK(wcpt::get(h) == 0 && !d && !d.reset()); // nothing left to free: OK
}

static void test_errors() {
  std::error_code ec;
  wcpt::unique_handle bad = wcpt::unique_handle::alloc(std::uintptr_t(1) << 63, SIG, ec);
  CHECK(!bad && ec == WCPT_ERR_INVALID_ARGUMENT);
  CHECK(std::strcmp(ec.category().name(), "wcpt") == 0);
  CHECK(ec.message() == wcpt_status_str(WCPT_ERR_INVALID_ARGUMENT));
  CHECK(&ec.category() == &wcpt::category());
  std::error_code ok = WCPT_OK;
  CHECK(!ok);
  // A reset that frees a handle somebody already freed says so.
  wcpt::unique_handle h = wcpt::unique_handle::alloc(&twice, SIG, ec);
  CHECK(wcpt_free(h.handle()) == WCPT_OK);
  CHECK(h.reset() == WCPT_ERR_DOUBLE_FREE);
  CHECK(wcpt::set(WCPT_NULL_HANDLE, 0x1000) == WCPT_ERR_INVALID_HANDLE);
  CHECK(wcpt::last_error() == WCPT_ERR_INVALID_ARGUMENT); // from the alloc above, per thread
#ifdef WCPT_HPP_EXCEPTIONS
  bool threw = false;
  try {
    (void)wcpt::unique_handle::alloc(std::uintptr_t(1) << 63, SIG);
  } catch (const std::system_error& e) {
    threw = e.code() == WCPT_ERR_INVALID_ARGUMENT;
  }
  CHECK(threw);
  wcpt::unique_handle t = wcpt::unique_handle::alloc(&twice, SIG);
  CHECK(t && wcpt::get_stats().live >= 1);
#endif
}

static void test_batch_over_containers() {
  std::size_t base = live();
  std::vector<std::uintptr_t> eps(300);
  std::vector<std::uint64_t> sigs(300, SIG);
  std::vector<wcpt_handle> out(300, 0x1234);
  for (std::size_t i = 0; i < eps.size(); i++) eps[i] = 0x10000 + 16 * i;
  CHECK(!wcpt::alloc_many(eps, sigs, out));
  CHECK(live() == base + 300);
  for (std::size_t i = 0; i < out.size(); i++) CHECK(wcpt::get(out[i], SIG) == eps[i]);
  std::vector<std::uintptr_t> moved(eps.size(), 0x20000);
  CHECK(!wcpt::set_many(out, moved));
  CHECK(wcpt::get(out[7]) == 0x20000);
  std::vector<wcpt_handle> wrong(299);
  CHECK(wcpt::alloc_many(eps, sigs, wrong) == WCPT_ERR_INVALID_ARGUMENT); // different sizes: nothing
  CHECK(live() == base + 300);
  std::array<wcpt_handle, 2> twice_the_same{out[0], out[0]};
  CHECK(wcpt::free_many(twice_the_same) == WCPT_ERR_DOUBLE_FREE); // all or nothing
  CHECK(live() == base + 300);
  CHECK(!wcpt::free_many(out));
  CHECK(live() == base);
  // Pointer + size forms, and an owner per handle after a batch.
  CHECK(!wcpt::alloc_many(eps.data(), sigs.data(), 10, out.data()));
  {
    std::vector<wcpt::unique_handle> owners;
    for (std::size_t i = 0; i < 10; i++) owners.emplace_back(out[i]);
    CHECK(live() == base + 10);
  }
  CHECK(live() == base);
#if __cplusplus >= 202002L && __has_include(<span>)
  std::span<const std::uintptr_t> se(eps.data(), 5);
  std::span<const std::uint64_t> ss(sigs.data(), 5);
  std::span<wcpt_handle> so(out.data(), 5);
  CHECK(!wcpt::alloc_many(se, ss, so) && !wcpt::free_many(std::span<const wcpt_handle>(out.data(), 5)));
#endif
}

static void test_natives_and_stats() {
  std::error_code ec;
  auto a = wcpt::native_handle::of(reinterpret_cast<std::uintptr_t>(&twice), ec);
  auto b = wcpt::native_handle::of(reinterpret_cast<std::uintptr_t>(&twice), ec);
  auto t = wcpt::native_handle::of(reinterpret_cast<std::uintptr_t>(&twice), SIG, ec);
  CHECK(!ec && a && a == b && a != t);
  CHECK(wcpt::get(t.handle(), SIG) == reinterpret_cast<std::uintptr_t>(&twice));
  auto z = wcpt::native_handle::of(0, ec);
  CHECK(!z && ec == WCPT_ERR_INVALID_ARGUMENT);
  wcpt::stats s{};
  CHECK(!wcpt::get_stats(s) && s.capacity == WCPT_CAPACITY && s.native >= 2);
  CHECK(wcpt::protection_mode() != WCPT_PROTECTION_AUTO);
  CHECK(!wcpt::thread_attach());
  wcpt::config c = wcpt::default_config();
  CHECK(c.size == sizeof(wcpt::config) && c.protection == WCPT_PROTECTION_AUTO && c.pkey == -1);
  CHECK(!wcpt::init() && !wcpt::init_with(c)); // the table has the defaults
  c.max_entries = 10;
  CHECK(wcpt::init_with(c) == WCPT_ERR_ALREADY_INITIALIZED);
  wcpt::sweep();
}

static void test_threads() {
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; t++)
    ts.emplace_back([t, &wrong] {
      std::error_code ec;
      std::vector<wcpt::unique_handle> mine;
      for (int i = 0; i < 5000; i++) {
        std::uintptr_t ep = 0x100000 + 16 * std::uintptr_t(t * 5000 + i);
        mine.push_back(wcpt::unique_handle::alloc(ep, SIG, ec));
        if (ec || mine.back().get() != ep) wrong++;
        if (i % 3 == 0) mine.erase(mine.begin() + (i % mine.size())); // freed, others moved
      }
      for (auto& h : mine)
        if (wcpt::get(h.handle(), SIG) == 0) wrong++;
    });
  for (auto& th : ts) th.join();
  CHECK(wrong.load() == 0);
}

int main() {
  std::size_t base = 0;
  {
    wcpt::stats s{};
    if (wcpt::get_stats(s)) return 1;
    base = s.live;
  }
  RUN(test_raii_under_moves);
  RUN(test_errors);
  RUN(test_batch_over_containers);
  RUN(test_natives_and_stats);
  RUN(test_threads);
  CHECK(live() == base);
#ifdef WCPT_HPP_EXCEPTIONS
  const char* name = "test_hpp";
#else
  const char* name = "test_hpp_noexcept";
#endif
  std::printf("%s: %d passed, %d failed, 0 skipped\n", name, passed, failed + (failures.load() && !failed ? 1 : 0));
  return failures.load() ? 1 : 0;
}
