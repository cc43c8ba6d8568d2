//! Hostile input: everything the decoder reads is untrusted. Whatever the bytes, it must not panic,
//! its memory must stay within its `Limits`, and what it refuses must be counted or named.
//!
//! Also the stable replay of the fuzz corpora (`host-decoder/fuzz/corpus/*`) through the very code
//! the fuzz targets run, and two ignored tools: `write_seed_corpus` (regenerates the seeds) and
//! `adversarial_rss` (peak RSS of the `microspan` binary on adversarial streams).
//!
//! `cargo test -p microspan-decoder --test hostile`; `MICROSPAN_HOSTILE_MB=64` feeds more random
//! bytes (default 8 MiB).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_logic;
mod support;

use std::path::{Path, PathBuf};

use fuzz_logic::{frame_into, run_stream, unframe, Chunks, ANCHOR_UNIX_NANOS, SMALL_LIMITS};
use microspan::wire::{ext, start_flags, tag, vtype, Capacities, Hello};
use microspan_decoder::assemble::{Limits, Options};
use microspan_decoder::model::Span;
use microspan_decoder::stream::{StreamDecoder, StreamError, StreamStats};
use support::decoding::span;
use support::device::{drain_all, frames, ManualClock};
use support::rng::Rng;
use support::workload::{record, Workload};

// ---------------------------------------------------------------------------------------------
// Crafting frames by hand

const BOOT: u32 = 0xB007;

/// The raw content of one frame (version, sequence, base id, base time, records), before CRC and
/// COBS.
struct Body(Vec<u8>);

impl Body {
    fn new(seq: u16, base_id: u32, base_time: u64) -> Self {
        Self::with_version(1, seq, base_id, base_time)
    }
    fn with_version(version: u8, seq: u16, base_id: u32, base_time: u64) -> Self {
        let mut b = Self(vec![version]);
        b.0.extend_from_slice(&seq.to_le_bytes());
        b.varint(base_id as u64).varint(base_time);
        b
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    fn inline(&mut self, s: &str) -> &mut Self {
        self.varint((s.len() as u64) << 1 | 1).bytes(s.as_bytes())
    }
    fn name_ref(&mut self, id: u32) -> &mut Self {
        self.varint((id as u64) << 1)
    }
    fn hello(&mut self, h: &Hello<'_>) -> &mut Self {
        let mut buf = [0u8; 512];
        let n = postcard::to_slice(h, &mut buf).expect("hello fits").len();
        self.u8(tag::EXT | ext::HELLO).bytes(&buf[..n])
    }
    fn name_def(&mut self, id: u32, name: &str) -> &mut Self {
        self.u8(tag::EXT | ext::NAME)
            .varint(id as u64)
            .varint(name.len() as u64)
            .bytes(name.as_bytes())
    }
    /// A root start, the id `delta` after the last start, named by the inline `name`.
    fn root(&mut self, delta: u32, name: &str, dt: u64) -> &mut Self {
        self.start(delta, start_flags::ROOT, None, name, dt)
    }
    /// An extended start. `parent`: (parent id delta back from the new id, optional root delta).
    fn start(
        &mut self,
        delta: u32,
        flags: u8,
        parent: Option<(u32, Option<u32>)>,
        name: &str,
        dt: u64,
    ) -> &mut Self {
        self.u8(tag::EXT | ext::START).varint(delta as u64);
        let flags = flags
            | if matches!(parent, Some((_, Some(_)))) {
                start_flags::ROOT_EXPLICIT
            } else {
                0
            };
        self.u8(flags);
        if let Some((p, r)) = parent {
            self.varint(p as u64);
            if let Some(r) = r {
                self.varint(r as u64);
            }
        }
        self.inline(name).varint(dt)
    }
    /// A short root start (3 bytes): `00 1 ddddd`, name id 0, `dt`.
    fn short_root(&mut self, delta: u8, dt: u8) -> &mut Self {
        assert!((1..32).contains(&delta) && dt < 0x80);
        self.u8(tag::START | tag::START_ROOT_BIT | delta)
            .name_ref(0)
            .u8(dt)
    }
    /// An end of the span `back` ids before the last start.
    fn end(&mut self, back: u64, dt: u64) -> &mut Self {
        if back < 63 {
            self.u8(tag::END | back as u8);
        } else {
            self.u8(tag::END | 63).varint(back);
        }
        self.varint(dt)
    }
    fn tag_u64(&mut self, key: &str, v: u64) -> &mut Self {
        self.u8(tag::TAG | vtype::U64).inline(key).varint(v)
    }
    fn drops(&mut self, total: u32) -> &mut Self {
        self.u8(tag::EXT | ext::DROPS).varint(total as u64)
    }
    fn frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        frame_into(&self.0, &mut out);
        out
    }
}

fn hello(boot_id: u32, epoch_frames: u16) -> Hello<'static> {
    Hello {
        service: "hostile",
        device_id: 0xD1CE,
        boot_id,
        ticks_per_second: 1_000_000,
        now_ticks: 1_000,
        epoch_frames,
        capacities: Capacities {
            tags_per_span: 8,
            fields_per_log: 4,
            str_len: 32,
            baggage_value_len: 32,
            frame_max: 256,
            ring_words: 1024,
        },
        firmware_version: "0.0.0",
        microspan_version: "0.1.0",
        wall_clock: None,
        time_shift: 0,
    }
}

/// A frame holding only a session record (sequence 0, epoch of 32768 frames).
fn session_frame() -> Vec<u8> {
    Body::new(0, 0, 1_000).hello(&hello(BOOT, 32_768)).frame()
}

/// Everything a decoder with `limits` makes of `stream`, fed in `chunk`-byte pieces.
struct Decoded {
    spans: Vec<Span>,
    stats: StreamStats,
    fatal: Option<StreamError>,
    /// Spans exported before `finish`.
    before_finish: usize,
    peak_open: u64,
}

fn decode(stream: &[u8], limits: Limits, chunk: usize) -> Decoded {
    let mut dec = StreamDecoder::new(Options {
        limits,
        fixed_anchor_unix_nanos: Some(ANCHOR_UNIX_NANOS),
        host_name: None,
        decoder_host: None,
        host_clock: None,
    });
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut fatal = None;
    let mut peak_open = 0;
    for piece in stream.chunks(chunk.max(1)) {
        let r = dec.feed(piece, &mut out);
        let open = dec.stats().spans.open_spans;
        assert!(
            open as usize <= limits.max_open_spans,
            "{open} open spans > limit {}",
            limits.max_open_spans
        );
        peak_open = peak_open.max(open);
        spans.extend(out.drain(..).flat_map(|b| b.spans));
        if let Err(e) = r {
            fatal = Some(e);
            break;
        }
    }
    let before_finish = spans.len();
    dec.finish(&mut out);
    spans.extend(out.drain(..).flat_map(|b| b.spans));
    let stats = dec.stats();
    assert_eq!(stats.spans.open_spans, 0);
    assert_eq!(stats.spans.spans, spans.len() as u64);
    Decoded {
        spans,
        stats,
        fatal,
        before_finish,
        peak_open,
    }
}

fn reference_stream(traces: usize, w: Workload) -> Vec<u8> {
    record(traces, w).bytes
}

