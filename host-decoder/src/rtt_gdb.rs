//! RTT without a probe library: read a SEGGER RTT up-channel through a GDB server.
//!
//! `microspan decode --rtt-gdb HOST:PORT [--elf FIRMWARE.elf] [--rtt-channel 1]` speaks the GDB
//! remote serial protocol over TCP to any GDB server:
//!
//! | server | start it with | port |
//! |---|---|---|
//! | QEMU | `qemu-system-arm … -gdb tcp::3333` (add `-S` to start halted) | 3333 |
//! | OpenOCD | `openocd -f interface/… -f target/…` | 3333 |
//! | SEGGER J-Link GDB server | `JLinkGDBServer -device … -if SWD` | 2331 |
//! | pyOCD | `pyocd gdbserver` | 3333 |
//! | probe-rs | `probe-rs gdb --chip …` | 1337 |
//!
//! The cycle ([`RttGdbReader`]):
//! 1. connect; `qSupported` (packet size), `QStartNoAckMode` when offered; the target is halted
//!    (GDB servers halt on attach; QEMU's stub halts the guest while it answers);
//! 2. find the RTT control block: at the ELF's `_SEGGER_RTT` symbol when `--elf` is given, else by
//!    scanning RAM (`0x2000_0000`, 64 KiB by default) for the id `"SEGGER RTT"`. A firmware that
//!    has not called `rtt_init!` yet is let run and looked at again until a deadline;
//! 3. read the up-buffer descriptor (name, buffer, size, `WrOff`, `RdOff`, flags), copy the bytes
//!    between `RdOff` and `WrOff` (wrapping), write `RdOff` back, `c`ontinue the target, sleep a
//!    little, halt it again (`0x03` → stop reply), repeat.
//!
//! When the target exits (a `W`/`X` stop reply, as QEMU sends after a semihosting exit) or the
//! server closes the connection, the reader reports the end of input. Targets are assumed
//! 32-bit little-endian (every Cortex-M; RISC-V MCUs too).
//!
//! Each poll halts the core for about a millisecond (QEMU) to a few (a probe): fine for tracing,
//! not for hard real-time control loops. The descriptor layout is SEGGER's:
//!
//! | offset | field |
//! |---|---|
//! | 0 | id, 16 bytes, `"SEGGER RTT\0…"` |
//! | 16 | `MaxNumUpBuffers` (u32) |
//! | 20 | `MaxNumDownBuffers` (u32) |
//! | 24 + 24·n | up buffer n: `sName`, `pBuffer`, `SizeOfBuffer`, `WrOff`, `RdOff`, `Flags` (u32 each) |

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The control block's id.
const RTT_ID: &[u8; 10] = b"SEGGER RTT";
/// Bytes of the control block header (id + two counts).
const HEADER: u32 = 24;
/// Bytes of one buffer descriptor.
const DESCRIPTOR: u32 = 24;
/// Largest memory read per `m` packet, whatever the server offers.
const MAX_CHUNK: usize = 4096;

/// The longest packet payload taken from the server (escaped, before the checksum): far above
/// any answer this reader asks for (an `m` reply of `MAX_CHUNK` bytes is twice that in hex), so
/// only a broken or hostile server reaches it; the memory a packet takes stays bounded.
const MAX_PACKET: usize = 64 * 1024;
/// Up-buffers larger than this are refused as corrupt (a real one is a few KiB).
const MAX_BUFFER: u32 = 16 << 20;

/// Settings of an RTT-over-GDB connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// The GDB server, `HOST:PORT`.
    pub addr: String,
    /// The firmware's ELF: the control block is at its `_SEGGER_RTT` symbol (no scan).
    pub elf: Option<PathBuf>,
    /// The up-channel to read (microspan's convention: 1; defmt keeps 0).
    pub channel: u32,
    /// Start of the RAM scanned for the control block when no ELF is given.
    pub scan_start: u32,
    /// Bytes of RAM scanned.
    pub scan_size: u32,
    /// Pause between polls while the target runs.
    pub poll_interval: Duration,
    /// How long to keep looking for an initialised control block (the firmware may still be
    /// booting, or QEMU may have been started halted with `-S`).
    pub locate_timeout: Duration,
    /// How long to wait for any one answer of the GDB server.
    pub io_timeout: Duration,
    /// How long [`Read::read`] polls without data before returning a `TimedOut` error (so a
    /// caller can update a status line; [`crate::input::Source`] treats it as "nothing yet").
    pub idle_return: Duration,
}

