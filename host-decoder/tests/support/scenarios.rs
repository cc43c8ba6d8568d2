//! Upload scenarios shared by the OTLP and the Thrift uploader tests.

use std::time::{Duration, Instant, SystemTime};

use microspan_decoder::export::{ExportError, Exporter, UploadConfig};

use super::*;

/// What differs between the two uploaders.
pub struct Protocol {
    /// Builds the exporter for a receiver's base URL (`http://127.0.0.1:PORT`).
    pub make: fn(&str, UploadConfig) -> Box<dyn Exporter>,
    /// Span ids in one request body, decoded with the real protocol types.
    pub decode: fn(&[u8]) -> Vec<u64>,
    /// The success status the real collector answers.
    pub ok: u16,
    /// The path requests must go to.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Whether HTTP 500 is retried (Jaeger Thrift) or refused at once (OTLP).
    pub retries_500: bool,
}

fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

/// Every spool subdirectory under `dir` is empty.
fn assert_nothing_spooled(dir: &std::path::Path) {
    let empty = |d: std::path::PathBuf| std::fs::read_dir(d).unwrap().next().is_none();
    assert!(
        std::fs::read_dir(dir)
            .unwrap()
            .all(|d| empty(d.unwrap().path())),
        "nothing spooled"
    );
}

/// 503 (without and with Retry-After), 429, 502, 504, then success: every span exactly once.
pub fn retryable_answers_then_success(p: &Protocol) {
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    let rx = Receiver::start(
        vec![
            Reply::status(503),
            Reply::status(503).header("Retry-After", "0"),
            Reply::status(429).header("Retry-After", &past),
            Reply::status(502),
            Reply::status(504),
        ],
        Reply::status(p.ok),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        max_attempts: 10,
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&rx.url(), config);
    exporter.export(&numbered_batch(1, 4)).unwrap();
    exporter.export(&numbered_batch(5, 3)).unwrap();
    let summary = exporter.finish().unwrap();
    let got = rx.received();
    assert_eq!(
        accepted_ids(&got, p.decode),
        ids(1..=7),
        "every span exactly once"
    );
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_eq!(summary.delivered, 7);
    assert_eq!(summary.retries, 5, "{summary}");
    assert_eq!(
        got.len(),
        5 + 3,
        "3 requests of ≤3 spans, 5 retried answers"
    );
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", p.path));
        assert_eq!(r.content_type, p.content_type);
    }
}

