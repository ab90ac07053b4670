//! Repository locks shared with real borg: while one tool holds the lock (`with-lock`), the
//! other waits `--lock-wait` seconds and fails with the lock timeout; `with-lock` passes the
//! command's exit status on; `break-lock` frees a repository.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Start `program with-lock REPO sleep SECS` and wait until the lock is taken.
fn hold_lock(
    program: &Path,
    repo: &Path,
    secs: u32,
    cwd: &Path,
    env: &[(String, String)],
) -> Child {
    let mut cmd = Command::new(program);
    cmd.args([
        "with-lock",
        repo.to_str().unwrap(),
        "sleep",
        &secs.to_string(),
    ])
    .current_dir(cwd)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while !repo.join("lock.exclusive").exists() {
        assert!(child.try_wait().unwrap().is_none(), "with-lock ended early");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "lock never taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn setup(s: &Scratch, env: &[(String, String)]) -> String {
    let repo = s.path().join("repos/locked");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(&["init", "-e", "repokey", &repo_s], &s.work(), env));
    std::fs::create_dir_all(s.work().join("src")).unwrap();
    std::fs::write(s.work().join("src/file"), b"content").unwrap();
    repo_s
}

#[test]
fn each_tool_waits_for_the_others_lock_then_times_out() {
    let test = "each_tool_waits_for_the_others_lock_then_times_out";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = setup(&s, &env);
    let repo = Path::new(&repo_s);
    let borg_bin = find_on_path("borg").unwrap();

    // borg holds the lock: rborg waits a second, then LockTimeout (rc 73).
    let mut holder = hold_lock(&borg_bin, repo, 6, &s.work(), &env);
    let started = Instant::now();
    let out = rborg(
        &["create", "--lock-wait", "1", &format!("{repo_s}::a"), "src"],
        &s.work(),
        &env,
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Failed to create/acquire the lock"),
        "{}",
        stderr(&out)
    );
    assert!(holder.wait().unwrap().success());
    ok(rborg(
        &["create", &format!("{repo_s}::a"), "src"],
        &s.work(),
        &env,
    ));

    // rborg holds the lock: borg waits, then fails with its lock error (1.2: rc 2).
    let mut holder = hold_lock(&rborg_bin(), repo, 6, &s.work(), &env);
    let out = borg(
        &["create", "--lock-wait", "1", &format!("{repo_s}::b"), "src"],
        &s.work(),
        &env,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Failed to create/acquire the lock"),
        "{}",
        stderr(&out)
    );
    assert!(holder.wait().unwrap().success());
    ok(borg(
        &["create", &format!("{repo_s}::b"), "src"],
        &s.work(),
        &env,
    ));
    ok(borg(&["check", &repo_s], &s.work(), &env));
}

#[test]
fn with_lock_passes_the_exit_status_and_break_lock_frees_the_repository() {
    let test = "with_lock_passes_the_exit_status_and_break_lock_frees_the_repository";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = setup(&s, &env);
    let status = rborg(
        &["with-lock", &repo_s, "sh", "-c", "exit 3"],
        &s.work(),
        &env,
    );
    assert_eq!(status.status.code(), Some(3));
    let missing = rborg(
        &["with-lock", &repo_s, "no-such-command-xyz"],
        &s.work(),
        &env,
    );
    assert_eq!(missing.status.code(), Some(4), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("Error while trying to run 'no-such-command-xyz'"));
    // The no-op transaction with-lock commits leaves a repository borg accepts.
    ok(borg(&["check", &repo_s], &s.work(), &env));

    let borg_bin = find_on_path("borg").unwrap();
    let mut holder = hold_lock(&borg_bin, Path::new(&repo_s), 30, &s.work(), &env);
    ok(rborg(&["break-lock", &repo_s], &s.work(), &env));
    assert!(!Path::new(&repo_s).join("lock.exclusive").exists());
    let out = rborg(
        &["create", "--lock-wait", "1", &format!("{repo_s}::c"), "src"],
        &s.work(),
        &env,
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// SIGKILL a `with-lock` holder and its command, leaving the lock of a dead process behind.
fn kill_holder(mut holder: Child) {
    let pid = holder.id().to_string();
    let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn each_tool_removes_the_stale_lock_of_the_other() {
    let test = "each_tool_removes_the_stale_lock_of_the_other";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = setup(&s, &env);
    let repo = Path::new(&repo_s);
    let borg_bin = find_on_path("borg").unwrap();

    // a holder died with the lock (same host, process gone): the other tool removes it and
    // goes on — borg's stale lock left for rborg, then rborg's for borg
    type Tool = fn(&[&str], &Path, &[(String, String)]) -> std::process::Output;
    let rounds: [(std::path::PathBuf, Tool, &str); 2] =
        [(borg_bin, rborg, "a"), (rborg_bin(), borg, "b")];
    for (holder, client, archive) in rounds {
        kill_holder(hold_lock(&holder, repo, 30, &s.work(), &env));
        assert!(repo.join("lock.exclusive").exists());
        let target = format!("{repo_s}::{archive}");
        let out = client(
            &["create", "--lock-wait", "1", &target, "src"],
            &s.work(),
            &env,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Killed stale lock"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!repo.join("lock.exclusive").exists());
    ok(borg(&["check", &repo_s], &s.work(), &env));
}
