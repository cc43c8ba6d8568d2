//! What the fuzz targets do, in one file shared by the cargo-fuzz binaries (nightly, libFuzzer) and
//! by the corpus replay in `host-decoder/tests/hostile.rs` (stable, which includes this file with
//! `#[path]`), so CI replays exactly what the fuzzer ran.
//!
//! Inputs of `frames` and `assembler`: the first byte seeds how the rest is cut into chunks (0: one
//! chunk), the rest is a byte stream. Input of `assembler_structured`: frame contents, each
//! `[length: u16 LE][version, sequence, base id, base time, records…]`, which [`reframe`] turns into
//! a stream with correct CRCs and COBS, so mutations reach the record layer and the assembler
//! instead of dying at the CRC check.

use std::io;

use microspan::wire::decode::{Accumulator, Record, RecordDecoder};
use microspan_decoder::assemble::{Limits, Options};
use microspan_decoder::export::{
    to_otlp_request, to_thrift_batch, Exporter, JaegerJsonFile, TreeWriter,
};
use microspan_decoder::model::Batch;
use microspan_decoder::stream::{StreamDecoder, StreamError};

/// Small limits, so the fuzzer reaches every eviction path with short inputs.
pub const SMALL_LIMITS: Limits = Limits {
    max_open_spans: 8,
    max_buffered_spans: 16,
    max_names: 8,
    max_items_per_span: 4,
    max_recent_spans: 8,
    max_string_len: 64,
    max_baggage_bytes: 64,
    max_memory_bytes: 16 << 10,
};

/// A fixed time anchor, so runs are reproducible.
pub const ANCHOR_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;

/// Cuts a stream into chunks of pseudo-random sizes (1 byte to 4 KiB), from a seed byte.
pub struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
    whole: bool,
}

impl<'a> Chunks<'a> {
    /// Chunks of `stream`; seed 0 gives the whole stream at once.
    pub fn new(stream: &'a [u8], seed: u8) -> Self {
        Self {
            rest: stream,
            state: 0x9E37_79B9 ^ seed as u32,
            whole: seed == 0,
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = if self.whole {
            self.rest.len()
        } else {
            // xorshift32
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            const SIZES: [usize; 8] = [1, 1, 2, 3, 7, 64, 255, 4096];
            SIZES[(self.state % 8) as usize]
        };
        let (chunk, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&seed, rest)) => (seed, rest),
        None => (0, &[]),
    }
}

/// Target `frames`: bytes → `Accumulator` → `RecordDecoder`. The chunking must not change what
/// comes out, and a tiny accumulator must refuse what does not fit instead of overflowing.
pub fn frames(data: &[u8]) {
    let (seed, stream) = split(data);
    let whole = decode_frames::<4096>(Chunks::new(stream, 0));
    let chunked = decode_frames::<4096>(Chunks::new(stream, seed.max(1)));
    assert_eq!(
        whole, chunked,
        "the chunking changed what the accumulator produced"
    );
    decode_frames::<64>(Chunks::new(stream, seed));
}

/// Everything an accumulator of `MAX` bytes and the record decoder make of the chunks, as text.
pub fn decode_frames<'a, const MAX: usize>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    let mut acc: Box<Accumulator<MAX>> = Box::new(Accumulator::new());
    let mut out = Vec::new();
    for mut chunk in chunks {
        while !chunk.is_empty() {
            let before = chunk.len();
            let (frame, rest) = acc.feed(chunk);
            assert!(rest.len() < before, "the accumulator made no progress");
            chunk = rest;
            match frame {
                None => {}
                Some(Err(e)) => {
                    assert!(!e.to_string().is_empty());
                    out.push(format!("{e:?}"));
                }
                Some(Ok(frame)) => {
                    assert!(frame.body.len() <= MAX);
                    let mut text = format!(
                        "frame v{} #{} id {} t {}:",
                        frame.version, frame.seq, frame.base_id, frame.base_time
                    );
                    let mut records = 0;
                    for record in RecordDecoder::new(&frame) {
                        records += 1;
                        assert!(records <= frame.body.len(), "more records than bytes");
                        match record {
                            Ok(Record::Log { span, time, fields }) => {
                                let n = fields.len();
                                let got: Vec<_> = fields.collect();
                                assert_eq!(
                                    got.len(),
                                    n,
                                    "a validated log's fields did not all decode"
                                );
                                text.push_str(&format!(" log {span} {time} {got:?}"));
                            }
                            Ok(r) => text.push_str(&format!(" {r:?}")),
                            Err(e) => {
                                assert!(!e.to_string().is_empty());
                                text.push_str(&format!(" error {e:?}"));
                            }
                        }
                    }
                    out.push(text);
                }
            }
        }
    }
    assert!(acc.buffered() <= MAX);
    out
}

