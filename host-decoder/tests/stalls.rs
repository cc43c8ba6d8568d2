//! Dates across stalled links, full and flight-recorder rings, late drains and device
//! restarts, end to end: a `microspan` drain under a simulated clock, decoded by the host decoder.
//! The clock is the shared 1 MHz `ManualClock` (it wraps every 4295 s; half a wrap is 2147 s)
//! unless a test says otherwise.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use microspan::{Clock, Drain, Ring, Session, Tracer};
use support::decoding::{decode, span, start_of, Decoded, ANCHOR};
use support::device::{drain_all, frames, leak, one_frame, ManualClock};

/// A drop-new ring that fills during a stall longer than half the clock's wrap (the device
/// records one span a second throughout; the ring holds ~30): the records made after the stall
/// follow the last one the ring kept by the whole stall (0.7 of a wrap), and the drain never
/// finds the ring empty in between. Every span after the stall that the ring kept is dated
/// right (the first ones meet a full ring and are dropped, and counted).
fn full_ring_stall(start: u32) {
    let clock = ManualClock::new(start);
    let ring: Ring<256> = Ring::new();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut wire = Vec::new();
    tracer.root("before").finish();
    wire.extend(drain_all(&mut drain));
    let t0 = clock.now() as i128;
    // The link stalls for 3000 s; the device records a span a second; the drain is polled each
    // second (fill_buf, nothing consumed: keep_time).
    for _ in 0..3000 {
        clock.advance(1_000_000);
        tracer.root("during").finish();
        let _ = drain.fill_buf();
    }
    assert!(tracer.dropped() > 2000, "the ring filled");
    // The link is back: one frame per poll, a span recorded before each poll.
    let names: Vec<&'static str> = (0..20).map(|i| leak(format!("after-{i}"))).collect();
    let mut times = Vec::new();
    for n in &names {
        clock.advance(1_000_000);
        times.push(clock.now().wrapping_sub(start) as i128 + start as i128);
        tracer.root(n).finish();
        wire.extend(one_frame(&mut drain));
    }
    // Then the device goes quiet: the drain finds the ring empty.
    wire.extend(drain_all(&mut drain));
    wire.extend(drain_all(&mut drain));
    clock.advance(1_000_000);
    let quiet = clock.now().wrapping_sub(start) as i128 + start as i128;
    tracer.root("after-quiet").finish();
    wire.extend(drain_all(&mut drain));
    let Decoded { spans, stats, .. } = decode(&wire);
    let t_before = start_of(&spans, "before");
    println!(
        "start {start}: record_errors {} misdated {} resets {}",
        stats.spans.record_errors, stats.spans.misdated, stats.spans.resets
    );
    let mut wrong = 0;
    for (n, t) in names.iter().zip(&times) {
        let got = spans
            .iter()
            .find(|s| s.operation == *n)
            .map(|s| s.start_unix_nanos as i128);
        let want = (t - t0) * 1000;
        let err = got.map(|g| (g - t_before) - want);
        // Absent: dropped by the full ring (counted in `tracer.dropped()`).
        if err.is_some_and(|e| e != 0) {
            wrong += 1;
        }
        println!("  {n}: dated {:?} ns off", err);
    }
    let q = start_of(&spans, "after-quiet") - t_before - (quiet - t0) * 1000;
    println!("  after-quiet: dated {q} ns off");
    assert_eq!(
        wrong,
        0,
        "{wrong} of {} spans after the stall misdated",
        names.len()
    );
}

#[test]
fn full_ring_stall_low_clock() {
    full_ring_stall(5_000);
}

#[test]
fn full_ring_stall_high_clock() {
    full_ring_stall((1 << 31) + 5_000);
}

