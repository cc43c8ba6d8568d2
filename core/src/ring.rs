//! The lock-free multi-producer, single-consumer ring of word records.
//!
//! # Shape
//! The ring is an array of `N` 32-bit words (`N` a power of two). A record is a header word
//! followed by up to 254 body words; the header holds the record's kind and length and is written
//! **last**, with a single `Release` store, so the consumer never sees half a record. Positions are
//! free-running `u32` word counters (`head` for producers, `tail` for the oldest live record,
//! `free` for the first word not yet handed back zeroed); the index of a position is `pos % N`.
//! A record never wraps around the end of the array: when the words left before the end are too
//! few, the producer reserves them too and fills them with a pad record (kind `0xF`, skipped by
//! the consumer and never counted as a loss), and its record starts at index 0. (A pad also ends
//! a batch of tags whose second walk came out shorter than the first, and stands for a whole
//! reservation whose writer panicked: see `Reservation::pad_on_unwind`.) So a producer writes
//! its record with plain stores at fixed offsets from one address. Every word in
//! `[head, free + N)` is zero. In the overwrite policy `tail == free` outside the short windows
//! described below; the drop-new policy keeps no separate `tail` (only its consumer moves
//! `free`, and the records it has read but not handed back yet, at most a quarter of the ring
//! while it builds a frame, lie just below its own cursor).
//!
//! # Policies: what happens when the ring is full
//! Chosen when the ring is built (`const`, in the `static`'s initializer), so the record path
//! carries no policy test on its common path: the policy is only looked at once the ring is full.
//! - [`Policy::DropNew`] ([`Ring::new`], the default): the **new** record is dropped and counted.
//!   What was recorded first survives; what a host has not read yet is never lost silently.
//! - [`Policy::Overwrite`] ([`Ring::flight_recorder`]): the **oldest committed** records are
//!   evicted to make room, so the ring always holds the latest events for post-mortem reading.
//!   Each eviction is counted exactly, in the same drop counter (the wire's `DROPS` total), and
//!   separately in [`evicted`](RingCore::evicted). A record is never evicted while it is
//!   uncommitted (its producer was preempted mid-record) or while the drain is encoding it: then
//!   the *new* record is dropped and counted instead, exactly as in the drop-new policy.
//!
//! # Protocol
//! - **Reserve** (any producer): read `free` (`Acquire`, pairs with the `Release` store of `free`
//!   in `freed`, once the consumer or an evicting producer has zeroed the words below it), then
//!   `head`; `need` is `len`, plus the words before the end of the array if `len` does not fit
//!   in them; if `head - free + need > N` the ring is full (see below); else compare-and-swap
//!   `head` to `head + need`. The words `[head, head + need)` are then owned by this producer
//!   alone; it
//!   commits the pad (if any) at once, then writes its record after it. When only the pad fits,
//!   the producer takes and commits the pad alone and tries again from the start of the array (so
//!   a record over half the ring is never refused for ever because of where `head` stands).
//! - **Write** the body words (`Relaxed`: nobody reads them before the header says so).
//! - **Commit**: store the non-zero header (`Release`, pairs with the `Acquire` loads of the header
//!   in `peek` and `evict_oldest`): this publishes the whole record.
//! - **Several records in one reservation** (a span started with tags, `set_tags`): the producer
//!   writes every record's body and the headers of all but the first with plain stores, then
//!   commits the first header last. The consumer and an evicting producer reach a later header
//!   only by walking past the first, which they read with `Acquire`, so they see each record
//!   complete; from then on the records are independent (each is consumed or evicted alone).
//! - **Consume** (the single drain): load the header at the consumer's cursor (`Acquire`); zero
//!   means "not written yet"; a pad is skipped; otherwise read the body and move the cursor past
//!   the record. The words read are then handed back: zeroed, then `tail` and `free` advanced
//!   (`Release`). In the drop-new policy that happens for many records at once (when the drain
//!   has built its frame, or has read a quarter of the ring), one zeroing pass (`memset`) and one
//!   store of `free` instead of one per record; the consumer reads on from its own cursor
//!   meanwhile. In the overwrite policy it happens for each record (see below).
//! - **One core** (crate feature `single-core`): the `Acquire`/`Release` accesses above become
//!   relaxed accesses with compiler fences. Thread mode and interrupt handlers of one core see
//!   each other's memory accesses in program order, so the barrier instructions (`dmb`) buy
//!   nothing there; on a chip with several cores the feature must stay off.
//! - **Full, drop-new**: count the drop; return.
//! - **Full, overwrite** (`evict_oldest`): try to take the `busy` flag (one compare-and-swap,
//!   never a wait).
//!   If it is taken (another producer is evicting, or the drain is encoding the oldest record),
//!   or the oldest record is uncommitted (header zero), drop the new record and count it.
//!   Otherwise zero the oldest record's words, advance `tail` and `free` past it (`Release`), count
//!   the eviction, clear `busy` (`Release`) and retry the reservation.
//! - **Consume, overwrite**: the drain takes the same `busy` flag before it reads the oldest record
//!   (if it is taken, the drain finds nothing this time and returns), keeps it while it encodes the
//!   record (the record's static-string pointers are dereferenced, so a record must never change
//!   under the reader) and clears it when it releases the record or leaves it for the next frame.
//!   The drain re-reads `tail` *after* taking the flag, so a record that an evicting producer
//!   overwrote between the drain's last look and now is never read: the drain simply meets the
//!   next one. (A seqlock-style "read, then check `tail` again" would not do here: the drain
//!   follows pointers stored in the record while encoding it.)
//!
//! # Progress guarantee (stated honestly)
//! - Producers are **lock-free, not wait-free**: a producer's compare-and-swap fails only because
//!   another producer's succeeded, so some producer always progresses. A producer never waits for
//!   another one: an interrupt handler preempting a thread-mode writer in the middle of a record
//!   reserves its own space and finishes. On a single core, a preempted reservation retries at most
//!   once per preemption. A full ring never blocks: the new record is dropped (or, in the overwrite
//!   policy, old records are evicted) and every loss is counted exactly.
//! - In the overwrite policy the `busy` flag is a **try-lock that nobody waits for**: whoever finds
//!   it taken gives up at once (a producer drops its new record and counts it; the drain returns
//!   with nothing read). So the overwrite policy degrades to drop-new while the drain is encoding
//!   one record, or while a preempted producer is in the middle of an eviction (a few dozen
//!   instructions, plus however long the preemption lasts) — it never stalls anybody.
//! - The consumer is **blocking-free but not lock-free**: records are consumed in reservation
//!   order, so a producer preempted between reserve and commit holds back the drain (not other
//!   producers) until it resumes. The drain then simply finds nothing to read and returns; it never
//!   spins. A producer that never resumes (a thread killed mid-record) would stall the drain for
//!   good; Rust threads cannot be killed that way, and on a microcontroller a handler that never
//!   returns stalls the whole core anyway. The only code not the tracer's own that runs between a
//!   reservation and its commit is a batch of tags' (a `Tags` implementation, conversions to
//!   `Value`): if it panics and the panic unwinds (a host build; the embedded targets abort), the
//!   reservation is published as a pad on the way out, and the drain goes on past it.
//! - On cores without compare-and-swap (Cortex-M0/M0+, RISC-V without the A extension) the
//!   reservation is a short critical section (`critical-section`; see `atomic.rs`): interrupts
//!   are masked for a handful of instructions, never while waiting for anything. Masking
//!   interrupts does not hold off NMI and HardFault, so on those cores **do not record spans from
//!   an NMI or HardFault handler**: one that preempts a reservation in its critical section could
//!   be handed the same words. (`postmortem::mark_crash` and `mark_panic` do not touch the ring
//!   and are meant for those handlers.) On cores with compare-and-swap every handler may record:
//!   exception entry and return clear the exclusive monitor, so a preempted reservation retries.
//!
//! # Use from an interrupt handler
//! ```
//! use microspan::{Clock, Ring, Session, Tracer};
//! struct Ticks;
//! impl Clock for Ticks {
//!     fn now(&self) -> u32 { 42 }
//!     fn ticks_per_second(&self) -> u32 { 1_000_000 }
//! }
//! static RING: Ring<256> = Ring::new();
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("sensor-node"));
//!
//! // #[interrupt]
//! fn uart0() {
//!     let span = TRACER.root("uart0-rx");
//!     span.set_tag("bytes", 12u32);
//! } // finished on drop
//! # uart0();
//! assert_eq!(RING.dropped(), 0);
//! ```
//!
//! A flight recorder keeps the latest events instead of the first ones:
//! ```
//! use microspan::{Clock, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 42 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
//! static RING: Ring<64> = Ring::flight_recorder();
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("sensor-node"));
//! for _ in 0..100 {
//!     TRACER.root("tick").finish();
//! }
//! // No drain ran: the oldest records were evicted, each one counted.
//! assert!(RING.evicted() > 0);
//! assert_eq!(RING.dropped(), RING.evicted());
//! ```
//!
//! # Cost
//! Measured costs per operation, on the emulated cores, are produced by the repository's
//! benchmark tooling into `BENCHMARKS.md` (instructions executed under QEMU, Cortex-M3 and
//! Cortex-M0), so they are never typed in by hand here. The overwrite policy costs nothing until
//! the ring is full; an eviction then costs one compare-and-swap, one header load, the record's zeroing
//! stores and three stores, on the producer that needs the room.

