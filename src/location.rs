//! Repository locations and `REPO::ARCHIVE` (cli.md §3): local paths, `file://`, `ssh://`,
//! scp style, BORG_REPO, placeholders.
//!
//! Errors: an unparsable location is borg's argparse message `Invalid location format: "…"`
//! (kind `Error`, the CLI prefixes `argument …: `); placeholder problems are
//! `InvalidPlaceholder` / `PlaceholderError`; a malformed format string (`Single '{'
//! encountered in format string`, …) is Python's ValueError text, again kind `Error`.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, FixedOffset, Local, Offset, TimeZone, Timelike, Utc};

use crate::errors::{Error, ErrorKind, Result};

/// How the repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// A local path (borg's `file`).
    Local,
    /// Through `ssh` to `borg serve`.
    Ssh,
}

/// A parsed repository location, optionally with an archive name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub proto: Proto,
    pub user: Option<String>,
    /// Host name or address, IPv6 without its brackets.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Normalised path as given (relative local paths stay relative; remote relative paths
    /// keep their `/./` or `~` form).
    pub path: String,
    pub archive: Option<String>,
    /// The text as given (may contain placeholders); with BORG_REPO, its raw value (plus the
    /// `::ARCHIVE` text given).
    pub raw: String,
    /// The text after placeholder expansion (with BORG_REPO: `repo` or `repo::archive`).
    pub processed: String,
}

/// An argparse-style failure (rc 2): the CLI prefixes `argument NAME: `.
fn arg_error(message: String) -> Error {
    Error {
        kind: ErrorKind::Error,
        message,
    }
}

fn invalid_location(processed: &str) -> Error {
    arg_error(format!("Invalid location format: \"{processed}\""))
}

/// The pieces one location syntax yields.
struct Parts {
    proto: Proto,
    user: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: String,
    archive: Option<String>,
}

impl Location {
    /// Parse a location argument now, falling back to `BORG_REPO` for `::`, `::ARCHIVE` and
    /// the empty text (§3.3).
    pub fn parse(text: &str) -> Result<Location> {
        let borg_repo = std::env::var("BORG_REPO").ok();
        Location::parse_with(text, None, borg_repo.as_deref())
    }

    /// Parse with `{now}`/`{utcnow}` taken from `now` (when given) and an explicit BORG_REPO.
    pub fn parse_with(
        text: &str,
        now: Option<DateTime<Utc>>,
        borg_repo: Option<&str>,
    ) -> Result<Location> {
        let processed = replace_placeholders(text, now)?;
        if let Some(parts) = parse_parts(&processed) {
            return Ok(Location::from_parts(parts, text.to_string(), processed));
        }
        let env_archive = match processed.as_str() {
            "" | "::" => None,
            s => match s.strip_prefix("::") {
                Some(a) if !a.is_empty() && !a.contains('/') => Some(a.to_string()),
                _ => return Err(invalid_location(&processed)),
            },
        };
        let Some(repo_raw) = borg_repo else {
            return Err(invalid_location(&processed));
        };
        let repo = replace_placeholders(repo_raw, now)?;
        let (raw, processed) = match &env_archive {
            None => (repo_raw.to_string(), repo.clone()),
            Some(a) => (format!("{repo_raw}{text}"), format!("{repo}::{a}")),
        };
        let Some(mut parts) = parse_parts(&repo) else {
            return Err(invalid_location(&processed));
        };
        parts.archive = env_archive;
        Ok(Location::from_parts(parts, raw, processed))
    }

    fn from_parts(p: Parts, raw: String, processed: String) -> Location {
        Location {
            proto: p.proto,
            user: p.user,
            host: p.host,
            port: p.port,
            path: p.path,
            archive: p.archive,
            raw,
            processed,
        }
    }

    /// borg's `location_validator`: `archive` = `Some(true)` requires an archive,
    /// `Some(false)` forbids one; `proto` restricts to local or remote.
    pub fn validate(text: &str, archive: Option<bool>, proto: Option<Proto>) -> Result<Location> {
        let loc = Location::parse(text)?;
        loc.check(text, archive, proto)?;
        Ok(loc)
    }

    /// The checks of [`Location::validate`] on a parsed location; `text` is the argument.
    pub fn check(&self, text: &str, archive: Option<bool>, proto: Option<Proto>) -> Result<()> {
        match (archive, &self.archive) {
            (Some(true), None) => {
                return Err(arg_error(format!("\"{text}\": No archive specified")))
            }
            (Some(false), Some(_)) => {
                return Err(arg_error(format!(
                    "\"{text}\": No archive can be specified"
                )))
            }
            _ => {}
        }
        match proto {
            Some(Proto::Local) if self.proto != Proto::Local => {
                Err(arg_error(format!("\"{text}\": Repository must be local")))
            }
            Some(Proto::Ssh) if self.proto != Proto::Ssh => {
                Err(arg_error(format!("\"{text}\": Repository must be remote")))
            }
            _ => Ok(()),
        }
    }

    /// Re-expand the raw text with `{now}`/`{utcnow}` at `timestamp` (`--timestamp`).
    pub fn with_timestamp(&self, timestamp: DateTime<Utc>) -> Result<Location> {
        let borg_repo = std::env::var("BORG_REPO").ok();
        Location::parse_with(&self.raw, Some(timestamp), borg_repo.as_deref())
    }

    /// The same repository without the archive part.
    pub fn omit_archive(&self) -> Location {
        let mut loc = self.clone();
        loc.archive = None;
        loc.raw = split_at_double_colon(&loc.raw).to_string();
        loc.processed = split_at_double_colon(&loc.processed).to_string();
        loc
    }

    pub fn is_remote(&self) -> bool {
        self.proto == Proto::Ssh
    }

    /// The host as written in URLs: IPv6 addresses in brackets.
    pub fn host_for_url(&self) -> Option<String> {
        self.host.as_ref().map(|h| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.clone()
            }
        })
    }

    /// For a local repository: its absolute, normalised path (relative paths resolved
    /// against the current directory).
    pub fn absolute_path(&self) -> PathBuf {
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            match std::env::current_dir() {
                Ok(cwd) => format!("{}/{}", cwd.to_string_lossy(), self.path),
                Err(_) => self.path.clone(),
            }
        };
        PathBuf::from(normpath_str(&path))
    }

    /// The location as borg shows it (`Location:` line, JSON `repository.location`):
    /// local → absolute path; remote → `ssh://[user@]host[:port]/path` with relative paths
    /// as `/./path` and home paths as `/~…`.
    pub fn canonical_path(&self) -> String {
        match self.proto {
            Proto::Local => self.absolute_path().to_string_lossy().into_owned(),
            Proto::Ssh => {
                let path = if self.path.starts_with('~') {
                    format!("/{}", self.path)
                } else if !self.path.starts_with('/') {
                    format!("/./{}", self.path)
                } else {
                    self.path.clone()
                };
                let user = self
                    .user
                    .as_ref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default();
                let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
                format!(
                    "ssh://{user}{}{port}{path}",
                    self.host_for_url().unwrap_or_default()
                )
            }
        }
    }

    /// The key file name borg derives from the location (`to_key_filename` without the keys
    /// directory): non-word characters of the path as given (`kf` → `kf`, `/srv/r` → `srv_r`)
    /// → `_`, remote ones prefixed by `host__`, ≤ 100 chars.
    pub fn key_file_name(&self) -> String {
        let wordify = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        // borg uses the location's own path here, so a relative local path stays relative
        let mut name = wordify(&self.path).trim_matches('_').to_string();
        if self.proto == Proto::Ssh {
            name = format!("{}__{name}", wordify(self.host.as_deref().unwrap_or("")));
        }
        name.chars().take(100).collect()
    }
}

