//! Samplers with the Jaeger client's semantics: const, probabilistic and rate-limiting.
//!
//! The decision is made once, when a root span starts ([`Tracer::root`](crate::Tracer::root) or a
//! [`SpanBuilder`](crate::SpanBuilder) without a valid parent). It is carried in the context's
//! [`Flags`](crate::Flags) and inherited by every descendant, on this device and across
//! propagation; a context extracted from a message keeps the decision its sender made. The debug
//! flag ([`SpanBuilder::debug`](crate::SpanBuilder::debug), or an extracted context with the debug
//! bit) forces sampling.
//!
//! When a sampler is configured with [`Tracer::with_sampler`](crate::Tracer::with_sampler), every
//! sampled root carries the tags `sampler.type` and `sampler.param`, as Jaeger clients record
//! them, so Jaeger shows why a trace was kept. (The default of [`Tracer::new`](crate::Tracer::new),
//! "always sample", records no such tags: it keeps the shortest root.)
//!
//! An unsampled root writes nothing to the ring. It still gets a valid context (a trace id and span
//! id from a per-tracer counter, see [`Span::context`](crate::Span::context)), so a message sent
//! from an unsampled trace says `sampled=0` with real ids and the receiver follows the decision.
//!
//! ```
//! use microspan::{Clock, Ring, Sampler, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
//! static RING: Ring<256> = Ring::new();
//! // One trace in ten, with a fixed seed (use a hardware RNG or the chip's unique id in firmware).
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"))
//!     .with_sampler(Sampler::probabilistic(0.1, 0x1234_5678));
//! let root = TRACER.root("request");
//! assert!(root.context().is_valid()); // sampled or not, the context can be propagated
//! ```
//!
//! ## Concurrency
//!
//! Roots may start concurrently from threads and interrupt handlers. The probabilistic sampler
//! draws from a SplitMix-style generator whose only state is one atomic counter (one `fetch_add`
//! per root); the rate limiter is a token bucket kept as one atomic "theoretical arrival time"
//! (GCRA, the single-variable form of a token bucket) updated with a compare-and-swap loop. On
//! cores without compare-and-swap (Cortex-M0), both take a short critical section, like the ring.

#[cfg(not(loom))]
use crate::atomic::{AtomicU32, Ordering};
use crate::clock::Clock;
use crate::value::Value;
// `Tracer::new` is a `const fn`; loom's atomics cannot be built in one, and the sampler is not part
// of the protocol the loom model checks.
#[cfg(loom)]
use core::sync::atomic::{AtomicU32, Ordering};

/// Whether new root spans are recorded. See the [module documentation](self).
#[derive(Debug)]
pub enum Sampler {
    /// Always (`true`) or never (`false`) sample, like the Jaeger client's const sampler.
    /// `sampler.type=const`, `sampler.param=true|false`.
    Const(bool),
    /// Sample each root with a fixed probability. `sampler.type=probabilistic`,
    /// `sampler.param=<rate>`.
    Probabilistic(Probabilistic),
    /// Sample at most a number of roots per second (a token bucket on the tracer's clock).
    /// `sampler.type=ratelimiting`, `sampler.param=<traces per second>`.
    RateLimiting(RateLimiting),
}

impl Sampler {
    /// A probabilistic sampler keeping a fraction `rate` (0.0 ..= 1.0) of the roots, drawing from
    /// a generator seeded with `seed` (two tracers with the same seed make the same decisions).
    pub const fn probabilistic(rate: f64, seed: u32) -> Self {
        Sampler::Probabilistic(Probabilistic::new(rate, seed))
    }

    /// A rate-limiting sampler keeping at most `traces_per_second` roots per second, with a burst
    /// of `max(traces_per_second, 1)` roots (the Jaeger client's bucket size).
    pub const fn rate_limiting(traces_per_second: f64) -> Self {
        Sampler::RateLimiting(RateLimiting::new(traces_per_second))
    }

    /// Decides for one new root. `clock` is read only by the rate limiter.
    #[inline(always)]
    pub fn sample<C: ?Sized + Clock>(&self, clock: &C) -> bool {
        match self {
            Sampler::Const(on) => *on,
            Sampler::Probabilistic(p) => p.sample(),
            Sampler::RateLimiting(r) => r.sample_now(clock.now(), clock.ticks_per_second()),
        }
    }

    /// The `sampler.type` tag value: `const`, `probabilistic` or `ratelimiting`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Sampler::Const(_) => "const",
            Sampler::Probabilistic(_) => "probabilistic",
            Sampler::RateLimiting(_) => "ratelimiting",
        }
    }

    /// The `sampler.param` tag value: the const decision, the probability, or the rate.
    pub fn param(&self) -> Value<'static> {
        match self {
            Sampler::Const(on) => Value::Bool(*on),
            Sampler::Probabilistic(p) => Value::F64(p.rate),
            Sampler::RateLimiting(r) => Value::F64(r.per_second),
        }
    }
}

