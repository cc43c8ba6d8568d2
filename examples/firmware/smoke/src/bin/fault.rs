//! Firmware that takes a HardFault (an undefined instruction): proves that a fault ends the
//! QEMU run with exit code 102 (microspan-boards feature `panic-exit`) instead of hanging.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_io::Write as _;
use microspan_boards as board;

#[entry]
fn main() -> ! {
    let board::Board { mut uart } = board::init().expect("first init");
    uart.write_all(b"about to fault\n").ok();
    uart.flush().ok();
    // An undefined instruction: a UsageFault, escalated to HardFault (QEMU's lm3s6965evb and
    // microbit answer loads from unmapped addresses with 0 rather than a bus fault).
    cortex_m::asm::udf()
}
