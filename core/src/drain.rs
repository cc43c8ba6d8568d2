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
//! A record must fit one frame. Its static strings (a span name, a tag or log key, a static
//! value) are defined once per epoch, whole, in a `NAME` record before their first use; when a
//! record does not fit an empty frame beside the definitions of its new strings (a log with three
//! static fields in a `Drain<64>`), the definitions go first, alone, in as many frames as they
//! need, and the record follows ([`DrainStats::names_ahead`] counts those frames). A single static
//! string longer than an empty frame (a 250-byte span name with `Drain<256>`, a 52-byte one with
//! `Drain<64>`) goes ahead cut to fill one ([`DrainStats::names_cut`]): the decoder shows it
//! ending in `…` and warns on the spans that use it. What cannot be sent is a record that does
//! not fit an empty frame by itself (long inline text in a small frame): it is dropped and
//! counted with the ring's drops, which the decoder reports as the device's drops, and in
//! [`DrainStats::oversize`]. Names do not go ahead when the name table is full for the epoch
//! (the strings then travel inline, in the record, which must fit by itself), and seldom with
//! epochs of two frames ([`set_epoch_frames`](Drain::set_epoch_frames)`(2)`: every other frame
//! carries the session record, and the next one ends the epoch). Keep static strings well under
//! `F` minus 32 bytes, or choose a larger `F`.
//!
//! ```
//! # use microspan::{Clock, Drain, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
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

use crate::clock::{Clock, Sample, TickExtender};
use crate::record::{self, Reader};
use crate::ring::{DynRing, Header, Policy};
use crate::tracer::{Losses, Tracer};
use crate::wire::frame::{self, FrameBuilder, Full, Writer};
use crate::wire::{self, ext, start_flags, tag, vtype, OpenStarts, WallClock};

/// Default frames per epoch.
pub const DEFAULT_EPOCH_FRAMES: u16 = 64;

/// A string reference as written on the wire: `id << 1` for an interned string, or this value
/// for a string sent inline.
const INLINE: u32 = u32::MAX;

/// Longest session record body (postcard-encoded [`wire::Hello`]), bytes.
const HELLO_MAX: usize = 160;

/// What ends a session record's string cut to fit the frame (U+2026, 3 bytes of UTF-8): the
/// decoder shows the string as it arrived, so Jaeger shows `myfw-se…`, not a name that looks
/// whole.
const CUT_MARK: &str = "\u{2026}";

/// The byte budgets (service name, firmware version) a session record's strings are cut to, in
/// turn, until the record fits the frame. A string cut ends in [`CUT_MARK`] (so 3 bytes is the
/// mark alone); the firmware version gives way first, as the service name names the process in
/// Jaeger; both are empty last. 255: as long as the record's bound ([`HELLO_MAX`]) lets them be.
const HELLO_CUTS: [(u8, u8); 9] = [
    (255, 255),
    (24, 24),
    (24, 10),
    (10, 10),
    (10, 3),
    (7, 3),
    (3, 3),
    (3, 0),
    (0, 0),
];

/// Bytes of a postcard varint of `v`.
const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Raw bytes of a frame's header and a session record with empty strings and a wall clock, in a
/// `Drain<F>`: with every number at its `largest` encoding (whatever the device id, boot id,
/// rates and times), or at its smallest (a wall clock of a date after 1972 takes 9 bytes of
/// nanoseconds whatever). The capacities and the versions are known here and counted exactly.
const fn header_and_hello_bytes(f: usize, largest: bool) -> usize {
    let capacities = varint_len(crate::config::MAX_TAGS_PER_SPAN as u16 as u64)
        + varint_len(crate::config::MAX_FIELDS_PER_LOG as u16 as u64)
        + varint_len(crate::config::MAX_STR_LEN as u16 as u64)
        + varint_len(crate::config::MAX_BAGGAGE_VALUE_LEN as u16 as u64)
        + varint_len(f as u16 as u64)
        + pick(largest, 1, 5); // ring words, u32
                               // version, sequence number, base id (u32), base time (u64)
    let header = 1 + 2 + pick(largest, 1, 5) + pick(largest, 1, 10);
    let hello = 1 // tag byte
        + 1 // service: empty
        + pick(largest, 1, 10) // device id, u64
        + pick(largest, 1, 5) // boot id, u32
        + pick(largest, 1, 5) // ticks per second, u32
        + pick(largest, 1, 10) // now, u64
        + pick(largest, 1, 3) // frames per epoch, u16
        + capacities
        + 1 // firmware version: empty
        + varint_len(crate::VERSION.len() as u64)
        + crate::VERSION.len()
        + 1 + pick(largest, 1, 10) + pick(largest, 9, 10) // wall clock: Some, ticks, Unix nanoseconds
        + 1; // time shift
    header + hello
}

/// `large` if `largest`, else `small`.
const fn pick(largest: bool, small: usize, large: usize) -> usize {
    if largest {
        large
    } else {
        small
    }
}

/// The smallest `F` of a [`Drain<F>`]: a frame that can hold its header and a session record
/// with empty strings and a wall clock, every number at its smallest (the bound
/// [`Drain::new`] checks at compile time; 42 bytes at the default capacities). A smaller frame
/// could never carry a session record with a wall clock, and no frame of such a drain could be
/// read.
pub const fn min_frame_bytes() -> usize {
    frame_bytes_for(false)
}

/// The smallest `F` whose frames hold the session record with empty strings and a wall clock
/// whatever its numbers (a 64-bit device id, 32-bit boot id and rate, times past 2^63 ticks): 97
/// bytes at the default capacities. Between [`min_frame_bytes`] and this, whether it fits
/// depends on the numbers (a device id below 2^56, times below 2^35 ticks: 9 bytes less); a
/// frame that cannot hold it even with empty strings goes without it, and the decoder can read
/// nothing until a frame that does.
pub const fn session_record_always_fits() -> usize {
    frame_bytes_for(true)
}

/// The smallest frame size whose frames hold a header and a session record with empty strings
/// and a wall clock, its numbers at their `largest` or smallest.
const fn frame_bytes_for(largest: bool) -> usize {
    let mut f = 32;
    while f < 65_535 && frame::capacity_of(f) < header_and_hello_bytes(f, largest) {
        f += 1;
    }
    f
}

/// The string reference of interned string `id`: on the wire its id is `id + 1`, so no
/// reference is a 0 byte (each costs the COBS framing a block on both ends).
#[inline(always)]
const fn wire_ref(id: u32) -> u32 {
    (id + 1) << 1
}

/// [`Interner::last`] when unset (no string is that long).
const NO_LAST: ((usize, u32), u32) = ((0, u32::MAX), 0);

/// String interning: static strings (by address and length) get small ids, announced once per
/// epoch. Open addressing over `N` slots (a power of two), filled to three quarters at most.
// Laid out in this order (`repr(C)`): the byte table `slots` starts 8-byte aligned, so `clear`
// zeroes it with the routine the rest of the crate links (measured: 160 bytes of flash less on
// Cortex-M3 than the compiler's own order).
#[repr(C)]
struct Interner<const N: usize> {
    /// The last string found or added, and its id: spans of one name often come in a row, and
    /// one comparison is cheaper than a hash and a probe. Its length is `u32::MAX` when unset.
    last: ((usize, u32), u32),
    len: usize,
    slots: [u8; N],
    keys: [(usize, u32); N],
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
            last: NO_LAST,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.slots = [0; N];
        self.last = NO_LAST;
    }

    /// A 32-bit multiplicative hash (a 64-bit multiply is a library call on Cortex-M0).
    #[inline]
    fn slot_of(addr: usize, len: u32) -> usize {
        let a = addr as u64;
        let folded = (a as u32) ^ ((a >> 32) as u32) ^ len.rotate_left(16);
        (folded.wrapping_mul(0x9E37_79B9) >> 16) as usize & (N - 1)
    }

    /// Probes for `key`: `Ok(id)` if interned, else `Err(slot)`, the free slot where it would go.
    #[inline]
    fn probe(&self, key: (usize, u32)) -> Result<u32, usize> {
        let mut i = Self::slot_of(key.0, key.1);
        loop {
            let id_plus_1 = self.slots[i] as usize;
            if id_plus_1 == 0 {
                return Err(i);
            }
            if self.keys.get(id_plus_1 - 1) == Some(&key) {
                return Ok(id_plus_1 as u32 - 1);
            }
            i = (i + 1) & (N - 1);
        }
    }

    /// The id of `s`, if interned (out of line: only logs look names up without adding them).
    #[inline(never)]
    fn find(&self, s: &'static str) -> Option<u32> {
        self.probe((s.as_ptr() as usize, s.len() as u32)).ok()
    }

    /// `Ok(id)` if known; `Err(Some(id))` if newly added (the caller must define it);
    /// `Err(None)` if the table is full (send the string inline).
    #[inline]
    fn lookup(&mut self, s: &'static str) -> Result<u32, Option<u32>> {
        let key = (s.as_ptr() as usize, s.len() as u32);
        if self.last.0 == key {
            return Ok(self.last.1);
        }
        let slot = match self.probe(key) {
            Ok(id) => {
                self.last = (key, id);
                return Ok(id);
            }
            Err(slot) => slot,
        };
        let id = self.len;
        if id >= Self::LIMIT {
            return Err(None);
        }
        if let Some(k) = self.keys.get_mut(id) {
            *k = key;
        }
        self.slots[slot] = id as u8 + 1;
        self.len += 1;
        self.last = (key, id as u32);
        Err(Some(id as u32))
    }

    /// The entries a record will add are those from `len` on (the caller keeps it), removed
    /// again by [`abort_record`](Self::abort_record) if the record does not fit.
    #[inline(always)]
    fn begin_record(&self) -> usize {
        self.len
    }

    /// The record did not fit: forget the entries it added (those from `from` on).
    #[inline(always)]
    fn abort_record(&mut self, from: usize) {
        if from != self.len {
            self.forget_pending(from);
        }
    }

    /// [`abort_record`](Self::abort_record) when the record added entries: empties their slots,
    /// most recent first. Adding an entry only filled the free slot its probe ended at, so
    /// emptying the slots of the latest entries in reverse order gives back the table as it was
    /// before them (no other entry's probe path crosses them).
    #[cold]
    #[inline(never)]
    fn forget_pending(&mut self, from: usize) {
        while self.len > from {
            self.len -= 1;
            let Some(&(addr, len)) = self.keys.get(self.len) else {
                break;
            };
            let mut i = Self::slot_of(addr, len);
            for _ in 0..N {
                if self.slots[i] as usize == self.len + 1 {
                    self.slots[i] = 0;
                    break;
                }
                i = (i + 1) & (N - 1);
            }
        }
        self.last = NO_LAST;
    }
}