/// A flight recorder (overwrite) ring through the same stall: the oldest record left after the
/// stall is ~3000 s after the last one sent.
#[test]
fn flight_recorder_stall() {
    let start = (1u32 << 31) + 5_000;
    let clock = ManualClock::new(start);
    let ring: Ring<256> = Ring::flight_recorder();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut wire = Vec::new();
    tracer.root("before").finish();
    wire.extend(drain_all(&mut drain));
    let t0 = clock.now() as i128;
    let mut recorded = Vec::new();
    for i in 0..3000u32 {
        clock.advance(1_000_000);
        let n = leak(format!("during-{i}"));
        recorded.push((n, t0 + (i as i128 + 1) * 1_000_000));
        tracer.root(n).finish();
        let _ = drain.fill_buf();
    }
    // The link is back; the device is quiet while the drain sends the ring's content.
    wire.extend(one_frame(&mut drain));
    wire.extend(drain_all(&mut drain));
    let Decoded { spans, stats, .. } = decode(&wire);
    let t_before = start_of(&spans, "before");
    let mut wrong = 0;
    let mut seen = 0;
    for (n, t) in &recorded {
        if let Some(s) = spans.iter().find(|s| s.operation == *n) {
            seen += 1;
            let err = (s.start_unix_nanos as i128 - t_before) - (t - t0) * 1000;
            if err != 0 {
                wrong += 1;
                if wrong < 4 {
                    println!("  {n}: {err} ns off");
                }
            }
        }
    }
    println!(
        "flight recorder: {seen} spans after the stall decoded, {wrong} misdated; record_errors {} misdated {}",
        stats.spans.record_errors, stats.spans.misdated
    );
    assert_eq!(wrong, 0);
}

/// The session record built after a stall longer than half a wrap, with records waiting through
/// it: its `now_ticks` is the clock's, not a wrap early (a decoder joining there would anchor
/// every later span a wrap off; one listening would count a misdated record).
#[test]
fn hello_after_a_stall() {
    let start = (1u32 << 31) + 5_000;
    let clock = ManualClock::new(start);
    let ring: Ring<4096> = Ring::new();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(2);
    let mut wire = Vec::new();
    tracer.root("before").finish();
    wire.extend(drain_all(&mut drain)); // frame 0 (HELLO)
    tracer.root("x").finish();
    wire.extend(drain_all(&mut drain)); // frame 1
    tracer.root("waiting").finish();
    for _ in 0..3000 {
        clock.advance(1_000_000);
        drain.keep_time();
    }
    wire.extend(drain_all(&mut drain)); // frame 2: HELLO + "waiting"
    tracer.root("after").finish();
    let after_ticks = clock.now();
    wire.extend(drain_all(&mut drain)); // frame 3
    let f = frames(&wire);
    assert_eq!(f.len(), 4);
    let stats = decode(&wire).stats;
    println!(
        "listening decoder: misdated {} resets {} problems {:?}",
        stats.spans.misdated,
        stats.spans.resets,
        stats.problems()
    );
    // A decoder joining at frame 2: the session record's time is the clock's at frame 2, which
    // is `after_ticks` (the clock did not move since).
    let spans = decode(&f[2..].concat()).spans;
    let after = start_of(&spans, "after") - ANCHOR as i128;
    println!("joining decoder: \"after\" dated {after} ns after the anchor (expected 0), ticks {after_ticks}");
    assert_eq!(stats.spans.misdated, 0);
    assert_eq!(after, 0);
}

/// `set_wall_clock`, then a record, then `set_time_shift`: the extension and the wall clock's
/// ticks are converted alike.
#[test]
fn wall_clock_then_time_shift() {
    const WALL: u64 = 1_750_000_000_000_000_000;
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    drain.set_wall_clock(WALL);
    tracer.root("a").finish();
    assert!(drain.set_time_shift(0));
    let spans = decode(&drain_all(&mut drain)).spans;
    let off = start_of(&spans, "a") - WALL as i128;
    println!("\"a\" dated {off} ns after the wall clock (expected 0)");
    assert_eq!(off, 0);
}

