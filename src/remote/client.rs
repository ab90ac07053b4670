//! The client side: [`RemoteRepository`] talks to `borg serve` (real borg or ours) through
//! ssh and implements [`Repository`], so commands do not know they work remotely.
//!
//! Threads instead of borg's select loop: one writes queued requests to the server's stdin
//! (with `--upload-ratelimit`), one reads replies from its stdout and files them by msgid,
//! one re-emits its stderr lines through [`crate::output`]. Callers on any thread send a
//! request and wait for their msgid, so several requests are in flight at once: `put` and
//! `delete` do not wait at all (their errors are raised later, as borg's async calls),
//! `get_many` keeps up to [`MAX_INFLIGHT`] `get`s outstanding.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rmpv::Value;

use crate::errors::{Error, ErrorKind, Result};
use crate::location::Location;
use crate::msgpack::ValueExt;
use crate::output::{self, Level};
use crate::repository::{ObjectId, Repository, MANIFEST_ID};

use super::codec::{
    encode_legacy_request, encode_request, parse_reply, parse_version_value,
    unexpected_from_server, version_tuple, version_value, Arg, FrameReader, Limits,
    RemoteException, LIST_SCAN_LIMIT,
};
use super::exceptions::from_remote;

/// Requests a client keeps outstanding at most (borg's MAX_INFLIGHT).
pub const MAX_INFLIGHT: usize = 100;

/// Replies of async calls (`put`, `delete`) a client may owe at most. Larger than borg's
/// limit: they cost nothing here (the request bytes are bounded by the upload buffer, and
/// a thread always drains replies), and 100 per round trip capped small-file backups on
/// high-latency links.
const MAX_ASYNC_INFLIGHT: usize = 2000;

/// Bytes of encoded requests that may wait unsent when `--upload-buffer` is not given.
const DEFAULT_UNSENT_LIMIT: usize = 4 << 20;

/// Calls that change nothing on the server: they keep the manifest and key read at `open`.
const READS: &[&str] = &[
    "get",
    "load_key",
    "list",
    "scan",
    "__len__",
    "get_free_nonce",
];

/// How long the client waits for the server's last stderr lines before reporting a broken
/// connection (so `sh: borg: not found` is shown first).
const STDERR_GRACE: Duration = Duration::from_secs(5);

/// How the client reaches the server: the ssh command line and what it passes along.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// `--rsh` (None: `BORG_RSH`, else `ssh`).
    pub rsh: Option<String>,
    /// `--remote-path` (None: `BORG_REMOTE_PATH`, else `borg`); placeholders are expanded.
    pub remote_path: Option<String>,
    /// The client's root log level, forwarded as `--debug`/`--info`/….
    pub log_level: Option<Level>,
    /// `--debug-topic` values (those naming `repository` are forwarded).
    pub debug_topics: Vec<String>,
    /// `borg init --storage-quota` (bytes), forwarded as `--storage-quota=N`.
    pub storage_quota: Option<u64>,
    /// `--upload-ratelimit` in KiB/s (0: unlimited).
    pub upload_ratelimit: u64,
    /// `--upload-buffer` in MiB (0: the default small buffer).
    pub upload_buffer: u64,
}

/// The arguments of the `open` call (§4.2).
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub create: bool,
    /// Seconds (`--lock-wait`).
    pub lock_wait: i64,
    pub lock: bool,
    pub exclusive: bool,
    pub append_only: bool,
    pub make_parent_dirs: bool,
}

impl Default for OpenRequest {
    fn default() -> Self {
        OpenRequest {
            create: false,
            lock_wait: 1,
            lock: true,
            exclusive: false,
            append_only: false,
            make_parent_dirs: false,
        }
    }
}

/// The command the client runs (§1.1): `RSH [-p PORT] [USER@]HOST REMOTE_PATH serve OPTS`.
pub fn ssh_command(location: &Location, opts: &RemoteOptions) -> Result<Vec<String>> {
    let rsh = opts
        .rsh
        .clone()
        .or_else(|| std::env::var("BORG_RSH").ok())
        .unwrap_or_else(|| "ssh".into());
    let mut argv = shlex::split(&rsh)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| Error::generic(format!("Invalid BORG_RSH / --rsh value: {rsh}")))?;
    if let Some(port) = location.port {
        argv.push("-p".into());
        argv.push(port.to_string());
    }
    let host = location.host.clone().unwrap_or_default();
    argv.push(match &location.user {
        Some(user) => format!("{user}@{host}"),
        None => host,
    });
    let remote_path = opts
        .remote_path
        .clone()
        .or_else(|| std::env::var("BORG_REMOTE_PATH").ok())
        .unwrap_or_else(|| "borg".into());
    argv.push(crate::location::replace_placeholders(&remote_path, None)?);
    argv.push("serve".into());
    argv.extend(serve_options(opts));
    Ok(argv)
}

