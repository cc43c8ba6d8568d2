//! The record path and the drain allocate nothing: a counting global allocator watches every
//! allocation made on the test's thread while spans are started and finished, tags of every type
//! (copied strings included) are set, logs, baggage and references are recorded, a full ring drops
//! records, and the drain builds and hands out frames. The host-side decoder (`Accumulator` +
//! `RecordDecoder`) is checked the same way.
//!
//! The count is per thread (a `const`-initialised thread local, which itself never allocates), so
//! the test harness's other threads cannot disturb it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::ManualClock;
use microspan::tracer::Sampler;
use microspan::wire::decode::{Accumulator, Record, RecordDecoder};
use microspan::{
    Baggage, Drain, Flags, RefKind, Ring, Session, SpanContext, SpanId, TraceId, Tracer, Value,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread local may already be gone while a thread is torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// `Cell` in a thread local that needs no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    (ALLOCATIONS.with(Cell::get) - before, r)
}

#[track_caller]
fn assert_no_alloc<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (n, r) = allocations(f);
    assert_eq!(n, 0, "{what} allocated {n} times");
    r
}

static CLOCK: ManualClock = ManualClock::new(u32::MAX - 100);
static RING: Ring<4096> = Ring::new();
static TRACER: Tracer = Tracer::new(
    &RING,
    &CLOCK,
    &Session::new("no-alloc").boot_id(9).firmware_version("1.0"),
);

/// A transport with a fixed buffer.
struct Sink {
    buf: [u8; 1 << 16],
    len: usize,
}

impl Sink {
    fn take(&mut self, b: &[u8]) -> usize {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        n
    }
}

#[test]
fn the_counter_counts() {
    let (n, b) = allocations(|| Box::new(1u64));
    assert_eq!(n, 1);
    drop(b);
    let (n, _) = allocations(|| format!("{}", 12345).len());
    assert!(n >= 1);
}