/// Target `assembler`: bytes → `StreamDecoder` (small limits) → `finish` → every exporter's
/// mapping.
pub fn assembler(data: &[u8]) {
    let (seed, stream) = split(data);
    run_stream(Chunks::new(stream, seed), SMALL_LIMITS);
}

/// Target `assembler_structured`: frame contents re-framed with correct CRCs, then as `assembler`.
pub fn assembler_structured(data: &[u8]) {
    let stream = reframe(data);
    run_stream(Chunks::new(&stream, 0), SMALL_LIMITS);
}

/// What a run of the stream decoder produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Spans exported (finished or incomplete).
    pub spans: u64,
    /// The fatal error, if decoding stopped.
    pub fatal: Option<StreamError>,
    /// The decoder's counters at the end.
    pub stats: microspan_decoder::stream::StreamStats,
    /// Most spans open at once, sampled after every chunk.
    pub peak_open: u64,
}

/// Feeds the chunks to a stream decoder with `limits`, checks its bounds after every chunk, finishes
/// it and passes every batch through the exporters' mappings.
pub fn run_stream<'a>(chunks: impl Iterator<Item = &'a [u8]>, limits: Limits) -> Outcome {
    let mut dec = StreamDecoder::new(Options {
        limits,
        fixed_anchor_unix_nanos: Some(ANCHOR_UNIX_NANOS),
        host_name: None,
        decoder_host: None,
        host_clock: None,
    });
    let mut out = Vec::new();
    let mut outcome = Outcome::default();
    let mut exporters = Exporters::new();
    for chunk in chunks {
        let result = dec.feed(chunk, &mut out);
        let open = dec.stats().spans.open_spans;
        assert!(
            open as usize <= limits.max_open_spans,
            "{open} open spans, limit {}",
            limits.max_open_spans
        );
        outcome.peak_open = outcome.peak_open.max(open);
        outcome.spans += exporters.export(&mut out, &limits);
        if let Err(e) = result {
            let msg = e.to_string();
            let supported = format!("reads versions {:?}", microspan::wire::SUPPORTED_VERSIONS);
            assert!(msg.contains(&supported), "{msg}");
            outcome.fatal = Some(e);
            break;
        }
    }
    dec.finish(&mut out);
    outcome.spans += exporters.export(&mut out, &limits);
    outcome.stats = dec.stats();
    assert_eq!(
        outcome.stats.spans.open_spans, 0,
        "spans left open after finish"
    );
    assert_eq!(
        outcome.stats.spans.spans, outcome.spans,
        "exported spans and the counter disagree"
    );
    exporters.finish();
    outcome
}

struct Exporters {
    tree: TreeWriter<io::Sink>,
    json: JaegerJsonFile,
}

impl Exporters {
    fn new() -> Self {
        Self {
            tree: TreeWriter::new(io::sink(), true),
            json: JaegerJsonFile::with_limit("/nonexistent/fuzz.json", 64),
        }
    }

    fn export(&mut self, out: &mut Vec<Batch>, limits: &Limits) -> u64 {
        let mut spans = 0;
        for batch in out.drain(..) {
            spans += batch.spans.len() as u64;
            for span in &batch.spans {
                let max = limits.max_items_per_span;
                assert!(
                    span.tags.len() <= max && span.logs.len() <= max && span.baggage.len() <= max
                );
                assert!(span.references.len() <= max + 1);
            }
            let request = to_otlp_request(&batch);
            let bytes = prost::Message::encode_to_vec(&request);
            assert!(
                decode_like(&request, &bytes).is_ok(),
                "our own OTLP encoding does not decode"
            );
            let _ = to_thrift_batch(&batch);
            self.tree.export(&batch).expect("tree export");
            // Its span limit is a refusal it reports, not a failure.
            let _ = self.json.export(&batch);
        }
        spans
    }

    fn finish(mut self) {
        let _ = self.json.to_json();
        self.tree.finish().expect("tree finish");
    }
}

/// Decodes `bytes` as a message of `like`'s type (without naming the OTLP crate).
fn decode_like<M: prost::Message + Default>(
    _like: &M,
    bytes: &[u8],
) -> Result<M, prost::DecodeError> {
    M::decode(bytes)
}

/// Appends one frame: `content`, its CRC, COBS-encoded, and the `0x00` delimiter.
pub fn frame_into(content: &[u8], out: &mut Vec<u8>) {
    let mut raw = Vec::with_capacity(content.len() + 2);
    raw.extend_from_slice(content);
    raw.extend_from_slice(&microspan::wire::CRC.checksum(content).to_le_bytes());
    let start = out.len();
    out.resize(start + cobs::max_encoding_length(raw.len()), 0);
    let n = cobs::encode(&raw, &mut out[start..]);
    out.truncate(start + n);
    out.push(0);
}

