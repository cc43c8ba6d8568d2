//! Propagation: inject → extract round trips in every format, arbitrary input never panics, and
//! the tracer continues extracted contexts (sampling decision, baggage, remote parent).

mod common;
use common::*;

use microspan::config::{MAX_BAGGAGE_KEY_LEN, MAX_BAGGAGE_VALUE_LEN};
use microspan::propagation::{binary, jaeger, w3c, ExtractError, Extracted, SliceWriter};
use microspan::{Baggage, Drain, Flags, Ring, Session, SpanContext, SpanId, TraceId, Tracer};
use proptest::prelude::*;

fn context() -> impl Strategy<Value = SpanContext> {
    (1..=u128::MAX, 1..=u64::MAX, 0u8..4).prop_map(|(t, s, f)| SpanContext {
        trace_id: TraceId(t),
        span_id: SpanId(s),
        // Debug implies sampled once extracted.
        flags: if f & 2 != 0 { Flags(f | 1) } else { Flags(f) },
    })
}

/// Up to 4 items: token keys (W3C needs tokens; Jaeger header names need them too), any values.
fn baggage() -> impl Strategy<Value = Baggage<4>> {
    baggage_with_keys("a-zA-Z0-9_.!~-")
}

/// Up to 4 items whose keys are made of the characters of the regex class `key_chars`.
fn baggage_with_keys(key_chars: &str) -> impl Strategy<Value = Baggage<4>> {
    proptest::collection::vec(
        (
            proptest::string::string_regex(&format!("[{key_chars}]{{1,{MAX_BAGGAGE_KEY_LEN}}}"))
                .unwrap(),
            any::<String>(),
        ),
        0..4,
    )
    .prop_map(|items| {
        let mut b = Baggage::new();
        for (k, v) in items {
            // Values are cut to the capacity first: `Baggage::set` refuses longer ones.
            let mut end = v.len().min(MAX_BAGGAGE_VALUE_LEN);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            assert!(b.set(&k, &v[..end]));
        }
        b
    })
}

fn headers_of(
    inject: impl FnOnce(
        &mut dyn FnMut(&dyn std::fmt::Display, &dyn std::fmt::Display) -> std::fmt::Result,
    ),
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    inject(&mut |k, v| {
        out.push((k.to_string(), v.to_string()));
        Ok(())
    });
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binary_roundtrip(ctx in context(), bag in baggage(), pad in 0usize..8) {
        let mut buf = vec![0u8; binary::encoded_len(&bag) + pad];
        let n = binary::inject(&ctx, &bag, &mut buf).unwrap();
        prop_assert_eq!(n, binary::encoded_len(&bag));
        prop_assert!(n <= binary::max_len(4));
        let ex: Extracted<4> = binary::extract(&buf).unwrap();
        prop_assert_eq!(ex.context, ctx);
        prop_assert_eq!(ex.baggage, bag);
        // One byte short: refused, never a partial write.
        if n > 0 {
            prop_assert!(binary::inject(&ctx, &Baggage::<4>::new(), &mut buf[..binary::HEADER_LEN - 1]).is_err());
        }
    }

    #[test]
    fn w3c_roundtrip(ctx in context(), bag in baggage()) {
        let headers = headers_of(|set| { assert_eq!(w3c::inject(&ctx, &bag, set).unwrap(), 0); });
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ex: Extracted<4> = w3c::extract_from_headers(pairs.iter().copied()).unwrap();
        prop_assert_eq!(ex.context.trace_id, ctx.trace_id);
        prop_assert_eq!(ex.context.span_id, ctx.span_id);
        // W3C carries the sampled flag only.
        prop_assert_eq!(ex.context.flags.is_sampled(), ctx.flags.is_sampled());
        prop_assert_eq!(&ex.baggage, &bag);
        prop_assert_eq!(ex.baggage_dropped, 0);
        // The lookup form reads the same.
        let ex2: Extracted<4> = w3c::extract(|n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)).unwrap();
        prop_assert_eq!(ex2, ex);
    }

    /// Jaeger reads keys lower-cased (HTTP does not keep the case of header names), so only
    /// lower-case keys come back as they were.
    #[test]
    fn jaeger_roundtrip(ctx in context(), bag in baggage_with_keys("a-z0-9_.!~-")) {
        let headers = headers_of(|set| { assert_eq!(jaeger::inject(&ctx, &bag, set).unwrap(), 0); });
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ex: Extracted<4> = jaeger::extract_from_headers(pairs.iter().copied()).unwrap();
        prop_assert_eq!(ex.context, ctx);
        prop_assert_eq!(&ex.baggage, &bag);
        // The URL-encoded variant of the id reads the same.
        let encoded = pairs[0].1.replace(':', "%3A");
        prop_assert_eq!(jaeger::parse_uber_trace_id(&encoded).unwrap(), ctx);
    }

    #[test]
    fn text_into_a_byte_slice(ctx in context(), len in 0usize..80) {
        let mut buf = vec![0u8; len];
        let mut w = SliceWriter::new(&mut buf);
        match w3c::write_traceparent(&ctx, &mut w) {
            Ok(()) => {
                prop_assert_eq!(w.len(), 55);
                let text = w.as_str().to_string();
                prop_assert_eq!(w3c::parse_traceparent(&text).unwrap().span_id, ctx.span_id);
            }
            Err(_) => prop_assert!(len < 55),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>(), k in any::<String>()) {
        let _ = w3c::parse_traceparent(&s);
        let _ = w3c::TraceState::parse(&s);
        let _ = jaeger::parse_uber_trace_id(&s);
        let mut ex: Extracted<2> = Extracted::new(SpanContext { trace_id: TraceId(1), span_id: SpanId(1), flags: Flags(1) });
        w3c::parse_baggage_into(&s, &mut ex);
        let pairs = [("traceparent", s.as_str()), ("baggage", s.as_str()), (k.as_str(), s.as_str()),
            ("uber-trace-id", s.as_str()), ("uberctx-x", s.as_str())];
        let _ = w3c::extract_from_headers::<2>(pairs.iter().copied());
        let _ = jaeger::extract_from_headers::<2>(pairs.iter().copied());
    }

    #[test]
    fn near_valid_text_never_panics(i in 0usize..55, b in any::<u8>()) {
        let mut tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec();
        tp[i] = b;
        if let Ok(s) = std::str::from_utf8(&tp) {
            let _ = w3c::parse_traceparent(s);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), first in 0u8..3) {
        let mut b = bytes;
        if !b.is_empty() { b[0] = first; }
        let _ = binary::extract::<3>(&b);
    }
}

