//! The table's memory: one reservation for every entry and one for every
//! metadata word, committed and released a segment at a time.
//!
//! The regions are reserved `PROT_READ` with `MAP_NORESERVE`: a read of a
//! never-committed or released page finds the shared zero page instead of
//! faulting, so any masked `u32` can be looked up, and a read-only private
//! mapping is not charged against the commit limit. Committing a segment makes
//! it writable (tagged with the protection key, if any): this is where the OS
//! may refuse memory (`RLIMIT_DATA`, strict overcommit).
//!
//! Releasing a segment drops the pages of its entries (which become
//! read-only again) and of its metadata words (which stay writable: a CAS of
//! a thread that read a live word just before the release must not fault; a
//! dropped page reads as zero, a free word, and is never CASed from zero).
//! Only the third region, one generation byte per entry, is never released:
//! it is what keeps a handle freed before a sweep dead after the segment is
//! committed again, and it is the floor of what a sweep keeps (1 byte per
//! entry ever committed).
//!
//! The table's other control state (freelist heads, segment states, the
//! native map's arrays) lives in [`MappedArray`]s: small mappings that are
//! committed at once, tagged with the protection key like the regions above,
//! so that a stray write cannot corrupt them either.

use crate::handle::{Error, ENTRIES_PER_SEGMENT, TABLE_ENTRIES};
use crate::sync::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, CachePadded};

/// Types whose all-zero bit pattern is a valid value, equal to `zeroed()`.
///
/// # Safety
/// Implementors must guarantee that the all-zero bit pattern is a valid
/// value of the type (a freshly mapped page holds one in every slot).
pub(crate) unsafe trait Zeroed: Sized {
    /// The value whose bits are all zero (what the boxed arrays of loom
    /// models are filled with; mapped arrays get it from the kernel).
    #[cfg_attr(not(loom), allow(dead_code))]
    fn zeroed() -> Self;
}

macro_rules! zeroed_atomic {
    ($($t:ty),*) => {$(
        // SAFETY: an atomic integer has the same representation as its
        // integer, for which all-zero is 0.
        unsafe impl Zeroed for $t {
            fn zeroed() -> Self {
                <$t>::new(0)
            }
        }
    )*};
}
zeroed_atomic!(AtomicU8, AtomicU32, AtomicU64);

// SAFETY: CachePadded is a transparent wrapper plus alignment padding, which
// holds no value.
unsafe impl<T: Zeroed> Zeroed for CachePadded<T> {
    fn zeroed() -> Self {
        CachePadded(T::zeroed())
    }
}

/// One table entry, as JIT code sees it.
#[repr(C, align(16))]
pub struct Entry {
    /// The entrypoint (offset 0), or a free entry's tagged link.
    pub(crate) entrypoint: AtomicU64,
    /// The check word (offset 8): `generation << 56 | signature`.
    pub(crate) check: AtomicU64,
}


#[cfg(not(loom))]
pub(crate) use mmap::{Memory, MappedArray};

#[cfg(not(loom))]
mod mmap {
    use super::*;
    use std::ptr::NonNull;

    pub(crate) struct Memory {
        entries: NonNull<Entry>,
        meta: NonNull<AtomicU16>,
        gens: NonNull<AtomicU8>,
    }

    // SAFETY: the regions are process memory accessed only through atomics.
    unsafe impl Send for Memory {}
    // SAFETY: as above; every shared access is atomic.
    unsafe impl Sync for Memory {}

    const ENTRY_BYTES: usize = TABLE_ENTRIES as usize * 16;
    const META_SEGMENT_BYTES: usize = ENTRIES_PER_SEGMENT as usize * 2;
    const ENTRY_SEGMENT_BYTES: usize = ENTRIES_PER_SEGMENT as usize * 16;
    const META_BYTES: usize = TABLE_ENTRIES as usize * 2;
    const GEN_BYTES: usize = TABLE_ENTRIES as usize;
    const GEN_SEGMENT_BYTES: usize = ENTRIES_PER_SEGMENT as usize;

