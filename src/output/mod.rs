//! Everything the user sees goes through here: log records (text or `--log-json`), progress
//! (bars on a TTY, plain lines, or JSON), `--json` documents, stdout products and prompts.
//! The engine never prints; it calls these functions and this module decides the form.
//!
//! Logging follows borg's Python logging setup: a root level (`--critical` … `--debug`),
//! per-logger levels (`borg.output.list` etc. are WARNING unless their option enables them,
//! `borg.debug.*` are WARNING unless named by `--debug-topic`), one handler on stderr that
//! writes the bare message (or one JSON object per record with `--log-json`).

pub mod format;
pub mod human;
pub mod json;
pub mod listing;
pub mod progress;
pub mod prompt;
pub mod signals;
pub mod stats;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::errors::{Error, ErrorKind, WarningKind};

pub use format::{format_keys, format_line, FormatError, FormatTemplate, FormatValue};
pub use human::{
    archive_time_local, format_file_size, format_file_size_signed, format_time, format_timedelta,
    format_timedelta_us, isoformat_us, item_time_local, parse_borg_utc,
};
pub use json::{dumps_line, dumps_line_sorted, dumps_pretty, text_and_b64};
pub use progress::{ArchiveProgress, ArchiveProgressStats, ProgressMessage, ProgressPercent};
pub use prompt::{yes, Question};

/// Log levels (Python logging's, in severity order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL` (the JSON `levelname`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// Parse a level name as Python's logging does (`WARN` is `WARNING`; case-insensitive).
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARNING" | "WARN" => Level::Warning,
            "ERROR" => Level::Error,
            "CRITICAL" | "FATAL" => Level::Critical,
            _ => return None,
        })
    }

    /// The lower-case option name (`--debug` → "debug"), as forwarded to `borg serve`.
    pub fn option_name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Warning,
            3 => Level::Error,
            _ => Level::Critical,
        }
    }
}

/// Loggers whose INFO records only show when an option enables them (borg's implied logging).
pub const LOGGER_LIST: &str = "borg.output.list";
pub const LOGGER_STATS: &str = "borg.output.stats";
pub const LOGGER_SHOW_RC: &str = "borg.output.show-rc";
pub const LOGGER_SHOW_VERSION: &str = "borg.output.show-version";
pub const LOGGER_PROGRESS: &str = "borg.output.progress";
/// The logger of command-level messages.
pub const LOGGER_ARCHIVER: &str = "borg.archiver";

/// Output settings chosen once at startup from the common options.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// Root log level (`--critical` … `--debug`; default WARNING).
    pub level: Level,
    /// `--log-json`.
    pub log_json: bool,
    /// `--progress` (always on for `borg serve`: the client decides what to show).
    pub progress: bool,
    /// `--iec`.
    pub iec: bool,
    /// `--debug-topic` values (a topic without a dot means `borg.debug.<topic>`).
    pub debug_topics: Vec<String>,
    /// `borg serve` before the client switched it to JSON: records as `$LOG LEVEL name
    /// Remote: msg`.
    pub serve: bool,
    /// `--show-rc`: [`exit_process`] logs the final rc line.
    pub show_rc: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            level: Level::Warning,
            log_json: false,
            progress: false,
            iec: false,
            debug_topics: Vec::new(),
            serve: false,
            show_rc: false,
        }
    }
}

static ROOT_LEVEL: AtomicU8 = AtomicU8::new(2);
static LOG_JSON: AtomicBool = AtomicBool::new(false);
static PROGRESS: AtomicBool = AtomicBool::new(false);
static IEC: AtomicBool = AtomicBool::new(false);
static SERVE_TEXT: AtomicBool = AtomicBool::new(false);
static SHOW_RC: AtomicBool = AtomicBool::new(false);

fn logger_levels() -> &'static RwLock<HashMap<String, Level>> {
    static LEVELS: OnceLock<RwLock<HashMap<String, Level>>> = OnceLock::new();
    LEVELS.get_or_init(|| RwLock::new(default_logger_levels()))
}

fn default_logger_levels() -> HashMap<String, Level> {
    [
        LOGGER_LIST,
        LOGGER_STATS,
        LOGGER_SHOW_RC,
        LOGGER_SHOW_VERSION,
        LOGGER_PROGRESS,
    ]
    .iter()
    .map(|n| (n.to_string(), Level::Warning))
    .collect()
}

