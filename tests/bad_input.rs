//! Bad input gives borg's error (message, msgid, exit code), never a panic: wrong passphrase,
//! missing repository or archive, damaged segments, truncated keys.

mod common;

use std::path::Path;

use common::*;

/// rc and stderr of an rborg run with `--log-json`, plus the msgid of its error record.
fn msgid_of(out: &std::process::Output) -> Option<String> {
    stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["levelname"] == "ERROR")
        .and_then(|v| v["msgid"].as_str().map(str::to_string))
}

fn assert_no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "rborg panicked:\n{err}");
    assert_ne!(out.status.code(), Some(101), "panic exit code:\n{err}");
    assert!(out.status.code().is_some(), "killed by a signal:\n{err}");
}

#[test]
fn wrong_passphrase_is_passphrase_wrong_rc_52() {
    let Some(fx) = fixtures_or_skip("wrong_passphrase_is_passphrase_wrong_rc_52") else {
        return;
    };
    let s = Scratch::new();
    s.copy_fixture(&fx, "repokey");
    let mut env = s.env();
    env.retain(|(k, _)| k != "BORG_PASSPHRASE");
    env.push(("BORG_PASSPHRASE".into(), "not the passphrase".into()));
    let out = rborg(&["--log-json", "list", "../repos/repokey"], &s.work(), &env);
    assert_eq!(out.status.code(), Some(52));
    assert_eq!(msgid_of(&out).as_deref(), Some("PassphraseWrong"));
    let out = rborg(&["list", "../repos/repokey"], &s.work(), &env);
    assert_eq!(
        stderr(&out).lines().next(),
        Some("Passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND, or via BORG_PASSPHRASE_FD is incorrect.")
    );
    env.push(("BORG_EXIT_CODES".into(), "legacy".into()));
    assert_eq!(
        rborg(&["list", "../repos/repokey"], &s.work(), &env)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn missing_repository_and_archive() {
    let Some(fx) = fixtures_or_skip("missing_repository_and_archive") else {
        return;
    };
    let s = Scratch::new();
    s.copy_fixture(&fx, "repokey");
    let missing = s.path().join("repos/nothing-here");
    let out = rborg(
        &["--log-json", "list", missing.to_str().unwrap()],
        &s.work(),
        &s.env(),
    );
    assert_eq!(out.status.code(), Some(13));
    assert_eq!(msgid_of(&out).as_deref(), Some("Repository.DoesNotExist"));
    let out = rborg(&["list", missing.to_str().unwrap()], &s.work(), &s.env());
    assert_eq!(
        stderr(&out).trim_end(),
        format!("Repository {} does not exist.", missing.display())
    );

    for cmd in [&["list"][..], &["info"][..], &["extract", "--dry-run"][..]] {
        let mut args = vec!["--log-json"];
        args.extend_from_slice(cmd);
        args.push("../repos/repokey::nope");
        let out = rborg(&args, &s.work(), &s.env());
        assert_eq!(out.status.code(), Some(31), "{cmd:?}: {}", stderr(&out));
        assert_eq!(msgid_of(&out).as_deref(), Some("Archive.DoesNotExist"));
    }
    let out = rborg(&["list", "../repos/repokey::nope"], &s.work(), &s.env());
    assert_eq!(stderr(&out).trim_end(), "Archive nope does not exist");
}

/// Flip one byte in the middle of a file.
fn flip_byte(path: &Path, at: Option<usize>) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.unwrap_or(b.len() / 2).min(b.len() - 1);
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

fn segment_files(repo: &Path) -> Vec<String> {
    let mut segs: Vec<u32> = std::fs::read_dir(repo.join("data/0"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    segs.sort();
    segs.iter().map(|n| format!("data/0/{n}")).collect()
}

/// Run `extract --dry-run` of both archives; returns (rc, first stderr line) of the first
/// failing run, or (0, "") when both succeed.
fn verify_both(program: &str, cwd: &Path, env: &[(String, String)], repo: &str) -> (i32, String) {
    for archive in ["a1", "a2"] {
        let loc = format!("{repo}::{archive}");
        let args = ["extract", "--dry-run", loc.as_str()];
        let out = if program == "borg" {
            borg(&args, cwd, env)
        } else {
            rborg(&args, cwd, env)
        };
        if program == "rborg" {
            assert_no_panic(&out);
        }
        let rc = out.status.code().unwrap_or(-1);
        if rc != 0 {
            return (rc, stderr(&out).lines().next().unwrap_or("").to_string());
        }
    }
    (0, String::new())
}

#[test]
fn flipped_byte_in_any_segment_is_a_clean_error_like_borgs() {
    let Some(fx) = fixtures_or_skip("flipped_byte_in_any_segment_is_a_clean_error_like_borgs")
    else {
        return;
    };
    let with_borg =
        borg_or_skip("flipped_byte_in_any_segment_is_a_clean_error_like_borgs (borg comparison)");
    for mode in ["none", "repokey", "keyfile-blake2"] {
        let probe = Scratch::new();
        let segments = segment_files(&probe.copy_fixture(&fx, mode));
        for seg in segments {
            let ours = Scratch::new();
            let repo = ours.copy_fixture(&fx, mode);
            flip_byte(&repo.join(&seg), None);
            let mut env = ours.env();
            env.push(("BORG_EXIT_CODES".into(), "legacy".into()));
            let (rc, line) = verify_both("rborg", &ours.work(), &env, &format!("../repos/{mode}"));
            let mut modern = ours.env();
            modern.push(("BORG_EXIT_CODES".into(), "modern".into()));
            if rc != 0 {
                // The modern code of a damaged object is IntegrityError's (90) or a class near it.
                let out = rborg(
                    &[
                        "--log-json",
                        "extract",
                        "--dry-run",
                        &format!("../repos/{mode}::a1"),
                    ],
                    &ours.work(),
                    &modern,
                );
                assert_no_panic(&out);
            }
            if with_borg {
                let theirs = Scratch::new();
                let repo = theirs.copy_fixture(&fx, mode);
                flip_byte(&repo.join(&seg), None);
                let (brc, bline) = verify_both(
                    "borg",
                    &theirs.work(),
                    &theirs.env(),
                    &format!("../repos/{mode}"),
                );
                assert_eq!(
                    (rc, line.as_str()),
                    (brc, bline.as_str()),
                    "{mode} {seg}: rborg vs borg"
                );
            }
        }
    }
}

#[test]
fn flipped_chunk_byte_is_integrity_error_rc_90() {
    let Some(fx) = fixtures_or_skip("flipped_chunk_byte_is_integrity_error_rc_90") else {
        return;
    };
    let s = Scratch::new();
    let repo = s.copy_fixture(&fx, "repokey");
    flip_byte(&repo.join("data/0/2"), None);
    let out = rborg(
        &["--log-json", "extract", "--dry-run", "../repos/repokey::a1"],
        &s.work(),
        &s.env(),
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(90), "{}", stderr(&out));
    assert_eq!(msgid_of(&out).as_deref(), Some("IntegrityError"));
}

#[test]
fn truncated_segment_is_a_clean_error() {
    let Some(fx) = fixtures_or_skip("truncated_segment_is_a_clean_error") else {
        return;
    };
    let s = Scratch::new();
    let repo = s.copy_fixture(&fx, "repokey-blake2");
    let seg = repo.join("data/0/2");
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = rborg(
        &[
            "--log-json",
            "extract",
            "--dry-run",
            "../repos/repokey-blake2::a1",
        ],
        &s.work(),
        &s.env(),
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(90), "{}", stderr(&out));
    assert_eq!(msgid_of(&out).as_deref(), Some("IntegrityError"));
}

#[test]
fn truncated_key_file_and_repokey_are_clear_errors() {
    let Some(fx) = fixtures_or_skip("truncated_key_file_and_repokey_are_clear_errors") else {
        return;
    };
    let s = Scratch::new();
    s.copy_fixture(&fx, "keyfile");
    let key = s.path().join("keys/keyfile.key");
    let text = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&key, &text[..text.len() / 2]).unwrap();
    let out = rborg(
        &["--log-json", "list", "../repos/keyfile"],
        &s.work(),
        &s.env(),
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(40), "{}", stderr(&out));
    assert_eq!(msgid_of(&out).as_deref(), Some("KeyfileInvalidError"));

    let repo = s.copy_fixture(&fx, "repokey");
    let config = std::fs::read_to_string(repo.join("config")).unwrap();
    let cut = config.find("key = ").unwrap() + 40;
    std::fs::write(repo.join("config"), &config[..cut]).unwrap();
    let out = rborg(
        &["--log-json", "list", "../repos/repokey"],
        &s.work(),
        &s.env(),
    );
    assert_no_panic(&out);
    let rc = out.status.code().unwrap();
    assert!(
        (2..100).contains(&rc),
        "an error class rc, got {rc}: {}",
        stderr(&out)
    );
    assert!(msgid_of(&out).is_some(), "{}", stderr(&out));
}

/// The security-dir checks borg makes on every access (repository-format.md §8.1).
#[test]
fn security_dir_checks_relocation_replay_and_key_type() {
    let Some(fx) = fixtures_or_skip("security_dir_checks_relocation_replay_and_key_type") else {
        return;
    };
    let s = Scratch::new();
    s.copy_fixture(&fx, "repokey");
    let mut env = s.env();
    env.retain(|(k, _)| k != "BORG_RELOCATED_REPO_ACCESS_IS_OK");
    // First access remembers the repository.
    ok(rborg(&["list", "../repos/repokey"], &s.work(), &env));
    let id = std::fs::read_to_string(s.path().join("repos/repokey/config"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("id = ").map(str::to_string))
        .unwrap();
    let sec = s.base().join(".config/borg/security").join(&id);
    assert_eq!(std::fs::read_to_string(sec.join("key-type")).unwrap(), "3");
    assert!(sec.join("tam_required").exists());

    // Moved repository: borg asks; "no" (EOF) aborts with RepositoryAccessAborted (62).
    std::fs::rename(s.path().join("repos/repokey"), s.path().join("repos/moved")).unwrap();
    let out = rborg(&["--log-json", "list", "../repos/moved"], &s.work(), &env);
    assert_eq!(out.status.code(), Some(62), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"type\": \"question_prompt\""));
    let mut yes = env.clone();
    yes.push(("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "yes".into()));
    let out = ok(rborg(&["list", "../repos/moved"], &s.work(), &yes));
    assert!(stderr(&out).contains("yes (from BORG_RELOCATED_REPO_ACCESS_IS_OK)"));
    let loc = std::fs::read_to_string(sec.join("location")).unwrap();
    assert!(loc.ends_with("repos/moved"), "{loc}");

    // A security dir that saw a newer manifest: replay refused (64).
    std::fs::write(sec.join("manifest-timestamp"), "2999-01-01T00:00:00.000000").unwrap();
    let out = rborg(&["--log-json", "list", "../repos/moved"], &s.work(), &env);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert_eq!(msgid_of(&out).as_deref(), Some("Cache.RepositoryReplay"));

    // Another key type than remembered: refused (61).
    std::fs::write(sec.join("manifest-timestamp"), "").unwrap();
    std::fs::write(sec.join("key-type"), "2").unwrap();
    let out = rborg(&["--log-json", "list", "../repos/moved"], &s.work(), &env);
    assert_eq!(out.status.code(), Some(61), "{}", stderr(&out));
    assert_eq!(
        msgid_of(&out).as_deref(),
        Some("Cache.EncryptionMethodMismatch")
    );
}

/// Interrupted while holding the repository lock (blocked writing to stdout), rborg exits with
/// 128+SIGINT and leaves no lock behind, even when the signal arrives twice (timeout(1) sends
/// it to the process and to its group).
#[test]
fn interrupt_releases_the_repository_lock() {
    let Some(fx) = fixtures_or_skip("interrupt_releases_the_repository_lock") else {
        return;
    };
    let s = Scratch::new();
    let repo = s.copy_fixture(&fx, "repokey");
    let mut cmd = std::process::Command::new(rborg_bin());
    cmd.args(["extract", "--stdout", "../repos/repokey::a1"])
        .current_dir(s.work());
    for (k, v) in s.env() {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The archive's content is larger than a pipe buffer: rborg blocks writing, lock held.
    let roster = repo.join("lock.roster");
    for _ in 0..100 {
        if roster.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        roster.exists(),
        "rborg should hold a shared lock while extracting"
    );
    let pid = child.id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGINT);
        libc::kill(pid, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Keyboard interrupt"),
        "{}",
        stderr(&out)
    );
    assert!(!roster.exists(), "lock.roster left behind");
    assert!(
        !repo.join("lock.exclusive").exists(),
        "lock.exclusive left behind"
    );
}
