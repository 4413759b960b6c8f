//! `cargo +nightly fuzz run bad_input`: see `check::bad_input` (shared with the tests, which replay
//! `fuzz/regressions/bad_input/`).
#![no_main]

#[path = "../../tests/check/mod.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::bad_input(data));
