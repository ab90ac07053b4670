//! `rborg check` against real borg: the same report and exit code on a clean repository and
//! on each kind of damage (segments, index, hints, integrity file, missing objects, forged
//! objects only `--verify-data` finds), the same `--repair` report, and repairs borg accepts.
//! Archive-level repair cases are in `tests/check_repair.rs`.

mod common;

use std::path::Path;

use common::*;

/// `rborg` or `borg` from `common`.
type Tool = fn(&[&str], &Path, &[(String, String)]) -> std::process::Output;

fn repository(s: &Scratch, env: &[(String, String)]) -> String {
    let repo = s.path().join("repos/checked");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(&["init", "-e", "repokey", &repo_s], &s.work(), env));
    let src = s.work().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3u8 {
        let data: Vec<u8> = (0..600_000u32)
            .map(|j| (j.wrapping_mul(2654435761) >> (i + 7)) as u8)
            .collect();
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    ok(rborg(
        &["create", &format!("{repo_s}::a"), "src"],
        &s.work(),
        env,
    ));
    repo_s
}

/// Flip one bit inside the first entry of the largest segment.
fn damage(repo: &Path) {
    let seg_dir = repo.join("data/0");
    let largest = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&largest, bytes).unwrap();
}

#[test]
fn repository_check_reports_and_repairs_as_borg() {
    let test = "repository_check_reports_and_repairs_as_borg";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = repository(&s, &env);
    let args = |repo: &str| {
        vec!["check", "-v", "--repository-only"]
            .into_iter()
            .map(String::from)
            .chain([repo.to_string()])
            .collect::<Vec<_>>()
    };
    let run = |tool: Tool, repo: &str| {
        let a = args(repo);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        tool(&a, &s.work(), &env)
    };

    let ours = run(rborg, &repo_s);
    let theirs = run(borg, &repo_s);
    assert_eq!(ours.status.code(), Some(0), "{}", stderr(&ours));
    assert_eq!(stderr(&ours), stderr(&theirs));

    damage(Path::new(&repo_s));
    let copy = s.path().join("repos/checked-copy");
    copy_tree(Path::new(&repo_s), &copy);
    let ours = run(rborg, &repo_s);
    let theirs = run(borg, copy.to_str().unwrap());
    assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
    assert_eq!(theirs.status.code(), Some(1));
    assert!(stderr(&ours).contains("Segment entry checksum mismatch"));
    assert_eq!(
        stderr(&ours),
        stderr(&theirs).replace(copy.to_str().unwrap(), &repo_s)
    );

    // Refused repair: nothing happens, CancelledByUser.
    let refused = rborg(
        &["check", "--repair", "--repository-only", &repo_s],
        &s.work(),
        &with_var(&env, "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "NO"),
    );
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("Aborting."));
    let repaired = rborg(
        &["check", "--repair", "--repository-only", &repo_s],
        &s.work(),
        &with_var(&env, "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES"),
    );
    assert_eq!(repaired.status.code(), Some(0), "{}", stderr(&repaired));
    let after = run(borg, &repo_s);
    assert_eq!(after.status.code(), Some(0), "{}", stderr(&after));
    assert!(stderr(&after).contains("no problems found"));
}

