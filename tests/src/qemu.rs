//! Build firmware from `examples/firmware` and run it under `qemu-system-arm`, capturing its
//! UART byte for byte and its semihosting exit code, with a timeout.
//!
//! ```no_run
//! use microspan_tests::qemu::{self, Board, RunOptions};
//! let elf = qemu::build_firmware(Board::Lm3s6965, "microspan-smoke", "smoke", &[]).unwrap();
//! let out = qemu::run_firmware(Board::Lm3s6965, &elf, &RunOptions::default()).unwrap();
//! out.assert_exit(0);
//! assert!(out.uart.starts_with(b"microspan-smoke\n"));
//! ```
//!
//! Time: the runs use `-icount shift=N,align=off,sleep=off` (see [`Board::icount_shift`]), so
//! the guest's timers advance with the number of instructions executed: tick values are the same
//! from run to run, and a guest sleeping in `wfi` makes QEMU jump to the next timer deadline at
//! once (a 2 s sleep costs no host time).

use std::fmt;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a firmware may run before it is killed and its test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The QEMU binary these helpers run.
pub const QEMU: &str = "qemu-system-arm";

/// An emulated board that firmware in `examples/firmware` can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Board {
    /// TI Stellaris LM3S6965, Cortex-M3 (`-machine lm3s6965evb`).
    Lm3s6965,
    /// BBC micro:bit v1, nRF51822, Cortex-M0 without compare-and-swap (`-machine microbit`).
    Microbit,
}

impl Board {
    /// Every board, for tests that run on each.
    pub const ALL: [Board; 2] = [Board::Lm3s6965, Board::Microbit];

