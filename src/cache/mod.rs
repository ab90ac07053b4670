//! Client-side state: the security dir checks, and the local cache of a repository in borg's
//! own format (`<cache dir>/<repo id>/`: config, chunks, files, chunks.archive.d), so borg
//! and rborg can use one cache (repository-format.md §8).
//!
//! The cache is borg's `LocalCache`: opened under its lock, it restores an interrupted
//! transaction, loads config, chunks index and (for `create`) the files cache, and rebuilds the
//! chunks index when the repository's manifest is not the one the cache was committed with.
//! Changes happen inside a transaction (copies of config, chunks and files in `txn.active/`)
//! that [`Cache::commit`] ends after the repository commit.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::archive::item::ChunkRef;
use crate::archive::{Archive, ArchiveInfo, Manifest, Operation, Statistics};
use crate::crypto::Key;
use crate::errors::{Error, Result};
use crate::fs::FileStat;
use crate::hashindex::ChunkIndex;
use crate::msgpack::ValueExt;
use crate::output::progress::ProgressMessage;
use crate::output::{self, Level};
use crate::repository::lock::Lock;
use crate::repository::{ObjectId, Repository};

pub mod config;
pub mod delete;
pub mod files;
pub mod security;
pub mod stats;
pub mod sync;

pub use config::CacheConfig;
pub use delete::{delete_archive, DeleteOptions};
pub use files::{FileMemo, FilesCache};
pub use security::{CacheConfigInfo, SecurityManager};

use config::ConfigLoadError;
use stats::ItemTotals;
use sync::{ArchiveDir, SyncJob};

/// Contents of `README` in every cache dir.
pub const CACHE_README: &str =
    "This is a Borg Backup cache.\nSee https://borgbackup.readthedocs.io/\n";

/// Name and contents of the cache directory tag in the cache root.
pub const CACHE_TAG_NAME: &str = "CACHEDIR.TAG";
pub const CACHE_TAG_CONTENTS: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by Borg.\n\
# For information about cache directory tags, see:\n\
#       http://www.bford.info/cachedir/spec.html\n";

/// Repository features this implementation supports (borg 1.2/1.4: none).
const SUPPORTED_REPO_FEATURES: &[&str] = &[];

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

    /// No files cache (what every command but `create` uses: borg's default `d`).
    pub fn disabled() -> FilesCacheMode {
        FilesCacheMode::from_code("d")
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

impl Default for CacheOptions {
    /// borg's `Cache()` defaults: 1 s lock wait, files cache disabled.
    fn default() -> Self {
        CacheOptions {
            lock_wait: 1.0,
            files_cache_mode: FilesCacheMode::disabled(),
            progress: false,
            consider_part_files: false,
            warn_if_unencrypted: true,
        }
    }
}

/// (nfiles, original size, compressed size) of one archive as its statistics report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveTotals {
    pub nfiles: u64,
    pub size: u64,
    pub csize: u64,
}

/// A chunk id missing from the index: borg's `ChunksIndexError`.
fn chunks_index_error(id: &ObjectId) -> Error {
    Error::generic(format!(
        "Chunk ID {} missing from chunks index, corrupted chunks index - aborting transaction.",
        hex::encode(id)
    ))
}

fn io_context(e: std::io::Error, what: &str, path: &Path) -> Error {
    Error::exception(format!("{what} {}: {e}", path.display()))
}

/// Create the cache root and its `CACHEDIR.TAG` (borg's `get_cache_dir`).
fn ensure_cache_root(root: &Path) -> Result<()> {
    fs::create_dir_all(root).map_err(|e| io_context(e, "cannot create", root))?;
    let tag = root.join(CACHE_TAG_NAME);
    if !tag.exists() {
        config::save_file(&tag, CACHE_TAG_CONTENTS.as_bytes())?;
    }
    Ok(())
}

/// `BORG_USE_CHUNKS_ARCHIVE` (default yes).
fn use_chunks_archive_env() -> bool {
    let v = std::env::var("BORG_USE_CHUNKS_ARCHIVE").unwrap_or_else(|_| "yes".into());
    matches!(v.to_lowercase().as_str(), "yes" | "1" | "true")
}

