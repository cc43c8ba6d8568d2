//! The same work through three tracers, in one process, so the machine's state is shared:
//!
//! - **span**: a root span, start + finish;
//! - **span + 2 attributes**: the same with two small integer attributes
//!   (microspan tags, fastrace properties, `tracing` fields).
//!
//! microspan runs twice: with `StdClock` (`Instant::now()`, what a desktop user gets) and with the
//! CPU's time-stamp counter (`microspan-tsc`), since `Instant::now()` alone costs tens of
//! nanoseconds on some virtual machines (measured here as `clock/std`). fastrace reads the TSC
//! (minstant) too.
//!
//! Each tracer keeps what it records: microspan in its ring (emptied by its drain between timed
//! chunks, outside the timing — the drain is the consumer, like fastrace's collector thread);
//! fastrace through its collector to a reporter that keeps the last spans in memory; `tracing`
//! through the registry and a layer that keeps the closed spans (name, start, end) in memory.
//!
//! `MICROSPAN_BENCH_QUICK=1` shortens the measurement (a smoke run for CI).

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use microspan::{Drain, Ring, Session, StdClock, Tracer};

static RING: Ring<{ 1 << 16 }> = Ring::new();
static TSC_RING: Ring<{ 1 << 16 }> = Ring::new();
/// Both microspan tracers name their clock's type (`Tracer::with_clock`), as the README
/// recommends: the record path calls the clock directly.
static TSC_TRACER: Tracer<'static, TscClock> =
    Tracer::with_clock(&TSC_RING, TscClock, &Session::new("bench"));

/// The time-stamp counter (x86_64), for the record path without `Instant::now()`'s cost, which
/// on some virtual machines is a system call. Elsewhere: `Instant` as `StdClock` does.
struct TscClock;

impl microspan::Clock for TscClock {
    fn now(&self) -> u32 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: RDTSC has no preconditions on x86_64.
            unsafe { core::arch::x86_64::_rdtsc() as u32 }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            microspan::Clock::now(&*CLOCK)
        }
    }
    fn ticks_per_second(&self) -> u32 {
        1_000_000_000
    }
}
static CLOCK: std::sync::LazyLock<StdClock> = std::sync::LazyLock::new(StdClock::new);
static TRACER: std::sync::LazyLock<Tracer<'static, &'static StdClock>> =
    std::sync::LazyLock::new(|| Tracer::with_clock(&RING, &*CLOCK, &SESSION));
static SESSION: Session = Session::new("bench");

/// Spans recorded per timed chunk before the ring is drained (untimed).
const CHUNK: u64 = 1024;

