//! Span assembly: typed wire records in, finished spans (grouped per trace) out.
//!
//! The assembler keeps one session (one device boot) at a time: the session record gives the
//! clock rate, ids and process tags; a new boot id closes the old session's open spans as
//! incomplete. Names are resolved through the epoch's name table; spans lost to a sequence gap, to
//! the device's full ring or to capacity limits carry Jaeger warnings saying so. Every table is
//! bounded by [`Limits`]; what does not fit is exported early or counted, never kept without
//! bound.

use std::collections::{HashMap, VecDeque};

use microspan::wire::decode::{
    Frame, Parent, Record, RecordDecoder, RecordError, StrRef, WireValue,
};
use microspan::wire::{Hello, WallClock, WIRE_VERSION};
use microspan::{RefKind as WireRefKind, SpanId, TraceId};

use crate::model::{Batch, KeyValue, Log, Process, RefKind, Reference, Span, Value};

/// Bounds on the assembler's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Spans open at once; beyond it the oldest open span is exported as incomplete.
    pub max_open_spans: usize,
    /// Finished spans held while their trace is still open; beyond it the oldest trace is exported
    /// as it stands (its later spans follow in another batch).
    pub max_buffered_spans: usize,
    /// Entries in the name table.
    pub max_names: usize,
    /// Tags or logs kept per span (a hostile stream cannot grow a span without bound).
    pub max_items_per_span: usize,
    /// Finished spans remembered for parent lookups (trace id, baggage).
    pub max_recent_spans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_open_spans: 100_000,
            max_buffered_spans: 200_000,
            max_names: 4096,
            max_items_per_span: 1024,
            max_recent_spans: 100_000,
        }
    }
}

/// Counters of everything the assembler saw, refused or lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames decoded.
    pub frames: u64,
    /// Frames lost on the link (sequence gaps).
    pub lost_frames: u64,
    /// Frames skipped before the first session record (decoder joined mid-stream).
    pub frames_before_session: u64,
    /// Records decoded.
    pub records: u64,
    /// Records refused as malformed (the rest of their frame is abandoned).
    pub record_errors: u64,
    /// Records that name a span this decoder never saw start (its frame was lost).
    pub orphan_records: u64,
    /// Records dropped on the device (ring full), as the device reports them.
    pub device_drops: u64,
    /// Spans exported.
    pub spans: u64,
    /// Spans exported as incomplete.
    pub incomplete_spans: u64,
    /// Device resets seen (new boot id).
    pub resets: u64,
    /// Spans currently open.
    pub open_spans: u64,
}

/// A resolved or still-pending string.
#[derive(Debug, Clone, PartialEq)]
enum Text {
    Known(String),
    /// An interned id whose definition was not seen (lost frame).
    Pending {
        epoch: u64,
        id: u32,
    },
}

#[derive(Debug, Clone)]
struct OpenSpan {
    local: u32,
    trace: u128,
    root: u32,
    name: Text,
    start: u64,
    last_time: u64,
    references: Vec<Reference>,
    tags: Vec<(Text, Val)>,
    logs: Vec<(u64, Vec<(Text, Val)>)>,
    baggage: Vec<(String, String)>,
    flags: u8,
    warnings: Vec<String>,
    lost_frames: u64,
    device_drops: u64,
    items_refused: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Text),
}

/// A baggage item (key, value).
type Baggage = (String, String);

/// What is remembered of a finished span for its children.
#[derive(Debug, Clone)]
struct Recent {
    trace: u128,
    root: u32,
    baggage: Vec<(String, String)>,
}

struct Session {
    hello: OwnedHello,
    process: Process,
    /// Device ticks ↔ Unix nanoseconds.
    anchor_ticks: u64,
    anchor_unix_nanos: i128,
    epoch: u64,
    last_seq: Option<u16>,
    last_time: u64,
    drops: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedHello {
    service: String,
    device_id: u64,
    boot_id: u32,
    ticks_per_second: u32,
    now_ticks: u64,
    epoch_frames: u16,
    firmware_version: String,
    microspan_version: String,
    wall_clock: Option<WallClock>,
}

impl From<&Hello<'_>> for OwnedHello {
    fn from(h: &Hello<'_>) -> Self {
        Self {
            service: h.service.to_string(),
            device_id: h.device_id,
            boot_id: h.boot_id,
            ticks_per_second: h.ticks_per_second.max(1),
            now_ticks: h.now_ticks,
            epoch_frames: h.epoch_frames.max(1),
            firmware_version: h.firmware_version.to_string(),
            microspan_version: h.microspan_version.to_string(),
            wall_clock: h.wall_clock,
        }
    }
}

