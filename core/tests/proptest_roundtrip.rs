//! Property tests of the whole path: arbitrary sequences of span operations are recorded, drained
//! and decoded, and the decoded records must equal a model of what was recorded (names, values,
//! ids, parent links, losses, times as extended ticks); and the host decoder, fed random or
//! corrupted bytes, never panics.
//!
//! `PROPTEST_CASES=2000 cargo test -p microspan --release --test proptest_roundtrip` for a longer run.

mod common;

use std::collections::HashMap;

use common::{decode_typed, ManualClock, TValue, Typed};
use microspan::config::{
    MAX_BAGGAGE_KEY_LEN, MAX_BAGGAGE_VALUE_LEN, MAX_FIELDS_PER_LOG, MAX_STR_LEN, MAX_TAGS_PER_SPAN,
};
use microspan::tracer::Losses;
use microspan::wire::decode::{Accumulator, Parent, Record, RecordDecoder};
use microspan::wire::frame::FrameBuilder;
use microspan::{
    Baggage, Drain, Flags, RefKind, Ring, Session, Span, SpanContext, SpanId, TraceId, Tracer,
    Value,
};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "a",
    "Foo",
    "Bar",
    "in-process-service",
    "ünïcödé",
    "日本語の名前",
    "x-a-somewhat-longer-operation-name",
];
const KEYS: &[&str] = &[
    "error",
    "http.status_code",
    "k",
    "κλειδί",
    "component",
    "a-rather-long-key-name-for-testing",
];
const STRS: &[&str] = &[
    "",
    "GET",
    "something wrong",
    "ǅ emoji 🎉",
    "a static string that is quite a bit longer than thirty-two bytes",
];

/// Baggage items a span carries in these tests.
const B: usize = 2;

#[derive(Debug, Clone)]
enum V {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(usize),
    Text(String),
}

impl V {
    fn value(&self) -> Value<'_> {
        match self {
            V::Bool(b) => Value::Bool(*b),
            V::I64(i) => Value::I64(*i),
            V::U64(u) => Value::U64(*u),
            V::F64(f) => Value::F64(*f),
            V::Str(i) => Value::Str(STRS[*i]),
            V::Text(t) => Value::text(t),
        }
    }
    /// What the decoder gives back, and whether the string was cut.
    fn expected(&self) -> (TValue, bool) {
        match self {
            V::Bool(b) => (TValue::Bool(*b), false),
            V::I64(i) => (TValue::I64(*i), false),
            V::U64(u) => (TValue::U64(*u), false),
            V::F64(f) => (TValue::F64(*f), false),
            V::Str(i) => (TValue::Str(STRS[*i].into()), false),
            V::Text(t) => {
                let (t, cut) = truncate(t, MAX_STR_LEN);
                (TValue::Str(t.into()), cut)
            }
        }
    }
}

