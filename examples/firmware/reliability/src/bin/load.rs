//! Exact loss accounting under load: a fast periodic timer interrupt records spans while the main
//! loop records too, into a small ring that a slow drain (one frame every few iterations) cannot
//! keep empty. The firmware counts the records it attempted and prints them with the ring's loss
//! counter through semihosting; the test checks produced == delivered + lost exactly.
//! Feature `overwrite`: the ring is a flight recorder (evicts the oldest) instead of drop-new.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::entry;
use microspan::{Drain, Ring, Session, Span, Tracer};
use microspan_boards::{self as board, Irq};
use microspan_reliability::{report, CLOCK, DEVICE_ID};
use microspan_serial::blocking::BlockingDrain;

#[cfg(not(feature = "overwrite"))]
static RING: Ring<256> = Ring::new();
#[cfg(feature = "overwrite")]
static RING: Ring<256> = Ring::flight_recorder();
static TRACER: Tracer<'static> = Tracer::new(
    &RING,
    &CLOCK,
    &Session::new("load")
        .device_id(DEVICE_ID)
        .boot_id(0x0000_10ad)
        .firmware_version("microspan-reliability load"),
);

/// Records attempted by the interrupt handler (thumbv7m has atomic read-modify-write).
static IRQ_ATTEMPTED: AtomicU32 = AtomicU32::new(0);
static IRQ_RUNS: AtomicU32 = AtomicU32::new(0);

/// The timer interrupt's period.
const PERIOD_US: u32 = 50;

/// Records a span's worth and returns the records attempted: a START, a tag and an END (a span
/// whose START was dropped counts the two it then skips as dropped too).
fn attempt(span: Span<'_>) -> u32 {
    span.set_tag("n", 1u32);
    3
}

fn on_tick() {
    IRQ_RUNS.fetch_add(1, Ordering::Relaxed);
    let n = attempt(TRACER.root("irq-tick"));
    IRQ_ATTEMPTED.fetch_add(n, Ordering::Relaxed);
}

#[entry]
fn main() -> ! {
    let board::Board { uart } = board::init().expect("first init");
    let mut drain = BlockingDrain::new(
        Drain::<'static, 128>::new(&TRACER).expect("one drain"),
        uart,
    );
    board::set_handler(Irq::Periodic, on_tick);
    board::set_priority(Irq::Periodic, 1);
    // Fast enough that the slow drain cannot keep up.
    board::start_periodic(board::us_to_ticks(PERIOD_US));
    let mut main_attempted = 0u32;
    for i in 0..3000u32 {
        main_attempted += attempt(TRACER.root("main-work"));
        if i % 32 == 0 {
            // The slow drain: at most one frame now and then.
            let _ = drain.drain_frame();
        }
    }
    board::stop_periodic();
    while drain.has_pending() {
        let _ = drain.drain();
    }
    while drain.writer().is_busy() {}
    let irq = IRQ_ATTEMPTED.load(Ordering::Relaxed);
    report(format_args!(
        "microspan-load: produced={} main={} irq={} irq_runs={} lost={} evicted={} policy={:?}",
        main_attempted + irq,
        main_attempted,
        irq,
        IRQ_RUNS.load(Ordering::Relaxed),
        TRACER.dropped(),
        RING.evicted(),
        RING.policy()
    ));
    board::exit(0)
}
