//! Budgets of the deterministic figures: instructions per operation on the emulated Cortex-M3 and
//! Cortex-M0, bytes on the wire per child span, flash (in all and per call site), static RAM and
//! stack. Each budget is the figure as achieved when it was set plus a small margin, so a
//! regression fails CI; the target of issue 6 is printed beside it (a budget above its target is a
//! known miss, see BENCHMARKS.md). When a change improves a figure, lower its budget here in the
//! same commit.
//!
//! The same measurement code as the bench runner (`src/bench/mod.rs`); figures are exact under
//! QEMU `-icount`, identical run to run.
//! `cargo test -p microspan-tests --test budgets -- --nocapture` prints the table.

#[path = "../src/bench/mod.rs"]
mod measure;

use measure::{ops, workloads, Firmware};
use microspan_tests::qemu::Board;

/// (what, figure, budget, target of issue 6).
type Check = (String, f64, f64, Option<f64>);

/// Instruction budgets per board: (op, Cortex-M3, Cortex-M0, target).
const INSN_BUDGETS: &[(&str, f64, f64, Option<f64>)] = &[
    ("root", 129.0, 118.0, None),
    ("child0", 135.0, 136.0, Some(70.0)),
    // Cortex-M3: the cycle counter as clock; the micro:bit has none (its tick counter again).
    ("child0_cyc", 102.0, 130.0, Some(70.0)),
    ("child2", 285.0, 313.0, None),
    ("child2_start", 152.0, 151.0, None),
    ("tag", 68.0, 81.0, None),
    // Raised from (141, 182) for counting a lost span's log as dropped (the writer tells a lost
    // span from a recorded one): 140.6 / 183.7 when set.
    ("log3", 145.0, 188.0, None),
    // Cortex-M3 lowered from 260: 247.6 when set (the slice's log reshaped for its stack, see
    // STACK_BUDGET). Cortex-M0 raised from 356 for the same lost-span check as `log3`.
    ("log3_values", 253.0, 362.0, None),
    ("unsampled", 10.0, 13.0, Some(15.0)),
    ("unsampled_child", 6.0, 12.0, Some(15.0)),
    ("isr_root", 134.0, 121.0, None),
    // Raised from (322, 450): the tick extension's window leans forward (a quarter wrap behind,
    // three quarters ahead), which dates records across stalls, full rings and evictions: 323.5 /
    // 457.3 when set (309.6 / 427.5 with the old, symmetric window).
    ("drain17", 330.0, 465.0, Some(150.0)),
    // Measured since December 2026 (helper 62 saw a flight recorder's full-ring record path
    // keep a Cortex-M0 in a 40 µs timer interrupt for good): each record evicts the oldest
    // (`evict_oldest`, its busy flag and atomic zeroing, then the reservation again): 504 / 579
    // when set, about four times a root span in a ring with room.
    ("root_full_fr", 515.0, 590.0, None),
];

/// Bytes per child span (marginal), per board: (what, workload, Cortex-M3, Cortex-M0, target).
const WIRE_BUDGETS: &[(&str, u32, f64, f64, f64)] = &[
    (
        "bytes: child span, no tags",
        workloads::TAGS0,
        4.5,
        4.5,
        6.0,
    ),
    (
        "bytes: child span, 2 small integer tags",
        workloads::TAGS2,
        9.0,
        9.0,
        12.0,
    ),
];

/// Flash per call site (bytes; `measure::MICROSPAN_SITES`, by its function): (function,
/// Cortex-M3, Cortex-M0). A `set_tag` site takes the state check and a call (the record is
/// written out of line, one copy per value type); a budget caught here is a changed inlining
/// decision to weigh against the instruction counts above.
const SITE_BUDGETS: &[(&str, f64, f64)] = &[
    ("s_root", 124.0, 126.0),
    ("s_child0", 94.0, 78.0),
    // Raised from (214, 192): a `set_tag` site's check is "recorded or lost" (a lost span's
    // tags are counted as dropped, out of line), which the optimiser no longer folds away after
    // a start it saw fail: 234 / 204 B when set.
    ("s_child2", 240.0, 210.0),
    ("s_child2_start", 358.0, 304.0),
    ("s_tag", 32.0, 24.0),
    ("s_log3", 96.0, 84.0),
    ("s_unsampled", 124.0, 126.0),
];

