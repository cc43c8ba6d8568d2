//! Board-independent interrupts for tests: two software-triggered interrupts and a periodic
//! timer interrupt, each calling a handler registered at run time.
//!
//! The same firmware source then runs on both boards: `set_handler(Irq::Soft0, f)`,
//! `enable(Irq::Soft0)`, `pend(Irq::Soft0)` behave alike on the lm3s6965 and the micro:bit,
//! although the vectors behind them differ (see each board's `irq_number`).

use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;

use crate::board;

/// An interrupt that tests can trigger and handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Irq {
    /// A peripheral vector with no peripheral behind it, raised only by [`pend`]
    /// (lm3s6965: vector 10, PWM generator 0; micro:bit: SWI0, vector 20).
    Soft0 = 0,
    /// A second software interrupt, to nest one handler inside another with
    /// [`set_priority`] (lm3s6965: vector 11, PWM generator 1; micro:bit: SWI1, vector 21).
    Soft1 = 1,
    /// The periodic timer started by [`start_periodic`] (lm3s6965: GPTM Timer0A, vector 19;
    /// micro:bit: TIMER1 `COMPARE[0]`, vector 9). Its event flag is cleared before the handler runs.
    Periodic = 2,
}

const COUNT: usize = 3;

/// Registered handlers, as `fn()` pointers cast to `usize`; 0 means none.
/// Written by `set_handler` (Release), read by the dispatchers (Acquire): the pairing publishes
/// nothing but the pointer itself, a function with no data behind it.
static HANDLERS: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];

#[derive(Clone, Copy)]
struct Nr(u16);

// SAFETY: `Nr` is only built by `nr()` from `board::irq_number`, which returns vector numbers
// that exist on the selected device.
unsafe impl InterruptNumber for Nr {
    fn number(self) -> u16 {
        self.0
    }
}

fn nr(irq: Irq) -> Nr {
    Nr(board::irq_number(irq))
}

/// Sets priorities to their defaults (every [`Irq`] at level 2) and clears stale pending bits.
pub(crate) fn init() {
    for irq in [Irq::Soft0, Irq::Soft1, Irq::Periodic] {
        set_priority(irq, 2);
        NVIC::unpend(nr(irq));
    }
}

/// Registers `handler` to run when `irq` fires (replacing any earlier one). An interrupt that
/// fires with no handler registered is acknowledged and ignored.
pub fn set_handler(irq: Irq, handler: fn()) {
    HANDLERS[irq as usize].store(handler as usize, Ordering::Release);
}

/// Unmasks `irq` in the NVIC.
pub fn enable(irq: Irq) {
    // SAFETY: unmasking can break a mask-based critical section only if that section relies on
    // this vector being masked; this crate's own critical sections use PRIMASK
    // (`critical-section-single-core`), and the handlers behind `Irq` only call functions the
    // firmware registered for exactly this purpose.
    unsafe { NVIC::unmask(nr(irq)) }
}

/// Masks `irq` in the NVIC.
pub fn disable(irq: Irq) {
    NVIC::mask(nr(irq));
}

/// Sets `irq` pending, as its peripheral would: the handler runs as soon as the priority and
/// PRIMASK allow. When they allow it now, the handler has run when `pend` returns (a DSB and an
/// ISB follow the write, as the ARMv7-M architecture requires for that guarantee; without them
/// QEMU finishes the current translation block first).
#[inline]
pub fn pend(irq: Irq) {
    NVIC::pend(nr(irq));
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}

/// Sets the priority of `irq`: `level` 0 is the most urgent, 3 the least (both boards implement
/// at least 2 priority bits). Higher values are clamped to 3. The board's own timer interrupts
/// (clock wrap, delay wake-up) run at level 0.
pub fn set_priority(irq: Irq, level: u8) {
    let level = if level > 3 { 3 } else { level };
    let hw = level << (8 - board::NVIC_PRIO_BITS);
    critical_section::with(|_| {
        // SAFETY: inside a critical section on a single core nothing else touches the NVIC's
        // priority registers (on ARMv6-M they are read-modify-written a word at a time).
        let mut p = unsafe { cortex_m::Peripherals::steal() };
        // SAFETY: changing a priority can break priority-based critical sections; this crate uses
        // none, and the firmware is the one asking for this priority.
        unsafe { p.NVIC.set_priority(nr(irq), hw) };
    });
}

/// Starts the periodic timer interrupt ([`Irq::Periodic`]) every `period_ticks` ticks of
/// [`crate::now_ticks`], and unmasks it. Register its handler first with [`set_handler`].
pub fn start_periodic(period_ticks: u32) {
    board::start_periodic_hw(period_ticks);
    enable(Irq::Periodic);
}

/// Stops the periodic timer and masks its interrupt.
pub fn stop_periodic() {
    disable(Irq::Periodic);
    board::stop_periodic_hw();
    NVIC::unpend(nr(Irq::Periodic));
}

#[inline(always)]
fn dispatch(irq: Irq) {
    let p = HANDLERS[irq as usize].load(Ordering::Acquire);
    if p != 0 {
        // SAFETY: a non-zero entry was stored by `set_handler` from a `fn()`, and function
        // pointers and `usize` have the same size on every target this crate builds for.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(p) };
        f();
    }
}

/// Vector for [`Irq::Soft0`].
pub(crate) extern "C" fn soft0_handler() {
    dispatch(Irq::Soft0);
}

/// Vector for [`Irq::Soft1`].
pub(crate) extern "C" fn soft1_handler() {
    dispatch(Irq::Soft1);
}

/// Vector for [`Irq::Periodic`].
pub(crate) extern "C" fn periodic_handler() {
    board::ack_periodic();
    dispatch(Irq::Periodic);
}
