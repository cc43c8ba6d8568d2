//! The async transport over `embedded_io_async::Write`, driven by a hand-written poll loop: a writer
//! that is often not ready, takes 1–3 bytes, and fails; every record must arrive exactly once, in
//! order, including when the drain future is dropped mid-write.

mod common;
use common::*;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use embedded_io::ErrorKind;
use embedded_io_async::{ErrorType, Write};
use microspan_serial::asynch::AsyncDrain;
use microspan_serial::blocking::Error;

/// Polls `fut` to completion with a no-op waker (the mocks are always ready again on the next poll).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkError;

impl embedded_io::Error for LinkError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}
impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("link error")
    }
}
impl core::error::Error for LinkError {}

/// Returns `Pending` a random number of times before each write (cancel-safe: nothing is taken
/// before it completes), then takes 1–3 bytes or fails.
struct Mock {
    out: Vec<u8>,
    rng: Rng,
    pending_percent: u64,
    fail_percent: u64,
}

impl ErrorType for Mock {
    type Error = LinkError;
}

/// A future that is `Pending` while `rng` says so.
struct NotYet<'a> {
    rng: &'a mut Rng,
    percent: u64,
}

impl Future for NotYet<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let p = self.percent;
        if self.rng.chance(p) {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl Write for Mock {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        assert!(!buf.is_empty());
        NotYet {
            rng: &mut self.rng,
            percent: self.pending_percent,
        }
        .await;
        if self.rng.chance(self.fail_percent) {
            return Err(LinkError);
        }
        let n = self.rng.range(1, 3).min(buf.len());
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    async fn flush(&mut self) -> Result<(), LinkError> {
        NotYet {
            rng: &mut self.rng,
            percent: self.pending_percent,
        }
        .await;
        Ok(())
    }
}

#[test]
fn slow_async_writer_delivers_everything_once() {
    let fx = fixture::<65536>();
    let mock = Mock {
        out: Vec::new(),
        rng: Rng::new(21),
        pending_percent: 50,
        fail_percent: 10,
    };
    let mut tx = AsyncDrain::new(fx.drain(), mock);
    let mut rng = Rng::new(22);
    let mut errors = 0;
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, _| {
            if let Err(e) = block_on(tx.drain_once()) {
                assert_eq!(e, Error::Write(LinkError));
                errors += 1;
            }
        },
        |tx| tx.has_pending(),
    );
    let c = tx.counters();
    assert!(errors > 50);
    assert_eq!(c.errors, errors);
    // Not declared cancel-safe: each failed write restarts its frame (the mock sent nothing, so
    // the host sees the first part again, ended by the delimiter: one bad frame each).
    assert_eq!(tx.restarts(), errors);
    let restarts = tx.restarts();
    let (_, mock) = tx.into_parts();
    assert_exact_after_restarts(&mock.out, STEPS, restarts);
}

#[test]
fn dropping_the_future_mid_write_loses_nothing() {
    // Poll the drain future a random number of times, then drop it (a `select` with a timeout).
    let fx = fixture::<65536>();
    let mock = Mock {
        out: Vec::new(),
        rng: Rng::new(23),
        pending_percent: 70,
        fail_percent: 0,
    };
    // The mock takes nothing from a write it has not completed.
    let mut tx = AsyncDrain::new(fx.drain(), mock).assume_cancel_safe();
    let mut rng = Rng::new(24);
    let mut cx = Context::from_waker(Waker::noop());
    let mut cancelled = 0;
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, rng| {
            let polls = rng.range(1, 6);
            let mut fut = pin!(tx.drain_once());
            for _ in 0..polls {
                if fut.as_mut().poll(&mut cx).is_ready() {
                    return;
                }
            }
            cancelled += 1;
        },
        |tx| tx.has_pending(),
    );
    assert!(cancelled > 100);
    assert_eq!(tx.restarts(), 0);
    let (_, mock) = tx.into_parts();
    assert_exact(&mock.out, STEPS);
}

/// Sends from the caller's buffer as a DMA transfer does: part of it on the first poll, the rest
/// when the transfer completes; a future dropped in between has sent the first part (embassy's
/// `UartTx` stops its DMA when dropped).
struct DmaUart {
    out: Vec<u8>,
    rng: Rng,
}

impl ErrorType for DmaUart {
    type Error = LinkError;
}

