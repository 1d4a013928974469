//! Per-thread caches of free entries: the single-thread fast path.
//!
//! Every thread slot (see `thread_slot.rs`) has a small stack of free
//! entries in each table. `alloc` pops from the calling thread's stack and
//! `free` pushes onto it, with plain loads and stores: the pair costs the
//! one metadata CAS that `free` needs to detect a double free, and nothing
//! else that is atomic. The stack is refilled from the thread's shard with
//! one CAS for [`REFILL`] entries, and spilled to the shared freelists (one
//! CAS per segment run) when full.
//!
//! An entry on a stack is free in its metadata (its generation moved on and
//! its check word answers no handle), but it is not on a freelist, so a
//! sweep never releases its segment.
//!
//! Any thread can take every stack away ([`Table::drain_caches`]): when the
//! table would otherwise refuse an allocation (so no free entry is ever out
//! of reach), when it sweeps, and for `stats` counting (which only reads).
//! The owner and a taker exclude each other with two words per stack:
//!
//! - the owner stores `busy = 1`, runs the light barrier, and goes on only
//!   if `request` is 0; it stores `busy = 0` (Release) when done;
//! - the taker runs the heavy barrier, picks every stack that has an owner
//!   or entries, stores `request = 1` on each, runs the heavy barrier again,
//!   then for each waits for `busy == 0` (Acquire), empties it and stores
//!   `request = 0` (Release). (The first barrier makes every owner that
//!   entered its stack before it visible to the pick, and every owner that
//!   enters after it sees what the taker stored before: the refusal flag.)
//!
//! The barriers make this Dekker's handshake: either the taker sees
//! `busy == 1` and waits, or the owner sees `request == 1` and leaves the
//! stack alone (that operation uses the shared freelists).
//!
//! A signal handler that interrupts its thread inside the stack finds
//! `busy == 1` and uses the shared freelists; a taker skips the stack of its
//! own thread in that case. A thread that exits leaves its stack to the next
//! thread of its slot; the C ABI empties it first (the exit hook).

use super::{shard_index, Table};
use crate::freelist::Freelists;
use crate::handle::{ENTRIES_PER_SEGMENT, LAST_INDEX, SEGMENT_SHIFT};
use crate::memory::{MappedArray, Zeroed};
use crate::protect::Window;
use crate::sync::{spin_wait, AtomicU32, Mutex, Ordering::*};
use crate::thread_slot::{self, SLOTS};

/// Entries a stack holds at most.
#[cfg(not(loom))]
pub(crate) const CAP: usize = 61;
#[cfg(loom)]
pub(crate) const CAP: usize = 2;

/// Entries taken from the shard at once when a stack is empty.
#[cfg(not(loom))]
const REFILL: usize = 32;
#[cfg(loom)]
const REFILL: usize = 2;

/// Entries kept when a full stack spills to the freelists.
const KEEP: usize = CAP / 2;

/// One thread's stack in one table (256 bytes, four cache lines that only
/// its owner touches, except when a taker empties it).
#[repr(C, align(64))]
pub(crate) struct Cache {
    /// 1 while the owner is inside; written only by the owner.
    busy: AtomicU32,
    /// 1 while a taker wants the stack left alone.
    request: AtomicU32,
    /// Entries on the stack (clamped to CAP when read).
    len: AtomicU32,
    items: [AtomicU32; CAP],
}

