//! Span assembly from real device streams: the reference trace, and every way a stream goes wrong
//! on a real link (lost frames, a decoder that joins late, a device reset, a full ring, capacity
//! truncations, spans that never finish, a newer wire version, a lost name definition).

// `foo` and `bar` are the span names of the reference example (the Jaeger Go client's), not
// placeholders.
#![allow(clippy::disallowed_names)]

mod support;

use microspan::{Drain, Ring, Session, SpanId, Tracer, Value};
use microspan_decoder::assemble::{Limits, Options};
use microspan_decoder::model::RefKind;
use microspan_decoder::stream::{StreamDecoder, StreamError};
use support::decoding::{anchored, decode, span};
use support::device::{drain_all, frames, ManualClock};

fn reference(tracer: &Tracer<'_>, clock: &ManualClock) {
    let root = tracer.root("in-process-service");
    clock.advance(10);
    {
        let foo = root.child("Foo");
        clock.advance(1_000);
        {
            let bar = foo.child("Bar");
            clock.advance(2_000);
            bar.log([
                ("event", "error".into()),
                ("message", "something wrong".into()),
            ]);
            bar.set_tag("error", true);
        }
    }
    root.finish();
}

#[test]
fn reference_trace_is_rebuilt_exactly() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("in-process-service")
        .device_id(0xD)
        .boot_id(0xB)
        .firmware_version("9.9");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    reference(&tracer, &clock);
    let d = decode(&drain_all(&mut drain));
    assert_eq!(d.batches.len(), 1, "one finished trace, one batch");
    let b = &d.batches[0];
    assert_eq!(b.process.service_name, "in-process-service");
    let tag = |k: &str| {
        b.process
            .tags
            .iter()
            .find(|t| t.key == k)
            .map(|t| format!("{:?}", t.value))
    };
    assert_eq!(
        tag("device.id").as_deref(),
        Some("Str(\"000000000000000d\")")
    );
    assert_eq!(tag("firmware.version").as_deref(), Some("Str(\"9.9\")"));
    assert!(tag("microspan.version").is_some() && tag("microspan.wire_version").is_some());

    let (root, foo, bar) = (
        span(&d.spans, "in-process-service"),
        span(&d.spans, "Foo"),
        span(&d.spans, "Bar"),
    );
    assert_eq!(
        root.trace_id >> 64,
        0xD,
        "a local trace's high half is the device id"
    );
    assert_eq!(
        root.trace_id as u64, root.span_id,
        "and its low half the root span id"
    );
    assert_eq!(
        root.span_id >> 32,
        u64::from(SpanId::boot_prefix(0xD, 0xB)),
        "span ids carry the boot id, mixed with the device id"
    );
    assert!(root.references.is_empty());
    assert_eq!(foo.references[0].kind, RefKind::ChildOf);
    assert_eq!(foo.parent_span_id(), Some(root.span_id));
    assert_eq!(bar.parent_span_id(), Some(foo.span_id));
    for s in [root, foo, bar] {
        assert_eq!(s.trace_id, root.trace_id);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(!s.incomplete);
        assert_eq!(s.flags, 1);
    }
    // The session record anchors device time at ANCHOR: the root starts 0 µs after the anchor
    // tick and Foo 10 µs later; durations keep the device's microseconds.
    assert_eq!(foo.start_unix_nanos - root.start_unix_nanos, 10_000);
    assert_eq!(foo.duration_nanos, 3_000_000);
    assert_eq!(bar.duration_nanos, 2_000_000);
    assert!(bar.is_error());
    assert_eq!(bar.logs.len(), 1);
    assert_eq!(
        bar.logs[0].time_unix_nanos,
        bar.start_unix_nanos + 2_000_000
    );
    assert_eq!(
        format!("{:?}", bar.logs[0].fields[1].value),
        "Str(\"something wrong\")"
    );
    let s = d.stats;
    assert_eq!(
        (
            s.crc_errors,
            s.bad_frames,
            s.spans.lost_frames,
            s.spans.device_drops,
            s.spans.incomplete_spans
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(s.spans.spans, 3);
}

#[test]
fn a_lost_frame_is_counted_and_marks_the_spans_it_touched() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc").boot_id(1);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 64> = Drain::new(&tracer).unwrap();
    let mut stream = Vec::new();
    let outer = tracer.root("outer");
    stream.extend(drain_all(&mut drain));
    for i in 0..6u32 {
        let c = outer.child("inner");
        c.set_tag("i", i);
        c.set_tag("label", Value::text("some text to fill the frame"));
        clock.advance(100);
        drop(c);
        stream.extend(drain_all(&mut drain));
    }
    drop(outer);
    stream.extend(drain_all(&mut drain));
    let mut f = frames(&stream);
    assert!(f.len() > 6, "{} frames", f.len());
    f.remove(3);
    let d = decode(&f.concat());
    let s = d.stats;
    assert_eq!(s.spans.lost_frames, 1);
    let outer = span(&d.spans, "outer");
    assert!(
        outer
            .warnings
            .iter()
            .any(|w| w.contains("1 frame was lost")),
        "{:?}",
        outer.warnings
    );
    // The inner span whose records were in the lost frame is absent (its start was lost, and its
    // end then counted as an orphan), incomplete (its end was lost), or warned about the gap.
    let inner: Vec<_> = d.spans.iter().filter(|s| s.operation == "inner").collect();
    let touched = inner
        .iter()
        .filter(|s| s.incomplete || s.warnings.iter().any(|w| w.contains("frames were lost")))
        .count();
    assert!(inner.len() < 6 || touched > 0, "{inner:#?}");
}

