//! Archive items: one per file system object (repository-format.md §7.4).

use rmpv::Value;

use crate::errors::{Error, Result};
use crate::msgpack::{self, ValueExt};
use crate::repository::ObjectId;

/// A reference to one chunk of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ObjectId,
    /// Uncompressed length.
    pub size: u32,
    /// Stored object length (type byte + MAC + nonce + ciphertext).
    pub csize: u32,
}

/// One archive item. Field names are borg's item keys; absent keys are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    /// Raw path bytes, relative, `/`-separated.
    pub path: Vec<u8>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub user: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
    /// Nanoseconds since the epoch.
    pub mtime: i64,
    pub ctime: Option<i64>,
    pub atime: Option<i64>,
    pub birthtime: Option<i64>,
    pub size: Option<u64>,
    pub chunks: Option<Vec<ChunkRef>>,
    pub chunks_healthy: Option<Vec<ChunkRef>>,
    pub hardlink_master: Option<bool>,
    /// Symlink target, or the master's path for a hardlink slave.
    pub source: Option<Vec<u8>>,
    pub rdev: Option<u64>,
    /// Sorted by name, as borg stores them.
    pub xattrs: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    pub bsdflags: Option<u32>,
    pub acl_access: Option<Vec<u8>>,
    pub acl_default: Option<Vec<u8>>,
    pub acl_extended: Option<Vec<u8>>,
    pub acl_nfs4: Option<Vec<u8>>,
    /// Checkpoint part number (item path ends with `.borg_part_<n>`).
    pub part: Option<u64>,
}

/// Every item key borg 1.x knows (the manifest's `item_keys`), sorted.
pub const ITEM_KEYS: &[&str] = &[
    "acl_access",
    "acl_default",
    "acl_extended",
    "acl_nfs4",
    "atime",
    "birthtime",
    "bsdflags",
    "chunks",
    "chunks_healthy",
    "ctime",
    "gid",
    "group",
    "hardlink_master",
    "mode",
    "mtime",
    "part",
    "path",
    "rdev",
    "size",
    "source",
    "uid",
    "user",
    "xattrs",
];

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFSOCK: u32 = 0o140000;

impl Item {
    pub fn file_type(&self) -> u32 {
        self.mode.unwrap_or(0) & S_IFMT
    }
    pub fn is_regular(&self) -> bool {
        self.file_type() == S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }
    pub fn is_fifo(&self) -> bool {
        self.file_type() == S_IFIFO
    }
    pub fn is_chr(&self) -> bool {
        self.file_type() == S_IFCHR
    }
    pub fn is_blk(&self) -> bool {
        self.file_type() == S_IFBLK
    }

    /// A hardlink slave: a non-symlink carrying `source` (the master's path) and no chunks.
    pub fn is_hardlink_slave(&self) -> bool {
        !self.is_symlink() && self.source.is_some()
    }

    /// Sum of chunk sizes (borg's `get_size`); hardlink slaves and chunkless items give 0.
    pub fn content_size(&self) -> u64 {
        match (&self.size, &self.chunks) {
            (Some(s), _) => *s,
            (None, Some(c)) => c.iter().map(|c| c.size as u64).sum(),
            _ => 0,
        }
    }

    /// False when `check --repair` replaced chunks by zero chunks (`chunks_healthy` present).
    pub fn healthy(&self) -> bool {
        self.chunks_healthy.is_none()
    }

    /// Decode an item map; unknown keys are ignored, `path` and `mtime` are required.
    pub fn from_value(v: &Value) -> Result<Item> {
        let entries = v.as_entries().ok_or_else(|| bad("item is not a map"))?;
        let mut item = Item::default();
        let mut have_path = false;
        for (k, val) in entries {
            let key = k
                .as_bytes()
                .ok_or_else(|| bad("item key is not a string"))?;
            match key {
                b"path" => {
                    item.path = bytes_of(val, "path")?;
                    have_path = true;
                }
                b"mode" => item.mode = Some(uint_of(val, "mode")? as u32),
                b"uid" => item.uid = Some(uint_of(val, "uid")? as u32),
                b"gid" => item.gid = Some(uint_of(val, "gid")? as u32),
                b"user" => item.user = opt_bytes_of(val, "user")?,
                b"group" => item.group = opt_bytes_of(val, "group")?,
                b"mtime" => item.mtime = time_of(val, "mtime")?,
                b"ctime" => item.ctime = Some(time_of(val, "ctime")?),
                b"atime" => item.atime = Some(time_of(val, "atime")?),
                b"birthtime" => item.birthtime = Some(time_of(val, "birthtime")?),
                b"size" => item.size = Some(uint_of(val, "size")?),
                b"chunks" => item.chunks = Some(chunks_of(val)?),
                b"chunks_healthy" => item.chunks_healthy = Some(chunks_of(val)?),
                b"hardlink_master" => {
                    item.hardlink_master =
                        Some(val.as_boolean().ok_or_else(|| bad("hardlink_master"))?)
                }
                b"source" => item.source = Some(bytes_of(val, "source")?),
                b"rdev" => item.rdev = Some(uint_of(val, "rdev")?),
                b"xattrs" => item.xattrs = Some(xattrs_of(val)?),
                b"bsdflags" => item.bsdflags = Some(uint_of(val, "bsdflags")? as u32),
                b"acl_access" => item.acl_access = Some(bytes_of(val, "acl_access")?),
                b"acl_default" => item.acl_default = Some(bytes_of(val, "acl_default")?),
                b"acl_extended" => item.acl_extended = Some(bytes_of(val, "acl_extended")?),
                b"acl_nfs4" => item.acl_nfs4 = Some(bytes_of(val, "acl_nfs4")?),
                b"part" => item.part = Some(uint_of(val, "part")?),
                _ => {}
            }
        }
        if !have_path {
            return Err(bad("item has no path"));
        }
        Ok(item)
    }

