// wcpt's stand-in for V8's include/v8-internal.h: only the declarations
// that V8's code pointer table and segmented table use, written for the
// benchmark in benches/v8real (no V8 code is copied here).
#ifndef WCPT_V8REAL_V8_INTERNAL_H_
#define WCPT_V8REAL_V8_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <map>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "src/base/macros.h"

// The configuration the benchmark measures: a 64-bit build with the sandbox
// (16-byte entries: entrypoint and signature hash) and WebAssembly.
#define V8_TARGET_ARCH_64_BIT 1
#define V8_ENABLE_WEBASSEMBLY 1
#ifndef V8_ENABLE_SANDBOX
#define V8_ENABLE_SANDBOX 1
#endif
#define V8_ENABLE_SANDBOX_BOOL true
#define V8_HAS_PKU_JIT_WRITE_PROTECT 0

namespace v8 {
class VirtualAddressSpace;
namespace internal {

using Address = uintptr_t;
constexpr Address kNullAddress = 0;
constexpr size_t KB = 1024;
constexpr size_t MB = KB * KB;
constexpr size_t kMinimumOSPageSize = 4 * KB;
constexpr int kSystemPointerSize = sizeof(void*);
constexpr int kUInt64Size = sizeof(uint64_t);
constexpr size_t kWasmCodePointerTableReservationSize = 128 * MB;
static const char* const kPointerTableAddressSpaceName = "v8-pointer-table";

class ExternalReference;

class WasmCodePointer {
 public:
  static constexpr uint32_t kWasmCodePointerTableEntrySize =
      kSystemPointerSize + (V8_ENABLE_SANDBOX_BOOL ? kUInt64Size : 0);
  static constexpr uint32_t kIndexSpaceSize =
      kWasmCodePointerTableReservationSize / kWasmCodePointerTableEntrySize;
  WasmCodePointer() = default;
  explicit constexpr WasmCodePointer(uint32_t value) : value_(value) {}
  uint32_t value() const { return value_; }
  bool operator==(const WasmCodePointer& o) const { return value_ == o.value_; }
  bool operator!=(const WasmCodePointer& o) const { return value_ != o.value_; }

 private:
  uint32_t value_ = static_cast<uint32_t>(-1);
};

constexpr uint64_t kInvalidWasmSignatureHash = ~uint64_t{0};

}  // namespace internal
}  // namespace v8

#endif