/// Options of the assembler.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Memory bounds.
    pub limits: Limits,
    /// Anchor device time at this Unix time (nanoseconds) instead of the host's clock when the
    /// session record arrives (for reproducible output from recorded streams). The device's own
    /// wall clock, when it sends one, wins over both.
    pub fixed_anchor_unix_nanos: Option<u64>,
    /// The decoder's host name (a process tag); `None` leaves it out.
    pub host_name: Option<String>,
}

/// Rebuilds spans from frames.
pub struct Assembler {
    opts: Options,
    session: Option<Session>,
    names: HashMap<u32, String>,
    open: HashMap<u32, OpenSpan>,
    /// Open spans in start order (for evicting the oldest).
    open_order: VecDeque<u32>,
    recent: HashMap<u32, Recent>,
    recent_order: VecDeque<u32>,
    /// Finished spans waiting for their trace to finish, by trace.
    buffered: HashMap<u128, Vec<Span>>,
    buffered_order: VecDeque<u128>,
    buffered_count: usize,
    /// Open spans per trace.
    open_per_trace: HashMap<u128, usize>,
    /// Device drops reported in the current frame: they happened while the frame's records were
    /// in the ring, so spans that start later in the frame may have been open then too.
    frame_drops: u64,
    stats: Stats,
}

