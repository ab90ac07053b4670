//! The fields `list` shows for archives and items (borg's ArchiveFormatter / ItemFormatter):
//! text values for `--format`, JSON objects for `--json` / `--json-lines`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::format::FormatValue;
use super::human;
use super::json::insert_text_with_b64;
use crate::archive::item::{Item, S_IFMT};
use crate::archive::{display_bytes, ArchiveMeta};

/// `strftime` default for time fields in list output.
pub const TIME_FMT: &str = "%a, %Y-%m-%d %H:%M:%S";

/// Default item format (`borg list REPO::ARCHIVE`).
pub const DEFAULT_ITEM_FORMAT: &str =
    "{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}{NL}";
/// Default archive format (`borg list REPO`).
pub const DEFAULT_ARCHIVE_FORMAT: &str = "{archive:<36} {time} [{id}]{NL}";

/// Keys whose value is the same for every record (borg's FIXED_KEYS).
pub fn fixed_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "NL" | "NEWLINE" | "LF" => "\n",
        "CR" => "\r",
        "TAB" => "\t",
        "SPACE" => " ",
        "NUL" => "\0",
        _ => return None,
    })
}

/// Hash names `list --format` offers (Python's guaranteed hashlib algorithms minus shake,
/// plus xxh64).
pub const HASH_KEYS: &[&str] = &[
    "blake2b", "blake2s", "md5", "sha1", "sha224", "sha256", "sha384", "sha3_224", "sha3_256",
    "sha3_384", "sha3_512", "sha512", "xxh64",
];

/// Keys computed per item (borg's call keys), in the order rborg emits them in JSON lines.
pub const ITEM_CALL_KEYS: &[&str] = &[
    "size",
    "csize",
    "dsize",
    "dcsize",
    "num_chunks",
    "unique_chunks",
    "isomtime",
    "isoctime",
    "isoatime",
    "mtime",
    "ctime",
    "atime",
];

/// Keys that need the repository-wide chunk reference counts.
pub const KEYS_REQUIRING_CHUNK_COUNTS: &[&str] = &["dsize", "dcsize", "unique_chunks"];

/// `ls -l` style mode string (Python's `stat.filemode`).
pub fn filemode(mode: u32) -> String {
    let kind = match mode & S_IFMT {
        0o100000 => '-',
        0o040000 => 'd',
        0o120000 => 'l',
        0o060000 => 'b',
        0o020000 => 'c',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let triple = |s: &mut String, r: u32, w: u32, x: u32, special: u32, on: char, off: char| {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        s.push(match (mode & x != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        });
    };
    triple(&mut s, 0o400, 0o200, 0o100, 0o4000, 's', 'S');
    triple(&mut s, 0o040, 0o020, 0o010, 0o2000, 's', 'S');
    triple(&mut s, 0o004, 0o002, 0o001, 0o1000, 't', 'T');
    s
}

/// Per-item values that need more than the item: content digests and chunk statistics.
#[derive(Debug, Default, Clone)]
pub struct ItemExtras {
    /// Hex digest per hash key used by the format.
    pub digests: HashMap<&'static str, String>,
    /// (dsize, dcsize, unique_chunks) when the format needs them.
    pub unique: Option<(u64, u64, u64)>,
}

/// One item as `list` shows it.
pub struct ItemView<'a> {
    pub item: &'a Item,
    pub archive_name: &'a str,
    pub archive_id: &'a str,
    pub extras: &'a ItemExtras,
}

