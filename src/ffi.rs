//! The C ABI: `wcpt_*` functions over one process-wide [`Table`].
//!
//! Every export is a thin layer: it finds (or lazily creates) the global
//! table, calls the Rust core, and turns the result into a status or a
//! documented sentinel. Each body runs inside `boundary`, so a panic (a bug
//! in wcpt) becomes `WCPT_ERR_INTERNAL` or the sentinel instead of unwinding
//! into C.
#![allow(non_camel_case_types)]
// `24 as u32` and the like are how cbindgen learns each constant's C type.
#![allow(clippy::unnecessary_cast)]

use crate::config::Config;
use crate::handle::{self, Error, Handle};
use crate::protect;
use crate::sync::{Mutex, MutexGuard, Ordering::*};
use crate::table::{Table, TableLocks};
use std::cell::{Cell, UnsafeCell};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr};

/// A handle to a table entry: the entry index in the low 24 bits
/// (`WCPT_INDEX_MASK`) and a generation in the high 8 bits.
pub type wcpt_handle = u32;

// The `as` casts below are how cbindgen gives each constant its C type
// (`(uint32_t)24`, `(wcpt_handle)4294967295`, ...), so that it has the type
// of what it is compared with; the version numbers stay plain for `#if`.

/// Bits of a handle that hold the entry index.
pub const WCPT_INDEX_BITS: u32 = 24 as u32;
/// Mask giving the entry index of a handle; every masked value is inside the
/// reserved table, so generated code needs no bounds check.
pub const WCPT_INDEX_MASK: u32 = 0x00FF_FFFF as u32;
/// The handle no allocation ever returns: the failure value of `wcpt_alloc`
/// and `wcpt_native_handle`. Masked, it reaches entry 0xFFFFFF, which is
/// never allocated.
pub const WCPT_INVALID_HANDLE: wcpt_handle = 0xFFFF_FFFF as wcpt_handle;
/// The null handle (index 0, never allocated).
pub const WCPT_NULL_HANDLE: wcpt_handle = 0 as wcpt_handle;
/// Size in bytes of one table entry: the entrypoint, then the check word.
pub const WCPT_ENTRY_SIZE: libc::size_t = 16 as libc::size_t;
/// Offset in an entry of the entrypoint (an atomic 64-bit word).
pub const WCPT_ENTRYPOINT_OFFSET: libc::size_t = 0 as libc::size_t;
/// Offset in an entry of the 64-bit check word,
/// `(uint64_t)(handle >> WCPT_INDEX_BITS) << WCPT_SIGNATURE_BITS | signature`
/// for the handle that owns the entry (see `wcpt_check_word`).
pub const WCPT_CHECK_OFFSET: libc::size_t = 8 as libc::size_t;
/// The same offset under its older name: the check word holds the signature
/// in its low `WCPT_SIGNATURE_BITS` bits.
pub const WCPT_SIGNATURE_OFFSET: libc::size_t = 8 as libc::size_t;
/// Bits of a signature. Every function that takes a signature refuses a
/// wider one (`WCPT_ERR_INVALID_ARGUMENT`, or 0 from `wcpt_get_checked`).
pub const WCPT_SIGNATURE_BITS: u32 = 56 as u32;
/// Entries per segment, the unit in which memory is committed and released.
pub const WCPT_ENTRIES_PER_SEGMENT: libc::size_t = 4096 as libc::size_t;
/// Entries that can be allocated: 2^24 minus the null entry and entry 0xFFFFFF.
pub const WCPT_CAPACITY: libc::size_t = 16_777_214 as libc::size_t;
/// The signature stored with every native handle (see `wcpt_native_handle`):
/// the all-ones 56-bit value.
pub const WCPT_NATIVE_SIGNATURE: u64 = 0x00FF_FFFF_FFFF_FFFF as u64;
/// Most code regions that can be registered at once.
pub const WCPT_MAX_CODE_REGIONS: libc::size_t = 1024 as libc::size_t;
/// Major version (the ABI changes only with it).
pub const WCPT_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const WCPT_VERSION_MINOR: u32 = 2;
/// Patch version.
pub const WCPT_VERSION_PATCH: u32 = 0;

const _: () = {
    assert!(WCPT_INDEX_BITS == handle::INDEX_BITS);
    assert!(WCPT_INDEX_MASK == handle::INDEX_MASK);
    assert!(WCPT_INVALID_HANDLE == handle::INVALID_HANDLE);
    assert!(WCPT_ENTRY_SIZE == handle::ENTRY_SIZE);
    assert!(WCPT_ENTRIES_PER_SEGMENT == handle::ENTRIES_PER_SEGMENT as usize);
    assert!(WCPT_CAPACITY == handle::CAPACITY);
    assert!(WCPT_NATIVE_SIGNATURE == handle::NATIVE_SIGNATURE);
    assert!(WCPT_MAX_CODE_REGIONS == crate::regions::MAX_REGIONS);
    assert!(std::mem::size_of::<crate::memory::Entry>() == WCPT_ENTRY_SIZE);
    assert!(std::mem::offset_of!(crate::memory::Entry, entrypoint) == WCPT_ENTRYPOINT_OFFSET);
    assert!(std::mem::offset_of!(crate::memory::Entry, check) == WCPT_CHECK_OFFSET);
    // The C definition of `struct wcpt_stats` in cbindgen.toml: six size_t.
    assert!(std::mem::size_of::<WcptStats>() == 6 * std::mem::size_of::<libc::size_t>());
    assert!(std::mem::offset_of!(WcptStats, native) == 5 * std::mem::size_of::<libc::size_t>());
    assert!(WCPT_SIGNATURE_OFFSET == WCPT_CHECK_OFFSET);
    assert!(WCPT_SIGNATURE_BITS == handle::SIGNATURE_BITS);
};

