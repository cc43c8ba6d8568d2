//! A ready-made [`Clock`] for Cortex-M cores (feature `cortex-m`): SysTick, free-running on the
//! core clock, extended to 32 bits by a wrap count its exception keeps.
//!
//! ```ignore
//! use cortex_m_rt::{entry, exception};
//! use microspan::cortex_m::SysTickClock;
//! use microspan::{Ring, Session, Tracer};
//!
//! static CLOCK: SysTickClock = SysTickClock::new(64_000_000); // the core clock, in Hz
//! static RING: Ring<1024> = Ring::new();
//! static TRACER: Tracer<'static, &SysTickClock> =
//!     Tracer::with_clock(&RING, &CLOCK, &Session::new("sensor-node"));
//!
//! #[entry]
//! fn main() -> ! {
//!     let mut cp = cortex_m::Peripherals::take().unwrap();
//!     CLOCK.start(&mut cp.SYST, &mut cp.SCB);
//!     // ...
//! #   loop {}
//! }
//!
//! #[exception]
//! fn SysTick() {
//!     CLOCK.on_wrap(); // first (best: only) thing the handler does
//! }
//! ```
//!
//! The clock owns SysTick: nothing else may reprogram it, and [`start`](SysTickClock::start) gives
//! its exception the most urgent priority (0). It counts core cycles and wraps at 2^32 (after 67 s
//! at 64 MHz; the drain extends that further). Reading it is lock-free and never masks
//! interrupts, from thread mode and any priority, on Cortex-M0 too (the wrap count is only loaded
//! and stored).
//!
//! What it needs:
//! - **The SysTick exception is never held off for a whole wrap period** (2^24 cycles: 262 ms at
//!   64 MHz) by a critical section or a handler of the same priority running that long: one
//!   uncounted wrap is seen (SCB ICSR.PENDSTSET), two are not.
//! - **Its priority stays the most urgent** and `on_wrap` comes first in its handler: between
//!   exception entry (which clears PENDSTSET) and `on_wrap`, a reader that could preempt the
//!   handler would see the counter reloaded and the wrap not yet counted, 2^24 cycles back.
//! - **One core.** SysTick is per core: on a dual-core chip (RP2040, STM32H7) only the core that
//!   started it may read it. It also stops in the deep-sleep modes that stop the core clock, and
//!   the time asleep is not counted.
//! - **Not for a device that sleeps to save power.** The SysTick exception that counts wraps
//!   wakes the core every 2^24 cycles (about once a second at 16 MHz) from `wfi`, and deep sleep
//!   stops the count. A battery device times its spans from a low-power timer or the RTC that
//!   runs through its sleep instead, through a `Clock` of its own (a 32-bit read and its rate).

use core::sync::atomic::{compiler_fence, AtomicU32, Ordering};

use cortex_m::peripheral::scb::SystemHandler;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};

use crate::clock::Clock;

/// SysTick's reload value: the whole 24-bit range, one wrap every 2^24 core cycles.
const RELOAD: u32 = 0x00FF_FFFF;

/// SysTick extended to a 32-bit up-counter of core cycles. See the [module docs](self).
#[derive(Debug)]
pub struct SysTickClock {
    /// SysTick wraps counted by [`on_wrap`](Self::on_wrap), its only writer.
    wraps: AtomicU32,
    core_hz: u32,
}

impl SysTickClock {
    /// A clock for a core running at `core_hz`; counting starts with [`start`](Self::start).
    pub const fn new(core_hz: u32) -> Self {
        Self {
            wraps: AtomicU32::new(0),
            core_hz,
        }
    }

    /// Starts SysTick free-running on the core clock, its exception enabled (which must call
    /// [`on_wrap`](Self::on_wrap)) at the most urgent priority, and the count at 0. Call it once,
    /// before the first reading. Taking `SYST` and `SCB` by `&mut` shows the clock has SysTick to
    /// itself.
    pub fn start(&self, syst: &mut SYST, scb: &mut SCB) {
        syst.disable_counter();
        // SAFETY: changing a priority can break priority-based critical sections (RTIC's ceilings)
        // that the SysTick handler takes part in; the handler this clock needs touches only its
        // wrap count, an atomic, and the module documentation says the handler is the clock's.
        unsafe { scb.set_priority(SystemHandler::SysTick, 0) };
        // A wrap left pending from before (a bootloader's SysTick, an earlier start) would be
        // counted as one of ours.
        SCB::clear_pendst();
        self.wraps.store(0, Ordering::Relaxed);
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // Until its first reload the counter reads 0 (on silicon for a cycle, in QEMU longer):
        // waiting it out keeps the first readings from going 0, then 2^24 − 1, backwards.
        let mut spins = 0u32;
        while SYST::get_current() == 0 && spins < 1000 {
            spins += 1;
        }
    }

    /// Counts one wrap: call it from the `SysTick` exception handler, and nowhere else.
    #[inline]
    pub fn on_wrap(&self) {
        // Load and store (no read-modify-write, so Cortex-M0 needs no critical section): the
        // handler is the only writer, and it does not preempt itself.
        self.wraps.store(
            self.wraps.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
}

impl Clock for SysTickClock {
    /// Core cycles since [`start`](SysTickClock::start), wrapping at 2^32.
    ///
    /// - An exception that counts a wrap between the reads changes the count: read again.
    /// - A wrap the exception has not counted yet (the caller holds it off: a handler of equal or
    ///   more urgent priority, or masked interrupts) shows as SCB ICSR.PENDSTSET: the counter is
    ///   read again, certainly after that wrap, and the wrap is added.
    #[inline]
    fn now(&self) -> u32 {
        loop {
            let wraps = self.wraps.load(Ordering::Relaxed);
            // The register reads are volatile, the count's loads atomic: nothing in the language
            // keeps the compiler from moving one kind across the other, and the order is the
            // algorithm. Compiler fences keep it (no instruction on one core).
            compiler_fence(Ordering::SeqCst);
            let current = SYST::get_current();
            let pending = SCB::is_pendst_pending();
            compiler_fence(Ordering::SeqCst);
            if self.wraps.load(Ordering::Relaxed) != wraps {
                continue;
            }
            let (wraps, current) = if pending {
                (wraps.wrapping_add(1), SYST::get_current())
            } else {
                (wraps, current)
            };
            return (wraps << 24) | (RELOAD - current);
        }
    }

    fn ticks_per_second(&self) -> u32 {
        self.core_hz
    }
}