/// Delta state, restarting at every frame (each frame carries its base).
#[derive(Clone, Copy)]
struct FrameState {
    /// Id of the most recent span start (deltas are taken against it).
    last_start: u32,
    /// The span a short tag record applies to.
    subject: u32,
    /// The id delta of the frame's previous start (0 before the first): a short start whose
    /// delta is the same says so in one bit.
    last_delta: u32,
    /// The frame's spans whose starts were written and whose ends were not: a short end names
    /// the most recent one.
    open: OpenStarts,
    /// The clock extension; times go on the wire in units of `2^shift` clock ticks, its shift
    /// (see [`Drain::set_time_shift`]).
    ext: TickExtender,
}

/// The default [`Drain::set_time_shift`] for a clock of `ticks_per_second`: the largest that
/// still resolves a microsecond (the resolution Jaeger stores and shows) and divides the rate
/// exactly, so the rate the decoder is told is exact.
pub const fn default_time_shift(ticks_per_second: u32) -> u32 {
    let mut s = 0;
    while s < TickExtender::MAX_SHIFT
        && (ticks_per_second >> (s + 1)) >= 1_000_000
        && ticks_per_second % (1 << (s + 1)) == 0
    {
        s += 1;
    }
    s
}

/// The tick extension of a drain starting at raw tick `now`. Records already waiting in the ring
/// are older than `now`, by up to three quarters of a wrap when the drain starts late: they are
/// dated as if the previous record were that long before `now`, in the next wrap period (so that
/// none is dated below zero, which makes a frame dated near 2^64, every later time of which the
/// decoder refuses). With an empty ring the extension starts at `now` itself.
fn start_extension(ring: &DynRing, now: u32, shift: u32) -> TickExtender {
    if ring.may_hold_records() {
        TickExtender::behind(now, shift)
    } else {
        TickExtender::with_shift(now, shift)
    }
}

/// The time of a record being encoded, applied to the [`FrameState`] once the record fits.
type Timed = Sample;

/// Frames and counters of a drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DrainStats {
    /// Frames built.
    pub frames: u32,
    /// Bytes of finished frames, the delimiter before the first one included: the bytes the
    /// drain hands out, each once (a restarted frame's are not counted again).
    pub bytes: u64,
    /// Ring records encoded.
    pub records: u32,
    /// Records dropped by the drain because they could not fit an empty frame by themselves
    /// (inline text and values too long for the frame size `F`; see the [module docs](self)).
    /// They are counted with the ring's drops too, which the decoder reports.
    pub oversize: u32,
    /// Frames that carried only the name definitions of a record that did not fit an empty frame
    /// beside them; the record followed in the next frame.
    pub names_ahead: u32,
    /// Static strings longer than an empty frame, sent cut to fit it (`NAME_CUT`: the decoder
    /// marks them and warns on the spans that use them), once per epoch each.
    pub names_cut: u32,
}

/// A [`Drain`]'s timekeeping, lent out apart from its frame by
/// [`Drain::fill_buf_keeping_time`]: it reaches only the drain's tick extensions, its clock and
/// its ring's head, so it can keep time while the frame's bytes are borrowed (by an async write
/// that waits for a link that takes nothing).
pub struct TimeKeeper<'d> {
    ext: &'d mut TickExtender,
    watch: &'d mut Watch,
    clock: &'d dyn Clock,
    ring: &'d DynRing,
}

/// The clock as a [`Drain`] last saw it, apart from the records' time (see [`TimeKeeper`]).
#[derive(Clone, Copy)]
struct Watch {
    ext: TickExtender,
    /// `ext` went past the records' time while records waited: the records' time takes it up
    /// when the drain next finds the ring empty.
    ahead: bool,
}

impl Watch {
    /// The drain's latest knowledge of the clock: this watch, or the records' extension `ext`
    /// if records drained since moved it further.
    fn later(&self, ext: &TickExtender) -> TickExtender {
        if ext.last() > self.ext.last() {
            *ext
        } else {
            self.ext
        }
    }

    /// A watch at the records' extension, for a drain whose time (re)starts there.
    fn at(ext: TickExtender) -> Self {
        Self { ext, ahead: false }
    }
}

impl TimeKeeper<'_> {
    /// What [`Drain::keep_time`] does: reads the clock and follows it. Call it at least every few
    /// seconds (well within half the clock's wrap period) while the write waits.
    pub fn keep_time(&mut self) {
        self.now();
    }

    /// The clock's extended value now, and the drain's time kept up with it.
    ///
    /// Two extensions: `ext`, the one the records are read with, and `watch`, the clock as the
    /// drain last saw it. Records waiting in the ring must be read from `ext`, one after the
    /// other: a record's raw tick only tells its distance from the record before. So while any
    /// record waits, only `watch` follows the clock; once none does (what is recorded next comes
    /// after now), `ext` takes it up too. Each starts from whichever of the two is later (records
    /// drained since the last look moved `ext` past `watch`).
    #[inline(never)]
    fn now(&mut self) -> u64 {
        let mut base = self.watch.later(self.ext);
        let now = base.extend(self.clock.now());
        self.watch.ext = base;
        self.watch.ahead = self.ring.may_hold_records();
        if !self.watch.ahead {
            *self.ext = base;
        }
        // The records' window reaches the clock now: the usual window when nothing waits, one
        // leaning forward after a stall through which records waited (see `Drain::write_header`).
        self.ext.reach_to(now);
        now
    }
}

/// The single consumer of a tracer's ring, producing wire frames of at most `F` bytes and
/// interning up to `NAMES * 3 / 4` strings per epoch.
// The fields are laid out in this order (`repr(C)`): the state every record reads and writes
// first, then the frame (its cursor before its buffer), so that they sit within the reach of
// Cortex-M0's load and store offsets (124 bytes) from the drain's address, and the rest by
// decreasing alignment (no padding, and `new` zeroes them in few runs).
#[repr(C)]
pub struct Drain<'a, const F: usize = 256, const NAMES: usize = 64> {
    state: FrameState,
    frame: FrameBuilder<F>,
    tracer: &'a Tracer<'a, dyn Clock + 'a>,
    names: Interner<NAMES>,
    wall_clock: Option<WallClock>,
    /// The clock as the drain last saw it (see [`TimeKeeper`]).
    watch: Watch,
    stats: DrainStats,
    /// Where the records' static strings live (this program, or a post-mortem image).
    strings: record::Strings<'a>,
    drops_sent: Option<u32>,
    /// The boot id of the last session record: a frame that finds the tracer's another
    /// ([`Tracer::set_boot_id`] called meanwhile) starts a new epoch with a session record.
    boot_id: u32,
    /// The record whose names go ahead of it ([`define_ahead`](Drain::define_ahead)): its ring
    /// position, the first sequence number of the epoch it was last refused in, and the epoch
    /// boundaries it has waited across (at most one).
    ahead: Option<(u32, u16, u8)>,
    seq: u16,
    epoch_frames: u16,
    wall_clock_due: bool,
    /// A record did not fit beside the session records: the next frame leaves out the optional
    /// ones (drops, wall clock: they stay due) so the record is sure to get its turn.
    record_waiting: bool,
    /// [`restart_frame`](Drain::restart_frame): once the current frame's delimiter is out, the
    /// frame goes out again, whole (instead of a new one being built).
    resend: bool,
    /// The current frame's unsent bytes were handed out by [`fill_buf`](Drain::fill_buf) and
    /// none was consumed since: a second `fill_buf` finds the link stalled (see
    /// [`keep_time`](Drain::keep_time)).
    offered: bool,
    /// Drop-new: the latest drop total read, and where the ring's next reservation was when it
    /// was read: due once the records before that are sent (see [`drops_due`]). Declared last:
    /// a field among the others moved the record loop's hot fields on the Cortex-M0 (8
    /// instructions a span more in `insn-probe drain17`).
    drops_held: (u32, u32),
}

