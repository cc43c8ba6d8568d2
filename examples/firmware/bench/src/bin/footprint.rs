//! A reference-like firmware for the footprint figures: the reference trace (root → Foo → Bar,
//! three tags on the root, a log and a tag on Bar, an interrupt span) drained over the UART with
//! the blocking drain. Built twice: as is, and with feature `notrace`, which compiles every tracer
//! call out (the board, the delays and the interrupt stay), so the difference in `llvm-size` is
//! what tracing costs in flash and static RAM.
//!
//! It prints the sizes of the tracer's types through semihosting (`footprint: ...`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microspan_boards::{self as board, Irq};

#[cfg(not(feature = "notrace"))]
mod traced {
    use microspan_bench_firmware::TRACER;
    use microspan_serial::blocking::BlockingDrain;

    pub use microspan_bench_firmware::BenchDrain;

    pub fn isr() {
        let _s = TRACER.root_with_tags("isr.soft0", (("irq.priority", 2u32),));
    }

    pub fn trace(work: impl Fn(u32)) {
        let root = TRACER.root_with_tags(
            "in-process-service",
            (
                ("span.kind", "server"),
                ("http.method", "GET"),
                ("http.status_code", 200u32),
            ),
        );
        {
            let foo = root.child("Foo");
            work(1);
            let bar = foo.child("Bar");
            work(2);
            bar.log((("event", "error"), ("message", "something wrong")));
            bar.set_tag("error", true);
        }
    }

    pub fn run(uart: microspan_boards::Uart, work: impl Fn(u32)) {
        let drain = BenchDrain::new(&TRACER).expect("the only drain");
        let mut out = BlockingDrain::new(drain, uart);
        trace(work);
        while out.has_pending() {
            let _ = out.drain();
        }
        microspan_bench_firmware::say(format_args!(
            "footprint: tracer={} drain={} span={} ring_words={} dropped={}",
            core::mem::size_of::<microspan::Tracer<'static, microspan_bench_firmware::BoardClock>>(
            ),
            core::mem::size_of::<BenchDrain>(),
            core::mem::size_of::<microspan_bench_firmware::BenchSpan>(),
            microspan_bench_firmware::RING_WORDS,
            TRACER.dropped()
        ));
    }
}

#[cfg(feature = "notrace")]
mod traced {
    pub fn isr() {}
    pub fn run(uart: microspan_boards::Uart, work: impl Fn(u32)) {
        let _uart = uart;
        work(1);
        work(2);
        // The same formatting as the traced variant, so `core::fmt` weighs the same in both.
        let zero = core::hint::black_box(0usize);
        microspan_bench_firmware::say(format_args!(
            "footprint: tracer={zero} drain={zero} span={zero} ring_words={zero} dropped={}",
            zero as u32
        ));
    }
}

fn work(step: u32) {
    board::delay_us(100 * step);
    if step == 2 {
        board::pend(Irq::Soft0);
    }
}

#[entry]
fn main() -> ! {
    let board::Board { uart } = board::init().expect("first init");
    board::set_handler(Irq::Soft0, traced::isr);
    board::enable(Irq::Soft0);
    traced::run(uart, work);
    board::exit(0)
}
