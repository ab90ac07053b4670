//! The archives phase of `check` (borg's `ArchiveChecker.check`), read-only: every object id
//! of the repository is counted as referenced by the manifest, the archives' metadata and
//! item streams and their items' chunks; with `verify_data` every object is read, decrypted
//! and authenticated on all cores. Problems are logged at ERROR; the result says whether any
//! were found. Repair is not implemented here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::archive::{Archive, ArchiveInfo, Manifest, Operation};
use crate::bufpool::BufferPool;
use crate::crypto::{DecryptJob, Key};
use crate::errors::Result;
use crate::output;
use crate::repository::{CheckObserver, ObjectBatch, ObjectId, Repository, MANIFEST_ID};

/// Which archives to check; all of them makes the orphans check possible.
pub struct ArchiveCheckOptions {
    pub verify_data: bool,
    /// Objects that failed authentication while [`check_repository_verifying`] read them
    /// (None: `verify_data` reads every object itself).
    pub verified_suspects: Option<Vec<ObjectId>>,
    /// Archives chosen by filters (None: all archives in the manifest).
    pub selected: Option<Vec<ArchiveInfo>>,
}

/// Check the archives; true if no problem was found.
pub fn check_archives(
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    opts: &ArchiveCheckOptions,
) -> Result<bool> {
    output::info("Starting archive consistency check...");
    let ids = all_object_ids(repo.as_ref())?;
    if ids.is_empty() {
        output::error("Repository contains no apparent data at all, cannot continue check/repair.");
        return Ok(false);
    }
    let mut checker = Checker {
        refs: ids.iter().map(|id| (*id, 0u32)).collect(),
        superseded: HashSet::new(),
        error_found: false,
    };
    if opts.verify_data {
        checker.verify_data(&repo, &key, &ids, opts.verified_suspects.as_deref());
    }
    let manifest = checker.manifest(repo.as_ref(), &key);
    if let Some(manifest) = &manifest {
        let archives = match &opts.selected {
            Some(selected) => selected.clone(),
            None => {
                let mut all = manifest.archives.clone();
                all.sort_by_key(|a| a.ts);
                all
            }
        };
        let n = archives.len();
        for (i, info) in archives.iter().enumerate() {
            output::info(&format!(
                "Analyzing archive {} ({}/{n})",
                info.name_lossy(),
                i + 1
            ));
            checker.archive(&repo, &key, info)?;
        }
        if opts.selected.is_none() {
            checker.orphans();
        } else {
            output::info("Orphaned objects check skipped (needs all archives checked).");
        }
    }
    if checker.error_found {
        output::error("Archive consistency check complete, problems found.");
    } else {
        output::info("Archive consistency check complete, no problems found.");
    }
    Ok(!checker.error_found)
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

struct Checker {
    /// References found so far to every object in the repository.
    refs: HashMap<ObjectId, u32>,
    /// Metadata of archives that could not be read: not reported as orphans.
    superseded: HashSet<ObjectId>,
    error_found: bool,
}

impl Checker {
    fn error(&mut self, msg: &str) {
        self.error_found = true;
        output::error(msg);
    }

    fn reference(&mut self, id: &ObjectId) -> bool {
        match self.refs.get_mut(id) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// Read, decrypt and authenticate every object (or, when the repository check did that
    /// already, read again the objects that failed there), spread over all cores.
    fn verify_data(
        &mut self,
        repo: &Arc<dyn Repository>,
        key: &Arc<Key>,
        ids: &[ObjectId],
        suspects: Option<&[ObjectId]>,
    ) {
        output::info("Starting cryptographic data integrity verification...");
        let current: Vec<ObjectId>;
        let to_read = match suspects {
            // a suspect may be a superseded or deleted copy: only current objects count
            Some(suspects) => {
                current = suspects
                    .iter()
                    .filter(|id| self.refs.contains_key(*id))
                    .copied()
                    .collect();
                &current[..]
            }
            None => ids,
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
                                        integrity_error_text(&e)
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
        if !failures.is_empty() {
            output::warning(
                "Found defect chunks. With --repair, they would get deleted, so affected \
                 files could get repaired then and maybe healed later.",
            );
        }
        let msg = format!(
            "Finished cryptographic data integrity verification, verified {} chunks with {} integrity errors.",
            ids.len(),
            failures.len()
        );
        if failures.is_empty() {
            output::info(&msg);
        } else {
            output::error(&msg);
        }
    }

    fn manifest(&mut self, repo: &dyn Repository, key: &Key) -> Option<Manifest> {
        if !self.refs.contains_key(&MANIFEST_ID) {
            self.error("Repository manifest not found!");
            return None;
        }
        match Manifest::load(repo, key, &[Operation::Check]) {
            Ok(m) => {
                self.reference(&MANIFEST_ID);
                Some(m)
            }
            Err(e) => {
                self.error(&format!("Repository manifest is corrupted: {e}"));
                None
            }
        }
    }

    fn archive(
        &mut self,
        repo: &Arc<dyn Repository>,
        key: &Arc<Key>,
        info: &ArchiveInfo,
    ) -> Result<()> {
        let id_hex = hex::encode(info.id);
        if !self.refs.contains_key(&info.id) {
            self.error(&format!("Archive metadata block {id_hex} is missing!"));
            return Ok(());
        }
        let archive = match Archive::load(repo.as_ref(), key, &info.id) {
            Ok(a) => a,
            Err(e) => {
                self.superseded.insert(info.id);
                self.error(&format!(
                    "Archive metadata block {id_hex} is corrupted: {e}"
                ));
                return Ok(());
            }
        };
        self.reference(&info.id);
        for id in &archive.meta.items {
            if !self.reference(id) {
                self.error(&format!(
                    "Archive metadata damage detected: item metadata chunk {} of archive {} is missing.",
                    hex::encode(id),
                    info.name_lossy()
                ));
                return Ok(());
            }
        }
        for item in archive.items(repo.clone(), key.clone()) {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    self.error(&format!(
                        "Archive metadata damage detected in archive {}: {e}",
                        info.name_lossy()
                    ));
                    return Ok(());
                }
            };
            let mut offset = 0u64;
            for chunk in item.chunks.iter().flatten() {
                if !self.reference(&chunk.id) {
                    self.error(&format!(
                        // borg says this (and "replacing") without --repair too
                        "{}: {}: New missing file chunk detected (Byte {}-{}, Chunk {}). \
                         Replacing with all-zero chunk.",
                        info.name_lossy(),
                        crate::archive::display_bytes(&item.path),
                        offset,
                        offset + chunk.size as u64,
                        hex::encode(chunk.id)
                    ));
                }
                offset += chunk.size as u64;
            }
        }
        Ok(())
    }

    fn orphans(&mut self) {
        let orphaned = self
            .refs
            .iter()
            .filter(|(id, n)| **n == 0 && !self.superseded.contains(*id))
            .count();
        if orphaned > 0 {
            self.error(&format!("{orphaned} orphaned objects found!"));
        }
    }
}

/// How borg 1.x words a failed decryption in `verify_data`: its MAC failure escapes the
/// wrapper that would name the chunk (the low-level exception class is not the one caught), so
/// just the bare reason is printed.
fn integrity_error_text(e: &crate::errors::Error) -> String {
    let mac_failed = format!("[{}]", crate::crypto::MAC_FAILED);
    if e.message.ends_with(&mac_failed) {
        crate::crypto::MAC_FAILED.to_string()
    } else {
        e.to_string()
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
mod tests {
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

    #[test]
    fn mac_failures_are_worded_as_borg_1_x() {
        let e = crate::errors::Error::integrity(format!(
            "Chunk 00: Could not decrypt [{}]",
            crate::crypto::MAC_FAILED
        ));
        assert_eq!(integrity_error_text(&e), "MAC Authentication failed");
        let other = crate::errors::Error::integrity("Chunk 00: id verification failed");
        assert_eq!(
            integrity_error_text(&other),
            "Data integrity error: Chunk 00: id verification failed"
        );
    }
}
