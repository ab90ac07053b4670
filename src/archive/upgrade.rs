//! TAM maintenance of `borg upgrade` (borg 1.4): checking and re-authenticating archive
//! metadata objects (`--check-archives-tam`, `--archives-tam`) and the client-side
//! `tam_required` marker (`--tam`, `--check-tam`, `--disable-tam`).

use std::path::PathBuf;

use rmpv::Value;

use super::objects::ObjectWriter;
use super::Statistics;
use crate::cache::Cache;
use crate::crypto::Key;
use crate::errors::Result;
use crate::repository::{ObjectId, Repository};

const IGNORE_INVALID_ARCHIVE_TAM: &str = "ignore_invalid_archive_tam";

/// From now on, let an invalid archive TAM count as a missing one in this process (borg's
/// `ignore_invalid_archive_tam()` context around the TAM upgrade): also the cache resync,
/// which loads every archive, must not fail on archives renamed by borg ≤ 1.2.4.
pub fn ignore_invalid_archive_tams() {
    let current = std::env::var("BORG_WORKAROUNDS").unwrap_or_default();
    if current.split(',').any(|w| w == IGNORE_INVALID_ARCHIVE_TAM) {
        return;
    }
    let value = if current.is_empty() {
        IGNORE_INVALID_ARCHIVE_TAM.to_string()
    } else {
        format!("{current},{IGNORE_INVALID_ARCHIVE_TAM}")
    };
    std::env::set_var("BORG_WORKAROUNDS", value);
}

/// An archive metadata object as stored, decoded, with the result of its TAM check.
pub struct ArchiveMetaObject {
    /// The metadata map without its `tam` entry.
    pub map: Value,
    /// Whether it carries a TAM that verifies (a missing or stale TAM counts as false).
    pub verified: bool,
}

/// Fetch, decrypt and check the metadata object `id` (TAM not required, invalid ones
/// tolerated).
pub fn load_archive_meta(
    repo: &dyn Repository,
    key: &Key,
    id: &ObjectId,
) -> Result<ArchiveMetaObject> {
    let stored = repo.get(id)?;
    let plain = key.decrypt(Some(id), &stored)?;
    let (map, verified, _salt) = key.unpack_and_verify_archive_with(&plain, true, true)?;
    Ok(ArchiveMetaObject { map, verified })
}

/// Store `map` again with a fresh archive TAM, account for it in the cache and drop a
/// reference to the old object `old_id` (deleted when it was the last). Returns the new id;
/// the manifest still has to point to it.
pub fn reauthenticate_archive(
    writer: &ObjectWriter,
    cache: &mut Cache,
    stats: &mut Statistics,
    old_id: &ObjectId,
    map: Value,
) -> Result<ObjectId> {
    let packed = writer
        .key
        .pack_and_authenticate_metadata(map, b"archive", None);
    let (new_id, stored_len) = writer.put(&packed)?;
    cache.add_chunk(
        &new_id,
        packed.len() as u32,
        stored_len as u32,
        stats,
        false,
    );
    cache.chunk_decref(old_id, stats)?;
    Ok(new_id)
}

/// The security-dir file whose presence makes this client require a manifest TAM.
pub fn tam_required_file(repo_id: &ObjectId) -> PathBuf {
    crate::paths::security_dir(&hex::encode(repo_id)).join("tam_required")
}

/// Create or remove the security-dir `tam_required` marker.
pub fn set_tam_required_file(repo_id: &ObjectId, required: bool) -> Result<()> {
    let file = tam_required_file(repo_id);
    if required {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::File::create(&file)?;
    } else if file.exists() {
        std::fs::remove_file(&file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack;

    #[test]
    fn stale_tam_counts_as_unverified_and_fresh_one_verifies() {
        let key = Key::generate(crate::crypto::KeyType::RepoKey, [7; 32]);
        let map = msgpack::sorted_map(vec![
            (Value::from("name"), msgpack::bytes(b"a".to_vec())),
            (Value::from("version"), Value::from(1)),
        ]);
        let packed = key.pack_and_authenticate_metadata(map, b"archive", None);
        let (value, ok, _) = key
            .unpack_and_verify_archive_with(&packed, true, true)
            .unwrap();
        assert!(ok);
        // what borg 1.2.4's rename does: new name, old TAM kept
        let mut entries = value.as_map().unwrap().clone();
        entries[0].1 = msgpack::bytes(b"b".to_vec());
        let plain = rmpv::decode::read_value(&mut &packed[..]).unwrap();
        let tam = plain
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_str() == Some("tam"));
        entries.push(tam.unwrap().clone());
        let stale = msgpack::pack(&msgpack::sorted_map(entries));
        let (_, ok, _) = key
            .unpack_and_verify_archive_with(&stale, true, true)
            .unwrap();
        assert!(!ok);
        assert!(key
            .unpack_and_verify_archive_with(&stale, true, false)
            .is_err());
    }
}
