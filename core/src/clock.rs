//! Time on the device: a tick counter and its rate.
//!
//! The record path stores the raw 32-bit tick value; the drain extends it to 64 bits, and the
//! decoder turns ticks into wall-clock time. A counter that wraps is handled as long as the drain
//! is called at least once every three quarters of its wrap period (3 × 2^30 ticks: 50 s for a
//! 64 MHz cycle counter): it samples the clock itself when it has nothing to send and while the link takes
//! nothing, so a quiet device or a stalled link keeps its times, but a drain that is not called
//! at all for that long cannot tell how many wraps went by. Wake it with a timer, not only when
//! something was recorded; a transport that waits inside one long transfer keeps the time with
//! [`Drain::keep_time`](crate::Drain::keep_time) meanwhile. Anything that counts can be a
//! clock: SysTick with a software high word (ready-made with feature `cortex-m`:
//! `microspan::cortex_m::SysTickClock`), a hardware timer, the DWT cycle counter, an RTC, or
//! `std::time::Instant` ([`StdClock`](crate::StdClock)).

/// A monotonic tick source.
///
/// `now` is called on the record path, from thread mode and from interrupt handlers, so it must
/// be cheap, must not block, and must be safe to call concurrently (hence `Sync`).
///
/// It must count **up** and wrap at `u32::MAX` (all 32 bits): a narrower counter, such as
/// SysTick's 24-bit down-counter, is not a clock by itself; combine it with a wrap count kept by
/// its interrupt (and read the two consistently: the count, the counter, the count again), or
/// use a 32-bit timer or the DWT cycle counter. Records may reach the ring slightly out of time
/// order (one preempted between its clock read and its reservation), and the drain allows for
/// that; a clock whose own readings step back (a torn read of a count and a counter) gives spans
/// wrong times.
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// /// A 1 kHz tick incremented by a SysTick handler.
/// struct Millis(AtomicU32);
/// impl microspan::Clock for Millis {
///     fn now(&self) -> u32 { self.0.load(Ordering::Relaxed) }
///     fn ticks_per_second(&self) -> u32 { 1_000 }
/// }
/// ```
pub trait Clock: Sync {
    /// The current tick count. It may wrap at `u32::MAX`.
    fn now(&self) -> u32;
    /// Ticks per second (the decoder's time base; durations keep this resolution).
    fn ticks_per_second(&self) -> u32;
}

/// A reference to a clock is a clock (so `Tracer::new(&RING, &CLOCK, …)` works for any clock,
/// and `&dyn Clock` is the default clock type of a [`Tracer`](crate::Tracer)).
impl<C: ?Sized + Clock> Clock for &C {
    #[inline(always)]
    fn now(&self) -> u32 {
        (**self).now()
    }
    #[inline(always)]
    fn ticks_per_second(&self) -> u32 {
        (**self).ticks_per_second()
    }
}

/// Extends a wrapping 32-bit tick counter to 64 bits.
///
/// Each new sample is interpreted as the value at most a quarter of the counter's wrap period
/// (2^30 ticks) before the previous one, or less than three quarters after it: samples may arrive
/// somewhat out of order (a record preempted between reading the clock and reserving ring space)
/// and the counter may wrap, as long as each sample is within that window of the one before. The
/// window leans forward because a tick counter moves forward: records that waited in the ring
/// through a stall, or that follow records a full ring dropped or a flight recorder evicted, come
/// out right across gaps of up to three quarters of the wrap period (50 s at 64 MHz).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TickExtender {
    /// The last value. Its low `32 - shift` bits are the last sample, shifted, so the sample
    /// itself is not kept: a new one is compared with them.
    extended: u64,
    shift: u32,
    /// How far behind the last value a sample may be, in units of `2^shift` ticks: a quarter of
    /// the wrap period (`2^(30 - shift)`), less while the drain leans the window towards the
    /// clock after a stall ([`reach_to`](Self::reach_to)). Kept, not computed: it is read for
    /// every sample.
    behind: u32,
}

impl Default for TickExtender {
    /// Starts at 0, in ticks.
    fn default() -> Self {
        Self::new(0)
    }
}

impl TickExtender {
    /// Largest shift of [`with_shift`](Self::with_shift): samples still extend correctly within
    /// the window, less 2^24 ticks.
    pub const MAX_SHIFT: u32 = 24;

