//! The decoder's span model: what span assembly produces and every exporter consumes.
//!
//! It is the OpenTracing span model (operation, start and duration, tags, logs, references,
//! baggage) with host types (strings, wall-clock nanoseconds).
//! Exporters only read it; nothing here knows about the wire format.
//!
//! What many spans repeat is shared rather than copied: keys and the service name are
//! [`SharedStr`]s (short ones are stored in place, so cloning them neither allocates nor touches a
//! reference count; a longer key from the device's interned name table is one allocation for every
//! span that uses it), baggage is shared by the spans that inherit it ([`Baggage`]), and the
//! [`Process`] by the batches of a session. Operation names and string values ([`Value::Str`])
//! are [`SharedStr`]s too.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

pub use smallvec::{smallvec, SmallVec};

/// An immutable string, cheap to clone: up to [`SharedStr::INLINE`] bytes are stored in place
/// (cloning copies them: no allocation, no reference count to update), longer ones are shared by
/// reference counting (cloning copies a pointer).
///
/// Most names, keys and values a device sends are short: kept inline, they cost no allocation
/// when a span is built and no atomic reference-count update when they are shared by spans and
/// dropped with them (those were a tenth of span assembly).
///
/// It reads as a `str` (`Deref`, [`SharedStr::as_str`]), compares equal to `str`, `&str` and
/// `String` with the same text, and prints (`Display`, `Debug`) exactly as the `str` does.
/// Equality, ordering and hashing are the text's, whichever way it is stored.
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes of UTF-8 at the start of `bytes` (never changed after construction).
    Inline {
        len: u8,
        bytes: [u8; SharedStr::INLINE],
    },
    /// Longer text, shared.
    Shared(Arc<str>),
}

impl SharedStr {
    /// The longest text stored in place.
    pub const INLINE: usize = 22;

    /// Whether `other` is this very text: the same shared allocation, or (for a short text kept
    /// in place) the same bytes. Constant time, unlike comparing long texts.
    pub fn is_same(&self, other: &SharedStr) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b),
            (Repr::Inline { .. }, Repr::Inline { .. }) => self.as_str() == other.as_str(),
            _ => false,
        }
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let b = &bytes[..*len as usize];
                // SAFETY: `bytes[..len]` is a copy of a whole `&str` (see `inline`), never
                // modified since, so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            }
            Repr::Shared(s) => s,
        }
    }

    /// The length of the text in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => *len as usize,
            Repr::Shared(s) => s.len(),
        }
    }

    /// `true` for the empty string.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A constant text stored in place (for the fixed keys and values the decoder writes).
    ///
    /// # Panics
    /// At compile time when used in a `const`, if `s` is longer than [`INLINE`](Self::INLINE).
    pub const fn from_static(s: &'static str) -> Self {
        assert!(
            s.len() <= Self::INLINE,
            "a constant SharedStr is stored in place"
        );
        let mut bytes = [0u8; Self::INLINE];
        let mut i = 0;
        while i < s.len() {
            bytes[i] = s.as_bytes()[i];
            i += 1;
        }
        Self(Repr::Inline {
            len: s.len() as u8,
            bytes,
        })
    }

    /// `s` stored in place, if it is short enough.
    #[inline]
    fn inline(s: &str) -> Option<Self> {
        if s.len() > Self::INLINE {
            return None;
        }
        let mut bytes = [0u8; Self::INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self(Repr::Inline {
            len: s.len() as u8,
            bytes,
        }))
    }
}

impl Clone for SharedStr {
    /// A shared string's reference count is raised, then either kind is copied whole, word by
    /// word. (The derived clone rebuilt an inline string field by field, through the stack in
    /// narrow overlapping pieces that the copy into place then waited for: a store-forwarding
    /// stall for every interned name the assembler places.)
    #[inline]
    fn clone(&self) -> Self {
        if let Repr::Shared(s) = &self.0 {
            // The reference the copy below holds.
            std::mem::forget(Arc::clone(s));
        }
        // SAFETY: an inline string owns nothing, so its bitwise copy is an independent value (as
        // if the type were `Copy`); a shared one's copy holds the reference counted just above
        // (as `Arc::clone` does: count up, copy the pointer).
        unsafe { std::ptr::read(self) }
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        Self(Repr::Inline {
            len: 0,
            bytes: [0; Self::INLINE],
        })
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes: `Borrow<str>` lookups find it.
        self.as_str().hash(state)
    }
}

