//! Keeping the raw input: `--save-capture FILE` writes every byte read, as it was read, so a live
//! capture can be decoded again later (with other outputs, a corrected upload URL, a newer
//! decoder) and attached to a bug report.
//!
//! The file is written as the bytes arrive and flushed at least every [`FLUSH_EVERY`], so a
//! decoder that is killed leaves all but the last moments of the stream. A write that fails
//! (a full disk) stops the saving, not the decoding: the live outputs matter more, and the
//! failure is reported at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest time bytes read wait in memory before they are written to the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// The file the raw input is saved to.
pub struct CaptureFile {
    path: PathBuf,
    /// `None` once a write failed.
    out: Option<BufWriter<File>>,
    /// Bytes taken, and of them bytes written to the file.
    bytes: u64,
    flushed: u64,
    last_flush: Instant,
    error: Option<String>,
}

impl CaptureFile {
    /// Creates (or empties) `path`. It is written in place, never replaced: a device or a pipe
    /// works, and what was saved survives a crash.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot write {} ({e})", path.display()))
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: Some(BufWriter::with_capacity(1 << 16, file)),
            bytes: 0,
            flushed: 0,
            last_flush: Instant::now(),
            error: None,
        })
    }

    /// Saves bytes read from the input (flushed when [`FLUSH_EVERY`] has passed).
    pub fn write(&mut self, bytes: &[u8]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        match out.write_all(bytes) {
            Ok(()) => self.bytes += bytes.len() as u64,
            Err(e) => self.fail(e),
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Writes what waits in memory to the file (also when the input is quiet).
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        match self.out.as_mut().map(|o| o.flush()) {
            Some(Ok(())) => self.flushed = self.bytes,
            Some(Err(e)) => self.fail(e),
            None => {}
        }
    }

    /// Flushes and closes the file; `Err` says why the capture is incomplete.
    pub fn finish(mut self) -> Result<u64, String> {
        self.flush();
        if let Some(out) = self.out.take() {
            if let Err(e) = out.into_inner().map_err(|e| e.into_error()).and_then(|f| {
                // A regular file is synced (a device or a pipe cannot be, and need not be).
                match f.metadata() {
                    Ok(m) if m.is_file() => f.sync_all(),
                    _ => Ok(()),
                }
            }) {
                self.fail(e);
            }
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.bytes),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&mut self, e: io::Error) {
        self.out = None;
        self.error.get_or_insert_with(|| {
            format!(
                "--save-capture {}: writing failed after {} bytes ({e}); the rest of the input \
                 was decoded but not saved",
                self.path.display(),
                self.flushed
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_read_is_saved_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap.bin");
        std::fs::write(&path, b"an older capture, longer than the new one").unwrap();
        let mut cap = CaptureFile::create(&path).unwrap();
        cap.write(b"\x00\x01\x02");
        cap.flush();
        assert_eq!(std::fs::read(&path).unwrap(), b"\x00\x01\x02");
        cap.write(b"\x03");
        assert_eq!(cap.finish(), Ok(4));
        assert_eq!(std::fs::read(&path).unwrap(), b"\x00\x01\x02\x03");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_stops_the_saving_and_says_so() {
        // /dev/full takes no byte: every write fails with ENOSPC.
        let Ok(mut cap) = CaptureFile::create(Path::new("/dev/full")) else {
            return;
        };
        cap.write(&[7; 100]);
        cap.flush();
        cap.write(&[7; 100]);
        let e = cap.finish().unwrap_err();
        assert!(
            e.contains("--save-capture /dev/full: writing failed after 0 bytes"),
            "{e}"
        );
        assert!(e.contains("decoded but not saved"), "{e}");
    }
}
