//! The tracer and its spans: the record path.
//!
//! ```
//! use microspan::{Clock, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
//! static RING: Ring<1024> = Ring::new();
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("in-process-service"));
//!
//! let root = TRACER.root("in-process-service");
//! {
//!     let foo = root.child("Foo");
//!     // … work …
//!     let bar = foo.child("Bar");
//!     bar.log((("event", "error"), ("message", "something wrong")));
//!     bar.set_tag("error", true);
//! } // Bar, then Foo, finish here (explicit `finish()` exists too)
//! root.finish();
//! ```

use core::cell::Cell;

// Under `cfg(loom)` the boot id keeps a plain atomic: it is not part of the ring protocol the loom
// model checks, and `Tracer::new` is a `const fn`, in which loom's atomics cannot be built.
#[cfg(not(loom))]
use crate::atomic::AtomicU32;
use crate::atomic::Ordering;
use crate::clock::Clock;
use crate::config::{
    MAX_BAGGAGE_KEY_LEN, MAX_BAGGAGE_VALUE_LEN, MAX_FIELDS_PER_LOG, MAX_REFERENCES, MAX_STR_LEN,
    MAX_TAGS_PER_SPAN,
};
use crate::context::{Flags, SpanContext, SpanId, TraceId};
use crate::propagation::jaeger::JAEGER_DEBUG_ID;
use crate::propagation::DebugId;
use crate::record::{self, byte_words, truncate, Cursor, P};
use crate::ring::{DynRing, Header, Reservation, Ring, MAX_RECORD_WORDS};
pub use crate::sampler::Sampler;
use crate::value::{DynTags, Tags, Value};
#[cfg(loom)]
use core::sync::atomic::AtomicU32;

/// Who the device is, announced to the decoder in every session record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Session {
    /// The Jaeger service name (`in-process-service` in the reference example).
    pub service: &'static str,
    /// A 64-bit id of this device (for example from the chip's unique id); the high half of the
    /// trace ids of traces started here, and mixed into the high half of span ids
    /// ([`SpanId::boot_prefix`]: two devices continuing one backend trace make different ids).
    pub device_id: u64,
    /// An id for this boot (random, or a reset counter kept in flash): with the device id, the
    /// high half of span ids ([`SpanId::boot_prefix`]), and what makes a reset visible to the
    /// decoder. Can be set later with
    /// [`Tracer::set_boot_id`].
    pub boot_id: u32,
    /// Firmware version, shown as a process tag in Jaeger.
    pub firmware_version: &'static str,
}

impl Session {
    /// A session with the given service name and default ids.
    pub const fn new(service: &'static str) -> Self {
        Self {
            service,
            device_id: 0x6d73_7061_6e00_0001,
            boot_id: 0,
            firmware_version: "",
        }
    }
    /// Sets the device id.
    pub const fn device_id(mut self, id: u64) -> Self {
        self.device_id = id;
        self
    }
    /// Sets the boot id.
    pub const fn boot_id(mut self, id: u32) -> Self {
        self.boot_id = id;
        self
    }
    /// Sets the firmware version.
    pub const fn firmware_version(mut self, v: &'static str) -> Self {
        self.firmware_version = v;
        self
    }
}

/// The kind of a reference between spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RefKind {
    /// The parent waits for the child (an RPC, a function call).
    ChildOf,
    /// The parent does not wait (a producer and its consumer).
    FollowsFrom,
}

/// Records spans into a ring. Put one in a `static`; every method takes `&self` and is safe from
/// thread mode, any interrupt priority and any thread.
///
/// `C` is the clock. By default it is `&dyn Clock`, so every tracer has one type whatever its
/// clock; naming the clock's type instead (`Tracer<'static, BoardClock>`) lets the compiler inline
/// it into the record path (a measurable saving on small cores, see `BENCHMARKS.md`). Either
/// kind of tracer coerces to `&Tracer<dyn Clock>`, which is what a [`Drain`](crate::Drain) reads.
pub struct Tracer<'a, C: ?Sized + Clock = &'a dyn Clock> {
    pub(crate) ring: &'a DynRing,
    /// Who the device is (in flash when the tracer is a `static`: it never changes).
    pub(crate) session: &'a Session,
    boot_id: AtomicU32,
    sampler: Sampler,
    /// What the configured sampler adds (set by `with_sampler`): its decision and the
    /// `sampler.type`/`sampler.param` tags of sampled roots. Behind a pointer, so that a firmware
    /// links only the sampler it configures, and none without `with_sampler`.
    hooks: Option<&'static SamplerHooks>,
    /// Ids of unsampled spans (they never touch the ring, so they need their own counter).
    unsampled_ids: AtomicU32,
    /// The clock (last: a `Tracer<C>` unsizes to a `Tracer<dyn Clock>`).
    pub(crate) clock: C,
}

/// Losses of one span, carried by its finish record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Losses {
    /// Tags beyond [`MAX_TAGS_PER_SPAN`].
    pub tags_over_capacity: u8,
    /// Log fields beyond [`MAX_FIELDS_PER_LOG`] (or beyond a record's size), references beyond
    /// [`MAX_REFERENCES`], and baggage items refused: beyond the span's `B`, an empty key, a key
    /// or value longer than its capacity, or lost on extraction.
    pub fields_over_capacity: u8,
    /// Strings and keys cut to their capacity (baggage is never cut: see [`Baggage::set`]).
    pub strings_truncated: u8,
    /// This span's own records (tags, logs, baggage, references) dropped because the ring was full.
    pub records_dropped: u8,
}

impl Losses {
    pub(crate) const fn pack(self) -> u32 {
        self.tags_over_capacity as u32
            | (self.fields_over_capacity as u32) << 8
            | (self.strings_truncated as u32) << 16
            | (self.records_dropped as u32) << 24
    }
    pub(crate) const fn unpack(w: u32) -> Self {
        Self {
            tags_over_capacity: w as u8,
            fields_over_capacity: (w >> 8) as u8,
            strings_truncated: (w >> 16) as u8,
            records_dropped: (w >> 24) as u8,
        }
    }
    /// `true` when nothing was lost.
    pub const fn is_empty(&self) -> bool {
        self.pack() == 0
    }
}

/// One baggage item: key and value copied into fixed-size strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaggageItem {
    /// The key.
    pub key: heapless::String<MAX_BAGGAGE_KEY_LEN>,
    /// The value.
    pub value: heapless::String<MAX_BAGGAGE_VALUE_LEN>,
}

/// Up to `B` baggage items: key/value pairs that travel with a span context to every descendant.
/// `B = 0` (the default for [`Span`]) costs nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baggage<const B: usize> {
    items: heapless::Vec<BaggageItem, B>,
}

impl<const B: usize> Baggage<B> {
    /// No items.
    pub const fn new() -> Self {
        Self {
            items: heapless::Vec::new(),
        }
    }

    /// Sets `key` to `value` (replacing an existing value); `true` when stored.
    ///
    /// An item is stored whole or not at all: it is refused (`false`, the baggage unchanged) when
    /// the key is empty, longer than [`MAX_BAGGAGE_KEY_LEN`] or the value longer than
    /// [`MAX_BAGGAGE_VALUE_LEN`] bytes, or when the key is new and `B` items are held.
    ///
    /// Why an over-long item is refused rather than cut, unlike tags and log strings: baggage
    /// exists to be propagated, and W3C Baggage forbids propagating part of an item ("If a
    /// platform cannot propagate all baggage, it MUST NOT propagate any partial list-members"):
    /// a cut session id or tenant would reach the next service looking whole. Refusing it keeps
    /// every stored item whole, so every injector writes the items exactly as they were set,
    /// with no per-item mark costing RAM in every span. An empty key is refused because no
    /// carrier can carry it.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        if key.is_empty() || key.len() > MAX_BAGGAGE_KEY_LEN || value.len() > MAX_BAGGAGE_VALUE_LEN
        {
            return false;
        }
        let mut v = heapless::String::new();
        // Cannot fail: `value` fits the capacity (checked above).
        let _ = v.push_str(value);
        if let Some(item) = self.items.iter_mut().find(|i| i.key == key) {
            item.value = v;
            return true;
        }
        let mut k = heapless::String::new();
        let _ = k.push_str(key);
        self.items.push(BaggageItem { key: k, value: v }).is_ok()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.key == key)
            .map(|i| i.value.as_str())
    }

    /// Calls `f(key, value)` for each item until it returns `false`.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str) -> bool) {
        for i in &self.items {
            if !f(&i.key, &i.value) {
                break;
            }
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<'a> Tracer<'a> {
    /// A tracer recording into `ring`, timed by `clock`, announcing `session`.
    ///
    /// The clock is called through `dyn Clock`; [`with_clock`](Tracer::with_clock) names its
    /// type instead, so that the record path can inline it.
    pub const fn new<const N: usize>(
        ring: &'a Ring<N>,
        clock: &'a dyn Clock,
        session: &'a Session,
    ) -> Self {
        Self::with_clock(ring, clock, session)
    }
}

impl<'a, C: Clock> Tracer<'a, C> {
    /// A tracer whose clock's type is part of its own (`Tracer<'a, C>`): the record path calls
    /// `clock` directly, and the compiler can inline it. Otherwise the same as
    /// [`Tracer::new`].
    ///
    /// ```
    /// use microspan::{Clock, Drain, Ring, Session, Span, Tracer};
    /// struct Ticks;
    /// impl Clock for Ticks {
    ///     fn now(&self) -> u32 { 7 }
    ///     fn ticks_per_second(&self) -> u32 { 1_000_000 }
    /// }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer<'static, Ticks> =
    ///     Tracer::with_clock(&RING, Ticks, &Session::new("sensor-node"));
    ///
    /// let root: Span<'_, 0, Ticks> = TRACER.root("measure");
    /// root.child("adc").finish();
    /// drop(root);
    /// // A drain reads any tracer, whatever its clock type.
    /// let mut drain: Drain<'_, 128> = Drain::new(&TRACER).unwrap();
    /// assert!(drain.drain_with(|b| b.len()) > 0);
    /// ```
    pub const fn with_clock<const N: usize>(
        ring: &'a Ring<N>,
        clock: C,
        session: &'a Session,
    ) -> Self {
        Self {
            ring: ring.as_dyn(),
            clock,
            boot_id: AtomicU32::new(session.boot_id),
            session,
            sampler: Sampler::Const(true),
            hooks: None,
            unsampled_ids: AtomicU32::new(0),
        }
    }

    /// A tracer over the unsized view of a ring (the post-mortem replay builds its ring at run
    /// time).
    #[cfg(feature = "std")]
    pub(crate) fn with_dyn_ring(ring: &'a DynRing, clock: C, session: &'a Session) -> Self {
        Self {
            ring,
            clock,
            boot_id: AtomicU32::new(session.boot_id),
            session,
            sampler: Sampler::Const(true),
            hooks: None,
            unsampled_ids: AtomicU32::new(0),
        }
    }

    /// The same tracer with another sampler (see [`sampler`](crate::sampler)). Sampled roots then
    /// carry the tags `sampler.type` and `sampler.param`, as Jaeger clients record them.
    pub const fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.hooks = Some(match &sampler {
            Sampler::Const(_) => &CONST_HOOKS,
            Sampler::Probabilistic(_) => &PROBABILISTIC_HOOKS,
            Sampler::RateLimiting(_) => &RATE_LIMITING_HOOKS,
        });
        self.sampler = sampler;
        self
    }
}