impl<'a, const F: usize, const NAMES: usize> Drain<'a, F, NAMES> {
    const CHECK: () = assert!(
        frame::capacity_of(F) >= header_and_hello_bytes(F, false),
        "F is too small for a session record (see `microspan::drain::min_frame_bytes`)"
    );

    /// The drain of `tracer`'s ring; `None` if another drain of it exists (there is one consumer).
    ///
    /// **Make one drain per boot, and keep it for the whole boot** (in a `static`, e.g. through
    /// `static_cell`, or in the frame of a `main` that never returns), however the transport is
    /// driven. The drain holds the stream's state: the frame sequence number, which restarts at 0
    /// with a new drain, and the extension of the clock's ticks past their wraps (a 24-bit
    /// SysTick wraps many times a second), which a new drain restarts from the clock's raw value.
    /// Once the clock has wrapped, a new drain's first frame is, to the decoder, a new stream
    /// whose time went back: it takes it for a device reset (its `resets` count grows) and
    /// exports the spans open then as incomplete. (Before the first wrap the times still agree:
    /// the decoder reads the stream as going on and counts a `drain restart`, with advice.) So a
    /// drain made again on every loop iteration, or for every flush, turns one boot into many
    /// resets. Dropping a drain and making another is for a reset or a new session only (a
    /// post-mortem dump, a test).
    ///
    /// `F` is the largest frame on the wire, in bytes, and at least [`min_frame_bytes`] (42 at
    /// the default capacities; checked at compile time: a smaller `F` fails `cargo build` with
    /// *F is too small for a session record*). From [`session_record_always_fits`] (97) every
    /// frame that starts an epoch has room for the session record whatever its numbers; below,
    /// the session record's strings are cut to fit (ending in `…`), and with large numbers (a
    /// 64-bit device id, a wall clock, times of many days) it may not fit at all: choose 128 or
    /// more unless RAM is very short.
    ///
    /// ```compile_fail,E0080
    /// # use microspan::{Clock, Drain, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
    /// # static RING: Ring<256> = Ring::new();
    /// # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
    /// // 32-byte frames cannot hold a session record with a wall clock: no frame could be read.
    /// let drain: Drain<'_, 32> = Drain::new(&TRACER).unwrap();
    /// ```
    pub fn new(tracer: &'a Tracer<'a, dyn Clock + 'a>) -> Option<Self> {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        if !tracer.ring.take_consumer() {
            return None;
        }
        let now = tracer.clock.now();
        let shift = default_time_shift(tracer.clock.ticks_per_second());
        let ext = start_extension(tracer.ring, now, shift);
        Some(Self {
            tracer,
            frame: FrameBuilder::new(),
            names: Interner::new(),
            state: FrameState {
                last_start: 0,
                subject: 0,
                last_delta: 0,
                open: OpenStarts::new(),
                ext,
            },
            seq: 0,
            epoch_frames: DEFAULT_EPOCH_FRAMES,
            drops_sent: None,
            drops_held: (0, 0),
            // Any value: frame 0 starts an epoch, whose session record sets it.
            boot_id: 0,
            wall_clock: None,
            watch: Watch::at(ext),
            wall_clock_due: false,
            record_waiting: false,
            resend: false,
            offered: false,
            ahead: None,
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

    /// Sends times in units of `2^bits` clock ticks (at most [`TickExtender::MAX_SHIFT`]). The
    /// default, [`default_time_shift`], keeps a resolution of a microsecond or finer, the
    /// resolution Jaeger stores and shows: a 50 MHz clock goes on the wire at 1.5625 MHz
    /// (0.64 µs), saving a byte on most durations. `0` keeps every tick (for an OTLP backend that
    /// shows nanoseconds). The session record announces the resulting rate, so the decoder needs
    /// no setting.
    ///
    /// Returns `false`, changing nothing, once the drain has built a frame (the decoder reads the
    /// rate from the session record, so it cannot change within a session), or when `2^bits`
    /// does not divide the clock's rate (the rate on the wire would not be exact).
    pub fn set_time_shift(&mut self, bits: u8) -> bool {
        let tps = self.tracer.clock.ticks_per_second();
        if self.stats.frames != 0 || bits as u32 > TickExtender::MAX_SHIFT || tps % (1 << bits) != 0
        {
            return false;
        }
        let old = self.state.ext.shift();
        self.state.ext = self.state.ext.rescaled(bits as u32);
        self.watch = Watch::at(self.state.ext);
        if let Some(c) = &mut self.wall_clock {
            c.ticks = (c.ticks << old) >> bits;
        }
        true
    }

    /// Tells the decoder the device's real time now (nanoseconds since the Unix epoch), for a
    /// device with an RTC or network time. Sent in the next frame and in every session record.
    /// Without it the decoder dates device time by the host's clock when it reads the session
    /// record, so a capture decoded later (or twice) gets other times (the decoder's
    /// `--anchor-unix-nanos` fixes the anchor instead).
    pub fn set_wall_clock(&mut self, unix_nanos: u64) {
        let ticks = self.time_keeper().now();
        self.wall_clock = Some(WallClock { ticks, unix_nanos });
        self.wall_clock_due = true;
    }

    /// Post-mortem replay: the records were put in the ring after the drain was made, all older
    /// than its clock; dates them as records waiting when a drain starts (see
    /// `start_extension`).
    #[cfg(feature = "std")]
    pub(crate) fn date_waiting_records(&mut self) {
        let now = self.tracer.clock.now();
        self.state.ext = TickExtender::behind(now, self.state.ext.shift());
        self.watch = Watch::at(self.state.ext);
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
        if !self.frame.has_unsent() {
            self.build();
        } else if self.offered {
            self.keep_time();
        }
        self.offered = true;
        self.frame.unsent()
    }

    /// Marks the first `n` bytes of the last [`fill_buf`](Self::fill_buf) as sent.
    pub fn consume(&mut self, n: usize) {
        self.frame.consume(n);
        if n > 0 {
            self.offered = false;
        }
    }

    /// Keeps the drain's time up with the clock while the current frame waits for a link that
    /// takes nothing. Reads the clock; touches nothing but the time (never the frame's bytes, so
    /// a DMA transfer may be reading them meanwhile), and may be called at any time.
    ///
    /// While the link is stalled (no host on RTT, a USB port not open, a writer that refuses), no
    /// frame is built, and the tick extension, which an idle drain keeps fresh, would fall
    /// behind the clock. Past three quarters of the clock's wrap period every later record
    /// would be extended the wrong way (a span dated a wrap off). [`fill_buf`](Self::fill_buf) calls this itself
    /// when it finds its frame offered and nothing consumed since (a transport that polls a
    /// stalled link); a transport that waits inside one long transfer instead (a DMA transfer
    /// held by flow control) calls it while it waits, at least every few seconds, and one whose
    /// write borrows the frame's bytes (an async write) uses the [`TimeKeeper`] of
    /// [`fill_buf_keeping_time`](Self::fill_buf_keeping_time).
    ///
    /// The records that wait in the ring meanwhile are dated from the one before each, in order,
    /// and the records made after the stall behind them too: when the next frame is built the
    /// drain reads the clock and reaches its window to it (`TickExtender::reach_to`), so all are
    /// dated right as long as the stall, from the last record dated before it to that frame,
    /// lasts less than about 92% of the clock's wrap period (62 s at 64 MHz; a 32-bit tick
    /// cannot tell more). The session record of that frame is dated from the clock kept here.
    #[cold]
    #[inline(never)]
    pub fn keep_time(&mut self) {
        self.time_keeper().keep_time()
    }

    /// The drain's [`TimeKeeper`].
    fn time_keeper(&mut self) -> TimeKeeper<'_> {
        TimeKeeper {
            ext: &mut self.state.ext,
            watch: &mut self.watch,
            clock: &self.tracer.clock,
            ring: self.tracer.ring,
        }
    }

    /// The ring is empty after a stall through which records waited: the records' time takes up
    /// the clock as it was kept meanwhile, if that is later.
    #[cold]
    #[inline(never)]
    fn catch_up(&mut self) {
        // Assigned only when the watch is later: `self.state.ext = self.watch.later(..)` would
        // copy the extension onto itself, which the compiler does with `memmove` (1.6 KB of
        // flash on Cortex-M3).
        if self.watch.ext.last() > self.state.ext.last() {
            self.state.ext = self.watch.ext;
        }
        self.state.ext.reach_to(self.state.ext.last());
        self.watch.ahead = false;
    }

    /// [`fill_buf`](Self::fill_buf), and beside its bytes the drain's [`TimeKeeper`]: a
    /// transport whose write keeps the bytes borrowed for a long time (an async write to a USB
    /// port the host has not opened) keeps time through it while it waits, which the borrow
    /// rules out for [`keep_time`](Self::keep_time).
    pub fn fill_buf_keeping_time(&mut self) -> (&[u8], TimeKeeper<'_>) {
        self.fill_buf();
        (
            self.frame.unsent(),
            TimeKeeper {
                ext: &mut self.state.ext,
                watch: &mut self.watch,
                clock: &self.tracer.clock,
                ring: self.tracer.ring,
            },
        )
    }

    /// `true` when a frame is partly sent, or the next [`fill_buf`](Self::fill_buf) would build
    /// one: records in the ring, or a drop count or wall-clock time not sent yet. A firmware
    /// that drains `while has_pending()` before a reset or sleep so tells the host what was lost.
    pub fn has_pending(&self) -> bool {
        self.frame.has_unsent() || self.resend || self.has_news(self.tracer.ring.dropped())
    }

    /// The bytes handed out of the current frame may not have arrived whole (a write cancelled
    /// part-way, an RTT channel whose mode a probe changed during a write): what
    /// [`fill_buf`](Self::fill_buf) returns next is the frame's `0x00` delimiter alone, which
    /// ends the fragment the link may have carried, then the whole frame again. The host decoder
    /// counts the fragment as a restarted frame, not a bad one (a whole first copy as a
    /// duplicate); no record is lost or read twice. Does nothing when no frame is partly sent.
    pub fn restart_frame(&mut self) {
        if self.frame.skip_to_delimiter() {
            self.resend = true;
        }
    }

    /// A frame finds nothing to send: keeps the tick extension fresh so a wrapping counter is
    /// followed. Out of line: in `build` its calls took registers from the record loop
    /// (`insn-probe drain17`, Cortex-M3: 334.6 instructions a span against 323.5).
    #[inline(never)]
    fn idle(&mut self) {
        // A flight recorder's producer is evicting (it holds `busy`, so nothing reads as ready):
        // records wait all the same, and moving their time to the clock's would date one older
        // than a quarter wrap a whole wrap late, and every record after it. Only the watch
        // follows the clock.
        if self.tracer.ring.may_hold_records() {
            self.keep_time();
            return;
        }
        // From the clock as it was kept while records waited through a stall, if it went past
        // them.
        if self.watch.ahead {
            self.catch_up();
        }
        self.state.ext.extend(self.tracer.clock.now());
    }

    /// Whether a frame has something to say: records in the ring, or a drop count (`drops`, the
    /// ring's now) or wall-clock time not sent yet.
    #[inline]
    fn has_news(&self, drops: u32) -> bool {
        self.tracer.ring.ready() || self.drops_sent.unwrap_or(0) != drops || self.wall_clock_due
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

    /// Builds the next frame if there is anything to say.
    #[inline(never)]
    fn build(&mut self) {
        if core::mem::take(&mut self.resend) {
            // `restart_frame`: the delimiter ended the fragment; now the frame again.
            self.frame.rewind();
            return;
        }
        let ring = self.tracer.ring;
        let drops = ring.dropped();
        // A boot id set since the last session record starts an epoch too: the decoder names the
        // spans from the session record's boot id, so it must hear of the new one before the
        // first record that uses it (one comparison per frame; see `Tracer::set_boot_id`).
        let epoch_start =
            self.seq & (self.epoch_frames - 1) == 0 || self.tracer.boot_id() != self.boot_id;
        if epoch_start {
            self.names.clear();
        }
        // `has_news`, spelled out on the local `ring`: the call through `self` cost the frame
        // loop 10 instructions per span on Cortex-M3 (`insn-probe drain17`: 320.5 against 310.2).
        let drops_due = self.drops_sent.unwrap_or(0) != drops;
        if !ring.ready() && !drops_due && !self.wall_clock_due {
            self.idle();
            return;
        }
        // The first frame goes out after a delimiter of its own: whatever the link carried
        // before it (a boot banner on a shared UART, a glitch at power-up) ends there instead of
        // merging into the frame that holds the session record.
        self.frame.begin_first_after_delimiter();
        let Ok(session_records) = self.write_header(epoch_start, drops) else {
            // Cannot happen: a frame holds its header (`Drain::CHECK`); send nothing rather
            // than a broken frame.
            return;
        };
        let content_start = self.frame.position();
        let mut records = 0;
        // The records read are handed back to producers together (see `ring::Consumer`), when
        // `reader` is dropped below, before the frame's CRC and COBS.
        let mut reader = ring.consumer();
        while let Some((pos, h)) = reader.peek() {
            let names_from = self.names.begin_record();
            // Each encoder writes its record (name definitions included) through one writer and
            // keeps it only if it fits, and only then moves the frame state on: a record that
            // does not fit leaves nothing behind (the names it interned are forgotten below).
            let fits = match h.kind() {
                record::START | record::START_REMOTE => self.encode_start(ring, pos, h),
                record::END => {
                    // The words read here, where the ring's address is in a register.
                    let mut r = Reader::new(ring, pos, self.strings);
                    let (span, raw) = (r.word(), r.word());
                    let losses = if h.payload() & 1 != 0 { r.word() } else { 0 };
                    self.encode_end(span, raw, losses)
                }
                _ => self.encode_other(pos, h),
            };
            if fits {
                reader.release(pos, h.len());
                records += 1;
                continue;
            }
            let alone = self.frame.position() == content_start;
            if self.refuse(pos, names_from, alone, session_records) {
                // Larger than an empty frame: drop it, counted like a full ring.
                reader.release(pos, h.len());
                ring.count_drop();
                continue;
            }
            reader.unpin();
            break;
        }
        drop(reader);
        if records != 0 {
            // The record whose names went ahead (if any) was sent: its turn is over.
            self.ahead = None;
        }
        let len = self.frame.finish().len();
        self.seq = self.seq.wrapping_add(1);
        self.stats.records += records;
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
    }

    /// The record at `pos` did not fit what is left of the frame: forgets the names it interned
    /// (from `names_from` on) and decides its turn. Returns `true` when it is to be dropped
    /// (counted as oversize); otherwise it waits for the next frame. When it was `alone` in the
    /// frame, its new names go ahead if they can ([`define_ahead`](Self::define_ahead)); else the
    /// next frame leaves out the optional session records if this one had any
    /// (`session_records`); else nothing can make it fit.
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, pos: u32, names_from: usize, alone: bool, session_records: bool) -> bool {
        let new_names = names_from..self.names.len;
        self.names.abort_record(names_from);
        if !alone {
            return false;
        }
        if self.define_ahead(pos, new_names, session_records) {
            return false;
        }
        if session_records {
            // It did not fit beside the session records: the next frame carries none it can
            // leave out (and is not an epoch start, as epochs are at least two frames long), so
            // the record gets an empty frame.
            self.record_waiting = true;
            return false;
        }
        self.ahead = None;
        self.stats.oversize += 1;
        true
    }

    /// A record alone in its frame that does not fit beside the definitions of the names it
    /// uses for the first time this epoch (`new_names`, the interner entries it added before it
    /// was refused): writes as many of those definitions as fit, so that the record follows in a
    /// later frame with references only. A first definition longer than an empty frame (one
    /// without `session_records`) goes cut to fill it (`NAME_CUT`). Returns `true` when the
    /// record is to wait for the next frame: definitions went out, or the epoch ends with this
    /// frame (the next one forgets every name), and the record waits for the next epoch.
    ///
    /// A record may wait across one epoch boundary only: each definition written holds for the
    /// rest of its epoch, so within an epoch the record gets nearer its turn with every frame,
    /// and it is sent or dropped by the end of the epoch after the one it was first refused in.
    fn define_ahead(
        &mut self,
        pos: u32,
        new_names: core::ops::Range<usize>,
        session_records: bool,
    ) -> bool {
        if new_names.is_empty() {
            return false;
        }
        let epoch = self.seq & !(self.epoch_frames - 1);
        let crossed = match self.ahead {
            Some((p, e, crossed)) if p == pos => crossed + (e != epoch) as u8,
            _ => 0,
        };
        if crossed > 1 {
            return false;
        }
        self.ahead = Some((pos, epoch, crossed));
        if self.seq.wrapping_add(1) & (self.epoch_frames - 1) == 0 {
            // The next frame forgets the names: wait for it (once), rather than send them for
            // nothing.
            return crossed == 0;
        }
        let mut defined = 0;
        for i in new_names {
            let Some(&(addr, len)) = self.names.keys.get(i) else {
                break;
            };
            // SAFETY: interner keys are only ever the address and length of a `&'static str`
            // (`Interner::lookup`): the bytes live, unchanged, for the rest of the program and are
            // UTF-8.
            let s: &'static str = unsafe {
                core::str::from_utf8_unchecked(core::slice::from_raw_parts(
                    addr as *const u8,
                    len as usize,
                ))
            };
            // The table is as it was before the record, so the entry comes back with its id
            // (`i`), and its definition is written.
            let mut w = self.frame.writer();
            if self.names.predefine_slow(&mut w, s) == INLINE {
                break;
            }
            if keep(w).is_ok() {
                defined += 1;
                continue;
            }
            if defined == 0 && !session_records {
                // Longer than an empty frame by itself (the frame holds its header only): its
                // beginning goes, marked as cut, and defines the name for the rest of the epoch.
                let mut w = self.frame.writer();
                define_cut(&mut w, (i as u32 + 1, s));
                if keep(w).is_ok() {
                    self.stats.names_cut += 1;
                    defined += 1;
                    break;
                }
            }
            // Longer than what is left of the frame: it goes first in the next one.
            self.names.abort_record(i);
            break;
        }
        if defined == 0 {
            return false;
        }
        self.stats.names_ahead += 1;
        true
    }

