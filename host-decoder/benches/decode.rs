//! Decoder throughput in spans per second, on one core:
//! (a) frames + records only, (b) decode + assemble (`StreamDecoder`), (c) decode + assemble + OTLP
//! protobuf encoding (`encode_otlp_request`, one request per batch, as the OTLP exporter does), and,
//! for comparison, (c′) the same through the prost messages (`to_otlp_request` + `encode_to_vec`,
//! which give the same bytes).
//!
//! The input is recorded in memory with the core tracer on a manual clock (see
//! `support/workload.rs`): the reference trace with its tags and log, and the same with baggage,
//! FollowsFrom consumers and remote parents. Targets (issue 3): ≥ 5 M spans/s for (b), ≥ 1 M
//! spans/s for (c).
//!
//! `cargo bench -p microspan-decoder --bench decode` runs criterion and then prints a table with
//! the machine; `MICROSPAN_BENCH_TRACES` sets the traces per stream (default 100 000), and
//! `MICROSPAN_BENCH_STREAM=baggage` keeps only the streams whose name contains that text.
//!
//! `MICROSPAN_BENCH_ONCE=a|b|c|c_prost` skips criterion and the table: it runs that stage once over each
//! stream and prints the spans out, for a profiler with deterministic counts, e.g.
//! `MICROSPAN_BENCH_ONCE=c valgrind --tool=callgrind --toggle-collect='decode::assemble_otlp'
//! target/release/deps/decode-…` (the stage functions are `decode::frames_and_records`,
//! `decode::assemble`, `decode::assemble_otlp` and, for `c_prost`, `decode::assemble_otlp_prost`).

#[path = "support/workload.rs"]
mod workload;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use microspan::wire::decode::{Accumulator, RecordDecoder};
use microspan_decoder::assemble::Options;
use microspan_decoder::export::{encode_otlp_request, to_otlp_request};
use microspan_decoder::model::Batch;
use microspan_decoder::stream::{StreamDecoder, MAX_FRAME};
use prost::Message;
use workload::{record, Recorded, Workload};

/// Bytes handed to the decoder at a time (as an input reader would).
const CHUNK: usize = 64 * 1024;

/// (a) Frames and records: returns the records decoded.
#[inline(never)]
fn frames_and_records(stream: &[u8]) -> u64 {
    let mut acc: Box<Accumulator<MAX_FRAME>> = Box::new(Accumulator::new());
    let mut records = 0u64;
    for mut chunk in stream.chunks(CHUNK) {
        while !chunk.is_empty() {
            let (frame, rest) = acc.feed(chunk);
            chunk = rest;
            if let Some(Ok(frame)) = frame {
                for r in RecordDecoder::new(&frame) {
                    black_box(&r);
                    records += 1;
                }
            }
        }
    }
    records
}

fn decoder() -> StreamDecoder {
    StreamDecoder::new(Options {
        fixed_anchor_unix_nanos: Some(1_700_000_000_000_000_000),
        ..Options::default()
    })
}

/// (b) Decode and assemble: returns the spans out.
#[inline(never)]
fn assemble(stream: &[u8]) -> u64 {
    let mut dec = decoder();
    let mut out: Vec<Batch> = Vec::new();
    let mut spans = 0u64;
    for chunk in stream.chunks(CHUNK) {
        dec.feed(chunk, &mut out).expect("a good stream");
        spans += out
            .drain(..)
            .map(|b| black_box(b).spans.len() as u64)
            .sum::<u64>();
    }
    dec.finish(&mut out);
    spans + out.drain(..).map(|b| b.spans.len() as u64).sum::<u64>()
}

/// (c) Decode, assemble and encode as OTLP protobuf: returns (spans, bytes encoded).
#[inline(never)]
fn assemble_otlp(stream: &[u8]) -> (u64, u64) {
    assemble_and(stream, encode_otlp_request)
}

/// (c′) The same through the prost messages.
#[inline(never)]
fn assemble_otlp_prost(stream: &[u8]) -> (u64, u64) {
    assemble_and(stream, |b| to_otlp_request(b).encode_to_vec())
}

