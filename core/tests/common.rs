//! Shared by the integration tests: a clock the test moves by hand, and a stream decoder that
//! turns wire bytes back into owned records.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use microspan::wire::decode::{Accumulator, FrameError, Record, RecordDecoder, StrRef, WireValue};
use microspan::Clock;

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
    Hello { service: String, boot_id: u32 },
    Start { id: u32, parent: String, name: String, time: u64 },
    End { span: u32, time: u64, losses: [u8; 4] },
    Tag { span: u32, key: String, value: String },
    Log { span: u32, time: u64, fields: Vec<(String, String)> },
    Baggage { span: u32, key: String, value: String },
    Reference { span: u32, follows: bool, target: u64 },
    Drops(u32),
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
            StrRef::Id(id) => self.names.get(&id).cloned().unwrap_or_else(|| format!("<name {id}>")),
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

    /// Only the span records (no session, names or drops).
    pub fn spans(&self) -> Vec<Owned> {
        self.records.iter().filter(|r| !matches!(r, Owned::Hello { .. } | Owned::Drops(_))).cloned().collect()
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
                    let rec = rec.unwrap_or_else(|e| panic!("record error {e} in frame {}", frame.seq));
                    let owned = match rec {
                        Record::Hello(h) => Owned::Hello { service: h.service.into(), boot_id: h.boot_id },
                        Record::Name { id, name } => {
                            out.names.insert(id, name.into());
                            continue;
                        }
                        Record::Start(s) => Owned::Start { id: s.id, parent: format!("{:?}{}", s.parent, if s.follows_from { " follows" } else { "" }), name: out.s(s.name), time: s.time },
                        Record::End { span, time, losses } => Owned::End { span, time, losses: [losses.tags_over_capacity, losses.fields_over_capacity, losses.strings_truncated, losses.records_dropped] },
                        Record::Tag { span, key, value } => Owned::Tag { span, key: out.s(key), value: out.v(value) },
                        Record::Log { span, time, fields } => Owned::Log { span, time, fields: fields.map(|(k, v)| (out.s(k), out.v(v))).collect() },
                        Record::Baggage { span, key, value } => Owned::Baggage { span, key: key.into(), value: value.into() },
                        Record::Reference { span, kind, target, .. } => Owned::Reference { span, follows: kind == microspan::RefKind::FollowsFrom, target: target.0 },
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
pub fn drain_all<const F: usize, const N: usize>(drain: &mut microspan::Drain<'_, F, N>) -> Vec<u8> {
    let mut out = Vec::new();
    drain.drain_with(|b| {
        out.extend_from_slice(b);
        b.len()
    });
    out
}
