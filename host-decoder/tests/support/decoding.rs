//! The host side of the end-to-end tests: a device's stream through the [`StreamDecoder`] and
//! span assembly, and the spans it made, found by name.

use microspan_decoder::assemble::Options;
use microspan_decoder::model::{Batch, Span};
use microspan_decoder::stream::{StreamDecoder, StreamStats};

/// The fixed time anchor of the decoders here ([`super::T0`]), so that times are reproducible.
pub const ANCHOR: u64 = super::T0;

/// The default options with the time anchor fixed at [`ANCHOR`].
pub fn anchored() -> Options {
    Options {
        fixed_anchor_unix_nanos: Some(ANCHOR),
        ..Options::default()
    }
}

/// What a decoder made of a whole stream, after `finish`.
pub struct Decoded {
    /// The spans of all batches, in the order they were exported.
    pub spans: Vec<Span>,
    pub batches: Vec<Batch>,
    pub stats: StreamStats,
}

/// `stream` through a decoder with `options`, fed in `chunk`-byte pieces as a serial port would
/// deliver them (`usize::MAX`: all at once), then finished. A fatal error fails the test.
pub fn decode_in(stream: &[u8], options: Options, chunk: usize) -> Decoded {
    let mut decoder = StreamDecoder::new(options);
    let mut batches = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        decoder
            .feed(piece, &mut batches)
            .unwrap_or_else(|e| panic!("fatal stream error: {e}"));
    }
    decoder.finish(&mut batches);
    let spans = batches.iter().flat_map(|b| b.spans.clone()).collect();
    Decoded {
        spans,
        batches,
        stats: decoder.stats(),
    }
}

/// `stream` through a decoder anchored at [`ANCHOR`], in odd-sized (7-byte) pieces.
pub fn decode(stream: &[u8]) -> Decoded {
    decode_in(stream, anchored(), 7)
}

/// The span named `name` (the first, if several are); fails the test, listing the spans, if none
/// is.
pub fn span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.operation == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

/// When the span named `name` started, in ns since the Unix epoch (signed, for differences).
pub fn start_of(spans: &[Span], name: &str) -> i128 {
    i128::from(span(spans, name).start_unix_nanos)
}
