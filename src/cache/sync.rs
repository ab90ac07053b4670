//! Rebuilding the chunks index from the archives (borg's `LocalCache.sync`), with the
//! per-archive indexes of `chunks.archive.d` so every archive is read only once.
//!
//! An archive's index holds its metadata object, its item-stream chunks and one reference per
//! chunk reference of its items. New archives are read in parallel; the master index is the
//! merge of all archive indexes, in manifest order.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rmpv::Value;

use crate::archive::prefetch::{prefetch, DEFAULT_BUDGET};
use crate::archive::{Archive, ArchiveInfo};
use crate::crypto::Key;
use crate::errors::{Error, Result};
use crate::hashindex::{ChunkIndex, ChunkIndexEntry};
use crate::msgpack::{StreamUnpacker, ValueExt};
use crate::output::progress::ProgressPercent;
use crate::output::{self, Level};
use crate::repository::integrity;
use crate::repository::{ObjectId, Repository};

use super::stats::ItemTotals;

pub(super) const LOGGER: &str = "borg.cache";

pub(super) fn log_info(msg: &str) {
    output::log(Level::Info, LOGGER, msg, None);
}

/// One archive's chunk references, as the sync reads them.
pub struct ArchiveIndex {
    pub archive: Archive,
    pub index: ChunkIndex,
    /// Totals over the items (what borg computes for archives without 1.2 statistics).
    pub item_totals: ItemTotals,
}

/// An item's chunk references (id, size, csize) if it has a `chunks` list, and whether it is
/// a part file (has `part`).
pub(crate) type ItemChunkRefs = (Option<Vec<(ObjectId, u32, u32)>>, bool);

/// The chunk references of one item value.
fn item_chunks(v: &Value) -> Result<ItemChunkRefs> {
    let bad = |what: &str| Error::integrity(format!("invalid item in item stream: {what}"));
    let entries = v.as_entries().ok_or_else(|| bad("not a map"))?;
    let mut chunks = None;
    let mut part = false;
    for (k, val) in entries {
        match k.as_bytes() {
            Some(b"chunks") => {
                let list = val.as_list().ok_or_else(|| bad("chunks"))?;
                let mut out = Vec::with_capacity(list.len());
                for c in list {
                    let t = c.as_list().ok_or_else(|| bad("chunk entry"))?;
                    let [id, size, csize] = t else {
                        return Err(bad("chunk entry"));
                    };
                    let id = id
                        .as_bytes()
                        .and_then(|b| ObjectId::try_from(b).ok())
                        .ok_or_else(|| bad("chunk id"))?;
                    let size = size.as_uint().ok_or_else(|| bad("chunk size"))?;
                    let csize = csize.as_uint().ok_or_else(|| bad("chunk csize"))?;
                    out.push((id, size as u32, csize as u32));
                }
                chunks = Some(out);
            }
            Some(b"part") => part = true,
            _ => {}
        }
    }
    Ok((chunks, part))
}

/// Count one chunk reference the way borg's cache synchronizer does: a known chunk keeps its
/// sizes and gains a reference (saturating), an unknown one is inserted.
fn add_reference(index: &mut ChunkIndex, id: &ObjectId, size: u32, csize: u32) {
    if index.incref(id).is_none() {
        index.insert(
            id,
            ChunkIndexEntry {
                refcount: 1,
                size,
                csize,
            },
        );
    }
}

/// Decoded item values of an archive's item stream, with each item-stream chunk's id and
/// lengths reported before the items it completes (borg's order of processing).
pub(crate) struct ItemStream {
    chunks: crate::archive::prefetch::Prefetch,
    ids: std::vec::IntoIter<ObjectId>,
    unpacker: StreamUnpacker,
}

/// What the item stream yields next.
pub(crate) enum StreamEvent {
    /// An item-stream chunk was fetched: (id, plaintext length, stored length).
    Chunk(ObjectId, usize, usize),
    Item(Value),
}

impl ItemStream {
    pub(crate) fn new(repo: &Arc<dyn Repository>, key: &Arc<Key>, ids: &[ObjectId]) -> Self {
        let hinted: Vec<(ObjectId, u64)> = ids.iter().map(|id| (*id, 512 * 1024)).collect();
        let ids: Vec<ObjectId> = ids.to_vec();
        ItemStream {
            chunks: prefetch(repo.clone(), key.clone(), hinted, DEFAULT_BUDGET / 4),
            ids: ids.into_iter(),
            unpacker: StreamUnpacker::new(),
        }
    }

