/*
 * wcpt.hpp: the C++ API of wcpt, header-only, C++17, over wcpt.h.
 *
 * - wcpt::unique_handle owns an allocated handle and frees it when
 *   destroyed (move-only); wcpt::native_handle is a plain value (natives
 *   are never freed).
 * - Errors are std::error_code in the "wcpt" category (messages are
 *   wcpt_status_str's); a wcpt_status converts to one implicitly.
 * - Every call has a non-throwing form (it takes a std::error_code& or
 *   returns one), so the header builds with -fno-exceptions; the throwing
 *   forms (std::system_error) exist only where exceptions are on.
 * - No allocation, no RTTI needed; thread-safe as the C API is.
 *
 * Written by hand (not generated); `make check-cpp` tests it, also with
 * -fno-exceptions -fno-rtti.
 */
#ifndef WCPT_HPP
#define WCPT_HPP

#include <wcpt.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define WCPT_HPP_EXCEPTIONS 1
#endif
#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#endif

namespace wcpt {

/** The "wcpt" error category: values are `wcpt_status`, messages
 *  `wcpt_status_str`. */
class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "wcpt"; }
  std::string message(int value) const override { return wcpt_status_str(static_cast<wcpt_status>(value)); }
};

/** The one instance of the category (a function-local static: no
 *  allocation, thread-safe initialisation). */
inline const std::error_category& category() noexcept {
  static const error_category_impl instance;
  return instance;
}

}  // namespace wcpt

/** A wcpt_status as a std::error_code (found by argument-dependent lookup:
 *  wcpt_status is declared in the global namespace). */
inline std::error_code make_error_code(wcpt_status s) noexcept {
  return std::error_code(static_cast<int>(s), wcpt::category());
}

namespace std {
template <>
struct is_error_code_enum<wcpt_status> : true_type {};
}  // namespace std

