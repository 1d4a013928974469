//! The one place where atomics and locks come from.
//!
//! Under `--cfg loom` every atomic and lock is loom's, so the model checker
//! sees every shared access; otherwise they are std's atomics and mutex.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;
pub(crate) use std::sync::atomic::Ordering;

/// A mutex that ignores poisoning (no code of ours panics while holding
/// one, and a panic at the ABI boundary must not make the table unusable).
///
/// std's mutex on Linux is a single futex word with no global state, so a
/// child process can release a lock that its fork handlers took before the
/// fork. (parking_lot's is not: an unlock may hand the lock to a parked
/// thread that does not exist in the child; `make check` caught that.)
pub(crate) struct Mutex<T>(StdMutex<T>);

#[cfg(not(loom))]
use std::sync::Mutex as StdMutex;
#[cfg(not(loom))]
pub(crate) use std::sync::MutexGuard;
#[cfg(loom)]
use loom::sync::Mutex as StdMutex;
#[cfg(loom)]
pub(crate) use loom::sync::MutexGuard;

impl<T> Mutex<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Mutex(StdMutex::new(value))
    }
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Mutex(StdMutex::new(value))
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reader-writer lock that ignores poisoning, for the same reasons as
/// [`Mutex`]; std's is a futex word too, so a fork child can release a
/// write lock its fork handlers took.
pub(crate) struct RwLock<T>(StdRwLock<T>);

#[cfg(not(loom))]
use std::sync::RwLock as StdRwLock;
#[cfg(not(loom))]
pub(crate) use std::sync::{RwLockReadGuard, RwLockWriteGuard};
#[cfg(loom)]
use loom::sync::RwLock as StdRwLock;
#[cfg(loom)]
pub(crate) use loom::sync::{RwLockReadGuard, RwLockWriteGuard};

impl<T> RwLock<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        RwLock(StdRwLock::new(value))
    }
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        RwLock(StdRwLock::new(value))
    }
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a value on a cache line of its own so that two threads working on
/// neighbouring values do not bounce one line between cores.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One step of waiting for another thread's short critical step (a `set`
/// pinning an entry). Yields to the scheduler after a few spins so that a
/// preempted pinner gets to run on an oversubscribed machine; under loom it
/// always yields, as loom requires of spin loops.
#[inline]
pub(crate) fn spin_wait(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        *spins += 1;
        if *spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
