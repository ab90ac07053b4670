//! Backing up a file system tree into a new archive (borg's `create`), as a pipeline:
//!
//! * the *walker* (one thread) traverses the roots in borg's order (entries of a directory by
//!   inode number), applies patterns and exclusions, captures metadata, consults the files
//!   cache, reads and chunks the files that changed, and submits every chunk and every finished
//!   item, in archive order;
//! * *workers* (one per core) hash each chunk, look it up in the chunk index, and compress and
//!   encrypt the chunks not stored yet (claimed once per run, so each is stored once);
//! * the *committer* (the calling thread) takes the results in order, stores the new chunks,
//!   assembles items and feeds the item metadata stream.
//!
//! The chunk index and files cache are only read during the run; the reference counts and
//! files-cache entries to record are returned for the caller to apply to its cache.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::archive::item::{ChunkRef, Item};
use crate::archive::itembuf::ItemBuffer;
use crate::archive::objects::ObjectWriter;
use crate::archive::ordered::Ordered;
use crate::archive::Statistics;
use crate::bufpool::BufferPool;
use crate::cache::FileMemo;
use crate::chunker::{Chunk, Chunker, ChunkerParams};
use crate::errors::{Error, Result, WarningKind};
use crate::fs::{self, BackupOsError, CaptureOptions, FileStat, FilesChanged, OpenKind};
use crate::hashindex::ChunkIndexEntry;
use crate::output::{self, signals, ArchiveProgress, ArchiveProgressStats};
use crate::patterns::PatternMatcher;
use crate::repository::ObjectId;
use chrono::Utc;

/// What the walker reads from the chunk index and files cache (the client cache).
pub trait BackupIndex: Sync {
    /// The index entry of a chunk already in the repository.
    fn chunk(&self, id: &ObjectId) -> Option<ChunkIndexEntry>;
    /// (known, chunk ids if unchanged) for a regular file by its path hash.
    fn file_known_and_unchanged(
        &self,
        path_hash: &ObjectId,
        st: &FileStat,
    ) -> (bool, Option<Vec<ObjectId>>);
}

impl BackupIndex for crate::cache::Cache {
    fn chunk(&self, id: &ObjectId) -> Option<ChunkIndexEntry> {
        self.chunks().get(id)
    }

    fn file_known_and_unchanged(
        &self,
        path_hash: &ObjectId,
        st: &FileStat,
    ) -> (bool, Option<Vec<ObjectId>>) {
        crate::cache::Cache::file_known_and_unchanged(self, path_hash, st)
    }
}

/// The 43-byte signature that marks a cache directory (`--exclude-caches`).
pub(crate) const CACHEDIR_TAG_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Finished items sent to the committer at once.
const ITEMS_PER_BATCH: usize = 256;

/// Chunks hashed and encrypted together by one worker (SIMD across chunks), and the bytes a
/// batch stays under (unless one chunk alone is larger).
pub(crate) const BATCH_CHUNKS: usize = 4;
pub(crate) const BATCH_BYTES: u64 = 4 << 20;

/// Idle chunk and envelope buffers kept for reuse (see `bufpool`).
pub(crate) const POOL_IDLE_BYTES: usize = 16 << 20;

/// Bytes in flight between walker and committer: chunk data until hashed and encrypted, then
/// the envelopes until written. Small, so peak memory stays at borg's; two cores stay busy.
pub(crate) const PIPELINE_BUDGET: u64 = 12 << 20;

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Recursion roots as given (PATH arguments and `R` pattern lines).
    pub roots: Vec<Vec<u8>>,
    pub exclude_caches: bool,
    pub exclude_if_present: Vec<Vec<u8>>,
    pub keep_exclude_tags: bool,
    pub exclude_nodump: bool,
    pub one_file_system: bool,
    pub read_special: bool,
    pub sparse: bool,
    pub capture: CaptureOptions,
    pub files_changed: FilesChanged,
    pub chunker: ChunkerParams,
    /// (inode, device) of directories never to enter (the cache dir, a local repository).
    pub skip_inodes: Vec<(u64, u64)>,
    /// Walk and report only (`--dry-run`): nothing is read or stored.
    pub dry_run: bool,
    /// Status letters to report with `--list` (None: all).
    pub list_filter: Option<String>,
    pub list: bool,
    pub progress: bool,
    /// The working directory, for the files cache's absolute path hashes.
    pub cwd: PathBuf,
    /// `--paths-from-stdin` / `--paths-from-command`: the roots are exactly the items to back
    /// up; directories among them are not entered.
    pub no_recursion: bool,
    /// How a `-` root (stdin, `--content-from-command`) is stored.
    pub stdin: StdinItem,
    /// `--checkpoint-interval` (None: 0, no checkpoints).
    pub checkpoint_interval: Option<std::time::Duration>,
}

/// `--stdin-name/-user/-group/-mode`: the item made of piped data.
#[derive(Debug, Clone)]
pub struct StdinItem {
    pub name: Vec<u8>,
    pub user: String,
    pub group: String,
    pub mode: u32,
}

impl Default for StdinItem {
    fn default() -> Self {
        StdinItem {
            name: b"stdin".to_vec(),
            user: "root".into(),
            group: "root".into(),
            mode: 0o660,
        }
    }
}

/// A chunk processed by a worker.
struct ChunkDone {
    id: ObjectId,
    size: u32,
    csize: u32,
    /// The stored form, when this run stores the chunk.
    stored: Option<Vec<u8>>,
}

/// Where an item's content comes from, as the committer assembles it.
enum Content {
    /// No content (directories, symlinks, fifos, devices, hardlink slaves).
    None,
    /// The chunk results submitted just before this item.
    Streamed,
    /// Unchanged per the files cache: these chunks are referenced again.
    Known(Vec<ObjectId>),
    /// Reading failed: drop the chunk results submitted for it.
    Discard,
    /// Not an item: the file whose chunks follow, for its part items at checkpoints.
    Begins,
}

/// A finished item for the committer.
struct ItemDone {
    item: Item,
    content: Content,
    /// Count as a regular file (borg's `nfiles`).
    counts_as_file: bool,
    /// Files-cache entry to record once stored: path hash and the stat it was read with.
    memorize: Option<(ObjectId, FileStat)>,
}

enum Piece {
    Chunks(Result<Vec<ChunkDone>>),
    Items(Vec<ItemDone>),
}

