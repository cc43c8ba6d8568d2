//! The reference trace over RTT: microspan's frames on up channel 1 (`"microspan"`), text on up
//! channel 0 (`"Terminal"`, where defmt or `rprintln!` go), no UART.
//!
//! The RTT channel is non-blocking (`NoBlockTrim`): with no host reading, the firmware never
//! waits, frames stay in the ring and, once it is full, new records are dropped and counted. At
//! the end it waits, bounded, for the host to read the buffer (`microspan decode --rtt-gdb`), then
//! exits QEMU with code 0.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microspan_boards as board;
use microspan_reference::{self as reference, Pump};
use rtt_target::{rprintln, rtt_init, ChannelMode};

/// How long the firmware waits for the host to read what it wrote, in ticks: 5 s of busy
/// waiting. Busy (not `wfi`): under QEMU's `-icount ...,sleep=off` a sleeping core jumps to its
/// next timer deadline at once, so a sleeping wait would be over before the host's first poll.
const HOST_WAIT_TICKS: u32 = board::TICKS_PER_SECOND * 5;

#[entry]
fn main() -> ! {
    let board::Board { uart: _ } = board::init().expect("first init");
    let channels = rtt_init! {
        up: {
            0: { size: 256, mode: ChannelMode::NoBlockSkip, name: "Terminal" }
            1: { size: 2048, mode: ChannelMode::NoBlockTrim, name: "microspan" }
        }
    };
    rtt_target::set_print_channel(channels.up.0);
    rprintln!("microspan reference: spans on RTT up channel 1");

    let pump = Pump::rtt(channels.up.1).expect("the only drain");
    reference::install_interrupts();
    reference::start_periodic_drain(pump);

    reference::reference_trace();

    let mut pump = reference::stop_periodic_drain();
    let start = board::now_ticks();
    let mut read_by_host = false;
    while board::ticks_since(start) < HOST_WAIT_TICKS {
        pump.pump();
        if !pump.has_pending() && pump.is_flushed() {
            read_by_host = true;
            break;
        }
    }
    if read_by_host {
        rprintln!("microspan reference: the host read every frame");
    } else {
        board::hprint(b"microspan-reference: no host read the RTT buffer within 5 s (is `microspan decode --rtt-gdb` attached?)\n");
    }
    reference::report(&pump);
    board::exit(if read_by_host { 0 } else { 3 })
}
