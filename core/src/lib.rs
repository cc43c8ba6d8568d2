#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod atomic;
pub mod clock;
pub mod config;
pub mod context;
pub mod drain;
mod record;
pub mod ring;
#[cfg(feature = "std")]
mod std_support;
pub mod tracer;
pub mod value;
pub mod wire;

pub use clock::Clock;
pub use context::{Flags, SpanContext, SpanId, TraceId};
pub use drain::Drain;
pub use ring::Ring;
pub use tracer::{Baggage, RefKind, Session, Span, SpanBuilder, Tracer};
pub use value::Value;

#[cfg(feature = "std")]
pub use std_support::{write_all_frames, StdClock};

/// The version of this crate, sent in every session record so the decoder can report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
