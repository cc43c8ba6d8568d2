//! The wire format: frames and records, the device's encoder and the host's decoder.
//!
//! The full specification, with byte tables and the stability policy, is
//! `docs/wire-format.md`. In short: a stream is a sequence of frames, each
//! `COBS(version, sequence, base id, base time, records…, CRC-16)` followed by `0x00`. Records
//! begin with a tag byte whose top two bits pick the common records (a child span starts, a span
//! ends, a tag on the current span) with a 6-bit delta packed beside them, or an extended record.
//! Numbers are postcard varints (unsigned LEB128, zigzag for signed), the session record is a
//! postcard-serialized [`Hello`], and ids and times are deltas against state that restarts at
//! every frame, so each frame decodes on its own.
//!
//! - [`frame`]: the device side (in-place COBS + CRC frame builder).
//! - [`decode`]: the host side (chunks in, frames and typed records out, typed errors).

pub mod decode;
pub mod frame;

use serde::{Deserialize, Serialize};

/// The wire version this crate writes. Version 3 is version 2 with span ids derived from the
/// boot id mixed with the device id ([`SpanId::boot_prefix`](crate::SpanId::boot_prefix)); the
/// bytes of every record are the same.
pub const WIRE_VERSION: u8 = 3;

/// Wire versions this crate's decoder reads.
pub const SUPPORTED_VERSIONS: &[u8] = &[1, 2, 3];

/// CRC over each frame: CRC-16/IBM-3740 (polynomial 0x1021, initial value 0xFFFF, also known as
/// CRC-16/CCITT-FALSE), little-endian on the wire.
pub const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// Bytes of the fixed part of a frame header (version + sequence).
pub const FRAME_FIXED_HEADER: usize = 3;

/// Tag byte classes (top two bits).
pub mod tag {
    /// A span starts. `r = 0`: ChildOf the previous start of the same frame (version 1), or of
    /// the frame's most recent open start (version 2, [`OpenStarts`](super::OpenStarts)); `r = 1`:
    /// a root span. Version 1, and roots in version 2: `00rddddd`, `d` is the id delta (1–31; 0 means a
    /// varint delta follows). Children in version 2: `000pxxxx`; `p = 1`: the id delta repeats
    /// the previous start's and `x` is the interned name id (0–14; 15 means a string reference
    /// follows); `p = 0`: `x` is the id delta (1–15; 0 means a varint follows) and a string
    /// reference follows.
    pub const START: u8 = 0x00;
    /// The `r` bit of a short start.
    pub const START_ROOT_BIT: u8 = 0x20;
    /// Mask of the 5-bit delta of a version 1 short start.
    pub const START_DELTA_MASK: u8 = 0x1F;
    /// The `p` bit of a version 2 short start: the id delta repeats the previous start's.
    pub const START_REPEAT_BIT: u8 = 0x10;
    /// Mask of the 4-bit delta or name id of a version 2 short start.
    pub const START_LOW_MASK: u8 = 0x0F;
    /// `01dddddd`: a span ends. Version 1: `d` = last start id − span id (0–62; 63 means a varint
    /// follows), then `dt`. Version 2: `01hddddd`, the span is the most recent start of this frame
    /// that has not ended ([`OpenStarts`](super::OpenStarts)); `h = 0`: `dt` is `d` (0–31);
    /// `h = 1`: `d` holds the low 5 bits of `dt`, whose high bits follow as a varint.
    pub const END: u8 = 0x40;
    /// (Version 2) the `h` bit of a short end: the high bits of `dt` follow.
    pub const END_HIGH_BIT: u8 = 0x20;
    /// (Version 2) bits of `dt` in a short end's tag byte.
    pub const END_DT_BITS: u32 = 5;
    /// (Version 2) mask of those bits.
    pub const END_DT_MASK: u8 = 0x1F;
    /// (Version 2) the smallest `dt` that needs the high bits.
    pub const END_DT_LIMIT: u64 = 1 << END_DT_BITS;
    /// A tag on the current span. Version 1: `10tttttt`, `t` is the value type, and a string
    /// reference to the key follows. Version 2: `10tttkkk`, `k` is the interned key id (0–6; 7
    /// means a string reference follows).
    pub const TAG: u8 = 0x80;
    /// (Version 2) the shift of a short tag's value type.
    pub const TAG_TYPE_SHIFT: u32 = 3;
    /// (Version 2) mask of a short tag's key id; this value means a string reference follows.
    pub const TAG_KEY_MASK: u8 = 0x07;
    /// `11kkkkkk`: an extended record of kind `k` (see [`ext`](super::ext)).
    pub const EXT: u8 = 0xC0;
    /// Mask of the class bits.
    pub const CLASS_MASK: u8 = 0xC0;
    /// Mask of the 6-bit value.
    pub const VALUE_MASK: u8 = 0x3F;
}

