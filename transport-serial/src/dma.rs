//! DMA-style drain: "give me the contiguous readable bytes" / "I sent `n` of them".
//!
//! A DMA engine reads the frame bytes from memory while the CPU does other things, so the bytes
//! must stay where they are, unchanged, until the transfer is over. The drain builds frames in
//! its own buffer and only rebuilds that buffer when asked for bytes after the previous frame was
//! fully consumed; [`DmaDrain`] adds the state that makes the rule explicit:
//!
//! 1. [`start`](DmaDrain::start) returns the unsent bytes of the current (or next) frame and marks
//!    a transfer **in flight**. Point the DMA at `bytes.as_ptr()` / `bytes.len()` and start it.
//! 2. While in flight, `start` returns `None` and nothing touches the frame buffer: no frame is
//!    built, the source is not reachable through `source_mut`/`into_inner`.
//! 3. [`complete`](DmaDrain::complete)`(n)` (from the transfer-complete interrupt, or after an
//!    abort with the count of bytes that did go out) consumes `n` bytes and ends the transfer; the
//!    rest of the frame is offered by the next `start`.
//!
//! # A transfer that does not end
//!
//! Flow control can hold a transfer for ever (a USB port the host has not opened, a UART whose
//! CTS line stays high). The drain builds no frame meanwhile, and the 32-bit clock ticks it
//! extends to 64 bits would be extended the wrong way once the wait passes half the clock's wrap
//! period (2^31 ticks, 33.5 s at 64 MHz): every record after it dated years off. So the drain
//! keeps its time while the transfer runs, through [`keep_time`](DmaDrain::keep_time), which
//! touches only its tick extension, never the frame the engine is reading:
//!
//! - a [`start`](DmaDrain::start) that finds the transfer still in flight calls it, so an idle
//!   loop that calls `start` at least every few seconds needs nothing more;
//! - a drain driven only from the transfer-complete interrupt is not called at all while the
//!   transfer hangs: call [`keep_time`](DmaDrain::keep_time) from a periodic timer (every second
//!   or so), or `start` from the idle loop.
//!
//! Records that wait in the ring through such a stall are dated in order, each from the one
//! before it, and records made after the stall behind them too: all are dated right as long as
//! the stall, from the last record dated before it to the drain's first frame after it, lasts
//! less than about 92% of the clock's wrap period (62 s at 64 MHz: a 32-bit tick cannot tell
//! more): the drain reads the clock then and reaches its window to it.
//!
//! # What the borrow checker cannot see
//!
//! The slice `start` returns borrows the `DmaDrain`, but the DMA engine keeps reading after that
//! borrow ends. So, while a transfer is in flight:
//!
//! - **do not move or drop the [`microspan::Drain`]**: the frame buffer lives inside it. The
//!   simplest way is a `DmaDrain<&'static mut Drain<…>>` (the `Drain` in a `static`, e.g. through
//!   `static_cell::StaticCell`): the `DmaDrain` then holds a reference, and moving *it* is
//!   harmless, as the common `Mutex<RefCell<Option<DmaDrain<…>>>>` pattern that `take()`s it out
//!   and puts it back does. A `DmaDrain` that owns its `Drain` must stay where it is while a
//!   transfer runs, `take()` included;
//! - the `DmaDrain` may be used meanwhile (`start`, `keep_time`, `in_flight`, `has_pending`, the
//!   counters): none of them writes the frame buffer (keeping time writes the drain's tick
//!   extension, a field apart from it);
//! - call `complete` exactly once per `start` that returned bytes, after the engine has stopped
//!   reading (transfer-complete flag, or the channel disabled after an abort).
//!
//! No `unsafe` is needed in this crate for that; the raw pointer is handed to the DMA by the
//! HAL, whose own DMA API carries the `unsafe` contract.
//!
//! # Cores with a data cache
//!
//! On a Cortex-M7 with its data cache on (STM32F7/H7, i.MX RT), the frame bytes `start` returns
//! may still sit in dirty cache lines that the DMA engine does not see: it would send stale
//! bytes, which the host counts as CRC errors and lost frames. Before starting the transfer,
//! clean the bytes to memory (`cortex_m::peripheral::SCB::clean_dcache_by_slice(bytes)`, which
//! ends with the barriers the engine needs), or keep the `Drain` in memory the cache does not
//! cover (a non-cacheable region set up by the MPU). Check too that the engine can reach the
//! memory at all: some DMA controllers cannot read tightly-coupled memory (the H7's DTCM).
//! Cores without a data cache (Cortex-M0 to M4) need neither.
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
//! use microspan_serial::dma::DmaDrain;
//!
//! let mut dma = DmaDrain::new(Drain::<'_, 128>::new(&TRACER).unwrap());
//! TRACER.root("work").finish();
//!
//! // Idle loop or transfer-complete handler: start a transfer if none is in flight.
//! if let Some(bytes) = dma.start() {
//!     let (ptr, len) = (bytes.as_ptr(), bytes.len());
//!     // hal_dma_start(ptr, len);
//!     # let _ = ptr;
//!     assert!(dma.start().is_none()); // one transfer at a time
//!     // ... transfer-complete interrupt, the engine sent all of it:
//!     dma.complete(len);
//! }
//! assert_eq!(dma.counters().frames, 1);
//! ```

