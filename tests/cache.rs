//! The persistent cache is shared with real borg: rborg reads a cache borg wrote without
//! resynchronising, computes the same chunks index (byte for byte) when it does, and borg
//! keeps using the cache after rborg committed to it.

mod common;

use std::path::{Path, PathBuf};

use rand::SeedableRng;

use common::*;

/// A scratch dir with a borg-made repository (`repo`, archives a1 and a2 of a random tree
/// `data`) and its own BORG_BASE_DIR.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(test: &str, mode: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("rborg-cache")
            .tempdir()
            .unwrap();
        let s = Setup { dir };
        let mut rng = rand::rngs::StdRng::seed_from_u64(test_seed(test));
        let env = s.env();
        ok(borg(&["init", "-e", mode, "repo"], &s.path(), &env));
        for archive in ["repo::a1", "repo::a2"] {
            mutate_random_tree(&s.path().join("data"), &mut rng);
            ok(borg(&["create", archive, "data"], &s.path(), &env));
        }
        s
    }

    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn env(&self) -> Vec<(String, String)> {
        env_with_base(&self.path().join("base"))
    }

    /// The cache dir borg and rborg share.
    fn cache(&self) -> PathBuf {
        self.path()
            .join("base/.cache/borg")
            .join(repo_id_hex(&self.path().join("repo")))
    }

    /// The cache dir under another cache root.
    fn cache_in(&self, root: &str) -> PathBuf {
        self.path()
            .join(root)
            .join(repo_id_hex(&self.path().join("repo")))
    }

    fn env_cache_root(&self, root: &str) -> Vec<(String, String)> {
        with_var(
            &self.env(),
            "BORG_CACHE_DIR",
            &self.path().join(root).display().to_string(),
        )
    }
}

fn synced(o: &std::process::Output) -> bool {
    stderr(o).contains("Synchronizing chunks cache")
}

/// Every file of a cache dir that borg compares: chunks and the per-archive indexes.
fn index_files(cache: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        "chunks".to_string(),
        std::fs::read(cache.join("chunks")).unwrap(),
    )];
    out.extend(
        dir_contents(&cache.join("chunks.archive.d"))
            .into_iter()
            .map(|(n, d)| (format!("chunks.archive.d/{n}"), d)),
    );
    out
}

