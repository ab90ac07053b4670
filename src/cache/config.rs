//! The cache `config` file (repository-format.md §8.2): an INI file in the form Python's
//! `configparser` reads and writes, so borg and rborg can update each other's cache config.
//!
//! Updating keeps the order of sections and keys (configparser rewrites the parsed state), so
//! keys written by other borg versions survive.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};
use crate::output;
use crate::repository::ObjectId;

/// An INI document: sections with ordered `key = value` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Ini {
    /// Parse configparser syntax: `[section]`, `key = value` or `key: value` (keys are
    /// lower-cased, values stripped), `#`/`;` comment lines, indented continuation lines.
    pub fn parse(text: &str) -> Result<Ini> {
        let mut ini = Ini::default();
        let mut last_key: Option<(usize, usize)> = None;
        for (n, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indented = raw.starts_with([' ', '\t']);
            if indented {
                if let Some((s, k)) = last_key {
                    let value = &mut ini.sections[s].1[k].1;
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
            }
            if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                if ini.section_index(name).is_some() {
                    return Err(bad_ini(n, "duplicate section"));
                }
                ini.sections.push((name.to_string(), Vec::new()));
                last_key = None;
                continue;
            }
            let Some(at) = trimmed.find(['=', ':']) else {
                return Err(bad_ini(n, "no '=' in line"));
            };
            let key = trimmed[..at].trim().to_lowercase();
            let value = trimmed[at + 1..].trim().to_string();
            let Some(s) = ini.sections.len().checked_sub(1) else {
                return Err(bad_ini(n, "no section header"));
            };
            let entries = &mut ini.sections[s].1;
            match entries.iter().position(|(k, _)| *k == key) {
                Some(_) => return Err(bad_ini(n, "duplicate key")),
                None => entries.push((key, value)),
            }
            last_key = Some((s, entries.len() - 1));
        }
        Ok(ini)
    }

    /// The text configparser writes: `[section]`, `key = value` lines, a blank line after
    /// each section.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, entries) in &self.sections {
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k} = {}\n", v.replace('\n', "\n\t")));
            }
            out.push('\n');
        }
        out
    }

    fn section_index(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|(n, _)| n == name)
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.section_index(name).is_some()
    }

    pub fn add_section(&mut self, name: &str) {
        if !self.has_section(name) {
            self.sections.push((name.to_string(), Vec::new()));
        }
    }

    /// The entries of a section in order.
    pub fn items(&self, section: &str) -> Option<&[(String, String)]> {
        self.section_index(section)
            .map(|i| self.sections[i].1.as_slice())
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.items(section)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set a value (in place, or appended to the section, which is created if needed).
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        self.add_section(section);
        let i = self.section_index(section).unwrap_or(0);
        let entries = &mut self.sections[i].1;
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => entries.push((key.to_string(), value.to_string())),
        }
    }
}

fn bad_ini(line: usize, why: &str) -> Error {
    Error::exception(format!(
        "cache config: {why} (line {}) - not a valid configparser file",
        line + 1
    ))
}

/// Write a file atomically: temporary file in the same directory, fsync, rename.
pub fn save_file(path: &Path, content: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// `a,b,c` → set (borg's `parse_stringified_list`; empty items are dropped).
fn parse_list(text: &str) -> BTreeSet<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Why a cache config could not be loaded.
#[derive(Debug)]
pub enum ConfigLoadError {
    /// No config file (or unreadable): the cache must be recreated.
    Missing,
    /// Unparseable or not a borg cache config: recreated as well (with a warning).
    Invalid(String),
    /// A cache of another version: refused, as borg does.
    Incompatible(Error),
}

/// borg's `CacheConfig`: the parsed `config` plus the values the cache uses.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    path: PathBuf,
    ini: Ini,
    /// `[cache] manifest` (None when empty or not hex).
    pub manifest_id: Option<ObjectId>,
    pub timestamp: Option<String>,
    pub key_type: Option<String>,
    pub previous_location: Option<String>,
    pub ignored_features: BTreeSet<String>,
    pub mandatory_features: BTreeSet<String>,
    /// File name → digest JSON (`[integrity]` without its `manifest` key), in stored order.
    pub integrity: Vec<(String, String)>,
}

impl CacheConfig {
    /// The config of a new cache (borg's `CacheConfig.create`).
    pub fn create(cache_dir: &Path, repo_id_hex: &str) -> Result<()> {
        let mut ini = Ini::default();
        ini.set("cache", "version", "1");
        ini.set("cache", "repository", repo_id_hex);
        ini.set("cache", "manifest", "");
        ini.set("integrity", "manifest", "");
        save_file(&cache_dir.join("config"), ini.to_text().as_bytes())
    }

