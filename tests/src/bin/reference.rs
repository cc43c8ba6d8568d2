//! The main job: build the reference firmware, run it under QEMU, decode its UART stream live,
//! show the trace tree, write Jaeger UI and OTLP JSON files, and upload when asked.
//!
//! ```text
//! cargo run -p microspan-tests --bin reference -- [--board lm3s6965|microbit]
//!     [--otlp http://localhost:4318] [--jaeger-thrift http://localhost:14268/api/traces] [--out out]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use microspan_decoder::assemble::Options;
use microspan_decoder::export::{
    ExportSummary, Exporter, JaegerJsonFile, JaegerThriftHttp, OtlpHttp, OtlpJsonFile, TreeWriter,
    UploadConfig,
};
use microspan_decoder::model::Batch;
use microspan_decoder::plural::count;
use microspan_decoder::stream::StreamDecoder;
use microspan_tests::qemu::{self, Board, RunOptions};
use microspan_tests::reference::{self, Decoded, Variant};

/// Run microspan's reference trace on an emulated microcontroller and show it.
#[derive(Parser)]
#[command(name = "reference", about)]
struct Args {
    /// The emulated board: lm3s6965 (Cortex-M3) or microbit (Cortex-M0).
    #[arg(long, value_enum, default_value_t = BoardArg::Lm3s6965)]
    board: BoardArg,
    /// Upload over OTLP/HTTP (base URL, e.g. http://localhost:4318).
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
    /// Upload to a Jaeger Thrift collector (full URL, e.g. http://localhost:14268/api/traces).
    #[arg(long, value_name = "URL")]
    jaeger_thrift: Option<String>,
    /// Where reference.jaeger.json, reference.otlp.json and reference.uart.bin go.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum BoardArg {
    Lm3s6965,
    Microbit,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("reference: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let board = match args.board {
        BoardArg::Lm3s6965 => Board::Lm3s6965,
        BoardArg::Microbit => Board::Microbit,
    };
    let started = Instant::now();
    let version = qemu::check_qemu().map_err(|e| e.to_string())?;
    eprintln!(
        "reference: building the {board} firmware (the first build compiles it and its \
         dependencies for {}: a few minutes on a fresh machine; later builds are quick) …",
        board.target()
    );
    let elf = reference::build(board, Variant::Uart).map_err(|e| {
        format!(
            "{e}\n(needs the target: `rustup target add {}`)",
            board.target()
        )
    })?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let jaeger_path = args.out.join("reference.jaeger.json");
    let otlp_path = args.out.join("reference.otlp.json");
    // The UART bytes as they came, for `microspan decode --file` (a capture to try the CLI on).
    let capture_path = args.out.join("reference.uart.bin");
    let mut capture = Vec::new();
    let mut exporters: Vec<Box<dyn Exporter>> = vec![
        Box::new(TreeWriter::stdout()),
        Box::new(JaegerJsonFile::new(&jaeger_path)),
        Box::new(OtlpJsonFile::new(&otlp_path)),
    ];
    // Everything from here on uploads; the end says what each of them delivered.
    let first_uploader = exporters.len();
    if let Some(url) = &args.otlp {
        exporters.push(Box::new(
            OtlpHttp::new(url, UploadConfig::default()).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(url) = &args.jaeger_thrift {
        exporters.push(Box::new(
            JaegerThriftHttp::new(url, UploadConfig::default()).map_err(|e| e.to_string())?,
        ));
    }

    // Live: each UART chunk goes to the decoder as QEMU sends it; finished traces are exported at once.
    // Times are anchored at the host's clock (so uploads land in Jaeger's recent search window).
    let decoder_host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    let mut decoder = StreamDecoder::new(Options {
        decoder_host,
        ..Options::default()
    });
    let mut all: Vec<Batch> = Vec::new();
    let mut export_errors = Vec::new();
    let mut fatal = None;
    eprintln!("reference: running it under {version}");
    let out = qemu::run_firmware_streaming(board, &elf, &RunOptions::default(), |chunk| {
        if fatal.is_some() {
            return;
        }
        capture.extend_from_slice(chunk);
        let mut batches = Vec::new();
        if let Err(e) = decoder.feed(chunk, &mut batches) {
            fatal = Some(e.to_string());
        }
        export(&mut exporters, &batches, &mut export_errors);
        all.extend(batches);
    })
    .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    decoder.finish(&mut batches);
    export(&mut exporters, &batches, &mut export_errors);
    all.extend(batches);
    if let Some(f) = fatal {
        return Err(f);
    }
    if out.exit_code != Some(0) {
        return Err(format!(
            "the firmware {} (expected exit code 0)\n--- QEMU console ---\n{}",
            if out.timed_out {
                "timed out".into()
            } else {
                format!("exited with {:?}", out.exit_code)
            },
            out.console
        ));
    }

    if let Err(e) = std::fs::write(&capture_path, &capture) {
        export_errors.push(format!("cannot write {}: {e}", capture_path.display()));
    }
    let mut ok = export_errors.is_empty();
    // What each uploader delivered, for the last line, and whether spans wait in a spool.
    let mut uploads = Vec::new();
    let mut spooled = false;
    for (i, ex) in exporters.iter_mut().enumerate() {
        let uploader = i >= first_uploader;
        match ex.finish() {
            Ok(summary) => {
                ok &= summary.is_complete();
                if !summary.is_complete() || summary.requests > 0 {
                    eprintln!("reference: {summary}");
                }
                if uploader {
                    uploads.push(delivery(ex.name(), &summary));
                    spooled |= summary.spooled > 0;
                }
                // The causes (each with what to do, and where unsent spans were spooled), as
                // the `microspan` CLI prints them.
                export_errors.extend(summary.distinct_errors(5));
            }
            Err(e) => {
                ok = false;
                if uploader {
                    uploads.push(format!("could not upload to {}", ex.name()));
                }
                export_errors.push(format!("{}: {e}", ex.name()));
            }
        }
    }
    for e in &export_errors {
        eprintln!("reference: export error: {e}");
    }
    if spooled {
        eprintln!(
            "reference: the spooled spans are sent by the next run that uploads to the same URL \
             (this command or `microspan decode … --otlp/--jaeger-thrift URL`) once the collector \
             is reachable"
        );
    }

    let decoded = Decoded {
        batches: all,
        stats: decoder.stats(),
    };
    let report = reference::device_report(&out.console);
    let check = match &report {
        Some(r) => reference::check_reference_trace(&decoded, board, r),
        None => Err(vec![format!(
            "the firmware printed no report; console:\n{}",
            out.console
        )]),
    };
    if let Err(errors) = &check {
        ok = false;
        eprintln!(
            "reference: the trace is not the reference trace:\n- {}",
            errors.join("\n- ")
        );
    }
    let s = &decoded.stats;
    let bar_ms = decoded
        .span("Bar")
        .map(|b| b.duration_nanos as f64 / 1e6)
        .unwrap_or(0.0);
    println!(
        "{} {board} in {:.1} s: {} in {} (Bar {bar_ms:.2} ms), {} in {}, {}, {}; wrote {}, {} and the UART capture {}{}",
        if ok { "OK" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        count(s.spans.spans, "span", "spans"),
        count(
            decoded
                .batches
                .iter()
                .flat_map(|b| b.spans.iter().map(|s| s.trace_id))
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u64,
            "trace",
            "traces"
        ),
        count(s.bytes, "byte", "bytes"),
        count(s.spans.frames, "frame", "frames"),
        count(s.spans.device_drops, "device drop", "device drops"),
        count(s.crc_errors, "CRC error", "CRC errors"),
        jaeger_path.display(),
        otlp_path.display(),
        capture_path.display(),
        uploads.iter().map(|u| format!("; {u}")).collect::<String>(),
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What an uploader delivered, for the last line: how many of this run's spans arrived and where
/// the others are.
fn delivery(name: &str, s: &ExportSummary) -> String {
    let mut line = if s.replayed == 0 {
        format!(
            "{name}: {} of {} delivered",
            s.delivered,
            count(s.spans_in, "span", "spans")
        )
    } else {
        // `delivered` counts the replayed spans too.
        format!(
            "{name}: {} delivered ({} of them replayed from an earlier run's spool), {} in this run",
            count(s.delivered, "span", "spans"),
            s.replayed,
            s.spans_in
        )
    };
    if s.rejected > 0 {
        line += &format!(", {} rejected by the collector", s.rejected);
    }
    if s.dropped > 0 {
        line += &format!(", {} dropped", s.dropped);
    }
    if s.spooled > 0 {
        line += &format!(", {} waiting in the spool", s.spooled);
        if s.spooled_earlier > 0 {
            line += &format!(" ({} of them from earlier runs)", s.spooled_earlier);
        }
    }
    line
}

fn export(exporters: &mut [Box<dyn Exporter>], batches: &[Batch], errors: &mut Vec<String>) {
    for b in batches {
        for ex in exporters.iter_mut() {
            if let Err(e) = ex.export(b) {
                errors.push(format!("{}: {e}", ex.name()));
            }
        }
    }
}
