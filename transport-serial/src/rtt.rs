//! Drain to a SEGGER RTT up-channel (feature `rtt`, through [`rtt_target`]).
//!
//! RTT needs no pins: the debug probe (or `microspan decode --rtt-gdb` through a GDB server or
//! QEMU's GDB stub) reads a ring buffer in the target's RAM. microspan gets **an up-channel of its
//! own**, so defmt keeps channel 0 in the same firmware and the two streams never interleave.
//!
//! # Non-blocking by default
//!
//! [`RttDrain::new`] puts the channel in [`ChannelMode::NoBlockTrim`]: a write copies what fits in
//! the RTT buffer, returns that count, and [`RttDrain::pump`] leaves the rest of the frame in the
//! drain for the next call. Nothing waits for a probe that is not there, and nothing is lost
//! mid-frame. `NoBlockSkip` (rtt-target's default) is never used: it discards a whole write that
//! does not fit, and a partly wrapped write in that mode reports bytes as written that were not
//! committed, which would tear frames. Because a probe may change a channel's mode at any time, the
//! drain checks the mode before each write and restores its own, and checks it again after: a
//! mode that changed during the write makes its count untrustworthy, so the drain sends a `0x00`
//! delimiter and the whole frame again ([`FrameSource::restart_frame`]); the host drops the
//! fragment (a restarted frame, not a bad one) and reads every record once.
//!
//! [`RttDrain::blocking`] is the opt-in: [`ChannelMode::BlockIfFull`] spins until the host has
//! read enough. **Firmware then stops when no probe is attached**; use it only for runs where
//! losing nothing matters more than running without a host.
//!
//! # Setup: microspan on up channel 1, defmt on channel 0
//!
//! `rtt_init!` defines the single `_SEGGER_RTT` control block. Since a firmware can have only one,
//! defmt then goes through rtt-target's own defmt logger (its `defmt` feature) rather than the
//! `defmt-rtt` crate, which would define a second control block:
//!
//! ```toml
//! [dependencies]
//! # Not on crates.io: a git dependency on the repository (or a `path` to a local checkout).
//! microspan = { git = "https://github.com/microspan/microspan" }
//! microspan-serial = { git = "https://github.com/microspan/microspan", features = ["rtt"] }
//! rtt-target = { version = "0.6", features = ["defmt"] }
//! ```
//!
//! ```ignore
//! use rtt_target::{rtt_init, ChannelMode};
//! use microspan_serial::rtt::{RttDrain, CHANNEL_NAME};
//!
//! let channels = rtt_init! {
//!     up: {
//!         0: { size: 1024, mode: ChannelMode::NoBlockSkip, name: "defmt" }
//!         1: { size: 4096, mode: ChannelMode::NoBlockTrim, name: "microspan" } // = CHANNEL_NAME
//!     }
//! };
//! rtt_target::set_defmt_channel(channels.up.0);
//! let mut rtt = RttDrain::new(Drain::<'_, 256>::new(&TRACER).unwrap(), channels.up.1);
//! loop {
//!     rtt.pump(); // idle loop or a timer tick (at least every few seconds): never waits
//!     // ...
//! }
//! ```
//!
//! On the host: `microspan decode --rtt-gdb localhost:3333 --elf firmware.elf` (or a probe tool
//! that exposes up channel 1 as a stream). The RTT buffer should hold at least one frame (the
//! drain's `F`) so that a frame can leave in one piece while the host is reading steadily; any size
//! works.
//!
//! `rtt_init!` takes a critical section, so the firmware must link a `critical-section`
//! implementation (e.g. `cortex-m`'s `critical-section-single-core` feature).

use rtt_target::{ChannelMode, UpChannel};

use crate::{Counters, FrameSource};

/// The up-channel number microspan uses by convention (defmt keeps 0).
pub const CHANNEL_NUMBER: usize = 1;

/// The up-channel name microspan uses by convention; host tools can find the channel by it.
pub const CHANNEL_NAME: &str = "microspan";

/// What the drain does when the RTT buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// Write what fits and keep the rest for the next call ([`ChannelMode::NoBlockTrim`]).
    NonBlocking,
    /// Wait for the host to read ([`ChannelMode::BlockIfFull`]): hangs with no probe attached.
    Blocking,
}