/// Apply the startup configuration (call once, before anything is logged).
pub fn configure(cfg: &OutputConfig) {
    ROOT_LEVEL.store(cfg.level.to_u8(), Ordering::Relaxed);
    LOG_JSON.store(cfg.log_json, Ordering::Relaxed);
    PROGRESS.store(cfg.progress, Ordering::Relaxed);
    IEC.store(cfg.iec, Ordering::Relaxed);
    SERVE_TEXT.store(cfg.serve && !cfg.log_json, Ordering::Relaxed);
    SHOW_RC.store(cfg.show_rc, Ordering::Relaxed);
    let mut levels = default_logger_levels();
    if cfg.progress {
        levels.insert(LOGGER_PROGRESS.to_string(), Level::Info);
    }
    if cfg.show_rc {
        levels.insert(LOGGER_SHOW_RC.to_string(), Level::Info);
    }
    for topic in &cfg.debug_topics {
        levels.insert(debug_topic_logger(topic), Level::Debug);
    }
    *logger_levels().write().unwrap_or_else(|e| e.into_inner()) = levels;
    for topic in &cfg.debug_topics {
        debug(&format!(
            "Enabling debug topic {}",
            debug_topic_logger(topic)
        ));
    }
}

/// Logger name of a `--debug-topic` value.
pub fn debug_topic_logger(topic: &str) -> String {
    if topic.contains('.') {
        topic.to_string()
    } else {
        format!("borg.debug.{topic}")
    }
}

/// Let INFO records of `name` through (borg does this for `borg.output.list` with `--list`,
/// `borg.output.stats` with `--stats`, `borg.output.show-rc`, `borg.output.show-version`).
pub fn enable_logger(name: &str) {
    set_logger_level(name, Level::Info);
}

/// Give one logger (and its children without a level of their own) an explicit level.
pub fn set_logger_level(name: &str, level: Level) {
    logger_levels()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), level);
}

/// Switch `--log-json` on or off later (`borg serve` after protocol negotiation).
pub fn set_log_json(on: bool) {
    LOG_JSON.store(on, Ordering::Relaxed);
    if on {
        SERVE_TEXT.store(false, Ordering::Relaxed);
    }
}

pub fn is_log_json() -> bool {
    LOG_JSON.load(Ordering::Relaxed)
}

/// The root log level.
pub fn root_level() -> Level {
    Level::from_u8(ROOT_LEVEL.load(Ordering::Relaxed))
}

/// The level a record on logger `name` must reach to be shown (Python's effective level).
pub fn effective_level(name: &str) -> Level {
    let levels = logger_levels().read().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = levels.get(name) {
        return *l;
    }
    // borg's lazy loggers give every unconfigured `borg.debug.*` logger WARNING.
    if name.starts_with("borg.debug.") {
        return Level::Warning;
    }
    let mut current = name;
    while let Some(pos) = current.rfind('.') {
        current = &current[..pos];
        if let Some(l) = levels.get(current) {
            return *l;
        }
    }
    root_level()
}

/// Whether a record of `level` on logger `name` would be emitted (check before costly
/// message formatting).
pub fn log_enabled(level: Level, name: &str) -> bool {
    level >= effective_level(name)
}

/// Log a record on logger `name` (e.g. `borg.archiver`, `borg.output.list`).
pub fn log(level: Level, name: &str, msg: &str, msgid: Option<&str>) {
    if !log_enabled(level, name) {
        return;
    }
    emit_record(level, name, msg, msgid, None);
}

/// Write a record regardless of levels (levels were checked by the caller).
fn emit_record(level: Level, name: &str, msg: &str, msgid: Option<&str>, time: Option<f64>) {
    if is_log_json() {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from("log_message"));
        obj.insert("time".into(), Value::from(time.unwrap_or_else(now_float)));
        obj.insert("message".into(), Value::from(msg));
        obj.insert("levelname".into(), Value::from(level.name()));
        obj.insert("name".into(), Value::from(name));
        if let Some(id) = msgid.filter(|m| !m.is_empty()) {
            obj.insert("msgid".into(), Value::from(id));
        }
        write_stderr(&(dumps_line(&Value::Object(obj)) + "\n"));
    } else if SERVE_TEXT.load(Ordering::Relaxed) {
        write_stderr(&format!("$LOG {} {} Remote: {}\n", level.name(), name, msg));
    } else {
        write_stderr(&format!("{msg}\n"));
    }
}

