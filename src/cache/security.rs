//! The security dir checks borg performs on every repository access
//! (repository-format.md §8.1): relocation, key type, manifest replay, unknown unencrypted.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::archive::Manifest;
use crate::crypto::{Key, KeyType};
use crate::errors::{Error, ErrorKind, Result};
use crate::output;

/// What borg's cache `config` says about a repository (only the fields the checks use).
#[derive(Debug, Default, Clone)]
pub struct CacheConfigInfo {
    pub key_type: Option<String>,
    pub timestamp: Option<String>,
    pub previous_location: Option<String>,
    /// The cache dir the values were read from: an accepted relocation is recorded in its
    /// config too (as borg does), so the cache does not ask again.
    pub cache_dir: Option<PathBuf>,
}

impl CacheConfigInfo {
    /// Read `[cache]` values of `<cache dir>/config` if the cache exists.
    pub fn read(cache_dir: &Path) -> Option<CacheConfigInfo> {
        let text = fs::read_to_string(cache_dir.join("config")).ok()?;
        let mut info = CacheConfigInfo {
            cache_dir: Some(cache_dir.to_path_buf()),
            ..Default::default()
        };
        let mut in_cache = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                in_cache = t == "[cache]";
                continue;
            }
            if !in_cache {
                continue;
            }
            if let Some((k, v)) = t.split_once('=') {
                let v = v.trim().to_string();
                let v = if v.is_empty() { None } else { Some(v) };
                match k.trim() {
                    "key_type" => info.key_type = v,
                    "timestamp" => info.timestamp = v,
                    "previous_location" => info.previous_location = v,
                    _ => {}
                }
            }
        }
        Some(info)
    }
}

/// borg's `yes(msg, false_msg="Aborting.", invalid_msg="Invalid answer, aborting.", retry=False,
/// env_var_override=…)` used by the security checks.
fn ask_abortable(msg: &str, env_var: &str) -> bool {
    output::yes(&output::Question {
        msg: Some(msg),
        false_msg: Some("Aborting."),
        invalid_msg: Some("Invalid answer, aborting."),
        retry: false,
        env_var_override: Some(env_var),
        ..Default::default()
    })
}

/// The per-repository security dir `<security dir>/<repo id hex>`.
pub struct SecurityManager {
    pub dir: PathBuf,
    location: String,
}

/// Write a small file atomically (temp file + rename), creating the directory (0700).
fn save_file(path: &Path, content: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    Ok(())
}