impl<'a, C: ?Sized + Clock> Tracer<'a, C> {
    /// The sampler deciding new roots.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Sets the boot id: call it once at start-up, before the first span (and before enabling
    /// the interrupts that record).
    ///
    /// Span ids and trace ids are the boot id (mixed with the device id) joined to a local number
    /// when they are read, and
    /// the decoder names spans after the boot id of the stream's session record. A drain that
    /// finds the boot id changed when it builds its next frame starts a new epoch there, with a
    /// session record that carries the new id ([`Drain`](crate::Drain)), so records encoded
    /// from then on are exported with it. The decoder takes a session record with another boot id
    /// for a device reset, so a call after the first span has these costs:
    ///
    /// - a span still open at the call is exported **incomplete**, with its old id; its later
    ///   records (tags, logs, its end) come after that session record, and the decoder drops
    ///   them as records of an unknown span;
    /// - a span that started before the call and was not drained yet is exported with the new
    ///   id, while a context of it handed out (injected into a message) before the call names the
    ///   old one;
    /// - the decoder counts one device reset.
    ///
    /// Spans that start after the call are exported whole, with the new ids, as are those the
    /// drain sent before it, with the old.
    pub fn set_boot_id(&self, boot_id: u32) {
        self.boot_id.store(boot_id, Ordering::Relaxed);
    }

    /// The boot id.
    pub fn boot_id(&self) -> u32 {
        self.boot_id.load(Ordering::Relaxed)
    }

    /// The high half of this boot's span ids ([`SpanId::boot_prefix`]). In line: out of line
    /// (one copy instead of six), a root span cost 13 / 15 more instructions, its id no longer
    /// dropped where nothing reads it, and the footprint grew 40 bytes (measured December 2026).
    #[inline(always)]
    fn id_prefix(&self) -> u32 {
        SpanId::boot_prefix(self.session.device_id, self.boot_id())
    }

    /// The session announced to the decoder.
    pub fn session(&self) -> &'a Session {
        self.session
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Records lost so far because the ring was full (exact; see
    /// [`Ring::dropped`](crate::Ring::dropped)): each record dropped, and each record a span
    /// whose start was dropped did not write (its tags, logs, references, baggage and end).
    pub fn dropped(&self) -> u32 {
        self.ring.dropped()
    }

    /// Starts a root span (a new trace), if the sampler says so.
    ///
    /// The fast path of the record path: no builder, no reference scan. The sampler's decision and
    /// an unsampled span are inline at the call site; recording a sampled one is not.
    #[inline(always)]
    pub fn root(&self, name: &'static str) -> Span<'_, 0, C> {
        if !self.sample_root() {
            return self.unsampled_root();
        }
        self.sampled_root(name)
    }

    /// Starts a root span with tags (OpenTracing's start-span `Tags` option), if the sampler says
    /// so. The same span as [`root`](Self::root) followed by [`Span::set_tag`] for each tag, in
    /// one ring operation instead of one per record: the START and TAG records share one
    /// reservation and are published together, or (ring full) dropped together: then the span
    /// is lost, as when a plain start is dropped, and its START, its END, each of its tags and
    /// its sampler's two are counted as dropped records. Tags beyond [`MAX_TAGS_PER_SPAN`] are
    /// dropped and counted.
    ///
    /// ```
    /// use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("in-process-service"));
    ///
    /// let root = TRACER.root_with_tags(
    ///     "in-process-service",
    ///     &[("span.kind", "server".into()), ("http.status_code", 200u32.into())],
    /// );
    /// assert!(root.is_recording());
    /// ```
    #[inline(always)]
    pub fn root_with_tags<'v>(&self, name: &'static str, tags: impl Tags<'v>) -> Span<'_, 0, C> {
        if !self.sample_root() {
            return self.unsampled_root();
        }
        let (n, over) = cap_tags(&tags, 0);
        let words = tag_words(&tags, n);
        if !batch_fits(START_WORDS + words) {
            return self.root_then_tags_cold(name, tags);
        }
        // Dropped, the START takes with it its END, its tags and its sampler's two.
        let lost_with = 1 + lost_tags(&tags) + SAMPLER_TAGS * self.hooks.is_some() as u32;
        match self.start_tagged(name, None, false, false, &tags, n, words, lost_with) {
            Ok((pos, left_out, cut)) => {
                let span = Span::recorded(self, self.trace_of_root(pos), pos, pos, Flags::SAMPLED);
                span.started_with_tags(n, over, cut, left_out);
                if let Some(hooks) = self.hooks {
                    span.tag_sampler(hooks.tags);
                }
                span
            }
            Err(ordinal) => Span::lost(self, lost_trace(self, ordinal), Flags::SAMPLED),
        }
    }

    /// [`root_then_tags`](Self::root_then_tags) reached with the tags by value, so that they are
    /// put in memory (for the `dyn` walk) on this path only.
    #[cold]
    #[inline(never)]
    fn root_then_tags_cold<'v>(&self, name: &'static str, tags: impl Tags<'v>) -> Span<'_, 0, C> {
        self.root_then_tags(name, &tags)
    }

    /// [`root_with_tags`](Self::root_with_tags) for a batch too large for one reservation.
    #[inline(never)]
    fn root_then_tags<'v>(&self, name: &'static str, tags: &dyn DynTags<'v>) -> Span<'_, 0, C> {
        let span = self.sampled_root(name);
        span.set_tags_one_by_one(tags);
        span
    }

    /// A root span the sampler chose: the START record is written out of line, the handle is
    /// built here, in the caller's frame, where the optimiser keeps only what is used.
    #[inline(always)]
    fn sampled_root(&self, name: &'static str) -> Span<'_, 0, C> {
        match self.start_root(name) {
            Ok(pos) => {
                let span = Span::recorded(self, self.trace_of_root(pos), pos, pos, Flags::SAMPLED);
                if let Some(hooks) = self.hooks {
                    span.tag_sampler(hooks.tags);
                }
                span
            }
            // Its sampler tags were counted with it (`start_root_slow`).
            Err(ordinal) => Span::lost(self, lost_trace(self, ordinal), Flags::SAMPLED),
        }
    }

    /// An unsampled root: a valid context without touching the ring. Only its id is drawn; its
    /// trace id is derived from it when [`Span::context`] asks (see
    /// [`unsampled_trace`](Self::unsampled_trace)), so an unsampled span costs a sampler decision
    /// and a counter.
    #[inline(always)]
    fn unsampled_root(&self) -> Span<'_, 0, C> {
        self.unsampled_root_with::<0>()
    }

    /// [`unsampled_root`](Self::unsampled_root) for any baggage capacity.
    #[inline(always)]
    fn unsampled_root_with<const B: usize>(&self) -> Span<'_, B, C> {
        let n = self.unsampled_id();
        Span::unsampled(self, UNSAMPLED_LOCAL_TRACE, n, n, Flags(0))
    }

    /// The trace id of the unsampled local root `n`: the device id with bit 62 flipped (bit 63
    /// marks lost roots) and the root's unsampled span id.
    fn unsampled_trace(&self, n: u32) -> TraceId {
        TraceId::from_halves(
            self.session.device_id ^ (1 << 62),
            self.unsampled_span_id(n).0,
        )
    }

    /// A builder for a span with references, flags or baggage.
    ///
    /// The builder carries whole copies of the contexts it refers to (up to `MAX_REFERENCES`,
    /// 40 bytes each) and of a `jaeger-debug-id`: starting a span this way takes about 380 bytes
    /// of stack on a Cortex-M3 and 410 on a Cortex-M0 (`stack: follows_from` in
    /// `BENCHMARKS.md`), against at most 128 for the other record calls. In an interrupt handler
    /// on a small stack, prefer [`root`](Self::root), [`Span::child`] and their `_with_tags`
    /// forms.
    pub fn span(&self, name: &'static str) -> SpanBuilder<'_, 0, C> {
        SpanBuilder {
            tracer: self,
            name,
            refs: heapless::Vec::new(),
            over_capacity: 0,
            debug: false,
            debug_id: DebugId::new(),
            debug_id_cut: false,
            baggage: Baggage::new(),
        }
    }

    #[inline(always)]
    fn sample_root(&self) -> bool {
        // The const sampler (the default) decides inline; the others through their hooks.
        match self.sampler {
            Sampler::Const(on) => on,
            _ => self.sample_hooked(),
        }
    }

    /// A probabilistic or rate-limiting sampler's decision.
    #[inline(never)]
    fn sample_hooked(&self) -> bool {
        match self.hooks {
            Some(hooks) => (hooks.decide)(
                &self.sampler,
                self.clock.now(),
                self.clock.ticks_per_second(),
            ),
            // Not reached: `with_sampler`, the only way to another sampler, sets the hooks.
            None => true,
        }
    }

    /// The next id of an unsampled span: odd, so never 0, and unique over 2^31 draws.
    ///
    /// A plain load and store, not a read-modify-write: two roots racing at different interrupt
    /// priorities may get the same id. That is harmless (neither trace is recorded anywhere, and
    /// downstream services do not sample a context flagged unsampled), and it keeps an unsampled
    /// span nearly free on every core.
    #[inline(always)]
    fn unsampled_id(&self) -> u32 {
        // Relaxed: a counter that publishes no other memory.
        let n = self.unsampled_ids.load(Ordering::Relaxed).wrapping_add(1);
        self.unsampled_ids.store(n, Ordering::Relaxed);
        n << 1 | 1
    }

    /// The id of a sampled span whose start was dropped (ring full), drawn when its context is
    /// first asked ([`Span::context`], off the record path): from the unsampled spans' counter,
    /// so odd and never 0, and with a read-modify-write, so that two lost spans drawing at once
    /// get two ids (each may be the parent of spans in other services' traces). An unsampled
    /// draw (a load and a store, not atomic) preempted by lost draws can set the counter back, so
    /// a later draw may repeat an id: rare, as it takes a full ring and unsampled spans drawn at
    /// the same time at another priority or on another thread.
    #[cold]
    fn lost_id(&self) -> u32 {
        // Relaxed: a counter that publishes no other memory.
        let n = self
            .unsampled_ids
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        n << 1 | 1
    }

    /// The 64-bit span id of the unsampled (or lost) span `n`: the boot id inverted in the high
    /// half, so it never equals the id of a recorded span of this boot.
    fn unsampled_span_id(&self, n: u32) -> SpanId {
        SpanId::local(!self.id_prefix(), n)
    }

    fn trace_of_root(&self, local: u32) -> TraceId {
        TraceId::from_halves(
            self.session.device_id,
            SpanId::local(self.id_prefix(), local).0,
        )
    }

    /// Writes the START record of a root span (not debug); returns its ring position, or the drop
    /// ordinal. Out of line on microcontrollers (one copy for every call site); a hint on hosts.
    ///
    /// Its common path calls nothing: when the ring's quick reservation does not apply, it hands
    /// the whole start to [`start_slow`](Self::start_slow) (a tail call), so that the common path
    /// needs no stack frame for a call.
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline)]
    fn start_root(&self, name: &'static str) -> Result<u32, u32> {
        let now = self.clock.now();
        match self.ring.reserve_quick(START_WORDS) {
            Some(res) => Ok(publish_start(res, name, 0, 0, START_ROOT, now)),
            None => self.start_root_slow(name),
        }
    }

    /// [`start_root`](Self::start_root) when the ring's quick reservation did not apply:
    /// [`start_slow`](Self::start_slow), and when the start is dropped, the two sampler tags the
    /// root would have carried (a sampler with tags) are counted with it, here rather than in
    /// every call site's handling of a lost start.
    #[cold]
    #[inline(never)]
    fn start_root_slow(&self, name: &'static str) -> Result<u32, u32> {
        let started = self.start_slow(name, 0, 0, START_ROOT);
        if started.is_err() && self.hooks.is_some() {
            self.ring.count_drops(SAMPLER_TAGS);
        }
        started
    }

