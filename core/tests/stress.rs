//! Many desktop threads record into a deliberately small ring while a consumer thread drains it
//! continuously. At the end, every record a producer attempted is accounted for **exactly**:
//! either decoded from the wire, or counted as dropped (by the ring's counter and by the last
//! `Drops` record on the wire); every delivered record is intact (its values name the thread and
//! iteration that wrote it, so a torn, duplicated or misattributed record is caught); no frame has
//! a CRC error and no sequence number is skipped.
//!
//! `cargo test -p microspan --test stress` runs a short version (a few seconds in debug).
//! A longer soak: `MICROSPAN_STRESS_ITERS=200000 cargo test -p microspan --release --test stress`
//! (iterations per producer thread; `MICROSPAN_STRESS_THREADS` sets the producer count).
//!
//! # Accounting
//! A producer knows what it *attempted*: one record per sampled span start, tag, log and END. A
//! span whose start was dropped writes nothing more, and the ring counts every record it skips
//! (its END with its START; its children still record, with a START_REMOTE). A dropped tag or
//! log of a recorded span is counted on the span (`losses().records_dropped`) and, like every
//! drop, in the ring's counter. A dropped END of a recorded span is counted in the ring's counter
//! only, so `ring drops = lost spans' records + Σ records_dropped + lost ends`, and the lost ends
//! must be exactly the spans whose START was delivered but whose END was not.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::{decode_typed, env_or, stress_iteration, tag_id, CountingClock, TValue, Typed};
use microspan::wire::decode::Parent;
use microspan::{Drain, Ring, Session, Tracer};

/// What one producer thread attempted and saw dropped.
#[derive(Default, Debug, Clone, Copy)]
struct Produced {
    /// Records attempted (each either committed or counted as dropped by the ring).
    attempted: u64,
    /// Records of spans whose start was dropped (`is_recording()` false right after the start):
    /// the START and every record the span then skipped, its END included.
    lost_span_records: u64,
    /// Spans whose start was recorded (each attempts one END).
    recorded: u64,
    /// Σ `losses().records_dropped` over recorded spans (tags and logs dropped).
    records_dropped: u64,
}

/// One producer: `iters` iterations of a root with one tag, and a child with an integer tag, a
/// copied-string tag and a log of three fields (its values identify thread and iteration).
fn produce(tracer: &Tracer<'_>, thread: u32, iters: u32) -> Produced {
    let mut p = Produced::default();
    let mut text = String::with_capacity(32);
    for i in 0..iters {
        for span in stress_iteration(tracer, thread, i, &mut text) {
            p.attempted += span.records;
            if span.lost {
                p.lost_span_records += span.records;
            } else {
                p.recorded += 1;
                p.records_dropped += span.dropped;
                assert!(
                    span.dropped < span.records - 1,
                    "START and END are never counted here"
                );
            }
        }
        if i % 4 == 0 {
            std::thread::yield_now();
        }
    }
    p
}

/// Everything the decoder saw about one span.
#[derive(Default, Debug)]
struct SpanSeen {
    name: String,
    start_time: u64,
    #[allow(dead_code)]
    parent: Option<Parent>,
    /// (thread, iteration) named by the span's records.
    who: Option<(u32, u32)>,
    tags: u32,
    logs: u32,
    end: Option<(u64, u8)>,
}

