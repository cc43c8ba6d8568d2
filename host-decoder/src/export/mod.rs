//! Exporters: where rebuilt spans go.
//!
//! Every output sits behind one small trait, [`Exporter`]: span assembly hands it
//! [`Batch`]es as spans finish, and [`Exporter::finish`] flushes and reports what happened.
//!
//! | exporter | output | CLI flag |
//! |---|---|---|
//! | [`OtlpHttp`] | OTLP/HTTP protobuf, `POST {base}/v1/traces` (Jaeger v2, :4318) | `--otlp URL` |
//! | [`JaegerThriftHttp`] | Jaeger Thrift `Batch`, `POST /api/traces` (:14268) | `--jaeger-thrift URL` |
//! | [`JaegerJsonFile`] | the Jaeger UI's JSON trace file | `--jaeger-json FILE` |
//! | [`OtlpJsonFile`] | an OTLP/JSON `ExportTraceServiceRequest` file | `--otlp-json FILE` |
//! | [`TreeWriter`] | a span tree with a waterfall, for the terminal | `--tree` |
//! | [`MemoryExporter`] | the batches themselves, for tests | |
//!
//! All of them map the model the same way, so a span looks the same in Jaeger whichever path it
//! took (the OTLP→Jaeger rules Jaeger applies when it ingests OTLP):
//! - the parent is the first `ChildOf` reference into the span's own trace, else the first
//!   `FollowsFrom` (Thrift `parentSpanId`, OTLP `parent_span_id`); every reference is kept
//!   (a `ChildOf` parent in OTLP only as `parent_span_id`; Jaeger `references`, OTLP links with an
//!   `opentracing.ref_type` attribute);
//! - logs become OTLP events named after their `event` field (a baggage item is among the logs
//!   of the span that set it, `event=baggage, key, value`, as Jaeger clients log it);
//! - `error=true` is a tag, and in OTLP the status ERROR instead (Jaeger turns that status back
//!   into `error=true`, so the tag kept too would show twice); `span.kind` becomes the OTLP span
//!   kind;
//! - an unsigned value above `i64::MAX` and a non-finite float become strings;
//! - warnings are Jaeger's `warnings` in the JSON file, and the tag `microspan.warnings` (a JSON
//!   list, the way Jaeger shows an OTLP array) elsewhere; an incomplete span carries
//!   `microspan.incomplete=true`.
//!
//! The two uploaders share one delivery engine (a worker thread, a bounded queue that spills to
//! a disk spool, retries of exactly what the protocol says is retryable): see [`UploadConfig`].

mod delivery;
mod jaeger_json;
mod jaeger_thrift;
mod otlp;
mod otlp_encode;
mod otlp_json;
mod spool;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{Batch, Span, Value};
use crate::plural::count;

pub use delivery::{default_spool_dir, legacy_spool_dir, legacy_spool_note, Header, UploadConfig};
pub use jaeger_json::{
    check_output_path, JaegerJsonFile, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILE_SPANS,
};
pub use jaeger_thrift::{to_thrift_batch, JaegerThriftHttp};
pub use otlp::{to_otlp_request, OtlpHttp};
pub use otlp_encode::encode_otlp_request;
pub use otlp_json::OtlpJsonFile;
pub use tree::TreeWriter;

/// Something that takes finished spans somewhere.
///
/// `export` is called with each batch as spans finish; it must not block for long (uploaders
/// hand the work to a thread). An `Err` from `export` concerns that batch only: the exporter stays
/// usable. `finish` flushes (writes the file, drains the upload queue up to its deadline) and
/// reports; call it once, at the end.
///
/// To end a run with several uploaders waiting at once and a user told what the wait is for:
/// `begin_finish` on each, then `pending` until all say `None` (or `stop_waiting` when the user
/// does not want to wait any longer), then `finish` on each.
pub trait Exporter: Send {
    /// A short name for messages, e.g. `otlp http://localhost:4318/v1/traces`.
    fn name(&self) -> &str;

    /// Takes a batch of finished (or incomplete) spans.
    fn export(&mut self, batch: &Batch) -> Result<(), ExportError>;

    /// Flushes everything and reports what was delivered. Further `export` calls fail.
    fn finish(&mut self) -> Result<ExportSummary, ExportError>;

    /// The file this exporter writes at [`finish`](Self::finish), if it writes one: a run that
    /// decoded nothing can then leave an existing file as it was.
    fn output_file(&self) -> Option<&Path> {
        None
    }

