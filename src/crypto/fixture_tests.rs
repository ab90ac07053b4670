//! End-to-end checks against the repositories written by real borg 1.2.4
//! (`$RBORG_FIXTURES/repos/<mode>`). Reads the fixture files in place, never writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rmpv::Value;

use super::key::{blocks_needed, AES_OVERHEAD};
use super::open::open_key_with;
use super::passphrase::tests::FakeEnv;
use super::KeyType;
use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::ValueExt;
use crate::repository::{ObjectId, Repository, MANIFEST_ID};

const PASSPHRASE: &str = "fixture-passphrase";
const MODES: [&str; 7] = [
    "none",
    "authenticated",
    "authenticated-blake2",
    "repokey",
    "keyfile",
    "repokey-blake2",
    "keyfile-blake2",
];

fn fixtures_dir() -> Option<PathBuf> {
    crate::testutil::fixtures_dir()
}

/// The live objects of a repository, replayed from its segment files (§3.2): the last PUT
/// of a key wins, a later DELETE removes it.
fn read_objects(repo: &Path) -> HashMap<ObjectId, Vec<u8>> {
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    for dir in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            if let Ok(n) = path.file_name().unwrap().to_string_lossy().parse::<u64>() {
                segments.push((n, path));
            }
        }
    }
    segments.sort();
    let mut objects = HashMap::new();
    for (_, path) in segments {
        let data = std::fs::read(&path).unwrap();
        if data.is_empty() {
            continue;
        }
        assert_eq!(&data[..8], b"BORG_SEG");
        let mut pos = 8;
        while pos < data.len() {
            let crc = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap());
            let size = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
            assert_eq!(crc32fast::hash(&data[pos + 4..pos + size]), crc);
            let tag = data[pos + 8];
            if tag == 0 || tag == 1 {
                let key: ObjectId = data[pos + 9..pos + 41].try_into().unwrap();
                if tag == 0 {
                    objects.insert(key, data[pos + 41..pos + size].to_vec());
                } else {
                    objects.remove(&key);
                }
            }
            pos += size;
        }
    }
    objects
}

/// `id` and `key` of the repository config (`key` may continue on TAB-indented lines).
fn read_config(repo: &Path) -> (ObjectId, Vec<u8>) {
    let text = std::fs::read_to_string(repo.join("config")).unwrap();
    let mut id = None;
    let mut key = String::new();
    let mut in_key = false;
    for line in text.lines() {
        if in_key && (line.starts_with('\t') || line.starts_with(' ')) {
            key.push_str(line.trim());
            key.push('\n');
            continue;
        }
        in_key = false;
        if let Some(v) = line.strip_prefix("id = ") {
            id = Some(hex::decode(v.trim()).unwrap().try_into().unwrap());
        } else if let Some(v) = line.strip_prefix("key = ") {
            key.push_str(v.trim());
            key.push('\n');
            in_key = true;
        }
    }
    (id.unwrap(), key.into_bytes())
}

struct FixtureRepo {
    id: ObjectId,
    location: String,
    key: Vec<u8>,
    objects: HashMap<ObjectId, Vec<u8>>,
}

impl Repository for FixtureRepo {
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
    fn list(&self, limit: usize, _marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        Ok(self.objects.keys().take(limit).copied().collect())
    }
    fn load_key(&self) -> Result<Vec<u8>> {
        Ok(self.key.clone())
    }
    fn append_only(&self) -> bool {
        false
    }
}

fn load_fixture(fixtures: &Path, mode: &str) -> FixtureRepo {
    let path = fixtures.join("repos").join(mode);
    let (id, key) = read_config(&path);
    FixtureRepo {
        id,
        location: path.display().to_string(),
        key,
        objects: read_objects(&path),
    }
}

fn env_for(fixtures: &Path, passphrase: &str) -> FakeEnv {
    let keys = fixtures.join("keys").display().to_string();
    FakeEnv::with_vars(&[("BORG_PASSPHRASE", passphrase), ("BORG_KEYS_DIR", &keys)])
}

