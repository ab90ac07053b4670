//! Archive metadata objects and reading an archive's items (repository-format.md §7.2, §7.3).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rmpv::Value;

use crate::archive::item::Item;
use crate::archive::manifest::parse_timestamp;
use crate::archive::objects::ObjectWriter;
use crate::archive::prefetch::{prefetch, Prefetch, DEFAULT_BUDGET};
use crate::crypto::Key;
use crate::errors::{Error, Result};
use crate::msgpack::{self, StreamUnpacker, ValueExt};
use crate::repository::{ObjectId, Repository};

/// The decoded archive metadata object. `raw` keeps the whole map (minus `tam`) so writers
/// can preserve keys they do not know.
#[derive(Debug, Clone)]
pub struct ArchiveMeta {
    pub version: i64,
    pub name: Vec<u8>,
    pub items: Vec<ObjectId>,
    pub cmdline: Vec<Vec<u8>>,
    pub hostname: Vec<u8>,
    pub username: Vec<u8>,
    pub time: String,
    pub time_end: Option<String>,
    pub comment: Vec<u8>,
    pub chunker_params: Option<Value>,
    pub size: Option<u64>,
    pub csize: Option<u64>,
    pub nfiles: Option<u64>,
    pub size_parts: Option<u64>,
    pub csize_parts: Option<u64>,
    pub nfiles_parts: Option<u64>,
    pub recreate_cmdline: Option<Vec<Vec<u8>>>,
    pub cwd: Option<Vec<u8>>,
    pub raw: Value,
}

fn bad(what: &str) -> Error {
    Error::integrity(format!("invalid archive metadata: {what}"))
}

