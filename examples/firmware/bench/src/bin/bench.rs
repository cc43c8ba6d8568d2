//! One operation of microspan, measured: selected at run time through `BENCH_CONFIG` (written by
//! the host with QEMU's generic loader), run `iterations` times between the counting gates, the
//! ring emptied between iterations outside the gates. See the crate docs for the method.
//!
//! | op | what one iteration does between the gates |
//! |---|---|
//! | 0 `empty` | nothing (the gates' own cost, subtracted from the others) |
//! | 1 `clock` | one `Clock::now()` |
//! | 2 `root` | a root span, start + finish |
//! | 3 `child0` | a child span of a live root, start + finish |
//! | 4 `child2` | the same with two small integer tags |
//! | 5 `tag` | one small integer tag on a live span (a fresh child each iteration, made outside the gates) |
//! | 6 `log3` | a log with three fields (two static strings, an integer) on a live span, as a tuple |
//! | 7 `unsampled` | a root span of a tracer with `Sampler::Const(false)`, start + finish |
//! | 8 `unsampled_child` | a child of an unsampled root, start + finish |
//! | 9 `isr_empty` | pend a software interrupt whose handler does nothing |
//! | 10 `isr_root` | pend a software interrupt whose handler records a root span |
//! | 11 `drain1` | drain one root span (recorded before the gate) into a RAM sink |
//! | 12 `drain16` | drain a root and 16 children (recorded before the gate) into a RAM sink |
//! | 13 `child0_cyc` | `child0` with the cycle-counter clock (`CycleClock`) |
//! | 14 `child2_start` | `child2` with the tags given at the start (`child_with_tags`) |
//! | 15 `log3_values` | `log3` with its fields as an array of [`Value`]s |
//! | 16 `root_full_fr` | a root span, start + finish, in a full flight recorder (each record evicts the oldest) |
//!
//! A live parent span is handed to the operation through `black_box`, so the compiler cannot
//! assume its state: the figure is what code that receives a `&Span` pays.
//!
//! Other modes (no gates): 20 `wire` streams workload `arg` over the UART (see [`wire`]);
//! 30 `stack` paints the stack and prints the high-water mark of each record call.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::entry;
use microspan::Value;
use microspan_bench_firmware::{
    bench_gate_off, bench_gate_on, config, discard, say, BenchDrain, BenchSpan, FLIGHT_RECORDER,
    TRACER, TRACER_CYC, UNSAMPLED,
};
use microspan_boards::{self as board, Irq};
use microspan_serial::blocking::BlockingDrain;

static SINK_BYTES: AtomicU32 = AtomicU32::new(0);

#[inline(always)]
fn child0<C: microspan::Clock>(parent: &microspan::Span<'static, 0, C>) {
    let c = parent.child("Bar");
    drop(c);
}

#[inline(always)]
fn child2(parent: &BenchSpan, i: u32) {
    let c = parent.child("Bar");
    c.set_tag("http.status_code", 200u32);
    c.set_tag("retries", i & 7);
    drop(c);
}

#[inline(always)]
fn child2_start(parent: &BenchSpan, i: u32) {
    let c = parent.child_with_tags("Bar", (("http.status_code", 200u32), ("retries", i & 7)));
    drop(c);
}

#[inline(always)]
fn log3(span: &BenchSpan) {
    span.log((
        ("event", "error"),
        ("type", "cache timeout"),
        ("waited.millis", 1500u32),
    ));
}

/// [`log3`] with the fields as an array of [`Value`]s (each variant known only at run time).
#[inline(always)]
fn log3_values(span: &BenchSpan) {
    span.log([
        ("event", "error".into()),
        ("type", "cache timeout".into()),
        ("waited.millis", Value::from(1500u32)),
    ]);
}

fn isr_empty() {}

fn isr_root() {
    let s = TRACER.root("isr");
    drop(s);
}

/// Hands every byte to a RAM sink that only counts them.
#[inline(always)]
fn drain_to_ram(drain: &mut BenchDrain) -> usize {
    drain.drain_with(|b| {
        // Load + store: thumbv6m has no fetch_add, and only thread mode drains.
        SINK_BYTES.store(
            SINK_BYTES.load(Ordering::Relaxed) + b.len() as u32,
            Ordering::Relaxed,
        );
        b.len()
    })
}

