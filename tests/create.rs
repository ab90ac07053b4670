//! `rborg init` + `rborg create` against real borg: repositories rborg writes are checked,
//! listed and restored by borg in every encryption mode; borg and rborg deduplicate against each
//! other; create's JSON, stats and status letters follow borg; killed backups leave a usable
//! repository.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Environment for a test repository with its own base dir (cache, security dir, keys).
fn env_for(s: &Scratch, base: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = s
        .env()
        .into_iter()
        .filter(|(k, _)| k != "BORG_BASE_DIR" && k != "BORG_KEYS_DIR")
        .collect();
    env.push(("BORG_BASE_DIR".into(), base.display().to_string()));
    env.push(("BORG_DISPLAY_PASSPHRASE".into(), "no".into()));
    env
}

/// A tree with every item type rborg can make as this user: the fixture tree plus
/// non-UTF-8 names, nested dirs, sparse-ish and empty files, and (as root) devices.
fn rich_tree(fx: &Path, parent: &Path) -> PathBuf {
    let tree = make_fixture_tree(fx, parent, 1);
    let deep = tree.join("deep/er/est");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("zeros.bin"), vec![0u8; 3 << 20]).unwrap();
    std::fs::write(
        deep.join(std::ffi::OsStr::new("caf\u{e9}.txt")),
        b"utf-8 name",
    )
    .unwrap();
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(
        deep.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name")),
        b"latin",
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        let dev = tree.join("null-dev");
        let c = std::ffi::CString::new(dev.as_os_str().as_bytes()).unwrap();
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) },
            0
        );
    }
    tree
}

fn lines_without_b64(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    text.lines()
        .map(|l| {
            let mut m: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).unwrap();
            m.shift_remove("path_b64");
            m
        })
        .collect()
}

#[test]
fn rborg_repositories_pass_borg_check_and_restore_in_all_modes() {
    let test = "rborg_repositories_pass_borg_check_and_restore_in_all_modes";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    for mode in MODES {
        let s = Scratch::new();
        let env = env_for(&s, &s.base());
        let repo = s.path().join("repos").join(mode);
        let repo_s = repo.to_str().unwrap();
        ok(rborg(&["init", "-e", mode, repo_s], &s.work(), &env));
        let src = s.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let tree = rich_tree(&fx, &src);
        ok(rborg(
            &["create", &format!("{repo_s}::a1"), "tree"],
            &src,
            &env,
        ));
        let st = std::process::Command::new("python3")
            .arg(fx.join("mktree.py"))
            .arg("upgrade")
            .arg(&tree)
            .status()
            .unwrap();
        assert!(st.success());
        ok(rborg(
            &["create", "-C", "zstd,3", &format!("{repo_s}::a2"), "tree"],
            &src,
            &env,
        ));
        let out = ok(borg(&["check", "--verify-data", repo_s], &s.work(), &env));
        assert!(
            stderr(&out).is_empty(),
            "{mode}: borg check: {}",
            stderr(&out)
        );
        for archive in ["a1", "a2"] {
            let loc = format!("{repo_s}::{archive}");
            let theirs = ok(borg(&["list", "--json-lines", &loc], &s.work(), &env));
            let ours = ok(rborg(&["list", "--json-lines", &loc], &s.work(), &env));
            assert_eq!(
                lines_without_b64(&stdout(&theirs)),
                lines_without_b64(&stdout(&ours)),
                "{mode} {archive}"
            );
        }
        let dest = s.work().join("restore");
        std::fs::create_dir_all(&dest).unwrap();
        ok(borg(&["extract", &format!("{repo_s}::a2")], &dest, &env));
        assert_same_tree(&tree, &dest.join("tree"));
    }
}

/// `deduplicated_size` of the archive a `create --json` made.
fn dedup_size(out: &std::process::Output) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["archive"]["stats"]["deduplicated_size"].as_u64().unwrap()
}

