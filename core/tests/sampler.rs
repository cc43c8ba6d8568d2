//! Samplers: statistics of the probabilistic sampler, the rate limiter over simulated time, the
//! decision inherited by children, the Jaeger tags on sampled roots, and unsampled roots that
//! propagate real ids without touching the ring.

mod common;
use common::*;

use microspan::sampler::{Probabilistic, RateLimiting};
use microspan::{Drain, Ring, Sampler, Session, Tracer};

#[test]
fn probabilistic_rate_within_tolerance() {
    // 200 000 draws per rate: the standard deviation of the observed rate is at most 0.0011, so a
    // tolerance of 0.006 is more than 5 sigma.
    for (rate, seed) in [(0.01, 1), (0.1, 2), (0.5, 3), (0.9, 0xdead_beef)] {
        let p = Probabilistic::new(rate, seed);
        let n = 200_000;
        let kept = (0..n).filter(|_| p.sample()).count();
        let observed = kept as f64 / n as f64;
        assert!(
            (observed - rate).abs() < 0.006,
            "rate {rate}: observed {observed}"
        );
    }
}

#[test]
fn probabilistic_through_the_tracer_and_concurrently() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    // Every sampled root here is a lost start or a record: only the decision is counted.
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"))
        .with_sampler(Sampler::probabilistic(0.2, 7));
    let threads = 8;
    let per_thread = 25_000;
    let sampled: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (0..per_thread)
                        .filter(|_| TRACER.root("r").context().flags.is_sampled())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let observed = sampled as f64 / (threads * per_thread) as f64;
    assert!((observed - 0.2).abs() < 0.006, "observed {observed}");
}

#[test]
fn rate_limiter_rate_over_simulated_time() {
    // 1 MHz clock; a root every millisecond for 60 simulated seconds.
    for rate in [0.5, 1.0, 5.0, 100.0, 333.0] {
        let r = RateLimiting::new(rate);
        let mut now: u32 = 123_456;
        let mut kept = 0;
        for _ in 0..60_000 {
            now = now.wrapping_add(1_000);
            kept += r.sample(now, 1_000_000) as u32;
        }
        // The bucket starts full (max(rate, 1) credits), then refills at `rate` per second.
        let expected = rate * 60.0 + rate.max(1.0);
        assert!(
            (kept as f64 - expected).abs() <= 2.0,
            "rate {rate}: kept {kept}, expected {expected}"
        );
    }
}

#[test]
fn rate_limiter_through_the_tracer_clock() {
    static CLOCK: ManualClock = ManualClock::new(u32::MAX - 5_000_000); // wraps after 5 s
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer =
        Tracer::new(&RING, &CLOCK, &Session::new("svc")).with_sampler(Sampler::rate_limiting(2.0));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let mut kept = 0;
    for _ in 0..20_000 {
        CLOCK.advance(1_000); // 20 simulated seconds
        kept += TRACER.root("r").is_recording() as u32;
        drain_all(&mut drain);
    }
    assert!((41..=43).contains(&kept), "kept {kept}");
}

