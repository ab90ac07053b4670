//! Golden tests against the repositories real borg 1.2.4 wrote (tests/fixtures/borg12): rborg's
//! `list`, `info` and `extract` must give exactly what borg gave (its expected outputs) and
//! the tree `mktree.py` builds.

mod common;

use std::io::Read;
use std::path::Path;

use common::*;

/// Expected output with the fixture placeholders replaced by this scratch area's paths.
fn expected_text(fixtures: &Path, scratch: &Scratch, mode: &str, file: &str) -> String {
    let raw = std::fs::read_to_string(fixtures.join("expected").join(mode).join(file)).unwrap();
    raw.replace("<FIXTURE_DIR>", &scratch.path().display().to_string())
        .replace("<BORG_BASE_DIR>", &scratch.base().display().to_string())
}

fn expected_jsonl(fixtures: &Path, mode: &str, archive: &str) -> Vec<String> {
    let path = fixtures
        .join("expected")
        .join(mode)
        .join(format!("list-{archive}.jsonl.gz"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(str::to_string).collect()
}

/// The keys borg always emits first, in this order (cli.md §10.2).
const FIXED_ITEM_KEYS: &[&str] = &[
    "type",
    "mode",
    "user",
    "group",
    "uid",
    "gid",
    "path",
    "healthy",
    "source",
    "linktarget",
    "flags",
];

/// Compare one `list --json-lines` line: same fixed-key order, same keys and values; a
/// `path_b64` must be the base64 of the raw path whose `?` form is `path`.
fn assert_same_item_line(expected: &str, actual: &str) {
    assert!(
        actual.is_ascii(),
        "JSON lines must be ASCII (non-ASCII escaped): {actual}"
    );
    let exp: serde_json::Map<String, serde_json::Value> = serde_json::from_str(expected).unwrap();
    let mut act: serde_json::Map<String, serde_json::Value> = serde_json::from_str(actual).unwrap();
    if let Some(b64) = act.shift_remove("path_b64") {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(
            std::str::from_utf8(&raw).is_err(),
            "path_b64 only for non-UTF-8 paths"
        );
        let shown = rborg::archive::display_bytes(&raw);
        assert_eq!(act["path"].as_str().unwrap(), shown);
    }
    let act_order: Vec<&String> = act.keys().take(FIXED_ITEM_KEYS.len()).collect();
    assert_eq!(act_order, FIXED_ITEM_KEYS, "fixed key order in {actual}");
    assert_eq!(exp, act, "item line differs");
}

#[test]
fn list_json_lines_equal_borgs() {
    let Some(fx) = fixtures_or_skip("list_json_lines_equal_borgs") else {
        return;
    };
    for mode in MODES {
        let s = Scratch::new();
        s.copy_fixture(&fx, mode);
        for archive in ["a1", "a2"] {
            let loc = format!("../repos/{mode}::{archive}");
            let out = ok(rborg(&["list", "--json-lines", &loc], &s.work(), &s.env()));
            let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
            let expected = expected_jsonl(&fx, mode, archive);
            assert_eq!(
                lines.len(),
                expected.len(),
                "{mode} {archive}: number of items"
            );
            for (e, a) in expected.iter().zip(lines.iter()) {
                assert_same_item_line(e, a);
            }
        }
    }
}

#[test]
fn list_and_info_json_equal_borgs() {
    let Some(fx) = fixtures_or_skip("list_and_info_json_equal_borgs") else {
        return;
    };
    for mode in MODES {
        let s = Scratch::new();
        s.copy_fixture(&fx, mode);
        let repo = format!("../repos/{mode}");
        let cases: [(&str, Vec<String>); 4] = [
            (
                "list.json",
                vec!["list".into(), "--json".into(), repo.clone()],
            ),
            (
                "info.json",
                vec!["info".into(), "--json".into(), repo.clone()],
            ),
            (
                "info-a1.json",
                vec!["info".into(), "--json".into(), format!("{repo}::a1")],
            ),
            (
                "info-a2.json",
                vec!["info".into(), "--json".into(), format!("{repo}::a2")],
            ),
        ];
        for (file, args) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = ok(rborg(&args, &s.work(), &s.env()));
            let expected = expected_text(&fx, &s, mode, file);
            assert_eq!(
                stdout(&out).trim_end(),
                expected.trim_end(),
                "{mode}: {file}"
            );
        }
    }
}

#[test]
fn extract_reproduces_the_input_tree() {
    let Some(fx) = fixtures_or_skip("extract_reproduces_the_input_tree") else {
        return;
    };
    for mode in MODES {
        let s = Scratch::new();
        s.copy_fixture(&fx, mode);
        for (archive, version) in [("a1", 1), ("a2", 2)] {
            let reference = s.path().join(format!("ref-{archive}"));
            std::fs::create_dir_all(&reference).unwrap();
            make_fixture_tree(&fx, &reference, version);
            let dest = s.work().join(format!("out-{archive}"));
            std::fs::create_dir_all(&dest).unwrap();
            let loc = format!("../../repos/{mode}::{archive}");
            let mut env = s.env();
            env.retain(|(k, _)| k != "BORG_KEYS_DIR");
            env.push((
                "BORG_KEYS_DIR".into(),
                s.path().join("keys").display().to_string(),
            ));
            ok(rborg(&["extract", &loc], &dest, &env));
            assert_same_tree(&reference.join("tree"), &dest.join("tree"));
        }
    }
}

#[test]
fn extract_subsets_strip_and_dry_run() {
    let Some(fx) = fixtures_or_skip("extract_subsets_strip_and_dry_run") else {
        return;
    };
    let s = Scratch::new();
    s.copy_fixture(&fx, "repokey-blake2");
    let reference = s.path().join("ref");
    std::fs::create_dir_all(&reference).unwrap();
    make_fixture_tree(&fx, &reference, 1);

    // A hardlink slave selected without its master gets the master's content.
    let dest = s.work().join("partial");
    std::fs::create_dir_all(&dest).unwrap();
    ok(rborg(
        &[
            "extract",
            "../../repos/repokey-blake2::a1",
            "tree/hardlink-a",
            "tree/private",
        ],
        &dest,
        &s.env(),
    ));
    let got = std::fs::read(dest.join("tree/hardlink-a")).unwrap();
    assert_eq!(
        got,
        std::fs::read(reference.join("tree/hardlink-a")).unwrap()
    );
    assert!(dest.join("tree/private/secret.txt").exists());
    assert!(!dest.join("tree/small.txt").exists());

    // --strip-components drops leading elements.
    let dest = s.work().join("strip");
    std::fs::create_dir_all(&dest).unwrap();
    ok(rborg(
        &[
            "extract",
            "--strip-components",
            "1",
            "../../repos/repokey-blake2::a1",
        ],
        &dest,
        &s.env(),
    ));
    assert_same_children(&reference.join("tree"), &dest);

    // --dry-run writes nothing; --stdout writes the selected content.
    let dest = s.work().join("dry");
    std::fs::create_dir_all(&dest).unwrap();
    ok(rborg(
        &["extract", "--dry-run", "../../repos/repokey-blake2::a1"],
        &dest,
        &s.env(),
    ));
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    let out = ok(rborg(
        &[
            "extract",
            "--stdout",
            "../../repos/repokey-blake2::a1",
            "tree/small.txt",
        ],
        &dest,
        &s.env(),
    ));
    assert_eq!(
        out.stdout,
        std::fs::read(reference.join("tree/small.txt")).unwrap()
    );

    // An unmatched PATH is a warning with borg's msgid; modern rc 101.
    let out = rborg(
        &[
            "extract",
            "--dry-run",
            "../../repos/repokey-blake2::a1",
            "tree/nope",
        ],
        &dest,
        &s.env(),
    );
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(stderr(&out).contains("Include pattern 'tree/nope' never matched."));
}
