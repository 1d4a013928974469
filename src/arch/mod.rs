//! Everything that depends on the CPU architecture, behind one small
//! interface (one file per architecture, and a portable fallback that any
//! other architecture builds with):
//!
//! - [`thread_pointer`]: the calling thread's thread pointer, read without
//!   a TLS call (the thread slots' fast path);
//! - the protection-key register: [`pkeys_supported`], [`key_register`],
//!   [`set_key_register`], and [`rights`] / [`with_rights`], which read and
//!   write one key's field of it as [`Rights`]: x86-64's PKRU (2 bits a
//!   key: access-disable, write-disable), AArch64's POR_EL0 (POE, 4 bits a
//!   key: read, execute, write), none on the fallback.
//!
//! Barriers need nothing per architecture: the light barrier is a compiler
//! fence and the heavy one `membarrier` (see `thread_slot.rs`); atomics'
//! orderings are the C11 model's (checked by loom, not by any host).
//! Generated code's call sequence per architecture is in docs/CALL_SEQUENCE.md.

/// A thread's rights to the memory of one protection key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rights {
    /// No access (a signal handler's, or a thread that predates the key).
    None,
    /// Read, not write: the state outside write windows.
    Read,
    /// Read and write: inside a write window.
    ReadWrite,
}

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64::*;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod portable;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) use portable::*;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every key's field can be put in each state, leaving the others.
    #[test]
    fn rights_round_trip_and_leave_other_keys_alone() {
        for key in 1..=MAX_KEY {
            for start in [0u64, u64::MAX, 0x5555_5555_5555_5554, 0x1234_5678_9abc_def0] {
                for r in [Rights::None, Rights::Read, Rights::ReadWrite] {
                    let reg = with_rights(start, key, r);
                    assert_eq!(rights(reg, key), r, "key {key} from {start:#x}");
                    for other in 1..=MAX_KEY {
                        if other != key {
                            assert_eq!(rights(reg, other), rights(start, other), "key {other} touched");
                        }
                    }
                }
            }
        }
    }
}
