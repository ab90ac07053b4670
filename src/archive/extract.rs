//! Extracting an archive: a planner thread walks the item stream and queues the chunks of every
//! file to extract; all cores fetch, authenticate, decrypt and decompress them ahead; the calling
//! thread creates the files in archive order and restores their metadata (borg's `do_extract` /
//! `extract_item`).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::archive::item::{ChunkRef, Item};
use crate::archive::prefetch::{fetch_stopped, recycle, Prefetch, PrefetchFeeder, DEFAULT_BUDGET};
use crate::archive::{display_bytes, Archive};
use crate::crypto::Key;
use crate::errors::{Error, Result, WarningKind};
use crate::fs::{self, BackupOsError, DeferredDirs, ExtractGuard, FileWriter, RestoreOptions};
use crate::output::{self, Level, ProgressPercent};
use crate::repository::{ObjectId, Repository};

/// What `extract` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Destination root (the current directory for `borg extract`).
    pub dest: PathBuf,
    pub dry_run: bool,
    pub stdout: bool,
    pub sparse: bool,
    pub strip_components: usize,
    pub restore: RestoreOptions,
    /// `--list`: log each extracted path on `borg.output.list`.
    pub list: bool,
    pub progress: bool,
    pub consider_part_files: bool,
}

/// Selects items by their archived path (patterns and PATH arguments). It runs in the
/// planner thread and is handed back when extraction ends (for unmatched-pattern warnings).
pub trait ItemSelector: FnMut(&[u8]) -> bool + Send + 'static {}
impl<T: FnMut(&[u8]) -> bool + Send + 'static> ItemSelector for T {}

/// One unit of work for the writer, in archive order.
enum Op {
    /// A regular file; its chunks were queued for fetching in this order.
    File {
        item: Item,
        path: Vec<u8>,
        chunks: Vec<ChunkRef>,
    },
    /// A hardlink to an already extracted file.
    Link {
        item: Item,
        path: Vec<u8>,
        target: PathBuf,
    },
    /// Anything else (directories, symlinks, fifos, devices).
    Other { item: Item, path: Vec<u8> },
    /// The item stream failed.
    Failed(Error),
}

/// A master's chunks (when it is not extracted itself) and where its content went.
type MasterState = (Option<Vec<ChunkRef>>, Option<Vec<u8>>);

/// Hardlink bookkeeping of a partial extract (borg's `hardlink_masters`): for a master path,
/// its chunks (when the master itself is not extracted) and where its content went.
#[derive(Default)]
struct HardlinkMasters {
    active: bool,
    map: HashMap<Vec<u8>, MasterState>,
}

/// Everything the planner needs, moved into its thread.
struct Planner {
    items: crate::archive::ItemIter,
    ops: Sender<Op>,
    chunk_ids: PrefetchFeeder,
    opts: ExtractOptions,
}

/// Extract the selected items of `archive` and give the selector back. `partial` is borg's
/// "partial extract" (patterns, PATHs or --strip-components given). Per-item problems are
/// logged as warnings (and counted for the exit code) as borg does.
pub fn extract_archive<S: ItemSelector>(
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    archive: &Archive,
    mut select: S,
    partial: bool,
    opts: &ExtractOptions,
) -> Result<S> {
    let mut progress = if opts.progress {
        let mut pi = ProgressPercent::new(0, 0.1, "%5.1f%% Extracting: %s", "extract");
        pi.output("Calculating total archive size for the progress indicator (might take long for large archives)");
        let total = total_size(
            repo.clone(),
            key.clone(),
            archive,
            &mut select,
            partial,
            opts,
        )?;
        pi.set_total(total);
        Some(pi)
    } else {
        None
    };
    let (ops_tx, ops_rx) = bounded::<Op>(4096);
    let (chunks, ids_tx) = Prefetch::with_feeder(repo.clone(), key.clone(), DEFAULT_BUDGET);
    let planner = Planner {
        items: archive.items(repo.clone(), key.clone()),
        ops: ops_tx,
        chunk_ids: ids_tx,
        opts: opts.clone(),
    };
    let handle = thread::spawn(move || planner.run(partial, select));
    let mut writer = Writer::new(opts, chunks);
    let result = writer.serve(&ops_rx, progress.as_mut());
    drop(ops_rx);
    let select = handle
        .join()
        .map_err(|_| Error::exception("extract planner panicked"))?;
    result?;
    if let Some(pi) = progress.as_mut() {
        pi.finish();
    }
    writer.finish_dirs();
    Ok(select)
}

