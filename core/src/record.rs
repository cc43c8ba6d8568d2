//! Layout of the records in the ring (words of 32 bits), shared by the record path, which writes
//! them, and the drain, which reads them and re-encodes them compactly for the wire.
//!
//! The record path stores what it has, as it has it: raw 32-bit ticks, ring positions as span ids,
//! `&'static str` as pointer and length. Varints, deltas, interning and time extension are the
//! drain's job (see `docs/design.md`).
//!
//! | kind | words after the header | header payload |
//! |---|---|---|
//! | `START` | name ptr (P), parent local id, root local id, ticks | debug, is-root << 1, follows-from << 2, name length << 3 |
//! | `START_REMOTE` | name ptr (P), trace id (4), parent span id (2, 0 = lost), ticks | debug, parent-is-local << 1, follows-from << 2, name length << 3 |
//! | `END` | span, ticks, [losses] | 1 when the losses word follows |
//! | `TAG` | span, field | 0 |
//! | `LOG` | span, ticks, field × n | n |
//! | `BAGGAGE` | span, key bytes, value bytes | key length, carried (0 or 3) << 8, value length << 10 |
//! | `REF` | span, trace id (4), span id (2) | 0 = ChildOf, 1 = FollowsFrom |
//!
//! A `BAGGAGE` record is an item the span set (`Span::set_baggage`), or, with the carried bits
//! ([`BAGGAGE_CARRIED`]: bits 8 and 9, both set), one it received (`SpanBuilder::with_baggage`,
//! `extracted`): the drain writes the wire's `BAGGAGE` or `BAGGAGE_CARRIED` for it. Keys and
//! values are at most 255 bytes (`build.rs` caps both capacities), so the key length takes bits
//! 0–7 and bits 8–9 are free for the mark.
//!
//! P is the number of words of a pointer (1 on 32-bit targets, 2 on 64-bit ones). A field is a
//! field header (value type, key length << 4, aux << 16), the key pointer (P) and the value words:
//! none for a bool (aux = the bool), two for 64-bit numbers (low word first), P for a static
//! string (aux = length), ⌈aux/4⌉ for a copied string (aux = length, bytes little-endian).

use crate::ring::{DynRing, Reservation};

pub(crate) const START: u32 = 1;
pub(crate) const START_REMOTE: u32 = 2;
pub(crate) const END: u32 = 3;
pub(crate) const TAG: u32 = 4;
pub(crate) const LOG: u32 = 5;
pub(crate) const BAGGAGE: u32 = 6;
pub(crate) const REF: u32 = 7;

/// A `BAGGAGE` record's header payload: the key length (bits 0–7).
pub(crate) const BAGGAGE_KEY_MASK: u32 = 0xFF;
/// A `BAGGAGE` record's header payload: the item was carried into the span (from a carrier or
/// a builder's baggage), not set on it. Two bits, both set or both clear: shifted to bits 1–2
/// they are 6, the difference between the wire kinds `BAGGAGE_CARRIED` (13) and `BAGGAGE` (7),
/// so the drain adds them to the kind without a branch.
pub(crate) const BAGGAGE_CARRIED: u32 = 0b11 << 8;
/// A `BAGGAGE` record's header payload: the value length's shift (bits 10–17).
pub(crate) const BAGGAGE_VALUE_SHIFT: u32 = 10;

/// Words of a pointer.
pub(crate) const P: u32 = (core::mem::size_of::<usize>() / 4) as u32;

/// Field value types.
pub(crate) const V_BOOL: u32 = 0;
pub(crate) const V_I64: u32 = 1;
pub(crate) const V_U64: u32 = 2;
pub(crate) const V_F64: u32 = 3;
pub(crate) const V_STR: u32 = 4;
pub(crate) const V_TEXT: u32 = 5;

/// Longest static name kept (the header payload has 17 bits for it).
pub(crate) const MAX_NAME_LEN: usize = (1 << 17) - 1;
/// Longest field key kept (12 bits).
pub(crate) const MAX_KEY_LEN: usize = (1 << 12) - 1;
/// Longest static string value kept (16 bits).
pub(crate) const MAX_STATIC_VALUE_LEN: usize = (1 << 16) - 1;

/// `s` cut to at most `max` bytes at a character boundary; `true` when something was cut.
#[inline]
pub(crate) fn truncate(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Words needed for `n` bytes.
#[inline(always)]
pub(crate) const fn byte_words(n: usize) -> u32 {
    n.div_ceil(4) as u32
}

/// Writes a reservation's body sequentially.
pub(crate) struct Cursor<'r> {
    pub(crate) res: Reservation<'r>,
    pub(crate) at: u32,
}

impl<'r> Cursor<'r> {
    #[inline(always)]
    pub(crate) fn new(res: Reservation<'r>) -> Self {
        Self { res, at: 1 }
    }

