//! Rewriting existing archives (borg's `recreate`, cli.md §4.15): items are filtered by
//! patterns and exclusion tags, their content optionally recompressed or cut anew with other
//! chunker params, and the result is stored as a new archive that either replaces the
//! original (written as `<name>.recreate`, then the original is deleted and the new one
//! renamed) or is kept beside it (`--target`).
//!
//! Per archive a pipeline like `create`'s runs:
//!
//! * the *reader* (one thread) reads the source items in order, applies the patterns, reports
//!   item statuses, and submits the content work: chunks to check and recompress, or the file
//!   content (read through the old chunks, fetched in parallel) cut with the new chunker;
//! * *workers* (one per core) fetch, decrypt, hash, compare, compress and encrypt;
//! * the *committer* (the calling thread) takes the results in order, stores the chunks,
//!   builds the new item stream, counts the statistics and writes checkpoints.
//!
//! The chunk index is only read during a run; the references the new archive takes are
//! applied to the cache before it is saved.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::archive::create::{
    estimated_csize, progress_stats, BATCH_BYTES, BATCH_CHUNKS, CACHEDIR_TAG_SIGNATURE,
    PIPELINE_BUDGET, POOL_IDLE_BYTES,
};
use crate::archive::item::{ChunkRef, Item};
use crate::archive::itembuf::ItemBuffer;
use crate::archive::manifest::{format_timestamp, parse_timestamp, Manifest};
use crate::archive::objects::ObjectWriter;
use crate::archive::ordered::Ordered;
use crate::archive::prefetch::{prefetch, recycle, Prefetch};
use crate::archive::{display_bytes, Archive, ArchiveMeta, Statistics};
use crate::bufpool::BufferPool;
use crate::cache::{delete_archive, Cache, DeleteOptions};
use crate::chunker::{Chunk, Chunker, ChunkerParams, CHUNKER_PARAMS};
use crate::compress::{self, CompressionSpec};
use crate::crypto::Key;
use crate::errors::{Error, Result};
use crate::hashindex::ChunkIndex;
use crate::output::{self, ArchiveProgress, Level};
use crate::patterns::{Action, Pattern, PatternMatcher, Style};
use crate::repository::{ObjectId, Repository};

/// Name suffix of the archive a recreate writes before it replaces the original.
pub const TEMPORARY_SUFFIX: &str = ".recreate";

/// borg's logger of the recreate debug messages (`borg.archive`).
const LOGGER: &str = "borg.archive";

/// Finished items sent to the committer at once.
const ITEMS_PER_BATCH: usize = 256;

/// Plaintext bytes of old chunks fetched ahead while a file is re-chunked.
const FETCH_BUDGET: u64 = 16 << 20;

/// Whether an archive name is the leftover of an interrupted recreate.
pub fn is_temporary_archive(name: &str) -> bool {
    name.ends_with(TEMPORARY_SUFFIX)
}

/// `--recompress MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recompress {
    /// Chunks keep their compression.
    #[default]
    Never,
    /// Chunks stored with another algorithm than `--compression` would choose (the level is
    /// not considered) are compressed anew.
    IfDifferent,
    /// Every chunk is compressed anew.
    Always,
}

impl Recompress {
    /// `never`, `if-different` or `always`.
    pub fn from_mode(mode: &str) -> Option<Recompress> {
        match mode {
            "never" => Some(Recompress::Never),
            "if-different" => Some(Recompress::IfDifferent),
            "always" => Some(Recompress::Always),
            _ => None,
        }
    }
}

/// How to recreate (everything but the pattern matcher, the comment and the target name).
#[derive(Debug, Clone, Default)]
pub struct RecreateOptions {
    pub exclude_caches: bool,
    pub exclude_if_present: Vec<Vec<u8>>,
    pub keep_exclude_tags: bool,
    /// `--chunker-params` (None: no re-chunking).
    pub chunker_params: Option<ChunkerParams>,
    pub recompress: Recompress,
    /// Report only (`--dry-run`): nothing is written.
    pub dry_run: bool,
    pub list: bool,
    /// Status letters to report with `--list` (None: all).
    pub list_filter: Option<String>,
    pub progress: bool,
    /// `--checkpoint-interval` (None: no checkpoints).
    pub checkpoint_interval: Option<Duration>,
    /// `--timestamp`: the new start time (None: the original times are kept).
    pub timestamp: Option<DateTime<Utc>>,
    /// `--consider-part-files` (otherwise part items are dropped, as borg's item filter does).
    pub consider_part_files: bool,
    /// This command line (the new archive's `recreate_cmdline`, a checkpoint's `cmdline`).
    pub cmdline: Vec<Vec<u8>>,
    pub hostname: Vec<u8>,
    pub username: Vec<u8>,
    pub cwd: Option<Vec<u8>>,
}

/// What recreating one archive produced (for `--stats`).
#[derive(Debug, Clone)]
pub struct Recreated {
    /// The final name (the original name when it was replaced).
    pub name: String,
    pub id: ObjectId,
    /// When processing this archive started and ended.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// borg's `target.stats`: data, item stream and metadata object.
    pub stats: Statistics,
    /// Stored size of the metadata object.
    pub meta_csize: u32,
}

/// The result of [`Recreater::recreate`].
#[derive(Debug)]
pub enum Outcome {
    /// No pattern, path, comment, target, recompression or re-chunking applies.
    NothingToDo,
    /// `--dry-run`: the items were reported, nothing was written.
    DryRun,
    Recreated(Box<Recreated>),
}

/// Recreates archives of one repository (borg's `ArchiveRecreater`). Every archive is
/// committed when saved; [`commit`](Self::commit) commits what follows (deletion and rename
/// of the original).
pub struct Recreater {
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    writer: ObjectWriter,
    manifest: Manifest,
    cache: Cache,
    /// Patterns and PATHs; tag exclusions found in an archive are added (and stay, as in borg).
    matcher: PatternMatcher,
    opts: RecreateOptions,
    /// Chunks processed (recompressed or re-chunked) so far, across archives: later
    /// references to them are only counted.
    seen: Mutex<HashSet<ObjectId>>,
    pool: Arc<BufferPool>,
}

