//! Joining a device's spans to a backend's trace, in both directions.
//!
//! `cargo run -p microspan-examples --bin propagation -- OUT [--traceparent V] [--baggage V]`
//! acts out one exchange between a valve controller and its backend, and writes the device's
//! spans to the file `OUT` as a wire stream (decode it with `microspan decode --file OUT`):
//!
//! 1. **backend → device**: a command arrives with the W3C headers `traceparent` and `baggage`
//!    (from the command line; the default is the W3C specification's example context). The device
//!    extracts the context, so its spans `handle-command` → `actuate` continue the backend's
//!    trace: the same trace id, `handle-command` a child of the backend's span, the backend's
//!    baggage on every device span.
//! 2. **device → backend**: the device reports its reading with an outgoing request, the span
//!    `upload-reading` (`span.kind=client`), and injects that span's context into the request as
//!    W3C (`traceparent`, `baggage`) and Jaeger (`uber-trace-id`, `uberctx-*`) headers. They are
//!    printed to standard output, one `name: value` per line: whatever the backend is instrumented
//!    with, it continues the trace under `upload-reading`.
//!
//! An incoming `traceparent` whose flags are `00` (not sampled) makes the device record nothing,
//! and pass the decision on: its outgoing `traceparent` keeps the trace id with flags `00`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "../host_id.rs"]
mod host_id;

use microspan::conventions::{self as tags, SPAN_KIND_CLIENT, SPAN_KIND_SERVER};
use microspan::propagation::{jaeger, w3c};
use microspan::{
    write_all_frames, Drain, ExtractError, Extracted, Ring, Session, StdClock, Tracer,
};

/// What the backend sends when the command line names no headers: the W3C Trace Context
/// specification's example (trace `4bf92f35…`, parent span `00f067aa0ba902b7`, sampled).
const DEFAULT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const DEFAULT_BAGGAGE: &str = "tenant=acme,user.id=42";

/// Baggage items a device span has room for: the backend's two, one the device adds, one spare.
const BAGGAGE_ITEMS: usize = 4;

static CLOCK: StdClock = StdClock::new();
static RING: Ring<4096> = Ring::new();

