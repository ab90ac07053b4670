//! `delete` against real borg: the repository stays consistent for borg (check
//! --verify-data, extract), the output matches borg's on copies of the same repository, and
//! repository deletion asks, refuses and removes as borg does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use rand::SeedableRng;

use common::*;

/// A scratch dir with a borg-made repository of three archives of a changing random tree;
/// `tree-aN` keeps the tree as archived in `aN`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(test: &str, mode: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("rborg-delete")
            .tempdir()
            .unwrap();
        let s = Setup { dir };
        let mut rng = rand::rngs::StdRng::seed_from_u64(test_seed(test));
        let env = s.env();
        ok(borg(&["init", "-e", mode, "repo"], &s.path(), &env));
        for n in 1..=3 {
            mutate_random_tree(&s.path().join("data"), &mut rng);
            ok(borg(
                &["create", &format!("repo::a{n}"), "data"],
                &s.path(),
                &env,
            ));
            copy_tree(&s.path().join("data"), &s.path().join(format!("tree-a{n}")));
        }
        s
    }

    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn env(&self) -> Vec<(String, String)> {
        env_with_base(&self.path().join("base"))
    }

    /// Copy repository and base dir (cache, security dir) to `<name>/`.
    fn copy(&self, name: &str) -> PathBuf {
        let dst = self.path().join(name);
        std::fs::create_dir(&dst).unwrap();
        copy_tree(&self.path().join("repo"), &dst.join("repo"));
        copy_tree(&self.path().join("base"), &dst.join("base"));
        dst
    }
}

/// Extract `archive` with real borg into `<dir>/<into>` and compare with `expected`.
fn borg_extracts_same(dir: &Path, env: &[(String, String)], archive: &str, expected: &Path) {
    let out = dir.join(format!("x-{}", archive.replace("::", "-")));
    std::fs::create_dir(&out).unwrap();
    ok(borg(
        &["extract", &format!("../repo::{archive}")],
        &out,
        env,
    ));
    assert_same_children(expected, &out.join("data"));
}

#[test]
fn delete_leaves_a_consistent_repository() {
    if !borg_or_skip("delete_leaves_a_consistent_repository") {
        return;
    }
    let s = Setup::new("delete_leaves_a_consistent_repository", "repokey");
    let env = s.env();
    ok(rborg(&["delete", "repo::a2"], &s.path(), &env));
    let o = ok(borg(&["check", "--verify-data", "repo"], &s.path(), &env));
    assert_eq!(stderr(&o), "");
    let list = stdout(&ok(borg(&["list", "--short", "repo"], &s.path(), &env)));
    assert_eq!(list, "a1\na3\n");
    borg_extracts_same(&s.path(), &env, "a1", &s.path().join("tree-a1"));
    borg_extracts_same(&s.path(), &env, "a3", &s.path().join("tree-a3"));
    for args in [
        vec!["info", "repo"],
        vec!["info", "repo::a1"],
        vec!["info", "--json", "repo::a3"],
    ] {
        let b = ok(borg(&args, &s.path(), &env));
        let r = ok(rborg(&args, &s.path(), &env));
        assert_eq!(stdout(&r), stdout(&b), "{args:?}");
    }
    // deleting the rest leaves only the manifest
    ok(rborg(&["delete", "-a", "a*", "repo"], &s.path(), &env));
    ok(borg(&["check", "repo"], &s.path(), &env));
    let o = ok(borg(&["info", "--json", "repo"], &s.path(), &env));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cache"]["stats"]["total_chunks"], 0);
}

#[test]
fn delete_in_every_fixture_mode() {
    let Some(fx) = fixtures_or_skip("delete_in_every_fixture_mode") else {
        return;
    };
    if !borg_or_skip("delete_in_every_fixture_mode") {
        return;
    }
    for mode in MODES {
        let s = Scratch::new();
        s.copy_fixture(&fx, mode);
        let repo = format!("../repos/{mode}");
        let env = s.env();
        ok(rborg(&["delete", &format!("{repo}::a1")], &s.work(), &env));
        ok(borg(&["check", "--verify-data", &repo], &s.work(), &env));
        let b = ok(borg(&["info", &repo], &s.work(), &env));
        let r = ok(rborg(&["info", &repo], &s.work(), &env));
        assert_eq!(stdout(&r), stdout(&b), "{mode}");
        let tree = make_fixture_tree(&fx, &s.path().join("expected"), 2);
        let out = s.path().join("out");
        std::fs::create_dir(&out).unwrap();
        ok(borg(
            &["extract", &format!("../repos/{mode}::a2")],
            &out,
            &env,
        ));
        assert_same_tree(&tree, &out.join("tree"));
    }
}

/// stderr with the copy's directory replaced and `--log-json` times dropped, so outputs of
/// two copies compare.
fn normalized(o: &Output, dir: &Path) -> String {
    stderr(o)
        .replace(&dir.display().to_string(), "<DIR>")
        .lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.remove("time");
                serde_json::Value::Object(m).to_string()
            }
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect()
}

