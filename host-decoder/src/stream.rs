//! Bytes in, finished traces out: the frame accumulator and the assembler together, with the
//! stream-level counters (CRC errors, resynchronisations, wire-version refusals).
//!
//! A frame that arrives a second time (a link, relay or capture that retransmits whole frames) is
//! recognised by its sequence number and content among the last [`REPLAY_WINDOW`] good frames,
//! counted in [`StreamStats::duplicate_frames`] and not decoded again: decoded twice, it would
//! read as a 65535-frame gap and restart its spans (`tests/faults.rs` replays frames). The frame
//! after the last one decoded is never taken for a replay. A frame from behind the last one
//! decoded, not later in time and not opening with a session record, is late: the assembler
//! skips it ([`Stats::late_frames`](crate::assemble::Stats::late_frames)).

use microspan::wire::decode::{Accumulator, FrameError};
use microspan::wire::SUPPORTED_VERSIONS;

use crate::assemble::{Assembler, Options, Stats};
use crate::model::Batch;
use crate::plural::count;

/// Largest encoded frame accepted (a device's frames are at most 65535 bytes).
pub const MAX_FRAME: usize = 65_536;

/// Unsupported-version frames in a row (with no good frame between) before decoding stops: one could
/// be corruption that happens to pass the CRC; three cannot.
const VERSION_STRIKES: u32 = 3;

/// Good frames remembered to recognise a replayed one.
pub const REPLAY_WINDOW: usize = 64;

/// Stream-level counters, beside the assembler's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes read.
    pub bytes: u64,
    /// Frames with a CRC mismatch.
    pub crc_errors: u64,
    /// Frames refused for other reasons (COBS, length, header).
    pub bad_frames: u64,
    /// Bytes thrown away while resynchronising.
    pub discarded_bytes: u64,
    /// Good frames that arrived a second time (same sequence number and content as one of the
    /// last [`REPLAY_WINDOW`]) and were skipped.
    pub duplicate_frames: u64,
    /// Frames the device restarted (`Drain::restart_frame`: a transport could not tell how much
    /// of a write went out): a bad frame followed by the whole frame, whose first bytes it is,
    /// and which is the frame after the last good one (sequence number one more).
    /// Nothing is lost; the fragment is not counted among the bad frames or discarded bytes.
    pub restarted_frames: u64,
    /// Bytes of a frame the input ended inside (no closing delimiter, and not a whole frame
    /// without it): a capture cut short. Counted by [`StreamDecoder::finish`], and by
    /// [`StreamDecoder::input_cut`] for a frame the input was cut inside.
    pub unfinished_bytes: u64,
    /// Times the input went away and came back ([`StreamDecoder::input_cut`]: a serial port
    /// unplugged and plugged in again, a TCP server restarted). What the device sent meanwhile
    /// shows as frames lost on the link.
    pub input_cuts: u64,
    /// Frames with a good CRC but a wire version this decoder does not read (also counted in
    /// [`bad_frames`](Self::bad_frames)).
    pub unsupported_version_frames: u64,
    /// The wire version of the last such frame.
    pub unsupported_version: Option<u8>,
    /// Bytes at the start of the input, before the device's first frame (frame 0, after its
    /// delimiter), that were not a frame: a boot banner or a power-up glitch on the same link.
    /// Skipped, and not a loss: nothing of this boot comes before frame 0.
    pub noise_before_first_frame: u64,
    /// The input began inside a frame: its first bytes, up to the first delimiter, were not a
    /// whole frame (counted in [`crc_errors`](Self::crc_errors) or
    /// [`bad_frames`](Self::bad_frames) like any bad frame). A capture started while the device
    /// was sending, not damage on the link.
    pub began_mid_frame: bool,
    /// The assembler's counters.
    pub spans: Stats,
}

/// A fatal stream error: decoding cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The device speaks a wire version this decoder does not read.
    #[error("the device sends wire version {version}; this decoder reads versions {supported:?}. Use the decoder from the same microspan release as the firmware (from its source tree: `cargo install --path host-decoder`)")]
    UnsupportedVersion {
        /// The stream's version.
        version: u8,
        /// The versions this decoder reads.
        supported: &'static [u8],
    },
}

