//! The code pointer table: the Rust core behind the C ABI.
//!
//! A [`Table`] owns its memory, freelists, native map and code regions, so any
//! number of independent tables can exist (the C ABI uses one process-wide
//! instance; tests use many).
//!
//! Allocation: every thread hashes to one of [`SHARDS`] shards. A shard
//! *claims* a segment and takes entries from it until it is exhausted, so
//! threads mostly touch segment heads no other thread touches. When its segment
//! runs dry the shard claims another segment with free entries, or commits a
//! new one under the growth lock; only when neither is possible (the table is
//! full, or the OS refuses memory) does it share a segment claimed by another
//! shard, so no free entry is ever out of reach.

use crate::freelist::{segment_capacity, Freelists};
use crate::handle::*;
use crate::memory::{Entry, Memory, MappedArray};
use crate::native::{Key, NativeMap};
use crate::protect::{self, Window};
use crate::regions::CodeRegions;
use crate::sync::{
    fence, spin_wait, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, CachePadded, Mutex, MutexGuard, Ordering::*,
    RwLock, RwLockWriteGuard,
};

mod batch;
mod cache;
mod refusal;

use cache::Caches;
use refusal::Refusal;

/// Number of allocation shards (each with its own current segment).
#[cfg(not(loom))]
pub const SHARDS: usize = 64;
#[cfg(loom)]
pub const SHARDS: usize = 1;

const NEVER_COMMITTED: u8 = 0;
const COMMITTED: u8 = 1;
const RELEASED: u8 = 2;

/// A snapshot of a table's counters (racy while other threads work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Stats {
    /// Entries that can ever be allocated (2^24 - 2).
    pub capacity: usize,
    /// Segments whose entry memory is committed.
    pub committed_segments: usize,
    /// Bytes of entry memory committed (`committed_segments` * 64 KiB).
    pub committed_bytes: usize,
    /// Entries allocated by `alloc` and not yet freed.
    pub live: usize,
    /// Free entries in committed segments.
    pub free: usize,
    /// Native handles (entries that live until teardown).
    pub native: usize,
}

/// A code pointer table.
///
/// Everything below that the table writes while in use (entries, metadata,
/// freelist heads, segment states and claims, the native map) is in memory
/// tagged with the protection key; the locks, two counters and the code
/// regions are not (docs/DESIGN.md says why).
pub struct Table {
    mem: Memory,
    lists: Freelists,
    /// Per segment: 0, or 1 + the shard that claims it.
    owner: MappedArray<AtomicU8>,
    /// Per segment: NEVER_COMMITTED, COMMITTED or RELEASED.
    state: MappedArray<AtomicU8>,
    /// Per shard: 0, or 1 + its current segment.
    shards: MappedArray<CachePadded<AtomicU32>>,
    /// Per segment: 1 once any of its entries' generations has wrapped.
    /// Never released, like the generation bytes: together they rebuild
    /// the metadata of a recommitted segment.
    wrapped: MappedArray<AtomicU8>,
    /// Serialises commit and release of segments.
    grow: Mutex<()>,
    /// Held for reading by every batch call (`alloc_many`, `free_many`) and
    /// for writing by the fork handlers, so that a fork child never sees a
    /// batch half done.
    batch: RwLock<()>,
    /// Batch calls started and finished: a refused `alloc` during which a
    /// batch was in flight looks again after it (see `alloc`).
    batch_starts: AtomicUsize,
    batch_ends: AtomicUsize,
    /// The remembered refusal to allocate (`table/refusal.rs`).
    refusal: Refusal,
    /// Segments at or above this index have never been committed.
    high_water: AtomicU32,
    committed: AtomicUsize,
    natives: NativeMap,
    regions: CodeRegions,
    /// Per-thread stacks of free entries (`table/cache.rs`).
    caches: Caches,
    /// Added to every generation in this table's handles, different for each
    /// table created in the process, so that handles of a torn-down table do
    /// not name the entries of its successor.
    salt: u8,
}