#[test]
fn not_found_is_not_corrupted() {
    assert_eq!(binary::extract::<0>(&[]), Err(ExtractError::NotFound));
    assert_eq!(w3c::extract::<0>(|_| None), Err(ExtractError::NotFound));
    assert_eq!(jaeger::extract::<0>(|_| None), Err(ExtractError::NotFound));
    assert!(matches!(
        binary::extract::<0>(&[9]),
        Err(ExtractError::Corrupted(_))
    ));
    assert!(matches!(
        w3c::extract::<0>(|_| Some("00-zz")),
        Err(ExtractError::Corrupted(_))
    ));
    assert!(matches!(
        jaeger::extract::<0>(|_| Some("0:0:0:0")),
        Err(ExtractError::Corrupted(_))
    ));
}

#[test]
fn extracted_context_is_continued_by_the_tracer() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("gateway").boot_id(3));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    // Sampled upstream with baggage: a remote child that carries the baggage to its children.
    let headers = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("baggage", "userId=alice"),
    ];
    let ex: Extracted<2> = w3c::extract_from_headers(headers.iter().copied()).unwrap();
    let handle = TRACER.span("handle").extracted(ex).start();
    assert!(handle.is_recording());
    assert_eq!(
        handle.context().trace_id.0,
        0x4bf92f3577b34da6a3ce929d0e0e4736
    );
    let child = handle.child("db");
    assert_eq!(child.baggage_item("userId"), Some("alice"));
    drop(child);
    drop(handle);

    // Not sampled upstream: nothing is recorded, and the decision travels on with real ids.
    let ex: Extracted<0> =
        w3c::extract(|_| Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")).unwrap();
    let quiet = TRACER.span("quiet").extracted(ex).start();
    assert!(!quiet.is_recording());
    let ctx = quiet.context();
    assert!(ctx.is_valid() && !ctx.flags.is_sampled());
    assert_eq!(ctx.trace_id.0, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_ne!(
        ctx.span_id.0, 0x00f067aa0ba902b7,
        "the unsampled span has its own id"
    );
    let mut out = String::new();
    w3c::write_traceparent(&ctx, &mut out).unwrap();
    assert!(out.ends_with("-00"));
    drop(quiet);

    // Debug upstream (Jaeger): sampled and debug.
    let ex: Extracted<0> = jaeger::extract(|_| Some("abc:def:0:2")).unwrap();
    let dbg = TRACER.span("dbg").extracted(ex).start();
    assert!(dbg.is_recording() && dbg.context().flags.is_debug());
    drop(dbg);

    let d = decode_typed(&drain_all(&mut drain));
    let names: Vec<_> = d
        .spans()
        .filter_map(|r| match r {
            Typed::Start { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["handle", "db", "dbg"]);
    assert!(d.spans().any(
        |r| matches!(r, Typed::Baggage { key, value, .. } if key == "userId" && value == "alice")
    ));

    // Trace Context Level 2: the random flag of an extracted traceparent travels on to the
    // descendants' W3C headers, sampled or not, and never into Jaeger's flags (bit 1 is debug
    // there).
    for (flags, sampled) in [("03", true), ("02", false)] {
        let tp = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
        let ex: Extracted<0> = w3c::extract(|_| Some(tp.as_str())).unwrap();
        let span = TRACER.span("random").extracted(ex).start();
        let child = span.child("random-child");
        let ctx = child.context();
        assert!(ctx.flags.is_random() && ctx.flags.is_sampled() == sampled);
        let mut out = String::new();
        w3c::write_traceparent(&ctx, &mut out).unwrap();
        assert!(out.ends_with(&format!("-{flags}")), "{out}");
        let uber = jaeger::UberTraceId(&ctx).to_string();
        assert!(
            uber.ends_with(if sampled { ":01" } else { ":00" }),
            "{uber}"
        );
    }
    // A trace the device starts is not random.
    let root = TRACER.root("own");
    assert!(!root.context().flags.is_random());
}

/// The context of the review findings' examples.
fn upstream() -> SpanContext {
    SpanContext {
        trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
        span_id: SpanId(0x00f067aa0ba902b7),
        flags: Flags::SAMPLED,
    }
}

/// The losses the END record of the span named `name` carries.
fn end_losses(d: &TypedStream, name: &str) -> microspan::tracer::Losses {
    let id = d
        .spans()
        .find_map(|r| match r {
            Typed::Start { id, name: n, .. } if n == name => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no start of {name:?}"));
    d.spans()
        .find_map(|r| match r {
            Typed::End { span, losses, .. } if *span == id => Some(*losses),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no end of {name:?}"))
}

#[test]
fn baggage_lost_on_extraction_is_counted_on_the_span() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("gateway").boot_id(3));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    // One fits; two beyond B, one malformed, one longer than the value capacity.
    let headers = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (
            "baggage",
            "a=1,b=2,c=3,bad,userId=0123456789abcdef0123456789",
        ),
    ];
    let ex: Extracted<1> = w3c::extract_from_headers(headers.iter().copied()).unwrap();
    assert_eq!(ex.baggage_dropped, 4);
    let span = TRACER.span("handle").extracted(ex).start();
    assert_eq!(span.losses().fields_over_capacity, 4);
    drop(span);
    // Nothing lost: nothing counted.
    let ex: Extracted<1> = w3c::extract(|n| (n == "traceparent").then_some(headers[0].1)).unwrap();
    let quiet = TRACER.span("clean").extracted(ex).start();
    drop(quiet);

    let d = decode_typed(&drain_all(&mut drain));
    assert_eq!(end_losses(&d, "handle").fields_over_capacity, 4);
    assert!(end_losses(&d, "clean").is_empty());
}

#[test]
fn jaeger_baggage_values_read_plus_as_a_space() {
    // jaeger-client-go writes values with url.QueryEscape and reads them with QueryUnescape.
    let headers = [
        ("uber-trace-id", "1:1:0:1"),
        ("uberctx-user", "John+Smith"),
        ("uberctx-sum", "1%2B1"),
    ];
    let ex: Extracted<2> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
    assert_eq!(ex.baggage.get("user"), Some("John Smith"));
    assert_eq!(ex.baggage.get("sum"), Some("1+1"));

    // What microspan writes reads back: a space as %20, a literal '+' as %2B.
    let mut bag: Baggage<1> = Baggage::new();
    assert!(bag.set("expr", "a b+c"));
    let out = headers_of(|set| {
        jaeger::inject(&upstream(), &bag, set).unwrap();
    });
    assert_eq!(
        out[1],
        ("uberctx-expr".to_string(), "a%20b%2Bc".to_string())
    );
    let pairs: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ex: Extracted<1> = jaeger::extract_from_headers(pairs.iter().copied()).unwrap();
    assert_eq!(ex.baggage, bag);

    // W3C baggage keeps '+' as it is (only %XX is decoded there).
    let mut ex: Extracted<1> = Extracted::new(upstream());
    w3c::parse_baggage_into("user=John+Smith", &mut ex);
    assert_eq!(ex.baggage.get("user"), Some("John+Smith"));
}

#[test]
fn the_jaeger_baggage_header_gives_baggage_with_or_without_a_trace() {
    // Beside a context: its items join the uberctx- ones.
    let headers = [
        ("uber-trace-id", "1:1:0:1"),
        ("uberctx-user", "alice"),
        ("Jaeger-Baggage", " K1=v1, k2 = John+Smith ,bad, a=b=c ,=x"),
    ];
    let ex: Extracted<4> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
    assert!(ex.context.is_valid());
    assert_eq!(ex.baggage.get("user"), Some("alice"));
    assert_eq!(
        ex.baggage.get("K1"),
        Some("v1"),
        "keys kept as sent, as the Go client keeps them"
    );
    assert_eq!(ex.baggage.get("k1"), None);
    assert_eq!(ex.baggage.get("k2"), Some("John Smith"));
    assert_eq!(ex.baggage_dropped, 3, "`bad`, `a=b=c` and `=x`");

    // Alone (baggage before any trace, e.g. from curl): an invalid context, so the span the
    // builder starts is a new root that carries the baggage.
    let ex: Extracted<2> =
        jaeger::extract_from_headers([("jaeger-baggage", "tenant=acme")].iter().copied()).unwrap();
    assert!(!ex.context.is_valid());
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(1));
    let root = TRACER.span("request").extracted(ex).start();
    assert!(root.is_recording() && root.context().is_valid());
    assert_eq!(root.baggage_item("tenant"), Some("acme"));
    // `uberctx-` headers alone do the same, as the Jaeger clients' extractors do.
    let ex: Extracted<2> =
        jaeger::extract_from_headers([("Uberctx-Tenant", "acme")].iter().copied()).unwrap();
    assert!(!ex.context.is_valid());
    assert_eq!(ex.baggage.get("tenant"), Some("acme"));
    // Neither header: not found, as before.
    assert!(matches!(
        jaeger::extract_from_headers::<2>([("x", "y")].iter().copied()),
        Err(ExtractError::NotFound)
    ));
}

#[test]
fn a_baggage_only_context_takes_no_reference_slot() {
    // The zero context of baggage-only headers is no reference: with the builder full of
    // FollowsFrom references, a real ChildOf still becomes the parent.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(1));
    let ctx = |t: u128, s: u64| SpanContext {
        trace_id: TraceId(t),
        span_id: SpanId(s),
        flags: Flags::SAMPLED,
    };
    let real = ctx(0xAAAA, 0xBBBB);
    let ex: Extracted<2> =
        w3c::extract_from_headers([("baggage", "tenant=acme")].iter().copied()).unwrap();
    let mut b = TRACER.span("with-baggage").extracted(ex);
    for i in 1..microspan::config::MAX_REFERENCES as u64 {
        b = b.follows_from(&ctx(i.into(), i));
    }
    let span = b.child_of(&real).start();
    assert_eq!(span.context().trace_id, real.trace_id);
    assert_eq!(span.baggage_item("tenant"), Some("acme"));
}

#[test]
fn w3c_baggage_without_traceparent_starts_a_root_that_carries_it() {
    // W3C Baggage does not depend on Trace Context (OpenTelemetry's propagators read it alone).
    let lookup = |n: &str| (n == "baggage").then_some("tenant=acme, bad item");
    let ex: Extracted<2> = w3c::extract(lookup).unwrap();
    assert!(!ex.context.is_valid());
    assert_eq!(ex.baggage.get("tenant"), Some("acme"));
    assert_eq!(ex.baggage_dropped, 1, "the malformed member is counted");
    let headers = [("Baggage", "tenant=acme"), ("baggage", "user=bob")];
    let ex: Extracted<2> = w3c::extract_from_headers(headers.iter().copied()).unwrap();
    assert!(!ex.context.is_valid());
    assert_eq!(
        (ex.baggage.get("tenant"), ex.baggage.get("user")),
        (Some("acme"), Some("bob"))
    );

    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(1));
    let root = TRACER.span("request").extracted(ex).start();
    assert!(root.is_recording() && root.context().is_valid());
    assert_eq!(root.baggage_item("user"), Some("bob"));

    // A blank `baggage` header and no `traceparent`: nothing found.
    for headers in [&[][..], &[("baggage", " , ")][..]] {
        assert!(matches!(
            w3c::extract_from_headers::<2>(headers.iter().copied()),
            Err(ExtractError::NotFound)
        ));
    }
    // A bad `traceparent` alone is reported.
    let headers = [("traceparent", "garbage")];
    assert!(matches!(
        w3c::extract_from_headers::<2>(headers.iter().copied()),
        Err(ExtractError::Corrupted(_))
    ));
    // Beside baggage it is ignored, as OpenTelemetry's separate propagators ignore it: the
    // baggage is kept (a root carries it) and the reason is kept too. An upper-case traceparent
    // is not valid W3C.
    let tp = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
    let headers = [("traceparent", tp), ("baggage", "tenant=acme")];
    let lookup = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    for ex in [
        w3c::extract_from_headers::<2>(headers.iter().copied()).unwrap(),
        w3c::extract::<2>(lookup).unwrap(),
    ] {
        assert!(!ex.context.is_valid());
        assert_eq!(ex.baggage.get("tenant"), Some("acme"));
        assert!(matches!(
            ex.context_ignored,
            Some(ExtractError::Corrupted(why)) if why.contains("trace-id")
        ));
        let root = TRACER.span("request").extracted(ex).start();
        assert!(root.is_recording() && root.context().is_valid());
        assert_eq!(root.baggage_item("tenant"), Some("acme"));
    }
    // Beside baggage of which nothing is kept, it is the answer.
    let headers = [("traceparent", tp), ("baggage", "no-equals-sign")];
    assert!(matches!(
        w3c::extract_from_headers::<2>(headers.iter().copied()),
        Err(ExtractError::Corrupted(_))
    ));
    // A good one leaves nothing ignored.
    let headers = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("baggage", "tenant=acme"),
    ];
    let ex = w3c::extract_from_headers::<2>(headers.iter().copied()).unwrap();
    assert!(ex.context.is_valid() && ex.context_ignored.is_none());
}

#[test]
fn jaeger_baggage_keys_are_lower_cased() {
    // Go's net/http canonicalises header names; the Jaeger clients lower-case them.
    let headers = [("Uber-Trace-Id", "1:1:0:1"), ("Uberctx-User-Id", "42")];
    let ex: Extracted<2> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
    assert_eq!(ex.baggage.get("user-id"), Some("42"));
    assert_eq!(ex.baggage.get("User-Id"), None);

    // A key with capitals is written as it is and arrives lower-cased, as with the clients.
    let mut bag: Baggage<1> = Baggage::new();
    assert!(bag.set("userId", "alice"));
    let out = headers_of(|set| {
        jaeger::inject(&upstream(), &bag, set).unwrap();
    });
    assert_eq!(out[1].0, "uberctx-userId");
    let pairs: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ex: Extracted<1> = jaeger::extract_from_headers(pairs.iter().copied()).unwrap();
    assert_eq!(ex.baggage.get("userid"), Some("alice"));
}

#[test]
fn jaeger_inject_skips_keys_that_are_not_header_names() {
    // The binary carrier carries any key: one with a line break arrives from another device.
    let mut bag: Baggage<3> = Baggage::new();
    assert!(bag.set("a\r\nX-Evil", "1"));
    assert!(bag.set("http/route", "2"));
    assert!(bag.set("ok", "3"));
    let mut buf = [0u8; 128];
    let n = binary::inject(&upstream(), &bag, &mut buf).unwrap();
    let ex: Extracted<3> = binary::extract(&buf[..n]).unwrap();
    assert_eq!(ex.baggage, bag);

    let mut skipped = 0;
    let out = headers_of(|set| {
        skipped = jaeger::inject(&ex.context, &ex.baggage, set).unwrap();
    });
    assert_eq!(skipped, 2, "the two keys that are not tokens are counted");
    let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["uber-trace-id", "uberctx-ok"]);

    // Such a header name is dropped and counted when extracting, like any bad item.
    let headers = [
        ("uber-trace-id", "1:1:0:1"),
        ("uberctx-a b", "1"),
        ("uberctx-", "2"),
    ];
    let ex: Extracted<2> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
    assert!(ex.baggage.is_empty());
    assert_eq!(ex.baggage_dropped, 2);
}

