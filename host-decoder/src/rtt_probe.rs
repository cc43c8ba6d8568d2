//! RTT straight from a USB debug probe, through the probe-rs library (cargo feature `probe-rs`).
//!
//! `microspan decode --probe-rtt --chip NAME [--probe VID:PID[:SERIAL]] [--elf FIRMWARE.elf]
//! [--rtt-channel 1]` opens a probe probe-rs supports (CMSIS-DAP v2, ST-Link, J-Link, ESP USB-JTAG,
//! FTDI, …), attaches to the chip, finds the RTT control block and reads one up-channel, with no GDB
//! server in between. It is the same stream [`crate::rtt_gdb`] reads; the shape of the reader is
//! the same too ([`RttProbeReader`] is a [`Read`] to plug into [`crate::input::Source::reader`]).
//!
//! Unlike RTT over GDB, the core is **not** halted to poll: probe-rs reads the channel's
//! `WrOff`/buffer and writes `RdOff` through the debug port's memory access port while the core
//! runs (Cortex-M and RISC-V with system bus access).
//!
//! The control block is at the ELF's `_SEGGER_RTT` symbol when `--elf` is given, else probe-rs
//! scans the RAM regions of the chip's description. The firmware may not have called `rtt_init!`
//! yet when the decoder starts: the attachment is retried until [`Config::locate_timeout`].
//!
//! CMSIS-DAP v1 (HID) probes are not supported: that probe-rs feature needs hidapi and libudev,
//! and this build keeps to pure Rust. Use `--rtt-gdb` with `probe-rs gdb` or OpenOCD for those.

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use probe_rs::config::{Registry, RegistryError};
use probe_rs::probe::list::{Accessibility, Lister};
use probe_rs::probe::DebugProbeSelector;
use probe_rs::rtt::{Rtt, ScanRegion};
use probe_rs::{Permissions, Session};

/// Settings of a direct probe connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// The chip, as probe-rs names it (`probe-rs chip list`), e.g. `nRF52840_xxAA`, `STM32F411RETx`.
    pub chip: String,
    /// Which probe, `VID:PID[:SERIAL]` (hex ids, as `probe-rs list` prints them); `None` takes
    /// the only one attached.
    pub probe: Option<String>,
    /// The firmware's ELF: the control block is at its `_SEGGER_RTT` symbol (no scan).
    pub elf: Option<PathBuf>,
    /// The up-channel to read (microspan's convention: 1; defmt keeps 0).
    pub channel: u32,
    /// The core to read through (0 on single-core chips).
    pub core: usize,
    /// Pause between polls of an empty channel.
    pub poll_interval: Duration,
    /// How long to keep looking for an initialised control block.
    pub locate_timeout: Duration,
    /// How long [`Read::read`] polls without data before returning a `TimedOut` error (so a
    /// caller can update a status line; [`crate::input::Source`] treats it as "nothing yet").
    pub idle_return: Duration,
}

impl Config {
    /// Defaults for `chip`: the only probe, channel 1, core 0, poll every 5 ms.
    pub fn new(chip: impl Into<String>) -> Self {
        Self {
            chip: chip.into(),
            probe: None,
            elf: None,
            channel: 1,
            core: 0,
            poll_interval: Duration::from_millis(5),
            locate_timeout: Duration::from_secs(5),
            idle_return: Duration::from_millis(200),
        }
    }
}

