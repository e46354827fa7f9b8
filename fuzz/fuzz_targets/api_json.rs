//! `cargo fuzz run api_json`: see `harness::api_json`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::api_json(data));
