//! A repository on a local file system: segments, index/hints/integrity, transactions, locks
//! (repository-format.md §1, §3). Mirrors borg's `Repository` class.
//!
//! Reading: the index of the committed transaction T is loaded on first use. If it is
//! missing, stale or corrupt, the segments are replayed to rebuild it (§3.7); the rebuilt
//! files are written only when the exclusive lock can be taken, otherwise the index lives in
//! memory only. A read-only user of an intact repository never changes a byte of it.
//!
//! Writing: `put`/`delete` append to segments T+1…, `commit` writes the COMMIT segment,
//! optionally compacts, and writes `hints.T`, `index.T`, `integrity.T`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions as FsOpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::RngCore;
use rmpv::Value;

use super::config::{parse_bool, parse_file_size, parse_int, Ini};
use super::integrity::{Digests, IntegrityReader, IntegrityWriter};
use super::lock::{os_error_text, Lock};
use super::segments::{
    self, sync_dir, SegmentStore, SegmentWriter, WriteError, ATTIC_MAGIC, DEFAULT_MAX_SEGMENT_SIZE,
    DEFAULT_SEGMENTS_PER_DIR, HEADER_SIZE, MAX_OBJECT_SIZE, MAX_SEGMENT_SIZE_LIMIT,
    PUT_HEADER_SIZE, TAG_COMMIT, TAG_DELETE, TAG_PUT,
};
use super::{abspath, ObjectId, Repository};
use crate::errors::{Error, ErrorKind, Result};
use crate::hashindex::NsIndex;
use crate::msgpack::{self, ValueExt};
use crate::output::{self, Level};

const LOGGER: &str = "borg.repository";

/// Exact README written by borg 1.2 / 1.4.
pub const REPOSITORY_README: &str =
    "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n";

fn log(level: Level, msg: &str) {
    output::log(level, LOGGER, msg, None)
}

fn os_err(e: &io::Error, path: &Path) -> Error {
    Error::exception(os_error_text(e, path))
}

/// borg's `format_file_size` (decimal units, two decimals above 1000).
pub fn format_file_size(v: i64) -> String {
    const UNITS: [&str; 9] = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    let mut num = v as f64;
    let mut prec = 0;
    for unit in &UNITS[..UNITS.len() - 1] {
        if ((num * 100.0).round() / 100.0).abs() < 1000.0 {
            return format!("{num:.prec$} {unit}B");
        }
        num /= 1000.0;
        prec = 2;
    }
    format!("{num:.prec$} {}B", UNITS[UNITS.len() - 1])
}

/// How to open a repository (borg's `Repository(...)` arguments).
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Take the lock exclusively (writers).
    pub exclusive: bool,
    /// `--lock-wait` seconds; `None` waits forever.
    pub lock_wait: Option<f64>,
    /// `false` = `--bypass-lock`.
    pub lock: bool,
    /// `--append-only` (can only turn append-only on).
    pub append_only: bool,
    /// Override of the config's storage quota (`borg serve --storage-quota`).
    pub storage_quota: Option<u64>,
    /// Refuse attic repositories (borg's `check_segment_magic`).
    pub check_segment_magic: bool,
    /// With a shared lock: upgrade it on the first write instead of refusing to write (borg's
    /// `exclusive=None`, sent by clients before 1.0.7).
    pub upgrade_lock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            exclusive: false,
            lock_wait: Some(1.0),
            lock: true,
            append_only: false,
            storage_quota: None,
            check_segment_magic: true,
            upgrade_lock: false,
        }
    }
}

/// Settings read from `config`.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    pub segments_per_dir: u32,
    pub max_segment_size: u64,
    pub additional_free_space: u64,
    pub storage_quota: u64,
    pub append_only: bool,
}

/// Compaction bookkeeping of a transaction (the content of `hints.T`, §3.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Live PUTs per segment.
    pub segments: BTreeMap<u32, i64>,
    /// Freeable bytes per segment.
    pub compact: BTreeMap<u32, u64>,
    pub storage_quota_use: u64,
    /// Segments still holding PUTs of deleted or superseded keys.
    pub shadow_index: HashMap<ObjectId, Vec<u32>>,
}

impl Hints {
    /// msgpack as borg writes it (version 2; map order version, segments, compact,
    /// storage_quota_use, shadow_index).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + self.segments.len() * 12 + self.shadow_index.len() * 40);
        msgpack::pack_map_len(&mut out, 5);
        msgpack::pack_raw(&mut out, b"version");
        msgpack::pack_uint(&mut out, 2);
        msgpack::pack_raw(&mut out, b"segments");
        msgpack::pack_map_len(&mut out, self.segments.len());
        for (seg, count) in &self.segments {
            msgpack::pack_uint(&mut out, *seg as u64);
            msgpack::pack_int(&mut out, *count);
        }
        msgpack::pack_raw(&mut out, b"compact");
        msgpack::pack_map_len(&mut out, self.compact.len());
        for (seg, free) in &self.compact {
            msgpack::pack_uint(&mut out, *seg as u64);
            msgpack::pack_uint(&mut out, *free);
        }
        msgpack::pack_raw(&mut out, b"storage_quota_use");
        msgpack::pack_uint(&mut out, self.storage_quota_use);
        msgpack::pack_raw(&mut out, b"shadow_index");
        msgpack::pack_map_len(&mut out, self.shadow_index.len());
        let mut keys: Vec<&ObjectId> = self.shadow_index.keys().collect();
        keys.sort();
        for k in keys {
            msgpack::pack_raw(&mut out, k);
            let segs = &self.shadow_index[k];
            msgpack::pack_array_len(&mut out, segs.len());
            for s in segs {
                msgpack::pack_uint(&mut out, *s as u64);
            }
        }
        out
    }
}

/// What a decoded hints file says (version 1 needs a rebuild of `compact`).
enum DecodedHints {
    V2(Hints),
    V1 {
        segments: BTreeMap<u32, i64>,
        compact_segments: Vec<u32>,
    },
}

fn decode_hints(data: &[u8]) -> Result<DecodedHints> {
    let bad = |what: &str| Error::exception(format!("Invalid hints file: {what}"));
    let v = msgpack::unpack(data)?;
    let version = v
        .get("version")
        .and_then(|x| x.as_int())
        .ok_or_else(|| bad("no version"))?;
    let int_map = |val: Option<&Value>, what: &str| -> Result<BTreeMap<u32, i64>> {
        let mut out = BTreeMap::new();
        for (k, v) in val.and_then(|m| m.as_entries()).ok_or_else(|| bad(what))? {
            let k = k
                .as_uint()
                .and_then(|k| u32::try_from(k).ok())
                .ok_or_else(|| bad(what))?;
            out.insert(k, v.as_int().ok_or_else(|| bad(what))?);
        }
        Ok(out)
    };
    let segments = int_map(v.get("segments"), "segments")?;
    match version {
        1 => {
            let list = v
                .get("compact")
                .and_then(|c| c.as_list())
                .ok_or_else(|| bad("compact"))?;
            let mut compact_segments = Vec::new();
            for s in list {
                compact_segments.push(
                    s.as_uint()
                        .and_then(|s| u32::try_from(s).ok())
                        .ok_or_else(|| bad("compact"))?,
                );
            }
            Ok(DecodedHints::V1 {
                segments,
                compact_segments,
            })
        }
        2 => {
            let compact = int_map(v.get("compact"), "compact")?
                .into_iter()
                .map(|(k, v)| (k, v.max(0) as u64))
                .collect();
            let storage_quota_use = match v.get("storage_quota_use") {
                None => 0,
                Some(q) => q.as_uint().ok_or_else(|| bad("storage_quota_use"))?,
            };
            let mut shadow_index = HashMap::new();
            if let Some(si) = v.get("shadow_index") {
                for (k, segs) in si.as_entries().ok_or_else(|| bad("shadow_index"))? {
                    let key: ObjectId = k
                        .as_bytes()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| bad("shadow_index key"))?;
                    let mut list = Vec::new();
                    for s in segs.as_list().ok_or_else(|| bad("shadow_index"))? {
                        list.push(
                            s.as_uint()
                                .and_then(|s| u32::try_from(s).ok())
                                .ok_or_else(|| bad("shadow_index"))?,
                        );
                    }
                    shadow_index.insert(key, list);
                }
            }
            Ok(DecodedHints::V2(Hints {
                segments,
                compact,
                storage_quota_use,
                shadow_index,
            }))
        }
        other => Err(Error::exception(format!(
            "Unknown hints file version: {other}"
        ))),
    }
}

