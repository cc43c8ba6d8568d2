//! Jaeger's native propagation: `uber-trace-id` and `uberctx-{key}` baggage headers, as the
//! Jaeger client libraries write them.
//!
//! - `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}`, hex. Written with a
//!   16-digit trace id when its high half is 0 (else 32), a 16-digit span id, parent `0` (the field
//!   is deprecated) and 2-digit flags; read with 1–32 / 1–16 / 1–16 / 1–2 digits of either case,
//!   and with `%3A` for `:` (a value URL-encoded by a proxy). Trace id or span id 0 is
//!   [`Corrupted`](super::ExtractError::Corrupted). Flags: bit 0 sampled, bit 1 debug (debug
//!   implies sampled), bit 3 firehose (passed on as the clients pass it; other bits dropped).
//!   Jaeger's Go client and OpenTelemetry Go's Jaeger propagator read the flags as *decimal*
//!   (`strconv.ParseUint(flags, 10, 8)`) although the Go client writes them in hex: the values
//!   written here, `00`–`03`, `08` and `09`, read the same either way; only firehose with debug
//!   (`0a`, `0b`, which the Go client cannot read back from itself either) fails there.
//! - `uberctx-{key}: {value}`, one header per item, the value URL-encoded (the clients'
//!   `HTTP_HEADERS` format: `value 1 / blah` → `value%201%20%2F%20blah`; `+` → `%2B`) and decoded
//!   on extraction as the clients decode it (Go's `url.QueryUnescape`): `%XX` escapes, and `+`
//!   is a space. The key is the header name after the prefix, lower-cased on extraction (as the
//!   clients do: HTTP does not keep the case of header names, Go's `net/http` sends
//!   `Uberctx-User-Id`), so a key with upper-case letters arrives lower-cased. Only keys that
//!   can be a header name (RFC 7230 tokens) are injected: [`inject`] skips and counts the
//!   others, and the extractors drop and count them.
//!
//! ```
//! use microspan::propagation::{jaeger, Extracted};
//! let headers = [
//!     ("Uber-Trace-Id", "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1"),
//!     ("uberctx-key1", "value%201%20%2F%20blah"),
//!     ("Uberctx-User-Name", "John+Smith"),
//! ];
//! let ex: Extracted<2> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
//! assert_eq!(ex.context.span_id.0, 0xe457b5a2e4d86bd1);
//! assert_eq!(ex.baggage.get("key1"), Some("value 1 / blah"));
//! assert_eq!(ex.baggage.get("user-name"), Some("John Smith"));
//! ```

use core::fmt;

use super::{
    hex_digit, is_token, parse_hex, trim_ows, ExtractError, Extracted, InjectError, PercentEncoded,
};
use crate::config::MAX_BAGGAGE_KEY_LEN;
use crate::context::{Flags, SpanContext, SpanId, TraceId};
use crate::tracer::Baggage;

/// The header name `uber-trace-id`.
pub const UBER_TRACE_ID: &str = "uber-trace-id";
/// The prefix of baggage header names, `uberctx-`.
pub const BAGGAGE_PREFIX: &str = "uberctx-";
/// The header of ad-hoc baggage, `jaeger-baggage: k1=v1, k2=v2`: Jaeger clients read it to give
/// a request baggage before any trace exists (from `curl`, a test client).
pub const JAEGER_BAGGAGE: &str = "jaeger-baggage";
/// The header of a request that asks to be traced, `jaeger-debug-id: {id}` (e.g. from `curl`);
/// also the key of the tag that carries the id on the root it starts (see
/// [`Extracted::debug_id`]).
pub const JAEGER_DEBUG_ID: &str = "jaeger-debug-id";

/// Displays a context as an `uber-trace-id` value.
#[derive(Clone, Copy)]
pub struct UberTraceId<'c>(pub &'c SpanContext);

