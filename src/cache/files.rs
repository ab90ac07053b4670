//! The files cache (repository-format.md §8.2): which chunks a regular file had when it was
//! last backed up, keyed by the id hash of its absolute path, so `create` can skip reading
//! unchanged files.
//!
//! On disk: a stream of msgpack arrays `[path_hash, [age, inode, size, cmtime_ns, [ids…]]]`
//! (borg 1.2/1.4 layout; `cmtime` above 63 bits as a little-endian signed byte string).
//! Loading ages every entry by one; saving drops entries that reached the TTL and, of the
//! entries of this backup, those whose cmtime is not older than the newest cmtime seen (a file
//! changed within the timestamp granularity of that moment could look unchanged next time).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rmpv::Value;

use crate::errors::{Error, Result};
use crate::fs::FileStat;
use crate::msgpack::{self, StreamUnpacker, ValueExt};
use crate::repository::integrity::{Digests, IntegrityReader, IntegrityWriter};
use crate::repository::ObjectId;

use super::FilesCacheMode;

/// Default of `BORG_FILES_CACHE_TTL`.
pub const DEFAULT_TTL: u32 = 20;

/// borg's `files_cache_name()`: `files`, or `files.<BORG_FILES_CACHE_SUFFIX>`.
pub fn files_cache_name() -> String {
    match std::env::var("BORG_FILES_CACHE_SUFFIX") {
        Ok(s) if !s.is_empty() => format!("files.{s}"),
        _ => "files".to_string(),
    }
}

/// `BORG_FILES_CACHE_TTL` (20 when unset or not a number).
pub fn files_cache_ttl() -> u32 {
    std::env::var("BORG_FILES_CACHE_TTL")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_TTL)
}

fn is_regular(st: &FileStat) -> bool {
    st.mode & libc::S_IFMT == libc::S_IFREG
}

/// The part of a file's stat the files cache keeps (a backup of a million files holds one of
/// these per file until the end, so not the whole [`FileStat`]).
#[derive(Debug, Clone, Copy)]
pub struct FileMemo {
    pub regular: bool,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl From<&FileStat> for FileMemo {
    fn from(st: &FileStat) -> FileMemo {
        FileMemo {
            regular: is_regular(st),
            ino: st.ino,
            size: st.size,
            mtime_ns: st.mtime_ns,
            ctime_ns: st.ctime_ns,
        }
    }
}

/// One remembered file. Age and inode change on a cache hit, which happens from several
/// threads through `&self`, hence the atomics.
#[derive(Debug)]
pub struct FileEntry {
    age: AtomicU32,
    inode: AtomicU64,
    pub size: u64,
    /// ctime or mtime (ns), per the mode of the backup that stored it.
    pub cmtime_ns: i64,
    pub chunk_ids: Vec<ObjectId>,
}

impl FileEntry {
    pub fn new(age: u32, inode: u64, size: u64, cmtime_ns: i64, chunk_ids: Vec<ObjectId>) -> Self {
        FileEntry {
            age: AtomicU32::new(age),
            inode: AtomicU64::new(inode),
            size,
            cmtime_ns,
            chunk_ids,
        }
    }

    pub fn age(&self) -> u32 {
        self.age.load(Ordering::Relaxed)
    }