impl Recreater {
    /// `compression` is `-C`: for recompressed and new chunks and the item streams.
    pub fn new(
        repo: Arc<dyn Repository>,
        key: Arc<Key>,
        manifest: Manifest,
        cache: Cache,
        matcher: PatternMatcher,
        compression: CompressionSpec,
        opts: RecreateOptions,
    ) -> Recreater {
        let writer = ObjectWriter::new(repo.clone(), key.clone(), compression);
        Recreater {
            repo,
            key,
            writer,
            manifest,
            cache,
            matcher,
            opts,
            seen: Mutex::new(HashSet::new()),
            pool: Arc::new(BufferPool::new(POOL_IDLE_BYTES)),
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The cache with the current archive list (what `--stats` reports on).
    pub fn cache_following_manifest(&mut self) -> &Cache {
        self.cache.follow_manifest(&self.manifest);
        &self.cache
    }

    /// Recreate archive `name`: with `target` as a new archive of that name, else replacing
    /// it; `comment` (None: unchanged). Errors: the archive does not exist, the target (or
    /// `<name>.recreate`) exists.
    pub fn recreate(
        &mut self,
        name: &str,
        comment: Option<&str>,
        target: Option<&str>,
    ) -> Result<Outcome> {
        let info = self.manifest.get_archive(name)?.clone();
        let source = Archive::load(self.repo.as_ref(), &self.key, &info.id)?;
        let target_name = target.map_or_else(|| format!("{name}{TEMPORARY_SUFFIX}"), String::from);
        if self.manifest.lookup(target_name.as_bytes()).is_some() {
            return Err(crate::archive::create::archive_exists(&target_name));
        }
        let started = Utc::now();
        let clock = Instant::now();
        let target_params = self.opts.chunker_params.unwrap_or(CHUNKER_PARAMS);
        let rechunk = self.rechunking(&source.meta, &target_params);
        if self.opts.exclude_caches || !self.opts.exclude_if_present.is_empty() {
            self.exclude_tagged_dirs(&source)?;
        }
        let nothing_to_do = self.matcher.is_empty()
            && self.opts.recompress == Recompress::Never
            && !rechunk
            && comment.is_none()
            && target.is_none();
        if nothing_to_do {
            return Ok(Outcome::NothingToDo);
        }
        if self.opts.dry_run {
            self.list_dry_run(&source)?;
            return Ok(Outcome::DryRun);
        }
        let mode = if rechunk {
            Mode::Rechunk
        } else if self.opts.recompress != Recompress::Never {
            Mode::Recompress
        } else {
            Mode::Keep
        };
        let times = Times { started, clock };
        let processed = self.process(&source, &target_name, mode, &target_params, &times)?;
        let save = Save {
            source: &source,
            source_name: name,
            target_name: &target_name,
            replace: target.is_none(),
            comment,
            target_params: &target_params,
            times: &times,
        };
        let recreated = self.save(&save, processed)?;
        Ok(Outcome::Recreated(Box::new(recreated)))
    }

    /// Write the manifest and commit repository and cache (after the last archive; nothing to
    /// do in dry-run mode).
    pub fn commit(&mut self) -> Result<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        self.manifest.write(&self.writer)?;
        self.repo.commit(false, 0.1, false)?;
        self.cache.commit(&self.manifest)
    }

    /// Whether the content is cut anew: `--chunker-params` given and different from the
    /// params the archive records (unknown params count as different).
    fn rechunking(&self, meta: &ArchiveMeta, target: &ChunkerParams) -> bool {
        if self.opts.chunker_params.is_none() {
            return false;
        }
        let source = meta
            .chunker_params
            .as_ref()
            .and_then(|v| ChunkerParams::from_value(v).ok());
        if source == Some(*target) {
            return false;
        }
        let from = source.map_or_else(|| "(unknown)".to_string(), |p| p.py_repr());
        output::log(
            Level::Debug,
            LOGGER,
            &format!("Rechunking archive from {from} to {}", target.py_repr()),
            None,
        );
        true
    }

    fn print_status(&self, status: char, path: &[u8]) {
        print_status(&self.opts, status, path);
    }

    /// `--dry-run`: `x` for excluded items, `-` for the others.
    fn list_dry_run(&self, source: &Archive) -> Result<()> {
        for item in source.items(self.repo.clone(), self.key.clone()) {
            let item = item?;
            if item.part.is_some() && !self.opts.consider_part_files {
                continue;
            }
            let status = if self.matcher.match_path(&item.path) {
                '-'
            } else {
                'x'
            };
            self.print_status(status, &item.path);
        }
        Ok(())
    }

    /// `--exclude-caches` / `--exclude-if-present`: find tagged directories in the archive
    /// and add rules that exclude them (keeping the directory and its tags with
    /// `--keep-exclude-tags`). Cache tags are recognised by their content, also through a
    /// hardlink whose master has another name.
    fn exclude_tagged_dirs(&mut self, source: &Archive) -> Result<()> {
        let wanted = |item: &Item| item.part.is_none() || self.opts.consider_part_files;
        let is_cache_tag = |item: &Item| basename(&item.path) == CACHE_TAG_NAME;
        // Hardlink masters of cache tags (any name), filled in below.
        let mut tag_masters: HashMap<Vec<u8>, Option<Item>> = HashMap::new();
        if self.opts.exclude_caches {
            for item in source.items(self.repo.clone(), self.key.clone()) {
                let item = item?;
                if wanted(&item) && is_cache_tag(&item) && item.is_regular() {
                    if let (None, Some(master)) = (&item.chunks, &item.source) {
                        tag_masters.insert(master.clone(), None);
                    }
                }
            }
        }
        let mut tag_files: Vec<Vec<u8>> = Vec::new();
        let mut tagged_dirs: Vec<(Style, Vec<u8>)> = Vec::new();
        for item in source.items(self.repo.clone(), self.key.clone()) {
            let item = item?;
            if !wanted(&item) || !(is_cache_tag(&item) || self.matcher.match_path(&item.path)) {
                continue;
            }
            if let Some(slot) = tag_masters.get_mut(&item.path) {
                *slot = Some(item.clone());
            }
            let (dir, tag) = split_path(&item.path);
            let tagged = if self.opts.exclude_if_present.iter().any(|t| t == tag) {
                true
            } else if self.opts.exclude_caches && tag == CACHE_TAG_NAME && item.is_regular() {
                let content = match &item.chunks {
                    Some(_) => Some(&item),
                    None => item
                        .source
                        .as_ref()
                        .and_then(|m| tag_masters.get(m))
                        .and_then(|m| m.as_ref()),
                };
                match content.and_then(|c| c.chunks.as_deref()) {
                    Some(chunks) => {
                        self.read_head(chunks, CACHEDIR_TAG_SIGNATURE.len())?
                            == CACHEDIR_TAG_SIGNATURE
                    }
                    None => false,
                }
            } else {
                false
            };
            if !tagged {
                continue;
            }
            if self.opts.keep_exclude_tags {
                tag_files.push(item.path.clone());
                let mut contents = dir.to_vec();
                contents.push(b'/');
                tagged_dirs.push((Style::FnMatch, contents));
            } else {
                tagged_dirs.push((Style::PathPrefix, dir.to_vec()));
            }
        }
        for path in tag_files {
            let pattern = Pattern::new(Style::PathPrefix, &path, false)?;
            self.matcher.add(pattern, Action::Include);
        }
        for (style, path) in tagged_dirs {
            let pattern = Pattern::new(style, &path, false)?;
            self.matcher.add(pattern, Action::ExcludeNoRecurse);
        }
        Ok(())
    }

    /// The first `n` bytes of a file's content (fewer if it is shorter).
    fn read_head(&self, chunks: &[ChunkRef], n: usize) -> Result<Vec<u8>> {
        let mut head = Vec::new();
        for c in chunks {
            if head.len() >= n {
                break;
            }
            let stored = self.repo.get(&c.id)?;
            head.extend_from_slice(&self.key.decrypt(Some(&c.id), &stored)?);
        }
        head.truncate(n);
        Ok(head)
    }

    /// Run the pipeline over the source archive's items; checkpoints (`<target>.checkpoint`)
    /// are committed on the way, the returned references are not applied yet.
    fn process(
        &mut self,
        source: &Archive,
        target_name: &str,
        mode: Mode,
        target_params: &ChunkerParams,
        times: &Times,
    ) -> Result<Processed> {
        let Recreater {
            repo,
            key,
            writer,
            manifest,
            cache,
            matcher,
            opts,
            seen,
            pool,
        } = self;
        let mut checkpoints = Checkpoints {
            name: checkpoint_name(manifest, target_name),
            manifest: manifest.clone(),
            last: None,
        };
        let run = Run {
            repo,
            key,
            pool,
            jobs: Jobs {
                writer,
                index: cache.chunks(),
                seen,
                pool,
                recompress: opts.recompress,
            },
            matcher,
            opts,
            mode,
            target_params,
        };
        let mut save_checkpoint = |items: &[ObjectId], stats: &Statistics| -> Result<()> {
            let meta = checkpoint_meta(&checkpoints.name, items, stats, opts, target_params, times);
            checkpoints.save(writer, &meta)
        };
        let processed = run.process(source, &mut save_checkpoint);
        if let Some(id) = checkpoints.last.take() {
            // goes with the commit of the archive that replaces the checkpoint
            repo.delete(&id)?;
        }
        manifest.timestamp = checkpoints.manifest.timestamp;
        processed
    }

    /// Save the new archive (committed), then replace the original with it: delete the
    /// original and rename the new one (committed with the next archive or by
    /// [`commit`](Self::commit)).
    fn save(&mut self, save: &Save, processed: Processed) -> Result<Recreated> {
        processed.ledger.apply(&mut self.cache)?;
        let mut stats = processed.stats;
        let source = &save.source.meta;
        let (time, time_end) = match self.opts.timestamp {
            None => (
                source.time.clone(),
                source
                    .time_end
                    .clone()
                    .unwrap_or_else(|| source.time.clone()),
            ),
            Some(ts) => (
                format_timestamp(&ts),
                format_timestamp(&(ts + save.times.elapsed())),
            ),
        };
        let ts = parse_timestamp(&time)?;
        let comment = match save.comment {
            Some(c) => c.as_bytes().to_vec(),
            None => source.comment.clone(),
        };
        let mut meta = ArchiveMeta {
            version: 1,
            name: save.target_name.as_bytes().to_vec(),
            items: processed.item_chunks,
            cmdline: source.cmdline.clone(),
            hostname: self.opts.hostname.clone(),
            username: self.opts.username.clone(),
            time,
            time_end: Some(time_end),
            comment,
            chunker_params: Some(save.target_params.to_value()),
            recreate_cmdline: Some(self.opts.cmdline.clone()),
            cwd: self.opts.cwd.clone(),
            raw: rmpv::Value::Map(Vec::new()),
            ..stats_fields(&stats)
        };
        let (mut id, csize, size) = meta.store(&self.writer)?;
        self.cache
            .add_chunk(&id, size as u32, csize as u32, &mut stats, false);
        self.manifest
            .set_archive(save.target_name.as_bytes(), id, ts);
        self.commit_now()?;
        let mut name = save.target_name.to_string();
        if save.replace {
            let delete = DeleteOptions {
                forced: 0,
                progress: self.opts.progress,
                consider_part_files: false,
            };
            let mut deleted = Statistics::default();
            let original = save.source_name.as_bytes();
            delete_archive(
                &mut self.cache,
                &mut self.manifest,
                original,
                &mut deleted,
                delete,
            )?;
            // borg's rename: the metadata under the new name, the old object dropped
            meta.name = original.to_vec();
            let (renamed, csize, size) = meta.store(&self.writer)?;
            self.cache
                .add_chunk(&renamed, size as u32, csize as u32, &mut stats, false);
            self.manifest.set_archive(original, renamed, ts);
            self.cache.chunk_decref(&id, &mut stats)?;
            self.manifest.remove_archive(save.target_name.as_bytes());
            id = renamed;
            name = save.source_name.to_string();
        }
        Ok(Recreated {
            name,
            id,
            start: save.times.started,
            end: Utc::now(),
            stats,
            meta_csize: self.cache.chunks().get(&id).map_or(0, |e| e.csize),
        })
    }

    fn commit_now(&mut self) -> Result<()> {
        self.manifest.write(&self.writer)?;
        self.repo.commit(false, 0.1, false)?;
        self.cache.commit(&self.manifest)
    }
}

/// When recreating an archive started (borg's `target.start`).
struct Times {
    started: DateTime<Utc>,
    clock: Instant,
}

impl Times {
    fn elapsed(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.clock.elapsed()).unwrap_or_default()
    }
}