/// Run the same delete on two copies, one with borg, one with rborg; compare stderr.
fn same_as_borg(s: &Setup, name: &str, args: &[&str]) -> (Output, Output) {
    same_as_borg_with(s, name, args, &[])
}

/// [`same_as_borg`] with extra environment variables.
fn same_as_borg_with(
    s: &Setup,
    name: &str,
    args: &[&str],
    vars: &[(&str, &str)],
) -> (Output, Output) {
    let b_dir = s.copy(&format!("{name}-borg"));
    let r_dir = s.copy(&format!("{name}-rborg"));
    let env = |dir: &Path| {
        vars.iter()
            .fold(env_with_base(&dir.join("base")), |e, (k, v)| {
                with_var(&e, k, v)
            })
    };
    let b = borg(args, &b_dir, &env(&b_dir));
    let r = rborg(args, &r_dir, &env(&r_dir));
    assert_eq!(normalized(&r, &r_dir), normalized(&b, &b_dir), "{args:?}");
    assert_eq!(stdout(&r), stdout(&b), "{args:?}");
    // and they leave the same archives behind
    if b_dir.join("repo").exists() {
        let list = |dir: &Path| {
            stdout(&ok(borg(
                &["list", "--short", "repo"],
                dir,
                &env_with_base(&dir.join("base")),
            )))
        };
        assert_eq!(list(&r_dir), list(&b_dir), "{args:?}");
    }
    assert_eq!(r_dir.join("repo").exists(), b_dir.join("repo").exists());
    (b, r)
}