/// The active transaction's writer.
struct Txn {
    writer: SegmentWriter,
    /// First segment this transaction writes to.
    first_segment: u32,
    /// Set when a PUT exceeded the storage quota: commit refuses.
    doomed: Option<Error>,
}

/// Mutable state behind the repository's RwLock.
#[derive(Default)]
struct State {
    /// Index of transaction `txn_id` (plus uncommitted changes while `txn` is active).
    index: Option<NsIndex>,
    /// Bookkeeping matching `index`, once loaded.
    hints: Option<Hints>,
    /// Transaction id the loaded index belongs to (`None` = empty repository).
    txn_id: Option<u32>,
    txn: Option<Txn>,
}

/// A local repository. Share it between threads (`&self` everywhere).
pub struct LocalRepository {
    path: PathBuf,
    id: ObjectId,
    settings: RepoSettings,
    config: Mutex<Ini>,
    do_lock: bool,
    upgrade_lock: bool,
    lock: Mutex<Option<Lock>>,
    io: SegmentStore,
    state: RwLock<State>,
    /// Created by this process (`init`): a failing first commit destroys it again.
    created: bool,
}

impl std::fmt::Debug for LocalRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<LocalRepository {}>", self.path.display())
    }
}

fn invalid_config(path: &Path, why: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::RepositoryInvalidRepositoryConfig,
        [path.display().to_string(), why.into()],
    )
}

/// Whether `path` holds a borg repository (README marker in its first 100 bytes).
pub fn is_repository(path: &Path) -> bool {
    let Ok(mut f) = File::open(path.join("README")) else {
        return false;
    };
    let mut head = Vec::with_capacity(100);
    if Read::by_ref(&mut f)
        .take(100)
        .read_to_end(&mut head)
        .is_err()
    {
        return false;
    }
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    contains(b"Borg Backup repository") || contains(b"Borg repository")
}

/// Write a file atomically: temp file `<name>-<random>.tmp` in the same directory, fsync,
/// rename over the target, fsync the directory (borg's SaveFile).
pub fn save_file(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut f, tmp) = loop {
        let mut rnd = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut rnd);
        let tmp = dir.join(format!("{name}-{}.tmp", hex::encode(rnd)));
        match FsOpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&tmp)
        {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(os_err(&e, &tmp)),
        }
    };
    let written = f.write_all(content).and_then(|()| f.sync_data());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(os_err(&e, path));
    }
    sync_dir(dir)
}

/// Overwrite a file with random bytes (unless other hard links share it) and unlink it.
fn secure_erase(path: &Path) -> Result<()> {
    {
        let mut f = FsOpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| os_err(&e, path))?;
        let meta = f.metadata()?;
        if meta.nlink() <= 1 {
            let mut junk = vec![0u8; meta.len() as usize];
            rand::thread_rng().fill_bytes(&mut junk);
            f.write_all(&junk)?;
            f.sync_all()?;
        }
    }
    fs::remove_file(path).map_err(|e| os_err(&e, path))
}

fn fsync_file(f: &File) -> Result<()> {
    f.sync_all()?;
    Ok(())
}

impl LocalRepository {
    /// Open an existing repository (borg's `Repository(path, exclusive=…, lock_wait=…,
    /// lock=…, append_only=…).__enter__()`).
    pub fn open(
        path: &Path,
        exclusive: bool,
        lock_wait: f64,
        lock: bool,
        append_only_override: bool,
    ) -> Result<Self> {
        let opts = OpenOptions {
            exclusive,
            lock_wait: if lock_wait < 0.0 {
                None
            } else {
                Some(lock_wait)
            },
            lock,
            append_only: append_only_override,
            ..OpenOptions::default()
        };
        Self::open_with(path, &opts)
    }

    /// Open with all of borg's options.
    pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<Self> {
        Self::open_inner(path, opts, false)
    }

