//! The disk spool: encoded requests that could not be sent yet, one file each.
//!
//! A file is `MSPOOL1\n`, the number of spans as a little-endian `u64`, then the request body
//! exactly as it is POSTed. Files are written under a temporary name and renamed, so a crash never
//! leaves half a request under a real name; names sort in the order they were written. A file is
//! deleted only after its request was answered (accepted or refused for good), so delivery from
//! the spool is at-least-once (the window is described in `delivery.rs`).
//!
//! The directories are created private (0700 on Unix): the requests hold the spans, and whoever
//! can write a request there has it sent with the uploader's headers (its credentials).
//!
//! A spool directory belongs to one decoder at a time: [`Spool::open`] takes an exclusive
//! `flock` on the directory itself and keeps it until the spool is dropped. The kernel releases
//! it when the process dies, however it dies, so a crash never leaves a stale lock behind, and no
//! lock file sits beside the requests. (On platforms other than Unix there is no lock.)

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::delivery::Payload;

const MAGIC: &[u8; 8] = b"MSPOOL1\n";
const HEADER: usize = 16;

/// A spooled request that the worker may send.
#[derive(Debug)]
pub(crate) struct Entry {
    pub path: PathBuf,
    pub payload: Payload,
    /// Written by an earlier run.
    pub inherited: bool,
}

/// Spans in the spool, by the run that wrote them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpoolSpans {
    /// Written by this run.
    pub this_run: u64,
    /// Left by earlier runs.
    pub earlier: u64,
}

impl SpoolSpans {
    pub fn total(&self) -> u64 {
        self.this_run.saturating_add(self.earlier)
    }
}

pub(crate) enum OpenError {
    /// Another process holds the spool's lock.
    InUse,
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

pub(crate) enum PutError {
    /// Adding the request would exceed the byte bound.
    Full,
    Io(io::Error),
}

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    ext: &'static str,
    max_bytes: u64,
    used_bytes: u64,
    /// Prefix of this run's file names (zero-padded start time, so names sort by age).
    session: String,
    seq: u64,
    /// Spans in the files, kept up to date by `put` and `remove` (for progress reports; the
    /// final count reads the files, [`Spool::spans`]).
    counted: SpoolSpans,
    /// Holds the directory's lock while open.
    _lock: fs::File,
}

/// Takes the exclusive lock of `dir` itself (no lock file: nothing in the directory but requests).
fn lock_dir(dir: &Path) -> Result<fs::File, OpenError> {
    let file = fs::File::open(dir)?;
    if !try_lock(&file)? {
        return Err(OpenError::InUse);
    }
    Ok(file)
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file description holds it.
#[cfg(unix)]
fn try_lock(file: &fs::File) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &fs::File) -> io::Result<bool> {
    Ok(true)
}