#[test]
fn an_empty_baggage_key_is_refused_so_the_binary_carrier_reads_back() {
    let mut bag: Baggage<2> = Baggage::new();
    assert!(!bag.set("", "x"), "no carrier can hold an empty key");
    assert!(bag.set("site", "north-7"));
    assert_eq!(bag.len(), 1);
    let mut buf = [0u8; 128];
    let n = binary::inject(&upstream(), &bag, &mut buf).unwrap();
    let ex: Extracted<2> = binary::extract(&buf[..n]).unwrap();
    assert_eq!(ex.baggage, bag);

    // On a span: dropped and counted like an item beyond the capacity.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("node"));
    let mut span = TRACER
        .span("send")
        .with_baggage(Baggage::<2>::new())
        .start();
    span.set_baggage("", "x");
    assert!(span.baggage().is_empty());
    assert_eq!(span.losses().fields_over_capacity, 1);
}

#[test]
fn baggage_longer_than_its_capacity_is_dropped_never_cut() {
    let long_value = "2154425b-1c30-4f0e-9d51-0b73b9a2f5a1";
    let long_key = "longkeylongkeylongkey";
    assert!(long_value.len() > MAX_BAGGAGE_VALUE_LEN && long_key.len() > MAX_BAGGAGE_KEY_LEN);

    // W3C: "it MUST NOT propagate any partial list-members".
    let member = format!("session={long_value},{long_key}=1,ok=2");
    let headers = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("baggage", member.as_str()),
    ];
    let ex: Extracted<4> = w3c::extract_from_headers(headers.iter().copied()).unwrap();
    assert_eq!((ex.baggage.len(), ex.baggage_dropped), (1, 2));
    let out = headers_of(|set| {
        w3c::inject(&ex.context, &ex.baggage, set).unwrap();
    });
    assert_eq!(out[1], ("baggage".to_string(), "ok=2".to_string()));
    // The same once percent-decoded: `%41` is one byte, but 17 of them do not fit.
    let mut ex: Extracted<1> = Extracted::new(upstream());
    w3c::parse_baggage_into(
        &format!("k={}", "%41".repeat(MAX_BAGGAGE_VALUE_LEN + 1)),
        &mut ex,
    );
    assert_eq!((ex.baggage.len(), ex.baggage_dropped), (0, 1));

    // Jaeger.
    let key_header = format!("uberctx-{long_key}");
    let headers = [
        ("uber-trace-id", "1:1:0:1"),
        ("uberctx-session", long_value),
        (key_header.as_str(), "1"),
        ("uberctx-ok", "2"),
    ];
    let ex: Extracted<4> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
    assert_eq!((ex.baggage.len(), ex.baggage_dropped), (1, 2));
    assert_eq!(ex.baggage.get("ok"), Some("2"));

    // Binary: a sender built with larger capacities.
    let mut carrier = vec![1u8];
    carrier.extend_from_slice(&upstream().trace_id.0.to_be_bytes());
    carrier.extend_from_slice(&upstream().span_id.0.to_be_bytes());
    carrier.extend_from_slice(&[1, 3]);
    for (k, v) in [("session", long_value), (long_key, "1"), ("ok", "2")] {
        carrier.push(k.len() as u8);
        carrier.extend_from_slice(k.as_bytes());
        carrier.push(v.len() as u8);
        carrier.extend_from_slice(v.as_bytes());
    }
    let ex: Extracted<4> = binary::extract(&carrier).unwrap();
    assert_eq!((ex.baggage.len(), ex.baggage_dropped), (1, 2));
    assert_eq!(ex.baggage.get("ok"), Some("2"));

    // Set locally: refused whole (counted on the span), so never injected cut.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("node"));
    let mut span = TRACER
        .span("send")
        .with_baggage(Baggage::<4>::new())
        .start();
    span.set_baggage("session", long_value);
    span.set_baggage(long_key, "1");
    span.set_baggage("ok", "2");
    assert_eq!(span.baggage_item("session"), None);
    assert_eq!(span.losses().fields_over_capacity, 2);
    assert_eq!(span.losses().strings_truncated, 0);
    let out = headers_of(|set| {
        w3c::inject(&span.context(), span.baggage(), set).unwrap();
    });
    assert_eq!(out[1].1, "ok=2");
    // A value replaced by one too long keeps the old one (the decoder saw only that one).
    span.set_baggage("ok", long_value);
    assert_eq!(span.baggage_item("ok"), Some("2"));
}

