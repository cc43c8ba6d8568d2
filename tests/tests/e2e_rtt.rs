//! The RTT variant of the reference firmware (Cortex-M3), read without a probe: QEMU's GDB stub
//! and the decoder's `rtt_gdb` reader (halt, read the up-buffer, advance RdOff, continue).

use microspan_decoder::rtt_gdb::{Config, RttGdbError, RttGdbReader};
use microspan_tests::qemu::{self, Board, RunOptions};
use microspan_tests::reference::{self, Variant};
use microspan_tests::snapshot::assert_snapshot;

#[test]
fn cortex_m3_over_rtt_through_the_gdb_stub() {
    qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    let board = Board::Lm3s6965;
    let elf = reference::build(board, Variant::Rtt).unwrap_or_else(|e| panic!("{e}"));
    let (bytes, out) =
        reference::run_rtt(board, &elf, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    out.assert_exit(0);
    assert!(
        out.uart.is_empty(),
        "the RTT firmware sends nothing on the UART"
    );
    let report = reference::device_report(&out.console)
        .unwrap_or_else(|| panic!("no device report on the console:\n{}", out.console));
    let decoded = reference::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    if let Err(errors) = reference::check_reference_trace(&decoded, board, &report) {
        panic!(
            "RTT: the decoded trace is wrong:\n- {}\n--- tree ---\n{}",
            errors.join("\n- "),
            reference::tree_text(&decoded.batches)
        );
    }
    assert_snapshot(
        "lm3s6965.tree.txt",
        &reference::tree_snapshot(&decoded.batches),
    );
}

#[test]
fn a_firmware_without_rtt_gets_an_actionable_error() {
    qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    let board = Board::Lm3s6965;
    // The UART firmware has no `_SEGGER_RTT`.
    let elf = reference::build(board, Variant::Uart).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = Config::new("127.0.0.1:1");
    cfg.elf = Some(elf.clone());
    let err = RttGdbReader::connect(cfg)
        .err()
        .expect("no control block symbol");
    assert!(matches!(err, RttGdbError::Elf { .. }), "{err}");
    assert!(err.to_string().contains("_SEGGER_RTT"), "{err}");

    // Scanning RAM of a firmware that never calls rtt_init! times out with the fix named.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = RunOptions::default();
    // Started halted: the firmware never runs far (the reader lets it run while looking, but
    // the run is cut by QEMU's exit or the reader's deadline).
    opts.extra_args.extend([
        "-gdb".to_string(),
        format!("tcp:127.0.0.1:{port}"),
        "-S".to_string(),
    ]);
    let (_, result) = qemu::run_firmware_with(board, &elf, &opts, || {
        let mut cfg = Config::new(format!("127.0.0.1:{port}"));
        cfg.locate_timeout = std::time::Duration::from_millis(300);
        let start = std::time::Instant::now();
        loop {
            match RttGdbReader::connect(cfg.clone()) {
                Err(RttGdbError::Connect { .. }) if start.elapsed().as_secs() < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => return other.err().map(|e| e.to_string()),
            }
        }
    })
    .unwrap();
    let msg = result.expect("no control block in a firmware without RTT");
    assert!(
        msg.contains("rtt_init!") || msg.contains("exited before it initialised RTT"),
        "{msg}"
    );
}
