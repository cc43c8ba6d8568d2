//! TI Stellaris LM3S6965 (Cortex-M3) as QEMU's `lm3s6965evb` emulates it.
//!
//! | what | hardware | notes |
//! |---|---|---|
//! | core clock | PLL, 50 MHz (8 MHz crystal, SYSDIV /4) | QEMU models the same RCC fields: 200 MHz / (SYSDIV+1) |
//! | tick clock | SysTick on the core clock, 24 bits, + a wrap counter in its exception | QEMU 7.2 reads the GPTM's TAR as 0 (unimplemented), so a GPTM cannot be the clock |
//! | UART | UART0, PL011 at 0x4000_C000, PA0/PA1 | UARTEN set: QEMU sends without it, silicon does not |
//! | periodic interrupt | GPTM Timer0A, 32-bit one-shot re-armed by its handler, vector 19 | see `start_periodic_hw` for why not periodic mode |
//! | delay wake-up | GPTM Timer1A, 32-bit one-shot, vector 21 | |
//! | software interrupts | vectors 10 and 11 (PWM generators 0/1, not emulated) | raised only by `NVIC::pend` |
//!
//! Ownership: after `init`, this module owns SYSCTL's RCC/RCGC, GPIOA's AFSEL/DEN for PA0/PA1,
//! UART0, GPTM0, GPTM1, SysTick and the SysTick/vector 10/11/19/21 NVIC entries. Firmware must
//! not reconfigure them, and must not define a `SysTick` exception handler.

use core::convert::Infallible;
use core::sync::atomic::{AtomicU32, Ordering};

use microspan::cortex_m::SysTickClock;
use microspan::Clock;

use embedded_hal_nb::nb;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::exception;

use crate::irq::{self, Irq};
use crate::mmio::Reg;

/// Name of the board, as tests and logs print it.
pub const BOARD: &str = "lm3s6965";

/// QEMU arguments that select this board (before `-kernel ELF`).
pub const QEMU_MACHINE_ARGS: &[&str] = &["-cpu", "cortex-m3", "-machine", "lm3s6965evb"];

/// Core clock after [`crate::init`], Hz.
pub const CORE_CLOCK_HZ: u32 = 50_000_000;

/// Rate of [`now_ticks`]: the core clock (SysTick counts core cycles).
pub const TICKS_PER_SECOND: u32 = CORE_CLOCK_HZ;

/// NVIC priority bits implemented by the LM3S6965.
pub(crate) const NVIC_PRIO_BITS: u8 = 3;

/// Below this many ticks `delay_ticks` spins instead of arming the wake-up timer.
pub(crate) const MIN_WAKE_TICKS: u32 = 500;

// System control.
const SYSCTL_RIS: Reg = Reg(0x400F_E050);
const SYSCTL_RCC: Reg = Reg(0x400F_E060);
const SYSCTL_RCGC1: Reg = Reg(0x400F_E104);
const SYSCTL_RCGC2: Reg = Reg(0x400F_E108);
const RCC_BYPASS: u32 = 1 << 11;
const RCC_USESYSDIV: u32 = 1 << 22;
const RCC_PWRDN: u32 = 1 << 13;
const RCC_OEN: u32 = 1 << 12;
const RCC_XTAL_MASK: u32 = 0xF << 6;
const RCC_XTAL_8MHZ: u32 = 0xE << 6;
const RCC_OSCSRC_MASK: u32 = 0x3 << 4;
const RCC_SYSDIV_MASK: u32 = 0xF << 23;
/// SYSDIV = 3: 200 MHz PLL output / 4 = 50 MHz.
const RCC_SYSDIV_50MHZ: u32 = 3 << 23;
const RIS_PLLLRIS: u32 = 1 << 6;
const RCGC1_UART0: u32 = 1 << 0;
const RCGC1_TIMER0: u32 = 1 << 16;
const RCGC1_TIMER1: u32 = 1 << 17;
const RCGC2_GPIOA: u32 = 1 << 0;

// GPIO port A (UART0 RX/TX on PA0/PA1).
const GPIOA_AFSEL: Reg = Reg(0x4000_4420);
const GPIOA_DEN: Reg = Reg(0x4000_451C);