fn text(v: Option<&Value>) -> Vec<u8> {
    v.and_then(|v| v.as_bytes())
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

fn string_list(v: Option<&Value>) -> Vec<Vec<u8>> {
    v.and_then(|v| v.as_list())
        .map(|l| {
            l.iter()
                .filter_map(|a| a.as_bytes().map(|b| b.to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

impl ArchiveMeta {
    pub fn from_value(map: Value) -> Result<ArchiveMeta> {
        let version = map
            .get("version")
            .and_then(|v| v.as_int())
            .ok_or_else(|| bad("version"))?;
        if version != 1 {
            return Err(Error::exception("Unknown archive metadata version"));
        }
        let items = map
            .get("items")
            .and_then(|v| v.as_list())
            .ok_or_else(|| bad("items"))?
            .iter()
            .map(|v| {
                v.as_bytes()
                    .and_then(|b| ObjectId::try_from(b).ok())
                    .ok_or_else(|| bad("item chunk id"))
            })
            .collect::<Result<Vec<_>>>()?;
        let uint = |k: &str| map.get(k).and_then(|v| v.as_uint());
        Ok(ArchiveMeta {
            version,
            name: text(map.get("name")),
            items,
            cmdline: string_list(map.get("cmdline")),
            hostname: text(map.get("hostname")),
            username: text(map.get("username")),
            time: String::from_utf8_lossy(&text(map.get("time"))).into_owned(),
            time_end: map
                .get("time_end")
                .and_then(|v| v.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            comment: text(map.get("comment")),
            chunker_params: map.get("chunker_params").cloned(),
            size: uint("size"),
            csize: uint("csize"),
            nfiles: uint("nfiles"),
            size_parts: uint("size_parts"),
            csize_parts: uint("csize_parts"),
            nfiles_parts: uint("nfiles_parts"),
            recreate_cmdline: map.get("recreate_cmdline").map(|v| string_list(Some(v))),
            cwd: map
                .get("cwd")
                .and_then(|v| v.as_bytes())
                .map(|b| b.to_vec()),
            raw: map,
        })
    }

    /// The map borg stores (sorted keys); keys of `raw` this struct does not model are kept.
    pub fn to_value(&self) -> Value {
        let mut e: Vec<(Value, Value)> = Vec::new();
        let known = [
            "version",
            "name",
            "items",
            "cmdline",
            "hostname",
            "username",
            "time",
            "time_end",
            "comment",
            "chunker_params",
            "size",
            "csize",
            "nfiles",
            "size_parts",
            "csize_parts",
            "nfiles_parts",
            "recreate_cmdline",
            "cwd",
            "tam",
        ];
        if let Some(entries) = self.raw.as_entries() {
            for (k, v) in entries {
                if !k
                    .as_bytes()
                    .is_some_and(|k| known.iter().any(|n| n.as_bytes() == k))
                {
                    e.push((k.clone(), v.clone()));
                }
            }
        }
        let text = |b: &[u8]| msgpack::bytes(b.to_vec());
        let list =
            |l: &[Vec<u8>]| Value::Array(l.iter().map(|a| msgpack::bytes(a.clone())).collect());
        e.push((Value::from("version"), Value::from(self.version)));
        e.push((Value::from("name"), text(&self.name)));
        e.push((
            Value::from("items"),
            Value::Array(
                self.items
                    .iter()
                    .map(|i| msgpack::bytes(i.to_vec()))
                    .collect(),
            ),
        ));
        e.push((Value::from("cmdline"), list(&self.cmdline)));
        e.push((Value::from("hostname"), text(&self.hostname)));
        e.push((Value::from("username"), text(&self.username)));
        e.push((Value::from("time"), text(self.time.as_bytes())));
        if let Some(t) = &self.time_end {
            e.push((Value::from("time_end"), text(t.as_bytes())));
        }
        e.push((Value::from("comment"), text(&self.comment)));
        if let Some(cp) = &self.chunker_params {
            e.push((Value::from("chunker_params"), cp.clone()));
        }
        for (k, v) in [
            ("size", self.size),
            ("csize", self.csize),
            ("nfiles", self.nfiles),
            ("size_parts", self.size_parts),
            ("csize_parts", self.csize_parts),
            ("nfiles_parts", self.nfiles_parts),
        ] {
            if let Some(v) = v {
                e.push((Value::from(k), Value::from(v)));
            }
        }
        if let Some(r) = &self.recreate_cmdline {
            e.push((Value::from("recreate_cmdline"), list(r)));
        }
        if let Some(cwd) = &self.cwd {
            e.push((Value::from("cwd"), text(cwd)));
        }
        msgpack::sorted_map(e)
    }

    /// Store this metadata object with a fresh archive TAM; returns its id and the stored and
    /// plaintext lengths (borg's `set_meta` / archive save).
    pub fn store(&self, writer: &ObjectWriter) -> Result<(ObjectId, usize, usize)> {
        let packed = writer
            .key
            .pack_and_authenticate_metadata(self.to_value(), b"archive", None);
        let (id, stored_len) = writer.put(&packed)?;
        Ok((id, stored_len, packed.len()))
    }

    pub fn start(&self) -> Result<DateTime<Utc>> {
        parse_timestamp(&self.time)
    }

    /// End time; archives without `time_end` use the start time (as borg).
    pub fn end(&self) -> Result<DateTime<Utc>> {
        match &self.time_end {
            Some(t) => parse_timestamp(t),
            None => self.start(),
        }
    }
}

/// An archive opened for reading.
pub struct Archive {
    pub id: ObjectId,
    pub meta: ArchiveMeta,
    pub tam_verified: bool,
    /// Length of the stored metadata object (its csize).
    pub stored_len: usize,
    /// Length of the metadata plaintext.
    pub plain_len: usize,
}

impl Archive {
    /// Load and authenticate the metadata object `id` (borg 1.4: a missing archive TAM is
    /// tolerated, an invalid one is an error unless BORG_WORKAROUNDS allows it).
    pub fn load(repo: &dyn Repository, key: &Key, id: &ObjectId) -> Result<Archive> {
        let stored = repo.get(id)?;
        let plain = key.decrypt(Some(id), &stored)?;
        let (map, tam_verified, _salt) = key.unpack_and_verify_archive(&plain, true)?;
        Ok(Archive {
            id: *id,
            meta: ArchiveMeta::from_value(map)?,
            tam_verified,
            stored_len: stored.len(),
            plain_len: plain.len(),
        })
    }

    /// The archive's items in order, fetched and decoded in the background.
    pub fn items(&self, repo: Arc<dyn Repository>, key: Arc<Key>) -> ItemIter {
        ItemIter::new(repo, key, self.meta.items.clone())
    }
}

/// Streams items out of an archive's item chunks (items may span chunk boundaries).
pub struct ItemIter {
    chunks: Prefetch,
    unpacker: StreamUnpacker,
    failed: bool,
    /// (plaintext length, stored length) of each item-stream chunk consumed so far.
    pub chunk_lengths: Vec<(usize, usize)>,
}

impl ItemIter {
    pub fn new(repo: Arc<dyn Repository>, key: Arc<Key>, ids: Vec<ObjectId>) -> ItemIter {
        let hinted = ids.into_iter().map(|id| (id, 512 * 1024));
        ItemIter {
            chunks: prefetch(repo, key, hinted, DEFAULT_BUDGET / 4),
            unpacker: StreamUnpacker::new(),
            failed: false,
            chunk_lengths: Vec::new(),
        }
    }

    /// The next raw item value (for callers that need unknown keys too).
    pub fn next_value(&mut self) -> Option<Result<Value>> {
        if self.failed {
            return None;
        }
        loop {
            match self.unpacker.next_value() {
                Ok(Some(v)) => return Some(Ok(v)),
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            match self.chunks.next() {
                Some(Ok((data, stored_len))) => {
                    self.chunk_lengths.push((data.len(), stored_len));
                    self.unpacker.feed(&data);
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                None => {
                    if self.unpacker.pending() > 0 {
                        self.failed = true;
                        return Some(Err(Error::integrity("item stream ends inside an item")));
                    }
                    return None;
                }
            }
        }
    }
}

impl Iterator for ItemIter {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Result<Item>> {
        let v = self.next_value()?;
        Some(v.and_then(|v| Item::from_value(&v)))
    }
}

/// Decode one already-decrypted item-stream chunk sequence synchronously (small archives, tests).
pub fn decode_items(stream: &[u8]) -> Result<Vec<Item>> {
    let mut u = StreamUnpacker::new();
    u.feed(stream);
    let mut out = Vec::new();
    while let Some(v) = u.next_value()? {
        out.push(Item::from_value(&v)?);
    }
    if u.pending() > 0 {
        return Err(Error::integrity("item stream ends inside an item"));
    }
    Ok(out)
}