impl Config {
    /// Defaults for `addr`: channel 1, scan 64 KiB at 0x2000_0000, poll every 5 ms.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            elf: None,
            channel: 1,
            scan_start: 0x2000_0000,
            scan_size: 64 * 1024,
            poll_interval: Duration::from_millis(5),
            locate_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            idle_return: Duration::from_millis(200),
        }
    }
}

/// What can go wrong; each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RttGdbError {
    /// The TCP connection could not be made.
    #[error("cannot connect to the GDB server at {addr}: {source}. Is it running there? (QEMU: add `-gdb tcp::PORT`; OpenOCD: port 3333; J-Link GDB server: 2331; probe-rs gdb: 1337)")]
    Connect {
        /// The address.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// Reading or writing the socket failed, or the server went silent.
    #[error("GDB connection to {addr}: {what}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The server answered something this reader does not understand.
    #[error("GDB server at {addr}: {msg}")]
    Protocol {
        /// The address.
        addr: String,
        /// What was wrong.
        msg: String,
    },
    /// The ELF could not be read or has no `_SEGGER_RTT`.
    #[error("{path}: {msg}")]
    Elf {
        /// The ELF file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
    /// No initialised control block was found before the deadline.
    #[error("no RTT control block found {place} within {secs:.1} s: is the firmware running and did it call rtt_init!? pass --elf FIRMWARE.elf to read its `_SEGGER_RTT` symbol instead of scanning (or widen the scan with --rtt-scan-size)")]
    NoControlBlock {
        /// Where it was looked for.
        place: String,
        /// How long.
        secs: f64,
    },
    /// The requested up-channel does not exist or was never initialised.
    #[error("the RTT control block at {cb:#010x} has {}, and channel {channel} is {state}: pick another with --rtt-channel N (microspan uses 1, defmt 0)", crate::plural::count(u64::from(*max_up), "up channel", "up channels"))]
    NoChannel {
        /// Control block address.
        cb: u32,
        /// Up channels it declares.
        max_up: u32,
        /// The requested channel.
        channel: u32,
        /// "missing" or "not initialised".
        state: &'static str,
    },
    /// The descriptor holds impossible values (memory corruption, or not an RTT block).
    #[error("RTT up channel {channel} at {desc:#010x} looks corrupt ({msg}); the firmware may have overwritten it")]
    Corrupt {
        /// The channel.
        channel: u32,
        /// Descriptor address.
        desc: u32,
        /// What is impossible.
        msg: String,
    },
}

impl From<RttGdbError> for io::Error {
    fn from(e: RttGdbError) -> Self {
        let kind = match &e {
            RttGdbError::Connect { source, .. } | RttGdbError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// The address of `_SEGGER_RTT` in an ELF file.
pub fn control_block_from_elf(path: &Path) -> Result<u32, RttGdbError> {
    use object::{Object, ObjectSymbol};
    let err = |msg: String| RttGdbError::Elf {
        path: path.to_path_buf(),
        msg,
    };
    let data = std::fs::read(path).map_err(|e| err(format!("cannot read the ELF: {e}")))?;
    let file = object::File::parse(&*data).map_err(|e| {
        err(format!(
            "not an ELF file ({e}); pass the firmware's ELF (not a .bin or .hex)"
        ))
    })?;
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok("_SEGGER_RTT"))
        .ok_or_else(|| err("has no `_SEGGER_RTT` symbol: the firmware does not link rtt-target (or it was stripped); omit --elf to scan RAM instead".into()))?;
    u32::try_from(sym.address()).map_err(|_| {
        err(format!(
            "`_SEGGER_RTT` at {:#x} is beyond 32-bit memory",
            sym.address()
        ))
    })
}

/// Why a stop reply arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// Halted (signal).
    Halted,
    /// The target process exited (`W`/`X`): end of input.
    Exited,
}

/// A minimal client of the GDB remote serial protocol (all-stop mode).
struct Gdb {
    stream: TcpStream,
    addr: String,
    /// Bytes received but not yet parsed.
    inbuf: Vec<u8>,
    ack: bool,
    chunk: usize,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

impl Gdb {
    fn connect(addr: &str, timeout: Duration) -> Result<Self, RttGdbError> {
        let connect_err = |source| RttGdbError::Connect {
            addr: addr.to_string(),
            source,
        };
        let sock = addr
            .to_socket_addrs()
            .map_err(connect_err)?
            .next()
            .ok_or_else(|| {
                connect_err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the name resolves to no address",
                ))
            })?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(connect_err)?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(timeout)).ok();
        stream.set_write_timeout(Some(timeout)).ok();
        let mut gdb = Self {
            stream,
            addr: addr.to_string(),
            inbuf: Vec::new(),
            ack: true,
            chunk: 1024,
        };
        gdb.handshake()?;
        Ok(gdb)
    }

    fn io_err(&self, what: &str, source: io::Error) -> RttGdbError {
        RttGdbError::Io {
            addr: self.addr.clone(),
            what: what.into(),
            source,
        }
    }

    fn proto(&self, msg: impl Into<String>) -> RttGdbError {
        RttGdbError::Protocol {
            addr: self.addr.clone(),
            msg: msg.into(),
        }
    }

    fn handshake(&mut self) -> Result<(), RttGdbError> {
        // Some servers send a stray '+' on connect; it is skipped by the packet reader.
        let reply = self.command(b"qSupported:swbreak+;hwbreak+")?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        for feature in reply.split(';') {
            if let Some(size) = feature.strip_prefix("PacketSize=") {
                if let Ok(n) = usize::from_str_radix(size, 16) {
                    // An `m` reply is 2 hex digits per byte plus framing.
                    self.chunk = (n.saturating_sub(8) / 2).clamp(64, MAX_CHUNK);
                }
            }
        }
        if reply.contains("QStartNoAckMode+") && self.command(b"QStartNoAckMode")? == b"OK" {
            self.ack = false;
        }
        // The stop reason; GDB asks this first too, and some servers want it before `m`.
        let _ = self.command(b"?")?;
        Ok(())
    }

    fn send_packet(&mut self, payload: &[u8]) -> Result<(), RttGdbError> {
        let mut pkt = Vec::with_capacity(payload.len() + 4);
        pkt.push(b'$');
        pkt.extend_from_slice(payload);
        pkt.push(b'#');
        pkt.extend_from_slice(format!("{:02x}", checksum(payload)).as_bytes());
        for attempt in 0..3 {
            self.stream
                .write_all(&pkt)
                .map_err(|e| self.io_err("sending a packet", e))?;
            if !self.ack {
                return Ok(());
            }
            match self.read_byte()? {
                Some(b'+') => return Ok(()),
                Some(b'-') if attempt < 2 => continue,
                Some(b'-') => {
                    return Err(self.proto(
                        "the server refused a packet three times (checksum errors on the link)",
                    ))
                }
                Some(other) => {
                    // Not an ack: keep it for the packet reader (some servers skip the ack).
                    self.inbuf.insert(0, other);
                    return Ok(());
                }
                None => {
                    return Err(self.io_err(
                        "waiting for an acknowledgement",
                        io::ErrorKind::UnexpectedEof.into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// One byte from the server; `None` at the end of the connection.
    fn read_byte(&mut self) -> Result<Option<u8>, RttGdbError> {
        if !self.inbuf.is_empty() {
            return Ok(Some(self.inbuf.remove(0)));
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[1..n]);
                    return Ok(Some(buf[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.io_err("the server did not answer in time", e))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(self.io_err("reading", e)),
            }
        }
    }

    /// The next packet's payload; `None` at the end of the connection.
    fn recv_packet(&mut self) -> Result<Option<Vec<u8>>, RttGdbError> {
        loop {
            // Skip acks and noise up to the start of a packet.
            match self.read_byte()? {
                None => return Ok(None),
                Some(b'$') => {}
                Some(_) => continue,
            }
            let mut payload = Vec::new();
            loop {
                match self.read_byte()? {
                    None => return Ok(None),
                    Some(b'#') => break,
                    Some(_) if payload.len() >= MAX_PACKET => {
                        return Err(self.proto(format!(
                            "a packet longer than {MAX_PACKET} bytes (no `#` ends it): not a GDB server, or a broken one"
                        )));
                    }
                    Some(b) => payload.push(b),
                }
            }
            let (Some(h), Some(l)) = (self.read_byte()?, self.read_byte()?) else {
                return Ok(None);
            };
            let sum = std::str::from_utf8(&[h, l])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok());
            if self.ack {
                let good = sum == Some(checksum(&payload));
                match self.stream.write_all(if good { b"+" } else { b"-" }) {
                    Ok(()) => {}
                    // The server sent its last packet (an exit stop reply) and closed.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => return Err(self.io_err("acknowledging", e)),
                }
                if !good {
                    continue; // the server resends
                }
            }
            return Ok(Some(unescape(&payload)));
        }
    }

    /// Sends `payload` and returns the reply (console `O` packets skipped).
    fn command(&mut self, payload: &[u8]) -> Result<Vec<u8>, RttGdbError> {
        self.send_packet(payload)?;
        loop {
            let Some(reply) = self.recv_packet()? else {
                return Err(self.io_err("waiting for a reply", io::ErrorKind::UnexpectedEof.into()));
            };
            if reply.first() == Some(&b'O') && reply != b"OK" {
                continue; // target console output
            }
            return Ok(reply);
        }
    }

    /// Halts a running target: 0x03, then its stop reply.
    fn interrupt(&mut self) -> Result<Stop, RttGdbError> {
        match self.stream.write_all(&[0x03]) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(Stop::Exited)
            }
            Err(e) => return Err(self.io_err("sending the interrupt", e)),
        }
        self.wait_stop()
    }

    fn wait_stop(&mut self) -> Result<Stop, RttGdbError> {
        loop {
            let Some(reply) = self.recv_packet()? else {
                return Ok(Stop::Exited);
            };
            match reply.first() {
                Some(b'T') | Some(b'S') => return Ok(Stop::Halted),
                Some(b'W') | Some(b'X') => return Ok(Stop::Exited),
                Some(b'O') => continue,
                _ => {
                    return Err(self.proto(format!(
                        "expected a stop reply, got {:?}",
                        String::from_utf8_lossy(&reply)
                    )))
                }
            }
        }
    }

    /// Lets the target run (no reply until it stops).
    fn cont(&mut self) -> Result<(), RttGdbError> {
        self.send_packet(b"c")
    }

    fn read_memory(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, RttGdbError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = addr.wrapping_add(out.len() as u32);
            let n = (len - out.len()).min(self.chunk);
            let mut r = self.command(format!("m{at:x},{n:x}").as_bytes())?;
            // A late stop reply from an earlier halt is not the answer: the answer follows it.
            // (Sending `m` again here would leave one answer behind for the next command.)
            while matches!(r.first(), Some(b'T') | Some(b'S')) {
                r = match self.recv_packet()? {
                    Some(next) if next.first() == Some(&b'O') && next != b"OK" => continue,
                    Some(next) => next,
                    None => {
                        return Err(
                            self.io_err("waiting for a reply", io::ErrorKind::UnexpectedEof.into())
                        )
                    }
                };
            }
            let reply = r;
            if reply.first() == Some(&b'E') || reply.is_empty() {
                return Err(self.proto(format!(
                    "reading {n} bytes at {at:#010x} failed ({}): is that address in the target's RAM?",
                    String::from_utf8_lossy(&reply)
                )));
            }
            let bytes = decode_hex(&reply).ok_or_else(|| {
                self.proto(format!(
                    "a memory read returned non-hex data {:?}",
                    String::from_utf8_lossy(&reply)
                ))
            })?;
            if bytes.is_empty() {
                return Err(self.proto(format!("a read at {at:#010x} returned no bytes")));
            }
            out.extend_from_slice(&bytes[..bytes.len().min(n)]);
        }
        Ok(out)
    }

    fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), RttGdbError> {
        let mut cmd = format!("M{addr:x},{:x}:", data.len());
        for b in data {
            let _ = write!(cmd, "{b:02x}");
        }
        let reply = self.command(cmd.as_bytes())?;
        if reply != b"OK" {
            return Err(self.proto(format!(
                "writing {} bytes at {addr:#010x} failed ({})",
                data.len(),
                String::from_utf8_lossy(&reply)
            )));
        }
        Ok(())
    }

    fn read_u32s<const N: usize>(&mut self, addr: u32) -> Result<[u32; N], RttGdbError> {
        let bytes = self.read_memory(addr, 4 * N)?;
        let mut out = [0u32; N];
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(out)
    }
}

/// Undoes the protocol's `}` escapes and run-length encoding (`*`).
fn unescape(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'}' if i + 1 < p.len() => {
                out.push(p[i + 1] ^ 0x20);
                i += 2;
            }
            b'*' if i + 1 < p.len() && !out.is_empty() => {
                let last = *out.last().unwrap_or(&0);
                let n = p[i + 1].saturating_sub(29) as usize;
                out.extend(std::iter::repeat_n(last, n));
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|c| {
            std::str::from_utf8(c)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 16).ok())
        })
        .collect()
}