/// Flash for tracing (bytes), static RAM besides the ring (bytes), worst record-call stack
/// (bytes): (Cortex-M3, Cortex-M0). Flash was raised from (11 920, 11 560) for the carried
/// baggage record, the drain's frame restart and pending drop report (the firmware's `while
/// has_pending()` flush loop now also checks the drop count) and session records that can no
/// longer stall a small frame: 11 932 / 11 580 B when set. Raised again from (11 990, 11 600) for
/// the drain's timekeeping on a stalled link (`Drain::keep_time`, 78 B, and the stall check in
/// `fill_buf`, about 24 B where a transport inlines it): 11 968 / 11 648 B when set. (The
/// post-mortem descriptor, 180 B, left both builds in the same change: it was in the baseline
/// too, so the difference did not count it before either.) Raised again from (12 030, 11 700)
/// for name definitions sent ahead of a record that does not fit an empty frame beside them
/// (`Drain::refuse`, 272 B on Cortex-M3: the reference example's three-field log was dropped by
/// a `Drain<64>` before): 12 224 / 11 944 B when set. Raised again from (12 290, 12 000) for a
/// static string longer than an empty frame, sent cut (`NAME_CUT`) instead of its record being
/// dropped (`define_cut`, 108 B, and its branch in `Drain::refuse` on Cortex-M3): 12 416 /
/// 12 132 B when set. Raised again from (12 480, 12 190) for keeping time through a stall
/// without moving past the records that wait in the ring (`TimeKeeper::now`, the watch and its
/// catch-up, 264 B on Cortex-M3 against the 76 B `keep_time` it replaces: before it, every
/// record from the oldest waiting one on was dated a wrap off), and a drain started just after
/// the clock wrapped that starts its extension a wrap later (`start_extension`: records made
/// before it were dated below zero, and the decoder refused their frames): 12 728 / 12 432 B
/// when set. Raised again from (12 790, 12 490) for the forward-leaning tick window (its
/// quarter kept beside the extension, and one more 64-bit step per record where it is taken,
/// inlined at each encoder): 12 800 / 12 648 B when set; the session record's time taken from
/// the later of the watch and the records' extension (`Watch::later`; a stall longer than the
/// window otherwise dated the HELLO a wrap early, which the decoder takes for a reset): 12 864 /
/// 12 716 B. Raised again from (12 920, 12 780) for the records' window leaning forward to the
/// clock after a stall (`TickExtender::reach_to`, 92 B on Cortex-M3, called when the drain reads
/// the clock, and the clock read once a frame while records wait through a stall): a record made
/// after a stall of more than three quarters of a wrap (50 s at 64 MHz), behind one that waited
/// through it, was dated a wrap early, below zero in the first wrap: 12 984 / 12 856 B when set.
/// Raised again from (13 040, 12 920) for a session record whose cut strings end in `…`
/// (`hello_str`, 114 / 104 B, and `write_hello` 60 / 72 B smaller: before, a service name cut
/// to fit a small frame showed in Jaeger as if whole), the boot id compared once a frame so a
/// late `Tracer::set_boot_id` starts an epoch (in `build`) and the delimiter before the first
/// frame (`FrameBuilder::finish` and the drain's set-up; before, a boot banner on a shared UART
/// cost the decoder frame 0 and its session record): 13 104 / 12 964 B when set.
/// Raised again from (13 160, 13 020) for span ids that mix the device id into the boot id
/// (`SpanId::boot_prefix`, wire version 3: two devices with the same boot id continuing one
/// backend trace made the same span ids), computed in line where a context is read, +48 / +80 B
/// (out of line it was +88 B and cost a root span 13 / 15 instructions): 13 152 / 13 044 B.
/// Raised again from (13 210, 13 100) for counting every record a span whose start was dropped
/// skips (its tags, logs, references, baggage and END: before, `Tracer::dropped` counted its
/// START only, about a third of what such spans lost): the START's slow path counts its END
/// (`reserve_start_slow`, 30 B), the tag and log writers tell a lost span from a recorded one
/// (+22 / +20 B), and the call sites check "recorded or lost" (+80 B in `footprint::traced::run`):
/// 13 344 / 13 172 B when set.
/// Raised again from (13 400, 13 230) for drop totals announced where the records went missing
/// (`drops_due`: a drop-new ring's total waits for the records the ring held when it was read;
/// before, the decoder warned the spans of the next frame, finished before the ring filled, and
/// not the span whose END it dropped), +104 / +88 B: 13 448 / 13 260 B when set. Then +80 / +52
/// B for an idle pass that finds a flight recorder's producer evicting (it follows the clock
/// with the watch, out of line: moving the records' time dated a waiting record a wrap late)
/// and hand-backs bounded by the ring's array: 13 528 / 13 312 B.
const FLASH_BUDGET: (f64, f64) = (13_580.0, 13_370.0);
const RAM_BUDGET: (f64, f64) = (62.0, 62.0);
/// Lowered from (134, 150), the figures of `log3_values` (128 / 144 B), to the target: its
/// `Span::record_log_values` writes copied strings in line and reads fewer values across the
/// reservation, so that its frame on Cortex-M0 is 56 bytes where it was 72 (the caller's array
/// of three fields takes 72 more): 124 / 128 B when set, `log3_values` the worst on both.
const STACK_BUDGET: (f64, f64) = (128.0, 128.0);
/// A span started through the builder, measured since December 2026 (helper 62 found 472 B in
/// an interrupt handler, with baggage): the builder holds `MAX_REFERENCES` whole contexts (40 B
/// each) and a copied `jaeger-debug-id`, and is moved through each chained call. 376 / 412 B
/// when set (256 / 284 B with `MICROSPAN_MAX_REFERENCES=1`): over the 128 B target, a budget
/// against growth until the builder keeps references to the contexts instead of copies.
const BUILDER_STACK_BUDGET: (f64, f64) = (384.0, 420.0);

