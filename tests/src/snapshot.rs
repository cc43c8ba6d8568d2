//! Snapshot comparison against checked-in files in `tests/expected/`; `MICROSPAN_BLESS=1`
//! rewrites them with the current output.

use std::path::PathBuf;

/// The path of the expected file `name`.
pub fn expected_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("expected")
        .join(name)
}

/// `true` when `MICROSPAN_BLESS=1` asks to accept the current output.
pub fn blessing() -> bool {
    std::env::var("MICROSPAN_BLESS").is_ok_and(|v| v == "1")
}

/// Compares `actual` with `tests/expected/{name}`; with `MICROSPAN_BLESS=1`, writes it instead.
#[track_caller]
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = expected_path(name);
    if blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating tests/expected");
        }
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with MICROSPAN_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n expected: {:?}\n   actual: {:?}\n\
             --- actual output ---\n{actual}\n(run with MICROSPAN_BLESS=1 to accept the new output)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}
