//! Inject a span's context into a message and extract it on the other side.
//!
//! A [`SpanContext`] (trace id, span id, sampling flags) and the span's [`Baggage`] cross a
//! process or device boundary in a *carrier*. Three formats, no allocation, no panics on any input:
//!
//! | module | carrier | for |
//! |---|---|---|
//! | [`binary`] | a byte slice: version, ids, flags, length-prefixed baggage (`docs/propagation.md`) | device-to-device links (UART, CAN, radio) |
//! | [`w3c`] | `traceparent`, `tracestate`, `baggage` text headers | HTTP, MQTT 5 user properties, OpenTelemetry backends |
//! | [`jaeger`] | `uber-trace-id`, `uberctx-{key}` text headers | Jaeger clients (OpenTracing) |
//!
//! Injecting writes into a byte slice (binary) or a [`core::fmt::Write`] (text; [`SliceWriter`]
//! makes a byte slice one), or calls a `set(name, value)` closure once per header. Extracting
//! reads a byte slice, a `&str` header value, a header-lookup closure
//! (`Fn(&str) -> Option<&str>`) or an iterator of `(name, value)` pairs, and returns an
//! [`Extracted`] context with its baggage — or an [`ExtractError`] that says whether no context
//! was present ([`ExtractError::NotFound`]: start a new trace) or one was present but invalid
//! ([`ExtractError::Corrupted`]: worth a log line), like OpenTracing's `ErrSpanContextNotFound` and
//! `ErrSpanContextCorrupted`.
//!
//! ```
//! use microspan::propagation::{binary, Extracted};
//! # use microspan::{Baggage, Clock, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
//! # static RING_A: Ring<256> = Ring::new();
//! # static RING_B: Ring<256> = Ring::new();
//! # static NODE: Tracer = Tracer::new(&RING_A, &Ticks, &Session::new("sensor-node"));
//! # static GATEWAY: Tracer = Tracer::new(&RING_B, &Ticks, &Session::new("gateway").device_id(2));
//! // Device A: send a reading with the span's context in front of it.
//! let mut send = NODE.span("send reading").with_baggage(Baggage::<2>::new()).start();
//! send.set_baggage("site", "north-7");
//! let mut msg = [0u8; 64];
//! let n = binary::inject(&send.context(), send.baggage(), &mut msg).unwrap();
//!
//! // Device B: continue the trace.
//! let ex: Extracted<2> = binary::extract(&msg[..n]).unwrap();
//! let handle = GATEWAY.span("handle reading").extracted(ex).start();
//! assert_eq!(handle.context().trace_id, send.context().trace_id);
//! assert_eq!(handle.baggage_item("site"), Some("north-7"));
//! ```

pub mod binary;
pub mod jaeger;
pub mod w3c;

use core::fmt;

use crate::clock::Clock;
use crate::config::MAX_BAGGAGE_VALUE_LEN;
use crate::context::SpanContext;
use crate::tracer::{Baggage, SpanBuilder};

/// Why no context was extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ExtractError {
    /// The carrier holds no context (OpenTracing's `ErrSpanContextNotFound`): start a new trace.
    NotFound,
    /// The carrier holds a context that cannot be read (OpenTracing's `ErrSpanContextCorrupted`):
    /// the reason says what was wrong.
    Corrupted(&'static str),
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::NotFound => f.write_str("no span context in the carrier"),
            ExtractError::Corrupted(why) => write!(f, "corrupted span context: {why}"),
        }
    }
}

/// `?` turns it into a `Box<dyn Error>` or an `anyhow::Error` on the desktop (no source: the
/// reason is in the message).
impl core::error::Error for ExtractError {}

/// Why a context could not be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InjectError {
    /// The byte slice is too small; `needed` bytes would fit the context and its baggage.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The writer (a [`core::fmt::Write`] or the header closure) refused the text.
    Write,
    /// A value cannot be written in this format (e.g. an invalid `tracestate` key).
    Invalid(&'static str),
}

