//! OTLP protobuf bytes written straight from the model.
//!
//! The same bytes as building the request with [`super::to_otlp_request`] and encoding it with
//! prost (fields in tag order, proto3 defaults left out, `oneof` values always written), without
//! the intermediate messages: building them cost an allocation per id, name, key and value of
//! every span, and more time than decoding the spans. The tests compare both encodings byte for
//! byte.
//!
//! Each nested message is written once: its body first, then its length in front of it (room is
//! left for the length it most likely takes, and the body moved in the rare case it takes
//! another), rather than measuring every message before writing it.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use super::{portable, Portable, INCOMPLETE_TAG, WARNINGS_TAG};
use crate::model::{Batch, KeyValue, Log, Process, RefKind, Span, Value};

/// The whole batch as one OTLP `ExportTraceServiceRequest` (one resource, one scope), encoded.
///
/// Byte for byte what `to_otlp_request(batch).encode_to_vec()` gives, several times faster: this
/// is what the OTLP/HTTP exporter sends.
pub fn encode_otlp_request(batch: &Batch) -> Vec<u8> {
    encode_request(&batch.process, &batch.spans)
}

/// One request with the process and these spans (the OTLP/HTTP exporter splits large batches).
///
/// In one pass: each span is written into a reused buffer with its length filled in afterwards
/// (see [`nested`]), then the request is put together at its exact size around those bytes.
/// Measuring every nested message before writing it walked each span twice.
pub(crate) fn encode_request(process: &Arc<Process>, spans: &[Span]) -> Vec<u8> {
    let mut body = SCRATCH.take();
    body.clear();
    // The length of a span usually takes as many bytes as the last one's of the same shape
    // (counts of tags and logs, up to 3): a wrong guess moves the span's bytes.
    let mut guesses = [2u8; 16];
    for span in spans {
        let shape = span.tags.len().min(3) << 2 | span.logs.len().min(3);
        // ScopeSpans.spans = 2
        let len = nested(&mut body, 2, guesses[shape].into(), |o| write_span(o, span));
        guesses[shape] = varint_len(len as u64) as u8;
    }
    let scope_len = scope_len();
    let scope_spans_len = field_len(scope_len) + body.len();
    let (process, resource) = resource_bytes(process);
    let resource_len = resource.len();
    let resource_spans_len = field_len(resource_len) + field_len(scope_spans_len);
    let mut out = Vec::with_capacity(field_len(resource_spans_len));
    let o = &mut out;
    // ExportTraceServiceRequest.resource_spans = 1
    header(o, 1, resource_spans_len);
    // ResourceSpans.resource = 1
    header(o, 1, resource_len);
    o.extend_from_slice(&resource);
    // ResourceSpans.scope_spans = 2
    header(o, 2, scope_spans_len);
    // ScopeSpans.scope = 1
    header(o, 1, scope_len);
    write_scope(o);
    o.extend_from_slice(&body);
    if body.capacity() <= MAX_SCRATCH {
        SCRATCH.set(body);
    }
    RESOURCE.set(Some((process, resource)));
    out
}

/// The process's `Resource` body: the last one encoded on this thread if it is the same process
/// (every batch of a device session shares it), else encoded now. Returned with the process, to
/// be put back in [`RESOURCE`].
fn resource_bytes(process: &Arc<Process>) -> (Arc<Process>, Vec<u8>) {
    match RESOURCE.take() {
        Some((last, bytes)) if Arc::ptr_eq(&last, process) => (last, bytes),
        _ => {
            let mut bytes = Vec::new();
            write_resource(&mut bytes, process);
            (process.clone(), bytes)
        }
    }
}

/// Largest span buffer kept for the next request (a larger one, from a huge batch, is freed).
const MAX_SCRATCH: usize = 4 << 20;

thread_local! {
    /// The span buffer of [`encode_request`], kept between requests (taken while in use).
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };

    /// The last process encoded and its `Resource` body. Its identity tells the bytes are still
    /// right: a `Process` does not change behind its `Arc`, and the clone held here keeps its
    /// allocation from being reused by another.
    static RESOURCE: Cell<Option<(Arc<Process>, Vec<u8>)>> = const { Cell::new(None) };
}

