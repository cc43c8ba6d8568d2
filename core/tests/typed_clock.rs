//! A tracer whose clock is a concrete type (`Tracer::with_clock`, as the reference firmware and
//! the README build it) has the whole API the default `&dyn Clock` tracer has: the helpers that
//! live outside `tracer.rs` (conventions, propagation, futures) are generic over the clock too.

mod common;
use common::*;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use microspan::future::FutureExt;
use microspan::propagation::{w3c, Extracted};
use microspan::{Drain, Ring, Session, Span, Tracer};

static CLOCK: ManualClock = ManualClock::new(0);
static RING: Ring<1024> = Ring::new();
static TRACER: Tracer<'static, &'static ManualClock> =
    Tracer::with_clock(&RING, &CLOCK, &Session::new("typed"));

/// The start records' names, in order.
fn starts(records: &[Owned]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match r {
            Owned::Start { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn typed_clock_tracer_has_the_whole_api() {
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    // Propagation: continue a context extracted from W3C headers.
    let headers = [(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )];
    let ex: Extracted<0> = w3c::extract_from_headers(headers.iter().copied()).unwrap();
    let handle: Span<'_, 0, &ManualClock> = TRACER.span("handle").extracted(ex).start();
    assert_eq!(
        handle.context().trace_id.0,
        0x4bf92f3577b34da6a3ce929d0e0e4736
    );

    // Conventions: the OpenTracing error marking.
    handle.set_error("timeout", "no answer");

    // Futures: a span open until the future completes.
    let mut fut = pin!(async { 7u32 }.in_span(handle.child("read")));
    assert!(fut.span().is_some());
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(7));
    assert!(fut.span().is_none(), "finished when the future completed");
    drop(handle);

    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    assert_eq!(starts(&d.records), ["handle", "read"]);
    assert!(d.records.iter().any(|r| matches!(
        r,
        Owned::Tag { key, value, .. } if key == "error" && value == "true"
    )));
    let log = d
        .records
        .iter()
        .find_map(|r| match r {
            Owned::Log { fields, .. } => Some(fields.clone()),
            _ => None,
        })
        .expect("the error log");
    assert_eq!(
        log,
        [
            ("event".to_string(), "\"error\"".to_string()),
            ("error.kind".to_string(), "\"timeout\"".to_string()),
            ("message".to_string(), "\"no answer\"".to_string()),
        ]
    );
    let ends = d
        .records
        .iter()
        .filter(|r| matches!(r, Owned::End { .. }))
        .count();
    assert_eq!(ends, 2);
}
