//! The drain: the single consumer of the ring, which turns ring records into wire frames.
//!
//! All the encoding work the record path skips happens here: time extension and deltas, id deltas,
//! string interning, packing common records into one tag byte, framing (CRC-16 + COBS). The drain
//! hands out each finished frame as one contiguous slice ([`Drain::fill_buf`]) and is told how much
//! of it was sent ([`Drain::consume`]), so a blocking UART, a non-blocking UART interrupt, a DMA
//! transfer or an RTT up-channel can all drive it. A frame is only built when the previous one has
//! been fully consumed; what the transport cannot take stays in the ring (and, when the ring fills,
//! new records are dropped and counted, never old ones silently lost).
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, Session::new("svc"));
//! let mut drain: Drain<'_, 128> = Drain::new(&TRACER).expect("one drain per tracer");
//! TRACER.root("work").finish();
//! let mut wire = Vec::new();
//! loop {
//!     let bytes = drain.fill_buf();
//!     if bytes.is_empty() { break }
//!     let n = bytes.len().min(7); // a transport that takes 7 bytes at a time
//!     wire.extend_from_slice(&bytes[..n]);
//!     drain.consume(n);
//! }
//! assert_eq!(wire.last(), Some(&0));
//! ```

use crate::clock::{Clock, TickExtender};
use crate::record::{self, Reader};
use crate::ring::Header;
use crate::tracer::{Losses, Tracer};
use crate::wire::frame::{FrameBuilder, Full};
use crate::wire::{self, ext, start_flags, tag, vtype, Capacities, Hello, WallClock};

/// Default frames per epoch.
pub const DEFAULT_EPOCH_FRAMES: u16 = 64;

/// String interning: static strings (by address and length) get small ids, announced once per
/// epoch. Open addressing over `N` slots (a power of two), filled to three quarters at most.
struct Interner<const N: usize> {
    keys: [(usize, u32); N],
    len: usize,
    slots: [u8; N],
    /// Entries added by the record being encoded, removed again if it does not fit.
    pending_from: usize,
}

impl<const N: usize> Interner<N> {
    const CHECK: () = assert!(
        N.is_power_of_two() && N >= 4 && N <= 256,
        "NAMES must be a power of two from 4 to 256"
    );
    const LIMIT: usize = N - N / 4;

    const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            keys: [(0, 0); N],
            len: 0,
            slots: [0; N],
            pending_from: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.pending_from = 0;
        self.slots = [0; N];
    }

    /// A 32-bit multiplicative hash (a 64-bit multiply is a library call on Cortex-M0).
    #[inline]
    fn slot_of(addr: usize, len: u32) -> usize {
        let a = addr as u64;
        let folded = (a as u32) ^ ((a >> 32) as u32) ^ len.rotate_left(16);
        (folded.wrapping_mul(0x9E37_79B9) >> 16) as usize & (N - 1)
    }

    /// The id of `s`, if interned.
    #[inline]
    fn find(&self, s: &'static str) -> Option<u32> {
        let key = (s.as_ptr() as usize, s.len() as u32);
        let mut i = Self::slot_of(key.0, key.1);
        loop {
            match self.slots[i] {
                0 => return None,
                id_plus_1 if self.keys[id_plus_1 as usize - 1] == key => {
                    return Some(id_plus_1 as u32 - 1)
                }
                _ => i = (i + 1) & (N - 1),
            }
        }
    }

    /// `Ok(id)` if known; `Err(Some(id))` if newly added (the caller must define it);
    /// `Err(None)` if the table is full (send the string inline).
    #[inline]
    fn lookup(&mut self, s: &'static str) -> Result<u32, Option<u32>> {
        let key = (s.as_ptr() as usize, s.len() as u32);
        let mut i = Self::slot_of(key.0, key.1);
        loop {
            match self.slots[i] {
                0 => break,
                id_plus_1 => {
                    if self.keys[id_plus_1 as usize - 1] == key {
                        return Ok(id_plus_1 as u32 - 1);
                    }
                }
            }
            i = (i + 1) & (N - 1);
        }
        if self.len >= Self::LIMIT {
            return Err(None);
        }
        let id = self.len;
        self.keys[id] = key;
        self.slots[i] = id as u8 + 1;
        self.len += 1;
        Err(Some(id as u32))
    }

    /// Entries added from now on belong to one record.
    fn begin_record(&mut self) {
        self.pending_from = self.len;
    }

    /// The record did not fit: forget the entries it added.
    fn abort_record(&mut self) {
        if self.pending_from == self.len {
            return;
        }
        self.len = self.pending_from;
        self.slots = [0; N];
        for id in 0..self.len {
            let (addr, len) = self.keys[id];
            let mut i = Self::slot_of(addr, len);
            while self.slots[i] != 0 {
                i = (i + 1) & (N - 1);
            }
            self.slots[i] = id as u8 + 1;
        }
    }
}

