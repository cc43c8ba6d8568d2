//! Shared by the integration tests: a clock the test moves by hand, and a stream decoder that
//! turns wire bytes back into owned records.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use microspan::wire::decode::{Accumulator, FrameError, Record, RecordDecoder, StrRef, WireValue};
use microspan::{Clock, Tracer, Value};

/// A 1 MHz clock advanced by the test.
pub struct ManualClock(pub AtomicU32);

impl ManualClock {
    pub const fn new(start: u32) -> Self {
        Self(AtomicU32::new(start))
    }
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

/// A record with names resolved and strings owned, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub enum Owned {
    Hello {
        service: String,
        boot_id: u32,
    },
    Start {
        id: u32,
        parent: String,
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
        carried: bool,
    },
    Reference {
        span: u32,
        follows: bool,
        target: u64,
    },
    Drops(u32),
}

/// How many of `records` are TAG records.
pub fn count_tags(records: &[Owned]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r, Owned::Tag { .. }))
        .count()
}

#[derive(Default)]
pub struct Decoded {
    pub records: Vec<Owned>,
    pub frames: Vec<u16>,
    pub frame_errors: Vec<FrameError>,
    names: std::collections::HashMap<u32, String>,
}

impl Decoded {
    fn s(&self, r: StrRef<'_>) -> String {
        match r {
            StrRef::Id(id) => self
                .names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("<name {id}>")),
            StrRef::Inline(s) => s.to_string(),
        }
    }
    fn v(&self, v: WireValue<'_>) -> String {
        match v {
            WireValue::Bool(b) => b.to_string(),
            WireValue::I64(i) => i.to_string(),
            WireValue::U64(u) => format!("{u}u"),
            WireValue::F64(f) => format!("{f}f"),
            WireValue::Str(s) => format!("{:?}", self.s(s)),
        }
    }

    /// How many TAG records were decoded.
    pub fn tag_count(&self) -> usize {
        count_tags(&self.records)
    }

    /// Only the span records (no session, names or drops).
    pub fn spans(&self) -> Vec<Owned> {
        self.records
            .iter()
            .filter(|r| !matches!(r, Owned::Hello { .. } | Owned::Drops(_)))
            .cloned()
            .collect()
    }
}

pub fn decode(stream: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut acc: Box<Accumulator<4096>> = Box::new(Accumulator::new());
    let mut input = stream;
    while !input.is_empty() {
        let (frame, rest) = acc.feed(input);
        input = rest;
        match frame {
            None => {}
            Some(Err(e)) => out.frame_errors.push(e),
            Some(Ok(frame)) => {
                out.frames.push(frame.seq);
                for rec in RecordDecoder::new(&frame) {
                    let rec =
                        rec.unwrap_or_else(|e| panic!("record error {e} in frame {}", frame.seq));
                    let owned = match rec {
                        Record::Hello(h) => Owned::Hello {
                            service: h.service.into(),
                            boot_id: h.boot_id,
                        },
                        Record::Name { id, name, cut } => {
                            // A name the device cut is marked, as the host decoder marks it.
                            let name = if cut {
                                format!("{name}…")
                            } else {
                                name.into()
                            };
                            out.names.insert(id, name);
                            continue;
                        }
                        Record::Start(s) => Owned::Start {
                            id: s.id,
                            parent: format!(
                                "{:?}{}",
                                s.parent,
                                if s.follows_from { " follows" } else { "" }
                            ),
                            name: out.s(s.name),
                            time: s.time,
                        },
                        Record::End { span, time, losses } => Owned::End {
                            span,
                            time,
                            losses: [
                                losses.tags_over_capacity,
                                losses.fields_over_capacity,
                                losses.strings_truncated,
                                losses.records_dropped,
                            ],
                        },
                        Record::Tag { span, key, value } => Owned::Tag {
                            span,
                            key: out.s(key),
                            value: out.v(value),
                        },
                        Record::Log { span, time, fields } => Owned::Log {
                            span,
                            time,
                            fields: fields.map(|(k, v)| (out.s(k), out.v(v))).collect(),
                        },
                        Record::Baggage {
                            span,
                            key,
                            value,
                            carried,
                        } => Owned::Baggage {
                            span,
                            key: key.into(),
                            value: value.into(),
                            carried,
                        },
                        Record::Reference {
                            span, kind, target, ..
                        } => Owned::Reference {
                            span,
                            follows: kind == microspan::RefKind::FollowsFrom,
                            target: target.0,
                        },
                        Record::Drops { total } => Owned::Drops(total),
                        Record::WallClock(_) => continue,
                    };
                    out.records.push(owned);
                }
            }
        }
    }
    out
}

