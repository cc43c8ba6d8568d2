//! Spans recorded through the ring and drained come back out of the decoder exactly.

mod common;
use common::*;
use microspan::{Drain, Ring, Session, Tracer, Value};

#[test]
fn reference_trace_roundtrips() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(
        &RING,
        &CLOCK,
        &Session::new("in-process-service").boot_id(7),
    );
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    let root = TRACER.root("in-process-service");
    {
        CLOCK.advance(10);
        let foo = root.child("Foo");
        CLOCK.advance(1_000);
        {
            let bar = foo.child("Bar");
            CLOCK.advance(2_000);
            bar.log([
                ("event", "error".into()),
                ("message", "something wrong".into()),
            ]);
            bar.set_tag("error", true);
        }
        CLOCK.advance(5);
    }
    root.finish();
    let bytes = drain_all(&mut drain);
    let d = decode(&bytes);
    assert!(d.frame_errors.is_empty());
    assert_eq!(
        d.records[0],
        Owned::Hello {
            service: "in-process-service".into(),
            boot_id: 7
        }
    );
    let p = 5 + (std::mem::size_of::<usize>() as u32 / 4) - 1; // START record words
    let spans = d.spans();
    let expected = vec![
        Owned::Start {
            id: 1,
            parent: "Root".into(),
            name: "in-process-service".into(),
            time: 1_000,
        },
        Owned::Start {
            id: 1 + p,
            parent: "Local { id: 1, root: None }".into(),
            name: "Foo".into(),
            time: 1_010,
        },
        Owned::Start {
            id: 1 + 2 * p,
            parent: format!("Local {{ id: {}, root: None }}", 1 + p),
            name: "Bar".into(),
            time: 2_010,
        },
        Owned::Log {
            span: 1 + 2 * p,
            time: 4_010,
            fields: vec![
                ("event".into(), "\"error\"".into()),
                ("message".into(), "\"something wrong\"".into()),
            ],
        },
        Owned::Tag {
            span: 1 + 2 * p,
            key: "error".into(),
            value: "true".into(),
        },
        Owned::End {
            span: 1 + 2 * p,
            time: 4_010,
            losses: [0; 4],
        },
        Owned::End {
            span: 1 + p,
            time: 4_015,
            losses: [0; 4],
        },
        Owned::End {
            span: 1,
            time: 4_015,
            losses: [0; 4],
        },
    ];
    assert_eq!(spans, expected);
}

