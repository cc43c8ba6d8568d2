//! The `microspan` command line on checked-in streams: exit status, messages, and the exported
//! files of the v1 fixture stream against snapshots (`MICROSPAN_BLESS=1` rewrites them).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/v1-all-records.bin")
}

fn microspan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_microspan"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run microspan")
}

fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("MICROSPAN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with MICROSPAN_BLESS=1", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from its snapshot (MICROSPAN_BLESS=1 to accept)"
    );
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
    let out = microspan(&[
        "decode",
        "--file",
        fixture().to_str().unwrap(),
        "--no-progress",
        "--quiet",
        "--strict",
        "--jaeger-json",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(1));
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
        e.contains("wire version 7") && e.contains("reads versions [1, 2]"),
        "{e}"
    );
}