/// Delta state, restarting at every frame (each frame carries its base).
#[derive(Clone, Copy)]
struct FrameState {
    /// Id of the most recent span start (deltas are taken against it).
    last_start: u32,
    /// Running time (extended ticks).
    last_time: u64,
    /// The span a short tag record applies to.
    subject: u32,
    /// Id of the first span started in this frame, if any.
    first_start: Option<u32>,
    /// The clock extension.
    ext: TickExtender,
}

/// Frames and counters of a drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DrainStats {
    /// Frames built.
    pub frames: u32,
    /// Bytes of finished frames.
    pub bytes: u64,
    /// Ring records encoded.
    pub records: u32,
    /// Records dropped by the drain because they could not fit an empty frame.
    pub oversize: u32,
}

/// The single consumer of a tracer's ring, producing wire frames of at most `F` bytes and
/// interning up to `NAMES * 3 / 4` strings per epoch.
pub struct Drain<'a, const F: usize = 256, const NAMES: usize = 64> {
    tracer: &'a Tracer<'a, dyn Clock + 'a>,
    frame: FrameBuilder<F>,
    names: Interner<NAMES>,
    state: FrameState,
    seq: u16,
    epoch_frames: u16,
    drops_sent: Option<u32>,
    wall_clock: Option<WallClock>,
    wall_clock_due: bool,
    /// A record did not fit beside the session records: the next frame leaves out the optional
    /// ones (drops, wall clock: they stay due) so the record is sure to get its turn.
    record_waiting: bool,
    stats: DrainStats,
    /// Where the records' static strings live (this program, or a post-mortem image).
    strings: record::Strings<'a>,
}

/// Why a record was not encoded into the current frame.
enum Skip {
    /// No room left: try again in the next frame.
    Full,
}

impl From<Full> for Skip {
    fn from(_: Full) -> Self {
        Skip::Full
    }
}

impl<'a, const F: usize, const NAMES: usize> Drain<'a, F, NAMES> {
    /// The drain of `tracer`'s ring; `None` if another drain of it exists (there is one consumer).
    pub fn new(tracer: &'a Tracer<'a, dyn Clock + 'a>) -> Option<Self> {
        if !tracer.ring.take_consumer() {
            return None;
        }
        let now = tracer.clock.now();
        let ext = TickExtender::new(now);
        Some(Self {
            tracer,
            frame: FrameBuilder::new(),
            names: Interner::new(),
            state: FrameState {
                last_start: 0,
                last_time: ext.last(),
                subject: 0,
                first_start: None,
                ext,
            },
            seq: 0,
            epoch_frames: DEFAULT_EPOCH_FRAMES,
            drops_sent: None,
            wall_clock: None,
            wall_clock_due: false,
            record_waiting: false,
            stats: DrainStats::default(),
            strings: record::Strings::Native,
        })
    }

