//! borg's on-disk hash index (repository-format.md §3.4): an open-addressing table of
//! fixed-size buckets (key || value) kept in one flat byte vector, exactly as in the file.
//!
//! Two users: [`NsIndex`] (repository index, value = segment, offset) and [`ChunkIndex`]
//! (client cache, value = refcount, size, csize). The first u32 of every value doubles as the
//! bucket marker (`0xffffffff` empty, `0xfffffffe` deleted), so stored values are ≤ [`MAX_VALUE`].
//!
//! Growth, shrinking, tombstone handling and probing follow borg's `_hashindex.c`, so the same
//! sequence of operations produces byte-identical files.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::errors::{Error, Result};
use crate::repository::integrity::{self, Digests, IntegrityReader, IntegrityWriter};

pub const MAGIC: &[u8; 8] = b"BORG_IDX";
/// magic, num_entries (i32le), num_buckets (i32le), key_size (u8), value_size (u8).
pub const HEADER_SIZE: usize = 18;
/// Largest value storable in the first u32 of a value.
pub const MAX_VALUE: u32 = 0xffff_fbff;
const EMPTY: u32 = 0xffff_ffff;
const DELETED: u32 = 0xffff_fffe;

/// Table sizes borg uses, smallest first.
pub const HASH_SIZES: [usize; 58] = [
    1031, 2053, 4099, 8209, 16411, 32771, 65537, 131101, 262147, 445649, 757607, 1287917, 2189459,
    3065243, 4291319, 6007867, 8410991, 11775359, 16485527, 23079703, 27695653, 33234787, 39881729,
    47858071, 57429683, 68915617, 82698751, 99238507, 119086189, 144378011, 157223263, 173476439,
    190253911, 209915011, 230493629, 253169431, 278728861, 306647623, 337318939, 370742809,
    408229973, 449387209, 493428073, 543105119, 596976533, 657794869, 722676499, 795815791,
    874066969, 962279771, 1057701643, 1164002657, 1280003147, 1407800297, 1548442699, 1703765389,
    1873768367, 2062383853,
];
const HASH_MIN_LOAD: f64 = 0.25;
pub const HASH_MAX_LOAD: f64 = 0.75;
const HASH_MAX_EFF_LOAD: f64 = 0.93;

fn lower_limit(num_buckets: usize) -> usize {
    if num_buckets <= HASH_SIZES[0] {
        0
    } else {
        (num_buckets as f64 * HASH_MIN_LOAD) as usize
    }
}

fn upper_limit(num_buckets: usize) -> usize {
    if num_buckets >= HASH_SIZES[HASH_SIZES.len() - 1] {
        num_buckets
    } else {
        (num_buckets as f64 * HASH_MAX_LOAD) as usize
    }
}

/// Fewest empty (never used) buckets allowed before a same-size rebuild; never 0.
fn min_empty(num_buckets: usize) -> usize {
    1 + (num_buckets as f64 * (1.0 - HASH_MAX_EFF_LOAD)) as usize
}

/// Index of the smallest table size ≥ `size` (one past the end if none).
fn size_idx(size: usize) -> usize {
    HASH_SIZES
        .iter()
        .position(|&s| s >= size)
        .unwrap_or(HASH_SIZES.len())
}

fn fit_size(current: usize) -> usize {
    HASH_SIZES[size_idx(current).min(HASH_SIZES.len() - 1)]
}

fn grow_size(current: usize) -> usize {
    HASH_SIZES[(size_idx(current) + 1).min(HASH_SIZES.len() - 1)]
}

