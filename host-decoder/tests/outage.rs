//! Collector outages: the receiver is down, then answers 503/429, and the decoder itself is stopped
//! and restarted during the outage (the exporter dropped unfinished; the `microspan` binary run
//! several times with the same `--spool-dir`). The spool stays within its bound, survives the
//! restarts, and after recovery every span has arrived exactly once (counted by span id at the
//! receiver). Two decoders cannot use one spool at once.
//!
//! The at-least-once window (a decoder killed while a spooled request is in flight) is described
//! in `src/export/delivery.rs`; a stop through `finish` or drop, as here, never opens it, so this
//! test demands exactly once.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use microspan_decoder::export::{ExportError, Exporter, OtlpHttp, UploadConfig};
use support::cli::decode_fixture;
use support::*;

/// Bytes of every file under `dir`.
fn spool_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                spool_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// How often each span id was accepted (2xx) by the receiver.
fn counts(rx: &[Received]) -> HashMap<u64, u32> {
    let mut n = HashMap::new();
    for r in rx.iter().filter(|r| (200..300).contains(&r.answered)) {
        for id in otlp_span_ids(&r.body) {
            *n.entry(id).or_insert(0) += 1;
        }
    }
    n
}

const BOUND: u64 = 64 << 10;

fn config(dir: &Path) -> UploadConfig {
    UploadConfig {
        spool_max_bytes: BOUND,
        queue_capacity: 2,
        ..fast_config(dir)
    }
}

