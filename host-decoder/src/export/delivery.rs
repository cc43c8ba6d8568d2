//! The delivery engine both uploaders share: a worker thread, a bounded in-memory queue that
//! spills to a disk spool, and retries of exactly what the protocol says is retryable.
//!
//! ```text
//!  export() ──encode──▶ bounded channel ──▶ worker ──POST──▶ collector
//!                │ full                       ▲  │ gave up / deadline
//!                ▼                            │  ▼
//!              spool directory (bounded bytes, one file per request)
//! ```
//!
//! - **Success**: a 2xx that a collector would send ([`Endpoint::success`]): OTLP answers 200
//!   with an empty body or a protobuf `ExportTraceServiceResponse` (possibly with
//!   `partial_success`), Jaeger 202 with no body. A 2xx that is not a collector's answer (an HTML
//!   page: the Jaeger UI's port answers any POST with its index page and 200; an OTLP answer
//!   that is not protobuf) delivered nothing: the spans are counted as rejected, as for a wrong
//!   path, and the error says what answered and which URL is the collector's.
//! - **Retried**: 429, 502, 503, 504 and connection errors, after `Retry-After` (seconds or an
//!   HTTP date) when the answer has one, else after an exponential backoff with jitter.
//! - **Retried, then rejected**: 500 from a collector whose 500 means "well-formed, not stored
//!   now" ([`Endpoint::retries_500`]: Jaeger's `/api/traces` answers 400 to a body it cannot
//!   parse and 500 when its pipeline refuses the batch, a full queue or a storage error).
//!   Retried in place like a 503, but once `max_attempts` are spent the spans are counted as
//!   rejected with the collector's message instead of parked: a batch the collector keeps
//!   refusing would otherwise come back from the spool forever.
//! - **Kept for the next run**: 401 and 403 with a spool. The credentials are wrong, not the
//!   spans: the request is parked, and this run sends nothing more (the rest of its requests go
//!   to the spool) nor replays the spool; the error names the header to fix, and the next run
//!   with working credentials delivers everything. Without a spool they are rejected as below.
//! - **Not followed**: redirects (3xx). ureq resent a 301 or 302 as a GET without the body
//!   (whose 405 then read as a wrong path) and would send the upload headers on to another URL;
//!   an http→https 308 (ingress-nginx's default) failed, was retried and spooled, for ever.
//!   Not retried either: the spans are counted as rejected and the error names the URL the
//!   server redirects to, the one to use.
//! - **Split**: 413 (the request is too large for the collector). The request is split in two
//!   halves of its spans ([`Endpoint::split`]), which are sent in its place, each split again if
//!   it is still too large, down to a single span; a single span still refused is rejected with
//!   what to raise on the collector. At most `2n − 1` requests for `n` spans. The halves of a
//!   request from memory go to the head of the queue; those of a spooled request replace its file
//!   in the spool (named after it, so they keep its place and the run that wrote it). The summary
//!   notes how many requests were split and the `--max-spans-per-request` that avoids it.
//! - **Not retried**: every other status; the spans are counted as rejected and the error says
//!   why.
//! - A request that still fails after `max_attempts` is parked in the spool and the worker waits
//!   `max_backoff` before the next try (the collector is taken to be down), sending new requests
//!   to the spool meanwhile. The spool is replayed whenever the queue is empty — at start (files
//!   of an earlier run) and as soon as the collector answers again.
//! - `finish` (or [`super::Exporter::begin_finish`] first, to wait for several uploaders at
//!   once) closes the queue and lets the worker deliver the rest until `finish_timeout`; what is
//!   still undelivered then stays in the spool for the next run. While it waits, a request that
//!   has to be retried sends the queue to the spool at once (a process killed during the wait
//!   loses nothing that is queued), and [`super::Exporter::pending`] says what is left.
//!   [`super::Exporter::stop_waiting`] ends the wait early: the worker stops at its next step
//!   and spools what it holds; a worker stuck in a request to a collector that does not answer
//!   is left to it after [`GIVE_UP_GRACE`], and its queue and the request in flight are spooled
//!   by `finish` itself.
//!
//! Memory is bounded by `queue_capacity` requests of at most `max_spans_per_request` spans (and
//! the halves of one split request); the disk by `spool_max_bytes` (a split spooled request may
//! exceed it by its halves' framing, a few bytes). Without a spool directory, a request that cannot be sent is held
//! (one at a time) and the queue's overflow is dropped and counted.
//!
//! **Transport security.** `https://` URLs go through rustls (ureq's, with the `ring` provider)
//! and Mozilla's root certificates (webpki-roots, compiled in, so the result does not depend on
//! the machine's trust store); [`UploadConfig::ca_cert`] replaces them with a private CA, as
//! `curl --cacert` does, for a self-hosted collector. [`UploadConfig::headers`] adds headers to
//! every request (`Authorization: Bearer …`); their values are secrets: [`Header`]'s `Debug`
//! hides them, they are marked sensitive for the HTTP stack, and every text that can reach a log,
//! an error or a summary (a collector's error body, a transport error, a partial-success message,
//! the URL's `user:password@`) has them replaced by `<redacted>` first.
//!
//! **Delivery guarantee.** At-least-once from the spool, exactly-once otherwise as far as the
//! client can tell: a spooled request's file is deleted only after the collector answered it, so
//! a decoder killed while a spooled request is in flight (the collector has stored it, the answer
//! never came back, or came back and the process died before the `unlink`) sends that request
//! again on its next run. The window is one request (the worker sends one at a time), at most
//! `max_spans_per_request` spans, and the repeat is byte-identical (same span ids and contents).
//! A stop through [`super::Exporter::finish`] or by dropping the exporter never opens it: the
//! worker is joined before the process goes on. [`super::Exporter::stop_waiting`] does when the
//! worker is stuck in a request: that request is spooled while it may still arrive, so the next
//! run may send it again. `tests/outage.rs` measures these cases.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::spool::{create_private_dir, is_spool_file, Entry, OpenError, PutError, Spool};
use super::{ExportError, ExportSummary, Pending};
use crate::plural::{count, plural};

/// Settings of the uploaders ([`super::OtlpHttp`], [`super::JaegerThriftHttp`]).
///
/// The defaults suit a developer machine next to a board; tests shorten the times.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Spans per HTTP request (default 512; `microspan decode --max-spans-per-request`). A
    /// request the collector finds too large (413) is sent again in halves.
    pub max_spans_per_request: usize,
    /// Requests held in memory between `export` and the worker (default 64). When full, requests
    /// go to the spool.
    pub queue_capacity: usize,
    /// Where requests that cannot be sent yet are kept; each uploader uses a subdirectory named
    /// after its protocol and URL. `None` disables the spool (then the queue's overflow is lost,
    /// and counted). Default: [`default_spool_dir`], private to the user.
    pub spool_dir: Option<PathBuf>,
    /// Bound on the spool's size in bytes (default 256 MiB).
    pub spool_max_bytes: u64,
    /// Delay before the first retry (default 500 ms); it doubles on each retry, with jitter.
    pub initial_backoff: Duration,
    /// Longest delay between two tries (default 30 s); also the pause after a request was parked.
    pub max_backoff: Duration,
    /// Attempts of one request before it is parked in the spool (default 8).
    pub max_attempts: u32,
    /// The longest `Retry-After` waited for in place (default 60 s); a longer one parks the
    /// request and pauses the worker for that long.
    pub max_retry_after: Duration,
    /// Timeout for connecting (default 5 s).
    pub connect_timeout: Duration,
    /// Timeout for a whole request (default 30 s).
    pub request_timeout: Duration,
    /// How long `finish` keeps delivering (default 30 s); [`super::Exporter::stop_waiting`]
    /// cuts it short.
    pub finish_timeout: Duration,
    /// Extra headers sent with every request, e.g. `Authorization: Bearer …` for a collector
    /// behind an authenticating proxy. Their values are never printed.
    pub headers: Vec<Header>,
    /// A PEM file of CA certificates to trust for `https://` instead of the bundled Mozilla roots
    /// (a self-hosted collector with a private CA). `None`: the Mozilla roots.
    pub ca_cert: Option<PathBuf>,
}

/// An extra HTTP header of the uploads. The value is a secret (a token, a password): `Debug`
/// shows `<redacted>` instead, and the uploaders scrub it from every message they produce.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    name: String,
    value: String,
}

