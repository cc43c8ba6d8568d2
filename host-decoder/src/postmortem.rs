//! `microspan postmortem`: the last events and the spans open at a crash, read from a RAM dump or
//! live through a GDB server, given the firmware's ELF.
//!
//! The firmware registers its tracer (`microspan::postmortem::register`) and marks crashes from
//! its panic / HardFault handlers (`mark_panic`, `mark_crash`), then halts. This module finds the
//! descriptor (the ELF symbol `MICROSPAN_POSTMORTEM`, else a scan of RAM for its magic number),
//! reads the ring through [`microspan::postmortem::RingImage`], which replays it through the
//! device's own drain into an ordinary wire stream, and decodes that with [`StreamDecoder`]. Spans
//! still open at the end are the spans open at the crash: they are exported as incomplete with the
//! warning `incomplete: open at crash: <reason>`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use microspan::postmortem::{offset, RingImage, TargetMemory, SYMBOL};

use crate::assemble::Options;
use crate::model::Batch;
use crate::plural::count;
use crate::rtt_gdb::GdbMemory;
use crate::stream::{StreamDecoder, StreamStats};
use crate::terminal::printable;

/// The warning the decoder gives spans open when its input ends; replaced by the crash's.
const STREAM_ENDED: &str = "incomplete: the stream ended before this span finished";

/// Where the target's memory comes from.
pub enum Source {
    /// A RAM dump loaded at `base`.
    Dump {
        /// The dump's bytes.
        bytes: Vec<u8>,
        /// The target address of its first byte.
        base: u32,
    },
    /// A GDB server.
    Gdb(GdbMemory),
}

/// The ELF's loadable sections (flash: code and read-only strings) plus the RAM source.
pub struct Memory {
    segments: Vec<(u32, Vec<u8>)>,
    source: Source,
    descriptor_symbol: Option<u32>,
}

impl Memory {
    /// Reads the ELF at `elf` and combines it with `source`.
    pub fn new(elf: &Path, source: Source) -> Result<Self, String> {
        use object::{Object, ObjectSection, ObjectSymbol};
        let data =
            std::fs::read(elf).map_err(|e| format!("reading the ELF {}: {e}", elf.display()))?;
        let file = object::File::parse(&*data).map_err(|e| {
            format!(
                "{} is not an ELF file this decoder reads: {e}",
                elf.display()
            )
        })?;
        let mut segments = Vec::new();
        for s in file.sections() {
            if s.address() == 0 && s.size() == 0 {
                continue;
            }
            if let (Ok(bytes), Ok(addr)) = (s.data(), u32::try_from(s.address())) {
                if !bytes.is_empty() {
                    segments.push((addr, bytes.to_vec()));
                }
            }
        }
        let descriptor_symbol = file
            .symbols()
            .find(|s| s.name() == Ok(SYMBOL))
            .and_then(|s| u32::try_from(s.address()).ok());
        Ok(Self {
            segments,
            source,
            descriptor_symbol,
        })
    }

    fn read_source(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
        match &self.source {
            Source::Dump { bytes, base } => {
                let start = addr.checked_sub(*base)? as usize;
                bytes
                    .get(start..start.checked_add(len)?)
                    .map(<[u8]>::to_vec)
            }
            Source::Gdb(g) => g.read(addr, len).ok(),
        }
    }

    fn read_elf(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
        self.segments.iter().find_map(|(base, bytes)| {
            let start = addr.checked_sub(*base)? as usize;
            bytes
                .get(start..start.checked_add(len)?)
                .map(<[u8]>::to_vec)
        })
    }