/// The result of an operation.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum wcpt_status {
    /// Success.
    WCPT_OK = 0,
    /// Handle 0, `WCPT_INVALID_HANDLE`, out of range or never allocated; for
    /// `wcpt_set`, also a handle that is no longer live.
    WCPT_ERR_INVALID_HANDLE = 1,
    /// Freeing a handle whose generation has already ended (freed before,
    /// whether or not its entry was reused since).
    WCPT_ERR_DOUBLE_FREE = 2,
    /// Freeing or setting a native handle.
    WCPT_ERR_NATIVE_HANDLE = 3,
    /// An entrypoint or address that is not a canonical user-space address
    /// (any of bits 63..47 set), a zero native address, a null pointer, or a
    /// malformed code region.
    WCPT_ERR_INVALID_ARGUMENT = 4,
    /// The table is full (or, for code regions, too many are registered).
    WCPT_ERR_CAPACITY = 5,
    /// The OS refused memory.
    WCPT_ERR_OUT_OF_MEMORY = 6,
    /// Code regions are registered and the entrypoint lies in none of them.
    WCPT_ERR_NOT_CODE = 7,
    /// Memory protection could not be applied.
    WCPT_ERR_PROTECTION = 8,
    /// An internal error in wcpt was caught; nothing was changed.
    WCPT_ERR_INTERNAL = 9,
    /// `wcpt_init_with`: the table exists already with another
    /// configuration (created by an earlier call, or lazily by any other
    /// call with the defaults); nothing was changed. After `wcpt_teardown`
    /// a new configuration applies.
    WCPT_ERR_ALREADY_INITIALIZED = 10,
}

impl From<Error> for wcpt_status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidHandle => wcpt_status::WCPT_ERR_INVALID_HANDLE,
            Error::DoubleFree => wcpt_status::WCPT_ERR_DOUBLE_FREE,
            Error::NativeHandle => wcpt_status::WCPT_ERR_NATIVE_HANDLE,
            Error::InvalidArgument => wcpt_status::WCPT_ERR_INVALID_ARGUMENT,
            Error::Capacity => wcpt_status::WCPT_ERR_CAPACITY,
            Error::OutOfMemory => wcpt_status::WCPT_ERR_OUT_OF_MEMORY,
            Error::NotCode => wcpt_status::WCPT_ERR_NOT_CODE,
            Error::Protection => wcpt_status::WCPT_ERR_PROTECTION,
            Error::Internal => wcpt_status::WCPT_ERR_INTERNAL,
            Error::AlreadyInitialized => wcpt_status::WCPT_ERR_ALREADY_INITIALIZED,
        }
    }
}

fn status(r: Result<(), Error>) -> wcpt_status {
    match r {
        Ok(()) => wcpt_status::WCPT_OK,
        Err(e) => e.into(),
    }
}

/// A status passed in from C: any 32-bit value, so that an out-of-range one
/// is not undefined behaviour on the Rust side. The header calls it
/// `wcpt_status` (cbindgen renames it and drops this definition).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct WcptStatusArg(u32);

/// The write protection in force.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum wcpt_protection {
    /// Unprotected: `WCPT_PROTECT=off`, or neither pkeys nor `memfd_create`.
    WCPT_PROTECTION_NONE = 0,
    /// The table is write-protected with a memory protection key (the
    /// default where PKU works).
    WCPT_PROTECTION_PKEYS = 1,
    /// The table's public view (`wcpt_table_base()`) is mapped read-only and
    /// the library writes through a second mapping of the same memory at a
    /// random address; the rest of its protected state is only at random
    /// addresses. The default where pkeys are missing.
    WCPT_PROTECTION_ALIAS = 2,
    /// For `struct wcpt_config` only: the best protection that works here
    /// (pkeys, else the alias, else none). `wcpt_protection_mode()` never
    /// returns it.
    WCPT_PROTECTION_AUTO = 3,
}

/// A protection mode passed in from C (any 32-bit value, so that an
/// unknown one is refused, not undefined behaviour). The header calls it
/// `wcpt_protection`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WcptProtectionArg(pub u32);

/// `struct wcpt_config` flag: fail with `WCPT_ERR_PROTECTION` instead of
/// running unprotected (also when `WCPT_PROTECT=off` would switch it off).
pub const WCPT_CONFIG_REQUIRE_PROTECTION: u32 = 1 as u32;
/// `struct wcpt_config` flag: no per-thread stacks of free entries (every
/// allocation and free uses the shared freelists).
pub const WCPT_CONFIG_NO_THREAD_CACHE: u32 = 2 as u32;

/// How `wcpt_init_with` creates the table. Fill it in with
/// `wcpt_config_init` first, then change the fields you need: a field left
/// at its default may be set by an environment variable (`WCPT_PROTECT`
/// for `protection`, `WCPT_THREAD_CACHE=off` for the thread-cache flag);
/// one you set is exact.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct wcpt_config {
    /// `sizeof(struct wcpt_config)` as the caller's header has it, so the
    /// struct can grow: a larger size is accepted when the bytes past this
    /// version's fields are zero (at most 4096 bytes in all).
    pub size: u32,
    /// `WCPT_PROTECTION_AUTO` (the default), or exactly
    /// `WCPT_PROTECTION_NONE`, `_PKEYS` or `_ALIAS` (`WCPT_ERR_PROTECTION`
    /// where the mode does not work here: never a silent downgrade).
    /// Protection is process-wide.
    pub protection: WcptProtectionArg,
    /// -1 (the default): wcpt allocates its own protection key. 1 to 15: a
    /// key the embedder allocated with `pkey_alloc`, shared with the
    /// engine's own protection (with `WCPT_PROTECTION_PKEYS` only). wcpt
    /// tags the table with it, never frees it, and its write windows
    /// restore exactly the rights the thread had for it: an engine's window
    /// open around a wcpt call stays open, one closed stays closed.
    pub pkey: i32,
    /// 0 (the default): `WCPT_CAPACITY`. Else a cap on live entries:
    /// allocations past it get `WCPT_ERR_CAPACITY`, and `wcpt_stats`
    /// reports it as `capacity`. The address space stays reserved whole,
    /// so masked handles never fault and generated code needs no bounds
    /// check.
    pub max_entries: u32,
    /// `WCPT_CONFIG_REQUIRE_PROTECTION`, `WCPT_CONFIG_NO_THREAD_CACHE`.
    pub flags: u32,
}

