//! The Jaeger Thrift uploader against a local receiver that decodes what it gets with the
//! generated Thrift types.

mod support;

use microspan_decoder::export::{Exporter, JaegerThriftHttp, UploadConfig};
use microspan_decoder::jaeger_thrift as jt;
use support::scenarios::{self, Protocol};
use support::*;
use thrift::protocol::{TBinaryInputProtocol, TSerializable};

const THRIFT: Protocol = Protocol {
    make: |url, config| {
        Box::new(JaegerThriftHttp::new(&format!("{url}/api/traces"), config).unwrap())
    },
    decode: thrift_span_ids,
    ok: 202,
    path: "/api/traces",
    content_type: "application/x-thrift",
    retries_500: true,
};

#[test]
fn retryable_answers_then_success() {
    scenarios::retryable_answers_then_success(&THRIFT);
}

#[test]
fn retry_after_seconds_is_honoured() {
    scenarios::retry_after_seconds_is_honoured(&THRIFT);
}

#[test]
fn bad_request_is_not_retried() {
    scenarios::bad_request_is_not_retried(&THRIFT);
}

#[test]
fn refused_credentials_keep_the_spans_for_the_next_run() {
    scenarios::refused_credentials_keep_the_spans_for_the_next_run(&THRIFT);
}

#[test]
fn server_error() {
    scenarios::server_error(&THRIFT);
}

#[test]
fn collector_down_for_a_while() {
    scenarios::collector_down_for_a_while(&THRIFT);
}

#[test]
fn spool_then_replay_next_run() {
    scenarios::spool_then_replay_next_run(&THRIFT);
}

#[test]
fn earlier_runs_are_counted_apart() {
    scenarios::earlier_runs_are_counted_apart(&THRIFT);
}

#[test]
fn stopping_the_wait_spools_what_is_pending() {
    scenarios::stopping_the_wait_spools_what_is_pending(&THRIFT);
}

#[test]
fn no_spool_counts_drops() {
    scenarios::no_spool_counts_drops(&THRIFT);
}

#[test]
fn an_html_page_is_not_a_collector() {
    scenarios::an_html_page_is_not_a_collector(&THRIFT);
}

#[test]
fn redirects_are_not_followed() {
    scenarios::redirects_are_not_followed(&THRIFT);
}

#[test]
fn too_large_requests_are_split() {
    scenarios::too_large_requests_are_split(&THRIFT);
}

#[test]
fn a_collector_refusing_every_size_rejects_single_spans() {
    scenarios::a_collector_refusing_every_size_rejects_single_spans(&THRIFT);
}

#[test]
fn a_spooled_request_too_large_is_split() {
    scenarios::a_spooled_request_too_large_is_split(&THRIFT);
}

#[test]
fn the_halves_of_a_split_request_are_kept_when_the_collector_fails() {
    scenarios::the_halves_of_a_split_request_are_kept_when_the_collector_fails(&THRIFT);
}

#[test]
fn the_reference_trace_arrives_as_mapped() {
    let rx = Receiver::start(vec![], Reply::status(202));
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        max_spans_per_request: 100,
        ..fast_config(dir.path())
    };
    let mut exporter = JaegerThriftHttp::new(&format!("{}/api/traces", rx.url()), config).unwrap();
    exporter.export(&reference_batch()).unwrap();
    assert!(exporter.finish().unwrap().is_complete());
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let mut input = TBinaryInputProtocol::new(&got[0].body[..], true);
    let batch = jt::Batch::read_from_in_protocol(&mut input).unwrap();
    assert_eq!(
        batch,
        microspan_decoder::export::to_thrift_batch(&reference_batch())
    );
    let bar = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "Bar")
        .unwrap();
    assert_eq!(bar.parent_span_id, FOO as i64);
    let log = &bar.logs.as_ref().unwrap()[0];
    assert_eq!(log.fields[1].v_str.as_deref(), Some("something wrong"));
}

/// Jaeger's collector answers 202 with no body. A success with a body that is not HTML (a proxy's
/// `OK`) is not clearly another server: delivered, with a note that says to check the URL.
#[test]
fn a_success_with_an_unexpected_body_is_delivered_with_a_note() {
    let rx = Receiver::start(
        vec![],
        Reply::status(200)
            .header("Content-Type", "text/plain")
            .body("OK"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exporter =
        JaegerThriftHttp::new(&format!("{}/api/traces", rx.url()), fast_config(dir.path()))
            .unwrap();
    exporter.export(&numbered_batch(1, 3)).unwrap();
    let summary = exporter.finish().unwrap();
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_eq!(summary.delivered, 3);
    let notes = summary.notes.join("\n");
    assert!(
        notes.contains("\"OK\"") && notes.contains("no body") && notes.contains("check the URL"),
        "{notes}"
    );
}
