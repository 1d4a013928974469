//! How a table is configured: by the embedder, through [`Config`] (the C
//! ABI's `struct wcpt_config`), with the environment variables only where
//! a field is left at its default.

use crate::handle::{Error, CAPACITY};
use crate::protect::Mode;

/// Highest protection key number on x86-64 (keys 1 to 15 can be allocated;
/// key 0 is every page's default).
pub const MAX_PKEY: u32 = 15;

/// A table's configuration. [`Config::DEFAULT`] (also `Default`) is what
/// `Table::new` and the C ABI's lazily created table use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The protection to apply. `None` (the default): the best that works
    /// here, pkeys, else the alias, else none, unless `WCPT_PROTECT` asks
    /// for another (`off`, `alias`, `pkeys`; a mode it names that does not
    /// work falls back to the next weaker one). `Some(mode)`: exactly that
    /// mode, or [`Error::Protection`] where it does not work here.
    /// Protection is process-wide: while any table exists, another can be
    /// created only with the same protection ([`Error::AlreadyInitialized`]).
    pub protection: Option<Mode>,
    /// A protection key (1 to 15) that the embedder allocated and wants
    /// the table to share, with `protection: Some(Mode::Pkeys)` only. wcpt
    /// then tags its table with that key, never frees it, and its write
    /// windows restore exactly the rights the thread had for it (the
    /// embedder's own windows stay open across wcpt calls). `None`: wcpt's
    /// own key.
    pub pkey: Option<u32>,
    /// A cap on live entries (allocations past it get [`Error::Capacity`]);
    /// 0 for none ([`CAPACITY`]). Larger values are [`CAPACITY`].
    pub max_entries: usize,
    /// Fail with [`Error::Protection`] instead of running unprotected (also
    /// when `WCPT_PROTECT=off` asks for no protection).
    pub require_protection: bool,
    /// Per-thread stacks of free entries (the default); `WCPT_THREAD_CACHE=off`
    /// turns them off only where this is left `true`.
    pub thread_cache: bool,
}

impl Config {
    /// The defaults: the best protection that works, wcpt's own key, no
    /// cap, not required, thread caches on.
    pub const DEFAULT: Config =
        Config { protection: None, pkey: None, max_entries: 0, require_protection: false, thread_cache: true };

    /// The configuration with every refusal checked and `max_entries`
    /// normalised (0 and anything above [`CAPACITY`] are [`CAPACITY`]), or
    /// [`Error::InvalidArgument`]: a key outside 1..=15, a key without
    /// `Some(Mode::Pkeys)`, or `require_protection` with `Some(Mode::None)`.
    pub fn validated(self) -> Result<Config, Error> {
        if let Some(k) = self.pkey {
            if k == 0 || k > MAX_PKEY || self.protection != Some(Mode::Pkeys) {
                return Err(Error::InvalidArgument);
            }
        }
        if self.require_protection && self.protection == Some(Mode::None) {
            return Err(Error::InvalidArgument);
        }
        let max_entries = if self.max_entries == 0 { CAPACITY } else { self.max_entries.min(CAPACITY) };
        Ok(Config { max_entries, ..self })
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::DEFAULT
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_normalisation() {
        assert_eq!(Config::DEFAULT.validated().unwrap().max_entries, CAPACITY);
        assert_eq!(Config { max_entries: 5, ..Config::DEFAULT }.validated().unwrap().max_entries, 5);
        assert_eq!(Config { max_entries: usize::MAX, ..Config::DEFAULT }.validated().unwrap().max_entries, CAPACITY);
        let keyed = Config { protection: Some(Mode::Pkeys), pkey: Some(3), ..Config::DEFAULT };
        assert!(keyed.validated().is_ok());
        for bad in [
            Config { pkey: Some(3), ..Config::DEFAULT },
            Config { protection: Some(Mode::Alias), pkey: Some(3), ..Config::DEFAULT },
            Config { pkey: Some(0), ..keyed },
            Config { pkey: Some(16), ..keyed },
            Config { protection: Some(Mode::None), require_protection: true, ..Config::DEFAULT },
        ] {
            assert_eq!(bad.validated(), Err(Error::InvalidArgument), "{bad:?}");
        }
    }
}