    /// The board's name, as its cargo feature and the firmware's `microspan_boards::BOARD` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Board::Lm3s6965 => "lm3s6965",
            Board::Microbit => "microbit",
        }
    }

    /// The Rust target the board's firmware is built for.
    pub fn target(self) -> &'static str {
        match self {
            Board::Lm3s6965 => "thumbv7m-none-eabi",
            Board::Microbit => "thumbv6m-none-eabi",
        }
    }

    /// The cargo feature that selects the board in `microspan-boards` (and, by convention, in
    /// every firmware crate of `examples/firmware`).
    pub fn feature(self) -> &'static str {
        self.name()
    }

    /// QEMU arguments selecting the machine.
    pub fn machine_args(self) -> &'static [&'static str] {
        match self {
            Board::Lm3s6965 => &["-cpu", "cortex-m3", "-machine", "lm3s6965evb"],
            Board::Microbit => &["-machine", "microbit"],
        }
    }

    /// The `-icount` shift used for this board: one instruction is 2^shift ns of virtual time.
    /// 4 (62.5 M instructions/s) for the 50 MHz Cortex-M3, 6 (15.6 M/s) for the 16 MHz Cortex-M0,
    /// near what the real cores execute.
    pub fn icount_shift(self) -> u32 {
        match self {
            Board::Lm3s6965 => 4,
            Board::Microbit => 6,
        }
    }

    /// Rate of the firmware's `microspan_boards::now_ticks()`, ticks per second.
    pub fn ticks_per_second(self) -> u32 {
        match self {
            Board::Lm3s6965 => 50_000_000,
            Board::Microbit => 1_000_000,
        }
    }

    /// The QEMU arguments of a run, without the UART and `-kernel`: machine, no display, no
    /// monitor, semihosting to the host, and `-icount` when `icount` is set.
    pub fn qemu_args(self, icount: bool) -> Vec<String> {
        let mut args: Vec<String> = self.machine_args().iter().map(|s| s.to_string()).collect();
        args.extend(
            [
                "-nographic",
                "-monitor",
                "none",
                "-semihosting-config",
                "enable=on,target=native",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if icount {
            args.push("-icount".into());
            args.push(format!("shift={},align=off,sleep=off", self.icount_shift()));
        }
        args
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong while building or running firmware. Each message names the fix.
#[derive(Debug)]
pub enum QemuError {
    /// `qemu-system-arm` is not installed (or not on `PATH`).
    QemuMissing,
    /// `cargo build` of the firmware failed; holds its stderr and a hint.
    Build(String),
    /// Starting or talking to a process failed.
    Io(String, io::Error),
    /// A tool printed something these helpers could not read.
    Parse(String),
}

impl fmt::Display for QemuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuError::QemuMissing => write!(
                f,
                "`{QEMU}` was not found on PATH; install it with `apt-get install -y \
                 qemu-system-arm` (run `apt-get update` first on a new machine)"
            ),
            QemuError::Build(msg) => write!(f, "building firmware failed: {msg}"),
            QemuError::Io(what, e) => write!(f, "{what}: {e}"),
            QemuError::Parse(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for QemuError {}

/// Checks that `qemu-system-arm` can be run, returning its version line.
pub fn check_qemu() -> Result<String, QemuError> {
    match Command::new(QEMU)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()),
        Ok(_) => Err(QemuError::QemuMissing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(QemuError::QemuMissing),
        Err(e) => Err(QemuError::Io(format!("running `{QEMU} --version`"), e)),
    }
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The firmware workspace, `examples/firmware`.
pub fn firmware_dir() -> PathBuf {
    repo_root().join("examples").join("firmware")
}

/// Builds `bin` of firmware package `package` (a member of `examples/firmware`) for `board`
/// with `cargo build --release`, enabling the board's feature plus `extra_features`, and returns
/// the ELF's path.
///
/// Runs cargo in `examples/firmware` so its `.cargo/config.toml` (linker script) applies, with
/// `RUSTFLAGS`-style variables removed (they would replace that file's `rustflags`).
pub fn build_firmware(
    board: Board,
    package: &str,
    bin: &str,
    extra_features: &[&str],
) -> Result<PathBuf, QemuError> {
    // Builds of one binary with other features write the same file: tests running in parallel
    // threads build one at a time, and each keeps a copy named for its features (below).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let mut features = vec![board.feature().to_string()];
    features.extend(extra_features.iter().map(|s| s.to_string()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let dir = firmware_dir();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", board.target(), "-p", package, "--bin", bin])
        .args(["--features", &features.join(",")])
        .args(["--config", &reproducible_rustflags(board)])
        .stdin(Stdio::null());
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| QemuError::Io(format!("running cargo in {}", dir.display()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("can't find crate for `core`")
            || stderr.contains("target may not be installed")
        {
            format!(
                "\nhint: the Rust target is missing; run `rustup target add {}`",
                board.target()
            )
        } else {
            String::new()
        };
        return Err(QemuError::Build(format!(
            "`cargo build --release --target {} -p {package} --bin {bin} --features {}` in {} \
             failed:\n{stderr}{hint}",
            board.target(),
            features.join(","),
            dir.display()
        )));
    }
    // The last compiler-artifact line naming an executable is the binary just built.
    let built = stdout
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| json_string_field(l, "executable"))
        .next_back()
        .map(PathBuf::from)
        .ok_or_else(|| QemuError::Parse(format!("cargo built no executable for `{bin}`")))?;
    let copy = built.with_file_name(format!("{bin}--{}", features.join("-")));
    std::fs::copy(&built, &copy)
        .map_err(|e| QemuError::Io(format!("copying {} aside", built.display()), e))?;
    Ok(copy)
}

/// A `--config` argument adding `--remap-path-prefix` for the repository and `CARGO_HOME` to the
/// firmware's rustflags (cargo appends config arrays to `.cargo/config.toml`'s).
///
/// Panic locations embed source paths, so without it the ELF, and with it the drain's string
/// interning (hashed by address) and so the exact instruction counts and span durations, would
/// depend on where the repository and the registry are checked out: the expected files in
/// `tests/expected/` could not match on another machine.
pub fn reproducible_rustflags(board: Board) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent-cargo-home"));
    let flags = [
        format!("--remap-path-prefix={}=/microspan", repo_root().display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ];
    let quoted: Vec<String> = flags
        .iter()
        .map(|f| format!("\"{}\"", f.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("target.{}.rustflags=[{}]", board.target(), quoted.join(","))
}

/// Extracts a string field from one line of cargo's JSON output (no JSON crate needed for this
/// one field; paths with escaped characters are unescaped for `\\` and `\"`).
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":\"");
    let start = line.find(&key)? + key.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// How to run a firmware.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Kill QEMU after this long (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Use `-icount` (deterministic virtual time; default true).
    pub icount: bool,
    /// More QEMU arguments, appended before `-kernel` (e.g. `-gdb tcp::PORT`, `-plugin ...`).
    pub extra_args: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: DEFAULT_TIMEOUT,
            icount: true,
            extra_args: Vec::new(),
        }
    }
}

/// What a firmware run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// QEMU's exit code: the firmware's semihosting exit code (`microspan_boards::exit`; 101 after
    /// a panic, 102 after a HardFault). `None` if QEMU was killed (timeout) or died by a signal.
    pub exit_code: Option<i32>,
    /// Whether the run hit its timeout and was killed.
    pub timed_out: bool,
    /// Every byte the firmware sent on its UART, exactly.
    pub uart: Vec<u8>,
    /// QEMU's stdout and stderr (semihosting output such as panic messages goes here).
    pub console: String,
    /// Host time the run took.
    pub elapsed: Duration,
}

impl RunOutput {
    /// Panics, printing the console and the end of the UART stream, unless the firmware exited
    /// with `code`.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        if self.exit_code != Some(code) {
            let tail = &self.uart[self.uart.len().saturating_sub(512)..];
            panic!(
                "firmware {}, expected exit code {code}\n--- QEMU console ---\n{}\n--- last {} \
                 UART bytes (lossy) ---\n{}",
                if self.timed_out {
                    "timed out".to_string()
                } else {
                    format!("exited with {:?}", self.exit_code)
                },
                self.console,
                tail.len(),
                String::from_utf8_lossy(tail)
            );
        }
    }
}

static RUN_ID: AtomicU64 = AtomicU64::new(0);

/// A scratch directory for one run's files, under the repository's `target/`.
fn scratch_dir(what: &str) -> Result<PathBuf, QemuError> {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = base.join("qemu-runs").join(format!(
        "{what}-{}-{}",
        std::process::id(),
        RUN_ID.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| QemuError::Io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// Runs `elf` on `board` with the UART written to a file, and returns the exit code, the UART
/// bytes and QEMU's console once QEMU exits (or is killed at the timeout).
pub fn run_firmware(board: Board, elf: &Path, opts: &RunOptions) -> Result<RunOutput, QemuError> {
    let dir = scratch_dir("run")?;
    let uart_path = dir.join("uart.bin");
    let mut args = board.qemu_args(opts.icount);
    args.push("-serial".into());
    args.push(format!("file:{}", uart_path.display()));
    args.extend(opts.extra_args.iter().cloned());
    let (status, timed_out, console, elapsed) = run_qemu(&args, elf, opts.timeout)?;
    let uart = std::fs::read(&uart_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(RunOutput {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        uart,
        console,
        elapsed,
    })
}

/// Runs `elf` on `board` like [`run_firmware`] (UART to a file), calling `during` while QEMU runs
/// (for example to talk to its GDB stub, given with `-gdb` in [`RunOptions::extra_args`]), then
/// waits for QEMU to exit (or kills it at the timeout). Returns the run and what `during` returned.
pub fn run_firmware_with<T>(
    board: Board,
    elf: &Path,
    opts: &RunOptions,
    during: impl FnOnce() -> T,
) -> Result<(RunOutput, T), QemuError> {
    let dir = scratch_dir("run")?;
    let uart_path = dir.join("uart.bin");
    let mut args = board.qemu_args(opts.icount);
    args.push("-serial".into());
    args.push(format!("file:{}", uart_path.display()));
    args.extend(opts.extra_args.iter().cloned());
    let start = Instant::now();
    let (mut child, console) = spawn_qemu(&args, elf)?;
    let value = during();
    let (status, killed) =
        wait_with_timeout(&mut child, opts.timeout.saturating_sub(start.elapsed()))?;
    let uart = std::fs::read(&uart_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let out = RunOutput {
        exit_code: status.and_then(|s| s.code()),
        timed_out: killed,
        uart,
        console: console.join(),
        elapsed: start.elapsed(),
    };
    Ok((out, value))
}

/// Runs `elf` on `board` with the UART connected to a TCP socket on 127.0.0.1, calling
/// `on_uart` with each chunk of bytes as it arrives (for a decoder fed live). The returned
/// [`RunOutput::uart`] also holds every byte.
///
/// QEMU connects as a client to a listener these helpers open first, so no port is guessed.
pub fn run_firmware_streaming(
    board: Board,
    elf: &Path,
    opts: &RunOptions,
    mut on_uart: impl FnMut(&[u8]),
) -> Result<RunOutput, QemuError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| QemuError::Io("binding a TCP listener on 127.0.0.1".into(), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| QemuError::Io("reading the listener's port".into(), e))?
        .port();
    let mut args = board.qemu_args(opts.icount);
    args.push("-chardev".into());
    args.push(format!(
        "socket,id=uart0,host=127.0.0.1,port={port},nodelay=on"
    ));
    args.push("-serial".into());
    args.push("chardev:uart0".into());
    args.extend(opts.extra_args.iter().cloned());

    let start = Instant::now();
    let (mut child, console) = spawn_qemu(&args, elf)?;
    // Accept QEMU's connection, giving up if QEMU dies first or the timeout passes.
    listener
        .set_nonblocking(true)
        .map_err(|e| QemuError::Io("setting the listener non-blocking".into(), e))?;
    let stream: Option<TcpStream> = loop {
        match listener.accept() {
            Ok((s, _)) => break Some(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > opts.timeout || matches!(child.try_wait(), Ok(Some(_))) {
                    break None;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(QemuError::Io("accepting QEMU's UART connection".into(), e)),
        }
    };
    let mut uart = Vec::new();
    let mut timed_out = false;
    if let Some(mut s) = stream {
        s.set_nonblocking(false).ok();
        s.set_read_timeout(Some(Duration::from_millis(20))).ok();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break, // QEMU exited and closed the socket
                Ok(n) => {
                    on_uart(&buf[..n]);
                    uart.extend_from_slice(&buf[..n]);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if start.elapsed() > opts.timeout {
                        timed_out = true;
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    let (status, killed) =
        wait_with_timeout(&mut child, opts.timeout.saturating_sub(start.elapsed()))?;
    Ok(RunOutput {
        exit_code: status.and_then(|s| s.code()),
        timed_out: timed_out || killed,
        uart,
        console: console.join(),
        elapsed: start.elapsed(),
    })
}

/// QEMU's stdout and stderr, collected by two reader threads.
struct Console(Vec<thread::JoinHandle<String>>);

impl Console {
    fn join(self) -> String {
        self.0
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect::<Vec<_>>()
            .join("")
    }
}

fn spawn_qemu(args: &[String], elf: &Path) -> Result<(Child, Console), QemuError> {
    check_qemu()?;
    let mut child = Command::new(QEMU)
        .args(args)
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| QemuError::Io(format!("starting {QEMU}"), e))?;
    let mut readers = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        readers.push(thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        }));
    }
    if let Some(mut err) = child.stderr.take() {
        readers.push(thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        }));
    }
    Ok((child, Console(readers)))
}

/// Waits for `child` up to `timeout`, killing it then. Returns its status (None if killed) and
/// whether it was killed.
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Result<(Option<ExitStatus>, bool), QemuError> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((Some(status), false)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok((None, true));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(QemuError::Io("waiting for QEMU".into(), e)),
        }
    }
}

/// Runs QEMU with `args` and `-kernel elf` to completion or timeout.
/// Returns (status, timed out, console, elapsed).
pub(crate) fn run_qemu(
    args: &[String],
    elf: &Path,
    timeout: Duration,
) -> Result<(Option<ExitStatus>, bool, String, Duration), QemuError> {
    let start = Instant::now();
    let (mut child, console) = spawn_qemu(args, elf)?;
    let (status, killed) = wait_with_timeout(&mut child, timeout)?;
    let status = if killed { None } else { status };
    Ok((status, killed, console.join(), start.elapsed()))
}