/// The size of the first version of `struct wcpt_config`.
const CONFIG_V1_SIZE: u32 = std::mem::size_of::<wcpt_config>() as u32;
const _: () = assert!(CONFIG_V1_SIZE == 20);
/// The largest `size` accepted (a newer header's struct, zero-extended).
const CONFIG_MAX_SIZE: u32 = 4096;

/// Counters of the table, filled in by `wcpt_stats`. A snapshot: exact when
/// no other thread is using the table.
///
/// In C this is `struct wcpt_stats`, a struct tag with no typedef of that
/// name: a typedef `wcpt_stats` would clash with the function. cbindgen
/// renames references to it, and cbindgen.toml carries its C definition
/// (a `_Static_assert` in test_api and the assertions below keep the two
/// layouts equal), with `wcpt_stats_t`, the 0.1 name, as a typedef.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WcptStats {
    /// Entries that can ever be allocated (`WCPT_CAPACITY`).
    pub capacity: libc::size_t,
    /// Segments whose entry memory is committed.
    pub committed_segments: libc::size_t,
    /// Bytes of entry memory committed (64 KiB per segment).
    pub committed_bytes: libc::size_t,
    /// Entries allocated with `wcpt_alloc` and not freed.
    pub live: libc::size_t,
    /// Free entries in committed segments.
    pub free: libc::size_t,
    /// Native handles (live until teardown; not counted in `live`).
    pub native: libc::size_t,
}

static GLOBAL: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// The table's base while the table exists and is not protected by pkeys,
/// else null: `wcpt_get`'s whole lookup is one load of this, the entry's
/// two words and a compare. (With pkeys, a lookup must first make sure the
/// thread may read the table.) Set after GLOBAL, cleared before it.
static LOOKUP_BASE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
/// The table while it exists and its fast paths may run (thread stacks on,
/// no pkeys: [`Table::fast_paths`]), else null: `wcpt_alloc` and
/// `wcpt_free` test this one word before their straight-line code. Set
/// after GLOBAL, cleared before it.
static FAST: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
static LIFECYCLE: Mutex<()> = Mutex::new(());
/// Whether the fork handlers are registered (under LIFECYCLE).
static ATFORK: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LAST_ERROR: Cell<wcpt_status> = const { Cell::new(wcpt_status::WCPT_OK) };
}

fn set_last_error(e: Error) {
    let _ = LAST_ERROR.try_with(|c| c.set(e.into()));
}

/// The process-wide table, created on first use (with the defaults).
#[inline]
fn table() -> Result<&'static Table, Error> {
    let p = GLOBAL.load(Acquire);
    if !p.is_null() {
        // SAFETY: a non-null GLOBAL points to a leaked Box<Table> that lives
        // until wcpt_teardown, which callers must not run concurrently.
        return Ok(unsafe { &*p });
    }
    init_slow(None)
}

/// The process-wide table if it exists, without creating it: for lookups,
/// which must stay async-signal-safe before and during `wcpt_init` (no
/// handle can be live before the table exists, so they answer 0).
#[inline]
fn existing_table() -> Option<&'static Table> {
    let p = GLOBAL.load(Acquire);
    // SAFETY: as in `table`.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The process-wide table if it exists and its fast paths may run.
#[inline(always)]
fn fast_table() -> Option<&'static Table> {
    let p = FAST.load(Acquire);
    // SAFETY: a non-null FAST points to the table GLOBAL points to, alive
    // until wcpt_teardown (which clears FAST first).
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Creates the table. Every allocation on the way is fallible and reported
/// as `OutOfMemory`: the table's memory is mapped, and the `Table` value
/// itself is placed with `std::alloc::alloc`, whose null is checked (a
/// `Box::new` would call the allocation error handler, which aborts).
///
/// With `config`, the table must have that configuration: created with it
/// if there is none, else `AlreadyInitialized` unless the existing table's
/// is the same. Without, any existing table will do, and a new one has the
/// defaults.
#[cold]
fn init_slow(config: Option<&Config>) -> Result<&'static Table, Error> {
    let config = config.copied().map(Config::validated).transpose()?;
    let _g = LIFECYCLE.lock();
    if !ATFORK.load(Relaxed) {
        // SAFETY: the handlers are plain functions that stay valid for the
        // life of the process (the library is never unloaded while in use).
        let rc = unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
        if rc != 0 {
            // glibc allocates the registration; without it a fork child could
            // inherit held locks, so refuse now and try again next time.
            return Err(Error::OutOfMemory);
        }
        ATFORK.store(true, Relaxed);
        crate::thread_slot::set_exit_hook(thread_exit);
    }
    let p = GLOBAL.load(Acquire);
    if !p.is_null() {
        // SAFETY: as in `table`.
        let t = unsafe { &*p };
        return match config {
            Some(c) if c != t.config() => Err(Error::AlreadyInitialized),
            _ => Ok(t),
        };
    }
    let table = Table::with_config(&config.unwrap_or(Config::DEFAULT))?;
    let layout = std::alloc::Layout::new::<Table>();
    // SAFETY: Table is not zero-sized.
    let t = unsafe { std::alloc::alloc(layout) }.cast::<Table>();
    if t.is_null() {
        return Err(Error::OutOfMemory); // `table` is dropped: its mappings go
    }
    // SAFETY: `t` is fresh, aligned and sized for a Table (global allocator,
    // the layout Box uses, so wcpt_teardown can free it as a Box).
    unsafe { t.write(table) };
    // Release: the table is fully built before any thread can see it.
    GLOBAL.store(t, Release);
    if protect::mode() != protect::Mode::Pkeys {
        // SAFETY: just created; its base never moves while it lives.
        // Release: as for GLOBAL.
        LOOKUP_BASE.store(unsafe { &*t }.base().cast_mut(), Release);
    }
    // SAFETY: just created and published.
    if unsafe { &*t }.fast_paths() {
        // Release: as for GLOBAL.
        FAST.store(t, Release);
    }
    // SAFETY: just created and published; freed only by wcpt_teardown.
    Ok(unsafe { &*t })
}

