//! Panics inside nested spans, with no drain running: the flight-recorder ring keeps the latest
//! records, the panic handler marks the crash and halts (feature `halt-on-crash`), and
//! `microspan postmortem` reads the ring through the GDB stub.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microspan::{Ring, Session, Tracer};
use microspan_boards as board;
use microspan_reliability::{CLOCK, DEVICE_ID};

static RING: Ring<512> = Ring::flight_recorder();
static TRACER: Tracer<'static> = Tracer::new(
    &RING,
    &CLOCK,
    &Session::new("crash-panic")
        .device_id(DEVICE_ID)
        .boot_id(0x0000_0c01)
        .firmware_version("microspan-reliability crash_panic"),
);

#[entry]
fn main() -> ! {
    let _ = board::init().expect("first init");
    microspan::postmortem::register(&TRACER);
    // Old history: more than the ring holds, so the flight recorder evicts the oldest.
    for i in 0..200u32 {
        let s = TRACER.root("poll");
        s.set_tag("i", i);
    }
    let request = TRACER.root("handle-request");
    request.set_tag("http.method", "GET");
    let foo_span = request.child("Foo");
    board::delay_us(100);
    let bar = foo_span.child("Bar");
    bar.log([("event", "reading sensor".into())]);
    let reading = core::hint::black_box(7_000u32);
    if reading > 5_000 {
        panic!("sensor value out of range: {reading}");
    }
    drop((bar, foo_span, request));
    board::exit(0)
}
