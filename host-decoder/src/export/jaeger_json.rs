//! The Jaeger UI's JSON trace file (what "Download JSON" saves and "Upload JSON" opens):
//! `{"data":[{traceID, spans:[…], processes:{p1:{serviceName, tags}}, warnings}]}`.
//!
//! Ids are lower-case hex as Jaeger prints them: a trace id is 16 digits when its high half is 0,
//! else 32; a span id 16. Times are microseconds. The parent is the leading `CHILD_OF` reference.
//! Tags are `{key, type, value}` with Jaeger's types `bool`, `int64`, `float64`, `string`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{micros, portable, ExportError, ExportSummary, Exporter, Portable, INCOMPLETE_TAG};
use crate::model::{Batch, KeyValue, Process, RefKind, Span, Value};

/// Spans a file exporter ([`JaegerJsonFile`], [`OtlpJsonFile`](super::OtlpJsonFile)) keeps by
/// default before it drops (and counts) further ones: the spans are held in memory until the
/// file is written. `microspan decode --max-file-spans N` sets another bound.
pub const DEFAULT_MAX_FILE_SPANS: usize = 1_000_000;

/// The default bound on the memory a file exporter holds its spans in until it writes them (as
/// the decoder charges a span: its strings and generous overheads), 1 GiB: spans with many long
/// strings reach it long before [`DEFAULT_MAX_FILE_SPANS`].
pub const DEFAULT_MAX_FILE_BYTES: usize = 1 << 30;

/// A trace id as Jaeger prints it.
pub(crate) fn trace_id_hex(id: u128) -> String {
    let high = (id >> 64) as u64;
    if high == 0 {
        format!("{:016x}", id as u64)
    } else {
        format!("{id:032x}")
    }
}

/// A span id as Jaeger prints it.
pub(crate) fn span_id_hex(id: u64) -> String {
    format!("{id:016x}")
}