pub fn debug(msg: &str) {
    log(Level::Debug, LOGGER_ARCHIVER, msg, None)
}
pub fn info(msg: &str) {
    log(Level::Info, LOGGER_ARCHIVER, msg, None)
}
pub fn warning(msg: &str) {
    log(Level::Warning, LOGGER_ARCHIVER, msg, None)
}
pub fn error(msg: &str) {
    log(Level::Error, LOGGER_ARCHIVER, msg, None)
}

/// A line of `--list` output (`borg.output.list`, INFO).
pub fn list_line(msg: &str) {
    log(Level::Info, LOGGER_LIST, msg, None)
}

/// A line of a `--stats` block (`borg.output.stats`, INFO).
pub fn stats_line(msg: &str) {
    log(Level::Info, LOGGER_STATS, msg, None)
}

/// `create`/`recreate`/`import-tar --list` item status: text `<status> <path>` on
/// `borg.output.list`, or a `file_status` object with `--log-json`.
pub fn file_status(status: char, path: &str) {
    if !log_enabled(Level::Info, LOGGER_LIST) {
        return;
    }
    if is_log_json() {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from("file_status"));
        obj.insert("status".into(), Value::from(status.to_string()));
        obj.insert("path".into(), Value::from(path));
        write_stderr(&(dumps_line(&Value::Object(obj)) + "\n"));
    } else {
        emit_record(
            Level::Info,
            LOGGER_LIST,
            &format!("{status} {path}"),
            None,
            None,
        );
    }
}

/// Log a classed warning (msgid, modern rc) and record it for the final exit code.
pub fn warn_kind(kind: WarningKind, msg: &str) {
    crate::errors::record_warning(kind);
    log(Level::Warning, LOGGER_ARCHIVER, msg, kind.msgid())
}

/// Report a fatal error as borg does: the message at ERROR with its msgid, then a
/// "traceback" record (ERROR for error classes that show tracebacks, else DEBUG).
/// Unexpected failures are reported as borg's `Local Exception` (msgid `Exception`).
pub fn report_error(err: &Error) {
    let (msg, detail) = if err.kind == ErrorKind::Exception {
        ("Local Exception".to_string(), format!("{}\n", err.message))
    } else {
        (
            err.message.clone(),
            format!("{}: {}\n", err.msgid(), err.message),
        )
    };
    log(Level::Error, LOGGER_ARCHIVER, &msg, Some(err.msgid()));
    let tb_level = if err.kind.traceback() {
        Level::Error
    } else {
        Level::Debug
    };
    if log_enabled(tb_level, LOGGER_ARCHIVER) {
        let text = format!(
            "Error details (rborg keeps no Python traceback):\n{detail}{}",
            sysinfo()
        );
        log(tb_level, LOGGER_ARCHIVER, text.trim_end_matches('\n'), None);
    }
}

/// Platform/version block that borg appends to tracebacks (`BORG_SHOW_SYSINFO=no` omits it).
pub fn sysinfo() -> String {
    if std::env::var("BORG_SHOW_SYSINFO")
        .map(|v| v.eq_ignore_ascii_case("no"))
        .unwrap_or(false)
    {
        return String::new();
    }
    let mut lines = Vec::new();
    if let Ok(u) = nix::sys::utsname::uname() {
        lines.push(format!(
            "Platform: {} {} {} {} {}",
            u.sysname().to_string_lossy(),
            u.nodename().to_string_lossy(),
            u.release().to_string_lossy(),
            u.version().to_string_lossy(),
            u.machine().to_string_lossy()
        ));
    }
    lines.push(format!(
        "Borg: {}  rborg: {}",
        crate::BORG_COMPAT_VERSION,
        env!("CARGO_PKG_VERSION")
    ));
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    lines.push(format!("PID: {}  CWD: {}", std::process::id(), cwd));
    let argv: Vec<String> = std::env::args_os().map(|a| format!("{:?}", a)).collect();
    lines.push(format!("sys.argv: [{}]", argv.join(", ")));
    let ssh_cmd = std::env::var("SSH_ORIGINAL_COMMAND").map(|c| format!("{c:?}"));
    lines.push(format!(
        "SSH_ORIGINAL_COMMAND: {}",
        ssh_cmd.unwrap_or_else(|_| "None".into())
    ));
    lines.push(String::new());
    lines.join("\n")
}

