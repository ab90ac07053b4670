//! Tests of the local repository against borg's fixture repositories and real borg.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::*;
use crate::repository::{segments, MANIFEST_ID};

fn fixtures() -> Option<PathBuf> {
    crate::testutil::fixtures_dir()
}

fn fixture_modes(fx: &Path) -> Vec<String> {
    let mut modes: Vec<String> = fs::read_dir(fx.join("repos"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    modes.sort();
    modes
}

/// Copy a directory tree with fresh, writable directories and files.
fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let target = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

fn copy_fixture(fx: &Path, mode: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_tree(&fx.join("repos").join(mode), &repo);
    (tmp, repo)
}

/// Relative path → sha256 of every file below `dir` (directories as entries too).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel + "/", String::new());
                walk(base, &e.path(), out);
            } else {
                out.insert(
                    rel,
                    hex::encode(Sha256::digest(fs::read(e.path()).unwrap())),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn index_file(repo: &Path) -> (u32, PathBuf) {
    let t = fs::read_dir(repo)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("index."))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .max()
        .unwrap();
    (t, repo.join(format!("index.{t}")))
}

fn entries_of(index: &NsIndex) -> BTreeMap<ObjectId, (u32, u32)> {
    index.iter().collect()
}

fn open_ro(repo: &Path) -> LocalRepository {
    LocalRepository::open(repo, false, 1.0, true, false).unwrap()
}

fn remove_index_files(repo: &Path) {
    for e in fs::read_dir(repo).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("index.") || n.starts_with("hints.") || n.starts_with("integrity.") {
            fs::remove_file(e.path()).unwrap();
        }
    }
}

fn borg() -> Option<&'static str> {
    let ok = Command::new("borg")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping borg interop part: borg not installed");
    }
    ok.then_some("borg")
}

fn borg_cmd(base: &Path) -> Command {
    let mut c = Command::new("borg");
    c.env("BORG_BASE_DIR", base)
        .env("BORG_PASSPHRASE", "fixture-passphrase")
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env_remove("BORG_REPO");
    c
}

#[test]
fn fixture_repos_read_only_open_is_exact_and_side_effect_free() {
    let Some(fx) = fixtures() else { return };
    for mode in fixture_modes(&fx) {
        let (_tmp, repo) = copy_fixture(&fx, &mode);
        let before = snapshot(&repo);
        let (t_file, index_path) = index_file(&repo);
        let original = NsIndex::read_path(&index_path, None, None).unwrap();
        {
            let r = open_ro(&repo);
            assert_eq!(r.location(), repo.display().to_string());
            assert_eq!(r.get_transaction_id().unwrap(), Some(t_file), "{mode}");
            assert_eq!(
                r.segments().segments_transaction_id().unwrap(),
                Some(t_file)
            );
            // the transaction's final COMMIT is a 17-byte segment of its own
            assert_eq!(r.segments().segment_size(t_file).unwrap(), 17);
            assert_eq!(r.len().unwrap(), original.len());
            let mut n = 0;
            for (id, loc) in original.iter() {
                assert_eq!(r.locate(&id).unwrap(), Some(loc));
                let v = r.get(&id).unwrap();
                assert!(!v.is_empty());
                n += 1;
            }
            assert_eq!(n, original.len());
            assert!(r.contains(&MANIFEST_ID).unwrap());
            assert!(!r.get(&MANIFEST_ID).unwrap().is_empty());
            let missing = [0xabu8; 32];
            let e = r.get(&missing).unwrap_err();
            assert!(e.is(ErrorKind::RepositoryObjectNotFound));
            assert_eq!(
                e.message,
                format!(
                    "Object with key {} not found in repository {}.",
                    "ab".repeat(32),
                    repo.display()
                )
            );
            // paging with list() visits every id once
            let mut seen = Vec::new();
            let mut marker: Option<ObjectId> = None;
            loop {
                let page = r.list(7, marker.as_ref()).unwrap();
                if page.is_empty() {
                    break;
                }
                marker = page.last().copied();
                seen.extend(page);
            }
            assert_eq!(seen.len(), original.len());
            let key = r.load_key().unwrap();
            // repokey and authenticated modes keep the key in the config
            assert_eq!(
                key.is_empty(),
                mode == "none" || mode.starts_with("keyfile"),
                "{mode}"
            );
            if !key.is_empty() {
                // borg returns the config value with its line breaks, stripped
                assert!(key.starts_with(b"hqlh") && !key.ends_with(b"\n"));
            }
            assert!(!r.append_only());
            // while open: a shared lock is registered
            assert!(repo.join("lock.roster").exists());
        }
        assert_eq!(
            snapshot(&repo),
            before,
            "{mode}: read-only use changed the repository"
        );
    }
}