impl Piece {
    /// Bytes a finished piece holds until committed (the stored envelopes).
    fn weight(&self) -> u64 {
        match self {
            Piece::Chunks(Ok(chunks)) => chunks
                .iter()
                .filter_map(|c| c.stored.as_ref())
                .map(|s| s.capacity() as u64)
                .sum(),
            _ => 0,
        }
    }
}

/// Saves a checkpoint archive (every `--checkpoint-interval`): given the item-stream chunks and
/// the statistics so far, the caller stores the archive, writes the manifest and commits.
pub type WriteCheckpoint<'c> = dyn FnMut(&[ObjectId], &Statistics) -> Result<()> + 'c;

/// What a backup produced, for the caller to commit.
#[derive(Debug, Default)]
pub struct CreateOutcome {
    /// Chunk ids of the item metadata stream (the archive's `items`).
    pub item_chunks: Vec<ObjectId>,
    /// Statistics of the file data (borg's `archive.stats`).
    pub stats: Statistics,
    /// Statistics of the item-stream chunks (borg's `meta_stats`).
    pub meta_stats: Statistics,
    /// Chunks stored by this run: id, size, csize (each starts with one reference).
    pub new_chunks: Vec<(ObjectId, u32, u32)>,
    /// Further references, to chunks of `new_chunks` or already known ones.
    pub increfs: Vec<ObjectId>,
    /// Files-cache entries: path hash, stat, chunk ids.
    pub memorize: Vec<(ObjectId, FileMemo, Vec<ObjectId>)>,
}

/// Run a backup of `opts.roots` with `matcher`; nothing is committed. In `dry_run` mode
/// `writer` and `index` may be None (borg does not open the repository then).
/// A `-` root reads `pipe` (stdin or a command's output).
pub fn backup(
    writer: Option<&ObjectWriter>,
    index: Option<&dyn BackupIndex>,
    matcher: &PatternMatcher,
    opts: &CreateOptions,
    pipe: Option<Box<dyn std::io::Read + Send>>,
    checkpoint: Option<&mut WriteCheckpoint<'_>>,
) -> Result<CreateOutcome> {
    let (Some(writer), Some(index), false) = (writer, index, opts.dry_run) else {
        let mut walker = Walker::new(None, None, matcher, opts, None);
        walker.walk_roots(None)?;
        return Ok(CreateOutcome::default());
    };
    let claims: Mutex<HashSet<ObjectId>> = Mutex::new(HashSet::new());
    let pool = Arc::new(BufferPool::new(POOL_IDLE_BYTES));
    let pipeline: Ordered<Piece> = Ordered::with_weigher(PIPELINE_BUDGET, Piece::weight);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| pipeline.work());
        }
        let walker_thread = scope.spawn(|| {
            let ctx = ChunkContext {
                writer,
                index,
                claims: &claims,
                pool: &pool,
            };
            let mut walker = Walker::new(Some(&pipeline), Some(index), matcher, opts, Some(ctx));
            walker.chunker.use_pool(pool.clone());
            let walked = walker.walk_roots(pipe);
            walker.send_items(&pipeline);
            pipeline.finish_input();
            walked
        });
        let result = commit_loop(writer, index, &pipeline, &pool, opts, checkpoint);
        pipeline.close();
        let walked = walker_thread
            .join()
            .unwrap_or_else(|_| Err(Error::exception("walker thread panicked")));
        walked?;
        result
    })
}

/// Everything a chunk job needs (shared, read-only).
#[derive(Clone, Copy)]
struct ChunkContext<'a> {
    writer: &'a ObjectWriter,
    index: &'a dyn BackupIndex,
    claims: &'a Mutex<HashSet<ObjectId>>,
    /// Chunk copies and envelopes go round this.
    pool: &'a BufferPool,
}

impl ChunkContext<'_> {
    /// Hash a batch of chunks; compress and encrypt those neither the repository nor this run
    /// has (hashing and MACs of a batch run side by side: see `Key::id_hash_many`).
    fn process(&self, datas: &[Vec<u8>]) -> Result<Vec<ChunkDone>> {
        let key = &self.writer.key;
        let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
        let ids = key.id_hash_many(&refs);
        let mut done: Vec<ChunkDone> = Vec::with_capacity(datas.len());
        let mut to_store: Vec<usize> = Vec::new();
        for (i, (id, data)) in ids.iter().zip(datas).enumerate() {
            let size = data.len() as u32;
            let csize = match self.index.chunk(id) {
                Some(e) => e.csize,
                None => {
                    let claimed = self
                        .claims
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(*id);
                    if claimed {
                        to_store.push(i);
                        0
                    } else {
                        // Stored by another job of this run.
                        estimated_csize(self.writer, data)
                    }
                }
            };
            done.push(ChunkDone {
                id: *id,
                size,
                csize,
                stored: None,
            });
        }
        if !to_store.is_empty() {
            let plain: Vec<&[u8]> = to_store.iter().map(|&i| refs[i]).collect();
            for (&i, stored) in to_store
                .iter()
                .zip(self.writer.encrypt_many(&plain, &|n| self.pool.take(n))?)
            {
                done[i].csize = stored.len() as u32;
                done[i].stored = Some(stored);
            }
        }
        Ok(done)
    }
}

/// The stored size of a chunk another job of this run stores: this compression's output
/// plus the envelope (an estimate only for `obfuscate`'s random padding).
pub(crate) fn estimated_csize(writer: &ObjectWriter, data: &[u8]) -> u32 {
    let envelope = if writer.key.needs_nonces() {
        crate::crypto::AES_OVERHEAD
    } else {
        1
    };
    (writer.compression.compress(data).len() + envelope) as u32
}

