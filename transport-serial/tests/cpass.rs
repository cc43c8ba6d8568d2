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

const _: () = {
    // Lent out beside a frame's bytes, held across the awaits of an async write.
    is_send::<microspan::drain::TimeKeeper<'static>>();
};

/// An async writer whose futures are `Send` (as embassy's drivers' are).
struct AsyncUart;

impl embedded_io_async::ErrorType for AsyncUart {
    type Error = core::convert::Infallible;
}

impl embedded_io_async::Write for AsyncUart {
    async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
        Ok(b.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The async drain's futures are `Send` too, timekeeping included, so a task of a `Send`
/// executor (embassy's `spawn` from another core or an interrupt executor) can run them.
#[allow(dead_code)]
fn async_futures_are_send(tx: &mut AsyncDrain<Drain<'static>, AsyncUart>) {
    fn send<T: Send>(_: T) {}
    send(tx.drain_once());
    send(tx.drain_once_keeping_time(|| core::future::ready(())));
    send(tx.run(|| core::future::ready(())));
}

#[cfg(feature = "rtt")]
const _: () = {
    is_send::<microspan_serial::rtt::RttDrain<Drain<'static>>>();
};

/// The assertions are checked when this file compiles; the test only makes the file a target.
#[test]
fn transports_are_send() {}