/// Run when a thread that had a thread slot exits: its stack of free
/// entries goes back on the freelists of the process-wide table. Under
/// LIFECYCLE, so that it never meets a teardown.
fn thread_exit() {
    boundary((), || {
        let _g = LIFECYCLE.lock();
        if let Some(t) = existing_table() {
            t.flush_own_cache();
        }
    })
}

/// The locks `fork_prepare` holds until `fork_parent` or `fork_child`, in a
/// static of their own type: the handlers allocate nothing.
type Held = (Option<TableLocks<'static>>, MutexGuard<'static, ()>);
struct ForkHeld(UnsafeCell<Option<Held>>);
// SAFETY: only the fork handlers touch it, and only while holding LIFECYCLE
// (prepare takes it first; parent and child run after prepare, in the forking
// thread and in the child's only thread), so accesses never overlap.
unsafe impl Sync for ForkHeld {}
static FORK_HELD: ForkHeld = ForkHeld(UnsafeCell::new(None));

/// In the alias mode, a pipe from the child to the parent: the parent keeps
/// the table's locks (so no batch call runs) until the child has copied the
/// table into memory of its own (see `Memory::rebuild_after_fork`), so that
/// the child never sees a batch half done. -1 when unused.
static FORK_PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

extern "C" fn fork_prepare() {
    let lifecycle = LIFECYCLE.lock();
    let p = GLOBAL.load(Acquire);
    // SAFETY: a non-null GLOBAL is a live table, and it cannot be torn down
    // while we hold LIFECYCLE (until the parent/child handler drops it).
    let table_locks = (!p.is_null()).then(|| unsafe { &*p }.lock_all());
    if table_locks.is_some() && protect::alias() {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array. If it fails,
        // the parent does not wait (the child's copy may then catch a batch
        // of the parent's in the middle).
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            FORK_PIPE[0].store(fds[0], Relaxed);
            FORK_PIPE[1].store(fds[1], Relaxed);
        }
    }
    // Table locks are dropped before LIFECYCLE (tuple fields drop in order).
    // SAFETY: see ForkHeld; we hold LIFECYCLE.
    unsafe { *FORK_HELD.0.get() = Some((table_locks, lifecycle)) };
}

/// Releases what `fork_prepare` took.
fn release_fork_locks() {
    // SAFETY: see ForkHeld; prepare stored it and nothing else runs the
    // handlers concurrently.
    drop(unsafe { (*FORK_HELD.0.get()).take() });
}

/// In the parent: waits for the child's copy (alias mode), then releases
/// the locks.
extern "C" fn fork_parent() {
    let (r, w) = (FORK_PIPE[0].swap(-1, Relaxed), FORK_PIPE[1].swap(-1, Relaxed));
    if r >= 0 {
        let mut byte = 0u8;
        // SAFETY: our own pipe's descriptors. Closing our write end first
        // makes the read return 0 if the child dies before writing.
        unsafe {
            libc::close(w);
            while libc::read(r, (&raw mut byte).cast(), 1) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
            libc::close(r);
        }
    }
    release_fork_locks();
}

/// In the child: settles the lock-free operations that other threads of the
/// parent were in the middle of (see `Table::repair_after_fork`) while the
/// locks are still held, tells the parent it is done, then releases them.
extern "C" fn fork_child() {
    boundary((), || {
        crate::thread_slot::after_fork_child();
        if let Some(t) = existing_table() {
            t.repair_after_fork();
        }
    });
    let (r, w) = (FORK_PIPE[0].swap(-1, Relaxed), FORK_PIPE[1].swap(-1, Relaxed));
    if w >= 0 {
        // SAFETY: the inherited pipe: one byte wakes the parent.
        unsafe {
            libc::close(r);
            libc::write(w, [1u8].as_ptr().cast(), 1);
            libc::close(w);
        }
    }
    release_fork_locks();
}

/// Runs `f`, turning a panic into `on_panic`: no unwind crosses the ABI.
#[inline(always)]
fn boundary<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// Creates the process-wide table if it does not exist yet. Idempotent; any
/// other call does the same lazily.
///
/// Returns `WCPT_OK`, or `WCPT_ERR_OUT_OF_MEMORY` if the address space for the
/// table (256 MiB of entries, 32 MiB of metadata, reserved, not committed)
/// cannot be reserved.
#[no_mangle]
pub extern "C" fn wcpt_init() -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || status(table().map(|_| ())))
}

/// Fills `config` with the defaults: `size` = `sizeof(struct wcpt_config)`,
/// `WCPT_PROTECTION_AUTO`, `pkey` -1, `max_entries` 0, no flags. Does
/// nothing for NULL.
///
/// # Safety
/// `config` is NULL or points to a writable `struct wcpt_config`.
#[no_mangle]
pub unsafe extern "C" fn wcpt_config_init(config: *mut wcpt_config) {
    if !config.is_null() {
        let defaults = wcpt_config {
            size: CONFIG_V1_SIZE,
            protection: WcptProtectionArg(wcpt_protection::WCPT_PROTECTION_AUTO as u32),
            pkey: -1,
            max_entries: 0,
            flags: 0,
        };
        // SAFETY: non-null and writable (the caller's promise).
        unsafe { config.write(defaults) };
    }
}

