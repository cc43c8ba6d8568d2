//! Typed tag and log-field values.

/// A tag or log-field value.
///
/// Static strings (`&'static str`: literals, `const`s, `static`s) are recorded by address and
/// sent once (interned by the drain), then as a small id. A string made at run time cannot be
/// recorded by address: pass [`Value::text`], which copies it into the ring, up to
/// [`MAX_STR_LEN`](crate::config::MAX_STR_LEN) bytes (32 by default; longer ones are cut at a
/// character boundary and counted, and the decoder warns on the span). A plain `&str` that is
/// not `'static` converts to no `Value`: `span.set_tag("k", buf.as_str())` fails to build with
/// E0597 ("argument requires that `buf` is borrowed for `'static`").
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Value<'v> {
    /// A boolean (`error=true`).
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A floating point number.
    F64(f64),
    /// A string that lives forever (sent once, then by a small id).
    Str(&'static str),
    /// A string copied when recorded.
    Text(&'v str),
}

impl<'v> Value<'v> {
    /// A dynamic string, copied into the ring when recorded (so `s` may be dropped right after
    /// the `set_tag` or `log` call), cut to [`MAX_STR_LEN`](crate::config::MAX_STR_LEN) bytes
    /// at a character boundary. It takes 4 + ⌈len/4⌉ ring words as a tag on a 32-bit target,
    /// and its bytes go on the wire each time.
    ///
    /// ```
    /// use microspan::Value;
    /// let reading = [b'2', b'1', b'.', b'5'];
    /// let text = core::str::from_utf8(&reading).unwrap(); // not `'static`
    /// assert_eq!(Value::text(text), Value::Text("21.5"));
    /// ```
    pub const fn text(s: &'v str) -> Self {
        Value::Text(s)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<f32> for Value<'_> {
    fn from(v: f32) -> Self {
        Value::F64(v as f64)
    }
}
impl From<&'static str> for Value<'_> {
    fn from(v: &'static str) -> Self {
        Value::Str(v)
    }
}

macro_rules! from_int {
    ($variant:ident as $wide:ty: $($t:ty),*) => {$(
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::$variant(v as $wide)
            }
        }
    )*};
}
from_int!(I64 as i64: i8, i16, i32, i64, isize);
from_int!(U64 as u64: u8, u16, u32, u64, usize);

/// Several tags given at once, to [`Tracer::root_with_tags`](crate::Tracer::root_with_tags),
/// [`Span::child_with_tags`](crate::Span::child_with_tags) and
/// [`Span::set_tags`](crate::Span::set_tags), or a log's fields, to
/// [`Span::log`](crate::Span::log).
///
/// Implemented for tuples of up to eight `(&'static str, value)` pairs, where each value is
/// anything [`Value`] converts from (`(("http.status_code", 200u32), ("error", false))`), and
/// for arrays, slices, `heapless::Vec`s (and, with feature `std`, vectors) of
/// `(&'static str, Value)`
/// (`&[("retries", 3u32.into())]`), and for `()` (none). A tuple
/// is the cheapest on a microcontroller: each tag's type is known at compile time, so recording
/// it is a few stores; a slice is walked at run time.
pub trait Tags<'v> {
    /// The number of tags.
    fn count(&self) -> usize;
    /// Calls `f` with each tag, in order. The record path may call it twice (once to size the
    /// record, once to write it) and expects the same tags both times; when they differ (a
    /// conversion that reads a counter), the record stays well formed and the tags or fields
    /// that no longer fit are counted as lost.
    fn each(&self, f: impl FnMut(&'static str, Value<'v>));
    /// The tags as a slice when they are one already (arrays and slices), whose values do not
    /// change between walks: the record path then sizes them once. `None` for other tags.
    #[doc(hidden)]
    #[inline(always)]
    fn as_values(&self) -> Option<&[(&'static str, Value<'v>)]> {
        None
    }
}