fn shrink_size(current: usize) -> usize {
    HASH_SIZES[size_idx(current).saturating_sub(1)]
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn bad_index(msg: impl Into<String>) -> Error {
    Error::exception(msg.into())
}

/// Where a lookup ended: at the key, or (not found) at the slot a new entry would use.
enum Probe {
    Found(usize),
    Vacant(Option<usize>),
}

/// The generic table: keys of `key_size` bytes, values of `value_size` bytes (≥ 4).
#[derive(Clone, Debug)]
pub struct HashIndex {
    buckets: Vec<u8>,
    num_entries: usize,
    num_buckets: usize,
    num_empty: usize,
    key_size: usize,
    value_size: usize,
    lower_limit: usize,
    upper_limit: usize,
    min_empty: usize,
}

impl HashIndex {
    /// An empty table with room for `capacity` buckets (rounded up to a borg table size).
    pub fn with_capacity(capacity: usize, key_size: usize, value_size: usize) -> HashIndex {
        assert!(
            value_size >= 4 && key_size >= 4,
            "hash index needs key and value of ≥ 4 bytes"
        );
        let num_buckets = fit_size(capacity);
        let bucket_size = key_size + value_size;
        let mut buckets = vec![0u8; num_buckets * bucket_size];
        for b in buckets.chunks_exact_mut(bucket_size) {
            b[key_size..key_size + 4].copy_from_slice(&EMPTY.to_le_bytes());
        }
        HashIndex {
            buckets,
            num_entries: 0,
            num_buckets,
            num_empty: num_buckets,
            key_size,
            value_size,
            lower_limit: lower_limit(num_buckets),
            upper_limit: upper_limit(num_buckets),
            min_empty: min_empty(num_buckets),
        }
    }

    /// An empty table sized so that `usable` entries fit under the maximum load (borg's
    /// `usable=` constructor argument).
    pub fn with_usable(usable: usize, key_size: usize, value_size: usize) -> HashIndex {
        HashIndex::with_capacity(
            (usable as f64 / HASH_MAX_LOAD) as usize,
            key_size,
            value_size,
        )
    }

    pub fn new(key_size: usize, value_size: usize) -> HashIndex {
        HashIndex::with_capacity(0, key_size, value_size)
    }

    pub fn len(&self) -> usize {
        self.num_entries
    }

    pub fn is_empty(&self) -> bool {
        self.num_entries == 0
    }

    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    pub fn key_size(&self) -> usize {
        self.key_size
    }

    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// Size of the table in bytes as written (header + buckets).
    pub fn size(&self) -> u64 {
        HEADER_SIZE as u64 + self.buckets.len() as u64
    }

    fn bucket_size(&self) -> usize {
        self.key_size + self.value_size
    }

    fn marker(&self, idx: usize) -> u32 {
        u32_at(&self.buckets, idx * self.bucket_size() + self.key_size)
    }

    fn set_marker(&mut self, idx: usize, m: u32) {
        let at = idx * self.bucket_size() + self.key_size;
        self.buckets[at..at + 4].copy_from_slice(&m.to_le_bytes());
    }

    fn is_used(&self, idx: usize) -> bool {
        let m = self.marker(idx);
        m != EMPTY && m != DELETED
    }

    fn key_at(&self, idx: usize) -> &[u8] {
        let at = idx * self.bucket_size();
        &self.buckets[at..at + self.key_size]
    }

    fn value_at(&self, idx: usize) -> &[u8] {
        let at = idx * self.bucket_size() + self.key_size;
        &self.buckets[at..at + self.value_size]
    }

    fn value_at_mut(&mut self, idx: usize) -> &mut [u8] {
        let at = idx * self.bucket_size() + self.key_size;
        let vs = self.value_size;
        &mut self.buckets[at..at + vs]
    }

    fn home(&self, key: &[u8]) -> usize {
        u32_at(key, 0) as usize % self.num_buckets
    }

    /// Read-only lookup (no reordering, safe to share between threads).
    fn find(&self, key: &[u8]) -> Option<usize> {
        if self.num_buckets == 0 || key.len() != self.key_size {
            return None;
        }
        let mut idx = self.home(key);
        for _ in 0..self.num_buckets {
            match self.marker(idx) {
                EMPTY => return None,
                DELETED => {}
                _ if self.key_at(idx) == key => return Some(idx),
                _ => {}
            }
            idx += 1;
            if idx == self.num_buckets {
                idx = 0;
            }
        }
        None
    }

    /// borg's lookup for mutating operations: a found entry is moved into the first tombstone
    /// met on the way; when absent, reports the first tombstone or empty bucket.
    fn probe(&mut self, key: &[u8]) -> Probe {
        if self.num_buckets == 0 {
            return Probe::Vacant(None);
        }
        let bs = self.bucket_size();
        let mut first_deleted: Option<usize> = None;
        let mut idx = self.home(key);
        for _ in 0..self.num_buckets {
            match self.marker(idx) {
                EMPTY => return Probe::Vacant(Some(first_deleted.unwrap_or(idx))),
                DELETED => {
                    // a tombstone keeps its old key bytes: never compare against it
                    first_deleted.get_or_insert(idx);
                }
                _ if self.key_at(idx) == key => {
                    if let Some(d) = first_deleted {
                        self.buckets.copy_within(idx * bs..(idx + 1) * bs, d * bs);
                        self.set_marker(idx, DELETED);
                        return Probe::Found(d);
                    }
                    return Probe::Found(idx);
                }
                _ => {}
            }
            idx += 1;
            if idx == self.num_buckets {
                idx = 0;
            }
        }
        Probe::Vacant(first_deleted)
    }

    /// Rebuild into a fresh table of (at least) `capacity` buckets, dropping tombstones.
    fn resize(&mut self, capacity: usize) {
        // inserting may grow the new table further, exactly as in borg
        let mut new = HashIndex::with_capacity(capacity, self.key_size, self.value_size);
        let bs = self.bucket_size();
        for idx in 0..self.num_buckets {
            if self.is_used(idx) {
                let b = &self.buckets[idx * bs..(idx + 1) * bs];
                new.insert(&b[..self.key_size], &b[self.key_size..]);
            }
        }
        *self = new;
    }

    /// Value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key).map(|idx| self.value_at(idx))
    }

    /// Mutable value of `key` (borg's lookup, which may move the entry into a tombstone).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut [u8]> {
        match self.probe(key) {
            Probe::Found(idx) => Some(self.value_at_mut(idx)),
            Probe::Vacant(_) => None,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    /// Insert or overwrite. The first u32 of `value` must be ≤ MAX_VALUE.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        assert_eq!(key.len(), self.key_size);
        assert_eq!(value.len(), self.value_size);
        debug_assert!(u32_at(value, 0) <= MAX_VALUE);
        let slot = match self.probe(key) {
            Probe::Found(idx) => {
                self.value_at_mut(idx).copy_from_slice(value);
                return;
            }
            Probe::Vacant(slot) => slot,
        };
        let mut slot = slot;
        if self.num_entries > self.upper_limit || slot.is_none() {
            self.resize(grow_size(self.num_buckets));
            slot = self.vacant_slot(key);
        }
        let mut idx = slot.unwrap_or(0);
        if self.marker(idx) == EMPTY {
            if self.num_empty <= self.min_empty {
                self.resize(self.num_buckets);
                idx = self.vacant_slot(key).unwrap_or(0);
            }
            self.num_empty -= 1;
        }
        let bs = self.bucket_size();
        let at = idx * bs;
        self.buckets[at..at + self.key_size].copy_from_slice(key);
        self.buckets[at + self.key_size..at + bs].copy_from_slice(value);
        self.num_entries += 1;
    }

    fn vacant_slot(&mut self, key: &[u8]) -> Option<usize> {
        match self.probe(key) {
            Probe::Vacant(s) => s,
            Probe::Found(idx) => Some(idx),
        }
    }

    /// Remove `key` (leaves a tombstone; may shrink the table). Returns whether it existed.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let Probe::Found(idx) = self.probe(key) else {
            return false;
        };
        self.set_marker(idx, DELETED);
        self.num_entries -= 1;
        if self.num_entries < self.lower_limit {
            self.resize(shrink_size(self.num_buckets));
        }
        true
    }

    /// Remove everything (back to the smallest table).
    pub fn clear(&mut self) {
        *self = HashIndex::new(self.key_size, self.value_size);
    }

    /// Entries in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.iter_from_bucket(0)
    }

    /// Entries after the bucket holding `marker` (borg's `iteritems(marker=...)`);
    /// `None` if the marker is not in the table.
    pub fn iter_after(&self, marker: &[u8]) -> Option<impl Iterator<Item = (&[u8], &[u8])> + '_> {
        self.find(marker).map(|idx| self.iter_from_bucket(idx + 1))
    }

    fn iter_from_bucket(&self, start: usize) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let bs = self.bucket_size();
        let ks = self.key_size;
        self.buckets[start.min(self.num_buckets) * bs..]
            .chunks_exact(bs)
            .filter(move |b| {
                let m = u32_at(b, ks);
                m != EMPTY && m != DELETED
            })
            .map(move |b| (&b[..ks], &b[ks..]))
    }

    /// Squeeze out empty and deleted buckets, keeping the order of entries
    /// (`num_buckets == num_entries`; the form of `chunks.archive.d/*.compact`).
    /// Returns the bytes saved. A compact table is meant to be written or iterated;
    /// inserting into it grows it back into a normal table first.
    pub fn compact(&mut self) -> u64 {
        let bs = self.bucket_size();
        let saved = ((self.num_buckets - self.num_entries) * bs) as u64;
        let mut tail = 0;
        for idx in 0..self.num_buckets {
            if self.is_used(idx) {
                if idx != tail {
                    self.buckets
                        .copy_within(idx * bs..(idx + 1) * bs, tail * bs);
                }
                tail += 1;
            }
        }
        self.buckets.truncate(tail * bs);
        self.buckets.shrink_to_fit();
        self.num_buckets = self.num_entries;
        self.num_empty = 0;
        self.lower_limit = lower_limit(self.num_buckets);
        self.upper_limit = upper_limit(self.num_buckets);
        self.min_empty = min_empty(self.num_buckets);
        saved
    }

    /// Read a table. `expect` = (key_size, value_size) the caller's value layout needs.
    /// Without `permit_compact` a table short of empty buckets is rebuilt (as borg).
    pub fn read<R: Read + Seek>(
        rd: &mut IntegrityReader<R>,
        expect: (usize, usize),
        permit_compact: bool,
    ) -> Result<HashIndex> {
        let mut header = [0u8; HEADER_SIZE];
        let got = read_full(rd, &mut header)?;
        if got != HEADER_SIZE {
            return Err(bad_index(format!(
                "Could not read header (expected {HEADER_SIZE}, but read {got} bytes)"
            )));
        }
        rd.hash_part("HashHeader")?;
        let length = rd.file_len()?;
        if &header[..8] != MAGIC {
            return Err(bad_index("Unknown MAGIC in header"));
        }
        let num_entries = i32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let num_buckets = i32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let (key_size, value_size) = (header[16] as usize, header[17] as usize);
        let buckets_len = num_buckets as i64 * (key_size + value_size) as i64;
        if length as i64 != HEADER_SIZE as i64 + buckets_len || num_buckets < 0 {
            return Err(bad_index(format!(
                "Incorrect file length (expected {}, got {length})",
                HEADER_SIZE as i64 + buckets_len
            )));
        }
        if (key_size, value_size) != expect {
            return Err(bad_index(format!(
                "Unexpected key/value size {key_size}/{value_size} (expected {}/{})",
                expect.0, expect.1
            )));
        }
        let (num_entries, num_buckets) = (num_entries.max(0) as usize, num_buckets as usize);
        let mut buckets = vec![0u8; buckets_len as usize];
        let got = read_full(rd, &mut buckets)?;
        if got != buckets.len() {
            return Err(bad_index(format!(
                "Could not read buckets (expected {buckets_len}, got {got})"
            )));
        }
        let mut index = HashIndex {
            buckets,
            num_entries,
            num_buckets,
            num_empty: 0,
            key_size,
            value_size,
            lower_limit: lower_limit(num_buckets),
            upper_limit: upper_limit(num_buckets),
            min_empty: min_empty(num_buckets),
        };
        index.validate()?;
        if !permit_compact && index.num_empty < index.min_empty {
            index.resize(index.num_buckets);
        }
        Ok(index)
    }

    /// Count empty buckets and check the markers and the entry count.
    fn validate(&mut self) -> Result<()> {
        let (mut used, mut empty) = (0usize, 0usize);
        for idx in 0..self.num_buckets {
            match self.marker(idx) {
                EMPTY => empty += 1,
                DELETED => {}
                m if m > MAX_VALUE => {
                    return Err(bad_index(format!("Invalid value {m:#x} in bucket {idx}")));
                }
                _ => used += 1,
            }
        }
        if used != self.num_entries {
            return Err(bad_index(format!(
                "Incorrect number of entries (header {}, found {used})",
                self.num_entries
            )));
        }
        if self.num_buckets > 0 && empty == 0 && used < self.num_buckets {
            // only tombstones and entries: lookups of absent keys would never end; rebuild
            self.num_empty = 0;
            self.resize(self.num_buckets);
            return Ok(());
        }
        self.num_empty = empty;
        Ok(())
    }

    /// Write header and buckets, with the `HashHeader` digest part after the header.
    pub fn write<W: Write>(&self, w: &mut IntegrityWriter<W>) -> Result<()> {
        let mut header = [0u8; HEADER_SIZE];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(self.num_entries as i32).to_le_bytes());
        header[12..16].copy_from_slice(&(self.num_buckets as i32).to_le_bytes());
        header[16] = self.key_size as u8;
        header[17] = self.value_size as u8;
        w.write_all(&header)?;
        w.hash_part("HashHeader");
        w.write_all(&self.buckets)?;
        Ok(())
    }

    /// Read `path`, verifying it against digest JSON if given. `filename` overrides the hashed
    /// base name.
    pub fn read_path(
        path: &Path,
        expect: (usize, usize),
        filename: Option<&str>,
        integrity_json: Option<&str>,
        permit_compact: bool,
    ) -> Result<HashIndex> {
        let shown = path.display().to_string();
        let digests = match integrity_json {
            Some(j) => Digests::parse(&shown, j)?,
            None => None,
        };
        Self::read_path_with(path, expect, filename, digests, permit_compact)
    }

    /// Read `path`, verifying it against its `<path>.integrity` side file if present.
    pub fn read_path_detached(
        path: &Path,
        expect: (usize, usize),
        permit_compact: bool,
    ) -> Result<HashIndex> {
        let digests = integrity::read_detached(path)?;
        Self::read_path_with(path, expect, None, digests, permit_compact)
    }

    fn read_path_with(
        path: &Path,
        expect: (usize, usize),
        filename: Option<&str>,
        digests: Option<Digests>,
        permit_compact: bool,
    ) -> Result<HashIndex> {
        let shown = path.display().to_string();
        let name = filename
            .map(str::to_string)
            .unwrap_or_else(|| integrity::base_name(path));
        let file = BufReader::with_capacity(1 << 20, File::open(path)?);
        let mut rd = IntegrityReader::new(file, &shown, &name, digests);
        let index = HashIndex::read(&mut rd, expect, permit_compact)?;
        rd.finish()?;
        Ok(index)
    }

    /// Write to `path` (created/truncated, fsync'ed) hashing it under `filename` (default:
    /// the base name of `path`); returns the digests.
    pub fn write_path(&self, path: &Path, filename: Option<&str>) -> Result<Digests> {
        let name = filename
            .map(str::to_string)
            .unwrap_or_else(|| integrity::base_name(path));
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut w = IntegrityWriter::new(file, &name);
        self.write(&mut w)?;
        let (file, digests) = w.finish()?;
        let file = file.into_inner().map_err(|e| Error::from(e.into_error()))?;
        file.sync_all()?;
        Ok(digests)
    }

    /// Write to `path` plus its `<path>.integrity` side file.
    pub fn write_path_detached(&self, path: &Path) -> Result<()> {
        let digests = self.write_path(path, None)?;
        integrity::write_detached(path, &digests)
    }
}

