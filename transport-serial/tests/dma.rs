//! The DMA-style interface: one transfer in flight at a time, the frame untouched while it is,
//! short transfers resumed; every record must arrive exactly once, in order.

mod common;
use common::*;

use microspan_serial::dma::DmaDrain;

/// A simulated DMA transfer: the bytes handed out by `start`, and how many it will move.
struct Transfer {
    bytes: Vec<u8>,
    moves: usize,
    ticks_left: usize,
}

#[test]
fn transfers_in_flight_are_never_rebuilt_and_short_ones_resume() {
    let fx = fixture::<65536>();
    let mut dma = DmaDrain::new(fx.drain());
    let mut rng = Rng::new(31);
    let mut out = Vec::new();
    let mut flight: Option<Transfer> = None;
    let (mut short, mut failed) = (0u32, 0u32);
    let mut resume: Option<Vec<u8>> = None;
    drive(
        &fx,
        &mut dma,
        &mut rng,
        |dma, rng| {
            match flight.take() {
                None => {
                    if let Some(bytes) = dma.start() {
                        if let Some(rest) = resume.take() {
                            assert_eq!(
                                bytes,
                                &rest[..],
                                "the rest of a short transfer must be offered again, unchanged"
                            );
                        }
                        let moves = if rng.chance(30) {
                            rng.range(0, bytes.len())
                        } else {
                            bytes.len()
                        };
                        flight = Some(Transfer {
                            bytes: bytes.to_vec(),
                            moves,
                            ticks_left: rng.range(0, 3),
                        });
                        assert_eq!(dma.in_flight(), Some(bytes_len(&flight)));
                    }
                }
                Some(mut t) => {
                    // While in flight: no second transfer, no access to the source.
                    assert!(dma.start().is_none());
                    assert!(dma.source_mut().is_none());
                    assert!(dma.has_pending());
                    if t.ticks_left > 0 {
                        t.ticks_left -= 1;
                        flight = Some(t);
                        return;
                    }
                    out.extend_from_slice(&t.bytes[..t.moves]);
                    if t.moves < t.bytes.len() {
                        resume = Some(t.bytes[t.moves..].to_vec());
                        if rng.chance(50) {
                            short += 1;
                            assert!(dma.complete(t.moves));
                        } else {
                            failed += 1;
                            assert!(dma.fail(t.moves));
                        }
                    } else {
                        assert!(dma.complete(t.moves));
                    }
                    assert!(!dma.complete(0), "a second completion is ignored");
                }
            }
        },
        |dma| dma.has_pending(),
    );
    let c = dma.counters();
    assert!(short > 10 && failed > 10);
    assert_eq!(c.refused, short);
    assert_eq!(c.errors, failed);
    assert_eq!(c.bytes, out.len() as u64);
    let d = assert_exact(&out, STEPS);
    assert_eq!(c.frames as usize, d.frames.len());
    assert!(dma.into_inner().is_ok());
}

fn bytes_len(t: &Option<Transfer>) -> usize {
    t.as_ref().map_or(0, |t| t.bytes.len())
}

#[test]
fn no_new_frame_while_in_flight() {
    let fx = fixture::<4096>();
    let mut dma = DmaDrain::new(fx.drain());
    assert!(dma.start().is_none(), "nothing to send");
    assert!(!dma.complete(5), "spurious completion");
    fx.tracer.root("first").finish();
    let first = dma.start().unwrap().to_vec();
    for _ in 0..50 {
        fx.tracer.root("more").finish();
    }
    assert!(dma.start().is_none());
    assert_eq!(
        dma.source().stats().frames,
        1,
        "a frame was built while the DMA was reading"
    );
    let dma = match dma.into_inner() {
        Ok(_) => panic!("into_inner must refuse while in flight"),
        Err(d) => d,
    };
    let mut dma = dma;
    assert!(dma.complete(usize::MAX));
    assert_eq!(dma.counters().bytes, first.len() as u64);
    assert_eq!(dma.counters().frames, 1);
    let second = dma.start().unwrap();
    assert_ne!(second, &first[..]);
}

#[test]
fn a_flush_until_nothing_is_pending_reports_the_last_drop() {
    // A firmware drains `while has_pending()` before a reset. A record too large for a 32-byte
    // frame is dropped while the last frame is built, leaving the ring empty: the new drop count
    // still has to go out, so `has_pending` must stay true until it has.
    let fx = fixture::<4096>();
    let drain: microspan::Drain<'static, { microspan::drain::min_frame_bytes() }> =
        microspan::Drain::new(fx.tracer).unwrap();
    let mut dma = DmaDrain::new(drain);
    let root = fx.tracer.root("r");
    let long = "x".repeat(30);
    root.log([
        ("message", microspan::Value::text(&long)),
        ("event", microspan::Value::text(&long)),
    ]);
    // Still open: the log is the ring's last record.
    core::mem::forget(root);
    let mut wire = Vec::new();
    while dma.has_pending() {
        if let Some(bytes) = dma.start() {
            wire.extend_from_slice(bytes);
            let n = bytes.len();
            dma.complete(n);
        }
    }
    assert_eq!(fx.tracer.dropped(), 1, "the log does not fit a frame");
    assert_eq!(decode(&wire).drops, Some(1), "the host was told");
    assert!(
        dma.start().is_none(),
        "nothing left once has_pending is false"
    );
}

/// A transfer held by flow control for 40 minutes (more than half the clock's wrap period): the
/// spans recorded after it are still dated right. The drain keeps its time through a `start`
/// that finds the transfer in flight (an idle loop), or through `keep_time` (a periodic timer,
/// for a drain driven by the transfer-complete interrupt alone).
#[test]
fn spans_after_a_transfer_held_for_40_minutes_are_dated_right() {
    for idle_loop in [true, false] {
        let fx = fixture::<4096>();
        let mut dma = DmaDrain::new(fx.drain());
        let mut wire = Vec::new();
        span_of_100_ticks(&fx, "before");
        let held = dma.start().unwrap().to_vec();
        for _ in 0..STALL_SECONDS {
            fx.clock.advance(1_000_000);
            if idle_loop {
                assert!(dma.start().is_none(), "one transfer at a time");
            } else {
                dma.keep_time();
            }
            assert_eq!(dma.in_flight(), Some(held.len()));
        }
        // The frame the engine was reading is unchanged: keeping time touched none of it (a
        // transfer that sent nothing gets the same bytes again).
        assert!(dma.complete(0));
        assert_eq!(dma.start(), Some(&held[..]));
        assert_eq!(dma.source().stats().frames, 1);
        wire.extend_from_slice(&held);
        assert!(dma.complete(held.len()));
        span_of_100_ticks(&fx, "after");
        while let Some(bytes) = dma.start() {
            wire.extend_from_slice(bytes);
            let n = bytes.len();
            dma.complete(n);
        }
        assert_dated_across_stall(&decode(&wire), "before", "after");
    }
}
