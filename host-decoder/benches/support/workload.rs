//! A realistic device stream, recorded with the core tracer on a manual clock and drained to bytes.
//!
//! Shared by the criterion bench (`benches/decode.rs`), the hostile-input tests and the fuzz seed
//! corpus (`tests/support/mod.rs` includes this file with `#[path]`).
//!
//! Each trace is the reference trace (`in-process-service` → `Foo` → `Bar`, 1 MHz clock, the
//! sleeps shortened a hundredfold), optionally with its tags and log (`http.method`,
//! `http.status_code` on `Foo`; `error=true` and the `event`/`message` log on `Bar`), and with
//! extras on some traces: baggage on the root, a FollowsFrom consumer carrying an extra reference,
//! and a span whose parent is a remote context.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use microspan::{
    Baggage, Clock, Drain, Flags, RefKind, Ring, Session, Span, SpanContext, SpanId, TraceId,
    Tracer,
};

/// A 1 MHz clock advanced by hand.
pub struct ManualClock(AtomicU32);

impl ManualClock {
    /// A clock at `start` ticks.
    pub const fn new(start: u32) -> Self {
        Self(AtomicU32::new(start))
    }
    /// Moves the clock forward.
    pub fn advance(&self, ticks: u32) {
        self.0.fetch_add(ticks, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    fn ticks_per_second(&self) -> u32 {
        1_000_000
    }
}

/// What each trace carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Tags on `Foo` and `Bar`.
    pub tags: bool,
    /// The log on `Bar`.
    pub logs: bool,
    /// Every 4th trace: baggage on the root; every 8th: a FollowsFrom consumer with an extra
    /// reference, and a child of a remote context.
    pub extras: bool,
}

impl Workload {
    /// The reference trace alone.
    pub const BARE: Self = Self {
        tags: false,
        logs: false,
        extras: false,
    };
    /// The reference trace with its tags and log.
    pub const REFERENCE: Self = Self {
        tags: true,
        logs: true,
        extras: false,
    };
    /// Everything: tags, logs, baggage, references, remote parents.
    pub const FULL: Self = Self {
        tags: true,
        logs: true,
        extras: true,
    };
}

/// A recorded stream.
pub struct Recorded {
    /// The wire bytes, as the device sent them.
    pub bytes: Vec<u8>,
    /// Spans recorded (every one finished).
    pub spans: u64,
    /// Traces recorded.
    pub traces: u64,
}

const WORK: u32 = 37;
const FOO_SLEEP: u32 = 10_000;
const BAR_SLEEP: u32 = 20_000;
/// Traces between two drains (the ring holds them comfortably).
const DRAIN_EVERY: usize = 16;

/// Records `traces` traces of `workload` into a fresh tracer (leaked: a tracer and its drain live
/// for the program, as on a device) and drains them. Panics if the ring overflowed.
pub fn record(traces: usize, workload: Workload) -> Recorded {
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new(123_456)));
    let ring: &'static Ring<16384> = Box::leak(Box::new(Ring::new()));
    let session = Session::new("in-process-service")
        .boot_id(0xB007)
        .device_id(0xD1CE)
        .firmware_version("1.2.3");
    let tracer: &'static Tracer<'static> = Box::leak(Box::new(Tracer::new(
        ring,
        clock,
        Box::leak(Box::new(session)),
    )));
    let mut drain: Drain<'static, 256> = Drain::new(tracer).expect("a fresh tracer has no drain");
    let mut bytes = Vec::new();
    let mut spans = 0u64;
    let remote = SpanContext {
        trace_id: TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        span_id: SpanId(0x00f0_67aa_0ba9_02b7),
        flags: Flags::SAMPLED,
    };
    for i in 0..traces {
        let mut root: Span<'_, 2> = tracer
            .span("in-process-service")
            .with_baggage(Baggage::<2>::new())
            .start();
        if workload.extras && i % 4 == 0 {
            root.set_baggage("user", "alice");
        }
        clock.advance(WORK);
        {
            let foo_span = root.child("Foo");
            if workload.tags {
                foo_span.set_tag("http.method", "GET");
                foo_span.set_tag("http.status_code", 200u32);
            }
            clock.advance(FOO_SLEEP);
            {
                let bar = foo_span.child("Bar");
                clock.advance(BAR_SLEEP);
                if workload.logs {
                    bar.log([
                        ("event", "error".into()),
                        ("message", "something wrong".into()),
                    ]);
                }
                if workload.tags {
                    bar.set_tag("error", true);
                }
            }
            clock.advance(WORK);
        }
        spans += 3;
        if workload.extras && i % 8 == 0 {
            let producer = root.context();
            let consumer = tracer.span("consume").follows_from(&producer).start();
            consumer.add_reference(RefKind::FollowsFrom, &remote);
            clock.advance(WORK);
            let from_remote = tracer.span("from-remote").child_of(&remote).start();
            clock.advance(WORK);
            drop(from_remote);
            drop(consumer);
            spans += 2;
        }
        clock.advance(WORK);
        root.finish();
        if (i + 1) % DRAIN_EVERY == 0 {
            drain_into(&mut drain, &mut bytes);
        }
    }
    drain_into(&mut drain, &mut bytes);
    assert_eq!(
        tracer.dropped(),
        0,
        "the ring overflowed while recording the workload"
    );
    Recorded {
        bytes,
        spans,
        traces: traces as u64,
    }
}

fn drain_into(drain: &mut Drain<'static, 256>, out: &mut Vec<u8>) {
    drain.drain_with(|b| {
        out.extend_from_slice(b);
        b.len()
    });
}