/// The committer: results in order → repository puts, items, statistics, checkpoints.
fn commit_loop(
    writer: &ObjectWriter,
    index: &dyn BackupIndex,
    pipeline: &Ordered<Piece>,
    pool: &BufferPool,
    opts: &CreateOptions,
    mut checkpoint: Option<&mut WriteCheckpoint<'_>>,
) -> Result<CreateOutcome> {
    let mut c = Committer {
        writer,
        index,
        out: CreateOutcome::default(),
        new_refs: HashMap::new(),
        itembuf: ItemBuffer::new(writer.key.chunk_seed()),
    };
    let mut pending: Vec<ChunkRef> = Vec::new();
    let mut progress = opts.progress.then(ArchiveProgress::new);
    // The file being chunked (known when checkpoints are on) and when the last one was.
    let mut parts: Option<FileParts> = None;
    let mut last_checkpoint = std::time::Instant::now();
    while let Some(piece) = pipeline.next() {
        match piece {
            Piece::Chunks(chunks) => {
                for ch in chunks? {
                    if let Some(stored) = ch.stored {
                        writer.put_stored(&ch.id, &stored)?;
                        pool.give(stored);
                        c.out.new_chunks.push((ch.id, ch.size, ch.csize));
                        c.new_refs.insert(ch.id, 0);
                    }
                    pending.push(ChunkRef {
                        id: ch.id,
                        size: ch.size,
                        csize: ch.csize,
                    });
                }
                if signals::sigint_pending() {
                    return c.interrupted(checkpoint.as_deref_mut(), parts.as_mut(), &pending);
                }
                // borg checks after every chunk of a file whether a checkpoint is due.
                let due = opts
                    .checkpoint_interval
                    .is_some_and(|every| last_checkpoint.elapsed() > every);
                if let (true, Some(file), Some(save)) = (due, parts.as_mut(), checkpoint.as_mut()) {
                    c.part_item(file, &pending)?;
                    c.checkpoint(save)?;
                    last_checkpoint = std::time::Instant::now();
                }
            }
            Piece::Items(items) => {
                for done in items {
                    let file = parts.take();
                    match done.content {
                        Content::Begins => {
                            parts = Some(FileParts::new(done.item));
                            continue;
                        }
                        Content::Discard => c.parts_referenced(file.as_ref(), &pending),
                        Content::Streamed => {
                            if let (Some(mut file), Some(save)) = (file, checkpoint.as_mut()) {
                                if file.next_part > 1 && pending.len() > file.from_chunk {
                                    // The rest goes into a last part: parts concatenate to the file.
                                    c.part_item(&mut file, &pending)?;
                                    c.checkpoint(save)?;
                                    last_checkpoint = std::time::Instant::now();
                                }
                                c.parts_done(&file, &pending);
                            }
                        }
                        _ => {}
                    }
                    if signals::sigint_pending() {
                        return c.interrupted(checkpoint.as_deref_mut(), None, &pending);
                    }
                    if let Some(path) = c.item(done, &mut pending)? {
                        if let Some(p) = progress.as_mut() {
                            p.show(
                                &progress_stats(&c.out.stats),
                                &crate::archive::display_bytes(&path),
                            );
                        }
                    }
                }
            }
        }
    }
    if signals::sigint_pending() {
        return c.interrupted(checkpoint, None, &pending);
    }
    let Committer {
        mut out,
        mut new_refs,
        mut itembuf,
        ..
    } = c;
    let mut store = |data: &[u8]| store_meta_chunk(writer, index, data, &mut out, &mut new_refs);
    itembuf.flush(true, &mut store)?;
    out.item_chunks = std::mem::take(&mut itembuf.chunks);
    // Chunks stored for files whose reading then failed: referenced by nothing.
    for (id, n) in &new_refs {
        if *n == 0 {
            writer.repo.delete(id)?;
        }
    }
    out.new_chunks
        .retain(|(id, _, _)| new_refs.get(id).is_some_and(|n| *n > 0));
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    Ok(out)
}

/// A file being chunked and the part items written for it so far (borg's `from_chunk` and
/// `part_number`).
struct FileParts {
    base: Item,
    /// Chunks up to here are in part items.
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

/// The committer's state: what the backup produced so far, the item stream, and the
/// references per chunk stored by this run (new chunks nobody references are deleted).
struct Committer<'c> {
    writer: &'c ObjectWriter,
    index: &'c dyn BackupIndex,
    out: CreateOutcome,
    new_refs: HashMap<ObjectId, u32>,
    itembuf: ItemBuffer,
}

impl Committer<'_> {
    /// One more reference to `id`; true if it is the first to a chunk stored by this run.
    fn reference(&mut self, id: &ObjectId) -> bool {
        let fresh = match self.new_refs.get_mut(id) {
            Some(n) => {
                *n += 1;
                *n == 1
            }
            None => false,
        };
        if !fresh {
            self.out.increfs.push(*id);
        }
        fresh
    }

    /// Store the chunks of `file` since its last part as part item `<path>.borg_part_<N>`.
    fn part_item(&mut self, file: &mut FileParts, pending: &[ChunkRef]) -> Result<()> {
        let refs = pending[file.from_chunk..].to_vec();
        let mut item = file.base.clone();
        item.path
            .extend_from_slice(format!(".borg_part_{}", file.next_part).as_bytes());
        item.part = Some(file.next_part);
        item.size = Some(refs.iter().map(|r| r.size as u64).sum());
        item.chunks = Some(refs);
        self.add_to_stream(&item)?;
        file.from_chunk = pending.len();
        file.next_part += 1;
        Ok(())
    }

    /// Save the items so far as a checkpoint archive.
    fn checkpoint(&mut self, save: &mut WriteCheckpoint<'_>) -> Result<()> {
        let (writer, index) = (self.writer, self.index);
        let (out, new_refs) = (&mut self.out, &mut self.new_refs);
        let mut store = |data: &[u8]| store_meta_chunk(writer, index, data, out, new_refs);
        self.itembuf.flush(true, &mut store)?;
        save(&self.itembuf.chunks, &self.out.stats)
    }

    /// Ctrl-C (deferred by the caller): save what there is as a checkpoint, with the file
    /// being read as a part, and end without the archive (borg: `Got Ctrl-C / SIGINT.`).
    fn interrupted(
        &mut self,
        save: Option<&mut WriteCheckpoint<'_>>,
        file: Option<&mut FileParts>,
        pending: &[ChunkRef],
    ) -> Result<CreateOutcome> {
        if let Some(save) = save {
            if let Some(file) = file {
                self.part_item(file, pending)?;
            }
            self.checkpoint(save)?;
        }
        Err(Error::generic("Got Ctrl-C / SIGINT."))
    }

    /// A file with part items is complete: its chunks are referenced once more (by the parts),
    /// counted as part statistics (borg's `chunk_incref(..., part=True)`).
    fn parts_done(&mut self, file: &FileParts, pending: &[ChunkRef]) {
        if file.next_part == 1 {
            return;
        }
        for r in pending {
            self.out.increfs.push(r.id);
            self.out
                .stats
                .update(r.size as u64, r.csize as u64, false, true);
        }
        self.out.stats.nfiles_parts += file.next_part - 1;
    }

    /// A file with part items failed: the parts still reference their chunks.
    fn parts_referenced(&mut self, file: Option<&FileParts>, pending: &[ChunkRef]) {
        if let Some(file) = file {
            for r in &pending[..file.from_chunk] {
                self.reference(&r.id);
            }
        }
    }

    fn add_to_stream(&mut self, item: &Item) -> Result<()> {
        let (writer, index) = (self.writer, self.index);
        let (out, new_refs) = (&mut self.out, &mut self.new_refs);
        let mut store = |data: &[u8]| store_meta_chunk(writer, index, data, out, new_refs);
        self.itembuf.add(item, &mut store)
    }

    /// Finish an item (its chunk list, statistics, files-cache entry) and append it to the
    /// item stream; returns its path (None for a discarded one).
    fn item(&mut self, done: ItemDone, pending: &mut Vec<ChunkRef>) -> Result<Option<Vec<u8>>> {
        let ItemDone {
            mut item,
            content,
            counts_as_file,
            memorize,
        } = done;
        let refs: Option<Vec<ChunkRef>> = match content {
            Content::None | Content::Begins => None,
            Content::Discard => {
                pending.clear();
                return Ok(None);
            }
            Content::Streamed => Some(std::mem::take(pending)),
            Content::Known(ids) => Some(
                ids.iter()
                    .map(|id| {
                        let e = self.index.chunk(id).unwrap_or_default();
                        ChunkRef {
                            id: *id,
                            size: e.size,
                            csize: e.csize,
                        }
                    })
                    .collect(),
            ),
        };
        if let Some(refs) = refs {
            for r in &refs {
                let fresh = self.reference(&r.id);
                self.out
                    .stats
                    .update(r.size as u64, r.csize as u64, fresh, false);
            }
            item.size = Some(refs.iter().map(|r| r.size as u64).sum());
            if let Some((path_hash, st)) = memorize {
                self.out.memorize.push((
                    path_hash,
                    FileMemo::from(&st),
                    refs.iter().map(|r| r.id).collect(),
                ));
            }
            item.chunks = Some(refs);
        }
        if counts_as_file {
            self.out.stats.nfiles += 1;
        }
        self.add_to_stream(&item)?;
        Ok(Some(item.path))
    }
}

