//! The model as OTLP (`ExportTraceServiceRequest`), and the OTLP/HTTP protobuf uploader.
//!
//! The mapping is the inverse of the OTLP→Jaeger rules Jaeger applies on ingest, so a span sent
//! here looks in Jaeger as it does when sent as Thrift:
//! - resource attributes: `service.name` and the process tags;
//! - `parent_span_id`: the first `ChildOf` reference into the span's own trace, else the first
//!   `FollowsFrom` (OpenTelemetry's OpenTracing compatibility); every other reference, and a
//!   `FollowsFrom` parent, becomes a link with the attribute `opentracing.ref_type` = `follows_from` / `child_of` (as the OpenTracing shim
//!   writes it; Jaeger shows links as `FOLLOWS_FROM`);
//! - logs (baggage items among them) → events named after their `event` field (else `log`, as
//!   the OpenTelemetry OpenTracing shim names them), all fields kept as attributes, so Jaeger
//!   shows the same fields;
//! - `span.kind` = server/client/producer/consumer/internal → the span kind, removed from the
//!   attributes; `error=true` → status ERROR, removed from the attributes (Jaeger adds
//!   `error=true` back from the status: kept, it would show twice);
//! - `flags`: the sampled bit (bit 0; Jaeger's debug bit has no W3C equivalent), and whether the
//!   parent is remote (0x100 always, 0x200 for a span continuing another process's context);
//! - values: `u64 > i64::MAX` and non-finite floats → strings; warnings → the string-array
//!   attribute `microspan.warnings`; incomplete → `microspan.incomplete=true`.

// `..Default::default()` on OTLP messages keeps this building across opentelemetry-proto
// versions that add fields (e.g. `KeyValue::key_strindex` in 0.33).
#![allow(clippy::needless_update)]

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue as OtlpKeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status,
};
use prost::Message;

use super::delivery::{
    is_html, media_type, text_snippet, Endpoint, Halves, NotACollector, Payload, Success,
    UploadConfig, Uploader, KIND_OTLP,
};
use super::otlp_encode::encode_request;
use super::{
    portable, ExportError, ExportSummary, Exporter, Pending, Portable, INCOMPLETE_TAG, WARNINGS_TAG,
};
use crate::model::{Batch, KeyValue, Process, RefKind, Span, Value};

/// The whole batch as one OTLP request (one resource, one scope).
///
/// To send it, [`super::encode_otlp_request`] gives the same bytes as encoding this request, much
/// faster.
pub fn to_otlp_request(batch: &Batch) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(&batch.process, &batch.spans)],
    }
}

/// One resource (the process) with its spans under the `microspan` scope.
pub(crate) fn resource_spans(process: &Process, spans: &[Span]) -> ResourceSpans {
    ResourceSpans {
        resource: Some(resource(process)),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "microspan".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            spans: spans.iter().map(otlp_span).collect(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn resource(process: &Process) -> Resource {
    let mut attributes = Vec::with_capacity(process.tags.len() + 1);
    attributes.push(kv_str("service.name", &process.service_name));
    attributes.extend(
        process
            .tags
            .iter()
            .filter(|t| t.key != "service.name")
            .map(otlp_kv),
    );
    Resource {
        attributes,
        ..Default::default()
    }
}

fn kv_str(key: &str, value: &str) -> OtlpKeyValue {
    OtlpKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn any(v: &Value) -> AnyValue {
    AnyValue {
        value: Some(match portable(v) {
            Portable::Bool(b) => any_value::Value::BoolValue(b),
            Portable::I64(i) => any_value::Value::IntValue(i),
            Portable::F64(f) => any_value::Value::DoubleValue(f),
            Portable::Str(s) => any_value::Value::StringValue(s.into_owned()),
        }),
    }
}

fn otlp_kv(kv: &KeyValue) -> OtlpKeyValue {
    OtlpKeyValue {
        key: kv.key.as_str().to_owned(),
        value: Some(any(&kv.value)),
        ..Default::default()
    }
}

fn span_kind(v: &Value) -> Option<SpanKind> {
    match v {
        Value::Str(s) => match s.as_str() {
            "server" => Some(SpanKind::Server),
            "client" => Some(SpanKind::Client),
            "producer" => Some(SpanKind::Producer),
            "consumer" => Some(SpanKind::Consumer),
            "internal" => Some(SpanKind::Internal),
            _ => None,
        },
        _ => None,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.as_str().to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::I64(i) => i.to_string(),
        Value::U64(u) => u.to_string(),
        Value::F64(f) => f.to_string(),
    }
}

fn otlp_span(span: &Span) -> OtlpSpan {
    let parent_index = span.parent_index();
    let mut kind = SpanKind::Unspecified;
    let mut attributes = Vec::with_capacity(span.tags.len() + 2);
    let error = span.is_error();
    for tag in &span.tags {
        if error && tag.is_error_true() {
            continue;
        }
        if tag.key == "span.kind" {
            if let Some(k) = span_kind(&tag.value) {
                kind = k;
                continue;
            }
        }
        attributes.push(otlp_kv(tag));
    }
    if !span.warnings.is_empty() {
        attributes.push(OtlpKeyValue {
            key: WARNINGS_TAG.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: span
                        .warnings
                        .iter()
                        .map(|w| AnyValue {
                            value: Some(any_value::Value::StringValue(w.clone())),
                        })
                        .collect(),
                })),
            }),
            ..Default::default()
        });
    }
    if span.incomplete {
        attributes.push(otlp_kv(&KeyValue::new(INCOMPLETE_TAG, Value::Bool(true))));
    }
    let events = span
        .logs
        .iter()
        .map(|log| Event {
            time_unix_nano: log.time_unix_nanos,
            name: log
                .fields
                .iter()
                .find(|f| f.key == "event")
                .map(|f| value_text(&f.value))
                .unwrap_or_else(|| "log".into()),
            attributes: log.fields.iter().map(otlp_kv).collect(),
            dropped_attributes_count: 0,
        })
        .collect();
    let links = span
        .references
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != span.implied_reference())
        .map(|(_, r)| Link {
            trace_id: r.trace_id.to_be_bytes().to_vec(),
            span_id: r.span_id.to_be_bytes().to_vec(),
            attributes: vec![kv_str(
                "opentracing.ref_type",
                match r.kind {
                    RefKind::ChildOf => "child_of",
                    RefKind::FollowsFrom => "follows_from",
                },
            )],
            ..Default::default()
        })
        .collect();
    OtlpSpan {
        trace_id: span.trace_id.to_be_bytes().to_vec(),
        span_id: span.span_id.to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: parent_index
            .map(|i| span.references[i].span_id.to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags: span_flags(span),
        name: span.operation.as_str().to_owned(),
        kind: kind as i32,
        start_time_unix_nano: span.start_unix_nanos,
        end_time_unix_nano: span.start_unix_nanos.saturating_add(span.duration_nanos),
        attributes,
        dropped_attributes_count: 0,
        events,
        dropped_events_count: 0,
        links,
        dropped_links_count: 0,
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            message: String::new(),
        }),
    }
}