/// Extended record kinds (`11kkkkkk`).
pub mod ext {
    /// Session record: a postcard [`Hello`](super::Hello).
    pub const HELLO: u8 = 0;
    /// Name definition: id, length, UTF-8 bytes.
    pub const NAME: u8 = 1;
    /// A span starts (root, sibling, FollowsFrom, debug, or first of a frame).
    pub const START: u8 = 2;
    /// A span starts under an explicit trace id and parent span id.
    pub const START_REMOTE: u8 = 3;
    /// A span ends, with what it lost to capacities and a full ring.
    pub const END_LOSSES: u8 = 4;
    /// A tag on a span other than the current one.
    pub const TAG_ON: u8 = 5;
    /// A timestamped log with fields.
    pub const LOG: u8 = 6;
    /// A baggage item set on a span (`Span::set_baggage`): Jaeger clients log it there.
    pub const BAGGAGE: u8 = 7;
    /// A reference from a span to any other span.
    pub const REF: u8 = 8;
    /// Records dropped on the device since boot (cumulative).
    pub const DROPS: u8 = 9;
    /// Sets the frame's running time (absolute extended ticks).
    pub const SET_TIME: u8 = 10;
    /// The device's real time: extended ticks and the Unix time they correspond to.
    pub const WALL_CLOCK: u8 = 11;
    /// (Version 2) a span ends: `back`, `dt` — the end of a span that is not the most recent
    /// open start of the frame (version 1 says this with a short end).
    pub const END: u8 = 12;
    /// A baggage item a span received rather than set (from a carrier, `SpanBuilder::extracted`,
    /// or `SpanBuilder::with_baggage`): the fields of [`BAGGAGE`], and the item joins the span's
    /// baggage without being logged. Added to version 2 after its first release: a decoder
    /// from before it reports an unknown record kind (and abandons the frame's remaining records)
    /// when a device carries baggage.
    pub const BAGGAGE_CARRIED: u8 = 13;
    /// (Version 2) the fields of [`NAME`], for a static string the device cut to fit an empty
    /// frame: the text is the string's first bytes (whole UTF-8 characters), and whatever uses
    /// the name is marked as holding a truncated string. Added to version 2 after its first
    /// release, as [`BAGGAGE_CARRIED`] was: a decoder from before it reports an unknown record
    /// kind for the frame, which holds nothing else, and then cannot resolve the name.
    pub const NAME_CUT: u8 = 14;
}

/// Most spans a frame's [`OpenStarts`] remembers.
pub const OPEN_STARTS_DEPTH: usize = 8;

/// Wire version 2: the spans started in the current frame that have not ended yet, most recent
/// last, of which a short end names the most recent. Encoder and decoder keep the same list by
/// the same rules, so it never travels: cleared at every frame; every start pushes its span (the
/// oldest is forgotten beyond [`OPEN_STARTS_DEPTH`]); a short end pops the most recent; any other
/// end of a listed span removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenStarts {
    /// A stack, most recent last: `ids[..len]`. Moved only when a start overflows it (nesting
    /// deeper than [`OPEN_STARTS_DEPTH`] in one frame), so the drain's hot path (the most recent
    /// entry, a push, a pop) indexes the array directly, without the wrap-around arithmetic of a
    /// circular buffer.
    ids: [u32; OPEN_STARTS_DEPTH],
    len: u8,
}

