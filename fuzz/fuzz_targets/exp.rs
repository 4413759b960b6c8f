//! `cargo +nightly fuzz run exp`: see `check::exp` (shared with the tests, which replay
//! `fuzz/regressions/exp/`).
#![no_main]

#[path = "../../tests/check/mod.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::exp(data));
