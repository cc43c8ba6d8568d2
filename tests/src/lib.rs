#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod insn;
pub mod qemu;
pub mod receiver;
pub mod reference;
pub mod snapshot;
