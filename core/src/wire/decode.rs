//! The host side of the wire format: bytes in, frames and typed records out.
//!
//! Everything here treats its input as untrusted: no panics, no allocation, memory bounded by the
//! accumulator's `MAX`, and a typed error naming the cause for everything refused. It is `no_std`
//! like the rest of the crate, so the decoder crate, the tests and even a gateway device can use it.
//!
//! ```
//! use microspan::wire::decode::{Accumulator, RecordDecoder};
//! let stream: &[u8] = &[]; // bytes from a UART, a file, a TCP socket…
//! let mut acc: Accumulator<4096> = Accumulator::new();
//! let mut input = stream;
//! while !input.is_empty() {
//!     let (frame, rest) = acc.feed(input);
//!     input = rest;
//!     match frame {
//!         Some(Ok(frame)) => for record in RecordDecoder::new(&frame) { let _ = record; },
//!         Some(Err(e)) => eprintln!("{e}"),
//!         None => {}
//!     }
//! }
//! ```

use core::fmt;

use super::{
    ext, start_flags, tag, varint, vtype, Hello, OpenStarts, WallClock, SUPPORTED_VERSIONS,
};
use crate::context::{SpanId, TraceId};
use crate::tracer::{Losses, RefKind};

/// The frame CRC ([`super::CRC`]) as the decoder computes it. On a host (`std`), slice-by-16
/// tables (8 KiB) check a frame several times faster than the byte-wise table the device uses;
/// without `std` (a gateway device decoding), the device's own small table.
#[cfg(feature = "std")]
const CHECK_CRC: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_IBM_3740);
#[cfg(not(feature = "std"))]
const CHECK_CRC: crc::Crc<u16> = super::CRC;

/// Why bytes between two delimiters were not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More than the accumulator's limit without a delimiter; bytes were discarded up to the next
    /// `0x00`.
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// The bytes are not valid COBS (corruption, or not a microspan stream).
    Cobs {
        /// Encoded length.
        len: usize,
    },
    /// Shorter than the smallest frame.
    TooShort {
        /// Decoded length.
        len: usize,
    },
    /// The CRC does not match (corruption on the link).
    Crc {
        /// CRC carried by the frame.
        carried: u16,
        /// CRC computed over its contents.
        computed: u16,
    },
    /// A well-formed frame of a wire version this decoder does not read.
    UnsupportedVersion {
        /// The frame's version.
        version: u8,
    },
    /// The frame header (base id, base time) is malformed.
    Header,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { limit } => write!(f, "no frame delimiter within {limit} bytes: not a microspan stream, wrong baud rate, or a frame larger than this decoder accepts"),
            FrameError::Cobs { len } => write!(f, "invalid COBS encoding in a {len}-byte frame (corrupted bytes on the link)"),
            FrameError::TooShort { len } => write!(f, "{len}-byte frame is shorter than any microspan frame (corrupted bytes on the link)"),
            FrameError::Crc { carried, computed } => write!(f, "CRC mismatch (frame says {carried:#06x}, contents give {computed:#06x}): corrupted bytes on the link"),
            FrameError::UnsupportedVersion { version } => write!(f, "the device sends wire version {version}, this decoder reads versions {SUPPORTED_VERSIONS:?}: update the decoder to the microspan release of the firmware"),
            FrameError::Header => write!(f, "malformed frame header"),
        }
    }
}

/// A checked frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Wire version.
    pub version: u8,
    /// Sequence number (wraps at 2^16); a gap means frames were lost.
    pub seq: u16,
    /// The id deltas' base: the last span started before this frame.
    pub base_id: u32,
    /// The time deltas' base (extended device ticks).
    pub base_time: u64,
    /// The records.
    pub body: &'a [u8],
}

/// Splits a byte stream into frames. Feed it chunks of any size; it holds at most `MAX` bytes.
pub struct Accumulator<const MAX: usize> {
    buf: [u8; MAX],
    len: usize,
    /// Discarding until the next delimiter (after an over-long frame).
    overflowed: bool,
    /// Bytes discarded in total (over-long frames, failed frames).
    discarded: u64,
}

