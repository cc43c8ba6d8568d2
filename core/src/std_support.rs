//! Desktop conveniences (feature `std`).

use std::time::Instant;

use crate::clock::Clock;
use crate::drain::Drain;

/// Microseconds since the clock was created, from `std::time::Instant` (1 MHz; wraps every
/// 71 minutes, which the drain's tick extension follows).
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    origin: Instant,
}

impl StdClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> u32 {
        self.origin.elapsed().as_micros() as u32
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