/// Decodes a byte stream into finished traces.
pub struct StreamDecoder {
    acc: Box<Accumulator<MAX_FRAME>>,
    asm: Assembler,
    stats: StreamStats,
    version_strikes: u32,
    last_error: Option<String>,
    /// Fingerprints of the last good frames.
    recent: ReplayWindow,
    /// The encoded bytes of the frame being checked (the check decodes in place).
    encoded: Vec<u8>,
    /// The last frame, if it was bad: its encoded bytes, why, and whether it began where the
    /// input did or came back (no delimiter before it). Counted once the next frame shows
    /// whether it was the fragment of a restarted frame.
    suspect: Option<(Vec<u8>, FrameError, Began)>,
    /// The sequence number of the last good frame.
    last_seq: Option<u16>,
    /// The sequence number of the last frame handed to the assembler (not skipped as a replay).
    last_decoded: Option<u16>,
    /// The input was cut ([`input_cut`](Self::input_cut)) and no frame has ended since: the
    /// bytes up to the next delimiter may be the end of a frame the device was sending when the
    /// input came back, as at the start of an input.
    after_cut: bool,
}

impl StreamDecoder {
    /// A decoder with these options.
    pub fn new(opts: Options) -> Self {
        Self {
            acc: Box::new(Accumulator::new()),
            asm: Assembler::new(opts),
            stats: StreamStats::default(),
            version_strikes: 0,
            last_error: None,
            recent: ReplayWindow::new(),
            encoded: Vec::new(),
            suspect: None,
            last_seq: None,
            last_decoded: None,
            after_cut: false,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        let mut s = self.stats.clone();
        s.discarded_bytes = self.acc.discarded();
        s.spans = self.asm.stats();
        s
    }

    /// The most recent non-fatal error (bad frame, bad record), for status lines.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The device's service name, once a session started.
    pub fn service(&self) -> Option<&str> {
        self.asm.service()
    }

    /// The anchor that decodes this stream again to the same dates (see
    /// [`Assembler::replay_anchor`](crate::assemble::Assembler::replay_anchor)).
    pub fn replay_anchor(&self) -> Option<u64> {
        self.asm.replay_anchor()
    }

    /// Advice on how the device is set up (see [`Assembler::notes`](crate::assemble::Assembler::notes)).
    pub fn notes(&self) -> Vec<String> {
        self.asm.notes()
    }

    /// Feeds bytes (any chunking); finished traces are appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Batch>) -> Result<(), StreamError> {
        self.stats.bytes += bytes.len() as u64;
        self.frames(bytes, out)
    }

