//! `cargo fuzz run stream_entry`: see `harness::stream_entry`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::stream_entry(data));
