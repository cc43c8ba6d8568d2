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
//!     // SysTick at the most urgent priority: wraps are counted promptly.
//!     unsafe { cp.SCB.set_priority(cortex_m::peripheral::scb::SystemHandler::SysTick, 0) };
//!     CLOCK.start(&mut cp.SYST);
//!     // ...
//! #   loop {}
//! }
//!
//! #[exception]
//! fn SysTick() {
//!     CLOCK.on_wrap();
//! }
//! ```
//!
//! The clock owns SysTick: nothing else may reprogram it. It counts core cycles and wraps at
//! 2^32 (after 67 s at 64 MHz; the drain extends that further). Reading it is lock-free and never
//! masks interrupts, from thread mode and any priority, on Cortex-M0 too (the wrap count is only
//! loaded and stored). It is correct as long as the SysTick exception is never held off for a
//! whole wrap period (2^24 cycles: 262 ms at 64 MHz) — by a critical section or a handler of equal
//! or more urgent priority running that long.

use core::sync::atomic::{AtomicU32, Ordering};

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

    /// Starts SysTick free-running on the core clock with its exception enabled (which must call
    /// [`on_wrap`](Self::on_wrap)). Taking `SYST` by `&mut` shows the clock has it to itself.
    pub fn start(&self, syst: &mut SYST) {
        syst.disable_counter();
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
            let current = SYST::get_current();
            let pending = SCB::is_pendst_pending();
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
