//! A tiny HTTP/1.1 collector on 127.0.0.1 that records what the decoder's uploaders send and
//! decodes it with the real protocol libraries (opentelemetry-proto/prost for OTLP, the decoder's
//! generated jaeger.thrift types for Thrift). Adapted from `host-decoder/tests/support`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `POST`.
    pub method: String,
    /// The request path, e.g. `/v1/traces`.
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP server on 127.0.0.1 answering every request with one status.
pub struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver on a free port answering `status` (200 for OTLP, 202 for Thrift).
    pub fn start(status: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        serve(stream, status, &reqs);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests so far.
    pub fn received(&self) -> Vec<Received> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (Content-Length body), records it, answers it and closes the connection.
/// Recorded before answering: a client that saw the answer finds its request in `received`.
fn serve(stream: TcpStream, status: u16, requests: &Mutex<Vec<Received>>) -> Option<()> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut length, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "content-type" => content_type = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            method,
            path,
            content_type,
            body,
        });
    let mut out = stream;
    let head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    out.write_all(head.as_bytes()).ok()?;
    out.flush().ok()?;
    Some(())
}

/// A span as a collector received it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReceivedSpan {
    /// The 128-bit trace id.
    pub trace_id: u128,
    /// The span id.
    pub span_id: u64,
    /// The parent span id (0: none).
    pub parent_span_id: u64,
    /// The operation name.
    pub operation: String,
    /// The service name of its resource / process.
    pub service: String,
}

/// The spans of an OTLP/HTTP protobuf request, decoded with opentelemetry-proto.
pub fn otlp_spans(body: &[u8]) -> Result<Vec<ReceivedSpan>, String> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|e| format!("not an ExportTraceServiceRequest: {e}"))?;
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| a.value.as_ref())
            .and_then(|v| match &v.value {
                Some(Any::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let id = |b: &[u8]| -> u64 { b.try_into().map(u64::from_be_bytes).unwrap_or(0) };
                let trace: [u8; 16] = s
                    .trace_id
                    .as_slice()
                    .try_into()
                    .map_err(|_| "trace id is not 16 bytes")?;
                out.push(ReceivedSpan {
                    trace_id: u128::from_be_bytes(trace),
                    span_id: id(&s.span_id),
                    parent_span_id: id(&s.parent_span_id),
                    operation: s.name.clone(),
                    service: service.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The spans of a Jaeger Thrift `Batch`, decoded with the generated jaeger.thrift types.
pub fn thrift_spans(body: &[u8]) -> Result<Vec<ReceivedSpan>, String> {
    use microspan_decoder::jaeger_thrift::Batch;
    use thrift::protocol::{TBinaryInputProtocol, TSerializable};
    let mut input = TBinaryInputProtocol::new(body, true);
    let batch =
        Batch::read_from_in_protocol(&mut input).map_err(|e| format!("not a Thrift Batch: {e}"))?;
    Ok(batch
        .spans
        .iter()
        .map(|s| ReceivedSpan {
            trace_id: ((s.trace_id_high as u64 as u128) << 64) | s.trace_id_low as u64 as u128,
            span_id: s.span_id as u64,
            parent_span_id: s.parent_span_id as u64,
            operation: s.operation_name.clone(),
            service: batch.process.service_name.clone(),
        })
        .collect())
}
