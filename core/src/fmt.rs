//! The tracer's own diagnostics (records dropped, capacities exceeded): `defmt::warn!` with the
//! `defmt-log` feature, nothing without it (the arguments are still type-checked, never evaluated
//! twice, and cost nothing). Not with `defmt` alone, which only derives `defmt::Format`: these
//! calls sit on the record path (interrupt handlers included), where a defmt transport in
//! blocking mode would make recording wait for the host. Modelled on embassy-sync's `src/fmt.rs`.
#![allow(unused_macros)]

#[cfg(feature = "defmt-log")]
macro_rules! warn {
    ($($arg:tt)*) => {
        ::defmt::warn!($($arg)*)
    };
}

#[cfg(not(feature = "defmt-log"))]
macro_rules! warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}

#[cfg(feature = "defmt-log")]
macro_rules! debug {
    ($($arg:tt)*) => {
        ::defmt::debug!($($arg)*)
    };
}

#[cfg(not(feature = "defmt-log"))]
macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}