/// borg's classification of an exit code: success, warning, error or signal.
pub fn classify_rc(rc: i32) -> Option<&'static str> {
    match rc {
        0 => Some("success"),
        1 | 100..=127 => Some("warning"),
        2..=99 => Some("error"),
        128..=255 => Some("signal"),
        _ => None,
    }
}

/// The `--show-rc` record (`borg.output.show-rc`): `terminating with <class> status, rc N`.
pub fn show_rc(rc: i32) {
    let (level, class, shown) = match classify_rc(rc) {
        Some("success") => (Level::Info, "success", rc),
        Some("warning") => (Level::Warning, "warning", rc),
        Some(class) => (Level::Error, class, rc),
        None => (Level::Error, "abnormal", if rc == 0 { 666 } else { rc }),
    };
    log(
        level,
        LOGGER_SHOW_RC,
        &format!("terminating with {class} status, rc {shown}"),
        None,
    );
}

/// End the process the way borg does: the `--show-rc` line (if configured), flush stdout,
/// exit with `rc`.
pub fn exit_process(rc: i32) -> ! {
    signals::claim_exit();
    exit_claimed(rc)
}

/// [`exit_process`] for the caller that already holds the exit claim (the signal path).
pub(crate) fn exit_claimed(rc: i32) -> ! {
    signals::run_cleanups();
    if SHOW_RC.load(Ordering::Relaxed) {
        show_rc(rc);
    }
    stdout_flush();
    progress::clear_all_bars();
    std::process::exit(rc)
}

/// Whether `--progress` was given.
pub fn progress_enabled() -> bool {
    PROGRESS.load(Ordering::Relaxed)
}

/// Whether `--iec` was given.
pub fn iec() -> bool {
    IEC.load(Ordering::Relaxed)
}

/// A size for text output honouring `--iec`.
pub fn size(v: i64) -> String {
    format_file_size(v, iec())
}

/// Seconds since the epoch as a float (Python's `time.time()`).
pub fn now_float() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn stderr_is_tty() -> bool {
    static TTY: OnceLock<bool> = OnceLock::new();
    *TTY.get_or_init(|| std::io::stderr().is_terminal())
}

pub fn stdout_is_tty() -> bool {
    static TTY: OnceLock<bool> = OnceLock::new();
    *TTY.get_or_init(|| std::io::stdout().is_terminal())
}

/// Terminal width of stderr (None when stderr is not a terminal).
pub fn terminal_width() -> Option<usize> {
    if let Ok(cols) = std::env::var("COLUMNS") {
        if let Ok(n) = cols.trim().parse::<usize>() {
            if n > 0 {
                return Some(n);
            }
        }
    }
    if !stderr_is_tty() {
        return None;
    }
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize struct we own.
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        Some(ws.ws_col as usize)
    } else {
        Some(80)
    }
}

fn stderr_lock() -> &'static Mutex<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    &LOCK
}

#[cfg(test)]
pub(crate) mod capture {
    //! Unit tests read what would go to stderr; tests that use it (or change the global
    //! output configuration) hold [`lock`].
    use std::sync::Mutex;

    pub static BUFFER: Mutex<Option<String>> = Mutex::new(None);
    static TEST_LOCK: Mutex<()> = Mutex::new(());

    pub fn lock() -> std::sync::MutexGuard<'static, ()> {
        TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn start() {
        *BUFFER.lock().unwrap() = Some(String::new());
    }

    pub fn take() -> String {
        BUFFER.lock().unwrap().take().unwrap_or_default()
    }

    pub(super) fn write(text: &str) -> bool {
        match BUFFER.lock().unwrap().as_mut() {
            Some(b) => {
                b.push_str(text);
                true
            }
            None => false,
        }
    }
}