    /// A cursor at the reservation's header (word 0), for a reservation that holds several
    /// records, each of which takes its header slot with [`header_slot`](Self::header_slot).
    #[inline(always)]
    pub(crate) fn at_header(res: Reservation<'r>) -> Self {
        Self { res, at: 0 }
    }

    /// Takes the next word for a record's header; returns its index (written by the caller with
    /// `put`, or, for index 0, published by `commit_first`).
    #[inline(always)]
    pub(crate) fn header_slot(&mut self) -> u32 {
        let at = self.at;
        self.at += 1;
        at
    }

    #[inline(always)]
    pub(crate) fn word(&mut self, w: u32) {
        self.res.put(self.at, w);
        self.at += 1;
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self, v: u64) {
        self.word(v as u32);
        self.word((v >> 32) as u32);
    }

    #[inline(always)]
    pub(crate) fn u128(&mut self, v: u128) {
        self.u64(v as u64);
        self.u64((v >> 64) as u64);
    }

    /// The address of a static string (its provenance exposed, so the drain may rebuild it).
    #[inline(always)]
    pub(crate) fn ptr(&mut self, s: &'static str) {
        let addr = s.as_ptr().expose_provenance();
        self.word(addr as u32);
        if P == 2 {
            self.word(((addr as u64) >> 32) as u32);
        }
    }

    /// Bytes packed little-endian into words (the last one padded with zeros).
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.bytes_in_line(b)
    }

    /// [`bytes`](Self::bytes) in line, for a writer whose cursor must stay in registers: it
    /// calls nothing (the last word is packed by shifts, not copied by `memcpy`).
    #[inline(always)]
    pub(crate) fn bytes_in_line(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(4);
        for c in &mut chunks {
            self.word(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = 0u32;
            for (i, &x) in rest.iter().enumerate() {
                w |= (x as u32) << (8 * i);
            }
            self.word(w);
        }
    }
}

/// Where the static strings a record points at live.
#[derive(Clone, Copy)]
pub(crate) enum Strings<'r> {
    /// In this program: the record holds real `&'static str` addresses (P words each).
    Native,
    /// In another program's memory (a post-mortem image of a 32-bit target): the record holds
    /// 32-bit target addresses (one word each), resolved through the image.
    #[cfg(feature = "std")]
    Target(&'r dyn crate::postmortem::ResolveStr),
    #[cfg(not(feature = "std"))]
    #[allow(dead_code)]
    _Lifetime(core::marker::PhantomData<&'r ()>),
}

/// Reads a committed record's words (consumer side).
#[derive(Clone, Copy)]
pub(crate) struct Reader<'r> {
    pub(crate) ring: &'r DynRing,
    pub(crate) pos: u32,
    pub(crate) at: u32,
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) strings: Strings<'r>,
}

impl<'r> Reader<'r> {
    pub(crate) fn new(ring: &'r DynRing, pos: u32, strings: Strings<'r>) -> Self {
        Self {
            ring,
            pos,
            at: 1,
            strings,
        }
    }

    #[inline(always)]
    pub(crate) fn word(&mut self) -> u32 {
        let w = self.ring.word(self.pos, self.at);
        self.at += 1;
        w
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self) -> u64 {
        let lo = self.word() as u64;
        lo | (self.word() as u64) << 32
    }

    #[inline(always)]
    pub(crate) fn u128(&mut self) -> u128 {
        let lo = self.u64() as u128;
        lo | (self.u64() as u128) << 64
    }

    /// A static string written by [`Cursor::ptr`] with length `len`.
    #[inline(always)]
    pub(crate) fn static_str(&mut self, len: usize) -> &'static str {
        #[cfg(feature = "std")]
        if let Strings::Target(t) = self.strings {
            let addr = self.word();
            return t.resolve(addr, len);
        }
        let mut addr = self.word() as usize;
        if P == 2 {
            addr |= ((self.word() as u64) << 32) as usize;
        }
        let ptr = core::ptr::with_exposed_provenance::<u8>(addr);
        // SAFETY: `addr` and `len` were written by `Cursor::ptr` from a `&'static str` of at
        // least `len` bytes, cut at a character boundary by `truncate`, and its provenance was
        // exposed there; a `'static` string is valid and immutable forever. The record was
        // published by a Release store of its header that the drain's Acquire load observed.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) }
    }

    /// `len` bytes written by [`Cursor::bytes`], into `out` (at least `len` long).
    pub(crate) fn bytes<'o>(&mut self, len: usize, out: &'o mut [u8]) -> &'o [u8] {
        let mut i = 0;
        while i < len {
            let w = self.word().to_le_bytes();
            let n = (len - i).min(4);
            out[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
        &out[..len]
    }
}