    pub(crate) fn next_event(&mut self) -> Option<Result<StreamEvent>> {
        match self.unpacker.next_value() {
            Ok(Some(v)) => return Some(Ok(StreamEvent::Item(v))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        let id = self.ids.next()?;
        match self.chunks.next() {
            Some(Ok((data, stored_len))) => {
                self.unpacker.feed(&data);
                let plain_len = data.len();
                crate::archive::prefetch::recycle(data);
                Some(Ok(StreamEvent::Chunk(id, plain_len, stored_len)))
            }
            Some(Err(e)) => Some(Err(e)),
            None => Some(Err(crate::archive::prefetch::fetch_stopped())),
        }
    }
}

/// Read an archive and build its chunk index (borg's `fetch_and_build_idx`).
pub fn build_archive_index(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    id: &ObjectId,
) -> Result<ArchiveIndex> {
    let archive = Archive::load(repo.as_ref(), key, id)?;
    let mut index = ChunkIndex::new();
    index.add(id, 1, archive.plain_len as u32, archive.stored_len as u32);
    let mut totals = ItemTotals::default();
    let mut stream = ItemStream::new(repo, key, &archive.meta.items);
    while let Some(event) = stream.next_event() {
        match event? {
            StreamEvent::Chunk(item_id, plain, stored) => {
                index.add(&item_id, 1, plain as u32, stored as u32);
            }
            StreamEvent::Item(v) => {
                let (chunks, part) = item_chunks(&v)?;
                let Some(chunks) = chunks else { continue };
                let (mut size, mut csize) = (0u64, 0u64);
                for (cid, s, c) in &chunks {
                    add_reference(&mut index, cid, *s, *c);
                    size += *s as u64;
                    csize += *c as u64;
                }
                if part {
                    totals.nfiles_parts += 1;
                    totals.size_parts += size;
                    totals.csize_parts += csize;
                }
                totals.nfiles += 1;
                totals.size += size;
                totals.csize += csize;
            }
        }
    }
    Ok(ArchiveIndex {
        archive,
        index,
        item_totals: totals,
    })
}

/// Chunk references of one item value, for callers that walk items themselves (delete).
pub(crate) fn item_chunk_refs(v: &Value) -> Result<ItemChunkRefs> {
    item_chunks(v)
}

/// Where the per-archive indexes live and how they are named.
pub(super) struct ArchiveDir {
    pub dir: PathBuf,
}

impl ArchiveDir {
    fn path(&self, id: &ObjectId, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", hex::encode(id)))
    }

    /// Archive ids with an index here: `<64 hex>` (old form) or `<64 hex>.compact`.
    pub fn cached_ids(&self) -> HashSet<ObjectId> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return HashSet::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let hexpart = match name.len() {
                    64 => name.as_str(),
                    72 if name.ends_with(".compact") => &name[..64],
                    _ => return None,
                };
                hex::decode(hexpart)
                    .ok()
                    .and_then(|b| ObjectId::try_from(b.as_slice()).ok())
            })
            .collect()
    }

    /// Remove an archive's index files (the compact one too unless `keep_compact`).
    pub fn cleanup(&self, id: &ObjectId, keep_compact: bool) {
        let plain = self.path(id, "");
        // as borg: the side file only goes when the index itself was there
        if fs::remove_file(&plain).is_ok() {
            let _ = fs::remove_file(integrity::detached_path(&plain));
        }
        if keep_compact {
            return;
        }
        let compact = self.path(id, ".compact");
        if fs::remove_file(&compact).is_ok() {
            let _ = fs::remove_file(integrity::detached_path(&compact));
        }
    }

    /// Store an archive's index in compact form (`<id>.tmp` renamed to `<id>.compact`, digests
    /// in `<id>.compact.integrity`). Failures only cost a rebuild later, as in borg.
    pub fn write(&self, id: &ObjectId, index: &mut ChunkIndex) {
        index.compact();
        let compact = self.path(id, ".compact");
        let tmp = self.path(id, ".tmp");
        let name = format!("{}.compact", hex::encode(id));
        let stored = index
            .write_path(&tmp, Some(&name))
            .and_then(|d| integrity::write_detached(&compact, &d));
        match stored {
            Ok(()) => {
                if fs::rename(&tmp, &compact).is_err() {
                    let _ = fs::remove_file(&tmp);
                }
            }
            Err(e) => {
                output::debug(&format!("could not store archive index {name}: {e}"));
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    /// Read an archive's stored index; an old non-compact one is converted. `None` if there
    /// is none; an unreadable one is removed (error logged, warning exit code) → `None`.
    pub fn read(&self, id: &ObjectId, name: &str) -> Option<ChunkIndex> {
        let compact = self.path(id, ".compact");
        let plain = self.path(id, "");
        log_info(&format!(
            "Reading cached archive chunk index for {name} ..."
        ));
        let result = if compact.exists() {
            ChunkIndex::read_path_detached(&compact, true).inspect(|_| self.cleanup(id, true))
        } else if plain.exists() {
            ChunkIndex::read_path_detached(&plain, false).map(|mut idx| {
                output::debug(&format!(
                    "Found non-compact index for {name}, converting to compact."
                ));
                self.cleanup(id, false);
                self.write(id, &mut idx);
                idx
            })
        } else {
            return None;
        };
        match result {
            Ok(idx) => Some(idx),
            Err(e) => {
                output::log(
                    Level::Error,
                    LOGGER,
                    &format!("Cached archive chunk index of {name} is corrupted: {e}"),
                    None,
                );
                self.cleanup(id, false);
                crate::errors::set_exit_code(crate::errors::EXIT_WARNING);
                None
            }
        }
    }

    /// The path of an archive's compact index.
    pub fn compact_path(&self, id: &ObjectId) -> PathBuf {
        self.path(id, ".compact")
    }
}

/// Sizes of objects fetched for chunks whose csize the archives do not tell (borg's
/// `chunks_fetched_size_index`, for archives made with an ad-hoc cache).
#[derive(Default)]
pub(super) struct FetchedSizes(Mutex<std::collections::HashMap<ObjectId, u32>>);

impl FetchedSizes {
    /// Fill in csize = stored length for entries with csize 0 (borg's `fetch_missing_csize`).
    pub fn fill_missing_csize(&self, repo: &dyn Repository, index: &mut ChunkIndex) -> Result<()> {
        for id in index.zero_csize_ids() {
            let known = self
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .copied();
            let csize = match known {
                Some(c) => c,
                None => {
                    let c = repo.get(&id)?.len() as u32;
                    self.0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, c);
                    c
                }
            };
            if let Some(mut e) = index.get(&id) {
                e.csize = csize;
                index.insert(&id, e);
            }
        }
        Ok(())
    }
}

/// What one archive contributes to a sync.
pub(super) struct SyncedArchive {
    pub id: ObjectId,
    pub index: ChunkIndex,
    /// Present when the archive was read (not taken from `chunks.archive.d`).
    pub built: Option<(Archive, ItemTotals)>,
}

/// Everything a sync needs.
pub(super) struct SyncJob<'a> {
    pub repo: &'a Arc<dyn Repository>,
    pub key: &'a Arc<Key>,
    pub archive_dir: &'a ArchiveDir,
    pub do_cache: bool,
    pub progress: bool,
}