// ---- protobuf primitives ----

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Bytes of `v` as a varint (prost's formula).
#[inline(always)]
fn varint_len(v: u64) -> usize {
    ((((v | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
}

#[inline(always)]
fn varint(o: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        o.push(v as u8 | 0x80);
        v >>= 7;
    }
    o.push(v as u8);
}

#[inline(always)]
fn key(o: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(o, u64::from(field << 3 | wire_type));
}

/// Bytes of a length-delimited field of `len` bytes (field numbers below 16: a one-byte key).
#[inline(always)]
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The key and length of a length-delimited field.
#[inline(always)]
fn header(o: &mut Vec<u8>, field: u32, len: usize) {
    key(o, field, LEN);
    varint(o, len as u64);
}

/// A length-delimited field written in one pass: room for a `guess`-byte length (1 to 10), the
/// body written by `body`, then the length put in front of it (the body moved when its length
/// takes another number of bytes than guessed). Returns the body's length.
#[inline(always)]
fn nested(o: &mut Vec<u8>, field: u32, guess: usize, body: impl FnOnce(&mut Vec<u8>)) -> usize {
    key(o, field, LEN);
    let at = o.len();
    o.extend_from_slice(&[0; 10][..guess]);
    body(o);
    let start = at + guess;
    let len = o.len() - start;
    let need = varint_len(len as u64);
    if need != guess {
        moved(o, start, at + need);
    }
    put_varint(&mut o[at..at + need], len as u64);
    len
}

/// Moves the bytes of `o` from `from` on to start at `to` (the length guessed wrong; rare).
#[cold]
fn moved(o: &mut Vec<u8>, from: usize, to: usize) {
    let end = o.len();
    if to > from {
        o.resize(end + (to - from), 0);
    }
    o.copy_within(from..end, to);
    o.truncate(to + (end - from));
}

/// `v` as a varint of exactly `buf.len()` bytes (its [`varint_len`]).
#[inline(always)]
fn put_varint(buf: &mut [u8], mut v: u64) {
    let (last, rest) = buf.split_last_mut().expect("a varint has a byte");
    for b in rest {
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    *last = v as u8;
}

#[inline(always)]
fn bytes_field(o: &mut Vec<u8>, field: u32, b: &[u8]) {
    header(o, field, b.len());
    o.extend_from_slice(b);
}

/// A proto3 string field: left out when empty.
#[inline(always)]
fn str_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(s.len())
    }
}

#[inline(always)]
fn str_field(o: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes_field(o, field, s.as_bytes());
    }
}

/// A proto3 `fixed64` field: left out when 0.
fn fixed64_field(o: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(o, field, FIXED64);
        o.extend_from_slice(&v.to_le_bytes());
    }
}

// ---- AnyValue and KeyValue ----

/// An attribute value as the OTLP mapping writes it.
enum Any<'a> {
    One(Portable<'a>),
    /// A string array (the warnings).
    Strings(&'a [String]),
}

/// `AnyValue` body bytes.
fn any_len(v: &Any<'_>) -> usize {
    match v {
        // The oneof is always written, default or not.
        Any::One(Portable::Bool(_)) => 2,
        Any::One(Portable::I64(i)) => 1 + varint_len(*i as u64),
        Any::One(Portable::F64(_)) => 9,
        Any::One(Portable::Str(s)) => field_len(s.len()),
        Any::Strings(items) => field_len(array_len(items)),
    }
}

/// `ArrayValue` body bytes: one `AnyValue{string_value}` per item.
fn array_len(items: &[String]) -> usize {
    items.iter().map(|s| field_len(field_len(s.len()))).sum()
}

fn write_any(o: &mut Vec<u8>, v: &Any<'_>) {
    match v {
        Any::One(Portable::Str(s)) => bytes_field(o, 1, s.as_bytes()),
        Any::One(Portable::Bool(b)) => {
            key(o, 2, VARINT);
            o.push(*b as u8);
        }
        Any::One(Portable::I64(i)) => {
            key(o, 3, VARINT);
            varint(o, *i as u64);
        }
        Any::One(Portable::F64(f)) => {
            key(o, 4, FIXED64);
            o.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Any::Strings(items) => {
            header(o, 5, array_len(items));
            for s in items.iter() {
                // ArrayValue.values = 1, each an AnyValue{string_value = 1}.
                header(o, 1, field_len(s.len()));
                bytes_field(o, 1, s.as_bytes());
            }
        }
    }
}

/// `KeyValue` body bytes (the value is always present).
fn kv_len(k: &str, v: &Any<'_>) -> usize {
    str_len(k) + field_len(any_len(v))
}

/// A `KeyValue` as field `field` of its parent.
fn write_kv(o: &mut Vec<u8>, field: u32, k: &str, v: &Any<'_>) {
    let value_len = any_len(v);
    header(o, field, str_len(k) + field_len(value_len));
    str_field(o, 1, k);
    header(o, 2, value_len);
    write_any(o, v);
}

/// A tag as a `KeyValue`, field `field` of its parent: strings and numbers that keep their type
/// written straight, the others (unsigned beyond `i64`, non-finite floats: strings) through
/// [`portable`].
#[inline]
fn write_tag(o: &mut Vec<u8>, field: u32, kv: &KeyValue) {
    // A scalar `AnyValue` body: its key and value, at most 1 + 10 bytes.
    let mut any = [0u8; 11];
    let n = match kv.value {
        Value::Str(ref s) => return write_str_kv(o, field, &kv.key, s),
        Value::Bool(b) => {
            any[0] = (2 << 3 | VARINT) as u8;
            any[1] = b as u8;
            2
        }
        Value::I64(i) => int_any(&mut any, i),
        Value::U64(u) if i64::try_from(u).is_ok() => int_any(&mut any, u as i64),
        Value::F64(f) if f.is_finite() => {
            any[0] = (4 << 3 | FIXED64) as u8;
            any[1..9].copy_from_slice(&f.to_bits().to_le_bytes());
            9
        }
        _ => return write_kv(o, field, &kv.key, &Any::One(portable(&kv.value))),
    };
    header(o, field, str_len(&kv.key) + 2 + n);
    str_field(o, 1, &kv.key);
    // KeyValue.value = 2
    header(o, 2, n);
    o.extend_from_slice(&any[..n]);
}

/// `AnyValue{int_value = 3}` into `any`; returns its length.
#[inline]
fn int_any(any: &mut [u8; 11], i: i64) -> usize {
    any[0] = (3 << 3 | VARINT) as u8;
    let n = varint_len(i as u64);
    put_varint(&mut any[1..1 + n], i as u64);
    1 + n
}

/// A `KeyValue` with a string value, as field `field` of its parent.
#[inline]
fn write_str_kv(o: &mut Vec<u8>, field: u32, k: &str, v: &str) {
    // AnyValue.string_value = 1
    let any = field_len(v.len());
    header(o, field, str_len(k) + field_len(any));
    str_field(o, 1, k);
    header(o, 2, any);
    bytes_field(o, 1, v.as_bytes());
}

// ---- Resource and scope ----

fn service_name(process: &Process) -> Any<'_> {
    Any::One(Portable::Str(Cow::Borrowed(process.service_name.as_str())))
}

/// The process tags that become resource attributes after `service.name`.
fn resource_tags(process: &Process) -> impl Iterator<Item = &KeyValue> {
    process.tags.iter().filter(|t| t.key != "service.name")
}

fn write_resource(o: &mut Vec<u8>, process: &Process) {
    // Resource.attributes = 1
    write_kv(o, 1, "service.name", &service_name(process));
    for t in resource_tags(process) {
        write_tag(o, 1, t);
    }
}

const SCOPE_NAME: &str = "microspan";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

fn scope_len() -> usize {
    str_len(SCOPE_NAME) + str_len(SCOPE_VERSION)
}

fn write_scope(o: &mut Vec<u8>) {
    str_field(o, 1, SCOPE_NAME);
    str_field(o, 2, SCOPE_VERSION);
}

// ---- Span ----

/// `Span.kind` from a `span.kind` tag, if it names one.
fn span_kind(v: &Value) -> Option<i32> {
    match v {
        // SpanKind: INTERNAL = 1, SERVER = 2, CLIENT = 3, PRODUCER = 4, CONSUMER = 5.
        Value::Str(s) => match s.as_str() {
            "server" => Some(2),
            "client" => Some(3),
            "producer" => Some(4),
            "consumer" => Some(5),
            "internal" => Some(1),
            _ => None,
        },
        _ => None,
    }
}

/// The span's `SpanKind` from its last `span.kind` tag that names one (0, unspecified, if none).
fn kind(span: &Span) -> i32 {
    span.tags
        .iter()
        .rev()
        .filter(|t| t.key == "span.kind")
        .find_map(|t| span_kind(&t.value))
        .unwrap_or(0)
}

/// A tag that became the span kind (it is not an attribute).
fn is_kind_tag(t: &KeyValue) -> bool {
    t.key == "span.kind" && span_kind(&t.value).is_some()
}

const INCOMPLETE: Any<'static> = Any::One(Portable::Bool(true));

/// The attributes after the tags: the warnings (a string array) and the incomplete mark.
fn write_extra_attributes(o: &mut Vec<u8>, span: &Span) {
    if !span.warnings.is_empty() {
        write_kv(o, 9, WARNINGS_TAG, &Any::Strings(&span.warnings));
    }
    if span.incomplete {
        write_kv(o, 9, INCOMPLETE_TAG, &INCOMPLETE);
    }
}

/// An event's name: its `event` field as text, else `log`.
fn event_name(log: &Log) -> Cow<'_, str> {
    match log
        .fields
        .iter()
        .find(|f| f.key == "event")
        .map(|f| &f.value)
    {
        None => Cow::Borrowed("log"),
        Some(Value::Str(s)) => Cow::Borrowed(s),
        Some(Value::Bool(b)) => Cow::Owned(b.to_string()),
        Some(Value::I64(i)) => Cow::Owned(i.to_string()),
        Some(Value::U64(u)) => Cow::Owned(u.to_string()),
        Some(Value::F64(f)) => Cow::Owned(f.to_string()),
    }
}

fn write_event(o: &mut Vec<u8>, log: &Log) {
    fixed64_field(o, 1, log.time_unix_nanos);
    str_field(o, 2, &event_name(log));
    for f in &log.fields {
        write_tag(o, 3, f);
    }
}

fn ref_type(kind: RefKind) -> Any<'static> {
    Any::One(Portable::Str(Cow::Borrowed(match kind {
        RefKind::ChildOf => "child_of",
        RefKind::FollowsFrom => "follows_from",
    })))
}