    pub fn inode(&self) -> u64 {
        self.inode.load(Ordering::Relaxed)
    }
}

/// The files cache of one session.
#[derive(Debug)]
pub struct FilesCache {
    entries: HashMap<ObjectId, FileEntry>,
    /// Newest cmtime memorized in this session (borg's `_newest_cmtime`).
    newest_cmtime: Option<i64>,
}

/// borg's `int_to_bigint` / `bigint_to_int` for cmtime: ints that do not fit 63 bits are
/// stored as little-endian two's complement bytes.
fn cmtime_of(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_int() {
        return Some(i);
    }
    bigint_bytes(v.as_bytes()?)
}

fn bigint_bytes(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[..b.len()].copy_from_slice(b);
    let wide = i128::from_le_bytes(buf);
    Some(wide.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

fn entry_of(v: &Value) -> Option<(ObjectId, FileEntry)> {
    let pair = v.as_list()?;
    let [hash, item] = pair else { return None };
    let hash = ObjectId::try_from(hash.as_bytes()?).ok()?;
    let fields = item.as_list()?;
    let [age, inode, size, cmtime, ids] = fields else {
        return None;
    };
    let chunk_ids = ids
        .as_list()?
        .iter()
        .map(|id| id.as_bytes().and_then(|b| ObjectId::try_from(b).ok()))
        .collect::<Option<Vec<_>>>()?;
    let age = u32::try_from(age.as_uint()?).unwrap_or(u32::MAX);
    let entry = FileEntry::new(
        age.saturating_add(1),
        inode.as_uint()?,
        size.as_uint()?,
        cmtime_of(cmtime)?,
        chunk_ids,
    );
    Some((hash, entry))
}

/// A msgpack raw (str or bin family) at the start of `rd`, consumed.
fn read_raw<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&marker, rest) = rd.split_first()?;
    let (len, rest) = match marker {
        0xa0..=0xbf => ((marker & 0x1f) as usize, rest),
        0xd9 | 0xc4 => (*rest.first()? as usize, rest.get(1..)?),
        0xda | 0xc5 => (
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize,
            rest.get(2..)?,
        ),
        0xdb | 0xc6 => (
            u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize,
            rest.get(4..)?,
        ),
        _ => return None,
    };
    let (raw, rest) = (rest.get(..len)?, rest.get(len..)?);
    *rd = rest;
    Some(raw)
}

/// Decode the entries of a files cache written as borg writes it, without building msgpack
/// values (startup time of every `create`); None where the data differs from that layout.
fn parse_entries(mut rd: &[u8]) -> Option<HashMap<ObjectId, FileEntry>> {
    use rmp::decode::{read_array_len, read_int};
    // An entry takes about 90 bytes: a close guess spares rehashing.
    let mut entries = HashMap::with_capacity(rd.len() / 80);
    while !rd.is_empty() {
        if read_array_len(&mut rd).ok()? != 2 {
            return None;
        }
        let hash = ObjectId::try_from(read_raw(&mut rd)?).ok()?;
        if read_array_len(&mut rd).ok()? != 5 {
            return None;
        }
        let age: u64 = read_int(&mut rd).ok()?;
        let inode: u64 = read_int(&mut rd).ok()?;
        let size: u64 = read_int(&mut rd).ok()?;
        let mut peek = rd;
        let cmtime = match read_raw(&mut peek) {
            Some(b) => {
                rd = peek;
                bigint_bytes(b)?
            }
            None => read_int(&mut rd).ok()?,
        };
        let n = read_array_len(&mut rd).ok()?;
        let chunk_ids = (0..n)
            .map(|_| ObjectId::try_from(read_raw(&mut rd)?).ok())
            .collect::<Option<Vec<_>>>()?;
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        let entry = FileEntry::new(age.saturating_add(1), inode, size, cmtime, chunk_ids);
        entries.insert(hash, entry);
    }
    Some(entries)
}

impl FilesCache {
    pub fn new() -> FilesCache {
        FilesCache {
            entries: HashMap::new(),
            newest_cmtime: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path_hash: &ObjectId) -> Option<&FileEntry> {
        self.entries.get(path_hash)
    }

    /// Load `path` (verified against `integrity` JSON if given), ageing every entry by one.
    /// A damaged or unreadable file gives an empty cache and the warning to show.
    pub fn load(path: &Path, integrity: Option<&str>) -> (FilesCache, Option<String>) {
        match Self::try_load(path, integrity) {
            Ok(c) => (c, None),
            Err(msg) => (FilesCache::new(), Some(msg)),
        }
    }

    fn try_load(path: &Path, integrity: Option<&str>) -> std::result::Result<FilesCache, String> {
        let shown = path.display().to_string();
        let cant_read = |e: &dyn std::fmt::Display| format!("The files cache can't be read. [{e}]");
        let corrupted = |e: &Error| format!("The files cache is corrupted. [{e}]");
        let digests = match integrity {
            Some(j) => Digests::parse(&shown, j).map_err(|e| corrupted(&e))?,
            None => None,
        };
        let file = File::open(path).map_err(|e| cant_read(&e))?;
        let name = crate::repository::integrity::base_name(path);
        let mut rd = IntegrityReader::new(file, &shown, &name, digests);
        let mut data = Vec::new();
        rd.read_to_end(&mut data).map_err(|e| cant_read(&e))?;
        rd.finish().map_err(|e| corrupted(&e))?;
        let mut cache = FilesCache::new();
        if let Some(entries) = parse_entries(&data) {
            cache.entries = entries;
            return Ok(cache);
        }
        // Not quite borg's layout: the generic decoder accepts what it can and says why not.
        let mut unpacker = StreamUnpacker::new();
        unpacker.feed(&data);
        loop {
            let v = match unpacker.next_value() {
                Ok(Some(v)) => v,
                Ok(None) if unpacker.pending() == 0 => break,
                Ok(None) => return Err("The files cache seems invalid. [truncated]".to_string()),
                Err(e) => return Err(format!("The files cache seems invalid. [{e}]")),
            };
            let (hash, entry) = entry_of(&v).ok_or_else(|| {
                "The files cache seems invalid. [unexpected entry layout]".to_string()
            })?;
            cache.entries.insert(hash, entry);
        }
        Ok(cache)
    }

    /// borg's `file_known_and_unchanged`: (known, chunk ids if unchanged). A hit marks the
    /// entry as seen in this backup (age 0) and takes the current inode number (so a later
    /// run with inode checks does not rechunk files moved to another file system).
    pub fn known_and_unchanged(
        &self,
        mode: FilesCacheMode,
        path_hash: &ObjectId,
        st: &FileStat,
    ) -> (bool, Option<Vec<ObjectId>>) {
        if !is_regular(st) || mode.disabled || mode.rechunk {
            return (false, None);
        }
        let Some(entry) = self.entries.get(path_hash) else {
            return (false, None);
        };
        if mode.size && entry.size != st.size {
            return (true, None);
        }
        if mode.inode && entry.inode() != st.ino {
            return (true, None);
        }
        if mode.ctime {
            if entry.cmtime_ns != st.ctime_ns {
                return (true, None);
            }
        } else if mode.mtime && entry.cmtime_ns != st.mtime_ns {
            return (true, None);
        }
        entry.inode.store(st.ino, Ordering::Relaxed);
        entry.age.store(0, Ordering::Relaxed);
        (true, Some(entry.chunk_ids.clone()))
    }

    /// borg's `memorize_file`: remember a regular file of this backup (not with mode `d`).
    pub fn memorize(
        &mut self,
        mode: FilesCacheMode,
        path_hash: &ObjectId,
        st: &FileStat,
        ids: &[ObjectId],
    ) {
        self.memorize_owned(mode, *path_hash, FileMemo::from(st), ids.to_vec());
    }

    /// [`memorize`](Self::memorize) taking its parts by value (no copy of the ids).
    pub fn memorize_owned(
        &mut self,
        mode: FilesCacheMode,
        path_hash: ObjectId,
        st: FileMemo,
        ids: Vec<ObjectId>,
    ) {
        if !st.regular || mode.disabled {
            return;
        }
        let cmtime = if !mode.ctime && mode.mtime {
            st.mtime_ns
        } else {
            st.ctime_ns
        };
        self.entries
            .insert(path_hash, FileEntry::new(0, st.ino, st.size, cmtime, ids));
        self.newest_cmtime = Some(self.newest_cmtime.map_or(cmtime, |n| n.max(cmtime)));
    }

    /// Room for `n` more entries (one growth instead of many while memorizing a backup).
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Whether an entry is written by [`save`](Self::save).
    fn keep(&self, e: &FileEntry, ttl: u32) -> bool {
        // nothing memorized: every entry of this backup counts as old enough
        let newest = self.newest_cmtime.unwrap_or(i64::MAX);
        let age = e.age();
        (age == 0 && e.cmtime_ns < newest) || (age > 0 && age < ttl)
    }

    /// Write the cache to `path` (hashed under its base name); returns the digests.
    pub fn save(&self, path: &Path, ttl: u32) -> Result<Digests> {
        let name = crate::repository::integrity::base_name(path);
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut w = IntegrityWriter::new(file, &name);
        let mut buf = Vec::with_capacity(1 << 16);
        for (hash, e) in &self.entries {
            if !self.keep(e, ttl) {
                continue;
            }
            msgpack::pack_array_len(&mut buf, 2);
            msgpack::pack_raw(&mut buf, hash);
            msgpack::pack_array_len(&mut buf, 5);
            msgpack::pack_uint(&mut buf, e.age() as u64);
            msgpack::pack_uint(&mut buf, e.inode());
            msgpack::pack_uint(&mut buf, e.size);
            msgpack::pack_int(&mut buf, e.cmtime_ns);
            msgpack::pack_array_len(&mut buf, e.chunk_ids.len());
            for id in &e.chunk_ids {
                msgpack::pack_raw(&mut buf, id);
            }
            if buf.len() >= 1 << 16 {
                std::io::Write::write_all(&mut w, &buf)?;
                buf.clear();
            }
        }
        std::io::Write::write_all(&mut w, &buf)?;
        let (file, digests) = w.finish()?;
        let file = file.into_inner().map_err(|e| Error::from(e.into_error()))?;
        file.sync_all()?;
        Ok(digests)
    }

    /// Write an empty files cache (hashed); returns the digests.
    pub fn save_empty(path: &Path) -> Result<Digests> {
        FilesCache::new().save(path, DEFAULT_TTL)
    }
}

impl Default for FilesCache {
    fn default() -> Self {
        FilesCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ino: u64, size: u64, ctime: i64, mtime: i64) -> FileStat {
        FileStat {
            mode: libc::S_IFREG | 0o644,
            uid: 0,
            gid: 0,
            size,
            ino,
            dev: 1,
            nlink: 1,
            rdev: 0,
            atime_ns: 0,
            mtime_ns: mtime,
            ctime_ns: ctime,
            birthtime_ns: None,
            bsd_flags: 0,
        }
    }