// UART0 (ARM PL011).
const UART0: usize = 0x4000_C000;
const UART_DR: Reg = Reg(UART0);
const UART_FR: Reg = Reg(UART0 + 0x018);
const UART_IBRD: Reg = Reg(UART0 + 0x024);
const UART_FBRD: Reg = Reg(UART0 + 0x028);
const UART_LCRH: Reg = Reg(UART0 + 0x02C);
const UART_CTL: Reg = Reg(UART0 + 0x030);
const FR_TXFF: u32 = 1 << 5;
const FR_BUSY: u32 = 1 << 3;
const LCRH_WLEN8_FEN: u32 = (0x3 << 5) | (1 << 4);
const CTL_UARTEN_TXE_RXE: u32 = (1 << 0) | (1 << 8) | (1 << 9);

// General-purpose timers (register offsets).
const GPTM0: usize = 0x4003_0000;
const GPTM1: usize = 0x4003_1000;
const GPTM_CFG: usize = 0x000;
const GPTM_TAMR: usize = 0x004;
const GPTM_CTL: usize = 0x00C;
const GPTM_IMR: usize = 0x018;
const GPTM_ICR: usize = 0x024;
const GPTM_TAILR: usize = 0x028;
const TAMR_ONE_SHOT: u32 = 1;
const TIMER_A_TIMEOUT: u32 = 1 << 0;
const CTL_TAEN: u32 = 1 << 0;


/// Vector numbers behind the board-independent [`Irq`]s.
pub(crate) fn irq_number(irq: Irq) -> u16 {
    match irq {
        Irq::Soft0 => 10,
        Irq::Soft1 => 11,
        Irq::Periodic => 19,
    }
}

/// Vector of the delay wake-up timer (GPTM Timer1A).
const WAKE_IRQ: u16 = 21;

/// Switches the core to 50 MHz from the PLL, following the LM3S6965 data sheet's sequence
/// (bypass, configure, wait for lock, un-bypass).
pub(crate) fn init_clocks() {
    let mut rcc = SYSCTL_RCC.read();
    rcc = (rcc | RCC_BYPASS) & !RCC_USESYSDIV;
    SYSCTL_RCC.write(rcc);
    rcc = (rcc & !(RCC_XTAL_MASK | RCC_OSCSRC_MASK | RCC_PWRDN | RCC_OEN)) | RCC_XTAL_8MHZ;
    SYSCTL_RCC.write(rcc);
    rcc = (rcc & !RCC_SYSDIV_MASK) | RCC_SYSDIV_50MHZ | RCC_USESYSDIV;
    SYSCTL_RCC.write(rcc);
    // Bounded: a PLL that never locks leaves the core on the bypass clock rather than hanging.
    let mut spins = 0u32;
    while SYSCTL_RIS.read() & RIS_PLLLRIS == 0 && spins < 100_000 {
        spins += 1;
    }
    SYSCTL_RCC.write(rcc & !RCC_BYPASS);
    SYSCTL_RCGC1.modify(|v| v | RCGC1_UART0 | RCGC1_TIMER0 | RCGC1_TIMER1);
    SYSCTL_RCGC2.modify(|v| v | RCGC2_GPIOA);
    // Silicon needs a few cycles after enabling a peripheral clock before its registers respond.
    cortex_m::asm::delay(8);
}

/// The tick clock: microspan's SysTick clock (SysTick free-running on the core clock, extended
/// to 32 bits by the wrap count its exception keeps), so every QEMU test on this board runs it.
static CLOCK: SysTickClock = SysTickClock::new(CORE_CLOCK_HZ);

/// Starts SysTick as the tick clock, its exception at the highest priority counting wraps, and
/// the wake-up timer's interrupt.
pub(crate) fn init_tick_clock() {
    critical_section::with(|_| {
        // SAFETY: single core, inside a critical section: nothing else touches SysTick, the SCB
        // or the NVIC now, and only this module uses SysTick afterwards.
        let mut p = unsafe { cortex_m::Peripherals::steal() };
        // SysTick at priority 0, the most urgent: wraps are counted promptly.
        CLOCK.start(&mut p.SYST, &mut p.SCB);
        // The wake-up timer's interrupt, also at the most urgent level.
        // SAFETY: priority 0 for a vector whose handler only clears its own timer's flag.
        unsafe { p.NVIC.set_priority(WakeIrq, 0) };
    });
    NVIC::unpend(WakeIrq);
    // SAFETY: the wake-up handler touches only GPTM1, which this module owns.
    unsafe { NVIC::unmask(WakeIrq) };
}