/// The Rust configuration of a C one, or `InvalidArgument`: a `size`
/// below the first version's or above 4096, non-zero bytes past the known
/// fields, an unknown mode or flag, a key below -1, above 15 or 0, or a key
/// without `WCPT_PROTECTION_PKEYS`, or `WCPT_CONFIG_REQUIRE_PROTECTION` with
/// `WCPT_PROTECTION_NONE`.
///
/// # Safety
/// `config` points to at least `config.size` readable bytes.
unsafe fn config_from_c(config: *const wcpt_config) -> Result<Config, Error> {
    // SAFETY: the size word is readable in any version of the struct.
    let size = unsafe { config.cast::<u32>().read() };
    if !(CONFIG_V1_SIZE..=CONFIG_MAX_SIZE).contains(&size) {
        return Err(Error::InvalidArgument);
    }
    // SAFETY: `size` bytes are readable (the caller's promise), and
    // `size` >= CONFIG_V1_SIZE.
    let (c, extra) = unsafe {
        (
            config.read(),
            std::slice::from_raw_parts(config.cast::<u8>().add(CONFIG_V1_SIZE as usize), (size - CONFIG_V1_SIZE) as usize),
        )
    };
    if extra.iter().any(|&b| b != 0) {
        return Err(Error::InvalidArgument);
    }
    let protection = match c.protection.0 {
        0 => Some(protect::Mode::None),
        1 => Some(protect::Mode::Pkeys),
        2 => Some(protect::Mode::Alias),
        3 => None,
        _ => return Err(Error::InvalidArgument),
    };
    if c.flags & !(WCPT_CONFIG_REQUIRE_PROTECTION | WCPT_CONFIG_NO_THREAD_CACHE) != 0 || c.pkey < -1 {
        return Err(Error::InvalidArgument);
    }
    Config {
        protection,
        pkey: u32::try_from(c.pkey).ok(),
        max_entries: c.max_entries as usize,
        require_protection: c.flags & WCPT_CONFIG_REQUIRE_PROTECTION != 0,
        thread_cache: c.flags & WCPT_CONFIG_NO_THREAD_CACHE == 0,
    }
    .validated()
}

/// Creates the process-wide table with `config` (see `struct wcpt_config`).
///
/// Returns `WCPT_OK` if the table was created, or already exists with the
/// same configuration; `WCPT_ERR_ALREADY_INITIALIZED` if it exists with
/// another (created by an earlier call, or lazily by any other call with
/// the defaults); `WCPT_ERR_INVALID_ARGUMENT` for NULL or a malformed
/// configuration (a `size` below this version's or above 4096, non-zero
/// bytes past the known fields, an unknown mode or flag, a key other than
/// -1 or 1 to 15, a key without `WCPT_PROTECTION_PKEYS`,
/// `WCPT_CONFIG_REQUIRE_PROTECTION` with `WCPT_PROTECTION_NONE`, a key this
/// process did not allocate); `WCPT_ERR_PROTECTION` if the mode asked for
/// does not work here, or none does and protection is required;
/// `WCPT_ERR_OUT_OF_MEMORY`. A refused call creates nothing. After
/// `wcpt_teardown` a new configuration applies.
///
/// # Safety
/// `config` is NULL or points to a `struct wcpt_config` of `config->size`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wcpt_init_with(config: *const wcpt_config) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        if config.is_null() {
            return wcpt_status::WCPT_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: non-null, with `size` readable bytes (the caller's promise).
        match unsafe { config_from_c(config) } {
            Ok(c) => status(init_slow(Some(&c)).map(|_| ())),
            Err(e) => e.into(),
        }
    })
}

/// Releases the table's memory and every native handle. A later call creates
/// a fresh table; handles from before must not be used again (they do not
/// name the new table's entries, except by an 8-bit generation collision).
///
/// Not thread-safe: no other thread may use wcpt during teardown, and
/// pointers from `wcpt_table_base` dangle afterwards.
///
/// # Safety
/// No other thread may call into wcpt, or read the table, during or after
/// the call until the table is created again.
#[no_mangle]
pub unsafe extern "C" fn wcpt_teardown() {
    boundary((), || {
        let _g = LIFECYCLE.lock();
        LOOKUP_BASE.store(std::ptr::null_mut(), Relaxed);
        FAST.store(std::ptr::null_mut(), Relaxed);
        let p = GLOBAL.swap(std::ptr::null_mut(), AcqRel);
        if !p.is_null() {
            // SAFETY: `p` came from Box::into_raw in init_slow and is no
            // longer reachable through GLOBAL; the caller guarantees no
            // concurrent use.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

/// Allocates an entry holding `entrypoint` and `signature` (at most
/// `WCPT_SIGNATURE_BITS` bits).
///
/// Returns its handle, or `WCPT_INVALID_HANDLE` on failure; then
/// `wcpt_last_error()` says why: `WCPT_ERR_INVALID_ARGUMENT` (non-canonical
/// entrypoint, or a signature wider than 56 bits), `WCPT_ERR_NOT_CODE`, `WCPT_ERR_CAPACITY`,
/// `WCPT_ERR_OUT_OF_MEMORY`. Entrypoint 0 is accepted (an entry reserved
/// before its code exists). Thread-safe and lock-free except when a new
/// segment must be committed.
#[no_mangle]
pub extern "C" fn wcpt_alloc(entrypoint: usize, signature: u64) -> wcpt_handle {
    // The common case first, straight-line; anything else (no table yet,
    // a code region, pkeys, an empty stack, bad input) takes the full path.
    if let Some(t) = fast_table() {
        // SAFETY: FAST holds only a table whose fast paths may run.
        if let Some(h) = boundary(None, || unsafe { t.alloc_fast(entrypoint as u64, signature) }) {
            return h;
        }
    }
    alloc_general(entrypoint, signature)
}

/// `wcpt_alloc` beyond its fast path. `extern "C"` (it cannot unwind: its
/// boundary catches any panic), so that the fast path can end in a tail call.
#[inline(never)]
extern "C" fn alloc_general(entrypoint: usize, signature: u64) -> wcpt_handle {
    boundary(WCPT_INVALID_HANDLE, || {
        match table().and_then(|t| t.alloc(entrypoint as u64, signature)) {
            Ok(h) => h.raw(),
            Err(e) => {
                set_last_error(e);
                WCPT_INVALID_HANDLE
            }
        }
    })
}

/// Frees an entry allocated with `wcpt_alloc`; its handle never answers again
/// (until its 8-bit generation wraps after 255 frees of the same entry).
///
/// Returns `WCPT_OK`, `WCPT_ERR_INVALID_HANDLE`, `WCPT_ERR_DOUBLE_FREE` or
/// `WCPT_ERR_NATIVE_HANDLE`; a refused call changes nothing. Of two threads
/// freeing one handle at once, exactly one gets `WCPT_OK`. Lock-free.
#[no_mangle]
pub extern "C" fn wcpt_free(handle: wcpt_handle) -> wcpt_status {
    // The common case first (see `wcpt_alloc`).
    if let Some(t) = fast_table() {
        // SAFETY: as in `wcpt_alloc`.
        if boundary(None, || unsafe { t.free_fast(handle) }).is_some() {
            return wcpt_status::WCPT_OK;
        }
    }
    free_general(handle)
}

/// `wcpt_free` beyond its fast path (`extern "C"`: as `alloc_general`).
#[inline(never)]
extern "C" fn free_general(handle: wcpt_handle) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || status(table().and_then(|t| t.free(Handle::from_raw(handle)))))
}

/// The entrypoint of a live handle (including native handles), or 0 for a
/// free, stale, null, invalid or never-allocated one. Never faults, whatever
/// the value of `handle`. Lock-free, wait-free and async-signal-safe in every
/// state of the process: before the table exists (or while another thread
/// creates it) it answers 0 and creates nothing.
#[no_mangle]
pub extern "C" fn wcpt_get(handle: wcpt_handle) -> usize {
    // Acquire: pairs with the Release store in `init_slow`.
    let base = LOOKUP_BASE.load(Acquire);
    if !base.is_null() {
        // SAFETY: a non-null LOOKUP_BASE is the base of the live table, not
        // protected by pkeys; it is cleared before teardown, which callers
        // must not run concurrently with any other call.
        return unsafe { Table::get_at(base, handle) } as usize;
    }
    get_general(handle)
}

#[inline(never)]
fn get_general(handle: wcpt_handle) -> usize {
    boundary(0, || existing_table().map_or(0, |t| t.get(Handle::from_raw(handle))) as usize)
}

/// Like `wcpt_get`, and 0 also when the entry's signature is not `signature`
/// (always for a signature wider than 56 bits). Reads only the entry, like
/// `wcpt_call_target`. Async-signal-safe in every state of the process.
#[no_mangle]
pub extern "C" fn wcpt_get_checked(handle: wcpt_handle, signature: u64) -> usize {
    boundary(0, || existing_table().map_or(0, |t| t.get_checked(Handle::from_raw(handle), signature)) as usize)
}

/// Replaces the entrypoint of a live handle (tier-up); the signature is kept.
///
/// Returns `WCPT_OK`, `WCPT_ERR_INVALID_HANDLE` (also for a freed or stale
/// handle), `WCPT_ERR_NATIVE_HANDLE`, `WCPT_ERR_INVALID_ARGUMENT` or
/// `WCPT_ERR_NOT_CODE`.
#[no_mangle]
pub extern "C" fn wcpt_set(handle: wcpt_handle, entrypoint: usize) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        status(table().and_then(|t| t.set(Handle::from_raw(handle), entrypoint as u64)))
    })
}

