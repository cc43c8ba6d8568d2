//! Shared by the transport tests: a hand-moved clock, a deterministic random source, a workload of
//! realistic spans, a decoder that normalises records for comparison, and the harness that checks a
//! transport delivers every record exactly once, in order, with no broken frame.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use microspan::wire::decode::{
    Accumulator, FrameError, Parent, Record, RecordDecoder, StrRef, WireValue,
};
use microspan::{Baggage, Clock, Drain, Ring, Session, Tracer, Value};

/// Frame size used by the tests: small, so frames are many and records often straddle them.
pub const F: usize = 128;
/// The drain type the tests use.
pub type TestDrain = Drain<'static, F, 64>;

/// A 1 MHz clock advanced by the test.
pub struct ManualClock(AtomicU32);

impl ManualClock {
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

/// A tracer over a leaked ring of `N` words and its clock.
pub struct Fixture {
    pub tracer: &'static Tracer<'static>,
    pub clock: &'static ManualClock,
}

pub fn fixture<const N: usize>() -> Fixture {
    let ring: &'static Ring<N> = Box::leak(Box::new(Ring::new()));
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock(AtomicU32::new(5_000))));
    let tracer = Box::leak(Box::new(Tracer::new(
        ring,
        clock,
        Box::leak(Box::new(Session::new("transport-test").boot_id(9))),
    )));
    Fixture { tracer, clock }
}

impl Fixture {
    pub fn drain(&self) -> TestDrain {
        Drain::new(self.tracer).expect("one drain per tracer")
    }
}

/// xorshift64*: deterministic, good enough to decide chunk sizes and refusals.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMES: [&str; 6] = [
    "in-process-service",
    "Foo",
    "Bar",
    "uart-rx",
    "flash-write",
    "sensor.read",
];

/// Step `i` of the workload: a small trace with tags of every type, logs, dynamic strings and
/// sometimes baggage and a FollowsFrom reference. Deterministic in `i`.
pub fn workload(fx: &Fixture, i: u32) {
    let t = fx.tracer;
    let mut rng = Rng::new(i as u64 + 1);
    let root = t.root(NAMES[rng.range(0, NAMES.len() - 1)]);
    root.set_tag("seq", i as u64);
    fx.clock.advance(rng.range(1, 500) as u32);
    {
        let child = root.child(NAMES[rng.range(0, NAMES.len() - 1)]);
        child.set_tag("error", rng.chance(20));
        child.set_tag("delta", -(rng.range(0, 1_000_000) as i64));
        child.set_tag("ratio", i as f64 / 7.0);
        child.set_tag("component", "uart");
        let text = format!("dyn-{i}-{}", rng.next() % 1000);
        child.set_tag("peer.hostname", Value::text(&text));
        fx.clock.advance(rng.range(1, 3_000) as u32);
        child.log([
            ("event", "soft error".into()),
            ("waited.millis", (rng.range(0, 2_000) as u64).into()),
        ]);
        if rng.chance(30) {
            let grandchild = child.child("Bar");
            grandchild.log([("message", Value::text(&text))]);
            fx.clock.advance(7);
        }
    }
    if rng.chance(25) {
        let mut b: microspan::Span<'_, 2> = t
            .span("with-baggage")
            .child_of(&root.context())
            .with_baggage(Baggage::<2>::new())
            .start();
        b.set_baggage("user", "alice");
        let follower = t.span("consumer").follows_from(&b.context()).start();
        fx.clock.advance(3);
        drop(follower);
    }
    fx.clock.advance(rng.range(1, 50) as u32);
    root.finish();
}

/// A record with names resolved, strings owned and framing details (explicit roots) left out.
#[derive(Debug, Clone, PartialEq)]
pub enum Rec {
    Start {
        id: u32,
        parent: String,
        follows: bool,
        name: String,
        time: u64,
    },
    End {
        span: u32,
        time: u64,
        losses: [u8; 4],
    },
    Tag {
        span: u32,
        key: String,
        value: String,
    },
    Log {
        span: u32,
        time: u64,
        fields: Vec<(String, String)>,
    },
    Baggage {
        span: u32,
        key: String,
        value: String,
    },
    Reference {
        span: u32,
        follows: bool,
        target: u64,
    },
}

impl Rec {
    /// The record's time, for the records that carry one.
    pub fn time(&self) -> Option<u64> {
        match self {
            Rec::Start { time, .. } | Rec::End { time, .. } | Rec::Log { time, .. } => Some(*time),
            _ => None,
        }
    }
}

/// What came out of a byte stream.
#[derive(Default, Debug)]
pub struct Decoded {
    /// Span records, in stream order.
    pub records: Vec<Rec>,
    /// Frame sequence numbers, in stream order.
    pub frames: Vec<u16>,
    /// Frames that arrived again right after themselves (same sequence number and bytes), not
    /// decoded again, as the host decoder does: a restarted frame whose first copy got through.
    pub duplicates: usize,
    pub frame_errors: Vec<FrameError>,
    pub hellos: usize,
    /// Each session record's time (extended ticks), with the latest record time heard before it.
    pub hello_times: Vec<(u64, Option<u64>)>,
    /// The last cumulative drop count reported.
    pub drops: Option<u32>,
    /// Bytes the accumulator threw away, and bytes left after the last delimiter.
    pub discarded: u64,
    pub trailing: usize,
}