    /// Starts what `finish` waits for and returns at once: an uploader closes its queue and
    /// starts its final delivery, whose deadline runs from now. Further `export` calls fail;
    /// `finish` must still be called. Exporters that do not wait do nothing.
    fn begin_finish(&mut self) {}

    /// What is left to deliver while an uploader delivers; `None` when nothing is waited for.
    fn pending(&self) -> Option<Pending> {
        None
    }

    /// Ends the final delivery early: what is not delivered yet is spooled (without a spool it
    /// is dropped, and counted), and `finish` returns promptly with the report.
    fn stop_waiting(&mut self) {}

    /// The name of the uploader's subdirectory in the spool (one per collector URL), if it
    /// spools.
    fn spool_subdir(&self) -> Option<&str> {
        None
    }
}

impl Exporter for Box<dyn Exporter> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn output_file(&self) -> Option<&Path> {
        (**self).output_file()
    }
    fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        (**self).export(batch)
    }
    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        (**self).finish()
    }
    fn begin_finish(&mut self) {
        (**self).begin_finish()
    }
    fn pending(&self) -> Option<Pending> {
        (**self).pending()
    }
    fn stop_waiting(&mut self) {
        (**self).stop_waiting()
    }
    fn spool_subdir(&self) -> Option<&str> {
        (**self).spool_subdir()
    }
}

/// What an uploader still has to deliver at the end of a run ([`Exporter::pending`]).
#[derive(Debug, Clone)]
pub struct Pending {
    /// The exporter's [`Exporter::name`].
    pub exporter: String,
    /// Spans not delivered yet: queued, being sent, or in the spool (earlier runs' included).
    pub spans: u64,
    /// Of `spans`, those an earlier run left in the spool.
    pub earlier: u64,
    /// Of `spans`, those only memory holds: lost if the process is killed now.
    pub in_memory: u64,
    /// How long the delivery goes on at most before the rest is left in the spool.
    pub time_left: Duration,
    /// The spool directory, where what is not delivered is kept; `None`: it is lost.
    pub spool: Option<PathBuf>,
    /// The last failure of a request (e.g. the connection refused), if one failed.
    pub last_error: Option<String>,
}

impl Pending {
    /// What becomes of the spans not delivered when the wait ends: `kept in the spool DIR` or
    /// `lost (no spool directory)`.
    pub fn fate(&self) -> String {
        match &self.spool {
            Some(dir) => format!("kept in the spool {}", dir.display()),
            None => "lost (no spool directory)".into(),
        }
    }
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} pending",
            self.exporter,
            count(self.spans, "span", "spans")
        )?;
        if self.earlier > 0 {
            write!(f, " ({} of them from earlier runs)", self.earlier)?;
        }
        write!(
            f,
            ", for at most {} s more",
            self.time_left.as_secs_f64().ceil()
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last error: {e})")?;
        }
        Ok(())
    }
}

/// What an exporter did, reported by [`Exporter::finish`].
///
/// Span counts: every span handed to `export` ends up in exactly one of `delivered`, `rejected`,
/// `spooled` or `dropped`. Spans an earlier run left in the spool are counted in `replayed` and
/// in `delivered`/`rejected` when this run sends them, in `spooled_earlier` and `spooled` when
/// they are still there; the `Display` form tells the two runs apart.
#[derive(Debug, Default)]
pub struct ExportSummary {
    /// The exporter's [`Exporter::name`].
    pub exporter: String,
    /// Spans handed to `export` in this run.
    pub spans_in: u64,
    /// Spans written or accepted by the receiver (including replayed ones).
    pub delivered: u64,
    /// Spans the receiver refused for good (a non-retryable HTTP status, or counted in an OTLP
    /// `partial_success`). They are not retried.
    pub rejected: u64,
    /// Spans left in the disk spool at the end, to be sent by the next run (including
    /// `spooled_earlier`).
    pub spooled: u64,
    /// Of `spooled`, spans an earlier run had left there and this one could not send either.
    pub spooled_earlier: u64,
    /// Spans lost: the queue and the spool were full, or a file bound was reached.
    pub dropped: u64,
    /// Spans found in the spool from an earlier run and sent in this one.
    pub replayed: u64,
    /// Of `replayed`, spans the receiver refused (counted in `rejected` too).
    pub replayed_rejected: u64,
    /// HTTP requests sent (attempts, including retries).
    pub requests: u64,
    /// Attempts that failed with a retryable status or a connection error and were retried.
    pub retries: u64,
    /// What went wrong along the way, each with its cause and fix.
    pub errors: Vec<ExportError>,
    /// Notes that are not failures (e.g. a receiver's partial-success message).
    pub notes: Vec<String>,
}