#[derive(Clone, Copy)]
struct WakeIrq;

// SAFETY: vector 21 (GPTM Timer1A) exists on the LM3S6965.
unsafe impl cortex_m::interrupt::InterruptNumber for WakeIrq {
    fn number(self) -> u16 {
        WAKE_IRQ
    }
}

#[exception]
fn SysTick() {
    CLOCK.on_wrap();
}

/// Monotonic tick counter: core cycles since `init` (50 MHz), wrapping at 2^32 (after 85.9 s).
///
/// Lock-free, never masks interrupts, and safe from thread mode and any interrupt priority (see
/// `microspan::cortex_m::SysTickClock`, which this reads).
#[inline]
pub fn now_ticks() -> u32 {
    CLOCK.now()
}

fn gptm(base: usize, off: usize) -> Reg {
    Reg(base + off)
}

/// Arms GPTM Timer1A to interrupt once, `ticks` core cycles from now.
pub(crate) fn arm_wake(ticks: u32) {
    gptm(GPTM1, GPTM_CTL).write(0);
    gptm(GPTM1, GPTM_CFG).write(0);
    gptm(GPTM1, GPTM_TAMR).write(TAMR_ONE_SHOT);
    gptm(GPTM1, GPTM_TAILR).write(ticks);
    gptm(GPTM1, GPTM_ICR).write(TIMER_A_TIMEOUT);
    gptm(GPTM1, GPTM_IMR).write(TIMER_A_TIMEOUT);
    gptm(GPTM1, GPTM_CTL).write(CTL_TAEN);
}

/// Stops the wake-up timer and drops an interrupt it may have left pending.
pub(crate) fn disarm_wake() {
    gptm(GPTM1, GPTM_CTL).write(0);
    gptm(GPTM1, GPTM_ICR).write(TIMER_A_TIMEOUT);
    NVIC::unpend(WakeIrq);
}

extern "C" fn wake_handler() {
    // Only purpose: end `wfi`. Clear the flag so the level-sensitive line drops.
    gptm(GPTM1, GPTM_ICR).write(TIMER_A_TIMEOUT);
}

/// Period of the periodic interrupt, in ticks (0: stopped). Written in thread mode by
/// `start_periodic_hw`/`stop_periodic_hw` before the interrupt is unmasked / after it is masked,
/// read by `ack_periodic` in the handler.
static PERIOD: AtomicU32 = AtomicU32::new(0);
/// Tick time at which the next periodic interrupt is due (owned by the periodic handler once the
/// timer runs).
static NEXT_DUE: AtomicU32 = AtomicU32::new(0);

/// Starts the periodic interrupt on GPTM Timer0A.
///
/// Timer0A runs in one-shot mode, re-armed by the handler for the next multiple of the period
/// (so handler latency does not accumulate). The 32-bit periodic mode works on silicon, but under
/// QEMU 7.2 with `-icount ...,sleep=off` every other time-out of a periodic GPTM is lost while the
/// core sleeps in `wfi` (the timer re-arms itself inside QEMU's timer callback and the idle
/// warp jumps past the next deadline before the core runs); a one-shot re-armed by the guest
/// does not have the problem.
pub(crate) fn start_periodic_hw(period_ticks: u32) {
    let period = period_ticks.max(MIN_WAKE_TICKS);
    PERIOD.store(period, Ordering::Relaxed);
    NEXT_DUE.store(now_ticks().wrapping_add(period), Ordering::Relaxed);
    gptm(GPTM0, GPTM_CTL).write(0);
    gptm(GPTM0, GPTM_CFG).write(0);
    gptm(GPTM0, GPTM_TAMR).write(TAMR_ONE_SHOT);
    gptm(GPTM0, GPTM_TAILR).write(period);
    gptm(GPTM0, GPTM_ICR).write(TIMER_A_TIMEOUT);
    gptm(GPTM0, GPTM_IMR).write(TIMER_A_TIMEOUT);
    gptm(GPTM0, GPTM_CTL).write(CTL_TAEN);
}

/// Stops GPTM Timer0A.
pub(crate) fn stop_periodic_hw() {
    PERIOD.store(0, Ordering::Relaxed);
    gptm(GPTM0, GPTM_CTL).write(0);
    gptm(GPTM0, GPTM_IMR).write(0);
    gptm(GPTM0, GPTM_ICR).write(TIMER_A_TIMEOUT);
}

