//! `microspan`: decode a device's span stream and export it to Jaeger, files or the terminal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use microspan_decoder::assemble::{Limits, Options};
use microspan_decoder::capture::CaptureFile;
use microspan_decoder::export::{
    check_output_path, legacy_spool_dir, legacy_spool_note, ExportError, Exporter, Header,
    JaegerJsonFile, JaegerThriftHttp, OtlpHttp, OtlpJsonFile, TreeWriter, UploadConfig,
    DEFAULT_MAX_FILE_SPANS,
};
use microspan_decoder::input::Source;
use microspan_decoder::model::Batch;
use microspan_decoder::plural::count;
use microspan_decoder::rtt_gdb::{Config as RttConfig, RttGdbReader};
use microspan_decoder::stream::{StreamDecoder, StreamStats};
use microspan_decoder::terminal::printable;

/// A line on standard error; an error writing it (a closed pipe: `2>&1 | head`) is ignored, as
/// `eprintln!` would panic on it. Its control characters are escaped ([`printable`]): a message
/// may quote what the device or a collector sent, which must not act on the terminal.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", printable(&format!($($arg)*)));
    }};
}

/// Decode microspan streams from a device and export the spans to Jaeger.
#[derive(Parser)]
#[command(name = "microspan", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a stream (file, stdin, serial port, TCP, RTT through a GDB server), rebuild spans and export them.
    Decode(Box<DecodeArgs>),
    /// Show the last events and the spans open at a crash, from a RAM dump or a halted target
    /// behind a GDB server, given the firmware's ELF.
    Postmortem(microspan_decoder::postmortem::Args),
}

/// `--baud` when not given.
const DEFAULT_BAUD: u32 = 115_200;
/// `--rtt-scan-size` when not given.
const DEFAULT_RTT_SCAN_SIZE: u32 = 64 * 1024;

/// The latest `--anchor-unix-nanos`: 2100-01-01T00:00:00Z, the latest time the decoder dates
/// anything at (a device's wall clock included).
const LATEST_ANCHOR_UNIX_NANOS: u64 = microspan_decoder::assemble::LATEST_UNIX_NANOS;

