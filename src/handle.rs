//! Handles, entry layout and the status codes: everything JIT code and the C
//! ABI agree on.
//!
//! A handle is `generation << 24 | index`. The index selects a 16-byte entry
//! `{ entrypoint: u64, check: u64 }`, whose check word is
//! `generation << 56 | signature` ([`check_word`]): one 64-bit compare tells
//! a live handle of the right type from a stale, forged or mistyped one, so
//! a freed handle never answers again until the 8-bit generation wraps, in
//! the library and in generated code alike.

/// Bits of a handle that select the entry.
pub const INDEX_BITS: u32 = 24;
/// Mask that turns any `u32` into an in-bounds entry index.
pub const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// The handle that no allocation ever returns; masked, it reaches entry
/// 0xFFFFFF, which is never allocated either.
pub const INVALID_HANDLE: u32 = u32::MAX;
/// Size of one entry in bytes.
pub const ENTRY_SIZE: usize = 16;

/// log2 of the entries in one segment (the unit of commit and release).
#[cfg(not(loom))]
pub const SEGMENT_SHIFT: u32 = 12;
/// log2 of the entries in one segment; tiny under loom so models stay small.
#[cfg(loom)]
pub const SEGMENT_SHIFT: u32 = 2;
/// Entries in one segment: 4096 entries, 64 KiB.
pub const ENTRIES_PER_SEGMENT: u32 = 1 << SEGMENT_SHIFT;
/// Number of segments the table is reserved for.
#[cfg(not(loom))]
pub const SEGMENTS: u32 = 1 << (INDEX_BITS - SEGMENT_SHIFT);
/// Number of segments the table is reserved for; two under loom.
#[cfg(loom)]
pub const SEGMENTS: u32 = 2;
/// Entries reserved: every index below this can be read without faulting.
pub const TABLE_ENTRIES: u32 = SEGMENTS << SEGMENT_SHIFT;
/// The last index; like index 0 it is never allocated.
pub const LAST_INDEX: u32 = TABLE_ENTRIES - 1;
/// Entries that can be allocated: all but index 0 and the last index.
pub const CAPACITY: usize = TABLE_ENTRIES as usize - 2;

/// Bits of a signature: the check word keeps the handle's generation in
/// the top 8 bits.
pub const SIGNATURE_BITS: u32 = 56;
/// The largest signature.
pub const SIGNATURE_MASK: u64 = (1 << SIGNATURE_BITS) - 1;
/// The signature stored with native (host) function handles: all ones.
pub const NATIVE_SIGNATURE: u64 = SIGNATURE_MASK;

/// The check word an entry holds for `handle` and `signature`: the handle's
/// generation byte above the signature. A free entry holds the check word of
/// its next generation with the native signature, which no issued handle of
/// that entry has.
#[inline(always)]
pub fn check_word(handle: u32, signature: u64) -> u64 {
    (u64::from(handle >> INDEX_BITS) << SIGNATURE_BITS) | signature
}

/// The entrypoint word of a free entry: this tag in bits 63..48 (never a
/// canonical address, so a call through it faults) and, in the low bits, the
/// freelist link of its segment.
pub(crate) const FREE_TAG: u64 = 0xFFFE_0000_0000_0000;
pub(crate) const FREE_TAG_MASK: u64 = 0xFFFF_0000_0000_0000;

/// Returns whether `addr` is a canonical user-space address (bits 63..47 clear).
#[inline]
pub fn is_user_address(addr: u64) -> bool {
    addr >> 47 == 0
}

/// A handle to a table entry, as the Rust API gives and takes it: the 32
/// bits that generated code and the C ABI (`wcpt_handle`) use,
/// `generation << 24 | index`, in a type of its own so that it cannot be
/// mixed up with other integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Handle(u32);

impl Handle {
    /// The handle no allocation returns (`WCPT_INVALID_HANDLE`).
    pub const INVALID: Handle = Handle(INVALID_HANDLE);
    /// The null handle (index 0, never allocated).
    pub const NULL: Handle = Handle(0);

    /// A handle from its 32 bits, for instance read from generated code's
    /// memory. Any value is accepted: the table answers only handles it
    /// issued and still holds, and refuses every other with a status.
    #[inline(always)]
    pub const fn from_raw(raw: u32) -> Handle {
        Handle(raw)
    }

