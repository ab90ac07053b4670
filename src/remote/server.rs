//! The server side (`rborg serve`, remote-protocol.md §2, §5, §9): requests read from stdin
//! are executed one after another against a [`LocalRepository`] and answered on stdout in
//! the form they came in. Only borg's allow-listed methods exist; paths are checked against
//! `--restrict-to-path` / `--restrict-to-repository` after `~`, `..` and symlinks are
//! resolved. Bad input never panics: a request that cannot be executed gets an error reply,
//! a byte stream that cannot be decoded ends the session.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rmpv::Value;

use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::ValueExt;
use crate::output::{self, Level};
use crate::repository::local::{LocalRepository, OpenOptions};
use crate::repository::{ObjectId, Repository};

use super::codec::{
    encode_error, encode_raw_result, encode_result, parse_request, version_tuple, version_value,
    Form, FrameReader, Limits, Request,
};
use super::exceptions::to_remote;

/// What the server reads from stdin at once (borg's BUFSIZE).
const READ_SIZE: usize = 10 << 20;

/// The methods a client may call (borg 1.2/1.4's allow-list; `inject_exception` is a test
/// hook of borg's and refused here).
pub const RPC_METHODS: &[&str] = &[
    "__len__",
    "check",
    "commit",
    "delete",
    "destroy",
    "get",
    "list",
    "scan",
    "negotiate",
    "open",
    "put",
    "rollback",
    "save_key",
    "load_key",
    "break_lock",
    "get_free_nonce",
    "commit_nonce_reservation",
];

/// Positional argument names of the legacy array form (borg's `compatMap`).
fn positional_names(method: &str) -> &'static [&'static str] {
    match method {
        "check" => &["repair", "save_space"],
        "commit" => &["save_space"],
        "list" => &["limit", "marker"],
        "put" => &["id", "data"],
        "get" | "delete" => &["id"],
        "save_key" => &["keydata"],
        "negotiate" => &["client_data"],
        "open" => &[
            "path",
            "create",
            "lock_wait",
            "lock",
            "exclusive",
            "append_only",
        ],
        "commit_nonce_reservation" => &["next_unreserved", "start_nonce"],
        _ => &[],
    }
}

/// The `serve` options that are the server's policy.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
    pub append_only: bool,
    /// Bytes; overrides the repository's own quota.
    pub storage_quota: Option<u64>,
}

/// One session's state: the options and the repository once `open` succeeded.
pub struct RepositoryServer {
    opts: ServeOptions,
    repo: Option<LocalRepository>,
    /// The client's version tuple, once it told us.
    pub client_version: Option<Vec<i64>>,
    /// A repository was opened in this session (a destroyed one counts).
    opened: bool,
    /// Switch the process's logging to JSON lines on a modern negotiate (off in unit tests:
    /// the logging setup is process-wide).
    pub json_logging: bool,
}

/// A request's named arguments with Python-like checks (missing → TypeError).
struct Args<'a> {
    method: &'a str,
    named: Vec<(String, Value)>,
}

impl Args<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.named.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn required(&self, name: &str) -> Result<&Value> {
        self.get(name).ok_or_else(|| {
            Error::exception(format!(
                "{}() missing required argument: '{name}'",
                self.method
            ))
        })
    }

    fn type_error(&self, name: &str, what: &str) -> Error {
        Error::exception(format!(
            "{}() argument '{name}' must be {what}",
            self.method
        ))
    }

    fn bytes(&self, name: &str) -> Result<&[u8]> {
        self.required(name)?
            .as_bytes()
            .ok_or_else(|| self.type_error(name, "bytes"))
    }

    fn id(&self, name: &str) -> Result<ObjectId> {
        let b = self.bytes(name)?;
        b.try_into()
            .map_err(|_| self.type_error(name, "a 32-byte id"))
    }

    /// A truthy value (Python's bool()): nil/false/0 are false.
    fn flag(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            None => default,
            Some(Value::Nil) => false,
            Some(Value::Boolean(b)) => *b,
            Some(Value::Integer(i)) => i.as_i64() != Some(0),
            Some(Value::F64(f)) => *f != 0.0,
            Some(_) => true,
        }
    }

    /// A number or nil (None), absent → `default`.
    fn number(&self, name: &str, default: Option<f64>) -> Result<Option<f64>> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Nil) => Ok(None),
            Some(Value::Integer(i)) => Ok(i.as_f64()),
            Some(Value::F64(f)) => Ok(Some(*f)),
            Some(Value::F32(f)) => Ok(Some(*f as f64)),
            Some(Value::Boolean(b)) => Ok(Some(*b as u8 as f64)),
            Some(_) => Err(self.type_error(name, "a number")),
        }
    }

    /// A non-negative integer or nil.
    fn uint_or_nil(&self, name: &str) -> Result<Option<u64>> {
        match self.required(name)? {
            Value::Nil => Ok(None),
            v => v
                .as_uint()
                .map(Some)
                .ok_or_else(|| self.type_error(name, "an int")),
        }
    }

    /// `limit` of list/scan: None = all.
    fn limit(&self) -> Result<Option<usize>> {
        match self.get("limit") {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => match v.as_int() {
                Some(n) => Ok(Some(n.max(0) as usize)),
                None => Err(self.type_error("limit", "an int")),
            },
        }
    }

    fn marker(&self) -> Result<Option<ObjectId>> {
        match self.get("marker") {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => {
                let b = v
                    .as_bytes()
                    .ok_or_else(|| self.type_error("marker", "bytes"))?;
                // an id that cannot be in the index: borg 1.4's KeyError
                b.try_into()
                    .map(Some)
                    .map_err(|_| Error::exception("'marker not found'"))
            }
        }
    }
}