#[test]
fn rborg_reads_borgs_cache_without_resync() {
    if !borg_or_skip("rborg_reads_borgs_cache_without_resync") {
        return;
    }
    let s = Setup::new("rborg_reads_borgs_cache_without_resync", "repokey-blake2");
    let cache = s.cache();
    let chunks_before = std::fs::read(cache.join("chunks")).unwrap();
    let config_before = std::fs::read(cache.join("config")).unwrap();
    let o = ok(rborg(&["--info", "info", "repo"], &s.path(), &s.env()));
    assert!(
        !synced(&o),
        "rborg resynchronised a current cache:\n{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(cache.join("chunks")).unwrap(), chunks_before);
    assert_eq!(std::fs::read(cache.join("config")).unwrap(), config_before);
    // and borg's index (built incrementally by create) holds what a fresh sync computes
    let o = ok(rborg(
        &["--info", "info", "repo"],
        &s.path(),
        &s.env_cache_root("fresh"),
    ));
    assert!(synced(&o));
    assert_eq!(cache_chunks(&cache), cache_chunks(&s.cache_in("fresh")));
    // a sync by borg itself writes the very same files
    ok(borg(
        &["info", "repo"],
        &s.path(),
        &s.env_cache_root("borgfresh"),
    ));
    let ours = index_files(&s.cache_in("fresh"));
    let theirs = index_files(&s.cache_in("borgfresh"));
    assert_eq!(
        ours.len(),
        5,
        "chunks, two archive indexes and their digests"
    );
    assert_eq!(ours, theirs);
    assert_eq!(
        std::fs::read_to_string(s.cache_in("fresh").join("config")).unwrap(),
        std::fs::read_to_string(s.cache_in("borgfresh").join("config")).unwrap()
    );
}

#[test]
fn borg_keeps_using_the_cache_after_rborg_commits() {
    if !borg_or_skip("borg_keeps_using_the_cache_after_rborg_commits") {
        return;
    }
    let s = Setup::new("borg_keeps_using_the_cache_after_rborg_commits", "repokey");
    let env = s.env();
    ok(rborg(&["delete", "repo::a1"], &s.path(), &env));
    // borg sees a current cache: no resync, and its backup deduplicates against it
    let o = ok(borg(
        &["--info", "create", "--stats", "repo::a3", "data"],
        &s.path(),
        &env,
    ));
    assert!(!synced(&o), "borg resynchronised:\n{}", stderr(&o));
    // rborg sees borg's commit as current too
    let o = ok(rborg(&["--info", "info", "repo"], &s.path(), &env));
    assert!(!synced(&o));
    ok(borg(&["check", "--verify-data", "repo"], &s.path(), &env));
    // the shared index is right: same as a fresh sync of borg
    ok(borg(
        &["info", "repo"],
        &s.path(),
        &s.env_cache_root("borgfresh"),
    ));
    assert_eq!(
        cache_chunks(&s.cache()),
        cache_chunks(&s.cache_in("borgfresh"))
    );
    let b = ok(borg(&["info", "repo"], &s.path(), &env));
    let r = ok(rborg(&["info", "repo"], &s.path(), &env));
    assert_eq!(stdout(&r), stdout(&b));
    for a in ["repo::a2", "repo::a3"] {
        let b = ok(borg(&["info", "--json", a], &s.path(), &env));
        let r = ok(rborg(&["info", "--json", a], &s.path(), &env));
        assert_eq!(stdout(&r), stdout(&b), "{a}");
    }
}

#[test]
fn foreign_changes_are_synchronised() {
    if !borg_or_skip("foreign_changes_are_synchronised") {
        return;
    }
    let s = Setup::new("foreign_changes_are_synchronised", "authenticated");
    let env = s.env();
    // rborg builds its per-archive indexes in its own cache dir
    let own = s.env_cache_root("own");
    ok(rborg(&["info", "repo"], &s.path(), &own));
    // borg (with the other cache) deletes one archive and adds one
    ok(borg(&["delete", "repo::a1"], &s.path(), &env));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    mutate_random_tree(&s.path().join("data"), &mut rng);
    ok(borg(&["create", "repo::a3", "data"], &s.path(), &env));
    let o = ok(rborg(&["--info", "info", "repo"], &s.path(), &own));
    assert!(synced(&o));
    assert!(
        stderr(&o)
            .contains("Archives: 2, w/ cached Idx: 2, w/ outdated Idx: 1, w/o cached Idx: 1."),
        "{}",
        stderr(&o)
    );
    assert_eq!(cache_chunks(&s.cache_in("own")), cache_chunks(&s.cache()));
    // the outdated index is gone, the new one is there
    let names: Vec<String> = dir_contents(&s.cache_in("own").join("chunks.archive.d"))
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".compact"))
        .collect();
    assert_eq!(names.len(), 2);
    // without the per-archive indexes (BORG_USE_CHUNKS_ARCHIVE=no) the result is the same
    let no_archive_d = with_var(&s.env_cache_root("plain"), "BORG_USE_CHUNKS_ARCHIVE", "no");
    ok(rborg(&["info", "repo"], &s.path(), &no_archive_d));
    assert_eq!(cache_chunks(&s.cache_in("plain")), cache_chunks(&s.cache()));
    assert!(dir_contents(&s.cache_in("plain").join("chunks.archive.d")).is_empty());
}

