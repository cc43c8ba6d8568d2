//! The model as a Jaeger Thrift `Batch`, and the uploader to Jaeger's collector endpoint
//! (`POST /api/traces`, `application/x-thrift`, binary protocol), the endpoint of the reference
//! example.
//!
//! Ids are the unsigned ids re-read as signed `i64`; a 128-bit trace id is split into
//! `traceIdHigh`/`traceIdLow`; times are microseconds. `parentSpanId` is the parent
//! ([`Span::parent_index`](crate::model::Span::parent_index): the first `ChildOf` reference into
//! the span's own trace, else the first `FollowsFrom`) and `references` lists all references
//! (Jaeger keeps a parent that is already in the list only once, with the list's kind). Baggage is logged as Jaeger clients log it; warnings, which Thrift has no
//! field for, become the tag `microspan.warnings` (a JSON list, as Jaeger shows OTLP arrays).

use thrift::protocol::{TBinaryOutputProtocol, TSerializable};
use thrift::OrderedFloat;

use super::delivery::{
    is_html, text_snippet, Endpoint, Halves, NotACollector, Payload, Success, UploadConfig,
    Uploader, KIND_JAEGER_THRIFT,
};
use super::otlp::check_http_url;
use super::{
    micros, portable, warnings_json, ExportError, ExportSummary, Exporter, Pending, Portable,
    INCOMPLETE_TAG, WARNINGS_TAG,
};
use crate::jaeger_thrift as jt;
use crate::model::{Batch, KeyValue, Process, RefKind, Span, Value};

/// The batch as Jaeger's Thrift `Batch`.
pub fn to_thrift_batch(batch: &Batch) -> jt::Batch {
    thrift_batch(&batch.process, &batch.spans)
}

fn thrift_batch(process: &Process, spans: &[Span]) -> jt::Batch {
    jt::Batch {
        process: jt::Process {
            service_name: process.service_name.as_str().to_owned(),
            tags: Some(process.tags.iter().map(tag).collect()),
        },
        spans: spans.iter().map(thrift_span).collect(),
    }
}

fn tag(kv: &KeyValue) -> jt::Tag {
    let mut t = jt::Tag {
        key: kv.key.as_str().to_owned(),
        v_type: jt::TagType::STRING,
        v_str: None,
        v_double: None,
        v_bool: None,
        v_long: None,
        v_binary: None,
    };
    match portable(&kv.value) {
        Portable::Bool(b) => {
            t.v_type = jt::TagType::BOOL;
            t.v_bool = Some(b);
        }
        Portable::I64(i) => {
            t.v_type = jt::TagType::LONG;
            t.v_long = Some(i);
        }
        Portable::F64(f) => {
            t.v_type = jt::TagType::DOUBLE;
            t.v_double = Some(OrderedFloat(f));
        }
        Portable::Str(s) => t.v_str = Some(s.into_owned()),
    }
    t
}

fn id_halves(trace_id: u128) -> (i64, i64) {
    ((trace_id >> 64) as u64 as i64, trace_id as u64 as i64)
}

fn thrift_span(span: &Span) -> jt::Span {
    let (high, low) = id_halves(span.trace_id);
    let mut tags: Vec<jt::Tag> = span.tags.iter().map(tag).collect();
    if !span.warnings.is_empty() {
        tags.push(tag(&KeyValue::new(
            WARNINGS_TAG,
            Value::Str(warnings_json(span).into()),
        )));
    }
    if span.incomplete {
        tags.push(tag(&KeyValue::new(INCOMPLETE_TAG, Value::Bool(true))));
    }
    let logs = span
        .logs
        .iter()
        .map(|l| jt::Log {
            timestamp: micros(l.time_unix_nanos),
            fields: l.fields.iter().map(tag).collect(),
        })
        .collect::<Vec<_>>();
    let references = span
        .references
        .iter()
        .map(|r| {
            let (high, low) = id_halves(r.trace_id);
            jt::SpanRef {
                ref_type: match r.kind {
                    RefKind::ChildOf => jt::SpanRefType::CHILD_OF,
                    RefKind::FollowsFrom => jt::SpanRefType::FOLLOWS_FROM,
                },
                trace_id_low: low,
                trace_id_high: high,
                span_id: r.span_id as i64,
            }
        })
        .collect::<Vec<_>>();
    jt::Span {
        trace_id_low: low,
        trace_id_high: high,
        span_id: span.span_id as i64,
        parent_span_id: span.parent_span_id().unwrap_or(0) as i64,
        operation_name: span.operation.as_str().to_owned(),
        references: (!references.is_empty()).then_some(references),
        flags: i32::from(span.flags),
        start_time: micros(span.start_unix_nanos),
        duration: micros(span.duration_nanos),
        tags: (!tags.is_empty()).then_some(tags),
        logs: (!logs.is_empty()).then_some(logs),
        // Upstream's "intermediate span" flag, which is not what an unfinished device span is:
        // that is said by the tag `microspan.incomplete` and a warning.
        incomplete: None,
    }
}

