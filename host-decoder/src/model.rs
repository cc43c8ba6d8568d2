//! The decoder's span model: what span assembly produces and every exporter consumes.
//!
//! It is the OpenTracing model of `MISSION.md` with host types (owned strings, wall-clock
//! nanoseconds). Exporters only read it; nothing here knows about the wire format.

/// A typed tag or log-field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer (exported as a signed 64-bit value where the target format has no
    /// unsigned type; values above `i64::MAX` become strings there).
    U64(u64),
    /// A floating point number.
    F64(f64),
    /// A string.
    Str(String),
}

/// A key/value pair (a tag, a log field, a process tag).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The key, e.g. `http.status_code`.
    pub key: String,
    /// The value.
    pub value: Value,
}

impl KeyValue {
    /// Builds a pair.
    pub fn new(key: impl Into<String>, value: Value) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// The kind of a reference between spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// The parent waits for the child (Jaeger `CHILD_OF`).
    ChildOf,
    /// The parent does not wait for the child (Jaeger `FOLLOWS_FROM`, an OTLP link).
    FollowsFrom,
}

/// A reference from one span to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// ChildOf or FollowsFrom.
    pub kind: RefKind,
    /// The referenced span's trace id.
    pub trace_id: u128,
    /// The referenced span's id.
    pub span_id: u64,
}

/// A timestamped log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// The fields, in the order the device logged them.
    pub fields: Vec<KeyValue>,
}

/// A rebuilt span, ready for export.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 128-bit trace id (never 0).
    pub trace_id: u128,
    /// 64-bit span id (never 0).
    pub span_id: u64,
    /// The operation name.
    pub operation: String,
    /// References. When the span has a parent, `references[0]` is the `ChildOf` reference to it
    /// (Jaeger's `parentSpanId` rule); `FollowsFrom` references and further `ChildOf` ones follow.
    pub references: Vec<Reference>,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// Duration in nanoseconds (at the device clock's resolution). For an incomplete span, the time
    /// from its start to the last event seen from its device.
    pub duration_nanos: u64,
    /// Tags, in recording order.
    pub tags: Vec<KeyValue>,
    /// Logs, in recording order.
    pub logs: Vec<Log>,
    /// Baggage items visible on this span (its own and inherited), as Jaeger clients show them.
    pub baggage: Vec<(String, String)>,
    /// Sampling flags (bit 0 sampled, bit 1 debug), as in Jaeger's `flags`.
    pub flags: u8,
    /// Jaeger `warnings`: capacity truncations, records lost to a gap, never finished, …
    pub warnings: Vec<String>,
    /// `true` when the span never finished (device reset, hang, crash, end of input, lost record).
    pub incomplete: bool,
}

impl Span {
    /// The parent span id: the first `ChildOf` reference, if any.
    pub fn parent_span_id(&self) -> Option<u64> {
        self.references
            .iter()
            .find(|r| r.kind == RefKind::ChildOf)
            .map(|r| r.span_id)
    }

    /// `true` when the span carries the tag `error=true`.
    pub fn is_error(&self) -> bool {
        self.tags
            .iter()
            .any(|t| t.key == "error" && t.value == Value::Bool(true))
    }

    /// The value of a tag, if present.
    pub fn tag(&self, key: &str) -> Option<&Value> {
        self.tags.iter().find(|t| t.key == key).map(|t| &t.value)
    }
}

/// The process (Jaeger) / resource (OTLP) a span came from: one device session.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// The service name the device announced.
    pub service_name: String,
    /// Device id, firmware and wire version, microspan version, decoder host name, …
    pub tags: Vec<KeyValue>,
}

/// Spans of one process, the unit every exporter takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Where the spans came from.
    pub process: Process,
    /// The spans, in the order they finished (or were closed as incomplete).
    pub spans: Vec<Span>,
}
