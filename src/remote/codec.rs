//! The wire format of borg's RPC (remote-protocol.md §3): a stream of msgpack objects in the
//! old raw dialect, requests and replies in the dict form, the legacy 4-element array form
//! of the handshake, and the error reply of §6.1.
//!
//! Decoding is done here rather than by [`crate::msgpack::StreamUnpacker`]: every length is
//! checked against [`Limits`] before anything is allocated (a hostile peer cannot make us
//! reserve gigabytes or recurse deeply), an incomplete object costs nothing but a header scan
//! (multi-MiB `put`s arrive in many pipe reads), and every raw string becomes
//! `Value::Binary` — the receiver decides per field whether it is text.

use rmpv::Value;

use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::ValueExt;
use crate::msgpack::{pack_array_len, pack_into, pack_map_len, pack_raw, pack_uint};

/// borg's MAX_OBJECT_SIZE: the longest raw string a 1.2 peer accepts (20 MiB).
pub const MAX_OBJECT_SIZE: usize = 20 * 1024 * 1024;

/// Ids a `list`/`scan` page may hold (borg's LIST_SCAN_LIMIT).
pub const LIST_SCAN_LIMIT: usize = 100_000;

/// What one side accepts from its peer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_raw: usize,
    pub max_array: usize,
    pub max_map: usize,
    pub max_depth: usize,
}

impl Limits {
    /// Requests read by `serve` (borg 1.2's server unpacker allows arrays/maps of 100; we
    /// accept longer arrays, which cost nothing, but keep maps small).
    pub const SERVER: Limits = Limits {
        max_raw: MAX_OBJECT_SIZE + 1024,
        max_array: 1024,
        max_map: 100,
        max_depth: 16,
    };
    /// Replies read by the client (`list`/`scan` pages of up to 100 000 ids).
    pub const CLIENT: Limits = Limits {
        max_raw: 4 * MAX_OBJECT_SIZE,
        max_array: LIST_SCAN_LIMIT + 1,
        max_map: 100,
        max_depth: 16,
    };
}

/// Decode failure: the bytes can never become a valid object.
fn malformed(what: impl std::fmt::Display) -> Error {
    Error::exception(format!("malformed RPC data: {what}"))
}

/// `Ok(None)`: the buffer ends inside the object.
type Step<T> = Result<Option<T>>;

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
}