/// Every feature some operation of the repository declares mandatory.
fn repository_features(manifest: &Manifest) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(flags) = manifest
        .config
        .get("feature_flags")
        .and_then(|f| f.as_entries())
    else {
        return out;
    };
    for (_, op) in flags {
        if let Some(list) = op.get("mandatory").and_then(|m| m.as_list()) {
            out.extend(
                list.iter()
                    .filter_map(|f| f.as_bytes())
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            );
        }
    }
    out
}

/// `pre12-meta`: statistics of archives without borg 1.2 metadata, keyed by archive id hex.
#[derive(Default)]
struct Pre12Meta {
    entries: serde_json::Map<String, serde_json::Value>,
    dirty: bool,
}

impl Pre12Meta {
    fn load(path: &Path) -> Pre12Meta {
        let entries = fs::read(path)
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        Pre12Meta {
            entries,
            dirty: false,
        }
    }

    fn get(&self, id: &ObjectId) -> Option<ArchiveTotals> {
        let e = self.entries.get(&hex::encode(id))?;
        let n = |k: &str| e.get(k).and_then(|v| v.as_u64());
        Some(ArchiveTotals {
            nfiles: n("nfiles")?,
            size: n("size")?,
            csize: n("csize")?,
        })
    }

    fn insert(&mut self, id: &ObjectId, t: ArchiveTotals) {
        // borg's Statistics.as_raw_dict of the computed statistics (parts already applied)
        let mut m = serde_json::Map::new();
        m.insert("size".into(), t.size.into());
        m.insert("csize".into(), t.csize.into());
        m.insert("nfiles".into(), t.nfiles.into());
        m.insert("size_parts".into(), 0.into());
        m.insert("csize_parts".into(), 0.into());
        m.insert("nfiles_parts".into(), 0.into());
        self.entries
            .insert(hex::encode(id), serde_json::Value::Object(m));
        self.dirty = true;
    }

    /// Written as Python's `json.dump(indent=4)`.
    fn save(&self, path: &Path) -> Result<()> {
        let v = serde_json::Value::Object(self.entries.clone());
        let text = output::json::dumps_with(&v, false, Some("    "));
        config::save_file(path, text.as_bytes())
    }
}

/// The local cache of one repository, locked while open.
pub struct Cache {
    path: PathBuf,
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    /// Canonical repository location (the config's next `previous_location`).
    location: String,
    opts: CacheOptions,
    config: CacheConfig,
    chunks: ChunkIndex,
    files: Option<FilesCache>,
    files_name: String,
    do_cache: bool,
    txn_active: bool,
    /// A failure met where the API cannot return one (begin of a transaction inside
    /// `chunk_incref`/`add_chunk`, unknown chunk): reported by `commit`.
    deferred_error: Option<Error>,
    security: SecurityManager,
    /// The archives of the manifest the cache follows (for `summary`).
    archives: Vec<ArchiveInfo>,
    totals: Mutex<HashMap<ObjectId, ArchiveTotals>>,
    pre12: Mutex<Pre12Meta>,
    lock: Option<Lock>,
}

impl Cache {
    /// Open (creating if needed) `<cache dir>/<repo id>`, take its lock, run the security
    /// checks, and resynchronise the chunks index if the repository changed since the cache
    /// was last committed (borg's `Cache()` / `LocalCache.sync`).
    pub fn open(
        repo: Arc<dyn Repository>,
        key: Arc<Key>,
        manifest: &Manifest,
        location: &str,
        opts: &CacheOptions,
    ) -> Result<Cache> {
        let id_hex = hex::encode(repo.id());
        let path = crate::paths::repo_cache_dir(&id_hex);
        let security = SecurityManager::new(&id_hex, location);
        Self::open_in(path, security, repo, key, manifest, location, opts)
    }

