//! Identity of a span: trace id, span id, sampling flags.
//!
//! Ids are derived, not drawn at random on the record path: a span's 64-bit id is the session's
//! 32-bit boot id mixed with its device id (high half, [`SpanId::boot_prefix`]) and the span's
//! ring position (low half); a trace started on this
//! device has the session's 64-bit device id as its high half and its root span's id as its low
//! half. The decoder derives the same ids from the session record, so nothing but small deltas
//! travels on the wire, and a context injected into a message (to another device or a backend)
//! names exactly the span Jaeger will show.

/// A 128-bit trace id (never 0 for a recorded trace).
///
/// Displayed as 32 lower-case hex digits, the form Jaeger shows and W3C `traceparent` carries;
/// `Debug` (and defmt) show the same digits as `TraceId(…)`, so a context printed on the device
/// can be looked up in Jaeger as it is:
///
/// ```
/// # use microspan::TraceId;
/// let id = TraceId::from_halves(0x6d7370616e000003, 0x2a01);
/// assert_eq!(id.to_string(), "6d7370616e0000030000000000002a01");
/// assert_eq!(format!("{id:?}"), "TraceId(6d7370616e0000030000000000002a01)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub u128);

/// A 64-bit span id (never 0 for a recorded span).
///
/// Displayed as 16 lower-case hex digits, as Jaeger shows it; `Debug` (and defmt) as
/// `SpanId(…)` around the same digits:
///
/// ```
/// # use microspan::SpanId;
/// assert_eq!(SpanId::local(0x2a, 1).to_string(), "0000002a00000001");
/// assert_eq!(format!("{:?}", SpanId::local(0x2a, 1)), "SpanId(0000002a00000001)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub u64);

impl TraceId {
    /// The high 64 bits (Jaeger's `traceIdHigh`).
    pub const fn high(self) -> u64 {
        (self.0 >> 64) as u64
    }
    /// The low 64 bits (Jaeger's `traceIdLow`).
    pub const fn low(self) -> u64 {
        self.0 as u64
    }
    /// Builds an id from its halves.
    pub const fn from_halves(high: u64, low: u64) -> Self {
        Self(((high as u128) << 64) | low as u128)
    }
}

impl core::fmt::Display for TraceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl core::fmt::Display for SpanId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl core::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl core::fmt::Debug for SpanId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SpanId({self})")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for TraceId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "TraceId({=u64:016x}{=u64:016x})",
            self.high(),
            self.low()
        );
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SpanId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "SpanId({=u64:016x})", self.0);
    }
}

impl SpanId {
    /// The span id of the span at ring position `local` in the session whose ids have the high
    /// half `prefix` ([`SpanId::boot_prefix`]).
    pub const fn local(prefix: u32, local: u32) -> Self {
        Self(((prefix as u64) << 32) | local as u64)
    }

    /// The high half of the span ids of one boot of one device: the boot id mixed with the
    /// device id. A span continuing another service's trace has that service's trace id, so its
    /// span id alone must tell the devices apart: two devices with the same boot id (the same
    /// reset count, or both left at 0) that continue one backend trace would otherwise give
    /// their first spans the same id. For one device it is the boot id XOR a constant, so a
    /// boot's ids still differ from every other boot's; across devices, the same only when the
    /// boot ids differ exactly as the device ids' mix does.
    ///
    /// ```
    /// # use microspan::SpanId;
    /// assert_eq!(SpanId::boot_prefix(0, 7), 7);
    /// assert_ne!(SpanId::boot_prefix(0x1111, 7), SpanId::boot_prefix(0x2222, 7));
    /// ```
    pub const fn boot_prefix(device_id: u64, boot_id: u32) -> u32 {
        // Folded to 32 bits, then a multiplication by an odd constant (a bijection): one
        // multiply, also on a Cortex-M0, and small device ids (1, 2, 3) land far apart.
        let folded = device_id as u32 ^ (device_id >> 32) as u32;
        boot_id ^ folded.wrapping_mul(0x9E37_79B9)
    }
}

/// Sampling flags, as in Jaeger's `flags` and W3C `trace-flags` (bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(pub u8);

impl Flags {
    /// The trace is sampled: its spans are recorded.
    pub const SAMPLED: Flags = Flags(1);
    /// Debug: sampled regardless of the sampler (Jaeger's debug flag).
    pub const DEBUG: Flags = Flags(2);
    /// Firehose: Jaeger's flag for spans its backend stores without indexing them. microspan
    /// neither sets nor reads it, but passes it on: a context extracted with it (Jaeger or binary
    /// carrier) keeps it in the spans that continue it and in what they inject.
    pub const FIREHOSE: Flags = Flags(8);
    /// W3C Trace Context Level 2's `random` flag (bit 1 of a `traceparent`'s trace-flags: the
    /// trace id's right 7 bytes are random), kept from an extracted `traceparent` so that the
    /// spans continuing the trace pass it on in theirs, as the specification asks of a
    /// participant that keeps the trace id. microspan never sets it on a trace of its own (its
    /// ids are derived, not random). Not a bit of Jaeger's flags (there, bit 1 is debug): the
    /// Jaeger and binary carriers neither read nor write it.
    pub const RANDOM: Flags = Flags(0x10);
    /// The bits the Jaeger and binary carriers keep: sampled, debug, firehose.
    pub(crate) const CARRIED: u8 = 0x0B;

    /// `true` when the sampled bit is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & 1 != 0
    }
    /// `true` when the debug bit is set.
    pub const fn is_debug(self) -> bool {
        self.0 & 2 != 0
    }
    /// `true` when the W3C `random` flag is set ([`RANDOM`](Self::RANDOM)).
    pub const fn is_random(self) -> bool {
        self.0 & Self::RANDOM.0 != 0
    }
    /// `true` when Jaeger's firehose bit is set ([`FIREHOSE`](Self::FIREHOSE)).
    pub const fn is_firehose(self) -> bool {
        self.0 & 8 != 0
    }
    /// Both sets of bits.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// What crosses a process or device boundary: trace id, span id, flags.
///
/// Baggage travels beside it (see [`Baggage`](crate::Baggage)); a context is `Copy` so it can be
/// handed to an interrupt handler, a queue or another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SpanContext {
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span itself.
    pub span_id: SpanId,
    /// Sampling decision, made at the root and inherited.
    pub flags: Flags,
}

impl SpanContext {
    /// `true` when the context names a real span (both ids non-zero).
    pub const fn is_valid(&self) -> bool {
        self.trace_id.0 != 0 && self.span_id.0 != 0
    }
}
