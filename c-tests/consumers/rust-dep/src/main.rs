//! Uses wcpt as a Rust library: its own table, typed errors.
use wcpt::{Error, Table};

fn main() {
    let t = Table::new().expect("a table");
    let h = t.alloc(0x1000, 7).expect("an entry");
    assert_eq!(t.get_checked(h, 7), 0x1000);
    assert_eq!(t.call_target(h, 7), 0x1000);
    t.free(h).expect("freed");
    let e: Box<dyn std::error::Error> = Box::new(t.free(h).unwrap_err());
    assert_eq!(t.free(h), Err(Error::DoubleFree));
    println!("wcpt as a Rust dependency: ok ({e})");
}
