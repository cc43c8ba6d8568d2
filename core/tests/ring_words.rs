//! Ring words per record kind: the table of `core/README.md`'s "Sizing the ring", checked.
//!
//! The README gives the figures of a 32-bit microcontroller, where a pointer (a span name, a tag
//! key, a `&'static str` value) takes one word; on a 64-bit host it takes two, which the
//! expected values below account for through `P`. A span's local id is the ring position of its
//! start record, so the words between two starts are read off their ids.
//!
//! `cargo test -p microspan --test ring_words -- --nocapture` prints the table for the target
//! it runs on.

mod common;
use common::ManualClock;

use microspan::config::MAX_STR_LEN;
use microspan::{
    Baggage, Flags, RefKind, Ring, Sampler, Session, Span, SpanContext, SpanId, TraceId, Tracer,
    Value,
};

/// Words of a pointer: 1 on 32-bit targets, 2 on 64-bit ones.
const P: u32 = (size_of::<usize>() / 4) as u32;

static CLOCK: ManualClock = ManualClock::new(1_000);
static RING: Ring<4096> = Ring::new();
static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("ring-words"));

/// The ring position of a span's start record.
fn pos<const B: usize>(span: &Span<'_, B>) -> u32 {
    span.context().span_id.0 as u32
}

/// Starts a root and leaves it open (no END record): the position of its START.
fn probe() -> u32 {
    let span = TRACER.root("probe");
    let p = pos(&span);
    std::mem::forget(span);
    p
}

/// Words `record` wrote into the ring: between two probe starts, less the first probe's START.
fn words(record: impl FnOnce()) -> u32 {
    let before = probe();
    record();
    let after = probe();
    after - before - start_words()
}

fn start_words() -> u32 {
    let a = probe();
    let b = probe();
    b - a
}

/// Words of a TAG record holding `value` on an open root (the root's START not counted).
fn tag_words(value: Value<'_>) -> u32 {
    words(|| {
        let span = TRACER.root("t");
        span.set_tag("k", value);
        std::mem::forget(span);
    }) - start_words()
}

/// Words of a LOG record holding `fields` on an open root (the root's START not counted).
fn log_words(fields: &[(&'static str, Value<'_>)]) -> u32 {
    words(|| {
        let span = TRACER.root("t");
        span.log(fields);
        std::mem::forget(span);
    }) - start_words()
}

/// ⌈n/4⌉.
fn byte_words(n: usize) -> u32 {
    n.div_ceil(4) as u32
}

#[test]
fn words_per_record_kind() {
    let mut table: Vec<(String, u32)> = Vec::new();
    let mut check = |what: &str, measured: u32, expected: u32| {
        assert_eq!(measured, expected, "{what} (P = {P})");
        table.push((what.to_string(), measured));
    };

    check("span start (START)", start_words(), 4 + P);
    check(
        "leaf span: START + END",
        words(|| TRACER.root("leaf").finish()),
        7 + P,
    );
    check(
        "child start",
        words(|| {
            let root = TRACER.root("r");
            let child = root.child("c");
            assert_eq!(pos(&child) - pos(&root), 4 + P);
            std::mem::forget(child);
            std::mem::forget(root);
        }) - (4 + P),
        4 + P,
    );
    let remote = SpanContext {
        trace_id: TraceId(0x1234_5678),
        span_id: SpanId(0x9abc),
        flags: Flags::SAMPLED,
    };
    check(
        "start of a child of a remote context (START_REMOTE)",
        words(|| std::mem::forget(TRACER.span("c").child_of(&remote).start())),
        8 + P,
    );
    check(
        "END with losses (root + 17 bool tags, one over capacity, finished)",
        words(|| {
            let span = TRACER.root("t");
            for _ in 0..microspan::config::MAX_TAGS_PER_SPAN + 1 {
                span.set_tag("b", true);
            }
            assert_eq!(span.losses().tags_over_capacity, 1);
            span.finish();
        }) - (4 + P)
            - microspan::config::MAX_TAGS_PER_SPAN as u32 * (3 + P),
        4,
    );

    check("TAG bool", tag_words(true.into()), 3 + P);
    check("TAG u32", tag_words(7u32.into()), 5 + P);
    check("TAG i64", tag_words((-7i64).into()), 5 + P);
    check("TAG f64", tag_words(1.5f64.into()), 5 + P);
    check("TAG &'static str", tag_words("server".into()), 3 + 2 * P);
    let text = "x".repeat(MAX_STR_LEN + 10);
    for n in [
        0,
        1,
        4,
        5,
        19,
        MAX_STR_LEN,
        MAX_STR_LEN + 1,
        MAX_STR_LEN + 10,
    ] {
        check(
            &format!("TAG Value::text of {n} bytes"),
            tag_words(Value::text(&text[..n])),
            3 + P + byte_words(n.min(MAX_STR_LEN)),
        );
    }

    check("LOG, no field", log_words(&[]), 3);
    check("LOG, one bool", log_words(&[("b", true.into())]), 3 + 1 + P);
    check(
        "LOG, one number",
        log_words(&[("n", 1u32.into())]),
        3 + 3 + P,
    );
    check(
        "LOG, one &'static str",
        log_words(&[("event", "error".into())]),
        3 + 1 + 2 * P,
    );
    check(
        "LOG, one Value::text of 10 bytes",
        log_words(&[("m", Value::text("0123456789"))]),
        3 + 1 + P + 3,
    );
    check(
        "LOG, two &'static str (Bar's log in the reference trace)",
        log_words(&[
            ("event", "error".into()),
            ("message", "something wrong".into()),
        ]),
        3 + 2 * (1 + 2 * P),
    );

    for (key, value) in [("request.id", "42"), ("k", ""), ("abcde", "fghij")] {
        check(
            &format!("BAGGAGE {key}={value}"),
            words(|| {
                let mut span = TRACER.span("t").with_baggage(Baggage::<1>::new()).start();
                span.set_baggage(key, value);
                std::mem::forget(span);
            }) - (4 + P),
            2 + byte_words(key.len()) + byte_words(value.len()),
        );
    }

    check(
        "REF (add_reference)",
        words(|| {
            let span = TRACER.root("t");
            span.add_reference(RefKind::FollowsFrom, &remote);
            std::mem::forget(span);
        }) - (4 + P),
        8,
    );

    // The sampler's tags on a sampled root of a tracer configured `with_sampler`.
    static RING_C: Ring<256> = Ring::new();
    static CONST: Tracer =
        Tracer::new(&RING_C, &CLOCK, &Session::new("c")).with_sampler(Sampler::Const(true));
    static RING_R: Ring<256> = Ring::new();
    static RATE: Tracer = Tracer::new(&RING_R, &CLOCK, &Session::new("r"))
        .with_sampler(Sampler::rate_limiting(1000.0));
    for (what, tracer, param) in [
        ("Const", &CONST, 3 + P),
        ("RateLimiting (an f64 parameter)", &RATE, 5 + P),
    ] {
        let a = tracer.root("a");
        let b = tracer.root("b");
        check(
            &format!("sampler tags of a root, {what}"),
            pos(&b) - pos(&a) - (4 + P),
            (3 + 2 * P) + param,
        );
        std::mem::forget((a, b));
    }

    assert_eq!(TRACER.dropped(), 0, "the ring must not fill in this test");
    println!("\nring words per record (P = {P} words a pointer)");
    for (what, n) in table {
        println!("{n:>4}  {what}");
    }
}