/// Everything the drain has, as bytes.
pub fn drain_all<const F: usize, const N: usize>(
    drain: &mut microspan::Drain<'_, F, N>,
) -> Vec<u8> {
    let mut out = Vec::new();
    drain.drain_with(|b| {
        out.extend_from_slice(b);
        b.len()
    });
    out
}

/// A value with strings resolved and owned; floats compared by their bits (NaN equals itself).
#[derive(Debug, Clone)]
pub enum TValue {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
}

impl PartialEq for TValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TValue::Bool(a), TValue::Bool(b)) => a == b,
            (TValue::I64(a), TValue::I64(b)) => a == b,
            (TValue::U64(a), TValue::U64(b)) => a == b,
            (TValue::F64(a), TValue::F64(b)) => a.to_bits() == b.to_bits(),
            (TValue::Str(a), TValue::Str(b)) => a == b,
            _ => false,
        }
    }
}

/// A record with names resolved and strings owned, keeping the decoder's types (parents, losses,
/// ids) so tests can check them field by field.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Hello {
        service: String,
        boot_id: u32,
    },
    Start {
        id: u32,
        parent: microspan::wire::decode::Parent,
        follows_from: bool,
        debug: bool,
        name: String,
        time: u64,
    },
    End {
        span: u32,
        time: u64,
        losses: microspan::tracer::Losses,
    },
    Tag {
        span: u32,
        key: String,
        value: TValue,
    },
    Log {
        span: u32,
        time: u64,
        fields: Vec<(String, TValue)>,
    },
    Baggage {
        span: u32,
        key: String,
        value: String,
        carried: bool,
    },
    Reference {
        span: u32,
        kind: microspan::RefKind,
        trace: u128,
        target: u64,
    },
    Drops(u32),
    WallClock {
        ticks: u64,
        unix_nanos: u64,
    },
}

impl Typed {
    /// `true` for the records a span produces (start, end, tag, log, baggage, reference).
    pub fn is_span_record(&self) -> bool {
        !matches!(
            self,
            Typed::Hello { .. } | Typed::Drops(_) | Typed::WallClock { .. }
        )
    }
}

/// What [`decode_typed`] found in a stream.
#[derive(Default)]
pub struct TypedStream {
    pub records: Vec<Typed>,
    /// Sequence numbers of the good frames, in order.
    pub frames: Vec<u16>,
    pub frame_errors: Vec<FrameError>,
    /// Record errors (the rest of the frame is abandoned after one).
    pub record_errors: Vec<microspan::wire::decode::RecordError>,
    /// Name ids used before any definition in their epoch.
    pub unresolved_names: usize,
}

impl TypedStream {
    /// Only the span records.
    pub fn spans(&self) -> impl Iterator<Item = &Typed> {
        self.records.iter().filter(|r| r.is_span_record())
    }
    /// The last cumulative drop count the stream carried (0 if none).
    pub fn last_drops(&self) -> u32 {
        self.records
            .iter()
            .rev()
            .find_map(|r| {
                if let Typed::Drops(n) = r {
                    Some(*n)
                } else {
                    None
                }
            })
            .unwrap_or(0)
    }
}

