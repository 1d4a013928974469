//! Write protection of the table with memory protection keys (pkeys).
//!
//! One key per process is allocated when the library is loaded (an
//! `.init_array` constructor). Everything the library writes that says where
//! a call goes or whether an entry is live (entries, metadata, generation
//! bytes, freelist heads, segment states, the native map) lives in memory
//! tagged with that key; see `memory`.
//!
//! For the key, a thread's PKRU is in one of three states:
//!
//! | bits (AD, WD) | state       | who is in it                                  |
//! |---------------|-------------|-----------------------------------------------|
//! | (1, *)        | no access   | threads that predate the key, their children, signal handlers, code after `siglongjmp` out of a handler |
//! | (0, 1)        | read-only   | the loading thread, threads it creates, any thread after a library call |
//! | (0, 0)        | read-write  | only inside a [`Window`]                      |
//!
//! The rules that keep writes inside windows:
//! - [`ensure_read`] (every library call that reads protected memory,
//!   `wcpt_thread_attach`, `wcpt_signal_enter`) puts the key in exactly the
//!   read-only state. It never grants write access, and it also takes away a
//!   write access it finds.
//! - A [`Window`] clears both bits and, when it closes, sets exactly the
//!   read-only state: never "whatever it was before".
//! - Windows do not nest. Code that needs one while another is open takes a
//!   `&Window` as proof instead of opening its own, so closing a window can
//!   never end an outer one early.
//! - A signal handler gets its own PKRU from the kernel, and the interrupted
//!   code's PKRU (even mid-window) comes back on `sigreturn`.
//!
//! Where `pkey_alloc` fails (no PKU in the CPU or kernel, valgrind, another
//! architecture), the table is protected by an alias instead ([`Mode::Alias`],
//! see `memory`): the public view of the entries is read-only, and the
//! library writes through a second mapping at a random address. Then, as
//! with `WCPT_PROTECT=off`, the key is `-1` and every function here is a
//! single load and branch.
//!
//! `WCPT_PROTECT` forces a mode: `off`, `alias` or `pkeys`. A mode that
//! cannot be had falls back to the next weaker one (pkeys, alias, none), and
//! [`mode`] reports the mode in force.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

/// The process's key, or -1 when the table is not protected by pkeys.
static PKEY: AtomicI32 = AtomicI32::new(-1);
/// Whether tables use the alias protection (set once, by [`init`]).
static ALIAS: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();

/// Protection in force (the C ABI's `wcpt_protection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// The table is writable by any code in the process.
    None = 0,
    /// The table is write-protected with a memory protection key.
    Pkeys = 1,
    /// The table's public view is read-only; the library writes through an
    /// alias mapping at a random address (no PKU needed).
    Alias = 2,
}

/// What `WCPT_PROTECT` asks for: `off`, `alias`, `pkeys`, or nothing (the
/// strongest available). Reads the variable without allocating: this runs
/// in a load-time constructor.
fn requested_by_env() -> Option<Mode> {
    // SAFETY: getenv with a NUL-terminated name; the result is NULL or a
    // NUL-terminated string owned by the environment, read at once.
    unsafe {
        let v = libc::getenv(c"WCPT_PROTECT".as_ptr());
        if v.is_null() {
            return None;
        }
        match std::ffi::CStr::from_ptr(v).to_bytes() {
            b"off" => Some(Mode::None),
            b"alias" => Some(Mode::Alias),
            b"pkeys" => Some(Mode::Pkeys),
            _ => None,
        }
    }
}

/// Chooses the mode once per process: pkeys where `pkey_alloc` works, else
/// the alias where `memfd_create` works, else none; `WCPT_PROTECT` can ask
/// for a weaker one. The key is allocated read-only for the calling thread
/// (the kernel sets that thread's PKRU for it); other existing threads have
/// no access until a repair.
pub(crate) fn init() {
    INIT.call_once(|| {
        let wanted = requested_by_env().unwrap_or(Mode::Pkeys);
        if wanted == Mode::None {
            return;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
        if wanted == Mode::Pkeys {
            // SAFETY: pkey_alloc has no memory-safety preconditions; it
            // returns a key or -1.
            let key = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE) };
            if key > 0 && key < 16 {
                PKEY.store(key as i32, Ordering::Release);
                return;
            }
        }
        if alias_supported() {
            ALIAS.store(true, Ordering::Release);
        }
    });
}

/// Whether `memfd_create` works here (what the alias mode needs).
#[cfg(not(loom))]
fn alias_supported() -> bool {
    // SAFETY: creates and closes a file descriptor; no memory is touched.
    unsafe {
        let fd = libc::memfd_create(c"wcpt-probe".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return false;
        }
        libc::close(fd);
        true
    }
}

/// Loom models run unprotected.
#[cfg(loom)]
fn alias_supported() -> bool {
    false
}