    /// [`open`](Self::open) with an explicit cache dir and security manager.
    pub fn open_in(
        path: PathBuf,
        security: SecurityManager,
        repo: Arc<dyn Repository>,
        key: Arc<Key>,
        manifest: &Manifest,
        location: &str,
        opts: &CacheOptions,
    ) -> Result<Cache> {
        let id_hex = hex::encode(repo.id());
        if let Some(root) = path.parent() {
            ensure_cache_root(root)?;
        }
        if !path.exists() {
            security.assert_access_unknown(manifest, &key, opts.warn_if_unencrypted)?;
            Self::create(&path, &id_hex)?;
        }
        if !path.is_dir() {
            return Err(Error::exception(format!(
                "{} Does not look like a Borg cache",
                path.display()
            )));
        }
        let timeout = (opts.lock_wait >= 0.0).then_some(opts.lock_wait);
        let lock = Lock::new(&path.join("lock"), true, timeout).acquire()?;
        let files_name = files::files_cache_name();
        let mut cache = Cache {
            config: Self::load_config(&path, &id_hex, location)?,
            path,
            repo,
            key,
            location: location.to_string(),
            opts: opts.clone(),
            chunks: ChunkIndex::new(),
            files: None,
            files_name,
            do_cache: false,
            txn_active: false,
            deferred_error: None,
            security,
            archives: manifest.archives.clone(),
            totals: Mutex::new(HashMap::new()),
            pre12: Mutex::new(Pre12Meta::default()),
            lock: Some(lock),
        };
        if let Err(e) = cache.rollback_inner() {
            // an unreadable chunks index: start over, as borg's wipe_cache
            output::log(
                Level::Debug,
                sync::LOGGER,
                &format!("cache open: {e}"),
                None,
            );
            cache.wipe()?;
            cache.rollback_inner()?;
        }
        cache.do_cache = use_chunks_archive_env() && cache.archive_dir().dir.is_dir();
        let info = CacheConfigInfo {
            key_type: cache.config.key_type.clone(),
            timestamp: cache.config.timestamp.clone(),
            previous_location: cache.config.previous_location.clone(),
            cache_dir: None,
        };
        let relocated = cache.security.assert_secure_with(
            manifest,
            &cache.key,
            Some(&info),
            opts.warn_if_unencrypted,
        )?;
        if relocated {
            // the config already holds the new location as previous_location
            cache.config.save_plain()?;
        }
        if !cache.compatible() {
            cache.wipe()?;
            cache.rollback_inner()?;
        }
        let repo_features = repository_features(manifest);
        for f in repo_features {
            if SUPPORTED_REPO_FEATURES.contains(&f.as_str()) {
                cache.config.mandatory_features.insert(f);
            } else {
                cache.config.ignored_features.insert(f);
            }
        }
        if cache.config.manifest_id != Some(manifest.id) {
            cache.sync(manifest)?;
            cache.commit(manifest)?;
        }
        Ok(cache)
    }

    /// A new, empty cache at `path` (borg's `LocalCache.create`).
    fn create(path: &Path, id_hex: &str) -> Result<()> {
        fs::create_dir_all(path).map_err(|e| io_context(e, "cannot create", path))?;
        fs::write(path.join("README"), CACHE_README)?;
        CacheConfig::create(path, id_hex)?;
        ChunkIndex::new().write_path(&path.join("chunks"), None)?;
        fs::create_dir_all(path.join("chunks.archive.d"))?;
        config::save_file(&path.join(files::files_cache_name()), b"")?;
        config::save_file(&path.join("pre12-meta"), b"{}")?;
        Ok(())
    }

    /// Load the config; a missing or unparseable one is replaced by a fresh one (the cache
    /// will be rebuilt), a cache of another version is refused.
    fn load_config(path: &Path, id_hex: &str, location: &str) -> Result<CacheConfig> {
        match CacheConfig::load(path, location) {
            Ok(c) => return Ok(c),
            Err(ConfigLoadError::Incompatible(e)) => return Err(e),
            Err(ConfigLoadError::Invalid(why)) => {
                output::warning(&format!("Discarding invalid cache config ({why})"))
            }
            Err(ConfigLoadError::Missing) => {}
        }
        CacheConfig::create(path, id_hex)?;
        // the chunks index no longer matches any manifest: it will be rebuilt by the sync
        match CacheConfig::load(path, location) {
            Ok(c) => Ok(c),
            Err(ConfigLoadError::Incompatible(e)) => Err(e),
            Err(_) => Err(Error::exception(format!(
                "cannot write the cache config in {}",
                path.display()
            ))),
        }
    }