/// A drain dropped and made again on a live tracer: a span across the two finishes, and the
/// decoder sees no reset.
#[test]
fn drain_made_again() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let long = tracer.root("long");
    let mut wire = Vec::new();
    {
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        clock.advance(1_000);
        tracer.root("a").finish();
        wire.extend(drain_all(&mut drain));
    }
    clock.advance(1_000);
    {
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        tracer.root("b").finish();
        clock.advance(1_000);
        drop(long);
        wire.extend(drain_all(&mut drain));
    }
    let Decoded { spans, stats, .. } = decode(&wire);
    let l = span(&spans, "long");
    println!(
        "resets {} misdated {}; long: incomplete {} dur {} warnings {:?}; b - a = {} ns",
        stats.spans.resets,
        stats.spans.misdated,
        l.incomplete,
        l.duration_nanos,
        l.warnings,
        start_of(&spans, "b") - start_of(&spans, "a")
    );
    assert!(!l.incomplete);
}

/// A device with the default boot id (0) restarts; the host loses the new boot's frame 0 (the
/// line glitches at a reset) but gets its frames 1 to 3 and its next session record (frame 4),
/// which directly follows frame 3: its clock is behind the previous session record's, so it is a
/// reset, not a misdated record.
#[test]
fn restart_with_frame_0_lost() {
    let mut old = Vec::new();
    {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc");
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        drain.set_epoch_frames(4);
        std::mem::forget(tracer.root("open-at-reset"));
        clock.advance(100_000_000);
        for _ in 0..3 {
            drop(tracer.root("tick"));
            clock.advance(1_000);
            old.extend(frames(&drain_all(&mut drain)));
        }
    }
    let mut new = Vec::new();
    {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc");
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        drain.set_epoch_frames(4);
        for i in 0..8 {
            let s = tracer.root(leak(format!("new-{i}")));
            clock.advance(100);
            drop(s);
            clock.advance(1_000);
            new.extend(frames(&drain_all(&mut drain)));
        }
    }
    assert_eq!(new.len(), 8);
    let Decoded { spans, stats, .. } = decode(&[&old[..], &new[1..]].concat().concat());
    let open = span(&spans, "open-at-reset");
    println!(
        "resets {} misdated {} lost_frames {}; open-at-reset: incomplete {} dur {} s, warnings {:?}",
        stats.spans.resets,
        stats.spans.misdated,
        stats.spans.lost_frames,
        open.incomplete,
        open.duration_nanos / 1_000_000_000,
        open.warnings
    );
    println!("problems: {:?}", stats.problems());
    assert_eq!(stats.spans.resets, 1);
}

/// `set_wall_clock` in the middle of a stall longer than half a wrap, a span waiting through it.
#[test]
fn wall_clock_during_a_stall() {
    const WALL: u64 = 1_750_000_000_000_000_000;
    let start = (1u32 << 31) + 5_000;
    let clock = ManualClock::new(start);
    let ring: Ring<4096> = Ring::new();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut wire = Vec::new();
    tracer.root("before").finish();
    wire.extend(drain_all(&mut drain));
    tracer.root("waiting").finish(); // at t0
    for i in 0..3000 {
        clock.advance(1_000_000);
        if i == 1499 {
            drain.set_wall_clock(WALL); // at t0 + 1500 s
        }
        drain.keep_time();
    }
    wire.extend(drain_all(&mut drain));
    wire.extend(drain_all(&mut drain));
    tracer.root("after").finish(); // at t0 + 3000 s
    wire.extend(drain_all(&mut drain));
    let spans = decode(&wire).spans;
    let w = start_of(&spans, "waiting") - WALL as i128;
    let a = start_of(&spans, "after") - WALL as i128;
    println!("waiting {w} ns (expected -1500 s), after {a} ns (expected +1500 s)");
    assert_eq!((w, a), (-1_500_000_000_000, 1_500_000_000_000));
}