    /// Writes the frame header and the session records due; returns whether any session record
    /// (hello, drops, wall clock) was written.
    #[inline(never)]
    fn write_header(&mut self, epoch_start: bool, drops: u32) -> Result<bool, Full> {
        // Records waited in the ring while the watch followed the clock past them (a stall):
        // reading the clock leans the records' window forward to reach it, so that the records
        // made after the stall, read after the ones that waited, are dated right even when they
        // come more than three quarters of a wrap after them (see `TickExtender::reach_to`).
        // Here, once a frame, not in `build`: the check cost `build` 60 bytes of flash.
        if self.watch.ahead {
            self.keep_time();
        }
        // The header inline (every frame has one), the session records through the out-of-line
        // writers.
        // At most 13 unchecked bytes (3, then two varints of at most 5: see `HOT_MAX`).
        let mut w = self.frame.writer();
        w.put_hot(wire::WIRE_VERSION);
        let [seq_lo, seq_hi] = self.seq.to_le_bytes();
        w.put_hot(seq_lo);
        w.put_hot(seq_hi);
        w.var32_hot(self.state.last_start);
        w.var64_hot(self.state.ext.last());
        keep(w)?;
        self.state.subject = self.state.last_start;
        self.state.last_delta = 0;
        self.state.open.clear();
        let mut session_records = false;
        if epoch_start {
            session_records = true;
            // A frame too small for any session record is sent without one (the decoder cannot
            // start a session, but the device never stalls on it).
            self.write_hello();
        }
        let optional = !core::mem::take(&mut self.record_waiting);
        // The drop count and the wall clock stay due when they do not fit beside the session
        // record (they go first in the next frame), so a full frame never stops the drain.
        let header_only = self.frame.position();
        // Drop-new: the total read may wait for the records before it (see `drops_due`).
        let sent = self.drops_sent.unwrap_or(0);
        let drops = if drops == sent {
            drops
        } else {
            let (due, held) = drops_due(self.tracer.ring, drops, sent, self.drops_held);
            self.drops_held = held;
            due
        };
        if optional && (sent != drops || (epoch_start && drops != 0)) {
            let mut w = self.frame.writer();
            w.put_c(tag::EXT | ext::DROPS);
            w.var32_c(drops);
            if keep(w).is_ok() {
                session_records = true;
                self.drops_sent = Some(drops);
            }
        }
        if optional && self.wall_clock_due {
            let alone = self.frame.position() == header_only;
            let mut written = true;
            if let Some(clock) = self.wall_clock {
                let mut w = self.frame.writer();
                w.put_c(tag::EXT | ext::WALL_CLOCK);
                w.var64_c(clock.ticks);
                w.var64_c(clock.unix_nanos);
                written = keep(w).is_ok();
                session_records |= written;
            }
            // Not even alone after the header (a frame of a few dozen bytes and large values):
            // such frames cannot carry it, and trying again would stall the drain.
            self.wall_clock_due = !written && !alone;
        }
        Ok(session_records)
    }

