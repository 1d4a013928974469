//! A MODEL of V8's WasmCodePointerTable algorithm, written for these
//! benchmarks from V8's sources (src/wasm/wasm-code-pointer-table{.h,-inl.h,.cc},
//! src/common/segmented-table.h). It is not V8's code; it follows what that
//! code does:
//!
//! - one freelist head `{next: u32, length: u32}`, taken with a CAS to a retry
//!   marker; other threads spin while the marker is there;
//! - new segments (4096 entries, freelist links written into every entry)
//!   under a mutex, merged into the freelist with a CAS loop;
//! - free: a CAS loop linking the entry in front of the head;
//! - sweep: unlink the whole freelist (allocators see an empty table), copy it
//!   to a vector, sort it, release segments whose 4096 entries are all in it,
//!   write the rest back as a list and link it back in;
//! - native handles: a `BTreeMap` under a mutex.
//!
//! Entries are 16 bytes, as in wcpt, so both touch the same memory. There
//! are no generations (V8 has none).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Mutex;

const SEGMENT: u32 = 4096;
const ENTRIES: usize = 1 << 24;
const RETRY_MARKER: u64 = u64::MAX;

#[repr(C, align(16))]
pub struct Entry {
    entrypoint: AtomicU64,
    signature: AtomicU64,
}

fn head(next: u32, length: u32) -> u64 {
    u64::from(next) | (u64::from(length) << 32)
}
fn next_of(h: u64) -> u32 {
    h as u32
}
fn len_of(h: u64) -> u32 {
    (h >> 32) as u32
}

pub struct V8Table {
    base: *mut Entry,
    freelist_head: AtomicU64,
    /// Segment allocation: the next never-used segment and the freed ones.
    segments: Mutex<(u32, Vec<u32>)>,
    natives: Mutex<BTreeMap<u64, u32>>,
}

// SAFETY: the entries are only accessed through atomics.
unsafe impl Send for V8Table {}
// SAFETY: as above.
unsafe impl Sync for V8Table {}

impl Drop for V8Table {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length.
        unsafe { libc::munmap(self.base.cast(), ENTRIES * 16) };
    }
}

impl Default for V8Table {
    fn default() -> Self {
        Self::new()
    }
}

