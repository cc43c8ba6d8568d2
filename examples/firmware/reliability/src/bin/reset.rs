//! Resets itself mid-stream with spans open, then records more after the reboot and exits.
//!
//! A boot counter lives in `.uninit` RAM (not zeroed by the startup code; QEMU keeps RAM across
//! the system reset that `SYSRESETREQ` triggers), so the boot id differs across the reset, as a
//! real device's reset counter in flash or noinit RAM would make it.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};

use cortex_m_rt::entry;
use microspan::{Drain, Ring, Session, Tracer};
use microspan_boards as board;
use microspan_reliability::{report, CLOCK, DEVICE_ID};
use microspan_serial::blocking::BlockingDrain;

static RING: Ring<1024> = Ring::new();
static TRACER: Tracer<'static> = Tracer::new(
    &RING,
    &CLOCK,
    &Session::new("reset-service")
        .device_id(DEVICE_ID)
        .firmware_version("microspan-reliability reset"),
);

const BOOT_MAGIC: u32 = 0x4d53_4254; // "MSBT"

/// `[magic, boot count]`, kept across resets.
#[link_section = ".uninit.microspan_boot"]
static mut BOOT: MaybeUninit<[u32; 2]> = MaybeUninit::uninit();

/// Counts this boot; returns the count (1 on power-on).
fn count_boot() -> u32 {
    // SAFETY: read and written only here, in thread mode before interrupts are enabled, on a
    // single core. Any bit pattern is a valid `[u32; 2]` (RAM after power-on holds something),
    // and volatile accesses keep the compiler from assuming the memory's contents.
    unsafe {
        let p = addr_of_mut!(BOOT) as *mut [u32; 2];
        let [magic, count] = core::ptr::read_volatile(addr_of!(BOOT) as *const [u32; 2]);
        let count = if magic == BOOT_MAGIC {
            count.wrapping_add(1)
        } else {
            1
        };
        core::ptr::write_volatile(p, [BOOT_MAGIC, count]);
        count
    }
}

#[entry]
fn main() -> ! {
    let board::Board { uart } = board::init().expect("first init");
    let boot = count_boot();
    TRACER.set_boot_id(0x0000_b000 | boot);
    let mut drain = BlockingDrain::new(
        Drain::<'static, 256>::new(&TRACER).expect("one drain"),
        uart,
    );
    report(format_args!("microspan-reliability reset: boot={boot}"));
    if boot == 1 {
        TRACER.root("boot-1-done").finish();
        let session = TRACER.root("session");
        session.set_tag("boot", boot);
        let op = session.child("flash-write");
        op.log([("event", "writing".into())]);
        // Send everything recorded so far, then reset with `session` and `flash-write` open.
        while drain.has_pending() {
            let _ = drain.drain();
        }
        while drain.writer().is_busy() {}
        core::mem::forget((op, session));
        cortex_m::peripheral::SCB::sys_reset();
    }
    {
        let root = TRACER.root("after-reset");
        root.set_tag("boot", boot);
        root.child("recover").finish();
    }
    while drain.has_pending() {
        let _ = drain.drain();
    }
    while drain.writer().is_busy() {}
    board::exit(0)
}
