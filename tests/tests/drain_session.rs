//! A drain's stream as the host decoder (`microspan-decoder`) reads it, in the situations a user
//! review found wrong: bytes on a shared UART before the first frame, a service name cut to fit a
//! small frame, and a boot id set after the drain had sent frames. No QEMU: the device is a
//! tracer and a drain on the host.

use std::sync::atomic::{AtomicU32, Ordering};

use microspan::{Clock, Drain, Ring, Session, Tracer};
use microspan_tests::reference::{decode, Decoded};

/// A 1 MHz clock advanced by hand.
struct ManualClock(AtomicU32);

impl Clock for ManualClock {
    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    fn ticks_per_second(&self) -> u32 {
        1_000_000
    }
}

/// A tracer of `session` over a ring and a clock of its own (leaked, as a device's statics).
fn device(session: Session) -> (&'static Tracer<'static>, &'static ManualClock) {
    let ring: &'static Ring<4096> = Box::leak(Box::new(Ring::new()));
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock(AtomicU32::new(1_000))));
    let session: &'static Session = Box::leak(Box::new(session));
    (
        Box::leak(Box::new(Tracer::new(ring, clock, session))),
        clock,
    )
}

/// Records `n` traces of a root and a child, named `{prefix}-root-i` and `{prefix}-child-i`.
fn record(tracer: &Tracer<'static>, clock: &ManualClock, prefix: &str, n: usize) {
    for i in 0..n {
        let root = tracer.root(leak(format!("{prefix}-root-{i}")));
        clock.0.fetch_add(10, Ordering::Relaxed);
        let child = root.child(leak(format!("{prefix}-child-{i}")));
        clock.0.fetch_add(10, Ordering::Relaxed);
        drop(child);
        drop(root);
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Everything the drain has to send, through a link that takes it all.
fn drain_all<const F: usize>(drain: &mut Drain<'_, F>) -> Vec<u8> {
    let mut out = Vec::new();
    drain.drain_with(|b| {
        out.extend_from_slice(b);
        b.len()
    });
    out
}

fn names(d: &Decoded) -> Vec<String> {
    let mut n: Vec<String> = d.spans().iter().map(|s| s.operation.to_string()).collect();
    n.sort();
    n
}

#[test]
fn bytes_before_the_first_frame_lose_no_span() {
    for noise in [&b"Booting\r\n"[..], &[0xFF], &b"\xffBooting v0.1\r\n"[..]] {
        let (tracer, clock) = device(Session::new("boot-noise").boot_id(7));
        let mut drain: Drain<'_, 256> = Drain::new(tracer).unwrap();
        record(tracer, clock, "a", 5);
        let stream = drain_all(&mut drain);
        assert_eq!(
            stream[0], 0,
            "the first frame follows a delimiter of its own"
        );
        let clean = decode(&stream).unwrap();
        assert_eq!(clean.spans().len(), 10);
        let noisy = decode(&[noise, &stream[..]].concat()).unwrap();
        assert_eq!(names(&noisy), names(&clean), "noise {noise:?}");
        assert_eq!(noisy.stats.spans.resets, 0);
        assert_eq!(noisy.stats.spans.incomplete_spans, 0);
        // Frame 0 follows the noise: it is skipped as such, not counted as a cut frame.
        assert_eq!(
            noisy.stats.noise_before_first_frame,
            noise.len() as u64,
            "noise {noise:?}"
        );
        assert!(!noisy.stats.began_mid_frame && !noisy.stats.anything_wrong());
        assert!(noisy
            .batches
            .iter()
            .all(|b| &*b.process.service_name == "boot-noise"));
    }
}

#[test]
fn a_service_name_cut_to_fit_a_small_frame_shows_it() {
    // A random boot id and a wall clock leave a 64-byte frame too little room for the service
    // name and the firmware version: they arrive cut, marked, never as names that look whole.
    let (tracer, clock) = device(
        Session::new("myfw-sensor-node")
            .device_id(42)
            .firmware_version("1.4.2-rc.1+build.20261207"),
    );
    tracer.set_boot_id(0x9e37_79b9);
    let mut drain: Drain<'_, 64> = Drain::new(tracer).unwrap();
    drain.set_wall_clock(1_765_000_000_000_000_000);
    record(tracer, clock, "s", 2);
    let d = decode(&drain_all(&mut drain)).unwrap();
    assert_eq!(d.spans().len(), 4);
    let process = &d.batches[0].process;
    let service = process.service_name.to_string();
    let firmware = process
        .tags
        .iter()
        .find(|t| t.key.contains("firmware"))
        .map(|t| format!("{:?}", t.value))
        .expect("a firmware version tag");
    let kept = service
        .strip_suffix('…')
        .unwrap_or_else(|| panic!("{service:?}: no mark"));
    assert!(
        !kept.is_empty() && "myfw-sensor-node".starts_with(kept),
        "{service:?}"
    );
    assert!(firmware.contains('…'), "{firmware}");
}

#[test]
fn a_boot_id_set_after_frames_went_out_names_the_spans_after_it() {
    let (tracer, clock) = device(Session::new("late-boot-id").boot_id(1));
    let mut drain: Drain<'_, 256> = Drain::new(tracer).unwrap();
    record(tracer, clock, "before", 2);
    let mut stream = drain_all(&mut drain);
    tracer.set_boot_id(0xB007);
    let after = tracer.root("after");
    // The id the device hands out in a context (a traceparent) now.
    let injected = after.context().span_id;
    clock.0.fetch_add(10, Ordering::Relaxed);
    drop(after);
    stream.extend(drain_all(&mut drain));
    assert!(drain.stats().frames < 64, "no epoch boundary in between");
    let d = decode(&stream).unwrap();
    let after = d.span("after").unwrap();
    assert_eq!(
        after.span_id, injected.0,
        "the id the device handed out is in Jaeger"
    );
    let device = tracer.session().device_id;
    let prefix = |boot| u64::from(microspan::SpanId::boot_prefix(device, boot));
    assert_eq!(after.span_id >> 32, prefix(0xB007));
    assert_eq!(d.span("before-root-0").unwrap().span_id >> 32, prefix(1));
    assert_eq!(d.stats.spans.incomplete_spans, 0);
    assert_eq!(d.stats.spans.resets, 1, "the decoder saw a new boot");
}
