//! Cache tests on real local repositories written by a test "client" that bypasses the cache
//! (as another borg would), so every sync result is checked against hand-counted references.

use std::collections::{HashMap, HashSet};

use chrono::TimeZone;
use rmpv::Value;

use super::*;
use crate::archive::objects::ObjectWriter;
use crate::archive::ArchiveMeta;
use crate::compress::CompressionSpec;
use crate::hashindex::ChunkIndexEntry;
use crate::msgpack;
use crate::repository::LocalRepository;

/// Chunk id → (references, size, csize) of one archive.
type Refs = HashMap<ObjectId, (u32, u32, u32)>;

/// A repository plus the references every archive makes, counted independently.
struct World {
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    writer: ObjectWriter,
    manifest: Manifest,
    /// archive name → (id, chunk id → references, sizes)
    archives: HashMap<String, (ObjectId, Refs)>,
    /// Last: the repository must close before its directory goes.
    dir: tempfile::TempDir,
}

fn opts() -> CacheOptions {
    CacheOptions {
        warn_if_unencrypted: false,
        ..Default::default()
    }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepository::init(&dir.path().join("repo"), false, 0, false, 1.0).unwrap();
        let repo: Arc<dyn Repository> = Arc::new(repo);
        let key = Arc::new(Key::plaintext(repo.id()));
        let writer = ObjectWriter::new(repo.clone(), key.clone(), CompressionSpec::Lz4);
        let mut manifest = Manifest::empty();
        manifest.write(&writer).unwrap();
        repo.commit(false, 0.1, false).unwrap();
        World {
            dir,
            repo,
            key,
            writer,
            manifest,
            archives: HashMap::new(),
        }
    }

    fn cache_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join(hex::encode(self.repo.id()))
    }

    fn security(&self) -> SecurityManager {
        let mut s = SecurityManager::new(&hex::encode(self.repo.id()), "/repo");
        s.dir = self.dir.path().join("security");
        s
    }

    fn open(&self, name: &str) -> Result<Cache> {
        Cache::open_in(
            self.cache_path(name),
            self.security(),
            self.repo.clone(),
            self.key.clone(),
            &self.manifest,
            "/repo",
            &opts(),
        )
    }

    fn put(&self, data: &[u8]) -> (ObjectId, u32, u32) {
        let (id, stored) = self.writer.put(data).unwrap();
        (id, data.len() as u32, stored as u32)
    }

    /// Store an archive the way another client would (no cache involved): file contents
    /// (one file per entry of `files`, content chunks as given), item stream, metadata,
    /// manifest, commit.
    fn add_archive(&mut self, name: &str, files: &[&[&[u8]]], item_chunk_size: usize) -> ObjectId {
        let mut refs: HashMap<ObjectId, (u32, u32, u32)> = HashMap::new();
        let count = |refs: &mut HashMap<ObjectId, (u32, u32, u32)>,
                     (id, s, c): (ObjectId, u32, u32)| {
            let e = refs.entry(id).or_insert((0, s, c));
            e.0 += 1;
        };
        let mut stream = Vec::new();
        let (mut size, mut csize) = (0u64, 0u64);
        for (i, chunks) in files.iter().enumerate() {
            let mut list = Vec::new();
            for data in chunks.iter() {
                let r = self.put(data);
                count(&mut refs, r);
                size += r.1 as u64;
                csize += r.2 as u64;
                list.push(Value::Array(vec![
                    msgpack::bytes(r.0.to_vec()),
                    Value::from(r.1),
                    Value::from(r.2),
                ]));
            }
            let item = msgpack::sorted_map(vec![
                (
                    Value::from("path"),
                    msgpack::bytes(format!("f{i}").into_bytes()),
                ),
                (Value::from("mode"), Value::from(0o100644)),
                (Value::from("mtime"), Value::from(0)),
                (Value::from("chunks"), Value::Array(list)),
            ]);
            msgpack::pack_into(&mut stream, &item);
        }
        let dir = msgpack::sorted_map(vec![
            (Value::from("path"), msgpack::bytes(b"d".to_vec())),
            (Value::from("mode"), Value::from(0o40755)),
            (Value::from("mtime"), Value::from(0)),
        ]);
        msgpack::pack_into(&mut stream, &dir);
        let mut items = Vec::new();
        for piece in stream.chunks(item_chunk_size) {
            let r = self.put(piece);
            count(&mut refs, r);
            items.push(r.0);
        }
        let meta = ArchiveMeta {
            version: 1,
            name: name.as_bytes().to_vec(),
            items,
            cmdline: vec![],
            hostname: b"h".to_vec(),
            username: b"u".to_vec(),
            time: "2026-01-01T00:00:00.000000".into(),
            time_end: None,
            comment: vec![],
            chunker_params: None,
            size: Some(size),
            csize: Some(csize),
            nfiles: Some(files.len() as u64),
            size_parts: Some(0),
            csize_parts: Some(0),
            nfiles_parts: Some(0),
            recreate_cmdline: None,
            cwd: None,
            raw: Value::Map(vec![]),
        };
        let (id, stored, plain) = meta.store(&self.writer).unwrap();
        count(&mut refs, (id, plain as u32, stored as u32));
        let ts = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        self.manifest.set_archive(name.as_bytes(), id, ts);
        self.manifest.write(&self.writer).unwrap();
        self.repo.commit(false, 0.1, false).unwrap();
        self.archives.insert(name.to_string(), (id, refs));
        id
    }

    /// Drop an archive from the manifest only (its chunks stay: like `delete --force --force`).
    fn forget_archive(&mut self, name: &str) {
        self.manifest.remove_archive(name.as_bytes());
        self.manifest.write(&self.writer).unwrap();
        self.repo.commit(false, 0.1, false).unwrap();
        self.archives.remove(name);
    }

    /// The chunks index every archive of the manifest adds up to.
    fn expected(&self) -> HashMap<ObjectId, ChunkIndexEntry> {
        let mut out: HashMap<ObjectId, ChunkIndexEntry> = HashMap::new();
        for (_, refs) in self.archives.values() {
            for (id, (n, s, c)) in refs {
                let e = out.entry(*id).or_insert(ChunkIndexEntry {
                    refcount: 0,
                    size: *s,
                    csize: *c,
                });
                e.refcount += n;
            }
        }
        out
    }
}

