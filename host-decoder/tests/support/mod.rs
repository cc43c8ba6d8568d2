//! Shared by the integration tests: the reference trace, snapshot comparison, and a tiny
//! HTTP/1.1 receiver on 127.0.0.1 that records what it gets and answers from a script; in
//! submodules, a simulated device (`device`), decoding what it sent (`decoding`), seeded
//! randomness (`rng`), the `microspan` binary (`cli`) and the upload scenarios (`scenarios`).
//!
//! Each test file is a crate of its own that uses some of this: what one does not use is not dead
//! code.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use microspan_decoder::model::{
    smallvec, Batch, KeyValue, Log, Process, RefKind, Reference, Span, Value,
};

pub mod cli;
pub mod decoding;
pub mod device;
pub mod rng;
pub mod scenarios;
/// The bench's recorded device workload (and its manual clock).
#[path = "../../benches/support/workload.rs"]
pub mod workload;

// ---------------------------------------------------------------- the reference trace

/// 2023-11-14T22:13:20Z, in ns.
pub const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

pub const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
/// A trace id whose high half is 0 (Jaeger prints it with 16 digits).
pub const SHORT_TRACE: u128 = 0x0000_0000_0000_0000_00f0_67aa_0ba9_02b7;

pub const ROOT: u64 = 0x1000_0000_0000_0001;
pub const FOO: u64 = 0x1000_0000_0000_0002;
pub const BAR: u64 = 0x1000_0000_0000_0003;
pub const CONSUMER: u64 = 0x1000_0000_0000_0004;
pub const TRUNCATED: u64 = 0x1000_0000_0000_0005;
pub const HUNG: u64 = 0x1000_0000_0000_0006;
pub const TYPES: u64 = 0xffff_ffff_ffff_fff7;
pub const LONE: u64 = 0x2000_0000_0000_0001;

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue::new(key, value)
}

pub fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn child_of(span_id: u64) -> Reference {
    Reference {
        kind: RefKind::ChildOf,
        trace_id: TRACE,
        span_id,
    }
}

fn span(span_id: u64, operation: &str, start: u64, duration: u64) -> Span {
    Span {
        trace_id: TRACE,
        span_id,
        operation: operation.into(),
        references: smallvec![],
        start_unix_nanos: start,
        duration_nanos: duration,
        tags: smallvec![],
        logs: smallvec![],
        baggage: Default::default(),
        flags: 1,
        warnings: vec![],
        incomplete: false,
        remote_parent: false,
    }
}

/// A span with nothing on it (no reference, tag or log) in trace [`TRACE`], at [`T0`] for 1 µs.
pub fn bare(span_id: u64, operation: &str) -> Span {
    span(span_id, operation, T0, 1_000)
}

pub fn process() -> Process {
    Process {
        service_name: "in-process-service".into(),
        tags: vec![
            kv("device.id", s("stm32-0042")),
            kv("firmware.version", s("1.2.3")),
            kv("microspan.wire_version", Value::I64(1)),
            kv("hostname", s("devbox")),
        ],
    }
}