/// What saving a recreated archive needs to know.
struct Save<'s> {
    source: &'s Archive,
    source_name: &'s str,
    target_name: &'s str,
    replace: bool,
    comment: Option<&'s str>,
    target_params: &'s ChunkerParams,
    times: &'s Times,
}

/// The statistics fields of archive metadata (borg stores the archive's statistics).
fn stats_fields(stats: &Statistics) -> ArchiveMeta {
    ArchiveMeta {
        version: 1,
        name: Vec::new(),
        items: Vec::new(),
        cmdline: Vec::new(),
        hostname: Vec::new(),
        username: Vec::new(),
        time: String::new(),
        time_end: None,
        comment: Vec::new(),
        chunker_params: None,
        size: Some(stats.osize),
        csize: Some(stats.csize),
        nfiles: Some(stats.nfiles),
        size_parts: Some(stats.osize_parts),
        csize_parts: Some(stats.csize_parts),
        nfiles_parts: Some(stats.nfiles_parts),
        recreate_cmdline: None,
        cwd: None,
        raw: rmpv::Value::Map(Vec::new()),
    }
}

/// A checkpoint's metadata (borg saves it like a new archive: this command line, times
/// ending now, no comment).
fn checkpoint_meta(
    name: &str,
    items: &[ObjectId],
    stats: &Statistics,
    opts: &RecreateOptions,
    params: &ChunkerParams,
    times: &Times,
) -> ArchiveMeta {
    let elapsed = times.elapsed();
    let (start, end) = match opts.timestamp {
        Some(ts) => (ts, ts + elapsed),
        None => {
            let end = Utc::now();
            (end - elapsed, end)
        }
    };
    ArchiveMeta {
        name: name.as_bytes().to_vec(),
        items: items.to_vec(),
        cmdline: opts.cmdline.clone(),
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        time: format_timestamp(&start),
        time_end: Some(format_timestamp(&end)),
        chunker_params: Some(params.to_value()),
        cwd: opts.cwd.clone(),
        ..stats_fields(stats)
    }
}

/// `<name>.checkpoint`, or `.checkpoint.N` with the first N not taken (borg's choice).
fn checkpoint_name(manifest: &Manifest, name: &str) -> String {
    let mut candidate = format!("{name}.checkpoint");
    let mut n = 1;
    while manifest.lookup(candidate.as_bytes()).is_some() {
        candidate = format!("{name}.checkpoint.{n}");
        n += 1;
    }
    candidate
}

/// Checkpoint archives of one run: each is committed with a copy of the manifest and deleted
/// with the next commit (borg's `write_checkpoint`).
struct Checkpoints {
    name: String,
    manifest: Manifest,
    /// The checkpoint committed last.
    last: Option<ObjectId>,
}

impl Checkpoints {
    fn save(&mut self, writer: &ObjectWriter, meta: &ArchiveMeta) -> Result<()> {
        if let Some(id) = self.last.take() {
            writer.repo.delete(&id)?;
        }
        let (id, _, _) = meta.store(writer)?;
        let mut manifest = self.manifest.clone();
        manifest.set_archive(self.name.as_bytes(), id, parse_timestamp(&meta.time)?);
        manifest.write(writer)?;
        writer.repo.commit(false, 0.1, false)?;
        self.manifest.timestamp = manifest.timestamp;
        self.last = Some(id);
        Ok(())
    }
}

/// Saves a checkpoint archive from the item-stream chunks and statistics so far.
type WriteCheckpoint<'c> = dyn FnMut(&[ObjectId], &Statistics) -> Result<()> + 'c;

const CACHE_TAG_NAME: &[u8] = b"CACHEDIR.TAG";

/// The last path component.
fn basename(path: &[u8]) -> &[u8] {
    split_path(path).1
}

/// (directory, last component) like Python's `os.path.split` for relative paths.
fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => {
            let dir = &path[..i];
            let trimmed = dir.iter().rposition(|&b| b != b'/').map_or(0, |j| j + 1);
            (&path[..trimmed.max(usize::from(i == 0))], &path[i + 1..])
        }
        None => (&[], path),
    }
}

fn print_status(opts: &RecreateOptions, status: char, path: &[u8]) {
    if !opts.list {
        return;
    }
    if let Some(filter) = &opts.list_filter {
        if !filter.contains(status) {
            return;
        }
    }
    output::file_status(status, &display_bytes(path));
}

/// borg's status letter of an item by its type.
fn file_status(item: &Item) -> char {
    if item.is_regular() {
        'A'
    } else if item.is_dir() {
        'd'
    } else if item.is_blk() {
        'b'
    } else if item.is_chr() {
        'c'
    } else if item.is_symlink() {
        's'
    } else if item.is_fifo() {
        'f'
    } else {
        '?'
    }
}

/// Types that can be hardlinked in an archive (regular files, devices, fifos).
fn hardlinkable(item: &Item) -> bool {
    item.is_regular() || item.is_blk() || item.is_chr() || item.is_fifo()
}

/// The algorithm `spec` would store `data` with (borg's `decide`: `auto` picks by the lz4
/// ratio, lz4/zstd/lzma fall back to `none` when they do not shrink the data), and the
/// compressed envelope when computing the answer produced it.
pub fn decided_compression(spec: &CompressionSpec, data: &[u8]) -> (&'static str, Option<Vec<u8>>) {
    match spec {
        CompressionSpec::None => ("none", None),
        CompressionSpec::Zlib(_) => ("zlib", None),
        CompressionSpec::Obfuscate(..) => ("obfuscate", None),
        CompressionSpec::Lz4 | CompressionSpec::Zstd(_) | CompressionSpec::Lzma(_) => {
            let envelope = spec.compress(data);
            (
                compress::detect(&envelope).unwrap_or("none"),
                Some(envelope),
            )
        }
        CompressionSpec::Auto(inner) => {
            let cheap = CompressionSpec::Lz4.compress(data);
            let ratio = cheap.len() as f64 / (data.len() as f64 + 2.0);
            if ratio < 0.97 {
                (algorithm_name(inner), None)
            } else {
                (compress::detect(&cheap).unwrap_or("none"), None)
            }
        }
    }
}

