//! cargo-fuzz target: [`tidings_fuzz::rabbitmq_envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::rabbitmq_envelope(data));
