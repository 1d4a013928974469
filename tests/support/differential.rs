//! A differential harness: decodes bytes into a sequence of table operations,
//! runs them on a fresh `Table` and on a simple reference model, and panics
//! on the first result that differs.
//!
//! Used by the cargo-fuzz target `fuzz/fuzz_targets/differential.rs` and, on
//! stable, by `tests/fuzz_replay.rs`, which replays the committed corpus.

use std::collections::{HashMap, HashSet};
use wcpt::handle::{
    is_user_address, ENTRIES_PER_SEGMENT, INDEX_MASK, INVALID_HANDLE, LAST_INDEX, NATIVE_SIGNATURE, SIGNATURE_MASK,
};
use wcpt::Error;

// Relative to this file's folder, so the fuzz target can include it too.
#[path = "raw.rs"]
mod raw;
use raw::RawTable;

#[derive(Default)]
struct Model {
    live: HashMap<u32, (u64, u64)>,
    natives: HashMap<u64, u32>,
    native_handles: HashMap<u32, u64>,
    dead: HashSet<u32>,
    /// Indices of live and native handles.
    indices: HashSet<u32>,
    seen: Vec<u32>,
    regions: Vec<(u64, u64)>,
}

impl Model {
    fn note(&mut self, h: u32) {
        if self.seen.len() < 4096 {
            self.seen.push(h);
        }
    }
    fn in_code(&self, ep: u64) -> bool {
        self.regions.is_empty() || ep == 0 || self.regions.iter().any(|&(s, e)| s <= ep && ep < e)
    }
    /// What alloc says of its arguments: the entrypoint first, then the
    /// signature's width.
    fn check_alloc(&self, ep: u64, sig: u64) -> Result<(), Error> {
        self.check_ep(ep).and(if sig > SIGNATURE_MASK { Err(Error::InvalidArgument) } else { Ok(()) })
    }
    fn check_ep(&self, ep: u64) -> Result<(), Error> {
        if !is_user_address(ep) {
            Err(Error::InvalidArgument)
        } else if !self.in_code(ep) {
            Err(Error::NotCode)
        } else {
            Ok(())
        }
    }
    fn get(&self, h: u32) -> u64 {
        if let Some(&(ep, _)) = self.live.get(&h) {
            ep
        } else {
            self.native_handles.get(&h).copied().unwrap_or(0)
        }
    }
    fn get_checked(&self, h: u32, sig: u64) -> u64 {
        if sig > SIGNATURE_MASK {
            return 0;
        }
        if let Some(&(ep, s)) = self.live.get(&h) {
            if s == sig { ep } else { 0 }
        } else {
            match self.native_handles.get(&h) {
                Some(&a) if sig == NATIVE_SIGNATURE => a,
                _ => 0,
            }
        }
    }
    /// A fresh handle from the table must be new to the model.
    fn fresh(&mut self, h: u32) {
        let index = h & INDEX_MASK;
        assert!(index != 0 && index != LAST_INDEX && h != INVALID_HANDLE, "reserved {h:#x}");
        assert!(!self.live.contains_key(&h) && !self.native_handles.contains_key(&h), "reissued {h:#x}");
        // Live handles never share an index.
        assert!(self.indices.insert(index), "index {index:#x} handed out twice");
        self.dead.remove(&h); // only after 256 frees of one slot
        self.note(h);
    }
}

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([self.u8()?, self.u8()?, self.u8()?, self.u8()?]))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) | (u64::from(self.u32()?) << 32))
    }
}

fn entrypoint(b: &mut Bytes) -> Option<u64> {
    Some(match b.u8()? {
        0 => 0,
        x @ 1..=199 => 0x10_0000 + u64::from(x) * 16,
        200..=239 => b.u64()? & 0x7FFF_FFFF_FFFF,
        240..=247 => (1 << 47) | u64::from(b.u32()?),
        _ => b.u64()?,
    })
}

fn handle(b: &mut Bytes, m: &Model) -> Option<u32> {
    let sel = b.u8()?;
    Some(if m.seen.is_empty() || sel >= 224 {
        match sel {
            224 => 0,
            225 => INVALID_HANDLE,
            226 => LAST_INDEX,
            _ => b.u32()?,
        }
    } else {
        let h = m.seen[usize::from(sel) % m.seen.len()];
        // Sometimes another generation of a known index.
        if sel & 0x40 != 0 { h ^ (u32::from(b.u8()? & 0x3) << 24) } else { h }
    })
}

