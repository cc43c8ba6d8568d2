//! W3C Trace Context (`traceparent`, `tracestate`) and W3C Baggage (`baggage`).
//!
//! ```
//! use microspan::propagation::{w3c, Extracted};
//! let headers = [
//!     ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//!     ("baggage", "userId=alice,serverNode=DF%2028,isProduction=false"),
//! ];
//! let lookup = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
//! let ex: Extracted<4> = w3c::extract(lookup).unwrap();
//! assert!(ex.context.flags.is_sampled());
//! assert_eq!(ex.baggage.get("serverNode"), Some("DF 28"));
//!
//! // And back out, one header at a time (`inject` returns the baggage items it could not write).
//! let mut out = Vec::new();
//! let skipped = w3c::inject(&ex.context, &ex.baggage, |name, value| {
//!     out.push((name.to_string(), value.to_string()));
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(skipped, 0);
//! assert_eq!(out[0].1, headers[0].1);
//! assert_eq!(out[1].1, "userId=alice,serverNode=DF%2028,isProduction=false");
//! ```
//!
//! - `traceparent`: version `00` is written; higher versions are read as the specification
//!   says (the first 55 characters, followed by the end or a `-`); `ff`, upper-case hex, all-zero
//!   ids and wrong lengths are [`Corrupted`](super::ExtractError::Corrupted). Only the `sampled`
//!   flag travels (W3C defines no debug flag).
//! - `tracestate`: microspan keeps no vendor state, so it is validated and handed back for
//!   forwarding ([`TraceState`], [`TraceStateHeader`]) rather than stored in the context.
//! - `baggage`: values are percent-encoded (bytes outside `baggage-octet`, and `%`); keys must
//!   be RFC 7230 tokens (items with other keys are skipped on injection, and counted in what
//!   [`inject`] returns; dropped and counted on extraction); properties (`;k=v`) are accepted
//!   and ignored. A member whose key or value is longer than its capacity is dropped and
//!   counted, never cut: the specification forbids propagating partial members. Several
//!   `baggage` headers are combined ([`extract_from_headers`]); with a lookup closure, join
//!   them with `,`. W3C Baggage does not depend on Trace Context: a `baggage` header without
//!   `traceparent` (or beside a corrupted one, noted in
//!   [`Extracted::context_ignored`](super::Extracted::context_ignored)) gives a context that is
//!   not valid (zero) with the items, and
//!   [`SpanBuilder::extracted`](crate::SpanBuilder::extracted) starts a root that carries them,
//!   as OpenTelemetry's propagators do; with neither header the extractors return
//!   [`NotFound`](super::ExtractError::NotFound).

use core::fmt;

use super::{
    is_baggage_octet, is_token, parse_hex, trim_ows, ExtractError, Extracted, InjectError,
    PercentEncoded,
};
use crate::context::{Flags, SpanContext, SpanId, TraceId};
use crate::tracer::Baggage;

/// The header name `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The header name `tracestate`.
pub const TRACESTATE: &str = "tracestate";
/// The header name `baggage`.
pub const BAGGAGE: &str = "baggage";

/// Displays a context as a `traceparent` value
/// (`00-{trace id: 32 hex}-{span id: 16 hex}-{flags: 2 hex}`).
#[derive(Clone, Copy)]
pub struct Traceparent<'c>(pub &'c SpanContext);

impl fmt::Display for Traceparent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.0.trace_id.0,
            self.0.span_id.0,
            (self.0.flags.0 & 1) | if self.0.flags.is_random() { 2 } else { 0 }
        )
    }
}

/// Displays baggage as a `baggage` value (`k1=v1,k2=v2`, values percent-encoded; items whose key
/// is not a token are skipped, uncounted: [`inject`] returns how many).
#[derive(Clone, Copy)]
pub struct BaggageHeader<'b, const B: usize>(pub &'b Baggage<B>);

impl<const B: usize> fmt::Display for BaggageHeader<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut result = Ok(());
        self.0.for_each(|k, v| {
            if !is_token(k) {
                return true;
            }
            let sep = if first { "" } else { "," };
            first = false;
            result = write!(f, "{sep}{k}={}", PercentEncoded::w3c(v));
            result.is_ok()
        });
        result
    }
}

/// Writes the `traceparent` value of `ctx`.
pub fn write_traceparent(ctx: &SpanContext, w: &mut impl fmt::Write) -> fmt::Result {
    write!(w, "{}", Traceparent(ctx))
}