#[test]
fn a_decoder_that_joins_mid_stream_waits_for_the_session_record() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<4096> = Ring::new();
    let session = Session::new("svc").boot_id(2);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 64> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(4);
    let mut stream = Vec::new();
    for _ in 0..12 {
        reference(&tracer, &clock);
        stream.extend(drain_all(&mut drain));
    }
    let f = frames(&stream);
    // Start in the middle of a frame: garbage, then whole frames.
    let cut = f[..3].concat().len() - 5;
    let d = decode(&stream[cut..]);
    let s = d.stats;
    assert!(s.spans.frames_before_session >= 1, "{s:?}");
    assert!(s.spans.spans > 0);
    // Every span exported after the join has a real name (names are re-announced each epoch).
    assert!(
        d.spans.iter().all(|s| !s.operation.starts_with("<unknown")),
        "{:?}",
        d.spans.iter().map(|s| &s.operation).collect::<Vec<_>>()
    );
    // The partial first frame was refused (bad COBS or CRC), not decoded as garbage.
    assert!(s.crc_errors + s.bad_frames >= 1);
}

#[test]
fn a_device_reset_closes_the_old_boots_open_spans_as_incomplete() {
    let mut stream = Vec::new();
    {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc").boot_id(10);
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        let open = tracer.root("open-at-reset");
        let _child = open.child("child-at-reset");
        clock.advance(500);
        stream.extend(drain_all(&mut drain));
        std::mem::forget(_child);
        std::mem::forget(open); // the device resets: no end records
    }
    {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc").boot_id(11);
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        reference(&tracer, &clock);
        stream.extend(drain_all(&mut drain));
    }
    let d = decode(&stream);
    let s = d.stats;
    assert_eq!(s.spans.resets, 1);
    let old = span(&d.spans, "open-at-reset");
    assert!(old.incomplete);
    assert!(
        old.warnings
            .iter()
            .any(|w| w.contains("the device reset (new boot)")),
        "{:?}",
        old.warnings
    );
    let default_device = microspan::Session::new("svc").device_id;
    assert_eq!(
        old.span_id >> 32,
        u64::from(SpanId::boot_prefix(default_device, 10))
    );
    assert!(span(&d.spans, "child-at-reset").incomplete);
    let bar = span(&d.spans, "Bar");
    assert!(
        !bar.incomplete && bar.span_id >> 32 == u64::from(SpanId::boot_prefix(default_device, 11))
    );
    assert_eq!(s.spans.incomplete_spans, 2);
}

/// `frame` (encoded, with its delimiter) with its base time moved `by` ticks later, and its CRC
/// made good again: every timed record of the frame is misdated, as by a corrupted frame whose
/// CRC still matched.
fn misdate(frame: &[u8], by: u64) -> Vec<u8> {
    use microspan::wire::varint;
    let mut raw = frame[..frame.len() - 1].to_vec();
    let n = cobs::decode_in_place(&mut raw).unwrap();
    let content = &raw[..n - 2];
    // Version, sequence, base id, base time.
    let (_, id_len) = varint::decode_u64(&content[3..]).unwrap();
    let at = 3 + id_len;
    let (base_time, time_len) = varint::decode_u64(&content[at..]).unwrap();
    let mut time = [0u8; 10];
    let k = varint::encode_u64(base_time + by, &mut time).unwrap();
    let mut body = content[..at].to_vec();
    body.extend_from_slice(&time[..k]);
    body.extend_from_slice(&content[at + time_len..]);
    let crc = microspan::wire::CRC.checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoding_length(body.len())];
    let m = cobs::encode(&body, &mut out);
    out.truncate(m);
    out.push(0);
    out
}

