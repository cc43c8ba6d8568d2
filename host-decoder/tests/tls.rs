//! Safe uploads: `https://` through rustls against a local TLS receiver on 127.0.0.1 whose
//! certificate is signed by a private CA made in the test (rcgen), extra headers for
//! authentication, and secrets that never reach a message.

mod support;

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use microspan_decoder::export::{ExportError, Exporter, Header, OtlpHttp, UploadConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::cli::decode_fixture;
use support::{fast_config, numbered_batch, otlp_span_ids, read_request, Acceptor, Request};

const TOKEN: &str = "ms-test-token-7f3a9c1e5b2d";

/// A private CA and a server certificate it signed for 127.0.0.1 / localhost.
struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "microspan test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert: leaf.der().clone(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    /// 401 with a body that echoes the request's `Authorization` header, as a careless proxy does.
    UnauthorizedEcho,
}

/// An HTTPS/1.1 server on 127.0.0.1 (rustls, ring): records each request, answers `answer`.
struct TlsReceiver {
    port: u16,
    got: Arc<Mutex<Vec<Request>>>,
    handshake_failures: Arc<Mutex<u32>>,
    _acceptor: Acceptor,
}

impl TlsReceiver {
    fn start(pki: &Pki, answer: Answer) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
            .unwrap();
        let config = Arc::new(config);
        let got = Arc::new(Mutex::new(Vec::new()));
        let handshake_failures = Arc::new(Mutex::new(0));
        let (got2, fails2) = (got.clone(), handshake_failures.clone());
        let acceptor = Acceptor::start(0, move |tcp| {
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            match serve(&mut tls, answer) {
                Some(g) => got2.lock().unwrap().push(g),
                None => *fails2.lock().unwrap() += 1,
            }
        });
        Self {
            port: acceptor.port,
            got,
            handshake_failures,
            _acceptor: acceptor,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn got(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }
}

fn serve<S: Read + Write>(stream: &mut S, answer: Answer) -> Option<Request> {
    let got = read_request(&mut BufReader::new(&mut *stream))?;
    let (status, text) = match answer {
        Answer::Ok => (200, String::new()),
        Answer::UnauthorizedEcho => (
            401,
            format!(
                "unauthorized: bad credentials {:?}",
                got.header("authorization").unwrap_or("")
            ),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(text.as_bytes()).ok()?;
    stream.flush().ok()?;
    Some(got)
}

fn write_ca(dir: &Path, pki: &Pki) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

fn config(dir: &Path, ca: Option<PathBuf>) -> UploadConfig {
    UploadConfig {
        headers: vec![
            Header::new("Authorization", &format!("Bearer {TOKEN}")).unwrap(),
            Header::parse("X-Scope-OrgID: tenant-1").unwrap(),
        ],
        ca_cert: ca,
        ..fast_config(&dir.join("spool"))
    }
}

/// Everything a user could see of an exporter's run.
fn visible(summary: &microspan_decoder::export::ExportSummary, config: &UploadConfig) -> String {
    let mut text = format!("{summary}\n{summary:?}\n{config:?}\n");
    for e in &summary.errors {
        text.push_str(&format!("{e}\n{e:?}\n"));
    }
    text
}

#[test]
fn https_with_a_private_ca_delivers_and_sends_the_headers() {
    let pki = pki();
    let rx = TlsReceiver::start(&pki, Answer::Ok);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(write_ca(dir.path(), &pki)));
    let mut exporter = OtlpHttp::new(&rx.url(), cfg.clone()).unwrap();
    exporter.export(&numbered_batch(1, 5)).unwrap();
    let summary = exporter.finish().unwrap();
    assert!(summary.is_complete(), "{summary}: {:?}", summary.errors);
    let got = rx.got();
    assert_eq!(got.len(), 2, "5 spans, 3 per request");
    let mut ids: Vec<u64> = got.iter().flat_map(|g| otlp_span_ids(&g.body)).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=5).collect::<Vec<_>>());
    for g in &got {
        assert_eq!(g.path, "/v1/traces");
        assert_eq!(
            g.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(g.header("x-scope-orgid"), Some("tenant-1"));
    }
    assert!(!visible(&summary, &cfg).contains(TOKEN));
}

#[test]
fn an_unknown_ca_is_refused_with_a_hint_and_no_token() {
    let pki = pki();
    let rx = TlsReceiver::start(&pki, Answer::Ok);
    let dir = tempfile::tempdir().unwrap();
    // No --ca-cert: the bundled Mozilla roots do not know the test CA.
    let cfg = UploadConfig {
        max_attempts: 1,
        finish_timeout: Duration::from_millis(300),
        ..config(dir.path(), None)
    };
    let mut exporter = OtlpHttp::new(&rx.url(), cfg.clone()).unwrap();
    exporter.export(&numbered_batch(1, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    assert!(
        rx.got().is_empty(),
        "nothing may be sent to an untrusted server"
    );
    assert!(*rx.handshake_failures.lock().unwrap() >= 1);
    assert_eq!(summary.spooled, 2, "{summary}");
    let text = visible(&summary, &cfg);
    assert!(text.contains(&rx.url()), "{text}");
    assert!(
        text.contains("--ca-cert"),
        "the error should say how to trust a private CA: {text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
}

#[test]
fn a_collector_echoing_the_token_in_an_error_is_redacted() {
    let pki = pki();
    let rx = TlsReceiver::start(&pki, Answer::UnauthorizedEcho);
    let dir = tempfile::tempdir().unwrap();
    // A password in the URL is a secret too.
    let url = format!("https://ingest:pa55w0rd-xyz@127.0.0.1:{}", rx.port);
    let cfg = config(dir.path(), Some(write_ca(dir.path(), &pki)));
    let mut exporter = OtlpHttp::new(&url, cfg.clone()).unwrap();
    assert!(
        !exporter.name().contains("pa55w0rd-xyz"),
        "{}",
        exporter.name()
    );
    exporter.export(&numbered_batch(1, 2)).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(rx.got().len(), 1, "401 is not retried");
    let err = summary
        .errors
        .iter()
        .find(|e| matches!(e, ExportError::CredentialsRefused { status: 401, .. }))
        .expect("a CredentialsRefused error")
        .to_string();
    assert!(
        err.contains("127.0.0.1") && err.contains("HTTP 401"),
        "{err}"
    );
    assert!(
        err.contains("<redacted>"),
        "the echoed header is shown redacted: {err}"
    );
    assert!(err.contains("--header-env"), "{err}");
    let text = visible(&summary, &cfg);
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!text.contains("pa55w0rd-xyz"), "{text}");
}

#[test]
fn header_errors_name_the_header_not_the_value() {
    let e = Header::new("Authorization", "Bearer secret-value\r\nX: y")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Authorization") && !e.contains("secret-value"),
        "{e}"
    );
    let e = Header::parse("Authorization Bearer secret-value")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("secret-value"), "{e}");
    assert!(Header::new("Content-Type", "text/plain").is_err());
    assert!(Header::new("Bad Name", "v").is_err());
    let h = Header::parse("Authorization: Bearer secret-value").unwrap();
    assert_eq!(format!("{h:?}"), "Authorization: <redacted>");
    assert_eq!(
        (h.name(), h.value()),
        ("Authorization", "Bearer secret-value")
    );
}

#[test]
fn a_bad_ca_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-ca.pem");
    std::fs::write(&path, "hello").unwrap();
    let err = OtlpHttp::new(
        "https://127.0.0.1:1",
        UploadConfig {
            ca_cert: Some(path),
            ..fast_config(dir.path())
        },
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("not-a-ca.pem") && err.contains("BEGIN CERTIFICATE"),
        "{err}"
    );
}

