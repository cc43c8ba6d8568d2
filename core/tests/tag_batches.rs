//! Tags given with a span's start (`Tracer::root_with_tags`, `Span::child_with_tags`,
//! `SpanBuilder::start_with_tags`) or in one call (`Span::set_tags`) share one reservation, and reach the decoder exactly as the same tags
//! set one at a time; capacities, truncation and a full ring are counted the same way.

mod common;
use common::*;
use microspan::config::{MAX_STR_LEN, MAX_TAGS_PER_SPAN};
use microspan::{Drain, Flags, Ring, Session, SpanContext, SpanId, TraceId, Tracer, Value};

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
    let mut drain: Drain<'_, 2048> = Drain::new(tracer).unwrap();
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
        // Built spans, on each way a builder starts one: a root, a FollowsFrom of a span of
        // this boot, and a child of another process's span (a START_REMOTE).
        let remote = SpanContext {
            trace_id: TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            span_id: SpanId(0x00f0_67aa_0ba9_02b7),
            flags: Flags::SAMPLED,
        };
        let builders = [
            tracer.span("built-root"),
            tracer.span("built-follower").follows_from(&child.context()),
            tracer.span("built-server").child_of(&remote),
        ];
        for builder in builders {
            let built = if batched {
                builder.start_with_tags(&tags[2..])
            } else {
                let b = builder.start();
                for (k, v) in &tags[2..] {
                    b.set_tag(k, *v);
                }
                b
            };
            assert!(built.is_recording());
            // The long copied string was cut.
            assert_eq!(built.losses().strings_truncated, 1);
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
    assert_eq!(count_tags(&one.0), 3 + 7 + 2 + 3 * 5);
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
        root.log([]);
    }
    let before = TRACER.dropped();
    root.set_tags([("a", 1u8.into()), ("b", 2u8.into()), ("c", 3u8.into())]);
    assert_eq!(TRACER.dropped() - before, 3);
    assert_eq!(root.losses().records_dropped, 4);
    // A span started with tags on a full ring is lost as a whole: its start, its two tags and
    // the END it will skip are counted at once, and its finish counts nothing more.
    let before = TRACER.dropped();
    let child = root.child_with_tags("c", [("a", 1u8.into()), ("b", 2u8.into())]);
    assert!(!child.is_recording());
    assert_eq!(TRACER.dropped() - before, 4);
    drop(child);
    assert_eq!(TRACER.dropped() - before, 4);
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
    // The start, its four tags and its END.
    assert_eq!(TRACER.dropped(), 6);
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
    assert_eq!(TRACER.dropped(), 6 + 5);
    assert_eq!(root.losses().records_dropped, 5);
    // A built span continuing another process's context (its START is the larger one): lost
    // whole with its tags, where `start()` then `set_tags` would have recorded a span without
    // them.
    let remote = SpanContext {
        trace_id: TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        span_id: SpanId(0x00f0_67aa_0ba9_02b7),
        flags: Flags::SAMPLED,
    };
    let server = TRACER
        .span("server")
        .child_of(&remote)
        .start_with_tags(four);
    assert!(!server.is_recording());
    assert_eq!(TRACER.dropped(), 11 + 6);
    drop(server);
    assert_eq!(TRACER.dropped(), 11 + 6);
    // One tag fits, and so does the end (with its losses word).
    root.set_tags((("f", 6u64),));
    drop(root);
    assert_eq!(TRACER.dropped(), 17);
    let d = decode(&drain_all(&mut drain));
    assert_eq!(d.tag_count(), 1);
    assert!(d.records.contains(&Owned::Drops(17)));
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