impl Header {
    /// A header; refuses a name that is not an HTTP token and a value with control characters
    /// (the error names the header, never its value).
    pub fn new(name: &str, value: &str) -> Result<Self, ExportError> {
        let name = name.trim();
        let bad = |reason: &str| ExportError::InvalidHeader {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        ureq::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad("the name is not a valid HTTP header name"))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(bad("the value is empty"));
        }
        ureq::http::HeaderValue::from_str(value)
            .map_err(|_| bad("the value has characters an HTTP header cannot carry (control characters or non-ASCII)"))?;
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-type" | "content-length" | "host" | "transfer-encoding" | "connection"
        ) {
            return Err(bad("the uploader sets this header itself"));
        }
        Ok(Self {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    /// Parses `Name: value` (the form of `curl -H` and of `--header`).
    pub fn parse(spec: &str) -> Result<Self, ExportError> {
        match spec.split_once(':') {
            Some((name, value)) => Self::new(name, value),
            None => Err(ExportError::InvalidHeader {
                name: spec
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(40)
                    .collect(),
                reason: "expected `Name: value`".into(),
            }),
        }
    }

    /// The header's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header's value (a secret: do not print it).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

/// Replaces secrets (header values, a URL's password) in texts that may be printed.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

const REDACTED: &str = "<redacted>";

impl Redactor {
    pub fn new(headers: &[Header], url: &str) -> Self {
        let mut secrets = Vec::new();
        for h in headers {
            secrets.push(h.value.clone());
            // `Bearer TOKEN`: a server that echoes only the token must not leak it either.
            secrets.extend(
                h.value
                    .split_whitespace()
                    .filter(|w| w.len() >= 6)
                    .map(str::to_string),
            );
        }
        if let Some((_, password)) = userinfo(url).and_then(|u| u.split_once(':')) {
            if !password.is_empty() {
                secrets.push(password.to_string());
            }
        }
        // Longest first, so a value is replaced whole before its words are.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

/// The `user:password` part of a URL, if it has one.
fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    authority.rsplit_once('@').map(|(info, _)| info)
}

/// The URL as it may be printed: a password in it replaced.
pub(crate) fn display_url(url: &str) -> String {
    match userinfo(url).and_then(|u| u.split_once(':')) {
        Some((user, password)) if !password.is_empty() => url.replacen(
            &format!("{user}:{password}@"),
            &format!("{user}:{REDACTED}@"),
            1,
        ),
        _ => url.to_string(),
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_spans_per_request: 512,
            queue_capacity: 64,
            spool_dir: Some(default_spool_dir()),
            spool_max_bytes: 256 << 20,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
            max_retry_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            finish_timeout: Duration::from_secs(30),
            headers: Vec::new(),
            ca_cert: None,
        }
    }
}

/// The spool directory when none is given (`--spool-dir`), private to the user so that two users
/// of one machine neither share a spool nor lock each other out of one:
/// `$XDG_STATE_HOME/microspan/spool`, else `$HOME/.local/state/microspan/spool`, else
/// `microspan-spool-<uid>` in the temporary directory (the uploaders create it 0700 and refuse it
/// when another user owns it). Relative paths in the variables are ignored, as the XDG Base
/// Directory specification says.
pub fn default_spool_dir() -> PathBuf {
    spool_dir_for(
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
        &std::env::temp_dir(),
        &user_id(),
    )
}

fn spool_dir_for(
    state_home: Option<OsString>,
    home: Option<OsString>,
    temp: &Path,
    user: &str,
) -> PathBuf {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(state) = absolute(state_home) {
        state.join("microspan").join("spool")
    } else if let Some(home) = absolute(home) {
        home.join(".local")
            .join("state")
            .join("microspan")
            .join("spool")
    } else {
        temp_spool_dir(temp, user)
    }
}

/// The last resort of [`default_spool_dir`]: a name anyone can predict, in a directory anyone
/// can write.
fn temp_spool_dir(temp: &Path, user: &str) -> PathBuf {
    temp.join(format!("microspan-spool-{user}"))
}

/// The spool of microspan versions before the per-user default ([`default_spool_dir`]):
/// `microspan-spool` in the temporary directory (`/tmp/microspan-spool`), shared by every user of
/// the machine. A run with the default spool does not replay what they left there;
/// [`legacy_spool_note`] says so.
pub fn legacy_spool_dir() -> PathBuf {
    std::env::temp_dir().join("microspan-spool")
}

/// A note for a run that uploads with the default spool: `dir`, the spool older versions used
/// ([`legacy_spool_dir`]), holds spooled requests that this run does not replay; it says how many
/// and the option that replays them (`--spool-dir DIR`). `None` when `dir` does not exist, is not
/// a directory (a symbolic link is not followed), belongs to another user (anyone can make that
/// name in a shared temporary directory, and fill it), or holds no spooled request.
///
/// Only names are read: no file is opened, moved or removed. The requests are recognised as a
/// spool recognises its own (`*.otlp`, `*.jaeger-thrift`), in the subdirectories the uploaders
/// keep per collector URL (`otlp-<hash>`, `jaeger-thrift-<hash>`).
pub fn legacy_spool_note(dir: &Path, uploads: &[(&str, &str)]) -> Option<String> {
    let batches = legacy_spool_batches(dir)?;
    let total: u64 = batches.values().sum();
    let shown = dir.display();
    let option = format!("--spool-dir {}", shell_word(&dir.to_string_lossy()));
    let mut note = format!(
        "{shown} holds {} of spans that an older microspan could not deliver (it \
         was its default spool; the default is now {}), and this run does not replay {}.",
        count(total, "spooled batch", "spooled batches"),
        default_spool_dir().display(),
        plural(total, "it", "them"),
    );
    let mut ours = 0;
    for (name, subdir) in uploads {
        if let Some(&n) = batches.get(*subdir) {
            ours += n;
            note.push_str(&format!(
                " {} for this run's {name}: run again with {option} to deliver {}.",
                count(n, "was spooled", "were spooled"),
                plural(n, "it", "them"),
            ));
        }
    }
    let others = total - ours;
    if others > 0 {
        note.push_str(&format!(
            " {} for other collector URLs: run microspan with {option} and the URL {} \
             spooled for to deliver {}.",
            count(others, "was spooled", "were spooled"),
            plural(others, "it was", "they were"),
            plural(others, "it", "them"),
        ));
    }
    note.push_str(&format!(" {shown} is left as it is."));
    Some(note)
}

/// The spooled requests in `dir`, an old default spool ([`legacy_spool_note`]), counted by the
/// subdirectory (collector URL) they are in: `None` when there are none, or when `dir` is not a
/// directory of this user's.
fn legacy_spool_batches(dir: &Path) -> Option<std::collections::BTreeMap<String, u64>> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() || !owned_by_me(&meta) {
        return None;
    }
    let mut batches = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Some(kind) = entry.file_name().to_str().and_then(uploader_kind) else {
            continue;
        };
        // `DirEntry::metadata` does not follow a symbolic link.
        match entry.metadata() {
            Ok(m) if m.is_dir() && owned_by_me(&m) => {}
            _ => continue,
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        let spooled = files
            .flatten()
            .filter(|f| f.file_type().is_ok_and(|t| t.is_file()) && is_spool_file(&f.path(), kind));
        let n = spooled.count() as u64;
        if n > 0 {
            *batches
                .entry(entry.file_name().to_string_lossy().into_owned())
                .or_insert(0) += n;
        }
    }
    (!batches.is_empty()).then_some(batches)
}

/// Whether the current user owns the file or directory of `meta` (always, off Unix).
fn owned_by_me(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        user_id().parse() == Ok(meta.uid())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        true
    }
}

/// `s` as one word for a POSIX shell: as it is when it needs no quoting, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The spool file extension and subdirectory prefix of the OTLP uploader.
pub(crate) const KIND_OTLP: &str = "otlp";
/// The spool file extension and subdirectory prefix of the Jaeger Thrift uploader.
pub(crate) const KIND_JAEGER_THRIFT: &str = "jaeger-thrift";

/// The subdirectory of a spool directory that the uploader of `kind` to `url` uses:
/// `<kind>-<FNV-1a of the URL, 16 hex digits>`.
fn spool_subdir(kind: &str, url: &str) -> String {
    format!("{kind}-{:016x}", fnv1a(url.as_bytes()))
}

/// The uploader kind whose subdirectory ([`spool_subdir`]) is named `name`, if it is one.
fn uploader_kind(name: &str) -> Option<&'static str> {
    [KIND_OTLP, KIND_JAEGER_THRIFT].into_iter().find(|kind| {
        name.strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// The effective user id, for [`temp_spool_dir`].
#[cfg(unix)]
fn user_id() -> String {
    // SAFETY: `geteuid` takes no arguments, touches no memory of ours and cannot fail.
    let uid = unsafe { libc::geteuid() };
    uid.to_string()
}

#[cfg(not(unix))]
fn user_id() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "user".into())
}

