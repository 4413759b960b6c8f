//! `cargo +nightly fuzz run differential`: see `check::differential` (shared with the tests, which replay
//! `fuzz/regressions/differential/`).
#![no_main]

#[path = "../../tests/check/mod.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::differential(data));
