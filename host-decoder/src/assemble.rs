//! Span assembly: typed wire records in, finished spans (grouped per trace) out.
//!
//! The assembler keeps one session (one device boot) at a time: the session record gives the
//! clock rate, ids and process tags; a new boot id closes the old session's open spans as
//! incomplete. Names are resolved through the epoch's name table; spans lost to a sequence gap, to
//! the device's full ring or to capacity limits carry Jaeger warnings saying so. Every table is
//! bounded by [`Limits`]; what does not fit is exported early or counted, never kept without
//! bound.
//!
//! Finished traces of one frame are handed over as one [`Batch`] (a trace is finished when none of
//! its spans is open); a trace that outlives the buffer limits is handed over as it stands, and its
//! later spans follow in later batches.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use microspan::tracer::Losses;
use microspan::wire::decode::{
    Frame, Parent, Record, RecordDecoder, RecordError, StrRef, WireValue,
};
use microspan::wire::{Hello, WallClock};
use microspan::{RefKind as WireRefKind, SpanId, TraceId};

use crate::model::{
    smallvec, Baggage, Batch, KeyValue, KeyValues, Log, Logs, Process, RefKind, Reference,
    References, SharedStr, Span, Value,
};
use crate::plural::{count, plural};

/// The warning on a span whose parent, a span of the same boot, was never seen.
const PARENT_NOT_RECEIVED: &str = "the parent span's start was not received (dropped on the \
     device when its ring was full, lost on the link, or sent before the capture began)";

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
    /// Tags, logs, references or baggage items kept per span.
    pub max_items_per_span: usize,
    /// Finished spans remembered for parent lookups (trace id, baggage).
    pub max_recent_spans: usize,
    /// Longest string kept (names, keys, values); longer ones are cut and the span warned.
    pub max_string_len: usize,
    /// Bytes of baggage one span carries (its own and inherited); more is ignored and warned.
    pub max_baggage_bytes: usize,
    /// Approximate bytes held in open and buffered spans; beyond it the oldest open span is
    /// exported as incomplete and the oldest buffered trace handed over.
    pub max_memory_bytes: usize,
}

