//! Checkpoints of `rborg create` (`--checkpoint-interval`), checked with real borg: part files
//! of the file being read, the checkpoint archive replaced and finally removed, and after a
//! kill the checkpoint left behind, readable by borg, with its data reused by the next run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A command writing `bursts` blocks of 3 MB of deterministic bytes, pausing `pause` seconds
/// after each (so a backup of its output takes a while and checkpoints fall inside it).
fn producer(dir: &Path, bursts: u32, pause: f64) -> Vec<String> {
    let script = dir.join("produce.py");
    std::fs::write(
        &script,
        "import random, sys, time\n\
         rng = random.Random(20261122)\n\
         for _ in range(int(sys.argv[1])):\n\
         \x20   sys.stdout.buffer.write(rng.randbytes(3_000_000))\n\
         \x20   sys.stdout.buffer.flush()\n\
         \x20   time.sleep(float(sys.argv[2]))\n",
    )
    .unwrap();
    [
        "python3".to_string(),
        script.display().to_string(),
        bursts.to_string(),
        pause.to_string(),
    ]
    .to_vec()
}

/// What the producer writes, without the pauses.
fn produced(dir: &Path, bursts: u32) -> Vec<u8> {
    let argv = producer(dir, bursts, 0.0);
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn python_or_skip(test: &str) -> bool {
    if find_on_path("python3").is_none() {
        skip(test, "python3 is not installed");
        return false;
    }
    true
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn checkpoints_store_part_files_and_vanish_when_the_backup_completes() {
    let test = "checkpoints_store_part_files_and_vanish_when_the_backup_completes";
    if !borg_or_skip(test) || !python_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo = s.path().join("repos/cp");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(&["init", "-e", "repokey", &repo_s], &s.work(), &env));
    let cmd = producer(&s.work(), 4, 1.2);
    let mut args = vec![
        "create",
        "--checkpoint-interval",
        "1",
        "--content-from-command",
    ];
    let archive = format!("{repo_s}::a");
    args.push(&archive);
    args.push("--");
    args.extend(cmd.iter().map(String::as_str));
    ok(rborg(&args, &s.work(), &env));

    // The checkpoint archive is gone; the archive holds part files borg hides by default.
    let archives = ok(borg(
        &["list", "--consider-checkpoints", "--short", &repo_s],
        &s.work(),
        &env,
    ));
    assert_eq!(stdout(&archives).trim(), "a");
    let all = ok(borg(
        &["list", "--consider-part-files", "--json-lines", &archive],
        &s.work(),
        &env,
    ));
    let items = json_lines(&all);
    let paths: Vec<&str> = items.iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert!(paths.len() >= 3, "no part files: {paths:?}");
    let (parts, whole) = paths.split_at(paths.len() - 1);
    assert_eq!(whole, ["stdin"]);
    for (n, path) in parts.iter().enumerate() {
        assert_eq!(*path, format!("stdin.borg_part_{}", n + 1));
    }
    // Parts concatenate to the whole file.
    let part_sizes: u64 = items[..parts.len()]
        .iter()
        .map(|i| i["size"].as_u64().unwrap())
        .sum();
    assert_eq!(part_sizes, 12_000_000);
    let visible = ok(borg(&["list", "--short", &archive], &s.work(), &env));
    assert_eq!(stdout(&visible).trim(), "stdin");

    ok(borg(&["check", "--verify-data", &repo_s], &s.work(), &env));
    let restored = ok(borg(&["extract", "--stdout", &archive], &s.work(), &env));
    assert!(restored.stdout == produced(&s.work(), 4));
}

#[test]
fn a_killed_backup_leaves_a_checkpoint_the_next_run_builds_on() {
    let test = "a_killed_backup_leaves_a_checkpoint_the_next_run_builds_on";
    if !borg_or_skip(test) || !python_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo = s.path().join("repos/kill");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(&["init", "-e", "repokey", &repo_s], &s.work(), &env));
    let indexes = || -> Vec<String> {
        std::fs::read_dir(&repo)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("index."))
            .collect()
    };
    let before = indexes();

    let cmd = producer(&s.work(), 20, 0.5);
    let mut command = std::process::Command::new(rborg_bin());
    command
        .args([
            "create",
            "--checkpoint-interval",
            "1",
            "--content-from-command",
            &format!("{repo_s}::a"),
            "--",
        ])
        .args(&cmd)
        .current_dir(s.work())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in &env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    // A checkpoint is a commit: wait for the repository index it writes.
    let started = Instant::now();
    while indexes() == before {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint");
        assert!(child.try_wait().unwrap().is_none(), "create ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let archives = ok(borg(
        &["list", "--consider-checkpoints", "--short", &repo_s],
        &s.work(),
        &env,
    ));
    assert_eq!(stdout(&archives).trim(), "a.checkpoint");
    let parts = ok(borg(
        &[
            "list",
            "--consider-part-files",
            "--short",
            &format!("{repo_s}::a.checkpoint"),
        ],
        &s.work(),
        &env,
    ));
    assert!(
        stdout(&parts).starts_with("stdin.borg_part_1"),
        "{}",
        stdout(&parts)
    );
    ok(borg(&["check", "--verify-data", &repo_s], &s.work(), &env));

    // The same data again: what the checkpoint stored is not stored twice.
    let again = producer(&s.work(), 20, 0.0);
    let mut args = vec!["create", "--json", "--content-from-command"];
    let archive = format!("{repo_s}::b");
    args.push(&archive);
    args.push("--");
    args.extend(again.iter().map(String::as_str));
    let out = ok(rborg(&args, &s.work(), &env));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let stats = &json["archive"]["stats"];
    let original = stats["original_size"].as_u64().unwrap();
    let dedup = stats["deduplicated_size"].as_u64().unwrap();
    assert_eq!(original, 60_000_000);
    assert!(
        dedup + 2_000_000 < original,
        "nothing reused: {dedup} of {original}"
    );
    ok(borg(&["check", &repo_s], &s.work(), &env));
    let restored = ok(borg(&["extract", "--stdout", &archive], &s.work(), &env));
    assert!(restored.stdout == produced(&s.work(), 20));
}

#[test]
fn ctrl_c_ends_the_backup_with_a_checkpoint() {
    let test = "ctrl_c_ends_the_backup_with_a_checkpoint";
    if !borg_or_skip(test) || !python_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo = s.path().join("repos/int");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(&["init", "-e", "repokey", &repo_s], &s.work(), &env));
    let cmd = producer(&s.work(), 20, 0.5);
    let mut command = std::process::Command::new(rborg_bin());
    command
        .args([
            "create",
            "--content-from-command",
            &format!("{repo_s}::a"),
            "--",
        ])
        .args(&cmd)
        .current_dir(s.work())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in &env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Got Ctrl-C / SIGINT."),
        "{}",
        stderr(&out)
    );
    let archives = ok(borg(
        &["list", "--consider-checkpoints", "--short", &repo_s],
        &s.work(),
        &env,
    ));
    assert_eq!(stdout(&archives).trim(), "a.checkpoint");
    let parts = ok(borg(
        &[
            "list",
            "--consider-part-files",
            "--json-lines",
            &format!("{repo_s}::a.checkpoint"),
        ],
        &s.work(),
        &env,
    ));
    let items = json_lines(&parts);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["path"], "stdin.borg_part_1");
    assert!(items[0]["size"].as_u64().unwrap() > 0);
    ok(borg(&["check", "--verify-data", &repo_s], &s.work(), &env));
}