impl<const MAX: usize> Default for Accumulator<MAX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const MAX: usize> Accumulator<MAX> {
    /// An empty accumulator.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX],
            len: 0,
            overflowed: false,
            discarded: 0,
        }
    }

    /// Bytes thrown away so far (inside bad or over-long frames).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Bytes buffered waiting for a delimiter.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// The bytes buffered waiting for a delimiter (empty while an over-long frame is discarded).
    /// At the end of input they are the last frame when only its closing `0x00` is missing: a
    /// host decoder [`check`](Self::check)s a copy and, when it is a frame, ends it with
    /// `feed_encoded(&[0])`.
    #[cfg(feature = "std")]
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Consumes input up to and including the next delimiter. Returns the frame (or why there was
    /// none) when a delimiter was found, and the input not yet consumed.
    pub fn feed<'s, 'i>(
        &'s mut self,
        input: &'i [u8],
    ) -> (Option<Result<Frame<'s>, FrameError>>, &'i [u8]) {
        let (frame, rest) = self.take_frame(input);
        let frame = frame.map(|len| {
            let len = len?;
            let result = Self::check(&mut self.buf[..len]);
            if result.is_err() {
                self.discarded += len as u64 + 1;
            }
            result
        });
        (frame, rest)
    }

    /// [`feed`](Self::feed) without the check: the COBS-encoded bytes of the next frame
    /// (delimiter excluded), for a caller that looks at them before [`check`](Self::check)ing
    /// them (the host decoder recognises a restarted frame's fragment by them). A frame it finds
    /// bad it counts with [`count_discarded`](Self::count_discarded).
    pub fn feed_encoded<'s, 'i>(
        &'s mut self,
        input: &'i [u8],
    ) -> (Option<Result<&'s mut [u8], FrameError>>, &'i [u8]) {
        let (frame, rest) = self.take_frame(input);
        (frame.map(|len| Ok(&mut self.buf[..len?])), rest)
    }

    /// Forgets the bytes buffered since the last delimiter, as if a delimiter had come there
    /// and the frame it ended had never been: for an input that was cut (a serial port that went
    /// away and came back), whose next bytes do not continue those. Returns how many it forgot
    /// (0 while an over-long frame was being discarded: those are counted already).
    pub fn clear(&mut self) -> usize {
        let len = if self.overflowed { 0 } else { self.len };
        self.len = 0;
        self.overflowed = false;
        len
    }

    /// Counts the `len` encoded bytes of a frame found bad, and its delimiter, as discarded.
    pub fn count_discarded(&mut self, len: usize) {
        self.discarded += len as u64 + 1;
    }

    /// Buffers input up to and including the next delimiter; the length of the frame it ends
    /// (`Err` when it was over-long), or `None` before a delimiter or for an empty frame.
    fn take_frame<'i>(&mut self, input: &'i [u8]) -> (Option<Result<usize, FrameError>>, &'i [u8]) {
        let Some(end) = find_zero(input) else {
            self.push(input);
            return (None, &[]);
        };
        self.push(&input[..end]);
        let rest = &input[end + 1..];
        if self.overflowed {
            self.overflowed = false;
            self.len = 0;
            return (Some(Err(FrameError::TooLong { limit: MAX })), rest);
        }
        let len = core::mem::take(&mut self.len);
        if len == 0 {
            // Two delimiters in a row (idle line, a sender flushing): not an error.
            return (None, rest);
        }
        (Some(Ok(len)), rest)
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.overflowed {
            self.discarded += bytes.len() as u64;
            return;
        }
        if self.len + bytes.len() > MAX {
            self.discarded += (self.len + bytes.len()) as u64;
            self.len = 0;
            self.overflowed = true;
            return;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// COBS-decodes `encoded` in place and checks it.
    pub fn check(encoded: &mut [u8]) -> Result<Frame<'_>, FrameError> {
        let len = encoded.len();
        let n = cobs_decode_in_place(encoded).ok_or(FrameError::Cobs { len })?;
        let data = &encoded[..n];
        // version + seq + base id + base time + CRC
        if n < 3 + 1 + 1 + 2 {
            return Err(FrameError::TooShort { len: n });
        }
        let (content, crc) = data.split_at(n - 2);
        let carried = u16::from_le_bytes([crc[0], crc[1]]);
        let computed = CHECK_CRC.checksum(content);
        let version = content[0];
        if carried != computed {
            return Err(FrameError::Crc { carried, computed });
        }
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(FrameError::UnsupportedVersion { version });
        }
        let seq = u16::from_le_bytes([content[1], content[2]]);
        let mut at = 3;
        let (base_id, k) = varint::decode_u64(&content[at..]).ok_or(FrameError::Header)?;
        at += k;
        let (base_time, k) = varint::decode_u64(&content[at..]).ok_or(FrameError::Header)?;
        at += k;
        let base_id = u32::try_from(base_id).map_err(|_| FrameError::Header)?;
        Ok(Frame {
            version,
            seq,
            base_id,
            base_time,
            body: &content[at..],
        })
    }
}

/// The position of the first zero byte: eight bytes at a time (the frame delimiter is searched for
/// in every byte of the stream, twice).
#[inline]
fn find_zero(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // Non-zero exactly when some byte of `x` is zero; its lowest set bit marks the first.
        let zero = x.wrapping_sub(LO) & !x & HI;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == 0)
        .map(|i| at + i)
}