impl Limits {
    /// The defaults: room for a busy device's traffic, bounded well below a developer machine's
    /// memory.
    pub const DEFAULT: Limits = Limits {
        max_open_spans: 100_000,
        max_buffered_spans: 200_000,
        max_names: 4096,
        max_items_per_span: 1024,
        max_recent_spans: 100_000,
        max_string_len: 4096,
        max_baggage_bytes: 4096,
        max_memory_bytes: 256 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
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
    /// Records refused as malformed (the rest of their frame is abandoned). Each counts as a loss
    /// of at least one record: a span open across it may have lost records, its END among them.
    pub record_errors: u64,
    /// Records that name a span this decoder never saw start (its frame was lost).
    pub orphan_records: u64,
    /// Records dropped on the device (ring full), as the device reports them.
    pub device_drops: u64,
    /// Spans exported.
    pub spans: u64,
    /// Spans exported as incomplete.
    pub incomplete_spans: u64,
    /// Spans whose end is their start, to the device clock's resolution. When every span is one,
    /// the device's clock did not advance ([`StreamStats::problems`](crate::stream::StreamStats::problems)
    /// says so).
    pub zero_length_spans: u64,
    /// Device resets seen: a session record of another boot or device, or of the same boot with a
    /// time more than a second before the times heard, at sequence 0 or after a sequence gap.
    pub resets: u64,
    /// Static strings the device cut to fit its frame size (`NAME_CUT`), counted once per
    /// distinct text. They end in `…`, and the spans that use them carry a warning.
    pub names_cut: u64,
    /// Session records of the running boot, in a frame that directly follows the previous one
    /// (not sequence 0), whose time was more than a second before the latest device time heard:
    /// a record before it was dated ahead of the device's clock (a corrupted frame whose CRC still
    /// matched, or a device clock that jumped). A device restarts its sequence at 0, so this is
    /// no reset: the session goes on, and the latest time heard is pulled back to the session
    /// record's.
    pub misdated: u64,
    /// New drains in the running boot: a frame 0 opening with a session record of the same boot,
    /// after a frame of the first half of the sequence space (not a wrap: a new `Drain` restarts
    /// the sequence at 0; frames lost up to the wrap would take more than 32 768 in a row), whose
    /// time did not go back. The stream goes on (no frames are counted lost, the open spans stay
    /// open); a new drain whose time went back is a reset ([`resets`](Self::resets)).
    pub drain_restarts: u64,
    /// Strings of exported spans whose interned name was never defined (the frame defining it
    /// lost, or a corrupted stream): shown as `<unknown name #N>`, the span warned.
    pub unknown_names: u64,
    /// Wall-clock readings from the device (in a session record or on their own) that would
    /// date it before 1970 or after 2100 (a clock never set, a corrupted record): ignored, the
    /// device dated as without them.
    pub bad_wall_clocks: u64,
    /// Strings of exported spans (operation names, tag and log keys and values, baggage) cut to
    /// the decoder's [`Limits::max_string_len`]; each span carries a warning.
    pub strings_cut: u64,
    /// Frames of the running session that arrived after later ones (a relay or capture that
    /// reorders, or replays a frame no longer in the replay window; or a new boot's first
    /// frames, its frame 0 lost, until its next session record shows the reset): a sequence
    /// number behind the last decoded (by less than half the sequence space), a time not ahead
    /// of the latest heard, and no session record opening them. Skipped, their records lost:
    /// decoded, each would read as a gap of nearly 65 536 frames.
    pub late_frames: u64,
    /// Spans currently open.
    pub open_spans: u64,
    /// Spans exported early because a memory limit was reached.
    pub evicted_spans: u64,
    /// Spans that continue a context from another process (extracted from a carrier): their
    /// parent is a span of another service.
    pub remote_parents: u64,
}

/// A hasher for the ids that key the assembler's tables: a multiply-rotate mix seeded per process,
/// several times faster than SipHash on integer keys, and unpredictable to a hostile stream.
#[derive(Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let x = self.0;
        (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(23);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

#[derive(Clone, Copy)]
struct IdHash(u64);

impl IdHash {
    fn new() -> Self {
        // Seeded from std's random keys, so colliding ids cannot be precomputed.
        Self(std::collections::hash_map::RandomState::new().hash_one(0x006d_7370_616e_u64))
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

type IdMap<K, V> = HashMap<K, V, IdHash>;

fn id_map<K, V>(hash: IdHash) -> IdMap<K, V> {
    HashMap::with_hasher(hash)
}

/// Direct slots of the open-span table ([`OpenTable`]).
const OPEN_DIRECT: usize = 4096;
/// The value of a free direct slot (a slab index never reaches it; one that did would be kept in
/// the map).
const FREE: u32 = u32::MAX;

/// The open spans: their slab slots by local id.
///
/// A device numbers its spans in sequence, so the ids open at once are nearly always different
/// modulo [`OPEN_DIRECT`]: each is kept in the direct slot `id % OPEN_DIRECT`, found with one
/// load and compare (a hash-table probe was most of a span's table cost). An id whose slot is
/// taken by another open span goes to a map keyed with the assembler's seeded hash, so a hostile
/// stream of colliding ids costs what the map alone cost. The direct slots are a fixed 32 KiB
/// (allocated on the first insert); the map holds at most the spans open, as before.
struct OpenTable {
    /// (id, slab slot) in slot `id % OPEN_DIRECT`; the slab slot is [`FREE`] when free.
    direct: Vec<(u32, u32)>,
    /// Direct slots in use.
    direct_len: usize,
    /// The ids whose direct slot was taken when they were inserted.
    overflow: IdMap<u32, u32>,
}

impl OpenTable {
    fn new(hash: IdHash) -> Self {
        Self {
            direct: Vec::new(),
            direct_len: 0,
            overflow: id_map(hash),
        }
    }

    /// The slab slot of open span `id`.
    #[inline]
    fn get(&self, id: u32) -> Option<u32> {
        if let Some(&(k, v)) = self.direct.get(id as usize % OPEN_DIRECT) {
            if k == id && v != FREE {
                return Some(v);
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&id).copied()
    }

    fn contains(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    /// Sets open span `id`'s slab slot; returns the one it replaces, if `id` was open.
    #[inline]
    fn insert(&mut self, id: u32, slot: u32) -> Option<u32> {
        if slot == FREE {
            return self.insert_in_map(id, slot);
        }
        if self.direct.is_empty() {
            self.direct = vec![(0, FREE); OPEN_DIRECT];
        }
        let d = &mut self.direct[id as usize % OPEN_DIRECT];
        if d.1 != FREE && d.0 == id {
            return Some(std::mem::replace(&mut d.1, slot));
        }
        // An id is in one place only: if it is in the map, it stays there.
        if let Some(old) = (!self.overflow.is_empty())
            .then(|| self.overflow.get_mut(&id))
            .flatten()
        {
            return Some(std::mem::replace(old, slot));
        }
        if d.1 == FREE {
            *d = (id, slot);
            self.direct_len += 1;
            None
        } else {
            self.overflow.insert(id, slot)
        }
    }

    /// [`OpenTable::insert`] of a slab slot that reads as a free direct slot.
    #[cold]
    fn insert_in_map(&mut self, id: u32, slot: u32) -> Option<u32> {
        let old = self.remove(id);
        self.overflow.insert(id, slot);
        old
    }

    /// Forgets open span `id`; returns its slab slot, if it was open.
    #[inline]
    fn remove(&mut self, id: u32) -> Option<u32> {
        if let Some(d) = self.direct.get_mut(id as usize % OPEN_DIRECT) {
            if d.0 == id && d.1 != FREE {
                self.direct_len -= 1;
                return Some(std::mem::replace(&mut d.1, FREE));
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.remove(&id)
    }

    fn len(&self) -> usize {
        self.direct_len + self.overflow.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Releases the map's spare room, and the direct slots when none is in use.
    fn shrink_to_fit(&mut self) {
        self.overflow.shrink_to_fit();
        if self.direct_len == 0 {
            self.direct = Vec::new();
        }
    }
}

/// A string of a record, borrowed from the name table or the frame (copied only where it is
/// kept), or still pending.
#[derive(Debug, Clone, Copy)]
enum Text<'a> {
    /// An interned name.
    Named(&'a SharedStr),
    /// A string sent inline, already cut to the length limit.
    Inline(&'a str),
    /// An interned id whose definition was not seen (lost frame).
    Pending { epoch: u64, id: u32 },
}

/// Where a string of an open span goes once its name is resolved. Ordered as names are resolved
/// when the span finishes (tags before logs, a key before its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// Tag `i`: its key (`false`) or its value (`true`).
    Tag(usize, bool),
    /// Field `j` of log `i`: its key or its value.
    Log(usize, usize, bool),
}

/// A string of an open span that names an interned id not defined when its record arrived (its
/// definition was in a lost frame, or comes later in an epoch): resolved when the span finishes.
#[derive(Debug, Clone, Copy)]
struct PendingName {
    slot: Slot,
    epoch: u64,
    id: u32,
}

/// What an open span needs until it finishes, beside the span itself (which is filled in place).
#[derive(Debug, Default)]
struct OpenState {
    local: u32,
    root: u32,
    start: u64,
    /// The latest time of its own records (start, logs); once finished, its end.
    last_time: u64,
    /// The operation name is an interned id not defined when the span started: resolved when it
    /// finishes (the span's `operation` is empty until then).
    name_pending: Option<(u64, u32)>,
    /// Strings in the span's tags and logs still to resolve (usually none).
    pending: Vec<PendingName>,
    /// An ancestor was open while frames were lost: a baggage record it set may be missing.
    baggage_uncertain: bool,
    /// The span continues a carrier's context (a remote parent is named) in a version 1 frame.
    /// A version 1 device has no carried mark: it writes the items the carrier brought as plain
    /// baggage records right after the start, so those before the span's first tag or log are
    /// taken for carried ones (not logged), as before the mark existed.
    v1_carrier: bool,
    /// Counters when the span started (losses while it was open are the differences).
    lost_frames_at_start: u64,
    drops_at_start: u64,
    /// Record errors when the span started (each abandoned the rest of its frame).
    errors_at_start: u64,
    items_refused: u64,
    strings_cut: u64,
    /// Approximate bytes held.
    bytes: usize,
    /// Of `bytes`, what the baggage items the span set were charged (each record's item, a
    /// replaced one again): its finished form is charged its items once each, inherited ones too.
    baggage_items_charged: usize,
    /// What the finished form is charged beyond `bytes` for the logs of the baggage items the
    /// span set (their fields in full). With `baggage_items_charged`, a span with baggage is
    /// charged as it finishes without being measured again ([`Assembler::finish_span`]).
    baggage_logs_extra: usize,
}

impl OpenState {
    /// The session's losses counted when the span started ([`Assembler::losses`] then).
    fn losses_at_start(&self) -> u64 {
        self.lost_frames_at_start + self.drops_at_start + self.errors_at_start
    }
}

/// A span from its start until it is handed over: the exported [`Span`], built in place (its logs
/// timed in device ticks until it finishes), and its open state.
#[derive(Debug)]
struct SpanSlot {
    span: Span,
    st: OpenState,
}

/// The spans open or buffered (finished, their trace still open), each in a slot that does not
/// move: the tables hold slot indices, so a span is moved once, when it is handed over (moving
/// whole spans through the hash tables and buffers was a fifth of assembly).
///
/// A free slot holds an empty span (no heap memory).
struct Slab {
    slots: Vec<SpanSlot>,
    free: Vec<u32>,
}

impl Slab {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// An empty span (an empty `SharedStr` is inline: nothing is allocated).
    fn empty_span() -> Span {
        Span {
            trace_id: 0,
            span_id: 0,
            operation: SharedStr::default(),
            references: References::new(),
            start_unix_nanos: 0,
            duration_nanos: 0,
            tags: KeyValues::new(),
            logs: Logs::new(),
            baggage: Baggage::new(),
            flags: 0,
            warnings: Vec::new(),
            incomplete: false,
            remote_parent: false,
        }
    }

    /// A free slot (its span empty, its state to be set).
    fn alloc(&mut self) -> u32 {
        if let Some(i) = self.free.pop() {
            return i;
        }
        let span = Self::empty_span();
        self.slots.push(SpanSlot {
            span,
            st: OpenState::default(),
        });
        (self.slots.len() - 1) as u32
    }

    /// Moves slot `i`'s span to the end of `out` and frees the slot (its span left empty).
    #[inline]
    fn take_into(&mut self, i: u32, out: &mut Vec<Span>) {
        let slot = &mut self.slots[i as usize];
        slot.st.pending = Vec::new();
        // Copied once, straight to its place, and the slot's owning fields emptied. (A span built
        // field by field in `push`'s argument was assembled on the stack and then copied into the
        // vector: 384 bytes moved twice, about 80 instructions a span.)
        //
        // The fields, all named: a field added to `Span` stops this compiling until it is
        // handled below (emptied if it owns memory).
        let Span {
            trace_id: _,
            span_id: _,
            operation: _,
            references: _,
            start_unix_nanos: _,
            duration_nanos: _,
            tags: _,
            logs: _,
            baggage: _,
            flags: _,
            warnings: _,
            incomplete: _,
            remote_parent: _,
        } = &slot.span;
        out.reserve(1);
        let len = out.len();
        let s = &raw mut slot.span;
        // SAFETY: `reserve` made room for a span at `out.len()`. The slot's span is copied there
        // bitwise and counted in `out`; then each of its fields that owns memory is overwritten
        // with an empty value, not dropped, so what it owned is owned by the copy in `out` alone.
        // The other fields are plain data. Nothing in between can panic or unwind.
        unsafe {
            std::ptr::copy_nonoverlapping(s, out.as_mut_ptr().add(len), 1);
            out.set_len(len + 1);
            (&raw mut (*s).operation).write(SharedStr::default());
            (&raw mut (*s).references).write(References::new());
            (&raw mut (*s).tags).write(KeyValues::new());
            (&raw mut (*s).logs).write(Logs::new());
            (&raw mut (*s).baggage).write(Baggage::new());
            (&raw mut (*s).warnings).write(Vec::new());
        }
        self.free.push(i);
    }

    /// Empties slot `i` and frees it.
    fn release(&mut self, i: u32) {
        let empty = Self::empty_span();
        let slot = &mut self.slots[i as usize];
        slot.st.pending = Vec::new();
        slot.span = empty;
        self.free.push(i);
    }

    /// Releases the memory of the slots once none is in use.
    fn clear_if_unused(&mut self, shrink: bool) {
        if self.free.len() == self.slots.len() {
            self.slots.clear();
            self.free.clear();
            if shrink {
                self.slots.shrink_to_fit();
                self.free.shrink_to_fit();
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Text<'a>),
}

/// Ids below this are kept in a vector (devices number their names from 0).
const DENSE_NAMES: usize = 4096;

/// The epoch's name table: names by interned id.
struct NameTable {
    /// Ids below [`DENSE_NAMES`], by index.
    dense: Vec<Option<SharedStr>>,
    /// Other ids.
    sparse: IdMap<u32, SharedStr>,
    /// Entries in `dense`.
    dense_len: usize,
}

impl NameTable {
    fn new(hash: IdHash) -> Self {
        Self {
            dense: Vec::new(),
            sparse: id_map(hash),
            dense_len: 0,
        }
    }

    #[inline]
    fn get(&self, id: u32) -> Option<&SharedStr> {
        match self.dense.get(id as usize) {
            Some(entry) => entry.as_ref(),
            None if (id as usize) < DENSE_NAMES => None,
            None => self.sparse.get(&id),
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    fn insert(&mut self, id: u32, name: SharedStr) {
        let i = id as usize;
        if i >= DENSE_NAMES {
            self.sparse.insert(id, name);
            return;
        }
        if i >= self.dense.len() {
            self.dense.resize(i + 1, None);
        }
        self.dense_len += self.dense[i].is_none() as usize;
        self.dense[i] = Some(name);
    }

    fn len(&self) -> usize {
        self.dense_len + self.sparse.len()
    }

    fn clear(&mut self) {
        self.dense.clear();
        self.dense_len = 0;
        self.sparse.clear();
    }
}

/// The name table as the record handlers read it (borrowed apart from the open spans).
struct Names<'a> {
    table: &'a NameTable,
    epoch: u64,
    max_len: usize,
    /// Inline strings cut to `max_len` so far: counted on the span by the record's handler.
    cut: std::cell::Cell<u32>,
}

impl<'a> Names<'a> {
    #[inline(always)]
    fn text<'r>(&self, r: StrRef<'r>) -> Text<'r>
    where
        'a: 'r,
    {
        match r {
            StrRef::Inline(s) => {
                let (s, was_cut) = cut(s, self.max_len);
                if was_cut {
                    self.cut.set(self.cut.get() + 1);
                }
                Text::Inline(s)
            }
            StrRef::Id(id) => match self.table.get(id) {
                Some(s) => Text::Named(s),
                None => Text::Pending {
                    epoch: self.epoch,
                    id,
                },
            },
        }
    }

    #[inline(always)]
    fn val<'r>(&self, v: WireValue<'r>) -> Val<'r>
    where
        'a: 'r,
    {
        match v {
            WireValue::Bool(b) => Val::Bool(b),
            WireValue::I64(i) => Val::I64(i),
            WireValue::U64(u) => Val::U64(u),
            WireValue::F64(f) => Val::F64(f),
            WireValue::Str(s) => Val::Str(self.text(s)),
        }
    }
}

/// Appends a tag or log field to `v`, its key and value written in place (a pending string left
/// empty and noted in `pending`).
///
/// In line, each kind of key and value written by its own branch straight into the list: a pair
/// built first and moved in (`SmallVec::push` is a call) was merged from those branches on the
/// stack in narrow pieces and copied over in wide ones that waited for them, a store-forwarding
/// stall per tag and log field. Grows as `push` does (to the next power of two).
#[inline(always)]
fn push_key_value(
    v: &mut KeyValues,
    key: Text<'_>,
    value: Val<'_>,
    (key_slot, value_slot): (Slot, Slot),
    pending: &mut Vec<PendingName>,
) {
    if v.len() == v.capacity() {
        v.reserve(1);
    }
    let len = v.len();
    // SAFETY: `len < capacity` (reserved above), so slot `len` is allocated and unused; both
    // fields are written before it is counted (were `pending.push` to panic, the slot would stay
    // uncounted: at worst its key leaks).
    unsafe {
        let kv = v.as_mut_ptr().add(len);
        let k = &raw mut (*kv).key;
        match key {
            Text::Named(s) => k.write(s.clone()),
            Text::Inline(s) => k.write(s.into()),
            Text::Pending { epoch, id } => {
                pending.push(PendingName {
                    slot: key_slot,
                    epoch,
                    id,
                });
                k.write(SharedStr::default());
            }
        }
        let val = &raw mut (*kv).value;
        match value {
            Val::Bool(b) => val.write(Value::Bool(b)),
            Val::I64(i) => val.write(Value::I64(i)),
            Val::U64(u) => val.write(Value::U64(u)),
            Val::F64(f) => val.write(Value::F64(f)),
            Val::Str(Text::Named(s)) => val.write(Value::Str(s.clone())),
            Val::Str(Text::Inline(s)) => val.write(Value::Str(s.into())),
            Val::Str(Text::Pending { epoch, id }) => {
                pending.push(PendingName {
                    slot: value_slot,
                    epoch,
                    id,
                });
                val.write(Value::Str(SharedStr::default()));
            }
        }
        v.set_len(len + 1);
    }
}

/// The fixed text of a baggage item's log (`event="baggage" key=… value=…`, then
/// `override="true"` and `truncated="true"` when they apply), converted once.
static BAGGAGE_LOG: [SharedStr; 7] = [
    SharedStr::from_static("event"),
    SharedStr::from_static("baggage"),
    SharedStr::from_static("key"),
    SharedStr::from_static("override"),
    SharedStr::from_static("truncated"),
    SharedStr::from_static("true"),
    SharedStr::from_static("value"),
];

/// Appends a log without fields to `logs`, written in place (as [`push_key_value`]), and returns
/// it.
#[inline(always)]
fn push_log(logs: &mut Logs, time: u64) -> &mut Log {
    if logs.len() == logs.capacity() {
        logs.reserve(1);
    }
    let len = logs.len();
    // SAFETY: `len < capacity` (reserved above), so slot `len` is allocated and unused; both
    // fields are written before it is counted.
    unsafe {
        let log = logs.as_mut_ptr().add(len);
        (&raw mut (*log).time_unix_nanos).write(time);
        (&raw mut (*log).fields).write(KeyValues::new());
        logs.set_len(len + 1);
    }
    // Borrowed anew: `set_len` borrowed the whole list, inline slots included, past `log`.
    &mut logs[len]
}

/// Appends `r` to `refs`. The first reference beyond the one kept in place (a span's parent)
/// moves them to a heap vector with room for two, as `SmallVec::push` grows, but made directly:
/// the general reallocation it goes through was most of a FollowsFrom consumer's extra reference.
fn push_reference(refs: &mut References, r: Reference) {
    if refs.len() == refs.capacity() && !refs.spilled() {
        let mut v = Vec::with_capacity(2 * refs.capacity());
        v.extend(refs.drain(..));
        v.push(r);
        *refs = References::from_vec(v);
    } else {
        refs.push(r);
    }
}

/// A trace with open or buffered spans.
#[derive(Debug, Default)]
struct TraceState {
    /// Its spans still open.
    open: usize,
    /// Its finished spans waiting for the trace to finish (their slots).
    spans: Vec<u32>,
    /// What `spans` are charged (the sum of their [`span_bytes`]).
    bytes: usize,
}

/// Emptied span vectors kept for the next traces (bounded: at most this many, of at most
/// [`SPARE_CAPACITY`] spans each).
const MAX_SPARE: usize = 64;
const SPARE_CAPACITY: usize = 16;
/// Spans finished per batch handed over when a session closes with spans still open.
const CLOSE_BATCH: usize = 4096;
/// Losses remembered per session for the ends of spans that never finish (see
/// [`Assembler::incomplete_end`]); a span open across an older one ends at its own last record.
const MAX_LOSS_MARKS: usize = 1024;

/// Recently finished spans: the last ones in finish order, found through a table direct-mapped
/// by hashed local id. A newer span may take the table slot of an older one that hashes to the
/// same slot, and the oldest is overwritten once the capacity is reached (then a late child of it
/// is reported with an unknown parent).
///
/// Every finished span is written here; written in order, they stay cache-friendly (a table of
/// whole entries slotted by hash took a cache miss per span), and the index is small.
///
/// The entries are plain data, 32 bytes each ([`RecentEntry`]); a span's baggage is kept aside,
/// in `bags`, once for the spans inserted in a row that share it (a trace's spans share their
/// root's and finish together). An entry that held its own baggage was 48 bytes, every span
/// inserted cost two reference-count updates of the shared baggage (one when written, one when
/// overwritten, long after, cold), and the ring was read whole to be dropped.
///
/// Both grow with the spans inserted, up to the capacity: a decoder that sees few spans never
/// holds (or clears) the several megabytes a full ring takes. The index has as many slots as the
/// ring has room for; when the ring outgrows it, it doubles and is rebuilt from the ring.
struct RecentCache {
    /// Finished spans, written in turn (the oldest overwritten once `capacity` are held), with
    /// room reserved for as many as the index has slots.
    ring: Vec<RecentEntry>,
    /// The next entry of `ring` to overwrite, once it is full.
    next: usize,
    /// Entries `ring` holds at most (a power of two).
    capacity: usize,
    /// 1 + the entry in `ring` of the span last inserted in each slot; 0 for none.
    index: Vec<u32>,
    /// The baggage of the spans in `ring` that have some, oldest first, each with the number of
    /// ring entries that refer to it. Consecutive spans with the same baggage (the same shared
    /// items) refer to one; entries are overwritten in the order they were written, so the
    /// oldest is released first: it is dropped when its last entry is overwritten. At most one
    /// per entry of `ring`.
    bags: VecDeque<(Baggage, u32)>,
    /// The number of the front of `bags` (each baggage kept is numbered in turn, wrapping).
    bags_front: u32,
}

/// A finished span in [`RecentCache`]'s ring.
#[derive(Debug, Clone, Copy)]
struct RecentEntry {
    local: u32,
    root: u32,
    /// The trace id's low and high halves (a `u128` would align the entry to 16 bytes).
    trace: [u64; 2],
    /// The number of its baggage in [`RecentCache::bags`], when [`HAS_BAGGAGE`] is set.
    bag: u32,
    /// [`HAS_BAGGAGE`], [`BAGGAGE_UNCERTAIN`].
    flags: u8,
}

/// [`RecentEntry::flags`]: the span has baggage.
const HAS_BAGGAGE: u8 = 1;
/// [`RecentEntry::flags`]: its baggage may be incomplete ([`Recent::baggage_uncertain`]).
const BAGGAGE_UNCERTAIN: u8 = 2;

/// No baggage (what a span without any finds in [`RecentCache`]).
const NO_BAGGAGE: &Baggage = &Baggage::new();

/// Index slots of an empty [`RecentCache`] (fewer if its capacity is smaller).
const RECENT_INITIAL: usize = 1024;

impl RecentCache {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, 1 << 24).next_power_of_two();
        Self {
            ring: Vec::new(),
            next: 0,
            capacity,
            index: vec![0; capacity.min(RECENT_INITIAL)],
            bags: VecDeque::new(),
            bags_front: 0,
        }
    }
    #[inline]
    fn slot(&self, local: u32) -> usize {
        ((local as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (self.index.len() - 1)
    }
    fn get(&self, local: u32) -> Option<Recent<'_>> {
        let entry = (self.index[self.slot(local)] as usize).checked_sub(1)?;
        let e = self.ring.get(entry)?;
        if e.local != local {
            return None;
        }
        let baggage = if e.flags & HAS_BAGGAGE != 0 {
            let i = e.bag.wrapping_sub(self.bags_front) as usize;
            self.bags.get(i).map_or(NO_BAGGAGE, |(b, _)| b)
        } else {
            NO_BAGGAGE
        };
        Some(Recent {
            trace: u128::from(e.trace[0]) | u128::from(e.trace[1]) << 64,
            root: e.root,
            baggage,
            baggage_uncertain: e.flags & BAGGAGE_UNCERTAIN != 0,
        })
    }
    // In line, each field written into its entry: an entry built whole and copied over was
    // written in narrow pieces and read back in wide ones (a store-forwarding stall per span).
    #[inline(always)]
    fn insert(&mut self, local: u32, r: Recent<'_>) {
        let full = self.ring.len() == self.capacity;
        if full && self.ring[self.next].flags & HAS_BAGGAGE != 0 {
            self.release_bag();
        }
        let mut flags = if r.baggage_uncertain {
            BAGGAGE_UNCERTAIN
        } else {
            0
        };
        let mut bag = 0;
        if !r.baggage.is_empty() {
            flags |= HAS_BAGGAGE;
            bag = self.keep_bag(r.baggage);
        }
        let trace = [r.trace as u64, (r.trace >> 64) as u64];
        let entry = if full {
            let entry = self.next;
            self.next = (entry + 1) & (self.capacity - 1);
            let e = &mut self.ring[entry];
            e.local = local;
            e.root = r.root;
            e.trace = trace;
            e.bag = bag;
            e.flags = flags;
            entry
        } else {
            // Filling: written in place at the end, in room reserved (a whole entry pushed was
            // built on the stack and copied, a stall per span; the room filled ahead with empty
            // entries was written twice).
            if self.ring.len() == self.ring.capacity() {
                self.grow();
            }
            self.ring.push(RecentEntry {
                local,
                root: r.root,
                trace,
                bag,
                flags,
            });
            self.ring.len() - 1
        };
        let slot = self.slot(local);
        self.index[slot] = entry as u32 + 1;
    }
    /// Keeps `baggage` for one more entry; returns its number in `bags`. The same items as the
    /// last kept (the same allocation) are counted, not cloned again.
    #[inline]
    fn keep_bag(&mut self, baggage: &Baggage) -> u32 {
        match self.bags.back_mut() {
            Some((kept, n)) if kept.ptr_eq(baggage) => *n += 1,
            _ => self.bags.push_back((baggage.clone(), 1)),
        }
        self.bags_front
            .wrapping_add(self.bags.len() as u32)
            .wrapping_sub(1)
    }
    /// An entry with baggage is overwritten: it was the oldest entry, so its baggage is the
    /// front of `bags` (the runs before it were released with their last entries); dropped when
    /// no other entry refers to it.
    #[inline]
    fn release_bag(&mut self) {
        debug_assert_eq!(self.ring[self.next].bag, self.bags_front);
        if let Some((_, n)) = self.bags.front_mut() {
            *n -= 1;
            if *n == 0 {
                self.bags.pop_front();
                self.bags_front = self.bags_front.wrapping_add(1);
            }
        }
    }
    /// Reserves room in the ring for as many entries as the index has slots, first doubling the
    /// index if the ring fills it.
    #[cold]
    fn grow(&mut self) {
        if self.ring.len() == self.index.len() {
            self.grow_index();
        }
        self.ring.reserve_exact(self.index.len() - self.ring.len());
    }
    /// Doubles the index and slots the ring's entries again, oldest first (so each slot holds the
    /// last span inserted there, as if the index had been that size all along).
    fn grow_index(&mut self) {
        let n = (self.index.len() * 2).min(self.capacity);
        self.index.clear();
        self.index.resize(n, 0);
        for entry in 0..self.ring.len() {
            let slot = self.slot(self.ring[entry].local);
            self.index[slot] = entry as u32 + 1;
        }
    }
    fn clear(&mut self) {
        self.ring.clear();
        self.index.clear();
        self.index.resize(self.capacity.min(RECENT_INITIAL), 0);
        self.next = 0;
        self.bags.clear();
        self.bags_front = 0;
    }
}

/// What is remembered of a finished span for its children.
#[derive(Debug, Clone, Copy)]
struct Recent<'a> {
    trace: u128,
    root: u32,
    baggage: &'a Baggage,
    /// Its baggage may be incomplete (frames were lost while it or an ancestor was open).
    baggage_uncertain: bool,
}

struct Session {
    hello: OwnedHello,
    /// Shared by every batch of the session.
    process: Arc<Process>,
    /// The device clock's rate.
    clock: TickClock,
    /// Device ticks ↔ Unix nanoseconds: the anchor's ticks (as nanoseconds since tick 0) and its
    /// Unix time.
    anchor_nanos: i128,
    anchor_unix_nanos: i128,
    /// Host nanoseconds per device nanosecond since the anchor, in parts per billion: measured
    /// at the session records of a session the host's clock dated, as they arrive live
    /// ([`Assembler::measure_rate`]); 10⁹ otherwise.
    rate_ppb: i128,
    /// The host's clock dated the session as its first session record arrived (no wall clock
    /// from the device, no fixed anchor): the later ones measure the device clock's rate.
    host_anchored: bool,
    epoch: u64,
    last_seq: Option<u16>,
    /// The current frame directly follows the previous one (no sequence gap) and is not frame 0:
    /// no reset can have happened between them ([`Assembler::session_record`]).
    follows: bool,
    /// The latest device time of a record heard (starts, ends, logs: they come in the order the
    /// device wrote them, which the session record's `now_ticks`, taken when its frame was
    /// built, does not keep).
    last_time: u64,
    /// The latest base time of a frame decoded ([`Assembler::late`]).
    last_base_time: u64,
    drops: u32,
    /// The losses of the session that could have held a span's END (frames lost on the link,
    /// records dropped on the device, the rest of a frame abandoned at a malformed record),
    /// oldest first: the losses counted before each ([`Assembler::losses`]) and the latest device
    /// time heard before it. Bounded by [`MAX_LOSS_MARKS`] (the oldest forgotten).
    loss_marks: VecDeque<(u64, u64)>,
}

impl Session {
    /// Device ticks as nanoseconds since the Unix epoch.
    fn unix_nanos(&self, ticks: u64) -> u64 {
        let mut rel = self.clock.nanos(ticks) - self.anchor_nanos;
        if self.rate_ppb != PPB {
            // At most 2^64 ns times 1.05 × 10⁹: far inside i128.
            rel = rel * self.rate_ppb / PPB;
        }
        (self.anchor_unix_nanos + rel).clamp(0, u64::MAX as i128) as u64
    }
}

/// Resolves the names that were pending when their records arrived.
struct Resolver<'a> {
    table: &'a NameTable,
    /// The current epoch.
    epoch: u64,
    /// Frames were lost or abandoned in the stream so far: the likely reason a name is missing.
    lossy: bool,
    /// Names resolved to a placeholder ([`Stats::unknown_names`]).
    unknown: std::cell::Cell<u64>,
}

impl Resolver<'_> {
    /// The name of an interned id that was pending, if it was defined since (in the same epoch),
    /// else a placeholder and a warning.
    fn resolve(&self, epoch: u64, id: u32, warnings: &mut Vec<String>) -> SharedStr {
        match self.table.get(id) {
            Some(s) if epoch == self.epoch => s.clone(),
            _ => {
                self.unknown.set(self.unknown.get() + 1);
                let why = if self.lossy {
                    "its frame was lost"
                } else {
                    "though no frame was lost: a corrupted stream"
                };
                warnings.push(format!(
                    "name #{id} was never defined ({why}); shown as a placeholder"
                ));
                format!("<unknown name #{id}>").into()
            }
        }
    }

    /// Resolves a finishing span's names that were pending: its operation name, then the strings
    /// of its tags and logs. Out of line: names are pending only after a lost frame.
    #[cold]
    #[inline(never)]
    fn resolve_span(&self, span: &mut Span, s: &mut OpenState) {
        if let Some((epoch, id)) = s.name_pending {
            span.operation = self.resolve(epoch, id, &mut span.warnings);
        }
        if !s.pending.is_empty() {
            self.resolve_pending(
                std::mem::take(&mut s.pending),
                &mut span.tags,
                &mut span.logs,
                &mut span.warnings,
            );
        }
    }

    /// Fills in the strings that were pending when their records arrived, in the order the span's
    /// names are resolved (tags, then logs; a key before its value).
    fn resolve_pending(
        &self,
        mut pending: Vec<PendingName>,
        tags: &mut [KeyValue],
        logs: &mut [Log],
        warnings: &mut Vec<String>,
    ) {
        pending.sort_by_key(|p| p.slot);
        for p in pending {
            let text = self.resolve(p.epoch, p.id, warnings);
            let kv = match p.slot {
                Slot::Tag(i, _) => tags.get_mut(i),
                Slot::Log(i, j, _) => logs.get_mut(i).and_then(|l| l.fields.get_mut(j)),
            };
            let Some(kv) = kv else { continue };
            match p.slot {
                Slot::Tag(_, false) | Slot::Log(_, _, false) => kv.key = text,
                Slot::Tag(_, true) | Slot::Log(_, _, true) => kv.value = Value::Str(text),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedHello {
    service: String,
    device_id: u64,
    boot_id: u32,
    ticks_per_second: u32,
    time_shift: u8,
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
            time_shift: h.time_shift,
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
    /// The device's host name, as the user names it (`--hostname`): the `hostname` process tag
    /// Jaeger shows beside the service. `None` leaves it out: the device has no host name of its
    /// own, and the decoding machine's would claim the spans ran there.
    pub host_name: Option<String>,
    /// The machine that decoded the stream (the `microspan.decoder_host` process tag, next to
    /// `microspan.decoder_version`), to tell captures from several benches apart; `None` leaves
    /// it out.
    pub decoder_host: Option<String>,
    /// The host's clock, in Unix nanoseconds (`None`: the system clock). It dates a session the
    /// device and [`fixed_anchor_unix_nanos`](Self::fixed_anchor_unix_nanos) leave undated, as its
    /// first session record arrives, and the later session records, as they arrive, measure the
    /// device clock's rate against it (the crate's README, "Dates": a rate within 5 % of the
    /// nominal one, after a minute of device time, corrects the dates of later spans).
    pub host_clock: Option<fn() -> u64>,
}

/// Rebuilds spans from frames.
pub struct Assembler {
    opts: Options,
    session: Option<Session>,
    names: NameTable,
    /// Open spans: their slots by local id.
    open: OpenTable,
    /// Open and buffered spans.
    slab: Slab,
    /// Open spans in start order (for evicting the oldest); may hold ids already finished.
    open_order: VecDeque<u32>,
    recent: RecentCache,
    /// The texts of the names the device cut ([`Assembler::define_cut`]).
    cut_names: Vec<SharedStr>,
    /// The texts of the names cut to the decoder's string limit, counted once each.
    decoder_cut_names: Vec<String>,
    /// Traces with open spans or finished spans waiting for the trace to finish.
    traces: IdMap<u128, TraceState>,
    /// Traces with buffered spans, oldest first; may hold traces already handed over.
    buffered_order: VecDeque<u128>,
    /// Buffered spans.
    buffered_count: usize,
    /// Traces with buffered spans.
    buffered_traces: usize,
    /// Emptied slot vectors, reused for the next traces' buffered spans.
    spare: Vec<Vec<u32>>,
    /// Traces whose last open span finished in this frame.
    completed: Vec<u128>,
    /// Spans handed over in this frame (one batch per frame).
    outgoing: Vec<Span>,
    /// Device drops reported in the current frame: they happened while the frame's records were
    /// in the ring, so spans that start later in the frame may have been open then too.
    frame_drops: u64,
    /// This frame is a new drain's first in the running boot (`frame`): its session record is
    /// a reset when its time is behind the times heard by any amount (`session_record`).
    drain_restart: bool,
    /// Approximate bytes held in open and buffered spans.
    bytes_held: usize,
    /// Spans buffered in the traces of `completed` when they were completed: about what
    /// [`Assembler::flush_completed`] hands over (to size the batch once).
    completed_spans: usize,
    /// The wire version of the frame being assembled (a session reports the one it started in).
    frame_version: u8,
    /// The session's latest device time when the current frame began (before its records).
    frame_start_time: u64,
    /// A session announced boot id 0 / the default device id ([`Assembler::notes`]).
    boot_id_zero: bool,
    default_device_id: bool,
    /// The first session's anchor (Unix nanoseconds at its session record), and whether any
    /// session dated itself from the device's wall clock ([`Assembler::replay_anchor`]).
    first_anchor: Option<u64>,
    /// The device clock's rate against the host's, as last measured and applied
    /// ([`Assembler::measure_rate`]), in parts per billion.
    clock_rate_ppb: Option<i128>,
    device_dated: bool,
    stats: Stats,
}

/// Approximate heap bytes of a string kept in a span.
fn text_bytes(t: &Text<'_>) -> usize {
    match t {
        Text::Named(s) => 16 + s.len(),
        Text::Inline(s) => 16 + s.len(),
        Text::Pending { .. } => 16,
    }
}

// Charges are deliberately generous (allocator headers, Vec growth, the exported copy): the limit
// must hold for peak RSS, not only for the bytes of the strings.
const SPAN_OVERHEAD: usize = 640;
const ITEM_OVERHEAD: usize = 160;

impl Assembler {
    /// An assembler with these options.
    pub fn new(opts: Options) -> Self {
        let hash = IdHash::new();
        Self {
            session: None,
            names: NameTable::new(hash),
            open: OpenTable::new(hash),
            slab: Slab::new(),
            open_order: VecDeque::new(),
            recent: RecentCache::new(opts.limits.max_recent_spans),
            cut_names: Vec::new(),
            decoder_cut_names: Vec::new(),
            traces: id_map(hash),
            buffered_order: VecDeque::new(),
            buffered_count: 0,
            buffered_traces: 0,
            spare: Vec::new(),
            completed: Vec::new(),
            outgoing: Vec::new(),
            frame_drops: 0,
            drain_restart: false,
            bytes_held: 0,
            opts,
            completed_spans: 0,
            frame_version: 0,
            frame_start_time: 0,
            boot_id_zero: false,
            default_device_id: false,
            first_anchor: None,
            clock_rate_ppb: None,
            device_dated: false,
            stats: Stats::default(),
        }
    }

    /// The `--anchor-unix-nanos` that decodes this stream again to the same dates: the first
    /// session's anchor, when the host dated it (from its clock, or the fixed anchor) and it was
    /// the only session. `None` when the device sent its wall clock (its stream dates itself),
    /// when no session started, after a reset (each session was anchored when it arrived,
    /// which one fixed anchor cannot repeat), or when the device clock's rate was corrected as
    /// the stream arrived ([`Options::host_clock`]).
    pub fn replay_anchor(&self) -> Option<u64> {
        if self.device_dated || self.stats.resets > 0 || self.clock_rate_ppb.is_some() {
            return None;
        }
        self.first_anchor
    }

    /// Advice on how the device is set up: the ids it announced, a boot id of 0 (every boot then
    /// makes the same span and trace ids) or microspan's default device id (so does every device
    /// that keeps it), as Jaeger merges spans with the same ids into one trace; and spans
    /// continuing other services' traces that only the host's clock dated. Empty when all
    /// looks set.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.boot_id_zero {
            out.push(
                "the device announced boot id 0: every boot makes the same span and trace ids, \
                 so Jaeger mixes the traces of different runs; give each boot its own id \
                 (Session::boot_id or Tracer::set_boot_id, e.g. a reset counter kept in flash \
                 or a random number)"
                    .to_string(),
            );
        }
        if self.default_device_id {
            out.push(format!(
                "the device announced microspan's default device id ({:016x}): devices that \
                 keep it make the same trace ids, so Jaeger mixes their traces; set \
                 Session::device_id, e.g. from the chip's unique id",
                DEFAULT_DEVICE_ID
            ));
        }
        if let Some(rate) = self.clock_rate_ppb {
            let ppm = (rate - PPB) as f64 / 1_000.0;
            out.push(format!(
                "the device's clock ran {:.1} ppm {} than this machine's, as its session records \
                 arrived: the dates of its spans were corrected for it, so that they keep to this \
                 machine's time (and its backend's) however long the run",
                ppm.abs(),
                if ppm >= 0.0 { "slower" } else { "faster" },
            ));
        }
        let remote = self.stats.remote_parents;
        if remote > 0 && self.first_anchor.is_some() && !self.device_dated {
            out.push(format!(
                "{} continue{} traces of other services (a context extracted from a carrier), but \
                 the device sent no wall clock: they are dated by this machine's clock when it \
                 read the session record, so in Jaeger they sit off their parents by the link's \
                 delay and the two machines' clock difference (by far more in a capture decoded \
                 later). Send the device's time with Drain::set_wall_clock, from a source with \
                 millisecond resolution (SNTP, or a backend response carrying its time in epoch \
                 milliseconds; not an HTTP Date header, whose whole seconds leave the device up \
                 to a second behind), or decode a capture with --anchor-time",
                count(remote, "span", "spans"),
                if remote == 1 { "s" } else { "" },
            ));
        }
        out
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

    /// Feeds one checked frame; finished traces are appended to `out` (as one batch). Returns the
    /// record error met, if any (the frame's remaining records are then abandoned).
    pub fn frame(&mut self, frame: &Frame<'_>, out: &mut Vec<Batch>) -> Option<RecordError> {
        if self.late(frame) {
            self.stats.late_frames += 1;
            return None;
        }
        self.stats.frames += 1;
        self.frame_version = frame.version;
        let mut records = RecordDecoder::new(frame);
        if self.session.is_none() {
            // Only a frame holding a session record can start a session.
            match records.next() {
                Some(Ok(Record::Hello(h))) => self.start_session(&h),
                // A session record that does not parse (or cannot be used) is said so: without
                // it, the frames that follow are skipped for want of a session.
                Some(Err(e @ (RecordError::Hello { .. } | RecordError::NoClockRate { .. }))) => {
                    self.stats.frames_before_session += 1;
                    self.stats.record_errors += 1;
                    return Some(e);
                }
                _ => {
                    self.stats.frames_before_session += 1;
                    return None;
                }
            }
        }
        if let Some(s) = self.session.as_ref() {
            self.frame_start_time = s.last_time;
        }
        // A new boot's first frame (sequence 0, opening with a session record of another boot, or
        // of the same one with time gone back) is no sequence gap: close the old session with its
        // first record, then count from it. The first record is read ahead only then (a
        // `Peekable` copied every record once more).
        let mut next = None;
        self.drain_restart = false;
        if frame.seq == 0 {
            next = records.next();
            let new_boot = match (&next, self.session.as_mut()) {
                (Some(Ok(Record::Hello(h))), Some(s)) => {
                    let same = h.boot_id == s.hello.boot_id && h.device_id == s.hello.device_id;
                    // The firmware made a new `Drain` (its sequence starts over): the last frame
                    // heard was not near the wrap. Its clock's extension restarted too, so a time
                    // behind the times heard (by any amount) is a reset, as a new boot's.
                    let restart = same && s.last_seq.is_some_and(|l| l < 0x8000);
                    let new = !same || time_went_back(h, s, restart) || other_units(h, s);
                    self.drain_restart = restart;
                    if restart && !new {
                        // The stream goes on: no gap, the new drain's names from scratch, and
                        // its epoch length (the one setting a new drain may change that
                        // matters here: its time units would make it a reset).
                        self.stats.drain_restarts += 1;
                        s.last_seq = None;
                        s.follows = false;
                        s.epoch += 1;
                        s.hello.epoch_frames = h.epoch_frames.max(1);
                        self.names.clear();
                    }
                    if new {
                        // Frame 0 follows no frame of the old boot (`session_record`).
                        s.last_seq = None;
                        s.follows = false;
                    }
                    new
                }
                _ => false,
            };
            if new_boot {
                if let Some(Ok(hello)) = next.take() {
                    self.stats.records += 1;
                    self.record(hello, out);
                }
            }
        }
        self.sequence(frame.seq);
        if let Some(s) = self.session.as_mut() {
            // A frame of untimed records (drops, tags) moves its base time, not `last_time`.
            s.last_base_time = s.last_base_time.max(frame.base_time);
        }
        self.frame_drops = 0;
        let mut error = match next {
            Some(Ok(r)) => {
                self.stats.records += 1;
                self.record(r, out);
                None
            }
            Some(Err(e)) => Some(e),
            None => None,
        };
        // Each record is handled in its decoder's branch for its kind (`next_with`): a record
        // returned by the iterator was first merged from those branches, a copy of every field
        // through memory.
        while error.is_none() {
            // In line in each branch (as `record` is), so each handles its own kind only: left
            // to itself the compiler made the closure one call, with the record passed through
            // memory. (`#[inline]` on a closure is stable in argument position.)
            let handled = records.next_with(
                #[inline(always)]
                |r| {
                    self.stats.records += 1;
                    self.record(r, out)
                },
            );
            match handled {
                Some(Ok(())) => {}
                Some(Err(e)) => error = Some(e),
                None => break,
            }
        }
        if error.is_some() {
            self.abandoned_rest_of_frame();
        }
        self.enforce_memory();
        self.flush_completed();
        self.hand_over(out);
        error
    }

    /// End of input: every open span is exported as incomplete, every buffered trace flushed.
    pub fn finish(&mut self, out: &mut Vec<Batch>) {
        self.close_session("the stream ended before this span finished", out);
    }

    /// A name the device cut to fit its frame: kept with a `…` that shows the cut, and
    /// remembered (up to [`MAX_CUT_NAMES`] texts) so that the spans using it get a warning.
    #[cold]
    #[inline(never)]
    fn define_cut(&mut self, id: u32, name: &str) {
        let text = format!("{name}…");
        // The text kept from an earlier epoch, if any: the spans are checked by identity.
        let known = self.cut_names.iter().find(|c| c.as_str() == text).cloned();
        let shared = match known {
            Some(kept) => kept,
            None => {
                self.stats.names_cut += 1;
                let shared = SharedStr::from(text);
                if self.cut_names.len() < MAX_CUT_NAMES {
                    self.cut_names.push(shared.clone());
                }
                shared
            }
        };
        self.names.insert(id, shared);
    }

    /// `frame` is from behind the running session's last frame ([`Stats::late_frames`]): not a
    /// frame 0 (which opens a session or a drain and has its own rules), a sequence number the
    /// last one's or up to 32 768 behind it, and a time not ahead of the latest heard, in a
    /// record or as a decoded frame's base time (frames that many ahead, after a long outage,
    /// are later in time), and not opening with a session record.
    fn late(&self, frame: &Frame<'_>) -> bool {
        let Some(s) = self.session.as_ref() else {
            return false;
        };
        let Some(last) = s.last_seq else {
            return false;
        };
        let ahead = frame.seq.wrapping_sub(last);
        let behind = frame.seq != 0
            && (ahead == 0 || ahead >= 0x8000)
            && frame.base_time <= s.last_time.max(s.last_base_time);
        // A frame opening with a session record is decoded whatever its place: it may be a new
        // boot's (its frame 0 lost), which only that record can tell.
        behind && !matches!(RecordDecoder::new(frame).next(), Some(Ok(Record::Hello(_))))
    }

    fn sequence(&mut self, seq: u16) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let epoch_frames = s.hello.epoch_frames as u64;
        s.follows = seq != 0 && s.last_seq == Some(seq.wrapping_sub(1));
        if let Some(last) = s.last_seq {
            let gap = seq.wrapping_sub(last).wrapping_sub(1) as u64;
            if gap > 0 {
                // Before this frame's records: what was heard before the lost frames.
                mark_loss(&mut s.loss_marks, losses(&self.stats), s.last_time);
            }
            self.stats.lost_frames += gap;
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

    /// The host's clock ([`Options::host_clock`]), in Unix nanoseconds.
    fn host_now(&self) -> u64 {
        match self.opts.host_clock {
            Some(now) => now(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    /// A session record of a session the host's clock dated arrived at host time `host_now`,
    /// taken on the device at tick `now_ticks`: the device clock's rate against the host's,
    /// measured over the whole session so far, corrects the dates of what is exported from now
    /// on, so that a device clock off by some parts per million does not carry its spans ever
    /// further from the host's (and its backend's) time: the error stays the link's delay,
    /// whatever the session's length.
    ///
    /// Only a rate within [`MAX_RATE_ERROR_PPB`] of 1, measured over at least
    /// [`MIN_RATE_SPAN_NANOS`] of device time, is taken: a crystal's or an RC oscillator's. Any
    /// other is not a live input (a capture read from a file goes by far faster than the device
    /// ran) or a clock whose `ticks_per_second` is wrong, and the dates stay as anchored.
    fn measure_rate(&mut self, now_ticks: u64, host_now: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let device = s.clock.nanos(now_ticks) - s.anchor_nanos;
        let host = host_now as i128 - s.anchor_unix_nanos;
        if device < MIN_RATE_SPAN_NANOS {
            return;
        }
        let rate = host * PPB / device;
        if (rate - PPB).abs() <= MAX_RATE_ERROR_PPB {
            s.rate_ppb = rate;
            self.clock_rate_ppb = Some(rate);
        }
    }

    fn start_session(&mut self, h: &Hello<'_>) {
        let mut hello = OwnedHello::from(h);
        if let Some(w) = hello.wall_clock {
            if wall_anchor(&w, hello.ticks_per_second, hello.now_ticks).is_none() {
                self.stats.bad_wall_clocks += 1;
                hello.wall_clock = None;
            }
        }
        self.boot_id_zero |= hello.boot_id == 0;
        self.default_device_id |= hello.device_id == DEFAULT_DEVICE_ID;
        let anchor_unix_nanos = match (hello.wall_clock, self.opts.fixed_anchor_unix_nanos) {
            (Some(w), _) => {
                wall_anchor(&w, hello.ticks_per_second, hello.now_ticks).expect("checked above")
            }
            (None, Some(fixed)) => fixed as i128,
            (None, None) => self.host_now() as i128,
        };
        let host_anchored =
            hello.wall_clock.is_none() && self.opts.fixed_anchor_unix_nanos.is_none();
        self.device_dated |= hello.wall_clock.is_some();
        // The rate measured for the session before, if any, is no longer applied.
        self.clock_rate_ppb = None;
        if self.first_anchor.is_none() {
            self.first_anchor = Some(anchor_unix_nanos.clamp(0, u64::MAX as i128) as u64);
        }
        let device_id: SharedStr = format!("{:016x}", hello.device_id).into();
        let mut tags = vec![
            KeyValue::new("device.id", Value::Str(device_id.clone())),
            // The host identity Jaeger's clock-skew adjuster compares (`host.id` first): one
            // device is one host, so a child that outlives its parent on the device is not taken
            // for a span from a skewed clock elsewhere.
            KeyValue::new("host.id", Value::Str(device_id)),
            KeyValue::new(
                "device.boot_id",
                Value::Str(format!("{:08x}", hello.boot_id).into()),
            ),
            KeyValue::new(
                "microspan.wire_version",
                Value::I64(self.frame_version as i64),
            ),
            KeyValue::new(
                "microspan.version",
                Value::Str(hello.microspan_version.as_str().into()),
            ),
            KeyValue::new(
                "microspan.decoder_version",
                Value::Str(env!("CARGO_PKG_VERSION").into()),
            ),
            KeyValue::new(
                "device.clock_hz",
                Value::I64((hello.ticks_per_second as i64) << hello.time_shift),
            ),
        ];
        if !hello.firmware_version.is_empty() {
            tags.push(KeyValue::new(
                "firmware.version",
                Value::Str(hello.firmware_version.as_str().into()),
            ));
        }
        if let Some(host) = &self.opts.host_name {
            tags.push(KeyValue::new("hostname", Value::Str(host.as_str().into())));
        }
        if let Some(host) = &self.opts.decoder_host {
            tags.push(KeyValue::new(
                "microspan.decoder_host",
                Value::Str(host.as_str().into()),
            ));
        }
        let process = Arc::new(Process {
            service_name: hello.service.as_str().into(),
            tags,
        });
        self.names.clear();
        let clock = TickClock::new(hello.ticks_per_second);
        self.session = Some(Session {
            anchor_nanos: clock.nanos(hello.now_ticks),
            clock,
            anchor_unix_nanos,
            rate_ppb: PPB,
            host_anchored,
            hello,
            process,
            epoch: 0,
            last_seq: None,
            follows: false,
            last_time: 0,
            last_base_time: 0,
            drops: 0,
            loss_marks: VecDeque::new(),
        });
        self.frame_start_time = 0;
    }

    /// Exports every open span as incomplete (ending where [`incomplete_end`](Self::incomplete_end)
    /// says, and not before its descendants: [`descendant_ends`](Self::descendant_ends)) and
    /// every buffered trace, then hands them over.
    ///
    /// In batches of [`CLOSE_BATCH`] spans, each handed over before the next is finished: a
    /// session with many open spans (up to `max_open_spans`) never holds them twice over while
    /// they are converted. The open-span table is released afterwards.
    fn close_session(&mut self, why: &str, out: &mut Vec<Batch>) {
        let descendants = self.descendant_ends();
        let mut closed = 0usize;
        while let Some(id) = self.open_order.pop_front() {
            if let Some(i) = self.open.remove(id) {
                let end = self
                    .incomplete_end(&self.slab.slots[i as usize].st)
                    .max(descendants.get(&i).copied().unwrap_or(0));
                self.finish_span(i, end, true, Some(why));
                closed += 1;
                if closed % CLOSE_BATCH == 0 {
                    self.flush_completed();
                    self.hand_over(out);
                }
            }
        }
        if closed >= CLOSE_BATCH {
            self.open.shrink_to_fit();
        }
        self.flush_completed();
        while let Some(t) = self.buffered_order.pop_front() {
            self.emit_trace(t);
        }
        self.slab.clear_if_unused(closed >= CLOSE_BATCH);
        self.hand_over(out);
    }

    /// Where a span still open when its session closes (end of input, device reset) ends: at the
    /// latest device time heard from the session, as it was open at least until then (so no
    /// earlier than its descendants' ends either). When frames were lost on the link, the device
    /// dropped records or a malformed record abandoned the rest of its frame while it was open,
    /// its END may have been among them: it then ends at the latest time heard before the first
    /// such loss. Never before its own last record.
    fn incomplete_end(&self, st: &OpenState) -> u64 {
        let Some(s) = self.session.as_ref() else {
            return st.last_time;
        };
        let at_start = st.losses_at_start();
        let heard = if at_start == self.losses() {
            s.last_time
        } else {
            // The first loss after its start is the one counted from `at_start`.
            s.loss_marks
                .binary_search_by_key(&at_start, |&(losses, _)| losses)
                .map_or(st.last_time, |k| s.loss_marks[k].1)
        };
        st.last_time.max(heard)
    }

    /// For the spans open across a loss (which [`incomplete_end`](Self::incomplete_end) may end
    /// before the latest time heard), the latest end among their ChildOf descendants that the
    /// decoder still holds (open, or finished and waiting for their trace), by slot: a span
    /// whose END was not heard was open at least while its children ran. Empty when no open span
    /// saw a loss: the others end at the latest time heard, after every descendant. Only when a
    /// session closes, so the record path keeps no parent links.
    fn descendant_ends(&self) -> HashMap<u32, u64> {
        let mut out = HashMap::new();
        let losses = self.losses();
        let slot = |i: u32| &self.slab.slots[i as usize];
        let mut open: Vec<u32> = self
            .open_order
            .iter()
            .filter_map(|&id| self.open.get(id))
            .collect();
        // `open_order` may name a span twice (an id reused).
        open.sort_unstable();
        open.dedup();
        let traces: HashSet<u128> = open
            .iter()
            .map(|&i| slot(i))
            .filter(|s| s.st.losses_at_start() != losses)
            .map(|s| s.span.trace_id)
            .collect();
        if traces.is_empty() {
            return out;
        }
        open.retain(|&i| traces.contains(&slot(i).span.trace_id));
        let mut spans = open.clone();
        for t in &traces {
            if let Some(e) = self.traces.get(t) {
                spans.extend_from_slice(&e.spans);
            }
        }
        // Children start after their parents (their ids come later): latest first, so each
        // span's reach is whole when it is passed on to its parent.
        spans.sort_unstable_by_key(|&i| std::cmp::Reverse((slot(i).st.start, slot(i).st.local)));
        let index: HashMap<(u128, u64), usize> = spans
            .iter()
            .enumerate()
            .map(|(k, &i)| ((slot(i).span.trace_id, slot(i).span.span_id), k))
            .collect();
        // The latest end among each span's descendants seen so far (device ticks).
        let mut reach = vec![0u64; spans.len()];
        for (k, &i) in spans.iter().enumerate() {
            let SpanSlot { span, st } = slot(i);
            let end = if open.binary_search(&i).is_ok() {
                out.insert(i, reach[k]);
                self.incomplete_end(st).max(reach[k])
            } else {
                // A finished span's state keeps its end (`finish_span`).
                st.last_time.max(reach[k])
            };
            let parent = span
                .references
                .first()
                .filter(|r| r.kind == RefKind::ChildOf && r.trace_id == span.trace_id)
                .and_then(|r| index.get(&(r.trace_id, r.span_id)));
            if let Some(&p) = parent {
                reach[p] = reach[p].max(end);
            }
        }
        out
    }

    /// The losses so far that a span's END may be lost to ([`losses`]).
    fn losses(&self) -> u64 {
        losses(&self.stats)
    }

    /// A malformed record abandoned the rest of the frame: counted, and marked as a loss of the
    /// session at the latest time heard (the frame's last good record, or what was heard before
    /// the frame), like a lost frame. The records abandoned are at least one (the malformed one):
    /// a span open across them may have lost its END there, so it ends at that time
    /// ([`incomplete_end`](Self::incomplete_end)) and is warned that records were lost, rather
    /// than stretching to the latest time heard later.
    #[cold]
    fn abandoned_rest_of_frame(&mut self) {
        if let Some(s) = self.session.as_mut() {
            mark_loss(&mut s.loss_marks, losses(&self.stats), s.last_time);
        }
        self.stats.record_errors += 1;
    }

    /// Hands the spans of this frame over as one batch.
    fn hand_over(&mut self, out: &mut Vec<Batch>) {
        if self.outgoing.is_empty() {
            return;
        }
        let process = self
            .session
            .as_ref()
            .map(|s| s.process.clone())
            .unwrap_or_else(|| {
                Arc::new(Process {
                    service_name: "unknown".into(),
                    tags: vec![],
                })
            });
        // The next batch is sized when its spans are known (`flush_completed`).
        let spans = std::mem::take(&mut self.outgoing);
        out.push(Batch { process, spans });
    }

    /// A session record after the session's first (once an epoch, or a new boot's): a device
    /// reset when it names another boot or device, or when its time is more than a second before
    /// the latest device time heard (or the session's first record's) — time went back, as it
    /// does when a device that keeps its boot id restarts.
    ///
    /// Not when the frame directly follows the previous one ([`Session::follows`]): a device
    /// restarts its sequence at 0, so such a session record is the running boot's, and a time
    /// behind what was heard means a record before it was misdated (a corrupted frame whose CRC
    /// still matched, or a device clock that jumped ahead). That is counted
    /// ([`Stats::misdated`]), and the times heard are pulled back to the session record's: no
    /// record written before it can be later, and a span closed later (incomplete) or a loss
    /// marked meanwhile would otherwise end at the misdated time. The spans that hold a misdated
    /// record keep the times the device sent: which of their records were misdated is not known,
    /// and their END usually comes and sets their end.
    #[cold]
    #[inline(never)]
    fn session_record(&mut self, h: &Hello<'_>, out: &mut Vec<Batch>) {
        let s = self.session.as_mut().expect("session exists");
        let same = h.boot_id == s.hello.boot_id && h.device_id == s.hello.device_id;
        let behind = time_went_back(h, s, self.drain_restart);
        // Behind the previous session record itself: the device's own clock went back, which a
        // misdated record cannot do (a device that restarted, whose frame 0 was lost).
        let clock_back =
            h.now_ticks.saturating_add(s.hello.ticks_per_second as u64) < s.hello.now_ticks;
        if !same || other_units(h, s) || (behind && (!s.follows || clock_back)) {
            // The sequence goes on from this frame, already counted (`sequence` ran before its
            // records), unless it is a new boot's frame 0, whose record comes first (`frame`).
            let seq = s.last_seq;
            self.stats.resets += 1;
            self.close_session(
                if same {
                    // Time went back (or changed units) under the same ids: a device that keeps
                    // its boot id restarted, or the firmware made a new `Drain`, whose time
                    // starts over.
                    "the device reset before this span finished (same boot id, its time went \
                     back: a restart, or a new Drain created in the running boot)"
                } else {
                    "the device reset (new boot) before this span finished"
                },
                out,
            );
            self.recent.clear();
            self.start_session(h);
            if let Some(s) = self.session.as_mut() {
                s.last_seq = seq;
            }
            return;
        }
        if behind {
            self.stats.misdated += 1;
            let now = h.now_ticks;
            s.last_time = s.last_time.min(now);
            s.hello.now_ticks = s.hello.now_ticks.min(now);
            for mark in &mut s.loss_marks {
                mark.1 = mark.1.min(now);
            }
            // Drops reported later in this frame are marked at it (`Record::Drops`).
            self.frame_start_time = self.frame_start_time.min(now);
        }
        if !behind && s.host_anchored && h.wall_clock.is_none() {
            let now = self.host_now();
            self.measure_rate(h.now_ticks, now);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let tps = s.hello.ticks_per_second;
        match h.wall_clock {
            Some(w) if wall_anchor(&w, tps, h.now_ticks).is_none() => {
                self.stats.bad_wall_clocks += 1
            }
            Some(w) => s.hello.wall_clock = Some(w),
            None => {}
        }
    }

    /// Handles one record. In line in the frame loop, with the record decoder: a record passed
    /// by reference to a call was written to memory field by field and read back with wider loads
    /// (a store-forwarding stall on every record, a sixth of assembly).
    #[inline(always)]
    fn record(&mut self, r: Record<'_>, out: &mut Vec<Batch>) {
        match r {
            Record::Hello(h) => self.session_record(&h, out),
            Record::Name {
                id,
                name,
                cut: device_cut,
            } => {
                if self.names.len() < self.opts.limits.max_names || self.names.contains(id) {
                    let (name, decoder_cut) = cut(name, self.opts.limits.max_string_len);
                    if decoder_cut {
                        // Rare (a name longer than the limit takes a frame that large): counted
                        // once per text (it is defined again every epoch; up to
                        // `MAX_CUT_NAMES` texts remembered) and marked with a `…`; the summary
                        // says so, not its spans.
                        let marked = format!("{name}…");
                        if !self.decoder_cut_names.contains(&marked) {
                            self.stats.strings_cut += 1;
                            if self.decoder_cut_names.len() < MAX_CUT_NAMES {
                                self.decoder_cut_names.push(marked.clone());
                            }
                        }
                        self.names.insert(id, SharedStr::from(marked.as_str()));
                    } else if device_cut {
                        self.define_cut(id, name);
                    } else {
                        self.names.insert(id, SharedStr::from(name));
                    }
                }
            }
            Record::Start(st) => self.start(st),
            Record::End { span, time, losses } => {
                self.touch(time);
                let Some(i) = self.open.remove(span) else {
                    self.stats.orphan_records += 1;
                    return;
                };
                // Spans mostly end in the reverse order of their starts: the last one started is
                // forgotten here, with one compare, rather than kept until the finished ids are
                // swept out of `open_order` (that sweep was 1 % of assembly).
                if self.open_order.back() == Some(&span) {
                    self.open_order.pop_back();
                }
                // Losses are rare: none is one compare.
                if losses != Losses::default() {
                    self.end_losses(i, losses);
                }
                self.finish_span(i, time, false, None);
            }
            Record::Tag { span, key, value } => {
                let names = Names {
                    table: &self.names,
                    epoch: self.session.as_ref().map_or(0, |s| s.epoch),
                    max_len: self.opts.limits.max_string_len,
                    cut: std::cell::Cell::new(0),
                };
                let key = names.text(key);
                let value = names.val(value);
                let max = self.opts.limits.max_items_per_span;
                let Some(slot) = self.open.get(span) else {
                    self.stats.orphan_records += 1;
                    return;
                };
                let SpanSlot { span: s, st } = &mut self.slab.slots[slot as usize];
                if s.tags.len() < max {
                    st.strings_cut += u64::from(names.cut.get());
                    let b = ITEM_OVERHEAD + text_bytes(&key) + val_bytes(&value);
                    st.bytes += b;
                    self.bytes_held += b;
                    let i = s.tags.len();
                    let slots = (Slot::Tag(i, false), Slot::Tag(i, true));
                    push_key_value(&mut s.tags, key, value, slots, &mut st.pending);
                } else {
                    st.items_refused += 1;
                }
            }
            Record::Log { span, time, fields } => {
                self.touch(time);
                let max = self.opts.limits.max_items_per_span;
                let names = Names {
                    table: &self.names,
                    epoch: self.session.as_ref().map_or(0, |s| s.epoch),
                    max_len: self.opts.limits.max_string_len,
                    cut: std::cell::Cell::new(0),
                };
                let Some(slot) = self.open.get(span) else {
                    self.stats.orphan_records += 1;
                    return;
                };
                let SpanSlot { span: s, st } = &mut self.slab.slots[slot as usize];
                if s.logs.len() >= max {
                    st.items_refused += 1;
                    return;
                }
                let i = s.logs.len();
                let mut b = ITEM_OVERHEAD;
                // The log is added first and its fields written into it: fields gathered on the
                // stack and moved in with the log were read back in wider pieces than they were
                // written (a store-forwarding stall per log).
                // Timed in ticks until the span finishes (the clock anchor may still move).
                let log = push_log(&mut s.logs, time);
                log.fields.reserve_exact(fields.len().min(max));
                for (j, (k, v)) in fields.take(max).enumerate() {
                    let (k, v) = (names.text(k), names.val(v));
                    b += ITEM_OVERHEAD + text_bytes(&k) + val_bytes(&v);
                    let slots = (Slot::Log(i, j, false), Slot::Log(i, j, true));
                    push_key_value(&mut log.fields, k, v, slots, &mut st.pending);
                }
                st.strings_cut += u64::from(names.cut.get());
                self.bytes_held += b;
                st.bytes += b;
                st.last_time = st.last_time.max(time);
            }
            Record::Baggage {
                span,
                key,
                value,
                carried,
            } => self.baggage(span, key, value, carried),
            Record::Reference {
                span,
                kind,
                trace,
                target,
            } => self.reference(
                span,
                Reference {
                    kind: ref_kind(kind),
                    trace_id: trace.0,
                    span_id: target.0,
                },
            ),
            Record::Drops { total } => {
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                // A total below the last one is from an older frame (one reordered or replayed
                // past the checks): nothing new. Far below, the device's count wrapped at 2^32.
                let older = total < s.drops && s.drops - total < 1 << 31;
                let delta = u64::from(total.wrapping_sub(s.drops));
                if delta > 0 && !older {
                    // The drops happened while this frame's records were in the ring: after
                    // what the frames before it said.
                    mark_loss(
                        &mut s.loss_marks,
                        losses(&self.stats),
                        self.frame_start_time,
                    );
                    s.drops = total;
                    self.frame_drops += delta;
                    self.stats.device_drops += delta;
                }
            }
            Record::WallClock(w) => {
                if let Some(s) = self.session.as_mut() {
                    let now = s.last_time.max(s.hello.now_ticks);
                    if wall_anchor(&w, s.hello.ticks_per_second, now).is_none() {
                        self.stats.bad_wall_clocks += 1;
                        return;
                    }
                    self.device_dated = true;
                    s.hello.wall_clock = Some(w);
                    s.anchor_nanos = s.clock.nanos(w.ticks);
                    s.anchor_unix_nanos = w.unix_nanos as i128;
                    s.host_anchored = false;
                    s.rate_ppb = PPB;
                    self.clock_rate_ppb = None;
                }
            }
        }
    }

    /// A BAGGAGE record: the item joins the span's baggage (and its descendants' from now on),
    /// logged when the span set it. Out of line: rarer than the records around it, and the frame
    /// loop keeps its registers.
    #[inline(never)]
    fn baggage(&mut self, span: u32, key: &str, value: &str, carried: bool) {
        let limits = self.opts.limits;
        let Some(slot) = self.open.get(span) else {
            self.stats.orphan_records += 1;
            return;
        };
        let SpanSlot { span: s, st } = &mut self.slab.slots[slot as usize];
        let carried = carried || (st.v1_carrier && s.tags.is_empty() && s.logs.is_empty());
        let (key, cut_k) = cut(key, limits.max_string_len);
        let (value, cut_v) = cut(value, limits.max_string_len);
        st.strings_cut += cut_k as u64 + cut_v as u64;
        let (mut held, mut replaces) = (0, false);
        for (k, v) in &s.baggage {
            held += k.len() + v.len();
            replaces |= k == key;
        }
        if !replaces
            && (s.baggage.len() >= limits.max_items_per_span
                || held + key.len() + value.len() > limits.max_baggage_bytes)
        {
            st.items_refused += 1;
            return;
        }
        // Converted once: the item and its log share them (clones of short text are copies; of
        // long text, a count raised).
        let (key, value): (SharedStr, SharedStr) = (key.into(), value.into());
        let item = ITEM_OVERHEAD + key.len() + value.len();
        if s.baggage.is_empty() {
            // The span's first item, none inherited: a new allocation, nothing to copy.
            s.baggage = Baggage::one(key.clone(), value.clone());
        } else {
            let bag = s.baggage.make_mut();
            if let Some(item) = bag.iter_mut().find(|(k, _)| *k == key) {
                item.1 = value.clone();
            } else {
                bag.push((key.clone(), value.clone()));
            }
        }
        st.baggage_items_charged += item;
        let mut b = item;
        // An item the span set is logged on it, as Jaeger clients log `SetBaggageItem`
        // (`override` when the key was already in the context, its own or inherited; `truncated`
        // when cut to the decoder's string limit). The device does not time the item: it is
        // logged at the span's latest time seen, which keeps its order among the span's logs. An
        // item the span received (from a carrier, or a builder's baggage) only joins its
        // baggage: it was set, and logged, upstream, and the clients copy received items without
        // logging them.
        if carried {
            // Received: logged where it was set, upstream (or on the device's span that set it
            // before the context went through a carrier).
        } else if s.logs.len() < limits.max_items_per_span {
            let [k_event, v_baggage, k_key, k_override, k_truncated, v_true, k_value] =
                &BAGGAGE_LOG;
            let cut_kv = cut_k || cut_v;
            let n = 3 + replaces as usize + cut_kv as usize;
            // The fields are gathered in a vector of their exact size, which the log then owns:
            // three or more do not fit in place, and growing the log's list from empty was a
            // general-purpose reallocation.
            let mut fields = Vec::with_capacity(n);
            let mut field = |k: &SharedStr, v: &SharedStr| {
                fields.push(KeyValue {
                    key: k.clone(),
                    value: Value::Str(v.clone()),
                });
                // The finished form charges each field in full (see `span_bytes`, `value_bytes`).
                ITEM_OVERHEAD + 16 + k.len() + 16 + v.len()
            };
            let mut full = ITEM_OVERHEAD;
            full += field(k_event, v_baggage);
            full += field(k_key, &key);
            full += field(k_value, &value);
            if replaces {
                full += field(k_override, v_true);
            }
            if cut_kv {
                full += field(k_truncated, v_true);
            }
            let charged = ITEM_OVERHEAD * (1 + n) + key.len() + value.len();
            st.baggage_logs_extra += full - charged;
            b += charged;
            push_log(&mut s.logs, st.last_time).fields = KeyValues::from_vec(fields);
        } else {
            st.items_refused += 1;
        }
        st.bytes += b;
        self.bytes_held += b;
    }

    /// A REFERENCE record: the reference joins the span's. Out of line: rare, and its code kept
    /// the record loop's longer.
    #[inline(never)]
    fn reference(&mut self, span: u32, r: Reference) {
        let Some(slot) = self.open.get(span) else {
            self.stats.orphan_records += 1;
            return;
        };
        let SpanSlot { span: s, st } = &mut self.slab.slots[slot as usize];
        if s.references.len() < self.opts.limits.max_items_per_span {
            push_reference(&mut s.references, r);
            st.bytes += ITEM_OVERHEAD;
            self.bytes_held += ITEM_OVERHEAD;
        } else {
            st.items_refused += 1;
        }
    }

    /// Warnings for what a span lost on the device, as its END record reports.
    #[cold]
    fn end_losses(&mut self, i: u32, losses: Losses) {
        let warnings = &mut self.slab.slots[i as usize].span.warnings;
        // The count, what it counts (one, many), and the rest of the sentence.
        let limits = [
            (losses.tags_over_capacity, "tag was", "tags were", " dropped: more than the device's MICROSPAN_MAX_TAGS_PER_SPAN"),
            (
                losses.fields_over_capacity,
                "log field, baggage item or reference was",
                "log fields, baggage items or references were",
                " dropped: more than the device's capacity (MICROSPAN_MAX_FIELDS_PER_LOG, MICROSPAN_MAX_REFERENCES, the span's baggage items B, MICROSPAN_MAX_BAGGAGE_KEY_LEN / MICROSPAN_MAX_BAGGAGE_VALUE_LEN), an empty baggage key, or baggage a carrier brought that did not fit",
            ),
            (losses.strings_truncated, "string was", "strings were", " truncated to the device's MICROSPAN_MAX_STR_LEN (keys to their own limit)"),
            (losses.records_dropped, "of this span's records was", "of this span's records were", " dropped on the device: its ring buffer was full"),
        ];
        for (n, one, many, rest) in limits {
            if n > 0 {
                warnings.push(format!("{}{rest}", count(u64::from(n), one, many)));
            }
        }
    }

    fn touch(&mut self, time: u64) {
        if let Some(s) = self.session.as_mut() {
            s.last_time = s.last_time.max(time);
        }
    }

    fn names(&self) -> Names<'_> {
        Names {
            table: &self.names,
            epoch: self.session.as_ref().map_or(0, |s| s.epoch),
            max_len: self.opts.limits.max_string_len,
            cut: std::cell::Cell::new(0),
        }
    }

    /// Trace, local root and baggage of an open or recently finished span, and whether that
    /// baggage may be incomplete. In line in `start`, its caller: returned from a call, the
    /// answer (40 bytes) went through memory for every child span.
    #[inline(always)]
    fn lookup(&self, local: u32) -> Option<(u128, u32, &Baggage, bool)> {
        if let Some(i) = self.open.get(local) {
            let SpanSlot { span: s, st } = &self.slab.slots[i as usize];
            let uncertain = st.baggage_uncertain
                || self.stats.lost_frames != st.lost_frames_at_start
                || self.stats.record_errors != st.errors_at_start;
            return Some((s.trace_id, st.root, &s.baggage, uncertain));
        }
        self.recent
            .get(local)
            .map(|r| (r.trace, r.root, r.baggage, r.baggage_uncertain))
    }

    fn start(&mut self, st: microspan::wire::decode::Start<'_>) {
        self.touch(st.time);
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let device = session.hello.device_id;
        // The high half of the session's span ids: from version 3 the boot id mixed with the
        // device id (so two devices continuing one backend trace do not make the same ids),
        // before it the boot id alone, as those devices derived them.
        let boot = if self.frame_version >= 3 {
            SpanId::boot_prefix(device, session.hello.boot_id)
        } else {
            session.hello.boot_id
        };
        let derived = |root: u32| TraceId::from_halves(device, SpanId::local(boot, root).0).0;
        let kind = if st.follows_from {
            RefKind::FollowsFrom
        } else {
            RefKind::ChildOf
        };
        let mut warnings = Vec::new();
        let mut baggage_uncertain = false;
        let mut remote_parent = false;
        // Only a span continuing a context from a carrier names its remote parent (its
        // descendants name a local one; a child of a dropped start names none).
        let v1_carrier =
            self.frame_version == 1 && matches!(st.parent, Parent::Remote { span: Some(_), .. });
        let (trace, root, parent_ref, baggage) = match st.parent {
            Parent::Root => (derived(st.id), st.id, None, Baggage::new()),
            Parent::Local { id, root } => {
                let parent_span = SpanId::local(boot, id).0;
                match (self.lookup(id), root) {
                    (Some((trace, proot, bag, uncertain)), _) => {
                        baggage_uncertain = uncertain;
                        (trace, proot, Some(parent_span), bag.clone())
                    }
                    (None, Some(root)) => {
                        let trace = self.lookup(root).map_or_else(|| derived(root), |r| r.0);
                        warnings.push(PARENT_NOT_RECEIVED.to_string());
                        baggage_uncertain = true;
                        (trace, root, Some(parent_span), Baggage::new())
                    }
                    (None, None) => {
                        // The device only omits the root when the parent started in the same frame.
                        self.stats.orphan_records += 1;
                        baggage_uncertain = true;
                        warnings.push(
                            "the parent span is unknown: its trace could not be determined"
                                .to_string(),
                        );
                        (derived(st.id), st.id, Some(parent_span), Baggage::new())
                    }
                }
            }
            Parent::Remote { trace, span } => {
                // Another process's span: not one of this boot (a recorded span's ids have the
                // boot's prefix, a lost or unsampled one's its complement). Firmware before
                // this decoder named a span of its own boot handed to `child_of` this way.
                remote_parent = span.is_some_and(|s| {
                    let high = (s.0 >> 32) as u32;
                    high != boot && high != !boot
                });
                self.stats.remote_parents += remote_parent as u64;
                if span.is_none() {
                    warnings.push(
                        "the parent span was dropped on the device (ring buffer full)".to_string(),
                    );
                }
                (trace.0, st.id, span.map(|s| s.0), Baggage::new())
            }
            Parent::LocalInTrace { trace, span } => {
                // A child of a span of this session, named with its trace in full: it inherits
                // the parent's baggage like any child, when the parent is known in that trace.
                let mut baggage = Baggage::new();
                match self.lookup(span.0 as u32) {
                    Some((ptrace, _, bag, uncertain)) if ptrace == trace.0 => {
                        baggage = bag.clone();
                        baggage_uncertain = uncertain;
                    }
                    _ => {
                        warnings.push(PARENT_NOT_RECEIVED.to_string());
                        baggage_uncertain = true;
                    }
                }
                (trace.0, st.id, Some(span.0), baggage)
            }
        };
        let references = match parent_ref {
            Some(p) => smallvec![Reference {
                kind,
                trace_id: trace,
                span_id: p,
            }],
            None => References::new(),
        };
        if self.open.len() >= self.opts.limits.max_open_spans {
            self.evict_oldest_open(
                "the decoder's limit on open spans was reached (--max-open-spans)",
            );
        }
        let names = self.names();
        let text = names.text(st.name);
        let name_cut = names.cut.get();
        // The parent reference is charged as the later ones are (see `span_bytes`).
        let bytes = SPAN_OVERHEAD + text_bytes(&text) + references.len() * ITEM_OVERHEAD;
        let (operation, name_pending) = match text {
            Text::Named(s) => (s.clone(), None),
            Text::Inline(s) => (s.into(), None),
            Text::Pending { epoch, id } => (SharedStr::default(), Some((epoch, id))),
        };
        let i = self.slab.alloc();
        let SpanSlot { span, st: state } = &mut self.slab.slots[i as usize];
        // The slot's span is empty: only what a starting span has is set.
        span.trace_id = trace;
        span.span_id = SpanId::local(boot, st.id).0;
        span.operation = operation;
        span.references = references;
        span.baggage = baggage;
        span.flags = 1 | (st.debug as u8) << 1;
        span.remote_parent = remote_parent;
        span.warnings = warnings;
        *state = OpenState {
            local: st.id,
            root,
            start: st.time,
            last_time: st.time,
            name_pending,
            pending: Vec::new(),
            baggage_uncertain,
            v1_carrier,
            lost_frames_at_start: self.stats.lost_frames,
            drops_at_start: self.stats.device_drops - self.frame_drops,
            errors_at_start: self.stats.record_errors,
            items_refused: 0,
            strings_cut: u64::from(name_cut),
            bytes,
            baggage_items_charged: 0,
            baggage_logs_extra: 0,
        };
        self.bytes_held += bytes;
        self.traces.entry(trace).or_default().open += 1;
        if let Some(old) = self.open.insert(st.id, i) {
            // A duplicate id (corrupt or replayed stream): the older span is closed as incomplete.
            self.stats.orphan_records += 1;
            let end = self.slab.slots[old as usize].st.last_time;
            self.finish_span(
                old,
                end,
                true,
                Some("another span reused this span's id (corrupted or duplicated stream)"),
            );
        }
        self.open_order.push_back(st.id);
        if self.open_order.len() > 2 * self.open.len() + 64 {
            let open = &self.open;
            self.open_order.retain(|id| open.contains(*id));
        }
    }

    fn evict_oldest_open(&mut self, why: &str) {
        while let Some(id) = self.open_order.pop_front() {
            if let Some(i) = self.open.remove(id) {
                let end = self.slab.slots[i as usize].st.last_time;
                self.stats.evicted_spans += 1;
                self.finish_span(i, end, true, Some(why));
                return;
            }
        }
    }

    /// Keeps the bytes held under the limit: hands over the oldest buffered traces first (their
    /// spans are finished), then exports the oldest open spans as incomplete.
    fn enforce_memory(&mut self) {
        let max = self.opts.limits.max_memory_bytes;
        while self.bytes_held > max {
            if let Some(t) = self.buffered_order.pop_front() {
                self.emit_trace(t);
            } else if !self.open.is_empty() {
                self.evict_oldest_open("the decoder's memory limit was reached");
            } else {
                break;
            }
        }
    }

    /// Finishes the span in slot `i` (no longer in the open table) in place and buffers it with
    /// its trace.
    fn finish_span(&mut self, i: u32, end: u64, incomplete: bool, why: Option<&str>) {
        let Some(session) = self.session.as_ref() else {
            self.slab.release(i);
            return;
        };
        let SpanSlot { span, st: s } = &mut self.slab.slots[i as usize];
        let lost = self.stats.lost_frames - s.lost_frames_at_start;
        let abandoned = self.stats.record_errors - s.errors_at_start;
        let drops = self.stats.device_drops - s.drops_at_start;
        // Warnings and late names are rare: written out of line, the usual path stays short.
        if why.is_some()
            || lost > 0
            || abandoned > 0
            || s.baggage_uncertain
            || drops > 0
            || s.items_refused > 0
            || s.strings_cut > 0
        {
            self.stats.strings_cut += s.strings_cut;
            loss_warnings(&mut span.warnings, s, why, lost, abandoned, drops);
        }
        let resolves = s.name_pending.is_some() || !s.pending.is_empty();
        if resolves {
            let names = Resolver {
                table: &self.names,
                epoch: session.epoch,
                lossy: self.stats.lost_frames
                    + self.stats.record_errors
                    + self.stats.frames_before_session
                    > 0,
                unknown: std::cell::Cell::new(0),
            };
            names.resolve_span(span, s);
            self.stats.unknown_names += names.unknown.get();
        }
        if !self.cut_names.is_empty() {
            warn_of_cut_names(span, &self.cut_names);
        }
        for log in &mut span.logs {
            log.time_unix_nanos = session.unix_nanos(log.time_unix_nanos);
        }
        let start_nanos = session.unix_nanos(s.start);
        let end = end.max(s.start);
        // Kept for the spans still open when the session closes (`descendant_ends`).
        s.last_time = end;
        span.start_unix_nanos = start_nanos;
        span.duration_nanos = session.unix_nanos(end).saturating_sub(start_nanos);
        span.incomplete = incomplete;
        self.stats.spans += 1;
        self.stats.incomplete_spans += incomplete as u64;
        self.stats.zero_length_spans += (end == s.start) as u64;
        // Remember it for late children (FollowsFrom consumers, spans whose parent finished).
        self.recent.insert(
            s.local,
            Recent {
                trace: span.trace_id,
                root: s.root,
                baggage: &span.baggage,
                baggage_uncertain: s.baggage_uncertain || lost > 0 || abandoned > 0,
            },
        );
        let trace = span.trace_id;
        // Charged as its finished form from now on (released when its trace is handed over). Its
        // open form was charged the same, item by item as it came, but for its baggage (the
        // finished form counts each item once, inherited ones too, and each baggage log's fields
        // in full: the differences are kept as they arise) and names resolved since (charged as
        // empty): only then is it measured again.
        let charge = if resolves {
            span_bytes(span)
        } else {
            let items: usize = span
                .baggage
                .iter()
                .map(|(k, v)| ITEM_OVERHEAD + k.len() + v.len())
                .sum();
            let charge =
                s.bytes.saturating_sub(s.baggage_items_charged) + s.baggage_logs_extra + items;
            debug_assert_eq!(charge, span_bytes(span), "open and finished charges differ");
            charge
        };
        self.bytes_held = self.bytes_held.saturating_sub(s.bytes) + charge;
        let entry = self.traces.entry(trace).or_default();
        // No open span of the trace left (a trace without a count has none).
        let now_closed = match entry.open {
            0 => true,
            n => {
                entry.open = n - 1;
                n == 1
            }
        };
        if now_closed {
            self.completed.push(trace);
        }
        if entry.spans.is_empty() {
            self.buffered_order.push_back(trace);
            self.buffered_traces += 1;
            if entry.spans.capacity() == 0 {
                entry.spans = self.spare.pop().unwrap_or_default();
            }
        }
        entry.bytes += charge;
        entry.spans.push(i);
        if now_closed {
            self.completed_spans += entry.spans.len();
        }
        self.buffered_count += 1;
        while self.buffered_count > self.opts.limits.max_buffered_spans {
            let Some(oldest) = self.buffered_order.pop_front() else {
                break;
            };
            self.emit_trace(oldest);
        }
    }

    /// Hands over the traces whose last open span finished (unless a new span of theirs started
    /// since).
    fn flush_completed(&mut self) {
        // One allocation for the batch (growing it as traces came moved every span it held).
        self.outgoing
            .reserve(std::mem::take(&mut self.completed_spans));
        let mut completed = std::mem::take(&mut self.completed);
        for t in completed.drain(..) {
            // Handed over and forgotten unless a span of it started since, as `emit_trace` does,
            // with one lookup rather than three (one to check, one to hand over, one to forget).
            if let Entry::Occupied(e) = self.traces.entry(t) {
                if e.get().open == 0 && !e.get().spans.is_empty() {
                    let done = e.remove();
                    self.emit_done(done);
                }
            }
        }
        self.completed = completed;
        if self.buffered_order.len() > 2 * self.buffered_traces + 64 {
            let traces = &self.traces;
            self.buffered_order
                .retain(|t| traces.get(t).is_some_and(|e| !e.spans.is_empty()));
        }
    }

    /// Hands over the trace's buffered spans; forgets the trace unless some of its spans are open.
    fn emit_trace(&mut self, trace: u128) {
        let Some(entry) = self.traces.get_mut(&trace) else {
            return;
        };
        if entry.spans.is_empty() {
            return;
        }
        if entry.open == 0 {
            if let Some(done) = self.traces.remove(&trace) {
                self.emit_done(done);
            }
            return;
        }
        self.buffered_count -= entry.spans.len();
        self.buffered_traces -= 1;
        self.bytes_held = self.bytes_held.saturating_sub(entry.bytes);
        entry.bytes = 0;
        self.outgoing.reserve(entry.spans.len());
        for i in entry.spans.drain(..) {
            self.slab.take_into(i, &mut self.outgoing);
        }
    }

    /// Hands over the buffered spans of a trace just forgotten (none of its spans open, some
    /// buffered), and keeps its emptied vector for the next traces.
    fn emit_done(&mut self, mut done: TraceState) {
        self.buffered_count -= done.spans.len();
        self.buffered_traces -= 1;
        self.bytes_held = self.bytes_held.saturating_sub(done.bytes);
        self.outgoing.reserve(done.spans.len());
        for i in done.spans.drain(..) {
            self.slab.take_into(i, &mut self.outgoing);
        }
        if self.spare.len() < MAX_SPARE && done.spans.capacity() <= SPARE_CAPACITY {
            self.spare.push(done.spans);
        }
    }
}

/// Frames lost on the link, records dropped on the device and frames abandoned at a malformed
/// record (at least one record each) so far: what a span's END may be lost to. Each loss is
/// marked ([`mark_loss`]) before it is counted.
fn losses(stats: &Stats) -> u64 {
    stats.lost_frames + stats.device_drops + stats.record_errors
}

/// The warnings of a finishing span for what it may have lost, in this order: why it is
/// incomplete, frames lost on the link, frames abandoned at a malformed record, uncertain inherited
/// baggage, records dropped on the device, items refused, strings cut.
#[cold]
#[inline(never)]
fn loss_warnings(
    warnings: &mut Vec<String>,
    s: &OpenState,
    why: Option<&str>,
    lost: u64,
    abandoned: u64,
    drops: u64,
) {
    if let Some(why) = why {
        warnings.push(format!("incomplete: {why}"));
    }
    // An incomplete span's END may be one of the records lost: said so, beside the reason above.
    let end_too = if why.is_some() {
        ", its END perhaps among them"
    } else {
        ""
    };
    if lost > 0 {
        warnings.push(format!(
            "{} lost on the link while this span was open: some of its records may be missing{end_too}",
            count(lost, "frame was", "frames were")
        ));
    }
    if abandoned > 0 {
        warnings.push(format!("records were lost while this span was open (the rest of {}, abandoned at a malformed record): some of its records may be missing", count(abandoned, "frame", "frames")));
    }
    if s.baggage_uncertain {
        warnings.push(
            "inherited baggage may be incomplete: an ancestor span's start is missing, or records were lost on the link or abandoned after a malformed one while an ancestor span was open"
                .to_string(),
        );
    }
    if drops > 0 {
        // A span whose END arrived counts on it the tags and logs a full ring dropped (a warning
        // of its own says how many): the drops meanwhile were other spans' records, or one of
        // its own too large for a frame.
        let which = if why.is_none() {
            "the span counts its own tags and logs a full ring dropped, so these were other \
             spans' records (a child of this span may be missing) or a record of its own too \
             large for a frame"
        } else {
            "some of its records may be missing"
        };
        warnings.push(format!(
            "the device reported {} dropped (ring buffer full, records of a span whose start a full ring dropped, or a record larger than the drain's frame) while this span was open: {which}{end_too}",
            count(drops, "record", "records")
        ));
    }
    if s.items_refused > 0 {
        let n = s.items_refused;
        warnings.push(format!(
            "{} beyond the decoder's per-span limits {} ignored",
            count(
                n,
                "tag, log, reference or baggage item",
                "tags/logs/references/baggage items"
            ),
            plural(n, "was", "were")
        ));
    }
    if s.strings_cut > 0 {
        warnings.push(format!(
            "{} cut to the decoder's string limit",
            count(s.strings_cut, "string was", "strings were")
        ));
    }
}

/// Most texts of cut names remembered for warnings (a device has few static strings; a hostile
/// stream cannot make the check of each span's texts against them long).
const MAX_CUT_NAMES: usize = 64;

/// Adds a warning to `span` for each of `cut` among its name, tag keys and values and log keys
/// and values. The texts come from the name table, which holds the very `SharedStr`s in `cut`:
/// each is compared by identity (constant time), and only if it ends in `…`.
fn warn_of_cut_names(span: &mut Span, cut: &[SharedStr]) {
    let is_cut = |t: &SharedStr| t.as_str().ends_with('…') && cut.iter().any(|c| c.is_same(t));
    let fields = span
        .tags
        .iter()
        .chain(span.logs.iter().flat_map(|l| l.fields.iter()));
    let mut found: Vec<&SharedStr> = Vec::new();
    for t in std::iter::once(&span.operation).chain(fields.flat_map(|f| {
        let value = match &f.value {
            Value::Str(v) => Some(v),
            _ => None,
        };
        std::iter::once(&f.key).chain(value)
    })) {
        if is_cut(t) && !found.iter().any(|f| f.is_same(t)) {
            found.push(t);
        }
    }
    let warnings: Vec<String> = found
        .iter()
        .map(|t| {
            format!("the device cut the static string \"{}\" to fit its frame size (a larger drain frame, Drain<F>, keeps it whole)", t.as_str())
        })
        .collect();
    span.warnings.extend(warnings);
}

/// The session record's time is more than a second before the latest device time heard, or before
/// the session's first session record's: time went back (a device reset, or a misdated record:
/// [`Assembler::session_record`]).
/// A session record of the running session's ids whose times are in other units (another clock
/// rate or time shift: a new drain set up otherwise, or a restart): the times heard cannot go
/// on from it, so it starts a new session.
fn other_units(h: &Hello<'_>, s: &Session) -> bool {
    h.ticks_per_second.max(1) != s.hello.ticks_per_second || h.time_shift != s.hello.time_shift
}

/// The session record `h` of the running session's ids is behind the times heard: by more than
/// a second (a running boot's record is never behind; a misdated record before it can put it a
/// little behind), or, the first of a new drain in the running boot (`new_drain`), by any amount
/// (its clock's extension started over).
fn time_went_back(h: &Hello<'_>, s: &Session, new_drain: bool) -> bool {
    let margin = if new_drain {
        0
    } else {
        s.hello.ticks_per_second as u64
    };
    h.now_ticks.saturating_add(margin) < s.last_time.max(s.hello.now_ticks)
}

/// Remembers a loss of the session: the losses counted before it and the latest device time
/// heard before it (see [`Assembler::incomplete_end`]).
fn mark_loss(marks: &mut VecDeque<(u64, u64)>, losses: u64, time: u64) {
    if marks.len() == MAX_LOSS_MARKS {
        marks.pop_front();
    }
    marks.push_back((losses, time));
}

/// The device id of a `Session` that was not given one.
const DEFAULT_DEVICE_ID: u64 = microspan::Session::new("").device_id;

/// Approximate bytes a finished span holds: what its open form was charged, record by record,
/// when it has no baggage and no name was resolved when it finished (`finish_span` relies on it).
/// Also what the file exporters charge the spans they hold.
pub(crate) fn span_bytes(s: &Span) -> usize {
    SPAN_OVERHEAD
        + s.operation.len()
        + 16
        + s.tags
            .iter()
            .map(|t| ITEM_OVERHEAD + 16 + t.key.len() + value_bytes(&t.value))
            .sum::<usize>()
        + s.logs
            .iter()
            .map(|l| {
                ITEM_OVERHEAD
                    + l.fields
                        .iter()
                        .map(|f| ITEM_OVERHEAD + 16 + f.key.len() + value_bytes(&f.value))
                        .sum::<usize>()
            })
            .sum::<usize>()
        + s.baggage
            .iter()
            .map(|(k, v)| ITEM_OVERHEAD + k.len() + v.len())
            .sum::<usize>()
        + s.references.len() * ITEM_OVERHEAD
}

fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Str(s) => 16 + s.len(),
        _ => 0,
    }
}

fn val_bytes(v: &Val) -> usize {
    match v {
        Val::Str(t) => text_bytes(t),
        _ => 0,
    }
}

/// `s` cut to at most `max` bytes at a character boundary; `true` when something was cut.
fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Parts per billion of 1: a device clock's rate as the host's clock measures it.
const PPB: i128 = 1_000_000_000;

/// The largest difference between a device clock's rate and the host's that
/// [`Assembler::measure_rate`] corrects: 5 % (an RC oscillator is off by up to a few percent, a
/// crystal by parts per million).
const MAX_RATE_ERROR_PPB: i128 = 50_000_000;

/// The least device time over which [`Assembler::measure_rate`] measures a rate: a minute, so
/// that the link's delay (tens of milliseconds, varying) and a decoder that falls behind its
/// input for a moment (up to a second) move it by well under 2 % at first, and less as the
/// session goes on.
const MIN_RATE_SPAN_NANOS: i128 = 60_000_000_000;

/// The latest Unix time the decoder dates anything at (2100-01-01T00:00:00Z, nanoseconds): times
/// are kept in u64 nanoseconds, and device times added to an anchor up to it stay exact.
pub const LATEST_UNIX_NANOS: u64 = 4_102_444_800_000_000_000;

/// The Unix time (nanoseconds) the device's wall-clock reading `w` gives its tick `now`, when it
/// falls within 1970 ..= [`LATEST_UNIX_NANOS`]; `None` for a reading that would date the device
/// outside it (a clock never set, a corrupted record).
fn wall_anchor(w: &WallClock, tps: u32, now: u64) -> Option<i128> {
    let at = w.unix_nanos as i128 - ticks_to_nanos(w.ticks, tps) + ticks_to_nanos(now, tps);
    (w.unix_nanos <= LATEST_UNIX_NANOS && (0..=LATEST_UNIX_NANOS as i128).contains(&at))
        .then_some(at)
}

fn ticks_to_nanos(ticks: u64, tps: u32) -> i128 {
    TickClock::new(tps).nanos(ticks)
}

/// Device ticks to nanoseconds since tick 0 at one clock rate: exactly `ticks × 10⁹ / rate`
/// rounded down, without 128-bit division (it is computed for every span and log).
#[derive(Debug, Clone, Copy)]
struct TickClock {
    /// Ticks per second (at least 1).
    tps: u64,
    /// Nanoseconds per tick when the rate divides 10⁹ exactly (1 MHz, 32 768 Hz does not), else 0.
    ns_per_tick: u64,
}

impl TickClock {
    fn new(tps: u32) -> Self {
        let tps = u64::from(tps.max(1));
        Self {
            tps,
            ns_per_tick: if 1_000_000_000 % tps == 0 {
                1_000_000_000 / tps
            } else {
                0
            },
        }
    }

    fn nanos(&self, ticks: u64) -> i128 {
        if self.ns_per_tick != 0 {
            return i128::from(ticks) * i128::from(self.ns_per_tick);
        }
        // Whole seconds, then the rest: rest < tps < 2^32, so rest × 10⁹ < 2^62 fits a u64.
        let (secs, rest) = (ticks / self.tps, ticks % self.tps);
        i128::from(secs) * 1_000_000_000 + i128::from(rest * 1_000_000_000 / self.tps)
    }
}

fn ref_kind(k: WireRefKind) -> RefKind {
    match k {
        WireRefKind::ChildOf => RefKind::ChildOf,
        WireRefKind::FollowsFrom => RefKind::FollowsFrom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span handed over by `Slab::take_into` (a raw copy, then the slot's owning fields
    /// overwritten) keeps everything it owned, its slot is left owning nothing and is reused, and whatever the spans held is freed once. `scripts/test-all.sh` runs this under
    /// Miri, where a double free, a use after free or a leak fails it.
    #[test]
    fn take_into_moves_a_span_out_once_and_leaves_its_slot_empty() {
        let shared = SharedStr::from("a name longer than an inline string, so it is shared");
        let kv = |k: i64| KeyValue {
            key: shared.clone(),
            value: Value::Str(SharedStr::from(format!(
                "owned value {k} that does not fit inline"
            ))),
        };
        let mut slab = Slab::new();
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for round in 0..4u64 {
            let i = slab.alloc();
            slots.push(i);
            let s = &mut slab.slots[i as usize].span;
            s.span_id = round + 1;
            s.operation = shared.clone();
            s.tags = (0..3).map(kv).collect();
            s.logs = (0..2)
                .map(|t| Log {
                    time_unix_nanos: t,
                    fields: (0..3).map(kv).collect(),
                })
                .collect();
            s.references = (0..2)
                .map(|r| Reference {
                    kind: RefKind::FollowsFrom,
                    trace_id: 7,
                    span_id: r,
                })
                .collect();
            s.baggage = Baggage::one(shared.clone(), "v".into());
            s.baggage.make_mut().push(("k2".into(), shared.clone()));
            s.warnings = vec![format!("warning {round}")];
            slab.take_into(i, &mut out);
            // What owned memory is empty and holds none (the plain fields are left as they were).
            let left = &slab.slots[i as usize].span;
            assert!(left.operation.as_str().is_empty(), "{left:?}");
            assert!(left.tags.is_empty() && !left.tags.spilled(), "{left:?}");
            assert!(left.logs.is_empty() && !left.logs.spilled(), "{left:?}");
            assert!(left.references.is_empty() && !left.references.spilled());
            assert!(left.baggage.ptr_eq(&Baggage::new()), "{left:?}");
            assert!(left.warnings.capacity() == 0, "{left:?}");
        }
        // Each slot was freed and handed out again.
        assert!(slots.iter().all(|&i| i == slots[0]), "{slots:?}");
        assert_eq!(out.len(), 4);
        for (round, s) in out.iter().enumerate() {
            assert_eq!(s.span_id, round as u64 + 1);
            assert_eq!(s.operation.as_str(), shared.as_str());
            assert_eq!(s.tags, (0..3).map(kv).collect::<KeyValues>());
            assert_eq!(s.logs.len(), 2);
            assert_eq!(s.logs[1].fields[2], kv(2));
            assert_eq!(s.references.len(), 2);
            assert_eq!(s.baggage.len(), 2);
            assert_eq!(s.warnings, [format!("warning {round}")]);
        }
        drop(slab);
        drop(out);
    }

    #[test]
    fn name_table_counts_dense_and_sparse_ids() {
        let mut t = NameTable::new(IdHash::new());
        for (id, name) in [
            (0, "a"),
            (7, "b"),
            (4095, "c"),
            (4096, "d"),
            (u32::MAX, "e"),
        ] {
            assert!(!t.contains(id));
            t.insert(id, name.into());
            assert_eq!(t.get(id).map(SharedStr::as_str), Some(name));
        }
        t.insert(7, "b2".into());
        t.insert(u32::MAX, "e2".into());
        assert_eq!(t.len(), 5);
        assert_eq!(t.get(7).map(SharedStr::as_str), Some("b2"));
        assert!(t.get(6).is_none() && t.get(5000).is_none());
        t.clear();
        assert_eq!(t.len(), 0);
        assert!(t.get(0).is_none() && t.get(u32::MAX).is_none());
    }

    #[test]
    fn recent_cache_finds_recent_spans_and_forgets_the_oldest() {
        let recent = |root| Recent {
            trace: 1,
            root,
            baggage: NO_BAGGAGE,
            baggage_uncertain: false,
        };
        let mut c = RecentCache::new(1024);
        // Neighbouring ids do not collide in the index.
        for id in 1..=8 {
            c.insert(id, recent(id));
        }
        assert!((1..=8).all(|id| c.get(id).is_some_and(|r| r.root == id)));
        // The same id again: the newer one is found.
        c.insert(3, recent(30));
        assert_eq!(c.get(3).map(|r| r.root), Some(30));
        assert!(c.get(99).is_none());
        // Once the ring wrapped, the oldest is gone; an entry found is always the right one.
        for id in 100..100 + 1024 {
            c.insert(id, recent(id));
        }
        assert!(c.get(1).is_none());
        assert!((0..2000).all(|id| c.get(id).is_none_or(|r| r.root == id)));
        assert!(c.get(100 + 1023).is_some());
        c.clear();
        assert!((0..2000).all(|id| c.get(id).is_none()));
    }

    #[test]
    fn recent_cache_keeps_a_baggage_once_per_run_until_its_entries_are_overwritten() {
        let a: Baggage = vec![("user", "alice")].into();
        let b: Baggage = vec![("user", "bob")].into();
        let trace = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        let recent = |root, baggage| Recent {
            trace,
            root,
            baggage,
            baggage_uncertain: root % 2 == 0,
        };
        let mut c = RecentCache::new(1024);
        let runs = [&a, &a, NO_BAGGAGE, &a, &b, &b, &a];
        for (id, bag) in (1..).zip(runs) {
            c.insert(id, recent(id, bag));
        }
        // a (spans 1, 2, 4: span 3 has none), b (5, 6), a again (7).
        assert_eq!(
            c.bags.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        for (id, bag) in (1..).zip(runs) {
            let r = c.get(id).expect("a recent span");
            assert!(r.baggage.ptr_eq(bag), "span {id}");
            assert_eq!(
                (r.trace, r.root, r.baggage_uncertain),
                (trace, id, id % 2 == 0)
            );
        }
        // Overwritten oldest first: each baggage is released with its last entry.
        let counts = |c: &RecentCache| c.bags.iter().map(|(_, n)| *n).collect::<Vec<_>>();
        // Spans without baggage, whose index slots are not those of the spans checked.
        let slot =
            |id: u32| ((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & 1023;
        let checked: Vec<usize> = (1..=7).chain([2000, 2001]).map(slot).collect();
        let mut others = (100..).filter(|&id| !checked.contains(&slot(id)));
        // The ring full, spans 1 to 3 overwritten: span 4 holds the first run of a.
        for id in others.by_ref().take(1024 - runs.len() + 3) {
            c.insert(id, recent(id, NO_BAGGAGE));
        }
        assert_eq!(counts(&c), [1, 2, 1]);
        assert!(c.get(3).is_none() && c.get(4).unwrap().baggage.ptr_eq(&a));
        // Span 4 overwritten: that run released; b kept anew (a run of a is between).
        c.insert(2000, recent(2000, &b));
        assert_eq!(counts(&c), [2, 1, 1]);
        // Span 5 overwritten; b counted again, with the one before.
        c.insert(2001, recent(2001, &b));
        assert_eq!(counts(&c), [1, 1, 2]);
        assert!(c.get(5).is_none() && c.get(6).unwrap().baggage.ptr_eq(&b));
        assert!(c.get(2001).unwrap().baggage.ptr_eq(&b));
        for id in others.take(1024) {
            c.insert(id, recent(id, NO_BAGGAGE));
        }
        assert!(c.bags.is_empty());
        c.insert(1, recent(1, &a));
        c.clear();
        assert!(c.bags.is_empty() && c.get(1).is_none());
    }

    #[test]
    fn recent_cache_grows_to_its_capacity_and_finds_what_a_full_one_would() {
        let recent = |root| Recent {
            trace: 1,
            root,
            baggage: NO_BAGGAGE,
            baggage_uncertain: false,
        };
        let cap = 4096;
        let mut c = RecentCache::new(cap);
        assert!(c.ring.capacity() == 0 && c.index.len() == RECENT_INITIAL);
        // Scattered ids, so that some share a slot.
        let id = |n: u32| n.wrapping_mul(2_654_435_761) >> 7;
        let full_slot = |local: u32| {
            ((local as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (cap - 1)
        };
        let mut inserted = 0usize;
        for end in [1000, 1024, 1025, 3000, 4096, 5000, 9000, 12_288] {
            while inserted < end {
                c.insert(id(inserted as u32), recent(inserted as u32));
                inserted += 1;
            }
            assert!(c.ring.len() <= cap && c.index.len() <= cap);
            // Among the last `cap` spans, one is found unless a later one took its slot (in a
            // full-size index, once the index is full size); a span found is the right one.
            for n in end.saturating_sub(cap)..end {
                let slot = full_slot(id(n as u32));
                let taken = (n + 1..end).any(|m| full_slot(id(m as u32)) == slot);
                let found = c.get(id(n as u32)).map(|r| r.root);
                if c.index.len() == cap {
                    assert_eq!(found, (!taken).then_some(n as u32), "span {n} of {end}");
                } else {
                    assert!(found.is_none_or(|r| r == n as u32), "span {n} of {end}");
                }
            }
            // Older spans are gone.
            assert!((0..end.saturating_sub(cap)).all(|n| c
                .get(id(n as u32))
                .is_none_or(|r| r.root == n as u32 && n >= end - cap)));
        }
        c.clear();
        assert!(c.index.len() == RECENT_INITIAL && (0..20_000).all(|n| c.get(id(n)).is_none()));
    }

    #[test]
    fn open_table_agrees_with_a_map() {
        // splitmix64: a fixed sequence, no dependency.
        let mut state = 0x5eed_u64;
        let mut rand = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut t = OpenTable::new(IdHash::new());
        let mut model: HashMap<u32, u32> = HashMap::new();
        for op in 0..200_000u32 {
            let r = rand();
            // Ids that share direct slots: a window sliding like a device's sequence, a few
            // multiples of the slot count, and the extremes.
            let id = match r % 8 {
                0 => (r >> 8) as u32 % 8 * OPEN_DIRECT as u32,
                1 => u32::MAX - (r >> 8) as u32 % 3,
                _ => op / 16 + (r >> 8) as u32 % 9000,
            };
            let slot = match (r >> 40) % 64 {
                0 => FREE,
                _ => (r >> 40) as u32,
            };
            match (r >> 4) % 5 {
                0 | 1 => assert_eq!(t.insert(id, slot), model.insert(id, slot), "insert {id}"),
                2 | 3 => assert_eq!(t.remove(id), model.remove(&id), "remove {id}"),
                _ => {
                    assert_eq!(t.get(id), model.get(&id).copied(), "get {id}");
                    assert_eq!(t.contains(id), model.contains_key(&id));
                }
            }
            assert_eq!(t.len(), model.len());
            if op % 50_000 == 0 {
                t.shrink_to_fit();
            }
        }
        assert!(
            t.direct_len > 100 && !t.overflow.is_empty(),
            "both parts were used"
        );
        for (&id, &slot) in &model {
            assert_eq!(t.get(id), Some(slot));
        }
        for id in model.keys().copied().collect::<Vec<_>>() {
            assert_eq!(t.remove(id), model.remove(&id));
        }
        assert!(t.is_empty());
        t.shrink_to_fit();
        assert!(t.direct.is_empty() && t.get(0).is_none());
    }

    #[test]
    fn tick_clock_is_exact() {
        let rates = [
            0,
            1,
            3,
            1000,
            32_768,
            1_000_000,
            48_000_000,
            7_372_800,
            u32::MAX,
        ];
        let ticks = [
            0,
            1,
            999,
            32_767,
            1 << 33,
            123_456_789_012,
            u64::MAX / 3,
            u64::MAX,
        ];
        for tps in rates {
            let clock = TickClock::new(tps);
            for t in ticks {
                let exact = t as i128 * 1_000_000_000 / tps.max(1) as i128;
                assert_eq!(clock.nanos(t), exact, "{t} ticks at {tps} Hz");
            }
        }
    }
}