    fn open_inner(path: &Path, opts: &OpenOptions, created: bool) -> Result<Self> {
        let path = abspath(path);
        let shown = path.display().to_string();
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(ErrorKind::RepositoryDoesNotExist, [shown]))
            }
            Err(e) => return Err(os_err(&e, &path)),
            Ok(m) if !m.is_dir() => {
                return Err(Error::new(ErrorKind::RepositoryInvalidRepository, [shown]))
            }
            Ok(_) => {}
        }
        // the lock (and its release on error, via Drop) comes first, as in borg
        let lock = if opts.lock {
            Some(Lock::new(&path.join("lock"), opts.exclusive, opts.lock_wait).acquire()?)
        } else {
            None
        };
        let config_path = path.join("config");
        let text = match fs::read(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(ErrorKind::RepositoryInvalidRepository, [shown]))
            }
            Err(e) => return Err(os_err(&e, &config_path)),
        };
        let text = String::from_utf8(text)
            .map_err(|_| invalid_config(&path, "config is not valid UTF-8"))?;
        let config = Ini::parse(&text).map_err(|e| invalid_config(&path, e))?;
        let settings = Self::read_settings(&path, &config, opts)?;
        let id_text = config
            .get("repository", "id")
            .ok_or_else(|| invalid_config(&path, "no option 'id'"))?;
        let id: ObjectId = hex::decode(id_text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid_config(&path, "invalid repository id"))?;
        let io = SegmentStore::new(&path, settings.segments_per_dir);
        if opts.check_segment_magic {
            if let Some(latest) = io.latest_segment()? {
                if io.segment_magic(latest)? == ATTIC_MAGIC {
                    return Err(Error::new(ErrorKind::RepositoryAtticRepository, [shown]));
                }
            }
        }
        Ok(LocalRepository {
            path,
            id,
            settings,
            config: Mutex::new(config),
            do_lock: opts.lock,
            upgrade_lock: opts.upgrade_lock,
            lock: Mutex::new(lock),
            io,
            state: RwLock::new(State::default()),
            created,
        })
    }

    fn read_settings(path: &Path, config: &Ini, opts: &OpenOptions) -> Result<RepoSettings> {
        if !config.has_section("repository") {
            return Err(invalid_config(path, "no repository section found"));
        }
        let get = |key: &str| config.get("repository", key);
        let need =
            |key: &str| get(key).ok_or_else(|| invalid_config(path, format!("no option '{key}'")));
        let int = |key: &str| -> Result<i64> {
            let v = need(key)?;
            parse_int(v).ok_or_else(|| invalid_config(path, format!("invalid {key} {v:?}")))
        };
        let size = |key: &str, fallback: bool| -> Result<i64> {
            match get(key) {
                None if fallback => Ok(0),
                None => Err(invalid_config(path, format!("no option '{key}'"))),
                Some(v) => parse_file_size(v)
                    .ok_or_else(|| invalid_config(path, format!("invalid {key} {v:?}"))),
            }
        };
        let version = int("version")?;
        if version != 1 {
            return Err(invalid_config(
                path,
                format!("repository version {version} is not supported by this borg version"),
            ));
        }
        let max_segment_size = size("max_segment_size", false)?;
        if max_segment_size >= MAX_SEGMENT_SIZE_LIMIT as i64 {
            return Err(invalid_config(
                path,
                format!("max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}"),
            ));
        }
        let segments_per_dir = int("segments_per_dir")?;
        if segments_per_dir <= 0 || segments_per_dir > u32::MAX as i64 {
            return Err(invalid_config(
                path,
                format!("invalid segments_per_dir {segments_per_dir}"),
            ));
        }
        let additional_free_space = size("additional_free_space", true)?.max(0) as u64;
        let config_append_only = match get("append_only") {
            None => false,
            Some(v) => {
                parse_bool(v).ok_or_else(|| invalid_config(path, format!("Not a boolean: {v}")))?
            }
        };
        let storage_quota = match opts.storage_quota {
            Some(q) => q,
            None => size("storage_quota", true)?.max(0) as u64,
        };
        Ok(RepoSettings {
            segments_per_dir: segments_per_dir as u32,
            max_segment_size: max_segment_size.max(0) as u64,
            additional_free_space,
            storage_quota,
            append_only: opts.append_only || config_append_only,
        })
    }

    /// Create a new, empty repository at `path` (borg's `Repository.create`): README, `data/`
    /// and `config` with a random id. Refuses existing repositories, non-empty directories
    /// and paths inside another repository.
    pub fn create(
        path: &Path,
        append_only: bool,
        storage_quota: u64,
        make_parent_dirs: bool,
    ) -> Result<()> {
        let path = abspath(path);
        let shown = path.display().to_string();
        match fs::metadata(&path) {
            Ok(m) => {
                if is_repository(&path) {
                    return Err(Error::new(ErrorKind::RepositoryAlreadyExists, [shown]));
                }
                if !m.is_dir() {
                    return Err(Error::new(ErrorKind::RepositoryPathAlreadyExists, [shown]));
                }
                match fs::read_dir(&path) {
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        return Err(Error::new(
                            ErrorKind::RepositoryPathPermissionDenied,
                            [shown],
                        ))
                    }
                    Err(e) => return Err(os_err(&e, &path)),
                    Ok(mut rd) => {
                        if rd.next().is_some() {
                            return Err(Error::new(
                                ErrorKind::RepositoryPathAlreadyExists,
                                [shown],
                            ));
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Error::new(
                    ErrorKind::RepositoryPathPermissionDenied,
                    [shown],
                ))
            }
            Err(_) => {}
        }
        let mut parent = path.parent();
        while let Some(p) = parent {
            if is_repository(p) {
                return Err(Error::new(
                    ErrorKind::RepositoryAlreadyExists,
                    [p.display().to_string()],
                ));
            }
            parent = p.parent();
        }
        if make_parent_dirs {
            if let Some(p) = path.parent() {
                fs::create_dir_all(p).map_err(|e| os_err(&e, p))?;
            }
        }
        if !path.exists() {
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::new(
                        ErrorKind::RepositoryParentPathDoesNotExist,
                        [shown],
                    ))
                }
                Err(e) => return Err(os_err(&e, &path)),
            }
        }
        fs::write(path.join("README"), REPOSITORY_README)
            .map_err(|e| os_err(&e, &path.join("README")))?;
        fs::create_dir(path.join("data")).map_err(|e| os_err(&e, &path.join("data")))?;
        let mut config = Ini::new();
        config.add_section("repository");
        config.set("repository", "version", "1");
        config.set(
            "repository",
            "segments_per_dir",
            &DEFAULT_SEGMENTS_PER_DIR.to_string(),
        );
        config.set(
            "repository",
            "max_segment_size",
            &DEFAULT_MAX_SEGMENT_SIZE.to_string(),
        );
        config.set(
            "repository",
            "append_only",
            if append_only { "1" } else { "0" },
        );
        config.set("repository", "storage_quota", &storage_quota.to_string());
        config.set("repository", "additional_free_space", "0");
        let mut id = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        config.set("repository", "id", &hex::encode(id));
        save_config(&path, &config, true)
    }

    /// Create a repository and open it exclusively (borg's `Repository(create=True,
    /// exclusive=True)`). The caller then stores the key, PUTs the manifest and commits.
    pub fn init(
        path: &Path,
        append_only: bool,
        storage_quota: u64,
        make_parent_dirs: bool,
        lock_wait: f64,
    ) -> Result<Self> {
        Self::create(path, append_only, storage_quota, make_parent_dirs)?;
        let opts = OpenOptions {
            exclusive: true,
            lock_wait: if lock_wait < 0.0 {
                None
            } else {
                Some(lock_wait)
            },
            ..OpenOptions::default()
        };
        Self::open_inner(path, &opts, true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    pub fn segments_per_dir(&self) -> u32 {
        self.settings.segments_per_dir
    }

    pub fn max_segment_size(&self) -> u64 {
        self.settings.max_segment_size
    }

    /// A copy of the parsed `config`.
    pub fn config(&self) -> Ini {
        self.config_guard().clone()
    }

    /// Replace the config and save it (borg's `save_config`; `borg config` edits).
    pub fn replace_config(&self, config: Ini) -> Result<()> {
        let mut current = self.config_guard();
        save_config(&self.path, &config, self.do_lock)?;
        *current = config;
        Ok(())
    }

    fn config_guard(&self) -> MutexGuard<'_, Ini> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_guard(&self) -> MutexGuard<'_, Option<Lock>> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn path_text(&self) -> String {
        self.path.display().to_string()
    }

    /// The segment store (segment files, entry reads).
    pub fn segments(&self) -> &SegmentStore {
        &self.io
    }

    /// Whether we hold the exclusive lock (always true with `--bypass-lock`).
    pub fn got_exclusive_lock(&self) -> bool {
        !self.do_lock
            || self
                .lock_guard()
                .as_ref()
                .is_some_and(|l| l.got_exclusive_lock())
    }

    /// Highest `index.N` with non-zero size.
    pub fn index_transaction_id(&self) -> Result<Option<u32>> {
        let rd = fs::read_dir(&self.path).map_err(|e| os_err(&e, &self.path))?;
        let mut best: Option<u32> = None;
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_prefix("index.")) else {
                continue;
            };
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(n) = n.parse::<u32>() else { continue };
            if e.metadata().map(|m| m.len() != 0).unwrap_or(false) && best.is_none_or(|b| n > b) {
                best = Some(n);
            }
        }
        Ok(best)
    }

    /// The committed transaction id (rebuilding the index first if needed).
    pub fn get_transaction_id(&self) -> Result<Option<u32>> {
        let mut st = self.write_state();
        self.ensure_index(&mut st)?;
        Ok(st.txn_id)
    }

    /// Read guard with the index loaded.
    fn read_state(&self) -> Result<RwLockReadGuard<'_, State>> {
        loop {
            {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                if st.index.is_some() {
                    return Ok(st);
                }
            }
            let mut st = self.write_state();
            self.ensure_index(&mut st)?;
        }
    }

    fn read_integrity(&self, t: u32, key: &str) -> Result<Option<String>> {
        let path = self.path.join(format!("integrity.{t}"));
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(os_err(&e, &path)),
        };
        let v = msgpack::unpack(&data)?;
        let version = v.get("version").and_then(|x| x.as_int());
        if version != Some(2) {
            let shown = version.map_or("None".to_string(), |x| x.to_string());
            log(
                Level::Warning,
                &format!("Unknown integrity data version {shown} in integrity.{t}"),
            );
            return Ok(None);
        }
        let text = v
            .get(key)
            .and_then(|x| x.as_bytes())
            .ok_or_else(|| Error::exception(format!("integrity.{t} has no {key} entry")))?;
        Ok(Some(String::from_utf8_lossy(text).into_owned()))
    }

    fn digests_for(&self, t: u32, key: &str, path: &Path) -> Result<Option<Digests>> {
        match self.read_integrity(t, key)? {
            Some(json) => Digests::parse(&path.display().to_string(), &json),
            None => Ok(None),
        }
    }

    /// Load `index.T`, verified against `integrity.T`.
    fn open_index(&self, t: u32) -> Result<NsIndex> {
        let path = self.path.join(format!("index.{t}"));
        let digests = self.digests_for(t, "index", &path)?;
        let file = io::BufReader::with_capacity(
            1 << 20,
            File::open(&path).map_err(|e| os_err(&e, &path))?,
        );
        let mut rd = IntegrityReader::new(
            file,
            &path.display().to_string(),
            &format!("index.{t}"),
            digests,
        );
        let index = NsIndex::read(&mut rd)?;
        rd.finish()?;
        Ok(index)
    }

    /// Load `hints.T`, verified against `integrity.T` (version 1 is upgraded by rescanning).
    fn load_hints(&self, t: u32, index: &NsIndex) -> Result<Hints> {
        let path = self.path.join(format!("hints.{t}"));
        let digests = self.digests_for(t, "hints", &path)?;
        let file = File::open(&path).map_err(|e| os_err(&e, &path))?;
        let mut rd = IntegrityReader::new(
            file,
            &path.display().to_string(),
            &format!("hints.{t}"),
            digests,
        );
        let mut data = Vec::new();
        rd.read_to_end(&mut data)?;
        rd.finish()?;
        match decode_hints(&data)? {
            DecodedHints::V2(h) => Ok(h),
            DecodedHints::V1 {
                segments,
                compact_segments,
            } => {
                log(Level::Debug, &format!("Upgrading from v1 hints.{t}"));
                let mut h = Hints {
                    segments,
                    ..Hints::default()
                };
                let mut todo = compact_segments;
                todo.sort_unstable();
                for seg in todo {
                    self.rebuild_sparse(&mut h, index, seg)?;
                }
                Ok(h)
            }
        }
    }

    fn rebuild_sparse(&self, h: &mut Hints, index: &NsIndex, segment: u32) -> Result<()> {
        let Ok(size) = self.io.segment_size(segment) else {
            h.segments.remove(&segment);
            return Ok(());
        };
        if h.segments.get(&segment).copied().unwrap_or(0) == 0 {
            h.compact.insert(segment, size);
            return Ok(());
        }
        let mut free = 0u64;
        for e in self.io.iter_objects_from(segment, 0, false, false)? {
            let e = e?;
            match e.tag {
                TAG_PUT if index.get(&e.key) != Some((segment, e.offset)) => free += e.size as u64,
                TAG_DELETE => free += e.size as u64,
                _ => {}
            }
        }
        h.compact.insert(segment, free);
        Ok(())
    }

    /// Make sure `st.index` holds the index of the committed transaction (§3.7).
    fn ensure_index(&self, st: &mut State) -> Result<()> {
        if st.index.is_some() {
            return Ok(());
        }
        let seg_t = self.io.segments_transaction_id()?;
        let idx_t = self.index_transaction_id()?;
        let Some(seg_t) = seg_t else {
            if idx_t.is_some() {
                let arg = format!(
                    "{}\" - although likely this is \"beyond repair",
                    self.path_text()
                );
                return Err(Error::new(ErrorKind::RepositoryCheckNeeded, [arg]));
            }
            st.index = Some(NsIndex::new());
            st.hints = Some(Hints::default());
            st.txn_id = None;
            return Ok(());
        };
        if idx_t == Some(seg_t) {
            match self.open_index(seg_t) {
                Ok(index) => {
                    st.index = Some(index);
                    st.hints = None;
                    st.txn_id = Some(seg_t);
                    return Ok(());
                }
                Err(e) => {
                    log(
                        Level::Warning,
                        &format!(
                            "Repository index missing or corrupted, trying to recover from: {e}"
                        ),
                    );
                    return self.recover_index(st, seg_t);
                }
            }
        }
        let from = match idx_t {
            Some(i) if i > seg_t => None,
            other => other,
        };
        self.rebuild_index(st, from, seg_t)
    }

    /// A committed index that cannot be read is rebuilt from the segments. Holding the
    /// exclusive lock, the damaged file is removed and the recovery committed (a commit-only
    /// segment `t + 1`), as borg's `open_index` does; otherwise (readers, `--bypass-lock`)
    /// nothing is committed.
    fn recover_index(&self, st: &mut State, t: u32) -> Result<()> {
        if !(self.do_lock && self.got_exclusive_lock()) {
            return self.rebuild_index(st, None, t);
        }
        let path = self.path.join(format!("index.{t}"));
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(os_err(&e, &path));
            }
        }
        self.rebuild_index(st, None, t)?;
        self.commit_locked(st, false, 0.0, false)
    }

    /// Replay segments (`from`, `to`] on top of index/hints of `from` (or from scratch), then
    /// persist the result if the exclusive lock is available.
    fn rebuild_index(&self, st: &mut State, from: Option<u32>, to: u32) -> Result<()> {
        let mut from = from;
        let (mut index, mut hints) = match from {
            None => (NsIndex::new(), Hints::default()),
            Some(f) => match self
                .open_index(f)
                .and_then(|i| self.load_hints(f, &i).map(|h| (i, h)))
            {
                Ok(x) => x,
                Err(e) => {
                    log(
                        Level::Warning,
                        &format!("Checking repository transaction due to previous error: {e}"),
                    );
                    from = None;
                    (NsIndex::new(), Hints::default())
                }
            },
        };
        // borg shows only a `Replaying segments NN%` progress indicator here (with --progress)
        for (segment, _) in self.io.segment_list(None, false)? {
            if from.is_some_and(|f| segment <= f) {
                continue;
            }
            if segment > to {
                break;
            }
            if !self.io.segment_exists(segment) {
                // truncated to zero = deleted (a crash between truncate and unlink)
                continue;
            }
            self.update_index(&mut index, &mut hints, segment)?;
        }
        self.persist_rebuilt(&index, &hints, to);
        st.index = Some(index);
        st.hints = Some(hints);
        st.txn_id = Some(to);
        Ok(())
    }

    /// Apply one segment's entries to index and bookkeeping (borg 1.4's `_update_index`).
    fn update_index(&self, index: &mut NsIndex, h: &mut Hints, segment: u32) -> Result<()> {
        let entries = self.io.iter_objects(segment, false)?;
        self.apply_entries(index, h, segment, entries)
    }

    fn apply_entries(
        &self,
        index: &mut NsIndex,
        h: &mut Hints,
        segment: u32,
        entries: impl Iterator<Item = Result<segments::Entry>>,
    ) -> Result<()> {
        if segment > crate::hashindex::MAX_VALUE {
            return Err(Error::integrity(format!(
                "maximum number of segments reached [segment {segment}]"
            )));
        }
        h.segments.insert(segment, 0);
        for e in entries {
            let e = e?;
            match e.tag {
                TAG_PUT => {
                    if let Some((s, _)) = index.get(&e.key) {
                        *h.compact.entry(s).or_insert(0) += e.size as u64;
                        *h.segments.entry(s).or_insert(0) -= 1;
                        h.shadow_index.entry(e.key).or_default().push(s);
                    }
                    index.insert(&e.key, segment, e.offset);
                    *h.segments.entry(segment).or_insert(0) += 1;
                    h.storage_quota_use += e.size as u64;
                }
                TAG_DELETE => {
                    if let Some((s, offset)) = index.remove(&e.key) {
                        if self.io.segment_exists(s) {
                            *h.segments.entry(s).or_insert(0) -= 1;
                            let size = self.io.read_size(s, offset, &e.key)?;
                            *h.compact.entry(s).or_insert(0) += size as u64;
                            h.shadow_index.entry(e.key).or_default().push(s);
                        }
                    }
                }
                TAG_COMMIT => {}
                tag => {
                    return Err(Error::new(
                        ErrorKind::RepositoryCheckNeeded,
                        [format!("Unexpected tag {tag} in segment {segment}")],
                    ))
                }
            }
        }
        if h.segments.get(&segment).copied().unwrap_or(0) == 0 {
            h.compact.insert(segment, self.io.segment_size(segment)?);
        }
        Ok(())
    }

    /// Write a rebuilt index triple when we hold or can get the exclusive lock; a reader that
    /// cannot (other readers, `--bypass-lock`, read-only file system) keeps it in memory.
    fn persist_rebuilt(&self, index: &NsIndex, hints: &Hints, t: u32) {
        if !self.do_lock {
            return;
        }
        let mut guard = self.lock_guard();
        let Some(lock) = guard.as_mut() else { return };
        let was_exclusive = lock.is_exclusive();
        if !was_exclusive {
            if let Err(e) = lock.upgrade() {
                log(
                    Level::Debug,
                    &format!("Not writing the rebuilt index (no exclusive lock: {e})"),
                );
                return;
            }
        }
        if let Err(e) = self.write_index(index, hints, t) {
            log(
                Level::Warning,
                &format!("Failed to write the rebuilt repository index: {e}"),
            );
        }
        if !was_exclusive {
            if let Err(e) = lock.downgrade() {
                log(
                    Level::Warning,
                    &format!("Failed to downgrade the repository lock: {e}"),
                );
            }
        }
    }

    /// Write hints, index and integrity files of transaction `t` in borg's order and remove
    /// all older ones (§3.3 step 6).
    fn write_index(&self, index: &NsIndex, hints: &Hints, t: u32) -> Result<()> {
        if self.settings.append_only {
            let path = self.path.join("transactions");
            let mut f = FsOpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| os_err(&e, &path))?;
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f");
            writeln!(f, "transaction {t}, UTC time {now}")?;
        }
        let hints_name = format!("hints.{t}");
        let hints_tmp = self.path.join(format!("{hints_name}.tmp"));
        let hints_file = File::create(&hints_tmp).map_err(|e| os_err(&e, &hints_tmp))?;
        let mut w = IntegrityWriter::new(hints_file, &hints_name);
        w.write_all(&hints.encode())?;
        let (hints_file, hints_digests) = w.finish()?;
        fsync_file(&hints_file)?;
        drop(hints_file);

        let index_name = format!("index.{t}");
        let index_tmp = self.path.join(format!("{index_name}.tmp"));
        let index_digests = index.write_path(&index_tmp, Some(&index_name))?;

        let integrity_name = format!("integrity.{t}");
        let integrity_tmp = self.path.join(format!("{integrity_name}.tmp"));
        let mut data = Vec::new();
        msgpack::pack_map_len(&mut data, 3);
        msgpack::pack_raw(&mut data, b"version");
        msgpack::pack_uint(&mut data, 2);
        msgpack::pack_raw(&mut data, b"hints");
        msgpack::pack_raw(&mut data, hints_digests.to_json().as_bytes());
        msgpack::pack_raw(&mut data, b"index");
        msgpack::pack_raw(&mut data, index_digests.to_json().as_bytes());
        let mut f = File::create(&integrity_tmp).map_err(|e| os_err(&e, &integrity_tmp))?;
        f.write_all(&data)?;
        fsync_file(&f)?;
        drop(f);

        let rename = |tmp: &Path, name: &str| -> Result<()> {
            let target = self.path.join(name);
            fs::rename(tmp, &target).map_err(|e| os_err(&e, &target))
        };
        rename(&integrity_tmp, &integrity_name)?;
        sync_dir(&self.path)?;
        rename(&hints_tmp, &hints_name)?;
        rename(&index_tmp, &index_name)?;
        sync_dir(&self.path)?;

        let current = format!(".{t}");
        for e in fs::read_dir(&self.path)
            .map_err(|e| os_err(&e, &self.path))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with("index.")
                || name.starts_with("hints.")
                || name.starts_with("integrity.");
            if ours && !name.ends_with(&current) {
                fs::remove_file(e.path()).map_err(|err| os_err(&err, &e.path()))?;
            }
        }
        Ok(())
    }

    /// Delete segments newer than `t` (all uncommitted work); `None` refuses when segment files
    /// exist, since nothing identifies a committed state then.
    fn cleanup(&self, t: Option<u32>) -> Result<()> {
        let segments = self.io.segment_list(None, true)?;
        let Some(t) = t else {
            if segments.is_empty() {
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::RepositoryCheckNeeded,
                [self.path_text()],
            ));
        };
        let mut count = 0;
        for (segment, _) in segments {
            if segment <= t {
                break;
            }
            self.io.delete_segment(segment)?;
            count += 1;
        }
        log(
            Level::Debug,
            &format!(
                "Cleaned up {count} uncommitted segment files (== everything after segment {t})."
            ),
        );
        Ok(())
    }

    /// Start a transaction if none is active (borg's `prepare_txn(get_transaction_id())`).
    fn prepare_txn(&self, st: &mut State) -> Result<()> {
        if st.txn.is_some() {
            return Ok(());
        }
        self.ensure_write_lock()?;
        self.ensure_index(st)?;
        let t = st.txn_id;
        self.cleanup(t)?;
        if st.hints.is_none() {
            let t = t.unwrap_or(0);
            let loaded = match st.index.as_ref() {
                Some(index) => self.load_hints(t, index),
                None => Err(Error::exception("index not loaded")),
            };
            match loaded {
                Ok(h) => st.hints = Some(h),
                Err(e) => {
                    log(
                        Level::Warning,
                        &format!(
                            "Repository hints file missing or corrupted, trying to recover: {e}"
                        ),
                    );
                    st.index = None;
                    self.rebuild_index(st, None, t)?;
                }
            }
        }
        if let (Some(h), Some(t)) = (st.hints.as_mut(), t) {
            for segs in h.shadow_index.values_mut() {
                segs.retain(|&s| s <= t);
            }
        }
        self.log_storage_quota(st.hints.as_ref().map_or(0, |h| h.storage_quota_use));
        let first_segment = t.map_or(0, |t| t + 1);
        st.txn = Some(Txn {
            writer: SegmentWriter::new(first_segment, self.settings.max_segment_size),
            first_segment,
            doomed: None,
        });
        Ok(())
    }

    fn log_storage_quota(&self, used: u64) {
        if self.settings.storage_quota > 0 {
            log(
                Level::Info,
                &format!(
                    "Storage quota: {} out of {} used.",
                    format_file_size(used as i64),
                    format_file_size(self.settings.storage_quota as i64)
                ),
            );
        }
    }

    /// Bookkeeping for superseding the PUT of `id` at (segment, offset) plus the DELETE entry.
    fn write_delete_of(
        &self,
        st: &mut State,
        id: &ObjectId,
        segment: u32,
        offset: u32,
    ) -> Result<()> {
        let size = self.io.read_size(segment, offset, id)?;
        let (Some(h), Some(txn)) = (st.hints.as_mut(), st.txn.as_mut()) else {
            return Err(Error::exception("no active transaction"));
        };
        h.shadow_index.entry(*id).or_default().push(segment);
        *h.segments.entry(segment).or_insert(0) -= 1;
        *h.compact.entry(segment).or_insert(0) += size as u64;
        let (seg, size) = txn
            .writer
            .write_delete(&self.io, id, false)
            .map_err(write_error)?;
        *h.compact.entry(seg).or_insert(0) += size as u64;
        h.segments.entry(seg).or_insert(0);
        Ok(())
    }

    fn put_locked(&self, st: &mut State, id: &ObjectId, data: &[u8]) -> Result<()> {
        self.prepare_txn(st)?;
        if let Some((segment, offset)) = st.index.as_ref().and_then(|i| i.get(id)) {
            self.write_delete_of(st, id, segment, offset)?;
        }
        let (Some(index), Some(h), Some(txn)) =
            (st.index.as_mut(), st.hints.as_mut(), st.txn.as_mut())
        else {
            return Err(Error::exception("no active transaction"));
        };
        let (segment, offset) = txn
            .writer
            .write_put(&self.io, id, data, false)
            .map_err(write_error)?;
        h.storage_quota_use += (data.len() + PUT_HEADER_SIZE) as u64;
        *h.segments.entry(segment).or_insert(0) += 1;
        index.insert(id, segment, offset);
        let quota = self.settings.storage_quota;
        if quota > 0 && h.storage_quota_use > quota {
            let e = Error::new(
                ErrorKind::RepositoryStorageQuotaExceeded,
                [
                    format_file_size(quota as i64),
                    format_file_size(h.storage_quota_use as i64),
                ],
            );
            txn.doomed = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    fn delete_locked(&self, st: &mut State, id: &ObjectId) -> Result<()> {
        self.prepare_txn(st)?;
        let Some((segment, offset)) = st.index.as_mut().and_then(|i| i.remove(id)) else {
            return Err(Error::new(
                ErrorKind::RepositoryObjectNotFound,
                [hex::encode(id), self.path_text()],
            ));
        };
        self.write_delete_of(st, id, segment, offset)
    }

    /// Abandon the active transaction and delete the uncommitted segments it wrote (borg
    /// leaves them to the next writer's cleanup, which cannot run when nothing was ever
    /// committed).
    fn discard_txn(&self, st: &mut State) -> Result<()> {
        let Some(mut txn) = st.txn.take() else {
            return Ok(());
        };
        txn.writer.abandon();
        let t = self.io.segments_transaction_id()?;
        for (segment, _) in self.io.segment_list(None, true)? {
            if segment < txn.first_segment || t.is_some_and(|t| segment <= t) {
                break;
            }
            self.io.delete_segment(segment)?;
        }
        Ok(())
    }

    /// Drop the transaction state; with `cleanup` also delete the uncommitted segments.
    fn rollback_locked(&self, st: &mut State, cleanup: bool) -> Result<()> {
        self.discard_txn(st)?;
        self.io.close_all();
        st.index = None;
        st.hints = None;
        if cleanup {
            if let Some(t) = self.io.segments_transaction_id()? {
                self.cleanup(Some(t))?;
            }
        }
        Ok(())
    }

    fn check_free_space(&self, st: &mut State) -> Result<()> {
        let (Some(index), Some(h)) = (st.index.as_ref(), st.hints.as_ref()) else {
            return Ok(());
        };
        let mut required = index.size() * 4;
        required += (h.segments.len() * 10 + h.compact.len() * 10 + 4096) as u64;
        required += self.settings.additional_free_space;
        if !self.settings.append_only {
            let full_segment = self.settings.max_segment_size + MAX_OBJECT_SIZE as u64;
            if h.compact.len() < 10 {
                let mut working = 0u64;
                for (seg, free) in &h.compact {
                    if let Ok(size) = self.io.segment_size(*seg) {
                        working += size.saturating_sub(*free);
                    }
                }
                required += working.min(full_segment);
            } else {
                required += full_segment;
            }
        }
        let free = match nix::sys::statvfs::statvfs(&self.path) {
            Ok(s) => s.blocks_available() * s.fragment_size(),
            Err(e) => {
                log(
                    Level::Warning,
                    &format!("Failed to check free space before committing: {e}"),
                );
                return Ok(());
            }
        };
        log(
            Level::Debug,
            &format!("check_free_space: required bytes {required}, free bytes {free}"),
        );
        if free < required {
            if self.created {
                log(
                    Level::Error,
                    "Not enough free space to initialize repository at this location.",
                );
                self.rollback_locked(st, false)?;
                self.destroy_files()?;
            } else {
                self.rollback_locked(st, true)?;
            }
            return Err(Error::new(
                ErrorKind::RepositoryInsufficientFreeSpace,
                [
                    format_file_size(required as i64),
                    format_file_size(free as i64),
                ],
            ));
        }
        Ok(())
    }

    fn commit_locked(
        &self,
        st: &mut State,
        compact: bool,
        threshold: f64,
        cleanup_commits: bool,
    ) -> Result<()> {
        if let Some(e) = st.txn.as_ref().and_then(|t| t.doomed.clone()) {
            self.rollback_locked(st, false)?;
            return Err(e);
        }
        self.prepare_txn(st)?;
        self.check_free_space(st)?;
        self.log_storage_quota(st.hints.as_ref().map_or(0, |h| h.storage_quota_use));
        let (Some(h), Some(txn)) = (st.hints.as_mut(), st.txn.as_mut()) else {
            return Err(Error::exception("no active transaction"));
        };
        let segment = txn.writer.write_commit(&self.io, false)?;
        h.segments.entry(segment).or_insert(0);
        *h.compact.entry(segment).or_insert(0) += HEADER_SIZE as u64;
        let mut t = segment;
        if compact && !self.settings.append_only {
            if cleanup_commits {
                for (seg, path) in self.io.segment_list(None, false)? {
                    if fs::metadata(&path).map(|m| m.len() == 17).unwrap_or(false) {
                        h.segments.insert(seg, 0);
                        h.compact.insert(seg, HEADER_SIZE as u64);
                    }
                }
            }
            t = self.compact_segments(st, threshold)?;
        }
        let (Some(index), Some(h)) = (st.index.as_ref(), st.hints.as_ref()) else {
            return Err(Error::exception("no active transaction"));
        };
        self.write_index(index, h, t)?;
        st.txn = None;
        st.txn_id = Some(t);
        Ok(())
    }

    /// Rewrite sparse segments (§3.8, borg 1.4 rules); returns the final transaction id.
    fn compact_segments(&self, st: &mut State, threshold: f64) -> Result<u32> {
        let index_txn = self.index_transaction_id()?;
        let (Some(index), Some(h), Some(txn)) =
            (st.index.as_mut(), st.hints.as_mut(), st.txn.as_mut())
        else {
            return Err(Error::exception("no active transaction"));
        };
        let io = &self.io;
        let writer = &mut txn.writer;
        if h.compact.is_empty() {
            log(Level::Debug, "nothing to do: compact empty");
            return Ok(writer.segment - 1);
        }
        let quota_before = h.storage_quota_use;
        let mut unused: Vec<u32> = Vec::new();

        let complete_xfer = |writer: &mut SegmentWriter,
                             h: &mut Hints,
                             unused: &mut Vec<u32>,
                             intermediate: bool|
         -> Result<u32> {
            let segment = writer.write_commit(io, intermediate)?;
            h.segments.entry(segment).or_insert(0);
            *h.compact.entry(segment).or_insert(0) += HEADER_SIZE as u64;
            for seg in unused.drain(..) {
                let count = h.segments.remove(&seg).unwrap_or(0);
                if count != 0 {
                    log(
                        Level::Warning,
                        &format!("Corrupted segment reference count {count} (expected 0) for segment {seg} - corrupted index or hints"),
                    );
                }
                io.delete_segment(seg)?;
                h.compact.remove(&seg);
            }
            Ok(segment)
        };

        log(
            Level::Debug,
            &format!(
                "Compaction started (threshold is {}%).",
                (threshold * 100.0) as i64
            ),
        );
        let todo: Vec<(u32, u64)> = h.compact.iter().map(|(k, v)| (*k, *v)).collect();
        let mut pi = output::ProgressPercent::new(
            todo.len() as u64,
            1.0,
            "Compacting segments %3.0f%%",
            "repository.compact_segments",
        );
        for (segment, freeable) in todo {
            pi.show(None, None);
            if !io.segment_exists(segment) {
                log(
                    Level::Warning,
                    &format!("segment {segment} not found, but listed in compaction data"),
                );
                h.compact.remove(&segment);
                continue;
            }
            let size = io.segment_size(segment)?;
            let ratio = freeable as f64 / size as f64;
            // NaN (empty segment file) counts as not worth compacting, as in borg
            if ratio.partial_cmp(&threshold) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            h.segments.entry(segment).or_insert(0);
            for e in io.iter_objects(segment, true)? {
                let e = e?;
                if e.tag == TAG_COMMIT {
                    continue;
                }
                let in_index = index.get_reordering(&e.key);
                let is_index_object = in_index == Some((segment, e.offset));
                if e.tag == TAG_PUT && is_index_object {
                    let data = e.data.as_deref().unwrap_or(&[]);
                    let (new_segment, offset) = match writer.write_put(io, &e.key, data, true) {
                        Ok(x) => x,
                        Err(WriteError::SegmentFull) => {
                            complete_xfer(writer, h, &mut unused, true)?;
                            writer
                                .write_put(io, &e.key, data, false)
                                .map_err(write_error)?
                        }
                        Err(WriteError::Failed(err)) => return Err(err),
                    };
                    index.insert(&e.key, new_segment, offset);
                    *h.segments.entry(new_segment).or_insert(0) += 1;
                    *h.segments.entry(segment).or_insert(0) -= 1;
                } else if e.tag == TAG_PUT {
                    if let Some(list) = h.shadow_index.get_mut(&e.key) {
                        if let Some(pos) = list.iter().position(|&s| s == segment) {
                            list.remove(pos);
                        }
                    }
                    h.storage_quota_use = h.storage_quota_use.saturating_sub(e.size as u64);
                } else if e.tag == TAG_DELETE && in_index.is_none() {
                    let shadowed = h.shadow_index.get(&e.key);
                    let shadowed_put_exists =
                        shadowed.is_none_or(|l| l.iter().any(|&s| s < segment));
                    let delete_is_not_stable = index_txn.is_none_or(|t| segment > t);
                    if shadowed_put_exists || delete_is_not_stable {
                        let (new_segment, size) = match writer.write_delete(io, &e.key, true) {
                            Ok(x) => x,
                            Err(WriteError::SegmentFull) => {
                                complete_xfer(writer, h, &mut unused, true)?;
                                writer
                                    .write_delete(io, &e.key, false)
                                    .map_err(write_error)?
                            }
                            Err(WriteError::Failed(err)) => return Err(err),
                        };
                        *h.compact.entry(new_segment).or_insert(0) += size as u64;
                        h.segments.entry(new_segment).or_insert(0);
                    } else if h.shadow_index.get(&e.key).is_some_and(|l| l.is_empty()) {
                        h.shadow_index.remove(&e.key);
                    }
                }
            }
            let count = h.segments.get(&segment).copied().unwrap_or(0);
            if count != 0 {
                log(
                    Level::Warning,
                    &format!("Corrupted segment reference count {count} (expected 0) for segment {segment} - corrupted index or hints"),
                );
            }
            unused.push(segment);
        }
        pi.finish();
        let t = complete_xfer(writer, h, &mut unused, false)?;
        io.clear_empty_dirs()?;
        let freed = quota_before as i64 - h.storage_quota_use as i64;
        log(
            Level::Info,
            &format!(
                "compaction freed about {} repository space.",
                format_file_size(freed)
            ),
        );
        log(Level::Debug, "compaction completed.");
        Ok(t)
    }

    /// Location of `id` in the committed (or current transaction's) index.
    pub fn locate(&self, id: &ObjectId) -> Result<Option<(u32, u32)>> {
        Ok(self.read_state()?.index.as_ref().and_then(|i| i.get(id)))
    }

    /// Apply `f` to every (id, (segment, offset)) of the index, in index order.
    pub fn for_each_entry(&self, mut f: impl FnMut(&ObjectId, (u32, u32))) -> Result<()> {
        let st = self.read_state()?;
        if let Some(index) = st.index.as_ref() {
            for (k, v) in index.iter() {
                f(&k, v);
            }
        }
        Ok(())
    }

    /// The bookkeeping of the loaded transaction (loads `hints.T` if needed).
    pub fn hints(&self) -> Result<Hints> {
        let mut st = self.write_state();
        self.ensure_index(&mut st)?;
        if st.hints.is_none() {
            if let (Some(t), Some(index)) = (st.txn_id, st.index.as_ref()) {
                let h = self.load_hints(t, index)?;
                st.hints = Some(h);
            }
        }
        Ok(st.hints.clone().unwrap_or_default())
    }

    fn scan_ids(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        if limit < 1 {
            return Err(Error::exception("please use limit > 0 or limit = None"));
        }
        let st = self.read_state()?;
        let Some(index) = st.index.as_ref() else {
            return Ok(Vec::new());
        };
        let (start_segment, mut start_offset) = match marker {
            None => (0, 0),
            Some(m) => index
                .get(m)
                .ok_or_else(|| Error::exception(format!("KeyError: {}", hex::encode(m))))?,
        };
        let mut result = Vec::new();
        for (segment, _) in self.io.segment_list(Some(start_segment), false)? {
            for e in self
                .io
                .iter_objects_from(segment, start_offset, false, false)?
            {
                let Ok(e) = e else { break };
                if start_offset > 0 {
                    start_offset = 0;
                    continue;
                }
                if e.tag == TAG_PUT && index.get(&e.key) == Some((segment, e.offset)) {
                    result.push(e.key);
                    if result.len() == limit {
                        return Ok(result);
                    }
                }
            }
            start_offset = 0;
        }
        Ok(result)
    }

    /// Every entry of every segment file, committed or not, with its data (borg's
    /// `scan_low_level`, for `borg debug dump-repo-objs --ghost`): `f(key, data, tag, segment,
    /// offset)`. A damaged segment is logged and skipped from the damage on.
    pub fn scan_low_level(
        &self,
        segment: Option<u32>,
        offset: Option<u32>,
        mut f: impl FnMut(&ObjectId, Option<&[u8]>, u8, u32, u32) -> Result<()>,
    ) -> Result<()> {
        for (current, filename) in self.io.segment_list(segment, false)? {
            if segment.is_some_and(|s| current > s) {
                break;
            }
            let iter = self
                .io
                .iter_objects_from(current, offset.unwrap_or(0), true, true)?;
            for e in iter {
                match e {
                    Ok(e) => {
                        if offset.is_some_and(|o| e.offset > o) {
                            break;
                        }
                        f(&e.key, e.data.as_deref(), e.tag, current, e.offset)?;
                    }
                    Err(err) => {
                        log(
                            Level::Error,
                            &format!(
                                "Segment {current} ({}) has IntegrityError(s) [{}] - skipping.",
                                filename.display(),
                                err.message
                            ),
                        );
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn destroy_files(&self) -> Result<()> {
        let config = self.path.join("config");
        fs::remove_file(&config).map_err(|e| os_err(&e, &config))?;
        // release the lock before its directory disappears
        drop(self.lock_guard().take());
        fs::remove_dir_all(&self.path).map_err(|e| os_err(&e, &self.path))
    }

    /// Release the lock and forget all state (borg's `close`); also done on drop.
    pub fn close(&self) {
        let mut st = self.write_state();
        if let Err(e) = self.discard_txn(&mut st) {
            log(
                Level::Warning,
                &format!("Failed to remove uncommitted segments: {e}"),
            );
        }
        self.io.close_all();
        drop(st);
        if let Some(mut lock) = self.lock_guard().take() {
            let _ = lock.release();
        }
    }
}

fn write_error(e: WriteError) -> Error {
    match e {
        WriteError::Failed(e) => e,
        WriteError::SegmentFull => Error::exception("segment full"),
    }
}

/// Write `config` atomically (borg's `save_config`): the old file is hard-linked to
/// `config.old` first and securely erased after the new one is in place, since it may hold an
/// old repokey.
pub fn save_config(repo_path: &Path, config: &Ini, do_lock: bool) -> Result<()> {
    let config_path = repo_path.join("config");
    let old_path = repo_path.join("config.old");
    if old_path.is_file() {
        log(
            Level::Warning,
            "Old config file not securely erased on previous config update",
        );
        secure_erase(&old_path)?;
    }
    if config_path.is_file() {
        if let Err(e) = fs::hard_link(&config_path, &old_path) {
            let unsupported = matches!(
                e.raw_os_error(),
                Some(libc::EMLINK)
                    | Some(libc::ENOSYS)
                    | Some(libc::EPERM)
                    | Some(libc::EACCES)
                    | Some(libc::ENOTSUP)
                    | Some(libc::EIO)
            );
            if !unsupported {
                return Err(os_err(&e, &old_path));
            }
            log(
                Level::Warning,
                "Failed to securely erase old repository config file (hardlinks not supported). Old repokey data, if any, might persist on physical storage.",
            );
        }
    }
    if let Err(e) = save_file(&config_path, config.write().as_bytes()) {
        let denied = e.message.contains(&format!("[Errno {}]", libc::EACCES));
        if do_lock || !denied {
            return Err(e);
        }
        log(
            Level::Warning,
            &format!("{e}: Failed writing to '{}'. This is expected when working on read-only repositories.", config_path.display()),
        );
    }
    if old_path.is_file() {
        secure_erase(&old_path)?;
    }
    Ok(())
}

impl LocalRepository {
    /// Writers need the exclusive lock; a repository opened with `upgrade_lock` (borg's
    /// `exclusive=None`) upgrades its shared lock here, otherwise this is borg's assertion.
    fn ensure_write_lock(&self) -> Result<()> {
        if !self.do_lock {
            return Ok(());
        }
        let mut guard = self.lock_guard();
        let Some(lock) = guard.as_mut() else {
            return Ok(());
        };
        if lock.got_exclusive_lock() {
            return Ok(());
        }
        if !self.upgrade_lock {
            return Err(Error::exception(
                "bug in code, exclusive lock should exist here",
            ));
        }
        lock.upgrade()
    }

    fn require_exclusive(&self) -> Result<()> {
        if self.do_lock && !self.got_exclusive_lock() {
            return Err(Error::exception(
                "bug in code, exclusive lock should exist here",
            ));
        }
        Ok(())
    }

    fn read_nonce(&self) -> Result<Option<u64>> {
        let path = self.path.join("nonce");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(os_err(&e, &path)),
        };
        let t = text.trim();
        let bytes = hex::decode(t)
            .ok()
            .filter(|b| b.len() == 8)
            .ok_or_else(|| {
                Error::generic(format!(
                    "Repository has an invalid nonce file: {t:?} is not 8 bytes of hex"
                ))
            })?;
        Ok(Some(u64::from_be_bytes(
            bytes.try_into().unwrap_or([0u8; 8]),
        )))
    }
}

impl Repository for LocalRepository {
    fn id(&self) -> ObjectId {
        self.id
    }

    fn location(&self) -> String {
        self.path_text()
    }

    fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let loc = self.read_state()?.index.as_ref().and_then(|i| i.get(id));
        match loc {
            Some((segment, offset)) => self.io.read(segment, offset, id),
            None => Err(Error::new(
                ErrorKind::RepositoryObjectNotFound,
                [hex::encode(id), self.path_text()],
            )),
        }
    }

    fn contains(&self, id: &ObjectId) -> Result<bool> {
        Ok(self
            .read_state()?
            .index
            .as_ref()
            .is_some_and(|i| i.contains(id)))
    }

    fn len(&self) -> Result<usize> {
        Ok(self.read_state()?.index.as_ref().map_or(0, |i| i.len()))
    }

    fn list(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        let st = self.read_state()?;
        let Some(index) = st.index.as_ref() else {
            return Ok(Vec::new());
        };
        Ok(match marker {
            None => index.iter().take(limit).map(|(k, _)| k).collect(),
            Some(m) => index
                .iter_after(m)
                .ok_or_else(|| Error::exception("'marker not found'"))?
                .take(limit)
                .map(|(k, _)| k)
                .collect(),
        })
    }

    fn load_key(&self) -> Result<Vec<u8>> {
        Ok(self
            .config_guard()
            .get("repository", "key")
            .unwrap_or("")
            .trim()
            .as_bytes()
            .to_vec())
    }

    fn append_only(&self) -> bool {
        self.settings.append_only
    }

    fn put(&self, id: &ObjectId, data: &[u8]) -> Result<()> {
        let mut st = self.write_state();
        self.put_locked(&mut st, id, data)
    }

    fn delete(&self, id: &ObjectId) -> Result<()> {
        let mut st = self.write_state();
        self.delete_locked(&mut st, id)
    }

    fn commit(&self, compact: bool, threshold: f64, cleanup_commits: bool) -> Result<()> {
        let mut st = self.write_state();
        let r = self.commit_locked(&mut st, compact, threshold, cleanup_commits);
        if r.is_err() && st.txn.is_some() {
            let _ = self.rollback_locked(&mut st, false);
        }
        r
    }

    fn rollback(&self) -> Result<()> {
        let mut st = self.write_state();
        if let Err(e) = self.rollback_locked(&mut st, false) {
            log(
                Level::Warning,
                &format!("Failed to clean up after rollback: {e}"),
            );
        }
        Ok(())
    }

    fn save_key(&self, keydata: &[u8]) -> Result<()> {
        let text = String::from_utf8_lossy(keydata).into_owned();
        let mut config = self.config_guard();
        config.set("repository", "key", &text);
        save_config(&self.path, &config, self.do_lock)
    }

    fn get_free_nonce(&self) -> Result<Option<u64>> {
        self.require_exclusive()?;
        self.read_nonce()
    }

    fn commit_nonce_reservation(
        &self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()> {
        self.require_exclusive()?;
        if self.read_nonce()? != start_nonce {
            return Err(Error::exception(
                "nonce space reservation with mismatched previous state",
            ));
        }
        let path = self.path.join("nonce");
        let r = save_file(&path, hex::encode(next_unreserved.to_be_bytes()).as_bytes());
        match r {
            Err(e) if !self.do_lock && e.message.contains(&format!("[Errno {}]", libc::EACCES)) => {
                log(
                    Level::Warning,
                    &format!("{e}: Failed writing to '{}'. This is expected when working on read-only repositories.", path.display()),
                );
                Ok(())
            }
            other => other,
        }
    }

    fn scan(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.scan_ids(limit, marker)
    }

    fn check(&self, repair: bool, max_duration: f64) -> Result<bool> {
        LocalRepository::check(self, repair, max_duration)
    }

    fn check_observed(
        &self,
        repair: bool,
        observer: &dyn super::CheckObserver,
    ) -> Result<Option<bool>> {
        self.check_feeding(repair, 0.0, Some(observer)).map(Some)
    }

    fn break_lock(&self) -> Result<()> {
        Lock::new(&self.path.join("lock"), false, None).break_lock()
    }

    fn destroy(&self) -> Result<()> {
        if self.settings.append_only {
            return Err(Error::exception(format!(
                "{} is in append-only mode",
                self.path_text()
            )));
        }
        self.close();
        self.destroy_files()
    }
}

impl Drop for LocalRepository {
    fn drop(&mut self) {
        self.close();
    }
}

mod check;
pub use check::FEED_BATCH_BYTES;
#[cfg(test)]
mod tests;