/// The reference example (root `in-process-service` → `Foo` (1 s) → `Bar` (2 s, error log and
/// `error=true`)) plus a FollowsFrom consumer, a span with warnings, an incomplete span, baggage,
/// every value type, and a second trace with a short id. Spans are in the order they finish.
pub fn reference_batch() -> Batch {
    let mut bar = span(BAR, "Bar", T0 + S, 2 * S);
    bar.references = smallvec![child_of(FOO)];
    bar.tags = smallvec![kv("error", Value::Bool(true))];
    bar.logs = smallvec![Log {
        time_unix_nanos: T0 + 3 * S - MS,
        fields: smallvec![kv("event", s("error")), kv("message", s("something wrong"))],
    }];
    bar.baggage = vec![("user", "alice")].into();

    let mut types = span(TYPES, "all-types", T0 + 100 * MS, 5_500);
    types.references = smallvec![child_of(FOO)];
    types.tags = smallvec![
        kv("bool", Value::Bool(false)),
        kv("i64", Value::I64(-42)),
        kv("u64.small", Value::U64(7)),
        kv("u64.big", Value::U64(u64::MAX)),
        kv("f64", Value::F64(1.5)),
        kv("f64.nan", Value::F64(f64::NAN)),
        kv("str", s("text with \"quotes\"")),
        kv("span.kind", s("client")),
    ];
    types.logs = smallvec![Log {
        time_unix_nanos: T0 + 100 * MS + 2_000,
        fields: smallvec![
            kv("waited.millis", Value::U64(1500)),
            kv("type", s("cache timeout")),
        ],
    }];
    types.baggage = vec![("user", "alice")].into();

    let mut foo_span = span(FOO, "Foo", T0, 3 * S);
    foo_span.references = smallvec![child_of(ROOT)];
    foo_span.baggage = vec![("user", "alice")].into();
    // Foo set the item: it is among Foo's logs (its descendants only carry it).
    foo_span.logs = smallvec![Log {
        time_unix_nanos: T0,
        fields: smallvec![
            kv("event", s("baggage")),
            kv("key", s("user")),
            kv("value", s("alice")),
        ],
    }];

    let mut truncated = span(TRUNCATED, "truncated", T0 + 3 * S + 10 * MS, 40 * MS);
    truncated.references = smallvec![child_of(ROOT)];
    truncated.tags = smallvec![kv("component", s("uart"))];
    truncated.warnings = vec![
        "2 tags dropped: capacity 4 tags per span".into(),
        "1 log field dropped: capacity 4 fields per log".into(),
    ];

    let mut hung = span(HUNG, "flash-write", T0 + 3 * S + 60 * MS, 150 * MS);
    hung.references = smallvec![child_of(ROOT)];
    hung.incomplete = true;
    hung.flags = 3;
    hung.warnings = vec!["never finished: device reset (boot 7 → 8)".into()];

    let mut root = span(ROOT, "in-process-service", T0, 3 * S + 300 * MS);
    root.tags = smallvec![kv("span.kind", s("server")), kv("sampler.type", s("const"))];

    let mut consumer = span(CONSUMER, "consume", T0 + 3 * S + 400 * MS, 20 * MS);
    consumer.references = smallvec![
        Reference {
            kind: RefKind::FollowsFrom,
            trace_id: TRACE,
            span_id: ROOT,
        },
        Reference {
            kind: RefKind::ChildOf,
            trace_id: TRACE,
            span_id: FOO,
        },
    ];
    consumer.tags = smallvec![
        kv("span.kind", s("consumer")),
        kv("message_bus.destination", s("q")),
    ];

    let mut lone = span(LONE, "lone", T0 + 10 * S, 250_000);
    lone.trace_id = SHORT_TRACE;

    Batch {
        process: process().into(),
        spans: vec![types, bar, foo_span, truncated, hung, root, consumer, lone],
    }
}

/// `n` independent one-span traces, for the upload tests (span ids 1..=n).
pub fn numbered_batch(first: u64, n: u64) -> Batch {
    Batch {
        process: process().into(),
        spans: (first..first + n)
            .map(|i| {
                let mut sp = span(i, "op", T0 + i * MS, MS);
                sp.trace_id = u128::from(i) << 64 | u128::from(i);
                sp
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- snapshots

pub fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name)
}

/// Compares `actual` with `tests/snapshots/{name}`; `MICROSPAN_BLESS=1` rewrites the file.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var("MICROSPAN_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with MICROSPAN_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n expected: {:?}\n   actual: {:?}\n\
             (run with MICROSPAN_BLESS=1 to accept the new output)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

// ---------------------------------------------------------------- HTTP receiver

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: vec![],
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
}

/// A request as received, with the answer it got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub answered: u16,
    pub at: Instant,
}

/// An HTTP/1.1 server on 127.0.0.1 answering requests from a script (then `then` forever).
pub struct Receiver {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Received>>>,
    _acceptor: Acceptor,
}