#[test]
fn missing_index_files_are_rebuilt_identically() {
    let Some(fx) = fixtures() else { return };
    for mode in fixture_modes(&fx) {
        let (_tmp, repo) = copy_fixture(&fx, &mode);
        let (t, index_path) = index_file(&repo);
        let original_bytes = fs::read(&index_path).unwrap();
        let original = entries_of(&NsIndex::read_path(&index_path, None, None).unwrap());

        // 1) without a lock nothing may be written: in-memory rebuild
        remove_index_files(&repo);
        let before = snapshot(&repo);
        {
            let r = LocalRepository::open(&repo, false, 1.0, false, false).unwrap();
            assert_eq!(r.get_transaction_id().unwrap(), Some(t));
            let mut rebuilt = BTreeMap::new();
            r.for_each_entry(|k, v| {
                rebuilt.insert(*k, v);
            })
            .unwrap();
            assert_eq!(rebuilt, original, "{mode}");
            assert!(r.get(&MANIFEST_ID).is_ok());
        }
        assert_eq!(snapshot(&repo), before);

        // 2) a reader that can take the exclusive lock writes the rebuilt triple, like borg
        {
            let r = open_ro(&repo);
            assert_eq!(r.len().unwrap(), original.len());
            for id in original.keys() {
                r.get(id).unwrap();
            }
        }
        assert!(!repo.join("lock.roster").exists() && !repo.join("lock.exclusive").exists());
        assert_eq!(
            fs::read(repo.join(format!("index.{t}"))).unwrap(),
            original_bytes,
            "{mode}: rebuilt index bytes"
        );
        assert!(
            repo.join(format!("hints.{t}")).exists()
                && repo.join(format!("integrity.{t}")).exists()
        );
        // the written files verify and reopen without another rebuild
        let snap = snapshot(&repo);
        {
            let r = open_ro(&repo);
            r.get(&MANIFEST_ID).unwrap();
            let h = r.hints().unwrap();
            assert_eq!(h.segments.values().sum::<i64>() as usize, original.len());
        }
        assert_eq!(snapshot(&repo), snap);
    }
}

#[test]
fn corrupt_index_is_detected_and_rebuilt() {
    let Some(fx) = fixtures() else { return };
    let (_tmp, repo) = copy_fixture(&fx, "none");
    let (t, index_path) = index_file(&repo);
    let original = entries_of(&NsIndex::read_path(&index_path, None, None).unwrap());
    // flip a byte inside an empty bucket's key: the file still parses, only the digest catches it
    let mut bytes = fs::read(&index_path).unwrap();
    let idx = NsIndex::read_path(&index_path, None, None).unwrap();
    let bucket = (0..idx.raw().num_buckets())
        .find(|&b| {
            u32::from_le_bytes(
                bytes[18 + b * 40 + 32..18 + b * 40 + 36]
                    .try_into()
                    .unwrap(),
            ) == 0xffff_ffff
        })
        .unwrap();
    bytes[18 + bucket * 40 + 3] ^= 0x01;
    fs::write(&index_path, &bytes).unwrap();
    let e = LocalRepository::open(&repo, false, 1.0, false, false)
        .unwrap()
        .open_index(t)
        .unwrap_err();
    assert!(e.is(ErrorKind::FileIntegrityError), "{e:?}");
    assert_eq!(
        e.message,
        format!("File failed integrity check: {}", index_path.display())
    );
    {
        // bypass-lock reader: in memory only
        let r = LocalRepository::open(&repo, false, 1.0, false, false).unwrap();
        let mut rebuilt = BTreeMap::new();
        r.for_each_entry(|k, v| {
            rebuilt.insert(*k, v);
        })
        .unwrap();
        assert_eq!(rebuilt, original);
        assert_eq!(fs::read(&index_path).unwrap(), bytes);
    }
    {
        let r = open_ro(&repo);
        assert_eq!(r.len().unwrap(), original.len());
    }
    // rewritten and consistent now
    let r = open_ro(&repo);
    r.open_index(t).unwrap();

    // a truncated index (wrong length) is rebuilt as well
    let (_tmp2, repo2) = copy_fixture(&fx, "none");
    let (_, index_path2) = index_file(&repo2);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&index_path2)
        .unwrap();
    f.set_len(1000).unwrap();
    let r = LocalRepository::open(&repo2, false, 1.0, false, false).unwrap();
    assert_eq!(r.len().unwrap(), original.len());
}

#[test]
fn stale_index_and_uncommitted_segments() {
    let Some(fx) = fixtures() else { return };
    let (_tmp, repo) = copy_fixture(&fx, "none");
    let (t, _) = index_file(&repo);
    // an uncommitted segment T+1 with a PUT of a new key: readers ignore it and leave it alone
    let extra = segments::put_entry(&[7u8; 32], b"uncommitted");
    let seg_path = repo.join(format!("data/0/{}", t + 1));
    fs::write(&seg_path, [&b"BORG_SEG"[..], &extra].concat()).unwrap();
    let before = snapshot(&repo);
    {
        let r = open_ro(&repo);
        assert_eq!(r.get_transaction_id().unwrap(), Some(t));
        assert!(!r.contains(&[7u8; 32]).unwrap());
    }
    assert_eq!(snapshot(&repo), before);
    // an index older than the segments (T_index < T_seg): replay only the newer segments
    let (_tmp2, repo2) = copy_fixture(&fx, "none");
    let original = entries_of(&NsIndex::read_path(&index_file(&repo2).1, None, None).unwrap());
    {
        // commit one more transaction with our writer
        let r = LocalRepository::open(&repo2, true, 1.0, true, false).unwrap();
        r.put(&[9u8; 32], b"new object").unwrap();
        r.commit(false, 0.1, false).unwrap();
    }
    let (t2, _) = index_file(&repo2);
    assert_eq!(t2, t + 2);
    // put the old index triple back next to the new segments
    remove_index_files(&repo2);
    for name in [
        format!("index.{t}"),
        format!("hints.{t}"),
        format!("integrity.{t}"),
    ] {
        fs::copy(fx.join("repos/none").join(&name), repo2.join(&name)).unwrap();
    }
    {
        let r = LocalRepository::open(&repo2, false, 1.0, false, false).unwrap();
        assert_eq!(r.get_transaction_id().unwrap(), Some(t2));
        assert_eq!(r.get(&[9u8; 32]).unwrap(), b"new object");
        assert_eq!(r.len().unwrap(), original.len() + 1);
    }
    // the writer removes uncommitted segments before writing
    {
        let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
        r.put(&[8u8; 32], b"x").unwrap();
        // segment t+1 was deleted and rewritten by this transaction
        let now = fs::read(&seg_path).unwrap();
        assert!(!now.windows(11).any(|w| w == b"uncommitted"));
        assert!(now.windows(32).any(|w| w == [8u8; 32]));
        r.rollback().unwrap();
    }
}

