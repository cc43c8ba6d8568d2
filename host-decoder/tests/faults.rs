//! A corrupted link: recorded device streams with bit flips, dropped and inserted bytes, dropped
//! and duplicated runs injected at 1e-4, 1e-3 and 1e-2 per byte (seeded), decoded beside the
//! clean stream.
//!
//! What must hold, for every stream, frame size, rate and seed:
//! - **no corrupted span is exported**: every span from the corrupted stream is a span of the
//!   clean decode (same id) with the same trace, name, parent and start; one without warnings
//!   that is complete is identical to the clean one; one that lost records says so (a warning, or
//!   `incomplete`) and holds only records of the clean one, in order;
//! - **every lost frame is counted**: the decoder's lost-frame count is exactly the frames missing
//!   between the intact frames that arrived (the test finds those itself with the wire crate's
//!   accumulator), and every clean frame that did not arrive intact is covered by the lost-frame,
//!   CRC-error and bad-frame counts;
//! - decoding resumes at the next good frame (the spans of later frames are recovered).
//!
//! It prints the fraction of spans recovered per rate (`cargo test --test faults -- --nocapture`).
//! `MICROSPAN_FAULT_SEEDS=N` runs N seeds per case instead of 3 (a longer soak).

mod support;

use std::collections::{HashMap, HashSet};

use microspan::wire::decode::Accumulator;
use microspan::{Baggage, Drain, Flags, Ring, Session, SpanContext, SpanId, TraceId, Tracer};
use microspan_decoder::model::Span;
use support::decoding::{anchored, decode_in, span, Decoded, ANCHOR};
use support::device::{drain_all, frames, ManualClock};
use support::rng::Rng;

/// The device knows real time, so every session record anchors the clock the same way and a
/// decoder that starts at a later session record computes the same times as one that saw the
/// first. It is the decoders' fixed anchor too.
const WALL: u64 = ANCHOR;

/// A stream of `traces` reference-like traces through a drain of `F`-byte frames: a server span
/// with tags and baggage, a database child with a log, the reference `Bar` with an error tag and
/// log, a FollowsFrom consumer, and every 5th trace a span continuing a remote trace.
fn record<const F: usize>(traces: u32) -> Vec<u8> {
    let clock = ManualClock::new(1_000);
    let ring: Ring<8192> = Ring::new();
    let session = Session::new("faulty-link")
        .device_id(0xFA17)
        .boot_id(0x0B00)
        .firmware_version("1.0.0");
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, F> = Drain::new(&tracer).unwrap();
    drain.set_wall_clock(WALL);
    let mut out = Vec::new();
    for i in 0..traces {
        {
            let mut root = tracer
                .span("handle-request")
                .with_baggage(Baggage::<2>::new())
                .start();
            root.set_baggage("tenant", if i % 2 == 0 { "acme" } else { "globex" });
            root.set_tag("http.method", "GET");
            root.set_tag("http.status_code", 200 + (i % 3) as i64);
            root.set_tag("span.kind", "server");
            clock.advance(13 + i % 7);
            {
                let db = root.child("db.query");
                db.set_tag("db.type", "sql");
                db.set_tag("db.rows", u64::from(i));
                clock.advance(40);
                db.log([
                    ("event", "cache timeout".into()),
                    ("waited.millis", 1500u64.into()),
                ]);
                {
                    let bar = db.child("Bar");
                    clock.advance(200 + i % 50);
                    bar.log([
                        ("event", "error".into()),
                        ("message", "something wrong".into()),
                    ]);
                    bar.set_tag("error", true);
                    bar.set_tag("ratio", 0.25 * f64::from(i % 8));
                }
            }
            let consumer = root.follower("consume");
            consumer.set_tag("message_bus.destination", "queue-a");
            clock.advance(17);
            drop(consumer);
            if i % 5 == 0 {
                let remote = SpanContext {
                    trace_id: TraceId(0x0123_4567_89ab_cdef_0000_0000_0000_0000 | u128::from(i)),
                    span_id: SpanId(0x00ee_0000_0000_0000 | (u64::from(i) + 1)),
                    flags: Flags::SAMPLED,
                };
                let handler = tracer.span("from-gateway").child_of(&remote).start();
                handler.set_tag("peer.service", "gateway");
                clock.advance(9);
                let inner = handler.child("decode");
                clock.advance(3);
                drop(inner);
            }
            clock.advance(25);
        }
        out.extend(drain_all(&mut drain));
    }
    out.extend(drain_all(&mut drain));
    assert_eq!(tracer.dropped(), 0, "the workload must fit the ring");
    out
}

