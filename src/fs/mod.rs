//! File system metadata: capture for `create`, apply for `extract` (xattrs, ACLs, owners, times,
//! inode flags, special files) and the extraction safety checks of borg 1.4.5.
//!
//! Layout:
//! * [`stat`]: [`FileStat`], the stat fields borg uses, from `lstat`/`fstat`/`fstatat`.
//! * [`capture`]: item metadata from a file system object ([`stat_attrs`], [`open_item`], …).
//! * [`apply`]: creating extracted objects and restoring their metadata ([`restore_attrs`]).
//! * [`extract`]: path mapping (`--strip-components`), the safety guard, deferred directories.
//! * [`acl`]: POSIX ACLs as borg's text and as the kernel's xattr binary (no libacl needed).
//! * [`xattrs`], [`flags`], [`ids`]: extended attributes, inode flags, user/group name caches.
//!
//! Failures of single file system operations are [`BackupOsError`]s (borg's `BackupOSError`
//! family: the caller turns them into per-item warnings); non-fatal notes are [`Warning`]s.

pub mod acl;
pub mod apply;
pub mod capture;
pub mod extract;
pub mod flags;
pub mod ids;
pub mod stat;
pub mod xattrs;

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::errors::WarningKind;
use crate::output;

pub use apply::{
    create_device, create_dir, create_fifo, create_symlink, hardlink, is_all_zero, item_uid_gid,
    remove_existing, restore_attrs, set_times, FileWriter, RestoreOptions,
};
pub use capture::{
    changed_while_backed_up, make_path_safe, open_item, stat_attrs, stat_ext_attrs, stat_item,
    stat_simple_attrs, stat_update_check, CaptureOptions, FilesChanged, OpenKind,
};
pub use extract::{extract_path, strip_components, BackupRefusal, DeferredDirs, ExtractGuard};
pub use stat::FileStat;

/// What a file system call works on: an open descriptor (preferred: faster, race-free) or a
/// path that is never followed if it is a symlink.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Fd(RawFd),
    Path(&'a Path),
}

impl Target<'_> {
    /// The filename Python would show in an OSError for this target (`<FD n>` or the path).
    fn display_bytes(&self) -> Vec<u8> {
        match self {
            Target::Fd(fd) => format!("<FD {fd}>").into_bytes(),
            Target::Path(p) => p.as_os_str().as_bytes().to_vec(),
        }
    }
}

/// How a [`Warning`] affects the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcEffect {
    /// Only logged (borg logs these without touching the exit code).
    None,
    /// borg's `set_ec(EXIT_WARNING)`: plain warning rc 1.
    Warning,
    /// A classed warning (msgid and modern rc of the kind).
    Kind(WarningKind),
}

/// A non-fatal problem to log at WARNING level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub effect: RcEffect,
    /// borg's logger name, e.g. `borg.xattr`.
    pub logger: &'static str,
    pub message: String,
}

impl Warning {
    /// Log it and record its exit-code effect.
    pub fn emit(&self) {
        let msgid = match self.effect {
            RcEffect::None => None,
            RcEffect::Warning => {
                crate::errors::set_exit_code(crate::errors::EXIT_WARNING);
                None
            }
            RcEffect::Kind(kind) => {
                crate::errors::record_warning(kind);
                kind.msgid()
            }
        };
        output::log(output::Level::Warning, self.logger, &self.message, msgid);
    }
}

/// An OS error met while accessing an input file or writing an extracted one: borg's
/// `BackupOSError` (and its errno-chosen subclasses). Per item, it becomes a warning
/// `<path>: <message()>` with [`kind`](Self::kind)'s msgid and exit code.
#[derive(Debug)]
pub struct BackupOsError {
    /// The operation (`open`, `read`, `attrs`, `extended stat (xattrs)`, …); may be empty.
    pub op: &'static str,
    pub error: io::Error,
    /// The file name Python's OSError would carry (shown quoted); None for fd-based calls.
    pub filename: Option<Vec<u8>>,
}

impl BackupOsError {
    pub fn new(op: &'static str, error: io::Error, filename: Option<&Path>) -> BackupOsError {
        BackupOsError {
            op,
            error,
            filename: filename.map(|p| p.as_os_str().as_bytes().to_vec()),
        }
    }

