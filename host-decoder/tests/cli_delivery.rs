//! The `microspan` binary at the end of a run that uploads: signals (Ctrl-C, SIGTERM, SIGHUP),
//! the wait for a collector that is down, and where the spool is when none is given; and a live
//! input that goes away and comes back (`--reconnect`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::cli::{decode_fixture, fixture, microspan};
use support::*;

/// Spans in the fixture stream.
const FIXTURE_SPANS: usize = 104;

/// A device on TCP: sends the fixture stream to the decoder, then keeps the connection open (a
/// live capture that only a signal ends).
struct Device {
    addr: String,
    sent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Device {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .write_all(&std::fs::read(fixture()).unwrap())
                .unwrap();
            sent2.store(true, Ordering::SeqCst);
            while !stop2.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self { addr, sent, stop }
    }

    /// Waits until the stream was sent, and a little for the decoder to read it.
    fn wait_sent(&self) {
        let t0 = Instant::now();
        while !self.sent.load(Ordering::SeqCst) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no decoder connected"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A running decoder whose stderr is collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (pipe, text) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: `kill` only sends a signal; `pid` is our child's, which we have not waited for
        // yet, so it cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits until stderr contains `text`.
    fn wait_for(&self, text: &str, within: Duration) {
        let t0 = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                t0.elapsed() < within,
                "no {text:?} on stderr within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit (at most `within`): its status code (`None`: killed by a signal) and
    /// all of stderr.
    fn wait_exit(mut self, within: Duration) -> (Option<i32>, String) {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return (status.code(), self.stderr());
            }
            if t0.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {within:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The spans a later run delivers from `spool` to the collector, now up on `port` (a spool is
/// kept per URL).
fn replay(spool: &Path, port: u16) -> Vec<u64> {
    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    let empty = spool.with_extension("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let out = microspan()
        .args(["decode", "--no-progress", "--otlp", &rx.url()])
        .arg("--file")
        .arg(&empty)
        .arg("--spool-dir")
        .arg(spool)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    accepted_ids(&rx.received(), otlp_span_ids)
}

fn live_decoder(device: &Device, down: &str, spool: &Path, extra: &[&str]) -> Command {
    let mut c = microspan();
    c.args(["decode", "--no-progress", "--tcp", &device.addr])
        .args(["--otlp", down])
        .arg("--spool-dir")
        .arg(spool)
        .args(extra);
    c
}

/// The seconds of `for at most N s more` in a wait notice.
fn at_most(notice: &str) -> u64 {
    let (_, rest) = notice.split_once("for at most ").expect("a time limit");
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// The reviewer's run: a live capture, the collector down, Ctrl-C twice. The first Ctrl-C stops
/// the reading and the wait says what it waits for; the second stops the wait at once, the spans
/// go to the spool, the summary is printed and the status says spans were left undelivered.
#[test]
fn a_second_ctrl_c_stops_the_wait_and_keeps_the_spans() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let port = free_port();
    let down = format!("http://127.0.0.1:{port}");
    let device = Device::start();
    let run = Running::spawn(live_decoder(
        &device,
        &down,
        &spool,
        &["--upload-timeout", "120"],
    ));
    device.wait_sent();
    run.signal(libc::SIGINT);
    run.wait_for(
        "press Ctrl-C again to stop waiting",
        Duration::from_secs(10),
    );
    let notice = run.stderr();
    assert!(
        notice.contains(&format!("{FIXTURE_SPANS} spans pending"))
            && (100..=120).contains(&at_most(&notice))
            && notice.contains("what is not delivered is kept in the spool")
            && notice.contains(spool.to_str().unwrap())
            && notice.contains("Connection refused"),
        "{notice}"
    );
    let second = Instant::now();
    run.signal(libc::SIGINT);
    let (code, e) = run.wait_exit(Duration::from_secs(10));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "the wait went on for {:?} after the second Ctrl-C",
        second.elapsed()
    );
    assert_eq!(code, Some(1), "spans were left undelivered: {e}");
    assert!(
        e.contains(&format!(
            "{FIXTURE_SPANS} spans in, 0 delivered, 0 rejected, {FIXTURE_SPANS} spooled, 0 dropped"
        )),
        "the summary: {e}"
    );
    assert!(e.contains("will be sent by the next run"), "{e}");
    assert_eq!(
        replay(&spool, port).len(),
        FIXTURE_SPANS,
        "every span was kept"
    );
}

/// A run whose input ended waits for the collector: the first Ctrl-C stops that wait.
#[test]
fn ctrl_c_after_the_input_ended_stops_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let port = free_port();
    let down = format!("http://127.0.0.1:{port}");
    let mut command = decode_fixture();
    command
        .args(["--otlp", &down])
        .arg("--spool-dir")
        .arg(&spool)
        .args(["--upload-timeout", "120"]);
    let run = Running::spawn(command);
    run.wait_for("press Ctrl-C to stop waiting", Duration::from_secs(10));
    run.signal(libc::SIGINT);
    let (code, e) = run.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains(&format!("{FIXTURE_SPANS} spooled")), "{e}");
    assert_eq!(replay(&spool, port).len(), FIXTURE_SPANS);
}

/// SIGTERM (`timeout`, systemd, `kill`) and SIGHUP (the terminal closed) end a capture as the
/// first Ctrl-C does: the files are written, the uploads delivered or spooled, the summary
/// printed.
#[test]
fn sigterm_and_sighup_end_a_capture_cleanly() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let json = dir.path().join("trace.json");
        let port = free_port();
        let down = format!("http://127.0.0.1:{port}");
        let device = Device::start();
        let run = Running::spawn(live_decoder(
            &device,
            &down,
            &spool,
            &[
                "--upload-timeout",
                "0.5",
                "--jaeger-json",
                json.to_str().unwrap(),
            ],
        ));
        device.wait_sent();
        run.signal(signal);
        let (code, e) = run.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(1), "{name}: {e}");
        let written = std::fs::read_to_string(&json).unwrap_or_default();
        assert!(
            written.contains(r#""serviceName": "golden""#),
            "{name}: the file was written: {e}"
        );
        assert!(
            e.contains(&format!("{FIXTURE_SPANS} spooled")),
            "{name}: {e}"
        );
        assert_eq!(replay(&spool, port).len(), FIXTURE_SPANS, "{name}");
    }
}

/// The uid of files this process creates.
fn my_uid(dir: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("uid-probe");
    std::fs::write(&probe, b"").unwrap();
    std::fs::metadata(&probe).unwrap().uid()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Uploads the fixture to a healthy collector without --spool-dir, in the given environment.
fn upload_with_default_spool(env: &[(&str, Option<&Path>)]) {
    let rx = Receiver::start(vec![], Reply::status(200));
    let mut command = decode_fixture();
    command.args(["--otlp", &rx.url()]);
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    let out = command.output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{env:?}: {e}");
    assert_eq!(
        accepted_ids(&rx.received(), otlp_span_ids).len(),
        FIXTURE_SPANS
    );
}

/// Without --spool-dir the spool is the user's own, created private: two users of one machine
/// no longer share `/tmp/microspan-spool` (where the second could not upload at all).
#[test]
fn the_default_spool_is_private_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let (state, home, tmp) = (
        dir.path().join("state"),
        dir.path().join("home"),
        dir.path().join("tmp"),
    );
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();

    // $XDG_STATE_HOME first.
    upload_with_default_spool(&[
        ("XDG_STATE_HOME", Some(&state)),
        ("HOME", Some(&home)),
        ("TMPDIR", Some(&tmp)),
    ]);
    let spool = state.join("microspan/spool");
    assert!(spool.is_dir(), "{} was not created", spool.display());
    assert_eq!(mode(&spool), 0o700);
    assert_eq!(mode(&state.join("microspan")), 0o700);

    // Else ~/.local/state.
    upload_with_default_spool(&[
        ("XDG_STATE_HOME", None),
        ("HOME", Some(&home)),
        ("TMPDIR", Some(&tmp)),
    ]);
    let spool = home.join(".local/state/microspan/spool");
    assert!(spool.is_dir(), "{} was not created", spool.display());
    assert_eq!(mode(&spool), 0o700);

    // Else a directory of this user's in the temporary directory, made private even when it
    // was there already.
    let fallback = tmp.join(format!("microspan-spool-{}", my_uid(dir.path())));
    std::fs::create_dir(&fallback).unwrap();
    std::fs::set_permissions(
        &fallback,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    upload_with_default_spool(&[
        ("XDG_STATE_HOME", None),
        ("HOME", None),
        ("TMPDIR", Some(&tmp)),
    ]);
    assert_eq!(mode(&fallback), 0o700);
    assert!(
        std::fs::read_dir(&fallback).unwrap().next().is_some(),
        "the uploader's spool is in {}",
        fallback.display()
    );
}

/// Spans an older version spooled in its default spool (`microspan-spool` in the temporary
/// directory) are not replayed from the new default: a run with the default spool says so once,
/// with the option that replays them, and leaves them alone; that option delivers them.
#[test]
fn spans_left_in_the_old_default_spool_are_pointed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (state, home, tmp) = (
        dir.path().join("state"),
        dir.path().join("home"),
        dir.path().join("tmp"),
    );
    for d in [&state, &home, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The temporary directory of these runs: the old default spool is in it.
    let legacy = tmp.join("microspan-spool");
    let env = |c: &mut Command| {
        c.env("XDG_STATE_HOME", &state)
            .env("HOME", &home)
            .env("TMPDIR", &tmp);
    };
    let run = |extra: &[&str], url: &str| {
        let empty = dir.path().join("empty.bin");
        std::fs::write(&empty, b"").unwrap();
        let mut c = microspan();
        c.args(["decode", "--no-progress", "--otlp", url])
            .arg("--file")
            .arg(&empty)
            .args(extra);
        env(&mut c);
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let flag = format!("--spool-dir {}", legacy.display());
    let port = free_port();
    let down = format!("http://127.0.0.1:{port}");

    // No old spool, or one without requests: not a word.
    let rx = Receiver::start(vec![], Reply::status(200));
    let (code, e) = run(&[], &rx.url());
    assert_eq!(code, Some(0), "{e}");
    assert!(!e.contains("microspan-spool"), "{e}");
    std::fs::create_dir(&legacy).unwrap();
    let (_, e) = run(&[], &rx.url());
    assert!(!e.contains("microspan-spool"), "{e}");

    // An older version spooled the fixture's spans there: the collector was down.
    let mut c = decode_fixture();
    c.args(["--otlp", &down])
        .args(["--upload-timeout", "0"])
        .arg("--spool-dir")
        .arg(&legacy);
    env(&mut c);
    let out = c.output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(&format!("{FIXTURE_SPANS} spooled")), "{e}");
    let spooled: Vec<PathBuf> = std::fs::read_dir(&legacy)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    assert!(!spooled.is_empty());

    // The collector is back; a run with the default spool delivers nothing of the old spool,
    // and says where it is, how many batches it holds and how to replay them.
    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    let (code, e) = run(&[], &down);
    assert_eq!(code, Some(0), "{e}");
    let notes: Vec<&str> = e
        .lines()
        .filter(|l| l.contains("microspan-spool"))
        .collect();
    assert_eq!(notes.len(), 1, "one note: {e}");
    let batches = spooled.len();
    let what = if batches == 1 { "batch" } else { "batches" };
    assert!(
        notes[0].starts_with("microspan: note: ")
            && notes[0].contains(&format!(
                "{} holds {batches} spooled {what}",
                legacy.display()
            ))
            && notes[0].contains(&flag)
            && notes[0].contains(&format!(
                "{batches} {} for this run's otlp",
                if batches == 1 {
                    "was spooled"
                } else {
                    "were spooled"
                }
            ))
            && !notes[0].contains("other collector URLs"),
        "{e}"
    );
    assert!(rx.received().is_empty(), "the old spool was not replayed");
    assert!(spooled.iter().all(|f| f.is_file()), "nor touched");
    drop(rx);

    // Given a spool directory, a run says nothing of the old one.
    let (_, e) = run(
        &["--spool-dir", dir.path().join("mine").to_str().unwrap()],
        &down,
    );
    assert!(!e.contains("microspan-spool"), "{e}");

    // The option the note gives delivers them.
    assert_eq!(replay(&legacy, port).len(), FIXTURE_SPANS);
}

/// A spool that cannot be used says which option chooses another; --help says where it is.
#[test]
fn the_spool_is_documented_and_its_errors_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let out = decode_fixture()
        .args(["--otlp", "http://127.0.0.1:1"])
        .arg("--spool-dir")
        .arg(&not_a_dir)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("choose another with --spool-dir"), "{e}");