/// Sets `count` handles at once, inside one write window: for engines that
/// patch many entries together. Every handle and entrypoint is checked first;
/// if one is refused, its status is returned and nothing is written.
/// `handles` and `entrypoints` may be NULL only when `count` is 0.
///
/// # Safety
/// `handles` and `entrypoints` must each point to `count` readable elements.
#[no_mangle]
pub unsafe extern "C" fn wcpt_set_many(
    handles: *const wcpt_handle,
    entrypoints: *const usize,
    count: libc::size_t,
) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        if count == 0 {
            return wcpt_status::WCPT_OK;
        }
        if handles.is_null() || entrypoints.is_null() {
            return wcpt_status::WCPT_ERR_INVALID_ARGUMENT;
        }
        const _: () = assert!(std::mem::size_of::<usize>() == std::mem::size_of::<u64>());
        // SAFETY: non-null, and the caller guarantees `count` elements each;
        // usize and u64 have the same size and alignment on the 64-bit
        // targets wcpt builds for (asserted above), and `Handle` is a
        // transparent u32, so both arrays are read in place, without a copy
        // that could fail to allocate.
        let (hs, es) = unsafe {
            (
                std::slice::from_raw_parts(handles.cast::<Handle>(), count),
                std::slice::from_raw_parts(entrypoints.cast::<u64>(), count),
            )
        };
        status(table().and_then(|t| t.set_many(hs, es)))
    })
}

/// Allocates `n` entries at once, for a whole module: `out[i]` gets the
/// handle of (`entrypoints[i]`, `signatures[i]`). All or nothing: every
/// argument is checked first, and on any failure nothing is allocated, `out`
/// is left as it was, and the status says why (`WCPT_ERR_INVALID_ARGUMENT`
/// for a NULL array with `n > 0`, a non-canonical entrypoint, or a
/// signature wider than `WCPT_SIGNATURE_BITS`; `WCPT_ERR_NOT_CODE`;
/// `WCPT_ERR_CAPACITY`; `WCPT_ERR_OUT_OF_MEMORY`). Arguments are checked in
/// array order and the first bad one gives the status. Entrypoint 0 is
/// accepted, as by `wcpt_alloc` (an entry reserved before its code exists;
/// it answers 0 until `wcpt_set`). `n = 0` returns `WCPT_OK` and changes
/// nothing; the arrays may be NULL only then. One write window for the
/// whole batch, whatever `n`.
///
/// # Safety
/// `entrypoints` and `signatures` must each point to `n` readable elements
/// and `out` to `n` writable ones.
#[no_mangle]
pub unsafe extern "C" fn wcpt_alloc_many(
    entrypoints: *const usize,
    signatures: *const u64,
    n: libc::size_t,
    out: *mut wcpt_handle,
) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        if n == 0 {
            return wcpt_status::WCPT_OK;
        }
        if entrypoints.is_null() || signatures.is_null() || out.is_null() {
            return wcpt_status::WCPT_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: non-null, and the caller guarantees `n` elements each;
        // usize and u64 have the same size and alignment here (asserted at
        // `wcpt_set_many`), and `Handle` is a transparent u32, so the arrays
        // are used in place, without a copy that could fail to allocate.
        let (es, ss, hs) = unsafe {
            (
                std::slice::from_raw_parts(entrypoints.cast::<u64>(), n),
                std::slice::from_raw_parts(signatures, n),
                std::slice::from_raw_parts_mut(out.cast::<Handle>(), n),
            )
        };
        status(table().and_then(|t| t.alloc_many(es, ss, hs)))
    })
}