impl From<fmt::Error> for InjectError {
    fn from(_: fmt::Error) -> Self {
        InjectError::Write
    }
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectError::BufferTooSmall { needed } => {
                write!(f, "carrier too small: {needed} bytes needed")
            }
            InjectError::Write => f.write_str("the carrier refused the text"),
            InjectError::Invalid(why) => write!(f, "cannot inject: {why}"),
        }
    }
}

/// As [`ExtractError`]'s: usable with `?` into any boxed error.
impl core::error::Error for InjectError {}

/// A context extracted from a carrier, with its baggage (up to `B` items).
///
/// Start the span that continues the trace with [`SpanBuilder::extracted`]: the same as
/// `.child_of(&ex.context).with_baggage(ex.baggage)`, and it counts the baggage lost on
/// extraction ([`baggage_dropped`](Self::baggage_dropped)) on the new span.
///
/// Build one with [`Extracted::new`] (the struct is `#[non_exhaustive]`: fields may be added).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extracted<const B: usize> {
    /// Trace id, span id (the sender's span: the new span's parent) and flags.
    pub context: SpanContext,
    /// The baggage items that fit.
    pub baggage: Baggage<B>,
    /// Baggage items dropped: beyond `B`, malformed in the carrier, or with a key or value
    /// longer than its capacity ([`MAX_BAGGAGE_KEY_LEN`](crate::config::MAX_BAGGAGE_KEY_LEN),
    /// [`MAX_BAGGAGE_VALUE_LEN`]). An item is never cut: W3C Baggage forbids propagating a
    /// partial item, and a cut one would be injected on as if whole (see [`Baggage::set`]).
    /// [`SpanBuilder::extracted`] counts them on the new span.
    pub baggage_dropped: u16,
    /// Why a trace context that the carrier held was ignored: a corrupted W3C `traceparent`
    /// beside a `baggage` header. The baggage is still extracted (W3C Baggage does not depend on
    /// Trace Context, and OpenTelemetry's propagators read it alone), with a zero context, so the
    /// span [`SpanBuilder::extracted`] starts is a new root that carries it, as when there is no
    /// `traceparent`. `None` otherwise (a corrupted context without baggage is an `Err`).
    pub context_ignored: Option<ExtractError>,
    /// The [`jaeger-debug-id`](jaeger::JAEGER_DEBUG_ID) of a carrier without `uber-trace-id`
    /// (empty otherwise): a request that asks to be traced, e.g.
    /// `curl -H 'jaeger-debug-id: some-correlation-id'`. The context is then zero with the sampled
    /// and debug flags, and [`SpanBuilder::extracted`] starts a root that is sampled whatever the
    /// sampler says, marked debug, and tagged `jaeger-debug-id=<the id>`, so that the trace is
    /// found by that tag in the Jaeger UI, as the Jaeger clients do. Kept up to
    /// [`MAX_STR_LEN`](crate::config::MAX_STR_LEN) bytes (a tag's dynamic string); a longer id
    /// is cut ([`debug_id_cut`](Self::debug_id_cut)) and counted on the span.
    pub debug_id: DebugId,
    /// `true` when the debug id was longer than [`DebugId`] holds, and was cut.
    pub debug_id_cut: bool,
}

/// A `jaeger-debug-id` value ([`Extracted::debug_id`]).
pub type DebugId = heapless::String<{ crate::config::MAX_STR_LEN }>;

/// Nothing extracted: a zero context, which [`SpanBuilder::extracted`] ignores, so the span it
/// starts is a new root. What a carrier without a context (or with a corrupted one) should lead
/// to:
///
/// ```
/// # use microspan::propagation::{w3c, Extracted};
/// # use microspan::{Ring, Session, Tracer, Clock};
/// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
/// # static RING: Ring<256> = Ring::new();
/// # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
/// let header: Option<&str> = None; // the request had no traceparent
/// let ex: Extracted<2> = w3c::extract(|_| header).unwrap_or_default();
/// let span = TRACER.span("handle").extracted(ex).start();
/// assert!(span.is_recording() && span.context().is_valid()); // a root of its own
/// ```
impl<const B: usize> Default for Extracted<B> {
    fn default() -> Self {
        Self::new(SpanContext::default())
    }
}