    /// Writes the START record of a child of the local span `parent` in the trace of the local
    /// root `root`; `bits`: [`START_DEBUG`] and [`START_FOLLOWS`] (FollowsFrom instead of
    /// ChildOf), from [`start_bits`]. Returns its ring position, or the drop ordinal. Out of line
    /// on microcontrollers (one copy for every call site); a hint on hosts. Its common path calls
    /// nothing, as [`start_root`](Self::start_root)'s.
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline)]
    fn start_child(
        &self,
        name: &'static str,
        parent: u32,
        root: u32,
        bits: u32,
    ) -> Result<u32, u32> {
        let now = self.clock.now();
        match self.ring.reserve_quick(START_WORDS) {
            Some(res) => Ok(publish_start(res, name, parent, root, bits, now)),
            None => self.start_slow(name, parent, root, bits),
        }
    }

    /// [`start_root`](Self::start_root) and [`start_child`](Self::start_child) when the ring's
    /// quick reservation did not apply: the whole start, clock included (the arguments of
    /// `start_child`, so that its call is a tail call).
    #[cold]
    #[inline(never)]
    fn start_slow(
        &self,
        name: &'static str,
        parent: u32,
        root: u32,
        bits: u32,
    ) -> Result<u32, u32> {
        let now = self.clock.now();
        let res = self.ring.reserve_start_slow(START_WORDS, 1)?;
        Ok(publish_start(res, name, parent, root, bits, now))
    }

    /// Writes a START record and the TAG records of `tags` (`tag_words` words, from
    /// [`tag_words`]) in one reservation, published by one store: one ring operation where a
    /// start and `set_tag` calls take one each. Inline, so that constant tags fold into stores.
    /// Returns the start's position, how many tags [`write_tags`] left out and how many of the
    /// strings it wrote were cut; when the START is dropped, the `lost_with` records the span
    /// will not write (its END, its tags) are counted with it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn start_tagged<'v>(
        &self,
        name: &'static str,
        parent: Option<(u32, u32)>,
        follows: bool,
        debug: bool,
        tags: &impl Tags<'v>,
        n: usize,
        tag_words: u32,
        lost_with: u32,
    ) -> Result<(u32, usize, u8), u32> {
        let (parent, root, bits) = start_parent(parent, start_bits(follows, debug));
        self.start_batch(
            START_WORDS,
            |c, now| write_start(c, name, parent, root, bits, now),
            tags,
            n,
            tag_words,
            lost_with,
        )
    }

    /// A START record of `start_words` words, written by `write_start` (given the time; it
    /// returns the header), and the TAG records of `tags` after it, in one reservation published
    /// by one store: the work of [`start_tagged`](Self::start_tagged), for any kind of START
    /// (the builder's START_REMOTE too). The other arguments and the answer are `start_tagged`'s.
    #[inline(always)]
    fn start_batch<'v>(
        &self,
        start_words: u32,
        write_start: impl FnOnce(&mut Cursor<'_>, u32) -> Header,
        tags: &impl Tags<'v>,
        n: usize,
        tag_words: u32,
        lost_with: u32,
    ) -> Result<(u32, usize, u8), u32> {
        let now = self.clock.now();
        let len = start_words + tag_words;
        let res = self.ring.reserve_start(len, lost_with)?;
        let pos = res.pos;
        let mut c = Cursor::new(res);
        let header = write_start(&mut c, now);
        let (_, left_out, cut) = write_tags(&mut c, pos, tags, n, tag_words, len);
        c.res.commit_first(header);
        Ok((pos, left_out, cut))
    }

    /// Writes a START_REMOTE record (explicit trace id and parent span id). `local_parent`: the
    /// parent is a span of this tracer, its local id the low half of `parent` (the drain then
    /// writes a short start when the parent's start is in the same frame).
    fn start_remote(
        &self,
        name: &'static str,
        trace: TraceId,
        parent: SpanId,
        follows: bool,
        debug: bool,
        local_parent: bool,
    ) -> Result<u32, u32> {
        let now = self.clock.now();
        let res = self.ring.reserve_start(START_REMOTE_WORDS, 1)?;
        let pos = res.pos;
        let mut c = Cursor::new(res);
        let bits = remote_bits(follows, debug, local_parent);
        let header = write_start_remote(&mut c, name, trace, parent, bits, now);
        c.res.commit(header);
        Ok(pos)
    }
}

/// [`Span::root`] of a span whose trace id did not come from a local root of this boot (a remote
/// parent, or a lost start): its children record the trace id explicitly. Never the position of a
/// START: positions start at 1, and when they wrap, position 0 is the array's last word, where a
/// START (at least five words) cannot begin (it would be padded to the array's start).
const REMOTE_TRACE: u32 = 0;

/// How the start of a child or follower went (with its position, when recorded): returned in
/// registers by the out-of-line start, for the caller to build the handle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Started {
    /// Recorded, in its parent's local trace.
    Local,
    /// Recorded, naming its trace explicitly (the parent's came from elsewhere, or its start
    /// was lost).
    Remote,
    /// Its start was dropped (ring full).
    Lost,
}

/// [`Span::tags`] of a span whose start was lost: beyond any capacity, so that the capacity check
/// of [`Span::set_tag`]'s writer also turns away a lost span's tags (to be counted as dropped),
/// at no cost to a recorded span's.
const LOST_TAGS: u8 = u8::MAX;
const _: () = assert!(MAX_TAGS_PER_SPAN < LOST_TAGS as usize);

/// [`Span::trace`] of an unsampled span of a trace started on this device: the trace id is derived
/// from the root's unsampled id when asked (a real trace id is never 0).
const UNSAMPLED_LOCAL_TRACE: TraceId = TraceId(0);

/// How a span stands with respect to the ring.
///
/// "Recorded or lost" ([`Span::is_sampled_live`]) is a subtraction and one compare. (With those
/// two first it is one compare, but a child span costs two instructions more on Cortex-M3 and
/// Cortex-M0: `insn-probe child0`, December 2026.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// Not sampled: nothing is recorded, children are not sampled either.
    Unsampled,
    /// Recorded at this ring position.
    Recorded,
    /// Sampled, but the start record was dropped (ring full); children still record. Its context
    /// names an id of its own, drawn as an unsampled span's is, so that a service or device it is
    /// injected into joins the trace (the decoder just lacks this one span). Every record it
    /// skips is counted as dropped.
    Lost,
    /// Finished.
    Finished,
}

/// A span being recorded. Finishes when dropped (or with [`finish`](Span::finish)).
///
/// Keep it in a named variable for as long as the work lasts: `let _span = TRACER.root("poll");`.
/// `let _ = TRACER.root("poll");` drops it on the spot (Rust's rule for `_`), records a span of
/// no duration, and no lint warns about it.
///
/// `B` is the number of baggage items the span (and its children) can carry; 0 by default.
/// A `Span` is `Send` (it can move to another thread or task) but not `Sync`.
///
/// `C` is the tracer's clock type (see [`Tracer`]); spans of a tracer with the default clock
/// type are `Span<'a>` or `Span<'a, B>`.
#[must_use = "a span finishes when dropped: one not kept in a variable lasts no time at all"]
pub struct Span<'a, const B: usize = 0, C: ?Sized + Clock = &'a dyn Clock> {
    tracer: &'a Tracer<'a, C>,
    /// The trace id ([`UNSAMPLED_LOCAL_TRACE`] for an unsampled trace started here: derived from
    /// `root` when asked).
    trace: TraceId,
    /// The ring position of the start record; for an unsampled span, or a lost one (its start
    /// dropped), its unsampled id, drawn when [`context`](Span::context) first asks (0 until
    /// then).
    id: Cell<u32>,
    /// The local root whose id gives the trace id, [`REMOTE_TRACE`] when the trace id came from
    /// elsewhere (its children then record it explicitly); for an unsampled span of a local
    /// trace, the root's unsampled id.
    root: u32,
    flags: Flags,
    state: Cell<State>,
    tags: Cell<u8>,
    losses: Cell<Losses>,
    baggage: Baggage<B>,
}

/// Builds a span with references, the debug flag or baggage; [`start`](SpanBuilder::start) records it.
#[must_use = "a span builder records nothing until `.start()`"]
pub struct SpanBuilder<'a, const B: usize, C: ?Sized + Clock = &'a dyn Clock> {
    tracer: &'a Tracer<'a, C>,
    name: &'static str,
    refs: heapless::Vec<(RefKind, SpanContext), MAX_REFERENCES>,
    /// References beyond [`MAX_REFERENCES`], and baggage items lost on extraction
    /// ([`extracted`](SpanBuilder::extracted)): counted on the span once it starts
    /// ([`Losses::fields_over_capacity`]).
    over_capacity: u8,
    debug: bool,
    /// A `jaeger-debug-id` that started this request ([`Extracted::debug_id`]): tagged on the
    /// span when not empty (`debug_id_cut`: it was cut on extraction, counted on the span).
    debug_id: DebugId,
    debug_id_cut: bool,
    baggage: Baggage<B>,
}

impl<'a, const B: usize, C: ?Sized + Clock> SpanBuilder<'a, B, C> {
    /// Adds a ChildOf reference. The first ChildOf reference (or, without one, the first
    /// FollowsFrom) is the parent and decides the trace. A context that is not valid (zero ids)
    /// is no reference and is ignored.
    pub fn child_of(self, ctx: &SpanContext) -> Self {
        self.reference(RefKind::ChildOf, ctx)
    }

    /// Adds a FollowsFrom reference.
    pub fn follows_from(self, ctx: &SpanContext) -> Self {
        self.reference(RefKind::FollowsFrom, ctx)
    }

    /// Adds a reference; beyond [`MAX_REFERENCES`] one is dropped and counted (the span's
    /// [`Losses::fields_over_capacity`], which the decoder turns into a Jaeger warning): the new
    /// one, unless it is the first ChildOf (which decides the parent), in which case the last
    /// FollowsFrom makes way for it.
    fn reference(mut self, kind: RefKind, ctx: &SpanContext) -> Self {
        if !ctx.is_valid() {
            // No span to refer to (e.g. a carrier with baggage only): it takes no slot.
            return self;
        }
        if let Err(new) = self.refs.push((kind, *ctx)) {
            warn!(
                "microspan: more than {=usize} references, one was dropped",
                MAX_REFERENCES
            );
            self.over_capacity = self.over_capacity.saturating_add(1);
            let first_child_of =
                kind == RefKind::ChildOf && !self.refs.iter().any(|(k, _)| *k == RefKind::ChildOf);
            if first_child_of {
                if let Some(last) = self.refs.last_mut() {
                    *last = new;
                }
            }
        }
        self
    }

    /// Counts `n` items lost before the span started (baggage dropped on extraction): the span
    /// carries them in [`Losses::fields_over_capacity`].
    pub(crate) fn count_over_capacity(mut self, n: u16) -> Self {
        let n = n.min(u8::MAX as u16) as u8;
        self.over_capacity = self.over_capacity.saturating_add(n);
        self
    }

    /// Forces sampling and sets the debug flag.
    pub fn debug(mut self) -> Self {
        self.debug = true;
        self
    }