    /// Splits `bytes` into frames and decodes them (the bytes are counted by the caller).
    fn frames(&mut self, mut bytes: &[u8], out: &mut Vec<Batch>) -> Result<(), StreamError> {
        while !bytes.is_empty() {
            let (encoded, rest) = self.acc.feed_encoded(bytes);
            bytes = rest;
            let frame = match encoded {
                None => {
                    // Nothing buffered: a delimiter ended an empty frame, so what follows
                    // begins a frame of its own.
                    if self.acc.buffered() == 0 {
                        self.after_cut = false;
                    }
                    continue;
                }
                Some(Err(e)) => Err(e),
                Some(Ok(encoded)) => {
                    self.encoded.clear();
                    self.encoded.extend_from_slice(encoded);
                    Accumulator::<MAX_FRAME>::check(encoded)
                }
            };
            // The frame before, if bad, was a restarted frame's fragment when this one is the
            // frame after the last good one and begins with its bytes; otherwise it was a bad
            // frame. Its bytes are counted as discarded once `frame` is done with the
            // accumulator.
            let mut discarded = None;
            if let Some((fragment, error, began)) = self.suspect.take() {
                let restarted = frame.as_ref().is_ok_and(|f| {
                    self.last_seq
                        .is_some_and(|last| f.seq == last.wrapping_add(1))
                        && self.encoded.starts_with(&fragment)
                });
                // Bytes before the device's frame 0, where the input began: no frame of this
                // boot came before frame 0 (the drain sends a delimiter ahead of it), so they
                // are something else the link carried, a boot banner or a glitch, not a loss.
                let boot_noise = began != Began::Within && frame.as_ref().is_ok_and(|f| f.seq == 0);
                if restarted {
                    self.stats.restarted_frames += 1;
                } else if boot_noise {
                    self.stats.noise_before_first_frame += fragment.len() as u64;
                } else {
                    discarded = Some(fragment.len());
                    count_bad_fragment(
                        &mut self.stats,
                        &mut self.last_error,
                        fragment.len(),
                        error,
                        began,
                    );
                }
            }
            match frame {
                Ok(frame) => {
                    self.version_strikes = 0;
                    self.last_seq = Some(frame.seq);
                    let print = fingerprint(&frame);
                    // The frame after the last one decoded is never a replay, whatever it
                    // looks like: a device that rebooted into the same firmware sends the same
                    // bytes as its last boot did (its span ids start over with the session,
                    // which only frame 0 says).
                    let next = self
                        .last_decoded
                        .is_some_and(|l| frame.seq == l.wrapping_add(1));
                    if !next && self.recent.contains(print) {
                        self.stats.duplicate_frames += 1;
                    } else {
                        self.recent.push(print);
                        self.last_decoded = Some(frame.seq);
                        if let Some(e) = self.asm.frame(&frame, out) {
                            self.last_error = Some(format!("frame {}: {e}", frame.seq));
                        }
                    }
                }
                Err(FrameError::UnsupportedVersion { version }) => {
                    self.stats.bad_frames += 1;
                    self.stats.unsupported_version_frames += 1;
                    self.stats.unsupported_version = Some(version);
                    self.last_error = Some(format!(
                        "a frame of wire version {version}, which this decoder does not read (it reads versions {SUPPORTED_VERSIONS:?}): corruption that kept the CRC, or firmware newer than this decoder"
                    ));
                    self.acc.count_discarded(self.encoded.len());
                    self.version_strikes += 1;
                    if self.version_strikes >= VERSION_STRIKES {
                        if let Some(len) = discarded {
                            self.acc.count_discarded(len);
                        }
                        return Err(StreamError::UnsupportedVersion {
                            version,
                            supported: SUPPORTED_VERSIONS,
                        });
                    }
                }
                Err(e @ FrameError::TooLong { .. }) => {
                    // The accumulator counted its bytes.
                    count_bad(&mut self.stats, &mut self.last_error, e);
                }
                Err(e) => {
                    // Counted when the next frame shows it was not a restarted frame's fragment.
                    // It began at the input's first byte when the input read up to here is this
                    // frame and its delimiter alone.
                    let began = if self.after_cut {
                        Began::AfterCut
                    } else if self.stats.bytes - bytes.len() as u64 == self.encoded.len() as u64 + 1
                    {
                        Began::AtStart
                    } else {
                        Began::Within
                    };
                    self.suspect = Some((std::mem::take(&mut self.encoded), e, began));
                }
            }
            if let Some(len) = discarded {
                self.acc.count_discarded(len);
            }
            self.after_cut = false;
        }
        Ok(())
    }

    /// The input went away and came back (a serial port unplugged and plugged in again, a TCP
    /// server restarted): the bytes read before do not go on in the bytes that follow. A frame
    /// the input was cut inside is decoded if only its closing `0x00` is missing, else its bytes
    /// are counted as unfinished; the frames the device sent meanwhile show as a gap in the
    /// sequence (frames lost on the link); and the bytes before the next delimiter are read as
    /// those at the start of an input (a frame the device was sending as the input came back).
    /// Open spans stay open: the device may not have noticed.
    pub fn input_cut(&mut self, out: &mut Vec<Batch>) {
        self.end_of_bytes(out);
        self.stats.input_cuts += 1;
        self.after_cut = true;
    }

    /// The bytes buffered when the input ended or was cut: the last frame if only its delimiter
    /// is missing, the verdict on a bad frame kept to see what followed it, and the rest counted
    /// as unfinished bytes.
    fn end_of_bytes(&mut self, out: &mut Vec<Batch>) {
        // Bytes after the last delimiter that make a whole frame (valid COBS, good CRC, a version
        // this decoder reads): a capture stopped right after the frame, or a sender that writes
        // the delimiter late. Its delimiter is supplied, so the frame goes the way of every other
        // (a restarted frame, a duplicate). Anything else stays unfinished bytes: a frame cut
        // short fails its CRC.
        if self.last_frame_is_whole() {
            let refused = self.frames(&[0], out);
            // `frames` refuses only frames of an unsupported version, and this one is not.
            debug_assert!(refused.is_ok(), "{refused:?}");
        }
        if let Some((fragment, error, began)) = self.suspect.take() {
            self.acc.count_discarded(fragment.len());
            count_bad_fragment(
                &mut self.stats,
                &mut self.last_error,
                fragment.len(),
                error,
                began,
            );
        }
        self.stats.unfinished_bytes += self.acc.clear() as u64;
    }

