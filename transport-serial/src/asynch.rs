//! Async drain to any [`embedded_io_async::Write`], for executors such as embassy. No allocation,
//! no executor dependency.
//!
//! [`AsyncDrain::drain_once`] writes every pending frame and flushes; [`AsyncDrain::run`] is a
//! whole drain task: it drains, then awaits a future you provide (a timer tick, or a `select` of a
//! signal raised after recording and a timer) and drains again, forever. Let a timer wake it at
//! least every few seconds: the drain must run at least once every half wrap period of the clock
//! to date records right (see `microspan::clock`), and a signal alone never fires on a quiet
//! device. `run` also keeps the drain's time with that timer while a write waits (below).
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
//! # struct Uart; // e.g. embassy's BufferedUartTx
//! # impl embedded_io_async::ErrorType for Uart { type Error = core::convert::Infallible; }
//! # impl embedded_io_async::Write for Uart {
//! #     async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> { Ok(b.len()) }
//! #     async fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) }
//! # }
//! use microspan_serial::asynch::AsyncDrain;
//!
//! // With embassy:
//! //
//! // #[embassy_executor::task]
//! // async fn trace_drain(mut tx: AsyncDrain<Drain<'static, 256>, BufferedUartTx<'static>>) -> ! {
//! //     tx.run(|| Timer::after_millis(10)).await
//! // }
//! async fn once(tx: &mut AsyncDrain<Drain<'static, 256>, Uart>) -> usize {
//!     tx.drain_once().await.unwrap()
//! }
//! # let _ = once;
//! ```
//!
//! # A write that waits
//!
//! An async write can wait for ever: a USB CDC port the host has not opened, a UART held by
//! flow control. The drain builds no frame meanwhile, and the 32-bit clock ticks it extends to
//! 64 bits would be extended the wrong way once the wait passes half the clock's wrap period
//! (2^31 ticks, 33.5 s at 64 MHz): every record after it dated years off. The write borrows the
//! frame's bytes from the drain, so the drain cannot be called during it; but its timekeeping
//! is apart from the frame ([`microspan::drain::TimeKeeper`]), and
//! [`drain_once_keeping_time`](AsyncDrain::drain_once_keeping_time) awaits a timer of yours beside
//! the write, keeping the drain's time each time it fires, without cancelling the write (nothing
//! is sent again). [`run`](AsyncDrain::run) does so with its `idle` future:
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
//! # struct UsbSerial; // e.g. a USB CDC class
//! # impl embedded_io_async::ErrorType for UsbSerial { type Error = core::convert::Infallible; }
//! # impl embedded_io_async::Write for UsbSerial {
//! #     async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> { Ok(b.len()) }
//! #     async fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) }
//! # }
//! # struct Timer; // embassy_time::Timer
//! # impl Timer { async fn after_secs(_: u64) {} }
//! use microspan_serial::asynch::AsyncDrain;
//!
//! // With embassy, `run(|| Timer::after_millis(10))` keeps time through a stuck write as it is.
//! // A loop of its own passes a timer to `drain_once_keeping_time`:
//! async fn drain_task(mut tx: AsyncDrain<Drain<'static, 256>, UsbSerial>) {
//!     loop {
//!         // Returns when the write does, however long the host keeps the port closed.
//!         let _ = tx.drain_once_keeping_time(|| Timer::after_secs(1)).await;
//!         Timer::after_secs(1).await;
//!     }
//! }
//! # let _ = drain_task;
//! ```
//!
//! An `embedded-hal-async` `DelayNs` serves as well when each tick can make its own, as with
//! embassy's unit struct `Delay`: `|| async { Delay.delay_ms(1000).await }`.
//!
//! [`drain_once`](AsyncDrain::drain_once) keeps no time while a write waits. A timeout around it
//! (a `select` with a timer) keeps time too, as the next call finds its frame still offered, but
//! it drops the write: use one only with a writer declared
//! [cancel-safe](AsyncDrain::assume_cancel_safe), or every timeout sends the frame again.
//! Records that wait in the ring through a stall are dated in order, each from the one before
//! it, and records made after the stall behind them too: all are dated right as long as the
//! stall, from the last record dated before it to the drain's first frame after it, lasts less
//! than about 92% of the clock's wrap period (62 s at 64 MHz: a 32-bit tick cannot tell more):
//! the drain reads the clock then and reaches its window to it.
//!
//! # Cancellation
//!
//! A `drain_once` future may be dropped (a `select` with a timeout, a task cancelled). A byte is
//! consumed from the drain only after `write` returned it as written, so nothing is lost; but a
//! writer that is not cancel-safe (one that starts a DMA transfer from the caller's buffer, as
//! embassy's `UartTx`) may have sent part of the bytes when its future was dropped. So the next
//! call, finding a write that never returned, sends a `0x00` delimiter and then the whole frame
//! again ([`FrameSource::restart_frame`]): the host decoder recognises the fragment (the whole
//! frame begins with it), counts a restarted frame, and reads every record once. Nothing is
//! duplicated or lost, whichever writer it is. A write that fails restarts the frame the same way
//! (the writer may have sent part of the bytes first), and so do
//! [`source_mut`](AsyncDrain::source_mut) and [`into_parts`](AsyncDrain::into_parts) after a
//! dropped write; [`restarts`](AsyncDrain::restarts) counts them. A writer that takes no byte
//! from a write whose future is dropped (a buffered driver such as embassy's `BufferedUartTx`,
//! which copies into its buffer only in the poll that completes) needs no restart: say so with
//! [`assume_cancel_safe`](AsyncDrain::assume_cancel_safe) and a cancelled call costs nothing.