// SAFETY: every field is an atomic integer (or an array of them), for which
// all-zero is 0: an idle, empty stack.
unsafe impl Zeroed for Cache {
    fn zeroed() -> Self {
        Cache {
            busy: AtomicU32::new(0),
            request: AtomicU32::new(0),
            len: AtomicU32::new(0),
            items: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// The stacks of one table.
pub(crate) struct Caches {
    /// Per slot, in memory tagged with the protection key: a stack that
    /// named a live entry would hand it out twice.
    slots: MappedArray<Cache>,
    /// Whether the heavy barrier works here (else no stack is ever used).
    on: bool,
    /// Serialises takers.
    drain: Mutex<()>,
}

impl Caches {
    /// Stacks for every slot, in use if `on` and the barriers work here.
    pub(crate) fn new(on: bool) -> Result<Caches, crate::Error> {
        Ok(Caches { slots: MappedArray::zeroed(SLOTS)?, on: on && thread_slot::barriers_available(), drain: Mutex::new(()) })
    }

    /// The stack of thread slot `s` (< `SLOTS`, as `thread_slot` gives).
    #[inline(always)]
    fn slot(&self, s: usize) -> &Cache {
        debug_assert!(s < SLOTS && self.slots.len() == SLOTS);
        // SAFETY: `slots` was mapped with SLOTS elements (`new`) and never
        // shrinks, and every slot number `thread_slot` gives is < SLOTS
        // (a hash's top SLOT_BITS bits, or a checked key value): in bounds.
        // Unchecked to keep the bounds check off the fast path.
        unsafe { self.slots.get_unchecked(s % SLOTS) }
    }

    /// Whether the stacks are in use.
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// Entries on all stacks (racy while threads work).
    pub(crate) fn cached(&self) -> usize {
        if !self.on {
            return 0;
        }
        self.slots.iter().map(|c| (c.len.load(Relaxed) as usize).min(CAP)).sum()
    }

    /// The takers' lock: held by `stats` (so that its counts are coherent)
    /// and by the fork handlers (so that no taker is caught half way).
    pub(crate) fn lock(&self) -> crate::sync::MutexGuard<'_, ()> {
        self.drain.lock()
    }

    /// In a fork child: every stack empty and idle (the entries on them are
    /// free in their metadata, and go back on the freelists with the other
    /// unlisted free entries in `repair_after_fork`).
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
    pub(crate) fn clear(&self, _w: &Window) {
        for c in self.slots.iter() {
            c.len.store(0, Relaxed);
            c.busy.store(0, Relaxed);
            c.request.store(0, Relaxed);
        }
    }
}

/// The fast paths' view of a stack they entered ([`Table::enter_own`]).
#[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
impl Cache {
    /// Entries on the stack (not clamped: check against [`CAP`]).
    #[inline(always)]
    pub(super) fn len(&self) -> u32 {
        self.len.load(Relaxed)
    }

    /// The entry at the top of a stack of `n` entries (1..=CAP), left there,
    /// if its index is in range (only a corrupted stack holds one that is
    /// not; the general path drops it).
    #[inline(always)]
    pub(super) fn peek(&self, n: u32) -> Option<u32> {
        let i = self.items[n as usize - 1].load(Relaxed);
        (i.wrapping_sub(1) < LAST_INDEX - 1).then_some(i)
    }

    /// Pops the top of a stack of `n` entries (after `peek`).
    #[inline(always)]
    pub(super) fn drop_top(&self, n: u32) {
        self.len.store(n - 1, Relaxed);
    }

    /// Pushes `index` on a stack of `n` < CAP entries.
    #[inline(always)]
    pub(super) fn push(&self, n: u32, index: u32) {
        self.items[n as usize].store(index, Relaxed);
        self.len.store(n + 1, Relaxed);
    }

    /// Leaves the stack.
    #[inline(always)]
    pub(super) fn leave(&self) {
        leave(self);
    }
}

/// Pops the top of stack `c`, entered by the caller, which holds `n`
/// (1..=CAP) entries.
#[inline(always)]
fn pop(c: &Cache, n: u32) -> Option<u32> {
    c.len.store(n - 1, Relaxed);
    let i = c.items[n as usize - 1].load(Relaxed);
    // Only a corrupted stack could hold these; never hand them out.
    (i != 0 && i < LAST_INDEX).then_some(i)
}

/// Leaves the stack entered with [`Table::enter_cache`].
#[inline(always)]
fn leave(c: &Cache) {
    // Release: a taker that sees 0 (Acquire) sees what we did inside.
    c.busy.store(0, Release);
}

impl Table {
    /// The calling thread's stack, entered, or `None` (no slot, stacks off,
    /// a taker at work, or a nested call from a signal handler).
    #[inline(always)]
    fn enter_cache(&self, _w: &Window) -> Option<&Cache> {
        if !self.caches.on {
            return None;
        }
        let c = self.caches.slot(thread_slot::current()?);
        self.enter(c, _w)
    }

    /// Enters the calling thread's own stack `c` (see `enter_cache`).
    #[inline(always)]
    fn enter<'a>(&self, c: &'a Cache, _w: &Window) -> Option<&'a Cache> {
        // Only this thread writes `busy`: 1 here means a signal handler
        // interrupted this thread inside its own stack.
        if c.busy.load(Relaxed) != 0 {
            return None;
        }
        c.busy.store(1, Relaxed);
        thread_slot::light_barrier();
        // Acquire: a taker's Release of `request` makes its emptying visible.
        if c.request.load(Acquire) != 0 {
            leave(c);
            return None;
        }
        Some(c)
    }