impl<const B: usize> Extracted<B> {
    /// A context without baggage.
    pub const fn new(context: SpanContext) -> Self {
        Self {
            context,
            baggage: Baggage::new(),
            baggage_dropped: 0,
            context_ignored: None,
            debug_id: DebugId::new(),
            debug_id_cut: false,
        }
    }

    /// Sets the debug id (white space around it trimmed), cut at a character boundary to what
    /// [`DebugId`] holds.
    fn set_debug_id(&mut self, id: &str) {
        let (id, cut) = crate::record::truncate(trim_ows(id), crate::config::MAX_STR_LEN);
        self.debug_id.clear();
        // Cannot fail: `id` was cut to the capacity.
        let _ = self.debug_id.push_str(id);
        self.debug_id_cut = cut;
    }

    /// Adds a baggage item; one that [`Baggage::set`] refuses (beyond `B`, an empty key, a key
    /// or value over its capacity) is dropped and counted in
    /// [`baggage_dropped`](Self::baggage_dropped).
    pub fn add_baggage(&mut self, key: &str, value: &str) {
        if !self.baggage.set(key, value) {
            self.note_dropped();
        }
    }

    fn note_dropped(&mut self) {
        self.baggage_dropped = self.baggage_dropped.saturating_add(1);
    }

    /// Adds an item whose value is percent-encoded (`%XX`; with `plus_is_space`, `+` is a space,
    /// as in a URL query); invalid UTF-8 after decoding becomes U+FFFD (as the W3C baggage
    /// specification requires). A malformed escape, or a decoded value longer than its capacity,
    /// drops the item.
    fn add_percent_encoded(&mut self, key: &str, encoded: &str, plus_is_space: bool) {
        let mut value: heapless::String<MAX_BAGGAGE_VALUE_LEN> = heapless::String::new();
        match percent_decode(encoded, &mut value, plus_is_space) {
            Ok(false) => self.add_baggage(key, &value),
            Ok(true) | Err(()) => self.note_dropped(),
        }
    }
}

impl<'a, const B: usize, C: ?Sized + Clock> SpanBuilder<'a, B, C> {
    /// Continues an extracted context: a ChildOf reference to the sender's span, and its baggage.
    /// The baggage items lost on extraction ([`Extracted::baggage_dropped`]) are counted on the
    /// new span ([`Losses::fields_over_capacity`](crate::tracer::Losses::fields_over_capacity)),
    /// so the decoder shows a Jaeger warning on it.
    ///
    /// A carrier with baggage but no context (a `baggage` header without `traceparent`, `uberctx-`
    /// headers without `uber-trace-id`) extracts to an invalid (zero) context with the items,
    /// which `child_of` ignores: the span starts a new trace that carries the baggage. A Jaeger
    /// carrier with a `jaeger-debug-id` and no `uber-trace-id` starts a new trace that is sampled
    /// and debug, its root tagged `jaeger-debug-id` ([`Extracted::debug_id`]).
    ///
    /// ```
    /// use microspan::propagation::{w3c, Extracted};
    /// # use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// # static RING: Ring<256> = Ring::new();
    /// # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("gateway"));
    /// let headers = [("baggage", "tenant=acme")];
    /// let ex: Extracted<2> = w3c::extract_from_headers(headers.iter().copied()).unwrap();
    /// assert!(!ex.context.is_valid());
    /// let span = TRACER.span("handle").extracted(ex).start();
    /// assert!(span.context().is_valid());
    /// assert_eq!(span.baggage_item("tenant"), Some("acme"));
    /// ```
    pub fn extracted<const B2: usize>(self, ex: Extracted<B2>) -> SpanBuilder<'a, B2, C> {
        let debug_request = !ex.context.is_valid() && ex.context.flags.is_debug();
        let b = self
            .child_of(&ex.context)
            .with_baggage(ex.baggage)
            .count_over_capacity(ex.baggage_dropped);
        if debug_request {
            b.debug_request(ex.debug_id, ex.debug_id_cut)
        } else {
            b
        }
    }
}