/// The binary-protocol bytes of a Thrift `Batch`, as the collector endpoint takes them.
fn encode(batch: &jt::Batch) -> Result<Vec<u8>, thrift::Error> {
    let mut out = Vec::new();
    let mut protocol = TBinaryOutputProtocol::new(&mut out, true);
    batch.write_to_out_protocol(&mut protocol)?;
    Ok(out)
}

/// A request in two: the first half of its spans, then the rest, each with the batch's process.
/// `None` for fewer than two spans or a body that is not a Thrift `Batch`.
fn thrift_split(body: &[u8]) -> Option<Halves> {
    let mut input = thrift::protocol::TBinaryInputProtocol::new(body, true);
    let mut batch = jt::Batch::read_from_in_protocol(&mut input).ok()?;
    if batch.spans.len() < 2 {
        return None;
    }
    let second = batch.spans.split_off(batch.spans.len() / 2);
    let second = jt::Batch {
        process: batch.process.clone(),
        spans: second,
    };
    let part = |b: &jt::Batch| Some((encode(b).ok()?, b.spans.len() as u64));
    Some([part(&batch)?, part(&second)?])
}

/// A 2xx answer: Jaeger's collector (v1, and v2's Jaeger receiver) answers 202 with no body. An
/// HTML page is not a collector's answer (the Jaeger UI answers any POST with its index page);
/// another body is not clearly wrong (a proxy's `OK`), so the spans count as delivered, with a
/// note.
fn thrift_success(content_type: Option<&str>, body: &[u8]) -> Success {
    if body.is_empty() {
        return Ok(None);
    }
    if is_html(content_type, body) {
        return Err(NotACollector::html());
    }
    Ok(Some((
        0,
        format!(
            "the answer had a body ({:?}), where Jaeger's collector answers with no body; if the spans do not show in Jaeger, check the URL (the collector's is http://HOST:14268/api/traces)",
            text_snippet(body)
        ),
    )))
}

/// Uploads spans to Jaeger's Thrift collector endpoint (`POST` to the full URL, e.g.
/// `http://localhost:14268/api/traces`, one binary-protocol `Batch` per request).
///
/// Same delivery engine as [`super::OtlpHttp`]: a 2xx (Jaeger answers 202) is success unless its
/// body is an HTML page (the Jaeger UI's port, not the collector's); 429, 502, 503, 504 and
/// connection errors are retried, and 500 a few times; any other status is not.
pub struct JaegerThriftHttp {
    uploader: Uploader,
    max_spans: usize,
}

impl JaegerThriftHttp {
    /// Starts an uploader to the full collector URL (nothing is appended to it).
    pub fn new(url: &str, config: UploadConfig) -> Result<Self, ExportError> {
        let url = url.trim();
        check_http_url(url, "http://localhost:14268/api/traces")?;
        let endpoint = Endpoint {
            kind: KIND_JAEGER_THRIFT,
            url: url.to_string(),
            content_type: "application/x-thrift",
            success: thrift_success,
            error_message: text_snippet,
            split: thrift_split,
            // Jaeger answers 400 to a body it cannot parse and 500 when its pipeline refuses
            // a parsed batch (a full queue, a storage error): that may pass.
            retries_500: true,
        };
        Ok(Self {
            uploader: Uploader::start(endpoint, &config)?,
            max_spans: config.max_spans_per_request.max(1),
        })
    }
}

