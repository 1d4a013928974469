// A C++17 embedder: the header is usable from C++ as is (extern "C").
#include <wcpt.h>

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
  std::string version = wcpt_version();
  std::printf("consumer (C++17): wcpt %s, %s\n", version.c_str(), wcpt_status_str(s));
  return 0;
}