/// An RTT up-channel read through a GDB server, as a blocking [`Read`] (plug it into
/// [`crate::input::Source::reader`]).
///
/// `read` returns the channel's bytes as they arrive, `Ok(0)` once the target exited or the server
/// closed the connection, and a `TimedOut` error after [`Config::idle_return`] without data.
pub struct RttGdbReader {
    gdb: Gdb,
    cfg: Config,
    /// The control block's address.
    cb: u32,
    /// The channel descriptor's address.
    desc: u32,
    buffer: u32,
    size: u32,
    name: String,
    /// The target is halted (between `interrupt` and `cont`).
    halted: bool,
    /// Read from the target, not yet handed out.
    pending: Vec<u8>,
    pending_at: usize,
    ended: bool,
    bytes: u64,
    polls: u64,
}

impl RttGdbReader {
    /// Connects, finds the control block and the channel (waiting up to
    /// [`Config::locate_timeout`] for the firmware to initialise it), and leaves the target running.
    pub fn connect(cfg: Config) -> Result<Self, RttGdbError> {
        let elf_cb = cfg.elf.as_deref().map(control_block_from_elf).transpose()?;
        let gdb = Gdb::connect(&cfg.addr, cfg.io_timeout)?;
        let mut r = Self {
            gdb,
            cfg,
            cb: 0,
            desc: 0,
            buffer: 0,
            size: 0,
            name: String::new(),
            halted: true,
            pending: Vec::new(),
            pending_at: 0,
            ended: false,
            bytes: 0,
            polls: 0,
        };
        let deadline = Instant::now() + r.cfg.locate_timeout;
        loop {
            match r.try_locate(elf_cb)? {
                Some(()) => break,
                None if Instant::now() >= deadline => {
                    let place = match (&r.cfg.elf, elf_cb) {
                        (Some(p), Some(a)) => {
                            format!("at `_SEGGER_RTT` ({a:#010x}, from {})", p.display())
                        }
                        _ => format!(
                            "in RAM {:#010x}..{:#010x}",
                            r.cfg.scan_start,
                            r.cfg.scan_start as u64 + r.cfg.scan_size as u64
                        ),
                    };
                    return Err(RttGdbError::NoControlBlock {
                        place,
                        secs: r.cfg.locate_timeout.as_secs_f64(),
                    });
                }
                None => {
                    // Let the firmware run on (it may not have reached rtt_init! yet).
                    r.resume()?;
                    std::thread::sleep(Duration::from_millis(20));
                    if !r.halt()? {
                        return Err(r.gdb.proto("the target exited before it initialised RTT"));
                    }
                }
            }
        }
        r.resume()?;
        Ok(r)
    }

