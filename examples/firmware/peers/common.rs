// The run-time configuration and counting gates of the benchmark firmware, shared by the peer
// firmware (the same protocol as examples/firmware/bench/src/lib.rs: the bench runner writes
// `BENCH_CONFIG` with QEMU's generic loader and counts instructions between the gates).
#![allow(dead_code)]

use core::mem::MaybeUninit;
use core::sync::atomic::{compiler_fence, Ordering};

/// `[MAGIC, op, iterations, arg]`, written by the host before reset.
#[no_mangle]
#[link_section = ".uninit.BENCH_CONFIG"]
pub static mut BENCH_CONFIG: MaybeUninit<[u32; 4]> = MaybeUninit::uninit();

pub const MAGIC: u32 = 0x6d73_6265;

pub fn config() -> Option<(u32, u32, u32)> {
    // SAFETY: plain memory, read with volatile loads (any bit pattern is a valid u32).
    let w = unsafe {
        let p = core::ptr::addr_of!(BENCH_CONFIG) as *const u32;
        [
            p.read_volatile(),
            p.add(1).read_volatile(),
            p.add(2).read_volatile(),
            p.add(3).read_volatile(),
        ]
    };
    (w[0] == MAGIC).then_some((w[1], w[2], w[3]))
}

static mut GATE: u32 = 0;

#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_gate_on() {
    // SAFETY: a word written only by the two gate functions.
    unsafe { core::ptr::addr_of_mut!(GATE).write_volatile(1) };
    compiler_fence(Ordering::SeqCst);
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_gate_off() {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { core::ptr::addr_of_mut!(GATE).write_volatile(2) };
}

/// The SEGGER RTT control block's up-channel `ch`: (write offset, read offset) addresses.
/// Layout: id[16], max_up (i32), max_down (i32), then per channel name, buffer, size, write,
/// read, flags (six 32-bit words).
pub fn rtt_offsets(cb: *const u8, ch: usize) -> (*mut u32, *mut u32) {
    let base = cb as usize + 24 + ch * 24;
    ((base + 12) as *mut u32, (base + 16) as *mut u32)
}

/// Bytes written to up-channel `ch` since the last call, then marks them read (as a host
/// would), so the buffer never fills.
pub fn rtt_take(cb: *const u8, ch: usize) -> u32 {
    let (w, r) = rtt_offsets(cb, ch);
    let size_addr = (cb as usize + 24 + ch * 24 + 8) as *const u32;
    // SAFETY: `cb` is the control block of the RTT implementation linked into this firmware; the
    // offsets are those of its documented layout; single-threaded use.
    unsafe {
        let size = size_addr.read_volatile();
        let write = w.read_volatile();
        let read = r.read_volatile();
        r.write_volatile(write);
        (write + size - read) % size.max(1)
    }
}

pub fn say(args: core::fmt::Arguments<'_>) {
    struct Line([u8; 160], usize);
    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut l = Line([0; 160], 0);
    let _ = core::fmt::write(&mut l, args);
    let _ = core::fmt::Write::write_str(&mut l, "\n");
    microspan_boards::hprint(&l.0[..l.1]);
}
