// wcpt's stand-in for V8's write scopes. This machine has no PKU, so V8
// itself would use its no-op scope for the code pointer table here.
#ifndef WCPT_V8REAL_CODE_MEMORY_ACCESS_H_
#define WCPT_V8REAL_CODE_MEMORY_ACCESS_H_

#include "src/base/macros.h"

namespace v8 {
namespace internal {

class NopRwxMemoryWriteScope final {
 public:
  NopRwxMemoryWriteScope() = default;
  explicit NopRwxMemoryWriteScope(const char*) {}
};
using CFIMetadataWriteScope = NopRwxMemoryWriteScope;

struct ThreadIsolation {
  static bool Enabled() { return false; }
  static int pkey() { return -1; }
};

}  // namespace internal
}  // namespace v8

#endif