    /// What this source is, for messages: `rtt-gdb HOST:PORT channel 1 "microspan" @0x…`.
    pub fn describe(&self) -> String {
        format!(
            "rtt-gdb {} up channel {} {:?} (control block {:#010x}, {} B buffer)",
            self.cfg.addr, self.cfg.channel, self.name, self.cb, self.size
        )
    }

    /// The channel's name as the firmware set it.
    pub fn channel_name(&self) -> &str {
        &self.name
    }

    /// Address of the control block in use.
    pub fn control_block(&self) -> u32 {
        self.cb
    }

    /// Bytes read from the channel so far, and polls made.
    pub fn counters(&self) -> (u64, u64) {
        (self.bytes, self.polls)
    }

    fn halt(&mut self) -> Result<bool, RttGdbError> {
        if self.halted {
            return Ok(true);
        }
        match self.gdb.interrupt()? {
            Stop::Halted => {
                self.halted = true;
                Ok(true)
            }
            Stop::Exited => {
                self.ended = true;
                Ok(false)
            }
        }
    }

    fn resume(&mut self) -> Result<(), RttGdbError> {
        if self.halted && !self.ended {
            self.gdb.cont()?;
            self.halted = false;
        }
        Ok(())
    }

    /// Looks for an initialised control block and the channel; `None` when not (yet) there.
    fn try_locate(&mut self, elf_cb: Option<u32>) -> Result<Option<()>, RttGdbError> {
        let cb = match elf_cb {
            Some(a) => {
                let id = self.gdb.read_memory(a, 16)?;
                if &id[..10] != RTT_ID {
                    return Ok(None);
                }
                a
            }
            None => match self.scan()? {
                Some(a) => a,
                None => return Ok(None),
            },
        };
        let [max_up, _max_down] = self.gdb.read_u32s::<2>(cb + 16)?;
        if max_up > 64 {
            return Err(RttGdbError::Corrupt {
                channel: self.cfg.channel,
                desc: cb,
                msg: format!("{max_up} up channels"),
            });
        }
        if self.cfg.channel >= max_up {
            return Err(RttGdbError::NoChannel {
                cb,
                max_up,
                channel: self.cfg.channel,
                state: "missing",
            });
        }
        let desc = cb
            .wrapping_add(HEADER)
            .wrapping_add(DESCRIPTOR.wrapping_mul(self.cfg.channel));
        let [name_ptr, buffer, size, _wr, _rd, _flags] = self.gdb.read_u32s::<6>(desc)?;
        if buffer == 0 || size == 0 {
            // rtt-target sets the buffer pointer last: not initialised yet (or never).
            return Ok(None);
        }
        if size > MAX_BUFFER {
            return Err(RttGdbError::Corrupt {
                channel: self.cfg.channel,
                desc,
                msg: format!("buffer size {size}"),
            });
        }
        self.name = if name_ptr != 0 {
            let raw = self.gdb.read_memory(name_ptr, 32).unwrap_or_default();
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        } else {
            String::new()
        };
        self.cb = cb;
        self.desc = desc;
        self.buffer = buffer;
        self.size = size;
        Ok(Some(()))
    }

