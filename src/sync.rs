//! The one place where atomics and locks come from.
//!
//! Under `--cfg loom` every atomic and lock is loom's, so the model checker
//! sees every shared access; otherwise they are std's atomics and a
//! `parking_lot` mutex (chosen for `force_unlock`, which the fork handlers need).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;
pub(crate) use std::sync::atomic::Ordering;

/// A mutex with the small surface the table needs.
#[cfg(not(loom))]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

#[cfg(not(loom))]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(parking_lot::Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.0.lock()
    }
    /// Takes the lock and keeps it held with no guard (fork `prepare` handler).
    pub(crate) fn lock_forever(&self) {
        std::mem::forget(self.0.lock());
    }
    /// Releases a lock taken by [`Mutex::lock_forever`].
    ///
    /// # Safety
    /// The lock must be held by `lock_forever` and by nothing else: the fork
    /// handlers pair them, in the parent and in the single-threaded child.
    pub(crate) unsafe fn unlock_forever(&self) {
        // SAFETY: the caller guarantees the lock is held with no live guard.
        unsafe { self.0.force_unlock() }
    }
}

#[cfg(loom)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap()
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
