//! Giving memory back: the sweep, which releases segments whose entries
//! are all free, and the counters that say what is committed and in use.

use super::*;

impl Table {
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
            !head.closed() && head.free() == self.lists.capacity(s)
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
                taken += (self.lists.capacity(s) - head.free()) as usize;
            }
        }
        let native = self.natives.len();
        // Entries on threads' stacks are free, though on no freelist.
        let cached = self.caches.cached();
        let (taken, free) = (taken.saturating_sub(cached), free + cached);
        let committed = self.committed.load(Relaxed);
        Stats {
            capacity: self.config.max_entries,
            committed_segments: committed,
            committed_bytes: committed * (ENTRIES_PER_SEGMENT as usize) * ENTRY_SIZE,
            live: taken.saturating_sub(native),
            free,
            native,
        }
    }
}