    /// Encode as borg does: a map with sorted keys, absent fields omitted.
    pub fn to_value(&self) -> Value {
        let mut e: Vec<(Value, Value)> = Vec::with_capacity(12);
        let mut put = |k: &str, v: Value| e.push((Value::from(k), v));
        if let Some(v) = &self.acl_access {
            put("acl_access", msgpack::bytes(v.clone()));
        }
        if let Some(v) = &self.acl_default {
            put("acl_default", msgpack::bytes(v.clone()));
        }
        if let Some(v) = &self.acl_extended {
            put("acl_extended", msgpack::bytes(v.clone()));
        }
        if let Some(v) = &self.acl_nfs4 {
            put("acl_nfs4", msgpack::bytes(v.clone()));
        }
        if let Some(v) = self.atime {
            put("atime", Value::from(v));
        }
        if let Some(v) = self.birthtime {
            put("birthtime", Value::from(v));
        }
        if let Some(v) = self.bsdflags {
            put("bsdflags", Value::from(v));
        }
        if let Some(c) = &self.chunks {
            put("chunks", chunks_value(c));
        }
        if let Some(c) = &self.chunks_healthy {
            put("chunks_healthy", chunks_value(c));
        }
        if let Some(v) = self.ctime {
            put("ctime", Value::from(v));
        }
        if let Some(v) = self.gid {
            put("gid", Value::from(v));
        }
        // borg stores an unknown (or --numeric-ids) name as nil beside the id.
        match (&self.group, self.gid) {
            (Some(v), _) => put("group", msgpack::bytes(v.clone())),
            (None, Some(_)) => put("group", Value::Nil),
            (None, None) => {}
        }
        if let Some(v) = self.hardlink_master {
            put("hardlink_master", Value::Boolean(v));
        }
        if let Some(v) = self.mode {
            put("mode", Value::from(v));
        }
        put("mtime", Value::from(self.mtime));
        if let Some(v) = self.part {
            put("part", Value::from(v));
        }
        put("path", msgpack::bytes(self.path.clone()));
        if let Some(v) = self.rdev {
            put("rdev", Value::from(v));
        }
        if let Some(v) = self.size {
            put("size", Value::from(v));
        }
        if let Some(v) = &self.source {
            put("source", msgpack::bytes(v.clone()));
        }
        if let Some(v) = self.uid {
            put("uid", Value::from(v));
        }
        match (&self.user, self.uid) {
            (Some(v), _) => put("user", msgpack::bytes(v.clone())),
            (None, Some(_)) => put("user", Value::Nil),
            (None, None) => {}
        }
        if let Some(x) = &self.xattrs {
            let mut entries: Vec<(Value, Value)> = x
                .iter()
                .map(|(k, v)| {
                    // borg stores an empty value as nil.
                    let value = match v.is_empty() {
                        true => Value::Nil,
                        false => msgpack::bytes(v.clone()),
                    };
                    (msgpack::bytes(k.clone()), value)
                })
                .collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(&b.0.as_bytes()));
            put("xattrs", Value::Map(entries));
        }
        Value::Map(e)
    }
}

fn bad(what: &str) -> Error {
    Error::integrity(format!("invalid item metadata: {what}"))
}

fn bytes_of(v: &Value, what: &str) -> Result<Vec<u8>> {
    v.as_bytes().map(|b| b.to_vec()).ok_or_else(|| bad(what))
}

fn opt_bytes_of(v: &Value, what: &str) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        _ => bytes_of(v, what).map(Some),
    }
}

fn uint_of(v: &Value, what: &str) -> Result<u64> {
    v.as_uint().ok_or_else(|| bad(what))
}

/// Times are ns integers; borg 1.0 archives may hold little-endian signed "bigint" bytes.
fn time_of(v: &Value, what: &str) -> Result<i64> {
    if let Some(i) = v.as_int() {
        return Ok(i);
    }
    if let Some(u) = v.as_uint() {
        return Ok(u.min(i64::MAX as u64) as i64);
    }
    match v.as_bytes() {
        Some(b) if !b.is_empty() && b.len() <= 8 => {
            let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut buf = [fill; 8];
            buf[..b.len()].copy_from_slice(b);
            Ok(i64::from_le_bytes(buf))
        }
        _ => Err(bad(what)),
    }
}