    /// Why the RAM source cannot give the descriptor at `addr`, if it cannot. The descriptor is
    /// read from RAM, where `register` filled it in: read where the source has no bytes, it falls
    /// back to the ELF's `.data` image (magic number set, every address 0), which would read as
    /// a firmware that never registered.
    fn descriptor_not_covered(&self, addr: u32) -> Option<String> {
        let size = offset::SIZE as usize;
        if self.read_source(addr, size).is_some() {
            return None;
        }
        Some(match &self.source {
            Source::Dump { bytes, base } => format!(
                "the RAM dump ({}) does not cover the post-mortem descriptor `{SYMBOL}` at {addr:#010x} ({size} bytes): check --dump-base (the target address of the dump's first byte), or dump the RAM region that holds `{SYMBOL}`",
                if bytes.is_empty() {
                    "empty: 0 bytes".to_string()
                } else {
                    format!(
                        "{} bytes at {base:#010x}..{:#010x}",
                        bytes.len(),
                        u64::from(*base) + bytes.len() as u64
                    )
                },
            ),
            Source::Gdb(_) => format!(
                "the GDB server could not read the post-mortem descriptor `{SYMBOL}` at {addr:#010x} ({size} bytes): is this the ELF of the firmware the target runs?"
            ),
        })
    }

    /// The GDB connection, if the source is one.
    pub fn gdb(&self) -> Option<&GdbMemory> {
        match &self.source {
            Source::Gdb(g) => Some(g),
            Source::Dump { .. } => None,
        }
    }
}

impl TargetMemory for Memory {
    fn read(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
        // RAM first (it is what changed at run time); read-only data from the ELF when the RAM
        // source does not cover it (a dump of RAM only), and over GDB only as a last resort.
        match &self.source {
            Source::Dump { .. } => self
                .read_source(addr, len)
                .or_else(|| self.read_elf(addr, len)),
            Source::Gdb(_) => {
                let in_ram = (0x2000_0000..0x4000_0000).contains(&addr);
                if in_ram {
                    self.read_source(addr, len)
                        .or_else(|| self.read_elf(addr, len))
                } else {
                    self.read_elf(addr, len)
                        .or_else(|| self.read_source(addr, len))
                }
            }
        }
    }
}

/// What a post-mortem read found.
pub struct Report {
    /// The image read from the target.
    pub image: RingImage,
    /// Ring records replayed.
    pub records: u32,
    /// Words the replay could not read (an uncommitted record at the crash).
    pub unread_words: u32,
    /// The decoded spans (open ones marked `open at crash`).
    pub batches: Vec<Batch>,
    /// The decoder's counters.
    pub stats: StreamStats,
}

/// Reads the image and decodes it.
pub fn read(mem: &Memory, ram_scan: (u32, u32), opts: Options) -> Result<Report, String> {
    let descriptor = match mem.descriptor_symbol {
        Some(a) => a,
        None => RingImage::scan(mem, ram_scan.0, ram_scan.1).ok_or_else(|| {
            format!(
                "no `{SYMBOL}` symbol in the ELF and no descriptor in RAM {:#010x}..{:#010x}: does the firmware call `microspan::postmortem::register(&TRACER)`?",
                ram_scan.0,
                ram_scan.0 as u64 + ram_scan.1 as u64
            )
        })?,
    };
    if let Some(why) = mem.descriptor_not_covered(descriptor) {
        return Err(why);
    }
    let image = RingImage::read(mem, descriptor).map_err(|e| e.to_string())?;
    let replay = image.to_stream(mem);
    let mut dec = StreamDecoder::new(opts);
    let mut batches = Vec::new();
    dec.feed(&replay.stream, &mut batches)
        .map_err(|e| e.to_string())?;
    dec.finish(&mut batches);
    let why = match &image.crash {
        Some(r) => format!("incomplete: open at crash: {r}"),
        None => "incomplete: open when the memory was read (no crash was marked)".to_string(),
    };
    for b in &mut batches {
        for s in &mut b.spans {
            for w in &mut s.warnings {
                if w == STREAM_ENDED {
                    *w = why.clone();
                }
            }
        }
    }
    Ok(Report {
        image,
        records: replay.records,
        unread_words: replay.unread_words,
        batches,
        stats: dec.stats(),
    })
}