use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

use embedded_io_async::Write;

use crate::blocking::Error;
use crate::{Counters, FrameSource};

/// A frame source and an async writer, with [`Counters`].
pub struct AsyncDrain<S, W> {
    source: S,
    writer: W,
    counters: Counters,
    /// Set while a `write` is awaited: still set at the next call, that write's future was
    /// dropped, and how much of it went out is unknown.
    writing: bool,
    /// The writer sends nothing of a write whose future is dropped: no restart needed.
    cancel_safe: bool,
    restarts: u32,
}

impl<S: FrameSource, W: Write> AsyncDrain<S, W> {
    /// Drains `source` (usually a [`microspan::Drain`], or `&mut` one) into `writer`.
    pub const fn new(source: S, writer: W) -> Self {
        Self {
            source,
            writer,
            counters: Counters::new(),
            writing: false,
            cancel_safe: false,
            restarts: 0,
        }
    }

    /// Declares the writer cancel-safe: a `write` whose future is dropped before it completes
    /// has sent nothing (embassy's `BufferedUartTx`, a driver that copies into its own buffer in
    /// the poll that returns `Ready`). A cancelled [`drain_once`](Self::drain_once) then offers
    /// the same bytes again instead of restarting the frame (see "Cancellation" in the
    /// [module docs](self)). Wrong for a writer that sends from the caller's buffer (DMA), whose
    /// dropped writes would then duplicate bytes and break a frame.
    pub fn assume_cancel_safe(mut self) -> Self {
        self.cancel_safe = true;
        self
    }

    /// Writes every pending frame (until the drain has nothing more to send), then flushes if
    /// anything was written. Returns the bytes written; 0 when there was nothing to send.
    ///
    /// On an error the bytes not yet accepted stay in the drain; the error is counted and returned.
    ///
    /// Keeps no time while a write waits: for a writer that can wait longer than half the clock's
    /// wrap period, use [`drain_once_keeping_time`](Self::drain_once_keeping_time) or
    /// [`run`](Self::run) (see "A write that waits" in the [module docs](self)).
    pub async fn drain_once(&mut self) -> Result<usize, Error<W::Error>> {
        self.drain_inner(None::<&mut fn() -> core::future::Pending<()>>)
            .await
    }