impl Default for OpenStarts {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenStarts {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            ids: [0; OPEN_STARTS_DEPTH],
            len: 0,
        }
    }

    /// Forgets every span (a new frame).
    #[inline(always)]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// A span started.
    #[inline(always)]
    pub fn push(&mut self, id: u32) {
        match self.ids.get_mut(self.len as usize) {
            Some(slot) => {
                *slot = id;
                self.len += 1;
            }
            None => self.push_full(id),
        }
    }

    /// [`push`](Self::push) on a full list: forgets the oldest.
    #[cold]
    #[inline(never)]
    fn push_full(&mut self, id: u32) {
        // Moved one by one: `copy_within` or `rotate_left` would link a general `memmove`
        // (1.5 KB of flash).
        for k in 1..OPEN_STARTS_DEPTH {
            self.ids.swap(k - 1, k);
        }
        self.ids[OPEN_STARTS_DEPTH - 1] = id;
    }

    /// The most recent open start.
    #[inline(always)]
    pub fn top(&self) -> Option<u32> {
        // One comparison: an empty list's index wraps past the end.
        self.ids.get((self.len as usize).wrapping_sub(1)).copied()
    }

    /// Removes and returns the most recent open start (a short end).
    #[inline(always)]
    pub fn pop(&mut self) -> Option<u32> {
        let top = self.top()?;
        self.len -= 1;
        Some(top)
    }

    /// Removes the most recent open start, which the caller has just read with
    /// [`top`](Self::top) (so the list is not empty): [`pop`](Self::pop) without its check.
    #[inline(always)]
    pub(crate) fn pop_listed(&mut self) {
        debug_assert!(self.len > 0);
        self.len = self.len.wrapping_sub(1);
    }

    /// Whether `id` is listed.
    pub fn contains(&self, id: u32) -> bool {
        self.listed().contains(&id)
    }

    /// `id` ended by another record than a short end: forgets it if it is listed (the most
    /// recent entry of that id).
    #[inline(never)]
    pub fn remove(&mut self, id: u32) {
        let Some(j) = self.listed().iter().rposition(|&x| x == id) else {
            return;
        };
        // Moved one by one (rare: a span that is not the most recent ends), as in `push_full`,
        // within a slice whose bounds the loop provably keeps (no bounds-check panic linked).
        if let Some(tail) = self.ids.get_mut(j..self.len as usize) {
            for k in 1..tail.len() {
                tail[k - 1] = tail[k];
            }
        }
        self.len -= 1;
    }

    /// The listed spans, oldest first.
    #[inline(always)]
    fn listed(&self) -> &[u32] {
        self.ids.get(..self.len as usize).unwrap_or(&[])
    }
}

const _: () = assert!(OPEN_STARTS_DEPTH >= 1 && OPEN_STARTS_DEPTH <= 128);

/// Value types (the 6-bit `t` of a tag record, the type byte of a log field).
pub mod vtype {
    /// `false` (no value bytes).
    pub const FALSE: u8 = 0;
    /// `true` (no value bytes).
    pub const TRUE: u8 = 1;
    /// Signed integer, zigzag varint.
    pub const I64: u8 = 2;
    /// Unsigned integer, varint.
    pub const U64: u8 = 3;
    /// IEEE 754 double, 8 bytes little-endian.
    pub const F64: u8 = 4;
    /// A string reference.
    pub const STR: u8 = 5;
}

/// Flag bits of an extended `START` record.
pub mod start_flags {
    /// Debug flag.
    pub const DEBUG: u8 = 1;
    /// The parent reference is FollowsFrom (not ChildOf).
    pub const FOLLOWS_FROM: u8 = 2;
    /// No parent: a root span, its trace id derived from its own id.
    pub const ROOT: u8 = 4;
    /// A root-delta varint follows the parent delta (the parent did not start in this frame).
    pub const ROOT_EXPLICIT: u8 = 8;
    /// (`START_REMOTE`) the parent is unknown: its start record was dropped on the device.
    pub const PARENT_LOST: u8 = 16;
    /// (`START_REMOTE`) the parent is a span of this device and boot (the parent span id's low
    /// half is its local id) that started in an earlier frame: the span inherits its baggage.
    /// Decoders that ignore the bit read a correct span (trace, parent) without that baggage.
    pub const LOCAL_PARENT: u8 = 32;
}

/// Capacities the device was built with, announced so the decoder can explain truncations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Capacities {
    /// Tags per span.
    pub tags_per_span: u16,
    /// Fields per log.
    pub fields_per_log: u16,
    /// Bytes kept of a dynamic string.
    pub str_len: u16,
    /// Bytes kept of a baggage value.
    pub baggage_value_len: u16,
    /// Largest frame, delimiter included.
    pub frame_max: u16,
    /// Ring size in 32-bit words.
    pub ring_words: u32,
}

/// The device's real time at a tick value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WallClock {
    /// Extended device ticks.
    pub ticks: u64,
    /// Nanoseconds since the Unix epoch at that tick.
    pub unix_nanos: u64,
}