fn signature(b: &mut Bytes) -> Option<u64> {
    Some(match b.u8()? {
        x @ 0..=250 => u64::from(x % 8),
        251 => NATIVE_SIGNATURE,
        _ => b.u64()?,
    })
}

fn check_all(t: &RawTable, m: &Model) {
    for (&h, &(ep, sig)) in &m.live {
        assert_eq!(t.get(h), ep, "live {h:#x}");
        assert_eq!(t.get_checked(h, sig), ep, "live {h:#x}");
        assert_eq!(t.call_target(h, sig), ep, "live {h:#x}: what generated code reads");
    }
    // A freed handle answers nowhere, in the library or in generated code
    // (a dead handle that was issued again is no longer in `dead`).
    for &h in &m.dead {
        assert_eq!(t.get(h), 0, "dead {h:#x}");
        for sig in [0, 1, 2, 3, 4, 5, 6, 7] {
            assert_eq!(t.call_target(h, sig), 0, "dead {h:#x}");
        }
    }
    for (&h, &a) in &m.native_handles {
        assert_eq!(t.get(h), a, "native {h:#x}");
    }
    let s = t.stats();
    assert_eq!(s.live, m.live.len());
    assert_eq!(s.native, m.natives.len());
    let entries = s.committed_segments * ENTRIES_PER_SEGMENT as usize;
    let used = s.live + s.native + s.free;
    assert!(used <= entries && used + 2 >= entries, "{s:?}");
}