#[test]
fn w3c_inject_counts_the_items_it_skips() {
    let mut bag: Baggage<2> = Baggage::new();
    assert!(bag.set("http/route", "x"));
    assert!(bag.set("ok", "y"));
    let mut skipped = usize::MAX;
    let out = headers_of(|set| {
        skipped = w3c::inject(&upstream(), &bag, set).unwrap();
    });
    assert_eq!(skipped, 1);
    assert_eq!(out[1], ("baggage".to_string(), "ok=y".to_string()));

    // Nothing writable: no empty `baggage` header.
    let mut bag: Baggage<1> = Baggage::new();
    assert!(bag.set("http/route", "x"));
    let out = headers_of(|set| {
        skipped = w3c::inject(&upstream(), &bag, set).unwrap();
    });
    assert_eq!(skipped, 1);
    assert_eq!(out.len(), 1, "{out:?}");
}

#[test]
fn a_span_whose_start_was_dropped_still_propagates_a_valid_context() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("full").boot_id(7));
    let _drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let mut recorded = Vec::new();
    while TRACER.dropped() == 0 {
        recorded.push(TRACER.root("filler"));
    }
    let filler = recorded.pop().unwrap(); // its start was the one dropped
    assert!(!filler.is_recording());
    let root = TRACER.root("send");
    let child = recorded[0].child("child");
    let tagged = recorded[0].child_with_tags("tagged", [("k", 1u32.into())]);
    let follower = recorded[0].follower("follower");
    let lost = [&filler, &root, &child, &tagged, &follower];
    assert!(lost.iter().all(|s| !s.is_recording()));

    let mut ids = std::collections::HashSet::new();
    for s in &recorded {
        ids.insert(s.context().span_id);
    }
    for s in lost {
        let ctx = s.context();
        assert!(ctx.is_valid() && ctx.flags.is_sampled(), "{ctx:?}");
        assert!(
            ids.insert(ctx.span_id),
            "span id {:?} is not unique",
            ctx.span_id
        );
        // The same id every time it is asked.
        assert_eq!(s.context(), ctx);
        // Every carrier writes a context the other side reads.
        let out = headers_of(|set| {
            w3c::inject(&ctx, &Baggage::<0>::new(), set).unwrap();
        });
        assert_eq!(w3c::parse_traceparent(&out[0].1), Ok(ctx));
        let mut buf = [0u8; 64];
        let n = binary::inject(&ctx, &Baggage::<0>::new(), &mut buf).unwrap();
        assert_eq!(binary::extract::<0>(&buf[..n]).unwrap().context, ctx);
    }
    // A lost child stays in its parent's trace, and so does the service it calls.
    assert_eq!(child.context().trace_id, recorded[0].context().trace_id);
    assert_eq!(tagged.context().trace_id, recorded[0].context().trace_id);
    drop(recorded);
    let downstream = TRACER.span("downstream").child_of(&child.context()).start();
    assert_eq!(downstream.context().trace_id, child.context().trace_id);
}