use crate::atomic::{AtomicBool, AtomicU32, Ordering};

/// What a full ring does with a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Policy {
    /// Drop the new record and count it (the default): what was recorded first survives.
    DropNew,
    /// Evict the oldest committed records, counting each (a flight recorder): the latest survive.
    Overwrite,
}

/// The ring storage and indices, generic over the storage so that `Ring<N>` (sized, in a `static`)
/// and the unsized view the tracer keeps share one implementation.
pub struct RingCore<S: ?Sized> {
    /// Next free position (producers).
    head: AtomicU32,
    /// Oldest live record, in the overwrite policy (moved by the consumer and evicting producers,
    /// both only while holding `busy`). The drop-new policy keeps it in `free`.
    tail: AtomicU32,
    /// Every word below `free + N` and at or above `head` is zero: producers reserve up to
    /// `free + N`. Moved after `tail`, once the words between them are zeroed.
    free: AtomicU32,
    /// Records lost: dropped because the ring was full, evicted (overwrite policy), or dropped by
    /// the drain for being larger than a frame.
    dropped: AtomicU32,
    /// Records evicted (overwrite policy; also counted in `dropped`).
    evicted: AtomicU32,
    /// Overwrite policy: held by the drain while it reads the oldest record, or by a producer
    /// evicting it. A try-lock: nobody ever waits for it.
    pub(crate) busy: AtomicBool,
    /// Set once a drain has been created: there is one consumer.
    consumer_taken: AtomicBool,
    /// The policy (never changes after construction).
    overwrite: bool,
    words: S,
}

/// A ring of `N` 32-bit words (`N` a power of two, at least 16). Put it in a `static` and hand it
/// to a [`Tracer`](crate::Tracer). [`Ring::new`] drops new records when full;
/// [`Ring::flight_recorder`] evicts the oldest ones.
pub type Ring<const N: usize> = RingCore<[AtomicU32; N]>;

/// The unsized view of any ring.
pub(crate) type DynRing = RingCore<[AtomicU32]>;

/// The largest record, in words (the header's length field is 8 bits).
pub(crate) const MAX_RECORD_WORDS: u32 = 255;

impl<const N: usize> RingCore<[AtomicU32; N]> {
    const CHECK: () = assert!(
        N.is_power_of_two() && N >= 16 && N <= (1 << 30),
        "the ring size must be a power of two from 16 to 2^30 words"
    );

