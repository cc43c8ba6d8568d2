//! The flight-recorder (overwrite-oldest) policy under many desktop threads: producers evict the
//! oldest committed records while a consumer thread drains concurrently. At the end every record a
//! producer attempted is accounted for **exactly**: delivered on the wire, or counted as lost by
//! the ring (refused on arrival, or evicted), and the last `Drops` record on the wire carries that
//! total. Every delivered record is intact (its values name the thread and iteration that wrote
//! it), delivered once, and in each thread's order (eviction only ever removes the oldest).
//!
//! `cargo test -p microspan --test stress_overwrite`; a longer soak:
//! `MICROSPAN_STRESS_ITERS=200000 cargo test -p microspan --release --test stress_overwrite`.
//!
//! # Accounting
//! As in `stress.rs`: a producer knows what it attempted (one record per sampled span start, tag,
//! log and END; a span whose start was refused has the ring count every record it skips). In this policy a committed
//! record can still be lost (evicted), so a delivered tag or END may name a span whose START was
//! evicted: such records are checked for integrity by their own values.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::{
    decode_typed, env_or, stress_iteration, tag_id, CountingClock, TValue, Typed, ROOT_NAMES,
};
use microspan::wire::decode::Parent;
use microspan::{Drain, Ring, Session, Tracer};

#[derive(Default, Debug, Clone, Copy)]
struct Produced {
    attempted: u64,
    /// Records of spans whose start was refused on arrival (the oldest record was uncommitted or
    /// being read/evicted): the START and every record the span then skipped, END included.
    refused_span_records: u64,
    /// Σ `losses().records_dropped`: tags and logs refused on arrival.
    records_refused: u64,
}

fn produce(tracer: &Tracer<'_>, thread: u32, iters: u32) -> Produced {
    let mut p = Produced::default();
    let mut text = String::with_capacity(32);
    for i in 0..iters {
        for span in stress_iteration(tracer, thread, i, &mut text) {
            p.attempted += span.records;
            if span.lost {
                p.refused_span_records += span.records;
            } else {
                p.records_refused += span.dropped;
            }
        }
        if i % 4 == 0 {
            std::thread::yield_now();
        }
    }
    p
}