/// A port that nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Receiver {
    pub fn start(script: Vec<Reply>, then: Reply) -> Self {
        Self::start_on(0, script, then)
    }

    pub fn start_on(port: u16, script: Vec<Reply>, then: Reply) -> Self {
        let mut script = script.into_iter();
        Self::answering(port, move |_| script.next().unwrap_or_else(|| then.clone()))
    }

    /// A receiver on `port` (0: a free one) whose answer depends on the request.
    pub fn answering(port: u16, answer: impl FnMut(&Request) -> Reply + Send + 'static) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let mut answer = answer;
        let acceptor = Acceptor::start(port, move |stream| {
            serve(stream, &mut answer, &reqs);
        });
        Self {
            port: acceptor.port,
            requests,
            _acceptor: acceptor,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

/// A thread that accepts connections on 127.0.0.1 and hands each, blocking, to a handler, until
/// dropped: the accept loop of every test server.
pub struct Acceptor {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Listens on `port` (0: a free one) and calls `serve` with each connection, one at a time.
    pub fn start(port: u16, mut serve: impl FnMut(TcpStream) + Send + 'static) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // Some platforms hand out the listener's non-blocking mode.
                        if stream.set_nonblocking(false).is_ok() {
                            serve(stream);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request as read off a connection.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names and values (trimmed), in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the header `name` (in any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request: its request line, its headers up to the blank line (a line without `:` is
/// passed over) and a body of `Content-Length` bytes. `None` if the connection fails or ends
/// before, or the length is no number.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let length = match request.header("content-length") {
        Some(v) => v.parse().ok()?,
        None => 0,
    };
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}

/// Reads one request, answers it and closes the connection.
///
/// The request is recorded before the answer goes out: a client that saw the answer finds its
/// request in `received`.
fn serve(
    stream: TcpStream,
    answer: &mut impl FnMut(&Request) -> Reply,
    requests: &Mutex<Vec<Received>>,
) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = read_request(&mut BufReader::new(stream.try_clone().ok()?))?;
    let reply = &answer(&request);
    // Before answering: the next request of a client that waits after this answer arrives at
    // least that wait later, however late this thread runs afterwards.
    let at = Instant::now();
    requests.lock().unwrap().push(Received {
        content_type: request.header("content-type").unwrap_or("").to_string(),
        method: request.method,
        path: request.path,
        body: request.body,
        answered: reply.status,
        at,
    });
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes()).ok()?;
    out.write_all(&reply.body).ok()?;
    out.flush().ok()?;
    Some(())
}

// ---------------------------------------------------------------- decoding what arrived

/// Span ids in an OTLP/HTTP protobuf request, decoded with opentelemetry-proto.
pub fn otlp_span_ids(body: &[u8]) -> Vec<u64> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let request =
        ExportTraceServiceRequest::decode(body).expect("a valid ExportTraceServiceRequest");
    request
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter())
        .flat_map(|s| s.spans.iter())
        .map(|s| u64::from_be_bytes(s.span_id.as_slice().try_into().expect("8-byte span id")))
        .collect()
}

/// Span ids in a Jaeger Thrift request, decoded with the generated types.
pub fn thrift_span_ids(body: &[u8]) -> Vec<u64> {
    use microspan_decoder::jaeger_thrift::Batch;
    use thrift::protocol::{TBinaryInputProtocol, TSerializable};
    let mut input = TBinaryInputProtocol::new(body, true);
    let batch = Batch::read_from_in_protocol(&mut input).expect("a valid Thrift Batch");
    assert_eq!(batch.process.service_name, "in-process-service");
    batch.spans.iter().map(|s| s.span_id as u64).collect()
}

/// Span ids of the requests the receiver accepted (2xx), sorted.
pub fn accepted_ids(received: &[Received], decode: fn(&[u8]) -> Vec<u64>) -> Vec<u64> {
    let mut ids: Vec<u64> = received
        .iter()
        .filter(|r| (200..300).contains(&r.answered))
        .flat_map(|r| decode(&r.body))
        .collect();
    ids.sort_unstable();
    ids
}

/// Upload settings with millisecond timings and a spool in `dir`.
pub fn fast_config(dir: &std::path::Path) -> microspan_decoder::export::UploadConfig {
    microspan_decoder::export::UploadConfig {
        max_spans_per_request: 3,
        queue_capacity: 4,
        spool_dir: Some(dir.to_path_buf()),
        spool_max_bytes: 1 << 20,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        max_attempts: 4,
        max_retry_after: Duration::from_secs(2),
        // Generous: on a loaded 2-core CI machine a timeout here would cause a spurious retry
        // (a duplicate request) and fail the exactly-once assertions; healthy runs never wait.
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        finish_timeout: Duration::from_secs(20),
        headers: Vec::new(),
        ca_cert: None,
    }
}