/// The options borg 1.2/1.4 clients put after `serve` (and nothing a 1.2 server rejects).
fn serve_options(opts: &RemoteOptions) -> Vec<String> {
    let mut out = Vec::new();
    match opts.log_level.unwrap_or_else(output::root_level) {
        Level::Debug => out.push("--debug".to_string()),
        Level::Info => out.push("--info".into()),
        Level::Warning => {}
        Level::Error => out.push("--error".into()),
        Level::Critical => out.push("--critical".into()),
    }
    for topic in &opts.debug_topics {
        if topic.contains("repository") {
            out.push(format!(
                "--debug-topic={}",
                output::debug_topic_logger(topic)
            ));
        }
    }
    if let Some(quota) = opts.storage_quota {
        out.push(format!("--storage-quota={quota}"));
    }
    out
}

/// Connection state shared by the callers and the I/O threads.
#[derive(Default)]
struct State {
    next_msgid: u64,
    /// Replies not yet collected by their caller.
    replies: HashMap<u64, std::result::Result<Value, RemoteException>>,
    /// msgids of async calls: their replies are dropped, errors kept in `async_error`.
    ignored: HashSet<u64>,
    async_error: Option<RemoteException>,
    /// Why the connection is unusable.
    broken: Option<Error>,
    /// Bytes handed to the writer thread but not yet written.
    unsent: usize,
    stderr_open: bool,
    /// No reply has arrived yet (a closed connection gets borg's hint).
    negotiating: bool,
    /// The client is closing: late output of the server is ignored.
    closing: bool,
}

struct Conn {
    state: Mutex<State>,
    changed: Condvar,
    unsent_limit: usize,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    fn break_with(&self, e: Error) {
        let mut st = self.lock();
        if st.broken.is_none() {
            st.broken = Some(e);
        }
        drop(st);
        self.changed.notify_all();
    }
}

/// A repository behind `borg serve`.
pub struct RemoteRepository {
    conn: Arc<Conn>,
    sender: Mutex<Option<Sender<Vec<u8>>>>,
    child: Mutex<Option<Child>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    id: ObjectId,
    location: String,
    server_version: Vec<i64>,
    append_only: bool,
    /// Writes since the last commit, or a failed call: closing sends `rollback` first.
    needs_rollback: AtomicBool,
    /// Msgids of the manifest `get` and the `load_key` sent with `open` (every command
    /// but `init` asks for both next; sending them at once saves two round trips).
    early_manifest: Mutex<Option<u64>>,
    early_key: Mutex<Option<u64>>,
    /// And `get_free_nonce` with an exclusive open (a writer reserves nonces next).
    early_nonce: Mutex<Option<u64>>,
}

impl std::fmt::Debug for RemoteRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRepository")
            .field("location", &self.location)
            .finish()
    }
}

impl RemoteRepository {
    /// Start the server, negotiate and open (or create) the repository at `location`.
    pub fn open(location: &Location, opts: &RemoteOptions, req: &OpenRequest) -> Result<Self> {
        let argv = ssh_command(location, opts)?;
        Self::open_with_command(&argv, location, opts, req)
    }