    /// An empty ring that drops new records when full ([`Policy::DropNew`]).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_policy(Policy::DropNew)
    }

    /// An empty flight-recorder ring: when full, the oldest committed records are evicted (and
    /// counted) to make room ([`Policy::Overwrite`]).
    ///
    /// Its policy flag is the one byte of the ring that is not zero, so a `static` of it is
    /// placed in `.data`, not `.bss`: the whole ring takes as much flash as RAM (the initial
    /// image, 4 KiB for a `Ring<1024>`) and is copied at start-up. A [`new`](Self::new) ring
    /// costs no flash. Once full, every record evicts the oldest ones first: a root span costs
    /// about four times what it does with room (`root_full_fr` in `BENCHMARKS.md`).
    #[cfg(not(loom))]
    pub const fn flight_recorder() -> Self {
        Self::with_policy(Policy::Overwrite)
    }

    /// An empty ring with the given policy.
    #[cfg(not(loom))]
    pub const fn with_policy(policy: Policy) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            // All zero but the policy flag: a drop-new ring lives in `.bss`, costing no flash for
            // an initial image (the record positions handed out are offset by one instead, see
            // `Reservation::pos`); a flight recorder's flag puts it in `.data`.
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            free: AtomicU32::new(0),
            dropped: AtomicU32::new(0),
            evicted: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            consumer_taken: AtomicBool::new(false),
            overwrite: matches!(policy, Policy::Overwrite),
            words: [const { AtomicU32::new(0) }; N],
        }
    }

    /// An empty ring (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_policy(Policy::DropNew)
    }

    /// An empty flight-recorder ring (loom).
    #[cfg(loom)]
    pub fn flight_recorder() -> Self {
        Self::with_policy(Policy::Overwrite)
    }

    /// An empty ring with the given policy (loom).
    #[cfg(loom)]
    pub fn with_policy(policy: Policy) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            free: AtomicU32::new(0),
            dropped: AtomicU32::new(0),
            evicted: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            consumer_taken: AtomicBool::new(false),
            overwrite: matches!(policy, Policy::Overwrite),
            words: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The unsized view the tracer keeps.
    pub(crate) const fn as_dyn(&self) -> &DynRing {
        self
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for RingCore<[AtomicU32; N]> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: ?Sized> RingCore<S> {
    /// Records lost so far (exact; wraps after 2^32): dropped because the ring was full, evicted
    /// by the overwrite policy, too large for a frame, skipped by a span whose start was dropped
    /// (its tags, logs, references, baggage and end), or tags of a batch left out because the
    /// user's conversions gave a larger value when written than when sized. This is the total
    /// the wire's `DROPS` record carries. (Records of a reservation abandoned by a panic, on a
    /// host where panics unwind, are not counted: the panic says it.)
    pub fn dropped(&self) -> u32 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records evicted by the overwrite policy so far (exact; included in
    /// [`dropped`](Self::dropped)); always 0 for the drop-new policy.
    pub fn evicted(&self) -> u32 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The policy chosen at construction.
    pub fn policy(&self) -> Policy {
        if self.overwrite {
            Policy::Overwrite
        } else {
            Policy::DropNew
        }
    }

    /// Counts one dropped record; returns its ordinal (the count before it).
    pub(crate) fn count_drop(&self) -> u32 {
        // Relaxed: a counter; it publishes no other memory.
        self.dropped.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts `n` more dropped records (the others of a batch whose reservation failed, which
    /// counted one, or the records a span whose start was dropped skips). Out of line, one
    /// copy: it is called from every `set_tag` and `log` call site, on a path they rarely take.
    #[cold]
    #[inline(never)]
    pub(crate) fn count_drops(&self, n: u32) {
        // Relaxed: a counter; it publishes no other memory.
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// A header word: kind (4 bits, never 0), length in words including the header (8 bits), and a
/// 20-bit payload whose meaning depends on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header(pub u32);

/// Added to a word counter to give the record position the tracer and drain see (span ids are
/// positions, and 0 must never be one; the counters themselves start at zero so the ring needs no
/// initial image in flash).
pub(crate) const POS_OFFSET: u32 = 1;

/// The kind of a pad record: the words before the end of the array that a record did not fit in
/// (it starts at index 0 instead), the end of a tag batch or of a tuple log that came out
/// shorter than it was sized, or a reservation abandoned by a panic. Skipped by the consumer
/// (its body unread), never counted as a loss.
pub(crate) const PAD: u32 = 0xF;

/// A load of a position other cores may move, ordered before what follows (see the crate
/// feature `single-core`).
#[inline(always)]
fn load_acquire(a: &AtomicU32) -> u32 {
    #[cfg(all(feature = "single-core", not(loom)))]
    {
        // One core: program order is what every party (thread mode and interrupt handlers) sees,
        // so only the compiler must not reorder; no barrier instruction is needed.
        let v = a.load(Ordering::Relaxed);
        core::sync::atomic::compiler_fence(Ordering::Acquire);
        v
    }
    #[cfg(not(all(feature = "single-core", not(loom))))]
    a.load(Ordering::Acquire)
}

/// A store that publishes what was written before it (see [`load_acquire`]).
#[inline(always)]
fn store_release(a: &AtomicU32, v: u32) {
    #[cfg(all(feature = "single-core", not(loom)))]
    {
        core::sync::atomic::compiler_fence(Ordering::Release);
        a.store(v, Ordering::Relaxed);
    }
    #[cfg(not(all(feature = "single-core", not(loom))))]
    a.store(v, Ordering::Release);
}

impl Header {
    pub(crate) const fn new(kind: u32, len: u32, payload: u32) -> Self {
        debug_assert!(kind != 0 && kind < 16 && len >= 1 && len <= MAX_RECORD_WORDS);
        Header(kind | (len << 4) | (payload << 12))
    }
    pub(crate) const fn kind(self) -> u32 {
        self.0 & 0xF
    }
    pub(crate) const fn len(self) -> u32 {
        (self.0 >> 4) & 0xFF
    }
    pub(crate) const fn payload(self) -> u32 {
        self.0 >> 12
    }
}

/// Space reserved by one producer: `len` contiguous words, owned until committed.
pub(crate) struct Reservation<'r> {
    /// The record's first word (its header), in the ring's array. Never null, which lets
    /// `Option<Reservation>` be two words, returned in registers.
    base: core::ptr::NonNull<AtomicU32>,
    /// The record's position as the tracer and the drain see it: its word counter plus one
    /// ([`POS_OFFSET`]), so that no span of a boot has the local id 0 while the ring's counters
    /// start at zero.
    pub(crate) pos: u32,
    #[cfg(debug_assertions)]
    len: u32,
    _ring: core::marker::PhantomData<&'r DynRing>,
}

/// See [`Reservation::pad_on_unwind`].
pub(crate) struct PadOnUnwind<'a> {
    /// The reservation's first word.
    base: *const AtomicU32,
    /// The reservation's length.
    len: u32,
    _ring: core::marker::PhantomData<&'a DynRing>,
}

impl PadOnUnwind<'_> {
    /// Code that might panic has returned: dropping the guard does nothing now.
    #[inline(always)]
    pub(crate) fn defuse(self) {
        core::mem::forget(self);
    }
}

impl Drop for PadOnUnwind<'_> {
    #[cold]
    fn drop(&mut self) {
        // SAFETY: `base` is the first word of a reservation that is not committed (the guard is
        // defused before any commit), inside the ring's array (see `Reservation::put`), which
        // lives for `'a`, the ring's borrow the reservation was made from. The guard does not
        // borrow the reservation (the writer needs it mutably meanwhile), so "defused before the
        // commit" is kept by its users, `write_tags` and `Span::record_log`, which defuse it
        // before their commit.
        let slot = unsafe { &*self.base };
        // Release pairs with the Acquire loads of headers in `peek` and `evict_oldest`, like any
        // commit. The body may hold anything: a pad's words are skipped unread (and zeroed when
        // released). `len` is at least 1 (reservations are never empty: `reserve`).
        store_release(slot, Header::new(PAD, self.len, 0).0);
    }
}

/// Where a ring's parts live in memory, for a post-mortem reader of a RAM image.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // read by `postmortem`
pub(crate) struct RingLayout {
    pub(crate) head: usize,
    pub(crate) tail: usize,
    pub(crate) dropped: usize,
    pub(crate) words: usize,
    pub(crate) capacity: u32,
    pub(crate) overwrite: bool,
}

impl DynRing {
    fn mask(&self) -> u32 {
        self.words.len() as u32 - 1
    }

    #[inline(always)]
    fn slot(&self, pos: u32) -> &AtomicU32 {
        let index = (pos & self.mask()) as usize;
        // SAFETY: every ring is built as a `Ring<N>` whose `N` is a power of two of at least 16
        // (checked at compile time by `CHECK`), and the unsized view keeps that length, so
        // `pos & (N - 1) < N`.
        unsafe { self.words.get_unchecked(index) }
    }

    /// Words a reservation of `len` words takes when `head` is the next free position: `len`, plus
    /// the words left before the end of the array when the record would not fit in them (they
    /// become a [`PAD`] record, so that every record lies contiguously in the array).
    #[inline(always)]
    fn needed(&self, head: u32, len: u32) -> (u32, u32) {
        let cap = self.words.len() as u32;
        let to_end = cap - (head & (cap - 1));
        let pad = if len > to_end { to_end } else { 0 };
        (pad, pad + len)
    }

    /// Reserves `len` words (header included, so at least 1), contiguous in the array. When the
    /// ring is full (and, in the overwrite policy, nothing can be evicted) the record is dropped
    /// and counted, and the error holds its drop ordinal (unique, used to name a lost root's
    /// trace).
    ///
    /// The common case (the record fits before the end of the array, the ring has room) is
    /// inlined into the record path; the rest is out of line. (The tracer's starts reserve
    /// through [`reserve_start`](Self::reserve_start); this one is the model's and the tests'.)
    #[cfg(any(test, loom))]
    #[inline(always)]
    pub(crate) fn reserve(&self, len: u32) -> Result<Reservation<'_>, u32> {
        // An empty reservation would be handed the word at `head` without moving it: its commit
        // would land on the next record's header (or, the ring full, the oldest's).
        debug_assert!(len > 0, "an empty reservation");
        match self.reserve_quick(len) {
            Some(res) => Ok(res),
            None => self.reserve_slow(len),
        }
    }

    /// [`reserve`](Self::reserve) for a span's START record. When it is dropped, the `with`
    /// records lost with it are counted too: the span's END (the span will skip it, and counting
    /// it here keeps the finish of every span, lost or not, a load and a compare), and tags
    /// written in the same reservation. The ordinal is the START's.
    #[inline(always)]
    pub(crate) fn reserve_start(&self, len: u32, with: u32) -> Result<Reservation<'_>, u32> {
        match self.reserve_quick(len) {
            Some(res) => Ok(res),
            None => self.reserve_start_slow(len, with),
        }
    }

    /// [`reserve_start`](Self::reserve_start)'s slow path.
    #[inline(never)]
    pub(crate) fn reserve_start_slow(&self, len: u32, with: u32) -> Result<Reservation<'_>, u32> {
        let res = self.reserve_slow(len);
        if res.is_err() {
            self.count_drops(with);
        }
        res
    }

    /// [`reserve`](Self::reserve) for a record whose drop ordinal nobody needs (all but a span's
    /// start, whose ordinal names a lost root's trace): `None` when it was dropped (counted).
    /// The slow path is reached through a function that returns the reservation in registers
    /// (`Option<Reservation>` is two words), so the caller's frame keeps no slot for a result.
    #[inline(always)]
    pub(crate) fn reserve_record(&self, len: u32) -> Option<Reservation<'_>> {
        debug_assert!(len > 0, "an empty reservation");
        match self.reserve_quick(len) {
            Some(res) => Some(res),
            None => self.reserve_record_slow(len),
        }
    }

    /// [`reserve_record`](Self::reserve_record)'s slow path.
    #[inline(never)]
    fn reserve_record_slow(&self, len: u32) -> Option<Reservation<'_>> {
        self.reserve_slow(len).ok()
    }

    /// The common case of [`reserve`](Self::reserve) alone: `None` when it does not apply (the
    /// record needs a pad, the ring is full, or another producer moved `head` meanwhile) and
    /// [`reserve_slow`](Self::reserve_slow) must decide. Nothing is counted here.
    ///
    /// For record paths that keep their own slow path out of line, so that their common path
    /// calls nothing (no stack frame for a call's result, no registers saved across it).
    #[inline(always)]
    pub(crate) fn reserve_quick(&self, len: u32) -> Option<Reservation<'_>> {
        let cap = self.words.len() as u32;
        // Acquire pairs with the Release store of `free` in `freed`: the words below `free + N`
        // were zeroed before it moved. Loading `free` before `head` keeps `head - free` from
        // underflowing when other producers and the consumer move both between the loads.
        let free = load_acquire(&self.free);
        // `head - free <= N` and `len <= 255`, so the sums cannot overflow.
        let fits =
            |head: u32| (head & (cap - 1)) + len <= cap && head.wrapping_sub(free) + len <= cap;
        self.quick_bump(len, fits)
            .map(|head| self.reservation(head, len))
    }

    /// Moves `head` on by `len` if `fits(head)`, once (no retry); the old `head` if it did.
    /// Relaxed: `head` only hands out positions; the data is published by the header's Release
    /// store in `commit`.
    #[inline(always)]
    fn quick_bump(&self, len: u32, fits: impl Fn(u32) -> bool) -> Option<u32> {
        // Without compare-and-swap: one critical section reads, checks and moves `head`, where a
        // load and a compare-and-swap would take one each (and re-read `head` inside).
        #[cfg(any(all(not(loom), not(target_has_atomic = "32")), loom_cs))]
        return self
            .head
            .update(Ordering::Relaxed, |head| {
                fits(head).then_some(head.wrapping_add(len))
            })
            .ok();
        #[cfg(not(any(all(not(loom), not(target_has_atomic = "32")), loom_cs)))]
        {
            let head = self.head.load(Ordering::Relaxed);
            (fits(head)
                && self
                    .head
                    .compare_exchange_weak(
                        head,
                        head.wrapping_add(len),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok())
            .then_some(head)
        }
    }

    /// [`reserve`](Self::reserve) when the quick attempt failed: the record needs a pad, the ring
    /// is full, or another producer moved `head` meanwhile.
    #[inline(never)]
    pub(crate) fn reserve_slow(&self, len: u32) -> Result<Reservation<'_>, u32> {
        let cap = self.words.len() as u32;
        if len > cap {
            // Never fits. Refused before the pad below, which would otherwise fill the rest of
            // the array for nothing.
            return Err(self.count_drop());
        }
        loop {
            // Orderings as in `reserve_quick`.
            let free = load_acquire(&self.free);
            let head = self.head.load(Ordering::Relaxed);
            let (pad, need) = self.needed(head, len);
            let used = head.wrapping_sub(free);
            // `need <= 2 * 255`: no overflow (and a record larger than the ring never fits).
            if used.wrapping_add(need) > cap {
                // The pad alone fits: take it now, so that `head` reaches the start of the array
                // and the record is not refused again and again for a pad it could never share
                // the ring with (a record over half the ring, `head` in the wrong place).
                if pad != 0 && used + pad <= cap {
                    if self
                        .head
                        .compare_exchange_weak(
                            head,
                            head.wrapping_add(pad),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        self.pad(head, pad);
                    }
                    continue;
                }
                if self.overwrite && self.evict_oldest(len) {
                    continue;
                }
                return Err(self.count_drop());
            }
            if self
                .head
                .compare_exchange_weak(
                    head,
                    head.wrapping_add(need),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                if pad != 0 {
                    self.pad(head, pad);
                }
                return Ok(self.reservation(head.wrapping_add(pad), len));
            }
        }
    }

    /// The reservation of the `len` words at `pos` (which fit before the end of the array).
    #[inline(always)]
    fn reservation(&self, pos: u32, len: u32) -> Reservation<'_> {
        let index = (pos & self.mask()) as usize;
        debug_assert!(index + len as usize <= self.words.len());
        #[cfg(not(debug_assertions))]
        let _ = len;
        Reservation {
            // In bounds: `index < cap` (masked); `as_ptr` keeps the whole array's provenance.
            // SAFETY: a slice's pointer is never null, and `index < cap` keeps it inside the
            // array, so adding it gives no null pointer either.
            base: unsafe {
                core::ptr::NonNull::new_unchecked(
                    self.words[..].as_ptr().wrapping_add(index) as *mut AtomicU32
                )
            },
            pos: pos.wrapping_add(POS_OFFSET),
            #[cfg(debug_assertions)]
            len,
            _ring: core::marker::PhantomData,
        }
    }

    /// Publishes a [`PAD`] record of `len` words at `pos` (the words up to the end of the array,
    /// reserved but too few for the record that needed them). Cold: once per lap of the ring.
    #[cold]
    #[inline(never)]
    fn pad(&self, pos: u32, len: u32) {
        // Its body words are zero already (every word at or above `head` is). Release pairs with
        // the Acquire loads of headers in `peek` and `evict_oldest`, like any commit.
        store_release(self.slot(pos), Header::new(PAD, len, 0).0);
    }

    /// Overwrite policy, ring full: evicts the oldest record if it is committed and nobody else
    /// holds `busy`. `true` when the caller should retry its reservation (a record was evicted,
    /// or room appeared meanwhile); `false` when the new record must be dropped.
    #[cold]
    #[inline(never)]
    fn evict_oldest(&self, len: u32) -> bool {
        // Acquire pairs with the Release store clearing `busy` by its previous holder (the drain
        // or another evicting producer): its moves of `tail`/`free` and its zeroing are visible.
        let cap = self.words.len() as u32;
        // A compare-and-swap, not a swap: it writes nothing when `busy` is taken. (The loom
        // model with `swap` here and in `peek` reported a run where `busy` stayed set after every
        // holder had cleared it; with compare-and-swap the model passes.)
        if len > cap
            || self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            // Taken, or larger than the whole ring (evicting everything would not make it fit).
            return false;
        }
        // Only `busy` holders move `tail`, so this is the current value.
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Relaxed);
        let mut retry = true;
        if head
            .wrapping_sub(tail)
            .wrapping_add(self.needed(head, len).1)
            > cap
        {
            // Acquire pairs with the producer's Release store of the header in `commit`: the
            // record's body words were written before it, so the zeroing below comes after them.
            let header = Header(self.slot(tail).load(Ordering::Acquire));
            if header.0 == 0 {
                // Uncommitted (its producer is preempted mid-record) or the ring is empty (the
                // record is larger than the ring): never evict it.
                retry = false;
            } else {
                self.evict(tail, tail.wrapping_add(header.len()));
                // A pad is not a record: nothing is lost by taking it back.
                if header.kind() != PAD {
                    // Relaxed: counters; they publish no other memory.
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Release pairs with the Acquire compare-and-swap of the next holder.
        self.busy.store(false, Ordering::Release);
        retry
    }

    /// Single-consumer side: starts reading. The records the [`Consumer`] reads are handed back
    /// to producers as it releases them (overwrite policy), or together when it is dropped or
    /// has read a quarter of the ring (drop-new policy): one zeroing pass and one `Release`
    /// store of `free` for many records instead of one per record.
    #[inline(always)]
    pub(crate) fn consumer(&self) -> Consumer<'_> {
        let at = self.consumer_pos();
        Consumer {
            ring: self,
            from: at,
            next: at,
            quarter: self.capacity() / 4,
            overwrite: self.overwrite,
        }
    }

    /// Single-consumer side: whether a committed record is probably waiting (a hint that takes no
    /// pin; [`Consumer::peek`] decides).
    #[inline]
    pub(crate) fn ready(&self) -> bool {
        // A producer holding `busy` (the overwrite policy's only: the drop-new one never takes
        // it) is evicting: the header at `tail` may still read committed while `peek` cannot
        // take the record. Nothing is ready until the producer is done (a drain that preempted
        // it, and looped on this, would otherwise build empty frames for as long as it runs).
        if self.busy.load(Ordering::Relaxed) {
            return false;
        }
        // Only a hint; `peek` re-reads both with the proper ordering.
        let tail = self.consumer_pos();
        self.slot(tail).load(Ordering::Relaxed) != 0
    }

    /// Single-consumer side: whether a committed record may be waiting, counting a producer that is
    /// evicting as one (unlike [`ready`](Self::ready)): `false` means none was, a moment ago.
    pub(crate) fn may_hold_records(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
            || self.slot(self.consumer_pos()).load(Ordering::Relaxed) != 0
    }

    /// Single-consumer side: body word `index` (1-based; 0 is the header) of the record at `pos`
    /// (a position as [`Consumer::peek`] returns it).
    #[inline]
    pub(crate) fn word(&self, pos: u32, index: u32) -> u32 {
        self.slot(pos.wrapping_sub(POS_OFFSET).wrapping_add(index))
            .load(Ordering::Relaxed)
    }

    /// The consumer hands back the words from `tail` to `next` (read): zeroes them and moves the
    /// free position past them. Out of line, nothing when `tail == next`.
    #[inline(never)]
    fn hand_back(&self, tail: u32, next: u32) {
        if next != tail {
            self.zero(tail, next);
            self.freed(next);
        }
    }

    /// A producer holding `busy` evicts the words from `tail` to `next` (the oldest record):
    /// zeroes them with atomic stores, not `memset` as the consumer does, because the
    /// consumer's [`ready`](Self::ready) may be loading the word at `tail` meanwhile (it takes no
    /// `busy`), and then moves `tail` and the free position past them.
    fn evict(&self, tail: u32, next: u32) {
        let mut pos = tail;
        while pos != next {
            // Relaxed: published to producers by the Release store of `free` in `freed`.
            self.slot(pos).store(0, Ordering::Relaxed);
            pos = pos.wrapping_add(1);
        }
        self.freed(next);
    }

    /// The words below `next` are zeroed: hands them back to producers.
    #[inline(always)]
    fn freed(&self, next: u32) {
        if self.overwrite {
            // Relaxed: read only by `busy` holders (the caller is one), who synchronise through
            // `busy`.
            self.tail.store(next, Ordering::Relaxed);
        }
        // Release pairs with the producers' Acquire load of `free` in `reserve_quick` and
        // `reserve_slow`.
        store_release(&self.free, next);
    }

    /// Zeroes the words from position `from` up to `to` (at most the whole ring), so that a stale
    /// word is never mistaken for a committed header. Published to producers by the Release store
    /// of `free` that follows (see [`freed`](Self::freed)).
    #[inline]
    fn zero(&self, from: u32, to: u32) {
        let cap = self.words.len();
        // At most the whole ring, whatever the positions say: a consumer never holds more, but
        // a restored post-mortem image is built from outside data, and the bound is what keeps
        // `zero_range` inside the array (one compare per hand-back).
        let n = (to.wrapping_sub(from) as usize).min(cap);
        let start = (from & self.mask()) as usize;
        // Up to the end of the array, then from its start.
        let first = n.min(cap - start);
        self.zero_range(start, first);
        if n > first {
            self.zero_range(0, n - first);
        }
    }

    /// Zeroes the `n` words from index `start`, which must be in the array. For the consumer
    /// only ([`hand_back`](Self::hand_back)).
    ///
    /// The consumer owns these words: it has read them and not handed them back. No producer
    /// can reserve them before `free` moves past them, an evicting producer needs `busy`, which
    /// the consumer holds while it hands back in the overwrite policy (and in the drop-new
    /// policy nobody evicts), and the consumer's own loads (`ready`, `peek`) are on this thread.
    /// So nothing else touches them meanwhile: they are cleared with `memset` (a few words per
    /// instruction) rather than one atomic store each. (An evicting producer zeroes with atomic
    /// stores: the consumer's `ready` may be loading its words; see [`evict`](Self::evict).)
    #[cfg(not(loom))]
    #[inline(always)]
    fn zero_range(&self, start: usize, n: usize) {
        debug_assert!(start + n <= self.words.len());
        // SAFETY: `start + n <= cap`: `zero` clamps its count to `cap` and passes either
        // `n.min(cap - start)` words from `start < cap`, or the rest (at most `start` words) from
        // 0. So the range is inside the array, and the
        // pointer comes from the whole array, so it may cover all of it. The words are
        // `AtomicU32`s, whose value lives in an `UnsafeCell`, so writing them through a pointer
        // derived from a shared reference is allowed; they are `u32`-sized and aligned. Only
        // the consumer calls this, and no other thread accesses these words meanwhile (see
        // above), so the write races with nothing; the `Release` store of `free` orders it
        // before any producer's later writes.
        unsafe {
            let p = self.words.as_ptr().add(start) as *mut u32;
            core::ptr::write_bytes(p, 0, n);
        }
    }

    /// Zeroes the `n` words from index `start` (loom: its atomics cannot be written as memory).
    #[cfg(loom)]
    fn zero_range(&self, start: usize, n: usize) {
        for w in &self.words[start..start + n] {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Single-consumer side: the oldest record's position. In the drop-new policy only the
    /// consumer moves `free`, which then always equals the tail, so `tail` is not kept at all
    /// (one atomic store less per record, and the same protocol as before the overwrite policy);
    /// in the overwrite policy `tail` is read while holding `busy`.
    #[inline]
    pub(crate) fn consumer_pos(&self) -> u32 {
        // Relaxed: in the drop-new policy the consumer is the only writer of `free`; in the
        // overwrite policy the caller holds `busy` (or only wants a hint), and `busy`'s
        // Acquire/Release pairs order `tail`.
        if self.overwrite {
            self.tail.load(Ordering::Relaxed)
        } else {
            self.free.load(Ordering::Relaxed)
        }
    }

    /// Where the next reservation goes (a hint: producers move it on at any time). Drop-new: a
    /// record refused for want of room would have gone there, after every record reserved
    /// before it.
    #[inline]
    pub(crate) fn reserve_pos(&self) -> u32 {
        // Relaxed: a position to compare with the consumer's later; it guards no memory.
        self.head.load(Ordering::Relaxed)
    }

    /// Claims the single consumer role; `false` if it was already taken.
    pub(crate) fn take_consumer(&self) -> bool {
        !self.consumer_taken.swap(true, Ordering::Acquire)
    }

    /// Gives the consumer role back (the drain was dropped).
    pub(crate) fn return_consumer(&self) {
        self.consumer_taken.store(false, Ordering::Release);
    }

    /// Capacity in words.
    pub(crate) fn capacity(&self) -> u32 {
        self.words.len() as u32
    }

    /// Addresses of the parts a post-mortem reader needs.
    #[allow(dead_code)] // used by `postmortem`
    pub(crate) fn layout(&self) -> RingLayout {
        RingLayout {
            head: &self.head as *const AtomicU32 as usize,
            // The drop-new policy keeps its tail in `free` (see `consumer_pos`).
            tail: if self.overwrite {
                &self.tail as *const AtomicU32 as usize
            } else {
                &self.free as *const AtomicU32 as usize
            },
            dropped: &self.dropped as *const AtomicU32 as usize,
            words: self.words.as_ptr() as usize,
            capacity: self.capacity(),
            overwrite: self.overwrite,
        }
    }

    /// Host side of a post-mortem: makes this (empty, unused) ring hold the records of an image,
    /// `word(pos)` giving the image's word at position `pos` for every `pos` in `[tail, head)`.
    #[cfg(any(feature = "std", test))]
    #[allow(dead_code)] // used by `postmortem` (and the loom model)
    pub(crate) fn restore(&self, head: u32, tail: u32, dropped: u32, word: impl Fn(u32) -> u32) {
        let mut pos = tail;
        while pos != head {
            self.slot(pos).store(word(pos), Ordering::Relaxed);
            pos = pos.wrapping_add(1);
        }
        self.head.store(head, Ordering::Relaxed);
        self.tail.store(tail, Ordering::Relaxed);
        self.free.store(tail, Ordering::Release);
        self.dropped.store(dropped, Ordering::Relaxed);
    }
}

/// The single consumer reading the ring (see [`DynRing::consumer`]): where it stands, and the
/// words it has read and not handed back yet.
///
/// In the drop-new policy the records read are handed back to producers together: zeroed in one
/// pass and published with one `Release` store of `free`, when the consumer is dropped or once
/// they reach a quarter of the ring (so a long frame does not hold back much room). Until then
/// producers see them as used, as they did before the consumer read them; they are never read
/// twice, as the consumer moves on from its own cursor. In the overwrite policy each record is
/// handed back as it is released, as producers evicting the oldest record need `tail` current.
pub(crate) struct Consumer<'r> {
    ring: &'r DynRing,
    /// The first word read and not handed back.
    from: u32,
    /// The next word to read.
    next: u32,
    /// Drop-new policy: the words read are handed back once they are this many (a quarter of the
    /// ring).
    quarter: u32,
    /// The ring's policy, read once (the record loop would load it again after every call).
    overwrite: bool,
}

impl Consumer<'_> {
    /// The header of the oldest record not read yet, if it is committed. In the overwrite policy
    /// a `Some` also pins the record (holds `busy`) until [`release`](Self::release) or
    /// [`unpin`](Self::unpin), so no producer evicts it while the drain reads it.
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<(u32, Header)> {
        let ring = self.ring;
        if self.overwrite {
            // Acquire pairs with the Release store clearing `busy` by an evicting producer: the
            // `tail` it moved and the words it zeroed are visible. Taken before reading `tail`,
            // so the record read below cannot have been evicted under the drain.
            if ring
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return None; // a producer is evicting right now: try again later
            }
            // Every record this consumer read is handed back already (`release`), so `tail` is
            // where it stands, unless producers evicted records since.
            self.next = ring.consumer_pos();
            self.from = self.next;
        }
        loop {
            // Acquire pairs with the producer's Release store in `commit`: the body words written
            // before it are visible.
            let header = Header(load_acquire(ring.slot(self.next)));
            if header.0 == 0 {
                self.unpin();
                return None;
            }
            if header.kind() != PAD {
                return Some((self.next.wrapping_add(POS_OFFSET), header));
            }
            // The end of the array, skipped by a record that did not fit: hand it back.
            self.read(header.len());
        }
    }

    /// Frees the record at `pos` (as [`peek`](Self::peek) returned it), `len` words long, after
    /// it has been read (and unpins it).
    ///
    /// The position [`peek`](Self::peek) returned is the consumer's own cursor: taking it from the
    /// caller (who holds it in a register) spares reading it again.
    // Always in line: the drain's record loop calls it twice (a record sent, a record dropped),
    // and an out-of-line copy cost that loop about 15 instructions per span on Cortex-M3
    // (`insn-probe drain17`), in spilled registers.
    #[inline(always)]
    pub(crate) fn release(&mut self, pos: u32, len: u32) {
        debug_assert_eq!(pos.wrapping_sub(POS_OFFSET), self.next);
        self.next = pos.wrapping_sub(POS_OFFSET);
        self.read(len);
        self.unpin();
    }

    /// The `len` words at the cursor are read: moves on, and hands back what was read when it
    /// is due.
    #[inline(always)]
    fn read(&mut self, len: u32) {
        self.next = self.next.wrapping_add(len);
        if self.overwrite || self.next.wrapping_sub(self.from) >= self.quarter {
            self.hand_back();
        }
    }

    /// Zeroes what was read and hands it back to producers.
    #[inline(always)]
    fn hand_back(&mut self) {
        // Out of line, given the positions by value: the cursor stays in registers.
        self.ring.hand_back(self.from, self.next);
        self.from = self.next;
    }

    /// Leaves the record [`peek`](Self::peek) returned in the ring (for the next frame) and lets
    /// producers evict it again.
    #[inline]
    pub(crate) fn unpin(&mut self) {
        if self.overwrite {
            // Release pairs with the Acquire compare-and-swap of the next `busy` holder.
            self.ring.busy.store(false, Ordering::Release);
        }
    }
}

