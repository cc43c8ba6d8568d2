//! The atomics the record path uses, on every target.
//!
//! Cores with compare-and-swap (Cortex-M3/M4/M7, RISC-V with the A extension, desktops) use
//! `core::sync::atomic`. Cores without it (Cortex-M0/M0+, thumbv6m) use `portable-atomic`'s
//! critical-section fallback, so the same API holds; the firmware supplies the `critical-section`
//! implementation (on a single-core Cortex-M, `cortex-m/critical-section-single-core`). Under
//! `cfg(loom)` the loom model's atomics replace both so the protocol can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(all(not(loom), target_has_atomic = "32"))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(all(not(loom), not(target_has_atomic = "32")))]
pub(crate) use portable_atomic::{AtomicBool, AtomicU32, Ordering};