    /// [`RemoteRepository::open`] with an explicit server command line.
    pub fn open_with_command(
        argv: &[String],
        location: &Location,
        opts: &RemoteOptions,
        req: &OpenRequest,
    ) -> Result<Self> {
        output::debug(&format!("SSH command line: {argv:?}"));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("BORG_PASSPHRASE")
            .env("BORG_VERSION", crate::BORG_COMPAT_VERSION);
        // Ctrl-C at the client must not kill ssh: the client still rolls back and closes.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::exception(format!(
                "[Errno {}] {}: '{}'",
                e.raw_os_error().unwrap_or(0),
                crate::fs::strerror(e.raw_os_error().unwrap_or(0)),
                argv[0]
            ))
        })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let unsent_limit = match opts.upload_buffer {
            0 => DEFAULT_UNSENT_LIMIT,
            mib => (mib as usize) << 20,
        };
        let conn = Arc::new(Conn {
            state: Mutex::new(State {
                next_msgid: 1,
                stderr_open: true,
                negotiating: true,
                ..State::default()
            }),
            changed: Condvar::new(),
            unsent_limit,
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let rate = opts.upload_ratelimit * 1024;
        let threads = vec![
            spawn("rborg-rpc-send", {
                let conn = conn.clone();
                move || write_loop(&conn, stdin, rx, rate)
            }),
            spawn("rborg-rpc-recv", {
                let conn = conn.clone();
                move || read_loop(&conn, stdout)
            }),
            spawn("rborg-rpc-log", {
                let conn = conn.clone();
                move || stderr_loop(&conn, stderr)
            }),
        ];
        let mut repo = RemoteRepository {
            conn,
            sender: Mutex::new(Some(tx)),
            child: Mutex::new(Some(child)),
            threads: Mutex::new(threads),
            id: [0u8; 32],
            location: location.canonical_path(),
            server_version: Vec::new(),
            append_only: req.append_only,
            needs_rollback: AtomicBool::new(false),
            early_manifest: Mutex::new(None),
            early_key: Mutex::new(None),
            early_nonce: Mutex::new(None),
        };
        // negotiate, open (and the first reads) go out together: one round trip, not four.
        // The server answers in order, so a failed open still reports first.
        let negotiated = repo.send_negotiate()?;
        let opened = repo.send(
            "open",
            &[
                ("path", Arg::Raw(location.path.as_bytes())),
                ("create", req.create.into()),
                ("lock_wait", Value::from(req.lock_wait).into()),
                ("lock", req.lock.into()),
                ("exclusive", req.exclusive.into()),
                ("append_only", req.append_only.into()),
                ("make_parent_dirs", req.make_parent_dirs.into()),
            ],
            false,
        )?;
        if !req.create {
            *repo.early_manifest.get_mut().unwrap() =
                Some(repo.send("get", &[("id", Arg::Raw(&MANIFEST_ID))], false)?);
            *repo.early_key.get_mut().unwrap() = Some(repo.send("load_key", &[], false)?);
        }
        if !req.create && req.exclusive {
            *repo.early_nonce.get_mut().unwrap() = Some(repo.send("get_free_nonce", &[], false)?);
        }
        repo.server_version = repo.negotiated(negotiated)?;
        let id = repo.wait_for(opened)?;
        repo.id = id
            .as_bytes()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| unexpected_reply("open"))?;
        Ok(repo)
    }

    /// The server's version tuple (`[1, 2, 4, -1]`).
    pub fn server_version(&self) -> &[i64] {
        &self.server_version
    }

    /// Send the legacy-form handshake real clients send (§4.1).
    fn send_negotiate(&self) -> Result<u64> {
        let client_data = Value::Map(vec![(
            Value::from("client_version"),
            version_value(&version_tuple(crate::BORG_COMPAT_VERSION)),
        )]);
        self.send_with(
            |id| encode_legacy_request(id, "negotiate", &[client_data]),
            false,
        )
    }

    /// The server's version from its answer to the handshake.
    fn negotiated(&self, msgid: u64) -> Result<Vec<i64>> {
        let reply = self.wait_for(msgid)?;
        reply
            .get("server_version")
            .and_then(parse_version_value)
            .ok_or_else(|| {
                Error::exception(format!(
                    "Server insisted on using unsupported protocol version {}",
                    describe(&reply)
                ))
            })
    }

    /// Queue one request (encoded with its msgid by `encode`); async requests are recorded
    /// so their replies are dropped and their errors kept.
    fn send_with(&self, encode: impl FnOnce(u64) -> Vec<u8>, is_async: bool) -> Result<u64> {
        let mut st = self.conn.lock();
        loop {
            if let Some(e) = &st.broken {
                return Err(e.clone());
            }
            let inflight_ok = !is_async || st.ignored.len() < MAX_ASYNC_INFLIGHT;
            if inflight_ok && (st.unsent == 0 || st.unsent < self.conn.unsent_limit) {
                break;
            }
            st = self.conn.wait(st);
        }
        let msgid = st.next_msgid;
        st.next_msgid += 1;
        let bytes = encode(msgid);
        st.unsent += bytes.len();
        if is_async {
            st.ignored.insert(msgid);
        }
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        match sender.as_ref().map(|s| s.send(bytes)) {
            Some(Ok(())) => Ok(msgid),
            _ => Err(Error::plain(ErrorKind::ConnectionClosed)),
        }
    }

    fn send(&self, method: &str, args: &[(&str, Arg)], is_async: bool) -> Result<u64> {
        if !READS.contains(&method) {
            self.forget_early_reads();
        }
        self.send_with(|id| encode_request(id, method, args), is_async)
    }

    /// Drop the manifest and key read with `open` once anything may have changed them
    /// (a put, a commit, a repair …): a later read asks again.
    fn forget_early_reads(&self) {
        let early = [&self.early_manifest, &self.early_key, &self.early_nonce];
        for msgid in early.iter().filter_map(|m| m.lock().unwrap().take()) {
            self.conn.lock().replies.remove(&msgid);
        }
    }

    /// The answer to a read sent with `open` if it still stands, else a fresh argument-less call.
    fn early_or_call(&self, early: &Mutex<Option<u64>>, method: &str) -> Result<Value> {
        let msgid = early.lock().unwrap().take();
        match msgid {
            Some(msgid) => self.wait_for(msgid),
            None => self.call(method, &[]),
        }
    }

    /// The reply to `msgid` (its error rebuilt as borg's client does).
    fn wait_for(&self, msgid: u64) -> Result<Value> {
        let mut st = self.conn.lock();
        loop {
            if let Some(reply) = st.replies.remove(&msgid) {
                return reply.map_err(|ex| {
                    self.needs_rollback.store(true, Ordering::Relaxed);
                    from_remote(&ex, &self.location)
                });
            }
            if let Some(e) = st.broken.clone() {
                // after a close, let the server's last words (`sh: borg: not found`) come first
                let closed = matches!(
                    e.kind,
                    ErrorKind::ConnectionClosed | ErrorKind::ConnectionClosedWithHint
                );
                let deadline = Instant::now() + STDERR_GRACE;
                while closed && st.stderr_open && Instant::now() < deadline {
                    st = self
                        .conn
                        .changed
                        .wait_timeout(st, Duration::from_millis(100))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                return Err(e);
            }
            st = self.conn.wait(st);
        }
    }

    fn call(&self, method: &str, args: &[(&str, Arg)]) -> Result<Value> {
        let msgid = self.send(method, args, false)?;
        self.wait_for(msgid)
    }

    /// Raise the first stored error of an async call; with `wait`, after all of them
    /// were answered (borg's `async_response`).
    fn async_response(&self, wait: bool) -> Result<()> {
        let mut st = self.conn.lock();
        loop {
            if let Some(ex) = st.async_error.take() {
                self.needs_rollback.store(true, Ordering::Relaxed);
                return Err(from_remote(&ex, &self.location));
            }
            if !wait || st.ignored.is_empty() {
                return Ok(());
            }
            if let Some(e) = &st.broken {
                return Err(e.clone());
            }
            st = self.conn.wait(st);
        }
    }

    /// Refuse a call the server is too old for (borg's `@api(since=…)`).
    fn require_version(&self, what: &str, since: &str) -> Result<()> {
        if self.server_version.as_slice() < version_tuple(since).as_slice() {
            return Err(Error::new(ErrorKind::RPCServerOutdated, [what, since]));
        }
        Ok(())
    }

    /// `list` / `scan` in pages of at most [`LIST_SCAN_LIMIT`] ids.
    fn paged(
        &self,
        method: &str,
        limit: usize,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        let mut marker = marker.copied();
        while out.len() < limit {
            let page = (limit - out.len()).min(LIST_SCAN_LIMIT);
            let marker_arg = match &marker {
                Some(m) => Arg::Raw(m),
                None => Arg::Value(Value::Nil),
            };
            let reply = self.call(
                method,
                &[
                    ("limit", Value::from(page as u64).into()),
                    ("marker", marker_arg),
                ],
            )?;
            let ids = reply.as_list().ok_or_else(|| unexpected_reply(method))?;
            let got = ids.len();
            for id in ids {
                let id: ObjectId = id
                    .as_bytes()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| unexpected_reply(method))?;
                out.push(id);
            }
            if got < page {
                break;
            }
            marker = out.last().copied();
        }
        Ok(out)
    }

    /// Close the connection: roll back after a failure or unfinished writes (as borg's
    /// client does on its error path), close the server's stdin, wait for it to exit.
    fn shutdown(&self) {
        let rollback = self.needs_rollback.load(Ordering::Relaxed);
        if rollback && self.conn.lock().broken.is_none() {
            let _ = self.call("rollback", &[]);
        }
        self.conn.lock().closing = true;
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.wait();
        }
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

