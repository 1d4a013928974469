//! Per-segment freelists: a tagged Treiber stack for every segment.
//!
//! Each segment's head is one 64-bit word:
//!
//! | bits   | field  | meaning                                              |
//! |--------|--------|------------------------------------------------------|
//! | 0..13  | top    | local index + 1 of the first free entry, 0 if none   |
//! | 13..26 | free   | free entries in the segment                          |
//! | 26     | open   | committed: entries can be taken and given back       |
//! | 27..64 | tag    | bumped by every change (37 bits: ABA-safe in practice)|
//!
//! The link to the next free entry lives in the free entry's entrypoint word
//! (`FREE_TAG | next_top`), written while the entry is being freed. Popping
//! reads the link of the top entry and swings the head with one CAS; if the
//! entry was taken, reused or its segment released meanwhile, the tag has
//! changed and the CAS fails. Nobody ever waits for anybody: there is no
//! marker to spin on.
//!
//! Because the free count sits in the same word as the top, a sweep can close
//! a segment exactly when all of its entries are free, with one CAS, while
//! allocators keep taking entries from every other segment.
//!
//! The heads live in memory tagged with the protection key (a corrupted head
//! could hand out a live entry twice), so every function that writes one
//! takes the caller's [`Window`] as proof that writes are allowed. An all-zero
//! head is a closed, empty segment, so a fresh mapping needs no initialising.

use crate::handle::{ENTRIES_PER_SEGMENT, FREE_TAG, FREE_TAG_MASK, LAST_INDEX, SEGMENTS, SEGMENT_SHIFT};
use crate::handle::Error;
use crate::memory::{Memory, MappedArray};
use crate::protect::Window;
use crate::sync::{AtomicU64, CachePadded, Ordering::*};

const FIELD_BITS: u32 = 13;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const FREE_SHIFT: u32 = FIELD_BITS;
const OPEN: u64 = 1 << (2 * FIELD_BITS);
const TAG_SHIFT: u32 = 2 * FIELD_BITS + 1;
const TAG_ONE: u64 = 1 << TAG_SHIFT;

const _: () = assert!(ENTRIES_PER_SEGMENT as u64 <= FIELD_MASK);

/// A decoded segment head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head(u64);

impl Head {
    #[inline]
    pub(crate) fn top(self) -> u32 {
        (self.0 & FIELD_MASK) as u32
    }
    #[inline]
    pub(crate) fn free(self) -> u32 {
        ((self.0 >> FREE_SHIFT) & FIELD_MASK) as u32
    }
    #[inline]
    pub(crate) fn closed(self) -> bool {
        self.0 & OPEN == 0
    }
    /// The same tag advanced, with new fields.
    #[inline]
    fn next(self, top: u32, free: u32, closed: bool) -> Head {
        let tag = (self.0 & !((TAG_ONE) - 1)).wrapping_add(TAG_ONE);
        Head(tag | u64::from(top) | (u64::from(free) << FREE_SHIFT) | if closed { 0 } else { OPEN })
    }
}

/// Number of entries of `segment` below index `end` (exclusive) that can
/// ever be allocated: index 0 and the last index are never handed out.
#[inline]
fn capacity_below(segment: u32, end: u32) -> u32 {
    let base = segment << SEGMENT_SHIFT;
    let last = (base + ENTRIES_PER_SEGMENT).min(end.min(LAST_INDEX)); // exclusive
    let first = base + first_local(segment);
    last.saturating_sub(first)
}

#[inline]
fn first_local(segment: u32) -> u32 {
    u32::from(segment == 0)
}

#[inline]
fn link(top: u32) -> u64 {
    FREE_TAG | u64::from(top)
}

/// Decodes a free entry's link, or `None` if the word is not a free link.
#[inline]
fn unlink(word: u64) -> Option<u32> {
    (word & FREE_TAG_MASK == FREE_TAG).then_some((word & FIELD_MASK) as u32)
}

