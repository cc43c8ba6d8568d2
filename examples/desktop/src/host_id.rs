//! A device id for this machine, as firmware would take one from the chip's unique id.

/// FNV-1a of the host name (or of `"localhost"`), never microspan's default device id: traces
/// started on two machines do not share ids.
pub fn device_id() -> u64 {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.trim().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}