fn s(names: &HashMap<u32, String>, r: StrRef<'_>) -> String {
    match r {
        StrRef::Id(id) => names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("name {id} used before its definition")),
        StrRef::Inline(s) => s.to_string(),
    }
}

fn v(names: &HashMap<u32, String>, v: WireValue<'_>) -> String {
    match v {
        WireValue::Bool(b) => b.to_string(),
        WireValue::I64(i) => format!("{i}i"),
        WireValue::U64(u) => format!("{u}u"),
        WireValue::F64(f) => format!("{f}f"),
        WireValue::Str(r) => format!("{:?}", s(names, r)),
    }
}

pub fn decode(stream: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut names = HashMap::new();
    let mut acc: Box<Accumulator<4096>> = Box::new(Accumulator::new());
    let mut input = stream;
    let mut last: Option<(u16, u32, u64, Vec<u8>)> = None;
    while !input.is_empty() {
        let (frame, rest) = acc.feed(input);
        input = rest;
        match frame {
            None => {}
            Some(Err(e)) => out.frame_errors.push(e),
            Some(Ok(frame)) => {
                let this = (
                    frame.seq,
                    frame.base_id,
                    frame.base_time,
                    frame.body.to_vec(),
                );
                if last.as_ref() == Some(&this) {
                    out.duplicates += 1;
                    continue;
                }
                last = Some(this);
                out.frames.push(frame.seq);
                for rec in RecordDecoder::new(&frame) {
                    let rec =
                        rec.unwrap_or_else(|e| panic!("record error {e} in frame {}", frame.seq));
                    let r = match rec {
                        Record::Hello(h) => {
                            out.hellos += 1;
                            let heard = out.records.iter().filter_map(Rec::time).max();
                            out.hello_times.push((h.now_ticks, heard));
                            continue;
                        }
                        Record::Name { id, name, .. } => {
                            names.insert(id, name.to_string());
                            continue;
                        }
                        Record::Drops { total } => {
                            out.drops = Some(total);
                            continue;
                        }
                        Record::WallClock(_) => continue,
                        Record::Start(st) => Rec::Start {
                            id: st.id,
                            parent: match st.parent {
                                Parent::Root => "root".into(),
                                Parent::Local { id, .. } => format!("local {id}"),
                                Parent::Remote { trace, span } => {
                                    format!("remote {trace:?} {span:?}")
                                }
                                Parent::LocalInTrace { trace, span } => {
                                    format!("local {} in {trace:?}", span.0 as u32)
                                }
                            },
                            follows: st.follows_from,
                            name: s(&names, st.name),
                            time: st.time,
                        },
                        Record::End { span, time, losses } => Rec::End {
                            span,
                            time,
                            losses: [
                                losses.tags_over_capacity,
                                losses.fields_over_capacity,
                                losses.strings_truncated,
                                losses.records_dropped,
                            ],
                        },
                        Record::Tag { span, key, value } => Rec::Tag {
                            span,
                            key: s(&names, key),
                            value: v(&names, value),
                        },
                        Record::Log { span, time, fields } => Rec::Log {
                            span,
                            time,
                            fields: fields.map(|(k, x)| (s(&names, k), v(&names, x))).collect(),
                        },
                        Record::Baggage {
                            span, key, value, ..
                        } => Rec::Baggage {
                            span,
                            key: key.into(),
                            value: value.into(),
                        },
                        Record::Reference {
                            span, kind, target, ..
                        } => Rec::Reference {
                            span,
                            follows: kind == microspan::RefKind::FollowsFrom,
                            target: target.0,
                        },
                    };
                    out.records.push(r);
                }
            }
        }
    }
    out.discarded = acc.discarded();
    out.trailing = acc.buffered();
    out
}

/// Steps of the workload in one scenario.
pub const STEPS: u32 = 300;

/// The records the workload produces, drained through a perfect sink after every step.
pub fn reference(steps: u32) -> Decoded {
    let fx = fixture::<32768>();
    let mut drain = fx.drain();
    let mut out = Vec::new();
    for i in 0..steps {
        workload(&fx, i);
        drain.drain_with(|b| {
            out.extend_from_slice(b);
            b.len()
        });
    }
    assert_eq!(fx.tracer.dropped(), 0);
    decode(&out)
}

/// Asserts that `stream` carries exactly the reference records, in order, in well-formed,
/// consecutive frames.
pub fn assert_exact(stream: &[u8], steps: u32) -> Decoded {
    assert_exact_after_restarts(stream, steps, 0)
}