/// Write text to stderr as one unit (records never interleave across threads); stdout
/// is flushed first so both streams keep their relative order on a terminal.
pub fn write_stderr(text: &str) {
    #[cfg(test)]
    if capture::write(text) {
        return;
    }
    let _guard = stderr_lock().lock().unwrap_or_else(|e| e.into_inner());
    stdout_flush();
    progress::suspend_bars(|| {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    });
}

/// Write progress text (no stdout flush, bars untouched).
pub(crate) fn write_stderr_raw(text: &str) {
    #[cfg(test)]
    if capture::write(text) {
        return;
    }
    let _guard = stderr_lock().lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

struct StdoutState {
    buf: Vec<u8>,
    broken: bool,
    flusher_started: bool,
}

fn stdout_state() -> &'static Mutex<StdoutState> {
    static STATE: Mutex<StdoutState> = Mutex::new(StdoutState {
        buf: Vec::new(),
        broken: false,
        flusher_started: false,
    });
    &STATE
}

const STDOUT_BUFFER_LIMIT: usize = 64 * 1024;

fn flush_locked(state: &mut StdoutState) {
    if state.buf.is_empty() {
        return;
    }
    if !state.broken {
        let mut out = std::io::stdout().lock();
        let result = out.write_all(&state.buf).and_then(|_| out.flush());
        // Like borg's stdout wrapper: a closed pipe (`borg list | head`) silences stdout
        // but the command runs to completion.
        if result.is_err() {
            state.broken = true;
        }
    }
    state.buf.clear();
}

/// Append raw bytes to stdout (`extract --stdout`, `export-tar -`, …).
pub fn stdout_write(bytes: &[u8]) {
    let mut state = stdout_state().lock().unwrap_or_else(|e| e.into_inner());
    if state.broken {
        return;
    }
    if bytes.len() >= STDOUT_BUFFER_LIMIT {
        flush_locked(&mut state);
        let mut out = std::io::stdout().lock();
        if out.write_all(bytes).is_err() {
            state.broken = true;
        }
        return;
    }
    state.buf.extend_from_slice(bytes);
    if state.buf.len() >= STDOUT_BUFFER_LIMIT {
        flush_locked(&mut state);
    }
    start_flusher(&mut state);
}

/// Print one line of text to stdout (a newline is appended). Lines reach a terminal at
/// once, a pipe within ~0.1 s (a background flusher), everything at exit.
pub fn stdout_line(line: &str) {
    let mut state = stdout_state().lock().unwrap_or_else(|e| e.into_inner());
    if state.broken {
        return;
    }
    state.buf.extend_from_slice(line.as_bytes());
    state.buf.push(b'\n');
    if stdout_is_tty() || state.buf.len() >= STDOUT_BUFFER_LIMIT {
        flush_locked(&mut state);
    }
    start_flusher(&mut state);
}

/// Print text to stdout without adding a newline.
pub fn stdout_text(text: &str) {
    stdout_write(text.as_bytes());
}

/// Print a `--json` document (pretty, sorted keys) followed by a newline.
pub fn print_json(v: &Value) {
    stdout_line(&dumps_pretty(v));
}

/// Print one `--json-lines` record (insertion order).
pub fn print_json_line(v: &Value) {
    stdout_line(&dumps_line(v));
}

pub fn stdout_flush() {
    let mut state = stdout_state().lock().unwrap_or_else(|e| e.into_inner());
    flush_locked(&mut state);
}

/// True once stdout's reader went away; long producers may stop early.
pub fn stdout_broken() -> bool {
    stdout_state()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .broken
}

fn start_flusher(state: &mut StdoutState) {
    if state.flusher_started {
        return;
    }
    state.flusher_started = true;
    let _ = std::thread::Builder::new()
        .name("stdout-flusher".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(100));
            stdout_flush();
        });
}

