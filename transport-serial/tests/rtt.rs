//! The RTT transport against a real `rtt_target::UpChannel` whose control block lives in test
//! memory, read by a simulated probe (the same way a debugger reads target RAM): small buffers that
//! wrap and fill mid-frame, a probe that switches the channel mode, no probe at all, and blocking
//! mode with a probe on another thread.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use microspan_serial::rtt::{Mode, RttDrain};
use rtt_target::UpChannel;

/// The SEGGER RTT channel descriptor, as laid out in target memory (`rtt_target::rtt::RttChannel`
/// is `#[repr(C)]` with exactly these fields: the layout is fixed by the RTT protocol, since
/// probes read it).
#[repr(C)]
struct ChannelDescriptor {
    name: *const u8,
    buffer: *mut u8,
    size: usize,
    write: AtomicUsize,
    read: AtomicUsize,
    flags: AtomicUsize,
}

/// The probe's view of one up channel.
#[derive(Clone, Copy)]
struct Probe(&'static ChannelDescriptor);

// SAFETY: the descriptor is leaked (lives forever) and shared like target RAM shared with a probe:
// the probe only reads the buffer between `read` and `write` and only stores `read` and `flags`,
// which are atomics, exactly as the RTT protocol divides ownership.
unsafe impl Send for Probe {}

impl Probe {
    /// Reads up to `max` bytes like a debugger: from `read` to `write`, then advances `read`.
    fn read(&self, max: usize, out: &mut Vec<u8>) -> usize {
        let c = self.0;
        let write = c.write.load(Ordering::SeqCst);
        let mut read = c.read.load(Ordering::SeqCst);
        let mut n = 0;
        while read != write && n < max {
            // SAFETY: `read < size` and the bytes between `read` and `write` were committed by the
            // writer (its `write` store is SeqCst, after the copy), which will not touch them until
            // `read` passes them.
            out.push(unsafe { *c.buffer.add(read) });
            read = (read + 1) % c.size;
            n += 1;
        }
        c.read.store(read, Ordering::SeqCst);
        n
    }
    fn set_mode_bits(&self, mode: usize) {
        let f = self.0.flags.load(Ordering::SeqCst);
        self.0.flags.store((f & !3) | mode, Ordering::SeqCst);
    }
    fn mode_bits(&self) -> usize {
        self.0.flags.load(Ordering::SeqCst) & 3
    }
}

/// An up channel with a `size`-byte buffer, in rtt-target's initial mode (`NoBlockSkip`).
fn channel(size: usize) -> (UpChannel, Probe) {
    let buffer: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
    let desc: &'static mut ChannelDescriptor = Box::leak(Box::new(ChannelDescriptor {
        name: c"microspan".as_ptr().cast(),
        buffer: buffer.as_mut_ptr(),
        size,
        write: AtomicUsize::new(0),
        read: AtomicUsize::new(0),
        flags: AtomicUsize::new(0),
    }));
    let ptr: *mut ChannelDescriptor = desc;
    // SAFETY: `ptr` points to a leaked, initialised descriptor with the `RttChannel` layout and a
    // leaked buffer of `size` bytes; the only other accessor is the `Probe`, which follows the RTT
    // protocol (reads committed bytes, stores `read`).
    let up = unsafe { UpChannel::new(ptr.cast()) };
    // SAFETY: as above; the probe keeps a shared reference to the leaked descriptor.
    (up, Probe(unsafe { &*ptr }))
}

#[test]
fn small_buffer_and_slow_probe_deliver_everything_once() {
    let fx = fixture::<65536>();
    // Smaller than one frame: every frame is trimmed and wraps.
    let (up, probe) = channel(61);
    let mut rtt = RttDrain::new(fx.drain(), up);
    assert_eq!(probe.mode_bits(), 1, "NoBlockTrim");
    let mut rng = Rng::new(41);
    let mut out = Vec::new();
    drive(
        &fx,
        &mut rtt,
        &mut rng,
        |rtt, rng| {
            rtt.pump();
            let max = rng.range(0, 40);
            probe.read(max, &mut out);
        },
        |rtt| rtt.has_pending(),
    );
    while probe.read(usize::MAX, &mut out) > 0 {}
    let c = rtt.counters();
    assert!(c.refused > 100);
    assert_eq!(c.bytes, out.len() as u64);
    assert_eq!(rtt.mode_restored(), 0);
    assert!(rtt.host_caught_up());
    let d = assert_exact(&out, STEPS);
    assert_eq!(c.frames as usize, d.frames.len());
}

