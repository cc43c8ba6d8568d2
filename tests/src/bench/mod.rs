//! Deterministic figures of microspan on the emulated cores: instructions per operation (with the
//! `insn_gate` TCG plugin beside this file), stack per record call, flash and RAM, and the wire
//! bytes of the benchmark firmware in `examples/firmware/bench` and the peers in
//! `examples/firmware/peers`.
//!
//! Shared by the bench runner (`src/bin/bench.rs`, which writes `BENCHMARKS.md`) and the budget
//! tests (`tests/budgets.rs`), which include this file with `#[path]`, so it uses only the
//! library's `qemu` and `insn` modules and the standard library.
//!
//! # Method
//! The firmware reads `[MAGIC, op, iterations, arg]` from `BENCH_CONFIG` (written by QEMU's
//! generic loader before reset) and runs the operation `iterations` times between calls of
//! `bench_gate_on` and `bench_gate_off`; the plugin counts only the instructions executed between
//! the first instruction of the one and of the other (interrupt handlers included). The cost of
//! one operation is `(gated(101) − gated(1)) / 100` minus the same for the empty operation.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use microspan_tests::insn::read_symbols;
use microspan_tests::qemu::{self, Board, RunOptions};

/// Errors are reported as text naming the step and the fix.
pub type R<T> = Result<T, String>;

/// Magic word of `BENCH_CONFIG` ("msbe").
pub const MAGIC: u32 = 0x6d73_6265;

/// Iterations of the long run (the short run has one).
pub const N_LONG: u32 = 101;

/// One operation of the bench firmware (`examples/firmware/bench/src/bin/bench.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The number the firmware switches on.
    pub id: u32,
    /// Short name.
    pub name: &'static str,
    /// What it measures, for the table.
    pub what: &'static str,
}

/// Operations of the bench firmware, as numbered there.
pub mod ops {
    use super::Op;
    /// Nothing (the gates' own cost).
    pub const EMPTY: Op = Op {
        id: 0,
        name: "empty",
        what: "nothing (the gates; subtracted)",
    };
    /// One clock read.
    pub const CLOCK: Op = Op {
        id: 1,
        name: "clock",
        what: "`Clock::now()` (the board's tick counter)",
    };
    /// Root span start+finish.
    pub const ROOT: Op = Op {
        id: 2,
        name: "root",
        what: "root span, start + finish",
    };
    /// Child span start+finish, no tags.
    pub const CHILD0: Op = Op {
        id: 3,
        name: "child0",
        what: "child span, start + finish, no tags",
    };
    /// Child span with two small integer tags.
    pub const CHILD2: Op = Op {
        id: 4,
        name: "child2",
        what: "child span, start + finish, 2 small integer tags",
    };
    /// One tag.
    pub const TAG: Op = Op {
        id: 5,
        name: "tag",
        what: "one small integer tag on a live span",
    };
    /// A log with three fields.
    pub const LOG3: Op = Op {
        id: 6,
        name: "log3",
        what: "log with 3 fields (2 static strings, 1 integer), as a tuple",
    };
    /// The same log with its fields as an array of `Value`s.
    pub const LOG3_VALUES: Op = Op {
        id: 15,
        name: "log3_values",
        what: "the same log, its fields as an array of `Value`s (`&[(key, Value)]`)",
    };
    /// Unsampled root.
    pub const UNSAMPLED: Op = Op {
        id: 7,
        name: "unsampled",
        what: "unsampled span (`Sampler::Const(false)`), start + finish",
    };
    /// Child of an unsampled root.
    pub const UNSAMPLED_CHILD: Op = Op {
        id: 8,
        name: "unsampled_child",
        what: "child of an unsampled span, start + finish",
    };
    /// Software interrupt with an empty handler.
    pub const ISR_EMPTY: Op = Op {
        id: 9,
        name: "isr_empty",
        what: "pend a software interrupt, empty handler",
    };
    /// Software interrupt recording a root span.
    pub const ISR_ROOT: Op = Op {
        id: 10,
        name: "isr_root",
        what: "pend a software interrupt whose handler records a root span",
    };
    /// Drain one span.
    pub const DRAIN1: Op = Op {
        id: 11,
        name: "drain1",
        what: "drain: one span in its own frame (encode + CRC + COBS)",
    };
    /// Drain 17 spans.
    pub const DRAIN17: Op = Op {
        id: 12,
        name: "drain17",
        what: "drain: a root and 16 children in one frame",
    };
    /// `child0` with a cycle-counter clock.
    pub const CHILD0_CYC: Op = Op {
        id: 13,
        name: "child0_cyc",
        what: "child span, start + finish, no tags, with the cycle counter as clock (DWT CYCCNT, one load, as in SystemView's figures)",
    };
    /// `child2` with the tags given at the start.
    pub const CHILD2_START: Op = Op {
        id: 14,
        name: "child2_start",
        what: "child span, start + finish, the same 2 tags given at the start (`child_with_tags`: one ring operation for start and tags)",
    };
    /// `root` in a full flight recorder.
    pub const ROOT_FULL_FR: Op = Op {
        id: 16,
        name: "root_full_fr",
        what: "root span, start + finish, in a full flight-recorder ring (`Ring::flight_recorder`: each record evicts the oldest)",
    };
    /// Every gated operation.
    pub const ALL: [Op; 17] = [
        EMPTY,
        CLOCK,
        ROOT,
        CHILD0,
        CHILD2,
        TAG,
        LOG3,
        UNSAMPLED,
        UNSAMPLED_CHILD,
        ISR_EMPTY,
        ISR_ROOT,
        DRAIN1,
        DRAIN17,
        CHILD0_CYC,
        CHILD2_START,
        LOG3_VALUES,
        ROOT_FULL_FR,
    ];
}