    fn h(b: u8) -> ObjectId {
        [b; 32]
    }

    fn reload(c: &FilesCache, dir: &Path, ttl: u32) -> FilesCache {
        let p = dir.join("files");
        let d = c.save(&p, ttl).unwrap();
        let (back, warn) = FilesCache::load(&p, Some(&d.to_json()));
        assert_eq!(warn, None);
        back
    }

    #[test]
    fn modes_decide_unchanged() {
        let mut c = FilesCache::new();
        let cis = FilesCacheMode::from_code("cis");
        let st = stat(10, 100, 5_000, 4_000);
        c.memorize(cis, &h(1), &st, &[h(9)]);
        assert_eq!(
            c.known_and_unchanged(cis, &h(1), &st),
            (true, Some(vec![h(9)]))
        );
        assert_eq!(c.known_and_unchanged(cis, &h(2), &st), (false, None));
        // size, inode, ctime changes
        assert_eq!(
            c.known_and_unchanged(cis, &h(1), &stat(10, 101, 5_000, 4_000)),
            (true, None)
        );
        assert_eq!(
            c.known_and_unchanged(cis, &h(1), &stat(11, 100, 5_000, 4_000)),
            (true, None)
        );
        assert_eq!(
            c.known_and_unchanged(cis, &h(1), &stat(10, 100, 5_001, 4_000)),
            (true, None)
        );
        // without i: a new inode is accepted and remembered
        let cs = FilesCacheMode::from_code("cs");
        assert!(c
            .known_and_unchanged(cs, &h(1), &stat(12, 100, 5_000, 4_000))
            .1
            .is_some());
        assert_eq!(c.get(&h(1)).unwrap().inode(), 12);
        // m mode compares mtime; entries stored by m mode hold the mtime
        let ms = FilesCacheMode::from_code("ms");
        c.memorize(ms, &h(3), &st, &[]);
        assert_eq!(c.get(&h(3)).unwrap().cmtime_ns, 4_000);
        assert!(c
            .known_and_unchanged(ms, &h(3), &stat(99, 100, 1, 4_000))
            .1
            .is_some());
        assert_eq!(
            c.known_and_unchanged(ms, &h(3), &stat(99, 100, 1, 4_001)),
            (true, None)
        );
        // r and d: never known; d does not memorize
        let r = FilesCacheMode::from_code("cisr");
        assert_eq!(
            c.known_and_unchanged(r, &h(1), &stat(12, 100, 5_000, 4_000)),
            (false, None)
        );
        let d = FilesCacheMode::from_code("d");
        c.memorize(d, &h(4), &st, &[]);
        assert!(c.get(&h(4)).is_none());
        // only regular files
        let mut dir = st;
        dir.mode = libc::S_IFDIR | 0o755;
        c.memorize(cis, &h(5), &dir, &[]);
        assert!(c.get(&h(5)).is_none());
        assert_eq!(c.known_and_unchanged(cis, &h(1), &dir), (false, None));
    }

