//! Write protection of the table with memory protection keys (pkeys).
//!
//! One key per process is allocated when the library is loaded (an
//! `.init_array` constructor), so that threads created afterwards inherit
//! read access. Committed table memory carries the key; the calling thread's
//! PKRU denies writes except inside a [`Window`], which the library opens for
//! the few instructions that write an entry and closes again.
//!
//! Linux starts a thread that predates the key, and every signal handler, with
//! no access at all to the key. Every library call therefore runs
//! [`ensure_read`] first: one `RDPKRU`, and a `WRPKRU` granting read access
//! only when it is missing.
//!
//! Where `pkey_alloc` fails (no PKU in the CPU or kernel, valgrind, another
//! architecture) or `WCPT_PROTECT=off`, the key is `-1` and every function
//! here is a single load and branch.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// The process's key, or -1 when the table is unprotected.
static PKEY: AtomicI32 = AtomicI32::new(-1);
static INIT: Once = Once::new();

/// Protection in force (the C ABI's `wcpt_protection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// The table is writable by any code in the process.
    None = 0,
    /// The table is write-protected with a memory protection key.
    Pkeys = 1,
}

/// Allocates the key once per process, unless `WCPT_PROTECT=off`.
pub fn init() {
    INIT.call_once(|| {
        if std::env::var_os("WCPT_PROTECT").is_some_and(|v| v == "off") {
            return;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
        {
            // SAFETY: pkey_alloc has no memory-safety preconditions; it
            // returns a key or -1.
            let key = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE) };
            if key > 0 {
                PKEY.store(key as i32, Ordering::Release);
            }
        }
    });
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
pub fn key() -> Option<i32> {
    let k = PKEY.load(Ordering::Relaxed);
    (k > 0).then_some(k)
}

/// The protection in force.
pub fn mode() -> Mode {
    init();
    if key().is_some() {
        Mode::Pkeys
    } else {
        Mode::None
    }
}

#[cfg(all(target_arch = "x86_64", not(loom)))]
mod pkru {
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
        // rights, which callers compute from the current value.
        unsafe {
            core::arch::asm!("wrpkru", in("eax") pkru, in("ecx") 0u32, in("edx") 0u32,
                options(nostack, preserves_flags));
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", not(loom))))]
mod pkru {
    pub(super) fn read() -> u32 {
        0
    }
    pub(super) fn write(_: u32) {}
}

const fn access_disable(key: i32) -> u32 {
    1 << (2 * key)
}
const fn write_disable(key: i32) -> u32 {
    2 << (2 * key)
}

/// Gives the calling thread read access to the table if it lacks it (a
/// thread that predates the key, or a signal handler). Async-signal-safe.
#[inline]
pub fn ensure_read() {
    if let Some(k) = key() {
        let pkru = pkru::read();
        if pkru & access_disable(k) != 0 {
            pkru::write(pkru & !access_disable(k));
        }
    }
}

/// A write window: while it lives, this thread may write the table.
///
/// Windows nest: an inner window finds the table writable and does nothing,
/// and only the outermost one closes it (restoring read-only access).
pub struct Window {
    saved: Option<u32>,
}

impl Window {
    /// Opens a window (a no-op when unprotected or already open).
    #[inline]
    pub fn open() -> Window {
        let Some(k) = key() else { return Window { saved: None } };
        let pkru = pkru::read();
        let closed = access_disable(k) | write_disable(k);
        if pkru & closed == 0 {
            return Window { saved: None };
        }
        pkru::write(pkru & !closed);
        // Read access stays granted after the window: the thread needs it.
        Window { saved: Some((pkru & !access_disable(k)) | write_disable(k)) }
    }
}

impl Drop for Window {
    #[inline]
    fn drop(&mut self) {
        if let Some(pkru) = self.saved {
            pkru::write(pkru);
        }
    }
}