fn entries(idx: &ChunkIndex) -> HashMap<ObjectId, ChunkIndexEntry> {
    idx.iter().collect()
}

#[test]
fn new_cache_layout_and_reopen_without_sync() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"one", b"two"], &[b"two"]], 40);
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    let path = cache.path().to_path_buf();
    for f in [
        "README",
        "config",
        "chunks",
        "files",
        "pre12-meta",
        "chunks.archive.d",
    ] {
        assert!(path.join(f).exists(), "{f}");
    }
    assert_eq!(
        fs::read_to_string(path.join("README")).unwrap(),
        CACHE_README
    );
    assert_eq!(
        fs::read_to_string(path.parent().unwrap().join("CACHEDIR.TAG")).unwrap(),
        CACHE_TAG_CONTENTS
    );
    let a1 = w.archives["a1"].0;
    assert!(path
        .join("chunks.archive.d")
        .join(format!("{}.compact", hex::encode(a1)))
        .exists());
    let config = CacheConfig::load(&path, "/repo").unwrap();
    assert_eq!(config.manifest_id, Some(w.manifest.id));
    assert_eq!(config.key_type.as_deref(), Some("2"));
    assert!(config.integrity_of("chunks").is_some());
    assert!(!path.join("txn.active").exists());
    // the security dir was updated at commit
    assert_eq!(
        fs::read_to_string(w.dir.path().join("security/manifest-timestamp")).unwrap(),
        w.manifest.timestamp
    );
    drop(cache);
    // reopening: in sync, the chunks file is only read (an unreadable archive index would
    // not even be looked at)
    fs::write(
        path.join("chunks.archive.d")
            .join(format!("{}.compact", hex::encode(a1))),
        b"garbage",
    )
    .unwrap();
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    assert!(!cache.txn_active());
}