namespace wcpt {

using handle_t = wcpt_handle;
using stats = struct wcpt_stats;
using config = struct wcpt_config;

#ifdef WCPT_HPP_EXCEPTIONS
/** Throws std::system_error for a failed status (throwing forms only). */
inline void throw_if(std::error_code ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
}
#endif

/** The reason a handle-returning call failed: wcpt_last_error(). */
inline std::error_code last_error() noexcept { return wcpt_last_error(); }

/** Creates the process-wide table with the defaults (idempotent). */
inline std::error_code init() noexcept { return wcpt_init(); }

/** The defaults of struct wcpt_config (wcpt_config_init). */
inline config default_config() noexcept {
  config c{};
  wcpt_config_init(&c);
  return c;
}

/** Creates the table with `c` (wcpt_init_with). */
inline std::error_code init_with(const config& c) noexcept { return wcpt_init_with(&c); }

/** The address generated code reads entries from (wcpt_table_base). */
inline const void* table_base() noexcept { return wcpt_table_base(); }

/** The protection in force. */
inline wcpt_protection protection_mode() noexcept { return wcpt_protection_mode(); }

/** The entrypoint of a live handle, or 0 (wcpt_get, wcpt_get_checked). */
inline std::uintptr_t get(handle_t h) noexcept { return wcpt_get(h); }
inline std::uintptr_t get(handle_t h, std::uint64_t signature) noexcept { return wcpt_get_checked(h, signature); }

/** Replaces a live handle's entrypoint (tier-up). */
inline std::error_code set(handle_t h, std::uintptr_t entrypoint) noexcept { return wcpt_set(h, entrypoint); }

/** Releases fully free segments (wcpt_sweep); returns how many. */
inline std::size_t sweep(std::size_t threshold = 0) noexcept { return wcpt_sweep(threshold); }

/** The table's counters. */
inline std::error_code get_stats(stats& out) noexcept { return wcpt_stats(&out); }
#ifdef WCPT_HPP_EXCEPTIONS
inline stats get_stats() {
  stats s{};
  throw_if(get_stats(s), "wcpt_stats");
  return s;
}
#endif

/** Registers / unregisters an executable region entrypoints are checked
 *  against. */
inline std::error_code code_region_add(const void* start, std::size_t len) noexcept {
  return wcpt_code_region_add(reinterpret_cast<std::uintptr_t>(start), len);
}
inline std::error_code code_region_remove(const void* start, std::size_t len) noexcept {
  return wcpt_code_region_remove(reinterpret_cast<std::uintptr_t>(start), len);
}

/** Puts the calling thread in the read-only state (wcpt_thread_attach). */
inline std::error_code thread_attach() noexcept { return wcpt_thread_attach(); }

/**
 * An allocated handle that is freed when its owner is destroyed. Move-only;
 * an empty one holds WCPT_INVALID_HANDLE.
 */
class unique_handle {
 public:
  unique_handle() noexcept = default;
  /** Takes ownership of `h` (from wcpt_alloc or wcpt_alloc_many). */
  explicit unique_handle(handle_t h) noexcept : h_(h) {}
  unique_handle(const unique_handle&) = delete;
  unique_handle& operator=(const unique_handle&) = delete;
  unique_handle(unique_handle&& other) noexcept : h_(other.release()) {}
  unique_handle& operator=(unique_handle&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~unique_handle() { reset(); }

  /** Allocates an entry (wcpt_alloc); empty with `ec` set on failure. */
  static unique_handle alloc(std::uintptr_t entrypoint, std::uint64_t signature, std::error_code& ec) noexcept {
    handle_t h = wcpt_alloc(entrypoint, signature);
    ec = h == WCPT_INVALID_HANDLE ? last_error() : std::error_code();
    return unique_handle(h);
  }
  template <class R, class... A>
  static unique_handle alloc(R (*f)(A...), std::uint64_t signature, std::error_code& ec) noexcept {
    return alloc(reinterpret_cast<std::uintptr_t>(f), signature, ec);
  }
#ifdef WCPT_HPP_EXCEPTIONS
  static unique_handle alloc(std::uintptr_t entrypoint, std::uint64_t signature) {
    std::error_code ec;
    unique_handle h = alloc(entrypoint, signature, ec);
    throw_if(ec, "wcpt_alloc");
    return h;
  }
  template <class R, class... A>
  static unique_handle alloc(R (*f)(A...), std::uint64_t signature) {
    return alloc(reinterpret_cast<std::uintptr_t>(f), signature);
  }
#endif

  /** The handle (WCPT_INVALID_HANDLE if empty). */
  handle_t handle() const noexcept { return h_; }
  explicit operator bool() const noexcept { return h_ != WCPT_INVALID_HANDLE; }
  /** Gives up ownership without freeing; the owner is empty afterwards. */
  handle_t release() noexcept { return std::exchange(h_, WCPT_INVALID_HANDLE); }
  /** Frees the owned handle (if any), then owns `h`. Returns the free's
   *  status (OK when there was nothing to free). */
  std::error_code reset(handle_t h = WCPT_INVALID_HANDLE) noexcept {
    handle_t old = std::exchange(h_, h);
    return old == WCPT_INVALID_HANDLE ? std::error_code() : std::error_code(wcpt_free(old));
  }

  /** Tier-up: a new entrypoint, same handle and signature. */
  std::error_code set(std::uintptr_t entrypoint) const noexcept { return wcpt_set(h_, entrypoint); }
  /** The entrypoint (0 if empty). */
  std::uintptr_t get() const noexcept { return wcpt_get(h_); }

 private:
  handle_t h_ = WCPT_INVALID_HANDLE;
};

/**
 * The one handle of a host function (wcpt_native_handle): a plain value,
 * live until wcpt_teardown, never freed.
 */
class native_handle {
 public:
  native_handle() noexcept = default;
  static native_handle of(std::uintptr_t address, std::error_code& ec) noexcept {
    handle_t h = wcpt_native_handle(address);
    ec = h == WCPT_INVALID_HANDLE ? last_error() : std::error_code();
    return native_handle(h);
  }
  static native_handle of(std::uintptr_t address, std::uint64_t signature, std::error_code& ec) noexcept {
    handle_t h = wcpt_native_handle_typed(address, signature);
    ec = h == WCPT_INVALID_HANDLE ? last_error() : std::error_code();
    return native_handle(h);
  }
#ifdef WCPT_HPP_EXCEPTIONS
  static native_handle of(std::uintptr_t address) {
    std::error_code ec;
    native_handle n = of(address, ec);
    throw_if(ec, "wcpt_native_handle");
    return n;
  }
  static native_handle of(std::uintptr_t address, std::uint64_t signature) {
    std::error_code ec;
    native_handle n = of(address, signature, ec);
    throw_if(ec, "wcpt_native_handle_typed");
    return n;
  }
#endif
  handle_t handle() const noexcept { return h_; }
  explicit operator bool() const noexcept { return h_ != WCPT_INVALID_HANDLE; }
  friend bool operator==(native_handle a, native_handle b) noexcept { return a.h_ == b.h_; }
  friend bool operator!=(native_handle a, native_handle b) noexcept { return a.h_ != b.h_; }

