//! SEGGER SystemView through systemview-target / rtos-trace, measured like microspan's bench
//! firmware: op 0 nothing, op 1 a task begin+end pair (`task_exec_begin` + `task_exec_end`), op 2
//! `marker_begin`+`marker_end` (two events carrying one u32 each). SystemView's RTT channel 1 is
//! marked read after each op (as the host would) and the bytes it received are added up.
//! Timestamps come from the DWT cycle counter, which QEMU reads as 0: the recorded
//! timestamp deltas are therefore the smallest possible.
#![no_std]
#![no_main]

#[path = "../../common.rs"]
mod common;

use common::{bench_gate_off, bench_gate_on, config, rtt_take, say};
use cortex_m_rt::entry;
use microspan_boards as board;
use rtos_trace::RtosTrace;
use systemview_target::SystemView;

static SYSTEMVIEW: SystemView = SystemView::new();

rtos_trace::global_application_callbacks! {Application}
struct Application;

impl rtos_trace::RtosTraceApplicationCallbacks for Application {
    fn system_description() {}
    fn sysclock() -> u32 {
        board::TICKS_PER_SECOND
    }
}

extern "C" {
    static _SEGGER_RTT: u8;
}

/// SystemView's timestamp on cores without a DWT cycle counter (Cortex-M0): the configuration
/// of systemview-target leaves it to the application. The board's tick counter, as microspan's
/// bench firmware uses.
#[cfg(target_arch = "arm")]
#[cfg(not(target_feature = "v7"))]
#[no_mangle]
pub extern "C" fn SEGGER_SYSVIEW_X_GetTimestamp() -> u32 {
    board::now_ticks()
}

/// An op no run selects: it only keeps the `site_*` functions linked.
const SITES: u32 = 99;

// One call site each, in a function of its own: their `llvm-nm` sizes (net of `site_empty`) are
// the flash a call site takes, beside microspan's in the bench report. Never run.
#[inline(never)]
fn site_empty(_: u32) {}
#[inline(never)]
fn site_task(_: u32) {
    SystemView::task_exec_begin(1);
    SystemView::task_exec_end();
}
#[inline(never)]
fn site_marker(i: u32) {
    SystemView::marker_begin(i);
    SystemView::marker_end(200);
}

#[entry]
fn main() -> ! {
    let _board = board::init().expect("first init");
    let Some((op, n, _)) = config() else {
        say(format_args!("systemview-bench: no BENCH_CONFIG"));
        board::exit(2)
    };
    let cb = core::ptr::addr_of!(_SEGGER_RTT);
    SYSTEMVIEW.init();
    SystemView::start();
    SystemView::task_new(1);
    rtt_take(cb, 1);
    if op == SITES {
        // Through pointers the compiler cannot see through, so none is dropped as having no
        // effect (as the empty baseline would be).
        let sites: [fn(u32); 3] = [site_empty, site_task, site_marker];
        for site in core::hint::black_box(sites) {
            site(n);
        }
    }
    let mut bytes = 0u32;
    for i in 0..n {
        bench_gate_on();
        match op {
            1 => {
                SystemView::task_exec_begin(1);
                SystemView::task_exec_end();
            }
            2 => {
                SystemView::marker_begin(i);
                SystemView::marker_end(200);
            }
            _ => {}
        }
        bench_gate_off();
        bytes += rtt_take(cb, 1);
    }
    say(format_args!("peer: op={op} n={n} bytes={bytes}"));
    board::exit(0)
}
