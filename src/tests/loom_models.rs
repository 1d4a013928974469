//! loom models of the lock-free paths, on a table of two segments of four
//! entries (three allocatable in each). Run with `make loom` (deeper) or as
//! part of `make check` (LOOM_MAX_PREEMPTIONS=2).

use crate::handle::*;
use crate::{Error, Handle, Table};
use loom::sync::Arc;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

#[test]
fn alloc_and_free_hand_out_distinct_entries() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let h0 = t.alloc(0x100, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || {
            let h = t2.alloc(0x200, 2).unwrap();
            assert_eq!(t2.get_checked(h, 2), 0x200);
            h
        });
        t.free(h0).unwrap();
        let h1 = t.alloc(0x300, 3).unwrap();
        let h2 = th.join().unwrap();
        assert_ne!(h1.index(), h2.index());
        assert_eq!(t.get(h1), 0x300);
        assert_eq!(t.get(h2), 0x200);
        assert_eq!(t.get(h0), 0);
        assert_eq!(t.stats().live, 2);
    });
}

#[test]
fn racing_frees_of_one_handle_have_one_winner() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let h = t.alloc(0x100, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || t2.free(h));
        let mine = t.free(h);
        let theirs = th.join().unwrap();
        let wins = [mine, theirs].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{mine:?} {theirs:?}");
        assert!(mine == Err(Error::DoubleFree) || theirs == Err(Error::DoubleFree));
        assert_eq!(t.stats().free, 3);
    });
}

#[test]
fn sweep_racing_alloc_never_loses_or_duplicates_an_entry() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        // Segment 0 full and freed again: empty, so a sweep may release it.
        let hs: Vec<Handle> = (0..3).map(|i| t.alloc(0x100 + i, 0).unwrap()).collect();
        for &h in &hs {
            t.free(h).unwrap();
        }
        let t2 = t.clone();
        let sweeper = thread::spawn(move || t2.sweep(0));
        let h = t.alloc(0x500, 5).unwrap();
        let released = sweeper.join().unwrap();
        assert!(released <= 1);
        assert_eq!(t.get_checked(h, 5), 0x500, "alloc kept its entry");
        for &old in &hs {
            assert!(old == h || t.get(old) == 0);
        }
        let s = t.stats();
        assert_eq!(s.live, 1);
        assert_eq!(s.committed_segments, 1, "either reused segment 0 or released it and grew");
    });
}

#[test]
fn sweep_racing_free_releases_only_when_empty() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        // Segment 0 full (three entries), one entry in segment 1.
        let hs: Vec<Handle> = (0..4).map(|i| t.alloc(0x100 + 16 * i, 0).unwrap()).collect();
        t.free(hs[3]).unwrap();
        // Three free entries: below one segment's worth (four), no sweep.
        assert_eq!(t.sweep(0), 0);
        let t2 = t.clone();
        let h0 = hs[0];
        let th = thread::spawn(move || t2.free(h0).unwrap());
        // Four free once the free lands: segment 1 (empty) may go, never 0.
        let released = t.sweep(0);
        th.join().unwrap();
        assert!(released <= 1);
        let released = released + t.sweep(0);
        assert_eq!(released, 1);
        assert_eq!(t.get(hs[1]), 0x110);
        assert_eq!(t.get(hs[2]), 0x120);
        let s = t.stats();
        assert_eq!((s.committed_segments, s.live, s.free), (1, 2, 1));
    });
}

#[test]
fn reader_never_sees_the_next_occupant_through_a_stale_handle() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let old = t.alloc(0x100, 1).unwrap();
        let t2 = t.clone();
        let reader = thread::spawn(move || (t2.get(old), t2.get_checked(old, 1)));
        t.free(old).unwrap();
        let new = t.alloc(0x900, 1).unwrap();
        let (v, c) = reader.join().unwrap();
        assert!(v == 0x100 || v == 0, "{v:#x}");
        assert!(c == 0x100 || c == 0, "{c:#x}");
        assert_eq!(t.get(new), 0x900);
    });
}

#[test]
fn growth_race_commits_distinct_entries() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let t2 = t.clone();
        let th = thread::spawn(move || [t2.alloc(0x10, 0).unwrap(), t2.alloc(0x20, 0).unwrap()]);
        let mine = [t.alloc(0x30, 0).unwrap(), t.alloc(0x40, 0).unwrap()];
        let theirs = th.join().unwrap();
        let mut all: Vec<u32> = mine.iter().chain(theirs.iter()).map(|h| h.index()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
        assert_eq!(t.stats().committed_segments, 2);
        // Six allocatable entries: two more fit, then the table is full.
        t.alloc(0x50, 0).unwrap();
        t.alloc(0x60, 0).unwrap();
        assert_eq!(t.alloc(0x70, 0), Err(Error::Capacity));
    });
}