impl fmt::Display for UberTraceId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.trace_id.high() == 0 {
            write!(f, "{:016x}", c.trace_id.low())?;
        } else {
            write!(f, "{:032x}", c.trace_id.0)?;
        }
        write!(
            f,
            ":{:016x}:0:{:02x}",
            c.span_id.0,
            c.flags.0 & Flags::CARRIED
        )
    }
}

/// Displays a baggage header name, `uberctx-{key}`.
#[derive(Clone, Copy)]
pub struct BaggageName<'k>(pub &'k str);

impl fmt::Display for BaggageName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BAGGAGE_PREFIX}{}", self.0)
    }
}

/// Writes the `uber-trace-id` value of `ctx`.
pub fn write_uber_trace_id(ctx: &SpanContext, w: &mut impl fmt::Write) -> fmt::Result {
    write!(w, "{}", UberTraceId(ctx))
}

/// Injects `uber-trace-id` and one `uberctx-{key}` header per baggage item: `set(name, value)` is
/// called once per header.
///
/// Returns the number of baggage items not written because their key cannot be part of a header
/// name (not an RFC 7230 token: a space, `/`, `:`, a line break…): 0 when everything was written.
/// Such items are set locally (`set_baggage` takes any key) or come from the binary carrier,
/// which carries any key: keep baggage keys to tokens, or check this count.
pub fn inject<const B: usize>(
    ctx: &SpanContext,
    baggage: &Baggage<B>,
    mut set: impl FnMut(&dyn fmt::Display, &dyn fmt::Display) -> fmt::Result,
) -> Result<usize, InjectError> {
    set(&UBER_TRACE_ID, &UberTraceId(ctx))?;
    let mut result = Ok(());
    let mut skipped = 0;
    baggage.for_each(|k, v| {
        if !is_token(k) {
            skipped += 1;
            return true;
        }
        result = set(&BaggageName(k), &PercentEncoded::url(v));
        result.is_ok()
    });
    result?;
    Ok(skipped)
}

/// Parses an `uber-trace-id` value (`:` or `%3A` between the fields).
pub fn parse_uber_trace_id(value: &str) -> Result<SpanContext, ExtractError> {
    use ExtractError::Corrupted;
    let mut rest = trim_ows(value).as_bytes();
    let mut fields: [&[u8]; 4] = [&[]; 4];
    for (i, field) in fields.iter_mut().enumerate() {
        let (f, tail) = split_field(rest);
        *field = f;
        match (i, tail) {
            (3, None) => {}
            (3, Some(_)) => return Err(Corrupted("uber-trace-id has more than 4 fields")),
            (_, Some(t)) => rest = t,
            (_, None) => return Err(Corrupted("uber-trace-id has fewer than 4 fields")),
        }
    }
    let trace = parse_hex(fields[0], 32, false)
        .ok_or(Corrupted("uber-trace-id trace id is not 1-32 hex digits"))?;
    let span = parse_hex(fields[1], 16, false)
        .ok_or(Corrupted("uber-trace-id span id is not 1-16 hex digits"))?;
    parse_hex(fields[2], 16, false)
        .ok_or(Corrupted("uber-trace-id parent id is not 1-16 hex digits"))?;
    let flags = parse_hex(fields[3], 2, false)
        .ok_or(Corrupted("uber-trace-id flags are not 1-2 hex digits"))?;
    if trace == 0 {
        return Err(Corrupted("uber-trace-id trace id is 0"));
    }
    if span == 0 {
        return Err(Corrupted("uber-trace-id span id is 0"));
    }
    let mut flags = Flags(flags as u8 & Flags::CARRIED);
    if flags.is_debug() {
        flags = flags.union(Flags::SAMPLED);
    }
    Ok(SpanContext {
        trace_id: TraceId(trace),
        span_id: SpanId(span as u64),
        flags,
    })
}

