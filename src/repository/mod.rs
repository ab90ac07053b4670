//! The repository: a transactional key → value store of encrypted objects
//! (repository-format.md §1, §3). Commands reach it only through [`Repository`], so a local
//! repository and a remote one (`borg serve` over ssh) are interchangeable.

use std::path::{Component, Path, PathBuf};

use crate::errors::{Error, Result};

pub mod config;
pub mod config_edit;
pub mod integrity;
pub mod local;
pub mod lock;
pub mod segments;

pub use local::LocalRepository;

/// A 32-byte object id (chunk id, archive id; the manifest is all zeros).
pub type ObjectId = [u8; 32];

/// The manifest's fixed id: 32 zero bytes.
pub const MANIFEST_ID: ObjectId = [0u8; 32];

/// Largest value a PUT may carry (MAX_DATA_SIZE).
pub const MAX_DATA_SIZE: usize = 20971479;

/// Default compaction threshold (borg compact `--threshold 10`).
pub const DEFAULT_COMPACT_THRESHOLD: f64 = 0.1;

fn unsupported(what: &str) -> Error {
    Error::exception(format!("{what} is not supported by this repository"))
}

/// Operations every repository offers. Implementations are shared between threads
/// (extract fetches objects from several threads at once).
pub trait Repository: Send + Sync {
    /// The repository id (config `id`).
    fn id(&self) -> ObjectId;

    /// Canonical location as borg prints it (absolute path, or `ssh://…`).
    fn location(&self) -> String;

    /// The stored value of an object; `Repository.ObjectNotFound` if absent.
    fn get(&self, id: &ObjectId) -> Result<Vec<u8>>;

    /// Whether the object exists.
    fn contains(&self, id: &ObjectId) -> Result<bool>;

    /// Number of live objects.
    fn len(&self) -> Result<usize>;

    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Up to `limit` object ids after `marker` in a stable order (borg's `list`).
    fn list(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>>;

    /// The repokey blob text from `config` (`key = …`), empty if none.
    fn load_key(&self) -> Result<Vec<u8>>;

    /// Whether the repository is in append-only mode.
    fn append_only(&self) -> bool;

    /// Values of several objects, in order (borg's `get_many`).
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// How many objects readers should ask [`get_many`](Self::get_many) for at once: 1 when
    /// batching gains nothing (local), more when each call costs a round trip (remote).
    fn preferred_batch(&self) -> usize {
        1
    }

    /// Store a value under `id` within the current transaction (overwrites).
    fn put(&self, _id: &ObjectId, _data: &[u8]) -> Result<()> {
        Err(unsupported("put"))
    }

    /// Delete `id` within the current transaction; `Repository.ObjectNotFound` if absent.
    fn delete(&self, _id: &ObjectId) -> Result<()> {
        Err(unsupported("delete"))
    }

    /// Commit the transaction; with `compact` (and not append-only) sparse segments whose
    /// freeable share exceeds `threshold` are compacted.
    fn commit(&self, _compact: bool, _threshold: f64, _cleanup_commits: bool) -> Result<()> {
        Err(unsupported("commit"))
    }

    /// Abandon the current transaction.
    fn rollback(&self) -> Result<()> {
        Err(unsupported("rollback"))
    }

    /// Store the repokey blob in `config` (`key = …`).
    fn save_key(&self, _keydata: &[u8]) -> Result<()> {
        Err(unsupported("save_key"))
    }

    /// The repository's `nonce` file value (next unreserved AES-CTR counter), if any.
    fn get_free_nonce(&self) -> Result<Option<u64>> {
        Err(unsupported("get_free_nonce"))
    }

    /// Reserve nonces up to `next_unreserved`; fails if the file no longer holds `start_nonce`.
    fn commit_nonce_reservation(
        &self,
        _next_unreserved: u64,
        _start_nonce: Option<u64>,
    ) -> Result<()> {
        Err(unsupported("commit_nonce_reservation"))
    }

    /// Up to `limit` ids of live objects in on-disk order after `marker` (borg's `scan`).
    fn scan(&self, _limit: usize, _marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        Err(unsupported("scan"))
    }

    /// Repository consistency check (`borg check --repository-only`); see
    /// [`LocalRepository::check`].
    fn check(&self, _repair: bool, _max_duration: f64) -> Result<bool> {
        Err(unsupported("check"))
    }

    /// The full repository check, handing every intact object it reads to `observer` (so
    /// `check --verify-data` reads the segments once). `Ok(None)`: this repository cannot
    /// (the caller runs [`Repository::check`] and reads the objects itself).
    fn check_observed(&self, _repair: bool, _observer: &dyn CheckObserver) -> Result<Option<bool>> {
        Ok(None)
    }

    /// Remove the repository lock whoever holds it.
    fn break_lock(&self) -> Result<()> {
        Err(unsupported("break_lock"))
    }

    /// Delete the whole repository.
    fn destroy(&self) -> Result<()> {
        Err(unsupported("destroy"))
    }
}

/// Python's `os.path.abspath`: join with the working directory and normalize `.`/`..`/`//`
/// lexically (symlinks are not resolved).
pub fn abspath(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::from("/");
    for comp in joined.components() {
        match comp {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abspath_is_lexical() {
        assert_eq!(
            abspath(Path::new("/a/b/../c/./d//e")),
            PathBuf::from("/a/c/d/e")
        );
        assert_eq!(abspath(Path::new("/..")), PathBuf::from("/"));
        assert!(abspath(Path::new("x")).is_absolute());
    }
}

/// Objects read one after another from a segment, their data side by side in one buffer.
#[derive(Debug, Default)]
pub struct ObjectBatch {
    pub data: Vec<u8>,
    /// Each object's id and the end of its data in `data` (it starts where the last ended).
    pub objects: Vec<(ObjectId, usize)>,
}

impl ObjectBatch {
    /// Each object's id and stored bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, &[u8])> {
        let mut start = 0;
        self.objects.iter().map(move |(id, end)| {
            let data = &self.data[start..*end];
            start = *end;
            (id, data)
        })
    }
}

/// Receives the objects a repository check reads. Objects of a segment that later turns out
/// damaged may have been handed over already: a receiver must not assume they are current.
pub trait CheckObserver: Sync {
    /// An empty buffer to read the next batch into (recycled by the receiver); a batch is
    /// handed over once it holds [`local::FEED_BATCH_BYTES`].
    fn buffer(&self) -> Vec<u8>;
    fn objects(&self, batch: ObjectBatch);
}