/// The frames of a session of boot 7 with epochs of 4 frames: `long` and `never-ends` start at
/// 5_000 (frame 0); frames 1 to 4 each hold a child of `long` (frame 4, which opens an epoch,
/// with the session record again, at 9_400); `long` ends at 10_400 in the next frame;
/// `never-ends` never does. With `overflow`, the ring overflows just before frame 4, which then
/// reports the drops too. Frame 1 is dated 1000 s ahead ([`misdate`]).
fn misdated_session(overflow: bool) -> Vec<Vec<u8>> {
    let clock = ManualClock::new(5_000);
    let ring: Ring<64> = Ring::new();
    let session = Session::new("svc").device_id(0xD).boot_id(7);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(4);
    let mut f = Vec::new();
    let long = tracer.root("long");
    let hang = tracer.root("never-ends");
    f.extend(frames(&drain_all(&mut drain)));
    for i in 1..=4 {
        clock.advance(1_000);
        let step = long.child("step");
        clock.advance(100);
        drop(step);
        if overflow && i == 4 {
            for _ in 0..40 {
                hang.set_tag("k", 1u8);
            }
            assert!(tracer.dropped() > 0);
        }
        f.extend(frames(&drain_all(&mut drain)));
    }
    clock.advance(1_000);
    drop(long);
    f.extend(frames(&drain_all(&mut drain)));
    std::mem::forget(hang);
    assert_eq!(tracer.dropped() > 0, overflow);
    if !overflow {
        assert_eq!(f.len(), 6, "one frame per drain");
    }
    f[1] = misdate(&f[1], 1_000_000_000);
    f
}

/// A record dated far ahead of the device's clock (a corrupted frame that passed the CRC, a clock
/// that jumped), then the running boot's periodic session record in the next frame in sequence:
/// its time is behind the misdated one, but a device restarts its sequence at 0, so it is no
/// reset. The open spans stay open and finish normally, the misdated time is counted and said,
/// and the latest time heard (where a span that never finishes ends) is pulled back to the
/// session record's, also where a loss was marked after the misdated frame.
#[test]
fn a_misdated_record_before_an_in_sequence_session_record_is_no_reset() {
    let f = misdated_session(false);
    let d = decode(&f.concat());
    let s = d.stats;
    assert_eq!((s.spans.resets, s.spans.misdated), (0, 1), "{s:?}");
    let long = span(&d.spans, "long");
    assert!(!long.incomplete && long.warnings.is_empty(), "{long:?}");
    assert_eq!(long.duration_nanos, 5_400_000);
    assert_eq!(d.spans.iter().filter(|s| s.operation == "step").count(), 4);
    // Ends at the latest time heard (`long`'s end), not 1000 s later.
    let hang = span(&d.spans, "never-ends");
    assert!(hang.incomplete, "{hang:?}");
    assert!(
        hang.warnings.iter().all(|w| !w.contains("reset")),
        "{:?}",
        hang.warnings
    );
    assert_eq!(hang.duration_nanos, 5_400_000);
    assert_eq!(s.spans.incomplete_spans, 1);
    let problems = s.problems();
    assert!(
        problems.len() == 1 && problems[0].contains("corrupted frame whose CRC still matched"),
        "{problems:?}"
    );

    // Frame 2 lost: the loss is marked after the misdated frame, at the latest time then heard.
    // `never-ends` was open across it, so it ends there: at the session record's time (the
    // misdated one pulled back), not 1000 s later.
    let d = decode(&[&f[..2], &f[3..]].concat().concat());
    let s = d.stats;
    assert_eq!(
        (s.spans.resets, s.spans.misdated, s.spans.lost_frames),
        (0, 1, 1),
        "{s:?}"
    );
    assert!(!span(&d.spans, "long").incomplete);
    let hang = span(&d.spans, "never-ends");
    assert!(hang.incomplete, "{hang:?}");
    assert_eq!(hang.duration_nanos, 4_400_000);

    // Drops reported in the session record's frame: marked at the time heard before the frame,
    // pulled back too.
    let d = decode(&misdated_session(true).concat());
    let s = d.stats;
    assert_eq!((s.spans.resets, s.spans.misdated), (0, 1), "{s:?}");
    assert!(s.spans.device_drops > 0);
    assert!(!span(&d.spans, "long").incomplete);
    let hang = span(&d.spans, "never-ends");
    assert!(hang.incomplete, "{hang:?}");
    assert_eq!(hang.duration_nanos, 4_400_000);
}