impl ItemView<'_> {
    fn mode_and_extra(&self) -> (String, String, String) {
        let mut mode = filemode(self.item.mode.unwrap_or(0));
        let source = self
            .item
            .source
            .as_deref()
            .map(display_bytes)
            .unwrap_or_default();
        let mut extra = String::new();
        if !source.is_empty() {
            if mode.starts_with('l') {
                extra = format!(" -> {source}");
            } else {
                mode.replace_range(0..1, "h");
                extra = format!(" link to {source}");
            }
        }
        (mode, extra, source)
    }

    /// borg's `get_size`: stored size, a symlink's target length, or Σ chunk (c)sizes.
    fn size(&self, compressed: bool) -> u64 {
        if !compressed {
            if let Some(s) = self.item.size {
                return s;
            }
        }
        if self.item.is_symlink() {
            return self.item.source.as_ref().map_or(0, |s| s.len() as u64);
        }
        match &self.item.chunks {
            Some(c) => c
                .iter()
                .map(|c| {
                    if compressed {
                        c.csize as u64
                    } else {
                        c.size as u64
                    }
                })
                .sum(),
            None => 0,
        }
    }

    /// An item time; missing or zero ctime/atime fall back to mtime (borg's `get(key) or mtime`).
    fn time_ns(&self, key: &str) -> i64 {
        let v = match key {
            "ctime" => self.item.ctime,
            "atime" => self.item.atime,
            _ => Some(self.item.mtime),
        };
        v.filter(|t| *t != 0).unwrap_or(self.item.mtime)
    }

    fn user(&self) -> FormatValue {
        match &self.item.user {
            Some(u) if !u.is_empty() => FormatValue::Str(display_bytes(u)),
            _ => FormatValue::Int(self.item.uid.unwrap_or(0) as i64),
        }
    }

    fn group(&self) -> FormatValue {
        match &self.item.group {
            Some(g) if !g.is_empty() => FormatValue::Str(display_bytes(g)),
            _ => FormatValue::Int(self.item.gid.unwrap_or(0) as i64),
        }
    }

    /// A computed (call) key's value; None if `key` is not one.
    fn call_value(&self, key: &str) -> Option<FormatValue> {
        let unique = self.extras.unique.unwrap_or_default();
        Some(match key {
            "size" => self.size(false).into(),
            "csize" => self.size(true).into(),
            "dsize" => unique.0.into(),
            "dcsize" => unique.1.into(),
            "unique_chunks" => unique.2.into(),
            "num_chunks" => (self.item.chunks.as_ref().map_or(0, |c| c.len()) as u64).into(),
            "mtime" | "ctime" | "atime" => FormatValue::Time {
                dt: human::item_time_local(self.time_ns(key)),
                default_fmt: TIME_FMT,
            },
            "isomtime" | "isoctime" | "isoatime" => FormatValue::Str(human::isoformat_us(
                &human::item_time_local(self.time_ns(&key[3..])),
            )),
            k if HASH_KEYS.contains(&k) => {
                FormatValue::Str(self.extras.digests.get(k).cloned().unwrap_or_default())
            }
            _ => return None,
        })
    }

    /// The value of any key for text output.
    pub fn value(&self, key: &str) -> Option<FormatValue> {
        if let Some(v) = fixed_key(key) {
            return Some(v.into());
        }
        if let Some(v) = self.call_value(key) {
            return Some(v);
        }
        let (mode, extra, source) = self.mode_and_extra();
        Some(match key {
            "type" => FormatValue::Str(filemode(self.item.mode.unwrap_or(0))[..1].to_string()),
            "mode" => FormatValue::Str(mode),
            "uid" => FormatValue::Int(self.item.uid.unwrap_or(0) as i64),
            "gid" => FormatValue::Int(self.item.gid.unwrap_or(0) as i64),
            "user" => self.user(),
            "group" => self.group(),
            "path" | "bpath" => FormatValue::Str(display_bytes(&self.item.path)),
            "source" | "linktarget" => FormatValue::Str(source),
            "extra" => FormatValue::Str(extra),
            "flags" => FormatValue::Int(self.item.bsdflags.unwrap_or(0) as i64),
            "health" => FormatValue::Str(
                if self.item.healthy() {
                    "healthy"
                } else {
                    "broken"
                }
                .into(),
            ),
            "archivename" => FormatValue::Str(self.archive_name.to_string()),
            "archiveid" => FormatValue::Str(self.archive_id.to_string()),
            _ => return None,
        })
    }

    /// The `--json-lines` object: the fixed keys in borg's order (with `path_b64` for
    /// non-UTF-8 paths), then `archivename`/`archiveid` and the computed keys the format uses.
    pub fn json(&self, format_keys: &[String]) -> Value {
        let (mode, _, source) = self.mode_and_extra();
        let mut m = Map::new();
        for k in ["archivename", "archiveid"] {
            if format_keys.iter().any(|f| f == k) {
                let v = if k == "archivename" {
                    self.archive_name
                } else {
                    self.archive_id
                };
                m.insert(k.into(), Value::from(v));
            }
        }
        m.insert(
            "type".into(),
            Value::from(&filemode(self.item.mode.unwrap_or(0))[..1]),
        );
        m.insert("mode".into(), Value::from(mode.clone()));
        m.insert("user".into(), format_value_json(self.user()));
        m.insert("group".into(), format_value_json(self.group()));
        m.insert("uid".into(), Value::from(self.item.uid.unwrap_or(0)));
        m.insert("gid".into(), Value::from(self.item.gid.unwrap_or(0)));
        insert_text_with_b64(&mut m, "path", &self.item.path);
        m.insert("healthy".into(), Value::from(self.item.healthy()));
        m.insert("source".into(), Value::from(source.clone()));
        m.insert("linktarget".into(), Value::from(source));
        if let Some(raw) = self
            .item
            .source
            .as_deref()
            .filter(|s| std::str::from_utf8(s).is_err())
        {
            insert_text_with_b64(&mut m, "source", raw);
        }
        m.insert("flags".into(), Value::from(self.item.bsdflags.unwrap_or(0)));
        for key in format_keys {
            if m.contains_key(key.as_str()) {
                continue;
            }
            if let Some(v) = self.call_value(key) {
                let v = match v {
                    FormatValue::Time { dt, .. } => Value::from(human::isoformat_us(&dt)),
                    other => format_value_json(other),
                };
                m.insert(key.clone(), v);
            }
        }
        Value::Object(m)
    }
}

