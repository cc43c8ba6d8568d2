//! Boots the smoke firmware of `examples/firmware/smoke` on both emulated boards and checks the
//! board layer the end-to-end tests stand on: exact UART bytes, a timer clock that advances by
//! the right amount, interrupts, the exit code, panics, and deterministic instruction counts.

use microspan_tests::insn;
use microspan_tests::qemu::{self, Board, RunOptions};

/// The bytes the smoke firmware sends before its report line: a header, every byte value, then
/// 0x00 0x0A 0xFF `\n` through the non-blocking writer.
fn expected_prefix() -> Vec<u8> {
    let mut v = b"microspan-smoke\n".to_vec();
    v.extend(0..=255u8);
    v.extend([0x00, 0x0A, 0xFF, b'\n']);
    v
}

fn build(board: Board, bin: &str) -> std::path::PathBuf {
    qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    qemu::build_firmware(board, "microspan-smoke", bin, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `report key=value ...` into pairs.
fn report(uart: &[u8]) -> Vec<(String, String)> {
    let rest = &uart[expected_prefix().len()..];
    let text = String::from_utf8_lossy(rest);
    let line = text.lines().next().unwrap_or_default();
    let fields = line
        .strip_prefix("report ")
        .unwrap_or_else(|| panic!("no report line: {text}"));
    fields
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(r: &[(String, String)], key: &str) -> u64 {
    r.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("report has no {key}"))
        .1
        .parse()
        .unwrap()
}

fn smoke(board: Board) {
    let elf = build(board, "smoke");
    let out = qemu::run_firmware(board, &elf, &RunOptions::default()).unwrap();
    out.assert_exit(0);
    let prefix = expected_prefix();
    assert_eq!(
        &out.uart[..prefix.len().min(out.uart.len())],
        &prefix[..],
        "UART bytes on {board}"
    );
    assert!(
        out.uart.ends_with(b"\nOK\n"),
        "{}",
        String::from_utf8_lossy(&out.uart[prefix.len()..])
    );

    let r = report(&out.uart);
    let board_name = &r.iter().find(|(k, _)| k == "board").unwrap().1;
    assert_eq!(board_name, board.name());
    let tps = field(&r, "tps");
    assert_eq!(tps, board.ticks_per_second() as u64);
    // 10 ms delay: at least 10 ms, at most 10.1 ms under -icount.
    let (delay, elapsed) = (field(&r, "delay"), field(&r, "elapsed"));
    assert_eq!(delay, tps / 100);
    assert!(
        elapsed >= delay && elapsed <= delay + tps / 10_000,
        "delay {delay} took {elapsed}"
    );
    // 1.5 s across many 24-bit SysTick wraps on the lm3s6965.
    let (long, long_elapsed) = (field(&r, "long"), field(&r, "long_elapsed"));
    assert!(
        long_elapsed >= long && long_elapsed <= long + tps / 10_000,
        "{long} took {long_elapsed}"
    );
    assert!(field(&r, "spin") > 0);
    assert_eq!(
        field(&r, "periodic"),
        10,
        "1 ms periodic interrupt over 10.5 ms"
    );
    assert_eq!(field(&r, "soft"), 1);
    assert_eq!(field(&r, "nested"), 132, "Soft1 must preempt Soft0 at once");

    // A second run sends the same bytes, except for tick readings: -icount makes QEMU's timing
    // reproducible in the common case, not bit for bit under any host load (a timer interrupt can
    // land a few instructions off), so those are compared within a tick or two.
    let again = qemu::run_firmware(board, &elf, &RunOptions::default()).unwrap();
    again.assert_exit(0);
    assert_same_run(&out.uart, &again.uart, tps, &format!("two runs on {board}"));

    // The same bytes arrive over a TCP chardev, streamed.
    let mut chunks = 0;
    let streamed =
        qemu::run_firmware_streaming(board, &elf, &RunOptions::default(), |_| chunks += 1).unwrap();
    streamed.assert_exit(0);
    assert!(chunks > 0);
    assert_same_run(
        &out.uart,
        &streamed.uart,
        tps,
        &format!("streamed UART on {board}"),
    );
}

/// Report fields read from the board's tick counter: they may move by a few ticks between runs.
const TIMED: [&str; 3] = ["elapsed", "long_elapsed", "spin"];

/// Asserts that `b` is the UART output of the same run as `a`: the same bytes before and after
/// the report line, the same report keys in the same order, equal untimed values and timed values
/// (`TIMED`) within 0.01 % of a second's ticks of each other.
fn assert_same_run(a: &[u8], b: &[u8], tps: u64, what: &str) {
    let prefix = expected_prefix().len();
    assert!(b.len() > prefix, "{what}: output too short");
    assert_eq!(a[..prefix], b[..prefix], "{what}: UART bytes differ");
    let tail = |u: &[u8]| {
        let text = String::from_utf8_lossy(&u[prefix..]).into_owned();
        text.split_once('\n').map(|(_, rest)| rest.to_string())
    };
    assert_eq!(tail(a), tail(b), "{what}: lines after the report differ");
    let (ra, rb) = (report(a), report(b));
    let keys = |r: &[(String, String)]| r.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&ra), keys(&rb), "{what}: report keys differ");
    for ((key, va), (_, vb)) in ra.iter().zip(&rb) {
        if TIMED.contains(&key.as_str()) {
            let (x, y) = (field(&ra, key), field(&rb, key));
            assert!(
                x.abs_diff(y) <= tps / 10_000,
                "{what}: {key}={x} and {key}={y} are more than a few ticks apart"
            );
        } else {
            assert_eq!(va, vb, "{what}: report field {key} differs");
        }
    }
}