// Options that only apply beside another (--baud beside --serial, the upload settings beside an
// uploader) are checked after parsing, by `inapplicable_option` (see `ONLY_WITH`), not with
// clap's `requires`: given beside --file, `requires` answered that --serial was missing, with a
// usage line combining options that conflict.
#[derive(Args)]
struct DecodeArgs {
    /// `-` reads standard input.
    #[arg(value_name = "-", conflicts_with_all = ["file", "serial", "tcp", "rtt_gdb", "probe_rtt"])]
    stdin: Option<String>,
    /// Read a recorded stream from a file.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Read a serial port (e.g. /dev/ttyACM0).
    #[arg(long, value_name = "DEV", conflicts_with_all = ["file", "tcp", "rtt_gdb"])]
    serial: Option<String>,
    /// With --serial: the baud rate [default: 115200].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    baud: Option<u32>,
    /// Connect to a TCP server (QEMU `-serial tcp:…`, OpenOCD/J-Link RTT servers).
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["file", "serial", "rtt_gdb"])]
    tcp: Option<String>,
    /// With --serial or --tcp: when the input goes away (a USB serial adapter unplugged, the
    /// board's USB reset, the TCP server closed or restarted), wait for it to come back and read
    /// on, as one run, until Ctrl-C. Without it, the run ends there.
    #[arg(long)]
    reconnect: bool,
    /// Read an RTT up-channel through a GDB server, no probe library needed: QEMU `-gdb tcp::PORT`,
    /// OpenOCD (:3333), J-Link GDB server (:2331), pyOCD (:3333), `probe-rs gdb` (:1337).
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["file"])]
    rtt_gdb: Option<String>,
    /// Read an RTT up-channel straight from a USB debug probe (probe-rs library; needs --chip).
    /// Only in builds with `--features probe-rs`.
    #[arg(long, conflicts_with_all = ["file", "serial", "tcp", "rtt_gdb"])]
    probe_rtt: bool,
    /// With --probe-rtt: the chip, as `probe-rs chip list` names it (e.g. nRF52840_xxAA).
    #[arg(long, value_name = "NAME")]
    chip: Option<String>,
    /// With --probe-rtt: which probe, `VID:PID[:SERIAL]` as `probe-rs list` prints it (default: the only one).
    #[arg(long, value_name = "VID:PID[:SERIAL]")]
    probe: Option<String>,
    /// With --rtt-gdb or --probe-rtt: the firmware's ELF; RTT's control block is at its
    /// `_SEGGER_RTT` symbol (else RAM is scanned).
    #[arg(long, value_name = "FILE")]
    elf: Option<PathBuf>,
    /// With --rtt-gdb or --probe-rtt: the RTT up-channel to read (microspan's convention: 1;
    /// defmt uses 0).
    #[arg(long, value_name = "N", default_value_t = 1)]
    rtt_channel: u32,
    /// With --rtt-gdb: bytes of RAM scanned for the RTT control block from 0x2000_0000 when no
    /// --elf is given [default: 65536].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    rtt_scan_size: Option<u32>,

    /// Upload over OTLP/HTTP protobuf (base URL, e.g. http://localhost:4318; /v1/traces is appended).
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
    /// Upload to a Jaeger Thrift collector (full URL, e.g. http://localhost:14268/api/traces).
    #[arg(long, value_name = "URL")]
    jaeger_thrift: Option<String>,
    /// Write a Jaeger UI JSON file (open it in the Jaeger UI: Search → JSON File).
    #[arg(long, value_name = "FILE")]
    jaeger_json: Option<PathBuf>,
    /// Write an OTLP JSON file (the Jaeger UI opens it too).
    #[arg(long, value_name = "FILE")]
    otlp_json: Option<PathBuf>,
    /// With --jaeger-json or --otlp-json: most spans a file keeps; they are held in memory until
    /// it is written at the end, and those beyond are dropped and counted [default: 1000000].
    #[arg(long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_file_spans: Option<usize>,
    /// Show each finished trace as a tree in the terminal (the default when no other output is given).
    #[arg(long)]
    tree: bool,
    /// Also save the raw input to FILE as it is read: a live capture kept, to decode again later
    /// (`--file FILE`) with other outputs, a corrected upload URL or a newer decoder.
    #[arg(long, value_name = "FILE")]
    save_capture: Option<PathBuf>,

    /// With an upload: where uploads that cannot be delivered yet are kept (bounded; replayed on
    /// the next run).
    /// One decoder at a time per directory. Default: $XDG_STATE_HOME/microspan/spool, else
    /// ~/.local/state/microspan/spool, else microspan-spool-<uid> in the temporary directory
    /// (created private, 0700).
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// With an upload: bound on the spool's size per uploader, in bytes; beyond it spans are
    /// dropped and counted.
    #[arg(long, value_name = "BYTES")]
    spool_max_bytes: Option<u64>,
    /// With an upload: how long to keep delivering at the end (or after Ctrl-C or SIGTERM)
    /// before leaving the rest in the spool for the next run (default 30). Another Ctrl-C ends
    /// this wait at once; one more exits without a summary (status 130).
    #[arg(long, value_name = "SECS")]
    upload_timeout: Option<f64>,
    /// With an upload: at most N spans in one upload request (default 512). A collector that
    /// answers 413 (too large) gets the request again in halves, so this only saves requests;
    /// the summary says when it would.
    #[arg(long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_spans_per_request: Option<usize>,
    /// With an upload: an extra header on every request, `Name: value` (repeatable). Command
    /// lines are visible to other users (`ps`): pass secrets with --header-env.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// With an upload: an extra header whose value is read from an environment variable,
    /// `Name=ENV_VAR` (repeatable), e.g. `--header-env Authorization=OTLP_AUTH` with
    /// OTLP_AUTH='Bearer …'. Header values are never printed.
    #[arg(long = "header-env", value_name = "NAME=ENV_VAR")]
    header_env: Vec<String>,
    /// With an upload: trust this CA (a PEM file) for https:// uploads instead of the bundled
    /// Mozilla roots, for a self-hosted collector with a private CA.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Most spans open at once before the oldest is exported as incomplete.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_open_spans,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_open_spans: usize,
    /// Anchor device time at this time instead of now (reproducible output, or a capture
    /// replayed later): Unix nanoseconds, or an RFC 3339 time such as 2026-12-07T09:30:00Z; at
    /// most the year 2100, so that device times added to it stay exact.
    #[arg(long, visible_alias = "anchor-time", value_name = "NANOS|TIME",
          value_parser = parse_anchor)]
    anchor_unix_nanos: Option<u64>,
    /// The device's host name, recorded as the `hostname` process tag Jaeger shows (default:
    /// none; the machine that decoded the stream is the `microspan.decoder_host` tag).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// The name recorded as the `microspan.decoder_host` process tag (default: this machine's);
    /// an empty name leaves the tag out.
    #[arg(long, value_name = "NAME")]
    decoder_host: Option<String>,
    /// No live status line.
    #[arg(long)]
    no_progress: bool,
    /// Quiet when all is well: no progress line, summary, notes or problem lines. A run that
    /// fails (exit status 1 or 2) still says why: its errors, the problems with the input, what
    /// --strict failed on, the uploads that did not deliver.
    #[arg(long, short)]
    quiet: bool,
    /// Exit non-zero when no span was decoded, or when anything was lost or is known wrong
    /// (frames, device drops, CRC errors, discarded or cut bytes, frames before the session
    /// record, orphan records, incomplete spans, names the device cut to fit its frame, records
    /// dated ahead of the device's clock).
    #[arg(long)]
    strict: bool,
}

/// What the RTT options apply to: the ids of those inputs, and how to name them.
const RTT_INPUTS: (&[&str], &str) = (
    &["rtt_gdb", "probe_rtt"],
    "RTT input (--rtt-gdb or --probe-rtt)",
);
/// What `--max-file-spans` applies to: the file outputs.
const FILES: (&[&str], &str) = (
    &["jaeger_json", "otlp_json"],
    "file outputs (--jaeger-json or --otlp-json)",
);
/// What the upload settings apply to: the uploaders.
const UPLOADS: (&[&str], &str) = (
    &["otlp", "jaeger_thrift"],
    "uploads (--otlp or --jaeger-thrift)",
);