/// What a handled request produces.
enum Outcome {
    Value(Value),
    Raw(Vec<u8>),
}

impl RepositoryServer {
    pub fn new(opts: ServeOptions) -> RepositoryServer {
        RepositoryServer {
            opts,
            repo: None,
            client_version: None,
            opened: false,
            json_logging: true,
        }
    }

    /// Run the session on `input`/`output` until EOF (Ok) or undecodable input (Err; the
    /// repository is closed either way).
    pub fn serve(&mut self, mut input: impl Read, mut output: impl Write) -> Result<()> {
        let mut frames = FrameReader::new(Limits::SERVER);
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            frames.feed(&buf[..n]);
            loop {
                let value = match frames.next_value() {
                    Ok(Some(v)) => v,
                    Ok(None) => break,
                    Err(e) => return Err(self.fatal(&e.message)),
                };
                let reply = match parse_request(value) {
                    Some(req) => self.handle(req),
                    None => return Err(self.fatal("not a request")),
                };
                if output
                    .write_all(&reply)
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    self.close();
                    return Ok(());
                }
            }
        }
        if !self.opened {
            // borg writes this to stdout (a bug of its own); the client is gone anyway
            let _ = output.write_all(
                format!(
                    "Borg {}: Got connection close before repository was opened.\n",
                    crate::BORG_COMPAT_VERSION
                )
                .as_bytes(),
            );
            let _ = output.flush();
        }
        self.close();
        Ok(())
    }

    /// End the session after input that cannot be decoded.
    fn fatal(&mut self, why: &str) -> Error {
        self.close();
        output::log(
            Level::Error,
            "borg.remote",
            &format!("Got unexpected RPC data format from client: {why}"),
            None,
        );
        Error::new(
            ErrorKind::UnexpectedRPCDataFormatFromClient,
            [crate::BORG_COMPAT_VERSION],
        )
    }

    /// Close the repository (releasing its lock, dropping an uncommitted transaction).
    pub fn close(&mut self) {
        if let Some(repo) = self.repo.take() {
            repo.close();
        }
    }

    /// Execute one request and encode its reply.
    pub fn handle(&mut self, req: Request) -> Vec<u8> {
        let method = String::from_utf8_lossy(&req.method).into_owned();
        let result = self.dispatch(&method, &req);
        match result {
            Ok(Outcome::Value(v)) => encode_result(req.form, &req.msgid, &v),
            Ok(Outcome::Raw(b)) => encode_raw_result(req.form, &req.msgid, &b),
            Err(e) => {
                let ex = to_remote(&e, &output::sysinfo());
                if !matches!(
                    e.kind,
                    ErrorKind::RepositoryDoesNotExist
                        | ErrorKind::RepositoryAlreadyExists
                        | ErrorKind::PathNotAllowed
                ) {
                    output::log(Level::Debug, "borg.remote", &ex.full.concat(), None);
                }
                if req.form == Form::Legacy {
                    output::log(Level::Error, "borg.remote", &e.message, None);
                }
                encode_error(req.form, &req.msgid, &ex)
            }
        }
    }

    fn named_args<'a>(&self, method: &'a str, req: &Request) -> Result<Args<'a>> {
        let named = match req.form {
            Form::Dict => req
                .named
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                .collect(),
            Form::Legacy => {
                let names = positional_names(method);
                if req.positional.len() > names.len() {
                    return Err(Error::exception(format!(
                        "{method}() takes {} arguments but {} were given",
                        names.len(),
                        req.positional.len()
                    )));
                }
                names
                    .iter()
                    .zip(&req.positional)
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect()
            }
        };
        Ok(Args { method, named })
    }

    fn repo(&self, method: &str) -> Result<&LocalRepository> {
        self.repo.as_ref().ok_or_else(|| {
            Error::exception(format!("'NoneType' object has no attribute '{method}'"))
        })
    }

    fn dispatch(&mut self, method: &str, req: &Request) -> Result<Outcome> {
        if !RPC_METHODS.contains(&method) {
            return Err(Error::new(ErrorKind::InvalidRPCMethod, [method]));
        }
        let args = self.named_args(method, req)?;
        let nil = Ok(Outcome::Value(Value::Nil));
        match method {
            "negotiate" => Ok(Outcome::Value(self.negotiate(args.get("client_data")))),
            "open" => self.open(&args).map(|id| Outcome::Raw(id.to_vec())),
            "__len__" => Ok(Outcome::Value(
                Value::from(self.repo(method)?.len()? as u64),
            )),
            "list" | "scan" => {
                let repo = self.repo(method)?;
                let limit = args.limit()?;
                if method == "scan" && limit == Some(0) {
                    return Err(Error::exception("please use limit > 0 or limit = None"));
                }
                let limit = limit.unwrap_or(usize::MAX);
                let marker = args.marker()?;
                let ids = if method == "list" {
                    repo.list(limit, marker.as_ref())?
                } else {
                    repo.scan(limit, marker.as_ref())?
                };
                Ok(Outcome::Value(Value::Array(
                    ids.iter().map(|id| Value::Binary(id.to_vec())).collect(),
                )))
            }
            "get" => Ok(Outcome::Raw(self.repo(method)?.get(&args.id("id")?)?)),
            "put" => {
                let repo = self.repo(method)?;
                repo.put(&args.id("id")?, args.bytes("data")?)?;
                nil
            }
            "delete" => {
                self.repo(method)?.delete(&args.id("id")?)?;
                nil
            }
            "commit" => {
                let repo = self.repo(method)?;
                let threshold = args.number("threshold", Some(0.1))?.unwrap_or(0.1);
                repo.commit(
                    args.flag("compact", true),
                    threshold,
                    args.flag("cleanup_commits", false),
                )?;
                nil
            }
            "rollback" => {
                self.repo(method)?.rollback()?;
                nil
            }
            "check" => {
                let repo = self.repo(method)?;
                let max_duration = args.number("max_duration", Some(0.0))?.unwrap_or(0.0);
                let ok = repo.check(args.flag("repair", false), max_duration)?;
                Ok(Outcome::Value(Value::Boolean(ok)))
            }
            "destroy" => {
                self.repo(method)?.destroy()?;
                self.repo = None;
                nil
            }
            "save_key" => {
                self.repo(method)?.save_key(args.bytes("keydata")?)?;
                nil
            }
            "load_key" => Ok(Outcome::Raw(self.repo(method)?.load_key()?)),
            "get_free_nonce" => Ok(Outcome::Value(
                self.repo(method)?
                    .get_free_nonce()?
                    .map_or(Value::Nil, Value::from),
            )),
            "commit_nonce_reservation" => {
                let repo = self.repo(method)?;
                let next = args
                    .uint_or_nil("next_unreserved")?
                    .ok_or_else(|| args.type_error("next_unreserved", "an int"))?;
                let start = match args.get("start_nonce") {
                    None => None,
                    Some(_) => args.uint_or_nil("start_nonce")?,
                };
                repo.commit_nonce_reservation(next, start)?;
                nil
            }
            "break_lock" => {
                self.repo(method)?.break_lock()?;
                nil
            }
            _ => Err(Error::new(ErrorKind::InvalidRPCMethod, [method])),
        }
    }

    /// The handshake: `2` for a borg 1.0 client, else our version (and JSON log lines from
    /// now on for a client that sent its version map).
    fn negotiate(&mut self, client_data: Option<&Value>) -> Value {
        match client_data {
            Some(Value::Integer(i)) if i.as_u64() == Some(2) => return Value::from(2),
            Some(v @ Value::Map(_)) => {
                self.client_version = v
                    .get("client_version")
                    .and_then(super::codec::parse_version_value);
                if self.json_logging {
                    output::set_log_json(true);
                }
                output::debug("Initialized logging system for JSON-based protocol");
            }
            _ => {}
        }
        Value::Map(vec![(
            Value::from("server_version"),
            version_value(&version_tuple(crate::BORG_COMPAT_VERSION)),
        )])
    }

    fn open(&mut self, args: &Args) -> Result<ObjectId> {
        let raw = args.bytes("path")?;
        output::log(
            Level::Debug,
            "borg.remote",
            &format!(
                "Resolving repository path b{}",
                crate::python::repr(&String::from_utf8_lossy(raw))
            ),
            None,
        );
        let path = resolve_path(raw);
        output::log(
            Level::Debug,
            "borg.remote",
            &format!(
                "Resolved repository path to {:?}",
                path.display().to_string()
            ),
            None,
        );
        check_restrictions(&path, &self.opts)?;
        let create = args.flag("create", false);
        let append_only = (!create && self.opts.append_only) || args.flag("append_only", false);
        if create {
            LocalRepository::create(
                &path,
                args.flag("append_only", false),
                self.opts.storage_quota.unwrap_or(0),
                args.flag("make_parent_dirs", false),
            )?;
        }
        let exclusive = match args.get("exclusive") {
            None | Some(Value::Nil) => None,
            Some(_) => Some(args.flag("exclusive", false)),
        };
        let opts = OpenOptions {
            exclusive: exclusive.unwrap_or(false),
            upgrade_lock: exclusive.is_none(),
            lock_wait: args.number("lock_wait", None)?,
            lock: args.flag("lock", true),
            append_only,
            storage_quota: self.opts.storage_quota,
            ..OpenOptions::default()
        };
        self.close();
        let repo = LocalRepository::open_with(&path, &opts)?;
        let id = repo.id();
        self.repo = Some(repo);
        self.opened = true;
        Ok(id)
    }
}

