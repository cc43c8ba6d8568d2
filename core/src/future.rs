//! Spans across `.await`: [`Instrumented`] keeps a span open while a future runs and finishes it
//! when the future completes.
//!
//! The span covers the whole life of the future, including the time it waits between polls (the
//! time a request spends waiting on a peripheral or a peer is usually what a trace is for). If the
//! future is dropped before it completes (a timeout, a `select` that picked another branch), the
//! span gets the tag `cancelled=true` and finishes then. No allocation: the span lives inside the
//! combinator, next to the future.
//!
//! ```
//! use microspan::{Clock, FutureExt, Ring, Session, Tracer};
//! # struct Ticks; impl Clock for Ticks { fn now(&self) -> u32 { 0 } fn ticks_per_second(&self) -> u32 { 1_000_000 } }
//! static RING: Ring<256> = Ring::new();
//! static TRACER: Tracer = Tracer::new(&RING, &Ticks, &Session::new("svc"));
//!
//! async fn read_sensor() -> u16 { 42 }
//!
//! async fn handle() -> u16 {
//!     let span = TRACER.root("handle");
//!     let parent = span.context();
//!     async move {
//!         // Children name the parent through its context (it is `Copy`).
//!         let child = TRACER.span("read_sensor").child_of(&parent).start();
//!         let v = read_sensor().in_span(child).await;
//!         v + 1
//!     }
//!     .in_span(span)
//!     .await
//! }
//! # let _ = handle();
//! ```
//!
//! ## With embassy
//!
//! Embassy tasks are futures polled by `embassy-executor`; nothing here depends on an executor.
//! Put the tracer in a `static` (as in the firmware examples), start a span in the task, and wrap
//! the awaited work: `uart.write(&buf).in_span(TRACER.root("uart tx")).await`. A task's future
//! cannot hold a reference to a local tracer, so use `Tracer<'static>`; the drain can run in its
//! own low-priority task. `Span` is `Send`, so an instrumented future can be spawned on a
//! `Send` executor (embassy's `Spawner` for thread-mode tasks, or an interrupt executor).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::clock::Clock;
use crate::tracer::Span;

/// A future with a span that stays open until the future completes (or is dropped, then tagged
/// `cancelled=true`). Made by [`FutureExt::in_span`].
#[must_use = "futures do nothing unless polled"]
pub struct Instrumented<'a, F, const B: usize = 0, C: ?Sized + Clock = &'a dyn Clock> {
    // Structurally pinned: never moved out of a pinned `Instrumented` (see `poll` and `Drop`).
    fut: F,
    // Not pinned: taken out when the future completes.
    span: Option<Span<'a, B, C>>,
}

impl<'a, F, const B: usize, C: ?Sized + Clock> Instrumented<'a, F, B, C> {
    /// Wraps `fut` in `span`.
    pub fn new(fut: F, span: Span<'a, B, C>) -> Self {
        Self {
            fut,
            span: Some(span),
        }
    }

    /// The span, while the future has not completed (for tags and logs from outside).
    pub fn span(&self) -> Option<&Span<'a, B, C>> {
        self.span.as_ref()
    }
}

impl<F: Future, const B: usize, C: ?Sized + Clock> Future for Instrumented<'_, F, B, C> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: pin projection. `fut` is structurally pinned: it is only ever accessed through
        // this `Pin::new_unchecked` while `self` is pinned, `Drop` does not move it, there is no
        // `Unpin` impl beyond the auto trait (which requires `F: Unpin`), and the struct is not
        // `repr(packed)`. `span` is not structurally pinned and may be moved out freely.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this.fut` stays where it is for as long as `self` is pinned.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        match fut.poll(cx) {
            Poll::Ready(out) => {
                // Finishes the span now (a later drop of the combinator finds `None`).
                drop(this.span.take());
                Poll::Ready(out)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F, const B: usize, C: ?Sized + Clock> Drop for Instrumented<'_, F, B, C> {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            span.set_tag("cancelled", true);
            // `span` finishes here; the future is dropped after this, in place.
        }
    }
}

/// `fut.in_span(span)` for every future.
pub trait FutureExt: Future + Sized {
    /// Keeps `span` open until this future completes; see [`Instrumented`].
    fn in_span<'a, const B: usize, C: ?Sized + Clock>(
        self,
        span: Span<'a, B, C>,
    ) -> Instrumented<'a, Self, B, C> {
        Instrumented::new(self, span)
    }
}

impl<F: Future> FutureExt for F {}