#[test]
fn the_cli_uploads_over_https_with_header_env_and_never_prints_the_token() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);
    for (answer, expect_ok) in [(Answer::Ok, true), (Answer::UnauthorizedEcho, false)] {
        let rx = TlsReceiver::start(&pki, answer);
        let out = decode_fixture()
            .args(["--anchor-unix-nanos", "1700000000000000000"])
            .args(["--otlp", &rx.url(), "--ca-cert"])
            .arg(&ca)
            .args(["--header-env", "Authorization=MS_TEST_OTLP_AUTH"])
            .args([
                "--header",
                "X-Scope-OrgID: tenant-1",
                "--upload-timeout",
                "5",
            ])
            .arg("--spool-dir")
            .arg(dir.path().join("cli-spool"))
            .env("MS_TEST_OTLP_AUTH", format!("Bearer {TOKEN}"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), expect_ok, "{text}");
        assert!(!text.contains(TOKEN), "the token was printed:\n{text}");
        assert!(text.contains(&rx.url()), "{text}");
        let got = rx.got();
        assert!(!got.is_empty(), "{text}");
        for g in &got {
            assert_eq!(
                g.header("authorization"),
                Some(format!("Bearer {TOKEN}").as_str())
            );
            assert_eq!(g.header("x-scope-orgid"), Some("tenant-1"));
        }
        if expect_ok {
            assert!(
                got.iter()
                    .map(|g| otlp_span_ids(&g.body).len())
                    .sum::<usize>()
                    > 0
            );
        } else {
            assert!(
                text.contains("HTTP 401") && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
    // An unset variable is named, and nothing else is said about the value.
    let out = decode_fixture()
        .args(["--otlp", "https://127.0.0.1:1"])
        .args(["--header-env", "Authorization=MS_TEST_UNSET_VARIABLE"])
        .env_remove("MS_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MS_TEST_UNSET_VARIABLE is not set"), "{err}");
}
