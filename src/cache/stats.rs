//! Chunk reference counts over all archives and the statistics borg derives from them
//! (`info`, `create --stats`): borg 1.2's cache sync semantics — every archive contributes its
//! metadata object, its item-stream chunks and every chunk its items reference.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use rayon::prelude::*;

use crate::archive::{Archive, ArchiveInfo};
use crate::crypto::Key;
use crate::errors::Result;
use crate::repository::{ObjectId, Repository};

/// Object ids are already uniformly random: hash by their first 8 bytes.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= (*b as u64) << (i * 8);
        }
    }
}

/// Reference count, plaintext size and stored size of one chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkEntry {
    pub refcount: u32,
    pub size: u32,
    pub csize: u32,
}

/// An in-memory chunk index (borg's ChunkIndex semantics).
#[derive(Debug, Default, Clone)]
pub struct ChunkCounts {
    pub map: HashMap<ObjectId, ChunkEntry, BuildHasherDefault<IdHasher>>,
}

/// borg's `summarize()` tuple.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub total_size: u64,
    pub total_csize: u64,
    pub unique_size: u64,
    pub unique_csize: u64,
    pub total_unique_chunks: u64,
    pub total_chunks: u64,
}

const MAX_REFCOUNT: u32 = 0xffff_fbff;

impl ChunkCounts {
    /// Add `refs` references (borg's `add`: refcounts saturate, sizes are overwritten).
    pub fn add(&mut self, id: ObjectId, refs: u32, size: u32, csize: u32) {
        let e = self.map.entry(id).or_default();
        e.refcount = e.refcount.saturating_add(refs).min(MAX_REFCOUNT);
        e.size = size;
        e.csize = csize;
    }

    pub fn merge(&mut self, other: &ChunkCounts) {
        for (id, e) in &other.map {
            self.add(*id, e.refcount, e.size, e.csize);
        }
    }

    pub fn summarize(&self) -> Summary {
        let mut s = Summary::default();
        for e in self.map.values() {
            s.total_unique_chunks += 1;
            s.total_chunks += e.refcount as u64;
            s.unique_size += e.size as u64;
            s.unique_csize += e.csize as u64;
            s.total_size += e.size as u64 * e.refcount as u64;
            s.total_csize += e.csize as u64 * e.refcount as u64;
        }
        s
    }

    /// Σ over chunks referenced as often here as in `master` (borg's `stats_against`):
    /// (unique_size, unique_csize).
    pub fn unique_against(&self, master: &ChunkCounts) -> (u64, u64) {
        let mut size = 0;
        let mut csize = 0;
        for (id, e) in &self.map {
            if let Some(m) = master.map.get(id) {
                if m.refcount == e.refcount {
                    size += m.size as u64;
                    csize += m.csize as u64;
                }
            }
        }
        (size, csize)
    }
}

/// Per-archive result of a sync.
pub struct ArchiveChunks {
    pub info: ArchiveInfo,
    pub archive: Archive,
    pub counts: ChunkCounts,
    /// For archives without borg 1.2 statistics: totals computed from the items.
    pub item_totals: ItemTotals,
}

/// Σ over regular-file items (parts separately), as borg's cache synchronizer counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct ItemTotals {
    pub nfiles: u64,
    pub size: u64,
    pub csize: u64,
    pub nfiles_parts: u64,
    pub size_parts: u64,
    pub csize_parts: u64,
}

/// Read one archive's metadata and item stream and count its chunk references.
pub fn archive_chunks(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    info: &ArchiveInfo,
) -> Result<ArchiveChunks> {
    let archive = Archive::load(repo.as_ref(), key, &info.id)?;
    let mut counts = ChunkCounts::default();
    counts.add(
        info.id,
        1,
        archive.plain_len as u32,
        archive.stored_len as u32,
    );
    let mut totals = ItemTotals::default();
    let mut items = archive.items(repo.clone(), key.clone());
    for item in items.by_ref() {
        let item = item?;
        if let Some(chunks) = &item.chunks {
            let (mut size, mut csize) = (0u64, 0u64);
            for c in chunks {
                counts.add(c.id, 1, c.size, c.csize);
                size += c.size as u64;
                csize += c.csize as u64;
            }
            if item.part.is_some() {
                totals.nfiles_parts += 1;
                totals.size_parts += size;
                totals.csize_parts += csize;
            }
            totals.nfiles += 1;
            totals.size += size;
            totals.csize += csize;
        }
    }
    for (id, (plain, stored)) in archive.meta.items.iter().zip(items.chunk_lengths.iter()) {
        counts.add(*id, 1, *plain as u32, *stored as u32);
    }
    Ok(ArchiveChunks {
        info: info.clone(),
        archive,
        counts,
        item_totals: totals,
    })
}

/// The repository-wide chunk index plus per-archive indexes, built in parallel.
pub struct RepoChunks {
    pub master: ChunkCounts,
    pub archives: Vec<ArchiveChunks>,
}

pub fn sync_all(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    archives: &[ArchiveInfo],
) -> Result<RepoChunks> {
    let per_archive: Vec<ArchiveChunks> = archives
        .par_iter()
        .map(|a| archive_chunks(repo, key, a))
        .collect::<Result<Vec<_>>>()?;
    let mut master = ChunkCounts::default();
    for a in &per_archive {
        master.merge(&a.counts);
    }
    Ok(RepoChunks {
        master,
        archives: per_archive,
    })
}

impl ArchiveChunks {
    /// (nfiles, original size, compressed size) as borg reports them for this archive.
    pub fn totals(&self, consider_part_files: bool) -> (u64, u64, u64) {
        let m = &self.archive.meta;
        match (m.nfiles, m.size, m.csize) {
            (Some(n), Some(s), Some(c)) => {
                if consider_part_files {
                    (
                        n + m.nfiles_parts.unwrap_or(0),
                        s + m.size_parts.unwrap_or(0),
                        c + m.csize_parts.unwrap_or(0),
                    )
                } else {
                    (n, s, c)
                }
            }
            _ => {
                let t = &self.item_totals;
                if consider_part_files {
                    (t.nfiles, t.size, t.csize)
                } else {
                    (
                        t.nfiles - t.nfiles_parts,
                        t.size - t.size_parts,
                        t.csize - t.csize_parts,
                    )
                }
            }
        }
    }
}

impl RepoChunks {
    /// The `cache.stats` object: chunk summary with totals summed over archive statistics.
    pub fn cache_summary(&self, consider_part_files: bool) -> Summary {
        let mut s = self.master.summarize();
        s.total_size = 0;
        s.total_csize = 0;
        for a in &self.archives {
            let (_, size, csize) = a.totals(consider_part_files);
            s.total_size += size;
            s.total_csize += csize;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_unique() {
        let mut a = ChunkCounts::default();
        a.add([1; 32], 1, 10, 5);
        a.add([2; 32], 2, 20, 8);
        let mut master = a.clone();
        master.add([2; 32], 1, 20, 8);
        let s = master.summarize();
        assert_eq!(s.total_chunks, 4);
        assert_eq!(s.total_unique_chunks, 2);
        assert_eq!(s.unique_csize, 13);
        assert_eq!(s.total_size, 10 + 60);
        assert_eq!(a.unique_against(&master), (10, 5));
    }
}