impl Drop for RemoteRepository {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("cannot start an RPC thread")
}

fn unexpected_reply(method: &str) -> Error {
    Error::exception(format!("unexpected reply to RPC call {method}"))
}

fn describe(v: &Value) -> String {
    match v.as_bytes() {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => v.to_string(),
    }
}

/// Write queued requests to the server's stdin, at most `rate` bytes/s if non-zero.
fn write_loop(conn: &Conn, mut stdin: ChildStdin, rx: Receiver<Vec<u8>>, rate: u64) {
    let started = Instant::now();
    let mut written: u64 = 0;
    let mut failed = false;
    for msg in rx {
        if !failed {
            let r = if rate == 0 {
                stdin.write_all(&msg)
            } else {
                write_throttled(&mut stdin, &msg, rate, started, &mut written)
            };
            if r.is_err() {
                failed = true;
                broken_pipe(conn);
            }
        }
        let mut st = conn.lock();
        st.unsent -= msg.len();
        drop(st);
        conn.changed.notify_all();
    }
}

/// The server stopped reading. Usually it is gone and the reader reports the closed
/// connection in a moment (with borg's hint during the handshake); else this is borg 1.4's
/// broken pipe.
fn broken_pipe(conn: &Conn) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut st = conn.lock();
    while st.broken.is_none() && Instant::now() < deadline {
        st = conn
            .changed
            .wait_timeout(st, Duration::from_millis(50))
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    drop(st);
    conn.break_with(Error::new(
        ErrorKind::ConnectionBrokenWithHint,
        ["Broken Pipe"],
    ));
}