/// Options of `decode` that apply only beside others: the option's id, and the ids of those it
/// applies to (one of them must be given) with how to name them to the user.
const ONLY_WITH: &[(&str, (&[&str], &str))] = &[
    ("baud", (&["serial"], "--serial")),
    ("reconnect", (&["serial", "tcp"], "--serial or --tcp")),
    ("chip", (&["probe_rtt"], "--probe-rtt")),
    ("probe", (&["probe_rtt"], "--probe-rtt")),
    ("elf", RTT_INPUTS),
    ("rtt_channel", RTT_INPUTS),
    ("rtt_scan_size", (&["rtt_gdb"], "--rtt-gdb")),
    ("max_file_spans", FILES),
    ("spool_dir", UPLOADS),
    ("spool_max_bytes", UPLOADS),
    ("upload_timeout", UPLOADS),
    ("max_spans_per_request", UPLOADS),
    ("headers", UPLOADS),
    ("header_env", UPLOADS),
    ("ca_cert", UPLOADS),
];

/// The first option given on the command line of `decode` (`matches`) without one of those it
/// applies to ([`ONLY_WITH`]), as `--baud only applies to --serial`. Given alone, it would be
/// ignored without a word.
fn inapplicable_option(decode: &clap::Command, matches: &ArgMatches) -> Option<String> {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let (id, (_, applies_to)) = ONLY_WITH
        .iter()
        .find(|(id, (with, _))| given(id) && !with.iter().any(|w| given(w)))?;
    let long = decode
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long())
        .unwrap_or(id);
    Some(format!("--{long} only applies to {applies_to}"))
}

/// The command line, parsed and checked: a mistake exits with clap's usage error (status 2).
fn parse_command_line() -> Cli {
    let mut command = Cli::command();
    let matches = command.clone().get_matches();
    if let Some(("decode", sub)) = matches.subcommand() {
        command.build();
        let decode = command
            .find_subcommand_mut("decode")
            .expect("`decode` is a subcommand");
        if let Some(msg) = inapplicable_option(decode, sub) {
            decode
                .error(clap::error::ErrorKind::ArgumentConflict, msg)
                .exit();
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_command_line();
    match cli.command {
        Command::Decode(args) => match decode(*args) {
            Ok(code) => code,
            Err(msg) => {
                say!("microspan: {msg}");
                ExitCode::from(2)
            }
        },
        Command::Postmortem(args) => match microspan_decoder::postmortem::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                say!("microspan postmortem: {msg}");
                ExitCode::from(2)
            }
        },
    }
}

/// `--anchor-unix-nanos`: Unix nanoseconds, or an RFC 3339 time.
fn parse_anchor(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let nanos = match text.parse::<u128>() {
        Ok(n) => i128::try_from(n).unwrap_or(i128::MAX),
        Err(_) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!("neither Unix nanoseconds nor an RFC 3339 time such as 2026-12-07T09:30:00Z ({e})")
            })?
            .unix_timestamp_nanos(),
    };
    u64::try_from(nanos)
        .ok()
        .filter(|&n| n <= LATEST_ANCHOR_UNIX_NANOS)
        .ok_or_else(|| {
            format!("outside 1970-01-01T00:00:00Z ..= 2100-01-01T00:00:00Z (0 ..= {LATEST_ANCHOR_UNIX_NANOS})")
        })
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// How often `--reconnect` tries to open the input again, at first.
const REOPEN_EVERY: Duration = Duration::from_millis(250);
/// The longest wait between tries, reached by doubling when inputs that open give no byte
/// before they go away again (a TCP server that accepts and closes, a port that reads EIO).
const REOPEN_AT_MOST: Duration = Duration::from_secs(4);

/// `--reconnect`: the input went away (`why`); waits `delay`, tries to open it, and again until
/// it opens (`Some`) or Ctrl-C (`None`). `quiet`: this outage repeats the last one (the input
/// came back and went away without a byte), so it is not announced again.
fn wait_to_reopen(
    args: &DecodeArgs,
    why: &str,
    delay: Duration,
    quiet: bool,
    signals: &Signals,
    bar: &ProgressBar,
) -> Option<Source> {
    let waiting = format!("{why}: waiting for the input to come back (Ctrl-C ends the run)");
    if !args.quiet && !quiet {
        bar.suspend(|| say!("microspan: {waiting}"));
    }
    bar.set_message(waiting);
    let mut last_error = String::new();
    loop {
        // A pause before every try, the first included: an input that opens and closes at once
        // would otherwise be reopened in a busy loop.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if signals.received() > 0 {
                if !args.quiet && !last_error.is_empty() {
                    bar.suspend(|| {
                        say!("microspan: gave up waiting; the input last said: {last_error}")
                    });
                }
                return None;
            }
            bar.tick();
            std::thread::sleep(Duration::from_millis(50));
        }
        match open_source(args) {
            Ok(source) => {
                if !args.quiet && !quiet {
                    bar.suspend(|| say!("microspan: {} is back; reading on", source.describe()));
                }
                return Some(source);
            }
            Err(e) => last_error = e,
        }
    }
}