/// Runs the operations encoded in `data`; panics on any divergence.
pub fn run(data: &[u8]) {
    let t = RawTable::new();
    let mut m = Model::default();
    let mut b = Bytes(data);
    let mut ops = 0;
    while let Some(op) = b.u8() {
        ops += 1;
        if ops > 2000 {
            break;
        }
        let done = (|| -> Option<()> {
            match op % 13 {
                0 | 1 => {
                    let (ep, sig) = (entrypoint(&mut b)?, signature(&mut b)?);
                    // Bursts fill segments so that sweeps have work.
                    let n = if op >= 240 { usize::from(b.u8()?) * 64 } else { 1 };
                    for _ in 0..n {
                        match (t.alloc(ep, sig), m.check_alloc(ep, sig)) {
                            (Ok(h), Ok(())) => {
                                m.fresh(h);
                                m.live.insert(h, (ep, sig));
                            }
                            (got, want) => assert_eq!(got.map(|_| ()), want, "alloc({ep:#x})"),
                        }
                    }
                }
                2 | 3 => {
                    let h = handle(&mut b, &m)?;
                    let got = t.free(h);
                    if m.live.remove(&h).is_some() {
                        assert_eq!(got, Ok(()), "free live {h:#x}");
                        m.dead.insert(h);
                        m.indices.remove(&(h & INDEX_MASK));
                    } else if m.native_handles.contains_key(&h) {
                        assert_eq!(got, Err(Error::NativeHandle));
                    } else if m.dead.contains(&h) {
                        assert_eq!(got, Err(Error::DoubleFree), "free dead {h:#x}");
                    } else {
                        assert!(matches!(got, Err(Error::InvalidHandle | Error::DoubleFree)), "free {h:#x}: {got:?}");
                    }
                }
                4 => {
                    let h = handle(&mut b, &m)?;
                    assert_eq!(t.get(h), m.get(h), "get {h:#x}");
                }
                5 => {
                    let (h, sig) = (handle(&mut b, &m)?, signature(&mut b)?);
                    assert_eq!(t.get_checked(h, sig), m.get_checked(h, sig), "get_checked {h:#x}");
                }
                6 => {
                    let (h, ep) = (handle(&mut b, &m)?, entrypoint(&mut b)?);
                    let want = m.check_ep(ep).and_then(|()| {
                        if m.live.contains_key(&h) {
                            Ok(())
                        } else if m.native_handles.contains_key(&h) {
                            Err(Error::NativeHandle)
                        } else {
                            Err(Error::InvalidHandle)
                        }
                    });
                    assert_eq!(t.set(h, ep), want, "set {h:#x} {ep:#x}");
                    if want.is_ok() {
                        m.live.get_mut(&h).unwrap().0 = ep;
                    }
                }
                7 => {
                    let addr = match b.u8()? {
                        0 => 0,
                        x @ 1..=200 => 0x7F00_0000_0000 + u64::from(x) * 8,
                        _ => b.u64()?,
                    };
                    let got = t.native_handle(addr);
                    if addr == 0 || !is_user_address(addr) {
                        assert_eq!(got, Err(Error::InvalidArgument));
                    } else if let Some(&h) = m.natives.get(&addr) {
                        assert_eq!(got, Ok(h));
                    } else {
                        let h = got.expect("native handle");
                        m.fresh(h);
                        m.natives.insert(addr, h);
                        m.native_handles.insert(h, addr);
                    }
                }
                8 => {
                    let threshold = match b.u8()? {
                        0 => 0,
                        1 => usize::MAX,
                        x => usize::from(x) * 64,
                    };
                    let before = t.stats();
                    let n = t.sweep(threshold);
                    if before.free < threshold.max(ENTRIES_PER_SEGMENT as usize) {
                        assert_eq!(n, 0, "sweep below threshold");
                    }
                    let after = t.stats();
                    assert_eq!(after.committed_segments, before.committed_segments - n);
                    assert_eq!(after.live, before.live);
                    check_all(&t, &m);
                }
                9 => {
                    let n = usize::from(b.u8()? % 4);
                    let mut hs = Vec::new();
                    let mut eps = Vec::new();
                    for _ in 0..n {
                        hs.push(handle(&mut b, &m)?);
                        eps.push(entrypoint(&mut b)?);
                    }
                    let want = eps.iter().try_for_each(|&e| m.check_ep(e)).and_then(|()| {
                        hs.iter().try_for_each(|h| {
                            if m.live.contains_key(h) {
                                Ok(())
                            } else if m.native_handles.contains_key(h) {
                                Err(Error::NativeHandle)
                            } else {
                                Err(Error::InvalidHandle)
                            }
                        })
                    });
                    assert_eq!(t.set_many(&hs, &eps), want, "set_many");
                    if want.is_ok() {
                        for (h, e) in hs.iter().zip(&eps) {
                            m.live.get_mut(h).unwrap().0 = *e;
                        }
                    }
                }
                10 => {
                    let start = 0x10_0000 + u64::from(b.u8()?) * 0x100;
                    let len = u64::from(b.u8()?) * 16;
                    if b.u8()? & 1 == 0 {
                        let want = if len == 0 || m.regions.iter().any(|&(s, e)| start < e && s < start + len) {
                            Err(Error::InvalidArgument)
                        } else {
                            Ok(())
                        };
                        assert_eq!(t.code_region_add(start, len), want, "region add");
                        if want.is_ok() {
                            m.regions.push((start, start + len));
                        }
                    } else {
                        let pos = m.regions.iter().position(|&r| r == (start, start + len));
                        let want = if len == 0 || pos.is_none() { Err(Error::InvalidArgument) } else { Ok(()) };
                        assert_eq!(t.code_region_remove(start, len), want, "region remove");
                        if let Some(p) = pos.filter(|_| len > 0) {
                            m.regions.remove(p);
                        }
                    }
                }
                11 => {
                    // Free and reallocate one slot many times: LIFO reuse
                    // gives the same index, so its generation wraps.
                    let n = usize::from(b.u8()?) * 2;
                    let ep = entrypoint(&mut b)?;
                    if m.check_ep(ep).is_err() {
                        return Some(());
                    }
                    let mut h = t.alloc(ep, 1).unwrap();
                    m.fresh(h);
                    for _ in 0..n {
                        t.free(h).unwrap();
                        m.indices.remove(&(h & INDEX_MASK));
                        m.dead.insert(h);
                        h = t.alloc(ep, 1).unwrap();
                        m.fresh(h);
                    }
                    m.live.insert(h, (ep, 1));
                }
                _ => check_all(&t, &m),
            }
            Some(())
        })();
        if done.is_none() {
            break;
        }
    }
    check_all(&t, &m);
}
