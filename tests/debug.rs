//! `rborg debug` tools against borg 1.2.4: same stdout, files and repository effects for
//! `get-obj`, `put-obj`, `delete-obj`, `id-hash`, `dump-archive-items`; the others refused.

mod common;

use std::path::Path;

use common::*;

/// Run the same debug command with borg and rborg on two copies; compare stdout, rc and
/// the files written into each working directory.
fn same_as_borg(fixtures: &Path, args: &[&str], files: &[&str]) {
    let mut seen = Vec::new();
    for use_borg in [true, false] {
        let s = Scratch::new();
        let repo = s.copy_fixture(fixtures, "repokey").display().to_string();
        std::fs::write(s.work().join("input"), b"some object bytes").unwrap();
        let argv: Vec<&str> = args
            .iter()
            .map(|a| if *a == "REPO" { repo.as_str() } else { a })
            .collect();
        let out = if use_borg {
            borg(&argv, &s.work(), &s.env())
        } else {
            rborg(&argv, &s.work(), &s.env())
        };
        let contents: Vec<Option<Vec<u8>>> = files
            .iter()
            .map(|f| std::fs::read(s.work().join(f)).ok())
            .collect();
        let listing = borg(&["list", "--short", &repo], &s.work(), &s.env());
        let check = borg(&["check", &repo], &s.work(), &s.env());
        seen.push((
            stdout(&out),
            out.status.code(),
            contents,
            stdout(&listing),
            check.status.code(),
        ));
    }
    assert_eq!(seen[0], seen[1], "{args:?}");
}

#[test]
fn object_tools_like_borg() {
    let test = "object_tools_like_borg";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let manifest = "0".repeat(64);
    let absent = "ab".repeat(32);
    same_as_borg(
        &fixtures,
        &["debug", "get-obj", "REPO", &manifest, "out"],
        &["out"],
    );
    // as borg 1.4.5 (RTError: stderr, rc 2); borg 1.2.4 printed it on stdout
    let s = Scratch::new();
    let repo = s.copy_fixture(&fixtures, "repokey").display().to_string();
    let out = rborg(
        &["debug", "get-obj", &repo, &absent, "out"],
        &s.work(),
        &s.env(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("Runtime Error: object {absent} not found.\n")
    );
    assert!(!s.work().join("out").exists());
    same_as_borg(&fixtures, &["debug", "id-hash", "REPO", "input"], &[]);
    same_as_borg(
        &fixtures,
        &["debug", "put-obj", "REPO", &absent, "input"],
        &[],
    );
    same_as_borg(
        &fixtures,
        &["debug", "delete-obj", "REPO", &absent, "xyz", &manifest],
        &[],
    );
}

#[test]
fn dump_archive_items_like_borg() {
    let test = "dump_archive_items_like_borg";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let repo = s.copy_fixture(&fixtures, "repokey").display().to_string();
    let archive = format!("{repo}::a1");
    let theirs = s.path().join("theirs");
    let ours = s.path().join("ours");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::create_dir_all(&ours).unwrap();
    let b = ok(borg(
        &["debug", "dump-archive-items", &archive],
        &theirs,
        &s.env(),
    ));
    let r = ok(rborg(
        &["debug", "dump-archive-items", &archive],
        &ours,
        &s.env(),
    ));
    assert_eq!(stdout(&b), stdout(&r));
    assert!(stdout(&r).ends_with("Done.\n"));
    assert_eq!(dir_contents(&theirs), dir_contents(&ours));
    assert!(!dir_contents(&ours).is_empty());
}

#[test]
fn unsupported_debug_tools_fail_with_rc_2() {
    let s = Scratch::new();
    for args in [
        &["debug", "dump-repo-objs", "r"][..],
        &["debug", "refcount-obj", "r", "00"],
        &["debug", "dump-hints", "r", "out"],
    ] {
        let out = rborg(args, &s.work(), &s.env());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    }
    let info = ok(rborg(&["debug", "info"], &s.work(), &s.env()));
    assert!(
        stdout(&info).contains("\nProcess ID: "),
        "{}",
        stdout(&info)
    );
}
