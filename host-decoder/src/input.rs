//! Where the bytes come from: a file, standard input, a serial port, a TCP connection.
//!
//! Every source is a blocking [`std::io::Read`]; serial and TCP reads time out regularly
//! ([`Source::read_chunk`] returns `Ok(None)`) so the caller can update its status line and
//! notice Ctrl-C while a quiet device sends nothing.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

/// An input stream.
pub struct Source {
    reader: Box<dyn Read + Send>,
    /// `true` when the end of input means the device stopped (file, stdin, closed socket).
    describe: String,
}

/// How often a quiet live source returns control to the caller.
const POLL: Duration = Duration::from_millis(200);

impl Source {
    /// A file.
    pub fn file(path: &str) -> io::Result<Self> {
        let f = std::fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
        // A directory opens on Unix and fails only at the first read.
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path} is a directory: give the capture file"),
            ));
        }
        Ok(Self {
            reader: Box::new(io::BufReader::with_capacity(1 << 16, f)),
            describe: format!("file {path}"),
        })
    }

    /// Standard input.
    pub fn stdin() -> Self {
        Self {
            reader: Box::new(io::stdin()),
            describe: "standard input".into(),
        }
    }

    /// A serial port (8N1, no flow control).
    pub fn serial(device: &str, baud: u32) -> io::Result<Self> {
        let port = serialport::new(device, baud).timeout(POLL).open().map_err(|e| {
            io::Error::other(format!(
                "cannot open serial port {device} at {baud} baud: {e}. Check the device path (ls /dev/tty*), that no other program holds it, and that you may open it (group dialout)"
            ))
        })?;
        Ok(Self {
            reader: Box::new(port),
            describe: format!("serial {device} @ {baud}"),
        })
    }

    /// A TCP connection (QEMU's `-serial tcp:…`, OpenOCD's or J-Link's RTT servers).
    pub fn tcp(addr: &str) -> io::Result<Self> {
        let has_port = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is not HOST:PORT: give one, e.g. localhost:4444 (QEMU `-serial tcp::4444,server`) or 127.0.0.1:19021 (J-Link RTT)"),
            ));
        }
        let stream = TcpStream::connect(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}. Is the emulator or RTT server running and listening there?"))
        })?;
        stream.set_read_timeout(Some(POLL))?;
        Ok(Self {
            reader: Box::new(stream),
            describe: format!("tcp {addr}"),
        })
    }

    /// Any reader (tests, RTT over GDB).
    pub fn reader(reader: Box<dyn Read + Send>, describe: impl Into<String>) -> Self {
        Self {
            reader,
            describe: describe.into(),
        }
    }

    /// Closes the input (the source then reads as ended): a serial port still held open once
    /// its USB adapter is unplugged keeps the device node taken, and the adapter comes back under
    /// another name.
    pub fn close(&mut self) {
        self.reader = Box::new(io::empty());
    }

    /// What this source is, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Reads some bytes: `Ok(Some(n))` with `n > 0`, `Ok(None)` when a live source had nothing
    /// within the poll interval, `Ok(Some(0))` at the end of input.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.reader.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", self.describe),
            )),
        }
    }
}
