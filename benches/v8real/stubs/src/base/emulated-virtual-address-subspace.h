// wcpt's stand-in for V8's page allocation interfaces (include/v8-platform.h
// VirtualAddressSpace, base::EmulatedVirtualAddressSubspace): what the
// segmented table calls, with the same kind of cost on Linux (a mutex and
// an mprotect per segment allocated; madvise and mprotect per segment
// freed). Written for the benchmark; no V8 code is copied.
#ifndef WCPT_V8REAL_EMULATED_VAS_H_
#define WCPT_V8REAL_EMULATED_VAS_H_

#include <sys/mman.h>

#include <memory>
#include <optional>
#include <vector>

#include "include/v8-internal.h"

namespace v8 {

enum class PagePermissions {
  kNoAccess = 0,
  kRead = 1,
  kWrite = 2,
  kExecute = 4,
  kReadWrite = kRead | kWrite,
};

class VirtualAddressSpace {
 public:
  using Address = uintptr_t;
  using MemoryProtectionKeyId = int;
  static constexpr Address kNoHint = 0;

  VirtualAddressSpace(size_t granularity, Address base, size_t size)
      : granularity_(granularity), base_(base), size_(size) {}
  virtual ~VirtualAddressSpace() = default;

  size_t allocation_granularity() const { return granularity_; }
  Address base() const { return base_; }
  size_t size() const { return size_; }
  void SetName(const char*) {}

  virtual bool CanAllocateSubspaces() { return false; }
  virtual std::unique_ptr<VirtualAddressSpace> AllocateSubspace(
      Address, size_t, size_t, PagePermissions,
      std::optional<MemoryProtectionKeyId>) {
    return nullptr;
  }
  virtual Address AllocatePages(Address hint, size_t size, size_t alignment,
                                PagePermissions permissions) = 0;
  virtual void FreePages(Address address, size_t size) = 0;
  virtual bool SetPagePermissions(Address address, size_t size,
                                  PagePermissions permissions) {
    return mprotect(reinterpret_cast<void*>(address), size, Prot(permissions)) == 0;
  }
  virtual bool DecommitPages(Address address, size_t size) {
    void* p = reinterpret_cast<void*>(address);
    return madvise(p, size, MADV_DONTNEED) == 0 && mprotect(p, size, PROT_NONE) == 0;
  }

  static int Prot(PagePermissions p) {
    int prot = PROT_NONE;
    if (static_cast<int>(p) & static_cast<int>(PagePermissions::kRead)) prot |= PROT_READ;
    if (static_cast<int>(p) & static_cast<int>(PagePermissions::kWrite)) prot |= PROT_WRITE;
    return prot;
  }

 private:
  size_t granularity_;
  Address base_;
  size_t size_;
};

// The process's address space: reservations are fresh mappings.
class RootVirtualAddressSpace final : public VirtualAddressSpace {
 public:
  RootVirtualAddressSpace() : VirtualAddressSpace(4096, 0, ~size_t{0}) {}
  Address AllocatePages(Address, size_t size, size_t alignment,
                        PagePermissions permissions) override {
    // Over-reserve and trim to get the alignment.
    size_t padded = size + alignment;
    void* p = mmap(nullptr, padded, Prot(permissions),
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    Address start = reinterpret_cast<Address>(p);
    Address aligned = (start + alignment - 1) & ~(Address{alignment} - 1);
    if (aligned > start) munmap(p, aligned - start);
    Address end = start + padded;
    if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
    return aligned;
  }
  void FreePages(Address address, size_t size) override {
    munmap(reinterpret_cast<void*>(address), size);
  }
};

namespace internal {
inline VirtualAddressSpace* GetPlatformVirtualAddressSpace() {
  static RootVirtualAddressSpace* root = new RootVirtualAddressSpace();
  return root;
}

class V8 {
 public:
  [[noreturn]] static void FatalProcessOutOfMemory(void*, const char* where) {
    std::fprintf(stderr, "v8real: out of memory in %s\n", where);
    std::abort();
  }
};
}  // namespace internal

namespace base {

// A subspace inside a reservation: a mutex-protected first-fit allocator
// over pages, whose allocations are made accessible with mprotect.
class EmulatedVirtualAddressSubspace final : public VirtualAddressSpace {
 public:
  EmulatedVirtualAddressSubspace(VirtualAddressSpace* parent, Address base,
                                 size_t mapped_size, size_t total_size)
      : VirtualAddressSpace(parent->allocation_granularity(), base, total_size),
        parent_(parent),
        used_(mapped_size / parent->allocation_granularity(), false) {}
  ~EmulatedVirtualAddressSubspace() override { parent_->FreePages(base(), size()); }

  Address AllocatePages(Address, size_t size, size_t alignment,
                        PagePermissions permissions) override {
    MutexGuard guard(&mutex_);
    const size_t g = allocation_granularity();
    const size_t pages = size / g, step = std::max<size_t>(alignment / g, 1);
    for (size_t i = (lowest_free_ + step - 1) / step * step; i + pages <= used_.size(); i += step) {
      bool fits = true;
      for (size_t j = 0; j < pages && fits; j++) fits = !used_[i + j];
      if (!fits) continue;
      Address address = base() + i * g;
      if (!parent_->SetPagePermissions(address, size, permissions)) return 0;
      for (size_t j = 0; j < pages; j++) used_[i + j] = true;
      while (lowest_free_ < used_.size() && used_[lowest_free_]) lowest_free_++;
      return address;
    }
    return 0;
  }

  void FreePages(Address address, size_t size) override {
    MutexGuard guard(&mutex_);
    const size_t g = allocation_granularity();
    size_t first = (address - base()) / g;
    for (size_t j = 0; j < size / g; j++) used_[first + j] = false;
    lowest_free_ = std::min(lowest_free_, first);
    CHECK(parent_->DecommitPages(address, size));
  }

 private:
  VirtualAddressSpace* parent_;
  Mutex mutex_;
  std::vector<bool> used_;
  size_t lowest_free_ = 0;
};

}  // namespace base
}  // namespace v8

#endif
