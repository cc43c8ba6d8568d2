//! An OTLP/JSON file: one `ExportTraceServiceRequest` in the OTLP/JSON encoding (ids as hex,
//! enums as integers, 64-bit integers as strings, camelCase names), which the Jaeger UI opens too.
//!
//! The encoding is opentelemetry-proto's own (`with-serde`), on the same OTLP mapping as the
//! uploader, so the file holds exactly what [`super::OtlpHttp`] would send.

use std::io::Write;
use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::jaeger_json::{write_file, TraceBuffer, DEFAULT_MAX_SPANS};
use super::otlp::resource_spans;
use super::{ExportError, ExportSummary, Exporter};
use crate::model::Span;

/// Writes an OTLP/JSON file, at `finish`.
///
/// Spans are kept in memory until then, up to a bound (default one million spans; further spans
/// are dropped and counted). Spans of one process share one `resourceSpans` entry.
pub struct OtlpJsonFile {
    path: PathBuf,
    name: String,
    buffer: TraceBuffer,
    spans_in: u64,
    finished: bool,
}

impl OtlpJsonFile {
    /// A file exporter to `path` (created or truncated at `finish`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_limit(path, DEFAULT_MAX_SPANS)
    }

    /// The same, keeping at most `max_spans` spans.
    pub fn with_limit(path: impl Into<PathBuf>, max_spans: usize) -> Self {
        let path = path.into();
        Self {
            name: format!("otlp-json {}", path.display()),
            path,
            buffer: TraceBuffer::new(max_spans),
            spans_in: 0,
            finished: false,
        }
    }

    /// The request the file will hold, for what was exported so far. Spans are grouped by
    /// process, then by trace in order of first appearance.
    pub fn request(&self) -> ExportTraceServiceRequest {
        let resource_spans = self
            .buffer
            .processes
            .iter()
            .enumerate()
            .map(|(p, process)| {
                let spans: Vec<Span> = self
                    .buffer
                    .traces
                    .iter()
                    .flat_map(|(_, spans)| spans.iter())
                    .filter(|(q, _)| *q == p)
                    .map(|(_, s)| s.clone())
                    .collect();
                resource_spans(process, &spans)
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }
}

impl super::Exporter for OtlpJsonFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn export(&mut self, batch: &crate::model::Batch) -> Result<(), ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        self.spans_in += batch.spans.len() as u64;
        match self.buffer.add(batch) {
            0 => Ok(()),
            n => Err(ExportError::TooManySpans {
                path: self.path.clone(),
                spans: n,
                limit: self.buffer.limit,
            }),
        }
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        self.finished = true;
        let request = self.request();
        write_file(&self.path, |out| {
            serde_json::to_writer_pretty(&mut *out, &request)?;
            out.write_all(b"\n")
        })?;
        let mut summary = ExportSummary::new(Exporter::name(self));
        summary.spans_in = self.spans_in;
        summary.delivered = self.buffer.spans as u64;
        summary.dropped = self.buffer.dropped;
        if self.buffer.dropped > 0 {
            summary.errors.push(ExportError::TooManySpans {
                path: self.path.clone(),
                spans: self.buffer.dropped,
                limit: self.buffer.limit,
            });
        }
        Ok(summary)
    }
}