impl Deref for SharedStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for SharedStr {
    #[inline]
    fn from(s: &str) -> Self {
        Self::inline(s).unwrap_or_else(|| Self(Repr::Shared(Arc::from(s))))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        Self::inline(&s).unwrap_or_else(|| Self(Repr::Shared(Arc::from(s))))
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> Self {
        s.as_str().into()
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(s: Arc<str>) -> Self {
        Self::inline(&s).unwrap_or(Self(Repr::Shared(s)))
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == other.as_str()
    }
}

/// A typed tag or log-field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer (exported as a signed 64-bit value where the target format has no
    /// unsigned type; values above `i64::MAX` become strings there).
    U64(u64),
    /// A floating point number.
    F64(f64),
    /// A string (shared: an interned string value is one allocation for every span using it).
    Str(SharedStr),
}

/// A span's tags or a log's fields: up to two are stored inline, more on the heap. It reads as a
/// slice (`Deref`); build one with [`smallvec!`], `.into()` from a `Vec` or `collect()`.
pub type KeyValues = SmallVec<[KeyValue; 2]>;

/// A span's logs: one is stored inline, more on the heap.
pub type Logs = SmallVec<[Log; 1]>;

/// A span's references: one (the parent) is stored inline, more on the heap.
pub type References = SmallVec<[Reference; 1]>;

/// A key/value pair (a tag, a log field, a process tag).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The key, e.g. `http.status_code`.
    pub key: SharedStr,
    /// The value.
    pub value: Value,
}

impl KeyValue {
    /// Builds a pair.
    pub fn new(key: impl Into<SharedStr>, value: Value) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }

    /// `true` for the tag `error=true` (OpenTracing's mark of a failed span).
    pub fn is_error_true(&self) -> bool {
        self.key == "error" && self.value == Value::Bool(true)
    }
}

/// The kind of a reference between spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// The parent waits for the child (Jaeger `CHILD_OF`).
    ChildOf,
    /// The parent does not wait for the child (Jaeger `FOLLOWS_FROM`, an OTLP link).
    FollowsFrom,
}

/// A reference from one span to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// ChildOf or FollowsFrom.
    pub kind: RefKind,
    /// The referenced span's trace id.
    pub trace_id: u128,
    /// The referenced span's id.
    pub span_id: u64,
}

/// A timestamped log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// The fields, in the order the device logged them.
    pub fields: KeyValues,
}

/// Baggage items (key, value), in the order they were first set: a span shares its items with
/// the spans that inherited them (cloning copies a pointer).
///
/// It reads as a slice of pairs and compares equal to a `Vec` of string pairs with the same items.
///
/// One item (the usual case) is stored in the shared allocation itself: a span's baggage is one
/// allocation, not two (the items' buffer was a second one, freed long after, cold, when the
/// decoder's recently-finished spans forgot it).
#[derive(Clone, Default)]
pub struct Baggage(Option<Arc<BaggageItems>>);

/// The items of a [`Baggage`]: one stored in place, more on the heap.
type BaggageItems = SmallVec<[(SharedStr, SharedStr); 1]>;

impl Baggage {
    /// No items.
    pub const fn new() -> Self {
        Self(None)
    }

    /// One item.
    pub(crate) fn one(key: SharedStr, value: SharedStr) -> Self {
        Self(Some(Arc::new(SmallVec::from_buf([(key, value)]))))
    }

    /// Whether `other` shares these very items (the same allocation, or both empty).
    pub(crate) fn ptr_eq(&self, other: &Baggage) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// The items, to change them (copied first if shared).
    pub(crate) fn make_mut(&mut self) -> &mut BaggageItems {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }
}

impl Deref for Baggage {
    type Target = [(SharedStr, SharedStr)];
    fn deref(&self) -> &Self::Target {
        self.0.as_deref().map_or(&[], SmallVec::as_slice)
    }
}

impl PartialEq for Baggage {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<'a> IntoIterator for &'a Baggage {
    type Item = &'a (SharedStr, SharedStr);
    type IntoIter = std::slice::Iter<'a, (SharedStr, SharedStr)>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<K: Into<SharedStr>, V: Into<SharedStr>> From<Vec<(K, V)>> for Baggage {
    fn from(items: Vec<(K, V)>) -> Self {
        items.into_iter().collect()
    }
}

impl<K: Into<SharedStr>, V: Into<SharedStr>> FromIterator<(K, V)> for Baggage {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let items: BaggageItems = items
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if items.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(items)))
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> PartialEq<Vec<(K, V)>> for Baggage {
    fn eq(&self, other: &Vec<(K, V)>) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other)
                .all(|((k, v), (ok, ov))| k.as_str() == ok.as_ref() && v.as_str() == ov.as_ref())
    }
}

