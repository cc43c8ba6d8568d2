//! The reference trace over the UART (lm3s6965: UART0; micro:bit: the nRF51 UART).
//!
//! Records the trace of [`microspan_reference::reference_trace`] while a periodic timer interrupt
//! drains the ring to the UART, drains the rest (blocking) at the end, prints the device's drop
//! count through semihosting and exits QEMU with code 0.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microspan_boards as board;
use microspan_reference::{self as reference, Pump};

#[entry]
fn main() -> ! {
    let board::Board { uart } = board::init().expect("first init");
    let pump = Pump::uart(uart).expect("the only drain");
    reference::install_interrupts();
    reference::start_periodic_drain(pump);

    reference::reference_trace();

    let mut pump = reference::stop_periodic_drain();
    while pump.has_pending() {
        pump.pump();
    }
    while !pump.is_flushed() {}
    reference::report(&pump);
    board::exit(0)
}
