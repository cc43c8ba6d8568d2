//! An OTLP/JSON file: one `ExportTraceServiceRequest` in the OTLP/JSON encoding (ids as hex,
//! enums as integers, 64-bit integers as strings, camelCase names), which the Jaeger UI opens too.
//!
//! The encoding is opentelemetry-proto's own (`with-serde`), on the same OTLP mapping as the
//! uploader, so the file holds exactly what [`super::OtlpHttp`] would send.

use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::jaeger_json::{
    BufferedFile, TraceBuffer, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILE_SPANS,
};
use super::otlp::resource_spans;
use super::{ExportError, ExportSummary};
use crate::model::Span;

/// Writes an OTLP/JSON file, at `finish`.
///
/// Spans are kept in memory until then, up to a bound
/// ([`DEFAULT_MAX_FILE_SPANS`](super::DEFAULT_MAX_FILE_SPANS) unless
/// [`with_limit`](Self::with_limit) sets another; further spans are dropped, counted in the
/// summary and reported in one error of the summary). Spans of one process share one
/// `resourceSpans` entry.
pub struct OtlpJsonFile {
    file: BufferedFile,
}

impl OtlpJsonFile {
    /// A file exporter to `path` (created or truncated at `finish`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_limit(path, DEFAULT_MAX_FILE_SPANS)
    }

    /// The same, keeping at most `max_spans` spans.
    pub fn with_limit(path: impl Into<PathBuf>, max_spans: usize) -> Self {
        Self {
            file: BufferedFile::new("otlp-json", path.into(), max_spans, DEFAULT_MAX_FILE_BYTES),
        }
    }

    /// The request the file will hold, for what was exported so far. Spans are grouped by
    /// process, then by trace in order of first appearance.
    pub fn request(&self) -> ExportTraceServiceRequest {
        request(&self.file.buffer)
    }
}

/// The OTLP request of what `buffer` holds.
fn request(buffer: &TraceBuffer) -> ExportTraceServiceRequest {
    let resource_spans = buffer
        .processes
        .iter()
        .enumerate()
        .map(|(p, process)| {
            let spans: Vec<Span> = buffer
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

impl super::Exporter for OtlpJsonFile {
    fn name(&self) -> &str {
        &self.file.name
    }

    fn export(&mut self, batch: &crate::model::Batch) -> Result<(), ExportError> {
        self.file.export(batch)
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        self.file.finish(request)
    }

    fn output_file(&self) -> Option<&std::path::Path> {
        Some(&self.file.path)
    }
}
