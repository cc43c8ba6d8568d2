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
    proptest::collection::vec(
        (
            proptest::string::string_regex(&format!("[a-zA-Z0-9_.!~-]{{1,{MAX_BAGGAGE_KEY_LEN}}}"))
                .unwrap(),
            any::<String>(),
        ),
        0..4,
    )
    .prop_map(|items| {
        let mut b = Baggage::new();
        for (k, v) in items {
            // Values are cut to the capacity first, as the span would store them.
            let mut end = v.len().min(MAX_BAGGAGE_VALUE_LEN);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            b.set(&k, &v[..end]);
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
        let headers = headers_of(|set| { w3c::inject(&ctx, &bag, set).unwrap(); });
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

    #[test]
    fn jaeger_roundtrip(ctx in context(), bag in baggage()) {
        let headers = headers_of(|set| { jaeger::inject(&ctx, &bag, set).unwrap(); });
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
}