impl V8Table {
    pub fn new() -> V8Table {
        // SAFETY: a fresh anonymous mapping (reserved, committed on touch).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ENTRIES * 16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        V8Table {
            base: p.cast(),
            freelist_head: AtomicU64::new(head(0, 0)),
            segments: Mutex::new((0, Vec::new())),
            natives: Mutex::new(BTreeMap::new()),
        }
    }

    #[inline(always)]
    fn at(&self, index: u32) -> &Entry {
        // SAFETY: index < 2^24, inside the mapping.
        unsafe { &*self.base.add(index as usize) }
    }

    #[inline(always)]
    pub fn get(&self, index: u32) -> u64 {
        self.at(index).entrypoint.load(Relaxed)
    }

    #[inline(always)]
    fn read_freelist_head(&self) -> u64 {
        loop {
            let h = self.freelist_head.load(Acquire);
            if h != RETRY_MARKER {
                return h;
            }
            std::hint::spin_loop(); // V8 spins on the marker
        }
    }

    fn try_allocate_from_freelist(&self) -> Option<u32> {
        loop {
            let h = self.read_freelist_head();
            if len_of(h) == 0 {
                return None;
            }
            if self.freelist_head.compare_exchange(h, RETRY_MARKER, AcqRel, Relaxed).is_err() {
                continue;
            }
            let next = self.at(next_of(h)).entrypoint.load(Relaxed) as u32;
            self.freelist_head.store(head(next, len_of(h) - 1), Relaxed);
            return Some(next_of(h));
        }
    }

    fn link_freelist(&self, first: u32, length: u32, last: u32, scope: bool) {
        loop {
            let cur = self.read_freelist_head();
            let new = head(first, length + len_of(cur));
            let _w = WriteScope::open(scope);
            self.at(last).entrypoint.store(u64::from(next_of(cur)), Relaxed);
            if self.freelist_head.compare_exchange(cur, new, Release, Relaxed).is_ok() {
                return;
            }
        }
    }

    fn allocate_uninitialized_entry(&self, scope: bool) -> u32 {
        loop {
            if let Some(i) = self.try_allocate_from_freelist() {
                return i;
            }
            let mut seg = self.segments.lock().unwrap();
            if len_of(self.freelist_head.load(Relaxed)) != 0 {
                continue;
            }
            let s = match seg.1.pop() {
                Some(s) => s,
                None => {
                    seg.0 += 1;
                    seg.0 - 1
                }
            };
            let first = s * SEGMENT;
            let last = first + SEGMENT - 1;
            {
                let _w = WriteScope::open(scope);
                for i in first..last {
                    self.at(i).entrypoint.store(u64::from(i + 1), Relaxed);
                }
            }
            // Take the first entry, link the rest.
            self.link_freelist(first + 1, SEGMENT - 1, last, scope);
            return first;
        }
    }

    /// `AllocateAndInitializeEntry`; `scope` wraps every entry write in a
    /// pkey write scope, like V8's `WriteScope` (a no-op without pkeys).
    pub fn alloc(&self, entrypoint: u64, signature: u64, scope: bool) -> u32 {
        let i = self.allocate_uninitialized_entry(scope);
        let _w = WriteScope::open(scope);
        self.at(i).entrypoint.store(entrypoint, Relaxed);
        self.at(i).signature.store(signature, Relaxed);
        i
    }

    pub fn free(&self, index: u32, scope: bool) {
        self.link_freelist(index, 1, index, scope);
    }

    /// `SweepSegments`: returns the number of segments released.
    pub fn sweep(&self, threshold: usize) -> usize {
        let threshold = threshold.max(SEGMENT as usize);
        let initial = loop {
            let h = self.read_freelist_head();
            if (len_of(h) as usize) < threshold {
                return 0;
            }
            if self.freelist_head.compare_exchange(h, head(0, 0), AcqRel, Relaxed).is_ok() {
                break h;
            }
        };
        // FreelistToVector
        let mut entries = Vec::with_capacity(len_of(initial) as usize);
        let mut e = next_of(initial);
        for _ in 0..len_of(initial) {
            entries.push(e);
            e = self.at(e).entrypoint.load(Relaxed) as u32;
        }
        entries.sort_unstable();
        let mut kept = Vec::new();
        let mut released = 0;
        let mut i = 0;
        while i < entries.len() {
            let e = entries[i];
            let first = e / SEGMENT * SEGMENT;
            if e == first && i + SEGMENT as usize - 1 < entries.len() && entries[i + SEGMENT as usize - 1] == first + SEGMENT - 1 {
                // SAFETY: the segment lies inside the mapping and no entry of
                // it is allocated.
                unsafe { libc::madvise(self.base.add(first as usize).cast(), SEGMENT as usize * 16, libc::MADV_DONTNEED) };
                self.segments.lock().unwrap().1.push(first / SEGMENT);
                released += 1;
                i += SEGMENT as usize;
                continue;
            }
            kept.push(e);
            i += 1;
        }
        if let Some(&last) = kept.last() {
            // VectorToFreelist, then LinkFreelist.
            for w in kept.windows(2) {
                self.at(w[0]).entrypoint.store(u64::from(w[1]), Relaxed);
            }
            self.link_freelist(kept[0], kept.len() as u32, last, false);
        }
        released
    }

    /// `GetOrCreateHandleForNativeFunction`.
    pub fn native_handle(&self, address: u64) -> u32 {
        let mut map = self.natives.lock().unwrap();
        if let Some(&h) = map.get(&address) {
            return h;
        }
        let h = self.alloc(address, u64::MAX, false);
        map.insert(address, h);
        h
    }
}

/// V8's `WriteScope` around entry writes. This machine has no pkeys (the
/// benchmark reports the protected variants as not measurable), so it only
/// marks where the two WRPKRU instructions would go.
struct WriteScope;
impl WriteScope {
    #[inline(always)]
    fn open(_enabled: bool) -> WriteScope {
        WriteScope
    }
}
