//! cargo-fuzz target: [`tidings_fuzz::orderflow_order`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::orderflow_order(data));