    #[test]
    fn ttl_ages_and_drops_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cis = FilesCacheMode::default();
        let mut c = FilesCache::new();
        c.memorize(cis, &h(1), &stat(1, 1, 100, 100), &[h(7)]);
        c.memorize(cis, &h(2), &stat(2, 1, 50, 50), &[]);
        // h(1) has the newest cmtime of this backup → not trusted, not saved
        let mut c = reload(&c, dir.path(), 3);
        assert!(c.get(&h(1)).is_none());
        assert_eq!(c.get(&h(2)).unwrap().age(), 1);
        // not seen for a while: aged on each load, dropped once age reaches the TTL
        for expected_age in 2..=3 {
            c = reload(&c, dir.path(), 3);
            if expected_age < 3 {
                assert_eq!(c.get(&h(2)).unwrap().age(), expected_age);
            }
        }
        assert!(
            c.get(&h(2)).is_some(),
            "age 3 is loaded, dropped at the next save"
        );
        c = reload(&c, dir.path(), 3);
        assert!(c.is_empty());
    }

    #[test]
    fn hits_reset_age_and_newest_cmtime_rule() {
        let dir = tempfile::tempdir().unwrap();
        let cis = FilesCacheMode::default();
        let mut c = FilesCache::new();
        c.memorize(cis, &h(1), &stat(1, 1, 100, 0), &[]);
        c.memorize(cis, &h(2), &stat(2, 1, 200, 0), &[]);
        let mut c = reload(&c, dir.path(), 20);
        assert!(c.get(&h(2)).is_none());
        // a hit resets the age; nothing memorized → all entries of this backup are kept
        assert!(c
            .known_and_unchanged(cis, &h(1), &stat(1, 1, 100, 0))
            .1
            .is_some());
        assert_eq!(c.get(&h(1)).unwrap().age(), 0);
        let c2 = reload(&c, dir.path(), 20);
        assert_eq!(c2.get(&h(1)).unwrap().age(), 1);
        // a memorized file with a newer cmtime makes the hit (cmtime 100) old enough,
        // and is dropped itself
        c.memorize(cis, &h(3), &stat(3, 1, 150, 0), &[]);
        let c3 = reload(&c, dir.path(), 20);
        assert!(c3.get(&h(1)).is_some());
        assert!(c3.get(&h(3)).is_none());
    }