fn archive_id(manifest: &Value, name: &str) -> ObjectId {
    let archives = manifest.get("archives").expect("archives");
    let entry = archives
        .as_entries()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_bytes() == Some(name.as_bytes()))
        .unwrap_or_else(|| panic!("archive {name} missing"))
        .1
        .clone();
    entry
        .get("id")
        .unwrap()
        .as_bytes()
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn fixture_keys_open_and_every_object_verifies() {
    let Some(fixtures) = fixtures_dir() else {
        return;
    };
    for mode in MODES {
        let repo = load_fixture(&fixtures, mode);
        let manifest_stored = repo.get(&MANIFEST_ID).unwrap();
        let key = open_key_with(&repo, &manifest_stored, &env_for(&fixtures, PASSPHRASE))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            key.key_type(),
            KeyType::from_mode_name(mode).unwrap(),
            "{mode}"
        );
        assert_eq!(key.repository_id(), repo.id);
        if key.key_type().is_keyfile() {
            let name = key
                .keyfile_path()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert_eq!(name, format!("{mode}.key"));
        }

        // Manifest: decrypt, TAM-verify, archives a1 and a2.
        let plain = key.decrypt(None, &manifest_stored).unwrap();
        let (manifest, verified) = key.unpack_and_verify_manifest(&plain, false).unwrap();
        assert!(verified, "{mode}: manifest TAM");
        assert!(manifest.get("tam").is_none());
        let a1 = archive_id(&manifest, "a1");
        archive_id(&manifest, "a2");

        // Archive a1: fetched by id, id-checked, archive TAM verified.
        let stored = repo.get(&a1).unwrap();
        let archive_plain = key.decrypt(Some(&a1), &stored).unwrap();
        let (archive, verified, salt) = key
            .unpack_and_verify_archive(&archive_plain, false)
            .unwrap();
        assert!(verified, "{mode}: archive TAM");
        assert_eq!(salt.map(|s| s.len()), Some(64));
        assert_eq!(
            archive.get("name").and_then(|n| n.as_bytes()),
            Some(&b"a1"[..])
        );

        // Every other object decrypts and its id matches its content.
        let mut ranges = Vec::new();
        for (id, stored) in &repo.objects {
            if *id == MANIFEST_ID {
                continue;
            }
            let plain = key
                .decrypt(Some(id), stored)
                .unwrap_or_else(|e| panic!("{mode} {}: {e}", hex::encode(id)));
            assert_eq!(key.id_hash(&plain), *id);
            if key.key_type().is_encrypted() {
                let nonce = u64::from_be_bytes(stored[33..41].try_into().unwrap());
                ranges.push((nonce, blocks_needed(stored.len() - AES_OVERHEAD)));
            }
        }
        // No two objects share AES-CTR counters, and all lie below the repo nonce file.
        if key.key_type().is_encrypted() {
            ranges.sort();
            for w in ranges.windows(2) {
                assert!(w[0].0 + w[0].1 <= w[1].0, "{mode}: overlapping counters");
            }
            let nonce_file = fixtures.join("repos").join(mode).join("nonce");
            let reserved = super::read_nonce_file(&nonce_file, "Repository")
                .unwrap()
                .unwrap();
            let last = ranges.last().unwrap();
            assert!(last.0 + last.1 <= reserved);
            assert!(key.start_nonce() <= reserved);
        }
    }
}

#[test]
fn fixture_wrong_passphrase_is_refused() {
    let Some(fixtures) = fixtures_dir() else {
        return;
    };
    for mode in MODES.iter().filter(|m| **m != "none") {
        let repo = load_fixture(&fixtures, mode);
        let manifest_stored = repo.get(&MANIFEST_ID).unwrap();
        let err = open_key_with(&repo, &manifest_stored, &env_for(&fixtures, "wrong")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::PassphraseWrong, "{mode}");
        // Without any passphrase source: the empty passphrase fails, then the prompt hits EOF.
        // (One repokey and one keyfile mode suffice; PBKDF2 is slow in debug builds.)
        if !matches!(*mode, "repokey" | "keyfile-blake2") {
            continue;
        }
        let keys = fixtures.join("keys").display().to_string();
        let env = FakeEnv::with_vars(&[("BORG_KEYS_DIR", &keys)]);
        let err = open_key_with(&repo, &manifest_stored, &env).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoPassphraseFailure, "{mode}");
        let prompt = env.prompts.borrow()[0].clone();
        if mode.starts_with("keyfile") {
            assert!(prompt.ends_with(&format!("{mode}.key: ")), "{prompt}");
        } else {
            assert_eq!(
                prompt,
                format!("Enter passphrase for key {}: ", repo.location)
            );
        }
    }
}

#[test]
fn fixture_keyfile_missing_gives_borg_error() {
    let Some(fixtures) = fixtures_dir() else {
        return;
    };
    let repo = load_fixture(&fixtures, "keyfile");
    let manifest_stored = repo.get(&MANIFEST_ID).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", PASSPHRASE), ("BORG_KEYS_DIR", &dir)]);
    let err = open_key_with(&repo, &manifest_stored, &env).unwrap_err();
    assert_eq!(err.kind, ErrorKind::KeyfileNotFoundError);
    assert_eq!(
        err.message,
        format!(
            "No key file for repository {} found in {dir}.",
            repo.location
        )
    );
    // BORG_KEY_FILE pointing at the other repository's key: mismatch.
    let other = fixtures
        .join("keys")
        .join("keyfile-blake2.key")
        .display()
        .to_string();
    let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", PASSPHRASE), ("BORG_KEY_FILE", &other)]);
    assert_eq!(
        open_key_with(&repo, &manifest_stored, &env)
            .unwrap_err()
            .kind,
        ErrorKind::KeyfileMismatchError
    );
}