#[test]
fn native_creation_racing_lookup_gives_one_handle() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let t2 = t.clone();
        let th = thread::spawn(move || t2.native_handle(0x7000).unwrap());
        let mine = t.native_handle(0x7000).unwrap();
        let theirs = th.join().unwrap();
        assert_eq!(mine, theirs);
        assert_eq!(t.get(mine), 0x7000);
        assert_eq!(t.stats().native, 1);
    });
}

#[test]
fn typed_natives_of_one_address_racing_get_one_handle_per_signature() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let t2 = t.clone();
        let th = thread::spawn(move || (t2.native_handle_typed(0x7000, 1).unwrap(), t2.native_handle_typed(0x7000, 2).unwrap()));
        let mine = t.native_handle_typed(0x7000, 2).unwrap();
        let (one, two) = th.join().unwrap();
        assert_eq!(mine, two);
        assert_ne!(one, two);
        assert_eq!(t.call_target(one, 1), 0x7000);
        assert_eq!(t.call_target(two, 2), 0x7000);
        assert_eq!(t.call_target(one, 2), 0);
        assert_eq!(t.stats().native, 2);
    });
}

#[test]
fn overlapping_free_many_batches_free_each_handle_once_and_all_or_nothing() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let (a, b, c) = (t.alloc(0x10, 0).unwrap(), t.alloc(0x20, 0).unwrap(), t.alloc(0x30, 0).unwrap());
        let t2 = t.clone();
        let th = thread::spawn(move || t2.free_many(&[b, c]));
        let mine = t.free_many(&[a, b]);
        let theirs = th.join().unwrap();
        // b is in both: at most one batch wins.
        assert!(!(mine.is_ok() && theirs.is_ok()));
        assert_eq!(t.get(a) == 0, mine.is_ok());
        assert_eq!(t.get(c) == 0, theirs.is_ok());
        assert_eq!(t.get(b) == 0, mine.is_ok() || theirs.is_ok());
        let live = [a, b, c].iter().filter(|&&h| t.get(h) != 0).count();
        assert_eq!(t.stats().live, live);
    });
}

#[test]
fn free_many_racing_free_frees_once() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let (a, b) = (t.alloc(0x10, 0).unwrap(), t.alloc(0x20, 0).unwrap());
        let t2 = t.clone();
        let th = thread::spawn(move || t2.free(b));
        let batch = t.free_many(&[a, b]);
        let single = th.join().unwrap();
        assert!(batch.is_ok() != single.is_ok(), "exactly one frees b");
        assert_eq!(t.get(a) == 0, batch.is_ok());
        assert_eq!(t.get(b), 0);
    });
}

#[test]
fn alloc_many_that_does_not_fit_takes_nothing() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        // Six allocatable entries (see growth_race_commits_distinct_entries).
        let held = t.alloc(0x10, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || {
            let mut out = [Handle::from_raw(0); 6];
            (t2.alloc_many(&[0x20; 6], &[1; 6], &mut out), out)
        });
        let single = t.alloc(0x30, 0);
        let (many, out) = th.join().unwrap();
        // Seven wanted, six exist: the batch can never fit with `held`.
        assert_eq!(many, Err(Error::Capacity));
        assert!(out.iter().all(|h| h.raw() == 0));
        assert!(single.is_ok(), "{single:?} {many:?} {:?}", t.stats());
        assert_eq!(t.stats().live, 2);
        t.free(held).unwrap();
        let mut out = [Handle::from_raw(0); 5];
        t.alloc_many(&[0x40; 5], &[2; 5], &mut out).unwrap();
        assert!(out.iter().all(|&h| t.get(h) == 0x40));
    });
}

#[test]
fn set_racing_free_keeps_the_freelist_intact() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        let h = t.alloc(0x100, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || t2.set(h, 0x200));
        t.free(h).unwrap();
        let r = th.join().unwrap();
        assert!(r.is_ok() || r == Err(Error::InvalidHandle));
        // All six entries can still be allocated, each exactly once.
        let mut all: Vec<u32> = (0..6).map(|i| t.alloc(0x1000 + i, 0).unwrap().index()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
    });
}

