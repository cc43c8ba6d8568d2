// What the README links to that only feature `std` adds: without it, the links go to the
// README's own section on that feature instead of showing as `[StdClock]`, brackets and all.
// Link definitions first: after the README they would join its last paragraph.
#![cfg_attr(
    not(feature = "std"),
    doc = "[`StdClock`]: #on-the-desktop-feature-std\n[`write_all_frames`]: #on-the-desktop-feature-std"
)]
#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// `single-core` drops the ring's memory barriers: sound on one core (thread mode and its
// interrupt handlers), a data race between threads of a desktop or server OS, which run on
// several cores. Refused where an OS schedules the code; the loom model brings its own.
#[cfg(all(feature = "single-core", not(target_os = "none"), not(loom)))]
compile_error!(
    "microspan: feature `single-core` is for bare-metal chips with one core (target_os = \"none\"); \
     on this target threads run on several cores and the ring needs its memory barriers: \
     turn the feature off"
);

// First: its macros (`warn!`, `debug!`) are in scope in the modules below.
#[macro_use]
mod fmt;

mod atomic;
// The docs of `clock` and `postmortem` link to what feature `std` adds (`StdClock`, the
// post-mortem reader): those links resolve in docs built with it (docs.rs builds with `std`, see
// Cargo.toml) and are left as text without it. Every other link is checked in every build.
#[cfg_attr(not(feature = "std"), allow(rustdoc::broken_intra_doc_links))]
pub mod clock;
pub mod config;
pub mod context;
pub mod conventions;
#[cfg(feature = "cortex-m")]
pub mod cortex_m;
#[cfg(feature = "defmt")]
mod defmt;
pub mod drain;
pub mod future;
#[cfg(not(loom))]
#[cfg_attr(not(feature = "std"), allow(rustdoc::broken_intra_doc_links))]
pub mod postmortem;
pub mod propagation;
mod record;
pub mod ring;
pub mod sampler;
#[cfg(feature = "std")]
mod std_support;
pub mod tracer;
pub mod value;
pub mod wire;

pub use clock::Clock;
pub use context::{Flags, SpanContext, SpanId, TraceId};
pub use drain::Drain;
pub use future::{FutureExt, Instrumented};
pub use propagation::{ExtractError, Extracted, InjectError};
pub use ring::{Policy, Ring};
pub use sampler::Sampler;
pub use tracer::{Baggage, BaggageItem, RefKind, Session, Span, SpanBuilder, Tracer};
pub use value::{Tags, Value};

#[cfg(feature = "std")]
pub use std_support::{write_all_frames, StdClock};

/// The version of this crate, sent in every session record so the decoder can report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
