//! Creating extracted objects and restoring their metadata (borg's `extract_item` file system
//! side and `restore_attrs`).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{acl, flags, ids, xattrs, BackupOsError, Target, Warning};
use crate::archive::item::Item;

/// Which metadata `extract` restores (its `--numeric-ids --noacls --noxattrs --noflags`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Use the stored uid/gid (and ACL ids) instead of mapping the stored names.
    pub numeric_ids: bool,
    pub noacls: bool,
    pub noxattrs: bool,
    pub noflags: bool,
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The owner to restore: the local ids of the stored names (unless `numeric`), falling back
/// to the stored uid/gid, then 0 (borg's `get_item_uid_gid`).
pub fn item_uid_gid(item: &Item, numeric: bool) -> (u32, u32) {
    let by_name = |name: &Option<Vec<u8>>, lookup: fn(&[u8]) -> Option<u32>| {
        if numeric {
            None
        } else {
            name.as_deref().and_then(lookup)
        }
    };
    let uid = by_name(&item.user, ids::user2uid).or(item.uid).unwrap_or(0);
    let gid = by_name(&item.group, ids::group2gid)
        .or(item.gid)
        .unwrap_or(0);
    (uid, gid)
}

fn chown(path: &Path, fd: Option<RawFd>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on a descriptor / NUL-terminated path.
    match fd {
        Some(fd) => check(unsafe { libc::fchown(fd, uid, gid) }),
        None => {
            let c = cpath(path)?;
            check(unsafe {
                libc::fchownat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }
    }
}

fn chmod(path: &Path, fd: Option<RawFd>, mode: u32, is_symlink: bool) -> io::Result<()> {
    let mode = mode as libc::mode_t;
    if let Some(fd) = fd {
        // SAFETY: plain syscall on a descriptor.
        return check(unsafe { libc::fchmod(fd, mode) });
    }
    // Linux has no symlink modes (lchmod is unsupported); borg skips them there.
    if is_symlink && cfg!(target_os = "linux") {
        return Ok(());
    }
    let c = cpath(path)?;
    // SAFETY: NUL-terminated path.
    let rc = unsafe { libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_SYMLINK_NOFOLLOW) };
    match check(rc) {
        Err(e) if super::is_unsupported(&e) => {
            if is_symlink {
                Ok(())
            } else {
                // SAFETY: NUL-terminated path; not a symlink, so following is harmless.
                check(unsafe { libc::chmod(c.as_ptr(), mode) })
            }
        }
        other => other,
    }
}

fn timespec(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Set atime and mtime with ns precision, never following a symlink.
pub fn set_times(path: &Path, fd: Option<RawFd>, atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    let times = [timespec(atime_ns), timespec(mtime_ns)];
    // SAFETY: times has the two entries the calls read; path is NUL-terminated.
    match fd {
        Some(fd) => check(unsafe { libc::futimens(fd, times.as_ptr()) }),
        None => {
            let c = cpath(path)?;
            check(unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }
    }
}

/// Restore an item's metadata on `path` (through `fd` when the file is open), in borg's order:
/// owner (failures ignored), mode (not for symlinks on Linux), ACLs (ENOTSUP ignored), xattrs
/// (after chown, which would drop `security.capability`; failures become warnings), times
/// (atime = mtime if none stored; failures ignored), then inode flags (may make the file
/// immutable, so last; failures ignored). Other errors abort with op `attrs`.
pub fn restore_attrs(
    path: &Path,
    item: &Item,
    opts: &RestoreOptions,
    fd: Option<RawFd>,
) -> Result<Vec<Warning>, BackupOsError> {
    let attrs_err =
        |e: io::Error, with_name: bool| BackupOsError::new("attrs", e, with_name.then_some(path));
    let is_symlink = item.is_symlink();
    let mut warnings = Vec::new();
    let (uid, gid) = item_uid_gid(item, opts.numeric_ids);
    let _ = chown(path, fd, uid, gid);
    if let Some(mode) = item.mode {
        chmod(path, fd, mode & 0o7777, is_symlink).map_err(|e| attrs_err(e, fd.is_none()))?;
    }
    if !opts.noacls {
        match acl::acl_set(path, item, opts.numeric_ids, fd) {
            Err(e) if !super::is_unsupported(&e) => {
                return Err(attrs_err(e, true));
            }
            _ => {}
        }
    }
    if !opts.noxattrs {
        if let Some(x) = &item.xattrs {
            let target = match fd {
                Some(fd) => Target::Fd(fd),
                None => Target::Path(path),
            };
            warnings.extend(xattrs::set_all(target, x));
        }
    }
    let atime = item.atime.unwrap_or(item.mtime);
    #[cfg(not(target_os = "linux"))]
    if let Some(birthtime) = item.birthtime {
        // BSDs/macOS move the birthtime back when mtime is set earlier than it
        let _ = set_times(path, fd, atime, birthtime);
    }
    let _ = set_times(path, fd, atime, item.mtime);
    if !opts.noflags {
        if let Some(f) = item.bsdflags {
            let _ = flags::set_flags(path, f, fd);
        }
    }
    Ok(warnings)
}

/// Remove whatever is at `path` (an empty directory or any non-directory) before extracting
/// there; failures are ignored, like borg (creating the new object will report them).
pub fn remove_existing(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Create a directory unless something is already there. It is created owner-only; its real
/// mode comes with [`restore_attrs`] after its contents were extracted.
pub fn create_dir(path: &Path) -> Result<(), BackupOsError> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| BackupOsError::new("mkdir", e, Some(path)))
}

/// Create a symlink to `target` (raw bytes, not interpreted).
pub fn create_symlink(target: &[u8], path: &Path) -> Result<(), BackupOsError> {
    std::os::unix::fs::symlink(super::path_from_bytes(target), path)
        .map_err(|e| BackupOsError::new("symlink", e, Some(path)))
}

/// Create a FIFO (owner-only until [`restore_attrs`]).
pub fn create_fifo(path: &Path) -> Result<(), BackupOsError> {
    let c = cpath(path).map_err(|e| BackupOsError::new("mkfifo", e, Some(path)))?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::mkfifo(c.as_ptr(), 0o600) })
        .map_err(|e| BackupOsError::new("mkfifo", e, Some(path)))
}

