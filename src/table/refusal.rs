//! The remembered refusal: when the table could give no entry (full, or the
//! OS refused memory), later allocations are refused from a load instead of
//! a scan under the growth lock, until something changes.
//!
//! - A **full table** stays refused until an entry comes back (a `free`, a
//!   batch that gives its entries back): those clear the refusal.
//! - A **memory refusal** can end without anything happening in the table
//!   (the embedder raises a limit, frees memory elsewhere, runs its GC), so
//!   a remembered one is only a rate limit on asking the OS again, and one
//!   that a caller who retries does not see:
//!   - every successful commit of a segment clears it at once;
//!   - each thread asks the OS again on its first [`FREE_TRIES`] calls
//!     after a refusal, then on every call whose number is a power of two,
//!     so a thread that loops on a refused allocation makes O(log n) system
//!     calls for n calls, and a thread that retries after freeing memory
//!     asks the OS;
//!   - one caller per tick of the coarse clock asks as well, whatever its
//!     count, so a thread deep in its backoff sees memory return within a
//!     tick (4 ms at HZ=250) and its next 16 calls (a thread reads the
//!     clock on every 16th call only, to keep a refusal a few loads).
//!
//! The per-thread counts are hints in ordinary memory, keyed by a hash of
//! the thread pointer: two threads in one bucket (rare) only make each
//! other ask the OS sooner or a tick later. They are cleared with the
//! refusal.

use crate::handle::Error;
use crate::sync::{AtomicU64, AtomicU8, Ordering::*};

/// Calls after a refusal on which a thread always asks the OS again.
pub(crate) const FREE_TRIES: u64 = 16;

/// A thread past its free tries looks at the clock on every this-many-th
/// call only.
const TICK_EVERY: u64 = 16;

/// Buckets of per-thread counts.
const BUCKETS: usize = 64;

/// Bits of a bucket word that hold the count; the rest is the thread's tag.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

pub(super) struct Refusal {
    /// 0, or the `Error` code of the last refusal to allocate while nothing
    /// has been freed or committed since. A hint in ordinary memory:
    /// corrupting it can only refuse for a while or delay.
    code: AtomicU8,
    /// When a memory refusal may next be retried by any caller (coarse
    /// monotonic milliseconds).
    retry_at: AtomicU64,
    /// Per bucket of threads: the thread's tag (the top bits of its hash)
    /// and how many calls it made since the refusal. std's atomics even
    /// under loom: a hint the models never reach (their memory is never
    /// refused), kept out of their state space.
    counts: [std::sync::atomic::AtomicU64; BUCKETS],
}

impl Refusal {
    pub(super) fn new() -> Refusal {
        Refusal {
            code: AtomicU8::new(0),
            retry_at: AtomicU64::new(0),
            counts: [const { std::sync::atomic::AtomicU64::new(0) }; BUCKETS],
        }
    }

    /// Whether a refusal is remembered (Relaxed: a hint for the fast paths,
    /// which only skip the thread's stack on it).
    #[inline(always)]
    pub(super) fn any(&self) -> bool {
        self.code.load(Relaxed) != 0
    }

    /// Remembers that the table refused with `e`.
    ///
    /// SeqCst store: the refusing thread then loads the freelist heads
    /// (SeqCst) once more; a `free` pushes with a SeqCst CAS, then loads
    /// the code ([`Refusal::clear_after_give_back`]). In the single order
    /// of those operations, either the scan sees the pushed entry, or the
    /// freer sees the refusal and clears it.
    pub(super) fn remember(&self, e: Error) {
        self.code.store(e as u8, SeqCst);
        if e == Error::OutOfMemory {
            self.retry_at.store(coarse_millis() + 1, Relaxed);
        }
    }

    /// Forgets the refusal: an entry came back (the caller's scan found
    /// one, or a segment was committed).
    pub(super) fn clear(&self) {
        if self.code.load(Relaxed) != 0 {
            self.code.store(0, Relaxed);
            for c in &self.counts {
                c.store(0, Relaxed);
            }
        }
    }