/// A device that restarts keeping its boot id starts again at sequence 0, with a time behind the
/// one heard: a reset, whether its first frame arrives or frames were lost across the restart.
/// Its frame 0 is no gap (as a new boot id's), and the frames after the reset are counted from
/// the frame that made it.
#[test]
fn a_restart_with_the_same_boot_id_and_time_back_is_a_reset() {
    let mut old = Vec::new();
    {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc").boot_id(7);
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        drain.set_epoch_frames(4);
        std::mem::forget(tracer.root("open-at-reset"));
        clock.advance(10_000_000);
        // Frames 0 to 2.
        for _ in 0..3 {
            drop(tracer.root("tick"));
            clock.advance(1_000);
            old.extend(frames(&drain_all(&mut drain)));
        }
    }
    assert_eq!(old.len(), 3);
    let mut new = Vec::new();
    {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc").boot_id(7);
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        drain.set_epoch_frames(4);
        for _ in 0..8 {
            reference(&tracer, &clock);
            new.extend(frames(&drain_all(&mut drain)));
        }
    }
    assert_eq!(new.len(), 8);
    // The new boot from its frame 0; and from its frame 4 (the next session record, after a gap
    // of one frame), without its frame 5.
    let later: Vec<_> = [&new[4..5], &new[6..]].concat();
    for (from, new, lost) in [(0, &new[..], 0), (4, &later[..], 2)] {
        let d = decode(&[&old[..], new].concat().concat());
        let s = d.stats;
        assert_eq!(
            (s.spans.resets, s.spans.misdated, s.spans.lost_frames),
            (1, 0, lost),
            "from frame {from}: {s:?}"
        );
        let open = span(&d.spans, "open-at-reset");
        assert!(
            open.incomplete && open.warnings.iter().any(|w| w.contains("reset")),
            "{open:?}"
        );
        // The same ids: a restart, or a new Drain in the running boot (whose time starts over).
        assert!(
            open.warnings
                .iter()
                .any(|w| w.contains("same boot id") && w.contains("a new Drain")),
            "{open:?}"
        );
        assert!(lost > 0 || open.warnings.len() == 1, "{open:?}");
        assert_eq!(s.spans.incomplete_spans, 1, "from frame {from}");
        let bars = d.spans.iter().filter(|s| s.operation == "Bar");
        assert_eq!(bars.count(), new.len(), "from frame {from}");
    }
}

/// A firmware that makes a new `Drain` in the running boot, against the advice (here one per
/// flush, five times), starts the frame sequence at 0 each time. While the device's clock has not
/// wrapped, its times go on: the stream goes on, with no frame counted lost and no reset, and
/// the span open across the drains finishes whole. After a wrap, a new drain's times start over
/// behind the ones heard: a reset, as before.
#[test]
fn a_new_drain_in_the_running_boot_goes_on_without_a_gap() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc").boot_id(7);
    let tracer = Tracer::new(&ring, &clock, &session);
    let across = tracer.root("across");
    let mut stream = Vec::new();
    for _ in 0..5 {
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        let work = across.child("work");
        clock.advance(1_000);
        drop(work);
        stream.extend(drain_all(&mut drain));
    }
    drop(across);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    stream.extend(drain_all(&mut drain));
    let d = decode(&stream);
    let s = &d.stats.spans;
    assert_eq!(
        (
            s.resets,
            s.lost_frames,
            s.drain_restarts,
            s.incomplete_spans
        ),
        (0, 0, 5, 0),
        "{s:?}"
    );
    assert_eq!(d.spans.len(), 6);
    assert!(
        d.spans.iter().all(|s| s.warnings.is_empty()),
        "{:?}",
        d.spans
    );
    assert_eq!(span(&d.spans, "across").duration_nanos, 5_000_000);
    assert!(d
        .stats
        .problems()
        .iter()
        .any(|n| n.contains("new Drain 5 times")));

    // A drain with a short epoch, then a new one with the default: names are forgotten at the
    // epochs of the drain that sends (at the old drain's 2 frames an epoch, the decoder would
    // forget names the new one still uses).
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut stream = Vec::new();
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(2);
    for name in ["tock", "tick"] {
        for _ in 0..5 {
            drop(tracer.root(name));
            clock.advance(100);
            stream.extend(drain_all(&mut drain));
        }
        drop(drain);
        drain = Drain::new(&tracer).unwrap();
    }
    drop(drain);
    let d = decode(&stream);
    let s = &d.stats.spans;
    assert_eq!(
        (s.resets, s.lost_frames, s.drain_restarts),
        (0, 0, 1),
        "{s:?}"
    );
    let named = |name| d.spans.iter().filter(|s| s.operation == name).count();
    assert_eq!((named("tock"), named("tick")), (5, 5), "{:?}", d.spans);

    // A new drain whose times are in other units (another time shift) starts a new session.
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let tracer = Tracer::new(&ring, &clock, &session);
    let open = tracer.root("open-at-the-new-units");
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut stream = drain_all(&mut drain);
    drop(drain);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    assert!(drain.set_time_shift(3));
    // Far enough that its time, in units of 8 ticks, is not behind the times heard.
    clock.advance(100_000);
    drop(tracer.root("tick"));
    stream.extend(drain_all(&mut drain));
    drop(drain);
    std::mem::forget(open);
    one_reset(&stream, "open-at-the-new-units");

    // The clock wraps under the first drain; the next one extends it from the raw value again.
    let clock = ManualClock::new(u32::MAX - 1_500);
    let ring: Ring<1024> = Ring::new();
    let tracer = Tracer::new(&ring, &clock, &session);
    let open = tracer.root("open-at-the-new-drain");
    let mut stream = Vec::new();
    {
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        stream.extend(drain_all(&mut drain));
        clock.advance(3_000);
        drop(tracer.root("after-the-wrap"));
        stream.extend(drain_all(&mut drain));
    }
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    drop(tracer.root("tick"));
    stream.extend(drain_all(&mut drain));
    std::mem::forget(open);
    one_reset(&stream, "open-at-the-new-drain");
}

