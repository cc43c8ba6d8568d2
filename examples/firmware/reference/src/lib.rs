//! microspan's reference trace (the one the README, the examples and the end-to-end tests show),
//! recorded on an emulated microcontroller.
//!
//! Shared by every binary of this crate (and so by both boards):
//!
//! - [`TRACER`]: a tracer over a 4 KiB ring, timed by the board's hardware timer
//!   ([`BoardClock`]), with a fixed device id and boot id so the decoded output is reproducible.
//! - [`reference_trace`]: the Jaeger Go client's example, with the sleeps shortened to 10 ms and
//!   20 ms, plus interrupt spans, typed tags, a three-field log and baggage (see its docs for the
//!   exact shape; `tests/tests/e2e_*.rs` assert it).
//! - [`Pump`]: the drain on its transport from `microspan-serial` (the blocking UART drain, or
//!   the non-blocking RTT up-channel drain with feature `rtt`), and the periodic timer interrupt
//!   that drains while the trace records ([`start_periodic_drain`]).
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use core::cell::{Cell, RefCell};
use core::fmt::Write as _;

use critical_section::Mutex;
use microspan::{Baggage, Clock, Drain, Ring, Sampler, Session, SpanContext, Tracer, Value};
use microspan_boards::{self as board, Irq};
use microspan_serial::blocking::BlockingDrain;

/// Ticks of the board's monotonic timer ([`microspan_boards::now_ticks`]): the core clock's
/// SysTick with a wrap counter on the lm3s6965 (50 MHz), a 1 MHz TIMER on the micro:bit.
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

/// The device id announced in the session record (the high half of every trace id). Fixed so
/// that the tests' expected output does not change from run to run; a real device would use its
/// chip's unique id.
pub const DEVICE_ID: u64 = 0x6d73_7061_6e00_0003;

/// The boot id (the high half of every span id). Fixed for reproducible output; a real device
/// would use a reset counter kept in flash, or a random number.
pub const BOOT_ID: u32 = 0x0000_2a01;

/// The firmware version, a Jaeger process tag: the crate version and the board.
#[cfg(feature = "lm3s6965")]
pub const FIRMWARE_VERSION: &str = concat!(
    "microspan-reference ",
    env!("CARGO_PKG_VERSION"),
    " lm3s6965"
);
/// The firmware version, a Jaeger process tag: the crate version and the board.
#[cfg(all(feature = "microbit", not(feature = "lm3s6965")))]
pub const FIRMWARE_VERSION: &str = concat!(
    "microspan-reference ",
    env!("CARGO_PKG_VERSION"),
    " microbit"
);

/// Largest wire frame the drain builds, bytes.
pub const FRAME_BYTES: usize = 256;

/// The ring: 1024 words (4 KiB), enough for the whole trace, so nothing is dropped even before the
/// first periodic drain.
static RING: Ring<1024> = Ring::new();

/// The tracer every span of this firmware goes through, from thread mode and from interrupts. Its
/// clock's type is named (`with_clock`), so the record path reads the timer inline. The const
/// sampler of the reference example (always sample), configured as such so that the root carries
/// `sampler.type=const` and `sampler.param=true`, as the Jaeger Go client's root does.
pub static TRACER: Tracer<'static, BoardClock> = Tracer::with_clock(
    &RING,
    BoardClock,
    &Session::new("in-process-service")
        .device_id(DEVICE_ID)
        .boot_id(BOOT_ID)
        .firmware_version(FIRMWARE_VERSION),
)
.with_sampler(Sampler::Const(true));

/// The span context of `Foo`, handed from thread mode to the `Soft0` interrupt handler, which
/// records a span that FollowsFrom it (a producer and its consumer).
static FOO_CONTEXT: Mutex<Cell<Option<SpanContext>>> = Mutex::new(Cell::new(None));

/// Priority of the `Soft0` interrupt (pended inside `Bar`).
pub const SOFT0_PRIORITY: u8 = 2;
/// Priority of the `Soft1` interrupt (pended inside `Soft0`'s handler, which it preempts).
pub const SOFT1_PRIORITY: u8 = 1;
/// Priority of the periodic drain interrupt: the least urgent, so it never delays the others.
pub const DRAIN_PRIORITY: u8 = 3;

/// Registers and enables the two software interrupts whose handlers record spans.
pub fn install_interrupts() {
    board::set_handler(Irq::Soft0, on_soft0);
    board::set_handler(Irq::Soft1, on_soft1);
    board::set_priority(Irq::Soft0, SOFT0_PRIORITY);
    board::set_priority(Irq::Soft1, SOFT1_PRIORITY);
    board::enable(Irq::Soft0);
    board::enable(Irq::Soft1);
}

