//! Building one frame on the device: header, records, CRC, COBS, delimiter, in one buffer.
//!
//! Records are written as raw bytes straight into the frame buffer, each at its final place: with
//! COBS, raw byte `i` of a frame goes to buffer position `2 + i` (position 1 is the first block's
//! code slot, and a zero byte's place becomes the code slot of the block it starts), as long as
//! no block reaches 254 data bytes. Position 0 is always `0x00`: a frame begun
//! [`after a delimiter`](FrameBuilder::begin_after_delimiter) is handed out from it, so that a
//! drain's first frame is preceded by a delimiter in the same contiguous slice (the estimate of
//! COBS's overhead below leaves that byte free in every frame: it costs no capacity). Writing a byte is therefore one store, and a record that does
//! not fit is forgotten by not moving the frame's cursor. [`finish`](FrameBuilder::finish) then
//! makes one pass over the frame: the CRC of every byte (one table lookup each), and the code
//! slots (each zero byte is replaced by the length of the block it starts, the first slot gets
//! the first block's); then it appends the CRC, closes the last block and adds the delimiter.
//! Only a run of 254 non-zero bytes needs a code slot inserted (a block holds at most 254 data
//! bytes), which moves the bytes after it by one: frames of up to 256 bytes never meet one, and
//! do not test for it. A frame costs `F` bytes of RAM (and 10 of slack, below) and no second
//! buffer, and the finished frame is one contiguous slice, ready for a DMA transfer or an RTT
//! write.
//!
//! The CRC takes one lookup in a 256-entry table per byte; with the `small-crc` feature, two in a
//! 16-entry one (480 bytes of flash less, a few instructions more per byte).
//!
//! The drain writes a record through a writer (crate-private), which keeps the frame's position
//! in a register and does not fail byte by byte: bytes beyond the buffer are not stored, and once
//! the record is written, the writer says whether it fit and is committed only then (a record
//! that does not fit leaves the frame as it was). So room is checked once per record.
//!
//! The span records (starts, ends) and the header do not even test each byte: they are short, so
//! the buffer is followed by a few bytes of slack, and their bytes are stored unchecked (the
//! writer's `put_hot`): a writer starts at most one byte past the last a record may use, and
//! writes at most `HOT_MAX` (13) such bytes before what it writes is either dropped or goes
//! through the checked path (the writer's `call`, which brings a writer that ran past the end
//! back to just after it).

/// Most bytes a writer stores unchecked ([`Writer::put_hot`]) after it is made or returns from
/// [`Writer::call`]: the longest run of the span records' and the header's inline bytes (a
/// start's tag byte, its delta as a 32-bit varint, its name reference, below 2^14, as a varint of
/// at most 2 bytes, its time delta as a 32-bit varint: 1 + 5 + 2 + 5; the header's 3 bytes and
/// two 32-bit varints as many; a longer varint, a name or a string goes through `call`).
pub(crate) const HOT_MAX: usize = 13;

/// Bytes of slack after a frame's buffer. The buffer already holds `2 + F / 254` bytes past the
/// last a record may use (for the CRC, the COBS codes and the delimiter): unchecked bytes from
/// one past that last byte need `HOT_MAX - 2` more (checked at compile time, `CHECK`).
const SLACK: usize = HOT_MAX - 2;

/// Raw bytes (header and records) a frame of `f` bytes holds ([`FrameBuilder`]'s `CAP`).
pub(crate) const fn capacity_of(f: usize) -> usize {
    f - 3 - (2 + f / 254)
}

/// Not enough room left in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A point to roll a frame back to ([`FrameBuilder::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pos: usize,
}

/// A frame buffer of `F` bytes (the largest frame on the wire, delimiter included), and a few
/// of slack for unchecked bytes past it.
#[repr(C)]
pub struct FrameBuilder<const F: usize> {
    /// Where the next raw byte goes (raw byte `i` at `2 + i`): at most `END`, always (the
    /// unchecked bytes of a writer, which starts there, rely on it).
    pos: usize,
    /// When finished: bytes already handed out (from position 1, the frame's first byte, or 0,
    /// the delimiter before it).
    sent: usize,
    /// When finished: the encoded length (`F` at most, so it fits), from position 0; 0 before.
    len: u16,
    buf: [u8; F],
    /// Room for the unchecked bytes of a record that runs past `buf` (never part of a frame: such
    /// a record does not fit, and is dropped). Right after `buf` (`repr(C)`, both of alignment 1).
    slack: [core::mem::MaybeUninit<u8>; SLACK],
    /// Where the frame is handed out from: 1, or 0 when it is sent after a delimiter
    /// ([`begin_after_delimiter`](Self::begin_after_delimiter)). After the buffer, which keeps
    /// its offset (the record path's stores address it).
    start: u8,
}

