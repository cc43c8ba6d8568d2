//! OpenTracing's semantic conventions: the standard span tag and log field names, and the values
//! of `span.kind`.
//!
//! Using these keys lets Jaeger (and the decoder's exporters) understand a span: `error=true`
//! marks it red and sets the OTLP status to ERROR, `span.kind` becomes the OTLP span kind, the
//! `peer.*` tags name the other side of a call.
//!
//! ```
//! use microspan::conventions::{self as tags, SPAN_KIND_CLIENT};
//! # use microspan::{Clock, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
//! # static RING: Ring<256> = Ring::new();
//! # static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("sensor-node"));
//! let call = TRACER.root("POST /readings");
//! call.set_tag(tags::SPAN_KIND, SPAN_KIND_CLIENT);
//! call.set_tag(tags::HTTP_METHOD, "POST");
//! call.set_tag(tags::PEER_SERVICE, "gateway");
//! call.set_tag(tags::HTTP_STATUS_CODE, 503u16);
//! call.set_error("http", "gateway unavailable");
//! call.log_event("retry scheduled");
//! ```

use crate::clock::Clock;
use crate::tracer::Span;
use crate::value::Value;

// ---- span tags ----

/// The software package, framework or library that generated the span (`"modbus"`, `"coap"`).
pub const COMPONENT: &str = "component";
/// `true` when the span's operation failed.
pub const ERROR: &str = "error";
/// HTTP method of the request (`"GET"`).
pub const HTTP_METHOD: &str = "http.method";
/// HTTP response status code (`200`).
pub const HTTP_STATUS_CODE: &str = "http.status_code";
/// URL of the request.
pub const HTTP_URL: &str = "http.url";
/// Remote address ("host:port", a bus address, a serial port).
pub const PEER_ADDRESS: &str = "peer.address";
/// Remote host name.
pub const PEER_HOSTNAME: &str = "peer.hostname";
/// Remote IPv4 address (dotted string or 32-bit integer).
pub const PEER_IPV4: &str = "peer.ipv4";
/// Remote IPv6 address.
pub const PEER_IPV6: &str = "peer.ipv6";
/// Remote port.
pub const PEER_PORT: &str = "peer.port";
/// Remote service name (its Jaeger service).
pub const PEER_SERVICE: &str = "peer.service";
/// The span's role: one of the `SPAN_KIND_*` values.
pub const SPAN_KIND: &str = "span.kind";
/// Sampling priority, OpenTracing's key. In OpenTracing clients the tag steers the tracer
/// itself: 0 stops recording the span, above 0 forces it (Jaeger's clients make it a debug span).
/// Here it is **recorded as a plain tag only**: the span's sampling decision and the flags it
/// propagates do not change, and Jaeger's collector does not act on the tag either. To force a
/// trace, start it with [`SpanBuilder::debug`](crate::SpanBuilder::debug) (recorded whatever the
/// sampler says, propagated sampled and debug); to skip one, decide before the root starts
/// ([`Sampler`](crate::Sampler)).
pub const SAMPLING_PRIORITY: &str = "sampling.priority";
/// Database instance name.
pub const DB_INSTANCE: &str = "db.instance";
/// Database statement.
pub const DB_STATEMENT: &str = "db.statement";
/// Database type (`"sql"`, `"redis"`, `"flash-kv"`).
pub const DB_TYPE: &str = "db.type";
/// Database user.
pub const DB_USER: &str = "db.user";
/// The message bus destination (topic, queue, CAN id).
pub const MESSAGE_BUS_DESTINATION: &str = "message_bus.destination";

// ---- span.kind values ----

/// `span.kind`: the client side of an RPC.
pub const SPAN_KIND_CLIENT: &str = "client";
/// `span.kind`: the server side of an RPC.
pub const SPAN_KIND_SERVER: &str = "server";
/// `span.kind`: the producer of a message.
pub const SPAN_KIND_PRODUCER: &str = "producer";
/// `span.kind`: the consumer of a message.
pub const SPAN_KIND_CONSUMER: &str = "consumer";

// ---- log fields ----

/// A stage or event name (`"error"`, `"cache miss"`).
pub const EVENT: &str = "event";
/// A human-readable message.
pub const MESSAGE: &str = "message";
/// The kind of error (`"timeout"`, an error type's name).
pub const ERROR_KIND: &str = "error.kind";
/// The error object (on the device: its formatted text).
pub const ERROR_OBJECT: &str = "error.object";
/// A stack trace.
pub const STACK: &str = "stack";

/// The `event` value of an error log.
pub const EVENT_ERROR: &str = "error";

impl<const B: usize, C: ?Sized + Clock> Span<'_, B, C> {
    /// Marks the span as failed the OpenTracing way: the tag `error=true` and a log
    /// `event="error", error.kind=kind, message=message`.
    pub fn set_error<'v>(&self, kind: &'static str, message: impl Into<Value<'v>>) {
        self.set_tag(ERROR, true);
        self.log((
            (EVENT, EVENT_ERROR),
            (ERROR_KIND, kind),
            (MESSAGE, message.into()),
        ));
    }

    /// Logs a single `event` field (`span.log_event("cache miss")`).
    pub fn log_event(&self, event: &'static str) {
        self.log(((EVENT, event),));
    }

    /// Sets `span.kind` (one of the `SPAN_KIND_*` values; exported as the OTLP span kind).
    pub fn set_kind(&self, kind: &'static str) {
        self.set_tag(SPAN_KIND, kind);
    }
}
