//! Desktop conveniences (feature `std`).

use std::sync::OnceLock;
use std::time::Instant;

use crate::clock::Clock;
use crate::drain::Drain;

/// The instant every [`StdClock`] counts from: the first time one is read in this process.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Microseconds from `std::time::Instant` (1 MHz; wraps every 71 minutes, which the drain's tick
/// extension follows), counted from the first time any `StdClock` of the process is read, so that
/// all of them agree.
///
/// [`new`](Self::new) is a `const fn`: the clock can be a `static` beside the ring and the tracer.
///
/// ```
/// use microspan::{Ring, Session, StdClock, Tracer};
/// static CLOCK: StdClock = StdClock::new();
/// static RING: Ring<1024> = Ring::new();
/// static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("desktop-service"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StdClock {
    _private: (),
}

impl StdClock {
    /// The clock (all `StdClock`s read the same time).
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl Clock for StdClock {
    fn now(&self) -> u32 {
        // After the first read, one `Acquire` load besides `Instant::now`.
        ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u32
    }
    fn ticks_per_second(&self) -> u32 {
        1_000_000
    }
}

/// Writes every frame the drain has to `out` (blocking); returns the bytes written.
pub fn write_all_frames<const F: usize, const N: usize>(
    drain: &mut Drain<'_, F, N>,
    out: &mut impl std::io::Write,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let bytes = drain.fill_buf();
        if bytes.is_empty() {
            return Ok(total);
        }
        let n = out.write(bytes)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        drain.consume(n);
        total += n;
    }
}