impl ExportSummary {
    /// An empty summary for the named exporter.
    pub fn new(exporter: impl Into<String>) -> Self {
        Self {
            exporter: exporter.into(),
            ..Self::default()
        }
    }

    /// `true` when every span of this run was delivered and nothing went wrong.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
            && self.rejected == 0
            && self.spooled == 0
            && self.dropped == 0
            && self.delivered >= self.spans_in
    }

    /// The errors as lines `exporter: error`, each distinct one once and at most `limit` of
    /// them, then a line counting the rest: a collector refusing every request says so once.
    pub fn distinct_errors(&self, limit: usize) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for e in &self.errors {
            let text = format!("{}: {e}", self.exporter);
            if seen.insert(text.clone()) && seen.len() <= limit {
                out.push(text);
            }
        }
        if seen.len() > limit {
            out.push(format!(
                "{}: {}",
                self.exporter,
                count(
                    (seen.len() - limit) as u64,
                    "more distinct error",
                    "more distinct errors"
                )
            ));
        }
        out
    }
}

/// `otlp URL: 104 spans in, 0 delivered, 0 rejected, 104 spooled, 0 dropped`: this run's spans;
/// then, when earlier runs had left spans in the spool, `; from earlier runs: 104 spans were in
/// the spool, 0 replayed, 104 still spooled`.
impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replayed_delivered = self.replayed.saturating_sub(self.replayed_rejected);
        write!(
            f,
            "{}: {} in, {} delivered, {} rejected, {} spooled, {} dropped",
            self.exporter,
            count(self.spans_in, "span", "spans"),
            self.delivered.saturating_sub(replayed_delivered),
            self.rejected.saturating_sub(self.replayed_rejected),
            self.spooled.saturating_sub(self.spooled_earlier),
            self.dropped
        )?;
        if self.replayed > 0 || self.spooled_earlier > 0 {
            write!(
                f,
                "; from earlier runs: {} in the spool, {} replayed",
                count(
                    self.replayed.saturating_add(self.spooled_earlier),
                    "span was",
                    "spans were"
                ),
                self.replayed
            )?;
            if self.replayed_rejected > 0 {
                write!(f, " ({} of them rejected)", self.replayed_rejected)?;
            }
            write!(f, ", {} still spooled", self.spooled_earlier)?;
        }
        if self.requests > 0 {
            write!(
                f,
                " ({}, {} retried)",
                count(self.requests, "request", "requests"),
                self.retries
            )?;
        }
        Ok(())
    }
}

