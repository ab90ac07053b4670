//! Everything the user sees goes through here: log records (text or `--log-json`), progress
//! (bars on a TTY, plain lines, or JSON), `--json` documents, stdout products and prompts.
//! The engine never prints; it calls these functions and this module decides the form.
//!
//! (Stub: the full implementation replaces this file.)

use crate::errors::{Error, WarningKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// Log a record on logger `name` (e.g. `borg.archiver`, `borg.output.list`).
pub fn log(_level: Level, _name: &str, _msg: &str, _msgid: Option<&str>) {}

pub fn debug(msg: &str) {
    log(Level::Debug, "borg.archiver", msg, None)
}
pub fn info(msg: &str) {
    log(Level::Info, "borg.archiver", msg, None)
}
pub fn warning(msg: &str) {
    log(Level::Warning, "borg.archiver", msg, None)
}
pub fn error(msg: &str) {
    log(Level::Error, "borg.archiver", msg, None)
}

/// Log a classed warning (msgid, modern rc) and record it for the final exit code.
pub fn warn_kind(kind: WarningKind, msg: &str) {
    crate::errors::record_warning(kind);
    log(Level::Warning, "borg.archiver", msg, kind.msgid())
}

/// Report a fatal error as borg does (message at ERROR with its msgid).
pub fn report_error(err: &Error) {
    log(Level::Error, "borg.archiver", &err.message, Some(err.msgid()))
}

/// Whether `--progress` was given.
pub fn progress_enabled() -> bool {
    false
}

/// Whether `--iec` was given.
pub fn iec() -> bool {
    false
}