/// Frees `n` handles at once, all or nothing: if any is invalid, stale,
/// native, already freed, or appears twice in the batch (a double free),
/// none is freed and the status says why (`WCPT_ERR_INVALID_HANDLE`,
/// `WCPT_ERR_DOUBLE_FREE`, `WCPT_ERR_NATIVE_HANDLE`, or
/// `WCPT_ERR_INVALID_ARGUMENT` for a NULL array with `n > 0`). With several
/// bad handles, the status is that of the first one in array order that
/// `wcpt_free` would refuse on its own; only when there is none does a
/// handle that appears twice give `WCPT_ERR_DOUBLE_FREE`. When threads
/// free overlapping batches at once (a caller bug), no handle is freed twice
/// and each batch frees all of its handles or none (then
/// `WCPT_ERR_DOUBLE_FREE`). `n = 0` returns `WCPT_OK` and frees nothing.
/// One write window for the whole batch.
///
/// # Safety
/// `handles` must point to `n` readable elements (NULL only when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn wcpt_free_many(handles: *const wcpt_handle, n: libc::size_t) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        if n == 0 {
            return wcpt_status::WCPT_OK;
        }
        if handles.is_null() {
            return wcpt_status::WCPT_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: non-null, `n` readable elements (the caller's promise);
        // `Handle` is a transparent u32.
        let hs = unsafe { std::slice::from_raw_parts(handles.cast::<Handle>(), n) };
        status(table().and_then(|t| t.free_many(hs)))
    })
}

/// The handle of the native (host) function at `address`: the same handle
/// for the same address every time, from any thread. It holds `address` with
/// signature `WCPT_NATIVE_SIGNATURE`, lives until `wcpt_teardown`, and cannot
/// be freed or set. Lookups of known addresses take no lock.
///
/// Returns `WCPT_INVALID_HANDLE` on failure; then `wcpt_last_error()` says
/// why: `WCPT_ERR_INVALID_ARGUMENT` (0 or non-canonical), `WCPT_ERR_CAPACITY`
/// or `WCPT_ERR_OUT_OF_MEMORY`. Code regions are not checked.
#[no_mangle]
pub extern "C" fn wcpt_native_handle(address: usize) -> wcpt_handle {
    boundary(WCPT_INVALID_HANDLE, || {
        match table().and_then(|t| t.native_handle(address as u64)) {
            Ok(h) => h.raw(),
            Err(e) => {
                set_last_error(e);
                WCPT_INVALID_HANDLE
            }
        }
    })
}

/// The handle of the native (host) function at `address` with `signature`:
/// one stable handle per (address, signature) pair, the same every time and
/// from any thread. A call through it is checked like a call through an
/// allocated handle (`wcpt_call_target(base, h, signature)` gives `address`,
/// another signature gives 0), so host functions placed in an engine's tables
/// are type-checked too. The same address with another signature has another
/// handle; with `WCPT_NATIVE_SIGNATURE` it is `wcpt_native_handle(address)`.
/// The handle lives until `wcpt_teardown` and cannot be freed or set. Lookups
/// of known pairs take no lock.
///
/// Returns `WCPT_INVALID_HANDLE` on failure; then `wcpt_last_error()` says
/// why: `WCPT_ERR_INVALID_ARGUMENT` (address 0 or non-canonical, or a
/// signature wider than `WCPT_SIGNATURE_BITS`), `WCPT_ERR_CAPACITY` or
/// `WCPT_ERR_OUT_OF_MEMORY`. Code regions are not checked.
#[no_mangle]
pub extern "C" fn wcpt_native_handle_typed(address: usize, signature: u64) -> wcpt_handle {
    boundary(WCPT_INVALID_HANDLE, || match table().and_then(|t| t.native_handle_typed(address as u64, signature)) {
        Ok(h) => h.raw(),
        Err(e) => {
            set_last_error(e);
            WCPT_INVALID_HANDLE
        }
    })
}

/// Gives every segment whose entries are all free back to the OS, if at
/// least `threshold` entries are free (a threshold below
/// `WCPT_ENTRIES_PER_SEGMENT` counts as `WCPT_ENTRIES_PER_SEGMENT`).
/// Returns the number of segments released.
///
/// Safe concurrently with every other call: allocators keep using the other
/// segments meanwhile, and a reader of a released segment sees it empty.
/// Costs O(committed segments); allocates nothing.
#[no_mangle]
pub extern "C" fn wcpt_sweep(threshold: libc::size_t) -> libc::size_t {
    boundary(0, || table().map_or(0, |t| t.sweep(threshold)))
}

/// Fills `*out` with the table's counters. Returns `WCPT_OK`, or
/// `WCPT_ERR_INVALID_ARGUMENT` if `out` is NULL.
///
/// # Safety
/// `out` must be NULL or point to writable memory for one `struct wcpt_stats`.
#[no_mangle]
pub unsafe extern "C" fn wcpt_stats(out: *mut WcptStats) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        if out.is_null() {
            return wcpt_status::WCPT_ERR_INVALID_ARGUMENT;
        }
        match table() {
            Ok(t) => {
                let s = t.stats();
                let c = WcptStats {
                    capacity: s.capacity,
                    committed_segments: s.committed_segments,
                    committed_bytes: s.committed_bytes,
                    live: s.live,
                    free: s.free,
                    native: s.native,
                };
                // SAFETY: non-null, and the caller guarantees it is writable.
                unsafe { out.write(c) };
                wcpt_status::WCPT_OK
            }
            Err(e) => e.into(),
        }
    })
}

/// The address of entry 0, for generated code: a handle's entry is at
/// `base + (handle & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE`, its entrypoint at
/// offset `WCPT_ENTRYPOINT_OFFSET` and check word at `WCPT_CHECK_OFFSET`
/// (generated code calls through it as `wcpt_call_target` shows).
/// All 2^24 entries are readable (never-used ones read as zero). Valid until
/// `wcpt_teardown`; NULL if the table cannot be created.
#[no_mangle]
pub extern "C" fn wcpt_table_base() -> *const libc::c_void {
    boundary(std::ptr::null(), || table().map_or(std::ptr::null(), |t| t.base().cast()))
}

