//! cargo-fuzz target: [`tidings_fuzz::admin_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::admin_request(data));
