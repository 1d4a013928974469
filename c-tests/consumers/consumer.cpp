// A C++17 embedder: the C header is usable from C++ as is (extern "C"),
// and the installed C++ API (wcpt.hpp) needs nothing but the same
// pkg-config or CMake target.
#include <wcpt.h>
#include <wcpt.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace {
long twice(long x) { return 2 * x; }
}

int main() {
  std::vector<wcpt_handle> handles;
  for (int i = 0; i < 1000; i++) handles.push_back(wcpt_alloc(reinterpret_cast<uintptr_t>(&twice), 5));
  auto f = reinterpret_cast<long (*)(long)>(wcpt_get_checked(handles[500], 5));
  if (f == nullptr || f(21) != 42) return 1;
  for (wcpt_handle h : handles)
    if (wcpt_free(h) != WCPT_OK) return 2;
  wcpt_status s = wcpt_free(handles[0]);
  if (s != WCPT_ERR_DOUBLE_FREE) return 3;
  struct wcpt_stats st{};
  if (wcpt_stats(&st) != WCPT_OK || st.live != 0) return 4;
  {
    std::error_code ec;
    wcpt::unique_handle h = wcpt::unique_handle::alloc(&twice, 5, ec);
    auto g = wcpt::call_target<long(long)>(wcpt::table_base(), h.handle(), 5);
    if (ec || g == nullptr || g(4) != 8) return 5;
  }
  if (wcpt::get_stats(st) || st.live != 0) return 6;
  std::error_code e = s;
  std::string version = wcpt_version();
  std::printf("consumer (C++17): wcpt %s, %s (%s)\n", version.c_str(), wcpt_status_str(s), e.message().c_str());
  return 0;
}