/// The state of [`Sampler::Probabilistic`].
#[derive(Debug)]
pub struct Probabilistic {
    rate: f64,
    /// A root is sampled when a uniform 32-bit draw is below this (0 ..= 2^32).
    threshold: u64,
    /// The generator's counter (SplitMix: the state advances by a fixed odd step, the output is a
    /// mix of it).
    state: AtomicU32,
}

/// The golden-ratio step of the generator (odd, so the counter visits every u32).
const STEP: u32 = 0x9E37_79B9;

impl Probabilistic {
    /// Keeps a fraction `rate` of the roots (clamped to 0.0 ..= 1.0; NaN is 0).
    pub const fn new(rate: f64, seed: u32) -> Self {
        let rate = if rate >= 1.0 {
            1.0
        } else if rate > 0.0 {
            rate
        } else {
            0.0
        };
        Self {
            rate,
            threshold: (rate * 4_294_967_296.0) as u64,
            state: AtomicU32::new(seed),
        }
    }

    /// The sampling probability.
    pub const fn rate(&self) -> f64 {
        self.rate
    }

    /// The next 32-bit draw of the generator.
    #[inline]
    pub fn next_u32(&self) -> u32 {
        // Relaxed: the counter publishes no other memory; concurrent callers each get their own
        // value because `fetch_add` is atomic.
        mix32(self.state.fetch_add(STEP, Ordering::Relaxed))
    }

    /// Decides for one root.
    #[inline]
    pub fn sample(&self) -> bool {
        (self.next_u32() as u64) < self.threshold
    }
}

/// A 32-bit finalizer with low bias (Chris Wellons' "lowbias32").
#[inline]
const fn mix32(mut z: u32) -> u32 {
    z ^= z >> 16;
    z = z.wrapping_mul(0x21f0_aaad);
    z ^= z >> 15;
    z = z.wrapping_mul(0x735a_2d97);
    z ^ (z >> 15)
}

/// The state of [`Sampler::RateLimiting`]: a token bucket of `max(rate, 1)` credits refilled at
/// `rate` credits per second, kept in its single-variable form (GCRA).
///
/// One credit is worth `interval = ticks_per_second / rate` clock ticks (rounded to a whole tick,
/// at least 1: with a 1 MHz clock the rate is exact to 1 ppm up to 1000 traces/s). The bucket is
/// the "theoretical arrival time" `tat`: a root at time `now` is sampled when
/// `tat - now <= burst` (with `burst = (max(rate, 1) - 1) × interval`), and then `tat` becomes
/// `max(tat, now) + interval`. A bucket left idle for longer than half the clock's wrap period
/// may see a stale `tat` as in the future; a `tat` further ahead than any accepted root could have
/// left it is treated as idle (full bucket).
#[derive(Debug)]
pub struct RateLimiting {
    per_second: f64,
    /// The rate in 1/65536 traces per second (0 = sample none), computed in the `const fn`
    /// constructor so deciding needs no floating point (no soft-float code on cores without an
    /// FPU).
    rate_fx: u32,
    /// Ticks per credit, computed from the clock's rate at the first decision (0 = not yet).
    interval: AtomicU32,
    /// The theoretical arrival time, in clock ticks (wrapping); [`NOT_STARTED`] before the first
    /// root (the bucket starts full).
    tat: AtomicU32,
}

/// [`RateLimiting`]'s `tat` before its first decision. A real arrival time of 0 is stored as 1:
/// one tick later, which no decision can tell apart, and the state stays one word that every
/// decision changes through the same compare-and-swap (a separate "started" flag let two first
/// decisions racing each other both fill the bucket).
const NOT_STARTED: u32 = 0;

impl RateLimiting {
    /// At most `traces_per_second` roots per second (a non-positive or NaN rate samples none).
    pub const fn new(traces_per_second: f64) -> Self {
        let per_second = if traces_per_second > 0.0 {
            traces_per_second
        } else {
            0.0
        };
        // Rates of 65 536 roots per second and more (beyond what a microcontroller records)
        // saturate: one credit per tick at most.
        let rate_fx = if per_second * 65_536.0 >= u32::MAX as f64 {
            u32::MAX
        } else {
            (per_second * 65_536.0) as u32
        };
        Self {
            per_second,
            rate_fx,
            interval: AtomicU32::new(0),
            tat: AtomicU32::new(NOT_STARTED),
        }
    }

    /// The configured rate.
    pub const fn per_second(&self) -> f64 {
        self.per_second
    }