/// Records spans whose batched tags change size between their two conversions (growing or
/// shrinking), then a plain span; everything after them still reaches the decoder, every record
/// the tracer wrote is well formed, and tags that no longer fit are counted as dropped.
#[test]
fn tags_that_change_between_conversions_stay_within_their_reservation() {
    use std::sync::atomic::AtomicU32;
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let mut drain: Drain<'_, 2048> = Drain::new(&TRACER).unwrap();
    let (mut stream, mut seen) = (Vec::new(), 0);
    for grows in [true, false] {
        let f = |n| {
            CALLS.store(0, std::sync::atomic::Ordering::Relaxed);
            Fickle(&CALLS, grows, n)
        };
        let two = f(2);
        let root = TRACER.root_with_tags("root", (("a", two), ("b", two)));
        let one = f(1);
        let child = root.child_with_tags("child", (("c", one),));
        let three = f(3);
        child.set_tags((("d", three), ("e", three), ("g", three)));
        let (root_losses, child_losses) = (root.losses(), child.losses());
        // Words of a TAG record holding a bool, and holding the large string.
        let pointer = std::mem::size_of::<usize>() / 4;
        let small = 3 + pointer;
        let large = small + LARGE_LEN.div_ceil(4);
        // How many strings the room sized for `n` bools holds.
        let fit = |n: usize| (n * small / large).min(n);
        if grows {
            // The second walk's strings do not all fit where bools were sized: those that do not
            // are left out, counted.
            assert_eq!(root_losses.records_dropped as usize, 2 - fit(2));
            assert_eq!(
                child_losses.records_dropped as usize,
                1 - fit(1) + 3 - fit(3)
            );
        } else {
            // The second walk's bools fit where strings were sized: kept, the rest padded.
            assert_eq!(root_losses.records_dropped, 0);
            assert_eq!(child_losses.records_dropped, 0);
        }
        drop(child);
        drop(root);
        let after = TRACER.root("after");
        drop(after);
        // Decoded from the first byte, for the names the first round defined.
        stream.extend(drain_all(&mut drain));
        let d = decode(&stream);
        assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
        let records = &d.records[std::mem::replace(&mut seen, d.records.len())..];
        let names = start_names(records);
        assert_eq!(names, ["root", "child", "after"], "grows {grows}");
        let tags: Vec<(&str, &str)> = records
            .iter()
            .filter_map(|r| match r {
                Owned::Tag { key, value, .. } => Some((key.as_str(), value.as_str())),
                _ => None,
            })
            .collect();
        if grows {
            assert_eq!(tags.len(), fit(2) + fit(1) + fit(3), "{tags:?}");
            assert!(
                tags.iter().all(|(_, v)| v.len() == LARGE_LEN + 2),
                "{tags:?}"
            );
        } else {
            assert_eq!(
                tags,
                [
                    ("a", "true"),
                    ("b", "true"),
                    ("c", "true"),
                    ("d", "true"),
                    ("e", "true"),
                    ("g", "true")
                ]
            );
        }
    }
}

/// A conversion that panics while a batch is being written (a host build, where panics unwind):
/// the reservation is published as a pad on the way out, and the drain goes on past it.
#[test]
fn a_panic_while_writing_a_batch_does_not_stall_the_drain() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    assert!(panics(|| root.set_tags((("x", Bomb),))));
    assert!(panics(|| drop(
        root.child_with_tags("lost", (("y", Bomb),))
    )));
    let child = root.child("after");
    drop(child);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    let names = start_names(&d.records);
    assert_eq!(names, ["root", "after"]);
    assert_eq!(d.tag_count(), 0);
}

/// Tags whose `count` says one, and whose first walk gives none (the second, one; a later one
/// panics when `bomb`): a batch sized at zero words reserves nothing and counts its tag as
/// dropped, rather than commit an empty reservation over the next record's header.
struct Liar {
    walks: std::cell::Cell<u32>,
    bomb: bool,
}

impl<'v> microspan::Tags<'v> for Liar {
    fn count(&self) -> usize {
        1
    }
    fn each(&self, mut f: impl FnMut(&'static str, Value<'v>)) {
        let walk = self.walks.get();
        self.walks.set(walk + 1);
        if walk > 0 {
            assert!(!self.bomb, "the tags were walked again");
            f("late", Value::U64(1));
        }
    }
}

#[test]
fn a_batch_whose_sizing_walk_gives_no_tags_reserves_nothing() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    for bomb in [false, true] {
        root.set_tags(Liar {
            walks: std::cell::Cell::new(0),
            bomb,
        });
    }
    assert_eq!(root.losses().records_dropped, 2);
    assert_eq!(TRACER.dropped(), 2);
    // Started with such tags: the start alone is recorded, the tag counted.
    let child = root.child_with_tags(
        "child",
        Liar {
            walks: std::cell::Cell::new(0),
            bomb: false,
        },
    );
    assert_eq!(child.losses().records_dropped, 1);
    drop(child);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    let names = start_names(&d.records);
    assert_eq!(names, ["root", "child"]);
    assert_eq!(d.tag_count(), 0);
    assert!(d.records.contains(&Owned::Drops(3)));
}