/// The algorithm name of a spec itself (what `auto` hands the data to).
fn algorithm_name(spec: &CompressionSpec) -> &'static str {
    match spec {
        CompressionSpec::None => "none",
        CompressionSpec::Lz4 => "lz4",
        CompressionSpec::Zstd(_) => "zstd",
        CompressionSpec::Zlib(_) => "zlib",
        CompressionSpec::Lzma(_) => "lzma",
        CompressionSpec::Auto(_) => "auto",
        CompressionSpec::Obfuscate(..) => "obfuscate",
    }
}

// ───────────────────────────── the pipeline ─────────────────────────────

/// What happens to the content of items with chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Chunks are referenced as they are.
    Keep,
    /// Each chunk is checked and compressed anew if needed (ids unchanged).
    Recompress,
    /// The content is cut anew (new ids).
    Rechunk,
}

/// A chunk as a worker left it.
struct ChunkDone {
    id: ObjectId,
    size: u32,
    /// The stored size (for a reference: what the index or this run says wins).
    csize: u32,
    /// The stored form to put (a new chunk, or a recompressed one replacing the old).
    stored: Option<Vec<u8>>,
}

impl ChunkDone {
    fn reference(id: ObjectId, size: u32, csize: u32) -> ChunkDone {
        ChunkDone {
            id,
            size,
            csize,
            stored: None,
        }
    }
}

/// Where an item's chunks come from, as the committer assembles it.
enum Content {
    /// No chunks.
    None,
    /// Its chunks are referenced again as they are.
    Reuse,
    /// The chunk results submitted just before this item.
    Streamed,
    /// Not an item: the file whose chunks follow (for part items at checkpoints).
    Begins,
}

struct ItemWork {
    item: Item,
    content: Content,
}

enum Piece {
    Chunks(Result<Vec<ChunkDone>>),
    Items(Vec<ItemWork>),
}

impl Piece {
    /// Memory a finished piece holds until committed.
    fn weight(&self) -> u64 {
        match self {
            Piece::Chunks(Ok(chunks)) => chunks
                .iter()
                .filter_map(|c| c.stored.as_ref())
                .map(|s| s.capacity() as u64)
                .sum(),
            Piece::Chunks(Err(_)) => 0,
            Piece::Items(items) => items.iter().map(|w| item_weight(&w.item)).sum(),
        }
    }
}

/// Rough memory of an item (bounds how far the reader runs ahead).
fn item_weight(item: &Item) -> u64 {
    let chunks = item.chunks.as_ref().map_or(0, |c| c.len());
    (256 + item.path.len() + 48 * chunks) as u64
}

/// Everything a worker job needs (shared, read-only).
#[derive(Clone, Copy)]
struct Jobs<'a> {
    writer: &'a ObjectWriter,
    index: &'a ChunkIndex,
    seen: &'a Mutex<HashSet<ObjectId>>,
    pool: &'a BufferPool,
    recompress: Recompress,
}

impl Jobs<'_> {
    /// True the first time a chunk is met by this recreate (the one to process).
    fn first_sight(&self, id: &ObjectId) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id)
    }

    /// Existing chunks, each with whether this job processes it (else it is referenced).
    fn recompress_batch(&self, refs: &[(ChunkRef, bool)]) -> Result<Vec<ChunkDone>> {
        let ids: Vec<ObjectId> = refs.iter().filter(|r| r.1).map(|r| r.0.id).collect();
        let mut stored = fetch_stored(self.writer.repo.as_ref(), &ids)?.into_iter();
        refs.iter()
            .map(|(r, first)| {
                if !*first {
                    return Ok(ChunkDone::reference(r.id, r.size, r.csize));
                }
                let envelope = stored
                    .next()
                    .ok_or_else(|| Error::exception("missing object"))?;
                self.recompressed(&r.id, &envelope, None)
            })
            .collect()
    }

    /// Compare a stored chunk with the wanted compression: kept (a reference) or stored
    /// anew. `plain` is its content when known already (else it is decrypted here).
    fn recompressed(
        &self,
        id: &ObjectId,
        envelope: &[u8],
        plain: Option<&[u8]>,
    ) -> Result<ChunkDone> {
        let key = &self.writer.key;
        let payload = key.decrypt_payload(Some(id), envelope)?;
        let decompressed;
        let plain = match plain {
            Some(p) => p,
            None => {
                decompressed = compress::decompress(&payload)?;
                if key.id_hash(&decompressed) != *id {
                    return Err(Error::integrity(format!(
                        "Chunk {}: id verification failed",
                        hex::encode(id)
                    )));
                }
                &decompressed
            }
        };
        let size = plain.len() as u32;
        let overwrite = self.recompress == Recompress::Always || self.index.get(id).is_none();
        let stored = if overwrite {
            self.writer.encrypt(plain)?
        } else {
            let (wanted, compressed) = decided_compression(&self.writer.compression, plain);
            if compress::detect(&payload) == Some(wanted) {
                return Ok(ChunkDone::reference(*id, size, envelope.len() as u32));
            }
            match compressed {
                Some(c) => self.writer.encrypt_compressed(&c)?,
                None => self.writer.encrypt(plain)?,
            }
        };
        Ok(ChunkDone {
            id: *id,
            size,
            csize: stored.len() as u32,
            stored: Some(stored),
        })
    }

    /// Newly cut chunks: hash them; store those neither the repository nor this recreate
    /// has; with recompression, check the known ones processed first here.
    fn rechunk_batch(&self, datas: &[Vec<u8>]) -> Result<Vec<ChunkDone>> {
        let writer = self.writer;
        let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
        let ids = writer.key.id_hash_many(&refs);
        let mut done = Vec::with_capacity(datas.len());
        let mut to_store: Vec<usize> = Vec::new();
        for (i, (id, data)) in ids.iter().zip(&refs).enumerate() {
            let size = data.len() as u32;
            let first = self.first_sight(id);
            let known = self.index.get(id);
            let chunk = match (first, known) {
                (false, Some(e)) => ChunkDone::reference(*id, size, e.csize),
                (false, None) => ChunkDone::reference(*id, size, estimated_csize(writer, data)),
                (true, Some(e)) => match self.recompress {
                    Recompress::Never => ChunkDone::reference(*id, size, e.csize),
                    Recompress::Always => {
                        let stored = writer.encrypt(data)?;
                        ChunkDone {
                            id: *id,
                            size,
                            csize: stored.len() as u32,
                            stored: Some(stored),
                        }
                    }
                    Recompress::IfDifferent => {
                        let envelope = writer.repo.get(id)?;
                        self.recompressed(id, &envelope, Some(data))?
                    }
                },
                (true, None) => {
                    to_store.push(i);
                    ChunkDone::reference(*id, size, 0)
                }
            };
            done.push(chunk);
        }
        if !to_store.is_empty() {
            let plain: Vec<&[u8]> = to_store.iter().map(|&i| refs[i]).collect();
            let stored = writer.encrypt_many(&plain, &|n| self.pool.take(n))?;
            for (&i, stored) in to_store.iter().zip(stored) {
                done[i].csize = stored.len() as u32;
                done[i].stored = Some(stored);
            }
        }
        Ok(done)
    }
}

/// The stored objects `ids` (one `get_many`, then one by one if that fails).
fn fetch_stored(repo: &dyn Repository, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match repo.get_many(ids) {
        Ok(values) if values.len() == ids.len() => Ok(values),
        _ => ids.iter().map(|id| repo.get(id)).collect(),
    }
}

/// One recreate run over an archive.
struct Run<'a> {
    repo: &'a Arc<dyn Repository>,
    key: &'a Arc<Key>,
    pool: &'a Arc<BufferPool>,
    jobs: Jobs<'a>,
    matcher: &'a PatternMatcher,
    opts: &'a RecreateOptions,
    mode: Mode,
    target_params: &'a ChunkerParams,
}

/// What a run produced, for the caller to apply and save.
struct Processed {
    item_chunks: Vec<ObjectId>,
    stats: Statistics,
    ledger: Ledger,
}