#[test]
fn every_value_type_and_dynamic_strings() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 128> = Drain::new(&TRACER).unwrap();
    let s = TRACER.root("values");
    s.set_tag("b", false);
    s.set_tag("i", -5i32);
    s.set_tag("u", u64::MAX);
    s.set_tag("f", 1.5f64);
    s.set_tag("s", "static");
    let dynamic = format!("dyn-{}", 42);
    s.set_tag("t", Value::text(&dynamic));
    let long = "x".repeat(100);
    s.set_tag("long", Value::text(&long));
    let id = s.context().span_id.0 as u32;
    drop(s);
    let d = decode(&drain_all(&mut drain));
    let tags: Vec<_> = d
        .spans()
        .into_iter()
        .filter_map(|r| match r {
            Owned::Tag { key, value, span } => {
                assert_eq!(span, id);
                Some((key, value))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        tags,
        vec![
            ("b".into(), "false".into()),
            ("i".into(), "-5".into()),
            ("u".into(), format!("{}u", u64::MAX)),
            ("f".into(), "1.5f".into()),
            ("s".into(), "\"static\"".into()),
            ("t".into(), "\"dyn-42\"".into()),
            (
                "long".into(),
                format!("{:?}", "x".repeat(microspan::config::MAX_STR_LEN.min(100)))
            ),
        ]
    );
    // The truncation (with the default `MAX_STR_LEN`, 32) is counted on the span.
    let cut = (microspan::config::MAX_STR_LEN < 100) as u8;
    assert!(
        matches!(d.spans().last(), Some(Owned::End { losses, .. }) if *losses == [0, 0, cut, 0])
    );
}

#[test]
fn capacities_truncate_and_count() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 512> = Drain::new(&TRACER).unwrap();
    let s = TRACER.root("busy");
    for _ in 0..microspan::config::MAX_TAGS_PER_SPAN + 3 {
        s.set_tag("k", 1u8);
    }
    let fields: Vec<(&'static str, Value)> = (0..microspan::config::MAX_FIELDS_PER_LOG + 2)
        .map(|_| ("f", Value::from(1u8)))
        .collect();
    s.log(fields.as_slice());
    assert_eq!(s.losses().tags_over_capacity, 3);
    assert_eq!(s.losses().fields_over_capacity, 2);
    drop(s);
    let d = decode(&drain_all(&mut drain));
    assert_eq!(d.tag_count(), microspan::config::MAX_TAGS_PER_SPAN);
    assert!(matches!(
        d.spans().last(),
        Some(Owned::End {
            losses: [3, 2, 0, 0],
            ..
        })
    ));
}

/// A log with more fields over the capacity than a loss counter holds saturates it (255) rather
/// than wrap it.
#[test]
fn a_log_far_over_its_capacity_saturates_the_count() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let s = TRACER.root("chatty");
    // 300 over the capacity: a count taken modulo 256 would read 44.
    let fields: Vec<(&'static str, Value)> = (0..microspan::config::MAX_FIELDS_PER_LOG + 300)
        .map(|_| ("f", Value::from(1u8)))
        .collect();
    s.log(fields.as_slice());
    assert_eq!(s.losses().fields_over_capacity, 255);
}

#[test]
fn full_ring_drops_exactly_and_reports() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let mut made = 0;
    for _ in 0..20 {
        let span = TRACER.root("r");
        // A START and an END each: a span whose START was dropped counts its END dropped too.
        made += 2;
        span.finish();
    }
    let dropped = TRACER.dropped();
    assert!(dropped > 0);
    let d = decode(&drain_all(&mut drain));
    let delivered = d.spans().len() as u32;
    assert_eq!(made, delivered + dropped);
    assert_eq!(
        d.records
            .iter()
            .filter_map(|r| if let Owned::Drops(n) = r {
                Some(*n)
            } else {
                None
            })
            .next_back(),
        Some(dropped)
    );
}

/// A span whose start found the ring full writes nothing more, and every record it then skips
/// (tags, logs, references, baggage, its children's starts and ends, its own END) is counted as
/// dropped: the device's drop count is what the span lost, not only its START. An unsampled
/// span skips the same calls and counts nothing.
#[test]
fn a_span_whose_start_was_dropped_counts_every_record_it_skips() {
    use microspan::tracer::{RefKind, Sampler};
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    // The const sampler tags every root with two sampler tags: lost with a lost root.
    static TRACER: Tracer =
        Tracer::new(&RING, &CLOCK, &Session::new("svc")).with_sampler(Sampler::Const(true));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let open = TRACER.root("open");
    let other = open.context();
    let mut kept = Vec::new();
    loop {
        let s = open.child("fill");
        if !s.is_recording() {
            break;
        }
        kept.push(s);
    }
    // The last `fill`: its START, and its END (it finished at the `break`).
    assert_eq!(TRACER.dropped(), 2);
    let before = TRACER.dropped();
    let lost = TRACER.root("lost"); // START + 2 sampler tags
    assert!(!lost.is_recording());
    lost.set_tag("a", 1u8); // 1
    lost.set_tags([("b", 2u32.into()), ("c", 3u32.into())]); // 2
    lost.log((("event", "retry"), ("attempt", 2u32))); // 1
    lost.add_reference(RefKind::FollowsFrom, &other); // 1
    let tagged = lost.child_with_tags("tagged", (("x", 1u8), ("y", 2u8))); // START + 2
    tagged.finish(); // END
    lost.finish(); // END
    assert_eq!(TRACER.dropped() - before, 3 + 1 + 2 + 1 + 1 + 3 + 1 + 1);
    // Tags beyond the capacity count too, in a batch started with the span as one by one (300:
    // more than the capacity and 255 more).
    let many: Vec<(&'static str, Value<'_>)> = (0..300u32).map(|i| ("k", i.into())).collect();
    let before = TRACER.dropped();
    TRACER.root_with_tags("many", many.as_slice()).finish();
    assert_eq!(TRACER.dropped() - before, 1 + 300 + 2 + 1);
    let before = TRACER.dropped();
    TRACER.root("many").set_tags(many.as_slice());
    assert_eq!(TRACER.dropped() - before, 1 + 300 + 2 + 1);
    let before = TRACER.dropped();
    TRACER
        .span("many")
        .start_with_tags(many.as_slice())
        .finish();
    assert_eq!(TRACER.dropped() - before, 1 + 300 + 2 + 1);
    // Built spans started with tags, on each way a builder starts one: a debug root (no
    // sampler tags), a FollowsFrom of a span of this boot, a child of another process's span.
    let remote = microspan::SpanContext {
        trace_id: microspan::TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        span_id: microspan::SpanId(0x00f0_67aa_0ba9_02b7),
        flags: microspan::Flags::SAMPLED,
    };
    let builders = [
        TRACER.span("debug").debug(),
        TRACER.span("follower").follows_from(&other),
        TRACER.span("server").child_of(&remote),
    ];
    for builder in builders {
        let before = TRACER.dropped();
        let built = builder.start_with_tags((("x", 1u8), ("y", 2u8)));
        assert!(!built.is_recording());
        built.finish();
        assert_eq!(TRACER.dropped() - before, 1 + 2 + 1);
    }
    // Finished: nothing more is counted.
    drop(kept);
    let d = decode(&drain_all(&mut drain));
    let drops = d.records.iter().rev().find_map(|r| match r {
        Owned::Drops(n) => Some(*n),
        _ => None,
    });
    assert_eq!(drops, Some(TRACER.dropped()), "the device's count goes out");
}