#[test]
fn sync_follows_foreign_changes() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"alpha", b"beta"]], 30);
    w.add_archive("a2", &[&[b"beta", b"gamma"], &[b"alpha"]], 25);
    drop(w.open("c").unwrap());
    // another client adds one archive and forgets another
    w.add_archive("a3", &[&[b"gamma", b"delta"]], 1000);
    w.forget_archive("a1");
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    let names: HashSet<ObjectId> = ArchiveDir {
        dir: cache.path().join("chunks.archive.d"),
    }
    .cached_ids()
    .into_iter()
    .collect();
    let want: HashSet<ObjectId> = w.archives.values().map(|(id, _)| *id).collect();
    assert_eq!(names, want, "outdated archive index removed, new one added");
    // a fresh cache computes the same index
    let fresh = w.open("fresh").unwrap();
    assert_eq!(entries(fresh.chunks()), entries(cache.chunks()));
    // summary: totals from the archives' metadata
    let s = cache.summary().unwrap();
    assert_eq!(s.total_unique_chunks, w.expected().len() as u64);
    let (a2, a3) = (&w.archives["a2"], &w.archives["a3"]);
    let content = |refs: &HashMap<ObjectId, (u32, u32, u32)>, names: &[&[u8]]| -> u64 {
        names.iter().map(|d| refs[&w.key.id_hash(d)].1 as u64).sum()
    };
    assert_eq!(
        s.total_size,
        content(&a2.1, &[b"beta", b"gamma", b"alpha"]) + content(&a3.1, &[b"gamma", b"delta"])
    );
}

#[test]
fn archive_index_and_dedup_size() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"shared", b"only-a1"]], 1000);
    w.add_archive("a2", &[&[b"shared"]], 1000);
    let cache = w.open("c").unwrap();
    let a1 = w.archives["a1"].0;
    let idx = cache.archive_index(&a1).unwrap();
    let s = idx.stats_against(cache.chunks()).unwrap();
    let only = w.archives["a1"].1[&w.key.id_hash(b"only-a1")];
    let meta = w.archives["a1"].1[&a1];
    // unique to a1: its own content chunk, its item chunk and its metadata object
    let item_csize: u32 = w.archives["a1"]
        .1
        .iter()
        .filter(|(id, _)| {
            **id != a1 && **id != w.key.id_hash(b"only-a1") && **id != w.key.id_hash(b"shared")
        })
        .map(|(_, e)| e.2)
        .sum();
    assert_eq!(s.unique_csize, (only.2 + meta.2 + item_csize) as u64);
    // without the per-archive file it is read from the repository, same result
    fs::remove_file(
        ArchiveDir {
            dir: cache.path().join("chunks.archive.d"),
        }
        .compact_path(&a1),
    )
    .unwrap();
    assert_eq!(entries(&cache.archive_index(&a1).unwrap()), entries(&idx));
}