    fn archive_dir(&self) -> ArchiveDir {
        ArchiveDir {
            dir: self.path.join("chunks.archive.d"),
        }
    }

    fn files_path(&self) -> PathBuf {
        self.path.join(&self.files_name)
    }

    /// borg's `check_cache_compatibility`.
    fn compatible(&self) -> bool {
        let supported: BTreeSet<String> = SUPPORTED_REPO_FEATURES
            .iter()
            .map(|s| s.to_string())
            .collect();
        self.config.ignored_features.is_disjoint(&supported)
            && self.config.mandatory_features.is_subset(&supported)
    }

    /// borg's `wipe_cache`: empty chunks index and files cache, no archive indexes, no
    /// manifest — the next open resynchronises.
    fn wipe(&mut self) -> Result<()> {
        output::warning("Discarding incompatible or corrupted cache and forcing a cache rebuild");
        let archive_dir = self.archive_dir().dir;
        if archive_dir.is_dir() {
            fs::remove_dir_all(&archive_dir)?;
            fs::create_dir_all(&archive_dir)?;
        }
        self.chunks = ChunkIndex::new();
        let digests = self.chunks.write_path(&self.path.join("chunks"), None)?;
        self.config.set_integrity("chunks", digests.to_json());
        let digests = FilesCache::save_empty(&self.files_path())?;
        self.config
            .set_integrity(&self.files_name, digests.to_json());
        self.config.wipe()
    }

    /// Load config, chunks index, files cache and pre12-meta from the cache dir.
    fn do_open(&mut self, location: &str) -> Result<()> {
        self.config = match CacheConfig::load(&self.path, location) {
            Ok(c) => c,
            Err(ConfigLoadError::Incompatible(e)) => return Err(e),
            Err(_) => {
                return Err(Error::file_integrity(
                    self.path.join("config").display().to_string(),
                ))
            }
        };
        let chunks_path = self.path.join("chunks");
        self.chunks =
            ChunkIndex::read_path(&chunks_path, self.config.integrity_of("chunks"), false)?;
        self.files = if self.opts.files_cache_mode.disabled {
            None
        } else {
            output::log(Level::Debug, sync::LOGGER, "Reading files cache ...", None);
            let (files, warning) = FilesCache::load(
                &self.files_path(),
                self.config.integrity_of(&self.files_name),
            );
            if let Some(w) = warning {
                output::log(Level::Warning, sync::LOGGER, &w, None);
                output::log(
                    Level::Warning,
                    sync::LOGGER,
                    "Continuing without files cache - expect lower performance.",
                    None,
                );
            }
            Some(files)
        };
        *self.pre12.lock().unwrap_or_else(|e| e.into_inner()) =
            Pre12Meta::load(&self.path.join("pre12-meta"));
        Ok(())
    }

