//! `defmt::Format` for the public types that cannot derive it (generic over capacities, holding
//! references, or with interior mutability). The others derive it where they are defined.

use crate::propagation::Extracted;
use crate::sampler::{Probabilistic, RateLimiting, Sampler};
use crate::tracer::{Baggage, BaggageItem, Span, SpanBuilder, Tracer};

impl ::defmt::Format for BaggageItem {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(f, "{=str}={=str}", self.key.as_str(), self.value.as_str())
    }
}

impl<const B: usize> ::defmt::Format for Baggage<B> {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(f, "[");
        let mut first = true;
        self.for_each(|k, v| {
            if !first {
                ::defmt::write!(f, ", ");
            }
            first = false;
            ::defmt::write!(f, "{=str}={=str}", k, v);
            true
        });
        ::defmt::write!(f, "]");
    }
}

impl<const B: usize> ::defmt::Format for Span<'_, B> {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(
            f,
            "Span {{ context: {}, recording: {=bool}, baggage: {}, losses: {} }}",
            self.context(),
            self.is_recording(),
            self.baggage(),
            self.losses()
        )
    }
}

impl<const B: usize> ::defmt::Format for SpanBuilder<'_, B> {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(f, "SpanBuilder")
    }
}

impl ::defmt::Format for Tracer<'_> {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(
            f,
            "Tracer {{ session: {}, boot_id: {=u32}, sampler: {}, dropped: {=u32} }}",
            self.session(),
            self.boot_id(),
            self.sampler(),
            self.dropped()
        )
    }
}

impl ::defmt::Format for Sampler {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        match self {
            Sampler::Const(on) => ::defmt::write!(f, "Const({=bool})", on),
            Sampler::Probabilistic(p) => ::defmt::write!(f, "{}", p),
            Sampler::RateLimiting(r) => ::defmt::write!(f, "{}", r),
        }
    }
}

impl ::defmt::Format for Probabilistic {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(f, "Probabilistic({=f64})", self.rate())
    }
}

impl ::defmt::Format for RateLimiting {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(f, "RateLimiting({=f64}/s)", self.per_second())
    }
}

impl<const B: usize> ::defmt::Format for Extracted<B> {
    fn format(&self, f: ::defmt::Formatter<'_>) {
        ::defmt::write!(
            f,
            "Extracted {{ context: {}, baggage: {}, dropped: {=u16}, context_ignored: {} }}",
            self.context,
            self.baggage,
            self.baggage_dropped,
            self.context_ignored
        )
    }
}
