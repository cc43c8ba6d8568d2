//! The OTLP/HTTP uploader against a local receiver that decodes what it gets with
//! opentelemetry-proto.

mod support;

use microspan_decoder::export::{ExportError, Exporter, OtlpHttp, UploadConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use support::scenarios::{self, Protocol};
use support::*;

const OTLP: Protocol = Protocol {
    make: |url, config| Box::new(OtlpHttp::new(url, config).unwrap()),
    decode: otlp_span_ids,
    ok: 200,
    path: "/v1/traces",
    content_type: "application/x-protobuf",
    retries_500: false,
};

#[test]
fn retryable_answers_then_success() {
    scenarios::retryable_answers_then_success(&OTLP);
}

#[test]
fn retry_after_seconds_is_honoured() {
    scenarios::retry_after_seconds_is_honoured(&OTLP);
}

#[test]
fn bad_request_is_not_retried() {
    scenarios::bad_request_is_not_retried(&OTLP);
}

#[test]
fn refused_credentials_keep_the_spans_for_the_next_run() {
    scenarios::refused_credentials_keep_the_spans_for_the_next_run(&OTLP);
}

#[test]
fn server_error() {
    scenarios::server_error(&OTLP);
}

#[test]
fn collector_down_for_a_while() {
    scenarios::collector_down_for_a_while(&OTLP);
}

#[test]
fn spool_then_replay_next_run() {
    scenarios::spool_then_replay_next_run(&OTLP);
}

#[test]
fn earlier_runs_are_counted_apart() {
    scenarios::earlier_runs_are_counted_apart(&OTLP);
}

#[test]
fn stopping_the_wait_spools_what_is_pending() {
    scenarios::stopping_the_wait_spools_what_is_pending(&OTLP);
}

#[test]
fn no_spool_counts_drops() {
    scenarios::no_spool_counts_drops(&OTLP);
}

#[test]
fn an_html_page_is_not_a_collector() {
    scenarios::an_html_page_is_not_a_collector(&OTLP);
}

#[test]
fn redirects_are_not_followed() {
    scenarios::redirects_are_not_followed(&OTLP);
}

#[test]
fn too_large_requests_are_split() {
    scenarios::too_large_requests_are_split(&OTLP);
}

#[test]
fn a_collector_refusing_every_size_rejects_single_spans() {
    scenarios::a_collector_refusing_every_size_rejects_single_spans(&OTLP);
}

#[test]
fn a_spooled_request_too_large_is_split() {
    scenarios::a_spooled_request_too_large_is_split(&OTLP);
}

#[test]
fn the_halves_of_a_split_request_are_kept_when_the_collector_fails() {
    scenarios::the_halves_of_a_split_request_are_kept_when_the_collector_fails(&OTLP);
}

/// Without a spool, a wait that is stopped says the spans are lost, and they are counted.
#[test]
fn without_a_spool_a_stopped_wait_counts_the_spans_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        spool_dir: None,
        finish_timeout: std::time::Duration::from_secs(60),
        ..fast_config(dir.path())
    };
    let mut exporter = OtlpHttp::new(&format!("http://127.0.0.1:{}", free_port()), config).unwrap();
    exporter.export(&numbered_batch(1, 3)).unwrap();
    exporter.begin_finish();
    let pending = exporter.pending().expect("waiting");
    assert_eq!((pending.spans, pending.in_memory), (3, 3), "{pending}");
    assert!(pending.spool.is_none());
    assert!(pending.fate().contains("lost"), "{}", pending.fate());
    exporter.stop_waiting();
    let summary = exporter.finish().unwrap();
    assert_eq!((summary.dropped, summary.spooled), (3, 0), "{summary}");
    assert!(!summary.is_complete());
}

