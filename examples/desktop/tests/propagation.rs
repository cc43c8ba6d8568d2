//! The `propagation` example, run as a user runs it: its device spans must join the backend's
//! trace (the incoming `traceparent`), and the headers it prints must let the backend continue
//! the trace under the device's client span.
//!
//! The incoming context is not the example's default, so a run that ignored the command line
//! fails; the ids are read back from the decoded stream, not from the example's own output.

use std::path::PathBuf;
use std::process::Command;

use microspan_decoder::assemble::Options;
use microspan_decoder::model::{RefKind, Span, Value};
use microspan_decoder::stream::{StreamDecoder, StreamStats};

/// The backend's trace (T) and span (P): the W3C specification's second example, not the
/// example's built-in default.
const TRACE: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;
const PARENT: u64 = 0xb7ad_6b71_6920_3331;
/// Baggage from the backend: one plain item, one whose value needs percent-encoding.
const BAGGAGE_IN: &str = "tenant=initech, order=A%2017";

/// What one run of the example gave.
struct Run {
    /// The headers it printed, in order.
    headers: Vec<(String, String)>,
    spans: Vec<Span>,
    stats: StreamStats,
    service: Option<String>,
}

impl Run {
    /// The value of the one header named `name`.
    fn header(&self, name: &str) -> &str {
        let found: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(found.len(), 1, "one {name} header in {:?}", self.headers);
        found[0]
    }

    fn span(&self, name: &str) -> &Span {
        let found: Vec<&Span> = self.spans.iter().filter(|s| s.operation == name).collect();
        assert_eq!(found.len(), 1, "one span named {name}");
        found[0]
    }
}

/// Runs the example with the incoming `traceparent` and `baggage`, and decodes its stream.
fn run(case: &str, traceparent: &str, baggage: &str) -> Run {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("propagation-{case}.bin"));
    let _ = std::fs::remove_file(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_propagation"))
        .arg(&out)
        .args(["--traceparent", traceparent, "--baggage", baggage])
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "example failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("headers are UTF-8");
    let headers = stdout
        .lines()
        .map(|l| {
            let (n, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("not a header: {l:?}"));
            (n.to_string(), v.to_string())
        })
        .collect();

    let bytes = std::fs::read(&out).expect("the example wrote its stream");
    let mut decoder = StreamDecoder::new(Options {
        fixed_anchor_unix_nanos: None, // the example sends its wall clock
        host_name: None,
        decoder_host: None,
        host_clock: None,
        ..Options::default()
    });
    let mut batches = Vec::new();
    decoder
        .feed(&bytes, &mut batches)
        .expect("a readable stream");
    decoder.finish(&mut batches);
    let stats = decoder.stats();
    assert!(
        !stats.anything_wrong() && stats.problems().is_empty(),
        "a clean stream: {:?} {:?}",
        stats.troubles(),
        stats.problems()
    );
    let _ = std::fs::remove_file(&out);
    Run {
        headers,
        spans: batches.into_iter().flat_map(|b| b.spans).collect(),
        service: decoder.service().map(str::to_string),
        stats,
    }
}

/// `00-{trace}-{span}-{flags}` → (trace, span, flags), checking the form the example writes.
fn parse_traceparent(v: &str) -> (u128, u64, u8) {
    let parts: Vec<&str> = v.split('-').collect();
    assert!(
        parts.len() == 4 && parts[0] == "00" && parts[1].len() == 32 && parts[2].len() == 16,
        "traceparent {v:?}"
    );
    let hex = |s: &str| u128::from_str_radix(s, 16).expect("hex");
    (hex(parts[1]), hex(parts[2]) as u64, hex(parts[3]) as u8)
}

/// `{trace}:{span}:{parent}:{flags}` → (trace, span, flags).
fn parse_uber_trace_id(v: &str) -> (u128, u64, u8) {
    let parts: Vec<&str> = v.split(':').collect();
    assert_eq!(parts.len(), 4, "uber-trace-id {v:?}");
    let hex = |s: &str| u128::from_str_radix(s, 16).expect("hex");
    assert_eq!(hex(parts[2]), 0, "the deprecated parent field is 0");
    (hex(parts[0]), hex(parts[1]) as u64, hex(parts[3]) as u8)
}

