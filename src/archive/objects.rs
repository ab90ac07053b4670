//! Storing objects: compress, encrypt (with nonces reserved as borg does) and put them into the
//! repository. One [`ObjectWriter`] per writing session; it is shared between threads.

use std::sync::Arc;

use crate::compress::CompressionSpec;
use crate::crypto::{Key, NonceManager, NonceStore};
use crate::errors::Result;
use crate::repository::{ObjectId, Repository};

/// The repository's `nonce` file as the nonce manager's store (borg's repository-side
/// reservation, which protects against two clients using one key).
struct RepositoryNonces(Arc<dyn Repository>);

impl NonceStore for RepositoryNonces {
    fn get_free_nonce(&self) -> Result<Option<u64>> {
        self.0.get_free_nonce()
    }

    fn commit_nonce_reservation(
        &self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()> {
        self.0
            .commit_nonce_reservation(next_unreserved, start_nonce)
    }
}

/// Compresses, encrypts and stores objects of one writing session.
pub struct ObjectWriter {
    pub repo: Arc<dyn Repository>,
    pub key: Arc<Key>,
    pub compression: CompressionSpec,
    nonces: Option<NonceManager>,
}

impl ObjectWriter {
    /// A writer for `repo`; AES modes reserve nonces in the repository and the local security
    /// dir, starting after what the manifest (and the key's start nonce) already used.
    pub fn new(
        repo: Arc<dyn Repository>,
        key: Arc<Key>,
        compression: CompressionSpec,
    ) -> ObjectWriter {
        let nonces = key.needs_nonces().then(|| {
            NonceManager::for_repository(
                Box::new(RepositoryNonces(repo.clone())),
                &repo.id(),
                key.start_nonce(),
            )
        });
        ObjectWriter {
            repo,
            key,
            compression,
            nonces,
        }
    }

    /// The stored form of `plaintext` (compressed with this session's spec, encrypted).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.encrypt_with(&self.compression, plaintext)
    }

    /// The stored forms of several plaintexts (MACs computed side by side where possible).
    /// `buffer(n)` gives an empty buffer with room for n bytes for each envelope.
    pub fn encrypt_many(
        &self,
        plaintexts: &[&[u8]],
        buffer: &dyn Fn(usize) -> Vec<u8>,
    ) -> Result<Vec<Vec<u8>>> {
        self.key.compress_and_encrypt_many(
            &self.compression,
            plaintexts,
            self.nonces.as_ref(),
            buffer,
        )
    }

    /// The stored form of `plaintext` with another compression spec.
    pub fn encrypt_with(&self, spec: &CompressionSpec, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.key
            .compress_and_encrypt(spec, plaintext, self.nonces.as_ref())
    }

    /// The stored form of an already compressed payload (a compression envelope, e.g. from
    /// [`CompressionSpec::compress`]).
    pub fn encrypt_compressed(&self, compressed: &[u8]) -> Result<Vec<u8>> {
        let nonce = match &self.nonces {
            Some(nonces) => nonces.allocate(compressed.len())?,
            None => 0,
        };
        Ok(self.key.encrypt(compressed, nonce))
    }

    /// Store `plaintext` under its id; returns (id, stored length).
    pub fn put(&self, plaintext: &[u8]) -> Result<(ObjectId, usize)> {
        let id = self.key.id_hash(plaintext);
        let stored = self.encrypt(plaintext)?;
        self.repo.put(&id, &stored)?;
        Ok((id, stored.len()))
    }

    /// Store an already encrypted object.
    pub fn put_stored(&self, id: &ObjectId, stored: &[u8]) -> Result<()> {
        self.repo.put(id, stored)
    }
}
