//! The blocking transport over `embedded_io::Write`: writers that take 1–3 bytes at a time, fail,
//! say `Ok(0)`, or are not ready; every record must arrive exactly once, in order.

mod common;
use common::*;

use embedded_io::{ErrorKind, ErrorType, Write, WriteReady};
use microspan_serial::blocking::{BlockingDrain, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkError;

impl embedded_io::Error for LinkError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}
impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("link error")
    }
}
impl core::error::Error for LinkError {}

/// Takes 1–3 bytes per call; with `fail_percent`, fails (or returns `Ok(0)`) at random, flushes
/// fail too; `ready_percent` drives `write_ready`.
struct Mock {
    out: Vec<u8>,
    rng: Rng,
    fail_percent: u64,
    ready_percent: u64,
    writes: u32,
    flushes: u32,
}

impl Mock {
    fn new(seed: u64, fail_percent: u64) -> Self {
        Self {
            out: Vec::new(),
            rng: Rng::new(seed),
            fail_percent,
            ready_percent: 100,
            writes: 0,
            flushes: 0,
        }
    }
}

impl ErrorType for Mock {
    type Error = LinkError;
}

impl Write for Mock {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        assert!(!buf.is_empty(), "the drain must not offer empty buffers");
        self.writes += 1;
        if self.rng.chance(self.fail_percent) {
            return if self.rng.chance(50) {
                Err(LinkError)
            } else {
                Ok(0)
            };
        }
        let n = self.rng.range(1, 3).min(buf.len());
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), LinkError> {
        self.flushes += 1;
        if self.rng.chance(self.fail_percent) {
            return Err(LinkError);
        }
        Ok(())
    }
}

impl WriteReady for Mock {
    fn write_ready(&mut self) -> Result<bool, LinkError> {
        Ok(self.rng.chance(self.ready_percent))
    }
}

#[test]
fn chunky_writer_delivers_everything_once() {
    let fx = fixture::<65536>();
    let mut tx = BlockingDrain::new(fx.drain(), Mock::new(1, 0));
    let mut rng = Rng::new(2);
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, _| {
            tx.drain().unwrap();
        },
        |tx| tx.has_pending(),
    );
    let c = tx.counters();
    let stats = tx.source().stats();
    let (_, mock) = tx.into_parts();
    let d = assert_exact(&mock.out, STEPS);
    assert_eq!(c.bytes, mock.out.len() as u64);
    assert_eq!(c.frames as usize, d.frames.len());
    assert_eq!(stats.frames, c.frames);
    assert_eq!(stats.bytes, c.bytes);
    assert_eq!((c.errors, c.refused), (0, 0));
    assert!(mock.flushes > 0);
}

#[test]
fn failing_writer_loses_and_duplicates_nothing() {
    let fx = fixture::<65536>();
    let mut tx = BlockingDrain::new(fx.drain(), Mock::new(3, 30));
    let mut rng = Rng::new(4);
    let (mut write_errors, mut zeros, mut flush_errors) = (0u32, 0u32, 0u32);
    let mut pump = |tx: &mut BlockingDrain<TestDrain, Mock>, rng: &mut Rng| {
        let r = if rng.chance(50) {
            tx.drain()
        } else {
            tx.drain_frame()
        };
        match r {
            Ok(_) => {}
            Err(Error::Write(LinkError)) => write_errors += 1,
            Err(Error::WriteZero) => zeros += 1,
            Err(Error::Flush(LinkError)) => flush_errors += 1,
            Err(Error::Ready(_)) => unreachable!(),
        }
    };
    drive(&fx, &mut tx, &mut rng, &mut pump, |tx| tx.has_pending());
    let c = tx.counters();
    assert!(
        write_errors > 50 && zeros > 50 && flush_errors > 10,
        "{write_errors} {zeros} {flush_errors}"
    );
    assert_eq!(c.errors, write_errors + flush_errors);
    assert_eq!(c.refused, zeros);
    let (_, mock) = tx.into_parts();
    let d = assert_exact(&mock.out, STEPS);
    assert_eq!(c.frames as usize, d.frames.len());
}

#[test]
fn drain_ready_never_writes_when_not_ready() {
    let fx = fixture::<65536>();
    let mut mock = Mock::new(5, 10);
    mock.ready_percent = 40;
    let mut tx = BlockingDrain::new(fx.drain(), mock);
    let mut rng = Rng::new(6);
    drive(
        &fx,
        &mut tx,
        &mut rng,
        |tx, _| {
            let _ = tx.drain_ready();
        },
        |tx| tx.has_pending(),
    );
    let c = tx.counters();
    assert!(c.refused > 100);
    let (_, mock) = tx.into_parts();
    assert_exact(&mock.out, STEPS);
    assert_eq!(
        mock.flushes, 0,
        "drain_ready must not flush (a flush waits)"
    );
}