fn run<const F: usize>(tracer: &Tracer<'_>, threads: u32, iters: u32) {
    let stop = AtomicBool::new(false);
    let (produced, stats, wire) = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut drain: Drain<'_, F> = Drain::new(tracer).expect("one drain");
            drain.set_epoch_frames(16);
            let mut out = Vec::with_capacity(1 << 20);
            loop {
                let done = stop.load(Ordering::Acquire);
                let n = drain.drain_with(|b| {
                    out.extend_from_slice(b);
                    b.len()
                });
                if done {
                    // Producers have all been joined: this last pass saw everything they committed.
                    break;
                }
                if n == 0 {
                    std::thread::yield_now();
                }
            }
            assert!(
                !drain.has_pending(),
                "the ring must be empty after the final drain"
            );
            (drain.stats(), out)
        });
        let producers: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || produce(tracer, t, iters)))
            .collect();
        let produced: Vec<Produced> = producers.into_iter().map(|h| h.join().unwrap()).collect();
        // Release pairs with the consumer's Acquire load: every producer's records were committed
        // before it was joined, so the consumer's next pass sees them all.
        stop.store(true, Ordering::Release);
        let (stats, wire) = consumer.join().unwrap();
        (produced, stats, wire)
    });

    let total = produced.iter().fold(Produced::default(), |a, p| Produced {
        attempted: a.attempted + p.attempted,
        lost_span_records: a.lost_span_records + p.lost_span_records,
        recorded: a.recorded + p.recorded,
        records_dropped: a.records_dropped + p.records_dropped,
    });
    let ring_drops = tracer.dropped() as u64;
    let d = decode_typed(&wire);

    // The stream is clean.
    assert!(
        d.frame_errors.is_empty(),
        "frame errors: {:?}",
        &d.frame_errors[..d.frame_errors.len().min(5)]
    );
    assert!(
        d.record_errors.is_empty(),
        "record errors: {:?}",
        &d.record_errors[..d.record_errors.len().min(5)]
    );
    assert_eq!(d.unresolved_names, 0);
    for (i, w) in d.frames.windows(2).enumerate() {
        assert_eq!(w[1], w[0].wrapping_add(1), "sequence gap after frame {i}");
    }
    assert_eq!(d.frames.len() as u32, stats.frames);
    assert_eq!(stats.oversize, 0, "no record is larger than a frame here");

    // Produced == delivered + counted as dropped, exactly.
    let delivered = d.spans().count() as u64;
    assert_eq!(
        total.attempted,
        delivered + ring_drops,
        "attempted {} delivered {delivered} dropped {ring_drops}",
        total.attempted
    );
    assert_eq!(
        d.last_drops() as u64,
        ring_drops,
        "the last Drops record carries the final count"
    );
    assert_eq!(stats.records as u64, delivered);

    // Every delivered record is intact and belongs to the span it names.
    let mut spans: HashMap<u32, SpanSeen> = HashMap::new();
    let mut seen_values: HashSet<(String, u64)> = HashSet::new();
    let who_of = |v: u64| ((v >> 32) as u32, v as u32);
    for r in d.spans() {
        match r {
            Typed::Start {
                id,
                parent,
                name,
                time,
                follows_from,
                debug,
            } => {
                assert!(!follows_from && !debug);
                let prev = spans.insert(
                    *id,
                    SpanSeen {
                        name: name.clone(),
                        start_time: *time,
                        parent: Some(*parent),
                        ..Default::default()
                    },
                );
                assert!(prev.is_none(), "span id {id} started twice");
                match parent {
                    Parent::Root => assert!(name.starts_with('r'), "{name}"),
                    Parent::Local { id: p, .. } => {
                        assert!(name.starts_with('c'), "{name}");
                        let parent = spans
                            .get(p)
                            .unwrap_or_else(|| panic!("parent {p} of {id} never started"));
                        assert_eq!(
                            parent.name[1..],
                            name[1..],
                            "child {id} under another thread's root"
                        );
                        assert!(
                            parent.end.is_none(),
                            "child {id} started after its parent {p} ended"
                        );
                    }
                    Parent::Remote { span, .. } => {
                        // The parent's start was dropped.
                        assert!(name.starts_with('c') && span.is_none(), "{name} {parent:?}");
                    }
                    Parent::LocalInTrace { .. } => {
                        panic!("{name}: no trace of this test comes from elsewhere: {parent:?}")
                    }
                }
            }
            Typed::Tag { span, key, value } => {
                let s = spans
                    .get_mut(span)
                    .unwrap_or_else(|| panic!("tag on unknown span {span}"));
                assert!(s.end.is_none(), "tag after end");
                let thread: u32 = s.name[1..].parse().unwrap();
                let who = match (key.as_str(), value) {
                    ("id", TValue::U64(v)) if s.name.starts_with('r') => who_of(*v),
                    ("seq", TValue::I64(v)) if s.name.starts_with('c') => who_of(*v as u64),
                    ("txt", TValue::Str(t)) if s.name.starts_with('c') => {
                        let (a, b) = t
                            .strip_prefix('t')
                            .and_then(|t| t.split_once('-'))
                            .unwrap_or_else(|| panic!("torn text {t:?}"));
                        (a.parse().unwrap(), b.parse().unwrap())
                    }
                    other => panic!("unexpected tag {other:?} on {}", s.name),
                };
                assert_eq!(
                    who.0, thread,
                    "tag of thread {} on a span of thread {thread}",
                    who.0
                );
                assert_eq!(
                    *s.who.get_or_insert(who),
                    who,
                    "records of one span name different iterations"
                );
                assert!(
                    seen_values.insert((key.clone(), tag_id(who.0, who.1))),
                    "duplicate tag {key} {who:?}"
                );
                s.tags += 1;
            }
            Typed::Log { span, time, fields } => {
                let s = spans
                    .get_mut(span)
                    .unwrap_or_else(|| panic!("log on unknown span {span}"));
                assert!(s.end.is_none() && *time > s.start_time);
                let thread: u32 = s.name[1..].parse().unwrap();
                let [(k0, v0), (k1, v1), (k2, v2)] = &fields[..] else {
                    panic!("torn log {fields:?}")
                };
                assert_eq!((k0.as_str(), v0), ("event", &TValue::Str("work".into())));
                assert_eq!((k1.as_str(), k2.as_str()), ("n", "f"));
                let TValue::U64(n) = v1 else { panic!("{v1:?}") };
                let who = who_of(*n);
                assert_eq!(v2, &TValue::F64(who.1 as f64));
                assert_eq!(who.0, thread);
                assert_eq!(*s.who.get_or_insert(who), who);
                assert!(
                    seen_values.insert(("log".into(), *n)),
                    "duplicate log {who:?}"
                );
                s.logs += 1;
            }
            Typed::End { span, time, losses } => {
                let s = spans
                    .get_mut(span)
                    .unwrap_or_else(|| panic!("end of unknown span {span}"));
                assert!(s.end.is_none(), "span {span} ended twice");
                assert!(*time > s.start_time, "end before start");
                assert_eq!(
                    (
                        losses.tags_over_capacity,
                        losses.fields_over_capacity,
                        losses.strings_truncated
                    ),
                    (0, 0, 0)
                );
                s.end = Some((*time, losses.records_dropped));
            }
            other => panic!("unexpected record {other:?}"),
        }
    }

    // Per span: delivered tags and logs + those the END says were dropped == what was attempted.
    let mut ends_lost = 0u64;
    let mut dropped_on_ended_spans = 0u64;
    for (id, s) in &spans {
        let attempted = if s.name.starts_with('r') { 1 } else { 3 };
        match s.end {
            Some((_, dropped)) => {
                assert_eq!(
                    s.tags + s.logs + dropped as u32,
                    attempted,
                    "span {id} {s:?}"
                );
                dropped_on_ended_spans += dropped as u64;
            }
            None => {
                ends_lost += 1;
                assert!(s.tags + s.logs <= attempted);
            }
        }
    }
    // Every recorded span's START was delivered (a committed record is never lost).
    assert_eq!(
        spans.len() as u64,
        total.recorded,
        "recorded spans whose START was not delivered"
    );
    assert_eq!(
        ring_drops,
        total.lost_span_records + total.records_dropped + ends_lost,
        "ring drops = lost spans' records + lost tags/logs + lost ends"
    );
    assert!(dropped_on_ended_spans <= total.records_dropped);

    eprintln!(
        "stress: {threads} threads x {iters} iterations, ring {} words, frames of {F} bytes: {} records attempted, {delivered} delivered ({} frames, {} bytes), {ring_drops} dropped ({} of lost spans, {} tags/logs, {ends_lost} ends)",
        tracer.session().service,
        total.attempted,
        stats.frames,
        wire.len(),
        total.lost_span_records,
        total.records_dropped,
    );
}

/// A small ring that fills all the time: most of the accounting is about drops.
#[test]
fn many_threads_small_ring() {
    static CLOCK: CountingClock = CountingClock(AtomicU32::new(u32::MAX - 5_000));
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("256"));
    run::<128>(
        &TRACER,
        env_or("MICROSPAN_STRESS_THREADS", 8),
        env_or("MICROSPAN_STRESS_ITERS", 5_000),
    );
}

/// A ring big enough that drops are occasional: most records are delivered, across many frames.
#[test]
fn many_threads_larger_ring() {
    static CLOCK: CountingClock = CountingClock(AtomicU32::new(u32::MAX - 5_000));
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("4096"));
    run::<512>(
        &TRACER,
        env_or("MICROSPAN_STRESS_THREADS", 8),
        env_or("MICROSPAN_STRESS_ITERS", 5_000),
    );
}