    /// Scans RAM for the control block's id.
    fn scan(&mut self) -> Result<Option<u32>, RttGdbError> {
        let start = self.cfg.scan_start;
        let end = start as u64 + self.cfg.scan_size as u64;
        let mut at = start as u64;
        let step = MAX_CHUNK as u64;
        let mut carry: Vec<u8> = Vec::new();
        while at < end {
            let n = step.min(end - at) as usize;
            let bytes = self.gdb.read_memory(at as u32, n)?;
            // Keep the last 15 bytes so an id across two reads is found.
            let base = at - carry.len() as u64;
            carry.extend_from_slice(&bytes);
            // The control block is word-aligned in practice; search every byte anyway.
            if let Some(pos) = carry
                .windows(16)
                .position(|w| &w[..10] == RTT_ID && w[10..].iter().all(|&b| b == 0))
            {
                return Ok(Some((base + pos as u64) as u32));
            }
            let keep = carry.len().min(15);
            carry.drain(..carry.len() - keep);
            at += n as u64;
        }
        Ok(None)
    }

    /// One poll: halt, copy new bytes, advance `RdOff`, resume. Returns the bytes read;
    /// `None` once the target exited.
    fn poll(&mut self) -> Result<Option<Vec<u8>>, RttGdbError> {
        if self.ended || !self.halt()? {
            return Ok(None);
        }
        self.polls += 1;
        let [wr, rd] = self.gdb.read_u32s::<2>(self.desc.wrapping_add(12))?;
        let mut data = Vec::new();
        if wr >= self.size || rd >= self.size {
            return Err(RttGdbError::Corrupt {
                channel: self.cfg.channel,
                desc: self.desc,
                msg: format!("WrOff {wr}, RdOff {rd}, size {}", self.size),
            });
        }
        if wr != rd {
            if wr > rd {
                data = self
                    .gdb
                    .read_memory(self.buffer.wrapping_add(rd), (wr - rd) as usize)?;
            } else {
                data = self
                    .gdb
                    .read_memory(self.buffer.wrapping_add(rd), (self.size - rd) as usize)?;
                if wr > 0 {
                    data.extend(self.gdb.read_memory(self.buffer, wr as usize)?);
                }
            }
            self.gdb
                .write_memory(self.desc.wrapping_add(16), &wr.to_le_bytes())?;
            self.bytes += data.len() as u64;
        }
        self.resume()?;
        Ok(Some(data))
    }
}