#[test]
fn sampled_roots_carry_the_jaeger_sampler_tags() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer =
        Tracer::new(&RING, &CLOCK, &Session::new("svc")).with_sampler(Sampler::Const(true));
    static PLAIN: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let root = TRACER.root("root");
    let child = root.child("child");
    drop(child);
    drop(root);
    let d = decode_typed(&drain_all(&mut drain));
    let tags: Vec<_> = d
        .spans()
        .filter_map(|r| match r {
            Typed::Tag { key, value, span } => Some((*span, key.clone(), value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        tags,
        [
            (1, "sampler.type".to_string(), TValue::Str("const".into())),
            (1, "sampler.param".to_string(), TValue::Bool(true)),
        ],
        "only the root is tagged"
    );
    assert_eq!(TRACER.sampler().kind(), "const");
    assert_eq!(
        Sampler::probabilistic(0.25, 0).param(),
        microspan::Value::F64(0.25)
    );
    assert_eq!(Sampler::rate_limiting(3.0).kind(), "ratelimiting");
    // `Tracer::new`'s default records no sampler tags.
    let _ = PLAIN.root("plain");
}

#[test]
fn sampler_tags_count_against_the_capacity_and_follow_a_tagged_start() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc"))
        .with_sampler(Sampler::rate_limiting(1000.0));
    let mut drain: Drain<'_, 512> = Drain::new(&TRACER).unwrap();
    let full: Vec<(&'static str, microspan::Value)> = (0..microspan::config::MAX_TAGS_PER_SPAN - 1)
        .map(|_| ("k", 1u8.into()))
        .collect();
    // One tag of room left: `sampler.type` fits, `sampler.param` is counted over capacity.
    let root = TRACER.root_with_tags("root", full.as_slice());
    assert!(root.is_recording());
    assert_eq!(root.losses().tags_over_capacity, 1);
    drop(root);
    let d = decode_typed(&drain_all(&mut drain));
    let keys: Vec<String> = d
        .spans()
        .filter_map(|r| match r {
            Typed::Tag { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), microspan::config::MAX_TAGS_PER_SPAN);
    assert_eq!(keys.last().map(String::as_str), Some("sampler.type"));
}

#[test]
fn unsampled_roots_propagate_real_ids_without_touching_the_ring() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<64> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("svc").boot_id(9))
        .with_sampler(Sampler::Const(false));
    let a = TRACER.root("a");
    let b = TRACER.root("b");
    let a_child = a.child("a1");
    for ctx in [a.context(), b.context(), a_child.context()] {
        assert!(ctx.is_valid(), "{ctx:?}");
        assert!(!ctx.flags.is_sampled());
    }
    assert_ne!(a.context().trace_id, b.context().trace_id);
    assert_eq!(a.context().trace_id, a_child.context().trace_id);
    assert_ne!(a.context().span_id, a_child.context().span_id);
    // A child's id is drawn when its context is first asked for, then kept.
    assert_eq!(a_child.context(), a_child.context());
    assert_ne!(a.child("a2").context().span_id, a_child.context().span_id);
    // A span started from an unsampled context (e.g. handed to an interrupt handler) inherits the
    // decision instead of starting a new, sampled trace.
    let handler = TRACER.span("irq").child_of(&a.context()).start();
    assert!(!handler.is_recording());
    assert_eq!(handler.context().trace_id, a.context().trace_id);
    // Forced by the debug flag, even under an unsampled parent.
    let forced = TRACER.span("forced").child_of(&a.context()).debug().start();
    assert!(forced.is_recording());
    drop(forced);
    drop((a, b, a_child, handler));
    assert_eq!(RING.dropped(), 0);
    let mut drain: Drain<'_, 128> = Drain::new(&TRACER).unwrap();
    let d = decode_typed(&drain_all(&mut drain));
    let starts = d
        .spans()
        .filter(|r| matches!(r, Typed::Start { .. }))
        .count();
    assert_eq!(starts, 1, "only the debug span was recorded");
}

#[test]
fn rate_limiting_first_decisions_racing_grant_one_credit() {
    // 1 trace/s, no burst: of two roots deciding at the same instant, exactly one is sampled,
    // however the first decisions interleave. (The interleaving that a separate "started" flag
    // once allowed, a first decision preempted between reading the flag and resetting the bucket,
    // needs an interrupt at that instruction: threads do not hit it, and this test did not catch
    // it. The decision is now one compare-and-swap on one word.)
    for round in 0..2_000u32 {
        let r = RateLimiting::new(1.0);
        let now = round.wrapping_mul(0x9E37_79B9);
        let barrier = std::sync::Barrier::new(2);
        let granted: u32 = std::thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                r.sample(now, 1_000) as u32
            });
            let b = s.spawn(|| {
                barrier.wait();
                r.sample(now, 1_000) as u32
            });
            a.join().unwrap() + b.join().unwrap()
        });
        assert_eq!(granted, 1, "round {round} at {now}");
    }
}

#[test]
fn rate_limiting_across_the_clock_wrap_and_an_arrival_time_of_zero() {
    // The first root at u32::MAX - 999: the next credit is due at 0 (wrapping), which is
    // stored as 1; the bucket is still empty just after, full again 1000 ticks later.
    let r = RateLimiting::new(1.0);
    let start = u32::MAX - 999;
    assert!(r.sample(start, 1_000));
    assert!(!r.sample(start.wrapping_add(1), 1_000));
    assert!(!r.sample(start.wrapping_add(999), 1_000));
    assert!(r.sample(start.wrapping_add(1_001), 1_000));
    // A first decision just before the wrap starts full too.
    let r = RateLimiting::new(1.0);
    assert!(r.sample(u32::MAX - 5, 1_000));
    assert!(!r.sample(u32::MAX, 1_000));
}