/// Writes the `baggage` value of `baggage`.
pub fn write_baggage<const B: usize>(baggage: &Baggage<B>, w: &mut impl fmt::Write) -> fmt::Result {
    write!(w, "{}", BaggageHeader(baggage))
}

/// Injects `traceparent` and (when there is baggage to write) `baggage`: `set(name, value)` is
/// called once per header.
///
/// Returns the number of baggage items not written because W3C Baggage cannot carry their key
/// (not an RFC 7230 token, e.g. `http/route`): 0 when everything was written. Such items can
/// be set locally (`set_baggage` takes any key) or come from the binary carrier, which carries
/// any key: keep baggage keys to tokens, or check this count.
pub fn inject<const B: usize>(
    ctx: &SpanContext,
    baggage: &Baggage<B>,
    mut set: impl FnMut(&dyn fmt::Display, &dyn fmt::Display) -> fmt::Result,
) -> Result<usize, InjectError> {
    set(&TRACEPARENT, &Traceparent(ctx))?;
    let mut skipped = 0;
    baggage.for_each(|k, _| {
        skipped += !is_token(k) as usize;
        true
    });
    if skipped < baggage.len() {
        set(&BAGGAGE, &BaggageHeader(baggage))?;
    }
    Ok(skipped)
}

/// Parses a `traceparent` value.
pub fn parse_traceparent(value: &str) -> Result<SpanContext, ExtractError> {
    use ExtractError::Corrupted;
    let v = trim_ows(value).as_bytes();
    if v.len() < 55 {
        return Err(Corrupted("traceparent is shorter than 55 characters"));
    }
    let version =
        parse_hex(&v[0..2], 2, true).ok_or(Corrupted("traceparent version is not 2 hex digits"))?;
    if version == 0xff {
        return Err(Corrupted("traceparent version ff is forbidden"));
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return Err(Corrupted("traceparent fields are not separated by '-'"));
    }
    if version == 0 && v.len() != 55 {
        return Err(Corrupted("traceparent version 00 must be 55 characters"));
    }
    if v.len() > 55 && v[55] != b'-' {
        return Err(Corrupted("traceparent flags are not followed by '-'"));
    }
    let trace = parse_hex(&v[3..35], 32, true)
        .filter(|_| v[3..35].len() == 32)
        .ok_or(Corrupted(
            "traceparent trace-id is not 32 lower-case hex digits",
        ))?;
    let span = parse_hex(&v[36..52], 16, true).ok_or(Corrupted(
        "traceparent parent-id is not 16 lower-case hex digits",
    ))?;
    let flags = parse_hex(&v[53..55], 2, true).ok_or(Corrupted(
        "traceparent trace-flags are not 2 lower-case hex digits",
    ))?;
    if trace == 0 {
        return Err(Corrupted("traceparent trace-id is all zeros"));
    }
    if span == 0 {
        return Err(Corrupted("traceparent parent-id is all zeros"));
    }
    Ok(SpanContext {
        trace_id: TraceId(trace),
        span_id: SpanId(span as u64),
        // Sampled, and Level 2's random bit (another bit of our flags: see `Flags::RANDOM`).
        flags: Flags(flags as u8 & 1 | if flags & 2 != 0 { Flags::RANDOM.0 } else { 0 }),
    })
}

/// Adds the items of a `baggage` value to `ex` (malformed members are dropped and counted in
/// `ex.baggage_dropped`; the others are kept).
pub fn parse_baggage_into<const B: usize>(value: &str, ex: &mut Extracted<B>) {
    for member in value.split(',') {
        let member = trim_ows(member);
        if member.is_empty() {
            continue;
        }
        // Properties (`;k=v;flag`) are opaque to the specification and not kept.
        let kv = member.split(';').next().unwrap_or("");
        let Some((key, val)) = kv.split_once('=') else {
            ex.note_dropped();
            continue;
        };
        let (key, val) = (trim_ows(key), trim_ows(val));
        if !is_token(key) || !val.bytes().all(is_baggage_octet) {
            ex.note_dropped();
            continue;
        }
        ex.add_percent_encoded(key, val, false);
    }
}

/// Extracts a context (and its baggage) through a header lookup. `get` should match names
/// case-insensitively; several `baggage` headers should be joined with `,`.
pub fn extract<'a, const B: usize>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<Extracted<B>, ExtractError> {
    let baggage = get(BAGGAGE);
    let mut ex = context_or_baggage_only(get(TRACEPARENT), baggage.is_some_and(has_members))?;
    if let Some(b) = baggage {
        parse_baggage_into(b, &mut ex);
    }
    kept(ex)
}

