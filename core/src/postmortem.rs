//! Post-mortem: what the device was doing when it panicked, faulted or hung.
//!
//! # On the device
//! [`register`] the tracer once at start-up; it fills a small descriptor static,
//! `MICROSPAN_POSTMORTEM` (a magic number, then the addresses of the ring's words and indices, the
//! session's strings and ids), like RTT's control block. The panic and HardFault handlers call
//! [`mark_panic`] or [`mark_crash`], which write the crash reason and then the tick count into the
//! descriptor (the ring is left as it is), then halt instead of resetting, so a debugger (or QEMU's
//! GDB stub) can read RAM. The reason goes first and the clock, the firmware's own code, last: a
//! clock that faults in the handler leaves the reason, and the crash dated at the newest record;
//! a handler that runs again meanwhile writes nothing:
//!
//! ```no_run
//! # use microspan::{Clock, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000 } }
//! static RING: Ring<1024> = Ring::flight_recorder(); // keeps the latest events
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("sensor-node"));
//!
//! fn main() {
//!     microspan::postmortem::register(&TRACER);
//!     // …
//! }
//!
//! // #[panic_handler]
//! fn panic(info: &core::panic::PanicInfo) -> ! {
//!     microspan::postmortem::mark_panic(info);
//!     loop {} // halt: leave RAM to the debugger
//! }
//! ```
//!
//! # On the host
//! `microspan postmortem --elf FW (--gdb HOST:PORT | --dump FILE [--dump-base ADDR])` finds the
//! descriptor (at the ELF symbol `MICROSPAN_POSTMORTEM`, or by scanning for its magic number),
//! reads the records between the ring's tail and head through a [`TargetMemory`], and replays them
//! through the same drain that encodes them on the device ([`RingImage::to_stream`]): the result is
//! an ordinary wire stream, decoded and exported like any other. Spans still open in it are the
//! spans open at the crash.
//!
//! # Limits (stated honestly)
//! - The image holds what the ring holds: records already drained (sent to a host) are gone from
//!   it, and so are records evicted by a flight recorder. A span whose start record is among them
//!   is not shown as open (its later records are orphans to the decoder).
//! - The descriptor's layout assumes a 32-bit little-endian target (every Cortex-M, RISC-V MCUs).
//! - A crash while a producer was between reserve and commit leaves an uncommitted record, and an
//!   eviction or hand-back in progress leaves one zeroed from its header on. Such a record is
//!   lost: the replay skips it and goes on from the first later position, within one record's
//!   length, from which whole records run to the head; the skipped words are counted as unread.
//!   Each later gap is handled the same way. Only when nothing whole after a gap reads on to the
//!   head does the replay stop at the first gap.

use core::sync::atomic::{AtomicPtr, AtomicUsize};

use crate::atomic::{AtomicU32, Ordering};

use crate::clock::Clock;
use crate::tracer::Tracer;

/// The descriptor's magic number, first word: `"MSPN"` little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"MSPN");
/// The descriptor's second word: `"PM"` and the layout version.
pub const MAGIC_VERSION: u32 = u32::from_le_bytes(*b"PM\x00\x01");
/// The name of the descriptor's symbol in the firmware's ELF.
pub const SYMBOL: &str = "MICROSPAN_POSTMORTEM";
/// Bytes of crash reason kept.
pub const REASON_BYTES: usize = 96;

/// Offsets of the descriptor's fields on a 32-bit target (every field is one 32-bit word).
#[allow(missing_docs)]
pub mod offset {
    pub const MAGIC: u32 = 0;
    pub const VERSION: u32 = 4;
    pub const RING_WORDS: u32 = 8;
    pub const RING_CAPACITY: u32 = 12;
    pub const RING_HEAD: u32 = 16;
    pub const RING_TAIL: u32 = 20;
    pub const RING_DROPPED: u32 = 24;
    pub const POLICY: u32 = 28;
    pub const SERVICE_PTR: u32 = 32;
    pub const SERVICE_LEN: u32 = 36;
    pub const FIRMWARE_PTR: u32 = 40;
    pub const FIRMWARE_LEN: u32 = 44;
    pub const DEVICE_ID_LO: u32 = 48;
    pub const DEVICE_ID_HI: u32 = 52;
    pub const BOOT_ID: u32 = 56;
    pub const TICKS_PER_SECOND: u32 = 60;
    pub const CRASHED: u32 = 64;
    pub const CRASH_TICKS: u32 = 68;
    pub const REASON_LEN: u32 = 72;
    pub const REASON: u32 = 76;
    /// Size of the descriptor on a 32-bit target.
    pub const SIZE: u32 = REASON + super::REASON_BYTES as u32 + 4;
}

/// The descriptor a post-mortem reader looks for. Its fields are words (addresses are target
/// pointers); see [`offset`] for the layout on a 32-bit target.
#[repr(C)]
pub struct Descriptor {
    magic: [u32; 2],
    ring_words: AtomicUsize,
    ring_capacity: AtomicU32,
    ring_head: AtomicUsize,
    ring_tail: AtomicUsize,
    ring_dropped: AtomicUsize,
    policy: AtomicU32,
    service_ptr: AtomicUsize,
    service_len: AtomicU32,
    firmware_ptr: AtomicUsize,
    firmware_len: AtomicU32,
    device_id: [AtomicU32; 2],
    boot_id: AtomicU32,
    ticks_per_second: AtomicU32,
    crashed: AtomicU32,
    crash_ticks: AtomicU32,
    reason_len: AtomicU32,
    reason: [AtomicU32; REASON_BYTES / 4],
    /// The registered tracer (for the crash handler's clock and boot id), type-erased.
    tracer: AtomicPtr<()>,
    /// `probe::<C>` for the registered tracer's clock type `C`, as an address (0: none).
    probe: AtomicUsize,
}