#[test]
fn restarts_during_an_outage_lose_nothing_and_duplicate_nothing() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();

    // Run 1: nothing listens. The decoder is stopped (dropped, not finished) mid-outage.
    let mut run1 = OtlpHttp::new(&url, config(dir.path())).unwrap();
    for i in 0..10 {
        run1.export(&numbered_batch(1 + i * 3, 3)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(run1);
    let after1 = spool_bytes(dir.path());
    assert!(after1 > 0 && after1 <= BOUND, "{after1} bytes spooled");

    // Run 2: the collector is up but overloaded (503, then 429 with Retry-After): the replayed and
    // the new requests stay spooled; stopped again.
    {
        let rx = Receiver::start_on(
            port,
            vec![Reply::status(429).header("Retry-After", "1")],
            Reply::status(503),
        );
        let mut run2 = OtlpHttp::new(&url, config(dir.path())).unwrap();
        // A second decoder on the same spool is refused while this one runs.
        let err = OtlpHttp::new(&url, config(dir.path()))
            .err()
            .expect("the spool is locked");
        assert!(matches!(err, ExportError::SpoolInUse { .. }), "{err}");
        assert!(err.to_string().contains("--spool-dir"), "{err}");
        for i in 10..20 {
            run2.export(&numbered_batch(1 + i * 3, 3)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        drop(run2);
        assert!(!rx.received().is_empty(), "run 2 tried the collector");
        assert!(counts(&rx.received()).is_empty(), "nothing was accepted");
    }
    let after2 = spool_bytes(dir.path());
    assert!(after2 > after1 && after2 <= BOUND, "{after2} bytes spooled");

    // Run 3: the collector is back. The spool is replayed, new spans follow, each exactly once.
    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    let mut run3 = OtlpHttp::new(&url, config(dir.path())).unwrap();
    run3.export(&numbered_batch(61, 9)).unwrap();
    let summary = run3.finish().unwrap();
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    assert_eq!(summary.replayed, 60, "{summary}");
    let n = counts(&rx.received());
    assert_eq!(n.len(), 69, "every span arrived");
    assert!(n.values().all(|&c| c == 1), "a span arrived twice: {n:?}");
    assert_eq!(
        spool_bytes(dir.path()),
        0,
        "the spool is empty after recovery"
    );
}

#[test]
fn the_spool_bound_holds_and_what_does_not_fit_is_counted() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let small = UploadConfig {
        spool_max_bytes: 2_000,
        queue_capacity: 1,
        finish_timeout: Duration::from_millis(200),
        ..fast_config(dir.path())
    };
    let mut run1 = OtlpHttp::new(&url, small.clone()).unwrap();
    for i in 0..40 {
        let _ = run1.export(&numbered_batch(1 + i * 3, 3));
    }
    let s1 = run1.finish().unwrap();
    assert_eq!(s1.spans_in, 120);
    assert!(
        spool_bytes(dir.path()) <= 2_000,
        "{}",
        spool_bytes(dir.path())
    );
    assert!(s1.dropped > 0 && s1.spooled > 0, "{s1}");
    assert_eq!(
        s1.spooled + s1.dropped,
        120,
        "every span spooled or counted as dropped: {s1}"
    );

    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    // The live collector gets time to take the replay: 200 ms, which made the first run spool,
    // was not always enough under load.
    let replay = UploadConfig {
        finish_timeout: Duration::from_secs(10),
        ..small
    };
    let s2 = OtlpHttp::new(&url, replay).unwrap().finish().unwrap();
    let n = counts(&rx.received());
    assert_eq!(n.len() as u64, s1.spooled, "{s2}");
    assert!(n.values().all(|&c| c == 1));
}

/// Runs the decoder on the fixture, uploading to `url` with `timeout` seconds (short where the
/// collector is down or failing, so the run gives up soon; long where it is up, so a loaded
/// machine does not time a delivery out).
fn run_cli(url: &str, spool: &Path, timeout: &str) -> (bool, String) {
    let out = decode_fixture()
        .args(["--anchor-unix-nanos", "1700000000000000000"])
        .args(["--otlp", url, "--upload-timeout", timeout])
        .arg("--spool-dir")
        .arg(spool)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_run_three_times_through_an_outage_delivers_each_span_once() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    // Run 1: collector down; the binary gives up after --upload-timeout and keeps the spans.
    let (ok, err) = run_cli(&url, dir.path(), "0.5");
    assert!(!ok, "{err}");
    assert!(err.contains("spool") && err.contains("next run"), "{err}");
    let spooled1 = spool_bytes(dir.path());
    assert!(spooled1 > 0);
    // Run 2: answers 503. The same stream again (the device was replayed): spooled too. The
    // summary tells this run's spans from those run 1 left in the spool.
    {
        let _rx = Receiver::start_on(port, vec![], Reply::status(503));
        let (ok, err) = run_cli(&url, dir.path(), "0.5");
        assert!(!ok, "{err}");
        assert!(
            err.contains(
                "104 spans in, 0 delivered, 0 rejected, 104 spooled, 0 dropped; \
                 from earlier runs: 104 spans were in the spool, 0 replayed, 104 still spooled"
            ),
            "{err}"
        );
    }
    assert!(spool_bytes(dir.path()) > spooled1);
    // Run 3: back. Everything of runs 1–3 arrives: each span of the stream three times (three
    // decodes), never more; the spool ends empty.
    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    let (ok, err) = run_cli(&url, dir.path(), "10");
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "104 spans in, 104 delivered, 0 rejected, 0 spooled, 0 dropped; \
             from earlier runs: 208 spans were in the spool, 208 replayed, 0 still spooled"
        ),
        "{err}"
    );
    let n = counts(&rx.received());
    assert!(!n.is_empty());
    assert!(
        n.values().all(|&c| c == 3),
        "each span once per run: {:?}",
        n.values().filter(|&&c| c != 3).count()
    );
    assert_eq!(spool_bytes(dir.path()), 0);
}

/// A collector that stores a request and then never answers (it hangs, or the answer is lost).
struct BlackHole {
    stored: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    _acceptor: Acceptor,
}

impl BlackHole {
    fn start(port: u16) -> Self {
        let stored = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stored2 = stored.clone();
        let mut held = Vec::new();
        let acceptor = Acceptor::start(port, move |stream| {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            if let Some(request) = read_request(&mut reader) {
                stored2.lock().unwrap().push(request.body);
            }
            held.push(stream); // never answered
        });
        Self {
            stored,
            _acceptor: acceptor,
        }
    }
}