    fn reserve(len: usize) -> Result<NonNull<u8>, Error> {
        // SAFETY: an anonymous mapping at an address of the kernel's choice
        // touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::OutOfMemory);
        }
        Ok(NonNull::new(p.cast()).expect("mmap never returns null on success"))
    }

    /// Changes the protection of `[p, p+len)`, with the table's key when
    /// making it writable and key 0 otherwise.
    fn protect(p: *mut u8, len: usize, prot: i32) -> Result<(), Error> {
        let rc = match crate::protect::key() {
            Some(k) => {
                let key = if prot & libc::PROT_WRITE != 0 { k } else { 0 };
                // SAFETY: `p..p+len` lies inside a reservation this Memory owns.
                unsafe { libc::syscall(libc::SYS_pkey_mprotect, p, len, prot, key) as i32 }
            }
            // SAFETY: as above.
            None => unsafe { libc::mprotect(p.cast(), len, prot) },
        };
        if rc == 0 {
            Ok(())
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM) {
            Err(Error::OutOfMemory)
        } else {
            Err(Error::Protection)
        }
    }

    impl Memory {
        pub(crate) fn reserve() -> Result<Memory, Error> {
            let entries = reserve(ENTRY_BYTES)?;
            let meta = reserve(META_BYTES);
            let gens = reserve(GEN_BYTES);
            match (meta, gens) {
                (Ok(meta), Ok(gens)) => Ok(Memory { entries: entries.cast(), meta: meta.cast(), gens: gens.cast() }),
                (meta, gens) => {
                    // SAFETY: each region was just mapped with its length.
                    unsafe {
                        libc::munmap(entries.as_ptr().cast(), ENTRY_BYTES);
                        if let Ok(m) = meta {
                            libc::munmap(m.as_ptr().cast(), META_BYTES);
                        }
                        if let Ok(g) = gens {
                            libc::munmap(g.as_ptr().cast(), GEN_BYTES);
                        }
                    }
                    Err(Error::OutOfMemory)
                }
            }
        }

        pub(crate) fn base(&self) -> *const Entry {
            self.entries.as_ptr()
        }

        #[inline(always)]
        pub(crate) fn entry(&self, index: u32) -> &Entry {
            debug_assert!(index < TABLE_ENTRIES);
            // SAFETY: the reservation covers TABLE_ENTRIES entries, is never
            // unmapped while `self` lives and is always readable; callers pass
            // a masked index, which is below TABLE_ENTRIES.
            unsafe { &*self.entries.as_ptr().add(index as usize) }
        }

        #[inline(always)]
        pub(crate) fn meta(&self, index: u32) -> &AtomicU16 {
            debug_assert!(index < TABLE_ENTRIES);
            // SAFETY: as for `entry`, for the metadata reservation.
            unsafe { &*self.meta.as_ptr().add(index as usize) }
        }

        #[inline(always)]
        pub(crate) fn generation(&self, index: u32) -> &AtomicU8 {
            debug_assert!(index < TABLE_ENTRIES);
            // SAFETY: as for `entry`, for the generation reservation.
            unsafe { &*self.gens.as_ptr().add(index as usize) }
        }

        /// Makes a segment's metadata and generation bytes writable (once;
        /// they are never released).
        pub(crate) fn commit_meta(&self, segment: u32) -> Result<(), Error> {
            let p = self.meta(segment * ENTRIES_PER_SEGMENT) as *const AtomicU16 as *mut u8;
            protect(p, META_SEGMENT_BYTES, libc::PROT_READ | libc::PROT_WRITE)?;
            let g = self.generation(segment * ENTRIES_PER_SEGMENT) as *const AtomicU8 as *mut u8;
            protect(g, GEN_SEGMENT_BYTES, libc::PROT_READ | libc::PROT_WRITE)
        }

        /// Makes a segment's entries writable; their pages read as zero.
        pub(crate) fn commit_entries(&self, segment: u32) -> Result<(), Error> {
            let p = self.entry(segment * ENTRIES_PER_SEGMENT) as *const Entry as *mut u8;
            protect(p, ENTRY_SEGMENT_BYTES, libc::PROT_READ | libc::PROT_WRITE)
        }

        /// Gives a segment's entry and metadata pages back to the OS.
        /// Concurrent readers see either the old contents or zero, and never
        /// fault; the metadata stays writable (see the module docs).
        pub(crate) fn release_entries(&self, segment: u32) {
            let m = self.meta(segment * ENTRIES_PER_SEGMENT) as *const AtomicU16 as *mut u8;
            // SAFETY: one segment's metadata in our reservation; every entry
            // of the segment is free (the caller closed it), so the words
            // read back as zero (free) is what they would say anyway, up to
            // the generation, which the generation bytes keep.
            unsafe { libc::madvise(m.cast(), META_SEGMENT_BYTES, libc::MADV_DONTNEED) };
            let p = self.entry(segment * ENTRIES_PER_SEGMENT) as *const Entry as *mut u8;
            // SAFETY: the range is one segment of our reservation, and no
            // entry in it is allocated (the caller closed the segment).
            unsafe { libc::madvise(p.cast(), ENTRY_SEGMENT_BYTES, libc::MADV_DONTNEED) };
            // Read-only again: uncharges the commit and makes stray writes
            // fault. It cannot fail for lack of memory in a way that matters:
            // the pages are already gone, and a failure leaves them writable.
            let _ = protect(p, ENTRY_SEGMENT_BYTES, libc::PROT_READ);
        }
    }

    /// A fixed-length array of `T` in its own mapping, committed when
    /// created, initially all zeros, and never on the Rust heap. Made with
    /// `zeroed` it is tagged with the protection key: writes need a
    /// `Window` and reads need read access (`protect::ensure_read`). Made
    /// with `plain` it is ordinary memory.
    pub(crate) struct MappedArray<T: Zeroed> {
        ptr: NonNull<T>,
        len: usize,
        bytes: usize,
    }

    // SAFETY: the array owns its mapping; T's own Send/Sync decide sharing.
    unsafe impl<T: Zeroed + Send> Send for MappedArray<T> {}
    // SAFETY: as above; shared access goes through `&T`.
    unsafe impl<T: Zeroed + Sync> Sync for MappedArray<T> {}

    impl<T: Zeroed> MappedArray<T> {
        /// `len` zeroed elements tagged with the protection key, or
        /// `OutOfMemory` if the OS refuses.
        pub(crate) fn zeroed(len: usize) -> Result<Self, Error> {
            Self::map(len, true)
        }

        /// `len` zeroed elements in ordinary memory (not tagged, writable
        /// without a window), or `OutOfMemory`.
        pub(crate) fn plain(len: usize) -> Result<Self, Error> {
            Self::map(len, false)
        }

        fn map(len: usize, tagged: bool) -> Result<Self, Error> {
            let page = 4096;
            let bytes = (len.max(1).checked_mul(std::mem::size_of::<T>()).ok_or(Error::OutOfMemory)?)
                .checked_add(page - 1)
                .ok_or(Error::OutOfMemory)?
                & !(page - 1);
            debug_assert!(std::mem::align_of::<T>() <= page);
            let p = reserve(bytes)?;
            let made_writable = if tagged {
                protect(p.as_ptr(), bytes, libc::PROT_READ | libc::PROT_WRITE)
            } else {
                // SAFETY: the range was just mapped by us.
                match unsafe { libc::mprotect(p.as_ptr().cast(), bytes, libc::PROT_READ | libc::PROT_WRITE) } {
                    0 => Ok(()),
                    _ => Err(Error::OutOfMemory),
                }
            };
            if let Err(e) = made_writable {
                // SAFETY: just mapped with this length, not shared yet.
                unsafe { libc::munmap(p.as_ptr().cast(), bytes) };
                return Err(e);
            }
            Ok(MappedArray { ptr: p.cast(), len, bytes })
        }
    }

    impl<T: Zeroed> std::ops::Deref for MappedArray<T> {
        type Target = [T];
        fn deref(&self) -> &[T] {
            // SAFETY: the mapping holds `len` elements, all-zero at first
            // (valid by `Zeroed`) and changed only through `&T` (atomics);
            // it is unmapped only when `self` is dropped.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    impl<T: Zeroed> Drop for MappedArray<T> {
        fn drop(&mut self) {
            // SAFETY: mapped by `zeroed` with this length; no borrow of the
            // elements outlives `self`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
        }
    }

    impl Drop for Memory {
        fn drop(&mut self) {
            // SAFETY: both regions were mapped by `reserve` with these lengths
            // and nothing borrows them once the table is dropped.
            unsafe {
                libc::munmap(self.entries.as_ptr().cast(), ENTRY_BYTES);
                libc::munmap(self.meta.as_ptr().cast(), META_BYTES);
                libc::munmap(self.gens.as_ptr().cast(), GEN_BYTES);
            }
        }
    }
}