    /// Sets the frames per epoch (rounded up to a power of two, at least 2): names are
    /// re-announced and the session record re-sent that often, bounding how long a decoder that
    /// joins mid-stream waits.
    pub fn set_epoch_frames(&mut self, frames: u16) {
        self.epoch_frames = frames.max(2).checked_next_power_of_two().unwrap_or(1 << 15);
    }

    /// Tells the decoder the device's real time now (nanoseconds since the Unix epoch), for a
    /// device with an RTC or network time. Sent in the next frame and in every session record.
    pub fn set_wall_clock(&mut self, unix_nanos: u64) {
        let ticks = self.state.ext.extend(self.tracer.clock.now());
        self.wall_clock = Some(WallClock { ticks, unix_nanos });
        self.wall_clock_due = true;
    }

    /// Post-mortem replay: the ring holds a 32-bit target's records, whose static strings are
    /// resolved through `strings`.
    #[cfg(feature = "std")]
    pub(crate) fn set_target_strings(&mut self, strings: &'a dyn crate::postmortem::ResolveStr) {
        self.strings = record::Strings::Target(strings);
    }

    /// Counters.
    pub fn stats(&self) -> DrainStats {
        self.stats
    }

    /// Bytes ready to send: the rest of the current frame, or a new frame built from the ring.
    /// Empty when there is nothing to send.
    pub fn fill_buf(&mut self) -> &[u8] {
        if self.frame.unsent().is_empty() {
            self.build();
        }
        self.frame.unsent()
    }

    /// Marks the first `n` bytes of the last [`fill_buf`](Self::fill_buf) as sent.
    pub fn consume(&mut self, n: usize) {
        self.frame.consume(n);
    }

    /// `true` when the ring holds records, or a frame is partly sent.
    pub fn has_pending(&self) -> bool {
        !self.frame.unsent().is_empty() || self.tracer.ring.ready()
    }

    /// Hands bytes to `send` until it takes none or nothing is left; returns the bytes sent. `send`
    /// returns how many bytes of the slice it took (0 when it cannot take more now).
    pub fn drain_with(&mut self, mut send: impl FnMut(&[u8]) -> usize) -> usize {
        let mut total = 0;
        loop {
            let bytes = self.fill_buf();
            if bytes.is_empty() {
                return total;
            }
            let n = send(bytes).min(bytes.len());
            if n == 0 {
                return total;
            }
            self.consume(n);
            total += n;
        }
    }