#[test]
fn nothing_to_send_writes_nothing() {
    let fx = fixture::<1024>();
    let mut tx = BlockingDrain::new(fx.drain(), Mock::new(7, 0));
    assert_eq!(tx.drain(), Ok(0));
    assert_eq!(tx.drain_frame(), Ok(0));
    assert_eq!((tx.writer().writes, tx.writer().flushes), (0, 0));
    fx.tracer.root("one").finish();
    assert!(tx.drain_frame().unwrap() > 0);
    assert_eq!(tx.counters().frames, 1);
    assert!(!tx.has_pending());
}

#[test]
fn a_borrowed_drain_works_too() {
    let fx = fixture::<1024>();
    let mut drain = fx.drain();
    fx.tracer.root("one").finish();
    {
        let mut tx = BlockingDrain::new(&mut drain, Mock::new(8, 0));
        tx.drain().unwrap();
        assert_eq!(tx.counters().frames, 1);
    }
    assert_eq!(drain.stats().frames, 1);
}

/// A USB CDC class behind `WriteReady`: takes 3 bytes, then says it is not ready while the host
/// keeps the port closed.
struct ClosedPort {
    out: Vec<u8>,
    open: bool,
}

impl ErrorType for ClosedPort {
    type Error = LinkError;
}

impl Write for ClosedPort {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        let n = if self.open {
            buf.len()
        } else {
            buf.len().min(3)
        };
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

impl WriteReady for ClosedPort {
    fn write_ready(&mut self) -> Result<bool, LinkError> {
        // Ready for the first write only, until the port opens.
        Ok(self.open || self.out.is_empty())
    }
}

/// `drain_ready` polled once a second while the writer stays not ready for 40 minutes (more than
/// half the clock's wrap period), a frame part-sent: the spans recorded after it are dated right.
#[test]
fn drain_ready_keeps_time_while_the_writer_is_not_ready() {
    let fx = fixture::<4096>();
    let port = ClosedPort {
        out: Vec::new(),
        open: false,
    };
    let mut tx = BlockingDrain::new(fx.drain(), port);
    span_of_100_ticks(&fx, "before");
    assert_eq!(tx.drain_ready(), Ok(3));
    for _ in 0..STALL_SECONDS {
        fx.clock.advance(1_000_000);
        assert_eq!(tx.drain_ready(), Ok(0));
    }
    assert_eq!(tx.counters().refused, 1 + STALL_SECONDS);
    tx.writer_mut().open = true;
    span_of_100_ticks(&fx, "after");
    while tx.has_pending() {
        tx.drain_ready().unwrap();
    }
    let (_, port) = tx.into_parts();
    assert_dated_across_stall(&decode(&port.out), "before", "after");
}

/// A 55-minute stall (1 MHz clock: 0.77 of its wrap period) while the firmware keeps tracing once
/// a minute: the spans that waited in the ring through it are read one after the other from the
/// time before the stall, so keeping time must not move the extension past them. Every one, and
/// the span after the stall, is dated right.
#[test]
fn spans_recorded_during_a_stall_are_dated_right() {
    const STALL: u32 = 3_300;
    let fx = fixture::<8192>();
    let port = ClosedPort {
        out: Vec::new(),
        open: false,
    };
    let mut tx = BlockingDrain::new(fx.drain(), port);
    span_of_100_ticks(&fx, "before");
    assert_eq!(tx.drain_ready(), Ok(3));
    let names: Vec<&'static str> = (0..STALL / 60)
        .map(|i| &*Box::leak(format!("minute {i}").into_boxed_str()))
        .collect();
    for step in 0..STALL {
        fx.clock.advance(1_000_000);
        if step % 60 == 0 {
            span_of_100_ticks(&fx, names[(step / 60) as usize]);
        }
        assert_eq!(tx.drain_ready(), Ok(0));
    }
    tx.writer_mut().open = true;
    span_of_100_ticks(&fx, "after");
    while tx.has_pending() {
        tx.drain_ready().unwrap();
    }
    assert_eq!(fx.tracer.dropped(), 0);
    let (_, port) = tx.into_parts();
    let d = decode(&port.out);
    let t0 = start_time(&d, "before") as i128;
    // Each span takes 100 ticks: "before" ends 100 after its start, and so on.
    for (i, name) in names.iter().enumerate() {
        let want = (i as i128 * 60 + 1) * 1_000_000 + 100 * (i as i128 + 1);
        assert_eq!(start_time(&d, name) as i128 - t0, want, "{name}");
    }
    assert_eq!(
        start_time(&d, "after") as i128 - t0,
        STALL as i128 * 1_000_000 + 100 * (names.len() as i128 + 1)
    );
}

/// Session records written after a stall longer than three quarters of the clock's wrap period
/// (1 MHz: 55 min), while spans waited in the ring through it: each is dated by the clock the
/// drain kept, not from the waiting records (which are dated from one another, from before the
/// stall), so a decoder sees neither a reset nor a misdated record. `busy`: a span a minute
/// through the stall; otherwise one at its start only (the waiting records then end more than
/// three quarters of a wrap before the session records).
fn session_records_after_a_long_stall(busy: bool) {
    const STALL: u32 = 3_300;
    let fx = fixture::<8192>();
    let port = ClosedPort {
        out: Vec::new(),
        open: true,
    };
    let mut drain = fx.drain();
    // A session record every other frame: several follow the stall, the first in the first
    // frame built after it (frames 0 and 1 go out before it).
    drain.set_epoch_frames(2);
    let mut tx = BlockingDrain::new(drain, port);
    for name in ["boot", "before"] {
        span_of_100_ticks(&fx, name);
        while tx.has_pending() {
            tx.drain_ready().unwrap();
        }
    }
    tx.writer_mut().open = false;
    let t0 = microspan::Clock::now(fx.clock);
    let names: Vec<&'static str> = (0..STALL / 60)
        .map(|i| &*Box::leak(format!("minute {i}").into_boxed_str()))
        .collect();
    let mut waited = Vec::new();
    for step in 0..STALL {
        fx.clock.advance(1_000_000);
        if step % 60 == 0 && (busy || step == 0) {
            waited.push(names[(step / 60) as usize]);
            span_of_100_ticks(&fx, names[(step / 60) as usize]);
        }
        assert_eq!(tx.drain_ready(), Ok(0));
    }
    let reopened = u64::from(microspan::Clock::now(fx.clock).wrapping_sub(t0));
    tx.writer_mut().open = true;
    // Recorded before the drain runs again: it waits behind the stall's spans.
    span_of_100_ticks(&fx, "after");
    // Then a span a frame, each in its own frame: session records follow.
    let more = ["more 0", "more 1", "more 2", "more 3"];
    for name in more {
        while tx.has_pending() {
            tx.drain_ready().unwrap();
        }
        span_of_100_ticks(&fx, name);
    }
    while tx.has_pending() {
        tx.drain_ready().unwrap();
    }
    let (_, port) = tx.into_parts();
    let d = decode(&port.out);
    assert!(d.frame_errors.is_empty(), "{:?}", d.frame_errors);
    // The ticks of `before`'s end (the stall's start), in the extension's terms.
    let stall_start = start_time(&d, "before") + 100;
    assert_eq!(d.frames[..3], [0, 1, 2]);
    assert!(d.hello_times[0].0 <= stall_start, "{:?}", d.hello_times);
    let after_stall = &d.hello_times[1..];
    assert!(!after_stall.is_empty(), "{:?}", d.hello_times);
    for &(t, heard) in after_stall {
        // Written once the link reopened (the frames before the stall went out before it), and
        // not behind any record heard before it (a wrap early is 4295 s behind).
        assert!(
            t >= stall_start + reopened && t <= stall_start + reopened + 600,
            "{reopened} ticks after the stall began: {:?}",
            d.hello_times
        );
        assert!(heard.is_none_or(|h| t >= h), "{:?}", d.hello_times);
    }
    // And the spans that waited, and the one after, are dated right.
    let before = start_time(&d, "before");
    for (i, name) in waited.iter().enumerate() {
        let minute = if busy { i as u64 } else { 0 };
        let want = (minute * 60 + 1) * 1_000_000 + 100 * (i as u64 + 1);
        assert_eq!(start_time(&d, name) - before, want, "{name}");
    }
    for (i, name) in ["after"].iter().chain(&more).enumerate() {
        assert_eq!(
            start_time(&d, name) - before,
            reopened + 100 * (i as u64 + 1),
            "{name}"
        );
    }
}

#[test]
fn session_records_after_a_long_busy_stall_are_dated_by_the_clock_kept() {
    session_records_after_a_long_stall(true);
}

#[test]
fn session_records_after_a_long_quiet_stall_are_dated_by_the_clock_kept() {
    session_records_after_a_long_stall(false);
}

/// A span at the start of a stall, one just under half the clock's wrap period after it, and the
/// link back 1000 s later: the two that waited are dated from each other, the one after from the
/// clock the drain kept.
#[test]
fn a_span_that_waited_through_a_stall_keeps_its_time() {
    let fx = fixture::<4096>();
    let port = ClosedPort {
        out: Vec::new(),
        open: false,
    };
    let mut tx = BlockingDrain::new(fx.drain(), port);
    span_of_100_ticks(&fx, "before");
    assert_eq!(tx.drain_ready(), Ok(3));
    fx.clock.advance(1_000);
    span_of_100_ticks(&fx, "a");
    for step in 0..3_147u32 {
        fx.clock.advance(1_000_000);
        if step == 2_146 {
            span_of_100_ticks(&fx, "b");
        }
        assert_eq!(tx.drain_ready(), Ok(0));
    }
    tx.writer_mut().open = true;
    while tx.has_pending() {
        tx.drain_ready().unwrap();
    }
    span_of_100_ticks(&fx, "after");
    while tx.has_pending() {
        tx.drain_ready().unwrap();
    }
    let (_, port) = tx.into_parts();
    let d = decode(&port.out);
    let t0 = start_time(&d, "before") as i128;
    let rel = |n| start_time(&d, n) as i128 - t0;
    assert_eq!(rel("a"), 1_100);
    assert_eq!(rel("b"), 2_147_000_000 + 1_200);
    assert_eq!(rel("after"), 3_147_000_000 + 1_300);
}
