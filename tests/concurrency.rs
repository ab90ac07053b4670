//! Issue 9, must-show 5 (the CI-sized run): two rborg clients and one real borg client create,
//! list and delete on one repository at once under --lock-wait (`scripts/concurrency`, 20 s
//! here; run the script directly for the full 5 minutes). Afterwards borg's check
//! --verify-data and rborg's check are clean and every archive extracts to its tree.

mod common;

use std::process::Command;

use common::*;

#[test]
fn clients_taking_turns_on_one_repository_corrupt_nothing() {
    let test = "clients_taking_turns_on_one_repository_corrupt_nothing";
    if !borg_or_skip(test) {
        return;
    }
    if find_on_path("python3").is_none() {
        skip(test, "python3 is not installed");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/concurrency");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--seconds", "20", "--rborg"])
        .arg(rborg_bin())
        .output()
        .unwrap();
    let report = format!("{}{}", stdout(&out), stderr(&out));
    eprintln!("{report}");
    assert!(out.status.success(), "{report}");
    assert!(report.contains("checks clean; all "), "{report}");
}