/// COBS-decodes `buf` in place: the decoded length, or `None` where `cobs::decode_in_place` (0.5)
/// refuses the input. The same result and bytes as that function, block by block rather than byte
/// by byte with a bounds check on each (it was a fifth of frame + record decoding).
fn cobs_decode_in_place(buf: &mut [u8]) -> Option<usize> {
    if buf.is_empty() {
        return None;
    }
    // Decoding stops at the first zero, if any (a frame from the accumulator has none).
    let end = find_zero(buf).unwrap_or(buf.len());
    let (mut src, mut dst) = (0, 0);
    while src < end {
        let code = buf[src] as usize;
        // The block (the code byte, then code − 1 data bytes) must end within the frame.
        if src + code > end && code != 1 {
            return None;
        }
        src += 1;
        let n = code - 1;
        // dst < src: copying forward within the buffer, as a byte loop would. Short blocks (most
        // of a record stream's, broken by its many zero bytes) byte by byte, in line: a call to
        // memmove costs more than the copy.
        if n <= 16 {
            let w = &mut buf[dst..src + n];
            let off = src - dst;
            for k in 0..n {
                w[k] = w[off + k];
            }
        } else {
            buf.copy_within(src..src + n, dst);
        }
        src += n;
        dst += n;
        if code != 0xFF && src < end {
            buf[dst] = 0;
            dst += 1;
        }
    }
    Some(dst)
}

/// Why a record could not be decoded. The rest of its frame is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The frame ended inside a record.
    Truncated {
        /// Offset of the record in the frame body.
        offset: usize,
    },
    /// A varint is malformed or out of range.
    BadNumber {
        /// Offset of the record.
        offset: usize,
    },
    /// An extended record kind or value type this version does not define.
    UnknownKind {
        /// Offset of the record.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A string is not valid UTF-8.
    Utf8 {
        /// Offset of the record.
        offset: usize,
    },
    /// The session record does not parse.
    Hello {
        /// Offset of the record.
        offset: usize,
    },
    /// A session record whose clock runs at 0 ticks per second: no time on the device can be
    /// read from it.
    NoClockRate {
        /// Offset of the record.
        offset: usize,
    },
    /// (Version 2) a short record refers to a start earlier in its frame that the frame does not
    /// have: a short end with no open start, or a repeated id delta before any start.
    NoStart {
        /// Offset of the record.
        offset: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated { offset } => {
                write!(f, "record at byte {offset} runs past the end of its frame")
            }
            RecordError::BadNumber { offset } => {
                write!(f, "malformed number in the record at byte {offset}")
            }
            RecordError::UnknownKind { offset, byte } => write!(
                f,
                "unknown record kind or value type {byte:#04x} at byte {offset}"
            ),
            RecordError::Utf8 { offset } => {
                write!(f, "string that is not UTF-8 in the record at byte {offset}")
            }
            RecordError::Hello { offset } => {
                write!(f, "unreadable session record at byte {offset}")
            }
            RecordError::NoClockRate { offset } => write!(
                f,
                "session record at byte {offset} with a clock of 0 ticks per second (the \
                 firmware's `Clock::ticks_per_second` returned 0): no time can be read from it"
            ),
            RecordError::NoStart { offset } => write!(
                f,
                "the record at byte {offset} refers to a span start its frame does not have"
            ),
        }
    }
}

/// A string on the wire: an interned id or the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrRef<'a> {
    /// Defined by a [`Record::Name`] of this epoch.
    Id(u32),
    /// The text.
    Inline(&'a str),
}

/// A decoded tag or field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A double.
    F64(f64),
    /// A string.
    Str(StrRef<'a>),
}

/// The parent of a starting span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// None: a root span; its trace id is derived from its own id.
    Root,
    /// A span of this session.
    Local {
        /// The parent's local id.
        id: u32,
        /// The local root of the trace (whose id gives the trace id), or `None` when the parent
        /// started earlier in this same frame (its root is the parent's).
        root: Option<u32>,
    },
    /// An explicit trace (a context extracted from elsewhere, or a parent lost on the device).
    Remote {
        /// The trace.
        trace: TraceId,
        /// The parent span, `None` when its start record was dropped on the device.
        span: Option<SpanId>,
    },
    /// A span of this session whose trace id came from elsewhere, named with its trace in full
    /// because its parent, a span of this session too, started in an earlier frame (so losing
    /// that frame does not move it to another trace). It inherits the parent's baggage.
    LocalInTrace {
        /// The trace.
        trace: TraceId,
        /// The parent span (its low half is the parent's local id).
        span: SpanId,
    },
}

/// A span start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start<'a> {
    /// The span's local id (its ring position on the device).
    pub id: u32,
    /// Its parent.
    pub parent: Parent,
    /// The parent reference is FollowsFrom rather than ChildOf.
    pub follows_from: bool,
    /// Debug flag.
    pub debug: bool,
    /// Operation name.
    pub name: StrRef<'a>,
    /// Start time (extended ticks).
    pub time: u64,
}

