//! Compile-time capacities.
//!
//! Each bound below has a default and can be changed for a whole build by setting the environment
//! variable named in its documentation (for example `MICROSPAN_MAX_STR_LEN=64 cargo build`).
//! Exceeding a bound never fails the caller: the excess is dropped, counted on the span, and the
//! count travels on the wire so the decoder puts a Jaeger warning on that span.
//!
//! The ring size ([`Ring<N>`](crate::Ring)), the frame size and the name-table size
//! ([`Drain<F, NAMES>`](crate::Drain)) and the number of baggage items a span carries
//! ([`Span<B>`](crate::Span)) are const generics of the types that hold them: more baggage
//! items than `B` are dropped and counted like the bounds here.

include!(concat!(env!("OUT_DIR"), "/config.rs"));