/// Not a model-checked atomic even under loom: it only numbers tables.
#[cfg(not(loom))]
static NEXT_SALT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// A hash of the calling thread's identity, the same for every call on one
/// thread, different between threads (mostly): the thread pointer times a
/// Fibonacci constant. Take its *top* bits (`>> (64 - k)`): those mix every
/// bit of the pointer, which for threads differ mostly in high bits.
/// Async-signal-safe.
#[inline]
pub(crate) fn thread_hash() -> usize {
    #[cfg(not(loom))]
    {
        crate::thread_slot::thread_pointer().wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    #[cfg(loom)]
    {
        0
    }
}

/// Which shard the calling thread allocates from.
#[inline]
fn shard_index() -> usize {
    const _: () = assert!(SHARDS.is_power_of_two());
    if SHARDS == 1 {
        return 0;
    }
    thread_hash() >> (usize::BITS - SHARDS.trailing_zeros())
}

impl Table {
    /// Reserves a new, empty table. Nothing is committed until first use.
    pub fn new() -> Result<Table, Error> {
        // Under loom the per-thread stacks are modelled only where a model
        // asks for them (`with_thread_caches`): each stack operation adds
        // steps to every interleaving of the models of other paths.
        Self::with_thread_caches(cfg!(not(loom)))
    }

    /// A new table, with per-thread stacks of free entries if `on` (and the
    /// machine has the barriers they need; see `thread_slot.rs`).
    pub(crate) fn with_thread_caches(on: bool) -> Result<Table, Error> {
        protect::init();
        const _: () = assert!(NEVER_COMMITTED == 0, "a zeroed state array is all NEVER_COMMITTED");
        Ok(Table {
            mem: Memory::reserve()?,
            lists: Freelists::new()?,
            owner: MappedArray::zeroed(SEGMENTS as usize)?,
            state: MappedArray::zeroed(SEGMENTS as usize)?,
            shards: MappedArray::zeroed(SHARDS)?,
            wrapped: MappedArray::zeroed(SEGMENTS as usize)?,
            grow: Mutex::new(()),
            batch: RwLock::new(()),
            batch_starts: AtomicUsize::new(0),
            batch_ends: AtomicUsize::new(0),
            refusal: Refusal::new(),
            high_water: AtomicU32::new(0),
            committed: AtomicUsize::new(0),
            natives: NativeMap::new()?,
            regions: CodeRegions::new()?,
            caches: Caches::new(on)?,
            // An odd step visits all 256 salts before repeating one. Under
            // loom, 0 in every execution (a model must be deterministic), so
            // the models meet the skipped generation (see `publish`).
            #[cfg(not(loom))]
            salt: NEXT_SALT.fetch_add(0x9D, Relaxed),
            #[cfg(loom)]
            salt: 0,
        })
    }

    /// The address of entry 0, for generated code:
    /// `base + (handle & INDEX_MASK) * ENTRY_SIZE`.
    pub fn base(&self) -> *const u8 {
        self.mem.base().cast()
    }

    /// (index, metadata generation) of a handle of this table; index 0 (which
    /// every caller refuses as an invalid handle) for a handle of generation
    /// byte 0, which is never issued (see `publish`).
    #[inline(always)]
    fn split(&self, handle: u32) -> (u32, u8) {
        let (index, g) = split(handle);
        let index = if g == 0 { 0 } else { index };
        (index, g.wrapping_sub(self.salt))
    }

    #[inline(always)]
    fn entry(&self, index: u32) -> &Entry {
        self.mem.entry(index)
    }

    #[inline(always)]
    fn meta(&self, index: u32) -> &AtomicU16 {
        self.mem.meta(index)
    }

    /// The entry's two words for a lookup: the entrypoint, then the check
    /// word. This is the order generated code uses (`wcpt_call_target`).
    ///
    /// Why a stale handle never reaches the next occupant: `free` stores the
    /// next generation's check word before the push that makes the entry
    /// reusable, and the next occupant's entrypoint is stored (Release) after
    /// the pop that took it. A reader whose Acquire load returns that
    /// entrypoint therefore also sees the newer check word, which does not
    /// match the stale handle.
    #[inline(always)]
    fn read_entry(&self, handle: u32) -> (u64, u64) {
        let entry = self.entry(handle & INDEX_MASK);
        let entrypoint = entry.entrypoint.load(Acquire);
        (entrypoint, entry.check.load(Relaxed))
    }

    /// The entrypoint of a live handle, or 0 for anything else (free, stale,
    /// null, invalid, never allocated). Never faults, whatever `handle` is.
    /// Reads the entry only.
    #[inline]
    pub fn get(&self, handle: Handle) -> u64 {
        let handle = handle.raw();
        protect::ensure_read();
        if beyond_table(handle) {
            return 0;
        }
        let (entrypoint, check) = self.read_entry(handle);
        // A free entry holds a link, not a user address, and the check word
        // of a generation no handle was issued for.
        if check >> SIGNATURE_BITS == u64::from(handle >> INDEX_BITS) && is_user_address(entrypoint) {
            entrypoint
        } else {
            0
        }
    }

    /// Like [`Table::get`], and also 0 unless the entry's signature is
    /// `signature` (0 for a signature wider than 56 bits).
    #[inline]
    pub fn get_checked(&self, handle: Handle, signature: u64) -> u64 {
        // What generated code gets, less a free entry's link (which only a
        // handle of a generation never issued could match).
        let entrypoint = self.call_target(handle, signature);
        if is_user_address(entrypoint) {
            entrypoint
        } else {
            0
        }
    }

    /// What generated code computes with the header's `wcpt_call_target`:
    /// the entrypoint if the check word is `check_word(handle, signature)`,
    /// else 0. Exactly the C sequence, for tests and loom models.
    #[inline]
    pub fn call_target(&self, handle: Handle, signature: u64) -> u64 {
        let handle = handle.raw();
        protect::ensure_read();
        if beyond_table(handle) || signature > SIGNATURE_MASK {
            return 0;
        }
        let (entrypoint, check) = self.read_entry(handle);
        if check == check_word(handle, signature) {
            entrypoint
        } else {
            0
        }
    }

    /// The check word of a free entry whose next generation is `g`
    /// (unsalted): that generation with the native signature. It matches no
    /// handle ever issued for the entry, even after its generation wrapped:
    /// an entry that was freed was never native (natives are never freed),
    /// so none of its handles carried the native signature.
    #[inline]
    fn free_check(&self, index: u32, g: u8) -> u64 {
        check_word(join(index, g.wrapping_add(self.salt)), NATIVE_SIGNATURE)
    }

    #[inline(always)]
    fn check_code(&self, entrypoint: u64) -> Result<(), Error> {
        if !is_user_address(entrypoint) {
            return Err(Error::InvalidArgument);
        }
        self.regions.check(entrypoint)
    }

    /// Allocates an entry holding `entrypoint` and `signature` (at most 56
    /// bits: [`SIGNATURE_MASK`]).
    pub fn alloc(&self, entrypoint: u64, signature: u64) -> Result<Handle, Error> {
        self.check_code(entrypoint)?;
        if signature > SIGNATURE_MASK {
            return Err(Error::InvalidArgument);
        }
        // SeqCst (a plain load on x86): with the batches' counters, see below.
        let ends = self.batch_ends.load(SeqCst);
        {
            // One write window for the whole operation, committing a segment
            // on the way (rare) included.
            let w = Window::open();
            // The calling thread's stack first: no atomic RMW at all. Not
            // while a refusal is remembered: the refusal took every stack
            // back, and frees since then went to the freelists.
            if !self.refusal.any() {
                if let Some(index) = self.cached_take(&w) {
                    return Ok(Handle::from_raw(self.publish(index, entrypoint, signature, Meta::LIVE, &w)));
                }
            }
            match self.take(&w) {
                Ok(index) => return Ok(Handle::from_raw(self.publish(index, entrypoint, signature, Meta::LIVE, &w))),
                // The fence: whatever this take read that a batch wrote (an
                // emptied head, a refusal flag) makes that batch's start
                // visible here (cold path: only when full).
                Err(Error::Capacity) if {
                    fence(SeqCst);
                    self.batch_starts.load(SeqCst) != ends
                } => {}
                Err(e) => return Err(e),
            }
        }
        // Full, and a batch was in flight at some point during the take: it
        // may have held entries for a moment and given them all back (an
        // `alloc_many` that did not fit). Wait for the batches in flight,
        // then look once more, so that no free entry is out of reach of this
        // allocation. (No batch started since `ends` was read, and none was
        // in flight then, exactly when `starts` still equals `ends`.)
        self.wait_for_batches();
        let w = Window::open();
        let index = self.take(&w)?;
        Ok(Handle::from_raw(self.publish(index, entrypoint, signature, Meta::LIVE, &w)))
    }

    /// Returns once every batch call that was in flight has finished.
    fn wait_for_batches(&self) {
        drop(self.batch.write());
    }

    /// Writes a taken entry and makes it answer to its handle.
    #[inline]
    fn publish(&self, index: u32, entrypoint: u64, signature: u64, state: u16, _w: &Window) -> u32 {
        let entry = self.entry(index);
        let meta = self.meta(index);
        // We own the entry (popped it): nobody else writes its metadata.
        let mut m = Meta(meta.load(Relaxed));
        if m.generation().wrapping_add(self.salt) == 0 {
            // No handle has generation byte 0: a released page reads as
            // zeros, and a check word of 0 must answer no handle ever issued
            // (a lookup that read the entrypoint just before a sweep released
            // the page, and the check word just after, would otherwise take
            // that entrypoint). Skip to the next generation.
            m = m.freed();
            if m.generation() == 0 {
                self.wrapped[(index >> SEGMENT_SHIFT) as usize].store(1, Relaxed);
            }
        }
        let handle = join(index, m.generation().wrapping_add(self.salt));
        // Release: a reader that sees this entrypoint sees that the previous
        // occupant's check word was replaced (see `read_entry`).
        entry.entrypoint.store(entrypoint, Release);
        // Release: a reader that sees the check word sees the entrypoint.
        entry.check.store(check_word(handle, signature), Release);
        // Release: a thread that sees the entry live also sees its contents.
        meta.store(m.with_state(state).0, Release);
        handle
    }

    /// Takes a free entry for the calling thread's shard.
    #[inline]
    fn take(&self, w: &Window) -> Result<u32, Error> {
        let shard = shard_index();
        let mut current = self.shards[shard].load(Relaxed);
        loop {
            if current != 0 {
                if let Some(index) = self.lists.pop(&self.mem, current - 1, w) {
                    return Ok(index);
                }
            }
            current = self.refill(shard, current, w)?;
        }
    }

    /// Takes up to `want` (> 0) free entries, at least one, for the calling
    /// thread's shard, with one CAS per segment run, calling `f` with each;
    /// returns how many, or why none.
    fn take_many(&self, want: usize, w: &Window, mut f: impl FnMut(u32)) -> Result<usize, Error> {
        let shard = shard_index();
        let mut current = self.shards[shard].load(Relaxed);
        loop {
            if current != 0 {
                let k = self.lists.pop_many(&self.mem, current - 1, want, w, &mut f);
                if k > 0 {
                    return Ok(k);
                }
            }
            current = self.refill(shard, current, w)?;
        }
    }

    /// Gives `shard` a new current segment (returned as segment + 1) after
    /// `seen` ran dry: one it claims, a newly committed one, or, when the
    /// table is full or memory is refused, any segment with a free entry.
    #[cold]
    fn refill(&self, shard: usize, seen: u32, w: &Window) -> Result<u32, Error> {
        let me = shard as u8 + 1;
        let slot = &self.shards[shard];
        let current = slot.load(Relaxed);
        if current != seen {
            return Ok(current); // another thread of this shard moved on
        }
        if let Some(e) = self.refusal.still_refused(thread_hash()) {
            return Err(e);
        }
        let segment = match self.find_segment(me, false) {
            Some(s) => s,
            None => {
                let guard = self.grow.lock();
                // Re-check under the lock: no growth while free entries exist
                // outside other shards' segments.
                match self.find_segment(me, false) {
                    Some(s) => s,
                    None => match self.commit_segment(w) {
                        Ok(s) => {
                            // Memory came back: no refusal outlives a commit.
                            self.refusal.clear();
                            self.owner[s as usize].store(me, Relaxed);
                            s
                        }
                        Err(e) => {
                            drop(guard);
                            self.refuse_unless_free(me, e, w)?
                        }
                    },
                }
            }
        };
        if seen != 0 && seen - 1 != segment {
            let _ = self.owner[seen as usize - 1].compare_exchange(me, 0, Relaxed, Relaxed);
        }
        slot.store(segment + 1, Relaxed);
        Ok(segment + 1)
    }

    /// Why `free` refuses a handle of generation `g` (unsalted) whose entry
    /// holds `m`: a free entry's metadata may have been released by a sweep,
    /// so its generation and wrapped flag come from what outlives one.
    fn refusal(&self, index: u32, m: Meta, g: u8) -> Error {
        let persistent = (
            self.mem.generation(index).load(Relaxed),
            self.wrapped[(index >> SEGMENT_SHIFT) as usize].load(Relaxed) != 0,
        );
        m.refusal(g, Some(persistent))
    }

    /// The table can give no entry (full, or memory refused): any segment
    /// with a free entry, claimed or not, or the refusal, remembered so that
    /// the next allocations are refused without a lock or a scan.
    #[cold]
    fn refuse_unless_free(&self, me: u8, e: Error, w: &Window) -> Result<u32, Error> {
        // SeqCst store, then SeqCst loads of the heads in the scan (see
        // `Refusal::remember`).
        self.refusal.remember(e);
        // Then the threads' stacks: taken away after the flag is set, so a
        // free that misses the flag's store still has its entry taken here
        // (see `table/cache.rs`), and looked at again even if none held any
        // (a stack being spilled may have pushed meanwhile).
        let found = match self.find_segment(me, true) {
            Some(s) => Some(s),
            None => {
                self.drain_caches(w);
                self.find_segment(me, true)
            }
        };
        match found {
            Some(s) => {
                self.refusal.clear();
                Ok(s)
            }
            None => Err(e),
        }
    }

    /// A committed segment with a free entry that `me` claims (or, with
    /// `share`, any such segment).
    fn find_segment(&self, me: u8, share: bool) -> Option<u32> {
        let end = self.high_water();
        (0..end).find(|&s| {
            let head = self.lists.head(s);
            if head.closed() || head.free() == 0 {
                return false;
            }
            let owner = &self.owner[s as usize];
            share
                || owner.load(Relaxed) == me
                || owner.compare_exchange(0, me, Relaxed, Relaxed).is_ok()
        })
    }

    /// Segments at or above this have never been committed (clamped, so a
    /// corrupted counter cannot index out of bounds).
    #[inline]
    fn high_water(&self) -> u32 {
        self.high_water.load(Acquire).min(SEGMENTS)
    }

    /// Commits the lowest segment that is not committed. Under `grow`.
    fn commit_segment(&self, w: &Window) -> Result<u32, Error> {
        let segment = (0..SEGMENTS)
            .find(|&s| self.state[s as usize].load(Relaxed) != COMMITTED)
            .ok_or(Error::Capacity)?;
        let state = &self.state[segment as usize];
        if state.load(Relaxed) == NEVER_COMMITTED {
            self.mem.commit_meta(segment)?;
            state.store(RELEASED, Relaxed);
        }
        self.mem.commit_entries(segment)?;
        // Metadata and check words from the bytes that outlive a sweep: the
        // generation to issue next, and whether any entry here has wrapped.
        let wrapped = if self.wrapped[segment as usize].load(Relaxed) != 0 { Meta::WRAPPED } else { 0 };
        for i in segment << SEGMENT_SHIFT..(segment + 1) << SEGMENT_SHIFT {
            let g = self.mem.generation(i).load(Relaxed);
            self.meta(i).store(Meta((u16::from(g) << 8) | wrapped | Meta::FREE).0, Relaxed);
            self.entry(i).check.store(self.free_check(i, g), Relaxed);
        }
        self.high_water.fetch_max(segment + 1, Release);
        // Its Release store of the head publishes the words above.
        self.lists.open(&self.mem, segment, w);
        state.store(COMMITTED, Relaxed);
        self.committed.fetch_add(1, Relaxed);
        Ok(segment)
    }

    /// Frees an entry allocated by [`Table::alloc`].
    pub fn free(&self, handle: Handle) -> Result<(), Error> {
        let handle = handle.raw();
        protect::ensure_read();
        let (index, g) = self.split(handle);
        if index == 0 || index >= LAST_INDEX {
            return Err(Error::InvalidHandle);
        }
        let meta = self.meta(index);
        let mut m = Meta(meta.load(Acquire));
        if !m.is_live(g) {
            return Err(self.refusal(index, m, g));
        }
        let w = Window::open();
        let mut spins = 0;
        loop {
            if m.pinned() || m.claimed() {
                // A `set` of this very handle is writing its entry, or a
                // `free_many` has claimed it: the caller is freeing a handle
                // it is also using. Wait for the few stores they have left.
                spin_wait(&mut spins);
                m = Meta(meta.load(Acquire));
            } else {
                // AcqRel: exactly one of several freers wins, and the winner
                // sees everything the entry's users did before.
                match meta.compare_exchange_weak(m.0, m.freed().0, AcqRel, Acquire) {
                    Ok(_) => {
                        self.retire(index, m.freed().generation(), &w);
                        break;
                    }
                    Err(seen) => m = Meta(seen),
                }
            }
            if !m.is_live(g) {
                return Err(self.refusal(index, m, g));
            }
        }
        // The calling thread's stack first: no second RMW.
        if self.cached_give(index, &w) {
            return Ok(());
        }
        self.lists.push(&self.mem, index, &w);
        self.refusal.clear_after_give_back();
        Ok(())
    }

    /// After the metadata of `index` says free with generation `next`: the
    /// check word of the next generation, which no handle has, and an
    /// end-of-list link for an entrypoint; from here on the freed handle
    /// answers nowhere. Both before the push (SeqCst) that makes the entry
    /// reusable (see `read_entry`), or before it goes on a thread's stack.
    /// (The generation byte that outlives a sweep is written by the sweep,
    /// from the metadata, just before it releases the segment: one cold
    /// store less per free.) Shared by `free` and `free_many`.
    #[inline(always)]
    fn retire(&self, index: u32, next: u8, _w: &Window) {
        if next == 0 {
            self.wrapped[(index >> SEGMENT_SHIFT) as usize].store(1, Relaxed);
        }
        self.entry(index).check.store(self.free_check(index, next), Release);
        // And no code address either, even before the entry is linked on a
        // freelist (on a thread's stack it may never be): a forged handle of
        // the next generation must not find the old entrypoint.
        self.entry(index).entrypoint.store(FREE_TAG, Release);
    }

    /// Replaces a live handle's entrypoint (tier-up); the signature is kept.
    pub fn set(&self, handle: Handle, entrypoint: u64) -> Result<(), Error> {
        let handle = handle.raw();
        self.check_code(entrypoint)?;
        // The window also grants read access.
        let w = Window::open();
        self.set_in_window(handle, entrypoint, &w)
    }

    /// Sets many handles in one write window. Every handle and entrypoint is
    /// checked before anything is written; on a bad one nothing changes.
    pub fn set_many(&self, handles: &[Handle], entrypoints: &[u64]) -> Result<(), Error> {
        if handles.len() != entrypoints.len() {
            return Err(Error::InvalidArgument);
        }
        for &e in entrypoints {
            self.check_code(e)?;
        }
        protect::ensure_read();
        for &h in handles {
            let (index, g) = self.split(h.raw());
            if index == 0 || index >= LAST_INDEX {
                return Err(Error::InvalidHandle);
            }
            let m = Meta(self.meta(index).load(Acquire));
            if !m.is_live(g) {
                return Err(set_refusal(m, g));
            }
        }
        let w = Window::open();
        handles.iter().zip(entrypoints).try_for_each(|(&h, &e)| self.set_in_window(h.raw(), e, &w))
    }

    fn set_in_window(&self, handle: u32, entrypoint: u64, _w: &Window) -> Result<(), Error> {
        let (index, g) = self.split(handle);
        if index == 0 || index >= LAST_INDEX {
            return Err(Error::InvalidHandle);
        }
        let meta = self.meta(index);
        let mut m = Meta(meta.load(Acquire));
        let mut spins = 0;
        // Pin the entry (metadata CAS) so that it cannot be freed, and its
        // segment released, while we store: a store to a released page would
        // fault. Readers ignore the pin.
        loop {
            if !m.is_live(g) {
                return Err(set_refusal(m, g));
            }
            if m.pinned() || m.claimed() {
                spin_wait(&mut spins); // another set, or a free_many, of this handle
                m = Meta(meta.load(Acquire));
                continue;
            }
            match meta.compare_exchange_weak(m.0, m.0 | Meta::PINNED, Acquire, Acquire) {
                Ok(_) => break,
                Err(seen) => m = Meta(seen),
            }
        }
        self.entry(index).entrypoint.store(entrypoint, Release);
        // Release: the new entrypoint is visible before the pin is lifted.
        meta.store(m.0, Release);
        Ok(())
    }

    /// The one handle of a native (host) function, created on first use.
    /// Native handles cannot be freed or set and live as long as the table.
    /// The same as [`Table::native_handle_typed`] with [`NATIVE_SIGNATURE`].
    pub fn native_handle(&self, address: u64) -> Result<Handle, Error> {
        self.native_handle_typed(address, NATIVE_SIGNATURE)
    }

    /// The one handle of the pair (`address`, `signature`), created on first
    /// use: a call through it checks `signature` like a call through an
    /// allocated handle. The same pair always gives the same handle; the
    /// same address with another signature gives another handle. Native
    /// handles cannot be freed or set and live as long as the table.
    pub fn native_handle_typed(&self, address: u64, signature: u64) -> Result<Handle, Error> {
        if address == 0 || !is_user_address(address) || signature > SIGNATURE_MASK {
            return Err(Error::InvalidArgument);
        }
        // The map is protected memory: lookups need read access, and
        // creating a handle runs inside the map's one write window.
        protect::ensure_read();
        self.natives
            .get_or_create(Key { address, signature }, |w| {
                let index = self.take(w)?;
                Ok(self.publish(index, address, signature, Meta::NATIVE, w))
            })
            .map(Handle::from_raw)
    }

    /// Releases every segment whose entries are all free, if at least
    /// `threshold` entries (never fewer than one segment's worth) are free.
    /// Returns the number of segments released.
    pub fn sweep(&self, threshold: usize) -> usize {
        let threshold = threshold.max(ENTRIES_PER_SEGMENT as usize);
        protect::ensure_read();
        let end = self.high_water();
        let cached = self.caches.cached();
        let free: usize = (0..end)
            .map(|s| self.lists.head(s))
            .filter(|h| !h.closed())
            .map(|h| h.free() as usize)
            .sum::<usize>()
            + cached;
        if free < threshold {
            return 0;
        }
        let mut released = 0;
        // One window for the whole sweep, opened at the first candidate, or
        // first of all to take the threads' stacks back: an entry on a stack
        // keeps its segment.
        let mut window: Option<Window> = None;
        if cached > 0 {
            self.drain_caches(window.get_or_insert_with(Window::open));
        }
        let candidate = |s: u32| {
            let head = self.lists.head(s);
            !head.closed() && head.free() == segment_capacity(s)
        };
        let mut s = 0;
        while s < end {
            if !candidate(s) {
                s += 1;
                continue;
            }
            let w = window.get_or_insert_with(Window::open);
            // Under the growth lock (no commit picks a segment between its
            // close and its release), close a run of consecutive empty
            // segments, then release the run with a few system calls.
            let _g = self.grow.lock();
            let first = s;
            while s < end && candidate(s) && self.lists.close_if_empty(s, w) {
                self.owner[s as usize].store(0, Relaxed);
                s += 1;
            }
            let count = s - first;
            if count == 0 {
                s += 1; // taken from under us: not empty any more
                continue;
            }
            // The generations to issue next outlive the metadata, which the
            // release discards (closed segments: nobody else writes them).
            for i in first << SEGMENT_SHIFT..s << SEGMENT_SHIFT {
                self.mem.generation(i).store(Meta(self.meta(i).load(Relaxed)).generation(), Relaxed);
            }
            self.mem.release_entries(first, count);
            for r in first..s {
                self.state[r as usize].store(RELEASED, Relaxed);
            }
            self.committed.fetch_sub(count as usize, Relaxed);
            released += count as usize;
        }
        released
    }

    /// Counters of the table.
    pub fn stats(&self) -> Stats {
        protect::ensure_read();
        // No stacks are taken back while we count (a concurrent sweep moves
        // entries from stacks to freelists): exact while nobody allocates
        // or frees, even with a sweep running.
        let _no_taker = self.caches.lock();
        let end = self.high_water();
        let (mut taken, mut free) = (0usize, 0usize);
        for s in 0..end {
            let head = self.lists.head(s);
            if !head.closed() {
                free += head.free() as usize;
                taken += (segment_capacity(s) - head.free()) as usize;
            }
        }
        let native = self.natives.len();
        // Entries on threads' stacks are free, though on no freelist.
        let cached = self.caches.cached();
        let (taken, free) = (taken.saturating_sub(cached), free + cached);
        let committed = self.committed.load(Relaxed);
        Stats {
            capacity: CAPACITY,
            committed_segments: committed,
            committed_bytes: committed * (ENTRIES_PER_SEGMENT as usize) * ENTRY_SIZE,
            live: taken.saturating_sub(native),
            free,
            native,
        }
    }

    /// Registers an executable region; see [`Table::alloc`] and `NotCode`.
    pub fn code_region_add(&self, start: u64, len: u64) -> Result<(), Error> {
        self.regions.add(start, len)
    }

    /// Unregisters a region registered with exactly these bounds.
    pub fn code_region_remove(&self, start: u64, len: u64) -> Result<(), Error> {
        self.regions.remove(start, len)
    }

    /// Number of registered code regions.
    pub fn code_region_count(&self) -> usize {
        self.regions.count()
    }

    /// Takes every lock of the table; they are held until the returned value
    /// is dropped. The fork handlers hold them across `fork`, so that the
    /// child never inherits a lock held by a thread it does not have.
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn lock_all(&self) -> TableLocks<'_> {
        // Lock order: natives, then drain (creating a native handle may take
        // the threads' stacks back before refusing), then grow (it commits a
        // segment while holding the map's lock), then regions (never held
        // with another).
        // The batch lock comes first: a batch may commit a segment (grow).
        TableLocks {
            _batch: self.batch.write(),
            _natives: self.natives.lock(),
            _drain: self.caches.lock(),
            _grow: self.grow.lock(),
            _regions: self.regions.lock(),
        }
    }

    /// Run in a fork child, whose one thread is the only one left, while
    /// the fork handlers hold every lock (so no sweep, commit, native
    /// creation or region change was in flight). Settles each lock-free
    /// operation that another thread of the parent was in the middle of, so
    /// that it is either done or not done, and nothing waits for a thread
    /// that does not exist:
    ///
    /// - a `set` between its pin and its unpin: the pin is lifted (the entry
    ///   holds the old or the new entrypoint, both whole);
    /// - a `free` after its metadata CAS: the generation byte is brought up
    ///   to date and the entry goes back on its freelist (done);
    /// - an `alloc` after its pop but before it published the entry: the
    ///   entry goes back on its freelist (not done);
    /// - a push between writing its link and its CAS: as for `free`.
    ///
    /// Costs one pass over the metadata of the committed segments.
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn repair_after_fork(&self) {
        // First, in the alias mode, a table of the child's own (it inherited
        // no mapping of the committed entries). Its entries are copied after
        // the fork, while the parent's threads go on, so they may be newer
        // than the child's metadata and freelist heads (which fork copied at
        // once): the metadata is the truth, the lists are rebuilt from it,
        // and an entry the parent freed in between is freed here too.
        #[cfg(not(loom))]
        let copied_late = {
            let is_alias = protect::alias();
            self.mem.rebuild_after_fork(|s| self.state[s as usize].load(Relaxed) == COMMITTED);
            is_alias
        };
        #[cfg(loom)]
        let copied_late = false;
        protect::ensure_read();
        let w = Window::open();
        // The parent's threads' stacks: their entries are free in the
        // metadata and on no list, so the pass below lists them.
        self.caches.clear(&w);
        for s in 0..self.high_water() {
            if self.lists.head(s).closed() {
                continue;
            }
            let mut listed = [0u64; ENTRIES_PER_SEGMENT as usize / 64 + 1];
            if copied_late {
                self.lists.reset_open(s, &w);
            } else {
                self.lists.for_each_listed(&self.mem, s, |local| listed[local as usize / 64] |= 1 << (local % 64));
            }
            let base = s << SEGMENT_SHIFT;
            for local in 0..ENTRIES_PER_SEGMENT {
                let index = base + local;
                if index == 0 || index >= LAST_INDEX {
                    continue;
                }
                let meta = self.meta(index);
                let mut m = Meta(meta.load(Relaxed));
                if m.pinned() || m.claimed() {
                    m = Meta(m.0 & !(Meta::PINNED | Meta::CLAIMED));
                    meta.store(m.0, Relaxed);
                }
                if copied_late && m.state() == Meta::LIVE {
                    let check = self.entry(index).check.load(Relaxed);
                    let link = self.entry(index).entrypoint.load(Relaxed) & FREE_TAG_MASK == FREE_TAG;
                    if (check >> 56) as u8 != m.generation().wrapping_add(self.salt) || link {
                        // Freed by the parent after the fork: freed here too.
                        m = m.freed();
                        meta.store(m.0, Relaxed);
                        if m.generation() == 0 {
                            self.wrapped[s as usize].store(1, Relaxed);
                        }
                    }
                }
                self.mem.generation(index).store(m.generation(), Relaxed);
                if m.state() == Meta::FREE {
                    // A free caught before its check word, or an alloc after
                    // it: a free entry answers to no handle.
                    self.entry(index).check.store(self.free_check(index, m.generation()), Relaxed);
                    if listed[local as usize / 64] & (1 << (local % 64)) == 0 {
                        self.lists.push(&self.mem, index, &w);
                    }
                }
            }
        }
        self.refusal.clear();
    }
}

/// Every lock of a table, held together (see [`Table::lock_all`]).
#[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
pub(crate) struct TableLocks<'a> {
    _batch: RwLockWriteGuard<'a, ()>,
    _natives: MutexGuard<'a, crate::native::Arrays>,
    _drain: MutexGuard<'a, ()>,
    _grow: MutexGuard<'a, ()>,
    _regions: MutexGuard<'a, Vec<(u64, u64)>>,
}

/// Whether a masked handle lies beyond the reserved table: never in a real
/// table (2^24 entries are reserved), only in the small loom tables.
#[inline(always)]
fn beyond_table(handle: u32) -> bool {
    #[cfg(loom)]
    {
        handle & INDEX_MASK >= TABLE_ENTRIES
    }
    #[cfg(not(loom))]
    {
        const _: () = assert!(TABLE_ENTRIES == INDEX_MASK + 1);
        let _ = handle;
        false
    }
}

/// Why `set` refuses a handle that is not live.
fn set_refusal(m: Meta, g: u8) -> Error {
    match m.refusal(g, None) {
        Error::NativeHandle => Error::NativeHandle,
        _ => Error::InvalidHandle,
    }
}
