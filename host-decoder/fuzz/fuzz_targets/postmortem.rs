//! `cargo +nightly fuzz run postmortem`: see `host-decoder/fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microspan_decoder_fuzz::postmortem(data));
