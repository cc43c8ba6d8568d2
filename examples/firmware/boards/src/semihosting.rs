//! Leaving QEMU with an exit code, and printing to the host's stderr, through semihosting.

/// Semihosting operation SYS_EXIT_EXTENDED: takes `[reason, exit code]`.
const SYS_EXIT_EXTENDED: usize = 0x20;
/// Reason code ADP_Stopped_ApplicationExit.
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x20026;

/// Exit code of a firmware that panicked (feature `panic-exit`), as a Rust program on a host.
pub const PANIC_EXIT_CODE: u8 = 101;
/// Exit code of a firmware that took a HardFault (feature `panic-exit`).
pub const HARDFAULT_EXIT_CODE: u8 = 102;

/// Ends the emulation with exit status `code`: QEMU started with
/// `-semihosting-config enable=on,target=native` exits with `code` (0 = success).
///
/// Uses SYS_EXIT_EXTENDED so codes other than 0 and 1 reach the host (tests use 101 for a
/// panic, 102 for a HardFault). On a real board with a debugger attached, the debugger sees the
/// request; without one, the `bkpt` instruction faults: do not call it on hardware without a
/// semihosting-aware debugger.
pub fn exit(code: u8) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as usize];
    // SAFETY: SYS_EXIT_EXTENDED reads two words from `block`, which lives until the call
    // returns; QEMU does not return from it.
    unsafe { cortex_m_semihosting::syscall(SYS_EXIT_EXTENDED, &block) };
    // Only reached when the host ignores the request (no semihosting): park the core.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Writes `bytes` to the host's stderr through semihosting (slow: for diagnostics, not for the
/// trace stream, which goes over the UART). Errors are ignored.
pub fn hprint(bytes: &[u8]) {
    if let Ok(mut err) = cortex_m_semihosting::hio::hstderr() {
        let _ = err.write_all(bytes);
    }
}
