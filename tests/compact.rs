//! `rborg prune` + `rborg compact` against real borg: the repository shrinks exactly as when
//! borg compacts a copy of it, and borg checks the result clean.

mod common;

use std::path::Path;

use common::*;

fn data_size(repo: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let md = e.metadata().unwrap();
                if md.is_dir() {
                    walk(&e.path())
                } else {
                    md.len()
                }
            })
            .sum()
    }
    walk(&repo.join("data"))
}

#[test]
fn prune_and_compact_shrink_the_repository_as_borg_does() {
    let test = "prune_and_compact_shrink_the_repository_as_borg_does";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo = s.path().join("repos/compact");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(
        &["init", "-e", "repokey-blake2", &repo_s],
        &s.work(),
        &env,
    ));
    // Five archives with nothing in common: each holds only its own incompressible file.
    let src = s.work().join("src");
    let mut state: u64 = 0x2545f4914f6cdd1d;
    for day in 1..=5 {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).unwrap();
        let data: Vec<u8> = (0..1_500_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(src.join(format!("day{day}.bin")), data).unwrap();
        ok(rborg(
            &[
                "create",
                "--timestamp",
                &format!("2024-03-0{day}T12:00:00"),
                &format!("{repo_s}::d-{day}"),
                "src",
            ],
            &s.work(),
            &env,
        ));
    }
    ok(rborg(
        &["prune", "--keep-last", "2", &repo_s],
        &s.work(),
        &env,
    ));
    let before = data_size(&repo);
    let copy = s.path().join("repos/compact-copy");
    copy_tree(&repo, &copy);
    let copy_s = copy.to_str().unwrap().to_string();

    let ours = ok(rborg(&["compact", "-v", &repo_s], &s.work(), &env));
    let theirs = ok(borg(&["compact", "-v", &copy_s], &s.work(), &env));
    let after = data_size(&repo);
    assert!(
        before - after > 4_000_000,
        "compact freed only {} bytes",
        before - after
    );
    assert_eq!(
        after,
        data_size(&copy),
        "borg compacted the copy differently"
    );
    let freed = |out: &std::process::Output| {
        stderr(out)
            .lines()
            .find(|l| l.starts_with("compaction freed about"))
            .map(str::to_string)
    };
    assert_eq!(freed(&ours), freed(&theirs));
    assert!(freed(&ours).is_some(), "{}", stderr(&ours));

    ok(borg(&["check", "--verify-data", &repo_s], &s.work(), &env));
    let left = ok(borg(&["list", "--short", &repo_s], &s.work(), &env));
    assert_eq!(stdout(&left).lines().collect::<Vec<_>>(), ["d-4", "d-5"]);
    let dest = s.work().join("restore");
    std::fs::create_dir_all(&dest).unwrap();
    ok(borg(&["extract", &format!("{repo_s}::d-5")], &dest, &env));
    assert!(dest.join("src/day5.bin").exists());
    // rborg keeps working on what it compacted.
    ok(rborg(
        &["create", &format!("{repo_s}::d-6"), "src"],
        &s.work(),
        &env,
    ));
    ok(borg(&["check", &repo_s], &s.work(), &env));
}