#[test]
fn sampled_command_joins_the_backend_trace_and_the_upload_continues_it() {
    let r = run(
        "sampled",
        &format!("00-{TRACE:032x}-{PARENT:016x}-01"),
        BAGGAGE_IN,
    );
    assert_eq!(r.service.as_deref(), Some("valve-controller"));
    assert_eq!(r.stats.spans.spans, 3);
    let names: Vec<&str> = r.spans.iter().map(|s| s.operation.as_str()).collect();
    for name in ["handle-command", "actuate", "upload-reading"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    // backend → device: every device span is in the backend's trace, carries its baggage, and
    // the top one is a ChildOf the backend's span.
    for s in &r.spans {
        assert_eq!(
            s.trace_id, TRACE,
            "{} in the backend's trace {TRACE:032x}, not {:032x}",
            s.operation, s.trace_id
        );
        assert_ne!(s.span_id, PARENT, "{} has an id of its own", s.operation);
        assert!(!s.incomplete && s.warnings.is_empty(), "{s:?}");
        let baggage: Vec<(&str, &str)> = s
            .baggage
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(
            baggage.contains(&("tenant", "initech")) && baggage.contains(&("order", "A 17")),
            "{}: backend baggage in {baggage:?}",
            s.operation
        );
    }
    let handle = r.span("handle-command");
    assert_eq!(handle.parent_span_id(), Some(PARENT));
    let parent_ref = &handle.references[handle.parent_index().expect("a parent")];
    assert_eq!(parent_ref.kind, RefKind::ChildOf);
    assert_eq!(parent_ref.trace_id, TRACE);
    assert_eq!(r.span("actuate").parent_span_id(), Some(handle.span_id));
    let upload = r.span("upload-reading");
    assert_eq!(upload.parent_span_id(), Some(handle.span_id));
    assert!(
        matches!(upload.tag("span.kind"), Some(Value::Str(k)) if k.as_str() == "client"),
        "upload-reading is the client span of the request"
    );

    // device → backend: the injected context names the client span, in the same trace, sampled.
    let (traceparent, uber) = (r.header("traceparent"), r.header("uber-trace-id"));
    let want = (TRACE, upload.span_id, 0x01);
    let why = format!(
        "{traceparent} / {uber}: trace {TRACE:032x}, span {:016x}",
        upload.span_id
    );
    assert_eq!(parse_traceparent(traceparent), want, "{why}");
    assert_eq!(parse_uber_trace_id(uber), want, "{why}");

    // The backend's baggage goes on (re-encoded), with the item the device added.
    let members: Vec<&str> = r.header("baggage").split(',').collect();
    assert!(members.contains(&"tenant=initech"), "{members:?}");
    assert!(members.contains(&"order=A%2017"), "{members:?}");
    assert!(members.iter().any(|m| m.starts_with("device.id=")));
    assert_eq!(r.header("uberctx-tenant"), "initech");
    assert_eq!(r.header("uberctx-order"), "A%2017");
}

#[test]
fn unsampled_command_records_nothing_and_passes_the_decision_on() {
    let r = run(
        "unsampled",
        &format!("00-{TRACE:032x}-{PARENT:016x}-00"),
        BAGGAGE_IN,
    );
    // The stream was read (its session record names the device), and held no span.
    assert_eq!(r.service.as_deref(), Some("valve-controller"));
    assert!(r.stats.spans.frames >= 1);
    assert!(r.spans.is_empty(), "{:?}", r.spans);
    assert_eq!(r.stats.spans.spans, 0);

    // The trace goes on unsampled: same trace, a span id of the device's (not the backend's).
    let (traceparent, uber) = (r.header("traceparent"), r.header("uber-trace-id"));
    let (t, s, f) = parse_traceparent(traceparent);
    assert_eq!((t, f), (TRACE, 0x00), "{traceparent}");
    assert!(
        s != 0 && s != PARENT,
        "{traceparent}: a span id of the device's"
    );
    assert_eq!(parse_uber_trace_id(uber), (TRACE, s, 0x00), "{uber}");
    // Baggage travels whether or not the trace is sampled.
    assert!(r
        .header("baggage")
        .split(',')
        .any(|m| m == "tenant=initech"));
}
