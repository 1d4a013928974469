//! Native (host) function handles: one stable handle per (address,
//! signature) pair.
//!
//! A read-mostly open-addressing hash map from the pair to its handle. Lookups of
//! known addresses are lock-free (two loads per probe); only the creation of a
//! new handle takes the map's mutex. When the map grows, the old array stays
//! alive (readers may still be probing it) until the map is dropped; arrays
//! double, so the retired ones take less memory than the live one.
//!
//! The arrays are [`MappedArray`]s: a corrupted slot would hand an engine
//! the wrong handle for a host function, so they are written only inside a
//! write window, and allocating one can fail with `OutOfMemory` instead of
//! aborting. Nothing here touches the Rust heap.

use crate::handle::Error;
use crate::memory::MappedArray;
use crate::protect::Window;
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering::*};

/// One slot: the address (0 when empty), its signature and its handle.
/// The address is written last (Release), so a reader that sees it sees the
/// other two; a filled slot never changes.
struct Slot {
    key: AtomicU64,
    signature: AtomicU64,
    handle: AtomicU64,
}

// SAFETY: three atomic integers; all-zero is an empty slot.
unsafe impl crate::memory::Zeroed for Slot {
    fn zeroed() -> Self {
        Slot { key: AtomicU64::new(0), signature: AtomicU64::new(0), handle: AtomicU64::new(0) }
    }
}

/// What the map is keyed by: a nonzero address and a signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Key {
    pub address: u64,
    pub signature: u64,
}

/// A view of one array: its slots and `len - 1` as the probe mask.
#[derive(Clone, Copy)]
struct Slots<'a>(&'a [Slot]);

impl Slots<'_> {
    #[inline]
    fn mask(self) -> usize {
        self.0.len() - 1
    }

    #[inline]
    fn start(self, key: Key) -> usize {
        let mixed = (key.address ^ key.signature.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 32) as usize & self.mask()
    }

    #[inline]
    fn find(self, key: Key) -> Option<u32> {
        let mut i = self.start(key);
        // At most len probes: a corrupted (full) array cannot loop forever.
        for _ in 0..self.0.len() {
            // Acquire: pairs with the Release store of the key in `put`, so
            // the signature and handle stored before it are visible.
            let k = self.0[i].key.load(Acquire);
            if k == key.address && self.0[i].signature.load(Relaxed) == key.signature {
                return Some(self.0[i].handle.load(Relaxed) as u32);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & self.mask();
        }
        None
    }

    /// Inserts a key known to be absent. Only under the map's mutex, in a
    /// write window, with a free slot (the load factor stays at most 1/2).
    fn put(self, key: Key, handle: u32, _w: &Window) {
        let mut i = self.start(key);
        while self.0[i].key.load(Relaxed) != 0 {
            i = (i + 1) & self.mask();
        }
        self.0[i].handle.store(u64::from(handle), Relaxed);
        self.0[i].signature.store(key.signature, Relaxed);
        self.0[i].key.store(key.address, Release);
    }
}

/// Arrays double from `INITIAL_SLOTS`; this many generations cover every
/// handle the table can hold (2^6 << 26 > 2 * 2^24).
const GENERATIONS: usize = 27;
const INITIAL_SLOTS: usize = 64;

pub(crate) struct Arrays {
    /// Every array ever made, the current one last; older ones are kept for
    /// readers that may still be probing them.
    all: [Option<MappedArray<Slot>>; GENERATIONS],
    count: usize,
}

pub(crate) struct NativeMap {
    /// The current array. Its slot 0 is a header whose `key` is the number
    /// of slots after it, written before the array is published.
    current: AtomicPtr<Slot>,
    len: AtomicUsize,
    /// Held while creating a handle; owns the arrays.
    writer: Mutex<Arrays>,
}

/// A new array of `n` slots (a power of two) after its header, or
/// `OutOfMemory`. Writes the header, so the caller has a write window.
fn make_array(n: usize, _w: &Window) -> Result<MappedArray<Slot>, Error> {
    let array = MappedArray::<Slot>::zeroed(n + 1)?;
    array[0].key.store(n as u64, Relaxed);
    Ok(array)
}

/// The slots of an array, after its header.
fn slots_of(array: &MappedArray<Slot>) -> Slots<'_> {
    Slots(&array[1..])
}

impl NativeMap {
    pub(crate) fn new() -> Result<NativeMap, Error> {
        let first = make_array(INITIAL_SLOTS, &Window::open())?;
        let current = AtomicPtr::new(first.as_ptr().cast_mut());
        let mut all = [const { None }; GENERATIONS];
        all[0] = Some(first);
        Ok(NativeMap { current, len: AtomicUsize::new(0), writer: Mutex::new(Arrays { all, count: 1 }) })
    }

    fn slots(&self) -> Slots<'_> {
        // Acquire: pairs with the Release in `get_or_create`, so the copied
        // slots of a new array are visible.
        let header = self.current.load(Acquire);
        // SAFETY: `current` always points to the header of an array owned by
        // `writer.all`, which keeps every array until the map is dropped; the
        // map outlives the returned borrow. The header says how many slots
        // follow it (written before the array was published).
        unsafe {
            let len = (*header).key.load(Relaxed) as usize;
            Slots(std::slice::from_raw_parts(header.add(1), len))
        }
    }

    /// The handle of a known pair, without taking any lock. The caller has
    /// read access to protected memory.
    #[inline]
    pub(crate) fn get(&self, key: Key) -> Option<u32> {
        self.slots().find(key)
    }

    /// The handle of `key`, created by `create` under the writer lock if it
    /// is not known yet. Concurrent callers for one pair get one handle.
    /// `create` runs in the map's write window. If the map must grow, the
    /// bigger array is made first, so a refusal (`OutOfMemory`) leaves the
    /// table and the map as they were.
    pub(crate) fn get_or_create(
        &self,
        key: Key,
        create: impl FnOnce(&Window) -> Result<u32, Error>,
    ) -> Result<u32, Error> {
        if let Some(h) = self.get(key) {
            return Ok(h);
        }
        let mut arrays = self.writer.lock();
        let slots = self.slots();
        if let Some(h) = slots.find(key) {
            return Ok(h);
        }
        let n = self.len.load(Relaxed) + 1;
        let w = Window::open();
        let bigger = if n * 2 > slots.0.len() {
            if arrays.count == GENERATIONS {
                return Err(Error::Capacity);
            }
            Some(make_array(slots.0.len() * 2, &w)?)
        } else {
            None
        };
        let handle = create(&w)?;
        match bigger {
            Some(bigger) => {
                let view = slots_of(&bigger);
                for slot in slots.0 {
                    let address = slot.key.load(Relaxed);
                    if address != 0 {
                        let old = Key { address, signature: slot.signature.load(Relaxed) };
                        view.put(old, slot.handle.load(Relaxed) as u32, &w);
                    }
                }
                view.put(key, handle, &w);
                // Release: the copied slots are visible to whoever sees the
                // new array.
                self.current.store(bigger.as_ptr().cast_mut(), Release);
                let i = arrays.count;
                arrays.all[i] = Some(bigger);
                arrays.count += 1;
            }
            None => slots.put(key, handle, &w),
        }
        self.len.store(n, Relaxed);
        Ok(handle)
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Holds the writer lock (across `fork`; see `ffi`).
    #[cfg_attr(any(loom, not(feature = "capi")), allow(dead_code))] // used by the fork handlers (in the C ABI)
    pub(crate) fn lock(&self) -> MutexGuard<'_, Arrays> {
        self.writer.lock()
    }
}