#[test]
fn smoke_lm3s6965() {
    smoke(Board::Lm3s6965);
}

#[test]
fn smoke_microbit() {
    smoke(Board::Microbit);
}

fn panics_exit_nonzero(board: Board) {
    let elf = build(board, "panic");
    let out = qemu::run_firmware(board, &elf, &RunOptions::default()).unwrap();
    assert!(!out.timed_out, "a panicking firmware must exit, not hang");
    assert_eq!(out.exit_code, Some(101), "console: {}", out.console);
    assert_eq!(out.uart, b"about to panic\n");
    assert!(
        out.console.contains("deliberate panic, limit=3"),
        "console: {}",
        out.console
    );
}

#[test]
fn panic_exits_101_lm3s6965() {
    panics_exit_nonzero(Board::Lm3s6965);
}

#[test]
fn panic_exits_101_microbit() {
    panics_exit_nonzero(Board::Microbit);
}

fn counts_are_deterministic(board: Board) {
    let elf = build(board, "smoke");
    let mut args = board.qemu_args(true);
    args.extend(["-serial".to_string(), "null".to_string()]);
    let main = insn::symbol_range(&elf, "smoke::__cortex_m_rt_main").unwrap();
    let clock = insn::symbol_range(&elf, "read_clock").unwrap();
    let first = insn::count_instructions_in(&elf, &args, &[main, clock]).unwrap();
    let second = insn::count_instructions_in(&elf, &args, &[main, clock]).unwrap();
    assert_eq!(
        first, second,
        "instruction counts differ between runs on {board}"
    );
    assert!(first.total > 1000 && first.ranges[0] > 0 && first.ranges[0] < first.total);
    let total = insn::count_instructions(&elf, &args, None).unwrap();
    assert_eq!(total, first.total);
    // read_clock runs exactly 2000 times in the smoke firmware, the same instructions each time
    // (the lm3s6965's wrap branch aside, which a 2000-read burst crosses at most once).
    let per_read = first.ranges[1] as f64 / 2000.0;
    assert!(
        (2.0..40.0).contains(&per_read),
        "{per_read} instructions per clock read"
    );
    println!(
        "{board}: smoke total {} instructions, {} in main's own code, {per_read:.2} per clock read",
        first.total, first.ranges[0]
    );
}

#[test]
fn insn_count_lm3s6965() {
    counts_are_deterministic(Board::Lm3s6965);
}

#[test]
fn insn_count_microbit() {
    counts_are_deterministic(Board::Microbit);
}

#[test]
fn timeout_kills_a_hung_firmware() {
    // The smoke firmware with a 1 ms budget cannot finish: the run must come back promptly,
    // marked timed out, with no exit code.
    let board = Board::Microbit;
    let elf = build(board, "smoke");
    let opts = RunOptions {
        timeout: std::time::Duration::from_millis(1),
        icount: false,
        ..Default::default()
    };
    let out = qemu::run_firmware(board, &elf, &opts).unwrap();
    if !out.timed_out {
        // QEMU may be fast enough to finish within the poll interval; then it must have passed.
        out.assert_exit(0);
    } else {
        assert_eq!(out.exit_code, None);
        assert!(out.elapsed < std::time::Duration::from_secs(5));
    }
}

fn faults_exit_nonzero(board: Board) {
    let elf = build(board, "fault");
    let out = qemu::run_firmware(board, &elf, &RunOptions::default()).unwrap();
    assert!(!out.timed_out, "a faulting firmware must exit, not hang");
    assert_eq!(out.exit_code, Some(102), "console: {}", out.console);
    assert_eq!(out.uart, b"about to fault\n");
    assert!(
        out.console.contains("firmware HardFault"),
        "console: {}",
        out.console
    );
}

#[test]
fn hardfault_exits_102_lm3s6965() {
    faults_exit_nonzero(Board::Lm3s6965);
}

#[test]
fn hardfault_exits_102_microbit() {
    faults_exit_nonzero(Board::Microbit);
}