impl Run<'_> {
    fn process(&self, source: &Archive, checkpoint: &mut WriteCheckpoint<'_>) -> Result<Processed> {
        let pipeline: Ordered<Piece> = Ordered::with_weigher(PIPELINE_BUDGET, Piece::weight);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| pipeline.work());
            }
            let reader_thread = scope.spawn(|| {
                let mut reader = Reader::new(self, &pipeline);
                let read = reader.read(source);
                reader.send_items();
                pipeline.finish_input();
                read
            });
            let committed = self.commit_loop(&pipeline, checkpoint);
            pipeline.close();
            let read = reader_thread
                .join()
                .unwrap_or_else(|_| Err(Error::exception("reader thread panicked")));
            read?;
            committed
        })
    }

    /// The committer: results in order → repository puts, items, statistics, checkpoints.
    fn commit_loop(
        &self,
        pipeline: &Ordered<Piece>,
        checkpoint: &mut WriteCheckpoint<'_>,
    ) -> Result<Processed> {
        let writer = self.jobs.writer;
        let mut c = Committer {
            writer,
            pool: self.jobs.pool,
            index: self.jobs.index,
            ledger: Ledger::default(),
            stats: Statistics::default(),
            itembuf: ItemBuffer::new(writer.key.chunk_seed()),
            pending: Vec::new(),
        };
        let mut progress = self.opts.progress.then(ArchiveProgress::new);
        let mut parts: Option<FileParts> = None;
        let mut last_checkpoint = Instant::now();
        let every = self.opts.checkpoint_interval;
        while let Some(piece) = pipeline.next() {
            match piece {
                Piece::Chunks(chunks) => {
                    for ch in chunks? {
                        let r = c.chunk(ch)?;
                        c.pending.push(r);
                    }
                    // borg checks after the chunks of a file whether a checkpoint is due
                    let due = every.is_some_and(|every| last_checkpoint.elapsed() > every);
                    if let (true, Some(file)) = (due, parts.as_mut()) {
                        c.part_item(file)?;
                        c.checkpoint(checkpoint)?;
                        last_checkpoint = Instant::now();
                    }
                    if let (Some(p), Some(file)) = (progress.as_mut(), parts.as_ref()) {
                        p.show(&progress_stats(&c.stats), &display_bytes(&file.base.path));
                    }
                }
                Piece::Items(items) => {
                    for work in items {
                        if let Content::Begins = work.content {
                            parts = Some(FileParts::new(work.item));
                            continue;
                        }
                        if let (Content::Streamed, Some(mut file)) = (&work.content, parts.take()) {
                            if file.next_part > 1 {
                                if c.pending.len() > file.from_chunk {
                                    // the rest goes into a last part: parts concatenate
                                    c.part_item(&mut file)?;
                                    c.checkpoint(checkpoint)?;
                                    last_checkpoint = Instant::now();
                                }
                                c.parts_done(&file);
                            }
                        }
                        let path = c.item(work)?;
                        if let Some(p) = progress.as_mut() {
                            p.show(&progress_stats(&c.stats), &display_bytes(&path));
                        }
                    }
                }
            }
        }
        let Committer {
            writer,
            index,
            mut ledger,
            mut stats,
            mut itembuf,
            ..
        } = c;
        let mut store =
            |data: &[u8]| store_item_chunk(writer, index, &mut ledger, &mut stats, data);
        itembuf.flush(true, &mut store)?;
        if let Some(p) = progress.as_mut() {
            p.finish();
        }
        Ok(Processed {
            item_chunks: itembuf.chunks,
            stats,
            ledger,
        })
    }
}

/// The references a run takes: chunks it stored (new ones, or recompressed ones replacing
/// the stored form) and further references, applied to the cache when the archive is saved.
#[derive(Default)]
struct Ledger {
    /// Stored by this run: (size, csize); each takes one reference.
    stored: HashMap<ObjectId, (u32, u32)>,
    increfs: Vec<ObjectId>,
}

impl Ledger {
    /// Put a chunk (replacing an older stored form of it) and count it.
    fn store(
        &mut self,
        writer: &ObjectWriter,
        index: &ChunkIndex,
        id: ObjectId,
        size: u32,
        stored: &[u8],
        stats: &mut Statistics,
    ) -> Result<ChunkRef> {
        writer.put_stored(&id, stored)?;
        let csize = stored.len() as u32;
        let unique = index.get(&id).is_none() && !self.stored.contains_key(&id);
        if self.stored.insert(id, (size, csize)).is_some() {
            self.increfs.push(id);
        }
        stats.update(size as u64, csize as u64, unique, false);
        Ok(ChunkRef { id, size, csize })
    }

    /// One more reference to a chunk stored before (sizes as this run or the index know
    /// them, else as given).
    fn reference(
        &mut self,
        index: &ChunkIndex,
        id: ObjectId,
        given: (u32, u32),
        stats: &mut Statistics,
        part: bool,
    ) -> ChunkRef {
        let (size, csize) = self
            .stored
            .get(&id)
            .copied()
            .or_else(|| index.get(&id).map(|e| (e.size, e.csize)))
            .unwrap_or(given);
        self.increfs.push(id);
        stats.update(size as u64, csize as u64, false, part);
        ChunkRef { id, size, csize }
    }

    fn knows(&self, index: &ChunkIndex, id: &ObjectId) -> bool {
        self.stored.contains_key(id) || index.get(id).is_some()
    }

    /// Record the references in the cache (a reference to a chunk neither stored by this run
    /// nor in the index is borg's `ChunksIndexError`).
    fn apply(&self, cache: &mut Cache) -> Result<()> {
        for id in &self.increfs {
            if !self.stored.contains_key(id) && cache.seen_chunk(id) == 0 {
                return Err(Error::generic(format!(
                    "Chunk ID {} missing from chunks index, corrupted chunks index - aborting transaction.",
                    hex::encode(id)
                )));
            }
        }
        let mut scratch = Statistics::default();
        for (id, (size, csize)) in &self.stored {
            cache.add_chunk(id, *size, *csize, &mut scratch, false);
        }
        for id in &self.increfs {
            cache.chunk_incref(id, &mut scratch, false);
        }
        Ok(())
    }
}

/// Store one item-stream chunk (deduplicated like data; counted in the archive's statistics,
/// as borg's items buffer does).
fn store_item_chunk(
    writer: &ObjectWriter,
    index: &ChunkIndex,
    ledger: &mut Ledger,
    stats: &mut Statistics,
    data: &[u8],
) -> Result<ObjectId> {
    let id = writer.key.id_hash(data);
    let size = data.len() as u32;
    if ledger.knows(index, &id) {
        ledger.reference(index, id, (size, 0), stats, false);
    } else {
        let stored = writer.encrypt(data)?;
        ledger.store(writer, index, id, size, &stored, stats)?;
    }
    Ok(id)
}

/// A file being streamed and the part items written for it so far (borg's `from_chunk` and
/// `part_number`).
struct FileParts {
    base: Item,
    from_chunk: usize,
    next_part: u64,
}

impl FileParts {
    fn new(base: Item) -> FileParts {
        FileParts {
            base,
            from_chunk: 0,
            next_part: 1,
        }
    }
}

/// The committer's state.
struct Committer<'c> {
    writer: &'c ObjectWriter,
    pool: &'c BufferPool,
    index: &'c ChunkIndex,
    ledger: Ledger,
    stats: Statistics,
    itembuf: ItemBuffer,
    /// Chunks of the file being streamed.
    pending: Vec<ChunkRef>,
}