/// Write in tenths of the per-second budget, sleeping whenever ahead of the rate.
fn write_throttled(
    out: &mut ChildStdin,
    msg: &[u8],
    rate: u64,
    started: Instant,
    written: &mut u64,
) -> std::io::Result<()> {
    let slice = ((rate / 10).max(1)) as usize;
    for piece in msg.chunks(slice) {
        let due = Duration::from_secs_f64(*written as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
        out.write_all(piece)?;
        *written += piece.len() as u64;
    }
    Ok(())
}

/// Read replies and file them by msgid.
fn read_loop(conn: &Conn, mut stdout: impl Read) {
    let mut frames = FrameReader::new(Limits::CLIENT);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        frames.feed(&buf[..n]);
        loop {
            let before: Vec<u8> = frames.pending().iter().take(128).copied().collect();
            match frames.next_value() {
                Ok(Some(v)) => match parse_reply(v) {
                    Some(reply) => file_reply(conn, reply),
                    None => return unexpected(conn, &before),
                },
                Ok(None) => break,
                Err(_) => return unexpected(conn, &before),
            }
        }
    }
    let mut st = conn.lock();
    if st.broken.is_none() && !st.closing {
        st.broken = Some(if st.negotiating {
            Error::new(
                ErrorKind::ConnectionClosedWithHint,
                ["Is borg working on the server?"],
            )
        } else {
            Error::plain(ErrorKind::ConnectionClosed)
        });
    }
    drop(st);
    conn.changed.notify_all();
}

fn unexpected(conn: &Conn, data: &[u8]) {
    if !conn.lock().closing {
        conn.break_with(unexpected_from_server(data));
    }
}

fn file_reply(conn: &Conn, reply: super::codec::Reply) {
    let mut st = conn.lock();
    st.negotiating = false;
    if st.ignored.remove(&reply.msgid) {
        if let Err(ex) = reply.outcome {
            st.async_error.get_or_insert(ex);
        }
    } else {
        st.replies.insert(reply.msgid, reply.outcome);
    }
    drop(st);
    conn.changed.notify_all();
}

/// Re-emit the server's stderr line by line (`\n` or `\r` ends a line).
fn stderr_loop(conn: &Conn, mut stderr: impl Read) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            output::handle_remote_line(&String::from_utf8_lossy(&line));
        }
    }
    if !pending.is_empty() {
        output::handle_remote_line(&String::from_utf8_lossy(&pending));
    }
    conn.lock().stderr_open = false;
    conn.changed.notify_all();
}

