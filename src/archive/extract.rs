//! Extracting an archive (borg's `do_extract` / `extract_item`), as a pipeline:
//!
//! * a *creator* thread walks the item stream in archive order, selects items, and creates them
//!   on disk (directories, files, links, special files); for each regular file it queues the
//!   file's chunks, each with its file and offset (known from the chunk sizes in the item);
//! * the fetch workers (all cores) read, authenticate, decrypt and decompress the chunks and
//!   write each one straight into its file at its offset;
//! * the calling thread, the *finisher*, takes the completions in order and, once a file is
//!   complete, sets its length and restores its metadata; directories get theirs after their
//!   contents, as borg does.
//!
//! `--dry-run` and `--stdout` use the same pipeline with the plaintext handed to the finisher.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::archive::item::{ChunkRef, Item};
use crate::archive::prefetch::{
    fetch_stopped, recycle, Delivery, Prefetch, PrefetchFeeder, WriteTarget, DEFAULT_BUDGET,
};
use crate::archive::{display_bytes, Archive, ItemIter};
use crate::crypto::Key;
use crate::errors::{Error, Result, WarningKind};
use crate::fs::{
    self, BackupOsError, BackupRefusal, DeferredDirs, ExtractGuard, FileWriter, RestoreOptions,
};
use crate::output::{self, Level, ProgressPercent};
use crate::repository::Repository;

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

impl ExtractOptions {
    /// Whether anything is written to the file system.
    fn writing(&self) -> bool {
        !self.dry_run && !self.stdout
    }
}

/// Selects items by their archived path (patterns and PATH arguments). It runs in the creator
/// thread and is handed back when extraction ends (for unmatched-pattern warnings).
pub trait ItemSelector: FnMut(&[u8]) -> bool + Send + 'static {}
impl<T: FnMut(&[u8]) -> bool + Send + 'static> ItemSelector for T {}

/// Files created but not finished that may be open at once (bounds open descriptors).
const STEPS_AHEAD: usize = 256;

/// What the creator hands to the finisher, in archive order.
enum Step {
    /// A created regular file whose `chunks` chunks the workers write into it.
    File {
        item: Item,
        dest: PathBuf,
        file: Arc<File>,
        chunks: Vec<ChunkRef>,
    },
    /// Content to consume in order without a file (`--dry-run`, `--stdout`).
    Data { item: Item, chunks: usize },
    /// A created directory; its metadata waits until its contents are done.
    Dir { item: Item, dest: PathBuf },
    /// An item already fully handled by the creator (or skipped with a warning).
    Done,
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

impl HardlinkMasters {
    /// borg's `peek_and_store_hardlink_masters`: remember the chunks of masters that are not
    /// extracted themselves, so a selected slave can get the content.
    fn peek(&mut self, item: &Item, matched: bool) {
        if self.active
            && !matched
            && linkable(item)
            && item.hardlink_master.unwrap_or(true)
            && item.source.is_none()
        {
            self.map
                .insert(item.path.clone(), (item.chunks.clone(), None));
        }
    }

