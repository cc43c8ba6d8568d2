#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod assemble;
pub mod capture;
pub mod export;
pub mod input;
pub mod jaeger_thrift;
pub mod model;
pub mod plural;
pub mod postmortem;
pub mod rtt_gdb;
#[cfg(feature = "probe-rs")]
pub mod rtt_probe;
pub mod stream;
pub mod terminal;

// Batches go to the uploader's worker thread, and a library user may decode on a thread of its
// own: these must stay `Send` (a change that adds an `Rc` to one fails to compile here).
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<stream::StreamDecoder>();
    is_send::<assemble::Assembler>();
    is_send::<model::Batch>();
};