/// [`assert_exact`] for a stream in which up to `restarts` frames were restarted (what the link
/// carried of it, a delimiter, then the whole frame): each restart leaves at most one bad frame
/// (a fragment) or one duplicate (the first copy got through whole), and every record still
/// arrives exactly once.
pub fn assert_exact_after_restarts(stream: &[u8], steps: u32, restarts: u32) -> Decoded {
    let got = decode(stream);
    assert_survives_boot_noise(stream, &got);
    assert!(
        got.frame_errors.len() + got.duplicates <= restarts as usize,
        "{} frame errors and {} duplicates, {restarts} restarts: {:?}",
        got.frame_errors.len(),
        got.duplicates,
        got.frame_errors
    );
    if restarts == 0 {
        assert_eq!(got.discarded, 0, "bytes discarded by the decoder");
    }
    assert_eq!(got.trailing, 0, "a frame was left unfinished");
    let expected_seq: Vec<u16> = (0..got.frames.len() as u16).collect();
    assert_eq!(
        got.frames, expected_seq,
        "frames lost, duplicated or reordered"
    );
    assert!(got.hellos >= 1);
    let want = reference(steps);
    assert!(
        want.records.len() > 1000,
        "the workload is too small to mean much"
    );
    assert_eq!(
        got.records.len(),
        want.records.len(),
        "record count differs"
    );
    for (i, (g, w)) in got.records.iter().zip(&want.records).enumerate() {
        assert_eq!(g, w, "record {i} differs");
    }
    assert_eq!(got.drops, None, "the ring dropped records");
    got
}

/// What a shared UART may carry before the drain's first frame: a glitch at power-up and a boot
/// banner.
pub const BOOT_NOISE: &[u8] = b"\xffBooting v0.1\r\n";

/// The transport sent the drain's first frame after a delimiter of its own (the stream begins
/// with `0x00`), so the same stream behind [`BOOT_NOISE`] decodes to the same records (`got`):
/// the noise is one bad frame, and frame 0, with the session record and the first name
/// definitions, is not lost with it.
pub fn assert_survives_boot_noise(stream: &[u8], got: &Decoded) {
    assert_eq!(
        stream.first(),
        Some(&0),
        "the first frame follows a delimiter of its own"
    );
    let noisy = decode(&[BOOT_NOISE, stream].concat());
    assert_eq!(
        noisy.frame_errors.len(),
        got.frame_errors.len() + 1,
        "the noise, alone in a bad frame: {:?}",
        noisy.frame_errors
    );
    assert_eq!(noisy.frames, got.frames, "frame 0 and every other arrived");
    assert_eq!(noisy.records, got.records, "every record arrived");
}

/// Runs the workload against a transport: `pump` is called a few times after every step (it may
/// make no progress), then `finish` until it reports nothing pending. Returns when done.
pub fn drive<T>(
    fx: &Fixture,
    t: &mut T,
    rng: &mut Rng,
    mut pump: impl FnMut(&mut T, &mut Rng),
    mut pending: impl FnMut(&mut T) -> bool,
) {
    for i in 0..STEPS {
        workload(fx, i);
        for _ in 0..rng.range(0, 3) {
            pump(t, rng);
        }
    }
    let mut rounds = 0;
    while pending(t) {
        pump(t, rng);
        rounds += 1;
        assert!(rounds < 10_000_000, "the transport never finished");
    }
    assert_eq!(fx.tracer.dropped(), 0, "the ring dropped records");
}

/// A 40-minute stall of the 1 MHz test clock (2.4e9 ticks: more than half its 2^32-tick wrap
/// period, after which a drain that kept no time extends every new tick the wrong way), in
/// one-second steps.
pub const STALL_SECONDS: u32 = 2_400;

/// Records a root span `name` lasting 100 ticks.
pub fn span_of_100_ticks(fx: &Fixture, name: &'static str) {
    let span = fx.tracer.root(name);
    fx.clock.advance(100);
    drop(span);
}

/// The start time (extended ticks) of the one span named `name` in `d`.
pub fn start_time(d: &Decoded, name: &str) -> u64 {
    let mut times = d.records.iter().filter_map(|r| match r {
        Rec::Start { name: n, time, .. } if n == name => Some(*time),
        _ => None,
    });
    let t = times.next().unwrap_or_else(|| panic!("no span {name}"));
    assert!(times.next().is_none(), "two spans {name}");
    t
}

/// Asserts that span `after`, recorded a [`STALL_SECONDS`] stall after span `before` (each
/// lasting 100 ticks), is dated that far after it.
pub fn assert_dated_across_stall(d: &Decoded, before: &str, after: &str) {
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    let gap = start_time(d, after) as i128 - start_time(d, before) as i128;
    assert_eq!(
        gap,
        STALL_SECONDS as i128 * 1_000_000 + 100,
        "the stall and 100 µs, in ticks of 1 µs"
    );
}

/// A timer of the simulated clock: ready once `ticks` went by after it was made (as embassy's
/// `Timer::after`).
pub fn timer(clock: &'static ManualClock, ticks: u32) -> impl std::future::Future<Output = ()> {
    let deadline = clock.now().wrapping_add(ticks);
    std::future::poll_fn(move |_| {
        if clock.now().wrapping_sub(deadline) as i32 >= 0 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}