#[derive(Default, Debug, Clone, Copy)]
struct FaultCounts {
    flips: u64,
    dropped: u64,
    inserted: u64,
    dropped_runs: u64,
    duplicated_runs: u64,
}

/// The stream with faults at `rate` per byte: each fault is one of a bit flip, a dropped byte, an
/// inserted random byte, a dropped run (2–64 bytes) or a duplicated run (the last 2–64 bytes sent
/// again, as a retransmitting link does).
fn corrupt(clean: &[u8], rate: f64, seed: u64) -> (Vec<u8>, FaultCounts) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::with_capacity(clean.len() + clean.len() / 16);
    let mut n = FaultCounts::default();
    let mut i = 0;
    while i < clean.len() {
        if !rng.chance(rate) {
            out.push(clean[i]);
            i += 1;
            continue;
        }
        match rng.below(5) {
            0 => {
                out.push(clean[i] ^ (1 << rng.below(8)));
                n.flips += 1;
                i += 1;
            }
            1 => {
                n.dropped += 1;
                i += 1;
            }
            2 => {
                out.push(rng.below(256) as u8);
                n.inserted += 1;
            }
            3 => {
                i += 2 + rng.below(63) as usize;
                n.dropped_runs += 1;
            }
            _ => {
                let len = (2 + rng.below(63) as usize).min(out.len());
                let from = out.len() - len;
                out.extend_from_within(from..);
                n.duplicated_runs += 1;
            }
        }
    }
    (out, n)
}

/// The good frames of a stream (CRC checked), as (seq, raw content), found with the wire crate's
/// own accumulator: the test's ground truth of what arrived intact.
fn good_frames(stream: &[u8]) -> Vec<(u16, Vec<u8>, bool)> {
    let mut acc: Box<Accumulator<65536>> = Box::new(Accumulator::new());
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (frame, r) = acc.feed(rest);
        rest = r;
        if let Some(Ok(f)) = frame {
            out.push((
                f.seq,
                format!("{}/{}/{}/{:?}", f.version, f.base_id, f.base_time, f.body).into_bytes(),
                // Extended record kind 0: the frame opens with a session record.
                f.body.first() == Some(&0xC0),
            ));
        }
    }
    out
}

/// The stream through a decoder anchored at [`WALL`], in 61-byte pieces.
fn decode(stream: &[u8]) -> Decoded {
    decode_in(stream, anchored(), 61)
}

/// `part` is `whole` with some items left out, the rest in order.
fn subsequence<T: PartialEq>(part: &[T], whole: &[T]) -> bool {
    let mut it = whole.iter();
    part.iter().all(|p| it.any(|w| w == p))
}

