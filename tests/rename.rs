//! `rborg rename` against real borg: the renamed archive is listed, checked and read by borg,
//! carries a valid fresh TAM, keeps its time and contents, and the old metadata is gone.

mod common;

use std::path::Path;

use common::*;

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `name id tam` lines of `rborg list`.
fn rborg_archives(
    repo: &str,
    cwd: &Path,
    env: &[(String, String)],
) -> Vec<(String, String, String)> {
    let out = ok(rborg(
        &["list", "--format", "{archive} {id} {tam}{NL}", repo],
        cwd,
        env,
    ));
    stdout(&out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// borg's view of one archive: `(time, items)`.
fn borg_view(repo: &str, name: &str, cwd: &Path, env: &[(String, String)]) -> (String, String) {
    let archive = format!("{repo}::{name}");
    let info = ok(borg(&["info", &archive], cwd, env));
    let time = stdout(&info)
        .lines()
        .find(|l| l.starts_with("Time (start):"))
        .unwrap()
        .to_string();
    let items = ok(borg(
        &[
            "list",
            "--format",
            "{mode} {size} {mtime} {path}{NL}",
            &archive,
        ],
        cwd,
        env,
    ));
    (time, stdout(&items))
}

/// Rename `old` to `new_arg` (expanding to `new`) and check everything borg and rborg see
/// (`deep`: also `borg check --verify-data`).
fn rename_and_verify(
    repo: &Path,
    (old, new_arg, new): (&str, &str, &str),
    deep: bool,
    cwd: &Path,
    env: &[(String, String)],
) {
    let repo_arg = path_arg(repo);
    let before = rborg_archives(&repo_arg, cwd, env);
    let old_id = before.iter().find(|a| a.0 == old).unwrap().1.clone();
    let view_before = borg_view(&repo_arg, old, cwd, env);

    let out = ok(rborg(
        &["rename", &format!("{repo_arg}::{old}"), new_arg],
        cwd,
        env,
    ));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );

    // rborg: new name, new id, the TAM verifies; other archives untouched
    let after = rborg_archives(&repo_arg, cwd, env);
    assert_eq!(after.len(), before.len());
    let renamed = after.iter().find(|a| a.0 == new).expect("renamed archive");
    assert_ne!(renamed.1, old_id);
    assert_eq!(renamed.2, "verified");
    assert!(after.iter().all(|a| a.0 != old));
    for a in before.iter().filter(|a| a.0 != old) {
        assert!(after.contains(a), "{a:?} changed");
    }

    // borg: lists it, shows it with the same start time and items, finds no problem
    let names = ok(borg(&["list", "--short", &repo_arg], cwd, env));
    assert!(stdout(&names).lines().any(|l| l == new));
    assert!(!stdout(&names).lines().any(|l| l == old));
    assert_eq!(borg_view(&repo_arg, new, cwd, env), view_before);
    let info = ok(borg(&["info", &format!("{repo_arg}::{new}")], cwd, env));
    assert!(stdout(&info).contains(&format!("Archive name: {new}\n")));
    assert!(stdout(&info).contains(&format!("Archive fingerprint: {}\n", renamed.1)));
    let mut check_args = vec!["check", "-v", &repo_arg];
    if deep {
        check_args.push("--verify-data");
    }
    let check = ok(borg(&check_args, cwd, env));
    let report = stderr(&check);
    assert!(
        report.contains("Finished full repository check, no problems found.")
            && (!deep || report.contains("with 0 integrity errors."))
            && report.contains("Archive consistency check complete, no problems found."),
        "{report}"
    );

    // the old metadata object is gone, the new one is there
    assert_eq!(borg_get_obj(repo, &old_id, cwd, env), None);
    assert!(borg_get_obj(repo, &renamed.1, cwd, env).is_some());

    // borg's own key code verifies the fresh archive TAM
    match borg_verifies_archive_tam(repo, new, cwd, env) {
        Some(verified) => assert!(verified, "archive TAM of {new} does not verify"),
        None => skip(
            "rename_and_verify",
            "borg's Python modules are not importable",
        ),
    }
}

/// Every fixture mode (archives written by borg 1.2.4), placeholders in the new name.
#[test]
fn rename_in_fixture_copies() {
    let test = "rename_in_fixture_copies";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = s.env();
    let year = chrono::Utc::now().format("%Y").to_string();
    for mode in MODES {
        let repo = s.copy_fixture(&fixtures, mode);
        let expected = format!("{mode}-{year}");
        let work = s.work();
        let repo_arg = path_arg(&repo);
        let placeholder = format!("{mode}-{{now:%Y}}");
        for (old, new) in [("a1", "{now:%Y}"), (&year, &placeholder)] {
            ok(rborg(
                &["rename", &format!("{repo_arg}::{old}"), new],
                &work,
                &env,
            ));
        }
        let names: Vec<String> = rborg_archives(&repo_arg, &work, &env)
            .into_iter()
            .map(|a| a.0)
            .collect();
        assert_eq!(names, [expected.clone(), "a2".to_string()]);
        // back to a1 (the name is free again), with every check
        rename_and_verify(&repo, (&expected, "a1", "a1"), true, &work, &env);
        // rborg still extracts it
        let dest = s.path().join(format!("x-{mode}"));
        std::fs::create_dir(&dest).unwrap();
        ok(rborg(
            &[
                "extract",
                &format!("{}::a1", path_arg(&repo)),
                "tree/small.txt",
            ],
            &dest,
            &env,
        ));
        assert!(dest.join("tree/small.txt").is_file());
    }
}

/// A repository borg made itself; borg keeps working with it after the rename.
#[test]
fn rename_in_borg_made_repository() {
    let test = "rename_in_borg_made_repository";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = s.env();
    let work = s.work();
    std::fs::write(work.join("file"), b"some content\n").unwrap();
    ok(borg(&["init", "-e", "keyfile-blake2", "r"], &work, &env));
    ok(borg(&["create", "r::one", "file"], &work, &env));
    ok(borg(&["create", "r::two", "file"], &work, &env));
    let repo = work.join("r");
    rename_and_verify(&repo, ("one", "first", "first"), true, &work, &env);
    ok(borg(&["create", "r::three", "file"], &work, &env));
    ok(borg(&["delete", "r::two"], &work, &env));
    rename_and_verify(&repo, ("three", "third", "third"), true, &work, &env);
    let names = ok(borg(&["list", "--short", "r"], &work, &env));
    assert_eq!(stdout(&names), "first\nthird\n");
    ok(borg(&["check", "--verify-data", "r"], &work, &env));
}

/// Archive.AlreadyExists (30), Archive.DoesNotExist (31), invalid names; nothing changes.
#[test]
fn rename_errors() {
    let test = "rename_errors";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    let s = Scratch::new();
    let repo = path_arg(&s.copy_fixture(&fixtures, "repokey"));
    let before = rborg_archives(&repo, &s.work(), &s.env());
    let cases = [
        ("a1", "a2", 30, "Archive a2 already exists".to_string()),
        ("nope", "x", 31, "Archive nope does not exist".to_string()),
        ("a1", "a/b", 2, "Invalid archive name: \"a/b\"".to_string()),
        (
            "a1",
            "x::y",
            2,
            "Invalid archive name: \"x::y\"".to_string(),
        ),
    ];
    for (old, new, rc, message) in cases {
        for (codes, expected_rc) in [("modern", rc), ("legacy", 2)] {
            let mut env = s.env();
            env.push(("BORG_EXIT_CODES".into(), codes.into()));
            let out = rborg(&["rename", &format!("{repo}::{old}"), new], &s.work(), &env);
            assert_eq!(
                out.status.code(),
                Some(expected_rc),
                "{old} → {new} ({codes})"
            );
            assert!(stderr(&out).contains(&message), "{}", stderr(&out));
        }
    }
    let mut env = s.env();
    env.push(("BORG_EXIT_CODES".into(), "modern".into()));
    let json = rborg(
        &["--log-json", "rename", &format!("{repo}::a1"), "a2"],
        &s.work(),
        &env,
    );
    assert!(stderr(&json).contains("\"msgid\": \"Archive.AlreadyExists\""));
    // a repository location without archive is refused
    let out = rborg(&["rename", &repo, "x"], &s.work(), &s.env());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(rborg_archives(&repo, &s.work(), &s.env()), before);
}

/// borg 1.2.4's own rename leaves a stale archive TAM; like borg 1.4, rborg refuses to load
/// such an archive (ArchiveTAMInvalid, 95) unless told to ignore it, and then its rename
/// re-authenticates the archive.
#[test]
fn rename_repairs_stale_tam_of_borg_124_rename() {
    let test = "rename_repairs_stale_tam_of_borg_124_rename";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let repo = s.copy_fixture(&fixtures, "keyfile");
    let repo_arg = path_arg(&repo);
    let work = s.work();
    ok(borg(
        &["rename", &format!("{repo_arg}::a2"), "stale"],
        &work,
        &s.env(),
    ));
    if borg_verifies_archive_tam(&repo, "stale", &work, &s.env()) == Some(true) {
        skip(test, "this borg writes valid TAMs on rename");
        return;
    }
    let mut env = s.env();
    env.push(("BORG_EXIT_CODES".into(), "modern".into()));
    let out = rborg(
        &["rename", &format!("{repo_arg}::stale"), "fresh"],
        &work,
        &env,
    );
    assert_eq!(out.status.code(), Some(95), "{}", stderr(&out));
    env.push((
        "BORG_WORKAROUNDS".into(),
        "ignore_invalid_archive_tam".into(),
    ));
    rename_and_verify(&repo, ("stale", "fresh", "fresh"), false, &work, &env);
}
