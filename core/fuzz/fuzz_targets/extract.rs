//! Every extractor on arbitrary input: no panic, and whatever extracts re-injects and extracts to
//! the same context and baggage.
#![no_main]

use libfuzzer_sys::fuzz_target;
use microspan::propagation::{binary, jaeger, w3c, Extracted};

fuzz_target!(|data: &[u8]| {
    // Binary carrier.
    if let Ok(ex) = binary::extract::<4>(data) {
        let mut buf = [0u8; binary::max_len(4)];
        let n = binary::inject(&ex.context, &ex.baggage, &mut buf).expect("fits max_len");
        let again: Extracted<4> = binary::extract(&buf[..n]).expect("re-extracts");
        assert_eq!(again.context, ex.context);
        assert_eq!(again.baggage, ex.baggage);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Split into header pairs on newlines and the first ':' (so one input exercises several
    // headers, repeated names, odd case).
    let pairs: Vec<(&str, &str)> = text
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .collect();
    let _ = w3c::parse_traceparent(text);
    let _ = w3c::TraceState::parse(text);
    let _ = jaeger::parse_uber_trace_id(text);
    // Baggage without `traceparent` gives no context, which no `traceparent` can carry back:
    // only a real context is written and read again (as for Jaeger below).
    if let Ok(ex) = w3c::extract_from_headers::<4>(pairs.iter().copied())
        .map_err(drop)
        .and_then(|ex| if ex.context.is_valid() { Ok(ex) } else { Err(()) })
    {
        let mut out = Vec::new();
        w3c::inject(&ex.context, &ex.baggage, |k, v| {
            out.push((k.to_string(), v.to_string()));
            Ok(())
        })
        .unwrap();
        let re: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let again: Extracted<4> = w3c::extract_from_headers(re.iter().copied()).expect("re-extracts");
        assert_eq!(again.context, ex.context);
        assert_eq!(again.baggage, ex.baggage);
    }
    // Baggage headers alone (`jaeger-baggage`, `uberctx-`) give baggage and no context, which
    // no `uber-trace-id` can carry back: only a real context is written and read again.
    if let Ok(ex) = jaeger::extract_from_headers::<4>(pairs.iter().copied())
        .map_err(drop)
        .and_then(|ex| if ex.context.is_valid() { Ok(ex) } else { Err(()) })
    {
        let mut out = Vec::new();
        jaeger::inject(&ex.context, &ex.baggage, |k, v| {
            out.push((k.to_string(), v.to_string()));
            Ok(())
        })
        .unwrap();
        let re: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let again: Extracted<4> = jaeger::extract_from_headers(re.iter().copied()).expect("re-extracts");
        assert_eq!(again.context, ex.context);
        assert_eq!(again.baggage, ex.baggage);
    }
    let lookup = |name: &str| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let _ = w3c::extract::<2>(lookup);
    let _ = w3c::extract_tracestate(lookup);
    let _ = jaeger::extract::<2>(lookup);
});