/// The same calls on an unsampled span count nothing: it records nothing by choice.
#[test]
fn an_unsampled_span_counts_nothing_it_skips() {
    use microspan::tracer::{RefKind, Sampler};
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer =
        Tracer::new(&RING, &CLOCK, &Session::new("svc")).with_sampler(Sampler::Const(false));
    let root = TRACER.root("r");
    let ctx = root.context();
    root.set_tag("a", 1u8);
    root.set_tags([("b", 2u32.into())]);
    root.log((("event", "retry"),));
    root.add_reference(RefKind::FollowsFrom, &ctx);
    root.child_with_tags("c", (("x", 1u8),)).finish();
    root.finish();
    assert_eq!(TRACER.dropped(), 0);
}

#[test]
fn baggage_references_and_remote_parents() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(3));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let mut root: microspan::Span<'_, 2> = TRACER
        .span("root")
        .with_baggage(microspan::Baggage::<2>::new())
        .start();
    root.set_baggage("user", "alice");
    let child = root.child("child");
    assert_eq!(child.baggage_item("user"), Some("alice"));
    let producer = child.context();
    drop(child);
    let consumer = TRACER.span("consumer").follows_from(&producer).start();
    let remote = microspan::SpanContext {
        trace_id: microspan::TraceId(0xAB),
        span_id: microspan::SpanId(0xCD),
        flags: microspan::Flags::SAMPLED,
    };
    let from_remote = TRACER
        .span("from-remote")
        .child_of(&remote)
        .follows_from(&producer)
        .start();
    drop(from_remote);
    drop(consumer);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    let spans = d.spans();
    assert!(spans.contains(&Owned::Baggage {
        span: 1,
        key: "user".into(),
        value: "alice".into(),
        carried: false,
    }));
    assert!(spans.iter().any(|r| matches!(r, Owned::Start { name, parent, .. } if name == "consumer" && parent.ends_with("follows"))));
    assert!(spans.iter().any(|r| matches!(r, Owned::Start { name, parent, .. } if name == "from-remote" && parent.contains("Remote") && parent.contains("SpanId(00000000000000cd)"))));
    assert!(spans.iter().any(|r| matches!(r, Owned::Reference { follows: true, target, .. } if *target == producer.span_id.0)));
}