use crate::{Counters, FrameSource};

/// A frame source with an explicit in-flight transfer state, and [`Counters`].
pub struct DmaDrain<S> {
    source: S,
    /// Length of the slice handed out by `start`, while a transfer is in flight.
    in_flight: Option<usize>,
    counters: Counters,
}

impl<S: FrameSource> DmaDrain<S> {
    /// Wraps `source` (usually a [`microspan::Drain`], or `&mut` one); no transfer in flight.
    pub const fn new(source: S) -> Self {
        Self {
            source,
            in_flight: None,
            counters: Counters::new(),
        }
    }

    /// The bytes to transfer next: the unsent rest of the current frame, or a new frame. Marks them
    /// in flight until [`complete`](Self::complete).
    ///
    /// `None` when a transfer is already in flight (the frame buffer is the DMA's until
    /// `complete`; the drain keeps its time then, see [`keep_time`](Self::keep_time)), or when
    /// there is nothing to send. See the [module docs](self) for the rules.
    pub fn start(&mut self) -> Option<&[u8]> {
        if self.in_flight.is_some() {
            self.source.keep_time();
            return None;
        }
        let bytes = self.source.fill_buf();
        if bytes.is_empty() {
            return None;
        }
        self.in_flight = Some(bytes.len());
        Some(bytes)
    }

    /// Ends the transfer in flight: `n` bytes (from the start of the slice) went out. A short count
    /// (an aborted transfer, a UART error) leaves the rest for the next [`start`](Self::start) and
    /// counts a refusal; `n` larger than the slice is treated as all of it.
    ///
    /// Does nothing when no transfer is in flight (e.g. a spurious interrupt), and returns `false`
    /// then.
    pub fn complete(&mut self, n: usize) -> bool {
        let Some(len) = self.in_flight.take() else {
            return false;
        };
        let n = n.min(len);
        self.source.consume(n);
        self.counters.sent(n, len);
        if n < len {
            self.counters.refusal();
        }
        true
    }

    /// Ends the transfer in flight after a DMA or UART error, with `n` bytes known to have gone out
    /// (the rest is offered again by the next [`start`](Self::start)). Counted as an error.
    pub fn fail(&mut self, n: usize) -> bool {
        let Some(len) = self.in_flight.take() else {
            return false;
        };
        let n = n.min(len);
        self.source.consume(n);
        self.counters.sent(n, len);
        self.counters.error();
        true
    }

    /// Keeps the drain's time up with the clock while a transfer hangs
    /// ([`FrameSource::keep_time`]): see "A transfer that does not end" in the
    /// [module docs](self). Reads the clock, touches nothing the DMA engine reads, and may be
    /// called at any time, in flight or not; a [`start`](Self::start) that finds a transfer in
    /// flight calls it itself. Call it every second or so from a periodic timer when `start` is
    /// called only from the transfer-complete interrupt.
    pub fn keep_time(&mut self) {
        self.source.keep_time();
    }

    /// The length of the transfer in flight, if any.
    pub fn in_flight(&self) -> Option<usize> {
        self.in_flight
    }

    /// `true` when a transfer is in flight, a frame is partly sent, or something waits to be sent
    /// (records, a drop count).
    pub fn has_pending(&self) -> bool {
        self.in_flight.is_some() || self.source.has_pending()
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The frame source (e.g. for [`microspan::Drain::stats`]). Reading it never builds a frame.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The frame source, mutably; `None` while a transfer is in flight.
    pub fn source_mut(&mut self) -> Option<&mut S> {
        match self.in_flight {
            None => Some(&mut self.source),
            Some(_) => None,
        }
    }

    /// The source back; `Err(self)` while a transfer is in flight.
    pub fn into_inner(self) -> Result<S, Self> {
        match self.in_flight {
            None => Ok(self.source),
            Some(_) => Err(self),
        }
    }
}