fn microspan_bench(
    c: &mut Criterion,
    drain: &mut Drain<'static, 256>,
    tsc_drain: &mut Drain<'static, 256>,
) {
    let t: &'static Tracer<'static, &'static StdClock> = &TRACER;
    let tsc: &'static Tracer<'static, TscClock> = &TSC_TRACER;
    let mut g = c.benchmark_group("clock");
    g.bench_function(BenchmarkId::new("std", "Instant::now"), |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    g.bench_function(BenchmarkId::new("tsc", "TscClock::now"), |b| {
        b.iter(|| black_box(microspan::Clock::now(&TscClock)))
    });
    g.finish();
    let mut g = c.benchmark_group("span");
    g.bench_function(BenchmarkId::new("microspan", "start+finish"), |b| {
        b.iter_custom(|iters| chunked(iters, drain, || drop(black_box(t.root("root")))))
    });
    g.bench_function(BenchmarkId::new("microspan-tsc", "start+finish"), |b| {
        b.iter_custom(|iters| chunked(iters, tsc_drain, || drop(black_box(tsc.root("root")))))
    });
    g.bench_function(BenchmarkId::new("fastrace", "start+finish"), |b| {
        b.iter(|| {
            let root = fastrace::Span::root("root", fastrace::prelude::SpanContext::random());
            drop(black_box(root));
        })
    });
    g.bench_function(BenchmarkId::new("tracing", "start+finish"), |b| {
        b.iter(|| {
            let s = tracing::info_span!("root");
            drop(black_box(s));
        })
    });
    g.finish();

    // A child of a live span: fastrace's cheapest path (a `LocalSpan` under a local parent, kept
    // in a thread-local stack until the root finishes), microspan's child span, `tracing`'s span
    // inside an entered parent.
    let mut g = c.benchmark_group("child_span");
    g.bench_function(BenchmarkId::new("microspan", "start+finish"), |b| {
        let root = t.root("root");
        b.iter_custom(|iters| chunked(iters, drain, || drop(black_box(root.child("child")))))
    });
    g.bench_function(BenchmarkId::new("microspan-tsc", "start+finish"), |b| {
        let root = tsc.root("root");
        b.iter_custom(|iters| chunked(iters, tsc_drain, || drop(black_box(root.child("child")))))
    });
    g.bench_function(BenchmarkId::new("fastrace", "start+finish"), |b| {
        // A root per 1024 children, so the collector receives bounded span sets.
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let root = fastrace::Span::root("root", fastrace::prelude::SpanContext::random());
                let guard = root.set_local_parent();
                let start = Instant::now();
                for _ in 0..n {
                    drop(black_box(
                        fastrace::local::LocalSpan::enter_with_local_parent("child"),
                    ));
                }
                total += start.elapsed();
                drop(guard);
                drop(root);
                left -= n;
            }
            total
        })
    });
    g.bench_function(BenchmarkId::new("tracing", "start+finish"), |b| {
        let root = tracing::info_span!("root");
        let _entered = root.enter();
        b.iter(|| drop(black_box(tracing::info_span!("child"))))
    });
    g.finish();

    let mut g = c.benchmark_group("span_2_attributes");
    g.bench_function(BenchmarkId::new("microspan", "start+2tags+finish"), |b| {
        let mut i = 0u32;
        b.iter_custom(|iters| {
            chunked(iters, drain, || {
                let s = t.root("root");
                s.set_tag("http.status_code", 200u32);
                s.set_tag("retries", i & 7);
                i = i.wrapping_add(1);
                drop(black_box(s));
            })
        })
    });
    g.bench_function(
        BenchmarkId::new("microspan-tsc", "start+2tags+finish"),
        |b| {
            let mut i = 0u32;
            b.iter_custom(|iters| {
                chunked(iters, tsc_drain, || {
                    let s = tsc.root("root");
                    s.set_tag("http.status_code", 200u32);
                    s.set_tag("retries", i & 7);
                    i = i.wrapping_add(1);
                    drop(black_box(s));
                })
            })
        },
    );
    // The attributes given with the start, as `tracing` takes its fields: one ring operation for
    // the start and both tags.
    g.bench_function(
        BenchmarkId::new("microspan-at-start", "start_with_2tags+finish"),
        |b| {
            let mut i = 0u32;
            b.iter_custom(|iters| {
                chunked(iters, drain, || {
                    let s = t
                        .root_with_tags("root", (("http.status_code", 200u32), ("retries", i & 7)));
                    i = i.wrapping_add(1);
                    drop(black_box(s));
                })
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("microspan-tsc-at-start", "start_with_2tags+finish"),
        |b| {
            let mut i = 0u32;
            b.iter_custom(|iters| {
                chunked(iters, tsc_drain, || {
                    let s = tsc
                        .root_with_tags("root", (("http.status_code", 200u32), ("retries", i & 7)));
                    i = i.wrapping_add(1);
                    drop(black_box(s));
                })
            })
        },
    );
    g.bench_function(BenchmarkId::new("fastrace", "start+2props+finish"), |b| {
        let mut i = 0u32;
        b.iter(|| {
            let root = fastrace::Span::root("root", fastrace::prelude::SpanContext::random())
                .with_properties(|| {
                    [
                        ("http.status_code", "200".to_string()),
                        ("retries", (i & 7).to_string()),
                    ]
                });
            i = i.wrapping_add(1);
            drop(black_box(root));
        })
    });
    g.bench_function(BenchmarkId::new("tracing", "start+2fields+finish"), |b| {
        let mut i = 0u32;
        b.iter(|| {
            let s = tracing::info_span!("root", http.status_code = 200u32, retries = i & 7);
            i = i.wrapping_add(1);
            drop(black_box(s));
        })
    });
    g.finish();
}

/// Times `iters` calls of `f` in chunks, draining microspan's ring (untimed) between chunks.
fn chunked(iters: u64, drain: &mut Drain<'static, 256>, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        total += start.elapsed();
        left -= n;
        drain.drain_with(|b| black_box(b).len());
    }
    assert_eq!(
        (RING.dropped(), TSC_RING.dropped()),
        (0, 0),
        "the rings must not fill during the measurement"
    );
    total
}

/// fastrace's reporter: keeps the last spans in memory.
struct KeepLast(VecDeque<fastrace::collector::SpanRecord>);

impl fastrace::collector::Reporter for KeepLast {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        for s in spans {
            if self.0.len() == 4096 {
                self.0.pop_front();
            }
            self.0.push_back(s);
        }
    }
}

/// `tracing` layer that keeps the closed spans (name, start, end) in memory.
struct KeepClosed(Mutex<VecDeque<(&'static str, Instant, Instant)>>);

struct Started(Instant);

impl<S> tracing_subscriber::Layer<S> for KeepClosed
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let start = span.extensions().get::<Started>().map(|s| s.0);
            if let Some(start) = start {
                let mut q = self.0.lock().unwrap();
                if q.len() == 4096 {
                    q.pop_front();
                }
                q.push_back((span.name(), start, Instant::now()));
            }
        }
    }
}

fn main() {
    use tracing_subscriber::layer::SubscriberExt;
    fastrace::set_reporter(
        KeepLast(VecDeque::new()),
        fastrace::collector::Config::default(),
    );
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(KeepClosed(Mutex::new(VecDeque::new()))),
    )
    .expect("the only subscriber");
    let mut drain: Drain<'static, 256> = Drain::new(&*TRACER).expect("the only drain");
    let mut tsc_drain: Drain<'static, 256> = Drain::new(&TSC_TRACER).expect("the only drain");

    let quick = std::env::var_os("MICROSPAN_BENCH_QUICK").is_some();
    let mut c = Criterion::default().configure_from_args();
    c = if quick {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    };
    microspan_bench(&mut c, &mut drain, &mut tsc_drain);
    c.final_summary();
    fastrace::flush();
}
