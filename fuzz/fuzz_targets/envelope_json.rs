//! cargo-fuzz target: [`tidings_fuzz::envelope_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::envelope_json(data));
