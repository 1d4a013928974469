//! The table with raw 32-bit handles, for the harnesses that build handles
//! bit by bit (fuzzer input, forged generations, random values): each call
//! goes through `Handle::from_raw`, exactly as the C ABI does.

use wcpt::{Error, Handle, Table};

pub struct RawTable(pub Table);

#[allow(dead_code)] // each harness uses a part
impl RawTable {
    pub fn new() -> RawTable {
        RawTable(Table::new().expect("reserve a table"))
    }
    pub fn alloc(&self, entrypoint: u64, signature: u64) -> Result<u32, Error> {
        self.0.alloc(entrypoint, signature).map(Handle::raw)
    }
    pub fn free(&self, h: u32) -> Result<(), Error> {
        self.0.free(Handle::from_raw(h))
    }
    pub fn get(&self, h: u32) -> u64 {
        self.0.get(Handle::from_raw(h))
    }
    pub fn get_checked(&self, h: u32, signature: u64) -> u64 {
        self.0.get_checked(Handle::from_raw(h), signature)
    }
    pub fn call_target(&self, h: u32, signature: u64) -> u64 {
        self.0.call_target(Handle::from_raw(h), signature)
    }
    pub fn set(&self, h: u32, entrypoint: u64) -> Result<(), Error> {
        self.0.set(Handle::from_raw(h), entrypoint)
    }
    pub fn set_many(&self, hs: &[u32], entrypoints: &[u64]) -> Result<(), Error> {
        let hs: Vec<Handle> = hs.iter().map(|&h| Handle::from_raw(h)).collect();
        self.0.set_many(&hs, entrypoints)
    }
    pub fn native_handle(&self, address: u64) -> Result<u32, Error> {
        self.0.native_handle(address).map(Handle::raw)
    }
}

impl std::ops::Deref for RawTable {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.0
    }
}