/// A recorded stream with both baggage records: a span continuing an upstream context receives
/// two items (`BAGGAGE_CARRIED`, wire kind 13) and sets one (`BAGGAGE`), and its child inherits
/// them.
fn carried_baggage_stream() -> Vec<u8> {
    use microspan::propagation::Extracted;
    use microspan::{Drain, Flags, Ring, Session, SpanContext, SpanId, TraceId, Tracer};
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new(5_000)));
    let ring: &'static Ring<1024> = Box::leak(Box::new(Ring::new()));
    let session = Box::leak(Box::new(Session::new("carried").boot_id(BOOT)));
    let tracer: &'static Tracer<'static> = Box::leak(Box::new(Tracer::new(ring, clock, session)));
    let mut drain: Drain<'static, 256> = Drain::new(tracer).unwrap();
    let mut ex: Extracted<3> = Extracted::new(SpanContext {
        trace_id: TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        span_id: SpanId(0x00f0_67aa_0ba9_02b7),
        flags: Flags::SAMPLED,
    });
    ex.baggage.set("tenant", "acme");
    ex.baggage.set("region", "north");
    let mut handler = tracer.span("handle").extracted(ex).start();
    handler.set_baggage("tenant", "globex");
    clock.advance(40);
    drop(handler.child("store"));
    clock.advance(10);
    drop(handler);
    drain_all(&mut drain)
}

/// The seed of carried baggage holds both kinds of baggage record, and decodes to spans that
/// log only the item set.
#[test]
fn the_carried_baggage_seed_holds_both_baggage_records() {
    use microspan::wire::decode::{Accumulator, Record, RecordDecoder};
    let stream = carried_baggage_stream();
    let mut acc: Box<Accumulator<512>> = Box::new(Accumulator::new());
    let mut input = &stream[..];
    let mut carried = Vec::new();
    while !input.is_empty() {
        let (f, rest) = acc.feed(input);
        input = rest;
        if let Some(f) = f {
            for r in RecordDecoder::new(&f.unwrap()) {
                if let Record::Baggage { carried: c, .. } = r.unwrap() {
                    carried.push(c);
                }
            }
        }
    }
    assert_eq!(carried, [true, true, false]);
    let d = decode(&stream, Limits::default(), 7);
    let handle = span(&d.spans, "handle");
    let logs = handle.logs.len();
    assert_eq!((d.spans.len(), logs), (2, 1), "{handle:#?}");
}

// ---------------------------------------------------------------------------------------------
// Random and damaged bytes