    /// Load `<cache dir>/config`, remembering `current_location` as the next
    /// `previous_location` (borg's `CacheConfig.load`).
    pub fn load(
        cache_dir: &Path,
        current_location: &str,
    ) -> std::result::Result<CacheConfig, ConfigLoadError> {
        let path = cache_dir.join("config");
        let text = match fs::read(&path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(_) => return Err(ConfigLoadError::Missing),
        };
        let ini = Ini::parse(&text).map_err(|e| ConfigLoadError::Invalid(e.message))?;
        let shown = path.display();
        if !ini.has_section("cache") {
            return Err(ConfigLoadError::Invalid(format!(
                "{shown} does not look like a Borg cache."
            )));
        }
        match ini.get("cache", "version").map(|v| v.parse::<i64>()) {
            Some(Ok(1)) => {}
            Some(Ok(v)) => {
                return Err(ConfigLoadError::Incompatible(Error::exception(format!(
                    "{shown} has unexpected cache version {v} (wanted: 1)."
                ))))
            }
            _ => {
                return Err(ConfigLoadError::Invalid(format!(
                    "{shown} has no valid cache version"
                )))
            }
        }
        let manifest_text = ini.get("cache", "manifest").unwrap_or("").to_string();
        let manifest_id = hex::decode(&manifest_text)
            .ok()
            .and_then(|b| ObjectId::try_from(b.as_slice()).ok());
        let nonempty = |k: &str| {
            ini.get("cache", k)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let integrity = match ini.items("integrity") {
            None => {
                output::debug(
                    "Cache integrity: No integrity data found (files, chunks). Cache is from old version.",
                );
                Vec::new()
            }
            Some(items) => {
                let stamped = items
                    .iter()
                    .find(|(k, _)| k == "manifest")
                    .map(|(_, v)| v.as_str());
                if stamped == Some(manifest_text.as_str()) {
                    items
                        .iter()
                        .filter(|(k, _)| k != "manifest")
                        .cloned()
                        .collect()
                } else {
                    // another borg version rewrote [cache] without updating [integrity]
                    output::warning(
                        "Cache integrity data not available: old Borg version modified the cache.",
                    );
                    Vec::new()
                }
            }
        };
        let mut config = CacheConfig {
            path,
            timestamp: ini.get("cache", "timestamp").map(str::to_string),
            key_type: ini.get("cache", "key_type").map(str::to_string),
            previous_location: nonempty("previous_location"),
            ignored_features: parse_list(ini.get("cache", "ignored_features").unwrap_or("")),
            mandatory_features: parse_list(ini.get("cache", "mandatory_features").unwrap_or("")),
            manifest_id,
            integrity,
            ini,
        };
        config
            .ini
            .set("cache", "previous_location", current_location);
        Ok(config)
    }

    /// Digest JSON recorded for a cache file.
    pub fn integrity_of(&self, file: &str) -> Option<&str> {
        self.integrity
            .iter()
            .find(|(k, _)| k == file)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_integrity(&mut self, file: &str, json: String) {
        match self.integrity.iter_mut().find(|(k, _)| k == file) {
            Some(e) => e.1 = json,
            None => self.integrity.push((file.to_string(), json)),
        }
    }

    /// Write the config (borg's `CacheConfig.save`): with a manifest, record it (id, timestamp,
    /// features, integrity digests); with a key type, record that.
    pub fn save(
        &mut self,
        manifest: Option<(&ObjectId, &str)>,
        key_type: Option<u8>,
    ) -> Result<()> {
        if let Some((id, timestamp)) = manifest {
            let id_hex = hex::encode(id);
            self.ini.set("cache", "manifest", &id_hex);
            self.ini.set("cache", "timestamp", timestamp);
            let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
            self.ini
                .set("cache", "ignored_features", &join(&self.ignored_features));
            self.ini.set(
                "cache",
                "mandatory_features",
                &join(&self.mandatory_features),
            );
            self.ini.add_section("integrity");
            for (file, json) in &self.integrity {
                self.ini.set("integrity", file, json);
            }
            self.ini.set("integrity", "manifest", &id_hex);
            self.manifest_id = Some(*id);
            self.timestamp = Some(timestamp.to_string());
        }
        if let Some(kt) = key_type {
            self.ini.set("cache", "key_type", &kt.to_string());
            self.key_type = Some(kt.to_string());
        }
        self.write()
    }

    fn write(&self) -> Result<()> {
        save_file(&self.path, self.ini.to_text().as_bytes())
    }

    /// Forget the manifest and all digests (borg's `wipe_cache` part of the config), then
    /// write the config.
    pub fn wipe(&mut self) -> Result<()> {
        self.manifest_id = None;
        self.ini.set("cache", "manifest", "");
        self.ini.add_section("integrity");
        for (file, json) in &self.integrity {
            self.ini.set("integrity", file, json);
        }
        self.ini.set("integrity", "manifest", "");
        self.ignored_features.clear();
        self.mandatory_features.clear();
        self.write()
    }

    /// Write just the current state (e.g. an accepted relocation: `previous_location`).
    pub fn save_plain(&self) -> Result<()> {
        self.write()
    }

    pub fn ini(&self) -> &Ini {
        &self.ini
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BORG_WRITTEN: &str = "[cache]\nversion = 1\nrepository = ab\nmanifest = 0011\nprevious_location = /old\ntimestamp = 2026-11-21T23:53:05.000000\nignored_features = \nmandatory_features = \nkey_type = 2\n\n[integrity]\nmanifest = 0011\nfiles = {\"algorithm\": \"XXH64\", \"digests\": {\"final\": \"1\"}}\nchunks = {\"algorithm\": \"XXH64\", \"digests\": {\"HashHeader\": \"2\", \"final\": \"3\"}}\n\n";

    #[test]
    fn ini_round_trip_keeps_order_and_format() {
        let ini = Ini::parse(BORG_WRITTEN).unwrap();
        assert_eq!(ini.to_text(), BORG_WRITTEN);
        assert_eq!(ini.get("cache", "key_type"), Some("2"));
        assert_eq!(ini.get("cache", "ignored_features"), Some(""));
        assert!(ini
            .get("integrity", "chunks")
            .unwrap()
            .starts_with("{\"algorithm\""));
    }

    #[test]
    fn ini_syntax_variants() {
        let ini = Ini::parse("# c\n[A]\nKey: v1\nk2=v2\n  more\n; x\n[B]\nempty =\n").unwrap();
        assert_eq!(ini.get("A", "key"), Some("v1"));
        assert_eq!(ini.get("A", "k2"), Some("v2\nmore"));
        assert_eq!(ini.get("B", "empty"), Some(""));
        assert!(Ini::parse("k = v\n").is_err());
        assert!(Ini::parse("[a]\nnovalue\n").is_err());
        assert!(Ini::parse("[a]\nk=1\nk=2\n").is_err());
    }

    #[test]
    fn create_load_save_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        CacheConfig::create(dir.path(), "abcd").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("config")).unwrap(),
            "[cache]\nversion = 1\nrepository = abcd\nmanifest = \n\n[integrity]\nmanifest = \n\n"
        );
        let mut c = CacheConfig::load(dir.path(), "/repo").unwrap();
        assert_eq!(c.manifest_id, None);
        assert!(c.integrity.is_empty());
        c.set_integrity("files", "F".into());
        c.set_integrity("chunks", "C".into());
        let id = [7u8; 32];
        c.save(Some((&id, "2026-01-01T00:00:00.000000")), Some(3))
            .unwrap();
        let text = fs::read_to_string(dir.path().join("config")).unwrap();
        let hexid = hex::encode(id);
        assert_eq!(
            text,
            format!(
                "[cache]\nversion = 1\nrepository = abcd\nmanifest = {hexid}\nprevious_location = /repo\n\
                 timestamp = 2026-01-01T00:00:00.000000\nignored_features = \nmandatory_features = \nkey_type = 3\n\n\
                 [integrity]\nmanifest = {hexid}\nfiles = F\nchunks = C\n\n"
            )
        );
        let back = CacheConfig::load(dir.path(), "/elsewhere").unwrap();
        assert_eq!(back.manifest_id, Some(id));
        assert_eq!(back.previous_location.as_deref(), Some("/repo"));
        assert_eq!(back.key_type.as_deref(), Some("3"));
        assert_eq!(back.integrity_of("chunks"), Some("C"));
        assert_eq!(back.integrity_of("files"), Some("F"));
    }