    #[test]
    fn bytes_layout_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("files");
        let mut c = FilesCache::new();
        c.memorize(FilesCacheMode::default(), &h(1), &stat(5, 6, 7, 0), &[h(2)]);
        c.memorize(FilesCacheMode::default(), &h(9), &stat(5, 6, 8, 0), &[]);
        let d = c.save(&p, 20).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let mut expected = vec![0x92, 0xda, 0, 32];
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&[0x95, 0, 5, 6, 7, 0x91, 0xda, 0, 32]);
        expected.extend_from_slice(&[2; 32]);
        assert_eq!(bytes, expected);
        // corrupted content with digests → warning, empty cache
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let (c, warn) = FilesCache::load(&p, Some(&d.to_json()));
        assert!(c.is_empty());
        assert!(warn.unwrap().starts_with("The files cache is corrupted."));
        // garbage without digests → invalid
        std::fs::write(&p, [0x92, 0x01, 0x02]).unwrap();
        let (c, warn) = FilesCache::load(&p, None);
        assert!(c.is_empty());
        assert!(warn.unwrap().starts_with("The files cache seems invalid."));
        // missing
        let (_, warn) = FilesCache::load(&dir.path().join("nope"), None);
        assert!(warn.unwrap().starts_with("The files cache can't be read."));
    }

    #[test]
    fn bigint_cmtime() {
        let v = Value::Binary(vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0]);
        assert_eq!(cmtime_of(&v), Some(i64::MAX));
        assert_eq!(cmtime_of(&Value::from(-5)), Some(-5));
        assert_eq!(cmtime_of(&Value::Binary(vec![0xff])), Some(-1));
    }

    #[test]
    fn fast_parse_agrees_with_the_generic_decoder() {
        // An entry with a bigint-bytes cmtime (str8 raw), one with a plain int, one with
        // two chunks; then a layout the fast path refuses.
        let entry = |hash: u8, cmtime: Value, ids: Vec<Value>| {
            Value::Array(vec![
                Value::Binary(vec![hash; 32]),
                Value::Array(vec![
                    Value::from(3),
                    Value::from(77),
                    Value::from(1u64 << 40),
                    cmtime,
                    Value::Array(ids),
                ]),
            ])
        };
        let mut data = Vec::new();
        for v in [
            entry(1, Value::Binary(vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0]), vec![]),
            entry(2, Value::from(-12), vec![Value::Binary(vec![5; 32])]),
            entry(3, Value::from(9), vec![Value::Binary(vec![6; 32]); 2]),
        ] {
            msgpack::pack_into(&mut data, &v);
        }
        let fast = parse_entries(&data).unwrap();
        let mut unpacker = StreamUnpacker::new();
        unpacker.feed(&data);
        let mut generic = HashMap::new();
        while let Some(v) = unpacker.next_value().unwrap() {
            let (hash, e) = entry_of(&v).unwrap();
            generic.insert(hash, e);
        }
        assert_eq!(fast.len(), 3);
        for (hash, e) in &generic {
            let f = &fast[hash];
            assert_eq!(
                (f.age(), f.inode(), f.size, f.cmtime_ns, &f.chunk_ids),
                (e.age(), e.inode(), e.size, e.cmtime_ns, &e.chunk_ids)
            );
        }
        assert_eq!(fast[&[1u8; 32]].cmtime_ns, i64::MAX);
        msgpack::pack_into(&mut data, &Value::Array(vec![Value::from(1)]));
        assert!(parse_entries(&data).is_none());
    }
}
