//! The file exporters and the tree on the reference trace, against checked-in snapshots
//! (`MICROSPAN_BLESS=1 cargo test -p microspan-decoder` rewrites them), plus structure checks of
//! the JSON they write.

mod support;

use microspan_decoder::export::{
    to_otlp_request, to_thrift_batch, ExportError, Exporter, JaegerJsonFile, MemoryExporter,
    OtlpJsonFile, TreeWriter,
};
use microspan_decoder::jaeger_thrift as jt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::Value as Json;
use support::*;

fn write_jaeger_json() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.json");
    let mut exporter = JaegerJsonFile::new(&path);
    let batch = reference_batch();
    // Two batches, as span assembly hands them over.
    let (a, b) = batch.spans.split_at(3);
    exporter
        .export(&microspan_decoder::model::Batch {
            process: batch.process.clone(),
            spans: a.to_vec(),
        })
        .unwrap();
    exporter
        .export(&microspan_decoder::model::Batch {
            process: batch.process.clone(),
            spans: b.to_vec(),
        })
        .unwrap();
    let summary = exporter.finish().unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.delivered, 8);
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn jaeger_json_snapshot() {
    assert_snapshot("reference.jaeger.json", &write_jaeger_json());
}

#[test]
fn jaeger_json_structure() {
    let doc: Json = serde_json::from_str(&write_jaeger_json()).unwrap();
    let data = doc["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "two traces");
    let trace = &data[0];
    assert_eq!(trace["traceID"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        data[1]["traceID"], "00f067aa0ba902b7",
        "high half 0: 16 digits"
    );
    assert_eq!(
        trace["processes"]["p1"]["serviceName"],
        "in-process-service"
    );
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 7);
    let by_name = |n: &str| spans.iter().find(|s| s["operationName"] == n).unwrap();

    let bar = by_name("Bar");
    assert_eq!(bar["spanID"], "1000000000000003");
    assert_eq!(bar["processID"], "p1");
    assert_eq!(bar["startTime"], 1_700_000_001_000_000i64);
    assert_eq!(bar["duration"], 2_000_000);
    assert_eq!(bar["references"][0]["refType"], "CHILD_OF");
    assert_eq!(bar["references"][0]["spanID"], "1000000000000002");
    assert_eq!(
        bar["tags"][0],
        serde_json::json!({"key": "error", "type": "bool", "value": true})
    );
    assert!(bar["warnings"].is_null());
    // Bar's own log only: the baggage it carries was logged where it was set (Foo), as Jaeger
    // clients log it.
    let logs = bar["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["timestamp"], 1_700_000_002_999_000i64);
    assert_eq!(
        logs[0]["fields"][0],
        serde_json::json!({"key": "event", "type": "string", "value": "error"})
    );
    assert_eq!(logs[0]["fields"][1]["value"], "something wrong");
    let foo_logs = by_name("Foo")["logs"].as_array().unwrap();
    assert_eq!(foo_logs[0]["fields"][0]["value"], "baggage");
    assert_eq!(
        foo_logs[0]["fields"][1],
        serde_json::json!({"key": "key", "type": "string", "value": "user"})
    );
    assert_eq!(foo_logs[0]["fields"][2]["value"], "alice");

    let types = by_name("all-types");
    let tag = |k: &str| {
        types["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(tag("bool")["type"], "bool");
    assert_eq!(
        tag("i64"),
        serde_json::json!({"key": "i64", "type": "int64", "value": -42})
    );
    assert_eq!(tag("u64.small")["type"], "int64");
    assert_eq!(
        tag("u64.big"),
        serde_json::json!({"key": "u64.big", "type": "string", "value": "18446744073709551615"})
    );
    assert_eq!(
        tag("f64"),
        serde_json::json!({"key": "f64", "type": "float64", "value": 1.5})
    );
    assert_eq!(tag("f64.nan")["value"], "NaN");
    assert_eq!(types["spanID"], "fffffffffffffff7");

    // The consumer: its ChildOf parent first, then the FollowsFrom.
    let consumer = by_name("consume");
    assert_eq!(consumer["references"][0]["refType"], "CHILD_OF");
    assert_eq!(consumer["references"][1]["refType"], "FOLLOWS_FROM");

    assert_eq!(
        by_name("truncated")["warnings"].as_array().unwrap().len(),
        2
    );
    let hung = by_name("flash-write");
    assert_eq!(hung["flags"], 3);
    assert!(hung["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "microspan.incomplete" && t["value"] == true));
    assert!(by_name("in-process-service")["references"]
        .as_array()
        .unwrap()
        .is_empty());
}

fn otlp_json_exporter() -> (OtlpJsonFile, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = OtlpJsonFile::new(dir.path().join("trace.otlp.json"));
    exporter.export(&reference_batch()).unwrap();
    (exporter, dir)
}

#[test]
fn otlp_json_snapshot_and_round_trip() {
    let (mut exporter, dir) = otlp_json_exporter();
    let expected = exporter.request();
    let summary = exporter.finish().unwrap();
    assert!(summary.is_complete(), "{summary}");
    let text = std::fs::read_to_string(dir.path().join("trace.otlp.json")).unwrap();
    assert_snapshot("reference.otlp.json", &text);

    // Back through opentelemetry-proto's own OTLP/JSON reader: the same request.
    let back: ExportTraceServiceRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, expected);
    assert_eq!(back, to_otlp_request(&reference_batch()));
}

#[test]
fn otlp_json_follows_the_otlp_json_encoding() {
    let (mut exporter, dir) = otlp_json_exporter();
    exporter.finish().unwrap();
    let doc: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("trace.otlp.json")).unwrap())
            .unwrap();
    let rs = &doc["resourceSpans"][0];
    assert_eq!(
        rs["resource"]["attributes"][0],
        serde_json::json!({"key": "service.name", "value": {"stringValue": "in-process-service"}})
    );
    let spans = rs["scopeSpans"][0]["spans"].as_array().unwrap();
    assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "microspan");
    let by_name = |n: &str| spans.iter().find(|s| s["name"] == n).unwrap();
    let bar = by_name("Bar");
    assert_eq!(
        bar["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "ids are hex"
    );
    assert_eq!(bar["spanId"], "1000000000000003");
    assert_eq!(bar["parentSpanId"], "1000000000000002");
    assert_eq!(
        bar["startTimeUnixNano"], "1700000001000000000",
        "64-bit integers are strings"
    );
    assert_eq!(bar["endTimeUnixNano"], "1700000003000000000");
    assert_eq!(bar["status"]["code"], 2, "enums are integers: ERROR");
    assert_eq!(bar["kind"], 0);
    assert_eq!(bar["events"][0]["name"], "error");
    assert_eq!(bar["events"][0]["timeUnixNano"], "1700000002999000000");
    assert_eq!(by_name("Foo")["events"][0]["name"], "baggage");

    let types = by_name("all-types");
    assert_eq!(types["kind"], 3, "span.kind=client");
    let attr = |k: &str| {
        types["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attr("span.kind"), None, "span.kind moved to kind");
    assert_eq!(attr("i64").unwrap(), serde_json::json!({"intValue": "-42"}));
    assert_eq!(
        attr("u64.big").unwrap(),
        serde_json::json!({"stringValue": "18446744073709551615"})
    );
    assert_eq!(
        attr("f64").unwrap(),
        serde_json::json!({"doubleValue": 1.5})
    );
    assert_eq!(
        attr("bool").unwrap(),
        serde_json::json!({"boolValue": false})
    );

    let consumer = by_name("consume");
    assert_eq!(consumer["kind"], 5);
    assert_eq!(
        consumer["parentSpanId"], "1000000000000002",
        "first ChildOf is the parent"
    );
    assert_eq!(consumer["links"].as_array().unwrap().len(), 1);
    assert_eq!(consumer["links"][0]["spanId"], "1000000000000001");
    assert_eq!(
        consumer["links"][0]["attributes"][0],
        serde_json::json!({"key": "opentracing.ref_type", "value": {"stringValue": "follows_from"}})
    );
    assert_eq!(by_name("in-process-service")["kind"], 2);
    assert_eq!(by_name("in-process-service")["parentSpanId"], "");
    let warnings = by_name("truncated")["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "microspan.warnings")
        .unwrap()["value"]["arrayValue"]["values"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(warnings, 2);
}

#[test]
fn otlp_protobuf_mapping_matches_the_jaeger_rules() {
    let request = to_otlp_request(&reference_batch());
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    let bar = spans.iter().find(|s| s.name == "Bar").unwrap();
    // `error=true` is the status, not also an attribute: Jaeger turns the status back into the
    // tag, and would show a kept one twice.
    assert!(
        !bar.attributes.iter().any(|a| a.key == "error"),
        "error tag not kept"
    );
    assert_eq!(bar.status.as_ref().unwrap().code, 2);
    // Sampled (0x1); whether the parent is remote is known (0x100), and it is not (no 0x200).
    assert_eq!(bar.flags, 0x101);
    // A span continuing another process's context: its parent is remote (0x200).
    let mut batch = reference_batch();
    let foo = batch
        .spans
        .iter_mut()
        .find(|s| s.operation.as_str() == "Foo")
        .unwrap();
    foo.remote_parent = true;
    let request = to_otlp_request(&batch);
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    let flags = |name| spans.iter().find(|s| s.name == name).unwrap().flags;
    assert_eq!((flags("Foo"), flags("Bar")), (0x301, 0x101));
    let event = &bar.events[0];
    assert_eq!(event.name, "error");
    assert!(event.attributes.iter().any(|a| a.key == "message"
        && a.value.as_ref().unwrap().value
            == Some(AnyValue::StringValue("something wrong".into()))));
}

#[test]
fn thrift_mapping() {
    let batch = to_thrift_batch(&reference_batch());
    assert_eq!(batch.process.service_name, "in-process-service");
    let bar = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "Bar")
        .unwrap();
    assert_eq!(bar.trace_id_high, 0x4bf9_2f35_77b3_4da6u64 as i64);
    assert_eq!(bar.trace_id_low, 0xa3ce_929d_0e0e_4736u64 as i64);
    assert_eq!(bar.parent_span_id, FOO as i64);
    assert_eq!(bar.start_time, 1_700_000_001_000_000);
    assert_eq!(bar.duration, 2_000_000);
    let tag = &bar.tags.as_ref().unwrap()[0];
    assert_eq!(
        (tag.key.as_str(), tag.v_type, tag.v_bool),
        ("error", jt::TagType::BOOL, Some(true))
    );
    assert_eq!(bar.logs.as_ref().unwrap().len(), 1);
    let types = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "all-types")
        .unwrap();
    assert_eq!(types.span_id, TYPES as i64);
    assert!(types.span_id < 0);
    let consumer = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "consume")
        .unwrap();
    assert_eq!(consumer.parent_span_id, FOO as i64);
    let refs = consumer.references.as_ref().unwrap();
    assert_eq!(refs[0].ref_type, jt::SpanRefType::FOLLOWS_FROM);
    let truncated = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "truncated")
        .unwrap();
    let w = truncated
        .tags
        .as_ref()
        .unwrap()
        .iter()
        .find(|t| t.key == "microspan.warnings")
        .unwrap();
    assert_eq!(
        w.v_str.as_deref(),
        Some(
            r#"["2 tags dropped: capacity 4 tags per span","1 log field dropped: capacity 4 fields per log"]"#
        )
    );
    let lone = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "lone")
        .unwrap();
    assert_eq!(lone.trace_id_high, 0);
    assert!(lone.references.is_none());
}

fn tree(color: bool) -> String {
    let mut tree = TreeWriter::new(Vec::new(), color);
    let batch = reference_batch();
    // Spans one by one, as they finish.
    for span in &batch.spans {
        tree.export(&microspan_decoder::model::Batch {
            process: batch.process.clone(),
            spans: vec![span.clone()],
        })
        .unwrap();
    }
    let summary = tree.finish().unwrap();
    assert_eq!(summary.delivered, 8);
    String::from_utf8(tree.into_inner()).unwrap()
}

#[test]
fn tree_snapshot() {
    let text = tree(false);
    assert!(!text.contains('\x1b'), "plain text when not a terminal");
    assert_snapshot("reference.tree.txt", &text);
}

#[test]
fn tree_highlights_errors_in_colour() {
    let text = tree(true);
    assert!(text.contains("\x1b[1;31merror=true\x1b[0m"));
    assert!(text.contains("\x1b[33m[incomplete]\x1b[0m"));
}

/// The tree of one trace of `n` spans nested in one another, exported in one batch.
fn nested_tree(n: u64) -> String {
    use microspan_decoder::model::{RefKind, Reference};
    let spans = (1..=n)
        .map(|id| {
            let mut span = bare(id, "nested");
            span.start_unix_nanos = T0 + id;
            span.duration_nanos = 2 * (n - id) + 1;
            if id > 1 {
                span.references.push(Reference {
                    kind: RefKind::ChildOf,
                    trace_id: TRACE,
                    span_id: id - 1,
                });
            }
            span
        })
        .collect();
    let mut tree = TreeWriter::new(Vec::new(), false);
    tree.export(&microspan_decoder::model::Batch {
        process: process().into(),
        spans,
    })
    .unwrap();
    assert_eq!(tree.finish().unwrap().delivered, n);
    String::from_utf8(tree.into_inner()).unwrap()
}

/// Nesting indents the tree only so far: past 32 levels a row says its depth instead, so the
/// text of a deep trace grows with its spans, not with their square (30 000 nested spans, a
/// 274 KB capture, printed 1.35 GB).
#[test]
fn a_deep_trace_prints_in_size_linear_in_its_spans() {
    let text = nested_tree(2_000);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("nested")).collect();
    assert_eq!(rows.len(), 2_000);
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
    // 44 columns of duration and bar, 32 levels of 3, the depth and the name.
    assert!(widest <= 44 + 32 * 3 + 40, "a row of {widest} characters");
    assert!(
        text.len() < 2_000 * 300,
        "{} bytes for 2 000 spans",
        text.len()
    );
    // The first 32 levels are drawn as before; the 33rd says its depth.
    let indent = |row: &str| row[..row.find("└─").unwrap()].chars().count();
    assert_eq!(indent(rows[32]), indent(rows[31]) + 3, "{}", rows[32]);
    assert!(!rows[32].contains("[depth"), "{}", rows[32]);
    assert!(rows[33].contains("└─ [depth 33] nested"), "{}", rows[33]);
    assert_eq!(indent(rows[1_999]), indent(rows[33]));
    assert!(
        rows[1_999].ends_with("└─ [depth 1999] nested"),
        "{}",
        rows[1_999]
    );
}

/// Text the device sent cannot act on the terminal: its control characters (ESC, CR, BEL, NUL,
/// a line feed) and bidi overrides show as escapes, and each span stays one row.
#[test]
fn the_tree_escapes_control_characters_the_device_sent() {
    use microspan_decoder::model::{Batch, Log, Process};
    let mut root = bare(ROOT, "op\x1b[31mRED\r\x1b[Kfake line");
    root.tags.push(kv("key\0nul", s("bell\x07")));
    root.logs.push(Log {
        time_unix_nanos: T0,
        fields: [kv("event\n   1.00 ms |forged| row", s("\u{202e}reversed"))]
            .into_iter()
            .collect(),
    });
    root.baggage = vec![("bag\x1b[2J", "gage\x1b]0;t\x07")].into();
    root.warnings
        .push("the device cut the static string \"\x1b[2Jname\"".into());
    let batch = Batch {
        process: Process {
            service_name: "svc\x1b]0;pwned\x07\x1b[2J".into(),
            tags: vec![],
        }
        .into(),
        spans: vec![root],
    };
    for color in [false, true] {
        let mut tree = TreeWriter::new(Vec::new(), color);
        tree.export(&batch).unwrap();
        tree.finish().unwrap();
        let text = String::from_utf8(tree.into_inner()).unwrap();
        // With colours, the only escape sequences are the tree's own.
        let own = text
            .replace("\x1b[33m", "")
            .replace("\x1b[1;31m", "")
            .replace("\x1b[0m", "");
        assert!(
            !own.contains(['\x1b', '\r', '\x07', '\0', '\u{202e}']),
            "{text:?}"
        );
        assert!(
            text.contains("svc\\u{1b}]0;pwned\\u{7}\\u{1b}[2J · 1 span"),
            "{text}"
        );
        assert!(
            text.contains("| op\\u{1b}[31mRED\\r\\u{1b}[Kfake line\n"),
            "{text}"
        );
        assert!(text.contains("tags: key\\0nul=\"bell\\u{7}\""), "{text}");
        assert!(
            text.contains("log +0 ns: event\\n   1.00 ms |forged| row=\"\\u{202e}reversed\""),
            "{text}"
        );
        assert!(
            text.contains("baggage: bag\\u{1b}[2J=\"gage\\u{1b}]0;t\\u{7}\""),
            "{text}"
        );
        assert!(text.contains("string \"\\u{1b}[2Jname\""), "{text}");
        // The header, the span's row, its tags, baggage, log and warning: one line each.
        assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 6, "{text}");
    }
}