/// The descriptor (one per firmware): 180 bytes of RAM (and their initial value in flash) in a
/// firmware that calls [`register`], [`mark_panic`] or [`mark_crash`]. Not `#[used]`: a firmware
/// that calls none of them leaves it out (the linker drops it), and pays nothing for post-mortem.
#[no_mangle]
pub static MICROSPAN_POSTMORTEM: Descriptor = Descriptor {
    magic: [MAGIC, MAGIC_VERSION],
    ring_words: AtomicUsize::new(0),
    ring_capacity: AtomicU32::new(0),
    ring_head: AtomicUsize::new(0),
    ring_tail: AtomicUsize::new(0),
    ring_dropped: AtomicUsize::new(0),
    policy: AtomicU32::new(0),
    service_ptr: AtomicUsize::new(0),
    service_len: AtomicU32::new(0),
    firmware_ptr: AtomicUsize::new(0),
    firmware_len: AtomicU32::new(0),
    device_id: [AtomicU32::new(0), AtomicU32::new(0)],
    boot_id: AtomicU32::new(0),
    ticks_per_second: AtomicU32::new(0),
    crashed: AtomicU32::new(0),
    crash_ticks: AtomicU32::new(0),
    reason_len: AtomicU32::new(0),
    reason: [const { AtomicU32::new(0) }; REASON_BYTES / 4],
    tracer: AtomicPtr::new(core::ptr::null_mut()),
    probe: AtomicUsize::new(0),
};

/// Makes `tracer`'s ring and session findable by a post-mortem reader. Call once at start-up,
/// after [`Tracer::set_boot_id`] if the firmware sets one.
pub fn register<C: Clock>(tracer: &'static Tracer<'static, C>) {
    let d = &MICROSPAN_POSTMORTEM;
    let l = tracer.ring.layout();
    let s = tracer.session();
    // Relaxed throughout: the descriptor is read by a debugger with the core halted, or by
    // `mark_crash` on this core after these stores.
    d.ring_words.store(l.words, Ordering::Relaxed);
    d.ring_capacity.store(l.capacity, Ordering::Relaxed);
    d.ring_head.store(l.head, Ordering::Relaxed);
    d.ring_tail.store(l.tail, Ordering::Relaxed);
    d.ring_dropped.store(l.dropped, Ordering::Relaxed);
    d.policy.store(l.overwrite as u32, Ordering::Relaxed);
    d.service_ptr
        .store(s.service.as_ptr() as usize, Ordering::Relaxed);
    d.service_len
        .store(s.service.len() as u32, Ordering::Relaxed);
    d.firmware_ptr
        .store(s.firmware_version.as_ptr() as usize, Ordering::Relaxed);
    d.firmware_len
        .store(s.firmware_version.len() as u32, Ordering::Relaxed);
    d.device_id[0].store(s.device_id as u32, Ordering::Relaxed);
    d.device_id[1].store((s.device_id >> 32) as u32, Ordering::Relaxed);
    d.boot_id.store(tracer.boot_id(), Ordering::Relaxed);
    d.ticks_per_second
        .store(tracer.clock().ticks_per_second(), Ordering::Relaxed);
    d.probe
        .store(probe::<C> as ProbeFn as usize, Ordering::Relaxed);
    d.tracer.store(
        tracer as *const Tracer<'static, C> as *mut (),
        Ordering::Release,
    );
}

/// Reads the clock and boot id of a registered tracer (type-erased by `register`).
type ProbeFn = fn(*const ()) -> u32;

/// Stores the tracer's boot id in the descriptor, then reads its clock (the user's code, which
/// may fault in a crash handler: last).
fn probe<C: Clock>(tracer: *const ()) -> u32 {
    // SAFETY: `register::<C>` stored this function beside a pointer made from a
    // `&'static Tracer<'static, C>` of the same `C`: valid, aligned and immutable (a tracer is
    // only used through `&`) forever.
    let t = unsafe { &*(tracer as *const Tracer<'static, C>) };
    MICROSPAN_POSTMORTEM
        .boot_id
        .store(t.boot_id(), Ordering::Relaxed);
    t.clock().now()
}

/// `crashed` while a crash handler writes its record: the reason is there once `reason_len` is;
/// the clock was not read yet (the handler faulted or panicked in it, or is still running).
const CRASH_MARKING: u32 = 2;
/// `crashed` once the crash record is whole, the clock's reading included.
const CRASH_MARKED: u32 = 1;

/// Whether [`mark_crash`] or [`mark_panic`] has run.
pub fn crashed() -> bool {
    MICROSPAN_POSTMORTEM.crashed.load(Ordering::Relaxed) != 0
}

/// Writes bytes into the reason buffer.
struct ReasonWriter {
    len: usize,
}

impl core::fmt::Write for ReasonWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let d = &MICROSPAN_POSTMORTEM;
        for &b in s.as_bytes() {
            if self.len >= REASON_BYTES {
                return Err(core::fmt::Error);
            }
            let w = &d.reason[self.len / 4];
            let shift = (self.len % 4) * 8;
            let old = w.load(Ordering::Relaxed);
            w.store(
                (old & !(0xFF << shift)) | (b as u32) << shift,
                Ordering::Relaxed,
            );
            self.len += 1;
        }
        Ok(())
    }
}

/// Starts a crash record; `None` when one was already written or is being written (the first
/// crash wins, and a handler that crashes again while it writes, in the user's clock or in
/// formatting the reason, does not recurse into another).
fn begin_crash() -> Option<ReasonWriter> {
    let d = &MICROSPAN_POSTMORTEM;
    // Load and store (not a swap): cores without compare-and-swap have no atomic swap, and
    // crash handlers do not run concurrently with each other on one core.
    if d.crashed.load(Ordering::Relaxed) != 0 {
        return None;
    }
    d.crashed.store(CRASH_MARKING, Ordering::Relaxed);
    for w in &d.reason {
        w.store(0, Ordering::Relaxed);
    }
    Some(ReasonWriter { len: 0 })
}

