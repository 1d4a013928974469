//! Tests of the core, each on its own `Table` instance.

#[cfg(loom)]
mod loom_models;

#[cfg(not(loom))]
mod core {
    use crate::handle::*;
    use crate::{Error, Handle, Table};

    const EP: u64 = 0x5555_0000_1000;

    fn table() -> Table {
        Table::new().expect("reserve a table")
    }

    #[test]
    fn alloc_get_set_free() {
        let t = table();
        let h = t.alloc(EP, 7).unwrap();
        assert_ne!(h, Handle::NULL);
        assert_ne!(h, Handle::INVALID);
        assert_eq!(t.get(h), EP);
        assert_eq!(t.get_checked(h, 7), EP);
        assert_eq!(t.get_checked(h, 8), 0);
        t.set(h, EP + 64).unwrap();
        assert_eq!(t.get(h), EP + 64);
        assert_eq!(t.get_checked(h, 7), EP + 64, "set keeps the signature");
        t.free(h).unwrap();
        assert_eq!(t.get(h), 0);
        assert_eq!(t.free(h), Err(Error::DoubleFree));
        assert_eq!(t.set(h, EP), Err(Error::InvalidHandle));
    }

    #[test]
    fn entry_layout_is_what_jit_code_reads() {
        let t = table();
        let h = t.alloc(EP, 0xABCD).unwrap();
        let entry = unsafe {
            // SAFETY: base points to the reserved table; the index is masked.
            t.base().add(h.index() as usize * ENTRY_SIZE) as *const u64
        };
        // SAFETY: the entry is committed and live; plain reads, as JIT code does.
        unsafe {
            assert_eq!(entry.read_volatile(), EP);
            assert_eq!(entry.add(1).read_volatile(), (u64::from(h.generation()) << 56) | 0xABCD);
            assert_eq!(entry.add(1).read_volatile(), check_word(h.raw(), 0xABCD));
        }
        t.free(h).unwrap();
        // SAFETY: as above; a free entry's entrypoint is not a user address,
        // and its check word belongs to no issued handle (the next generation).
        unsafe {
            assert!(!is_user_address(entry.read_volatile()));
            assert_ne!(entry.add(1).read_volatile() >> 56, u64::from(h.generation()));
        }
    }

    #[test]
    fn generated_code_refuses_a_stale_handle_whose_slot_was_reused_with_its_signature() {
        let t = table();
        let old = t.alloc(EP, 5).unwrap();
        assert_eq!(t.call_target(old, 5), EP);
        assert_eq!(t.call_target(old, 6), 0, "wrong signature");
        t.free(old).unwrap();
        assert_eq!(t.call_target(old, 5), 0, "freed");
        let new = t.alloc(EP + 16, 5).unwrap();
        assert_eq!(new.index(), old.index(), "the slot was reused");
        assert_eq!(t.call_target(old, 5), 0, "same signature, new occupant: still refused");
        assert_eq!(t.call_target(new, 5), EP + 16);
        // Every generation of the index but the live one is refused.
        for g in 0..=255u32 {
            let h = Handle::from_raw((g << 24) | new.index());
            assert_eq!(t.call_target(h, 5) != 0, h == new, "{h}");
        }
    }

    #[test]
    fn signatures_are_56_bits() {
        let t = table();
        assert_eq!(t.alloc(EP, SIGNATURE_MASK + 1), Err(Error::InvalidArgument));
        assert_eq!(t.alloc(EP, u64::MAX), Err(Error::InvalidArgument));
        assert_eq!(t.stats().live, 0, "a refused alloc takes nothing");
        let h = t.alloc(EP, SIGNATURE_MASK - 1).unwrap();
        assert_eq!(t.get_checked(h, SIGNATURE_MASK - 1), EP);
        // A wider signature never matches, not even through the generation bits.
        let wide = (SIGNATURE_MASK - 1) | (u64::from(h.generation()) << 56);
        assert_eq!(t.get_checked(h, wide), 0);
        assert_eq!(t.call_target(h, wide), 0);
        let n = t.native_handle(0x7777_0000).unwrap();
        assert_eq!(t.get_checked(n, NATIVE_SIGNATURE), 0x7777_0000);
        assert_eq!(NATIVE_SIGNATURE, (1 << 56) - 1);
    }