/// `Soft0`: a root span of its own (an interrupt is not part of the request), which is preempted
/// by `Soft1`, then a span that FollowsFrom `Foo` through the context `Foo` left in a static.
fn on_soft0() {
    // Tags known at the start go with it: one ring operation for the start and both tags. The
    // span finishes when `_isr` goes out of scope, at the end of the handler.
    let _isr = TRACER.root_with_tags(
        "isr.soft0",
        (
            ("irq.priority", SOFT0_PRIORITY as u32),
            ("span.kind", "consumer"),
        ),
    );
    board::delay_us(300);
    // More urgent: runs to completion right here, while `isr.soft0` is open.
    board::pend(Irq::Soft1);
    board::delay_us(300);
    let producer = critical_section::with(|cs| FOO_CONTEXT.borrow(cs).get());
    if let Some(producer) = producer {
        let _deferred = TRACER
            .span("isr.deferred-work")
            .follows_from(&producer)
            .start_with_tags((("queue.depth", 1u32),));
        board::delay_us(200);
    }
}

/// `Soft1`: a nested, higher-priority interrupt with a root span of its own.
fn on_soft1() {
    let _isr = TRACER.root_with_tags(
        "isr.soft1",
        (
            ("irq.priority", SOFT1_PRIORITY as u32),
            ("irq.nested", true),
        ),
    );
    board::delay_us(200);
}

/// Foo's sleep, in ticks: 10 ms.
pub const FOO_SLEEP_TICKS: u32 = board::TICKS_PER_SECOND / 100;
/// Bar's sleep, in ticks: 20 ms (twice Foo's), in two halves around the interrupt.
pub const BAR_SLEEP_TICKS: u32 = board::TICKS_PER_SECOND / 50;

/// Records the reference trace.
///
/// ```text
/// in-process-service        tags span.kind=server http.method=GET http.status_code=200
/// │                              component=microspan-reference; baggage request.id=42
/// └─ Foo                    sleeps 10 ms; tags sensor.celsius=21.5 (float),
///    │                           firmware.board="<board>@<ticks>Hz" (a dynamic string);
///    │                           log event="soft error" type="cache timeout" waited.millis=1500
///    └─ Bar                 sleeps 20 ms; Soft0 pended after 10 ms; log event="error"
///                                message="something wrong"; tag error=true
/// isr.soft0 (root)          inside Bar's time; tags irq.priority=2 span.kind=consumer
/// isr.soft1 (root)          inside isr.soft0's time (nested interrupt); irq.priority=1 irq.nested=true
/// isr.deferred-work         FollowsFrom Foo (in Foo's trace), recorded in Soft0's handler
/// ```
///
/// Baggage set on the root is inherited by `Foo` and `Bar` (`Span<'_, 2>`).
pub fn reference_trace() {
    let mut root = TRACER
        .span("in-process-service")
        .with_baggage(Baggage::<2>::new())
        .start_with_tags((
            ("span.kind", "server"),
            ("http.method", "GET"),
            ("http.status_code", 200),
            ("component", "microspan-reference"),
        ));
    root.set_baggage("request.id", "42");
    {
        let foo_span = root.child("Foo");
        foo_span.set_tag("sensor.celsius", 21.5f64);
        let mut board_text: heapless::String<32> = heapless::String::new();
        let _ = write!(board_text, "{}@{}Hz", board::BOARD, board::TICKS_PER_SECOND);
        foo_span.set_tag("firmware.board", Value::text(&board_text));
        let ctx = foo_span.context();
        critical_section::with(|cs| FOO_CONTEXT.borrow(cs).set(Some(ctx)));
        board::delay_ticks(FOO_SLEEP_TICKS);
        foo_span.log((
            ("event", "soft error"),
            ("type", "cache timeout"),
            ("waited.millis", 1500i32),
        ));
        {
            let bar = foo_span.child("Bar");
            board::delay_ticks(BAR_SLEEP_TICKS / 2);
            // The interrupt handlers record their spans while Foo and Bar are open.
            board::pend(Irq::Soft0);
            board::delay_ticks(BAR_SLEEP_TICKS / 2);
            bar.log((("event", "error"), ("message", "something wrong")));
            bar.set_tag("error", true);
        } // Bar finishes
    } // Foo finishes
    root.finish();
}

