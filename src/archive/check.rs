//! The archives phase of `check` (borg 1.2's `ArchiveChecker.check`): every object of the
//! repository starts with no references; the manifest (rebuilt from the archive objects when
//! it is missing or corrupt), the archives' metadata, their item streams and the items' chunks
//! add references; what stays unreferenced is orphaned. With `verify_data` every object is read,
//! decrypted and authenticated on all cores first.
//!
//! With `repair` the damage is mended as borg does it: defect objects are deleted, missing
//! file chunks are replaced by all-zero chunks of the same size (the original list is kept in
//! `chunks_healthy`, so a later check can heal the file), item streams are re-read past
//! missing or corrupt item-metadata chunks, archives that changed are stored anew, archives
//! whose metadata is lost leave the manifest, orphans and superseded objects are deleted and
//! the manifest is written and committed. Problems are logged at ERROR.

mod archives;
mod defects;
mod rebuild;
mod robust;
#[cfg(test)]
mod scenarios;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::archive::objects::ObjectWriter;
use crate::archive::{ArchiveFilter, Manifest, Operation};
use crate::bufpool::BufferPool;
use crate::compress::CompressionSpec;
use crate::crypto::{DecryptJob, Key, KeyType};
use crate::errors::{Error, ErrorKind, Result};
use crate::hashindex::{ChunkIndex, ChunkIndexEntry};
use crate::output::{self, Level};
use crate::repository::{
    CheckObserver, ObjectBatch, ObjectId, Repository, DEFAULT_COMPACT_THRESHOLD, MANIFEST_ID,
};

/// borg's logger of the archive checker.
const LOGGER: &str = "borg.archive";

/// What to check and whether to repair.
#[derive(Default)]
pub struct ArchiveCheckOptions {
    pub verify_data: bool,
    /// Objects that failed authentication while [`check_repository_verifying`] read them
    /// (None: `verify_data` reads every object itself).
    pub verified_suspects: Option<Vec<ObjectId>>,
    pub repair: bool,
    /// The archive named by `REPOSITORY::ARCHIVE`: only this one is checked.
    pub archive: Option<Vec<u8>>,
    /// `--glob-archives`/`--prefix`, `--first`, `--last` and `--sort-by` (check considers
    /// checkpoints). Archives are checked in its sort order.
    pub filter: ArchiveFilter,
}

impl ArchiveCheckOptions {
    /// Whether every archive is checked: only then can orphans be found.
    fn check_all(&self) -> bool {
        self.archive.is_none() && !self.filter.is_active()
    }
}

/// Opens the repository's key given one stored object (its type byte tells the key type).
pub type KeyOpener<'a> = &'a dyn Fn(&[u8]) -> Result<Key>;

/// Check (and with `opts.repair` repair) the archives. The result is borg's: true when
/// repairing or when no problem was found.
pub fn check_archives(
    repo: Arc<dyn Repository>,
    open_key: KeyOpener,
    opts: &ArchiveCheckOptions,
) -> Result<bool> {
    log_info("Starting archive consistency check...");
    let ids = all_object_ids(repo.as_ref())?;
    if ids.is_empty() {
        log_error("Repository contains no apparent data at all, cannot continue check/repair.");
        return Ok(false);
    }
    let chunks = init_chunks(&ids);
    let key = Arc::new(make_key(repo.as_ref(), &chunks, open_key)?);
    let writer = opts
        .repair
        .then(|| ObjectWriter::new(repo.clone(), key.clone(), CompressionSpec::default()));
    let mut checker = Checker {
        repo: repo.clone(),
        key: key.clone(),
        writer,
        chunks,
        possibly_superseded: HashSet::new(),
        error_found: false,
    };
    if opts.verify_data {
        checker.verify_data(&repo, &key, &ids, opts.verified_suspects.as_deref())?;
    }
    let mut manifest = checker.load_manifest()?;
    checker.rebuild_refcounts(&mut manifest, opts)?;
    checker.orphan_chunks_check(opts.check_all())?;
    checker.finish(&mut manifest)?;
    if checker.error_found {
        log_error("Archive consistency check complete, problems found.");
    } else {
        log_info("Archive consistency check complete, no problems found.");
    }
    Ok(opts.repair || !checker.error_found)
}