/// The stream of the `assembler_structured` input `data` (see the module doc).
pub fn reframe(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 8);
    let mut rest = data;
    while !rest.is_empty() {
        let (len, body) = match rest {
            [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]) as usize, body),
            _ => (0, &[][..]),
        };
        let (content, next) = body.split_at(len.min(body.len()));
        frame_into(content, &mut out);
        rest = if rest.len() < 2 { &[] } else { next };
    }
    out
}

/// The inverse of [`reframe`] for the good frames of a real stream (seeds for the structured
/// corpus): each frame's content, CRC and COBS removed, with its length in front.
pub fn unframe(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for encoded in stream.split(|&b| b == 0) {
        let mut buf = encoded.to_vec();
        let Ok(n) = cobs::decode_in_place(&mut buf) else {
            continue;
        };
        if n < 2 {
            continue;
        }
        let (content, crc) = buf[..n].split_at(n - 2);
        if microspan::wire::CRC.checksum(content).to_le_bytes() != [crc[0], crc[1]] {
            continue;
        }
        out.extend_from_slice(&(content.len() as u16).to_le_bytes());
        out.extend_from_slice(content);
    }
    out
}

/// Where the `postmortem` target's memory image starts (a Cortex-M RAM base).
pub const IMAGE_BASE: u32 = 0x2000_0000;

/// A RAM image at [`IMAGE_BASE`].
pub struct Image(pub Vec<u8>);

impl microspan::postmortem::TargetMemory for Image {
    fn read(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
        let start = addr.checked_sub(IMAGE_BASE)? as usize;
        self.0
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    }
}

/// Writes `w` little-endian at byte `at` of `image`.
pub fn put_word(image: &mut [u8], at: u32, w: u32) {
    image[at as usize..at as usize + 4].copy_from_slice(&w.to_le_bytes());
}

/// Target `postmortem`: a crashed device's RAM, read as `microspan postmortem` reads it (the
/// descriptor, the ring between tail and head, the strings the records point at), replayed
/// through the drain and decoded. The first byte is the mode: bit 0 clear, the rest is a raw
/// image whose descriptor is found by its magic (as without the ELF's symbol); bit 0 set, a
/// descriptor is forced at the image's start (magic, version, a ring at +0x100 of
/// `16 << ((mode >> 1) & 3)` words, head, tail and drop counter at +0xC0, +0xC4, +0xC8), every
/// other field and word coming from the input, so mutations reach the records.
pub fn postmortem(data: &[u8]) {
    use microspan::postmortem::{offset, RingImage, MAGIC, MAGIC_VERSION};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let forced = mode & 1 == 1;
    if forced {
        let capacity = 16u32 << ((mode >> 1) & 3);
        bytes.resize(bytes.len().max(0x100 + capacity as usize * 4), 0);
        put_word(&mut bytes, offset::MAGIC, MAGIC);
        put_word(&mut bytes, offset::VERSION, MAGIC_VERSION);
        put_word(&mut bytes, offset::RING_WORDS, IMAGE_BASE + 0x100);
        put_word(&mut bytes, offset::RING_CAPACITY, capacity);
        put_word(&mut bytes, offset::RING_HEAD, IMAGE_BASE + 0xC0);
        put_word(&mut bytes, offset::RING_TAIL, IMAGE_BASE + 0xC4);
        put_word(&mut bytes, offset::RING_DROPPED, IMAGE_BASE + 0xC8);
    }
    let mem = Image(bytes);
    let descriptor = if forced {
        Some(IMAGE_BASE)
    } else {
        RingImage::scan(&mem, IMAGE_BASE, mem.0.len() as u32)
    };
    let Some(descriptor) = descriptor else {
        return;
    };
    let image = match RingImage::read(&mem, descriptor) {
        Ok(image) => image,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error names its cause");
            return;
        }
    };
    assert!(image.words.len() <= image.capacity as usize);
    let replay = image.to_stream(&mem);
    assert!(replay.unread_words as usize <= image.words.len());
    // The replayed stream is the device drain's own: every frame checks out and decodes.
    let outcome = run_stream(std::iter::once(&replay.stream[..]), SMALL_LIMITS);
    assert!(outcome.fatal.is_none(), "{:?}", outcome.fatal);
    assert_eq!(outcome.stats.crc_errors, 0, "the drain's own frames");
}