/// A [`core::fmt::Write`] into a byte slice (text carriers in a fixed-size message).
///
/// ```
/// use core::fmt::Write;
/// use microspan::propagation::{w3c, SliceWriter};
/// # use microspan::{SpanContext, TraceId, SpanId, Flags};
/// let ctx = SpanContext { trace_id: TraceId(1), span_id: SpanId(2), flags: Flags::SAMPLED };
/// let mut buf = [0u8; 64];
/// let mut w = SliceWriter::new(&mut buf);
/// write!(w, "{}", w3c::Traceparent(&ctx)).unwrap();
/// assert_eq!(w.as_str(), "00-00000000000000000000000000000001-0000000000000002-01");
/// ```
pub struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> SliceWriter<'b> {
    /// Writes from the start of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }
    /// `true` when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in (`write_str`), so the prefix is UTF-8.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes `s` percent-encoding every byte for which `keep` is false (and always `%`), as `%XX`
/// with upper-case hex digits.
#[derive(Clone, Copy)]
pub struct PercentEncoded<'s> {
    s: &'s str,
    keep: fn(u8) -> bool,
}

impl<'s> PercentEncoded<'s> {
    /// `s` encoded for a W3C `baggage` value: bytes outside `baggage-octet` escaped, and `%`
    /// and `+`. The specification allows a raw `+` and percent-decodes only, but some readers
    /// decode values as form data, a `+` becoming a space (OpenTelemetry Python's propagator):
    /// written `%2B`, every reader gets the `+` back.
    pub fn w3c(s: &'s str) -> Self {
        Self {
            s,
            keep: is_baggage_octet_but_plus,
        }
    }
    /// `s` encoded the way Jaeger clients encode `uberctx-` values in HTTP headers: everything but
    /// RFC 3986 unreserved characters escaped (`"value 1 / blah"` → `value%201%20%2F%20blah`).
    /// A space is written `%20` and a `+` `%2B`, so a receiver that reads `+` as a space (Go's
    /// `url.QueryUnescape`, Java's `URLDecoder`, [`jaeger`]'s extractors) reads both back.
    pub fn url(s: &'s str) -> Self {
        Self {
            s,
            keep: is_unreserved,
        }
    }
}

impl fmt::Display for PercentEncoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let bytes = self.s.as_bytes();
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b != b'%' && (self.keep)(b) {
                continue;
            }
            f.write_str(ascii(&bytes[run..i]))?;
            let esc = [b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]];
            f.write_str(core::str::from_utf8(&esc).map_err(|_| fmt::Error)?)?;
            run = i + 1;
        }
        f.write_str(ascii(&bytes[run..]))
    }
}

/// A run of kept bytes as text (every `keep` function keeps ASCII only, so the run is UTF-8).
fn ascii(run: &[u8]) -> &str {
    core::str::from_utf8(run).unwrap_or("")
}

/// W3C `baggage-octet`: `%x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`.
pub(crate) const fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// [`is_baggage_octet`] less `+` (see [`PercentEncoded::w3c`]).
const fn is_baggage_octet_but_plus(b: u8) -> bool {
    b != b'+' && is_baggage_octet(b)
}

/// RFC 3986 unreserved: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
pub(crate) const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 7230 `tchar` (a `token` is one or more).
pub(crate) const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `true` when `s` is an RFC 7230 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Optional white space (`SP / HTAB`) trimmed from both ends.
pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// The value of one hex digit (either case).
pub(crate) const fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses 1 to `max_digits` (≤ 32) hex digits; `lower_only` refuses upper-case digits.
pub(crate) fn parse_hex(s: &[u8], max_digits: usize, lower_only: bool) -> Option<u128> {
    if s.is_empty() || s.len() > max_digits || s.len() > 32 {
        return None;
    }
    let mut v: u128 = 0;
    for &b in s {
        if lower_only && b.is_ascii_uppercase() {
            return None;
        }
        v = (v << 4) | hex_digit(b)? as u128;
    }
    Some(v)
}