#[test]
fn damaged_cache_is_rebuilt() {
    if !borg_or_skip("damaged_cache_is_rebuilt") {
        return;
    }
    let s = Setup::new("damaged_cache_is_rebuilt", "none");
    let env = s.env();
    let cache = s.cache();
    let good = cache_chunks(&cache);
    let info = stdout(&ok(rborg(&["info", "repo"], &s.path(), &env)));
    // flip a byte of the chunks index: its digest no longer matches
    let mut bytes = std::fs::read(cache.join("chunks")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x10;
    std::fs::write(cache.join("chunks"), bytes).unwrap();
    let o = ok(rborg(&["info", "repo"], &s.path(), &env));
    assert!(stderr(&o).contains("Discarding incompatible or corrupted cache"));
    assert_eq!(stdout(&o), info);
    assert_eq!(cache_chunks(&cache), good);
    // an interrupted transaction is rolled back by the next user (borg here)
    std::fs::create_dir(cache.join("txn.active")).unwrap();
    for f in ["config", "chunks", "files"] {
        std::fs::copy(cache.join(f), cache.join("txn.active").join(f)).unwrap();
    }
    std::fs::write(cache.join("chunks"), b"half written").unwrap();
    ok(borg(&["info", "repo"], &s.path(), &env));
    assert!(!cache.join("txn.active").exists());
    assert_eq!(cache_chunks(&cache), good);
}

#[test]
fn files_cache_is_shared_with_borg() {
    use rborg::cache::{CacheConfig, FilesCache, FilesCacheMode};
    use std::os::unix::ffi::OsStrExt;
    if !borg_or_skip("files_cache_is_shared_with_borg") {
        return;
    }
    let s = Setup::new("files_cache_is_shared_with_borg", "none");
    let cache = s.cache();
    let mut config = CacheConfig::load(&cache, "").unwrap();
    let (files, warning) = FilesCache::load(&cache.join("files"), config.integrity_of("files"));
    assert_eq!(warning, None);
    let chunks = cache_chunks(&cache);
    let id: [u8; 32] = hex::decode(repo_id_hex(&s.path().join("repo")))
        .unwrap()
        .try_into()
        .unwrap();
    let key = rborg::crypto::Key::plaintext(id);
    let mut known = 0;
    for (rel, content) in dir_contents(&s.path().join("data")) {
        let path = s.path().join("data").join(&rel);
        let hash = key.id_hash(path.as_os_str().as_bytes());
        let st = rborg::fs::FileStat::from_metadata(&std::fs::symlink_metadata(&path).unwrap());
        let Some(e) = files.get(&hash) else { continue };
        known += 1;
        assert_eq!(
            (e.size, e.inode(), e.cmtime_ns),
            (st.size, st.ino, st.ctime_ns)
        );
        let total: u64 = e.chunk_ids.iter().map(|c| chunks[c].size as u64).sum();
        assert_eq!(total, content.len() as u64, "{rel}");
        let ids = files.known_and_unchanged(FilesCacheMode::default(), &hash, &st);
        assert_eq!(ids, (true, Some(e.chunk_ids.clone())));
    }
    assert!(known > 0);
    // written back by rborg, the files cache still tells borg which files are unchanged
    let digests = files.save(&cache.join("files"), 20).unwrap();
    config.set_integrity("files", digests.to_json());
    let manifest_id = config.manifest_id.unwrap();
    let timestamp = config.timestamp.clone().unwrap();
    let key_type: u8 = config.key_type.as_deref().unwrap().parse().unwrap();
    config
        .save(Some((&manifest_id, &timestamp)), Some(key_type))
        .unwrap();
    let o = ok(borg(
        &["create", "--list", "repo::a3", "data"],
        &s.path(),
        &s.env(),
    ));
    let text = stderr(&o);
    assert!(!text.contains("files cache"), "{text}");
    let unchanged = text.lines().filter(|l| l.starts_with("U ")).count();
    assert_eq!(unchanged, known, "{text}");
    assert!(!text.lines().any(|l| l.starts_with("M ")), "{text}");
}