    /// After entries were pushed on a freelist: forgets a remembered refusal
    /// (SeqCst load, see [`Refusal::remember`]; a plain load on x86, and
    /// read-only while nothing was refused, so no cache line bounces).
    #[inline]
    pub(super) fn clear_after_give_back(&self) {
        if self.code.load(SeqCst) != 0 {
            self.clear();
        }
    }

    /// The remembered refusal, if the calling thread should get it without
    /// a scan: always for a full table; for memory, unless this thread (or
    /// this tick) should ask the OS again (see the module docs).
    #[inline]
    pub(super) fn still_refused(&self, thread_hash: usize) -> Option<Error> {
        match self.code.load(Relaxed) {
            0 => None,
            c if c == Error::Capacity as u8 => Some(Error::Capacity),
            _ => match self.thread_count(thread_hash as u64) {
                n if n < FREE_TRIES || n.is_power_of_two() => None,
                // The clock is read on every TICK_EVERY-th call only: a
                // fast refusal stays a few loads and stores.
                n if n % TICK_EVERY == 0 && self.tick_may_retry() => None,
                _ => Some(Error::OutOfMemory),
            },
        }
    }

    /// Counts this call for the calling thread; returns how many calls it
    /// made since the refusal before this one.
    fn thread_count(&self, hash: u64) -> u64 {
        let bucket = &self.counts[(hash >> (u64::BITS - BUCKETS.trailing_zeros())) as usize];
        let tag = hash >> COUNT_BITS;
        let word = bucket.load(Relaxed);
        let n = if word >> COUNT_BITS == tag { word & COUNT_MASK } else { 0 };
        bucket.store(tag << COUNT_BITS | (n + 1).min(COUNT_MASK), Relaxed);
        n
    }

    /// True for one caller per tick of the coarse clock.
    fn tick_may_retry(&self) -> bool {
        let at = self.retry_at.load(Relaxed);
        let now = coarse_millis();
        now >= at && self.retry_at.compare_exchange(at, now + 1, Relaxed, Relaxed).is_ok()
    }
}

/// A monotonic clock in milliseconds, coarse (a vDSO read, no syscall).
fn coarse_millis() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1000).wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_asks_again_early_then_at_powers_of_two() {
        let r = Refusal::new();
        r.remember(Error::OutOfMemory);
        // No tick retries in this test: push the tick far away.
        r.retry_at.store(u64::MAX, Relaxed);
        let me = 0xABCD_EF01_2345_6789usize;
        let asked: Vec<u64> = (0..300u64).filter(|_| r.still_refused(me).is_none()).collect();
        let expected: Vec<u64> = (0..300u64).filter(|&n| n < FREE_TRIES || n.is_power_of_two()).collect();
        assert_eq!(asked, expected);
        // Another thread (another tag, same bucket) starts from its first call.
        let other = me ^ 0x10_0000_0000;
        assert_eq!(r.still_refused(other), None);
        // A full table is refused every time; clearing forgets everything.
        r.clear();
        assert_eq!(r.still_refused(me), None);
        r.remember(Error::Capacity);
        assert_eq!(r.still_refused(me), Some(Error::Capacity));
        r.clear_after_give_back();
        assert!(!r.any());
        // A new memory refusal starts every thread's count again.
        r.remember(Error::OutOfMemory);
        r.retry_at.store(u64::MAX, Relaxed);
        assert_eq!(r.still_refused(me), None);
    }

    #[test]
    fn one_caller_per_tick_retries_whatever_its_count() {
        let r = Refusal::new();
        r.remember(Error::OutOfMemory);
        let me = 7usize << 58;
        for _ in 0..1000 {
            let _ = r.still_refused(me);
        }
        // The tick has passed (retry_at in the past): one of the next 16
        // calls asks, and only one per tick.
        r.retry_at.store(0, Relaxed);
        let asked = (0..TICK_EVERY).filter(|_| r.still_refused(me).is_none()).count();
        assert_eq!(asked, 1);
    }
}