    /// Carries `baggage` (for example extracted from an incoming message) into the new span.
    ///
    /// The items are *carried*, not set: they join the span's baggage (and its descendants') and
    /// are recorded as carried items, which the decoder does not log, as Jaeger clients log an
    /// item only on the span that sets it (upstream, for an extracted context). To set an item on
    /// the new span, logged there, use [`Span::set_baggage`] once it has started.
    pub fn with_baggage<const B2: usize>(self, baggage: Baggage<B2>) -> SpanBuilder<'a, B2, C> {
        SpanBuilder {
            tracer: self.tracer,
            name: self.name,
            refs: self.refs,
            over_capacity: self.over_capacity,
            debug: self.debug,
            debug_id: self.debug_id,
            debug_id_cut: self.debug_id_cut,
            baggage,
        }
    }

    /// A request that asked to be traced with `jaeger-debug-id` (see [`SpanBuilder::extracted`]):
    /// debug, and the id tagged once the span starts.
    pub(crate) fn debug_request(mut self, id: DebugId, cut: bool) -> Self {
        self.debug = true;
        self.debug_id = id;
        self.debug_id_cut = cut;
        self
    }

    /// Starts the span.
    pub fn start(self) -> Span<'a, B, C> {
        self.start_with_tags(())
    }

    /// Starts the span with tags (OpenTracing's start-span `Tags` option): the same span as
    /// [`start`](Self::start) followed by [`Span::set_tags`], in one ring operation instead of
    /// two, and all or nothing: the START and its tags are published together or, ring full,
    /// dropped together and counted (see [`Tracer::root_with_tags`]). A server span continuing
    /// a request's context, say, is tagged `span.kind=server` from its first record.
    ///
    /// ```
    /// use microspan::propagation::w3c;
    /// use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("thermostat"));
    ///
    /// let incoming =
    ///     w3c::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    ///         .unwrap();
    /// let span = TRACER
    ///     .span("PUT /setpoint")
    ///     .child_of(&incoming)
    ///     .start_with_tags(&[("span.kind", "server".into()), ("setpoint", 21u32.into())]);
    /// assert!(span.is_recording());
    /// assert_eq!(span.context().trace_id, incoming.trace_id);
    /// ```
    pub fn start_with_tags<'v>(self, tags: impl Tags<'v>) -> Span<'a, B, C> {
        let t = self.tracer;
        let parent_index = self
            .refs
            .iter()
            .position(|(k, _)| *k == RefKind::ChildOf)
            .or((!self.refs.is_empty()).then_some(0));
        // The tags in the START's reservation when they fit one (the larger START, a remote one,
        // decides); otherwise none there, and each is written on its own once the span started.
        let (n, over) = cap_tags(&tags, 0);
        let words = tag_words(&tags, n);
        let batch = batch_fits(START_REMOTE_WORDS + words);
        let (n, over, words) = if batch { (n, over, words) } else { (0, 0, 0) };
        // Dropped, the START takes with it its END and the tags it carries.
        let lost_with = 1 + if batch { lost_tags(&tags) } else { 0 };
        let mut span = match parent_index {
            None => {
                let sampled = self.debug || t.sample_root();
                let flags = if self.debug {
                    Flags::SAMPLED.union(Flags::DEBUG)
                } else {
                    Flags::SAMPLED
                };
                // A sampler with tags tags the roots it samples (not debug ones).
                let hooks = t.hooks.filter(|_| !self.debug);
                if !sampled {
                    t.unsampled_root_with::<B>()
                } else {
                    // Dropped, a root also takes its sampler's tags.
                    let lost_with = lost_with + SAMPLER_TAGS * hooks.is_some() as u32;
                    match t.start_tagged(
                        self.name, None, false, self.debug, &tags, n, words, lost_with,
                    ) {
                        Ok((pos, left_out, cut)) => {
                            let span = Span::recorded(t, t.trace_of_root(pos), pos, pos, flags);
                            span.started_with_tags(n, over, cut, left_out);
                            if let Some(hooks) = hooks {
                                span.tag_sampler(hooks.tags);
                            }
                            span
                        }
                        Err(ordinal) => Span::lost(t, lost_trace(t, ordinal), flags),
                    }
                }
            }
            Some(i) => {
                let (kind, ctx) = self.refs[i];
                let flags = if self.debug {
                    ctx.flags.union(Flags::SAMPLED).union(Flags::DEBUG)
                } else if ctx.flags.is_debug() {
                    // The debug flag forces sampling (an extracted context may carry it alone).
                    ctx.flags.union(Flags::SAMPLED)
                } else {
                    ctx.flags
                };
                let follows = kind == RefKind::FollowsFrom;
                if !flags.is_sampled() {
                    Span::unsampled(t, ctx.trace_id, 0, 0, flags)
                } else {
                    let boot = t.id_prefix() as u64;
                    let local_trace = ctx.trace_id.high() == t.session.device_id
                        && ctx.trace_id.low() >> 32 == boot;
                    let debug = flags.is_debug();
                    let started = if local_trace && ctx.span_id.0 >> 32 == boot {
                        let root = ctx.trace_id.low() as u32;
                        let parent = Some((ctx.span_id.0 as u32, root));
                        t.start_tagged(
                            self.name, parent, follows, debug, &tags, n, words, lost_with,
                        )
                        .map(|started| (started, root))
                    } else {
                        // A span of this boot in a trace from elsewhere (a request's span handed
                        // to a handler or a task) is a local parent, as for its own children:
                        // the decoder must not take it for another process's span.
                        let local_parent = ctx.span_id.0 >> 32 == boot;
                        let bits = remote_bits(follows, debug, local_parent);
                        let (trace, parent) = (ctx.trace_id, ctx.span_id);
                        let write = |c: &mut Cursor<'_>, now| {
                            write_start_remote(c, self.name, trace, parent, bits, now)
                        };
                        t.start_batch(START_REMOTE_WORDS, write, &tags, n, words, lost_with)
                            .map(|started| (started, REMOTE_TRACE))
                    };
                    match started {
                        Ok(((pos, left_out, cut), root)) => {
                            let span = Span::recorded(t, ctx.trace_id, pos, root, flags);
                            span.started_with_tags(n, over, cut, left_out);
                            span
                        }
                        Err(_) => Span::lost(t, ctx.trace_id, flags),
                    }
                }
            }
        };
        if !batch {
            span.set_tags_one_by_one(&tags);
        }
        for (n, (kind, ctx)) in self.refs.iter().enumerate() {
            if Some(n) != parent_index {
                span.add_reference(*kind, ctx);
            }
        }
        if self.over_capacity > 0 {
            let n = self.over_capacity;
            span.note(|l| l.fields_over_capacity = l.fields_over_capacity.saturating_add(n));
        }
        for item in self.baggage.items.iter() {
            span.carry_baggage(&item.key, &item.value);
        }
        if !self.debug_id.is_empty() {
            span.set_tag(JAEGER_DEBUG_ID, Value::text(&self.debug_id));
            if self.debug_id_cut {
                span.note(|l| l.strings_truncated = l.strings_truncated.saturating_add(1));
            }
        }
        span
    }
}

/// The trace id of a root whose start record was dropped: still unique (the drop ordinal), with
/// the top bit of the high half flipped so it never equals a derived one.
fn lost_trace<C: ?Sized + Clock>(t: &Tracer<'_, C>, ordinal: u32) -> TraceId {
    TraceId::from_halves(
        t.session.device_id ^ (1 << 63),
        SpanId::local(t.id_prefix(), ordinal).0,
    )
}

impl<'a, const B: usize, C: ?Sized + Clock> Span<'a, B, C> {
    #[inline(always)]
    fn recorded(
        tracer: &'a Tracer<'a, C>,
        trace: TraceId,
        id: u32,
        root: u32,
        flags: Flags,
    ) -> Self {
        Self::with_state(tracer, trace, id, root, flags, State::Recorded)
    }

    fn lost(tracer: &'a Tracer<'a, C>, trace: TraceId, flags: Flags) -> Self {
        warn!("microspan: ring full, a span start was dropped");
        Self::with_state(tracer, trace, 0, 0, flags, State::Lost)
    }

    #[inline(always)]
    fn unsampled(
        tracer: &'a Tracer<'a, C>,
        trace: TraceId,
        id: u32,
        root: u32,
        flags: Flags,
    ) -> Self {
        Self::with_state(tracer, trace, id, root, flags, State::Unsampled)
    }

    #[inline(always)]
    fn with_state(
        tracer: &'a Tracer<'a, C>,
        trace: TraceId,
        id: u32,
        root: u32,
        flags: Flags,
        state: State,
    ) -> Self {
        Self {
            tracer,
            trace,
            id: Cell::new(id),
            root,
            flags,
            state: Cell::new(state),
            tags: Cell::new(if state == State::Lost { LOST_TAGS } else { 0 }),
            losses: Cell::new(Losses::default()),
            baggage: Baggage::new(),
        }
    }