    fn hello(&mut self) -> Hello<'a> {
        let t = self.tracer;
        Hello {
            service: t.session.service,
            device_id: t.session.device_id,
            boot_id: t.boot_id(),
            ticks_per_second: t.clock.ticks_per_second(),
            now_ticks: self.state.ext.extend(t.clock.now()),
            epoch_frames: self.epoch_frames,
            capacities: Capacities {
                tags_per_span: crate::config::MAX_TAGS_PER_SPAN as u16,
                fields_per_log: crate::config::MAX_FIELDS_PER_LOG as u16,
                str_len: crate::config::MAX_STR_LEN as u16,
                baggage_value_len: crate::config::MAX_BAGGAGE_VALUE_LEN as u16,
                frame_max: F as u16,
                ring_words: t.ring.capacity(),
            },
            firmware_version: t.session.firmware_version,
            microspan_version: crate::VERSION,
            wall_clock: self.wall_clock,
        }
    }

    /// Builds the next frame if there is anything to say.
    fn build(&mut self) {
        let ring = self.tracer.ring;
        let drops = ring.dropped();
        let epoch_start = self.seq & (self.epoch_frames - 1) == 0;
        let drops_due = self.drops_sent.unwrap_or(0) != drops;
        if !ring.ready() && !drops_due && !self.wall_clock_due {
            // Idle: keep the tick extension fresh so a wrapping counter is followed.
            self.state.ext.extend(self.tracer.clock.now());
            return;
        }
        if epoch_start {
            self.names.clear();
        }
        self.frame.begin();
        let Ok(session_records) = self.write_header(epoch_start, drops) else {
            // Cannot happen with F >= 32 and a session record of reasonable size; send nothing
            // rather than a broken frame.
            return;
        };
        let content_start = self.frame.mark();
        while let Some((pos, h)) = ring.peek() {
            let mark = self.frame.mark();
            let saved = self.state;
            self.names.begin_record();
            match self.encode(pos, h) {
                Ok(()) => {
                    ring.release(h.len());
                    self.stats.records += 1;
                }
                Err(Skip::Full) => {
                    self.frame.rollback(mark);
                    self.state = saved;
                    self.names.abort_record();
                    if mark == content_start && session_records {
                        // It did not fit beside the session records: the next frame carries
                        // none it can leave out (and is not an epoch start, as epochs are at
                        // least two frames long), so the record gets an empty frame.
                        self.record_waiting = true;
                        ring.unpin();
                        break;
                    }
                    if mark == content_start {
                        // Larger than an empty frame: drop it, counted like a full ring.
                        ring.release(h.len());
                        ring.count_drop();
                        self.stats.oversize += 1;
                        continue;
                    }
                    ring.unpin();
                    break;
                }
            }
        }
        let len = self.frame.finish().len();
        self.seq = self.seq.wrapping_add(1);
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
    }

    /// Writes the frame header and the session records due; returns whether any session record
    /// (hello, drops, wall clock) was written.
    fn write_header(&mut self, epoch_start: bool, drops: u32) -> Result<bool, Full> {
        let f = &mut self.frame;
        f.u8(wire::WIRE_VERSION)?;
        f.bytes(&self.seq.to_le_bytes())?;
        f.varint(self.state.last_start as u64)?;
        f.varint(self.state.last_time)?;
        self.state.subject = self.state.last_start;
        self.state.first_start = None;
        let mut session_records = false;
        if epoch_start {
            session_records = true;
            let mut hello = self.hello();
            let mut tmp = [0u8; 160];
            let mark = self.frame.mark();
            let mut written = false;
            // A small frame may not hold the session record with long names: shorten the free-text
            // fields until it fits (the decoder shows what arrived) rather than never sending one.
            for cut in [usize::MAX, 24, 8, 0] {
                hello.service = crate::record::truncate(hello.service, cut).0;
                hello.firmware_version = crate::record::truncate(hello.firmware_version, cut).0;
                if let Ok(used) = postcard::to_slice(&hello, &mut tmp) {
                    if self.frame.u8(tag::EXT | ext::HELLO).is_ok()
                        && self.frame.bytes(used).is_ok()
                    {
                        written = true;
                        break;
                    }
                }
                self.frame.rollback(mark);
            }
            if !written {
                // The frame is too small for any session record: send the frame without one (the
                // decoder cannot start a session, but the device never stalls on it).
                self.frame.rollback(mark);
            }
        }
        let optional = !core::mem::take(&mut self.record_waiting);
        if optional && (self.drops_sent.unwrap_or(0) != drops || (epoch_start && drops != 0)) {
            session_records = true;
            self.frame.u8(tag::EXT | ext::DROPS)?;
            self.frame.varint(drops as u64)?;
            self.drops_sent = Some(drops);
        }
        if optional && self.wall_clock_due {
            if let Some(w) = self.wall_clock {
                session_records = true;
                self.frame.u8(tag::EXT | ext::WALL_CLOCK)?;
                self.frame.varint(w.ticks)?;
                self.frame.varint(w.unix_nanos)?;
            }
            self.wall_clock_due = false;
        }
        Ok(session_records)
    }

    /// A string reference: its interned id when [`predefine`](Self::predefine) gave it one, or
    /// the string inline (the name table is full for this epoch).
    fn name(&mut self, s: &'static str) -> Result<(), Skip> {
        match self.names.find(s) {
            Some(id) => self.frame.varint((id as u64) << 1)?,
            None => self.inline(s.as_bytes())?,
        }
        Ok(())
    }

    /// A string sent inline.
    fn inline(&mut self, b: &[u8]) -> Result<(), Skip> {
        self.frame.varint(((b.len() as u64) << 1) | 1)?;
        self.frame.bytes(b)?;
        Ok(())
    }

    /// Interns `s` ahead of the record that uses it (its definition must precede the record's
    /// tag byte). Returns nothing: the later [`name`](Self::name) call finds it.
    fn predefine(&mut self, s: &'static str) -> Result<(), Skip> {
        if let Err(Some(id)) = self.names.lookup(s) {
            self.frame.u8(tag::EXT | ext::NAME)?;
            self.frame.varint(id as u64)?;
            self.frame.varint(s.len() as u64)?;
            self.frame.bytes(s.as_bytes())?;
        }
        Ok(())
    }

    /// Extends a raw tick value and returns the delta to write (emitting a SET_TIME record first if
    /// time went backwards, which a preempted record can cause).
    fn time(&mut self, raw: u32) -> Result<u64, Skip> {
        let t = self.state.ext.extend(raw);
        if t < self.state.last_time {
            self.frame.u8(tag::EXT | ext::SET_TIME)?;
            self.frame.varint(t)?;
            self.state.last_time = t;
        }
        let dt = t - self.state.last_time;
        self.state.last_time = t;
        Ok(dt)
    }

    /// `last_start - span`, the usual way a record names an earlier span.
    fn back(&self, span: u32) -> u64 {
        self.state.last_start.wrapping_sub(span) as u64
    }

    fn encode(&mut self, pos: u32, h: Header) -> Result<(), Skip> {
        let mut r = Reader::new(self.tracer.ring, pos, self.strings);
        match h.kind() {
            record::START => self.encode_start(pos, h, &mut r),
            record::START_REMOTE => self.encode_start_remote(pos, h, &mut r),
            record::END => {
                let span = r.word();
                let raw = r.word();
                let losses = if h.payload() & 1 != 0 {
                    Losses::unpack(r.word())
                } else {
                    Losses::default()
                };
                let back = self.back(span);
                let dt = self.time(raw)?;
                if losses.is_empty() {
                    if back < 63 {
                        self.frame.u8(tag::END | back as u8)?;
                    } else {
                        self.frame.u8(tag::END | 63)?;
                        self.frame.varint(back)?;
                    }
                    self.frame.varint(dt)?;
                } else {
                    self.frame.u8(tag::EXT | ext::END_LOSSES)?;
                    self.frame.varint(back)?;
                    self.frame.varint(dt)?;
                    self.frame.varint(losses.tags_over_capacity as u64)?;
                    self.frame.varint(losses.fields_over_capacity as u64)?;
                    self.frame.varint(losses.strings_truncated as u64)?;
                    self.frame.varint(losses.records_dropped as u64)?;
                }
                Ok(())
            }
            record::TAG => {
                let span = r.word();
                let field = FieldView::read(&mut r);
                field.predefine(self)?;
                if span == self.state.subject {
                    self.frame.u8(tag::TAG | field.vtype())?;
                } else {
                    self.frame.u8(tag::EXT | ext::TAG_ON)?;
                    self.frame.varint(self.back(span))?;
                    self.frame.u8(field.vtype())?;
                }
                field.write(self, &mut r)?;
                self.state.subject = span;
                Ok(())
            }
            record::LOG => {
                let span = r.word();
                let raw = r.word();
                let n = h.payload();
                // Definitions first: they must precede the record's tag byte.
                let mut scan = r;
                for _ in 0..n {
                    let f = FieldView::read(&mut scan);
                    f.predefine(self)?;
                    f.skip(&mut scan);
                }
                let dt = self.time(raw)?;
                self.frame.u8(tag::EXT | ext::LOG)?;
                self.frame.varint(self.back(span))?;
                self.frame.varint(dt)?;
                self.frame.varint(n as u64)?;
                for _ in 0..n {
                    let f = FieldView::read(&mut r);
                    self.frame.u8(f.vtype())?;
                    f.write(self, &mut r)?;
                }
                self.state.subject = span;
                Ok(())
            }
            record::BAGGAGE => {
                let span = r.word();
                let key_len = (h.payload() & 0x3FF) as usize;
                let value_len = (h.payload() >> 10) as usize;
                let mut tmp = [0u8; 256];
                self.frame.u8(tag::EXT | ext::BAGGAGE)?;
                self.frame.varint(self.back(span))?;
                let key = r.bytes(key_len, &mut tmp);
                self.frame.varint(((key.len() as u64) << 1) | 1)?;
                self.frame.bytes(key)?;
                let value = r.bytes(value_len, &mut tmp);
                self.frame.varint(((value.len() as u64) << 1) | 1)?;
                self.frame.bytes(value)?;
                self.state.subject = span;
                Ok(())
            }
            record::REF => {
                let span = r.word();
                let trace = r.u128();
                let target = r.u64();
                self.frame.u8(tag::EXT | ext::REF)?;
                self.frame.varint(self.back(span))?;
                self.frame.u8(h.payload() as u8)?;
                self.frame.bytes(&trace.to_le_bytes())?;
                self.frame.bytes(&target.to_le_bytes())?;
                self.state.subject = span;
                Ok(())
            }
            _ => {
                // Unknown kinds cannot be written by this crate; skip them (counted as encoded).
                Ok(())
            }
        }
    }

    fn encode_start(&mut self, pos: u32, h: Header, r: &mut Reader<'_>) -> Result<(), Skip> {
        let payload = h.payload();
        let debug = payload & 1 != 0;
        let is_root = payload & 2 != 0;
        let follows = payload & 4 != 0;
        let name = r.static_str((payload >> 3) as usize);
        let parent = r.word();
        let root = r.word();
        let raw = r.word();
        let delta = pos.wrapping_sub(self.state.last_start) as u64;
        self.predefine(name)?;
        let dt = self.time(raw)?;
        let in_frame = |id: u32, st: &FrameState| match st.first_start {
            Some(first) => id.wrapping_sub(first) < pos.wrapping_sub(first),
            None => false,
        };
        let child_short =
            !is_root && self.state.first_start.is_some() && parent == self.state.last_start;
        if !debug && !follows && (is_root || child_short) {
            let root_bit = if is_root { tag::START_ROOT_BIT } else { 0 };
            if (1..32).contains(&delta) {
                self.frame.u8(tag::START | root_bit | delta as u8)?;
            } else {
                self.frame.u8(tag::START | root_bit)?;
                self.frame.varint(delta)?;
            }
        } else {
            let explicit_root = !is_root && !in_frame(parent, &self.state);
            let flags = bit(debug, start_flags::DEBUG)
                | bit(follows, start_flags::FOLLOWS_FROM)
                | bit(is_root, start_flags::ROOT)
                | bit(explicit_root, start_flags::ROOT_EXPLICIT);
            self.frame.u8(tag::EXT | ext::START)?;
            self.frame.varint(delta)?;
            self.frame.u8(flags)?;
            if !is_root {
                self.frame.varint(pos.wrapping_sub(parent) as u64)?;
            }
            if explicit_root {
                self.frame.varint(pos.wrapping_sub(root) as u64)?;
            }
        }
        self.name(name)?;
        self.frame.varint(dt)?;
        self.state.last_start = pos;
        self.state.subject = pos;
        if self.state.first_start.is_none() {
            self.state.first_start = Some(pos);
        }
        Ok(())
    }

    fn encode_start_remote(&mut self, pos: u32, h: Header, r: &mut Reader<'_>) -> Result<(), Skip> {
        let payload = h.payload();
        let debug = payload & 1 != 0;
        let follows = payload & 4 != 0;
        let name = r.static_str((payload >> 3) as usize);
        let trace = r.u128();
        let parent = r.u64();
        let raw = r.word();
        let delta = pos.wrapping_sub(self.state.last_start) as u64;
        self.predefine(name)?;
        let dt = self.time(raw)?;
        let flags = bit(debug, start_flags::DEBUG)
            | bit(follows, start_flags::FOLLOWS_FROM)
            | bit(parent == 0, start_flags::PARENT_LOST);
        self.frame.u8(tag::EXT | ext::START_REMOTE)?;
        self.frame.varint(delta)?;
        self.frame.u8(flags)?;
        self.frame.bytes(&trace.to_le_bytes())?;
        if parent != 0 {
            self.frame.bytes(&parent.to_le_bytes())?;
        }
        self.name(name)?;
        self.frame.varint(dt)?;
        self.state.last_start = pos;
        self.state.subject = pos;
        if self.state.first_start.is_none() {
            self.state.first_start = Some(pos);
        }
        Ok(())
    }
}

