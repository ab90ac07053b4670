//! Reading an item stream that has gaps (borg's `RobustUnpacker`): after a missing or
//! unreadable item-metadata chunk, the bytes that follow are scanned for the start of the
//! next item (a map whose first key is an item key and which has a `path`).

use std::io::Cursor;

use rmpv::Value;

use crate::errors::Result;
use crate::msgpack::{StreamUnpacker, ValueExt};

/// Whether `data` starts like a msgpack map (fixmap or map16) whose first key is a string
/// serialized as one of `keys_serialized`.
pub fn valid_msgpacked_dict(data: &[u8], keys_serialized: &[Vec<u8>]) -> bool {
    let offset = match data.first() {
        Some(b) if b & 0xf0 == 0x80 => 1,
        Some(0xde) => 3,
        _ => return false,
    };
    let Some(&first_key) = data.get(offset) else {
        return false;
    };
    if first_key & 0xe0 != 0xa0 && !matches!(first_key, 0xd9..=0xdb) {
        return false;
    }
    let rest = &data[offset..];
    keys_serialized.iter().any(|k| rest.starts_with(k))
}

/// A stream unpacker that can be told to drop what it has and look for the next item.
pub struct RobustUnpacker {
    keys_serialized: Vec<Vec<u8>>,
    unpacker: StreamUnpacker,
    /// Data fed while resynchronising (scanned from its start on every call).
    buffered: Vec<u8>,
    resyncing: bool,
}

/// The resync criterion: a map with a `path`.
fn looks_like_item(v: &Value) -> bool {
    v.as_entries().is_some() && v.get("path").is_some()
}

impl RobustUnpacker {
    pub fn new(keys_serialized: Vec<Vec<u8>>) -> RobustUnpacker {
        RobustUnpacker {
            keys_serialized,
            unpacker: StreamUnpacker::new(),
            buffered: Vec::new(),
            resyncing: false,
        }
    }

    /// Forget pending data; the next item is searched for in the data fed from now on.
    pub fn resync(&mut self) {
        self.buffered.clear();
        self.resyncing = true;
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.resyncing {
            self.buffered.extend_from_slice(data);
        } else {
            self.unpacker.feed(data);
        }
    }

    /// The next value; `Ok(None)` when more data is needed. While resynchronising, garbage is
    /// skipped; otherwise undecodable data is an error.
    pub fn next_value(&mut self) -> Result<Option<Value>> {
        if self.resyncing {
            let Some(start) = self.find_item_start() else {
                return Ok(None);
            };
            self.unpacker = StreamUnpacker::new();
            self.unpacker.feed(&self.buffered[start..]);
            self.resyncing = false;
        }
        self.unpacker.next_value()
    }

    /// The first offset in the buffered data where a complete item starts.
    fn find_item_start(&self) -> Option<usize> {
        (0..self.buffered.len()).find(|&start| {
            let data = &self.buffered[start..];
            if !valid_msgpacked_dict(data, &self.keys_serialized) {
                return false;
            }
            let mut cursor = Cursor::new(data);
            rmpv::decode::read_value(&mut cursor).is_ok_and(|v| looks_like_item(&v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack;

    fn keys() -> Vec<Vec<u8>> {
        ["mtime", "path"]
            .iter()
            .map(|k| msgpack::pack(&Value::from(*k)))
            .collect()
    }

    fn item(path: &str) -> Vec<u8> {
        msgpack::pack(&msgpack::sorted_map(vec![
            (Value::from("mtime"), Value::from(7)),
            (
                Value::from("path"),
                msgpack::bytes(path.as_bytes().to_vec()),
            ),
        ]))
    }

    fn paths(u: &mut RobustUnpacker) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(v)) = u.next_value() {
            out.push(String::from_utf8_lossy(v.get("path").unwrap().as_bytes().unwrap()).into());
        }
        out
    }

    #[test]
    fn map_detection_follows_the_first_key() {
        let keys = keys();
        assert!(valid_msgpacked_dict(&item("a"), &keys));
        assert!(!valid_msgpacked_dict(b"\x92\x01\x02", &keys));
        assert!(!valid_msgpacked_dict(b"\x81", &keys));
        let other = msgpack::pack(&msgpack::sorted_map(vec![(
            Value::from("zzz"),
            Value::from(1),
        )]));
        assert!(!valid_msgpacked_dict(&other, &keys));
    }

    #[test]
    fn resync_skips_to_the_next_whole_item() {
        let mut u = RobustUnpacker::new(keys());
        u.feed(&item("a"));
        assert_eq!(paths(&mut u), ["a"]);
        // the tail of a lost item, then two items
        u.resync();
        let b = item("b");
        u.feed(&b[5..]);
        assert_eq!(paths(&mut u), Vec::<String>::new());
        u.feed(&item("c"));
        u.feed(&item("d"));
        assert_eq!(paths(&mut u), ["c", "d"]);
    }

    #[test]
    fn an_item_split_across_feeds_is_found_once_complete() {
        let mut u = RobustUnpacker::new(keys());
        u.resync();
        let c = item("c");
        u.feed(&c[..4]);
        assert!(u.next_value().unwrap().is_none());
        u.feed(&c[4..]);
        assert_eq!(paths(&mut u), ["c"]);
    }
}
