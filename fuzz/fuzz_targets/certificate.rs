//! `cargo fuzz run certificate`: see `harness::certificate`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::certificate(data));
