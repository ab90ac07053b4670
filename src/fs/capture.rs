//! Item metadata from file system objects (borg's `MetadataCollector`), opening inputs the way
//! borg does, and the race/change checks `create` needs.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::stat::{safe_ns, FileStat};
use super::{acl, flags, ids, xattrs, BackupOsError, Target, Warning};
use crate::archive::item::Item;
use crate::errors::WarningKind;

/// Which metadata `create` stores (its `--numeric-ids --atime --noctime …` options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Store no user/group names.
    pub numeric_ids: bool,
    /// Store atime (`--atime`; borg ≥ 1.2 does not by default).
    pub atime: bool,
    pub noctime: bool,
    pub nobirthtime: bool,
    pub noflags: bool,
    pub noacls: bool,
    pub noxattrs: bool,
}

/// mode, uid, gid, user, group and the timestamps (borg's `stat_simple_attrs`).
pub fn stat_simple_attrs(item: &mut Item, st: &FileStat, opts: &CaptureOptions) {
    item.mode = Some(st.mode);
    item.uid = Some(st.uid);
    item.gid = Some(st.gid);
    item.mtime = safe_ns(st.mtime_ns);
    item.atime = opts.atime.then(|| safe_ns(st.atime_ns));
    item.ctime = (!opts.noctime).then(|| safe_ns(st.ctime_ns));
    item.birthtime = if opts.nobirthtime {
        None
    } else {
        st.birthtime_ns.map(safe_ns)
    };
    if opts.numeric_ids {
        item.user = None;
        item.group = None;
    } else {
        item.user = ids::uid2user(st.uid);
        item.group = ids::gid2group(st.gid);
    }
}

/// bsdflags, xattrs and ACLs (borg's `stat_ext_attrs`), read through `fd` when given, else by
/// `path` without following symlinks. Errors other than "unsupported" are returned with borg's
/// operation names (`extended stat (xattrs)`, `extended stat (ACLs)`).
pub fn stat_ext_attrs(
    item: &mut Item,
    path: &Path,
    st: &FileStat,
    opts: &CaptureOptions,
    fd: Option<RawFd>,
) -> Result<Vec<Warning>, BackupOsError> {
    let mut warnings = Vec::new();
    if !opts.noflags {
        let f = flags::get_flags(path, st, fd);
        item.bsdflags = (f != 0).then_some(f);
    }
    let mut acl_names_listed = None;
    if !opts.noxattrs {
        let target = match fd {
            Some(fd) => Target::Fd(fd),
            None => Target::Path(path),
        };
        let scan = xattrs::scan(target).map_err(|e| {
            BackupOsError::new("extended stat (xattrs)", e, fd.is_none().then_some(path))
        })?;
        warnings.extend(scan.warnings);
        item.xattrs = (!scan.xattrs.is_empty()).then_some(scan.xattrs);
        acl_names_listed = scan.acl_names_listed;
    }
    // Linux lists an object's ACLs among its xattrs: none listed means none to read.
    let acls_possible = acl_names_listed != Some(false) || !cfg!(target_os = "linux");
    if !opts.noacls && acls_possible {
        match acl::acl_get(path, st, opts.numeric_ids, fd) {
            Ok((access, default)) => {
                if access.is_some() {
                    item.acl_access = access;
                }
                if default.is_some() {
                    item.acl_default = default;
                }
            }
            Err(e) if super::is_unsupported(&e) => {}
            Err(e) => return Err(BackupOsError::new("extended stat (ACLs)", e, Some(path))),
        }
    }
    Ok(warnings)
}

/// All metadata of one object into `item` (whose `path` the caller sets).
pub fn stat_attrs(
    item: &mut Item,
    path: &Path,
    st: &FileStat,
    opts: &CaptureOptions,
    fd: Option<RawFd>,
) -> Result<Vec<Warning>, BackupOsError> {
    stat_simple_attrs(item, st, opts);
    stat_ext_attrs(item, path, st, opts, fd)
}

/// A new item for `item_path` with all metadata of the object at `path` (or `fd`).
pub fn stat_item(
    item_path: &[u8],
    path: &Path,
    st: &FileStat,
    opts: &CaptureOptions,
    fd: Option<RawFd>,
) -> Result<(Item, Vec<Warning>), BackupOsError> {
    let mut item = Item {
        path: item_path.to_vec(),
        ..Default::default()
    };
    let warnings = stat_attrs(&mut item, path, st, opts, fd)?;
    Ok((item, warnings))
}

