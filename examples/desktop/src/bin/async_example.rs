//! Spans across `.await`: the reference trace, written as async code.
//!
//! `cargo run -p microspan-examples --bin async_example -- OUT` writes the stream to `OUT` (`-` for
//! standard output); decode it with `microspan decode --file OUT --tree`.
//!
//! `handle_request` awaits two "peripherals" (timers standing in for a UART reply and a sensor
//! conversion), nested as in the reference trace: `Foo` waits 10 ms and then runs `Bar`, which
//! waits 20 ms, so `Bar` lies inside `Foo`. Each awaited piece of work is wrapped with
//! `.in_span(...)`, so its span covers the time the task spent waiting, not only the time it was
//! polled. A third operation is abandoned after
//! its first poll (as a timeout or a `select` would): its span is finished with `cancelled=true`.
//!
//! The executor is `futures-executor`'s `block_on`; on a microcontroller the same code runs under
//! embassy (see the `microspan::future` documentation).

use std::future::Future;
use std::io::Write;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

#[path = "../host_id.rs"]
mod host_id;

use microspan::conventions::{self as tags, SPAN_KIND_CLIENT};
use microspan::{write_all_frames, Drain, FutureExt, Ring, Session, StdClock, Tracer};

static CLOCK: StdClock = StdClock::new();
static RING: Ring<4096> = Ring::new();
static TRACER: std::sync::LazyLock<Tracer<'static>> = std::sync::LazyLock::new(|| {
    Tracer::new(
        &RING,
        &CLOCK,
        // Leaked once: the tracer lives as long as the program.
        Box::leak(Box::new(
            Session::new("async-service")
                .device_id(host_id::device_id())
                .boot_id(std::process::id())
                .firmware_version(env!("CARGO_PKG_VERSION")),
        )),
    )
});

/// A timer future: a thread wakes the task when the time is up.
fn delay(d: Duration) -> impl Future<Output = ()> {
    struct State {
        done: bool,
        waker: Option<Waker>,
    }
    let state = Arc::new(Mutex::new(State {
        done: false,
        waker: None,
    }));
    let mut started = false;
    std::future::poll_fn(move |cx| {
        let mut s = state.lock().unwrap();
        if s.done {
            return Poll::Ready(());
        }
        s.waker = Some(cx.waker().clone());
        if !started {
            started = true;
            let state = state.clone();
            std::thread::spawn(move || {
                std::thread::sleep(d);
                let mut s = state.lock().unwrap();
                s.done = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            });
        }
        Poll::Pending
    })
}

/// Polls `fut` once and drops it (what a timeout does to the slower branch).
async fn poll_once<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await
}

async fn handle_request(tracer: &'static Tracer<'static>) {
    let root = tracer.root("in-process-service");
    let parent = root.context();
    async move {
        let foo_span = tracer.span("Foo").child_of(&parent).start();
        foo_span.set_kind(SPAN_KIND_CLIENT);
        foo_span.set_tag(tags::PEER_SERVICE, "uart-peer");
        let foo_ctx = foo_span.context();
        // Foo covers its own wait for the reply and then Bar, as in the reference trace: Foo's
        // span stays open until the whole block below completes.
        async move {
            delay(Duration::from_millis(10)).await;

            // Bar (a child of Foo, inside it) waits for a conversion and fails.
            let bar = tracer.span("Bar").child_of(&foo_ctx).start();
            bar.set_tag(tags::COMPONENT, "adc");
            bar.set_error("adc", "something wrong");
            delay(Duration::from_millis(20)).in_span(bar).await;
        }
        .in_span(foo_span)
        .await;

        // Abandoned after one poll: its span is tagged `cancelled=true`.
        let slow = tracer.span("slow-sensor").child_of(&parent).start();
        poll_once(delay(Duration::from_secs(5)).in_span(slow)).await;
    }
    .in_span(root)
    .await
}

fn main() -> std::process::ExitCode {
    let Some(out_path) = std::env::args().nth(1) else {
        eprintln!("usage: async_example OUT   (OUT is a file path, or - for standard output)");
        return std::process::ExitCode::from(2);
    };
    let tracer: &'static Tracer<'static> = &TRACER;
    let mut drain: Drain<'_, 256> = Drain::new(tracer).expect("the only drain");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    drain.set_wall_clock(now.as_nanos() as u64);

    futures_executor::block_on(handle_request(tracer));

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
            eprintln!("wrote {bytes} bytes to {out_path}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {out_path}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
