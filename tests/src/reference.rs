//! The reference firmware (`examples/firmware/reference`) end to end: build it, run it in QEMU
//! (UART captured, or RTT read through QEMU's GDB stub with the decoder's
//! [`microspan_decoder::rtt_gdb`] reader), decode the stream, and check the trace.
//!
//! ```no_run
//! use microspan_tests::qemu::{Board, RunOptions};
//! use microspan_tests::reference::{self, Variant};
//! let elf = reference::build(Board::Lm3s6965, Variant::Uart).unwrap();
//! let out = microspan_tests::qemu::run_firmware(Board::Lm3s6965, &elf, &RunOptions::default()).unwrap();
//! let decoded = reference::decode(&out.uart).unwrap();
//! let report = reference::device_report(&out.console).unwrap();
//! reference::check_reference_trace(&decoded, Board::Lm3s6965, &report).unwrap();
//! ```

use std::io::{self, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use microspan_decoder::assemble::Options;
use microspan_decoder::export::{Exporter, JaegerJsonFile, TreeWriter};
use microspan_decoder::model::{Batch, RefKind, Span, Value};
use microspan_decoder::rtt_gdb::{Config as RttConfig, RttGdbError, RttGdbReader};
use microspan_decoder::stream::{StreamDecoder, StreamError, StreamStats};

use crate::qemu::{self, Board, QemuError, RunOptions, RunOutput};

/// The firmware package.
pub const PACKAGE: &str = "microspan-reference";

/// Device time is anchored here (2023-11-14T22:13:20Z) so decoded times are reproducible.
pub const ANCHOR_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;

/// How the firmware sends its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The `reference` binary: the board's UART.
    Uart,
    /// The `reference_rtt` binary (feature `rtt`): RTT up channel 1.
    Rtt,
}

/// Builds the reference firmware for `board` and returns its ELF.
pub fn build(board: Board, variant: Variant) -> Result<PathBuf, QemuError> {
    match variant {
        Variant::Uart => qemu::build_firmware(board, PACKAGE, "reference", &[]),
        Variant::Rtt => qemu::build_firmware(board, PACKAGE, "reference_rtt", &["rtt"]),
    }
}

/// Decoder options for reproducible output: a fixed time anchor and no host names.
pub fn decoder_options() -> Options {
    Options {
        fixed_anchor_unix_nanos: Some(ANCHOR_UNIX_NANOS),
        host_name: None,
        decoder_host: None,
        host_clock: None,
        ..Options::default()
    }
}

/// A decoded stream.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Finished traces, in the order the decoder produced them.
    pub batches: Vec<Batch>,
    /// The decoder's counters.
    pub stats: StreamStats,
}

impl Decoded {
    /// Every span, in order.
    pub fn spans(&self) -> Vec<&Span> {
        self.batches.iter().flat_map(|b| b.spans.iter()).collect()
    }

    /// The one span named `name`, if exactly one exists.
    pub fn span(&self, name: &str) -> Result<&Span, String> {
        let found: Vec<&Span> = self
            .spans()
            .into_iter()
            .filter(|s| s.operation == name)
            .collect();
        match found.as_slice() {
            [s] => Ok(s),
            other => Err(format!(
                "expected one span named {name:?}, found {}",
                other.len()
            )),
        }
    }
}

/// Decodes a whole stream with [`decoder_options`].
pub fn decode(bytes: &[u8]) -> Result<Decoded, StreamError> {
    let mut decoder = StreamDecoder::new(decoder_options());
    let mut batches = Vec::new();
    // Feed in small chunks, as a live link delivers them.
    for chunk in bytes.chunks(61) {
        decoder.feed(chunk, &mut batches)?;
    }
    decoder.finish(&mut batches);
    Ok(Decoded {
        batches,
        stats: decoder.stats(),
    })
}

/// What the firmware printed through semihosting at the end of its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    /// The board it ran on.
    pub board: String,
    /// Records the device's ring dropped (`Tracer::dropped`).
    pub dropped: u64,
    /// Frames the drain built.
    pub frames: u64,
    /// Bytes the drain produced.
    pub bytes: u64,
}

