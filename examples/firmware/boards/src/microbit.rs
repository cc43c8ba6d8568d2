//! BBC micro:bit v1, Nordic nRF51822 (Cortex-M0), as QEMU's `microbit` machine emulates it.
//!
//! | what | hardware | notes |
//! |---|---|---|
//! | core clock | 16 MHz HFCLK | the crystal is started; QEMU does not model the CLOCK block |
//! | tick clock | TIMER0, 32-bit, prescaler 4: 1 MHz, read with `TASKS_CAPTURE[3]` / `CC[3]` | lock-free, no wrap counter needed (wraps after 71.6 min) |
//! | UART | UART0 at 0x4000_2000, TX on P0.24 (the micro:bit's USB-serial line) | ENABLE=4, STARTTX, write TXD, TXDRDY |
//! | periodic interrupt | TIMER1, 32-bit, 1 MHz, `COMPARE[0]` with the COMPARE0_CLEAR short, vector 9 | |
//! | delay wake-up | TIMER0 `COMPARE[1]`, vector 8 | |
//! | software interrupts | SWI0 and SWI1, vectors 20 and 21 | raised only by `NVIC::pend` |
//!
//! Ownership: after `init`, this module owns UART0, TIMER0, TIMER1, P0.24 and the NVIC entries
//! of vectors 8, 9, 20 and 21. Firmware must not reconfigure them.

use core::convert::Infallible;

use cortex_m::peripheral::NVIC;
use embedded_hal_nb::nb;

use crate::irq::{self, Irq};
use crate::mmio::Reg;

/// Name of the board, as tests and logs print it.
pub const BOARD: &str = "microbit";

/// QEMU arguments that select this board (before `-kernel ELF`).
pub const QEMU_MACHINE_ARGS: &[&str] = &["-machine", "microbit"];

/// Rate of [`now_ticks`]: TIMER0 at 16 MHz / 2^4.
pub const TICKS_PER_SECOND: u32 = 1_000_000;

/// NVIC priority bits implemented by the nRF51 (Cortex-M0).
pub(crate) const NVIC_PRIO_BITS: u8 = 2;

/// Below this many ticks `delay_ticks` spins instead of arming the wake-up compare.
pub(crate) const MIN_WAKE_TICKS: u32 = 20;

// CLOCK.
const CLOCK_TASKS_HFCLKSTART: Reg = Reg(0x4000_0000);
const CLOCK_EVENTS_HFCLKSTARTED: Reg = Reg(0x4000_0100);

// GPIO P0.
const P0_OUTSET: Reg = Reg(0x5000_0508);
const P0_DIRSET: Reg = Reg(0x5000_0518);
const UART_TX_PIN: u32 = 24;
const UART_RX_PIN: u32 = 25;

// UART0.
const UART0: usize = 0x4000_2000;
const UART_TASKS_STARTTX: Reg = Reg(UART0 + 0x008);
const UART_EVENTS_TXDRDY: Reg = Reg(UART0 + 0x11C);
const UART_ENABLE: Reg = Reg(UART0 + 0x500);
const UART_PSELTXD: Reg = Reg(UART0 + 0x50C);
const UART_PSELRXD: Reg = Reg(UART0 + 0x514);
const UART_TXD: Reg = Reg(UART0 + 0x51C);
const UART_BAUDRATE: Reg = Reg(UART0 + 0x524);
const UART_CONFIG: Reg = Reg(UART0 + 0x56C);
const UART_ENABLE_ENABLED: u32 = 4;
const UART_BAUD_115200: u32 = 0x01D7_E000;

// TIMERs (register offsets).
const TIMER0: usize = 0x4000_8000;
const TIMER1: usize = 0x4000_9000;
const T_TASKS_START: usize = 0x000;
const T_TASKS_STOP: usize = 0x004;
const T_TASKS_CLEAR: usize = 0x00C;
const T_TASKS_CAPTURE3: usize = 0x04C;
const T_EVENTS_COMPARE0: usize = 0x140;
const T_EVENTS_COMPARE1: usize = 0x144;
const T_SHORTS: usize = 0x200;
const T_INTENSET: usize = 0x304;
const T_INTENCLR: usize = 0x308;
const T_MODE: usize = 0x504;
const T_BITMODE: usize = 0x508;
const T_PRESCALER: usize = 0x510;
const T_CC0: usize = 0x540;
const T_CC1: usize = 0x544;
const T_CC3: usize = 0x54C;
const MODE_TIMER: u32 = 0;
const BITMODE_32: u32 = 3;
const PRESCALER_1MHZ: u32 = 4;
const SHORTS_COMPARE0_CLEAR: u32 = 1 << 0;
const INT_COMPARE0: u32 = 1 << 16;
const INT_COMPARE1: u32 = 1 << 17;