/// The fields of a log record (already validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> Fields<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    /// `true` when there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (StrRef<'a>, WireValue<'a>);
    // In line in the caller's loop (it is another crate's): a call returned each field through
    // memory, about 60 instructions a field.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.count == 0 {
            return None;
        }
        let mut c = Cur {
            buf: self.bytes,
            at: 0,
            offset: 0,
        };
        let t = c.u8().ok()?;
        let field = c.field(t).ok()?;
        self.bytes = &self.bytes[c.at..];
        self.count -= 1;
        Some(field)
    }
}

/// A record, with ids and times made absolute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record<'a> {
    /// Session record.
    Hello(Hello<'a>),
    /// Name definition.
    Name {
        /// Id.
        id: u32,
        /// Text.
        name: &'a str,
        /// The device cut the string to fit a frame (`NAME_CUT`): `name` is its beginning.
        cut: bool,
    },
    /// A span starts.
    Start(Start<'a>),
    /// A span ends.
    End {
        /// Local id.
        span: u32,
        /// Finish time (extended ticks).
        time: u64,
        /// What it lost.
        losses: Losses,
    },
    /// A tag.
    Tag {
        /// Local id.
        span: u32,
        /// Key.
        key: StrRef<'a>,
        /// Value.
        value: WireValue<'a>,
    },
    /// A log.
    Log {
        /// Local id.
        span: u32,
        /// Time (extended ticks).
        time: u64,
        /// Fields.
        fields: Fields<'a>,
    },
    /// A baggage item (`BAGGAGE`, or `BAGGAGE_CARRIED` when `carried`).
    Baggage {
        /// Local id.
        span: u32,
        /// Key.
        key: &'a str,
        /// Value.
        value: &'a str,
        /// `false`: the span set the item (`Span::set_baggage`; Jaeger clients log it there).
        /// `true`: the span received it (from a carrier or a builder's baggage): it joins the
        /// span's baggage and is not logged, as it was set, and logged, upstream.
        carried: bool,
    },
    /// An extra reference.
    Reference {
        /// Local id of the referring span.
        span: u32,
        /// ChildOf or FollowsFrom.
        kind: RefKind,
        /// Referenced trace.
        trace: TraceId,
        /// Referenced span.
        target: SpanId,
    },
    /// Records dropped on the device since boot.
    Drops {
        /// Cumulative count.
        total: u32,
    },
    /// The device's real time.
    WallClock(WallClock),
}

/// Iterates over a frame's records. Stops at the first error (yielded), since what follows cannot
/// be delimited.
pub struct RecordDecoder<'a> {
    cur: Cur<'a>,
    last_start: u32,
    last_time: u64,
    subject: u32,
    failed: bool,
    /// The frame is version 2 or later (short starts and ends as version 2 defines them).
    v2: bool,
    /// (Version 2) the id delta of the frame's previous start, 0 before the first.
    last_delta: u32,
    /// (Version 2) the frame's open starts.
    open: OpenStarts,
}

impl<'a> RecordDecoder<'a> {
    /// Decodes `frame`'s records.
    pub fn new(frame: &Frame<'a>) -> Self {
        Self {
            cur: Cur {
                buf: frame.body,
                at: 0,
                offset: 0,
            },
            last_start: frame.base_id,
            last_time: frame.base_time,
            subject: frame.base_id,
            failed: false,
            v2: frame.version >= 2,
            last_delta: 0,
            open: OpenStarts::new(),
        }
    }

    /// Moves the start state on to the span `id`, which started `delta` after the previous one.
    #[inline(always)]
    fn started(&mut self, id: u32, delta: u32) {
        self.last_start = id;
        self.subject = id;
        self.last_delta = delta;
        self.open.push(id);
    }

    /// A span ended by a record that names it.
    #[inline(always)]
    fn ended(&mut self, span: u32) {
        if self.v2 {
            self.open.remove(span);
        }
    }

    fn no_start(&self) -> RecordError {
        RecordError::NoStart {
            offset: self.cur.offset,
        }
    }

    fn back(&self, d: u64) -> Result<u32, RecordError> {
        let d = u32::try_from(d).map_err(|_| self.cur.bad())?;
        Ok(self.last_start.wrapping_sub(d))
    }

    fn time(&mut self, dt: u64) -> Result<u64, RecordError> {
        self.last_time = self.last_time.checked_add(dt).ok_or(self.cur.bad())?;
        Ok(self.last_time)
    }