/// Read until `buf` is full or EOF; returns the number of bytes read.
fn read_full<R: Read>(rd: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match rd.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

/// A 32-byte key.
pub type Key = [u8; 32];

fn key_of(b: &[u8]) -> Key {
    let mut k = [0u8; 32];
    k.copy_from_slice(b);
    k
}

/// Repository index: object id → (segment, offset).
#[derive(Clone, Debug)]
pub struct NsIndex(HashIndex);

impl Default for NsIndex {
    fn default() -> Self {
        NsIndex::new()
    }
}

impl NsIndex {
    #[cfg(test)]
    fn get_mut_moves(&mut self, key: &Key) -> bool {
        self.0.get_mut(key).is_some()
    }

    pub const KEY_SIZE: usize = 32;
    pub const VALUE_SIZE: usize = 8;

    pub fn new() -> NsIndex {
        NsIndex(HashIndex::new(Self::KEY_SIZE, Self::VALUE_SIZE))
    }

    pub fn with_usable(usable: usize) -> NsIndex {
        NsIndex(HashIndex::with_usable(
            usable,
            Self::KEY_SIZE,
            Self::VALUE_SIZE,
        ))
    }

    pub fn raw(&self) -> &HashIndex {
        &self.0
    }

    fn decode(v: &[u8]) -> (u32, u32) {
        (u32_at(v, 0), u32_at(v, 4))
    }

    pub fn get(&self, key: &Key) -> Option<(u32, u32)> {
        self.0.get(key).map(Self::decode)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.0.contains(key)
    }

    /// Lookup as borg's mutating one: a found entry moves into the first tombstone on its
    /// probe path (keeps written files identical to borg's after the same operations).
    pub fn get_reordering(&mut self, key: &Key) -> Option<(u32, u32)> {
        self.0.get_mut(key).map(|v| Self::decode(v))
    }

    /// Set the location of `key`. `segment` must be ≤ MAX_VALUE.
    pub fn insert(&mut self, key: &Key, segment: u32, offset: u32) {
        assert!(segment <= MAX_VALUE, "maximum number of segments reached");
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&segment.to_le_bytes());
        v[4..].copy_from_slice(&offset.to_le_bytes());
        self.0.insert(key, &v);
    }

    /// Remove `key`, returning its old location (borg's `pop`).
    pub fn remove(&mut self, key: &Key) -> Option<(u32, u32)> {
        let v = self.0.get_mut(key).map(|v| Self::decode(v))?;
        self.0.remove(key);
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn size(&self) -> u64 {
        self.0.size()
    }

    pub fn clear(&mut self) {
        self.0.clear()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, (u32, u32))> + '_ {
        self.0.iter().map(|(k, v)| (key_of(k), Self::decode(v)))
    }

    /// Entries after `marker` in table order; `None` if the marker is absent.
    pub fn iter_after(&self, marker: &Key) -> Option<impl Iterator<Item = (Key, (u32, u32))> + '_> {
        self.0
            .iter_after(marker)
            .map(|it| it.map(|(k, v)| (key_of(k), Self::decode(v))))
    }

    pub fn read<R: Read + Seek>(rd: &mut IntegrityReader<R>) -> Result<NsIndex> {
        HashIndex::read(rd, (Self::KEY_SIZE, Self::VALUE_SIZE), false).map(NsIndex)
    }

    pub fn read_path(
        path: &Path,
        filename: Option<&str>,
        integrity_json: Option<&str>,
    ) -> Result<NsIndex> {
        HashIndex::read_path(
            path,
            (Self::KEY_SIZE, Self::VALUE_SIZE),
            filename,
            integrity_json,
            false,
        )
        .map(NsIndex)
    }

    pub fn write_path(&self, path: &Path, filename: Option<&str>) -> Result<Digests> {
        self.0.write_path(path, filename)
    }
}