/// `stream` holds one reset (a new drain that starts a new session), no frame lost and no drain
/// restart, and the span `open` (open then) exported incomplete.
fn one_reset(stream: &[u8], open: &str) {
    let d = decode(stream);
    let s = &d.stats.spans;
    assert_eq!(
        (s.resets, s.lost_frames, s.drain_restarts),
        (1, 0, 0),
        "{s:?}"
    );
    let open = span(&d.spans, open);
    assert!(open.incomplete, "{open:?}");
}

#[test]
fn device_drops_are_reported_overall_and_on_open_spans() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<64> = Ring::new();
    let session = Session::new("svc").boot_id(3);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let mut stream = drain_all(&mut drain);
    let outer = tracer.root("outer");
    for _ in 0..40 {
        outer.set_tag("k", 1u8); // overflows the 64-word ring
    }
    let dropped = tracer.dropped();
    assert!(dropped > 0);
    stream.extend(drain_all(&mut drain));
    drop(outer);
    stream.extend(drain_all(&mut drain));
    let d = decode(&stream);
    assert_eq!(d.stats.spans.device_drops, dropped as u64);
    let outer = span(&d.spans, "outer");
    assert!(
        outer
            .warnings
            .iter()
            .any(|w| w.contains("dropped") && w.contains("ring buffer full")),
        "{:?}",
        outer.warnings
    );
}

#[test]
fn capacity_truncations_become_warnings() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<4096> = Ring::new();
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 512> = Drain::new(&tracer).unwrap();
    let s = tracer.root("busy");
    for _ in 0..microspan::config::MAX_TAGS_PER_SPAN + 2 {
        s.set_tag("t", 1u8);
    }
    s.set_tag("long", Value::text(&"y".repeat(200)));
    // One field more than a log holds: the warning is in the singular.
    let fields: Vec<(&'static str, Value<'_>)> = (0..=microspan::config::MAX_FIELDS_PER_LOG)
        .map(|i| ("f", Value::from(i as u32)))
        .collect();
    s.log(fields);
    drop(s);
    let d = decode(&drain_all(&mut drain));
    let busy = span(&d.spans, "busy");
    assert!(
        busy.warnings
            .iter()
            .any(|w| w.starts_with("3 tags were dropped")),
        "{:?}",
        busy.warnings
    );
    assert!(
        busy.warnings
            .iter()
            .any(|w| w.starts_with("1 log field, baggage item or reference was dropped")),
        "{:?}",
        busy.warnings
    );
    assert_eq!(busy.tags.len(), microspan::config::MAX_TAGS_PER_SPAN);
}

#[test]
fn spans_that_never_finish_are_exported_incomplete() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let hung = tracer.root("hung");
    clock.advance(700);
    hung.log([("event", "last words".into())]);
    let stream = drain_all(&mut drain);
    std::mem::forget(hung);
    let d = decode(&stream);
    let hung = span(&d.spans, "hung");
    assert!(hung.incomplete);
    assert_eq!(hung.duration_nanos, 700_000, "to the last event seen");
    assert!(hung.warnings.iter().any(|w| w.contains("stream ended")));
}

/// The end of a span cut off by the end of the capture (the reviewer's reference trace cut
/// inside its last frame): it was open at least until the last time heard from its session, so
/// the root lasts as long as its children (21 ms), not 0 ns.
#[test]
fn a_span_cut_off_by_the_end_of_the_capture_lasts_until_the_last_time_heard() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let root = tracer.root("in-process-service");
    clock.advance(10);
    {
        let foo = root.child("Foo");
        clock.advance(1_000);
        let bar = foo.child("Bar");
        clock.advance(20_000);
        drop(bar);
        clock.advance(5);
    }
    let mut stream = drain_all(&mut drain);
    clock.advance(100);
    root.finish();
    // The capture stops inside the frame holding the root's END.
    let last = drain_all(&mut drain);
    stream.extend_from_slice(&last[..last.len() - 3]);
    let d = decode(&stream);
    assert_eq!(d.stats.unfinished_bytes, last.len() as u64 - 3);
    let root = span(&d.spans, "in-process-service");
    let foo = span(&d.spans, "Foo");
    assert!(root.incomplete && !foo.incomplete);
    assert!(
        root.warnings.iter().any(|w| w.contains("stream ended")),
        "{:?}",
        root.warnings
    );
    assert_eq!(
        root.duration_nanos, 21_015_000,
        "to Foo's end, the last time heard"
    );
    assert_eq!(
        root.start_unix_nanos + root.duration_nanos,
        foo.start_unix_nanos + foo.duration_nanos
    );
}

