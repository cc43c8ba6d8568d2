//! Panics and HardFaults end the QEMU run with a non-zero exit code instead of hanging, so a
//! broken firmware fails its test at once (feature `panic-exit`, on by default).

use core::fmt::Write;

use cortex_m_rt::{exception, ExceptionFrame};

use crate::semihosting::{exit, hprint, HARDFAULT_EXIT_CODE, PANIC_EXIT_CODE};

/// Formats into the host's stderr without allocating.
struct HostStderr;

impl Write for HostStderr {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        hprint(s.as_bytes());
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    let _ = writeln!(HostStderr, "firmware panicked: {info}");
    exit(PANIC_EXIT_CODE)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let _ = writeln!(
        HostStderr,
        "firmware HardFault: pc={:#010x} lr={:#010x} xpsr={:#010x}",
        frame.pc(),
        frame.lr(),
        frame.xpsr()
    );
    exit(HARDFAULT_EXIT_CODE)
}