/// Entries of one segment taken with one CAS ([`Freelists::pop_run`]):
/// `first` links to the next through its entrypoint word, and so on,
/// `count` entries down to `last`, whose word is the taker's to reuse.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) first: u32,
    pub(crate) last: u32,
    pub(crate) count: u32,
}

impl Run {
    /// The entry after `index`, a taken entry of a run but its last.
    #[inline(always)]
    pub(crate) fn next(mem: &Memory, index: u32) -> u32 {
        // Relaxed: the caller's own entry (the pop's Acquire read it first).
        let word = mem.entry(index).entrypoint.load(Relaxed);
        (index & !(ENTRIES_PER_SEGMENT - 1)) + (word & FIELD_MASK) as u32 - 1
    }
}

/// The heads of all segments.
pub(crate) struct Freelists {
    heads: MappedArray<CachePadded<AtomicU64>>,
    /// Entries at this index and above are never listed (a cap on live
    /// entries; `LAST_INDEX` for none).
    end: u32,
}

impl Freelists {
    /// Every segment closed (all-zero heads), or `OutOfMemory`. Only
    /// entries below index `end` are ever listed.
    pub(crate) fn new(end: u32) -> Result<Freelists, Error> {
        Ok(Freelists { heads: MappedArray::zeroed(SEGMENTS as usize)?, end: end.min(LAST_INDEX) })
    }

    /// Number of entries of `segment` that can ever be allocated (0 for a
    /// segment wholly above the cap, which is never committed).
    #[inline]
    pub(crate) fn capacity(&self, segment: u32) -> u32 {
        capacity_below(segment, self.end)
    }

    /// Whether entry `index` can ever be allocated (not 0, not the last
    /// index, below the cap).
    #[inline]
    pub(crate) fn allocatable(&self, index: u32) -> bool {
        index != 0 && index < self.end
    }

    /// Segments that hold an allocatable entry: the ones below the cap.
    #[inline]
    pub(crate) fn usable_segments(&self) -> u32 {
        self.end.div_ceil(ENTRIES_PER_SEGMENT).min(SEGMENTS)
    }

    #[inline]
    pub(crate) fn head(&self, segment: u32) -> Head {
        // SeqCst (a plain load on x86): see `push`.
        Head(self.heads[segment as usize].load(SeqCst))
    }

    /// Calls `f` with the local index of every entry on `segment`'s list,
    /// in list order (at most the head's free count, stopping at anything
    /// that is not a link). Only for a quiescent table: a fork child.
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn for_each_listed(&self, mem: &Memory, segment: u32, mut f: impl FnMut(u32)) {
        let head = self.head(segment);
        let mut top = head.top();
        for _ in 0..head.free() {
            if top == 0 {
                break;
            }
            let local = top - 1;
            f(local);
            match unlink(mem.entry((segment << SEGMENT_SHIFT) + local).entrypoint.load(Relaxed)) {
                Some(next) => top = next,
                None => break,
            }
        }
    }

    /// Empties `segment`'s list, open: the fork child's repair then pushes
    /// every free entry again. For a child in the alias mode, whose entries
    /// (and so links) were copied after the fork and may be newer than the
    /// heads. Only for a quiescent table.
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn reset_open(&self, segment: u32, _w: &Window) {
        let head = &self.heads[segment as usize];
        let cur = Head(head.load(Relaxed));
        head.store(cur.next(0, 0, false).0, Relaxed);
    }

