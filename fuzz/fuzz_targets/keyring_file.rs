//! `cargo fuzz run keyring_file`: see `harness::keyring_file`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::keyring_file(data));
