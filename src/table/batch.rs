//! Batch calls for whole modules: `alloc_many` and `free_many`, all or
//! nothing, in one write window each.
//!
//! - `alloc_many` checks every argument, then takes the entries in runs, one
//!   CAS per run of a segment's list. A run stays linked through the
//!   entries' own freelist links, and its last entry's word records the run
//!   taken before it, so all runs form one chain (an entry taken is its own
//!   until published, and still answers to no handle: its check word is a
//!   free one). If a take fails, the chain is walked and every entry pushed
//!   back; otherwise it is walked once to publish. No heap, no second array.
//! - `free_many` checks and claims each entry in one pass (a metadata CAS
//!   that sets `CLAIMED`). A handle refused on its own (invalid, not live)
//!   lets every claim of the batch go and fails with its status; one found
//!   claimed (the same handle twice in the batch, or an overlapping batch on
//!   another thread) does the same with `DoubleFree`, unless a later handle
//!   is refused on its own (checked without claiming): nothing is freed. Once all are claimed, each is freed as `free` does. `free` and
//!   `set` wait for a claim to be settled; a batch never waits for another,
//!   so overlapping batches cannot deadlock (both may fail; neither frees a
//!   handle twice).
//! - Both hold the table's batch lock for reading; the fork handlers take it
//!   for writing, so a fork child sees a batch done or not done, never half.

use super::*;

/// The entrypoint word of a run's last entry while a batch holds it: the
/// run taken before it (its first index + 1, 0 for none, and its count),
/// tagged like a free link (a stray popper's CAS fails on the moved tag
/// anyway). The other entries keep their links ([`Run::next`]).
fn chain(previous: Option<Run>) -> u64 {
    FREE_TAG | previous.map_or(0, |r| (u64::from(r.count) << RUN_FIRST_BITS) | u64::from(r.first + 1))
}

/// The run that `chain` recorded: (first index, count).
fn unchain(word: u64) -> Option<(u32, u32)> {
    let first = (word & ((1 << RUN_FIRST_BITS) - 1)) as u32;
    let count = ((word >> RUN_FIRST_BITS) & 0xFFFF) as u32;
    first.checked_sub(1).map(|f| (f, count))
}

/// Bits of a chained run's first index + 1 (an index < 2^24, plus one).
const RUN_FIRST_BITS: u32 = INDEX_BITS + 1;
const _: () = assert!(RUN_FIRST_BITS + 16 <= 48 && ENTRIES_PER_SEGMENT <= 0xFFFF);

/// Walks the runs chained from `latest` (the last taken), entries of each
/// in taking order, calling `f` with each index; every word is read before
/// `f`, which may overwrite it.
#[inline(always)]
fn walk_runs(t: &Table, latest: Run, mut f: impl FnMut(u32)) {
    let (mut first, mut count) = (latest.first, latest.count);
    loop {
        let mut index = first;
        for _ in 1..count {
            let next = Run::next(&t.mem, index);
            f(index);
            index = next;
        }
        // Relaxed: as in `Run::next`.
        let previous = unchain(t.entry(index).entrypoint.load(Relaxed));
        f(index);
        match previous {
            Some((f, c)) => (first, count) = (f, c),
            None => return,
        }
    }
}