    /// End of input: the last frame is decoded if only its closing `0x00` is missing, open spans
    /// are exported as incomplete, and the bytes of a frame the input ended inside are counted
    /// ([`StreamStats::unfinished_bytes`]).
    pub fn finish(&mut self, out: &mut Vec<Batch>) {
        self.end_of_bytes(out);
        self.asm.finish(out);
    }

    /// Whether the bytes buffered since the last delimiter are a good frame of a version this
    /// decoder reads (checked on a copy: the check decodes in place).
    fn last_frame_is_whole(&self) -> bool {
        let pending = self.acc.pending();
        !pending.is_empty() && Accumulator::<MAX_FRAME>::check(&mut pending.to_vec()).is_ok()
    }
}

/// Counts a bad frame and keeps its error for the status line.
fn count_bad(stats: &mut StreamStats, last_error: &mut Option<String>, e: FrameError) {
    match e {
        FrameError::Crc { .. } => stats.crc_errors += 1,
        _ => stats.bad_frames += 1,
    }
    *last_error = Some(e.to_string());
}

/// Counts a bad frame of `len` bytes, said as the end of a frame cut by the start of the input,
/// or by its coming back, when it began there.
fn count_bad_fragment(
    stats: &mut StreamStats,
    last_error: &mut Option<String>,
    len: usize,
    error: FrameError,
    began: Began,
) {
    count_bad(stats, last_error, error);
    match began {
        Began::Within => {}
        Began::AtStart => {
            stats.began_mid_frame = true;
            *last_error = Some(cut_by_start(len));
        }
        Began::AfterCut => {
            *last_error = Some(format!(
                "the first {} after the input came back: not a whole frame, probably the end of \
                 a frame the device was sending then, not damage on the link",
                count(len as u64, "byte", "bytes")
            ));
        }
    }
}

/// Why the input's first frame is bad when it began at the input's first byte: no delimiter
/// came before it, so the capture most likely started inside a frame, and this is its end. It
/// is counted as any bad frame; only the words differ from those of corruption on the link.
fn cut_by_start(len: usize) -> String {
    format!(
        "the input's first {} not a whole frame: probably a frame cut by the start of the \
         capture (it began mid-frame), or bytes sent before the device's first frame (boot \
         text or a glitch on the same UART), not damage on the link",
        count(len as u64, "byte was", "bytes were")
    )
}

/// Where a bad frame began: inside the stream, where the input began, or where it came back
/// after a cut ([`StreamDecoder::input_cut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Began {
    Within,
    AtStart,
    AfterCut,
}

/// One counter of [`StreamStats`] that says something went wrong, with its noun in the
/// singular and the plural (`"CRC error"`, `"CRC errors"`): see [`StreamStats::troubles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trouble {
    /// How many times it happened.
    pub count: u64,
    /// What one of them is called.
    pub one: &'static str,
    /// What several are called.
    pub many: &'static str,
    /// Whether it means something the device recorded is missing from the output
    /// ([`StreamStats::lost_anything`]) rather than changed (a name cut, a date guessed).
    pub loses: bool,
}

impl Trouble {
    const fn new(count: u64, one: &'static str, many: &'static str, loses: bool) -> Self {
        Self {
            count,
            one,
            many,
            loses,
        }
    }
}