/// A one-paragraph summary for the terminal (the texts read from the target's RAM, its service
/// name and crash reason, with their control characters escaped: see [`printable`]).
pub fn summary(r: &Report) -> String {
    let img = &r.image;
    let open = r
        .batches
        .iter()
        .flat_map(|b| &b.spans)
        .filter(|s| s.incomplete)
        .count();
    let mut out = String::new();
    match &img.crash {
        Some(reason) => out.push_str(&format!("crash: {}\n", printable(reason))),
        None => out.push_str("no crash was marked (the firmware was running or hung)\n"),
    }
    out.push_str(&format!(
        "service {} boot {:08x}, {} ring ({}): {} replayed, {} open at the crash, {} lost before it{}\n",
        printable(&img.service),
        img.boot_id,
        if img.overwrite { "flight-recorder" } else { "drop-new" },
        count(u64::from(img.capacity), "word", "words"),
        count(r.records as u64, "record", "records"),
        count(open as u64, "span", "spans"),
        count(u64::from(img.dropped), "record", "records"),
        if r.unread_words > 0 {
            format!(
                ", {} unreadable (a record was being written at the crash)",
                count(r.unread_words as u64, "word", "words")
            )
        } else {
            String::new()
        }
    ));
    out
}

/// Parses a number given in decimal or `0x` hex.
pub fn parse_addr(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(&h.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    r.map_err(|_| format!("`{s}` is not an address (decimal or 0x… hex)"))
}

/// The command-line arguments of `microspan postmortem`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The firmware's ELF (for the descriptor's symbol and the read-only strings).
    #[arg(long, value_name = "FILE")]
    pub elf: PathBuf,
    /// Read the halted target through this GDB server (QEMU `-gdb tcp::3333`, OpenOCD, probe-rs gdb).
    #[arg(
        long,
        value_name = "HOST:PORT",
        conflicts_with = "dump",
        required_unless_present = "dump"
    )]
    pub gdb: Option<String>,
    /// Read a RAM dump file (e.g. QEMU `pmemsave 0x20000000 65536 ram.bin`, or a debugger's dump).
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// The target address of the dump's first byte.
    #[arg(long, value_name = "ADDR", default_value = "0x20000000", value_parser = parse_addr)]
    pub dump_base: u32,
    /// Where to scan for the descriptor when the ELF has no symbol for it.
    #[arg(long, value_name = "ADDR", default_value = "0x20000000", value_parser = parse_addr)]
    pub scan_start: u32,
    /// Bytes to scan.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub scan_size: u32,
    /// Also write a Jaeger UI JSON file.
    #[arg(long, value_name = "FILE")]
    pub jaeger_json: Option<PathBuf>,
    /// Also write an OTLP JSON file.
    #[arg(long, value_name = "FILE")]
    pub otlp_json: Option<PathBuf>,
    /// After reading over GDB, kill the target (QEMU exits) instead of detaching.
    #[arg(long, requires = "gdb")]
    pub kill: bool,
}

