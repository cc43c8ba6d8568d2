//! Exact instruction counts of firmware running in QEMU, through the TCG plugin in
//! `tools/insn-count` (built here with gcc on first use), optionally restricted to the address
//! range of one function found in the ELF's symbol table.
//!
//! ```no_run
//! use microspan_tests::{insn, qemu::{self, Board}};
//! let board = Board::Lm3s6965;
//! let elf = qemu::build_firmware(board, "microspan-smoke", "smoke", &[]).unwrap();
//! let range = insn::symbol_range(&elf, "smoke::__cortex_m_rt_main").unwrap();
//! let n = insn::count_instructions(&elf, &board.qemu_args(true), Some(range)).unwrap();
//! println!("main executed {n} instructions");
//! ```
//!
//! Counts are per executed instruction, identical from run to run as long as the run itself is
//! deterministic, which `-icount` (in [`crate::qemu::Board::qemu_args`]`(true)`) makes it:
//! without it, timer-driven loops run a host-speed-dependent number of times.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::qemu::{repo_root, run_qemu, QemuError, DEFAULT_TIMEOUT};

/// Instruction counts of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsnCounts {
    /// Every instruction the core executed, from reset to exit.
    pub total: u64,
    /// Instructions executed inside each requested `[lo, hi)` range, in request order.
    pub ranges: Vec<u64>,
}

/// The plugin's C source.
pub fn plugin_source() -> PathBuf {
    repo_root()
        .join("tools")
        .join("insn-count")
        .join("insn_count.c")
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Builds the plugin with gcc if it is missing or older than its source, and returns the path
/// of the shared object (`target/insn-count/libinsn_count.so`).
pub fn build_plugin() -> Result<PathBuf, QemuError> {
    let src = plugin_source();
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = base.join("insn-count");
    let so = dir.join("libinsn_count.so");
    if let (Some(s), Some(o)) = (modified(&src), modified(&so)) {
        if o >= s {
            return Ok(so);
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| QemuError::Io(format!("creating {}", dir.display()), e))?;
    // Build under a unique name and rename, so concurrent tests never load a half-written file.
    static BUILD_ID: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        "libinsn_count.so.{}-{}.tmp",
        std::process::id(),
        BUILD_ID.fetch_add(1, Ordering::Relaxed)
    ));
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| {
            QemuError::Io(
                "running gcc to build the instruction-counting plugin (install it with \
                 `apt-get install -y gcc`)"
                    .into(),
                e,
            )
        })?;
    if !out.status.success() {
        return Err(QemuError::Build(format!(
            "gcc failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, &so)
        .map_err(|e| QemuError::Io(format!("moving the plugin to {}", so.display()), e))?;
    Ok(so)
}

/// Runs `elf` in QEMU with `qemu_args` (for example `board.qemu_args(true)`; add `-serial` to
/// direct the UART, which otherwise goes to the console) and returns the number of instructions
/// executed — all of them, or only those at addresses in `range = (lo, hi)` (`hi` exclusive).
///
/// Fails if the firmware does not exit with code 0 within the default timeout.
pub fn count_instructions(
    elf: &Path,
    qemu_args: &[String],
    range: Option<(u64, u64)>,
) -> Result<u64, QemuError> {
    let ranges: Vec<(u64, u64)> = range.into_iter().collect();
    let counts = count_instructions_in(elf, qemu_args, &ranges)?;
    Ok(match range {
        Some(_) => counts.ranges[0],
        None => counts.total,
    })
}

/// Like [`count_instructions`], counting up to 16 ranges in one run.
pub fn count_instructions_in(
    elf: &Path,
    qemu_args: &[String],
    ranges: &[(u64, u64)],
) -> Result<InsnCounts, QemuError> {
    if ranges.len() > 16 {
        return Err(QemuError::Parse(
            "the plugin counts at most 16 ranges per run".into(),
        ));
    }
    let plugin = build_plugin()?;
    static RUN_ID: AtomicU64 = AtomicU64::new(0);
    let out_file = std::env::temp_dir().join(format!(
        "microspan-insn-{}-{}.txt",
        std::process::id(),
        RUN_ID.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&out_file);
    let mut spec = plugin.display().to_string();
    for (lo, hi) in ranges {
        spec.push_str(&format!(",range={lo:#x}-{hi:#x}"));
    }
    spec.push_str(&format!(",out={}", out_file.display()));
    let mut args = qemu_args.to_vec();
    args.push("-plugin".into());
    args.push(spec);
    let (status, timed_out, console, _) = run_qemu(&args, elf, DEFAULT_TIMEOUT)?;
    let code = status.and_then(|s| s.code());
    if timed_out || code != Some(0) {
        return Err(QemuError::Parse(format!(
            "firmware {} under the counting plugin (expected exit code 0); console:\n{console}",
            if timed_out {
                "timed out".to_string()
            } else {
                format!("exited with {code:?}")
            }
        )));
    }
    let text = std::fs::read_to_string(&out_file).map_err(|e| {
        QemuError::Io(
            format!("reading the plugin's output {}", out_file.display()),
            e,
        )
    })?;
    let _ = std::fs::remove_file(&out_file);
    parse_counts(&text, ranges.len())
}

fn parse_counts(text: &str, n_ranges: usize) -> Result<InsnCounts, QemuError> {
    let bad = || QemuError::Parse(format!("unexpected plugin output:\n{text}"));
    let mut total = None;
    let mut ranges = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["total", n] => total = Some(n.parse().map_err(|_| bad())?),
            ["range", _, _, n] => ranges.push(n.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    if ranges.len() != n_ranges {
        return Err(bad());
    }
    Ok(InsnCounts {
        total: total.ok_or_else(bad)?,
        ranges,
    })
}

/// A symbol of an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// The name as stored (mangled for Rust functions).
    pub name: String,
    /// The name with Rust's legacy mangling undone (`crate::module::function`, no hash).
    pub demangled: String,
    /// Start address (the Thumb bit cleared).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Whether the symbol is a function (`STT_FUNC`).
    pub is_func: bool,
}

/// Reads the symbol table of a 32-bit little-endian ELF file (what every Cortex-M target emits).
pub fn read_symbols(elf: &Path) -> Result<Vec<Symbol>, QemuError> {
    let data =
        std::fs::read(elf).map_err(|e| QemuError::Io(format!("reading {}", elf.display()), e))?;
    parse_elf32_symbols(&data).ok_or_else(|| {
        QemuError::Parse(format!(
            "{} is not a 32-bit little-endian ELF with a symbol table",
            elf.display()
        ))
    })
}

fn parse_elf32_symbols(d: &[u8]) -> Option<Vec<Symbol>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?));
    if d.get(0..4)? != b"\x7fELF" || d[4] != 1 || d[5] != 1 {
        return None;
    }
    let shoff = u32_at(0x20)? as usize;
    let shentsize = u16_at(0x2E)? as usize;
    let shnum = u16_at(0x30)? as usize;
    let section = |i: usize| {
        let b = shoff + i * shentsize;
        Some((
            u32_at(b + 4)?,
            u32_at(b + 0x10)? as usize,
            u32_at(b + 0x14)? as usize,
            u32_at(b + 0x18)? as usize,
        ))
    };
    let mut out = Vec::new();
    for i in 0..shnum {
        let (ty, off, size, link) = section(i)?;
        if ty != 2 {
            continue; // SHT_SYMTAB
        }
        let (_, str_off, str_size, _) = section(link)?;
        let strtab = d.get(str_off..str_off + str_size)?;
        for s in d.get(off..off + size)?.chunks_exact(16) {
            let name_off = u32::from_le_bytes(s[0..4].try_into().ok()?) as usize;
            let value = u32::from_le_bytes(s[4..8].try_into().ok()?) as u64;
            let sz = u32::from_le_bytes(s[8..12].try_into().ok()?) as u64;
            let info = s[12];
            let name_bytes = strtab.get(name_off..)?;
            let end = name_bytes.iter().position(|&b| b == 0)?;
            let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
            if name.is_empty() {
                continue;
            }
            let is_func = info & 0xF == 2;
            let addr = if is_func { value & !1 } else { value };
            out.push(Symbol {
                demangled: demangle_legacy(&name),
                name,
                addr,
                size: sz,
                is_func,
            });
        }
    }
    Some(out)
}

/// Undoes Rust's legacy symbol mangling (`_ZN` + length-prefixed path + `17h<hash>E`), enough to
/// find functions by path. Names that are not mangled come back unchanged.
pub fn demangle_legacy(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return name.to_string();
        };
        let Some(ident) = rest.get(digits..digits + len) else {
            return name.to_string();
        };
        parts.push(ident.to_string());
        rest = &rest[digits + len..];
    }
    if parts
        .last()
        .is_some_and(|p| p.len() == 17 && p.starts_with('h'))
    {
        parts.pop();
    }
    parts
        .iter()
        .map(|p| {
            p.replace("$LT$", "<")
                .replace("$GT$", ">")
                .replace("$u20$", " ")
                .replace("$RF$", "&")
                .replace("..", "::")
        })
        .collect::<Vec<_>>()
        .join("::")
}

