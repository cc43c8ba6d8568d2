//! Building one frame on the device: header, records, CRC, COBS, delimiter, in one buffer and in
//! one pass.
//!
//! Each byte is handled once, when it is written: its CRC is updated (one table lookup) and COBS is
//! done on the fly. The buffer starts with the first block's code slot; non-zero bytes go straight
//! to their final place, and a zero byte becomes the code slot of the next block (the block it ends
//! gets its length written into its own slot), so nothing is moved or scanned again afterwards.
//! Only a run of 254 non-zero bytes needs a code slot inserted (a block holds at most 254 data
//! bytes), which moves the bytes written after it by one: frames of up to 256 bytes rarely meet
//! one. [`finish`](FrameBuilder::finish) appends the CRC, closes the last block and adds the
//! delimiter. A frame costs `F` bytes of RAM and no second buffer, and the finished frame is one
//! contiguous slice, ready for a DMA transfer or an RTT write.
//!
//! The drain writes a record through a writer (crate-private), which keeps the frame's position
//! and CRC in registers and does not fail byte by byte: bytes beyond the buffer are not stored,
//! and once the record is written, the writer says whether it fit and is committed only then (a
//! record that does not fit leaves the frame as it was). So room is checked once per record.

use super::varint;

/// Not enough room left in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A point to roll a frame back to ([`FrameBuilder::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pos: usize,
    code_at: usize,
    end: usize,
    crc: u32,
}

/// A frame buffer of `F` bytes (the largest frame on the wire, delimiter included).
#[repr(C)]
pub struct FrameBuilder<const F: usize> {
    /// While building: where the next byte goes. When finished: the encoded length.
    pos: usize,
    /// While building: the code slot of the open COBS block (its data bytes follow it).
    code_at: usize,
    /// While building: the largest `pos` may be (the raw capacity, plus one for the first code
    /// slot and one per code slot inserted after a run of 254 non-zero bytes).
    end: usize,
    /// While building: the CRC of the raw bytes so far (its upper half holds junk, see [`crc_step`]).
    crc: u32,
    /// When finished: bytes already handed out.
    sent: usize,
    finished: bool,
    buf: [u8; F],
}

impl<const F: usize> Default for FrameBuilder<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-16/IBM-3740 (see [`super::CRC`]) of each byte value, for one table lookup per byte.
static CRC_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut b = 0;
        while b < 8 {
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
};

/// CRC-16/IBM-3740 `crc` continued over byte `b`. The CRC is the low 16 bits; the upper ones
/// collect junk that never reaches the low ones (one masking instruction less per byte).
#[inline(always)]
fn crc_step(crc: u32, b: u8) -> u32 {
    (crc << 8) ^ CRC_TABLE[((crc >> 8) as u8 ^ b) as usize] as u32
}

impl<const F: usize> FrameBuilder<F> {
    const CHECK: () = assert!(F >= 32 && F <= 65_535, "frames must be 32 to 65535 bytes");
    /// Raw bytes (header and records) a frame holds: what is left of `F` after the delimiter, the
    /// CRC and COBS's worst-case overhead (`2 + F / 254`).
    const CAP: usize = F - 3 - (2 + F / 254);
    /// Whether a COBS block can reach 254 data bytes: not in frames whose records end before
    /// byte 255 (the default 256-byte frames), which then never test for it.
    const LONG_BLOCKS: bool = 1 + Self::CAP + 2 >= 255;

