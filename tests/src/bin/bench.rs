//! `cargo run -p microspan-tests --release --bin bench [-- --quick] [--out FILE] [--no-desktop]`
//!
//! Measures microspan and its peers and writes `BENCHMARKS.md` (and prints it): instructions per
//! operation on the emulated Cortex-M3 and Cortex-M0 beside defmt and SEGGER SystemView, bytes on
//! the wire beside Jaeger Thrift, OTLP and the peers, flash/RAM/stack, the desktop record path
//! beside fastrace and `tracing` (criterion, one process), and the decoder's throughput. Every
//! figure is measured by this run; the targets of issue 6 stand beside them. `scripts/bench.sh`
//! installs what it needs first.

#[path = "../bench/mod.rs"]
mod measure;
#[path = "../bench/wire.rs"]
mod wire;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use measure::{ops, workloads, Firmware, R};
use microspan_tests::qemu::{self, Board};

/// Figures of one board.
struct BoardFigures {
    ops: BTreeMap<&'static str, f64>,
    stack: BTreeMap<String, u64>,
    wire: BTreeMap<u32, wire::Sizes>,
    flash_ram_traced: (u64, u64),
    flash_ram_plain: (u64, u64),
    ring_bytes: u64,
    footprint_line: String,
    flash_symbols: Vec<(String, u64)>,
    /// Flash per call site: microspan's, then the peers' that were built.
    sites: Vec<(&'static str, u64)>,
    defmt: Result<Vec<(f64, f64)>, String>,
    systemview: Result<Vec<(f64, f64)>, String>,
    /// (op, instructions per iteration, per source line, per function).
    profiles: Vec<Profile>,
}

/// Where one operation's instructions go.
struct Profile {
    op: measure::Op,
    total: u64,
    lines: Vec<(String, u64)>,
    functions: Vec<(String, u64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let desktop = !args.iter().any(|a| a == "--no-desktop");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| qemu::repo_root().join("BENCHMARKS.md"));
    match run(quick, desktop) {
        Ok(md) => {
            print!("{md}");
            if let Err(e) = std::fs::write(&out, &md) {
                eprintln!("bench: writing {}: {e}", out.display());
                std::process::exit(1);
            }
            eprintln!("bench: wrote {}", out.display());
        }
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}

fn step(s: &str) {
    eprintln!("bench: {s}");
}

fn run(quick: bool, desktop: bool) -> R<String> {
    qemu::check_qemu().map_err(|e| e.to_string())?;
    let mut boards = BTreeMap::new();
    for board in Board::ALL {
        boards.insert(board.name(), measure_board(board)?);
    }
    let (desk, desk_note) = if desktop {
        step("desktop: cargo bench -p microspan-peers-bench");
        match desktop_peers(quick) {
            Ok(v) => (v, String::new()),
            Err(e) => (BTreeMap::new(), e),
        }
    } else {
        (BTreeMap::new(), "skipped (--no-desktop)".into())
    };
    let decoder = if desktop {
        step(&format!("decoder: {}", decoder_bench_command(quick)));
        decoder_throughput(quick)
    } else {
        Err("skipped (--no-desktop)".into())
    };
    Ok(report(&boards, &desk, &desk_note, &decoder, quick))
}

fn measure_board(board: Board) -> R<BoardFigures> {
    let mut f = BoardFigures {
        ops: BTreeMap::new(),
        stack: BTreeMap::new(),
        wire: BTreeMap::new(),
        flash_ram_traced: (0, 0),
        flash_ram_plain: (0, 0),
        ring_bytes: 0,
        footprint_line: String::new(),
        flash_symbols: Vec::new(),
        sites: Vec::new(),
        defmt: Err("not run".into()),
        systemview: Err("not run".into()),
        profiles: Vec::new(),
    };
    step(&format!("{board}: building the bench firmware"));
    let elf = Firmware::bench().build(board)?;
    f.sites = measure::call_sites(&elf, measure::MICROSPAN_SITES)?;
    step(&format!("{board}: instructions per operation"));
    f.ops = measure::microspan_ops(board, &elf)?;
    step(&format!("{board}: stack per record call"));
    f.stack = measure::stack(board, &elf)?;
    step(&format!("{board}: wire workloads"));
    for w in [
        workloads::REFERENCE,
        workloads::TAGS0,
        workloads::TAGS2,
        workloads::TAGS8,
        workloads::LOG3,
        workloads::NO_BAR,
    ] {
        let bytes = measure::wire(board, &elf, w)?;
        f.wire.insert(w, wire::sizes(&bytes)?);
    }
    step(&format!("{board}: profiles"));
    for op in [ops::CHILD0, ops::UNSAMPLED, ops::DRAIN17] {
        let pcs = measure::steady_pcs(board, &elf, op.id)?;
        f.profiles.push(Profile {
            op,
            total: pcs.iter().map(|p| p.1).sum(),
            lines: measure::per_line(&elf, &pcs)?,
            functions: measure::per_function(&elf, &pcs)?,
        });
    }
    step(&format!("{board}: footprint"));
    let traced = Firmware::footprint(true).build(board)?;
    let plain = Firmware::footprint(false).build(board)?;
    f.flash_ram_traced = measure::flash_ram(&traced)?;
    f.flash_ram_plain = measure::flash_ram(&plain)?;
    f.flash_symbols = measure::flash_by_symbol(&traced, &plain)?;
    f.ring_bytes = microspan_tests::insn::read_symbols(&traced)
        .map_err(|e| e.to_string())?
        .iter()
        .find(|s| !s.is_func && s.demangled.ends_with("::RING"))
        .map(|s| s.size)
        .unwrap_or(0);
    let run = qemu::run_firmware(board, &traced, &qemu::RunOptions::default())
        .map_err(|e| e.to_string())?;
    run.assert_exit(0);
    f.footprint_line = run
        .console
        .lines()
        .find(|l| l.starts_with("footprint:"))
        .unwrap_or("")
        .to_string();
    step(&format!("{board}: defmt"));
    f.defmt = Firmware::defmt().build(board).and_then(|e| {
        f.sites
            .extend(measure::call_sites(&e, measure::DEFMT_SITES)?);
        measure::peer_ops(board, &e)
    });
    step(&format!("{board}: SystemView"));
    f.systemview = Firmware::systemview().build(board).and_then(|e| {
        f.sites
            .extend(measure::call_sites(&e, measure::SYSTEMVIEW_SITES)?);
        measure::peer_ops(board, &e)
    });
    Ok(f)
}

/// Mean ns per iteration of each criterion benchmark under `target/criterion/{group}`.
fn desktop_peers(quick: bool) -> R<BTreeMap<(String, String), f64>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(qemu::repo_root()).args([
        "bench",
        "-p",
        "microspan-peers-bench",
        "--bench",
        "peers",
    ]);
    if quick {
        cmd.env("MICROSPAN_BENCH_QUICK", "1");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo bench -p microspan-peers-bench failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let base = target_dir().join("criterion");
    let mut v = BTreeMap::new();
    for group in ["clock", "span", "child_span", "span_2_attributes"] {
        for tracer in [
            "microspan",
            "microspan-tsc",
            "microspan-at-start",
            "microspan-tsc-at-start",
            "fastrace",
            "tracing",
            "std",
            "tsc",
        ] {
            let dir = base.join(group).join(tracer);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let est = e.path().join("new").join("estimates.json");
                if let Ok(text) = std::fs::read_to_string(&est) {
                    let json: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    if let Some(ns) = json["mean"]["point_estimate"].as_f64() {
                        v.insert((group.to_string(), tracer.to_string()), ns);
                    }
                }
            }
        }
    }
    if v.is_empty() {
        return Err(format!("no criterion estimates under {}", base.display()));
    }
    Ok(v)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| qemu::repo_root().join("target"))
}