    /// The session record: a postcard-encoded [`wire::Hello`], written field by field (postcard:
    /// integers as varints, a `str` as its length and bytes, an `Option` as 0, or 1 and the value).
    /// A small frame may not hold it with long names: the free-text fields are cut until it fits
    /// ([`HELLO_CUTS`]) rather than never sending one, each cut one ending in `…` (the decoder
    /// shows the strings as they arrived, so the cut is visible in Jaeger). Returns whether it was
    /// written: only a frame smaller than [`session_record_always_fits`] may not hold it even
    /// with empty strings.
    #[inline(never)]
    fn write_hello(&mut self) -> bool {
        let t = self.tracer;
        // Sampled, not taken: within a frame the extender's last value is the time the next
        // record's delta counts from (see `FrameState::time`). From the watch if it is later
        // (a stall longer than the extension's window, records waiting through it).
        let base = self.watch.later(&self.state.ext);
        let now_ticks = base.value(base.sample(t.clock.now()));
        let ticks_per_second = t.clock.ticks_per_second() >> self.state.ext.shift();
        // Read once: the boot id announced is the one the next frames compare with.
        let boot_id = t.boot_id();
        self.boot_id = boot_id;
        for (service_cut, firmware_cut) in HELLO_CUTS {
            let mut w = self.frame.writer();
            w.put_c(tag::EXT | ext::HELLO);
            let tag_byte = w.raw_written();
            hello_str(&mut w, t.session.service, service_cut as usize);
            w.var64_c(t.session.device_id);
            w.var32_c(boot_id);
            w.var32_c(ticks_per_second);
            w.var64_c(now_ticks);
            w.var32_c(self.epoch_frames as u32);
            for capacity in [
                crate::config::MAX_TAGS_PER_SPAN as u16 as u32,
                crate::config::MAX_FIELDS_PER_LOG as u16 as u32,
                crate::config::MAX_STR_LEN as u16 as u32,
                crate::config::MAX_BAGGAGE_VALUE_LEN as u16 as u32,
                F as u16 as u32,
                t.ring.capacity(),
            ] {
                w.var32_c(capacity);
            }
            hello_str(&mut w, t.session.firmware_version, firmware_cut as usize);
            str_bytes(&mut w, crate::VERSION.as_bytes(), 0);
            match self.wall_clock {
                None => w.put_c(0),
                Some(c) => {
                    w.put_c(1);
                    w.var64_c(c.ticks);
                    w.var64_c(c.unix_nanos);
                }
            }
            w.put_c(self.state.ext.shift() as u8);
            if w.fits() && w.raw_written() - tag_byte <= HELLO_MAX {
                w.commit();
                return true;
            }
        }
        false
    }

    /// The start of a span (the most common record, with its end). Returns whether it fit. Inlined
    /// in the loop, while the other encoders are functions of their own: measured, that keeps the
    /// most of the writer's state in registers on both Cortex-M3 and Cortex-M0.
    #[inline(always)]
    fn encode_start(&mut self, ring: &'a DynRing, pos: u32, h: Header) -> bool {
        // The ring the loop holds in registers (`self.tracer.ring` would be read again, the
        // frame's stores in between being, for the compiler, possible stores to the tracer).
        let mut r = Reader::new(ring, pos, self.strings);
        let payload = h.payload();
        let debug = payload & 1 != 0;
        let follows = payload & 4 != 0;
        let name = r.static_str((payload >> 3) as usize);
        let (is_root, parent, root) = if h.kind() == record::START {
            (payload & 2 != 0, r.word(), r.word())
        } else {
            // A span of a trace whose id came from elsewhere. When its parent is a span of this
            // tracer that started in this frame, the decoder knows the trace from the parent: it
            // is an ordinary start. Otherwise it names the trace.
            let trace = r.u128();
            let parent = r.u64();
            let local_parent = payload & 2 != 0;
            if !(local_parent && self.state.in_frame(parent as u32)) {
                let raw = r.word();
                return self.encode_start_remote(pos, payload, name, trace, parent, raw);
            }
            (false, parent as u32, 0)
        };
        let raw = r.word();
        self.write_start(pos, name, debug, is_root, follows, parent, root, raw)
    }