/// Re-emit one stderr line received from a remote `borg serve` (borg's client-side log
/// interception): JSON records keep their level and logger, messages get a `Remote: `
/// prefix; progress is shown only with `--progress`; old `$LOG` and plain lines are
/// handled as borg does.
pub fn handle_remote_line(line: &str) {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if line.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(msg)) => handle_remote_json(msg, trimmed),
            _ => warning(&format!(
                "Dropped remote log message with unknown type {trimmed}"
            )),
        }
    } else if let Some(rest) = line.strip_prefix("$LOG ") {
        let (level_name, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        let level = Level::from_name(level_name).unwrap_or(Level::Critical);
        let msg = msg.trim_end();
        if msg.starts_with("Remote:") {
            log(level, "root", msg, None);
        } else {
            let (logger, msg) = msg.split_once(' ').unwrap_or((msg, ""));
            log(level, logger, msg, None);
        }
    } else if is_log_json() {
        log(
            Level::Warning,
            "root",
            &format!("Remote: {}", line.trim()),
            None,
        );
    } else {
        write_stderr(&format!("Remote: {line}"));
    }
}

fn handle_remote_json(mut msg: Map<String, Value>, raw: &str) {
    let kind = msg
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    if kind == "log_message" {
        let level = msg
            .get("levelname")
            .and_then(|l| l.as_str())
            .and_then(Level::from_name)
            .unwrap_or(Level::Critical);
        let name = msg
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("root")
            .to_string();
        let text = format!(
            "Remote: {}",
            msg.get("message").and_then(|m| m.as_str()).unwrap_or("")
        );
        if !log_enabled(level, &name) {
            return;
        }
        if is_log_json() {
            msg.insert("message".into(), Value::from(text));
            write_stderr(&(dumps_line(&Value::Object(msg)) + "\n"));
        } else {
            emit_record(level, &name, &text, None, None);
        }
    } else if kind.starts_with("progress_") {
        if !progress_enabled() {
            return;
        }
        if is_log_json() {
            if let Some(Value::String(m)) = msg.get("message") {
                let prefixed = format!("Remote: {m}");
                msg.insert("message".into(), Value::from(prefixed));
            }
            write_stderr(&(dumps_line(&Value::Object(msg)) + "\n"));
        } else if let Some(Value::String(m)) = msg.get("message") {
            let end = if stderr_is_tty() { '\r' } else { '\n' };
            write_stderr_raw(&format!("Remote: {m}{end}"));
        }
    } else {
        warning(&format!(
            "Dropped remote log message with unknown type '{kind}': {raw}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    // Logger configuration is process-global: tests touching it hold the capture lock.
    #[test]
    fn effective_levels_follow_borg_logging() {
        let _l = capture::lock();
        capture::start();
        configure(&OutputConfig {
            level: Level::Debug,
            debug_topics: vec!["lock".into(), "borg.repository".into()],
            show_rc: true,
            ..Default::default()
        });
        assert_eq!(effective_level("borg.archiver"), Level::Debug);
        assert_eq!(effective_level(LOGGER_LIST), Level::Warning);
        assert!(!log_enabled(Level::Info, LOGGER_LIST));
        enable_logger(LOGGER_LIST);
        assert!(log_enabled(Level::Info, LOGGER_LIST));
        assert!(log_enabled(Level::Info, LOGGER_SHOW_RC));
        assert_eq!(effective_level("borg.debug.lock"), Level::Debug);
        assert_eq!(effective_level("borg.debug.other"), Level::Warning);
        assert_eq!(effective_level("borg.repository.io"), Level::Debug);
        assert_eq!(
            capture::take(),
            "Enabling debug topic borg.debug.lock\nEnabling debug topic borg.repository\n"
        );
        configure(&OutputConfig::default());
        assert_eq!(effective_level("borg.archiver"), Level::Warning);
        assert!(!log_enabled(Level::Info, LOGGER_LIST));
        assert!(log_enabled(Level::Warning, "borg.output.list"));
    }

    #[test]
    fn text_and_json_records() {
        let _l = capture::lock();
        configure(&OutputConfig {
            level: Level::Info,
            ..Default::default()
        });
        capture::start();
        info("Creating archive at \"/r::a\"");
        debug("hidden");
        list_line("hidden too");
        file_status('A', "x");
        assert_eq!(capture::take(), "Creating archive at \"/r::a\"\n");

        configure(&OutputConfig {
            log_json: true,
            show_rc: true,
            ..Default::default()
        });
        enable_logger(LOGGER_LIST);
        capture::start();
        warn_kind(
            WarningKind::BackupFileNotFound,
            "data/x: stat: [Errno 2] No such file or directory: 'data/x'",
        );
        file_status('A', "data/é");
        report_error(&Error::new(ErrorKind::RepositoryDoesNotExist, ["/r"]));
        show_rc(13);
        let out = capture::take();
        assert!(
            out.starts_with("{\"type\": \"log_message\", \"time\": "),
            "{out}"
        );
        let recs = lines(&out);
        assert_eq!(recs.len(), 4, "{out}");
        assert_eq!(recs[0]["msgid"], "BackupFileNotFoundError");
        assert_eq!(recs[0]["levelname"], "WARNING");
        assert_eq!(
            out.lines().nth(1).unwrap(),
            r#"{"type": "file_status", "status": "A", "path": "data/\u00e9"}"#
        );
        assert_eq!(recs[2]["message"], "Repository /r does not exist.");
        assert_eq!(recs[2]["msgid"], "Repository.DoesNotExist");
        assert_eq!(recs[3]["message"], "terminating with error status, rc 13");
        assert_eq!(recs[3]["name"], "borg.output.show-rc");
        assert!(recs[3].get("msgid").is_none());
        let keys: Vec<&String> = recs[2].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["type", "time", "message", "levelname", "name", "msgid"]
        );
        configure(&OutputConfig::default());
    }

    #[test]
    fn progress_json_objects() {
        let _l = capture::lock();
        configure(&OutputConfig {
            log_json: true,
            progress: true,
            ..Default::default()
        });
        capture::start();
        let mut msg = ProgressMessage::new("cache.commit");
        msg.output("Saving files cache");
        msg.finish();
        let mut pct = ProgressPercent::new(4, 50.0, "%5.1f%% Extracting: %s", "extract");
        pct.show_increase(1, Some(vec!["a".into()])); // 0 % → shown
        pct.show_increase(1, Some(vec!["b".into()])); // 25 % → below 50
        pct.show_increase(1, Some(vec!["c".into()])); // 50 % → shown
        pct.finish();
        let mut null_id = ProgressPercent::new(2, 100.0, "Checking segments %3.1f%%", "");
        null_id.show(Some(0), None);
        drop(null_id);
        let mut ap = ArchiveProgress::new();
        let stats = ArchiveProgressStats {
            original_size: 10,
            compressed_size: 5,
            deduplicated_size: 1,
            nfiles: 2,
        };
        ap.show(&stats, "data/x");
        ap.show(&stats, "data/y"); // within 0.2 s: suppressed
        ap.finish();
        let out = capture::take();
        let recs = lines(&out);
        assert_eq!(recs.len(), 8, "{out}");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&recs[0]),
            ["message", "operation", "msgid", "type", "finished", "time"]
        );
        assert_eq!(recs[0]["message"], "Saving files cache");
        assert_eq!(
            keys(&recs[1]),
            ["operation", "msgid", "type", "finished", "time"]
        );
        assert_eq!(recs[1]["finished"], true);
        let op = recs[0]["operation"].as_u64().unwrap();
        assert_eq!(
            keys(&recs[2]),
            [
                "message",
                "current",
                "total",
                "info",
                "operation",
                "msgid",
                "type",
                "finished",
                "time"
            ]
        );
        assert_eq!(recs[2]["message"], "  0.0% Extracting: a");
        assert_eq!(recs[2]["current"], 1);
        assert_eq!(recs[2]["info"], json!(["a"]));
        assert_eq!(recs[2]["operation"].as_u64(), Some(op + 1));
        assert_eq!(recs[3]["message"], " 50.0% Extracting: c");
        assert_eq!(recs[3]["current"], 3);
        assert_eq!(recs[4]["type"], "progress_percent");
        assert_eq!(recs[4]["finished"], true);
        assert_eq!(recs[5]["msgid"], Value::Null);
        assert_eq!(recs[5]["info"], Value::Null);
        assert_eq!(recs[5]["message"], "Checking segments 0.0%");
        assert_eq!(
            keys(&recs[6]),
            [
                "original_size",
                "compressed_size",
                "deduplicated_size",
                "nfiles",
                "path",
                "time",
                "type",
                "finished"
            ]
        );
        assert_eq!(recs[6]["path"], "data/x");
        assert_eq!(keys(&recs[7]), ["time", "type", "finished"]);
        assert_eq!(recs[7]["finished"], true);
        configure(&OutputConfig::default());
    }

    #[test]
    fn progress_off_and_plain() {
        let _l = capture::lock();
        configure(&OutputConfig::default());
        capture::start();
        let mut p = ProgressPercent::new(10, 5.0, "%3.0f%%", "x");
        p.show(Some(5), None);
        p.finish();
        assert_eq!(capture::take(), "");
        // Not a terminal (tests run with stderr captured or piped): plain lines.
        if !stderr_is_tty() {
            configure(&OutputConfig {
                progress: true,
                ..Default::default()
            });
            capture::start();
            let mut p = ProgressPercent::new(10, 50.0, "Compacting segments %3.0f%%", "");
            for _ in 0..10 {
                p.show(None, None);
            }
            p.finish();
            let mut ap = ArchiveProgress::new();
            ap.show(
                &ArchiveProgressStats {
                    original_size: 100540,
                    nfiles: 4,
                    ..Default::default()
                },
                "data/sub",
            );
            ap.finish();
            assert_eq!(
                capture::take(),
                "Compacting segments   0%\nCompacting segments  50%\n100.54 kB O 0 B C 0 B D 4 N data/sub\n\n"
            );
            configure(&OutputConfig::default());
        }
    }

    #[test]
    fn prompt_json_records() {
        use super::prompt::{yes_with_input, Answer, ONLY_YES};
        let _l = capture::lock();
        configure(&OutputConfig {
            log_json: true,
            ..Default::default()
        });
        capture::start();
        let q = Question {
            msg: Some("Type 'YES' if you understand this and want to continue: "),
            false_msg: Some("Aborting."),
            invalid_msg: Some("Invalid answer, aborting."),
            truish: ONLY_YES,
            retry: false,
            env_var_override: Some("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING"),
            ..Default::default()
        };
        assert!(!yes_with_input(&q, &mut || Answer::Eof, &|_| None));
        assert!(!yes_with_input(&q, &mut || Answer::Eof, &|_| Some(
            "NO".into()
        )));
        let out = capture::take();
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(
            got,
            [
                r#"{"type": "question_prompt", "msgid": "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "message": "Type 'YES' if you understand this and want to continue: "}"#,
                r#"{"type": "question_accepted_false", "msgid": "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "message": "Aborting."}"#,
                r#"{"type": "question_prompt", "msgid": "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "message": "Type 'YES' if you understand this and want to continue: "}"#,
                r#"{"env_var": "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "type": "question_env_answer", "msgid": "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "message": "NO (from BORG_CHECK_I_KNOW_WHAT_I_AM_DOING)"}"#,
                r#"{"type": "question_accepted_false", "msgid": "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "message": "Aborting."}"#,
            ]
        );
        configure(&OutputConfig::default());
    }

    #[test]
    fn remote_lines() {
        let _l = capture::lock();
        configure(&OutputConfig {
            log_json: true,
            level: Level::Info,
            ..Default::default()
        });
        capture::start();
        handle_remote_line(
            r#"{"type": "log_message", "time": 1.5, "message": "hi", "levelname": "INFO", "name": "borg.repository"}"#,
        );
        handle_remote_line(
            r#"{"type": "log_message", "time": 1.5, "message": "dbg", "levelname": "DEBUG", "name": "borg.repository"}"#,
        );
        handle_remote_line(
            r#"{"message": "x", "operation": 1, "msgid": null, "type": "progress_message", "finished": false, "time": 2.0}"#,
        );
        let out = capture::take();
        assert_eq!(
            out,
            "{\"type\": \"log_message\", \"time\": 1.5, \"message\": \"Remote: hi\", \"levelname\": \"INFO\", \"name\": \"borg.repository\"}\n"
        );
        configure(&OutputConfig {
            level: Level::Info,
            ..Default::default()
        });
        capture::start();
        handle_remote_line("$LOG WARNING borg.repository Remote: careful\n");
        assert_eq!(capture::take(), "Remote: careful\n");
        configure(&OutputConfig::default());
    }

    #[test]
    fn rc_classes() {
        assert_eq!(classify_rc(0), Some("success"));
        assert_eq!(classify_rc(107), Some("warning"));
        assert_eq!(classify_rc(13), Some("error"));
        assert_eq!(classify_rc(130), Some("signal"));
        assert_eq!(classify_rc(-1), None);
    }
}