/// The decoder's bench as this runner invokes it: traces per stream (`MICROSPAN_BENCH_TRACES`)
/// and cargo's arguments. The report quotes the same values (`decoder_bench_command`).
fn decoder_bench(quick: bool) -> (&'static str, Vec<&'static str>) {
    let mut args = vec!["bench", "-p", "microspan-decoder", "--bench", "decode"];
    if quick {
        args.extend([
            "--",
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]);
        ("5000", args)
    } else {
        ("50000", args)
    }
}

/// The decoder's bench as a shell command, for the progress line and the report.
fn decoder_bench_command(quick: bool) -> String {
    let (traces, args) = decoder_bench(quick);
    format!("MICROSPAN_BENCH_TRACES={traces} cargo {}", args.join(" "))
}

/// The table the decoder's own bench prints.
fn decoder_throughput(quick: bool) -> R<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (traces, args) = decoder_bench(quick);
    let mut cmd = Command::new(cargo);
    cmd.current_dir(qemu::repo_root())
        .args(args)
        .env("MICROSPAN_BENCH_TRACES", traces);
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the decoder's bench failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    if table.is_empty() {
        return Err("the decoder's bench printed no table".into());
    }
    Ok(table.join("\n"))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "?".into());
    let root = qemu::repo_root();
    let root = root.to_str().unwrap_or(".");
    let commit = sh("git", &["-C", root, "rev-parse", "--short", "HEAD"]);
    let dirty = !sh(
        "git",
        &["-C", root, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_empty();
    format!(
        "- machine: {cpu}, {cores} cores, {os}, {}\n- date: {}\n- commit: {commit}{}\n- {}; {}\n",
        sh("uname", &["-sr"]),
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        sh("rustc", &["--version"]),
        qemu::check_qemu().unwrap_or_default(),
    )
}

fn n(v: f64) -> String {
    if (v - v.round()).abs() < 0.005 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn verdict(v: f64, target: f64) -> &'static str {
    if v <= target {
        "✅"
    } else {
        "❌"
    }
}

fn report(
    boards: &BTreeMap<&str, BoardFigures>,
    desk: &BTreeMap<(String, String), f64>,
    desk_note: &str,
    decoder: &R<String>,
    quick: bool,
) -> String {
    let m3 = &boards["lm3s6965"];
    let m0 = &boards["microbit"];
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# microspan benchmarks\n");
    let _ = writeln!(
        w,
        "Produced by `scripts/bench.sh` (`cargo run -p microspan-tests --release --bin bench`); every \
         figure below was measured by that run, peers included. Do not edit by hand.\n"
    );
    let _ = writeln!(w, "{}", machine());
    if quick {
        let _ = writeln!(
            w,
            "_Quick run (`--quick`): desktop timings are short smoke measurements._\n"
        );
    }

    // Instructions.
    let _ = writeln!(w, "## Instructions per operation on the emulated cores\n");
    let _ = writeln!(
        w,
        "QEMU 7.2 with the `insn_gate` TCG plugin (`tests/src/bench/insn_gate.c`): instructions \
         executed between two marker calls, (N = 101 − N = 1) / 100, minus the markers' own cost; \
         interrupt handlers that run in between are counted. Firmware: `examples/firmware/bench` \
         (opt-level s, fat LTO), clock = the board's tick counter (`now_ticks`). Cortex-M3 = \
         lm3s6965evb (thumbv7m, LDREX/STREX), Cortex-M0 = micro:bit (thumbv6m, critical sections).\n"
    );
    let _ = writeln!(w, "| operation | Cortex-M3 | Cortex-M0 | target | |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    let rows: [(&str, &str, Option<f64>); 15] = [
        ("root", ops::ROOT.what, None),
        ("child0", ops::CHILD0.what, Some(70.0)),
        ("child0_cyc", ops::CHILD0_CYC.what, Some(70.0)),
        ("child2", ops::CHILD2.what, None),
        ("child2_start", ops::CHILD2_START.what, None),
        ("tag", ops::TAG.what, None),
        ("log3", ops::LOG3.what, None),
        ("log3_values", ops::LOG3_VALUES.what, None),
        ("unsampled", ops::UNSAMPLED.what, Some(15.0)),
        ("unsampled_child", ops::UNSAMPLED_CHILD.what, Some(15.0)),
        (
            "isr_root",
            "root span recorded in an interrupt handler (net of an empty handler)",
            None,
        ),
        ("root_full_fr", ops::ROOT_FULL_FR.what, None),
        (
            "drain17",
            "drain per span: encode + CRC + COBS, 17 spans per frame, RAM sink",
            Some(150.0),
        ),
        (
            "drain1",
            "drain per span: one span per frame (worst case)",
            None,
        ),
        ("clock", ops::CLOCK.what, None),
    ];
    for (key, what, target) in rows {
        let a = m3.ops[key];
        let b = m0.ops[key];
        // ARMv6-M has no cycle counter: that firmware measures its tick counter again.
        let m0_applies = key != "child0_cyc";
        let (t, ok) = match target {
            Some(t) if m0_applies => (
                format!("≤ {}", n(t)),
                format!("{} {}", verdict(a, t), verdict(b, t)),
            ),
            Some(t) => (format!("≤ {}", n(t)), verdict(a, t).to_string()),
            None => (String::new(), String::new()),
        };
        let b = if m0_applies {
            n(b)
        } else {
            "— (no cycle counter)".to_string()
        };
        let _ = writeln!(w, "| {what} | {} | {b} | {t} | {ok} |", n(a));
    }
    let peer_row = |w: &mut String,
                    label: &str,
                    r3: &Result<Vec<(f64, f64)>, String>,
                    r0: &Result<Vec<(f64, f64)>, String>,
                    i: usize,
                    facts: (&str, &str)| {
        let cell = |r: &Result<Vec<(f64, f64)>, String>, f: &str| match r {
            Ok(v) => n(v[i].0),
            Err(_) => format!("{f} (an earlier hand count in QEMU, not measured here)"),
        };
        let _ = writeln!(
            w,
            "| {label} | {} | {} | | |",
            cell(r3, facts.0),
            cell(r0, facts.1)
        );
    };
    peer_row(
        w,
        "peer: defmt 1.x + defmt-rtt, `info!(\"Foo\")` (u32 timestamp)",
        &m3.defmt,
        &m0.defmt,
        0,
        ("735", "780"),
    );
    peer_row(
        w,
        "peer: defmt, `info!` with two u32 arguments",
        &m3.defmt,
        &m0.defmt,
        1,
        ("1179", "1252"),
    );
    peer_row(
        w,
        "peer: SystemView, task begin + end pair",
        &m3.systemview,
        &m0.systemview,
        0,
        ("206", "337"),
    );
    peer_row(
        w,
        "peer: SystemView, marker begin + end (one u32 each)",
        &m3.systemview,
        &m0.systemview,
        1,
        ("145", "219"),
    );
    for (name, r) in [
        ("defmt", &m3.defmt),
        ("defmt (M0)", &m0.defmt),
        ("SystemView", &m3.systemview),
        ("SystemView (M0)", &m0.systemview),
    ] {
        if let Err(e) = r {
            let first = e.lines().take(6).collect::<Vec<_>>().join(" ");
            let _ = writeln!(w, "\n{name} could not be measured in this run: {first}");
        }
    }
    let _ = writeln!(
        w,
        "\nSystemView's timestamps come from the DWT cycle counter on the Cortex-M3, which QEMU reads \
         as 0 (its smallest encoding); on the Cortex-M0 the firmware supplies the board's tick \
         counter. defmt's timestamp is the board's tick counter on both.\n"
    );

    // Wire.
    let _ = writeln!(w, "## Bytes on the wire per span\n");
    let _ = writeln!(
        w,
        "The bench firmware streams {} traces of each workload over the UART in QEMU (drained every 8 \
         traces; Foo lasts 10 ms, Bar 20 ms); the bytes are microspan's stream, framing and session \
         records included. The decoder rebuilds the spans and the same spans are encoded, in one \
         batch, as Jaeger Thrift (binary and compact protocol), OTLP protobuf and OTLP/JSON. \
         \"child span\" is the marginal cost of Bar: (stream with Bar − stream without) / traces. Wire \
         version {}; times at the drain's default resolution (`microspan::drain::default_time_shift`: \
         the clock's ticks, or a power-of-two multiple of them when the clock is faster than 2 MHz).\n",
        measure::WIRE_TRACES,
        microspan::wire::WIRE_VERSION,
    );
    let resolution = |tps: u32| {
        let shift = microspan::drain::default_time_shift(tps);
        let wire = tps >> shift;
        format!(
            "{} MHz ticks, sent in units of {}: {} µs",
            tps as f64 / 1e6,
            1u32 << shift,
            1e6 / wire as f64
        )
    };
    for (board, f) in [
        (
            format!("Cortex-M0 (micro:bit, {})", resolution(1_000_000)),
            m0,
        ),
        (
            format!("Cortex-M3 (lm3s6965, {})", resolution(50_000_000)),
            m3,
        ),
    ] {
        let _ = writeln!(w, "### {board}\n");
        let _ = writeln!(w, "| per span | microspan | Thrift binary | Thrift compact | OTLP protobuf | OTLP/JSON | target |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        let traces = measure::WIRE_TRACES as f64;
        let avg = |x: &wire::Sizes| {
            let sp = x.spans as f64;
            [
                x.microspan,
                x.thrift_binary,
                x.thrift_compact,
                x.otlp_proto,
                x.otlp_json,
            ]
            .map(|b| b as f64 / sp)
        };
        let marginal = |a: &wire::Sizes, b: &wire::Sizes| {
            [
                a.microspan as f64 - b.microspan as f64,
                a.thrift_binary as f64 - b.thrift_binary as f64,
                a.thrift_compact as f64 - b.thrift_compact as f64,
                a.otlp_proto as f64 - b.otlp_proto as f64,
                a.otlp_json as f64 - b.otlp_json as f64,
            ]
            .map(|d| d / traces)
        };
        let row = |w: &mut String, label: &str, v: [f64; 5], target: &str| {
            let _ = writeln!(
                w,
                "| {label} | {} | {} | {} | {} | {} | {target} |",
                n(v[0]),
                n(v[1]),
                n(v[2]),
                n(v[3]),
                n(v[4])
            );
        };
        let g = |k| &f.wire[&k];
        row(
            w,
            "reference trace (average of its 3 spans)",
            avg(g(workloads::REFERENCE)),
            "",
        );
        row(
            w,
            "root → Foo → Bar, no tags (average)",
            avg(g(workloads::TAGS0)),
            "",
        );
        let c0 = marginal(g(workloads::TAGS0), g(workloads::NO_BAR));
        row(
            w,
            "**child span, no tags** (marginal)",
            c0,
            &format!("≤ 6 {}", verdict(c0[0], 6.0)),
        );
        let c2 = marginal(g(workloads::TAGS2), g(workloads::NO_BAR));
        row(
            w,
            "**child span, 2 small integer tags** (marginal)",
            c2,
            &format!("≤ 12 {}", verdict(c2[0], 12.0)),
        );
        row(
            w,
            "child span, 8 small integer tags (marginal)",
            marginal(g(workloads::TAGS8), g(workloads::NO_BAR)),
            "",
        );
        row(
            w,
            "child span with a 3-field log (marginal)",
            marginal(g(workloads::LOG3), g(workloads::NO_BAR)),
            "",
        );
        let peer = |r: &Result<Vec<(f64, f64)>, String>, i: usize| match r {
            Ok(v) => n(v[i].1),
            Err(_) => "not measured".into(),
        };
        let _ = writeln!(
            w,
            "\nPeers, same run, bytes their RTT up-channel received: defmt `info!(\"Foo\")` {} B, `info!` \
             with two u32 {} B (a span as two such messages: twice that); SystemView task begin+end \
             pair {} B, marker begin+end {} B.\n",
            peer(&f.defmt, 0),
            peer(&f.defmt, 1),
            peer(&f.systemview, 0),
            peer(&f.systemview, 1)
        );
    }

    // Footprint.
    let _ = writeln!(w, "## Footprint\n");
    let _ = writeln!(
        w,
        "`llvm-size` of `examples/firmware/bench` `footprint` (a reference-like firmware: root → Foo → \
         Bar with tags and a log, an interrupt span, the blocking UART drain), with tracing and with \
         every tracer call compiled out (feature `notrace`). Flash = text + data, static RAM = data + \
         bss. Stack: the firmware paints the stack and reads the high-water mark after each call \
         (net of an empty call).\n"
    );
    let _ = writeln!(w, "| | Cortex-M3 | Cortex-M0 | target |");
    let _ = writeln!(w, "|---|---|---|---|");
    let fl = |f: &BoardFigures| f.flash_ram_traced.0 as i64 - f.flash_ram_plain.0 as i64;
    let ram = |f: &BoardFigures| {
        f.flash_ram_traced.1 as i64 - f.flash_ram_plain.1 as i64 - f.ring_bytes as i64
    };
    let _ = writeln!(
        w,
        "| flash with tracing / without | {} / {} B | {} / {} B | |",
        m3.flash_ram_traced.0, m3.flash_ram_plain.0, m0.flash_ram_traced.0, m0.flash_ram_plain.0
    );
    let _ = writeln!(
        w,
        "| **flash for record + encode + UART drain** | {} B | {} B | ≤ 2048 B {} {} |",
        fl(m3),
        fl(m0),
        verdict(fl(m3) as f64, 2048.0),
        verdict(fl(m0) as f64, 2048.0)
    );
    let _ = writeln!(
        w,
        "| static RAM with tracing / without | {} / {} B | {} / {} B | |",
        m3.flash_ram_traced.1, m3.flash_ram_plain.1, m0.flash_ram_traced.1, m0.flash_ram_plain.1
    );
    let _ = writeln!(
        w,
        "| ring buffer | {} B | {} B | |",
        m3.ring_bytes, m0.ring_bytes
    );
    let _ = writeln!(
        w,
        "| **static RAM besides the ring** | {} B | {} B | ≤ 64 B {} {} |",
        ram(m3),
        ram(m0),
        verdict(ram(m3) as f64, 64.0),
        verdict(ram(m0) as f64, 64.0)
    );
    let mut stack_names: Vec<&String> = m3.stack.keys().collect();
    stack_names.sort();
    for name in stack_names {
        let a = m3.stack[name];
        let b = m0.stack.get(name).copied().unwrap_or(0);
        let target = if name == "drain" {
            String::new()
        } else {
            format!(
                "≤ 128 B {} {}",
                verdict(a as f64, 128.0),
                verdict(b as f64, 128.0)
            )
        };
        let label = if name == "isr_root" {
            "stack: root span in an interrupt handler (exception frame included)".to_string()
        } else {
            format!("stack: `{name}`")
        };
        let _ = writeln!(w, "| {label} | {a} B | {b} B | {target} |");
    }
    let _ = writeln!(
        w,
        "\nFlash per call site: the size of a function holding one call (`#[inline(never)]`, in \
         the bench firmware and the peers' firmware) less the same function without it \
         (`llvm-nm`). What the call puts in line is counted; the functions it calls are shared by \
         every call site and counted in the footprint above.\n"
    );
    let _ = writeln!(w, "| call site | Cortex-M3 | Cortex-M0 |");
    let _ = writeln!(w, "|---|---|---|");
    let m0_sites: BTreeMap<&str, u64> = m0.sites.iter().copied().collect();
    for (what, a) in &m3.sites {
        let b = m0_sites
            .get(what)
            .map_or_else(|| "—".to_string(), |b| format!("{b} B"));
        let _ = writeln!(w, "| {what} | {a} B | {b} |");
    }
    let _ = writeln!(w, "\nType sizes (bytes, from the firmware): M3 `{}`; M0 `{}`. The drain (frame buffer, string table) lives wherever the firmware puts it (a static in the reference firmware, the stack of `main` here).\n", m3.footprint_line, m0.footprint_line);

    let _ = writeln!(w, "Where tracing's flash goes (symbols of the traced build larger than in the other, bytes):\n");
    let _ = writeln!(w, "| symbol | Cortex-M3 | Cortex-M0 |");
    let _ = writeln!(w, "|---|---|---|");
    let m0_sizes: BTreeMap<&str, u64> = m0
        .flash_symbols
        .iter()
        .map(|(n, s)| (n.as_str(), *s))
        .collect();
    for (name, size) in m3.flash_symbols.iter().take(20) {
        let b = m0_sizes
            .get(name.as_str())
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = writeln!(w, "| `{name}` | {size} | {b} |");
    }
    let _ = writeln!(w);

    // Desktop.
    let _ = writeln!(
        w,
        "## Desktop: record path beside fastrace and tracing (one process)\n"
    );
    let _ = writeln!(
        w,
        "`cargo bench -p microspan-peers-bench` (criterion, `tests/peers-bench/benches/peers.rs`): \
         a root span start + finish, and the same with two small integer attributes. microspan \
         records into its ring (drained between timed chunks of {} spans); fastrace reports to a \
         reporter keeping the last spans in memory; `tracing` runs the registry with a layer keeping \
         the closed spans in memory. Mean ns per span. Target: microspan ≤ 0.2 × either peer.\n",
        1024
    );
    if desk.is_empty() {
        let _ = writeln!(w, "Not measured: {desk_note}\n");
    } else {
        let _ = writeln!(
            w,
            "| work | microspan (`StdClock`) | microspan (TSC clock) | fastrace | tracing | best microspan / fastrace | best microspan / tracing | target ≤ 0.2× |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
        for (group, label, ours) in [
            ("span", "root span start + finish", ""),
            (
                "child_span",
                "child span start + finish (fastrace: `LocalSpan`)",
                "",
            ),
            (
                "span_2_attributes",
                "root span + 2 attributes (microspan: one `set_tag` each)",
                "",
            ),
            (
                "span_2_attributes",
                "root span + 2 attributes given with the start (microspan: `root_with_tags`; \
                 `tracing` takes its fields with the start too)",
                "-at-start",
            ),
        ] {
            let get = |t: &str| desk.get(&(group.to_string(), t.to_string())).copied();
            if let (Some(m), Some(fr), Some(tr)) = (
                get(&format!("microspan{ours}")),
                get("fastrace"),
                get("tracing"),
            ) {
                let mt = get(&format!("microspan-tsc{ours}")).unwrap_or(m);
                let best = m.min(mt);
                let ok = best / fr <= 0.2 && best / tr <= 0.2;
                let _ = writeln!(
                    w,
                    "| {label} | {m:.1} ns | {mt:.1} ns | {fr:.1} ns | {tr:.1} ns | {:.3} | {:.3} | {} |",
                    best / fr,
                    best / tr,
                    if ok { "✅" } else { "❌" }
                );
            }
        }
        if let Some(c) = desk.get(&("clock".to_string(), "std".to_string())) {
            let _ = writeln!(
                w,
                "\nOne `Instant::now()` costs {c:.1} ns on this machine; a span reads the clock twice."
            );
        }
        if let Some(c) = desk.get(&("clock".to_string(), "tsc".to_string())) {
            let _ = writeln!(
                w,
                "One read of the TSC clock (`rdtsc`) costs {c:.1} ns: two of them are the floor of a \
                 span that carries its start and end times."
            );
        }
        let _ = writeln!(w);
    }

    // Decoder.
    let _ = writeln!(w, "## Host decoder throughput\n");
    match decoder {
        Ok(t) => {
            let _ = writeln!(
                w,
                "From `{}` (spans per second, one core):\n\n{t}\n",
                decoder_bench_command(quick)
            );
        }
        Err(e) => {
            let _ = writeln!(w, "Not measured: {}\n", e.lines().next().unwrap_or(""));
        }
    }

    // Profile.
    let _ = writeln!(w, "## Where the instructions go\n");
    let _ = writeln!(
        w,
        "Per-address counts of one iteration in steady state (`insn_gate` with `pcs=1`, N = 101 − \
         N = 1), attributed to the function they executed in (after inlining) and to the innermost \
         source line (`llvm-objdump -l`). Totals include the markers' few instructions (the \
         `empty` row above).\n"
    );
    for i in 0..m3.profiles.len() {
        for (label, f) in [("Cortex-M3", m3), ("Cortex-M0", m0)] {
            let p = &f.profiles[i];
            let _ = writeln!(w, "### {}: {label}, {} instructions\n", p.op.what, p.total);
            let _ = writeln!(w, "| function (after inlining) | instructions |");
            let _ = writeln!(w, "|---|---|");
            for (func, c) in p.functions.iter().take(12) {
                let _ = writeln!(w, "| `{func}` | {c} |");
            }
            let _ = writeln!(w, "\n| source line | instructions |");
            let _ = writeln!(w, "|---|---|");
            for (line, c) in p.lines.iter().take(16) {
                let _ = writeln!(w, "| `{}` | {c} |", short_path(line));
            }
            let _ = writeln!(w);
        }
    }
    s
}

fn short_path(line: &str) -> String {
    let p = Path::new(line);
    let parts: Vec<_> = p.components().collect();
    if parts.len() > 3 {
        parts[parts.len() - 3..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    } else {
        line.to_string()
    }
}