    /// Writes a `START` (short or extended) for the span at `pos`; `root` is only read when the
    /// parent's start is not in this frame.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn write_start(
        &mut self,
        pos: u32,
        name: &'static str,
        debug: bool,
        is_root: bool,
        follows: bool,
        parent: u32,
        root: u32,
        raw: u32,
    ) -> bool {
        let st = &mut self.state;
        let delta = pos.wrapping_sub(st.last_start);
        let mut w = self.frame.writer();
        let name_ref = self.names.predefine(&mut w, name);
        let (timed, dt) = st.time(&mut w, raw);
        // A short start's parent is the frame's most recent open start: the previous start for a
        // nested child, the common parent for siblings.
        let child_short = !is_root && st.open.top() == Some(parent);
        // The name goes in the tag byte of a child's short start that repeats the previous delta
        // (a chain of nested starts: each the size of a start record after its parent).
        let mut name_in_tag = false;
        if !debug && !follows && is_root {
            if (1..32).contains(&delta) {
                w.put_nz(tag::START | tag::START_ROOT_BIT | delta as u8);
            } else {
                w.put_nz(tag::START | tag::START_ROOT_BIT);
                w.var32_hot(delta);
            }
        } else if !debug && !follows && child_short {
            if delta == st.last_delta {
                let low = if name_ref < (tag::START_LOW_MASK as u32) << 1 {
                    name_in_tag = true;
                    (name_ref >> 1) as u8
                } else {
                    tag::START_LOW_MASK
                };
                w.put_nz(tag::START | tag::START_REPEAT_BIT | low);
            } else if delta <= tag::START_LOW_MASK as u32 {
                // `delta` is never 0: positions are unique.
                w.put_nz(tag::START | delta as u8);
            } else {
                w.put_hot(tag::START);
                w.var32_hot(delta);
            }
        } else {
            // FollowsFrom, debug, or a parent that is not the frame's most recent open start (out
            // of line: rarer since siblings take the short form).
            let explicit_root = !is_root && !st.in_frame(parent);
            let flags = bit(debug, start_flags::DEBUG)
                | bit(follows, start_flags::FOLLOWS_FROM)
                | bit(is_root, start_flags::ROOT)
                | bit(explicit_root, start_flags::ROOT_EXPLICIT);
            let parent_delta = (!is_root).then(|| pos.wrapping_sub(parent));
            let root_delta = explicit_root.then(|| pos.wrapping_sub(root));
            w.call(start_explicit, (delta, flags, parent_delta, root_delta));
        }
        if !name_in_tag {
            strref(&mut w, name, name_ref);
        }
        w.var32_hot(dt);
        if !w.fits() {
            return false;
        }
        w.commit();
        st.commit_start(pos, timed);
        true
    }

    /// A `START_REMOTE`: the span's trace id and parent span id in full, so the span lands in
    /// its trace even when the frame of an ancestor was lost.
    #[inline(never)]
    fn encode_start_remote(
        &mut self,
        pos: u32,
        payload: u32,
        name: &'static str,
        trace: u128,
        parent: u64,
        raw: u32,
    ) -> bool {
        let debug = payload & 1 != 0;
        let local_parent = payload & 2 != 0;
        let follows = payload & 4 != 0;
        let st = &mut self.state;
        let mut w = self.frame.writer();
        let delta = pos.wrapping_sub(st.last_start);
        let name_ref = self.names.predefine_c(&mut w, name);
        let (timed, dt) = st.time_c(&mut w, raw);
        let flags = bit(debug, start_flags::DEBUG)
            | bit(follows, start_flags::FOLLOWS_FROM)
            | bit(parent == 0, start_flags::PARENT_LOST)
            | bit(local_parent && parent != 0, start_flags::LOCAL_PARENT);
        w.put_c(tag::EXT | ext::START_REMOTE);
        w.var32_c(delta);
        w.put_c(flags);
        w.put_bytes(&trace.to_le_bytes());
        if parent != 0 {
            w.put_bytes(&parent.to_le_bytes());
        }
        strref_c(&mut w, name, name_ref);
        w.var32_c(dt);
        if !w.fits() {
            return false;
        }
        w.commit();
        st.commit_start(pos, timed);
        true
    }

    /// The end of span `span` at raw time `raw`, with its packed losses (0 for none), read from
    /// its ring record by the build loop. Returns whether it fit.
    #[inline(never)]
    fn encode_end(&mut self, span: u32, raw: u32, losses: u32) -> bool {
        let st = &mut self.state;
        let mut w = self.frame.writer();
        let (timed, dt) = st.time(&mut w, raw);
        // The most recent open start of the frame ends: the span goes without saying, and the
        // tag byte has room for the low bits of `dt`.
        let short = losses == 0 && st.open.top() == Some(span);
        if short {
            if (dt as u64) < tag::END_DT_LIMIT {
                w.put_nz(tag::END | dt as u8);
            } else {
                w.put_nz(tag::END | tag::END_HIGH_BIT | (dt as u8 & tag::END_DT_MASK));
                w.var32_hot(dt >> tag::END_DT_BITS);
            }
        } else if losses != 0 {
            // `back` computed here, where it is needed (not held through the short path).
            let back = st.last_start.wrapping_sub(span);
            w.call(end_losses, (back, dt, Losses::unpack(losses)));
        } else {
            let back = st.last_start.wrapping_sub(span);
            w.call(end_explicit, (back, dt));
        }
        if !w.fits() {
            return false;
        }
        w.commit();
        st.commit_time(timed);
        if short {
            // `short` read the top of the list: it is not empty.
            st.open.pop_listed();
        } else {
            st.open.remove(span);
        }
        true
    }

    /// Every record but a span's start and end. Returns whether it fit.
    #[inline(never)]
    fn encode_other(&mut self, pos: u32, h: Header) -> bool {
        let mut r = Reader::new(self.tracer.ring, pos, self.strings);
        let st = &mut self.state;
        let names = &mut self.names;
        let mut w = self.frame.writer();
        let (timed, span) = match h.kind() {
            record::TAG => {
                let span = r.word();
                let field = FieldView::read(&mut r);
                let key_ref = names.predefine_c(&mut w, field.key);
                let value_ref = match field.static_value {
                    Some(v) => names.predefine_c(&mut w, v),
                    None => INLINE,
                };
                let vt = field.vtype();
                if span == st.subject && key_ref < (tag::TAG_KEY_MASK as u32) << 1 {
                    // An interned key of the first few goes in the tag byte.
                    w.put_c(tag::TAG | vt << tag::TAG_TYPE_SHIFT | (key_ref >> 1) as u8);
                } else {
                    if span == st.subject {
                        w.put_c(tag::TAG | vt << tag::TAG_TYPE_SHIFT | tag::TAG_KEY_MASK);
                    } else {
                        w.put_c(tag::EXT | ext::TAG_ON);
                        w.var32_c(st.last_start.wrapping_sub(span));
                        w.put_c(vt);
                    }
                    strref_c(&mut w, field.key, key_ref);
                }
                field.write_value(&mut w, &mut r, value_ref);
                (None, span)
            }
            record::LOG => {
                let span = r.word();
                let raw = r.word();
                let n = h.payload();
                // Definitions first: they must precede the record's tag byte.
                let mut scan = r;
                for _ in 0..n {
                    let f = FieldView::read(&mut scan);
                    names.predefine_c(&mut w, f.key);
                    if let Some(v) = f.static_value {
                        names.predefine_c(&mut w, v);
                    }
                    f.skip(&mut scan);
                }
                let (timed, dt) = st.time_c(&mut w, raw);
                let sref = |s: &'static str| names.find(s).map_or(INLINE, wire_ref);
                w.put_c(tag::EXT | ext::LOG);
                w.var32_c(st.last_start.wrapping_sub(span));
                w.var32_c(dt);
                w.var32_c(n);
                for _ in 0..n {
                    let f = FieldView::read(&mut r);
                    w.put_c(f.vtype());
                    strref_c(&mut w, f.key, sref(f.key));
                    let value_ref = f.static_value.map_or(INLINE, sref);
                    f.write_value(&mut w, &mut r, value_ref);
                }
                (Some(timed), span)
            }
            record::BAGGAGE => {
                let span = r.word();
                let key_len = (h.payload() & record::BAGGAGE_KEY_MASK) as usize;
                let value_len = (h.payload() >> record::BAGGAGE_VALUE_SHIFT) as usize;
                // Kind 7, or 13 for a carried item: the carried bits (8 and 9, both set) are 6
                // at bits 1–2, so the tag byte takes no branch.
                let carried = ((h.payload() & record::BAGGAGE_CARRIED) >> 7) as u8;
                w.put_c(tag::EXT | (ext::BAGGAGE + carried));
                w.var32_c(st.last_start.wrapping_sub(span));
                inline_words(&mut w, &mut r, key_len);
                inline_words(&mut w, &mut r, value_len);
                (None, span)
            }
            record::REF => {
                let span = r.word();
                w.put_c(tag::EXT | ext::REF);
                w.var32_c(st.last_start.wrapping_sub(span));
                w.put_c(h.payload() as u8);
                // The trace id (4 words) and span id (2 words), least significant word first:
                // their little-endian bytes are the words' little-endian bytes in order.
                for _ in 0..6 {
                    w.put_bytes(&r.word().to_le_bytes());
                }
                (None, span)
            }
            // Unknown kinds cannot be written by this crate; skip them (counted as encoded).
            _ => return true,
        };
        if !w.fits() {
            return false;
        }
        w.commit();
        if let Some(t) = timed {
            st.commit_time(t);
        }
        st.subject = span;
        true
    }
}

impl FrameState {
    /// Extends a raw tick value; returns it and the delta to write (after writing a SET_TIME
    /// record when time went backwards, which a preempted record can cause). The state moves on
    /// only at [`commit_time`](Self::commit_time), once the record is kept.
    ///
    /// The running time the decoder keeps is the extender's last value: the frame's base is
    /// written from it, and every record kept moves both. So the delta is the extender's own,
    /// a 32-bit value (it is below 2^31 by the extension's construction): no 64-bit compare,
    /// subtraction or varint here.
    #[inline(always)]
    fn time<const F: usize>(&self, w: &mut Writer<'_, F>, raw: u32) -> (Timed, u32) {
        let t = self.ext.sample(raw);
        match self.ext.after(t) {
            Some(dt) => (t, dt),
            None => {
                w.call(set_time, self.ext.value(t));
                (t, 0)
            }
        }
    }

