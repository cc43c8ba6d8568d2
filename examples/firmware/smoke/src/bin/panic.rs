//! Firmware that panics after a UART line: proves that a panic ends the QEMU run with
//! exit code 101 (microspan-boards feature `panic-exit`) instead of hanging.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_io::Write as _;
use microspan_boards as board;

#[entry]
fn main() -> ! {
    let board::Board { mut uart } = board::init().expect("first init");
    uart.write_all(b"about to panic\n").ok();
    uart.flush().ok();
    let limit = core::hint::black_box(3u32);
    if limit > 2 {
        panic!("deliberate panic, limit={limit}");
    }
    board::exit(0)
}
