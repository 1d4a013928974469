//! The code pointer table: the Rust core behind the C ABI.
//!
//! A [`Table`] owns its memory, freelists, native map and code regions, so any
//! number of independent tables can exist (the C ABI uses one process-wide
//! instance; tests use many).
//!
//! The table is split by concern; this file is the coordinator (the
//! `Table` value, lookups, `set`, native handles, code regions):
//! - `table/alloc.rs`: allocation and freeing, shards, segment growth;
//! - `table/cache.rs`: the per-thread stacks of free entries;
//! - `table/fast.rs`: the C ABI's straight-line alloc and free;
//! - `table/batch.rs`: `alloc_many` and `free_many`;
//! - `table/refusal.rs`: the remembered refusal to allocate;
//! - `table/sweep.rs`: releasing empty segments, and the counters;
//! - `table/fork.rs`: the locks held across `fork` and the child's repair.

use crate::config::Config;
use crate::freelist::{Freelists, Run};
use crate::handle::*;
use crate::memory::{Entry, Memory, MappedArray};
use crate::native::{Key, NativeMap};
use crate::protect::{self, Window};
use crate::regions::CodeRegions;
use crate::sync::{
    fence, spin_wait, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, CachePadded, Mutex, MutexGuard, Ordering::*,
    RwLock, RwLockWriteGuard,
};

mod alloc;
mod batch;
mod cache;
mod fast;
mod fork;
mod refusal;
mod sweep;

use alloc::{next_free_check, shard_index};
use cache::Caches;
#[cfg_attr(any(loom, not(feature = "capi")), allow(unused_imports))]
pub(crate) use fork::TableLocks;
use refusal::Refusal;
use crate::thread_slot::thread_hash;

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
    /// Entries that can ever be allocated: 2^24 - 2, or the table's
    /// `max_entries`.
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
    /// Whether the C ABI's fast paths may run (`table/fast.rs`): stacks on,
    /// and no pkeys (fixed for the table's life, as its protection is).
    fast: bool,
    /// Added to every generation in this table's handles, different for each
    /// table created in the process, so that handles of a torn-down table do
    /// not name the entries of its successor.
    salt: u8,
    /// The configuration the table was created with (validated).
    config: Config,
    /// This table's share of the process-wide protection. Last: it is
    /// given up after everything above is unmapped.
    _protection: protect::Registration,
}

/// Not a model-checked atomic even under loom: it only numbers tables.
#[cfg(not(loom))]
static NEXT_SALT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl Table {
    /// Reserves a new, empty table with the default configuration
    /// ([`Config::DEFAULT`]). Nothing is committed until first use.
    pub fn new() -> Result<Table, Error> {
        // Under loom the per-thread stacks are modelled only where a model
        // asks for them (`with_thread_caches`): each stack operation adds
        // steps to every interleaving of the models of other paths.
        Self::with_config(&Config { thread_cache: cfg!(not(loom)), ..Config::DEFAULT })
    }

    /// A new table, with per-thread stacks of free entries if `on` (and the
    /// machine has the barriers they need; see `thread_slot.rs`).
    #[allow(dead_code)] // for the loom models' tests
    pub(crate) fn with_thread_caches(on: bool) -> Result<Table, Error> {
        Self::with_config(&Config { thread_cache: on, ..Config::DEFAULT })
    }

    /// Reserves a new, empty table configured by `config`: the same
    /// refusals as the C ABI's `wcpt_init_with`, as `Error` values
    /// ([`Config::validated`], and [`Error::Protection`] or
    /// [`Error::AlreadyInitialized`] for its protection: see
    /// [`Config::protection`]).
    pub fn with_config(config: &Config) -> Result<Table, Error> {
        let config = config.validated()?;
        // The protection first: the memory below is mapped and tagged for it.
        let registration = protect::register(&config)?;
        const _: () = assert!(NEVER_COMMITTED == 0, "a zeroed state array is all NEVER_COMMITTED");
        let caches = Caches::new(config.thread_cache)?;
        let fast = caches.on() && protect::key().is_none();
        Ok(Table {
            mem: Memory::reserve()?,
            // Indices 1..=max_entries can be allocated.
            lists: Freelists::new(config.max_entries as u32 + 1)?,
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
            caches,
            fast,
            // An odd step visits all 256 salts before repeating one. Under
            // loom, 0 in every execution (a model must be deterministic), so
            // the models meet the skipped generation (see `publish`).
            #[cfg(not(loom))]
            salt: NEXT_SALT.fetch_add(0x9D, Relaxed),
            #[cfg(loom)]
            salt: 0,
            config,
            _protection: registration,
        })
    }

    /// The configuration the table was created with, validated
    /// (`max_entries` normalised).
    pub fn config(&self) -> Config {
        self.config
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
        get_answer(handle, entrypoint, check)
    }

    /// [`Table::get`] from the table's base alone, for the C ABI's lookup
    /// (one load of the base, no table object).
    ///
    /// # Safety
    /// `base` is [`Table::base`] of a table that is alive for the whole
    /// call and not protected by pkeys (so every thread may read it).
    #[cfg(not(loom))]
    #[inline(always)]
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) unsafe fn get_at(base: *const u8, handle: u32) -> u64 {
        // SAFETY: the caller's promise: the reservation behind `base` holds
        // 2^24 readable entries while the table lives, and a masked index
        // is below that.
        let entry = unsafe { &*base.cast::<Entry>().add((handle & INDEX_MASK) as usize) };
        // The order and orderings of `read_entry`.
        let entrypoint = entry.entrypoint.load(Acquire);
        get_answer(handle, entrypoint, entry.check.load(Relaxed))
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

    #[inline(always)]
    fn check_code(&self, entrypoint: u64) -> Result<(), Error> {
        if !is_user_address(entrypoint) {
            return Err(Error::InvalidArgument);
        }
        self.regions.check(entrypoint)
    }

    /// Segments at or above this have never been committed (clamped, so a
    /// corrupted counter cannot index out of bounds).
    #[inline]
    fn high_water(&self) -> u32 {
        self.high_water.load(Acquire).min(SEGMENTS)
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

}


/// What [`Table::get`] answers for `handle` whose entry holds `entrypoint`
/// and `check`: the entrypoint if the check word carries the handle's
/// generation, else 0. A free entry holds a link, not a user address, and
/// the check word of a generation no handle was issued for.
#[inline(always)]
fn get_answer(handle: u32, entrypoint: u64, check: u64) -> u64 {
    if check >> SIGNATURE_BITS == u64::from(handle >> INDEX_BITS) && is_user_address(entrypoint) {
        entrypoint
    } else {
        0
    }
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