/// The `[start, end)` address range of the function named `name`: its exact (mangled) symbol
/// name, or its demangled path or a `::`-suffix of it (`"now_ticks"`,
/// `"microspan_boards::board::now_ticks"`). Fails if no function or several match.
///
/// A function that LTO inlined everywhere has no symbol: mark it `#[inline(never)]` (or
/// `#[no_mangle]`) in benchmark firmware.
pub fn symbol_range(elf: &Path, name: &str) -> Result<(u64, u64), QemuError> {
    let suffix = format!("::{name}");
    let syms = read_symbols(elf)?;
    let found: Vec<&Symbol> = syms
        .iter()
        .filter(|s| s.is_func && s.size > 0)
        .filter(|s| s.name == name || s.demangled == name || s.demangled.ends_with(&suffix))
        .collect();
    match found.as_slice() {
        [s] => Ok((s.addr, s.addr + s.size)),
        [] => Err(QemuError::Parse(format!(
            "no function `{name}` in {} (inlined? mark it #[inline(never)])",
            elf.display()
        ))),
        many => Err(QemuError::Parse(format!(
            "`{name}` matches several functions in {}: {}",
            elf.display(),
            many.iter()
                .map(|s| s.demangled.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_legacy_paths() {
        assert_eq!(
            demangle_legacy("_ZN16microspan_boards5board9now_ticks17h0123456789abcdefE"),
            "microspan_boards::board::now_ticks"
        );
        assert_eq!(demangle_legacy("main"), "main");
        assert_eq!(demangle_legacy("_ZN3foo"), "_ZN3foo");
    }

    #[test]
    fn parses_plugin_output() {
        let c = parse_counts("total 10\nrange 0x0 0x10 3\n", 1).unwrap();
        assert_eq!(
            c,
            InsnCounts {
                total: 10,
                ranges: vec![3]
            }
        );
        assert!(parse_counts("total x\n", 0).is_err());
        assert!(parse_counts("total 1\n", 1).is_err());
    }
}