impl StreamStats {
    /// Every counter that says the spans are not exactly what the device recorded, in the order
    /// a summary names them; those at zero included. [`anything_wrong`](Self::anything_wrong)
    /// and [`lost_anything`](Self::lost_anything) read this list, and `--strict` names its
    /// failures from it, so the three cannot disagree.
    pub fn troubles(&self) -> [Trouble; 16] {
        let s = &self.spans;
        [
            Trouble::new(self.crc_errors, "CRC error", "CRC errors", true),
            Trouble::new(self.bad_frames, "other bad frame", "other bad frames", true),
            Trouble::new(
                self.discarded_bytes,
                "byte discarded",
                "bytes discarded",
                true,
            ),
            Trouble::new(
                self.unfinished_bytes,
                "byte of a frame the input ended inside",
                "bytes of a frame the input ended inside",
                true,
            ),
            Trouble::new(
                s.lost_frames,
                "frame lost on the link",
                "frames lost on the link",
                true,
            ),
            Trouble::new(
                s.frames_before_session,
                "frame skipped before the session record",
                "frames skipped before the session record",
                true,
            ),
            Trouble::new(
                s.device_drops,
                "record dropped on the device",
                "records dropped on the device",
                true,
            ),
            Trouble::new(
                s.incomplete_spans,
                "incomplete span",
                "incomplete spans",
                true,
            ),
            Trouble::new(
                s.record_errors,
                "malformed record",
                "malformed records",
                true,
            ),
            Trouble::new(s.orphan_records, "orphan record", "orphan records", true),
            Trouble::new(
                s.names_cut,
                "name cut by the device",
                "names cut by the device",
                false,
            ),
            Trouble::new(
                s.misdated,
                "misdated session record",
                "misdated session records",
                false,
            ),
            Trouble::new(
                s.late_frames,
                "late frame skipped",
                "late frames skipped",
                true,
            ),
            Trouble::new(
                s.unknown_names,
                "name never defined",
                "names never defined",
                true,
            ),
            Trouble::new(
                s.bad_wall_clocks,
                "wall-clock reading ignored",
                "wall-clock readings ignored",
                false,
            ),
            Trouble::new(
                s.strings_cut,
                "string cut to the decoder's limit",
                "strings cut to the decoder's limit",
                false,
            ),
        ]
    }

    /// `true` when the spans are not exactly what the device recorded: something was lost
    /// ([`lost_anything`](Self::lost_anything)), a static string arrived cut to fit the device's
    /// frame, or records were dated ahead of the device's clock
    /// ([`Stats::misdated`](crate::assemble::Stats::misdated)). `--strict` fails on it.
    pub fn anything_wrong(&self) -> bool {
        self.troubles().iter().any(|t| t.count > 0)
    }

    /// `true` when something in the input could not be used: a bad, lost, cut or skipped frame,
    /// discarded bytes, a malformed or orphan record, a drop on the device, or a span that never
    /// finished.
    pub fn lost_anything(&self) -> bool {
        self.troubles().iter().any(|t| t.loses && t.count > 0)
    }