    /// An empty builder (no frame).
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            buf: [0; F],
            pos: 0,
            code_at: 0,
            end: 0,
            crc: 0,
            sent: 0,
            finished: false,
        }
    }

    /// Most bytes of records one frame can hold (after a header of `header` bytes).
    pub const fn capacity(header: usize) -> usize {
        Self::CAP - header
    }

    /// Starts a new frame (dropping whatever was there).
    pub fn begin(&mut self) {
        self.pos = 1;
        self.code_at = 0;
        self.end = 1 + Self::CAP;
        self.crc = 0xFFFF;
        self.sent = 0;
        self.finished = false;
    }

    /// A point to roll back to.
    pub fn mark(&self) -> Mark {
        Mark {
            pos: self.pos,
            code_at: self.code_at,
            end: self.end,
            crc: self.crc,
        }
    }

    /// Forgets everything written after `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        debug_assert!(!self.finished && mark.pos <= self.pos);
        self.pos = mark.pos;
        self.code_at = mark.code_at;
        self.end = mark.end;
        self.crc = mark.crc;
    }

    /// Raw bytes written so far (header and records).
    pub fn raw_len(&self) -> usize {
        (self.pos + Self::CAP).saturating_sub(self.end)
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
            code_at: self.code_at,
            end: self.end,
            crc: self.crc,
            frame: self,
        }
    }

    /// COBS ends a block after 254 data bytes (code `0xFF`, no zero implied): gives every such
    /// run in the open block its own code slot, moving the bytes after it by one.
    #[cold]
    #[inline(never)]
    fn split_long_block(&mut self) {
        while self.pos - self.code_at >= 255 {
            if let Some(code) = self.buf.get_mut(self.code_at) {
                *code = 0xFF;
            }
            let at = self.code_at + 255;
            // Bytes past the buffer belong to a record that does not fit (`pos - end` does not
            // change here, so it still does not): nothing to move then.
            if let Some(tail) = self.buf.get_mut(at..=self.pos) {
                for i in (1..tail.len()).rev() {
                    tail[i] = tail[i - 1];
                }
            }
            self.code_at = at;
            self.pos += 1;
            self.end += 1;
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
        self.checked(|w| w.var64(v))
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

    /// Appends the CRC, closes the last COBS block and adds the delimiter. Returns the frame.
    #[inline(never)]
    pub fn finish(&mut self) -> &[u8] {
        let [lo, hi] = (self.crc as u16).to_le_bytes();
        // The capacity leaves room for the two CRC bytes, the code slots and the delimiter.
        let mut w = self.writer();
        w.put(lo);
        w.put(hi);
        w.commit();
        let len = self.pos - self.code_at;
        if let Some(code) = self.buf.get_mut(self.code_at) {
            *code = len as u8;
        }
        if let Some(delimiter) = self.buf.get_mut(self.pos) {
            *delimiter = 0;
        }
        self.pos += 1;
        self.finished = true;
        self.buf.get(..self.pos).unwrap_or(&[])
    }

    /// Whether a finished frame has bytes not yet handed out.
    #[inline]
    pub(crate) fn has_unsent(&self) -> bool {
        self.finished && self.sent < self.pos
    }

    /// The finished frame's bytes not yet handed out.
    #[inline]
    pub fn unsent(&self) -> &[u8] {
        if self.finished {
            self.buf.get(self.sent..self.pos).unwrap_or(&[])
        } else {
            &[]
        }
    }

    /// Marks `n` more bytes as handed out.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        if self.finished {
            self.sent = (self.sent + n).min(self.pos);
        }
    }
}

/// Appends to a frame, keeping its position and CRC in registers: a record is written through one
/// writer, then [`commit`](Writer::commit)ted if it [`fits`](Writer::fits), or dropped.
pub(crate) struct Writer<'f, const F: usize> {
    frame: &'f mut FrameBuilder<F>,
    pos: usize,
    code_at: usize,
    end: usize,
    crc: u32,
}

