//! `rborg config` against real borg 1.2.4: for each case both tools run on identical copies
//! of one state (repository + BORG_BASE_DIR) at the same path, and their stdout, stderr,
//! exit code (legacy table) and the files they leave behind must be the same. Plus interop
//! (a value set by one tool honoured by the other), the exclusive lock, and the modern
//! exit codes.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// `rborg()` or `borg()`.
type Tool = fn(&[&str], &Path, &[(String, String)]) -> Output;

/// Every file under `root`: relative path → content (directories as `None`).
fn files(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// borg's "Local Exception" report reduced to what rborg can match: the first line and the
/// exception line (`ValueError: …`); other output unchanged.
fn comparable_stderr(o: &Output) -> String {
    let text = stderr(o);
    if !text.starts_with("Local Exception\n") {
        return text;
    }
    let exception = text
        .lines()
        .rev()
        .find(|l| {
            l.split_once(": ").is_some_and(|(class, _)| {
                !class.is_empty() && class.chars().all(|c| c.is_alphanumeric() || c == '.')
            })
        })
        .unwrap_or("");
    format!("Local Exception\n{exception}\n")
}

/// A state (`state/r` + `state/base`) that each case replays at `run/` for both tools.
struct Lab {
    s: Scratch,
}

impl Lab {
    fn new(encryption: &str) -> Lab {
        let s = Scratch::new();
        let lab = Lab { s };
        std::fs::create_dir_all(lab.state()).unwrap();
        let env = env_with_base(&lab.state().join("base"));
        ok(borg(&["init", "-e", encryption, "r"], &lab.state(), &env));
        lab
    }

    fn state(&self) -> PathBuf {
        self.s.path().join("state")
    }

    fn run_dir(&self) -> PathBuf {
        self.s.path().join("run")
    }

    fn env(&self) -> Vec<(String, String)> {
        let env = env_with_base(&self.run_dir().join("base"));
        let env = with_var(&env, "BORG_EXIT_CODES", "legacy");
        with_var(&env, "BORG_SHOW_SYSINFO", "no")
    }

    /// Run `tool config ARGS` on a fresh copy of the state; returns its output and the files
    /// it left, and moves the result to `keep`.
    fn run(
        &self,
        tool: Tool,
        args: &[&str],
        keep: &Path,
    ) -> (Output, BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let run = self.run_dir();
        let _ = std::fs::remove_dir_all(&run);
        copy_tree(&self.state(), &run);
        let mut full = vec!["config"];
        full.extend_from_slice(args);
        let out = tool(&full, &run, &self.env());
        let left = files(&run);
        let _ = std::fs::remove_dir_all(keep);
        std::fs::rename(&run, keep).unwrap();
        (out, left)
    }

    /// Both tools on the same state must agree; borg's result becomes the next state.
    fn same(&self, args: &[&str]) -> Output {
        let by_borg = self.s.path().join("by-borg");
        let by_rborg = self.s.path().join("by-rborg");
        let (b, b_files) = self.run(borg, args, &by_borg);
        let (r, r_files) = self.run(rborg, args, &by_rborg);
        assert_eq!(stdout(&r), stdout(&b), "stdout of config {args:?}");
        assert_eq!(
            comparable_stderr(&r),
            comparable_stderr(&b),
            "stderr of config {args:?}"
        );
        assert_eq!(r.status.code(), b.status.code(), "rc of config {args:?}");
        let differing: Vec<_> = b_files
            .keys()
            .chain(r_files.keys())
            .filter(|k| b_files.get(*k) != r_files.get(*k))
            .collect();
        assert!(
            differing.is_empty(),
            "files differ after config {args:?}: {differing:?}"
        );
        std::fs::remove_dir_all(self.state()).unwrap();
        std::fs::rename(&by_borg, self.state()).unwrap();
        b
    }
}

#[test]
fn repository_config_get_set_delete_list_like_borg() {
    let test = "repository_config_get_set_delete_list_like_borg";
    if !borg_or_skip(test) {
        return;
    }
    let lab = Lab::new("repokey");
    // reading
    assert_eq!(stdout(&lab.same(&["r", "additional_free_space"])), "0\n");
    assert_eq!(stdout(&lab.same(&["r", "repository.append_only"])), "0\n");
    assert!(stdout(&lab.same(&["r", "-l"])).starts_with("[repository]\nversion = 1\n"));
    let key = stdout(&lab.same(&["r", "KEY"]));
    assert!(key.lines().count() > 3, "the repokey, over several lines");
    for missing in [
        &["r", "foo"][..],
        &["r", "nosec.foo"],
        &["r", "a.b.c"],
        &["r", "DEFAULT.x"],
        &["r", "append_only", ""],
    ] {
        lab.same(missing);
    }
    assert_eq!(
        stderr(&lab.same(&["r", "foo"])),
        "No option 'foo' in section: 'repository'\n"
    );
    // setting
    for set in [
        &["r", "append_only", "1"][..],
        &["r", "storage_quota", "10M"],
        &["r", "max_segment_size", "100M"],
        &["r", "additional_free_space", "1.5G"],
        &["r", "segments_per_dir", " 2_000 "],
        &["r", "last_segment_checked", "-1"],
        &["r", "last_segment_checked", "5"],
        &["--bypass-lock", "r", "repository.append_only", "0"],
    ] {
        let out = lab.same(set);
        assert!(out.status.success() && out.stdout.is_empty(), "{set:?}");
    }
    let listed = stdout(&lab.same(&["r", "-l"]));
    assert!(listed.contains("\nstorage_quota = 10M\n"), "{listed}");
    assert!(listed.ends_with("\nlast_segment_checked = 5\n"), "{listed}");
    // refused names and values: borg's ValueError, config untouched
    for refused in [
        &["r", "APPEND_ONLY", "1"][..],
        &["r", "append_only", "2"],
        &["r", "storage_quota", "5M"],
        &["r", "storage_quota", "0"],
        &["r", "storage_quota", "1k"],
        &["r", "max_segment_size", "5G"],
        &["r", "version", "2"],
        &["r", "key", "x"],
        &["r", "id", "zz"],
        &["r", "id", "abcd"],
        &["r", "segments_per_dir", "x"],
        &["r", "cache.previous_location", "/x"],
        &["-d", "r", "version"],
        &["-d", "r", "nosec.x"],
    ] {
        let out = lab.same(refused);
        assert_eq!(out.status.code(), Some(2), "{refused:?}");
    }
    // deleting (also an absent key)
    lab.same(&["-d", "r", "storage_quota"]);
    lab.same(&["-d", "r", "storage_quota"]);
    lab.same(&["r", "storage_quota"]);
    lab.same(&["-d", "r", "additional_free_space"]);
    assert!(stdout(&lab.same(&["r", "-l"])).contains("\nadditional_free_space = False\n"));
    // no name
    let out = lab.same(&["r"]);
    assert_eq!(stderr(&out), "No config key name was provided.\n");
    // a new id
    let id = "ab".repeat(32);
    lab.same(&["r", "id", &id]);
    assert!(stdout(&lab.same(&["r", "-l"])).contains(&format!("\nid = {id}\n")));
}

#[test]
fn cache_config_like_borg() {
    let test = "cache_config_like_borg";
    if !borg_or_skip(test) {
        return;
    }
    let lab = Lab::new("repokey");
    // the first use creates the cache (both tools alike)
    let listed = stdout(&lab.same(&["-c", "r", "-l"]));
    assert!(listed.contains("\nversion = False\n"), "{listed}");
    let here = format!("{}\n", lab.s.path().join("run/r").display());
    assert_eq!(stdout(&lab.same(&["-c", "r", "previous_location"])), here);
    lab.same(&["-c", "r", "cache.version"]);
    lab.same(&["-c", "r", "integrity.manifest"]);
    lab.same(&["-c", "r", "foo"]);
    lab.same(&["-c", "r", "x.foo"]);
    lab.same(&["-c", "r", "repository.append_only"]);
    for refused in [
        &["-c", "r", "manifest", "00"][..],
        &["-c", "r", "repository.append_only", "1"],
        &["-c", "r", "previous_location", "::"],
        &["-c", "-d", "r", "integrity.manifest"],
        &["-c", "r"],
    ] {
        assert_eq!(lab.same(refused).status.code(), Some(2), "{refused:?}");
    }
    // a moved repository: borg's relocation notice on the next use
    lab.same(&["-c", "r", "previous_location", "ssh://u@h:22/x"]);
    let out = lab.same(&["-c", "r", "previous_location"]);
    assert!(stderr(&out).contains("was previously located at ssh://u@h:22/x"));
    lab.same(&["-c", "-d", "r", "previous_location"]);
    lab.same(&["-c", "r", "previous_location", "relative/path"]);
    lab.same(&["-c", "r", "previous_location"]);
}

#[test]
fn argument_errors_and_exit_codes() {
    let test = "argument_errors_and_exit_codes";
    if !borg_or_skip(test) {
        return;
    }
    let lab = Lab::new("none");
    let env = with_var(
        &env_with_base(&lab.state().join("base")),
        "BORG_SHOW_SYSINFO",
        "no",
    );
    let legacy = with_var(&env, "BORG_EXIT_CODES", "legacy");
    let cwd = lab.state();
    // -d and -l together: argparse's message
    let b = borg(&["config", "-d", "-l", "r"], &cwd, &env);
    let r = rborg(&["config", "-d", "-l", "r"], &cwd, &env);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(b.status.code(), Some(2));
    let error_of = |o: &Output| {
        let text = stderr(o);
        let last = text.lines().last().unwrap_or("").to_string();
        last.split_once("config: ").map(|(_, e)| e.to_string())
    };
    assert_eq!(error_of(&r), error_of(&b));
    assert!(error_of(&r).is_some_and(|e| e.contains("not allowed with argument -d/--delete")));
    // local repositories only; a missing one
    let r = rborg(&["config", "ssh://host/repo", "append_only"], &cwd, &env);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("\"ssh://host/repo\": Repository must be local"));
    let b = borg(&["config", "nope", "append_only"], &cwd, &legacy);
    let r = rborg(&["config", "nope", "append_only"], &cwd, &legacy);
    assert_eq!(stderr(&r), stderr(&b));
    assert_eq!(r.status.code(), b.status.code());
    // the user's (modern) exit codes: CommandError 4, missing key 1 (a warning), refused 2
    let r = rborg(&["config", "r"], &cwd, &env);
    assert_eq!(r.status.code(), Some(4));
    assert_eq!(stderr(&r), "No config key name was provided.\n");
    let r = rborg(&["config", "r", "nokey"], &cwd, &env);
    assert_eq!(r.status.code(), Some(1));
    let r = rborg(&["config", "r", "append_only", "yes"], &cwd, &env);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).starts_with("Local Exception\n"));
    assert!(stderr(&r).contains("\nValueError: Invalid value\n"));
    let r = rborg(&["config", "nope", "append_only"], &cwd, &env);
    assert_eq!(r.status.code(), Some(13));
}