    /// For the fast paths: the calling thread's own stack, entered, if the
    /// thread's slot is its first candidate (no claim, no call) and no
    /// taker is at work; leave it with [`Cache::leave`]. Only with stacks
    /// on.
    #[inline(always)]
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
    pub(super) fn enter_own(&self, w: &Window) -> Option<&Cache> {
        debug_assert!(self.caches.on);
        let c = self.caches.slot(thread_slot::current_if_claimed()?);
        self.enter(c, w)
    }

    /// A free entry from the calling thread's stack (refilled from its shard
    /// if empty), or `None`: then `take` finds one the shared way.
    #[inline]
    pub(super) fn cached_take(&self, w: &Window) -> Option<u32> {
        let c = self.enter_cache(w)?;
        let mut n = c.len.load(Relaxed).min(CAP as u32);
        if n == 0 {
            n = self.refill_cache(c, w);
        }
        let got = if n > 0 { pop(c, n) } else { None };
        leave(c);
        got
    }

    /// Fills an empty stack from the shard's current segment with one CAS,
    /// inside the stack (a taker waits for us, so the entries are never out
    /// of its sight). Returns how many; 0 if the segment has none (then the
    /// caller takes the shared way, which refills the shard).
    #[cold]
    #[inline(never)]
    fn refill_cache(&self, c: &Cache, w: &Window) -> u32 {
        let current = self.shards[shard_index()].load(Relaxed);
        if current == 0 {
            return 0;
        }
        // The walk writes the stack's slots as it goes (a failed attempt's
        // are overwritten): they are ours, and above `len` until the store.
        let k = self.lists.pop_into(&self.mem, current - 1, REFILL, w, |k, i| {
            if let Some(item) = c.items.get(k) {
                item.store(i, Relaxed);
            }
        });
        c.len.store(k as u32, Relaxed);
        k as u32
    }

    /// Puts an entry that `free` has just retired on the calling thread's
    /// stack, spilling half of a full stack first. False if it did not (the
    /// caller pushes it on its freelist).
    #[inline]
    pub(super) fn cached_give(&self, index: u32, w: &Window) -> bool {
        let Some(c) = self.enter_cache(w) else { return false };
        // An allocation was refused since the last free: the entry goes on
        // its freelist, and `free` clears the flag (see `refuse_unless_free`).
        if self.refusal.any() {
            leave(c);
            return false;
        }
        let mut n = c.len.load(Relaxed).min(CAP as u32) as usize;
        if n == CAP {
            n = self.spill(c, n, KEEP, w);
        }
        c.items[n].store(index, Relaxed);
        c.len.store(n as u32 + 1, Relaxed);
        leave(c);
        true
    }

    /// Gives entries `keep..n` of a stack we are inside back to their
    /// freelists; returns `keep`.
    #[cold]
    #[inline(never)]
    fn spill(&self, c: &Cache, n: usize, keep: usize, w: &Window) -> usize {
        let mut out = [0u32; CAP];
        for (o, item) in out.iter_mut().zip(&c.items[keep..n]) {
            *o = item.load(Relaxed);
        }
        c.len.store(keep as u32, Relaxed);
        self.give_back(&mut out[..n - keep], w);
        keep
    }