/// What can go wrong; each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RttProbeError {
    /// `--probe` is not `VID:PID[:SERIAL]`.
    #[error("--probe {given:?}: {msg}; expected VID:PID or VID:PID:SERIAL in hex, as `probe-rs list` prints it (e.g. 1366:1051:000683123456)")]
    Selector {
        /// What was given.
        given: String,
        /// What was wrong.
        msg: String,
    },
    /// probe-rs does not know the chip.
    #[error("chip name {chip:?} unknown to probe-rs ({msg}){suggest}: see `probe-rs chip list` for the names")]
    UnknownChip {
        /// What was given.
        chip: String,
        /// probe-rs's reason.
        msg: String,
        /// ", did you mean …" or nothing.
        suggest: String,
    },
    /// No probe at all, or none matching `--probe`.
    #[error("no probe found{which}: is it plugged in, and do you have udev rules / permissions for it? (https://probe.rs/docs/getting-started/probe-setup/; `probe-rs list` shows what it sees)")]
    NoProbe {
        /// " matching VID:PID…" or nothing.
        which: String,
    },
    /// Probes are there but this user may not open them.
    #[error("found {list} but may not open it: install probe-rs's udev rules (https://probe.rs/docs/getting-started/probe-setup/) and replug it, or add yourself to the group owning the device")]
    PermissionDenied {
        /// The probes.
        list: String,
    },
    /// More than one probe and no `--probe`.
    #[error("{n} probes attached ({list}): choose one with --probe VID:PID[:SERIAL]")]
    Ambiguous {
        /// How many.
        n: usize,
        /// The probes.
        list: String,
    },
    /// Opening the probe or attaching to the chip failed.
    #[error("{what}: {msg}. {hint}")]
    Attach {
        /// What was being done.
        what: String,
        /// probe-rs's reason.
        msg: String,
        /// What to check.
        hint: &'static str,
    },
    /// The ELF could not be read or has no `_SEGGER_RTT`.
    #[error(transparent)]
    Elf(#[from] crate::rtt_gdb::RttGdbError),
    /// No control block found before the deadline.
    #[error("no RTT control block found {place} within {secs:.1} s ({msg}): is the firmware running and did it call rtt_init!? pass --elf FIRMWARE.elf to read its `_SEGGER_RTT` symbol instead of scanning")]
    NoControlBlock {
        /// Where it was looked for.
        place: String,
        /// How long.
        secs: f64,
        /// probe-rs's last reason.
        msg: String,
    },
    /// The requested up-channel does not exist or was never initialised.
    #[error("the RTT control block at {cb:#010x} has initialised up channel(s) {have:?}, not {channel}: pick another with --rtt-channel N (microspan uses 1, defmt 0)")]
    NoChannel {
        /// Control block address.
        cb: u64,
        /// Numbers of the initialised up channels.
        have: Vec<usize>,
        /// The requested channel.
        channel: u32,
    },
    /// Reading the channel failed (probe unplugged, target reset or powered down).
    #[error("reading RTT up channel {channel} through the probe: {msg}. Is the probe still plugged in and the target powered?")]
    Read {
        /// The channel.
        channel: u32,
        /// probe-rs's reason.
        msg: String,
    },
}

impl From<RttProbeError> for io::Error {
    fn from(e: RttProbeError) -> Self {
        io::Error::other(e.to_string())
    }
}

/// Parses `--probe VID:PID[:SERIAL]` (also probe-rs's `VID:PID-INTERFACE[:SERIAL]`).
pub fn parse_selector(s: &str) -> Result<DebugProbeSelector, RttProbeError> {
    s.parse::<DebugProbeSelector>()
        .map_err(|e| RttProbeError::Selector {
            given: s.to_string(),
            msg: e.to_string(),
        })
}

/// Checks `chip` against probe-rs's built-in chip database (no probe needed).
pub fn check_chip(chip: &str) -> Result<(), RttProbeError> {
    let registry = Registry::from_builtin_families();
    match registry.get_target_by_name(chip) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut near = match e {
                RegistryError::ChipNotUnique(..) => Vec::new(),
                _ => registry.search_chips(chip),
            };
            near.truncate(5);
            let suggest = if near.is_empty() {
                String::new()
            } else {
                format!(", did you mean {}", near.join(", "))
            };
            Err(RttProbeError::UnknownChip {
                chip: chip.to_string(),
                msg: e.to_string(),
                suggest,
            })
        }
    }
}

/// The index, among the initialised up channels (numbered `numbers`), of channel `wanted`.
///
/// probe-rs keeps only initialised channels, so the index is not the channel number when a lower
/// channel was never set up (a firmware with microspan on 1 and nothing on 0).
pub fn pick_channel(numbers: &[usize], wanted: u32) -> Option<usize> {
    numbers.iter().position(|&n| n as u64 == wanted as u64)
}