/// Which span context an operation refers to.
#[derive(Debug, Clone)]
enum Target {
    /// A context from another process (trace id, span id; both non-zero).
    Remote(u128, u64),
    /// The context of an earlier span of this run (index modulo their number).
    Earlier(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// A root span (a new trace).
    Root(usize),
    /// A child of the innermost open span (a root when none is open).
    Child(usize),
    /// A FollowsFrom span of the innermost open span.
    Follower(usize),
    /// A span started with the builder: ChildOf the target, and optionally FollowsFrom an earlier one.
    ChildOf(usize, Target, Option<usize>),
    /// Finishes the innermost open span.
    Finish,
    /// Finishes any open span (out of order: its children stay open).
    FinishAny(usize),
    Tag(usize, V),
    Log(Vec<(usize, V)>),
    Baggage(String, String),
    Reference(bool, Target),
    /// Moves the clock (forwards up to 2^30, or a little backwards).
    Advance(i64),
    /// Runs the drain now.
    Drain,
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        any::<bool>().prop_map(V::Bool),
        any::<i64>().prop_map(V::I64),
        any::<u64>().prop_map(V::U64),
        any::<f64>().prop_map(V::F64),
        prop_oneof![Just(f64::NAN), Just(-0.0), Just(f64::INFINITY)].prop_map(V::F64),
        (0..STRS.len()).prop_map(V::Str),
        "\\PC{0,40}".prop_map(V::Text),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (1u128.., 1u64..).prop_map(|(t, s)| Target::Remote(t, s)),
        any::<usize>().prop_map(Target::Earlier),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let key = 0..KEYS.len();
    prop_oneof![
        2 => name.clone().prop_map(Op::Root),
        6 => name.clone().prop_map(Op::Child),
        2 => name.clone().prop_map(Op::Follower),
        2 => (name, target(), proptest::option::of(any::<usize>())).prop_map(|(n, t, f)| Op::ChildOf(n, t, f)),
        6 => Just(Op::Finish),
        2 => any::<usize>().prop_map(Op::FinishAny),
        6 => (key.clone(), value()).prop_map(|(k, v)| Op::Tag(k, v)),
        3 => proptest::collection::vec((key, value()), 0..MAX_FIELDS_PER_LOG + 3).prop_map(Op::Log),
        2 => ("\\PC{0,20}", "\\PC{0,24}").prop_map(|(k, v)| Op::Baggage(k, v)),
        // Items that fit (the ones above are often over a capacity, so refused).
        1 => ("[a-z]{1,8}", "\\PC{0,4}").prop_map(|(k, v)| Op::Baggage(k, v)),
        2 => (any::<bool>(), target()).prop_map(|(f, t)| Op::Reference(f, t)),
        3 => prop_oneof![0i64..100, 0i64..1_000_000, 0i64..=(1 << 30), -1_000i64..0].prop_map(Op::Advance),
        1 => Just(Op::Drain),
    ]
}

/// `s` cut to `max` bytes at a character boundary (the tracer's rule).
fn truncate(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// The model of one open span.
struct Open<'t> {
    span: Span<'t, B>,
    id: u32,
    losses: Losses,
    tags: usize,
    baggage: Vec<(String, String)>,
}

/// The model of a run.
struct Model {
    /// The extended time of the clock.
    now: u64,
    /// Extended time of the last clock sample the drain saw or will see in order.
    last_sample: u64,
    expected: Vec<Typed>,
    /// The local root of every span started (to check explicit root deltas).
    roots: HashMap<u32, u32>,
    /// Contexts of every span started, with their local root when their trace is local.
    contexts: Vec<(SpanContext, Option<u32>)>,
}

impl Model {
    fn sample(&mut self) -> u64 {
        self.last_sample = self.now;
        self.now
    }
    fn context(&self, t: &Target) -> Option<(SpanContext, Option<u32>)> {
        match *t {
            Target::Remote(trace, span) => Some((
                SpanContext {
                    trace_id: TraceId(trace),
                    span_id: SpanId(span),
                    flags: Flags::SAMPLED,
                },
                None,
            )),
            Target::Earlier(i) if !self.contexts.is_empty() => {
                Some(self.contexts[i % self.contexts.len()])
            }
            Target::Earlier(_) => None,
        }
    }
}

fn run<const F: usize>(
    c0: u32,
    boot_id: u32,
    epoch_frames: u16,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(c0);
    let ring: Box<Ring<{ 1 << 15 }>> = Box::new(Ring::new());
    let session = Session::new("prop").boot_id(boot_id);
    // The high half of this boot's span ids.
    let prefix = SpanId::boot_prefix(session.device_id, boot_id);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, F> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(epoch_frames);
    let mut wire = Vec::new();
    let mut m = Model {
        now: c0 as u64,
        last_sample: c0 as u64,
        expected: Vec::new(),
        roots: HashMap::new(),
        contexts: Vec::new(),
    };
    let mut stack: Vec<Open<'_>> = Vec::new();

    let set_clock = |now: u64| {
        clock
            .0
            .store(now as u32, std::sync::atomic::Ordering::Relaxed)
    };
    let drain_now = |drain: &mut Drain<'_, F>, wire: &mut Vec<u8>| {
        wire.extend_from_slice(&common::drain_all(drain));
    };