/// The bytes up to the next `:` or `%3A`, and what follows the separator (`None`: no separator).
fn split_field(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b':' {
            return (&s[..i], Some(&s[i + 1..]));
        }
        if s[i] == b'%'
            && s.get(i + 1) == Some(&b'3')
            && s.get(i + 2).copied().and_then(hex_digit) == Some(0xA)
        {
            return (&s[..i], Some(&s[i + 3..]));
        }
        i += 1;
    }
    (s, None)
}

/// Extracts the context through a header lookup, with the items of a [`JAEGER_BAGGAGE`] header
/// and, without `uber-trace-id`, a [`JAEGER_DEBUG_ID`] (a lookup cannot list the `uberctx-`
/// headers; use [`extract_from_headers`] for them).
pub fn extract<'a, const B: usize>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<Extracted<B>, ExtractError> {
    let ad_hoc = get(JAEGER_BAGGAGE).filter(|v| has_members(v));
    let mut ex = start(get(UBER_TRACE_ID), get(JAEGER_DEBUG_ID), ad_hoc.is_some())?;
    if let Some(value) = ad_hoc {
        add_ad_hoc(&mut ex, value);
    }
    Ok(ex)
}

/// The extraction's context: an `uber-trace-id`'s; without one, a debug request's (zero ids,
/// sampled and debug, with its id) or, with baggage, the zero context (a root carrying it), as
/// the Jaeger clients' extractors give them; else `NotFound`.
fn start<const B: usize>(
    uber_trace_id: Option<&str>,
    debug_id: Option<&str>,
    baggage: bool,
) -> Result<Extracted<B>, ExtractError> {
    let debug_id = debug_id.filter(|d| !trim_ows(d).is_empty());
    match (uber_trace_id, debug_id) {
        (Some(value), _) => Ok(Extracted::new(parse_uber_trace_id(value)?)),
        (None, Some(id)) => {
            let mut ex = Extracted::new(SpanContext {
                flags: Flags::SAMPLED.union(Flags::DEBUG),
                ..SpanContext::default()
            });
            ex.set_debug_id(id);
            Ok(ex)
        }
        // Baggage before any trace: a context that is not valid, which `SpanBuilder::extracted`
        // ignores, so the span it starts is a root carrying the baggage (as Jaeger clients start
        // one).
        (None, None) if baggage => Ok(Extracted::new(SpanContext::default())),
        (None, None) => Err(ExtractError::NotFound),
    }
}

/// Extracts the context and every `uberctx-` baggage item from `(name, value)` header pairs
/// (names match case-insensitively; keys are lower-cased; `+` in a value is a space), and the
/// items of a [`JAEGER_BAGGAGE`] header (the same rules, keys kept as sent). With baggage
/// (either kind of header) and no `uber-trace-id`, the context is not valid (zero), as with the
/// Jaeger clients: [`SpanBuilder::extracted`](crate::SpanBuilder::extracted) then starts a root
/// that carries the baggage. A [`JAEGER_DEBUG_ID`] without `uber-trace-id` asks for a trace: the
/// zero context, sampled and debug, with the id in [`Extracted::debug_id`] (ignored beside an
/// `uber-trace-id`, as the clients ignore it). An item
/// whose key is not a token or is longer than [`MAX_BAGGAGE_KEY_LEN`], or whose value has a
/// malformed `%` escape or is longer than
/// [`MAX_BAGGAGE_VALUE_LEN`](crate::config::MAX_BAGGAGE_VALUE_LEN), is dropped and counted in
/// [`Extracted::baggage_dropped`].
pub fn extract_from_headers<'a, const B: usize>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Result<Extracted<B>, ExtractError> {
    let mut id = None;
    let mut debug_id = None;
    let mut baggage = false;
    for (name, value) in headers.clone() {
        if name.eq_ignore_ascii_case(UBER_TRACE_ID) {
            if id.is_some() {
                return Err(ExtractError::Corrupted(
                    "more than one uber-trace-id header",
                ));
            }
            id = Some(value);
        } else if name.eq_ignore_ascii_case(JAEGER_DEBUG_ID) {
            debug_id = Some(value);
        } else if (name.eq_ignore_ascii_case(JAEGER_BAGGAGE) && has_members(value))
            || is_baggage_header(name)
        {
            baggage = true;
        }
    }
    let mut ex = start(id, debug_id, baggage)?;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(JAEGER_BAGGAGE) {
            add_ad_hoc(&mut ex, value);
            continue;
        }
        if !is_baggage_header(name) {
            continue;
        }
        let Some(key) = lower_case_key(&name[BAGGAGE_PREFIX.len()..]) else {
            ex.note_dropped();
            continue;
        };
        ex.add_percent_encoded(&key, trim_ows(value), true);
    }
    Ok(ex)
}