/// Create a block/char device; `mode` includes the file type bits. Needs privileges: EPERM
/// comes back as a `BackupPermissionError`-kind error for the caller to warn about.
pub fn create_device(path: &Path, mode: u32, rdev: u64) -> Result<(), BackupOsError> {
    let c = cpath(path).map_err(|e| BackupOsError::new("mknod", e, Some(path)))?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
        .map_err(|e| BackupOsError::new("mknod", e, Some(path)))
}

/// Hard-link `new` to the already extracted `existing` (a symlink there is linked itself,
/// not followed).
pub fn hardlink(existing: &Path, new: &Path) -> Result<(), BackupOsError> {
    std::fs::hard_link(existing, new).map_err(|e| BackupOsError::new("link", e, Some(existing)))
}

/// Whether every byte is zero (a hole candidate for `--sparse`).
pub fn is_all_zero(data: &[u8]) -> bool {
    data.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Writes an extracted regular file chunk by chunk. With `sparse`, all-zero chunks become
/// holes (the offset just advances); [`finish`](Self::finish) sets the final length, which
/// also creates a trailing hole.
pub struct FileWriter {
    file: File,
    path: PathBuf,
    sparse: bool,
    pos: u64,
}

impl FileWriter {
    /// Create (or truncate) the file, owner-only until [`restore_attrs`]; never through a
    /// symlink.
    pub fn create(path: &Path, sparse: bool) -> Result<FileWriter, BackupOsError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| BackupOsError::new("open", e, Some(path)))?;
        Ok(FileWriter {
            file,
            path: path.to_path_buf(),
            sparse,
            pos: 0,
        })
    }

    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), BackupOsError> {
        if !(self.sparse && is_all_zero(data)) {
            self.file
                .write_all_at(data, self.pos)
                .map_err(|e| BackupOsError::new("write", e, None))?;
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far (including holes).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Set the file length to the bytes written; returns it.
    pub fn finish(&mut self) -> Result<u64, BackupOsError> {
        self.file
            .set_len(self.pos)
            .map_err(|e| BackupOsError::new("truncate_and_attrs", e, None))?;
        Ok(self.pos)
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn into_file(self) -> File {
        self.file
    }
}