/// Cache entry: how many archives reference a chunk, its plain size and stored size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkIndexEntry {
    pub refcount: u32,
    pub size: u32,
    pub csize: u32,
}

/// Totals over a chunk index, as borg's `ChunkIndex.summarize()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkSummary {
    pub total_size: u64,
    pub total_csize: u64,
    pub unique_size: u64,
    pub unique_csize: u64,
    pub total_unique_chunks: u64,
    pub total_chunks: u64,
}

/// Client cache index: chunk id → (refcount, size, csize).
#[derive(Clone, Debug)]
pub struct ChunkIndex(HashIndex);

impl Default for ChunkIndex {
    fn default() -> Self {
        ChunkIndex::new()
    }
}

impl ChunkIndex {
    pub const KEY_SIZE: usize = 32;
    pub const VALUE_SIZE: usize = 12;
    pub const MAX_VALUE: u32 = MAX_VALUE;

    pub fn new() -> ChunkIndex {
        ChunkIndex(HashIndex::new(Self::KEY_SIZE, Self::VALUE_SIZE))
    }

    pub fn with_usable(usable: usize) -> ChunkIndex {
        ChunkIndex(HashIndex::with_usable(
            usable,
            Self::KEY_SIZE,
            Self::VALUE_SIZE,
        ))
    }

