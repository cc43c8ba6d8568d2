#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(feature = "lm3s6965", feature = "microbit"))]
compile_error!(
    "microspan-boards: enable exactly one board feature, `lm3s6965` (with --target \
     thumbv7m-none-eabi) or `microbit` (with --target thumbv6m-none-eabi), not both"
);
#[cfg(not(any(feature = "lm3s6965", feature = "microbit")))]
compile_error!(
    "microspan-boards: enable one board feature: `--features lm3s6965 --target \
     thumbv7m-none-eabi` or `--features microbit --target thumbv6m-none-eabi`"
);

mod irq;
mod mmio;
#[cfg(feature = "panic-exit")]
mod panic;
mod semihosting;

#[cfg(all(feature = "lm3s6965", not(feature = "microbit")))]
#[path = "lm3s6965.rs"]
mod board;
#[cfg(all(feature = "microbit", not(feature = "lm3s6965")))]
#[path = "microbit.rs"]
mod board;

pub use board::{now_ticks, Uart, BOARD, QEMU_MACHINE_ARGS, TICKS_PER_SECOND};
pub use irq::{
    disable, enable, pend, set_handler, set_priority, start_periodic, stop_periodic, Irq,
};
pub use semihosting::{exit, hprint, HARDFAULT_EXIT_CODE, PANIC_EXIT_CODE};

/// Re-exported so firmware can name the crate that provides the exception attributes.
pub use cortex_m_rt;

use core::sync::atomic::{AtomicBool, Ordering};

/// The board's peripherals that firmware owns after [`init`].
pub struct Board {
    /// The debug UART (lm3s6965: UART0; micro:bit: the nRF51 UART on P0.24), which QEMU connects
    /// to its first `-serial` chardev.
    pub uart: Uart,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Brings the board up: core clock, the monotonic tick clock ([`now_ticks`]), the UART at
/// 115200 8N1, and the interrupt controller entries behind [`Irq`].
///
/// Returns `None` when called a second time, so only one owner of the UART exists.
pub fn init() -> Option<Board> {
    // thumbv6m has no compare-and-swap, so the take-once flag is guarded by a critical section.
    let first = critical_section::with(|_| {
        let taken = TAKEN.load(Ordering::Relaxed);
        TAKEN.store(true, Ordering::Relaxed);
        !taken
    });
    if !first {
        return None;
    }
    board::init_clocks();
    board::init_tick_clock();
    let uart = board::init_uart();
    irq::init();
    Some(Board { uart })
}

/// Ticks elapsed since `start` (a value of [`now_ticks`]), correct across one wrap of the
/// 32-bit counter.
#[inline]
pub fn ticks_since(start: u32) -> u32 {
    now_ticks().wrapping_sub(start)
}

/// Converts microseconds to ticks of [`now_ticks`] (saturating at `u32::MAX`).
pub const fn us_to_ticks(us: u32) -> u32 {
    let t = us as u64 * TICKS_PER_SECOND as u64 / 1_000_000;
    if t > u32::MAX as u64 {
        u32::MAX
    } else {
        t as u32
    }
}

/// Converts ticks of [`now_ticks`] to microseconds (rounding down).
pub const fn ticks_to_us(ticks: u32) -> u64 {
    ticks as u64 * 1_000_000 / TICKS_PER_SECOND as u64
}

/// Waits until at least `ticks` ticks of [`now_ticks`] have passed.
///
/// The core sleeps in `wfi` between checks, woken by a one-shot hardware timer armed for the
/// deadline (and by any other interrupt), so under QEMU with `-icount ...,sleep=off` a long
/// delay costs no host time: QEMU jumps the virtual clock to the timer's deadline. Works with
/// interrupts masked too (a pending interrupt still ends `wfi`). `ticks` must be below
/// `u32::MAX / 2`.
pub fn delay_ticks(ticks: u32) {
    let start = now_ticks();
    loop {
        let elapsed = now_ticks().wrapping_sub(start);
        if elapsed >= ticks {
            break;
        }
        let remaining = ticks - elapsed;
        if remaining < board::MIN_WAKE_TICKS {
            // Too close for a timer round-trip: spin.
            continue;
        }
        board::arm_wake(remaining);
        cortex_m::asm::wfi();
    }
    board::disarm_wake();
}

/// Waits at least `us` microseconds; see [`delay_ticks`].
pub fn delay_us(us: u32) {
    delay_ticks(us_to_ticks(us));
}