    /// borg's errno → class mapping (EPERM/EACCES/EBUSY, ENOENT, EIO, everything else).
    pub fn kind(&self) -> WarningKind {
        match self.error.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::EBUSY) => {
                WarningKind::BackupPermissionError
            }
            Some(libc::ENOENT) => WarningKind::BackupFileNotFound,
            Some(libc::EIO) => WarningKind::BackupIOError,
            _ => WarningKind::BackupOSError,
        }
    }

    /// `op: [Errno N] text: 'filename'` as borg prints it (without the leading item path).
    pub fn message(&self) -> String {
        let os = python_os_error(&self.error, self.filename.as_deref());
        if self.op.is_empty() {
            os
        } else {
            format!("{}: {}", self.op, os)
        }
    }

    /// The warning borg logs for an item that failed with this error.
    pub fn warning(&self, item_path: &str) -> Warning {
        Warning {
            effect: RcEffect::Kind(self.kind()),
            logger: "borg.archiver",
            message: format!("{}: {}", item_path, self.message()),
        }
    }
}

impl fmt::Display for BackupOsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for BackupOsError {}

impl From<BackupOsError> for crate::errors::Error {
    fn from(e: BackupOsError) -> crate::errors::Error {
        crate::errors::Error::exception(e.message())
    }
}

/// The C library's text for an errno (what Python's `os.strerror` returns).
pub fn strerror(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(pos) => s[..pos].to_string(),
        None => s,
    }
}

/// `str()` of a Python OSError: `[Errno N] text` plus `: 'filename'` when there is one.
pub fn python_os_error(e: &io::Error, filename: Option<&[u8]>) -> String {
    let base = match e.raw_os_error() {
        Some(n) => format!("[Errno {}] {}", n, strerror(n)),
        None => e.to_string(),
    };
    match filename {
        Some(f) => format!("{}: {}", base, python_str_repr(f)),
        None => base,
    }
}

/// `repr()` of a Python str decoded from `bytes` with surrogateescape (invalid bytes → `\udcXX`).
pub fn python_str_repr(bytes: &[u8]) -> String {
    let mut chars: Vec<Result<char, u8>> = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        chars.extend(chunk.valid().chars().map(Ok));
        chars.extend(chunk.invalid().iter().map(|&b| Err(b)));
    }
    let has_single = chars.contains(&Ok('\''));
    let has_double = chars.contains(&Ok('"'));
    let quote = if has_single && !has_double { '"' } else { '\'' };
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push(quote);
    for c in chars {
        match c {
            Err(b) => out.push_str(&format!("\\udc{b:02x}")),
            Ok(c) if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            Ok('\n') => out.push_str("\\n"),
            Ok('\r') => out.push_str("\\r"),
            Ok('\t') => out.push_str("\\t"),
            Ok(c) if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            Ok(c) => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr()` of a Python bytes object (`b'...'`).
pub fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ if b == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote as char);
    out
}

/// A path built from raw bytes (no UTF-8 requirement).
pub fn path_from_bytes(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// ENOTSUP / EOPNOTSUPP (the same value on Linux, different elsewhere).
pub fn is_unsupported(e: &io::Error) -> bool {
    let n = e.raw_os_error();
    n == Some(libc::ENOTSUP) || n == Some(libc::EOPNOTSUPP)
}

/// Whether the process runs as root (many operations then succeed that otherwise fail).
/// Tell the kernel the file's pages will not be needed again (borg does this for what it
/// backs up and for segments it wrote, so a backup does not push everything else out of the
/// page cache). Advisory: failures are irrelevant.
pub fn drop_page_cache(fd: std::os::fd::RawFd) {
    // SAFETY: advisory call on a descriptor the caller holds open; no memory is passed.
    unsafe {
        libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod roundtrip_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs_match_python() {
        assert_eq!(python_str_repr(b"data/x"), "'data/x'");
        assert_eq!(python_str_repr(b"it's"), "\"it's\"");
        assert_eq!(python_str_repr(b"a\xe9b"), "'a\\udce9b'");
        assert_eq!(python_str_repr("é\n".as_bytes()), "'é\\n'");
        assert_eq!(python_bytes_repr(b"/t/x\xff"), "b'/t/x\\xff'");
    }

    #[test]
    fn os_error_text_is_pythons() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            python_os_error(&e, Some(b"data/nonexistent")),
            "[Errno 2] No such file or directory: 'data/nonexistent'"
        );
        let b = BackupOsError::new("stat", e, Some(Path::new("data/nonexistent")));
        assert_eq!(
            b.message(),
            "stat: [Errno 2] No such file or directory: 'data/nonexistent'"
        );
        assert_eq!(b.kind(), WarningKind::BackupFileNotFound);
        let p = BackupOsError::new("open", io::Error::from_raw_os_error(libc::EBUSY), None);
        assert_eq!(p.kind(), WarningKind::BackupPermissionError);
        assert_eq!(p.message(), "open: [Errno 16] Device or resource busy");
    }
}