#[test]
fn corrupt_segment_entries_give_integrity_errors() {
    let Some(fx) = fixtures() else { return };
    let (_tmp, repo) = copy_fixture(&fx, "none");
    let index = NsIndex::read_path(&index_file(&repo).1, None, None).unwrap();
    // the entry with the largest offset in the biggest segment
    let (victim, (seg, off)) = index.iter().max_by_key(|(_, (s, o))| (*o, *s)).unwrap();
    let other = index
        .iter()
        .find(|(k, (s, _))| *k != victim && *s == seg)
        .unwrap()
        .0;
    let seg_path = repo.join(format!("data/0/{seg}"));
    let mut bytes = fs::read(&seg_path).unwrap();
    bytes[off as usize + 41 + 5] ^= 0x80;
    fs::write(&seg_path, &bytes).unwrap();
    let r = open_ro(&repo);
    let e = r.get(&victim).unwrap_err();
    assert!(e.is(ErrorKind::IntegrityError));
    assert_eq!(
        e.message,
        format!(
            "Data integrity error: Segment entry checksum mismatch [segment {seg}, offset {off}]"
        )
    );
    assert!(r.get(&other).is_ok());
    // a damaged size field
    bytes[off as usize + 41 + 5] ^= 0x80;
    bytes[off as usize + 7] = 0x7f;
    fs::write(&seg_path, &bytes).unwrap();
    r.segments().forget_fd(seg);
    let e = r.get(&victim).unwrap_err();
    assert!(
        e.message.contains("Invalid segment entry size") && e.message.contains("too big"),
        "{}",
        e.message
    );
    drop(r);

    // truncated segment: objects before the cut still read, the cut one is a short read,
    // objects after it have no header any more
    let (_tmp2, repo2) = copy_fixture(&fx, "none");
    let seg_path = repo2.join(format!("data/0/{seg}"));
    let f = fs::OpenOptions::new().write(true).open(&seg_path).unwrap();
    f.set_len(off as u64 + 50).unwrap();
    let r = open_ro(&repo2);
    let e = r.get(&victim).unwrap_err();
    assert!(e.is(ErrorKind::IntegrityError));
    assert!(
        e.message.contains(&format!(
            "Segment entry data short read [segment {seg}, offset {off}]"
        )),
        "{}",
        e.message
    );
    assert!(r.get(&other).is_ok());
    f.set_len(off as u64 + 20).unwrap();
    r.segments().forget_fd(seg);
    let e = r.get(&victim).unwrap_err();
    assert_eq!(
        e.message,
        format!("Data integrity error: Invalid segment entry header [segment {seg}, offset {off}]: unpack requires a buffer of 41 bytes")
    );
}

#[test]
fn concurrent_gets_from_many_threads() {
    let Some(fx) = fixtures() else { return };
    let (_tmp, repo) = copy_fixture(&fx, "repokey");
    let r = open_ro(&repo);
    let ids = r.list(usize::MAX, None).unwrap();
    let expected: Vec<Vec<u8>> = ids.iter().map(|id| r.get(id).unwrap()).collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (r, ids, expected) = (&r, &ids, &expected);
            s.spawn(move || {
                for (i, id) in ids.iter().enumerate().skip(t).step_by(3) {
                    assert_eq!(&r.get(id).unwrap(), &expected[i]);
                }
            });
        }
    });
}

#[test]
fn open_errors_match_borg() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let e = LocalRepository::open(&base.join("nope"), false, 1.0, true, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryDoesNotExist));
    assert_eq!(
        e.message,
        format!("Repository {}/nope does not exist.", base.display())
    );
    fs::write(base.join("afile"), b"x").unwrap();
    let e = LocalRepository::open(&base.join("afile"), false, 1.0, true, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryInvalidRepository));
    fs::create_dir(base.join("empty")).unwrap();
    let e = LocalRepository::open(&base.join("sub/../empty"), false, 1.0, true, false).unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "{}/empty is not a valid repository. Check repo config.",
            base.display()
        )
    );
    // the lock taken before reading the config is released again
    assert_eq!(fs::read_dir(base.join("empty")).unwrap().count(), 0);

    let repo = base.join("r");
    LocalRepository::create(&repo, false, 0, false).unwrap();
    let good = fs::read_to_string(repo.join("config")).unwrap();
    let with = |text: &str| {
        fs::write(repo.join("config"), text).unwrap();
        LocalRepository::open(&repo, false, 1.0, true, false).map(|_| ())
    };
    let e = with(&good.replace("version = 1", "version = 2")).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryInvalidRepositoryConfig));
    assert_eq!(
        e.message,
        format!(
            "{} does not have a valid configuration. Check repo config [repository version 2 is not supported by this borg version].",
            repo.display()
        )
    );
    let e =
        with(&good.replace("max_segment_size = 524288000", "max_segment_size = 4.3G")).unwrap_err();
    assert!(
        e.message.ends_with("[max_segment_size >= 4273995776]."),
        "{}",
        e.message
    );
    with(&good.replace("max_segment_size = 524288000", "max_segment_size = 4.2G")).unwrap();
    let e = with(&good.replace("[repository]", "[other]")).unwrap_err();
    assert!(e.message.ends_with("[no repository section found]."));
    let e = with("garbage").unwrap_err();
    assert!(e.is(ErrorKind::RepositoryInvalidRepositoryConfig));
    fs::write(repo.join("config"), &good).unwrap();
    let r = LocalRepository::open(&repo, false, 1.0, true, true).unwrap();
    assert!(r.append_only());
    drop(r);
    // attic magic in the latest segment
    fs::create_dir_all(repo.join("data/0")).unwrap();
    fs::write(repo.join("data/0/5"), b"ATTICSEG").unwrap();
    let e = LocalRepository::open(&repo, false, 1.0, true, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryAtticRepository));
    assert_eq!(
        e.message,
        format!(
            "Attic repository detected. Please run \"borg upgrade {}\".",
            repo.display()
        )
    );
    // creating over an existing repository / inside one
    let e = LocalRepository::create(&repo, false, 0, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryAlreadyExists));
    let e = LocalRepository::create(&repo.join("data/inner"), false, 0, false).unwrap_err();
    assert_eq!(
        e.message,
        format!("A repository already exists at {}.", repo.display())
    );
    let e = LocalRepository::create(&base.join("afile"), false, 0, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryPathAlreadyExists));
    let e = LocalRepository::create(&base.join("x/y"), false, 0, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryParentPathDoesNotExist));
}

