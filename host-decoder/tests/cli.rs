//! The `microspan` command line on checked-in streams: exit status, messages, and the exported
//! files of the v1 fixture stream against snapshots (`MICROSPAN_BLESS=1` rewrites them).

mod support;

use std::process::Command;

use support::assert_snapshot as snapshot;
use support::cli::fixture;
use support::device::drain_all;

fn microspan(args: &[&str]) -> std::process::Output {
    support::cli::microspan()
        .args(args)
        .output()
        .expect("run microspan")
}

#[test]
fn fixture_stream_to_every_file_exporter_and_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let jaeger = dir.path().join("trace.jaeger.json");
    let otlp = dir.path().join("trace.otlp.json");
    let out = microspan(&[
        "decode",
        "--file",
        fixture().to_str().unwrap(),
        "--anchor-unix-nanos",
        "1700000000000000000",
        "--hostname",
        "test-host",
        "--decoder-host",
        "bench-7",
        "--no-progress",
        "--tree",
        "--jaeger-json",
        jaeger.to_str().unwrap(),
        "--otlp-json",
        otlp.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The summary names what the stream lost.
    assert!(stderr.contains("device drops 15"), "{stderr}");
    snapshot(
        "v1-all-records.tree.txt",
        &String::from_utf8_lossy(&out.stdout),
    );
    let jaeger_text = std::fs::read_to_string(&jaeger).unwrap();
    snapshot("v1-all-records.jaeger.json", &jaeger_text);
    let otlp_text = std::fs::read_to_string(&otlp).unwrap();
    snapshot("v1-all-records.otlp.json", &otlp_text);
    // Both files are JSON the Jaeger UI reads.
    let j: serde_json::Value = serde_json::from_str(&jaeger_text).unwrap();
    assert!(j["data"].as_array().is_some_and(|d| !d.is_empty()));
    let o: serde_json::Value = serde_json::from_str(&otlp_text).unwrap();
    assert!(o["resourceSpans"].as_array().is_some_and(|d| !d.is_empty()));
}

#[test]
fn strict_mode_fails_a_lossy_stream() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let fixture = fixture();
    let run = |strict: bool| {
        let mut args = vec![
            "decode",
            "--file",
            fixture.to_str().unwrap(),
            "--no-progress",
            "--quiet",
            "--jaeger-json",
            json.to_str().unwrap(),
        ];
        if strict {
            args.push("--strict");
        }
        microspan(&args)
    };
    // The fixture has device drops: fine by default, a failure with --strict.
    let out = run(false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Quiet and successful: not a word.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Quiet but failed: what --strict failed on, and nothing of the summary.
    let out = run(true);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("microspan: failed (--strict): "), "{e}");
    assert!(e.contains("15 records dropped on the device"), "{e}");
    assert!(!e.contains("frames "), "no summary counters: {e}");
}

