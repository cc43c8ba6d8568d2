//! The atomics the record path uses, on every target.
//!
//! Cores with compare-and-swap (Cortex-M3/M4/M7, RISC-V with the A extension, desktops) use
//! `core::sync::atomic`. Cores without it (Cortex-M0/M0+, thumbv6m; riscv32i) still load and store
//! words atomically with plain instructions, so [`cs`] keeps those native and puts only the
//! read-modify-write operations (compare-and-swap, fetch-add, swap) in a critical section, which
//! the firmware supplies through `critical-section` (on a single-core Cortex-M,
//! `cortex-m/critical-section-single-core`). Under `cfg(loom)` the loom model's atomics replace
//! both so the protocol can be model-checked; under `cfg(loom)` with `cfg(loom_cs)` as well (the
//! build script sets it when `MICROSPAN_LOOM_CS` is in the environment), the model runs the
//! critical-section atomics instead (loom's atomics for the loads and stores, one loom mutex
//! standing for the critical section), so the Cortex-M0 path is model-checked too.

#[cfg(all(loom, not(loom_cs)))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(all(not(loom), target_has_atomic = "32"))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(any(all(not(loom), not(target_has_atomic = "32")), all(loom, loom_cs)))]
pub(crate) use cs::{AtomicBool, AtomicU32, Ordering};

/// Atomics for cores that load and store words atomically but have no compare-and-swap.
///
/// Every read-modify-write runs in a critical section; loads and stores are the native ones
/// (one instruction each), not critical sections. That is sound because each read-modify-write
/// is indivisible with respect to everything else on the core (interrupts are masked), and on a
/// multi-core chip the `critical-section` implementation also excludes the other cores from
/// every other read-modify-write; a plain store racing a read-modify-write of the same word
/// from another core is something the ring's protocol never does (see `ring.rs`: `head` is only
/// moved by compare-and-swap, `busy` is cleared only by its holder, and the other words have a
/// single writer).
#[cfg(any(
    test,
    all(not(loom), not(target_has_atomic = "32")),
    all(loom, loom_cs)
))]
#[allow(dead_code)] // on hosts, built only for its tests
pub(crate) mod cs {
    pub(crate) use core::sync::atomic::Ordering;

    /// Runs `f` in a critical section.
    #[cfg(not(loom))]
    #[inline(always)]
    fn critical<R>(f: impl FnOnce() -> R) -> R {
        critical_section::with(|_| f())
    }

    /// Runs `f` in a critical section, modelled as one mutex every read-modify-write takes:
    /// they exclude each other (as masked interrupts, or a multi-core implementation's lock,
    /// do), while plain loads and stores take no lock and may interleave with them anywhere.
    #[cfg(loom)]
    fn critical<R>(f: impl FnOnce() -> R) -> R {
        loom::lazy_static! {
            static ref CS: loom::sync::Mutex<()> = loom::sync::Mutex::new(());
        }
        let _masked = CS.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }

    /// The ordering of the load half of a read-modify-write ordered by `o`.
    #[inline(always)]
    fn load_order(o: Ordering) -> Ordering {
        match o {
            Ordering::Acquire | Ordering::AcqRel | Ordering::SeqCst => Ordering::Acquire,
            _ => Ordering::Relaxed,
        }
    }

    /// The ordering of the store half of a read-modify-write ordered by `o`.
    #[inline(always)]
    fn store_order(o: Ordering) -> Ordering {
        match o {
            Ordering::Release | Ordering::AcqRel | Ordering::SeqCst => Ordering::Release,
            _ => Ordering::Relaxed,
        }
    }

    macro_rules! atomic {
        ($name:ident, $inner:ty, $t:ty) => {
            /// A word with native loads and stores and read-modify-writes in critical sections
            /// (public only because `Ring<N>` names it; it cannot be named outside the crate).
            #[repr(transparent)]
            pub struct $name($inner);

            impl core::fmt::Debug for $name {
                fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    self.0.fmt(f)
                }
            }

            impl $name {
                #[cfg(not(loom))]
                pub(crate) const fn new(v: $t) -> Self {
                    Self(<$inner>::new(v))
                }

                /// (loom: its atomics cannot be built in a `const fn`.)
                #[cfg(loom)]
                pub(crate) fn new(v: $t) -> Self {
                    Self(<$inner>::new(v))
                }

                #[inline(always)]
                pub(crate) fn load(&self, o: Ordering) -> $t {
                    self.0.load(o)
                }

                #[inline(always)]
                pub(crate) fn store(&self, v: $t, o: Ordering) {
                    self.0.store(v, o)
                }

                /// Replaces the value with `f(old)` when that is `Some`, in one critical section;
                /// `Ok(old)`, or `Err(old)` when `f` said no.
                #[inline(always)]
                pub(crate) fn update(
                    &self,
                    o: Ordering,
                    f: impl FnOnce($t) -> Option<$t>,
                ) -> Result<$t, $t> {
                    critical(|| {
                        let old = self.0.load(load_order(o));
                        match f(old) {
                            Some(new) => {
                                self.0.store(new, store_order(o));
                                Ok(old)
                            }
                            None => Err(old),
                        }
                    })
                }

                #[inline(always)]
                pub(crate) fn compare_exchange(
                    &self,
                    current: $t,
                    new: $t,
                    success: Ordering,
                    _failure: Ordering,
                ) -> Result<$t, $t> {
                    self.update(success, |v| (v == current).then_some(new))
                }

                #[inline(always)]
                pub(crate) fn compare_exchange_weak(
                    &self,
                    current: $t,
                    new: $t,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$t, $t> {
                    self.compare_exchange(current, new, success, failure)
                }

                #[inline(always)]
                pub(crate) fn swap(&self, v: $t, o: Ordering) -> $t {
                    match self.update(o, |_| Some(v)) {
                        Ok(old) | Err(old) => old,
                    }
                }
            }
        };
    }

    #[cfg(not(loom))]
    atomic!(AtomicU32, core::sync::atomic::AtomicU32, u32);
    #[cfg(not(loom))]
    atomic!(AtomicBool, core::sync::atomic::AtomicBool, bool);
    #[cfg(loom)]
    atomic!(AtomicU32, loom::sync::atomic::AtomicU32, u32);
    #[cfg(loom)]
    atomic!(AtomicBool, loom::sync::atomic::AtomicBool, bool);

    impl AtomicU32 {
        #[inline(always)]
        pub(crate) fn fetch_add(&self, v: u32, o: Ordering) -> u32 {
            match self.update(o, |old| Some(old.wrapping_add(v))) {
                Ok(old) | Err(old) => old,
            }
        }
    }

    #[cfg(all(test, not(loom)))]
    mod tests {
        use super::*;

        #[test]
        fn read_modify_writes() {
            let a = AtomicU32::new(5);
            assert_eq!(
                a.compare_exchange(4, 9, Ordering::AcqRel, Ordering::Relaxed),
                Err(5)
            );
            assert_eq!(
                a.compare_exchange_weak(5, 9, Ordering::Relaxed, Ordering::Relaxed),
                Ok(5)
            );
            assert_eq!(a.fetch_add(u32::MAX, Ordering::Relaxed), 9);
            assert_eq!(a.swap(1, Ordering::Release), 8);
            assert_eq!(a.load(Ordering::Acquire), 1);
            let b = AtomicBool::new(false);
            assert_eq!(
                b.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed),
                Ok(false)
            );
            assert!(b.swap(false, Ordering::AcqRel));
            assert!(!b.load(Ordering::Relaxed));
        }
    }
}
