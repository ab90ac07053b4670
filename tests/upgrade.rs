//! `rborg upgrade` TAM options against real borg: an archive left with a stale TAM by borg
//! 1.2.4's rename is reported and re-authenticated as borg 1.4.5 does, and borg 1.2.4 / 1.4.5
//! keep working with the repository; `--tam`, `--check-tam`, `--disable-tam` print and
//! change what borg 1.4.5 does.
//!
//! borg 1.4.5 is found through `$RBORG_BORG145` (path of its `borg` program); without it the
//! outputs are compared with the texts borg 1.4.5 printed when these tests were written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn borg145(test: &str) -> Option<PathBuf> {
    match std::env::var_os("RBORG_BORG145").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            skip(
                test,
                "RBORG_BORG145 does not name a borg 1.4.5 program: no side-by-side comparison",
            );
            None
        }
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// stdout, then stderr, then the exit code, with `replace` pairs applied.
fn transcript(out: &Output, replace: &[(String, &str)]) -> String {
    let mut text = format!(
        "{}--\n{}--\nrc={:?}\n",
        stdout(out),
        stderr(out),
        out.status.code()
    );
    for (from, to) in replace {
        text = text.replace(from.as_str(), to);
    }
    text
}

/// The new archive id (of the `Added archive TAM:` line) is random (fresh salt): mask it
/// wherever it appears.
fn mask_new_id(texts: Vec<String>) -> Vec<String> {
    let new_id = texts.iter().flat_map(|t| t.lines()).find_map(|l| {
        l.strip_prefix("Added archive TAM:")
            .and_then(|rest| rest.split("] -> [").nth(1))
            .map(|id| id.trim_end_matches(']').to_string())
    });
    match new_id {
        Some(id) => texts.iter().map(|t| t.replace(&id, "NEW")).collect(),
        None => texts,
    }
}

/// A copy of fixture `mode` whose archive `a2` was renamed to `stale` by borg 1.2.4.
fn repo_with_stale_tam(s: &Scratch, fixtures: &Path, mode: &str) -> PathBuf {
    let repo = s.copy_fixture(fixtures, mode);
    ok(borg(
        &["rename", &format!("{}::a2", path_arg(&repo)), "stale"],
        &s.work(),
        &s.env(),
    ));
    repo
}