    let out = microspan().args(["decode", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("$XDG_STATE_HOME/microspan/spool")
            && help.contains("~/.local/state/microspan/spool")
            && help.contains("microspan-spool-<uid>"),
        "{help}"
    );
}

/// A collector's partial-success message that refuses nothing (a warning) reaches the user.
#[test]
fn a_collector_warning_is_shown() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use prost::Message;
    let answer = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 0,
            error_message: "attributes were truncated".into(),
        }),
    };
    let rx = Receiver::start(
        vec![],
        Reply::status(200)
            .header("Content-Type", "application/x-protobuf")
            .body(answer.encode_to_vec()),
    );
    let spool = tempfile::tempdir().unwrap();
    let out = decode_fixture()
        .args(["--otlp", &rx.url()])
        .arg("--spool-dir")
        .arg(spool.path())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(
        e.contains("microspan: note: ") && e.contains("attributes were truncated"),
        "{e}"
    );
}

/// A live capture whose upload was refused (here a wrong path: 404) exists nowhere else, and the
/// run says so; with --save-capture the raw input is kept, and decoding the saved file again
/// delivers every span once the URL is right.
#[test]
fn spans_a_collector_refused_can_be_sent_again_from_a_saved_capture() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = Receiver::start(vec![], Reply::status(404));
    let live = |extra: &[&str]| {
        let out = microspan()
            .current_dir(dir.path())
            .args(["decode", "--no-progress", "-", "--spool-dir", "spool"])
            .args(["--otlp", &wrong.url()])
            .args(extra)
            // Standard input stands for a live source.
            .stdin(std::fs::File::open(fixture()).unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = live(&[]);
    // One line for the refusals, not one per request.
    assert_eq!(e.matches("export error").count(), 1, "{e}");
    assert!(
        e.contains(&format!("refused {FIXTURE_SPANS} spans in "))
            && e.contains(" requests with HTTP 404; not retried: wrong path"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "note: the {FIXTURE_SPANS} spans not delivered exist nowhere else: --save-capture FILE"
        )),
        "{e}"
    );
    let e = live(&["--save-capture", "capture.bin"]);
    assert!(!e.contains("exist nowhere else"), "{e}");
    let says = format!("holds the {FIXTURE_SPANS} spans not delivered); decode it again with: microspan decode --file capture.bin");
    assert!(e.contains(&says), "{e}");
    assert_eq!(
        std::fs::read(dir.path().join("capture.bin")).unwrap(),
        std::fs::read(fixture()).unwrap()
    );

    let right = Receiver::start(vec![], Reply::status(200));
    let out = microspan()
        .current_dir(dir.path())
        .args([
            "decode",
            "--no-progress",
            "--file",
            "capture.bin",
            "--spool-dir",
            "spool",
        ])
        .args(["--otlp", &right.url()])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert_eq!(
        accepted_ids(&right.received(), otlp_span_ids).len(),
        FIXTURE_SPANS
    );
}

