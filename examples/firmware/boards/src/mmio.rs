//! Volatile access to memory-mapped registers by address.

/// A 32-bit memory-mapped register at a fixed address.
#[derive(Clone, Copy)]
pub(crate) struct Reg(pub(crate) usize);

impl Reg {
    /// Reads the register.
    #[inline(always)]
    pub(crate) fn read(self) -> u32 {
        // SAFETY: every `Reg` in this crate is built from a documented, word-aligned register
        // address of the selected board, which is always mapped; a volatile read has no other
        // effect than the peripheral's documented read side effects.
        unsafe { (self.0 as *const u32).read_volatile() }
    }

    /// Writes the register.
    #[inline(always)]
    pub(crate) fn write(self, value: u32) {
        // SAFETY: as for `read`: a mapped, aligned register of this board. Callers own the
        // peripheral the register belongs to (see each board module's notes on ownership).
        unsafe { (self.0 as *mut u32).write_volatile(value) }
    }

    /// Read-modify-write. Not atomic: callers run it in `init` or inside a critical section.
    #[cfg_attr(not(feature = "lm3s6965"), allow(dead_code))] // the micro:bit uses SET/CLR registers
    #[inline(always)]
    pub(crate) fn modify(self, f: impl FnOnce(u32) -> u32) {
        self.write(f(self.read()))
    }
}
