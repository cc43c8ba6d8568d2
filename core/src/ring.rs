//! The lock-free multi-producer, single-consumer ring of word records.
//!
//! # Shape
//! The ring is an array of `N` 32-bit words (`N` a power of two). A record is a header word
//! followed by up to 254 body words; the header holds the record's kind and length and is written
//! **last**, with a single `Release` store, so the consumer never sees half a record. Positions are
//! free-running `u32` word counters (`head` for producers, `tail` for the consumer); the index of a
//! position is `pos % N`, so a record may wrap around the end of the array.
//!
//! # Protocol
//! - **Reserve** (any producer): read `tail` (`Acquire`, pairs with the consumer's `Release` store
//!   of `tail` in `release`, so the zeroed words it freed are visible), then `head`; if
//!   `head - tail + len > N` the record is dropped and counted; else compare-and-swap `head` to
//!   `head + len`. The words `[head, head + len)` are then owned by this producer alone.
//! - **Write** the body words (`Relaxed`: nobody reads them before the header says so).
//! - **Commit**: store the non-zero header (`Release`, pairs with the consumer's `Acquire` load in
//!   `peek`): this publishes the whole record.
//! - **Consume** (the single drain): load the header at `tail` (`Acquire`); zero means "not written
//!   yet"; otherwise read the body, then zero all the record's words and advance `tail`
//!   (`Release`), handing the words back to producers.
//!
//! # Progress guarantee (stated honestly)
//! - Producers are **lock-free, not wait-free**: a producer's compare-and-swap fails only because
//!   another producer's succeeded, so some producer always progresses. A producer never waits for
//!   another one: an interrupt handler preempting a thread-mode writer in the middle of a record
//!   reserves its own space and finishes. On a single core, a preempted reservation retries at most
//!   once per preemption. A full ring drops the new record and counts it exactly; it never blocks.
//! - The consumer is **blocking-free but not lock-free**: records are consumed in reservation
//!   order, so a producer preempted between reserve and commit holds back the drain (not other
//!   producers) until it resumes. The drain then simply finds nothing to read and returns; it never
//!   spins. A producer that never resumes (a thread killed mid-record) would stall the drain for
//!   good; Rust threads cannot be killed that way, and on a microcontroller a handler that never
//!   returns stalls the whole core anyway.
//! - On cores without compare-and-swap (Cortex-M0/M0+) the reservation is a short critical section
//!   (via `portable-atomic`/`critical-section`): interrupts are masked for a handful of
//!   instructions, never while waiting for anything.
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
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, Session::new("sensor-node"));
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
//! # Cost
//! Measured costs per operation, on the emulated cores, are produced by the repository's
//! benchmark tooling into `BENCHMARKS.md` (instructions executed under QEMU, Cortex-M3 and
//! Cortex-M0), so they are never typed in by hand here.

use crate::atomic::{AtomicBool, AtomicU32, Ordering};

/// The ring storage and indices, generic over the storage so that `Ring<N>` (sized, in a `static`)
/// and the unsized view the tracer keeps share one implementation.
pub struct RingCore<S: ?Sized> {
    /// Next free position (producers).
    head: AtomicU32,
    /// Oldest unconsumed position (the consumer).
    tail: AtomicU32,
    /// Records dropped because the ring was full (or by the drain, for oversize records).
    dropped: AtomicU32,
    /// Set once a drain has been created: there is one consumer.
    consumer_taken: AtomicBool,
    words: S,
}

/// A ring of `N` 32-bit words (`N` a power of two, at least 16). Put it in a `static` and hand it
/// to a [`Tracer`](crate::Tracer).
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

    /// An empty ring.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            // Positions start at 1 so that no span of a boot has the local id 0.
            head: AtomicU32::new(1),
            tail: AtomicU32::new(1),
            dropped: AtomicU32::new(0),
            consumer_taken: AtomicBool::new(false),
            words: [const { AtomicU32::new(0) }; N],
        }
    }

    /// An empty ring (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            // Positions start at 1 so that no span of a boot has the local id 0.
            head: AtomicU32::new(1),
            tail: AtomicU32::new(1),
            dropped: AtomicU32::new(0),
            consumer_taken: AtomicBool::new(false),
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
    /// Records dropped so far because the ring was full (exact; wraps after 2^32).
    pub fn dropped(&self) -> u32 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts one dropped record; returns its ordinal (the count before it).
    pub(crate) fn count_drop(&self) -> u32 {
        self.dropped.fetch_add(1, Ordering::Relaxed)
    }
}

/// A header word: kind (4 bits, never 0), length in words including the header (8 bits), and a
/// 20-bit payload whose meaning depends on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header(pub u32);

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

/// Space reserved by one producer: `len` words from position `pos`, owned until committed.
pub(crate) struct Reservation<'r> {
    ring: &'r DynRing,
    pub(crate) pos: u32,
}

impl DynRing {
    fn mask(&self) -> u32 {
        self.words.len() as u32 - 1
    }