    /// What went wrong with the input as a whole, in words a user can act on (empty when the
    /// input was a good stream): no bytes, no frame, frames only of a wire version this decoder
    /// does not read (unless decoding stopped at them: [`StreamError::UnsupportedVersion`] says
    /// it then), no session record, a capture cut short, records dated ahead of the device's
    /// clock ([`Stats::misdated`](crate::assemble::Stats::misdated)), new drains in the running
    /// boot ([`Stats::drain_restarts`](crate::assemble::Stats::drain_restarts)). The per-span losses are on
    /// the spans themselves (Jaeger warnings).
    pub fn problems(&self) -> Vec<String> {
        let s = &self.spans;
        let mut out = Vec::new();
        if self.bytes == 0 {
            out.push(
                "the input was empty: no bytes were read. Check that the firmware runs its drain \
                 (`BlockingDrain::drain`, `AsyncDrain::run`, `Drain::drain_with`…), that the UART is \
                 enabled and wired to what was captured (QEMU: `-serial file:…` or \
                 `-serial tcp:…`), and that the capture ran while the device did"
                    .to_string(),
            );
            return out;
        }
        // Nothing but the bytes of an unfinished frame, after delimiters at most (a drain sends
        // one before its first frame).
        if s.frames == 0
            && self.unfinished_bytes > 0
            && self.crc_errors + self.bad_frames + self.discarded_bytes == 0
        {
            out.push(format!(
                "the input ended inside its first frame ({}, no closing 0x00): the capture was \
                 cut short, or this is not a microspan stream",
                count(self.unfinished_bytes, "byte", "bytes")
            ));
            return out;
        }
        if s.frames == 0 && self.unsupported_version_frames > 0 {
            // Frames were found, all of a version this decoder does not read. Enough of them in a
            // row stop decoding, and the caller reports that (`StreamError::UnsupportedVersion`):
            // anything said here would only repeat it. Fewer could be corruption, but with no
            // good frame beside them they are the likelier story.
            if self.unsupported_version_frames < u64::from(VERSION_STRIKES) {
                out.push(format!(
                    "no frame of a wire version this decoder reads: {} of wire version {} (this decoder reads versions {SUPPORTED_VERSIONS:?}); if the firmware is newer than this decoder, use the decoder from the same microspan release as the firmware (from its source tree: `cargo install --path host-decoder`)",
                    self.unsupported_version_frames,
                    self.unsupported_version.unwrap_or_default(),
                ));
            }
            return out;
        }
        if s.frames == 0 {
            out.push(format!(
                "no microspan frame found in {} ({}, {}, {} discarded): check that both sides use the same baud rate, that the RTT channel is microspan's (1 by default; defmt uses 0), and that the device runs microspan's drain",
                count(self.bytes, "byte", "bytes"),
                count(self.crc_errors, "CRC error", "CRC errors"),
                count(self.bad_frames, "other bad frame", "other bad frames"),
                count(self.discarded_bytes, "byte", "bytes"),
            ));
        } else if s.frames_before_session == s.frames {
            out.push(format!(
                "no session record (HELLO) arrived, so {} be read{}: the device sends one in its first frame and again every epoch (64 frames by default, `Drain::set_epoch_frames`); capture from the device's reset, or for longer{}",
                match s.frames {
                    1 => "the one good frame could not".to_string(),
                    n => format!("none of the {n} good frames could"),
                },
                if self.crc_errors + self.bad_frames > u64::from(self.began_mid_frame) {
                    " (a frame lost to a CRC error or corruption may have been it)"
                } else {
                    ""
                },
                if self.began_mid_frame {
                    ". If the capture did start at the reset, bytes the device sent before its first frame (a boot banner on the same UART) merged with that frame: a drain of this release sends a 0x00 before its first frame to keep them apart; with older firmware, end such text with a 0x00 byte"
                } else {
                    ""
                }
            ));
        } else if s.frames_before_session > 0 {
            out.push(format!(
                "{} before the first session record (the capture joined the stream midway)",
                count(
                    s.frames_before_session,
                    "frame was skipped",
                    "frames were skipped"
                ),
            ));
        }
        if s.spans > 1 && s.zero_length_spans == s.spans {
            out.push(format!(
                "all {} spans lasted 0 ns: the device's clock did not advance while they were \
                 recorded (a clock never started, such as `SysTickClock` before its `start()`, \
                 or one too coarse for spans this short)",
                s.spans
            ));
        }
        if s.device_drops > 0 {
            out.push(format!(
                "the device dropped {}: its ring buffer was full when they were recorded (in \
                 flight-recorder mode, the oldest were overwritten; a span whose start was \
                 dropped counts each record it skips after), or a record was larger than the \
                 drain's frame. Give the ring more words (`Ring<N>`), drain more often, or \
                 record less (for records too large for a frame: a larger `Drain<F>`, or a \
                 smaller `MAX_STR_LEN`); the spans that may have lost records carry a warning",
                count(s.device_drops, "record", "records"),
            ));
        }
        if self.noise_before_first_frame > 0 {
            out.push(format!(
                "{} before the device's first frame not microspan's (boot text or a glitch on \
                 the link) and skipped: nothing was lost",
                count(self.noise_before_first_frame, "byte was", "bytes were"),
            ));
        }
        if s.names_cut > 0 {
            out.push(format!(
                "{} longer than the device's drain frame and arrived cut (a cut string ends in \"…\", and the spans using it carry a warning): give the drain a larger frame (`Drain<F>`) or use shorter names",
                count(s.names_cut, "static string was", "static strings were"),
            ));
        }
        if s.misdated > 0 {
            out.push(format!(
                "{} of the running boot, arriving in sequence, {} dated more than a second before records heard earlier: those records were dated ahead of the device's clock (an undetected corrupted frame whose CRC still matched, or a device clock that jumped); this was not taken for a device reset, but spans holding such a record may show wrong times or durations",
                count(s.misdated, "session record (HELLO)", "session records (HELLO)"),
                crate::plural::plural(s.misdated, "was", "were"),
            ));
        }
        if s.strings_cut > 0 {
            out.push(format!(
                "{} longer than the decoder's string limit (`Limits::max_string_len`, 4096 \
                 bytes by default) and cut, ending in \"…\" where a name was cut (spans holding \
                 another cut string carry a warning): longer than a device should send (its \
                 `MAX_STR_LEN`, its static names), which suggests a corrupted stream",
                count(s.strings_cut, "string was", "strings were"),
            ));
        }
        if s.bad_wall_clocks > 0 {
            out.push(format!(
                "{} from the device would date it before 1970 or after 2100 and {} ignored (a \
                 wall clock never set, or a corrupted record): its spans are dated as if it had \
                 sent none. Set it from a real time source (`Drain::set_wall_clock`)",
                count(
                    s.bad_wall_clocks,
                    "wall-clock reading",
                    "wall-clock readings"
                ),
                crate::plural::plural(s.bad_wall_clocks, "was", "were"),
            ));
        }
        if s.late_frames > 0 {
            out.push(format!(
                "{} after later frames of the same session and {} skipped, {} lost: frames \
                 reordered or replayed on the way (a relay, a capture merged from several \
                 reads), or the first frames of a new boot whose frame 0 was lost, before its \
                 next session record",
                count(s.late_frames, "frame arrived", "frames arrived"),
                crate::plural::plural(s.late_frames, "was", "were"),
                crate::plural::plural(s.late_frames, "its records", "their records"),
            ));
        }
        if s.drain_restarts > 0 {
            out.push(format!(
                "the device made a new Drain {} in the running boot (each starts its frames' \
                 sequence at 0 again): read as the same stream going on, nothing lost. Make one \
                 Drain per boot and keep it: a new one made after the device's clock wrapped \
                 starts its times over, and reads as a device reset",
                count(s.drain_restarts, "time", "times"),
            ));
        }
        if self.input_cuts > 0 {
            out.push(format!(
                "the input went away and came back {}: what the device sent meanwhile is missing \
                 (counted as frames lost on the link){}",
                count(self.input_cuts, "time", "times"),
                if self.unfinished_bytes > 0 {
                    format!(
                        ", and {} of frames it was cut or ended inside",
                        count(self.unfinished_bytes, "byte", "bytes")
                    )
                } else {
                    String::new()
                },
            ));
        } else if self.unfinished_bytes > 0 && s.frames > 0 {
            out.push(format!(
                "the input ended inside a frame: its last {} not a whole frame (the capture was cut short)",
                count(self.unfinished_bytes, "byte was", "bytes were"),
            ));
        }
        out
    }
}