/// A span open while frames were lost may have ended in them: it ends at the last time heard
/// before the loss, not at the end of the capture; and not before its children, which ran
/// while it was open.
#[test]
fn a_span_open_across_lost_frames_ends_before_them_or_with_its_children() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 64> = Drain::new(&tracer).unwrap();
    let mut heard = Vec::new();
    let parent = tracer.root("parent");
    let lonely = tracer.root("lonely");
    clock.advance(100);
    drop(parent.child("before"));
    heard.extend(drain_all(&mut drain));
    clock.advance(200);
    lonely.log([("event", "lost".into())]);
    let lost = drain_all(&mut drain);
    clock.advance(300);
    {
        let late = parent.child("late");
        clock.advance(50);
        drop(late);
    }
    clock.advance(400);
    drop(tracer.root("unrelated"));
    heard.extend(drain_all(&mut drain));
    std::mem::forget(parent);
    std::mem::forget(lonely);
    assert!(!lost.is_empty());
    let d = decode(&heard);
    assert!(d.stats.spans.lost_frames >= 1);
    let lonely = span(&d.spans, "lonely");
    assert!(lonely.incomplete);
    assert_eq!(
        lonely.duration_nanos, 100_000,
        "to the last time heard before the loss"
    );
    let parent = span(&d.spans, "parent");
    let late = span(&d.spans, "late");
    assert!(parent.incomplete && !late.incomplete);
    assert_eq!(
        parent.start_unix_nanos + parent.duration_nanos,
        late.start_unix_nanos + late.duration_nanos,
        "to its child's end"
    );
}

/// Drop-new: a record is dropped where the ring is full, after everything the ring holds. The
/// spans open then are warned, not those a ring that filled up later still held finished: the
/// drain announces a drop total only after the records that were in the ring when it read it
/// (it used to announce it at the head of its next frame, which warned the spans of the first
/// frame, finished long before, and not the span whose END the full ring dropped).
#[test]
fn device_drops_warn_the_spans_open_when_the_ring_filled_not_earlier_ones() {
    let clock = ManualClock::new(1_000);
    let ring: Ring<256> = Ring::new();
    let session = Session::new("svc").boot_id(3);
    let tracer = Tracer::new(&ring, &clock, &session);
    // Small frames: what the ring holds goes out in several.
    let mut drain: Drain<'_, 128> = Drain::new(&tracer).unwrap();
    let mut victim = None;
    let mut cycle = 0u32;
    while victim.is_none() {
        let root = tracer.root("cycle");
        root.set_tag("n", cycle);
        clock.advance(10);
        drop(root.child("work"));
        root.log((("event", "step"),));
        clock.advance(10);
        drop(root);
        if tracer.dropped() > 0 {
            victim = Some(cycle);
        }
        cycle += 1;
    }
    let victim = victim.unwrap();
    // A few cycles more, dropped whole.
    for _ in 0..3 {
        let root = tracer.root("cycle");
        drop(root.child("work"));
    }
    let stream = drain_all(&mut drain);
    assert!(frames(&stream).len() >= 2, "{}", frames(&stream).len());
    let d = decode(&stream);
    assert_eq!(d.stats.spans.device_drops, u64::from(tracer.dropped()));
    let warned = |s: &microspan_decoder::model::Span| {
        s.warnings.iter().any(|w| w.contains("records dropped"))
    };
    let n = |s: &microspan_decoder::model::Span| {
        s.tags.iter().find(|t| t.key == "n").map(|t| match t.value {
            microspan_decoder::model::Value::U64(v) => v as u32,
            microspan_decoder::model::Value::I64(v) => v as u32,
            ref other => panic!("{other:?}"),
        })
    };
    let roots: Vec<_> = d
        .spans
        .iter()
        .filter(|s| s.operation.as_str() == "cycle")
        .collect();
    assert_eq!(
        roots.len() as u32,
        victim + 1,
        "the cycles whose start was kept"
    );
    for root in roots {
        let k = n(root).expect("every kept cycle has its tag");
        assert_eq!(
            warned(root),
            k == victim,
            "cycle {k} (the ring filled in cycle {victim}): {:?}",
            root.warnings
        );
    }
    // The children of the cycles before finished before the ring filled.
    let warned_children = d
        .spans
        .iter()
        .filter(|s| s.operation.as_str() == "work" && warned(s))
        .count();
    assert!(warned_children <= 1, "{warned_children}");
}