    #[allow(clippy::too_many_arguments)]
    fn started<'t>(
        m: &mut Model,
        stack: &mut Vec<Open<'t>>,
        span: Span<'t, B>,
        name: usize,
        parent: Parent,
        follows_from: bool,
        root: Option<u32>,
        time: u64,
    ) {
        assert!(span.is_recording());
        let ctx = span.context();
        let id = ctx.span_id.0 as u32;
        // The trace is local when this device started it (its root is a local span).
        let root = root.unwrap_or(id);
        let local = ctx.trace_id.high() == Session::new("prop").device_id;
        m.roots.insert(id, root);
        m.contexts.push((ctx, local.then_some(root)));
        m.expected.push(Typed::Start {
            id,
            parent,
            follows_from,
            debug: false,
            name: NAMES[name].into(),
            time,
        });
        let baggage = span.baggage();
        let mut items = Vec::new();
        baggage.for_each(|k, v| {
            items.push((k.to_string(), v.to_string()));
            true
        });
        stack.push(Open {
            span,
            id,
            losses: Losses::default(),
            tags: 0,
            baggage: items,
        });
    }

    for op in ops {
        match op {
            Op::Root(n) => {
                let t = m.sample();
                let span = tracer
                    .span(NAMES[*n])
                    .with_baggage(Baggage::<B>::new())
                    .start();
                started(&mut m, &mut stack, span, *n, Parent::Root, false, None, t);
            }
            Op::Child(n) | Op::Follower(n) => {
                let follows = matches!(op, Op::Follower(_));
                let t = m.sample();
                let Some(top) = stack.last() else {
                    let span = tracer
                        .span(NAMES[*n])
                        .with_baggage(Baggage::<B>::new())
                        .start();
                    started(&mut m, &mut stack, span, *n, Parent::Root, false, None, t);
                    continue;
                };
                let span = if follows {
                    top.span.follower(NAMES[*n])
                } else {
                    top.span.child(NAMES[*n])
                };
                let (pid, root) = (top.id, m.roots[&top.id]);
                started(
                    &mut m,
                    &mut stack,
                    span,
                    *n,
                    Parent::Local {
                        id: pid,
                        root: None,
                    },
                    follows,
                    Some(root),
                    t,
                );
            }
            Op::ChildOf(n, target, follows) => {
                let Some((ctx, local_root)) = m.context(target) else {
                    continue;
                };
                let extra = follows
                    .and_then(|i| m.context(&Target::Earlier(i)))
                    .filter(|(c, _)| c.is_valid());
                let t = m.sample();
                let mut b = tracer.span(NAMES[*n]).child_of(&ctx);
                if let Some((f, _)) = extra {
                    b = b.follows_from(&f);
                }
                let span = b.with_baggage(Baggage::<B>::new()).start();
                let (parent_ctx, parent_root, follows_parent) = if ctx.is_valid() {
                    (Some(ctx), local_root, false)
                } else {
                    // The ChildOf context names no span: the FollowsFrom one is the parent.
                    (extra.map(|e| e.0), extra.and_then(|e| e.1), true)
                };
                let (parent, root) = match (parent_ctx, parent_root) {
                    (None, _) => (Parent::Root, None),
                    (Some(p), Some(root)) => (
                        Parent::Local {
                            id: p.span_id.0 as u32,
                            root: None,
                        },
                        Some(root),
                    ),
                    // A span of this boot in a trace from elsewhere: a local parent, started as
                    // a child of it is (`Op::Child`).
                    (Some(p), None) if (p.span_id.0 >> 32) as u32 == prefix => (
                        Parent::Local {
                            id: p.span_id.0 as u32,
                            root: None,
                        },
                        Some(m.roots[&(p.span_id.0 as u32)]),
                    ),
                    (Some(p), None) => (
                        Parent::Remote {
                            trace: p.trace_id,
                            span: Some(p.span_id),
                        },
                        None,
                    ),
                };
                started(
                    &mut m,
                    &mut stack,
                    span,
                    *n,
                    parent,
                    follows_parent && parent_ctx.is_some(),
                    root,
                    t,
                );
                if let (true, Some((f, _))) = (ctx.is_valid(), extra) {
                    let id = stack.last().unwrap().id;
                    m.expected.push(Typed::Reference {
                        span: id,
                        kind: RefKind::FollowsFrom,
                        trace: f.trace_id.0,
                        target: f.span_id.0,
                    });
                }
            }
            Op::Finish | Op::FinishAny(_) => {
                let open = match op {
                    Op::FinishAny(i) if !stack.is_empty() => stack.remove(i % stack.len()),
                    _ => match stack.pop() {
                        Some(open) => open,
                        None => continue,
                    },
                };
                let t = m.sample();
                m.expected.push(Typed::End {
                    span: open.id,
                    time: t,
                    losses: open.losses,
                });
                prop_assert_eq!(open.span.losses(), open.losses);
                open.span.finish();
            }
            Op::Tag(k, v) => {
                let Some(top) = stack.last_mut() else {
                    continue;
                };
                top.span.set_tag(KEYS[*k], v.value());
                if top.tags >= MAX_TAGS_PER_SPAN {
                    top.losses.tags_over_capacity = top.losses.tags_over_capacity.saturating_add(1);
                } else {
                    top.tags += 1;
                    let (value, cut) = v.expected();
                    top.losses.strings_truncated =
                        top.losses.strings_truncated.saturating_add(cut as u8);
                    m.expected.push(Typed::Tag {
                        span: top.id,
                        key: KEYS[*k].into(),
                        value,
                    });
                }
            }
            Op::Log(fields) => {
                let Some(top) = stack.last_mut() else {
                    continue;
                };
                let values: Vec<(&'static str, Value<'_>)> =
                    fields.iter().map(|(k, v)| (KEYS[*k], v.value())).collect();
                let t = m.now;
                m.last_sample = t;
                top.span.log(values.as_slice());
                let n = fields.len().min(MAX_FIELDS_PER_LOG);
                let mut expected = Vec::new();
                for (k, v) in &fields[..n] {
                    let (value, cut) = v.expected();
                    top.losses.strings_truncated =
                        top.losses.strings_truncated.saturating_add(cut as u8);
                    expected.push((KEYS[*k].to_string(), value));
                }
                top.losses.fields_over_capacity = top
                    .losses
                    .fields_over_capacity
                    .saturating_add((fields.len() - n) as u8);
                m.expected.push(Typed::Log {
                    span: top.id,
                    time: t,
                    fields: expected,
                });
            }
            Op::Baggage(key, value) => {
                let Some(top) = stack.last_mut() else {
                    continue;
                };
                top.span.set_baggage(key, value);
                let (k, v) = (key.as_str(), value.as_str());
                // An item is stored whole or not at all (W3C Baggage forbids propagating part
                // of one): an empty key, or a key or value over its capacity, is dropped.
                let whole = !k.is_empty()
                    && k.len() <= MAX_BAGGAGE_KEY_LEN
                    && v.len() <= MAX_BAGGAGE_VALUE_LEN;
                let stored = if !whole {
                    false
                } else if let Some(item) = top.baggage.iter_mut().find(|(ik, _)| ik == k) {
                    item.1 = v.into();
                    true
                } else if top.baggage.len() < B {
                    top.baggage.push((k.into(), v.into()));
                    true
                } else {
                    false
                };
                if !stored {
                    top.losses.fields_over_capacity =
                        top.losses.fields_over_capacity.saturating_add(1);
                } else {
                    m.expected.push(Typed::Baggage {
                        span: top.id,
                        key: k.into(),
                        value: v.into(),
                        carried: false,
                    });
                }
                prop_assert_eq!(
                    top.span.baggage_item(k),
                    top.baggage
                        .iter()
                        .find(|(ik, _)| ik == k)
                        .map(|(_, v)| v.as_str())
                );
            }
            Op::Reference(follows, target) => {
                let Some(top) = stack.last() else { continue };
                let Some((ctx, _)) = m.context(target) else {
                    continue;
                };
                let kind = if *follows {
                    RefKind::FollowsFrom
                } else {
                    RefKind::ChildOf
                };
                top.span.add_reference(kind, &ctx);
                if ctx.is_valid() {
                    m.expected.push(Typed::Reference {
                        span: top.id,
                        kind,
                        trace: ctx.trace_id.0,
                        target: ctx.span_id.0,
                    });
                }
            }
            Op::Advance(d) => {
                m.now = m.now.checked_add_signed(*d).unwrap();
                set_clock(m.now);
                // The drain extends 32-bit ticks from sample to sample: keep consecutive samples
                // within half a wrap by draining (which samples the clock) after a long step.
                if m.now.abs_diff(m.last_sample) > 1 << 29 {
                    drain_now(&mut drain, &mut wire);
                    m.last_sample = m.now;
                }
            }
            Op::Drain => {
                drain_now(&mut drain, &mut wire);
                m.last_sample = m.now;
            }
        }
    }
    while let Some(open) = stack.pop() {
        let t = m.sample();
        m.expected.push(Typed::End {
            span: open.id,
            time: t,
            losses: open.losses,
        });
        drop(open.span);
    }
    drain_now(&mut drain, &mut wire);

    let stats = drain.stats();
    let d = decode_typed(&wire);
    prop_assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    prop_assert!(d.record_errors.is_empty(), "{:?}", d.record_errors);
    prop_assert_eq!(d.unresolved_names, 0);
    prop_assert_eq!(d.frames.len() as u32, stats.frames);
    for w in d.frames.windows(2) {
        prop_assert_eq!(w[1], w[0].wrapping_add(1));
    }
    // Nothing is dropped for want of space in this ring; only a record larger than a whole frame
    // (a long log in a small frame) may be dropped by the drain, and is counted.
    prop_assert_eq!(tracer.dropped(), stats.oversize);
    prop_assert_eq!(d.last_drops(), stats.oversize);
    if F >= 1024 {
        prop_assert_eq!(stats.oversize, 0);
    }

    // Normalise the decoded parents: an explicit root must be the model's; then compare.
    let mut decoded: Vec<Typed> = Vec::new();
    for r in d.spans() {
        let mut r = r.clone();
        if let Typed::Start {
            id,
            parent: Parent::Local { root, .. },
            ..
        } = &mut r
        {
            if let Some(root) = root.take() {
                prop_assert_eq!(Some(&root), m.roots.get(id), "explicit root of span {}", id);
            }
        }
        decoded.push(r);
    }
    // A child of a span that continues a remote trace is a `START_REMOTE` naming the trace and
    // its parent when the parent's start is in an earlier frame (so it keeps its trace if that
    // frame is lost): the same start as the model's, if the trace is the parent's and not local.
    let remote_form_of = |decoded: &Typed, expected: &Typed| -> bool {
        let (
            Typed::Start {
                id,
                parent: Parent::LocalInTrace { trace, span: s },
                follows_from,
                debug,
                name,
                time,
            },
            Typed::Start {
                parent:
                    Parent::Local {
                        id: pid,
                        root: None,
                    },
                ..
            },
        ) = (decoded, expected)
        else {
            return false;
        };
        let parent_trace = m
            .contexts
            .iter()
            .find(|(c, local)| local.is_none() && c.span_id == SpanId::local(prefix, *pid))
            .map(|(c, _)| c.trace_id);
        *s == SpanId::local(prefix, *pid)
            && parent_trace == Some(*trace)
            && *expected
                == Typed::Start {
                    id: *id,
                    parent: Parent::Local {
                        id: *pid,
                        root: None,
                    },
                    follows_from: *follows_from,
                    debug: *debug,
                    name: name.clone(),
                    time: *time,
                }
    };
    // The decoded records are the model's, except the records the drain dropped as oversize.
    let mut skipped = 0;
    let mut di = 0;
    for e in &m.expected {
        if decoded.get(di) == Some(e) || decoded.get(di).is_some_and(|d| remote_form_of(d, e)) {
            di += 1;
        } else {
            prop_assert!(
                matches!(e, Typed::Log { .. } | Typed::Tag { .. }),
                "missing or different record: expected {:?}, decoded {:?}",
                e,
                decoded.get(di)
            );
            skipped += 1;
        }
    }
    prop_assert_eq!(
        di,
        decoded.len(),
        "extra decoded records: {:?}",
        &decoded[di..]
    );
    prop_assert_eq!(skipped, stats.oversize);
    Ok(())
}