/// Σ of the bytes that will be extracted (borg computes it in a first pass for `--progress`).
fn total_size<S: ItemSelector>(
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    archive: &Archive,
    select: &mut S,
    partial: bool,
    opts: &ExtractOptions,
) -> Result<u64> {
    let mut masters: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut total = 0;
    for item in archive.items(repo, key) {
        let item = item?;
        if item.part.is_some() && !opts.consider_part_files {
            continue;
        }
        let selected =
            select(&item.path) && fs::strip_components(&item.path, opts.strip_components).is_some();
        if item.is_hardlink_slave() {
            if selected {
                total += item
                    .source
                    .as_ref()
                    .and_then(|s| masters.remove(s))
                    .unwrap_or(0);
            }
            continue;
        }
        if selected {
            total += item.content_size();
        } else if partial && item.chunks.is_some() {
            masters.insert(item.path.clone(), item.content_size());
        }
    }
    Ok(total)
}

impl Planner {
    fn run<S: ItemSelector>(mut self, partial: bool, mut select: S) -> S {
        let mut masters = HardlinkMasters {
            active: partial,
            ..Default::default()
        };
        while let Some(item) = self.items.next() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    let _ = self.ops.send(Op::Failed(e));
                    return select;
                }
            };
            if item.part.is_some() && !self.opts.consider_part_files {
                continue;
            }
            let stripped = fs::strip_components(&item.path, self.opts.strip_components);
            let matched = select(&item.path) && stripped.is_some();
            masters.peek(&item, matched);
            if !matched {
                continue;
            }
            let op = self.plan(item, stripped.unwrap_or_default(), &mut masters);
            // The op goes first: its chunks may exceed the budget, and only the writer, once it
            // has the op, consumes them.
            let chunks: Vec<(ObjectId, u64)> = match &op {
                Op::File { chunks, .. } => chunks.iter().map(|c| (c.id, c.size as u64)).collect(),
                _ => Vec::new(),
            };
            if self.ops.send(op).is_err() {
                break;
            }
            if !chunks
                .iter()
                .all(|(id, size)| self.chunk_ids.push(*id, *size))
            {
                break;
            }
        }
        select
    }

    fn plan(&self, item: Item, path: Vec<u8>, masters: &mut HardlinkMasters) -> Op {
        let linkable = item.is_regular() || item.is_fifo() || item.is_chr() || item.is_blk();
        if !linkable {
            return Op::Other { item, path };
        }
        let writing = !self.opts.dry_run && !self.opts.stdout;
        let mut chunks = item.chunks.clone();
        if let Some(source) = item.source.clone().filter(|_| !item.is_symlink()) {
            // A slave: link to where the master went, or extract the master's content here.
            let (master_chunks, link_target) = masters.lookup(&source, self.opts.strip_components);
            match link_target {
                Some(target) if writing => {
                    let target = PathBuf::from(std::ffi::OsStr::from_bytes(&target));
                    return Op::Link { item, path, target };
                }
                _ => {
                    if master_chunks.is_some() {
                        chunks = master_chunks;
                    }
                }
            }
            if writing {
                masters.extracted_at(&source, &path);
            }
        } else if writing && item.hardlink_master.unwrap_or(true) {
            masters.extracted_at(&item.path, &path);
        }
        if !item.is_regular() {
            return Op::Other { item, path };
        }
        Op::File {
            item,
            path,
            chunks: chunks.unwrap_or_default(),
        }
    }
}

impl HardlinkMasters {
    /// borg's `peek_and_store_hardlink_masters`: remember the chunks of masters that are not
    /// extracted themselves, so a selected slave can get the content.
    fn peek(&mut self, item: &Item, matched: bool) {
        let linkable = item.is_regular() || item.is_fifo() || item.is_chr() || item.is_blk();
        if self.active
            && !matched
            && linkable
            && item.hardlink_master.unwrap_or(true)
            && item.source.is_none()
        {
            self.map
                .insert(item.path.clone(), (item.chunks.clone(), None));
        }
    }

    /// (chunks of an unextracted master, path where the content was extracted already).
    fn lookup(&self, source: &[u8], strip: usize) -> (Option<Vec<ChunkRef>>, Option<Vec<u8>>) {
        if !self.active {
            // Full extract: the master was extracted at its own (stripped) path.
            let stripped = fs::strip_components(source, strip);
            return (None, stripped);
        }
        match self.map.get(source) {
            Some((chunks, target)) => (chunks.clone(), target.clone()),
            None => (None, fs::strip_components(source, strip)),
        }
    }

