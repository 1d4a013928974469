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
//!
//! ## The alias mode (no pkeys)
//!
//! Without pkeys ([`crate::protect::alias`]), the entries live in a memfd
//! mapped twice: the public view (the table base generated code reads) is
//! `PROT_READ` everywhere, and the library reads and writes entries through
//! an alias mapping at a random address. A committed segment is the memfd's
//! range mapped shared over both; an uncommitted or released one is
//! anonymous read-only memory in both, so a read of a hole finds the zero
//! page and allocates nothing (a read of a memfd hole would allocate a
//! page). Commit preallocates the range (`fallocate`), so exhaustion is a
//! status, not a `SIGBUS`; release maps anonymous memory back over both and
//! then punches the range out of the memfd. Both mappings of committed
//! segments are `MADV_DONTFORK`: a fork child gets holes there, and the
//! child's fork handler ([`Memory::rebuild_after_fork`]) copies them into a
//! new memfd mapped at the same view addresses and a new random alias, so
//! the child never writes the parent's table. A child made without fork
//! handlers (`_Fork`) faults on its first access instead.
//!
//! The metadata, generation bytes and every `MappedArray` (tagged) have no
//! public address at all in this mode: each is an ordinary private mapping
//! at its own random address, so only code that knows (or reads) where they
//! are can write them.

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

/// The kernel's page size: 4 KiB on x86-64; 4, 16 or 64 KiB on arm64. Read
/// once; every commit, release and alias of memory is rounded to it.
#[cfg_attr(loom, allow(dead_code))] // the loom model maps no pages
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    match PAGE.load(std::sync::atomic::Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = if p > 0 && (p as usize).is_power_of_two() { p as usize } else { 4096 };
            PAGE.store(p, std::sync::atomic::Ordering::Relaxed);
            p
        }
        p => p,
    }
}

/// The largest page size the layout allows: a segment's entries (64 KiB)
/// are whole pages, so each is committed, released and aliased alone.
#[cfg_attr(loom, allow(dead_code))] // the loom model maps no pages
pub(crate) const MAX_PAGE: usize = 64 * 1024;
#[cfg(not(loom))] // loom's tables have tiny segments, and no pages
const _: () = assert!((ENTRIES_PER_SEGMENT as usize * 16) % MAX_PAGE == 0);

/// The pages that cover the bytes `[start, end)` of a page-aligned region:
/// committing a segment's metadata makes writable the pages it shares with
/// its neighbours too (harmless: their words are initialised when they are
/// committed).
#[cfg_attr(loom, allow(dead_code))] // the loom model maps no pages
pub(crate) fn pages_covering(start: usize, end: usize, page: usize) -> (usize, usize) {
    let first = start & !(page - 1);
    let last = (end + page - 1) & !(page - 1);
    (first, last - first)
}

/// The whole pages inside the bytes `[start, end)`, if any: releasing
/// segments' metadata must never drop a page a neighbour still uses.
#[cfg_attr(loom, allow(dead_code))] // the loom model maps no pages
pub(crate) fn pages_inside(start: usize, end: usize, page: usize) -> Option<(usize, usize)> {
    let first = (start + page - 1) & !(page - 1);
    let last = end & !(page - 1);
    (last > first).then(|| (first, last - first))
}

#[cfg(not(loom))]
mod mmap {
    use super::*;
    use std::ptr::NonNull;

    pub(crate) struct Memory {
        /// The public view: what `base()` gives generated code.
        entries: NonNull<Entry>,
        /// Where the library reads and writes entries: the view itself, or
        /// in the alias mode the alias (replaced in a fork child, which is
        /// single-threaded then).
        alias: std::sync::atomic::AtomicPtr<Entry>,
        /// The memfd behind both, in the alias mode; -1 otherwise.
        fd: std::sync::atomic::AtomicI32,
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
        map_anon(std::ptr::null_mut(), len, 0)
    }