impl SyncJob<'_> {
    /// Build the master chunks index for `archives` (borg's `create_master_idx`); `on_built`
    /// sees every archive that had to be read.
    pub fn run(
        &self,
        archives: &[ArchiveInfo],
        mut on_built: impl FnMut(&ObjectId, &Archive, &ItemTotals),
    ) -> Result<ChunkIndex> {
        log_info("Synchronizing chunks cache...");
        let cached_ids = if self.do_cache {
            self.archive_dir.cached_ids()
        } else {
            HashSet::new()
        };
        // each archive once, in manifest order
        let mut seen = HashSet::new();
        let wanted: Vec<&ArchiveInfo> = archives.iter().filter(|a| seen.insert(a.id)).collect();
        let archive_ids: HashSet<ObjectId> = wanted.iter().map(|a| a.id).collect();
        log_info(&format!(
            "Archives: {}, w/ cached Idx: {}, w/ outdated Idx: {}, w/o cached Idx: {}.",
            archive_ids.len(),
            cached_ids.len(),
            cached_ids.difference(&archive_ids).count(),
            archive_ids.difference(&cached_ids).count()
        ));
        for id in cached_ids.difference(&archive_ids) {
            self.archive_dir.cleanup(id, false);
        }
        if wanted.is_empty() {
            log_info("Done.");
            return Ok(ChunkIndex::new());
        }
        let mut master = ChunkIndex::with_usable(self.repo.len()?);
        let progress = Mutex::new(ProgressPercent::new(
            wanted.len() as u64,
            0.1,
            "%3.0f%% Syncing chunks cache. Processing archive %s",
            "cache.sync",
        ));
        let fetched = FetchedSizes::default();
        // bounded batches: parallel reads, merged in order, without holding every index
        let batch = (rayon::current_num_threads() * 2).max(2);
        for group in wanted.chunks(batch) {
            let results: Vec<Result<SyncedArchive>> = group
                .par_iter()
                .map(|info| {
                    if self.progress {
                        progress
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .show(None, Some(vec![info.name_lossy()]));
                    }
                    self.one_archive(info, cached_ids.contains(&info.id), &fetched)
                })
                .collect();
            for r in results {
                let synced = r?;
                if let Some((archive, totals)) = &synced.built {
                    on_built(&synced.id, archive, totals);
                }
                log_info("Merging into master chunks index ...");
                master.merge(&synced.index);
            }
        }
        if !self.do_cache {
            fetched.fill_missing_csize(self.repo.as_ref(), &mut master)?;
        }
        progress.lock().unwrap_or_else(|e| e.into_inner()).finish();
        log_info("Done.");
        Ok(master)
    }

    fn one_archive(
        &self,
        info: &ArchiveInfo,
        cached: bool,
        fetched: &FetchedSizes,
    ) -> Result<SyncedArchive> {
        let name = info.name_lossy();
        if self.do_cache && cached {
            if let Some(index) = self.archive_dir.read(&info.id, &name) {
                return Ok(SyncedArchive {
                    id: info.id,
                    index,
                    built: None,
                });
            }
        }
        log_info(&format!(
            "Fetching and building archive index for {name} ..."
        ));
        let ArchiveIndex {
            archive,
            mut index,
            item_totals,
        } = build_archive_index(self.repo, self.key, &info.id)?;
        if self.do_cache {
            fetched.fill_missing_csize(self.repo.as_ref(), &mut index)?;
            self.archive_dir.write(&info.id, &mut index);
        }
        Ok(SyncedArchive {
            id: info.id,
            index,
            built: Some((archive, item_totals)),
        })
    }
}

