// `make bench-v8real`: wcpt against V8 15.2's own WasmCodePointerTable,
// compiled unmodified from the `v8` crate's source tree (extracted at build
// time by fetch.sh; nothing of V8 is committed) over the stand-in headers in
// stubs/. Both tables run the same scenarios in one process, alternating,
// best of three; wcpt through its C ABI (libwcpt.so), V8 through one
// non-inlined call per operation, so each side pays one call per alloc and
// per free. Prints a Markdown section for BENCHMARKS.md.
#include "src/wasm/wasm-code-pointer-table-inl.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "wcpt.h"
}

using v8::internal::Address;
using v8::internal::WasmCodePointer;
using v8::internal::wasm::WasmCodePointerTable;

static WasmCodePointerTable* v8t;

// One table interface for the scenarios: plain function pointers, kept in
// volatile globals so that no call is inlined into the loops.
struct Impl {
  const char* name;
  uint32_t (*alloc)(uintptr_t, uint64_t);
  wcpt_status (*free)(uint32_t);
  uintptr_t (*get)(uint32_t);
  // A whole module: n entries allocated, then all freed.
  void (*module)(const uintptr_t*, const uint64_t*, size_t, uint32_t*);
};

extern "C" __attribute__((noinline)) uint32_t v8_alloc(uintptr_t ep, uint64_t sig) {
  return v8t->AllocateAndInitializeEntry(ep, sig).value();
}
extern "C" __attribute__((noinline)) wcpt_status v8_free(uint32_t h) {
  v8t->FreeEntry(WasmCodePointer{h});
  return WCPT_OK;
}
extern "C" __attribute__((noinline)) uintptr_t v8_get(uint32_t h) {
  return v8t->GetEntrypointWithoutSignatureCheck(WasmCodePointer{h});
}
// V8 has no batch calls: an engine instantiating a module calls
// AllocateAndInitializeEntry per function, and FreeEntry per function.
static void v8_module(const uintptr_t* eps, const uint64_t* sigs, size_t n, uint32_t* out) {
  uint32_t (*volatile a)(uintptr_t, uint64_t) = v8_alloc;
  wcpt_status (*volatile f)(uint32_t) = v8_free;
  for (size_t i = 0; i < n; i++) out[i] = a(eps[i], sigs[i]);
  for (size_t i = 0; i < n; i++) f(out[i]);
}

// wcpt's C functions are the function pointers themselves (V8's are the
// non-inlined wrappers above, its methods being C++ members).
static void w_module(const uintptr_t* eps, const uint64_t* sigs, size_t n, uint32_t* out) {
  if (wcpt_alloc_many(eps, sigs, n, out) != WCPT_OK || wcpt_free_many(out, n) != WCPT_OK) {
    std::fprintf(stderr, "wcpt batch call failed\n");
    std::exit(1);
  }
}

static Impl impls[2];

static double now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static volatile uintptr_t sink;

static double pairs(const Impl& m, long n) {
  auto alloc = m.alloc;
  auto free_ = m.free;
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    uint32_t h = alloc(0x100000 + (i & 0xffff) * 16, 7);
    free_(h);
  }
  return (now_ns() - t0) / n;
}

static double burst(const Impl& m, long n) {
  std::vector<uint32_t> hs(n);
  double t0 = now_ns();
  for (long i = 0; i < n; i++) hs[i] = m.alloc(0x100000 + (i & 0xffff) * 16, 7);
  for (long i = 0; i < n; i++) m.free(hs[i]);
  return (now_ns() - t0) / n;
}

static double module(const Impl& m, size_t functions, int rounds) {
  std::vector<uintptr_t> eps(functions);
  std::vector<uint64_t> sigs(functions);
  std::vector<uint32_t> out(functions);
  for (size_t i = 0; i < functions; i++) eps[i] = 0x200000 + i * 16, sigs[i] = i % 97;
  double t0 = now_ns();
  for (int r = 0; r < rounds; r++) m.module(eps.data(), sigs.data(), functions, out.data());
  return (now_ns() - t0) / (double(functions) * rounds);
}