fn format_value_json(v: FormatValue) -> Value {
    match v {
        FormatValue::Str(s) => Value::from(s),
        FormatValue::Int(i) => Value::from(i),
        FormatValue::Float(f) => Value::from(f),
        FormatValue::Bool(b) => Value::from(b),
        FormatValue::None => Value::Null,
        FormatValue::Time { dt, .. } => Value::from(human::isoformat_us(&dt)),
    }
}

/// One archive as `list REPO` shows it; `meta` is loaded only when the format needs it.
pub struct ArchiveView<'a> {
    pub name: &'a [u8],
    pub id_hex: String,
    pub start: DateTime<Utc>,
    pub meta: Option<&'a ArchiveMeta>,
    pub tam_verified: bool,
}

/// Archive-list keys that need the archive metadata object.
pub const ARCHIVE_META_KEYS: &[&str] = &[
    "comment",
    "bcomment",
    "end",
    "command_line",
    "hostname",
    "username",
    "tam",
];

/// Shell-quote one word as Python's `shlex.quote`.
pub fn shell_quote(word: &str) -> String {
    if word.is_empty() {
        return "''".into();
    }
    let safe = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

impl ArchiveView<'_> {
    fn time(&self, ts: &DateTime<Utc>) -> FormatValue {
        FormatValue::Time {
            dt: human::archive_time_local(ts),
            default_fmt: TIME_FMT,
        }
    }

    fn meta_text(&self, f: impl Fn(&ArchiveMeta) -> &[u8]) -> String {
        self.meta.map(|m| display_bytes(f(m))).unwrap_or_default()
    }

    fn end(&self) -> DateTime<Utc> {
        self.meta.and_then(|m| m.end().ok()).unwrap_or(self.start)
    }

    fn cmdline(&self) -> Vec<String> {
        self.meta
            .map(|m| m.cmdline.iter().map(|a| display_bytes(a)).collect())
            .unwrap_or_default()
    }

    /// The value of a key for text output.
    pub fn value(&self, key: &str) -> Option<FormatValue> {
        if let Some(v) = fixed_key(key) {
            return Some(v.into());
        }
        Some(match key {
            "archive" | "name" | "barchive" => FormatValue::Str(display_bytes(self.name)),
            "id" => FormatValue::Str(self.id_hex.clone()),
            "start" | "time" => self.time(&self.start),
            "end" => self.time(&self.end()),
            "comment" | "bcomment" => FormatValue::Str(self.meta_text(|m| &m.comment)),
            "hostname" => FormatValue::Str(self.meta_text(|m| &m.hostname)),
            "username" => FormatValue::Str(self.meta_text(|m| &m.username)),
            "command_line" => FormatValue::Str(
                self.cmdline()
                    .iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "tam" => FormatValue::Str(
                if self.tam_verified {
                    "verified"
                } else {
                    "none"
                }
                .into(),
            ),
            _ => return None,
        })
    }

    /// The `list --json` object: name, id, times, plus the metadata keys the format uses.
    pub fn json(&self, format_keys: &[String]) -> Value {
        let mut m = Map::new();
        insert_text_with_b64(&mut m, "archive", self.name);
        insert_text_with_b64(&mut m, "barchive", self.name);
        m.insert("id".into(), Value::from(self.id_hex.clone()));
        insert_text_with_b64(&mut m, "name", self.name);
        let start = human::isoformat_archive_time(&self.start);
        m.insert("start".into(), Value::from(start.clone()));
        m.insert("time".into(), Value::from(start));
        for key in format_keys {
            let v = match key.as_str() {
                "comment" | "bcomment" => Value::from(self.meta_text(|m| &m.comment)),
                "hostname" => Value::from(self.meta_text(|m| &m.hostname)),
                "username" => Value::from(self.meta_text(|m| &m.username)),
                "end" => Value::from(human::isoformat_archive_time(&self.end())),
                "command_line" => Value::from(self.cmdline()),
                "tam" => Value::from(if self.tam_verified {
                    "verified"
                } else {
                    "none"
                }),
                _ => continue,
            };
            m.insert(key.clone(), v);
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filemode_matches_python() {
        assert_eq!(filemode(0o100644), "-rw-r--r--");
        assert_eq!(filemode(0o040755), "drwxr-xr-x");
        assert_eq!(filemode(0o120777), "lrwxrwxrwx");
        assert_eq!(filemode(0o010644), "prw-r--r--");
        assert_eq!(filemode(0o104755), "-rwsr-xr-x");
        assert_eq!(filemode(0o041777), "drwxrwxrwt");
        assert_eq!(filemode(0o102644), "-rw-r-Sr--");
    }

    #[test]
    fn shell_quote_matches_python() {
        assert_eq!(shell_quote("borg"), "borg");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shell_quote("../repos/x::a1"), "../repos/x::a1");
    }
}
