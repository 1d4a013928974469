//! Allocation: taking free entries, publishing them, freeing and retiring
//! them, and growing the table by segments.
//!
//! Every thread hashes to one of [`SHARDS`] shards. A shard *claims* a
//! segment and takes entries from it until it is exhausted, so threads
//! mostly touch segment heads no other thread touches. When its segment runs
//! dry the shard claims another segment with free entries, or commits a new
//! one under the growth lock; only when neither is possible (the table is
//! full, or the OS refuses memory) does it share a segment claimed by
//! another shard, so no free entry is ever out of reach.
//!
//! In front of the shards sits the calling thread's stack of free entries
//! (`cache.rs`), and in front of everything the fast paths for the C ABI
//! (`fast.rs`): straight-line code for the common case that hands anything
//! else to the general paths here.

use super::*;

/// Which shard the calling thread allocates from.
#[inline]
pub(super) fn shard_index() -> usize {
    const _: () = assert!(SHARDS.is_power_of_two());
    if SHARDS == 1 {
        return 0;
    }
    thread_hash() >> (usize::BITS - SHARDS.trailing_zeros())
}

/// [`Table::free_check`] of the generation after `handle`'s, from the
/// handle alone (for the free paths, which have it at hand): its salted
/// generation plus one in the top byte (the index bits shifted into the low
/// 56, which the native signature sets anyway; a carry out of the top byte
/// is the wrap to 0).
#[inline(always)]
pub(super) fn next_free_check(handle: u32) -> u64 {
    ((u64::from(handle) + (1 << INDEX_BITS)) << (SIGNATURE_BITS - INDEX_BITS)) | NATIVE_SIGNATURE
}

impl Table {
    /// The check word of a free entry whose next generation is `g`
    /// (unsalted): that generation with the native signature. It matches no
    /// handle ever issued for the entry, even after its generation wrapped:
    /// an entry that was freed was never native (natives are never freed),
    /// so none of its handles carried the native signature.
    #[inline]
    pub(super) fn free_check(&self, index: u32, g: u8) -> u64 {
        check_word(join(index, g.wrapping_add(self.salt)), NATIVE_SIGNATURE)
    }

    /// Allocates an entry holding `entrypoint` and `signature` (at most 56
    /// bits: [`SIGNATURE_MASK`]).
    ///
    /// The fast path is straight-line: the argument checks, one load for the
    /// code regions, the write window (nothing without pkeys), a pop from
    /// the calling thread's stack and the three publishing stores.
    #[inline]
    pub fn alloc(&self, entrypoint: u64, signature: u64) -> Result<Handle, Error> {
        self.check_code(entrypoint)?;
        if signature > SIGNATURE_MASK {
            return Err(Error::InvalidArgument);
        }
        // One write window for the whole operation, committing a segment
        // on the way (rare) included.
        let w = Window::open();
        // The calling thread's stack first: no atomic RMW at all. Not while
        // a refusal is remembered: the refusal took every stack back, and
        // frees since then went to the freelists.
        if !self.refusal.any() {
            if let Some(index) = self.cached_take(&w) {
                return Ok(Handle::from_raw(self.publish(index, entrypoint, signature, Meta::LIVE, &w)));
            }
        }
        self.alloc_shared(entrypoint, signature, w)
    }

