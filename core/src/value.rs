//! Typed tag and log-field values.

/// A tag or log-field value.
///
/// Static strings are recorded by reference and sent once (interned); dynamic strings
/// ([`Value::text`]) are copied into the ring, up to
/// [`MAX_STR_LEN`](crate::config::MAX_STR_LEN) bytes (longer ones are truncated at a character
/// boundary and counted).
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
    /// A dynamic string, copied into the ring when recorded.
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
