//! Jaeger's Thrift types, generated from `thrift/jaeger.thrift` (upstream jaeger-idl, Apache-2.0)
//! by Debian's Thrift compiler 0.17 and committed as generated; the `thrift` crate 0.17 is its
//! runtime. Regenerate with:
//!
//! ```text
//! thrift --gen rs -out src/jaeger_thrift thrift/jaeger.thrift
//! ```
//!
//! Do not edit `jaeger.rs` by hand.

#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    non_camel_case_types,
    unused_imports,
    unused_extern_crates,
    dead_code,
    rustdoc::all
)]
mod jaeger;

pub use jaeger::*;