/// Parses the `microspan-reference: board=.. dropped=N frames=N bytes=N` line from QEMU's console.
pub fn device_report(console: &str) -> Option<DeviceReport> {
    let line = console
        .lines()
        .find_map(|l| l.strip_prefix("microspan-reference: board="))?;
    let mut fields = line.split_whitespace();
    let board = fields.next()?.to_string();
    let mut get = |key: &str| -> Option<u64> {
        fields
            .next()?
            .strip_prefix(key)?
            .strip_prefix('=')?
            .parse()
            .ok()
    };
    Some(DeviceReport {
        board,
        dropped: get("dropped")?,
        frames: get("frames")?,
        bytes: get("bytes")?,
    })
}

/// The trees the terminal exporter prints for `batches` (no colour).
pub fn tree_text(batches: &[Batch]) -> String {
    let mut tree = TreeWriter::new(Vec::new(), false);
    for b in batches {
        tree.export(b).expect("writing to memory");
    }
    tree.finish().expect("writing to memory");
    String::from_utf8_lossy(&tree.into_inner()).into_owned()
}

/// The Jaeger UI JSON file the decoder writes for `batches`, pretty-printed.
pub fn jaeger_json(batches: &[Batch]) -> String {
    let mut file = JaegerJsonFile::new("unused.json");
    for b in batches {
        file.export(b).expect("buffering in memory");
    }
    let mut text = serde_json::to_string_pretty(&file.to_json()).expect("JSON");
    text.push('\n');
    text
}

/// [`tree_text`] with times masked (`<t>`, waterfall bars `<bar>`), for the expected files.
///
/// Under `-icount` a run's times are exact, but they count the firmware's instructions: any change
/// to the record path, the drain or the compiler moves them by nanoseconds. The expected files pin
/// what must not move (tree, names, ids, tags, logs, baggage, references, warnings);
/// [`check_reference_trace`] checks the times against the timer with explicit bounds.
pub fn tree_snapshot(batches: &[Batch]) -> String {
    let mut out = String::new();
    for line in tree_text(batches).lines() {
        let line = match line.split_once(" |") {
            // `  31.11 ms |████    | name`: duration, then the bar.
            Some((dur, rest)) if !dur.trim().is_empty() && dur.trim().split(' ').count() == 2 => {
                match rest.split_once('|') {
                    Some((_bar, name)) => format!("<t> |<bar>|{name}"),
                    None => line.to_string(),
                }
            }
            _ => line.to_string(),
        };
        out.push_str(&mask_durations(&line));
        out.push('\n');
    }
    out
}

/// Replaces every `12.34 ms`-style duration (units ns, µs, ms, s) with `<t>`.
fn mask_durations(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric()) {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            match unit_end(&chars, j) {
                Some(end) => {
                    out.push_str("<t>");
                    i = end;
                }
                None => {
                    out.extend(&chars[i..j]);
                    i = j;
                }
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// If `chars[j..]` is ` <unit>` followed by a non-alphanumeric character or the end, the index
/// after the unit.
fn unit_end(chars: &[char], j: usize) -> Option<usize> {
    if chars.get(j) != Some(&' ') {
        return None;
    }
    ["ns", "µs", "ms", "s"].iter().find_map(|unit| {
        let u: Vec<char> = unit.chars().collect();
        let end = j + 1 + u.len();
        let matches = end <= chars.len()
            && chars[j + 1..end] == u[..]
            && chars.get(end).is_none_or(|c| !c.is_alphanumeric());
        matches.then_some(end)
    })
}

/// [`jaeger_json`] with `startTime`, `duration` and log `timestamp` values replaced by `"<t>"`
/// (see [`tree_snapshot`] for why), for the expected files.
pub fn jaeger_snapshot(batches: &[Batch]) -> String {
    let mut value: serde_json::Value =
        serde_json::from_str(&jaeger_json(batches)).expect("our own JSON");
    mask_json_times(&mut value);
    let mut text = serde_json::to_string_pretty(&value).expect("JSON");
    text.push('\n');
    text
}

fn mask_json_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "startTime" | "duration" | "timestamp") && v.is_number() {
                    *v = serde_json::Value::String("<t>".into());
                } else {
                    mask_json_times(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json_times),
        _ => {}
    }
}

