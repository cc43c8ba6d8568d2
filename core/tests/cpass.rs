//! Compile-time thread-safety assertions: this file compiles only if the types that cross
//! threads and interrupt priorities have the auto traits the design promises (heapless
//! `tests/cpass.rs` does the same). A change that makes, say, `Tracer` lose `Sync` fails the
//! build here instead of in a user's firmware.
//!
//! - `Ring<N>` and `Tracer` are `Sync`: they live in `static`s and every method takes `&self`, from
//!   thread mode, any interrupt handler and (on the desktop) any thread.
//! - A `Span` is `Send` (it may move to another thread or task) but **not** `Sync`: its tag count
//!   and losses are `Cell`s, updated without atomics because one owner records into it.
//! - An `Instrumented` future is `Send` when its future is (executors move tasks).
//! - The `Drain` is `Send` (the consumer may run on its own thread or task); there is one.
//! - Contexts, ids, flags and values are plain `Copy` data, `Send + Sync`.

use microspan::future::Instrumented;
use microspan::wire::decode::{Accumulator, FrameError, RecordError};
use microspan::{
    Baggage, Clock, Drain, Flags, Ring, Session, Span, SpanBuilder, SpanContext, SpanId, TraceId,
    Tracer, Value,
};

/// A clock type of the firmware's own, as `Tracer::with_clock` takes.
struct Ticks;

impl Clock for Ticks {
    fn now(&self) -> u32 {
        0
    }
    fn ticks_per_second(&self) -> u32 {
        1
    }
}

const fn is_send<T: Send + ?Sized>() {}
const fn is_sync<T: Sync + ?Sized>() {}
const fn is_copy<T: Copy>() {}

/// Fails to compile when `T: Sync` (a trait with two blanket impls becomes ambiguous).
trait AmbiguousIfSync<A> {
    fn some_item() {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

const _: () = {
    is_sync::<Ring<16>>();
    is_send::<Ring<16>>();
    is_sync::<Ring<1024>>();
    is_sync::<Tracer<'static>>();
    is_send::<Tracer<'static>>();
    is_sync::<dyn Clock>();
    is_send::<Span<'static>>();
    is_send::<Span<'static, 4>>();
    is_send::<SpanBuilder<'static, 2>>();
    // With a clock type of the firmware's own (`Tracer::with_clock`).
    is_sync::<Tracer<'static, Ticks>>();
    is_send::<Span<'static, 0, Ticks>>();
    is_send::<Instrumented<'static, core::future::Ready<u32>, 0, Ticks>>();
    // A future in a span moves to the executor's task like the future alone.
    is_send::<Instrumented<'static, core::future::Ready<u32>>>();
    is_send::<Instrumented<'static, core::future::Ready<u32>, 2>>();
    is_send::<Drain<'static>>();
    is_send::<Drain<'static, 64, 16>>();
    is_send::<Baggage<4>>();
    is_sync::<Baggage<4>>();
    is_send::<Session>();
    is_sync::<Session>();
    is_send::<SpanContext>();
    is_sync::<SpanContext>();
    is_copy::<SpanContext>();
    is_copy::<TraceId>();
    is_copy::<SpanId>();
    is_copy::<Flags>();
    is_send::<Value<'static>>();
    is_sync::<Value<'static>>();
    is_copy::<Value<'static>>();
    is_send::<Accumulator<64>>();
    is_send::<FrameError>();
    is_sync::<RecordError>();
};

/// `Span` is deliberately not `Sync`: this line stops compiling (ambiguous `some_item`) if it
/// ever becomes `Sync`, which would mean its `Cell`s were swapped for something else; revisit
/// the tracer's docs then.
const _: fn() = <Span<'static> as AmbiguousIfSync<_>>::some_item;

/// Statics work: a ring, a clock and a tracer in `static`s, a span moved to another thread, the
/// drain on a third.
#[test]
fn statics_spans_and_drain_cross_threads() {
    struct Ticks;
    impl Clock for Ticks {
        fn now(&self) -> u32 {
            0
        }
        fn ticks_per_second(&self) -> u32 {
            1_000
        }
    }
    static RING: Ring<256> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("cpass"));
    let span = TRACER.root("moved");
    std::thread::spawn(move || span.set_tag("on", "another thread"))
        .join()
        .unwrap();
    let drain: Drain<'static, 128> = Drain::new(&TRACER).unwrap();
    let bytes = std::thread::spawn(move || {
        let mut drain = drain;
        let mut n = 0;
        drain.drain_with(|b| {
            n += b.len();
            b.len()
        });
        n
    })
    .join()
    .unwrap();
    assert!(bytes > 0);
}