    /// The 32 bits generated code stores and the C ABI passes.
    #[inline(always)]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The entry index (`raw() & INDEX_MASK`).
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self.0 & INDEX_MASK
    }

    /// The generation byte, as the entry's check word holds it.
    #[inline(always)]
    pub const fn generation(self) -> u8 {
        (self.0 >> INDEX_BITS) as u8
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// Splits a handle into (index, generation).
#[inline]
pub fn split(handle: u32) -> (u32, u8) {
    (handle & INDEX_MASK, (handle >> INDEX_BITS) as u8)
}

/// Builds a handle from an index and a generation.
#[inline]
pub fn join(index: u32, generation: u8) -> u32 {
    (u32::from(generation) << INDEX_BITS) | index
}

/// Why an operation failed. The numeric values are the C ABI's `wcpt_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Error {
    /// Handle 0, `WCPT_INVALID_HANDLE`, out of range, never allocated, or
    /// (for `set`) no longer live.
    InvalidHandle = 1,
    /// Freeing a handle whose generation has already ended.
    DoubleFree = 2,
    /// Freeing or setting a native handle.
    NativeHandle = 3,
    /// A non-canonical entrypoint or address, or a null out-pointer.
    InvalidArgument = 4,
    /// Every allocatable entry is in use.
    Capacity = 5,
    /// The OS refused memory.
    OutOfMemory = 6,
    /// Code regions are registered and the entrypoint is in none of them.
    NotCode = 7,
    /// The write protection could not be set up or changed.
    Protection = 8,
    /// A bug in wcpt was caught at the ABI boundary; the table is unchanged.
    Internal = 9,
    /// A table exists already with another configuration (for protection,
    /// which is process-wide: another table with other protection).
    AlreadyInitialized = 10,
}

