//! No export can reach Rust's allocation error handler: with a global
//! allocator that counts (and, on request, refuses) the calling thread's
//! allocations, every `wcpt_*` call is made and checked to allocate nothing
//! from the Rust heap, except two fallible sites that must turn a refusal
//! into `WCPT_ERR_OUT_OF_MEMORY` and change nothing: the `Table` value made
//! by `wcpt_init`, and the code region list's growth.
//!
//! One process-wide table, so the tests in this binary run one at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use wcpt::ffi::*;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static REFUSE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to System; refusing returns null, which GlobalAlloc allows.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        if REFUSE.try_with(Cell::get).unwrap_or(false) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        if REFUSE.try_with(Cell::get).unwrap_or(false) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` with every Rust heap allocation of this thread refused, and
/// returns its result with the number of allocations it attempted.
fn refusing<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCS.with(Cell::get);
    REFUSE.with(|r| r.set(true));
    let out = f();
    REFUSE.with(|r| r.set(false));
    (out, ALLOCS.with(Cell::get) - before)
}

#[test]
fn no_export_allocates_from_the_rust_heap() {
    let _g = SERIAL.lock().unwrap();
    // Creation: the `Table` value is the one heap allocation, made with a
    // checked `std::alloc::alloc`. Refused, init says so and leaves nothing.
    // SAFETY: SERIAL keeps the other tests of this binary out; no other
    // thread uses wcpt.
    unsafe { wcpt_teardown() };
    let (s, n) = refusing(|| wcpt_init());
    assert_eq!((s, n), (wcpt_status::WCPT_ERR_OUT_OF_MEMORY, 1), "wcpt_init with the heap refused");
    assert_eq!(refusing(|| wcpt_get(0x0100_0001)), (0, 0), "no table was left behind");
    assert_eq!(wcpt_init(), wcpt_status::WCPT_OK);
    type Call = (&'static str, Box<dyn Fn() -> bool>);
    let calls: Vec<Call> = vec![
        ("alloc/get/set/free", Box::new(|| {
            let h = wcpt_alloc(0x5000, 1);
            let ok = wcpt_get(h) == 0x5000 && wcpt_get_checked(h, 1) == 0x5000;
            let ok = ok && wcpt_set(h, 0x6000) == wcpt_status::WCPT_OK;
            let eps = [0x7000usize];
            // SAFETY: one element each.
            let ok = ok && unsafe { wcpt_set_many(&h, eps.as_ptr(), 1) } == wcpt_status::WCPT_OK;
            ok && wcpt_free(h) == wcpt_status::WCPT_OK && wcpt_free(h) == wcpt_status::WCPT_ERR_DOUBLE_FREE
        })),
        ("10,000 allocs (segment commits)", Box::new(|| {
            let hs: [u32; 10_000] = std::array::from_fn(|i| wcpt_alloc(0x10000 + 16 * i, 2));
            hs.iter().all(|&h| h != WCPT_INVALID_HANDLE) && hs.iter().all(|&h| wcpt_free(h) == wcpt_status::WCPT_OK)
        })),
        ("native handles (map growth)", Box::new(|| {
            (1..500usize).all(|i| wcpt_native_handle(0x7e00_0000_0000 + 16 * i) != WCPT_INVALID_HANDLE)
        })),
        ("sweep and stats", Box::new(|| {
            wcpt_sweep(0);
            let mut s = WcptStats::default();
            // SAFETY: a valid out-pointer.
            let st = unsafe { wcpt_stats(&mut s) };
            st == wcpt_status::WCPT_OK && s.native >= 499
        })),
        ("protection and strings", Box::new(|| {
            let _ = (wcpt_protection_mode(), wcpt_pkru_writes(), wcpt_version(), wcpt_last_error());
            wcpt_signal_enter();
            wcpt_thread_attach() == wcpt_status::WCPT_OK && !wcpt_table_base().is_null()
        })),
        ("region removal", Box::new(|| wcpt_code_region_remove(0x1000, 0x1000) == wcpt_status::WCPT_ERR_INVALID_ARGUMENT)),
    ];
    for (name, call) in &calls {
        let (ok, n) = refusing(call);
        assert!(ok, "{name} failed with the heap refused");
        assert_eq!(n, 0, "{name} allocated from the Rust heap");
    }
    // SAFETY: as above.
    let (_, n) = refusing(|| unsafe { wcpt_teardown() });
    assert_eq!(n, 0, "wcpt_teardown");
}

#[test]
fn a_refused_region_list_growth_is_out_of_memory_and_changes_nothing() {
    let _g = SERIAL.lock().unwrap();
    assert_eq!(wcpt_init(), wcpt_status::WCPT_OK);
    let (s, n) = refusing(|| wcpt_code_region_add(0x10_0000, 0x1000));
    assert!(n > 0, "the first region grows the list");
    assert_eq!(s, wcpt_status::WCPT_ERR_OUT_OF_MEMORY);
    // Nothing was registered: entrypoints anywhere are still accepted.
    let h = wcpt_alloc(0x90_0000, 1);
    assert_ne!(h, WCPT_INVALID_HANDLE);
    assert_eq!(wcpt_free(h), wcpt_status::WCPT_OK);
    // With the heap back, the same call works.
    assert_eq!(wcpt_code_region_add(0x10_0000, 0x1000), wcpt_status::WCPT_OK);
    assert_eq!(wcpt_alloc(0x90_0000, 1), WCPT_INVALID_HANDLE);
    assert_eq!(wcpt_last_error(), wcpt_status::WCPT_ERR_NOT_CODE);
    assert_eq!(wcpt_code_region_remove(0x10_0000, 0x1000), wcpt_status::WCPT_OK);
}

#[test]
fn lookups_before_the_table_exists_create_nothing() {
    let _g = SERIAL.lock().unwrap();
    // SAFETY: SERIAL keeps the other tests of this binary out; no other
    // thread uses wcpt.
    unsafe { wcpt_teardown() };
    let ((a, b), n) = refusing(|| (wcpt_get(0x0100_0001), wcpt_get_checked(0x0100_0001, 1)));
    assert_eq!((a, b, n), (0, 0, 0));
    // Nothing was created: the table is made only by the next real call.
    assert_eq!(wcpt_init(), wcpt_status::WCPT_OK);
}
