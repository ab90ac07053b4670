//! Extended attributes: read all (minus POSIX ACLs, stored separately) and write all, with
//! borg's error handling and warning texts.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;

use xattr::FileExt;

use super::{
    is_unsupported, python_bytes_repr, python_os_error, python_str_repr, RcEffect, Target, Warning,
};

/// `(name, value)` pairs, sorted by name (as in `Item::xattrs`).
pub type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// Names borg never stores as xattrs: the kernel's ACL representation (kept as `acl_*`).
const ACL_XATTR_PREFIX: &[u8] = b"system.posix_acl_";

/// Borrow a raw fd as a `File` without taking ownership.
fn borrowed_file(fd: std::os::fd::RawFd) -> ManuallyDrop<File> {
    // SAFETY: ManuallyDrop keeps the File from closing the caller's descriptor.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

pub(crate) fn list_names(target: Target) -> io::Result<Vec<Vec<u8>>> {
    let names: Vec<_> = match target {
        Target::Fd(fd) => borrowed_file(fd).list_xattr()?.collect(),
        Target::Path(p) => xattr::list(p)?.collect(),
    };
    Ok(names.into_iter().map(|n| n.as_bytes().to_vec()).collect())
}

/// One xattr value; None if it does not exist.
pub(crate) fn get_one(target: Target, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name = OsStr::from_bytes(name);
    match target {
        Target::Fd(fd) => borrowed_file(fd).get_xattr(name),
        Target::Path(p) => xattr::get(p, name),
    }
}

pub(crate) fn set_one(target: Target, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = OsStr::from_bytes(name);
    match target {
        Target::Fd(fd) => borrowed_file(fd).set_xattr(name, value),
        Target::Path(p) => xattr::set(p, name, value),
    }
}

/// All xattrs of `target` (never following a symlink), sorted by name, without
/// `system.posix_acl_*`. Unsupported file systems (and EPERM on listing) give none; a single
/// unreadable attribute is skipped with a log-only warning, as borg does. Other listing
/// errors are returned.
pub fn get_all(target: Target) -> io::Result<(XattrList, Vec<Warning>)> {
    let scan = scan(target)?;
    Ok((scan.xattrs, scan.warnings))
}

/// What [`scan`] found.
pub struct XattrScan {
    pub xattrs: XattrList,
    pub warnings: Vec<Warning>,
    /// Whether the listing showed `system.posix_acl_*` names; None if nothing could be listed.
    pub acl_names_listed: Option<bool>,
}

/// [`get_all`], also telling whether the object has ACL xattrs, so that the ACL reads can be
/// skipped for the (usual) objects without any.
pub fn scan(target: Target) -> io::Result<XattrScan> {
    let mut warnings = Vec::new();
    let names = match list_names(target) {
        Ok(n) => n,
        Err(e) if is_unsupported(&e) || e.raw_os_error() == Some(libc::EPERM) => {
            return Ok(XattrScan {
                xattrs: Vec::new(),
                warnings,
                acl_names_listed: None,
            })
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(names.len());
    let mut acl_names_listed = false;
    for name in names {
        if name.starts_with(ACL_XATTR_PREFIX) {
            acl_names_listed = true;
            continue;
        }
        if name.is_empty() {
            continue;
        }
        match get_one(target, &name) {
            Ok(Some(value)) => out.push((name, value)),
            // vanished between listing and reading
            Ok(None) => {}
            Err(e) => warnings.push(Warning {
                effect: RcEffect::None,
                logger: "borg.xattr",
                message: format!(
                    "when getting extended attribute {}: {}{}",
                    String::from_utf8_lossy(&name),
                    python_os_error(&e, None),
                    target_suffix(target)
                ),
            }),
        }
    }
    out.sort();
    Ok(XattrScan {
        xattrs: out,
        warnings,
        acl_names_listed: Some(acl_names_listed),
    })
}

/// `: <filename>` as Python's OSError shows it for these calls (`'<FD n>'` or `b'path'`).
fn target_suffix(target: Target) -> String {
    match target {
        Target::Fd(_) => format!(": {}", python_str_repr(&target.display_bytes())),
        Target::Path(_) => format!(": {}", python_bytes_repr(&target.display_bytes())),
    }
}

/// Set every xattr; failures become warnings (rc 1) with borg's texts, the rest continue.
pub fn set_all(target: Target, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (name, value) in xattrs {
        if let Err(e) = set_one(target, name, value) {
            let os_text = python_os_error(&e, None) + &target_suffix(target);
            let detail = match e.raw_os_error() {
                Some(libc::E2BIG) => format!("too big for this filesystem ({os_text})"),
                Some(libc::ENOSPC) => format!(
                    "fs full or xattr too big? [xattr len = {}] ({os_text})",
                    value.len()
                ),
                _ => os_text,
            };
            warnings.push(Warning {
                effect: RcEffect::Warning,
                logger: "borg.xattr",
                message: format!(
                    "when setting extended attribute {}: {}",
                    String::from_utf8_lossy(name),
                    detail
                ),
            });
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    fn sample() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"user.bin".to_vec(), b"\x00\x01\xff".to_vec()),
            (b"user.empty".to_vec(), Vec::new()),
            (b"user.z".to_vec(), b"last".to_vec()),
        ]
    }

    #[test]
    fn path_and_fd_round_trip_binary_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        assert!(set_all(Target::Path(&p), &sample()).is_empty());
        let (got, warn) = get_all(Target::Path(&p)).unwrap();
        assert!(warn.is_empty());
        assert_eq!(got, sample());
        let f = File::open(&p).unwrap();
        let (got_fd, _) = get_all(Target::Fd(f.as_raw_fd())).unwrap();
        assert_eq!(got_fd, sample());
    }

    #[test]
    fn acl_xattrs_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        // USER_OBJ rw, USER 4242 r, GROUP_OBJ r, MASK r, OTHER r
        let acl = super::super::acl::acl_to_xattr(&[
            super::super::acl::AclEntry::new(1, 6, u32::MAX),
            super::super::acl::AclEntry::new(2, 4, 4242),
            super::super::acl::AclEntry::new(4, 4, u32::MAX),
            super::super::acl::AclEntry::new(0x10, 4, u32::MAX),
            super::super::acl::AclEntry::new(0x20, 4, u32::MAX),
        ]);
        set_one(Target::Path(&p), b"system.posix_acl_access", &acl).unwrap();
        let (got, _) = get_all(Target::Path(&p)).unwrap();
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn symlink_xattrs_warn_like_borg() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("target", &l).unwrap();
        // user.* xattrs are not allowed on symlinks: the kernel says EPERM
        let w = set_all(Target::Path(&l), &[(b"user.a".to_vec(), b"v".to_vec())]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].effect, RcEffect::Warning);
        let expected = format!(
            "when setting extended attribute user.a: [Errno 1] Operation not permitted: {}",
            python_bytes_repr(l.as_os_str().as_bytes())
        );
        assert_eq!(w[0].message, expected);
        // and nothing was followed to the (missing) target
        assert!(!Path::new(&dir.path().join("target")).exists());
    }
}