const USAGE: &str = "usage: propagation OUT [--traceparent VALUE] [--baggage VALUE]
  OUT is the file the device's wire stream is written to (standard output carries the headers);
  an empty VALUE leaves that header out of the incoming command";

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("propagation: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("propagation: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // The device's identity, as firmware would set it up at boot: span ids are derived from the
    // device and boot ids, so each run and each machine gets ids of its own.
    let device_id = host_id::device_id();
    let session = Session::new("valve-controller")
        .device_id(device_id)
        .boot_id(std::process::id())
        .firmware_version(env!("CARGO_PKG_VERSION"));
    let tracer = Tracer::new(&RING, &CLOCK, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).ok_or("a drain already exists")?;
    // The host knows the date: the decoder then dates the spans the same on every decode.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    drain.set_wall_clock(now.as_nanos() as u64);

    // 1. backend → device: the command and its headers, as an HTTP server or an MQTT 5 client
    //    (user properties) would hand them over.
    let mut incoming: Vec<(&str, &str)> = Vec::new();
    if !args.traceparent.is_empty() {
        incoming.push((w3c::TRACEPARENT, &args.traceparent));
    }
    if !args.baggage.is_empty() {
        incoming.push((w3c::BAGGAGE, &args.baggage));
    }
    let ex: Extracted<BAGGAGE_ITEMS> = match w3c::extract_from_headers(incoming.iter().copied()) {
        Ok(ex) => {
            if let Some(why) = ex.context_ignored {
                // Baggage came with a broken traceparent: the baggage is kept, the trace is new.
                eprintln!("propagation: traceparent ignored ({why}); starting a new trace");
            }
            ex
        }
        // No context: the device starts a trace of its own (the default, a zero context, is no
        // parent).
        Err(ExtractError::NotFound) => Extracted::default(),
        // A context that cannot be read is worth a log line, and then a trace of our own.
        Err(e @ ExtractError::Corrupted(_)) => {
            eprintln!("propagation: {e}; starting a new trace");
            Extracted::default()
        }
    };
    if ex.baggage_dropped > 0 {
        // Counted on the span too (a Jaeger warning), but worth saying here.
        eprintln!(
            "propagation: {} incoming baggage item(s) dropped (malformed, too long, or beyond {BAGGAGE_ITEMS})",
            ex.baggage_dropped
        );
    }

    // `extracted` makes `handle-command` a child (ChildOf) of the backend's span, in its trace,
    // with its sampling decision, and carries the backend's baggage into it and its children.
    // Its tags go with its start, in the same ring operation.
    let handle = tracer
        .span("handle-command")
        .extracted(ex)
        .start_with_tags((
            (tags::SPAN_KIND, SPAN_KIND_SERVER),
            (tags::COMPONENT, "command-handler"),
            ("command", "open-valve"),
        ));
    {
        let actuate = handle.child("actuate");
        actuate.set_tag("valve.position_pct", 100u32);
        std::thread::sleep(Duration::from_millis(5)); // the valve motor runs
        if let Some(tenant) = actuate.baggage_item("tenant") {
            // The backend's baggage is here on the device, two spans down.
            eprintln!("propagation: actuating for tenant {tenant}");
        }
    }

    // 2. device → backend: report the reading. The client span of the outgoing request is the
    //    one whose context goes into the request: the backend's server span becomes its child.
    let mut upload = handle.child_with_tags(
        "upload-reading",
        (
            (tags::SPAN_KIND, SPAN_KIND_CLIENT),
            (tags::PEER_SERVICE, "telemetry-api"),
            (tags::PEER_HOSTNAME, "telemetry.example.com"),
            (tags::PEER_PORT, 443u32),
            (tags::HTTP_METHOD, "POST"),
            (tags::HTTP_URL, "https://telemetry.example.com/v1/readings"),
        ),
    );
    // Baggage the device adds travels on to the backend with the backend's own items (set here,
    // it is logged on this span as `event=baggage`). 16 hex digits: within the value capacity.
    upload.set_baggage("device.id", &format!("{device_id:016x}"));

    // Every header of the request, in both formats: an OpenTelemetry service reads the W3C ones,
    // a service with a Jaeger client the `uber-trace-id` and `uberctx-*` ones.
    let ctx = upload.context();
    let mut headers = String::new();
    let skipped_w3c = w3c::inject(&ctx, upload.baggage(), |name, value| {
        writeln!(headers, "{name}: {value}")
    })?;
    let skipped_jaeger = jaeger::inject(&ctx, upload.baggage(), |name, value| {
        writeln!(headers, "{name}: {value}")
    })?;
    if skipped_w3c + skipped_jaeger > 0 {
        // Only keys that are not HTTP tokens are skipped; ours all are.
        eprintln!("propagation: some baggage keys cannot be sent as headers");
    }
    // "Send" the request: here, the headers go to standard output for a backend (or a test).
    std::io::stdout().lock().write_all(headers.as_bytes())?;
    std::thread::sleep(Duration::from_millis(3)); // the round trip
    upload.set_tag(tags::HTTP_STATUS_CODE, 202u32);
    upload.finish();
    handle.finish();

    // Drain everything to the file, as firmware would to its UART.
    let mut file =
        std::fs::File::create(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out))?;
    let bytes = write_all_frames(&mut drain, &mut file)
        .and_then(|n| file.flush().map(|()| n))
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    eprintln!(
        "propagation: trace {} ({}), wrote {bytes} bytes ({} records dropped) to {}",
        ctx.trace_id,
        if ctx.flags.is_sampled() {
            "sampled"
        } else {
            "not sampled: nothing recorded"
        },
        tracer.dropped(),
        args.out
    );
    Ok(())
}

/// The command line.
struct Args {
    out: String,
    traceparent: String,
    baggage: String,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut out = None;
        let mut traceparent = DEFAULT_TRACEPARENT.to_string();
        let mut baggage = DEFAULT_BAGGAGE.to_string();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--traceparent" => {
                    traceparent = args.next().ok_or("--traceparent needs a value")?
                }
                "--baggage" => baggage = args.next().ok_or("--baggage needs a value")?,
                "-" => return Err("standard output carries the headers: give OUT a file".into()),
                flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
                _ if out.is_some() => return Err(format!("unexpected argument {arg}")),
                _ => out = Some(arg),
            }
        }
        let out = out.ok_or("no OUT file given")?;
        Ok(Self {
            out,
            traceparent,
            baggage,
        })
    }
}