/// Why a span from the corrupted stream is not an honest copy of the clean one, if it is not.
fn check_span(got: &Span, clean: &Span) -> Result<(), String> {
    let flagged = got.incomplete || !got.warnings.is_empty();
    if got.trace_id != clean.trace_id {
        return Err(format!(
            "trace {:032x} instead of {:032x}",
            got.trace_id, clean.trace_id
        ));
    }
    let placeholder = got.operation.starts_with("<unknown name #")
        && got.warnings.iter().any(|w| w.contains("never defined"));
    if got.operation != clean.operation && !placeholder {
        return Err(format!(
            "name {:?} instead of {:?}",
            got.operation, clean.operation
        ));
    }
    if got.parent_span_id() != clean.parent_span_id() {
        return Err(format!(
            "parent {:?} instead of {:?}",
            got.parent_span_id(),
            clean.parent_span_id()
        ));
    }
    if got.start_unix_nanos != clean.start_unix_nanos {
        return Err("start time differs".into());
    }
    if !got.incomplete && got.duration_nanos != clean.duration_nanos {
        return Err("duration differs on a complete span".into());
    }
    if got.incomplete && got.duration_nanos > clean.duration_nanos {
        return Err("an incomplete span lasts longer than the real one".into());
    }
    if !flagged {
        if got.tags != clean.tags
            || got.logs != clean.logs
            || got.baggage != clean.baggage
            || got.references != clean.references
        {
            return Err("records differ on a span without warnings".into());
        }
        return Ok(());
    }
    // Flagged: it may lack records (and placeholders may stand for names), never gain or alter one.
    let same_key = |a: &str, b: &str| a == b || a.starts_with("<unknown name #");
    let tags_ok = {
        let mut it = clean.tags.iter();
        got.tags.iter().all(|t| {
            it.any(|c| {
                same_key(&t.key, &c.key)
                    && (t.value == c.value
                        || matches!(&t.value, microspan_decoder::model::Value::Str(s) if s.starts_with("<unknown name #")))
            })
        })
    };
    if !tags_ok {
        return Err(format!(
            "tags {:?} are not a part of {:?}",
            got.tags, clean.tags
        ));
    }
    let logs_ok = {
        let mut it = clean.logs.iter();
        got.logs.iter().all(|l| {
            it.any(|c| {
                c.time_unix_nanos == l.time_unix_nanos
                    && c.fields.len() == l.fields.len()
                    && l.fields.iter().zip(&c.fields).all(|(a, b)| {
                        same_key(&a.key, &b.key)
                            && (a.value == b.value
                                || matches!(&a.value, microspan_decoder::model::Value::Str(s) if s.starts_with("<unknown name #")))
                    })
            })
        })
    };
    if !logs_ok {
        return Err("logs are not a part of the clean span's".into());
    }
    if !subsequence(&got.baggage, &clean.baggage) {
        return Err("baggage differs".into());
    }
    if !subsequence(&got.references, &clean.references) {
        return Err("references differ".into());
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    clean_spans: u64,
    exact: u64,
    exported: u64,
    flagged: u64,
    clean_frames: u64,
    intact_frames: u64,
    crc_escapes: u64,
    faults: u64,
    corrupted_frames_checked: u64,
    violations: u64,
}

/// One case: a stream, a rate, a seed. Panics with the reason on any violation.
fn run_case(name: &str, clean: &[u8], rate: f64, seed: u64, tally: &mut Tally) {
    let Decoded {
        spans: clean_spans,
        stats: clean_stats,
        ..
    } = decode(clean);
    assert_eq!(
        (clean_stats.crc_errors, clean_stats.spans.lost_frames),
        (0, 0),
        "{name}: the clean stream decodes without loss"
    );
    let by_id: HashMap<u64, &Span> = clean_spans.iter().map(|s| (s.span_id, s)).collect();
    assert_eq!(by_id.len(), clean_spans.len(), "span ids are unique");

    let (bad, faults) = corrupt(clean, rate, seed);
    let Decoded { spans, stats, .. } = decode(&bad);
    let ctx = format!("{name} rate {rate:e} seed {seed} ({faults:?})");

    // Frames: which clean frames arrived intact (same seq, same content), in stream order.
    let clean_frames = good_frames(clean);
    let clean_set: HashSet<&(u16, Vec<u8>, bool)> = clean_frames.iter().collect();
    let arrived = good_frames(&bad);
    let escapes = arrived.iter().filter(|f| !clean_set.contains(f)).count() as u64;
    let mut seen = HashSet::new();
    let intact: Vec<(u16, bool)> = arrived
        .iter()
        .filter(|f| clean_set.contains(f) && seen.insert((*f).clone()))
        .map(|f| (f.0, f.2))
        .collect();
    // Exactly the frames missing between intact ones are counted as lost on the link, from the
    // first session record on (before it the decoder skips frames and counts them as such).
    let first_session = intact.iter().position(|f| f.1).unwrap_or(intact.len());
    let gap = |w: &[(u16, bool)]| u64::from(w[1].0.wrapping_sub(w[0].0).wrapping_sub(1));
    let gaps: u64 = intact[first_session..].windows(2).map(gap).sum();
    let gaps_before_session: u64 = intact[..(first_session + 1).min(intact.len())]
        .windows(2)
        .map(gap)
        .sum();
    let missing = clean_frames.len() as u64 - intact.len() as u64;
    if escapes == 0 {
        assert_eq!(
            stats.spans.lost_frames, gaps,
            "{ctx}: lost-frame count is not the sequence gaps between intact frames"
        );
        // Frames missing at the ends have no gap around them: their damaged bytes are counted as
        // CRC or bad frames, unless a dropped run swallowed them whole (then nothing arrived).
        let edges = missing - gaps - gaps_before_session;
        assert!(
            edges <= stats.crc_errors + stats.bad_frames + 2,
            "{ctx}: {edges} frames missing at the ends, {} CRC errors and {} bad frames",
            stats.crc_errors,
            stats.bad_frames
        );
    }
    assert!(
        missing <= stats.spans.lost_frames + stats.crc_errors + stats.bad_frames + gaps_before_session,
        "{ctx}: {missing} frames did not arrive intact but only {} lost + {} CRC + {} bad are counted",
        stats.spans.lost_frames,
        stats.crc_errors,
        stats.bad_frames
    );

    // Spans: none corrupted, none invented, none twice.
    let mut exported_ids = HashSet::new();
    for s in &spans {
        let clean = by_id.get(&s.span_id).unwrap_or_else(|| {
            panic!(
                "{ctx}: span {:016x} {:?} is not in the clean stream",
                s.span_id, s.operation
            )
        });
        if let Err(why) = check_span(s, clean) {
            if std::env::var("MICROSPAN_FAULT_DEBUG").is_ok() {
                eprintln!(
                    "{ctx}: span {:016x} {:?} is corrupted: {why}",
                    s.span_id, s.operation
                );
                tally.violations += 1;
                continue;
            }
            panic!(
                "{ctx}: span {:016x} {:?} is corrupted: {why}\n got: {s:#?}\n clean: {clean:#?}",
                s.span_id, s.operation
            );
        }
        assert!(
            exported_ids.insert(s.span_id),
            "{ctx}: span {:016x} exported twice",
            s.span_id
        );
    }
    tally.clean_spans += clean_spans.len() as u64;
    tally.exported += spans.len() as u64;
    tally.exact += spans
        .iter()
        .filter(|s| !s.incomplete && s.warnings.is_empty())
        .count() as u64;
    tally.flagged += spans
        .iter()
        .filter(|s| s.incomplete || !s.warnings.is_empty())
        .count() as u64;
    tally.clean_frames += clean_frames.len() as u64;
    tally.intact_frames += intact.len() as u64;
    tally.crc_escapes += escapes;
    tally.corrupted_frames_checked += stats.crc_errors + escapes;
    tally.faults += faults.flips
        + faults.dropped
        + faults.inserted
        + faults.dropped_runs
        + faults.duplicated_runs;
}

/// The stream with every `every`-th frame sent twice in a row, and every `every`-th + 1 frame sent
/// again two frames later (a link or a relay that retransmits whole frames).
fn replay_frames(clean: &[u8], every: usize) -> Vec<u8> {
    let frames: Vec<&[u8]> = clean.split_inclusive(|&b| b == 0).collect();
    let mut out = Vec::with_capacity(clean.len() * 2);
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(f);
        if i % every == 0 {
            out.extend_from_slice(f);
        }
        if i % every == 3 && i >= 2 {
            out.extend_from_slice(frames[i - 2]);
        }
    }
    out
}