fn open_source(args: &DecodeArgs) -> Result<Source, String> {
    let source = if let Some(path) = &args.file {
        Source::file(&path.to_string_lossy())
    } else if let Some(dev) = &args.serial {
        Source::serial(dev, args.baud.unwrap_or(DEFAULT_BAUD))
    } else if let Some(addr) = &args.tcp {
        Source::tcp(addr)
    } else if let Some(addr) = &args.rtt_gdb {
        let mut cfg = RttConfig::new(addr.clone());
        cfg.elf = args.elf.clone();
        cfg.channel = args.rtt_channel;
        cfg.scan_size = args.rtt_scan_size.unwrap_or(DEFAULT_RTT_SCAN_SIZE);
        let reader = RttGdbReader::connect(cfg).map_err(|e| e.to_string())?;
        let describe = reader.describe();
        Ok(Source::reader(Box::new(reader), describe))
    } else if args.probe_rtt {
        Ok(open_probe_rtt(args)?)
    } else if args.stdin.as_deref() == Some("-") {
        Ok(Source::stdin())
    } else if let Some(other) = &args.stdin {
        return Err(format!("unexpected argument {other:?}: use --file {other} to read a file, or - for standard input"));
    } else {
        return Err("no input: give --file PATH, - (stdin), --serial DEV [--baud N], --tcp HOST:PORT, --rtt-gdb HOST:PORT [--elf FILE] or --probe-rtt --chip NAME".into());
    };
    source.map_err(|e| e.to_string())
}

/// `--probe-rtt`: a USB probe through probe-rs.
#[cfg(feature = "probe-rs")]
fn open_probe_rtt(args: &DecodeArgs) -> Result<Source, String> {
    use microspan_decoder::rtt_probe::{Config, RttProbeReader};
    let chip = args.chip.clone().ok_or(
        "--probe-rtt needs --chip NAME (the target chip as probe-rs names it: see `probe-rs chip list`)",
    )?;
    let mut cfg = Config::new(chip);
    cfg.probe = args.probe.clone();
    cfg.elf = args.elf.clone();
    cfg.channel = args.rtt_channel;
    let reader = RttProbeReader::connect(cfg).map_err(|e| e.to_string())?;
    let describe = reader.describe();
    Ok(Source::reader(Box::new(reader), describe))
}

/// `--probe-rtt` in a build without the probe-rs library.
#[cfg(not(feature = "probe-rs"))]
fn open_probe_rtt(_args: &DecodeArgs) -> Result<Source, String> {
    Err("--probe-rtt needs the probe-rs library, which this build of microspan leaves out: rebuild with `cargo install --path host-decoder --features probe-rs`, or keep this build and run `probe-rs gdb --chip NAME` and use --rtt-gdb 127.0.0.1:1337".into())
}

/// What a path names, to tell whether two options name the same file.
#[derive(Debug, PartialEq, Eq)]
enum FileId {
    /// An existing regular file, by device and inode: a hard link or a symbolic link to it, or
    /// another spelling of its path, is the same file.
    #[cfg(unix)]
    Inode(u64, u64),
    /// An existing regular file, by its canonical path (where there are no inodes).
    #[cfg(not(unix))]
    Canonical(PathBuf),
    /// A file not there yet, by its directory's canonical path and its name.
    New(PathBuf),
}

impl FileId {
    /// `None` for what is not a regular file (a device or a pipe is written in place, and two
    /// outputs, or an input and an output, may share one) and for a path whose directory cannot
    /// be resolved (the output check says why).
    fn of(path: &Path) -> Option<Self> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Self::existing(path, &m),
            Ok(_) => None,
            Err(_) => {
                let name = path.file_name()?;
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                Some(Self::New(dir.canonicalize().ok()?.join(name)))
            }
        }
    }

    #[cfg(unix)]
    fn existing(_path: &Path, m: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(Self::Inode(m.dev(), m.ino()))
    }

    #[cfg(not(unix))]
    fn existing(path: &Path, _m: &std::fs::Metadata) -> Option<Self> {
        path.canonicalize().ok().map(Self::Canonical)
    }

    /// Standard input, when it is a regular file (`microspan decode - < capture.bin`).
    #[cfg(unix)]
    fn stdin() -> Option<Self> {
        use std::os::fd::AsFd;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let m = std::fs::File::from(fd).metadata().ok()?;
        m.is_file().then(|| Self::existing(Path::new("-"), &m))?
    }

    #[cfg(not(unix))]
    fn stdin() -> Option<Self> {
        None
    }
}