    #[test]
    fn stale_handles_stay_dead_across_a_sweep_and_recommit() {
        let t = table();
        let hs: Vec<Handle> = (0..3 * ENTRIES_PER_SEGMENT).map(|i| t.alloc(EP + 16 * u64::from(i), 3).unwrap()).collect();
        for &h in &hs {
            t.free(h).unwrap();
        }
        assert!(t.sweep(0) >= 2);
        for &h in &hs {
            assert_eq!(t.get(h), 0);
            assert_eq!(t.call_target(h, 3), 0);
            assert_eq!(t.free(h), Err(Error::DoubleFree), "{h}: released metadata still knows");
        }
        // Recommit the same segments: the old handles stay dead.
        let again: Vec<Handle> = (0..3 * ENTRIES_PER_SEGMENT).map(|i| t.alloc(EP + 16 * u64::from(i), 3).unwrap()).collect();
        for &h in &hs {
            assert_eq!(t.call_target(h, 3), 0, "{h}");
            assert_eq!(t.free(h), Err(Error::DoubleFree));
        }
        for (i, &h) in again.iter().enumerate() {
            assert_eq!(t.call_target(h, 3), EP + 16 * i as u64);
        }
    }

    #[test]
    fn stale_handle_never_reaches_the_new_occupant() {
        let t = table();
        let old = t.alloc(EP, 1).unwrap();
        t.free(old).unwrap();
        let new = t.alloc(EP + 16, 1).unwrap();
        assert_eq!(new.index(), old.index(), "LIFO reuse of the slot");
        assert_ne!(new, old);
        assert_eq!(t.get(old), 0);
        assert_eq!(t.get_checked(old, 1), 0);
        assert_eq!(t.free(old), Err(Error::DoubleFree));
        assert_eq!(t.set(old, EP), Err(Error::InvalidHandle));
        assert_eq!(t.get(new), EP + 16, "refusals changed nothing");
    }

    /// A handle's 8-bit generation takes 255 values: never 0, so that an
    /// all-zero check word (a released page) answers no handle.
    #[test]
    fn generation_wraps_after_255_frees_and_is_never_zero() {
        let t = table();
        let first = t.alloc(EP, 0).unwrap();
        assert_ne!(first.generation(), 0);
        let mut h = first;
        for _ in 0..254 {
            t.free(h).unwrap();
            h = t.alloc(EP, 0).unwrap();
            assert_eq!(h.index(), first.index());
            assert_ne!(h, first);
            assert_ne!(h.generation(), 0);
        }
        t.free(h).unwrap();
        let again = t.alloc(EP, 0).unwrap();
        assert_eq!(again, first, "the 8-bit generation wrapped");
        // After the wrap every older generation counts as ended.
        assert_eq!(t.free(h), Err(Error::DoubleFree));
    }

    #[test]
    fn bad_handles_are_refused_and_change_nothing() {
        let t = table();
        let h = t.alloc(EP, 3).unwrap();
        for bad in [0, INVALID_HANDLE, LAST_INDEX, 1 << 24, h.raw() ^ (1 << 24), h.index() + 4095].map(Handle::from_raw) {
            assert_eq!(t.get(bad), 0, "{bad}");
            assert_eq!(t.free(bad), Err(Error::InvalidHandle), "{bad}");
            assert_eq!(t.set(bad, EP), Err(Error::InvalidHandle), "{bad}");
        }
        assert_eq!(t.get(h), EP);
        assert_eq!(t.stats().live, 1);
    }