/// The path a client names, as the server resolves it (§1.3): `/~/x` and `~/x` under the
/// base directory, `/~user/x` and `~user/x` under that user's home, `/./x` relative to the
/// working directory; then made absolute with symlinks resolved.
pub fn resolve_path(raw: &[u8]) -> PathBuf {
    let text = OsStr::from_bytes(raw);
    let bytes = text.as_bytes();
    let chosen: PathBuf = if let Some(rest) = bytes.strip_prefix(b"/~/") {
        crate::paths::base_dir().join(OsStr::from_bytes(rest))
    } else if let Some(rest) = bytes.strip_prefix(b"~/") {
        crate::paths::base_dir().join(OsStr::from_bytes(rest))
    } else if let Some(rest) = bytes.strip_prefix(b"/~") {
        expand_user(rest)
    } else if let Some(rest) = bytes.strip_prefix(b"~") {
        expand_user(rest)
    } else if let Some(rest) = bytes.strip_prefix(b"/./") {
        PathBuf::from(OsStr::from_bytes(rest))
    } else {
        PathBuf::from(text)
    };
    realpath(&chosen)
}

/// `user/x` (after a `~`) → that user's home joined with `x`; unknown users stay as given.
fn expand_user(rest: &[u8]) -> PathBuf {
    let (name, tail) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let home = if name.is_empty() {
        Some(crate::paths::base_dir())
    } else {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| nix::unistd::User::from_name(n).ok().flatten())
            .map(|u| u.dir)
    };
    match home {
        Some(h) if tail.is_empty() => h,
        Some(h) => h.join(OsStr::from_bytes(tail)),
        None => {
            let mut p = b"~".to_vec();
            p.extend_from_slice(rest);
            PathBuf::from(OsString::from_vec(p))
        }
    }
}