impl<const F: usize> Writer<'_, F> {
    /// Whether everything written so far fits the frame.
    #[inline(always)]
    pub(crate) fn fits(&self) -> bool {
        self.pos <= self.end
    }

    /// Raw bytes written through this writer.
    pub(crate) fn raw_written(&self) -> usize {
        (self.pos - self.frame.pos) - (self.end - self.frame.end)
    }

    /// Makes what was written part of the frame (call it only when it [`fits`](Self::fits); the
    /// CRC that [`FrameBuilder::finish`] appends goes beyond the records' capacity, into the room
    /// kept for it).
    #[inline(always)]
    pub(crate) fn commit(self) {
        self.frame.pos = self.pos;
        self.frame.code_at = self.code_at;
        self.frame.end = self.end;
        self.frame.crc = self.crc;
        // Close a block that reached 254 data bytes now, so that nothing written later (and
        // perhaps not kept) has to insert a code slot before the committed bytes.
        if FrameBuilder::<F>::LONG_BLOCKS && self.pos - self.code_at >= 255 {
            self.frame.split_long_block();
        }
    }

    /// Writes a byte known not to be zero.
    #[inline(always)]
    pub(crate) fn put_nz(&mut self, b: u8) {
        debug_assert!(b != 0);
        if let Some(slot) = self.frame.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
        self.crc = crc_step(self.crc, b);
    }

    /// Writes any byte.
    #[inline(always)]
    pub(crate) fn put(&mut self, b: u8) {
        if b == 0 {
            self.zero();
        } else {
            self.put_nz(b);
        }
    }

    /// A zero byte: it ends the open COBS block, and its place becomes the next block's code slot.
    #[inline(always)]
    fn zero(&mut self) {
        // Without long blocks, a block this long holds bytes past the end of the frame, which
        // are dropped anyway (its code byte may then be wrong: nobody reads it).
        if FrameBuilder::<F>::LONG_BLOCKS && self.pos - self.code_at >= 255 {
            self.split_long_block();
        }
        let len = self.pos - self.code_at;
        if let Some(code) = self.frame.buf.get_mut(self.code_at) {
            *code = len as u8;
        }
        self.code_at = self.pos;
        self.pos += 1;
        self.crc = crc_step(self.crc, 0);
    }

    /// Calls `f(writer, a)` out of line without taking this writer's address (which would keep
    /// its position and CRC in memory for the whole record): the rare paths of a hot encoder (a
    /// name's first definition, a long varint, a string sent inline) go through this.
    #[inline(always)]
    pub(crate) fn call<A>(&mut self, f: for<'w> fn(&mut Writer<'w, F>, A), a: A) {
        let cursor = (self.pos, self.code_at, self.end, self.crc);
        (self.pos, self.code_at, self.end, self.crc) = call_out(self.frame, cursor, f, a);
    }

    /// [`FrameBuilder::split_long_block`] on the writer's bytes. It writes the open block's code
    /// slot (which is written again whenever the block is closed) and moves only bytes written
    /// after the last commit (a committed block is never 254 bytes long: `commit` splits it), so a
    /// writer that is dropped leaves the frame's kept bytes as they were.
    #[cold]
    fn split_long_block(&mut self) {
        self.call(|w, ()| w.split_long_block_in(), ());
    }

    fn split_long_block_in(&mut self) {
        let (pos, code_at, end) = (self.frame.pos, self.frame.code_at, self.frame.end);
        self.frame.pos = self.pos;
        self.frame.code_at = self.code_at;
        self.frame.end = self.end;
        self.frame.split_long_block();
        self.pos = core::mem::replace(&mut self.frame.pos, pos);
        self.code_at = core::mem::replace(&mut self.frame.code_at, code_at);
        self.end = core::mem::replace(&mut self.frame.end, end);
    }

    /// [`put`](Self::put), out of line (for records that are not worth the code size).
    #[inline(never)]
    pub(crate) fn put_c(&mut self, b: u8) {
        self.put(b);
    }

    /// [`var32`](Self::var32), out of line.
    #[inline(never)]
    pub(crate) fn var32_c(&mut self, v: u32) {
        self.var32(v);
    }

    /// [`var64`](Self::var64), out of line.
    #[inline(never)]
    pub(crate) fn var64_c(&mut self, v: u64) {
        self.var64(v);
    }

    /// Writes bytes.
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
            self.put_nz(v as u8 | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    /// Writes a varint.
    #[inline(always)]
    pub(crate) fn var64(&mut self, v: u64) {
        if v <= u32::MAX as u64 {
            self.var32(v as u32);
        } else {
            self.call(|w, v| w.var64_long(v), v);
        }
    }

    fn var64_long(&mut self, v: u64) {
        let mut tmp = [0u8; varint::MAX_U64];
        let n = varint::encode_u64(v, &mut tmp).unwrap_or(0);
        // Every byte of a varint but a lone zero is non-zero; `v` > u32::MAX here.
        for &b in tmp.iter().take(n) {
            self.put_nz(b);
        }
    }
}

/// The out-of-line half of [`Writer::call`]: a writer rebuilt from the cursor, and its cursor
/// after `f`.
#[inline(never)]
fn call_out<const F: usize, A>(
    frame: &mut FrameBuilder<F>,
    (pos, code_at, end, crc): (usize, usize, usize, u32),
    f: for<'w> fn(&mut Writer<'w, F>, A),
    a: A,
) -> (usize, usize, usize, u32) {
    let mut w = Writer {
        frame,
        pos,
        code_at,
        end,
        crc,
    };
    f(&mut w, a);
    (w.pos, w.code_at, w.end, w.crc)
}

#[cfg(test)]
mod tests {
    use super::*;

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