/// Whether tables use the alias protection.
#[inline]
pub(crate) fn alias() -> bool {
    ALIAS.load(Ordering::Relaxed)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
const PKEY_DISABLE_WRITE: libc::c_ulong = 2;

/// Runs [`init`] when the library is loaded, before any thread of the
/// embedder can be created after the load.
#[cfg(all(target_os = "linux", not(loom)))]
#[used]
#[link_section = ".init_array"]
static LOAD_TIME_INIT: extern "C" fn() = {
    extern "C" fn at_load() {
        init();
    }
    at_load
};

/// The key, or `None` when unprotected.
#[inline]
pub(crate) fn key() -> Option<i32> {
    let k = PKEY.load(Ordering::Relaxed);
    (k > 0).then_some(k)
}

/// The protection in force.
pub fn mode() -> Mode {
    init();
    if key().is_some() {
        Mode::Pkeys
    } else if alias() {
        Mode::Alias
    } else {
        Mode::None
    }
}

/// PKRU writes made by the library, striped by thread so that counting costs
/// no shared cache line. Only ever incremented after `pkey_alloc` succeeded.
struct WriteCount([crate::sync::CachePadded<AtomicU64>; 16]);

static WRITES: WriteCount = WriteCount([const { crate::sync::CachePadded(AtomicU64::new(0)) }; 16]);

/// How many times the library has written PKRU in this process (0 unless
/// protection is [`Mode::Pkeys`]). Exact once the counted calls have returned.
pub fn pkru_writes() -> u64 {
    WRITES.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

#[cfg(all(target_arch = "x86_64", not(loom)))]
mod pkru {
    use super::*;

    /// Reads this thread's PKRU register.
    ///
    /// Only called once `pkey_alloc` has succeeded, which implies that the
    /// CPU and OS support (and have enabled) the instruction.
    #[inline]
    pub(super) fn read() -> u32 {
        let pkru: u32;
        // SAFETY: RDPKRU only reads a register; it is executed only after
        // pkey_alloc succeeded, so OSPKE is enabled and it cannot fault.
        unsafe {
            core::arch::asm!("rdpkru", in("ecx") 0u32, out("eax") pkru, out("edx") _,
                options(nomem, nostack, preserves_flags));
        }
        pkru
    }

    /// Writes this thread's PKRU register.
    #[inline]
    pub(super) fn write(pkru: u32) {
        // SAFETY: as for `read`; the value only changes this thread's access
        // rights, which callers compute from the current value. No `nomem`:
        // memory accesses must not be moved across a change of rights.
        unsafe {
            core::arch::asm!("wrpkru", in("eax") pkru, in("ecx") 0u32, in("edx") 0u32,
                options(nostack, preserves_flags));
        }
        // Relaxed: a statistic. The stripe is picked by the thread pointer,
        // so threads rarely share one; the RMW keeps the count exact anyway.
        WRITES.0[crate::thread_slot::thread_hash() >> (usize::BITS - 4)].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(not(all(target_arch = "x86_64", not(loom))))]
mod pkru {
    pub(super) fn read() -> u32 {
        0
    }
    pub(super) fn write(_: u32) {}
}

/// Both of the key's bits: access-disable and write-disable.
const fn key_bits(key: i32) -> u32 {
    3 << (2 * key)
}
/// Write-disable alone: the read-only state.
const fn write_disable(key: i32) -> u32 {
    2 << (2 * key)
}

/// Puts the calling thread in the read-only state for the table: read access
/// if it lacked it (a thread that predates the key, or a signal handler), and
/// no write access even if something left it. One `RDPKRU`, plus one `WRPKRU`
/// only when the state was not already read-only. Async-signal-safe.
///
/// Must not be called inside a [`Window`] (it would close it).
#[inline]
pub(crate) fn ensure_read() {
    if let Some(k) = key() {
        let pkru = pkru::read();
        if pkru & key_bits(k) != write_disable(k) {
            pkru::write((pkru & !key_bits(k)) | write_disable(k));
        }
    }
}

/// A write window: while it lives, this thread may write the table.
///
/// Not `Send` (PKRU is per thread) and crate-private: only the library opens
/// windows, and every one is a scoped local that closes on drop.
pub(crate) struct Window {
    /// The PKRU value that closes the window, if it opened one.
    close: Option<u32>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Window {
    /// Opens a window (a no-op when unprotected). Windows do not nest: a
    /// callee that writes takes `&Window` from its caller.
    #[inline]
    pub(crate) fn open() -> Window {
        let Some(k) = key() else { return Window { close: None, _not_send: std::marker::PhantomData } };
        let pkru = pkru::read();
        if pkru & key_bits(k) != 0 {
            pkru::write(pkru & !key_bits(k));
        }
        // Close to exactly read-only, whatever the state was before: even if
        // the thread was (wrongly) writable already, it will not be after.
        Window { close: Some((pkru & !key_bits(k)) | write_disable(k)), _not_send: std::marker::PhantomData }
    }
}

impl Window {
    /// A window where none needs opening: `Some` exactly when the table is
    /// not protected by pkeys (unprotected, or the alias mode, whose writes
    /// go through the alias and need no change of rights). For the fast
    /// paths, which leave the pkeys case to the general ones.
    #[inline(always)]
    pub(crate) fn if_unprotected() -> Option<Window> {
        if key().is_some() {
            None
        } else {
            Some(Window { close: None, _not_send: std::marker::PhantomData })
        }
    }
}

impl Drop for Window {
    #[inline]
    fn drop(&mut self) {
        if let Some(pkru) = self.close {
            pkru::write(pkru);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_states_a_key_can_be_in() {
        // Key 1: bits 2 (AD) and 3 (WD).
        assert_eq!(key_bits(1), 0b1100);
        assert_eq!(write_disable(1), 0b1000);
        // Linux's default PKRU denies every key but 0 (AD only); the repair
        // gives read-only, never read-write.
        let default = 0x5555_5554u32;
        let repaired = (default & !key_bits(1)) | write_disable(1);
        assert_eq!(repaired & key_bits(1), write_disable(1));
        assert_eq!(repaired & !key_bits(1), default & !key_bits(1), "other keys untouched");
    }
}