    fn interval(&self, ticks_per_second: u32) -> u32 {
        // Relaxed: a cached pure function of constants; racing callers store the same value.
        let cached = self.interval.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        // Rounded to the nearest tick, in integers.
        let fx = self.rate_fx.max(1) as u64;
        let t = div_u64(((ticks_per_second as u64) << 16).saturating_add(fx / 2), fx);
        let t = t.clamp(1, u32::MAX as u64) as u32;
        self.interval.store(t, Ordering::Relaxed);
        t
    }

    /// Decides for one root, reading `clock` (out of line: only rate-limited tracers pay for it).
    #[inline(never)]
    fn sample_now(&self, now: u32, ticks_per_second: u32) -> bool {
        self.sample(now, ticks_per_second)
    }

    /// Decides for one root at clock time `now`.
    pub fn sample(&self, now: u32, ticks_per_second: u32) -> bool {
        // `new` turned NaN and negative rates into 0.
        if self.rate_fx == 0 {
            return false;
        }
        let interval = self.interval(ticks_per_second);
        // burst = (max(rate, 1) - 1) × interval = ticks_per_second - interval when rate >= 1.
        let burst = if self.rate_fx >= 1 << 16 {
            ticks_per_second.saturating_sub(interval)
        } else {
            0
        };
        let horizon = burst.saturating_add(interval).saturating_mul(2);
        // Relaxed throughout: `tat` only orders the decisions among themselves (the CAS below
        // makes each accepted root consume exactly one credit); it publishes no other memory.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let ahead = tat.wrapping_sub(now);
            // Not started, `tat` in the past, or stale beyond any reachable horizon: the bucket
            // is full.
            let base = if tat == NOT_STARTED || (ahead as i32) <= 0 || ahead > horizon {
                now
            } else {
                tat
            };
            if base.wrapping_sub(now) > burst {
                return false;
            }
            let next = match base.wrapping_add(interval) {
                NOT_STARTED => NOT_STARTED + 1,
                next => next,
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

/// `n / d` (`d > 0`) by shift and subtract: run once per rate-limited tracer, so its speed does
/// not matter, but on 32-bit cores the `/` operator on `u64` links the compiler's 64-bit division
/// routines (about 900 bytes of flash on a Cortex-M3), which every firmware would carry since the
/// sampler is chosen at run time.
fn div_u64(mut n: u64, d: u64) -> u64 {
    if d == 0 || n < d {
        return 0;
    }
    let shift = d.leading_zeros() - n.leading_zeros();
    let mut step = d << shift;
    let mut q = 0u64;
    for i in (0..=shift).rev() {
        if n >= step {
            n -= step;
            q |= 1 << i;
        }
        step >>= 1;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn shift_subtract_division_matches_the_operator() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..100_000 {
            let n = next() >> (next() % 64);
            let d = (next() >> (next() % 64)).max(1);
            assert_eq!(div_u64(n, d), n / d, "{n} / {d}");
        }
        for (n, d) in [
            (0, 1),
            (1, 1),
            (u64::MAX, 1),
            (u64::MAX, u64::MAX),
            (5, 7),
            (1 << 48, 3),
        ] {
            assert_eq!(div_u64(n, d), n / d);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn probabilistic_extremes() {
        let never = Probabilistic::new(0.0, 1);
        let always = Probabilistic::new(1.0, 1);
        let nan = Probabilistic::new(f64::NAN, 1);
        for _ in 0..10_000 {
            assert!(!never.sample());
            assert!(always.sample());
            assert!(!nan.sample());
        }
    }

    #[test]
    fn same_seed_same_decisions() {
        let a = Probabilistic::new(0.3, 42);
        let b = Probabilistic::new(0.3, 42);
        for _ in 0..1000 {
            assert_eq!(a.sample(), b.sample());
        }
    }

    #[test]
    fn rate_limiter_burst_then_rate() {
        // 1 kHz clock, 10 traces/s: a burst of 10, then one per 100 ticks.
        let r = RateLimiting::new(10.0);
        let sampled = (0..100).filter(|_| r.sample(5, 1_000)).count();
        assert_eq!(sampled, 10);
        assert!(!r.sample(50, 1_000));
        assert!(r.sample(105, 1_000));
        assert!(!r.sample(106, 1_000));
    }

    #[test]
    fn rate_limiter_below_one_per_second() {
        // 0.5 traces/s: a bucket of one credit, refilled every 2 s.
        let r = RateLimiting::new(0.5);
        assert!(r.sample(0, 1_000));
        assert!(!r.sample(1_000, 1_000));
        assert!(r.sample(2_000, 1_000));
        assert!(!r.sample(2_001, 1_000));
    }

    #[test]
    fn rate_limiter_across_clock_wrap() {
        let r = RateLimiting::new(1.0);
        let start = u32::MAX - 500;
        assert!(r.sample(start, 1_000));
        assert!(!r.sample(start.wrapping_add(999), 1_000));
        assert!(r.sample(start.wrapping_add(1_000), 1_000));
    }
}