fn timer(base: usize, off: usize) -> Reg {
    Reg(base + off)
}

/// Vector numbers behind the board-independent [`Irq`]s.
pub(crate) fn irq_number(irq: Irq) -> u16 {
    match irq {
        Irq::Soft0 => 20,
        Irq::Soft1 => 21,
        Irq::Periodic => 9,
    }
}

/// Vector of the delay wake-up (TIMER0 `COMPARE[1]`).
const WAKE_IRQ: u16 = 8;

#[derive(Clone, Copy)]
struct WakeIrq;

// SAFETY: vector 8 (TIMER0) exists on the nRF51.
unsafe impl cortex_m::interrupt::InterruptNumber for WakeIrq {
    fn number(self) -> u16 {
        WAKE_IRQ
    }
}

/// Starts the 16 MHz crystal oscillator, so timers and the UART run from an accurate clock.
pub(crate) fn init_clocks() {
    CLOCK_EVENTS_HFCLKSTARTED.write(0);
    CLOCK_TASKS_HFCLKSTART.write(1);
    // Bounded: QEMU does not emulate the CLOCK block (the event never comes), and on silicon the
    // timers run from the RC oscillator meanwhile.
    let mut spins = 0u32;
    while CLOCK_EVENTS_HFCLKSTARTED.read() == 0 && spins < 10_000 {
        spins += 1;
    }
}

/// Starts TIMER0 as a free-running 32-bit counter at 1 MHz, and its wake-up interrupt.
pub(crate) fn init_tick_clock() {
    timer(TIMER0, T_TASKS_STOP).write(1);
    timer(TIMER0, T_INTENCLR).write(u32::MAX);
    timer(TIMER0, T_SHORTS).write(0);
    timer(TIMER0, T_MODE).write(MODE_TIMER);
    timer(TIMER0, T_BITMODE).write(BITMODE_32);
    timer(TIMER0, T_PRESCALER).write(PRESCALER_1MHZ);
    timer(TIMER0, T_TASKS_CLEAR).write(1);
    timer(TIMER0, T_TASKS_START).write(1);
    critical_section::with(|_| {
        // SAFETY: single core, inside a critical section: nothing else writes the NVIC now.
        let mut p = unsafe { cortex_m::Peripherals::steal() };
        // SAFETY: priority 0 for a vector whose handler only clears its own compare event.
        unsafe { p.NVIC.set_priority(WakeIrq, 0) };
    });
    NVIC::unpend(WakeIrq);
    // SAFETY: the wake-up handler touches only TIMER0's COMPARE[1] event, owned by this module.
    unsafe { NVIC::unmask(WakeIrq) };
}

/// Monotonic tick counter: microseconds since `init` (TIMER0 at 1 MHz), wrapping at 2^32.
///
/// Lock-free and safe from any context: it triggers a capture into `CC[3]` and reads it back. If an
/// interrupt captures in between, the value read is that later capture, still a time between
/// this call's start and end.
#[inline]
pub fn now_ticks() -> u32 {
    timer(TIMER0, T_TASKS_CAPTURE3).write(1);
    timer(TIMER0, T_CC3).read()
}

/// Arms TIMER0's `COMPARE[1]` to interrupt `ticks` ticks from now.
pub(crate) fn arm_wake(ticks: u32) {
    timer(TIMER0, T_EVENTS_COMPARE1).write(0);
    timer(TIMER0, T_CC1).write(now_ticks().wrapping_add(ticks));
    timer(TIMER0, T_INTENSET).write(INT_COMPARE1);
}

/// Disables the wake-up compare and drops an interrupt it may have left pending.
pub(crate) fn disarm_wake() {
    timer(TIMER0, T_INTENCLR).write(INT_COMPARE1);
    timer(TIMER0, T_EVENTS_COMPARE1).write(0);
    NVIC::unpend(WakeIrq);
}

extern "C" fn wake_handler() {
    // Only purpose: end `wfi`. Clear the event (and read it back so the write has landed before
    // the handler returns, as Nordic recommends) so the interrupt does not fire again.
    timer(TIMER0, T_EVENTS_COMPARE1).write(0);
    let _ = timer(TIMER0, T_EVENTS_COMPARE1).read();
}

