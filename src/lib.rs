//! # wcpt: a code pointer table for JIT engines
//!
//! JIT code stores a 32-bit handle instead of a raw function pointer and calls
//! through `base[handle & WCPT_INDEX_MASK]`; only this library writes the
//! table, which can be write-protected with memory protection keys and carries
//! a signature hash per entry.
//!
//! The crate is a Rust core ([`Table`], usable on its own and as many separate
//! instances) under a thin C ABI (`ffi`, one process-wide table, exported as
//! `wcpt_*` and described by the generated `include/wcpt.h`). The C ABI is
//! the `capi` feature: a Rust dependent builds neither C library nor header.
//!
//! Modules, one concern each:
//! - `arch`: what depends on the CPU (thread pointer, protection-key register);
//! - `handle`: handle and entry layout, metadata words, error codes;
//! - `config`: a table's configuration (`Config`, the C `struct wcpt_config`);
//! - `memory`: reserving, committing and releasing the table's memory;
//! - `freelist`: per-segment lock-free freelists;
//! - `protect`: pkeys write protection and read-access repair;
//! - `native`: the address -> handle map for host functions;
//! - `regions`: registered code regions checked at write time;
//! - `table`: the table built from the above;
//! - `ffi`: the C ABI.

//!
//! The public Rust API is sound: no safe function can break the table's
//! guarantees. These must not compile:
//!
//! ```compile_fail
//! // Tearing down the process-wide table requires that no other thread
//! // uses it, so it is `unsafe`.
//! wcpt::ffi::wcpt_teardown();
//! ```
//!
//! ```compile_fail
//! // Write windows are the library's own; none can be opened (or leaked
//! // with `mem::forget`) from outside.
//! let w = wcpt::protect::Window::open();
//! std::mem::forget(w);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
pub mod config;
mod freelist;
pub mod handle;
mod memory;
mod native;
mod protect;
mod regions;
mod sync;
mod table;
mod thread_slot;

#[cfg(all(feature = "capi", not(loom)))]
pub mod ffi;

pub use config::Config;
pub use handle::{Error, Handle};
pub use protect::{mode as protection_mode, pkru_writes, Mode as Protection};
pub use table::{Stats, Table, SHARDS};

#[cfg(test)]
mod tests;