    /// Starts at `raw` (extended value = `raw`).
    pub const fn new(raw: u32) -> Self {
        Self::with_shift(raw, 0)
    }

    /// Extends in units of `2^shift` ticks (`shift <= MAX_SHIFT`): every value is the extended
    /// tick count divided by `2^shift`, rounded down, computed with 32-bit shifts only (a 64-bit
    /// shift by a variable amount is a library call on Cortex-M).
    pub const fn with_shift(raw: u32, shift: u32) -> Self {
        assert!(shift <= Self::MAX_SHIFT);
        Self {
            extended: (raw >> shift) as u64,
            shift,
            behind: 1 << (30 - shift),
        }
    }

    /// An extension whose next sample may be anything in the three quarters of a wrap up to
    /// `raw`, a tick read now: as if the previous sample were that long before it, in the next
    /// wrap period (so that no value is below zero). For records that may be waiting in the ring
    /// when extending starts (see `Drain::new`).
    pub(crate) const fn behind(raw: u32, shift: u32) -> Self {
        let e = Self::with_shift(raw, shift);
        Self {
            extended: e.extended + e.behind as u64,
            ..e
        }
    }

    /// The same extension in units of `2^bits` ticks.
    pub(crate) const fn rescaled(self, bits: u32) -> Self {
        assert!(bits <= Self::MAX_SHIFT);
        Self {
            extended: (self.extended << self.shift) >> bits,
            shift: bits,
            behind: 1 << (30 - bits),
        }
    }

    /// Leans the window forward so that it reaches `now`, the clock's extended value (in units
    /// of `2^shift` ticks) read just before the samples to come. No sample is later than `now`
    /// plus a sixteenth of a wrap (slack for records made while the drain reads the ones before),
    /// so the window needs to reach no further ahead than that, and reaches behind by the rest of
    /// the wrap, at most a quarter (the usual window, for a `now` up to eleven sixteenths of a
    /// wrap after the last value, or before it) and at least a sixty-fourth (for a record
    /// preempted between its clock read and its reservation). So records that waited in the ring
    /// through a stall of more than three quarters of a wrap, and records made after it, are
    /// dated right, up to a stall of about 92% of a wrap (62 s at 64 MHz).
    #[inline(never)]
    pub(crate) fn reach_to(&mut self, now: u64) {
        let quarter = 1u32 << (30 - self.shift);
        // The wrap less the slack, fifteen quarters of a quarter: the window's reach from `now`
        // back (32-bit arithmetic: a quarter wrap is at most 2^30).
        let reach = quarter * 3 + (quarter >> 1) + (quarter >> 2);
        self.behind = match u32::try_from(now.saturating_sub(self.extended)) {
            Ok(lead) if lead < reach => (reach - lead).clamp(quarter >> 4, quarter),
            _ => quarter >> 4,
        };
    }

    /// How far behind the last value a sample may be, in units of `2^shift` ticks.
    #[inline(always)]
    const fn reach_behind(&self) -> u32 {
        self.behind
    }

    /// Feeds a new raw sample; returns its 64-bit value (in units of `2^shift` ticks).
    #[inline]
    pub fn extend(&mut self, raw: u32) -> u64 {
        let s = self.sample(raw);
        self.take(s);
        self.extended
    }

    /// What [`extend`](Self::extend) would make of `raw`, without taking it: the drain keeps a
    /// record's sample only once the record fits its frame.
    #[inline(always)]
    pub(crate) fn sample(&self, raw: u32) -> Sample {
        let raw = raw >> self.shift;
        // The difference modulo 2^(32 - shift), plus the window's reach behind:
        // the bits above the last value's low `32 - shift` fall off the left shift. Only this is
        // kept (one register through the drain's encoders, not four); the 64-bit value is made
        // when taken.
        let ahead = (raw
            .wrapping_sub(self.extended as u32)
            .wrapping_add(self.reach_behind())
            << self.shift)
            >> self.shift;
        Sample { ahead }
    }

    /// How far after the last value a sample is, in units of `2^shift` ticks; `None` when it is
    /// before it.
    #[inline(always)]
    pub(crate) fn after(&self, s: Sample) -> Option<u32> {
        s.ahead.checked_sub(self.reach_behind())
    }