/// Runs `op` `n` times between the gates, emptying the ring after each.
#[inline(always)]
fn gated(n: u32, drain: &mut BenchDrain, mut op: impl FnMut(u32)) {
    for i in 0..n {
        bench_gate_on();
        op(i);
        bench_gate_off();
        discard(drain);
    }
}

/// [`gated`] for an operation on a value that `setup` makes outside the gates (and that is
/// dropped outside them).
fn gated_on<T>(
    n: u32,
    drain: &mut BenchDrain,
    mut setup: impl FnMut(u32) -> T,
    mut op: impl FnMut(&T, u32),
) {
    for i in 0..n {
        let value = setup(i);
        bench_gate_on();
        op(&value, i);
        bench_gate_off();
        drop(value);
        discard(drain);
    }
}

#[entry]
fn main() -> ! {
    let board::Board { uart } = board::init().expect("first init");
    let Some((op, n, arg)) = config() else {
        say(format_args!(
            "bench: no BENCH_CONFIG (run it through the bench runner)"
        ));
        board::exit(2)
    };
    let mut drain: BenchDrain = BenchDrain::new(&TRACER).expect("the only drain");
    match op {
        0 => gated(n, &mut drain, |_| {}),
        1 => gated(n, &mut drain, |_| {
            core::hint::black_box(microspan::Clock::now(&microspan_bench_firmware::CLOCK));
        }),
        2 => gated(n, &mut drain, |_| drop(TRACER.root("root"))),
        3 => {
            let root = TRACER.root("root");
            gated(n, &mut drain, |_| child0(black_box(&root)));
        }
        4 => {
            let root = TRACER.root("root");
            gated(n, &mut drain, |i| child2(black_box(&root), i));
        }
        5 => {
            // A fresh child each iteration, started and finished outside the gates: a span keeps
            // at most `MAX_TAGS_PER_SPAN` tags, and past it `set_tag` only counts the loss.
            let root = TRACER.root("root");
            gated_on(
                n,
                &mut drain,
                |_| root.child("Bar"),
                |span, i| black_box(span).set_tag("retries", i & 7),
            );
        }
        6 => {
            let root = TRACER.root("root");
            gated(n, &mut drain, |_| log3(black_box(&root)));
        }
        7 => gated(n, &mut drain, |_| drop(UNSAMPLED.root("root"))),
        8 => {
            let root = UNSAMPLED.root("root");
            gated(n, &mut drain, |_| child0(black_box(&root)));
        }
        9 | 10 => {
            board::set_handler(Irq::Soft0, if op == 9 { isr_empty } else { isr_root });
            board::enable(Irq::Soft0);
            gated(n, &mut drain, |_| board::pend(Irq::Soft0));
        }
        11 | 12 => {
            let children = if op == 11 { 0 } else { 16 };
            for _ in 0..n {
                {
                    let root = TRACER.root("root");
                    for _ in 0..children {
                        child0(&root);
                    }
                }
                bench_gate_on();
                drain_to_ram(&mut drain);
                bench_gate_off();
            }
        }
        13 => {
            #[cfg(feature = "lm3s6965")]
            // SAFETY: DEMCR.TRCENA and DWT_CTRL.CYCCNTENA, architectural Cortex-M3 registers,
            // set once before any use of the counter; nothing else in this firmware uses them.
            unsafe {
                let demcr = 0xE000_EDFC as *mut u32;
                demcr.write_volatile(demcr.read_volatile() | 1 << 24);
                let ctrl = 0xE000_1000 as *mut u32;
                ctrl.write_volatile(ctrl.read_volatile() | 1);
            }
            let root = TRACER_CYC.root("root");
            gated(n, &mut drain, |_| child0(black_box(&root)));
        }
        14 => {
            let root = TRACER.root("root");
            gated(n, &mut drain, |i| child2_start(black_box(&root), i));
        }
        15 => {
            let root = TRACER.root("root");
            gated(n, &mut drain, |_| log3_values(black_box(&root)));
        }
        16 => {
            // Fill the ring until it evicts; nothing drains it, so it stays full.
            while FLIGHT_RECORDER.dropped() == 0 {
                drop(FLIGHT_RECORDER.root("fill"));
            }
            gated(n, &mut drain, |_| drop(FLIGHT_RECORDER.root("root")));
        }
        20 => wire(arg, n, drain, uart),
        30 => stack(&mut drain),
        _ => {
            say(format_args!("bench: unknown op {op}"));
            board::exit(2)
        }
    }
    say(format_args!(
        "bench: op={op} n={n} dropped={} sink_bytes={}",
        TRACER.dropped(),
        SINK_BYTES.load(Ordering::Relaxed)
    ));
    board::exit(0)
}