/// The Jaeger UI's port (16686) answers any POST with its page and HTTP 200. A run pointed at it
/// does not call the spans delivered: exit status 1, and each uploader says what the URL is.
#[test]
fn a_jaeger_ui_url_is_not_taken_for_a_collector() {
    let ui = Receiver::start(
        vec![],
        Reply::status(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(support::scenarios::JAEGER_UI_PAGE),
    );
    let spool = tempfile::tempdir().unwrap();
    let out = decode_fixture()
        .args(["--otlp", &ui.url()])
        .args(["--jaeger-thrift", &format!("{}/api/traces", ui.url())])
        .arg("--spool-dir")
        .arg(spool.path())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert_eq!(
        e.matches("this looks like the Jaeger UI (port 16686)")
            .count(),
        2,
        "{e}"
    );
    assert!(!e.contains(&format!("{FIXTURE_SPANS} delivered")), "{e}");
}

/// `--max-spans-per-request N` bounds every upload request; it needs an upload, and N ≥ 1.
#[test]
fn max_spans_per_request_bounds_each_request() {
    let rx = Receiver::start(vec![], Reply::status(200));
    let spool = tempfile::tempdir().unwrap();
    let out = decode_fixture()
        .args(["--otlp", &rx.url(), "--max-spans-per-request", "10"])
        .arg("--spool-dir")
        .arg(spool.path())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    let sizes: Vec<usize> = rx
        .received()
        .iter()
        .map(|r| otlp_span_ids(&r.body).len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), FIXTURE_SPANS, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");

    for (args, says) in [
        (
            &["--max-spans-per-request", "10"][..],
            "--max-spans-per-request only applies to uploads",
        ),
        (
            &[
                "--otlp",
                "http://127.0.0.1:1",
                "--max-spans-per-request",
                "0",
            ][..],
            "--max-spans-per-request",
        ),
    ] {
        let out = decode_fixture().args(args).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(says), "{e}");
    }
    let out = microspan().args(["decode", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--max-spans-per-request <N>"), "{help}");
}

/// The spans `microspan decode` reports in its summary line (`spans N (…/s)`) on `stderr`.
fn summary_spans(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("spans "))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    line[6..].split(' ').next().unwrap().parse().unwrap()
}

/// `--reconnect` on a TCP input whose server closes the connection inside a frame and is back a
/// moment later, sending from inside a later frame: one run, which reads on after the cut, says
/// what happened, and decodes exactly the spans of the frames it received whole; its saved
/// capture (the cut marked with a delimiter) decodes to the same spans. An input that comes back
/// and closes again at once is retried with growing pauses, quietly, not in a busy loop.
/// Without `--reconnect`, the closed connection ends the run.
#[test]
fn an_input_that_goes_away_and_comes_back_is_read_on_with_reconnect() {
    let stream = std::fs::read(fixture()).unwrap();
    let zeros: Vec<usize> = (0..stream.len()).filter(|&i| stream[i] == 0).collect();
    assert!(zeros.len() > 12, "{}", zeros.len());
    // Cut 5 bytes into the frame after the 4th delimiter; back 3 bytes before the end of the
    // 9th frame: frames 5 to 9 are lost, the first 5 bytes are of a frame the input was cut
    // inside, and the 3 are the end of a frame (a bad frame, as at the start of an input).
    let first = stream[..zeros[4] + 1 + 5].to_vec();
    let second = stream[zeros[9] - 3..].to_vec();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (parts, stop2, sent2, accepted2) = (
        [first.clone(), second.clone()],
        stop.clone(),
        sent.clone(),
        accepted.clone(),
    );
    std::thread::spawn(move || {
        for (i, part) in parts.iter().enumerate() {
            let (mut conn, _) = listener.accept().unwrap();
            accepted2.fetch_add(1, Ordering::SeqCst);
            conn.write_all(part).unwrap();
            if i == 0 {
                // Closed, inside a frame.
                continue;
            }
            sent2.store(true, Ordering::SeqCst);
            while !stop2.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(conn);
            // Then a server that accepts and closes at once, for a while.
            listener.set_nonblocking(true).unwrap();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(1500) {
                if listener.accept().is_ok() {
                    accepted2.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sent2.store(false, Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("run.bin");
    let mut c = microspan();
    c.args(["decode", "--no-progress", "--reconnect", "--tcp", &addr])
        .arg("--save-capture")
        .arg(&saved);
    let run = Running::spawn(c);
    run.wait_for("is back; reading on", Duration::from_secs(20));
    while !sent.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // What the second connection sent is read (the decoder polls every 200 ms) before it ends.
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    // The server now accepts and closes at once: a few tries, not thousands.
    std::thread::sleep(Duration::from_millis(1500));
    let tries = accepted.load(Ordering::SeqCst);
    assert!((3..=12).contains(&tries), "{tries} connections accepted");
    run.signal(libc::SIGINT);
    let (code, e) = run.wait_exit(Duration::from_secs(20));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(code, Some(0), "{e}");
    assert!(
        e.contains("closed the connection: waiting for the input to come back"),
        "{e}"
    );
    // The first cut, then the quick closes.
    assert!(e.contains("the input went away and came back"), "{e}");
    assert_eq!(
        e.matches("waiting for the input to come back").count(),
        2,
        "announced once per outage that had bytes: {e}"
    );
    assert!(
        e.contains("5 bytes of frames it was cut or ended inside"),
        "{e}"
    );
    assert!(e.contains("unfinished bytes 5"), "{e}");
    assert!(e.contains("bad frames 1 |"), "{e}");
    assert!(
        e.contains("the first 3 bytes after the input came back: not a whole frame"),
        "{e}"
    );

    let out = microspan()
        .args(["decode", "--no-progress", "--file"])
        .arg(&saved)
        .output()
        .unwrap();
    let whole = String::from_utf8_lossy(&out.stderr);
    let spans = summary_spans(&e);
    assert_eq!(spans, summary_spans(&whole), "{e}\n{whole}");
    assert!(0 < spans && spans < FIXTURE_SPANS, "{spans}");
    assert!(e.contains("lost frames 5"), "{e}");

    // Without --reconnect, the first connection's end is the run's.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(&first).unwrap();
    });
    let out = microspan()
        .args(["decode", "--no-progress", "--tcp", &addr])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(!e.contains("waiting for the input"), "{e}");
    assert!(e.contains("the input ended inside a frame"), "{e}");

    let out = decode_fixture().arg("--reconnect").output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--reconnect only applies to --serial or --tcp"),
        "{e}"
    );
}