/// Decodes a whole stream into [`Typed`] records. Never panics on bad input: errors are collected.
pub fn decode_typed(stream: &[u8]) -> TypedStream {
    let mut out = TypedStream::default();
    let mut names: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
    let mut acc: Box<Accumulator<4096>> = Box::new(Accumulator::new());
    let mut input = stream;
    while !input.is_empty() {
        let (frame, rest) = acc.feed(input);
        input = rest;
        match frame {
            None => {}
            Some(Err(e)) => out.frame_errors.push(e),
            Some(Ok(frame)) => {
                out.frames.push(frame.seq);
                for rec in RecordDecoder::new(&frame) {
                    let rec = match rec {
                        Ok(r) => r,
                        Err(e) => {
                            out.record_errors.push(e);
                            break;
                        }
                    };
                    let mut s = |r: StrRef<'_>| match r {
                        StrRef::Id(id) => names.get(&id).cloned().unwrap_or_else(|| {
                            out.unresolved_names += 1;
                            format!("<name {id}>")
                        }),
                        StrRef::Inline(s) => s.to_string(),
                    };
                    let v = |v: WireValue<'_>, s: &mut dyn FnMut(StrRef<'_>) -> String| match v {
                        WireValue::Bool(b) => TValue::Bool(b),
                        WireValue::I64(i) => TValue::I64(i),
                        WireValue::U64(u) => TValue::U64(u),
                        WireValue::F64(f) => TValue::F64(f),
                        WireValue::Str(r) => TValue::Str(s(r)),
                    };
                    let typed = match rec {
                        Record::Hello(h) => Typed::Hello {
                            service: h.service.into(),
                            boot_id: h.boot_id,
                        },
                        Record::Name { id, name, cut } => {
                            let name = if cut {
                                format!("{name}…")
                            } else {
                                name.into()
                            };
                            names.insert(id, name);
                            continue;
                        }
                        Record::Start(st) => Typed::Start {
                            id: st.id,
                            parent: st.parent,
                            follows_from: st.follows_from,
                            debug: st.debug,
                            name: s(st.name),
                            time: st.time,
                        },
                        Record::End { span, time, losses } => Typed::End { span, time, losses },
                        Record::Tag { span, key, value } => {
                            let key = s(key);
                            Typed::Tag {
                                span,
                                key,
                                value: v(value, &mut s),
                            }
                        }
                        Record::Log { span, time, fields } => {
                            let fields = fields.map(|(k, val)| (s(k), v(val, &mut s))).collect();
                            Typed::Log { span, time, fields }
                        }
                        Record::Baggage {
                            span,
                            key,
                            value,
                            carried,
                        } => Typed::Baggage {
                            span,
                            key: key.into(),
                            value: value.into(),
                            carried,
                        },
                        Record::Reference {
                            span,
                            kind,
                            trace,
                            target,
                        } => Typed::Reference {
                            span,
                            kind,
                            trace: trace.0,
                            target: target.0,
                        },
                        Record::Drops { total } => Typed::Drops(total),
                        Record::WallClock(w) => Typed::WallClock {
                            ticks: w.ticks,
                            unix_nanos: w.unix_nanos,
                        },
                    };
                    out.records.push(typed);
                }
            }
        }
    }
    out
}

// Shared by the stress tests of both ring policies.

/// A clock that ticks once per reading (the stress tests start it just below the 32-bit wrap so
/// the drain's tick extension is exercised under concurrency too).
pub struct CountingClock(pub AtomicU32);

impl Clock for CountingClock {
    fn now(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
    fn ticks_per_second(&self) -> u32 {
        1_000_000
    }
}

pub const ROOT_NAMES: [&str; 16] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];
pub const CHILD_NAMES: [&str; 16] = [
    "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14",
    "c15",
];

/// The value that names thread `thread`'s iteration `iter` in the stress workload's records.
pub fn tag_id(thread: u32, iter: u32) -> u64 {
    (thread as u64) << 32 | iter as u64
}

/// One span of a [`stress_iteration`]: the records it made (counted whether its START reached the
/// ring or not: a span whose START was dropped has the ring count each record it skips), whether
/// its START was dropped, and the records its handle counted as dropped (a recorded span's tags
/// and logs; 0 for a lost one, whose records the ring counts).
pub struct StressSpan {
    pub records: u64,
    pub lost: bool,
    pub dropped: u64,
}