pub(crate) fn progress_stats(s: &Statistics) -> ArchiveProgressStats {
    ArchiveProgressStats {
        original_size: s.osize,
        compressed_size: s.csize,
        deduplicated_size: s.usize,
        nfiles: s.nfiles,
    }
}

/// Store one item-stream chunk (deduplicated like data; counted in the meta statistics).
fn store_meta_chunk(
    writer: &ObjectWriter,
    index: &dyn BackupIndex,
    data: &[u8],
    out: &mut CreateOutcome,
    new_refs: &mut HashMap<ObjectId, u32>,
) -> Result<ObjectId> {
    let id = writer.key.id_hash(data);
    let size = data.len() as u64;
    if let Some(n) = new_refs.get_mut(&id) {
        *n += 1;
        out.increfs.push(id);
        let csize = out
            .new_chunks
            .iter()
            .find(|c| c.0 == id)
            .map_or(0, |c| c.2 as u64);
        out.meta_stats.update(size, csize, false, false);
    } else if let Some(e) = index.chunk(&id) {
        out.increfs.push(id);
        out.meta_stats.update(size, e.csize as u64, false, false);
    } else {
        let stored = writer.encrypt(data)?;
        writer.put_stored(&id, &stored)?;
        out.new_chunks.push((id, size as u32, stored.len() as u32));
        new_refs.insert(id, 1);
        out.meta_stats
            .update(size, stored.len() as u64, true, false);
    }
    Ok(id)
}

/// The traversal, in its own thread.
struct Walker<'p, 'a> {
    pipeline: Option<&'p Ordered<'a, Piece>>,
    index: Option<&'a dyn BackupIndex>,
    matcher: &'a PatternMatcher,
    opts: &'a CreateOptions,
    chunks: Option<ChunkContext<'a>>,
    chunker: Chunker,
    /// (inode, device) of hardlinked files already stored → their item path.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    skip_inodes: HashSet<(u64, u64)>,
    /// Zero chunks' ids by length (sparse files, zero runs).
    zero_ids: HashMap<usize, ObjectId>,
    /// Finished items not sent yet (sent in batches: one wake-up of the committer each).
    ready_items: Vec<ItemDone>,
    stopped: bool,
}

/// How processing one item failed.
enum Failure {
    /// An OS error (BackupOSError family), `op: [Errno …]` after the path.
    Os(BackupOsError),
    /// Another classed warning (race condition).
    Kind(WarningKind),
}

impl From<BackupOsError> for Failure {
    fn from(e: BackupOsError) -> Self {
        Failure::Os(e)
    }
}

fn os(op: &'static str, e: std::io::Error) -> Failure {
    Failure::Os(BackupOsError::new(op, e, None))
}

/// [`os`] of a call given a path: Python names the file in the message (`…: 'data/x'`).
fn os_path(op: &'static str, e: std::io::Error, path: &[u8]) -> Failure {
    Failure::Os(BackupOsError::new(
        op,
        e,
        Some(Path::new(OsStr::from_bytes(path))),
    ))
}

impl<'p, 'a> Walker<'p, 'a> {
    fn new(
        pipeline: Option<&'p Ordered<'a, Piece>>,
        index: Option<&'a dyn BackupIndex>,
        matcher: &'a PatternMatcher,
        opts: &'a CreateOptions,
        chunks: Option<ChunkContext<'a>>,
    ) -> Walker<'p, 'a> {
        let seed = chunks.map_or(0, |c| c.writer.key.chunk_seed() as u32);
        Walker {
            pipeline,
            index,
            matcher,
            opts,
            chunks,
            chunker: Chunker::new(&opts.chunker, seed),
            hard_links: HashMap::new(),
            skip_inodes: opts.skip_inodes.iter().copied().collect(),
            zero_ids: HashMap::new(),
            ready_items: Vec::new(),
            stopped: false,
        }
    }

    fn print_status(&self, status: char, path: &[u8]) {
        if !self.opts.list {
            return;
        }
        if let Some(filter) = &self.opts.list_filter {
            if !filter.contains(status) {
                return;
            }
        }
        output::file_status(status, &crate::archive::display_bytes(path));
    }