    /// The 64-bit value of a [`sample`](Self::sample) of this extender, not yet taken.
    #[inline(always)]
    pub(crate) fn value(&self, s: Sample) -> u64 {
        self.extended
            .wrapping_add(s.ahead as u64)
            .wrapping_sub(self.reach_behind() as u64)
    }

    /// Takes a [`sample`](Self::sample) of this extender.
    #[inline(always)]
    pub(crate) fn take(&mut self, s: Sample) {
        self.extended = self.value(s);
    }

    /// The last extended value.
    pub const fn last(&self) -> u64 {
        self.extended
    }

    /// Its shift: values are in units of `2^shift` ticks.
    pub const fn shift(&self) -> u32 {
        self.shift
    }
}

/// A sample extended by [`TickExtender::sample`], not yet taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Its distance after the last value taken, plus the window's reach behind (so below that
    /// reach means before it): in `[0, 2^(32 - shift))`.
    pub(crate) ahead: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_across_wrap() {
        let mut e = TickExtender::new(u32::MAX - 10);
        assert_eq!(e.extend(u32::MAX - 5), u32::MAX as u64 - 5);
        assert_eq!(e.extend(4), u32::MAX as u64 + 5);
        assert_eq!(e.extend(100), u32::MAX as u64 + 101);
        // A slightly older sample (preempted writer) goes back a little, not forward 2^32.
        assert_eq!(e.extend(90), u32::MAX as u64 + 91);
    }

    #[test]
    fn a_shifted_extension_is_the_extension_divided() {
        for shift in [0, 1, 5, 9, TickExtender::MAX_SHIFT] {
            let start = u32::MAX - 1_000_000_000;
            let mut plain = TickExtender::new(start);
            let mut shifted = TickExtender::with_shift(start, shift);
            assert_eq!(shifted.last(), plain.last() >> shift);
            let mut t = start as u64;
            let mut x = 0x9E37_79B9u32;
            for _ in 0..if cfg!(miri) { 500 } else { 100_000 } {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Forward by up to 2^30, or back a little (a preempted record).
                if x % 8 == 0 {
                    t -= (x >> 20) as u64 % 1000;
                } else {
                    t += (x >> 2) as u64;
                }
                assert_eq!(shifted.extend(t as u32), plain.extend(t as u32) >> shift);
            }
        }
    }

    /// Leaning the window to a clock read far ahead of the last value: samples up to it (and a
    /// sixteenth of a wrap past it) are ahead, a sample a little behind the last value is still
    /// behind; leaning to the last value itself puts the usual window back.
    #[test]
    fn a_window_leaned_to_the_clock_reaches_it() {
        for shift in [0, 4, TickExtender::MAX_SHIFT] {
            let start = 3_000_000_000u32;
            let unit = 1u64 << shift;
            let wrap = (1u64 << 32) / unit;
            let last = u64::from(start >> shift);
            let at = |ext: &TickExtender, ticks: u64| {
                let v = ext.value(ext.sample(ticks as u32));
                (v as i64 - last as i64) * unit as i64
            };
            let mut e = TickExtender::with_shift(start, shift);
            let far = u64::from(start) + 3_400_000_000; // 79% of a wrap ahead
                                                        // The usual window takes it for one behind.
            assert!(at(&e, far) < 0);
            e.reach_to(far / unit);
            assert_eq!(at(&e, far) as u64, (far / unit - last) * unit);
            // Records made while the drain reads: up to a sixteenth of a wrap past the clock.
            let slack = far + (1 << 28) - unit;
            assert!(at(&e, slack) > 0, "shift {shift}");
            // A preempted record a little behind: still behind.
            assert!(at(&e, u64::from(start) + (1 << 32) - (1 << 25)) < 0);
            // Past ~92% of a wrap, a sixty-fourth behind is kept.
            e.reach_to(last + wrap - 1);
            assert!(at(&e, u64::from(start) + (1 << 32) - (1 << 25)) < 0);
            e.reach_to(last);
            assert_eq!(e, TickExtender::with_shift(start, shift));
            assert!(at(&e, far) < 0);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn many_wraps() {
        let mut e = TickExtender::new(0);
        let mut t: u64 = 0;
        for _ in 0..10_000 {
            t += 1_500_000_000;
            assert_eq!(e.extend(t as u32), t);
        }
    }
}
