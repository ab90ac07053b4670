//! Opening the key of an existing repository (borg's key detection).

use std::path::PathBuf;

use super::key::{manifest_nonce, Key, KeySource};
use super::keyblob::decrypt_key_blob_in;
use super::keyfile::{find_key_file_with, read_key_file};
use super::keytype::KeyType;
use super::passphrase::{unlock_with, PassphraseEnv, SystemEnv};
use crate::errors::{Error, ErrorKind, Result};
use crate::paths;
use crate::repository::{ObjectId, Repository};

/// Whether the security dir says this repository requires TAM (the default for keys whose
/// blob has no `tam_required`).
pub fn security_dir_tam_required(repo_id: &ObjectId) -> bool {
    paths::security_dir(&hex::encode(repo_id))
        .join("tam_required")
        .is_file()
}

/// Open the key of `repo` whose stored manifest is `manifest_stored`: detect the mode from
/// the manifest's type byte, load the key blob (repo config or key file), get the passphrase
/// (cli.md §12.2) and check that key and manifest fit.
pub fn open_key(repo: &dyn Repository, manifest_stored: &[u8]) -> Result<Key> {
    open_key_with(repo, manifest_stored, &SystemEnv)
}

/// [`open_key`] with an explicit passphrase environment.
pub fn open_key_with(
    repo: &dyn Repository,
    manifest_stored: &[u8],
    env: &dyn PassphraseEnv,
) -> Result<Key> {
    let stored_type = KeyType::of_object(manifest_stored)?;
    let key_type = stored_type.effective();
    let repo_id = repo.id();
    if key_type == KeyType::None {
        return Ok(Key::plaintext(repo_id));
    }
    let location = repo.location();
    let (blob, target, source) = if key_type.is_keyfile() {
        let key_file = env.var("BORG_KEY_FILE").map(PathBuf::from);
        let keys_dir = match env.var("BORG_KEYS_DIR").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => paths::keys_dir(),
        };
        let path = find_key_file_with(&repo_id, &location, key_file.as_deref(), &keys_dir)?;
        let blob = read_key_file(&path)?;
        (blob, path.display().to_string(), KeySource::KeyFile(path))
    } else {
        let blob = repo.load_key()?;
        if blob.is_empty() {
            return Err(Error::new(
                ErrorKind::RepoKeyNotFoundError,
                [location.as_str()],
            ));
        }
        (
            blob,
            location.clone(),
            KeySource::Repository(location.clone()),
        )
    };
    let prompt = format!("Enter passphrase for key {target}: ");
    // borg names "(repokey)" as the place of undecodable key data in both storage kinds.
    let (material, passphrase) = unlock_with(env, &prompt, |p| {
        decrypt_key_blob_in(&blob, p, &location, "(repokey)")
    })?;
    if material.repository_id != repo_id {
        return Err(Error::new(
            ErrorKind::KeyfileMismatchError,
            [location.as_str(), target.as_str()],
        ));
    }
    let tam_default = security_dir_tam_required(&repo_id);
    let mut material = material;
    material.tam_required = Some(material.tam_required.unwrap_or(tam_default));
    let mut key = Key::from_material(key_type, material, source).map_err(|_| {
        Error::new(
            ErrorKind::KeyfileInvalidError,
            [location.as_str(), target.as_str()],
        )
    })?;
    // A repokey unlocked with the empty passphrase is not "logically" encrypted (borg).
    if matches!(key_type, KeyType::RepoKey | KeyType::RepoKeyBlake2) {
        key.set_logically_encrypted(!passphrase.is_empty());
    }
    key.set_passphrase(Some(passphrase));
    let manifest_ok = manifest_stored[0] == key_type.byte()
        || (stored_type == KeyType::Passphrase && key_type == KeyType::RepoKey);
    if !manifest_ok {
        return Err(Error::integrity("Manifest: Invalid encryption envelope"));
    }
    if key.needs_nonces() {
        let start = manifest_nonce(manifest_stored)
            .ok_or_else(|| Error::integrity("Manifest: Invalid encryption envelope"))?;
        key.set_start_nonce(start);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::CompressionSpec;
    use crate::crypto::passphrase::tests::FakeEnv;
    use crate::msgpack::{self, ValueExt};
    use crate::repository::MANIFEST_ID;
    use rmpv::Value;

    /// A repository that only knows its id, location, key and objects.
    pub(crate) struct FakeRepo {
        pub id: ObjectId,
        pub location: String,
        pub key: Vec<u8>,
        pub objects: std::collections::HashMap<ObjectId, Vec<u8>>,
    }

    impl Repository for FakeRepo {
        fn id(&self) -> ObjectId {
            self.id
        }
        fn location(&self) -> String {
            self.location.clone()
        }
        fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
            self.objects.get(id).cloned().ok_or_else(|| {
                Error::new(
                    ErrorKind::RepositoryObjectNotFound,
                    [hex::encode(id), self.location.clone()],
                )
            })
        }
        fn contains(&self, id: &ObjectId) -> Result<bool> {
            Ok(self.objects.contains_key(id))
        }
        fn len(&self) -> Result<usize> {
            Ok(self.objects.len())
        }
        fn list(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
            let mut ids: Vec<ObjectId> = self.objects.keys().copied().collect();
            ids.sort();
            Ok(ids
                .into_iter()
                .filter(|i| marker.is_none_or(|m| i > m))
                .take(limit)
                .collect())
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            Ok(self.key.clone())
        }
        fn append_only(&self) -> bool {
            false
        }
    }

    fn new_repo_with(key_type: KeyType, passphrase: &str) -> (FakeRepo, Vec<u8>, Key) {
        let id = [0x42; 32];
        let key = Key::generate(key_type, id);
        let manifest = msgpack::sorted_map(vec![(Value::from("version"), Value::from(1))]);
        let packed = key.pack_and_authenticate_metadata(manifest, b"manifest", None);
        let stored = key.encrypt(&CompressionSpec::Lz4.compress(&packed), 0);
        let repo = FakeRepo {
            id,
            location: "/srv/repo".to_string(),
            key: key.encrypt_key_blob(passphrase).into_bytes(),
            objects: [(MANIFEST_ID, stored.clone())].into_iter().collect(),
        };
        (repo, stored, key)
    }

    #[test]
    fn opens_repokey_modes_with_the_right_passphrase() {
        // (PBKDF2 is slow in debug builds: each mode is opened once, the failure paths once.)
        for t in [
            KeyType::RepoKey,
            KeyType::RepoKeyBlake2,
            KeyType::Authenticated,
            KeyType::AuthenticatedBlake2,
        ] {
            let (repo, stored, orig) = new_repo_with(t, "pw");
            let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "pw")]);
            let key = open_key_with(&repo, &stored, &env).unwrap();
            assert_eq!(key.key_type(), t);
            assert_eq!(key.material(), orig.material());
            assert_eq!(
                key.source(),
                &KeySource::Repository("/srv/repo".to_string())
            );
            let plain = key.decrypt(None, &stored).unwrap();
            assert!(key.unpack_and_verify_manifest(&plain, false).unwrap().1);
            assert_eq!(key.logically_encrypted(), t.is_encrypted());
            if t.is_encrypted() {
                assert_eq!(key.start_nonce(), manifest_nonce(&stored).unwrap());
            }
        }
        let (repo, stored, _) = new_repo_with(KeyType::RepoKey, "pw");
        // Wrong passphrase from the environment: PassphraseWrong at once.
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "nope")]).answering(&["pw"]);
        assert_eq!(
            open_key_with(&repo, &stored, &env).unwrap_err().kind,
            ErrorKind::PassphraseWrong
        );
        assert!(env.prompts.borrow().is_empty());
        // Interactive: prompt names the repository.
        let env = FakeEnv::default().answering(&["x", "pw"]);
        open_key_with(&repo, &stored, &env).unwrap();
        assert_eq!(
            env.prompts.borrow()[0],
            "Enter passphrase for key /srv/repo: "
        );
        assert_eq!(env.prompts.borrow().len(), 2);
    }

    #[test]
    fn empty_passphrase_is_tried_silently() {
        let (repo, stored, _) = new_repo_with(KeyType::RepoKey, "");
        let env = FakeEnv::default();
        let key = open_key_with(&repo, &stored, &env).unwrap();
        assert!(env.prompts.borrow().is_empty());
        assert!(!key.logically_encrypted());
    }

    #[test]
    fn open_errors() {
        let (mut repo, stored, _) = new_repo_with(KeyType::RepoKey, "pw");
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "pw")]);
        // Unknown type byte.
        let mut bad = stored.clone();
        bad[0] = 0x09;
        assert_eq!(
            open_key_with(&repo, &bad, &env).unwrap_err().kind,
            ErrorKind::UnsupportedPayloadError
        );
        // Key of another repository.
        let good_key = repo.key.clone();
        let (other, _, _) = new_repo_with(KeyType::RepoKey, "pw");
        let mut other_id_key = Key::generate(KeyType::RepoKey, [1; 32]);
        other_id_key.set_tam_required(true);
        repo.key = other_id_key.encrypt_key_blob("pw").into_bytes();
        assert_eq!(
            open_key_with(&repo, &stored, &env).unwrap_err().kind,
            ErrorKind::KeyfileMismatchError
        );
        // No key in the config.
        repo.key = Vec::new();
        let e = open_key_with(&repo, &stored, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RepoKeyNotFoundError);
        assert_eq!(
            e.message,
            "No key entry found in the config of repository /srv/repo."
        );
        // Garbage key data.
        repo.key = b"@@@@".to_vec();
        let e = open_key_with(&repo, &stored, &env).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid key data for repository /srv/repo found in (repokey)."
        );
        repo.key = good_key;
        // none needs no passphrase at all.
        let plain = Key::plaintext(repo.id);
        let stored = plain.encrypt(&CompressionSpec::Lz4.compress(b"\x80"), 0);
        let key = open_key_with(&repo, &stored, &FakeEnv::default()).unwrap();
        assert_eq!(key.key_type(), KeyType::None);
        drop(other);
    }

    #[test]
    fn legacy_passphrase_type_opens_as_repokey() {
        let (repo, mut stored, _) = new_repo_with(KeyType::RepoKey, "pw");
        stored[0] = 0x01;
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "pw")]);
        let key = open_key_with(&repo, &stored, &env).unwrap();
        assert_eq!(key.key_type(), KeyType::RepoKey);
        assert!(key.decrypt(None, &stored).is_ok());
    }

    #[test]
    fn unpack_helpers_see_manifest_fields() {
        let (repo, stored, _) = new_repo_with(KeyType::RepoKeyBlake2, "pw");
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "pw")]);
        let key = open_key_with(&repo, &stored, &env).unwrap();
        let (m, _) = key
            .unpack_and_verify_manifest(&key.decrypt(None, &stored).unwrap(), false)
            .unwrap();
        assert_eq!(m.get("version").and_then(|v| v.as_int()), Some(1));
    }
}