/// References beyond `MAX_REFERENCES` (the parent included) are dropped and counted, not lost
/// silently: the parent and the others up to the capacity are recorded.
#[test]
fn references_beyond_the_capacity_are_counted() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(3));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let producers: Vec<microspan::SpanContext> = (0..microspan::config::MAX_REFERENCES + 2)
        .map(|_| TRACER.root("producer").context())
        .collect();
    let mut builder = TRACER.span("consumer");
    for p in &producers {
        builder = builder.follows_from(p);
    }
    let consumer = builder.start();
    assert_eq!(consumer.losses().fields_over_capacity, 2);
    drop(consumer);
    let d = decode(&drain_all(&mut drain));
    let refs = d
        .spans()
        .iter()
        .filter(|r| matches!(r, Owned::Reference { .. }))
        .count();
    // The first FollowsFrom is the parent (no ChildOf): the rest up to the capacity are REF records.
    assert_eq!(refs, microspan::config::MAX_REFERENCES - 1);
    assert!(matches!(
        d.spans().last(),
        Some(Owned::End {
            losses: [0, 2, 0, 0],
            ..
        })
    ));

    // A ChildOf after the list is full still decides the parent: a FollowsFrom makes way.
    let parent = TRACER.root("parent");
    let mut builder = TRACER.span("child");
    for p in &producers[..microspan::config::MAX_REFERENCES] {
        builder = builder.follows_from(p);
    }
    let child = builder.child_of(&parent.context()).start();
    assert_eq!(child.context().trace_id, parent.context().trace_id);
    assert_eq!(child.losses().fields_over_capacity, 1);
}

#[test]
fn unsampled_spans_record_nothing() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"))
        .with_sampler(microspan::tracer::Sampler::Const(false));
    let root = TRACER.root("r");
    let c = root.child("c");
    c.set_tag("x", 1u8);
    assert!(!c.is_recording());
    drop(c);
    drop(root);
    let mut drain: Drain<'_, 64> = Drain::new(&TRACER).unwrap();
    assert!(drain.fill_buf().is_empty());
    // The debug flag forces sampling.
    let d = TRACER.span("dbg").debug().start();
    assert!(d.is_recording() && d.context().flags.is_debug());
}

#[test]
fn one_drain_per_tracer() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let first: Drain<'_, 64> = Drain::new(&TRACER).unwrap();
    assert!(Drain::<'_, 64>::new(&TRACER).is_none());
    drop(first);
    assert!(Drain::<'_, 64>::new(&TRACER).is_some());
}

#[test]
fn a_restarted_frame_goes_out_again_whole_after_its_delimiter() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    drain.restart_frame();
    assert!(drain.fill_buf().is_empty(), "no frame: nothing to restart");
    TRACER.root("first").finish();
    let frame = drain.fill_buf().to_vec();
    // 5 bytes taken, then the link cannot say what went out.
    drain.consume(5);
    drain.restart_frame();
    assert_eq!(
        drain.fill_buf(),
        &[0],
        "the delimiter alone ends the fragment"
    );
    drain.consume(1);
    assert!(drain.has_pending());
    TRACER.root("second").finish();
    assert_eq!(drain.fill_buf(), &frame[..], "then the same frame, whole");
    let n = frame.len();
    drain.consume(n);
    drain.restart_frame();
    let next = drain.fill_buf().to_vec();
    assert_ne!(next, [0], "a frame sent whole is not restarted");
    let mut wire = frame[..5].to_vec();
    wire.push(0);
    wire.extend_from_slice(&frame);
    wire.extend_from_slice(&next);
    let d = decode(&wire);
    assert_eq!(d.frame_errors.len(), 1, "the fragment");
    let names: Vec<String> = d
        .spans()
        .iter()
        .filter_map(|r| match r {
            Owned::Start { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["first", "second"], "each span once");
}

#[test]
fn small_frames_never_stall_on_the_drop_count_or_the_wall_clock() {
    // The smallest frames (`min_frame_bytes`, 42 bytes), a drop count and tick values that need long varints, and a
    // wall clock: header + drops + wall clock do not fit one frame. The drain must neither stop sending nor
    // keep `has_pending` true for ever (a `while has_pending()` flush would never end).
    static CLOCK: ManualClock = ManualClock::new(4_000_000_000);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("s"));
    let mut drain: Drain<'_, { microspan::drain::min_frame_bytes() }> =
        Drain::new(&TRACER).unwrap();
    for _ in 0..20_000 {
        TRACER.root("r").finish();
    }
    assert!(TRACER.dropped() > 16_384);
    drain.set_wall_clock(1_700_000_000_000_000_000);
    let mut wire = Vec::new();
    let mut rounds = 0;
    while drain.has_pending() {
        drain.drain_with(|b| {
            wire.extend_from_slice(b);
            b.len()
        });
        rounds += 1;
        assert!(rounds < 100, "the drain stalled: {:?}", drain.stats());
    }
    let d = decode_typed(&wire);
    assert_eq!(d.last_drops(), TRACER.dropped(), "the drop count went out");
    TRACER.root("after").finish();
    assert!(drain.has_pending());
    assert!(!drain.fill_buf().is_empty(), "and records still flow");
}

#[test]
fn a_record_that_fits_an_empty_frame_is_never_dropped_beside_the_session_record() {
    // With small frames the session record leaves too little room for a large log; the log must
    // wait for the next frame, not be counted as oversize.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(
        &RING,
        &CLOCK,
        &Session::new("a-rather-long-service-name").firmware_version("1.2.3-with-a-long-suffix"),
    );
    let mut drain: Drain<'_, 96> = Drain::new(&TRACER).unwrap();
    drain.set_epoch_frames(2); // every other frame starts an epoch and carries the session record
    let span = TRACER.root("r");
    span.log([
        ("message", Value::text("0123456789abcdef0123456789abcdef")),
        ("k", 1u8.into()),
    ]);
    drop(span);
    let d = decode(&drain_all(&mut drain));
    assert_eq!(drain.stats().oversize, 0);
    assert_eq!(TRACER.dropped(), 0);
    assert!(d.spans().iter().any(|r| matches!(r, Owned::Log { .. })));
}