fn chunks_of(v: &Value) -> Result<Vec<ChunkRef>> {
    let list = v.as_list().ok_or_else(|| bad("chunks"))?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let t = c.as_list().ok_or_else(|| bad("chunk entry"))?;
        if t.len() < 2 {
            return Err(bad("chunk entry"));
        }
        let id_bytes = t[0].as_bytes().ok_or_else(|| bad("chunk id"))?;
        let id: ObjectId = id_bytes.try_into().map_err(|_| bad("chunk id length"))?;
        let size = t[1].as_uint().ok_or_else(|| bad("chunk size"))? as u32;
        let csize = match t.get(2) {
            Some(v) => v.as_uint().ok_or_else(|| bad("chunk csize"))? as u32,
            None => 0,
        };
        out.push(ChunkRef { id, size, csize });
    }
    Ok(out)
}

fn chunks_value(chunks: &[ChunkRef]) -> Value {
    Value::Array(
        chunks
            .iter()
            .map(|c| {
                Value::Array(vec![
                    msgpack::bytes(c.id.to_vec()),
                    Value::from(c.size),
                    Value::from(c.csize),
                ])
            })
            .collect(),
    )
}

fn xattrs_of(v: &Value) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let entries = v.as_entries().ok_or_else(|| bad("xattrs"))?;
    let mut out = Vec::with_capacity(entries.len());
    for (k, val) in entries {
        let name = k.as_bytes().ok_or_else(|| bad("xattr name"))?.to_vec();
        // borg 1.x may store a nil value for an empty xattr.
        let value = match val {
            Value::Nil => Vec::new(),
            _ => val.as_bytes().ok_or_else(|| bad("xattr value"))?.to_vec(),
        };
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_roundtrip_is_sorted_and_exact() {
        let item = Item {
            path: b"tree/latin1-\xe9.txt".to_vec(),
            mode: Some(0o100644),
            uid: Some(0),
            gid: Some(0),
            user: Some(b"root".to_vec()),
            group: Some(b"root".to_vec()),
            mtime: 1234567890123456789,
            ctime: Some(5),
            size: Some(3),
            chunks: Some(vec![ChunkRef {
                id: [7; 32],
                size: 3,
                csize: 44,
            }]),
            hardlink_master: Some(false),
            xattrs: Some(vec![(b"user.a".to_vec(), b"\x00\xff".to_vec())]),
            ..Default::default()
        };
        let packed = msgpack::pack(&item.to_value());
        let back = Item::from_value(&msgpack::unpack(&packed).unwrap()).unwrap();
        assert_eq!(back, item);
        let keys: Vec<Vec<u8>> = msgpack::unpack(&packed)
            .unwrap()
            .as_entries()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_bytes().unwrap().to_vec())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn unknown_names_and_empty_xattrs_are_nil_as_borg_stores_them() {
        let item = Item {
            path: b"f".to_vec(),
            uid: Some(12345),
            gid: Some(23456),
            xattrs: Some(vec![(b"user.empty".to_vec(), Vec::new())]),
            ..Default::default()
        };
        let v = item.to_value();
        let get = |key: &str| {
            v.as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("user"), Some(Value::Nil));
        assert_eq!(get("group"), Some(Value::Nil));
        assert_eq!(
            get("xattrs"),
            Some(Value::Map(vec![(
                msgpack::bytes(b"user.empty".to_vec()),
                Value::Nil
            )]))
        );
        // Read back: no names, the empty value.
        let back = Item::from_value(&v).unwrap();
        assert_eq!((back.user, back.group), (None, None));
        assert_eq!(back.xattrs, item.xattrs);
        // Items without ids (none made by create) get no name keys.
        let bare = Item {
            path: b"g".to_vec(),
            ..Default::default()
        };
        let bare = bare.to_value();
        assert!(!bare
            .as_map()
            .unwrap()
            .iter()
            .any(|(k, _)| k.as_bytes() == Some(b"user")));
    }

    #[test]
    fn bigint_times_are_accepted() {
        let v = msgpack::sorted_map(vec![
            (Value::from("path"), msgpack::bytes(b"x".to_vec())),
            (Value::from("mtime"), msgpack::bytes(vec![0xff, 0xff])),
        ]);
        assert_eq!(Item::from_value(&v).unwrap().mtime, -1);
    }

    #[test]
    fn malformed_items_are_errors() {
        assert!(Item::from_value(&Value::from(3)).is_err());
        let v = msgpack::sorted_map(vec![(Value::from("mtime"), Value::from(1))]);
        assert!(Item::from_value(&v).is_err());
        let v = msgpack::sorted_map(vec![
            (Value::from("path"), msgpack::bytes(b"x".to_vec())),
            (Value::from("chunks"), Value::Array(vec![Value::from(1)])),
        ]);
        assert!(Item::from_value(&v).is_err());
    }
}