fn measure_board(board: Board) -> Vec<Check> {
    let pick = |m3: f64, m0: f64| if board == Board::Lm3s6965 { m3 } else { m0 };
    let mut checks = Vec::new();
    let elf = Firmware::bench()
        .build(board)
        .unwrap_or_else(|e| panic!("{e}"));
    let per = |id| measure::per_iteration(board, &elf, id).unwrap_or_else(|e| panic!("{e}"));
    let empty = per(ops::EMPTY.id);
    let isr_empty = per(ops::ISR_EMPTY.id) - empty;
    for &(name, m3, m0, target) in INSN_BUDGETS {
        let op = ops::ALL
            .iter()
            .find(|o| o.name == name)
            .expect("a known op");
        let mut v = per(op.id) - empty;
        if name == "isr_root" {
            v -= isr_empty;
        }
        if name == "drain17" {
            v /= 17.0;
        }
        checks.push((format!("insns: {}", op.what), v, pick(m3, m0), target));
    }
    let no_bar = measure::wire(board, &elf, workloads::NO_BAR)
        .unwrap_or_else(|e| panic!("{e}"))
        .len() as f64;
    for &(what, w, m3, m0, target) in WIRE_BUDGETS {
        let with = measure::wire(board, &elf, w)
            .unwrap_or_else(|e| panic!("{e}"))
            .len() as f64;
        checks.push((
            what.to_string(),
            (with - no_bar) / measure::WIRE_TRACES as f64,
            pick(m3, m0),
            Some(target),
        ));
    }
    let sites =
        measure::call_sites(&elf, measure::MICROSPAN_SITES).unwrap_or_else(|e| panic!("{e}"));
    for &(f, m3, m0) in SITE_BUDGETS {
        let i = measure::MICROSPAN_SITES
            .iter()
            .position(|s| s.1 == f)
            .expect("a known call site");
        let (what, bytes) = sites[i];
        checks.push((
            format!("flash per call site: {what}"),
            bytes as f64,
            pick(m3, m0),
            None,
        ));
    }
    let stack = measure::stack(board, &elf).unwrap_or_else(|e| panic!("{e}"));
    println!("{board}: stack bytes per record call, net of an empty call: {stack:?}");
    let worst = stack
        .iter()
        .filter(|(n, _)| *n != "drain" && *n != "isr_root" && *n != "follows_from")
        .map(|(_, b)| *b)
        .max()
        .unwrap_or(0);
    checks.push((
        "stack: worst record call".into(),
        worst as f64,
        pick(STACK_BUDGET.0, STACK_BUDGET.1),
        Some(128.0),
    ));
    checks.push((
        "stack: a span started through the builder (`span(..).follows_from(&ctx).start()`)".into(),
        stack.get("follows_from").copied().unwrap_or(u64::MAX) as f64,
        pick(BUILDER_STACK_BUDGET.0, BUILDER_STACK_BUDGET.1),
        Some(128.0),
    ));
    let traced = Firmware::footprint(true)
        .build(board)
        .unwrap_or_else(|e| panic!("{e}"));
    let plain = Firmware::footprint(false)
        .build(board)
        .unwrap_or_else(|e| panic!("{e}"));
    let (ft, rt) = measure::flash_ram(&traced).unwrap_or_else(|e| panic!("{e}"));
    let (fp, rp) = measure::flash_ram(&plain).unwrap_or_else(|e| panic!("{e}"));
    let ring = microspan_tests::insn::read_symbols(&traced)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .find(|s| !s.is_func && s.demangled.ends_with("::RING"))
        .map(|s| s.size)
        .expect("the ring's symbol");
    checks.push((
        "flash: record + encode + UART drain".into(),
        ft as f64 - fp as f64,
        pick(FLASH_BUDGET.0, FLASH_BUDGET.1),
        Some(2048.0),
    ));
    checks.push((
        "static RAM besides the ring".into(),
        rt as f64 - rp as f64 - ring as f64,
        pick(RAM_BUDGET.0, RAM_BUDGET.1),
        Some(64.0),
    ));
    checks
}

#[test]
fn deterministic_figures_stay_within_budget() {
    if microspan_tests::qemu::check_qemu().is_err() {
        panic!("qemu-system-arm is missing: apt-get install -y qemu-system-arm (scripts/setup.sh does it)");
    }
    let mut failures = Vec::new();
    for board in Board::ALL {
        println!("\n{board}");
        println!("| figure | measured | budget | issue 6 target |");
        println!("|---|---|---|---|");
        for (what, v, budget, target) in measure_board(board) {
            let t = target.map(|t| format!("≤ {t}{}", if v > t { " (missed)" } else { "" }));
            println!(
                "| {what} | {v:.1} | ≤ {budget} | {} |",
                t.unwrap_or_default()
            );
            if v > budget {
                failures.push(format!("{board}: {what}: {v:.1} > budget {budget}"));
            }
        }
    }
    assert!(failures.is_empty(), "over budget:\n{}", failures.join("\n"));
}