#[test]
fn a_frame_too_small_for_the_full_session_record_still_flows() {
    // 64-byte frames cannot hold a session record with long names: they are cut, marked as cut
    // (the decoder shows them ending in `…`), and the drain never stalls with records pending.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(
        &RING,
        &CLOCK,
        &Session::new("a-service-name-long-enough-to-overflow-a-small-frame")
            .firmware_version("1.2.3-with-a-long-build-suffix-abcdef"),
    );
    let mut drain: Drain<'_, 64> = Drain::new(&TRACER).unwrap();
    TRACER.root("r").finish();
    let bytes = drain_all(&mut drain);
    assert!(!drain.has_pending());
    let d = decode(&bytes);
    assert!(d.frame_errors.is_empty());
    assert!(
        matches!(&d.records[0], Owned::Hello { service, .. } if service.strip_suffix('…').is_some_and(|kept| !kept.is_empty() && "a-service-name-long-enough-to-overflow-a-small-frame".starts_with(kept))),
        "{:?}",
        d.records[0]
    );
    assert_eq!(d.spans().len(), 2);
}

/// A 50 MHz clock advanced by the test.
struct FastClock(std::sync::atomic::AtomicU32);

impl microspan::Clock for FastClock {
    fn now(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn ticks_per_second(&self) -> u32 {
        50_000_000
    }
}

/// (wire ticks per second, time shift, span duration in wire ticks) of a 20 ms root span.
fn twenty_ms(shift: Option<u8>) -> (u32, u8, u64) {
    use microspan::wire::decode::{Accumulator, Record, RecordDecoder};
    let clock = FastClock(std::sync::atomic::AtomicU32::new(0xFFF0_0000)); // wraps meanwhile
    let ring: Ring<256> = Ring::new();
    let session = Session::new("fast");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 128> = Drain::new(&tracer).unwrap();
    if let Some(s) = shift {
        assert!(drain.set_time_shift(s));
    }
    let span = tracer.root("twenty-ms");
    clock
        .0
        .fetch_add(1_000_000, std::sync::atomic::Ordering::Relaxed);
    drop(span);
    let stream = drain_all(&mut drain);
    assert!(!drain.set_time_shift(0), "no change once frames went out");
    let mut acc: Box<Accumulator<256>> = Box::new(Accumulator::new());
    let first = stream
        .strip_prefix(&[0])
        .expect("the delimiter before the first frame");
    let (frame, _) = acc.feed(first);
    let frame = frame.unwrap().unwrap();
    let (mut rate, mut shift, mut start) = (0, 0, 0);
    for r in RecordDecoder::new(&frame) {
        match r.unwrap() {
            Record::Hello(h) => (rate, shift) = (h.ticks_per_second, h.time_shift),
            Record::Start(s) => start = s.time,
            Record::End { time, .. } => return (rate, shift, time - start),
            _ => {}
        }
    }
    panic!("no end in {stream:02x?}")
}

#[test]
fn a_fast_clock_goes_on_the_wire_at_microsecond_resolution_unless_told_otherwise() {
    // 50 MHz: 5 bits dropped, 1.5625 MHz on the wire (0.64 µs), announced in the session record.
    assert_eq!(twenty_ms(None), (1_562_500, 5, 31_250));
    assert_eq!(twenty_ms(Some(0)), (50_000_000, 0, 1_000_000));
    assert_eq!(twenty_ms(Some(2)), (12_500_000, 2, 250_000));
    // A shift that does not divide the rate exactly is refused.
    let clock = FastClock(std::sync::atomic::AtomicU32::new(0));
    let ring: Ring<64> = Ring::new();
    let session = Session::new("fast");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 128> = Drain::new(&tracer).unwrap();
    assert!(!drain.set_time_shift(8), "50 MHz is not a multiple of 256");
}

/// A drain with nothing to send reads the clock (to follow a wrapping counter), and the frame
/// after it counts its times from that reading. A span whose times are earlier than it (written
/// by code that read the clock before the drain ran) goes out after a SET_TIME record and
/// decodes to its own times.
#[test]
fn a_span_older_than_an_idle_drains_clock_reading_keeps_its_times() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    CLOCK.0.store(5_000, std::sync::atomic::Ordering::Relaxed);
    assert!(drain.fill_buf().is_empty(), "idle: nothing to send");
    CLOCK.0.store(4_000, std::sync::atomic::Ordering::Relaxed);
    let root = TRACER.root("late");
    CLOCK.advance(250);
    drop(root);
    let d = decode_typed(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty() && d.record_errors.is_empty());
    let times: Vec<u64> = d
        .spans()
        .filter_map(|r| match r {
            Typed::Start { time, .. } | Typed::End { time, .. } => Some(*time),
            _ => None,
        })
        .collect();
    assert_eq!(times, [4_000, 4_250]);
}