    /// A read-only anonymous mapping of `len` bytes at `at` (replacing what
    /// is there when `extra` has `MAP_FIXED`), or where the kernel chooses.
    fn map_anon(at: *mut u8, len: usize, extra: i32) -> Result<NonNull<u8>, Error> {
        // SAFETY: an anonymous mapping either at an address of the kernel's
        // choice, or (MAP_FIXED) over a range of a reservation we own, or
        // (MAP_FIXED_NOREPLACE) where nothing is mapped.
        let p = unsafe {
            libc::mmap(
                at.cast(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | extra,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::OutOfMemory);
        }
        Ok(NonNull::new(p.cast()).expect("mmap never returns null on success"))
    }

    /// 64 random bits from the kernel, or None.
    fn random_u64() -> Option<u64> {
        let mut r = 0u64;
        // SAFETY: getrandom writes at most 8 bytes into `r`.
        let n = unsafe { libc::getrandom((&raw mut r).cast(), 8, libc::GRND_NONBLOCK) };
        (n == 8).then_some(r)
    }

    /// In the alias mode, a reservation at a random page-aligned address in
    /// [2^40, 2^46) (about 34 random bits), so that nothing else in the
    /// process sits next to it and its address says nothing about any other;
    /// otherwise (or if no random place is free) where the kernel chooses.
    fn reserve_secret(len: usize) -> Result<NonNull<u8>, Error> {
        if crate::protect::alias() {
            const LOW: u64 = 1 << 40;
            const HIGH: u64 = 1 << 46;
            for _ in 0..32 {
                let Some(r) = random_u64() else { break };
                let at = (LOW + r % (HIGH - LOW - len as u64)) & !(page_size() as u64 - 1);
                match map_anon(at as *mut u8, len, libc::MAP_FIXED_NOREPLACE) {
                    Ok(p) if p.as_ptr() as u64 == at => return Ok(p),
                    Ok(p) => {
                        // A kernel without MAP_FIXED_NOREPLACE took it as a hint.
                        // SAFETY: just mapped by us with this length.
                        unsafe { libc::munmap(p.as_ptr().cast(), len) };
                    }
                    Err(_) => {}
                }
            }
        }
        reserve(len)
    }

    /// A new memfd sized for every entry (sparse: no page is allocated).
    fn new_memfd() -> Result<i32, Error> {
        // SAFETY: creates a file descriptor and sets its size; no memory of
        // ours is touched.
        unsafe {
            let fd = libc::memfd_create(c"wcpt".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(Error::OutOfMemory);
            }
            if libc::ftruncate(fd, ENTRY_BYTES as libc::off_t) != 0 {
                libc::close(fd);
                return Err(Error::OutOfMemory);
            }
            Ok(fd)
        }
    }

    /// Maps `[off, off+len)` of `fd` shared over `at` (inside a reservation
    /// we own), with `prot`, and keeps it out of fork children.
    fn map_file(at: *mut u8, len: usize, prot: i32, fd: i32, off: usize) -> Result<(), Error> {
        // SAFETY: MAP_FIXED over a range of one of our reservations, which
        // nothing else uses; the file range exists (the memfd has the table's
        // size).
        let p = unsafe {
            libc::mmap(at.cast(), len, prot, libc::MAP_SHARED | libc::MAP_FIXED, fd, off as libc::off_t)
        };
        if p == libc::MAP_FAILED {
            return Err(Error::OutOfMemory);
        }
        // SAFETY: advice on the range just mapped.
        unsafe { libc::madvise(at.cast(), len, libc::MADV_DONTFORK) };
        Ok(())
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
            let mut alias = Ok(entries);
            let mut fd = Ok(-1);
            if crate::protect::alias() {
                fd = new_memfd();
                alias = reserve_secret(ENTRY_BYTES);
                if let Ok(a) = alias {
                    // SAFETY: advice on the reservation just made.
                    unsafe { libc::madvise(a.as_ptr().cast(), ENTRY_BYTES, libc::MADV_DONTFORK) };
                }
            }
            let meta = reserve_secret(META_BYTES);
            let gens = reserve_secret(GEN_BYTES);
            match (alias, fd, meta, gens) {
                (Ok(alias), Ok(fd), Ok(meta), Ok(gens)) => Ok(Memory {
                    entries: entries.cast(),
                    alias: std::sync::atomic::AtomicPtr::new(alias.as_ptr().cast()),
                    fd: std::sync::atomic::AtomicI32::new(fd),
                    meta: meta.cast(),
                    gens: gens.cast(),
                }),
                (alias, fd, meta, gens) => {
                    // SAFETY: each region was just mapped with its length,
                    // and the memfd just created; nothing else has them.
                    unsafe {
                        libc::munmap(entries.as_ptr().cast(), ENTRY_BYTES);
                        if let Ok(a) = alias {
                            if a != entries {
                                libc::munmap(a.as_ptr().cast(), ENTRY_BYTES);
                            }
                        }
                        if let Ok(f) = fd {
                            if f >= 0 {
                                libc::close(f);
                            }
                        }
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

        /// The memfd, in the alias mode.
        #[inline]
        fn memfd(&self) -> Option<i32> {
            let fd = self.fd.load(std::sync::atomic::Ordering::Relaxed);
            (fd >= 0).then_some(fd)
        }

        /// Where the library accesses entries (the alias, or the view).
        #[inline(always)]
        fn writable(&self) -> *mut Entry {
            // Relaxed: set before the table is shared, and changed only in a
            // fork child while it is the only thread.
            self.alias.load(std::sync::atomic::Ordering::Relaxed)
        }

        pub(crate) fn base(&self) -> *const Entry {
            self.entries.as_ptr()
        }

        #[inline(always)]
        pub(crate) fn entry(&self, index: u32) -> &Entry {
            debug_assert!(index < TABLE_ENTRIES);
            // SAFETY: the reservation (view or alias, which mirror each
            // other) covers TABLE_ENTRIES entries, is never unmapped while
            // `self` lives and is always readable; callers pass a masked
            // index, which is below TABLE_ENTRIES.
            unsafe { &*self.writable().add(index as usize) }
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
            let page = page_size();
            let s = segment as usize;
            // Whole pages, which a large page shares with neighbours.
            let (off, len) = pages_covering(s * META_SEGMENT_BYTES, (s + 1) * META_SEGMENT_BYTES, page);
            protect(self.meta.as_ptr().cast::<u8>().wrapping_add(off), len, libc::PROT_READ | libc::PROT_WRITE)?;
            let (off, len) = pages_covering(s * GEN_SEGMENT_BYTES, (s + 1) * GEN_SEGMENT_BYTES, page);
            protect(self.gens.as_ptr().cast::<u8>().wrapping_add(off), len, libc::PROT_READ | libc::PROT_WRITE)
        }

        /// Makes a segment's entries writable; their pages read as zero.
        pub(crate) fn commit_entries(&self, segment: u32) -> Result<(), Error> {
            let off = segment as usize * ENTRY_SEGMENT_BYTES;
            let Some(fd) = self.memfd() else {
                let p = self.entry(segment * ENTRIES_PER_SEGMENT) as *const Entry as *mut u8;
                return protect(p, ENTRY_SEGMENT_BYTES, libc::PROT_READ | libc::PROT_WRITE);
            };
            // Preallocate, so that exhaustion is this status and never a
            // SIGBUS at the first store.
            // SAFETY: a range of our memfd, which only we use.
            if unsafe { libc::fallocate(fd, 0, off as libc::off_t, ENTRY_SEGMENT_BYTES as libc::off_t) } != 0 {
                return Err(Error::OutOfMemory);
            }
            let alias = self.writable().cast::<u8>().wrapping_add(off);
            let view = self.entries.as_ptr().cast::<u8>().wrapping_add(off);
            let mapped = map_file(alias, ENTRY_SEGMENT_BYTES, libc::PROT_READ | libc::PROT_WRITE, fd, off)
                .and_then(|()| map_file(view, ENTRY_SEGMENT_BYTES, libc::PROT_READ, fd, off));
            if mapped.is_err() {
                self.unmap_segments(segment, 1, fd);
            }
            mapped
        }

        /// Maps anonymous read-only memory back over the view and alias of
        /// `count` segments from `first` (readers see the zero page, never a
        /// fault), then frees their memfd range.
        fn unmap_segments(&self, first: u32, count: u32, fd: i32) {
            let off = first as usize * ENTRY_SEGMENT_BYTES;
            let len = count as usize * ENTRY_SEGMENT_BYTES;
            let alias = self.writable().cast::<u8>().wrapping_add(off);
            let view = self.entries.as_ptr().cast::<u8>().wrapping_add(off);
            // Failures leave the file mapping in place: still correct (the
            // entries are free), only not released.
            if map_anon(view, len, libc::MAP_FIXED).is_ok() && map_anon(alias, len, libc::MAP_FIXED).is_ok() {
                // SAFETY: advice on the alias range just mapped; then a
                // punch of our memfd's range, which no mapping shows anymore.
                unsafe {
                    libc::madvise(alias.cast(), len, libc::MADV_DONTFORK);
                    libc::fallocate(
                        fd,
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        off as libc::off_t,
                        len as libc::off_t,
                    );
                }
            }
        }

        /// Gives the entry and metadata pages of `count` consecutive
        /// segments from `first` back to the OS, with a few system calls for
        /// the whole run. Concurrent readers see either the old contents or
        /// zero, and never fault; the metadata stays writable (see the
        /// module docs).
        pub(crate) fn release_entries(&self, first: u32, count: u32) {
            let (f, c) = (first as usize, count as usize);
            if let Some((off, len)) = pages_inside(f * META_SEGMENT_BYTES, (f + c) * META_SEGMENT_BYTES, page_size()) {
                let m = self.meta.as_ptr().cast::<u8>().wrapping_add(off);
                // SAFETY: whole pages of the segments' metadata in our
                // reservation, none shared with another segment; every entry
                // of them is free (the caller closed them), so the words read
                // back as zero (free) is what they would say anyway, up to
                // the generation, which the generation bytes keep. (A page
                // shared with a neighbour keeps its words: still free ones.)
                unsafe { libc::madvise(m.cast(), len, libc::MADV_DONTNEED) };
            }
            if let Some(fd) = self.memfd() {
                self.unmap_segments(first, count, fd);
                return;
            }
            let p = self.entry(first * ENTRIES_PER_SEGMENT) as *const Entry as *mut u8;
            let len = count as usize * ENTRY_SEGMENT_BYTES;
            // SAFETY: the range is whole segments of our reservation, and no
            // entry in them is allocated (the caller closed the segments).
            unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
            // Read-only again: uncharges the commit and makes stray writes
            // fault. It cannot fail for lack of memory in a way that matters:
            // the pages are already gone, and a failure leaves them writable.
            let _ = protect(p, len, libc::PROT_READ);
        }

        /// In a fork child (the only thread), in the alias mode: the child
        /// inherited no mapping of the committed segments (`MADV_DONTFORK`),
        /// and must not share the parent's memfd. Copies every committed
        /// segment into a new memfd, maps it at the same view addresses and
        /// at a new random alias, and closes the parent's memfd. If that
        /// cannot be done (no memory), the child's
        /// entries read as zero everywhere (every call through the table is
        /// refused) and its writes go to private memory: never to the parent.
        pub(crate) fn rebuild_after_fork(&self, committed: impl Fn(u32) -> bool) {
            let Some(old) = self.memfd() else { return };
            let segments = (ENTRY_BYTES / ENTRY_SEGMENT_BYTES) as u32;
            let rebuilt = (|| -> Result<(), Error> {
                let fd = new_memfd()?;
                let alias = match reserve_secret(ENTRY_BYTES) {
                    Ok(a) => a,
                    Err(e) => {
                        // SAFETY: the memfd just made, used by nobody.
                        unsafe { libc::close(fd) };
                        return Err(e);
                    }
                };
                // SAFETY: advice on the reservation just made.
                unsafe { libc::madvise(alias.as_ptr().cast(), ENTRY_BYTES, libc::MADV_DONTFORK) };
                // Runs of consecutive committed segments: one copy and two
                // mappings per run.
                let mut s = 0;
                while s < segments {
                    if !committed(s) {
                        s += 1;
                        continue;
                    }
                    let first = s;
                    while s < segments && committed(s) {
                        s += 1;
                    }
                    let (off, len) = (first as usize * ENTRY_SEGMENT_BYTES, (s - first) as usize * ENTRY_SEGMENT_BYTES);
                    copy_range(old, fd, off, len)?;
                    map_file(alias.as_ptr().wrapping_add(off), len, libc::PROT_READ | libc::PROT_WRITE, fd, off)?;
                    map_file(self.entries.as_ptr().cast::<u8>().wrapping_add(off), len, libc::PROT_READ, fd, off)?;
                }
                self.alias.store(alias.as_ptr().cast(), std::sync::atomic::Ordering::Relaxed);
                self.fd.store(fd, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })();
            if rebuilt.is_err() {
                // Fail closed: zero pages in the view's holes, a private
                // writable alias (fresh, so entries read as free).
                for s in (0..segments).filter(|&s| committed(s)) {
                    let off = s as usize * ENTRY_SEGMENT_BYTES;
                    let _ = map_anon(self.entries.as_ptr().cast::<u8>().wrapping_add(off), ENTRY_SEGMENT_BYTES, libc::MAP_FIXED);
                }
                // SAFETY: a new private anonymous mapping; nothing else has it.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        ENTRY_BYTES,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    self.alias.store(p.cast(), std::sync::atomic::Ordering::Relaxed);
                }
                self.fd.store(-1, std::sync::atomic::Ordering::Relaxed);
            }
            // SAFETY: the parent's memfd, inherited; the child maps none of it.
            unsafe { libc::close(old) };
        }
    }

    /// Copies `[off, off+len)` from one memfd to the same place in another,
    /// in the kernel (no buffer of ours).
    fn copy_range(from: i32, to: i32, off: usize, len: usize) -> Result<(), Error> {
        let mut done = 0usize;
        while done < len {
            let mut src = (off + done) as libc::off64_t;
            let mut dst = src;
            // SAFETY: offsets are passed by pointer to locals; both fds are
            // ours.
            let n = unsafe { libc::copy_file_range(from, &mut src, to, &mut dst, len - done, 0) };
            if n <= 0 {
                return Err(Error::OutOfMemory);
            }
            done += n as usize;
        }
        Ok(())
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
            let page = page_size();
            let bytes = (len.max(1).checked_mul(std::mem::size_of::<T>()).ok_or(Error::OutOfMemory)?)
                .checked_add(page - 1)
                .ok_or(Error::OutOfMemory)?
                & !(page - 1);
            debug_assert!(std::mem::align_of::<T>() <= page);
            let p = if tagged { reserve_secret(bytes)? } else { reserve(bytes)? };
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
                if let Some(fd) = self.memfd() {
                    libc::munmap(self.writable().cast(), ENTRY_BYTES);
                    libc::close(fd);
                }
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
        pub(crate) fn release_entries(&self, first: u32, count: u32) {
            for i in first * ENTRIES_PER_SEGMENT..(first + count) * ENTRIES_PER_SEGMENT {
                let e = self.entry(i);
                e.entrypoint.store(0, Relaxed);
                e.check.store(0, Relaxed);
                self.meta(i).store(0, Relaxed);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod geometry_tests {
    use super::*;

    const META_SEGMENT: usize = ENTRIES_PER_SEGMENT as usize * 2;
    const GEN_SEGMENT: usize = ENTRIES_PER_SEGMENT as usize;
    const META_ALL: usize = TABLE_ENTRIES as usize * 2;

    /// For each page size arm64 kernels run with: a segment's metadata and
    /// generation bytes are committed as whole pages that cover them and stay
    /// inside the region; releasing any run of segments drops only whole
    /// pages inside the run (never a neighbour's words); a segment's entries
    /// are whole pages.
    #[test]
    fn segment_geometry_for_4_16_and_64_kib_pages() {
        for page in [4096usize, 16384, 65536] {
            assert_eq!((ENTRIES_PER_SEGMENT as usize * 16) % page, 0, "entries of a segment are whole pages");
            for (unit, total) in [(META_SEGMENT, META_ALL), (GEN_SEGMENT, TABLE_ENTRIES as usize)] {
                for s in [0usize, 1, 2, 7, 8, 9, 4095] {
                    let (off, len) = pages_covering(s * unit, (s + 1) * unit, page);
                    assert_eq!((off % page, len % page), (0, 0));
                    assert!(off <= s * unit && off + len >= (s + 1) * unit && off + len <= total);
                }
            }
            for (first, count) in [(0usize, 1usize), (3, 1), (8, 8), (5, 20), (1, 4094), (0, 4096)] {
                let (start, end) = (first * META_SEGMENT, (first + count) * META_SEGMENT);
                match pages_inside(start, end, page) {
                    Some((off, len)) => {
                        assert_eq!((off % page, len % page), (0, 0));
                        assert!(off >= start && off + len <= end, "page {page}: {first}+{count} drops a neighbour's words");
                    }
                    None => assert!(end - start < 2 * page, "page {page}: {first}+{count} released nothing"),
                }
            }
        }
        assert_eq!(pages_inside(0, 8192, 65536), None); // one 8 KiB segment in a 64 KiB page: kept
        assert_eq!(pages_inside(0, 65536, 65536), Some((0, 65536)));
        assert!(page_size().is_power_of_two() && page_size() <= MAX_PAGE);
    }
}