fn hostile_mb() -> usize {
    std::env::var("MICROSPAN_HOSTILE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

#[test]
fn random_bytes_never_panic_and_are_counted() {
    let mut rng = Rng(0x5EED_0001);
    let mut data = vec![0u8; hostile_mb() << 20];
    rng.fill(&mut data);
    // Half of it with frequent delimiters, so most pieces are short "frames".
    let half = data.len() / 2;
    for b in &mut data[half..] {
        if *b < 24 {
            *b = 0;
        }
    }
    let d = decode(&data, Limits::default(), 65_536);
    assert!(
        d.fatal.is_none(),
        "random bytes are not a newer wire version: {:?}",
        d.fatal
    );
    let s = &d.stats;
    assert_eq!(s.bytes, data.len() as u64);
    assert!(s.crc_errors + s.bad_frames > 10_000, "{s:?}");
    assert!(s.discarded_bytes > (data.len() / 2) as u64, "{s:?}");
    assert_eq!(
        s.spans.frames, 0,
        "a random frame passed the CRC and the header: {s:?}"
    );
    // The frame layer's own checks (chunking invariance, progress) on a slice of it.
    fuzz_logic::frames(&data[..1 << 18]);
    fuzz_logic::frames(&data[half..half + (1 << 18)]);
}

#[test]
fn corrupted_bytes_in_a_real_stream_lose_only_their_frames() {
    let stream = reference_stream(2_000, Workload::FULL);
    let clean = decode(&stream, Limits::default(), 4096);
    assert!(clean.stats.crc_errors == 0 && clean.spans.iter().all(|s| !s.incomplete));
    let mut rng = Rng(42);
    let mut frames = frames(&stream);
    let mut damaged = 0;
    for f in frames.iter_mut().skip(1) {
        if rng.below(20) == 0 && f.len() > 2 {
            let at = rng.below(f.len() as u64 - 1) as usize;
            f[at] ^= 1 << rng.below(8);
            damaged += 1;
        }
    }
    let stream: Vec<u8> = frames.concat();
    let d = decode(&stream, Limits::default(), 777);
    assert!(d.fatal.is_none());
    let s = &d.stats;
    // A flipped bit is a CRC error, or breaks the COBS structure (then the frame, or it and its
    // neighbour, are refused as bad frames).
    assert!(
        s.crc_errors + s.bad_frames >= damaged / 2 && s.crc_errors > 0,
        "{damaged} damaged: {s:?}"
    );
    assert!(s.spans.lost_frames > 0);
    assert!(
        d.spans.len() as f64 > clean.spans.len() as f64 * 0.8,
        "{} of {}",
        d.spans.len(),
        clean.spans.len()
    );
    assert!(d
        .spans
        .iter()
        .any(|s| s.warnings.iter().any(|w| w.contains("frames were lost"))));
}

#[test]
fn truncated_frames_and_streams() {
    let stream = reference_stream(40, Workload::FULL);
    let frames = frames(&stream);
    // A stream cut anywhere in its first frames.
    let head: usize = frames.iter().take(3).map(Vec::len).sum();
    for cut in 0..head.min(stream.len()) {
        decode(&stream[..cut], SMALL_LIMITS, 64);
    }
    // Every frame's content cut at every length, re-framed with a correct CRC: the record layer
    // meets a truncated record and abandons the rest of the frame.
    let contents = unframe(&stream);
    let mut record_errors = 0;
    let mut at = 0;
    let mut pieces = Vec::new();
    while at + 2 <= contents.len() {
        let len = u16::from_le_bytes([contents[at], contents[at + 1]]) as usize;
        pieces.push(&contents[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    assert_eq!(pieces.len(), frames.len());
    for cut in 0..pieces[0].len() {
        // The session frame cut short, then the rest whole.
        let mut s = Vec::new();
        frame_into(&pieces[0][..cut], &mut s);
        for p in &pieces[1..] {
            frame_into(p, &mut s);
        }
        let d = decode(&s, SMALL_LIMITS, 4096);
        record_errors += d.stats.spans.record_errors;
    }
    for (i, p) in pieces.iter().enumerate().skip(1) {
        for cut in 0..p.len() {
            let mut s = frames[0].clone();
            frame_into(&p[..cut], &mut s);
            let d = decode(&s, SMALL_LIMITS, 4096);
            record_errors += d.stats.spans.record_errors;
            assert!(
                d.stats.bad_frames + d.stats.spans.frames >= 1,
                "frame {i} cut at {cut}"
            );
        }
    }
    assert!(record_errors > 1_000, "{record_errors}");
}

// ---------------------------------------------------------------------------------------------
// Absurd numbers

#[test]
fn absurd_lengths_and_varints_are_record_errors() {
    let mut cases: Vec<(&str, Body)> = Vec::new();
    let mut add = |what, f: &dyn Fn(&mut Body)| {
        let mut b = Body::new(1, 0, 2_000);
        f(&mut b);
        cases.push((what, b));
    };
    add("name of 2^63 bytes", &|b| {
        b.u8(tag::EXT | ext::NAME)
            .varint(1)
            .varint(1 << 63)
            .bytes(b"abc");
    });
    add("inline string of 2^62 bytes", &|b| {
        b.u8(tag::EXT | ext::START)
            .varint(1)
            .u8(start_flags::ROOT)
            .varint((1 << 62) | 1)
            .bytes(b"x");
    });
    add("eleven-byte varint", &|b| {
        b.u8(tag::EXT | ext::DROPS).bytes(&[0xFF; 10]).u8(1);
    });
    add("varint overflowing u64", &|b| {
        b.u8(tag::EXT | ext::DROPS).bytes(&[0xFF; 9]).u8(0x7F);
    });
    add("u32 field over u32", &|b| {
        b.u8(tag::EXT | ext::START)
            .varint(1 << 40)
            .u8(start_flags::ROOT)
            .inline("x")
            .varint(1);
    });
    add("name id over u32", &|b| {
        b.u8(tag::EXT | ext::START)
            .varint(1)
            .u8(start_flags::ROOT)
            .varint(1 << 40)
            .varint(1);
    });
    add("log of 4 billion fields", &|b| {
        b.root(1, "r", 1)
            .u8(tag::EXT | ext::LOG)
            .varint(0)
            .varint(1)
            .varint(u32::MAX as u64)
            .u8(vtype::TRUE)
            .inline("k");
    });
    add("time overflowing u64", &|b| {
        b.u8(tag::EXT | ext::SET_TIME)
            .varint(u64::MAX - 1)
            .root(1, "r", 5);
    });
    add("end far back", &|b| {
        b.root(1, "r", 1).end(u64::MAX, 1);
    });
    add("unknown extended kind", &|b| {
        b.root(1, "r", 1).u8(tag::EXT | 0x3F).bytes(&[1, 2, 3]);
    });
    add("unknown value type", &|b| {
        b.root(1, "r", 1).u8(tag::TAG | 0x3F).inline("k");
    });
    add("invalid UTF-8", &|b| {
        b.root(1, "r", 1)
            .u8(tag::TAG | vtype::STR)
            .inline("k")
            .varint(5)
            .bytes(&[0xFF, 0xFE]);
    });
    add("unreadable session record", &|b| {
        b.u8(tag::EXT | ext::HELLO).bytes(&[0xFF; 8]);
    });
    add("baggage key by name id", &|b| {
        b.root(1, "r", 1)
            .u8(tag::EXT | ext::BAGGAGE)
            .varint(0)
            .name_ref(3)
            .inline("v");
    });
    add("reference of unknown kind", &|b| {
        b.root(1, "r", 1)
            .u8(tag::EXT | ext::REF)
            .varint(0)
            .u8(9)
            .bytes(&[1; 24]);
    });
    for (what, body) in &cases {
        let mut s = session_frame();
        s.extend(body.frame());
        let d = decode(&s, Limits::default(), 4096);
        assert!(d.fatal.is_none(), "{what}");
        assert_eq!(d.stats.spans.record_errors, 1, "{what}: {:?}", d.stats);
        assert_eq!(d.stats.spans.frames, 2, "{what}");
    }
    // A header whose base id does not fit 32 bits is a bad frame, not a panic.
    let mut s = session_frame();
    let mut bad = vec![1u8, 1, 0];
    bad.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00]);
    frame_into(&bad, &mut s);
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.stats.bad_frames, 1);
}

/// A malformed record abandons the rest of its frame, where the END of a span open across it may
/// have been: like a lost frame, it is a loss of the session. A span left open ends at the last
/// time heard before it (the frame's last good record, or the frames before when the malformed
/// record comes first), not at the end of the capture, and says records were lost; a child
/// started later is told its inherited baggage may be incomplete.
#[test]
fn a_malformed_record_is_a_loss_for_the_spans_open_across_it() {
    let find = |d: &Decoded, name: &str| -> Span { span(&d.spans, name).clone() };
    let lost_records = |s: &Span| s.warnings.iter().any(|w| w.contains("malformed record"));
    // Whether the malformed record follows good records of its frame, or comes first.
    for after_good_records in [true, false] {
        let mut s = session_frame();
        // Frame 1: "victim" starts at 2_001 and "parent" at 2_010.
        let mut b = Body::new(1, 0, 2_000);
        b.root(1, "victim", 1).root(1, "parent", 9);
        if !after_good_records {
            s.extend(b.frame());
            b = Body::new(2, 2, 2_010);
        }
        // "bystander" starts and ends at 2_100, then a record of an unknown kind: the rest of
        // the frame (where "victim" may have ended) is abandoned.
        b.root(1, "bystander", 90).end(0, 0);
        if !after_good_records {
            s.extend(b.frame());
            b = Body::new(3, 3, 2_100);
        }
        b.u8(tag::EXT | 0x3F).bytes(&[1, 2, 3]).end(2, 50);
        s.extend(b.frame());
        let seq = if after_good_records { 2 } else { 4 };
        // Later: a child of "parent" (50_001 to 50_101), and "later" until 51_102.
        let mut b = Body::new(seq, 3, 50_000);
        b.start(1, 0, Some((2, Some(2))), "child", 1)
            .end(0, 100)
            .root(1, "later", 1)
            .end(0, 1_000);
        s.extend(b.frame());
        let d = decode(&s, Limits::default(), 4096);
        let case = if after_good_records {
            "after good records"
        } else {
            "first in its frame"
        };
        assert_eq!(d.stats.spans.record_errors, 1, "{case}: {:?}", d.stats);
        assert_eq!(d.stats.spans.lost_frames, 0, "{case}");

        let victim = find(&d, "victim");
        assert!(victim.incomplete, "{case}: {victim:?}");
        assert_eq!(
            victim.duration_nanos, 99_000,
            "{case}: to the last time heard before the malformed record"
        );
        assert!(lost_records(&victim), "{case}: {:?}", victim.warnings);
        // Open across the loss, but not before its child's end.
        let parent = find(&d, "parent");
        let child = find(&d, "child");
        assert!(
            parent.incomplete && lost_records(&parent),
            "{case}: {parent:?}"
        );
        assert_eq!(
            parent.start_unix_nanos + parent.duration_nanos,
            child.start_unix_nanos + child.duration_nanos,
            "{case}"
        );
        assert!(!child.incomplete, "{case}");
        assert!(
            child
                .warnings
                .iter()
                .any(|w| w.contains("inherited baggage may be incomplete")),
            "{case}: {:?}",
            child.warnings
        );
        // Finished before the malformed record, or started after it: nothing lost.
        for name in ["bystander", "later"] {
            let s = find(&d, name);
            assert!(!s.incomplete && s.warnings.is_empty(), "{case}: {s:?}");
        }
    }
}

#[test]
fn huge_counts_and_extreme_session_values() {
    // Sessions with a zero epoch, and times at the end of u64 (a zero clock rate: below).
    for (tps, epoch, now) in [
        (1, 0, 0),
        (1, 1, u64::MAX),
        (u32::MAX, u16::MAX, u64::MAX / 2),
    ] {
        let mut h = hello(BOOT, epoch);
        h.ticks_per_second = tps;
        h.now_ticks = now;
        h.wall_clock = Some(microspan::wire::WallClock {
            ticks: u64::MAX,
            unix_nanos: u64::MAX,
        });
        let mut s = Body::new(0, 0, now).hello(&h).frame();
        // The next frame (a sequence gap needs the device's time to move on, which it cannot
        // from the end of u64: `sequence_gaps_are_counted_exactly` covers the wrap).
        let mut b = Body::new(1, u32::MAX, now);
        b.drops(u32::MAX)
            .root(1, "wraps to id 0", 0)
            .end(0, u64::MAX - now);
        b.u8(tag::EXT | ext::END_LOSSES)
            .varint(0)
            .varint(0)
            .varint(u64::MAX)
            .varint(1 << 40)
            .varint(300)
            .varint(7);
        b.u8(tag::EXT | ext::WALL_CLOCK)
            .varint(u64::MAX)
            .varint(u64::MAX);
        s.extend(b.frame());
        // The same session announced again, with extreme times (reset detection arithmetic).
        s.extend(Body::new(2, 0, 0).hello(&h).frame());
        let d = decode(&s, Limits::default(), 4096);
        assert!(d.fatal.is_none());
        assert_eq!(d.stats.spans.device_drops, u32::MAX as u64);
        assert_eq!(d.stats.spans.lost_frames, 0, "0 → 1 → 2: {:?}", d.stats);
    }
    // A clock of 0 ticks per second: no time can be read, the session record is refused with
    // its cause named, and no session starts (its spans would all have lasted 0 or forever).
    let mut h = hello(BOOT, 4);
    h.ticks_per_second = 0;
    let mut s = Body::new(0, 0, 1_000).hello(&h).frame();
    s.extend(Body::new(1, 0, 1_010).root(1, "r", 0).end(0, 5).frame());
    let mut dec = StreamDecoder::new(Options {
        limits: Limits::default(),
        fixed_anchor_unix_nanos: Some(ANCHOR_UNIX_NANOS),
        host_name: None,
        decoder_host: None,
        host_clock: None,
    });
    let mut out = Vec::new();
    dec.feed(&s, &mut out).unwrap();
    dec.finish(&mut out);
    let st = dec.stats();
    assert_eq!(
        (st.spans.record_errors, st.spans.frames_before_session),
        (1, 2),
        "{st:?}"
    );
    assert!(
        dec.last_error()
            .is_some_and(|e| e.contains("0 ticks per second")),
        "{:?}",
        dec.last_error()
    );
}

/// A session's first session record dated far ahead (a corrupted frame that passed the CRC):
/// the next one, in sequence, is behind it. A session record behind the previous one is the
/// device's clock going back, which a misdated record cannot do and a restart whose frame 0 was
/// lost does: it is taken for a reset, once; the session it starts goes on (no second reset, and
/// nothing counted as misdated at every epoch).
#[test]
fn a_session_record_behind_the_previous_one_is_one_reset() {
    let mut h = hello(BOOT, 4);
    h.now_ticks = 1 << 40;
    let mut s = Body::new(0, 0, 1_000).hello(&h).frame();
    for seq in 1..12u16 {
        let now = 1_000 + u64::from(seq) * 100;
        let mut b = Body::new(seq, 0, now);
        if seq % 4 == 0 {
            b.hello(&Hello {
                now_ticks: now,
                ..hello(BOOT, 4)
            });
        }
        s.extend(b.frame());
    }
    let d = decode(&s, Limits::default(), 64);
    assert_eq!(
        (d.stats.spans.resets, d.stats.spans.misdated),
        (1, 0),
        "{:?}",
        d.stats
    );
}

/// Frame `seq` of a session whose frames each hold one root span, started and finished: frame
/// `seq` at time `1_000 + 10 * seq`, its span id `seq`.
fn span_frame(seq: u16) -> Vec<u8> {
    let time = 1_000 + 10 * u64::from(seq);
    Body::new(seq, u32::from(seq) - 1, time)
        .root(1, "r", 0)
        .end(0, 5)
        .frame()
}

/// A frame that arrives after later ones (a relay that reorders, a replay past the replay
/// window) is skipped and counted: not read as a gap of nearly 65 536 frames, whose new epoch
/// would clear the names and whose spans would be exported twice.
#[test]
fn a_late_frame_is_skipped_not_read_as_a_wrap() {
    let mut s = session_frame();
    for seq in 1..=80 {
        s.extend(span_frame(seq));
    }
    // Frame 10 again: older than the replay window of 64 frames.
    s.extend(span_frame(10));
    for seq in 81..=85 {
        s.extend(span_frame(seq));
    }
    let d = decode(&s, Limits::default(), 4096);
    let st = &d.stats.spans;
    assert_eq!(
        (st.late_frames, st.lost_frames, st.resets, d.spans.len()),
        (1, 0, 0, 85),
        "{:?}",
        d.stats
    );
    let ids: std::collections::HashSet<u64> = d.spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), 85, "no span exported twice");
    assert!(d
        .stats
        .problems()
        .iter()
        .any(|p| p.contains("1 frame arrived after later frames")));

    // Two frames swapped: the first to arrive leaves a gap of one, the second is late; its
    // records are the ones lost.
    let mut s = session_frame();
    for seq in [1, 3, 2, 4] {
        s.extend(span_frame(seq));
    }
    let d = decode(&s, Limits::default(), 4096);
    let st = &d.stats.spans;
    assert_eq!(
        (st.late_frames, st.lost_frames, d.spans.len()),
        (1, 1, 3),
        "{:?}",
        d.stats
    );
}