    /// [`time`](Self::time), out of line (for the records that are not worth the code size).
    #[inline(never)]
    fn time_c<const F: usize>(&self, w: &mut Writer<'_, F>, raw: u32) -> (Timed, u32) {
        self.time(w, raw)
    }

    #[inline(always)]
    fn commit_time(&mut self, t: Timed) {
        self.ext.take(t);
    }

    /// Whether the start of span `parent` was written in this frame and the span has not ended
    /// (so the decoder knows its trace). Exact whatever happened in the ring meanwhile (a
    /// flight-recorder ring may evict records between two of a frame); conservative for a parent
    /// that ended, or that more recent open starts pushed off the list, which costs the child a few
    /// bytes (its root named explicitly), never its trace.
    #[inline(always)]
    fn in_frame(&self, parent: u32) -> bool {
        self.open.contains(parent)
    }

    /// A span start at `pos`, timed `t`, was written: it is the new `last_start` and subject.
    #[inline(always)]
    fn commit_start(&mut self, pos: u32, t: Timed) {
        self.commit_time(t);
        self.last_delta = pos.wrapping_sub(self.last_start);
        self.open.push(pos);
        self.last_start = pos;
        self.subject = pos;
    }
}

impl<const N: usize> Interner<N> {
    /// Interns `s` ahead of the record that uses it, writing its definition (which must precede
    /// the record's tag byte) if it is new; returns the string reference to write ([`INLINE`] when
    /// the name table is full for this epoch).
    ///
    /// Inline, only the comparison with the last string found or added (spans of one name often
    /// come in a row); the search, the insertion and the definition are out of line.
    #[inline(always)]
    fn predefine<const F: usize>(&mut self, w: &mut Writer<'_, F>, s: &'static str) -> u32 {
        if self.last.0 == (s.as_ptr() as usize, s.len() as u32) {
            return wire_ref(self.last.1);
        }
        w.call(
            |w, (names, s): (&mut Self, _)| names.predefine_slow(w, s),
            (self, s),
        )
    }

    /// [`predefine`](Self::predefine) of a string that is not the last one.
    #[inline(never)]
    fn predefine_slow<const F: usize>(&mut self, w: &mut Writer<'_, F>, s: &'static str) -> u32 {
        match self.lookup(s) {
            Ok(id) => wire_ref(id),
            Err(Some(id)) => {
                define(w, (id + 1, s));
                wire_ref(id)
            }
            Err(None) => INLINE,
        }
    }
}

impl<const N: usize> Interner<N> {
    /// [`predefine`](Self::predefine), out of line (for the records that are not worth the code
    /// size).
    #[inline(never)]
    fn predefine_c<const F: usize>(&mut self, w: &mut Writer<'_, F>, s: &'static str) -> u32 {
        self.predefine(w, s)
    }
}

/// [`strref`], out of line and checked (its callers write checked bytes directly, so their
/// writers may be past the frame's end: no unchecked byte here).
#[inline(never)]
fn strref_c<const F: usize>(w: &mut Writer<'_, F>, s: &'static str, sref: u32) {
    if sref == INLINE {
        str_bytes(w, s.as_bytes(), 1);
    } else {
        w.var32(sref);
    }
}

/// Keeps what `w` wrote if it fits the frame; else `Full`.
#[inline(always)]
fn keep<const F: usize>(w: Writer<'_, F>) -> Result<(), Full> {
    if w.fits() {
        w.commit();
        Ok(())
    } else {
        Err(Full)
    }
}

/// The head of an extended `START` record: delta, flags, parent and root deltas.
fn start_explicit<const F: usize>(
    w: &mut Writer<'_, F>,
    (delta, flags, parent_delta, root_delta): (u32, u8, Option<u32>, Option<u32>),
) {
    w.put_c(tag::EXT | ext::START);
    w.var32_c(delta);
    w.put_c(flags);
    if let Some(d) = parent_delta {
        w.var32_c(d);
    }
    if let Some(d) = root_delta {
        w.var32_c(d);
    }
}

/// An `END` record (a span that is not the frame's most recent open start).
fn end_explicit<const F: usize>(w: &mut Writer<'_, F>, (back, dt): (u32, u32)) {
    w.put_c(tag::EXT | ext::END);
    w.var32_c(back);
    w.var32_c(dt);
}

/// A `NAME` record.
fn define<const F: usize>(w: &mut Writer<'_, F>, (id, s): (u32, &'static str)) {
    w.put_c(tag::EXT | ext::NAME);
    w.var32_c(id);
    str_bytes(w, s.as_bytes(), 0);
}

/// A `NAME_CUT` record: as much of `s` as fills the frame's room, in whole characters.
#[inline(never)]
fn define_cut<const F: usize>(w: &mut Writer<'_, F>, (id, s): (u32, &'static str)) {
    let b = s.as_bytes();
    // The tag byte and two varints of at most 2 bytes each (an id below 256, a length below
    // 2^14) precede the text.
    let mut n = w.room().saturating_sub(5).min(b.len());
    // Back to the start of a character (continuation bytes are `10xx_xxxx`; a `str` never
    // starts with one, so `n` stays above 0 while it moves).
    while b.get(n).is_some_and(|&c| c & 0xC0 == 0x80) {
        n -= 1;
    }
    w.put_c(tag::EXT | ext::NAME_CUT);
    w.var32_c(id);
    str_bytes(w, b.get(..n).unwrap_or_default(), 0);
}

/// A `SET_TIME` record.
#[cold]
fn set_time<const F: usize>(w: &mut Writer<'_, F>, time: u64) {
    w.put_c(tag::EXT | ext::SET_TIME);
    w.var64_c(time);
}

/// An `END_LOSSES` record.
fn end_losses<const F: usize>(w: &mut Writer<'_, F>, (back, dt, losses): (u32, u32, Losses)) {
    w.put_c(tag::EXT | ext::END_LOSSES);
    w.var32_c(back);
    w.var32_c(dt);
    w.var32_c(losses.tags_over_capacity as u32);
    w.var32_c(losses.fields_over_capacity as u32);
    w.var32_c(losses.strings_truncated as u32);
    w.var32_c(losses.records_dropped as u32);
}