    #[test]
    fn every_u32_reads_without_faulting() {
        let t = table();
        let h = t.alloc(EP, 0).unwrap();
        let mut seen = 0;
        // A stride through the whole handle space, including never-committed
        // segments and every generation.
        let mut x: u32 = 0;
        for _ in 0..2_000_000 {
            x = x.wrapping_add(0x9E37_79B1);
            let x = Handle::from_raw(x);
            if t.get(x) != 0 {
                seen += 1;
            }
            let _ = t.get_checked(x, 0);
        }
        assert!(seen <= 1);
        assert_eq!(t.get(h), EP);
    }

    /// A free entry's check word carries its next generation, which no
    /// handle has yet, and its entrypoint word a tagged link. A forged
    /// handle of that generation gets 0 from `get` and `get_checked`,
    /// whatever signature it claims (the native one, which a free check
    /// word carries, included), and never a callable address from the
    /// generated-code sequence.
    #[test]
    fn a_forged_handle_of_a_free_entry_gets_nothing() {
        let t = table();
        let hs: Vec<Handle> = (0..8).map(|i| t.alloc(EP + 16 * i, 5).unwrap()).collect();
        for &h in &hs {
            t.free(h).unwrap();
        }
        for &h in &hs {
            let (index, g) = split(h.raw());
            let forged = Handle::from_raw(join(index, g.wrapping_add(1)));
            assert_eq!(t.get(forged), 0);
            for sig in [0, 5, NATIVE_SIGNATURE] {
                assert_eq!(t.get_checked(forged, sig), 0);
                let target = t.call_target(forged, sig);
                assert!(target == 0 || !is_user_address(target), "{target:#x}");
            }
        }
    }

    #[test]
    fn non_canonical_entrypoints_are_refused() {
        let t = table();
        for bad in [1u64 << 47, 1 << 63, u64::MAX, FREE_TAG] {
            assert_eq!(t.alloc(bad, 0), Err(Error::InvalidArgument));
            assert_eq!(t.native_handle(bad), Err(Error::InvalidArgument));
        }
        let h = t.alloc(0, 0).expect("entrypoint 0 is a placeholder");
        assert_eq!(t.set(h, 1 << 47), Err(Error::InvalidArgument));
        assert_eq!(t.get(h), 0);
        assert_eq!(t.get_checked(h, 0), 0);
        assert_eq!(t.stats().live, 1);
        assert_eq!(t.native_handle(0), Err(Error::InvalidArgument));
    }