/// Records during a stall more than half a wrap apart, in a clock that started low: both, and
/// the ones after, are dated right (the window reaches three quarters of a wrap ahead).
#[test]
fn documented_limit_below_zero_is_not_contained() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<4096> = Ring::new();
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut wire = Vec::new();
    tracer.root("before").finish();
    wire.extend(drain_all(&mut drain));
    tracer.root("a").finish();
    for _ in 0..3000 {
        clock.advance(1_000_000);
        drain.keep_time();
    }
    tracer.root("b").finish(); // 3000 s after "a": the documented limit
    wire.extend(drain_all(&mut drain));
    wire.extend(drain_all(&mut drain)); // idle: catch_up
    let mut later = Vec::new();
    for i in 0..5 {
        clock.advance(10_000_000);
        let n = leak(format!("later-{i}"));
        tracer.root(n).finish();
        later.push(n);
        wire.extend(drain_all(&mut drain));
    }
    let Decoded { spans, stats, .. } = decode(&wire);
    let t = |n: &str| start_of(&spans, n) - start_of(&spans, "before");
    println!(
        "a {} b {} later-0 {} later-4 {} (ns after before); record_errors {}",
        t("a"),
        t("b"),
        t("later-0"),
        t("later-4"),
        stats.spans.record_errors
    );
    assert_eq!(t("later-0"), 3_010_000_000_000);
}

/// A 64 MHz clock (wraps every 67 s), from 0 at boot: the one clock here that is not the
/// shared 1 MHz [`ManualClock`].
struct Clk64(AtomicU32);
impl Clock for Clk64 {
    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    fn ticks_per_second(&self) -> u32 {
        64_000_000
    }
}

/// The common bring-up: a 64 MHz device boots, makes its drain, records a span every 10 ms; the
/// link (an RTT buffer no probe reads yet) takes the first 1 KB, then nothing until a probe
/// attaches at 45 s; the drain is polled every 10 ms. Every span decoded is dated right.
fn probe_attached_late(overwrite: bool) {
    let clock = Clk64(AtomicU32::new(0));
    let ring: Ring<1024> = if overwrite {
        Ring::flight_recorder()
    } else {
        Ring::new()
    };
    let session = Session::new("svc").boot_id(9);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut wire = Vec::new();
    let mut taken = 0usize;
    let mut recorded: Vec<(&'static str, u64)> = Vec::new();
    for step in 0..6000u64 {
        // 60 s in steps of 10 ms
        clock.0.fetch_add(640_000, Ordering::Relaxed);
        let t = (step + 1) * 10_000_000; // ns since boot
        let n = leak(format!("s{step}"));
        tracer.root(n).finish();
        recorded.push((n, t));
        let attached = step >= 4500;
        loop {
            let b = drain.fill_buf();
            if b.is_empty() {
                break;
            }
            let room = if attached {
                b.len()
            } else {
                1024usize.saturating_sub(taken).min(b.len())
            };
            if room == 0 {
                break;
            }
            wire.extend_from_slice(&b[..room]);
            taken += room;
            drain.consume(room);
        }
    }
    let Decoded { spans, stats, .. } = decode(&wire);
    let first = recorded.iter().find_map(|(n, t)| {
        spans
            .iter()
            .find(|s| s.operation == *n)
            .map(|s| s.start_unix_nanos as i128 - *t as i128)
    });
    let base = first.unwrap();
    let mut wrong = 0;
    let mut decoded = 0;
    let mut last_wrong = None;
    for (n, t) in &recorded {
        if let Some(s) = spans.iter().find(|s| s.operation == *n) {
            decoded += 1;
            let err = s.start_unix_nanos as i128 - *t as i128 - base;
            if err != 0 {
                if wrong == 0 {
                    println!(
                        "  first misdated: {n} ({} ms after boot) off by {err} ns",
                        t / 1_000_000
                    );
                }
                wrong += 1;
                last_wrong = Some((*n, err));
            }
        }
    }
    println!(
        "overwrite {overwrite}: {decoded} spans decoded, {wrong} misdated (last: {last_wrong:?}); record_errors {} misdated {} resets {}",
        stats.spans.record_errors, stats.spans.misdated, stats.spans.resets
    );
    assert_eq!(wrong, 0);
}

#[test]
fn probe_attached_late_drop_new() {
    probe_attached_late(false);
}

#[test]
fn probe_attached_late_flight_recorder() {
    probe_attached_late(true);
}