/// One iteration of the stress tests' producers (`stress.rs`, `stress_overwrite.rs`): a root with
/// one tag (`id`; through the batch path on odd iterations), and a child with an integer tag and
/// a copied string tag (given with its START, in one reservation, on odd iterations) and a log of
/// three fields. Every value names the thread and iteration ([`tag_id`]). Returns the root's and
/// the child's accounts.
pub fn stress_iteration(
    tracer: &Tracer<'_>,
    thread: u32,
    i: u32,
    text: &mut String,
) -> [StressSpan; 2] {
    let id = tag_id(thread, i);
    let root = tracer.root(ROOT_NAMES[thread as usize]);
    let root_lost = !root.is_recording();
    if i % 2 == 1 {
        root.set_tags([("id", id.into())]);
    } else {
        root.set_tag("id", id);
    }
    text.clear();
    use std::fmt::Write;
    write!(text, "t{thread}-{i}").unwrap();
    let child = if i % 2 == 1 {
        root.child_with_tags(
            CHILD_NAMES[thread as usize],
            [("seq", (id as i64).into()), ("txt", Value::text(text))],
        )
    } else {
        root.child(CHILD_NAMES[thread as usize])
    };
    let child_lost = !child.is_recording();
    if i % 2 == 0 {
        child.set_tag("seq", id as i64);
        child.set_tag("txt", Value::text(text));
    }
    child.log([
        ("event", "work".into()),
        ("n", id.into()),
        ("f", (i as f64).into()),
    ]);
    let child_dropped = child.losses().records_dropped as u64;
    drop(child);
    let root_dropped = root.losses().records_dropped as u64;
    drop(root);
    [
        // START, one tag, END.
        StressSpan {
            records: 3,
            lost: root_lost,
            dropped: root_dropped,
        },
        // START, two tags, a log, END.
        StressSpan {
            records: 5,
            lost: child_lost,
            dropped: child_dropped,
        },
    ]
}

pub fn env_or(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tag or field value whose conversion gives a different `Value` on each call, as user code
/// may (one that reads a counter): the batch and tuple-log paths walk the values twice, once to
/// size the reservation and once to write it, so the second walk must be kept within what the
/// first reserved.
/// `Fickle(calls, grows, n)`, for a batch of `n` such tags: the first walk (calls `0..n`) gives
/// the smallest value (a bool) when `grows`, the largest (a copied string) otherwise; the second
/// walk the other one.
#[derive(Clone, Copy)]
pub struct Fickle(pub &'static AtomicU32, pub bool, pub u32);

/// The large value's length: a copied string of at most 64 bytes, so that batches fit one
/// reservation whatever `MAX_STR_LEN` the build chose.
pub const LARGE_LEN: usize = if microspan::config::MAX_STR_LEN < 64 {
    microspan::config::MAX_STR_LEN
} else {
    64
};
static LONG: &str = include_str!("common.rs");

impl From<Fickle> for Value<'static> {
    fn from(f: Fickle) -> Self {
        let call = f.0.fetch_add(1, Ordering::Relaxed);
        let large = (call / f.2 % 2 == 1) == f.1;
        if large {
            Value::text(&LONG[..LARGE_LEN])
        } else {
            Value::Bool(true)
        }
    }
}

/// A value whose conversion panics every second time: a batch or tuple log's sizing walk
/// passes, its writing walk panics (a host build, where panics unwind).
#[derive(Clone, Copy)]
pub struct Bomb;

static BOMB_CONVERSIONS: AtomicU32 = AtomicU32::new(0);

impl From<Bomb> for Value<'static> {
    fn from(_: Bomb) -> Self {
        if BOMB_CONVERSIONS.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            panic!("conversion failed");
        }
        Value::U64(1)
    }
}

/// Runs `f`, which panics, with the panic message silenced; returns whether it panicked.
pub fn panics(f: impl FnOnce()) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.is_err()
}
