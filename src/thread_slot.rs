//! Thread slots: a small, process-wide number for every thread that
//! allocates, so that each table can keep a cache of free entries per thread
//! (see `table/cache.rs`), and the two barriers that let another thread take
//! a cache away from its owner.
//!
//! A thread finds its slot without thread-local storage (which in a shared
//! library costs a call to `__tls_get_addr`): its thread pointer picks two
//! candidate slots, and the slot is the one of the two whose owner word holds
//! that thread pointer. A thread claims a free candidate on first use and
//! gives it back when it exits (a pthread key destructor). A thread whose
//! two candidates are both taken by other threads has no slot and uses the
//! shared freelists only. Thread pointers are unique among live threads, so
//! two live threads never share a slot.
//!
//! The barriers are asymmetric: the owner of a cache runs a *light* barrier
//! (a compiler fence) on every operation, and a thread taking caches away
//! runs a *heavy* one (`membarrier`, which makes every running thread of the
//! process execute a full memory barrier) once. Together they order the
//! owner's "busy" store before its load of the "request" flag as a full
//! fence on the owner's side would, at no cost to the owner. Without
//! `membarrier` the caches are off.

#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering::*};

/// Number of thread slots (each table has one cache per slot).
#[cfg(not(loom))]
pub(crate) const SLOTS: usize = 256;
#[cfg(loom)]
pub(crate) const SLOTS: usize = 3;

#[cfg(not(loom))]
const SLOT_BITS: u32 = SLOTS.trailing_zeros();

/// Per slot: 0, or the thread pointer of the thread that owns it. Ordinary
/// memory: a corrupted word can only give a thread no slot, or a slot that
/// another thread also uses, which the caches' busy/request protocol does
/// not guard against; see docs/DESIGN.md (thread caches).
#[cfg(not(loom))]
static OWNERS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// Run on a thread that is exiting, before its slot is given back (the C
/// ABI empties that thread's stack in the process-wide table).
#[cfg(not(loom))]
static EXIT_HOOK: std::sync::atomic::AtomicPtr<()> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// The calling thread's thread pointer: the same for every call on one
/// thread, different between live threads (`arch.rs`). Async-signal-safe.
#[cfg(not(loom))]
pub(crate) use crate::arch::thread_pointer;

/// A hash of the calling thread's identity, the same for every call on one
/// thread, different between threads (mostly): the thread pointer times a
/// Fibonacci constant. Take its *top* bits (`>> (64 - k)`): those mix every
/// bit of the pointer, which for threads differ mostly in high bits.
/// Async-signal-safe. (0 under loom, whose models are deterministic.)
#[inline]
pub(crate) fn thread_hash() -> usize {
    #[cfg(not(loom))]
    {
        thread_pointer().wrapping_mul(HASH)
    }
    #[cfg(loom)]
    {
        0
    }
}

/// The calling thread's slot, claiming one on first use; `None` if both of
/// its candidates are owned by other threads, or it cannot be given back
/// at exit. Async-signal-safe once the thread has a slot.
#[cfg(not(loom))]
#[inline]
pub(crate) fn current() -> Option<usize> {
    let tp = thread_pointer();
    // The first candidate alone on the fast path (a thread claims it first).
    let a = tp.wrapping_mul(HASH) >> (usize::BITS - SLOT_BITS);
    // Relaxed: only this thread stores its own pointer in a slot, and only
    // it removes it, so this thread's loads see its own latest stores.
    if OWNERS[a].load(Relaxed) == tp {
        return Some(a);
    }
    second_candidate(tp)
}

/// The calling thread's slot if it is its first candidate (the common
/// case), else `None`, without claiming. Async-signal-safe.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn current_if_claimed() -> Option<usize> {
    let tp = thread_pointer();
    let a = tp.wrapping_mul(HASH) >> (usize::BITS - SLOT_BITS);
    // Relaxed: as in `current`.
    (OWNERS[a].load(Relaxed) == tp).then_some(a)
}

