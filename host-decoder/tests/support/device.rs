//! The device side of the end-to-end tests: a clock moved by hand, and the bytes a drain sends
//! through a link that takes everything it is offered.

use microspan::Drain;

/// A 1 MHz clock advanced by hand (`ManualClock::new(start)`, `advance(ticks)`): the one the
/// bench's recorded workload runs on, so that tests and bench record alike. (An alias, not a
/// `pub use`: a test file that does not use it would warn of an unused import.)
pub type ManualClock = super::workload::ManualClock;

/// Everything the drain has to send now, through a link that takes it all: one
/// [`Drain::drain_with`] pass, which hands out frame after frame until the drain finds nothing
/// to say. Called again with nothing recorded in between, it sends nothing but lets the drain
/// keep its time (the stall tests rely on that idle pass).
pub fn drain_all<const F: usize>(drain: &mut Drain<'_, F>) -> Vec<u8> {
    let mut out = Vec::new();
    drain.drain_with(|b| {
        out.extend_from_slice(b);
        b.len()
    });
    out
}

/// One frame (or the rest of the current one) through a link that takes it whole.
pub fn one_frame<const F: usize>(drain: &mut Drain<'_, F>) -> Vec<u8> {
    let b = drain.fill_buf().to_vec();
    drain.consume(b.len());
    b
}

/// Splits a stream into its frames, each with its `0x00` delimiter (a cut last frame without).
/// A drain's first frame also keeps the `0x00` it is sent after, as the drain hands them out
/// together: frame `i` of a drain's stream is element `i`.
pub fn frames(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = stream
        .split_inclusive(|&b| b == 0)
        .map(<[u8]>::to_vec)
        .collect();
    if frames.len() > 1 && frames[0] == [0] {
        frames.remove(0);
        frames[0].insert(0, 0);
    }
    frames
}

/// A span name made at run time, as static as the names a device's firmware holds in flash.
pub fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}