/// Clears Timer0A's time-out flag and re-arms it for the next period (before the periodic
/// handler runs).
pub(crate) fn ack_periodic() {
    gptm(GPTM0, GPTM_ICR).write(TIMER_A_TIMEOUT);
    let period = PERIOD.load(Ordering::Relaxed);
    if period == 0 {
        return;
    }
    let mut due = NEXT_DUE.load(Ordering::Relaxed).wrapping_add(period);
    let now = now_ticks();
    // Skip periods that have already passed (a handler held off for longer than a period).
    while due.wrapping_sub(now) > period {
        due = due.wrapping_add(period);
    }
    NEXT_DUE.store(due, Ordering::Relaxed);
    gptm(GPTM0, GPTM_CTL).write(0);
    gptm(GPTM0, GPTM_TAILR).write(due.wrapping_sub(now).max(1));
    gptm(GPTM0, GPTM_CTL).write(CTL_TAEN);
}

/// Configures UART0 for 115200 baud 8N1 with FIFOs, on PA0/PA1.
pub(crate) fn init_uart() -> Uart {
    GPIOA_AFSEL.modify(|v| v | 0b11);
    GPIOA_DEN.modify(|v| v | 0b11);
    UART_CTL.write(0);
    // 50 MHz / (16 * 115200) = 27.1267: IBRD 27, FBRD round(0.1267 * 64) = 8.
    UART_IBRD.write(27);
    UART_FBRD.write(8);
    UART_LCRH.write(LCRH_WLEN8_FEN);
    UART_CTL.write(CTL_UARTEN_TXE_RXE);
    Uart { _owned: () }
}

/// UART0 transmitter (PL011). Blocking through [`embedded_io::Write`], non-blocking through
/// [`embedded_hal_nb::serial::Write`]; both may be mixed on the same value.
pub struct Uart {
    _owned: (),
}

impl Uart {
    /// Queues `byte` if the transmit FIFO has room; returns `false` (and sends nothing) if full.
    #[inline]
    pub fn try_write_byte(&mut self, byte: u8) -> bool {
        if UART_FR.read() & FR_TXFF != 0 {
            return false;
        }
        UART_DR.write(byte as u32);
        true
    }

    /// Whether the transmitter is still shifting out bytes.
    #[inline]
    pub fn is_busy(&self) -> bool {
        UART_FR.read() & FR_BUSY != 0
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Write for Uart {
    /// Writes all of `buf`, waiting for FIFO space as needed.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while !self.try_write_byte(b) {}
        }
        Ok(buf.len())
    }

    /// Waits until the last byte has left the shift register.
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.is_busy() {}
        Ok(())
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(UART_FR.read() & FR_TXFF == 0)
    }
}

impl embedded_hal_nb::serial::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_hal_nb::serial::Write<u8> for Uart {
    /// Queues one byte, or `WouldBlock` when the transmit FIFO is full.
    fn write(&mut self, word: u8) -> nb::Result<(), Infallible> {
        if self.try_write_byte(word) {
            Ok(())
        } else {
            Err(nb::Error::WouldBlock)
        }
    }

    /// `WouldBlock` while bytes are still being sent.
    fn flush(&mut self) -> nb::Result<(), Infallible> {
        if self.is_busy() {
            Err(nb::Error::WouldBlock)
        } else {
            Ok(())
        }
    }
}

/// One entry of the device-specific part of the vector table.
#[derive(Clone, Copy)]
#[doc(hidden)]
#[repr(transparent)]
pub struct Vector(unsafe extern "C" fn());

extern "C" {
    /// cortex-m-rt's catch-all handler (its `link.x` PROVIDEs it).
    fn DefaultHandler();
}

const DEFAULT: Vector = Vector(DefaultHandler);

/// The LM3S6965's 48 peripheral vectors (cortex-m-rt feature `device` links this in place of its
/// default table). Vectors without a board use go to cortex-m-rt's `DefaultHandler`.
#[doc(hidden)]
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [Vector; 48] = {
    let mut v = [DEFAULT; 48];
    v[10] = Vector(irq::soft0_handler);
    v[11] = Vector(irq::soft1_handler);
    v[19] = Vector(irq::periodic_handler);
    v[WAKE_IRQ as usize] = Vector(wake_handler);
    v
};