impl Write for DmaUart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        let first = self.rng.range(1, buf.len().min(24));
        self.out.extend_from_slice(&buf[..first]);
        // The transfer runs for one more poll.
        let mut started = false;
        std::future::poll_fn(|cx| {
            if std::mem::replace(&mut started, true) {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        self.out.extend_from_slice(&buf[first..]);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

#[test]
fn a_dma_write_dropped_part_way_restarts_the_frame() {
    // Without the restart the bytes the DMA sent would go out again: a broken frame, whose name
    // definitions the rest of its epoch then misses.
    let fx = fixture::<65536>();
    let uart = DmaUart {
        out: Vec::new(),
        rng: Rng::new(26),
    };
    let mut tx = AsyncDrain::new(fx.drain(), uart);
    let mut rng = Rng::new(27);
    let mut cx = Context::from_waker(Waker::noop());
    let mut cancelled = 0;
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, rng| {
            let mut fut = pin!(tx.drain_once());
            // One poll in four is cut short after the transfer started (a `select` timeout).
            if rng.chance(25) {
                if fut.as_mut().poll(&mut cx).is_pending() {
                    cancelled += 1;
                }
                return;
            }
            while fut.as_mut().poll(&mut cx).is_pending() {}
        },
        |tx| tx.has_pending(),
    );
    assert!(cancelled > 50, "{cancelled}");
    let restarts = tx.restarts();
    assert!(restarts > 50, "{restarts}");
    let (_, uart) = tx.into_parts();
    let d = assert_exact_after_restarts(&uart.out, STEPS, restarts);
    assert!(!d.frame_errors.is_empty(), "fragments were sent");
}

#[test]
fn run_drains_then_waits_for_idle() {
    let fx = fixture::<65536>();
    let mock = Mock {
        out: Vec::new(),
        rng: Rng::new(25),
        pending_percent: 30,
        fail_percent: 5,
    };
    // The mock sends nothing of a write that fails or is dropped.
    let mut tx = AsyncDrain::new(fx.drain(), mock).assume_cancel_safe();
    let mut idles = 0u32;
    {
        let idle = || {
            idles += 1;
            // A "tick" that is ready on the second poll.
            let mut first = true;
            std::future::poll_fn(move |cx| {
                if std::mem::take(&mut first) {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
        };
        let mut task = pin!(tx.run(idle));
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..STEPS {
            workload(&fx, i);
            for _ in 0..20 {
                assert!(task.as_mut().poll(&mut cx).is_pending());
            }
        }
        for _ in 0..100_000 {
            assert!(task.as_mut().poll(&mut cx).is_pending());
        }
    }
    assert!(idles > 10);
    assert!(!tx.has_pending());
    let c = tx.counters();
    assert!(c.errors > 0);
    let (_, mock) = tx.into_parts();
    assert_exact(&mock.out, STEPS);
}

/// Set by the test when the host opens the port.
type Open = Rc<Cell<bool>>;
/// What the port sent.
type Sent = Rc<RefCell<Vec<u8>>>;

/// A USB CDC port the host has not opened: `write` stays pending until `open` is set, then
/// takes everything.
struct ClosedPort {
    open: Open,
    out: Sent,
    writes: u32,
}

impl ErrorType for ClosedPort {
    type Error = LinkError;
}

impl Write for ClosedPort {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        self.writes += 1;
        let open = self.open.clone();
        std::future::poll_fn(|_| {
            if open.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        self.out.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

fn closed_port() -> (ClosedPort, Open, Sent) {
    let port = ClosedPort {
        open: Open::default(),
        out: Sent::default(),
        writes: 0,
    };
    let (open, out) = (port.open.clone(), port.out.clone());
    (port, open, out)
}

/// A write that waits 40 minutes (more than half the clock's wrap period) for the host to open
/// the port, while a one-second timer fires beside it: the write is not cancelled (nothing is
/// sent twice), and the spans recorded after it are dated right.
#[test]
fn drain_once_keeping_time_dates_spans_after_a_write_that_waited_40_minutes() {
    let fx = fixture::<4096>();
    let (port, open, out) = closed_port();
    let mut tx = AsyncDrain::new(fx.drain(), port);
    let mut cx = Context::from_waker(Waker::noop());
    let clock = fx.clock;
    span_of_100_ticks(&fx, "before");
    {
        let mut fut = pin!(tx.drain_once_keeping_time(|| timer(clock, 1_000_000)));
        for _ in 0..STALL_SECONDS {
            fx.clock.advance(1_000_000);
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        open.set(true);
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(n)) if n > 0));
    }
    assert_eq!(tx.writer().writes, 1, "the write was never cancelled");
    span_of_100_ticks(&fx, "after");
    block_on(tx.drain_once_keeping_time(|| timer(clock, 1_000_000))).unwrap();
    assert_eq!(tx.restarts(), 0);
    assert!(!tx.has_pending());
    let d = decode(&out.borrow());
    assert_eq!(d.duplicates, 0);
    assert_dated_across_stall(&d, "before", "after");
}

/// `run` keeps time with its `idle` timer while a write waits.
#[test]
fn run_keeps_time_while_a_write_waits_40_minutes() {
    let fx = fixture::<4096>();
    let (port, open, out) = closed_port();
    let mut tx = AsyncDrain::new(fx.drain(), port);
    let clock = fx.clock;
    span_of_100_ticks(&fx, "before");
    {
        let mut task = pin!(tx.run(|| timer(clock, 1_000_000)));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..STALL_SECONDS {
            fx.clock.advance(1_000_000);
            assert!(task.as_mut().poll(&mut cx).is_pending());
        }
        open.set(true);
        span_of_100_ticks(&fx, "after");
        for _ in 0..10 {
            fx.clock.advance(1_000_000);
            assert!(task.as_mut().poll(&mut cx).is_pending());
        }
    }
    assert_eq!(tx.restarts(), 0);
    assert!(!tx.has_pending());
    let d = decode(&out.borrow());
    assert_eq!(d.duplicates, 0);
    assert_dated_across_stall(&d, "before", "after");
}

/// A tick that is always ready makes the task yield (wake itself, return `Pending`), not loop.
#[test]
fn a_tick_that_is_always_ready_yields_instead_of_looping() {
    let fx = fixture::<4096>();
    let (port, open, out) = closed_port();
    let mut tx = AsyncDrain::new(fx.drain(), port);
    span_of_100_ticks(&fx, "only");
    let mut ticks = 0u32;
    {
        let mut fut = pin!(tx.drain_once_keeping_time(|| {
            ticks += 1;
            std::future::ready(())
        }));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        open.set(true);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    }
    assert_eq!(ticks, 10, "one tick per poll of the pending write");
    let d = decode(&out.borrow());
    assert!(d.frame_errors.is_empty());
    start_time(&d, "only");
}
