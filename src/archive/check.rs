//! The archives phase of `check` (borg's `ArchiveChecker.check`), read-only: every object id
//! of the repository is counted as referenced by the manifest, the archives' metadata and
//! item streams and their items' chunks; with `verify_data` every object is read, decrypted
//! and authenticated on all cores. Problems are logged at ERROR; the result says whether any
//! were found. Repair is not implemented here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::archive::{Archive, ArchiveInfo, Manifest, Operation};
use crate::crypto::Key;
use crate::errors::Result;
use crate::output;
use crate::repository::{ObjectId, Repository, MANIFEST_ID};

/// Which archives to check; all of them makes the orphans check possible.
pub struct ArchiveCheckOptions {
    pub verify_data: bool,
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
        checker.verify_data(&repo, &key, &ids);
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

    /// Read, decrypt and authenticate every object, spread over all cores.
    fn verify_data(&mut self, repo: &Arc<dyn Repository>, key: &Arc<Key>, ids: &[ObjectId]) {
        output::info("Starting cryptographic data integrity verification...");
        let next = AtomicUsize::new(0);
        let failures: Mutex<Vec<(ObjectId, String)>> = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let mut plain = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = ids.get(i) else { break };
                        let checked = repo
                            .get(id)
                            .and_then(|stored| key.decrypt_into(Some(id), &stored, &mut plain));
                        if let Err(e) = checked {
                            let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                            f.push((*id, e.to_string()));
                        }
                    }
                });
            }
        });
        let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        failures.sort();
        for (id, e) in &failures {
            self.error(&format!("chunk {}, integrity error: {e}", hex::encode(id)));
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