    #[test]
    fn native_handles_are_stable_and_unfreeable() {
        let t = table();
        let a = t.native_handle(0x1000).unwrap();
        let b = t.native_handle(0x2000).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.native_handle(0x1000).unwrap(), a);
        assert_eq!(t.get(a), 0x1000);
        assert_eq!(t.get_checked(a, NATIVE_SIGNATURE), 0x1000);
        assert_eq!(t.free(a), Err(Error::NativeHandle));
        assert_eq!(t.set(a, 0x3000), Err(Error::NativeHandle));
        assert_eq!(t.get(a), 0x1000);
        // Many natives force the map to grow; all stay the same.
        let addr = |i: u64| 0x100_0000 + (i << 12);
        let hs: Vec<Handle> = (1..5000u64).map(|i| t.native_handle(addr(i)).unwrap()).collect();
        for (i, &h) in (1..5000u64).zip(&hs) {
            assert_eq!(t.native_handle(addr(i)).unwrap(), h);
            assert_eq!(t.get(h), addr(i));
        }
        let s = t.stats();
        assert_eq!(s.native, 5001);
        assert_eq!(s.live, 0);
    }

    #[test]
    fn typed_native_handles_are_one_per_pair_and_checked() {
        let t = table();
        let a = t.native_handle_typed(0x1000, 7).unwrap();
        let b = t.native_handle_typed(0x1000, 8).unwrap();
        let c = t.native_handle(0x1000).unwrap();
        assert!(a != b && a != c && b != c);
        assert_eq!(t.native_handle_typed(0x1000, 7).unwrap(), a);
        assert_eq!(t.native_handle_typed(0x1000, NATIVE_SIGNATURE).unwrap(), c);
        assert_eq!(t.call_target(a, 7), 0x1000);
        assert_eq!(t.call_target(a, 8), 0);
        assert_eq!(t.call_target(b, 8), 0x1000);
        assert_eq!(t.free(b), Err(Error::NativeHandle));
        assert_eq!(t.native_handle_typed(0x1000, SIGNATURE_MASK + 1), Err(Error::InvalidArgument));
        assert_eq!(t.native_handle_typed(0, 7), Err(Error::InvalidArgument));
        // Many pairs over few addresses force the map to grow; all stay.
        let pairs: Vec<(u64, u64, Handle)> = (0..3000u64)
            .map(|i| {
                let (addr, sig) = (0x2000 + (i % 7) * 16, i);
                (addr, sig, t.native_handle_typed(addr, sig).unwrap())
            })
            .collect();
        for &(addr, sig, h) in &pairs {
            assert_eq!(t.native_handle_typed(addr, sig).unwrap(), h);
            assert_eq!(t.call_target(h, sig), addr);
        }
        assert_eq!(t.stats().native, 3003);
    }

    #[test]
    fn alloc_many_is_all_or_nothing() {
        let t = table();
        let eps: Vec<u64> = (0..10_000).map(|i| 0x10_0000 + i * 16).collect();
        let sigs: Vec<u64> = (0..10_000).map(|i| i % 7).collect();
        let mut out = vec![Handle::from_raw(0); 10_000];
        t.alloc_many(&eps, &sigs, &mut out).unwrap();
        for i in 0..10_000 {
            assert_eq!(t.call_target(out[i], sigs[i]), eps[i]);
        }
        assert_eq!(t.stats().live, 10_000);
        // A bad argument anywhere: nothing taken, `out` untouched.
        let before = t.stats();
        let mut out2 = vec![Handle::from_raw(7); 3];
        let bad_sig = [1, SIGNATURE_MASK + 1, 2];
        assert_eq!(t.alloc_many(&eps[..3], &bad_sig, &mut out2), Err(Error::InvalidArgument));
        let bad_ep = [0x1000, 1 << 63, 0x2000];
        assert_eq!(t.alloc_many(&bad_ep, &sigs[..3], &mut out2), Err(Error::InvalidArgument));
        assert_eq!(t.alloc_many(&eps[..3], &sigs[..2], &mut out2), Err(Error::InvalidArgument));
        assert_eq!(t.alloc_many(&eps[..0], &sigs[..0], &mut out2[..0]), Ok(()));
        assert!(out2.iter().all(|h| h.raw() == 7));
        assert_eq!(t.stats(), before);
        t.free_many(&out).unwrap();
        assert_eq!(t.stats().live, 0);
    }

    #[test]
    fn free_many_is_all_or_nothing() {
        let t = table();
        let eps: Vec<u64> = (0..100).map(|i| 0x10_0000 + i * 16).collect();
        let mut hs = vec![Handle::from_raw(0); 100];
        t.alloc_many(&eps, &[3; 100], &mut hs).unwrap();
        let native = t.native_handle(0x9000).unwrap();
        let stale = {
            let h = t.alloc(0x5000, 1).unwrap();
            t.free(h).unwrap();
            h
        };
        for (bad, why) in [
            (hs[50], Error::DoubleFree),      // the same handle twice
            (stale, Error::DoubleFree),       // freed before
            (native, Error::NativeHandle),    // never freeable
            (Handle::from_raw(0), Error::InvalidHandle),
        ] {
            let mut batch = hs.clone();
            batch.insert(70, bad);
            assert_eq!(t.free_many(&batch), Err(why));
            assert_eq!(t.stats().live, 100, "nothing freed");
            assert!(hs.iter().zip(&eps).all(|(&h, &e)| t.get(h) == e));
        }
        t.free_many(&hs).unwrap();
        assert!(hs.iter().all(|&h| t.get(h) == 0));
        assert_eq!(t.free_many(&hs[..1]), Err(Error::DoubleFree));
        assert_eq!(t.stats().live, 0);
    }

    #[test]
    fn sweep_releases_only_empty_segments_and_keeps_generations() {
        let t = table();
        let per = ENTRIES_PER_SEGMENT as usize;
        let hs: Vec<Handle> = (0..4 * per).map(|i| t.alloc(EP + i as u64 * 16, 0).unwrap()).collect();
        assert_eq!(t.stats().committed_segments, 5, "segment 0 holds one entry fewer");
        assert_eq!(t.sweep(0), 0, "nothing free");
        // Free segments 1 and 2 completely, every other entry of the rest.
        let seg = |h: Handle| h.index() >> SEGMENT_SHIFT;
        let mut kept = Vec::new();
        for (i, &h) in hs.iter().enumerate() {
            if seg(h) == 1 || seg(h) == 2 || i % 2 == 0 {
                t.free(h).unwrap();
            } else {
                kept.push((h, EP + i as u64 * 16));
            }
        }
        let before = t.stats();
        assert_eq!(t.sweep(usize::MAX), 0, "threshold not met");
        assert_eq!(t.sweep(before.free + 1), 0);
        assert_eq!(t.sweep(before.free), 2);
        let after = t.stats();
        assert_eq!(after.committed_segments, before.committed_segments - 2);
        assert_eq!(after.live, before.live);
        assert_eq!(after.free, before.free - 2 * per);
        for &(h, ep) in &kept {
            assert_eq!(t.get(h), ep);
        }
        // Freed handles of released segments stay dead; reads see empty.
        for &h in &hs {
            if seg(h) == 1 || seg(h) == 2 {
                assert_eq!(t.get(h), 0);
                assert_eq!(t.free(h), Err(Error::DoubleFree));
            }
        }
        // Recommitting a released segment keeps generations: no stale
        // handle answers for a new allocation.
        let again: Vec<Handle> = (0..3 * per).map(|_| t.alloc(EP, 0).unwrap()).collect();
        for h in &again {
            assert!(!hs.contains(h));
        }
    }

    #[test]
    fn sweep_threshold_below_a_segment_counts_as_one() {
        let t = table();
        let hs: Vec<Handle> = (0..10).map(|_| t.alloc(EP, 0).unwrap()).collect();
        for h in hs {
            t.free(h).unwrap();
        }
        // 4095 free entries in segment 0: less than one segment's worth.
        assert_eq!(t.sweep(0), 0);
        assert_eq!(t.sweep(1), 0);
        let s: Vec<Handle> = (0..ENTRIES_PER_SEGMENT * 2).map(|_| t.alloc(EP, 0).unwrap()).collect();
        for h in s {
            t.free(h).unwrap();
        }
        assert_eq!(t.sweep(0), 3);
        let st = t.stats();
        assert_eq!((st.committed_segments, st.free, st.live), (0, 0, 0));
        // The table works again afterwards.
        let h = t.alloc(EP, 5).unwrap();
        assert_eq!(t.get_checked(h, 5), EP);
    }

    #[test]
    fn separate_instances_do_not_share_handles() {
        let a = table();
        let b = table();
        let ha = a.alloc(EP, 0).unwrap();
        let hb = b.alloc(EP + 16, 0).unwrap();
        assert_ne!(ha, hb, "generations are salted per table");
        assert_eq!(a.get(hb), 0);
        assert_eq!(b.get(ha), 0);
        assert_eq!(a.free(hb), Err(Error::InvalidHandle));
    }

    #[test]
    fn code_regions_refuse_what_they_should_and_nothing_else() {
        let t = table();
        let h0 = t.alloc(0x9000, 0).unwrap();
        t.code_region_add(0x10000, 0x1000).unwrap();
        t.code_region_add(0x30000, 0x1000).unwrap();
        assert_eq!(t.code_region_add(0x10800, 0x1000), Err(Error::InvalidArgument), "overlap");
        assert_eq!(t.code_region_add(0x10000, 0), Err(Error::InvalidArgument));
        assert_eq!(t.code_region_add(u64::MAX - 1, 4), Err(Error::InvalidArgument));
        assert_eq!(t.alloc(0x9000, 0), Err(Error::NotCode));
        assert_eq!(t.alloc(0x11000, 0), Err(Error::NotCode), "end is exclusive");
        let h = t.alloc(0x10000, 0).unwrap();
        t.alloc(0x10FFF, 0).unwrap();
        t.alloc(0x30010, 0).unwrap();
        t.alloc(0, 0).expect("placeholders are exempt");
        assert_eq!(t.set(h, 0x20000), Err(Error::NotCode));
        assert_eq!(t.get(h), 0x10000);
        t.set(h, 0x30020).unwrap();
        t.native_handle(0x7777_0000).expect("natives are exempt");
        assert_eq!(t.code_region_remove(0x10000, 0x800), Err(Error::InvalidArgument));
        t.code_region_remove(0x10000, 0x1000).unwrap();
        t.code_region_remove(0x30000, 0x1000).unwrap();
        assert_eq!(t.code_region_count(), 0);
        t.set(h0, 0x9000).unwrap();
        t.alloc(0x9000, 0).unwrap();
    }

    #[test]
    fn set_many_checks_everything_first() {
        let t = table();
        let a = t.alloc(EP, 0).unwrap();
        let b = t.alloc(EP, 0).unwrap();
        let dead = t.alloc(EP, 0).unwrap();
        t.free(dead).unwrap();
        assert_eq!(t.set_many(&[a, dead], &[1, 2]), Err(Error::InvalidHandle));
        assert_eq!(t.set_many(&[a, b], &[1, 1 << 50]), Err(Error::InvalidArgument));
        assert_eq!(t.set_many(&[a], &[1, 2]), Err(Error::InvalidArgument));
        assert_eq!((t.get(a), t.get(b)), (EP, EP), "nothing written");
        t.set_many(&[a, b], &[0x100, 0x200]).unwrap();
        assert_eq!((t.get(a), t.get(b)), (0x100, 0x200));
    }

    /// Entries on a thread's stack are free for `stats`, and a sweep takes
    /// them back: here from a thread that has exited (a Rust table has no
    /// exit hook; the C ABI's table empties the stack at thread exit too).
    #[test]
    fn an_exited_threads_stack_counts_as_free_and_a_sweep_takes_it_back() {
        let t = std::sync::Arc::new(table());
        let t2 = t.clone();
        std::thread::spawn(move || {
            let hs: Vec<Handle> = (0..5000).map(|i| t2.alloc(EP + 16 * i, 1).unwrap()).collect();
            for h in hs {
                t2.free(h).unwrap();
            }
        })
        .join()
        .unwrap();
        let s = t.stats();
        assert_eq!(s.live, 0);
        assert_eq!(s.committed_segments, 2);
        assert_eq!(s.free, 2 * ENTRIES_PER_SEGMENT as usize - 1, "every entry is free, cached or not");
        assert_eq!(t.sweep(0), 2, "no entry on the exited thread's stack keeps a segment");
        let s = t.stats();
        assert_eq!((s.committed_segments, s.free, s.live), (0, 0, 0));
        // And the table still hands out distinct, working entries.
        let a = t.alloc(EP, 1).unwrap();
        let b = t.alloc(EP + 16, 2).unwrap();
        assert_ne!(a.index(), b.index());
        assert_eq!((t.get(a), t.get(b)), (EP, EP + 16));
    }

    #[test]
    fn stats_count_live_free_and_native() {
        let t = table();
        assert_eq!(t.stats().committed_segments, 0);
        let hs: Vec<Handle> = (0..100).map(|_| t.alloc(EP, 0).unwrap()).collect();
        t.native_handle(0x4000).unwrap();
        for h in &hs[..40] {
            t.free(*h).unwrap();
        }
        let s = t.stats();
        assert_eq!(s.capacity, CAPACITY);
        assert_eq!((s.live, s.native), (60, 1));
        assert_eq!(s.live + s.native + s.free, s.committed_segments * ENTRIES_PER_SEGMENT as usize - 1);
        assert_eq!(s.committed_bytes, s.committed_segments * 65536);
    }
}