fn run<const F: usize>(
    ring_evicted: &dyn Fn() -> u32,
    tracer: &Tracer<'_>,
    threads: u32,
    iters: u32,
    must_evict: bool,
) {
    let stop = AtomicBool::new(false);
    let (produced, stats, wire) = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut drain: Drain<'_, F> = Drain::new(tracer).expect("one drain");
            drain.set_epoch_frames(16);
            let mut out = Vec::with_capacity(1 << 20);
            let mut passes = 0u32;
            loop {
                let done = stop.load(Ordering::Acquire);
                let n = drain.drain_with(|b| {
                    out.extend_from_slice(b);
                    b.len()
                });
                if done {
                    break;
                }
                passes += 1;
                if n == 0 || passes % 2 == 0 {
                    // A slow consumer, so that the producers evict a lot.
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
        // Release pairs with the consumer's Acquire load: its next pass sees every commit.
        stop.store(true, Ordering::Release);
        let (stats, wire) = consumer.join().unwrap();
        (produced, stats, wire)
    });
    let total = produced.iter().fold(Produced::default(), |a, p| Produced {
        attempted: a.attempted + p.attempted,
        refused_span_records: a.refused_span_records + p.refused_span_records,
        records_refused: a.records_refused + p.records_refused,
    });
    let lost = tracer.dropped() as u64;
    let evicted = ring_evicted() as u64;
    let d = decode_typed(&wire);
    assert!(
        d.frame_errors.is_empty(),
        "{:?}",
        &d.frame_errors[..d.frame_errors.len().min(5)]
    );
    assert!(
        d.record_errors.is_empty(),
        "{:?}",
        &d.record_errors[..d.record_errors.len().min(5)]
    );
    assert_eq!(d.unresolved_names, 0);
    for (i, w) in d.frames.windows(2).enumerate() {
        assert_eq!(w[1], w[0].wrapping_add(1), "sequence gap after frame {i}");
    }
    assert_eq!(stats.oversize, 0);

    // Produced == delivered + counted as lost (refused or evicted), exactly.
    let delivered = d.spans().count() as u64;
    assert_eq!(
        total.attempted,
        delivered + lost,
        "attempted {} delivered {delivered} lost {lost} (evicted {evicted})",
        total.attempted
    );
    assert_eq!(
        d.last_drops() as u64,
        lost,
        "the last Drops record carries the final count"
    );
    assert_eq!(stats.records as u64, delivered);
    // The small ring always overflows; whether the larger one does depends on how the scheduler
    // interleaves producers and the drain, so it only checks the accounting.
    assert!(
        !must_evict || evicted > 0,
        "the test must make the producers evict"
    );
    // Refused on arrival: the refused spans' records and the tags/logs the producers saw
    // refused, plus refused ENDs of recorded spans (which a producer cannot see).
    assert!(lost - evicted >= total.refused_span_records + total.records_refused);

    // Every delivered record is intact, delivered once, and in its thread's order.
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut seen: HashSet<(&'static str, u64)> = HashSet::new();
    let mut last_iter: HashMap<(u32, &'static str), u32> = HashMap::new();
    let mut in_order = |thread: u32, kind: &'static str, iter: u32| {
        let prev = last_iter.insert((thread, kind), iter);
        assert!(
            prev.is_none_or(|p| p < iter),
            "thread {thread} {kind}: {iter} after {prev:?}"
        );
    };
    let mut ends = HashSet::new();
    for r in d.spans() {
        match r {
            Typed::Start {
                id, name, parent, ..
            } => {
                // A start that names its parent as started in its own frame (no explicit root)
                // must find it delivered: with records evicted between two records of a frame,
                // the drain must not take an evicted start for one it wrote.
                if let Parent::Local { id: p, root: None } = parent {
                    let parent_name = names.get(p).unwrap_or_else(|| {
                        panic!("{name} {id}: in-frame parent {p} never arrived")
                    });
                    assert!(
                        ROOT_NAMES.contains(&parent_name.as_str()) && parent_name[1..] == name[1..],
                        "{name} {id}: parent {parent_name} {p}"
                    );
                }
                assert!(
                    names.insert(*id, name.clone()).is_none(),
                    "span {id} started twice"
                );
            }
            Typed::Tag { span, key, value } => {
                let (kind, who) = match (key.as_str(), value) {
                    ("id", TValue::U64(v)) => ("id", *v),
                    ("seq", TValue::I64(v)) => ("seq", *v as u64),
                    ("txt", TValue::Str(t)) => {
                        let (a, b) = t
                            .strip_prefix('t')
                            .and_then(|t| t.split_once('-'))
                            .unwrap_or_else(|| panic!("torn text {t:?}"));
                        ("txt", tag_id(a.parse().unwrap(), b.parse().unwrap()))
                    }
                    other => panic!("unexpected tag {other:?}"),
                };
                if let Some(name) = names.get(span) {
                    assert_eq!(
                        name[1..].parse::<u64>().unwrap(),
                        who >> 32,
                        "tag on another thread's span"
                    );
                }
                assert!(seen.insert((kind, who)), "duplicate {kind} {who:x}");
                in_order((who >> 32) as u32, kind, who as u32);
            }
            Typed::Log { fields, .. } => {
                let [(k0, v0), (k1, v1), (k2, v2)] = &fields[..] else {
                    panic!("torn log {fields:?}")
                };
                assert_eq!((k0.as_str(), v0), ("event", &TValue::Str("work".into())));
                assert_eq!((k1.as_str(), k2.as_str()), ("n", "f"));
                let TValue::U64(n) = v1 else { panic!("{v1:?}") };
                assert_eq!(v2, &TValue::F64(*n as u32 as f64), "torn log");
                assert!(seen.insert(("log", *n)), "duplicate log {n:x}");
                in_order((*n >> 32) as u32, "log", *n as u32);
            }
            Typed::End { span, .. } => {
                assert!(ends.insert(*span), "span {span} ended twice");
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    eprintln!(
        "stress (overwrite): {threads} threads x {iters} iterations, ring {} words: {} attempted, {delivered} delivered, {lost} lost ({evicted} evicted, {} refused)",
        tracer.session().service,
        total.attempted,
        lost - evicted,
    );
}

#[test]
fn many_threads_small_flight_recorder() {
    static CLOCK: CountingClock = CountingClock(AtomicU32::new(u32::MAX - 5_000));
    static RING: Ring<256> = Ring::flight_recorder();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("256"));
    run::<128>(
        &|| RING.evicted(),
        &TRACER,
        env_or("MICROSPAN_STRESS_THREADS", 8),
        env_or("MICROSPAN_STRESS_ITERS", 5_000),
        true,
    );
}

#[test]
fn many_threads_larger_flight_recorder() {
    static CLOCK: CountingClock = CountingClock(AtomicU32::new(u32::MAX - 5_000));
    static RING: Ring<2048> = Ring::flight_recorder();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("2048"));
    run::<512>(
        &|| RING.evicted(),
        &TRACER,
        env_or("MICROSPAN_STRESS_THREADS", 8),
        env_or("MICROSPAN_STRESS_ITERS", 5_000),
        false,
    );
}
