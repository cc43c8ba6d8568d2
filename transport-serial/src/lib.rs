#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use microspan::drain::TimeKeeper;
use microspan::Drain;

/// The `embedded-hal-nb` version whose serial `Write` the non-blocking drain drives.
pub use embedded_hal_nb;
/// The `embedded-io` version whose [`Write`](embedded_io::Write) the blocking drain drives.
pub use embedded_io;
/// The `embedded-io-async` version whose `Write` the async drain drives.
pub use embedded_io_async;

pub mod asynch;
pub mod blocking;
pub mod dma;
pub mod nb;
#[cfg(feature = "rtt")]
pub mod rtt;

/// Where the transports get their bytes: the unsent rest of one wire frame at a time.
///
/// Implemented by [`microspan::Drain`] (the usual source, owned by the transport) and by `&mut S`
/// (to keep the drain elsewhere and lend it to a transport). The contract, which the transports'
/// "never lose or duplicate a byte" and frame counting rely on:
///
/// - [`fill_buf`](Self::fill_buf) returns the unsent rest of exactly **one** frame (ending with its
///   `0x00` delimiter; a drain's first frame also begins with the `0x00` that precedes it, so that
///   bytes the link carried before it end there), building the next frame only when the previous
///   one is fully consumed; empty when there is nothing to send. It returns the same bytes again
///   until they are consumed.
/// - [`consume`](Self::consume)`(n)` marks the first `n` of those bytes as sent (`n` at most their
///   length).
/// - [`restart_frame`](Self::restart_frame) makes the next `fill_buf` a lone `0x00` delimiter,
///   then the whole current frame again: for a transport that cannot tell how much of a write
///   went out.
/// - [`keep_time`](Self::keep_time) and the [`TimeKeeper`] of
///   [`fill_buf_keeping_time`](Self::fill_buf_keeping_time) touch only the source's timekeeping,
///   never the bytes `fill_buf` returned: a transport calls them while a transfer of those bytes
///   is under way (a DMA engine reading them, an async write borrowing them).
///
/// A source that wraps a [`microspan::Drain`] should forward the two timekeeping methods too: the
/// defaults keep no time, and a transport that waits inside one long transfer then dates the
/// records after it wrong once the wait passes half the clock's wrap period.
pub trait FrameSource {
    /// The unsent rest of the current frame, or the next frame; empty when there is nothing to send.
    fn fill_buf(&mut self) -> &[u8];
    /// Marks the first `n` bytes of the last [`fill_buf`](Self::fill_buf) as sent.
    fn consume(&mut self, n: usize);
    /// `true` when a frame is partly sent or something waits to be sent (records, a drop count).
    fn has_pending(&self) -> bool;
    /// Sends the current frame again, whole, after a delimiter that ends the part the link may
    /// have carried ([`microspan::Drain::restart_frame`]).
    fn restart_frame(&mut self);
    /// Keeps the source's time up with the clock while its current frame waits on a transfer
    /// that has not finished ([`microspan::Drain::keep_time`]). The default does nothing.
    #[inline]
    fn keep_time(&mut self) {}
    /// [`fill_buf`](Self::fill_buf), and beside the bytes the source's [`TimeKeeper`], reachable
    /// while the bytes are borrowed ([`microspan::Drain::fill_buf_keeping_time`]). The default
    /// has none.
    #[inline]
    fn fill_buf_keeping_time(&mut self) -> (&[u8], Option<TimeKeeper<'_>>) {
        (self.fill_buf(), None)
    }
}

impl<const F: usize, const NAMES: usize> FrameSource for Drain<'_, F, NAMES> {
    #[inline]
    fn fill_buf(&mut self) -> &[u8] {
        Drain::fill_buf(self)
    }
    #[inline]
    fn consume(&mut self, n: usize) {
        Drain::consume(self, n)
    }
    #[inline]
    fn has_pending(&self) -> bool {
        Drain::has_pending(self)
    }
    fn restart_frame(&mut self) {
        Drain::restart_frame(self)
    }
    fn keep_time(&mut self) {
        Drain::keep_time(self)
    }
    fn fill_buf_keeping_time(&mut self) -> (&[u8], Option<TimeKeeper<'_>>) {
        let (bytes, keeper) = Drain::fill_buf_keeping_time(self);
        (bytes, Some(keeper))
    }
}

impl<S: FrameSource + ?Sized> FrameSource for &mut S {
    #[inline]
    fn fill_buf(&mut self) -> &[u8] {
        (**self).fill_buf()
    }
    #[inline]
    fn consume(&mut self, n: usize) {
        (**self).consume(n)
    }
    #[inline]
    fn has_pending(&self) -> bool {
        (**self).has_pending()
    }
    fn restart_frame(&mut self) {
        (**self).restart_frame()
    }
    fn keep_time(&mut self) {
        (**self).keep_time()
    }
    fn fill_buf_keeping_time(&mut self) -> (&[u8], Option<TimeKeeper<'_>>) {
        (**self).fill_buf_keeping_time()
    }
}

/// What a transport did, so that "what could not be sent" is visible.
///
/// The transports never drop a record: bytes a transport cannot take stay in the drain for the next
/// call, and when the ring fills up it is the ring that drops new records and counts them
/// ([`microspan::Tracer::dropped`], reported to the decoder in the stream). These counters say how
/// the link behaved. They wrap on overflow (`bytes` after 2^64, the others after 2^32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Bytes the transport accepted.
    pub bytes: u64,
    /// Frames whose last byte (the delimiter) the transport accepted (the lone delimiter before
    /// a restarted frame counts as one).
    pub frames: u32,
    /// Calls to the transport that returned an error (the bytes offered stay pending).
    pub errors: u32,
    /// Times the transport refused to take everything offered: `WouldBlock`, `Ok(0)`, a full RTT
    /// buffer, a DMA transfer that ended short. The refused bytes stay pending. With `nb` driven
    /// from the TXE interrupt this grows by about one per byte (one byte fits, the next one
    /// blocks): there it counts interrupts, not trouble on the link.
    pub refused: u32,
}

impl Counters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            bytes: 0,
            frames: 0,
            errors: 0,
            refused: 0,
        }
    }

    /// Records that `n` of the `offered` bytes (the unsent rest of one frame) were accepted.
    #[inline]
    pub(crate) fn sent(&mut self, n: usize, offered: usize) {
        self.bytes = self.bytes.wrapping_add(n as u64);
        if n == offered && n != 0 {
            self.frames = self.frames.wrapping_add(1);
        }
    }

    #[inline]
    pub(crate) fn error(&mut self) {
        self.errors = self.errors.wrapping_add(1);
    }

    #[inline]
    pub(crate) fn refusal(&mut self) {
        self.refused = self.refused.wrapping_add(1);
    }
}

/// Offers the current frame to `send`, which returns how many bytes it took (at most the slice's
/// length) or an error; consumes what was taken and counts it. Returns `Ok(None)` when there was
/// nothing to send.
#[inline]
pub(crate) fn offer<S: FrameSource + ?Sized, E>(
    source: &mut S,
    counters: &mut Counters,
    send: impl FnOnce(&[u8]) -> Result<usize, E>,
) -> Result<Option<usize>, E> {
    let bytes = source.fill_buf();
    let offered = bytes.len();
    if offered == 0 {
        return Ok(None);
    }
    match send(bytes) {
        Ok(n) => {
            let n = n.min(offered);
            source.consume(n);
            counters.sent(n, offered);
            Ok(Some(n))
        }
        Err(e) => {
            counters.error();
            Err(e)
        }
    }
}