    fn extracted_at(&mut self, master: &[u8], path: &[u8]) {
        if self.active {
            self.map
                .insert(master.to_vec(), (None, Some(path.to_vec())));
        }
    }
}

/// The writing side: creates items in order and restores metadata.
struct Writer<'a> {
    opts: &'a ExtractOptions,
    chunks: Prefetch,
    guard: ExtractGuard,
    dirs: DeferredDirs<(Item, PathBuf)>,
    stdout: Option<std::io::StdoutLock<'static>>,
}

impl<'a> Writer<'a> {
    fn new(opts: &'a ExtractOptions, chunks: Prefetch) -> Writer<'a> {
        Writer {
            opts,
            chunks,
            guard: ExtractGuard::new(opts.dest.clone()),
            dirs: DeferredDirs::new(),
            stdout: if opts.stdout {
                Some(std::io::stdout().lock())
            } else {
                None
            },
        }
    }

    fn serve(
        &mut self,
        ops: &Receiver<Op>,
        mut progress: Option<&mut ProgressPercent>,
    ) -> Result<()> {
        for op in ops.iter() {
            self.handle(op, progress.as_deref_mut())?;
        }
        Ok(())
    }

    fn handle(&mut self, op: Op, progress: Option<&mut ProgressPercent>) -> Result<()> {
        let (item_path, shown) = match &op {
            Op::File { path, .. } | Op::Link { path, .. } | Op::Other { path, .. } => {
                (path.clone(), display_bytes(path))
            }
            Op::Failed(e) => return Err(e.clone()),
        };
        let writing = !self.opts.dry_run && !self.opts.stdout;
        if writing {
            for (dir_item, dir_path) in self.dirs.finished_before(&item_path) {
                self.restore(&dir_item, &dir_path, None);
            }
        }
        if self.opts.list {
            output::log(Level::Info, "borg.output.list", &shown, None);
        }
        let res = match op {
            Op::File { item, path, chunks } => self.file(item, &path, &chunks, progress),
            Op::Link { item, path, target } => self.link(&item, &path, &target),
            Op::Other { item, path } => self.other(item, &path),
            Op::Failed(_) => unreachable!(),
        };
        match res {
            Ok(()) => Ok(()),
            Err(ItemError::Warn(kind, msg)) => {
                output::warn_kind(kind, &format!("{shown}: {msg}"));
                Ok(())
            }
            Err(ItemError::Refused(refusal)) => {
                output::warn_kind(refusal.kind, &refusal.message(&shown));
                Ok(())
            }
            Err(ItemError::Fatal(e)) => Err(e),
        }
    }

    fn file(
        &mut self,
        item: Item,
        path: &[u8],
        chunks: &[ChunkRef],
        mut progress: Option<&mut ProgressPercent>,
    ) -> std::result::Result<(), ItemError> {
        let shown = display_bytes(path);
        let writing = !self.opts.dry_run && !self.opts.stdout;
        let mut out = if writing {
            let dest = self.guard.check_item(path).map_err(ItemError::Refused)?;
            fs::remove_existing(&dest);
            self.guard
                .make_parent(&dest)
                .map_err(|e| ItemError::os(BackupOsError::new("makedirs", e, None)))?;
            Some(FileWriter::create(&dest, self.opts.sparse).map_err(ItemError::os)?)
        } else {
            None
        };
        let mut written: u64 = 0;
        let mut failure: Option<ItemError> = None;
        for _ in chunks {
            let data = match self.chunks.next() {
                Some(Ok((data, _))) => data,
                Some(Err(e)) => return Err(ItemError::Fatal(e)),
                None => return Err(ItemError::Fatal(fetch_stopped())),
            };
            written += data.len() as u64;
            if let Some(pi) = progress.as_deref_mut() {
                pi.show_increase_with(data.len() as u64, || vec![shown.clone()]);
            }
            // After a failure the file's remaining chunks are still consumed, so the stream
            // stays in step with the ops.
            if failure.is_none() {
                if let Some(w) = out.as_mut() {
                    if let Err(e) = w.write_chunk(&data) {
                        failure = Some(ItemError::os(e));
                    }
                } else if let Some(so) = self.stdout.as_mut() {
                    if let Err(e) = so.write_all(&data) {
                        return Err(ItemError::Fatal(Error::exception(e)));
                    }
                }
            }
            recycle(data);
        }
        if let Some(f) = failure {
            return Err(f);
        }
        if let Some(mut w) = out {
            w.finish().map_err(ItemError::os)?;
            let dest = w.path().to_path_buf();
            self.restore(&item, &dest, Some(w.fd()));
        }
        if let Some(so) = self.stdout.as_mut() {
            let _ = so.flush();
        }
        if let Some(size) = item.size {
            if size != written {
                return Err(ItemError::Warn(
                    WarningKind::BackupError,
                    format!("Size inconsistency detected: size {size}, chunks size {written}"),
                ));
            }
        }
        if !item.healthy() {
            return Err(ItemError::Warn(
                WarningKind::BackupError,
                "File has damaged (all-zero) chunks. Try running borg check --repair.".into(),
            ));
        }
        Ok(())
    }

    fn link(
        &mut self,
        item: &Item,
        path: &[u8],
        target: &std::path::Path,
    ) -> std::result::Result<(), ItemError> {
        let source = item.source.as_deref().unwrap_or_default();
        self.guard
            .check_hardlink_source(source, self.opts.strip_components)
            .map_err(ItemError::Refused)?;
        let dest = self.guard.check_item(path).map_err(ItemError::Refused)?;
        fs::remove_existing(&dest);
        self.guard
            .make_parent(&dest)
            .map_err(|e| ItemError::os(BackupOsError::new("makedirs", e, None)))?;
        let target = self.opts.dest.join(target);
        fs::hardlink(&target, &dest).map_err(ItemError::os)
    }

    fn other(&mut self, item: Item, path: &[u8]) -> std::result::Result<(), ItemError> {
        if self.opts.dry_run || self.opts.stdout {
            return Ok(());
        }
        let dest = self.guard.check_item(path).map_err(ItemError::Refused)?;
        fs::remove_existing(&dest);
        self.guard
            .make_parent(&dest)
            .map_err(|e| ItemError::os(BackupOsError::new("makedirs", e, None)))?;
        if item.is_dir() {
            if std::fs::symlink_metadata(&dest).is_err() {
                fs::create_dir(&dest).map_err(ItemError::os)?;
            }
            self.dirs.push(path.to_vec(), (item, dest));
            return Ok(());
        }
        if item.is_symlink() {
            fs::create_symlink(item.source.as_deref().unwrap_or_default(), &dest)
                .map_err(ItemError::os)?;
        } else if item.is_fifo() {
            fs::create_fifo(&dest).map_err(ItemError::os)?;
        } else if item.is_chr() || item.is_blk() {
            fs::create_device(&dest, item.mode.unwrap_or(0), item.rdev.unwrap_or(0))
                .map_err(ItemError::os)?;
        } else {
            return Err(ItemError::Fatal(Error::exception(format!(
                "Unknown archive item type {:o}",
                item.mode.unwrap_or(0)
            ))));
        }
        self.restore(&item, &dest, None);
        Ok(())
    }

    /// Restore metadata; failures are per-item warnings.
    fn restore(&mut self, item: &Item, dest: &std::path::Path, fd: Option<std::os::fd::RawFd>) {
        match fs::restore_attrs(dest, item, &self.opts.restore, fd) {
            Ok(warnings) => warnings.iter().for_each(|w| w.emit()),
            Err(e) => {
                let shown = display_bytes(&item.path);
                output::warn_kind(e.kind(), &format!("{shown}: {}", e.message()));
            }
        }
    }

    /// Directory metadata last, innermost first (borg's "Setting directory permissions").
    fn finish_dirs(&mut self) {
        if self.opts.dry_run || self.opts.stdout {
            return;
        }
        let dirs = self.dirs.drain();
        let mut pi = ProgressPercent::new(
            dirs.len() as u64,
            1.0,
            "Setting directory permissions %3.0f%%",
            "extract.permissions",
        );
        for (item, dest) in dirs {
            pi.show_increase(1, None);
            self.restore(&item, &dest, None);
        }
        pi.finish();
    }
}

/// How one item failed: a warning for that item, or a reason to stop.
enum ItemError {
    /// A warning of this kind with a message to put after the item path.
    Warn(WarningKind, String),
    /// A safety refusal (borg 1.4.5's BackupError subclasses).
    Refused(fs::BackupRefusal),
    Fatal(Error),
}

impl ItemError {
    fn os(e: BackupOsError) -> ItemError {
        ItemError::Warn(e.kind(), e.message())
    }
}