/// Ends the crash record: the reason's length, then the time from the registered tracer's clock
/// (the user's code, last: if it faults, the reason is kept and the host reads the crash time
/// from the newest record).
fn end_crash(w: ReasonWriter) {
    let d = &MICROSPAN_POSTMORTEM;
    d.reason_len.store(w.len as u32, Ordering::Relaxed);
    // Acquire pairs with the Release store in `register`: the tracer is fully built.
    let tracer = d.tracer.load(Ordering::Acquire);
    let probe = d.probe.load(Ordering::Relaxed);
    if !tracer.is_null() && probe != 0 {
        // SAFETY: a non-zero `probe` was stored by `register` from a `ProbeFn` (a function
        // pointer, never null, the same size as `usize` on every target microspan builds for)
        // before the Release store of `tracer` that the Acquire load above observed.
        let probe = unsafe { core::mem::transmute::<usize, ProbeFn>(probe) };
        let now = probe(tracer);
        d.crash_ticks.store(now, Ordering::Relaxed);
    }
    d.crashed.store(CRASH_MARKED, Ordering::Release);
}

/// Marks the session as crashed with `reason` (its first [`REASON_BYTES`] bytes), and the time
/// from the registered tracer's clock. Call from a HardFault handler (for example
/// `"HardFault at pc=0x…"`) before halting. The first crash wins; later calls do nothing.
pub fn mark_crash(reason: &str) {
    mark_crash_fmt(format_args!("{reason}"));
}

/// [`mark_crash`] with a formatted reason (no allocation; cut at [`REASON_BYTES`] bytes).
pub fn mark_crash_fmt(reason: core::fmt::Arguments<'_>) {
    if let Some(mut w) = begin_crash() {
        let _ = core::fmt::write(&mut w, reason);
        end_crash(w);
    }
}

/// Marks the session as crashed by a panic: `panicked at FILE:LINE:COL: MESSAGE`.
pub fn mark_panic(info: &core::panic::PanicInfo<'_>) {
    match info.location() {
        Some(l) => mark_crash_fmt(format_args!(
            "panicked at {}:{}:{}: {}",
            l.file(),
            l.line(),
            l.column(),
            info.message()
        )),
        None => mark_crash_fmt(format_args!("panicked: {}", info.message())),
    }
}

#[cfg(feature = "std")]
pub use host::*;

#[cfg(feature = "std")]
mod host {
    //! The host side: reading a target's RAM image and replaying its ring.
    use std::borrow::Cow;
    use std::collections::HashMap;
    use std::string::String;
    use std::sync::Mutex;
    use std::vec::Vec;

    use super::{offset, MAGIC, MAGIC_VERSION, REASON_BYTES};
    use crate::clock::Clock;
    use crate::drain::Drain;
    use crate::ring::{DynRing, Ring};
    use crate::tracer::{Session, Tracer};

    /// A target's memory, as a post-mortem reader sees it (a RAM dump plus the ELF's sections, or
    /// a live GDB server). Addresses are the target's.
    pub trait TargetMemory: Sync {
        /// `len` bytes at `addr`, or `None` where the memory is not known.
        fn read(&self, addr: u32, len: usize) -> Option<Vec<u8>>;
    }

    /// Resolves a target's static string (address and length) to a host string (used by the
    /// drain when it replays an image).
    pub trait ResolveStr: Sync {
        /// The string at `addr`, `len` bytes (lossy UTF-8; a placeholder when unreadable).
        fn resolve(&self, addr: u32, len: usize) -> &'static str;
    }