    /// Takes a free entry of `segment` and returns its index, or `None` if
    /// the segment has no free entry or is not committed.
    #[inline]
    pub(crate) fn pop(&self, mem: &Memory, segment: u32, _w: &Window) -> Option<u32> {
        let head = &self.heads[segment as usize];
        // Acquire: pairs with the Release of the push (or open) that made
        // this head, so the top entry's link written before it is visible.
        let mut cur = Head(head.load(Acquire));
        loop {
            let top = cur.top();
            if cur.closed() || top == 0 {
                return None;
            }
            let index = (segment << SEGMENT_SHIFT) + top - 1;
            // The entry may be taken, reused or released under us; then the
            // word read here is garbage, but the tag will have moved and the
            // CAS below fails.
            let word = mem.entry(index).entrypoint.load(Acquire);
            let Some(next) = unlink(word) else {
                // The entry was taken (or its segment released) after we read
                // the head, so the head has moved on. Refresh it with an RMW,
                // which reads the latest value: a plain load could keep
                // returning the stale head, and we would never make progress.
                cur = match head.compare_exchange(cur.0, cur.0, Acquire, Acquire) {
                    Ok(same) | Err(same) => Head(same),
                };
                continue;
            };
            let new = cur.next(next, cur.free() - 1, false);
            // AcqRel (the same instruction as Acquire on x86): a thread that
            // finds the list emptied by this pop also sees what the popper
            // did before it, in particular a batch's start (`alloc`'s
            // refusal path looks at it to decide whether to look again).
            match head.compare_exchange_weak(cur.0, new.0, AcqRel, Acquire) {
                Ok(_) => return Some(index),
                Err(seen) => cur = Head(seen),
            }
        }
    }

    /// Takes up to `want` (> 0) free entries of `segment` with one CAS;
    /// returns how many (0 if the segment has none or is not committed).
    /// `put(k, index)` is called with the k-th entry walked as the walk
    /// reads it, before the CAS, on every attempt: what counts is the calls
    /// of the last attempt with `k` below the returned count (the caller's
    /// scratch is overwritten by a retry). No second walk.
    pub(crate) fn pop_into(&self, mem: &Memory, segment: u32, want: usize, w: &Window, put: impl FnMut(usize, u32)) -> usize {
        self.pop_run_with(mem, segment, want, w, put).map_or(0, |r| r.count as usize)
    }

    /// Takes up to `want` (> 0) free entries of `segment` with one CAS, as
    /// a [`Run`] still linked through their entrypoint words; `None` if the
    /// segment has none or is not committed. For batch calls: the walk
    /// reads the links of entries still on the list, and the CAS succeeds
    /// only if the head (and so the list) did not change meanwhile; after
    /// it the links are the caller's (nobody writes a taken entry's word
    /// but its taker).
    pub(crate) fn pop_run(&self, mem: &Memory, segment: u32, want: usize, w: &Window) -> Option<Run> {
        self.pop_run_with(mem, segment, want, w, |_, _| {})
    }

    /// `pop_run`, calling `put` as [`Freelists::pop_into`] says.
    #[inline(always)]
    fn pop_run_with(&self, mem: &Memory, segment: u32, want: usize, _w: &Window, mut put: impl FnMut(usize, u32)) -> Option<Run> {
        let head = &self.heads[segment as usize];
        let base = segment << SEGMENT_SHIFT;
        // Acquire: as in `pop`.
        let mut cur = Head(head.load(Acquire));
        loop {
            if cur.closed() || cur.top() == 0 {
                return None;
            }
            let limit = want.min(cur.free() as usize);
            let (mut top, mut bottom, mut k) = (cur.top(), 0, 0usize);
            let mut broken = false;
            while k < limit && top != 0 {
                bottom = top;
                put(k, base + top - 1);
                match unlink(mem.entry(base + top - 1).entrypoint.load(Acquire)) {
                    Some(next) => top = next,
                    None => {
                        broken = true; // taken under us: the CAS will fail
                        break;
                    }
                }
                k += 1;
            }
            if broken || k == 0 {
                cur = match head.compare_exchange(cur.0, cur.0, Acquire, Acquire) {
                    Ok(same) | Err(same) => Head(same),
                };
                if broken {
                    continue;
                }
                return None;
            }
            let new = cur.next(top, cur.free() - k as u32, false);
            // AcqRel: as in `pop`.
            match head.compare_exchange_weak(cur.0, new.0, AcqRel, Acquire) {
                Ok(_) => {
                    return Some(Run { first: base + cur.top() - 1, last: base + bottom - 1, count: k as u32 });
                }
                Err(seen) => cur = Head(seen),
            }
        }
    }

