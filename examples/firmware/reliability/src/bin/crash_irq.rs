//! Takes a HardFault in an interrupt handler, inside a span opened there while thread mode has
//! spans open too. The HardFault handler marks the crash and halts (feature `halt-on-crash`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microspan::{Ring, Session, Tracer};
use microspan_boards::{self as board, Irq};
use microspan_reliability::{CLOCK, DEVICE_ID};

static RING: Ring<1024> = Ring::new();
static TRACER: Tracer<'static> = Tracer::new(
    &RING,
    &CLOCK,
    &Session::new("crash-irq")
        .device_id(DEVICE_ID)
        .boot_id(0x0000_0c02)
        .firmware_version("microspan-reliability crash_irq"),
);

fn on_soft0() {
    let span = TRACER.root("irq:soft0");
    span.set_tag("irq", "Soft0");
    let inner = span.child("decode-packet");
    inner.log([("event", "about to fault".into())]);
    // An undefined instruction: a UsageFault, escalated to HardFault (UsageFault is not enabled).
    cortex_m::asm::udf();
}

#[entry]
fn main() -> ! {
    let _ = board::init().expect("first init");
    microspan::postmortem::register(&TRACER);
    for _ in 0..3 {
        TRACER.root("idle").finish();
    }
    let main_loop = TRACER.root("main-loop");
    let work = main_loop.child("process");
    board::set_handler(Irq::Soft0, on_soft0);
    board::enable(Irq::Soft0);
    board::pend(Irq::Soft0);
    drop((work, main_loop));
    board::exit(0)
}
