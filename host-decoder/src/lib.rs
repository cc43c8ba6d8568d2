#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod assemble;
pub mod export;
pub mod input;
pub mod jaeger_thrift;
pub mod model;
pub mod rtt_gdb;
pub mod stream;
