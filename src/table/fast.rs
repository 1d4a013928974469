//! The C ABI's fast paths for `wcpt_alloc` and `wcpt_free`.
//!
//! Each is straight-line code for the common case of one thread: the table
//! needs no pkeys window and has thread stacks (fixed when the table is
//! created, since protection does not change while a table lives; the C
//! ABI tests it once, with the table's existence), the arguments are plainly good, and the calling thread's stack
//! has an entry to give (alloc) or room for one (free). Anything else
//! returns `None` having changed nothing, and the caller takes the general
//! path ([`Table::alloc`], [`Table::free`]), which also says why a call is
//! refused.
//!
//! Nothing on them calls a function: every rare case (a generation that
//! would wrap or reach the skipped 0, a stack empty or full, a thread
//! without its first-choice slot) is left to the general path, so the
//! compiler needs no stack frame, and the general path is a tail call.

use super::cache::CAP;
use super::*;

impl Table {
    /// Whether [`Table::alloc_fast`] and [`Table::free_fast`] may be
    /// called: the thread stacks are on and no pkeys protect the table.
    /// Fixed for the table's life.
    #[cfg_attr(not(any(loom, feature = "capi")), allow(dead_code))]
    pub(crate) fn fast_paths(&self) -> bool {
        self.fast
    }

    /// `alloc`'s common case: the popped entry published, its handle
    /// returned. The pop, the publishing stores and the metadata store are
    /// exactly those of [`Table::alloc`] with an entry on the stack.
    ///
    /// # Safety
    /// [`Table::fast_paths`] is true (else a stack might be used without
    /// the barriers that let a taker empty it, or written without a pkeys
    /// window).
    #[inline(always)]
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
    pub(crate) unsafe fn alloc_fast(&self, entrypoint: u64, signature: u64) -> Option<u32> {
        debug_assert!(self.fast);
        if !is_user_address(entrypoint) || signature > SIGNATURE_MASK || self.regions.any() {
            return None;
        }
        // `fast`: no pkeys, so no window to open.
        let w = Window::unprotected();
        let c = self.enter_own(&w)?;
        let n = c.len();
        // The top entry, unless its next generation is the skipped 0 (once
        // in 256 reuses: `publish` skips it on the general path).
        let top = if n.wrapping_sub(1) < CAP as u32 { c.peek(n) } else { None };
        let Some(index) = top else {
            c.leave();
            return None;
        };
        let m = Meta(self.meta(index).load(Relaxed));
        let g = m.generation().wrapping_add(self.salt);
        if g == 0 {
            c.leave();
            return None;
        }
        c.drop_top(n);
        c.leave();
        // Ours (popped): nobody else writes its metadata.
        let handle = join(index, g);
        let entry = self.entry(index);
        // The three Release stores of `publish`, in its order.
        entry.entrypoint.store(entrypoint, Release);
        entry.check.store(check_word(handle, signature), Release);
        self.meta(index).store(m.with_state(Meta::LIVE).0, Release);
        Some(handle)
    }

    /// `free`'s common case: the handle's entry plainly live with its
    /// generation, the calling thread's stack with room. The metadata CAS
    /// (one winner among racing freers) and the retiring stores are those of
    /// [`Table::free`], made inside the stack, which then takes the entry.
    ///
    /// # Safety
    /// As for [`Table::alloc_fast`].
    #[inline(always)]
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))]
    pub(crate) unsafe fn free_fast(&self, handle: u32) -> Option<()> {
        debug_assert!(self.fast);
        // The raw split, without `split`'s test of generation byte 0: no
        // entry is live with salted generation 0 (`publish` skips it), so
        // the metadata compare below refuses such a handle anyway.
        let index = handle & INDEX_MASK;
        let g = ((handle >> INDEX_BITS) as u8).wrapping_sub(self.salt);
        // Index 1..LAST_INDEX.
        if index.wrapping_sub(1) >= LAST_INDEX - 1 {
            return None;
        }
        let meta = self.meta(index);
        let m = Meta(meta.load(Acquire));
        // Live with the handle's generation, and a next generation that
        // does not wrap (the general path marks the segment when one does):
        // generation 255 is the top byte of the word.
        if m.0 & !Meta::WRAPPED != (u16::from(g) << 8) | Meta::LIVE || m.0 >= 0xFF00 {
            return None;
        }
        let w = Window::unprotected();
        let c = self.enter_own(&w)?;
        let n = c.len();
        // The refusal is read inside the stack, as in `cached_give`.
        let freed = Meta(m.0 + (1 << 8) - Meta::LIVE);
        debug_assert_eq!(freed.0, m.freed().0);
        // AcqRel: as in `free`.
        if n >= CAP as u32 || self.refusal.any() || meta.compare_exchange(m.0, freed.0, AcqRel, Acquire).is_err() {
            c.leave();
            return None;
        }
        // `retire`'s two stores (the next generation is not 0: no wrap).
        let entry = self.entry(index);
        let check = next_free_check(handle);
        debug_assert_eq!(check, self.free_check(index, g.wrapping_add(1)));
        entry.check.store(check, Release);
        entry.entrypoint.store(FREE_TAG, Release);
        c.push(n, index);
        c.leave();
        Some(())
    }
}