#[test]
fn index_without_any_commit_needs_check() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    {
        let r = LocalRepository::init(&repo, false, 0, false, 1.0).unwrap();
        r.put(&MANIFEST_ID, b"m").unwrap();
        r.commit(false, 0.1, false).unwrap();
    }
    fs::remove_file(repo.join("data/0/1")).unwrap();
    let r = open_ro(&repo);
    let e = r.get(&MANIFEST_ID).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryCheckNeeded));
    assert_eq!(
        e.message,
        format!("Inconsistency detected. Please run \"borg check {}\" - although likely this is \"beyond repair\".", repo.display())
    );
}

#[test]
fn init_put_commit_matches_borg_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let manifest = vec![0x42u8; 400];
    {
        let r = LocalRepository::init(&repo, false, 0, false, 1.0).unwrap();
        r.put(&MANIFEST_ID, &manifest).unwrap();
        r.commit(false, 0.1, false).unwrap();
    }
    let mut names: Vec<String> = snapshot(&repo).into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "README",
            "config",
            "data/",
            "data/0/",
            "data/0/0",
            "data/0/1",
            "hints.1",
            "index.1",
            "integrity.1"
        ]
    );
    assert_eq!(
        fs::read_to_string(repo.join("README")).unwrap(),
        REPOSITORY_README
    );
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.starts_with(
        "[repository]\nversion = 1\nsegments_per_dir = 1000\nmax_segment_size = 524288000\nappend_only = 0\nstorage_quota = 0\nadditional_free_space = 0\nid = "
    ));
    assert!(config.ends_with("\n\n"));
    assert_eq!(
        fs::read(repo.join("data/0/1")).unwrap(),
        [&b"BORG_SEG"[..], &segments::COMMIT].concat()
    );
    assert_eq!(
        fs::metadata(repo.join("data/0/0")).unwrap().len(),
        8 + 41 + 400
    );
    assert_eq!(fs::metadata(repo.join("index.1")).unwrap().len(), 41258);
    // hints exactly as borg init writes them (segments {0: 1, 1: 0}, compact {1: 9})
    let hints = fs::read(repo.join("hints.1")).unwrap();
    let expect = [
        &[0x85, 0xa7][..],
        b"version",
        &[0x02, 0xa8],
        b"segments",
        &[0x82, 0x00, 0x01, 0x01, 0x00, 0xa7],
        b"compact",
        &[0x81, 0x01, 0x09, 0xb1],
        b"storage_quota_use",
        &[0xcd, 0x01, 0xb9, 0xac],
        b"shadow_index",
        &[0x80],
    ]
    .concat();
    assert_eq!(hints, expect);
    let r = open_ro(&repo);
    assert_eq!(r.get(&MANIFEST_ID).unwrap(), manifest);
    assert_eq!(r.get_transaction_id().unwrap(), Some(1));
}