    /// borg's `rollback`: drop a partial transaction, restore the files of an interrupted
    /// one, then (re)load everything.
    fn rollback_inner(&mut self) -> Result<()> {
        let tmp = self.path.join("txn.tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        let active = self.path.join("txn.active");
        if active.exists() {
            for name in ["config", "chunks"] {
                fs::copy(active.join(name), self.path.join(name))?;
            }
            if let Some(files) = discover_files_cache_name(&active) {
                fs::copy(active.join(&files), self.path.join(&files))?;
            }
            fs::rename(&active, &tmp)?;
            fs::remove_dir_all(&tmp)?;
        }
        self.txn_active = false;
        let location = self.location.clone();
        self.do_open(&location)
    }

    /// borg's `begin_txn`: snapshot config, chunks and files into `txn.active`.
    pub fn begin_txn(&mut self) -> Result<()> {
        if self.txn_active {
            return Ok(());
        }
        let mut pi = self.progress_message("cache.begin_transaction");
        let tmp = self.path.join("txn.tmp");
        fs::create_dir(&tmp).map_err(|e| io_context(e, "cannot create", &tmp))?;
        pi.output("Initializing cache transaction: Reading config");
        fs::copy(self.path.join("config"), tmp.join("config"))?;
        pi.output("Initializing cache transaction: Reading chunks");
        fs::copy(self.path.join("chunks"), tmp.join("chunks"))?;
        pi.output("Initializing cache transaction: Reading files");
        if fs::copy(self.files_path(), tmp.join(&self.files_name)).is_err() {
            config::save_file(&tmp.join(&self.files_name), b"")?;
        }
        fs::rename(&tmp, self.path.join("txn.active"))?;
        self.txn_active = true;
        pi.finish();
        Ok(())
    }

    /// Start the transaction where the API has no way to report a failure.
    fn ensure_txn(&mut self) {
        if !self.txn_active && self.deferred_error.is_none() {
            if let Err(e) = self.begin_txn() {
                self.deferred_error = Some(e);
            }
        }
    }

    /// A message indicator (silent unless `--progress`).
    fn progress_message(&self, msgid: &str) -> ProgressMessage {
        ProgressMessage::new(msgid)
    }

    /// Rebuild the chunks index from the archives of `manifest`.
    fn sync(&mut self, manifest: &Manifest) -> Result<()> {
        manifest.check_repository_compatibility(&[Operation::Read])?;
        self.begin_txn()?;
        sync::legacy_cleanup(&self.path);
        let archive_dir = self.archive_dir();
        let job = SyncJob {
            repo: &self.repo,
            key: &self.key,
            archive_dir: &archive_dir,
            do_cache: self.do_cache,
            progress: self.opts.progress,
        };
        let consider = self.opts.consider_part_files;
        let mut fresh: Vec<(ObjectId, ArchiveTotals)> = Vec::new();
        let master = job.run(&manifest.archives, |id, archive, items| {
            let (nfiles, size, csize) = stats::archive_totals(&archive.meta, items, consider);
            fresh.push((
                *id,
                ArchiveTotals {
                    nfiles,
                    size,
                    csize,
                },
            ));
        })?;
        self.chunks = master;
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fresh);
        Ok(())
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

    /// The refcount of a chunk, refusing a known id with another size (borg's check against
    /// hash collisions and corruption).
    pub fn seen_chunk_sized(&self, id: &ObjectId, size: u32) -> Result<u32> {
        match self.chunks.get(id) {
            Some(e) if e.size != size => Err(Error::exception(format!(
                "chunk has same id [{}], but different size (stored: {} new: {})!",
                hex::encode(id),
                e.size,
                size
            ))),
            Some(e) => Ok(e.refcount),
            None => Ok(0),
        }
    }

    /// One more reference to a known chunk.
    pub fn chunk_incref(&mut self, id: &ObjectId, stats: &mut Statistics, part: bool) -> ChunkRef {
        self.ensure_txn();
        match self.chunks.incref(id) {
            Some(e) => {
                stats.update(e.size as u64, e.csize as u64, false, part);
                ChunkRef {
                    id: *id,
                    size: e.size,
                    csize: e.csize,
                }
            }
            None => {
                self.deferred_error.get_or_insert(chunks_index_error(id));
                ChunkRef {
                    id: *id,
                    size: 0,
                    csize: 0,
                }
            }
        }
    }

    /// A chunk this session just stored in the repository (refcount 1).
    pub fn add_chunk(
        &mut self,
        id: &ObjectId,
        size: u32,
        csize: u32,
        stats: &mut Statistics,
        part: bool,
    ) -> ChunkRef {
        self.ensure_txn();
        let before = self.seen_chunk(id);
        self.chunks.add(id, 1, size, csize);
        stats.update(size as u64, csize as u64, before == 0, part);
        ChunkRef {
            id: *id,
            size,
            csize,
        }
    }

    /// One reference less; at zero the object is deleted from the repository.
    ///
    /// `stats` receives borg's negative update: the sizes are subtracted (wrapping), so after
    /// a deletion starting from zero the fields read as `i64` are the negative amounts.
    pub fn chunk_decref(&mut self, id: &ObjectId, stats: &mut Statistics) -> Result<()> {
        self.chunk_decref_part(id, stats, false)
    }

    /// [`chunk_decref`](Self::chunk_decref) for a chunk of a checkpoint part file.
    pub fn chunk_decref_part(
        &mut self,
        id: &ObjectId,
        stats: &mut Statistics,
        part: bool,
    ) -> Result<()> {
        if !self.txn_active {
            self.begin_txn()?;
        }
        let e = self
            .chunks
            .decref(id)
            .ok_or_else(|| chunks_index_error(id))?;
        let unique = e.refcount == 0;
        subtract(stats, e.size as u64, e.csize as u64, unique, part);
        if unique {
            self.chunks.remove(id);
            self.repo.delete(id)?;
        }
        Ok(())
    }

    /// (known, chunk ids if unchanged) for a regular file, by its path hash
    /// (`id_hash` of the absolute path bytes), per the files cache mode.
    pub fn file_known_and_unchanged(
        &self,
        path_hash: &ObjectId,
        st: &FileStat,
    ) -> (bool, Option<Vec<ObjectId>>) {
        match &self.files {
            Some(f) => f.known_and_unchanged(self.opts.files_cache_mode, path_hash, st),
            None => (false, None),
        }
    }

    /// Remember a regular file's stat and chunk ids for the next backup.
    pub fn memorize_file(&mut self, path_hash: &ObjectId, st: &FileStat, ids: &[ObjectId]) {
        let mode = self.opts.files_cache_mode;
        if let Some(f) = self.files.as_mut() {
            f.memorize(mode, path_hash, st, ids);
        }
    }

    /// [`memorize_file`](Self::memorize_file) for all files of a backup, consuming them.
    pub fn memorize_files(&mut self, files: Vec<(ObjectId, FileMemo, Vec<ObjectId>)>) {
        let mode = self.opts.files_cache_mode;
        if let Some(f) = self.files.as_mut() {
            f.reserve(files.len());
            for (path_hash, st, ids) in files {
                f.memorize_owned(mode, path_hash, st, ids);
            }
        }
    }

    /// The files cache (None when disabled).
    pub fn files(&self) -> Option<&FilesCache> {
        self.files.as_ref()
    }

    /// Whether a transaction is open (changes not yet committed).
    pub fn txn_active(&self) -> bool {
        self.txn_active
    }

    /// After the repository commit: save files cache, chunks index and config, and update the
    /// security dir (manifest timestamp, key type, location).
    pub fn commit(&mut self, manifest: &Manifest) -> Result<()> {
        self.follow_manifest(manifest);
        if !self.txn_active {
            return match self.deferred_error.take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        let key_type = self.key.key_type();
        self.security.save(&manifest.timestamp, key_type)?;
        let mut pi = self.progress_message("cache.commit");
        if let Some(files) = &self.files {
            pi.output("Saving files cache");
            let digests = files.save(&self.files_path(), files::files_cache_ttl())?;
            self.config
                .set_integrity(&self.files_name, digests.to_json());
        }
        pi.output("Saving chunks cache");
        let digests = self.chunks.write_path(&self.path.join("chunks"), None)?;
        self.config.set_integrity("chunks", digests.to_json());
        pi.output("Saving cache config");
        self.config.save(
            Some((&manifest.id, &manifest.timestamp)),
            Some(key_type as u8),
        )?;
        let tmp = self.path.join("txn.tmp");
        fs::rename(self.path.join("txn.active"), &tmp)?;
        fs::remove_dir_all(&tmp)?;
        self.txn_active = false;
        pi.finish();
        Ok(())
    }

    /// Take the archive list of `manifest` (what `summary` reports on).
    pub fn follow_manifest(&mut self, manifest: &Manifest) {
        self.archives = manifest.archives.clone();
    }

    /// Forget the changes of this session.
    pub fn rollback(&mut self) {
        if let Err(e) = self.rollback_inner() {
            output::log(
                Level::Warning,
                sync::LOGGER,
                &format!("Cache rollback failed: {e}"),
                None,
            );
        }
        self.deferred_error = None;
    }

    /// Statistics totals of an archive (borg's `calc_stats(want_unique=False)`): from its
    /// borg 1.2 metadata, else from `pre12-meta` or by reading its items.
    pub fn archive_totals(&self, archive: &Archive) -> Result<ArchiveTotals> {
        if let Some(t) = self.memo_totals(&archive.id) {
            return Ok(t);
        }
        let t = if stats::has_borg12_stats(&archive.meta) {
            let (nfiles, size, csize) = stats::archive_totals(
                &archive.meta,
                &ItemTotals::default(),
                self.opts.consider_part_files,
            );
            ArchiveTotals {
                nfiles,
                size,
                csize,
            }
        } else {
            let known = self
                .pre12
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&archive.id);
            match known {
                Some(t) => t,
                None => {
                    let built = sync::build_archive_index(&self.repo, &self.key, &archive.id)?;
                    let (nfiles, size, csize) = stats::archive_totals(
                        &archive.meta,
                        &built.item_totals,
                        self.opts.consider_part_files,
                    );
                    let t = ArchiveTotals {
                        nfiles,
                        size,
                        csize,
                    };
                    self.pre12
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(&archive.id, t);
                    t
                }
            }
        };
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(archive.id, t);
        Ok(t)
    }

    fn memo_totals(&self, id: &ObjectId) -> Option<ArchiveTotals> {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    /// The chunk references of one archive (its `chunks.archive.d` index, or read from the
    /// repository): with [`ChunkIndex::stats_against`] the master index it gives the
    /// archive's deduplicated size.
    pub fn archive_index(&self, id: &ObjectId) -> Result<ChunkIndex> {
        if self.do_cache {
            let path = self.archive_dir().compact_path(id);
            if path.exists() {
                if let Ok(idx) = ChunkIndex::read_path_detached(&path, true) {
                    return Ok(idx);
                }
            }
        }
        Ok(sync::build_archive_index(&self.repo, &self.key, id)?.index)
    }

    /// The `cache.stats` summary (totals summed over the archives' own statistics).
    pub fn summary(&self) -> Result<stats::Summary> {
        let mut s = self.chunks.summarize();
        let per_archive: Vec<ArchiveTotals> = self
            .archives
            .par_iter()
            .map(|info| match self.memo_totals(&info.id) {
                Some(t) => Ok(t),
                None => {
                    let archive = Archive::load(self.repo.as_ref(), &self.key, &info.id)?;
                    self.archive_totals(&archive)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        s.total_size = per_archive.iter().map(|t| t.size).sum();
        s.total_csize = per_archive.iter().map(|t| t.csize).sum();
        Ok(s)
    }

    /// Remove the cache of a repository (borg's `Cache.destroy`: config first, then the rest;
    /// nothing happens when there is no config).
    pub fn destroy(repo_id_hex: &str) -> Result<()> {
        let path = crate::paths::repo_cache_dir(repo_id_hex);
        let config = path.join("config");
        if config.exists() {
            fs::remove_file(&config)?;
            fs::remove_dir_all(&path)?;
        }
        Ok(())
    }

    /// Remove the cache lock whoever holds it (`break-lock`).
    pub fn break_lock(repo_id_hex: &str) -> Result<()> {
        let path = crate::paths::repo_cache_dir(repo_id_hex);
        Lock::new(&path.join("lock"), true, None).break_lock()
    }
}

/// borg's `Statistics.update(-size, -csize, unique, part)` on unsigned counters.
fn subtract(stats: &mut Statistics, size: u64, csize: u64, unique: bool, part: bool) {
    let (o, c, u) = if part {
        (
            &mut stats.osize_parts,
            &mut stats.csize_parts,
            &mut stats.usize_parts,
        )
    } else {
        (&mut stats.osize, &mut stats.csize, &mut stats.usize)
    };
    *o = o.wrapping_sub(size);
    *c = c.wrapping_sub(csize);
    if unique {
        *u = u.wrapping_sub(csize);
    }
}

/// The files cache file kept in a transaction dir (`files` or `files.<suffix>`).
fn discover_files_cache_name(dir: &Path) -> Option<String> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n == "files" || n.starts_with("files."))
}

impl Drop for Cache {
    fn drop(&mut self) {
        let pre12 = self.pre12.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path.join("pre12-meta");
        if pre12.dirty || !path.exists() {
            let _ = pre12.save(&path);
        }
        drop(pre12);
        if let Some(mut lock) = self.lock.take() {
            let _ = lock.release();
        }
    }
}

#[cfg(test)]
mod tests;