fn log_info(msg: &str) {
    output::log(Level::Info, LOGGER, msg, None);
}

fn log_warning(msg: &str) {
    output::log(Level::Warning, LOGGER, msg, None);
}

fn log_error(msg: &str) {
    output::log(Level::Error, LOGGER, msg, None);
}

fn log_debug(msg: &str) {
    output::log(Level::Debug, LOGGER, msg, None);
}

/// The text borg 1.2 shows for a failed decryption: its MAC failure escapes the key's
/// "Could not decrypt [...]" wrapper, so only the inner message is shown.
pub fn integrity_text(e: &Error) -> String {
    let text = e.to_string();
    if let Some(start) = text.find("Could not decrypt [") {
        let inner = &text[start + "Could not decrypt [".len()..];
        if let Some(inner) = inner.strip_suffix(']') {
            return inner.to_string();
        }
    }
    text
}

/// Whether `e` is one of borg's integrity errors (which check reports instead of failing).
fn is_integrity_error(e: &Error) -> bool {
    matches!(
        e.kind,
        ErrorKind::IntegrityError
            | ErrorKind::DecompressionError
            | ErrorKind::TAMInvalid
            | ErrorKind::TAMRequiredError
            | ErrorKind::TAMUnsupportedSuiteError
            | ErrorKind::ArchiveTAMInvalid
            | ErrorKind::ArchiveTAMRequiredError
    )
}

fn all_object_ids(repo: &dyn Repository) -> Result<Vec<ObjectId>> {
    let mut ids = Vec::new();
    loop {
        let page = repo.list(10_000, ids.last())?;
        if page.is_empty() {
            return Ok(ids);
        }
        ids.extend(page);
    }
}

/// Every current object in the order of the segments (borg's `scan`); None if the repository
/// cannot list them so.
fn ids_in_disk_order(repo: &dyn Repository) -> Option<Vec<ObjectId>> {
    let mut ids = Vec::new();
    loop {
        let page = repo.scan(10_000, ids.last()).ok()?;
        if page.is_empty() {
            return Some(ids);
        }
        ids.extend(page);
    }
}

/// Every object with no references yet, in a table sized as borg sizes it (10 % headroom for
/// the objects a repair adds), so iterating it visits objects in borg's order.
fn init_chunks(ids: &[ObjectId]) -> ChunkIndex {
    let mut chunks = ChunkIndex::with_usable((ids.len() as f64 * 1.1) as usize);
    for id in ids {
        chunks.insert(id, ChunkIndexEntry::default());
    }
    chunks
}

/// Open the key from the first object whose type byte is a known one (borg's `make_key`:
/// it works without a manifest).
fn make_key(repo: &dyn Repository, chunks: &ChunkIndex, open_key: KeyOpener) -> Result<Key> {
    let mut attempts = 0;
    for (id, _) in chunks.iter() {
        attempts += 1;
        if attempts > 999 {
            break;
        }
        let stored = repo.get(&id)?;
        if KeyType::of_object(&stored).is_ok() {
            return open_key(&stored);
        }
    }
    Err(Error::integrity(if attempts == 0 {
        "make_key: repository has no chunks at all!".to_string()
    } else {
        format!("make_key: failed to create the key (tried {attempts} chunks)")
    }))
}

struct Checker {
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    /// Stores repaired objects; only with `--repair`.
    writer: Option<ObjectWriter>,
    /// Every object of the repository (and those a repair adds) with its reference count.
    chunks: ChunkIndex,
    /// Objects that may lose their last reference by this check (old archive metadata, old
    /// item-stream chunks, replaced zero chunks): not reported as orphans.
    possibly_superseded: HashSet<ObjectId>,
    error_found: bool,
}

impl Checker {
    fn error(&mut self, msg: &str) {
        self.error_found = true;
        log_error(msg);
    }

