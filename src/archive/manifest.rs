//! The manifest: the repository's list of archives (repository-format.md §7.1).

use chrono::{DateTime, NaiveDateTime, Utc};
use rmpv::Value;

use crate::archive::objects::ObjectWriter;
use crate::crypto::Key;
use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::{self, ValueExt};
use crate::repository::{ObjectId, Repository, MANIFEST_ID};

/// borg's timestamp format in metadata: UTC, naive, 6 fractional digits.
pub const ISO_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// One entry of the manifest's archive map.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveInfo {
    /// Raw name bytes (surrogate-escaped UTF-8 in borg).
    pub name: Vec<u8>,
    pub id: ObjectId,
    /// Start time of the archive (UTC).
    pub ts: DateTime<Utc>,
}

impl ArchiveInfo {
    /// The name as text, undecodable bytes shown as `?` (borg's display rule).
    pub fn name_lossy(&self) -> String {
        crate::archive::display_bytes(&self.name)
    }
}

/// Operations a repository's feature flags can lock out (borg's Manifest.Operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Check,
    Write,
    Delete,
}

impl Operation {
    fn flag_name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Check => "check",
            Operation::Write => "write",
            Operation::Delete => "delete",
        }
    }
}

/// The decoded manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Archives in manifest (map) order.
    pub archives: Vec<ArchiveInfo>,
    /// Free-form repository config (`tam_required`, `feature_flags`, …), kept verbatim.
    pub config: Value,
    /// Raw `timestamp` text.
    pub timestamp: String,
    pub item_keys: Vec<Vec<u8>>,
    /// `id_hash` of the manifest plaintext (what caches compare).
    pub id: ObjectId,
    pub tam_verified: bool,
}

/// Parse borg's metadata timestamp (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, UTC).
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    let parsed = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| Error::integrity(format!("invalid timestamp {text:?}")))?;
    Ok(parsed.and_utc())
}

/// Format a UTC time as borg writes it into metadata.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.naive_utc().format(ISO_FORMAT).to_string()
}

impl Manifest {
    /// Fetch, decrypt and authenticate the manifest, then check the feature flags for `ops`.
    pub fn load(repo: &dyn Repository, key: &Key, ops: &[Operation]) -> Result<Manifest> {
        let stored = Self::fetch(repo)?;
        Self::decode(repo, key, &stored, ops)
    }

    /// The stored manifest object (`NoManifestError` when absent).
    pub fn fetch(repo: &dyn Repository) -> Result<Vec<u8>> {
        match repo.get(&MANIFEST_ID) {
            Ok(data) => Ok(data),
            Err(e) if e.is(ErrorKind::RepositoryObjectNotFound) => {
                Err(Error::plain(ErrorKind::NoManifestError))
            }
            Err(e) => Err(e),
        }
    }

    /// Decode an already fetched manifest object.
    pub fn decode(
        repo: &dyn Repository,
        key: &Key,
        stored: &[u8],
        ops: &[Operation],
    ) -> Result<Manifest> {
        Self::decode_with(repo, key, stored, ops, false)
    }