/// The fingerprints (sequence number, content hash) of the last [`REPLAY_WINDOW`] good frames,
/// oldest first, and how many of them fall in each of [`REPLAY_BUCKETS`] buckets by their hash's
/// low bits. A frame whose bucket is empty is not among them, which is most frames' case: they
/// are told so without comparing their fingerprint with each of the window's (that scan, for
/// every frame, was a fiftieth of decoding).
struct ReplayWindow {
    prints: std::collections::VecDeque<(u16, u64)>,
    buckets: [u8; REPLAY_BUCKETS],
}

/// Buckets of [`ReplayWindow`] (a power of two; with 64 fingerprints, about one in sixteen is
/// in use).
const REPLAY_BUCKETS: usize = 1024;

impl ReplayWindow {
    fn new() -> Self {
        Self {
            prints: std::collections::VecDeque::with_capacity(REPLAY_WINDOW),
            buckets: [0; REPLAY_BUCKETS],
        }
    }

    fn bucket(print: (u16, u64)) -> usize {
        print.1 as usize & (REPLAY_BUCKETS - 1)
    }

    /// `print` is among the last frames'.
    #[inline]
    fn contains(&self, print: (u16, u64)) -> bool {
        self.buckets[Self::bucket(print)] != 0 && self.prints.contains(&print)
    }

    /// Adds `print`, forgetting the oldest if the window is full.
    fn push(&mut self, print: (u16, u64)) {
        if self.prints.len() == REPLAY_WINDOW {
            if let Some(old) = self.prints.pop_front() {
                self.buckets[Self::bucket(old)] -= 1;
            }
        }
        self.prints.push_back(print);
        self.buckets[Self::bucket(print)] += 1;
    }
}