#[test]
fn overwrite_delete_compact_and_borg_check() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let id = |i: u8| {
        let mut k = [0u8; 32];
        k[0] = i;
        k[31] = 1;
        k
    };
    {
        let r = LocalRepository::init(&repo, false, 0, false, 1.0).unwrap();
        r.put(&MANIFEST_ID, b"manifest-1").unwrap();
        for i in 1..=20u8 {
            r.put(&id(i), &vec![i; 1000 + i as usize]).unwrap();
        }
        r.commit(false, 0.1, false).unwrap();
        // second transaction: overwrite some, delete some, new manifest
        r.put(&id(1), b"overwritten").unwrap();
        for i in 2..=10u8 {
            r.delete(&id(i)).unwrap();
        }
        let e = r.delete(&id(2)).unwrap_err();
        assert!(e.is(ErrorKind::RepositoryObjectNotFound));
        r.put(&MANIFEST_ID, b"manifest-2").unwrap();
        // uncommitted changes are visible to this process
        assert_eq!(r.get(&id(1)).unwrap(), b"overwritten");
        r.commit(false, 0.1, false).unwrap();
        assert_eq!(r.len().unwrap(), 12);
        let h = r.hints().unwrap();
        assert!(h.shadow_index.contains_key(&id(1)) && h.shadow_index.contains_key(&id(5)));
    }
    let check = |repo: &Path| {
        let Some(_) = borg() else { return };
        let out = borg_cmd(tmp.path())
            .args(["check", "-v", "--repository-only"])
            .arg(repo)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "borg check failed: {err}");
        assert!(err.contains("Index object count match."), "{err}");
    };
    check(&repo);
    {
        // compaction: everything superseded goes away, deletes whose PUTs are gone are dropped
        let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
        r.put(&MANIFEST_ID, b"manifest-3").unwrap();
        r.commit(true, 0.1, false).unwrap();
        assert_eq!(r.get(&id(1)).unwrap(), b"overwritten");
        assert!(!r.contains(&id(3)).unwrap());
        assert_eq!(r.get(&id(15)).unwrap(), vec![15u8; 1015]);
        let h = r.hints().unwrap();
        // like borg, only empty shadow lists remain (keys whose old PUTs are all gone)
        assert!(h.shadow_index.values().all(|l| l.is_empty()));
        assert_eq!(
            h.storage_quota_use,
            (10 + 41) + 11 + 41 + (11..=20).map(|i| 1000 + i + 41).sum::<u64>()
        );
    }
    check(&repo);
    let r = open_ro(&repo);
    let ids = r.list(100, None).unwrap();
    assert_eq!(ids.len(), 12);
    // every object lives in the compacted segment(s) now; old segments were deleted
    let segs: Vec<u32> = r
        .segments()
        .segment_list(None, false)
        .unwrap()
        .iter()
        .map(|s| s.0)
        .collect();
    assert!(segs.iter().all(|&s| s >= 5), "{segs:?}");
    drop(r);
    if borg().is_some() {
        let out = borg_cmd(tmp.path())
            .args(["debug", "get-obj"])
            .arg(&repo)
            .arg(hex::encode(id(15)))
            .arg(tmp.path().join("obj"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fs::read(tmp.path().join("obj")).unwrap(), vec![15u8; 1015]);
    }
}

#[test]
fn borg_reads_what_we_rebuilt_and_wrote() {
    let Some(fx) = fixtures() else { return };
    if borg().is_none() {
        return;
    }
    let (tmp, repo) = copy_fixture(&fx, "repokey");
    remove_index_files(&repo);
    assert!(open_ro(&repo).len().unwrap() > 0);
    let out = borg_cmd(tmp.path())
        .args(["check", "-v", "--repository-only"])
        .arg(&repo)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("Index object count match."),
        "{err}"
    );
    let out = borg_cmd(tmp.path())
        .args(["list", "--short"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a1\na2\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn append_only_quota_nonce_key_destroy() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    {
        let r = LocalRepository::init(&repo, true, 0, false, 1.0).unwrap();
        assert!(r.append_only());
        r.put(&MANIFEST_ID, b"m").unwrap();
        r.commit(true, 0.1, false).unwrap();
        r.put(&MANIFEST_ID, b"m2").unwrap();
        r.commit(true, 0.1, false).unwrap();
        let log = fs::read_to_string(repo.join("transactions")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("transaction 1, UTC time ")
                && lines[1].starts_with("transaction 4, UTC time ")
        );
        // no compaction in append-only mode: all segments stay
        assert_eq!(r.segments().segment_list(None, false).unwrap().len(), 5);
        let e = r.destroy().unwrap_err();
        assert!(e.message.contains("append-only"));

        // nonce reservation
        assert_eq!(r.get_free_nonce().unwrap(), None);
        r.commit_nonce_reservation(0x4000_0108, None).unwrap();
        assert_eq!(
            fs::read_to_string(repo.join("nonce")).unwrap(),
            "0000000040000108"
        );
        assert_eq!(r.get_free_nonce().unwrap(), Some(0x4000_0108));
        let e = r
            .commit_nonce_reservation(0x5000_0000, Some(1))
            .unwrap_err();
        assert!(e.message.contains("mismatched previous state"));

        // repokey stored in config, old config erased
        r.save_key(b"hqlhbGdv\nZFCPIgST\nr8cb").unwrap();
        assert_eq!(r.load_key().unwrap(), b"hqlhbGdv\nZFCPIgST\nr8cb");
        let text = fs::read_to_string(repo.join("config")).unwrap();
        assert!(
            text.contains("key = hqlhbGdv\n\tZFCPIgST\n\tr8cb\n\n"),
            "{text}"
        );
        assert!(!repo.join("config.old").exists());
    }
    let r = LocalRepository::open(&repo, false, 1.0, true, false).unwrap();
    assert_eq!(r.load_key().unwrap(), b"hqlhbGdv\nZFCPIgST\nr8cb");
    // shared lock: nonce access refused
    assert!(r.get_free_nonce().is_err());
    drop(r);

    // storage quota dooms the transaction
    let repo2 = tmp.path().join("q");
    let r = LocalRepository::init(&repo2, false, 1000, false, 1.0).unwrap();
    r.put(&[1u8; 32], &[0u8; 500]).unwrap();
    let e = r.put(&[2u8; 32], &[0u8; 500]).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryStorageQuotaExceeded));
    assert_eq!(
        e.message,
        "The storage quota (1.00 kB) has been exceeded (1.08 kB). Try deleting some archives."
    );
    assert!(r
        .commit(false, 0.1, false)
        .unwrap_err()
        .is(ErrorKind::RepositoryStorageQuotaExceeded));
    r.put(&[3u8; 32], &[0u8; 10]).unwrap();
    r.commit(false, 0.1, false).unwrap();
    r.destroy().unwrap();
    assert!(!repo2.exists());
}