/// Why an export failed. Each message names the cause and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The reader of the tree's output went away (`microspan decode … | head`). Not a failure:
    /// the tree stops, the other exporters go on. (A file exporter's closed pipe is a
    /// [`File`](Self::File) error: its output is cut short.)
    #[error("the terminal output was closed by its reader")]
    OutputClosed,
    /// The disk spool could not be used.
    #[error("spool directory {path}: {source}; check that it is writable, or choose another with --spool-dir DIR")]
    Spool {
        /// The spool directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another decoder is using the spool directory.
    #[error("spool directory {path} is in use by another microspan decoder uploading to the same URL; two decoders must not share a spool: stop the other one, or give this one its own --spool-dir")]
    SpoolInUse {
        /// The spool directory.
        path: PathBuf,
    },
    /// An extra header that cannot be sent (the value is never shown).
    #[error("invalid header {name:?}: {reason}; give it as `Name: value` (--header) or `Name=ENV_VAR` (--header-env)")]
    InvalidHeader {
        /// The header's name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA certificate file for `https://` cannot be used.
    #[error("CA certificate file {path}: {reason}; give a PEM file with the collector's CA certificate (-----BEGIN CERTIFICATE-----)")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL that cannot be used.
    #[error("invalid URL {url:?}: {reason}; give a URL such as {example}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
        /// A correct example.
        example: &'static str,
    },
    /// The receiver refused a request with a status that must not be retried, or (Jaeger's
    /// 500) kept refusing it until the attempts were spent.
    #[error("{endpoint} refused {}{} with HTTP {status}{}; {}: {hint}", count(*.spans, "span", "spans"), fmt_requests(*.requests), fmt_body(.body), fmt_attempts(*.attempts))]
    Rejected {
        /// The URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// Requests sent: 1 when the status is not retried.
        attempts: u32,
        /// The start of the response body.
        body: String,
        /// Spans in the refused requests.
        spans: u64,
        /// Requests refused alike (same status, body and attempts), counted in one error: a
        /// collector that refuses every request says so once.
        requests: u64,
        /// What to check.
        hint: &'static str,
    },
    /// A 2xx answer that no collector sends: an HTML page (the Jaeger UI answers any POST with
    /// its index page and 200), or an OTLP answer that is not a protobuf
    /// `ExportTraceServiceResponse`. Nothing says the spans were stored: they are counted as
    /// rejected, as for a wrong path (sent again to the same URL, they would fare the same).
    #[error("{endpoint} answered HTTP {status} with {what}, which is not a collector's answer: {} not delivered{}; {hint}", count(*.spans, "span", "spans"), fmt_requests(*.requests))]
    NotACollector {
        /// The URL.
        endpoint: String,
        /// The HTTP status (a 2xx).
        status: u16,
        /// What came back ("an HTML page", "Content-Type text/plain (…), not …").
        what: String,
        /// Spans in the requests so answered.
        spans: u64,
        /// Requests answered alike, counted in one error.
        requests: u64,
        /// What to check.
        hint: &'static str,
    },
    /// The server answered with a redirect (3xx), which is not followed: a request sent on
    /// would carry the upload headers to another URL, and HTTP clients resend a 301 or 302 as a
    /// GET without its body. Not retried; the spans are counted as rejected.
    #[error("{endpoint} {}: {} not delivered{}, not retried; {}", fmt_redirect(*.status, .location), count(*.spans, "span", "spans"), fmt_requests(*.requests), fmt_redirect_fix(.location))]
    Redirected {
        /// The URL.
        endpoint: String,
        /// The HTTP status (a 3xx).
        status: u16,
        /// Where it redirects to (its `Location`, made absolute); empty when it did not say.
        location: String,
        /// Spans in the requests so answered.
        spans: u64,
        /// Requests answered alike, counted in one error.
        requests: u64,
    },
    /// An OTLP receiver accepted a request but rejected some of its spans.
    #[error("{endpoint} rejected {} of a request (OTLP partial success){}; check the collector's logs and limits", count(*.spans, "span", "spans"), fmt_body(.message))]
    PartiallyRejected {
        /// The URL.
        endpoint: String,
        /// Spans rejected.
        spans: u64,
        /// The receiver's message.
        message: String,
    },
    /// Delivery was attempted until the deadline (or until the wait was stopped) without
    /// success; the spans are spooled.
    #[error("{endpoint} could not be reached before the upload wait ended ({}); {}; check that the collector is running and the URL is right", fmt_last_error(.last_error), fmt_unsent(*.spans, *.dropped, .spool))]
    Unreachable {
        /// The URL.
        endpoint: String,
        /// The last error seen (empty when no attempt had finished).
        last_error: String,
        /// Spans left in the spool (this run's and earlier runs').
        spans: u64,
        /// Spans the worker held when the wait ended that the spool could not take.
        dropped: u64,
        /// The spool directory (empty when none is configured).
        spool: String,
    },
    /// The receiver refused the credentials (HTTP 401 or 403). Nothing is wrong with the spans:
    /// they are kept in the spool for the next run (with the credentials fixed), and no more
    /// requests are sent in this run.
    #[error("{endpoint} refused the credentials with HTTP {status}{}: {hint}; {}", fmt_body(.body), fmt_unsent(*.spans, *.dropped, .spool))]
    CredentialsRefused {
        /// The URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
        /// What to check.
        hint: &'static str,
        /// Spans left in the spool (this run's and earlier runs').
        spans: u64,
        /// Spans the spool could not take.
        dropped: u64,
        /// The spool directory.
        spool: String,
    },
    /// Spans were lost because the in-memory queue and the disk spool were full (or no spool is
    /// configured).
    #[error("{endpoint}: dropped {}: the upload queue is full and {why}; the collector is too slow or down — raise the spool size or check the collector", count(*.spans, "span", "spans"))]
    QueueFull {
        /// The URL.
        endpoint: String,
        /// Spans dropped.
        spans: u64,
        /// Why the spool did not take them.
        why: String,
    },
    /// A file exporter reached its bound on buffered spans (reported once, at `finish`, with
    /// the total dropped).
    #[error("{path}: dropped {} beyond the limit of {} per file; raise the limit with --max-file-spans N (the spans are held in memory until the file is written)", count(*.spans, "span", "spans"), count(*.limit as u64, "span", "spans"))]
    TooManySpans {
        /// The file.
        path: PathBuf,
        /// Spans dropped.
        spans: u64,
        /// The configured bound.
        limit: usize,
    },
    /// A file exporter reached its bound on the memory its buffered spans take
    /// ([`DEFAULT_MAX_FILE_BYTES`]; reported once, at `finish`, with the total dropped).
    #[error("{path}: dropped {} beyond the {} MiB a file holds its spans in until it is written (spans with many or long strings); decode the capture in parts, or upload instead of writing a file", count(*.spans, "span", "spans"), *.max_bytes >> 20)]
    TooMuchHeld {
        /// The file.
        path: PathBuf,
        /// Spans dropped.
        spans: u64,
        /// The bound, in bytes.
        max_bytes: usize,
    },
    /// Encoding a request failed (a bug or an absurd value).
    #[error("cannot encode for {exporter}: {reason}; please report this as a bug")]
    Encode {
        /// The exporter.
        exporter: String,
        /// What failed.
        reason: String,
    },
    /// `export` or `finish` was called after `finish`.
    #[error("{exporter} is already finished; call finish() once, after the last export()")]
    Finished {
        /// The exporter.
        exporter: String,
    },
    /// The upload thread stopped unexpectedly.
    #[error("the upload thread of {exporter} stopped unexpectedly; please report this as a bug")]
    WorkerGone {
        /// The exporter.
        exporter: String,
    },
}