    fn repair(&self) -> bool {
        self.writer.is_some()
    }

    /// Read, decrypt and authenticate every object (or, when the repository check did that
    /// already, read again the objects that failed there), spread over all cores.
    fn verify_data(
        &mut self,
        repo: &Arc<dyn Repository>,
        key: &Arc<Key>,
        ids: &[ObjectId],
        suspects: Option<&[ObjectId]>,
    ) -> Result<()> {
        log_info("Starting cryptographic data integrity verification...");
        let current: Vec<ObjectId>;
        let on_disk: Vec<ObjectId>;
        let to_read = match suspects {
            // a suspect may be a superseded or deleted copy: only current objects count
            Some(suspects) => {
                current = suspects
                    .iter()
                    .filter(|id| self.chunks.contains(id))
                    .copied()
                    .collect();
                &current[..]
            }
            // in on-disk order where the repository can tell it (sequential reads, as borg)
            None => match ids_in_disk_order(repo.as_ref()) {
                Some(order) if order.len() == ids.len() => {
                    on_disk = order;
                    &on_disk[..]
                }
                _ => ids,
            },
        };
        let pi = Mutex::new(output::ProgressPercent::new(
            ids.len() as u64,
            0.01,
            "Verifying data %6.2f%%",
            "check.verify_data",
        ));
        if suspects.is_some() {
            // the objects were verified while the repository check read them
            lock(&pi).show(Some(ids.len().saturating_sub(1) as u64), None);
        }
        let next = AtomicUsize::new(0);
        let failures: Mutex<Vec<(ObjectId, String)>> = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let mut plain = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = to_read.get(i) else { break };
                        if suspects.is_none() {
                            lock(&pi).show(None, None);
                        }
                        let id_hex = hex::encode(id);
                        let failure = match repo.get(id) {
                            Err(e) => Some(format!("chunk {id_hex}: {e}")),
                            Ok(stored) => key
                                .decrypt_into(object_id_to_check(id), &stored, &mut plain)
                                .err()
                                .map(|e| {
                                    format!(
                                        "chunk {id_hex}, integrity error: {}",
                                        integrity_text(&e)
                                    )
                                }),
                        };
                        if let Some(line) = failure {
                            lock(&failures).push((*id, line));
                        }
                    }
                });
            }
        });
        lock(&pi).finish();
        let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        failures.sort();
        for (_, line) in &failures {
            self.error(line);
        }
        let defects: Vec<ObjectId> = failures.iter().map(|(id, _)| *id).collect();
        self.handle_defect_chunks(&defects)?;
        let msg = format!(
            "Finished cryptographic data integrity verification, verified {} chunks with {} integrity errors.",
            ids.len(),
            failures.len()
        );
        if failures.is_empty() {
            log_info(&msg);
        } else {
            log_error(&msg);
        }
        Ok(())
    }

    /// The manifest; rebuilt from the archive metadata objects if missing or corrupt.
    fn load_manifest(&mut self) -> Result<Manifest> {
        if !self.chunks.contains(&MANIFEST_ID) {
            self.error("Repository manifest not found!");
            return self.rebuild_manifest();
        }
        match Manifest::load(self.repo.as_ref(), &self.key, &[Operation::Check]) {
            Ok(manifest) => Ok(manifest),
            Err(e) if is_integrity_error(&e) => {
                self.error(&format!(
                    "Repository manifest is corrupted: {}",
                    integrity_text(&e)
                ));
                self.chunks.remove(&MANIFEST_ID);
                self.rebuild_manifest()
            }
            Err(e) => Err(e),
        }
    }

    /// Count a reference to `id`. An object not yet in the repository is added: `plaintext`
    /// gives it (encrypted and stored only when repairing).
    fn add_reference(&mut self, id: &ObjectId, plaintext: &[u8]) -> Result<()> {
        if self.chunks.incref(id).is_some() {
            return Ok(());
        }
        let mut csize = 0;
        if let Some(writer) = &self.writer {
            let stored = writer.encrypt(plaintext)?;
            csize = stored.len() as u32;
            self.repo.put(id, &stored)?;
        }
        self.chunks.insert(
            id,
            ChunkIndexEntry {
                refcount: 1,
                size: plaintext.len() as u32,
                csize,
            },
        );
        Ok(())
    }

    /// Count a reference to an object known to exist.
    fn add_existing_reference(&mut self, id: &ObjectId) {
        self.chunks.incref(id);
    }

    /// Remember `id` as possibly superseded if nothing references it (yet).
    fn mark_as_possibly_superseded(&mut self, id: &ObjectId) {
        if self.chunks.get(id).map_or(0, |e| e.refcount) == 0 {
            self.possibly_superseded.insert(*id);
        }
    }

    /// Report objects nothing references (except superseded ones); delete all unreferenced
    /// objects when repairing. Needs every archive checked.
    fn orphan_chunks_check(&mut self, check_all: bool) -> Result<()> {
        if !check_all {
            log_info("Orphaned objects check skipped (needs all archives checked).");
            return Ok(());
        }
        let unused: Vec<ObjectId> = self
            .chunks
            .iter()
            .filter(|(_, e)| e.refcount == 0)
            .map(|(id, _)| id)
            .collect();
        let orphaned = unused
            .iter()
            .filter(|id| !self.possibly_superseded.contains(*id))
            .count();
        if orphaned > 0 {
            self.error(&format!("{orphaned} orphaned objects found!"));
        }
        if self.repair() && !unused.is_empty() {
            log_info(&format!(
                "Deleting {orphaned} orphaned and {} superseded objects...",
                self.possibly_superseded.len()
            ));
            for id in &unused {
                self.repo.delete(id)?;
            }
            log_info("Finished deleting orphaned/superseded objects.");
        }
        Ok(())
    }

    /// When repairing: write the manifest and commit (without compaction, as borg).
    fn finish(&mut self, manifest: &mut Manifest) -> Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        log_info("Writing Manifest.");
        manifest.write(writer)?;
        log_info("Committing repo.");
        self.repo.commit(false, DEFAULT_COMPACT_THRESHOLD, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_failures_show_the_inner_message_as_borg_12() {
        let e = Error::integrity("Chunk (unknown): Could not decrypt [MAC Authentication failed]");
        assert_eq!(integrity_text(&e), "MAC Authentication failed");
        let e = Error::integrity("Chunk 00ff: id verification failed");
        assert_eq!(
            integrity_text(&e),
            "Data integrity error: Chunk 00ff: id verification failed"
        );
    }

    #[test]
    fn chunk_table_holds_every_object_unreferenced() {
        let ids: Vec<ObjectId> = (0..50u8).map(|i| [i; 32]).collect();
        let chunks = init_chunks(&ids);
        assert_eq!(chunks.len(), 50);
        assert!(chunks.iter().all(|(_, e)| e.refcount == 0));
    }
}