/// borg's `str(location)`: `proto='file', user=None, host=None, port=None, path='/r', archive=None`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<String>| {
            v.as_deref()
                .map(crate::python::repr)
                .unwrap_or_else(|| "None".into())
        };
        let proto = match self.proto {
            Proto::Local => "'file'",
            Proto::Ssh => "'ssh'",
        };
        let port = self
            .port
            .map(|p| p.to_string())
            .unwrap_or_else(|| "None".into());
        write!(
            f,
            "proto={proto}, user={}, host={}, port={port}, path={}, archive={}",
            opt(&self.user),
            opt(&self.host),
            crate::python::repr(&self.path),
            opt(&self.archive)
        )
    }
}

fn split_at_double_colon(s: &str) -> &str {
    s.split("::").next().unwrap_or(s)
}

fn normpath_str(p: &str) -> String {
    // only ASCII `/` and `.` are touched: the result stays valid UTF-8
    String::from_utf8_lossy(&crate::patterns::normpath(p.as_bytes())).into_owned()
}

/// `os.path.normpath`, except that a leading `/./` (remote relative path) is kept.
fn normpath_special(p: &str) -> String {
    let relative = p.starts_with("/./");
    let p = normpath_str(p);
    if relative {
        format!("/.{p}")
    } else {
        p
    }
}

/// Split `path[::archive]`: the path ends at the first `::`; an archive must be non-empty
/// and free of `/`. `None` if the path is empty or the archive invalid.
fn split_path_archive(s: &str) -> Option<(&str, Option<&str>)> {
    let (path, archive) = match s.find("::") {
        Some(i) => (&s[..i], Some(&s[i + 2..])),
        None => (s, None),
    };
    if path.is_empty() || archive.is_some_and(|a| a.is_empty() || a.contains('/')) {
        return None;
    }
    Some((path, archive))
}

/// A host at the start of `s`: a bracketed IPv6 address or a name without `:`/`/` (not
/// starting with `[` nor ending with `]`). Returns (host as written, rest).
fn take_host(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')?;
        let addr = &inner[..end];
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        return Some((&s[..end + 2], &s[end + 2..]));
    }
    let end = s.find([':', '/']).unwrap_or(s.len());
    let host = &s[..end];
    if host.is_empty() || host.ends_with(']') {
        return None;
    }
    Some((host, &s[end..]))
}

/// An optional `user@` at the start of `s` (user without `@`, `:`, `/`).
fn take_user(s: &str) -> Option<(&str, &str)> {
    let end = s.find(['@', ':', '/'])?;
    (end > 0 && s.as_bytes()[end] == b'@').then(|| (&s[..end], &s[end + 1..]))
}

fn strip_brackets(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn parse_parts(text: &str) -> Option<Parts> {
    parse_ssh(text)
        .or_else(|| parse_file_url(text))
        .or_else(|| parse_scp(text))
}

/// `ssh://[user@]host[:port]/path[::archive]`
fn parse_ssh(text: &str) -> Option<Parts> {
    let rest = text.strip_prefix("ssh://")?;
    let attempt = |user: Option<&str>, s: &str| -> Option<Parts> {
        let (host, s) = take_host(s)?;
        let (port, s) = match s.strip_prefix(':') {
            Some(p) => {
                let digits = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
                if digits == 0 {
                    return None;
                }
                (p[..digits].parse::<u32>().ok()?, &p[digits..])
            }
            None => (0, s),
        };
        if !s.starts_with('/') || s.len() < 2 {
            return None;
        }
        let (path, archive) = split_path_archive(s)?;
        if path.len() < 2 {
            return None;
        }
        Some(Parts {
            proto: Proto::Ssh,
            user: user.map(str::to_string),
            host: Some(strip_brackets(host)),
            // borg: port 0 means "not given"
            port: if port == 0 {
                None
            } else {
                Some(u16::try_from(port).ok()?)
            },
            path: normpath_special(path),
            archive: archive.map(str::to_string),
        })
    };
    take_user(rest)
        .and_then(|(user, s)| attempt(Some(user), s))
        .or_else(|| attempt(None, rest))
}

/// `file://[server]/path[::archive]`
fn parse_file_url(text: &str) -> Option<Parts> {
    let rest = text.strip_prefix("file://")?;
    let slash = rest.find('/')?;
    let (path, archive) = split_path_archive(rest)?;
    if path.len() <= slash + 1 {
        return None;
    }
    Some(Parts {
        proto: Proto::Local,
        user: None,
        host: None,
        port: None,
        path: normpath_special(path),
        archive: archive.map(str::to_string),
    })
}

/// `[[user@]host:]path[::archive]` — scp style, and plain local paths.
fn parse_scp(text: &str) -> Option<Parts> {
    let scp_path = |s: &str| -> Option<(String, Option<String>)> {
        if s.starts_with(':') || s.starts_with("//") || s.starts_with("ssh://") {
            return None;
        }
        let (path, archive) = split_path_archive(s)?;
        Some((normpath_special(path), archive.map(str::to_string)))
    };
    let with_host = |user: Option<&str>, s: &str| -> Option<Parts> {
        let (host, s) = take_host(s)?;
        let (path, archive) = scp_path(s.strip_prefix(':')?)?;
        Some(Parts {
            proto: Proto::Ssh,
            user: user.map(str::to_string),
            host: Some(strip_brackets(host)),
            port: None,
            path,
            archive,
        })
    };
    take_user(text)
        .and_then(|(user, s)| with_host(Some(user), s))
        .or_else(|| with_host(None, text))
        .or_else(|| {
            let (path, archive) = scp_path(text)?;
            Some(Parts {
                proto: Proto::Local,
                user: None,
                host: None,
                port: None,
                path,
                archive,
            })
        })
}

/// borg's `archivename_validator`: placeholders expanded; non-empty, no `/`, no `::`.
pub fn validate_archive_name(text: &str) -> Result<String> {
    let name = replace_placeholders(text, None)?;
    if name.is_empty() || name.contains('/') || name.contains("::") {
        return Err(arg_error(format!("Invalid archive name: \"{name}\"")));
    }
    Ok(name)
}

// ---------------------------------------------------------------------------------------------
// placeholders

/// Expand borg's placeholders (§3.4) with Python `str.format` rules. `now` overrides the time
/// used for `{now}` and `{utcnow}` (borg's `--timestamp` re-expansion); `{unixtime}` always
/// uses the current time, as in borg.
pub fn replace_placeholders(text: &str, now: Option<DateTime<Utc>>) -> Result<String> {
    let data = PlaceholderData::new(now);
    format_line(text, &data)
}

/// A value of the placeholder table.
#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Int(i64),
    /// A time with its zone name (`%Z`).
    Time(DateTime<FixedOffset>, String),
}

struct PlaceholderData {
    current: DateTime<Utc>,
    time: DateTime<Utc>,
}

const KEYS: [&str; 13] = [
    "pid",
    "fqdn",
    "reverse-fqdn",
    "hostname",
    "now",
    "utcnow",
    "unixtime",
    "user",
    "uuid4",
    "borgversion",
    "borgmajor",
    "borgminor",
    "borgpatch",
];

impl PlaceholderData {
    fn new(now: Option<DateTime<Utc>>) -> PlaceholderData {
        let current = Utc::now();
        PlaceholderData {
            current,
            time: now.unwrap_or(current),
        }
    }