impl Committer<'_> {
    /// Take a worker's result: store it or reference it.
    fn chunk(&mut self, ch: ChunkDone) -> Result<ChunkRef> {
        match ch.stored {
            Some(stored) => {
                let r = self.ledger.store(
                    self.writer,
                    self.index,
                    ch.id,
                    ch.size,
                    &stored,
                    &mut self.stats,
                )?;
                self.pool.give(stored);
                Ok(r)
            }
            None => Ok(self.ledger.reference(
                self.index,
                ch.id,
                (ch.size, ch.csize),
                &mut self.stats,
                false,
            )),
        }
    }

    fn add_to_stream(&mut self, item: &Item) -> Result<()> {
        let (writer, index) = (self.writer, self.index);
        let (ledger, stats) = (&mut self.ledger, &mut self.stats);
        let mut store = |data: &[u8]| store_item_chunk(writer, index, ledger, stats, data);
        self.itembuf.add(item, &mut store)
    }

    /// Finish an item and append it to the new item stream; returns its path.
    fn item(&mut self, work: ItemWork) -> Result<Vec<u8>> {
        let ItemWork { mut item, content } = work;
        match content {
            Content::None | Content::Begins => {}
            Content::Reuse => {
                for r in item.chunks.iter().flatten() {
                    self.ledger.reference(
                        self.index,
                        r.id,
                        (r.size, r.csize),
                        &mut self.stats,
                        false,
                    );
                }
                self.stats.nfiles += 1;
            }
            Content::Streamed => {
                item.chunks = Some(std::mem::take(&mut self.pending));
                self.stats.nfiles += 1;
            }
        }
        self.add_to_stream(&item)?;
        Ok(item.path)
    }

    /// Store the chunks of `file` since its last part as part item `<path>.borg_part_<N>`.
    fn part_item(&mut self, file: &mut FileParts) -> Result<()> {
        let refs = self.pending[file.from_chunk..].to_vec();
        let mut item = file.base.clone();
        item.path
            .extend_from_slice(format!(".borg_part_{}", file.next_part).as_bytes());
        item.part = Some(file.next_part);
        item.size = Some(refs.iter().map(|r| r.size as u64).sum());
        item.chunks = Some(refs);
        self.add_to_stream(&item)?;
        file.from_chunk = self.pending.len();
        file.next_part += 1;
        Ok(())
    }

    /// A file with part items is complete: its chunks are referenced once more (by the
    /// parts), counted as part statistics.
    fn parts_done(&mut self, file: &FileParts) {
        let pending = std::mem::take(&mut self.pending);
        for r in &pending {
            self.ledger
                .reference(self.index, r.id, (r.size, r.csize), &mut self.stats, true);
        }
        self.pending = pending;
        self.stats.nfiles_parts += file.next_part - 1;
    }

    /// Save the items so far as a checkpoint archive.
    fn checkpoint(&mut self, save: &mut WriteCheckpoint<'_>) -> Result<()> {
        let (writer, index) = (self.writer, self.index);
        let (ledger, stats) = (&mut self.ledger, &mut self.stats);
        let mut store = |data: &[u8]| store_item_chunk(writer, index, ledger, stats, data);
        self.itembuf.flush(true, &mut store)?;
        save(&self.itembuf.chunks, &self.stats)
    }
}

/// An excluded hardlink master: its chunks go to the first included item linking to it.
struct Master {
    chunks: Option<Vec<ChunkRef>>,
    chunks_healthy: Option<Vec<ChunkRef>>,
    /// The item that took them over (later links point to it).
    moved_to: Option<Vec<u8>>,
}

/// Hardlink bookkeeping of a subset (borg's `hardlink_masters`).
#[derive(Default)]
struct Hardlinks {
    masters: HashMap<Vec<u8>, Master>,
}

impl Hardlinks {
    /// An excluded item: remember it if links may need its chunks.
    fn excluded(&mut self, item: &Item) {
        let master =
            hardlinkable(item) && item.hardlink_master.unwrap_or(true) && item.source.is_none();
        if master {
            self.masters.insert(
                item.path.clone(),
                Master {
                    chunks: item.chunks.clone(),
                    chunks_healthy: item.chunks_healthy.clone(),
                    moved_to: None,
                },
            );
        }
    }

    /// An included item: a link to an excluded master becomes the master (takes its
    /// chunks), later links point to that one.
    fn included(&mut self, item: &mut Item) {
        if !hardlinkable(item) {
            return;
        }
        let Some(master) = item.source.as_ref().and_then(|s| self.masters.get_mut(s)) else {
            return;
        };
        match &master.moved_to {
            Some(path) => item.source = Some(path.clone()),
            None => {
                if let Some(chunks) = master.chunks.take() {
                    item.chunks = Some(chunks);
                }
                if let Some(healthy) = master.chunks_healthy.take() {
                    item.chunks_healthy = Some(healthy);
                }
                master.moved_to = Some(item.path.clone());
                item.source = None;
            }
        }
    }
}

/// The reader: source items in order → pipeline pieces.
struct Reader<'p, 'a> {
    run: &'p Run<'a>,
    pipeline: &'p Ordered<'a, Piece>,
    /// Only some items are kept (patterns or PATHs given): hardlinks need care.
    subset: bool,
    hardlinks: Hardlinks,
    chunker: Option<Chunker>,
    ready: Vec<ItemWork>,
    ready_cost: u64,
    stopped: bool,
}

impl<'p, 'a> Reader<'p, 'a> {
    fn new(run: &'p Run<'a>, pipeline: &'p Ordered<'a, Piece>) -> Reader<'p, 'a> {
        let chunker = (run.mode == Mode::Rechunk).then(|| {
            let mut c = Chunker::new(run.target_params, run.jobs.writer.key.chunk_seed() as u32);
            c.use_pool(run.pool.clone());
            c
        });
        Reader {
            run,
            pipeline,
            subset: !run.matcher.is_empty(),
            hardlinks: Hardlinks::default(),
            chunker,
            ready: Vec::new(),
            ready_cost: 0,
            stopped: false,
        }
    }

    fn read(&mut self, source: &Archive) -> Result<()> {
        for item in source.items(self.run.repo.clone(), self.run.key.clone()) {
            if self.stopped {
                break;
            }
            self.item(item?)?;
        }
        Ok(())
    }

    fn item(&mut self, mut item: Item) -> Result<()> {
        let opts = self.run.opts;
        if item.part.is_some() && !opts.consider_part_files {
            return Ok(());
        }
        if !self.run.matcher.match_path(&item.path) {
            print_status(opts, 'x', &item.path);
            if self.subset {
                self.hardlinks.excluded(&item);
            }
            return Ok(());
        }
        if self.subset {
            self.hardlinks.included(&mut item);
        }
        let status = file_status(&item);
        if item.chunks.is_none() {
            let path = item.path.clone();
            self.submit_item(item, Content::None);
            print_status(opts, status, &path);
            return Ok(());
        }
        // a file's status is reported before its content is processed
        print_status(opts, status, &item.path);
        match self.run.mode {
            Mode::Keep => self.submit_item(item, Content::Reuse),
            Mode::Recompress => {
                self.begin_file(&item);
                self.submit_recompress(&item);
                self.submit_item(item, Content::Streamed);
            }
            Mode::Rechunk => {
                // the old list of healthy chunks does not fit the new chunks
                item.chunks_healthy = None;
                self.begin_file(&item);
                self.submit_rechunk(&item)?;
                self.submit_item(item, Content::Streamed);
            }
        }
        Ok(())
    }

    /// Tell the committer which file the next chunks belong to (for part items and
    /// progress).
    fn begin_file(&mut self, item: &Item) {
        if self.run.opts.checkpoint_interval.is_some() || self.run.opts.progress {
            self.submit_item(item.clone(), Content::Begins);
        }
    }

    fn submit_item(&mut self, item: Item, content: Content) {
        self.ready_cost += item_weight(&item);
        self.ready.push(ItemWork { item, content });
        if self.ready.len() >= ITEMS_PER_BATCH {
            self.send_items();
        }
    }