/// `name tam` pairs of `rborg list` (a stale TAM tolerated, shown as `none`).
fn rborg_tams(repo: &Path, s: &Scratch) -> Vec<String> {
    let env = with_var(&s.env(), "BORG_WORKAROUNDS", "ignore_invalid_archive_tam");
    let out = ok(rborg(
        &["list", "--format", "{archive} {tam}{NL}", &path_arg(repo)],
        &s.work(),
        &env,
    ));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn archives_tam_repairs_stale_tam_like_borg_145() {
    let test = "archives_tam_repairs_stale_tam_like_borg_145";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let ours = Scratch::new();
    let repo = repo_with_stale_tam(&ours, &fixtures, "repokey");
    let repo_arg = path_arg(&repo);
    let run = |args: &[&str]| rborg(args, &ours.work(), &ours.env());
    assert_eq!(
        rborg_tams(&repo, &ours),
        ["a1 verified", "stale none"],
        "borg 1.2.4's rename should leave a stale TAM"
    );

    let check = run(&["upgrade", "--check-archives-tam", &repo_arg]);
    let add = run(&["upgrade", "--archives-tam", &repo_arg]);
    let recheck = run(&["upgrade", "--check-archives-tam", &repo_arg]);
    let again = run(&["upgrade", "--archives-tam", &repo_arg]);
    let ours_text = mask_new_id(
        [&check, &add, &recheck, &again]
            .iter()
            .map(|o| transcript(o, &[]))
            .collect(),
    );

    // what borg 1.4.5 printed (ids of the fixture archives; the new one is masked)
    let a1 = "a1                                   Sat, 2026-11-21 23:53:15 \
              [11af86ea7f96e3bb7be54d188403425b84f8c273d1c01e6b95fe58e3cde796d4]";
    let stale = "stale                                Sat, 2026-11-21 23:53:16 \
                 [21ec49bac7a8df541342b9a5dc21c62075cfe1dc8ae2b497f5d1fd32d459a8de]";
    assert_eq!(check.status.code(), Some(1), "{}", ours_text[0]);
    assert!(ours_text[0].starts_with(&format!(
        "Archive TAM present: {a1}\nArchive TAM missing: {stale}\n--\n"
    )));
    assert!(stderr(&check).contains("Found 1 archives with TAM issues!\n"));
    assert_eq!(
        ours_text[1],
        format!(
            "Archive TAM present: {a1}\nAdded archive TAM:   {stale} -> [NEW]\n\
             Fixed 1 archives with TAM issues!\nAll archives are TAM authenticated now.\n--\n--\nrc=Some(0)\n"
        )
    );
    assert!(ours_text[2].ends_with("All archives are TAM authenticated.\n--\n--\nrc=Some(0)\n"));
    assert_eq!(ours_text[2], ours_text[3]);

    // the archives stay usable: rborg verifies both TAMs, borg 1.2.4 checks and reads them
    assert_eq!(rborg_tams(&repo, &ours), ["a1 verified", "stale verified"]);
    ok(rborg(
        &["list", &format!("{repo_arg}::stale")],
        &ours.work(),
        &ours.env(),
    ));
    assert_eq!(
        borg_verifies_archive_tam(&repo, "stale", &ours.work(), &ours.env()),
        Some(true)
    );
    let verify = ok(borg(
        &["check", "-v", "--verify-data", &repo_arg],
        &ours.work(),
        &ours.env(),
    ));
    assert!(stderr(&verify).contains("Archive consistency check complete, no problems found."));
    ok(borg(
        &["list", &format!("{repo_arg}::stale")],
        &ours.work(),
        &ours.env(),
    ));
    ok(rborg(&["check", &repo_arg], &ours.work(), &ours.env()));

    // side by side with borg 1.4.5 on its own copy (own base dir: same repository id)
    let Some(b145) = borg145(test) else {
        return;
    };
    let theirs = Scratch::new();
    let their_repo = repo_with_stale_tam(&theirs, &fixtures, "repokey");
    let their_arg = path_arg(&their_repo);
    let run145 = |args: &[&str]| run_in(&b145, args, &theirs.work(), &theirs.env());
    let theirs_text = mask_new_id(
        [
            run145(&["upgrade", "--check-archives-tam", &their_arg]),
            run145(&["upgrade", "--archives-tam", &their_arg]),
            run145(&["upgrade", "--check-archives-tam", &their_arg]),
            run145(&["upgrade", "--archives-tam", &their_arg]),
        ]
        .iter()
        .map(|o| transcript(o, &[]))
        .collect(),
    );
    assert_eq!(ours_text, theirs_text);
    // borg 1.4.5 (which verifies archive TAMs) accepts rborg's work
    let check145 = run_in(
        &b145,
        &["check", "-v", &repo_arg],
        &ours.work(),
        &ours.env(),
    );
    assert_eq!(check145.status.code(), Some(0), "{}", stderr(&check145));
    let list145 = run_in(
        &b145,
        &["list", "--short", &format!("{repo_arg}::stale")],
        &ours.work(),
        &ours.env(),
    );
    assert_eq!(list145.status.code(), Some(0), "{}", stderr(&list145));
    assert!(!stdout(&list145).is_empty());
}

/// `--check-tam`, `--disable-tam`, `--tam` in sequence on a keyfile repository: same output
/// and exit codes as borg 1.4.5, key file and security dir changed alike.
#[test]
fn manifest_tam_options_like_borg_145() {
    let test = "manifest_tam_options_like_borg_145";
    let Some(fixtures) = fixtures_or_skip(test) else {
        return;
    };
    let steps: [&[&str]; 6] = [
        &["upgrade", "--check-tam"],
        &["upgrade", "--disable-tam"],
        &["upgrade", "--check-tam"],
        &["list", "--short"],
        &["upgrade", "--tam"],
        &["upgrade", "--check-tam"],
    ];
    let run_steps = |program: Option<&Path>| -> Vec<String> {
        let s = Scratch::new();
        let repo = s.copy_fixture(&fixtures, "keyfile");
        let keys = s.path().join("keys");
        let replace = [
            (path_arg(&repo), "REPO"),
            (path_arg(&keys), "KEYS"),
            ("../keys".to_string(), "KEYS"),
        ];
        steps
            .iter()
            .map(|step| {
                let mut args = step.to_vec();
                let repo_arg = path_arg(&repo);
                args.push(&repo_arg);
                let out = match program {
                    Some(p) => run_in(p, &args, &s.work(), &s.env()),
                    None => rborg(&args, &s.work(), &s.env()),
                };
                transcript(&out, &replace)
            })
            .collect()
    };
    let ours = run_steps(None);
    let expected = [
        "Manifest authentication setup OK for this client and this repository.\n--\n--\nrc=Some(0)\n",
        "Key updated\nKey location: KEYS/keyfile.key\n--\nManifest authentication DISABLED.\n--\nrc=Some(0)\n",
        "--\nRepository Manifest is not TAM verified or a TAM is not required!\n\
         Key does not require TAM authentication!\n\
         Client-side security database does not require a TAM!\n--\nrc=Some(1)\n",
        "a1\na2\n--\n--\nrc=Some(0)\n",
    ];
    assert_eq!(ours[..4], expected);
    assert!(
        ours[4].starts_with("Manifest contents:\na1  "),
        "{}",
        ours[4]
    );
    assert!(
        ours[4].ends_with("Key updated\nKey location: KEYS/keyfile.key\nUpdated security database\n--\n--\nrc=Some(0)\n"),
        "{}",
        ours[4]
    );
    assert_eq!(ours[5], expected[0]);
    let Some(b145) = borg145(test) else {
        return;
    };
    assert_eq!(ours, run_steps(Some(&b145)));
}

/// Without a TAM option borg would convert Attic / borg 0.xx repositories: not supported.
#[test]
fn plain_upgrade_is_refused() {
    let s = Scratch::new();
    let out = rborg(&["upgrade", "nowhere"], &s.work(), &s.env());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
}
