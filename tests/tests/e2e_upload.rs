//! The Cortex-M3 reference stream through the decoder's uploaders (OTLP/HTTP protobuf and the
//! Jaeger Thrift collector endpoint) to a collector on 127.0.0.1 that decodes what arrives with
//! the real protocol libraries.

use std::sync::OnceLock;

use microspan_decoder::export::{Exporter, JaegerThriftHttp, OtlpHttp, UploadConfig};
use microspan_tests::qemu::{self, Board, RunOptions};
use microspan_tests::receiver::{otlp_spans, thrift_spans, ReceivedSpan, Receiver};
use microspan_tests::reference::{self, Decoded, Variant};

fn decoded() -> &'static Decoded {
    static D: OnceLock<Decoded> = OnceLock::new();
    D.get_or_init(|| {
        qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
        let elf =
            reference::build(Board::Lm3s6965, Variant::Uart).unwrap_or_else(|e| panic!("{e}"));
        let out = qemu::run_firmware(Board::Lm3s6965, &elf, &RunOptions::default()).unwrap();
        out.assert_exit(0);
        reference::decode(&out.uart).unwrap()
    })
}

/// What the decoder produced, in the receiver's terms, sorted.
fn expected() -> Vec<ReceivedSpan> {
    let mut v: Vec<ReceivedSpan> = decoded()
        .spans()
        .into_iter()
        .map(|s| ReceivedSpan {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id().unwrap_or(0),
            operation: s.operation.to_string(),
            service: "in-process-service".into(),
        })
        .collect();
    v.sort();
    v
}

fn upload(exporter: &mut dyn Exporter) {
    for b in &decoded().batches {
        exporter.export(b).unwrap();
    }
    let summary = exporter.finish().unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.delivered, 6, "{summary}");
}

#[test]
fn otlp_http_upload_arrives() {
    let rx = Receiver::start(200).unwrap();
    let mut otlp = OtlpHttp::new(&rx.url(), UploadConfig::default()).unwrap();
    upload(&mut otlp);
    let received = rx.received();
    assert!(received.iter().all(|r| r.method == "POST"
        && r.path == "/v1/traces"
        && r.content_type == "application/x-protobuf"));
    let mut spans: Vec<ReceivedSpan> = received
        .iter()
        .flat_map(|r| otlp_spans(&r.body).unwrap())
        .collect();
    spans.sort();
    assert_eq!(spans, expected());
}

#[test]
fn jaeger_thrift_upload_arrives() {
    let rx = Receiver::start(202).unwrap();
    let mut thrift =
        JaegerThriftHttp::new(&format!("{}/api/traces", rx.url()), UploadConfig::default())
            .unwrap();
    upload(&mut thrift);
    let received = rx.received();
    assert!(received.iter().all(|r| r.method == "POST"
        && r.path == "/api/traces"
        && r.content_type == "application/x-thrift"));
    let mut spans: Vec<ReceivedSpan> = received
        .iter()
        .flat_map(|r| thrift_spans(&r.body).unwrap())
        .collect();
    spans.sort();
    assert_eq!(spans, expected());
}