/// A static, human-readable description of `status` ("unknown status" for a
/// value that is not a `wcpt_status`). Never NULL.
#[no_mangle]
pub extern "C" fn wcpt_status_str(status: WcptStatusArg) -> *const c_char {
    let s: &'static [u8] = match status.0 {
        0 => b"ok\0",
        1 => b"invalid handle\0",
        2 => b"double free: the handle's generation has already ended\0",
        3 => b"native handles cannot be freed or set\0",
        4 => b"invalid argument\0",
        5 => b"capacity exhausted\0",
        6 => b"out of memory\0",
        7 => b"entrypoint is not in a registered code region\0",
        8 => b"memory protection failed\0",
        9 => b"internal error\0",
        10 => b"already initialized with another configuration\0",
        _ => b"unknown status\0",
    };
    s.as_ptr().cast()
}

/// Why this thread's last failed `wcpt_alloc` or `wcpt_native_handle` failed
/// (`WCPT_OK` if none has failed on this thread). Successful calls leave it
/// unchanged, as with `errno`.
#[no_mangle]
pub extern "C" fn wcpt_last_error() -> wcpt_status {
    LAST_ERROR.try_with(Cell::get).unwrap_or(wcpt_status::WCPT_OK)
}

/// The write protection in force for the table.
#[no_mangle]
pub extern "C" fn wcpt_protection_mode() -> wcpt_protection {
    boundary(wcpt_protection::WCPT_PROTECTION_NONE, || match protect::mode() {
        protect::Mode::Pkeys => wcpt_protection::WCPT_PROTECTION_PKEYS,
        protect::Mode::Alias => wcpt_protection::WCPT_PROTECTION_ALIAS,
        protect::Mode::None => wcpt_protection::WCPT_PROTECTION_NONE,
    })
}

/// Puts the calling thread in the read-only state for the table: generated
/// code may then read it directly through `wcpt_table_base()`, and nothing
/// can write it outside the library. Never grants write access (and takes
/// away a write access it finds, except with an embedder's shared key,
/// whose write access is the engine's own window). Library calls never
/// need it.
///
/// The one rule that is always safe: call it before generated code reads the
/// table on any thread you did not create after loading wcpt yourself, and
/// after `siglongjmp` out of a signal handler. Cheap when nothing needs
/// repair (one `RDPKRU`). Returns `WCPT_OK`. Async-signal-safe.
#[no_mangle]
pub extern "C" fn wcpt_thread_attach() -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        protect::init();
        protect::ensure_read();
        wcpt_status::WCPT_OK
    })
}

/// Gives the current signal handler read-only access to the table (Linux
/// starts handlers with no access to protection keys): call it first in a
/// handler whose code reads the table directly. Never grants write access.
/// The interrupted code's rights come back when the handler returns.
/// Async-signal-safe.
#[no_mangle]
pub extern "C" fn wcpt_signal_enter() {
    protect::ensure_read();
}

/// Diagnostic: how many times wcpt has written a thread's PKRU register in
/// this process (0 unless the protection mode is `WCPT_PROTECTION_PKEYS`).
/// The README lists what each call costs; tests compare differences of this
/// counter around single calls.
#[no_mangle]
pub extern "C" fn wcpt_pkru_writes() -> u64 {
    protect::pkru_writes()
}

/// Registers `[start, start + len)` as executable code. While any region is
/// registered, `wcpt_alloc` and `wcpt_set` refuse entrypoints outside all of
/// them with `WCPT_ERR_NOT_CODE` (0 and native handles are exempt).
///
/// Returns `WCPT_OK`, `WCPT_ERR_INVALID_ARGUMENT` (empty, non-canonical,
/// wrapping, or overlapping a registered region) or `WCPT_ERR_CAPACITY`
/// (`WCPT_MAX_CODE_REGIONS` registered).
#[no_mangle]
pub extern "C" fn wcpt_code_region_add(start: usize, len: libc::size_t) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        status(table().and_then(|t| t.code_region_add(start as u64, len as u64)))
    })
}

/// Unregisters a region registered with exactly these bounds. Returns
/// `WCPT_OK` or `WCPT_ERR_INVALID_ARGUMENT` (no such region).
#[no_mangle]
pub extern "C" fn wcpt_code_region_remove(start: usize, len: libc::size_t) -> wcpt_status {
    boundary(wcpt_status::WCPT_ERR_INTERNAL, || {
        status(table().and_then(|t| t.code_region_remove(start as u64, len as u64)))
    })
}

/// The library's version, "MAJOR.MINOR.PATCH" (static, never NULL).
#[no_mangle]
pub extern "C" fn wcpt_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_cargo() {
        assert_eq!(WCPT_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(WCPT_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(WCPT_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
    }

    #[test]
    fn soname_version_follows_the_rule() {
        // What the Makefile passes as -soname (SOVER) and build.rs computes.
        let want = if WCPT_VERSION_MAJOR == 0 {
            format!("0.{WCPT_VERSION_MINOR}")
        } else {
            WCPT_VERSION_MAJOR.to_string()
        };
        assert_eq!(env!("WCPT_SOVER"), want);
        let makefile = include_str!("../Makefile");
        assert!(makefile.contains("SOVER       := $(if $(filter 0,$(MAJOR)),0.$(MINOR),$(MAJOR))"));
        assert!(makefile.contains("-soname,libwcpt.so.$(SOVER)"));
        assert!(makefile.contains("WCPT_%s {"), "the version script is WCPT_<SOVER>");
    }

    #[test]
    fn status_strings_cover_every_status() {
        for s in 0..=9u32 {
            // SAFETY: wcpt_status_str returns a static NUL-terminated string.
            let text = unsafe { std::ffi::CStr::from_ptr(wcpt_status_str(WcptStatusArg(s))) };
            assert_ne!(text.to_bytes(), b"unknown status");
        }
        // SAFETY: as above.
        let text = unsafe { std::ffi::CStr::from_ptr(wcpt_status_str(WcptStatusArg(77))) };
        assert_eq!(text.to_bytes(), b"unknown status");
    }
}
