//! Chunk reference counts over all archives and the statistics borg derives from them
//! (`info`, `create --stats`): borg 1.2's cache sync semantics — every archive contributes its
//! metadata object, its item-stream chunks and every chunk its items reference.

use std::sync::Arc;

use rayon::prelude::*;

use crate::archive::{Archive, ArchiveInfo, ArchiveMeta};
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
    let built = super::sync::build_archive_index(repo, key, &info.id)?;
    Ok(ArchiveChunks {
        info: info.clone(),
        archive: built.archive,
        counts: built.index,
        item_totals: built.item_totals,
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
        archive_totals(&self.archive.meta, &self.item_totals, consider_part_files)
    }
}

/// (nfiles, original size, compressed size) of an archive as borg's `calc_stats` reports them:
/// from the borg 1.2 statistics in the metadata, else from the items' totals.
pub fn archive_totals(
    m: &ArchiveMeta,
    items: &ItemTotals,
    consider_part_files: bool,
) -> (u64, u64, u64) {
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
            if consider_part_files {
                (items.nfiles, items.size, items.csize)
            } else {
                (
                    items.nfiles - items.nfiles_parts,
                    items.size - items.size_parts,
                    items.csize - items.csize_parts,
                )
            }
        }
    }
}

/// Whether the metadata carries borg 1.2's per-archive statistics.
pub fn has_borg12_stats(m: &ArchiveMeta) -> bool {
    m.nfiles.is_some() && m.size.is_some() && m.csize.is_some()
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
