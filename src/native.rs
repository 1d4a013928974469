//! Native (host) function handles: one stable handle per address.
//!
//! A read-mostly open-addressing hash map from address to handle. Lookups of
//! known addresses are lock-free (two loads per probe); only the creation of a
//! new handle takes the map's mutex. When the map grows, the old array stays
//! alive (readers may still be probing it) until the map is dropped; arrays
//! double, so the retired ones take less memory than the live one.

use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering::*};

struct Slots {
    mask: usize,
    keys: Box<[AtomicU64]>,
    handles: Box<[AtomicU32]>,
}

impl Slots {
    fn with_capacity(n: usize) -> Box<Slots> {
        Box::new(Slots {
            mask: n - 1,
            keys: (0..n).map(|_| AtomicU64::new(0)).collect(),
            handles: (0..n).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    #[inline]
    fn start(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    #[inline]
    fn find(&self, key: u64) -> Option<u32> {
        let mut i = self.start(key);
        loop {
            // Acquire: pairs with the Release store of the key in `put`, so
            // the handle stored before it is visible.
            let k = self.keys[i].load(Acquire);
            if k == key {
                return Some(self.handles[i].load(Relaxed));
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts a key known to be absent. Only under the map's mutex.
    fn put(&self, key: u64, handle: u32) {
        let mut i = self.start(key);
        while self.keys[i].load(Relaxed) != 0 {
            i = (i + 1) & self.mask;
        }
        self.handles[i].store(handle, Relaxed);
        self.keys[i].store(key, Release);
    }
}

pub(crate) struct NativeMap {
    current: AtomicPtr<Slots>,
    len: AtomicUsize,
    /// Held while creating a handle; owns the retired arrays.
    writer: Mutex<Vec<Box<Slots>>>,
}

const INITIAL_SLOTS: usize = 64;

impl NativeMap {
    pub(crate) fn new() -> NativeMap {
        NativeMap {
            current: AtomicPtr::new(Box::into_raw(Slots::with_capacity(INITIAL_SLOTS))),
            len: AtomicUsize::new(0),
            writer: Mutex::new(Vec::new()),
        }
    }

    fn slots(&self) -> &Slots {
        // SAFETY: `current` always points to a live `Slots`: it starts as one,
        // is only replaced under the writer lock by another, and replaced ones
        // are kept in `writer` until the map is dropped.
        unsafe { &*self.current.load(Acquire) }
    }

    /// The handle of a known address, without taking any lock.
    #[inline]
    pub(crate) fn get(&self, address: u64) -> Option<u32> {
        self.slots().find(address)
    }

    /// The handle of `address`, created by `create` under the writer lock if
    /// it is not known yet. Concurrent callers for one address get one handle.
    pub(crate) fn get_or_create<E>(
        &self,
        address: u64,
        create: impl FnOnce() -> Result<u32, E>,
    ) -> Result<u32, E> {
        if let Some(h) = self.get(address) {
            return Ok(h);
        }
        let mut retired = self.writer.lock();
        let slots = self.slots();
        if let Some(h) = slots.find(address) {
            return Ok(h);
        }
        let handle = create()?;
        let n = self.len.load(Relaxed) + 1;
        if n * 2 > slots.mask + 1 {
            let bigger = Slots::with_capacity((slots.mask + 1) * 2);
            for i in 0..=slots.mask {
                let k = slots.keys[i].load(Relaxed);
                if k != 0 {
                    bigger.put(k, slots.handles[i].load(Relaxed));
                }
            }
            bigger.put(address, handle);
            let old = self.current.swap(Box::into_raw(bigger), AcqRel);
            // SAFETY: `old` came from Box::into_raw and is no longer current;
            // it is kept alive in `retired` for readers still probing it.
            retired.push(unsafe { Box::from_raw(old) });
        } else {
            slots.put(address, handle);
        }
        self.len.store(n, Relaxed);
        Ok(handle)
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Holds the writer lock (across `fork`; see `ffi`).
    pub(crate) fn lock(&self) -> impl Sized + '_ {
        self.writer.lock()
    }
}

impl Drop for NativeMap {
    fn drop(&mut self) {
        let p = self.current.load(Relaxed);
        // SAFETY: `p` came from Box::into_raw and nothing else frees it; the
        // map is being dropped, so no reader remains.
        drop(unsafe { Box::from_raw(p) });
    }
}