    /// [`decode`](Self::decode); `force_tam_not_required` accepts a manifest without TAM even
    /// if the key requires one (borg's `Manifest.load(force_tam_not_required=…)`).
    pub fn decode_with(
        repo: &dyn Repository,
        key: &Key,
        stored: &[u8],
        ops: &[Operation],
        force_tam_not_required: bool,
    ) -> Result<Manifest> {
        let plain = key.decrypt(None, stored)?;
        let (map, tam_verified) = key.unpack_and_verify_manifest(&plain, force_tam_not_required)?;
        let version = map.get("version").and_then(|v| v.as_int());
        if !matches!(version, Some(1) | Some(2)) {
            return Err(Error::integrity("Invalid manifest version"));
        }
        let archives = parse_archives(map.get("archives"))?;
        let timestamp = map
            .get("timestamp")
            .and_then(|v| v.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let config = map.get("config").cloned().unwrap_or(Value::Map(Vec::new()));
        let item_keys = map
            .get("item_keys")
            .and_then(|v| v.as_list())
            .map(|l| {
                l.iter()
                    .filter_map(|k| k.as_bytes().map(|b| b.to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let manifest = Manifest {
            archives,
            config,
            timestamp,
            item_keys,
            id: key.id_hash(&plain),
            tam_verified,
        };
        if tam_verified {
            manifest.sync_tam_required_file(repo);
        }
        manifest.check_repository_compatibility(ops)?;
        Ok(manifest)
    }

    /// A verified manifest tells whether TAM is required; borg mirrors that in the security dir.
    fn sync_tam_required_file(&self, repo: &dyn Repository) {
        let required = self
            .config
            .get("tam_required")
            .and_then(|v| v.as_boolean())
            .unwrap_or(false);
        let dir = crate::paths::security_dir(&hex::encode(repo.id()));
        let file = dir.join("tam_required");
        let present = file.exists();
        if required && !present {
            if std::fs::create_dir_all(&dir).is_ok() {
                let _ = std::fs::File::create(&file);
            }
        } else if !required && present {
            let _ = std::fs::remove_file(&file);
        }
    }

    /// Refuse operations whose mandatory feature list is non-empty (borg knows no features).
    pub fn check_repository_compatibility(&self, ops: &[Operation]) -> Result<()> {
        let Some(flags) = self.config.get("feature_flags") else {
            return Ok(());
        };
        for op in ops {
            let Some(req) = flags.get(op.flag_name()) else {
                continue;
            };
            if let Some(mandatory) = req.get("mandatory").and_then(|m| m.as_list()) {
                if !mandatory.is_empty() {
                    let names: Vec<String> = mandatory
                        .iter()
                        .filter_map(|f| f.as_bytes())
                        .map(|b| format!("'{}'", String::from_utf8_lossy(b)))
                        .collect();
                    return Err(Error::new(
                        ErrorKind::MandatoryFeatureUnsupported,
                        [format!("{{{}}}", names.join(", "))],
                    ));
                }
            }
        }
        Ok(())
    }

    /// The manifest timestamp as a time (UTC).
    pub fn last_modified(&self) -> Result<DateTime<Utc>> {
        parse_timestamp(&self.timestamp)
    }

    /// Store this manifest (borg's `Manifest.write`): a strictly newer timestamp, the archives
    /// map and config with sorted keys, TAM-authenticated, under the all-zero id. Updates
    /// `id`, `timestamp` and `tam_verified`.
    pub fn write(&mut self, writer: &ObjectWriter) -> Result<()> {
        let key = &writer.key;
        let now = Utc::now();
        self.timestamp = match self.last_modified() {
            Ok(prev) => {
                let next = prev + chrono::Duration::microseconds(1);
                format_timestamp(&next.max(now))
            }
            Err(_) => format_timestamp(&now),
        };
        let mut config = match std::mem::replace(&mut self.config, Value::Nil) {
            Value::Map(entries) => entries,
            _ => Vec::new(),
        };
        if key.tam_required() {
            config.retain(|(k, _)| k.as_bytes() != Some(b"tam_required"));
            config.push((Value::from("tam_required"), Value::Boolean(true)));
        }
        self.config = msgpack::sorted_map(config);
        let mut archives = self.archives.clone();
        archives.sort_by(|a, b| a.name.cmp(&b.name));
        let archives_map: Vec<(Value, Value)> = archives
            .iter()
            .map(|a| {
                let entry = msgpack::sorted_map(vec![
                    (Value::from("id"), msgpack::bytes(a.id.to_vec())),
                    (
                        Value::from("time"),
                        msgpack::bytes(format_timestamp(&a.ts).into_bytes()),
                    ),
                ]);
                (msgpack::bytes(a.name.clone()), entry)
            })
            .collect();
        let mut item_keys: Vec<Vec<u8>> = crate::archive::item::ITEM_KEYS
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        for k in &self.item_keys {
            if !item_keys.contains(k) {
                item_keys.push(k.clone());
            }
        }
        item_keys.sort();
        let map = msgpack::sorted_map(vec![
            (Value::from("archives"), Value::Map(archives_map)),
            (Value::from("config"), self.config.clone()),
            (
                Value::from("item_keys"),
                Value::Array(
                    item_keys
                        .iter()
                        .map(|k| msgpack::bytes(k.clone()))
                        .collect(),
                ),
            ),
            (
                Value::from("timestamp"),
                msgpack::bytes(self.timestamp.clone().into_bytes()),
            ),
            (Value::from("version"), Value::from(1)),
        ]);
        let packed = key.pack_and_authenticate_metadata(map, b"manifest", None);
        let stored = writer.encrypt(&packed)?;
        writer.repo.put(&MANIFEST_ID, &stored)?;
        self.id = key.id_hash(&packed);
        self.tam_verified = true;
        Ok(())
    }

    /// A manifest for a new, empty repository (what `init` writes).
    pub fn empty() -> Manifest {
        Manifest {
            archives: Vec::new(),
            config: Value::Map(Vec::new()),
            timestamp: String::new(),
            item_keys: Vec::new(),
            id: [0; 32],
            tam_verified: false,
        }
    }

    /// Add (or replace) an archive entry.
    pub fn set_archive(&mut self, name: &[u8], id: ObjectId, ts: DateTime<Utc>) {
        self.archives.retain(|a| a.name != name);
        self.archives.push(ArchiveInfo {
            name: name.to_vec(),
            id,
            ts,
        });
    }

    /// Remove an archive entry; false if there was none.
    pub fn remove_archive(&mut self, name: &[u8]) -> bool {
        let before = self.archives.len();
        self.archives.retain(|a| a.name != name);
        self.archives.len() != before
    }

    pub fn lookup(&self, name: &[u8]) -> Option<&ArchiveInfo> {
        self.archives.iter().find(|a| a.name == name)
    }

    /// The archive of that name, or `Archive.DoesNotExist`.
    pub fn get_archive(&self, name: &str) -> Result<&ArchiveInfo> {
        self.lookup(name.as_bytes())
            .ok_or_else(|| Error::new(ErrorKind::ArchiveDoesNotExist, [name]))
    }
}

fn parse_archives(v: Option<&Value>) -> Result<Vec<ArchiveInfo>> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let entries = v
        .as_entries()
        .ok_or_else(|| Error::integrity("manifest archives is not a map"))?;
    let mut out = Vec::with_capacity(entries.len());
    for (k, meta) in entries {
        let name = k
            .as_bytes()
            .ok_or_else(|| Error::integrity("archive name is not a string"))?;
        let id = meta
            .get("id")
            .and_then(|v| v.as_bytes())
            .and_then(|b| <ObjectId>::try_from(b).ok())
            .ok_or_else(|| Error::integrity("archive entry without a valid id"))?;
        let time = meta
            .get("time")
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| Error::integrity("archive entry without time"))?;
        let ts = parse_timestamp(&String::from_utf8_lossy(time))?;
        out.push(ArchiveInfo {
            name: name.to_vec(),
            id,
            ts,
        });
    }
    Ok(out)
}

/// Archive selection of `-a/--glob-archives`, `-P/--prefix`, `--sort-by`, `--first`, `--last`,
/// `--consider-checkpoints` (cli.md §7).
#[derive(Debug, Clone, Default)]
pub struct ArchiveFilter {
    pub glob: Option<String>,
    /// Comma list of `timestamp`, `name`, `archive`, `id`; empty means `timestamp`.
    pub sort_by: String,
    pub first: Option<usize>,
    pub last: Option<usize>,
    pub consider_checkpoints: bool,
}

impl ArchiveFilter {
    /// Whether any option that selects archives was given (borg's info/check switch on it).
    pub fn is_active(&self) -> bool {
        self.glob.is_some() || self.first.is_some() || self.last.is_some()
    }

    /// Apply: glob → checkpoints → successive stable sorts → first/last.
    pub fn apply<'a>(&self, archives: &'a [ArchiveInfo]) -> Result<Vec<&'a ArchiveInfo>> {
        let matcher = match &self.glob {
            Some(g) => Some(crate::patterns::archive_glob_regex(g)?),
            None => None,
        };
        let mut list: Vec<&ArchiveInfo> = archives
            .iter()
            .filter(|a| matcher.as_ref().is_none_or(|re| re.is_match(&a.name)))
            .filter(|a| self.consider_checkpoints || !contains(&a.name, b".checkpoint"))
            .collect();
        let sort_by = if self.sort_by.is_empty() {
            "timestamp"
        } else {
            &self.sort_by
        };
        let keys: Vec<&str> = sort_by.split(',').collect();
        for key in keys.iter().rev() {
            match *key {
                "timestamp" => list.sort_by_key(|a| a.ts),
                "name" | "archive" => list.sort_by(|a, b| a.name.cmp(&b.name)),
                "id" => list.sort_by_key(|a| a.id),
                other => return Err(Error::command(format!("Invalid sort key: {other}"))),
            }
        }
        if let Some(n) = self.first {
            list.truncate(n);
        } else if let Some(n) = self.last {
            let skip = list.len().saturating_sub(n);
            list.drain(..skip);
        }
        Ok(list)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