impl<const F: usize, const NAMES: usize> Drop for Drain<'_, F, NAMES> {
    fn drop(&mut self) {
        self.tracer.ring.return_consumer();
    }
}

/// `flag` when `on`.
const fn bit(on: bool, flag: u8) -> u8 {
    if on {
        flag
    } else {
        0
    }
}

/// A field of a TAG or LOG ring record: its header word, key and (for a static string) value,
/// read before the rest of the value.
#[derive(Clone, Copy)]
struct FieldView {
    kind: u32,
    aux: u32,
    key: &'static str,
    static_value: Option<&'static str>,
}

impl FieldView {
    fn read(r: &mut Reader<'_>) -> Self {
        let w = r.word();
        let kind = w & 0xF;
        let aux = w >> 16;
        let key = r.static_str(((w >> 4) & 0xFFF) as usize);
        let static_value = (kind == record::V_STR).then(|| r.static_str(aux as usize));
        Self {
            kind,
            aux,
            key,
            static_value,
        }
    }

    /// Skips the value words not read by [`read`](Self::read).
    fn skip(&self, r: &mut Reader<'_>) {
        r.at += match self.kind {
            record::V_BOOL | record::V_STR => 0,
            record::V_I64 | record::V_U64 | record::V_F64 => 2,
            _ => record::byte_words(self.aux as usize),
        };
    }