#[test]
fn replayed_frames_are_not_decoded_twice() {
    let clean = record::<256>(200);
    let clean_spans = decode(&clean).spans;
    let Decoded { spans, stats, .. } = decode(&replay_frames(&clean, 10));
    let by_id: HashMap<u64, &Span> = clean_spans.iter().map(|s| (s.span_id, s)).collect();
    let mut ids = HashSet::new();
    for s in &spans {
        assert!(
            ids.insert(s.span_id),
            "span {:016x} exported twice",
            s.span_id
        );
        let clean = by_id[&s.span_id];
        check_span(s, clean).unwrap_or_else(|why| panic!("{:?}: {why}", s.operation));
        assert!(
            s.warnings.is_empty() && !s.incomplete,
            "{:?}: {:?}",
            s.operation,
            s.warnings
        );
    }
    assert_eq!(spans.len(), clean_spans.len());
    assert_eq!(
        stats.spans.lost_frames, 0,
        "a replayed frame is not a lost one"
    );
}

/// The stream as a device sends it when every `every`-th frame is restarted
/// (`Drain::restart_frame`) after `cut` bytes of it went out: the fragment, its delimiter, the
/// whole frame. Every 3·`every`-th restart is of a frame whose first copy got through whole.
fn restart_frames(clean: &[u8], every: usize, cut: usize) -> Vec<u8> {
    let frames: Vec<&[u8]> = clean.split_inclusive(|&b| b == 0).collect();
    let mut out = Vec::with_capacity(clean.len() * 2);
    for (i, f) in frames.iter().enumerate() {
        if i % every == 0 && i > 0 {
            let cut = if i % (3 * every) == 0 {
                f.len()
            } else {
                cut.min(f.len() - 1)
            };
            out.extend_from_slice(&f[..cut]);
            if cut < f.len() {
                out.push(0);
            }
        }
        out.extend_from_slice(f);
    }
    out
}