    #[test]
    fn integrity_of_another_manifest_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let text = BORG_WRITTEN.replace(
            "[integrity]\nmanifest = 0011",
            "[integrity]\nmanifest = 0022",
        );
        fs::write(dir.path().join("config"), text).unwrap();
        let c = CacheConfig::load(dir.path(), "/x").unwrap();
        assert!(c.integrity.is_empty());
        // "0011" is not a 32-byte id
        assert_eq!(c.manifest_id, None);
    }

    #[test]
    fn bad_configs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            CacheConfig::load(dir.path(), "/x"),
            Err(ConfigLoadError::Missing)
        ));
        fs::write(dir.path().join("config"), "[other]\na = 1\n").unwrap();
        assert!(matches!(
            CacheConfig::load(dir.path(), "/x"),
            Err(ConfigLoadError::Invalid(_))
        ));
        fs::write(dir.path().join("config"), "garbage\n").unwrap();
        assert!(matches!(
            CacheConfig::load(dir.path(), "/x"),
            Err(ConfigLoadError::Invalid(_))
        ));
        fs::write(dir.path().join("config"), "[cache]\nversion = 2\n").unwrap();
        assert!(matches!(
            CacheConfig::load(dir.path(), "/x"),
            Err(ConfigLoadError::Incompatible(_))
        ));
    }
}