impl Spool {
    /// Opens (creating, private) `dir` and accounts for the requests already in it.
    pub fn open(dir: &Path, ext: &'static str, max_bytes: u64) -> Result<Self, OpenError> {
        create_private_dir(dir)?;
        // Before anything else: the `.tmp` files below may be another live decoder's.
        let lock = lock_dir(dir)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            ext,
            max_bytes,
            used_bytes: 0,
            session: format!("{nanos:024}-{}", std::process::id()),
            seq: 0,
            counted: SpoolSpans::default(),
            _lock: lock,
        };
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // Left by a crash between write and rename: never a whole request.
                let _ = fs::remove_file(&path);
            } else if spool.is_ours(&path) {
                spool.used_bytes += entry.metadata()?.len();
                // All of an earlier run: this one has written nothing yet.
                if let Ok(spans) = read_header(&path) {
                    spool.counted.earlier = spool.counted.earlier.saturating_add(spans);
                }
            }
        }
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn is_ours(&self, path: &Path) -> bool {
        is_spool_file(path, self.ext)
    }

    /// Written by an earlier run (not under this run's name prefix).
    fn is_earlier(&self, path: &Path) -> bool {
        !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&self.session))
    }

    /// Writes a request to a new file.
    pub fn put(&mut self, payload: &Payload) -> Result<(), PutError> {
        let size = (HEADER + payload.bytes.len()) as u64;
        if self.used_bytes + size > self.max_bytes {
            return Err(PutError::Full);
        }
        self.seq += 1;
        let name = format!("{}-{:010}", self.session, self.seq);
        self.write(&name, payload).map_err(PutError::Io)?;
        self.used_bytes += size;
        self.counted.this_run = self.counted.this_run.saturating_add(payload.spans);
        Ok(())
    }

    /// Writes a request to the file `name`, under a temporary name first.
    fn write(&self, name: &str, payload: &Payload) -> io::Result<PathBuf> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}.{}", self.ext));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&payload.spans.to_le_bytes())?;
            f.write_all(&payload.bytes)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        match write() {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Replaces a request's file by two holding its halves (the collector found it too large),
    /// named after it, `NAME-1` and `NAME-2`: they sort where it did, the first half first, and
    /// belong to the run that wrote it. The byte bound is not checked: the halves take the
    /// request's room, which is given back, and a few bytes of framing. On an error nothing
    /// changes.
    pub fn split(&mut self, entry: &Entry, halves: &[Payload; 2]) -> io::Result<()> {
        let Some(stem) = entry.path.file_stem().and_then(|s| s.to_str()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a spool file name", entry.path.display()),
            ));
        };
        let mut written: Vec<PathBuf> = Vec::new();
        for (i, half) in halves.iter().enumerate() {
            match self.write(&format!("{stem}-{}", i + 1), half) {
                Ok(path) => written.push(path),
                Err(e) => {
                    for path in &written {
                        let _ = fs::remove_file(path);
                    }
                    return Err(e);
                }
            }
        }
        for half in halves {
            self.used_bytes += (HEADER + half.bytes.len()) as u64;
        }
        // The same spans, in files of the same run: `counted` stays as it is.
        self.delete(&entry.path);
        Ok(())
    }

    fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| self.is_ours(p))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The oldest request, if any. A file that is not a spooled request is removed and reported.
    pub fn oldest(&mut self) -> io::Result<Option<Entry>> {
        let Some(path) = self.files()?.into_iter().next() else {
            return Ok(None);
        };
        match read_file(&path) {
            Ok(payload) => {
                let inherited = self.is_earlier(&path);
                Ok(Some(Entry {
                    path,
                    payload,
                    inherited,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // Never counted: its header does not read.
                self.delete(&path);
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}; the file was removed", path.display()),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a request's file after it was answered.
    pub fn remove(&mut self, entry: &Entry) {
        if self.delete(&entry.path) {
            let count = if entry.inherited {
                &mut self.counted.earlier
            } else {
                &mut self.counted.this_run
            };
            *count = count.saturating_sub(entry.payload.spans);
        }
    }

    /// Deletes a file; `true` when it was there.
    fn delete(&mut self, path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        if fs::remove_file(path).is_err() {
            return false;
        }
        self.used_bytes = self.used_bytes.saturating_sub(meta.len());
        true
    }

    /// Spans in all the spooled requests, read from the files, by the run that wrote them.
    pub fn spans(&self) -> SpoolSpans {
        let mut spans = SpoolSpans::default();
        for path in self.files().unwrap_or_default() {
            let Ok(n) = read_header(&path) else {
                continue;
            };
            // Counts read from files: a corrupted one must not overflow.
            let count = if self.is_earlier(&path) {
                &mut spans.earlier
            } else {
                &mut spans.this_run
            };
            *count = count.saturating_add(n);
        }
        spans
    }

    /// Spans in the spool as `put` and `remove` counted them, without reading the files: cheap
    /// enough for a progress report.
    pub fn counted(&self) -> SpoolSpans {
        self.counted
    }

    pub fn is_empty(&self) -> bool {
        self.files().map(|f| f.is_empty()).unwrap_or(true)
    }
}

/// Whether `path` is named as a spooled request of the uploader whose file extension is `ext`
/// (`otlp`, `jaeger-thrift`): what a spool takes for its own files.
pub(crate) fn is_spool_file(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

/// Creates `dir` and its missing parents accessible to their owner only (0700 on Unix; an existing
/// directory keeps its mode).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn check_header(head: &[u8]) -> io::Result<u64> {
    if head.len() < HEADER || &head[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a microspan spool file (bad header)",
        ));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[8..16]);
    Ok(u64::from_le_bytes(n))
}

fn read_header(path: &Path) -> io::Result<u64> {
    use std::io::Read;
    let mut head = [0u8; HEADER];
    fs::File::open(path)?.read_exact(&mut head)?;
    check_header(&head)
}

fn read_file(path: &Path) -> io::Result<Payload> {
    let data = fs::read(path)?;
    let spans = check_header(&data)?;
    Ok(Payload {
        bytes: data[HEADER..].to_vec().into(),
        spans,
    })
}