/// `Link` body bytes: trace id, span id, the `opentracing.ref_type` attribute.
fn link_len(kind: RefKind) -> usize {
    field_len(16) + field_len(8) + field_len(kv_len("opentracing.ref_type", &ref_type(kind)))
}

fn write_span(o: &mut Vec<u8>, span: &Span) {
    let parent = span.parent_index();
    let kind = kind(span);
    bytes_field(o, 1, &span.trace_id.to_be_bytes());
    bytes_field(o, 2, &span.span_id.to_be_bytes());
    // trace_state = 3 is empty.
    if let Some(i) = parent {
        bytes_field(o, 4, &span.references[i].span_id.to_be_bytes());
    }
    str_field(o, 5, &span.operation);
    if kind != 0 {
        key(o, 6, VARINT);
        varint(o, kind as u64);
    }
    fixed64_field(o, 7, span.start_unix_nanos);
    fixed64_field(
        o,
        8,
        span.start_unix_nanos.saturating_add(span.duration_nanos),
    );
    // `error=true` became the status ERROR: not also an attribute (Jaeger turns the status back
    // into the tag, which would then show twice).
    let error = span.is_error();
    for t in span
        .tags
        .iter()
        .filter(|t| !(is_kind_tag(t) || error && t.is_error_true()))
    {
        write_tag(o, 9, t);
    }
    write_extra_attributes(o, span);
    // events = 11.
    for l in &span.logs {
        nested(o, 11, 1, |o| write_event(o, l));
    }
    // links = 13: every reference but a ChildOf parent.
    let implied = span.implied_reference();
    for (_, r) in span
        .references
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != implied)
    {
        header(o, 13, link_len(r.kind));
        bytes_field(o, 1, &r.trace_id.to_be_bytes());
        bytes_field(o, 2, &r.span_id.to_be_bytes());
        write_kv(o, 4, "opentracing.ref_type", &ref_type(r.kind));
    }
    if error {
        // status = 15: Status{code = 3: STATUS_CODE_ERROR (2)}.
        header(o, 15, 2);
        key(o, 3, VARINT);
        o.push(2);
    }
    // flags = 16 (fixed32): the sampled bit and the parent's remoteness (never 0, so always
    // written).
    key(o, 16, FIXED32);
    o.extend_from_slice(&super::otlp::span_flags(span).to_le_bytes());
}