    /// Gives back `count` entries of one segment that the caller owns and
    /// has already linked to each other: `top` (local index) is the last
    /// linked, and `bottom` the first, whose link this sets to the list's
    /// top. One CAS for the whole chain; otherwise as `push`.
    pub(crate) fn push_chain(&self, mem: &Memory, segment: u32, top: u32, bottom: u32, count: u32, _w: &Window) {
        let head = &self.heads[segment as usize];
        let bottom = &mem.entry((segment << SEGMENT_SHIFT) + bottom).entrypoint;
        let mut cur = Head(head.load(Relaxed));
        loop {
            debug_assert!(!cur.closed());
            // Release: as in `push`.
            bottom.store(link(cur.top()), Release);
            let new = cur.next(top + 1, cur.free() + count, false);
            // SeqCst: as in `push`.
            match head.compare_exchange_weak(cur.0, new.0, SeqCst, Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = Head(seen),
            }
        }
    }

    /// The link word of a free entry whose successor is `local` (for
    /// callers building a chain for [`Freelists::push_chain`]).
    pub(crate) fn link_to(local: u32) -> u64 {
        link(local + 1)
    }

    /// Gives a free entry back to its segment. The caller owns the entry (it
    /// won the metadata CAS that freed it).
    #[inline]
    pub(crate) fn push(&self, mem: &Memory, index: u32, _w: &Window) {
        let segment = index >> SEGMENT_SHIFT;
        let local = index & (ENTRIES_PER_SEGMENT - 1);
        let head = &self.heads[segment as usize];
        let entry = &mem.entry(index).entrypoint;
        let mut cur = Head(head.load(Relaxed));
        loop {
            // A segment with an allocated entry is never closed.
            debug_assert!(!cur.closed());
            // Release: a reader whose Acquire load of the entrypoint finds
            // this link also sees the free check word stored before it, so
            // generated code never takes a link for an entrypoint.
            entry.store(link(cur.top()), Release);
            let new = cur.next(local + 1, cur.free() + 1, false);
            // Release: publishes the link stored above to the next popper.
            // SeqCst (the same instruction on x86): a push and the `full`
            // flag form a store-load pair with `Table::refill`'s last scan.
            match head.compare_exchange_weak(cur.0, new.0, SeqCst, Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = Head(seen),
            }
        }
    }

    /// Opens a freshly committed segment: links every allocatable entry in
    /// index order. The caller holds the growth lock, and the segment is
    /// closed.
    pub(crate) fn open(&self, mem: &Memory, segment: u32, _w: &Window) {
        let base = segment << SEGMENT_SHIFT;
        let first = first_local(segment);
        let cap = self.capacity(segment);
        let last = first + cap; // exclusive
        for local in first..last {
            let next = if local + 1 < last { local + 2 } else { 0 };
            debug_assert!(base + local != LAST_INDEX);
            // Release: as in `push`, for the check words written at commit.
            mem.entry(base + local).entrypoint.store(link(next), Release);
        }
        let head = &self.heads[segment as usize];
        let cur = Head(head.load(Relaxed));
        debug_assert!(cur.closed());
        // Release: the links above are visible to whoever pops from this head.
        head.store(cur.next(first + 1, cap, false).0, Release);
    }

    /// Closes `segment` if every allocatable entry in it is free. Returns
    /// whether it did; once closed, nothing can be taken from it.
    pub(crate) fn close_if_empty(&self, segment: u32, _w: &Window) -> bool {
        let head = &self.heads[segment as usize];
        let cur = Head(head.load(Acquire));
        if cur.closed() || cur.free() != self.capacity(segment) {
            return false;
        }
        // AcqRel: a concurrent pop or push makes this fail; on success the
        // frees that made the segment empty happen before the release.
        head.compare_exchange(cur.0, cur.next(0, 0, true).0, AcqRel, Relaxed).is_ok()
    }
}