    /// Send the finished items (before any chunk job, so the order is kept).
    fn send_items(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.ready);
        let cost = std::mem::take(&mut self.ready_cost);
        if !self.pipeline.submit(cost, move || Piece::Items(batch)) {
            self.stopped = true;
        }
    }

    /// The chunks of a file to check and recompress: the first sighting of each is processed.
    fn submit_recompress(&mut self, item: &Item) {
        self.send_items();
        let jobs = self.run.jobs;
        let mut batch: Vec<(ChunkRef, bool)> = Vec::with_capacity(BATCH_CHUNKS);
        let mut bytes = 0u64;
        let submit = |batch: Vec<(ChunkRef, bool)>, bytes: u64| {
            self.pipeline
                .submit(bytes, move || Piece::Chunks(jobs.recompress_batch(&batch)))
        };
        for r in item.chunks.iter().flatten() {
            let first = jobs.first_sight(&r.id);
            let size = if first { r.size as u64 } else { 0 };
            if bytes + size > BATCH_BYTES
                && !batch.is_empty()
                && !submit(std::mem::take(&mut batch), std::mem::take(&mut bytes))
            {
                self.stopped = true;
                return;
            }
            bytes += size;
            batch.push((*r, first));
            if batch.len() >= BATCH_CHUNKS
                && !submit(std::mem::take(&mut batch), std::mem::take(&mut bytes))
            {
                self.stopped = true;
                return;
            }
        }
        if !batch.is_empty() && !submit(batch, bytes) {
            self.stopped = true;
        }
    }

    /// Read a file's content through its old chunks and cut it with the new chunker.
    fn submit_rechunk(&mut self, item: &Item) -> Result<()> {
        self.send_items();
        let ids: Vec<(ObjectId, u64)> = item
            .chunks
            .iter()
            .flatten()
            .map(|c| (c.id, c.size as u64))
            .collect();
        let fetch = prefetch(
            self.run.repo.clone(),
            self.run.key.clone(),
            ids,
            FETCH_BUDGET,
        );
        let mut content = ContentReader::new(fetch);
        let mut chunker = self
            .chunker
            .take()
            .ok_or_else(|| Error::exception("no chunker"))?;
        let cut = self.submit_cuts(&mut chunker, &mut content);
        self.chunker = Some(chunker);
        match (cut, content.error.take()) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(Error::exception(e)),
            (Ok(()), None) => Ok(()),
        }
    }

    fn submit_cuts(
        &mut self,
        chunker: &mut Chunker,
        content: &mut ContentReader,
    ) -> std::io::Result<()> {
        let jobs = self.run.jobs;
        let mut chunks = chunker.chunkify(content);
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_CHUNKS);
        let mut bytes = 0u64;
        let submit = |batch: Vec<Vec<u8>>, bytes: u64| {
            self.pipeline.submit(bytes, move || {
                let done = jobs.rechunk_batch(&batch);
                batch.into_iter().for_each(|b| jobs.pool.give(b));
                Piece::Chunks(done)
            })
        };
        while let Some(chunk) = chunks.next_chunk()? {
            let data = match chunk {
                Chunk::Data(d) => d,
                zeros => zeros.into_bytes(),
            };
            let overflows = bytes + data.len() as u64 > BATCH_BYTES;
            if overflows
                && !batch.is_empty()
                && !submit(std::mem::take(&mut batch), std::mem::take(&mut bytes))
            {
                self.stopped = true;
                return Ok(());
            }
            bytes += data.len() as u64;
            batch.push(data);
            if batch.len() >= BATCH_CHUNKS
                && !submit(std::mem::take(&mut batch), std::mem::take(&mut bytes))
            {
                self.stopped = true;
                return Ok(());
            }
        }
        if !batch.is_empty() && !submit(batch, bytes) {
            self.stopped = true;
        }
        Ok(())
    }
}

/// A file's content as a stream, read through its chunks (borg's
/// `ChunkIteratorFileWrapper`); a fetch failure is kept for the caller.
struct ContentReader {
    fetch: Prefetch,
    current: Vec<u8>,
    pos: usize,
    error: Option<Error>,
}

impl ContentReader {
    fn new(fetch: Prefetch) -> ContentReader {
        ContentReader {
            fetch,
            current: Vec::new(),
            pos: 0,
            error: None,
        }
    }
}