    fn warn(&self, path: &[u8], failure: Failure) {
        let shown = crate::archive::display_bytes(path);
        match failure {
            Failure::Os(e) => output::warn_kind(e.kind(), &format!("{shown}: {}", e.message())),
            Failure::Kind(kind) => output::warn_kind(kind, &fs_refusal_text(kind, &shown)),
        }
    }

    fn walk_roots(&mut self, mut pipe: Option<Box<dyn std::io::Read + Send>>) -> Result<()> {
        for root in &self.opts.roots {
            if self.stopped {
                return Ok(());
            }
            if root == b"-" {
                let name = self.opts.stdin.name.clone();
                if self.opts.dry_run {
                    self.print_status('-', &name);
                    continue;
                }
                let reader = pipe
                    .as_mut()
                    .ok_or_else(|| Error::exception("no input for '-'"))?;
                match self.process_pipe(reader) {
                    Ok(()) => {}
                    Err(Failure::Os(e)) if e.op.is_empty() => {
                        return Err(Error::generic(format!(
                            "no such user or group: {}",
                            e.error
                        )));
                    }
                    Err(f) => {
                        self.warn(&name, f);
                        self.print_status('E', &name);
                    }
                }
                continue;
            }
            let path = crate::patterns::normpath(root);
            if self.opts.no_recursion {
                self.process_listed(&path);
                continue;
            }
            let st = match fs::stat::lstat(Path::new(OsStr::from_bytes(&path))) {
                Ok(st) => st,
                Err(e) => {
                    self.warn(&path, os_path("stat", e, &path));
                    continue;
                }
            };
            let restrict_dev = self.opts.one_file_system.then_some(st.dev);
            self.rec_walk(&path, None, None, restrict_dev);
            // A root given twice is not entered again.
            self.skip_inodes.insert((st.ino, st.dev));
        }
        Ok(())
    }

    /// One path of `--paths-from-stdin/-command`: stored as is, directories not entered.
    fn process_listed(&mut self, path: &[u8]) {
        let result = (|| -> std::result::Result<Option<char>, Failure> {
            let st = fs::stat::lstat(Path::new(OsStr::from_bytes(path)))
                .map_err(|e| os_path("stat", e, path))?;
            if !st.is_dir() {
                return self.process_any(path, None, None, &st);
            }
            if self.opts.dry_run {
                return Ok(Some('-'));
            }
            let dir = self.open_at("dir_open", path, None, None, OpenKind::Dir)?;
            let st2 = fs::stat::fstat(dir.as_raw_fd()).map_err(|e| os("fstat", e))?;
            fs::stat_update_check(&st, &st2).map_err(Failure::Kind)?;
            self.add_plain_item(path, &st2, Some(dir.as_raw_fd()))?;
            Ok(Some('d'))
        })();
        match result {
            Ok(Some(status)) => {
                if status == 'C' {
                    output::warn_kind(
                        WarningKind::FileChanged,
                        &format!(
                            "{}: file changed while we backed it up",
                            crate::archive::display_bytes(path)
                        ),
                    );
                }
                self.print_status(status, path);
            }
            Ok(None) => {}
            Err(f) => {
                self.warn(path, f);
                self.print_status('E', path);
            }
        }
    }

    /// Piped data (`-`, `--content-from-command`) as one regular file (borg's `process_pipe`).
    fn process_pipe(
        &mut self,
        reader: &mut Box<dyn std::io::Read + Send>,
    ) -> std::result::Result<(), Failure> {
        let spec = self.opts.stdin.clone();
        self.print_status('i', &spec.name);
        let no_such = |what: &str, name: &str| {
            Failure::Os(BackupOsError::new(
                "",
                std::io::Error::other(format!("{what} {name}")),
                None,
            ))
        };
        let uid =
            fs::ids::user2uid(spec.user.as_bytes()).ok_or_else(|| no_such("user", &spec.user))?;
        let gid = fs::ids::group2gid(spec.group.as_bytes())
            .ok_or_else(|| no_such("group", &spec.group))?;
        let now = Utc::now().timestamp() * 1_000_000_000;
        let item = Item {
            path: spec.name.clone(),
            mode: Some(spec.mode & 0o107777 | 0o100000),
            uid: Some(uid),
            gid: Some(gid),
            user: Some(spec.user.as_bytes().to_vec()),
            group: Some(spec.group.as_bytes().to_vec()),
            mtime: now,
            atime: Some(now),
            ctime: Some(now),
            hardlink_master: Some(false),
            ..Default::default()
        };
        let ctx = self
            .chunks
            .expect("content processing needs the repository");
        // borg's part items of piped data are taken before `hardlink_master` is set.
        let mut base = item.clone();
        base.hardlink_master = None;
        self.begin_file(&base);
        if let Err(e) = self.stream_reader(reader, ctx) {
            self.submit_item(Item::default(), Content::Discard, false, None);
            return Err(e);
        }
        self.submit_item(item, Content::Streamed, true, None);
        Ok(())
    }

    /// Process `path` (`parent`/`name` when inside a walked directory) and below.
    fn rec_walk(
        &mut self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        restrict_dev: Option<u64>,
    ) {
        if self.stopped {
            return;
        }
        let outcome = self.rec_walk_inner(path, parent, name, restrict_dev);
        match outcome {
            Ok(Some(status)) => {
                if status == 'C' {
                    output::warn_kind(
                        WarningKind::FileChanged,
                        &format!(
                            "{}: file changed while we backed it up",
                            crate::archive::display_bytes(path)
                        ),
                    );
                }
                self.print_status(status, path);
            }
            Ok(None) => {}
            Err(f) => {
                self.warn(path, f);
                self.print_status('E', path);
            }
        }
    }

    fn stat_at(
        &self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
    ) -> std::io::Result<FileStat> {
        match (parent, name) {
            (Some(fd), Some(n)) => fs::stat::fstatat(fd, Path::new(OsStr::from_bytes(n)), false),
            _ => fs::stat::lstat(Path::new(OsStr::from_bytes(path))),
        }
    }