fn object_id(v: &Value, method: &str) -> Result<Vec<u8>> {
    v.as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| unexpected_reply(method))
}

impl Repository for RemoteRepository {
    fn id(&self) -> ObjectId {
        self.id
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        if *id == MANIFEST_ID {
            if let Some(msgid) = self.early_manifest.lock().unwrap().take() {
                return object_id(&self.wait_for(msgid)?, "get");
            }
        }
        object_id(&self.call("get", &[("id", Arg::Raw(id))])?, "get")
    }

    fn contains(&self, id: &ObjectId) -> Result<bool> {
        let msgid = self.send("get", &[("id", Arg::Raw(id))], false)?;
        match self.wait_for(msgid) {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::RepositoryObjectNotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn len(&self) -> Result<usize> {
        let v = self.call("__len__", &[])?;
        v.as_uint()
            .map(|n| n as usize)
            .ok_or_else(|| unexpected_reply("__len__"))
    }

    fn list(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.paged("list", limit, marker)
    }

    fn load_key(&self) -> Result<Vec<u8>> {
        let v = self.early_or_call(&self.early_key, "load_key")?;
        Ok(v.as_bytes().map(<[u8]>::to_vec).unwrap_or_default())
    }

    fn append_only(&self) -> bool {
        self.append_only
    }

    /// Enough objects per call that the round trip is paid once for many of them.
    fn preferred_batch(&self) -> usize {
        128
    }

    /// Pipelined: up to [`MAX_INFLIGHT`] `get`s outstanding, replies taken in order.
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        let mut sent = std::collections::VecDeque::new();
        let mut next = 0;
        let mut out = Vec::with_capacity(ids.len());
        while out.len() < ids.len() {
            while next < ids.len() && sent.len() < MAX_INFLIGHT {
                sent.push_back(self.send("get", &[("id", Arg::Raw(&ids[next]))], false)?);
                next += 1;
            }
            let msgid = sent.pop_front().expect("a request is outstanding");
            match self.wait_for(msgid) {
                Ok(v) => out.push(object_id(&v, "get")?),
                Err(e) => {
                    // collect the replies still due so they do not pile up
                    for m in sent {
                        let _ = self.wait_for(m);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Every put goes out without waiting (borg's async put; borg waits for the manifest's,
    /// but `commit` waits for all replies and reports their first error anyway).
    fn put(&self, id: &ObjectId, data: &[u8]) -> Result<()> {
        self.needs_rollback.store(true, Ordering::Relaxed);
        self.async_response(false)?;
        self.send(
            "put",
            &[("id", Arg::Raw(id)), ("data", Arg::Raw(data))],
            true,
        )?;
        Ok(())
    }

    fn delete(&self, id: &ObjectId) -> Result<()> {
        self.needs_rollback.store(true, Ordering::Relaxed);
        self.async_response(false)?;
        self.send("delete", &[("id", Arg::Raw(id))], true)?;
        Ok(())
    }

    fn commit(&self, compact: bool, threshold: f64, cleanup_commits: bool) -> Result<()> {
        self.async_response(true)?;
        self.call(
            "commit",
            &[
                ("save_space", false.into()),
                ("compact", compact.into()),
                ("threshold", Value::F64(threshold).into()),
                ("cleanup_commits", cleanup_commits.into()),
            ],
        )?;
        self.needs_rollback.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn rollback(&self) -> Result<()> {
        let _ = self.async_response(true);
        self.call("rollback", &[])?;
        self.needs_rollback.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn save_key(&self, keydata: &[u8]) -> Result<()> {
        self.call("save_key", &[("keydata", Arg::Raw(keydata))])?;
        Ok(())
    }

    fn get_free_nonce(&self) -> Result<Option<u64>> {
        let v = self.early_or_call(&self.early_nonce, "get_free_nonce")?;
        Ok(v.as_uint())
    }

    fn commit_nonce_reservation(
        &self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()> {
        let start = start_nonce.map(Value::from).unwrap_or(Value::Nil);
        self.call(
            "commit_nonce_reservation",
            &[
                ("next_unreserved", Value::from(next_unreserved).into()),
                ("start_nonce", start.into()),
            ],
        )?;
        Ok(())
    }

    fn scan(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.require_version("scan", "1.1.0b3")?;
        self.paged("scan", limit, marker)
    }

    fn check(&self, repair: bool, max_duration: f64) -> Result<bool> {
        if max_duration != 0.0 {
            self.require_version("check", "1.2.0a4")?;
        }
        let duration = if max_duration.fract() == 0.0 {
            Value::from(max_duration as i64)
        } else {
            Value::F64(max_duration)
        };
        let v = self.call(
            "check",
            &[
                ("repair", repair.into()),
                ("save_space", false.into()),
                ("max_duration", duration.into()),
            ],
        )?;
        Ok(v.as_boolean().unwrap_or(false))
    }

    fn break_lock(&self) -> Result<()> {
        self.call("break_lock", &[])?;
        Ok(())
    }

    fn destroy(&self) -> Result<()> {
        self.call("destroy", &[])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pure_reads_keep_the_answers_read_with_open() {
        for changes in [
            "put",
            "delete",
            "commit",
            "rollback",
            "check",
            "save_key",
            "destroy",
            "break_lock",
            "commit_nonce_reservation",
        ] {
            assert!(!READS.contains(&changes), "{changes}");
        }
    }

    fn loc(text: &str) -> Location {
        Location::parse(text).unwrap()
    }

    #[test]
    fn command_line_as_borg_builds_it() {
        let opts = RemoteOptions {
            rsh: Some("ssh -i 'my key' -o BatchMode=yes".into()),
            remote_path: Some("sudo -u borg borg".into()),
            log_level: Some(Level::Info),
            debug_topics: vec!["repository".into(), "lock".into(), "borg.repository".into()],
            storage_quota: Some(20_000_000),
            ..Default::default()
        };
        let argv = ssh_command(&loc("ssh://user@host:2222/./repo"), &opts).unwrap();
        assert_eq!(
            argv,
            [
                "ssh",
                "-i",
                "my key",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "user@host",
                "sudo -u borg borg",
                "serve",
                "--info",
                "--debug-topic=borg.debug.repository",
                "--debug-topic=borg.repository",
                "--storage-quota=20000000",
            ]
        );
        let opts = RemoteOptions {
            rsh: Some("fake-ssh".into()),
            remote_path: Some("borg".into()),
            log_level: Some(Level::Warning),
            ..Default::default()
        };
        let argv = ssh_command(&loc("ssh://u@[::1]:22/./r"), &opts).unwrap();
        assert_eq!(argv, ["fake-ssh", "-p", "22", "u@::1", "borg", "serve"]);
        let argv = ssh_command(&loc("host:repo"), &opts).unwrap();
        assert_eq!(argv, ["fake-ssh", "host", "borg", "serve"]);
    }

    #[test]
    fn paths_sent_in_open() {
        for (url, path) in [
            ("ssh://user@host:2222/./repo", "/./repo"),
            ("ssh://host/abs/../x/repo", "/x/repo"),
            ("ssh://host//abs/repo", "//abs/repo"),
            ("ssh://host/~/repo", "/~/repo"),
            ("user@host:repo", "repo"),
            ("host:/abs/repo", "/abs/repo"),
            ("host:~/repo", "~/repo"),
            ("host:./a/../repo", "repo"),
            ("user@[fe80::1]:repo::arch", "repo"),
        ] {
            assert_eq!(loc(url).path, path, "{url}");
        }
    }

    #[test]
    fn a_missing_server_program_is_a_closed_connection() {
        let opts = RemoteOptions {
            rsh: Some("sh -c 'echo sh: borg: not found >&2; exit 127' ".into()),
            ..Default::default()
        };
        let e = RemoteRepository::open(&loc("ssh://h/./r"), &opts, &OpenRequest::default())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConnectionClosedWithHint);
        assert_eq!(
            e.message,
            "Connection closed by remote host. Is borg working on the server?"
        );
    }

    #[test]
    fn a_banner_on_stdout_is_unexpected_data() {
        let opts = RemoteOptions {
            rsh: Some("sh -c 'echo hello-banner; cat >/dev/null' ".into()),
            ..Default::default()
        };
        let e = RemoteRepository::open(&loc("ssh://h/./r"), &opts, &OpenRequest::default())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnexpectedRPCDataFormatFromServer);
        assert!(e.message.contains("hello-banner"), "{}", e.message);
    }
}
