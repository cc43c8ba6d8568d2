//! A log's fields given as a tuple (each value's type known, written without a match on
//! `Value`) reach the decoder exactly as the same fields given as an array of `Value`s; fields
//! that change between the tuple path's two walks, or panic in it, never break the ring.

mod common;
use common::*;
use microspan::config::{MAX_FIELDS_PER_LOG, MAX_STR_LEN};
use microspan::{Drain, Ring, Session, Tags, Tracer, Value};
use std::sync::atomic::AtomicU32;

/// The fields of every log, in order.
fn logs(records: &[Owned]) -> Vec<Vec<(String, String)>> {
    records
        .iter()
        .filter_map(|r| match r {
            Owned::Log { fields, .. } => Some(fields.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn tuple_and_array_logs_decode_alike() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 1024> = Drain::new(&TRACER).unwrap();
    let text = String::from("copied at the call");
    let root = TRACER.root("root");
    root.log((
        ("event", "error"),
        ("message", Value::text(&text)),
        ("attempt", 3u32),
        ("delta", -7i64),
        ("ratio", 0.5f64),
        ("retry", true),
    ));
    root.log([
        ("event", "error".into()),
        ("message", Value::text(&text)),
        ("attempt", 3u32.into()),
        ("delta", (-7i64).into()),
        ("ratio", 0.5f64.into()),
        ("retry", true.into()),
    ]);
    // Fields collected at run time without an allocator.
    let mut fields: heapless::Vec<(&'static str, Value<'_>), 8> = heapless::Vec::new();
    fields.push(("event", "error".into())).unwrap();
    fields.push(("message", Value::text(&text))).unwrap();
    fields.push(("attempt", 3u32.into())).unwrap();
    fields.push(("delta", (-7i64).into())).unwrap();
    fields.push(("ratio", 0.5f64.into())).unwrap();
    fields.push(("retry", true.into())).unwrap();
    root.log(&fields);
    root.log(fields.as_view());
    root.log(fields);
    root.log(());
    let losses = root.losses();
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    let logs = logs(&d.records);
    assert_eq!(logs.len(), 6);
    for other in &logs[1..5] {
        assert_eq!(&logs[0], other);
    }
    assert_eq!(logs[0].len(), 6);
    assert!(logs[5].is_empty());
    assert_eq!(losses.fields_over_capacity, 0);
}

/// Fields whose `count` is more than a log may carry: the first `MAX_FIELDS_PER_LOG` are kept,
/// the rest counted.
struct Many(usize);

impl<'v> Tags<'v> for Many {
    fn count(&self) -> usize {
        self.0
    }
    fn each(&self, mut f: impl FnMut(&'static str, Value<'v>)) {
        for i in 0..self.0 {
            f("i", Value::U64(i as u64));
        }
    }
}

/// Fields whose `count` disagrees with what `each` gives: losses are counted from the fields
/// given, not from `count`.
struct Miscounted {
    says: usize,
    gives: usize,
}

impl<'v> Tags<'v> for Miscounted {
    fn count(&self) -> usize {
        self.says
    }
    fn each(&self, mut f: impl FnMut(&'static str, Value<'v>)) {
        for i in 0..self.gives {
            f("i", Value::U64(i as u64));
        }
    }
}

#[test]
fn losses_are_counted_from_the_fields_given() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 2048> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    root.log(Miscounted {
        says: 2,
        gives: MAX_FIELDS_PER_LOG + 2,
    });
    assert_eq!(root.losses().fields_over_capacity, 2);
    root.log(Miscounted { says: 10, gives: 2 });
    assert_eq!(root.losses().fields_over_capacity, 2);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    let lens: Vec<usize> = logs(&d.records).iter().map(Vec::len).collect();
    assert_eq!(lens, [MAX_FIELDS_PER_LOG, 2]);
}

/// A string longer than `MAX_STR_LEN` in the sizing walk and a bool in the writing walk (of a
/// log and of a tag batch): no string was cut in what was recorded, so none is counted.
#[test]
fn cut_strings_are_counted_from_the_fields_written() {
    #[derive(Clone, Copy)]
    struct LongThenShort;
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static LONG: &str = include_str!("log_fields.rs");
    impl From<LongThenShort> for Value<'static> {
        fn from(_: LongThenShort) -> Self {
            // Each sizing walk (even calls) gets the long string, each writing walk the bool.
            if CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 0 {
                Value::text(&LONG[..MAX_STR_LEN + 1])
            } else {
                Value::Bool(true)
            }
        }
    }
    assert!(LONG.len() > MAX_STR_LEN);
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 2048> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    root.log((("x", LongThenShort),));
    root.set_tags((("y", LongThenShort),));
    let losses = root.losses();
    assert_eq!(losses.strings_truncated, 0);
    assert_eq!(losses.fields_over_capacity, 0);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    assert_eq!(
        logs(&d.records),
        [vec![("x".to_string(), "true".to_string())]]
    );
}

#[test]
fn fields_beyond_the_capacity_are_counted() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 2048> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    root.log(Many(MAX_FIELDS_PER_LOG + 3));
    assert_eq!(root.losses().fields_over_capacity, 3);
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    assert_eq!(logs(&d.records)[0].len(), MAX_FIELDS_PER_LOG);
}

/// A log of fields that grow or shrink between the two walks stays within its reservation:
/// fields that no longer fit are left out and counted, room left over becomes a pad, and the
/// records after it decode.
#[test]
fn fields_that_change_between_conversions_stay_within_their_reservation() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let mut drain: Drain<'_, 2048> = Drain::new(&TRACER).unwrap();
    let (mut stream, mut seen) = (Vec::new(), 0);
    // Words of a field holding a bool, and holding the large string.
    let small = 1 + std::mem::size_of::<usize>() / 4;
    let large = small + LARGE_LEN.div_ceil(4);
    for grows in [true, false] {
        CALLS.store(0, std::sync::atomic::Ordering::Relaxed);
        let three = Fickle(&CALLS, grows, 3);
        let root = TRACER.root("root");
        root.log((("a", three), ("b", three), ("c", three)));
        let losses = root.losses();
        drop(root);
        drop(TRACER.root("after"));
        stream.extend(drain_all(&mut drain));
        let d = decode(&stream);
        assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
        let records = &d.records[std::mem::replace(&mut seen, d.records.len())..];
        let logs = logs(records);
        assert_eq!(logs.len(), 1);
        let kept = if grows { (3 * small / large).min(3) } else { 3 };
        assert_eq!(logs[0].len(), kept, "grows {grows}: {logs:?}");
        assert_eq!(losses.fields_over_capacity as usize, 3 - kept);
        let expected = if grows { LARGE_LEN + 2 } else { "true".len() };
        assert!(logs[0].iter().all(|(_, v)| v.len() == expected), "{logs:?}");
        let starts = records
            .iter()
            .filter(|r| matches!(r, Owned::Start { name, .. } if name == "after"))
            .count();
        assert_eq!(starts, 1, "the record after the log decodes");
    }
}

/// A field conversion that panics while the log is written (a host build, where panics
/// unwind): the reservation is published as a pad, and the drain goes on past it.
#[test]
fn a_panic_while_writing_a_log_does_not_stall_the_drain() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    assert!(panics(|| root.log((("x", Bomb),))));
    root.log((("y", 2u8),));
    drop(root);
    let d = decode(&drain_all(&mut drain));
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    let logs = logs(&d.records);
    assert_eq!(logs, [vec![("y".to_string(), "2u".to_string())]]);
}