impl SecurityManager {
    pub fn new(repo_id_hex: &str, location: &str) -> SecurityManager {
        SecurityManager {
            dir: crate::paths::security_dir(repo_id_hex),
            location: location.to_string(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// All three identity files exist.
    pub fn known(&self) -> bool {
        ["key-type", "location", "manifest-timestamp"]
            .iter()
            .all(|f| self.file(f).exists())
    }

    fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.file(name)).ok()
    }

    /// Remember location, key type and manifest timestamp.
    pub fn save(&self, manifest_timestamp: &str, key_type: KeyType) -> Result<()> {
        save_file(&self.file("location"), &self.location)?;
        save_file(&self.file("key-type"), &(key_type as u8).to_string())?;
        save_file(&self.file("manifest-timestamp"), manifest_timestamp)?;
        Ok(())
    }

    /// borg's `assert_secure`: run every check, prompting where borg prompts.
    pub fn assert_secure(
        &self,
        manifest: &Manifest,
        key: &Key,
        cache: Option<&CacheConfigInfo>,
    ) -> Result<()> {
        self.assert_secure_with(manifest, key, cache, true)
            .map(|_| ())
    }

    /// [`assert_secure`](Self::assert_secure) with borg's `warn_if_unencrypted`; returns
    /// whether the user accepted a relocated repository (the location was updated).
    pub fn assert_secure_with(
        &self,
        manifest: &Manifest,
        key: &Key,
        cache: Option<&CacheConfigInfo>,
        warn_if_unencrypted: bool,
    ) -> Result<bool> {
        self.assert_access_unknown(manifest, key, warn_if_unencrypted)?;
        let relocated = self.assert_location_matches(cache)?;
        self.assert_key_type(key, cache)?;
        self.assert_no_manifest_replay(manifest, key, cache)?;
        if !self.known() {
            self.save(&manifest.timestamp, key.key_type())?;
        }
        Ok(relocated)
    }

    /// Ask before using an unknown unencrypted repository (not when `warn_if_unencrypted` is
    /// false, i.e. for `init`), then remember it.
    pub fn assert_access_unknown(
        &self,
        manifest: &Manifest,
        key: &Key,
        warn_if_unencrypted: bool,
    ) -> Result<()> {
        if key.key_type().logically_encrypted() || self.known() {
            return Ok(());
        }
        let msg = "Warning: Attempting to access a previously unknown unencrypted repository!\n\
                   Do you want to continue? [yN] ";
        if warn_if_unencrypted && !ask_abortable(msg, "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK")
        {
            return Err(Error::plain(ErrorKind::CacheInitAborted));
        }
        self.save(&manifest.timestamp, key.key_type())
    }

    /// Remove the security dir (repository deletion).
    pub fn destroy(&self) -> Result<()> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)?;
        }
        Ok(())
    }

    fn assert_location_matches(&self, cache: Option<&CacheConfigInfo>) -> Result<bool> {
        let mut previous = self.read("location");
        if let Some(prev_cache) = cache.and_then(|c| c.previous_location.clone()) {
            if previous.as_deref() != Some(prev_cache.as_str()) {
                previous = Some(prev_cache);
            }
        }
        let Some(previous) = previous else {
            return Ok(false);
        };
        if previous.is_empty() || previous == self.location {
            return Ok(false);
        }
        let msg = format!(
            "Warning: The repository at location {} was previously located at {}\nDo you want to continue? [yN] ",
            self.location, previous
        );
        if !ask_abortable(&msg, "BORG_RELOCATED_REPO_ACCESS_IS_OK") {
            return Err(Error::plain(ErrorKind::CacheRepositoryAccessAborted));
        }
        save_file(&self.file("location"), &self.location)?;
        if let Some(dir) = cache.and_then(|c| c.cache_dir.as_deref()) {
            self.record_location_in_cache(dir);
        }
        Ok(true)
    }

    /// Store the accepted location as the cache config's `previous_location` (under the cache
    /// lock; skipped if the cache is busy or unreadable — it would only ask again).
    fn record_location_in_cache(&self, cache_dir: &Path) {
        let lock = crate::repository::lock::Lock::new(&cache_dir.join("lock"), true, Some(1.0));
        let Ok(_lock) = lock.acquire() else {
            return;
        };
        if let Ok(config) = super::config::CacheConfig::load(cache_dir, &self.location) {
            let _ = config.save_plain();
        }
    }

    fn assert_key_type(&self, key: &Key, cache: Option<&CacheConfigInfo>) -> Result<()> {
        let ours = (key.key_type() as u8).to_string();
        if let Some(kt) = cache.and_then(|c| c.key_type.as_ref()) {
            if *kt != ours {
                return Err(Error::plain(ErrorKind::CacheEncryptionMethodMismatch));
            }
        }
        if self.known() && self.read("key-type").as_deref() != Some(ours.as_str()) {
            return Err(Error::plain(ErrorKind::CacheEncryptionMethodMismatch));
        }
        Ok(())
    }

    fn assert_no_manifest_replay(
        &self,
        manifest: &Manifest,
        key: &Key,
        cache: Option<&CacheConfigInfo>,
    ) -> Result<()> {
        let mut ts = self.read("manifest-timestamp").unwrap_or_default();
        if let Some(cts) = cache.and_then(|c| c.timestamp.clone()) {
            if cts > ts {
                ts = cts;
            }
        }
        if !ts.is_empty() && ts.as_str() > manifest.timestamp.as_str() {
            return Err(Error::plain(if key.key_type() == KeyType::None {
                ErrorKind::CacheRepositoryIDNotUnique
            } else {
                ErrorKind::CacheRepositoryReplay
            }));
        }
        Ok(())
    }
}