/// The same when the device dropped records (its ring was full) while a span was open: its END
/// may be among them, so it ends at the last time heard before the frame that reports them.
#[test]
fn a_span_open_across_device_drops_ends_before_them() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<64> = Ring::new();
    let session = Session::new("svc").boot_id(3);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let victim = tracer.root("victim");
    clock.advance(100);
    drop(tracer.root("early"));
    let mut stream = drain_all(&mut drain);
    clock.advance(100);
    let filler = tracer.root("filler");
    for _ in 0..40 {
        filler.set_tag("k", 1u8); // overflows the 64-word ring
    }
    clock.advance(100);
    drop(victim); // its END finds the ring full
    assert!(tracer.dropped() > 0);
    stream.extend(drain_all(&mut drain));
    drop(filler);
    clock.advance(1_000);
    drop(tracer.root("later"));
    stream.extend(drain_all(&mut drain));
    let d = decode(&stream);
    assert!(d.stats.spans.device_drops > 0);
    let victim = span(&d.spans, "victim");
    assert!(victim.incomplete);
    // The drops are announced after the records the ring held when the drain read their
    // total (the filler's tags at 200), so that is the last time heard before them.
    assert_eq!(
        victim.duration_nanos, 200_000,
        "to the last time heard before the drops"
    );
    // Incomplete because the stream ended, as far as the decoder can tell; its END may be one
    // of the records the device dropped, and the warnings say both.
    let said = |text: &str| victim.warnings.iter().any(|w| w.contains(text));
    assert!(
        said("incomplete: the stream ended"),
        "{:?}",
        victim.warnings
    );
    assert!(
        said("records dropped (ring buffer full") && said("its END perhaps among them"),
        "{:?}",
        victim.warnings
    );
    // A span that finished carries no such guess.
    let later = span(&d.spans, "later");
    assert!(later.warnings.is_empty(), "{:?}", later.warnings);
    // The summary says what to do about drops.
    let problems = d.stats.problems().join("\n");
    assert!(
        problems.contains("the device dropped") && problems.contains("Give the ring more words"),
        "{problems}"
    );
}

/// A complete last frame whose closing `0x00` the capture missed is still a whole frame (its
/// CRC is good): decoded, nothing lost. One byte shorter, it is a frame cut short.
#[test]
fn a_last_frame_missing_only_its_delimiter_is_decoded() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
    let root = tracer.root("in-process-service");
    let mut stream = drain_all(&mut drain);
    clock.advance(10);
    drop(root.child("Foo").child("Bar"));
    root.finish();
    stream.extend(drain_all(&mut drain));
    let last = frames(&stream).pop().unwrap();
    assert!(last.len() < stream.len(), "two frames or more");
    assert_eq!(stream.last(), Some(&0));

    let d = decode(&stream[..stream.len() - 1]);
    let s = d.stats;
    assert_eq!(d.spans.len(), 3);
    assert!(d.spans.iter().all(|s| !s.incomplete));
    assert_eq!(s.unfinished_bytes, 0);
    assert!(!s.lost_anything(), "{s:?}");
    assert!(s.problems().is_empty(), "{:?}", s.problems());

    let d = decode(&stream[..stream.len() - 2]);
    let s = d.stats;
    assert_eq!(s.unfinished_bytes, last.len() as u64 - 2);
    assert!(s.spans.incomplete_spans > 0, "{s:?}");
    assert!(s.lost_anything());
}

/// A well-formed frame of wire version `version` (sequence 0, base id and time 0, no records).
fn frame_of_version(version: u8) -> Vec<u8> {
    let raw = [version, 0, 0, 0, 0];
    let mut body = raw.to_vec();
    body.extend_from_slice(&microspan::wire::CRC.checksum(&raw).to_le_bytes());
    let mut frame = vec![0u8; body.len() + 2];
    let n = cobs::encode(&body, &mut frame);
    frame.truncate(n);
    frame.push(0);
    frame
}

/// Frames of a newer wire version are frames: the diagnosis of the input never says none was
/// found. Decoding stops at them with the version error, which says it all; one such frame
/// alone (not enough to stop) is named with its version.
#[test]
fn frames_of_a_newer_wire_version_are_not_reported_as_no_frame_found() {
    let frame = frame_of_version(4);
    let mut decoder = StreamDecoder::new(anchored());
    let mut out = Vec::new();
    decoder.feed(&frame, &mut out).unwrap();
    let problems = decoder.stats().problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("wire version 4") && problems[0].contains("[1, 2, 3]"),
        "{problems:?}"
    );

    let err = decoder
        .feed(&[frame.clone(), frame].concat(), &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("wire version 4"), "{err}");
    decoder.finish(&mut out);
    let stats = decoder.stats();
    assert_eq!(stats.unsupported_version_frames, 3);
    assert_eq!(stats.problems(), Vec::<String>::new());
}

#[test]
fn a_newer_wire_version_is_refused_plainly_and_one_odd_frame_is_not() {
    let frame = frame_of_version(4);
    let mut decoder = StreamDecoder::new(anchored());
    let mut out = Vec::new();
    assert!(
        decoder.feed(&frame, &mut out).is_ok(),
        "a single frame could be corruption"
    );
    // Said as the last bad input, among good frames too, with its version.
    assert!(
        decoder
            .last_error()
            .is_some_and(|e| e.contains("wire version 4") && e.contains("[1, 2, 3]")),
        "{:?}",
        decoder.last_error()
    );
    let err = decoder
        .feed(&[frame.clone(), frame].concat(), &mut out)
        .unwrap_err();
    let StreamError::UnsupportedVersion { version, .. } = &err;
    assert_eq!(*version, 4);
    let msg = err.to_string();
    assert!(
        msg.contains("wire version 4") && msg.contains("[1, 2, 3]"),
        "{msg}"
    );
}