/// `Retry-After: 1` makes the uploader wait a second before the next try.
pub fn retry_after_seconds_is_honoured(p: &Protocol) {
    let rx = Receiver::start(
        vec![Reply::status(503).header("Retry-After", "1")],
        Reply::status(p.ok),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = (p.make)(&rx.url(), fast_config(dir.path()));
    exporter.export(&numbered_batch(1, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    let got = rx.received();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert_eq!(accepted_ids(&got, p.decode), ids(1..=2));
    assert!(summary.is_complete(), "{summary}");
}

/// 400 is not retried: one request, the spans counted as rejected, a clear error.
pub fn bad_request_is_not_retried(p: &Protocol) {
    let rx = Receiver::start(
        vec![Reply::status(400).body("bad request: no spans")],
        Reply::status(p.ok),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = (p.make)(&rx.url(), fast_config(dir.path()));
    exporter.export(&numbered_batch(1, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(rx.received().len(), 1, "not retried");
    assert_eq!(
        (summary.delivered, summary.rejected, summary.spooled),
        (0, 2, 0)
    );
    assert!(!summary.is_complete());
    let err = summary
        .errors
        .iter()
        .find(|e| matches!(e, ExportError::Rejected { status: 400, .. }));
    let text = err.expect("a Rejected error").to_string();
    assert!(
        text.contains("HTTP 400")
            && text.contains("bad request: no spans")
            && text.contains("not retried"),
        "{text}"
    );
    assert_nothing_spooled(dir.path());
}

/// 401 and 403: the spans are not at fault, the credentials are. The first request is refused,
/// the later ones are not sent in this run, and every span is kept in the spool; the next run,
/// with credentials the collector takes, delivers each exactly once. The error says what to fix
/// and that the spans are kept.
pub fn refused_credentials_keep_the_spans_for_the_next_run(p: &Protocol) {
    for status in [401, 403] {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let config = fast_config(dir.path());
        let rx = Receiver::start_on(port, vec![], Reply::status(status).body("token expired"));
        let mut exporter = (p.make)(&url, config.clone());
        for i in 0..4 {
            exporter.export(&numbered_batch(1 + i * 3, 3)).unwrap();
        }
        let summary = exporter.finish().unwrap();
        assert_eq!(
            rx.received().len(),
            1,
            "HTTP {status}: one request, then none"
        );
        assert_eq!(
            (
                summary.delivered,
                summary.rejected,
                summary.spooled,
                summary.dropped
            ),
            (0, 0, 12, 0),
            "HTTP {status}: {summary}"
        );
        assert!(!summary.is_complete());
        let text = summary
            .errors
            .iter()
            .find(|e| matches!(e, ExportError::CredentialsRefused { .. }))
            .expect("a CredentialsRefused error")
            .to_string();
        assert!(
            text.contains(&format!("refused the credentials with HTTP {status}"))
                && text.contains("token expired")
                && text.contains("--header-env")
                && text.contains("12 spans are kept in the spool")
                && text.contains("next run"),
            "{text}"
        );
        assert!(
            !summary.errors.iter().any(|e| matches!(
                e,
                ExportError::Unreachable { .. } | ExportError::Rejected { .. }
            )),
            "{:?}",
            summary.errors
        );
        drop(rx);

        let rx = Receiver::start_on(port, vec![], Reply::status(p.ok));
        let mut exporter = (p.make)(&url, config);
        let summary = exporter.finish().unwrap();
        assert_eq!(
            (summary.replayed, summary.delivered, summary.spooled),
            (12, 12, 0),
            "HTTP {status}, then accepted: {summary}"
        );
        assert_eq!(
            accepted_ids(&rx.received(), p.decode),
            ids(1..=12),
            "every span exactly once"
        );
        assert_nothing_spooled(dir.path());
    }
}

/// HTTP 500: Jaeger's answer when its pipeline refuses a parsed batch, which may pass: retried,
/// and once the attempts are spent rejected with the collector's message, never parked (a batch
/// refused for good would come back from the spool forever). OTLP says 500 is not retryable:
/// one request, rejected.
pub fn server_error(p: &Protocol) {
    // A 500 that passes: delivered after one retry.
    let rx = Receiver::start(vec![Reply::status(500)], Reply::status(p.ok));
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = (p.make)(&rx.url(), fast_config(dir.path()));
    exporter.export(&numbered_batch(1, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    if p.retries_500 {
        assert_eq!(accepted_ids(&rx.received(), p.decode), ids(1..=2));
        assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
        assert_eq!((rx.received().len(), summary.retries), (2, 1), "{summary}");
    } else {
        assert_eq!(rx.received().len(), 1, "not retried");
        assert_eq!((summary.delivered, summary.rejected), (0, 2), "{summary}");
    }

    // A 500 that does not pass: `max_attempts` requests, then rejected with the body.
    let body = "Cannot submit Jaeger batch: queue is full";
    let rx = Receiver::start(vec![], Reply::status(500).body(body));
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(dir.path());
    let attempts = if p.retries_500 {
        config.max_attempts
    } else {
        1
    };
    let mut exporter = (p.make)(&rx.url(), config);
    exporter.export(&numbered_batch(1, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(rx.received().len(), attempts as usize);
    assert_eq!(
        (summary.delivered, summary.rejected, summary.spooled),
        (0, 2, 0),
        "{summary}"
    );
    let err = summary
        .errors
        .iter()
        .find(|e| matches!(e, ExportError::Rejected { status: 500, .. }));
    let text = err.expect("a Rejected error").to_string();
    let tried = if p.retries_500 {
        format!("still refused after {attempts} attempts")
    } else {
        "not retried".to_string()
    };
    assert!(
        text.contains("HTTP 500") && text.contains(body) && text.contains(&tried),
        "{text}"
    );
    assert_nothing_spooled(dir.path());

    // A retryable 500 whose Retry-After is longer than max_retry_after (2 s here): rejected at
    // once, and the error says why rather than only "not retried".
    if p.retries_500 {
        let rx = Receiver::start(vec![], Reply::status(500).header("Retry-After", "3600"));
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = (p.make)(&rx.url(), fast_config(dir.path()));
        exporter.export(&numbered_batch(1, 2)).unwrap();
        let summary = exporter.finish().unwrap();
        assert_eq!(rx.received().len(), 1);
        assert_eq!((summary.delivered, summary.rejected), (0, 2), "{summary}");
        let text = summary.errors[0].to_string();
        assert!(text.contains("Retry-After"), "{text}");
    }
}

/// The collector is down (connection refused) for a while, then comes up: everything arrives
/// exactly once.
pub fn collector_down_for_a_while(p: &Protocol) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = (p.make)(&format!("http://127.0.0.1:{port}"), fast_config(dir.path()));
    let started = Instant::now();
    for i in 0..6 {
        exporter.export(&numbered_batch(1 + i * 5, 5)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
    }
    std::thread::sleep(Duration::from_millis(
        300u64.saturating_sub(started.elapsed().as_millis() as u64),
    ));
    let rx = Receiver::start_on(port, vec![], Reply::status(p.ok));
    exporter.export(&numbered_batch(31, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    let got = rx.received();
    assert_eq!(
        accepted_ids(&got, p.decode),
        ids(1..=32),
        "every span exactly once"
    );
    assert_eq!(
        (summary.delivered, summary.spooled, summary.dropped),
        (32, 0, 0),
        "{summary}"
    );
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
}

/// A full queue spills to the spool; what is still there at the deadline stays on disk and the
/// next run replays it.
pub fn spool_then_replay_next_run(p: &Protocol) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        queue_capacity: 1,
        finish_timeout: Duration::from_millis(200),
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&url, config.clone());
    for i in 0..10 {
        exporter.export(&numbered_batch(1 + i * 3, 3)).unwrap();
    }
    let summary = exporter.finish().unwrap();
    assert_eq!(
        (summary.spans_in, summary.delivered, summary.dropped),
        (30, 0, 0),
        "{summary}"
    );
    assert_eq!(summary.spooled, 30, "{summary}");
    let spool_files: usize = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(spool_files, 10, "one file per request");
    let err = summary
        .errors
        .iter()
        .find(|e| matches!(e, ExportError::Unreachable { .. }));
    let text = err.expect("an Unreachable error").to_string();
    assert!(
        text.contains("30 spans") && text.contains("next run"),
        "{text}"
    );

    let rx = Receiver::start_on(port, vec![], Reply::status(p.ok));
    let mut exporter = (p.make)(
        &url,
        UploadConfig {
            finish_timeout: Duration::from_secs(5),
            ..config
        },
    );
    let summary = exporter.finish().unwrap();
    assert_eq!(
        (summary.replayed, summary.delivered, summary.spooled),
        (30, 30, 0),
        "{summary}"
    );
    assert_eq!(
        accepted_ids(&rx.received(), p.decode),
        ids(1..=30),
        "every span exactly once"
    );
    let left: usize = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(left, 0, "the spool is empty after replay");
}

/// Without a spool, what does not fit in the queue is dropped and counted, not hidden.
pub fn no_spool_counts_drops(p: &Protocol) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        spool_dir: None,
        queue_capacity: 1,
        finish_timeout: Duration::from_millis(100),
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&format!("http://127.0.0.1:{port}"), config);
    let mut refused = 0;
    for i in 0..10 {
        if let Err(e) = exporter.export(&numbered_batch(1 + i * 3, 3)) {
            assert!(e.to_string().contains("no spool directory"), "{e}");
            refused += 3;
        }
    }
    let summary = exporter.finish().unwrap();
    assert!(refused > 0);
    assert_eq!(summary.delivered, 0);
    assert_eq!(summary.dropped, 30, "{summary}");
    assert!(!summary.is_complete());
}

/// Spans an earlier run left in the spool are counted apart from this run's: in the fields, and
/// in the summary line, both while they stay spooled and once they are replayed.
pub fn earlier_runs_are_counted_apart(p: &Protocol) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        finish_timeout: Duration::from_millis(200),
        ..fast_config(dir.path())
    };
    // Runs 1 and 2: the collector is down.
    let mut exporter = (p.make)(&url, config.clone());
    exporter.export(&numbered_batch(1, 6)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(
        (summary.spooled, summary.spooled_earlier),
        (6, 0),
        "{summary}"
    );
    assert!(
        !summary.to_string().contains("earlier"),
        "nothing from earlier runs: {summary}"
    );
    let mut exporter = (p.make)(&url, config.clone());
    exporter.export(&numbered_batch(7, 3)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(
        (summary.spans_in, summary.spooled, summary.spooled_earlier),
        (3, 9, 6),
        "{summary}"
    );
    assert!(
        summary.to_string().contains(
            "3 spans in, 0 delivered, 0 rejected, 3 spooled, 0 dropped; \
             from earlier runs: 6 spans were in the spool, 0 replayed, 6 still spooled"
        ),
        "{summary}"
    );
    assert!(!summary.is_complete());

    // Run 3: it is back.
    let rx = Receiver::start_on(port, vec![], Reply::status(p.ok));
    let mut exporter = (p.make)(
        &url,
        UploadConfig {
            finish_timeout: Duration::from_secs(5),
            ..config
        },
    );
    exporter.export(&numbered_batch(10, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(
        (
            summary.delivered,
            summary.replayed,
            summary.spooled,
            summary.spooled_earlier
        ),
        (11, 9, 0, 0),
        "{summary}"
    );
    assert!(
        summary.to_string().contains(
            "2 spans in, 2 delivered, 0 rejected, 0 spooled, 0 dropped; \
             from earlier runs: 9 spans were in the spool, 9 replayed, 0 still spooled"
        ),
        "{summary}"
    );
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_eq!(accepted_ids(&rx.received(), p.decode), ids(1..=11));
}

/// The end of a run with the collector down: `pending` says what is waited for, for how long
/// and where it goes; while it waits the queue moves to the spool (a kill loses nothing queued);
/// `stop_waiting` ends the wait at once, everything spooled, none lost.
pub fn stopping_the_wait_spools_what_is_pending(p: &Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        finish_timeout: Duration::from_secs(60),
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&format!("http://127.0.0.1:{}", free_port()), config);
    for i in 0..4 {
        exporter.export(&numbered_batch(1 + i * 3, 3)).unwrap();
    }
    assert!(
        exporter.pending().is_some(),
        "spans are pending before the end"
    );
    exporter.begin_finish();
    let t0 = Instant::now();
    let pending = loop {
        let pending = exporter.pending().expect("the wait goes on");
        if pending.in_memory == 0 {
            break pending;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the queue stays in memory: {pending}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!((pending.spans, pending.earlier), (12, 0), "{pending}");
    assert!(pending.time_left > Duration::from_secs(45), "{pending}");
    assert!(pending.last_error.is_some(), "{pending}");
    let spool = pending.spool.clone().expect("a spool");
    assert!(spool.starts_with(dir.path()), "{}", spool.display());
    assert!(
        pending.fate().contains(spool.to_str().unwrap()),
        "{}",
        pending.fate()
    );
    let text = pending.to_string();
    assert!(text.contains("12 spans pending, for at most"), "{text}");

    let stopped = Instant::now();
    exporter.stop_waiting();
    let summary = exporter.finish().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "finish took {:?} after stop_waiting",
        stopped.elapsed()
    );
    assert_eq!(
        (summary.spooled, summary.dropped, summary.delivered),
        (12, 0, 0),
        "{summary}"
    );
    assert!(!summary.is_complete());
}

/// Every error of a run, one a line.
fn error_text(summary: &microspan_decoder::export::ExportSummary) -> String {
    summary.errors.iter().map(|e| format!("{e}\n")).collect()
}

/// What the Jaeger UI (port 16686) answers to any request, a POST included, with HTTP 200.
pub const JAEGER_UI_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Jaeger UI</title></head><body><div id=\"jaeger-ui-root\"></div></body></html>";

/// The Jaeger UI's port answers every POST with its index page and HTTP 200: not a collector.
/// Nothing is counted delivered: the spans are rejected as for a wrong path (a 404), not retried
/// nor spooled, and one error says what the server looks like and which ports are the
/// collector's. With or without a `Content-Type`.
pub fn an_html_page_is_not_a_collector(p: &Protocol) {
    for reply in [
        Reply::status(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(JAEGER_UI_PAGE),
        Reply::status(200).body(format!("\n  {}", JAEGER_UI_PAGE.to_uppercase())),
    ] {
        let rx = Receiver::start(vec![], reply);
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = (p.make)(&rx.url(), fast_config(dir.path()));
        exporter.export(&numbered_batch(1, 3)).unwrap();
        exporter.export(&numbered_batch(4, 2)).unwrap();
        let summary = exporter.finish().unwrap();
        assert_eq!(rx.received().len(), 2, "one request each, not retried");
        assert_eq!(
            (
                summary.delivered,
                summary.rejected,
                summary.spooled,
                summary.dropped
            ),
            (0, 5, 0, 0),
            "{summary}"
        );
        assert!(!summary.is_complete());
        let text = error_text(&summary);
        assert_eq!(
            summary.errors.len(),
            1,
            "one line for both requests: {text}"
        );
        assert!(
            text.contains("HTTP 200 with an HTML page")
                && text.contains("5 spans not delivered")
                && text.contains("the Jaeger UI (port 16686), not the collector")
                && text.contains("4318")
                && text.contains("14268"),
            "{text}"
        );
        assert_nothing_spooled(dir.path());
    }
}

/// A redirect is not followed (ureq resent a 301 as a GET without its body, and followed a 308
/// until it failed, then retried and spooled the request forever): one request, no retry,
/// nothing spooled, and the error names where the server redirects to, relative locations
/// resolved against the upload URL.
pub fn redirects_are_not_followed(p: &Protocol) {
    for (status, location) in [
        (301, "/moved/here"),
        (307, "http://127.0.0.1:{port}/elsewhere"),
        (308, "https://collector.example.invalid/v1/traces"),
    ] {
        let port = free_port();
        let location = location.replace("{port}", &port.to_string());
        let rx = Receiver::start_on(
            port,
            vec![Reply::status(status).header("Location", &location)],
            // What a followed redirect would get.
            Reply::status(p.ok),
        );
        let shown = if location.starts_with('/') {
            format!("{}{location}", rx.url())
        } else {
            location.clone()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = (p.make)(&rx.url(), fast_config(dir.path()));
        exporter.export(&numbered_batch(1, 2)).unwrap();
        let summary = exporter.finish().unwrap();
        let got = rx.received();
        assert_eq!(got.len(), 1, "HTTP {status}: one request, not followed");
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", p.path)
        );
        assert_eq!(
            (
                summary.delivered,
                summary.rejected,
                summary.spooled,
                summary.retries
            ),
            (0, 2, 0, 0),
            "HTTP {status}: {summary}"
        );
        let text = error_text(&summary);
        assert!(
            text.contains(&format!("redirects to {shown} (HTTP {status})"))
                && text.contains("use that URL"),
            "{text}"
        );
        assert_nothing_spooled(dir.path());
    }
}

/// A receiver that takes at most `limit` spans a request and answers 413 to larger ones.
fn taking_at_most(p: &Protocol, port: u16, limit: usize) -> Receiver {
    let (decode, ok) = (p.decode, p.ok);
    Receiver::answering(port, move |request| {
        if decode(&request.body).len() > limit {
            Reply::status(413).body("request body too large")
        } else {
            Reply::status(ok)
        }
    })
}

/// A collector that takes at most 3 spans a request answers 413 to larger ones: each such
/// request is split in halves and sent again, down to what it takes. Every span arrives once,
/// none is rejected, and a note says how to avoid the extra requests.
pub fn too_large_requests_are_split(p: &Protocol) {
    let rx = taking_at_most(p, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        max_spans_per_request: 16,
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&rx.url(), config);
    exporter.export(&numbered_batch(1, 16)).unwrap();
    exporter.export(&numbered_batch(17, 5)).unwrap();
    let summary = exporter.finish().unwrap();
    let got = rx.received();
    assert_eq!(
        accepted_ids(&got, p.decode),
        ids(1..=21),
        "every span exactly once"
    );
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_eq!((summary.delivered, summary.rejected), (21, 0), "{summary}");
    // 16 → 2 × 8 → 4 × 4 → 8 × 2 accepted; 5 → 2 + 3 accepted.
    let sizes: Vec<(usize, u16)> = got
        .iter()
        .map(|r| ((p.decode)(&r.body).len(), r.answered))
        .collect();
    assert_eq!(got.len(), 15 + 3, "{sizes:?}");
    assert_eq!(summary.retries, 0, "a split is not a retry: {summary}");
    let notes = summary.notes.join("\n");
    assert!(
        notes.contains("HTTP 413") && notes.contains("--max-spans-per-request"),
        "{notes}"
    );
    assert_nothing_spooled(dir.path());
}

/// A collector that refuses every request as too large: split down to single spans, each
/// refused once (2n − 1 requests for n spans), all rejected, and one error that says even one
/// span is too large.
pub fn a_collector_refusing_every_size_rejects_single_spans(p: &Protocol) {
    let rx = Receiver::start(vec![], Reply::status(413).body("request body too large"));
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        max_spans_per_request: 4,
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&rx.url(), config);
    exporter.export(&numbered_batch(1, 4)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(rx.received().len(), 7, "4 + 2 + 1 requests: bounded");
    assert_eq!(
        (summary.delivered, summary.rejected, summary.spooled),
        (0, 4, 0),
        "{summary}"
    );
    assert!(
        summary.notes.is_empty(),
        "no advice on the spans per request: {:?}",
        summary.notes
    );
    let text = error_text(&summary);
    assert_eq!(summary.errors.len(), 1, "{text}");
    assert!(
        text.contains("refused 4 spans in 4 requests with HTTP 413")
            && text.contains("request body too large")
            && text.contains("a single span"),
        "{text}"
    );
    assert_nothing_spooled(dir.path());
}

/// A spooled request that is too large is split in the spool (its halves keep its place and
/// the run that wrote it), then replayed: every span once, counted as replayed.
pub fn a_spooled_request_too_large_is_split(p: &Protocol) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        max_spans_per_request: 8,
        finish_timeout: Duration::from_millis(200),
        ..fast_config(dir.path())
    };
    let mut exporter = (p.make)(&url, config.clone());
    exporter.export(&numbered_batch(1, 8)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(summary.spooled, 8, "{summary}");

    let rx = taking_at_most(p, port, 3);
    let mut exporter = (p.make)(
        &url,
        UploadConfig {
            finish_timeout: Duration::from_secs(10),
            ..config
        },
    );
    let summary = exporter.finish().unwrap();
    assert_eq!(
        accepted_ids(&rx.received(), p.decode),
        ids(1..=8),
        "every span exactly once"
    );
    assert_eq!(rx.received().len(), 1 + 2 + 4, "8 → 2 × 4 → 4 × 2");
    assert!(
        summary
            .to_string()
            .contains("from earlier runs: 8 spans were in the spool, 8 replayed, 0 still spooled"),
        "{summary}"
    );
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_nothing_spooled(dir.path());
}

/// The halves of a split request are counted and kept like any request: a collector that
/// answers 413, then 503 until the run ends, leaves both halves in the spool (none lost, none
/// rejected), and the next run delivers each span once.
pub fn the_halves_of_a_split_request_are_kept_when_the_collector_fails(p: &Protocol) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = UploadConfig {
        max_spans_per_request: 8,
        finish_timeout: Duration::from_millis(500),
        ..fast_config(dir.path())
    };
    let rx = Receiver::start_on(port, vec![Reply::status(413)], Reply::status(503));
    let mut exporter = (p.make)(&url, config.clone());
    exporter.export(&numbered_batch(1, 8)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(
        (
            summary.delivered,
            summary.rejected,
            summary.spooled,
            summary.dropped
        ),
        (0, 0, 8, 0),
        "{summary}"
    );
    assert!(rx.received().len() >= 2, "the first half was sent");
    drop(rx);

    let rx = Receiver::start_on(port, vec![], Reply::status(p.ok));
    let mut exporter = (p.make)(
        &url,
        UploadConfig {
            finish_timeout: Duration::from_secs(10),
            ..config
        },
    );
    let summary = exporter.finish().unwrap();
    assert_eq!(
        accepted_ids(&rx.received(), p.decode),
        ids(1..=8),
        "every span exactly once"
    );
    assert_eq!((summary.replayed, summary.delivered), (8, 8), "{summary}");
    assert_nothing_spooled(dir.path());
}
