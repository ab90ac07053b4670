//! Issue 9, must-show 2: a repository on a full file system. A backup that does not fit fails
//! (the OS error, or InsufficientFreeSpaceError) with borg's rc, the partial transaction is
//! cleaned up, the repository stays valid for rborg and real borg, and delete and compact
//! still work; `additional_free_space` and `storage_quota` are honoured.
//! Needs root (it mounts a small tmpfs); skips with a reason otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A tmpfs of `mib` MiB mounted for the test's lifetime.
struct SmallFs {
    mountpoint: PathBuf,
}

impl SmallFs {
    fn mount(at: &Path, mib: u32) -> Option<SmallFs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| SmallFs {
            mountpoint: at.to_path_buf(),
        })
    }

    fn free_bytes(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.mountpoint).unwrap();
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
    }
}

fn run(program: &str, args: &[&str], cwd: &Path, env: &[(String, String)]) -> Output {
    let prog = if program == "rborg" {
        rborg_bin()
    } else {
        PathBuf::from(program)
    };
    run_in(&prog, args, cwd, env)
}

fn incompressible(path: &Path, bytes: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

fn mount_or_skip(test: &str, at: &Path, mib: u32) -> Option<SmallFs> {
    if !nix::unistd::geteuid().is_root() {
        skip(test, "needs root to mount a small tmpfs");
        return None;
    }
    let fs = SmallFs::mount(at, mib);
    if fs.is_none() {
        skip(test, "mounting a tmpfs is not permitted here");
    }
    fs
}

#[test]
fn a_backup_that_does_not_fit_leaves_a_valid_repository() {
    let test = "a_backup_that_does_not_fit_leaves_a_valid_repository";
    let s = Scratch::new();
    let Some(fs) = mount_or_skip(test, &s.path().join("mnt"), 64) else {
        return;
    };
    let have_borg = borg_or_skip(test);
    let work = s.work();
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("src/small"), b"small and precious\n").unwrap();
    let env = with_var(
        &env_with_base(&s.base()),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK",
        "yes",
    );
    let legacy = with_var(&env, "BORG_EXIT_CODES", "legacy");
    let repo = fs.mountpoint.join("repo");
    let repo = repo.to_str().unwrap();
    ok(run("rborg", &["init", "-e", "none", repo], &work, &env));
    // small segments, so that compaction's free-space reserve fits on this file system
    ok(run(
        "rborg",
        &["config", repo, "max_segment_size", "4194304"],
        &work,
        &env,
    ));
    ok(run(
        "rborg",
        &["create", &format!("{repo}::keep"), "src"],
        &work,
        &env,
    ));
    let free_before = fs.free_bytes();

    incompressible(&work.join("src/big"), 100 << 20);
    let o = run(
        "rborg",
        &["create", &format!("{repo}::big"), "src"],
        &work,
        &legacy,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("No space left on device") || err.contains("Insufficient free space"),
        "{err}"
    );
    std::fs::remove_file(work.join("src/big")).unwrap();
    // the partial transaction is gone again
    assert!(
        fs.free_bytes() + (1 << 20) >= free_before,
        "{} bytes free, {} before",
        fs.free_bytes(),
        free_before
    );

    ok(run("rborg", &["check", repo], &work, &env));
    if have_borg {
        ok(run("borg", &["check", "--verify-data", repo], &work, &env));
    }
    let list = ok(run("rborg", &["list", "--short", repo], &work, &env));
    assert_eq!(stdout(&list), "keep\n");
    let out = work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    ok(run(
        "rborg",
        &["extract", &format!("{repo}::keep")],
        &out,
        &env,
    ));
    assert_eq!(
        std::fs::read(out.join("src/small")).unwrap(),
        b"small and precious\n"
    );
    ok(run(
        "rborg",
        &["delete", &format!("{repo}::keep")],
        &work,
        &env,
    ));
    ok(run("rborg", &["compact", repo], &work, &env));
    ok(run(
        "rborg",
        &["create", &format!("{repo}::again"), "src"],
        &work,
        &env,
    ));
    if have_borg {
        ok(run("borg", &["check", repo], &work, &env));
    }
}

#[test]
fn additional_free_space_and_quota_are_honoured() {
    let test = "additional_free_space_and_quota_are_honoured";
    let s = Scratch::new();
    let Some(fs) = mount_or_skip(test, &s.path().join("mnt"), 64) else {
        return;
    };
    let work = s.work();
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("src/small"), b"tiny\n").unwrap();
    let env = with_var(
        &env_with_base(&s.base()),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK",
        "yes",
    );
    let repo = fs.mountpoint.join("repo");
    let repo = repo.to_str().unwrap();
    ok(run("rborg", &["init", "-e", "none", repo], &work, &env));
    ok(run(
        "rborg",
        &["config", repo, "max_segment_size", "4194304"],
        &work,
        &env,
    ));
    // keep more free than this file system has: even a tiny backup must be refused
    ok(run(
        "rborg",
        &["config", repo, "additional_free_space", "100M"],
        &work,
        &env,
    ));
    let mut tools = vec!["rborg"];
    if borg_or_skip(test) {
        tools.push("borg");
    }
    // each tool refuses with its rc (rborg's modern one, borg 1.2's 2) and the same message
    let refused = |archive: &str, rborg_rc: i32, message: &str| {
        for tool in &tools {
            let o = run(
                tool,
                &["create", &format!("{repo}::{archive}"), "src"],
                &work,
                &env,
            );
            let code = if *tool == "rborg" { rborg_rc } else { 2 };
            assert_eq!(o.status.code(), Some(code), "{tool}: {}", stderr(&o));
            assert!(stderr(&o).contains(message), "{tool}: {}", stderr(&o));
            let list = ok(run(tool, &["list", "--short", repo], &work, &env));
            assert_eq!(stdout(&list), "", "{tool}");
        }
    };
    refused(
        "tiny",
        14,
        "Insufficient free space to complete transaction (required: ",
    );
    ok(run(
        "rborg",
        &["config", repo, "additional_free_space", "0"],
        &work,
        &env,
    ));
    // a quota smaller than the backup: StorageQuotaExceeded, nothing committed
    ok(run(
        "rborg",
        &["config", repo, "storage_quota", "10M"],
        &work,
        &env,
    ));
    incompressible(&work.join("src/big"), 16 << 20);
    refused("big", 20, "The storage quota (10.00 MB) has been exceeded");
    ok(run("rborg", &["check", repo], &work, &env));
}
