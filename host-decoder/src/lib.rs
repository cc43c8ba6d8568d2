#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod assemble;
pub mod export;
pub mod input;
pub mod jaeger_thrift;
pub mod model;
pub mod postmortem;
pub mod rtt_gdb;
#[cfg(feature = "probe-rs")]
pub mod rtt_probe;
pub mod stream;