/// Python's `os.path.realpath` (non-strict): absolute, `.`/`..` applied, every existing
/// symlink resolved; components that do not exist are kept as given.
pub fn realpath(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &absolute);
    let mut out = PathBuf::from("/");
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&comp);
        let link = match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && hops < 40 => std::fs::read_link(&candidate).ok(),
            _ => None,
        };
        match link {
            Some(target) => {
                hops += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push_components(&mut pending, &target);
            }
            None => out = candidate,
        }
    }
    out
}

/// Push the normal and `..` components of `p` so that they pop in order.
fn push_components(pending: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    pending.extend(comps.into_iter().rev());
}

/// `path` with exactly one trailing slash (borg's `os.path.join(path, '')`).
fn with_sep(p: &Path) -> Vec<u8> {
    let mut b = p.as_os_str().as_bytes().to_vec();
    if !b.ends_with(b"/") {
        b.push(b'/');
    }
    b
}

/// §9.1: below one of the allowed paths, and exactly one of the allowed repositories.
pub fn check_restrictions(resolved: &Path, opts: &ServeOptions) -> Result<()> {
    let path = with_sep(resolved);
    let denied = || Error::new(ErrorKind::PathNotAllowed, [resolved.display().to_string()]);
    if !opts.restrict_to_paths.is_empty()
        && !opts
            .restrict_to_paths
            .iter()
            .any(|p| path.starts_with(&with_sep(&realpath(p))))
    {
        return Err(denied());
    }
    if !opts.restrict_to_repositories.is_empty()
        && !opts
            .restrict_to_repositories
            .iter()
            .any(|r| path == with_sep(&realpath(r)))
    {
        return Err(denied());
    }
    Ok(())
}

/// `rborg serve` on this process's stdin/stdout.
pub fn serve_stdio(opts: ServeOptions) -> Result<()> {
    let mut server = RepositoryServer::new(opts);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    server.serve(stdin.lock(), stdout.lock())
}

#[cfg(test)]
mod tests;