/// Checks the decoded reference trace; returns every failed check.
///
/// The trace ([`examples/firmware/reference`](../../examples/firmware/reference/src/lib.rs)):
/// `in-process-service` → `Foo` (10 ms sleep) → `Bar` (20 ms sleep, error log, `error=true`),
/// interrupt spans `isr.soft0` ⊃ `isr.soft1` (own traces, inside Bar's time) and
/// `isr.deferred-work` (FollowsFrom Foo), typed tags, a three-field log, baggage inherited.
pub fn check_reference_trace(
    d: &Decoded,
    board: Board,
    report: &DeviceReport,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            errors.push(what);
        }
    };
    let s = &d.stats;
    check(s.crc_errors == 0, format!("CRC errors: {}", s.crc_errors));
    check(s.bad_frames == 0, format!("bad frames: {}", s.bad_frames));
    check(
        s.discarded_bytes == 0,
        format!("discarded bytes: {}", s.discarded_bytes),
    );
    check(
        s.spans.lost_frames == 0,
        format!("lost frames: {}", s.spans.lost_frames),
    );
    check(
        s.spans.record_errors == 0,
        format!("record errors: {}", s.spans.record_errors),
    );
    check(
        s.spans.incomplete_spans == 0,
        format!("incomplete spans: {}", s.spans.incomplete_spans),
    );
    check(
        s.spans.device_drops == report.dropped,
        format!(
            "decoder saw {} device drops, the device reported {}",
            s.spans.device_drops, report.dropped
        ),
    );
    check(
        report.dropped == 0,
        format!("the device dropped {} records", report.dropped),
    );
    check(
        s.bytes == report.bytes,
        format!(
            "decoder read {} bytes, the device sent {}",
            s.bytes, report.bytes
        ),
    );
    check(
        s.spans.frames == report.frames,
        format!(
            "decoder read {} frames, the device built {}",
            s.spans.frames, report.frames
        ),
    );
    check(
        report.board == board.name(),
        format!("the firmware says it ran on {}", report.board),
    );
    check(
        d.spans().len() == 6,
        format!("{} spans, expected 6", d.spans().len()),
    );

    let names = [
        "in-process-service",
        "Foo",
        "Bar",
        "isr.soft0",
        "isr.soft1",
        "isr.deferred-work",
    ];
    let mut spans = Vec::new();
    for n in names {
        match d.span(n) {
            Ok(s) => spans.push(s),
            Err(e) => errors.push(e),
        }
    }
    if spans.len() != names.len() {
        return Err(errors);
    }
    let [root, foo_span, bar, soft0, soft1, deferred] =
        [spans[0], spans[1], spans[2], spans[3], spans[4], spans[5]];
    let mut check = |ok: bool, what: String| {
        if !ok {
            errors.push(what);
        }
    };
    let end = |s: &Span| s.start_unix_nanos + s.duration_nanos;
    let str_tag = |s: &Span, k: &str| s.tag(k).cloned();
    let baggage = vec![("request.id".to_string(), "42".to_string())];

    // The tree.
    check(
        root.references.is_empty(),
        format!("root has references {:?}", root.references),
    );
    check(
        foo_span.trace_id == root.trace_id && foo_span.parent_span_id() == Some(root.span_id),
        "Foo is not a child of the root".into(),
    );
    check(
        bar.trace_id == root.trace_id && bar.parent_span_id() == Some(foo_span.span_id),
        "Bar is not a child of Foo".into(),
    );
    for s in [root, foo_span, bar, soft0, soft1, deferred] {
        check(
            !s.incomplete && s.warnings.is_empty(),
            format!("{} is incomplete or warned: {:?}", s.operation, s.warnings),
        );
        check(s.flags & 1 == 1, format!("{} is not sampled", s.operation));
    }

    // Tags of several types, logs, baggage.
    check(
        str_tag(root, "http.method") == Some(Value::Str("GET".into())),
        format!("root http.method {:?}", root.tag("http.method")),
    );
    check(
        root.tag("http.status_code") == Some(&Value::I64(200)),
        format!("root http.status_code {:?}", root.tag("http.status_code")),
    );
    check(
        str_tag(root, "span.kind") == Some(Value::Str("server".into())),
        "root span.kind".into(),
    );
    check(
        foo_span.tag("sensor.celsius") == Some(&Value::F64(21.5)),
        format!("Foo sensor.celsius {:?}", foo_span.tag("sensor.celsius")),
    );
    let board_text = format!("{}@{}Hz", board.name(), board.ticks_per_second());
    check(
        foo_span.tag("firmware.board") == Some(&Value::Str(board_text.as_str().into())),
        format!(
            "Foo firmware.board {:?}, expected {board_text}",
            foo_span.tag("firmware.board")
        ),
    );
    check(bar.is_error(), "Bar has no error=true".into());
    check(
        bar.logs.len() == 1,
        format!("Bar has {} logs", bar.logs.len()),
    );
    if let Some(log) = bar.logs.first() {
        let fields: Vec<(&str, &Value)> = log
            .fields
            .iter()
            .map(|f| (f.key.as_str(), &f.value))
            .collect();
        check(
            fields
                == [
                    ("event", &Value::Str("error".into())),
                    ("message", &Value::Str("something wrong".into())),
                ],
            format!("Bar's log {fields:?}"),
        );
        check(
            log.time_unix_nanos >= bar.start_unix_nanos && log.time_unix_nanos <= end(bar),
            "Bar's log is outside Bar".into(),
        );
    }
    check(
        foo_span.logs.len() == 1,
        format!("Foo has {} logs", foo_span.logs.len()),
    );
    let mut foo_sleep = 0;
    if let Some(log) = foo_span.logs.first() {
        let fields: Vec<(&str, &Value)> = log
            .fields
            .iter()
            .map(|f| (f.key.as_str(), &f.value))
            .collect();
        check(
            fields
                == [
                    ("event", &Value::Str("soft error".into())),
                    ("type", &Value::Str("cache timeout".into())),
                    ("waited.millis", &Value::I64(1500)),
                ],
            format!("Foo's log {fields:?}"),
        );
        foo_sleep = log
            .time_unix_nanos
            .saturating_sub(foo_span.start_unix_nanos);
    }
    for s in [root, foo_span, bar] {
        check(
            s.baggage == baggage,
            format!("{} baggage {:?}", s.operation, s.baggage),
        );
    }

    // Durations from the timer: Foo sleeps 10 ms before its log, Bar sleeps 20 ms.
    const MS: u64 = 1_000_000;
    check(
        foo_sleep >= 10 * MS,
        format!("Foo slept {foo_sleep} ns before its log, expected >= 10 ms"),
    );
    check(
        foo_span.duration_nanos >= 10 * MS,
        format!("Foo took {} ns", foo_span.duration_nanos),
    );
    check(
        bar.duration_nanos >= 20 * MS,
        format!("Bar took {} ns, expected >= 20 ms", bar.duration_nanos),
    );
    check(
        bar.duration_nanos >= 2 * foo_sleep,
        format!(
            "Bar ({} ns) is not at least twice Foo's sleep ({foo_sleep} ns)",
            bar.duration_nanos
        ),
    );
    check(
        bar.duration_nanos <= 25 * MS,
        format!("Bar took {} ns, expected about 21 ms", bar.duration_nanos),
    );
    check(
        bar.start_unix_nanos >= foo_span.start_unix_nanos + foo_sleep && end(bar) <= end(foo_span),
        "Bar is not inside Foo after its sleep".into(),
    );
    check(end(foo_span) <= end(root), "Foo ends after the root".into());

    // Interrupt spans: own traces, nested in time, one FollowsFrom Foo.
    check(
        soft0.references.is_empty() && soft0.trace_id != root.trace_id,
        "isr.soft0 is not a root span of its own trace".into(),
    );
    check(
        soft1.references.is_empty()
            && soft1.trace_id != root.trace_id
            && soft1.trace_id != soft0.trace_id,
        "isr.soft1 is not a root span of its own trace".into(),
    );
    check(
        soft0.tag("irq.priority") == Some(&Value::U64(2)),
        format!("isr.soft0 irq.priority {:?}", soft0.tag("irq.priority")),
    );
    check(
        soft1.tag("irq.priority") == Some(&Value::U64(1))
            && soft1.tag("irq.nested") == Some(&Value::Bool(true)),
        "isr.soft1 tags".into(),
    );
    check(
        soft0.start_unix_nanos >= bar.start_unix_nanos && end(soft0) <= end(bar),
        "isr.soft0 is not inside Bar's time".into(),
    );
    check(
        soft1.start_unix_nanos >= soft0.start_unix_nanos && end(soft1) <= end(soft0),
        "isr.soft1 is not inside isr.soft0's time".into(),
    );
    check(
        deferred.trace_id == foo_span.trace_id,
        "isr.deferred-work is not in Foo's trace".into(),
    );
    check(
        deferred.references.iter().any(|r| {
            r.kind == RefKind::FollowsFrom
                && r.span_id == foo_span.span_id
                && r.trace_id == foo_span.trace_id
        }),
        format!(
            "isr.deferred-work does not FollowsFrom Foo: {:?}",
            deferred.references
        ),
    );
    check(
        !deferred
            .references
            .iter()
            .any(|r| r.kind == RefKind::ChildOf),
        "isr.deferred-work has a ChildOf reference".into(),
    );
    check(
        deferred.parent_span_id() == Some(foo_span.span_id),
        "isr.deferred-work's parent (its FollowsFrom reference) is not Foo".into(),
    );
    check(
        deferred.start_unix_nanos >= end(soft1) && end(deferred) <= end(soft0),
        "isr.deferred-work is not inside isr.soft0 after isr.soft1".into(),
    );
    check(
        deferred.tag("queue.depth") == Some(&Value::U64(1)),
        "isr.deferred-work queue.depth".into(),
    );

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the RTT firmware with QEMU's GDB stub (started halted, `-S`) and reads RTT up channel 1
/// through it with [`RttGdbReader`] until the firmware exits. Returns the channel's bytes and the run.
pub fn run_rtt(
    board: Board,
    elf: &Path,
    opts: &RunOptions,
) -> Result<(Vec<u8>, RunOutput), QemuError> {
    let mut last_err = String::new();
    // A port can be taken between choosing and QEMU binding it: try a few.
    for _ in 0..3 {
        let port = free_port()
            .map_err(|e| QemuError::Io("choosing a port for QEMU's GDB stub".into(), e))?;
        let mut o = opts.clone();
        o.extra_args.extend([
            "-gdb".to_string(),
            format!("tcp:127.0.0.1:{port}"),
            "-S".to_string(),
        ]);
        let deadline = Instant::now() + o.timeout;
        let (out, read) =
            qemu::run_firmware_with(board, elf, &o, || read_rtt(port, elf, deadline))?;
        match read {
            Ok(bytes) => return Ok((bytes, out)),
            Err(e) => {
                last_err = format!("{e}\n--- QEMU console ---\n{}", out.console);
                if !out.console.contains("Address already in use") {
                    break;
                }
            }
        }
    }
    Err(QemuError::Parse(format!(
        "reading RTT through QEMU's GDB stub: {last_err}"
    )))
}

fn read_rtt(port: u16, elf: &Path, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut cfg = RttConfig::new(format!("127.0.0.1:{port}"));
    cfg.elf = Some(elf.to_path_buf());
    cfg.channel = 1;
    cfg.poll_interval = Duration::from_millis(2);
    let mut reader = loop {
        match RttGdbReader::connect(cfg.clone()) {
            Ok(r) => break r,
            // QEMU is not listening yet.
            Err(RttGdbError::Connect { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    if reader.channel_name() != "microspan" {
        return Err(format!(
            "RTT up channel 1 is named {:?}, expected \"microspan\"",
            reader.channel_name()
        ));
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the firmware did not exit in time ({} bytes read)",
                bytes.len()
            ));
        }
    }
}
