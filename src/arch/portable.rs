//! Any other architecture: no protection keys (the alias mode protects),
//! and the thread pointer stands in as the address of a thread-local.

use super::Rights;

/// No keys.
pub(crate) const MAX_KEY: i32 = 0;

/// A value unique to the calling thread among live threads: the address of
/// a thread-local. (Not async-signal-safe in a `dlopen`ed library on its
/// first use in a thread; the architectures above read a register.)
pub(crate) fn thread_pointer() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| t as *const u8 as usize)
}

pub(crate) fn pkeys_supported() -> bool {
    false
}

pub(crate) fn key_register() -> u64 {
    0
}

pub(crate) fn set_key_register(_: u64) {}

pub(crate) fn rights(_: u64, _: i32) -> Rights {
    Rights::ReadWrite
}

pub(crate) fn with_rights(reg: u64, _: i32, _: Rights) -> u64 {
    reg
}