// Lookups of 1M live handles in a random order (the order is fixed, the
// same for both tables).
static std::vector<uint32_t> lookup_handles;
static std::vector<uint32_t> lookup_order;
static double lookups(const Impl& m, long n) {
  auto get = m.get;
  uintptr_t acc = 0;
  double t0 = now_ns();
  for (long i = 0; i < n; i++) acc += get(lookup_handles[lookup_order[i & ((1 << 20) - 1)]]);
  double t = (now_ns() - t0) / n;
  sink = acc;
  return t;
}
static void lookup_setup(const Impl& m) {
  lookup_handles.clear();
  for (uint32_t i = 0; i < (1 << 20); i++) lookup_handles.push_back(m.alloc(0x100000 + (i & 0xffff) * 16, 7));
}
static void lookup_teardown(const Impl& m) {
  for (uint32_t h : lookup_handles) m.free(h);
}

// The sweep scenario, each table in a child process of its own (so that
// RSS is its own): 4M entries allocated, 3.5M freed (every entry of three
// segments in four, and every other one of the fourth), the table swept.
// RSS grown over the child's start, in MB: full and after the sweep.
struct SweepRss {
  double full, swept, ms;
};
static double rss_mb() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f && std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  if (f) std::fclose(f);
  return resident * (double)sysconf(_SC_PAGESIZE) / 1e6;
}
static bool sweep_frees(uint32_t index) { return (index / 4096) % 4 != 3 || index % 2 == 0; }
static SweepRss sweep_rss(bool wcpt) {
  auto* out = static_cast<SweepRss*>(
      mmap(nullptr, sizeof(SweepRss), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  *out = {NAN, NAN, NAN};
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    enum { N = 4000000 };
    auto* hs = static_cast<uint32_t*>(std::malloc(N * sizeof(uint32_t)));
    for (int i = 0; i < N; i++) hs[i] = 0;  // touched before the baseline
    double base = rss_mb();
    for (int i = 0; i < N; i++) hs[i] = wcpt ? wcpt_alloc(0x100000 + (i & 0xffff) * 16, 1) : v8_alloc(0x100000 + (i & 0xffff) * 16, 1);
    double full = rss_mb() - base;
    for (int i = 0; i < N; i++) {
      uint32_t index = wcpt ? hs[i] & WCPT_INDEX_MASK : hs[i];
      if (sweep_frees(index)) (void)(wcpt ? wcpt_free(hs[i]) : v8_free(hs[i]));
    }
    double t0 = now_ns();
    if (wcpt)
      wcpt_sweep(0);
    else
      v8t->SweepSegments(0);
    double ms = (now_ns() - t0) / 1e6;
    *out = {full, rss_mb() - base, ms};
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  SweepRss r = *out;
  munmap(out, sizeof(SweepRss));
  return r;
}

// Each thread keeps 256 live entries and, per op, checks one, frees it and
// allocates its replacement. A wrong value is a failure, not a timing.
static double churn(const Impl& m, int threads, long ops_per_thread) {
  std::vector<std::thread> ts;
  double t0 = now_ns();
  for (int t = 0; t < threads; t++) {
    ts.emplace_back([&m, t, ops_per_thread] {
      enum { R = 256 };
      uint32_t hs[R];
      uintptr_t eps[R];
      for (int i = 0; i < R; i++) eps[i] = 0x300000 + (t * R + i) * 16, hs[i] = m.alloc(eps[i], 3);
      for (long i = 0; i < ops_per_thread; i++) {
        int k = i % R;
        if (m.get(hs[k]) != eps[k]) {
          std::fprintf(stderr, "%s churn: wrong entrypoint\n", m.name);
          std::exit(1);
        }
        m.free(hs[k]);
        eps[k] = 0x300000 + ((t * R + k) * 16 + (i & 0xff) * 0x10000);
        hs[k] = m.alloc(eps[k], 3);
      }
      for (int i = 0; i < R; i++) m.free(hs[i]);
    });
  }
  for (auto& th : ts) th.join();
  return (now_ns() - t0) / (double(threads) * ops_per_thread);
}

// The cost floor, measured here: one uncontended CAS, one call through a
// function pointer, and a CAS right after the three stores that publish an
// entry (the stores must drain from the store buffer before the RMW).
static double floor_cas(long n) {
  static std::atomic<uint64_t> x{0};
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    uint64_t e = x.load(std::memory_order_relaxed);
    x.compare_exchange_strong(e, e + 1);
  }
  return (now_ns() - t0) / n;
}
static volatile uint64_t stores[64];
static double floor_stores_cas(long n) {
  static std::atomic<uint64_t> x{0};
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    stores[0] = i;
    stores[8] = i;
    stores[16] = i;
    uint64_t e = x.load(std::memory_order_relaxed);
    x.compare_exchange_strong(e, e + 1);
  }
  return (now_ns() - t0) / n;
}
__attribute__((noinline)) static void empty_fn() { __asm__ volatile(""); }
static double floor_call(long n) {
  void (*volatile f)() = empty_fn;
  double t0 = now_ns();
  for (long i = 0; i < n; i++) f();
  return (now_ns() - t0) / n;
}

