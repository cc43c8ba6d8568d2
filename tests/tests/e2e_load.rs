//! Exact loss accounting under load in QEMU, for both ring policies: the `load` firmware records
//! spans from a fast periodic timer interrupt while its main loop records too, into a 256-word ring
//! that a slow drain (one frame every 32 iterations) cannot keep empty. The firmware prints the
//! records it attempted and the ring's loss counter; the test decodes the UART stream and checks
//! produced == delivered + lost, exactly, and that the stream's last `Drops` record carries the
//! device's count.

use microspan::wire::decode::{Accumulator, Record, RecordDecoder};
use microspan_tests::qemu::{self, Board, RunOptions};

/// `key=value` from the firmware's report line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// (span records delivered, last Drops value, frames, sequence gaps, bad frames).
fn count(stream: &[u8]) -> (u64, u64, u64, u64, u64) {
    let mut acc: Box<Accumulator<4096>> = Box::new(Accumulator::new());
    let (mut delivered, mut drops, mut frames, mut gaps, mut bad) = (0, 0, 0, 0, 0);
    let mut last_seq: Option<u16> = None;
    let mut input = stream;
    while !input.is_empty() {
        let (frame, rest) = acc.feed(input);
        input = rest;
        match frame {
            None => {}
            Some(Err(_)) => bad += 1,
            Some(Ok(frame)) => {
                frames += 1;
                if let Some(l) = last_seq {
                    gaps += frame.seq.wrapping_sub(l).wrapping_sub(1) as u64;
                }
                last_seq = Some(frame.seq);
                for rec in RecordDecoder::new(&frame) {
                    match rec.unwrap_or_else(|e| panic!("record error {e:?}")) {
                        Record::Start(_)
                        | Record::End { .. }
                        | Record::Tag { .. }
                        | Record::Log { .. }
                        | Record::Baggage { .. }
                        | Record::Reference { .. } => delivered += 1,
                        Record::Drops { total } => drops = total as u64,
                        _ => {}
                    }
                }
            }
        }
    }
    (delivered, drops, frames, gaps, bad)
}

fn run(overwrite: bool) {
    qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    let board = Board::Lm3s6965;
    let features: &[&str] = if overwrite { &["overwrite"] } else { &[] };
    let elf = qemu::build_firmware(board, "microspan-reliability", "load", features)
        .unwrap_or_else(|e| panic!("{e}"));
    let out =
        qemu::run_firmware(board, &elf, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    out.assert_exit(0);
    let line = out
        .console
        .lines()
        .find(|l| l.starts_with("microspan-load:"))
        .unwrap_or_else(|| panic!("no report line:\n{}", out.console));
    let produced = field(line, "produced");
    let lost = field(line, "lost");
    let evicted = field(line, "evicted");
    let irq = field(line, "irq");
    let (delivered, wire_drops, frames, gaps, bad) = count(&out.uart);
    eprintln!(
        "{line}\nhost: delivered={delivered} wire_drops={wire_drops} frames={frames} ({} bytes)",
        out.uart.len()
    );
    assert_eq!((gaps, bad), (0, 0), "a clean link");
    assert!(irq > 0, "the interrupt recorded");
    assert!(
        lost > 0,
        "the ring must overflow for this test to mean anything"
    );
    assert_eq!(
        produced,
        delivered + lost,
        "produced == delivered + lost, exactly"
    );
    assert_eq!(
        wire_drops, lost,
        "the stream's last Drops record carries the device's count"
    );
    if overwrite {
        assert!(evicted > 0 && evicted <= lost, "{line}");
    } else {
        assert_eq!(evicted, 0);
    }
}

#[test]
fn drop_new_ring_under_interrupt_load() {
    run(false);
}

#[test]
fn flight_recorder_ring_under_interrupt_load() {
    run(true);
}
