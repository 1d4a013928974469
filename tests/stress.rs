//! Multi-threaded stress tests of the core that verify values and ownership,
//! not only the absence of crashes. Each test uses its own `Table`.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Barrier};
use std::thread;
use wcpt::handle::{INDEX_MASK, SIGNATURE_MASK, TABLE_ENTRIES};
use wcpt::Error;

#[path = "support/raw.rs"]
mod raw;
use raw::RawTable as Table;

/// A small xorshift generator: deterministic per thread, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One flag per entry index: set while somebody holds an allocation of it.
struct Owners(Box<[AtomicU8]>);
impl Owners {
    fn new() -> Self {
        Owners((0..TABLE_ENTRIES).map(|_| AtomicU8::new(0)).collect())
    }
    fn take(&self, h: u32) {
        let prev = self.0[(h & INDEX_MASK) as usize].swap(1, AcqRel);
        assert_eq!(prev, 0, "index {:#x} handed out twice", h & INDEX_MASK);
    }
    fn give(&self, h: u32) {
        self.0[(h & INDEX_MASK) as usize].store(0, Release);
    }
}

fn value(thread: usize, n: u64) -> u64 {
    // Unique per (thread, n), canonical, 16-byte aligned.
    ((thread as u64) << 40 | (n & 0xFF_FFFF_FFFF)) << 4 & 0x7FFF_FFFF_FFF0
}

#[test]
fn churn_with_sweepers_verifies_values_and_ownership() {
    let threads = 4;
    let rounds = 1_000_000;
    let t = Arc::new(Table::new());
    let owners = Arc::new(Owners::new());
    let stop = Arc::new(AtomicBool::new(false));
    let swept = Arc::new(AtomicUsize::new(0));
    let sweepers: Vec<_> = (0..2)
        .map(|_| {
            let (t, stop, swept) = (t.clone(), stop.clone(), swept.clone());
            thread::spawn(move || {
                while !stop.load(Relaxed) {
                    swept.fetch_add(t.sweep(0), Relaxed);
                    thread::yield_now();
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..threads)
        .map(|id| {
            let (t, owners) = (t.clone(), owners.clone());
            thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + id as u64);
                let mut ring: Vec<(u32, u64, u64)> = Vec::new();
                let mut freed: Vec<u32> = Vec::new();
                for n in 0..rounds {
                    let r = rng.next();
                    // Grow to a few thousand, then shrink, so whole segments
                    // empty out and the sweepers release them under us.
                    let phase = (n / 20_000) % 2 == 0;
                    if ring.is_empty() || (phase && r % 4 != 0) || (!phase && r % 4 == 0) {
                        let (ep, sig) = (value(id, n), r & SIGNATURE_MASK);
                        let h = t.alloc(ep, sig).unwrap();
                        owners.take(h);
                        ring.push((h, ep, sig));
                    } else {
                        let i = (r >> 8) as usize % ring.len();
                        let (h, ep, sig) = ring.swap_remove(i);
                        assert_eq!(t.get(h), ep);
                        assert_eq!(t.get_checked(h, sig), ep);
                        assert_eq!(t.get_checked(h, !sig & SIGNATURE_MASK), 0);
                        assert_eq!(t.call_target(h, sig), ep, "what generated code reads");
                        if r & 0x10 != 0 {
                            let ep2 = ep + 16;
                            t.set(h, ep2).unwrap();
                            assert_eq!(t.get_checked(h, sig), ep2);
                        }
                        owners.give(h);
                        t.free(h).unwrap();
                        freed.push(h);
                        if freed.len() > 64 {
                            freed.remove(0);
                        }
                    }
                    if n % 997 == 0 {
                        for &(h, ep, sig) in &ring {
                            let got = t.get_checked(h, sig);
                            assert!(got == ep || got == ep + 16, "{h:#x}: {got:#x} != {ep:#x}");
                        }
                        for &h in &freed {
                            // Stale: never answers, even if the slot was reused.
                            assert_eq!(t.get(h), 0, "stale handle {h:#x} answered");
                            assert!(matches!(t.free(h), Err(Error::DoubleFree)));
                        }
                    }
                }
                for (h, _, _) in ring {
                    owners.give(h);
                    t.free(h).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Relaxed);
    for s in sweepers {
        s.join().unwrap();
    }
    let s = t.stats();
    assert_eq!(s.live, 0);
    assert!(swept.load(Relaxed) > 0, "the sweepers released segments during the run");
    t.sweep(0);
    // Everything is free, so everything is released, unless what is left is
    // less than one segment's worth (segment 0 alone holds 4095 entries),
    // which the threshold rule keeps.
    let after = t.stats();
    assert!(
        after.committed_segments == 0 || (after.committed_segments == 1 && after.free < 4096),
        "{after:?}"
    );
}

#[test]
fn racing_double_frees_have_exactly_one_winner() {
    let t = Arc::new(Table::new());
    for _ in 0..200 {
        let hs: Arc<Vec<u32>> = Arc::new((0..256).map(|i| t.alloc(0x1000 + i * 16, 0).unwrap()).collect());
        let wins = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(3));
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let (t, hs, wins, barrier) = (t.clone(), hs.clone(), wins.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for &h in hs.iter() {
                        match t.free(h) {
                            Ok(()) => {
                                wins.fetch_add(1, Relaxed);
                            }
                            Err(e) => assert_eq!(e, Error::DoubleFree),
                        }
                    }
                })
            })
            .collect();
        for th in ts {
            th.join().unwrap();
        }
        assert_eq!(wins.load(Relaxed), 256);
        assert_eq!(t.stats().live, 0);
    }
}

#[test]
fn native_handles_are_one_per_address_across_threads() {
    let t = Arc::new(Table::new());
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|k| {
            let (t, barrier) = (t.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                // Each thread walks the addresses in a different order.
                let mut out = vec![0; 3000];
                for j in 0..3000usize {
                    let i = (j * 7 + k * 1013) % 3000;
                    out[i] = t.native_handle(0x10_0000 + i as u64 * 8).unwrap();
                    // Plain allocations interleave with native creation.
                    let h = t.alloc(0x2000, 0).unwrap();
                    t.free(h).unwrap();
                }
                out
            })
        })
        .collect();
    let results: Vec<Vec<u32>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    for (i, &h) in results[0].iter().enumerate() {
        assert_eq!(t.get(h), 0x10_0000 + i as u64 * 8);
    }
    let mut distinct = results[0].clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3000);
    assert_eq!(t.stats().native, 3000);
}