#[test]
fn restarted_frames_lose_nothing_and_are_not_counted_as_bad() {
    let clean = record::<256>(200);
    let clean_spans = decode(&clean).spans;
    for cut in [1, 7, 40] {
        let Decoded { spans, stats, .. } = decode(&restart_frames(&clean, 5, cut));
        assert_eq!(spans.len(), clean_spans.len(), "cut {cut}");
        let by_id: HashMap<u64, &Span> = clean_spans.iter().map(|s| (s.span_id, s)).collect();
        for s in &spans {
            check_span(s, by_id[&s.span_id]).unwrap_or_else(|why| panic!("{why}"));
        }
        assert!(stats.restarted_frames > 10, "cut {cut}: {stats:?}");
        assert!(stats.duplicate_frames > 3, "cut {cut}: {stats:?}");
        assert_eq!(
            (stats.crc_errors, stats.bad_frames, stats.discarded_bytes),
            (0, 0, 0),
            "cut {cut}"
        );
        assert!(!stats.lost_anything(), "cut {cut}: {stats:?}");
    }
    // A bad frame that is not the start of the next one is still bad.
    let mut garbled = clean.clone();
    let at = garbled.iter().position(|&b| b == 0).unwrap() + 3;
    garbled[at] ^= 0x55;
    let stats = decode(&garbled).stats;
    assert_eq!(stats.crc_errors + stats.bad_frames, 1);
    assert_eq!(stats.restarted_frames, 0);
    assert!(stats.lost_anything());
}

#[test]
fn a_truncated_frame_is_not_taken_for_a_restart_of_the_next_one() {
    // Consecutive frames share their first encoded bytes (COBS code, version, sequence low
    // byte), so a frame cut to its first bytes by the link "begins" the next frame too. Only the
    // frame after the last good one can be a restart of the fragment: here it is not, and the
    // fragment is a bad frame.
    let frames = frames(&record::<256>(40));
    let mut cases = 0;
    for k in 2..frames.len() - 1 {
        for cut in 1..=3 {
            let (this, next) = (&frames[k], &frames[k + 1]);
            if cut >= this.len() - 1 || !next.starts_with(&this[..cut]) {
                continue;
            }
            cases += 1;
            let mut stream = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                if i == k {
                    stream.extend_from_slice(&f[..cut]);
                    stream.push(0);
                } else {
                    stream.extend_from_slice(f);
                }
            }
            let stats = decode(&stream).stats;
            assert_eq!(
                stats.restarted_frames, 0,
                "frame {k} cut to {cut}: {stats:?}"
            );
            assert_eq!(
                stats.crc_errors + stats.bad_frames,
                1,
                "frame {k} cut to {cut}"
            );
            assert_eq!(stats.discarded_bytes, cut as u64 + 1);
        }
    }
    assert!(cases > 10, "{cases}");
}

#[test]
fn bad_frames_are_counted_whatever_follows_them() {
    let frames = frames(&record::<256>(40));
    let join = |parts: &[&[u8]]| parts.concat();
    // A bad frame, then a replayed (duplicate) frame.
    let mut bad = frames[5].clone();
    bad[4] ^= 0x01;
    assert_ne!(bad[4], 0);
    let stream = join(&[
        &frames[..5].concat(),
        &bad,
        &frames[4],
        &frames[5..].concat(),
    ]);
    let stats = decode(&stream).stats;
    assert_eq!(
        (stats.crc_errors, stats.duplicate_frames),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.discarded_bytes, bad.len() as u64);
    // A frame of a version this decoder does not read (good CRC).
    let f = &frames[3];
    let mut raw = f[..f.len() - 1].to_vec();
    let n = cobs::decode_in_place(&mut raw).unwrap();
    raw.truncate(n);
    raw[0] = 9;
    let crc = microspan::wire::CRC.checksum(&raw[..n - 2]);
    raw[n - 2..].copy_from_slice(&crc.to_le_bytes());
    let mut odd = vec![0u8; n + n / 254 + 2];
    let m = cobs::encode(&raw, &mut odd);
    odd.truncate(m);
    odd.push(0);
    let stream = join(&[&frames[..3].concat(), &odd, &frames[3..].concat()]);
    let stats = decode(&stream).stats;
    assert_eq!(stats.bad_frames, 1, "{stats:?}");
    assert_eq!(stats.discarded_bytes, odd.len() as u64);
}