#[test]
fn borg_and_rborg_deduplicate_against_each_other() {
    let test = "borg_and_rborg_deduplicate_against_each_other";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    for mode in ["repokey-blake2", "none"] {
        let s = Scratch::new();
        // separate client state per tool: each must chunk the files itself
        let borg_env = env_for(&s, &s.path().join("base-borg"));
        let rborg_env = env_for(&s, &s.path().join("base-rborg"));
        let repo = s.path().join("repos").join(mode);
        let repo_s = repo.to_str().unwrap();
        ok(borg(&["init", "-e", mode, repo_s], &s.work(), &borg_env));
        let src = s.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let tree = rich_tree(&fx, &src);
        let first = ok(borg(
            &["create", "--json", &format!("{repo_s}::borg1"), "tree"],
            &src,
            &borg_env,
        ));
        assert!(
            dedup_size(&first) > 300_000,
            "{mode}: the first backup stores the data"
        );
        let ours = ok(rborg(
            &["create", "--json", &format!("{repo_s}::rborg"), "tree"],
            &src,
            &rborg_env,
        ));
        assert_eq!(
            dedup_size(&ours),
            0,
            "{mode}: rborg finds every chunk borg stored"
        );
        std::fs::write(tree.join("new-after-rborg.txt"), b"x".repeat(5000)).unwrap();
        let again = ok(borg(
            &["create", "--json", &format!("{repo_s}::borg2"), "tree"],
            &src,
            &borg_env,
        ));
        assert!(
            dedup_size(&again) <= 5000 + 200,
            "{mode}: borg finds rborg's chunks ({})",
            dedup_size(&again)
        );
        for (tool, env) in [("borg", &borg_env), ("rborg", &rborg_env)] {
            let out = if tool == "borg" {
                borg(&["check", repo_s], &s.work(), env)
            } else {
                rborg(&["check", repo_s], &s.work(), env)
            };
            assert!(
                out.status.success() && stderr(&out).is_empty(),
                "{mode} {tool} check: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn create_json_stats_and_list_letters_follow_borg() {
    let test = "create_json_stats_and_list_letters_follow_borg";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let mut outputs = Vec::new();
    for tool in ["borg", "rborg"] {
        // each tool gets its own copy of the tree, made just before (same ctime history)
        let src = s.path().join(format!("src-{tool}"));
        std::fs::create_dir_all(&src).unwrap();
        let tree = make_fixture_tree(&fx, &src, 1);
        let env = env_for(&s, &s.path().join(format!("base-{tool}")));
        let repo = s.path().join("repos").join(tool);
        let repo_s = repo.to_str().unwrap().to_string();
        let run = |args: &[&str]| {
            if tool == "borg" {
                borg(args, &src, &env)
            } else {
                rborg(args, &src, &env)
            }
        };
        ok(run(&["init", "-e", "repokey", &repo_s]));
        let json = ok(run(&["create", "--json", &format!("{repo_s}::a1"), "tree"]));
        std::fs::write(tree.join("small.txt"), format!("changed by {tool}\n")).unwrap();
        let listed = ok(run(&[
            "create",
            "--list",
            "--filter=AMUx",
            "-e",
            "*/fifo",
            &format!("{repo_s}::a2"),
            "tree",
        ]));
        let stats = ok(run(&[
            "create",
            "--stats",
            &format!("{repo_s}::a3"),
            "tree",
        ]));
        std::fs::write(tree.join("small.txt"), b"hello borg fixture\n").unwrap();
        outputs.push((json, listed, stats));
    }
    let (bj, bl, bs) = &outputs[0];
    let (rj, rl, rs) = &outputs[1];
    // JSON: same keys, same value types, at every level
    fn shape(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), shape(v))).collect(),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.iter().take(1).map(shape).collect())
            }
            serde_json::Value::String(_) => "str".into(),
            serde_json::Value::Number(n) if n.is_f64() => "float".into(),
            serde_json::Value::Number(_) => "int".into(),
            other => other.clone(),
        }
    }
    let bjv: serde_json::Value = serde_json::from_slice(&bj.stdout).unwrap();
    let rjv: serde_json::Value = serde_json::from_slice(&rj.stdout).unwrap();
    assert_eq!(shape(&bjv), shape(&rjv));
    // --list with --filter: the same letters for the same paths. Both walk in inode order,
    // and the two copies of the tree need not get their inodes in the same order.
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(stderr(bl)), sorted(stderr(rl)));
    // --stats: the same lines apart from values
    let mask = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| {
                let l = regex::Regex::new(r"[0-9a-f]{64}")
                    .unwrap()
                    .replace_all(l, "ID");
                let l = regex::Regex::new(r"[-0-9.]+ (B|kB|MB|GB)")
                    .unwrap()
                    .replace_all(&l, "SIZE");
                let l = regex::Regex::new(r"\w{3}, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
                    .unwrap()
                    .replace_all(&l, "TIME");
                let l = regex::Regex::new(r"\d+\.\d\d seconds")
                    .unwrap()
                    .replace_all(&l, "SECONDS");
                let l = regex::Regex::new(r"Repository: .*")
                    .unwrap()
                    .replace_all(&l, "REPO");
                let l = regex::Regex::new(r"\d+").unwrap().replace_all(&l, "N");
                // column padding depends on the values; borg 1.2.4 also counts the archive
                // metadata object in "This archive" (1.4, which rborg follows, does not)
                regex::Regex::new(r" {2,}")
                    .unwrap()
                    .replace_all(&l, "  ")
                    .into_owned()
            })
            .collect()
    };
    assert_eq!(mask(&stderr(bs)), mask(&stderr(rs)));
}

#[test]
fn killed_backups_leave_a_usable_repository() {
    let test = "killed_backups_leave_a_usable_repository";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_for(&s, &s.base());
    let repo = s.path().join("repos/kill");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(
        &["init", "-e", "repokey-blake2", &repo_s],
        &s.work(),
        &env,
    ));
    let src = s.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let tree = make_fixture_tree(&fx, &src, 1);
    // enough data that a backup takes a while
    for i in 0..8 {
        let data: Vec<u8> = (0..4 << 20)
            .map(|j: u32| (j.wrapping_mul(2654435761).wrapping_add(i) >> 13) as u8)
            .collect();
        std::fs::write(tree.join(format!("big{i}.bin")), data).unwrap();
    }
    ok(rborg(
        &["create", &format!("{repo_s}::base"), "tree"],
        &src,
        &env,
    ));
    let mut rng: u64 = 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    for round in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = std::time::Duration::from_millis(rng % 900);
        std::fs::write(tree.join("round.txt"), format!("round {round}")).unwrap();
        let mut cmd = std::process::Command::new(rborg_bin());
        cmd.args([
            "create",
            "--files-cache=disabled",
            &format!("{repo_s}::killed{round}"),
            "tree",
        ])
        .current_dir(&src);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = borg(&["check", &repo_s], &s.work(), &env);
        assert!(
            out.status.success(),
            "round {round} after {delay:?}: borg check: {}",
            stderr(&out)
        );
        let dest = s.work().join(format!("restore{round}"));
        std::fs::create_dir_all(&dest).unwrap();
        ok(borg(&["extract", &format!("{repo_s}::base")], &dest, &env));
        std::fs::remove_dir_all(&dest).unwrap();
    }
    ok(rborg(
        &["create", &format!("{repo_s}::after"), "tree"],
        &src,
        &env,
    ));
    let out = ok(borg(&["check", "--verify-data", &repo_s], &s.work(), &env));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