/// V8's WasmCodePointerTableTest.ConcurrentSweep, with the assertions it lacks:
/// holey allocation while two threads sweep, then every kept handle still
/// holds its value.
#[test]
fn concurrent_sweep_keeps_every_kept_handle() {
    let t = Arc::new(Table::new());
    let stop = Arc::new(AtomicBool::new(false));
    let sweepers: Vec<_> = (0..2)
        .map(|_| {
            let (t, stop) = (t.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Relaxed) {
                    t.sweep(0);
                }
            })
        })
        .collect();
    let mut kept = Vec::new();
    for round in 0..20u64 {
        let hs: Vec<(u32, u64)> = (0..10_000u64)
            .map(|i| {
                let ep = 0x10_0000 + (round * 10_000 + i) * 16;
                (t.alloc(ep, round).unwrap(), ep)
            })
            .collect();
        for (i, (h, ep)) in hs.into_iter().enumerate() {
            if i % 7 == 0 {
                kept.push((h, ep, round));
            } else {
                t.free(h).unwrap();
            }
        }
        for &(h, ep, sig) in &kept {
            assert_eq!(t.get_checked(h, sig), ep);
        }
    }
    stop.store(true, Relaxed);
    for s in sweepers {
        s.join().unwrap();
    }
    for &(h, ep, sig) in &kept {
        assert_eq!(t.get_checked(h, sig), ep);
    }
    assert_eq!(t.stats().live, kept.len());
}

#[test]
fn set_racing_free_never_corrupts_the_table() {
    // A caller bug: one thread tiers up a handle while another frees it and
    // a third sweeps. The table must stay consistent: every set either lands
    // before the free or is refused, and the freelists stay intact.
    let t = Arc::new(Table::new());
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (t, stop) = (t.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Relaxed) {
                t.sweep(0);
            }
        })
    };
    for _ in 0..300 {
        let hs: Arc<Vec<u32>> = Arc::new((0..4096).map(|_| t.alloc(0x1000, 1).unwrap()).collect());
        let setter = {
            let (t, hs) = (t.clone(), hs.clone());
            thread::spawn(move || {
                for &h in hs.iter() {
                    let _ = t.set(h, 0x2000);
                }
            })
        };
        for &h in hs.iter() {
            t.free(h).unwrap();
        }
        setter.join().unwrap();
        assert_eq!(t.stats().live, 0);
    }
    stop.store(true, Relaxed);
    sweeper.join().unwrap();
    // Everything can still be allocated with the right values.
    let hs: Vec<u32> = (0..20_000).map(|i| t.alloc(0x3000 + i * 16, 9).unwrap()).collect();
    for (i, &h) in hs.iter().enumerate() {
        assert_eq!(t.get_checked(h, 9), 0x3000 + i as u64 * 16);
    }
}