/// An RTT up-channel read through a USB probe, as a blocking [`Read`].
///
/// `read` returns the channel's bytes as they arrive and a `TimedOut` error after
/// [`Config::idle_return`] without data. It never reports the end of input (a probe has no
/// "target exited"): the caller stops with Ctrl-C.
pub struct RttProbeReader {
    session: Session,
    rtt: Rtt,
    /// Index of the channel in `rtt.up_channels()`.
    index: usize,
    cfg: Config,
    name: String,
    size: usize,
    probe: String,
    bytes: u64,
    polls: u64,
}

impl RttProbeReader {
    /// Opens the probe, attaches to the chip, finds the control block and the channel (waiting
    /// up to [`Config::locate_timeout`]), and leaves the target running.
    pub fn connect(cfg: Config) -> Result<Self, RttProbeError> {
        check_chip(&cfg.chip)?;
        let selector = cfg.probe.as_deref().map(parse_selector).transpose()?;
        let elf_cb = cfg
            .elf
            .as_deref()
            .map(crate::rtt_gdb::control_block_from_elf)
            .transpose()?;

        let lister = Lister::new();
        let found = lister.list_with_access(selector.as_ref());
        let describe = |items: &[&probe_rs::probe::list::ProbeListItem]| {
            items
                .iter()
                .map(|p| p.info.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let usable: Vec<_> = found
            .iter()
            .filter(|p| p.accessibility == Accessibility::Accessible)
            .collect();
        let denied: Vec<_> = found
            .iter()
            .filter(|p| p.accessibility == Accessibility::PermissionDenied)
            .collect();
        let info = match (usable.as_slice(), denied.is_empty()) {
            ([one], _) => one.info.clone(),
            ([], false) => {
                return Err(RttProbeError::PermissionDenied {
                    list: describe(&denied),
                })
            }
            ([], true) => {
                return Err(RttProbeError::NoProbe {
                    which: cfg
                        .probe
                        .as_ref()
                        .map(|p| format!(" matching {p}"))
                        .unwrap_or_default(),
                })
            }
            (many, _) => {
                return Err(RttProbeError::Ambiguous {
                    n: many.len(),
                    list: describe(many),
                })
            }
        };
        let probe_name = info.to_string();
        let probe = info.open().map_err(|e| RttProbeError::Attach {
            what: format!("cannot open the probe {probe_name}"),
            msg: e.to_string(),
            hint: "Is another program (probe-rs, OpenOCD, a debugger) using it? Are the udev rules installed?",
        })?;
        let mut session = probe
            .attach(cfg.chip.as_str(), Permissions::default())
            .map_err(|e| RttProbeError::Attach {
                what: format!("cannot attach to {} through {probe_name}", cfg.chip),
                msg: e.to_string(),
                hint: "Check the wiring (SWDIO/SWCLK/GND), that the target is powered, and that --chip names this chip",
            })?;

        let region = match elf_cb {
            Some(a) => ScanRegion::Exact(a as u64),
            None => ScanRegion::Ram,
        };
        let deadline = Instant::now() + cfg.locate_timeout;
        let mut rtt = loop {
            let attempt = {
                let mut core = session.core(cfg.core).map_err(|e| RttProbeError::Attach {
                    what: format!("cannot use core {} of {}", cfg.core, cfg.chip),
                    msg: e.to_string(),
                    hint: "Single-core chips have only core 0",
                })?;
                Rtt::attach_region(&mut core, &region)
            };
            match attempt {
                Ok(rtt) => break rtt,
                Err(e) if Instant::now() >= deadline => {
                    let place = match (&cfg.elf, elf_cb) {
                        (Some(p), Some(a)) => {
                            format!("at `_SEGGER_RTT` ({a:#010x}, from {})", p.display())
                        }
                        _ => format!("in the RAM of {}", cfg.chip),
                    };
                    return Err(RttProbeError::NoControlBlock {
                        place,
                        secs: cfg.locate_timeout.as_secs_f64(),
                        msg: e.to_string(),
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let numbers: Vec<usize> = rtt.up_channels().iter().map(|c| c.number()).collect();
        let index = pick_channel(&numbers, cfg.channel).ok_or(RttProbeError::NoChannel {
            cb: rtt.ptr(),
            have: numbers,
            channel: cfg.channel,
        })?;
        let chan = &rtt.up_channels()[index];
        let name = chan.name().unwrap_or_default().to_string();
        let size = chan.buffer_size();
        Ok(Self {
            session,
            rtt,
            index,
            cfg,
            name,
            size,
            probe: probe_name,
            bytes: 0,
            polls: 0,
        })
    }

    /// What this source is, for messages.
    pub fn describe(&self) -> String {
        format!(
            "probe-rtt {} via {} up channel {} {:?} (control block {:#010x}, {} B buffer)",
            self.cfg.chip,
            self.probe,
            self.cfg.channel,
            self.name,
            self.rtt.ptr(),
            self.size
        )
    }

    /// The channel's name as the firmware set it.
    pub fn channel_name(&self) -> &str {
        &self.name
    }

    /// Bytes read from the channel so far, and polls made.
    pub fn counters(&self) -> (u64, u64) {
        (self.bytes, self.polls)
    }

    /// One non-blocking read of the channel.
    fn poll(&mut self, buf: &mut [u8]) -> Result<usize, RttProbeError> {
        let channel = self.cfg.channel;
        let err = |e: &dyn std::fmt::Display| RttProbeError::Read {
            channel,
            msg: e.to_string(),
        };
        let mut core = self.session.core(self.cfg.core).map_err(|e| err(&e))?;
        self.polls += 1;
        let n = self.rtt.up_channels()[self.index]
            .read(&mut core, buf)
            .map_err(|e| err(&e))?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Read for RttProbeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        loop {
            let n = self.poll(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if started.elapsed() >= self.cfg.idle_return {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no RTT data yet"));
            }
            std::thread::sleep(self.cfg.poll_interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_is_picked_by_number_not_index() {
        // Channel 0 never initialised: probe-rs lists only channel 1, at index 0.
        assert_eq!(pick_channel(&[1], 1), Some(0));
        assert_eq!(pick_channel(&[0, 1, 2], 1), Some(1));
        assert_eq!(pick_channel(&[0], 1), None);
        assert_eq!(pick_channel(&[], 0), None);
    }

    #[test]
    fn probe_selectors() {
        let s = parse_selector("1366:1051:000683123456").unwrap();
        assert_eq!((s.vendor_id, s.product_id), (0x1366, 0x1051));
        assert_eq!(s.serial_number.as_deref(), Some("000683123456"));
        let s = parse_selector("0483:374b").unwrap();
        assert_eq!(
            (s.vendor_id, s.product_id, s.serial_number),
            (0x0483, 0x374b, None)
        );
        let e = parse_selector("stlink").unwrap_err().to_string();
        assert!(e.contains("VID:PID"), "{e}");
    }

    #[test]
    fn chips_from_the_builtin_database() {
        check_chip("nRF52840_xxAA").unwrap();
        let e = check_chip("no-such-chip-xyz").unwrap_err().to_string();
        assert!(e.contains("probe-rs chip list"), "{e}");
    }

    #[test]
    fn errors_name_the_fix() {
        let e = RttProbeError::NoProbe {
            which: String::new(),
        }
        .to_string();
        assert!(e.contains("plugged in") && e.contains("udev"), "{e}");
        let e = RttProbeError::NoChannel {
            cb: 0x2000_0000,
            have: vec![0],
            channel: 1,
        }
        .to_string();
        assert!(e.contains("--rtt-channel"), "{e}");
    }

    #[test]
    fn defaults_read_the_microspan_channel() {
        let c = Config::new("nRF52840_xxAA");
        assert_eq!((c.channel, c.core, c.probe), (1, 0, None));
    }
}
