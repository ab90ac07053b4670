//! Helpers shared by the unit tests.

use std::path::PathBuf;

/// The borg 1.2 golden fixtures: `$RBORG_FIXTURES`, else the copy in `tests/fixtures/borg12`.
/// Prints why and returns None when they are missing (the caller then skips).
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RBORG_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/borg12"),
    };
    if dir.join("repos").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: borg12 fixtures not found at {} (set RBORG_FIXTURES)",
            dir.display()
        );
        None
    }
}