    /// [`drain_once`](Self::drain_once), keeping the drain's time while a write or the flush
    /// waits: each time a `tick()` future completes meanwhile (e.g. `|| Timer::after_secs(1)`),
    /// the drain moves its tick extension on if the clock is far ahead of it
    /// ([`microspan::Drain::keep_time`]), and the next `tick()` is awaited. The write is never
    /// cancelled: the call returns when it does. A `tick()` future is made only once a write
    /// or flush is found pending, and dropped when it completes.
    ///
    /// Let `tick` fire well within half the clock's wrap period (every second is plenty). See "A
    /// write that waits" in the [module docs](self).
    pub async fn drain_once_keeping_time<F, Fut>(
        &mut self,
        mut tick: F,
    ) -> Result<usize, Error<W::Error>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        self.drain_inner(Some(&mut tick)).await
    }

    /// `drain_once`, keeping time with `tick` when given one.
    async fn drain_inner<F, Fut>(
        &mut self,
        mut tick: Option<&mut F>,
    ) -> Result<usize, Error<W::Error>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        self.settle();
        let mut total = 0;
        loop {
            let (bytes, keeper) = match tick {
                Some(_) => self.source.fill_buf_keeping_time(),
                None => (self.source.fill_buf(), None),
            };
            let offered = bytes.len();
            if offered == 0 {
                break;
            }
            self.writing = true;
            let write = self.writer.write(bytes);
            let written = match (tick.as_deref_mut(), keeper) {
                (Some(tick), Some(mut keeper)) => {
                    keeping_time(write, tick, || keeper.keep_time()).await
                }
                _ => write.await,
            };
            self.writing = false;
            match written {
                Ok(0) => {
                    self.counters.refusal();
                    return Err(Error::WriteZero);
                }
                Ok(n) => {
                    let n = n.min(offered);
                    self.source.consume(n);
                    self.counters.sent(n, offered);
                    total += n;
                }
                Err(e) => {
                    self.counters.error();
                    if !self.cancel_safe {
                        // A writer sending from our buffer may have sent part of it first.
                        self.restart();
                    }
                    return Err(Error::Write(e));
                }
            }
        }
        if total != 0 {
            let flush = self.writer.flush();
            let flushed = match tick {
                Some(tick) => {
                    // The flush borrows only the writer: the source keeps time itself.
                    let source = &mut self.source;
                    keeping_time(flush, tick, || source.keep_time()).await
                }
                None => flush.await,
            };
            if let Err(e) = flushed {
                self.counters.error();
                return Err(Error::Flush(e));
            }
        }
        Ok(total)
    }

    /// After a `drain_once` dropped during a write: restarts the frame (see "Cancellation"),
    /// unless the writer is cancel-safe.
    fn settle(&mut self) {
        if core::mem::take(&mut self.writing) && !self.cancel_safe {
            self.restart();
        }
    }

    fn restart(&mut self) {
        self.source.restart_frame();
        self.restarts = self.restarts.wrapping_add(1);
    }

    /// The drain task: [`drain_once_keeping_time`](Self::drain_once_keeping_time) with `idle`
    /// as its tick, then `idle().await`, forever.
    ///
    /// `idle` is awaited after every round, including one that failed (so a broken link does not
    /// spin); errors are counted in [`counters`](Self::counters). Typical `idle` futures: a timer
    /// (`|| Timer::after_millis(10)`), or a `select` of a signal the firmware raises after
    /// recording and a timer of a second or so (a signal alone: a quiet device would not wake the
    /// drain for longer than half the clock's wrap period, after which the next record is dated
    /// wrong). Records are never dropped by waiting: they stay in the ring, which counts its own
    /// drops when full.
    ///
    /// While a write or flush waits, `idle` futures are awaited beside it too, and each one that
    /// completes lets the drain keep its time (see "A write that waits" in the
    /// [module docs](self)); the one pending when the write completes is dropped. So the timer
    /// that wakes the drain also keeps its time through a write that never ends. It also means
    /// `idle` is called more often than once per round: keep it free of side effects beyond
    /// waiting (no counter or LED toggled in it), and make it wait for real. An `idle` that is
    /// ready at once (`yield_now`, `async {}`) keeps the task running for as long as a write
    /// waits, where the writer's own wake-up would have let it sleep.
    pub async fn run<F, Fut>(&mut self, mut idle: F) -> !
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let _ = self.drain_inner(Some(&mut idle)).await;
            idle().await;
        }
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Frames sent again, whole, because a `drain_once` future was dropped during a write (see
    /// "Cancellation" in the [module docs](self)).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// `true` when a frame is partly sent or something waits to be sent (records, a drop count).
    pub fn has_pending(&self) -> bool {
        self.source.has_pending()
    }

    /// The frame source (e.g. for [`microspan::Drain::stats`]).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The frame source, mutably.
    pub fn source_mut(&mut self) -> &mut S {
        self.settle();
        &mut self.source
    }

    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// The writer, mutably.
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// The source and the writer back.
    pub fn into_parts(mut self) -> (S, W) {
        self.settle();
        (self.source, self.writer)
    }
}

/// Awaits `op`. While it is pending, awaits `tick()` futures beside it, one after another, and
/// calls `keep` each time one completes. `op` is never cancelled; its output is returned. The
/// first `tick()` is made only once `op` was found pending, and a `tick()` that completes wakes
/// the task (instead of making and polling the next at once), so one that is always ready yields
/// to the executor rather than looping.
async fn keeping_time<T, F, Fut>(
    op: impl Future<Output = T>,
    tick: &mut F,
    mut keep: impl FnMut(),
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut op = pin!(op);
    let mut timer = pin!(None::<Fut>);
    poll_fn(|cx| {
        if let Poll::Ready(out) = op.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if timer.is_none() {
            timer.set(Some(tick()));
        }
        if let Some(t) = timer.as_mut().as_pin_mut() {
            if t.poll(cx).is_ready() {
                timer.set(None);
                keep();
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    })
    .await
}