fn start_clock() -> impl Strategy<Value = u32> {
    prop_oneof![u32::MAX - 100_000..=u32::MAX, (1u32 << 21)..=u32::MAX]
}

proptest! {
    // 128 cases unless `PROPTEST_CASES` says otherwise; shrinking bounded so a failure reports
    // promptly.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        max_shrink_iters: 20_000,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn recorded_spans_decode_as_modelled(
        f in 0..3usize,
        c0 in start_clock(),
        boot_id in prop_oneof![Just(1u32), any::<u32>()],
        epoch_frames in 1u16..=64,
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        match f {
            0 => run::<128>(c0, boot_id, epoch_frames, &ops)?,
            1 => run::<256>(c0, boot_id, epoch_frames, &ops)?,
            _ => run::<1024>(c0, boot_id, epoch_frames, &ops)?,
        }
    }

    /// Arbitrary bytes, in arbitrary chunks: the accumulator and the record decoder never panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
        decode_everything::<256>(&bytes, chunk);
        decode_everything::<4096>(&bytes, chunk);
    }

    /// Frames with a valid CRC and COBS encoding but arbitrary bodies reach the record decoder.
    #[test]
    fn valid_frames_with_random_bodies_never_panic(
        frames in proptest::collection::vec((any::<u16>(), any::<u32>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..400)), 1..8),
        chunk in 1usize..300,
    ) {
        let mut stream = Vec::new();
        let mut fb: Box<FrameBuilder<1024>> = Box::new(FrameBuilder::new());
        for (seq, base_id, base_time, body) in &frames {
            fb.begin();
            fb.u8(microspan::wire::WIRE_VERSION).unwrap();
            fb.bytes(&seq.to_le_bytes()).unwrap();
            fb.varint(*base_id as u64).unwrap();
            fb.varint(*base_time).unwrap();
            fb.bytes(body).unwrap();
            stream.extend_from_slice(fb.finish());
        }
        let good = decode_everything::<4096>(&stream, chunk);
        prop_assert_eq!(good, frames.len());
    }

    /// A real stream with bytes flipped, dropped or inserted: no panic, and every frame the damage
    /// did not touch still decodes (the stream resynchronises at the next delimiter).
    #[test]
    fn corrupted_streams_resynchronise(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..6),
        chunk in 1usize..300,
    ) {
        let clean = sample_stream();
        // Frames, not delimiters: the drain's first frame has a delimiter before it too.
        let frames = clean.split(|&b| b == 0).filter(|f| !f.is_empty()).count();
        assert_eq!(clean.first(), Some(&0));
        let mut bytes = clean.clone();
        for (at, b, kind) in &edits {
            let at = at % bytes.len();
            match kind {
                0 => bytes[at] ^= b | 1,
                1 => { bytes.remove(at); }
                _ => bytes.insert(at, *b),
            }
        }
        let good = decode_everything::<4096>(&bytes, chunk);
        // Each edit touches at most two frames (one, or two when it adds or removes a delimiter).
        prop_assert!(good + 2 * edits.len() >= frames, "{} good of {} after {} edits", good, frames, edits.len());
    }
}