/// A device rebooted into the same firmware sends, after its new session record, the same
/// frames as its last boot, byte for byte (span ids start over with the session). They are the
/// frames after the last one decoded, never replays: all of them are decoded.
#[test]
fn a_reboot_that_repeats_the_last_boot_s_frames_is_decoded_in_full() {
    let mut s = session_frame();
    for seq in 1..=5 {
        s.extend(span_frame(seq));
    }
    s.extend(
        Body::new(0, 0, 1_000)
            .hello(&hello(BOOT + 1, 32_768))
            .frame(),
    );
    for seq in 1..=5 {
        s.extend(span_frame(seq));
    }
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(
        (
            d.stats.duplicate_frames,
            d.stats.spans.resets,
            d.spans.len()
        ),
        (0, 1, 10),
        "{:?}",
        d.stats
    );
    assert!(!d.stats.anything_wrong(), "{:?}", d.stats.troubles());
}

/// A device that reboots into the same firmware with the same boot id (0, the default) may send
/// a frame 0 identical to its last boot's: past the replay window, it is decoded as the reset it
/// is, and the new boot's frames after it too.
#[test]
fn a_reboot_with_an_identical_frame_0_is_decoded_as_a_reset() {
    let mut s = session_frame();
    for seq in 1..=100 {
        s.extend(span_frame(seq));
    }
    s.extend(session_frame());
    for seq in 1..=5 {
        s.extend(span_frame(seq));
    }
    let d = decode(&s, Limits::default(), 4096);
    let st = &d.stats;
    assert_eq!(
        (
            st.duplicate_frames,
            st.spans.late_frames,
            st.spans.resets,
            d.spans.len()
        ),
        (0, 0, 1, 105),
        "{st:?}"
    );
}

