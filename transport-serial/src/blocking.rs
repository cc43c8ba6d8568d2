//! Blocking drain to any [`embedded_io::Write`]: a UART driver, a USB-CDC class, a `std` socket
//! wrapped in an adapter.
//!
//! [`BlockingDrain::drain`] writes every pending frame and flushes; it waits as long as the writer
//! waits. For a writer that also implements [`embedded_io::WriteReady`],
//! [`BlockingDrain::drain_ready`] writes only while the writer says it can take bytes without
//! waiting, which makes it usable from an idle loop that must not stall.
//!
//! A UART's blocking write always finishes (the line drains at its baud rate, listener or not);
//! a USB-CDC class's may not: with no host reading the port it waits for ever. Drain a link
//! whose far end can stop reading with [`drain_ready`](BlockingDrain::drain_ready) (or the `nb`
//! or async transports), never with `drain`, or the firmware hangs when the cable is out.
//! `drain_ready` keeps the drain's time while the writer is not ready; `drain` cannot while it
//! is inside a `write` (or `flush`) that waits: one that waits longer than half the clock's wrap
//! period (2^31 ticks, 33.5 s at 64 MHz: a USB-CDC write with no host, a UART held by hardware
//! flow control) leaves the records after it dated wrong, as no 32-bit tick can tell how many
//! wraps went by. Bound such writes in the writer (a timeout that returns an error or what was
//! sent: the next call finds the frame still offered and keeps time), or use `drain_ready`.
//!
//! An error (or an `Ok(0)`, which `embedded-io` forbids for a non-empty buffer) stops the call and
//! is returned; the bytes the writer did not accept stay in the drain and go out on the next call.
//! A byte is consumed only after `write` reported it written, so nothing is lost or sent twice.
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
//! # struct Uart; // an embedded_io::Write, e.g. a HAL's blocking UART
//! # impl embedded_io::ErrorType for Uart { type Error = core::convert::Infallible; }
//! # impl embedded_io::Write for Uart {
//! #     fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> { Ok(b.len()) }
//! #     fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) }
//! # }
//! use microspan_serial::blocking::BlockingDrain;
//!
//! let drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
//! let mut out = BlockingDrain::new(drain, Uart);
//! TRACER.root("work").finish();
//! let sent = out.drain().unwrap();
//! assert!(sent > 0);
//! assert_eq!(out.counters().bytes, sent as u64);
//! ```

use core::fmt;

use embedded_io::{Write, WriteReady};

use crate::{offer, Counters, FrameSource};

/// Why a blocking drain call stopped early. The unsent bytes stay in the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// `write` returned an error.
    Write(E),
    /// `write` returned `Ok(0)` for a non-empty buffer: the writer cannot take more bytes.
    WriteZero,
    /// `flush` returned an error (the bytes were already accepted by the writer).
    Flush(E),
    /// `write_ready` returned an error.
    Ready(E),
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Write(e) => write!(f, "trace transport write failed: {e:?}"),
            Error::WriteZero => {
                f.write_str("trace transport accepted no bytes (Ok(0)); the rest stays queued")
            }
            Error::Flush(e) => write!(f, "trace transport flush failed: {e:?}"),
            Error::Ready(e) => write!(f, "trace transport readiness check failed: {e:?}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

/// A frame source and a blocking [`embedded_io::Write`], with [`Counters`].
pub struct BlockingDrain<S, W> {
    source: S,
    writer: W,
    counters: Counters,
}

impl<S: FrameSource, W: Write> BlockingDrain<S, W> {
    /// Drains `source` (usually a [`microspan::Drain`], or `&mut` one) into `writer`.
    pub const fn new(source: S, writer: W) -> Self {
        Self {
            source,
            writer,
            counters: Counters::new(),
        }
    }

    /// Writes every pending frame (until the drain has nothing more to send), then flushes if
    /// anything was written. Returns the bytes written.
    ///
    /// If records keep arriving faster than the writer takes them this does not return until they
    /// stop; [`drain_frame`](Self::drain_frame) bounds the work to one frame.
    pub fn drain(&mut self) -> Result<usize, Error<W::Error>> {
        let mut total = 0;
        while let Some(n) = self.write_some()? {
            total += n;
        }
        if total != 0 {
            self.flush()?;
        }
        Ok(total)
    }

    /// Writes the rest of the current frame, or the next frame, then flushes. Returns the bytes
    /// written (0 when there was nothing to send).
    pub fn drain_frame(&mut self) -> Result<usize, Error<W::Error>> {
        let mut total = 0;
        let frames = self.counters.frames;
        while self.counters.frames == frames {
            match self.write_some()? {
                Some(n) => total += n,
                None => break,
            }
        }
        if total != 0 {
            self.flush()?;
        }
        Ok(total)
    }

    /// One `write` call with the current frame's unsent bytes. `Ok(None)`: nothing to send.
    fn write_some(&mut self) -> Result<Option<usize>, Error<W::Error>> {
        let writer = &mut self.writer;
        let counters = &mut self.counters;
        match offer(&mut self.source, counters, |b| writer.write(b)) {
            Ok(Some(0)) => {
                counters.refusal();
                Err(Error::WriteZero)
            }
            Ok(n) => Ok(n),
            Err(e) => Err(Error::Write(e)),
        }
    }

    fn flush(&mut self) -> Result<(), Error<W::Error>> {
        self.writer.flush().map_err(|e| {
            self.counters.error();
            Error::Flush(e)
        })
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// `true` when a frame is partly sent or something waits to be sent (records, a drop count).
    pub fn has_pending(&self) -> bool {
        self.source.has_pending()
    }

    /// The frame source (e.g. for [`microspan::Drain::stats`]).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The frame source, mutably (e.g. for [`microspan::Drain::set_wall_clock`]).
    pub fn source_mut(&mut self) -> &mut S {
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
    pub fn into_parts(self) -> (S, W) {
        (self.source, self.writer)
    }
}

impl<S: FrameSource, W: Write + WriteReady> BlockingDrain<S, W> {
    /// Writes pending bytes only while [`WriteReady::write_ready`] says the writer can take some
    /// without waiting; never waits. Returns the bytes written. Does not flush (a flush waits).
    ///
    /// Counts a refusal when it stops with bytes still pending because the writer was not ready,
    /// and then keeps the drain's time ([`FrameSource::keep_time`]): called every few seconds, it
    /// dates records right however long the writer stays not ready.
    pub fn drain_ready(&mut self) -> Result<usize, Error<W::Error>> {
        let mut total = 0;
        loop {
            // `has_pending`, not `fill_buf`: a second `fill_buf` before the write (inside
            // `write_some`) with nothing consumed in between reads as a stalled link to the
            // drain, which then reads the clock for its timekeeping on every write.
            if !self.source.has_pending() {
                return Ok(total);
            }
            match self.writer.write_ready() {
                Ok(true) => {}
                Ok(false) => {
                    self.counters.refusal();
                    // A link that stays not ready (a USB port not open) builds no frame: the
                    // drain keeps its time on each such call instead (a clock read).
                    self.source.keep_time();
                    return Ok(total);
                }
                Err(e) => {
                    self.counters.error();
                    return Err(Error::Ready(e));
                }
            }
            match self.write_some()? {
                Some(n) => total += n,
                None => return Ok(total),
            }
        }
    }
}