    fn vtype(&self) -> u8 {
        match self.kind {
            record::V_BOOL => {
                if self.aux != 0 {
                    vtype::TRUE
                } else {
                    vtype::FALSE
                }
            }
            record::V_I64 => vtype::I64,
            record::V_U64 => vtype::U64,
            record::V_F64 => vtype::F64,
            _ => vtype::STR,
        }
    }

    /// Defines the key (and a static string value) ahead of the record.
    fn predefine<const F: usize, const N: usize>(
        &self,
        d: &mut Drain<'_, F, N>,
    ) -> Result<(), Skip> {
        d.predefine(self.key)?;
        if let Some(v) = self.static_value {
            d.predefine(v)?;
        }
        Ok(())
    }

    /// Writes the key reference and the value; `r` is positioned at the unread value words.
    fn write<const F: usize, const N: usize>(
        &self,
        d: &mut Drain<'_, F, N>,
        r: &mut Reader<'_>,
    ) -> Result<(), Skip> {
        d.name(self.key)?;
        match self.kind {
            record::V_BOOL => {}
            record::V_I64 => d.frame.varint(wire::varint::zigzag(r.u64() as i64))?,
            record::V_U64 => d.frame.varint(r.u64())?,
            record::V_F64 => d.frame.bytes(&r.u64().to_le_bytes())?,
            record::V_STR => {
                if let Some(v) = self.static_value {
                    d.name(v)?;
                }
            }
            _ => {
                let mut tmp = [0u8; crate::config::MAX_STR_LEN];
                let len = (self.aux as usize).min(tmp.len());
                let b = r.bytes(len, &mut tmp);
                d.inline(b)?;
            }
        }
        Ok(())
    }
}
