//! The compact binary carrier for device-to-device links.
//!
//! A fixed 27-byte header, then the baggage items, each length-prefixed (the byte table is in
//! `docs/propagation.md`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, [`VERSION`] (`0` = no context: a zeroed message field extracts as `NotFound`) |
//! | 1 | 16 | trace id, big-endian (the byte order of its hex form) |
//! | 17 | 8 | span id (the sender's span), big-endian |
//! | 25 | 1 | flags: bit 0 sampled, bit 1 debug (implies sampled), bit 3 Jaeger's firehose (passed on); other bits written 0, ignored |
//! | 26 | 1 | baggage item count `n` |
//! | 27 | … | `n` × (`key_len: u8`, key UTF-8, `value_len: u8`, value UTF-8) |
//!
//! The encoded size is at most [`max_len`]`(B)` for a `Baggage<B>`, so a message type can reserve
//! a fixed field for it. Bytes after the last item are ignored (padding of a fixed-size field).
//!
//! Whatever [`inject`] writes, [`extract`] reads: an item extract would refuse (an empty key)
//! is never written (and [`Baggage`] never holds one). An item whose key or value is longer
//! than the receiver's capacity is dropped and counted on extraction, never cut.

use super::{ExtractError, Extracted, InjectError};
use crate::config::{MAX_BAGGAGE_KEY_LEN, MAX_BAGGAGE_VALUE_LEN};
use crate::context::{Flags, SpanContext, SpanId, TraceId};
use crate::tracer::Baggage;

/// The carrier's version byte.
pub const VERSION: u8 = 1;

/// Bytes of the fixed part (version, ids, flags, baggage count).
pub const HEADER_LEN: usize = 27;

/// The largest encoding of a context with up to `items` baggage items at the configured key and
/// value capacities.
pub const fn max_len(items: usize) -> usize {
    HEADER_LEN + items * (2 + MAX_BAGGAGE_KEY_LEN + MAX_BAGGAGE_VALUE_LEN)
}

/// The size of the encoding of a context with this baggage.
pub fn encoded_len<const B: usize>(baggage: &Baggage<B>) -> usize {
    encoding(baggage).0
}

/// `true` for an item the carrier can hold and [`extract`] accepts: a key of 1 to 255 bytes, a
/// value of at most 255. [`Baggage::set`] stores no other (its capacities are at most 255 bytes,
/// and it refuses an empty key); checked anyway, so that the carrier stays readable whatever.
fn carried(key: &str, value: &str) -> bool {
    !key.is_empty() && key.len() <= 255 && value.len() <= 255
}

/// The encoded size and the number of items written (the [`carried`] ones, at most 255).
fn encoding<const B: usize>(baggage: &Baggage<B>) -> (usize, usize) {
    let (mut n, mut items) = (HEADER_LEN, 0usize);
    baggage.for_each(|k, v| {
        if items == 255 {
            return false;
        }
        if carried(k, v) {
            n += 2 + k.len() + v.len();
            items += 1;
        }
        true
    });
    (n, items)
}

/// Writes `ctx` and `baggage` at the start of `buf`; returns the bytes written.
///
/// Fails with [`InjectError::BufferTooSmall`] (writing nothing useful) when `buf` is shorter than
/// [`encoded_len`].
pub fn inject<const B: usize>(
    ctx: &SpanContext,
    baggage: &Baggage<B>,
    buf: &mut [u8],
) -> Result<usize, InjectError> {
    let (needed, count) = encoding(baggage);
    if buf.len() < needed {
        return Err(InjectError::BufferTooSmall { needed });
    }
    buf[0] = VERSION;
    buf[1..17].copy_from_slice(&ctx.trace_id.0.to_be_bytes());
    buf[17..25].copy_from_slice(&ctx.span_id.0.to_be_bytes());
    buf[25] = ctx.flags.0 & Flags::CARRIED;
    // At most 255 (`encoding`): more cannot be counted in the byte.
    buf[26] = count as u8;
    let mut at = HEADER_LEN;
    let mut items = 0usize;
    baggage.for_each(|k, v| {
        if items == count {
            return false;
        }
        if !carried(k, v) {
            return true;
        }
        items += 1;
        // Keys and values are bounded by the configuration (≤ 255 bytes each, see `config`).
        for s in [k, v] {
            buf[at] = s.len() as u8;
            buf[at + 1..at + 1 + s.len()].copy_from_slice(s.as_bytes());
            at += 1 + s.len();
        }
        true
    });
    Ok(at)
}