/// `ex`, unless its `traceparent` was ignored for baggage that gave no item after all (all of it
/// malformed, or no room): then the corruption is the answer.
fn kept<const B: usize>(ex: Extracted<B>) -> Result<Extracted<B>, ExtractError> {
    match ex.context_ignored {
        Some(e) if ex.baggage.is_empty() => Err(e),
        _ => Ok(ex),
    }
}

/// The context of a `traceparent`. When there is baggage, a missing or corrupted `traceparent`
/// gives the zero context (for a corrupted one, if an item of the baggage is kept: [`kept`]) (a root carrying the baggage; the corruption noted in
/// [`Extracted::context_ignored`]), as OpenTelemetry's separate propagators give; without
/// baggage it is `NotFound` or `Corrupted`.
fn context_or_baggage_only<const B: usize>(
    traceparent: Option<&str>,
    baggage: bool,
) -> Result<Extracted<B>, ExtractError> {
    match (traceparent.map(parse_traceparent), baggage) {
        (Some(Ok(context)), _) => Ok(Extracted::new(context)),
        (Some(Err(e)), false) => Err(e),
        (Some(Err(e)), true) => Ok(Extracted {
            context_ignored: Some(e),
            ..Extracted::new(SpanContext::default())
        }),
        (None, true) => Ok(Extracted::new(SpanContext::default())),
        (None, false) => Err(ExtractError::NotFound),
    }
}

/// `true` when a `baggage` value lists at least one member (well-formed or not: a malformed
/// one is counted as dropped on the span that carries the rest).
fn has_members(value: &str) -> bool {
    value.split(',').any(|m| !trim_ows(m).is_empty())
}

/// Extracts a context (and its baggage) from `(name, value)` header pairs; names match
/// case-insensitively, several `baggage` headers are combined, two `traceparent` headers are
/// `Corrupted`. Baggage without `traceparent`, or beside a corrupted one, gives a context that
/// is not valid, with the items (see the [module docs](self) and
/// [`Extracted::context_ignored`]).
pub fn extract_from_headers<'a, const B: usize>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Result<Extracted<B>, ExtractError> {
    let mut tp = None;
    let mut baggage = false;
    for (name, value) in headers.clone() {
        if name.eq_ignore_ascii_case(TRACEPARENT) {
            if tp.is_some() {
                return Err(ExtractError::Corrupted("more than one traceparent header"));
            }
            tp = Some(value);
        } else if name.eq_ignore_ascii_case(BAGGAGE) {
            baggage |= has_members(value);
        }
    }
    let mut ex = context_or_baggage_only(tp, baggage)?;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(BAGGAGE) {
            parse_baggage_into(value, &mut ex);
        }
    }
    kept(ex)
}

/// A validated `tracestate` value: up to 32 `key=value` members, forwarded as received (with
/// microspan's own entry, if any, in front: [`TraceStateHeader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceState<'a> {
    value: &'a str,
}

/// Members of a `tracestate` value.
const MAX_TRACESTATE_MEMBERS: usize = 32;

impl<'a> TraceState<'a> {
    /// Validates a `tracestate` value (an empty one is valid and has no members).
    pub fn parse(value: &'a str) -> Result<Self, ExtractError> {
        use ExtractError::Corrupted;
        let ts = Self { value };
        let mut n = 0;
        for member in ts.raw_members() {
            let (key, val) = member
                .split_once('=')
                .ok_or(Corrupted("tracestate member without '='"))?;
            if !is_tracestate_key(key) {
                return Err(Corrupted("tracestate key is invalid"));
            }
            if !is_tracestate_value(val) {
                return Err(Corrupted("tracestate value is invalid"));
            }
            n += 1;
            if n > MAX_TRACESTATE_MEMBERS {
                return Err(Corrupted("tracestate has more than 32 members"));
            }
            if ts.iter().take(n - 1).any(|(k, _)| k == key) {
                return Err(Corrupted("tracestate repeats a key"));
            }
        }
        Ok(ts)
    }