#[test]
fn damaged_files_are_rebuilt() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"x", b"y"]], 1000);
    let path = w.cache_path("c");
    drop(w.open("c").unwrap());
    // corrupted chunks index (digest mismatch) → wiped and resynchronised
    let mut bytes = fs::read(path.join("chunks")).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    fs::write(path.join("chunks"), bytes).unwrap();
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    drop(cache);
    // truncated chunks index, config gone
    fs::write(path.join("chunks"), b"BORG_IDX").unwrap();
    fs::remove_file(path.join("config")).unwrap();
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    drop(cache);
    // garbage config
    fs::write(path.join("config"), b"\x00\x01 nonsense").unwrap();
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    drop(cache);
    // corrupted per-archive index during a sync → rebuilt from the repository
    let a1 = w.archives["a1"].0;
    let compact = ArchiveDir {
        dir: path.join("chunks.archive.d"),
    }
    .compact_path(&a1);
    let mut bytes = fs::read(&compact).unwrap();
    bytes[20] ^= 1;
    fs::write(&compact, bytes).unwrap();
    w.add_archive("a2", &[&[b"y"]], 1000);
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    assert!(ChunkIndex::read_path_detached(&compact, true).is_ok());
    drop(cache);
    // a cache of another version is refused, not rebuilt
    let text = fs::read_to_string(path.join("config")).unwrap();
    fs::write(
        path.join("config"),
        text.replace("version = 1", "version = 7"),
    )
    .unwrap();
    let e = w.open("c").err().unwrap();
    assert!(e.message.contains("unexpected cache version 7"));
}

#[test]
fn interrupted_transaction_is_rolled_back() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"p", b"q"]], 1000);
    let path = w.cache_path("c");
    let mut cache = w.open("c").unwrap();
    let before = fs::read(path.join("chunks")).unwrap();
    let mut stats = Statistics::default();
    let id = w.key.id_hash(b"p");
    cache.chunk_incref(&id, &mut stats, false);
    assert!(cache.txn_active());
    assert!(path.join("txn.active").is_dir());
    assert_eq!(cache.seen_chunk(&id), 2);
    // simulate a crash after the chunks file was rewritten, before the commit ended
    cache.chunks.write_path(&path.join("chunks"), None).unwrap();
    std::mem::forget(cache.lock.take());
    drop(cache);
    fs::remove_dir_all(path.join("lock.exclusive")).ok();
    fs::remove_file(path.join("lock.roster")).ok();
    let cache = w.open("c").unwrap();
    assert_eq!(fs::read(path.join("chunks")).unwrap(), before);
    assert_eq!(cache.seen_chunk(&id), 1);
    assert!(!path.join("txn.active").exists());
    // rollback() in a session forgets the changes too
    let mut cache = cache;
    cache.chunk_incref(&id, &mut stats, false);
    cache.rollback();
    assert_eq!(cache.seen_chunk(&id), 1);
    assert!(!cache.txn_active());
}

#[test]
fn refcount_changes_and_deletion() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"keep", b"drop"]], 1000);
    w.add_archive("a2", &[&[b"keep"]], 1000);
    let mut cache = w.open("c").unwrap();
    let mut stats = Statistics::default();
    let mut manifest = w.manifest.clone();
    let ok = delete_archive(
        &mut cache,
        &mut manifest,
        b"a1",
        &mut stats,
        DeleteOptions::default(),
    )
    .unwrap();
    assert!(ok);
    assert!(manifest.lookup(b"a1").is_none());
    let gone = w.key.id_hash(b"drop");
    let kept = w.key.id_hash(b"keep");
    assert_eq!(cache.seen_chunk(&gone), 0);
    assert_eq!(cache.seen_chunk(&kept), 1);
    // sizes were subtracted: negative as i64, dedup = everything that left the repository
    let a1 = &w.archives["a1"].1;
    let total_csize: u64 = a1.values().map(|e| e.2 as u64 * e.0 as u64).sum();
    let unique_csize: u64 = a1
        .iter()
        .filter(|(id, _)| **id != kept)
        .map(|(_, e)| e.2 as u64)
        .sum();
    assert_eq!(stats.csize as i64, -(total_csize as i64));
    assert_eq!(stats.usize as i64, -(unique_csize as i64));
    w.manifest = manifest;
    w.manifest.write(&w.writer).unwrap();
    w.repo.commit(false, 0.1, false).unwrap();
    w.archives.remove("a1");
    cache.commit(&w.manifest).unwrap();
    assert!(!w.repo.contains(&gone).unwrap());
    assert!(w.repo.contains(&kept).unwrap());
    assert_eq!(entries(cache.chunks()), w.expected());
    drop(cache);
    // the committed cache is current for the new manifest
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    // add_chunk / incref bookkeeping
    let mut cache = cache;
    let mut st = Statistics::default();
    let (nid, s, c) = w.put(b"new");
    cache.add_chunk(&nid, s, c, &mut st, false);
    cache.chunk_incref(&nid, &mut st, false);
    assert_eq!(cache.seen_chunk(&nid), 2);
    assert_eq!(
        (st.osize, st.csize, st.usize),
        (2 * s as u64, 2 * c as u64, c as u64)
    );
    assert!(cache.seen_chunk_sized(&nid, s + 1).is_err());
    // an unknown chunk is reported by commit
    cache.chunk_incref(&[0xee; 32], &mut st, false);
    assert!(cache.commit(&w.manifest).is_err());
}