/// Percent-decodes `s` into `out` (cut at a character boundary when it does not fit; returns
/// `true` then). With `plus_is_space`, `+` decodes to a space (URL query encoding, Go's
/// `url.QueryUnescape`). Invalid UTF-8 after decoding becomes U+FFFD. `Err` for a `%` not
/// followed by two hex digits.
pub(crate) fn percent_decode<const N: usize>(
    s: &str,
    out: &mut heapless::String<N>,
    plus_is_space: bool,
) -> Result<bool, ()> {
    // Decoded bytes, a little beyond the capacity so a character cut by it is still seen whole.
    let mut bytes: heapless::Vec<u8, { MAX_BAGGAGE_VALUE_LEN + 8 }> = heapless::Vec::new();
    let mut cut = false;
    let src = s.as_bytes();
    let mut i = 0;
    while i < src.len() {
        let b = if src[i] == b'%' {
            let hi = src.get(i + 1).copied().and_then(hex_digit).ok_or(())?;
            let lo = src.get(i + 2).copied().and_then(hex_digit).ok_or(())?;
            i += 3;
            hi << 4 | lo
        } else if src[i] == b'+' && plus_is_space {
            i += 1;
            b' '
        } else {
            i += 1;
            src[i - 1]
        };
        if bytes.push(b).is_err() {
            cut = true;
            // Keep validating the rest (a malformed escape later still fails).
        }
    }
    if cut {
        // A character cut in two by the capacity is part of the truncation, not bad input.
        if let Err(e) = core::str::from_utf8(&bytes) {
            if e.error_len().is_none() {
                bytes.truncate(e.valid_up_to());
            }
        }
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if out.push(c).is_err() {
                return Ok(true);
            }
        }
        if !chunk.invalid().is_empty() && out.push('\u{FFFD}').is_err() {
            return Ok(true);
        }
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_examples() {
        // The Jaeger client documentation's example.
        assert_eq!(
            PercentEncoded::url("value 1 / blah").to_string(),
            "value%201%20%2F%20blah"
        );
        // A space and a literal `+` both escaped: read back where `+` means a space.
        assert_eq!(PercentEncoded::url("a b+c").to_string(), "a%20b%2Bc");
        // The W3C baggage specification's example.
        assert_eq!(PercentEncoded::w3c("DF 28").to_string(), "DF%2028");
        assert_eq!(PercentEncoded::w3c("a%b,c;d").to_string(), "a%25b%2Cc%3Bd");
        // A reader that decodes form data (`+` as a space) gets the `+` back too.
        assert_eq!(
            PercentEncoded::w3c("s 1/2+3%").to_string(),
            "s%201/2%2B3%25"
        );
        assert_eq!(PercentEncoded::w3c("é").to_string(), "%C3%A9");
    }

    #[test]
    fn percent_decoding() {
        let mut s: heapless::String<16> = heapless::String::new();
        assert_eq!(percent_decode("DF%2028", &mut s, false), Ok(false));
        assert_eq!(s, "DF 28");
        let mut s: heapless::String<16> = heapless::String::new();
        assert_eq!(percent_decode("%C3%A9%FF", &mut s, false), Ok(false));
        assert_eq!(s, "é\u{FFFD}");
        let mut s: heapless::String<16> = heapless::String::new();
        assert_eq!(percent_decode("bad%2", &mut s, false), Err(()));
        assert_eq!(percent_decode("bad%zz", &mut s, false), Err(()));
        let mut s: heapless::String<4> = heapless::String::new();
        assert_eq!(percent_decode("abcdef", &mut s, false), Ok(true));
        assert_eq!(s, "abcd");
        // `+` is a space only in URL query encoding (the Jaeger clients' `uberctx-` values).
        let mut s: heapless::String<16> = heapless::String::new();
        assert_eq!(percent_decode("a+b%2Bc", &mut s, false), Ok(false));
        assert_eq!(s, "a+b+c");
        let mut s: heapless::String<16> = heapless::String::new();
        assert_eq!(percent_decode("a+b%2Bc", &mut s, true), Ok(false));
        assert_eq!(s, "a b+c");
    }
}