impl Mode {
    fn channel_mode(self) -> ChannelMode {
        match self {
            Mode::NonBlocking => ChannelMode::NoBlockTrim,
            Mode::Blocking => ChannelMode::BlockIfFull,
        }
    }
}

/// A frame source and an RTT up-channel, with [`Counters`].
pub struct RttDrain<S> {
    source: S,
    channel: UpChannel,
    mode: Mode,
    counters: Counters,
    /// Times the channel's mode had been changed (by a probe) and was restored.
    mode_restored: u32,
}

impl<S: FrameSource> RttDrain<S> {
    /// Drains `source` into `channel`, non-blocking (the channel is set to
    /// [`ChannelMode::NoBlockTrim`]).
    ///
    /// ```
    /// # use microspan::{Clock, Drain, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
    /// # static RING: Ring<256> = Ring::new();
    /// # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
    /// use microspan_serial::rtt::RttDrain;
    ///
    /// /// `up1` is `rtt_init!(..).up.1` (see the module docs).
    /// fn trace_over_rtt(up1: rtt_target::UpChannel) -> RttDrain<Drain<'static, 256>> {
    ///     RttDrain::new(Drain::new(&TRACER).expect("one drain"), up1)
    /// }
    /// # let _ = trace_over_rtt;
    /// ```
    pub fn new(source: S, channel: UpChannel) -> Self {
        Self::with_mode(source, channel, Mode::NonBlocking)
    }

    /// Drains `source` into `channel`, **blocking** when the RTT buffer is full (the channel is set
    /// to [`ChannelMode::BlockIfFull`]). The firmware stops when no probe reads the channel.
    pub fn blocking(source: S, channel: UpChannel) -> Self {
        Self::with_mode(source, channel, Mode::Blocking)
    }

    /// Drains `source` into `channel` in `mode`.
    pub fn with_mode(source: S, mut channel: UpChannel, mode: Mode) -> Self {
        channel.set_mode(mode.channel_mode());
        Self {
            source,
            channel,
            mode,
            counters: Counters::new(),
            mode_restored: 0,
        }
    }

    /// Switches between non-blocking and blocking.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.channel.set_mode(mode.channel_mode());
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Copies pending frames into the RTT buffer until it is full or nothing is left; returns the
    /// bytes written. Non-blocking unless the drain was made [`blocking`](Self::blocking).
    ///
    /// When the buffer fills mid-frame, the rest of the frame stays in the drain (counted as a
    /// refusal) and goes first on the next call.
    pub fn pump(&mut self) -> usize {
        let mut total = 0;
        loop {
            let bytes = self.source.fill_buf();
            let offered = bytes.len();
            if offered == 0 {
                return total;
            }
            // A probe may have switched the mode (possibly to NoBlockSkip, whose counts we
            // cannot trust).
            restore_mode(&mut self.channel, self.mode, &mut self.mode_restored);
            let n = self.channel.write(bytes).min(offered);
            if restore_mode(&mut self.channel, self.mode, &mut self.mode_restored) {
                // Changed during the write: rtt-target may report bytes it did not commit. The
                // next call sends a delimiter and the frame again.
                self.source.restart_frame();
                self.counters.refusal();
                return total;
            }
            self.source.consume(n);
            self.counters.sent(n, offered);
            total += n;
            if n < offered {
                self.counters.refusal();
                return total;
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Times the drain found the channel in another mode (set by a probe) and restored its own.
    pub fn mode_restored(&self) -> u32 {
        self.mode_restored
    }

    /// `true` when a frame is partly sent or something waits to be sent (records, a drop count).
    pub fn has_pending(&self) -> bool {
        self.source.has_pending()
    }

    /// `true` when the host has read everything written to the channel so far.
    pub fn host_caught_up(&self) -> bool {
        self.channel.is_empty()
    }

    /// The frame source (e.g. for [`microspan::Drain::stats`]).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The frame source, mutably.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The source and the channel back.
    pub fn into_parts(self) -> (S, UpChannel) {
        (self.source, self.channel)
    }
}

/// Puts `channel` back in the drain's `mode` if a probe changed it, counting it in `restored`;
/// `true` when it had been changed.
fn restore_mode(channel: &mut UpChannel, mode: Mode, restored: &mut u32) -> bool {
    let wanted = mode.channel_mode();
    if channel.mode() == wanted {
        return false;
    }
    channel.set_mode(wanted);
    *restored = restored.wrapping_add(1);
    true
}
