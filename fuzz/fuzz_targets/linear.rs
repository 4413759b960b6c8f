//! `cargo +nightly fuzz run linear`: see `check::linear::linear` (shared with the tests,
//! which replay `fuzz/regressions/linear/`).
#![no_main]

#[path = "../../tests/check/mod.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::linear::linear(data));