    /// Open relative to `parent` when there is one; a failure names what was opened, as
    /// Python's OSError of borg's `os.open(name, dir_fd=…)` does.
    fn open_at(
        &self,
        op: &'static str,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        kind: OpenKind,
    ) -> std::result::Result<OwnedFd, Failure> {
        let target = Path::new(OsStr::from_bytes(
            name.filter(|_| parent.is_some()).unwrap_or(path),
        ));
        fs::open_item(parent, target, kind, true)
            .map_err(|e| Failure::Os(BackupOsError::new(op, e, Some(target))))
    }

    /// Returns the status letter to print (None: nothing to print).
    fn rec_walk_inner(
        &mut self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        restrict_dev: Option<u64>,
    ) -> std::result::Result<Option<char>, Failure> {
        let matched = self.matcher.match_item(path);
        let recurse_excluded_dir = !matched.included;
        if recurse_excluded_dir {
            self.print_status('x', path);
            if !matched.recurse_dir {
                return Ok(None);
            }
        }
        let st = self
            .stat_at(path, parent, name)
            .map_err(|e| os("stat", e))?;
        if recurse_excluded_dir && !st.is_dir() {
            return Ok(None);
        }
        if self.skip_inodes.contains(&(st.ino, st.dev)) {
            return Ok(None);
        }
        let recurse = restrict_dev.is_none_or(|d| d == st.dev);
        if self.opts.exclude_nodump {
            let flags = fs::flags::get_flags(Path::new(OsStr::from_bytes(path)), &st, None);
            if flags & fs::flags::UF_NODUMP != 0 {
                return Ok(Some('x'));
            }
        }
        if !st.is_dir() {
            return self.process_any(path, parent, name, &st);
        }
        let dir = self.open_at("dir_open", path, parent, name, OpenKind::Dir)?;
        let st2 = fs::stat::fstat(dir.as_raw_fd()).map_err(|e| os("fstat", e))?;
        fs::stat_update_check(&st, &st2).map_err(Failure::Kind)?;
        let st = st2;
        let mut status = None;
        if recurse {
            let tags = self.tag_names(dir.as_raw_fd());
            if !tags.is_empty() {
                if !recurse_excluded_dir {
                    if self.opts.keep_exclude_tags {
                        if !self.opts.dry_run {
                            self.add_plain_item(path, &st, Some(dir.as_raw_fd()))?;
                        }
                        for tag in tags {
                            let mut tag_path = path.to_vec();
                            tag_path.push(b'/');
                            tag_path.extend_from_slice(&tag);
                            self.rec_walk(
                                &tag_path,
                                Some(dir.as_raw_fd()),
                                Some(&tag),
                                restrict_dev,
                            );
                        }
                    }
                    return Ok(Some('x'));
                }
                return Ok(None);
            }
        }
        if !recurse_excluded_dir {
            if self.opts.dry_run {
                status = Some('-');
            } else {
                self.add_plain_item(path, &st, Some(dir.as_raw_fd()))?;
                status = Some('d');
            }
        }
        if recurse {
            let entries = read_dir_inorder(dir.as_raw_fd()).map_err(|e| os("scandir", e))?;
            for entry in entries {
                let mut child = path.to_vec();
                if !child.ends_with(b"/") {
                    child.push(b'/');
                }
                child.extend_from_slice(&entry);
                let child = crate::patterns::normpath(&child);
                self.rec_walk(&child, Some(dir.as_raw_fd()), Some(&entry), restrict_dev);
            }
        }
        Ok(status)
    }

    /// Names of exclusion tags present in a directory (`--exclude-caches`,
    /// `--exclude-if-present`).
    fn tag_names(&self, dir: RawFd) -> Vec<Vec<u8>> {
        let mut tags = Vec::new();
        if self.opts.exclude_caches {
            if let Ok(fd) =
                fs::open_item(Some(dir), Path::new("CACHEDIR.TAG"), OpenKind::Normal, true)
            {
                let mut f = File::from(fd);
                let mut head = [0u8; 43];
                if std::io::Read::read_exact(&mut f, &mut head).is_ok()
                    && head[..] == *CACHEDIR_TAG_SIGNATURE
                {
                    tags.push(b"CACHEDIR.TAG".to_vec());
                }
            }
        }
        for name in &self.opts.exclude_if_present {
            if fs::stat::fstatat(dir, Path::new(OsStr::from_bytes(name)), false).is_ok() {
                tags.push(name.clone());
            }
        }
        tags
    }

    /// Non-directories (borg's `_process_any`).
    fn process_any(
        &mut self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        st: &FileStat,
    ) -> std::result::Result<Option<char>, Failure> {
        if self.opts.dry_run {
            return Ok(Some('-'));
        }
        if st.is_regular() {
            return self.process_file(path, parent, name, st, OpenKind::Normal);
        }
        if st.is_symlink() {
            if self.opts.read_special {
                let target_special = match (parent, name) {
                    (Some(fd), Some(n)) => {
                        fs::stat::fstatat(fd, Path::new(OsStr::from_bytes(n)), true).ok()
                    }
                    _ => std::fs::metadata(OsStr::from_bytes(path))
                        .ok()
                        .map(|m| FileStat::from_metadata(&m)),
                }
                .filter(|t| t.is_special());
                if let Some(target) = target_special {
                    return self.process_file(path, parent, name, &target, OpenKind::SpecialFollow);
                }
            }
            return self.process_symlink(path, parent, name, st);
        }
        if st.is_fifo() || st.is_chr() || st.is_blk() {
            if self.opts.read_special {
                return self.process_file(path, parent, name, st, OpenKind::Special);
            }
            return self.process_special(path, parent, name, st);
        }
        // Sockets and other types are not backed up (borg skips them silently).
        Ok(None)
    }

    fn item_path(path: &[u8]) -> Vec<u8> {
        fs::make_path_safe(path)
    }

    /// Directories: stored before their contents.
    fn add_plain_item(
        &mut self,
        path: &[u8],
        st: &FileStat,
        fd: Option<RawFd>,
    ) -> std::result::Result<(), Failure> {
        let (item, warnings) = fs::stat_item(
            &Self::item_path(path),
            Path::new(OsStr::from_bytes(path)),
            st,
            &self.opts.capture,
            fd,
        )?;
        warnings.iter().for_each(|w| w.emit());
        self.submit_item(item, Content::None, false, None);
        Ok(())
    }