/// `-q` hides the summary and the problem lines of a run that succeeds; one that fails (here
/// with --strict, on a capture cut short) still prints the problem lines that explain it.
#[test]
fn quiet_still_says_why_a_run_failed() {
    let stream = clean_stream();
    let (_d, cut) = capture(&stream[..stream.len() - 3]);
    let (code, e) = decode_file(&cut, &["-q"]);
    assert_eq!(code, Some(0), "{e}");
    assert!(e.is_empty(), "{e}");
    let (code, e) = decode_file(&cut, &["-q", "--strict"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("microspan: the input ended inside a frame: its last "),
        "{e}"
    );
    assert!(e.contains("failed (--strict): "), "{e}");
    assert!(
        e.contains(" bytes of a frame the input ended inside"),
        "{e}"
    );
    assert!(!e.contains("spans 3 ("), "no summary: {e}");
    // The same without -q: the summary as well.
    let (code, e) = decode_file(&cut, &["--strict"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("the input ended inside a frame") && e.contains("frames "),
        "{e}"
    );
    // The help says the rule.
    let out = microspan(&["decode", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("still says why"), "{help}");
}

#[test]
fn errors_name_the_cause_and_the_fix() {
    let out = microspan(&["decode", "--file", "/nonexistent/capture.bin"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cannot open /nonexistent/capture.bin"), "{e}");

    let out = microspan(&["decode"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no input: give --file PATH"));

    // Three well-formed frames of wire version 7.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.bin");
    let raw = [7u8, 0, 0, 0, 0];
    let mut body = raw.to_vec();
    body.extend_from_slice(&microspan::wire::CRC.checksum(&raw).to_le_bytes());
    let mut frame = vec![0u8; 16];
    let n = cobs::encode(&body, &mut frame);
    frame.truncate(n);
    frame.push(0);
    std::fs::write(&path, frame.repeat(3)).unwrap();
    let out = microspan(&["decode", "--file", path.to_str().unwrap(), "--no-progress"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("wire version 7") && e.contains("reads versions [1, 2, 3]"),
        "{e}"
    );
    // Frames were found: nothing may say otherwise (nor send the user to the baud rate).
    assert!(!e.contains("no microspan frame found"), "{e}");
    assert!(!e.contains("baud rate"), "{e}");
}

/// A clean stream (no loss of any kind): a root and two children, drained in two frames.
fn clean_stream() -> Vec<u8> {
    use microspan::{Drain, Ring, Session, StdClock, Tracer};
    let ring: &'static Ring<1024> = Box::leak(Box::new(Ring::new()));
    let clock: &'static StdClock = Box::leak(Box::new(StdClock::new()));
    let tracer: &'static Tracer = Box::leak(Box::new(Tracer::new(
        ring,
        clock,
        Box::leak(Box::new(
            Session::new("cli-test").device_id(0xc11).boot_id(1),
        )),
    )));
    let mut drain: Drain<'_, 64> = Drain::new(tracer).unwrap();
    let root = tracer.root("in-process-service");
    root.child("Foo").child("Bar").set_tag("error", true);
    drop(root);
    drain_all(&mut drain)
}

/// A span and a service named to take over a terminal (retitle it, clear it, forge a row of the
/// tree): decoded, they print as escapes on both outputs.
#[test]
fn names_the_device_sent_cannot_drive_the_terminal() {
    use microspan::{Drain, Ring, Session, StdClock, Tracer};
    let ring: &'static Ring<1024> = Box::leak(Box::new(Ring::new()));
    let clock: &'static StdClock = Box::leak(Box::new(StdClock::new()));
    let tracer: &'static Tracer = Box::leak(Box::new(Tracer::new(
        ring,
        clock,
        Box::leak(Box::new(
            Session::new("svc\x1b]0;pwned\x07\x1b[2J")
                .device_id(0xc11)
                .boot_id(1),
        )),
    )));
    let mut drain: Drain<'_, 64> = Drain::new(tracer).unwrap();
    let root = tracer.root("op\x1b[31mRED\r\x1b[Kfake line");
    root.set_tag("k\0ey", "bell\x07");
    drop(root);
    let (_dir, path) = capture(&drain_all(&mut drain));
    let out = microspan(&["decode", "--file", &path, "--no-progress"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(['\x1b', '\r', '\x07', '\0']), "{text:?}");
    }
    assert!(
        stdout.contains("svc\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| op\\u{1b}[31mRED\\r\\u{1b}[Kfake line\n"),
        "{stdout}"
    );
    assert!(stdout.contains("k\\0ey=\"bell\\u{7}\""), "{stdout}");
}

/// A file output that reaches `--max-file-spans` says so once, with the total dropped, however
/// many batches went past it (one line per batch flooded standard error before).
#[test]
fn a_file_past_its_span_limit_says_so_once() {
    use microspan::{Drain, Ring, Session, StdClock, Tracer};
    let ring: &'static Ring<1024> = Box::leak(Box::new(Ring::new()));
    let clock: &'static StdClock = Box::leak(Box::new(StdClock::new()));
    let tracer: &'static Tracer = Box::leak(Box::new(Tracer::new(
        ring,
        clock,
        Box::leak(Box::new(Session::new("limit").device_id(0xc12).boot_id(1))),
    )));
    let mut drain: Drain<'_, 64> = Drain::new(tracer).unwrap();
    let mut stream = Vec::new();
    for _ in 0..40 {
        drop(tracer.root("job"));
        stream.extend(drain_all(&mut drain));
    }
    let (dir, path) = capture(&stream);
    let json = dir.path().join("t.json");
    let (code, e) = decode_file(
        &path,
        &[
            "--jaeger-json",
            json.to_str().unwrap(),
            "--max-file-spans",
            "3",
        ],
    );
    // Dropped spans are an output left incomplete.
    assert_eq!(code, Some(1), "{e}");
    assert_eq!(e.matches("beyond the limit").count(), 1, "{e}");
    assert!(
        e.contains("dropped 37 spans beyond the limit of 3 spans per file; raise the limit with --max-file-spans N"),
        "{e}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let spans: usize = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["spans"].as_array().unwrap().len())
        .sum();
    assert_eq!(spans, 3);
}