    fn slot(&self, pos: u32) -> &AtomicU32 {
        // `mask` keeps the index inside the array; the compiler removes the bounds check.
        &self.words[(pos & self.mask()) as usize]
    }

    /// Reserves `len` words (header included). When the ring is full the record is dropped and
    /// counted, and the error holds its drop ordinal (unique, used to name a lost root's trace).
    #[inline]
    pub(crate) fn reserve(&self, len: u32) -> Result<Reservation<'_>, u32> {
        let cap = self.words.len() as u32;
        loop {
            // Acquire pairs with the consumer's Release store of `tail` in `release`: the words
            // below `tail` were zeroed before it moved. Loading `tail` before `head` keeps
            // `head - tail` from underflowing when other producers and the consumer move both
            // between the loads.
            let tail = self.tail.load(Ordering::Acquire);
            let head = self.head.load(Ordering::Relaxed);
            if head.wrapping_sub(tail) > cap - len {
                return Err(self.count_drop());
            }
            // Relaxed: `head` only hands out positions; the data is published by the header's
            // Release store in `commit`.
            if self
                .head
                .compare_exchange_weak(
                    head,
                    head.wrapping_add(len),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Ok(Reservation {
                    ring: self,
                    pos: head,
                });
            }
        }
    }

    /// Single-consumer side: the header of the oldest record if it is committed.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(u32, Header)> {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire pairs with the producer's Release store in `commit`: the body words written
        // before it are visible.
        let header = self.slot(tail).load(Ordering::Acquire);
        (header != 0).then_some((tail, Header(header)))
    }

    /// Single-consumer side: body word `index` (1-based; 0 is the header) of the record at `pos`.
    #[inline]
    pub(crate) fn word(&self, pos: u32, index: u32) -> u32 {
        self.slot(pos.wrapping_add(index)).load(Ordering::Relaxed)
    }

    /// Single-consumer side: frees the oldest record (`len` words) after it has been read.
    #[inline]
    pub(crate) fn release(&self, len: u32) {
        let tail = self.tail.load(Ordering::Relaxed);
        for i in 0..len {
            // Zeroed so a stale header is never mistaken for a committed one.
            self.slot(tail.wrapping_add(i)).store(0, Ordering::Relaxed);
        }
        // Release pairs with the producers' Acquire load of `tail` in `reserve`.
        self.tail.store(tail.wrapping_add(len), Ordering::Release);
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
}

impl Reservation<'_> {
    /// Writes body word `index` (1-based).
    #[inline(always)]
    pub(crate) fn put(&self, index: u32, word: u32) {
        // Relaxed: published by the Release store of the header in `commit`.
        self.ring
            .slot(self.pos.wrapping_add(index))
            .store(word, Ordering::Relaxed);
    }

    /// Publishes the record.
    #[inline(always)]
    pub(crate) fn commit(self, header: Header) {
        // Release pairs with the consumer's Acquire load in `peek`.
        self.ring.slot(self.pos).store(header.0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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

    fn read(ring: &DynRing) -> Option<(u32, Vec<u32>)> {
        let (pos, h) = ring.peek()?;
        let body = (1..h.len()).map(|i| ring.word(pos, i)).collect();
        ring.release(h.len());
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
    fn full_ring_drops_and_counts_exactly() {
        let ring: Ring<16> = Ring::new();
        let ring = ring.as_dyn();
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
    fn header_fields() {
        let h = Header::new(5, 200, 0xABCDE);
        assert_eq!((h.kind(), h.len(), h.payload()), (5, 200, 0xABCDE));
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! `RUSTFLAGS="--cfg loom" cargo test -p microspan --release --lib loom_model`
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two producers and the consumer: every record is read whole, exactly once, or counted as
    /// dropped.
    #[test]
    fn two_producers_one_consumer() {
        loom::model(|| {
            let ring: Arc<Ring<16>> = Arc::new(Ring::new());
            let producers: Vec<_> = (0..2u32)
                .map(|p| {
                    let ring = ring.clone();
                    thread::spawn(move || {
                        let mut written = 0;
                        for i in 0..2u32 {
                            let ring = ring.as_dyn();
                            if let Ok(r) = ring.reserve(6) {
                                for w in 1..6 {
                                    r.put(w, p * 100 + i * 10 + w);
                                }
                                r.commit(Header::new(1 + p, 6, i));
                                written += 1;
                            }
                        }
                        written
                    })
                })
                .collect();
            let mut read = 0;
            let consumer = ring.as_dyn();
            for _ in 0..3 {
                if let Some((pos, h)) = consumer.peek() {
                    let p = h.kind() - 1;
                    let i = h.payload();
                    for w in 1..6 {
                        assert_eq!(consumer.word(pos, w), p * 100 + i * 10 + w);
                    }
                    consumer.release(h.len());
                    read += 1;
                }
                thread::yield_now();
            }
            let written: u32 = producers.into_iter().map(|t| t.join().unwrap()).sum();
            while let Some((_, h)) = consumer.peek() {
                consumer.release(h.len());
                read += 1;
            }
            assert_eq!(written, read);
            assert_eq!(written + consumer.dropped(), 4);
        });
    }
}