#[test]
fn output_matches_borg() {
    if !borg_or_skip("output_matches_borg") {
        return;
    }
    let s = Setup::new("output_matches_borg", "repokey-blake2");
    let cases: &[(&str, &[&str])] = &[
        ("stats", &["delete", "--stats", "--list", "repo::a2"]),
        ("two", &["delete", "--list", "--stats", "repo", "a3", "a1"]),
        (
            "dry",
            &["delete", "--dry-run", "--list", "-a", "a*", "repo"],
        ),
        (
            "first",
            &[
                "delete",
                "--list",
                "--first",
                "1",
                "--sort-by",
                "name",
                "repo",
            ],
        ),
        (
            "last",
            &["delete", "--list", "--stats", "--last", "2", "repo"],
        ),
        (
            "force2",
            &["delete", "--force", "--force", "--list", "repo::a1"],
        ),
        (
            "force2dry",
            &[
                "delete",
                "--force",
                "--force",
                "--dry-run",
                "--list",
                "repo::a3",
            ],
        ),
        (
            "logjson",
            &[
                "--log-json",
                "delete",
                "--stats",
                "--list",
                "-P",
                "a",
                "repo",
            ],
        ),
    ];
    for (name, args) in cases {
        let (b, r) = same_as_borg(&s, name, args);
        assert!(r.status.success() && b.status.success(), "{args:?}");
    }
    // missing names: same lines; rborg follows borg 1.4's warning exit code
    let (_, r) = same_as_borg(&s, "missing", &["delete", "--list", "repo::nope", "a2"]);
    assert_eq!(r.status.code(), Some(1));
    // the --force --force leftovers are what check --repair cleans up, as with borg
    let dir = s.path().join("force2-rborg");
    let env = env_with_base(&dir.join("base"));
    let o = borg(&["check", "repo"], &dir, &env);
    assert!(
        stderr(&o).contains("orphaned objects found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn mixing_names_and_filters_is_refused() {
    if !borg_or_skip("mixing_names_and_filters_is_refused") {
        return;
    }
    let s = Setup::new("mixing_names_and_filters_is_refused", "none");
    let env = s.env();
    let o = rborg(&["delete", "-a", "a*", "repo::a1"], &s.path(), &env);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o)
        .contains("Mixing archive filters and explicitly named archives is not supported."));
    let o = rborg(
        &["delete", "--last", "1", "repo::a1"],
        &s.path(),
        &with_var(&env, "BORG_EXIT_CODES", "legacy"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stdout(&ok(rborg(&["list", "--short", "repo"], &s.path(), &env))),
        "a1\na2\na3\n"
    );
}

#[test]
fn repository_deletion_asks_first() {
    if !borg_or_skip("repository_deletion_asks_first") {
        return;
    }
    let s = Setup::new("repository_deletion_asks_first", "repokey");
    let id = repo_id_hex(&s.path().join("repo"));
    let cache = s.path().join("base/.cache/borg").join(&id);
    let security = s.path().join("base/.config/borg/security").join(&id);
    // no answer (stdin at EOF): borg's prompt and refusal, then borg 1.4's CancelledByUser
    let b_dir = s.copy("eof-borg");
    let r_dir = s.copy("eof-rborg");
    let b = borg(
        &["delete", "--list", "repo"],
        &b_dir,
        &env_with_base(&b_dir.join("base")),
    );
    let r = rborg(
        &["delete", "--list", "repo"],
        &r_dir,
        &env_with_base(&r_dir.join("base")),
    );
    assert_eq!(r.status.code(), Some(3));
    assert_eq!(b.status.code(), Some(2));
    let text = normalized(&r, &r_dir);
    assert_eq!(
        text.strip_suffix("Cancelled by user.\n"),
        Some(normalized(&b, &b_dir).as_str())
    );
    assert!(text.contains("You requested to completely DELETE the following repository *including* 3 archives it contains:"));
    assert!(text.contains("\nArchives:\na1  "));
    assert!(text.ends_with("Type 'YES' if you understand this and want to continue: Aborting.\nCancelled by user.\n"), "{text}");
    // YES on copies: the same lines, and repository, cache and security dir are gone
    let (b, r) = same_as_borg_with(
        &s,
        "yes",
        &["--info", "delete", "--list", "repo"],
        &[("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES")],
    );
    assert!(r.status.success() && b.status.success());
    let gone = s.path().join("yes-rborg");
    assert!(!gone.join("repo").exists());
    assert!(!gone.join("base/.cache/borg").join(&id).exists());
    assert!(!gone.join("base/.config/borg/security").join(&id).exists());
    let env = s.env();
    let legacy = with_var(&env, "BORG_EXIT_CODES", "legacy");
    let o = rborg(
        &["delete", "repo"],
        &s.path(),
        &with_var(&legacy, "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "yes"),
    );
    assert_eq!(o.status.code(), Some(2), "only YES counts");
    assert!(stderr(&o).contains("Invalid answer, aborting."));
    assert!(s.path().join("repo").is_dir() && cache.is_dir() && security.is_dir());
    // dry run and cache only
    let o = ok(rborg(
        &["--info", "delete", "--dry-run", "--force", "repo"],
        &s.path(),
        &env,
    ));
    assert_eq!(
        stderr(&o),
        "Would delete repository.\nWould delete security info.\nWould delete cache.\n"
    );
    let o = ok(rborg(
        &["--info", "delete", "--cache-only", "repo"],
        &s.path(),
        &env,
    ));
    assert_eq!(stderr(&o), "Cache deleted.\n");
    assert!(!cache.exists() && s.path().join("repo").is_dir());
    ok(rborg(&["info", "repo"], &s.path(), &env));
    assert!(cache.is_dir());
    // YES: repository, cache and security dir go (the latter unless kept)
    let yes = with_var(&env, "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES");
    let o = ok(rborg(
        &["--info", "delete", "--keep-security-info", "repo"],
        &s.path(),
        &yes,
    ));
    assert!(stderr(&o).ends_with(
        "YES (from BORG_DELETE_I_KNOW_WHAT_I_AM_DOING)\nRepository deleted.\nCache deleted.\n"
    ));
    assert!(!s.path().join("repo").exists() && !cache.exists() && security.is_dir());
}

#[test]
fn forced_delete_of_a_damaged_archive() {
    if !borg_or_skip("forced_delete_of_a_damaged_archive") {
        return;
    }
    let s = Setup::new("forced_delete_of_a_damaged_archive", "repokey");
    let env = s.env();
    // remove the first item-stream chunk of a2 (borg's debug tools name it)
    let dump = s.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    ok(borg(
        &["debug", "dump-archive-items", "../repo::a2"],
        &dump,
        &env,
    ));
    let first = dir_contents(&dump)
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n.starts_with("000000_"))
        .unwrap();
    let id = first
        .trim_start_matches("000000_")
        .trim_end_matches(".items");
    ok(borg(&["debug", "delete-obj", "repo", id], &s.path(), &env));
    // without --force: borg's error (and nothing changes); with --force: warnings, archive gone
    let cases: &[(&str, &[&str])] = &[
        ("plain", &["delete", "--stats", "repo::a2"]),
        (
            "forced",
            &["delete", "--force", "--stats", "--list", "repo::a2"],
        ),
    ];
    for (name, args) in cases {
        let b_dir = s.copy(&format!("{name}-borg"));
        let r_dir = s.copy(&format!("{name}-rborg"));
        let b = borg(args, &b_dir, &env_with_base(&b_dir.join("base")));
        let r = rborg(args, &r_dir, &env_with_base(&r_dir.join("base")));
        if *name == "plain" {
            assert_eq!(r.status.code(), Some(17), "{}", stderr(&r));
            assert_eq!(b.status.code(), Some(2));
            let first_lines = |o: &Output, dir: &Path| -> Vec<String> {
                normalized(o, dir)
                    .lines()
                    .take(3)
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(first_lines(&r, &r_dir), first_lines(&b, &b_dir));
        } else {
            assert!(r.status.success() && b.status.success());
            assert_eq!(normalized(&r, &r_dir), normalized(&b, &b_dir));
        }
        // both leave the same repository state behind for borg check
        let check = |dir: &Path| {
            let o = borg(&["check", "repo"], dir, &env_with_base(&dir.join("base")));
            (o.status.code(), stderr(&o))
        };
        assert_eq!(check(&r_dir), check(&b_dir), "{name}");
    }
}