#[derive(Serialize)]
struct Document {
    data: Vec<TraceJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceJson {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<SpanJson>,
    processes: BTreeMap<String, ProcessJson>,
    warnings: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    flags: u8,
    operation_name: String,
    references: Vec<RefJson>,
    start_time: i64,
    duration: i64,
    tags: Vec<TagJson>,
    logs: Vec<LogJson>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

#[derive(Serialize)]
struct RefJson {
    #[serde(rename = "refType")]
    ref_type: &'static str,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Serialize)]
struct TagJson {
    key: String,
    #[serde(rename = "type")]
    kind: &'static str,
    value: serde_json::Value,
}

#[derive(Serialize)]
struct LogJson {
    timestamp: i64,
    fields: Vec<TagJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessJson {
    service_name: String,
    tags: Vec<TagJson>,
}

fn tag_json(kv: &KeyValue) -> TagJson {
    let (kind, value) = match portable(&kv.value) {
        Portable::Bool(b) => ("bool", serde_json::Value::from(b)),
        Portable::I64(i) => ("int64", serde_json::Value::from(i)),
        Portable::F64(f) => ("float64", serde_json::Value::from(f)),
        Portable::Str(s) => ("string", serde_json::Value::from(s.into_owned())),
    };
    TagJson {
        key: kv.key.as_str().to_owned(),
        kind,
        value,
    }
}

fn span_json(span: &Span, process_id: String) -> SpanJson {
    // The parent first, as Jaeger orders them.
    let mut refs: Vec<_> = span.references.iter().collect();
    if let Some(i) = span.parent_index() {
        let parent = refs.remove(i);
        refs.insert(0, parent);
    }
    let mut tags: Vec<TagJson> = span.tags.iter().map(tag_json).collect();
    if span.incomplete {
        tags.push(tag_json(&KeyValue::new(INCOMPLETE_TAG, Value::Bool(true))));
    }
    SpanJson {
        trace_id: trace_id_hex(span.trace_id),
        span_id: span_id_hex(span.span_id),
        flags: span.flags,
        operation_name: span.operation.as_str().to_owned(),
        references: refs
            .into_iter()
            .map(|r| RefJson {
                ref_type: match r.kind {
                    RefKind::ChildOf => "CHILD_OF",
                    RefKind::FollowsFrom => "FOLLOWS_FROM",
                },
                trace_id: trace_id_hex(r.trace_id),
                span_id: span_id_hex(r.span_id),
            })
            .collect(),
        start_time: micros(span.start_unix_nanos),
        duration: micros(span.duration_nanos),
        tags,
        logs: span
            .logs
            .iter()
            .map(|l| LogJson {
                timestamp: micros(l.time_unix_nanos),
                fields: l.fields.iter().map(tag_json).collect(),
            })
            .collect(),
        process_id,
        warnings: (!span.warnings.is_empty()).then(|| span.warnings.clone()),
    }
}

/// Spans grouped by trace (in order of first appearance) and by process, kept until `finish`.
#[derive(Debug, Default)]
pub(crate) struct TraceBuffer {
    pub processes: Vec<Arc<Process>>,
    /// (trace id, [(process index, span)])
    pub traces: Vec<(u128, Vec<(usize, Span)>)>,
    index: HashMap<u128, usize>,
    pub spans: usize,
    pub limit: usize,
    pub dropped: u64,
    /// What the spans kept are charged ([`span_bytes`](crate::assemble::span_bytes)), and the
    /// bound on it.
    pub bytes: usize,
    pub max_bytes: usize,
    /// Spans dropped for `max_bytes` (among `dropped`).
    pub dropped_for_bytes: u64,
}

impl TraceBuffer {
    pub fn new(limit: usize, max_bytes: usize) -> Self {
        Self {
            limit,
            max_bytes,
            ..Self::default()
        }
    }

    /// Keeps the batch's spans; returns how many were dropped for the bound.
    pub fn add(&mut self, batch: &Batch) -> u64 {
        let p = match self
            .processes
            .iter()
            .position(|p| Arc::ptr_eq(p, &batch.process) || *p == batch.process)
        {
            Some(p) => p,
            None => {
                self.processes.push(batch.process.clone());
                self.processes.len() - 1
            }
        };
        let mut dropped = 0;
        for span in &batch.spans {
            if self.spans >= self.limit {
                dropped += 1;
                continue;
            }
            let bytes = crate::assemble::span_bytes(span);
            if self.bytes + bytes > self.max_bytes {
                dropped += 1;
                self.dropped_for_bytes += 1;
                continue;
            }
            self.bytes += bytes;
            self.spans += 1;
            let i = *self.index.entry(span.trace_id).or_insert_with(|| {
                self.traces.push((span.trace_id, Vec::new()));
                self.traces.len() - 1
            });
            self.traces[i].1.push((p, span.clone()));
        }
        self.dropped += dropped;
        dropped
    }
}

/// Writes `path` whole or not at all: into a temporary file beside it, renamed over it once
/// written and synced, so that a failed write leaves an existing file as it was (and a reader
/// never sees half a document); it keeps the file's permissions. A path that exists and is not
/// a regular file with one name (`/dev/stdout`, a named pipe, `/dev/null`, a symbolic link, a
/// hard-linked file) is written in place: renaming over it would replace the device, the pipe or
/// the link with a file. So is a file in a directory that takes no new file.
pub(crate) fn write_file<F>(path: &Path, write: F) -> Result<(), ExportError>
where
    F: FnOnce(&mut BufWriter<fs::File>) -> std::io::Result<()>,
{
    let err = |source| ExportError::File {
        path: path.to_path_buf(),
        source,
    };
    let in_place = |write: F| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.flush()
    };
    if !replaceable(path) {
        return in_place(write).map_err(err);
    }
    let tmp = temporary_beside(path);
    let Ok(file) = fs::File::create(&tmp) else {
        // A directory that takes no new file, where the output itself is writable.
        return in_place(write).map_err(err);
    };
    let written = (|| {
        // The replacement keeps the file's permissions (a private trace stays private).
        if let Ok(m) = fs::metadata(path) {
            file.set_permissions(m.permissions())?;
        }
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// `true` when `path` is missing or a regular file with one name (not a symbolic link, whose
/// target a rename would not reach, nor a file with other hard links, which would keep the old
/// content): what a temporary file renamed over it may replace.
fn replaceable(path: &Path) -> bool {
    fs::symlink_metadata(path).map_or(true, |m| m.is_file() && one_name(&m))
}

#[cfg(unix)]
fn one_name(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.nlink() == 1
}

#[cfg(not(unix))]
fn one_name(_: &fs::Metadata) -> bool {
    true
}

/// A name for a temporary file in `path`'s directory (`.NAME.PID.tmp`).
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Checks, before any input is read, that the file exporters can write `path`: not a
/// directory, in a directory that exists and takes new files (a temporary file is created and
/// removed). The answer names the problem.
pub fn check_output_path(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "{} is a directory: give a file name",
            path.display()
        ));
    }
    if !replaceable(path) {
        // A device or a pipe: written in place, so it must open for writing.
        return fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot write {} ({e})", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    let probe = temporary_beside(path);
    match fs::File::create(&probe).and_then(|_| fs::remove_file(&probe)) {
        Ok(()) => Ok(()),
        // A directory that takes no new file: an existing output is then written in place.
        Err(_) if path.exists() => fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot write {} ({e})", path.display())),
        Err(e) => Err(format!("cannot write {} ({e})", path.display())),
    }
}

/// What the file exporters share: spans buffered (bounded) until `finish`, then one document
/// written to `path`, and the summary.
pub(super) struct BufferedFile {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) buffer: TraceBuffer,
    spans_in: u64,
    finished: bool,
}

impl BufferedFile {
    pub(super) fn new(kind: &str, path: PathBuf, max_spans: usize, max_bytes: usize) -> Self {
        Self {
            name: format!("{kind} {}", path.display()),
            path,
            buffer: TraceBuffer::new(max_spans, max_bytes),
            spans_in: 0,
            finished: false,
        }
    }

    /// Buffers a batch. What exceeds the bound is dropped and counted, and reported once, with
    /// the total, by [`finish`](Self::finish): an error per batch said the same thing tens of
    /// thousands of times on a long capture.
    pub(super) fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        self.spans_in += batch.spans.len() as u64;
        self.buffer.add(batch);
        Ok(())
    }

    /// Writes `document` (built from the buffer) as pretty JSON and summarises.
    pub(super) fn finish<T: serde::Serialize>(
        &mut self,
        document: impl FnOnce(&TraceBuffer) -> T,
    ) -> Result<ExportSummary, ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        self.finished = true;
        let document = document(&self.buffer);
        write_file(&self.path, |out| {
            serde_json::to_writer_pretty(&mut *out, &document)?;
            out.write_all(b"\n")
        })?;
        let mut summary = ExportSummary::new(&self.name);
        summary.spans_in = self.spans_in;
        summary.delivered = self.buffer.spans as u64;
        summary.dropped = self.buffer.dropped;
        let for_bytes = self.buffer.dropped_for_bytes;
        if self.buffer.dropped > for_bytes {
            summary.errors.push(ExportError::TooManySpans {
                path: self.path.clone(),
                spans: self.buffer.dropped - for_bytes,
                limit: self.buffer.limit,
            });
        }
        if for_bytes > 0 {
            summary.errors.push(ExportError::TooMuchHeld {
                path: self.path.clone(),
                spans: for_bytes,
                max_bytes: self.buffer.max_bytes,
            });
        }
        Ok(summary)
    }
}

/// Writes the Jaeger UI's JSON trace file, at `finish`.
///
/// Spans are kept in memory until then, up to a bound ([`DEFAULT_MAX_FILE_SPANS`] unless
/// [`with_limit`](Self::with_limit) sets another; further spans are dropped, counted in the
/// summary and reported in one error of the summary). Open the file in the Jaeger UI with
/// "Search → Upload" (or JSON file loading in Jaeger v2).
pub struct JaegerJsonFile {
    file: BufferedFile,
}

impl JaegerJsonFile {
    /// A file exporter to `path` (created or truncated at `finish`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_limit(path, DEFAULT_MAX_FILE_SPANS)
    }

