//! `Table::with_config`: the same options and refusals as the C ABI's
//! `wcpt_init_with`, as `Error` values. Protection is process-wide, so
//! everything that creates tables is one test, run in order (this file is
//! a process of its own).

use wcpt::handle::CAPACITY;
use wcpt::{Config, Error, Handle, Protection, Table};

fn capped(n: usize) -> Config {
    Config { max_entries: n, ..Config::DEFAULT }
}

#[test]
fn configured_tables() {
    // Malformed configurations: nothing is created.
    let pkeys = Config { protection: Some(Protection::Pkeys), ..Config::DEFAULT };
    for bad in [
        Config { pkey: Some(3), ..Config::DEFAULT },
        Config { pkey: Some(0), ..pkeys },
        Config { pkey: Some(16), ..pkeys },
        Config { protection: Some(Protection::None), require_protection: true, ..Config::DEFAULT },
    ] {
        assert_eq!(Table::with_config(&bad).err(), Some(Error::InvalidArgument), "{bad:?}");
    }

    // A cap on live entries; the configuration as validated.
    let t = Table::with_config(&capped(300)).unwrap();
    assert_eq!(t.config().max_entries, 300);
    let hs: Vec<Handle> = (0..300).map(|i| t.alloc(0x1000 + i * 16, 1).unwrap()).collect();
    assert!(hs.iter().all(|h| (1..=300).contains(&h.index())));
    assert_eq!(t.alloc(0x1000, 1), Err(Error::Capacity));
    assert_eq!(t.stats().capacity, 300);
    t.free(hs[7]).unwrap();
    assert!(t.alloc(0x1000, 1).is_ok());
    assert_eq!(Table::new().unwrap().stats().capacity, CAPACITY);

    // Protection is process-wide: while `t` lives, another table gets the
    // same protection or AlreadyInitialized; after, a new one applies.
    let other = if wcpt::protection_mode() == Protection::None { Protection::Alias } else { Protection::None };
    let want_other = Config { protection: Some(other), ..Config::DEFAULT };
    assert_eq!(Table::with_config(&want_other).err(), Some(Error::AlreadyInitialized));
    let same = Config { protection: Some(wcpt::protection_mode()), ..Config::DEFAULT };
    assert!(Table::with_config(&same).is_ok());
    drop(t);
    let t = Table::with_config(&want_other).unwrap();
    assert_eq!(wcpt::protection_mode(), other);
    let h = t.alloc(0x2000, 5).unwrap();
    assert_eq!(t.get(h), 0x2000);
    drop(t);

    // Thread caches off: still a working table.
    let t = Table::with_config(&Config { thread_cache: false, ..Config::DEFAULT }).unwrap();
    let h = t.alloc(0x3000, 1).unwrap();
    t.free(h).unwrap();
    assert_eq!(t.free(h), Err(Error::DoubleFree));
    drop(t);

    // Exact modes that do not work here are refused, never downgraded.
    let pku = Table::with_config(&Config { require_protection: true, ..pkeys });
    match pku {
        Ok(t) => assert_eq!((wcpt::protection_mode(), t.config().protection), (Protection::Pkeys, Some(Protection::Pkeys))),
        Err(e) => assert_eq!(e, Error::Protection),
    }
}