/// Remove the leftovers of borg < 1.0's single-file archive cache and make sure
/// `chunks.archive.d` exists (borg's `legacy_cleanup`).
pub(super) fn legacy_cleanup(cache_dir: &Path) {
    let _ = fs::remove_file(cache_dir.join("chunks.archive"));
    let _ = fs::remove_file(cache_dir.join("chunks.archive.tmp"));
    let _ = fs::create_dir(cache_dir.join("chunks.archive.d"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack;

    #[test]
    fn item_chunk_references() {
        let item = msgpack::sorted_map(vec![
            (Value::from("path"), msgpack::bytes(b"a".to_vec())),
            (
                Value::from("chunks"),
                Value::Array(vec![Value::Array(vec![
                    msgpack::bytes(vec![1u8; 32]),
                    Value::from(10),
                    Value::from(5),
                ])]),
            ),
            (Value::from("part"), Value::from(1)),
        ]);
        let (chunks, part) = item_chunks(&item).unwrap();
        assert_eq!(chunks, Some(vec![([1u8; 32], 10, 5)]));
        assert!(part);
        let dir = msgpack::sorted_map(vec![(Value::from("path"), msgpack::bytes(b"d".to_vec()))]);
        assert_eq!(item_chunks(&dir).unwrap(), (None, false));
        let bad = msgpack::sorted_map(vec![(Value::from("chunks"), Value::from(3))]);
        assert!(item_chunks(&bad).is_err());
        assert!(item_chunks(&Value::from(1)).is_err());
    }

    #[test]
    fn references_keep_first_sizes() {
        let mut idx = ChunkIndex::new();
        add_reference(&mut idx, &[1; 32], 10, 5);
        add_reference(&mut idx, &[1; 32], 11, 6);
        assert_eq!(
            idx.get(&[1; 32]),
            Some(ChunkIndexEntry {
                refcount: 2,
                size: 10,
                csize: 5
            })
        );
    }

    #[test]
    fn archive_dir_names() {
        let dir = tempfile::tempdir().unwrap();
        let ad = ArchiveDir {
            dir: dir.path().to_path_buf(),
        };
        let mut idx = ChunkIndex::new();
        idx.add(&[3; 32], 1, 2, 3);
        ad.write(&[9; 32], &mut idx);
        fs::write(dir.path().join(hex::encode([8u8; 32])), b"x").unwrap();
        fs::write(dir.path().join("junk"), b"x").unwrap();
        let ids = ad.cached_ids();
        assert_eq!(ids, HashSet::from([[9u8; 32], [8u8; 32]]));
        let back = ad.read(&[9; 32], "a").unwrap();
        assert_eq!(back.get(&[3; 32]).unwrap().csize, 3);
        assert!(dir
            .path()
            .join(format!("{}.compact.integrity", hex::encode([9u8; 32])))
            .exists());
        // corrupt → removed, None
        let p = ad.compact_path(&[9; 32]);
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, bytes).unwrap();
        assert!(ad.read(&[9; 32], "a").is_none());
        assert!(!p.exists());
        ad.cleanup(&[8; 32], false);
        assert!(ad.cached_ids().is_empty());
    }
}