    /// (chunks of an unextracted master, path where the master's content was extracted).
    fn lookup(&self, source: &[u8], strip: usize) -> MasterState {
        match self.map.get(source).filter(|_| self.active) {
            Some(state) => state.clone(),
            // Full extract: the master was extracted at its own (stripped) path.
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

fn linkable(item: &Item) -> bool {
    item.is_regular() || item.is_fifo() || item.is_chr() || item.is_blk()
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
        pi.set_total(total_size(
            repo.clone(),
            key.clone(),
            archive,
            &mut select,
            partial,
            opts,
        )?);
        Some(pi)
    } else {
        None
    };
    let (steps_tx, steps_rx) = bounded::<Step>(STEPS_AHEAD);
    let (chunks, feeder) = Prefetch::with_feeder(repo.clone(), key.clone(), DEFAULT_BUDGET);
    let creator = Creator {
        items: archive.items(repo, key),
        steps: steps_tx,
        feeder,
        opts: opts.clone(),
        guard: ExtractGuard::new(opts.dest.clone()),
        masters: HardlinkMasters {
            active: partial,
            ..Default::default()
        },
    };
    let handle = thread::spawn(move || creator.run(select));
    let mut finisher = Finisher {
        opts,
        chunks,
        dirs: DeferredDirs::new(),
        stdout: None,
    };
    if opts.stdout {
        finisher.stdout = Some(std::io::stdout().lock());
    }
    let result = finisher.serve(&steps_rx, progress.as_mut());
    drop(steps_rx);
    drop(finisher.chunks);
    let select = handle
        .join()
        .map_err(|_| Error::exception("extract creator thread panicked"))?;
    result?;
    if let Some(pi) = progress.as_mut() {
        pi.finish();
    }
    finish_dirs(opts, &mut finisher.dirs);
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

/// The creating side, in its own thread.
struct Creator {
    items: ItemIter,
    steps: Sender<Step>,
    feeder: PrefetchFeeder,
    opts: ExtractOptions,
    guard: ExtractGuard,
    masters: HardlinkMasters,
}

/// How creating one item failed: a warning for that item.
enum CreateError {
    Os(BackupOsError),
    Refused(BackupRefusal),
}

impl From<BackupOsError> for CreateError {
    fn from(e: BackupOsError) -> Self {
        CreateError::Os(e)
    }
}

impl From<BackupRefusal> for CreateError {
    fn from(r: BackupRefusal) -> Self {
        CreateError::Refused(r)
    }
}

impl Creator {
    fn run<S: ItemSelector>(mut self, mut select: S) -> S {
        while let Some(item) = self.items.next() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    let _ = self.steps.send(Step::Failed(e));
                    break;
                }
            };
            if item.part.is_some() && !self.opts.consider_part_files {
                continue;
            }
            let stripped = fs::strip_components(&item.path, self.opts.strip_components);
            let matched = select(&item.path) && stripped.is_some();
            self.masters.peek(&item, matched);
            let Some(path) = stripped.filter(|_| matched) else {
                continue;
            };
            if self.opts.list {
                output::log(Level::Info, "borg.output.list", &display_bytes(&path), None);
            }
            if !self.handle(item, path) {
                break;
            }
        }
        select
    }

    /// Create one item and tell the finisher; false when the finisher is gone.
    fn handle(&mut self, mut item: Item, path: Vec<u8>) -> bool {
        let shown = display_bytes(&path);
        // A hardlink slave: link to where the master went, or extract the master's content here.
        if linkable(&item) {
            if let Some(source) = item.source.clone() {
                let (chunks, link_target) =
                    self.masters.lookup(&source, self.opts.strip_components);
                if self.opts.writing() {
                    if let Some(target) = link_target {
                        let step = match self.link(&item, &path, &target) {
                            Ok(()) => Step::Done,
                            Err(e) => warn_create(&shown, e),
                        };
                        return self.steps.send(step).is_ok();
                    }
                    self.masters.extracted_at(&source, &path);
                }
                if chunks.is_some() {
                    item.chunks = chunks;
                }
            } else if self.opts.writing() && item.hardlink_master.unwrap_or(true) {
                self.masters.extracted_at(&item.path, &path);
            }
        }
        if !self.opts.writing() {
            return self.queue_data(item);
        }
        let step = match self.create(item, &path) {
            Ok(step) => step,
            Err(e) => warn_create(&shown, e),
        };
        let file_chunks = match &step {
            Step::File { file, chunks, .. } => Some((file.clone(), chunks.clone())),
            _ => None,
        };
        // The step goes first: a file's chunks may exceed the budget, and only the finisher,
        // once it has the step, consumes their completions.
        if self.steps.send(step).is_err() {
            return false;
        }
        match file_chunks {
            Some((file, chunks)) => self.queue_writes(file, &chunks),
            None => true,
        }
    }

    fn queue_data(&mut self, item: Item) -> bool {
        let chunks: Vec<ChunkRef> = if item.is_regular() {
            item.chunks.clone().unwrap_or_default()
        } else {
            Vec::new()
        };
        if self
            .steps
            .send(Step::Data {
                item,
                chunks: chunks.len(),
            })
            .is_err()
        {
            return false;
        }
        chunks.iter().all(|c| self.feeder.push(c.id, c.size as u64))
    }

    fn queue_writes(&mut self, file: Arc<File>, chunks: &[ChunkRef]) -> bool {
        let mut offset = 0u64;
        for c in chunks {
            let target = WriteTarget {
                file: file.clone(),
                offset,
                expected_len: c.size as u64,
                sparse: self.opts.sparse,
            };
            if !self.feeder.push_write(c.id, target) {
                return false;
            }
            offset += c.size as u64;
        }
        true
    }