    /// `true` when this span's records reach the ring (sampled, start not dropped, not finished).
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.state.get() == State::Recorded
    }

    /// `true` when the span is sampled and not finished: recorded, or lost (its start dropped),
    /// in which case its records are counted as dropped. The check in line at a `set_tag` or
    /// `log` call site, which leaves telling the two apart to the out-of-line writer.
    #[inline(always)]
    fn is_sampled_live(&self) -> bool {
        (self.state.get() as u8).wrapping_sub(State::Recorded as u8) <= 1
    }

    /// The context to propagate (inject into a message, hand to an interrupt handler, reference
    /// from another span).
    pub fn context(&self) -> SpanContext {
        let t = self.tracer;
        let mut trace_id = self.trace;
        let span_id = match self.state.get() {
            State::Recorded | State::Finished => SpanId::local(t.id_prefix(), self.id.get()),
            // A lost span (its start dropped: the ring was full) gets an id the way an unsampled
            // one does, when first asked: a valid context, so that the service or device it is
            // injected into joins the trace instead of starting a new one, exactly under load.
            // Drawn here rather than at the drop, so the record path does not change. Its trace
            // id is never `UNSAMPLED_LOCAL_TRACE` (0): a lost root's is `lost_trace`.
            state @ (State::Unsampled | State::Lost) => {
                let mut id = self.id.get();
                if id == 0 {
                    id = if state == State::Lost {
                        t.lost_id()
                    } else {
                        t.unsampled_id()
                    };
                    self.id.set(id);
                }
                if trace_id == UNSAMPLED_LOCAL_TRACE {
                    trace_id = t.unsampled_trace(self.root);
                }
                t.unsampled_span_id(id)
            }
        };
        SpanContext {
            trace_id,
            span_id,
            flags: self.flags,
        }
    }

    /// Starts a child span (ChildOf this one), inheriting trace, sampling and baggage.
    #[inline(always)]
    pub fn child(&self, name: &'static str) -> Span<'a, B, C> {
        let state = self.state.get();
        if state == State::Unsampled {
            return self.unsampled_child();
        }
        if state != State::Lost && self.root != REMOTE_TRACE {
            self.child_span(self.local_child_start(name))
        } else {
            self.child_span(self.start_related(name, false))
        }
    }

    /// Starts a child span (ChildOf this one) with tags (OpenTracing's start-span `Tags`
    /// option): the same span as [`child`](Self::child) followed by [`set_tag`](Self::set_tag)
    /// for each tag, in one ring operation instead of one per record (see
    /// [`Tracer::root_with_tags`]).
    ///
    /// ```
    /// use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("sensor"));
    ///
    /// let root = TRACER.root("poll");
    /// let read = root.child_with_tags("i2c.read", &[("peer.address", 0x48u32.into())]);
    /// # drop(read);
    /// ```
    #[inline(always)]
    pub fn child_with_tags<'v>(&self, name: &'static str, tags: impl Tags<'v>) -> Span<'a, B, C> {
        let state = self.state.get();
        if state == State::Unsampled {
            return self.unsampled_child();
        }
        if state != State::Lost && self.root != REMOTE_TRACE {
            let t = self.tracer;
            let (n, over) = cap_tags(&tags, 0);
            let words = tag_words(&tags, n);
            if batch_fits(START_WORDS + words) {
                let parent = Some((self.id.get(), self.root));
                // Dropped, the START takes with it its END and its tags.
                let lost_with = 1 + lost_tags(&tags);
                let debug = self.flags.is_debug();
                let started =
                    t.start_tagged(name, parent, false, debug, &tags, n, words, lost_with);
                let mut child = match started {
                    Ok((pos, left_out, cut)) => {
                        let child = Span::recorded(t, self.trace, pos, self.root, self.flags);
                        child.started_with_tags(n, over, cut, left_out);
                        child
                    }
                    Err(_) => Span::lost(t, self.trace, self.flags),
                };
                if B > 0 {
                    child.baggage = self.baggage.clone();
                }
                return child;
            }
        }
        // The handle is built here from what the fallback returns (12 bytes, not the 40 of a
        // handle: see `child_span`).
        let (started, n, losses) = self.child_then_tags_cold(name, tags);
        let child = self.child_span_of(started);
        child.tags.set(n);
        child.losses.set(losses);
        child
    }

    /// [`child_then_tags`](Self::child_then_tags) reached with the tags by value: the tags are
    /// put in memory (for the `dyn` walk) on this path only, not on the common one.
    #[cold]
    #[inline(never)]
    fn child_then_tags_cold<'v>(
        &self,
        name: &'static str,
        tags: impl Tags<'v>,
    ) -> ((u32, Started), u8, Losses) {
        self.child_then_tags(name, &tags)
    }

    /// [`child_with_tags`](Self::child_with_tags) when the parent is not a recorded span of a
    /// local trace, or the batch is too large for one reservation: [`child`](Self::child), then
    /// [`set_tags`](Self::set_tags). Returns how the start went, and the child's tag count and
    /// losses, for the caller to build the same handle (this one is forgotten, not finished).
    #[inline(never)]
    fn child_then_tags<'v>(
        &self,
        name: &'static str,
        tags: &dyn DynTags<'v>,
    ) -> ((u32, Started), u8, Losses) {
        let child = self.child(name);
        child.set_tags(tags);
        let started = match child.state.get() {
            State::Lost => Started::Lost,
            _ if child.root == REMOTE_TRACE => Started::Remote,
            _ => Started::Local,
        };
        // A child of a sampled span is sampled: `Recorded` (or `Lost`, above).
        debug_assert!(child.state.get() == State::Recorded || started == Started::Lost);
        let out = (
            (child.id.get(), started),
            child.tags.get(),
            child.losses.get(),
        );
        // The caller's handle finishes the span.
        core::mem::forget(child);
        out
    }

    /// Counts what a span started with tags kept (`n` tags) and lost (`over` beyond the
    /// capacity, `cut` strings truncated, `left_out` by [`write_tags`]).
    ///
    /// The losses are counted out of line, given the span's fields by value, so that the new
    /// span's handle stays in the caller's registers (see [`tag_sampler`](Self::tag_sampler)).
    #[inline(always)]
    fn started_with_tags(&self, n: usize, over: u8, cut: u8, left_out: usize) {
        self.tags.set(n as u8);
        if over > 0 || cut > 0 || left_out > 0 {
            let losses = self.losses.get();
            let id = self.id.get();
            self.losses.set(batch_losses(
                self.tracer.ring,
                id,
                losses,
                over,
                cut,
                left_out,
            ));
        }
    }

    /// Tags of a batch lost because the user's `Tags` and conversions gave different answers
    /// when sized and when written ([`write_tags`] left them out, or the sizing walk gave none):
    /// counted as dropped records, like tags that found the ring full.
    #[cold]
    fn note_tags_left_out(&self, n: usize) {
        let losses = with_tags_left_out(self.tracer.ring, self.id.get(), self.losses.get(), n);
        self.losses.set(losses);
    }

    #[cold]
    fn note_tag_losses(&self, over: u8, cut: u8) {
        self.losses
            .set(with_tag_losses(self.id.get(), self.losses.get(), over, cut));
    }

    /// Records the sampler's `sampler.type` and `sampler.param` on a sampled root, within the
    /// tag capacity like any tag.
    ///
    /// The writing is out of line and given the span's fields by value, so the handle never has
    /// to be in memory for it: a root's call site keeps it in registers, whether or not a
    /// sampler is set (measured on the Cortex-M0: a root recorded in an interrupt handler took
    /// 148 bytes of stack with `&self` passed here).
    #[inline(always)]
    fn tag_sampler(&self, write: SamplerTags) {
        let (tags, losses) = tag_sampler_cold(
            self.tracer.ring,
            &self.tracer.sampler,
            write,
            self.id.get(),
            self.tags.get(),
            self.losses.get(),
        );
        self.tags.set(tags);
        self.losses.set(losses);
    }

    /// The start of a child of a recorded span of a local trace (the common case): the START
    /// record is written out of line, and the handle is built by [`child_span`](Self::child_span)
    /// in the caller's frame, where the optimiser keeps only what is used.
    #[inline(always)]
    fn local_child_start(&self, name: &'static str) -> (u32, Started) {
        let started = self.tracer.start_child(
            name,
            self.id.get(),
            self.root,
            start_bits(false, self.flags.is_debug()),
        );
        match started {
            Ok(pos) => (pos, Started::Local),
            Err(_) => (0, Started::Lost),
        }
    }

    /// The handle of a child (or follower) of this span whose start went as `started` says
    /// ([`local_child_start`](Self::local_child_start), [`start_related`](Self::start_related)).
    /// Built here, from this span's fields, so that neither start returns a whole handle: a
    /// handle returned from an out-of-line function is written to the caller's stack (all 40
    /// bytes), even by a path that never runs.
    #[inline(always)]
    fn child_span(&self, started: (u32, Started)) -> Span<'a, B, C> {
        if started.1 == Started::Lost {
            warn!("microspan: ring full, a span start was dropped");
        }
        self.child_span_of(started)
    }

    /// [`child_span`](Self::child_span) without the warning of a lost start (given where the
    /// start was made).
    #[inline(always)]
    fn child_span_of(&self, (pos, started): (u32, Started)) -> Span<'a, B, C> {
        let t = self.tracer;
        let (root, state) = match started {
            Started::Local => (self.root, State::Recorded),
            Started::Remote => (REMOTE_TRACE, State::Recorded),
            Started::Lost => (0, State::Lost),
        };
        let mut child = Span::with_state(t, self.trace, pos, root, self.flags, state);
        if B > 0 {
            child.baggage = self.baggage.clone();
        }
        child
    }

    /// A child of an unsampled span: unsampled too, its id drawn when its context is asked for.
    #[inline(always)]
    fn unsampled_child(&self) -> Span<'a, B, C> {
        let mut child = Span::unsampled(self.tracer, self.trace, 0, self.root, self.flags);
        if B > 0 {
            child.baggage = self.baggage.clone();
        }
        child
    }

    /// Starts a span that FollowsFrom this one (this span does not wait for it).
    pub fn follower(&self, name: &'static str) -> Span<'a, B, C> {
        if self.state.get() == State::Unsampled {
            return self.unsampled_child();
        }
        self.child_span(self.start_related(name, true))
    }

    // Out of line on microcontrollers (one copy however many call sites, and the same code for
    // every clock, so the bench's figures compare clocks, not inlining decisions); a hint on
    // hosts, where inlining it is measurably faster.
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline)]
    fn start_related(&self, name: &'static str, follows: bool) -> (u32, Started) {
        let t = self.tracer;
        let debug = self.flags.is_debug();
        let (started, kind) = match self.state.get() {
            // Callers handle unsampled parents first (their children are unsampled, with no
            // record); were one to come here, its child would be a lost span, not a wrong one.
            State::Unsampled => {
                debug_assert!(false, "start_related of an unsampled span");
                return (0, Started::Lost);
            }
            State::Recorded | State::Finished if self.root != REMOTE_TRACE => {
                let id = self.id.get();
                let started = t.start_child(name, id, self.root, start_bits(follows, debug));
                (started, Started::Local)
            }
            // The trace id came from elsewhere: every descendant names it, so a decoder that
            // lost this span's start still puts them in the right trace.
            State::Recorded | State::Finished => {
                let parent = SpanId::local(t.id_prefix(), self.id.get());
                let started = t.start_remote(name, self.trace, parent, follows, debug, true);
                (started, Started::Remote)
            }
            // The parent's start was lost: name the trace explicitly, parent unknown (0), which
            // the decoder reports as a parent dropped on the device. (The id the lost parent's
            // context names is for other services and devices to join the trace; no record
            // names it, so here it would only be a reference to a span never seen.)
            State::Lost => {
                let started = t.start_remote(name, self.trace, SpanId(0), follows, debug, false);
                (started, Started::Remote)
            }
        };
        match started {
            Ok(pos) => (pos, kind),
            Err(_) => (0, Started::Lost),
        }
    }

    /// Counts `records` records this span could not write because it is not recording: dropped
    /// records when its start was lost (the ring was full), so that the device's drop count
    /// covers everything the span recorded, not only its START; nothing for an unsampled or a
    /// finished span. A lost span keeps no tag count, so a tag beyond [`MAX_TAGS_PER_SPAN`]
    /// counts here too (on a recorded span it is counted over capacity instead).
    #[inline(always)]
    fn not_recorded(&self, records: usize) {
        if self.state.get() == State::Lost {
            self.tracer
                .ring
                .count_drops(records.min(u32::MAX as usize) as u32);
        }
    }

    fn note(&self, f: impl FnOnce(&mut Losses)) {
        let mut l = self.losses.get();
        f(&mut l);
        self.losses.set(l);
    }

    fn note_drop(&self) {
        warn!(
            "microspan: ring full, a record of span {=u32} was dropped",
            self.id.get()
        );
        self.note(|l| l.records_dropped = l.records_dropped.saturating_add(1));
    }

    /// Sets a tag. Beyond [`MAX_TAGS_PER_SPAN`] tags, the tag is dropped and counted.
    ///
    /// The value is anything [`Value`] converts from: `bool`, integers, floats, a
    /// `&'static str`, or a `Value`. A `&'static str` is recorded by address and interned by
    /// the drain (its bytes go on the wire once, then a small id). A string made at run time
    /// (in a `heapless::String`, a buffer on the stack) must be copied: pass
    /// [`Value::text(&buf)`](Value::text). Passed as a plain `&str`, it fails to build with
    /// E0597, "argument requires that `buf` is borrowed for `'static`", pointing here. A copied
    /// string longer than [`MAX_STR_LEN`] bytes (32 by default) is cut to it at a character
    /// boundary and counted: the decoder shows the bytes kept and warns on the span that a
    /// string was truncated to the device's `MICROSPAN_MAX_STR_LEN`.
    ///
    /// ```
    /// use core::fmt::Write;
    /// use microspan::{Clock, Ring, Session, Tracer, Value};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("sensor-node"));
    ///
    /// let span = TRACER.root("read");
    /// span.set_tag("span.kind", "client"); // static: interned
    /// span.set_tag("i2c.address", 0x48u32);
    /// let mut buf: heapless::String<32> = heapless::String::new();
    /// write!(buf, "sensor-{}", 7).unwrap();
    /// span.set_tag("sensor.name", Value::text(&buf)); // copied: `buf` may go now
    /// ```
    ///
    /// A tag takes 4 to 12 words of the ring on a 32-bit target with the default capacities
    /// (see [Sizing the ring](crate#sizing-the-ring)).
    #[inline]
    pub fn set_tag<'v>(&self, key: &'static str, value: impl Into<Value<'v>>) {
        if !self.is_sampled_live() {
            return;
        }
        self.record_tag(key, value);
    }

    /// [`set_tag`](Self::set_tag) on a recording span. Out of line, one copy per value type: in
    /// each, the value's variant is known, so the record is written by a few stores, and a call
    /// site takes only the state check and the call.
    #[inline(never)]
    fn record_tag<'v>(&self, key: &'static str, value: impl Into<Value<'v>>) {
        let n = self.tags.get();
        // A lost span's count is `LOST_TAGS`: one compare refuses both.
        if n as usize >= MAX_TAGS_PER_SPAN {
            if self.state.get() == State::Lost {
                return self.not_recorded(1);
            }
            warn!(
                "microspan: span {=u32} has more than MAX_TAGS_PER_SPAN tags",
                self.id.get()
            );
            self.note(|l| l.tags_over_capacity = l.tags_over_capacity.saturating_add(1));
            return;
        }
        self.tags.set(n + 1);
        self.write_tag(key, &value.into());
    }

    /// Writes one TAG record (the tag was counted against the capacity by the caller).
    #[inline(always)]
    fn write_tag(&self, key: &'static str, value: &Value<'_>) {
        let len = 2 + field_size(value);
        let Some(res) = self.tracer.ring.reserve_record(len) else {
            self.note_drop();
            return;
        };
        let mut c = Cursor::new(res);
        c.word(self.id.get());
        let cut = write_field(&mut c, key, value);
        c.res.commit(Header::new(record::TAG, len, 0));
        if cut {
            self.note(|l| l.strings_truncated = l.strings_truncated.saturating_add(1));
        }
    }

    /// Sets several tags in one ring operation: the same records as one
    /// [`set_tag`](Self::set_tag) per tag, in one reservation published by one store. Tags
    /// beyond [`MAX_TAGS_PER_SPAN`] are dropped and counted; when the ring has no room for the
    /// whole batch, every tag of it is counted as dropped.
    ///
    /// The tags are any [`Tags`]. A tuple of `(key, value)` pairs, the cheapest, holds **at most
    /// eight**: a ninth pair fails to build (E0277, "the trait bound … `Tags<'_>` is not
    /// satisfied"). For more, pass an array or slice of `(key, Value)`, as below, of any length
    /// (the span keeps up to [`MAX_TAGS_PER_SPAN`]), or call `set_tags` twice. The same limit
    /// holds for the fields of [`log`](Self::log), for [`child_with_tags`](Self::child_with_tags)
    /// and for [`Tracer::root_with_tags`].
    ///
    /// ```
    /// use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("gateway"));
    ///
    /// let request = TRACER.root("GET /config");
    /// // … handle it …
    /// request.set_tags(&[("http.status_code", 200u32.into()), ("error", false.into())]);
    /// ```
    #[inline(always)]
    pub fn set_tags<'v>(&self, tags: impl Tags<'v>) {
        if !self.is_recording() {
            return self.not_recorded(tags.count());
        }
        let had = self.tags.get();
        let (n, over) = cap_tags(&tags, had);
        let words = tag_words(&tags, n);
        if !batch_fits(words) {
            return self.set_tags_one_by_one(&tags);
        }
        self.tags.set(had + n as u8);
        if over > 0 {
            self.note_tag_losses(over, 0);
        }
        if n == 0 {
            return;
        }
        if words == 0 {
            // The tags counted, but their sizing walk gave none (a `Tags` whose `each` disagrees
            // with its `count`): nothing to reserve, and the tags are lost.
            return self.note_tags_left_out(n);
        }
        let Some(res) = self.tracer.ring.reserve_record(words) else {
            return self.note_batch_drop(n);
        };
        let mut c = Cursor::at_header(res);
        let (first, left_out, cut) = write_tags(&mut c, self.id.get(), &tags, n, words, words);
        c.res.commit_first(first);
        if cut > 0 {
            self.note_tag_losses(0, cut);
        }
        if left_out > 0 {
            self.note_tags_left_out(left_out);
        }
    }

    /// [`set_tags`](Self::set_tags) one record per tag: for a batch too large for one
    /// reservation, or a span that could not start with its tags in one. One copy whatever the
    /// tags' type (they come type-erased), since it is rarely taken.
    #[inline(never)]
    fn set_tags_one_by_one<'v>(&self, tags: &dyn DynTags<'v>) {
        if !self.is_recording() {
            return self.not_recorded(tags.count());
        }
        let had = self.tags.get();
        let (n, over) = cap_tags(&tags, had);
        self.tags.set(had + n as u8);
        if over > 0 {
            self.note_tag_losses(over, 0);
        }
        let mut i = 0;
        tags.each_dyn(&mut |key, value| {
            if i < n {
                self.write_tag(key, &value);
            }
            i += 1;
        });
    }

    /// A batch of `n` records did not fit: the ring counted one, the others are counted here, and
    /// every one on the span.
    #[cold]
    fn note_batch_drop(&self, n: usize) {
        let losses = with_batch_drop(self.tracer.ring, self.id.get(), self.losses.get(), n);
        self.losses.set(losses);
    }

    /// Records a timestamped log with typed fields (OpenTracing `log_fields`), given as any
    /// [`Tags`]: a tuple of up to eight `(key, value)` pairs (a ninth does not build: see
    /// [`set_tags`](Self::set_tags)) (any value that converts into a
    /// [`Value`]), in which each field's type is known and is written with a few stores (the
    /// conversions run twice: to size the record, then to write it); an array or slice (with
    /// feature `std`, a `Vec`) of `(key, Value)`, walked at run time; or `()` for none. A
    /// container that only dereferences to a slice is passed as one (`v.as_slice()`). Fields
    /// beyond [`MAX_FIELDS_PER_LOG`], or beyond one record's 255 words, are dropped and counted.
    /// A string made at run time goes in as [`Value::text`], copied and cut to [`MAX_STR_LEN`]
    /// bytes, as for [`set_tag`](Self::set_tag).
    ///
    /// ```
    /// use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// static RING: Ring<256> = Ring::new();
    /// static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("gateway"));
    ///
    /// let span = TRACER.root("GET /config");
    /// span.log((("event", "retry"), ("attempt", 2u32)));
    /// span.log([("event", "error".into()), ("message", "cache timeout".into())]);
    /// ```
    #[inline]
    pub fn log<'v>(&self, fields: impl Tags<'v>) {
        if !self.is_sampled_live() {
            return;
        }
        match fields.as_values() {
            Some(values) => self.record_log_values(values),
            None => self.record_log(&fields),
        }
    }

    /// [`log`](Self::log) of an array or slice of values on a recording span: one copy for
    /// every length, each field written through a match on its variant.
    ///
    /// Shaped for its stack, which adds to the caller's array of fields (24 bytes a field on a
    /// 32-bit target): the first walk sizes the fields and counts the strings that will be cut
    /// (the values cannot change between the walks: the slice is borrowed), the clock is read
    /// only then, and the header is made before the reservation, so that fewer values stay live
    /// across it; the second walk writes every variant in line, copied strings included, so
    /// that the cursor stays in registers (an out-of-line string writer would take its
    /// address). On Cortex-M0 this frame is 56 bytes; `log3_values` takes 128 bytes of stack
    /// in all, 72 of them the caller's array (`insn-probe --stack`).
    #[inline(never)]
    fn record_log_values(&self, fields: &[(&'static str, Value<'_>)]) {
        if self.state.get() == State::Lost {
            return self.not_recorded(1);
        }
        let mut len = 3;
        let mut n = 0;
        // At most `MAX_FIELDS_PER_LOG` (at most 255) fields are kept, one cut counted for each.
        let mut cut_strings = 0u32;
        for (key, value) in fields.iter().take(MAX_FIELDS_PER_LOG) {
            let (w, cut) = field_size_cut(key, value);
            if len + w > MAX_RECORD_WORDS {
                break;
            }
            len += w;
            n += 1;
            cut_strings += cut as u32;
        }
        let header = Header::new(record::LOG, len, n as u32);
        let now = self.tracer.clock.now();
        let Some(mut c) = self.begin_log(header.len(), now) else {
            return;
        };
        let over = fields.len() - n;
        if over > 0 || cut_strings > 0 {
            self.note_log_losses(over, cut_strings as u8);
        }
        // The header's field count rather than `n`, and no slice index (whose bounds check
        // would keep `n` and `fields.len()` live through the loop).
        for (key, value) in fields.iter().take(header.payload() as usize) {
            write_field_with(&mut c, key, value, write_text_in_line);
        }
        c.res.commit(header);
    }

    /// Reserves a LOG record of `len` words and writes its span and time; `None` (counted) when
    /// the ring has no room.
    #[inline(always)]
    fn begin_log(&self, len: u32, now: u32) -> Option<Cursor<'a>> {
        let Some(res) = self.tracer.ring.reserve_record(len) else {
            self.note_drop();
            return None;
        };
        let mut c = Cursor::new(res);
        c.word(self.id.get());
        c.word(now);
        Some(c)
    }

    /// [`log`](Self::log) of a tuple (or other [`Tags`]) on a recording span: out of line, one
    /// copy per type of tuple.
    #[inline(never)]
    fn record_log<'v>(&self, fields: &impl Tags<'v>) {
        if self.state.get() == State::Lost {
            return self.not_recorded(1);
        }
        let now = self.tracer.clock.now();
        // Sized first (the fields that fit one record, at most `MAX_FIELDS_PER_LOG`, out of the
        // `given`), then written, both walks in line so that each field's value keeps its
        // variant. Losses are counted from what the walks gave, not from `count`.
        let mut words = 0;
        let mut n = 0;
        let mut given = 0usize;
        let mut full = false;
        fields.each(
            #[inline(always)]
            |_, value| {
                given += 1;
                let w = field_size(&value);
                if full || n == MAX_FIELDS_PER_LOG || 3 + words + w > MAX_RECORD_WORDS {
                    full = true;
                    return;
                }
                words += w;
                n += 1;
            },
        );
        let len = 3 + words;
        let Some(mut c) = self.begin_log(len, now) else {
            return;
        };
        // The second walk runs the user's conversions again, which may give other sizes: each
        // field is sized again and written only if it fits what is left (see `write_tags`); a
        // panic in them publishes the reservation as a pad.
        let guard = c.res.pad_on_unwind(len);
        let mut used = 0;
        let mut written = 0;
        let mut cut_strings = 0u32;
        let mut i = 0;
        fields.each(
            #[inline(always)]
            |key, value| {
                if i < n {
                    let w = field_size(&value);
                    if used + w <= words {
                        cut_strings += write_field(&mut c, key, &value) as u32;
                        used += w;
                        written += 1;
                    }
                }
                i += 1;
            },
        );
        guard.defuse();
        if used < words {
            // Only when the second walk gave smaller or fewer fields than the first: the rest of
            // the reservation becomes a pad after the record, stored before the record's header
            // publishes both.
            let pad = Header::new(crate::ring::PAD, words - used, 0);
            c.res.put(3 + used, pad.0);
        }
        c.res
            .commit_first(Header::new(record::LOG, 3 + used, written as u32));
        let over = given - written;
        if over > 0 || cut_strings > 0 {
            self.note_log_losses(over, cut_strings.min(255) as u8);
        }
    }

    /// Counts a log's fields left out (`over`, saturating at 255) and strings cut.
    #[cold]
    fn note_log_losses(&self, over: usize, cut: u8) {
        let over = over.min(255) as u8;
        self.note(|l| {
            l.fields_over_capacity = l.fields_over_capacity.saturating_add(over);
            l.strings_truncated = l.strings_truncated.saturating_add(cut);
        });
    }

    /// Sets a baggage item on this span and (from now on) its descendants.
    ///
    /// An item that [`Baggage::set`] refuses (beyond `B` items, an empty key, a key or value
    /// longer than [`MAX_BAGGAGE_KEY_LEN`] / [`MAX_BAGGAGE_VALUE_LEN`]) is dropped and counted
    /// ([`Losses::fields_over_capacity`]: the decoder shows a Jaeger warning). It is not cut as a
    /// tag would be: baggage travels on to other services, and W3C Baggage forbids propagating a
    /// partial item (see [`Baggage::set`]).
    ///
    /// The span must have room for baggage (`B > 0`): a span from [`Tracer::root`] or
    /// [`Tracer::span`] without [`with_baggage`](SpanBuilder::with_baggage) has none, and every
    /// item set on it would be dropped, so calling this on it fails to build (the error appears
    /// with `cargo build` or `cargo test`, not `cargo check`, and names this function). Start the
    /// root with room for `N` items instead, which its children inherit:
    ///
    /// ```
    /// # use microspan::{Baggage, Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// # static RING: Ring<256> = Ring::new();
    /// # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
    /// let mut root = TRACER.span("x").with_baggage(Baggage::<2>::new()).start();
    /// root.set_baggage("user", "alice");
    /// assert_eq!(root.child("y").baggage_item("user"), Some("alice"));
    /// ```
    ///
    /// ```compile_fail
    /// # use microspan::{Clock, Ring, Session, Tracer};
    /// # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
    /// # static RING: Ring<256> = Ring::new();
    /// # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
    /// let mut root = TRACER.root("x"); // `Span<'_, 0>`: no room for baggage
    /// root.set_baggage("user", "alice"); // error: "set_baggage on a span with no baggage slots …"
    /// ```
    pub fn set_baggage(&mut self, key: &str, value: &str) {
        const {
            assert!(
                B > 0,
                "microspan: set_baggage on a span with no baggage slots (B = 0, as from \
                 `tracer.root(name)`): every item would be dropped. Start the span with room \
                 for N items: `tracer.span(name).with_baggage(Baggage::<N>::new()).start()`"
            )
        };
        self.write_baggage(key, value, false);
    }

    /// Adds an item the span received rather than set ([`SpanBuilder::with_baggage`]): the same
    /// as [`set_baggage`](Self::set_baggage), but recorded as carried, so the decoder adds it to
    /// the span's baggage without logging it.
    fn carry_baggage(&mut self, key: &str, value: &str) {
        self.write_baggage(key, value, true);
    }

    /// Stores a baggage item and records it: a BAGGAGE ring record, marked carried
    /// ([`record::BAGGAGE_CARRIED`]) when `carried`. In line in both callers, so that
    /// `set_baggage` folds `carried` away and costs what it did before carried items existed.
    #[inline(always)]
    fn write_baggage(&mut self, key: &str, value: &str, carried: bool) {
        if self.state.get() == State::Finished {
            return;
        }
        if !self.baggage.set(key, value) {
            warn!(
                "microspan: a baggage item was dropped (baggage full at {=usize} items, an empty key, or a key or value over its capacity)",
                B
            );
            self.note(|l| l.fields_over_capacity = l.fields_over_capacity.saturating_add(1));
            return;
        }
        if !self.is_recording() {
            return self.not_recorded(1);
        }
        let len = 2 + byte_words(key.len()) + byte_words(value.len());
        let Some(res) = self.tracer.ring.reserve_record(len) else {
            self.note_drop();
            return;
        };
        let mut c = Cursor::new(res);
        c.word(self.id.get());
        c.bytes(key.as_bytes());
        c.bytes(value.as_bytes());
        c.res.commit(Header::new(
            record::BAGGAGE,
            len,
            key.len() as u32
                | if carried { record::BAGGAGE_CARRIED } else { 0 }
                | (value.len() as u32) << record::BAGGAGE_VALUE_SHIFT,
        ));
    }

    /// The value of a baggage item.
    pub fn baggage_item(&self, key: &str) -> Option<&str> {
        self.baggage.get(key)
    }

    /// The span's baggage.
    pub fn baggage(&self) -> &Baggage<B> {
        &self.baggage
    }

    /// Adds a reference to another span after the start.
    pub fn add_reference(&self, kind: RefKind, ctx: &SpanContext) {
        if !ctx.is_valid() {
            return;
        }
        if !self.is_recording() {
            return self.not_recorded(1);
        }
        self.write_ref(kind, ctx);
    }

    fn write_ref(&self, kind: RefKind, ctx: &SpanContext) {
        let len = 8;
        let Some(res) = self.tracer.ring.reserve_record(len) else {
            self.note_drop();
            return;
        };
        let mut c = Cursor::new(res);
        c.word(self.id.get());
        c.u128(ctx.trace_id.0);
        c.u64(ctx.span_id.0);
        c.res.commit(Header::new(
            record::REF,
            len,
            (kind == RefKind::FollowsFrom) as u32,
        ));
    }

    /// What this span has lost so far to capacities and a full ring.
    pub fn losses(&self) -> Losses {
        self.losses.get()
    }

    /// Finishes the span now (dropping it does the same).
    #[inline]
    pub fn finish(self) {}

    /// Marks the span finished; records its end if it is recording. Inline up to the check, so
    /// dropping an unsampled span costs a load and a compare; the END record is written out of
    /// line from the two values it needs, so the handle itself never has to be in memory.
    #[inline(always)]
    fn end(&self) {
        let recording = self.state.get() == State::Recorded;
        self.state.set(State::Finished);
        // A span whose start was dropped had its END counted with it (`reserve_start`).
        if recording {
            self.tracer.record_end(self.id.get(), self.losses.get());
        }
    }
}

