//! Post-mortem in QEMU: a firmware panics inside nested spans (flight-recorder ring, no drain), and
//! one takes a HardFault in an interrupt handler. Their crash handlers mark the session and halt;
//! the test reads RAM through QEMU's GDB stub (and, from that, a RAM dump file) and checks that
//! `microspan_decoder::postmortem` shows the last events and every span open at the crash, marked
//! as such, in the tree and in the Jaeger JSON export.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use microspan_decoder::assemble::Options;
use microspan_decoder::model::Span;
use microspan_decoder::postmortem::{self, Memory, Report, Source};
use microspan_decoder::rtt_gdb::GdbMemory;
use microspan_tests::qemu::{self, Board, RunOptions};
use microspan_tests::reference;

const RAM: (u32, u32) = (0x2000_0000, 64 * 1024);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Runs `bin` (built with `halt-on-crash`) with a GDB stub, waits for the crash mark, and reads it
/// live and from a RAM dump taken through the same stub. Returns both reports.
fn crash_and_read(bin: &str) -> (Report, Report) {
    qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    let board = Board::Lm3s6965;
    let elf = qemu::build_firmware(board, "microspan-reliability", bin, &["halt-on-crash"])
        .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let opts = RunOptions {
        extra_args: vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}")],
        ..RunOptions::default()
    };
    let (out, reports) = qemu::run_firmware_with(board, &elf, &opts, || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "the firmware never marked a crash"
            );
            let Ok(gdb) = GdbMemory::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(2))
            else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let mem = Memory::new(&elf, Source::Gdb(gdb)).unwrap_or_else(|e| panic!("{e}"));
            match postmortem::read(&mem, RAM, Options::default()) {
                Ok(live) if live.image.crash.is_some() => {
                    let gdb = mem.gdb().expect("gdb source");
                    let ram = gdb.read(RAM.0, RAM.1 as usize).expect("reading RAM");
                    gdb.kill();
                    let dir = std::env::temp_dir()
                        .join(format!("microspan-pm-{}-{bin}", std::process::id()));
                    std::fs::create_dir_all(&dir).unwrap();
                    let dump = dir.join("ram.bin");
                    std::fs::write(&dump, &ram).unwrap();
                    let bytes = std::fs::read(&dump).unwrap();
                    let mem = Memory::new(&elf, Source::Dump { bytes, base: RAM.0 })
                        .unwrap_or_else(|e| panic!("{e}"));
                    let from_dump = postmortem::read(&mem, RAM, Options::default())
                        .unwrap_or_else(|e| panic!("dump: {e}"));
                    let _ = std::fs::remove_dir_all(&dir);
                    return (live, from_dump);
                }
                _ => {
                    // Not crashed yet (or not registered yet): let it run on.
                    mem.gdb().expect("gdb source").detach();
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // QEMU ended through the stub's kill right after the crash mark, not at the timeout.
    assert!(!out.timed_out, "console:\n{}", out.console);
    reports
}

fn spans(r: &Report) -> Vec<&Span> {
    r.batches.iter().flat_map(|b| &b.spans).collect()
}

fn span<'r>(r: &'r Report, name: &str) -> &'r Span {
    spans(r)
        .into_iter()
        .rev()
        .find(|s| s.operation == name)
        .unwrap_or_else(|| panic!("no span {name}:\n{}", reference::tree_text(&r.batches)))
}

fn assert_open_at_crash(r: &Report, name: &str, reason: &str) {
    let s = span(r, name);
    assert!(s.incomplete, "{name} must be incomplete");
    let w = format!("incomplete: open at crash: {reason}");
    assert!(
        s.warnings.iter().any(|x| x.starts_with(&w)),
        "{name}: warnings {:?} lack {w:?}",
        s.warnings
    );
}

#[test]
fn panic_inside_nested_spans() {
    let (live, dump) = crash_and_read("crash_panic");
    for r in [&live, &dump] {
        let reason = r.image.crash.as_deref().unwrap();
        assert!(
            reason.starts_with("panicked at reliability/src/bin/crash_panic.rs:")
                && reason.ends_with("sensor value out of range: 7000"),
            "{reason}"
        );
        assert!(r.image.overwrite, "crash_panic uses a flight recorder");
        assert!(
            r.image.dropped > 0,
            "the old history was evicted, and counted"
        );
        for name in ["handle-request", "Foo", "Bar"] {
            assert_open_at_crash(r, name, "panicked at");
        }
        let bar = span(r, "Bar");
        assert_eq!(bar.logs.len(), 1, "Bar's last event");
        assert_eq!(
            bar.references.first().map(|x| x.span_id),
            Some(span(r, "Foo").span_id)
        );
        // The last events before the crash: the newest `poll` spans, complete.
        let polls: Vec<_> = spans(r)
            .into_iter()
            .filter(|s| s.operation == "poll")
            .collect();
        assert!(!polls.is_empty() && polls.iter().all(|s| !s.incomplete));
        assert!(
            polls
                .iter()
                .any(|s| format!("{:?}", s.tags).contains("199")),
            "the newest poll"
        );
        assert_eq!(r.unread_words, 0);
        let json = reference::jaeger_json(&r.batches);
        assert!(
            json.contains("open at crash: panicked at"),
            "Jaeger JSON lacks the warning"
        );
    }
    assert_eq!(
        reference::tree_text(&live.batches).lines().count(),
        reference::tree_text(&dump.batches).lines().count(),
        "live and dump readings agree"
    );
    eprintln!("{}", postmortem::summary(&live));
}

#[test]
fn hardfault_in_an_interrupt_handler() {
    let (live, dump) = crash_and_read("crash_irq");
    for r in [&live, &dump] {
        let reason = r.image.crash.as_deref().unwrap();
        assert!(reason.starts_with("HardFault at pc=0x"), "{reason}");
        for name in ["main-loop", "process", "irq:soft0", "decode-packet"] {
            assert_open_at_crash(r, name, "HardFault at pc=");
        }
        assert_eq!(span(r, "decode-packet").logs.len(), 1);
        let idle = spans(r)
            .into_iter()
            .filter(|s| s.operation == "idle")
            .count();
        assert_eq!(
            idle, 3,
            "finished spans before the crash are shown complete"
        );
        assert!(spans(r)
            .iter()
            .filter(|s| s.operation == "idle")
            .all(|s| !s.incomplete));
        assert_eq!(r.image.dropped, 0);
    }
    eprintln!("{}", postmortem::summary(&live));
}