    fn get(&self, key: &str) -> Option<Value> {
        let version = crate::BORG_COMPAT_VERSION;
        let version_part = |n: usize| version.split('.').take(n).collect::<Vec<_>>().join(".");
        Some(match key {
            "pid" => Value::Int(std::process::id() as i64),
            "fqdn" => Value::Str(sys::fqdn().to_string()),
            "reverse-fqdn" => {
                Value::Str(sys::fqdn().split('.').rev().collect::<Vec<_>>().join("."))
            }
            "hostname" => Value::Str(
                non_empty_env("BORG_HOSTNAME").unwrap_or_else(|| sys::short_hostname().to_string()),
            ),
            "now" => {
                let local = self.time.with_timezone(&Local);
                let offset = local.offset().fix();
                Value::Time(
                    local.with_timezone(&offset),
                    sys::local_zone_name(self.time.timestamp(), offset),
                )
            }
            "utcnow" => Value::Time(self.time.with_timezone(&Utc.fix()), "UTC".to_string()),
            "unixtime" => Value::Int(self.current.timestamp()),
            "user" => Value::Str(non_empty_env("BORG_USERNAME").unwrap_or_else(sys::os_username)),
            "uuid4" => Value::Str(uuid4()),
            "borgversion" => Value::Str(version.to_string()),
            "borgmajor" => Value::Str(version_part(1)),
            "borgminor" => Value::Str(version_part(2)),
            "borgpatch" => Value::Str(version_part(3)),
            _ => return None,
        })
    }

    /// Python's repr of the table, for `PlaceholderError` messages.
    fn repr(&self) -> String {
        let items: Vec<String> = KEYS
            .iter()
            .map(|k| {
                let v = match self.get(k) {
                    Some(Value::Str(s)) => crate::python::repr(&s),
                    Some(Value::Int(i)) => i.to_string(),
                    _ => "<borg.helpers.parseformat.DatetimeWrapper object>".to_string(),
                };
                format!("'{k}': {v}")
            })
            .collect();
        format!("{{{}}}", items.join(", "))
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// One piece of a format string.
enum Piece {
    Literal(String),
    Field {
        name: String,
        conversion: Option<char>,
        spec: String,
    },
}

/// Python's format-string tokenizer (`Formatter().parse`); errors are its ValueError texts.
/// Pieces are produced lazily so that errors surface in Python's order.
struct Markup<'a> {
    chars: Vec<char>,
    pos: usize,
    _text: &'a str,
}

impl<'a> Markup<'a> {
    fn new(text: &'a str) -> Markup<'a> {
        Markup {
            chars: text.chars().collect(),
            pos: 0,
            _text: text,
        }
    }

    fn next_piece(&mut self) -> std::result::Result<Option<Piece>, String> {
        let n = self.chars.len();
        if self.pos >= n {
            return Ok(None);
        }
        let mut literal = String::new();
        while self.pos < n {
            let c = self.chars[self.pos];
            self.pos += 1;
            if c != '{' && c != '}' {
                literal.push(c);
                continue;
            }
            let at_end = self.pos >= n;
            if c == '}' && (at_end || self.chars[self.pos] != '}') {
                return Err("Single '}' encountered in format string".into());
            }
            if at_end {
                return Err("Single '{' encountered in format string".into());
            }
            if self.chars[self.pos] == c {
                // doubled brace: a literal one
                self.pos += 1;
                literal.push(c);
                return Ok(Some(Piece::Literal(literal)));
            }
            if !literal.is_empty() {
                // return the text first; the field follows on the next call
                self.pos -= 1;
                return Ok(Some(Piece::Literal(literal)));
            }
            return self.field().map(Some);
        }
        Ok(Some(Piece::Literal(literal)))
    }

    /// After `{`: name, `!conversion`, `:spec`, up to the matching `}`.
    fn field(&mut self) -> std::result::Result<Piece, String> {
        let n = self.chars.len();
        let start = self.pos;
        let mut end_char = None;
        while self.pos < n {
            let c = self.chars[self.pos];
            self.pos += 1;
            match c {
                '{' => return Err("unexpected '{' in field name".into()),
                '[' => {
                    while self.pos < n && self.chars[self.pos] != ']' {
                        self.pos += 1;
                    }
                }
                '}' | ':' | '!' => {
                    end_char = Some(c);
                    break;
                }
                _ => {}
            }
        }
        let name_end = if end_char.is_some() {
            self.pos - 1
        } else {
            self.pos
        };
        let name: String = self.chars[start..name_end].iter().collect();
        let mut conversion = None;
        match end_char {
            Some('}') => {
                return Ok(Piece::Field {
                    name,
                    conversion,
                    spec: String::new(),
                })
            }
            None => return Err("expected '}' before end of string".into()),
            _ => {}
        }
        if end_char == Some('!') {
            if self.pos >= n {
                return Err("end of string while looking for conversion specifier".into());
            }
            conversion = Some(self.chars[self.pos]);
            self.pos += 1;
            if self.pos < n {
                let c = self.chars[self.pos];
                self.pos += 1;
                if c == '}' {
                    return Ok(Piece::Field {
                        name,
                        conversion,
                        spec: String::new(),
                    });
                }
                if c != ':' {
                    return Err("expected ':' after conversion specifier".into());
                }
            }
        }
        let spec_start = self.pos;
        let mut depth = 1;
        while self.pos < n {
            let c = self.chars[self.pos];
            self.pos += 1;
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        let spec = self.chars[spec_start..self.pos - 1].iter().collect();
                        return Ok(Piece::Field {
                            name,
                            conversion,
                            spec,
                        });
                    }
                }
                _ => {}
            }
        }
        Err("unmatched '{' in format spec".into())
    }
}

/// borg's `format_line`: every field must be a known key without conversion, then the text is
/// formatted.
fn format_line(text: &str, data: &PlaceholderData) -> Result<String> {
    let mut markup = Markup::new(text);
    while let Some(piece) = markup.next_piece().map_err(arg_error)? {
        if let Piece::Field {
            name, conversion, ..
        } = piece
        {
            if name.is_empty() {
                continue;
            }
            if conversion.is_some() || !KEYS.contains(&name.as_str()) {
                return Err(Error::new(
                    ErrorKind::InvalidPlaceholder,
                    [name.as_str(), text],
                ));
            }
        }
    }
    build_string(text, data, 2).map_err(|(class, message)| {
        Error::new(
            ErrorKind::PlaceholderError,
            [text.to_string(), data.repr(), class.to_string(), message],
        )
    })
}

type FormatFailure = (&'static str, String);

fn value_error(message: impl Into<String>) -> FormatFailure {
    ("ValueError", message.into())
}

/// `str.format_map` with nested format specs (Python allows two levels).
fn build_string(
    text: &str,
    data: &PlaceholderData,
    depth: u32,
) -> std::result::Result<String, FormatFailure> {
    if depth == 0 {
        return Err(value_error("Max string recursion exceeded"));
    }
    let mut out = String::new();
    let mut markup = Markup::new(text);
    while let Some(piece) = markup.next_piece().map_err(value_error)? {
        match piece {
            Piece::Literal(s) => out.push_str(&s),
            Piece::Field {
                name,
                conversion,
                spec,
            } => {
                let first_len = name.find(['.', '[']).unwrap_or(name.len());
                let first = &name[..first_len];
                if first.is_empty() || first.chars().all(|c| c.is_ascii_digit()) {
                    return Err(value_error("Format string contains positional fields"));
                }
                let value = data
                    .get(first)
                    .ok_or_else(|| ("KeyError", crate::python::repr(first)))?;
                if first_len < name.len() {
                    return Err((
                        "AttributeError",
                        format!("unsupported field access {}", crate::python::repr(&name)),
                    ));
                }
                let spec = if spec.contains('{') {
                    build_string(&spec, data, depth - 1)?
                } else {
                    spec
                };
                let value = match conversion {
                    None => value,
                    Some('s') => Value::Str(value_str(&value)),
                    Some('r') | Some('a') => Value::Str(match &value {
                        Value::Str(s) => crate::python::repr(s),
                        _ => value_str(&value),
                    }),
                    Some(c) => {
                        return Err(value_error(format!("Unknown conversion specifier {c}")))
                    }
                };
                out.push_str(&format_value(&value, &spec)?);
            }
        }
    }
    Ok(out)
}

/// `str(value)`.
fn value_str(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Time(t, _) => t.format("%Y-%m-%d %H:%M:%S%:z").to_string(),
    }
}

