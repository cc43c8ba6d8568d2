//! The tracer's own diagnostics (records dropped, capacities exceeded): `defmt::warn!` with the
//! `defmt` feature, nothing without it (the arguments are still type-checked, never evaluated
//! twice, and cost nothing). Modelled on embassy-sync's `src/fmt.rs`.
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! warn {
    ($($arg:tt)*) => {
        ::defmt::warn!($($arg)*)
    };
}

#[cfg(not(feature = "defmt"))]
macro_rules! warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}

#[cfg(feature = "defmt")]
macro_rules! debug {
    ($($arg:tt)*) => {
        ::defmt::debug!($($arg)*)
    };
}

#[cfg(not(feature = "defmt"))]
macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}
