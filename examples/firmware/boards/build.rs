//! Selects the board's `memory.x` and provides the `device.x` that cortex-m-rt's `link.x`
//! includes, by copying them into OUT_DIR and adding OUT_DIR to the linker search path.

use std::{env, fs, path::PathBuf};

fn main() {
    let lm3s6965 = env::var_os("CARGO_FEATURE_LM3S6965").is_some();
    let microbit = env::var_os("CARGO_FEATURE_MICROBIT").is_some();
    let target = env::var("TARGET").unwrap_or_default();
    let board = match (lm3s6965, microbit) {
        (true, false) => "lm3s6965",
        (false, true) => "microbit",
        // lib.rs reports these with a compile_error! naming the fix.
        _ => return,
    };
    if board == "microbit" && !target.starts_with("thumbv6m") {
        panic!(
            "microspan-boards: the micro:bit's nRF51822 is a Cortex-M0; build with \
             `--target thumbv6m-none-eabi --features microbit` (got target `{target}`)"
        );
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let memory = manifest.join("memory").join(format!("{board}.x"));
    fs::copy(&memory, out.join("memory.x")).expect("copy memory.x");
    fs::copy(manifest.join("device/device.x"), out.join("device.x")).expect("copy device.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rerun-if-changed=device/device.x");
    println!("cargo:rerun-if-changed=build.rs");
}