/// A new boot whose frame 0 was lost: its first frames are behind the old boot's and earlier in
/// time, so they are skipped as late (their records lost, and said so), but the first one that
/// opens with a session record is decoded, and the reset it shows is taken.
#[test]
fn a_new_boot_whose_frame_0_was_lost_is_found_at_its_next_session_record() {
    let mut s = Body::new(0, 0, 1_000).hello(&hello(BOOT, 4)).frame();
    for seq in 1..=200 {
        s.extend(span_frame(seq));
    }
    // The new boot: frames 1..=20, a session record opening every fourth.
    for seq in 1..=20u16 {
        let time = 1_000 + 10 * u64::from(seq);
        let mut b = Body::new(seq, u32::from(seq) - 1, time);
        if seq % 4 == 0 {
            b.hello(&Hello {
                now_ticks: time,
                ..hello(BOOT + 1, 4)
            });
        }
        b.root(1, "r", 0).end(0, 5);
        s.extend(b.frame());
    }
    let d = decode(&s, Limits::default(), 4096);
    let st = &d.stats;
    assert_eq!(
        (st.spans.resets, st.spans.late_frames, d.spans.len()),
        (1, 3, 200 + 17),
        "{st:?}"
    );
    assert!(st.anything_wrong() && st.lost_anything());
}

/// A frame of untimed records (a drop total) moves the frame's base time but no record's time:
/// a frame reordered around it is still late, not a gap of 65 535 frames.
#[test]
fn a_frame_reordered_around_an_untimed_frame_is_late() {
    let mut s = session_frame();
    for seq in 1..=5 {
        s.extend(span_frame(seq));
    }
    s.extend(Body::new(7, 6, 1_070).drops(1).frame());
    s.extend(span_frame(6));
    s.extend(span_frame(8));
    let d = decode(&s, Limits::default(), 4096);
    let st = &d.stats.spans;
    assert_eq!(
        (st.late_frames, st.lost_frames, d.spans.len()),
        (1, 1, 6),
        "{:?}",
        d.stats
    );
}

/// A string longer than the decoder's limit is cut, and says so: on its span, in the counts, and
/// to `--strict`.
#[test]
fn strings_longer_than_the_limit_are_cut_and_counted() {
    let long = "N".repeat(5_000);
    let mut s = session_frame();
    let mut b = Body::new(1, 0, 1_010);
    b.root(1, &long, 0).tag_u64(&long, 7).end(0, 5);
    s.extend(b.frame());
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.spans.len(), 1);
    let span = &d.spans[0];
    assert_eq!(span.operation.len(), Limits::default().max_string_len);
    assert!(
        span.warnings
            .iter()
            .any(|w| w.contains("2 strings were cut to the decoder's string limit")),
        "{:?}",
        span.warnings
    );
    assert_eq!(d.stats.spans.strings_cut, 2);
    assert!(d.stats.anything_wrong(), "--strict fails on it");
    assert!(d
        .stats
        .problems()
        .iter()
        .any(|p| p.contains("string limit")));
}

/// A name longer than the limit, defined again every epoch, is one string cut, not one per
/// epoch.
#[test]
fn a_long_name_defined_every_epoch_is_one_string_cut() {
    let long = "L".repeat(5_000);
    let mut s = Vec::new();
    for seq in 0..12u16 {
        let time = 1_000 + 10 * u64::from(seq);
        let mut b = Body::new(seq, 0, time);
        if seq % 4 == 0 {
            b.hello(&Hello {
                now_ticks: time,
                ..hello(BOOT, 4)
            });
            b.name_def(1, &long);
        }
        s.extend(b.frame());
    }
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.stats.spans.strings_cut, 1, "{:?}", d.stats);
}

/// A device wall clock that would date the device after 2100 (or before 1970) is ignored and
/// said so: dated from it, every span started in 2554 and lasted 0 ns (the times clamped).
#[test]
fn a_wall_clock_outside_1970_to_2100_is_ignored_and_counted() {
    for (ticks, unix_nanos) in [(0, u64::MAX), (u64::MAX, 0)] {
        let mut h = hello(BOOT, 4);
        h.wall_clock = Some(microspan::wire::WallClock { ticks, unix_nanos });
        let mut s = Body::new(0, 0, 1_000).hello(&h).frame();
        s.extend(Body::new(1, 0, 1_010).root(1, "r", 0).end(0, 500).frame());
        let d = decode(&s, Limits::default(), 4096);
        assert_eq!(d.stats.spans.bad_wall_clocks, 1, "{:?}", d.stats);
        assert_eq!(d.spans.len(), 1);
        // 500 ticks of a 1 MHz clock, dated from the decoder's anchor.
        assert_eq!(d.spans[0].duration_nanos, 500_000);
        assert!(d.stats.anything_wrong());
        assert!(d.stats.problems().iter().any(|p| p.contains("after 2100")));
    }
}

/// The host's clock of [`drifting_device`], set as each frame arrives.
static HOST_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn host_now() -> u64 {
    HOST_NOW.load(std::sync::atomic::Ordering::Relaxed)
}

/// A live session of two minutes whose device clock (1 MHz) runs `ppm` slow, read with a host clock
/// that advances as each frame arrives (`live`) or not at all (a file read at once): one frame a
/// second, each with a session record and a span of 5 µs. Returns the spans' start times against
/// the host's time at which each span's frame arrived, in ns, and the decoder's notes.
fn drifting_device(ppm: i64, live: bool) -> (Vec<i64>, Vec<String>) {
    let host0: u64 = 1_700_000_000_000_000_000;
    let mut dec = StreamDecoder::new(Options {
        limits: Limits::default(),
        fixed_anchor_unix_nanos: None,
        host_name: None,
        decoder_host: None,
        host_clock: Some(host_now),
    });
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut arrived = Vec::new();
    for seq in 0..=120u16 {
        let device_ticks = 1_000 + u64::from(seq) * 1_000_000;
        // Host time of that device instant: the device's second lasts 1 + ppm × 10⁻⁶ s.
        let host = (host0 as i64 + i64::from(seq) * (1_000_000_000 + ppm * 1_000)) as u64;
        HOST_NOW.store(
            if live { host } else { host0 },
            std::sync::atomic::Ordering::Relaxed,
        );
        let h = Hello {
            now_ticks: device_ticks,
            ..hello(BOOT, 4)
        };
        let mut b = Body::new(seq, u32::from(seq), device_ticks);
        b.hello(&h);
        b.root(1, "tick", 0).end(0, 5);
        dec.feed(&b.frame(), &mut out).unwrap();
        arrived.push(host);
        spans.extend(out.drain(..).flat_map(|b| b.spans));
    }
    dec.finish(&mut out);
    spans.extend(out.drain(..).flat_map(|b| b.spans));
    spans.sort_by_key(|s| s.span_id);
    let offsets = spans
        .iter()
        .zip(&arrived)
        .map(|(s, &host)| s.start_unix_nanos as i64 - host as i64)
        .collect();
    (offsets, dec.notes())
}