    /// Non-empty members, trimmed (not validated).
    fn raw_members(&self) -> impl Iterator<Item = &'a str> + Clone {
        self.value
            .split(',')
            .map(trim_ows)
            .filter(|m| !m.is_empty())
    }

    /// The members, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
        self.raw_members().filter_map(|m| m.split_once('='))
    }

    /// The value of a member.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `true` when there are no members.
    pub fn is_empty(&self) -> bool {
        self.raw_members().next().is_none()
    }
}

/// Extracts the `tracestate` through a header lookup (`NotFound` when absent). Call it only
/// after `traceparent` was extracted: the specification ignores `tracestate` otherwise.
pub fn extract_tracestate<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<TraceState<'a>, ExtractError> {
    TraceState::parse(get(TRACESTATE).ok_or(ExtractError::NotFound)?)
}

/// Displays a `tracestate` value: an optional own entry first, then the upstream members (an
/// upstream member with the own entry's key is replaced), at most 32 members.
#[derive(Clone, Copy)]
pub struct TraceStateHeader<'a> {
    own: Option<(&'a str, &'a str)>,
    upstream: Option<TraceState<'a>>,
}

impl<'a> TraceStateHeader<'a> {
    /// Builds the header; `Err` when the own entry's key or value is invalid.
    pub fn new(
        own: Option<(&'a str, &'a str)>,
        upstream: Option<TraceState<'a>>,
    ) -> Result<Self, InjectError> {
        if let Some((k, v)) = own {
            if !is_tracestate_key(k) || !is_tracestate_value(v) {
                return Err(InjectError::Invalid("tracestate key or value"));
            }
        }
        Ok(Self { own, upstream })
    }
}

impl fmt::Display for TraceStateHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = 0;
        if let Some((k, v)) = self.own {
            write!(f, "{k}={v}")?;
            n += 1;
        }
        if let Some(up) = &self.upstream {
            for (k, v) in up.iter() {
                if n == MAX_TRACESTATE_MEMBERS {
                    break;
                }
                if self.own.is_some_and(|(own, _)| own == k) {
                    continue;
                }
                let sep = if n == 0 { "" } else { "," };
                write!(f, "{sep}{k}={v}")?;
                n += 1;
            }
        }
        Ok(())
    }
}

/// `key = simple-key / multi-tenant-key` (Trace Context Level 1):
///
/// ```text
/// simple-key       = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
/// multi-tenant-key = tenant-id "@" system-id
/// tenant-id        = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
/// system-id        = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
/// ```
fn is_tracestate_key(k: &str) -> bool {
    match k.split_once('@') {
        None => tracestate_id(k, 256, false),
        Some((tenant, system)) => {
            tracestate_id(tenant, 241, true) && tracestate_id(system, 14, false)
        }
    }
}