    /// Make room for an item at its destination: safety checks, old entry removed, parents made.
    fn prepare(&mut self, path: &[u8]) -> std::result::Result<PathBuf, CreateError> {
        let dest = self.guard.check_item(path)?;
        fs::remove_existing(&dest);
        self.guard
            .make_parent(&dest)
            .map_err(|e| BackupOsError::new("makedirs", e, None))?;
        Ok(dest)
    }

    fn create(&mut self, item: Item, path: &[u8]) -> std::result::Result<Step, CreateError> {
        let dest = self.prepare(path)?;
        if item.is_regular() {
            let file = Arc::new(FileWriter::create(&dest, self.opts.sparse)?.into_file());
            let chunks = item.chunks.clone().unwrap_or_default();
            return Ok(Step::File {
                item,
                dest,
                file,
                chunks,
            });
        }
        if item.is_dir() {
            if std::fs::symlink_metadata(&dest).is_err() {
                fs::create_dir(&dest)?;
            }
            return Ok(Step::Dir { item, dest });
        }
        if item.is_symlink() {
            fs::create_symlink(item.source.as_deref().unwrap_or_default(), &dest)?;
        } else if item.is_fifo() {
            fs::create_fifo(&dest)?;
        } else if item.is_chr() || item.is_blk() {
            fs::create_device(&dest, item.mode.unwrap_or(0), item.rdev.unwrap_or(0))?;
        } else {
            output::warning(&format!(
                "{}: Unknown archive item type {:o}",
                display_bytes(path),
                item.mode.unwrap_or(0)
            ));
            return Ok(Step::Done);
        }
        restore(&self.opts.restore, &item, &dest, None);
        Ok(Step::Done)
    }

    fn link(
        &mut self,
        item: &Item,
        path: &[u8],
        target: &[u8],
    ) -> std::result::Result<(), CreateError> {
        let source = item.source.as_deref().unwrap_or_default();
        self.guard
            .check_hardlink_source(source, self.opts.strip_components)?;
        let dest = self.prepare(path)?;
        let target = self.opts.dest.join(std::ffi::OsStr::from_bytes(target));
        Ok(fs::hardlink(&target, &dest)?)
    }
}

/// Log a creation failure as the per-item warning borg gives; the item is then done.
fn warn_create(shown: &str, e: CreateError) -> Step {
    match e {
        CreateError::Os(e) => output::warn_kind(e.kind(), &format!("{shown}: {}", e.message())),
        CreateError::Refused(r) => output::warn_kind(r.kind, &r.message(shown)),
    }
    Step::Done
}

/// Restore an item's metadata; failures are per-item warnings.
fn restore(opts: &RestoreOptions, item: &Item, dest: &Path, fd: Option<std::os::fd::RawFd>) {
    match fs::restore_attrs(dest, item, opts, fd) {
        Ok(warnings) => warnings.iter().for_each(|w| w.emit()),
        Err(e) => {
            let shown = display_bytes(&item.path);
            output::warn_kind(e.kind(), &format!("{shown}: {}", e.message()));
        }
    }
}

/// The finishing side: completions in order, metadata once content is complete.
struct Finisher<'a> {
    opts: &'a ExtractOptions,
    chunks: Prefetch,
    dirs: DeferredDirs<(Item, PathBuf)>,
    stdout: Option<std::io::StdoutLock<'static>>,
}