fn fmt_requests(requests: u64) -> String {
    if requests <= 1 {
        String::new()
    } else {
        format!(" in {requests} requests")
    }
}

fn fmt_redirect(status: u16, location: &str) -> String {
    if location.is_empty() {
        format!("answered HTTP {status} (a redirect) without saying where to")
    } else {
        format!("redirects to {location} (HTTP {status})")
    }
}

fn fmt_redirect_fix(location: &str) -> &'static str {
    if location.is_empty() {
        "redirects are not followed: check the URL (a proxy in front of the collector may want https://)"
    } else {
        "redirects are not followed: use that URL"
    }
}

fn fmt_attempts(attempts: u32) -> String {
    if attempts <= 1 {
        "not retried".into()
    } else {
        format!("still refused after {attempts} attempts")
    }
}

fn fmt_last_error(last: &str) -> String {
    if last.is_empty() {
        "no attempt had finished".into()
    } else {
        format!("last error: {last}")
    }
}

/// Where the spans that were not delivered are: kept in the spool for the next run, or lost.
fn fmt_unsent(spooled: u64, dropped: u64, spool: &str) -> String {
    let kept = format!(
        "{} kept in the spool {spool} and will be sent by the next run",
        count(spooled, "span is", "spans are")
    );
    let lost = count(dropped, "span was", "spans were");
    let lost = if spool.is_empty() {
        format!("{lost} lost (no spool is configured)")
    } else {
        format!("{lost} lost (the spool {spool} could not take them: raise --spool-max-bytes)")
    };
    match (spooled, dropped) {
        (_, 0) => kept,
        (0, _) => lost,
        _ => format!("{kept}; {lost}"),
    }
}

fn fmt_body(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" ({body})")
    }
}

/// Records every batch it gets, for tests (the model's own "test collector").
#[derive(Debug, Default)]
pub struct MemoryExporter {
    /// The batches received, in order.
    pub batches: Vec<Batch>,
    finished: bool,
}

impl MemoryExporter {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// All spans received, in order.
    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.batches.iter().flat_map(|b| b.spans.iter())
    }
}

impl Exporter for MemoryExporter {
    fn name(&self) -> &str {
        "memory"
    }

    fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name().into(),
            });
        }
        self.batches.push(batch.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name().into(),
            });
        }
        self.finished = true;
        let n = self.spans().count() as u64;
        Ok(ExportSummary {
            spans_in: n,
            delivered: n,
            ..ExportSummary::new(self.name())
        })
    }
}

/// One output of the decoder, as the command line names it.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportTarget {
    /// `--otlp URL`: OTLP/HTTP protobuf to a base URL (`/v1/traces` is appended unless present).
    Otlp(String),
    /// `--jaeger-thrift URL`: the full Jaeger collector URL, e.g. `http://localhost:14268/api/traces`.
    JaegerThrift(String),
    /// `--jaeger-json FILE`.
    JaegerJson(PathBuf),
    /// `--otlp-json FILE`.
    OtlpJson(PathBuf),
    /// `--tree`: the span tree on standard output.
    Tree,
}

