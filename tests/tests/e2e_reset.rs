//! Reset mid-stream in QEMU: the `reset` firmware records, opens spans, sends them, and resets
//! itself (`SCB::sys_reset`, which QEMU's lm3s6965evb turns into a machine reset) with those spans
//! open; after the reboot (a boot counter in `.uninit` RAM gives a new boot id) it records more and
//! exits. The decoder must export the old boot's open spans as incomplete, naming the reset, and
//! decode the new boot cleanly (no lost frames, nothing incomplete).

use microspan_decoder::assemble::Options;
use microspan_decoder::model::Batch;
use microspan_decoder::stream::StreamDecoder;
use microspan_tests::qemu::{self, Board, RunOptions};
use microspan_tests::reference;

#[test]
fn sys_reset_with_open_spans() {
    qemu::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    let board = Board::Lm3s6965;
    let elf = qemu::build_firmware(board, "microspan-reliability", "reset", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let out =
        qemu::run_firmware(board, &elf, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    out.assert_exit(0);
    assert!(
        out.console.contains("reset: boot=1") && out.console.contains("reset: boot=2"),
        "the firmware must have booted twice:\n{}",
        out.console
    );

    let mut dec = StreamDecoder::new(Options::default());
    let mut batches: Vec<Batch> = Vec::new();
    dec.feed(&out.uart, &mut batches)
        .unwrap_or_else(|e| panic!("{e}"));
    dec.finish(&mut batches);
    let tree = reference::tree_text(&batches);
    let stats = dec.stats();
    assert_eq!(stats.spans.resets, 1, "{tree}");
    assert_eq!(
        stats.spans.lost_frames, 0,
        "a new boot's frame 0 is no gap:\n{tree}"
    );
    assert_eq!(stats.crc_errors + stats.bad_frames, 0);

    let spans: Vec<_> = batches.iter().flat_map(|b| &b.spans).collect();
    // Span ids carry the boot id mixed with the device id, the same device in both boots.
    let device_id = batches[0]
        .process
        .tags
        .iter()
        .find(|t| t.key == "device.id")
        .and_then(|t| match &t.value {
            microspan_decoder::model::Value::Str(hex) => u64::from_str_radix(hex, 16).ok(),
            _ => None,
        })
        .expect("a device.id process tag");
    let boot_of = |s: &&microspan_decoder::model::Span| {
        (s.span_id >> 32) as u32 ^ microspan::SpanId::boot_prefix(device_id, 0)
    };
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.operation == name)
            .unwrap_or_else(|| panic!("no span {name}:\n{tree}"))
    };
    // The old boot: its open spans are incomplete, and the warning says why.
    for name in ["session", "flash-write"] {
        let s = find(name);
        assert!(s.incomplete, "{name}:\n{tree}");
        assert!(
            s.warnings.iter().any(|w| w.contains("reset")),
            "{name}: {:?}",
            s.warnings
        );
        assert_eq!(boot_of(s), 0xb001);
    }
    assert_eq!(find("flash-write").logs.len(), 1);
    let done = find("boot-1-done");
    assert!(!done.incomplete && done.warnings.is_empty());
    // The new boot decodes cleanly, with the new boot id.
    for name in ["after-reset", "recover"] {
        let s = find(name);
        assert!(!s.incomplete, "{name}:\n{tree}");
        assert!(s.warnings.is_empty(), "{name}: {:?}", s.warnings);
        assert_eq!(boot_of(s), 0xb002);
    }
    assert_eq!(
        find("recover").references.first().map(|r| r.span_id),
        Some(find("after-reset").span_id)
    );
    assert_eq!(spans.len(), 5, "{tree}");
}