/// Segment files of a repository.
fn segments(repo: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files(&repo.join("data"))
        .into_iter()
        .filter(|(_, content)| content.is_some())
        .map(|(p, _)| p)
        .collect();
    out.sort();
    out
}

#[test]
fn append_only_set_by_one_tool_is_honoured_by_the_other() {
    let test = "append_only_set_by_one_tool_is_honoured_by_the_other";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let cwd = s.work();
    std::fs::create_dir_all(cwd.join("src")).unwrap();
    std::fs::write(cwd.join("src/file"), vec![7u8; 100_000]).unwrap();
    ok(borg(&["init", "-e", "none", "r"], &cwd, &env));
    ok(borg(&["create", "r::a", "src"], &cwd, &env));
    let before = segments(&cwd.join("r"));

    // rborg turns append-only on: borg reads it and does not compact
    let out = ok(rborg(&["config", "r", "append_only", "1"], &cwd, &env));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(
        stdout(&ok(borg(&["config", "r", "append_only"], &cwd, &env))),
        "1\n"
    );
    ok(borg(&["delete", "r::a"], &cwd, &env));
    ok(borg(&["compact", "r"], &cwd, &env));
    let kept = segments(&cwd.join("r"));
    assert!(
        before.iter().all(|p| kept.contains(p)),
        "{before:?} {kept:?}"
    );

    // borg turns it off: rborg reads that and compacts
    ok(borg(&["config", "r", "append_only", "0"], &cwd, &env));
    assert_eq!(
        stdout(&ok(rborg(&["config", "r", "append_only"], &cwd, &env))),
        "0\n"
    );
    ok(rborg(&["compact", "r"], &cwd, &env));
    let after = segments(&cwd.join("r"));
    assert!(
        before.iter().any(|p| !after.contains(p)),
        "{before:?} {after:?}"
    );
    ok(borg(&["check", "r"], &cwd, &env));

    // values written by one tool listed identically by both
    ok(rborg(&["config", "r", "storage_quota", "1G"], &cwd, &env));
    ok(borg(
        &["config", "r", "additional_free_space", "2M"],
        &cwd,
        &env,
    ));
    let b = stdout(&ok(borg(&["config", "-l", "r"], &cwd, &env)));
    let r = stdout(&ok(rborg(&["config", "-l", "r"], &cwd, &env)));
    assert_eq!(r, b);
    assert!(
        r.contains("\nstorage_quota = 1G\nadditional_free_space = 2M\n"),
        "{r}"
    );
    // no temporary file or old config left behind
    let leftovers: Vec<_> = std::fs::read_dir(cwd.join("r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("config") && n != "config")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn config_takes_the_exclusive_lock() {
    let test = "config_takes_the_exclusive_lock";
    if !borg_or_skip(test) {
        return;
    }
    let Some(python) = borg_python() else {
        skip(test, "borg's Python modules are not importable");
        return;
    };
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let cwd = s.work();
    ok(rborg(&["init", "-e", "none", "r"], &cwd, &env));
    // borg's own Lock class holds a shared lock until its stdin closes
    let script = "import sys\nfrom borg.locking import Lock\n\
                  lock = Lock(sys.argv[1], exclusive=False).acquire()\n\
                  print('locked', flush=True)\nsys.stdin.read()\nlock.release()\n";
    let mut holder = Command::new(python)
        .args(["-c", script, &cwd.join("r/lock").display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");

    // a reader may share the lock, config may not
    ok(rborg(&["list", "r"], &cwd, &env));
    let r = rborg(
        &["config", "--lock-wait", "1", "r", "append_only", "1"],
        &cwd,
        &env,
    );
    let b = borg(
        &["config", "--lock-wait", "1", "r", "append_only", "1"],
        &cwd,
        &with_var(&env, "BORG_EXIT_CODES", "legacy"),
    );
    assert_eq!(r.status.code(), Some(73), "{}", stderr(&r));
    assert_eq!(b.status.code(), Some(2), "{}", stderr(&b));
    assert_eq!(stderr(&r), stderr(&b));
    // --bypass-lock does not wait
    ok(rborg(
        &["config", "--bypass-lock", "r", "append_only"],
        &cwd,
        &env,
    ));

    holder.stdin.take().unwrap().write_all(b"").unwrap();
    assert!(holder.wait().unwrap().success());
    ok(rborg(&["config", "r", "append_only", "1"], &cwd, &env));
    assert!(!cwd.join("r/lock.exclusive").exists());
}