/// OTLP's `Span.flags`: the W3C trace flags (the sampled bit; Jaeger's debug bit has no W3C
/// equivalent) and, as OTLP 1.4's `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` (0x100) and
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK` (0x200) define them, whether the parent is a span of
/// another process. The decoder always knows, so 0x100 is always set, as OpenTelemetry's SDKs
/// set it (a root: known, not remote).
pub(crate) fn span_flags(span: &Span) -> u32 {
    u32::from(span.flags & 0x01) | 0x100 | if span.remote_parent { 0x200 } else { 0 }
}

/// `{base}/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL already ending in
/// `/v1/traces` is used as is.
pub(crate) fn traces_url(base: &str) -> Result<String, ExportError> {
    let base = base.trim();
    check_http_url(base, "http://localhost:4318")?;
    let (without_query, _) = base.split_once('?').unwrap_or((base, ""));
    if without_query.trim_end_matches('/').ends_with("/v1/traces") {
        Ok(base.to_string())
    } else {
        Ok(format!("{}/v1/traces", without_query.trim_end_matches('/')))
    }
}

/// An `http://` or `https://` URL with a host.
pub(crate) fn check_http_url(url: &str, example: &'static str) -> Result<(), ExportError> {
    let bad = |reason: &str| ExportError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
        example,
    };
    let uri: ureq::http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(&format!("the scheme {other:?} is not http or https"))),
        None => return Err(bad("it has no scheme (http:// or https://)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    Ok(())
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// What to check when an OTLP answer is not a collector's.
const NOT_OTLP: &str = "an OTLP/HTTP collector answers a protobuf request with a protobuf ExportTraceServiceResponse, or with no body; check that the URL is the collector's OTLP/HTTP endpoint (port 4318, e.g. --otlp http://localhost:4318), not another service or a proxy's page";

/// A 2xx answer as the OTLP/HTTP specification has it: the request's content type
/// (`application/x-protobuf`; `application/protobuf` is taken too) with an
/// `ExportTraceServiceResponse`, whose `partial_success` is returned; or no body at all.
fn otlp_success(content_type: Option<&str>, body: &[u8]) -> Success {
    if body.is_empty() {
        return Ok(None);
    }
    if is_html(content_type, body) {
        return Err(NotACollector::html());
    }
    let media = content_type.map(media_type);
    if !matches!(
        media.as_deref(),
        Some("application/x-protobuf" | "application/protobuf")
    ) {
        let got = match &media {
            Some(media) => format!("Content-Type {media}"),
            None => "no Content-Type".into(),
        };
        return Err(NotACollector {
            what: format!(
                "a body of {got} ({:?}), not application/x-protobuf",
                text_snippet(body)
            ),
            hint: NOT_OTLP,
        });
    }
    let response = ExportTraceServiceResponse::decode(body).map_err(|e| NotACollector {
        what: format!(
            "an application/x-protobuf body that is not an OTLP ExportTraceServiceResponse ({e})"
        ),
        hint: NOT_OTLP,
    })?;
    Ok(response
        .partial_success
        .map(|partial| (partial.rejected_spans.max(0) as u64, partial.error_message)))
}

fn otlp_error_message(body: &[u8]) -> String {
    match RpcStatus::decode(body) {
        Ok(status) if !status.message.is_empty() => text_snippet(status.message.as_bytes()),
        _ => text_snippet(body),
    }
}

/// A request in two: the first half of its spans, then the rest, each under its resource and
/// scope (a resource or scope left without spans is left out). `None` for fewer than two spans
/// or a body that is not an `ExportTraceServiceRequest`.
fn otlp_split(body: &[u8]) -> Option<Halves> {
    let request = ExportTraceServiceRequest::decode(body).ok()?;
    let total: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    if total < 2 {
        return None;
    }
    let half = total / 2;
    let part = |range: std::ops::Range<usize>| {
        let mut part = request.clone();
        let mut i = 0;
        for resource in &mut part.resource_spans {
            for scope in &mut resource.scope_spans {
                scope.spans.retain(|_| {
                    i += 1;
                    range.contains(&(i - 1))
                });
            }
            resource.scope_spans.retain(|s| !s.spans.is_empty());
        }
        part.resource_spans.retain(|r| !r.scope_spans.is_empty());
        (part.encode_to_vec(), range.len() as u64)
    };
    Some([part(0..half), part(half..total)])
}

/// Uploads spans as OTLP/HTTP protobuf (`POST {base}/v1/traces`, `application/x-protobuf`),
/// Jaeger v2's native input (port 4318).
///
/// `export` encodes and queues (never waits for the network); `finish` delivers the rest up to
/// [`UploadConfig::finish_timeout`]. Retries, spool and accounting: see [`UploadConfig`].
pub struct OtlpHttp {
    uploader: Uploader,
    max_spans: usize,
}

impl OtlpHttp {
    /// Starts an uploader to `base` (e.g. `http://localhost:4318`; `/v1/traces` is appended
    /// unless the URL ends with it). Replays what an earlier run left in the spool.
    pub fn new(base: &str, config: UploadConfig) -> Result<Self, ExportError> {
        let url = traces_url(base)?;
        let endpoint = Endpoint {
            kind: KIND_OTLP,
            url,
            content_type: "application/x-protobuf",
            success: otlp_success,
            error_message: otlp_error_message,
            split: otlp_split,
            // OTLP/HTTP: only 429, 502, 503 and 504 are retryable.
            retries_500: false,
        };
        Ok(Self {
            uploader: Uploader::start(endpoint, &config)?,
            max_spans: config.max_spans_per_request.max(1),
        })
    }
}

impl Exporter for OtlpHttp {
    fn name(&self) -> &str {
        self.uploader.name()
    }

    fn spool_subdir(&self) -> Option<&str> {
        self.uploader.spool_subdir()
    }

    fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let mut result = Ok(());
        for chunk in batch.spans.chunks(self.max_spans) {
            let payload = Payload {
                bytes: encode_request(&batch.process, chunk).into(),
                spans: chunk.len() as u64,
            };
            if let Err(e) = self.uploader.submit(payload) {
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
    use crate::model::{Batch, Process, Span};

    fn span(id: u64) -> Span {
        Span {
            trace_id: u128::from(id),
            span_id: id,
            operation: "op".into(),
            references: Default::default(),
            start_unix_nanos: 1_000,
            duration_nanos: 10,
            tags: Default::default(),
            logs: Default::default(),
            baggage: Default::default(),
            flags: 1,
            warnings: vec![],
            incomplete: false,
            remote_parent: false,
        }
    }

    #[test]
    fn a_split_request_keeps_its_resource_and_scope() {
        let batch = Batch {
            process: Process {
                service_name: "svc".into(),
                tags: vec![],
            }
            .into(),
            spans: (1..=5).map(span).collect(),
        };
        let body = encode_request(&batch.process, &batch.spans);
        let [(first, n1), (second, n2)] = otlp_split(&body).unwrap();
        assert_eq!((n1, n2), (2, 3));
        for (bytes, spans) in [(first, &batch.spans[..2]), (second, &batch.spans[2..])] {
            let part = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
            assert_eq!(
                part.resource_spans[0],
                resource_spans(&batch.process, spans)
            );
        }
        let one = encode_request(&batch.process, &batch.spans[..1]);
        assert!(otlp_split(&one).is_none(), "a single span");
        assert!(otlp_split(b"\xff\xff").is_none(), "not a request");
    }

    #[test]
    fn traces_url_appends_the_path_once() {
        assert_eq!(
            traces_url("http://localhost:4318").unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://localhost:4318/").unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://h:4318/v1/traces").unwrap(),
            "http://h:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://h/otlp").unwrap(),
            "https://h/otlp/v1/traces"
        );
        assert!(traces_url("localhost:4318").is_err());
        assert!(traces_url("ftp://h").is_err());
        assert!(traces_url("").is_err());
    }
}
