//! Creating the key of a new repository (borg's `key_creator`, used by `init`) and storing its
//! protected blob where the mode keeps it (repository-format.md §4.5).

use serde_json::{json, Value as Json};

use super::key::{Key, KeySource};
use super::keyfile::{new_key_file_path_named, save_key_file};
use super::keytype::KeyType;
use super::passphrase::{new_passphrase, PassphraseEnv};
use crate::errors::{Error, Result};
use crate::output::{self, Level};
use crate::repository::Repository;

/// The logger of borg's key module (`borg.crypto.key`).
pub const KEY_LOGGER: &str = "borg.crypto.key";

/// What a related repository shares with the one it was exported from, so that chunk ids and
/// chunk boundaries agree (`borg key export-related-secrets`, JSON version 1).
#[derive(Clone, PartialEq, Eq)]
pub struct RelatedSecrets {
    pub id_key: Vec<u8>,
    pub chunk_seed: i32,
    /// borg's name of the exporting key type (`repokey`, `key file BLAKE2b`, …).
    pub key_name: String,
}

impl std::fmt::Debug for RelatedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelatedSecrets")
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// Python's `str()` of a JSON value, for borg's error texts.
fn python_str(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => "None".into(),
        Some(Json::Bool(true)) => "True".into(),
        Some(Json::Bool(false)) => "False".into(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl RelatedSecrets {
    /// The secrets of an opened key.
    pub fn of_key(key: &Key) -> RelatedSecrets {
        RelatedSecrets {
            id_key: key.material().id_key.clone(),
            chunk_seed: key.chunk_seed(),
            key_name: key.key_type().description().to_string(),
        }
    }

    /// The JSON document borg writes.
    pub fn to_json(&self) -> Json {
        json!({
            "version": 1,
            "id_key": hex::encode(&self.id_key),
            "chunk_seed": self.chunk_seed,
            "key_name": self.key_name,
        })
    }

    /// Parse the JSON document; `source` names the file in error messages (borg's
    /// `CommandError` texts).
    pub fn from_json(text: &str, source: &str) -> Result<RelatedSecrets> {
        let invalid = |what: &str| {
            Error::command(format!("Invalid {what} in related secrets file: {source}"))
        };
        let doc: Json = serde_json::from_str(text).map_err(|_| invalid("JSON"))?;
        let Json::Object(map) = doc else {
            return Err(invalid("JSON"));
        };
        let version = map.get("version");
        // Python's `!= 1` also accepts 1.0 and true
        let is_one = match version {
            Some(Json::Number(n)) => n.as_f64() == Some(1.0),
            Some(Json::Bool(b)) => *b,
            _ => false,
        };
        if !is_one {
            return Err(Error::command(format!(
                "Unsupported related secrets version: {}",
                python_str(version)
            )));
        }
        let id_key = map
            .get("id_key")
            .and_then(|v| v.as_str())
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| invalid("id_key"))?;
        let chunk_seed = map
            .get("chunk_seed")
            .and_then(|v| v.as_i64())
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| invalid("chunk_seed"))?;
        let key_name = map
            .get("key_name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid("key_name"))?
            .to_string();
        Ok(RelatedSecrets {
            id_key,
            chunk_seed,
            key_name,
        })
    }

    /// Whether a key of `key_type` computes chunk ids like the exporting key (borg's
    /// `uses_same_id_hash`): both HMAC-SHA256 or both BLAKE2b.
    pub fn fits(&self, key_type: KeyType) -> bool {
        const HMAC_SHA256: [&str; 3] = ["repokey", "key file", "authenticated"];
        const BLAKE2: [&str; 3] = [
            "repokey BLAKE2b",
            "key file BLAKE2b",
            "authenticated BLAKE2b",
        ];
        let ours = key_type.description();
        let theirs = self.key_name.as_str();
        (HMAC_SHA256.contains(&theirs) && HMAC_SHA256.contains(&ours))
            || (BLAKE2.contains(&theirs) && BLAKE2.contains(&ours))
    }
}

/// How borg shows a repository object (`<Repository /abs/path>`), e.g. as a key target.
fn repository_repr(repo: &dyn Repository) -> String {
    let location = repo.location();
    if location.starts_with("ssh://") {
        format!("<RemoteRepository {location}>")
    } else {
        format!("<Repository {location}>")
    }
}

/// Create the key of the new repository `repo` (borg's `key_creator`).
///
/// `none`: nothing is stored. Otherwise: a new passphrase (cli.md §12.3), random key material
/// (id key and chunk seed taken from `related` if given), and the protected key blob saved —
/// key-file modes in a new key file (`$BORG_KEY_FILE`, or `key_file_name` in the keys dir, see
/// `Location::key_file_name`), the other modes in the repository config. Logs borg's messages.
pub fn create_key(
    repo: &dyn Repository,
    key_type: KeyType,
    key_file_name: &str,
    related: Option<&RelatedSecrets>,
    env: &dyn PassphraseEnv,
) -> Result<Key> {
    let key_type = key_type.effective();
    if key_type == KeyType::None {
        output::log(
            Level::Info,
            KEY_LOGGER,
            "Encryption NOT enabled.\nUse the \"--encryption=repokey|keyfile\" to enable encryption.",
            None,
        );
        return Ok(Key::plaintext(repo.id()));
    }
    if related.is_some_and(|r| !r.fits(key_type)) {
        return Err(Error::generic(
            "You must keep the same ID hash (HMAC-SHA256 or BLAKE2b) or deduplication will break.",
        ));
    }
    let passphrase = new_passphrase(env, true)?;
    let mut key = Key::generate(key_type, repo.id());
    if let Some(r) = related {
        let mut material = key.material().clone();
        material.id_key = r.id_key.clone();
        material.chunk_seed = r.chunk_seed;
        key = Key::from_material(key_type, material, KeySource::Nowhere)?;
    }
    let blob = key.encrypt_key_blob(&passphrase);
    let target = if key_type.is_keyfile() {
        let path = new_key_file_path_named(key_file_name)?;
        save_key_file(&path, &repo.id(), &blob, true)?;
        let shown = path.display().to_string();
        key.set_source(KeySource::KeyFile(path));
        shown
    } else {
        repo.save_key(blob.as_bytes())?;
        key.set_source(KeySource::Repository(repo.location()));
        if matches!(key_type, KeyType::RepoKey | KeyType::RepoKeyBlake2) {
            // borg: a repokey with the empty passphrase counts as unencrypted
            key.set_logically_encrypted(!passphrase.is_empty());
        }
        repository_repr(repo)
    };
    output::log(
        Level::Info,
        KEY_LOGGER,
        &format!("Key in \"{target}\" created."),
        None,
    );
    output::log(
        Level::Info,
        KEY_LOGGER,
        "Keep this key safe. Your data will be inaccessible without it.",
        None,
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::passphrase::tests::FakeEnv;
    use crate::errors::ErrorKind;
    use crate::repository::ObjectId;
    use std::sync::Mutex;

    /// A repository that only stores its key blob.
    struct KeyOnlyRepo {
        id: ObjectId,
        key: Mutex<Vec<u8>>,
    }

    impl Repository for KeyOnlyRepo {
        fn id(&self) -> ObjectId {
            self.id
        }
        fn location(&self) -> String {
            "/srv/repo".into()
        }
        fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
            Err(Error::new(
                ErrorKind::RepositoryObjectNotFound,
                [hex::encode(id), self.location()],
            ))
        }
        fn contains(&self, _id: &ObjectId) -> Result<bool> {
            Ok(false)
        }
        fn len(&self) -> Result<usize> {
            Ok(0)
        }
        fn list(&self, _limit: usize, _marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
            Ok(Vec::new())
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            Ok(self.key.lock().unwrap().clone())
        }
        fn append_only(&self) -> bool {
            false
        }
        fn save_key(&self, keydata: &[u8]) -> Result<()> {
            *self.key.lock().unwrap() = keydata.to_vec();
            Ok(())
        }
    }

    fn repo() -> KeyOnlyRepo {
        KeyOnlyRepo {
            id: [7; 32],
            key: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn repokey_blob_lands_in_the_repository_and_opens_with_the_passphrase() {
        let repo = repo();
        let env = FakeEnv::with_vars(&[("BORG_NEW_PASSPHRASE", "secret")]);
        let key = create_key(&repo, KeyType::RepoKeyBlake2, "unused", None, &env).unwrap();
        assert_eq!(key.key_type(), KeyType::RepoKeyBlake2);
        assert!(key.tam_required());
        assert_eq!(key.source(), &KeySource::Repository("/srv/repo".into()));
        let blob = repo.load_key().unwrap();
        let material = crate::crypto::decrypt_key_blob(&blob, "secret")
            .unwrap()
            .unwrap();
        assert_eq!(&material, key.material());
        assert_eq!(material.repository_id, [7; 32]);
        assert_eq!(material.tam_required, Some(true));
        assert!(crate::crypto::decrypt_key_blob(&blob, "wrong")
            .unwrap()
            .is_none());
    }

    #[test]
    fn empty_passphrase_repokey_is_not_logically_encrypted() {
        let env = FakeEnv::with_vars(&[("BORG_NEW_PASSPHRASE", "")]);
        let key = create_key(&repo(), KeyType::RepoKey, "unused", None, &env).unwrap();
        assert!(!key.logically_encrypted());
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "x")]);
        let key = create_key(&repo(), KeyType::RepoKey, "unused", None, &env).unwrap();
        assert!(key.logically_encrypted());
    }

    #[test]
    fn none_mode_stores_nothing() {
        let repo = repo();
        let env = FakeEnv::default();
        let key = create_key(&repo, KeyType::None, "unused", None, &env).unwrap();
        assert_eq!(key.key_type(), KeyType::None);
        assert!(!key.tam_required());
        assert!(repo.load_key().unwrap().is_empty());
    }

    #[test]
    fn related_secrets_are_used_and_checked() {
        let secrets = RelatedSecrets {
            id_key: vec![0x42; 32],
            chunk_seed: -12345,
            key_name: "key file".into(),
        };
        let parsed = RelatedSecrets::from_json(&secrets.to_json().to_string(), "f").unwrap();
        assert_eq!(parsed, secrets);
        let env = FakeEnv::with_vars(&[("BORG_NEW_PASSPHRASE", "pw")]);
        let key = create_key(&repo(), KeyType::Authenticated, "x", Some(&secrets), &env).unwrap();
        assert_eq!(key.material().id_key, vec![0x42; 32]);
        assert_eq!(key.chunk_seed(), -12345);
        let err =
            create_key(&repo(), KeyType::RepoKeyBlake2, "x", Some(&secrets), &env).unwrap_err();
        assert!(err.message.contains("same ID hash"), "{}", err.message);
    }

    #[test]
    fn related_secrets_errors_read_like_borg() {
        let msg = |text: &str| RelatedSecrets::from_json(text, "s.json").unwrap_err();
        let e = msg("{nope");
        assert_eq!(e.kind, ErrorKind::CommandError);
        assert!(e
            .message
            .ends_with("Invalid JSON in related secrets file: s.json"));
        assert!(msg("{}")
            .message
            .ends_with("Unsupported related secrets version: None"));
        assert!(msg(r#"{"version": 2}"#)
            .message
            .ends_with("Unsupported related secrets version: 2"));
        assert!(msg(r#"{"version": 1, "id_key": "zz"}"#)
            .message
            .ends_with("Invalid id_key in related secrets file: s.json"));
        let ok = r#"{"version": 1.0, "id_key": "AB01", "chunk_seed": 5, "key_name": "repokey"}"#;
        let s = RelatedSecrets::from_json(ok, "s.json").unwrap();
        assert_eq!((s.id_key, s.chunk_seed), (vec![0xab, 0x01], 5));
    }
}
