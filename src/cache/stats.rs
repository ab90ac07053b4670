//! Chunk reference counts over all archives and the statistics borg derives from them
//! (`info`, `create --stats`): borg 1.2's cache sync semantics — every archive contributes its
//! metadata object, its item-stream chunks and every chunk its items reference.

use std::sync::Arc;

use rayon::prelude::*;

use crate::archive::{Archive, ArchiveInfo};
use crate::crypto::Key;
use crate::errors::Result;
use crate::hashindex::ChunkIndex;
pub use crate::hashindex::ChunkSummary as Summary;
use crate::repository::Repository;

/// Per-archive result of a sync.
pub struct ArchiveChunks {
    pub info: ArchiveInfo,
    pub archive: Archive,
    pub counts: ChunkIndex,
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
    let mut counts = ChunkIndex::new();
    counts.add(
        &info.id,
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
                counts.add(&c.id, 1, c.size, c.csize);
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
        counts.add(id, 1, *plain as u32, *stored as u32);
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
    pub master: ChunkIndex,
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
    let mut master = ChunkIndex::new();
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