impl Assembler {
    /// An assembler with these options.
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            session: None,
            names: HashMap::new(),
            open: HashMap::new(),
            open_order: VecDeque::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            buffered: HashMap::new(),
            buffered_order: VecDeque::new(),
            buffered_count: 0,
            open_per_trace: HashMap::new(),
            frame_drops: 0,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.open_spans = self.open.len() as u64;
        s
    }

    /// The current session's service name, if a session started.
    pub fn service(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.hello.service.as_str())
    }

    /// Feeds one checked frame; finished traces are appended to `out`. Returns the record errors
    /// met (the frame's remaining records are abandoned after one).
    pub fn frame(&mut self, frame: &Frame<'_>, out: &mut Vec<Batch>) -> Option<RecordError> {
        self.stats.frames += 1;
        let mut records = RecordDecoder::new(frame);
        if self.session.is_none() {
            // Only a frame holding a session record can start a session.
            match records.next() {
                Some(Ok(Record::Hello(h))) => self.start_session(&h, out),
                _ => {
                    self.stats.frames_before_session += 1;
                    return None;
                }
            }
        }
        self.sequence(frame.seq);
        self.frame_drops = 0;
        for rec in records {
            match rec {
                Ok(r) => {
                    self.stats.records += 1;
                    self.record(r, out);
                }
                Err(e) => {
                    self.stats.record_errors += 1;
                    return Some(e);
                }
            }
        }
        self.flush_complete_traces(out);
        None
    }

    /// End of input: every open span is exported as incomplete, every buffered trace flushed.
    pub fn finish(&mut self, out: &mut Vec<Batch>) {
        self.close_session("the stream ended before this span finished", out);
    }

    fn sequence(&mut self, seq: u16) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let epoch_frames = s.hello.epoch_frames as u64;
        if let Some(last) = s.last_seq {
            let gap = seq.wrapping_sub(last).wrapping_sub(1) as u64;
            if gap > 0 {
                self.stats.lost_frames += gap;
                for span in self.open.values_mut() {
                    span.lost_frames += gap;
                }
            }
            // A new epoch (even one whose first frame was lost) restarts the name table.
            let crossed = gap + 1 >= epoch_frames
                || (seq as u64 / epoch_frames) != (last as u64 / epoch_frames);
            if crossed {
                s.epoch += 1;
                self.names.clear();
            }
        } else if seq as u64 % epoch_frames != 0 {
            s.epoch += 1;
        }
        s.last_seq = Some(seq);
    }

    fn start_session(&mut self, h: &Hello<'_>, out: &mut Vec<Batch>) {
        let hello = OwnedHello::from(h);
        let anchor_unix_nanos = match (hello.wall_clock, self.opts.fixed_anchor_unix_nanos) {
            (Some(w), _) => {
                w.unix_nanos as i128 - ticks_to_nanos(w.ticks, hello.ticks_per_second)
                    + ticks_to_nanos(hello.now_ticks, hello.ticks_per_second)
            }
            (None, Some(fixed)) => fixed as i128,
            (None, None) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0),
        };
        let mut tags = vec![
            KeyValue::new("device.id", Value::Str(format!("{:016x}", hello.device_id))),
            KeyValue::new(
                "device.boot_id",
                Value::Str(format!("{:08x}", hello.boot_id)),
            ),
            KeyValue::new("microspan.wire_version", Value::I64(WIRE_VERSION as i64)),
            KeyValue::new(
                "microspan.version",
                Value::Str(hello.microspan_version.clone()),
            ),
            KeyValue::new(
                "microspan.decoder_version",
                Value::Str(env!("CARGO_PKG_VERSION").to_string()),
            ),
            KeyValue::new("device.clock_hz", Value::I64(hello.ticks_per_second as i64)),
        ];
        if !hello.firmware_version.is_empty() {
            tags.push(KeyValue::new(
                "firmware.version",
                Value::Str(hello.firmware_version.clone()),
            ));
        }
        if let Some(host) = &self.opts.host_name {
            tags.push(KeyValue::new("hostname", Value::Str(host.clone())));
        }
        let process = Process {
            service_name: hello.service.clone(),
            tags,
        };
        self.names.clear();
        self.session = Some(Session {
            anchor_ticks: hello.now_ticks,
            anchor_unix_nanos,
            hello,
            process,
            epoch: 0,
            last_seq: None,
            last_time: h.now_ticks,
            drops: 0,
        });
        let _ = out;
    }

    fn close_session(&mut self, why: &str, out: &mut Vec<Batch>) {
        let ids: Vec<u32> = self
            .open_order
            .iter()
            .copied()
            .filter(|id| self.open.contains_key(id))
            .collect();
        for id in ids {
            if let Some(span) = self.open.remove(&id) {
                let end = span.last_time;
                self.finish_span(span, end, true, Some(why), out);
            }
        }
        self.open_order.clear();
        let traces: Vec<u128> = self.buffered_order.drain(..).collect();
        for t in traces {
            self.emit_trace(t, out);
        }
    }

    fn record(&mut self, r: Record<'_>, out: &mut Vec<Batch>) {
        match r {
            Record::Hello(h) => {
                let s = self.session.as_ref().expect("session exists");
                let reset = h.boot_id != s.hello.boot_id
                    || h.device_id != s.hello.device_id
                    || h.now_ticks.saturating_add(s.hello.ticks_per_second as u64) < s.last_time;
                if reset {
                    self.stats.resets += 1;
                    self.close_session(
                        "the device reset (new boot) before this span finished",
                        out,
                    );
                    self.recent.clear();
                    self.recent_order.clear();
                    self.start_session(&h, out);
                } else if let Some(s) = self.session.as_mut() {
                    s.hello.wall_clock = h.wall_clock.or(s.hello.wall_clock);
                }
            }
            Record::Name { id, name } => {
                if self.names.len() < self.opts.limits.max_names || self.names.contains_key(&id) {
                    self.names.insert(id, name.to_string());
                }
            }
            Record::Start(st) => self.start(st, out),
            Record::End { span, time, losses } => {
                self.touch(time);
                let Some(mut s) = self.open.remove(&span) else {
                    self.stats.orphan_records += 1;
                    return;
                };
                let limits = [
                    (losses.tags_over_capacity, "tags were dropped: more than the device's MICROSPAN_MAX_TAGS_PER_SPAN"),
                    (losses.fields_over_capacity, "log fields or baggage items were dropped: more than the device's capacity (MICROSPAN_MAX_FIELDS_PER_LOG, baggage items)"),
                    (losses.strings_truncated, "strings were truncated to the device's MICROSPAN_MAX_STR_LEN (or baggage/key limits)"),
                    (losses.records_dropped, "of this span's records were dropped on the device: its ring buffer was full"),
                ];
                for (n, what) in limits {
                    if n > 0 {
                        s.warnings.push(format!("{n} {what}"));
                    }
                }
                self.finish_span(s, time, false, None, out);
            }
            Record::Tag { span, key, value } => {
                let key = self.text(key);
                let value = self.val(value);
                let max = self.opts.limits.max_items_per_span;
                match self.open.get_mut(&span) {
                    Some(s) if s.tags.len() < max => s.tags.push((key, value)),
                    Some(s) => s.items_refused += 1,
                    None => self.stats.orphan_records += 1,
                }
            }
            Record::Log { span, time, fields } => {
                self.touch(time);
                let fields: Vec<(Text, Val)> =
                    fields.map(|(k, v)| (self.text(k), self.val(v))).collect();
                let max = self.opts.limits.max_items_per_span;
                match self.open.get_mut(&span) {
                    Some(s) if s.logs.len() < max => {
                        s.last_time = s.last_time.max(time);
                        s.logs.push((time, fields));
                    }
                    Some(s) => s.items_refused += 1,
                    None => self.stats.orphan_records += 1,
                }
            }
            Record::Baggage { span, key, value } => match self.open.get_mut(&span) {
                Some(s) => {
                    if let Some(item) = s.baggage.iter_mut().find(|(k, _)| k == key) {
                        item.1 = value.to_string();
                    } else if s.baggage.len() < self.opts.limits.max_items_per_span {
                        s.baggage.push((key.to_string(), value.to_string()));
                    }
                }
                None => self.stats.orphan_records += 1,
            },
            Record::Reference {
                span,
                kind,
                trace,
                target,
            } => match self.open.get_mut(&span) {
                Some(s) if s.references.len() < self.opts.limits.max_items_per_span => {
                    s.references.push(Reference {
                        kind: ref_kind(kind),
                        trace_id: trace.0,
                        span_id: target.0,
                    })
                }
                Some(s) => s.items_refused += 1,
                None => self.stats.orphan_records += 1,
            },
            Record::Drops { total } => {
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                let delta = total.wrapping_sub(s.drops) as u64;
                if delta > 0 {
                    s.drops = total;
                    self.frame_drops += delta;
                    self.stats.device_drops += delta;
                    for span in self.open.values_mut() {
                        span.device_drops += delta;
                    }
                }
            }
            Record::WallClock(w) => {
                if let Some(s) = self.session.as_mut() {
                    s.hello.wall_clock = Some(w);
                    s.anchor_ticks = w.ticks;
                    s.anchor_unix_nanos = w.unix_nanos as i128;
                }
            }
        }
    }

    fn touch(&mut self, time: u64) {
        if let Some(s) = self.session.as_mut() {
            s.last_time = s.last_time.max(time);
        }
    }

    fn text(&self, r: StrRef<'_>) -> Text {
        match r {
            StrRef::Inline(s) => Text::Known(s.to_string()),
            StrRef::Id(id) => match self.names.get(&id) {
                Some(s) => Text::Known(s.clone()),
                None => Text::Pending {
                    epoch: self.session.as_ref().map_or(0, |s| s.epoch),
                    id,
                },
            },
        }
    }

    fn val(&self, v: WireValue<'_>) -> Val {
        match v {
            WireValue::Bool(b) => Val::Bool(b),
            WireValue::I64(i) => Val::I64(i),
            WireValue::U64(u) => Val::U64(u),
            WireValue::F64(f) => Val::F64(f),
            WireValue::Str(s) => Val::Str(self.text(s)),
        }
    }

    /// Trace, local root and baggage of an open or recently finished span.
    fn lookup(&self, local: u32) -> Option<(u128, u32, &[Baggage])> {
        if let Some(s) = self.open.get(&local) {
            return Some((s.trace, s.root, &s.baggage));
        }
        self.recent
            .get(&local)
            .map(|r| (r.trace, r.root, r.baggage.as_slice()))
    }

    fn start(&mut self, st: microspan::wire::decode::Start<'_>, out: &mut Vec<Batch>) {
        self.touch(st.time);
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let boot = session.hello.boot_id;
        let device = session.hello.device_id;
        let derived = |root: u32| TraceId::from_halves(device, SpanId::local(boot, root).0).0;
        let kind = if st.follows_from {
            RefKind::FollowsFrom
        } else {
            RefKind::ChildOf
        };
        let mut warnings = Vec::new();
        let (trace, root, parent_ref, baggage) = match st.parent {
            Parent::Root => (derived(st.id), st.id, None, Vec::new()),
            Parent::Local { id, root } => {
                let parent_span = SpanId::local(boot, id).0;
                match (self.lookup(id), root) {
                    (Some((trace, proot, bag)), _) => {
                        (trace, proot, Some(parent_span), bag.to_vec())
                    }
                    (None, Some(root)) => {
                        let trace = self.lookup(root).map_or_else(|| derived(root), |r| r.0);
                        warnings.push("the parent span's start was not received (lost frame or decoder joined late)".to_string());
                        (trace, root, Some(parent_span), Vec::new())
                    }
                    (None, None) => {
                        // The device only omits the root when the parent started in the same frame.
                        self.stats.orphan_records += 1;
                        warnings.push(
                            "the parent span is unknown: its trace could not be determined"
                                .to_string(),
                        );
                        (derived(st.id), st.id, Some(parent_span), Vec::new())
                    }
                }
            }
            Parent::Remote { trace, span } => {
                if span.is_none() {
                    warnings.push(
                        "the parent span was dropped on the device (ring buffer full)".to_string(),
                    );
                }
                (trace.0, st.id, span.map(|s| s.0), Vec::new())
            }
        };
        let mut references = Vec::new();
        if let Some(p) = parent_ref {
            references.push(Reference {
                kind,
                trace_id: trace,
                span_id: p,
            });
        }
        if self.open.len() >= self.opts.limits.max_open_spans {
            self.evict_oldest_open(out);
        }
        let span = OpenSpan {
            local: st.id,
            trace,
            root,
            name: self.text(st.name),
            start: st.time,
            last_time: st.time,
            references,
            tags: Vec::new(),
            logs: Vec::new(),
            baggage,
            flags: 1 | (st.debug as u8) << 1,
            warnings,
            lost_frames: 0,
            device_drops: self.frame_drops,
            items_refused: 0,
        };
        *self.open_per_trace.entry(trace).or_insert(0) += 1;
        if let Some(old) = self.open.insert(st.id, span) {
            // A duplicate id (corrupt or replayed stream): the older span is closed as incomplete.
            self.stats.orphan_records += 1;
            let end = old.last_time;
            self.finish_span(
                old,
                end,
                true,
                Some("another span reused this span's id (corrupted or duplicated stream)"),
                out,
            );
        }
        self.open_order.push_back(st.id);
        if self.open_order.len() > 2 * self.opts.limits.max_open_spans.max(16) {
            let open = &self.open;
            self.open_order.retain(|id| open.contains_key(id));
        }
    }

    fn evict_oldest_open(&mut self, out: &mut Vec<Batch>) {
        while let Some(id) = self.open_order.pop_front() {
            if let Some(span) = self.open.remove(&id) {
                let end = span.last_time;
                self.finish_span(
                    span,
                    end,
                    true,
                    Some("the decoder's limit on open spans was reached (--max-open-spans)"),
                    out,
                );
                return;
            }
        }
    }

    fn nanos(&self, ticks: u64) -> u64 {
        let Some(s) = self.session.as_ref() else {
            return 0;
        };
        let tps = s.hello.ticks_per_second;
        let rel = ticks_to_nanos(ticks, tps) - ticks_to_nanos(s.anchor_ticks, tps);
        (s.anchor_unix_nanos + rel).clamp(0, u64::MAX as i128) as u64
    }

    fn resolve(&self, t: Text, warnings: &mut Vec<String>) -> String {
        match t {
            Text::Known(s) => s,
            Text::Pending { epoch, id } => {
                let current = self.session.as_ref().map_or(0, |s| s.epoch);
                match self.names.get(&id) {
                    Some(s) if epoch == current => s.clone(),
                    _ => {
                        warnings.push(format!("name #{id} was never defined (its frame was lost); shown as a placeholder"));
                        format!("<unknown name #{id}>")
                    }
                }
            }
        }
    }

    fn value(&self, v: Val, warnings: &mut Vec<String>) -> Value {
        match v {
            Val::Bool(b) => Value::Bool(b),
            Val::I64(i) => Value::I64(i),
            Val::U64(u) => Value::U64(u),
            Val::F64(f) => Value::F64(f),
            Val::Str(t) => Value::Str(self.resolve(t, warnings)),
        }
    }

    fn finish_span(
        &mut self,
        s: OpenSpan,
        end: u64,
        incomplete: bool,
        why: Option<&str>,
        out: &mut Vec<Batch>,
    ) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let boot = session.hello.boot_id;
        let mut warnings = s.warnings;
        if let Some(why) = why {
            warnings.push(format!("incomplete: {why}"));
        }
        if s.lost_frames > 0 {
            warnings.push(format!("{} frames were lost on the link while this span was open: some of its records may be missing", s.lost_frames));
        }
        if s.device_drops > 0 {
            warnings.push(format!(
                "the device dropped {} records (ring buffer full) while this span was open",
                s.device_drops
            ));
        }
        if s.items_refused > 0 {
            warnings.push(format!(
                "{} tags/logs/references beyond the decoder's per-span limit were ignored",
                s.items_refused
            ));
        }
        let operation = self.resolve(s.name, &mut warnings);
        let tags = s
            .tags
            .into_iter()
            .map(|(k, v)| KeyValue {
                key: self.resolve(k, &mut warnings),
                value: self.value(v, &mut warnings),
            })
            .collect();
        let logs = s
            .logs
            .into_iter()
            .map(|(t, fields)| Log {
                time_unix_nanos: self.nanos(t),
                fields: fields
                    .into_iter()
                    .map(|(k, v)| KeyValue {
                        key: self.resolve(k, &mut warnings),
                        value: self.value(v, &mut warnings),
                    })
                    .collect(),
            })
            .collect();
        let start_nanos = self.nanos(s.start);
        let end = end.max(s.start);
        let span = Span {
            trace_id: s.trace,
            span_id: SpanId::local(boot, s.local).0,
            operation,
            references: s.references,
            start_unix_nanos: start_nanos,
            duration_nanos: self.nanos(end).saturating_sub(start_nanos),
            tags,
            logs,
            baggage: s.baggage.clone(),
            flags: s.flags,
            warnings,
            incomplete,
        };
        self.stats.spans += 1;
        self.stats.incomplete_spans += incomplete as u64;
        // Remember it for late children (FollowsFrom consumers, spans whose parent finished).
        self.recent.insert(
            s.local,
            Recent {
                trace: s.trace,
                root: s.root,
                baggage: s.baggage,
            },
        );
        self.recent_order.push_back(s.local);
        while self.recent_order.len() > self.opts.limits.max_recent_spans {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
        if let Some(n) = self.open_per_trace.get_mut(&s.trace) {
            *n = n.saturating_sub(1);
        }
        let trace = s.trace;
        let entry = self.buffered.entry(trace).or_default();
        if entry.is_empty() {
            self.buffered_order.push_back(trace);
        }
        entry.push(span);
        self.buffered_count += 1;
        while self.buffered_count > self.opts.limits.max_buffered_spans {
            let Some(oldest) = self.buffered_order.pop_front() else {
                break;
            };
            self.emit_trace(oldest, out);
        }
    }

    /// Exports the traces that have no open span left.
    fn flush_complete_traces(&mut self, out: &mut Vec<Batch>) {
        let done: Vec<u128> = self
            .buffered_order
            .iter()
            .copied()
            .filter(|t| self.open_per_trace.get(t).copied().unwrap_or(0) == 0)
            .collect();
        if done.is_empty() {
            return;
        }
        self.buffered_order.retain(|t| !done.contains(t));
        for t in done {
            self.emit_trace(t, out);
        }
    }

    fn emit_trace(&mut self, trace: u128, out: &mut Vec<Batch>) {
        let Some(spans) = self.buffered.remove(&trace) else {
            return;
        };
        if self.open_per_trace.get(&trace) == Some(&0) {
            self.open_per_trace.remove(&trace);
        }
        self.buffered_count -= spans.len();
        let process = self
            .session
            .as_ref()
            .map(|s| s.process.clone())
            .unwrap_or(Process {
                service_name: "unknown".into(),
                tags: vec![],
            });
        out.push(Batch { process, spans });
    }
}

fn ticks_to_nanos(ticks: u64, tps: u32) -> i128 {
    ticks as i128 * 1_000_000_000 / tps.max(1) as i128
}

fn ref_kind(k: WireRefKind) -> RefKind {
    match k {
        WireRefKind::ChildOf => RefKind::ChildOf,
        WireRefKind::FollowsFrom => RefKind::FollowsFrom,
    }
}
