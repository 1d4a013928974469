// wcpt's stand-in for the V8 base macros and helpers the table code uses
// (see include/v8-internal.h in this directory).
#ifndef WCPT_V8REAL_BASE_MACROS_H_
#define WCPT_V8REAL_BASE_MACROS_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#define V8_EXPORT_PRIVATE
#define V8_INLINE inline __attribute__((always_inline))
#define V8_NODISCARD [[nodiscard]]
#define V8_ALLOW_UNUSED [[maybe_unused]]

// Release-build semantics: DCHECKs compile to nothing, CHECKs stay.
#define DCHECK(c) ((void)0)
#define DCHECK_EQ(a, b) ((void)0)
#define DCHECK_NE(a, b) ((void)0)
#define DCHECK_LT(a, b) ((void)0)
#define DCHECK_LE(a, b) ((void)0)
#define DCHECK_GT(a, b) ((void)0)
#define DCHECK_GE(a, b) ((void)0)
#define DCHECK_IMPLIES(a, b) ((void)0)
#define WCPT_V8REAL_CHECK(c)                                          \
  do {                                                                \
    if (!(c)) {                                                       \
      std::fprintf(stderr, "v8real: check failed: %s\n", #c);         \
      std::abort();                                                   \
    }                                                                 \
  } while (0)
#define CHECK(c) WCPT_V8REAL_CHECK(c)
#define CHECK_EQ(a, b) WCPT_V8REAL_CHECK((a) == (b))
#define SBXCHECK_EQ(a, b) WCPT_V8REAL_CHECK((a) == (b))
#define UNREACHABLE() std::abort()

namespace v8 {
namespace internal {

template <typename T, typename U>
constexpr bool IsAligned(T value, U alignment) {
  return (value & (alignment - 1)) == 0;
}

}  // namespace internal

namespace base {

// A mutex and its guard, as V8's base::Mutex (a futex-based mutex on Linux).
class Mutex {
 public:
  void Lock() { m_.lock(); }
  void Unlock() { m_.unlock(); }

 private:
  std::mutex m_;
};

class MutexGuard {
 public:
  explicit MutexGuard(Mutex* m) : m_(m) { m_->Lock(); }
  explicit MutexGuard(Mutex& m) : m_(&m) { m_->Lock(); }
  ~MutexGuard() { m_->Unlock(); }
  MutexGuard(const MutexGuard&) = delete;
  MutexGuard& operator=(const MutexGuard&) = delete;

 private:
  Mutex* m_;
};

}  // namespace base
}  // namespace v8

// A function returning one process-wide object, created on first use and
// never destroyed.
#define DEFINE_LAZY_LEAKY_OBJECT_GETTER(T, FunctionName, ...) \
  T* FunctionName() {                                         \
    static T* object = new T(__VA_ARGS__);                    \
    return object;                                            \
  }

#endif
