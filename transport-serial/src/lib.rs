//! Drains a microspan ring to a serial transport.
#![no_std]