impl<C: ?Sized + Clock> Tracer<'_, C> {
    /// Writes the END record of the span at ring position `id`. Its common path (no losses, the
    /// ring's quick reservation) calls nothing; the rest goes to
    /// [`record_end_slow`](Self::record_end_slow) (a tail call).
    #[inline(never)]
    fn record_end(&self, id: u32, losses: Losses) {
        let now = self.clock.now();
        if losses.is_empty() {
            // The common END: a constant header, three words.
            if let Some(res) = self.ring.reserve_quick(3) {
                return publish_end(res, id, now);
            }
        }
        self.record_end_slow(id, losses)
    }

    /// [`record_end`](Self::record_end) when the span lost something (its losses word follows
    /// the ticks) or the ring's quick reservation did not apply: the whole END, clock included
    /// (the arguments of `record_end`, so that its call is a tail call).
    #[cold]
    #[inline(never)]
    fn record_end_slow(&self, id: u32, losses: Losses) {
        let now = self.clock.now();
        let lossy = !losses.is_empty() as u32;
        let Ok(res) = self.ring.reserve_slow(3 + lossy) else {
            return;
        };
        let mut c = Cursor::new(res);
        c.word(id);
        c.word(now);
        if lossy != 0 {
            c.word(losses.pack());
        }
        c.res.commit(Header::new(record::END, 3 + lossy, lossy));
    }
}