impl<const F: usize> Default for FrameBuilder<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-16/IBM-3740 (see [`super::CRC`]) of `bits`-bit values (the top `bits` of a 16-bit
/// register shifted through the polynomial): for one lookup per byte (8 bits, 512 bytes of flash)
/// or two (4 bits, 32 bytes, feature `small-crc`).
const fn crc_table<const N: usize>(bits: u32) -> [u16; N] {
    let mut t = [0u16; N];
    let mut i = 0;
    while i < N {
        let mut c = (i as u16) << (16 - bits);
        let mut b = 0;
        while b < bits {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            b += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-16/IBM-3740 of each byte value, for one table lookup per byte.
#[cfg(not(feature = "small-crc"))]
static CRC_TABLE: [u16; 256] = crc_table(8);

/// CRC-16/IBM-3740 of each 4-bit value, for two table lookups per byte (feature `small-crc`).
#[cfg(feature = "small-crc")]
static CRC_TABLE: [u16; 16] = crc_table(4);

/// CRC-16/IBM-3740 `crc` continued over byte `b`. The CRC is the low 16 bits; the upper ones
/// collect junk that never reaches the low ones (one masking instruction less per byte).
#[cfg(not(feature = "small-crc"))]
#[inline(always)]
fn crc_step(crc: u32, b: u8) -> u32 {
    (crc << 8) ^ CRC_TABLE[((crc >> 8) as u8 ^ b) as usize] as u32
}

/// CRC-16/IBM-3740 `crc` continued over byte `b`, a nibble at a time (feature `small-crc`). The
/// CRC is the low 16 bits, as above.
#[cfg(feature = "small-crc")]
#[inline(always)]
fn crc_step(crc: u32, b: u8) -> u32 {
    let crc = (crc << 4) ^ CRC_TABLE[((crc >> 12) ^ (b as u32 >> 4)) as usize & 0xF] as u32;
    (crc << 4) ^ CRC_TABLE[((crc >> 12) ^ b as u32) as usize & 0xF] as u32
}

impl<const F: usize> FrameBuilder<F> {
    const CHECK: () = {
        assert!(F >= 32 && F <= 65_535, "frames must be 32 to 65535 bytes");
        // The longest finished frame from position 1 (its first code, the raw bytes, the CRC, a
        // code per 254 data bytes, the delimiter: `CAP + 4 + (CAP + 2) / 254` bytes) ends within
        // the buffer: position 0 is free for the delimiter before it.
        assert!(
            Self::CAP + 5 + (Self::CAP + 2) / 254 <= F,
            "a frame and the delimiter before it fit the buffer"
        );
        assert!(
            Self::END + 1 + HOT_MAX <= F + SLACK,
            "unchecked bytes stay within the slack"
        );
    };
    /// Raw bytes (header and records) a frame holds: what is left of `F` after the delimiter, the
    /// CRC and an estimate of COBS's overhead (`2 + F / 254`, one more than its worst case
    /// `1 + (CAP + 2) / 254`: the byte that leaves free takes the delimiter a frame may be sent
    /// after, at position 0).
    const CAP: usize = capacity_of(F);
    /// The largest the cursor may be once a record is written.
    const END: usize = 2 + Self::CAP;
    /// Whether a COBS block can reach 254 data bytes: not in frames whose records end before
    /// byte 255 (the default 256-byte frames), which then never test for it.
    const LONG_BLOCKS: bool = 1 + Self::CAP + 2 >= 255;

    /// An empty builder (no frame).
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            buf: [0; F],
            slack: [core::mem::MaybeUninit::uninit(); SLACK],
            pos: 0,
            sent: 0,
            len: 0,
            start: 0,
        }
    }

    /// Most bytes of records one frame can hold (after a header of `header` bytes).
    pub const fn capacity(header: usize) -> usize {
        Self::CAP - header
    }

    /// Starts a new frame (dropping whatever was there).
    pub fn begin(&mut self) {
        self.begin_at(1);
    }

    /// [`begin`](Self::begin), for a frame handed out after a `0x00` delimiter of its own (a
    /// drain's first frame: see the wire format's "Delimiter before the first frame"). The
    /// delimiter takes no room from the frame's records.
    pub fn begin_after_delimiter(&mut self) {
        self.begin_at(0);
    }

    /// Starts a new frame handed out from position `start` (0: after the delimiter at position
    /// 0, which nothing ever writes).
    #[inline(always)]
    fn begin_at(&mut self, start: u8) {
        self.pos = 2;
        self.sent = start as usize;
        self.start = start;
        self.len = 0;
    }

    /// [`begin`](Self::begin), after a delimiter when no frame was finished yet (a drain's first
    /// frame: [`begin_after_delimiter`](Self::begin_after_delimiter)).
    #[inline(always)]
    pub(crate) fn begin_first_after_delimiter(&mut self) {
        // `len` is 0 until a frame is finished, and again only between `begin` and `finish`.
        self.begin_at((self.len != 0) as u8);
    }

    /// A point to roll back to.
    pub fn mark(&self) -> Mark {
        Mark { pos: self.pos }
    }

    /// Forgets everything written after `mark` (a mark of this frame: one of a larger frame is
    /// ignored, keeping the cursor within this frame's bounds).
    pub fn rollback(&mut self, mark: Mark) {
        debug_assert!(self.len == 0 && mark.pos <= self.pos);
        if mark.pos <= self.pos {
            self.pos = mark.pos;
        }
    }

    /// Raw bytes written so far (header and records).
    pub fn raw_len(&self) -> usize {
        self.pos.saturating_sub(2)
    }

    /// Where the next byte goes (changes with every byte written, and only then).
    #[inline(always)]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// A writer appending to the frame: what it writes becomes part of the frame when it is
    /// [`commit`](Writer::commit)ted.
    #[inline(always)]
    pub(crate) fn writer(&mut self) -> Writer<'_, F> {
        Writer {
            pos: self.pos,
            frame: self,
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, b: u8) -> Result<(), Full> {
        self.checked(|w| w.put(b))
    }

    /// Appends bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), Full> {
        self.checked(|w| w.put_bytes(b))
    }

    /// Appends a postcard varint.
    pub fn varint(&mut self, v: u64) -> Result<(), Full> {
        self.checked(|w| w.var64_c(v))
    }

    /// Writes with `write`; keeps nothing and fails if it did not fit.
    fn checked(&mut self, write: impl FnOnce(&mut Writer<'_, F>)) -> Result<(), Full> {
        let mut w = self.writer();
        write(&mut w);
        if w.fits() {
            w.commit();
            Ok(())
        } else {
            Err(Full)
        }
    }

    /// Computes and appends the CRC, does COBS in place (one pass), and adds the delimiter.
    /// Returns the frame (after the delimiter that precedes it, for a frame begun
    /// [`begin_after_delimiter`](Self::begin_after_delimiter)).
    #[inline(never)]
    pub fn finish(&mut self) -> &[u8] {
        let (mut code_at, crc, mut end) = if Self::LONG_BLOCKS {
            self.cobs_long(self.pos.max(2))
        } else {
            self.cobs(self.pos.max(2))
        };
        // The two CRC bytes (the capacity leaves room for them, the code slots and the
        // delimiter), then the last block's code and the delimiter.
        let [lo, hi] = (crc as u16).to_le_bytes();
        (code_at, end) = self.cobs_put(code_at, end, lo);
        (code_at, end) = self.cobs_put(code_at, end, hi);
        if Self::LONG_BLOCKS && end - code_at >= 255 {
            self.set(code_at, 0xFF);
            code_at = end;
            end += 1;
        }
        self.set(code_at, (end - code_at) as u8);
        self.set(end, 0);
        // At most `F` (the capacity sees to it), so it fits 16 bits.
        let len = (end + 1).min(F);
        self.len = len as u16;
        self.buf.get(self.sent..len).unwrap_or(&[])
    }

    /// Appends `b` at `end` to a frame being COBS-encoded whose open block's code slot is
    /// `code_at`; returns the new slot and end.
    #[inline(always)]
    fn cobs_put(&mut self, mut code_at: usize, mut end: usize, b: u8) -> (usize, usize) {
        if Self::LONG_BLOCKS && end - code_at >= 255 {
            self.set(code_at, 0xFF);
            code_at = end;
            end += 1;
        }
        if b == 0 {
            self.set(code_at, (end - code_at) as u8);
            code_at = end;
        }
        self.set(end, b);
        (code_at, end + 1)
    }

    /// Stores `b` at `i` (nothing past the buffer, which the capacity rules out).
    #[inline(always)]
    fn set(&mut self, i: usize, b: u8) {
        if let Some(slot) = self.buf.get_mut(i) {
            *slot = b;
        }
    }

    /// The CRC of the raw bytes `buf[2..end]`, and COBS over them when no block can be long:
    /// every zero byte becomes the code slot of the block it starts, and the slot it ends gets
    /// the block's length. Returns the open block's code slot, the CRC and the end of the bytes.
    #[inline(always)]
    fn cobs(&mut self, end: usize) -> (usize, u32, usize) {
        let mut crc: u32 = 0xFFFF;
        let mut code_at = 1;
        let body = self.buf.get_mut(..end).unwrap_or(&mut []);
        let mut i = 2;
        // An inner loop over the non-zero bytes, which leaves the open block's slot alone (so it
        // stays in its register).
        'frame: loop {
            loop {
                let Some(&b) = body.get(i) else {
                    break 'frame;
                };
                crc = crc_step(crc, b);
                if b == 0 {
                    break;
                }
                i += 1;
            }
            if let Some(code) = body.get_mut(code_at) {
                *code = (i - code_at) as u8;
            }
            code_at = i;
            i += 1;
        }
        (code_at, crc, end)
    }

    /// [`cobs`](Self::cobs) for frames whose blocks can reach 254 data bytes: such a block is
    /// closed (code `0xFF`, no zero implied) and the next one's code slot inserted after it,
    /// moving the rest of the frame by one.
    #[cold]
    #[inline(never)]
    fn cobs_long(&mut self, body_end: usize) -> (usize, u32, usize) {
        let mut crc: u32 = 0xFFFF;
        let mut code_at = 1;
        let mut i = 2;
        let mut end = body_end;
        while i < end {
            if i - code_at >= 255 {
                self.set(code_at, 0xFF);
                // Moved one by one: `copy_within` would link a general `memmove`.
                if let Some(tail) = self.buf.get_mut(i..=end) {
                    for k in (1..tail.len()).rev() {
                        tail[k] = tail[k - 1];
                    }
                }
                code_at = i;
                i += 1;
                end += 1;
                continue;
            }
            let b = self.buf.get(i).copied().unwrap_or(0);
            crc = crc_step(crc, b);
            if b == 0 {
                self.set(code_at, (i - code_at) as u8);
                code_at = i;
            }
            i += 1;
        }
        (code_at, crc, end)
    }

    /// Whether a finished frame has bytes not yet handed out.
    #[inline]
    pub(crate) fn has_unsent(&self) -> bool {
        self.sent < self.len as usize
    }

    /// The finished frame's bytes not yet handed out.
    #[inline]
    pub fn unsent(&self) -> &[u8] {
        // Not finished: `len` and `sent` are 0.
        self.buf.get(self.sent..self.len as usize).unwrap_or(&[])
    }

    /// Marks `n` more bytes as handed out.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.len as usize);
    }

    /// The first half of sending a partly sent frame again: only its delimiter is left unsent,
    /// which ends whatever part of the frame the link carried (the receiver drops that fragment
    /// as a bad frame). `false`, and nothing changes, when the frame was fully handed out.
    pub(crate) fn skip_to_delimiter(&mut self) -> bool {
        let unsent = self.has_unsent();
        if unsent {
            self.sent = self.len as usize - 1;
        }
        unsent
    }

    /// The second half: hands the whole finished frame out again (after its own delimiter too,
    /// when it was begun after one: the same bytes as the first time).
    pub(crate) fn rewind(&mut self) {
        self.sent = self.start as usize;
    }
}

