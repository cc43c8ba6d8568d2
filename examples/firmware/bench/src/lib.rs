//! Shared parts of the benchmark firmware: the tracer under test, the run-time configuration the
//! host writes into RAM before reset, and the gate markers the instruction counter keys on.
//!
//! # How the host measures
//! The bench runner (`tests/src/bench/`) starts QEMU with the `insn_gate` TCG plugin, which counts
//! instructions only between the first instruction of [`bench_gate_on`] and the first of
//! [`bench_gate_off`] (interrupt handlers that run in between included). It writes the
//! operation to measure and the number of iterations into [`BENCH_CONFIG`] with QEMU's generic
//! loader (`-device loader,addr=..,data=..`), so one binary per board serves every figure.
//! Cost per operation = (count with N = 101 − count with N = 1) / 100, minus the same for the
//! empty operation (the gate calls themselves): the first iteration's one-off costs (first use of
//! a name, cold branches) drop out.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use core::mem::MaybeUninit;
use core::sync::atomic::{compiler_fence, Ordering};

use microspan::Sampler;
use microspan::{Clock, Drain, Ring, Session, Tracer};
use microspan_boards as board;

/// Ticks of the board's monotonic timer, as the reference firmware reads them.
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

/// The core's cycle counter, as a Cortex-M3/M4 firmware would time spans (SEGGER SystemView's
/// default): one load of DWT CYCCNT. QEMU reads it as 0, so it only serves instruction counts,
/// where the value read does not matter. ARMv6-M (the micro:bit) has no cycle counter: there it
/// is the board's tick counter.
pub struct CycleClock;

impl Clock for CycleClock {
    #[inline]
    fn now(&self) -> u32 {
        #[cfg(feature = "lm3s6965")]
        {
            cortex_m::peripheral::DWT::cycle_count()
        }
        #[cfg(not(feature = "lm3s6965"))]
        {
            board::now_ticks()
        }
    }
    fn ticks_per_second(&self) -> u32 {
        board::TICKS_PER_SECOND
    }
}

/// Ring size in words (4 KiB, as in the reference firmware).
pub const RING_WORDS: usize = 1024;
/// Largest wire frame, bytes (as in the reference firmware).
pub const FRAME_BYTES: usize = 256;

static RING: Ring<RING_WORDS> = Ring::new();
/// The clock.
pub static CLOCK: BoardClock = BoardClock;

/// Who the bench device is (both recording tracers).
const SESSION: Session = Session::new("bench")
    .device_id(0x6d73_7061_6e00_00be)
    .boot_id(0xbe);

/// The tracer under test (const sampler: always).
/// The clock's type is named (`Tracer::with_clock`), so the record path calls it directly.
pub static TRACER: Tracer<'static, BoardClock> = Tracer::with_clock(&RING, BoardClock, &SESSION);

/// A tracer whose sampler says no (`Sampler::Const(false)`): what an unsampled span costs.
pub static UNSAMPLED: Tracer<'static, BoardClock> =
    Tracer::with_clock(&RING, BoardClock, &Session::new("bench"))
        .with_sampler(Sampler::Const(false));

static FR_RING: Ring<256> = Ring::flight_recorder();

/// A tracer over a small flight-recorder ring (`Ring::flight_recorder`): kept full, so each
/// record evicts the oldest ones (what recording costs once a flight recorder has filled up).
pub static FLIGHT_RECORDER: Tracer<'static, BoardClock> =
    Tracer::with_clock(&FR_RING, BoardClock, &SESSION);

/// The tracer under test with the [`CycleClock`] (the same ring).
pub static TRACER_CYC: Tracer<'static, CycleClock> =
    Tracer::with_clock(&RING, CycleClock, &SESSION);

/// The span type of this firmware's tracers.
pub type BenchSpan = microspan::Span<'static, 0, BoardClock>;

/// The drain type of this firmware.
pub type BenchDrain = Drain<'static, FRAME_BYTES>;

/// Written by the host before reset (QEMU `-device loader`): `[MAGIC, op, iterations, arg]`.
/// In `.uninit`, so start-up code neither zeroes nor initialises it.
#[no_mangle]
#[link_section = ".uninit.BENCH_CONFIG"]
pub static mut BENCH_CONFIG: MaybeUninit<[u32; 4]> = MaybeUninit::uninit();

/// Marks a valid [`BENCH_CONFIG`].
pub const MAGIC: u32 = 0x6d73_6265; // "msbe"

/// The configuration, or `None` when the host wrote none.
pub fn config() -> Option<(u32, u32, u32)> {
    // SAFETY: the words are plain memory (possibly never written: any bit pattern is a valid
    // u32); read with volatile loads so the compiler cannot assume their content.
    let words = unsafe {
        let p = core::ptr::addr_of!(BENCH_CONFIG) as *const u32;
        [
            p.read_volatile(),
            p.add(1).read_volatile(),
            p.add(2).read_volatile(),
            p.add(3).read_volatile(),
        ]
    };
    (words[0] == MAGIC).then_some((words[1], words[2], words[3]))
}

/// 1 while the gate is open, 2 after it closed: written with volatile stores so the two gate
/// functions keep distinct bodies (and addresses) under LTO.
static mut GATE: u32 = 0;

/// Opens the counting gate: the instruction counter starts at this function's first instruction.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_gate_on() {
    // SAFETY: a plain word written only here and in `bench_gate_off`, never read by the firmware.
    unsafe { core::ptr::addr_of_mut!(GATE).write_volatile(1) };
    compiler_fence(Ordering::SeqCst);
}

/// Closes the counting gate at this function's first instruction.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_gate_off() {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: as in `bench_gate_on`.
    unsafe { core::ptr::addr_of_mut!(GATE).write_volatile(2) };
}

/// Empties the ring into nothing (outside the gate), so every iteration starts from the same
/// state and the ring never fills.
#[inline(never)]
pub fn discard(drain: &mut BenchDrain) -> usize {
    drain.drain_with(|b| b.len())
}

/// Prints a line through semihosting.
pub fn say(args: core::fmt::Arguments<'_>) {
    struct Line([u8; 160], usize);
    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut l = Line([0; 160], 0);
    let _ = core::fmt::write(&mut l, args);
    let _ = core::fmt::Write::write_str(&mut l, "\n");
    board::hprint(&l.0[..l.1]);
}