/// Creates the temporary-directory spool private, or checks that it is: another user could have
/// made it first, to read the spans or to have requests of theirs sent with our headers.
fn own_private_dir(dir: &Path) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(
            "it is not a directory (a symbolic link?)",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me: u32 = user_id().parse().unwrap_or(u32::MAX);
        if meta.uid() != me {
            return Err(std::io::Error::other(format!(
                "it belongs to another user (uid {}), not to this one (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// How long `finish` still waits for a worker after [`Uploader::stop_waiting`] before it takes
/// over the worker's queue and leaves it to its request.
pub(crate) const GIVE_UP_GRACE: Duration = Duration::from_secs(1);

/// One encoded request. The bytes are shared: the worker keeps a copy of the request it is
/// sending for a caller that stops waiting for it.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    pub bytes: Arc<Vec<u8>>,
    pub spans: u64,
}

/// How a protocol differs: where, what content type, and what a success body says.
pub(crate) struct Endpoint {
    /// `otlp` or `jaeger-thrift`: the spool file extension and subdirectory prefix.
    pub kind: &'static str,
    pub url: String,
    pub content_type: &'static str,
    /// Reads a 2xx answer (its `Content-Type` and body): `Some((rejected spans, message))` for
    /// a partial success or a warning, or why it is not a collector's answer.
    pub success: fn(Option<&str>, &[u8]) -> Success,
    /// Reads an error body into a readable message.
    pub error_message: fn(&[u8]) -> String,
    /// Splits a request's body into two requests of half its spans each, the first half first,
    /// with their span counts: for a collector that found it too large (413). `None` when it
    /// holds fewer than two spans or does not decode.
    pub split: fn(&[u8]) -> Option<Halves>,
    /// HTTP 500 may pass: retried, then rejected (not parked) once `max_attempts` are spent.
    /// OTLP says 500 is not retryable; Jaeger's Thrift endpoint answers 500 for a batch it
    /// parsed but could not pass on.
    pub retries_500: bool,
}

/// A request's body in two halves of its spans: each half's body and span count.
pub(crate) type Halves = [(Vec<u8>, u64); 2];

/// What a 2xx answer says: `Some((rejected spans, message))` for a partial success or a
/// warning, or why it is not a collector's answer.
pub(crate) type Success = Result<Option<(u64, String)>, NotACollector>;

/// Why a 2xx answer is not a collector's: the spans it answered were not delivered.
pub(crate) struct NotACollector {
    /// What came back, as in "answered HTTP 200 with {what}".
    pub what: String,
    /// What to check.
    pub hint: &'static str,
}

impl NotACollector {
    /// The answer of the Jaeger UI (or of any web page).
    pub fn html() -> Self {
        Self {
            what: "an HTML page".into(),
            hint: JAEGER_UI,
        }
    }
}

/// The hint for an HTML page where a collector was expected.
const JAEGER_UI: &str = "this looks like the Jaeger UI (port 16686), not the collector (OTLP/HTTP on port 4318, e.g. --otlp http://localhost:4318; Thrift on port 14268, e.g. --jaeger-thrift http://localhost:14268/api/traces): check the URL";

/// The media type of a `Content-Type` value, in lower case, without its parameters.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// An HTML page, by its content type or, without one that says so, by its first bytes.
pub(crate) fn is_html(content_type: Option<&str>, body: &[u8]) -> bool {
    if let Some(ct) = content_type {
        if matches!(
            media_type(ct).as_str(),
            "text/html" | "application/xhtml+xml"
        ) {
            return true;
        }
    }
    let start = body
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(body)
        .trim_ascii_start();
    let head = &start[..start.len().min(16)];
    [b"<!doctype html".as_slice(), b"<html"]
        .iter()
        .any(|tag| head.len() >= tag.len() && head[..tag.len()].eq_ignore_ascii_case(tag))
}

#[derive(Default)]
struct Stats {
    delivered: u64,
    rejected: u64,
    replayed: u64,
    replayed_rejected: u64,
    dropped: u64,
    requests: u64,
    retries: u64,
    errors: Vec<ExportError>,
    notes: Vec<String>,
    last_transport_error: Option<String>,
    /// The collector refused the credentials (401 or 403: see [`Outcome::CredentialsRefused`]):
    /// its status and message.
    credentials_refused: Option<(u16, String)>,
    /// Requests split because the collector found them too large (413).
    split: u64,
    /// The fewest spans of a request split so.
    smallest_too_large: Option<u64>,
}

struct Shared {
    deadline: Mutex<Option<Instant>>,
    stats: Mutex<Stats>,
    /// Spans of this run that are neither answered nor on disk: queued, held, or being sent.
    in_memory: AtomicU64,
    in_flight: Mutex<InFlight>,
    /// The head of the queue: halves of requests from memory that the collector found too large
    /// (413), sent before anything queued; the last is next. Counted in `in_memory` (they took
    /// the place of their request). Lock order: `in_flight`, then this, then the queue.
    front: Mutex<Vec<Payload>>,
}

/// What the worker is doing with memory, for a caller that stops waiting for it. Lock order:
/// this, then the spool or the stats.
#[derive(Default)]
struct InFlight {
    /// A copy of the request from memory being sent.
    payload: Option<Payload>,
    /// The caller stopped waiting and took over the queue: the worker must not count, spool or
    /// delete anything more.
    abandoned: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop the accounting.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The caller's side: queue, spill and final report.
pub(crate) struct Uploader {
    name: String,
    url: String,
    tx: Option<SyncSender<Payload>>,
    /// Shared with the worker: `finish` empties it when it stops waiting for a stuck worker.
    rx: Arc<Mutex<Receiver<Payload>>>,
    spool: Option<Arc<Mutex<Spool>>>,
    spool_dir: Option<PathBuf>,
    spool_max_bytes: u64,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    finish_timeout: Duration,
    /// [`UploadConfig::max_spans_per_request`], for the note on split requests.
    max_spans: usize,
    spans_in: u64,
    dropped: u64,
    finished: bool,
    /// [`Uploader::stop_waiting`] was called.
    stopped: bool,
}

impl Uploader {
    pub fn start(endpoint: Endpoint, config: &UploadConfig) -> Result<Self, ExportError> {
        let shown = display_url(&endpoint.url);
        let name = format!("{} {}", endpoint.kind, shown);
        let agent = agent(config)?;
        let redactor = Redactor::new(&config.headers, &endpoint.url);
        if let Some(dir) = &config.spool_dir {
            if *dir == temp_spool_dir(&std::env::temp_dir(), &user_id()) {
                own_private_dir(dir).map_err(|source| ExportError::Spool {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        let spool_dir = config
            .spool_dir
            .as_ref()
            .map(|d| d.join(spool_subdir(endpoint.kind, &endpoint.url)));
        let spool = match &spool_dir {
            Some(dir) => Some(Arc::new(Mutex::new(
                Spool::open(dir, endpoint.kind, config.spool_max_bytes).map_err(|e| match e {
                    OpenError::InUse => ExportError::SpoolInUse { path: dir.clone() },
                    OpenError::Io(source) => ExportError::Spool {
                        path: dir.clone(),
                        source,
                    },
                })?,
            ))),
            None => None,
        };
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            deadline: Mutex::new(None),
            stats: Mutex::default(),
            in_memory: AtomicU64::new(0),
            in_flight: Mutex::default(),
            front: Mutex::default(),
        });
        let url = shown.clone();
        let mut worker = Worker {
            agent,
            shown,
            redactor,
            endpoint,
            config: config.clone(),
            rx: rx.clone(),
            spool: spool.clone(),
            shared: shared.clone(),
            rng: seed(),
            held: None,
            paused_until: None,
            credentials_refused: false,
            split_spool_failed: false,
        };
        let handle = std::thread::Builder::new()
            .name(format!("microspan-{}", worker.endpoint.kind))
            .spawn(move || worker.run())
            .map_err(|_| ExportError::WorkerGone {
                exporter: name.clone(),
            })?;
        Ok(Self {
            name,
            url,
            tx: Some(tx),
            rx,
            spool,
            spool_dir,
            spool_max_bytes: config.spool_max_bytes,
            shared,
            worker: Some(handle),
            finish_timeout: config.finish_timeout,
            max_spans: config.max_spans_per_request.max(1),
            spans_in: 0,
            dropped: 0,
            finished: false,
            stopped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of its subdirectory in the spool (one per collector URL), if it spools.
    pub fn spool_subdir(&self) -> Option<&str> {
        self.spool_dir.as_deref()?.file_name()?.to_str()
    }

    /// Queues a request; spills it to the spool when the queue is full. Never blocks on the
    /// network.
    pub fn submit(&mut self, payload: Payload) -> Result<(), ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        let Some(tx) = &self.tx else {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        };
        self.spans_in += payload.spans;
        // Counted before the worker can take it (and settle it).
        let spans = payload.spans;
        self.shared.in_memory.fetch_add(spans, Ordering::SeqCst);
        match tx.try_send(payload) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(p)) => {
                self.shared.in_memory.fetch_sub(spans, Ordering::SeqCst);
                self.spill(p)
            }
            Err(TrySendError::Disconnected(p)) => {
                self.shared.in_memory.fetch_sub(spans, Ordering::SeqCst);
                self.spill(p)?;
                Err(ExportError::WorkerGone {
                    exporter: self.name.clone(),
                })
            }
        }
    }

    fn spill(&mut self, p: Payload) -> Result<(), ExportError> {
        let why = match &self.spool {
            Some(spool) => match lock(spool).put(&p) {
                Ok(()) => return Ok(()),
                Err(PutError::Full) => format!(
                    "the spool {} is full ({} bytes)",
                    self.spool_dir
                        .as_deref()
                        .unwrap_or_else(|| "".as_ref())
                        .display(),
                    self.spool_max_bytes
                ),
                Err(PutError::Io(e)) => format!(
                    "the spool {} cannot be written ({e})",
                    self.spool_dir
                        .as_deref()
                        .unwrap_or_else(|| "".as_ref())
                        .display()
                ),
            },
            None => "no spool directory is configured".to_string(),
        };
        self.dropped += p.spans;
        Err(ExportError::QueueFull {
            endpoint: self.url.clone(),
            spans: p.spans,
            why,
        })
    }

    /// Closes the queue and starts the final delivery, whose deadline is `finish_timeout` from
    /// now; returns at once. Later calls do nothing.
    pub fn begin_finish(&mut self) {
        if self.tx.take().is_some() {
            *lock(&self.shared.deadline) = Some(instant_after(self.finish_timeout));
        }
    }

    /// What is left to deliver while the worker runs; `None` once it is done (or has nothing).
    pub fn pending(&self) -> Option<Pending> {
        if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
            return None;
        }
        let spool = self
            .spool
            .as_ref()
            .map(|s| lock(s).counted())
            .unwrap_or_default();
        let in_memory = self.shared.in_memory.load(Ordering::SeqCst);
        let spans = in_memory.saturating_add(spool.total());
        if spans == 0 {
            return None;
        }
        let time_left = match *lock(&self.shared.deadline) {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => self.finish_timeout,
        };
        Some(Pending {
            exporter: self.name.clone(),
            spans,
            earlier: spool.earlier,
            in_memory,
            time_left,
            spool: self.spool_dir.clone().filter(|_| self.spool.is_some()),
            last_error: lock(&self.shared.stats).last_transport_error.clone(),
        })
    }

    /// Ends the final delivery now: the worker stops at its next step and spools what it holds
    /// (without a spool it is lost, and counted). `finish` then reports; it waits at most
    /// [`GIVE_UP_GRACE`] for a worker stuck in a request.
    pub fn stop_waiting(&mut self) {
        self.begin_finish();
        self.stopped = true;
        *lock(&self.shared.deadline) = Some(Instant::now());
    }

    /// Waits for the worker: until it ends, or after [`Uploader::stop_waiting`] for
    /// [`GIVE_UP_GRACE`] at most, then takes over what it still holds. `false` when it panicked.
    fn join_worker(&mut self) -> bool {
        let Some(handle) = self.worker.take() else {
            return false;
        };
        if self.stopped {
            let until = instant_after(GIVE_UP_GRACE);
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(POLL);
            }
            if !handle.is_finished() {
                // Stuck in a request to a collector that does not answer: left to it.
                self.take_over();
                return true;
            }
        }
        handle.join().is_ok()
    }

    /// Keeps what a stuck worker holds: its queue (with the halves of split requests at its head)
    /// and a copy of the request it is sending go to the spool (the collector may still store
    /// that request: the next run may send it again).
    /// Without a spool, or when the spool refuses them, they are counted as dropped.
    fn take_over(&mut self) {
        let mut in_flight = lock(&self.shared.in_flight);
        in_flight.abandoned = true;
        let sending = in_flight.payload.take();
        let mut queued: Vec<Payload> = std::mem::take(&mut *lock(&self.shared.front));
        queued.reverse();
        queued.extend(std::iter::from_fn(|| lock(&self.rx).try_recv().ok()));
        if let Some(spool) = &self.spool {
            for p in sending.into_iter().chain(queued) {
                let result = lock(spool).put(&p);
                match result {
                    Ok(()) => {
                        self.shared.in_memory.fetch_sub(p.spans, Ordering::SeqCst);
                    }
                    Err(PutError::Full) => {}
                    Err(PutError::Io(source)) => {
                        let path = lock(spool).dir().to_path_buf();
                        lock(&self.shared.stats)
                            .errors
                            .push(ExportError::Spool { path, source });
                    }
                }
            }
        }
        // What could not be kept.
        let lost = self.shared.in_memory.swap(0, Ordering::SeqCst);
        let mut stats = lock(&self.shared.stats);
        stats.dropped += lost;
        stats.last_transport_error.get_or_insert_with(|| {
            "a request was still unanswered when the wait was stopped".into()
        });
    }

    /// Closes the queue, lets the worker deliver until the deadline, and reports.
    pub fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        self.finished = true;
        self.begin_finish();
        let worker_ok = self.join_worker();

        let mut stats = std::mem::take(&mut *lock(&self.shared.stats));
        let spooled = self
            .spool
            .as_ref()
            .map(|s| lock(s).spans())
            .unwrap_or_default();
        // The worker is gone (or left to its last request): release the spool (and, once that
        // worker is gone too, its lock) for the next decoder.
        let had_spool = self.spool.take().is_some();
        let mut summary = ExportSummary::new(&self.name);
        summary.spans_in = self.spans_in;
        summary.delivered = stats.delivered;
        summary.rejected = stats.rejected;
        summary.replayed = stats.replayed;
        summary.replayed_rejected = stats.replayed_rejected;
        summary.dropped = self.dropped + stats.dropped;
        summary.spooled = spooled.total();
        summary.spooled_earlier = spooled.earlier;
        summary.requests = stats.requests;
        summary.retries = stats.retries;
        summary.notes = std::mem::take(&mut stats.notes);
        // When nothing got through, the error says what to raise on the collector.
        if let Some(smallest) = stats.smallest_too_large.filter(|_| stats.delivered > 0) {
            summary.notes.push(format!(
                "{}: the collector refused {} as too large (HTTP 413), the smallest of {}; each was split in halves and sent again; --max-spans-per-request {} (now {}) would save those requests",
                self.url,
                count(stats.split, "request", "requests"),
                count(smallest, "span", "spans"),
                (smallest / 2).max(1),
                self.max_spans
            ));
        }
        summary.errors = std::mem::take(&mut stats.errors);
        if self.dropped > 0 {
            summary.errors.push(ExportError::QueueFull {
                endpoint: self.url.clone(),
                spans: self.dropped,
                why: if had_spool {
                    "the spool was full or could not be written".into()
                } else {
                    "no spool directory is configured".into()
                },
            });
        }
        let spool = self
            .spool_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        if let Some((status, body)) = stats.credentials_refused.take() {
            summary.errors.push(ExportError::CredentialsRefused {
                endpoint: self.url.clone(),
                status,
                body,
                hint: hint(status),
                spans: spooled.total(),
                dropped: stats.dropped,
                spool,
            });
        } else if spooled.total() > 0 || stats.dropped > 0 {
            summary.errors.push(ExportError::Unreachable {
                endpoint: self.url.clone(),
                last_error: stats.last_transport_error.take().unwrap_or_default(),
                spans: spooled.total(),
                dropped: stats.dropped,
                spool,
            });
        }
        if !worker_ok {
            summary.errors.push(ExportError::WorkerGone {
                exporter: self.name.clone(),
            });
        }
        Ok(summary)
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        if !self.finished {
            // Not finished: park what is queued in the spool at once instead of uploading.
            *lock(&self.shared.deadline) = Some(Instant::now());
            self.tx = None;
            if let Some(h) = self.worker.take() {
                let _ = h.join();
            }
        }
    }
}

fn agent(config: &UploadConfig) -> Result<ureq::Agent, ExportError> {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if let Some(path) = &config.ca_cert {
        tls = tls.root_certs(RootCerts::new_with_certs(&ca_certs(path)?));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A redirect is answered, not followed: see the module's documentation.
        .max_redirects(0)
        .timeout_connect(Some(config.connect_timeout))
        .timeout_global(Some(config.request_timeout))
        .user_agent(format!("microspan-decoder/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build()
        .new_agent())
}

/// The certificates of a PEM file (`--ca-cert`).
fn ca_certs(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, ExportError> {
    let bad = |reason: String| ExportError::CaCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {} // keys and other items are not trust anchors
            Err(e) => return Err(bad(format!("it is not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(bad("it holds no `BEGIN CERTIFICATE` block".into()));
    }
    Ok(certs)
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish() | 1
}

/// FNV-1a, for a stable spool subdirectory name per URL.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Where a job came from.
enum Job {
    Memory(Payload),
    Spooled(Entry),
}

impl Job {
    fn payload(&self) -> &Payload {
        match self {
            Job::Memory(p) => p,
            Job::Spooled(e) => &e.payload,
        }
    }
}

/// The answer to one request, after retries.
enum Outcome {
    /// Accepted; some spans may have been rejected in a partial success.
    Delivered { rejected: u64, message: String },
    /// Refused for good.
    Rejected(ExportError),
    /// Too large for the collector (413): these two halves take the request's place.
    Split([Payload; 2]),
    /// The collector refused the credentials (401, 403) and there is a spool: the request is
    /// kept in it for a run with the right credentials, and this run sends nothing more (the
    /// credentials will not change before it ends).
    CredentialsRefused { status: u16, body: String },
    /// Retryable failures until `max_attempts`, or a `Retry-After` beyond `max_retry_after`:
    /// park it and pause for this long.
    GaveUp(Duration),
    /// While finishing, a request from memory must wait before its retry: it waits in the spool
    /// (and the queue with it), for this long.
    Spill(Duration),
    /// The finish deadline came first.
    Interrupted,
}

/// How a sleep between two tries ended.
enum Slept {
    Done,
    /// The finish deadline came first.
    Deadline,
    /// `finish` began; this much of the sleep was left.
    Finishing(Duration),
}

/// One try.
enum Attempt {
    Done(Outcome),
    /// Retryable (after this `Retry-After`, if any); parked once the attempts are spent.
    Retry(Option<Duration>),
    /// Retryable, but rejected with this error (not parked) once the attempts are spent or
    /// the collector asks for a longer wait than `max_retry_after`.
    RetryOrReject(Option<Duration>, ExportError),
}

struct Worker {
    agent: ureq::Agent,
    /// The URL as it may be printed.
    shown: String,
    redactor: Redactor,
    endpoint: Endpoint,
    config: UploadConfig,
    rx: Arc<Mutex<Receiver<Payload>>>,
    spool: Option<Arc<Mutex<Spool>>>,
    shared: Arc<Shared>,
    rng: u64,
    /// A request that gave up while there is no spool to park it in.
    held: Option<Payload>,
    /// The collector looked down: wait before trying again.
    paused_until: Option<Instant>,
    /// The collector refused the credentials: every request goes to the spool, and the spool
    /// is not replayed, until the run ends.
    credentials_refused: bool,
    /// The spool could not take the halves of a spooled request (said once).
    split_spool_failed: bool,
}

const POLL: Duration = Duration::from_millis(20);

impl Worker {
    fn deadline(&self) -> Option<Instant> {
        *lock(&self.shared.deadline)
    }

    fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn paused(&self) -> bool {
        self.paused_until.is_some_and(|t| Instant::now() < t) || self.credentials_refused
    }

    /// The caller stopped waiting and took over the queue ([`Uploader::stop_waiting`]).
    fn abandoned(&self) -> bool {
        lock(&self.shared.in_flight).abandoned
    }

    /// Runs `f`, which counts, spools or deletes, unless the caller took over; `f` runs under the
    /// lock that taking over takes, so that the two never both keep or count a request. No
    /// request is in flight any more (this is called between requests, or after one).
    fn settle(&mut self, f: impl FnOnce(&mut Self)) {
        let shared = self.shared.clone();
        let mut in_flight = lock(&shared.in_flight);
        if !in_flight.abandoned {
            in_flight.payload = None;
            f(self);
        }
    }

    /// A request from the queue has left memory (answered, spooled or dropped).
    fn settled(&self, p: &Payload) {
        self.shared.in_memory.fetch_sub(p.spans, Ordering::SeqCst);
    }

    // Taking a request from the queue notes it as in flight under the lock `Uploader::take_over`
    // takes: a request is always in the queue, in flight, or settled. Both locks are released
    // before the request is handled.
    fn try_recv(&self) -> Result<Payload, TryRecvError> {
        let mut in_flight = lock(&self.shared.in_flight);
        let got = match lock(&self.shared.front).pop() {
            Some(p) => Ok(p),
            None => lock(&self.rx).try_recv(),
        };
        if let Ok(p) = &got {
            in_flight.payload = Some(p.clone());
        }
        got
    }

    fn recv_timeout(&self, wait: Duration) -> Result<Payload, RecvTimeoutError> {
        let mut in_flight = lock(&self.shared.in_flight);
        let got = match lock(&self.shared.front).pop() {
            Some(p) => Ok(p),
            None => lock(&self.rx).recv_timeout(wait),
        };
        if let Ok(p) = &got {
            in_flight.payload = Some(p.clone());
        }
        got
    }

    /// The next queued request, for [`Worker::settle`]'s closures (which hold the lock).
    fn next_queued(&self) -> Option<Payload> {
        if let Some(p) = lock(&self.shared.front).pop() {
            return Some(p);
        }
        let rx = lock(&self.rx);
        rx.try_recv().ok()
    }

    /// Halves of a split request wait at the head of the queue.
    fn has_front(&self) -> bool {
        !lock(&self.shared.front).is_empty()
    }

    fn run(&mut self) {
        let mut open = true;
        loop {
            if self.past_deadline() || self.abandoned() {
                break;
            }
            // New requests first (the halves of a split one before them, also once the queue is
            // closed); while paused they go straight to the spool.
            let mut job = None;
            if (open || self.has_front()) && self.may_take_new() {
                match self.try_recv() {
                    Ok(p) if self.paused() && self.spool.is_some() => {
                        self.settle(|w| w.park(p));
                        continue;
                    }
                    Ok(p) => job = Some(Job::Memory(p)),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if job.is_none() && !self.paused() {
                job = self
                    .held
                    .take()
                    .map(Job::Memory)
                    .or_else(|| self.next_spooled());
            }
            let Some(job) = job else {
                if !open
                    && self.held.is_none()
                    && !self.has_front()
                    && (self.spool_empty() || self.credentials_refused)
                {
                    break; // everything answered, or kept for a run with other credentials
                }
                self.idle(open);
                continue;
            };
            self.handle(job);
        }
        // Deadline: keep what was not sent.
        self.settle(|w| {
            if let Some(p) = w.held.take() {
                w.park(p);
            }
            w.spill_queue();
            if let Some(p) = w.held.take() {
                // No spool: it is lost, and counted.
                lock(&w.shared.stats).dropped += p.spans;
                w.settled(&p);
            }
        });
    }

    /// Parks everything queued (within [`Worker::settle`]).
    fn spill_queue(&mut self) {
        while let Some(p) = self.next_queued() {
            self.park(p);
        }
    }

    /// Waits a little for new work (or for the pause to end).
    fn idle(&mut self, open: bool) {
        let mut wait = POLL;
        if let Some(t) = self.paused_until {
            wait = wait.min(
                t.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
        }
        if open && self.may_take_new() {
            match self.recv_timeout(wait) {
                Ok(p) if self.paused() => self.settle(|w| w.park(p)),
                Ok(p) => self.handle(Job::Memory(p)),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        } else {
            std::thread::sleep(wait);
        }
    }

    /// While paused without a spool, new requests stay in the queue (whose overflow is then
    /// dropped and counted by the caller).
    fn may_take_new(&self) -> bool {
        self.spool.is_some() || !self.paused()
    }

    fn held_or_park(&mut self, p: Payload) {
        if self.held.is_none() && self.spool.is_none() {
            self.held = Some(p);
        } else {
            self.park(p);
        }
    }

    fn spool_empty(&self) -> bool {
        self.spool.as_ref().is_none_or(|s| lock(s).is_empty())
    }

    fn next_spooled(&mut self) -> Option<Job> {
        let spool = self.spool.as_ref()?;
        let next = lock(spool).oldest();
        match next {
            Ok(entry) => entry.map(Job::Spooled),
            Err(e) => {
                let path = lock(spool).dir().to_path_buf();
                lock(&self.shared.stats)
                    .errors
                    .push(ExportError::Spool { path, source: e });
                None
            }
        }
    }

    /// Puts a request from memory in the spool (or holds it, or counts it lost).
    fn park(&mut self, p: Payload) {
        let Some(spool) = &self.spool else {
            if self.held.is_none() {
                self.held = Some(p);
            } else {
                lock(&self.shared.stats).dropped += p.spans;
                self.settled(&p);
            }
            return;
        };
        let result = lock(spool).put(&p);
        match result {
            Ok(()) => {}
            Err(PutError::Full) => lock(&self.shared.stats).dropped += p.spans,
            Err(PutError::Io(source)) => {
                let path = lock(spool).dir().to_path_buf();
                let mut stats = lock(&self.shared.stats);
                stats.dropped += p.spans;
                stats.errors.push(ExportError::Spool { path, source });
            }
        }
        self.settled(&p);
    }

    fn handle(&mut self, job: Job) {
        let from_memory = matches!(job, Job::Memory(_));
        {
            let mut in_flight = lock(&self.shared.in_flight);
            if in_flight.abandoned {
                return; // counted by the caller, who took over
            }
            if let Job::Memory(p) = &job {
                in_flight.payload = Some(p.clone());
            }
        }
        let outcome = self.deliver(job.payload(), from_memory);
        self.settle(|w| w.account(job, outcome));
    }

    /// Counts an answered request, or keeps it for later.
    fn account(&mut self, job: Job, outcome: Outcome) {
        let spans = job.payload().spans;
        let inherited = matches!(&job, Job::Spooled(e) if e.inherited);
        if let (Job::Memory(p), Outcome::Delivered { .. } | Outcome::Rejected(_)) = (&job, &outcome)
        {
            self.settled(p);
        }
        match outcome {
            Outcome::Delivered { rejected, message } => {
                self.paused_until = None;
                let mut stats = lock(&self.shared.stats);
                let rejected = rejected.min(spans);
                stats.delivered += spans - rejected;
                stats.rejected += rejected;
                if inherited {
                    stats.replayed += spans;
                    stats.replayed_rejected += rejected;
                }
                if rejected > 0 {
                    stats.errors.push(ExportError::PartiallyRejected {
                        endpoint: self.shown.clone(),
                        spans: rejected,
                        message: self.redactor.clean(&message),
                    });
                } else if !message.is_empty() {
                    stats
                        .notes
                        .push(format!("{}: {}", self.shown, self.redactor.clean(&message)));
                }
                drop(stats);
                self.forget(job);
            }
            Outcome::CredentialsRefused { status, body } => {
                self.credentials_refused = true;
                lock(&self.shared.stats)
                    .credentials_refused
                    .get_or_insert((status, body));
                match job {
                    // Counted as spooled (or dropped, when the spool is full) by `park`.
                    Job::Memory(p) => self.park(p),
                    // Left where it is, for the next run.
                    Job::Spooled(_) => {}
                }
            }
            Outcome::Rejected(err) => {
                self.paused_until = None;
                let mut stats = lock(&self.shared.stats);
                stats.rejected += spans;
                if inherited {
                    stats.replayed += spans;
                    stats.replayed_rejected += spans;
                }
                push_rejection(&mut stats.errors, err);
                drop(stats);
                self.forget(job);
            }
            Outcome::Split(halves) => {
                self.paused_until = None;
                let mut stats = lock(&self.shared.stats);
                stats.split += 1;
                stats.smallest_too_large =
                    Some(stats.smallest_too_large.map_or(spans, |n| n.min(spans)));
                drop(stats);
                match job {
                    // In its place at the head of the queue, and in its count in memory.
                    Job::Memory(_) => {
                        let [first, second] = halves;
                        let mut front = lock(&self.shared.front);
                        front.push(second);
                        front.push(first);
                    }
                    Job::Spooled(entry) => self.split_spooled(&entry, &halves),
                }
            }
            Outcome::GaveUp(pause) => {
                self.paused_until = Some(instant_after(pause));
                if let Job::Memory(p) = job {
                    self.held_or_park(p);
                }
            }
            Outcome::Spill(pause) => {
                self.paused_until = Some(instant_after(pause));
                if let Job::Memory(p) = job {
                    self.park(p);
                }
                self.spill_queue();
            }
            Outcome::Interrupted => {
                if let Job::Memory(p) = job {
                    self.held_or_park(p);
                }
            }
        }
    }

    /// Replaces a spooled request by its halves in the spool. When the spool cannot take them, the
    /// request stays as it is and the worker pauses as for a collector that is down: it is tried
    /// again later, or by the next run.
    fn split_spooled(&mut self, entry: &Entry, halves: &[Payload; 2]) {
        let Some(spool) = &self.spool else {
            return;
        };
        let result = lock(spool).split(entry, halves);
        if let Err(source) = result {
            let path = lock(spool).dir().to_path_buf();
            let mut stats = lock(&self.shared.stats);
            stats.last_transport_error = Some(format!(
                "HTTP 413, and the spool could not take the halves of the request: {source}"
            ));
            if !self.split_spool_failed {
                self.split_spool_failed = true;
                stats.errors.push(ExportError::Spool { path, source });
            }
            drop(stats);
            self.paused_until = Some(instant_after(self.config.max_backoff));
        }
    }

    /// A request in two halves of its spans, for a collector that found it too large: `None`
    /// when it cannot be split (a single span, or a body that does not decode as the request
    /// it should be).
    fn split(&self, p: &Payload) -> Option<[Payload; 2]> {
        let [(first, n1), (second, n2)] = (self.endpoint.split)(&p.bytes)?;
        (n1 > 0 && n2 > 0 && n1.checked_add(n2) == Some(p.spans)).then(|| {
            [
                Payload {
                    bytes: first.into(),
                    spans: n1,
                },
                Payload {
                    bytes: second.into(),
                    spans: n2,
                },
            ]
        })
    }

    /// A spooled request was answered: delete its file.
    fn forget(&mut self, job: Job) {
        if let (Job::Spooled(entry), Some(spool)) = (job, &self.spool) {
            lock(spool).remove(&entry);
        }
    }

    /// Sends one request, retrying what is retryable.
    fn deliver(&mut self, p: &Payload, from_memory: bool) -> Outcome {
        let max_attempts = self.config.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            if self.past_deadline() {
                return Outcome::Interrupted;
            }
            attempt += 1;
            let (retry_after, rejected) = match self.attempt(p, attempt) {
                Attempt::Done(outcome) => return outcome,
                Attempt::Retry(retry_after) => (retry_after, None),
                Attempt::RetryOrReject(retry_after, error) => (retry_after, Some(error)),
            };
            // A collector that cannot be reached or is overloaded (not one that answered 500).
            let unavailable = rejected.is_none();
            // Parked (the pause still honours the collector's Retry-After), or rejected.
            let give_up = |pause: Duration| match rejected {
                Some(error) => Outcome::Rejected(error),
                None => Outcome::GaveUp(pause),
            };
            if attempt >= max_attempts {
                return give_up(retry_after.unwrap_or(self.config.max_backoff));
            }
            let delay = match retry_after {
                Some(d) if d > self.config.max_retry_after => {
                    let mut outcome = give_up(d);
                    if let Outcome::Rejected(ExportError::Rejected { hint, .. }) = &mut outcome {
                        *hint = LONG_RETRY_AFTER;
                    }
                    return outcome;
                }
                Some(d) => d,
                None => self.backoff(attempt),
            };
            lock(&self.shared.stats).retries += 1;
            // The collector is failing while the run ends: a process killed during the wait (a
            // third Ctrl-C, systemd's SIGKILL) must not lose what only memory holds.
            let spill = from_memory && unavailable && self.spool.is_some();
            match self.sleep(delay, spill) {
                Slept::Done => {}
                Slept::Deadline => return Outcome::Interrupted,
                Slept::Finishing(left) => return Outcome::Spill(left),
            }
        }
    }

    /// Exponential backoff with jitter: a random delay in [d/2, d], d = initial · 2^(n-1), capped.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        let d = self
            .config
            .initial_backoff
            .saturating_mul(factor)
            .min(self.config.max_backoff);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let nanos = half.as_nanos().min(u128::from(u64::MAX)) as u64;
        half + Duration::from_nanos(if nanos == 0 {
            0
        } else {
            self.rng % (nanos + 1)
        })
    }

    /// Sleeps unless the deadline comes first, or, with `until_finishing`, the run ends
    /// (`finish` set a deadline).
    fn sleep(&self, d: Duration, until_finishing: bool) -> Slept {
        let until = instant_after(d);
        loop {
            let now = Instant::now();
            let deadline = self.deadline();
            if deadline.is_some_and(|dl| dl <= until && now >= dl) {
                return Slept::Deadline;
            }
            if now >= until {
                return Slept::Done;
            }
            if until_finishing && deadline.is_some() {
                return Slept::Finishing(until - now);
            }
            std::thread::sleep((until - now).min(POLL));
        }
    }

    /// Try number `n` (from 1).
    fn attempt(&mut self, p: &Payload, n: u32) -> Attempt {
        lock(&self.shared.stats).requests += 1;
        let mut request = self
            .agent
            .post(&self.endpoint.url)
            .header("Content-Type", self.endpoint.content_type);
        for h in &self.config.headers {
            // Checked by `Header::new`; marked sensitive so the HTTP stack never shows it.
            if let Ok(mut value) = ureq::http::HeaderValue::from_str(&h.value) {
                value.set_sensitive(true);
                request = request.header(h.name.as_str(), value);
            }
        }
        if let Some(deadline) = self.deadline() {
            // Do not let one request outlive the finish deadline by much.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50));
            request = request
                .config()
                .timeout_global(Some(left.min(self.config.request_timeout)))
                .build();
        }
        let mut response = match request.send(&p.bytes[..]) {
            Ok(r) => r,
            Err(e) => {
                lock(&self.shared.stats).last_transport_error =
                    Some(self.redactor.clean(&transport_error(&e)));
                return Attempt::Retry(None);
            }
        };
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| display_url(&absolute_location(&self.endpoint.url, l)));
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        // The collector refused the request (with `hint` for what to do).
        let rejected = |hint| ExportError::Rejected {
            endpoint: self.shown.clone(),
            status,
            attempts: n,
            body: self.redactor.clean(&(self.endpoint.error_message)(&body)),
            spans: p.spans,
            requests: 1,
            hint,
        };
        match status {
            200..=299 => match (self.endpoint.success)(content_type.as_deref(), &body) {
                Ok(answer) => {
                    let (rejected, message) = answer.unwrap_or_default();
                    Attempt::Done(Outcome::Delivered { rejected, message })
                }
                Err(not) => Attempt::Done(Outcome::Rejected(ExportError::NotACollector {
                    endpoint: self.shown.clone(),
                    status,
                    what: self.redactor.clean(&not.what),
                    spans: p.spans,
                    requests: 1,
                    hint: not.hint,
                })),
            },
            300..=399 => Attempt::Done(Outcome::Rejected(ExportError::Redirected {
                endpoint: self.shown.clone(),
                status,
                location: location
                    .map(|l| self.redactor.clean(&l))
                    .unwrap_or_default(),
                spans: p.spans,
                requests: 1,
            })),
            429 | 502 | 503 | 504 => {
                lock(&self.shared.stats).last_transport_error = Some(format!("HTTP {status}"));
                Attempt::Retry(retry_after)
            }
            413 if p.spans > 1 => match self.split(p) {
                Some(halves) => Attempt::Done(Outcome::Split(halves)),
                None => Attempt::Done(Outcome::Rejected(rejected(TOO_LARGE_UNSPLIT))),
            },
            401 | 403 if self.spool.is_some() => {
                let body = self.redactor.clean(&(self.endpoint.error_message)(&body));
                Attempt::Done(Outcome::CredentialsRefused { status, body })
            }
            _ => {
                let error = rejected(hint(status));
                if status == 500 && self.endpoint.retries_500 {
                    lock(&self.shared.stats).last_transport_error = Some(format!("HTTP {status}"));
                    Attempt::RetryOrReject(retry_after, error)
                } else {
                    Attempt::Done(Outcome::Rejected(error))
                }
            }
        }
    }
}

/// Adds a refusal to the run's errors, counted into an earlier one refused alike (same URL,
/// status, answer, attempts), so that a collector refusing every request is one line, not one
/// per request.
fn push_rejection(errors: &mut Vec<ExportError>, err: ExportError) {
    for e in errors.iter_mut() {
        if let Some((spans, requests)) = refused_alike(e, &err) {
            *spans += refusal_spans(&err);
            *requests += 1;
            return;
        }
    }
    errors.push(err);
}

/// The span and request counters of `into` when `err` is a refusal like it.
fn refused_alike<'a>(
    into: &'a mut ExportError,
    err: &ExportError,
) -> Option<(&'a mut u64, &'a mut u64)> {
    match (into, err) {
        (
            ExportError::Rejected {
                endpoint,
                status,
                attempts,
                body,
                spans,
                requests,
                ..
            },
            ExportError::Rejected {
                endpoint: e,
                status: s,
                attempts: a,
                body: b,
                ..
            },
        ) if (&*endpoint, *status, *attempts, &*body) == (e, *s, *a, b) => Some((spans, requests)),
        (
            ExportError::NotACollector {
                endpoint,
                status,
                what,
                spans,
                requests,
                ..
            },
            ExportError::NotACollector {
                endpoint: e,
                status: s,
                what: w,
                ..
            },
        ) if (&*endpoint, *status, &*what) == (e, *s, w) => Some((spans, requests)),
        (
            ExportError::Redirected {
                endpoint,
                status,
                location,
                spans,
                requests,
            },
            ExportError::Redirected {
                endpoint: e,
                status: s,
                location: l,
                ..
            },
        ) if (&*endpoint, *status, &*location) == (e, *s, l) => Some((spans, requests)),
        _ => None,
    }
}

/// Spans in a refusal.
fn refusal_spans(err: &ExportError) -> u64 {
    match err {
        ExportError::Rejected { spans, .. }
        | ExportError::NotACollector { spans, .. }
        | ExportError::Redirected { spans, .. } => *spans,
        _ => 0,
    }
}

/// Why a retryable refusal was given up at once: the collector asked for a longer wait than
/// `max_retry_after`.
const LONG_RETRY_AFTER: &str = "the collector asked to be retried later than max_retry_after allows (its Retry-After); check its logs and its storage";

/// What to check for a 413 whose request could not be split.
const TOO_LARGE_UNSPLIT: &str = "the request is too large for the collector and could not be split; lower --max-spans-per-request, or raise the collector's request size limit";

/// What to check for a status that is not retried.
fn hint(status: u16) -> &'static str {
    match status {
        400 => "the collector could not parse the request; check that the URL is for this protocol (OTLP/HTTP protobuf, or Jaeger Thrift at /api/traces)",
        401 | 403 => "the collector wants credentials it did not get or did not accept; pass them with --header-env 'Authorization=ENV_VAR' (or --header), and check the token",
        404 | 405 => "wrong path; --otlp takes the base URL (e.g. http://localhost:4318), --jaeger-thrift the full URL (e.g. http://localhost:14268/api/traces)",
        413 => "even a single span is larger than the collector takes (the request was split down to one span); raise its request size limit (the OTLP receiver's max_request_body_size, a proxy's body size limit such as nginx's client_max_body_size)",
        415 => "the collector does not accept this content type; check that the URL is for this protocol",
        500 => "the collector could not pass the request on (a full queue, a storage or pipeline error); check its logs and its storage",
        _ => "the collector refused the request; check its logs",
    }
}

/// A `Location` as an absolute URL: one of another host as it is, a relative one (`//host/p`,
/// `/p`, `p`, `?q`) resolved against the request's URL `base` (without removing dot segments).
fn absolute_location(base: &str, location: &str) -> String {
    let location = location.trim();
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return location.to_string();
    }
    let Ok(uri) = base.parse::<ureq::http::Uri>() else {
        return location.to_string();
    };
    let scheme = uri.scheme_str().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let authority = uri.authority().map_or("", |a| a.as_str());
    let path = uri.path();
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{path}{location}")
    } else {
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

/// A transport error as a sentence, with the TLS case explained.
fn transport_error(e: &ureq::Error) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        format!("{text} (TLS: if the collector uses a private CA, pass its certificate with --ca-cert FILE)")
    } else {
        text
    }
}

/// The longest `Retry-After` taken as said; a longer one (a collector's answer is untrusted:
/// `2^63` seconds would overflow the clock) is taken as this. With the default
/// `max_retry_after` (60 s) either gives up on the attempt, as any long delay does.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), at most [`RETRY_AFTER_CAP`].
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let when = httpdate::parse_http_date(value).ok()?;
            when.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(RETRY_AFTER_CAP))
}

/// `d` from now, or as far as the clock goes (a configured duration may be huge).
fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(RETRY_AFTER_CAP * 365))
        .unwrap_or(now)
}

/// An error body as readable text: printable, short.
pub(crate) fn text_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let soon = SystemTime::now() + Duration::from_secs(5);
        let d = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(
            d <= Duration::from_secs(5) && d >= Duration::from_secs(3),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        // Untrusted: a delay past what the clock can add is capped, not a panic.
        for huge in ["9223372036854775807", "18446744073709551615"] {
            let d = parse_retry_after(huge).unwrap();
            assert_eq!(d, RETRY_AFTER_CAP);
            assert!(instant_after(d) > Instant::now());
        }
        assert!(instant_after(Duration::MAX) >= Instant::now());
    }

    #[test]
    fn the_default_spool_is_the_users() {
        let temp = Path::new("/tmp");
        let dir = |state: Option<&str>, home: Option<&str>| {
            spool_dir_for(state.map(Into::into), home.map(Into::into), temp, "1000")
        };
        assert_eq!(
            dir(Some("/s"), Some("/home/u")),
            Path::new("/s/microspan/spool")
        );
        assert_eq!(
            dir(None, Some("/home/u")),
            Path::new("/home/u/.local/state/microspan/spool")
        );
        // Relative values are ignored (XDG Base Directory specification).
        assert_eq!(
            dir(Some("state"), Some("/home/u")),
            Path::new("/home/u/.local/state/microspan/spool")
        );
        assert_eq!(dir(None, None), Path::new("/tmp/microspan-spool-1000"));
        assert_eq!(
            dir(Some(""), Some("")),
            Path::new("/tmp/microspan-spool-1000")
        );
    }

    /// The old default spool is counted by name only, and only when it is the user's own real
    /// directory: what an older version left there, in the uploaders' subdirectories, under the
    /// names a spool takes for its own.
    #[test]
    fn a_legacy_spool_is_counted_only_when_it_is_the_users() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("microspan-spool");
        assert_eq!(legacy_spool_batches(&dir), None, "missing");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(legacy_spool_batches(&dir), None, "empty");
        let otlp = dir.join(spool_subdir(KIND_OTLP, "http://localhost:4318/v1/traces"));
        let thrift = dir.join(spool_subdir(
            KIND_JAEGER_THRIFT,
            "http://localhost:14268/api/traces",
        ));
        let other = dir.join("otlp-not-a-hash");
        for d in [&otlp, &thrift, &other] {
            std::fs::create_dir(d).unwrap();
        }
        let spooled = "000001765000000000000000-42-0000000001";
        let files = [
            (otlp.join(format!("{spooled}.otlp")), true),
            (
                otlp.join("000001765000000000000000-42-0000000002.otlp"),
                true,
            ),
            (thrift.join(format!("{spooled}.jaeger-thrift")), true),
            // Not requests: a file being written, another kind's, anything else.
            (otlp.join(format!("{spooled}.tmp")), false),
            (thrift.join(format!("{spooled}.otlp")), false),
            (otlp.join("README"), false),
            // Not in an uploader's subdirectory.
            (dir.join(format!("{spooled}.otlp")), false),
            (other.join(format!("{spooled}.otlp")), false),
        ];
        for (path, _) in &files {
            std::fs::write(path, b"MSPOOL1\n").unwrap();
        }
        #[cfg(unix)]
        {
            // Symbolic links are not followed, to a request or to a subdirectory.
            let target = tmp.path().join("elsewhere");
            std::fs::create_dir(&target).unwrap();
            std::fs::write(target.join(format!("{spooled}.otlp")), b"").unwrap();
            std::os::unix::fs::symlink(
                target.join(format!("{spooled}.otlp")),
                otlp.join("000001765000000000000000-42-0000000003.otlp"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&target, dir.join("otlp-0123456789abcdef")).unwrap();
        }
        let counted =
            |m: Option<std::collections::BTreeMap<String, u64>>| m.map(|m| m.values().sum::<u64>());
        let expected = files.iter().filter(|(_, counted)| *counted).count() as u64;
        assert_eq!(counted(legacy_spool_batches(&dir)), Some(expected));
        let otlp_name = otlp.file_name().unwrap().to_str().unwrap();
        let thrift_name = thrift.file_name().unwrap().to_str().unwrap();
        // A run uploading to none of their collectors: all three were for other URLs.
        let note = legacy_spool_note(&dir, &[]).unwrap();
        assert!(
            note.contains(&format!("{} holds 3 spooled batches", dir.display()))
                && note.contains(&format!(
                    "3 were spooled for other collector URLs: run microspan with --spool-dir {}",
                    dir.display()
                )),
            "{note}"
        );
        // A run uploading to the OTLP collector they were spooled for: its 2 are named apart.
        let note = legacy_spool_note(&dir, &[("otlp http://localhost:4318", otlp_name)]).unwrap();
        assert!(
            note.contains(&format!(
                "2 were spooled for this run's otlp http://localhost:4318: run again with \
                 --spool-dir {} to deliver them.",
                dir.display()
            )) && note.contains("1 was spooled for other collector URLs"),
            "{note}"
        );
        let note = legacy_spool_note(
            &dir,
            &[("otlp a", otlp_name), ("jaeger-thrift b", thrift_name)],
        )
        .unwrap();
        assert!(
            note.contains("1 was spooled for this run's jaeger-thrift b")
                && !note.contains("other collector URLs"),
            "{note}"
        );
        // Nothing was moved or removed.
        assert!(files.iter().all(|(path, _)| path.is_file()));

        #[cfg(unix)]
        {
            // A symbolic link in place of the directory is not followed.
            let link = tmp.path().join("link");
            std::os::unix::fs::symlink(&dir, &link).unwrap();
            assert_eq!(counted(legacy_spool_batches(&link)), None);
            // Another user's directory is not looked into (only root can give one away).
            // SAFETY: `geteuid` takes no arguments, touches no memory of ours and cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
                assert_eq!(counted(legacy_spool_batches(&dir)), None);
                std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
                std::os::unix::fs::chown(&otlp, Some(4242), None).unwrap();
                assert_eq!(
                    counted(legacy_spool_batches(&dir)),
                    Some(1),
                    "the other user's subdirectory"
                );
            }
        }
    }

    #[test]
    fn spool_subdirectories_are_recognised_by_name() {
        for kind in [KIND_OTLP, KIND_JAEGER_THRIFT] {
            let name = spool_subdir(kind, "http://collector:4318");
            assert_eq!(uploader_kind(&name), Some(kind), "{name}");
        }
        for name in [
            "otlp",
            "otlp-",
            "otlp-0123456789abcdeg",
            "otlp-0123456789abcdef0",
            "jaeger-0123456789abcdef",
            "zipkin-0123456789abcdef",
        ] {
            assert_eq!(uploader_kind(name), None, "{name}");
        }
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("/tmp/microspan-spool"), "/tmp/microspan-spool");
        assert_eq!(shell_word("/tmp/my spool"), "'/tmp/my spool'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn redirect_locations_are_made_absolute() {
        let base = "http://u:p@collector:4318/otlp/v1/traces?x=1";
        for (location, absolute) in [
            ("https://collector/v1/traces", "https://collector/v1/traces"),
            ("HTTP://other:80/x", "HTTP://other:80/x"),
            ("//other/v1/traces", "http://other/v1/traces"),
            ("/v1/traces", "http://u:p@collector:4318/v1/traces"),
            ("traces2", "http://u:p@collector:4318/otlp/v1/traces2"),
            ("?y=2", "http://u:p@collector:4318/otlp/v1/traces?y=2"),
        ] {
            assert_eq!(absolute_location(base, location), absolute, "{location}");
        }
        // What is printed hides the password.
        assert_eq!(
            display_url(&absolute_location(base, "/v1/traces")),
            "http://u:<redacted>@collector:4318/v1/traces"
        );
    }

    #[test]
    fn snippet_is_printable_and_short() {
        assert_eq!(text_snippet(b"bad\nrequest\0"), "bad request");
        assert_eq!(text_snippet(&[b'x'; 300]).chars().count(), 201);
    }
}
