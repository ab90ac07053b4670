//! Issue 9, must-show 1 (the CI-sized run): `scripts/torture` kills rborg with SIGKILL at
//! random moments of create, delete, prune, compact, check --repair and key
//! change-passphrase; after each kill borg's and rborg's checks must be clean, every committed
//! archive must extract to its tree, and the next create must succeed. 20 runs here; run the
//! script directly for the full 200.

mod common;

use std::process::Command;

use common::*;

#[test]
fn killed_operations_never_lose_committed_data() {
    let test = "killed_operations_never_lose_committed_data";
    if !borg_or_skip(test) {
        return;
    }
    if find_on_path("python3").is_none() {
        skip(test, "python3 is not installed");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torture");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--runs", "20", "--seed", &test_seed(test).to_string()])
        .arg("--rborg")
        .arg(rborg_bin())
        .output()
        .unwrap();
    let report = format!("{}{}", stdout(&out), stderr(&out));
    eprintln!("{report}");
    assert!(out.status.success(), "torture runs failed:\n{report}");
    assert!(report.contains("runs 20,"), "{report}");
    assert!(report.contains("failures 0"), "{report}");
}
