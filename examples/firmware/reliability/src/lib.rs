//! Shared by the reliability firmware: the board clock, crash handlers that mark the session for
//! `microspan postmortem`, a blocking UART drain, and a semihosting report line.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt::Write as _;

use cortex_m_rt::{exception, ExceptionFrame};
use microspan::Clock;
use microspan_boards as board;

/// Ticks of the board's monotonic timer.
pub struct BoardClock;

impl Clock for BoardClock {
    #[inline]
    fn now(&self) -> u32 {
        board::now_ticks()
    }
    fn ticks_per_second(&self) -> u32 {
        board::TICKS_PER_SECOND
    }
}

/// The clock every tracer of this crate uses.
pub static CLOCK: BoardClock = BoardClock;

/// The device id of every firmware here.
pub const DEVICE_ID: u64 = 0x6d73_7061_6e00_0007;

/// Prints a line through semihosting (QEMU's stderr).
pub fn report(args: core::fmt::Arguments<'_>) {
    let mut line: heapless::String<192> = heapless::String::new();
    let _ = line.write_fmt(args);
    let _ = line.push('\n');
    board::hprint(line.as_bytes());
}

/// Ends the run after a crash: halts for the debugger (feature `halt-on-crash`) or exits QEMU
/// with `code`.
fn crash_exit(code: u8) -> ! {
    if cfg!(feature = "halt-on-crash") {
        report(format_args!(
            "microspan-reliability: halted for post-mortem"
        ));
        loop {
            cortex_m::asm::wfi();
        }
    }
    board::exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    microspan::postmortem::mark_panic(info);
    report(format_args!("firmware panicked: {info}"));
    crash_exit(board::PANIC_EXIT_CODE)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    cortex_m::interrupt::disable();
    microspan::postmortem::mark_crash_fmt(format_args!(
        "HardFault at pc={:#010x} lr={:#010x}",
        frame.pc(),
        frame.lr()
    ));
    report(format_args!("firmware HardFault: pc={:#010x}", frame.pc()));
    crash_exit(board::HARDFAULT_EXIT_CODE)
}
