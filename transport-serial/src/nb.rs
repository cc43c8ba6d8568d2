//! Non-blocking drain to an [`embedded_hal_nb::serial::Write<u8>`]: a UART data register.
//!
//! [`NbDrain::pump`] pushes bytes while `write` returns `Ok` and stops at the first `WouldBlock`;
//! it never waits, so it can run from an idle loop, a periodic timer, or the UART's "transmit data
//! register empty" (TXE) interrupt. A byte the UART refused or failed on stays in the drain and is
//! offered again on the next call: nothing is lost or sent twice.
//!
//! # From the TXE interrupt
//!
//! The TXE interrupt fires for as long as the data register is empty, so it must be disabled when
//! there is nothing to send and enabled again when there is. [`Pumped::pending`] says which:
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
//! # struct Uart { room: usize } // a HAL's serial::Write<u8>
//! # impl Uart { fn listen_txe(&mut self, _on: bool) {} }
//! # impl embedded_hal_nb::serial::ErrorType for Uart { type Error = core::convert::Infallible; }
//! # impl embedded_hal_nb::serial::Write<u8> for Uart {
//! #     fn write(&mut self, _: u8) -> embedded_hal_nb::nb::Result<(), Self::Error> {
//! #         if self.room == 0 { return Err(embedded_hal_nb::nb::Error::WouldBlock) } self.room -= 1; Ok(()) }
//! #     fn flush(&mut self) -> embedded_hal_nb::nb::Result<(), Self::Error> { Ok(()) }
//! # }
//! use microspan_serial::nb::NbDrain;
//!
//! // In firmware this lives in a `static` behind a critical-section `Mutex<RefCell<Option<..>>>`,
//! // shared by the TXE handler and the idle loop.
//! let mut tx = NbDrain::new(Drain::<'_, 256>::new(&TRACER).unwrap(), Uart { room: 4 });
//! TRACER.root("work").finish();
//!
//! // USART1 interrupt handler (TXE):
//! let p = tx.pump().unwrap();
//! tx.writer_mut().listen_txe(p.pending); // stop the interrupt when there is nothing to send
//!
//! // Idle loop: new records arrived while TXE was off? Send what the UART takes now and
//! // re-arm the interrupt.
//! if tx.has_pending() {
//!     let p = tx.pump().unwrap();
//!     tx.writer_mut().listen_txe(p.pending);
//! }
//! ```

use embedded_hal_nb::nb;
use embedded_hal_nb::serial::Write;

use crate::{Counters, FrameSource};

/// What one [`NbDrain::pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pumped {
    /// Bytes the UART accepted in this call.
    pub sent: usize,
    /// `true` when bytes are still waiting (the UART said `WouldBlock`, or the byte budget ran
    /// out); `false` when the drain had nothing more to send at the time.
    pub pending: bool,
}

/// A frame source and a non-blocking serial writer, with [`Counters`].
pub struct NbDrain<S, W> {
    source: S,
    writer: W,
    counters: Counters,
}

impl<S: FrameSource, W: Write<u8>> NbDrain<S, W> {
    /// Drains `source` (usually a [`microspan::Drain`], or `&mut` one) into `writer`.
    pub const fn new(source: S, writer: W) -> Self {
        Self {
            source,
            writer,
            counters: Counters::new(),
        }
    }

    /// Pushes bytes until the UART says `WouldBlock` or nothing is left; never waits.
    ///
    /// On an error (`nb::Error::Other`) the byte that failed stays pending, the error is counted and
    /// returned; the bytes sent before it in this call are in [`counters`](Self::counters).
    pub fn pump(&mut self) -> Result<Pumped, W::Error> {
        self.pump_at_most(usize::MAX)
    }

    /// Like [`pump`](Self::pump), but sends at most `budget` bytes, bounding the time spent in an
    /// interrupt handler when the UART has a deep FIFO.
    pub fn pump_at_most(&mut self, budget: usize) -> Result<Pumped, W::Error> {
        let mut sent = 0;
        loop {
            let bytes = self.source.fill_buf();
            if bytes.is_empty() {
                return Ok(Pumped {
                    sent,
                    pending: false,
                });
            }
            if sent == budget {
                return Ok(Pumped {
                    sent,
                    pending: true,
                });
            }
            let offered = bytes.len().min(budget - sent);
            let mut n = 0;
            let mut outcome = Ok(());
            while n < offered {
                match self.writer.write(bytes[n]) {
                    Ok(()) => n += 1,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            let frame_rest = bytes.len();
            self.source.consume(n);
            self.counters.sent(n, frame_rest);
            sent += n;
            match outcome {
                Ok(()) => {}
                Err(nb::Error::WouldBlock) => {
                    self.counters.refusal();
                    return Ok(Pumped {
                        sent,
                        pending: true,
                    });
                }
                Err(nb::Error::Other(e)) => {
                    self.counters.error();
                    return Err(e);
                }
            }
        }
    }

    /// Passes `flush` through to the UART (`WouldBlock` until the last byte has left the shift
    /// register); useful before sleeping or resetting.
    pub fn flush(&mut self) -> nb::Result<(), W::Error> {
        self.writer.flush()
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

    /// The frame source, mutably.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// The writer, mutably (e.g. to enable or disable its TXE interrupt).
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// The source and the writer back.
    pub fn into_parts(self) -> (S, W) {
        (self.source, self.writer)
    }
}