/// Writes string reference `sref` ([`Interner::predefine`]'s answer) for `s`: at most 2
/// unchecked bytes (for the span path, whose checked writes all go through [`Writer::call`]).
#[inline(always)]
fn strref<const F: usize>(w: &mut Writer<'_, F>, s: &'static str, sref: u32) {
    if sref < 1 << 14 {
        // An interned string's reference (below `2 << 8`): a varint of at most 2 bytes, the
        // budget `HOT_MAX` counts.
        w.var32_hot(sref);
    } else if sref == INLINE {
        w.call(|w, s: &'static str| str_bytes(w, s.as_bytes(), 1), s);
    } else {
        w.call(|w, sref| w.var32_c(sref), sref);
    }
}

/// Copies a dynamic string of `len` bytes (at most `N`) from the record into the frame, through a
/// stack buffer of `N` bytes.
#[inline(always)]
fn copy_str<const N: usize, const F: usize>(w: &mut Writer<'_, F>, r: &mut Reader<'_>, len: usize) {
    let mut tmp = [0u8; N];
    str_bytes(w, r.bytes(len.min(N), &mut tmp), 1);
}

/// A length-prefixed string: `len << bit | bit`, then the bytes (`bit` 1: a `strref` sent inline;
/// 0: the length of a NAME's or a postcard `str`'s bytes).
#[inline(never)]
fn str_bytes<const F: usize>(w: &mut Writer<'_, F>, b: &[u8], bit: u32) {
    w.var32_c(((b.len() as u32) << bit) | bit);
    w.put_bytes(b);
}

/// A session record's string (a postcard `str`): `s` whole if it has at most `max` bytes, else
/// its first bytes, in whole characters, and [`CUT_MARK`], `max` bytes in all; empty when `max`
/// cannot hold the mark.
#[inline(never)]
fn hello_str<const F: usize>(w: &mut Writer<'_, F>, s: &str, max: usize) {
    if s.len() <= max {
        str_bytes(w, s.as_bytes(), 0);
    } else if let Some(room) = max.checked_sub(CUT_MARK.len()) {
        let kept = record::truncate(s, room).0;
        w.var32_c((kept.len() + CUT_MARK.len()) as u32);
        w.put_bytes(kept.as_bytes());
        w.put_bytes(CUT_MARK.as_bytes());
    } else {
        w.put_c(0);
    }
}

/// `len` bytes packed little-endian into the record's words, sent inline.
fn inline_words<const F: usize>(w: &mut Writer<'_, F>, r: &mut Reader<'_>, len: usize) {
    w.var32_c(((len as u32) << 1) | 1);
    let mut left = len;
    while left > 0 {
        let n = left.min(4);
        for &b in r.word().to_le_bytes().iter().take(n) {
            w.put_c(b);
        }
        left -= n;
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

    /// The wire value type (a table lookup: the ring's value kinds 0–3 are bool, i64, u64, f64,
    /// in the wire's order).
    fn vtype(&self) -> u8 {
        const BY_KIND: [u8; 4] = [vtype::FALSE, vtype::I64, vtype::U64, vtype::F64];
        const _: () = assert!(
            record::V_BOOL == 0 && record::V_I64 == 1 && record::V_U64 == 2 && record::V_F64 == 3
        );
        const _: () = assert!(vtype::TRUE == vtype::FALSE | 1);
        match BY_KIND.get(self.kind as usize) {
            Some(&t) => t | (self.kind == record::V_BOOL && self.aux != 0) as u8,
            None => vtype::STR,
        }
    }

    /// Writes the value; `r` is positioned at the unread value words, `value_ref` is the string
    /// reference of a static string value ([`INLINE`] if none).
    fn write_value<const F: usize>(
        &self,
        w: &mut Writer<'_, F>,
        r: &mut Reader<'_>,
        value_ref: u32,
    ) {
        match self.kind {
            record::V_BOOL => {}
            record::V_I64 => w.var64_c(wire::varint::zigzag(r.u64() as i64)),
            record::V_U64 => w.var64_c(r.u64()),
            record::V_F64 => w.put_bytes(&r.u64().to_le_bytes()),
            record::V_STR => {
                if let Some(v) = self.static_value {
                    strref_c(w, v, value_ref);
                }
            }
            _ => {
                let len = self.aux as usize;
                if cfg!(feature = "std") && len > crate::config::MAX_STR_LEN {
                    // Only on the host: a post-mortem image of firmware built with a larger
                    // `MICROSPAN_MAX_STR_LEN` (at most 1000, `build.rs`).
                    copy_str::<1000, F>(w, r, len);
                } else {
                    copy_str::<{ crate::config::MAX_STR_LEN }, F>(w, r, len);
                }
            }
        }
    }
}

/// The drop total a frame starting now announces, when the ring's (`total`) is not the last one
/// sent (`sent`), and the total held with the position it waits for (`held`, returned updated).
///
/// In the overwrite policy, the ring's total: the records evicted were the oldest, next to be
/// read. In the drop-new policy a record is dropped where the next reservation would have gone,
/// after every record reserved before it: a total is held until the records in the ring when it
/// was read are sent, so that the decoder warns the spans open where the records went missing,
/// not those a ring that filled up later still held (it warns the spans open at the frame that
/// announces a total). Newer drops wait for the held total to go out, and are then held in turn
/// (so they may be announced later than where they happened, by up to what the ring held then),
/// as do records the drain itself drops (too large for a frame). A total also goes when nothing
/// can be read now (the oldest record is still being written by a producer this drain
/// preempted): holding it then would build header-only frames for as long as the drain runs, and
/// keep `has_pending` true, which a drain that flushes `while has_pending()` above that producer
/// would never leave. Called from `write_header`, once a frame, out of line.
#[inline(never)]
fn drops_due(ring: &DynRing, total: u32, sent: u32, held: (u32, u32)) -> (u32, (u32, u32)) {
    if ring.policy() == Policy::Overwrite {
        return (total, held);
    }
    // Nothing held (the total held went out): hold this one.
    let (total_held, at) = if held.0 == sent {
        (total, ring.reserve_pos())
    } else {
        held
    };
    // Wrapping positions: passed when the consumer is at most half the position space ahead.
    let passed = (ring.consumer_pos().wrapping_sub(at) as i32) >= 0 || !ring.ready();
    (if passed { total_held } else { sent }, (total_held, at))
}

#[cfg(all(test, feature = "std", not(loom)))]
mod frame_start_tests {
    use crate::wire::decode::{Accumulator, Record, RecordDecoder};
    use crate::{Clock, Drain, Ring, Session, Tracer};
    use core::sync::atomic::{AtomicU32, Ordering};

    struct Ticks(AtomicU32);

    impl Clock for Ticks {
        fn now(&self) -> u32 {
            self.0.load(Ordering::Relaxed)
        }
        fn ticks_per_second(&self) -> u32 {
            1_000
        }
    }

    /// Drops counted while the oldest record is still being written (its producer preempted by
    /// the drain): the total goes out at once, in one frame, and nothing stays pending. Found by
    /// a review: the total was held for a position the consumer could not pass, and every
    /// `fill_buf` built another header-only frame, `has_pending` true for ever.
    #[test]
    fn a_drop_total_held_behind_an_unfinished_record_goes_out_once() {
        let clock = Ticks(AtomicU32::new(0));
        let ring: Ring<64> = Ring::new();
        let session = Session::new("svc");
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        // Reserved, never committed: its header stays 0 at the consumer's position.
        let dyn_ring: &crate::ring::DynRing = &ring;
        let _unfinished = dyn_ring.reserve(4).unwrap();
        while tracer.dropped() == 0 {
            drop(tracer.root("r"));
        }
        // Frame by frame (a drain that sends all it has would never return before the fix).
        let mut bytes = 0;
        for _ in 0..100 {
            let n = drain.fill_buf().len();
            drain.consume(n);
            bytes += n;
        }
        assert_eq!(drain.stats().frames, 1, "{bytes} bytes");
        assert!(!drain.has_pending());
    }

    /// A drain that runs while a flight recorder's producer holds `busy` (it preempted an
    /// eviction) finds nothing ready, though records wait: it must not move their time to the
    /// clock's. Found by an audit: a record made at 0.05 of the clock's wrap and read after an
    /// idle pass at 0.35 was dated 1.05 wraps, and every later record a wrap late.
    #[test]
    fn an_idle_pass_during_an_eviction_leaves_the_waiting_records_dated() {
        const WRAP: u64 = 1 << 32;
        let clock = Ticks(AtomicU32::new(0));
        let ring: Ring<64> = Ring::flight_recorder();
        let session = Session::new("svc");
        let tracer = Tracer::new(&ring, &clock, &session);
        let mut drain: Drain<'_, 256> = Drain::new(&tracer).unwrap();
        clock.0.store((WRAP / 20) as u32, Ordering::Relaxed);
        drop(tracer.root("r"));
        clock.0.store((WRAP * 35 / 100) as u32, Ordering::Relaxed);
        ring.busy.store(true, Ordering::Relaxed);
        assert!(drain.fill_buf().is_empty(), "nothing can be read meanwhile");
        ring.busy.store(false, Ordering::Relaxed);
        let mut stream = Vec::new();
        drain.drain_with(|b| {
            stream.extend_from_slice(b);
            b.len()
        });
        let mut acc: Box<Accumulator<512>> = Box::default();
        let mut end = None;
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (frame, r) = acc.feed(rest);
            rest = r;
            if let Some(Ok(frame)) = frame {
                for rec in RecordDecoder::new(&frame) {
                    if let Ok(Record::End { time, .. }) = rec {
                        end = Some(time);
                    }
                }
            }
        }
        assert_eq!(end, Some(WRAP / 20), "the END at its own time");
    }
}

#[cfg(test)]
mod time_shift_tests {
    use super::default_time_shift;

    #[test]
    fn the_default_shift_keeps_a_microsecond_and_an_exact_rate() {
        assert_eq!(default_time_shift(1_000_000), 0);
        assert_eq!(default_time_shift(50_000_000), 5); // 1.5625 MHz
        assert_eq!(default_time_shift(64_000_000), 6); // 1 MHz
        assert_eq!(default_time_shift(168_000_000), 7); // 1.3125 MHz
        assert_eq!(default_time_shift(32_768), 0);
        assert_eq!(default_time_shift(48_000_001), 0); // odd: no exact division
        assert_eq!(default_time_shift(u32::MAX), 0);
        for tps in [
            1_000_000u32,
            50_000_000,
            64_000_000,
            168_000_000,
            3_000_000_000,
        ] {
            let s = default_time_shift(tps);
            assert!(tps >> s >= 1_000_000 || s == 0);
            assert_eq!((tps >> s) << s, tps);
        }
    }
}

#[cfg(test)]
mod interner_tests {
    use super::Interner;

    /// A record that did not fit forgets the names it added, and only those: the table is the
    /// one built without them (same ids, same slots), whatever collided with what.
    #[test]
    fn an_aborted_record_leaves_the_table_as_before() {
        // Distinct strings to the interner (which keys them by address and length): windows
        // of one static string.
        static TEXT: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let names: Vec<&'static str> = (0..40).map(|i| &TEXT[i..i + 3]).collect();
        for kept in [0, 1, 5, 20, 40] {
            for added in [1, 2, 7, 30] {
                let mut t: Interner<16> = Interner::new();
                let mut reference: Interner<16> = Interner::new();
                for &n in names.iter().take(kept) {
                    let _ = t.lookup(n);
                    let _ = reference.lookup(n);
                }
                let from = t.begin_record();
                for &n in names.iter().skip(kept).take(added) {
                    let _ = t.lookup(n);
                }
                t.abort_record(from);
                assert_eq!(t.len, reference.len, "kept {kept} added {added}");
                assert_eq!(t.slots, reference.slots, "kept {kept} added {added}");
                for &n in &names {
                    assert_eq!(t.find(n), reference.find(n), "{n}");
                }
            }
        }
    }
}
