//! The non-blocking transport over `embedded_hal_nb::serial::Write<u8>`: a UART that says
//! `WouldBlock` at random and sometimes fails; every record must arrive exactly once, in order.

mod common;
use common::*;

use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{ErrorKind, ErrorType, Write};
use microspan_serial::nb::{NbDrain, Pumped};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Overrun;

impl embedded_hal_nb::serial::Error for Overrun {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Overrun
    }
}

/// A UART data register: refuses with probability `block_percent`, fails with `fail_percent`.
struct Uart {
    out: Vec<u8>,
    rng: Rng,
    block_percent: u64,
    fail_percent: u64,
    calls: u64,
}

impl Uart {
    fn new(seed: u64, block_percent: u64, fail_percent: u64) -> Self {
        Self {
            out: Vec::new(),
            rng: Rng::new(seed),
            block_percent,
            fail_percent,
            calls: 0,
        }
    }
}

impl ErrorType for Uart {
    type Error = Overrun;
}

impl Write<u8> for Uart {
    fn write(&mut self, word: u8) -> nb::Result<(), Overrun> {
        self.calls += 1;
        if self.rng.chance(self.block_percent) {
            return Err(nb::Error::WouldBlock);
        }
        if self.rng.chance(self.fail_percent) {
            return Err(nb::Error::Other(Overrun));
        }
        self.out.push(word);
        Ok(())
    }
    fn flush(&mut self) -> nb::Result<(), Overrun> {
        Ok(())
    }
}

#[test]
fn would_block_often_delivers_everything_once() {
    let fx = fixture::<65536>();
    let mut tx = NbDrain::new(fx.drain(), Uart::new(11, 60, 0));
    let mut rng = Rng::new(12);
    let mut sent = 0;
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, _| {
            sent += tx.pump().unwrap().sent;
        },
        |tx| tx.has_pending(),
    );
    let c = tx.counters();
    assert!(c.refused > 1000);
    assert_eq!(c.errors, 0);
    let (drain, uart) = tx.into_parts();
    assert_eq!(sent, uart.out.len());
    let d = assert_exact(&uart.out, STEPS);
    assert_eq!(c.frames as usize, d.frames.len());
    assert_eq!(drain.stats().bytes, c.bytes);
}

#[test]
fn errors_and_budgets_lose_nothing() {
    let fx = fixture::<65536>();
    let mut tx = NbDrain::new(fx.drain(), Uart::new(13, 30, 10));
    let mut rng = Rng::new(14);
    let mut errors = 0;
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, rng| {
            let budget = rng.range(0, 5);
            match tx.pump_at_most(budget) {
                Ok(p) => assert!(p.sent <= budget),
                Err(Overrun) => errors += 1,
            }
        },
        |tx| tx.has_pending(),
    );
    let c = tx.counters();
    assert!(errors > 100);
    assert_eq!(c.errors, errors);
    let (_, uart) = tx.into_parts();
    assert_exact(&uart.out, STEPS);
}

#[test]
fn pending_tells_the_interrupt_when_to_stop() {
    let fx = fixture::<1024>();
    let mut tx = NbDrain::new(fx.drain(), Uart::new(15, 0, 0));
    assert_eq!(
        tx.pump(),
        Ok(Pumped {
            sent: 0,
            pending: false
        })
    );
    assert_eq!(tx.writer().calls, 0, "nothing to send touches no register");
    fx.tracer.root("isr").finish();
    let p = tx.pump().unwrap();
    assert!(p.sent > 0 && !p.pending);
    assert_eq!(tx.counters().frames, 1);
    fx.tracer.root("isr").finish();
    // A UART with a one-byte FIFO: each interrupt sends one byte and says more is pending.
    tx.writer_mut().block_percent = 100;
    let p = tx.pump().unwrap();
    assert_eq!(
        p,
        Pumped {
            sent: 0,
            pending: true
        }
    );
    assert!(tx.has_pending());
}

#[test]
fn a_full_ring_drops_exactly_what_it_counts() {
    // A slow UART and a small ring: the ring drops and counts; the transport drops nothing.
    let fx = fixture::<512>();
    let mut tx = NbDrain::new(fx.drain(), Uart::new(16, 90, 0));
    let mut made = 0u32;
    let mut rng = Rng::new(17);
    for i in 0..200 {
        let span = fx.tracer.root("r");
        span.set_tag("i", i as u64);
        made += if span.is_recording() { 1 } else { 0 };
        // The START record exists iff recording; the tag and END records may each be dropped (a
        // span whose START was dropped counts both as dropped too).
        span.finish();
        for _ in 0..rng.range(0, 2) {
            tx.pump().unwrap();
        }
    }
    let dropped = fx.tracer.dropped();
    assert!(dropped > 0);
    tx.writer_mut().block_percent = 0;
    while tx.has_pending() {
        tx.pump().unwrap();
    }
    let (_, uart) = tx.into_parts();
    let d = decode(&uart.out);
    assert!(d.frame_errors.is_empty());
    let starts = d
        .records
        .iter()
        .filter(|r| matches!(r, Rec::Start { .. }))
        .count() as u32;
    assert_eq!(starts, made);
    // START + TAG + END per span; the ring's count is exactly what is missing.
    assert_eq!(d.records.len() as u32 + dropped, 200 * 3);
    assert_eq!(d.drops, Some(dropped));
}
