//! Bytes on the wire per span, framing included, for a steady stream of the reference workload.
//!
//! `cargo test -p microspan --test wire_size -- --nocapture` prints the table. The test fails if a
//! figure exceeds the bounds of the core issue: 8 bytes per child span without tags, 14 with two
//! small integer tags.
//!
//! Workload: the reference trace (`in-process-service` → `Foo` → `Bar`) on a 1 MHz clock, its
//! sleeps shortened a hundredfold (Foo 10 ms, Bar 20 ms), 37 µs of work between other events, the
//! drain running once every 32 traces (a busy link, full frames) or after every trace (a quiet
//! link, one small frame per trace: the worst case for framing overhead). The cost of the child
//! span alone is measured by difference: the same stream with and without `Bar`.

// `foo` and `bar` are the span names of the reference example (the Jaeger Go client's), not
// placeholders.
#![allow(clippy::disallowed_names)]

mod common;
use common::*;
use microspan::{Drain, Ring, Session, Tracer};

const FOO_SLEEP: u32 = 10_000;
const BAR_SLEEP: u32 = 20_000;
const WORK: u32 = 37;
const TRACES: usize = 2048;
const KEYS: [&str; 8] = ["http.status_code", "retries", "a", "b", "c", "d", "e", "f"];

/// Bytes of `TRACES` traces in steady state (after a warm-up, so the first epoch's session record
/// and name definitions are not counted more than their steady share).
fn stream_bytes(with_bar: bool, bar_tags: usize, drain_every: usize) -> usize {
    static CLOCK: ManualClock = ManualClock::new(123_456);
    static RING: Ring<8192> = Ring::new();
    static TRACER: Tracer = Tracer::new(
        &RING,
        &CLOCK,
        &Session::new("in-process-service").boot_id(0xB007),
    );
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let run = |n: usize, drain: &mut Drain<'_, 256>| {
        let mut out = Vec::new();
        for i in 0..n {
            let root = TRACER.root("in-process-service");
            CLOCK.advance(WORK);
            {
                let foo = root.child("Foo");
                CLOCK.advance(FOO_SLEEP);
                if with_bar {
                    let bar = foo.child("Bar");
                    for key in KEYS.iter().take(bar_tags) {
                        bar.set_tag(key, (i % 100) as u32);
                    }
                    CLOCK.advance(BAR_SLEEP);
                } else {
                    CLOCK.advance(BAR_SLEEP);
                }
                CLOCK.advance(WORK);
            }
            CLOCK.advance(WORK);
            root.finish();
            if (i + 1) % drain_every == 0 {
                out.extend_from_slice(&drain_all(drain));
            }
        }
        out.extend_from_slice(&drain_all(drain));
        out.len()
    };
    run(256, &mut drain);
    let bytes = run(TRACES, &mut drain);
    assert_eq!(
        TRACER.dropped(),
        0,
        "the ring must not overflow in this measurement"
    );
    bytes
}

#[test]
fn bytes_per_span() {
    println!("\nbytes on the wire, framing included (reference trace, 1 MHz clock, 256-byte frames, {TRACES} traces)");
    println!("| what | drained every trace | drained every 32 traces |");
    println!("|---|---|---|");
    let mut steady = Vec::new();
    for (label, f) in [
        (
            "average per span, no tags",
            (|e| stream_bytes(true, 0, e) as f64 / (3 * TRACES) as f64) as fn(usize) -> f64,
        ),
        ("child span `Bar`, no tags", |e| {
            (stream_bytes(true, 0, e) - stream_bytes(false, 0, e)) as f64 / TRACES as f64
        }),
        ("child span `Bar`, 2 small-int tags", |e| {
            (stream_bytes(true, 2, e) - stream_bytes(false, 0, e)) as f64 / TRACES as f64
        }),
        ("child span `Bar`, 8 small-int tags", |e| {
            (stream_bytes(true, 8, e) - stream_bytes(false, 0, e)) as f64 / TRACES as f64
        }),
    ] {
        let (quiet, busy) = (f(1), f(32));
        println!("| {label} | {quiet:.2} | {busy:.2} |");
        steady.push(busy);
    }
    assert!(
        steady[0] <= 8.0,
        "{:.2} bytes per span exceeds 8",
        steady[0]
    );
    assert!(
        steady[1] <= 8.0,
        "{:.2} bytes per child span exceeds 8",
        steady[1]
    );
    assert!(
        steady[2] <= 14.0,
        "{:.2} bytes per child span with two tags exceeds 14",
        steady[2]
    );
}
