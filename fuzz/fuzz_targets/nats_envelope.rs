//! cargo-fuzz target: [`tidings_fuzz::nats_envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::nats_envelope(data));