impl<'v, T: Tags<'v> + ?Sized> Tags<'v> for &T {
    #[inline(always)]
    fn count(&self) -> usize {
        (**self).count()
    }
    #[inline(always)]
    fn each(&self, f: impl FnMut(&'static str, Value<'v>)) {
        (**self).each(f)
    }
    #[inline(always)]
    fn as_values(&self) -> Option<&[(&'static str, Value<'v>)]> {
        (**self).as_values()
    }
}

impl<'v> Tags<'v> for [(&'static str, Value<'v>)] {
    #[inline(always)]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn each(&self, mut f: impl FnMut(&'static str, Value<'v>)) {
        for (key, value) in self.iter() {
            f(key, *value);
        }
    }
    #[inline(always)]
    fn as_values(&self) -> Option<&[(&'static str, Value<'v>)]> {
        Some(self)
    }
}

impl<'v, const N: usize> Tags<'v> for [(&'static str, Value<'v>); N] {
    #[inline(always)]
    fn count(&self) -> usize {
        N
    }
    #[inline(always)]
    fn each(&self, f: impl FnMut(&'static str, Value<'v>)) {
        self.as_slice().each(f)
    }
    #[inline(always)]
    fn as_values(&self) -> Option<&[(&'static str, Value<'v>)]> {
        Some(self)
    }
}

/// The [`Tags`] methods of a container of `(key, Value)`, through its `as_slice`.
macro_rules! slice_tags {
    ($v:lifetime) => {
        #[inline(always)]
        fn count(&self) -> usize {
            self.as_slice().len()
        }
        #[inline(always)]
        fn each(&self, f: impl FnMut(&'static str, Value<$v>)) {
            self.as_slice().each(f)
        }
        #[inline(always)]
        fn as_values(&self) -> Option<&[(&'static str, Value<$v>)]> {
            Some(self.as_slice())
        }
    };
}

/// A `heapless::Vec` (or `VecView`) of tags, as built at run time without an allocator.
impl<'v, L, S> Tags<'v> for heapless::vec::VecInner<(&'static str, Value<'v>), L, S>
where
    L: heapless::LenType,
    S: heapless::vec::VecStorage<(&'static str, Value<'v>)> + ?Sized,
{
    slice_tags!('v);
}

/// A vector of `(key, Value)` (feature `std`), as its slice.
#[cfg(feature = "std")]
impl<'v> Tags<'v> for std::vec::Vec<(&'static str, Value<'v>)> {
    slice_tags!('v);
}

/// No tags (a log with no fields: `span.log(())`).
impl<'v> Tags<'v> for () {
    #[inline(always)]
    fn count(&self) -> usize {
        0
    }
    #[inline(always)]
    fn each(&self, _: impl FnMut(&'static str, Value<'v>)) {}
}

macro_rules! tag_tuples {
    ($(($($v:ident $i:tt),+)),+ $(,)?) => {$(
        impl<'v, $($v: Copy + Into<Value<'v>>),+> Tags<'v> for ($((&'static str, $v),)+) {
            #[inline(always)]
            fn count(&self) -> usize {
                [$($i),+].len()
            }
            #[inline(always)]
            fn each(&self, mut f: impl FnMut(&'static str, Value<'v>)) {
                $(f(self.$i.0, self.$i.1.into());)+
            }
        }
    )+};
}
tag_tuples!(
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7),
);

/// [`Tags`] behind a `dyn` pointer, for the record path's rarely taken slow paths: one copy of
/// them serves every type of tags.
pub(crate) trait DynTags<'v> {
    fn count_dyn(&self) -> usize;
    fn each_dyn(&self, f: &mut dyn FnMut(&'static str, Value<'v>));
}

impl<'v, T: Tags<'v>> DynTags<'v> for T {
    fn count_dyn(&self) -> usize {
        self.count()
    }
    fn each_dyn(&self, f: &mut dyn FnMut(&'static str, Value<'v>)) {
        self.each(f)
    }
}

impl<'v> Tags<'v> for dyn DynTags<'v> + '_ {
    fn count(&self) -> usize {
        self.count_dyn()
    }
    fn each(&self, mut f: impl FnMut(&'static str, Value<'v>)) {
        self.each_dyn(&mut f)
    }
}
