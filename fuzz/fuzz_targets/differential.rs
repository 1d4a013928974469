//! Differential fuzzing of the table against a reference model: every
//! operation's result is checked (see tests/support/differential.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/differential.rs"]
mod differential;

fuzz_target!(|data: &[u8]| {
    differential::run(data);
});