/// Starts TIMER1 at 1 MHz, `COMPARE[0]` every `period_ticks`, cleared by the short.
pub(crate) fn start_periodic_hw(period_ticks: u32) {
    timer(TIMER1, T_TASKS_STOP).write(1);
    timer(TIMER1, T_MODE).write(MODE_TIMER);
    timer(TIMER1, T_BITMODE).write(BITMODE_32);
    timer(TIMER1, T_PRESCALER).write(PRESCALER_1MHZ);
    timer(TIMER1, T_CC0).write(period_ticks.max(1));
    timer(TIMER1, T_SHORTS).write(SHORTS_COMPARE0_CLEAR);
    timer(TIMER1, T_EVENTS_COMPARE0).write(0);
    timer(TIMER1, T_INTENSET).write(INT_COMPARE0);
    timer(TIMER1, T_TASKS_CLEAR).write(1);
    timer(TIMER1, T_TASKS_START).write(1);
}

/// Stops TIMER1.
pub(crate) fn stop_periodic_hw() {
    timer(TIMER1, T_TASKS_STOP).write(1);
    timer(TIMER1, T_INTENCLR).write(u32::MAX);
    timer(TIMER1, T_EVENTS_COMPARE0).write(0);
}

/// Clears TIMER1's `COMPARE[0]` event (before the periodic handler runs).
#[inline(always)]
pub(crate) fn ack_periodic() {
    timer(TIMER1, T_EVENTS_COMPARE0).write(0);
    let _ = timer(TIMER1, T_EVENTS_COMPARE0).read();
}

/// Configures UART0 for 115200 baud 8N1 on the micro:bit's interface-chip pins and starts the
/// transmitter.
pub(crate) fn init_uart() -> Uart {
    P0_OUTSET.write(1 << UART_TX_PIN);
    P0_DIRSET.write(1 << UART_TX_PIN);
    UART_PSELTXD.write(UART_TX_PIN);
    UART_PSELRXD.write(UART_RX_PIN);
    UART_BAUDRATE.write(UART_BAUD_115200);
    UART_CONFIG.write(0);
    UART_ENABLE.write(UART_ENABLE_ENABLED);
    UART_EVENTS_TXDRDY.write(0);
    UART_TASKS_STARTTX.write(1);
    Uart { in_flight: false }
}

/// UART0 transmitter. Blocking through [`embedded_io::Write`], non-blocking through
/// [`embedded_hal_nb::serial::Write`]; both may be mixed on the same value.
///
/// The nRF51 UART holds one byte: after writing TXD, the next byte may be written once
/// EVENTS_TXDRDY says the previous one has gone.
pub struct Uart {
    /// A byte was written to TXD and its TXDRDY event has not been consumed yet.
    in_flight: bool,
}

impl Uart {
    /// Whether TXD can take a byte now (consuming the TXDRDY event of the previous one).
    #[inline]
    fn ready(&mut self) -> bool {
        if self.in_flight {
            if UART_EVENTS_TXDRDY.read() == 0 {
                return false;
            }
            UART_EVENTS_TXDRDY.write(0);
            self.in_flight = false;
        }
        true
    }

    /// Sends `byte` if the transmitter is free; returns `false` (and sends nothing) if not.
    #[inline]
    pub fn try_write_byte(&mut self, byte: u8) -> bool {
        if !self.ready() {
            return false;
        }
        UART_TXD.write(byte as u32);
        self.in_flight = true;
        true
    }

    /// Whether the last byte written is still being sent.
    #[inline]
    pub fn is_busy(&self) -> bool {
        self.in_flight && UART_EVENTS_TXDRDY.read() == 0
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Write for Uart {
    /// Writes all of `buf`, waiting for TXDRDY between bytes.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while !self.try_write_byte(b) {}
        }
        Ok(buf.len())
    }

    /// Waits until the last byte has been sent.
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.is_busy() {}
        Ok(())
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.ready())
    }
}

impl embedded_hal_nb::serial::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_hal_nb::serial::Write<u8> for Uart {
    /// Sends one byte, or `WouldBlock` while the previous one is still going out.
    fn write(&mut self, word: u8) -> nb::Result<(), Infallible> {
        if self.try_write_byte(word) {
            Ok(())
        } else {
            Err(nb::Error::WouldBlock)
        }
    }

    /// `WouldBlock` while the last byte is still being sent.
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

/// The nRF51's 32 peripheral vectors (cortex-m-rt feature `device` links this in place of its
/// default table). Vectors without a board use go to cortex-m-rt's `DefaultHandler`.
#[doc(hidden)]
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [Vector; 32] = {
    let mut v = [DEFAULT; 32];
    v[WAKE_IRQ as usize] = Vector(wake_handler);
    v[9] = Vector(irq::periodic_handler);
    v[20] = Vector(irq::soft0_handler);
    v[21] = Vector(irq::soft1_handler);
    v
};