impl Drop for Consumer<'_> {
    /// Hands back what was read (in the overwrite policy, nothing is left to hand back). A
    /// record peeked and not released must be left with [`unpin`](Consumer::unpin) first.
    fn drop(&mut self) {
        self.hand_back();
    }
}

impl<'r> Reservation<'r> {
    /// Writes body word `index` (1-based).
    #[inline(always)]
    pub(crate) fn put(&self, index: u32, word: u32) {
        #[cfg(debug_assertions)]
        assert!(
            index < self.len,
            "word {index} of a {}-word record",
            self.len
        );
        // SAFETY: `reserve` handed out `len` contiguous words from `base`, all inside the array
        // (it pads to the end of the array rather than wrap a record), and `index < len` for
        // every caller: the record writers (`record::Cursor`, checked in debug builds above)
        // write exactly the words they reserved. The pointer has the provenance of the whole
        // array (`as_ptr` of the slice).
        let slot = unsafe { self.base.add(index as usize).as_ref() };
        // Relaxed: published by the Release store of the header in `commit`.
        slot.store(word, Ordering::Relaxed);
    }

    /// Publishes a reservation that holds several records back to back. `first` is the first
    /// record's header; the headers of the others were written with [`put`](Self::put) before,
    /// so this one Release store publishes every record of the reservation: a consumer reaches
    /// the later headers only after it has read this one.
    #[inline(always)]
    pub(crate) fn commit_first(self, first: Header) {
        #[cfg(debug_assertions)]
        assert!(first.len() <= self.len);
        // SAFETY: `base` points at the first reserved word, inside the array (see `put`).
        let slot = unsafe { self.base.as_ref() };
        // Release pairs with the Acquire loads of the header in `peek` and `evict_oldest`.
        store_release(slot, first.0);
    }