    fn process_symlink(
        &mut self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        st: &FileStat,
    ) -> std::result::Result<Option<char>, Failure> {
        let target = match (parent, name) {
            (Some(fd), Some(n)) => nix::fcntl::readlinkat(Some(fd), OsStr::from_bytes(n)),
            _ => nix::fcntl::readlink(OsStr::from_bytes(path)),
        }
        .map_err(|e| os("readlink", std::io::Error::from_raw_os_error(e as i32)))?;
        let (mut item, warnings) = fs::stat_item(
            &Self::item_path(path),
            Path::new(OsStr::from_bytes(path)),
            st,
            &self.opts.capture,
            None,
        )?;
        warnings.iter().for_each(|w| w.emit());
        item.source = Some(target.as_bytes().to_vec());
        self.submit_item(item, Content::None, false, None);
        Ok(Some('s'))
    }

    /// Fifos and devices (not read, `--read-special` off).
    fn process_special(
        &mut self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        st: &FileStat,
    ) -> std::result::Result<Option<char>, Failure> {
        let status = if st.is_fifo() {
            'f'
        } else if st.is_chr() {
            'c'
        } else {
            'b'
        };
        let item_path = Self::item_path(path);
        let hardlinked = st.nlink > 1;
        if hardlinked {
            if let Some(source) = self.hard_links.get(&(st.ino, st.dev)).cloned() {
                return self.add_slave(item_path, path, st, source);
            }
        }
        let (fd, st) = if st.is_fifo() {
            let fd = self.open_at("open", path, parent, name, OpenKind::Normal)?;
            let st2 = fs::stat::fstat(fd.as_raw_fd()).map_err(|e| os("fstat", e))?;
            fs::stat_update_check(st, &st2).map_err(Failure::Kind)?;
            (Some(fd), st2)
        } else {
            let st2 = self
                .stat_at(path, parent, name)
                .map_err(|e| os("stat", e))?;
            fs::stat_update_check(st, &st2).map_err(Failure::Kind)?;
            (None, st2)
        };
        let (mut item, warnings) = fs::stat_item(
            &item_path,
            Path::new(OsStr::from_bytes(path)),
            &st,
            &self.opts.capture,
            fd.as_ref().map(|f| f.as_raw_fd()),
        )?;
        warnings.iter().for_each(|w| w.emit());
        if st.is_chr() || st.is_blk() {
            item.rdev = Some(st.rdev);
        }
        item.hardlink_master = Some(hardlinked);
        self.submit_item(item, Content::None, false, None);
        if hardlinked {
            self.hard_links.insert((st.ino, st.dev), item_path);
        }
        Ok(Some(status))
    }

    /// A hardlink to an inode stored before: only `source` (the master's path), status `h`.
    fn add_slave(
        &mut self,
        item_path: Vec<u8>,
        path: &[u8],
        st: &FileStat,
        source: Vec<u8>,
    ) -> std::result::Result<Option<char>, Failure> {
        let mut item = Item {
            path: item_path,
            ..Default::default()
        };
        fs::stat_simple_attrs(&mut item, st, &self.opts.capture);
        let warnings = fs::stat_ext_attrs(
            &mut item,
            Path::new(OsStr::from_bytes(path)),
            st,
            &self.opts.capture,
            None,
        )?;
        warnings.iter().for_each(|w| w.emit());
        item.source = Some(source);
        self.submit_item(item, Content::None, false, None);
        Ok(Some('h'))
    }

    fn process_file(
        &mut self,
        path: &[u8],
        parent: Option<RawFd>,
        name: Option<&[u8]>,
        st: &FileStat,
        kind: OpenKind,
    ) -> std::result::Result<Option<char>, Failure> {
        let item_path = Self::item_path(path);
        let hardlinked = st.nlink > 1;
        if hardlinked {
            if let Some(source) = self.hard_links.get(&(st.ino, st.dev)).cloned() {
                return self.add_slave(item_path, path, st, source);
            }
        }
        let fd = self.open_at("open", path, parent, name, kind)?;
        let st2 = fs::stat::fstat(fd.as_raw_fd()).map_err(|e| os("fstat", e))?;
        fs::stat_update_check(st, &st2).map_err(Failure::Kind)?;
        let st = st2;
        let mut item = Item {
            path: item_path.clone(),
            ..Default::default()
        };
        fs::stat_simple_attrs(&mut item, &st, &self.opts.capture);
        let special = st.is_special();
        if special {
            // Read like a regular file: its mode says so (borg patches it the same way).
            item.mode = Some(0o100000 | (st.mode & 0o7777));
        }
        let ctx = self
            .chunks
            .expect("content processing needs the repository");
        let path_hash = (!special).then(|| {
            let mut abs = self.opts.cwd.as_os_str().as_bytes().to_vec();
            if !path.starts_with(b"/") {
                if !abs.ends_with(b"/") {
                    abs.push(b'/');
                }
                abs.extend_from_slice(path);
            } else {
                abs = path.to_vec();
            }
            ctx.writer.key.id_hash(&abs)
        });
        let (known, ids) = match (&path_hash, self.index) {
            (Some(ph), Some(index)) => index.file_known_and_unchanged(ph, &st),
            _ => (false, None),
        };
        let unchanged = ids.filter(|ids| {
            ids.iter()
                .all(|id| self.index.is_some_and(|i| i.chunk(id).is_some()))
        });
        let (status, content, memorize) = match unchanged {
            Some(ids) => {
                self.print_status('U', path);
                ('U', Content::Known(ids), None)
            }
            None => {
                let letter = if known { 'M' } else { 'A' };
                self.print_status(letter, path);
                let mut file = File::from(fd.try_clone().map_err(|e| os("open", e))?);
                item.hardlink_master = Some(hardlinked);
                self.begin_file(&item);
                if let Err(e) = self.stream_chunks(&mut file, ctx) {
                    self.submit_item(Item::default(), Content::Discard, false, None);
                    return Err(e);
                }
                let st3 = fs::stat::fstat(fd.as_raw_fd()).map_err(|e| os("fstat2", e))?;
                let changed =
                    fs::changed_while_backed_up(&st, &st3, self.opts.files_changed, special);
                let memorize = (!special && !changed).then(|| (path_hash.unwrap_or_default(), st));
                (
                    if changed { 'C' } else { letter },
                    Content::Streamed,
                    memorize,
                )
            }
        };
        item.hardlink_master = Some(hardlinked);
        let warnings = fs::stat_ext_attrs(
            &mut item,
            Path::new(OsStr::from_bytes(path)),
            &st,
            &self.opts.capture,
            Some(fd.as_raw_fd()),
        )?;
        warnings.iter().for_each(|w| w.emit());
        self.submit_item(item, content, true, memorize);
        if hardlinked {
            self.hard_links.insert((st.ino, st.dev), item_path);
        }
        // A/M/U were printed before reading, like borg; only C is left to print.
        Ok((status == 'C').then_some('C'))
    }