/// A device clock off by a few thousand parts per million: dated from one anchor, its spans
/// drift from the host's time by that much (60 ms a minute at 1000 ppm, hours later seconds);
/// measured against the session records as they arrive, the drift is taken out.
#[test]
fn a_drifting_device_clock_is_measured_and_corrected_on_a_live_input() {
    for ppm in [1_000i64, -2_000, 20_000] {
        let (offsets, notes) = drifting_device(ppm, true);
        // Before a minute of device time, the rate is not measured yet: the drift shows.
        let early = offsets[50].unsigned_abs();
        assert!(
            early > 49 * ppm.unsigned_abs() * 1_000,
            "{ppm} ppm: {offsets:?}"
        );
        // From then on, each span is within a microsecond of the host's time.
        for (second, off) in offsets.iter().enumerate().skip(61) {
            assert!(
                off.unsigned_abs() <= 1_000,
                "{ppm} ppm, second {second}: {off} ns"
            );
        }
        let said = if ppm > 0 { "slower" } else { "faster" };
        assert!(
            notes.iter().any(|n| n.contains("ppm") && n.contains(said)),
            "{notes:?}"
        );
    }
    // A capture decoded at once (the host's clock hardly moves): no rate is taken from it.
    let (offsets, notes) = drifting_device(1_000, false);
    assert!(!notes.iter().any(|n| n.contains("ppm")), "{notes:?}");
    // Dated from the one anchor: the device's own times, a second apart.
    assert_eq!(offsets[0], 0);
    // More than 5 %: not a clock's drift (a wrong `ticks_per_second`, or not live): not taken.
    let (_, notes) = drifting_device(60_000, true);
    assert!(!notes.iter().any(|n| n.contains("ppm")), "{notes:?}");
}

/// A name id never defined, in a stream where no frame was lost, is a corrupted stream: the
/// placeholder's warning says so (not "its frame was lost"), and it is counted.
#[test]
fn a_name_never_defined_without_a_lost_frame_is_counted_as_corruption() {
    let mut s = session_frame();
    let mut b = Body::new(1, 0, 1_010);
    b.root(1, "r", 0);
    b.u8(tag::TAG | vtype::U64).name_ref(4).varint(7);
    b.end(0, 5);
    s.extend(b.frame());
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.stats.spans.unknown_names, 1, "{:?}", d.stats);
    assert_eq!(d.stats.spans.lost_frames, 0);
    let w = &d.spans[0].warnings;
    assert!(
        w.iter()
            .any(|w| w.contains("name #4") && w.contains("no frame was lost")),
        "{w:?}"
    );
    assert!(d.stats.anything_wrong());
}

/// A drop total below the last one heard is an older frame's: it adds nothing (the difference,
/// wrapped, read as four billion drops).
#[test]
fn a_drop_total_that_goes_down_adds_nothing() {
    let mut s = session_frame();
    s.extend(Body::new(1, 0, 1_010).drops(10).frame());
    s.extend(Body::new(2, 0, 1_020).drops(5).frame());
    s.extend(Body::new(3, 0, 1_030).drops(12).frame());
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.stats.spans.device_drops, 12);
}

#[test]
fn sequence_gaps_are_counted_exactly() {
    let mut s = session_frame();
    let mut expected = 0;
    let mut seq: u16 = 0;
    // The device's time moves on with every frame: a frame whose sequence number is behind
    // (here, 65 534 ahead is one behind) and whose time is not ahead is late, not a gap.
    for (time, gap) in [0u16, 5, 0, 1000, 65_534, 3].into_iter().enumerate() {
        seq = seq.wrapping_add(gap + 1);
        expected += gap as u64;
        s.extend(Body::new(seq, 0, 1_001 + time as u64).frame());
    }
    let d = decode(&s, Limits::default(), 100);
    assert_eq!(d.stats.spans.lost_frames, expected);
}

// ---------------------------------------------------------------------------------------------
// Ids and references

#[test]
fn duplicate_span_ids_close_the_older_span() {
    let mut s = session_frame();
    let mut b = Body::new(1, 100, 2_000);
    // Span 101 twice (the second start at delta 0 reuses the id), then one end.
    b.root(1, "first", 1).root(0, "second", 1).end(0, 5);
    s.extend(b.frame());
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.spans.len(), 2);
    let first = span(&d.spans, "first");
    let second = span(&d.spans, "second");
    assert!(
        first.incomplete
            && first
                .warnings
                .iter()
                .any(|w| w.contains("reused this span's id")),
        "{first:?}"
    );
    assert!(!second.incomplete);
    assert_eq!(first.span_id, second.span_id);
    assert_eq!(d.stats.spans.orphan_records, 1);
}

#[test]
fn reference_cycles_terminate_in_every_exporter() {
    let mut s = session_frame();
    let mut b = Body::new(1, 10, 2_000);
    // 11 starts as a child of 12 (unknown yet, root given as 11), then 12 as a child of 11: a cycle.
    b.start(1, 0, Some((u32::MAX, Some(0))), "A", 1); // id 11, parent 11 - (2^32 - 1) = 12
    b.start(1, 0, Some((1, None)), "B", 1); // id 12, parent 11
                                            // 13 is its own parent; 14 follows from itself, and references point back and forth.
    b.start(1, 0, Some((0, Some(0))), "self", 1);
    b.start(
        1,
        start_flags::FOLLOWS_FROM,
        Some((0, Some(0))),
        "self-follows",
        1,
    );
    let own = microspan::SpanId::local(BOOT, 11).0;
    let other = microspan::SpanId::local(BOOT, 12).0;
    for (back, target) in [
        (3u64, other),
        (2, own),
        (1, microspan::SpanId::local(BOOT, 13).0),
    ] {
        b.u8(tag::EXT | ext::REF)
            .varint(back)
            .u8(1)
            .bytes(&0x1234u128.to_le_bytes())
            .bytes(&target.to_le_bytes());
    }
    b.end(0, 1).end(1, 1).end(2, 1).end(3, 1);
    s.extend(b.frame());
    let d = decode(&s, Limits::default(), 4096);
    assert_eq!(d.spans.len(), 4);
    assert!(d.spans.iter().all(|s| !s.incomplete));
    let a = span(&d.spans, "A");
    let bspan = span(&d.spans, "B");
    assert_eq!(
        (a.parent_span_id(), bspan.parent_span_id()),
        (Some(bspan.span_id), Some(a.span_id))
    );
    // Tree, Jaeger JSON, Thrift and OTLP mappings all terminate on the cycle.
    let mut seeded = vec![0u8];
    seeded.extend_from_slice(&s);
    fuzz_logic::assembler(&seeded);
    run_stream(Chunks::new(&s, 3), Limits::default());
}

// ---------------------------------------------------------------------------------------------
// Floods: memory stays within the limits