/// Refuses, before anything is read or written, two outputs that are one file (the second
/// would replace the first, and both would be reported written) and an output that is a file
/// this run reads (the capture, the ELF, the CA certificate: it would be replaced).
fn check_paths_distinct(args: &DecodeArgs) -> Result<(), String> {
    let outputs: Vec<(&str, &Path)> = [
        ("--jaeger-json", args.jaeger_json.as_deref()),
        ("--otlp-json", args.otlp_json.as_deref()),
        ("--save-capture", args.save_capture.as_deref()),
    ]
    .into_iter()
    .filter_map(|(option, path)| Some((option, path?)))
    .collect();
    let mut inputs: Vec<(String, Option<FileId>)> = [
        ("--file", args.file.as_deref()),
        ("--elf", args.elf.as_deref()),
        ("--ca-cert", args.ca_cert.as_deref()),
    ]
    .into_iter()
    .filter_map(|(option, path)| {
        let path = path?;
        Some((format!("{option} {}", path.display()), FileId::of(path)))
    })
    .collect();
    if args.stdin.as_deref() == Some("-") {
        inputs.push(("standard input".into(), FileId::stdin()));
    }
    for (i, (option, path)) in outputs.iter().enumerate() {
        let Some(id) = FileId::of(path) else {
            continue;
        };
        for (input, input_id) in &inputs {
            if input_id.as_ref() == Some(&id) {
                return Err(format!(
                    "{option} {} names the same file as {input}, which this run reads: the output \
                     would replace it; give {option} another file",
                    path.display()
                ));
            }
        }
        for (other, other_path) in &outputs[..i] {
            if FileId::of(other_path).as_ref() == Some(&id) {
                return Err(format!(
                    "{other} {} and {option} {} are the same file: the second document would \
                     replace the first; give each output its own file",
                    other_path.display(),
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// The upload settings of the command line. Errors name a header, never its value.
fn upload_config(args: &DecodeArgs) -> Result<UploadConfig, String> {
    let mut upload = UploadConfig::default();
    if let Some(dir) = &args.spool_dir {
        upload.spool_dir = Some(dir.clone());
    }
    if let Some(bytes) = args.spool_max_bytes {
        upload.spool_max_bytes = bytes;
    }
    if let Some(n) = args.max_spans_per_request {
        upload.max_spans_per_request = n;
    }
    if let Some(secs) = args.upload_timeout {
        upload.finish_timeout = Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("--upload-timeout {secs}: give a number of seconds ≥ 0"))?;
    }
    for spec in &args.headers {
        upload
            .headers
            .push(Header::parse(spec).map_err(|e| format!("--header: {e}"))?);
    }
    for spec in &args.header_env {
        let Some((name, var)) = spec.split_once('=') else {
            return Err(format!(
                "--header-env {spec:?}: expected `Name=ENV_VAR`, e.g. Authorization=OTLP_AUTH"
            ));
        };
        let value = std::env::var(var.trim()).map_err(|_| {
            format!(
                "--header-env {}: the environment variable {} is not set (or not UTF-8); export it first, e.g. export {}='Bearer …'",
                name.trim(),
                var.trim(),
                var.trim()
            )
        })?;
        upload
            .headers
            .push(Header::new(name, &value).map_err(|e| format!("--header-env: {e}"))?);
    }
    upload.ca_cert = args.ca_cert.clone();
    Ok(upload)
}

fn exporters(args: &DecodeArgs) -> Result<Vec<Box<dyn Exporter>>, String> {
    let upload = upload_config(args)?;
    let max_file_spans = args.max_file_spans.unwrap_or(DEFAULT_MAX_FILE_SPANS);
    let mut out: Vec<Box<dyn Exporter>> = Vec::new();
    if let Some(url) = &args.otlp {
        out.push(Box::new(
            OtlpHttp::new(url, upload.clone()).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(url) = &args.jaeger_thrift {
        out.push(Box::new(
            JaegerThriftHttp::new(url, upload.clone()).map_err(|e| e.to_string())?,
        ));
    }
    // Checked before any input is read: a capture must not be lost to a typo found at the end.
    if let Some(path) = &args.jaeger_json {
        check_output_path(path).map_err(|e| format!("--jaeger-json: {e}"))?;
        out.push(Box::new(JaegerJsonFile::with_limit(path, max_file_spans)));
    }
    if let Some(path) = &args.otlp_json {
        check_output_path(path).map_err(|e| format!("--otlp-json: {e}"))?;
        out.push(Box::new(OtlpJsonFile::with_limit(path, max_file_spans)));
    }
    if args.tree || out.is_empty() {
        out.push(Box::new(TreeWriter::stdout()));
    }
    Ok(out)
}

/// Hands `batches` to every exporter. An exporter writing to a pipe its reader closed (the tree
/// into `| head`) is dropped without an error, as command-line tools do; the others go on.
fn export_all(
    exporters: &mut Vec<Box<dyn Exporter>>,
    batches: &mut Vec<Batch>,
    errors: &mut Vec<String>,
) {
    for batch in batches.drain(..) {
        exporters.retain_mut(|ex| match ex.export(&batch) {
            Ok(()) => true,
            Err(ExportError::OutputClosed) => false,
            Err(e) => {
                errors.push(format!("{}: {e}", ex.name()));
                true
            }
        });
    }
}

fn status_line(s: &StreamStats, elapsed: Duration, last_error: Option<&str>) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut line = format!(
        "spans {} ({:.0}/s) | {:.1} KiB/s | open {} | device drops {} | lost frames {} | CRC errors {}",
        s.spans.spans,
        s.spans.spans as f64 / secs,
        s.bytes as f64 / 1024.0 / secs,
        s.spans.open_spans,
        s.spans.device_drops,
        s.spans.lost_frames,
        s.crc_errors,
    );
    if let Some(e) = last_error {
        line.push_str(" | last error: ");
        line.push_str(&printable(e));
    }
    line
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP. The first stops reading: the outputs are written and the
/// uploads delivered or spooled as at the end of the input, then the summary and the usual exit
/// status. The next one stops waiting for the uploads ([`wait_for_uploads`]). One more exits at
/// once, with status 130.
#[derive(Default)]
struct Signals {
    received: std::sync::atomic::AtomicUsize,
    /// The wait for the uploads was stopped: the next signal exits at once.
    stopped_waiting: AtomicBool,
}

impl Signals {
    fn install() -> Arc<Self> {
        use std::io::Write;
        let signals = Arc::new(Self::default());
        let handler = signals.clone();
        // Fails only when a handler is set already, and none is.
        let _ = ctrlc::set_handler(move || {
            let n = handler.received.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 3 || handler.stopped_waiting.load(Ordering::SeqCst) {
                // Not `eprintln!`, which panics when stderr is gone (SIGHUP: the terminal closed).
                let _ = writeln!(
                    std::io::stderr(),
                    "microspan: stopped at once: what was not delivered or spooled yet is lost"
                );
                std::process::exit(130);
            }
        });
        signals
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

/// How long the end of a run waits for the uploads before saying what it waits for.
const WAIT_NOTICE_AFTER: Duration = Duration::from_secs(1);

/// The end of a run: every uploader delivers what it still holds, all at once, for up to
/// --upload-timeout. A wait that lasts says on stderr what it waits for, for how long at most, and
/// how to stop it; the next signal stops it (what is pending stays in the spool, or is lost
/// without one, and the summary counts it).
fn wait_for_uploads(exporters: &mut [Box<dyn Exporter>], signals: &Signals, bar: &ProgressBar) {
    use microspan_decoder::export::Pending;
    use std::io::Write;
    for ex in exporters.iter_mut() {
        ex.begin_finish();
    }
    // After a signal that stopped the reading, the next one; else the first.
    let stop_at = signals.received().min(1) + 1;
    let key = if stop_at > 1 {
        "Ctrl-C again"
    } else {
        "Ctrl-C"
    };
    let started = Instant::now();
    let mut told = false;
    loop {
        let pending: Vec<Pending> = exporters.iter().filter_map(|ex| ex.pending()).collect();
        if pending.is_empty() {
            return;
        }
        if signals.received() >= stop_at {
            signals.stopped_waiting.store(true, Ordering::SeqCst);
            for ex in exporters.iter_mut() {
                ex.stop_waiting();
            }
            bar.suspend(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "microspan: stopped waiting for the uploads"
                );
            });
            return;
        }
        if !told && started.elapsed() >= WAIT_NOTICE_AFTER {
            told = true;
            let mut fates: Vec<String> = pending.iter().map(Pending::fate).collect();
            fates.dedup();
            // Not `eprintln!`: a closed terminal (SIGHUP) must not stop the outputs' flush.
            bar.suspend(|| {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "microspan: waiting for the uploads to finish:");
                for p in &pending {
                    let _ = writeln!(err, "  {}", printable(&p.to_string()));
                }
                let _ = writeln!(
                    err,
                    "microspan: press {key} to stop waiting: what is not delivered is {}",
                    fates.join(", and ")
                );
            });
        }
        let spans: u64 = pending.iter().map(|p| p.spans).sum();
        bar.set_message(format!(
            "waiting for the uploads: {} pending ({key} stops waiting)",
            count(spans, "span", "spans")
        ));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn decode(args: DecodeArgs) -> Result<ExitCode, String> {
    check_paths_distinct(&args)?;
    let mut source = open_source(&args)?;
    let mut exporters = exporters(&args)?;
    // Spans an older version spooled in its default spool are not replayed from the new one: say
    // so once, with the option that replays them (they are neither read nor moved).
    let uploads = args.otlp.is_some() || args.jaeger_thrift.is_some();
    if uploads && args.spool_dir.is_none() && !args.quiet {
        let ours: Vec<(&str, &str)> = exporters
            .iter()
            .filter_map(|e| Some((e.name(), e.spool_subdir()?)))
            .collect();
        if let Some(note) = legacy_spool_note(&legacy_spool_dir(), &ours) {
            say!("microspan: note: {note}");
        }
    }
    let opts = Options {
        limits: Limits {
            max_open_spans: args.max_open_spans,
            ..Limits::default()
        },
        fixed_anchor_unix_nanos: args.anchor_unix_nanos,
        host_name: args.hostname.clone(),
        decoder_host: match &args.decoder_host {
            Some(name) => Some(name.clone()).filter(|n| !n.is_empty()),
            None => host_name(),
        },
        host_clock: None,
    };
    let mut decoder = StreamDecoder::new(opts);
    let mut capture = match &args.save_capture {
        Some(path) => Some(CaptureFile::create(path).map_err(|e| format!("--save-capture: {e}"))?),
        None => None,
    };

    let signals = Signals::install();

    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
    if args.no_progress || args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("reading {}", source.describe()));

    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut batches: Vec<Batch> = Vec::new();
    let mut export_errors = Vec::new();
    let mut fatal = None;
    let mut outputs_closed = false;
    // `--reconnect`: the bytes read when the input last came back, and the wait before each try.
    let mut bytes_at_reopen = None;
    let mut reopen_delay = REOPEN_EVERY;
    loop {
        if signals.received() > 0 {
            break;
        }
        let read = source.read_chunk(&mut buf);
        if args.reconnect && matches!(read, Ok(Some(0)) | Err(_)) {
            let why = match &read {
                Err(e) => e.to_string(),
                _ => format!("{} closed the connection", source.describe()),
            };
            if let Some(c) = capture.as_mut() {
                c.flush();
            }
            // Closed while waiting: a USB serial adapter still held open when unplugged comes
            // back under another name (ttyACM0 as ttyACM1).
            source.close();
            // An input that came back and went away again without a byte: wait longer, and
            // quietly.
            let silent = bytes_at_reopen == Some(decoder.stats().bytes);
            reopen_delay = if silent {
                (reopen_delay * 2).min(REOPEN_AT_MOST)
            } else {
                REOPEN_EVERY
            };
            match wait_to_reopen(&args, &why, reopen_delay, silent, &signals, &bar) {
                Some(again) => {
                    // Only now is it a cut: an input that never came back ended there.
                    decoder.input_cut(&mut batches);
                    // The capture says so too (a delimiter, an empty frame to a decoder), so
                    // that it decodes as the run did.
                    if let Some(c) = capture.as_mut() {
                        c.write(&[0]);
                    }
                    bytes_at_reopen = Some(decoder.stats().bytes);
                    source = again;
                    continue;
                }
                None => break,
            }
        }
        match read {
            Ok(Some(0)) => break,
            Ok(Some(n)) => {
                if let Some(c) = capture.as_mut() {
                    c.write(&buf[..n]);
                }
                if let Err(e) = decoder.feed(&buf[..n], &mut batches) {
                    fatal = Some(e.to_string());
                    break;
                }
            }
            Ok(None) => {
                // A quiet input: what was read so far goes to disk.
                if let Some(c) = capture.as_mut() {
                    c.flush();
                }
            }
            Err(e) => {
                fatal = Some(if args.serial.is_some() || args.tcp.is_some() {
                    format!("{e} (`--reconnect` waits for the input to come back)")
                } else {
                    e.to_string()
                });
                break;
            }
        }
        export_all(&mut exporters, &mut batches, &mut export_errors);
        if exporters.is_empty() {
            // Every output was a terminal pipe that closed (`| head`): nothing left to do.
            outputs_closed = true;
            break;
        }
        if last_status.elapsed() >= Duration::from_millis(200) {
            bar.set_message(status_line(
                &decoder.stats(),
                started.elapsed(),
                decoder.last_error(),
            ));
            bar.tick();
            last_status = Instant::now();
        }
    }
    // Saved before the uploads are waited for: a second Ctrl-C then still leaves the capture.
    let saved = capture.map(|c| (c.path().to_path_buf(), c.finish()));
    if let Some((_, Err(e))) = &saved {
        export_errors.push(e.clone());
    }
    decoder.finish(&mut batches);
    export_all(&mut exporters, &mut batches, &mut export_errors);
    wait_for_uploads(&mut exporters, &signals, &bar);
    bar.finish_and_clear();
    // Nothing could be read from input that had bytes: an error, whatever the other flags.
    let unreadable = decoder.service().is_none() && decoder.stats().bytes > 0 && !outputs_closed;
    // A run that decoded no span (an empty capture, noise, a failure) leaves existing files as
    // they were: an empty document over a trace the user kept helps nobody.
    let mut left_alone = Vec::new();
    if decoder.stats().spans.spans == 0 {
        exporters.retain(|ex| match ex.output_file() {
            Some(path) => {
                left_alone.push(path.display().to_string());
                false
            }
            None => true,
        });
    }
    let mut delivered_all = export_errors.is_empty();
    // Each exporter's summary line, and whether it delivered everything.
    let mut summaries = Vec::new();
    let mut collector_notes = Vec::new();
    // Spans of this run's input refused for good or dropped by an output (not those in the spool,
    // which the next run sends).
    let mut unsent = 0;
    for ex in exporters.iter_mut() {
        match ex.finish() {
            Ok(summary) => {
                unsent +=
                    summary.rejected.saturating_sub(summary.replayed_rejected) + summary.dropped;
                delivered_all &= summary.is_complete();
                summaries.push((summary.to_string(), summary.is_complete()));
                export_errors.extend(summary.distinct_errors(5));
                // Not failures, but the receiver said them (an OTLP partial success's message).
                collector_notes.extend(summary.notes.iter().cloned());
            }
            // The terminal pipe's reader left (`| head`): not a failure (see `export_all`).
            Err(ExportError::OutputClosed) => {}
            Err(e) => {
                delivered_all = false;
                export_errors.push(format!("{}: {e}", ex.name()));
            }
        }
    }
    let stats = decoder.stats();
    // A run that decoded nothing fails too: an empty capture is a drain that never ran, a
    // UART never enabled or a capture of the wrong port, not a clean trace.
    let strict_failed =
        args.strict && !outputs_closed && (stats.anything_wrong() || stats.spans.spans == 0);
    let status: u8 = if fatal.is_some() {
        2
    } else if !delivered_all || unreadable || strict_failed {
        1
    } else {
        0
    };
    // --quiet keeps quiet about a run that succeeds; one that fails says why all the same.
    let explain = !args.quiet || status != 0;
    if !args.quiet {
        say!("{}", status_line(&stats, started.elapsed(), None));
        let s = &stats.spans;
        say!(
            "frames {} | bytes {} | skipped before session {} | bad frames {} | duplicate frames {} | late frames {} | restarted frames {} | discarded bytes {} | unfinished bytes {} | record errors {} | orphan records {} | incomplete spans {} | resets {} | misdated {} | drain restarts {}",
            s.frames, stats.bytes, s.frames_before_session, stats.bad_frames, stats.duplicate_frames, s.late_frames, stats.restarted_frames, stats.discarded_bytes, stats.unfinished_bytes, s.record_errors, s.orphan_records, s.incomplete_spans, s.resets, s.misdated, s.drain_restarts
        );
        if stats.input_cuts > 0 {
            say!("input cuts {} (--reconnect)", stats.input_cuts);
        }
    }
    // Set by a bad frame or a malformed record only.
    if let Some(e) = decoder.last_error().filter(|_| explain) {
        say!("last bad input: {e}");
    }
    for (line, complete) in &summaries {
        // Quiet, only the uploads that did not deliver everything: they are why the run failed.
        if !args.quiet || !complete {
            say!("{line}");
        }
    }
    if !args.quiet {
        for note in decoder.notes().iter().chain(&collector_notes) {
            say!("microspan: note: {note}");
        }
    }
    // Stopped by a closed output: what was not read is not a problem of the input. An input
    // that failed before its first byte has its own error (below), not "the input was empty".
    let failed_before_reading = fatal.is_some() && stats.bytes == 0;
    if explain && !outputs_closed && !failed_before_reading {
        for p in stats.problems() {
            say!("microspan: {p}");
        }
    }
    if strict_failed {
        say!("microspan: failed (--strict): {}", strict_failures(&stats));
    }
    match &saved {
        Some((path, Ok(bytes))) if explain => {
            let anchor = decoder
                .replay_anchor()
                .map(|nanos| format!(" --anchor-unix-nanos {nanos}"))
                .unwrap_or_default();
            let again = if unsent > 0 {
                format!(
                    "; it holds the {} not delivered",
                    count(unsent, "span", "spans")
                )
            } else {
                String::new()
            };
            say!(
                "microspan: saved the raw input to {} ({}{again}); decode it again with: microspan decode --file {}{anchor}",
                path.display(),
                count(*bytes, "byte", "bytes"),
                path.display(),
            );
        }
        // A failed save is among the export errors (below).
        Some(_) => {}
        // Spans an upload did not deliver from a live input exist nowhere else.
        None if unsent > 0 && args.file.is_none() && explain => {
            say!(
                "microspan: note: the {} not delivered exist{} nowhere else: --save-capture FILE saves a live input as it is read, to decode it again once the output works",
                count(unsent, "span", "spans"),
                if unsent == 1 { "s" } else { "" }
            );
        }
        None => {}
    }
    for path in &left_alone {
        say!("microspan: {path} was not written: nothing was decoded (an existing file is left as it was)");
    }
    for e in &export_errors {
        say!("microspan: export error: {e}");
    }
    if let Some(f) = fatal {
        say!("microspan: {f}");
    }
    Ok(ExitCode::from(status))
}

/// What `--strict` fails on (no span decoded, or [`StreamStats::anything_wrong`]), counted:
/// `15 device drops, 1 incomplete span`.
fn strict_failures(stats: &StreamStats) -> String {
    let none = (stats.spans.spans == 0).then(|| "no span was decoded".to_string());
    let said: Vec<String> = none
        .into_iter()
        .chain(
            stats
                .troubles()
                .iter()
                .filter(|t| t.count > 0)
                .map(|t| count(t.count, t.one, t.many)),
        )
        .collect();
    said.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option of [`ONLY_WITH`], and every option it applies to, is an option of `decode`
    /// (a renamed one would never be checked).
    #[test]
    fn only_with_names_options_of_decode() {
        let mut command = Cli::command();
        command.build();
        let decode = command.find_subcommand("decode").unwrap();
        for (id, (with, _)) in ONLY_WITH {
            for id in std::iter::once(id).chain(with.iter()) {
                assert!(
                    decode.get_arguments().any(|a| a.get_id() == id),
                    "{id} is not an option of decode"
                );
            }
        }
    }

    /// Each counter `--strict` fails on is named when it fails on it.
    #[test]
    fn strict_failures_name_each_counter() {
        type Set = fn(&mut StreamStats);
        let counters: [Set; 12] = [
            |s| s.crc_errors = 1,
            |s| s.bad_frames = 1,
            |s| s.discarded_bytes = 1,
            |s| s.unfinished_bytes = 1,
            |s| s.spans.lost_frames = 1,
            |s| s.spans.frames_before_session = 1,
            |s| s.spans.device_drops = 1,
            |s| s.spans.incomplete_spans = 1,
            |s| s.spans.record_errors = 1,
            |s| s.spans.orphan_records = 1,
            |s| s.spans.names_cut = 1,
            |s| s.spans.misdated = 1,
        ];
        for set in counters {
            let mut stats = StreamStats::default();
            set(&mut stats);
            assert!(stats.anything_wrong(), "{stats:?}");
            stats.spans.spans = 1;
            let said = strict_failures(&stats);
            assert!(said.starts_with("1 ") && !said.contains(','), "{said}");
        }
    }
}