/// `true` when a `jaeger-baggage` value has a member: an empty one (or only separators and white
/// space) is no baggage, so that alone it is `NotFound`, as an empty W3C `baggage` is.
fn has_members(value: &str) -> bool {
    value.split(',').any(|m| !trim_ows(m).is_empty())
}

/// `true` for a `uberctx-{key}` header name (any case).
fn is_baggage_header(name: &str) -> bool {
    name.get(..BAGGAGE_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(BAGGAGE_PREFIX))
}

/// The items of a `jaeger-baggage` value: `key=value` members separated by `,`, white space
/// around them trimmed, values percent-decoded with `+` as a space (as the Go client's
/// `url.QueryUnescape`), keys kept as sent (the Go client keeps them: only `uberctx-` keys,
/// which come from header names, are lower-cased); a member without exactly one `=`, or whose key
/// is not a token, is dropped and counted.
fn add_ad_hoc<const B: usize>(ex: &mut Extracted<B>, value: &str) {
    for member in value.split(',').map(trim_ows).filter(|m| !m.is_empty()) {
        let item = member
            .split_once('=')
            .filter(|(key, value)| !value.contains('=') && is_token(trim_ows(key)))
            .map(|(key, value)| (trim_ows(key), value));
        match item {
            Some((key, value)) => ex.add_percent_encoded(key, trim_ows(value), true),
            None => ex.note_dropped(),
        }
    }
}

