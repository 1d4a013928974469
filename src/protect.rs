//! Write protection of the table with memory protection keys (pkeys).
//!
//! One key per process is allocated when the library is loaded (an
//! `.init_array` constructor). Everything the library writes that says where
//! a call goes or whether an entry is live (entries, metadata, generation
//! bytes, freelist heads, segment states, the native map) lives in memory
//! tagged with that key; see `memory`.
//!
//! For the key, a thread's PKRU is in one of three states:
//!
//! | bits (AD, WD) | state       | who is in it                                  |
//! |---------------|-------------|-----------------------------------------------|
//! | (1, *)        | no access   | threads that predate the key, their children, signal handlers, code after `siglongjmp` out of a handler |
//! | (0, 1)        | read-only   | the loading thread, threads it creates, any thread after a library call |
//! | (0, 0)        | read-write  | only inside a [`Window`]                      |
//!
//! The rules that keep writes inside windows:
//! - [`ensure_read`] (every library call that reads protected memory,
//!   `wcpt_thread_attach`, `wcpt_signal_enter`) puts the key in exactly the
//!   read-only state. It never grants write access, and it also takes away a
//!   write access it finds.
//! - A [`Window`] clears both bits and, when it closes, sets exactly the
//!   read-only state: never "whatever it was before".
//! - Windows do not nest. Code that needs one while another is open takes a
//!   `&Window` as proof instead of opening its own, so closing a window can
//!   never end an outer one early.
//! - A signal handler gets its own PKRU from the kernel, and the interrupted
//!   code's PKRU (even mid-window) comes back on `sigreturn`.
//!
//! Where `pkey_alloc` fails (no PKU in the CPU or kernel, valgrind, another
//! architecture), the table is protected by an alias instead ([`Mode::Alias`],
//! see `memory`): the public view of the entries is read-only, and the
//! library writes through a second mapping at a random address. Then, as
//! with `WCPT_PROTECT=off`, the key is `-1` and every function here is a
//! single load and branch.
//!
//! `WCPT_PROTECT` forces a mode: `off`, `alias` or `pkeys`. A mode that
//! cannot be had falls back to the next weaker one (pkeys, alias, none), and
//! [`mode`] reports the mode in force.

use crate::arch::{self, Rights};
use crate::handle::Error;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

/// The key protecting the tables (wcpt's own or the embedder's), or -1 when
/// they are not protected by pkeys.
static PKEY: AtomicI32 = AtomicI32::new(-1);
/// The key wcpt allocated itself (at load, or at a table's creation), or -1:
/// none (no PKU, none left, not asked for, or freed for an embedder's key).
static OWN_KEY: AtomicI32 = AtomicI32::new(-1);
/// Whether `PKEY` is the embedder's: windows then restore the thread's
/// rights for it exactly, and lookups never take a write access away.
static SHARED: AtomicBool = AtomicBool::new(false);
/// Whether the CPU and kernel support protection keys (a `pkey_alloc` has
/// worked, or failed only because no key was left) ...
static PKU: AtomicBool = AtomicBool::new(false);
/// ... or do not (a `pkey_alloc` failed otherwise).
static NO_PKU: AtomicBool = AtomicBool::new(false);
/// Whether tables use the alias protection.
static ALIAS: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();
/// Live tables: protection is process-wide, so it may change only while
/// there are none. Also serialises the changes.
static TABLES: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Protection in force (the C ABI's `wcpt_protection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// The table is writable by any code in the process.
    None = 0,
    /// The table is write-protected with a memory protection key.
    Pkeys = 1,
    /// The table's public view is read-only; the library writes through an
    /// alias mapping at a random address (no PKU needed).
    Alias = 2,
}

/// What `WCPT_PROTECT` asks for: `off`, `alias`, `pkeys`, or nothing (the
/// strongest available). Reads the variable without allocating: this runs
/// in a load-time constructor.
fn requested_by_env() -> Option<Mode> {
    // SAFETY: getenv with a NUL-terminated name; the result is NULL or a
    // NUL-terminated string owned by the environment, read at once.
    unsafe {
        let v = libc::getenv(c"WCPT_PROTECT".as_ptr());
        if v.is_null() {
            return None;
        }
        match std::ffi::CStr::from_ptr(v).to_bytes() {
            b"off" => Some(Mode::None),
            b"alias" => Some(Mode::Alias),
            b"pkeys" => Some(Mode::Pkeys),
            _ => None,
        }
    }
}

