//! `cargo fuzz run submit_json`: see `harness::submit_json`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::submit_json(data));
