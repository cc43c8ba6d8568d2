//! Compile-time thread-safety assertions: this file compiles only if the transports can move to
//! the task, thread or interrupt handler that drains the ring (a UART interrupt, an embassy
//! task), that is, if each is `Send` whenever its frame source and writer are.

use microspan::Drain;
use microspan_serial::asynch::AsyncDrain;
use microspan_serial::blocking::BlockingDrain;
use microspan_serial::dma::DmaDrain;
use microspan_serial::nb::NbDrain;
use microspan_serial::Counters;

const fn is_send<T: Send + ?Sized>() {}
const fn is_sync<T: Sync + ?Sized>() {}

/// A writer standing for a UART driver (the drains put no bound on it to be stored).
struct Uart;

const _: () = {
    is_send::<BlockingDrain<Drain<'static>, Uart>>();
    is_send::<BlockingDrain<&'static mut Drain<'static, 64, 16>, Uart>>();
    is_send::<NbDrain<Drain<'static>, Uart>>();
    is_send::<AsyncDrain<Drain<'static>, Uart>>();
    is_send::<DmaDrain<Drain<'static>>>();
    is_send::<Counters>();
    is_sync::<Counters>();
};

#[cfg(feature = "rtt")]
const _: () = {
    is_send::<microspan_serial::rtt::RttDrain<Drain<'static>>>();
};

/// The assertions are checked when this file compiles; the test only makes the file a target.
#[test]
fn transports_are_send() {}