/// Feeds `bytes` in chunks; decodes every record of every good frame (fields included). Returns
/// the number of frames that passed the CRC.
fn decode_everything<const MAX: usize>(bytes: &[u8], chunk: usize) -> usize {
    let mut acc: Box<Accumulator<MAX>> = Box::new(Accumulator::new());
    let mut good = 0;
    for piece in bytes.chunks(chunk) {
        let mut input = piece;
        while !input.is_empty() {
            let (frame, rest) = acc.feed(input);
            input = rest;
            if let Some(Ok(frame)) = frame {
                good += 1;
                for r in RecordDecoder::new(&frame) {
                    match r {
                        Ok(Record::Log { fields, .. }) => {
                            let n = fields.len();
                            assert_eq!(fields.count(), n);
                        }
                        Ok(other) => {
                            let _ = format!("{other:?}");
                        }
                        Err(e) => {
                            let _ = e.to_string();
                        }
                    }
                }
            } else if let Some(Err(e)) = frame {
                let _ = e.to_string();
            }
        }
    }
    assert!(acc.buffered() <= MAX);
    good
}

/// A stream with every kind of record, in small frames.
fn sample_stream() -> Vec<u8> {
    let clock = ManualClock::new(u32::MAX - 50);
    let ring: Box<Ring<4096>> = Box::new(Ring::new());
    let session = Session::new("sample").boot_id(5);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 96> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(4);
    drain.set_wall_clock(1_700_000_000_000_000_000);
    let remote = SpanContext {
        trace_id: TraceId(77),
        span_id: SpanId(88),
        flags: Flags::SAMPLED,
    };
    for i in 0..12u32 {
        let mut root: Span<'_, 1> = tracer
            .span(NAMES[i as usize % NAMES.len()])
            .with_baggage(Baggage::<1>::new())
            .start();
        root.set_baggage("user", "bob");
        clock.advance(100);
        let c = root.child("child");
        c.set_tag("i", i);
        c.set_tag("t", Value::text("dynamic ünïcödé"));
        c.log([
            ("event", "e".into()),
            ("n", (-(i as i64)).into()),
            ("f", 0.5f64.into()),
        ]);
        c.add_reference(RefKind::FollowsFrom, &remote);
        let r = tracer.span("remote").child_of(&remote).start();
        drop(r);
        drop(c);
        clock.advance(7);
    }
    common::drain_all(&mut drain)
}

/// The first span of a session whose boot id is 0 (the default of `Session::new`) has a valid,
/// non-zero span id: `SpanId` promises never to be 0 for a recorded span, and a FollowsFrom
/// reference to (or an injected context of) a span with id 0 would be silently refused.
#[test]
fn first_span_of_a_default_session_has_a_valid_id() {
    let clock = ManualClock::new(0);
    let ring: Box<Ring<256>> = Box::new(Ring::new());
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let first = tracer.root("first");
    assert!(first.is_recording());
    assert!(
        first.context().is_valid(),
        "context of the first span: {:?}",
        first.context()
    );
}