/// A baggage key from a header name, lower-cased (as the Jaeger clients read it: Go's
/// `strings.ToLower`, Java's `toLowerCase`); `None` when it is not a token (empty included) or
/// is longer than the capacity.
///
/// `#[inline]`, so that it is compiled only into a firmware that extracts Jaeger headers. Without
/// it, compiled into the crate itself (as a function that is not generic is), it changed how a
/// firmware that never calls it inlined its record path under LTO (`insn-probe`: `child0` +3
/// instructions on the Cortex-M3).
#[inline]
fn lower_case_key(key: &str) -> Option<heapless::String<MAX_BAGGAGE_KEY_LEN>> {
    if !is_token(key) {
        return None;
    }
    let mut out = heapless::String::new();
    // A token is ASCII, so lower-casing it keeps its length.
    out.push_str(key).ok()?;
    out.make_ascii_lowercase();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        // OpenTelemetry's Jaeger propagator tests, built from the Jaeger client documentation.
        let c =
            parse_uber_trace_id("80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1").unwrap();
        assert_eq!(c.trace_id.0, 0x80f198ee56343ba864fe8b2a57d3eff7);
        assert_eq!(c.span_id.0, 0xe457b5a2e4d86bd1);
        assert_eq!(c.flags, Flags::SAMPLED);
        // A 64-bit trace id, 0-padded on the left.
        let c =
            parse_uber_trace_id("000000000000000064fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1").unwrap();
        assert_eq!(c.trace_id.0, 0x64fe8b2a57d3eff7);
        assert_eq!(
            UberTraceId(&c).to_string(),
            "64fe8b2a57d3eff7:e457b5a2e4d86bd1:0:01"
        );
        // Shorter ids (receivers MUST accept them), a parent id, one-digit flags, debug.
        let c =
            parse_uber_trace_id("51729f13a64c2ef3:258169797d519815:51729f13a64c2ef3:1").unwrap();
        assert_eq!(c.trace_id.0, 0x51729f13a64c2ef3);
        let c = parse_uber_trace_id("deadbeef:beef:0:3").unwrap();
        assert_eq!((c.trace_id.0, c.span_id.0), (0xdeadbeef, 0xbeef));
        assert!(c.flags.is_debug() && c.flags.is_sampled());
        // Debug alone implies sampled.
        assert!(parse_uber_trace_id("1:1:0:2").unwrap().flags.is_sampled());
        // URL-encoded separators.
        let c = parse_uber_trace_id("80f198ee56343ba864fe8b2a57d3eff7%3Ae457b5a2e4d86bd1%3a0%3A1")
            .unwrap();
        assert_eq!(c.span_id.0, 0xe457b5a2e4d86bd1);
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "abc",
            "000000000000000000000000deadbeef:00000000deadbef0:00",
            "00000000000000000000000000000000:00000000deadbef0:00:00",
            "000000000000000000000000deadbeef:0000000000000000:00:00",
            "1:2:3:4:5",
            "1:2:3:100",
            "x:1:0:1",
            "1:1:0:",
            "1:1::1",
            "111111111111111111111111111111111:1:0:1",
            "1:11111111111111111:0:1",
            "1%3:1:0:1",
        ] {
            assert!(
                matches!(parse_uber_trace_id(bad), Err(ExtractError::Corrupted(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn baggage_documented_example() {
        // "span.SetBaggageItem("key1", "value1"); span.SetBaggageItem("key2", "value2")".
        let c = SpanContext {
            trace_id: TraceId(1),
            span_id: SpanId(2),
            flags: Flags::SAMPLED,
        };
        let mut bag: Baggage<2> = Baggage::new();
        bag.set("key1", "value1");
        bag.set("key2", "value 1 / blah");
        let mut out = Vec::new();
        inject(&c, &bag, |k, v| {
            out.push((k.to_string(), v.to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            out,
            [
                (
                    "uber-trace-id".to_string(),
                    "0000000000000001:0000000000000002:0:01".to_string()
                ),
                ("uberctx-key1".to_string(), "value1".to_string()),
                (
                    "uberctx-key2".to_string(),
                    "value%201%20%2F%20blah".to_string()
                ),
            ]
        );
        let headers: Vec<(&str, &str)> =
            out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ex: Extracted<2> = extract_from_headers(headers.iter().copied()).unwrap();
        assert_eq!(ex.context, c);
        assert_eq!(ex.baggage, bag);
    }

    #[test]
    fn not_found() {
        assert_eq!(extract::<0>(|_| None), Err(ExtractError::NotFound));
        let nothing = [("x-uberctx-a", "1"), ("uberctx", "2")];
        assert_eq!(
            extract_from_headers::<1>(nothing.iter().copied()),
            Err(ExtractError::NotFound)
        );
        // An empty `jaeger-baggage` is no baggage: not found, as an empty W3C `baggage` is.
        for empty in ["", "  ", " , ,"] {
            assert_eq!(
                extract::<1>(|h| (h == JAEGER_BAGGAGE).then_some(empty)),
                Err(ExtractError::NotFound),
                "{empty:?}"
            );
            assert_eq!(
                extract_from_headers::<1>([(JAEGER_BAGGAGE, empty)]),
                Err(ExtractError::NotFound),
                "{empty:?}"
            );
        }
        // Baggage alone is a baggage-only context (see the integration tests).
        let only_baggage = [("uberctx-a", "1")];
        assert!(extract_from_headers::<1>(only_baggage.iter().copied())
            .is_ok_and(|ex| !ex.context.is_valid() && ex.baggage.get("a") == Some("1")));
    }
}
