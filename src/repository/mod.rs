//! The repository: a transactional key → value store of encrypted objects
//! (repository-format.md §1, §3). Commands reach it only through [`Repository`], so a local
//! repository and a remote one (`borg serve` over ssh) are interchangeable.

use crate::errors::Result;

pub mod local;

/// A 32-byte object id (chunk id, archive id; the manifest is all zeros).
pub type ObjectId = [u8; 32];

/// The manifest's fixed id: 32 zero bytes.
pub const MANIFEST_ID: ObjectId = [0u8; 32];

/// Largest value a PUT may carry (MAX_DATA_SIZE).
pub const MAX_DATA_SIZE: usize = 20971479;

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
}