/// Chooses the mode at load, for the tables created without a
/// configuration of their own: pkeys where `pkey_alloc` works, else the
/// alias where `memfd_create` works, else none; `WCPT_PROTECT` can ask for
/// a weaker one. The key is allocated read-only for the calling thread (the
/// kernel sets that thread's PKRU for it), so threads created after the
/// load inherit read access; other existing threads have no access until a
/// repair. A table's [`Config`](crate::Config) may choose otherwise
/// ([`register`]).
pub(crate) fn init() {
    INIT.call_once(|| {
        let wanted = requested_by_env().unwrap_or(Mode::Pkeys);
        if wanted == Mode::None {
            return;
        }
        if wanted == Mode::Pkeys {
            if let Some(key) = alloc_key() {
                OWN_KEY.store(key, Ordering::Relaxed);
                PKEY.store(key, Ordering::Release);
                return;
            }
        }
        if alias_supported() {
            ALIAS.store(true, Ordering::Release);
        }
    });
}

/// Whether this build can use protection keys at all (an architecture
/// with a key register, Linux, not a loom model).
const KEYS_BUILT: bool = cfg!(all(target_os = "linux", not(loom))) && arch::MAX_KEY > 0;

/// A new protection key, read-only for the calling thread, or `None` (and
/// notes whether the CPU and kernel support keys at all).
fn alloc_key() -> Option<i32> {
    if KEYS_BUILT {
        // SAFETY: pkey_alloc has no memory-safety preconditions; it returns
        // a key or -1.
        let key = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE) };
        if key > 0 && key <= i64::from(arch::MAX_KEY) {
            PKU.store(true, Ordering::Relaxed);
            return Some(key as i32);
        }
        if key > 0 {
            // SAFETY: frees the key just allocated, which nothing uses.
            unsafe { libc::syscall(libc::SYS_pkey_free, key) };
        }
        // ENOSPC means both "no key left" and "no keys at all" (the kernel
        // then has one key, 0): the CPU tells which.
        if arch::pkeys_supported() {
            PKU.store(true, Ordering::Relaxed);
            return None;
        }
    }
    NO_PKU.store(true, Ordering::Relaxed);
    None
}

/// Whether `key` is a key this process allocated (an embedder's): a page
/// can be tagged with it.
fn key_usable(key: i32) -> bool {
    if !KEYS_BUILT || key <= 0 || key > arch::MAX_KEY {
        return false;
    }
    // SAFETY: a private page of our own, tagged with `key`, then unmapped.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let p = libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if p == libc::MAP_FAILED {
            return false;
        }
        let rc = libc::syscall(libc::SYS_pkey_mprotect, p, page, libc::PROT_READ, key);
        libc::munmap(p, page);
        rc == 0
    }
}

/// The protection state the tables share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    None,
    Alias,
    /// wcpt's own key (allocated when the state is applied if it has none).
    OwnKey,
    Shared(i32),
}

impl State {
    fn current() -> State {
        let k = PKEY.load(Ordering::Relaxed);
        if k > 0 {
            if SHARED.load(Ordering::Relaxed) {
                State::Shared(k)
            } else {
                State::OwnKey
            }
        } else if ALIAS.load(Ordering::Relaxed) {
            State::Alias
        } else {
            State::None
        }
    }
}

/// What a table's configuration asks of the protection, resolved against
/// the machine and the environment, or why it cannot be had. May allocate
/// wcpt's own key if it has none and `may_alloc` (no table exists).
fn resolve(config: &crate::Config, may_alloc: bool) -> Result<State, Error> {
    // A mode set by the embedder is exact; one from WCPT_PROTECT (where the
    // embedder left the default) falls back to the next weaker, as it
    // always has; none at all is the best that works.
    let (wanted, exact) = match config.protection {
        Some(m) => (Some(m), true),
        None => (requested_by_env(), false),
    };
    let state = match wanted {
        Some(Mode::None) => State::None,
        Some(Mode::Pkeys) => match config.pkey {
            Some(k) if key_usable(k as i32) => State::Shared(k as i32),
            // PKU works, so the key is one this process never allocated.
            Some(_) if pku_works(may_alloc) => return Err(Error::InvalidArgument),
            Some(_) => return Err(Error::Protection),
            None if own_key(may_alloc) => State::OwnKey,
            None if exact => return Err(Error::Protection),
            None if alias_supported() => State::Alias,
            None => State::None,
        },
        Some(Mode::Alias) if alias_supported() => State::Alias,
        Some(Mode::Alias) if exact => return Err(Error::Protection),
        Some(Mode::Alias) => State::None,
        None if own_key(may_alloc) => State::OwnKey,
        None if alias_supported() => State::Alias,
        None => State::None,
    };
    if config.require_protection && state == State::None {
        return Err(Error::Protection);
    }
    Ok(state)
}