/// Decode, assemble and encode each batch with `encode`: returns (spans, bytes encoded).
fn assemble_and(stream: &[u8], encode_batch: impl Fn(&Batch) -> Vec<u8>) -> (u64, u64) {
    let mut dec = decoder();
    let mut out: Vec<Batch> = Vec::new();
    let (mut spans, mut bytes) = (0u64, 0u64);
    let mut encode = |out: &mut Vec<Batch>| {
        for batch in out.drain(..) {
            spans += batch.spans.len() as u64;
            bytes += black_box(encode_batch(&batch)).len() as u64;
        }
    };
    for chunk in stream.chunks(CHUNK) {
        dec.feed(chunk, &mut out).expect("a good stream");
        encode(&mut out);
    }
    dec.finish(&mut out);
    encode(&mut out);
    (spans, bytes)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn traces() -> usize {
    std::env::var("MICROSPAN_BENCH_TRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The streams, or those whose name contains `MICROSPAN_BENCH_STREAM` (e.g. `baggage`).
fn workloads() -> Vec<(&'static str, Recorded)> {
    let n = traces();
    let only = std::env::var("MICROSPAN_BENCH_STREAM").unwrap_or_default();
    [
        ("reference+tags+log", Workload::REFERENCE),
        ("+baggage+refs", Workload::FULL),
    ]
    .into_iter()
    .filter(|(name, _)| name.contains(only.as_str()))
    .map(|(name, w)| (name, record(n, w)))
    .collect()
}

fn criterion_benches(c: &mut Criterion, streams: &[(&'static str, Recorded)]) {
    for (name, rec) in streams {
        assert_eq!(
            assemble(&rec.bytes),
            rec.spans,
            "every recorded span comes out"
        );
        assert_eq!(
            assemble_otlp(&rec.bytes),
            assemble_otlp_prost(&rec.bytes),
            "both OTLP encodings give as many bytes"
        );
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.throughput(Throughput::Elements(rec.spans));
        g.sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        g.bench_function("a_frames_records", |b| {
            b.iter(|| frames_and_records(black_box(&rec.bytes)))
        });
        g.bench_function("b_assemble", |b| b.iter(|| assemble(black_box(&rec.bytes))));
        g.bench_function("c_assemble_otlp", |b| {
            b.iter(|| assemble_otlp(black_box(&rec.bytes)))
        });
        g.bench_function("c_prost_assemble_otlp", |b| {
            b.iter(|| assemble_otlp_prost(black_box(&rec.bytes)))
        });
        g.finish();
    }
}

/// Best of `runs` timings of `f`, in seconds.
fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn summary(streams: &[(&'static str, Recorded)]) {
    println!(
        "\nmicrospan decoder throughput, one core, {} ({} logical CPUs), best of 5",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| stream | spans | bytes/span | (a) frames+records | (b) +assemble (target 5 M) | (c) +OTLP protobuf (target 1 M) | (c′) +OTLP via prost messages | OTLP bytes/span |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, rec) in streams {
        let n = rec.spans as f64;
        let a = best_of(5, || {
            black_box(frames_and_records(&rec.bytes));
        });
        let b = best_of(5, || {
            black_box(assemble(&rec.bytes));
        });
        let mut otlp_bytes = 0;
        let c = best_of(5, || {
            otlp_bytes = black_box(assemble_otlp(&rec.bytes)).1;
        });
        let c_prost = best_of(5, || {
            black_box(assemble_otlp_prost(&rec.bytes));
        });
        let rate = |t: f64| format!("{:.2} M/s", n / t / 1e6);
        let mark = |t: f64, target: f64| if n / t >= target { "" } else { " (missed)" };
        println!(
            "| {name} | {} | {:.2} | {} | {}{} | {}{} | {} | {:.0} |",
            rec.spans,
            rec.bytes.len() as f64 / n,
            rate(a),
            rate(b),
            mark(b, 5e6),
            rate(c),
            mark(c, 1e6),
            rate(c_prost),
            otlp_bytes as f64 / n
        );
    }
}

/// One run of one stage over each stream (`MICROSPAN_BENCH_ONCE`), for profilers; with
/// `MICROSPAN_BENCH_RUNS=n`, n runs and the best one's rate (a quick A/B on a busy machine).
fn once(stage: &str, streams: &[(&'static str, Recorded)]) {
    let runs: usize = std::env::var("MICROSPAN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for (name, rec) in streams {
        let mut spans = 0;
        let best = best_of(runs.max(1), || {
            spans = match stage {
                "a" => frames_and_records(black_box(&rec.bytes)),
                "b" => assemble(black_box(&rec.bytes)),
                "c" => assemble_otlp(black_box(&rec.bytes)).0,
                "c_prost" => assemble_otlp_prost(black_box(&rec.bytes)).0,
                other => panic!("MICROSPAN_BENCH_ONCE={other}: expected a, b, c or c_prost"),
            };
        });
        println!(
            "{name}: stage {stage}: {spans} out (records for a, spans for b and c), {} spans recorded; best of {runs}: {:.2} M spans/s",
            rec.spans,
            rec.spans as f64 / best / 1e6
        );
    }
}

fn main() {
    let streams = workloads();
    if let Ok(stage) = std::env::var("MICROSPAN_BENCH_ONCE") {
        once(&stage, &streams);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &streams);
    c.final_summary();
    summary(&streams);
}