#[test]
fn name_table_flood_is_bounded() {
    let limits = Limits {
        max_names: 64,
        ..Limits::default()
    };
    let mut s = session_frame();
    let mut seq = 1;
    // 20 000 distinct definitions, 500 per frame.
    for f in 0..40 {
        let mut b = Body::new(seq, 0, 2_000);
        for i in 0..500 {
            let id = f * 500 + i;
            b.name_def(id, &format!("name-{id}"));
        }
        s.extend(b.frame());
        seq += 1;
    }
    // Spans named by the first id, the last kept one, and one past the table's limit.
    let mut b = Body::new(seq, 0, 2_000);
    for id in [0u32, 63, 64, 19_999] {
        b.u8(tag::EXT | ext::START)
            .varint(1)
            .u8(start_flags::ROOT)
            .name_ref(id)
            .varint(1);
        b.end(0, 1);
    }
    s.extend(b.frame());
    let d = decode(&s, limits, 4096);
    let names: Vec<&str> = d.spans.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(
        names,
        [
            "name-0",
            "name-63",
            "<unknown name #64>",
            "<unknown name #19999>"
        ]
    );
    assert!(d.spans[3]
        .warnings
        .iter()
        .any(|w| w.contains("never defined")));
}

/// `n` root spans that never end, 1000 per frame (3 bytes each).
fn open_span_flood(n: usize) -> Vec<u8> {
    let mut s = session_frame();
    let mut b = Body::new(1, 0, 2_000);
    b.name_def(0, "flood");
    let mut seq = 1u16;
    for i in 0..n {
        b.short_root(1, 1);
        if (i + 1) % 1000 == 0 {
            s.extend(b.frame());
            seq = seq.wrapping_add(1);
            b = Body::new(seq, (i + 1) as u32, 2_000 + i as u64 + 1);
            b.name_def(0, "flood");
        }
    }
    s.extend(b.frame());
    s
}

fn flood_size() -> usize {
    if cfg!(debug_assertions) {
        300_000
    } else {
        3_000_000
    }
}

#[test]
fn open_span_flood_stays_within_max_open_spans() {
    let n = flood_size();
    let limits = Limits {
        max_open_spans: 1_000,
        ..Limits::default()
    };
    let s = open_span_flood(n);
    let d = decode(&s, limits, 65_536);
    assert_eq!(d.peak_open, 1_000);
    assert_eq!(d.spans.len(), n);
    assert_eq!(
        d.before_finish,
        n - 1_000,
        "the oldest are exported as soon as the limit is reached"
    );
    assert_eq!(d.stats.spans.incomplete_spans, n as u64);
    let first = &d.spans[0];
    assert_eq!(
        first.span_id,
        microspan::SpanId::local(BOOT, 1).0,
        "the oldest goes first"
    );
    assert!(
        first
            .warnings
            .iter()
            .any(|w| w.contains("limit on open spans")),
        "{:?}",
        first.warnings
    );
    assert!(d.spans[n - 1]
        .warnings
        .iter()
        .any(|w| w.contains("stream ended")));
}

#[test]
fn buffered_span_flood_is_exported_early() {
    // One root that never ends; `n` children that start and end, so its trace never completes.
    let n = flood_size() / 3;
    let limits = Limits {
        max_buffered_spans: 500,
        ..Limits::default()
    };
    let mut s = session_frame();
    let mut b = Body::new(1, 0, 2_000);
    b.root(1, "forever", 1);
    let mut seq = 1u16;
    for i in 0..n {
        let id = 2 + i as u32;
        // Child `id` of root 1: parent delta and root delta both `id - 1`.
        b.start(1, 0, Some((id - 1, Some(id - 1))), "child", 1)
            .end(0, 1);
        if (i + 1) % 1000 == 0 {
            s.extend(b.frame());
            seq = seq.wrapping_add(1);
            b = Body::new(seq, id, 10_000 + i as u64);
        }
    }
    s.extend(b.frame());
    let d = decode(&s, limits, 65_536);
    assert_eq!(d.spans.len(), n + 1);
    assert!(
        d.before_finish >= n - 500,
        "{} of {n} exported before the end",
        d.before_finish
    );
    let root = span(&d.spans, "forever");
    assert!(root.incomplete);
    assert!(d
        .spans
        .iter()
        .filter(|s| s.operation == "child")
        .all(|c| c.trace_id == root.trace_id && !c.incomplete));
}

#[test]
fn drops_records_with_many_open_spans() {
    // 20 000 open spans, then frames full of device-drop reports: each report is charged to every
    // open span; this checks it stays correct (and shows how long it takes).
    let limits = Limits {
        max_open_spans: 20_000,
        ..Limits::default()
    };
    let mut s = open_span_flood(20_000);
    let mut b = Body::new(100, 20_000, 50_000);
    for total in 1..=5_000u32 {
        b.drops(total);
    }
    s.extend(b.frame());
    let started = std::time::Instant::now();
    let d = decode(&s, limits, 65_536);
    eprintln!(
        "5000 drop reports × 20000 open spans: {:?}",
        started.elapsed()
    );
    assert_eq!(d.stats.spans.device_drops, 5_000);
    assert!(d.spans.iter().all(|s| s
        .warnings
        .iter()
        .any(|w| w.contains("reported 5000 records dropped"))));
}

// ---------------------------------------------------------------------------------------------
// Wire versions

