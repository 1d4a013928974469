//! AArch64: the thread pointer is `TPIDR_EL0`; protection keys are POE
//! (Armv8.9/9.4 permission overlays; Linux 6.12+ exposes them through the
//! same `pkey_alloc`/`pkey_mprotect` calls as x86), whose `POR_EL0`
//! register holds four bits per key: read (bit 0), execute (bit 1), write
//! (bit 2). Designed against the kernel's documentation
//! (Documentation/arch/arm64/poe.rst); QEMU 7.2 cannot run it, so it is
//! only used where `pkey_alloc` succeeds and `HWCAP2_POE` is set, and the
//! alias mode protects everywhere else (README: what is tested).

use super::Rights;

/// The highest key number Linux hands out on arm64 (8 overlays, key 0 is
/// every page's).
pub(crate) const MAX_KEY: i32 = 7;

/// The calling thread's thread pointer. Async-signal-safe.
#[inline(always)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reading TPIDR_EL0 (the thread pointer, set by the C library
    // for every thread) has no side effect and is allowed at EL0.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags, pure));
    }
    tp
}

/// `HWCAP2_POE` in `AT_HWCAP2` (Linux 6.12).
const HWCAP2_POE: libc::c_ulong = 1 << 63;

/// Whether the CPU has POE and the kernel enabled it.
pub(crate) fn pkeys_supported() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_HWCAP2) & HWCAP2_POE != 0 }
}

/// Reads this thread's POR_EL0. Only called once a key is in use, which
/// implies the kernel enabled POE (else the access would trap).
#[inline]
pub(crate) fn key_register() -> u64 {
    let por: u64;
    // SAFETY: reading POR_EL0 (S3_3_C10_C2_4) has no side effect; it is
    // executed only where pkey_alloc succeeded, i.e. POE is enabled at EL0.
    unsafe {
        core::arch::asm!("mrs {}, S3_3_C10_C2_4", out(reg) por, options(nomem, nostack, preserves_flags));
    }
    por
}

/// Writes this thread's POR_EL0, then synchronises the context so that the
/// accesses after it see the new permissions (as the kernel does).
#[inline]
pub(crate) fn set_key_register(value: u64) {
    // SAFETY: as for `key_register`; the value only changes this thread's
    // overlay permissions, computed from the current value. No `nomem`:
    // memory accesses must not be moved across a change of rights.
    unsafe {
        core::arch::asm!("msr S3_3_C10_C2_4, {}", "isb", in(reg) value, options(nostack, preserves_flags));
    }
}

const R: u64 = 0b0001;
const W: u64 = 0b0100;

#[inline(always)]
fn shift(key: i32) -> u32 {
    4 * key as u32
}

/// The key's rights in a POR_EL0 value.
#[inline(always)]
pub(crate) fn rights(reg: u64, key: i32) -> Rights {
    let field = (reg >> shift(key)) & 0xF;
    match (field & R != 0, field & W != 0) {
        (true, true) => Rights::ReadWrite,
        (true, false) => Rights::Read,
        _ => Rights::None,
    }
}

/// `reg` with the key's read and write permissions set for `r`; its
/// execute permission and every other key's field are left alone (an
/// engine may share a key with its code).
#[inline(always)]
pub(crate) fn with_rights(reg: u64, key: i32, r: Rights) -> u64 {
    let bits = match r {
        Rights::None => 0,
        Rights::Read => R,
        Rights::ReadWrite => R | W,
    };
    (reg & !((R | W) << shift(key))) | (bits << shift(key))
}