template <typename F>
static void best_of_3(double out[2], F run) {
  out[0] = out[1] = INFINITY;
  for (int r = 0; r < 3; r++)
    for (int k = 0; k < 2; k++) out[k] = std::min(out[k], run(impls[k]));
}

struct Row {
  std::string name;
  double w, v;
  double target;  // wcpt / V8 at most; NAN for none
};

// ---- instruction counts (`--count SCENARIO IMPL`, run under callgrind by
// benches/v8real/count.sh with --toggle-collect='count_*'): each scenario
// runs once warm, then once inside a count_* function whose inclusive
// instructions callgrind reports; count.sh divides by the ops.

enum { COUNT_PAIRS = 200000, COUNT_LIVE = 1 << 16, COUNT_GETS = 1 << 20, COUNT_FUNCS = 10000, COUNT_ROUNDS = 10 };

extern "C" __attribute__((noinline)) void count_pairs(const Impl* m) { (void)pairs(*m, COUNT_PAIRS); }

static std::vector<uint32_t> live;
extern "C" __attribute__((noinline)) void count_gets(const Impl* m) {
  auto get = m->get;
  uintptr_t acc = 0;
  for (long i = 0; i < COUNT_GETS; i++) acc += get(live[i & (COUNT_LIVE - 1)]);
  sink = acc;
}

// Lookups inline in the caller, as an engine's C or C++ code would make
// them: wcpt's header wcpt_lookup over the table base, V8's inline
// GetEntrypointWithoutSignatureCheck (no call on either side).
extern "C" __attribute__((noinline)) void count_gets_inline(const Impl* m) {
  uintptr_t acc = 0;
  if (m == &impls[0]) {
    const void* base = wcpt_table_base();
    for (long i = 0; i < COUNT_GETS; i++) acc += wcpt_lookup(base, live[i & (COUNT_LIVE - 1)]);
  } else {
    for (long i = 0; i < COUNT_GETS; i++)
      acc += v8t->GetEntrypointWithoutSignatureCheck(WasmCodePointer{live[i & (COUNT_LIVE - 1)]});
  }
  sink = acc;
}

extern "C" __attribute__((noinline)) void count_module(const Impl* m) { (void)module(*m, COUNT_FUNCS, COUNT_ROUNDS); }

enum { COUNT_BURST = 1 << 20 };
extern "C" __attribute__((noinline)) void count_burst(const Impl* m) { (void)burst(*m, COUNT_BURST); }