/// A context that goes through a carrier on the same device comes back with its items carried
/// (wire kind 13), under its local parent; an item set after the start, and the producer's own
/// items, are set ones (kind 7). Every item travels whole, in the order recorded.
#[test]
fn same_device_carrier_round_trip_marks_items_carried() {
    use microspan::propagation::binary;
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(4));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let mut producer: microspan::Span<'_, 2> = TRACER
        .span("producer")
        .with_baggage(microspan::Baggage::<2>::new())
        .start();
    producer.set_baggage("tenant", "acme");
    let mut message = [0u8; 64];
    binary::inject(&producer.context(), producer.baggage(), &mut message).unwrap();
    let producer_id = producer.context().span_id.0 as u32;
    let first = drain_all(&mut drain);
    let ex: microspan::propagation::Extracted<2> = binary::extract(&message).unwrap();
    let mut consumer = TRACER.span("consumer").extracted(ex).start();
    consumer.set_baggage("step", "2");
    let consumer_id = consumer.context().span_id.0 as u32;
    drop(consumer);
    drop(producer);
    let mut bytes = first;
    bytes.extend(drain_all(&mut drain));
    let d = decode(&bytes);
    assert!(d.frame_errors.is_empty());
    let baggage: Vec<_> = d
        .spans()
        .into_iter()
        .filter(|r| matches!(r, Owned::Baggage { .. }))
        .collect();
    let item = |span, key: &str, value: &str, carried| Owned::Baggage {
        span,
        key: key.into(),
        value: value.into(),
        carried,
    };
    assert_eq!(
        baggage,
        [
            item(producer_id, "tenant", "acme", false),
            item(consumer_id, "tenant", "acme", true),
            item(consumer_id, "step", "2", false),
        ]
    );
    assert!(d.spans().iter().any(|r| matches!(r, Owned::Start { name, parent, .. } if name == "consumer" && parent.starts_with(&format!("Local {{ id: {producer_id},")))), "{:?}", d.spans());
}