/// Streams `traces` traces of workload `which` over the UART, drained every 8 traces (a busy
/// link: full frames), then the rest. The host decodes the bytes and re-encodes the same spans in
/// other formats.
///
/// | workload | trace |
/// |---|---|
/// | 0 | the reference trace: `in-process-service` (tags span.kind, http.method, http.status_code) → `Foo` → `Bar` (log event, message; tag error=true) |
/// | 1 | root → Foo → Bar, no tags |
/// | 2 | the same, Bar with two small integer tags |
/// | 3 | the same, Bar with eight small integer tags |
/// | 4 | the same, Bar with a three-field log |
/// | 5 | root → Foo (no Bar: by difference with 1, the cost of one child span) |
/// | 6 | root → Foo, Foo with two small integer tags (by difference with 5 … see the runner) |
///
/// Foo lasts 10 ms and Bar 20 ms (the reference example's 1 s and 2 s shortened a hundredfold);
/// the board's clock runs at its own rate (50 MHz on the lm3s6965, 1 MHz on the micro:bit).
fn wire(which: u32, traces: u32, drain: BenchDrain, uart: board::Uart) -> ! {
    const KEYS: [&str; 8] = ["http.status_code", "retries", "a", "b", "c", "d", "e", "f"];
    let foo_ticks = board::TICKS_PER_SECOND / 100;
    let bar_ticks = board::TICKS_PER_SECOND / 50;
    let mut out = BlockingDrain::new(drain, uart);
    for t in 0..traces {
        let root = TRACER.root("in-process-service");
        if which == 0 {
            root.set_tag("span.kind", "server");
            root.set_tag("http.method", "GET");
            root.set_tag("http.status_code", 200u32);
        }
        {
            let foo = root.child("Foo");
            if which == 6 {
                foo.set_tag(KEYS[0], 200u32);
                foo.set_tag(KEYS[1], t % 8);
            }
            board::delay_ticks(foo_ticks);
            if which != 5 && which != 6 {
                let bar = foo.child("Bar");
                match which {
                    2 | 3 => {
                        let n = if which == 2 { 2 } else { 8 };
                        for (k, key) in KEYS.iter().enumerate().take(n) {
                            bar.set_tag(key, (t + k as u32) % 100);
                        }
                    }
                    4 => bar.log([
                        ("event", "error".into()),
                        ("message", "something wrong".into()),
                        ("waited.millis", Value::from(1500u32)),
                    ]),
                    _ => {}
                }
                board::delay_ticks(bar_ticks);
                if which == 0 {
                    bar.log([
                        ("event", "error".into()),
                        ("message", "something wrong".into()),
                    ]);
                    bar.set_tag("error", true);
                }
            }
        }
        drop(root);
        if t % 8 == 7 {
            let _ = out.drain();
        }
    }
    while out.has_pending() {
        let _ = out.drain();
    }
    while out.writer().is_busy() {}
    say(format_args!(
        "bench: wire workload={which} traces={traces} dropped={} frames={} bytes={}",
        TRACER.dropped(),
        out.source().stats().frames,
        out.source().stats().bytes
    ));
    board::exit(0)
}

/// Bytes of stack below the caller's frame that `f` used: the stack below the current stack
/// pointer is painted, `f` runs, and the lowest word no longer holding the paint is found.
#[inline(never)]
fn stack_of(f: fn()) -> u32 {
    const PAINT: u32 = 0x5a5a_a5a5;
    const DEPTH: usize = 1024; // words: 4 KiB, far more than any record call
    // Painted right up to the stack pointer: this function's frame is above it, and nothing
    // below it is pushed before `f` is called (the loop calls nothing). A gap left unpainted
    // would hide the first bytes a call uses: every figure would read low by up to the gap.
    let sp = cortex_m::register::msp::read() as usize;
    let top = sp & !3;
    let bottom = top - DEPTH * 4;
    for a in (bottom..top).step_by(4) {
        // SAFETY: [bottom, top) lies below the stack pointer: free stack that nothing live uses
        // (interrupt frames would be pushed below the stack pointer too, and are allowed to
        // overwrite the paint: they are part of what is measured).
        unsafe { (a as *mut u32).write_volatile(PAINT) };
    }
    f();
    let mut a = bottom;
    // SAFETY: as above; reading free stack.
    while a < top && unsafe { (a as *const u32).read_volatile() } == PAINT {
        a += 4;
    }
    (sp - a) as u32
}