/// A frame's sequence number and a hash of everything else in it.
///
/// The same frame always has the same fingerprint. The hash reads the body eight bytes at a time
/// (SipHash over every frame was a few percent of decoding); a retransmitted frame is
/// recognised only if its sequence number also matches one of the last [`REPLAY_WINDOW`] frames.
fn fingerprint(frame: &microspan::wire::decode::Frame<'_>) -> (u16, u64) {
    let mut h = FrameHash::new(frame.body.len() as u64);
    h.word(u64::from(frame.version) | u64::from(frame.base_id) << 8);
    h.word(frame.base_time);
    let mut words = frame.body.chunks_exact(8);
    for w in &mut words {
        h.word(u64::from_le_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h.word(u64::from_le_bytes(tail));
    (frame.seq, h.finish())
}

/// A 128-bit-state multiply-mix hash of 64-bit words (two lanes, folded at the end).
struct FrameHash(u64, u64);

impl FrameHash {
    fn new(len: u64) -> Self {
        Self(0x243F_6A88_85A3_08D3 ^ len, 0x1319_8A2E_0370_7344)
    }

    #[inline]
    fn word(&mut self, w: u64) {
        let m = u128::from(self.0 ^ w) * u128::from(0x9E37_79B9_7F4A_7C15u64 ^ self.1);
        self.1 = self.1.rotate_left(23) ^ w;
        self.0 = (m as u64) ^ (m >> 64) as u64;
    }

    fn finish(self) -> u64 {
        let x = self.0 ^ self.1.rotate_left(31);
        let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microspan::wire::decode::Frame;

    /// `--strict` fails on what is lost and on what is known wrong though nothing was lost: a
    /// cut name, a misdated record.
    #[test]
    fn wrong_but_not_lost_is_wrong() {
        let clean = StreamStats::default();
        assert!(!clean.lost_anything() && !clean.anything_wrong());
        let mut cut = clean.clone();
        cut.spans.names_cut = 1;
        let mut misdated = clean.clone();
        misdated.spans.misdated = 1;
        let mut dropped = clean.clone();
        dropped.spans.device_drops = 1;
        for s in [&cut, &misdated] {
            assert!(!s.lost_anything() && s.anything_wrong(), "{s:?}");
        }
        assert!(dropped.lost_anything() && dropped.anything_wrong());
    }

    /// The window answers as a plain list of its last fingerprints would, also when many share a
    /// bucket or a hash, and its bucket counts stay those of the fingerprints it holds.
    #[test]
    fn replay_window_agrees_with_a_list() {
        let mut w = ReplayWindow::new();
        let mut list = std::collections::VecDeque::new();
        // Hashes in few buckets (and some equal, with other sequence numbers).
        let print = |n: u64| ((n % 7) as u16, (n % 40) * REPLAY_BUCKETS as u64 + n % 3);
        for n in 0..1000u64 {
            let p = print(n * 2_654_435_761 % 997);
            let q = print(n);
            assert_eq!(w.contains(q), list.contains(&q), "{n}");
            if !list.contains(&p) {
                w.push(p);
                list.push_back(p);
                if list.len() > REPLAY_WINDOW {
                    list.pop_front();
                }
            }
            assert_eq!(w.prints, list);
            let mut buckets = [0u8; REPLAY_BUCKETS];
            for &p in &list {
                buckets[ReplayWindow::bucket(p)] += 1;
            }
            assert!(w.buckets == buckets, "{n}");
        }
    }

    /// Frames that differ anywhere (one bit of the body, its length, a header field) have
    /// different fingerprints; the same frame always has the same one.
    #[test]
    fn fingerprints_tell_frames_apart() {
        let body: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        fn frame(body: &[u8]) -> Frame<'_> {
            Frame {
                version: 1,
                seq: 7,
                base_id: 42,
                base_time: 123_456,
                body,
            }
        }
        let mut seen = std::collections::HashSet::new();
        let base = fingerprint(&frame(&body));
        assert_eq!(base, fingerprint(&frame(&body.clone())));
        seen.insert(base.1);
        for len in 0..body.len() {
            assert!(
                seen.insert(fingerprint(&frame(&body[..len])).1),
                "length {len}"
            );
        }
        for bit in 0..body.len() * 8 {
            let mut b = body.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(seen.insert(fingerprint(&frame(&b)).1), "bit {bit}");
        }
        let f = frame(&body);
        for other in [
            Frame { version: 2, ..f },
            Frame { base_id: 43, ..f },
            Frame {
                base_time: 123_457,
                ..f
            },
        ] {
            assert!(seen.insert(fingerprint(&other).1));
        }
        // Only zeros, of different lengths (the padded tail).
        let zeros = [0u8; 16];
        assert!((1..=16).all(|n| seen.insert(fingerprint(&frame(&zeros[..n])).1)));
    }
}