static int count_main(const char* scenario, const char* impl) {
  const Impl* m = std::strcmp(impl, "wcpt") == 0 ? &impls[0] : &impls[1];
  if (std::strcmp(scenario, "pair") == 0) {
    (void)pairs(*m, 1000);
    count_pairs(m);
  } else if (std::strcmp(scenario, "get") == 0 || std::strcmp(scenario, "get_inline") == 0) {
    for (int i = 0; i < COUNT_LIVE; i++) live.push_back(m->alloc(0x100000 + i * 16, 7));
    uintptr_t acc = 0;
    for (int i = 0; i < COUNT_LIVE; i++) acc += m->get(live[i]) == uintptr_t(0x100000 + i * 16);
    if (acc != COUNT_LIVE) {
      std::fprintf(stderr, "%s get: wrong entrypoint\n", m->name);
      return 1;
    }
    if (scenario[3] == '_')
      count_gets_inline(m);
    else
      count_gets(m);
  } else if (std::strcmp(scenario, "module") == 0) {
    (void)module(*m, COUNT_FUNCS, 1);
    count_module(m);
  } else if (std::strcmp(scenario, "burst") == 0) {
    (void)burst(*m, COUNT_BURST);
    count_burst(m);
  } else {
    std::fprintf(stderr, "unknown scenario %s\n", scenario);
    return 2;
  }
  // The ops the counted function ran, for count.sh.
  long ops = std::strcmp(scenario, "pair") == 0    ? COUNT_PAIRS
             : std::strcmp(scenario, "burst") == 0 ? COUNT_BURST
             : std::strncmp(scenario, "get", 3) == 0 ? COUNT_GETS
                                                 : long(COUNT_FUNCS) * COUNT_ROUNDS;
  std::printf("ops %ld\n", ops);
  return 0;
}

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  long scale = quick ? 10 : 1;
  v8t = new WasmCodePointerTable();
  v8t->Initialize();
  if (wcpt_init() != WCPT_OK) {
    std::fprintf(stderr, "wcpt_init failed\n");
    return 1;
  }
  impls[0] = {"wcpt", wcpt_alloc, wcpt_free, wcpt_get, w_module};
  impls[1] = {"V8", v8_alloc, v8_free, v8_get, v8_module};
  if (argc == 4 && std::strcmp(argv[1], "--count") == 0) return count_main(argv[2], argv[3]);

  // The sweep first, in children, on tables nothing has touched yet.
  SweepRss sweep_w = sweep_rss(true), sweep_v = sweep_rss(false);

  // Warm both tables up (segments committed once).
  for (auto& m : impls) burst(m, 1 << 20 >> (quick ? 3 : 0)), pairs(m, 100000);

  std::vector<Row> rows;
  double r[2];
  lookup_order.resize(1 << 20);
  for (uint32_t i = 0, x = 12345; i < (1u << 20); i++) x = x * 1103515245u + 12345u, lookup_order[i] = (x >> 8) & ((1 << 20) - 1);
  for (int k = 0; k < 2; k++) lookup_setup(impls[k]);
  best_of_3(r, [&](const Impl& m) { return lookups(m, 20000000 / scale); });
  for (int k = 0; k < 2; k++) lookup_teardown(impls[k]);
  rows.push_back({"lookup (get), 1M live, random order", r[0], r[1], 1.0});
  best_of_3(r, [&](const Impl& m) { return pairs(m, 20000000 / scale); });
  rows.push_back({"alloc+free pair, one thread", r[0], r[1], 0.8});
  best_of_3(r, [&](const Impl& m) { return burst(m, 1000000 / scale); });
  rows.push_back({"1M allocs then 1M frees, per pair", r[0], r[1], 1.0});
  best_of_3(r, [&](const Impl& m) { return module(m, 10000, 100 / (int)scale); });
  rows.push_back({"module: 10k functions x 100 (wcpt batch calls)", r[0], r[1], 0.5});
  double churn_w[9] = {0};
  for (int threads : {1, 2, 4, 8}) {
    best_of_3(r, [&](const Impl& m) { return churn(m, threads, 4000000 / scale / threads); });
    churn_w[threads] = r[0];
    double target = threads == 1 ? 0.8 : 0.2;
    rows.push_back({"churn, " + std::to_string(threads) + " thread(s)", r[0], r[1], target});
  }
  rows.push_back({"RSS after the sweep scenario (MB grown)", sweep_w.swept, sweep_v.swept, 1.0});
  double cas = INFINITY, call = INFINITY, scas = INFINITY;
  for (int i = 0; i < 3; i++) {
    cas = std::min(cas, floor_cas(20000000 / scale));
    call = std::min(call, floor_call(20000000 / scale));
    scas = std::min(scas, floor_stores_cas(20000000 / scale));
  }

  std::printf("## Against V8 15.2's own table code\n\n");
  std::printf("Written by `make bench` (benches/v8real): V8's src/wasm/wasm-code-pointer-table.{h,-inl.h,.cc} and "
              "src/common/segmented-table{.h,-inl.h}, extracted from the `v8` crate 152.2.0 at build time and compiled "
              "unmodified (g++ -O2, sandbox on: 16-byte entries) over wcpt's stand-in headers for V8's base "
              "declarations (benches/v8real/stubs: mutex, page reservation and release, no-op write scopes, as V8 "
              "uses on a machine without PKU). Same process, alternating, best of three; wcpt through libwcpt.so, V8 "
              "through one non-inlined call per operation.%s\n\n",
              quick ? " **Quick run (one tenth of the work): not for the record.**" : "");
  std::printf("| scenario (ns per op) | wcpt | V8 15.2 | wcpt / V8 | target |\n|---|---|---|---|---|\n");
  std::vector<std::string> missed;
  for (auto& row : rows) {
    double ratio = row.w / row.v;
    char target[64] = "";
    if (!std::isnan(row.target)) {
      bool ok = ratio <= row.target;
      std::snprintf(target, sizeof target, "<= %.2gx: %s", row.target, ok ? "met" : "MISSED");
      if (!ok) {
        char m[160];
        std::snprintf(m, sizeof m, "%s: %.2fx V8, target <= %.2gx", row.name.c_str(), ratio, row.target);
        missed.push_back(m);
      }
    }
    std::printf("| %s | %.1f | %.1f | %.2fx | %s |\n", row.name.c_str(), row.w, row.v, ratio, target);
  }
  double scaling = churn_w[8] / churn_w[2];
  std::printf("\n- churn scaling: wcpt's 8-thread ns/op is %.2fx its 2-thread figure (target: no slower, <= 1.0x: %s).\n",
              scaling, scaling <= 1.0 ? "met" : "MISSED");
  if (scaling > 1.0) {
    char m[120];
    std::snprintf(m, sizeof m, "churn: 8 threads %.2fx the 2-thread ns/op, target <= 1.0x", scaling);
    missed.push_back(m);
  }
  std::printf("- sweep scenario (4M entries, 3.5M freed, each table in a child of its own): RSS grown %.1f MB full, "
              "%.1f MB after the sweep for wcpt; %.1f MB and %.1f MB for V8. The sweep took %.2f ms (wcpt) and %.2f ms "
              "(V8): %.2fx.\n",
              sweep_w.full, sweep_w.swept, sweep_v.full, sweep_v.swept, sweep_w.ms, sweep_v.ms, sweep_w.ms / sweep_v.ms);
  double pair_floor = cas + 2 * call, store_floor = scas + 2 * call;
  std::printf("- the floor, measured in this run: one uncontended CAS of a word just loaded (as `free` does with "
              "the entry's metadata word) %.2f ns; one call through a function pointer "
              "%.2f ns; a CAS right after three stores (what a free meets after the alloc that published the entry) "
              "%.2f ns. A pair needs one RMW (double-free detection) and two calls: at least %.2f ns, or %.2f ns with "
              "the publishing stores in front of the RMW. wcpt's pair is %.2fx the first and %.2fx the second; V8's "
              "is %.2fx and %.2fx. The pair target (0.8x V8) is %.2f ns. V8's pair makes two RMWs (a CAS on its "
              "freelist head to allocate and one to free), wcpt's one: where an RMW is dear, wcpt gains.\n",
              cas, call, scas, pair_floor, store_floor, rows[1].w / pair_floor, rows[1].w / store_floor,
              rows[1].v / pair_floor, rows[1].v / store_floor, 0.8 * rows[1].v);
  if (!missed.empty()) {
    std::printf("- targets MISSED against V8's own code:\n");
    for (auto& m : missed) std::printf("  - %s\n", m.c_str());
  }
  return 0;
}
