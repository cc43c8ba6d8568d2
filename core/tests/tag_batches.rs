//! Tags given with a span's start (`Tracer::root_with_tags`, `Span::child_with_tags`) or in one
//! call (`Span::set_tags`) share one reservation, and reach the decoder exactly as the same tags
//! set one at a time; capacities, truncation and a full ring are counted the same way.

mod common;
use common::*;
use microspan::config::{MAX_STR_LEN, MAX_TAGS_PER_SPAN};
use microspan::{Drain, Ring, Session, Tracer, Value};

/// Tags of every value type, a copied string longer than `MAX_STR_LEN` among them.
fn every_type(long: &str) -> Vec<(&'static str, Value<'_>)> {
    vec![
        ("bool", true.into()),
        ("i64", (-5i64).into()),
        ("u64", u64::MAX.into()),
        ("f64", 1.5f64.into()),
        ("static", "a static string".into()),
        ("text", Value::text(long)),
        ("short", Value::text("tiny")),
    ]
}

/// Records the same trace twice, one tag per call and in batches, and returns both decodings.
fn record(batched: bool) -> (Vec<Owned>, [u8; 4], [u8; 4]) {
    static CLOCK: ManualClock = ManualClock::new(100);
    static RING_ONE: Ring<1024> = Ring::new();
    static RING_BATCH: Ring<1024> = Ring::new();
    static ONE: Tracer = Tracer::new(&RING_ONE, &CLOCK, &Session::new("svc"));
    static BATCH: Tracer = Tracer::new(&RING_BATCH, &CLOCK, &Session::new("svc"));
    let tracer = if batched { &BATCH } else { &ONE };
    let mut drain: Drain<'_, 256> = Drain::new(tracer).unwrap();
    let long = "x".repeat(MAX_STR_LEN + 5);
    let tags = every_type(&long);
    let (root_losses, child_losses);
    {
        let root = if batched {
            tracer.root_with_tags("root", &tags[..3])
        } else {
            let r = tracer.root("root");
            for (k, v) in &tags[..3] {
                r.set_tag(k, *v);
            }
            r
        };
        let child = if batched {
            root.child_with_tags("child", tags.as_slice())
        } else {
            let c = root.child("child");
            for (k, v) in &tags {
                c.set_tag(k, *v);
            }
            c
        };
        if batched {
            // A tuple: each value converted at compile time.
            child.set_tags((("later", 7u32), ("error", false)));
        } else {
            child.set_tag("later", 7u32);
            child.set_tag("error", false);
        }
        child_losses = child.losses();
        root_losses = root.losses();
    }
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty());
    let pack = |l: microspan::tracer::Losses| {
        [
            l.tags_over_capacity,
            l.fields_over_capacity,
            l.strings_truncated,
            l.records_dropped,
        ]
    };
    (d.spans(), pack(root_losses), pack(child_losses))
}

#[test]
fn batched_tags_decode_as_tags_set_one_at_a_time() {
    let one = record(false);
    let batch = record(true);
    assert_eq!(batch, one);
    assert_eq!(count_tags(&one.0), 3 + 7 + 2);
    // The long copied string was cut, and said so.
    assert_eq!(one.2, [0, 0, 1, 0]);
}

#[test]
fn tags_beyond_the_capacity_are_counted_at_start_and_later() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 512> = Drain::new(&TRACER).unwrap();
    let many: Vec<(&'static str, Value)> = (0..MAX_TAGS_PER_SPAN + 3)
        .map(|_| ("k", Value::from(1u8)))
        .collect();
    let root = TRACER.root_with_tags("busy", many.as_slice());
    assert_eq!(root.losses().tags_over_capacity, 3);
    // Full already: a later batch is counted too.
    root.set_tags(&many[..2]);
    assert_eq!(root.losses().tags_over_capacity, 5);
    let child = root.child("half");
    child.set_tags(&many[..MAX_TAGS_PER_SPAN - 1]);
    child.set_tags(&many[..2]);
    assert_eq!(child.losses().tags_over_capacity, 1);
    drop(child);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert_eq!(d.tag_count(), 2 * MAX_TAGS_PER_SPAN);
    let losses: Vec<[u8; 4]> = d
        .spans()
        .iter()
        .filter_map(|r| match r {
            Owned::End { losses, .. } => Some(*losses),
            _ => None,
        })
        .collect();
    assert_eq!(losses, vec![[1, 0, 0, 0], [5, 0, 0, 0]]);
}

#[test]
fn a_batch_refused_by_a_full_ring_counts_every_tag() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<128> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("r");
    assert!(root.is_recording());
    // Fill the ring with logs (no capacity of their own) until one is refused.
    while root.losses().records_dropped == 0 {
        root.log(&[]);
    }
    let before = TRACER.dropped();
    root.set_tags([("a", 1u8.into()), ("b", 2u8.into()), ("c", 3u8.into())]);
    assert_eq!(TRACER.dropped() - before, 3);
    assert_eq!(root.losses().records_dropped, 4);
    // A span started with tags on a full ring is lost as a whole: one record (its start) is
    // counted, as for a plain start; its tags are never attempted.
    let before = TRACER.dropped();
    let child = root.child_with_tags("c", [("a", 1u8.into()), ("b", 2u8.into())]);
    assert!(!child.is_recording());
    assert_eq!(TRACER.dropped() - before, 1);
    drop(child);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty());
    assert!(d
        .records
        .iter()
        .any(|r| *r == Owned::Drops(TRACER.dropped())));
}

#[test]
fn a_batch_larger_than_the_ring_is_refused_whole_and_counted() {
    static CLOCK: ManualClock = ManualClock::new(0);
    // 32 words: a start (5 or 6 words) and one 64-bit tag (6 or 7 words) fit; a start with four
    // such tags does not, nor do five tags.
    static RING: Ring<32> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let four = (("a", 1u64), ("b", 2u64), ("c", 3u64), ("d", 4u64));
    let lost = TRACER.root_with_tags("too-big", four);
    assert!(!lost.is_recording());
    assert_eq!(TRACER.dropped(), 1);
    drop(lost);
    let root = TRACER.root("r");
    assert!(root.is_recording());
    root.set_tags((
        ("a", 1u64),
        ("b", 2u64),
        ("c", 3u64),
        ("d", 4u64),
        ("e", 5u64),
    ));
    assert_eq!(TRACER.dropped(), 1 + 5);
    assert_eq!(root.losses().records_dropped, 5);
    // One tag fits, and so does the end (with its losses word).
    root.set_tags((("f", 6u64),));
    drop(root);
    assert_eq!(TRACER.dropped(), 6);
    let d = decode(&drain_all(&mut drain));
    assert_eq!(d.tag_count(), 1);
    assert!(d.records.contains(&Owned::Drops(6)));
    assert!(matches!(
        d.spans().last(),
        Some(Owned::End {
            losses: [0, 0, 0, 5],
            ..
        })
    ));
}

#[test]
fn unsampled_and_finished_spans_record_no_batch() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"))
        .with_sampler(microspan::Sampler::Const(false));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root_with_tags("r", (("a", 1u8),));
    assert!(!root.is_recording());
    let child = root.child_with_tags("c", [("a", 1u8.into())]);
    child.set_tags([("b", 2u8.into())]);
    assert!(!child.is_recording());
    drop(child);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.spans().is_empty());
}
