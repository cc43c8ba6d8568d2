//! `cargo run -p microspan-tests --release --bin insn-probe [-- OP…] [--profile OP] [--annotate] [--stack] [--board m3|m0]`
//!
//! A quick look at the record path while working on it: builds the bench firmware, prints the net
//! instructions of the named operations (all of them by default) on each board, and, with
//! `--profile OP`, where one iteration of OP spends its instructions, per function and per source
//! line (and with `--annotate`, per instruction, in the disassembly). With no op named, also the
//! flash each record call site takes; with `--stack`, the stack each
//! record call takes. The same measurement code as `bench` and the budgets test; nothing is written to disk.

#[path = "../bench/mod.rs"]
mod measure;

use measure::{ops, Firmware, R};
use microspan_tests::qemu::Board;

fn main() {
    if let Err(e) = run() {
        eprintln!("insn-probe: {e}");
        std::process::exit(1);
    }
}

fn run() -> R<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut names = Vec::new();
    let mut profile = None;
    let mut annotate = false;
    let mut stack = false;
    let mut boards = Board::ALL.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--profile" => profile = Some(it.next().ok_or("--profile needs an op")?.clone()),
            "--annotate" => annotate = true,
            "--stack" => stack = true,
            "--board" => {
                boards = match it.next().map(String::as_str) {
                    Some("m3") => vec![Board::Lm3s6965],
                    Some("m0") => vec![Board::Microbit],
                    _ => return Err("--board takes m3 or m0".into()),
                }
            }
            n => names.push(n.to_string()),
        }
    }
    let find = |n: &str| {
        ops::ALL
            .iter()
            .copied()
            .find(|o| o.name == n)
            .ok_or_else(|| format!("unknown op {n}"))
    };
    for board in boards {
        let elf = Firmware::bench().build(board)?;
        let all = measure::microspan_ops(board, &elf)?;
        for (name, v) in &all {
            if names.is_empty() || names.iter().any(|n| n == name) {
                println!("{board:>10} {name:<16} {v:>8.1}");
            }
        }
        if names.is_empty() {
            for (what, bytes) in measure::call_sites(&elf, measure::MICROSPAN_SITES)? {
                println!("{board:>10} flash per call site: {what}: {bytes} B");
            }
        }
        if stack {
            for (name, bytes) in measure::stack(board, &elf)? {
                println!("{board:>10} stack {name:<16} {bytes:>4} B");
            }
        }
        if let Some(p) = &profile {
            let op = find(p)?;
            let pcs = measure::steady_pcs(board, &elf, op.id)?;
            println!(
                "{board}: {p}: {} instructions per iteration (gates included)",
                pcs.iter().map(|p| p.1).sum::<u64>()
            );
            for (f, n) in measure::per_function(&elf, &pcs)?.iter().take(15) {
                println!("  {n:>6}  {f}");
            }
            for (l, n) in measure::per_line(&elf, &pcs)?.iter().take(40) {
                println!("  {n:>6}  {l}");
            }
            if annotate {
                print!("{}", measure::annotated(&elf, &pcs)?);
            }
        }
    }
    Ok(())
}