#[test]
fn three_threads_churn_and_sweep() {
    model(|| {
        let t = Arc::new(Table::new().unwrap());
        // Segment 1 committed and emptied again, so a sweep has work.
        let hs: Vec<Handle> = (0..4).map(|i| t.alloc(0x100 + 16 * i, 0).unwrap()).collect();
        t.free(hs[3]).unwrap();
        t.free(hs[2]).unwrap();
        let churn = |ep: u64| {
            let t = t.clone();
            thread::spawn(move || {
                let h = t.alloc(ep, ep).unwrap();
                assert_eq!(t.get_checked(h, ep), ep);
                t.free(h).unwrap();
                assert_eq!(t.get(h), 0);
            })
        };
        let a = churn(0x1000);
        let b = churn(0x2000);
        let released = t.sweep(0);
        a.join().unwrap();
        b.join().unwrap();
        assert!(released <= 1);
        assert_eq!(t.get(hs[0]), 0x100);
        assert_eq!(t.get(hs[1]), 0x110);
        let s = t.stats();
        assert_eq!(s.live, 2);
        // Every free entry is still reachable: fill the table exactly.
        let more: Vec<Handle> = (0..4).map(|i| t.alloc(0x3000 + 16 * i, 0).unwrap()).collect();
        assert_eq!(more.len(), 4);
        assert_eq!(t.alloc(0x4000, 0), Err(Error::Capacity));
    });
}

/// The remembered refusal of a full table never hides an entry freed
/// meanwhile: whatever the interleaving of a refused alloc (flag store, then
/// scan) and a free (push, then flag load), an alloc after the free has
/// returned succeeds.
#[test]
fn a_refusal_never_hides_a_racing_free() {
    refusal_race_model(|| Arc::new(Table::new().unwrap()), true);
}

/// The model behind the two refusal races: a full table (with a refusal
/// already remembered if `refused_first`), one thread frees while another
/// allocates; afterwards exactly the freed entry can be allocated.
fn refusal_race_model(make: fn() -> Arc<Table>, refused_first: bool) {
    model(move || {
        let t = make();
        let hs: Vec<Handle> = (0..CAPACITY).map(|i| t.alloc(0x100 + 16 * i as u64, 1).unwrap()).collect();
        if refused_first {
            assert_eq!(t.alloc(0x900, 1), Err(Error::Capacity));
        }
        let t2 = t.clone();
        let victim = hs[2];
        let th = thread::spawn(move || t2.free(victim));
        let raced = t.alloc(0x200, 2);
        th.join().unwrap().unwrap();
        match raced {
            Ok(h) => assert_eq!(t.get(h), 0x200),
            Err(e) => {
                assert_eq!(e, Error::Capacity);
                let h = t.alloc(0x300, 3).expect("the freed entry is allocatable");
                assert_eq!(t.get(h), 0x300);
            }
        }
        assert_eq!(t.alloc(0x400, 4), Err(Error::Capacity));
        assert_eq!(t.stats().free, 0);
    });
}

/// The generated-code sequence (`wcpt_call_target`: entrypoint, then check
/// word) against free and reuse of the slot with the same signature: a call
/// racing the free gets the old code or nothing, never the new occupant's,
/// and a call that starts after `free` returned gets nothing.
#[test]
fn generated_code_never_reaches_the_next_occupant_through_a_stale_handle() {
    stale_call_model(|| Arc::new(Table::new().unwrap()));
}

/// The model behind the two tests of the generated-code sequence against
/// free and reuse, on a table from `make`.
fn stale_call_model(make: fn() -> Arc<Table>) {
    use loom::sync::atomic::{AtomicBool, Ordering::*};
    model(move || {
        let t = make();
        let old = t.alloc(0x100, 7).unwrap();
        let freed = Arc::new(AtomicBool::new(false));
        let (t2, freed2) = (t.clone(), freed.clone());
        let caller = thread::spawn(move || {
            let started_after_free = freed2.load(Acquire);
            let target = t2.call_target(old, 7);
            assert!(target == 0x100 || target == 0, "{target:#x}");
            if started_after_free {
                assert_eq!(target, 0, "a call that starts after free returned");
            }
        });
        t.free(old).unwrap();
        freed.store(true, Release);
        let new = t.alloc(0x900, 7).unwrap();
        assert_eq!(new.index(), old.index(), "the slot is reused (from the stack, if any)");
        caller.join().unwrap();
        assert_eq!(t.call_target(old, 7), 0);
        assert_eq!(t.call_target(new, 7), 0x900);
    });
}


// ---- Per-thread stacks of free entries (table/cache.rs) ----
//
// The models above run without the stacks (each stack operation adds steps
// to every interleaving); these run with them, with the heavy barrier
// modelled as a SeqCst fence on the taker's side and the light barrier as
// one on the owner's side.

fn cached_table() -> Arc<Table> {
    Arc::new(Table::with_thread_caches(true).unwrap())
}

/// An entry freed onto another thread's stack is never out of reach: the
/// refused allocation takes the stacks back before it refuses, whatever the
/// interleaving with the owner's free (busy/request handshake, and the
/// refusal flag read inside the stack).
#[test]
fn a_full_table_takes_entries_back_from_thread_stacks() {
    // Full, but no allocation refused yet: the racing one goes all the way
    // to taking the stacks back (a remembered refusal would send the free to
    // its freelist instead). The freer stays alive, idle, until joined.
    refusal_race_model(cached_table, false);
}