#[cfg(loom)]
pub(crate) use model::{Memory, MappedArray};

/// Under loom the memory is plain boxed atomics; releasing a segment stores
/// zeros, which is what a concurrent reader of a released page observes.
#[cfg(loom)]
mod model {
    use super::*;
    use crate::sync::Ordering::Relaxed;

    /// Under loom a protected array is a boxed slice of loom atomics.
    pub(crate) struct MappedArray<T>(Box<[T]>);

    impl<T: Zeroed> MappedArray<T> {
        pub(crate) fn zeroed(len: usize) -> Result<Self, Error> {
            Ok(MappedArray((0..len).map(|_| T::zeroed()).collect()))
        }
        pub(crate) fn plain(len: usize) -> Result<Self, Error> {
            Self::zeroed(len)
        }
    }

    impl<T> std::ops::Deref for MappedArray<T> {
        type Target = [T];
        fn deref(&self) -> &[T] {
            &self.0
        }
    }

    pub(crate) struct Memory {
        entries: Box<[Entry]>,
        meta: Box<[AtomicU16]>,
        gens: Box<[AtomicU8]>,
    }

    impl Memory {
        pub(crate) fn reserve() -> Result<Memory, Error> {
            let entries = (0..TABLE_ENTRIES)
                .map(|_| Entry { entrypoint: AtomicU64::new(0), check: AtomicU64::new(0) })
                .collect();
            let meta = (0..TABLE_ENTRIES).map(|_| AtomicU16::new(0)).collect();
            let gens = (0..TABLE_ENTRIES).map(|_| AtomicU8::new(0)).collect();
            Ok(Memory { entries, meta, gens })
        }
        pub(crate) fn base(&self) -> *const Entry {
            self.entries.as_ptr()
        }
        pub(crate) fn entry(&self, index: u32) -> &Entry {
            &self.entries[index as usize]
        }
        pub(crate) fn meta(&self, index: u32) -> &AtomicU16 {
            &self.meta[index as usize]
        }
        pub(crate) fn generation(&self, index: u32) -> &AtomicU8 {
            &self.gens[index as usize]
        }
        pub(crate) fn commit_meta(&self, _: u32) -> Result<(), Error> {
            Ok(())
        }
        pub(crate) fn commit_entries(&self, _: u32) -> Result<(), Error> {
            Ok(())
        }
        pub(crate) fn release_entries(&self, segment: u32) {
            for i in 0..ENTRIES_PER_SEGMENT {
                let e = self.entry(segment * ENTRIES_PER_SEGMENT + i);
                e.entrypoint.store(0, Relaxed);
                e.check.store(0, Relaxed);
                self.meta(segment * ENTRIES_PER_SEGMENT + i).store(0, Relaxed);
            }
        }
    }
}