/// The at-least-once window, measured: a decoder killed (SIGKILL) while a spooled request is in
/// flight — the collector stored it, the answer never came — sends that request again on its next
/// run. Exactly that one request's spans arrive twice; every other span exactly once; none is lost.
#[test]
fn a_decoder_killed_mid_request_repeats_only_that_request() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, _) = run_cli(&url, dir.path(), "0.5");
    assert!(!ok);
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let decoder = |url: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_microspan"));
        c.args([
            "decode",
            "--no-progress",
            "--otlp",
            url,
            "--upload-timeout",
            "5",
        ])
        .arg("--file")
        .arg(&empty)
        .arg("--spool-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    // Run 2: the collector stores the first replayed request and hangs; the decoder is killed.
    let in_flight = {
        let hole = BlackHole::start(port);
        let mut child = decoder(&url).spawn().unwrap();
        let t0 = std::time::Instant::now();
        while hole.stored.lock().unwrap().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no request arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let stored = hole.stored.lock().unwrap().clone();
        assert_eq!(stored.len(), 1, "one request at a time");
        otlp_span_ids(&stored[0])
    };
    assert!(!in_flight.is_empty());
    // Run 3: the collector answers. Everything spooled arrives.
    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    let status = decoder(&url).status().unwrap();
    assert!(status.success());
    let mut n = counts(&rx.received());
    for id in &in_flight {
        *n.entry(*id).or_insert(0) += 1; // what the collector stored in run 2
    }
    let twice: Vec<u64> = n
        .iter()
        .filter(|(_, &c)| c == 2)
        .map(|(&id, _)| id)
        .collect();
    let mut expected = in_flight.clone();
    expected.sort_unstable();
    let mut twice_sorted = twice.clone();
    twice_sorted.sort_unstable();
    assert_eq!(
        twice_sorted, expected,
        "exactly the in-flight request is repeated"
    );
    assert!(n.values().all(|&c| c == 1 || c == 2));
    println!(
        "at-least-once window: {} spans of {} arrived twice (the request in flight when the decoder was killed)",
        twice.len(),
        n.len()
    );
}

/// A collector that takes a request and never answers: stopping the wait does not wait for the
/// request's timeout. `finish` returns within the grace period, with the queue and a copy of the
/// request in flight in the spool; the next run sends them all (the request in flight is the
/// at-least-once window: the collector may have stored it).
#[test]
fn stopping_the_wait_for_a_collector_that_never_answers() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let hole = BlackHole::start(port);
    let slow = UploadConfig {
        request_timeout: Duration::from_secs(120),
        finish_timeout: Duration::from_secs(120),
        ..config(dir.path())
    };
    let mut run1 = OtlpHttp::new(&url, slow.clone()).unwrap();
    for i in 0..4 {
        run1.export(&numbered_batch(1 + i * 3, 3)).unwrap();
    }
    run1.begin_finish();
    let t0 = std::time::Instant::now();
    while hole.stored.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no request arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pending = run1.pending().expect("waiting for the collector");
    assert_eq!(pending.spans, 12, "{pending}");
    let stopped = std::time::Instant::now();
    run1.stop_waiting();
    let summary = run1.finish().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "finish took {:?} after stop_waiting",
        stopped.elapsed()
    );
    assert_eq!((summary.spooled, summary.dropped), (12, 0), "{summary}");
    // The collector goes away: the request it held fails, and the worker left to it ends,
    // releasing the spool.
    drop(hole);
    let rx = Receiver::start_on(port, vec![], Reply::status(200));
    let t0 = std::time::Instant::now();
    let mut run2 = loop {
        match OtlpHttp::new(&url, config(dir.path())) {
            Ok(run) => break run,
            Err(ExportError::SpoolInUse { .. }) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let summary = run2.finish().unwrap();
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    let n = counts(&rx.received());
    assert_eq!(n.len(), 12, "every span arrived: {n:?}");
    assert!(n.values().all(|&c| c == 1), "{n:?}");
}