    /// Pushes free entries that we own (retired, on no list and no stack)
    /// onto their freelists: one chain and one CAS per segment run.
    fn give_back(&self, entries: &mut [u32], w: &Window) {
        const LOCAL: u32 = ENTRIES_PER_SEGMENT - 1;
        // Runs of one segment: a stack spilled by a thread that frees in
        // the order it allocated is sorted already (and a sort of it would
        // cost more than the rest of the spill).
        if !entries.windows(2).all(|p| p[0] >> SEGMENT_SHIFT <= p[1] >> SEGMENT_SHIFT) {
            entries.sort_unstable();
        }
        let mut i = 0;
        while i < entries.len() {
            let segment = entries[i] >> SEGMENT_SHIFT;
            let mut j = i + 1;
            while j < entries.len() && entries[j] >> SEGMENT_SHIFT == segment {
                j += 1;
            }
            for k in i..j - 1 {
                // Release: as in `Freelists::push` (the check word first).
                self.entry(entries[k]).entrypoint.store(Freelists::link_to(entries[k + 1] & LOCAL), Release);
            }
            let (top, bottom) = (entries[i] & LOCAL, entries[j - 1] & LOCAL);
            self.lists.push_chain(&self.mem, segment, top, bottom, (j - i) as u32, w);
            i = j;
        }
    }

    /// Takes every stack away and puts its entries back on their freelists;
    /// returns how many entries. Used before refusing an allocation and by
    /// `sweep`. Skips the calling thread's own stack if the caller is a
    /// signal handler that interrupted it inside, and any stack whose owner
    /// stays inside for about 200,000 yields (stopped in a debugger, or
    /// in a signal handler that never returns): its entries stay there.
    pub(super) fn drain_caches(&self, w: &Window) -> usize {
        if !self.caches.on {
            return 0;
        }
        let _g = self.caches.drain.lock();
        let mine = thread_slot::owned();
        // First barrier: a thread that claimed its slot and entered its stack
        // before it is seen below as an owner; one that enters after it sees
        // whatever the caller stored before (the refusal flag).
        thread_slot::heavy_barrier();
        let mut picked = [0u64; SLOTS.div_ceil(64)];
        let mut any = false;
        for (s, c) in self.caches.slots.iter().enumerate() {
            if thread_slot::is_owned(s) || c.len.load(Relaxed) != 0 {
                c.request.store(1, Relaxed);
                picked[s / 64] |= 1 << (s % 64);
                any = true;
            }
        }
        if !any {
            return 0;
        }
        // Second barrier: Dekker's handshake with each picked owner.
        thread_slot::heavy_barrier();
        let mut total = 0;
        for (s, c) in self.caches.slots.iter().enumerate() {
            if picked[s / 64] & (1 << (s % 64)) == 0 {
                continue;
            }
            let nested = Some(s) == mine && c.busy.load(Relaxed) != 0;
            if !nested && self.wait_idle(c) {
                let n = (c.len.load(Relaxed) as usize).min(CAP);
                if n > 0 {
                    let mut out = [0u32; CAP];
                    for (o, item) in out.iter_mut().zip(&c.items[..n]) {
                        *o = item.load(Relaxed);
                    }
                    c.len.store(0, Relaxed);
                    self.give_back(&mut out[..n], w);
                    total += n;
                }
            }
            // Release: the owner that sees 0 (Acquire) sees the stack empty.
            c.request.store(0, Release);
        }
        total
    }

    /// Waits until the owner of `c` is outside it (true), or gives up after
    /// about 200,000 yields, a fraction of a second to seconds (false).
    fn wait_idle(&self, c: &Cache) -> bool {
        let mut spins = 0;
        let mut rounds = 0u32;
        // Acquire: pairs with the owner's Release in `leave`.
        while c.busy.load(Acquire) != 0 {
            spin_wait(&mut spins);
            rounds += 1;
            if cfg!(not(loom)) && rounds > 200_000 {
                return false;
            }
        }
        true
    }

    /// Empties the calling thread's own stack onto the freelists (a thread
    /// that exits, through the C ABI's exit hook).
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
    pub(crate) fn flush_own_cache(&self) {
        crate::protect::ensure_read();
        let w = Window::open();
        let Some(c) = self.enter_cache(&w) else { return };
        let n = (c.len.load(Relaxed) as usize).min(CAP);
        if n > 0 {
            self.spill(c, n, 0, &w);
        }
        leave(c);
    }
}