#[test]
fn a_record_whose_names_overflow_a_small_frame_sends_them_ahead() {
    // The reference example's log in a `Drain<64>`: five static strings (60 bytes of
    // definitions) beside the log record do not fit 64 bytes; each fits alone.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 64> = Drain::new(&TRACER).unwrap();
    // The session record goes out in a frame of its own first.
    let _ = drain_all(&mut drain);
    let foo = TRACER.root("Foo");
    foo.log([
        ("event", Value::Str("soft error")),
        ("type", Value::Str("cache timeout")),
        ("waited.millis", 1500u32.into()),
    ]);
    drop(foo);
    let mut wire = Vec::new();
    let mut rounds = 0;
    while drain.has_pending() {
        wire.extend(drain_all(&mut drain));
        rounds += 1;
        assert!(rounds < 100, "the drain stalled: {:?}", drain.stats());
    }
    let stats = drain.stats();
    assert_eq!(stats.oversize, 0);
    assert_eq!(TRACER.dropped(), 0);
    assert!(stats.names_ahead >= 1, "{stats:?}");
    let d = decode(&wire);
    let log = d
        .spans()
        .into_iter()
        .find(|r| matches!(r, Owned::Log { .. }))
        .expect("the log was sent");
    let Owned::Log { fields, .. } = log else {
        unreachable!()
    };
    assert_eq!(
        fields,
        [
            ("event".to_string(), "\"soft error\"".to_string()),
            ("type".into(), "\"cache timeout\"".into()),
            ("waited.millis".into(), "1500u".into()),
        ]
    );
}

#[test]
fn names_that_cannot_go_ahead_before_the_epoch_ends_leave_the_record_dropped_and_counted() {
    // Two frames per epoch: a frame of names ahead would be forgotten by the next frame, which
    // starts an epoch; the record is dropped (counted), and the drain does not spin.
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 64> = Drain::new(&TRACER).unwrap();
    drain.set_epoch_frames(2);
    let span = TRACER.root("r");
    span.log([
        (
            "first-static-key-of-twenty",
            Value::Str("first static value"),
        ),
        (
            "second-static-key-of-twenty",
            Value::Str("second static value"),
        ),
    ]);
    drop(span);
    let mut rounds = 0;
    let mut wire = Vec::new();
    while drain.has_pending() {
        wire.extend(drain_all(&mut drain));
        rounds += 1;
        assert!(rounds < 100, "the drain stalled: {:?}", drain.stats());
    }
    let d = decode(&wire);
    let lost = drain.stats().oversize;
    assert_eq!(TRACER.dropped(), lost);
    let reported = d.records.iter().rev().find_map(|r| match r {
        Owned::Drops(n) => Some(*n),
        _ => None,
    });
    assert_eq!(reported.unwrap_or(0), lost, "the decoder hears of the drop");
    let logs = d
        .spans()
        .iter()
        .filter(|r| matches!(r, Owned::Log { .. }))
        .count() as u32;
    assert_eq!(
        logs + lost,
        1,
        "the log is sent or counted, never both or neither"
    );
    assert_eq!(
        (lost, drain.stats().names_ahead),
        (1, 0),
        "no frame of names was wasted on an epoch that ended"
    );
}