/// Builds the exporters for a list of targets; uploaders share `upload` (each keeps its spool in
/// its own subdirectory of `upload.spool_dir`).
pub fn build_exporters(
    targets: &[ExportTarget],
    upload: &UploadConfig,
) -> Result<Vec<Box<dyn Exporter>>, ExportError> {
    targets
        .iter()
        .map(|t| -> Result<Box<dyn Exporter>, ExportError> {
            Ok(match t {
                ExportTarget::Otlp(url) => Box::new(OtlpHttp::new(url, upload.clone())?),
                ExportTarget::JaegerThrift(url) => {
                    Box::new(JaegerThriftHttp::new(url, upload.clone())?)
                }
                ExportTarget::JaegerJson(path) => Box::new(JaegerJsonFile::new(path)),
                ExportTarget::OtlpJson(path) => Box::new(OtlpJsonFile::new(path)),
                ExportTarget::Tree => Box::new(TreeWriter::stdout()),
            })
        })
        .collect()
}

// ---- helpers shared by the mappings ----

/// Nanoseconds to Jaeger's microseconds (truncated, as Jaeger's own OTLP translator does).
pub(crate) fn micros(nanos: u64) -> i64 {
    (nanos / 1_000) as i64
}

/// A value as an exporter without unsigned or non-finite numbers carries it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Portable<'a> {
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(std::borrow::Cow<'a, str>),
}

pub(crate) fn portable(v: &Value) -> Portable<'_> {
    match v {
        Value::Bool(b) => Portable::Bool(*b),
        Value::I64(i) => Portable::I64(*i),
        Value::U64(u) => match i64::try_from(*u) {
            Ok(i) => Portable::I64(i),
            Err(_) => Portable::Str(u.to_string().into()),
        },
        Value::F64(f) if f.is_finite() => Portable::F64(*f),
        Value::F64(f) => Portable::Str(non_finite(*f).into()),
        Value::Str(s) => Portable::Str(s.as_str().into()),
    }
}

fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// The warnings of a span as one JSON-list string (how Jaeger shows an OTLP string array).
pub(crate) fn warnings_json(span: &Span) -> String {
    serde_json::Value::from(span.warnings.clone()).to_string()
}

/// Tag keys used for what a format has no field for.
pub(crate) const WARNINGS_TAG: &str = "microspan.warnings";
pub(crate) const INCOMPLETE_TAG: &str = "microspan.incomplete";

#[cfg(test)]
mod tests {
    use super::*;

    /// The unreachable collector's message says where the unsent spans are: kept for the next
    /// run, or lost, and why; never "0 spans are kept … and will be sent".
    #[test]
    fn unreachable_says_what_was_kept_and_what_was_lost() {
        let err = |last: &str, spans, dropped, spool: &str| {
            ExportError::Unreachable {
                endpoint: "http://c:4318/v1/traces".into(),
                last_error: last.into(),
                spans,
                dropped,
                spool: spool.into(),
            }
            .to_string()
        };
        let kept = err("connection refused", 30, 0, "/s");
        assert!(kept.contains("(last error: connection refused); 30 spans are kept in the spool /s and will be sent by the next run;"), "{kept}");
        let lost = err("", 0, 6, "/s");
        assert!(lost.contains("(no attempt had finished); 6 spans were lost (the spool /s could not take them: raise --spool-max-bytes);"), "{lost}");
        assert!(!lost.contains("kept"), "{lost}");
        let both = err("timeout", 4, 2, "/s");
        assert!(
            both.contains("4 spans are kept") && both.contains("2 spans were lost"),
            "{both}"
        );
        let none = err("timeout", 0, 2, "");
        assert!(
            none.contains("2 spans were lost (no spool is configured)"),
            "{none}"
        );
    }

    #[test]
    fn distinct_errors_says_each_once_and_counts_the_rest() {
        let header = |name: &str| ExportError::InvalidHeader {
            name: name.to_string(),
            reason: "empty".to_string(),
        };
        let mut s = ExportSummary::new("otlp");
        s.errors = vec![
            header("a"),
            header("a"),
            header("b"),
            header("c"),
            header("a"),
        ];
        let lines = s.distinct_errors(5);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("otlp: invalid header \"a\""),
            "{lines:?}"
        );
        let lines = s.distinct_errors(2);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "otlp: 1 more distinct error");
        assert!(ExportSummary::new("x").distinct_errors(5).is_empty());
    }
}