/// The open modes borg uses for inputs (its `flags_*`); all are read-only, no-ctty, cloexec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenKind {
    /// Regular files (and FIFOs for metadata): non-blocking, never a symlink.
    Normal,
    /// `--read-special` devices/FIFOs: blocking, never a symlink.
    Special,
    /// `--read-special` through a symlink: blocking, follows.
    SpecialFollow,
    /// Directories: never a symlink.
    Dir,
}

impl OpenKind {
    fn flags(self) -> libc::c_int {
        let base = libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC;
        match self {
            OpenKind::Normal => base | libc::O_NONBLOCK | libc::O_NOFOLLOW,
            OpenKind::Special => base | libc::O_NOFOLLOW,
            OpenKind::SpecialFollow => base,
            OpenKind::Dir => {
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const O_NOATIME: libc::c_int = libc::O_NOATIME;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const O_NOATIME: libc::c_int = 0;

fn openat(dirfd: RawFd, name: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open an input like borg's `os_open`: `name` relative to `dirfd` (None: the cwd). With
/// `noatime`, O_NOATIME is tried first and dropped if that is not permitted (not the owner).
pub fn open_item(
    dirfd: Option<RawFd>,
    name: &Path,
    kind: OpenKind,
    noatime: bool,
) -> io::Result<OwnedFd> {
    let c = CString::new(name.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dirfd = dirfd.unwrap_or(libc::AT_FDCWD);
    let flags = kind.flags();
    if noatime && O_NOATIME != 0 {
        match openat(dirfd, &c, flags | O_NOATIME) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {}
            other => return other,
        }
    }
    openat(dirfd, &c, flags)
}

/// borg's `stat_update_check`: the object seen by the first (path) stat must be the one that
/// was opened; otherwise the item is skipped with `BackupRaceConditionError`.
pub fn stat_update_check(before: &FileStat, after: &FileStat) -> Result<(), WarningKind> {
    if before.file_type() != after.file_type() || before.ino != after.ino {
        return Err(WarningKind::BackupRaceCondition);
    }
    Ok(())
}

/// `--files-changed`: how "changed while we backed it up" is detected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilesChanged {
    #[default]
    Ctime,
    Mtime,
    Disabled,
}

impl FilesChanged {
    pub fn parse(s: &str) -> Option<FilesChanged> {
        match s {
            "ctime" => Some(FilesChanged::Ctime),
            "mtime" => Some(FilesChanged::Mtime),
            "disabled" => Some(FilesChanged::Disabled),
            _ => None,
        }
    }
}

/// Whether a file changed between the stat before reading and the fstat after it (status `C`,
/// `FileChangedWarning`). Special files (`--read-special`) never count as changed.
pub fn changed_while_backed_up(
    before: &FileStat,
    after: &FileStat,
    mode: FilesChanged,
    is_special: bool,
) -> bool {
    if is_special {
        return false;
    }
    match mode {
        FilesChanged::Ctime => before.ctime_ns != after.ctime_ns,
        FilesChanged::Mtime => before.mtime_ns != after.mtime_ns,
        FilesChanged::Disabled => false,
    }
}

/// borg's `make_path_safe`: drop leading `/` runs and `../` (`..//…`) prefixes; empty → `.`.
pub fn make_path_safe(path: &[u8]) -> Vec<u8> {
    let mut rest = path;
    loop {
        let after_dots = rest.strip_prefix(b"..").unwrap_or(rest);
        let slashes = after_dots.iter().take_while(|&&c| c == b'/').count();
        if slashes == 0 {
            break;
        }
        rest = &after_dots[slashes..];
    }
    if rest.is_empty() {
        b".".to_vec()
    } else {
        rest.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::stat::lstat;
    use std::os::fd::AsRawFd;

    #[test]
    fn path_safety_like_borg() {
        assert_eq!(make_path_safe(b"/etc/passwd"), b"etc/passwd");
        assert_eq!(make_path_safe(b"../../x"), b"x");
        assert_eq!(make_path_safe(b"..//../a/../b"), b"a/../b");
        assert_eq!(make_path_safe(b"///"), b".");
        assert_eq!(make_path_safe(b""), b".");
        assert_eq!(make_path_safe(b".."), b"..");
        assert_eq!(make_path_safe(b"..x/y"), b"..x/y");
        assert_eq!(make_path_safe(b"a/b"), b"a/b");
    }

    #[test]
    fn simple_attrs_follow_options() {
        let st = FileStat {
            mode: 0o100640,
            uid: 0,
            gid: 0,
            atime_ns: 11,
            mtime_ns: -3,
            ctime_ns: 33,
            ..Default::default()
        };
        let mut item = Item::default();
        stat_simple_attrs(&mut item, &st, &CaptureOptions::default());
        assert_eq!(item.mode, Some(0o100640));
        assert_eq!(item.mtime, 0);
        assert_eq!(item.atime, None);
        assert_eq!(item.ctime, Some(33));
        assert_eq!(item.user, ids::uid2user(0));
        let opts = CaptureOptions {
            atime: true,
            noctime: true,
            numeric_ids: true,
            ..Default::default()
        };
        stat_simple_attrs(&mut item, &st, &opts);
        assert_eq!((item.atime, item.ctime), (Some(11), None));
        assert_eq!((item.user.clone(), item.group.clone()), (None, None));
        assert_eq!((item.uid, item.gid), (Some(0), Some(0)));
    }

    #[test]
    fn ext_attrs_read_xattrs_by_fd_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(crate::fs::path_from_bytes(b"f\xff"));
        std::fs::write(&p, b"data").unwrap();
        xattr::set(&p, "user.k", b"\x00v\xff").unwrap();
        let st = lstat(&p).unwrap();
        let (item, w) = stat_item(b"f", &p, &st, &CaptureOptions::default(), None).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            item.xattrs,
            Some(vec![(b"user.k".to_vec(), b"\x00v\xff".to_vec())])
        );
        assert_eq!(item.bsdflags, None);
        assert_eq!(item.acl_access, None);
        let f = open_item(None, &p, OpenKind::Normal, true).unwrap();
        let (by_fd, _) = stat_item(
            b"f",
            &p,
            &st,
            &CaptureOptions::default(),
            Some(f.as_raw_fd()),
        )
        .unwrap();
        assert_eq!(by_fd, item);
        let off = CaptureOptions {
            noxattrs: true,
            noacls: true,
            noflags: true,
            ..Default::default()
        };
        let (bare, _) = stat_item(b"f", &p, &st, &off, None).unwrap();
        assert_eq!(bare.xattrs, None);
    }

    #[test]
    fn open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(dir.path(), &l).unwrap();
        let err = open_item(None, &l, OpenKind::Normal, true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert!(open_item(None, &l, OpenKind::Dir, false).is_err());
        let d = open_item(None, dir.path(), OpenKind::Dir, true).unwrap();
        std::fs::write(dir.path().join("x"), b"1").unwrap();
        let f = open_item(Some(d.as_raw_fd()), Path::new("x"), OpenKind::Normal, true).unwrap();
        assert!(crate::fs::stat::fstat(f.as_raw_fd()).unwrap().is_regular());
    }

    #[test]
    fn change_and_race_detection() {
        let a = FileStat {
            mode: 0o100644,
            ino: 5,
            ctime_ns: 1,
            mtime_ns: 1,
            ..Default::default()
        };
        let mut b = a;
        assert!(stat_update_check(&a, &b).is_ok());
        assert!(!changed_while_backed_up(&a, &b, FilesChanged::Ctime, false));
        b.ctime_ns = 2;
        assert!(changed_while_backed_up(&a, &b, FilesChanged::Ctime, false));
        assert!(!changed_while_backed_up(&a, &b, FilesChanged::Mtime, false));
        assert!(!changed_while_backed_up(&a, &b, FilesChanged::Ctime, true));
        assert!(!changed_while_backed_up(
            &a,
            &b,
            FilesChanged::Disabled,
            false
        ));
        b.ino = 6;
        assert_eq!(
            stat_update_check(&a, &b),
            Err(WarningKind::BackupRaceCondition)
        );
        assert_eq!(FilesChanged::parse("mtime"), Some(FilesChanged::Mtime));
        assert_eq!(FilesChanged::parse("size"), None);
    }
}
