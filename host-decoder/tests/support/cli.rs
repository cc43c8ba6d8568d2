//! The `microspan` binary of the command-line tests, and the checked-in stream they feed it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The v1 stream of every record kind (`core/tests/fixtures/v1-all-records.bin`).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/v1-all-records.bin")
}

/// The `microspan` binary built with the tests, without colours (`NO_COLOR=1`).
pub fn microspan() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_microspan"));
    c.env("NO_COLOR", "1");
    c
}

/// `microspan decode --no-progress --file FIXTURE`, for the caller to add outputs to.
pub fn decode_fixture() -> Command {
    let mut c = microspan();
    c.args(["decode", "--no-progress", "--file"]).arg(fixture());
    c
}