/// Reads a context and up to `B` baggage items from `bytes`.
///
/// `NotFound` for an empty slice or a version byte of 0; `Corrupted` for another version, a
/// short header, zero ids, an empty baggage key, or baggage that runs past the end or is not
/// UTF-8. Items beyond `B`, or with a key or value longer than its capacity, are dropped and
/// counted ([`Extracted::baggage_dropped`]).
pub fn extract<const B: usize>(bytes: &[u8]) -> Result<Extracted<B>, ExtractError> {
    match bytes.first() {
        None | Some(0) => return Err(ExtractError::NotFound),
        Some(&VERSION) => {}
        Some(_) => {
            return Err(ExtractError::Corrupted(
                "unsupported binary carrier version",
            ))
        }
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(ExtractError::Corrupted(
            "binary carrier shorter than its header",
        ));
    };
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&header[1..17]);
    let mut span = [0u8; 8];
    span.copy_from_slice(&header[17..25]);
    let mut flags = Flags(header[25] & Flags::CARRIED);
    if flags.is_debug() {
        flags = flags.union(Flags::SAMPLED);
    }
    let context = SpanContext {
        trace_id: TraceId(u128::from_be_bytes(trace)),
        span_id: SpanId(u64::from_be_bytes(span)),
        flags,
    };
    if context.trace_id.0 == 0 {
        return Err(ExtractError::Corrupted("trace id is zero"));
    }
    if context.span_id.0 == 0 {
        return Err(ExtractError::Corrupted("span id is zero"));
    }
    let mut ex = Extracted::new(context);
    let mut rest = &bytes[HEADER_LEN..];
    for _ in 0..header[26] {
        let key = take_str(&mut rest)?;
        let value = take_str(&mut rest)?;
        if key.is_empty() {
            return Err(ExtractError::Corrupted("empty baggage key"));
        }
        ex.add_baggage(key, value);
    }
    Ok(ex)
}

fn take_str<'b>(rest: &mut &'b [u8]) -> Result<&'b str, ExtractError> {
    let (&len, tail) = rest
        .split_first()
        .ok_or(ExtractError::Corrupted("baggage runs past the end"))?;
    let s = tail
        .get(..len as usize)
        .ok_or(ExtractError::Corrupted("baggage runs past the end"))?;
    *rest = &tail[len as usize..];
    core::str::from_utf8(s).map_err(|_| ExtractError::Corrupted("baggage is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vector() {
        let ctx = SpanContext {
            trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
            span_id: SpanId(0x00f067aa0ba902b7),
            flags: Flags::SAMPLED,
        };
        let mut bag: Baggage<2> = Baggage::new();
        bag.set("k", "v1");
        let mut buf = [0u8; 64];
        let n = inject(&ctx, &bag, &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[
                1, // version
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36, // trace id
                0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7, // span id
                1,    // flags
                1,    // baggage count
                1, b'k', 2, b'v', b'1',
            ][..]
        );
        let ex: Extracted<2> = extract(&buf[..n]).unwrap();
        assert_eq!(ex.context, ctx);
        assert_eq!(ex.baggage, bag);
        // Padding after the last item is ignored.
        let ex: Extracted<2> = extract(&buf).unwrap();
        assert_eq!(ex.context, ctx);
    }

    #[test]
    fn not_found_and_corrupted() {
        assert_eq!(extract::<0>(&[]), Err(ExtractError::NotFound));
        assert_eq!(extract::<0>(&[0; 40]), Err(ExtractError::NotFound));
        assert!(matches!(
            extract::<0>(&[2; 40]),
            Err(ExtractError::Corrupted(_))
        ));
        assert!(matches!(
            extract::<0>(&[1; 10]),
            Err(ExtractError::Corrupted(_))
        ));
        let mut zero_span = [1u8; 27];
        zero_span[17..25].fill(0);
        zero_span[26] = 0;
        assert!(matches!(
            extract::<0>(&zero_span),
            Err(ExtractError::Corrupted(_))
        ));
        let mut short_bag = [1u8; 29];
        short_bag[26] = 1;
        short_bag[27] = 5;
        assert!(matches!(
            extract::<1>(&short_bag),
            Err(ExtractError::Corrupted(_))
        ));
    }

    #[test]
    fn too_small() {
        let ctx = SpanContext {
            trace_id: TraceId(1),
            span_id: SpanId(1),
            flags: Flags(0),
        };
        let mut buf = [0u8; 26];
        assert_eq!(
            inject(&ctx, &Baggage::<0>::new(), &mut buf),
            Err(InjectError::BufferTooSmall { needed: 27 })
        );
    }
}