    /// Read and chunk a file, submitting each chunk to the workers.
    fn stream_chunks(
        &mut self,
        file: &mut File,
        ctx: ChunkContext<'a>,
    ) -> std::result::Result<(), Failure> {
        let pipeline = self
            .pipeline
            .expect("content processing needs the pipeline");
        let sparse = self.opts.sparse;
        let mut chunker = std::mem::replace(&mut self.chunker, Chunker::new(&self.opts.chunker, 0));
        let result = match chunker.chunkify_file(file, sparse) {
            Ok(chunks) => self.submit_chunks(chunks, pipeline, ctx),
            Err(e) => Err(os("read", e)),
        };
        self.chunker = chunker;
        result
    }

    /// Chunk a stream (stdin, a command's output).
    fn stream_reader(
        &mut self,
        reader: &mut Box<dyn std::io::Read + Send>,
        ctx: ChunkContext<'a>,
    ) -> std::result::Result<(), Failure> {
        let pipeline = self
            .pipeline
            .expect("content processing needs the pipeline");
        let mut chunker = std::mem::replace(&mut self.chunker, Chunker::new(&self.opts.chunker, 0));
        let result = self.submit_chunks(chunker.chunkify(reader), pipeline, ctx);
        self.chunker = chunker;
        result
    }

    fn submit_chunks<R: std::io::Read>(
        &mut self,
        mut chunks: crate::chunker::Chunks<'_, R>,
        pipeline: &Ordered<'a, Piece>,
        ctx: ChunkContext<'a>,
    ) -> std::result::Result<(), Failure> {
        self.send_items(pipeline);
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_CHUNKS);
        let mut batch_bytes = 0u64;
        let submit = |batch: Vec<Vec<u8>>, bytes: u64| {
            pipeline.submit(bytes, move || {
                let done = ctx.process(&batch);
                batch.into_iter().for_each(|b| ctx.pool.give(b));
                Piece::Chunks(done)
            })
        };
        loop {
            let chunk = match chunks.next_chunk() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(os("read", e)),
            };
            let data = match chunk {
                Chunk::Data(data) => data,
                Chunk::Zeros(len) | Chunk::Hole(len) => {
                    let id = *self
                        .zero_ids
                        .entry(len)
                        .or_insert_with(|| ctx.writer.key.id_hash(&vec![0u8; len]));
                    match ctx.index.chunk(&id) {
                        // Known zero chunks are not hashed again; the batch goes first (order).
                        Some(e) => {
                            if !batch.is_empty()
                                && !submit(
                                    std::mem::take(&mut batch),
                                    std::mem::take(&mut batch_bytes),
                                )
                            {
                                self.stopped = true;
                                return Ok(());
                            }
                            let zero = ChunkDone {
                                id,
                                size: len as u32,
                                csize: e.csize,
                                stored: None,
                            };
                            if !pipeline.submit_ready(Piece::Chunks(Ok(vec![zero]))) {
                                self.stopped = true;
                                return Ok(());
                            }
                            continue;
                        }
                        None => vec![0u8; len],
                    }
                }
            };
            // A batch stays under BATCH_BYTES unless one chunk alone is larger.
            let overflows = batch_bytes + data.len() as u64 > BATCH_BYTES;
            if overflows
                && !batch.is_empty()
                && !submit(std::mem::take(&mut batch), std::mem::take(&mut batch_bytes))
            {
                self.stopped = true;
                return Ok(());
            }
            batch_bytes += data.len() as u64;
            batch.push(data);
            if batch.len() >= BATCH_CHUNKS
                && !submit(std::mem::take(&mut batch), std::mem::take(&mut batch_bytes))
            {
                self.stopped = true;
                return Ok(());
            }
        }
        if !batch.is_empty() && !submit(batch, batch_bytes) {
            self.stopped = true;
        }
        Ok(())
    }

    /// Tell the committer which file the next chunks belong to (checkpoints store part items
    /// of it).
    fn begin_file(&mut self, item: &Item) {
        if self.opts.checkpoint_interval.is_some() {
            self.submit_item(item.clone(), Content::Begins, false, None);
        }
    }

    fn submit_item(
        &mut self,
        item: Item,
        content: Content,
        counts_as_file: bool,
        memorize: Option<(ObjectId, FileStat)>,
    ) {
        let Some(pipeline) = self.pipeline else {
            return;
        };
        let done = ItemDone {
            item,
            content,
            counts_as_file,
            memorize,
        };
        self.ready_items.push(done);
        if self.ready_items.len() >= ITEMS_PER_BATCH {
            self.send_items(pipeline);
        }
    }

    /// Send the finished items (before any chunk job, so the order is kept).
    fn send_items(&mut self, pipeline: &Ordered<'a, Piece>) {
        if !self.ready_items.is_empty()
            && !pipeline.submit_ready(Piece::Items(std::mem::take(&mut self.ready_items)))
        {
            self.stopped = true;
        }
    }
}

/// borg's message for a classed per-item warning without an OS error.
fn fs_refusal_text(kind: WarningKind, shown: &str) -> String {
    match kind {
        WarningKind::BackupRaceCondition => {
            format!("{shown}: file type or inode changed while we backed it up (race condition, skipped file)")
        }
        _ => format!("{shown}: backup error"),
    }
}

/// Entry names of a directory, sorted by inode number (borg's `scandir_inorder`).
fn read_dir_inorder(dir: RawFd) -> std::io::Result<Vec<Vec<u8>>> {
    let dup = nix::unistd::dup(dir).map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    let mut d =
        nix::dir::Dir::from_fd(dup).map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        entries.push((e.ino(), name.to_vec()));
    }
    entries.sort_by_key(|(ino, _)| *ino); // stable: equal inodes (hardlinks) keep readdir order
    Ok(entries.into_iter().map(|(_, n)| n).collect())
}

/// An error for an archive name that exists already.
pub fn archive_exists(name: &str) -> Error {
    Error::new(crate::errors::ErrorKind::ArchiveAlreadyExists, [name])
}
