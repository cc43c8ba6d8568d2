//! The reference trace, recorded on the desktop with microspan and written as a wire stream.
//!
//! `cargo run -p microspan-examples --bin desktop -- OUT` writes the stream to the file `OUT`
//! (`-` for standard output). Decode it with `microspan decode --file OUT`.
//!
//! It mirrors the Jaeger Go client example: a root span `in-process-service`, a child `Foo` that
//! sleeps, and inside it a child `Bar` that sleeps twice as long, logs `event="error"`,
//! `message="something wrong"` and sets `error=true`. The sleeps are shortened (10 ms and 20 ms
//! instead of 1 s and 2 s).

// `foo` and `bar` are the span names of the reference example (the Jaeger Go client's), not
// placeholders.
#![allow(clippy::disallowed_names)]

use std::io::Write;
use std::time::Duration;

use microspan::{write_all_frames, Drain, Ring, Session, StdClock, Tracer};

mod host_id;

static CLOCK: StdClock = StdClock::new();
static RING: Ring<4096> = Ring::new();

fn main() -> std::process::ExitCode {
    let Some(out_path) = std::env::args().nth(1) else {
        eprintln!("usage: desktop OUT   (OUT is a file path, or - for standard output)");
        return std::process::ExitCode::from(2);
    };
    let session = Session::new("in-process-service")
        .device_id(host_id::device_id())
        .boot_id(std::process::id())
        .firmware_version(env!("CARGO_PKG_VERSION"));
    let tracer = Tracer::new(&RING, &CLOCK, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).expect("the only drain");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    drain.set_wall_clock(now.as_nanos() as u64);

    reference_trace(&tracer);

    let result = if out_path == "-" {
        write_all_frames(&mut drain, &mut std::io::stdout().lock())
    } else {
        std::fs::File::create(&out_path).and_then(|mut f| {
            let n = write_all_frames(&mut drain, &mut f)?;
            f.flush()?;
            Ok(n)
        })
    };
    match result {
        Ok(bytes) => {
            eprintln!(
                "wrote {bytes} bytes ({} records dropped) to {out_path}",
                tracer.dropped()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {out_path}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn reference_trace(tracer: &Tracer<'_>) {
    let root = tracer.root("in-process-service");
    {
        let foo = root.child("Foo");
        std::thread::sleep(Duration::from_millis(10));
        {
            let bar = foo.child("Bar");
            std::thread::sleep(Duration::from_millis(20));
            bar.log((("event", "error"), ("message", "something wrong")));
            bar.set_tag("error", true);
        }
    }
    root.finish();
}