/// A firmware binary to build: a package of a cargo workspace under `examples/firmware`.
#[derive(Clone, Debug)]
pub struct Firmware {
    /// The workspace directory.
    pub dir: PathBuf,
    /// Package.
    pub package: &'static str,
    /// Binary.
    pub bin: &'static str,
    /// Features besides the board's.
    pub features: Vec<&'static str>,
    /// Extra environment (SystemView's C build).
    pub env: Vec<(String, String)>,
}

impl Firmware {
    /// The benchmark firmware.
    pub fn bench() -> Self {
        Firmware {
            dir: qemu::firmware_dir(),
            package: "microspan-bench-firmware",
            bin: "bench",
            features: vec![],
            env: vec![],
        }
    }

    /// The footprint firmware, with tracing (`traced`) or compiled out.
    pub fn footprint(traced: bool) -> Self {
        Firmware {
            dir: qemu::firmware_dir(),
            package: "microspan-bench-firmware",
            bin: "footprint",
            features: if traced { vec![] } else { vec!["notrace"] },
            env: vec![],
        }
    }

    /// defmt + defmt-rtt.
    pub fn defmt() -> Self {
        Firmware {
            dir: qemu::firmware_dir().join("peers"),
            package: "defmt-bench",
            bin: "defmt-bench",
            features: vec![],
            // defmt compiles out every level below `error` unless told otherwise.
            env: vec![("DEFMT_LOG".into(), "info".into())],
        }
    }

    /// SEGGER SystemView (needs gcc-arm-none-eabi and libclang, see `scripts/bench.sh`).
    pub fn systemview() -> Self {
        let mut env = vec![];
        if let Some(inc) = clang_include_dir() {
            env.push((
                "BINDGEN_EXTRA_CLANG_ARGS".into(),
                format!("-I{}", inc.display()),
            ));
        }
        if Path::new("/usr/lib/llvm-14/lib").exists() {
            env.push(("LIBCLANG_PATH".into(), "/usr/lib/llvm-14/lib".into()));
        }
        for t in ["thumbv7m_none_eabi", "thumbv6m_none_eabi"] {
            env.push((format!("CC_{t}"), "arm-none-eabi-gcc".into()));
            env.push((format!("AR_{t}"), "arm-none-eabi-ar".into()));
        }
        Firmware {
            dir: qemu::firmware_dir().join("peers"),
            package: "systemview-bench",
            bin: "systemview-bench",
            features: vec![],
            env,
        }
    }

