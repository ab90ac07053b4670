//! msgpack as borg 1.x writes and reads it (repository-format.md §2).
//!
//! Values are `rmpv::Value`. The encoder here is written out because borg's rules differ from
//! every stock encoder: byte and text strings both use the raw/str family (fixstr, str16,
//! str32) and **never** str8 or bin — a borg 1.2 peer rejects those. The decoder is rmpv's,
//! which accepts every family, guards against huge preallocations and limits nesting depth.

use std::io::{Cursor, Read};

use rmpv::Value;

use crate::errors::{Error, Result};

/// Serialize a value with borg's rules. Maps are written in the order given: callers that
/// need borg's sorted-key maps build them with [`sorted_map`].
pub fn pack(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    pack_into(&mut out, value);
    out
}

pub fn pack_into(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                pack_uint(out, u)
            } else if let Some(s) = i.as_i64() {
                pack_int(out, s)
            }
        }
        Value::F32(f) => {
            out.push(0xca);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::F64(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::String(s) => pack_raw(out, s.as_bytes()),
        Value::Binary(b) => pack_raw(out, b),
        Value::Array(items) => {
            pack_array_len(out, items.len());
            for v in items {
                pack_into(out, v);
            }
        }
        Value::Map(entries) => {
            pack_map_len(out, entries.len());
            for (k, v) in entries {
                pack_into(out, k);
                pack_into(out, v);
            }
        }
        Value::Ext(ty, data) => pack_ext(out, *ty, data),
    }
}

/// Smallest unsigned encoding (positive fixint, uint8/16/32/64), as msgpack-python.
pub fn pack_uint(out: &mut Vec<u8>, u: u64) {
    if u < 128 {
        out.push(u as u8);
    } else if u <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, u as u8]);
    } else if u <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

/// Smallest encoding of a signed value (non-negative values use the unsigned family).
pub fn pack_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        return pack_uint(out, i as u64);
    }
    if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// A byte or text string: fixstr, str16 or str32 — never str8 or bin (borg's use_bin_type=False
/// with the pre-2013 raw family).
pub fn pack_raw(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

pub fn pack_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

pub fn pack_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn pack_ext(out: &mut Vec<u8>, ty: i8, data: &[u8]) {
    let n = data.len();
    match n {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        _ if n <= u8::MAX as usize => out.extend_from_slice(&[0xc7, n as u8]),
        _ if n <= u16::MAX as usize => {
            out.push(0xc8);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc9);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.push(ty as u8);
    out.extend_from_slice(data);
}

/// Decode exactly one value that must span the whole buffer (like msgpack's `unpackb`).
pub fn unpack(data: &[u8]) -> Result<Value> {
    let mut cur = Cursor::new(data);
    let v = read_one(&mut cur)?;
    if (cur.position() as usize) != data.len() {
        return Err(Error::integrity("msgpack: extra data after the value"));
    }
    Ok(v)
}

fn read_one<R: Read>(rd: &mut R) -> Result<Value> {
    rmpv::decode::read_value(rd).map_err(|e| Error::integrity(format!("msgpack: {e}")))
}

/// Whether an rmpv error only means "the buffer ended before the value did".
fn is_eof(e: &rmpv::decode::Error) -> bool {
    match e {
        rmpv::decode::Error::InvalidMarkerRead(io) | rmpv::decode::Error::InvalidDataRead(io) => {
            io.kind() == std::io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

/// Incremental decoder for a msgpack stream fed in pieces (borg's item streams span chunks).
#[derive(Default)]
pub struct StreamUnpacker {
    buf: Vec<u8>,
    pos: usize,
}

impl StreamUnpacker {
    pub fn new() -> StreamUnpacker {
        StreamUnpacker::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete value, `Ok(None)` if more data is needed.
    pub fn next_value(&mut self) -> Result<Option<Value>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let mut cur = Cursor::new(&self.buf[self.pos..]);
        match rmpv::decode::read_value(&mut cur) {
            Ok(v) => {
                self.pos += cur.position() as usize;
                Ok(Some(v))
            }
            Err(e) if is_eof(&e) => Ok(None),
            Err(e) => Err(Error::integrity(format!("msgpack: {e}"))),
        }
    }

    /// Bytes fed but not yet consumed by a complete value.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A map with keys sorted bytewise, as borg's StableDict writes them.
pub fn sorted_map(mut entries: Vec<(Value, Value)>) -> Value {
    entries.sort_by(|a, b| key_bytes(&a.0).cmp(key_bytes(&b.0)));
    Value::Map(entries)
}

fn key_bytes(v: &Value) -> &[u8] {
    v.as_bytes().unwrap_or(&[])
}

/// A byte string value (packed as raw/str).
pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
    Value::Binary(b.into())
}

/// Typed access to borg's msgpack values, where strings arrive as raw bytes.
pub trait ValueExt {
    /// Bytes of a str/bin value.
    fn as_bytes(&self) -> Option<&[u8]>;
    /// Entry of a map by byte-string key.
    fn get(&self, key: &str) -> Option<&Value>;
    fn as_int(&self) -> Option<i64>;
    fn as_uint(&self) -> Option<u64>;
    fn as_boolean(&self) -> Option<bool>;
    fn as_list(&self) -> Option<&[Value]>;
    fn as_entries(&self) -> Option<&[(Value, Value)]>;
}

impl ValueExt for Value {
    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s.as_bytes()),
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => i.as_i64(),
            _ => None,
        }
    }

    fn as_uint(&self) -> Option<u64> {
        match self {
            Value::Integer(i) => i.as_u64(),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    fn as_entries(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_strings_never_use_str8_or_bin() {
        assert_eq!(pack(&bytes(vec![7u8; 3]))[0], 0xa3);
        let id = pack(&bytes(vec![0u8; 32]));
        assert_eq!(&id[..3], &[0xda, 0x00, 0x20]);
        assert_eq!(pack(&Value::from("x".repeat(40)))[0], 0xda);
        assert_eq!(pack(&bytes(vec![0u8; 70000]))[0], 0xdb);
    }

    #[test]
    fn ints_use_smallest_encoding() {
        assert_eq!(pack(&Value::from(5)), vec![5]);
        assert_eq!(pack(&Value::from(200)), vec![0xcc, 200]);
        assert_eq!(pack(&Value::from(-1)), vec![0xff]);
        assert_eq!(pack(&Value::from(-100)), vec![0xd0, (-100i8) as u8]);
        assert_eq!(pack(&Value::from(70000)), vec![0xce, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn roundtrip_and_stream() {
        let v = sorted_map(vec![
            (Value::from("b"), Value::from(1)),
            (Value::from("a"), Value::Array(vec![bytes(b"\xff\x00".to_vec()), Value::Nil])),
        ]);
        let packed = pack(&v);
        let back = unpack(&packed).unwrap();
        assert_eq!(back.get("b").and_then(|x| x.as_int()), Some(1));
        assert_eq!(back.as_entries().unwrap()[0].0.as_bytes(), Some(&b"a"[..]));
        let mut s = StreamUnpacker::new();
        let two = [packed.clone(), packed.clone()].concat();
        s.feed(&two[..5]);
        assert!(s.next_value().unwrap().is_none());
        s.feed(&two[5..]);
        assert!(s.next_value().unwrap().is_some());
        assert!(s.next_value().unwrap().is_some());
        assert!(s.next_value().unwrap().is_none());
        assert!(unpack(&[0x92, 0x01]).is_err());
        assert!(unpack(&[0x01, 0x02]).is_err());
    }
}