impl Finisher<'_> {
    fn serve(
        &mut self,
        steps: &Receiver<Step>,
        mut progress: Option<&mut ProgressPercent>,
    ) -> Result<()> {
        for step in steps.iter() {
            if let Step::Failed(e) = step {
                return Err(e);
            }
            self.step(step, progress.as_deref_mut())?;
        }
        Ok(())
    }

    fn step(&mut self, step: Step, progress: Option<&mut ProgressPercent>) -> Result<()> {
        match step {
            Step::File {
                item,
                dest,
                file,
                chunks,
            } => {
                self.close_dirs_before(&item);
                self.file(item, &dest, &file, &chunks, progress)
            }
            Step::Data { item, chunks } => self.data(item, chunks, progress),
            Step::Dir { item, dest } => {
                self.close_dirs_before(&item);
                let path = fs::strip_components(&item.path, self.opts.strip_components)
                    .unwrap_or_default();
                self.dirs.push(path, (item, dest));
                Ok(())
            }
            Step::Done | Step::Failed(_) => Ok(()),
        }
    }

    /// Restore directories that are complete before `item` (borg's prefix rule).
    fn close_dirs_before(&mut self, item: &Item) {
        let path = fs::strip_components(&item.path, self.opts.strip_components).unwrap_or_default();
        for (dir_item, dir_dest) in self.dirs.finished_before(&path) {
            restore(&self.opts.restore, &dir_item, &dir_dest, None);
        }
    }

    /// The next completion in order.
    fn next(&mut self) -> Result<(Delivery, usize)> {
        self.chunks
            .next_delivery()
            .unwrap_or_else(|| Err(fetch_stopped()))
    }

    fn file(
        &mut self,
        item: Item,
        dest: &Path,
        file: &File,
        chunks: &[ChunkRef],
        mut progress: Option<&mut ProgressPercent>,
    ) -> Result<()> {
        let shown = display_bytes(&item.path);
        let mut written = 0u64;
        let mut offset = 0u64;
        let mut failure: Option<BackupOsError> = None;
        for c in chunks {
            let (delivery, _) = self.next()?;
            let len = match delivery {
                Delivery::Written { len, error } => {
                    if let (Some(e), None) = (error, &failure) {
                        failure = Some(BackupOsError::new("write", e, None));
                    }
                    len
                }
                // A chunk whose size is not the recorded one: write it where it belongs.
                Delivery::Data(data) => {
                    use std::os::unix::fs::FileExt;
                    if let (Err(e), None) = (file.write_all_at(&data, offset), &failure) {
                        failure = Some(BackupOsError::new("write", e, None));
                    }
                    let len = data.len() as u64;
                    recycle(data);
                    len
                }
            };
            written += len;
            offset += c.size as u64;
            if let Some(pi) = progress.as_deref_mut() {
                pi.show_increase_with(len, || vec![shown.clone()]);
            }
        }
        if let Some(e) = failure {
            output::warn_kind(e.kind(), &format!("{shown}: {}", e.message()));
            return Ok(());
        }
        if let Err(e) = file.set_len(written) {
            let e = BackupOsError::new("truncate_and_attrs", e, None);
            output::warn_kind(e.kind(), &format!("{shown}: {}", e.message()));
            return Ok(());
        }
        restore(&self.opts.restore, &item, dest, Some(file.as_raw_fd()));
        check_content(&item, &shown, written);
        Ok(())
    }

    fn data(
        &mut self,
        item: Item,
        chunks: usize,
        mut progress: Option<&mut ProgressPercent>,
    ) -> Result<()> {
        let shown = display_bytes(&item.path);
        let mut written = 0u64;
        for _ in 0..chunks {
            let (delivery, _) = self.next()?;
            let Delivery::Data(data) = delivery else {
                continue;
            };
            written += data.len() as u64;
            if let Some(pi) = progress.as_deref_mut() {
                pi.show_increase_with(data.len() as u64, || vec![shown.clone()]);
            }
            if let Some(out) = self.stdout.as_mut() {
                out.write_all(&data).map_err(Error::exception)?;
            }
            recycle(data);
        }
        if let Some(out) = self.stdout.as_mut() {
            out.flush().map_err(Error::exception)?;
        }
        if item.is_regular() {
            check_content(&item, &shown, written);
        }
        Ok(())
    }
}

/// borg's checks after a file's content: size as recorded, no zero-replaced chunks.
fn check_content(item: &Item, shown: &str, written: u64) {
    if let Some(size) = item.size {
        if size != written {
            output::warn_kind(
                WarningKind::BackupError,
                &format!(
                    "{shown}: Size inconsistency detected: size {size}, chunks size {written}"
                ),
            );
        }
    }
    if !item.healthy() {
        output::warn_kind(
            WarningKind::BackupError,
            &format!(
                "{shown}: File has damaged (all-zero) chunks. Try running borg check --repair."
            ),
        );
    }
}

/// Directory metadata last, innermost first (borg's "Setting directory permissions").
fn finish_dirs(opts: &ExtractOptions, dirs: &mut DeferredDirs<(Item, PathBuf)>) {
    if !opts.writing() {
        return;
    }
    let dirs = dirs.drain();
    let mut pi = ProgressPercent::new(
        dirs.len() as u64,
        1.0,
        "Setting directory permissions %3.0f%%",
        "extract.permissions",
    );
    for (item, dest) in dirs {
        pi.show_increase(1, None);
        restore(&opts.restore, &item, &dest, None);
    }
    pi.finish();
}
