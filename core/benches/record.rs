//! The record path on the host, in ns per operation: root and child span start+finish (with 0 and
//! 2 tags), a log with 3 fields, an unsampled span, and what the drain costs per span (encoding and
//! framing). `cargo bench -p microspan --bench record`.
//!
//! The ring is drained between measured batches (outside the timed region), so every measured
//! operation really records: the numbers are the record path, never the cheaper drop path (each
//! benchmark checks that nothing was dropped). The clock is a relaxed atomic load (a SysTick-style
//! tick counter), so clock cost is what a firmware would pay, not `Instant::now()`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use microspan::tracer::Sampler;
use microspan::{Clock, Drain, Ring, Session, Span, Tracer};

struct Ticks(AtomicU32);

impl Clock for Ticks {
    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    fn ticks_per_second(&self) -> u32 {
        1_000_000
    }
}

static CLOCK: Ticks = Ticks(AtomicU32::new(1_000));
static RING: Ring<{ 1 << 16 }> = Ring::new();
static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("bench").boot_id(1));
static OFF_RING: Ring<64> = Ring::new();
static OFF: Tracer =
    Tracer::new(&OFF_RING, &CLOCK, &Session::new("off")).with_sampler(Sampler::Const(false));

/// Operations per timed batch: small enough that a batch never fills the ring.
const BATCH: u64 = 256;

type D = Drain<'static, 256>;

/// Empties the ring (untimed).
fn drain(d: &mut D) -> usize {
    d.drain_with(|b| black_box(b).len())
}

/// Times `op` `iters` times, in batches, draining the ring between batches outside the timing.
fn timed(d: &mut D, iters: u64, mut op: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let t = Instant::now();
        for _ in 0..n {
            op();
        }
        total += t.elapsed();
        left -= n;
        CLOCK.0.fetch_add(1, Ordering::Relaxed);
        drain(d);
    }
    total
}

fn record(c: &mut Criterion, d: &mut D) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));

    g.bench_function("root span start+finish", |b| {
        b.iter_custom(|iters| timed(d, iters, || TRACER.root(black_box("root")).finish()))
    });

    // The parent is started once per batch run, outside the timed loop.
    let parent: Span<'static> = TRACER.root("parent");
    g.bench_function("child span start+finish, 0 tags", |b| {
        b.iter_custom(|iters| timed(d, iters, || parent.child(black_box("child")).finish()))
    });
    g.bench_function("child span start+finish, 2 tags", |b| {
        b.iter_custom(|iters| {
            timed(d, iters, || {
                let c = parent.child(black_box("child"));
                c.set_tag("http.status_code", black_box(200u32));
                c.set_tag("retries", black_box(2u32));
                c.finish();
            })
        })
    });
    g.bench_function("log with 3 fields", |b| {
        b.iter_custom(|iters| {
            timed(d, iters, || {
                parent.log([
                    ("event", "cache miss".into()),
                    ("waited.millis", black_box(1500u32).into()),
                    ("ratio", black_box(0.5f64).into()),
                ])
            })
        })
    });
    g.bench_function("unsampled span start+finish", |b| {
        b.iter(|| OFF.root(black_box("off")).finish())
    });
    drop(parent);
    drain(d);
    g.finish();
    assert_eq!(
        TRACER.dropped(),
        0,
        "the ring overflowed: the numbers would measure drops"
    );
    assert_eq!(OFF_RING.dropped(), 0);
}

/// Drain cost per span: spans are recorded untimed, then the drain turns them into frames.
fn drain_cost(c: &mut Criterion, d: &mut D) {
    let mut g = c.benchmark_group("drain");
    g.throughput(Throughput::Elements(1));
    let parent: Span<'static> = TRACER.root("parent");
    for tags in [0u32, 2] {
        g.bench_function(format!("encode+frame per child span, {tags} tags"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    for _ in 0..n {
                        let c = parent.child("child");
                        for t in 0..tags {
                            c.set_tag("k", t);
                        }
                        CLOCK.0.fetch_add(3, Ordering::Relaxed);
                    }
                    let t = Instant::now();
                    black_box(drain(d));
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    drop(parent);
    drain(d);
    g.finish();
    assert_eq!(TRACER.dropped(), 0);
}

/// The machine, so the numbers are never read without it.
fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "machine: {model}, {cpus} CPUs available, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!(
        "microspan {}: record path, ns per operation (ring drained between batches of {BATCH})",
        microspan::VERSION
    );
}

fn main() {
    print_machine();
    let mut c = Criterion::default().configure_from_args();
    let mut d: D = Drain::new(&TRACER).expect("one drain");
    record(&mut c, &mut d);
    drain_cost(&mut c, &mut d);
    c.final_summary();
}
