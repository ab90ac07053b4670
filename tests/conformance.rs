//! The frontend contract, checked against real borg 1.2.4: the same operations on twin
//! repositories (each tool inits its own, both back up the same tree) must give the same
//! JSON keys and value types, the same `--log-json` record types, msgids, loggers and
//! progress-operation structure, and the same exit codes (legacy mode; rborg's default
//! modern codes are checked against the user's table beside).
//!
//! Differences accepted on purpose (borg 1.4 behaviour or project decisions, see
//! `common::logjson`): rborg's JSON may carry 1.4's `cwd` (archive info) and `path_b64`;
//! rborg's file warnings carry 1.4's msgids; borg's progress indicators created while
//! another is alive come out as `borg.output.progress` log lines and are read back as the
//! documented progress operations they stand for.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::logjson::*;
use common::*;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Borg,
    Rborg,
}

const TOOLS: [Tool; 2] = [Tool::Borg, Tool::Rborg];

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Borg => "borg",
            Tool::Rborg => "rborg",
        }
    }
}

/// Two repositories, one made and used by each tool, and one source tree both back up.
struct Twins {
    s: Scratch,
}

impl Twins {
    /// `None` (test skipped) without real borg.
    fn new(test: &str, mode: &str) -> Option<Twins> {
        if !borg_or_skip(test) {
            return None;
        }
        let t = Twins { s: Scratch::new() };
        make_tree(&t.src().join("data"));
        for tool in TOOLS {
            let out = t.run(tool, &["init", "-e", mode, "REPO"]);
            assert!(out.status.success(), "{tool:?} init: {}", stderr(&out));
        }
        Some(t)
    }

    /// The cwd of every command; holds the backed-up `data` tree.
    fn src(&self) -> PathBuf {
        self.s.path().join("src")
    }

    fn repo(&self, tool: Tool) -> PathBuf {
        self.s.path().join("repos").join(tool.name())
    }

    fn base(&self, tool: Tool) -> PathBuf {
        self.s.path().join(format!("base-{}", tool.name()))
    }

    /// Each tool has its own client state; legacy exit codes (borg 1.2 has no others).
    fn env(&self, tool: Tool) -> Vec<(String, String)> {
        let mut env = env_with_base(&self.base(tool));
        env.push(("BORG_EXIT_CODES".into(), "legacy".into()));
        env
    }

    /// `args` with `REPO` / `REPO::…` standing for the tool's repository.
    fn args(&self, tool: Tool, args: &[&str]) -> Vec<String> {
        let repo = self.repo(tool).display().to_string();
        args.iter()
            .map(|a| match a.strip_prefix("REPO") {
                Some(rest) if rest.is_empty() || rest.starts_with("::") => format!("{repo}{rest}"),
                _ => a.to_string(),
            })
            .collect()
    }