#[test]
fn archive_index_cache_can_be_disabled() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"m", b"n"]], 1000);
    let path = w.cache_path("c");
    drop(w.open("c").unwrap());
    // borg's FAQ: a file in place of chunks.archive.d switches the per-archive indexes off
    fs::remove_dir_all(path.join("chunks.archive.d")).unwrap();
    fs::write(path.join("chunks.archive.d"), b"").unwrap();
    w.add_archive("a2", &[&[b"n", b"o"]], 1000);
    let cache = w.open("c").unwrap();
    assert_eq!(entries(cache.chunks()), w.expected());
    assert!(path.join("chunks.archive.d").is_file());
}

#[test]
fn files_cache_is_saved_with_the_transaction() {
    let mut w = World::new();
    w.add_archive("a1", &[&[b"z"]], 1000);
    let mut o = opts();
    o.files_cache_mode = FilesCacheMode::default();
    let open = |w: &World| {
        Cache::open_in(
            w.cache_path("c"),
            w.security(),
            w.repo.clone(),
            w.key.clone(),
            &w.manifest,
            "/repo",
            &o,
        )
        .unwrap()
    };
    let mut cache = open(&w);
    let st = FileStat {
        mode: libc::S_IFREG | 0o600,
        uid: 0,
        gid: 0,
        size: 1,
        ino: 5,
        dev: 1,
        nlink: 1,
        rdev: 0,
        atime_ns: 0,
        mtime_ns: 10,
        ctime_ns: 10,
        birthtime_ns: None,
        bsd_flags: 0,
    };
    let older = FileStat {
        ctime_ns: 5,
        ino: 6,
        ..st
    };
    let zid = w.key.id_hash(b"z");
    cache.memorize_file(&[1; 32], &older, &[zid]);
    cache.memorize_file(&[2; 32], &st, &[zid]);
    let mut stats = Statistics::default();
    cache.chunk_incref(&zid, &mut stats, false);
    cache.commit(&w.manifest).unwrap();
    drop(cache);
    let cache = open(&w);
    assert_eq!(
        cache.file_known_and_unchanged(&[1; 32], &older),
        (true, Some(vec![zid]))
    );
    // newest cmtime of that backup: not trusted
    assert_eq!(cache.file_known_and_unchanged(&[2; 32], &st), (false, None));
    let config = CacheConfig::load(cache.path(), "/repo").unwrap();
    assert!(config.integrity_of("files").is_some());
}

#[test]
fn item_free_archive_and_empty_repository() {
    let w = World::new();
    let cache = w.open("c").unwrap();
    assert!(cache.chunks().is_empty());
    let s = cache.summary().unwrap();
    assert_eq!((s.total_chunks, s.total_size), (0, 0));
}

#[test]
fn cache_is_shareable_between_threads() {
    fn shared<T: Sync + Send>() {}
    shared::<Cache>();
}