/// A rebuilt span, ready for export.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 128-bit trace id (never 0).
    pub trace_id: u128,
    /// 64-bit span id (never 0).
    pub span_id: u64,
    /// The operation name (shared with the device's name table when it is an interned name).
    pub operation: SharedStr,
    /// References. When the span was started with a parent, `references[0]` is the `ChildOf`
    /// reference to it; `FollowsFrom` references and further `ChildOf` ones follow (see
    /// [`parent_index`](Self::parent_index) for which one Jaeger takes as the parent).
    pub references: References,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// Duration in nanoseconds (at the device clock's resolution). For an incomplete span, the time
    /// from its start to the last event seen from its device.
    pub duration_nanos: u64,
    /// Tags, in recording order.
    pub tags: KeyValues,
    /// Logs, in recording order.
    pub logs: Logs,
    /// Baggage items visible on this span (its own, carried into it, and inherited). The items
    /// this span set (`set_baggage` on the device) are also among its `logs` (`event=baggage,
    /// key, value`), as Jaeger clients log them; the items it received from a carrier or a
    /// builder's baggage are not. Logged while the
    /// span's logs are within the decoder's per-span limit
    /// ([`Limits::max_items_per_span`](crate::assemble::Limits::max_items_per_span)).
    pub baggage: Baggage,
    /// Sampling flags (bit 0 sampled, bit 1 debug), as in Jaeger's `flags`.
    pub flags: u8,
    /// Jaeger `warnings`: capacity truncations, records lost to a gap, never finished, …
    pub warnings: Vec<String>,
    /// `true` when the span never finished (device reset, hang, crash, end of input, lost record).
    pub incomplete: bool,
    /// `true` when the parent is a span of another process: the span continues a context the
    /// device extracted from a carrier (OTLP's "parent is remote" span flag).
    pub remote_parent: bool,
}

impl Span {
    /// The index in `references` of the parent: the first `ChildOf` reference into this span's
    /// own trace, else the first `FollowsFrom` one (a consumer's producer), as OpenTelemetry's
    /// OpenTracing compatibility and the Jaeger clients choose it (and as the device decided the
    /// span's trace). A reference into another trace (added with `Span::add_reference`) is not
    /// the parent: Jaeger looks a parent up in the span's own trace.
    pub fn parent_index(&self) -> Option<usize> {
        let first = |kind| {
            self.references
                .iter()
                .position(|r| r.kind == kind && r.trace_id == self.trace_id)
        };
        first(RefKind::ChildOf).or_else(|| first(RefKind::FollowsFrom))
    }

    /// The index of the reference that the parent span id says in full, left out of OTLP's
    /// links: a `ChildOf` parent. A `FollowsFrom` parent stays a link as well (with
    /// `opentracing.ref_type=follows_from`), which is how Jaeger keeps its kind.
    pub fn implied_reference(&self) -> Option<usize> {
        self.parent_index()
            .filter(|&i| self.references[i].kind == RefKind::ChildOf)
    }

    /// The parent span id ([`parent_index`](Self::parent_index)), if any.
    pub fn parent_span_id(&self) -> Option<u64> {
        self.parent_index().map(|i| self.references[i].span_id)
    }

    /// `true` when the span carries the tag `error=true`.
    pub fn is_error(&self) -> bool {
        self.tags.iter().any(KeyValue::is_error_true)
    }

    /// The value of a tag, if present.
    pub fn tag(&self, key: &str) -> Option<&Value> {
        self.tags.iter().find(|t| t.key == key).map(|t| &t.value)
    }
}

/// The process (Jaeger) / resource (OTLP) a span came from: one device session.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// The service name the device announced.
    pub service_name: SharedStr,
    /// Device id, firmware and wire version, microspan version, decoder host name, …
    pub tags: Vec<KeyValue>,
}

/// Spans of one process, the unit every exporter takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Where the spans came from (shared by every batch of the same device session).
    pub process: Arc<Process>,
    /// The spans, in the order they finished (or were closed as incomplete).
    pub spans: Vec<Span>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_strings_read_compare_and_hash_as_their_text_whichever_way_stored() {
        use std::hash::BuildHasher;
        let h = std::collections::hash_map::RandomState::new();
        let long = "a name longer than the inline capacity, shared";
        for text in [
            "",
            "a",
            "http.status_code",
            "in-process-service",
            "é∂",
            "é∂ unicode ≥ 22 bytes!",
            long,
        ] {
            let a = SharedStr::from(text);
            let b = SharedStr::from(Arc::<str>::from(text));
            let c = SharedStr::from(text.to_string());
            for s in [&a, &b, &c, &a.clone()] {
                assert_eq!(s.as_str(), text);
                assert_eq!(s.len(), text.len());
                assert_eq!(s.is_empty(), text.is_empty());
                assert_eq!(*s, a);
                assert_eq!(h.hash_one(s), h.hash_one(text));
                assert_eq!(format!("{s}|{s:?}"), format!("{text}|{text:?}"));
            }
        }
        // Ordered by text, an inline string against a shared one.
        let (b, l) = (SharedStr::from("b"), SharedStr::from(long));
        assert_eq!(b.cmp(&l), "b".cmp(long));
        assert_eq!(SharedStr::default(), "");
    }
}
