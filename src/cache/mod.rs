//! Client-side state: the security dir checks, and the local cache of a repository in borg's
//! own format (`<cache dir>/<repo id>/`: config, chunks, files, chunks.archive.d), so borg
//! and rborg can use one cache (repository-format.md §8).
//!
//! (The persistent cache below is the API contract; its implementation replaces the stubs.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive::item::ChunkRef;
use crate::archive::{Manifest, Statistics};
use crate::crypto::Key;
use crate::errors::{Error, Result};
use crate::fs::FileStat;
use crate::hashindex::ChunkIndex;
use crate::repository::{ObjectId, Repository};

pub mod security;
pub mod stats;

pub use security::{CacheConfigInfo, SecurityManager};

/// How `create` decides from the files cache that a file is unchanged (`--files-cache`):
/// borg's mode letters c(time), m(time), i(node), s(ize), r(echunk), d(isabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesCacheMode {
    pub ctime: bool,
    pub mtime: bool,
    pub inode: bool,
    pub size: bool,
    pub rechunk: bool,
    pub disabled: bool,
}

impl FilesCacheMode {
    /// From the CLI's letter code (`cis` is borg's default `ctime,size,inode`).
    pub fn from_code(code: &str) -> FilesCacheMode {
        FilesCacheMode {
            ctime: code.contains('c'),
            mtime: code.contains('m'),
            inode: code.contains('i'),
            size: code.contains('s'),
            rechunk: code.contains('r'),
            disabled: code.contains('d'),
        }
    }
}

impl Default for FilesCacheMode {
    fn default() -> Self {
        FilesCacheMode::from_code("cis")
    }
}

/// Options for opening the cache.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// `--lock-wait` for the cache lock, seconds (negative: wait forever).
    pub lock_wait: f64,
    pub files_cache_mode: FilesCacheMode,
    /// `--progress`: cache sync / begin / commit progress (msgids `cache.sync`, …).
    pub progress: bool,
    pub consider_part_files: bool,
    /// Ask before using a previously unknown unencrypted repository (false only for `init`).
    pub warn_if_unencrypted: bool,
}

/// The local cache of one repository, locked while open.
pub struct Cache {
    path: PathBuf,
    chunks: ChunkIndex,
}

impl Cache {
    /// Open (creating if needed) `<cache dir>/<repo id>`, take its lock, run the security
    /// checks, and resynchronise the chunks index if the repository changed since the cache
    /// was last committed (borg's `Cache()` / `LocalCache.sync`).
    pub fn open(
        _repo: Arc<dyn Repository>,
        _key: Arc<Key>,
        _manifest: &Manifest,
        _location: &str,
        _opts: &CacheOptions,
    ) -> Result<Cache> {
        Err(Error::generic(
            "the persistent cache is not implemented yet",
        ))
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository-wide chunk index (refcount, size, csize).
    pub fn chunks(&self) -> &ChunkIndex {
        &self.chunks
    }

    /// The refcount of a chunk (0 when unknown).
    pub fn seen_chunk(&self, id: &ObjectId) -> u32 {
        self.chunks.get(id).map_or(0, |e| e.refcount)
    }

    /// One more reference to a known chunk.
    pub fn chunk_incref(
        &mut self,
        _id: &ObjectId,
        _stats: &mut Statistics,
        _part: bool,
    ) -> ChunkRef {
        unimplemented!("cache")
    }

    /// A chunk this session just stored in the repository (refcount 1).
    pub fn add_chunk(
        &mut self,
        _id: &ObjectId,
        _size: u32,
        _csize: u32,
        _stats: &mut Statistics,
        _part: bool,
    ) -> ChunkRef {
        unimplemented!("cache")
    }

    /// One reference less; at zero the object is deleted from the repository.
    pub fn chunk_decref(&mut self, _id: &ObjectId, _stats: &mut Statistics) -> Result<()> {
        unimplemented!("cache")
    }

    /// (known, chunk ids if unchanged) for a regular file, by its path hash
    /// (`id_hash` of the absolute path bytes), per the files cache mode.
    pub fn file_known_and_unchanged(
        &self,
        _path_hash: &ObjectId,
        _st: &FileStat,
    ) -> (bool, Option<Vec<ObjectId>>) {
        (false, None)
    }

    /// Remember a regular file's stat and chunk ids for the next backup.
    pub fn memorize_file(&mut self, _path_hash: &ObjectId, _st: &FileStat, _ids: &[ObjectId]) {}

    /// After the repository commit: save files cache, chunks index and config, and update the
    /// security dir (manifest timestamp, key type, location).
    pub fn commit(&mut self, _manifest: &Manifest) -> Result<()> {
        Err(Error::generic(
            "the persistent cache is not implemented yet",
        ))
    }

    /// Forget the changes of this session.
    pub fn rollback(&mut self) {}

    /// The `cache.stats` summary (totals summed over the archives' own statistics).
    pub fn summary(&self) -> Result<stats::Summary> {
        Err(Error::generic(
            "the persistent cache is not implemented yet",
        ))
    }
}