impl Error {
    /// A short description, the same text as the C ABI's `wcpt_status_str`.
    pub fn as_str(self) -> &'static str {
        match self {
            Error::InvalidHandle => "invalid handle",
            Error::DoubleFree => "double free: the handle's generation has already ended",
            Error::NativeHandle => "native handles cannot be freed or set",
            Error::InvalidArgument => "invalid argument",
            Error::Capacity => "capacity exhausted",
            Error::OutOfMemory => "out of memory",
            Error::NotCode => "entrypoint is not in a registered code region",
            Error::Protection => "memory protection failed",
            Error::Internal => "internal error",
            Error::AlreadyInitialized => "already initialized with another configuration",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

/// The metadata word of an entry (16 bits, kept outside the entry and never
/// released by a sweep so that generations survive it).
///
/// bits 0..2: state, bit 2: the generation has wrapped at least once, bit 3:
/// pinned by `set`, bit 4: claimed by `free_many`, bits 8..16: generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta(pub(crate) u16);

impl Meta {
    pub(crate) const FREE: u16 = 0;
    pub(crate) const LIVE: u16 = 1;
    pub(crate) const NATIVE: u16 = 2;
    const STATE_MASK: u16 = 3;
    pub(crate) const WRAPPED: u16 = 4;
    /// A `set` is writing the entry; `free` waits for it to finish.
    pub(crate) const PINNED: u16 = 8;
    /// A `free_many` has claimed the entry and will free it or let it go;
    /// `free` and `set` wait, another batch gives up.
    pub(crate) const CLAIMED: u16 = 16;

    #[inline]
    pub(crate) fn generation(self) -> u8 {
        (self.0 >> 8) as u8
    }
    #[inline]
    pub(crate) fn state(self) -> u16 {
        self.0 & Self::STATE_MASK
    }
    #[inline]
    pub(crate) fn pinned(self) -> bool {
        self.0 & Self::PINNED != 0
    }
    #[inline]
    pub(crate) fn claimed(self) -> bool {
        self.0 & Self::CLAIMED != 0
    }
    /// Whether the entry is allocated by `alloc` with generation `g`.
    #[inline]
    pub(crate) fn is_live(self, g: u8) -> bool {
        self.generation() == g && self.state() == Self::LIVE
    }
    #[inline]
    pub(crate) fn with_state(self, state: u16) -> Meta {
        Meta((self.0 & !Self::STATE_MASK) | state)
    }
    /// The word after freeing: the next generation, free.
    #[inline]
    pub(crate) fn freed(self) -> Meta {
        let g = self.generation();
        let wrapped = if g == u8::MAX { Self::WRAPPED } else { self.0 & Self::WRAPPED };
        Meta((u16::from(g.wrapping_add(1)) << 8) | wrapped | Self::FREE)
    }
    /// Why a handle of generation `g` that does not answer was refused by
    /// `free`: its generation ended (double free) or never began (invalid).
    /// The caller passes the generation and wrapped flag that outlive a
    /// sweep; they decide only for a released word, which reads as zero. (A
    /// word that was freed is never zero: its generation or its wrapped bit
    /// is set. And just after a free's CAS the persistent byte may still be
    /// behind, so a non-zero word is the truth.)
    pub(crate) fn refusal(self, g: u8, persistent: Option<(u8, bool)>) -> Error {
        let (cur, wrapped) = match persistent {
            Some(p) if self.0 == 0 => p,
            _ => (self.generation(), self.0 & Self::WRAPPED != 0),
        };
        if self.state() == Self::NATIVE && cur == g {
            Error::NativeHandle
        } else if g < cur || (wrapped && (g != cur || self.state() == Self::FREE)) {
            // Generations only advance by freeing, so every generation below
            // the current one was allocated and has ended; after a wrap, all
            // of them have.
            Error::DoubleFree
        } else {
            Error::InvalidHandle
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn handle_roundtrip() {
        assert_eq!(split(join(0x123456, 0xAB)), (0x123456, 0xAB));
        assert_eq!(split(INVALID_HANDLE).0, LAST_INDEX);
    }

    #[test]
    fn meta_generations_and_refusals() {
        let m = Meta(0).with_state(Meta::LIVE);
        assert!(m.is_live(0));
        let f = m.freed();
        assert_eq!(f.generation(), 1);
        assert_eq!(f.refusal(0, None), Error::DoubleFree);
        assert_eq!(f.refusal(1, None), Error::InvalidHandle);
        assert_eq!(f.refusal(7, None), Error::InvalidHandle);
        let mut w = Meta(0xFF00 | Meta::LIVE);
        w = w.freed();
        assert_eq!(w.generation(), 0);
        assert_eq!(w.refusal(0, None), Error::DoubleFree);
        assert_eq!(w.refusal(200, None), Error::DoubleFree);
        assert_eq!(Meta(0x0300 | Meta::NATIVE).refusal(3, None), Error::NativeHandle);
        // Released metadata reads as zero: the persistent generation decides.
        assert_eq!(Meta(0).refusal(4, Some((5, false))), Error::DoubleFree);
        assert_eq!(Meta(0).refusal(6, Some((5, false))), Error::InvalidHandle);
        assert_eq!(Meta(0).refusal(6, Some((5, true))), Error::DoubleFree);
    }

    #[test]
    fn typed_handles() {
        let h = Handle::from_raw(join(0x12_3456, 0xAB));
        assert_eq!((h.index(), h.generation(), h.raw()), (0x12_3456, 0xAB, 0xAB12_3456));
        assert_eq!(h.to_string(), "0xab123456");
        assert_eq!(Handle::INVALID.raw(), INVALID_HANDLE);
        assert_eq!(Handle::NULL.raw(), 0);
        assert_eq!(std::mem::size_of::<Handle>(), 4, "transparent: C arrays are read in place");
    }

    #[test]
    fn errors_display_and_are_std_errors() {
        let e: Box<dyn std::error::Error> = Box::new(Error::DoubleFree);
        assert_eq!(e.to_string(), "double free: the handle's generation has already ended");
        assert_eq!(Error::OutOfMemory.to_string(), "out of memory");
    }

    #[test]
    fn check_words() {
        assert_eq!(check_word(0xAB12_3456, 0x77), 0xAB00_0000_0000_0077);
        assert_eq!(check_word(join(5, 0xFF), NATIVE_SIGNATURE), u64::MAX);
        assert_eq!(NATIVE_SIGNATURE, 0x00FF_FFFF_FFFF_FFFF);
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_user_address(0));
        assert!(is_user_address(0x7fff_ffff_ffff));
        assert!(!is_user_address(0x8000_0000_0000));
        assert!(!is_user_address(FREE_TAG));
    }
}
