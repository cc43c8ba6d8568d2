//! `cargo +nightly fuzz run frames`: see `host-decoder/fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microspan_decoder_fuzz::frames(data));
