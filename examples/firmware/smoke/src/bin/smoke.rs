//! Smoke firmware: proves the board layer under QEMU.
//!
//! UART output, in order (the QEMU test asserts it byte for byte, then parses the report line):
//! 1. `SMOKE_HEADER`: a text line, then every byte value 0x00..=0xFF in order (so 0x00, 0x0A,
//!    0x0D, 0x7F, 0x80 and 0xFF all cross the link), written with the blocking
//!    `embedded_io::Write`;
//! 2. `0x00 0x0A 0xFF` written one byte at a time through the non-blocking
//!    `embedded_hal_nb::serial::Write`, then `\n`;
//! 3. a report line `report board=.. tps=.. delay=.. elapsed=.. long=.. long_elapsed=..
//!    spin=.. periodic=.. soft=.. nested=..\n` with what the clock and interrupts measured;
//! 4. `OK\n` if every check passed (then exit code 0), or `FAIL <check>\n` (exit code 1).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::entry;
use embedded_io::Write as _;
use microspan_boards::{self as board, Irq};

static PERIODIC_COUNT: AtomicU32 = AtomicU32::new(0);
static SOFT0_COUNT: AtomicU32 = AtomicU32::new(0);
/// Event log of the nesting test: each handler appends its digit (0 or 1) entry/exit.
static NEST_LOG: AtomicU32 = AtomicU32::new(0);

fn push(d: u32) {
    // Single core; handlers run to completion before the one they preempted continues, so a
    // plain load+store (no CAS: thumbv6m has none) cannot lose an update here.
    NEST_LOG.store(NEST_LOG.load(Ordering::Relaxed) * 10 + d, Ordering::Relaxed);
}

fn on_periodic() {
    PERIODIC_COUNT.store(
        PERIODIC_COUNT.load(Ordering::Relaxed) + 1,
        Ordering::Relaxed,
    );
}

fn on_soft0() {
    SOFT0_COUNT.store(SOFT0_COUNT.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn on_soft0_nesting() {
    push(1);
    board::pend(Irq::Soft1); // more urgent: runs right here, before the next line
    push(2);
}

fn on_soft1() {
    push(3);
}

/// How many times the monotonicity check reads the clock (through [`read_clock`], so the
/// instruction-count test can divide that function's count by this).
const CLOCK_READS: u32 = 2000;

/// One clock read, kept out of line so its instructions can be counted by address range.
#[inline(never)]
#[no_mangle]
pub extern "C" fn read_clock() -> u32 {
    board::now_ticks()
}

#[entry]
fn main() -> ! {
    let board::Board { mut uart } = board::init().expect("first init");

    // 1. Every byte value through the blocking writer.
    let mut all = [0u8; 256];
    for (i, b) in all.iter_mut().enumerate() {
        *b = i as u8;
    }
    uart.write_all(b"microspan-smoke\n").ok();
    uart.write_all(&all).ok();

    // 2. The non-blocking writer.
    for &b in &[0x00u8, 0x0A, 0xFF, b'\n'] {
        nb_block(|| embedded_hal_nb::serial::Write::write(&mut uart, b));
    }
    nb_block(|| embedded_hal_nb::serial::Write::flush(&mut uart));

    // 3. The clock around a delay: 10 ms.
    let tps = board::TICKS_PER_SECOND;
    let delay = tps / 100;
    let t0 = board::now_ticks();
    board::delay_ticks(delay);
    let elapsed = board::ticks_since(t0);

    // A long delay, crossing several 24-bit SysTick wraps on the lm3s6965: 1.5 s.
    let long = tps / 2 * 3;
    let t0 = board::now_ticks();
    board::delay_ticks(long);
    let long_elapsed = board::ticks_since(t0);

    // Busy work advances the clock too, and reads never go backwards.
    let t0 = board::now_ticks();
    let mut prev = t0;
    let mut backwards = false;
    for _ in 0..CLOCK_READS {
        let now = read_clock();
        if now.wrapping_sub(prev) > tps {
            backwards = true;
        }
        prev = now;
    }
    let spin = prev.wrapping_sub(t0);

    // Periodic interrupt every 1 ms for 10.5 ms.
    board::set_handler(Irq::Periodic, on_periodic);
    board::start_periodic(tps / 1000);
    board::delay_ticks(tps / 1000 * 21 / 2);
    board::stop_periodic();
    let periodic = PERIODIC_COUNT.load(Ordering::Relaxed);

    // Software interrupt from thread mode.
    board::set_handler(Irq::Soft0, on_soft0);
    board::enable(Irq::Soft0);
    board::pend(Irq::Soft0);
    let soft = SOFT0_COUNT.load(Ordering::Relaxed);

    // Nesting: Soft1 (level 1) preempts Soft0 (level 2).
    board::set_handler(Irq::Soft0, on_soft0_nesting);
    board::set_handler(Irq::Soft1, on_soft1);
    board::set_priority(Irq::Soft0, 2);
    board::set_priority(Irq::Soft1, 1);
    board::enable(Irq::Soft1);
    board::pend(Irq::Soft0);
    let nested = NEST_LOG.load(Ordering::Relaxed);

    let _ = writeln!(
        uart,
        "report board={} tps={} delay={} elapsed={} long={} long_elapsed={} spin={} periodic={} soft={} nested={}",
        board::BOARD,
        tps,
        delay,
        elapsed,
        long,
        long_elapsed,
        spin,
        periodic,
        soft,
        nested
    );

    let slack = tps / 1000; // 1 ms
    let failed = if elapsed < delay || elapsed > delay + slack {
        Some("delay")
    } else if long_elapsed < long || long_elapsed > long + slack {
        Some("long-delay")
    } else if backwards || spin == 0 {
        Some("monotonic")
    } else if !(9..=11).contains(&periodic) {
        Some("periodic")
    } else if soft != 1 {
        Some("soft-irq")
    } else if nested != 132 {
        Some("nesting")
    } else {
        None
    };
    match failed {
        None => {
            uart.write_all(b"OK\n").ok();
            uart.flush().ok();
            board::exit(0)
        }
        Some(what) => {
            let _ = writeln!(uart, "FAIL {what}");
            uart.flush().ok();
            board::exit(1)
        }
    }
}

fn nb_block<E>(mut f: impl FnMut() -> embedded_hal_nb::nb::Result<(), E>) {
    loop {
        match f() {
            Err(embedded_hal_nb::nb::Error::WouldBlock) => continue,
            _ => return,
        }
    }
}