impl Read for RttGdbReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        loop {
            if self.pending_at < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.pending_at);
                buf[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
                self.pending_at += n;
                return Ok(n);
            }
            match self.poll()? {
                None => return Ok(0),
                Some(data) if !data.is_empty() => {
                    self.pending = data;
                    self.pending_at = 0;
                }
                Some(_) => {
                    if started.elapsed() >= self.cfg.idle_return {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no RTT data yet"));
                    }
                    std::thread::sleep(self.cfg.poll_interval);
                }
            }
        }
    }
}

impl Drop for RttGdbReader {
    fn drop(&mut self) {
        // Leave the target running, and detach so the server accepts the next client.
        if !self.ended {
            if self.halted {
                let _ = self.gdb.send_packet(b"D");
            } else if let Ok(true) = self.halt() {
                let _ = self.gdb.send_packet(b"D");
            }
        }
    }
}

/// A target's memory through a GDB server, for `microspan postmortem --gdb HOST:PORT`. GDB servers
/// (QEMU's stub included) halt the target when a client attaches, so reads see a still image.
pub struct GdbMemory {
    gdb: std::sync::Mutex<Gdb>,
}

impl GdbMemory {
    /// Connects (the target halts).
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self, RttGdbError> {
        Ok(Self {
            gdb: std::sync::Mutex::new(Gdb::connect(addr, timeout)?),
        })
    }