#[test]
fn a_probe_switching_to_skip_mode_is_overridden() {
    let fx = fixture::<65536>();
    let (up, probe) = channel(100);
    let mut rtt = RttDrain::new(fx.drain(), up);
    let mut rng = Rng::new(42);
    let mut out = Vec::new();
    drive(
        &fx,
        &mut rtt,
        &mut rng,
        |rtt, rng| {
            if rng.chance(20) {
                probe.set_mode_bits(0); // NoBlockSkip, rtt-target's and many tools' default
            }
            rtt.pump();
            probe.read(rng.range(0, 60), &mut out);
        },
        |rtt| rtt.has_pending(),
    );
    while probe.read(usize::MAX, &mut out) > 0 {}
    assert!(rtt.mode_restored() > 10);
    assert_eq!(probe.mode_bits(), 1);
    assert_exact(&out, STEPS);
}

#[test]
fn a_mode_switched_during_a_write_restarts_the_frame() {
    // A probe thread switches the channel to NoBlockSkip at any moment, also between the drain's
    // mode check and rtt-target's own read of the mode inside `write`. A Skip write that wraps
    // and then runs out of room reports its first part written but never commits it: the drain,
    // seeing the mode changed after the write, sends a delimiter and the whole frame again.
    // Whole runs of the workload, each checked exactly, for about half a second.
    let started = std::time::Instant::now();
    let (mut runs, mut restored) = (0u32, 0u32);
    // At least half a second; on a loaded machine (the flipper thread starved), on until it has
    // switched the mode a few hundred times or for 5 s.
    let ms = |n| std::time::Duration::from_millis(n);
    while runs < 3
        || started.elapsed() < ms(500)
        || (restored < 300 && started.elapsed() < ms(5000))
    {
        runs += 1;
        let fx = fixture::<65536>();
        let (up, probe) = channel(61);
        let mut rtt = RttDrain::new(fx.drain(), up);
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(44 + runs as u64);
                while !stop.load(Ordering::Relaxed) {
                    probe.set_mode_bits(0);
                    for _ in 0..rng.range(0, 500) {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        while probe.mode_bits() != 0 {
            std::hint::spin_loop(); // the flipper is running
        }
        let mut rng = Rng::new(45 + runs as u64);
        let mut out = Vec::new();
        drive(
            &fx,
            &mut rtt,
            &mut rng,
            |rtt, rng| {
                rtt.pump();
                probe.read(rng.range(0, 40), &mut out);
            },
            |rtt| rtt.has_pending(),
        );
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        while rtt.has_pending() || probe.read(usize::MAX, &mut out) > 0 {
            rtt.pump();
        }
        restored += rtt.mode_restored();
        assert_exact_after_restarts(&out, STEPS, rtt.mode_restored());
    }
    // Each run restores the mode at least once (the flipper switched it before the first
    // pump); more shows the flipper raced the writes.
    assert!(restored > runs, "{restored} in {runs} runs");
}

#[test]
fn no_probe_never_blocks() {
    let fx = fixture::<65536>();
    let (up, probe) = channel(256);
    let mut rtt = RttDrain::new(fx.drain(), up);
    for i in 0..50 {
        workload(&fx, i);
        rtt.pump();
    }
    // The buffer is full (one byte is always kept free), the rest waits in the drain and ring.
    assert_eq!(rtt.counters().bytes, 255);
    assert!(rtt.has_pending() && rtt.counters().refused >= 49);
    assert_eq!(fx.tracer.dropped(), 0);
    // A probe attaches later and everything still arrives.
    let mut out = Vec::new();
    while rtt.has_pending() {
        probe.read(usize::MAX, &mut out);
        rtt.pump();
    }
    probe.read(usize::MAX, &mut out);
    let d = decode(&out);
    assert!(d.frame_errors.is_empty() && d.trailing == 0);
    assert_eq!(d.records, reference(50).records);
}

#[test]
fn blocking_mode_waits_for_the_probe() {
    let fx = fixture::<65536>();
    let (up, probe) = channel(32);
    let mut rtt = RttDrain::blocking(fx.drain(), up);
    assert_eq!(probe.mode_bits(), 2, "BlockIfFull");
    assert_eq!(rtt.mode(), Mode::Blocking);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            loop {
                let done = stop.load(Ordering::SeqCst);
                if probe.read(7, &mut out) == 0 {
                    if done {
                        return out;
                    }
                    std::thread::yield_now();
                }
            }
        })
    };
    for i in 0..STEPS {
        workload(&fx, i);
        rtt.pump();
        assert!(
            !rtt.has_pending(),
            "a blocking pump returns only when all is written"
        );
    }
    while !rtt.host_caught_up() {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    let out = reader.join().unwrap();
    assert_eq!(rtt.counters().refused, 0);
    assert_exact(&out, STEPS);
    rtt.set_mode(Mode::NonBlocking);
    let (_, up) = rtt.into_parts();
    assert!(up.mode() == rtt_target::ChannelMode::NoBlockTrim);
}