fn format_value(value: &Value, spec: &str) -> std::result::Result<String, FormatFailure> {
    match value {
        Value::Time(t, zone) => Ok(if spec.is_empty() {
            strftime(t, zone, "%Y-%m-%dT%H:%M:%S")
        } else {
            strftime(t, zone, spec)
        }),
        Value::Str(s) => format_str(s, spec).map_err(value_error),
        Value::Int(i) => format_int(*i, spec).map_err(value_error),
    }
}

/// A parsed Python format specification (`[[fill]align][sign][z][#][0][width][,|_][.prec][type]`).
#[derive(Debug, Default)]
struct FormatSpec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    no_neg_zero: bool,
    alternate: bool,
    zero: bool,
    width: Option<usize>,
    grouping: Option<char>,
    precision: Option<usize>,
    kind: Option<char>,
}

fn parse_spec(spec: &str, type_name: &str) -> std::result::Result<FormatSpec, String> {
    let c: Vec<char> = spec.chars().collect();
    let mut f = FormatSpec::default();
    let mut i = 0;
    let is_align = |ch: char| "<>=^".contains(ch);
    if c.len() >= 2 && is_align(c[1]) {
        f.fill = Some(c[0]);
        f.align = Some(c[1]);
        i = 2;
    } else if !c.is_empty() && is_align(c[0]) {
        f.align = Some(c[0]);
        i = 1;
    }
    if i < c.len() && "+- ".contains(c[i]) {
        f.sign = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == 'z' {
        f.no_neg_zero = true;
        i += 1;
    }
    if i < c.len() && c[i] == '#' {
        f.alternate = true;
        i += 1;
    }
    if f.fill.is_none() && i < c.len() && c[i] == '0' {
        f.zero = true;
        i += 1;
    }
    let digits = |i: &mut usize| -> std::result::Result<Option<usize>, String> {
        let start = *i;
        while *i < c.len() && c[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i == start {
            return Ok(None);
        }
        let s: String = c[start..*i].iter().collect();
        s.parse()
            .map(Some)
            .map_err(|_| "Too many decimal digits in format string".to_string())
    };
    f.width = digits(&mut i)?;
    if i < c.len() && (c[i] == ',' || c[i] == '_') {
        f.grouping = Some(c[i]);
        i += 1;
        if i < c.len() && (c[i] == ',' || c[i] == '_') {
            return Err("Cannot specify both ',' and '_'.".into());
        }
    }
    if i < c.len() && c[i] == '.' {
        i += 1;
        f.precision = digits(&mut i)?;
        if f.precision.is_none() {
            return Err("Format specifier missing precision".into());
        }
    }
    if c.len() - i > 1 {
        return Err(format!(
            "Invalid format specifier '{spec}' for object of type '{type_name}'"
        ));
    }
    f.kind = c.get(i).copied();
    if let Some(g) = f.grouping {
        let kind = f.kind.unwrap_or(if type_name == "str" { 's' } else { 'd' });
        let ok = "defgEFG%".contains(kind) || (g == '_' && "boxX".contains(kind));
        if !ok {
            return Err(format!("Cannot specify '{g}' with '{kind}'."));
        }
    }
    Ok(f)
}

/// Pad `body` to the width with the fill and alignment (`=` pads after `prefix`).
fn align(prefix: &str, body: &str, f: &FormatSpec, default_align: char) -> String {
    let fill = f.fill.unwrap_or(if f.zero { '0' } else { ' ' });
    let align = f.align.unwrap_or(if f.zero && default_align == '>' {
        '='
    } else {
        default_align
    });
    let len = prefix.chars().count() + body.chars().count();
    let pad = f.width.unwrap_or(0).saturating_sub(len);
    let fill_n = |n: usize| fill.to_string().repeat(n);
    match align {
        '<' => format!("{prefix}{body}{}", fill_n(pad)),
        '^' => format!("{}{prefix}{body}{}", fill_n(pad / 2), fill_n(pad - pad / 2)),
        '=' => format!("{prefix}{}{body}", fill_n(pad)),
        _ => format!("{}{prefix}{body}", fill_n(pad)),
    }
}

fn format_str(s: &str, spec: &str) -> std::result::Result<String, String> {
    let f = parse_spec(spec, "str")?;
    match f.kind {
        None | Some('s') => {}
        Some(k) => {
            return Err(format!(
                "Unknown format code '{k}' for object of type 'str'"
            ))
        }
    }
    match f.sign {
        Some(' ') => return Err("Space not allowed in string format specifier".into()),
        Some(_) => return Err("Sign not allowed in string format specifier".into()),
        None => {}
    }
    if f.no_neg_zero {
        return Err("Negative zero coercion (z) not allowed in string format specifier".into());
    }
    if f.alternate {
        return Err("Alternate form (#) not allowed in string format specifier".into());
    }
    if f.align == Some('=') {
        return Err("'=' alignment not allowed in string format specifier".into());
    }
    let body: String = match f.precision {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    Ok(align("", &body, &f, '<'))
}

fn format_int(v: i64, spec: &str) -> std::result::Result<String, String> {
    let f = parse_spec(spec, "int")?;
    let kind = f.kind.unwrap_or('d');
    if !"bcdoxXn".contains(kind) {
        if "eEfFgG%".contains(kind) {
            return Err(format!(
                "Unsupported float format code '{kind}' for a placeholder"
            ));
        }
        return Err(format!(
            "Unknown format code '{kind}' for object of type 'int'"
        ));
    }
    if f.precision.is_some() {
        return Err("Precision not allowed in integer format specifier".into());
    }
    if f.no_neg_zero {
        return Err("Negative zero coercion (z) not allowed in integer format specifier".into());
    }
    if kind == 'c' {
        if f.sign.is_some() {
            return Err("Sign not allowed with integer format specifier 'c'".into());
        }
        if f.alternate {
            return Err("Alternate form (#) not allowed with integer format specifier 'c'".into());
        }
        let ch = u32::try_from(v)
            .ok()
            .and_then(char::from_u32)
            .ok_or("%c arg not in range(0x110000)")?;
        return Ok(align("", &ch.to_string(), &f, '>'));
    }
    let magnitude = v.unsigned_abs();
    let (digits, group_size, alt_prefix) = match kind {
        'b' => (format!("{magnitude:b}"), 4, "0b"),
        'o' => (format!("{magnitude:o}"), 4, "0o"),
        'x' => (format!("{magnitude:x}"), 4, "0x"),
        'X' => (format!("{magnitude:X}"), 4, "0X"),
        _ => (magnitude.to_string(), 3, ""),
    };
    let mut prefix = match (v < 0, f.sign) {
        (true, _) => "-".to_string(),
        (false, Some('+')) => "+".to_string(),
        (false, Some(' ')) => " ".to_string(),
        _ => String::new(),
    };
    if f.alternate {
        prefix.push_str(alt_prefix);
    }
    let Some(sep) = f.grouping else {
        return Ok(align(&prefix, &digits, &f, '>'));
    };
    let group = |d: &str| -> String {
        let chars: Vec<char> = d.chars().collect();
        let mut out = String::new();
        for (i, ch) in chars.iter().enumerate() {
            if i > 0 && (chars.len() - i).is_multiple_of(group_size) {
                out.push(sep);
            }
            out.push(*ch);
        }
        out
    };
    let zero_fill = f.fill.is_none() && f.zero && f.align.is_none();
    if !zero_fill {
        return Ok(align(&prefix, &group(&digits), &f, '>'));
    }
    // zero padding takes part in the grouping
    let width = f.width.unwrap_or(0);
    let mut padded = digits;
    loop {
        let grouped = group(&padded);
        if prefix.chars().count() + grouped.chars().count() >= width {
            return Ok(format!("{prefix}{grouped}"));
        }
        padded.insert(0, '0');
    }
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `datetime.strftime` as Python on glibc does it (C locale): `%z`, `%Z`, `%f` handled first
/// like Python, the rest like glibc (flags `-_0^#`, widths, `E`/`O` modifiers); unknown
/// conversions stay as written.
pub fn strftime(t: &DateTime<FixedOffset>, zone: &str, fmt: &str) -> String {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.get(i) {
            None => {
                out.push('%');
                continue;
            }
            Some('z') => {
                out.push_str(&utc_offset(t));
                i += 1;
                continue;
            }
            Some('Z') => {
                out.push_str(zone);
                i += 1;
                continue;
            }
            Some('f') => {
                out.push_str(&format!("{:06}", t.nanosecond() / 1000 % 1_000_000));
                i += 1;
                continue;
            }
            _ => {}
        }
        let spec_start = i - 1;
        while i < chars.len() && "-_0^#".contains(chars[i]) {
            i += 1;
        }
        let flags: String = chars[spec_start + 1..i].iter().collect();
        let width_start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let width: Option<usize> = chars[width_start..i]
            .iter()
            .collect::<String>()
            .parse()
            .ok();
        while i < chars.len() && (chars[i] == 'E' || chars[i] == 'O') {
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            out.extend(&chars[spec_start..]);
            break;
        };
        i += 1;
        match glibc_conversion(t, zone, conv) {
            Some(field) => out.push_str(&apply_flags(field, &flags, width)),
            None => out.extend(&chars[spec_start..i]),
        }
    }
    out
}

/// A glibc conversion result before flags: a number (with its default width and padding) or
/// text.
enum TimeField {
    Num(i64, usize, char),
    Text(String),
}

fn utc_offset(t: &DateTime<FixedOffset>) -> String {
    let secs = t.offset().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let mut s = format!("{sign}{:02}{:02}", a / 3600, a % 3600 / 60);
    if !a.is_multiple_of(60) {
        s.push_str(&format!("{:02}", a % 60));
    }
    s
}

fn glibc_conversion(t: &DateTime<FixedOffset>, zone: &str, conv: char) -> Option<TimeField> {
    use TimeField::{Num, Text};
    let wd = t.weekday().num_days_from_sunday() as usize;
    let month = t.month0() as usize;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    } as i64;
    let am_pm = if t.hour() < 12 { "AM" } else { "PM" };
    let sub = |f: &str| Text(strftime(t, zone, f));
    Some(match conv {
        'a' => Text(WEEKDAYS[wd][..3].to_string()),
        'A' => Text(WEEKDAYS[wd].to_string()),
        'b' | 'h' => Text(MONTHS[month][..3].to_string()),
        'B' => Text(MONTHS[month].to_string()),
        'c' => sub("%a %b %e %H:%M:%S %Y"),
        'C' => Num(t.year().div_euclid(100) as i64, 2, '0'),
        'd' => Num(t.day() as i64, 2, '0'),
        'D' | 'x' => sub("%m/%d/%y"),
        'e' => Num(t.day() as i64, 2, ' '),
        'F' => sub("%Y-%m-%d"),
        'g' => Num(t.iso_week().year().rem_euclid(100) as i64, 2, '0'),
        'G' => Num(t.iso_week().year() as i64, 1, '0'),
        'H' => Num(t.hour() as i64, 2, '0'),
        'I' => Num(hour12, 2, '0'),
        'j' => Num(t.ordinal() as i64, 3, '0'),
        'k' => Num(t.hour() as i64, 2, ' '),
        'l' => Num(hour12, 2, ' '),
        'm' => Num(t.month() as i64, 2, '0'),
        'M' => Num(t.minute() as i64, 2, '0'),
        'n' => Text("\n".into()),
        'p' => Text(am_pm.into()),
        'P' => Text(am_pm.to_lowercase()),
        'r' => sub("%I:%M:%S %p"),
        'R' => sub("%H:%M"),
        // glibc's mktime reads the broken-down time as local time
        's' => Num(local_epoch(t), 1, '0'),
        'S' => Num(t.second().min(59) as i64, 2, '0'),
        't' => Text("\t".into()),
        'T' | 'X' => sub("%H:%M:%S"),
        'u' => Num(t.weekday().number_from_monday() as i64, 1, '0'),
        'U' => Num(
            ((t.ordinal0() + 7 - t.weekday().num_days_from_sunday()) / 7) as i64,
            2,
            '0',
        ),
        'V' => Num(t.iso_week().week() as i64, 2, '0'),
        'w' => Num(wd as i64, 1, '0'),
        'W' => Num(
            ((t.ordinal0() + 7 - t.weekday().num_days_from_monday()) / 7) as i64,
            2,
            '0',
        ),
        'y' => Num(t.year().rem_euclid(100) as i64, 2, '0'),
        'Y' => Num(t.year() as i64, 1, '0'),
        'z' => Text(utc_offset(t)),
        'Z' => Text(zone.to_string()),
        '%' => Text("%".into()),
        _ => return None,
    })
}

fn local_epoch(t: &DateTime<FixedOffset>) -> i64 {
    Local
        .from_local_datetime(&t.naive_local())
        .earliest()
        .map(|l| l.timestamp())
        .unwrap_or_else(|| t.timestamp())
}

fn apply_flags(field: TimeField, flags: &str, width: Option<usize>) -> String {
    let pad_flag = flags.chars().rev().find(|c| "-_0".contains(*c));
    let (body, default_width, default_pad) = match field {
        TimeField::Num(v, w, p) => (v.to_string(), w, Some(p)),
        TimeField::Text(s) => (s, 0, None),
    };
    let mut body = body;
    if flags.contains('^') {
        body = body.to_uppercase();
    } else if flags.contains('#') {
        body = if body.chars().any(|c| c.is_lowercase()) {
            body.to_uppercase()
        } else {
            body.to_lowercase()
        };
    }
    let (pad, width) = match pad_flag {
        // no default padding, but an explicit width still pads with spaces
        Some('-') => (' ', width.unwrap_or(0)),
        Some('_') => (' ', width.unwrap_or(default_width)),
        Some('0') => ('0', width.unwrap_or(default_width)),
        _ => (default_pad.unwrap_or(' '), width.unwrap_or(default_width)),
    };
    let len = body.chars().count();
    if len >= width {
        return body;
    }
    format!("{}{body}", pad.to_string().repeat(width - len))
}

/// Host, user and time-zone facts from the system (borg computes these once).
mod sys {
    use super::*;

    static HOSTNAME: OnceLock<String> = OnceLock::new();
    static FQDN: OnceLock<String> = OnceLock::new();

    fn full_hostname() -> &'static str {
        HOSTNAME.get_or_init(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    /// The first label of the host name (borg's `hostname`).
    pub fn short_hostname() -> &'static str {
        full_hostname().split('.').next().unwrap_or("")
    }

    /// The canonical name of the host from the resolver (borg's `getfqdn`), else the host name.
    pub fn fqdn() -> &'static str {
        FQDN.get_or_init(|| {
            canonical_name(full_hostname()).unwrap_or_else(|| full_hostname().to_string())
        })
    }

    fn canonical_name(host: &str) -> Option<String> {
        let node = std::ffi::CString::new(host).ok()?;
        // SAFETY: zeroed addrinfo is a valid "no hints" value; the result list is freed once.
        unsafe {
            let mut hints: libc::addrinfo = std::mem::zeroed();
            hints.ai_socktype = libc::SOCK_DGRAM;
            hints.ai_flags = libc::AI_CANONNAME;
            let mut res: *mut libc::addrinfo = std::ptr::null_mut();
            if libc::getaddrinfo(node.as_ptr(), std::ptr::null(), &hints, &mut res) != 0
                || res.is_null()
            {
                return None;
            }
            let mut name = None;
            let mut cur = res;
            while !cur.is_null() {
                let canon = (*cur).ai_canonname;
                if !canon.is_null() {
                    let s = std::ffi::CStr::from_ptr(canon)
                        .to_string_lossy()
                        .into_owned();
                    if !s.is_empty() {
                        name = Some(s);
                        break;
                    }
                }
                cur = (*cur).ai_next;
            }
            libc::freeaddrinfo(res);
            name
        }
    }

    /// The login name of the running user, or the uid when it has none.
    pub fn os_username() -> String {
        let uid = nix::unistd::getuid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => user.name,
            _ => uid.to_string(),
        }
    }

    extern "C" {
        // POSIX; not exported by the libc crate
        fn tzset();
    }

    /// The local time-zone abbreviation at `timestamp` (Python's `tm_zone`, e.g. `CET`).
    pub fn local_zone_name(timestamp: i64, offset: FixedOffset) -> String {
        let t = timestamp as libc::time_t;
        // SAFETY: tzset/localtime_r only write into the tm we pass; tm_zone points to static
        // storage of the C library and is copied at once.
        let name = unsafe {
            tzset();
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() || tm.tm_zone.is_null() {
                None
            } else {
                Some(
                    std::ffi::CStr::from_ptr(tm.tm_zone)
                        .to_string_lossy()
                        .into_owned(),
                )
            }
        };
        name.unwrap_or_else(|| {
            utc_offset(
                &Utc.timestamp_opt(timestamp, 0)
                    .single()
                    .unwrap_or_default()
                    .with_timezone(&offset),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (text, borg 1.2.4 Location result: proto, user, host, port, path, archive, canonical, key file name)
    /// or the error message).
    #[allow(clippy::type_complexity)]
    const ORACLE: &[(
        &str,
        std::result::Result<
            (
                &str,
                Option<&str>,
                Option<&str>,
                Option<u16>,
                &str,
                Option<&str>,
                &str,
                &str,
            ),
            &str,
        >,
    )] = &[
        (
            "/abs/repo",
            Ok((
                "file",
                None,
                None,
                None,
                "/abs/repo",
                None,
                "/abs/repo",
                "abs_repo",
            )),
        ),
        (
            "/abs/repo::arch",
            Ok((
                "file",
                None,
                None,
                None,
                "/abs/repo",
                Some("arch"),
                "/abs/repo",
                "abs_repo",
            )),
        ),
        (
            "rel/repo",
            Ok((
                "file", None, None, None, "rel/repo", None, "rel/repo", "rel_repo",
            )),
        ),
        (
            "rel/repo::a-b",
            Ok((
                "file",
                None,
                None,
                None,
                "rel/repo",
                Some("a-b"),
                "rel/repo",
                "rel_repo",
            )),
        ),
        (
            "./repo",
            Ok(("file", None, None, None, "repo", None, "repo", "repo")),
        ),
        (
            "../x/./y//",
            Ok(("file", None, None, None, "../x/y", None, "../x/y", "x_y")),
        ),
        ("repo::", Err("Invalid location format: \"repo::\"")),
        ("repo::a/b", Err("Invalid location format: \"repo::a/b\"")),
        (
            "/p:::a",
            Ok(("file", None, None, None, "/p", Some(":a"), "/p", "p")),
        ),
        (
            "/p::a::b",
            Ok(("file", None, None, None, "/p", Some("a::b"), "/p", "p")),
        ),
        (
            "a:b",
            Ok((
                "ssh",
                None,
                Some("a"),
                None,
                "b",
                None,
                "ssh://a/./b",
                "a__b",
            )),
        ),
        (
            "host:",
            Ok(("file", None, None, None, "host:", None, "host:", "host")),
        ),
        (
            "host:rel",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "rel",
                None,
                "ssh://host/./rel",
                "host__rel",
            )),
        ),
        (
            "host:/abs",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/abs",
                None,
                "ssh://host/abs",
                "host__abs",
            )),
        ),
        (
            "host:~/p",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "~/p",
                None,
                "ssh://host/~/p",
                "host__p",
            )),
        ),
        (
            "host:~other/p",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "~other/p",
                None,
                "ssh://host/~other/p",
                "host__other_p",
            )),
        ),
        (
            "user@host:rel::arch",
            Ok((
                "ssh",
                Some("user"),
                Some("host"),
                None,
                "rel",
                Some("arch"),
                "ssh://user@host/./rel",
                "host__rel",
            )),
        ),
        (
            "user@host:/abs",
            Ok((
                "ssh",
                Some("user"),
                Some("host"),
                None,
                "/abs",
                None,
                "ssh://user@host/abs",
                "host__abs",
            )),
        ),
        (
            "u@h@x:/p",
            Ok((
                "ssh",
                Some("u"),
                Some("h@x"),
                None,
                "/p",
                None,
                "ssh://u@h@x/p",
                "h_x__p",
            )),
        ),
        (
            "[::1]:/p",
            Ok((
                "ssh",
                None,
                Some("::1"),
                None,
                "/p",
                None,
                "ssh://[::1]/p",
                "__1__p",
            )),
        ),
        (
            "user@[::1]:path",
            Ok((
                "ssh",
                Some("user"),
                Some("::1"),
                None,
                "path",
                None,
                "ssh://user@[::1]/./path",
                "__1__path",
            )),
        ),
        (
            "user@[::1]:/p::a",
            Ok((
                "ssh",
                Some("user"),
                Some("::1"),
                None,
                "/p",
                Some("a"),
                "ssh://user@[::1]/p",
                "__1__p",
            )),
        ),
        (
            "file:///abs/repo",
            Ok((
                "file",
                None,
                None,
                None,
                "/abs/repo",
                None,
                "/abs/repo",
                "abs_repo",
            )),
        ),
        (
            "file:///abs/repo::a",
            Ok((
                "file",
                None,
                None,
                None,
                "/abs/repo",
                Some("a"),
                "/abs/repo",
                "abs_repo",
            )),
        ),
        (
            "file://host/abs",
            Ok((
                "file", None, None, None, "host/abs", None, "host/abs", "host_abs",
            )),
        ),
        (
            "file:///",
            Ok(("file", None, None, None, "file:", None, "file:", "file")),
        ),
        (
            "file://",
            Ok(("file", None, None, None, "file:", None, "file:", "file")),
        ),
        (
            "ssh://host/abs",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/abs",
                None,
                "ssh://host/abs",
                "host__abs",
            )),
        ),
        (
            "ssh://host/",
            Err("Invalid location format: \"ssh://host/\""),
        ),
        (
            "ssh://user@host:2222/abs::arch",
            Ok((
                "ssh",
                Some("user"),
                Some("host"),
                Some(2222),
                "/abs",
                Some("arch"),
                "ssh://user@host:2222/abs",
                "host__abs",
            )),
        ),
        (
            "ssh://host/./rel",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/./rel",
                None,
                "ssh://host/./rel",
                "host__rel",
            )),
        ),
        (
            "ssh://host/~/p",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/~/p",
                None,
                "ssh://host/~/p",
                "host__p",
            )),
        ),
        (
            "ssh://host/~other/p",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/~other/p",
                None,
                "ssh://host/~other/p",
                "host__other_p",
            )),
        ),
        (
            "ssh://user@[::1]:2222/path",
            Ok((
                "ssh",
                Some("user"),
                Some("::1"),
                Some(2222),
                "/path",
                None,
                "ssh://user@[::1]:2222/path",
                "__1__path",
            )),
        ),
        (
            "ssh://[fe80::1%eth0]/p",
            Err("Invalid location format: \"ssh://[fe80::1%eth0]/p\""),
        ),
        (
            "ssh://host:0/p",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/p",
                None,
                "ssh://host/p",
                "host__p",
            )),
        ),
        (
            "ssh://user@host:bad/path",
            Err("Invalid location format: \"ssh://user@host:bad/path\""),
        ),
        (
            "ssh://u@h@x/p",
            Ok((
                "ssh",
                Some("u"),
                Some("h@x"),
                None,
                "/p",
                None,
                "ssh://u@h@x/p",
                "h_x__p",
            )),
        ),
        (
            "ssh://host//double",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "//double",
                None,
                "ssh://host//double",
                "host__double",
            )),
        ),
        (
            "ssh://host/a/../b",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "/b",
                None,
                "ssh://host/b",
                "host__b",
            )),
        ),
        (
            "host://x",
            Ok((
                "file", None, None, None, "host:/x", None, "host:/x", "host__x",
            )),
        ),
        ("::", Err("Invalid location format: \"::\"")),
        ("::a", Err("Invalid location format: \"::a\"")),
        ("", Err("Invalid location format: \"\"")),
        (":foo", Err("Invalid location format: \":foo\"")),
        (
            "//server/share",
            Err("Invalid location format: \"//server/share\""),
        ),
        (
            "h]:p",
            Ok(("file", None, None, None, "h]:p", None, "h]:p", "h__p")),
        ),
        (
            "[h:p",
            Ok(("file", None, None, None, "[h:p", None, "[h:p", "h_p")),
        ),
        (
            "a@:p",
            Ok((
                "ssh",
                None,
                Some("a@"),
                None,
                "p",
                None,
                "ssh://a@/./p",
                "a___p",
            )),
        ),
        (
            "x:/./y/../z",
            Ok((
                "ssh",
                None,
                Some("x"),
                None,
                "/./z",
                None,
                "ssh://x/./z",
                "x__z",
            )),
        ),
        (
            "host:./rel",
            Ok((
                "ssh",
                None,
                Some("host"),
                None,
                "rel",
                None,
                "ssh://host/./rel",
                "host__rel",
            )),
        ),
        (
            "/./abs",
            Ok(("file", None, None, None, "/./abs", None, "/./abs", "abs")),
        ),
    ];

    fn parse(text: &str) -> Result<Location> {
        Location::parse_with(text, None, None)
    }

    #[test]
    fn location_forms_like_borg() {
        let cwd = std::env::current_dir()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for (text, expected) in ORACLE {
            match (parse(text), expected) {
                (Err(e), Err(msg)) => assert_eq!(&e.message, msg, "{text}"),
                (Ok(loc), Ok((proto, user, host, port, path, archive, canonical, key))) => {
                    let proto = if *proto == "ssh" {
                        Proto::Ssh
                    } else {
                        Proto::Local
                    };
                    assert_eq!(loc.proto, proto, "{text}");
                    assert_eq!(loc.user.as_deref(), *user, "{text}");
                    assert_eq!(loc.host.as_deref(), *host, "{text}");
                    assert_eq!(loc.port, *port, "{text}");
                    assert_eq!(loc.path, *path, "{text}");
                    assert_eq!(loc.archive.as_deref(), *archive, "{text}");
                    assert_eq!((loc.raw.as_str(), loc.processed.as_str()), (*text, *text));
                    assert_eq!(loc.key_file_name(), *key, "{text}");
                    if proto == Proto::Ssh {
                        assert_eq!(loc.canonical_path(), *canonical, "{text}");
                    } else {
                        // local: shown absolute, as borg's repository reports it
                        let abs = if path.starts_with('/') {
                            path.to_string()
                        } else {
                            format!("{cwd}/{path}")
                        };
                        let abs = normpath_str(&abs);
                        assert_eq!(loc.canonical_path(), abs, "{text}");
                        assert_eq!(loc.absolute_path(), PathBuf::from(&abs));
                    }
                }
                (got, _) => panic!("{text}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn borg_repo_fallback() {
        let loc = Location::parse_with("::arch", None, Some("/repo")).unwrap();
        assert_eq!(
            (loc.path.as_str(), loc.archive.as_deref()),
            ("/repo", Some("arch"))
        );
        assert_eq!(
            (loc.raw.as_str(), loc.processed.as_str()),
            ("/repo::arch", "/repo::arch")
        );
        let loc = Location::parse_with("", None, Some("ssh://u@h:22/./r")).unwrap();
        assert_eq!(
            (loc.proto, loc.port, loc.path.as_str(), loc.archive),
            (Proto::Ssh, Some(22), "/./r", None)
        );
        let loc = Location::parse_with("::", None, Some("r")).unwrap();
        assert_eq!((loc.path.as_str(), loc.processed.as_str()), ("r", "r"));
        assert_eq!(
            Location::parse_with("::", None, None).unwrap_err().message,
            "Invalid location format: \"::\""
        );
        assert_eq!(
            Location::parse_with("", None, None).unwrap_err().message,
            "Invalid location format: \"\""
        );
        let err = Location::parse_with("::a", None, Some("ssh://h/")).unwrap_err();
        assert_eq!(err.message, "Invalid location format: \"ssh://h/::a\"");
        // placeholders in BORG_REPO and in the archive part
        let ts = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap();
        let loc =
            Location::parse_with("::x-{utcnow:%Y}", Some(ts), Some("/r/{borgmajor}")).unwrap();
        assert_eq!(
            (loc.path.as_str(), loc.archive.as_deref()),
            ("/r/1", Some("x-2024"))
        );
        assert_eq!(loc.raw, "/r/{borgmajor}::x-{utcnow:%Y}");
        let later = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let loc = Location::parse_with("/r::{utcnow:%Y}", Some(ts), None).unwrap();
        assert_eq!(
            loc.with_timestamp(later).unwrap().archive.as_deref(),
            Some("2025")
        );
        let repo_only = loc.omit_archive();
        assert_eq!(
            (
                repo_only.archive,
                repo_only.raw.as_str(),
                repo_only.processed.as_str()
            ),
            (None, "/r", "/r")
        );
    }

    #[test]
    fn validators() {
        let loc = parse("/r").unwrap();
        assert_eq!(
            loc.check("/r", Some(true), None).unwrap_err().message,
            "\"/r\": No archive specified"
        );
        let loc = parse("/r::a").unwrap();
        assert_eq!(
            loc.check("/r::a", Some(false), None).unwrap_err().message,
            "\"/r::a\": No archive can be specified"
        );
        assert!(loc.check("/r::a", Some(true), Some(Proto::Local)).is_ok());
        assert_eq!(
            loc.check("/r::a", None, Some(Proto::Ssh))
                .unwrap_err()
                .message,
            "\"/r::a\": Repository must be remote"
        );
        let loc = parse("h:r").unwrap();
        assert_eq!(
            loc.check("h:r", None, Some(Proto::Local))
                .unwrap_err()
                .message,
            "\"h:r\": Repository must be local"
        );
        assert_eq!(validate_archive_name("a-{borgversion}").unwrap(), "a-1.4.5");
        for bad in ["a/b", "", "a::b"] {
            assert_eq!(
                validate_archive_name(bad).unwrap_err().message,
                format!("Invalid archive name: \"{bad}\"")
            );
        }
        assert_eq!(
            parse("ssh://u@[::1]:2222/p::a").unwrap().to_string(),
            "proto='ssh', user='u', host='::1', port=2222, path='/p', archive='a'"
        );
    }

    #[test]
    fn placeholders() {
        let ts = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap()
            + chrono::Duration::microseconds(123456);
        let r = |s: &str| replace_placeholders(s, Some(ts));
        assert_eq!(r("a-{utcnow}").unwrap(), "a-2024-03-05T07:08:09");
        assert_eq!(
            r("{utcnow:%Y-%m-%d %H:%M:%S.%f %z %Z}").unwrap(),
            "2024-03-05 07:08:09.123456 +0000 UTC"
        );
        let local = ts
            .with_timezone(&Local)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        assert_eq!(r("{now}").unwrap(), local);
        assert_eq!(r("{{now}} {{").unwrap(), "{now} {");
        assert_eq!(r("}}").unwrap(), "}");
        assert_eq!(
            r("{borgversion} {borgmajor} {borgminor} {borgpatch}").unwrap(),
            "1.4.5 1 1.4 1.4.5"
        );
        assert_eq!(r("{pid}").unwrap(), std::process::id().to_string());
        assert_eq!(
            r("{pid:>12}").unwrap(),
            format!("{:>12}", std::process::id())
        );
        let unix: i64 = r("{unixtime}").unwrap().parse().unwrap();
        assert!((unix - Utc::now().timestamp()).abs() < 5);
        let uuid = r("{uuid4}").unwrap();
        assert_eq!((uuid.len(), &uuid[14..15]), (36, "4"));
        assert_ne!(uuid, r("{uuid4}").unwrap());
        assert!(!r("{fqdn}").unwrap().is_empty());
        let fqdn = r("{fqdn}").unwrap();
        assert_eq!(
            r("{reverse-fqdn}").unwrap(),
            fqdn.split('.').rev().collect::<Vec<_>>().join(".")
        );
        assert!(!r("{hostname}").unwrap().contains('.'));
        assert!(!r("{user}").unwrap().is_empty());

        let err = r("x{foo}").unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (
                ErrorKind::InvalidPlaceholder,
                "Invalid placeholder \"foo\" in string: x{foo}"
            )
        );
        assert_eq!(
            r("{now!r}").unwrap_err().message,
            "Invalid placeholder \"now\" in string: {now!r}"
        );
        assert_eq!(
            r("{now.year}").unwrap_err().message,
            "Invalid placeholder \"now.year\" in string: {now.year}"
        );
        // a known key before a syntax error is checked first, as in borg
        assert_eq!(r("{foo}{").unwrap_err().kind, ErrorKind::InvalidPlaceholder);
        for (text, msg) in [
            ("{", "Single '{' encountered in format string"),
            ("a}b", "Single '}' encountered in format string"),
            ("{now", "expected '}' before end of string"),
            ("{now!}", "unmatched '{' in format spec"),
            ("{now!rx}", "expected ':' after conversion specifier"),
            ("{a{b}", "unexpected '{' in field name"),
            ("{now:}}", "Single '}' encountered in format string"),
        ] {
            let err = r(text).unwrap_err();
            assert_eq!(
                (err.kind, err.message.as_str()),
                (ErrorKind::Error, msg),
                "{text}"
            );
        }
        for (text, tail) in [
            ("{}", "ValueError(Format string contains positional fields)"),
            (
                "{hostname:d}",
                "ValueError(Unknown format code 'd' for object of type 'str')",
            ),
            (
                "{pid:.2}",
                "ValueError(Precision not allowed in integer format specifier)",
            ),
            ("{now:{foo}}", "KeyError('foo')"),
            (
                "{hostname:{pid:{pid}}}",
                "ValueError(Max string recursion exceeded)",
            ),
        ] {
            let err = r(text).unwrap_err();
            assert_eq!(err.kind, ErrorKind::PlaceholderError, "{text}");
            assert!(
                err.message
                    .starts_with(&format!("Formatting Error: \"{text}\".format({{'pid': ")),
                "{}",
                err.message
            );
            assert!(
                err.message.ends_with(&format!("): {tail}")),
                "{}",
                err.message
            );
        }
        // nested specs are expanded
        assert_eq!(r("{utcnow:{borgmajor}}").unwrap(), "1");
    }

    #[test]
    fn env_overrides() {
        // the only test touching these variables
        std::env::set_var("BORG_HOSTNAME", "myhost.example");
        std::env::set_var("BORG_USERNAME", "someone");
        assert_eq!(
            replace_placeholders("{hostname}-{user}", None).unwrap(),
            "myhost.example-someone"
        );
        std::env::set_var("BORG_HOSTNAME", "");
        std::env::remove_var("BORG_USERNAME");
        assert_eq!(
            replace_placeholders("{hostname}", None).unwrap(),
            sys::short_hostname()
        );
        std::env::remove_var("BORG_HOSTNAME");
    }

    #[test]
    fn python_format_specs() {
        for (spec, value, out) in [
            ("05", "ab", "ab000"),
            (".2", "abc", "ab"),
            ("^7.2", "abc", "  ab   "),
            ("*<4", "a", "a***"),
            (">", "a", "a"),
            ("", "x", "x"),
        ] {
            assert_eq!(format_str(value, spec).unwrap(), out, "{spec}");
        }
        for (spec, msg) in [
            ("+", "Sign not allowed in string format specifier"),
            (
                "#",
                "Alternate form (#) not allowed in string format specifier",
            ),
            ("=5", "'=' alignment not allowed in string format specifier"),
            (",", "Cannot specify ',' with 's'."),
            ("d", "Unknown format code 'd' for object of type 'str'"),
            (
                "xyz",
                "Invalid format specifier 'xyz' for object of type 'str'",
            ),
            (".", "Format specifier missing precision"),
            ("5.2q", "Unknown format code 'q' for object of type 'str'"),
        ] {
            assert_eq!(format_str("ab", spec).unwrap_err(), msg, "{spec}");
        }
        for (spec, value, out) in [
            ("#x", 255, "0xff"),
            ("+08,", -1234567, "-1,234,567"),
            ("08,", 1234, "0,001,234"),
            ("_b", 255, "1111_1111"),
            ("c", 65, "A"),
            ("=+8", 5, "+      5"),
            ("05", -3, "-0003"),
            ("0>5", 5, "00005"),
            ("", 42, "42"),
            ("x", 255, "ff"),
        ] {
            assert_eq!(format_int(value, spec).unwrap(), out, "{spec}");
        }
        for (spec, msg) in [
            (".2", "Precision not allowed in integer format specifier"),
            ("s", "Unknown format code 's' for object of type 'int'"),
            (
                "xyz",
                "Invalid format specifier 'xyz' for object of type 'int'",
            ),
            (",x", "Cannot specify ',' with 'x'."),
            (
                "z",
                "Negative zero coercion (z) not allowed in integer format specifier",
            ),
        ] {
            assert_eq!(format_int(12, spec).unwrap_err(), msg, "{spec}");
        }
    }

    #[test]
    fn strftime_like_python_on_glibc() {
        let cet = FixedOffset::east_opt(3600).unwrap();
        let t = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap()
            + chrono::Duration::microseconds(123456);
        let t = t.with_timezone(&cet);
        let f = |fmt: &str| strftime(&t, "CET", fmt);
        assert_eq!(f("%Y-%m-%dT%H:%M:%S"), "2024-03-05T08:08:09");
        assert_eq!(
            f("%a %A %b %B %c"),
            "Tue Tuesday Mar March Tue Mar  5 08:08:09 2024"
        );
        assert_eq!(
            f("%C %d %D %e %F %g %G %H %I %j %k %l %m %M %p %P %r %R %S %T %u %U %V %w %W %x %X %y %Y %z %Z %%"),
            "20 05 03/05/24  5 2024-03-05 24 2024 08 08 065  8  8 03 08 AM am 08:08:09 AM 08:08 09 08:08:09 2 09 10 2 10 03/05/24 08:08:09 24 2024 +0100 CET %"
        );
        assert_eq!(
            f("%-d|%_d|%05d|%^a|%#b|%Ey|%Od|%10Y|%10a|%010a|%-5d"),
            "5| 5|00005|TUE|MAR|24|05|0000002024|       Tue|0000000Tue|    5"
        );
        assert_eq!(f("%Q %+ %3f %f x%"), "%Q %+ %3f 123456 x%");
        let utc = FixedOffset::east_opt(0).unwrap();
        let t2 = Utc
            .with_ymd_and_hms(2023, 1, 1, 0, 0, 0)
            .unwrap()
            .with_timezone(&utc);
        assert_eq!(
            strftime(&t2, "UTC", "%U %W %V %G %g %j %u %w"),
            "01 00 52 2022 22 001 7 0"
        );
    }
}