/// Appends to a frame, keeping its position in a register: a record is written through one
/// writer, then [`commit`](Writer::commit)ted if it [`fits`](Writer::fits), or dropped.
pub(crate) struct Writer<'f, const F: usize> {
    frame: &'f mut FrameBuilder<F>,
    pos: usize,
}

impl<const F: usize> Writer<'_, F> {
    /// Whether everything written so far fits the frame.
    #[inline(always)]
    pub(crate) fn fits(&self) -> bool {
        self.pos <= FrameBuilder::<F>::END
    }

    /// Bytes that still fit the frame after what was written so far.
    pub(crate) fn room(&self) -> usize {
        FrameBuilder::<F>::END.saturating_sub(self.pos)
    }

    /// Raw bytes written through this writer.
    pub(crate) fn raw_written(&self) -> usize {
        self.pos - self.frame.pos
    }

    /// Makes what was written part of the frame (call it only when it [`fits`](Self::fits);
    /// otherwise nothing is kept, so the frame's cursor never passes its end: the unchecked bytes
    /// of [`put_hot`](Self::put_hot) rely on it. The callers test `fits` just before, so the
    /// compiler drops this test.)
    #[inline(always)]
    pub(crate) fn commit(self) {
        debug_assert!(self.fits());
        if self.fits() {
            self.frame.pos = self.pos;
        }
    }

    /// [`put_hot`](Self::put_hot) of a byte known not to be zero (COBS is done at the end).
    #[inline(always)]
    pub(crate) fn put_nz(&mut self, b: u8) {
        debug_assert!(b != 0);
        self.put_hot(b);
    }

    /// Writes any byte without testing for room: for the short records of the span path only,
    /// which store at most [`HOT_MAX`] such bytes after the writer is made or returns from
    /// [`call`](Self::call) (their checked writes all go through `call`).
    #[inline(always)]
    pub(crate) fn put_hot(&mut self, b: u8) {
        // A writer starts at `frame.pos`, at most `END` (`begin`, `commit` if it fits,
        // `rollback` to an earlier cursor); `call` returns at most `END + 1`. From there, at most
        // `HOT_MAX` bytes, so `pos < END + 1 + HOT_MAX <= F + SLACK` (`CHECK`).
        debug_assert!(
            self.pos < FrameBuilder::<F>::END + 1 + HOT_MAX,
            "more than HOT_MAX unchecked bytes"
        );
        let base = core::ptr::addr_of_mut!(*self.frame)
            .cast::<u8>()
            .wrapping_add(core::mem::offset_of!(FrameBuilder<F>, buf));
        // SAFETY: `base` is `buf`'s first byte, derived from the whole builder, whose `repr(C)`
        // puts the `SLACK` bytes of `slack` right after `buf`'s `F` (both are byte arrays, so no
        // padding between them): bytes `0..F + SLACK` from `base` are the builder's own, and
        // `pos < F + SLACK` (above: the debug assertion checks it in every test run, and
        // `hot_bytes_stay_in_the_slack` writes the longest run from the farthest start).
        unsafe { base.add(self.pos).write(b) };
        self.pos += 1;
    }

    /// Writes any byte (checked: nothing is stored beyond the buffer).
    #[inline(always)]
    pub(crate) fn put(&mut self, b: u8) {
        if let Some(slot) = self.frame.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
    }

    /// Calls `f` with a writer at this one's position, without taking this writer's address
    /// (which would keep its position in memory for the whole record): the rare or long paths of
    /// a hot encoder (a name's first definition, a long varint, a string sent inline) go through
    /// this, to functions of their own.
    ///
    /// A writer that `f` took past the frame's end comes back just after it: the record does not
    /// fit either way, and the next [`HOT_MAX`] unchecked bytes stay within the slack.
    #[inline(always)]
    pub(crate) fn call<A, R>(&mut self, f: for<'w> fn(&mut Writer<'w, F>, A) -> R, a: A) -> R {
        let mut w = Writer {
            pos: self.pos,
            frame: &mut *self.frame,
        };
        let r = f(&mut w, a);
        self.pos = w.pos.min(FrameBuilder::<F>::END + 1);
        r
    }

    /// [`put`](Self::put), out of line (for records that are not worth the code size: this
    /// takes the writer's address, so its position stays in memory in the caller).
    #[inline(never)]
    pub(crate) fn put_c(&mut self, b: u8) {
        self.put(b);
    }

    /// [`var32`](Self::var32), out of line (as [`put_c`](Self::put_c)).
    #[inline(never)]
    pub(crate) fn var32_c(&mut self, v: u32) {
        self.var32(v);
    }

    /// A varint of any `u64`, out of line (as [`put_c`](Self::put_c)).
    #[inline(never)]
    pub(crate) fn var64_c(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put(v as u8 | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    /// Writes bytes, out of line (as [`put_c`](Self::put_c)).
    #[inline(never)]
    pub(crate) fn put_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.put(b);
        }
    }

    /// Writes a varint of a value that fits 32 bits (no 64-bit arithmetic on 32-bit cores).
    #[inline(always)]
    pub(crate) fn var32(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.put(v as u8 | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    /// [`var32`](Self::var32) through [`put_hot`](Self::put_hot): at most 5 unchecked bytes.
    #[inline(always)]
    pub(crate) fn var32_hot(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.put_hot(v as u8 | 0x80);
            v >>= 7;
        }
        self.put_hot(v as u8);
    }

    /// Writes a varint: one that fits 32 bits through [`var32_hot`](Self::var32_hot) (at most 5
    /// unchecked bytes), a longer one checked, through [`call`](Self::call).
    #[inline(always)]
    pub(crate) fn var64_hot(&mut self, v: u64) {
        if v <= u32::MAX as u64 {
            self.var32_hot(v as u32);
        } else {
            self.call(|w, v| w.var64_c(v), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte table and the nibble table (feature `small-crc`) compute the frame CRC alike,
    /// whichever of them `crc_step` uses in this build.
    #[test]
    fn both_crc_tables_compute_the_crc() {
        let by_byte: [u16; 256] = crc_table(8);
        let by_nibble: [u16; 16] = crc_table(4);
        let data: Vec<u8> = (0..=255u8).chain([0, 0x80, 0xFF, 0x10]).collect();
        let (mut a, mut b, mut c) = (0xFFFFu32, 0xFFFFu32, 0xFFFFu32);
        for &x in &data {
            a = (a << 8) ^ by_byte[((a >> 8) as u8 ^ x) as usize] as u32;
            b = (b << 4) ^ by_nibble[((b >> 12) ^ (x as u32 >> 4)) as usize & 0xF] as u32;
            b = (b << 4) ^ by_nibble[((b >> 12) ^ x as u32) as usize & 0xF] as u32;
            c = crc_step(c, x);
            assert_eq!(a as u16, b as u16);
            assert_eq!(a as u16, c as u16);
        }
        assert_eq!(a as u16, crate::wire::CRC.checksum(&data));
    }

    fn roundtrip<const F: usize>(body: &[u8]) {
        let mut f: FrameBuilder<F> = FrameBuilder::new();
        f.begin();
        f.bytes(body).unwrap();
        let frame = f.finish().to_vec();
        assert_eq!(*frame.last().unwrap(), 0);
        assert!(!frame[..frame.len() - 1].contains(&0));
        assert!(frame.len() <= F);
        let mut decoded = frame[..frame.len() - 1].to_vec();
        let n = cobs::decode_in_place(&mut decoded).unwrap();
        let (data, crc) = decoded[..n].split_at(n - 2);
        assert_eq!(data, body);
        assert_eq!(
            u16::from_le_bytes([crc[0], crc[1]]),
            crate::wire::CRC.checksum(body)
        );
    }

    /// The frame as the previous encoder built it (raw bytes + CRC, then COBS in a second
    /// pass): the bytes on the wire must not change.
    fn reference(body: &[u8]) -> Vec<u8> {
        let mut raw = body.to_vec();
        raw.extend_from_slice(&crate::wire::CRC.checksum(body).to_le_bytes());
        let mut out = vec![0u8];
        let mut code_at = 0;
        let mut code: u8 = 1;
        for &byte in &raw {
            if byte == 0 {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            } else {
                out.push(byte);
                code += 1;
                if code == 0xFF {
                    out[code_at] = code;
                    code_at = out.len();
                    out.push(0);
                    code = 1;
                }
            }
        }
        out[code_at] = code;
        out.push(0);
        out
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "safe code over every size: run natively (Miri takes minutes)"
    )]
    fn online_cobs_matches_the_two_pass_encoder() {
        let cap = FrameBuilder::<1024>::capacity(0);
        let mut bodies: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0; 300]];
        for n in [252, 253, 254, 255, 256, 507, 508, 509, 510, cap] {
            bodies.push(vec![7; n]);
            let mut b = vec![7; n - 1];
            b.push(0);
            bodies.push(b);
        }
        for body in bodies {
            let mut f: FrameBuilder<1024> = FrameBuilder::new();
            f.begin();
            f.bytes(&body).unwrap();
            assert_eq!(f.finish(), &reference(&body)[..], "{}", body.len());
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "safe code over every size: run natively (Miri takes minutes)"
    )]
    fn in_place_cobs_roundtrips() {
        roundtrip::<64>(&[]);
        roundtrip::<64>(&[0]);
        roundtrip::<64>(&[1, 0, 2, 0, 0, 3]);
        let max = FrameBuilder::<600>::capacity(0);
        for fill in [0u8, 1, 0xFF] {
            roundtrip::<600>(&vec![fill; max]);
            roundtrip::<256>(&vec![fill; FrameBuilder::<256>::capacity(0)]);
            roundtrip::<300>(&vec![fill; FrameBuilder::<300>::capacity(0)]);
        }
        let pattern: Vec<u8> = (0..FrameBuilder::<1024>::capacity(0))
            .map(|i| (i % 251) as u8)
            .collect();
        roundtrip::<1024>(&pattern);
    }

    #[test]
    fn full_and_rollback() {
        let mut f: FrameBuilder<32> = FrameBuilder::new();
        f.begin();
        let cap = FrameBuilder::<32>::capacity(0);
        f.bytes(&vec![7; cap - 1]).unwrap();
        let m = f.mark();
        assert_eq!(f.bytes(&[1, 2]), Err(Full));
        f.u8(9).unwrap();
        assert_eq!(f.u8(1), Err(Full));
        f.rollback(m);
        assert_eq!(f.raw_len(), cap - 1);
    }

    /// The longest run of unchecked bytes from the farthest a writer can start (just after the
    /// end of a full frame, where `call` brings back a writer whose checked bytes ran past it, or
    /// a finished frame's cursor) stays within the slack (the debug assertion in `put_hot` checks
    /// it, and Miri the stores), and a record that does not fit leaves the frame as it was.
    #[test]
    fn hot_bytes_stay_in_the_slack() {
        fn check<const F: usize>() {
            let cap = FrameBuilder::<F>::capacity(0);
            let body: Vec<u8> = (0..cap).map(|i| (i % 7) as u8).collect();
            for long in [0, 1, 5, 40, 300] {
                let mut f: Box<FrameBuilder<F>> = Box::default();
                f.begin();
                f.bytes(&body).unwrap();
                let mut w = f.writer();
                w.call(
                    |w, n: usize| {
                        for _ in 0..n {
                            w.put_c(0xAB);
                        }
                    },
                    long,
                );
                for _ in 0..HOT_MAX {
                    w.put_hot(0xCD);
                }
                assert!(!w.fits());
                assert_eq!(f.raw_len(), cap);
                assert_eq!(f.finish(), &reference(&body)[..], "F {F}, long {long}");
                // A finished frame's cursor stays where the records ended.
                let mut w = f.writer();
                for _ in 0..HOT_MAX {
                    w.put_hot(0xEF);
                }
            }
        }
        check::<32>();
        check::<256>();
        check::<300>();
        check::<1024>();
    }

    proptest::proptest! {
        /// Records written byte by byte, some rolled back (as when one does not fit): the frame
        /// is the two-pass encoding of the records kept.
        #[test]
        #[cfg_attr(miri, ignore = "safe code over every size: run natively (Miri takes minutes)")]
        fn records_with_rollbacks_match_the_two_pass_encoder(
            records in proptest::collection::vec(
                (proptest::collection::vec(proptest::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::any::<u8>(), 1u8..], 0..300), proptest::prelude::any::<bool>()),
                0..12,
            )
        ) {
            let mut f: Box<FrameBuilder<700>> = Box::default();
            f.begin();
            let mut kept = Vec::new();
            for (rec, keep) in &records {
                let mut w = f.writer();
                w.put_bytes(rec);
                if w.fits() && *keep {
                    w.commit();
                    kept.extend_from_slice(rec);
                }
                proptest::prop_assert_eq!(f.raw_len(), kept.len());
            }
            proptest::prop_assert_eq!(f.finish(), &reference(&kept)[..]);
        }

        #[test]
        #[cfg_attr(miri, ignore = "safe code over every size: run natively (Miri takes minutes)")]
        fn any_body_roundtrips(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..FrameBuilder::<700>::capacity(0))) {
            roundtrip::<700>(&body);
        }
    }
}