/// Seeds for the `postmortem` target: forced-descriptor images of a crashed device whose ring
/// holds one record of each kind (32-bit layout: START, START_REMOTE, TAG, LOG with a static
/// and a copied string, BAGGAGE set and carried, REF, END with and without losses), whole, cut
/// short, wrapped around the ring's end, and found by a scan.
pub fn postmortem_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use microspan::postmortem::{offset, MAGIC, MAGIC_VERSION};
    let image = |mode: u8, tail: u32, records: usize, crashed: bool, capacity_sel: u8| {
        let capacity = 16u32 << capacity_sel;
        let mut b = vec![0u8; 0x400];
        let base = IMAGE_BASE;
        for (at, w) in [
            (offset::MAGIC, MAGIC),
            (offset::VERSION, MAGIC_VERSION),
            (offset::RING_WORDS, base + 0x100),
            (offset::RING_CAPACITY, capacity),
            (offset::RING_HEAD, base + 0xC0),
            (offset::RING_TAIL, base + 0xC4),
            (offset::RING_DROPPED, base + 0xC8),
            (offset::POLICY, 1),
            (offset::SERVICE_PTR, base + 0x300),
            (offset::SERVICE_LEN, 4),
            (offset::FIRMWARE_PTR, base + 0x308),
            (offset::FIRMWARE_LEN, 5),
            (offset::DEVICE_ID_LO, 0xdead_beef),
            (offset::DEVICE_ID_HI, 0x1234),
            (offset::BOOT_ID, 0xb007),
            (offset::TICKS_PER_SECOND, 1000),
            (offset::CRASHED, crashed as u32),
            (offset::CRASH_TICKS, 500),
            (offset::REASON_LEN, 5),
        ] {
            put_word(&mut b, at, w);
        }
        b[offset::REASON as usize..offset::REASON as usize + 5].copy_from_slice(b"panic");
        for (at, text) in [
            (0x300, &b"demo"[..]),
            (0x308, b"1.2.3"),
            (0x310, b"boot"),
            (0x318, b"work"),
            (0x320, b"key"),
            (0x328, b"msg"),
            (0x330, b"val"),
            (0x338, b"remote"),
        ] {
            b[at..at + text.len()].copy_from_slice(text);
        }
        let (t, s) = (tail, |at: u32| base + at);
        // Header: kind | words << 4 | payload << 12; span ids are ring positions + 1.
        #[rustfmt::skip]
        let all: [&[u32]; 12] = [
            // START `boot` (a root), START `work` (its child)
            &[1 | 5 << 4 | ((1 << 1) | (4 << 3)) << 12, s(0x310), 0, 0, 100],
            &[1 | 5 << 4 | (4 << 3) << 12, s(0x318), t + 1, t + 1, 110],
            // TAG key=42 (i64), LOG msg="val" (static), LOG msg="hello" (copied)
            &[4 | 6 << 4, t + 6, 2 | 3 << 4, s(0x320), 42, 0],
            &[5 | 6 << 4 | 1 << 12, t + 6, 120, 4 | 3 << 4 | 3 << 16, s(0x328), s(0x330)],
            &[5 | 7 << 4 | 1 << 12, t + 6, 121, 5 | 3 << 4 | 5 << 16, s(0x328), 0x6c6c_6568, 0x6f],
            // END `work`, BAGGAGE abc=xyz on `boot`, REF from `boot`
            &[3 | 3 << 4, t + 6, 130],
            &[6 | 4 << 4 | (3 | 3 << 10) << 12, t + 1, 0x0063_6261, 0x007a_7978],
            &[7 | 8 << 4, t + 1, 1, 2, 3, 4, 5, 6],
            // BAGGAGE def=xyz on `boot`, carried (payload bits 8 and 9)
            &[6 | 4 << 4 | (3 | 3 << 8 | 3 << 10) << 12, t + 1, 0x0066_6564, 0x007a_7978],
            // START_REMOTE `remote`, its END, END `boot` with losses
            &[2 | 9 << 4 | (6 << 3) << 12, s(0x338), 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 150],
            &[3 | 3 << 4, t + 45, 160],
            &[3 | 4 << 4 | 1 << 12, t + 1, 170, 2],
        ];
        let words: Vec<u32> = all[..records].concat();
        assert!(words.len() as u32 <= capacity);
        for (i, w) in words.iter().enumerate() {
            let slot = (tail + i as u32) & (capacity - 1);
            put_word(&mut b, 0x100 + 4 * slot, *w);
        }
        put_word(&mut b, 0xC0, tail + words.len() as u32);
        put_word(&mut b, 0xC4, tail);
        put_word(&mut b, 0xC8, 3);
        let mut input = vec![mode | capacity_sel << 1];
        input.extend_from_slice(&b);
        input
    };
    vec![
        ("full-crash", image(1, 0, 12, true, 2)),
        ("full-no-crash", image(1, 0, 12, false, 2)),
        ("found-by-scan", image(0, 0, 12, true, 2)),
        ("open-at-crash", image(1, 0, 6, true, 2)),
        ("wrapped", image(1, 60, 12, true, 2)),
        ("wrapped-128", image(1, 100, 12, true, 3)),
    ]
}
