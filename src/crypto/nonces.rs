//! AES-CTR counter (nonce) reservation (repository-format.md §4.6) — security critical.
//!
//! A counter value must never be used twice with the same key. Ranges of counters are
//! reserved persistently — in the repository `nonce` file and in the local security dir —
//! *before* any counter of the range is used, so crashes, aborted transactions, other
//! clients and rolled-back servers cannot cause reuse.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::key::blocks_needed;
use crate::errors::{Error, Result};
use crate::paths;
use crate::repository::ObjectId;

/// Size of one reservation, in 16-byte blocks (NONCE_SPACE_RESERVATION).
pub const NONCE_SPACE_RESERVATION: u64 = 1 << 28;

/// Counters must stay below this (borg's MAX_REPRESENTABLE_NONCE).
pub const MAX_REPRESENTABLE_NONCE: u64 = u64::MAX;

/// A persistent "first unreserved counter" value (the repository's `nonce` file; the local
/// security-dir copy).
pub trait NonceStore: Send + Sync {
    /// The stored value, `None` if there is none yet.
    fn get_free_nonce(&self) -> Result<Option<u64>>;

    /// Durably store `next_unreserved`. `start_nonce` is the value read before (borg refuses
    /// to commit if the stored value changed meanwhile).
    fn commit_nonce_reservation(
        &self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()>;
}

/// Parse a nonce file's content (16 hex chars = u64be; surrounding whitespace ignored, as in
/// borg 1.4). The error text is borg's hex_to_bin message.
pub fn parse_nonce_hex(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    if !t.len().is_multiple_of(2) {
        return Err("Odd-length string".to_string());
    }
    let bytes = hex::decode(t).map_err(|_| "Non-hexadecimal digit found".to_string())?;
    if bytes.len() != 8 {
        return Err(format!(
            "Expected 8 bytes (16 hex digits), got {} bytes.",
            bytes.len()
        ));
    }
    Ok(u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
}

/// The content written to nonce files: 16 lowercase hex chars, no newline.
pub fn format_nonce_hex(value: u64) -> String {
    format!("{value:016x}")
}

/// Read a nonce file; `None` if it does not exist. `what` prefixes the error text
/// (`Local security dir` / `Repository`).
pub fn read_nonce_file(path: &Path, what: &str) -> Result<Option<u64>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            parse_nonce_hex(&text)
                .map(Some)
                .map_err(|e| Error::generic(format!("{what} has an invalid nonce file: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::exception(format!("{}: {e}", path.display()))),
    }
}

/// Atomically replace a nonce file with `value`.
pub fn write_nonce_file(path: &Path, value: u64) -> Result<()> {
    super::keyfile::write_file_atomic(path, format_nonce_hex(value).as_bytes(), 0o600)
}

/// The local nonce file `<security dir>/<repo id hex>/nonce`.
pub struct LocalNonceFile {
    path: PathBuf,
}

impl LocalNonceFile {
    pub fn new(path: PathBuf) -> LocalNonceFile {
        LocalNonceFile { path }
    }

    /// The file of repository `repo_id` in the user's security dir.
    pub fn for_repository(repo_id: &ObjectId) -> LocalNonceFile {
        LocalNonceFile::new(paths::security_dir(&hex::encode(repo_id)).join("nonce"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl NonceStore for LocalNonceFile {
    fn get_free_nonce(&self) -> Result<Option<u64>> {
        read_nonce_file(&self.path, "Local security dir")
    }

    fn commit_nonce_reservation(
        &self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()> {
        if self.get_free_nonce()? != start_nonce {
            return Err(Error::exception(
                "nonce space reservation with mismatched previous state",
            ));
        }
        if let Some(dir) = self.path.parent() {
            if !dir.is_dir() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::exception(format!("{}: {e}", dir.display())))?;
            }
        }
        write_nonce_file(&self.path, next_unreserved)
    }
}

#[derive(Debug)]
struct NonceState {
    /// The counter the next object will use (if it fits the reservation).
    next: u64,
    /// End (exclusive) of the current reservation; `None` before the first one.
    reserved_until: Option<u64>,
}

/// Hands out AES-CTR counters for the objects of one session. Shared between threads; each
/// allocation is serialized, and a new range is persisted in both stores before any counter
/// of it is returned.
pub struct NonceManager {
    repo: Box<dyn NonceStore>,
    local: Option<Box<dyn NonceStore>>,
    /// First counter that is safe after the current manifest (0 for a new repository).
    manifest_nonce: u64,
    state: Mutex<NonceState>,
}

impl NonceManager {
    /// `start_nonce` is the key's start nonce (manifest nonce + manifest blocks, or 0 for a new
    /// repository). `local` is normally [`LocalNonceFile::for_repository`].
    pub fn new(
        repo: Box<dyn NonceStore>,
        local: Option<Box<dyn NonceStore>>,
        start_nonce: u64,
    ) -> NonceManager {
        NonceManager {
            repo,
            local,
            manifest_nonce: start_nonce,
            state: Mutex::new(NonceState {
                next: start_nonce,
                reserved_until: None,
            }),
        }
    }

    /// The counter to use for the next object of `byte_len` bytes (compressed payload length);
    /// advances by ceil(len/16) blocks, reserving and persisting a new range first if needed.
    pub fn allocate(&self, byte_len: usize) -> Result<u64> {
        let needed = blocks_needed(byte_len);
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::exception("nonce manager lock poisoned"))?;
        let nonce = match state.reserved_until {
            Some(end) if state.next.checked_add(needed).is_some_and(|e| e <= end) => state.next,
            _ => self.reserve(&mut state, needed)?,
        };
        state.next = nonce + needed;
        Ok(nonce)
    }

    /// borg's ensure_reservation: start after everything anyone may have used, persist the new
    /// end in the repository and locally, then hand out the start.
    fn reserve(&self, state: &mut NonceState, needed: u64) -> Result<u64> {
        let repo_free = self.repo.get_free_nonce()?;
        let local_free = match &self.local {
            Some(l) => l.get_free_nonce()?,
            None => None,
        };
        let start = [
            repo_free,
            local_free,
            Some(self.manifest_nonce),
            state.reserved_until,
        ]
        .into_iter()
        .flatten()
        .max()
        .expect("manifest nonce is always present");
        let end = start
            .checked_add(needed)
            .and_then(|v| v.checked_add(NONCE_SPACE_RESERVATION))
            .filter(|v| *v < MAX_REPRESENTABLE_NONCE)
            .ok_or_else(|| Error::exception("AES-CTR nonce space exhausted"))?;
        self.repo.commit_nonce_reservation(end, repo_free)?;
        if let Some(l) = &self.local {
            l.commit_nonce_reservation(end, local_free)?;
        }
        state.reserved_until = Some(end);
        Ok(start)
    }

    /// The usual setup: the repository's store plus the local security-dir nonce file of
    /// `repo_id`, starting at the key's start nonce.
    pub fn for_repository(
        repo: Box<dyn NonceStore>,
        repo_id: &ObjectId,
        start_nonce: u64,
    ) -> NonceManager {
        NonceManager::new(
            repo,
            Some(Box::new(LocalNonceFile::for_repository(repo_id))),
            start_nonce,
        )
    }

    /// End of the current reservation (for tests and diagnostics).
    pub fn reserved_until(&self) -> Option<u64> {
        self.state.lock().ok().and_then(|s| s.reserved_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// (sequence number, committed value) of every commit.
    type CommitLog = Arc<Mutex<Vec<(u64, u64)>>>;

    /// An in-memory store that logs every commit with a global sequence number.
    struct FakeStore {
        value: Mutex<Option<u64>>,
        log: CommitLog,
        seq: Arc<AtomicU64>,
    }

    impl FakeStore {
        fn new(initial: Option<u64>, seq: Arc<AtomicU64>) -> (FakeStore, CommitLog) {
            let log = Arc::new(Mutex::new(Vec::new()));
            (
                FakeStore {
                    value: Mutex::new(initial),
                    log: log.clone(),
                    seq,
                },
                log,
            )
        }
    }

    impl NonceStore for FakeStore {
        fn get_free_nonce(&self) -> Result<Option<u64>> {
            Ok(*self.value.lock().unwrap())
        }
        fn commit_nonce_reservation(&self, next: u64, start: Option<u64>) -> Result<()> {
            let mut v = self.value.lock().unwrap();
            if *v != start {
                return Err(Error::exception(
                    "nonce space reservation with mismatched previous state",
                ));
            }
            *v = Some(next);
            let s = self.seq.fetch_add(1, Ordering::SeqCst);
            self.log.lock().unwrap().push((s, next));
            Ok(())
        }
    }

    #[test]
    fn first_reservation_uses_max_of_all_sources() {
        let seq = Arc::new(AtomicU64::new(0));
        let (repo, repo_log) = FakeStore::new(Some(0x1000), seq.clone());
        let (local, local_log) = FakeStore::new(Some(0x5000), seq.clone());
        let nm = NonceManager::new(Box::new(repo), Some(Box::new(local)), 0x300);
        let n = nm.allocate(100).unwrap();
        assert_eq!(n, 0x5000);
        let end = 0x5000 + 7 + NONCE_SPACE_RESERVATION;
        assert_eq!(repo_log.lock().unwrap()[0].1, end);
        assert_eq!(local_log.lock().unwrap()[0].1, end);
        // Following objects are consecutive within the reservation, no new commits.
        assert_eq!(nm.allocate(16).unwrap(), 0x5000 + 7);
        assert_eq!(nm.allocate(0).unwrap(), 0x5000 + 8);
        assert_eq!(nm.allocate(1).unwrap(), 0x5000 + 8);
        assert_eq!(repo_log.lock().unwrap().len(), 1);
        // The manifest nonce wins when it is the largest.
        let (repo, _) = FakeStore::new(Some(10), seq.clone());
        let nm = NonceManager::new(Box::new(repo), None, 0x1000001c);
        assert_eq!(nm.allocate(1).unwrap(), 0x1000001c);
        // Nothing stored anywhere: a new repository starts at 0.
        let (repo, _) = FakeStore::new(None, seq);
        let nm = NonceManager::new(Box::new(repo), None, 0);
        assert_eq!(nm.allocate(1).unwrap(), 0);
    }

    #[test]
    fn exhausted_reservation_reserves_again_after_its_end() {
        let seq = Arc::new(AtomicU64::new(0));
        let (repo, log) = FakeStore::new(None, seq);
        let nm = NonceManager::new(Box::new(repo), None, 0);
        let big = (NONCE_SPACE_RESERVATION as usize) * 16 + 1; // just over what is left
        assert_eq!(nm.allocate(16).unwrap(), 0);
        let first_end = nm.reserved_until().unwrap();
        assert_eq!(first_end, 1 + NONCE_SPACE_RESERVATION);
        // Does not fit the rest of the range → new range starting at the old end.
        let n = nm.allocate(big).unwrap();
        assert_eq!(n, first_end);
        assert_eq!(log.lock().unwrap().len(), 2);
        assert_eq!(
            nm.reserved_until().unwrap(),
            first_end + (NONCE_SPACE_RESERVATION + 1) + NONCE_SPACE_RESERVATION
        );
    }

    #[test]
    fn foreign_change_of_the_repo_file_is_refused() {
        struct Racy(Mutex<u64>);
        impl NonceStore for Racy {
            fn get_free_nonce(&self) -> Result<Option<u64>> {
                let mut v = self.0.lock().unwrap();
                *v += 1; // someone else writes between our read and our commit
                Ok(Some(*v - 1))
            }
            fn commit_nonce_reservation(&self, _: u64, start: Option<u64>) -> Result<()> {
                if Some(*self.0.lock().unwrap()) != start {
                    return Err(Error::exception(
                        "nonce space reservation with mismatched previous state",
                    ));
                }
                Ok(())
            }
        }
        let nm = NonceManager::new(Box::new(Racy(Mutex::new(5))), None, 0);
        assert!(nm.allocate(10).is_err());
    }

    #[test]
    fn concurrent_allocations_never_overlap_and_are_reserved_first() {
        let seq = Arc::new(AtomicU64::new(0));
        let (repo, repo_log) = FakeStore::new(Some(1000), seq.clone());
        let (local, local_log) = FakeStore::new(None, seq.clone());
        // Small reservations force many re-reservations: shrink via big objects.
        let nm = Arc::new(NonceManager::new(Box::new(repo), Some(Box::new(local)), 0));
        let mut handles = Vec::new();
        for t in 0..8usize {
            let nm = nm.clone();
            let seq = seq.clone();
            handles.push(std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..300usize {
                    // Every 50th object is huge so reservations run out.
                    let len = if i % 50 == 7 {
                        (NONCE_SPACE_RESERVATION as usize) * 4
                    } else {
                        1 + (t * 131 + i * 17) % 70_000
                    };
                    let n = nm.allocate(len).unwrap();
                    let after = seq.fetch_add(1, Ordering::SeqCst);
                    got.push((n, blocks_needed(len), after));
                }
                got
            }));
        }
        let mut all: Vec<(u64, u64, u64)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let repo_log = repo_log.lock().unwrap().clone();
        let local_log = local_log.lock().unwrap().clone();
        assert_eq!(repo_log.len(), local_log.len());
        assert!(repo_log.len() > 10);
        // Every used range was covered by a reservation committed (repo and local) before use.
        for &(n, blocks, after) in &all {
            let covered =
                |log: &[(u64, u64)]| log.iter().any(|&(s, end)| s < after && n + blocks <= end);
            assert!(
                covered(&repo_log) && covered(&local_log),
                "nonce {n} used before reservation"
            );
            assert!(n >= 1000);
        }
        // No two ranges overlap.
        all.sort();
        for w in all.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "overlap {:?} {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn local_nonce_file_format_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = LocalNonceFile::new(dir.path().join("sub").join("nonce"));
        assert_eq!(f.get_free_nonce().unwrap(), None);
        f.commit_nonce_reservation(0x1000001c, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "000000001000001c"
        );
        assert_eq!(f.get_free_nonce().unwrap(), Some(0x1000001c));
        assert!(f.commit_nonce_reservation(5, Some(4)).is_err());
        std::fs::write(f.path(), " 00000000000000ff\n").unwrap();
        assert_eq!(f.get_free_nonce().unwrap(), Some(255));
        std::fs::write(f.path(), "xyz").unwrap();
        let e = f.get_free_nonce().unwrap_err();
        assert_eq!(
            e.message,
            "Error: Local security dir has an invalid nonce file: Odd-length string"
        );
        std::fs::write(f.path(), "00ff").unwrap();
        assert!(f
            .get_free_nonce()
            .unwrap_err()
            .message
            .ends_with("Expected 8 bytes (16 hex digits), got 2 bytes."));
    }
}