/// The names of the START records among `records`, in order.
fn start_names(records: &[Owned]) -> Vec<&str> {
    records
        .iter()
        .filter_map(|r| match r {
            Owned::Start { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// The fallbacks of `child`, `follower` and `child_with_tags`, taken when the parent's trace id
/// came from elsewhere or its start was lost: the handle is rebuilt at the call site from what the
/// out-of-line start returns, so the child is recorded once, in the parent's trace, with its
/// tags, its losses and one end.
#[test]
fn children_of_remote_and_lost_parents_keep_trace_tags_and_losses() {
    use microspan::wire::decode::Parent;
    use microspan::{Flags, SpanContext, SpanId, TraceId};
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<512> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 2048> = Drain::new(&TRACER).unwrap();
    let remote = SpanContext {
        trace_id: TraceId(0xABCD),
        span_id: SpanId(0x77),
        flags: Flags::SAMPLED,
    };
    let parent = TRACER.span("server").child_of(&remote).start();
    assert!(parent.is_recording());
    // One tag more than a span keeps, given with the start: counted on the rebuilt handle.
    let many: Vec<(&str, Value<'_>)> = (0..=MAX_TAGS_PER_SPAN).map(|_| ("k", 1u8.into())).collect();
    let tagged = parent.child_with_tags("tagged", many.as_slice());
    assert!(tagged.is_recording());
    assert_eq!(tagged.context().trace_id, remote.trace_id);
    assert_eq!(tagged.losses().tags_over_capacity, 1);
    assert_eq!(tagged.losses().records_dropped, 0);
    let plain = parent.child("plain");
    let follower = parent.follower("follower");
    for s in [&plain, &follower] {
        assert!(s.is_recording());
        assert_eq!(s.context().trace_id, remote.trace_id);
    }
    let ids = [&tagged, &plain, &follower].map(|s| s.context().span_id.0 as u32);
    drop((tagged, plain, follower, parent));
    let d = decode_typed(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty() && d.record_errors.is_empty());
    for id in ids {
        let ends = d
            .spans()
            .filter(|r| matches!(r, Typed::End { span, .. } if *span == id))
            .count();
        assert_eq!(ends, 1, "span {id} ends once");
    }
    let tags = d
        .spans()
        .filter(|r| matches!(r, Typed::Tag { span, .. } if *span == ids[0]))
        .count();
    assert_eq!(tags, MAX_TAGS_PER_SPAN);
    assert!(d.spans().any(|r| matches!(
        r,
        Typed::End { span, losses, .. } if *span == ids[0] && losses.tags_over_capacity == 1
    )));

    // A parent whose start was dropped (the ring full): its children name the trace and are
    // recorded once there is room again.
    let root = TRACER.root("root");
    while root.losses().records_dropped == 0 {
        root.log(());
    }
    let lost = root.child("lost");
    assert!(!lost.is_recording());
    drain_all(&mut drain);
    let orphan = lost.child_with_tags("orphan", (("a", 1u8),));
    let orphan2 = lost.child("orphan2");
    assert!(orphan.is_recording() && orphan2.is_recording());
    assert_eq!(orphan.context().trace_id, lost.context().trace_id);
    let ids = [&orphan, &orphan2].map(|s| s.context().span_id.0 as u32);
    drop((orphan, orphan2, lost, root));
    let d = decode_typed(&drain_all(&mut drain));
    for id in ids {
        assert!(d.spans().any(|r| matches!(
            r,
            Typed::Start { id: i, parent: Parent::Remote { span: None, .. }, .. } if *i == id
        )));
        let ends = d
            .spans()
            .filter(|r| matches!(r, Typed::End { span, .. } if *span == id))
            .count();
        assert_eq!(ends, 1);
    }
    assert!(d
        .spans()
        .any(|r| matches!(r, Typed::Tag { span, key, .. } if *span == ids[0] && key == "a")));
}

/// The fallbacks with baggage (`B > 0`) and with the child's own start lost: the handle the
/// caller gets carries the parent's baggage, or is a lost span that records nothing.
#[test]
fn fallback_children_carry_baggage_and_lose_their_start_when_the_ring_is_full() {
    use microspan::{Flags, SpanContext, SpanId, TraceId};
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 512> = Drain::new(&TRACER).unwrap();
    let remote = SpanContext {
        trace_id: TraceId(0x1234),
        span_id: SpanId(0x56),
        flags: Flags::SAMPLED,
    };
    let mut parent = TRACER
        .span("server")
        .child_of(&remote)
        .with_baggage(microspan::Baggage::<2>::new())
        .start();
    parent.set_baggage("tenant", "acme");
    let tagged = parent.child_with_tags("tagged", (("a", 1u8),));
    let plain = parent.child("plain");
    for s in [&tagged, &plain] {
        assert!(s.is_recording());
        assert_eq!(s.baggage_item("tenant"), Some("acme"));
    }
    drop((tagged, plain));
    // Fill the ring: the next fallback child's start is dropped, and its tags are not recorded
    // (counted: the fallback is a start, then `set_tags` on the lost span).
    while parent.losses().records_dropped == 0 {
        parent.log(());
    }
    let before = TRACER.dropped();
    let lost = parent.child_with_tags("lost", (("b", 2u8),));
    assert!(!lost.is_recording());
    assert_eq!(lost.baggage_item("tenant"), Some("acme"));
    assert_eq!(
        TRACER.dropped() - before,
        3,
        "the start with its END, and its tag"
    );
    drop(lost);
    drop(parent);
    let d = decode_typed(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty() && d.record_errors.is_empty());
    assert!(!d
        .spans()
        .any(|r| matches!(r, Typed::Start { name, .. } if name == "lost")));
    assert!(!d
        .spans()
        .any(|r| matches!(r, Typed::Tag { key, .. } if key == "b")));
}