#[test]
fn open_spans_are_bounded() {
    let clock = ManualClock::new(5_000);
    let ring: Ring<65536> = Ring::new();
    let session = Session::new("svc");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 1024> = Drain::new(&tracer).unwrap();
    let mut held = Vec::new();
    for _ in 0..500 {
        held.push(tracer.root("never-ends"));
    }
    let stream = drain_all(&mut drain);
    std::mem::forget(held);
    let opts = Options {
        limits: Limits {
            max_open_spans: 50,
            ..Limits::default()
        },
        ..anchored()
    };
    let mut decoder = StreamDecoder::new(opts);
    let mut out = Vec::new();
    decoder.feed(&stream, &mut out).unwrap();
    assert!(decoder.stats().spans.open_spans <= 50);
    let evicted: usize = out.iter().map(|b| b.spans.len()).sum();
    assert_eq!(evicted, 450);
    assert!(out[0].spans[0]
        .warnings
        .iter()
        .any(|w| w.contains("--max-open-spans")));
}

#[test]
fn a_log_whose_names_fill_a_small_frame_arrives_whole() {
    // The soft-error log of the reference example: its five new names and the record do not fit
    // one 64-byte frame, so the drain sends the names ahead; the decoder resolves them from the
    // frame before.
    let clock = ManualClock::new(5_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("svc").boot_id(3);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 64> = Drain::new(&tracer).unwrap();
    let mut stream = drain_all(&mut drain);
    {
        let foo = tracer.root("Foo");
        clock.advance(10_000);
        foo.log([
            ("event", "soft error".into()),
            ("type", "cache timeout".into()),
            ("waited.millis", 1500u32.into()),
        ]);
    }
    stream.extend(drain_all(&mut drain));
    assert!(drain.stats().names_ahead >= 1, "{:?}", drain.stats());
    let d = decode(&stream);
    assert_eq!(d.stats.spans.device_drops, 0);
    let foo = span(&d.spans, "Foo");
    assert!(foo.warnings.is_empty(), "{:?}", foo.warnings);
    let fields: Vec<String> = foo.logs[0]
        .fields
        .iter()
        .map(|f| format!("{}={:?}", f.key, f.value))
        .collect();
    assert_eq!(
        fields,
        [
            "event=Str(\"soft error\")",
            "type=Str(\"cache timeout\")",
            "waited.millis=U64(1500)"
        ]
    );
}

#[test]
fn a_name_the_device_cut_to_fit_its_frame_is_marked_and_warned_about() {
    const LONG: &str = "sensor.temperature.read-and-calibrate-with-retries-and-a-name-far-longer-than-a-small-frame-holds";
    let clock = ManualClock::new(5_000);
    let ring: Ring<4096> = Ring::new();
    let session = Session::new("svc").boot_id(4);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 64> = Drain::new(&tracer).unwrap();
    drain.set_epoch_frames(4);
    let mut stream = drain_all(&mut drain);
    // Two epochs: the name is defined (cut) again in the second, and counted once.
    for _ in 0..6 {
        let s = tracer.root(LONG);
        s.set_tag("n", 1u32);
        clock.advance(100);
        drop(s);
        stream.extend(drain_all(&mut drain));
    }
    assert!(drain.stats().names_cut >= 2, "{:?}", drain.stats());
    let d = decode(&stream);
    let stats = d.stats;
    assert_eq!(stats.spans.device_drops, 0);
    assert_eq!(stats.spans.names_cut, 1);
    assert_eq!(d.spans.len(), 6);
    for s in &d.spans {
        let cut = s.operation.strip_suffix('…').expect("marked as cut");
        assert!(LONG.starts_with(cut), "{:?}", s.operation);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].contains("the device cut the static string")
                && s.warnings[0].contains(cut),
            "{:?}",
            s.warnings
        );
    }
    let problems = stats.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("1 static string was longer than the device's drain frame")),
        "{problems:?}"
    );
}

/// A device clock that never advances (a `SysTickClock` never started) gives every span 0 ns:
/// the summary says why. One span of real length is enough for the line to go.
#[test]
fn a_clock_that_never_advances_is_named() {
    let run = |advance: bool| {
        let clock = ManualClock::new(5_000);
        let ring: Ring<1024> = Ring::new();
        let session = Session::new("svc");
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        let root = tracer.root("in-process-service");
        drop(root.child("Foo").child("Bar"));
        if advance {
            clock.advance(10);
        }
        root.finish();
        let d = decode(&drain_all(&mut drain));
        assert_eq!(d.spans.len(), 3);
        d.stats.problems().join("\n")
    };
    let still = run(false);
    assert!(
        still.contains("all 3 spans lasted 0 ns") && still.contains("SysTickClock"),
        "{still}"
    );
    let moving = run(true);
    assert!(!moving.contains("lasted 0 ns"), "{moving}");
}