/// Writes the common END record (no losses) of the span at ring position `id` into `res` and
/// publishes it.
#[inline(always)]
fn publish_end(res: Reservation<'_>, id: u32, now: u32) {
    let mut c = Cursor::new(res);
    c.word(id);
    c.word(now);
    c.res.commit(Header::new(record::END, 3, 0));
}

impl<const B: usize, C: ?Sized + Clock> Drop for Span<'_, B, C> {
    #[inline(always)]
    fn drop(&mut self) {
        self.end();
    }
}

/// Words of a START record of a local span: header, name, parent, root, ticks.
const START_WORDS: u32 = 4 + P;

/// [`start_child`](Tracer::start_child)'s bit for a debug span (the START payload's bit 0).
const START_DEBUG: u32 = 1;
/// The START payload's bit for a root span.
const START_ROOT: u32 = 1 << 1;
/// [`start_child`](Tracer::start_child)'s bit for a FollowsFrom child (the START payload's
/// bit 2).
const START_FOLLOWS: u32 = 1 << 2;

/// The START payload bits of a span that follows (or is a child of) its parent, debug or not.
#[inline(always)]
const fn start_bits(follows: bool, debug: bool) -> u32 {
    (debug as u32 * START_DEBUG) | (follows as u32 * START_FOLLOWS)
}

/// The parent, root and payload bits of a START record: `(parent, root)` of a child, or a root's
/// (zeros and [`START_ROOT`]) for `None`.
#[inline(always)]
fn start_parent(parent: Option<(u32, u32)>, bits: u32) -> (u32, u32, u32) {
    match parent {
        Some((p, r)) => (p, r, bits),
        None => (0, 0, bits | START_ROOT),
    }
}

/// Writes the body of a START record at the cursor; returns its header. `bits`: the payload's
/// flag bits ([`start_bits`], and [`START_ROOT`] for a root, whose `parent` and `root` are 0).
#[inline(always)]
fn write_start(
    c: &mut Cursor<'_>,
    name: &'static str,
    parent: u32,
    root: u32,
    bits: u32,
    now: u32,
) -> Header {
    let (name, _) = truncate(name, record::MAX_NAME_LEN);
    c.ptr(name);
    c.word(parent);
    c.word(root);
    c.word(now);
    Header::new(record::START, START_WORDS, bits | (name.len() as u32) << 3)
}

/// Words of a START_REMOTE record: header, name, trace id, parent span id, ticks.
const START_REMOTE_WORDS: u32 = 8 + P;

/// The START_REMOTE payload's flag bits: debug (bit 0), a parent of this tracer (bit 1),
/// FollowsFrom instead of ChildOf (bit 2).
#[inline(always)]
const fn remote_bits(follows: bool, debug: bool, local_parent: bool) -> u32 {
    debug as u32 | (local_parent as u32) << 1 | (follows as u32) << 2
}

/// Writes the body of a START_REMOTE record at the cursor; returns its header. `bits`: from
/// [`remote_bits`].
#[inline(always)]
fn write_start_remote(
    c: &mut Cursor<'_>,
    name: &'static str,
    trace: TraceId,
    parent: SpanId,
    bits: u32,
    now: u32,
) -> Header {
    let (name, _) = truncate(name, record::MAX_NAME_LEN);
    c.ptr(name);
    c.u128(trace.0);
    c.u64(parent.0);
    c.word(now);
    Header::new(
        record::START_REMOTE,
        START_REMOTE_WORDS,
        bits | (name.len() as u32) << 3,
    )
}

/// Writes a START record (no tags) into `res` and publishes it; returns its ring position.
#[inline(always)]
fn publish_start(
    res: Reservation<'_>,
    name: &'static str,
    parent: u32,
    root: u32,
    bits: u32,
    now: u32,
) -> u32 {
    let pos = res.pos;
    let mut c = Cursor::new(res);
    let header = write_start(&mut c, name, parent, root, bits, now);
    c.res.commit(header);
    pos
}

/// Writes a sampler's first `n` (1 or 2) tags on the span at ring position `id` in one
/// reservation; `false` when the ring refused them (one drop counted).
type SamplerTags = fn(&DynRing, u32, &Sampler, usize) -> bool;

/// The tags a sampler with tags puts on every root it samples (`sampler.type`, `sampler.param`).
const SAMPLER_TAGS: u32 = 2;

/// [`Span::tag_sampler`]'s work: writes the sampler's tags for span `id`, which has `tags` tags
/// and `losses`; returns both updated.
#[cold]
#[inline(never)]
fn tag_sampler_cold(
    ring: &DynRing,
    sampler: &Sampler,
    write: SamplerTags,
    id: u32,
    tags: u8,
    mut losses: Losses,
) -> (u8, Losses) {
    let all = SAMPLER_TAGS as usize;
    let n = all.min(MAX_TAGS_PER_SPAN.saturating_sub(tags as usize));
    if n < all {
        losses = with_tag_losses(id, losses, (all - n) as u8, 0);
    }
    if n > 0 && !write(ring, id, sampler, n) {
        losses = with_batch_drop(ring, id, losses, n);
    }
    (tags + n as u8, losses)
}

/// [`Span::started_with_tags`]'s losses: `losses` of span `id` with `over` tags beyond
/// [`MAX_TAGS_PER_SPAN`], `cut` strings cut and `left_out` tags left out of its batch.
#[cold]
#[inline(never)]
fn batch_losses(
    ring: &DynRing,
    id: u32,
    mut losses: Losses,
    over: u8,
    cut: u8,
    left_out: usize,
) -> Losses {
    if over > 0 || cut > 0 {
        losses = with_tag_losses(id, losses, over, cut);
    }
    if left_out > 0 {
        losses = with_tags_left_out(ring, id, losses, left_out);
    }
    losses
}

/// `losses` of span `id` once `n` tags of its batch were left out (see
/// [`Span::note_tags_left_out`]).
fn with_tags_left_out(ring: &DynRing, id: u32, mut losses: Losses, n: usize) -> Losses {
    warn!(
        "microspan: {=usize} tags of span {=u32} changed between sizing and writing and were dropped",
        n,
        id
    );
    ring.count_drops(n as u32);
    losses.records_dropped = losses.records_dropped.saturating_add(n.min(255) as u8);
    losses
}

/// `losses` of span `id` with `over` more tags beyond [`MAX_TAGS_PER_SPAN`] and `cut` more
/// strings cut.
fn with_tag_losses(id: u32, mut losses: Losses, over: u8, cut: u8) -> Losses {
    if over > 0 {
        warn!(
            "microspan: span {=u32} has more than MAX_TAGS_PER_SPAN tags",
            id
        );
    }
    losses.tags_over_capacity = losses.tags_over_capacity.saturating_add(over);
    losses.strings_truncated = losses.strings_truncated.saturating_add(cut);
    losses
}