#[test]
fn record_path_and_drain_allocate_nothing() {
    // Prepared outside the measured regions: a dynamic string (allocated by the test, copied by
    // the tracer), a transport buffer and a remote context.
    let dynamic = format!("dynamic-{}-ünïcödé-and-more-than-thirty-two-bytes", 42);
    let mut sink = Box::new(Sink {
        buf: [0; 1 << 16],
        len: 0,
    });
    let remote = SpanContext {
        trace_id: TraceId(0x1234_5678_9abc_def0_1122_3344_5566_7788),
        span_id: SpanId(0xABCD),
        flags: Flags::SAMPLED,
    };

    let mut drain: Drain<'_, 256> = assert_no_alloc("Drain::new", || Drain::new(&TRACER).unwrap());
    assert_no_alloc("set_wall_clock", || {
        drain.set_wall_clock(1_700_000_000_000_000_000)
    });

    for round in 0..3u32 {
        assert_no_alloc("the record path", || {
            // The reference trace.
            let root = TRACER.root("in-process-service");
            CLOCK.advance(10);
            {
                let foo = root.child("Foo");
                CLOCK.advance(1_000);
                let bar = foo.child("Bar");
                bar.log([
                    ("event", "error".into()),
                    ("message", "something wrong".into()),
                ]);
                bar.set_tag("error", true);
                bar.finish();
            }
            // Tags of every type, copied strings included (one longer than MAX_STR_LEN).
            let s = root.child("values");
            s.set_tag("bool", false);
            s.set_tag("i64", -5i64);
            s.set_tag("i32", i32::MIN);
            s.set_tag("u64", u64::MAX);
            s.set_tag("u8", round as u8);
            s.set_tag("f64", 1.5f64);
            s.set_tag("f32", 0.25f32);
            s.set_tag("static", "a static string");
            s.set_tag("text", Value::text(&dynamic));
            s.set_tag("short", Value::text(&dynamic[..7]));
            // Tags in one reservation: with a start, as a tuple, as a slice.
            let batched = root.child_with_tags(
                "batched",
                (
                    ("kind", "client"),
                    ("text", Value::text(&dynamic)),
                    ("n", round),
                ),
            );
            batched.set_tags([("bool", true.into()), ("i64", (-1i64).into())]);
            drop(batched);
            drop(TRACER.root_with_tags("tagged-root", (("n", round),)));
            // A built span with tags at its start, continuing another process's context.
            drop(
                TRACER
                    .span("tagged-server")
                    .child_of(&remote)
                    .start_with_tags((("span.kind", "server"), ("n", round))),
            );
            // Beyond the tag capacity: dropped and counted, still no allocation.
            for _ in 0..microspan::config::MAX_TAGS_PER_SPAN {
                s.set_tag("more", 1u8);
            }
            // Logs, with more fields than a log holds.
            s.log([
                ("event", "x".into()),
                ("n", 3u32.into()),
                ("f", 2.5f64.into()),
            ]);
            s.log([]);
            s.log([
                ("a", Value::text(&dynamic)),
                ("b", 1i8.into()),
                ("c", true.into()),
                ("d", "s".into()),
                ("e", 1u16.into()),
                ("f", 1f64.into()),
                ("g", (-1i64).into()),
                ("h", Value::text("tiny")),
                ("i", 0u8.into()),
                ("j", 0u8.into()),
            ]);
            assert!(s.losses().tags_over_capacity > 0 && s.losses().fields_over_capacity > 0);
            let ctx = s.context();
            let follower = s.follower("follower");
            drop(follower);
            drop(s);

            // Baggage, references, remote parents, debug spans.
            let mut b: microspan::Span<'_, 2> = TRACER
                .span("with-baggage")
                .with_baggage(Baggage::<2>::new())
                .start();
            b.set_baggage("user", "alice");
            b.set_baggage(
                "a-key-longer-than-the-limit",
                "a value longer than the limit",
            );
            b.set_baggage("third", "over capacity");
            let c = b.child("inherits");
            assert_eq!(c.baggage_item("user"), Some("alice"));
            c.add_reference(RefKind::FollowsFrom, &ctx);
            c.add_reference(RefKind::ChildOf, &remote);
            let mut n = 0;
            c.baggage().for_each(|_, _| {
                n += 1;
                true
            });
            assert_eq!(n, 2);
            drop(c);
            drop(b);
            let r = TRACER
                .span("from-remote")
                .child_of(&remote)
                .follows_from(&ctx)
                .start();
            let rc = r.child("under-remote");
            drop(rc);
            drop(r);
            let dbg = TRACER.span("debug").debug().start();
            drop(dbg);
            root.finish();
        });

        assert_no_alloc("the drain", || {
            let n = drain.drain_with(|b| sink.take(b));
            assert!(n > 0);
            assert!(!drain.has_pending());
            drain.stats()
        });
    }

    // A full ring: drops are counted, nothing is allocated.
    assert_no_alloc("a full ring", || {
        for _ in 0..2_000 {
            let s = TRACER.root("flood");
            s.set_tag("k", 1u32);
        }
    });
    assert!(TRACER.dropped() > 0);
    assert_no_alloc(
        "draining a full ring, transport taking 5 bytes at a time",
        || loop {
            let bytes = drain.fill_buf();
            if bytes.is_empty() {
                break;
            }
            let n = sink.take(&bytes[..bytes.len().min(5)]);
            drain.consume(n);
        },
    );

    // The host-side decoder allocates nothing either.
    let stream = &sink.buf[..sink.len];
    let mut acc: Box<Accumulator<1024>> = Box::new(Accumulator::new());
    let (records, fields) = assert_no_alloc("decoding", || {
        let (mut records, mut fields) = (0u32, 0u32);
        let mut input = stream;
        while !input.is_empty() {
            let (frame, rest) = acc.feed(input);
            input = rest;
            if let Some(frame) = frame {
                let frame = frame.expect("a clean stream");
                for r in RecordDecoder::new(&frame) {
                    if let Record::Log { fields: f, .. } = r.expect("a clean frame") {
                        fields += f.count() as u32;
                    }
                    records += 1;
                }
            }
        }
        (records, fields)
    });
    assert!(records > 100 && fields > 0);
    // The decoded stream is the one recorded (a smoke check; roundtrip.rs checks it in detail).
    let d = common::decode(stream);
    assert!(d.frame_errors.is_empty());
    assert_eq!(
        d.records
            .iter()
            .rev()
            .find_map(|r| if let common::Owned::Drops(n) = r {
                Some(*n)
            } else {
                None
            }),
        Some(TRACER.dropped())
    );
}

#[test]
fn unsampled_spans_allocate_nothing() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static OFF: Tracer =
        Tracer::new(&RING, &CLOCK, &Session::new("off")).with_sampler(Sampler::Const(false));
    assert_no_alloc("unsampled spans", || {
        let root = OFF.root("r");
        let c = root.child("c");
        c.set_tag("t", Value::text("text"));
        c.log([("event", "e".into())]);
        assert!(!c.is_recording());
    });
    assert_eq!(RING.dropped(), 0);
}