/// One part of a `tracestate` key: 1 to `max` characters, the first a lower-case letter (or,
/// with `digit_first`, a digit), the others `a-z 0-9 _ - * /`.
fn tracestate_id(s: &str, max: usize, digit_first: bool) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    b.len() <= max
        && (first.is_ascii_lowercase() || (digit_first && first.is_ascii_digit()))
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
        })
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, not ending in a space.
fn is_tracestate_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(trace: u128, span: u64, flags: u8) -> SpanContext {
        SpanContext {
            trace_id: TraceId(trace),
            span_id: SpanId(span),
            flags: Flags(flags),
        }
    }

    #[test]
    fn traceparent_spec_examples() {
        // Trace Context, "Examples of HTTP traceparent Headers".
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Ok(ctx(
                0x4bf92f3577b34da6a3ce929d0e0e4736,
                0x00f067aa0ba902b7,
                1
            ))
        );
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            Ok(ctx(
                0x4bf92f3577b34da6a3ce929d0e0e4736,
                0x00f067aa0ba902b7,
                0
            ))
        );
        // "Relationship Between the Headers".
        assert_eq!(
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Ok(ctx(
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                1
            ))
        );
        let c = ctx(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1);
        assert_eq!(
            Traceparent(&c).to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        // The debug flag does not travel in W3C's flags.
        assert!(Traceparent(&ctx(1, 1, 3)).to_string().ends_with("-01"));
    }

    #[test]
    fn traceparent_invalid() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert!(
                matches!(parse_traceparent(bad), Err(ExtractError::Corrupted(_))),
                "{bad:?}"
            );
        }
        // A higher version: the first 55 characters are used.
        assert_eq!(
            parse_traceparent(
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"
            ),
            Ok(ctx(
                0x4bf92f3577b34da6a3ce929d0e0e4736,
                0x00f067aa0ba902b7,
                1
            ))
        );
    }

    #[test]
    fn tracestate_spec_examples() {
        let ts = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap();
        assert_eq!(
            ts.iter().collect::<Vec<_>>(),
            [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
        );
        assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
        // Congo resumes the trace: its entry moves to the front with a new value.
        let h = TraceStateHeader::new(Some(("congo", "ucfJifl5GOE")), Some(ts)).unwrap();
        assert_eq!(h.to_string(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
        assert!(TraceState::parse("").unwrap().is_empty());
        assert!(TraceState::parse(" , ").unwrap().is_empty());
        assert!(TraceState::parse("tenant@vendor=x").is_ok());
        for bad in [
            "Rojo=1",
            "rojo",
            "rojo=1,rojo=2",
            "rojo=a,b",
            "rojo=a=b",
            "rojo= ",
        ] {
            assert!(TraceState::parse(bad).is_err(), "{bad:?}");
        }
        let many: String = (0..33).map(|i| format!("k{i}=v,")).collect();
        assert!(TraceState::parse(&many).is_err());
    }

    #[test]
    fn baggage_spec_examples() {
        let c = ctx(1, 1, 1);
        // "Examples of HTTP headers": a single header.
        let mut ex: Extracted<4> = Extracted::new(c);
        parse_baggage_into(
            "userId=alice,serverNode=DF%2028,isProduction=false",
            &mut ex,
        );
        assert_eq!(ex.baggage.get("userId"), Some("alice"));
        assert_eq!(ex.baggage.get("serverNode"), Some("DF 28"));
        assert_eq!(ex.baggage.get("isProduction"), Some("false"));
        assert_eq!(ex.baggage_dropped, 0);
        // Split into two headers, with spaces.
        let headers = [
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("baggage", "userId =   alice"),
            ("Baggage", "serverNode = DF%2028, isProduction = false"),
        ];
        let ex2: Extracted<4> = extract_from_headers(headers.iter().copied()).unwrap();
        assert_eq!(ex2.baggage, ex.baggage);
        // "Definition / Example": properties are accepted and ignored.
        let mut ex3: Extracted<4> = Extracted::new(c);
        parse_baggage_into(
            "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
            &mut ex3,
        );
        assert_eq!(ex3.baggage.get("key1"), Some("value1"));
        assert_eq!(ex3.baggage.get("key2"), Some("value2"));
        assert_eq!(ex3.baggage.get("key3"), Some("value3"));
        assert_eq!(ex3.baggage.len(), 3);
        // Injection percent-encodes the value.
        let mut bag: Baggage<4> = Baggage::new();
        bag.set("userId", "alice");
        bag.set("serverNode", "DF 28");
        bag.set("isProduction", "false");
        assert_eq!(
            BaggageHeader(&bag).to_string(),
            "userId=alice,serverNode=DF%2028,isProduction=false"
        );
    }

    #[test]
    fn baggage_malformed_members_are_dropped_and_counted() {
        let mut ex: Extracted<4> = Extracted::new(ctx(1, 1, 1));
        parse_baggage_into("ok=1,novalue,bad key=2,x=%zz,y=a\"b,,z=3", &mut ex);
        assert_eq!(ex.baggage.get("ok"), Some("1"));
        assert_eq!(ex.baggage.get("z"), Some("3"));
        assert_eq!(ex.baggage_dropped, 4);
        // Beyond the capacity: dropped and counted.
        let mut ex: Extracted<1> = Extracted::new(ctx(1, 1, 1));
        parse_baggage_into("a=1,b=2", &mut ex);
        assert_eq!((ex.baggage.len(), ex.baggage_dropped), (1, 1));
    }

    #[test]
    fn not_found_vs_corrupted() {
        let none = |_: &str| -> Option<&str> { None };
        assert_eq!(extract::<0>(none), Err(ExtractError::NotFound));
        let blank_baggage = |n: &str| (n == BAGGAGE).then_some(" , ");
        assert_eq!(extract::<0>(blank_baggage), Err(ExtractError::NotFound));
        let bad = |n: &str| (n == TRACEPARENT).then_some("garbage");
        assert!(matches!(extract::<0>(bad), Err(ExtractError::Corrupted(_))));
        let two = [("traceparent", "a"), ("TRACEPARENT", "b")];
        assert!(matches!(
            extract_from_headers::<0>(two.iter().copied()),
            Err(ExtractError::Corrupted(_))
        ));
    }
}