/// The slot when it is not the first candidate: the second, or a new claim.
#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn second_candidate(tp: usize) -> Option<usize> {
    let (a, b) = candidates(tp);
    if OWNERS[b].load(Relaxed) == tp {
        return Some(b);
    }
    claim(tp, a, b)
}

/// The calling thread's slot if it has one, without claiming.
#[cfg(not(loom))]
pub(crate) fn owned() -> Option<usize> {
    let tp = thread_pointer();
    let (a, b) = candidates(tp);
    [a, b].into_iter().find(|&s| OWNERS[s].load(Relaxed) == tp)
}

/// The Fibonacci hashing constant (2^64 / the golden ratio).
#[cfg(not(loom))]
const HASH: usize = 0x9E37_79B9_7F4A_7C15;

/// The two candidate slots of a thread pointer: two disjoint bit fields of
/// its Fibonacci hash (the top bits mix every bit of the pointer).
#[cfg(not(loom))]
#[inline(always)]
fn candidates(tp: usize) -> (usize, usize) {
    let h = tp.wrapping_mul(HASH);
    let a = h >> (usize::BITS - SLOT_BITS);
    let b = (h >> (usize::BITS - 2 * SLOT_BITS)) & (SLOTS - 1);
    (a, if b == a { a ^ 1 } else { b })
}

/// The key whose destructor gives a slot back at thread exit; u32::MAX
/// until created, u32::MAX - 1 if it cannot be.
#[cfg(not(loom))]
static KEY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

#[cfg(not(loom))]
#[cold]
fn claim(tp: usize, a: usize, b: usize) -> Option<usize> {
    if !barriers_available() {
        return None;
    }
    let key = exit_key()?;
    for s in [a, b] {
        // Acquire: the previous owner's last use of this slot's caches
        // (before its Release in `give_back`) happens before ours.
        if OWNERS[s].compare_exchange(0, tp, Acquire, Relaxed).is_ok() {
            // The key's value is the slot + 1 (non-null, so the destructor
            // runs). glibc stores it in the thread descriptor for the first
            // 32 keys, without allocating.
            // SAFETY: `key` was created by pthread_key_create.
            if unsafe { libc::pthread_setspecific(key, (s + 1) as *const libc::c_void) } != 0 {
                OWNERS[s].store(0, Release);
                return None;
            }
            return Some(s);
        }
    }
    None
}

#[cfg(not(loom))]
fn exit_key() -> Option<libc::pthread_key_t> {
    match KEY.load(Acquire) {
        u32::MAX => {}
        k if k == u32::MAX - 1 => return None,
        k => return Some(k),
    }
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = CREATE.lock().unwrap_or_else(|p| p.into_inner());
    if KEY.load(Acquire) == u32::MAX {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer and `give_back` has the
        // destructor signature.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(give_back)) };
        let value = if rc == 0 && key < u32::MAX - 1 { key } else { u32::MAX - 1 };
        KEY.store(value, Release);
    }
    match KEY.load(Acquire) {
        k if k >= u32::MAX - 1 => None,
        k => Some(k),
    }
}

/// The pthread key destructor: runs the exit hook on the slot, then frees it.
#[cfg(not(loom))]
extern "C" fn give_back(value: *mut libc::c_void) {
    let slot = (value as usize).wrapping_sub(1);
    if slot >= SLOTS || OWNERS[slot].load(Relaxed) != thread_pointer() {
        return;
    }
    let hook = EXIT_HOOK.load(Acquire);
    if !hook.is_null() {
        // SAFETY: EXIT_HOOK only ever holds a `fn()` (set_exit_hook).
        let f: fn() = unsafe { std::mem::transmute::<*mut (), fn()>(hook) };
        f();
    }
    // Release: our last use of the slot's caches happens before the next
    // owner's claim (Acquire).
    OWNERS[slot].store(0, Release);
}

/// Sets the function run on a thread with a slot when it exits.
#[cfg(not(loom))]
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) fn set_exit_hook(f: fn()) {
    EXIT_HOOK.store(f as *mut (), Release);
}