static mut STACK_ROOT: Option<BenchSpan> = None;

fn live_root() -> &'static BenchSpan {
    // SAFETY: single-threaded use from `stack` only; set before the calls that read it.
    unsafe {
        (*core::ptr::addr_of!(STACK_ROOT))
            .as_ref()
            .expect("set by `stack`")
    }
}

// One record call each, in a function of its own: the stack figures, and (their `llvm-nm`
// sizes, net of `s_empty` or of `s_parent`, which only fetches the live parent) the flash each
// call site takes.
#[inline(never)]
fn s_empty() {}
#[inline(never)]
fn s_parent() {
    black_box(live_root());
}
#[inline(never)]
fn s_root() {
    drop(TRACER.root("root"));
}
#[inline(never)]
fn s_child0() {
    child0(live_root());
}
#[inline(never)]
fn s_child2() {
    child2(live_root(), 3);
}
/// A span started through the builder (`span(..).follows_from(&ctx).start()`): a consumer of
/// work a span handed over, as an interrupt handler records one.
#[inline(never)]
fn s_follows_from() {
    let ctx = live_root().context();
    drop(TRACER.span("consumer").follows_from(&ctx).start());
}
#[inline(never)]
fn s_child2_start() {
    child2_start(live_root(), 3);
}
#[inline(never)]
fn s_tag() {
    live_root().set_tag("retries", 3u32);
}
#[inline(never)]
fn s_log3() {
    log3(live_root());
}
#[inline(never)]
fn s_log3_values() {
    log3_values(live_root());
}
#[inline(never)]
fn s_unsampled() {
    drop(UNSAMPLED.root("root"));
}
#[inline(never)]
fn s_isr_root() {
    board::pend(Irq::Soft0);
}

static DRAIN_FOR_STACK: AtomicU32 = AtomicU32::new(0);

/// Prints `stack op=NAME bytes=N` for each record call (bytes below the caller's stack pointer,
/// call and return included; `empty` is the baseline of an empty call).
fn stack(drain: &mut BenchDrain) {
    // SAFETY: single-threaded; no reference to STACK_ROOT is alive.
    unsafe { *core::ptr::addr_of_mut!(STACK_ROOT) = Some(TRACER.root("root")) };
    board::set_handler(Irq::Soft0, isr_root);
    board::enable(Irq::Soft0);
    let ops: [(&str, fn()); 12] = [
        ("empty", s_empty),
        ("parent", s_parent),
        ("root", s_root),
        ("child0", s_child0),
        ("child2", s_child2),
        ("child2_start", s_child2_start),
        ("follows_from", s_follows_from),
        ("tag", s_tag),
        ("log3", s_log3),
        ("log3_values", s_log3_values),
        ("unsampled", s_unsampled),
        ("isr_root", s_isr_root),
    ];
    for (name, f) in ops {
        // Twice: the first call may take cold paths (first use of a name).
        stack_of(f);
        let used = stack_of(f);
        say(format_args!("stack op={name} bytes={used}"));
        discard(drain);
    }
    // The drain's own stack (encode + frame), for reference.
    DRAIN_FOR_STACK.store(stack_drain(drain), Ordering::Relaxed);
    say(format_args!(
        "stack op=drain bytes={}",
        DRAIN_FOR_STACK.load(Ordering::Relaxed)
    ));
}

static mut DRAIN_PTR: *mut BenchDrain = core::ptr::null_mut();

#[inline(never)]
fn s_drain() {
    // SAFETY: set by `stack_drain` to a drain borrowed for the duration of this call only.
    let d = unsafe { &mut *DRAIN_PTR };
    drain_to_ram(d);
}

fn stack_drain(drain: &mut BenchDrain) -> u32 {
    {
        let root = live_root();
        for _ in 0..16 {
            child2(root, 1);
        }
    }
    // SAFETY: the pointer is used only inside `s_drain`, called by `stack_of` below while
    // `drain` is exclusively borrowed here.
    unsafe { DRAIN_PTR = drain as *mut BenchDrain };
    let used = stack_of(s_drain);
    // SAFETY: as above; cleared before `drain` is used again.
    unsafe { DRAIN_PTR = core::ptr::null_mut() };
    used
}