    /// `len` bytes at `addr`.
    pub fn read(&self, addr: u32, len: usize) -> Result<Vec<u8>, RttGdbError> {
        self.gdb
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_memory(addr, len)
    }

    /// Detaches, letting the target run on (`D`).
    pub fn detach(&self) {
        let mut g = self.gdb.lock().unwrap_or_else(|e| e.into_inner());
        let _ = g.command(b"D");
    }

    /// Ends the target (`k`; QEMU exits).
    pub fn kill(&self) {
        let mut g = self.gdb.lock().unwrap_or_else(|e| e.into_inner());
        let _ = g.send_packet(b"k");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_hex() {
        assert_eq!(checksum(b"OK"), 0x9a);
        assert_eq!(decode_hex(b"00ff10"), Some(vec![0, 0xff, 0x10]));
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"zz"), None);
    }

    #[test]
    fn a_server_that_never_ends_its_packet_is_an_error_not_unbounded_memory() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let endless = vec![b'a'; MAX_PACKET + 1024];
            let _ = s.write_all(b"$");
            let _ = s.write_all(&endless);
            // Held open until the client gives up.
            let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
        });
        let err = Gdb::connect(&addr, Duration::from_secs(10)).err().unwrap();
        assert!(
            matches!(&err, RttGdbError::Protocol { msg, .. } if msg.contains("longer than")),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn unescapes_and_expands_runs() {
        assert_eq!(unescape(b"a}\x03b"), b"a#b".to_vec());
        // '0' repeated: "0* " is '0' then 3 more ('"' - 29 = 3... ' ' is 32 - 29 = 3).
        assert_eq!(unescape(b"0* "), b"0000".to_vec());
    }
}