impl Exporter for JaegerThriftHttp {
    fn name(&self) -> &str {
        self.uploader.name()
    }

    fn spool_subdir(&self) -> Option<&str> {
        self.uploader.spool_subdir()
    }

    fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let mut result = Ok(());
        for chunk in batch.spans.chunks(self.max_spans) {
            let bytes =
                encode(&thrift_batch(&batch.process, chunk)).map_err(|e| ExportError::Encode {
                    exporter: self.uploader.name().into(),
                    reason: e.to_string(),
                })?;
            if let Err(e) = self.uploader.submit(Payload {
                bytes: bytes.into(),
                spans: chunk.len() as u64,
            }) {
                result = Err(e);
            }
        }
        result
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        self.uploader.finish()
    }

    fn begin_finish(&mut self) {
        self.uploader.begin_finish();
    }

    fn pending(&self) -> Option<Pending> {
        self.uploader.pending()
    }

    fn stop_waiting(&mut self) {
        self.uploader.stop_waiting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::protocol::TBinaryInputProtocol;

    #[test]
    fn ids_are_big_halves_reinterpreted_as_signed() {
        let (h, l) = id_halves(0xff00_0000_0000_0000_0000_0000_0000_0001);
        assert_eq!(h, -72057594037927936);
        assert_eq!(l, 1);
    }

    #[test]
    fn encoding_round_trips_through_the_generated_reader() {
        let batch = Batch {
            process: Process {
                service_name: "svc".into(),
                tags: vec![],
            }
            .into(),
            spans: vec![Span {
                trace_id: 7,
                span_id: u64::MAX,
                operation: "op".into(),
                references: Default::default(),
                start_unix_nanos: 1_500_000,
                duration_nanos: 2_000,
                tags: crate::model::smallvec![KeyValue::new("n", Value::U64(u64::MAX))],
                logs: Default::default(),
                baggage: Default::default(),
                flags: 1,
                warnings: vec![],
                incomplete: false,
                remote_parent: false,
            }],
        };
        let bytes = encode(&to_thrift_batch(&batch)).unwrap();
        let mut input = TBinaryInputProtocol::new(&bytes[..], true);
        let back = jt::Batch::read_from_in_protocol(&mut input).unwrap();
        assert_eq!(back, to_thrift_batch(&batch));
        assert_eq!(back.spans[0].span_id, -1);
        assert_eq!(back.spans[0].start_time, 1_500);
        assert_eq!(
            back.spans[0].tags.as_ref().unwrap()[0].v_str.as_deref(),
            Some("18446744073709551615")
        );
    }

    #[test]
    fn a_split_batch_keeps_its_process() {
        let process = jt::Process {
            service_name: "svc".into(),
            tags: None,
        };
        let span = |id: i64| jt::Span {
            trace_id_low: 1,
            trace_id_high: 0,
            span_id: id,
            parent_span_id: 0,
            operation_name: "op".into(),
            references: None,
            flags: 1,
            start_time: 0,
            duration: 0,
            tags: None,
            logs: None,
            incomplete: None,
        };
        let batch = jt::Batch::new(process.clone(), (1..=5).map(span).collect());
        let [(first, n1), (second, n2)] = thrift_split(&encode(&batch).unwrap()).unwrap();
        assert_eq!((n1, n2), (2, 3));
        for (bytes, ids) in [(first, 1..=2), (second, 3..=5)] {
            let mut input = TBinaryInputProtocol::new(&bytes[..], true);
            let part = jt::Batch::read_from_in_protocol(&mut input).unwrap();
            assert_eq!(
                part,
                jt::Batch::new(process.clone(), ids.map(span).collect())
            );
        }
        let one = jt::Batch::new(process, vec![span(1)]);
        assert!(
            thrift_split(&encode(&one).unwrap()).is_none(),
            "a single span"
        );
        assert!(thrift_split(b"junk").is_none(), "not a batch");
    }
}