    /// A guard to hold while code that is not the tracer's own (a [`Tags`](crate::Tags)
    /// implementation, a conversion to [`Value`](crate::Value)) writes into the reservation, the
    /// whole of which is `len` words: if that code panics, dropping the guard while unwinding
    /// publishes the reservation as one [`PAD`] record, so the drain skips it rather than wait for
    /// a commit that never comes. Defused with [`PadOnUnwind::defuse`] before the commit. (With
    /// `panic = "abort"`, the embedded targets' default, there is no unwinding and it compiles to
    /// nothing.)
    #[inline(always)]
    pub(crate) fn pad_on_unwind(&self, len: u32) -> PadOnUnwind<'r> {
        PadOnUnwind {
            base: self.base.as_ptr(),
            len,
            _ring: core::marker::PhantomData,
        }
    }

    /// Publishes the record.
    #[inline(always)]
    pub(crate) fn commit(self, header: Header) {
        #[cfg(debug_assertions)]
        assert_eq!(header.len(), self.len);
        // SAFETY: `base` points at the first reserved word, inside the array (see `put`).
        let slot = unsafe { self.base.as_ref() };
        // Release pairs with the Acquire loads of the header in `peek` and `evict_oldest`.
        store_release(slot, header.0);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Zeroing stays inside the array whatever the positions ask (a restored post-mortem image
    /// is built from outside data; an audit made `RingImage::to_stream` hand back 18 words of a
    /// 16-word ring, written past the array in a release build).
    #[test]
    fn zeroing_never_passes_the_array() {
        let ring: Ring<16> = Ring::new();
        for w in &ring.words {
            w.store(7, Ordering::Relaxed);
        }
        let dyn_ring: &DynRing = &ring;
        dyn_ring.zero(15, 15 + 40);
        assert!(ring.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    fn write(ring: &DynRing, kind: u32, body: &[u32]) -> Option<u32> {
        let len = body.len() as u32 + 1;
        let r = ring.reserve(len).ok()?;
        for (i, w) in body.iter().enumerate() {
            r.put(i as u32 + 1, *w);
        }
        let pos = r.pos;
        r.commit(Header::new(kind, len, 0));
        Some(pos)
    }

    /// Moves an empty ring's positions to the start of a lap (index 0), so that records of sizes
    /// dividing the capacity fill it exactly, without pads.
    fn to_lap_start(ring: &DynRing) {
        let used = ring.head.load(Ordering::Relaxed) & ring.mask();
        if used != 0 {
            let n = ring.capacity() - used;
            assert!(write(ring, 1, &vec![0; n as usize - 1]).is_some());
            assert_eq!(read(ring).map(|r| r.0), Some(1));
        }
        assert_eq!(ring.head.load(Ordering::Relaxed) & ring.mask(), 0);
    }

    fn read(ring: &DynRing) -> Option<(u32, Vec<u32>)> {
        read_with(&mut ring.consumer())
    }

    fn read_with(c: &mut Consumer<'_>) -> Option<(u32, Vec<u32>)> {
        let (pos, h) = c.peek()?;
        let body = (1..h.len()).map(|i| c.ring.word(pos, i)).collect();
        c.release(pos, h.len());
        Some((h.kind(), body))
    }

    #[test]
    fn fifo_and_wraparound() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
        for round in 0..20u32 {
            assert!(write(ring, 1, &[round, round + 1, round + 2]).is_some());
            assert!(write(ring, 2, &[round * 7]).is_some());
            assert_eq!(read(ring), Some((1, vec![round, round + 1, round + 2])));
            assert_eq!(read(ring), Some((2, vec![round * 7])));
            assert_eq!(read(ring), None);
        }
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn several_records_in_one_reservation_appear_together_then_alone() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
        for round in 0..12u32 {
            // Three records (3, 2 and 4 words) in one reservation (after a pad on some rounds).
            let r = ring.reserve(9).expect("room");
            r.put(1, round);
            r.put(2, round + 1);
            r.put(3, Header::new(2, 2, 0).0);
            r.put(4, round * 3);
            r.put(5, Header::new(3, 4, 0).0);
            for i in 6..9 {
                r.put(i, round + i);
            }
            // Nothing is visible before the first header is published.
            assert_eq!(ring.consumer().peek(), None);
            r.commit_first(Header::new(1, 3, 0));
            assert_eq!(read(ring), Some((1, vec![round, round + 1])));
            assert_eq!(read(ring), Some((2, vec![round * 3])));
            assert_eq!(read(ring), Some((3, vec![round + 6, round + 7, round + 8])));
            assert_eq!(read(ring), None);
        }
        assert_eq!(ring.dropped(), 0);
        ring.count_drops(2);
        assert_eq!(ring.dropped(), 2);
    }

    #[test]
    fn a_record_larger_than_the_ring_is_refused_without_taking_room() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
        assert!(write(ring, 1, &[7; 16]).is_none());
        assert_eq!(ring.dropped(), 1);
        // The whole ring is still free: 4 records of 4 words fit.
        for i in 0..4 {
            assert!(write(ring, 1, &[i, i, i]).is_some());
        }
        assert_eq!(ring.dropped(), 1);
    }

    #[test]
    fn full_ring_drops_and_counts_exactly() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
        to_lap_start(ring);
        // 4 records of 4 words fill it exactly.
        for i in 0..4 {
            assert!(write(ring, 1, &[i, i, i]).is_some());
        }
        assert!(write(ring, 1, &[9]).is_none());
        assert!(write(ring, 1, &[]).is_none());
        assert_eq!(ring.dropped(), 2);
        assert_eq!(read(ring), Some((1, vec![0, 0, 0])));
        assert!(write(ring, 1, &[5, 5, 5]).is_some());
        assert!(write(ring, 1, &[]).is_none());
        assert_eq!(ring.dropped(), 3);
    }

    #[test]
    fn uncommitted_record_holds_back_the_consumer_only() {
        let ring: Ring<32> = Ring::new();
        let ring = ring.as_dyn();
        let first = ring.reserve(2).unwrap(); // a "preempted" writer
        assert!(write(ring, 3, &[7]).is_some()); // another writer is not blocked
        assert_eq!(read(ring), None); // the drain waits for the first
        first.put(1, 11);
        first.commit(Header::new(1, 2, 0));
        assert_eq!(read(ring), Some((1, vec![11])));
        assert_eq!(read(ring), Some((3, vec![7])));
    }

    #[test]
    fn single_consumer() {
        let ring: Ring<16> = Ring::new();
        assert!(ring.as_dyn().take_consumer());
        assert!(!ring.as_dyn().take_consumer());
        ring.as_dyn().return_consumer();
        assert!(ring.as_dyn().take_consumer());
    }

    #[test]
    fn flight_recorder_evicts_the_oldest_and_counts_exactly() {
        let ring: Ring<16> = Ring::flight_recorder();
        let ring = ring.as_dyn();
        to_lap_start(ring);
        assert_eq!(ring.policy(), Policy::Overwrite);
        // 4 records of 4 words fill it exactly; 6 more evict the 6 oldest.
        for i in 0..10 {
            assert!(write(ring, 1, &[i, i, i]).is_some());
        }
        assert_eq!((ring.dropped(), ring.evicted()), (6, 6));
        for i in 6..10 {
            assert_eq!(read(ring), Some((1, vec![i, i, i])));
        }
        assert_eq!(read(ring), None);
        // A record of another size evicts as many as it needs: 2 + 2 + 2 + 2 + 2 words, then 8.
        for i in 0..8 {
            assert!(write(ring, 2, &[i]).is_some());
        }
        assert!(write(ring, 3, &[9; 7]).is_some());
        assert_eq!(ring.evicted(), 6 + 4);
        for i in 4..8 {
            assert_eq!(read(ring), Some((2, vec![i])));
        }
        assert_eq!(read(ring), Some((3, vec![9; 7])));
        assert_eq!(read(ring), None);
    }

    /// A drain that preempted a flight recorder's evicting producer (which holds `busy`) finds
    /// nothing ready: it builds no empty frames and its loops end, and it reads everything once
    /// the producer is done.
    #[test]
    fn a_drain_waits_out_an_evicting_producer_without_empty_frames() {
        use crate::{Clock, Drain, Session, Tracer};
        struct Ticks;
        impl Clock for Ticks {
            fn now(&self) -> u32 {
                7
            }
            fn ticks_per_second(&self) -> u32 {
                1_000
            }
        }
        static RING: Ring<64> = Ring::flight_recorder();
        static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("s"));
        let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
        drain.drain_with(|b| b.len());
        for _ in 0..20 {
            TRACER.root("a").finish();
        }
        assert!(RING.evicted() > 0, "full: producers evict");
        let before = drain.stats();
        // The state a producer preempted inside `evict_oldest` leaves.
        RING.busy.store(true, Ordering::Relaxed);
        // The evictions are still to be reported, though no record is ready.
        assert!(drain.has_pending());
        // They are (one frame, the drops record); then nothing is sent.
        let mut calls = 0u32;
        let mut drain_some = || {
            drain.drain_with(|b| {
                calls += 1;
                if calls > 100 {
                    0
                } else {
                    b.len()
                }
            })
        };
        drain_some();
        assert_eq!(drain_some(), 0);
        assert!(calls <= 1, "{calls} frames built");
        assert_eq!(drain.stats().records, before.records);
        assert!(
            !drain.has_pending(),
            "reported; the records wait for the producer"
        );
        RING.busy.store(false, Ordering::Release);
        assert!(drain.has_pending());
        drain.drain_with(|b| b.len());
        assert!(drain.stats().records > before.records);
        assert!(!drain.has_pending());
    }

    #[test]
    fn flight_recorder_never_evicts_an_uncommitted_record() {
        let ring: Ring<16> = Ring::flight_recorder();
        let ring = ring.as_dyn();
        to_lap_start(ring);
        let first = ring.reserve(4).unwrap(); // a "preempted" writer, oldest
        for i in 0..3 {
            assert!(write(ring, 1, &[i, i, i]).is_some());
        }
        // Full, and the oldest is uncommitted: the new record is dropped, nothing evicted.
        assert!(write(ring, 2, &[5]).is_none());
        assert_eq!((ring.dropped(), ring.evicted()), (1, 0));
        first.put(1, 7);
        first.put(2, 7);
        first.put(3, 7);
        first.commit(Header::new(4, 4, 0));
        // Now it can go.
        assert!(write(ring, 2, &[5]).is_some());
        assert_eq!((ring.dropped(), ring.evicted()), (2, 1));
        for i in 0..3 {
            assert_eq!(read(ring), Some((1, vec![i, i, i])));
        }
        assert_eq!(read(ring), Some((2, vec![5])));
    }

    #[test]
    fn flight_recorder_never_evicts_the_record_the_drain_reads() {
        let ring: Ring<16> = Ring::flight_recorder();
        let ring = ring.as_dyn();
        to_lap_start(ring);
        for i in 0..4 {
            assert!(write(ring, 1, &[i, i, i]).is_some());
        }
        let mut c = ring.consumer();
        let (pos, h) = c.peek().unwrap(); // the drain is encoding the oldest
        assert!(write(ring, 2, &[5]).is_none()); // so the new one is dropped
        assert_eq!((ring.dropped(), ring.evicted()), (1, 0));
        assert_eq!(ring.word(pos, 1), 0);
        c.unpin(); // it did not fit the frame: left for later
        assert!(write(ring, 2, &[5]).is_some()); // evicts record 0
        assert_eq!((ring.dropped(), ring.evicted()), (2, 1));
        let (pos2, h2) = c.peek().unwrap();
        assert_eq!((pos2, h2, ring.word(pos2, 1)), (pos + 4, h, 1));
        c.unpin();
        drop(c);
        assert!(!ring.busy.load(Ordering::Relaxed));
        assert_eq!(read(ring), Some((1, vec![1, 1, 1])));
    }

    #[test]
    fn a_record_never_wraps_the_pad_is_skipped_and_never_counted() {
        for policy in [Policy::DropNew, Policy::Overwrite] {
            let ring = Ring::<16>::with_policy(policy);
            let ring = ring.as_dyn();
            to_lap_start(ring);
            // 3 + 3 + 3 + 3 words leave 4 before the end; a 5-word record pads them and starts
            // at index 0, once the first record is read.
            for i in 0..4 {
                assert!(write(ring, 1, &[i, i]).is_some());
            }
            assert_eq!(read(ring), Some((1, vec![0, 0])));
            let first = write(ring, 2, &[7; 4]);
            if policy == Policy::DropNew {
                // 9 words used + 4 padded + 5 > 16: dropped.
                assert!(first.is_none());
                assert_eq!(ring.dropped(), 1);
                assert_eq!(read(ring), Some((1, vec![1, 1])));
                let pos = write(ring, 2, &[7; 4]).expect("6 + 4 + 5 words fit");
                assert_eq!((pos - POS_OFFSET) & 15, 0, "the record starts at index 0");
            } else {
                // Evicts record 1, then the record fits after the pad.
                assert_eq!(first.map(|p| (p - POS_OFFSET) & 15), Some(0));
                assert_eq!(ring.evicted(), 1);
            }
            assert_eq!(ring.dropped(), 1);
            assert_eq!(read(ring), Some((1, vec![2, 2])));
            assert_eq!(read(ring), Some((1, vec![3, 3])));
            assert_eq!(read(ring), Some((2, vec![7; 4]))); // the pad was skipped
            assert_eq!(read(ring), None);
            // A lap of pads and evictions later, nothing else was counted.
            for i in 0..40 {
                assert!(write(ring, 3, &[i; 4]).is_some());
                assert_eq!(read(ring), Some((3, vec![i; 4])));
            }
            assert_eq!(ring.dropped(), 1);
        }
    }

    #[test]
    fn a_record_over_half_the_ring_is_not_refused_for_ever_by_its_pad() {
        for policy in [Policy::DropNew, Policy::Overwrite] {
            let ring = Ring::<16>::with_policy(policy);
            let ring = ring.as_dyn();
            // `head` at index 6: a 12-word record needs 10 pad words + 12 > 16.
            assert!(write(ring, 1, &[1; 5]).is_some());
            assert_eq!(read(ring), Some((1, vec![1; 5])));
            // Refused once (the pad is taken meanwhile), then accepted after the drain ran.
            let first = write(ring, 2, &[2; 11]);
            if first.is_none() {
                assert_eq!(ring.dropped(), 1);
                assert_eq!(read(ring), None, "only a pad in the ring");
            }
            let pos = match first {
                Some(p) => p,
                None => write(ring, 2, &[2; 11]).expect("fits at the start of the array"),
            };
            assert_eq!((pos - POS_OFFSET) & 15, 0);
            assert_eq!(read(ring), Some((2, vec![2; 11])));
            assert_eq!(ring.dropped(), first.is_none() as u32);
        }
    }

    #[test]
    fn a_record_larger_than_the_ring_is_dropped_under_both_policies() {
        for ring in [Ring::<16>::new(), Ring::<16>::flight_recorder()] {
            let ring = ring.as_dyn();
            assert!(write(ring, 1, &[1; 3]).is_some());
            assert!(write(ring, 1, &[0; 16]).is_none());
            assert_eq!(ring.dropped(), 1);
            assert_eq!(read(ring), Some((1, vec![1; 3])));
        }
    }

    #[test]
    fn the_drop_new_consumer_hands_back_what_it_read_together() {
        let ring: Ring<32> = Ring::new();
        let ring = ring.as_dyn();
        to_lap_start(ring);
        // 8 records of 4 words fill it.
        for i in 0..8 {
            assert!(write(ring, 1, &[i, i, i]).is_some());
        }
        let mut c = ring.consumer();
        assert_eq!(read_with(&mut c), Some((1, vec![0, 0, 0])));
        // Read, not handed back yet: producers still find the ring full, and the record is
        // still there (its header not zeroed).
        assert!(write(ring, 2, &[]).is_none());
        assert_eq!(Header(ring.words[0].load(Ordering::Relaxed)).len(), 4);
        assert_eq!(ring.free.load(Ordering::Relaxed), 0);
        // A quarter of the ring read (8 words): handed back, zeroed.
        assert_eq!(read_with(&mut c), Some((1, vec![1, 1, 1])));
        assert_eq!(ring.free.load(Ordering::Relaxed), 8);
        assert!((0..8).all(|i| ring.words[i].load(Ordering::Relaxed) == 0));
        assert!(write(ring, 2, &[9]).is_some());
        // The consumer goes on from its own cursor, not from `free`.
        assert_eq!(read_with(&mut c), Some((1, vec![2, 2, 2])));
        assert_eq!(ring.free.load(Ordering::Relaxed), 8);
        drop(c);
        assert_eq!(ring.free.load(Ordering::Relaxed), 12);
        assert!(ring.words[8..12]
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0));
        // A new consumer starts where the last one stopped.
        for i in 3..8 {
            assert_eq!(read(ring), Some((1, vec![i, i, i])));
        }
        assert_eq!(read(ring), Some((2, vec![9])));
        assert_eq!(read(ring), None);
        assert_eq!(ring.dropped(), 1);
    }

    #[test]
    fn a_pad_read_by_the_consumer_is_handed_back_with_the_records() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
        to_lap_start(ring);
        // 3 + 3 + 3 + 3 words, then a 6-word record pads the last 4 and starts at index 0.
        for i in 0..4 {
            assert!(write(ring, 1, &[i, i]).is_some());
        }
        let mut c = ring.consumer();
        for i in 0..3 {
            assert_eq!(read_with(&mut c), Some((1, vec![i, i])));
        }
        drop(c);
        assert!(write(ring, 2, &[7; 5]).is_some());
        let mut c = ring.consumer();
        assert_eq!(read_with(&mut c), Some((1, vec![3, 3])));
        // The pad is skipped, and handed back like a record.
        assert_eq!(read_with(&mut c), Some((2, vec![7; 5])));
        drop(c);
        assert_eq!(ring.free.load(Ordering::Relaxed), 22);
        assert!(ring.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        assert_eq!(read(ring), None);
    }

    /// A flight recorder evicting on one thread while the consumer reads on another: under Miri
    /// (CI runs it over these tests) a data race between the eviction's zeroing and the
    /// consumer's loads (`ready` takes no `busy`) is reported, as it was when evictions zeroed
    /// with `memset`. Every record is read whole or counted as evicted.
    #[test]
    fn evicting_producer_and_consumer_on_two_threads() {
        // Several rounds: each gives Miri's scheduler other interleavings.
        for _ in 0..8 {
            evict_while_reading();
        }
    }

    fn evict_while_reading() {
        const RECORDS: u32 = 24;
        let shared = std::sync::Arc::new(Ring::<16>::flight_recorder());
        let producer = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..RECORDS {
                    write(shared.as_dyn(), 1, &[i, i, i]);
                }
            })
        };
        let ring = shared.as_dyn();
        let mut n = 0;
        let mut last = None;
        loop {
            let done = producer.is_finished();
            if ring.ready() {
                if let Some((kind, body)) = read(ring) {
                    assert_eq!(
                        (kind, body[1], body[2]),
                        (1, body[0], body[0]),
                        "torn record"
                    );
                    assert!(last < Some(body[0]), "in order, once");
                    last = Some(body[0]);
                    n += 1;
                }
            }
            if done && !ring.ready() {
                break;
            }
        }
        producer.join().unwrap();
        while read(ring).is_some() {
            n += 1;
        }
        // Every record was read or lost (dropped on arrival, or evicted), exactly.
        assert_eq!(n + ring.dropped(), RECORDS);
    }

    #[test]
    fn zeroing_wraps_the_end_of_the_array() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
        for w in &ring.words {
            w.store(7, Ordering::Relaxed);
        }
        // Positions 30..35 are indices 14, 15, 0, 1, 2.
        ring.zero(30, 35);
        let zeroed: Vec<u32> = ring
            .words
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        assert_eq!(zeroed, [0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0]);
        ring.zero(3, 19);
        assert!(ring.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn header_fields() {
        let h = Header::new(5, 200, 0xABCDE);
        assert_eq!((h.kind(), h.len(), h.payload()), (5, 200, 0xABCDE));
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! `RUSTFLAGS="--cfg loom" cargo test -p microspan --release --lib loom_model`, and for the
    //! critical-section atomics of cores without compare-and-swap (Cortex-M0),
    //! `MICROSPAN_LOOM_CS=1 RUSTFLAGS="--cfg loom" cargo test -p microspan --release --lib loom_model`
    //! (the build script sets `cfg(loom_cs)`; see `scripts/loom.sh`)
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A model exploring every interleaving with up to 3 preemptions (CI), or
    /// `MICROSPAN_LOOM_PREEMPTIONS` for a long local run.
    fn bounded_model() -> loom::model::Builder {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(
            std::env::var("MICROSPAN_LOOM_PREEMPTIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3),
        );
        model
    }

    /// Two producers, each writing two `len`-word records (kind `1 + producer`, payload = the
    /// record's number, body words `producer * 100 + number * 10 + word`); each returns how many
    /// it wrote.
    fn spawn_producers(ring: &Arc<Ring<16>>, len: u32) -> Vec<thread::JoinHandle<u32>> {
        (0..2u32)
            .map(|p| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut written = 0;
                    for i in 0..2u32 {
                        let ring = ring.as_dyn();
                        if let Ok(r) = ring.reserve(len) {
                            for w in 1..len {
                                r.put(w, p * 100 + i * 10 + w);
                            }
                            r.commit(Header::new(1 + p, len, i));
                            written += 1;
                        }
                    }
                    written
                })
            })
            .collect()
    }

    /// Two producers and the consumer: every record is read whole, exactly once, or counted as
    /// dropped. Records of 6 words in a 16-word ring, so the third reservation needs a pad (and,
    /// with the ring partly full, takes the pad alone and retries).
    #[test]
    fn two_producers_one_consumer() {
        two_producers_one_consumer_of(6);
    }

    /// As [`two_producers_one_consumer`] with records of 3 words, fewer than the quarter of the
    /// ring at which the consumer hands back what it read: records are handed back two at a time
    /// while producers reserve.
    #[test]
    fn two_producers_one_consumer_handing_back_in_batches() {
        two_producers_one_consumer_of(3);
    }

    fn two_producers_one_consumer_of(len: u32) {
        // Bounded preemptions, as in the overwrite model: since records never wrap (pads), the
        // exhaustive search no longer ends in reasonable time; every interleaving with up to
        // `MICROSPAN_LOOM_PREEMPTIONS` (default 3) preemptions is explored.
        bounded_model().check(move || {
            let ring: Arc<Ring<16>> = Arc::new(Ring::new());
            let producers = spawn_producers(&ring, len);
            let mut read = 0;
            let ring = ring.as_dyn();
            let mut consumer = ring.consumer();
            for _ in 0..3 {
                if let Some((pos, h)) = consumer.peek() {
                    let p = h.kind() - 1;
                    let i = h.payload();
                    for w in 1..len {
                        assert_eq!(ring.word(pos, w), p * 100 + i * 10 + w);
                    }
                    consumer.release(pos, h.len());
                    read += 1;
                }
                thread::yield_now();
            }
            let written: u32 = producers.into_iter().map(|t| t.join().unwrap()).sum();
            while let Some((pos, h)) = consumer.peek() {
                consumer.release(pos, h.len());
                read += 1;
            }
            drop(consumer);
            assert_eq!(written, read);
            assert_eq!(written + ring.dropped(), 4);
            // Everything read was handed back: the ring is empty and zero.
            assert_eq!(
                ring.free.load(Ordering::Relaxed),
                ring.head.load(Ordering::Relaxed)
            );
            assert!(ring.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        });
    }

    /// Batches (several records in one reservation, published by one `commit_first`) beside
    /// single records, with the ring's word counters starting just below `u32::MAX` so that they
    /// wrap during the run: the consumer reads every record of a batch whole, in order, right
    /// after one another, and never a record of an unpublished batch; every reservation is read
    /// or counted as dropped.
    #[test]
    fn batches_across_the_counter_wrap() {
        bounded_model().check(|| {
            let ring: Arc<Ring<16>> = Arc::new(Ring::new());
            let start = u32::MAX - 9;
            ring.as_dyn().restore(start, start, 0, |_| 0);
            // Producer 0: batches of a 2-word and a 3-word record (kinds 1 and 2); producer 1:
            // single 4-word records (kind 3). Body word `w` of record `i`: `kind * 100 + i * 10
            // + w`.
            let batcher = {
                let ring = ring.clone();
                thread::spawn(move || {
                    let ring = ring.as_dyn();
                    let mut written = 0;
                    for i in 0..2u32 {
                        if let Ok(r) = ring.reserve(5) {
                            r.put(1, 100 + i * 10 + 1);
                            r.put(2, Header::new(2, 3, i).0);
                            r.put(3, 200 + i * 10 + 1);
                            r.put(4, 200 + i * 10 + 2);
                            r.commit_first(Header::new(1, 2, i));
                            written += 1;
                        }
                    }
                    written
                })
            };
            let single = {
                let ring = ring.clone();
                thread::spawn(move || {
                    let ring = ring.as_dyn();
                    let mut written = 0;
                    for i in 0..2u32 {
                        if let Ok(r) = ring.reserve(4) {
                            for w in 1..4 {
                                r.put(w, 300 + i * 10 + w);
                            }
                            r.commit(Header::new(3, 4, i));
                            written += 1;
                        }
                    }
                    written
                })
            };
            let ring = ring.as_dyn();
            let mut consumer = ring.consumer();
            let mut read = Vec::new();
            let mut take = |read: &mut Vec<(u32, u32)>| -> bool {
                let Some((pos, h)) = consumer.peek() else {
                    return false;
                };
                let (kind, i) = (h.kind(), h.payload());
                for w in 1..h.len() {
                    assert_eq!(ring.word(pos, w), kind * 100 + i * 10 + w, "torn record");
                }
                if kind == 2 {
                    assert_eq!(read.last(), Some(&(1, i)), "a batch read apart");
                }
                read.push((kind, i));
                consumer.release(pos, h.len());
                true
            };
            for _ in 0..3 {
                take(&mut read);
                thread::yield_now();
            }
            let batches: u32 = batcher.join().unwrap();
            let singles: u32 = single.join().unwrap();
            while take(&mut read) {}
            assert_eq!(read.len() as u32, 2 * batches + singles);
            assert_eq!(batches + singles + ring.dropped(), 4);
        });
    }

    /// The overwrite policy, two producers and the consumer, in a ring that holds two records:
    /// producers evict the oldest committed records; every record the consumer reads is whole
    /// (never overwritten under it) and read once; every record is read or counted as lost
    /// (dropped or evicted), exactly.
    #[test]
    fn overwrite_two_producers_one_consumer() {
        // Bounded preemptions (loom's recommended setting for models of this size): every
        // interleaving with up to 3 preemptions is explored.
        bounded_model().check(|| {
            let ring: Arc<Ring<16>> = Arc::new(Ring::flight_recorder());
            let producers = spawn_producers(&ring, 7);
            let ring = ring.as_dyn();
            let mut consumer = ring.consumer();
            let mut seen = Vec::new();
            let mut check = |consumer: &mut Consumer<'_>, pos: u32, h: Header| {
                let p = h.kind() - 1;
                let i = h.payload();
                for w in 1..7 {
                    assert_eq!(ring.word(pos, w), p * 100 + i * 10 + w, "torn record");
                }
                assert!(!seen.contains(&(p, i)), "record read twice");
                seen.push((p, i));
                consumer.release(pos, h.len());
            };
            for _ in 0..2 {
                if let Some((pos, h)) = consumer.peek() {
                    check(&mut consumer, pos, h);
                }
                thread::yield_now();
            }
            let written: u32 = producers.into_iter().map(|t| t.join().unwrap()).sum();
            while let Some((pos, h)) = consumer.peek() {
                check(&mut consumer, pos, h);
            }
            drop(consumer);
            let read = seen.len() as u32;
            // Committed records are read or evicted; the rest were dropped on arrival.
            assert_eq!(written, read + ring.evicted());
            // Nobody holds `busy` once everyone is done.
            assert!(!ring.busy.load(Ordering::Acquire));
            assert_eq!(read + ring.dropped(), 4);
            assert!(ring.evicted() <= ring.dropped());
        });
    }
}