impl Table {
    /// Allocates `entrypoints.len()` entries at once: `out[i]` gets the
    /// handle of (`entrypoints[i]`, `signatures[i]`). All or nothing: every
    /// argument is checked first, and on any failure nothing is allocated,
    /// `out` is unchanged and the error says why (`InvalidArgument` for
    /// different lengths or a bad entrypoint or signature, `NotCode`,
    /// `Capacity`, `OutOfMemory`). One write window for the whole batch.
    pub fn alloc_many(&self, entrypoints: &[u64], signatures: &[u64], out: &mut [Handle]) -> Result<(), Error> {
        let n = entrypoints.len();
        if signatures.len() != n || out.len() != n {
            return Err(Error::InvalidArgument);
        }
        // The common case in one pass that the compiler vectorises: every
        // entrypoint canonical and every signature in range (an OR over
        // each array), and no code region to look up. Otherwise the first
        // bad argument in array order decides, as documented.
        let wide = entrypoints.iter().fold(0, |acc, &e| acc | e) | (signatures.iter().fold(0, |acc, &s| acc | s) >> 9);
        if !is_user_address(wide) || self.regions.any() {
            for (&e, &s) in entrypoints.iter().zip(signatures) {
                self.check_code(e)?;
                if s > SIGNATURE_MASK {
                    return Err(Error::InvalidArgument);
                }
            }
        }
        if n == 0 {
            return Ok(());
        }
        if n > CAPACITY {
            return Err(Error::Capacity);
        }
        // Twice at most: a batch that does not fit while another batch is in
        // flight waits for it (which may give entries back) and tries again.
        let mut second_try = false;
        let last = loop {
            let batch = self.batch.read();
            let ends = self.batch_ends.load(SeqCst);
            // SeqCst: pairs with the loads in `alloc`'s refusal path.
            self.batch_starts.fetch_add(1, SeqCst);
            let w = Window::open();
            let taken = self.take_chain(n, &w);
            if taken.is_err() {
                self.batch_ends.fetch_add(1, SeqCst);
            }
            match taken {
                Ok(last) => break (batch, w, last),
                // Another batch was in flight (every start but ours ended
                // before we began, and none began since, exactly when the
                // starts are `ends + 1`).
                Err(Error::Capacity) if !second_try && {
                    fence(SeqCst); // as in `alloc`
                    self.batch_starts.load(SeqCst) != ends + 1
                } => {
                    drop(w);
                    drop(batch);
                    self.wait_for_batches();
                    second_try = true;
                }
                Err(e) => return Err(e),
            }
        };
        // The one window of the batch (two only after a wait, above).
        let (_batch, w, last) = last;
        // The runs from the last taken to the first: publish backwards.
        let mut i = n;
        walk_runs(self, last, |index| {
            i -= 1;
            out[i] = Handle::from_raw(self.publish(index, entrypoints[i], signatures[i], Meta::LIVE, &w));
        });
        debug_assert_eq!(i, 0);
        self.batch_ends.fetch_add(1, SeqCst);
        Ok(())
    }

    /// The status of the first handle of `handles` that `free` would refuse
    /// on its own (read-only: nothing is claimed), if any.
    fn first_refused(&self, handles: &[Handle]) -> Option<Error> {
        handles.iter().find_map(|h| {
            let (index, g) = self.split(h.raw());
            if index == 0 || index >= LAST_INDEX {
                return Some(Error::InvalidHandle);
            }
            let m = Meta(self.meta(index).load(Acquire));
            (!m.is_live(g)).then(|| self.refusal(index, m, g))
        })
    }

    /// Takes `n` (> 0) entries, as runs chained through their last entries'
    /// words ([`chain`]), and returns the last run taken; or takes none
    /// (every one taken is pushed back) and returns why.
    fn take_chain(&self, n: usize, w: &Window) -> Result<Run, Error> {
        let mut last: Option<Run> = None;
        let mut taken = 0;
        while taken < n {
            match self.take_run(n - taken, w) {
                Ok(run) => {
                    // Relaxed: only this thread reads the word back.
                    self.entry(run.last).entrypoint.store(chain(last), Relaxed);
                    taken += run.count as usize;
                    last = Some(run);
                }
                Err(e) => {
                    if let Some(latest) = last {
                        walk_runs(self, latest, |index| self.lists.push(&self.mem, index, w));
                    }
                    // As in `free`: entries came back, so a refusal noted
                    // by `take` no longer holds.
                    self.refusal.clear_after_give_back();
                    return Err(e);
                }
            }
        }
        Ok(last.expect("n > 0"))
    }