#[test]
fn corrupted_links_never_export_a_corrupted_span_and_count_every_lost_frame() {
    let seeds: u64 = std::env::var("MICROSPAN_FAULT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("128-byte frames", record::<128>(400)),
        ("256-byte frames", record::<256>(600)),
        ("1024-byte frames", record::<1024>(600)),
    ];
    println!();
    println!("| rate | stream | spans (clean) | exported | complete, no warning | flagged | frames intact | CRC errors | passed the CRC corrupted |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for rate in [1e-4, 1e-3, 1e-2] {
        let mut all = Tally::default();
        for (name, clean) in &streams {
            let mut t = Tally::default();
            for seed in 0..seeds {
                run_case(name, clean, rate, seed + 1, &mut t);
            }
            println!(
                "| {rate:e} | {name} ({} B) | {} | {:.1} % | {:.1} % | {} | {:.1} % | {} | {} |",
                clean.len(),
                t.clean_spans,
                100.0 * t.exported as f64 / t.clean_spans as f64,
                100.0 * t.exact as f64 / t.clean_spans as f64,
                t.flagged,
                100.0 * t.intact_frames as f64 / t.clean_frames as f64,
                t.corrupted_frames_checked,
                t.crc_escapes,
            );
            all.clean_spans += t.clean_spans;
            all.exported += t.exported;
            all.exact += t.exact;
            all.crc_escapes += t.crc_escapes;
            all.corrupted_frames_checked += t.corrupted_frames_checked;
        }
        println!(
            "| {rate:e} | **all** | {} | **{:.1} %** | **{:.1} %** | | | {} | {} |",
            all.clean_spans,
            100.0 * all.exported as f64 / all.clean_spans as f64,
            100.0 * all.exact as f64 / all.clean_spans as f64,
            all.corrupted_frames_checked,
            all.crc_escapes,
        );
        if rate <= 1e-4 {
            assert!(
                all.exact as f64 >= 0.9 * all.clean_spans as f64,
                "decoding resumes: most spans survive 1e-4"
            );
        }
    }
}

/// A span continuing a remote trace whose start is in a frame lost on the link: its descendants,
/// in later frames, still land in the remote trace (the device names the trace in each of their
/// starts), with the right parents; only the lost span is missing.
#[test]
fn descendants_of_a_lost_remote_continuation_keep_their_trace() {
    let clock = ManualClock::new(1_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("lost-frame").device_id(0xD1).boot_id(7);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 128> = Drain::new(&tracer).unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    // One element per call: the frames written since the last one.
    let mut flush = |drain: &mut Drain<'_, 128>| {
        frames.push(drain_all(drain));
    };
    let remote = SpanContext {
        trace_id: TraceId(0xAAAA_0000_0000_0000_0000_0000_0000_0001),
        span_id: SpanId(0xBB),
        flags: Flags::SAMPLED,
    };
    tracer.root("before").finish();
    flush(&mut drain); // the session record and a trace of its own
    let handler = tracer.span("handler").child_of(&remote).start();
    flush(&mut drain); // the frame that will be lost
    let child = handler.child("child");
    let sibling = handler.child("sibling");
    clock.advance(5);
    flush(&mut drain);
    let grandchild = child.child("grandchild");
    clock.advance(5);
    drop(grandchild);
    drop(sibling);
    drop(child);
    drop(handler);
    flush(&mut drain);
    assert!(frames.len() >= 4, "{} frames", frames.len());
    let clean: Vec<u8> = frames.concat();
    let lossy: Vec<u8> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    let clean_spans = decode(&clean).spans;
    let Decoded { spans, stats, .. } = decode(&lossy);
    assert_eq!(stats.spans.lost_frames, 1);
    assert_eq!(clean_spans.len(), 5);
    assert_eq!(spans.len(), 4, "all but the lost span: {spans:#?}");
    let by_id: HashMap<u64, &Span> = clean_spans.iter().map(|s| (s.span_id, s)).collect();
    for s in spans.iter().filter(|s| &*s.operation != "before") {
        assert_eq!(
            s.trace_id, remote.trace_id.0,
            "{:?} left its trace",
            s.operation
        );
        let clean = by_id[&s.span_id];
        assert_eq!(s.references, clean.references, "{:?}", s.operation);
        assert_eq!(s.operation, clean.operation);
        // Children of the lost span say their parent was not received; the grandchild's parent
        // arrived.
        let parent_lost = matches!(&*s.operation, "child" | "sibling");
        assert_eq!(
            s.warnings.iter().any(|w| w.contains("was not received")),
            parent_lost,
            "{:?}: {:?}",
            s.operation,
            s.warnings
        );
    }
}