    /// Why an image could not be read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ImageError {
        /// The descriptor address holds no descriptor.
        NoDescriptor(u32),
        /// The descriptor has a layout version this reader does not know.
        Version(u32),
        /// The firmware never called `register`.
        NotRegistered,
        /// A part the reader needs is outside the memory given.
        Unreadable {
            /// What.
            what: &'static str,
            /// Where.
            addr: u32,
            /// How many bytes.
            len: u32,
        },
        /// The ring's indices make no sense (corrupted RAM).
        Corrupt(String),
    }

    impl core::fmt::Display for ImageError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                ImageError::NoDescriptor(a) => write!(f, "no microspan post-mortem descriptor at {a:#010x} (magic \"MSPN\" not found): is this the ELF of the firmware that ran, and does it call `microspan::postmortem::register`?"),
                ImageError::Version(v) => write!(f, "the post-mortem descriptor has layout version {v:#x}; this reader knows {MAGIC_VERSION:#x}: use the decoder from the firmware's microspan release"),
                ImageError::NotRegistered => f.write_str("the firmware never called `microspan::postmortem::register(&TRACER)`: the descriptor is empty"),
                ImageError::Unreadable { what, addr, len } => write!(f, "cannot read {what} ({len} bytes at {addr:#010x}): the RAM dump does not cover it (check --dump-base) or the GDB server refused"),
                ImageError::Corrupt(m) => write!(f, "the ring's state is corrupted: {m}"),
            }
        }
    }

    impl std::error::Error for ImageError {}

    fn read_exact(
        mem: &dyn TargetMemory,
        what: &'static str,
        addr: u32,
        len: u32,
    ) -> Result<Vec<u8>, ImageError> {
        match mem.read(addr, len as usize) {
            Some(b) if b.len() == len as usize => Ok(b),
            _ => Err(ImageError::Unreadable { what, addr, len }),
        }
    }

    fn word(b: &[u8], at: u32) -> u32 {
        let at = at as usize;
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// A snapshot of a target's ring and tracer state, read from its memory.
    #[derive(Debug, Clone)]
    pub struct RingImage {
        /// The descriptor's address.
        pub descriptor: u32,
        /// The ring's capacity in words.
        pub capacity: u32,
        /// `true` for a flight recorder (overwrite-oldest) ring.
        pub overwrite: bool,
        /// Producer position.
        pub head: u32,
        /// Consumer position (the oldest record not yet drained).
        pub tail: u32,
        /// The ring's loss counter (drops and evictions).
        pub dropped: u32,
        /// The words `[tail, head)`, oldest first.
        pub words: Vec<u32>,
        /// Service name.
        pub service: String,
        /// Firmware version.
        pub firmware_version: String,
        /// Device id.
        pub device_id: u64,
        /// Boot id.
        pub boot_id: u32,
        /// Clock rate.
        pub ticks_per_second: u32,
        /// The crash reason, when the firmware marked a crash.
        pub crash: Option<String>,
        /// The tick count at the crash: `None` without a crash, or when the crash handler did not
        /// get to read the clock (it faulted or panicked in it), when the replay dates the crash
        /// at the newest record instead.
        pub crash_ticks: Option<u32>,
    }

    /// What [`RingImage::to_stream`] made of the records.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Replay {
        /// The wire stream (frames, as the device's drain would have sent them).
        pub stream: Vec<u8>,
        /// Ring records replayed.
        pub records: u32,
        /// Words left unread: an uncommitted record (a producer interrupted by the crash), a
        /// record being evicted or handed back, or corrupted words. The replay skips them when
        /// whole records follow (see `resync`), else it stops there.
        pub unread_words: u32,
    }

    impl RingImage {
        /// Reads the descriptor at `descriptor` and the ring it points at.
        pub fn read(mem: &dyn TargetMemory, descriptor: u32) -> Result<Self, ImageError> {
            let d = read_exact(mem, "the descriptor", descriptor, offset::SIZE)?;
            if word(&d, offset::MAGIC) != MAGIC {
                return Err(ImageError::NoDescriptor(descriptor));
            }
            if word(&d, offset::VERSION) != MAGIC_VERSION {
                return Err(ImageError::Version(word(&d, offset::VERSION)));
            }
            let words_at = word(&d, offset::RING_WORDS);
            let capacity = word(&d, offset::RING_CAPACITY);
            if words_at == 0 {
                return Err(ImageError::NotRegistered);
            }
            if !capacity.is_power_of_two() || !(16..=1 << 24).contains(&capacity) {
                return Err(ImageError::Corrupt(format!(
                    "capacity {capacity} words is not a power of two from 16 to 2^24"
                )));
            }
            let index = |what, field| -> Result<u32, ImageError> {
                let addr = word(&d, field);
                Ok(word(&read_exact(mem, what, addr, 4)?, 0))
            };
            let head = index("the ring's head", offset::RING_HEAD)?;
            let tail = index("the ring's tail", offset::RING_TAIL)?;
            let dropped = index("the ring's drop counter", offset::RING_DROPPED)?;
            let used = head.wrapping_sub(tail);
            if used > capacity {
                return Err(ImageError::Corrupt(format!(
                    "head {head} is {used} words past tail {tail}, more than the capacity {capacity}"
                )));
            }
            let all = read_exact(mem, "the ring's words", words_at, capacity * 4)?;
            let words = (0..used)
                .map(|i| word(&all, (tail.wrapping_add(i) & (capacity - 1)) * 4))
                .collect();
            let string = |what, ptr_field, len_field| -> String {
                let len = word(&d, len_field).min(4096);
                if len == 0 {
                    return String::new();
                }
                read_exact(mem, what, word(&d, ptr_field), len)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|_| "<unreadable>".into())
            };
            let crashed = word(&d, offset::CRASHED);
            let crash = (crashed != 0).then(|| {
                let at = offset::REASON as usize;
                let area = &d[at..at + REASON_BYTES];
                let len = match word(&d, offset::REASON_LEN) as usize {
                    // A handler that stopped while it formatted the reason: what it wrote, up to
                    // the zeros it cleared the area with.
                    0 if crashed != super::CRASH_MARKED => {
                        area.iter().position(|&b| b == 0).unwrap_or(REASON_BYTES)
                    }
                    n => n.min(REASON_BYTES),
                };
                let reason = String::from_utf8_lossy(&area[..len]).into_owned();
                if crashed == super::CRASH_MARKED {
                    reason
                } else {
                    format!(
                        "{reason} (the crash handler stopped before it was done: a fault or \
                         panic in the firmware's clock or in the reason's formatting; the crash \
                         is dated at the newest record)"
                    )
                }
            });
            Ok(Self {
                descriptor,
                capacity,
                overwrite: word(&d, offset::POLICY) != 0,
                head,
                tail,
                dropped,
                words,
                service: string("the service name", offset::SERVICE_PTR, offset::SERVICE_LEN),
                firmware_version: string(
                    "the firmware version",
                    offset::FIRMWARE_PTR,
                    offset::FIRMWARE_LEN,
                ),
                device_id: word(&d, offset::DEVICE_ID_LO) as u64
                    | (word(&d, offset::DEVICE_ID_HI) as u64) << 32,
                boot_id: word(&d, offset::BOOT_ID),
                ticks_per_second: word(&d, offset::TICKS_PER_SECOND).max(1),
                crash,
                crash_ticks: (word(&d, offset::CRASHED) == super::CRASH_MARKED)
                    .then(|| word(&d, offset::CRASH_TICKS)),
            })
        }

        /// Finds the descriptor by its magic number in `[start, start + len)` (word-aligned).
        pub fn scan(mem: &dyn TargetMemory, start: u32, len: u32) -> Option<u32> {
            let bytes = mem.read(start, len as usize)?;
            let magic = MAGIC.to_le_bytes();
            let version = MAGIC_VERSION.to_le_bytes();
            (0..bytes.len().saturating_sub(7))
                .step_by(4)
                .find(|&i| bytes[i..i + 4] == magic && bytes[i + 4..i + 8] == version)
                // A dump running past the 32-bit address space finds nothing there.
                .and_then(|i| start.checked_add(i as u32))
        }

        /// Replays the records through the drain, as the device would have sent them: a wire
        /// stream any decoder reads. Static strings are read through `mem` (usually the ELF's
        /// read-only data).
        pub fn to_stream(&self, mem: &dyn TargetMemory) -> Replay {
            macro_rules! sizes {
                ($($n:literal)*) => {
                    match self.capacity {
                        $( c if c == 1 << $n => self.replay(&*zeroed_ring::<{ 1 << $n }>(), mem), )*
                        _ => Replay::default(),
                    }
                };
            }
            sizes!(4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24)
        }

        fn replay(&self, ring: &DynRing, mem: &dyn TargetMemory) -> Replay {
            // First, so it is dropped last: the strings it keeps are lent as `&'static str` to
            // the session, tracer, resolver and drain below, which are all dropped before it.
            let arena = Arena::default();
            // An image holds at most a ring of words: `read` makes it so, but the fields are
            // public, and words beyond the capacity would be restored over each other.
            let image = &self.words[..self.words.len().min(self.capacity as usize)];
            let used = image.len() as u32;
            let (words, valid, skipped) = resync(image);
            let tail = self.tail;
            // The drops come first, in a frame of their own: the decoder blames drops on the spans
            // open (or started) in the frame that reports them, and these happened before any
            // record left in the ring.
            ring.restore(tail, tail, self.dropped, |_| 0);
            // The crash time, unless it reads earlier than the newest record: a tick counter
            // extended by an interrupt (a SysTick wrap count) can read stale in a fault handler
            // with interrupts masked.
            let latest = latest_ticks(&words[..valid as usize]);
            let now = match (self.crash_ticks, latest) {
                (Some(c), Some(l)) if (c.wrapping_sub(l) as i32) < 0 => l,
                (Some(c), _) => c,
                (None, l) => l.unwrap_or(0),
            };
            let clock = Frozen {
                now,
                tps: self.ticks_per_second,
            };
            // SAFETY: `session` is dropped before `arena` (declared after it) and lent only to
            // `tracer` and the drain, dropped before it too.
            let service = unsafe { arena.keep(self.service.clone()) };
            // SAFETY: as for `service`.
            let firmware_version = unsafe { arena.keep(self.firmware_version.clone()) };
            let session = Session {
                service,
                device_id: self.device_id,
                boot_id: self.boot_id,
                firmware_version,
            };
            let tracer = Tracer::with_dyn_ring(ring, &clock, &session);
            let strings = Resolver {
                mem,
                arena: &arena,
                cache: Mutex::new((HashMap::new(), 16 << 20)),
            };
            let mut out = Replay::default();
            {
                let Some(mut drain) = Drain::<'_, 4096, 256>::new(&tracer) else {
                    return out;
                };
                drain.set_target_strings(&strings);
                drain.drain_with(|b| {
                    out.stream.extend_from_slice(b);
                    b.len()
                });
                ring.restore(tail.wrapping_add(valid), tail, self.dropped, |pos| {
                    words[pos.wrapping_sub(tail) as usize]
                });
                // Every record is older than the crash, maybe from before the clock wrapped.
                drain.date_waiting_records();
                drain.drain_with(|b| {
                    out.stream.extend_from_slice(b);
                    b.len()
                });
                out.records = drain.stats().records;
            }
            out.unread_words = used - valid + skipped;
            out
        }
    }

    /// The record at the start of `rec` (`rec` runs to the end of the used words), if it reads
    /// whole: its length.
    fn record_len(rec: &[u32]) -> Option<u32> {
        let h = rec[0];
        let (kind, len) = (h & 0xF, (h >> 4) & 0xFF);
        if kind == 0 || len == 0 || len as usize > rec.len() {
            return None;
        }
        let rec = &rec[..len as usize];
        let ok = if kind == crate::ring::PAD {
            // A pad holds nothing: it runs to the end of the array, or ends a batch of tags or
            // a tuple log whose second conversion came out shorter (see `write_tags`). A
            // reservation padded while unwinding from a panic keeps what was written in it and
            // is not accepted here: only host builds unwind, and a device image is not read
            // after one.
            h >> 12 == 0 && rec[1..].iter().all(|&w| w == 0)
        } else {
            plausible(rec)
        };
        ok.then_some(len)
    }

    /// The used words as the drain can replay them: the words, how many of them it reads, and
    /// how many in between it skips.
    ///
    /// Records are read from the oldest on. A header that is zero or impossible stops them: a
    /// record not committed yet (its producer was interrupted by the crash), or one being
    /// evicted or handed back when the image was taken (both zero a record from its header on),
    /// or corrupted words. What follows may still be whole: the first later position, within
    /// one record's length, from which whole records run exactly to the end is taken for the
    /// next record, and the words before it become a pad (skipped, counted unread); so on for
    /// each gap. Without such a position (nothing whole after a gap reads to the end) the replay
    /// stops at the first gap.
    fn resync(words: &[u32]) -> (Cow<'_, [u32]>, u32, u32) {
        let used = words.len();
        let window = crate::ring::MAX_RECORD_WORDS as usize;
        // Worked out from the end back, once per position (so linear in the ring):
        // - `len[p]`: the length of the whole record at `p`, if one starts there;
        // - `done[p]`: whether the used words from `p` on read to the end: a whole record whose
        //   successor reads on, or (no record at `p`: a gap) a record starting within one
        //   record's length after `p` that reads on;
        // - `good[i]`: how many positions from `i` on start a record that reads on, to ask
        //   "is there one in this window" in one subtraction.
        let mut len = vec![0u32; used];
        let mut done = vec![false; used + 1];
        let mut good = vec![0u32; used + 2];
        done[used] = true;
        for p in (0..used).rev() {
            let l = record_len(&words[p..]).unwrap_or(0);
            len[p] = l;
            done[p] = if l > 0 {
                done[p + l as usize]
            } else {
                let end = (p + 1 + window).min(used);
                good[p + 1] > good[end]
            };
            good[p] = good[p + 1] + u32::from(l > 0 && done[p]);
        }
        let mut at = 0;
        let mut patched: Option<Vec<u32>> = None;
        let mut skipped = 0;
        while at < used {
            if len[at] > 0 && (done[at] || !done[0]) {
                // A whole record (when nothing reads to the end, the records up to the first gap
                // are still read).
                at += len[at] as usize;
                continue;
            }
            if !done[at] {
                break;
            }
            // A gap: the next record that reads on becomes the end of a pad.
            let next = (at + 1..(at + 1 + window).min(used))
                .find(|&q| len[q] > 0 && done[q])
                .unwrap_or(used);
            let w = patched.get_or_insert_with(|| words.to_vec());
            w[at] = crate::ring::PAD | ((next - at) as u32) << 4;
            w[at + 1..next].fill(0);
            skipped += (next - at) as u32;
            at = next;
        }
        let read = at as u32;
        match patched {
            Some(w) => (Cow::Owned(w), read, skipped),
            None => (Cow::Borrowed(words), read, 0),
        }
    }

    /// Whether a 32-bit target's record header describes a record the drain can replay (RAM may be
    /// corrupted: nothing read from it is trusted).
    fn plausible(rec: &[u32]) -> bool {
        let h = rec[0];
        let len = (h >> 4) & 0xFF;
        let payload = h >> 12;
        match h & 0xF {
            crate::record::START => len == 5,
            crate::record::START_REMOTE => len == 9,
            crate::record::END => len == 3 + (payload & 1),
            crate::record::TAG => fields_fit(rec, 2, 1),
            crate::record::LOG => fields_fit(rec, 3, payload),
            crate::record::BAGGAGE => {
                // The carried mark is both bits or neither.
                let mark = payload & crate::record::BAGGAGE_CARRIED;
                let k = (payload & crate::record::BAGGAGE_KEY_MASK) as usize;
                let v = (payload >> crate::record::BAGGAGE_VALUE_SHIFT) as usize;
                // The longest any build records (`build.rs` caps both at 255), not this
                // host's own capacities: the firmware may have been built with larger ones.
                (mark == 0 || mark == crate::record::BAGGAGE_CARRIED)
                    && v <= 255
                    && len == 2 + crate::record::byte_words(k) + crate::record::byte_words(v)
            }
            crate::record::REF => len == 8,
            _ => false,
        }
    }

    /// Whether `n` fields starting at word `at` end exactly at the record's end (32-bit layout:
    /// field header, key pointer, value words).
    fn fields_fit(rec: &[u32], mut at: usize, n: u32) -> bool {
        for _ in 0..n {
            let Some(&w) = rec.get(at) else {
                return false;
            };
            let value = match w & 0xF {
                crate::record::V_BOOL => 0,
                crate::record::V_I64 | crate::record::V_U64 | crate::record::V_F64 => 2,
                crate::record::V_STR => 1,
                crate::record::V_TEXT => crate::record::byte_words((w >> 16) as usize) as usize,
                _ => return false,
            };
            at += 2 + value;
        }
        at == rec.len()
    }

    /// The newest tick value of the START/END/LOG records in `words` (a 32-bit target's layout).
    fn latest_ticks(words: &[u32]) -> Option<u32> {
        let mut at = 0usize;
        let mut last = None;
        while at < words.len() {
            let h = words[at];
            let len = ((h >> 4) & 0xFF) as usize;
            if len == 0 || at + len > words.len() {
                break;
            }
            let ticks_at = match h & 0xF {
                crate::record::START => Some(4),
                crate::record::START_REMOTE => Some(8),
                crate::record::END | crate::record::LOG => Some(2),
                _ => None,
            };
            if let Some(i) = ticks_at.filter(|&i| i < len) {
                last = Some(words[at + i]);
            }
            at += len;
        }
        last
    }

    /// A clock stopped at the crash.
    struct Frozen {
        now: u32,
        tps: u32,
    }

    impl Clock for Frozen {
        fn now(&self) -> u32 {
            self.now
        }
        fn ticks_per_second(&self) -> u32 {
            self.tps
        }
    }

    /// The host copies of the target's strings one replay makes, freed with it. The drain and
    /// the session take `&'static str`s (on a device, strings in flash); a replay lends them
    /// these copies for as long as it runs. (Leaked instead, every replay would grow the process
    /// for good: a tool reading images repeatedly, a fuzzer.)
    #[derive(Default)]
    struct Arena(Mutex<Vec<Box<str>>>);

    impl Arena {
        /// Keeps `s` until the arena is dropped.
        ///
        /// # Safety
        ///
        /// The returned reference must not be used once the arena is dropped.
        unsafe fn keep(&self, s: String) -> &'static str {
            let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            kept.push(s.into_boxed_str());
            // Taken from the stored box, after the move into the vector (a pointer taken before
            // would be invalidated by that move of a `Box`).
            let ptr: *const str = kept.last().map_or("", |b| &**b);
            drop(kept);
            // SAFETY: the string's heap allocation does not move when the vector reallocates
            // (only the box's pointer is copied), and is freed only when the arena is dropped
            // (the vector only grows); the caller does not use the reference past that.
            unsafe { &*ptr }
        }
    }

    /// A ring of `N` words, zeroed on the heap (never on the stack: it may be large).
    fn zeroed_ring<const N: usize>() -> Box<Ring<N>> {
        let layout = std::alloc::Layout::new::<Ring<N>>();
        // SAFETY: `layout` is not zero-sized (a ring has words). All-zero bytes are a valid
        // `Ring<N>`: atomics and `bool`s (`false`) are valid zeroed, and an all-zero ring is an
        // empty drop-new ring with positions 0 (`restore` sets them). The pointer comes from the
        // global allocator with `Ring<N>`'s layout, as `Box::from_raw` requires.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout) as *mut Ring<N>;
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(p)
        }
    }

    /// Target strings resolved so far, by address and length.
    type StrCache = HashMap<(u32, usize), &'static str>;

    /// Resolves and caches target strings, within a byte budget.
    struct Resolver<'m> {
        mem: &'m dyn TargetMemory,
        /// Where the resolved strings are kept (the replay's: it outlives the drain).
        arena: &'m Arena,
        /// Strings resolved so far, and the bytes the replay may still copy.
        cache: Mutex<(StrCache, usize)>,
    }

    impl ResolveStr for Resolver<'_> {
        fn resolve(&self, addr: u32, len: usize) -> &'static str {
            let mut guard = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let (cache, budget) = &mut *guard;
            if let Some(s) = cache.get(&(addr, len)) {
                return s;
            }
            let want = len.min(4096);
            let s: &'static str = if want > *budget {
                "<string over the replay's memory budget>"
            } else {
                match self.mem.read(addr, want) {
                    Some(b) if b.len() == want => {
                        *budget -= want;
                        // SAFETY: the resolver is lent only to the drain, dropped before the
                        // replay's arena (see `replay`).
                        unsafe { self.arena.keep(String::from_utf8_lossy(&b).into_owned()) }
                    }
                    _ => "<unreadable string>",
                }
            };
            cache.insert((addr, len), s);
            s
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    /// A flat memory image: `base..base + bytes.len()`.
    struct Flat {
        base: u32,
        bytes: Vec<u8>,
    }

    impl TargetMemory for Flat {
        fn read(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
            let start = addr.checked_sub(self.base)? as usize;
            self.bytes
                .get(start..start.checked_add(len)?)
                .map(<[u8]>::to_vec)
        }
    }

    fn put(b: &mut [u8], at: u32, w: u32) {
        b[at as usize..at as usize + 4].copy_from_slice(&w.to_le_bytes());
    }

    /// A descriptor at 0x100, indices at 0x200, a 64-word ring at 0x400 filled with `words`.
    fn image(head: u32, tail: u32, words: &[u32]) -> Flat {
        let base = 0x2000_0000;
        let mut b = vec![0u8; 0x1000];
        let d = 0x100;
        put(&mut b, d + offset::MAGIC, MAGIC);
        put(&mut b, d + offset::VERSION, MAGIC_VERSION);
        put(&mut b, d + offset::RING_WORDS, base + 0x400);
        put(&mut b, d + offset::RING_CAPACITY, 64);
        put(&mut b, d + offset::RING_HEAD, base + 0x200);
        put(&mut b, d + offset::RING_TAIL, base + 0x204);
        put(&mut b, d + offset::RING_DROPPED, base + 0x208);
        put(&mut b, d + offset::TICKS_PER_SECOND, 1_000);
        put(&mut b, 0x200, head);
        put(&mut b, 0x204, tail);
        for (i, w) in words.iter().enumerate().take(64) {
            put(&mut b, 0x400 + 4 * i as u32, *w);
        }
        Flat { base, bytes: b }
    }

    #[test]
    fn hostile_images_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        for round in 0..2_000 {
            let words: Vec<u32> = (0..64)
                .map(|_| match next() % 4 {
                    // Plausible-looking headers half the time, garbage otherwise.
                    0 | 1 => (next() % 8) | ((next() % 12) << 4) | (next() << 12),
                    _ => next(),
                })
                .collect();
            let tail = next() % 1000;
            let head = tail.wrapping_add(if round % 7 == 0 { next() } else { next() % 65 });
            let mem = image(head, tail, &words);
            if let Ok(img) = RingImage::read(&mem, 0x2000_0100) {
                let _ = img.to_stream(&mem);
            }
        }
    }

    /// A clock that faults in the crash handler (a panic here) leaves the reason marked, and a
    /// handler that runs again meanwhile writes nothing and calls nothing (found by an audit:
    /// the clock was read first, so a faulting clock left no mark, and a panic in it recursed
    /// through the panic handler).
    #[test]
    fn a_crash_handler_whose_clock_faults_keeps_its_reason() {
        struct Faulting;
        impl Clock for Faulting {
            fn now(&self) -> u32 {
                panic!("the timer's peripheral clock is gated")
            }
            fn ticks_per_second(&self) -> u32 {
                1_000
            }
        }
        static RING: crate::Ring<16> = crate::Ring::new();
        static SESSION: crate::Session = crate::Session::new("svc");
        static TRACER: Tracer<'static, Faulting> = Tracer::with_clock(&RING, Faulting, &SESSION);
        register(&TRACER);
        let d = &MICROSPAN_POSTMORTEM;
        assert!(std::panic::catch_unwind(|| mark_crash("HardFault at pc=0x1234")).is_err());
        assert!(crashed());
        assert_eq!(d.crashed.load(Ordering::Relaxed), CRASH_MARKING);
        assert_eq!(d.reason_len.load(Ordering::Relaxed), 22);
        // Again, as from a fault in the handler: no clock call (it would panic), no new reason.
        mark_crash("again");
        assert_eq!(d.reason[0].load(Ordering::Relaxed).to_le_bytes(), *b"Hard");

        // What the host reads of such a record, and of a whole one.
        let mut mem = image(0, 0, &[]);
        let at = 0x100;
        put(&mut mem.bytes, at + offset::CRASHED, CRASH_MARKING);
        put(&mut mem.bytes, at + offset::CRASH_TICKS, 77);
        mem.bytes[(at + offset::REASON) as usize..][..4].copy_from_slice(b"boom");
        let img = RingImage::read(&mem, 0x2000_0100).unwrap();
        let reason = img.crash.unwrap();
        assert!(
            reason.starts_with("boom (the crash handler stopped before it was done"),
            "{reason}"
        );
        assert_eq!(img.crash_ticks, None, "the clock was not read");
        put(&mut mem.bytes, at + offset::CRASHED, CRASH_MARKED);
        put(&mut mem.bytes, at + offset::REASON_LEN, 4);
        let img = RingImage::read(&mem, 0x2000_0100).unwrap();
        assert_eq!(img.crash.as_deref(), Some("boom"));
        assert_eq!(img.crash_ticks, Some(77));
        // The descriptor is this test binary's only one: left unmarked for any other test.
        d.crashed.store(0, Ordering::Relaxed);
        d.reason_len.store(0, Ordering::Relaxed);
    }

    /// A pad in the middle of the ring (a tag batch that came out shorter than sized) is read
    /// past when it is empty (no payload, body zero); one that is not stops the replay there.
    #[test]
    fn an_empty_pad_mid_ring_is_read_past() {
        // END records (header, span, time) around a 2-word pad.
        let end = |span| [3 | 3 << 4, span, 10 * span];
        let replay = |pad: [u32; 2]| {
            let words: Vec<u32> = [&end(1)[..], &pad, &end(2)].concat();
            let mem = image(8, 0, &words);
            let r = RingImage::read(&mem, 0x2000_0100).unwrap().to_stream(&mem);
            (r.records, r.unread_words)
        };
        assert_eq!(replay([0xF | 2 << 4, 0]), (2, 0));
        // A pad that is not empty is not read; the record after it is (see below).
        assert_eq!(replay([0xF | 2 << 4, 7]), (2, 2), "a pad with a body");
        assert_eq!(
            replay([0xF | 2 << 4 | 1 << 12, 0]),
            (2, 2),
            "a pad with a payload"
        );
    }

    /// A record whose header reads zero stops the records at it, and the replay goes on from the
    /// next whole record: the image may have been taken while a producer evicted the oldest
    /// record (a flight recorder zeroes it from its header on before it moves `tail`), while the
    /// drain handed records back, or while a producer interrupted by the crash had not
    /// committed its record yet.
    #[test]
    fn the_replay_goes_on_after_a_record_that_reads_zero() {
        let end = |span| [3 | 3 << 4, span, 10 * span];
        let words: Vec<u32> = [end(1), end(2), end(3)].concat();
        let replay = |words: &[u32]| {
            let mem = image(words.len() as u32, 0, words);
            let r = RingImage::read(&mem, 0x2000_0100).unwrap().to_stream(&mem);
            (r.records, r.unread_words)
        };
        assert_eq!(replay(&words), (3, 0));
        // Being evicted: the header zeroed, `tail` not moved yet.
        let mut evicting = words.clone();
        evicting[0] = 0;
        assert_eq!(replay(&evicting), (2, 3));
        // Half zeroed.
        evicting[1] = 0;
        assert_eq!(replay(&evicting), (2, 3));
        // Not committed, in the middle, its body written (span ids and times that are no header).
        let mut uncommitted = words.clone();
        uncommitted[3] = 0;
        uncommitted[4] = 0xDEAD_BEE0;
        assert_eq!(replay(&uncommitted), (2, 3));
        // Nothing whole after the gap: the replay stops there.
        let mut torn = words.clone();
        torn[6] = 0;
        assert_eq!(replay(&torn), (2, 3));
        // Two gaps (the oldest being evicted, a later one never committed): both skipped.
        let four: Vec<u32> = [end(1), end(2), end(3), end(4)].concat();
        let mut two = four.clone();
        two[0] = 0;
        two[6] = 0;
        two[7] = 0xDEAD_BEE0;
        assert_eq!(replay(&two), (2, 6));
        // A second gap with nothing whole after it: the replay stops at the first.
        let mut stuck = four.clone();
        stuck[3] = 0;
        stuck[9] = 0;
        stuck[10] = 0;
        stuck[11] = 0;
        assert_eq!(replay(&stuck), (1, 9));
    }

    /// A baggage item longer than this host's own capacities (firmware built with larger
    /// `MICROSPAN_MAX_BAGGAGE_*_LEN`) is replayed, not taken for garbage.
    #[test]
    fn baggage_longer_than_the_hosts_capacity_is_replayed() {
        let (k, v) = (40u32, 30u32);
        assert!(k as usize > crate::config::MAX_BAGGAGE_KEY_LEN);
        let len = 2 + k.div_ceil(4) + v.div_ceil(4);
        let mut words = vec![crate::record::BAGGAGE | len << 4 | (k | v << 10) << 12, 1];
        words.extend(core::iter::repeat_n(
            u32::from_le_bytes(*b"abcd"),
            (len - 2) as usize,
        ));
        let end = [3 | 3 << 4, 1, 10];
        words.extend_from_slice(&end);
        let mem = image(words.len() as u32, 0, &words);
        let r = RingImage::read(&mem, 0x2000_0100).unwrap().to_stream(&mem);
        assert_eq!((r.records, r.unread_words), (2, 0));
    }

    /// The carried mark of a BAGGAGE record comes through the replay: the stream holds a
    /// `BAGGAGE_CARRIED` for it and a `BAGGAGE` for an item set, and a record with only one of
    /// the two carried bits (never written) is not taken for a whole record.
    #[test]
    fn carried_baggage_is_replayed_as_carried() {
        use crate::record::{BAGGAGE, BAGGAGE_CARRIED};
        use crate::wire::decode::{Accumulator, Record, RecordDecoder};
        let abc = u32::from_le_bytes(*b"abc\0");
        let rec = |flag: u32| [BAGGAGE | 4 << 4 | (3 | flag | 3 << 10) << 12, 1, abc, abc];
        let mut words = rec(BAGGAGE_CARRIED).to_vec();
        words.extend_from_slice(&rec(0));
        words.extend_from_slice(&[3 | 3 << 4, 1, 10]);
        let mem = image(words.len() as u32, 0, &words);
        let r = RingImage::read(&mem, 0x2000_0100).unwrap().to_stream(&mem);
        assert_eq!((r.records, r.unread_words), (3, 0));
        let mut acc: Box<Accumulator<1024>> = Box::default();
        let mut input = &r.stream[..];
        let mut carried = Vec::new();
        while !input.is_empty() {
            let (f, rest) = acc.feed(input);
            input = rest;
            if let Some(Ok(f)) = f {
                for rec in RecordDecoder::new(&f) {
                    if let Ok(Record::Baggage {
                        key,
                        value,
                        carried: c,
                        ..
                    }) = rec
                    {
                        assert_eq!((key, value), ("abc", "abc"));
                        carried.push(c);
                    }
                }
            }
        }
        assert_eq!(carried, [true, false]);
        // One of the two carried bits alone is never written: a header with it is not a whole
        // record, and the replay skips it (the two records after it read on to the head).
        let mut odd = words.clone();
        odd[0] &= !((1 << 9) << 12);
        let mem = image(odd.len() as u32, 0, &odd);
        let r = RingImage::read(&mem, 0x2000_0100).unwrap().to_stream(&mem);
        assert_eq!((r.records, r.unread_words), (2, 4));
    }

    #[test]
    fn missing_or_foreign_descriptors_are_errors() {
        let mem = image(1, 1, &[]);
        assert!(matches!(
            RingImage::read(&mem, 0x2000_0104),
            Err(ImageError::NoDescriptor(_))
        ));
        assert_eq!(
            RingImage::scan(&mem, 0x2000_0000, 0x1000),
            Some(0x2000_0100)
        );
        let img = RingImage::read(&mem, 0x2000_0100).unwrap();
        assert!(img.words.is_empty() && img.crash.is_none());
        let replay = img.to_stream(&mem);
        assert_eq!((replay.records, replay.unread_words), (0, 0));
    }
}