#[test]
fn partial_success_is_reported_not_retried() {
    let answer = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "spans too old".into(),
        }),
    };
    let rx = Receiver::start(
        vec![Reply::status(200)
            .header("Content-Type", "application/x-protobuf")
            .body(answer.encode_to_vec())],
        Reply::status(200),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = OtlpHttp::new(&rx.url(), fast_config(dir.path())).unwrap();
    exporter.export(&numbered_batch(1, 3)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(rx.received().len(), 1, "not retried");
    assert_eq!((summary.delivered, summary.rejected), (1, 2), "{summary}");
    let text = summary
        .errors
        .iter()
        .find(|e| matches!(e, ExportError::PartiallyRejected { spans: 2, .. }))
        .expect("a PartiallyRejected error")
        .to_string();
    assert!(text.contains("spans too old"), "{text}");
}

#[test]
fn the_reference_trace_arrives_as_mapped() {
    let rx = Receiver::start(vec![], Reply::status(200));
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = OtlpHttp::new(
        &format!("{}/v1/traces", rx.url()),
        UploadConfig {
            max_spans_per_request: 100,
            ..fast_config(dir.path())
        },
    )
    .unwrap();
    exporter.export(&reference_batch()).unwrap();
    assert!(exporter.finish().unwrap().is_complete());
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v1/traces", "not appended twice");
    let request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            &got[0].body[..],
        )
        .unwrap();
    assert_eq!(
        request,
        microspan_decoder::export::to_otlp_request(&reference_batch())
    );
}

#[test]
fn invalid_urls_are_refused_with_an_example() {
    let err = OtlpHttp::new("localhost:4318", UploadConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("http://localhost:4318"), "{err}");
}

/// An OTLP/HTTP collector answers a protobuf request with a protobuf `ExportTraceServiceResponse`
/// (or no body at all). A 200 of another content type, or a protobuf body that is no such
/// response, comes from some other server: nothing is counted delivered, and the error says
/// what came back and what was expected.
#[test]
fn a_success_that_is_not_an_otlp_response_is_not_delivered() {
    for (reply, says) in [
        (
            Reply::status(200)
                .header("Content-Type", "application/json")
                .body(r#"{"partialSuccess":{}}"#),
            "Content-Type application/json",
        ),
        (
            Reply::status(200)
                .header("Content-Type", "text/plain")
                .body("OK"),
            "Content-Type text/plain",
        ),
        (Reply::status(200).body("OK"), "no Content-Type"),
        (
            Reply::status(200)
                .header("Content-Type", "application/x-protobuf")
                .body(vec![0xff; 8]),
            "not an OTLP ExportTraceServiceResponse",
        ),
    ] {
        let rx = Receiver::start(vec![], reply);
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = OtlpHttp::new(&rx.url(), fast_config(dir.path())).unwrap();
        exporter.export(&numbered_batch(1, 3)).unwrap();
        let summary = exporter.finish().unwrap();
        assert_eq!(rx.received().len(), 1, "not retried");
        assert_eq!(
            (summary.delivered, summary.rejected, summary.spooled),
            (0, 3, 0),
            "{says}: {summary}"
        );
        let text = summary.errors[0].to_string();
        assert!(
            text.contains(says) && text.contains("application/x-protobuf") && text.contains("4318"),
            "{text}"
        );
    }
}

/// What a collector may answer: an empty body (whatever its content type) or a protobuf
/// response, its media type in any case and with parameters.
#[test]
fn otlp_successes_are_delivered() {
    let answer = ExportTraceServiceResponse {
        partial_success: None,
    };
    let rx = Receiver::start(
        vec![
            Reply::status(200).header("Content-Type", "application/json"),
            Reply::status(200)
                .header("Content-Type", "Application/X-Protobuf; charset=binary")
                .body(answer.encode_to_vec()),
        ],
        Reply::status(200).header("Content-Type", "application/x-protobuf"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = OtlpHttp::new(&rx.url(), fast_config(dir.path())).unwrap();
    for i in 0..3 {
        exporter.export(&numbered_batch(1 + i * 3, 3)).unwrap();
    }
    let summary = exporter.finish().unwrap();
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_eq!(
        (rx.received().len(), summary.delivered),
        (3, 9),
        "{summary}"
    );
}