#[test]
fn lock_interop_with_real_borg() {
    if borg().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let out = borg_cmd(tmp.path())
        .args(["init", "-e", "none"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // borg holds the lock: we time out
    let mut child = borg_cmd(tmp.path())
        .args(["with-lock"])
        .arg(&repo)
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !repo.join("lock.exclusive").exists() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e = LocalRepository::open(&repo, false, 0.5, true, false).unwrap_err();
    assert!(e.is(ErrorKind::LockTimeout), "{e:?}");
    assert_eq!(
        e.message,
        format!(
            "Failed to create/acquire the lock {}/lock.exclusive (timeout).",
            repo.display()
        )
    );
    // borg's roster names our host id the same way
    let roster = fs::read_to_string(repo.join("lock.roster")).unwrap();
    assert!(
        roster.contains(&format!(
            "[\"{}\", {}, 0]",
            crate::repository::lock::host_id(),
            child.id()
        )),
        "{roster}"
    );
    child.wait().unwrap();

    // we hold the exclusive lock: borg fails
    let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
    let out = borg_cmd(tmp.path())
        .args(["list", "--lock-wait", "1"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Failed to create/acquire the lock"));
    drop(r);
    // and works again once we let go
    let out = borg_cmd(tmp.path())
        .args(["list", "--lock-wait", "1"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a shared lock of ours does not block borg readers
    let r = open_ro(&repo);
    let out = borg_cmd(tmp.path())
        .args(["list", "--lock-wait", "1"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(r);
}

#[test]
fn size_formatting_like_borg() {
    assert_eq!(format_file_size(0), "0 B");
    assert_eq!(format_file_size(999), "999 B");
    assert_eq!(format_file_size(1000), "1.00 kB");
    assert_eq!(format_file_size(1_234_567), "1.23 MB");
    assert_eq!(format_file_size(524_288_000), "524.29 MB");
}

/// The Python that runs the installed borg (shebang of `borg` in PATH).
fn borg_python() -> Option<String> {
    let borg = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("borg"))
            .find(|b| b.is_file())
    })?;
    let text = fs::read_to_string(borg).ok()?;
    text.lines()
        .next()?
        .strip_prefix("#!")
        .map(|l| l.trim().to_string())
}

#[test]
fn same_transactions_same_files_as_borg() {
    const SCRIPT: &str = "import hashlib, sys
from borg.logger import setup_logging
setup_logging(level='warning')
from borg.repository import Repository
def k(i): return hashlib.sha256(b'k%d' % i).digest()
def v(i, n): return bytes([i % 256]) * n
M = bytes(32)
with Repository(sys.argv[1], create=True, exclusive=True) as r:
    r.put(M, b'manifest-1')
    for i in range(30): r.put(k(i), v(i, 500 + 37 * i))
    r.commit(compact=False)
    for i in range(5): r.put(k(i), v(i + 100, 20 + i))
    for i in range(10, 20): r.delete(k(i))
    r.put(M, b'manifest-2')
    r.commit(compact=False)
    r.put(M, b'manifest-3')
    r.commit(compact=True, threshold=0.1)
";
    let Some(python) = borg_python() else {
        eprintln!("skipping: borg not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let theirs = tmp.path().join("theirs");
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(&theirs)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipping: borg's Repository not usable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let ours = tmp.path().join("ours");
    let k = |i: u32| -> ObjectId { Sha256::digest(format!("k{i}").as_bytes()).into() };
    let v = |i: u32, n: usize| vec![(i % 256) as u8; n];
    {
        let r = LocalRepository::init(&ours, false, 0, false, 1.0).unwrap();
        r.put(&MANIFEST_ID, b"manifest-1").unwrap();
        for i in 0..30 {
            r.put(&k(i), &v(i, 500 + 37 * i as usize)).unwrap();
        }
        r.commit(false, 0.1, false).unwrap();
        for i in 0..5 {
            r.put(&k(i), &v(i + 100, 20 + i as usize)).unwrap();
        }
        for i in 10..20 {
            r.delete(&k(i)).unwrap();
        }
        r.put(&MANIFEST_ID, b"manifest-2").unwrap();
        r.commit(false, 0.1, false).unwrap();
        r.put(&MANIFEST_ID, b"manifest-3").unwrap();
        r.commit(true, 0.1, false).unwrap();
    }
    let (a, b) = (snapshot(&theirs), snapshot(&ours));
    let names = |s: &BTreeMap<String, String>| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for (name, digest) in &a {
        if name == "config" || name.starts_with("hints.") || name.starts_with("integrity.") {
            continue;
        }
        assert_eq!(digest, &b[name], "{name} differs");
    }
    let (t, _) = index_file(&ours);
    let hints =
        |repo: &Path| match decode_hints(&fs::read(repo.join(format!("hints.{t}"))).unwrap())
            .unwrap()
        {
            DecodedHints::V2(h) => h,
            DecodedHints::V1 { .. } => panic!("v1 hints"),
        };
    let (ha, hb) = (hints(&theirs), hints(&ours));
    assert_eq!(ha.segments, hb.segments);
    assert_eq!(ha.compact, hb.compact);
    assert_eq!(ha.storage_quota_use, hb.storage_quota_use);
    // the index digests are over identical bytes and names
    let r = open_ro(&ours);
    assert_eq!(
        r.read_integrity(t, "index").unwrap(),
        LocalRepository::open(&theirs, false, 1.0, true, false)
            .unwrap()
            .read_integrity(t, "index")
            .unwrap()
    );
}

#[test]
fn check_and_repair() {
    let Some(fx) = fixtures() else { return };
    let (tmp, repo) = copy_fixture(&fx, "none");
    let before = snapshot(&repo);
    {
        let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
        assert!(r.check(false, 0.0).unwrap());
        // still usable afterwards
        r.get(&MANIFEST_ID).unwrap();
    }
    // a full check only rewrites the config (borg removes last_segment_checked)
    let after = snapshot(&repo);
    assert_eq!(
        before
            .iter()
            .filter(|(k, _)| *k != "config")
            .collect::<Vec<_>>(),
        after
            .iter()
            .filter(|(k, _)| *k != "config")
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fs::read_to_string(repo.join("config")).unwrap(),
        fs::read_to_string(fx.join("repos/none/config")).unwrap()
    );

    // partial check remembers where it stopped
    {
        let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
        assert!(r.check(false, 1e-9).unwrap());
        assert!(r
            .config()
            .get("repository", "last_segment_checked")
            .is_some());
        assert!(r.check(false, 0.0).unwrap());
        assert!(r
            .config()
            .get("repository", "last_segment_checked")
            .is_none());
    }

    // damage one object: check fails, repair drops the entry and the result checks clean
    let index = NsIndex::read_path(&index_file(&repo).1, None, None).unwrap();
    let (victim, (seg, off)) = index.iter().max_by_key(|(_, (s, o))| (*o, *s)).unwrap();
    let seg_path = repo.join(format!("data/0/{seg}"));
    let mut bytes = fs::read(&seg_path).unwrap();
    bytes[off as usize + 50] ^= 0xff;
    fs::write(&seg_path, &bytes).unwrap();
    {
        let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
        assert!(!r.check(false, 0.0).unwrap());
        assert!(r.check(true, 0.0).unwrap());
        assert!(!r.contains(&victim).unwrap());
        assert_eq!(r.len().unwrap(), index.len() - 1);
        assert!(r.check(false, 0.0).unwrap());
    }
    if borg().is_some() {
        let out = borg_cmd(tmp.path())
            .args(["check", "-v", "--repository-only"])
            .arg(&repo)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.contains("no problems found"),
            "{err}"
        );
    }
}

#[test]
fn compaction_matches_borg_compact_after_archive_delete() {
    let Some(fx) = fixtures() else { return };
    if borg().is_none() {
        return;
    }
    let (tmp, deleted) = copy_fixture(&fx, "none");
    let out = borg_cmd(tmp.path())
        .args(["delete"])
        .arg(format!("{}::a1", deleted.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = tmp.path().join("theirs");
    let ours = tmp.path().join("ours");
    copy_tree(&deleted, &theirs);
    copy_tree(&deleted, &ours);
    let out = borg_cmd(tmp.path())
        .args(["compact"])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        // what `borg compact` does: re-PUT the manifest unchanged, commit with compaction
        let r = LocalRepository::open(&ours, true, 1.0, true, false).unwrap();
        let manifest = r.get(&MANIFEST_ID).unwrap();
        r.put(&MANIFEST_ID, &manifest).unwrap();
        r.commit(true, 0.1, false).unwrap();
    }
    let (a, b) = (snapshot(&theirs), snapshot(&ours));
    let data = |s: &BTreeMap<String, String>| {
        s.iter()
            .filter(|(k, _)| k.starts_with("data/") || k.starts_with("index."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(data(&a), data(&b));
    // borg accepts the result, archives included
    let out = borg_cmd(tmp.path())
        .args(["check", "-v"])
        .arg(&ours)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let out = borg_cmd(tmp.path())
        .args(["list", "--short"])
        .arg(&ours)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a2\n");
}

#[test]
fn insufficient_free_space_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    {
        let r = LocalRepository::init(&repo, false, 0, false, 1.0).unwrap();
        r.put(&MANIFEST_ID, b"m").unwrap();
        r.commit(false, 0.1, false).unwrap();
    }
    let config = fs::read_to_string(repo.join("config")).unwrap();
    fs::write(
        repo.join("config"),
        config.replace("additional_free_space = 0", "additional_free_space = 900P"),
    )
    .unwrap();
    let before = snapshot(&repo);
    let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
    r.put(&[5u8; 32], b"data").unwrap();
    let e = r.commit(false, 0.1, false).unwrap_err();
    assert!(e.is(ErrorKind::RepositoryInsufficientFreeSpace), "{e:?}");
    assert!(e.message.starts_with(
        "Insufficient free space to complete transaction (required: 900.00 PB, available: "
    ));
    drop(r);
    assert_eq!(snapshot(&repo), before);
}

/// Many objects: commit, reload the index, replay without index, every object readable.
#[test]
fn many_objects_commit_reload_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let n = 50_000u32;
    let id = |i: u32| -> ObjectId { Sha256::digest(i.to_le_bytes()).into() };
    {
        let r = LocalRepository::init(&repo, false, 0, false, 1.0).unwrap();
        for i in 0..n {
            r.put(&id(i), &i.to_le_bytes().repeat(8)).unwrap();
        }
        r.commit(false, 0.1, false).unwrap();
    }
    assert_eq!(open_ro(&repo).len().unwrap(), n as usize);
    remove_index_files(&repo);
    let r = open_ro(&repo);
    assert_eq!(r.len().unwrap(), n as usize);
    for i in (0..n).step_by(7) {
        assert_eq!(r.get(&id(i)).unwrap(), i.to_le_bytes().repeat(8));
    }
}

#[test]
fn scan_in_disk_order_and_low_level() {
    let Some(fx) = fixtures() else { return };
    let (_tmp, repo) = copy_fixture(&fx, "keyfile");
    let r = open_ro(&repo);
    let mut scanned = Vec::new();
    let mut marker: Option<ObjectId> = None;
    loop {
        let page = Repository::scan(&r, 10, marker.as_ref()).unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().copied();
        scanned.extend(page);
    }
    let locations: Vec<(u32, u32)> = scanned
        .iter()
        .map(|id| r.locate(id).unwrap().unwrap())
        .collect();
    let mut sorted = locations.clone();
    sorted.sort();
    assert_eq!(locations, sorted);
    assert_eq!(scanned.len(), r.len().unwrap());
    let mut puts = 0;
    let mut commits = 0;
    r.scan_low_level(None, None, |_, data, tag, _, _| {
        match tag {
            segments::TAG_PUT => {
                assert!(data.is_some());
                puts += 1
            }
            segments::TAG_COMMIT => commits += 1,
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    // two archives: init, create a1, create a2 → 3 transactions
    assert_eq!(commits, 3);
    assert!(puts > scanned.len());
}

#[test]
fn writes_need_the_exclusive_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    drop(LocalRepository::init(&repo, false, 0, false, 1.0).unwrap());
    let r = open_ro(&repo);
    let e = r.put(&MANIFEST_ID, b"m").unwrap_err();
    assert_eq!(e.message, "bug in code, exclusive lock should exist here");
    assert!(r.check(false, 0.0).is_err());
    assert!(r.get_free_nonce().is_err());
    drop(r);
    // old clients (exclusive=None): the shared lock is upgraded on the first write
    let opts = OpenOptions {
        upgrade_lock: true,
        ..OpenOptions::default()
    };
    let r = LocalRepository::open_with(&repo, &opts).unwrap();
    assert!(!r.got_exclusive_lock());
    r.put(&MANIFEST_ID, b"m").unwrap();
    assert!(r.got_exclusive_lock());
    r.commit(false, 0.1, false).unwrap();
    // bypass-lock: no lock at all, writes allowed (borg does not stop them)
    drop(r);
    let r = LocalRepository::open(&repo, false, 1.0, false, false).unwrap();
    r.put(&[1u8; 32], b"x").unwrap();
    r.rollback().unwrap();
    assert_eq!(
        Repository::list(&r, 10, Some(&[9u8; 32]))
            .unwrap_err()
            .message,
        "'marker not found'"
    );
    assert!(Repository::scan(&r, 0, None).is_err());
}

#[test]
fn version_1_hints_are_upgraded() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    {
        let r = LocalRepository::init(&repo, false, 0, false, 1.0).unwrap();
        r.put(&MANIFEST_ID, b"m1").unwrap();
        r.put(&[1u8; 32], &[1u8; 300]).unwrap();
        r.put(&[2u8; 32], &[2u8; 300]).unwrap();
        r.commit(false, 0.1, false).unwrap();
        r.delete(&[1u8; 32]).unwrap();
        r.put(&MANIFEST_ID, b"m2").unwrap();
        r.commit(false, 0.1, false).unwrap();
    }
    let (t, _) = index_file(&repo);
    let h = match decode_hints(&fs::read(repo.join(format!("hints.{t}"))).unwrap()).unwrap() {
        DecodedHints::V2(h) => h,
        DecodedHints::V1 { .. } => unreachable!(),
    };
    // borg 1.0 hints: compact is a list of segment numbers
    let mut v1 = Vec::new();
    msgpack::pack_map_len(&mut v1, 3);
    msgpack::pack_raw(&mut v1, b"version");
    msgpack::pack_uint(&mut v1, 1);
    msgpack::pack_raw(&mut v1, b"segments");
    msgpack::pack_map_len(&mut v1, h.segments.len());
    for (s, c) in &h.segments {
        msgpack::pack_uint(&mut v1, *s as u64);
        msgpack::pack_int(&mut v1, *c);
    }
    msgpack::pack_raw(&mut v1, b"compact");
    msgpack::pack_array_len(&mut v1, h.compact.len());
    for s in h.compact.keys() {
        msgpack::pack_uint(&mut v1, *s as u64);
    }
    fs::write(repo.join(format!("hints.{t}")), v1).unwrap();
    fs::remove_file(repo.join(format!("integrity.{t}"))).unwrap();
    let r = LocalRepository::open(&repo, true, 1.0, true, false).unwrap();
    let upgraded = r.hints().unwrap();
    assert_eq!(upgraded.segments, h.segments);
    // rebuilt freeable bytes: superseded PUTs and DELETEs, whole file size for dead segments
    for (seg, free) in &h.compact {
        let expect = if h.segments[seg] == 0 {
            r.segments().segment_size(*seg).unwrap()
        } else {
            *free
        };
        assert_eq!(upgraded.compact[seg], expect, "segment {seg}");
    }
    r.put(&MANIFEST_ID, b"m3").unwrap();
    r.commit(true, 0.1, false).unwrap();
    assert!(!r.contains(&[1u8; 32]).unwrap());
    assert_eq!(r.get(&[2u8; 32]).unwrap(), vec![2u8; 300]);
    assert!(r.check(false, 0.0).unwrap());
}