macro_rules! need {
    ($e:expr) => {
        match $e? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

/// An `Option` read of a fixed-size field: `None` means the buffer ends inside it.
macro_rules! got {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn uint(&mut self, n: usize) -> Option<u64> {
        self.take(n)
            .map(|b| b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn raw(&mut self, len: u64) -> Step<Value> {
        if len > self.limits.max_raw as u64 {
            return Err(malformed(format!("string of {len} bytes is too long")));
        }
        Ok(self.take(len as usize).map(|b| Value::Binary(b.to_vec())))
    }

    fn array(&mut self, len: u64, depth: usize) -> Step<Value> {
        if len > self.limits.max_array as u64 {
            return Err(malformed(format!("array of {len} elements is too long")));
        }
        // every element takes at least one byte: never reserve more than what is there
        let mut items = Vec::with_capacity((len as usize).min(self.buf.len() - self.pos));
        for _ in 0..len {
            items.push(need!(self.value(depth + 1)));
        }
        Ok(Some(Value::Array(items)))
    }

    fn map(&mut self, len: u64, depth: usize) -> Step<Value> {
        if len > self.limits.max_map as u64 {
            return Err(malformed(format!("map of {len} entries is too long")));
        }
        let mut entries = Vec::with_capacity(len as usize);
        for _ in 0..len {
            let k = need!(self.value(depth + 1));
            let v = need!(self.value(depth + 1));
            entries.push((k, v));
        }
        Ok(Some(Value::Map(entries)))
    }

    fn value(&mut self, depth: usize) -> Step<Value> {
        if depth > self.limits.max_depth {
            return Err(malformed("nesting too deep"));
        }
        let Some(&marker) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let v = match marker {
            0x00..=0x7f => Value::from(marker),
            0xe0..=0xff => Value::from(marker as i8),
            0x80..=0x8f => return self.map((marker & 0x0f) as u64, depth),
            0x90..=0x9f => return self.array((marker & 0x0f) as u64, depth),
            0xa0..=0xbf => return self.raw((marker & 0x1f) as u64),
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            // str8 and the bin family: borg 1.2 never sends them, but they are harmless
            0xd9 | 0xc4 => {
                let n = got!(self.uint(1));
                return self.raw(n);
            }
            0xda | 0xc5 => {
                let n = got!(self.uint(2));
                return self.raw(n);
            }
            0xdb | 0xc6 => {
                let n = got!(self.uint(4));
                return self.raw(n);
            }
            0xca => {
                let b = got!(self.take(4));
                Value::F32(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            0xcb => {
                let b = got!(self.uint(8));
                Value::F64(f64::from_bits(b))
            }
            0xcc => Value::from(got!(self.uint(1))),
            0xcd => Value::from(got!(self.uint(2))),
            0xce => Value::from(got!(self.uint(4))),
            0xcf => Value::from(got!(self.uint(8))),
            0xd0 => Value::from(got!(self.uint(1)) as u8 as i8),
            0xd1 => Value::from(got!(self.uint(2)) as u16 as i16),
            0xd2 => Value::from(got!(self.uint(4)) as u32 as i32),
            0xd3 => Value::from(got!(self.uint(8)) as i64),
            0xdc => {
                let n = got!(self.uint(2));
                return self.array(n, depth);
            }
            0xdd => {
                let n = got!(self.uint(4));
                return self.array(n, depth);
            }
            0xde => {
                let n = got!(self.uint(2));
                return self.map(n, depth);
            }
            0xdf => {
                let n = got!(self.uint(4));
                return self.map(n, depth);
            }
            0xc1 => return Err(malformed("reserved marker 0xc1")),
            // ext types (c7-c9, d4-d8): borg never uses them
            _ => return Err(malformed(format!("extension type marker {marker:#04x}"))),
        };
        Ok(Some(v))
    }
}

/// Accumulates the byte stream of one direction and yields its complete objects.
pub struct FrameReader {
    buf: Vec<u8>,
    pos: usize,
    limits: Limits,
}

impl FrameReader {
    pub fn new(limits: Limits) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            pos: 0,
            limits,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete object, `Ok(None)` when more bytes are needed. An error means the
    /// stream is unusable (the connection must end).
    pub fn next_value(&mut self) -> Result<Option<Value>> {
        let mut d = Decoder {
            buf: &self.buf[self.pos..],
            pos: 0,
            limits: self.limits,
        };
        match d.value(0)? {
            Some(v) => {
                self.pos += d.pos;
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// Bytes received but not yet part of a complete object.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
}

/// Decode exactly one object spanning `data`.
pub fn decode_one(data: &[u8], limits: Limits) -> Result<Value> {
    let mut d = Decoder {
        buf: data,
        pos: 0,
        limits,
    };
    match d.value(0)? {
        Some(v) if d.pos == data.len() => Ok(v),
        Some(_) => Err(malformed("extra data after the object")),
        None => Err(malformed("truncated object")),
    }
}

// ───────────────────────────── requests ─────────────────────────────

/// An argument value; `Raw` writes a byte string without copying it into a `Value`.
pub enum Arg<'a> {
    Raw(&'a [u8]),
    Value(Value),
}

impl From<bool> for Arg<'_> {
    fn from(b: bool) -> Self {
        Arg::Value(Value::Boolean(b))
    }
}

impl From<Value> for Arg<'_> {
    fn from(v: Value) -> Self {
        Arg::Value(v)
    }
}

/// A dict-form request `{"i": msgid, "m": method, "a": {name: value, …}}`.
pub fn encode_request(msgid: u64, method: &str, args: &[(&str, Arg)]) -> Vec<u8> {
    let payload: usize = args
        .iter()
        .map(|(_, a)| match a {
            Arg::Raw(b) => b.len() + 16,
            Arg::Value(_) => 16,
        })
        .sum();
    let mut out = Vec::with_capacity(payload + 32);
    pack_map_len(&mut out, 3);
    pack_raw(&mut out, b"i");
    pack_uint(&mut out, msgid);
    pack_raw(&mut out, b"m");
    pack_raw(&mut out, method.as_bytes());
    pack_raw(&mut out, b"a");
    pack_map_len(&mut out, args.len());
    for (name, arg) in args {
        pack_raw(&mut out, name.as_bytes());
        match arg {
            Arg::Raw(b) => pack_raw(&mut out, b),
            Arg::Value(v) => pack_into(&mut out, v),
        }
    }
    out
}

/// The handshake as real clients send it: `[1, msgid, "negotiate", [client_data]]`.
pub fn encode_legacy_request(msgid: u64, method: &str, positional: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    pack_array_len(&mut out, 4);
    pack_uint(&mut out, 1);
    pack_uint(&mut out, msgid);
    pack_raw(&mut out, method.as_bytes());
    pack_into(&mut out, &Value::Array(positional.to_vec()));
    out
}

/// A version tuple `[major, minor, patch, -1]` (-4/-3/-2, n for alpha/beta/rc).
pub fn version_tuple(version: &str) -> Vec<i64> {
    let mut parts: Vec<i64> = Vec::new();
    let mut tail = None;
    for (i, piece) in version.splitn(3, '.').enumerate() {
        let digits: String = piece.chars().take_while(|c| c.is_ascii_digit()).collect();
        parts.push(digits.parse().unwrap_or(0));
        if i == 2 {
            let rest = &piece[digits.len()..];
            for (tag, code) in [("rc", -2), ("b", -3), ("a", -4)] {
                if let Some(n) = rest.strip_prefix(tag) {
                    tail = Some((code, n.parse().unwrap_or(0)));
                    break;
                }
            }
        }
    }
    parts.resize(3, 0);
    match tail {
        Some((code, n)) => parts.extend([code, n]),
        None => parts.push(-1),
    }
    parts
}

pub fn version_value(version: &[i64]) -> Value {
    Value::Array(version.iter().map(|&v| Value::from(v)).collect())
}

/// A version tuple received from the peer (missing/odd elements read as 0).
pub fn parse_version_value(v: &Value) -> Option<Vec<i64>> {
    v.as_list()
        .map(|items| items.iter().map(|x| x.as_int().unwrap_or(0)).collect())
}

/// How a message was framed; replies use the form of their request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Dict,
    Legacy,
}

/// A decoded request (server side).
#[derive(Debug)]
pub struct Request {
    pub form: Form,
    pub msgid: Value,
    pub method: Vec<u8>,
    /// Named arguments (dict form), names as sent.
    pub named: Vec<(Vec<u8>, Value)>,
    /// Positional arguments (legacy form).
    pub positional: Vec<Value>,
}

/// Classify an object read by the server; `None`: neither a map nor a 4-element array
/// (borg's UnexpectedRPCDataFormatFromClient).
pub fn parse_request(v: Value) -> Option<Request> {
    match v {
        Value::Map(entries) => {
            let mut msgid = Value::Nil;
            let mut method = Vec::new();
            let mut named = Vec::new();
            for (k, val) in entries {
                match k.as_bytes() {
                    Some(b"i") => msgid = val,
                    Some(b"m") => method = val.as_bytes().map(<[u8]>::to_vec)?,
                    Some(b"a") => match val {
                        Value::Map(args) => {
                            for (name, a) in args {
                                named.push((name.as_bytes()?.to_vec(), a));
                            }
                        }
                        Value::Nil => {}
                        _ => return None,
                    },
                    _ => {}
                }
            }
            Some(Request {
                form: Form::Dict,
                msgid,
                method,
                named,
                positional: Vec::new(),
            })
        }
        Value::Array(items) if items.len() == 4 => {
            let mut it = items.into_iter();
            let _kind = it.next();
            let msgid = it.next().unwrap_or(Value::Nil);
            let method = it.next()?.as_bytes()?.to_vec();
            let positional = match it.next()? {
                Value::Array(a) => a,
                _ => return None,
            };
            Some(Request {
                form: Form::Legacy,
                msgid,
                method,
                named: Vec::new(),
                positional,
            })
        }
        _ => None,
    }
}

/// A success reply in the request's form.
pub fn encode_result(form: Form, msgid: &Value, result: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    encode_result_into(&mut out, form, msgid, |out| pack_into(out, result));
    out
}

/// A success reply whose result is one byte string (`get`): no copy into a `Value`.
pub fn encode_raw_result(form: Form, msgid: &Value, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    encode_result_into(&mut out, form, msgid, |out| pack_raw(out, data));
    out
}

fn encode_result_into(out: &mut Vec<u8>, form: Form, msgid: &Value, result: impl Fn(&mut Vec<u8>)) {
    match form {
        Form::Dict => {
            pack_map_len(out, 2);
            pack_raw(out, b"i");
            pack_into(out, msgid);
            pack_raw(out, b"r");
            result(out);
        }
        Form::Legacy => {
            pack_array_len(out, 4);
            pack_uint(out, 1);
            pack_into(out, msgid);
            out.push(0xc0);
            result(out);
        }
    }
}

/// An exception as it travels in an error reply (§6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteException {
    /// Unqualified Python class name (`DoesNotExist`, `ValueError`, …).
    pub class: String,
    /// Constructor arguments (strings, as raw).
    pub args: Vec<String>,
    pub full: Vec<String>,
    pub short: Vec<String>,
    pub trace: bool,
    pub sysinfo: String,
    /// `exception_args` was absent (a pre-1.1 server).
    pub old_server: bool,
}

/// An error reply in the request's form (legacy: `[1, msgid, class, "Remote Exception …"]`).
pub fn encode_error(form: Form, msgid: &Value, e: &RemoteException) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let raw_list = |out: &mut Vec<u8>, items: &[String]| {
        pack_array_len(out, items.len());
        for s in items {
            pack_raw(out, s.as_bytes());
        }
    };
    match form {
        Form::Dict => {
            pack_map_len(&mut out, 7);
            pack_raw(&mut out, b"i");
            pack_into(&mut out, msgid);
            pack_raw(&mut out, b"exception_class");
            pack_raw(&mut out, e.class.as_bytes());
            pack_raw(&mut out, b"exception_args");
            raw_list(&mut out, &e.args);
            pack_raw(&mut out, b"exception_full");
            raw_list(&mut out, &e.full);
            pack_raw(&mut out, b"exception_short");
            raw_list(&mut out, &e.short);
            pack_raw(&mut out, b"exception_trace");
            out.push(if e.trace { 0xc3 } else { 0xc2 });
            pack_raw(&mut out, b"sysinfo");
            pack_raw(&mut out, e.sysinfo.as_bytes());
        }
        Form::Legacy => {
            pack_array_len(&mut out, 4);
            pack_uint(&mut out, 1);
            pack_into(&mut out, msgid);
            pack_raw(&mut out, e.class.as_bytes());
            pack_raw(
                &mut out,
                b"Remote Exception (see remote log for the traceback)",
            );
        }
    }
    out
}

/// A reply as the client sees it.
#[derive(Debug)]
pub struct Reply {
    pub msgid: u64,
    pub outcome: std::result::Result<Value, RemoteException>,
}

fn text(v: &Value) -> String {
    String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned()
}

fn text_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.as_list())
        .map(|l| l.iter().map(text).collect())
        .unwrap_or_default()
}

/// Classify an object read by the client; `None`: not a reply (a banner, garbage).
pub fn parse_reply(v: Value) -> Option<Reply> {
    match v {
        Value::Map(_) => {
            let msgid = v.get("i")?.as_uint()?;
            if let Some(class) = v.get("exception_class") {
                let args = v.get("exception_args");
                let ex = RemoteException {
                    class: text(class),
                    old_server: args.is_none(),
                    args: args
                        .and_then(|a| a.as_list())
                        .map(|l| l.iter().map(arg_text).collect())
                        .unwrap_or_default(),
                    full: text_list(v.get("exception_full")),
                    short: text_list(v.get("exception_short")),
                    trace: v
                        .get("exception_trace")
                        .and_then(|t| t.as_boolean())
                        .unwrap_or(true),
                    sysinfo: v.get("sysinfo").map(text).unwrap_or_default(),
                };
                return Some(Reply {
                    msgid,
                    outcome: Err(ex),
                });
            }
            let result = match v {
                Value::Map(entries) => entries
                    .into_iter()
                    .find(|(k, _)| k.as_bytes() == Some(b"r"))
                    .map(|(_, r)| r)
                    .unwrap_or(Value::Nil),
                _ => Value::Nil,
            };
            Some(Reply {
                msgid,
                outcome: Ok(result),
            })
        }
        Value::Array(items) if items.len() == 4 => {
            let msgid = items[1].as_uint()?;
            let mut it = items.into_iter().skip(2);
            let class = it.next()?;
            let result = it.next()?;
            if class.is_nil() {
                return Some(Reply {
                    msgid,
                    outcome: Ok(result),
                });
            }
            Some(Reply {
                msgid,
                outcome: Err(RemoteException {
                    class: text(&class),
                    args: Vec::new(),
                    full: Vec::new(),
                    short: vec![text(&result)],
                    trace: true,
                    sysinfo: String::new(),
                    old_server: true,
                }),
            })
        }
        _ => None,
    }
}

/// An exception argument as text (ints as decimal, nil as "None").
fn arg_text(v: &Value) -> String {
    match v {
        Value::Nil => "None".into(),
        Value::Integer(i) => i.to_string(),
        _ => text(v),
    }
}

/// `RPC method {} is not valid` etc.: the client-side error for a broken stream, showing up
/// to 128 bytes of what arrived (borg's UnexpectedRPCDataFormatFromServer).
pub fn unexpected_from_server(data: &[u8]) -> Error {
    let shown = match std::str::from_utf8(data) {
        Ok(s) => s.chars().take(128).collect::<String>(),
        Err(_) => {
            let hex: Vec<String> = data.iter().take(128).map(|b| format!("{b:02X}")).collect();
            // 16 bytes per line, as textwrap.fill(…, 48) gives
            hex.chunks(16)
                .map(|c| c.join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    Error::new(ErrorKind::UnexpectedRPCDataFormatFromServer, [shown])
}

#[cfg(test)]
mod tests;