    /// Builds it for `board` (release), returning the ELF.
    pub fn build(&self, board: Board) -> R<PathBuf> {
        let mut features = vec![board.feature()];
        features.extend(self.features.iter().copied());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.dir)
            .args([
                "build",
                "--release",
                "--message-format=json-render-diagnostics",
            ])
            .args([
                "--target",
                board.target(),
                "-p",
                self.package,
                "--bin",
                self.bin,
            ])
            .args(["--features", &features.join(",")])
            .args(["--config", &qemu::reproducible_rustflags(board)])
            .stdin(Stdio::null());
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_TARGET_DIR",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("running cargo in {}: {e}", self.dir.display()))?;
        if !out.status.success() {
            return Err(format!(
                "building {} ({}) for {board} in {} failed:\n{}",
                self.bin,
                features.join(","),
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let elf = stdout
            .lines()
            .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
            .filter_map(|l| {
                let key = "\"executable\":\"";
                let s = l.find(key)? + key.len();
                let e = l[s..].find('"')?;
                Some(PathBuf::from(&l[s..s + e]))
            })
            .next_back()
            .ok_or_else(|| format!("cargo built no executable for {}", self.bin))?;
        // The same binary built with other features lands on the same path: keep a copy per
        // feature set.
        let copy = elf.with_file_name(format!("{}-{}", self.bin, features.join("-")));
        std::fs::copy(&elf, &copy).map_err(|e| format!("copying {}: {e}", elf.display()))?;
        Ok(copy)
    }
}

/// clang 14's own include directory (from `libclang-common-14-dev`), for bindgen.
pub fn clang_include_dir() -> Option<PathBuf> {
    let base = Path::new("/usr/lib/llvm-14/lib/clang");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("include")))
        .filter(|p| p.exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Builds the gate plugin (`insn_gate.c` beside this file) with gcc if missing or stale.
pub fn gate_plugin() -> R<PathBuf> {
    let src = qemu::repo_root().join("tests/src/bench/insn_gate.c");
    let dir = qemu::repo_root().join("target").join("insn-gate");
    let so = dir.join("libinsn_gate.so");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(s), Some(o)) = (mtime(&src), mtime(&so)) {
        if o >= s {
            return Ok(so);
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!("libinsn_gate.so.{}.tmp", std::process::id()));
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| format!("running gcc (apt-get install -y gcc): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &so).map_err(|e| format!("moving the plugin into place: {e}"))?;
    Ok(so)
}

/// Addresses the runs need from an ELF.
#[derive(Clone, Debug)]
pub struct Marks {
    /// `BENCH_CONFIG`.
    pub config: u64,
    /// First instruction of `bench_gate_on`.
    pub on: u64,
    /// First instruction of `bench_gate_off`.
    pub off: u64,
}

/// Finds the configuration word and the gates.
pub fn marks(elf: &Path) -> R<Marks> {
    let syms = read_symbols(elf).map_err(|e| e.to_string())?;
    let find = |name: &str| {
        syms.iter()
            .find(|s| s.name == name)
            .map(|s| s.addr)
            .ok_or_else(|| format!("no symbol `{name}` in {}", elf.display()))
    };
    Ok(Marks {
        config: find("BENCH_CONFIG")?,
        on: find("bench_gate_on")?,
        off: find("bench_gate_off")?,
    })
}

/// What one gated run produced.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Instructions between the gates.
    pub gated: u64,
    /// Times the gate opened.
    pub opens: u64,
    /// Per address (with `pcs`).
    pub pcs: Vec<(u64, u64)>,
    /// Semihosting output.
    pub console: String,
    /// UART bytes.
    pub uart: Vec<u8>,
}

impl Run {
    /// `key=value` from the console line starting with `prefix`.
    pub fn field(&self, prefix: &str, key: &str) -> Option<u64> {
        let line = self.console.lines().find(|l| l.starts_with(prefix))?;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    }
}

/// Runs `elf` on `board` with `[MAGIC, op, n, arg]` in its configuration word and the gate plugin
/// (`pcs`: per-address counts too). Fails unless the firmware exits with 0.
pub fn run(board: Board, elf: &Path, op: u32, n: u32, arg: u32, pcs: bool) -> R<Run> {
    let m = marks(elf)?;
    let plugin = gate_plugin()?;
    static ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let out = std::env::temp_dir().join(format!(
        "microspan-gate-{}-{}.txt",
        std::process::id(),
        ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&out);
    let mut extra = Vec::new();
    for (i, w) in [MAGIC, op, n, arg].iter().enumerate() {
        extra.push("-device".to_string());
        extra.push(format!(
            "loader,addr={:#x},data={w:#x},data-len=4",
            m.config + 4 * i as u64
        ));
    }
    extra.push("-plugin".into());
    extra.push(format!(
        "{},on={:#x},off={:#x},out={}{}",
        plugin.display(),
        m.on,
        m.off,
        out.display(),
        if pcs { ",pcs=1" } else { "" }
    ));
    let opts = RunOptions {
        extra_args: extra,
        ..RunOptions::default()
    };
    let r = qemu::run_firmware(board, elf, &opts).map_err(|e| e.to_string())?;
    if r.exit_code != Some(0) {
        return Err(format!(
            "{} op={op} n={n} arg={arg} on {board}: exit {:?} (timed out: {})\n{}",
            elf.display(),
            r.exit_code,
            r.timed_out,
            r.console
        ));
    }
    let text =
        std::fs::read_to_string(&out).map_err(|e| format!("reading {}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    let mut run = Run {
        console: r.console,
        uart: r.uart,
        ..Run::default()
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["gated", v] => run.gated = v.parse().map_err(|_| format!("bad plugin line {line}"))?,
            ["opens", v] => run.opens = v.parse().map_err(|_| format!("bad plugin line {line}"))?,
            ["pc", a, v] => run.pcs.push((
                u64::from_str_radix(a, 16).map_err(|_| format!("bad plugin line {line}"))?,
                v.parse().map_err(|_| format!("bad plugin line {line}"))?,
            )),
            _ => {}
        }
    }
    Ok(run)
}

/// Instructions per iteration of `op`: `(gated(N_LONG) − gated(1)) / (N_LONG − 1)`, not yet
/// net of the empty operation.
pub fn per_iteration(board: Board, elf: &Path, op: u32) -> R<f64> {
    let one = run(board, elf, op, 1, 0, false)?;
    let many = run(board, elf, op, N_LONG, 0, false)?;
    Ok((many.gated as f64 - one.gated as f64) / (N_LONG - 1) as f64)
}

/// Net instructions of every gated operation of the bench firmware on `board`.
pub fn microspan_ops(board: Board, elf: &Path) -> R<BTreeMap<&'static str, f64>> {
    let mut raw = BTreeMap::new();
    for op in ops::ALL {
        raw.insert(op.name, per_iteration(board, elf, op.id)?);
    }
    let empty = raw["empty"];
    let mut net = BTreeMap::new();
    for (name, v) in &raw {
        let v = match *name {
            "empty" => *v,
            // The span in the handler: net of the interrupt with an empty handler.
            "isr_root" => v - raw["isr_empty"],
            // Per span.
            "drain17" => (v - empty) / 17.0,
            _ => v - empty,
        };
        net.insert(*name, v);
    }
    Ok(net)
}

/// Instructions per op and bytes per op of a peer firmware (`op` 1 and 2), net of its op 0.
pub fn peer_ops(board: Board, elf: &Path) -> R<Vec<(f64, f64)>> {
    let empty = per_iteration(board, elf, 0)?;
    let mut out = Vec::new();
    for op in [1, 2] {
        let one = run(board, elf, op, 1, 0, false)?;
        let many = run(board, elf, op, N_LONG, 0, false)?;
        let insns = (many.gated as f64 - one.gated as f64) / (N_LONG - 1) as f64 - empty;
        let b1 = one.field("peer:", "bytes").unwrap_or(0) as f64;
        let bn = many.field("peer:", "bytes").unwrap_or(0) as f64;
        out.push((insns, (bn - b1) / (N_LONG - 1) as f64));
    }
    Ok(out)
}

/// Stack bytes per record call (net of an empty call), from the firmware's painting mode.
pub fn stack(board: Board, elf: &Path) -> R<BTreeMap<String, u64>> {
    let r = run(board, elf, 30, 0, 0, false)?;
    let mut raw = BTreeMap::new();
    for line in r.console.lines().filter(|l| l.starts_with("stack op=")) {
        let mut name = None;
        let mut bytes = None;
        for w in line.split_whitespace() {
            if let Some(v) = w.strip_prefix("op=") {
                name = Some(v.to_string());
            }
            if let Some(v) = w.strip_prefix("bytes=") {
                bytes = v.parse::<u64>().ok();
            }
        }
        if let (Some(n), Some(b)) = (name, bytes) {
            raw.insert(n, b);
        }
    }
    let empty = *raw
        .get("empty")
        .ok_or_else(|| format!("no stack figures in:\n{}", r.console))?;
    Ok(raw
        .into_iter()
        // `parent` only fetches the live parent (a baseline for the call-site sizes).
        .filter(|(n, _)| n != "empty" && n != "parent")
        .map(|(n, b)| (n, b.saturating_sub(empty)))
        .collect())
}

/// Workloads of the bench firmware's wire mode (op 20).
pub mod workloads {
    /// The reference trace (root with 3 tags → Foo → Bar with a log and a tag).
    pub const REFERENCE: u32 = 0;
    /// root → Foo → Bar, no tags.
    pub const TAGS0: u32 = 1;
    /// Bar with two small integer tags.
    pub const TAGS2: u32 = 2;
    /// Bar with eight small integer tags.
    pub const TAGS8: u32 = 3;
    /// Bar with a three-field log.
    pub const LOG3: u32 = 4;
    /// root → Foo only.
    pub const NO_BAR: u32 = 5;
}

/// Traces per wire workload.
pub const WIRE_TRACES: u32 = 128;

/// The UART bytes of wire workload `which` ([`workloads`]), `WIRE_TRACES` traces.
pub fn wire(board: Board, elf: &Path, which: u32) -> R<Vec<u8>> {
    let r = run(board, elf, 20, WIRE_TRACES, which, false)?;
    if r.field("bench: wire", "dropped") != Some(0) {
        return Err(format!(
            "wire workload {which} dropped records:\n{}",
            r.console
        ));
    }
    Ok(r.uart)
}

/// Spans per trace of each workload.
pub fn spans_per_trace(which: u32) -> u32 {
    if which == workloads::NO_BAR {
        2
    } else {
        3
    }
}

/// `llvm-size` (Berkeley format) of an ELF: (text, data, bss).
pub fn size(elf: &Path) -> R<(u64, u64, u64)> {
    let tool = llvm_tool("llvm-size")?;
    let out = Command::new(&tool)
        .arg(elf)
        .output()
        .map_err(|e| format!("running {}: {e}", tool.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .nth(1)
        .ok_or_else(|| format!("unexpected llvm-size output: {text}"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .filter_map(|w| w.parse().ok())
        .collect();
    match v.as_slice() {
        [t, d, b] => Ok((*t, *d, *b)),
        _ => Err(format!("unexpected llvm-size output: {text}")),
    }
}

/// A tool of the `llvm-tools` component of the default toolchain.
pub fn llvm_tool(name: &str) -> R<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into());
    let p = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin")
        .join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: run `rustup component add llvm-tools`",
            p.display()
        ))
    }
}

/// Flash (text + data) and static RAM (data + bss) of a firmware.
pub fn flash_ram(elf: &Path) -> R<(u64, u64)> {
    let (t, d, b) = size(elf)?;
    Ok((t + d, d + b))
}

/// Instructions per function (demangled name) of the per-address counts of a run.
pub fn per_function(elf: &Path, pcs: &[(u64, u64)]) -> R<Vec<(String, u64)>> {
    let mut syms: Vec<_> = read_symbols(elf)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|s| s.is_func && s.size > 0)
        .collect();
    syms.sort_by_key(|s| s.addr);
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for (pc, n) in pcs {
        let i = syms.partition_point(|s| s.addr <= *pc);
        let name = i
            .checked_sub(1)
            .map(|i| &syms[i])
            .filter(|s| *pc < s.addr + s.size)
            .map(|s| s.demangled.clone())
            .unwrap_or_else(|| format!("{pc:#x}"));
        *by.entry(name).or_default() += n;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(v)
}

/// Instructions per source line (innermost inlined frame, `file:line`) of the per-address counts,
/// from `llvm-objdump -d -l`.
pub fn per_line(elf: &Path, pcs: &[(u64, u64)]) -> R<Vec<(String, u64)>> {
    let tool = llvm_tool("llvm-objdump")?;
    let lo = pcs.iter().map(|p| p.0).min().unwrap_or(0);
    let hi = pcs.iter().map(|p| p.0).max().unwrap_or(0) + 4;
    let out = Command::new(&tool)
        .args(["-d", "-l", "--no-show-raw-insn"])
        .arg(format!("--start-address={lo:#x}"))
        .arg(format!("--stop-address={hi:#x}"))
        .arg(elf)
        .output()
        .map_err(|e| format!("running {}: {e}", tool.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: BTreeMap<u64, u64> = pcs.iter().copied().collect();
    let mut line_of = String::from("?");
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(src) = t.strip_prefix("; ") {
            if src.contains(".rs:") || src.contains(".c:") {
                line_of = src
                    .replace("/microspan/", "")
                    .replace("/cargo/registry/src/", "");
            }
            continue;
        }
        if let Some((addr, _)) = t.split_once(':') {
            if let Ok(a) = u64::from_str_radix(addr.trim(), 16) {
                if let Some(n) = counts.get(&a) {
                    *by.entry(line_of.clone()).or_default() += n;
                }
            }
        }
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(v)
}

/// The disassembly (`llvm-objdump -d -l`) of every instruction the per-address counts name, each
/// prefixed by its count, under the source lines it came from: where in a function the
/// instructions go, which per-line totals blur when the compiler spreads a line around.
pub fn annotated(elf: &Path, pcs: &[(u64, u64)]) -> R<String> {
    let tool = llvm_tool("llvm-objdump")?;
    let lo = pcs.iter().map(|p| p.0).min().unwrap_or(0);
    let hi = pcs.iter().map(|p| p.0).max().unwrap_or(0) + 4;
    let out = Command::new(&tool)
        .args(["-d", "-l", "-C", "--no-show-raw-insn"])
        .arg(format!("--start-address={lo:#x}"))
        .arg(format!("--stop-address={hi:#x}"))
        .arg(elf)
        .output()
        .map_err(|e| format!("running {}: {e}", tool.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: BTreeMap<u64, u64> = pcs.iter().copied().collect();
    let mut out = String::new();
    let mut pending: Vec<&str> = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with("; ") || t.ends_with(">:") {
            pending.push(t);
            continue;
        }
        let count = t
            .split_once(':')
            .and_then(|(a, _)| u64::from_str_radix(a.trim(), 16).ok())
            .and_then(|a| counts.get(&a));
        if let Some(n) = count {
            for p in pending.drain(..) {
                out.push_str(&format!("        {p}\n"));
            }
            out.push_str(&format!("{n:>6}  {t}\n"));
        } else if !t.is_empty() && t.contains(':') {
            // An instruction not executed: the source lines above it were not either.
            pending.clear();
        }
    }
    Ok(out)
}

/// The per-address counts of one iteration in steady state: `pcs(N_LONG) − pcs(1)`, divided by
/// `N_LONG − 1`, net of nothing (the gates' own few instructions stay, under their names).
pub fn steady_pcs(board: Board, elf: &Path, op: u32) -> R<Vec<(u64, u64)>> {
    let one: BTreeMap<u64, u64> = run(board, elf, op, 1, 0, true)?.pcs.into_iter().collect();
    let many = run(board, elf, op, N_LONG, 0, true)?.pcs;
    Ok(many
        .into_iter()
        .map(|(pc, n)| {
            (
                pc,
                (n - one.get(&pc).copied().unwrap_or(0)) / (N_LONG as u64 - 1),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// A call site whose flash is measured: (what, the `#[inline(never)]` function holding one call,
/// the same function without the call). Matched by the end of the demangled name.
pub type Site = (&'static str, &'static str, &'static str);

/// microspan's call sites in the bench firmware (the functions of its stack mode).
pub const MICROSPAN_SITES: &[Site] = &[
    ("root span, start + finish", "s_root", "s_empty"),
    (
        "child span, start + finish, no tags",
        "s_child0",
        "s_parent",
    ),
    (
        "child span, start + finish, 2 small integer tags (`set_tag` each)",
        "s_child2",
        "s_parent",
    ),
    (
        "child span, start + finish, the same 2 tags given at the start",
        "s_child2_start",
        "s_parent",
    ),
    ("one small integer tag on a live span", "s_tag", "s_parent"),
    ("log with 3 fields", "s_log3", "s_parent"),
    ("unsampled span, start + finish", "s_unsampled", "s_empty"),
];

/// defmt's call sites in `peers/defmt-bench`.
pub const DEFMT_SITES: &[Site] = &[
    ("peer: defmt `info!(\"Foo\")`", "site_info0", "site_empty"),
    (
        "peer: defmt `info!` with two u32 arguments",
        "site_info2",
        "site_empty",
    ),
];

/// SystemView's call sites in `peers/systemview-bench`.
pub const SYSTEMVIEW_SITES: &[Site] = &[
    (
        "peer: SystemView task begin + end pair",
        "site_task",
        "site_empty",
    ),
    (
        "peer: SystemView marker begin + end",
        "site_marker",
        "site_empty",
    ),
];

/// Flash bytes each call site takes: the size of its function less its baseline's, both from the
/// symbol table. What the call inlines is counted; the functions it calls are not (they are
/// shared by every call site, and counted in the footprint).
pub fn call_sites(elf: &Path, sites: &[Site]) -> R<Vec<(&'static str, u64)>> {
    let syms = read_symbols(elf).map_err(|e| e.to_string())?;
    let size = |name: &str| {
        let suffix = format!("::{name}");
        syms.iter()
            .find(|s| s.is_func && (s.demangled == name || s.demangled.ends_with(&suffix)))
            .map(|s| s.size)
            .ok_or_else(|| format!("{}: no function {name}", elf.display()))
    };
    sites
        .iter()
        .map(|&(what, f, base)| Ok((what, size(f)?.saturating_sub(size(base)?))))
        .collect()
}

/// Flash bytes per symbol present in `traced` and not (or smaller) in `plain`: where tracing's
/// flash goes, largest first.
pub fn flash_by_symbol(traced: &Path, plain: &Path) -> R<Vec<(String, u64)>> {
    let sizes = |elf: &Path| -> R<BTreeMap<String, u64>> {
        let mut m = BTreeMap::new();
        for s in read_symbols(elf).map_err(|e| e.to_string())? {
            // Flash only: code and read-only data below the RAM base.
            if s.size > 0 && s.addr < 0x2000_0000 {
                *m.entry(s.demangled).or_default() += s.size;
            }
        }
        Ok(m)
    };
    let t = sizes(traced)?;
    let p = sizes(plain)?;
    let mut v: Vec<(String, u64)> = t
        .into_iter()
        .filter_map(|(name, size)| {
            let before = p.get(&name).copied().unwrap_or(0);
            (size > before).then(|| (name, size - before))
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(v)
}