/// The session record, sent in the first frame of every epoch (every `epoch_frames` frames), so a
/// decoder that joins mid-stream learns everything within one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello<'a> {
    /// Service name.
    pub service: &'a str,
    /// Device id (high half of locally started trace ids).
    pub device_id: u64,
    /// Boot id (high half of span ids); a new one means the device reset.
    pub boot_id: u32,
    /// Rate of the times on the wire: the device clock's rate divided by `2^time_shift`.
    pub ticks_per_second: u32,
    /// Extended ticks when this record was written (anchors device time to host time).
    pub now_ticks: u64,
    /// Frames per epoch (a power of two): names are re-announced and this record re-sent at every
    /// sequence number that is a multiple of it.
    pub epoch_frames: u16,
    /// Compile-time capacities.
    pub capacities: Capacities,
    /// Firmware version.
    pub firmware_version: &'a str,
    /// microspan version.
    pub microspan_version: &'a str,
    /// Real time, when the device knows it.
    pub wall_clock: Option<WallClock>,
    /// (Version 2, written after the other fields) the device sends times in units of
    /// `2^time_shift` clock ticks, so its clock runs at `ticks_per_second << time_shift`. Not
    /// part of the postcard struct: the record decoder reads it after it, and it is 0 in version 1.
    #[serde(skip)]
    pub time_shift: u8,
}

/// Postcard varint helpers: unsigned LEB128, and zigzag for signed values (postcard's wire format
/// for `u16`–`u128` and `i16`–`i128`).
pub mod varint {
    /// Longest varint of a `u64`.
    pub const MAX_U64: usize = 10;

    /// Writes `v` into `out`; returns the bytes written, or `None` if `out` is too short.
    #[inline]
    pub fn encode_u64(mut v: u64, out: &mut [u8]) -> Option<usize> {
        let mut i = 0;
        loop {
            let byte = out.get_mut(i)?;
            if v < 0x80 {
                *byte = v as u8;
                return Some(i + 1);
            }
            *byte = (v as u8) | 0x80;
            v >>= 7;
            i += 1;
        }
    }

    /// Zigzag mapping of a signed value.
    #[inline]
    pub const fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    /// Inverse of [`zigzag`].
    #[inline]
    pub const fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    /// Reads a varint of at most `max_bytes` bytes that must fit in `u64`; returns the value and
    /// the bytes consumed. `None` when truncated, too long, or overflowing.
    #[inline]
    pub fn decode_u64(buf: &[u8]) -> Option<(u64, usize)> {
        let mut v: u64 = 0;
        for (i, &b) in buf.iter().enumerate().take(MAX_U64) {
            let chunk = (b & 0x7F) as u64;
            if i == 9 && chunk > 1 {
                return None;
            }
            v |= chunk << (7 * i);
            if b & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::varint::*;

    #[test]
    fn varints_match_postcard() {
        let samples = [
            0u64,
            1,
            63,
            64,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        for v in samples {
            let mut ours = [0u8; 10];
            let n = encode_u64(v, &mut ours).unwrap();
            let theirs = postcard::to_allocvec(&v).unwrap();
            assert_eq!(&ours[..n], &theirs[..], "{v}");
            assert_eq!(decode_u64(&ours[..n]), Some((v, n)));
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut ours = [0u8; 10];
            let n = encode_u64(zigzag(v), &mut ours).unwrap();
            assert_eq!(&ours[..n], &postcard::to_allocvec(&v).unwrap()[..]);
            assert_eq!(unzigzag(decode_u64(&ours[..n]).unwrap().0), v);
        }
    }

    #[test]
    fn bad_varints_are_refused() {
        assert_eq!(decode_u64(&[0x80]), None);
        assert_eq!(decode_u64(&[0xFF; 11]), None);
        assert_eq!(
            decode_u64(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            None
        );
        assert_eq!(decode_u64(&[]), None);
    }
}

#[cfg(test)]
mod open_starts_tests {
    use super::{OpenStarts, OPEN_STARTS_DEPTH};

    /// The circular list against a plain vector model, with the same forgetting rule.
    #[test]
    #[cfg_attr(miri, ignore = "safe code only, many rounds: the native run covers it")]
    fn open_starts_match_a_vector_model() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut list = OpenStarts::new();
        let mut model: Vec<u32> = Vec::new();
        for _ in 0..100_000 {
            let r = next();
            match r % 4 {
                0 | 1 => {
                    let id = (r >> 8) as u32 % 16;
                    list.push(id);
                    if model.len() == OPEN_STARTS_DEPTH {
                        model.remove(0);
                    }
                    model.push(id);
                }
                2 => assert_eq!(list.pop(), model.pop()),
                _ => {
                    let id = (r >> 8) as u32 % 16;
                    list.remove(id);
                    if let Some(i) = model.iter().rposition(|&m| m == id) {
                        model.remove(i);
                    }
                }
            }
            assert_eq!(list.top(), model.last().copied());
            let probe = (r >> 40) as u32 % 16;
            assert_eq!(list.contains(probe), model.contains(&probe));
            if r % 1000 == 0 {
                list.clear();
                model.clear();
            }
        }
    }
}
