//! x86-64: the thread pointer is `fs:0`; protection keys are PKU, whose
//! PKRU register holds two bits per key (access-disable, write-disable).

use super::Rights;

/// The highest key number (PKRU has 16 keys; key 0 is every page's).
pub(crate) const MAX_KEY: i32 = 15;

/// The calling thread's thread pointer (Linux). Async-signal-safe.
#[inline(always)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux, fs:0 holds the thread control block's own
    // address (the thread pointer); reading it has no side effect.
    unsafe {
        core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// Whether the CPU has PKU and the OS enabled it (CPUID leaf 7: OSPKE).
/// `pkey_alloc`'s `ENOSPC` means both "no key left" and "no PKU".
pub(crate) fn pkeys_supported() -> bool {
    // Leaf 7 exists where the maximum leaf is at least 7, checked first.
    core::arch::x86_64::__cpuid(0).eax >= 7 && core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) != 0
}

/// Reads this thread's PKRU. Only called once a key is in use, which
/// implies that the CPU and OS support (and enabled) the instruction.
#[inline]
pub(crate) fn key_register() -> u64 {
    let pkru: u32;
    // SAFETY: RDPKRU only reads a register; it is executed only after
    // pkey_alloc (or an embedder's key) is in use, so OSPKE is enabled and
    // it cannot fault.
    unsafe {
        core::arch::asm!("rdpkru", in("ecx") 0u32, out("eax") pkru, out("edx") _, options(nomem, nostack, preserves_flags));
    }
    u64::from(pkru)
}

/// Writes this thread's PKRU.
#[inline]
pub(crate) fn set_key_register(value: u64) {
    // SAFETY: as for `key_register`; the value only changes this thread's
    // access rights, which callers compute from the current value. No
    // `nomem`: memory accesses must not be moved across a change of rights.
    unsafe {
        core::arch::asm!("wrpkru", in("eax") value as u32, in("ecx") 0u32, in("edx") 0u32, options(nostack, preserves_flags));
    }
}

const AD: u64 = 1;
const WD: u64 = 2;

#[inline(always)]
fn shift(key: i32) -> u32 {
    2 * key as u32
}

/// The key's rights in a PKRU value.
#[inline(always)]
pub(crate) fn rights(reg: u64, key: i32) -> Rights {
    match (reg >> shift(key)) & 3 {
        0 => Rights::ReadWrite,
        WD => Rights::Read,
        _ => Rights::None, // access-disable, with or without write-disable
    }
}

/// `reg` with the key's rights set to `r`, every other key's left alone.
#[inline(always)]
pub(crate) fn with_rights(reg: u64, key: i32, r: Rights) -> u64 {
    let bits = match r {
        Rights::None => AD | WD,
        Rights::Read => WD,
        Rights::ReadWrite => 0,
    };
    (reg & !(3 << shift(key))) | (bits << shift(key))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn pkru_encoding() {
        // Key 1: bits 2 (AD) and 3 (WD).
        assert_eq!(with_rights(0, 1, Rights::Read), 0b1000);
        assert_eq!(with_rights(0, 1, Rights::None), 0b1100);
        // Linux's default PKRU denies every key but 0 (AD only).
        let default = 0x5555_5554u64;
        assert_eq!(rights(default, 1), Rights::None);
        assert_eq!(with_rights(default, 1, Rights::Read) & !0b1100, default & !0b1100);
    }
}