/// In a fork child: the slots of the parent's other threads are free (those
/// threads do not exist here); the calling thread keeps its own.
#[cfg(not(loom))]
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) fn after_fork_child() {
    let mine = owned();
    for (s, o) in OWNERS.iter().enumerate() {
        if Some(s) != mine {
            o.store(0, Relaxed);
        }
    }
    // The child's address space is new to membarrier: register it again
    // (heavy_barrier also does it on demand).
    register();
}

/// Whether another thread's slot is owned (a live thread may use its cache).
#[cfg(not(loom))]
pub(crate) fn is_owned(slot: usize) -> bool {
    OWNERS[slot].load(Relaxed) != 0
}

/// The owner's side, between its "busy" store and its "request" load.
#[inline(always)]
pub(crate) fn light_barrier() {
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(SeqCst);
    #[cfg(loom)]
    crate::sync::fence(crate::sync::Ordering::SeqCst);
}

/// The taker's side, between its "request" stores and its "busy" loads:
/// every thread of the process runs a full barrier before this returns.
pub(crate) fn heavy_barrier() {
    #[cfg(not(loom))]
    {
        if membarrier(libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
            // Not registered (a fork child registers again): register, retry,
            // and as a last resort use the global command, which needs no
            // registration (slower: it waits for an RCU grace period).
            register();
            if membarrier(libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
                membarrier(libc::MEMBARRIER_CMD_GLOBAL);
            }
        }
    }
    #[cfg(loom)]
    crate::sync::fence(crate::sync::Ordering::SeqCst);
}

#[cfg(not(loom))]
fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes two integer arguments and touches no memory.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0) }
}

#[cfg(not(loom))]
fn register() -> bool {
    membarrier(libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
}

/// Whether the heavy barrier works here (membarrier with the private
/// expedited command, registered); checked once.
#[cfg(not(loom))]
pub(crate) fn barriers_available() -> bool {
    static STATE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    match STATE.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let query = membarrier(libc::MEMBARRIER_CMD_QUERY);
            let ok = query > 0
                && query & libc::c_long::from(libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0
                && !cache_off_by_env()
                && register();
            STATE.store(if ok { 1 } else { 2 }, Relaxed);
            ok
        }
    }
}

/// `WCPT_THREAD_CACHE=off` turns the thread caches off (for comparisons).
#[cfg(not(loom))]
fn cache_off_by_env() -> bool {
    // SAFETY: getenv with a NUL-terminated name; the result is NULL or a
    // NUL-terminated string that we only read here, before any setenv of
    // ours (we have none).
    unsafe {
        let v = libc::getenv(c"WCPT_THREAD_CACHE".as_ptr());
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"off"
    }
}

#[cfg(loom)]
pub(crate) fn barriers_available() -> bool {
    true
}

#[cfg(loom)]
loom::lazy_static! {
    /// Slots handed out in this execution of the model.
    static ref NEXT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
}

#[cfg(loom)]
loom::thread_local! {
    static MINE: std::cell::Cell<usize> = std::cell::Cell::new(usize::MAX);
}

/// Under loom: slots 0, 1, ... in the order threads first ask.
#[cfg(loom)]
pub(crate) fn current() -> Option<usize> {
    let s = MINE.with(|m| {
        if m.get() == usize::MAX {
            m.set(NEXT.fetch_add(1, crate::sync::Ordering::Relaxed));
        }
        m.get()
    });
    (s < SLOTS).then_some(s)
}

#[cfg(loom)]
pub(crate) fn owned() -> Option<usize> {
    let s = MINE.with(|m| m.get());
    (s < SLOTS).then_some(s)
}

#[cfg(loom)]
#[allow(dead_code)] // the fast paths are the C ABI's
pub(crate) fn current_if_claimed() -> Option<usize> {
    owned()
}

/// Under loom a slot may hold an exited thread's cache; treat all as owned.
#[cfg(loom)]
pub(crate) fn is_owned(_slot: usize) -> bool {
    true
}