#[test]
fn finished_exporters_refuse_more() {
    let mut m = MemoryExporter::new();
    m.export(&reference_batch()).unwrap();
    assert_eq!(m.spans().count(), 8);
    assert_eq!(m.finish().unwrap().delivered, 8);
    assert!(matches!(
        m.export(&reference_batch()),
        Err(ExportError::Finished { .. })
    ));
}

/// A file also bounds the memory its spans take until it is written: spans with many long
/// strings (a 225 KB capture made a 730 MB file, held whole) are dropped past it and counted, in
/// one error that says so.
#[test]
fn file_bound_on_held_bytes_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = JaegerJsonFile::with_limits(dir.path().join("t.json"), 1_000, 4_000);
    let batch = reference_batch();
    let n = batch.spans.len() as u64;
    exporter.export(&batch).unwrap();
    let summary = exporter.finish().unwrap();
    assert!(
        summary.delivered >= 1 && summary.dropped >= 1,
        "{summary:?}"
    );
    assert_eq!(summary.delivered + summary.dropped, n);
    assert!(
        matches!(
            summary.errors[..],
            [ExportError::TooMuchHeld { spans, max_bytes: 4_000, .. }] if spans == summary.dropped
        ),
        "{:?}",
        summary.errors
    );
    let said = summary.errors[0].to_string();
    assert!(
        said.contains("holds its spans in until it is written"),
        "{said}"
    );
}

/// Spans beyond a file's bound are dropped and counted, and said once, with the total, at the
/// end: an error per batch printed 48 000 lines for a capture of 4 million spans.
#[test]
fn file_bound_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = JaegerJsonFile::with_limit(dir.path().join("t.json"), 5);
    for _ in 0..3 {
        exporter.export(&reference_batch()).unwrap();
    }
    let summary = exporter.finish().unwrap();
    assert_eq!((summary.delivered, summary.dropped), (5, 19));
    assert!(!summary.is_complete());
    assert!(
        matches!(
            summary.errors[..],
            [ExportError::TooManySpans {
                spans: 19,
                limit: 5,
                ..
            }]
        ),
        "{:?}",
        summary.errors
    );
    let said = summary.errors[0].to_string();
    assert!(
        said.contains("dropped 19 spans beyond the limit of 5 spans per file"),
        "{said}"
    );
    assert!(said.contains("--max-file-spans"), "{said}");
}

#[test]
fn unwritable_file_is_a_clear_error() {
    let mut exporter = JaegerJsonFile::new("/nonexistent-dir/trace.json");
    exporter.export(&reference_batch()).unwrap();
    let err = exporter.finish().unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent-dir/trace.json") && err.contains("writable"),
        "{err}"
    );
}