/// The id an object's plaintext must hash to (the manifest's id is fixed, not a hash).
fn object_id_to_check(id: &ObjectId) -> Option<&ObjectId> {
    (*id != MANIFEST_ID).then_some(id)
}

/// Stored bytes read by the repository check waiting for authentication, at most this many
/// batches at once.
const VERIFY_QUEUE_BATCHES: usize = 2;

/// Room for a batch and the object that completes it, mostly.
const VERIFY_BUFFER_BYTES: usize = crate::repository::local::FEED_BATCH_BYTES + (1 << 20);

/// The repository check, with every object it reads also decrypted and authenticated on all
/// cores (`check --verify-data` reading the segments once, where borg reads them twice).
/// Returns the check's result and the ids of objects that failed authentication (to be
/// confirmed by [`check_archives`]); None if the repository cannot hand over its objects.
pub fn check_repository_verifying(
    repo: &dyn Repository,
    key: &Key,
    repair: bool,
) -> Result<Option<(bool, Vec<ObjectId>)>> {
    crate::bufpool::fix_allocator_thresholds();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (tx, rx) = crossbeam_channel::bounded::<ObjectBatch>(VERIFY_QUEUE_BATCHES);
    let pool = BufferPool::new((VERIFY_QUEUE_BATCHES + workers + 1) * VERIFY_BUFFER_BYTES);
    let suspects = Mutex::new(Vec::new());
    let checked = std::thread::scope(|scope| {
        for _ in 0..workers {
            let rx = rx.clone();
            let (pool, suspects) = (&pool, &suspects);
            scope.spawn(move || {
                let mut spare: Vec<Vec<u8>> = Vec::new();
                for batch in rx {
                    let failed = authenticate(key, &batch, &mut spare);
                    if !failed.is_empty() {
                        lock(suspects).extend(failed);
                    }
                    pool.give(batch.data);
                }
            });
        }
        drop(rx);
        let feeder = BatchFeeder { tx, pool: &pool };
        repo.check_observed(repair, &feeder)
    })?;
    let mut suspects = suspects.into_inner().unwrap_or_else(|e| e.into_inner());
    suspects.sort();
    suspects.dedup();
    Ok(checked.map(|ok| (ok, suspects)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrypt and authenticate a batch side by side; the ids that failed. `spare` keeps the
/// plaintext buffers for the next batch.
fn authenticate(key: &Key, batch: &ObjectBatch, spare: &mut Vec<Vec<u8>>) -> Vec<ObjectId> {
    let mut jobs: Vec<DecryptJob> = batch
        .iter()
        .map(|(id, stored)| DecryptJob {
            id: object_id_to_check(id).copied(),
            stored,
            out: spare.pop().unwrap_or_default(),
            result: Ok(()),
        })
        .collect();
    key.decrypt_many(&mut jobs);
    let mut failed = Vec::new();
    for ((id, _), job) in batch.iter().zip(jobs) {
        if job.result.is_err() {
            failed.push(*id);
        }
        spare.push(job.out);
    }
    keep_largest(spare, SPARE_PLAINTEXT_BYTES);
    failed
}

/// Plaintext buffers a verifying worker keeps between batches, in bytes of capacity.
const SPARE_PLAINTEXT_BYTES: usize = 8 << 20;

/// Keep the largest buffers up to `budget` bytes of capacity in all; free the rest.
fn keep_largest(buffers: &mut Vec<Vec<u8>>, budget: usize) {
    buffers.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
    let mut total = 0;
    buffers.retain(|b| {
        total += b.capacity();
        total <= budget
    });
}

/// Hands the check's batches to the verifying workers.
struct BatchFeeder<'a> {
    tx: crossbeam_channel::Sender<ObjectBatch>,
    pool: &'a BufferPool,
}

impl CheckObserver for BatchFeeder<'_> {
    fn buffer(&self) -> Vec<u8> {
        self.pool.take(VERIFY_BUFFER_BYTES)
    }

    fn objects(&self, batch: ObjectBatch) {
        // the workers only stop when this sender is gone
        let _ = self.tx.send(batch);
    }
}

#[cfg(test)]
mod one_pass_tests {
    use super::*;

    #[test]
    fn spare_buffers_are_bounded_keeping_the_largest() {
        let mut spare: Vec<Vec<u8>> = [3usize, 10, 1, 6]
            .iter()
            .map(|n| Vec::with_capacity(n << 20))
            .collect();
        keep_largest(&mut spare, 17 << 20);
        let kept: Vec<usize> = spare.iter().map(|b| b.capacity() >> 20).collect();
        assert_eq!(kept, [10, 6]);
    }

    #[test]
    fn batches_hand_out_each_object() {
        let batch = ObjectBatch {
            data: b"abcdefg".to_vec(),
            objects: vec![([1; 32], 3), ([2; 32], 3), ([3; 32], 7)],
        };
        let got: Vec<(u8, &[u8])> = batch.iter().map(|(id, d)| (id[0], d)).collect();
        assert_eq!(got, [(1, &b"abc"[..]), (2, &b""[..]), (3, &b"defg"[..])]);
    }
}