/// `losses` of span `id` once a batch of `n` of its records was refused by the ring (which
/// counted one of them): the others are counted too.
fn with_batch_drop(ring: &DynRing, id: u32, mut losses: Losses, n: usize) -> Losses {
    ring.count_drops(n as u32 - 1);
    warn!(
        "microspan: ring full, {=usize} tags of span {=u32} were dropped",
        n, id
    );
    losses.records_dropped = losses.records_dropped.saturating_add(n.min(255) as u8);
    losses
}

/// What a sampler configured with [`with_sampler`](Tracer::with_sampler) adds to the record
/// path. One `const` per kind of sampler, so a firmware links the code of the kind it builds.
struct SamplerHooks {
    /// Decides for one root: the sampler, the clock's time and rate (only the rate limiter
    /// reads them).
    decide: fn(&Sampler, u32, u32) -> bool,
    tags: SamplerTags,
}

/// The const sampler's table: only its tags are used (`sample_root` decides a const sampler
/// inline, without the hooks).
const CONST_HOOKS: SamplerHooks = SamplerHooks {
    decide: |s, _, _| !matches!(s, Sampler::Const(false)),
    tags: write_sampler_tags,
};

const PROBABILISTIC_HOOKS: SamplerHooks = SamplerHooks {
    decide: |s, _, _| match s {
        Sampler::Probabilistic(p) => p.sample(),
        _ => true,
    },
    tags: write_sampler_tags,
};

const RATE_LIMITING_HOOKS: SamplerHooks = SamplerHooks {
    decide: |s, now, ticks_per_second| match s {
        Sampler::RateLimiting(r) => r.sample(now, ticks_per_second),
        _ => true,
    },
    tags: write_sampler_tags,
};

/// The [`SamplerTags`] of every tracer configured with
/// [`with_sampler`](Tracer::with_sampler): not generic, so one copy, linked only when a sampler
/// is configured.
fn write_sampler_tags(ring: &DynRing, id: u32, sampler: &Sampler, n: usize) -> bool {
    let tags = [
        ("sampler.type", Value::Str(sampler.kind())),
        ("sampler.param", sampler.param()),
    ];
    let words = tag_words(&tags, n);
    let Some(res) = ring.reserve_record(words) else {
        return false;
    };
    let mut c = Cursor::at_header(res);
    // The sampler's tags are this crate's own: none is left out.
    let (first, ..) = write_tags(&mut c, id, &tags, n, words, words);
    c.res.commit_first(first);
    true
}

/// Words of the largest TAG record: header, span id, key header and pointer, and the largest
/// value (a copied string of `MAX_STR_LEN` bytes, a static string's pointer, or 64 bits).
const MAX_TAG_WORDS: u32 = {
    let text = byte_words(MAX_STR_LEN);
    let value = if text > P { text } else { P };
    3 + P + if value > 2 { value } else { 2 }
};

// One TAG record, its longest string included, fits a record's length (`build.rs` caps
// `MAX_STR_LEN` at 1000 bytes for it): `set_tag` writes any tag as one record, unchecked.
const _: () = assert!(
    MAX_TAG_WORDS <= MAX_RECORD_WORDS,
    "MICROSPAN_MAX_STR_LEN too large for one TAG record"
);

/// Whether every batch (a START and up to [`MAX_TAGS_PER_SPAN`] tags) fits one record's
/// length: true with the default capacities, and then the check below folds away.
const EVERY_BATCH_FITS: bool =
    START_WORDS + MAX_TAGS_PER_SPAN as u32 * MAX_TAG_WORDS <= MAX_RECORD_WORDS;

/// Whether a batch of `words` words goes in one reservation. Otherwise (only possible with
/// larger capacities than the defaults) its tags are written one record each.
#[inline(always)]
fn batch_fits(words: u32) -> bool {
    EVERY_BATCH_FITS || words <= MAX_RECORD_WORDS
}

/// How many of `tags` a span that has `had` tags keeps (up to [`MAX_TAGS_PER_SPAN`]), and how
/// many more there were.
#[inline(always)]
fn cap_tags<'v>(tags: &impl Tags<'v>, had: u8) -> (usize, u8) {
    let all = tags.count();
    let n = all.min(MAX_TAGS_PER_SPAN.saturating_sub(had as usize));
    (n, (all - n).min(255) as u8)
}

/// The tags of a span whose start was dropped, as dropped records: every one given, those
/// beyond [`MAX_TAGS_PER_SPAN`] included (a lost span keeps no count of its tags, so, as its
/// `set_tag` calls do, each counts as a record it skipped).
fn lost_tags<'v>(tags: &impl Tags<'v>) -> u32 {
    tags.count().min(u32::MAX as usize) as u32
}

/// Words of one TAG record for each of the first `n` tags (header, span id, field).
#[inline(always)]
fn tag_words<'v>(tags: &impl Tags<'v>, n: usize) -> u32 {
    let mut words = 0u32;
    let mut i = 0;
    tags.each(
        #[inline(always)]
        |_, value| {
            if i < n {
                let w = field_size(&value);
                // At most 255 tags of at most 2 + 1 + P + 1024 words each: no overflow.
                words += 2 + w;
            }
            i += 1;
        },
    );
    words
}

/// Writes one TAG record of span `id` for each of the first `n` tags, each header in the slot
/// the cursor gives it, in the `words` words [`tag_words`] counted for them. Every header is
/// stored here except one in slot 0 (the reservation's first record, which the caller publishes
/// with `commit_first`): that one is returned. Also returns how many tags were left out (always
/// 0 for well-behaved tags) and how many of the strings written were cut (counted here, from
/// the values written, rather than from the sizing walk's).
///
/// The tags are walked a second time here, and the `Tags` implementation and the conversions to
/// [`Value`] are the user's code: a second walk may give other values than the first (a
/// conversion that reads a counter). So each tag is sized again, and one that would not fit what
/// is left of the `words` is left out (counted by the caller); words left over become a
/// [`PAD`](crate::ring::PAD) record. Every record of the reservation then stays within it and
/// has a valid header. The room is counted from the sizes, not from the cursor, so that for tags
/// whose types are known at compile time (a tuple of integers) it is a constant and these tests
/// fold away. A panic in that code publishes the whole reservation as a pad (see
/// [`Reservation::pad_on_unwind`]); `reserved` is its length. The reservation is not empty:
/// `words > 0`, or the START precedes the tags.
#[inline(always)]
fn write_tags<'v>(
    c: &mut Cursor<'_>,
    id: u32,
    tags: &impl Tags<'v>,
    n: usize,
    words: u32,
    reserved: u32,
) -> (Header, usize, u8) {
    let mut first = Header(0);
    let mut i = 0;
    let mut used = 0u32;
    let mut left_out = 0;
    let mut cut = 0u8;
    let guard = c.res.pad_on_unwind(reserved);
    // In line, so that each tag's value keeps the variant its type gives it and `write_field`
    // folds to its stores.
    tags.each(
        #[inline(always)]
        |key, value| {
            if i < n {
                // `write_field` writes exactly the words `field_size` counts.
                let w = field_size(&value);
                if used + 2 + w <= words {
                    let slot = c.header_slot();
                    c.word(id);
                    cut = cut.saturating_add(write_field(c, key, &value) as u8);
                    let header = Header::new(record::TAG, 2 + w, 0);
                    if used == 0 {
                        first = header;
                    }
                    if slot != 0 {
                        c.res.put(slot, header.0);
                    }
                    used += 2 + w;
                } else {
                    left_out += 1;
                }
            }
            i += 1;
        },
    );
    guard.defuse();
    if used < words {
        // Only when the second walk gave smaller or fewer tags than the first.
        let pad = Header::new(crate::ring::PAD, words - used, 0);
        if c.at == 0 {
            first = pad;
        } else {
            c.res.put(c.at, pad.0);
        }
    }
    (first, left_out, cut)
}

/// Words of a field (header, key pointer, value). Whether a string was cut is known once the
/// field is written ([`write_field`]'s answer).
#[inline]
fn field_size(value: &Value<'_>) -> u32 {
    let w = match value {
        Value::Bool(_) => 0,
        Value::I64(_) | Value::U64(_) | Value::F64(_) => 2,
        Value::Str(_) => P,
        Value::Text(s) => byte_words(truncate(s, MAX_STR_LEN).0.len()),
    };
    1 + P + w
}

/// In line wherever it is used, so that for a value whose type is known at the call site (most
/// tags and log fields) the match folds to that variant's few stores; the one variant with a
/// loop (a copied string) is written out of line ([`write_text`]), except in
/// [`Span::record_log_values`] (see [`write_field_with`]).
#[inline(always)]
fn write_field(c: &mut Cursor<'_>, key: &'static str, value: &Value<'_>) -> bool {
    write_field_with(c, key, value, write_text)
}

/// [`field_size`], and whether writing the field cuts its key or its value: [`write_field`]'s
/// answer, known before the field is written.
#[inline(always)]
fn field_size_cut(key: &'static str, value: &Value<'_>) -> (u32, bool) {
    let (w, cut) = match value {
        Value::Bool(_) => (0, false),
        Value::I64(_) | Value::U64(_) | Value::F64(_) => (2, false),
        Value::Str(s) => (P, s.len() > record::MAX_STATIC_VALUE_LEN),
        Value::Text(s) => {
            let (s, cut) = truncate(s, MAX_STR_LEN);
            (byte_words(s.len()), cut)
        }
    };
    (1 + P + w, cut || key.len() > record::MAX_KEY_LEN)
}

/// [`write_field`] with the copied string written by `text`: [`write_text`] (out of line) or
/// [`write_text_in_line`].
#[inline(always)]
fn write_field_with(
    c: &mut Cursor<'_>,
    key: &'static str,
    value: &Value<'_>,
    text: impl FnOnce(&mut Cursor<'_>, u32, &'static str, &str) -> bool,
) -> bool {
    let (key, key_cut) = truncate(key, record::MAX_KEY_LEN);
    let k = (key.len() as u32) << 4;
    let value_cut = match *value {
        Value::Bool(b) => {
            c.word(record::V_BOOL | k | (b as u32) << 16);
            c.ptr(key);
            false
        }
        // One arm for the three, whose value code follows the variant: no constant for it
        // stays live in a register (or a stack slot, on Cortex-M0) through a caller's loop.
        Value::I64(_) | Value::U64(_) | Value::F64(_) => {
            let (code, v) = match *value {
                Value::I64(v) => (record::V_I64, v as u64),
                Value::U64(v) => (record::V_U64, v),
                Value::F64(v) => (record::V_F64, v.to_bits()),
                _ => unreachable!(),
            };
            c.word(code | k);
            c.ptr(key);
            c.u64(v);
            false
        }
        Value::Str(s) => {
            let (s, cut) = truncate(s, record::MAX_STATIC_VALUE_LEN);
            c.word(record::V_STR | k | (s.len() as u32) << 16);
            c.ptr(key);
            c.ptr(s);
            cut
        }
        Value::Text(s) => text(c, k, key, s),
    };
    key_cut || value_cut
}

/// [`write_field`]'s copied string; returns whether it was cut.
#[inline(never)]
fn write_text(c: &mut Cursor<'_>, k: u32, key: &'static str, s: &str) -> bool {
    write_text_in_line(c, k, key, s)
}

/// [`write_text`] in line: for [`Span::record_log_values`], whose cursor then stays in
/// registers.
#[inline(always)]
fn write_text_in_line(c: &mut Cursor<'_>, k: u32, key: &'static str, s: &str) -> bool {
    let (s, cut) = truncate(s, MAX_STR_LEN);
    c.word(record::V_TEXT | k | (s.len() as u32) << 16);
    c.ptr(key);
    c.bytes_in_line(s.as_bytes());
    cut
}