/// Whether wcpt has a key of its own, allocating one if it has none, may,
/// and PKU has not been found missing. Where none is left (`ENOSPC`), it
/// has none: the caller falls back.
fn own_key(may_alloc: bool) -> bool {
    if OWN_KEY.load(Ordering::Relaxed) > 0 {
        return true;
    }
    if !may_alloc || NO_PKU.load(Ordering::Relaxed) {
        return false;
    }
    match alloc_key() {
        Some(k) => {
            OWN_KEY.store(k, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Whether the CPU and kernel support protection keys (asking the kernel
/// once if nothing has told yet).
fn pku_works(may_alloc: bool) -> bool {
    if !PKU.load(Ordering::Relaxed) && !NO_PKU.load(Ordering::Relaxed) {
        own_key(may_alloc);
    }
    PKU.load(Ordering::Relaxed)
}

/// A table's share of the process-wide protection: while any exists, the
/// protection does not change. Dropped with the table.
pub(crate) struct Registration(());

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = TABLES.lock().unwrap_or_else(|p| p.into_inner());
        *live = live.saturating_sub(1);
    }
}

/// Registers a new table with `config` (validated): applies the protection
/// it asks for if no table exists, or checks that it is the protection in
/// force. [`Error::Protection`] if it cannot be had here (or none can, with
/// `require_protection`), [`Error::AlreadyInitialized`] if other tables use
/// another, [`Error::InvalidArgument`] for an embedder's key that this
/// process did not allocate.
pub(crate) fn register(config: &crate::Config) -> Result<Registration, Error> {
    init();
    let mut live = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    let state = resolve(config, *live == 0)?;
    if state != State::current() {
        if *live > 0 {
            return Err(Error::AlreadyInitialized);
        }
        apply(state);
    }
    *live += 1;
    Ok(Registration(()))
}

/// Makes `state` the protection of the tables created from now on (no
/// table exists).
fn apply(state: State) {
    let own = OWN_KEY.load(Ordering::Relaxed);
    let (key, shared, alias) = match state {
        State::None => (-1, false, false),
        State::Alias => (-1, false, true),
        State::OwnKey => (own, false, false),
        State::Shared(k) => {
            // Keys are scarce (15 per process): an engine that shares its
            // own gets wcpt's back.
            if own > 0 && KEYS_BUILT {
                // SAFETY: our own key, which no memory uses (no table exists).
                unsafe {
                    libc::syscall(libc::SYS_pkey_free, own);
                }
                OWN_KEY.store(-1, Ordering::Relaxed);
            }
            (k, true, false)
        }
    };
    SHARED.store(shared, Ordering::Relaxed);
    ALIAS.store(alias, Ordering::Relaxed);
    PKEY.store(key, Ordering::Release);
}

/// Whether the key in force is an embedder's.
#[inline]
fn shared() -> bool {
    SHARED.load(Ordering::Relaxed)
}

/// Whether `memfd_create` works here (what the alias mode needs).
#[cfg(not(loom))]
fn alias_supported() -> bool {
    // SAFETY: creates and closes a file descriptor; no memory is touched.
    unsafe {
        let fd = libc::memfd_create(c"wcpt-probe".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return false;
        }
        libc::close(fd);
        true
    }
}

/// Loom models run unprotected.
#[cfg(loom)]
fn alias_supported() -> bool {
    false
}

/// Whether tables use the alias protection.
#[inline]
pub(crate) fn alias() -> bool {
    ALIAS.load(Ordering::Relaxed)
}

/// `pkey_alloc`'s flag for read-only (the same value on x86-64 and arm64).
const PKEY_DISABLE_WRITE: libc::c_ulong = 2;

/// Runs [`init`] when the library is loaded, before any thread of the
/// embedder can be created after the load.
#[cfg(all(target_os = "linux", not(loom)))]
#[used]
#[link_section = ".init_array"]
static LOAD_TIME_INIT: extern "C" fn() = {
    extern "C" fn at_load() {
        init();
    }
    at_load
};

/// The key, or `None` when unprotected.
#[inline]
pub(crate) fn key() -> Option<i32> {
    let k = PKEY.load(Ordering::Relaxed);
    (k > 0).then_some(k)
}

/// The protection in force.
pub fn mode() -> Mode {
    init();
    if key().is_some() {
        Mode::Pkeys
    } else if alias() {
        Mode::Alias
    } else {
        Mode::None
    }
}

/// PKRU writes made by the library, striped by thread so that counting costs
/// no shared cache line. Only ever incremented after `pkey_alloc` succeeded.
struct WriteCount([crate::sync::CachePadded<AtomicU64>; 16]);

static WRITES: WriteCount = WriteCount([const { crate::sync::CachePadded(AtomicU64::new(0)) }; 16]);

/// How many times the library has written PKRU in this process (0 unless
/// protection is [`Mode::Pkeys`]). Exact once the counted calls have returned.
pub fn pkru_writes() -> u64 {
    WRITES.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// The key register (x86's PKRU, arm64's POR_EL0), with every write counted.
mod pkru {
    use super::*;

    #[inline]
    pub(super) fn read() -> u64 {
        arch::key_register()
    }

    #[inline]
    pub(super) fn write(value: u64) {
        arch::set_key_register(value);
        // Relaxed: a statistic. The stripe is picked by the thread pointer,
        // so threads rarely share one; the RMW keeps the count exact anyway.
        WRITES.0[crate::thread_slot::thread_hash() >> (usize::BITS - 4)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Puts the calling thread in the read-only state for the table: read access
/// if it lacked it (a thread that predates the key, or a signal handler), and
/// no write access even if something left it. One `RDPKRU`, plus one `WRPKRU`
/// only when the state was not already read-only. Async-signal-safe.
///
/// Must not be called inside a [`Window`] (it would close it).
#[inline]
pub(crate) fn ensure_read() {
    if let Some(k) = key() {
        let reg = pkru::read();
        if arch::rights(reg, k) != Rights::Read {
            ensure_read_slow(k, reg);
        }
    }
}

#[cold]
#[inline(never)]
fn ensure_read_slow(k: i32, reg: u64) {
    // The embedder's key: a thread with no access (as in a signal handler)
    // gets read-only; one with write access keeps it (an open window of
    // the engine's). wcpt's own key: exactly read-only.
    if !shared() || arch::rights(reg, k) == Rights::None {
        pkru::write(arch::with_rights(reg, k, Rights::Read));
    }
}

/// A write window: while it lives, this thread may write the table.
///
/// Not `Send` (PKRU is per thread) and crate-private: only the library opens
/// windows, and every one is a scoped local that closes on drop.
pub(crate) struct Window {
    /// The key register's value that closes the window, if it opened one.
    close: Option<u64>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Window {
    /// Opens a window (a no-op when unprotected). Windows do not nest: a
    /// callee that writes takes `&Window` from its caller.
    #[inline]
    pub(crate) fn open() -> Window {
        let Some(k) = key() else { return Window { close: None, _not_send: std::marker::PhantomData } };
        let pkru = pkru::read();
        if arch::rights(pkru, k) != Rights::ReadWrite {
            pkru::write(arch::with_rights(pkru, k, Rights::ReadWrite));
        }
        // Close to exactly read-only, whatever the state was before: even if
        // the thread was (wrongly) writable already, it will not be after.
        // With the embedder's key, close to exactly the rights the thread
        // had: an engine's window open around this call stays open, and one
        // closed stays closed (windows nest both ways).
        let close = if shared() { pkru } else { arch::with_rights(pkru, k, Rights::Read) };
        Window { close: Some(close), _not_send: std::marker::PhantomData }
    }
}

impl Window {
    /// A window where the caller knows none needs opening: a table created
    /// without pkeys (protection does not change while any table lives:
    /// see `register`). Were it wrong, a write would fault, not go through.
    #[inline(always)]
    pub(crate) fn unprotected() -> Window {
        debug_assert!(key().is_none());
        Window { close: None, _not_send: std::marker::PhantomData }
    }
}

impl Drop for Window {
    #[inline]
    fn drop(&mut self) {
        if let Some(pkru) = self.close {
            pkru::write(pkru);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_repair_gives_read_only_never_read_write() {
        // Linux starts a thread that predates a key (and a signal handler)
        // with no access to it; every key's repair is exactly read-only.
        for k in 1..=arch::MAX_KEY {
            let none = arch::with_rights(u64::MAX, k, Rights::None);
            assert_eq!(arch::rights(arch::with_rights(none, k, Rights::Read), k), Rights::Read);
        }
    }
}