 private:
  explicit native_handle(handle_t h) noexcept : h_(h) {}
  handle_t h_ = WCPT_INVALID_HANDLE;
};

/* ---- batch calls: all or nothing, one write window per batch ---- */

/** wcpt_alloc_many over pointers and a count. */
inline std::error_code alloc_many(const std::uintptr_t* entrypoints, const std::uint64_t* signatures, std::size_t n,
                                  handle_t* out) noexcept {
  return wcpt_alloc_many(entrypoints, signatures, n, out);
}

/** wcpt_free_many over a pointer and a count. */
inline std::error_code free_many(const handle_t* handles, std::size_t n) noexcept { return wcpt_free_many(handles, n); }

/** wcpt_set_many over pointers and a count. */
inline std::error_code set_many(const handle_t* handles, const std::uintptr_t* entrypoints, std::size_t n) noexcept {
  return wcpt_set_many(handles, entrypoints, n);
}

namespace detail {
template <class C, class T>
using contiguous_of = std::enable_if_t<
    std::is_same_v<std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<C&>().data())>>, T> &&
    std::is_convertible_v<decltype(std::declval<C&>().size()), std::size_t>>;
}  // namespace detail

/** The batch calls over contiguous containers of the caller's (anything
 *  with data() and size(): std::vector, std::array, std::span, ...).
 *  Different sizes are WCPT_ERR_INVALID_ARGUMENT, and nothing happens. */
template <class E, class S, class O, class = detail::contiguous_of<const E, std::uintptr_t>,
          class = detail::contiguous_of<const S, std::uint64_t>, class = detail::contiguous_of<O, handle_t>>
std::error_code alloc_many(const E& entrypoints, const S& signatures, O& out) noexcept {
  if (entrypoints.size() != signatures.size() || entrypoints.size() != out.size())
    return WCPT_ERR_INVALID_ARGUMENT;
  return alloc_many(entrypoints.data(), signatures.data(), entrypoints.size(), out.data());
}

template <class H, class = detail::contiguous_of<const H, handle_t>>
std::error_code free_many(const H& handles) noexcept {
  return free_many(handles.data(), handles.size());
}

template <class H, class E, class = detail::contiguous_of<const H, handle_t>,
          class = detail::contiguous_of<const E, std::uintptr_t>>
std::error_code set_many(const H& handles, const E& entrypoints) noexcept {
  if (handles.size() != entrypoints.size()) return WCPT_ERR_INVALID_ARGUMENT;
  return set_many(handles.data(), entrypoints.data(), handles.size());
}

#ifdef WCPT_HPP_EXCEPTIONS
template <class E, class S, class O, class = detail::contiguous_of<const E, std::uintptr_t>,
          class = detail::contiguous_of<const S, std::uint64_t>, class = detail::contiguous_of<O, handle_t>>
void alloc_many_or_throw(const E& entrypoints, const S& signatures, O& out) {
  throw_if(alloc_many(entrypoints, signatures, out), "wcpt_alloc_many");
}
template <class H, class = detail::contiguous_of<const H, handle_t>>
void free_many_or_throw(const H& handles) {
  throw_if(free_many(handles), "wcpt_free_many");
}
#endif

/** What generated code calls through `h` with `signature` (the header's
 *  wcpt_call_target), typed: nullptr for a stale, freed, forged or
 *  mistyped handle. */
template <class F>
F* call_target(const void* base, handle_t h, std::uint64_t signature) noexcept {
  static_assert(std::is_function_v<F>, "call_target<R(A...)>");
  return reinterpret_cast<F*>(wcpt_call_target(base, h, signature));
}

}  // namespace wcpt

#endif /* WCPT_HPP */
