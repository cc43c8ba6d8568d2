//! Building one frame on the device: header, records, CRC, COBS, delimiter, in one buffer.
//!
//! Records are written raw into the buffer at an offset of `2 + F / 254` bytes; when the frame is
//! finished the CRC is appended and the whole body is COBS-encoded forwards in place (the encoded
//! bytes never overtake the raw ones, since COBS adds at most one byte per 254), so a frame costs
//! `F` bytes of RAM and no second buffer. The finished frame is one contiguous slice, ready for a
//! DMA transfer or an RTT write.

use super::varint;

/// Not enough room left in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A frame buffer of `F` bytes (the largest frame on the wire, delimiter included).
pub struct FrameBuilder<const F: usize> {
    buf: [u8; F],
    /// While building: the next raw byte's index. When finished: the encoded length.
    pos: usize,
    /// When finished: bytes already handed out.
    sent: usize,
    finished: bool,
}

impl<const F: usize> Default for FrameBuilder<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const F: usize> FrameBuilder<F> {
    const CHECK: () = assert!(F >= 32 && F <= 65_535, "frames must be 32 to 65535 bytes");
    /// Where raw bytes start: room for COBS's overhead ahead of them.
    const OFF: usize = 2 + F / 254;
    /// Where raw records must end: the CRC and the delimiter come after.
    const END: usize = F - 3;

    /// An empty builder (no frame).
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            buf: [0; F],
            pos: 0,
            sent: 0,
            finished: false,
        }
    }

    /// Most bytes of records one frame can hold (after a header of `header` bytes).
    pub const fn capacity(header: usize) -> usize {
        Self::END - Self::OFF - header
    }

    /// Starts a new frame (dropping whatever was there).
    pub fn begin(&mut self) {
        self.pos = Self::OFF;
        self.sent = 0;
        self.finished = false;
    }

    /// A point to roll back to.
    pub fn mark(&self) -> usize {
        self.pos
    }

    /// Forgets everything written after `mark`.
    pub fn rollback(&mut self, mark: usize) {
        debug_assert!(!self.finished && mark >= Self::OFF && mark <= self.pos);
        self.pos = mark;
    }

    /// Raw bytes written so far (header and records).
    pub fn raw_len(&self) -> usize {
        self.pos.saturating_sub(Self::OFF)
    }

    /// Appends one byte.
    #[inline]
    pub fn u8(&mut self, b: u8) -> Result<(), Full> {
        if self.pos >= Self::END {
            return Err(Full);
        }
        self.buf[self.pos] = b;
        self.pos += 1;
        Ok(())
    }

    /// Appends bytes.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), Full> {
        let end = self.pos + b.len();
        if end > Self::END {
            return Err(Full);
        }
        self.buf[self.pos..end].copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// Appends a postcard varint.
    #[inline]
    pub fn varint(&mut self, v: u64) -> Result<(), Full> {
        if v < 0x80 {
            // The common case (names, small deltas) in one byte.
            return self.u8(v as u8);
        }
        if v <= u32::MAX as u64 {
            return self.varint32(v as u32);
        }
        let n = varint::encode_u64(v, &mut self.buf[self.pos..Self::END]).ok_or(Full)?;
        self.pos += n;
        Ok(())
    }

    /// Appends a varint of a value that fits 32 bits (no 64-bit arithmetic on 32-bit cores).
    #[inline]
    fn varint32(&mut self, mut v: u32) -> Result<(), Full> {
        let mut i = self.pos;
        loop {
            if i >= Self::END {
                return Err(Full);
            }
            if v < 0x80 {
                self.buf[i] = v as u8;
                self.pos = i + 1;
                return Ok(());
            }
            self.buf[i] = (v as u8) | 0x80;
            v >>= 7;
            i += 1;
        }
    }

    /// Appends the CRC, COBS-encodes in place and adds the delimiter. Returns the frame.
    pub fn finish(&mut self) -> &[u8] {
        let crc = super::CRC.checksum(&self.buf[Self::OFF..self.pos]);
        // `END` leaves room for the two CRC bytes and the delimiter.
        self.buf[self.pos..self.pos + 2].copy_from_slice(&crc.to_le_bytes());
        let raw_end = self.pos + 2;
        // Forward in-place COBS: `code_at` is where the current block's code byte goes, `dest`
        // where the next data byte goes. `dest <= src` throughout (one code byte per zero or per
        // 254 data bytes, and `OFF` leaves room for all of them), so no unread byte is
        // overwritten. Written out rather than through `cobs::EncoderState` because the
        // per-byte state machine costs several times more instructions on a Cortex-M.
        let mut code_at = 0;
        let mut dest = 1;
        let mut code: u8 = 1;
        for src in Self::OFF..raw_end {
            let byte = self.buf[src];
            if byte == 0 {
                self.buf[code_at] = code;
                code_at = dest;
                dest += 1;
                code = 1;
            } else {
                self.buf[dest] = byte;
                dest += 1;
                code += 1;
                if code == 0xFF {
                    self.buf[code_at] = code;
                    code_at = dest;
                    dest += 1;
                    code = 1;
                }
            }
        }
        self.buf[code_at] = code;
        self.buf[dest] = 0;
        self.pos = dest + 1;
        self.finished = true;
        &self.buf[..self.pos]
    }

    /// The finished frame's bytes not yet handed out.
    pub fn unsent(&self) -> &[u8] {
        if self.finished {
            &self.buf[self.sent..self.pos]
        } else {
            &[]
        }
    }

    /// Marks `n` more bytes as handed out.
    pub fn consume(&mut self, n: usize) {
        if self.finished {
            self.sent = (self.sent + n).min(self.pos);
        }
    }
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

    #[test]
    fn in_place_cobs_roundtrips() {
        roundtrip::<64>(&[]);
        roundtrip::<64>(&[0]);
        roundtrip::<64>(&[1, 0, 2, 0, 0, 3]);
        let max = FrameBuilder::<600>::capacity(0);
        for fill in [0u8, 1, 0xFF] {
            roundtrip::<600>(&vec![fill; max]);
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
        #[test]
        fn any_body_roundtrips(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..FrameBuilder::<700>::capacity(0))) {
            roundtrip::<700>(&body);
        }
    }
}
