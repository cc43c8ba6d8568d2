//! defmt + defmt-rtt, measured like microspan's bench firmware: op 0 nothing, op 1
//! `info!("Foo")`, op 2 `info!("Bar {=u32} {=u32}", ..)`, each with a u32 timestamp (the board's
//! tick counter), `iterations` times between the counting gates. After each op the RTT up-channel
//! is marked read (as a host would) and the bytes it received are added up.
#![no_std]
#![no_main]

#[path = "../../common.rs"]
mod common;

use common::{bench_gate_off, bench_gate_on, config, rtt_take, say};
use cortex_m_rt::entry;
use defmt_rtt as _;
use microspan_boards as board;

defmt::timestamp!("{=u32}", board::now_ticks());

extern "C" {
    static _SEGGER_RTT: u8;
}

/// An op no run selects: it only keeps the `site_*` functions linked.
const SITES: u32 = 99;

// One call site each, in a function of its own: their `llvm-nm` sizes (net of `site_empty`) are
// the flash a call site takes, beside microspan's in the bench report. Never run.
#[inline(never)]
fn site_empty(_: u32) {}
#[inline(never)]
fn site_info0(_: u32) {
    defmt::info!("Foo");
}
#[inline(never)]
fn site_info2(i: u32) {
    defmt::info!("Bar {=u32} {=u32}", i, 200u32);
}

#[entry]
fn main() -> ! {
    let _board = board::init().expect("first init");
    let Some((op, n, _)) = config() else {
        say(format_args!("defmt-bench: no BENCH_CONFIG"));
        board::exit(2)
    };
    let cb = core::ptr::addr_of!(_SEGGER_RTT);
    // The first message also initialises defmt-rtt's channel: do it outside the gates.
    defmt::info!("start");
    rtt_take(cb, 0);
    if op == SITES {
        // Through pointers the compiler cannot see through, so none is dropped as having no
        // effect (as the empty baseline would be).
        let sites: [fn(u32); 3] = [site_empty, site_info0, site_info2];
        for site in core::hint::black_box(sites) {
            site(n);
        }
    }
    let mut bytes = 0u32;
    for i in 0..n {
        bench_gate_on();
        match op {
            1 => defmt::info!("Foo"),
            2 => defmt::info!("Bar {=u32} {=u32}", i, 200u32),
            _ => {}
        }
        bench_gate_off();
        bytes += rtt_take(cb, 0);
    }
    say(format_args!("peer: op={op} n={n} bytes={bytes}"));
    board::exit(0)
}