/// Writes `bytes` to a file in a new temporary directory; returns both (the directory lives as
/// long as the guard).
fn capture(bytes: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.bin");
    std::fs::write(&path, bytes).unwrap();
    (dir, path.to_str().unwrap().to_string())
}

fn decode_file(path: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["decode", "--file", path, "--no-progress"];
    args.extend_from_slice(extra);
    let out = microspan(&args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `microspan decode --no-progress ARGS` run in `dir`, its standard input from `stdin` if given:
/// the exit status and standard error.
fn decode_in(
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&std::path::Path>,
) -> (Option<i32>, String) {
    let mut c = support::cli::microspan();
    c.current_dir(dir)
        .args(["decode", "--no-progress"])
        .args(args);
    if let Some(path) = stdin {
        c.stdin(std::fs::File::open(path).unwrap());
    }
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Input that yields nothing, or less than it holds, says why: nothing is lost without a word.
#[test]
fn unusable_or_cut_input_is_diagnosed() {
    let stream = clean_stream();
    assert!(
        stream.iter().filter(|&&b| b == 0).count() >= 2,
        "two frames or more"
    );
    let (_d, good) = capture(&stream);
    let (code, e) = decode_file(&good, &["--strict"]);
    assert_eq!(code, Some(0), "{e}");
    assert!(!e.contains("microspan:"), "{e}");

    // Cut inside its last frame: the spans before are kept; --strict fails on the cut.
    let (_d, cut) = capture(&stream[..stream.len() - 3]);
    let (code, e) = decode_file(&cut, &[]);
    assert_eq!(code, Some(0), "{e}");
    assert!(
        e.contains("the input ended inside a frame: its last"),
        "{e}"
    );
    assert_eq!(decode_file(&cut, &["--strict"]).0, Some(1));

    // Only the last delimiter missing: the last frame is whole, nothing is lost.
    let (_d, undelimited) = capture(&stream[..stream.len() - 1]);
    let (code, e) = decode_file(&undelimited, &["--strict"]);
    assert_eq!(code, Some(0), "{e}");
    assert!(!e.contains("microspan:"), "{e}");

    // Cut inside its first frame: nothing could be read. The drain sends a `0x00` before its
    // first frame; a capture with or without it is diagnosed the same.
    let first_end = 1 + stream[1..].iter().position(|&b| b == 0).unwrap();
    for from in [0, 1] {
        let (_d, first) = capture(&stream[from..first_end - 1]);
        let (code, e) = decode_file(&first, &[]);
        assert_eq!(code, Some(1), "{e}");
        assert!(e.contains("the input ended inside its first frame"), "{e}");
    }

    // The first frame (with the session record) corrupted: the rest cannot be read.
    let mut flipped = stream.clone();
    flipped[3] ^= 0x55;
    let (_d, flipped) = capture(&flipped);
    let (code, e) = decode_file(&flipped, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("no session record (HELLO) arrived"), "{e}");
    assert!(e.contains("last bad input: "), "{e}");

    // Not a microspan stream at all.
    let noise: Vec<u8> = (0..3000)
        .map(|i| if i % 100 == 99 { 0 } else { 0xA5 })
        .collect();
    let (_d, noise) = capture(&noise);
    let (code, e) = decode_file(&noise, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("no microspan frame found in 3000 bytes"), "{e}");
    assert!(e.contains("baud rate"), "{e}");

    // Empty: said, not an error (a capture that saw no traffic), with what to check; --strict
    // fails on it (a drain that never ran is not a clean trace).
    let (_d, empty) = capture(&[]);
    let (code, e) = decode_file(&empty, &[]);
    assert_eq!(code, Some(0), "{e}");
    assert!(e.contains("the input was empty"), "{e}");
    assert!(e.contains("drain"), "{e}");
    let (code, e) = decode_file(&empty, &["-q", "--strict"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("failed (--strict): no span was decoded"), "{e}");
}

/// A name the device cut to fit its frame loses nothing else: the spans are delivered (status 0)
/// with a problem line saying why, and `--strict` fails on it.
#[test]
fn strict_mode_fails_a_cut_name() {
    use microspan::{Drain, Ring, Session, StdClock, Tracer};
    const LONG: &str =
        "sensor.temperature.read-and-calibrate-with-retries-and-a-name-longer-than-a-frame";
    let ring: Ring<1024> = Ring::new();
    let clock = StdClock::new();
    let session = Session::new("cli-test").boot_id(2);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 64> = Drain::new(&tracer).unwrap();
    drop(tracer.root(LONG));
    let stream = drain_all(&mut drain);
    assert_eq!(drain.stats().names_cut, 1, "{:?}", drain.stats());
    let (_d, path) = capture(&stream);
    let (code, e) = decode_file(&path, &[]);
    assert_eq!(code, Some(0), "{e}");
    assert!(
        e.contains("1 static string was longer than the device's drain frame"),
        "{e}"
    );
    // One span: the exporter's summary says so in the singular.
    assert!(e.contains("tree: 1 span in, 1 delivered"), "{e}");
    let (code, e) = decode_file(&path, &["--strict"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("failed (--strict): 1 name cut by the device"),
        "{e}"
    );
}

/// The time anchor is given as Unix nanoseconds or as an RFC 3339 time, to the same effect.
#[test]
fn the_anchor_is_unix_nanoseconds_or_an_rfc_3339_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, good) = capture(&clean_stream());
    let json = |anchor: &str| {
        let path = dir.path().join(format!("{}.json", anchor.len()));
        let (code, e) = decode_file(
            &good,
            &[
                "--anchor-unix-nanos",
                anchor,
                "--jaeger-json",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0), "{anchor}: {e}");
        std::fs::read_to_string(path).unwrap()
    };
    let nanos = json("1700000000000000000");
    assert!(nanos.contains("\"startTime\": 16999999999"), "{nanos}");
    assert_eq!(json("2023-11-14T22:13:20Z"), nanos);
    assert_eq!(json("2023-11-15T00:13:20+02:00"), nanos);
}

/// `--save-capture` keeps the bytes read, and the command it prints decodes them again to the
/// same trace at the same dates, though the first run dated it from the host's clock.
#[test]
fn a_saved_capture_decodes_again_to_the_same_trace() {
    let dir = tempfile::tempdir().unwrap();
    let stream = clean_stream();
    let live = dir.path().join("live.bin");
    std::fs::write(&live, &stream).unwrap();
    let run = |args: &[&str], stdin: Option<&std::path::Path>| {
        let (code, e) = decode_in(dir.path(), args, stdin);
        assert_eq!(code, Some(0), "{args:?}: {e}");
        e
    };
    // Standard input stands for a live source: no anchor given, the host's clock dates it.
    let e = run(
        &[
            "-",
            "--save-capture",
            "saved.bin",
            "--jaeger-json",
            "first.json",
        ],
        Some(&live),
    );
    assert_eq!(std::fs::read(dir.path().join("saved.bin")).unwrap(), stream);
    let says = format!(
        "saved the raw input to saved.bin ({} bytes); decode it again with: microspan decode --file saved.bin --anchor-unix-nanos ",
        stream.len()
    );
    let Some(at) = e.find(&says) else {
        panic!("{e}")
    };
    let anchor: String = e[at + says.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    run(
        &[
            "--file",
            "saved.bin",
            "--anchor-unix-nanos",
            &anchor,
            "--jaeger-json",
            "again.json",
        ],
        None,
    );
    let first = std::fs::read_to_string(dir.path().join("first.json")).unwrap();
    assert!(first.contains("\"operationName\": \"Bar\""), "{first}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("again.json")).unwrap(),
        first
    );
}

/// Options that would be ignored or give wrong output are refused up front.
#[test]
fn nonsense_options_are_refused() {
    let (_d, good) = capture(&clean_stream());
    for (args, says) in [
        (&["--max-open-spans", "0"][..], "--max-open-spans"),
        (
            &["--anchor-unix-nanos", "18446744073709551615"][..],
            "--anchor-unix-nanos",
        ),
        (
            &["--anchor-unix-nanos", "2100-01-01T00:00:00.000000001Z"][..],
            "outside 1970-01-01T00:00:00Z",
        ),
        (
            &["--anchor-time", "1969-12-31T23:59:59Z"][..],
            "outside 1970-01-01T00:00:00Z",
        ),
        (
            &["--anchor-unix-nanos", "yesterday"][..],
            "neither Unix nanoseconds nor an RFC 3339 time",
        ),
    ] {
        let (code, e) = decode_file(&good, args);
        assert_eq!(code, Some(2), "{args:?}: {e}");
        assert!(e.contains(says), "{args:?}: {e}");
    }
    let out = microspan(&["decode", "--tcp", "localhost", "--no-progress"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("localhost is not HOST:PORT"));
    // A zero rate is refused.
    let out = microspan(&["decode", "--serial", "/nonexistent/ttyX", "--baud", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--baud"));
}

/// Options of another input, or of uploads, are refused beside --file (not ignored), with an
/// error that says what they apply to, not that some other input is missing.
#[test]
fn options_that_do_not_apply_say_what_they_apply_to() {
    let (_d, good) = capture(&clean_stream());
    let rtt = "RTT input (--rtt-gdb or --probe-rtt)";
    let uploads = "uploads (--otlp or --jaeger-thrift)";
    for (args, applies_to) in [
        (&["--baud", "9600"][..], "--serial"),
        (&["--chip", "nRF52840_xxAA"][..], "--probe-rtt"),
        (&["--probe", "1366:1015"][..], "--probe-rtt"),
        (&["--elf", "firmware.elf"][..], rtt),
        (&["--rtt-channel", "0"][..], rtt),
        (&["--rtt-scan-size", "4096"][..], "--rtt-gdb"),
        (&["--header", "A: b"][..], uploads),
        (&["--header-env", "A=B"][..], uploads),
        (&["--spool-dir", "spool"][..], uploads),
        (&["--spool-max-bytes", "1000"][..], uploads),
        (&["--upload-timeout", "1"][..], uploads),
        (&["--ca-cert", "ca.pem"][..], uploads),
        (
            &["--max-file-spans", "10"][..],
            "file outputs (--jaeger-json or --otlp-json)",
        ),
    ] {
        let (code, e) = decode_file(&good, args);
        assert_eq!(code, Some(2), "{args:?}: {e}");
        let says = format!("error: {} only applies to {applies_to}\n", args[0]);
        assert!(e.contains(&says), "{args:?}: {e}");
        assert!(!e.contains("required"), "{args:?}: {e}");
        assert!(e.contains("Usage: microspan decode"), "{args:?}: {e}");
    }
    // Beside what they apply to, they pass the check (the input then fails on its own).
    for args in [
        &["decode", "--serial", "/nonexistent/ttyX", "--baud", "9600"][..],
        &["decode", "--rtt-gdb", "127.0.0.1:1", "--elf", "fw.elf"][..],
        &["decode", "--rtt-gdb", "127.0.0.1:1", "--rtt-channel", "0"][..],
        &[
            "decode",
            "--rtt-gdb",
            "127.0.0.1:1",
            "--rtt-scan-size",
            "4096",
        ][..],
    ] {
        let out = microspan(args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!e.contains("only applies"), "{args:?}: {e}");
        assert!(e.starts_with("microspan: "), "{args:?}: {e}");
    }
    let spool = tempfile::tempdir().unwrap();
    let (code, e) = decode_file(
        &good,
        &[
            "--otlp",
            "http://127.0.0.1:1",
            "--spool-dir",
            spool.path().to_str().unwrap(),
            "--upload-timeout",
            "0",
            "--header",
            "A: b",
        ],
    );
    assert!(!e.contains("only applies"), "{code:?}: {e}");
    // --help still lists them, saying what they go with.
    let out = microspan(&["decode", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for says in [
        "--baud <N>",
        "With --serial: the baud rate",
        "With --probe-rtt: the chip",
    ] {
        assert!(help.contains(says), "{says}: {help}");
    }
}

/// Output files that cannot be written are refused before any input is read (a capture is not
/// lost to a typo found at the end), and a run that decodes nothing leaves an existing file as
/// it was.
#[test]
fn outputs_are_checked_first_and_kept_when_nothing_is_decoded() {
    let (_d, good) = capture(&clean_stream());
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_str().unwrap();
    for (args, says) in [
        (
            vec!["--jaeger-json", "/nonexistent-microspan-dir/x.json"],
            "the directory /nonexistent-microspan-dir does not exist",
        ),
        (vec!["--otlp-json", dir_path], "is a directory"),
    ] {
        let (code, e) = decode_file(&good, &args);
        assert_eq!(code, Some(2), "{args:?}: {e}");
        assert!(e.contains(says), "{args:?}: {e}");
    }

    // Random bytes: nothing decoded; the earlier file stays.
    let out = dir.path().join("trace.json");
    std::fs::write(&out, "earlier run").unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect();
    let (_n, noise) = capture(&noise);
    let (code, e) = decode_file(&noise, &["--jaeger-json", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("was not written: nothing was decoded"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier run");
    // A good stream replaces it, and leaves no temporary file behind.
    let (code, e) = decode_file(&good, &["--jaeger-json", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{e}");
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("in-process-service"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A directory as input is an error at once, not "the input was empty".
    let (code, e) = decode_file(dir_path, &[]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("is a directory"), "{e}");
    assert!(!e.contains("empty"), "{e}");
}

/// Standard error closed early (`2>&1 | head`) is no panic.
#[test]
fn a_closed_standard_error_is_not_a_panic() {
    use std::process::Stdio;
    let (d, path) = capture(&clean_stream());
    let json = d.path().join("out.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_microspan"))
        .args(["decode", "--file", &path, "--no-progress", "--jaeger-json"])
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The tree into a pipe whose reader left (`| head`) ends quietly, and the other outputs are
/// still written.
#[test]
fn a_closed_terminal_pipe_is_not_an_error() {
    use std::process::Stdio;
    // Enough traces that the tree outgrows a pipe's buffer.
    let one = clean_stream();
    let (_d, path) = capture(&one);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_microspan"))
        .args(["decode", "--file", &path, "--no-progress", "--tree"])
        .args(["--jaeger-json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(!e.contains("Broken pipe"), "{e}");
    assert!(std::fs::read_to_string(&json)
        .unwrap()
        .contains("in-process-service"));
}

/// An output that is not a regular file is written in place: a symbolic link keeps pointing at
/// its target, which gets the document; a pipe or a device stays one (an earlier version renamed
/// a temporary file over the path, which replaced `/dev/null` with a file).
#[test]
fn outputs_that_are_not_regular_files_are_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let (_d, good) = capture(&clean_stream());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.json");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, e) = decode_file(&good, &["--jaeger-json", link.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{e}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .contains("in-process-service"));
    // A named pipe in the test's own directory (no device file: a regression that replaced
    // the output would replace a system file): written to, left a pipe. The decoder opens it
    // twice, to check it at start-up and to write the document; the reader reads until the
    // document has come.
    let fifo = dir.path().join("pipe.json");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return; // No mkfifo here.
    }
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut all = String::new();
            while !all.contains("in-process-service") {
                let mut pipe = std::fs::File::open(&fifo).unwrap();
                pipe.read_to_string(&mut all).unwrap();
            }
            all
        })
    };
    let (code, e) = decode_file(&good, &["--jaeger-json", fifo.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{e}");
    assert!(reader.join().unwrap().contains("in-process-service"));
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

/// The atomic replacement keeps a private file private, a hard-linked file is written in place
/// (both names see the new document), and an empty capture leaves an existing file alone.
#[test]
fn replaced_outputs_keep_their_permissions_and_links() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, good) = capture(&clean_stream());
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.json");
    std::fs::write(&private, "old").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, e) = decode_file(&good, &["--jaeger-json", private.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{e}");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&private)
        .unwrap()
        .contains("in-process-service"));

    let first = dir.path().join("first.json");
    let second = dir.path().join("second.json");
    std::fs::write(&first, "old").unwrap();
    std::fs::hard_link(&first, &second).unwrap();
    let (code, e) = decode_file(&good, &["--jaeger-json", first.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{e}");
    assert!(std::fs::read_to_string(&second)
        .unwrap()
        .contains("in-process-service"));

    let (_e, empty) = capture(b"");
    let (_code, e) = decode_file(&empty, &["--jaeger-json", private.to_str().unwrap()]);
    assert!(e.contains("was not written: nothing was decoded"), "{e}");
    assert!(std::fs::read_to_string(&private)
        .unwrap()
        .contains("in-process-service"));
}

/// Two outputs that are one file are refused before anything is read: the second document would
/// replace the first, and both summaries would say delivered. Spelled alike or not, existing or
/// not, or through a hard or symbolic link.
#[test]
fn two_outputs_that_are_one_file_are_refused() {
    let (_d, good) = capture(&clean_stream());
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("j.json");
    let abs = abs.to_str().unwrap();
    let run = |jaeger: &str, otlp: &str| {
        let out = support::cli::microspan()
            .current_dir(dir.path())
            .args(["decode", "--no-progress", "--file", &good])
            .args(["--jaeger-json", jaeger, "--otlp-json", otlp])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (jaeger, otlp) in [
        ("j.json", "j.json"),
        ("./j.json", abs),
        (abs, "sub/../j.json"),
    ] {
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let (code, e) = run(jaeger, otlp);
        assert_eq!(code, Some(2), "{jaeger} {otlp}: {e}");
        let says = format!("--jaeger-json {jaeger} and --otlp-json {otlp} are the same file");
        assert!(e.contains(&says), "{e}");
        assert!(!dir.path().join("j.json").exists(), "nothing is written");
    }
    // An existing file, and links to it.
    std::fs::write(dir.path().join("j.json"), "earlier").unwrap();
    std::fs::hard_link(dir.path().join("j.json"), dir.path().join("hard.json")).unwrap();
    std::os::unix::fs::symlink("j.json", dir.path().join("soft.json")).unwrap();
    for (jaeger, otlp) in [
        ("j.json", abs),
        ("hard.json", "j.json"),
        ("j.json", "soft.json"),
    ] {
        let (code, e) = run(jaeger, otlp);
        assert_eq!(code, Some(2), "{jaeger} {otlp}: {e}");
        assert!(e.contains("are the same file"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("j.json")).unwrap(),
            "earlier"
        );
    }
    // Two files: both written.
    let (code, e) = run("j.json", "o.json");
    assert_eq!(code, Some(0), "{e}");
    for name in ["j.json", "o.json"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.contains("in-process-service"), "{name}: {text}");
    }
}

/// An output that is the file being read (the capture) is refused before anything is read: it
/// would replace the capture.
#[test]
fn an_output_that_is_the_input_is_refused() {
    let stream = clean_stream();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("u2.bin");
    std::fs::write(&input, &stream).unwrap();
    std::os::unix::fs::symlink("u2.bin", dir.path().join("link.bin")).unwrap();
    let run = |args: &[&str], stdin: Option<&std::path::Path>| decode_in(dir.path(), args, stdin);
    let abs = input.to_str().unwrap();
    for args in [
        &["--file", "u2.bin", "--jaeger-json", "u2.bin"][..],
        &["--file", "u2.bin", "--otlp-json", abs][..],
        &["--file", abs, "--jaeger-json", "link.bin"][..],
        &["--file", "link.bin", "--jaeger-json", "./u2.bin"][..],
        &["--file", "u2.bin", "--save-capture", "link.bin"][..],
    ] {
        let (code, e) = run(args, None);
        assert_eq!(code, Some(2), "{args:?}: {e}");
        let says = format!(
            "{} {} names the same file as --file {}, which this run reads",
            args[2], args[3], args[1]
        );
        assert!(e.contains(&says), "{args:?}: {e}");
        assert_eq!(
            std::fs::read(&input).unwrap(),
            stream,
            "the capture is intact"
        );
    }
    // Standard input redirected from the file.
    let (code, e) = run(&["-", "--jaeger-json", "u2.bin"], Some(&input));
    assert_eq!(code, Some(2), "{e}");
    assert!(
        e.contains("--jaeger-json u2.bin names the same file as standard input"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        stream,
        "the capture is intact"
    );
    // Another name in the same directory is fine.
    let (code, e) = run(&["--file", "u2.bin", "--jaeger-json", "u2.json"], None);
    assert_eq!(code, Some(0), "{e}");
}

/// A capture that begins inside a frame (the tail of a longer one) reports that first, partial
/// frame as cut by the start of the capture, not as corruption on the link; it is still counted
/// as a bad frame. The same bytes after a delimiter are a frame the link corrupted.
#[test]
fn a_capture_that_starts_mid_frame_says_so() {
    let stream = clean_stream();
    let (_d, tail) = capture(&stream[5..]);
    let (_code, e) = decode_file(&tail, &[]);
    assert!(
        e.contains("last bad input: the input's first ")
            && e.contains("probably a frame cut by the start of the capture"),
        "{e}"
    );
    assert!(!e.contains("corrupted bytes on the link"), "{e}");
    // The session record was in the part before the capture began, or in a frame that bytes
    // sent before it (a boot banner) merged with, not in a damaged frame.
    assert!(e.contains("no session record (HELLO) arrived"), "{e}");
    assert!(!e.contains("lost to a CRC error or corruption"), "{e}");
    assert!(e.contains("boot banner"), "{e}");
    // Counted as before: a CRC error or another bad frame.
    let counted = |e: &str| e.contains("CRC errors 1\n") || e.contains("bad frames 1 ");
    assert!(counted(&e), "{e}");

    let mut delimited = vec![0u8];
    delimited.extend_from_slice(&stream[5..]);
    let (_d, delimited) = capture(&delimited);
    let (_code, e) = decode_file(&delimited, &[]);
    assert!(e.contains("corrupted bytes on the link"), "{e}");
    assert!(!e.contains("cut by the start of the capture"), "{e}");
    assert!(
        e.contains("lost to a CRC error or corruption may have been it"),
        "{e}"
    );
    assert!(counted(&e), "{e}");
}

/// A boot banner (or a glitch) on the same UART before the device's first frame: the drain's
/// delimiter ahead of frame 0 keeps it apart, and the decoder, seeing frame 0 follow it, says it
/// skipped it and fails nothing, not even `--strict`. The same bytes before a later frame are a
/// frame the capture began inside.
#[test]
fn a_boot_banner_before_frame_0_is_skipped_not_counted_lost() {
    let stream = clean_stream();
    assert_eq!(stream[0], 0, "the drain's delimiter before frame 0");
    let mut banner = b"\xffBooting myfw v0.1.0\r\n".to_vec();
    banner.extend_from_slice(&stream);
    let (_d, path) = capture(&banner);
    let (code, e) = decode_file(&path, &["--strict"]);
    assert_eq!(code, Some(0), "{e}");
    assert!(
        e.contains("22 bytes were before the device's first frame not microspan's")
            && e.contains("nothing was lost"),
        "{e}"
    );
    assert!(
        e.contains("bad frames 0 ") && e.contains("discarded bytes 0 "),
        "{e}"
    );

    // Before frame 1 instead (the capture began after frame 0): a cut frame, counted.
    let second = 1 + stream[1..].iter().position(|&b| b == 0).unwrap() + 1;
    let mut late = b"\xffBooting myfw v0.1.0\r\n".to_vec();
    late.extend_from_slice(&stream[second..]);
    let (_d, path) = capture(&late);
    let (code, e) = decode_file(&path, &["--strict"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(!e.contains("not microspan's"), "{e}");
}