    /// The next record handed to `f`, and what `f` returns; the error that ends the frame; or
    /// `None` after the last record (or after an error).
    ///
    /// The record is handed over where it is decoded, in each kind's own branch: a record
    /// returned (by [`Iterator::next`]) comes out of a branch for each kind and is merged into
    /// one value first, which the compiler does by copying its fields through memory (about 40
    /// instructions a record, most of what a tag costs to decode). Given a closure that handles
    /// the record in line (`#[inline(always)]`), each branch handles its own kind.
    #[inline(always)]
    pub fn next_with<R>(
        &mut self,
        f: impl FnOnce(Record<'a>) -> R,
    ) -> Option<Result<R, RecordError>> {
        if self.failed {
            return None;
        }
        // Returned as it came: taken apart with `?` and wrapped again, the result was copied
        // through memory twice, in pieces that stalled store forwarding on every record.
        let r = self.next_record(f);
        self.failed = matches!(r, Some(Err(_)));
        r
    }

    // Inlined into `next_with` (and with it into the caller's loop): the record is built where it
    // is used rather than returned through memory and copied again (a stall on every record).
    // The one record that yields nothing (a time reset) is read here, so `record` always hands
    // over a record or gives an error.
    #[inline(always)]
    fn next_record<R>(
        &mut self,
        f: impl FnOnce(Record<'a>) -> R,
    ) -> Option<Result<R, RecordError>> {
        loop {
            self.cur.offset = self.cur.at;
            let t = *self.cur.buf.get(self.cur.at)?;
            self.cur.at += 1;
            if t == tag::EXT | ext::SET_TIME {
                match self.cur.varint() {
                    Ok(time) => {
                        self.last_time = time;
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            return Some(self.record(t, f));
        }
    }

    /// The record whose tag byte is `t` (already read), handed to `f`.
    #[inline(always)]
    fn record<R>(&mut self, t: u8, f: impl FnOnce(Record<'a>) -> R) -> Result<R, RecordError> {
        let v = t & tag::VALUE_MASK;
        Ok(match t & tag::CLASS_MASK {
            tag::START => {
                let (delta, name) = if !self.v2 || t & tag::START_ROOT_BIT != 0 {
                    let d = t & tag::START_DELTA_MASK;
                    let delta = if d == 0 { self.cur.u32()? } else { d as u32 };
                    (delta, self.cur.str_ref()?)
                } else if t & tag::START_REPEAT_BIT != 0 {
                    if self.last_delta == 0 {
                        return Err(self.no_start());
                    }
                    let x = t & tag::START_LOW_MASK;
                    let name = if x == tag::START_LOW_MASK {
                        self.cur.str_ref()?
                    } else {
                        StrRef::Id(x as u32)
                    };
                    (self.last_delta, name)
                } else {
                    let d = t & tag::START_LOW_MASK;
                    let delta = if d == 0 { self.cur.u32()? } else { d as u32 };
                    (delta, self.cur.str_ref()?)
                };
                let id = self.last_start.wrapping_add(delta);
                let parent = if t & tag::START_ROOT_BIT != 0 {
                    Parent::Root
                } else if self.v2 {
                    // The frame's most recent open start.
                    let id = self.open.top().ok_or_else(|| self.no_start())?;
                    Parent::Local { id, root: None }
                } else {
                    Parent::Local {
                        id: self.last_start,
                        root: None,
                    }
                };
                let time = {
                    let dt = self.cur.varint()?;
                    self.time(dt)?
                };
                self.started(id, delta);
                f(Record::Start(Start {
                    id,
                    parent,
                    follows_from: false,
                    debug: false,
                    name,
                    time,
                }))
            }
            tag::END if self.v2 => {
                let span = self.open.pop().ok_or_else(|| self.no_start())?;
                let low = (t & tag::END_DT_MASK) as u64;
                let dt = if t & tag::END_HIGH_BIT == 0 {
                    low
                } else {
                    self.cur
                        .varint()?
                        .checked_mul(1 << tag::END_DT_BITS)
                        .ok_or_else(|| self.cur.bad())?
                        | low
                };
                f(Record::End {
                    span,
                    time: self.time(dt)?,
                    losses: Losses::default(),
                })
            }
            tag::END => {
                let back = if v == 63 {
                    self.cur.varint()?
                } else {
                    v as u64
                };
                let span = self.back(back)?;
                let dt = self.cur.varint()?;
                f(Record::End {
                    span,
                    time: self.time(dt)?,
                    losses: Losses::default(),
                })
            }
            tag::TAG if self.v2 => {
                let k = v & tag::TAG_KEY_MASK;
                let key = if k == tag::TAG_KEY_MASK {
                    self.cur.str_ref()?
                } else {
                    StrRef::Id(k as u32)
                };
                let value = self.cur.value(v >> tag::TAG_TYPE_SHIFT)?;
                f(Record::Tag {
                    span: self.subject,
                    key,
                    value,
                })
            }
            tag::TAG => {
                let (key, value) = self.cur.field(v)?;
                f(Record::Tag {
                    span: self.subject,
                    key,
                    value,
                })
            }
            _ => return self.ext(v, f),
        })
    }

    /// An extended record (other than a time reset, read by `next_record`).
    fn ext<R>(&mut self, kind: u8, f: impl FnOnce(Record<'a>) -> R) -> Result<R, RecordError> {
        let c = &mut self.cur;
        Ok(match kind {
            ext::HELLO => {
                let (mut hello, rest) = postcard::take_from_bytes::<Hello<'a>>(&c.buf[c.at..])
                    .map_err(|_| RecordError::Hello { offset: c.offset })?;
                if hello.ticks_per_second == 0 {
                    return Err(RecordError::NoClockRate { offset: c.offset });
                }
                c.at = c.buf.len() - rest.len();
                if self.v2 {
                    hello.time_shift = match c.varint()? {
                        s @ 0..=31 => s as u8,
                        _ => return Err(RecordError::Hello { offset: c.offset }),
                    };
                }
                f(Record::Hello(hello))
            }
            // Kind 14 is version 2's: a version 1 frame meeting it is abandoned.
            kind @ (ext::NAME | ext::NAME_CUT) if kind == ext::NAME || self.v2 => {
                let id = c.u32()?;
                let len = c.len()?;
                let name = c.text(len)?;
                f(Record::Name {
                    id,
                    name,
                    cut: kind == ext::NAME_CUT,
                })
            }
            ext::START => {
                let delta = c.u32()?;
                let flags = c.u8()?;
                let id = self.last_start.wrapping_add(delta);
                let parent = if flags & start_flags::ROOT != 0 {
                    Parent::Root
                } else {
                    let p = id.wrapping_sub(c.u32()?);
                    let root = if flags & start_flags::ROOT_EXPLICIT != 0 {
                        Some(id.wrapping_sub(c.u32()?))
                    } else {
                        None
                    };
                    Parent::Local { id: p, root }
                };
                let name = c.str_ref()?;
                let dt = c.varint()?;
                let time = self.time(dt)?;
                self.started(id, delta);
                f(Record::Start(Start {
                    id,
                    parent,
                    follows_from: flags & start_flags::FOLLOWS_FROM != 0,
                    debug: flags & start_flags::DEBUG != 0,
                    name,
                    time,
                }))
            }
            ext::START_REMOTE => {
                let delta = c.u32()?;
                let flags = c.u8()?;
                let id = self.last_start.wrapping_add(delta);
                let trace = TraceId(u128::from_le_bytes(c.array()?));
                let span = if flags & start_flags::PARENT_LOST != 0 {
                    None
                } else {
                    Some(SpanId(u64::from_le_bytes(c.array()?)))
                };
                let parent = match span {
                    Some(span) if flags & start_flags::LOCAL_PARENT != 0 => {
                        Parent::LocalInTrace { trace, span }
                    }
                    _ => Parent::Remote { trace, span },
                };
                let name = c.str_ref()?;
                let dt = c.varint()?;
                let time = self.time(dt)?;
                self.started(id, delta);
                f(Record::Start(Start {
                    id,
                    parent,
                    follows_from: flags & start_flags::FOLLOWS_FROM != 0,
                    debug: flags & start_flags::DEBUG != 0,
                    name,
                    time,
                }))
            }
            ext::END_LOSSES => {
                let back = c.varint()?;
                let dt = c.varint()?;
                let mut l = [0u8; 4];
                for x in &mut l {
                    *x = c.varint()?.min(255) as u8;
                }
                let span = self.back(back)?;
                let time = self.time(dt)?;
                self.ended(span);
                let losses = Losses {
                    tags_over_capacity: l[0],
                    fields_over_capacity: l[1],
                    strings_truncated: l[2],
                    records_dropped: l[3],
                };
                f(Record::End { span, time, losses })
            }
            ext::TAG_ON => {
                let back = c.varint()?;
                let t = c.u8()?;
                let (key, value) = c.field(t)?;
                let span = self.back(back)?;
                self.subject = span;
                f(Record::Tag { span, key, value })
            }
            ext::LOG => {
                let back = c.varint()?;
                let dt = c.varint()?;
                let count = c.u32()?;
                let start = c.at;
                for _ in 0..count {
                    let t = c.u8()?;
                    c.field(t)?;
                }
                let fields = Fields {
                    bytes: &c.buf[start..c.at],
                    count,
                };
                let span = self.back(back)?;
                let time = self.time(dt)?;
                self.subject = span;
                f(Record::Log { span, time, fields })
            }
            // Kind 13 is version 2's, as kind 12 is: a version 1 frame meeting it is abandoned.
            kind @ (ext::BAGGAGE | ext::BAGGAGE_CARRIED) if kind == ext::BAGGAGE || self.v2 => {
                let back = c.varint()?;
                let key = match c.str_ref()? {
                    StrRef::Inline(s) => s,
                    StrRef::Id(_) => return Err(c.bad()),
                };
                let value = match c.str_ref()? {
                    StrRef::Inline(s) => s,
                    StrRef::Id(_) => return Err(c.bad()),
                };
                let span = self.back(back)?;
                self.subject = span;
                f(Record::Baggage {
                    span,
                    key,
                    value,
                    carried: kind == ext::BAGGAGE_CARRIED,
                })
            }
            ext::REF => {
                let back = c.varint()?;
                let kind = match c.u8()? {
                    0 => RefKind::ChildOf,
                    1 => RefKind::FollowsFrom,
                    byte => {
                        return Err(RecordError::UnknownKind {
                            offset: c.offset,
                            byte,
                        })
                    }
                };
                let trace = TraceId(u128::from_le_bytes(c.array()?));
                let target = SpanId(u64::from_le_bytes(c.array()?));
                let span = self.back(back)?;
                self.subject = span;
                f(Record::Reference {
                    span,
                    kind,
                    trace,
                    target,
                })
            }
            ext::END if self.v2 => {
                let back = c.varint()?;
                let dt = c.varint()?;
                let span = self.back(back)?;
                self.ended(span);
                f(Record::End {
                    span,
                    time: self.time(dt)?,
                    losses: Losses::default(),
                })
            }
            ext::DROPS => f(Record::Drops { total: c.u32()? }),
            ext::WALL_CLOCK => {
                let ticks = c.varint()?;
                let unix_nanos = c.varint()?;
                f(Record::WallClock(WallClock { ticks, unix_nanos }))
            }
            byte => {
                return Err(RecordError::UnknownKind {
                    offset: c.offset,
                    byte: tag::EXT | byte,
                })
            }
        })
    }
}

impl<'a> Iterator for RecordDecoder<'a> {
    type Item = Result<Record<'a>, RecordError>;

    // Always in line, with `next_record`: a record returned through memory is copied again.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|r| r)
    }
}

/// A cursor over a frame body.
struct Cur<'a> {
    buf: &'a [u8],
    at: usize,
    /// Where the current record began (for error messages).
    offset: usize,
}

impl<'a> Cur<'a> {
    fn truncated(&self) -> RecordError {
        RecordError::Truncated {
            offset: self.offset,
        }
    }
    fn bad(&self) -> RecordError {
        RecordError::BadNumber {
            offset: self.offset,
        }
    }
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, RecordError> {
        let b = *self.buf.get(self.at).ok_or(self.truncated())?;
        self.at += 1;
        Ok(b)
    }
    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let s = self.buf.get(self.at..self.at + N).ok_or(self.truncated())?;
        self.at += N;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    /// A varint. One- and two-byte varints (most deltas, lengths and ids) are read in line; the
    /// general decoder takes the rest, with the same results.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, RecordError> {
        if let Some(&b0) = self.buf.get(self.at) {
            if b0 & 0x80 == 0 {
                self.at += 1;
                return Ok(b0 as u64);
            }
            if let Some(&b1) = self.buf.get(self.at + 1) {
                if b1 & 0x80 == 0 {
                    self.at += 2;
                    return Ok((b0 & 0x7F) as u64 | (b1 as u64) << 7);
                }
            }
        }
        self.varint_long()
    }

    /// A varint of any length (or why there is none).
    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, RecordError> {
        let rest = &self.buf[self.at.min(self.buf.len())..];
        match varint::decode_u64(rest) {
            Some((v, n)) => {
                self.at += n;
                Ok(v)
            }
            // Running out of bytes inside a varint is truncation; anything else is malformed.
            None if rest.len() < varint::MAX_U64 && rest.iter().all(|b| b & 0x80 != 0) => {
                Err(self.truncated())
            }
            None => Err(self.bad()),
        }
    }
    #[inline(always)]
    fn u32(&mut self) -> Result<u32, RecordError> {
        u32::try_from(self.varint()?).map_err(|_| self.bad())
    }
    fn len(&mut self) -> Result<usize, RecordError> {
        let n = self.varint()?;
        if n > (self.buf.len() - self.at) as u64 {
            return Err(self.truncated());
        }
        Ok(n as usize)
    }
    #[inline(always)]
    fn text(&mut self, len: usize) -> Result<&'a str, RecordError> {
        let b = self
            .buf
            .get(self.at..self.at + len)
            .ok_or(self.truncated())?;
        self.at += len;
        core::str::from_utf8(b).map_err(|_| RecordError::Utf8 {
            offset: self.offset,
        })
    }
    // In line, as the other small readers: a result returned through memory and copied by the
    // caller stalls on store forwarding.
    #[inline(always)]
    fn str_ref(&mut self) -> Result<StrRef<'a>, RecordError> {
        let n = self.varint()?;
        if n & 1 == 0 {
            Ok(StrRef::Id(u32::try_from(n >> 1).map_err(|_| self.bad())?))
        } else {
            let len = n >> 1;
            if len > (self.buf.len() - self.at) as u64 {
                return Err(self.truncated());
            }
            Ok(StrRef::Inline(self.text(len as usize)?))
        }
    }
    #[inline(always)]
    fn field(&mut self, t: u8) -> Result<(StrRef<'a>, WireValue<'a>), RecordError> {
        let key = self.str_ref()?;
        Ok((key, self.value(t)?))
    }
    #[inline(always)]
    fn value(&mut self, t: u8) -> Result<WireValue<'a>, RecordError> {
        let value = match t {
            vtype::FALSE => WireValue::Bool(false),
            vtype::TRUE => WireValue::Bool(true),
            vtype::I64 => WireValue::I64(varint::unzigzag(self.varint()?)),
            vtype::U64 => WireValue::U64(self.varint()?),
            vtype::F64 => WireValue::F64(f64::from_le_bytes(self.array()?)),
            vtype::STR => WireValue::Str(self.str_ref()?),
            byte => {
                return Err(RecordError::UnknownKind {
                    offset: self.offset,
                    byte,
                })
            }
        };
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cobs_decode_in_place` against the `cobs` crate: the same verdict, length and bytes on
    /// random frames, with and without zeros, valid COBS or not.
    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn cobs_decoding_matches_the_cobs_crate() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut raw = [0u8; 300];
            for b in &mut raw[..len] {
                let r = next();
                // Mostly small codes and some zeros, so short and long blocks both occur.
                *b = match round % 4 {
                    0 => r as u8,
                    1 => (r % 8) as u8,
                    2 => 1 + (r % 255) as u8,
                    _ => 0xF0 | (r % 16) as u8,
                };
            }
            let mut encoded = [0u8; 400];
            let valid = round % 3 == 0;
            let input: &mut [u8] = if valid {
                let n = cobs::encode(&raw[..len], &mut encoded);
                &mut encoded[..n]
            } else {
                &mut raw[..len]
            };
            let mut a = [0u8; 400];
            let mut b = [0u8; 400];
            a[..input.len()].copy_from_slice(input);
            b[..input.len()].copy_from_slice(input);
            let n = input.len();
            let ours = cobs_decode_in_place(&mut a[..n]);
            let theirs = cobs::decode_in_place(&mut b[..n]).ok();
            assert_eq!(ours, theirs, "round {round}: {:?}", &b[..n]);
            if let Some(m) = ours {
                assert_eq!(a[..m], b[..m], "round {round}");
            }
        }
    }

    /// The in-line varint paths give what the general decoder gives (value, bytes consumed or
    /// error) on every one- and two-byte prefix, followed by a byte or not.
    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn fast_varints_match_the_general_decoder() {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                for buf in [&[b0][..], &[b0, b1], &[b0, b1, 0x01], &[b0, b1, 0x80]] {
                    let mut fast = Cur {
                        buf,
                        at: 0,
                        offset: 0,
                    };
                    let mut long = Cur {
                        buf,
                        at: 0,
                        offset: 0,
                    };
                    assert_eq!(fast.varint(), long.varint_long(), "{buf:?}");
                    assert_eq!(fast.at, long.at, "{buf:?}");
                }
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn find_zero_finds_the_first_zero() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let mut b = [0u8; 40];
            for (i, v) in b.iter_mut().enumerate().take(len) {
                // Few zeros, and bytes (0x80, 0x01) that fool a careless zero-byte test.
                *v = match (x >> (i % 60)) % 23 {
                    0 => 0,
                    1 => 0x80,
                    2 => 0x01,
                    r => (r as u8).wrapping_mul(11) | 1,
                };
            }
            let b = &b[..len];
            assert_eq!(
                find_zero(b),
                b.iter().position(|&v| v == 0),
                "round {round}: {b:?}"
            );
        }
    }

    #[test]
    fn the_check_crc_is_the_frame_crc() {
        let data: [u8; 300] = core::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(7));
        // Every length natively; every 13th under Miri, which interprets every step.
        let step = if cfg!(miri) { 13 } else { 1 };
        for len in (0..data.len()).step_by(step) {
            for start in [0, 1, 3] {
                let d = &data[start.min(len)..len];
                assert_eq!(
                    CHECK_CRC.checksum(d),
                    super::super::CRC.checksum(d),
                    "{len}"
                );
            }
        }
    }

    /// `clear` forgets a partial frame (and an over-long one being skipped), so the next bytes
    /// start a frame of their own.
    #[test]
    fn clear_forgets_the_partial_frame() {
        let mut acc: Accumulator<8> = Accumulator::new();
        assert_eq!(acc.feed(&[1, 2, 3]).0.map(|r| r.is_ok()), None);
        assert_eq!(acc.clear(), 3);
        assert_eq!((acc.buffered(), acc.discarded()), (0, 0));
        // Over-long: its bytes are counted as discarded already; clear forgets the state.
        let _ = acc.feed(&[1; 9]);
        assert_eq!(acc.discarded(), 9);
        assert_eq!(acc.clear(), 0);
        // A delimiter right after is an empty frame, not the over-long frame's error.
        assert!(acc.feed(&[0]).0.is_none());
    }
}