/// The single drain of [`TRACER`] and its transport (`microspan-serial`).
pub enum Pump {
    /// The board's UART, written blocking (each byte waits for FIFO space).
    Uart(BlockingDrain<Drain<'static, FRAME_BYTES>, board::Uart>),
    /// An RTT up-channel, non-blocking (`NoBlockTrim`): takes what fits, never waits.
    #[cfg(feature = "rtt")]
    Rtt(microspan_serial::rtt::RttDrain<Drain<'static, FRAME_BYTES>>),
}

impl Pump {
    /// The tracer's drain (there is one) over the UART. `None` if the drain exists.
    pub fn uart(uart: board::Uart) -> Option<Self> {
        Some(Pump::Uart(BlockingDrain::new(Drain::new(&TRACER)?, uart)))
    }

    /// The tracer's drain (there is one) over an RTT up-channel. `None` if the drain exists.
    #[cfg(feature = "rtt")]
    pub fn rtt(channel: rtt_target::UpChannel) -> Option<Self> {
        Some(Pump::Rtt(microspan_serial::rtt::RttDrain::new(
            Drain::new(&TRACER)?,
            channel,
        )))
    }

    /// Sends what the transport takes now; returns the bytes sent. Never waits on RTT; on the
    /// UART each byte waits for FIFO space.
    pub fn pump(&mut self) -> usize {
        match self {
            // The board's UART is infallible.
            Pump::Uart(d) => d.drain().unwrap_or(0),
            #[cfg(feature = "rtt")]
            Pump::Rtt(d) => d.pump(),
        }
    }

    /// `true` while the ring holds records or a frame is partly sent.
    pub fn has_pending(&self) -> bool {
        match self {
            Pump::Uart(d) => d.has_pending(),
            #[cfg(feature = "rtt")]
            Pump::Rtt(d) => d.has_pending(),
        }
    }

    /// `true` when every byte written has left: the UART's shift register is idle, or the host
    /// has read the RTT buffer up to its write offset.
    pub fn is_flushed(&self) -> bool {
        match self {
            Pump::Uart(d) => !d.writer().is_busy(),
            #[cfg(feature = "rtt")]
            Pump::Rtt(d) => d.host_caught_up(),
        }
    }

    /// The drain's counters.
    pub fn stats(&self) -> microspan::drain::DrainStats {
        match self {
            Pump::Uart(d) => d.source().stats(),
            #[cfg(feature = "rtt")]
            Pump::Rtt(d) => d.source().stats(),
        }
    }
}

/// The pump while the periodic interrupt owns it.
static PUMP: Mutex<RefCell<Option<Pump>>> = Mutex::new(RefCell::new(None));

/// Drain period: every 5 ms.
pub const DRAIN_PERIOD_TICKS: u32 = board::TICKS_PER_SECOND / 200;

/// Hands `pump` to the periodic timer interrupt, which drains every [`DRAIN_PERIOD_TICKS`]
/// while the firmware records.
pub fn start_periodic_drain(pump: Pump) {
    critical_section::with(|cs| *PUMP.borrow_ref_mut(cs) = Some(pump));
    board::set_handler(Irq::Periodic, on_periodic);
    board::set_priority(Irq::Periodic, DRAIN_PRIORITY);
    board::start_periodic(DRAIN_PERIOD_TICKS);
}

/// Stops the periodic drain and takes the pump back.
pub fn stop_periodic_drain() -> Pump {
    board::stop_periodic();
    critical_section::with(|cs| PUMP.borrow_ref_mut(cs).take())
        .expect("start_periodic_drain ran first")
}

fn on_periodic() {
    // Take the pump out for the duration of the write, so interrupts stay enabled while bytes
    // go out (a critical section only guards the hand-over; thumbv6m has no compare-and-swap).
    let Some(mut pump) = critical_section::with(|cs| PUMP.borrow_ref_mut(cs).take()) else {
        return;
    };
    pump.pump();
    critical_section::with(|cs| *PUMP.borrow_ref_mut(cs) = Some(pump));
}

/// Prints `microspan-reference: board=.. dropped=N frames=N bytes=N` through semihosting (to
/// QEMU's stderr), so the tests can check the decoder's drop count against the device's own.
pub fn report(pump: &Pump) {
    let stats = pump.stats();
    let mut line: heapless::String<128> = heapless::String::new();
    let _ = writeln!(
        line,
        "microspan-reference: board={} dropped={} frames={} bytes={}",
        board::BOARD,
        TRACER.dropped(),
        stats.frames,
        stats.bytes
    );
    board::hprint(line.as_bytes());
}