#[test]
fn contradicting_check_options_are_command_errors() {
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = repository(&s, &env);
    let out = rborg(
        &["check", "--repository-only", "--verify-data", &repo_s],
        &s.work(),
        &env,
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--repository-only contradicts"));
    let out = rborg(&["check", "--max-duration", "10", &repo_s], &s.work(), &env);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--repository-only is required for --max-duration support."));
}

#[test]
fn archives_check_reports_as_borg_clean_and_with_a_missing_chunk() {
    let test = "archives_check_reports_as_borg_clean_and_with_a_missing_chunk";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = repository(&s, &env);
    let src = s.work().join("src");
    std::fs::write(src.join("more"), b"second archive").unwrap();
    ok(rborg(
        &["create", &format!("{repo_s}::b"), "src"],
        &s.work(),
        &env,
    ));
    let full =
        |tool: Tool, repo: &str| tool(&["check", "-v", "--verify-data", repo], &s.work(), &env);
    let ours = full(rborg, &repo_s);
    let theirs = full(borg, &repo_s);
    assert_eq!(ours.status.code(), Some(0), "{}", stderr(&ours));
    assert_eq!(stderr(&ours), stderr(&theirs));
    assert!(stderr(&ours).contains("verified"), "{}", stderr(&ours));

    // Remove one file chunk (borg's own tool finds and deletes it).
    let dump = s.work().join("dump");
    std::fs::create_dir_all(&dump).unwrap();
    ok(borg(
        &["debug", "dump-archive-items", &format!("{repo_s}::b")],
        &dump,
        &env,
    ));
    let items_file = std::fs::read_dir(&dump)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(items_file).unwrap();
    let items = rborg::archive::meta::decode_items(&bytes).unwrap();
    let chunk = items
        .iter()
        .find_map(|i| i.chunks.as_ref().and_then(|c| c.first()).map(|c| c.id))
        .unwrap();
    ok(borg(
        &["debug", "delete-obj", &repo_s, &hex::encode(chunk)],
        &s.work(),
        &env,
    ));
    let copy = s.path().join("repos/missing-copy");
    copy_tree(Path::new(&repo_s), &copy);
    let copy_s = copy.to_str().unwrap();
    let quick = |tool: Tool, repo: &str| tool(&["check", "-v", repo], &s.work(), &env);
    let ours = quick(rborg, &repo_s);
    let theirs = quick(borg, copy_s);
    assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
    assert_eq!(theirs.status.code(), Some(1));
    assert!(stderr(&ours).contains("New missing file chunk detected"));
    let relocated = |text: String| {
        text.lines()
            .filter(|l| !l.contains("previously located") && !l.contains("Do you want"))
            .map(|l| l.replace(copy_s, &repo_s))
            .collect::<Vec<_>>()
    };
    assert_eq!(relocated(stderr(&ours)), relocated(stderr(&theirs)));
}

/// Segment files of a repository, by number.
fn segments(repo: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut segs: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(repo.join("data/0"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let n = p.file_name()?.to_str()?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    segs.sort();
    segs
}

/// The file in the repository dir whose name starts with `prefix` (index., hints., integrity.).
fn transaction_file(repo: &Path, prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .unwrap()
}

fn flip(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_repositories_are_reported_as_borg_reports_them() {
    let test = "damaged_repositories_are_reported_as_borg_reports_them";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let pristine = repository(&s, &env);
    ok(rborg(
        &["create", &format!("{pristine}::b"), "src"],
        &s.work(),
        &env,
    ));
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 9] = [
        ("bit flip in the manifest's segment", |r| {
            let segs = segments(r);
            flip(&segs[segs.len() - 2].1, 20);
        }),
        ("missing segment", |r| {
            let segs = segments(r);
            std::fs::remove_file(&segs[segs.len() / 2].1).unwrap();
        }),
        ("truncated segment", |r| {
            let (_, largest) = segments(r)
                .into_iter()
                .max_by_key(|(_, p)| p.metadata().unwrap().len())
                .unwrap();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&largest)
                .unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        }),
        ("missing index", |r| {
            std::fs::remove_file(transaction_file(r, "index.")).unwrap()
        }),
        ("missing hints", |r| {
            std::fs::remove_file(transaction_file(r, "hints.")).unwrap()
        }),
        // borg recovers a corrupt index with a commit of its own before checking
        ("corrupt index", |r| {
            let index = transaction_file(r, "index.");
            let len = index.metadata().unwrap().len() as usize;
            flip(&index, len / 2)
        }),
        ("corrupt hints", |r| flip(&transaction_file(r, "hints."), 3)),
        // the last hex digit of the index's final digest (the file ends `…7e"}}`), changed
        ("corrupt integrity digest", |r| {
            let path = transaction_file(r, "integrity.");
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() - 4;
            assert!(bytes[at].is_ascii_hexdigit());
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            std::fs::write(&path, bytes).unwrap();
        }),
        ("missing integrity file", |r| {
            std::fs::remove_file(transaction_file(r, "integrity.")).unwrap()
        }),
    ];
    for (i, (what, damage)) in cases.iter().enumerate() {
        let ours = s.path().join(format!("repos/ours{i}"));
        let theirs = s.path().join(format!("repos/theirs{i}"));
        copy_tree(Path::new(&pristine), &ours);
        damage(&ours);
        copy_tree(&ours, &theirs);
        let (ours_s, theirs_s) = (ours.to_str().unwrap(), theirs.to_str().unwrap());
        let a = rborg(&["check", "-v", ours_s], &s.work(), &env);
        let b = borg(&["check", "-v", theirs_s], &s.work(), &env);
        let normal = |text: String, path: &str| {
            text.lines()
                .filter(|l| !l.contains("previously located") && !l.contains("Do you want"))
                .map(|l| l.replace(path, "REPO"))
                .collect::<Vec<_>>()
        };
        assert_eq!(a.status.code(), b.status.code(), "{what}: {}", stderr(&a));
        assert_eq!(
            normal(stderr(&a), ours_s),
            normal(stderr(&b), theirs_s),
            "{what}"
        );

        // the repair reports as borg's, and borg then finds both repositories alike
        let yes = with_var(&env, "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES");
        let a = rborg(&["check", "-v", "--repair", ours_s], &s.work(), &yes);
        let b = borg(&["check", "-v", "--repair", theirs_s], &s.work(), &yes);
        assert_eq!(a.status.code(), b.status.code(), "{what}: {}", stderr(&a));
        assert_eq!(
            normal(stderr(&a), ours_s),
            normal(stderr(&b), theirs_s),
            "{what} --repair"
        );
        let a = borg(&["check", "-v", "--verify-data", ours_s], &s.work(), &env);
        let b = borg(&["check", "-v", "--verify-data", theirs_s], &s.work(), &env);
        assert_eq!(a.status.code(), b.status.code(), "{what}: {}", stderr(&a));
        assert_eq!(
            normal(stderr(&a), ours_s),
            normal(stderr(&b), theirs_s),
            "{what}: borg's check after the repairs"
        );
    }
}

/// Alter the data of the largest object in the largest segment and fix its entry's CRC, so
/// only decryption (`--verify-data`) can notice.
fn forge_largest_object(repo: &Path) {
    let (_, largest) = segments(repo)
        .into_iter()
        .max_by_key(|(_, p)| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let (mut at, mut biggest) = (8usize, (0usize, 0usize));
    while at + 9 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if bytes[at + 8] == 0 && size > biggest.1 {
            biggest = (at, size);
        }
        at += size;
    }
    let (start, size) = biggest;
    bytes[start + size / 2] ^= 0x10;
    let crc = crc32fast::hash(&bytes[start + 4..start + size]);
    bytes[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&largest, bytes).unwrap();
}

#[test]
fn verify_data_finds_a_forged_object_as_borg_does() {
    let test = "verify_data_finds_a_forged_object_as_borg_does";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo_s = repository(&s, &env);
    forge_largest_object(Path::new(&repo_s));
    let copy = s.path().join("repos/forged-copy");
    copy_tree(Path::new(&repo_s), &copy);
    let copy_s = copy.to_str().unwrap();
    let verify =
        |tool: Tool, repo: &str| tool(&["check", "-v", "--verify-data", repo], &s.work(), &env);
    let ours = verify(rborg, &repo_s);
    let theirs = verify(borg, copy_s);
    assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
    assert_eq!(theirs.status.code(), Some(1));
    assert!(
        stderr(&ours).contains("integrity error"),
        "{}",
        stderr(&ours)
    );
    assert_eq!(
        stderr(&ours),
        stderr(&theirs).replace(copy_s, &repo_s),
        "the one-pass verification reports as borg's second pass"
    );
    // the repository phase alone sees nothing (the CRC is right)
    let repo_only = rborg(&["check", "--repository-only", &repo_s], &s.work(), &env);
    assert_eq!(repo_only.status.code(), Some(0), "{}", stderr(&repo_only));
}