/// A child of a span continuing a remote trace, in a later frame than its parent (so its start
/// names the trace and the parent in full), still inherits the parent's baggage, as any child.
#[test]
fn a_child_of_a_remote_continuation_in_a_later_frame_inherits_its_baggage() {
    let clock = ManualClock::new(1_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("baggage").device_id(0xD2).boot_id(3);
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 128> = Drain::new(&tracer).unwrap();
    let mut out = Vec::new();
    let remote = SpanContext {
        trace_id: TraceId(0xCCCC_0000_0000_0000_0000_0000_0000_0002),
        span_id: SpanId(0xDD),
        flags: Flags::SAMPLED,
    };
    let mut handler = tracer
        .span("handler")
        .child_of(&remote)
        .with_baggage(Baggage::<2>::new())
        .start();
    handler.set_baggage("tenant", "blue");
    out.extend(drain_all(&mut drain));
    let child = handler.child("child");
    clock.advance(3);
    drop(child);
    drop(handler);
    out.extend(drain_all(&mut drain));
    let Decoded { spans, stats, .. } = decode(&out);
    assert_eq!(stats.spans.lost_frames, 0);
    let child = span(&spans, "child");
    assert_eq!(child.trace_id, remote.trace_id.0);
    assert_eq!(child.baggage.len(), 1, "{child:#?}");
    assert!(child.warnings.is_empty(), "{:?}", child.warnings);
}

/// A span continuing a remote trace whose parent's id looks like one of this device's (boot id 0,
/// a small remote span id) is still read as remote: no warning, no inherited baggage. Only the
/// device's explicit mark makes a parent local.
#[test]
fn a_remote_parent_id_that_looks_local_stays_remote() {
    let clock = ManualClock::new(1_000);
    let ring: Ring<1024> = Ring::new();
    let session = Session::new("boot-zero").device_id(0xD3); // boot id 0
    let tracer = Tracer::new(&ring, &clock, &session);
    let mut drain: Drain<'_, 128> = Drain::new(&tracer).unwrap();
    let mut out = Vec::new();
    let trace = TraceId(0xEEEE_0000_0000_0000_0000_0000_0000_0003);
    // A local span with baggage, in the remote trace, whose local id is 1.
    let mut local = tracer
        .span("local")
        .child_of(&SpanContext {
            trace_id: trace,
            span_id: SpanId(0x77),
            flags: Flags::SAMPLED,
        })
        .with_baggage(Baggage::<2>::new())
        .start();
    local.set_baggage("k", "v");
    out.extend(drain_all(&mut drain));
    // Another service's span 0x1 (same low half as `local`'s id, high half 0 = this boot id).
    let handler = tracer
        .span("handler")
        .child_of(&SpanContext {
            trace_id: trace,
            span_id: SpanId(u64::from(local.context().span_id.0 as u32)),
            flags: Flags::SAMPLED,
        })
        .start();
    clock.advance(2);
    drop(handler);
    drop(local);
    out.extend(drain_all(&mut drain));
    let spans = decode(&out).spans;
    let handler = span(&spans, "handler");
    assert!(handler.baggage.is_empty(), "{:?}", handler.baggage);
    assert!(handler.warnings.is_empty(), "{:?}", handler.warnings);
}