impl Read for ContentReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.fetch.next() {
                None => return Ok(0),
                Some(Ok((data, _))) => {
                    recycle(std::mem::replace(&mut self.current, data));
                    self.pos = 0;
                }
                Some(Err(e)) => {
                    self.error = Some(e);
                    return Err(std::io::Error::other("reading a chunk failed"));
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::meta::decode_items;

    /// An in-memory repository of stored objects.
    #[derive(Default)]
    struct MemRepo(Mutex<HashMap<ObjectId, Vec<u8>>>);

    impl Repository for MemRepo {
        fn id(&self) -> ObjectId {
            [7; 32]
        }
        fn location(&self) -> String {
            "mem".into()
        }
        fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
            self.0
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .ok_or_else(|| Error::exception("missing"))
        }
        fn contains(&self, id: &ObjectId) -> Result<bool> {
            Ok(self.0.lock().unwrap().contains_key(id))
        }
        fn len(&self) -> Result<usize> {
            Ok(self.0.lock().unwrap().len())
        }
        fn list(&self, _: usize, _: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
            Ok(self.0.lock().unwrap().keys().copied().collect())
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn append_only(&self) -> bool {
            false
        }
        fn put(&self, id: &ObjectId, data: &[u8]) -> Result<()> {
            self.0.lock().unwrap().insert(*id, data.to_vec());
            Ok(())
        }
        fn delete(&self, id: &ObjectId) -> Result<()> {
            self.0.lock().unwrap().remove(id);
            Ok(())
        }
        fn commit(&self, _: bool, _: f64, _: bool) -> Result<()> {
            Ok(())
        }
    }

    /// Text-like content of `len` bytes (compressible, with some variety for the chunker).
    fn content(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    b'a' + (x % 26) as u8
                } else {
                    b' '
                }
            })
            .collect()
    }

    /// A source archive with one file cut into `pieces` chunks, stored with `compression`;
    /// returns the repository, the writer, the archive and the chunk index.
    fn source(
        data: &[u8],
        pieces: usize,
        compression: CompressionSpec,
    ) -> (Arc<dyn Repository>, ObjectWriter, Archive, ChunkIndex) {
        let repo: Arc<dyn Repository> = Arc::new(MemRepo::default());
        let key = Arc::new(Key::plaintext([7; 32]));
        let writer = ObjectWriter::new(repo.clone(), key.clone(), compression);
        let mut index = ChunkIndex::new();
        let mut refs = Vec::new();
        for piece in data.chunks(data.len().div_ceil(pieces)) {
            let (id, csize) = writer.put(piece).unwrap();
            index.add(&id, 1, piece.len() as u32, csize as u32);
            refs.push(ChunkRef {
                id,
                size: piece.len() as u32,
                csize: csize as u32,
            });
        }
        let item = Item {
            path: b"dir/file".to_vec(),
            mode: Some(0o100644),
            mtime: 1,
            size: Some(data.len() as u64),
            chunks: Some(refs),
            ..Default::default()
        };
        let mut itembuf = ItemBuffer::new(key.chunk_seed());
        let mut store = |d: &[u8]| writer.put(d).map(|(id, _)| id);
        itembuf.add(&item, &mut store).unwrap();
        itembuf.flush(true, &mut store).unwrap();
        let meta = ArchiveMeta {
            name: b"src".to_vec(),
            items: itembuf.chunks.clone(),
            time: "2020-01-01T00:00:00.000000".into(),
            ..stats_fields(&Statistics::default())
        };
        let (id, _, _) = meta.store(&writer).unwrap();
        let archive = Archive::load(repo.as_ref(), &key, &id).unwrap();
        (repo, writer, archive, index)
    }

    /// Run the pipeline over `archive`; returns what it produced and the checkpoint count.
    fn run(
        repo: &Arc<dyn Repository>,
        writer: &ObjectWriter,
        archive: &Archive,
        index: &ChunkIndex,
        mode: Mode,
        opts: &RecreateOptions,
    ) -> (Processed, usize) {
        let seen = Mutex::new(HashSet::new());
        let pool = Arc::new(BufferPool::new(1 << 20));
        let matcher = PatternMatcher::new(true);
        let params = ChunkerParams::Fixed {
            block: 1000,
            header: 0,
        };
        let run = Run {
            repo,
            key: &writer.key,
            pool: &pool,
            jobs: Jobs {
                writer,
                index,
                seen: &seen,
                pool: &pool,
                recompress: opts.recompress,
            },
            matcher: &matcher,
            opts,
            mode,
            target_params: &params,
        };
        let mut checkpoints = 0;
        let mut save = |items: &[ObjectId], _: &Statistics| -> Result<()> {
            assert!(!items.is_empty());
            checkpoints += 1;
            Ok(())
        };
        let processed = run.process(archive, &mut save).unwrap();
        (processed, checkpoints)
    }

    /// The items of an item stream.
    fn items_of(repo: &Arc<dyn Repository>, key: &Key, ids: &[ObjectId]) -> Vec<Item> {
        let stream: Vec<u8> = ids
            .iter()
            .flat_map(|id| key.decrypt(Some(id), &repo.get(id).unwrap()).unwrap())
            .collect();
        decode_items(&stream).unwrap()
    }

    fn read_content(repo: &Arc<dyn Repository>, key: &Key, chunks: &[ChunkRef]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|c| key.decrypt(Some(&c.id), &repo.get(&c.id).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn temporary_archives_end_with_recreate() {
        assert!(is_temporary_archive("a.recreate"));
        assert!(!is_temporary_archive("a.recreate.checkpoint"));
        assert!(!is_temporary_archive("recreate"));
    }

    #[test]
    fn recompress_modes() {
        assert_eq!(Recompress::from_mode("never"), Some(Recompress::Never));
        assert_eq!(
            Recompress::from_mode("if-different"),
            Some(Recompress::IfDifferent)
        );
        assert_eq!(Recompress::from_mode("always"), Some(Recompress::Always));
        assert_eq!(Recompress::from_mode("sometimes"), None);
    }

    #[test]
    fn paths_split_like_python() {
        assert_eq!(split_path(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_path(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(split_path(b"/c"), (&b"/"[..], &b"c"[..]));
        assert_eq!(basename(b"x/CACHEDIR.TAG"), CACHE_TAG_NAME);
    }

    #[test]
    fn decided_compression_is_borgs_choice() {
        let text = content(20_000);
        let noise: Vec<u8> = {
            let mut x: u64 = 88172645463325252;
            (0..20_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let name = |spec: &str, data: &[u8]| {
            decided_compression(&CompressionSpec::parse(spec).unwrap(), data).0
        };
        assert_eq!(name("none", &text), "none");
        assert_eq!(name("lz4", &text), "lz4");
        assert_eq!(name("lz4", &noise), "none");
        assert_eq!(name("zstd,3", &text), "zstd");
        assert_eq!(name("zstd,3", &noise), "none");
        assert_eq!(name("lzma,1", &text), "lzma");
        assert_eq!(name("zlib", &noise), "zlib");
        assert_eq!(name("auto,zstd", &text), "zstd");
        assert_eq!(name("auto,zstd", &noise), "none");
        assert_eq!(name("obfuscate,3,lz4", &text), "obfuscate");
        // the envelope computed for the decision is the one stored
        let (_, envelope) = decided_compression(&CompressionSpec::Zstd(3), &text);
        assert_eq!(compress::decompress(&envelope.unwrap()).unwrap(), text);
    }

    #[test]
    fn hardlinks_of_an_excluded_master_move_to_the_first_link() {
        let chunk = ChunkRef {
            id: [1; 32],
            size: 3,
            csize: 4,
        };
        let file = |path: &[u8], source: Option<&[u8]>| Item {
            path: path.to_vec(),
            mode: Some(0o100644),
            source: source.map(|s| s.to_vec()),
            chunks: source.is_none().then(|| vec![chunk]),
            hardlink_master: source.is_none().then_some(true),
            ..Default::default()
        };
        let mut links = Hardlinks::default();
        links.excluded(&file(b"master", None));
        let mut first = file(b"first", Some(b"master"));
        links.included(&mut first);
        assert_eq!(first.source, None);
        assert_eq!(first.chunks, Some(vec![chunk]));
        let mut second = file(b"second", Some(b"master"));
        links.included(&mut second);
        assert_eq!(second.source.as_deref(), Some(&b"first"[..]));
        assert_eq!(second.chunks, None);
        // a link to an included master is left alone
        let mut other = file(b"other", Some(b"elsewhere"));
        links.included(&mut other);
        assert_eq!(other.source.as_deref(), Some(&b"elsewhere"[..]));
    }

    #[test]
    fn recompression_replaces_chunks_of_another_algorithm() {
        let data = content(50_000);
        let (repo, lz4_writer, archive, index) = source(&data, 5, CompressionSpec::Lz4);
        let writer = ObjectWriter::new(
            repo.clone(),
            lz4_writer.key.clone(),
            CompressionSpec::Zstd(3),
        );
        let opts = RecreateOptions {
            recompress: Recompress::IfDifferent,
            ..Default::default()
        };
        let (done, _) = run(&repo, &writer, &archive, &index, Mode::Recompress, &opts);
        let items = items_of(&repo, &writer.key, &done.item_chunks);
        assert_eq!(items.len(), 1);
        let chunks = items[0].chunks.clone().unwrap();
        assert_eq!(chunks.len(), 5);
        for c in &chunks {
            let payload = writer
                .key
                .decrypt_payload(Some(&c.id), &repo.get(&c.id).unwrap());
            assert_eq!(compress::detect(&payload.unwrap()), Some("zstd"));
            // the item records the new stored size; the index entry gets it when applied
            assert_eq!(c.csize as usize, repo.get(&c.id).unwrap().len());
            assert_eq!(done.ledger.stored.get(&c.id), Some(&(c.size, c.csize)));
        }
        assert_eq!(read_content(&repo, &writer.key, &chunks), data);
        assert_eq!(done.stats.nfiles, 1);
        // overwritten chunks are not new: only the item stream is
        let stream_csize: u64 = done
            .item_chunks
            .iter()
            .map(|id| repo.get(id).unwrap().len() as u64)
            .sum();
        assert_eq!(done.stats.usize, stream_csize);

        // the same compression again: nothing is stored anew
        let (again, _) = {
            let mut index = ChunkIndex::new();
            for c in &chunks {
                index.add(&c.id, 1, c.size, c.csize);
            }
            let meta = ArchiveMeta {
                name: b"again".to_vec(),
                items: done.item_chunks.clone(),
                time: "2020-01-01T00:00:00.000000".into(),
                ..stats_fields(&Statistics::default())
            };
            let (id, _, _) = meta.store(&writer).unwrap();
            let archive = Archive::load(repo.as_ref(), &writer.key, &id).unwrap();
            run(&repo, &writer, &archive, &index, Mode::Recompress, &opts)
        };
        // (only the item stream may be new)
        assert!(again
            .ledger
            .stored
            .keys()
            .all(|id| again.item_chunks.contains(id)));
        for c in &chunks {
            assert!(again.ledger.increfs.contains(&c.id));
        }
    }

    #[test]
    fn rechunking_cuts_anew_and_checkpoints_write_part_items() {
        let data = content(10_500);
        let (repo, writer, archive, index) = source(&data, 3, CompressionSpec::Lz4);
        let opts = RecreateOptions {
            checkpoint_interval: Some(Duration::ZERO),
            ..Default::default()
        };
        let (done, checkpoints) = run(&repo, &writer, &archive, &index, Mode::Rechunk, &opts);
        let items = items_of(&repo, &writer.key, &done.item_chunks);
        let (parts, full): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| i.part.is_some());
        assert_eq!(full.len(), 1);
        let chunks = full[0].chunks.clone().unwrap();
        // fixed,1000: ten full blocks and the rest
        assert_eq!(chunks.len(), 11);
        assert!(chunks[..10].iter().all(|c| c.size == 1000));
        assert_eq!(read_content(&repo, &writer.key, &chunks), data);
        // one checkpoint per batch of chunks; the parts concatenate to the file
        assert!(!parts.is_empty());
        assert_eq!(checkpoints, parts.len());
        for (n, part) in parts.iter().enumerate() {
            assert_eq!(part.part, Some(n as u64 + 1));
            assert_eq!(
                part.path,
                format!("dir/file.borg_part_{}", n + 1).into_bytes()
            );
        }
        let part_chunks: Vec<ChunkRef> = parts
            .iter()
            .flat_map(|p| p.chunks.clone().unwrap())
            .collect();
        assert_eq!(part_chunks, chunks);
        assert_eq!(done.stats.nfiles, 1);
        assert_eq!(done.stats.nfiles_parts, parts.len() as u64);
        assert_eq!(done.stats.osize_parts, data.len() as u64);
        // every new chunk: one reference from the file, one from the parts
        for c in &chunks {
            assert!(done.ledger.stored.contains_key(&c.id));
            assert_eq!(
                done.ledger.increfs.iter().filter(|i| **i == c.id).count(),
                1
            );
        }
    }
}