/// Runs `microspan postmortem`.
pub fn run(args: Args) -> Result<(), String> {
    use crate::export::{Exporter, JaegerJsonFile, OtlpJsonFile, TreeWriter};
    let source = match (&args.gdb, &args.dump) {
        (Some(addr), _) => Source::Gdb(
            GdbMemory::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?,
        ),
        (None, Some(path)) => Source::Dump {
            bytes: std::fs::read(path)
                .map_err(|e| format!("reading the dump {}: {e}", path.display()))?,
            base: args.dump_base,
        },
        (None, None) => return Err("give --gdb HOST:PORT or --dump FILE".into()),
    };
    let mem = Memory::new(&args.elf, source)?;
    let result = read(&mem, (args.scan_start, args.scan_size), Options::default());
    if let Some(g) = mem.gdb() {
        if args.kill {
            g.kill();
        } else {
            g.detach();
        }
    }
    let report = result?;
    print!("{}", summary(&report));
    let mut exporters: Vec<Box<dyn Exporter>> = vec![Box::new(TreeWriter::stdout())];
    if let Some(p) = &args.jaeger_json {
        exporters.push(Box::new(JaegerJsonFile::new(p)));
    }
    if let Some(p) = &args.otlp_json {
        exporters.push(Box::new(OtlpJsonFile::new(p)));
    }
    for e in &mut exporters {
        for b in &report.batches {
            e.export(b).map_err(|err| format!("{}: {err}", e.name()))?;
        }
        e.finish().map_err(|err| format!("{}: {err}", e.name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use microspan::postmortem::{MAGIC, MAGIC_VERSION};

    /// Where the descriptor is in these tests' firmware.
    const DESCRIPTOR: u32 = 0x2000_0100;

    /// The firmware's ELF as [`Memory`] holds it: the `.data` image of the descriptor (the magic
    /// number set, every address 0, as `register` has not filled it in yet) at its symbol.
    fn memory(source: Source) -> Memory {
        let mut data = vec![0u8; offset::SIZE as usize];
        data[..4].copy_from_slice(&MAGIC.to_le_bytes());
        data[4..8].copy_from_slice(&MAGIC_VERSION.to_le_bytes());
        Memory {
            segments: vec![(DESCRIPTOR, data)],
            source,
            descriptor_symbol: Some(DESCRIPTOR),
        }
    }

    fn read_dump(bytes: Vec<u8>, base: u32) -> String {
        let mem = memory(Source::Dump { bytes, base });
        match read(&mem, (0x2000_0000, 0x1000), Options::default()) {
            Ok(_) => panic!("an image was read"),
            Err(e) => e,
        }
    }

    /// A dump that does not hold the descriptor's address (empty, or loaded at the wrong base)
    /// says so, naming the dump, the descriptor and what to check; it does not blame the
    /// firmware for never registering (what the ELF's `.data` image alone would read as).
    /// The service name and the crash reason come from the target's RAM: their control
    /// characters are escaped, not sent to the terminal.
    #[test]
    fn the_summary_escapes_what_the_target_holds() {
        let report = Report {
            image: RingImage {
                descriptor: 0x2000_0000,
                capacity: 16,
                overwrite: false,
                head: 0,
                tail: 0,
                dropped: 0,
                words: Vec::new(),
                service: "svc\x1b]0;pwned\x07".into(),
                firmware_version: "1".into(),
                device_id: 1,
                boot_id: 1,
                ticks_per_second: 1_000,
                crash: Some("panic\r\x1b[2Jfake line\nmore".into()),
                crash_ticks: None,
            },
            records: 0,
            unread_words: 0,
            batches: Vec::new(),
            stats: StreamStats::default(),
        };
        let text = summary(&report);
        assert!(!text.contains(['\x1b', '\r', '\x07']), "{text:?}");
        assert!(
            text.starts_with(
                "crash: panic\\r\\u{1b}[2Jfake line\\nmore\nservice svc\\u{1b}]0;pwned\\u{7} "
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_dump_that_misses_the_descriptor_says_so() {
        let e = read_dump(Vec::new(), 0x2000_0000);
        assert!(
            e.contains("the RAM dump (empty: 0 bytes) does not cover")
                && e.contains("`MICROSPAN_POSTMORTEM` at 0x20000100")
                && e.contains("--dump-base"),
            "{e}"
        );
        assert!(!e.contains("never called"), "{e}");

        // The right RAM, given the wrong base.
        let e = read_dump(vec![0; 0x1000], 0x1000_0000);
        assert!(
            e.contains("4096 bytes at 0x10000000..0x10001000")
                && e.contains("does not cover the post-mortem descriptor `MICROSPAN_POSTMORTEM` at 0x20000100")
                && e.contains("dump the RAM region that holds `MICROSPAN_POSTMORTEM`"),
            "{e}"
        );
        assert!(!e.contains("never called"), "{e}");

        // Ending inside the descriptor.
        let e = read_dump(vec![0; 0x110], 0x2000_0000);
        assert!(e.contains("does not cover"), "{e}");
    }

    /// A dump that holds the descriptor is believed: still unfilled there, the firmware never
    /// called `register`; without the magic number, it is not this firmware's descriptor.
    #[test]
    fn a_dump_that_holds_the_descriptor_is_believed() {
        let mut ram = vec![0u8; 0x1000];
        let at = (DESCRIPTOR - 0x2000_0000) as usize;
        ram[at..at + 4].copy_from_slice(&MAGIC.to_le_bytes());
        ram[at + 4..at + 8].copy_from_slice(&MAGIC_VERSION.to_le_bytes());
        let e = read_dump(ram, 0x2000_0000);
        assert!(e.contains("never called"), "{e}");

        let e = read_dump(vec![0; 0x1000], 0x2000_0000);
        assert!(e.contains("magic \"MSPN\" not found"), "{e}");
        assert!(!e.contains("does not cover"), "{e}");
    }
}