#[test]
fn a_future_wire_version_is_refused_plainly() {
    let mut s = Vec::new();
    let mut h = hello(BOOT, 64);
    h.service = "from-the-future";
    for seq in 0..5u16 {
        let mut b = Body::with_version(4, seq, 0, 1_000);
        b.hello(&h).root(1, "r", 1).end(0, 1);
        s.extend(b.frame());
    }
    let d = decode(&s, Limits::default(), 4096);
    let err = d.fatal.expect("a stream of wire version 4 is refused");
    assert_eq!(
        err,
        StreamError::UnsupportedVersion {
            version: 4,
            supported: &[1, 2, 3]
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("wire version 4")
            && msg.contains("reads versions [1, 2, 3]")
            && msg.contains("cargo install"),
        "{msg}"
    );
    assert!(d.spans.is_empty());
}

#[test]
fn one_frame_claiming_another_version_is_not_fatal() {
    let stream = reference_stream(64, Workload::REFERENCE);
    let clean = decode(&stream, Limits::default(), 4096);
    let mut frames = frames(&stream);
    // A corrupted frame that passes its CRC and claims version 7, twice, each time between good
    // frames: counted, never fatal.
    for at in [3, 5] {
        frames.insert(at, Body::with_version(7, 999, 0, 0).u8(0x55).frame());
    }
    let d = decode(&frames.concat(), Limits::default(), 4096);
    assert!(d.fatal.is_none());
    assert_eq!(d.stats.bad_frames, 2);
    assert_eq!(d.spans.len(), clean.spans.len());
}

// ---------------------------------------------------------------------------------------------
// Fuzz corpus replay, regressions and seeds

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn fuzz_corpus_replays_on_stable() {
    let mut total = 0;
    for (target, run) in [
        ("frames", fuzz_logic::frames as fn(&[u8])),
        ("assembler", fuzz_logic::assembler),
        ("assembler_structured", fuzz_logic::assembler_structured),
        ("postmortem", fuzz_logic::postmortem),
    ] {
        let files = corpus(target);
        assert!(!files.is_empty(), "no corpus for {target}");
        for (path, data) in &files {
            let result = std::panic::catch_unwind(|| run(data));
            assert!(result.is_ok(), "{target} panics on {}", path.display());
        }
        total += files.len();
    }
    // The two raw-stream corpora are interchangeable: each target also gets the other's inputs.
    for (_, data) in corpus("assembler") {
        fuzz_logic::frames(&data);
    }
    for (_, data) in corpus("frames") {
        fuzz_logic::assembler(&data);
    }
    eprintln!("replayed {total} corpus files");
}

/// Regenerates the seed corpora from recorded streams:
/// `cargo test -p microspan-decoder --test hostile -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes files under host-decoder/fuzz/corpus"]
fn write_seed_corpus() {
    let corpus = fuzz_dir().join("corpus");
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("reference", reference_stream(1, Workload::REFERENCE)),
        ("full-8-traces", reference_stream(8, Workload::FULL)),
        ("bare-40-traces", reference_stream(40, Workload::BARE)),
        ("carried-baggage", carried_baggage_stream()),
        ("crafted-cycle", {
            let mut s = session_frame();
            let mut b = Body::new(1, 10, 2_000);
            b.start(1, 0, Some((u32::MAX, Some(0))), "A", 1)
                .start(1, 0, Some((1, None)), "B", 1)
                .end(0, 1)
                .end(1, 1);
            s.extend(b.frame());
            s
        }),
        ("crafted-names-drops", {
            let mut s = session_frame();
            let mut b = Body::new(1, 0, 2_000);
            b.name_def(0, "n")
                .drops(3)
                .short_root(1, 1)
                .tag_u64("k", 1 << 40)
                .end(0, 1)
                .drops(9);
            s.extend(b.frame());
            s.extend(Body::new(9, 1, 3_000).short_root(2, 1).frame());
            s
        }),
    ];
    for (name, stream) in &seeds {
        for (target, chunk_seed) in [("frames", 7u8), ("assembler", 0u8)] {
            let mut data = vec![chunk_seed];
            data.extend_from_slice(stream);
            std::fs::write(corpus.join(target).join(format!("seed-{name}")), &data).unwrap();
        }
        std::fs::write(
            corpus
                .join("assembler_structured")
                .join(format!("seed-{name}")),
            unframe(stream),
        )
        .unwrap();
    }
    let dir = corpus.join("postmortem");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, image) in fuzz_logic::postmortem_seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), image).unwrap();
    }
}

/// The post-mortem seeds replay whole: every record of each image comes out as a span, a tag, a
/// log or a reference, and the spans the crash left open are incomplete.
#[test]
fn postmortem_seeds_replay_every_record() {
    use microspan::postmortem::RingImage;
    for (name, input) in fuzz_logic::postmortem_seeds() {
        let mem = fuzz_logic::Image(input[1..].to_vec());
        let image = RingImage::read(&mem, fuzz_logic::IMAGE_BASE).unwrap();
        let replay = image.to_stream(&mem);
        let expect = if name == "open-at-crash" { 6 } else { 12 };
        assert_eq!((replay.records, replay.unread_words), (expect, 0), "{name}");
        fuzz_logic::postmortem(&input);
    }
}

// ---------------------------------------------------------------------------------------------
// Peak memory of the binary

/// Peak RSS of `microspan decode` on adversarial streams (run with `--release` for realistic
/// figures): `cargo test -p microspan-decoder --release --test hostile -- --ignored adversarial_rss --nocapture`.
#[test]
#[ignore = "runs the binary under /usr/bin/time on streams of tens of MB"]
fn adversarial_rss() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adversarial");
    std::fs::create_dir_all(&dir).unwrap();
    let mut streams: Vec<(&str, Vec<u8>)> = Vec::new();
    streams.push(("3M open spans, no ends", open_span_flood(3_000_000)));
    streams.push(("64 MiB random bytes", {
        let mut v = vec![0u8; 64 << 20];
        Rng(7).fill(&mut v);
        v
    }));
    streams.push((
        "reference, 200k traces",
        reference_stream(200_000, Workload::FULL),
    ));
    // Open spans each carrying many tags (2-byte tags: type + name id).
    streams.push(("100k open spans × 100 tags", {
        let mut s = session_frame();
        let mut seq = 1u16;
        let mut b = Body::new(seq, 0, 2_000);
        b.name_def(0, "t");
        for i in 0..100_000u32 {
            b.short_root(1, 1);
            for _ in 0..100 {
                b.u8(tag::TAG | vtype::TRUE).name_ref(0);
            }
            if (i + 1) % 200 == 0 {
                s.extend(b.frame());
                seq = seq.wrapping_add(1);
                b = Body::new(seq, i + 1, 2_000);
                b.name_def(0, "t");
            }
        }
        s.extend(b.frame());
        s
    }));
    // A root with 64 KiB of baggage, then 5 000 children that inherit it and never end.
    streams.push(("64 KiB baggage × 5k children", {
        let mut s = session_frame();
        let mut b = Body::new(1, 0, 2_000);
        b.root(1, "root", 1);
        s.extend(b.frame());
        let value = "v".repeat(1000);
        for f in 0..64u32 {
            let mut b = Body::new(2 + f as u16, 1, 2_000);
            b.u8(tag::EXT | ext::BAGGAGE)
                .varint(0)
                .inline(&format!("key{f}"))
                .inline(&value);
            s.extend(b.frame());
        }
        let mut b = Body::new(100, 1, 2_000);
        for i in 0..5_000u32 {
            b.start(1, 0, Some((i + 1, Some(i + 1))), "child", 1);
            if (i + 1) % 1000 == 0 {
                s.extend(b.frame());
                b = Body::new(101 + i as u16 / 1000, 2 + i, 2_000);
            }
        }
        s
    }));
    let bin = env!("CARGO_BIN_EXE_microspan");
    let mut over = Vec::new();
    println!("\n| adversarial stream | input MiB | peak RSS MiB | wall s |");
    println!("|---|---|---|---|");
    for (i, (name, stream)) in streams.iter().enumerate() {
        let path = dir.join(format!("adversarial-{i}.bin"));
        std::fs::write(&path, stream).unwrap();
        let started = std::time::Instant::now();
        // The tree exporter (bounded) with its output thrown away: the figure is the decoder's.
        let out = std::process::Command::new("/usr/bin/time")
            .arg("-v")
            .arg(bin)
            .args(["decode", "--no-progress", "--tree", "--file"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .output()
            .expect("/usr/bin/time runs");
        let wall = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let rss_kb: u64 = stderr
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no RSS in: {stderr}"));
        println!(
            "| {name} | {:.1} | {:.0} | {wall:.1} |",
            stream.len() as f64 / (1 << 20) as f64,
            rss_kb as f64 / 1024.0
        );
        over.extend(
            (rss_kb * 1024 > Limits::DEFAULT.max_memory_bytes as u64)
                .then(|| format!("{name}: {} MiB", rss_kb / 1024)),
        );
    }
    // The whole process, not only the assembler, stays under the default memory limit.
    assert!(
        over.is_empty(),
        "peak RSS above the default max_memory_bytes: {over:?}"
    );
}