    pub fn raw(&self) -> &HashIndex {
        &self.0
    }

    fn decode(v: &[u8]) -> ChunkIndexEntry {
        ChunkIndexEntry {
            refcount: u32_at(v, 0),
            size: u32_at(v, 4),
            csize: u32_at(v, 8),
        }
    }

    fn encode(e: ChunkIndexEntry) -> [u8; 12] {
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&e.refcount.to_le_bytes());
        v[4..8].copy_from_slice(&e.size.to_le_bytes());
        v[8..].copy_from_slice(&e.csize.to_le_bytes());
        v
    }

    pub fn get(&self, key: &Key) -> Option<ChunkIndexEntry> {
        self.0.get(key).map(Self::decode)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.0.contains(key)
    }

    /// Set an entry; the refcount is clamped to MAX_VALUE.
    pub fn insert(&mut self, key: &Key, mut entry: ChunkIndexEntry) {
        entry.refcount = entry.refcount.min(MAX_VALUE);
        self.0.insert(key, &Self::encode(entry));
    }

    pub fn remove(&mut self, key: &Key) -> Option<ChunkIndexEntry> {
        let v = self.0.get_mut(key).map(|v| Self::decode(v))?;
        self.0.remove(key);
        Some(v)
    }

    /// Increase the refcount (it sticks at MAX_VALUE); `None` if absent.
    pub fn incref(&mut self, key: &Key) -> Option<ChunkIndexEntry> {
        let v = self.0.get_mut(key)?;
        let mut e = Self::decode(v);
        if e.refcount < MAX_VALUE {
            e.refcount += 1;
        }
        v[..4].copy_from_slice(&e.refcount.to_le_bytes());
        Some(e)
    }

    /// Decrease the refcount (MAX_VALUE sticks, 0 stays 0); `None` if absent.
    pub fn decref(&mut self, key: &Key) -> Option<ChunkIndexEntry> {
        let v = self.0.get_mut(key)?;
        let mut e = Self::decode(v);
        if e.refcount != MAX_VALUE && e.refcount > 0 {
            e.refcount -= 1;
        }
        v[..4].copy_from_slice(&e.refcount.to_le_bytes());
        Some(e)
    }

    /// Add `refs` references (saturating at MAX_VALUE) and take the new size/csize;
    /// insert if absent (borg's `add`).
    pub fn add(&mut self, key: &Key, refs: u32, size: u32, csize: u32) {
        if let Some(v) = self.0.get_mut(key) {
            let old = u32_at(v, 0) as u64;
            let sum = (old + refs.min(MAX_VALUE) as u64).min(MAX_VALUE as u64) as u32;
            let e = ChunkIndexEntry {
                refcount: sum,
                size,
                csize,
            };
            v.copy_from_slice(&Self::encode(e));
        } else {
            self.insert(
                key,
                ChunkIndexEntry {
                    refcount: refs,
                    size,
                    csize,
                },
            );
        }
    }

    /// Add every entry of `other` (borg's `merge`).
    pub fn merge(&mut self, other: &ChunkIndex) {
        for (k, v) in other.0.iter() {
            let e = Self::decode(v);
            self.add(&key_of(k), e.refcount, e.size, e.csize);
        }
    }

    pub fn summarize(&self) -> ChunkSummary {
        let mut s = ChunkSummary::default();
        for (_, v) in self.0.iter() {
            let e = Self::decode(v);
            s.total_unique_chunks += 1;
            s.total_chunks += e.refcount as u64;
            s.unique_size += e.size as u64;
            s.unique_csize += e.csize as u64;
            s.total_size += e.size as u64 * e.refcount as u64;
            s.total_csize += e.csize as u64 * e.refcount as u64;
        }
        s
    }

    /// Statistics of this (sub)index against `master` (borg's `stats_against`): a chunk is
    /// unique when its refcount here equals the master's. Error if a key is missing there.
    pub fn stats_against(&self, master: &ChunkIndex) -> Result<ChunkSummary> {
        let mut s = ChunkSummary::default();
        for (k, v) in self.0.iter() {
            let ours = Self::decode(v);
            let m = master.0.get(k).map(Self::decode).ok_or_else(|| {
                Error::exception("stats_against: key contained in self but not in master_index.")
            })?;
            s.total_chunks += ours.refcount as u64;
            s.total_size += m.size as u64 * ours.refcount as u64;
            s.total_csize += m.csize as u64 * ours.refcount as u64;
            if ours.refcount == m.refcount {
                s.total_unique_chunks += 1;
                s.unique_size += m.size as u64;
                s.unique_csize += m.csize as u64;
            }
        }
        Ok(s)
    }

    /// Ids whose csize is 0.
    pub fn zero_csize_ids(&self) -> Vec<Key> {
        self.0
            .iter()
            .filter(|(_, v)| u32_at(v, 8) == 0)
            .map(|(k, _)| key_of(k))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn size(&self) -> u64 {
        self.0.size()
    }

    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// See [`HashIndex::compact`].
    pub fn compact(&mut self) -> u64 {
        self.0.compact()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, ChunkIndexEntry)> + '_ {
        self.0.iter().map(|(k, v)| (key_of(k), Self::decode(v)))
    }

    pub fn read<R: Read + Seek>(
        rd: &mut IntegrityReader<R>,
        permit_compact: bool,
    ) -> Result<ChunkIndex> {
        HashIndex::read(rd, (Self::KEY_SIZE, Self::VALUE_SIZE), permit_compact).map(ChunkIndex)
    }

    /// Read the cache's `chunks` file (digests from the cache config, if any).
    pub fn read_path(
        path: &Path,
        integrity_json: Option<&str>,
        permit_compact: bool,
    ) -> Result<ChunkIndex> {
        HashIndex::read_path(
            path,
            (Self::KEY_SIZE, Self::VALUE_SIZE),
            None,
            integrity_json,
            permit_compact,
        )
        .map(ChunkIndex)
    }

    /// Read a `chunks.archive.d` file, verified by its `.integrity` side file.
    pub fn read_path_detached(path: &Path, permit_compact: bool) -> Result<ChunkIndex> {
        HashIndex::read_path_detached(path, (Self::KEY_SIZE, Self::VALUE_SIZE), permit_compact)
            .map(ChunkIndex)
    }

    pub fn write_path(&self, path: &Path, filename: Option<&str>) -> Result<Digests> {
        self.0.write_path(path, filename)
    }

    pub fn write_path_detached(&self, path: &Path) -> Result<()> {
        self.0.write_path_detached(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn key(i: u64) -> Key {
        // spread like sha256 output: a cheap mixer over the counter
        let mut k = [0u8; 32];
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1234_5678;
        for c in k.chunks_mut(8) {
            x ^= x >> 31;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            c.copy_from_slice(&x.to_le_bytes());
        }
        k
    }

    fn to_bytes(idx: &HashIndex, name: &str) -> (Vec<u8>, Digests) {
        let mut w = IntegrityWriter::new(Vec::new(), name);
        idx.write(&mut w).unwrap();
        w.finish().unwrap()
    }

    fn from_bytes(
        data: Vec<u8>,
        name: &str,
        d: Option<Digests>,
        expect: (usize, usize),
        compact: bool,
    ) -> Result<HashIndex> {
        let mut rd = IntegrityReader::new(Cursor::new(data), name, name, d);
        let i = HashIndex::read(&mut rd, expect, compact)?;
        rd.finish()?;
        Ok(i)
    }

    #[test]
    fn limits_match_borg() {
        assert_eq!(fit_size(0), 1031);
        assert_eq!(fit_size(1031), 1031);
        assert_eq!(fit_size(1032), 2053);
        assert_eq!(grow_size(1031), 2053);
        assert_eq!(shrink_size(2053), 1031);
        assert_eq!(shrink_size(1031), 1031);
        assert_eq!(upper_limit(1031), 773);
        assert_eq!(lower_limit(1031), 0);
        assert_eq!(lower_limit(2053), 513);
        assert_eq!(min_empty(1031), 73);
        assert_eq!(HashIndex::with_usable(1000, 32, 8).num_buckets(), 2053);
    }

    #[test]
    fn insert_get_remove_grow_shrink() {
        let mut idx = NsIndex::new();
        for i in 0..10_000u64 {
            idx.insert(&key(i), i as u32, (i * 2) as u32);
        }
        assert_eq!(idx.len(), 10_000);
        assert_eq!(idx.raw().num_buckets(), 16411);
        for i in 0..10_000u64 {
            assert_eq!(idx.get(&key(i)), Some((i as u32, (i * 2) as u32)));
        }
        assert_eq!(idx.get(&key(10_001)), None);
        idx.insert(&key(5), 7, 7);
        assert_eq!(idx.get(&key(5)), Some((7, 7)));
        assert_eq!(idx.len(), 10_000);
        for i in 0..9_000u64 {
            assert!(idx.remove(&key(i)).is_some());
        }
        assert!(idx.remove(&key(1)).is_none());
        assert_eq!(idx.len(), 1000);
        assert!(idx.raw().num_buckets() < 16411);
        for i in 9_000..10_000u64 {
            assert_eq!(idx.get(&key(i)), Some((i as u32, (i * 2) as u32)));
        }
        assert_eq!(idx.iter().count(), 1000);
    }

    #[test]
    fn tombstones_never_match_and_get_reused() {
        // three keys with the same home bucket
        let k = |b: u8| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&7u32.to_le_bytes());
            k[31] = b;
            k
        };
        let mut idx = NsIndex::new();
        for b in 1..=3 {
            idx.insert(&k(b), b as u32, 0);
        }
        assert_eq!(idx.remove(&k(1)), Some((1, 0)));
        assert_eq!(idx.remove(&k(2)), Some((2, 0)));
        assert!(!idx.contains(&k(2)));
        idx.insert(&k(2), 9, 9);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.get(&k(2)), Some((9, 9)));
        // borg moves a found entry into the first tombstone on its probe path
        assert_eq!(idx.raw().marker(7), 9);
        assert!(idx.get_mut_moves(&k(3)));
        assert_eq!(idx.get(&k(3)), Some((3, 0)));
        assert_eq!(idx.iter().count(), 2);
    }

    /// The same operations as borg's own hash index must give byte-identical files
    /// (needs a Python with borg installed; skipped otherwise).
    #[test]
    fn same_operations_same_bytes_as_borg() {
        const SCRIPT: &str = "import hashlib, sys
from borg.hashindex import NSIndex, ChunkIndex
def k(i): return hashlib.sha256(str(i).encode()).digest()
idx = NSIndex()
live = set()
for i in range(5000): idx[k(i)] = (i, i*2); live.add(i)
for i in range(0, 5000, 3): del idx[k(i)]; live.discard(i)
for i in range(0, 3000, 6): idx[k(i)] = (7, 7); live.add(i)
for i in range(5000, 9000): idx[k(i)] = (1, 1); live.add(i)
for i in range(0, 8500):
    if i in live and i % 5: del idx[k(i)]; live.discard(i)
idx[k(1)] = (3, 3)
idx.write(sys.argv[1])
c = ChunkIndex()
for i in range(3000): c[k(i)] = (1, i, i//2)
for i in range(0, 3000, 2): del c[k(i)]
c.compact()
c.write(sys.argv[2])
";
        let dir = tempfile::tempdir().unwrap();
        let (ns_path, ch_path) = (dir.path().join("ns"), dir.path().join("ch"));
        // the Python that runs borg (from the shebang of the `borg` script in PATH)
        let python = std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("borg"))
                    .find(|b| b.is_file())
            })
            .and_then(|b| std::fs::read_to_string(b).ok())
            .and_then(|t| {
                t.lines()
                    .next()
                    .and_then(|l| l.strip_prefix("#!"))
                    .map(|l| l.trim().to_string())
            })
            .unwrap_or_else(|| "python3".to_string());
        let ran = std::process::Command::new(python)
            .args(["-c", SCRIPT])
            .arg(&ns_path)
            .arg(&ch_path)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ran {
            eprintln!("skipping: no python3 with borg.hashindex");
            return;
        }
        use sha2::Digest;
        let k = |i: u64| -> Key { sha2::Sha256::digest(i.to_string().as_bytes()).into() };
        let mut idx = NsIndex::new();
        let mut live = std::collections::HashSet::new();
        for i in 0..5000u64 {
            idx.insert(&k(i), i as u32, (i * 2) as u32);
            live.insert(i);
        }
        for i in (0..5000u64).step_by(3) {
            assert!(idx.remove(&k(i)).is_some());
            live.remove(&i);
        }
        for i in (0..3000u64).step_by(6) {
            idx.insert(&k(i), 7, 7);
            live.insert(i);
        }
        for i in 5000..9000u64 {
            idx.insert(&k(i), 1, 1);
            live.insert(i);
        }
        for i in 0..8500u64 {
            if live.contains(&i) && i % 5 != 0 {
                idx.remove(&k(i));
                live.remove(&i);
            }
        }
        idx.insert(&k(1), 3, 3);
        let (ours, _) = to_bytes(idx.raw(), "ns");
        assert_eq!(ours, std::fs::read(&ns_path).unwrap());
        let mut c = ChunkIndex::new();
        for i in 0..3000u64 {
            c.insert(
                &k(i),
                ChunkIndexEntry {
                    refcount: 1,
                    size: i as u32,
                    csize: (i / 2) as u32,
                },
            );
        }
        for i in (0..3000u64).step_by(2) {
            c.remove(&k(i));
        }
        c.compact();
        let (ours, _) = to_bytes(c.raw(), "ch");
        assert_eq!(ours, std::fs::read(&ch_path).unwrap());
    }

    #[test]
    fn tombstone_churn_stays_bounded() {
        // many insert/delete cycles at constant size must trigger same-size rebuilds, not loops
        let mut idx = HashIndex::new(32, 8);
        for round in 0..50u64 {
            for i in 0..600u64 {
                idx.insert(&key(round * 1000 + i), &[1, 0, 0, 0, 0, 0, 0, 0]);
            }
            for i in 0..600u64 {
                assert!(idx.remove(&key(round * 1000 + i)));
            }
        }
        assert_eq!(idx.len(), 0);
        assert!(!idx.contains(&key(3)));
    }

    #[test]
    fn file_roundtrip_with_digests() {
        let mut idx = NsIndex::new();
        for i in 0..100u64 {
            idx.insert(&key(i), 1, 8 + i as u32);
        }
        let (bytes, d) = to_bytes(idx.raw(), "index.1");
        assert_eq!(bytes.len(), 18 + 1031 * 40);
        assert_eq!(&bytes[..8], b"BORG_IDX");
        assert_eq!(&bytes[8..18], &[100, 0, 0, 0, 7, 4, 0, 0, 32, 8]);
        assert!(d.get("HashHeader").is_some());
        let back = from_bytes(bytes.clone(), "index.1", Some(d.clone()), (32, 8), false).unwrap();
        assert_eq!(back.buckets, idx.raw().buckets);
        // corrupt one bucket byte → final digest mismatch
        let mut bad = bytes.clone();
        bad[100] ^= 0x55;
        let e = from_bytes(bad, "index.1", Some(d.clone()), (32, 8), false).unwrap_err();
        assert!(e.is(crate::errors::ErrorKind::FileIntegrityError));
        // corrupt the header → HashHeader mismatch before reading buckets
        let mut bad = bytes.clone();
        bad[13] = 0x7f;
        assert!(from_bytes(bad, "index.1", Some(d), (32, 8), false).is_err());
    }

    #[test]
    fn bad_files_are_errors() {
        let idx = HashIndex::new(32, 8);
        let (bytes, _) = to_bytes(&idx, "x");
        for bad in [
            bytes[..10].to_vec(),
            bytes[..bytes.len() - 1].to_vec(),
            [bytes.clone(), vec![0]].concat(),
            [b"BORG_IDY".to_vec(), bytes[8..].to_vec()].concat(),
        ] {
            assert!(from_bytes(bad, "x", None, (32, 8), false).is_err());
        }
        // wrong value size for the caller
        assert!(from_bytes(bytes.clone(), "x", None, (32, 12), false).is_err());
        // negative bucket count
        let mut neg = bytes.clone();
        neg[12..16].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(from_bytes(neg, "x", None, (32, 8), false).is_err());
        // header claims an entry that is not there
        let mut lie = bytes.clone();
        lie[8] = 1;
        assert!(from_bytes(lie, "x", None, (32, 8), false).is_err());
        // reserved marker value in a bucket
        let mut res = bytes;
        res[18 + 32..18 + 36].copy_from_slice(&0xffff_fc00u32.to_le_bytes());
        assert!(from_bytes(res, "x", None, (32, 8), false).is_err());
    }

    #[test]
    fn compact_form_roundtrip_and_merge() {
        let mut a = ChunkIndex::new();
        for i in 0..50u64 {
            a.insert(
                &key(i),
                ChunkIndexEntry {
                    refcount: 1,
                    size: 100,
                    csize: 50,
                },
            );
        }
        let order: Vec<Key> = a.iter().map(|(k, _)| k).collect();
        let saved = a.compact();
        assert_eq!(saved, (1031 - 50) * 44);
        assert_eq!(a.raw().num_buckets(), 50);
        assert_eq!(a.iter().map(|(k, _)| k).collect::<Vec<_>>(), order);
        let (bytes, d) = to_bytes(a.raw(), "aa.compact");
        assert_eq!(bytes.len(), 18 + 50 * 44);
        let back = ChunkIndex(from_bytes(bytes, "aa.compact", Some(d), (32, 12), true).unwrap());
        assert_eq!(back.len(), 50);
        // lookups work on the compact form too (no empty bucket to stop at)
        assert!(back.contains(&key(3)));
        assert!(!back.contains(&key(999)));
        let mut master = ChunkIndex::new();
        master.insert(
            &key(0),
            ChunkIndexEntry {
                refcount: MAX_VALUE - 1,
                size: 1,
                csize: 1,
            },
        );
        master.merge(&back);
        master.merge(&back);
        assert_eq!(master.len(), 50);
        assert_eq!(
            master.get(&key(0)).unwrap(),
            ChunkIndexEntry {
                refcount: MAX_VALUE,
                size: 100,
                csize: 50
            }
        );
        assert_eq!(master.get(&key(1)).unwrap().refcount, 2);
        // inserting into a compact table turns it back into a normal one
        let mut c = back.clone();
        c.insert(
            &key(1000),
            ChunkIndexEntry {
                refcount: 1,
                size: 1,
                csize: 1,
            },
        );
        assert_eq!(c.len(), 51);
        assert!(c.raw().num_buckets() >= 1031);
        assert!(c.contains(&key(3)) && c.contains(&key(1000)));
    }

    #[test]
    fn summarize_like_borg() {
        let mut c = ChunkIndex::new();
        c.insert(
            &key(1),
            ChunkIndexEntry {
                refcount: 2,
                size: 10,
                csize: 5,
            },
        );
        c.insert(
            &key(2),
            ChunkIndexEntry {
                refcount: 1,
                size: 7,
                csize: 3,
            },
        );
        let s = c.summarize();
        assert_eq!(
            s,
            ChunkSummary {
                total_size: 27,
                total_csize: 13,
                unique_size: 17,
                unique_csize: 8,
                total_unique_chunks: 2,
                total_chunks: 3
            }
        );
        let mut sub = ChunkIndex::new();
        sub.insert(
            &key(1),
            ChunkIndexEntry {
                refcount: 1,
                size: 0,
                csize: 0,
            },
        );
        sub.insert(
            &key(2),
            ChunkIndexEntry {
                refcount: 1,
                size: 0,
                csize: 0,
            },
        );
        let s = sub.stats_against(&c).unwrap();
        assert_eq!(
            (
                s.total_chunks,
                s.total_unique_chunks,
                s.unique_size,
                s.total_size
            ),
            (2, 1, 7, 17)
        );
        assert_eq!(c.incref(&key(2)).unwrap().refcount, 2);
        assert_eq!(c.decref(&key(2)).unwrap().refcount, 1);
        assert!(c.incref(&key(9)).is_none());
        c.insert(
            &key(3),
            ChunkIndexEntry {
                refcount: 1,
                size: 1,
                csize: 0,
            },
        );
        assert_eq!(c.zero_csize_ids(), vec![key(3)]);
    }

    #[test]
    fn iter_after_marker() {
        let mut idx = NsIndex::new();
        for i in 0..20u64 {
            idx.insert(&key(i), 0, i as u32);
        }
        let all: Vec<Key> = idx.iter().map(|(k, _)| k).collect();
        let rest: Vec<Key> = idx.iter_after(&all[4]).unwrap().map(|(k, _)| k).collect();
        assert_eq!(rest, all[5..].to_vec());
        assert!(idx.iter_after(&key(99)).is_none());
    }
}
