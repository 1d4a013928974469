//! `fork`: every lock of a table held across it, and the repair in the
//! child of whatever lock-free operation another thread of the parent was
//! in the middle of.

use super::*;

impl Table {
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
                if !self.lists.allocatable(index) {
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