    /// Frees every handle of `handles`, all or nothing: if any is invalid,
    /// stale, native, already freed, repeated in the batch or claimed by a
    /// concurrent `free_many` (a caller bug), none is freed and the error
    /// says why (`InvalidHandle`, `DoubleFree`, `NativeHandle`). One write
    /// window for the whole batch.
    pub fn free_many(&self, handles: &[Handle]) -> Result<(), Error> {
        if handles.is_empty() {
            return Ok(());
        }
        protect::ensure_read();
        let _batch = self.batch.read();
        self.batch_starts.fetch_add(1, SeqCst);
        // One pass that checks and claims (no separate checking pass): it
        // stops at the first handle refused on its own, or at the first one
        // already claimed (repeated in the batch, or in an overlapping one).
        // The window opens at the first claim, so a batch refused at its
        // first handle writes nothing, PKRU included.
        let mut window: Option<Window> = None;
        let mut claimed = 0;
        let mut failure = None;
        'claims: for h in handles {
            // The common case first: the entry plainly live with the
            // handle's generation, claimed with one CAS. (The raw split: a
            // handle of salted generation 0 matches no live entry, which
            // `publish` never makes, and goes the careful way below.)
            let raw = h.raw();
            let index = raw & INDEX_MASK;
            let g = ((raw >> INDEX_BITS) as u8).wrapping_sub(self.salt);
            if index.wrapping_sub(1) < LAST_INDEX - 1 {
                let meta = self.meta(index);
                let m = meta.load(Acquire);
                if m & !Meta::WRAPPED == (u16::from(g) << 8) | Meta::LIVE {
                    window.get_or_insert_with(Window::open);
                    // Acquire: as below.
                    if meta.compare_exchange(m, m | Meta::CLAIMED, Acquire, Acquire).is_ok() {
                        claimed += 1;
                        continue;
                    }
                }
            }
            // The careful way: why the handle is refused, or a claim that
            // waits for a `set` of it, or a CAS that lost a race.
            let (index, g) = self.split(raw);
            if index == 0 || index >= LAST_INDEX {
                failure = Some(Error::InvalidHandle);
                break;
            }
            let meta = self.meta(index);
            let mut m = Meta(meta.load(Acquire));
            let mut spins = 0;
            loop {
                if !m.is_live(g) {
                    failure = Some(self.refusal(index, m, g));
                    break 'claims;
                }
                if m.claimed() {
                    // Claimed by this batch (the handle twice) or by an
                    // overlapping one: a double free, unless a handle after
                    // it is refused on its own (its status comes first).
                    failure = Some(self.first_refused(&handles[claimed + 1..]).unwrap_or(Error::DoubleFree));
                    break 'claims;
                }
                if m.pinned() {
                    spin_wait(&mut spins); // a set of this handle: one store left
                    m = Meta(meta.load(Acquire));
                    continue;
                }
                window.get_or_insert_with(Window::open);
                // Acquire: the winner sees everything the entry's users did.
                match meta.compare_exchange_weak(m.0, m.0 | Meta::CLAIMED, Acquire, Acquire) {
                    Ok(_) => break,
                    Err(seen) => m = Meta(seen),
                }
            }
            claimed += 1;
        }
        if let Some(e) = failure {
            for h in &handles[..claimed] {
                let (index, _) = self.split(h.raw());
                // Release: pairs with the Acquire of whoever waits on it.
                self.meta(index).fetch_and(!Meta::CLAIMED, Release);
            }
            self.batch_ends.fetch_add(1, SeqCst);
            return Err(e);
        }
        // Every handle was claimed, so the window is open already.
        let w = window.unwrap_or_else(Window::open);
        // Free each as `free` does, linking runs of entries of one segment
        // into a chain that goes back with one CAS.
        let mut run: Option<(u32, u32, u32, u32)> = None; // segment, top, bottom, count
        for h in handles {
            let raw = h.raw();
            let index = raw & INDEX_MASK;
            let meta = self.meta(index);
            // Ours: `free`, `set` and other batches leave a claimed word alone.
            let m = meta.load(Relaxed);
            // `Meta::freed`: the generation plus one (dropping the state and
            // the claim), and the wrapped flag kept, or set if it wraps.
            let mut freed = Meta((m & (0xFF00 | Meta::WRAPPED)).wrapping_add(1 << 8));
            if freed.generation() == 0 {
                freed = Meta(freed.0 | Meta::WRAPPED);
                self.mark_wrapped(index);
            }
            debug_assert_eq!(freed, Meta(m).freed());
            // Release: a thread that waited on the claim sees the entry's
            // last contents before it sees it free.
            meta.store(freed.0, Release);
            // `retire`: first the check word of the next generation (from
            // the handle, as in `free_fast`), then the entrypoint word: the
            // link to the entry freed before it in this segment's run, or,
            // for a run's first entry (linked by `push_chain`), the free tag,
            // so that no forged handle finds the old entrypoint meanwhile.
            let entry = self.entry(index);
            let check = next_free_check(raw);
            debug_assert_eq!(check, self.free_check(index, freed.generation()));
            entry.check.store(check, Release);
            let segment = index >> SEGMENT_SHIFT;
            let local = index & (ENTRIES_PER_SEGMENT - 1);
            run = match run {
                Some((s, top, bottom, count)) if s == segment => {
                    // Release: as a push's link (after the check word).
                    entry.entrypoint.store(Freelists::link_to(top), Release);
                    Some((s, local, bottom, count + 1))
                }
                other => {
                    entry.entrypoint.store(FREE_TAG, Release);
                    if let Some((s, top, bottom, count)) = other {
                        self.lists.push_chain(&self.mem, s, top, bottom, count, &w);
                    }
                    Some((segment, local, local, 1))
                }
            };
        }
        if let Some((s, top, bottom, count)) = run {
            self.lists.push_chain(&self.mem, s, top, bottom, count, &w);
        }
        self.refusal.clear_after_give_back();
        self.batch_ends.fetch_add(1, SeqCst);
        Ok(())
    }
}
