//! The engine's registered executable regions, checked when an entrypoint is
//! written (`alloc` and `set`).
//!
//! Writers (rare) hold a mutex and publish a sorted, non-overlapping array
//! under a sequence counter. Readers on the allocation path read the array
//! without a lock and check the counter; only if a writer was active at that
//! moment do they take the mutex, so a reader never spins on a writer.

use crate::handle::{is_user_address, Error};
use crate::memory::MappedArray;
use crate::sync::{fence, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering::*};

/// Most regions that can be registered at once.
#[cfg(not(loom))]
pub const MAX_REGIONS: usize = 1024;
#[cfg(loom)]
pub const MAX_REGIONS: usize = 2;

pub(crate) struct CodeRegions {
    seq: AtomicU64,
    len: AtomicUsize,
    /// The published starts and ends (ordinary mapped memory, so that
    /// creating a table never touches the Rust heap).
    starts: MappedArray<AtomicU64>,
    ends: MappedArray<AtomicU64>,
    /// The registered regions; grown with `try_reserve`, so a refusal is
    /// `OutOfMemory`, never an abort.
    truth: Mutex<Vec<(u64, u64)>>,
}

fn contains(regions: &[(u64, u64)], addr: u64) -> bool {
    let i = regions.partition_point(|&(s, _)| s <= addr);
    i > 0 && addr < regions[i - 1].1
}

impl CodeRegions {
    pub(crate) fn new() -> Result<Self, Error> {
        Ok(CodeRegions {
            seq: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            starts: MappedArray::plain(MAX_REGIONS)?,
            ends: MappedArray::plain(MAX_REGIONS)?,
            truth: Mutex::new(Vec::new()),
        })
    }

    /// Refuses `entrypoint` with `NotCode` when regions are registered and
    /// none holds it. Entrypoint 0 (a placeholder) is always accepted.
    #[inline(always)]
    pub(crate) fn check(&self, entrypoint: u64) -> Result<(), Error> {
        // Relaxed: an alloc racing a first registration may see either state.
        // One load and branch when no region is registered.
        if self.len.load(Relaxed) == 0 || entrypoint == 0 {
            return Ok(());
        }
        self.check_registered(entrypoint)
    }

    #[inline(never)]
    fn check_registered(&self, entrypoint: u64) -> Result<(), Error> {
        let ok = match self.lookup(entrypoint) {
            Some(found) => found,
            None => contains(&self.truth.lock(), entrypoint),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::NotCode)
        }
    }

    /// Whether any region is registered (Relaxed, as in `check`).
    #[inline(always)]
    pub(crate) fn any(&self) -> bool {
        self.len.load(Relaxed) != 0
    }

    /// Lock-free lookup; `None` if a writer was publishing meanwhile.
    fn lookup(&self, addr: u64) -> Option<bool> {
        let s1 = self.seq.load(Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let n = self.len.load(Relaxed).min(MAX_REGIONS);
        // Binary search over the published starts.
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.starts[mid].load(Relaxed) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let found = lo > 0 && addr < self.ends[lo - 1].load(Relaxed);
        // Acquire fence: the loads above happen before the re-check.
        fence(Acquire);
        (self.seq.load(Relaxed) == s1).then_some(found)
    }

    fn publish(&self, regions: &[(u64, u64)]) {
        let s = self.seq.load(Relaxed);
        self.seq.store(s + 1, Relaxed);
        // Release fence: a reader that sees any store below also sees the
        // odd sequence number, so it falls back to the lock.
        fence(Release);
        for (i, &(start, end)) in regions.iter().enumerate() {
            self.starts[i].store(start, Relaxed);
            self.ends[i].store(end, Relaxed);
        }
        self.len.store(regions.len(), Relaxed);
        self.seq.store(s + 2, Release);
    }

    fn range(start: u64, len: u64) -> Result<(u64, u64), Error> {
        let end = start.checked_add(len).ok_or(Error::InvalidArgument)?;
        if len == 0 || !is_user_address(start) || !is_user_address(end - 1) {
            return Err(Error::InvalidArgument);
        }
        Ok((start, end))
    }

    /// Registers `[start, start+len)`. It must not overlap a registered region.
    pub(crate) fn add(&self, start: u64, len: u64) -> Result<(), Error> {
        let (start, end) = Self::range(start, len)?;
        let mut regions = self.truth.lock();
        let i = regions.partition_point(|&(s, _)| s < start);
        let overlaps_prev = i > 0 && regions[i - 1].1 > start;
        let overlaps_next = i < regions.len() && regions[i].0 < end;
        if overlaps_prev || overlaps_next {
            return Err(Error::InvalidArgument);
        }
        if regions.len() == MAX_REGIONS {
            return Err(Error::Capacity);
        }
        regions.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
        regions.insert(i, (start, end));
        self.publish(&regions);
        Ok(())
    }

    /// Unregisters a region registered with exactly these bounds.
    pub(crate) fn remove(&self, start: u64, len: u64) -> Result<(), Error> {
        let (start, end) = Self::range(start, len)?;
        let mut regions = self.truth.lock();
        let i = regions.iter().position(|&r| r == (start, end)).ok_or(Error::InvalidArgument)?;
        regions.remove(i);
        self.publish(&regions);
        Ok(())
    }

    pub(crate) fn count(&self) -> usize {
        self.truth.lock().len()
    }

    /// Holds the writer lock (across `fork`; see `ffi`).
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<(u64, u64)>> {
        self.truth.lock()
    }
}