#[test]
fn tracestate_keys_follow_the_level_1_grammar() {
    let tenant = |n: usize| format!("{}@sys=1", "t".repeat(n));
    let system = |n: usize| format!("tenant@{}=1", "s".repeat(n));
    let simple = |n: usize| format!("{}=1", "k".repeat(n));
    for good in [
        "rojo=1".to_string(),
        "a1_-*/=1".to_string(),
        "1tenant@vendor=1".to_string(),
        "t@v0_-*/=1".to_string(),
        tenant(241),
        system(14),
        simple(256),
    ] {
        assert!(w3c::TraceState::parse(&good).is_ok(), "{good:?}");
    }
    for bad in [
        // The W3C test suite's test_tracestate_key_illegal_vendor_format.
        "foo@=1,bar=2".to_string(),
        "@foo=1".to_string(),
        "foo@@bar=1".to_string(),
        "foo@bar@baz=1".to_string(),
        "tenant@1vendor=1".to_string(),
        "tenant@_vendor=1".to_string(),
        "_tenant@vendor=1".to_string(),
        // A simple key starts with a letter; only a tenant id may start with a digit.
        "1abc=1".to_string(),
        tenant(242),
        system(15),
        simple(257),
    ] {
        assert!(w3c::TraceState::parse(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_jaeger_debug_id_asks_for_a_debug_trace() {
    use microspan::Sampler;
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    // A sampler that samples nothing: the debug request is traced all the same.
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(1))
        .with_sampler(Sampler::Const(false));

    let headers = [
        ("Jaeger-Debug-Id", " my-debug-request "),
        ("uberctx-user", "bob"),
    ];
    let lookup = |n: &str| match n {
        "jaeger-debug-id" => Some("my-debug-request"),
        "jaeger-baggage" => Some("user=bob"),
        _ => None,
    };
    for ex in [
        jaeger::extract_from_headers::<2>(headers.iter().copied()).unwrap(),
        jaeger::extract::<2>(lookup).unwrap(),
    ] {
        assert!(!ex.context.is_valid());
        assert!(ex.context.flags.is_debug() && ex.context.flags.is_sampled());
        assert_eq!(ex.debug_id.as_str(), "my-debug-request");
        assert!(!ex.debug_id_cut);
        assert_eq!(ex.baggage.get("user"), Some("bob"));
        let root = TRACER.span("request").extracted(ex).start();
        assert!(root.is_recording() && root.context().is_valid());
        assert!(root.context().flags.is_debug());
        assert_eq!(root.baggage_item("user"), Some("bob"));
    }

    // Beside an uber-trace-id it is ignored, as the clients ignore it.
    let headers = [("uber-trace-id", "1:2:0:0"), ("jaeger-debug-id", "x")];
    let ex: Extracted<0> = jaeger::extract_from_headers(headers.iter().copied()).unwrap();
    assert!(ex.context.is_valid() && !ex.context.flags.is_debug());
    assert!(ex.debug_id.is_empty());
    assert!(!TRACER.span("follow").extracted(ex).start().is_recording());

    // A blank one is none; a long one is cut at the tag string's capacity.
    assert!(matches!(
        jaeger::extract_from_headers::<0>([("jaeger-debug-id", "  ")].iter().copied()),
        Err(ExtractError::NotFound)
    ));
    let long = "d".repeat(microspan::config::MAX_STR_LEN + 5);
    let ex: Extracted<0> =
        jaeger::extract_from_headers([("jaeger-debug-id", long.as_str())].iter().copied()).unwrap();
    assert_eq!(ex.debug_id.len(), microspan::config::MAX_STR_LEN);
    assert!(ex.debug_id_cut);
}

#[test]
fn the_jaeger_firehose_flag_is_passed_on() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(1));
    // Sampled and firehose; bit 2 (unassigned) is dropped.
    let c = jaeger::parse_uber_trace_id("abc:def:0:d").unwrap();
    assert!(c.flags.is_sampled() && c.flags.is_firehose());
    assert_eq!(c.flags, Flags(9));
    assert!(jaeger::UberTraceId(&c).to_string().ends_with(":09"));
    // Through a span that continues it, into what its child injects, in both carriers.
    let span = TRACER.span("hop").child_of(&c).start();
    let child = span.child("next");
    let ctx = child.context();
    assert!(ctx.flags.is_firehose());
    assert!(jaeger::UberTraceId(&ctx).to_string().ends_with(":09"));
    let mut buf = [0u8; 64];
    let n = binary::inject(&ctx, &Baggage::<0>::new(), &mut buf).unwrap();
    let ex: Extracted<0> = binary::extract(&buf[..n]).unwrap();
    assert_eq!(ex.context.flags, Flags(9));
    // W3C has no such bit: only `sampled` is written.
    assert!(w3c::Traceparent(&ctx).to_string().ends_with("-01"));
}

/// The propagation errors are `core::error::Error`s: `?` boxes them like any other error, and the
/// message is their `Display`.
#[test]
fn errors_are_std_errors() {
    fn first_hop(carrier: &[u8]) -> Result<Extracted<0>, Box<dyn std::error::Error>> {
        Ok(binary::extract(carrier)?)
    }
    let e = first_hop(&[]).unwrap_err();
    assert_eq!(e.to_string(), "no span context in the carrier");
    let inject: Box<dyn std::error::Error + Send + Sync> =
        microspan::InjectError::BufferTooSmall { needed: 27 }.into();
    assert_eq!(inject.to_string(), "carrier too small: 27 bytes needed");
    assert!(inject.source().is_none());
}

/// Ids display as Jaeger shows them: lower-case hex, 32 digits for a trace, 16 for a span,
/// leading zeros kept.
#[test]
fn ids_display_as_hex() {
    let ctx = SpanContext {
        trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
        span_id: SpanId(0x00f067aa0ba902b7),
        flags: Flags::SAMPLED,
    };
    assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ctx.span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(TraceId(1).to_string(), format!("{:0>32}", 1));
    // The same text as the W3C carrier's trace-id and parent-id fields.
    let mut buf = [0u8; 64];
    let mut w = SliceWriter::new(&mut buf);
    w3c::write_traceparent(&ctx, &mut w).unwrap();
    assert_eq!(
        w.as_str(),
        format!("00-{}-{}-01", ctx.trace_id, ctx.span_id)
    );
}