    fn run_env(&self, tool: Tool, args: &[&str], env: &[(String, String)]) -> Output {
        std::fs::create_dir_all(self.src()).unwrap();
        let args = self.args(tool, args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match tool {
            Tool::Borg => borg(&args, &self.src(), env),
            Tool::Rborg => rborg(&args, &self.src(), env),
        }
    }

    fn run(&self, tool: Tool, args: &[&str]) -> Output {
        self.run_env(tool, args, &self.env(tool))
    }

    /// Run with both tools: (borg, rborg); the exit codes must agree.
    fn both(&self, args: &[&str]) -> (Output, Output) {
        let b = self.run(Tool::Borg, args);
        let r = self.run(Tool::Rborg, args);
        assert_eq!(
            b.status.code(),
            r.status.code(),
            "{args:?}: exit code (legacy mode)\nborg: {}\nrborg: {}",
            stderr(&b),
            stderr(&r)
        );
        (b, r)
    }

    /// rborg's exit code in its default (modern) mode.
    fn rborg_modern_rc(&self, args: &[&str], env: &[(String, String)]) -> i32 {
        let env: Vec<_> = env
            .iter()
            .filter(|(k, _)| k != "BORG_EXIT_CODES")
            .cloned()
            .collect();
        self.run_env(Tool::Rborg, args, &env).status.code().unwrap()
    }

    /// Run with both tools and compare their `--log-json` streams; returns the outputs.
    fn both_streams(&self, what: &str, args: &[&str]) -> (Output, Output) {
        let (b, r) = self.both(args);
        assert_same_stream(what, &borg_stream(&b), &rborg_stream(&r));
        (b, r)
    }

    /// Forget both tools' caches (both then build theirs the same way).
    fn drop_caches(&self) {
        for tool in TOOLS {
            let _ = std::fs::remove_dir_all(self.base(tool).join(".cache"));
        }
    }
}

fn borg_stream(o: &Output) -> LogStream {
    parse_log_stream(&stderr(o), true)
}

fn rborg_stream(o: &Output) -> LogStream {
    without_14_warning_msgids(parse_log_stream(&stderr(o), false))
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("small.txt"), b"hello frontend\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("gone.txt"), b"removed before the second backup\n").unwrap();
    std::fs::write(root.join("big.bin"), noise(300_000, 7)).unwrap();
    std::fs::write(root.join("sub/deeper/text.txt"), b"x".repeat(5000)).unwrap();
    std::fs::write(root.join("sub/mode.txt"), b"mode changes\n").unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
}

/// Changes between the first and second backup: modified, added, removed, chmod-ed.
fn change_tree(root: &Path) {
    std::fs::write(root.join("small.txt"), b"hello again, frontend\n").unwrap();
    std::fs::write(root.join("added.txt"), noise(2000, 3)).unwrap();
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    std::fs::create_dir(root.join("newdir")).unwrap();
    std::fs::set_permissions(
        root.join("sub/mode.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn assert_rc(o: &Output, want: i32, what: &str) {
    assert_eq!(o.status.code(), Some(want), "{what}: {}", stderr(o));
}

/// Keys whose values the two tools must agree on in repository/archive JSON.
const ARCHIVE_EXACT: &[&str] = &[
    "name",
    "archive",
    "barchive",
    "mode",
    "nfiles",
    "chunker_params",
    "hostname",
    "username",
    "comment",
];

/// Keys of `list --json-lines` items whose values must agree (times differ: separate runs
/// read the same files, but `ctime`/`atime` are not compared and `mtime` is the same).
const ITEM_EXACT: &[&str] = &[
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
    "size",
    "mtime",
];

const DIFF_EXACT: &[&str] = &[
    "path",
    "type",
    "size",
    "added",
    "removed",
    "old_mode",
    "new_mode",
    "old_user",
    "new_user",
    "old_group",
    "new_group",
];

fn sorted_by_path(mut lines: Vec<Value>) -> Vec<Value> {
    lines.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    lines
}

fn assert_same_lines(what: &str, b: &Output, r: &Output, rules: &JsonRules) -> usize {
    let bl = sorted_by_path(json_lines(&b.stdout));
    let rl = sorted_by_path(json_lines(&r.stdout));
    assert_same_json(what, &Value::Array(bl.clone()), &Value::Array(rl), rules);
    bl.len()
}

#[test]
fn create_list_info_diff_json_and_log_json_match_borg() {
    let Some(t) = Twins::new(
        "create_list_info_diff_json_and_log_json_match_borg",
        "repokey",
    ) else {
        return;
    };
    let create_rules = JsonRules {
        exact: ARCHIVE_EXACT,
        rborg_extra: &[],
    };
    // borg's init builds the cache, rborg's does not: start both from none, so both
    // synchronise it (cache.begin_transaction / cache.commit) in the first create. That
    // backs up a directory of its own: borg trusts every file it saw in a run that
    // synchronised the cache (its newest-cmtime rule is off then), rborg never trusts the
    // newest file — later file status letters would differ.
    t.drop_caches();
    std::fs::create_dir_all(t.src().join("warmup")).unwrap();
    std::fs::write(t.src().join("warmup/file"), b"warm-up\n").unwrap();
    let (b, r) = t.both_streams(
        "create (cold cache)",
        &[
            "create",
            "--json",
            "--list",
            "--log-json",
            "--progress",
            "REPO::a0",
            "warmup",
        ],
    );
    assert_rc(&r, 0, "create");
    assert_same_json(
        "create --json",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &create_rules,
    );
    let rs = rborg_stream(&r);
    for msgid in ["cache.begin_transaction", "cache.commit"] {
        let ops = rs
            .operations
            .iter()
            .filter(|op| op.msgid.as_deref() == Some(msgid));
        assert_eq!(ops.count(), 2, "{msgid}: {:?}", rs.operations);
    }

    let (b, r) = t.both_streams(
        "create (warm cache)",
        &[
            "create",
            "--json",
            "--list",
            "--log-json",
            "--progress",
            "REPO::a1",
            "data",
        ],
    );
    assert_same_json(
        "create --json",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &create_rules,
    );
    let rs = rborg_stream(&r);
    assert_eq!(rs.file_status.len(), 10, "{:?}", rs.file_status);
    assert!(rs
        .file_status
        .iter()
        .all(|(st, _)| st == "A" || st == "d" || st == "s"));

    change_tree(&t.src().join("data"));
    let (b, r) = t.both_streams(
        "create --stats (warm cache)",
        &[
            "create",
            "--json",
            "--list",
            "--log-json",
            "--progress",
            "--stats",
            "REPO::a2",
            "data",
        ],
    );
    assert_same_json(
        "create --json --stats",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &create_rules,
    );
    assert!(rborg_stream(&r)
        .file_status
        .iter()
        .any(|(_, path)| path == "data/added.txt"));

    // --stats without --json: the statistics block as borg.output.stats records
    let (_, r) = t.both_streams(
        "create --stats --log-json",
        &[
            "create",
            "--list",
            "--stats",
            "--log-json",
            "REPO::a3",
            "data",
        ],
    );
    assert!(rborg_stream(&r)
        .logs
        .iter()
        .any(|(level, name, _)| level == "INFO" && name == "borg.output.stats"));

    let (b, r) = t.both(&["list", "--json", "REPO"]);
    assert_same_json(
        "list --json",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &create_rules,
    );
    assert_eq!(json_doc(&r.stdout)["archives"].as_array().unwrap().len(), 4);
    let (b, r) = t.both(&[
        "list",
        "--json",
        "--format",
        "{name}{comment}{hostname}{username}{end}{command_line}",
        "REPO",
    ]);
    assert_same_json(
        "list --json --format",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &create_rules,
    );

    let item_rules = JsonRules {
        exact: ITEM_EXACT,
        rborg_extra: &["path_b64"],
    };
    let (b, r) = t.both(&["list", "--json-lines", "REPO::a1"]);
    assert_eq!(
        assert_same_lines("list --json-lines", &b, &r, &item_rules),
        10
    );
    let (b, r) = t.both(&[
        "list",
        "--json-lines",
        "--format",
        "{mode}{user}{group}{size}{isomtime}{path}{source}{health}{NL}",
        "REPO::a2",
    ]);
    assert_same_lines("list --json-lines --format", &b, &r, &item_rules);

    let (b, r) = t.both(&["info", "--json", "REPO"]);
    assert_same_json(
        "info --json REPO",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &create_rules,
    );
    let info_rules = JsonRules {
        exact: &[ARCHIVE_EXACT, &["original_size"]].concat(),
        rborg_extra: &["cwd"],
    };
    let (b, r) = t.both(&["info", "--json", "REPO::a1"]);
    assert_same_json(
        "info --json REPO::ARCHIVE",
        &json_doc(&b.stdout),
        &json_doc(&r.stdout),
        &info_rules,
    );

    let diff_rules = JsonRules {
        exact: DIFF_EXACT,
        rborg_extra: &["path_b64"],
    };
    let (b, r) = t.both(&["diff", "--json-lines", "REPO::a1", "a2"]);
    assert!(assert_same_lines("diff --json-lines", &b, &r, &diff_rules) >= 4);
    let (b, r) = t.both_streams(
        "diff --info --log-json --json-lines",
        &[
            "diff",
            "--info",
            "--log-json",
            "--json-lines",
            "REPO::a1",
            "a2",
        ],
    );
    assert_same_lines("diff --json-lines (--log-json)", &b, &r, &diff_rules);
}

#[test]
fn keyfile_repository_json_matches_borg() {
    let Some(t) = Twins::new("keyfile_repository_json_matches_borg", "keyfile-blake2") else {
        return;
    };
    let rules = JsonRules {
        exact: ARCHIVE_EXACT,
        rborg_extra: &[],
    };
    for args in [
        &["list", "--json", "REPO"][..],
        &["info", "--json", "REPO"][..],
    ] {
        let (b, r) = t.both(args);
        assert_same_json(
            &format!("{args:?}"),
            &json_doc(&b.stdout),
            &json_doc(&r.stdout),
            &rules,
        );
        assert!(json_doc(&r.stdout)["encryption"]["keyfile"].is_string());
    }
}

/// (verdict, archive name) of each `prune --list` line (the padding differs: 1.2 pads the
/// verdict to 40 columns, 1.4 to 44).
fn prune_verdicts(stream: &LogStream) -> Vec<(String, String)> {
    let re = regex::Regex::new(r"^(.*):\s+(\S+)\s+\w{3}, \d{4}-").unwrap();
    stream
        .log_objects
        .iter()
        .filter(|o| o["name"] == "borg.output.list")
        .map(|o| {
            let m = o["message"].as_str().unwrap();
            let c = re.captures(m).unwrap_or_else(|| panic!("list line: {m}"));
            (c[1].to_string(), c[2].to_string())
        })
        .collect()
}

#[test]
fn prune_and_delete_log_json_match_borg() {
    let Some(t) = Twins::new("prune_and_delete_log_json_match_borg", "repokey") else {
        return;
    };
    for day in 1..=5 {
        for tool in TOOLS {
            let archive = format!("REPO::a{day}");
            let timestamp = format!("2024-01-0{day}T10:00:00");
            let out = t.run(
                tool,
                &["create", "--timestamp", &timestamp, &archive, "data"],
            );
            assert_rc(&out, 0, "create");
        }
    }
    let (b, r) = t.both_streams(
        "prune --dry-run",
        &[
            "prune",
            "--list",
            "--stats",
            "--log-json",
            "--dry-run",
            "--keep-last",
            "2",
            "REPO",
        ],
    );
    assert_rc(&r, 0, "prune --dry-run");
    let verdicts = prune_verdicts(&rborg_stream(&r));
    assert_eq!(prune_verdicts(&borg_stream(&b)), verdicts);
    assert_eq!(
        verdicts.iter().filter(|(v, _)| v == "Would prune").count(),
        3
    );
    // --dry-run drops --stats with a warning
    assert_eq!(
        rborg_stream(&r).logs[0],
        ("WARNING".to_string(), "borg.archiver".to_string(), None)
    );

    let (b, r) = t.both_streams(
        "prune --progress",
        &[
            "prune",
            "--list",
            "--stats",
            "--log-json",
            "--progress",
            "--keep-last",
            "3",
            "REPO",
        ],
    );
    assert_eq!(
        prune_verdicts(&borg_stream(&b)),
        prune_verdicts(&rborg_stream(&r))
    );
    let rs = rborg_stream(&r);
    assert!(rs
        .operations
        .iter()
        .any(|op| op.msgid.as_deref() == Some("prune")));
    assert!(rs
        .logs
        .iter()
        .any(|(_, name, _)| name == "borg.output.stats"));

    let (_, r) = t.both_streams(
        "delete --progress",
        &[
            "delete",
            "--list",
            "--stats",
            "--log-json",
            "--progress",
            "REPO::a3",
        ],
    );
    let rs = rborg_stream(&r);
    assert_eq!(rs.logs[0].1, "borg.output.list");
    assert!(rs
        .operations
        .iter()
        .any(|op| op.msgid.as_deref() == Some("archive.delete")));
    t.both_streams(
        "delete",
        &["delete", "--list", "--stats", "--log-json", "REPO::a4"],
    );
    let (b, r) = t.both(&["list", "--json", "REPO"]);
    let names = |o: &Output| -> Vec<String> {
        json_doc(&o.stdout)["archives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&b), names(&r));
    assert_eq!(names(&r), ["a5"]);
}

/// Flip one byte in the middle of the largest segment (the one holding `big.bin`'s data).
fn damage_largest_segment(repo: &Path) {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(repo.join("data/0"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (std::fs::metadata(&p).unwrap().len(), p)
        })
        .collect();
    segments.sort();
    let (len, path) = segments.pop().unwrap();
    assert!(len > 250_000, "{len}");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[len as usize / 2] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn check_of_a_damaged_repository_matches_borg() {
    let Some(t) = Twins::new("check_of_a_damaged_repository_matches_borg", "repokey") else {
        return;
    };
    for tool in TOOLS {
        assert_rc(&t.run(tool, &["create", "REPO::a1", "data"]), 0, "create");
        damage_largest_segment(&t.repo(tool));
    }
    let args = ["check", "--log-json", "REPO"];
    let (_, r) = t.both_streams("check", &args);
    assert_rc(&r, 1, "check (legacy)");
    let rs = rborg_stream(&r);
    assert!(
        rs.logs.iter().all(|(_, name, _)| name == "borg.repository"),
        "{:?}",
        rs.logs
    );
    assert_eq!(t.rborg_modern_rc(&args, &t.env(Tool::Rborg)), 1);

    // what Vorta runs: --info --progress
    let (_, r) = t.both_streams(
        "check --info --progress",
        &["check", "--info", "--log-json", "--progress", "REPO"],
    );
    assert!(rborg_stream(&r)
        .operations
        .iter()
        .any(|op| op.msgid.as_deref() == Some("repository.check")));
}

/// Occupy a repository's lock as a process on another host would (never considered stale).
fn foreign_lock(repo: &Path) -> PathBuf {
    let dir = repo.join("lock.exclusive");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("elsewhere.example@17.4242-0"), b"").unwrap();
    dir
}

/// args, an environment change, the msgid, the modern rc.
type FailureCase<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str, i32);

/// The one error record of a failed run: (msgid, message).
fn error_record(stream: &LogStream) -> (String, String) {
    let errors: Vec<&Value> = stream
        .log_objects
        .iter()
        .filter(|o| o["levelname"] == "ERROR" && o["name"] == "borg.archiver")
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", stream.logs);
    (
        errors[0]["msgid"].as_str().unwrap_or("").to_string(),
        errors[0]["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn failures_give_borgs_msgids_and_exit_codes() {
    let Some(t) = Twins::new("failures_give_borgs_msgids_and_exit_codes", "repokey") else {
        return;
    };
    for tool in TOOLS {
        assert_rc(&t.run(tool, &["create", "REPO::a1", "data"]), 0, "create");
    }
    let missing = t.s.path().join("no-such-repo").display().to_string();
    let cases: Vec<FailureCase> = vec![
        (
            vec!["--show-rc", "list", "--log-json", "REPO"],
            Some(("BORG_PASSPHRASE", "not the passphrase")),
            "PassphraseWrong",
            52,
        ),
        (
            vec!["create", "--log-json", "REPO::x", "data"],
            Some(("BORG_PASSPHRASE", "not the passphrase")),
            "PassphraseWrong",
            52,
        ),
        (
            vec!["--show-rc", "list", "--log-json", &missing],
            None,
            "Repository.DoesNotExist",
            13,
        ),
        (
            vec!["info", "--log-json", "REPO::nope"],
            None,
            "Archive.DoesNotExist",
            31,
        ),
        (
            vec!["create", "--log-json", "REPO::a1", "data"],
            None,
            "Archive.AlreadyExists",
            30,
        ),
        (
            vec!["init", "--log-json", "-e", "repokey", "REPO"],
            None,
            "Repository.AlreadyExists",
            10,
        ),
    ];
    for (args, change, msgid, modern) in &cases {
        let what = format!("{args:?} {change:?}");
        let envs: Vec<_> = TOOLS
            .iter()
            .map(|&tool| match change {
                Some((k, v)) => with_var(&t.env(tool), k, v),
                None => t.env(tool),
            })
            .collect();
        let b = t.run_env(Tool::Borg, args, &envs[0]);
        let r = t.run_env(Tool::Rborg, args, &envs[1]);
        assert_eq!(b.status.code(), Some(2), "{what}: borg {}", stderr(&b));
        assert_rc(&r, 2, &what);
        let (bs, rs) = (borg_stream(&b), rborg_stream(&r));
        assert_same_stream(&what, &bs, &rs);
        assert_eq!(error_record(&rs).0, *msgid, "{what}");
        if args.contains(&"--show-rc") {
            let last = rs.log_objects.last().unwrap();
            assert_eq!(last["name"], "borg.output.show-rc");
            assert_eq!(last["message"], "terminating with error status, rc 2");
        }
        assert_eq!(
            t.rborg_modern_rc(args, &envs[1]),
            *modern,
            "{what}: modern rc"
        );
    }

    // A lock held by another host: both wait --lock-wait seconds, then LockTimeout.
    let locks: Vec<PathBuf> = TOOLS
        .iter()
        .map(|&tool| foreign_lock(&t.repo(tool)))
        .collect();
    for args in [
        &["list", "--log-json", "--lock-wait", "1", "REPO"][..],
        &[
            "create",
            "--log-json",
            "--lock-wait",
            "1",
            "REPO::b",
            "data",
        ][..],
    ] {
        let (_, r) = t.both_streams(&format!("{args:?} (locked)"), args);
        assert_rc(&r, 2, "lock timeout");
        let (msgid, message) = error_record(&rborg_stream(&r));
        assert_eq!(msgid, "LockTimeout");
        assert!(message.ends_with("lock.exclusive (timeout)."), "{message}");
        assert_eq!(t.rborg_modern_rc(args, &t.env(Tool::Rborg)), 73);
    }
    for dir in locks {
        std::fs::remove_dir_all(dir).unwrap();
    }

    // A file that vanished: a warning (rc 1 legacy; modern 107 with its msgid, 1.4).
    let args = ["create", "--log-json", "REPO::w", "data", "data/not-there"];
    let (_, r) = t.both_streams("create with a missing path", &args);
    assert_rc(&r, 1, "missing path");
    let raw = parse_log_stream(&stderr(&r), false);
    assert_eq!(raw.logs[0].2.as_deref(), Some("BackupFileNotFoundError"));
    let args = ["create", "--log-json", "REPO::w2", "data", "data/not-there"];
    assert_eq!(t.rborg_modern_rc(&args, &t.env(Tool::Rborg)), 107);
}