    /// `alloc` from the shared freelists: the thread has no stack (stacks
    /// off, no slot, a signal handler inside its own stack), or its stack
    /// and its shard's segment are empty, or a refusal is remembered.
    #[inline(never)]
    fn alloc_shared(&self, entrypoint: u64, signature: u64, w: Window) -> Result<Handle, Error> {
        // SeqCst (a plain load on x86): with the batches' counters, see
        // below. Read before the take whose failure it explains.
        let ends = self.batch_ends.load(SeqCst);
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
        drop(w);
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
    pub(super) fn wait_for_batches(&self) {
        drop(self.batch.write());
    }

    /// Writes a taken entry and makes it answer to its handle.
    #[inline(always)]
    pub(super) fn publish(&self, index: u32, entrypoint: u64, signature: u64, state: u16, _w: &Window) -> u32 {
        let entry = self.entry(index);
        let meta = self.meta(index);
        // We own the entry (popped it): nobody else writes its metadata.
        let mut m = Meta(meta.load(Relaxed));
        if m.generation().wrapping_add(self.salt) == 0 {
            m = self.skip_generation_zero(index, m);
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

    /// No handle has generation byte 0: a released page reads as zeros, and
    /// a check word of 0 must answer no handle ever issued (a lookup that
    /// read the entrypoint just before a sweep released the page, and the
    /// check word just after, would otherwise take that entrypoint). Skips
    /// to the next generation (once per 256 reuses of an entry).
    #[cold]
    #[inline(never)]
    fn skip_generation_zero(&self, index: u32, m: Meta) -> Meta {
        let m = m.freed();
        if m.generation() == 0 {
            self.mark_wrapped(index);
        }
        m
    }

    /// Notes that a generation of `index` wrapped (once per 255 frees).
    #[cold]
    #[inline(never)]
    pub(super) fn mark_wrapped(&self, index: u32) {
        self.wrapped[(index >> SEGMENT_SHIFT) as usize].store(1, Relaxed);
    }

    /// Takes a free entry for the calling thread's shard.
    #[inline]
    pub(super) fn take(&self, w: &Window) -> Result<u32, Error> {
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
    /// thread's shard with one CAS, as a run still linked through their
    /// entrypoint words (see [`Freelists::pop_run`]); or why none.
    pub(super) fn take_run(&self, want: usize, w: &Window) -> Result<Run, Error> {
        let shard = shard_index();
        let mut current = self.shards[shard].load(Relaxed);
        loop {
            if current != 0 {
                if let Some(run) = self.lists.pop_run(&self.mem, current - 1, want, w) {
                    return Ok(run);
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
    pub(super) fn refusal(&self, index: u32, m: Meta, g: u8) -> Error {
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

    /// Commits the lowest segment that is not committed. Under `grow`.
    fn commit_segment(&self, w: &Window) -> Result<u32, Error> {
        let segment = (0..self.lists.usable_segments())
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
    ///
    /// The fast path: the handle's metadata word read once, one CAS that
    /// frees it (exactly one of several freers wins), the two retiring
    /// stores, and a push on the calling thread's stack.
    #[inline]
    pub fn free(&self, handle: Handle) -> Result<(), Error> {
        let handle = handle.raw();
        protect::ensure_read();
        let (index, g) = self.split(handle);
        if index == 0 || index >= LAST_INDEX {
            return Err(Error::InvalidHandle);
        }
        let meta = self.meta(index);
        let m = Meta(meta.load(Acquire));
        // Live with the handle's generation, and neither pinned by a `set`
        // nor claimed by a `free_many`: else the careful path below.
        if m.0 & !Meta::WRAPPED == (u16::from(g) << 8) | Meta::LIVE {
            let w = Window::open();
            // AcqRel: exactly one of several freers wins, and the winner
            // sees everything the entry's users did before.
            if meta.compare_exchange(m.0, m.freed().0, AcqRel, Acquire).is_ok() {
                self.retire(index, m.freed().generation(), &w);
                self.give_freed(index, &w);
                return Ok(());
            }
        }
        self.free_contended(index, g)
    }

    /// `free` when the entry was not plainly live for the handle: refused,
    /// or pinned or claimed for a moment, or a racing free won the CAS.
    #[inline(never)]
    fn free_contended(&self, index: u32, g: u8) -> Result<(), Error> {
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
                // AcqRel: as in `free`.
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
        self.give_freed(index, &w);
        Ok(())
    }

    /// Makes a retired entry reusable: on the calling thread's stack (no
    /// second RMW), else on its freelist.
    #[inline(always)]
    fn give_freed(&self, index: u32, w: &Window) {
        if !self.cached_give(index, w) {
            self.push_freed(index, w);
        }
    }

    #[inline(never)]
    fn push_freed(&self, index: u32, w: &Window) {
        self.lists.push(&self.mem, index, w);
        self.refusal.clear_after_give_back();
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
    pub(super) fn retire(&self, index: u32, next: u8, _w: &Window) {
        if next == 0 {
            self.mark_wrapped(index);
        }
        self.entry(index).check.store(self.free_check(index, next), Release);
        // And no code address either, even before the entry is linked on a
        // freelist (on a thread's stack it may never be): a forged handle of
        // the next generation must not find the old entrypoint.
        self.entry(index).entrypoint.store(FREE_TAG, Release);
    }
}