/// An owner working its stack (free, then alloc from it) against a taker
/// (a sweep takes every stack back): no entry is handed out twice, the
/// owner's handles answer with its values, and afterwards every entry is
/// accounted for and reachable.
#[test]
fn an_owner_and_a_taker_never_share_an_entry() {
    owner_and_taker_model(|t, e, s| t.alloc(e, s).unwrap(), Table::free);
}

fn owner_and_taker_model(alloc: fn(&Table, u64, u64) -> Handle, free: fn(&Table, Handle) -> Result<(), Error>) {
    model(move || {
        let t = cached_table();
        let keep = t.alloc(0x100, 1).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || {
            let a = alloc(&t2, 0x1000, 2);
            free(&t2, a).unwrap();
            let b = alloc(&t2, 0x2000, 3);
            assert_eq!(t2.get_checked(b, 3), 0x2000);
            assert_eq!(t2.get(a), 0);
            b
        });
        t.sweep(0);
        let b = th.join().unwrap();
        assert_ne!(b.index(), keep.index());
        assert_eq!(t.get(keep), 0x100);
        assert_eq!(t.get(b), 0x2000);
        let s = t.stats();
        assert_eq!((s.live, s.live + s.free), (2, s.committed_segments * 3));
        // Every free entry is reachable from here.
        let mut more = Vec::new();
        while let Ok(h) = t.alloc(0x3000 + 16 * more.len() as u64, 0) {
            more.push(h);
        }
        assert_eq!(more.len() + 2, CAPACITY);
    });
}

/// The generated-code sequence against free and reuse of the slot through
/// the thread's stack (no freelist in between): a call that starts after
/// `free` returned gets nothing, and never the new occupant's code.
#[test]
fn a_stale_handle_never_reaches_an_occupant_from_the_stack() {
    stale_call_model(cached_table);
}

/// Two threads free the same handle, each towards its own stack: exactly
/// one wins, and the entry ends up on exactly one stack (the table fills to
/// capacity exactly).
#[test]
fn racing_frees_onto_stacks_have_one_winner() {
    model(|| {
        let t = cached_table();
        let h = t.alloc(0x100, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || t2.free(h));
        let mine = t.free(h);
        one_winner_and_every_entry_free(&t, mine, th.join().unwrap());
    });
}

/// Of two frees of one handle, exactly one won, and every entry is free
/// and reachable (the table fills to capacity exactly).
fn one_winner_and_every_entry_free(t: &Table, mine: Result<(), Error>, theirs: Result<(), Error>) {
    assert_eq!([mine, theirs].iter().filter(|r| r.is_ok()).count(), 1, "{mine:?} {theirs:?}");
    let mut n = 0;
    while t.alloc(0x200 + 16 * n, 0).is_ok() {
        n += 1;
    }
    assert_eq!(n as usize, CAPACITY);
}

/// The C ABI's order: the fast path, then the general one when it declines.
fn alloc_ffi_order(t: &Table, entrypoint: u64, signature: u64) -> Handle {
    // SAFETY: `cached_table` makes tables whose fast paths may run.
    assert!(t.fast_paths());
    match unsafe { t.alloc_fast(entrypoint, signature) } {
        Some(h) => Handle::from_raw(h),
        None => t.alloc(entrypoint, signature).unwrap(),
    }
}

/// As `alloc_ffi_order`, for free.
fn free_ffi_order(t: &Table, h: Handle) -> Result<(), crate::Error> {
    assert!(t.fast_paths());
    // SAFETY: as in `alloc_ffi_order`.
    match unsafe { t.free_fast(h.raw()) } {
        Some(()) => Ok(()),
        None => t.free(h),
    }
}

/// The fast paths (`table/fast.rs`: the metadata CAS made inside the
/// stack) against a taker: as `an_owner_and_a_taker_never_share_an_entry`,
/// with the owner going through the C ABI's order.
#[test]
fn fast_paths_and_a_taker_never_share_an_entry() {
    owner_and_taker_model(alloc_ffi_order, free_ffi_order);
}

/// Two threads free the same handle through the fast path (each has its
/// slot: the main thread's `alloc` claimed it): exactly one wins, and the
/// entry is on exactly one stack (the table fills exactly).
#[test]
fn racing_fast_frees_have_one_winner() {
    model(|| {
        let t = cached_table();
        let h = t.alloc(0x100, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || {
            // A slot first (the fast path never claims one), then the race.
            let x = alloc_ffi_order(&t2, 0x300, 0);
            // SAFETY: as in `alloc_ffi_order`. Nobody else touches this
            // thread's stack or `x`: the fast path takes it.
            assert_eq!(unsafe { t2.free_fast(x.raw()) }, Some(()));
            free_ffi_order(&t2, h)
        });
        let mine = free_ffi_order(&t, h);
        one_winner_and_every_entry_free(&t, mine, th.join().unwrap());
    });
}