    /// The same, keeping at most `max_spans` spans.
    pub fn with_limit(path: impl Into<PathBuf>, max_spans: usize) -> Self {
        Self::with_limits(path, max_spans, DEFAULT_MAX_FILE_BYTES)
    }

    /// The same, keeping at most `max_spans` spans and [`DEFAULT_MAX_FILE_BYTES`]'s kind of
    /// bound at `max_bytes`.
    pub fn with_limits(path: impl Into<PathBuf>, max_spans: usize, max_bytes: usize) -> Self {
        Self {
            file: BufferedFile::new("jaeger-json", path.into(), max_spans, max_bytes),
        }
    }

    /// The file's JSON document for what was exported so far.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(document(&self.file.buffer)).unwrap_or(serde_json::Value::Null)
    }
}

/// The Jaeger UI document of what `buffer` holds.
fn document(buffer: &TraceBuffer) -> Document {
    let data = buffer
        .traces
        .iter()
        .map(|(trace_id, spans)| {
            // p1, p2, … in the order processes appear in this trace.
            let mut ids: Vec<usize> = Vec::new();
            let spans = spans
                .iter()
                .map(|(p, span)| {
                    let n = match ids.iter().position(|q| q == p) {
                        Some(n) => n,
                        None => {
                            ids.push(*p);
                            ids.len() - 1
                        }
                    };
                    span_json(span, format!("p{}", n + 1))
                })
                .collect();
            let processes = ids
                .iter()
                .enumerate()
                .map(|(n, p)| {
                    let process = &buffer.processes[*p];
                    (
                        format!("p{}", n + 1),
                        ProcessJson {
                            service_name: process.service_name.as_str().to_owned(),
                            tags: process.tags.iter().map(tag_json).collect(),
                        },
                    )
                })
                .collect();
            TraceJson {
                trace_id: trace_id_hex(*trace_id),
                spans,
                processes,
                warnings: None,
            }
        })
        .collect();
    Document { data }
}

impl Exporter for JaegerJsonFile {
    fn name(&self) -> &str {
        &self.file.name
    }

    fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        self.file.export(batch)
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        self.file.finish(document)
    }

    fn output_file(&self) -> Option<&Path> {
        Some(&self.file.path)
    }
}