#[test]
fn a_static_name_longer_than_a_frame_is_sent_cut_and_marked() {
    // A 100-byte span name cannot fit a 64-byte frame: its beginning is sent as a `NAME_CUT`
    // (the test decoder marks it with "…"), and the span and its child arrive.
    const LONG: &str = "sensor.temperature.read-and-calibrate-with-retries-and-a-name-far-longer-than-a-small-frame-holds";
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 64> = Drain::new(&TRACER).unwrap();
    let _ = drain_all(&mut drain);
    {
        let long = TRACER.root(LONG);
        drop(long.child("child"));
    }
    let mut wire = Vec::new();
    let mut rounds = 0;
    while drain.has_pending() {
        wire.extend(drain_all(&mut drain));
        rounds += 1;
        assert!(rounds < 100, "the drain stalled: {:?}", drain.stats());
    }
    let stats = drain.stats();
    assert_eq!((stats.oversize, stats.names_cut), (0, 1), "{stats:?}");
    assert_eq!(TRACER.dropped(), 0);
    let d = decode(&wire);
    let names: Vec<String> = d
        .spans()
        .into_iter()
        .filter_map(|r| match r {
            Owned::Start { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let cut = names[0].strip_suffix('…').expect("marked as cut");
    assert!(LONG.starts_with(cut) && cut.len() > 30, "{cut:?}");
    assert_eq!(names[1], "child");
}

#[test]
fn a_record_whose_names_go_ahead_on_an_epoch_s_last_frame_waits_for_the_next_epoch() {
    // The soft-error log of the reference example in a `Drain<64>`, its turn falling on each of
    // the last frames of a 64-frame epoch: it is always sent, never dropped.
    for filler_frames in [60u32, 61, 62, 63, 64] {
        let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new(0)));
        let ring: &'static Ring<1024> = Box::leak(Box::new(Ring::new()));
        let session: &'static Session = Box::leak(Box::new(Session::new("svc")));
        let tracer: &'static Tracer = Box::leak(Box::new(Tracer::new(ring, clock, session)));
        let mut drain: Drain<'_, 64> = Drain::new(tracer).unwrap();
        let mut wire = drain_all(&mut drain);
        for _ in 0..filler_frames {
            tracer.root("x").finish();
            wire.extend(drain_all(&mut drain));
        }
        let foo = tracer.root("Foo");
        foo.log([
            ("event", Value::Str("soft error")),
            ("type", Value::Str("cache timeout")),
            ("waited.millis", 1500u32.into()),
        ]);
        drop(foo);
        let mut rounds = 0;
        while drain.has_pending() {
            wire.extend(drain_all(&mut drain));
            rounds += 1;
            assert!(rounds < 100, "the drain stalled: {:?}", drain.stats());
        }
        let stats = drain.stats();
        assert_eq!(
            (stats.oversize, tracer.dropped()),
            (0, 0),
            "{filler_frames}: {stats:?}"
        );
        let d = decode(&wire);
        let logs = d
            .spans()
            .iter()
            .filter(|r| matches!(r, Owned::Log { .. }))
            .count();
        assert_eq!(logs, 1, "{filler_frames}: {stats:?}");
    }
}

#[test]
fn records_from_before_a_wrap_that_precedes_the_drain_are_dated_right() {
    // Spans recorded just before the 32-bit clock wraps, and a drain made just after it (a drain
    // created late, when a host connects): their ticks are behind the drain's first reading, by
    // more than that reading. Their times must not go below zero (a frame dated near 2^64, whose
    // every later time overflows in the decoder).
    static CLOCK: ManualClock = ManualClock::new(u32::MAX - 1_000);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    {
        let early = TRACER.root("early");
        CLOCK.advance(100);
        drop(early.child("child"));
        CLOCK.advance(100);
    }
    CLOCK.advance(2_000); // wraps: the clock reads 999
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    TRACER.root("late").finish();
    let d = decode_typed(&drain_all(&mut drain));
    assert!(d.record_errors.is_empty(), "{:?}", d.record_errors);
    let starts: Vec<(String, u64)> = d
        .spans()
        .filter_map(|r| match r {
            Typed::Start { name, time, .. } => Some((name.clone(), *time)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 3, "{starts:?}");
    let (early, child, late) = (starts[0].1, starts[1].1, starts[2].1);
    assert!(early < u64::MAX / 2, "dated below zero: {starts:?}");
    assert_eq!((child - early, late - early), (100, 2_200), "{starts:?}");
}

#[test]
fn the_smallest_frame_holds_a_session_record_with_a_wall_clock() {
    // `Drain<F>` refuses at compile time an `F` below `min_frame_bytes` (a `compile_fail` example
    // on `Drain::new` shows it with 32), which counts every number at its smallest. Just above
    // it (a 1 MHz rate takes 2 bytes more than the smallest), a device with small numbers still
    // gets its session record, wall clock included, and its spans read.
    use microspan::drain::{min_frame_bytes, session_record_always_fits};
    assert_eq!((min_frame_bytes(), session_record_always_fits()), (42, 97));
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("s").device_id(1));
    let mut drain: Drain<'_, { min_frame_bytes() + 2 }> = Drain::new(&TRACER).unwrap();
    drain.set_wall_clock(1_765_000_000_000_000_000);
    TRACER.root("r").finish();
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty());
    assert!(
        matches!(&d.records[0], Owned::Hello { .. }),
        "{:?}",
        d.records
    );
    assert_eq!(d.spans().len(), 2);
}
