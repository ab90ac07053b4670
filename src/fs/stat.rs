//! The stat fields borg uses, independent of where they came from.

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::archive::item::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG};

/// borg's largest storable timestamp (ns): 2^63-1 minus 48 h, rounded down to whole seconds.
pub const MAX_NS: i64 = (i64::MAX - 48 * 3600 * 1_000_000_000) / 1_000_000_000 * 1_000_000_000;

/// Clamp a ns timestamp into borg's storable range (negative → 0), like borg's `safe_ns`.
pub fn safe_ns(ns: i64) -> i64 {
    ns.clamp(0, MAX_NS)
}

fn ns_of(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStat {
    /// `st_mode` including the file type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Only where the platform reports one (not Linux, like borg).
    pub birthtime_ns: Option<i64>,
    /// BSD `st_flags` (always 0 on Linux, where flags come from an ioctl).
    pub bsd_flags: u32,
}

impl FileStat {
    pub fn from_metadata(m: &Metadata) -> FileStat {
        FileStat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
            rdev: m.rdev(),
            atime_ns: ns_of(m.atime(), m.atime_nsec()),
            mtime_ns: ns_of(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns_of(m.ctime(), m.ctime_nsec()),
            birthtime_ns: birthtime_of(m),
            bsd_flags: bsd_flags_of(m),
        }
    }

    /// From a raw `struct stat` (e.g. filled by `fstatat`).
    // field types differ between platforms, so the casts are only no-ops on some
    #[allow(clippy::unnecessary_cast)]
    pub fn from_libc(st: &libc::stat) -> FileStat {
        #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
        let (birthtime_ns, bsd_flags) = (
            Some(ns_of(st.st_birthtime as i64, st.st_birthtime_nsec as i64)),
            st.st_flags as u32,
        );
        #[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
        let (birthtime_ns, bsd_flags) = (None, 0);
        FileStat {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size as u64,
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            nlink: st.st_nlink as u64,
            rdev: st.st_rdev as u64,
            atime_ns: ns_of(st.st_atime as i64, st.st_atime_nsec as i64),
            mtime_ns: ns_of(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns_of(st.st_ctime as i64, st.st_ctime_nsec as i64),
            birthtime_ns,
            bsd_flags,
        }
    }

    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    pub fn is_regular(&self) -> bool {
        self.file_type() == S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }
    pub fn is_fifo(&self) -> bool {
        self.file_type() == S_IFIFO
    }
    pub fn is_chr(&self) -> bool {
        self.file_type() == S_IFCHR
    }
    pub fn is_blk(&self) -> bool {
        self.file_type() == S_IFBLK
    }
    /// Block/char devices and FIFOs (borg's `is_special`, for `--read-special`).
    pub fn is_special(&self) -> bool {
        self.is_blk() || self.is_chr() || self.is_fifo()
    }
}

#[cfg(target_os = "linux")]
fn birthtime_of(_m: &Metadata) -> Option<i64> {
    None
}

#[cfg(not(target_os = "linux"))]
fn birthtime_of(m: &Metadata) -> Option<i64> {
    let t = m.created().ok()?;
    Some(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    })
}

#[cfg(target_os = "macos")]
fn bsd_flags_of(m: &Metadata) -> u32 {
    std::os::macos::fs::MetadataExt::st_flags(m)
}

#[cfg(target_os = "freebsd")]
fn bsd_flags_of(m: &Metadata) -> u32 {
    std::os::freebsd::fs::MetadataExt::st_flags(m)
}

#[cfg(not(any(target_os = "macos", target_os = "freebsd")))]
fn bsd_flags_of(_m: &Metadata) -> u32 {
    0
}

/// `lstat(path)`.
pub fn lstat(path: &Path) -> io::Result<FileStat> {
    Ok(FileStat::from_metadata(&std::fs::symlink_metadata(path)?))
}

/// `fstat(fd)`; the descriptor stays open.
pub fn fstat(fd: RawFd) -> io::Result<FileStat> {
    // SAFETY: the File is never dropped, so the caller keeps ownership of fd.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    Ok(FileStat::from_metadata(&file.metadata()?))
}

/// `fstatat(dirfd, name)`, not following a final symlink unless `follow`.
pub fn fstatat(dirfd: RawFd, name: &Path, follow: bool) -> io::Result<FileStat> {
    let cname = CString::new(name.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: st is plain old data filled by the kernel; cname is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dirfd, cname.as_ptr(), &mut st, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileStat::from_libc(&st))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn safe_ns_clamps_like_borg() {
        assert_eq!(safe_ns(-5), 0);
        assert_eq!(safe_ns(123), 123);
        assert_eq!(safe_ns(i64::MAX), MAX_NS);
        assert_eq!(MAX_NS % 1_000_000_000, 0);
        assert_eq!(MAX_NS, 9_223_199_236_000_000_000);
    }

    #[test]
    fn all_stat_sources_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let a = lstat(&p).unwrap();
        let f = File::open(&p).unwrap();
        let b = fstat(f.as_raw_fd()).unwrap();
        let d = File::open(dir.path()).unwrap();
        let c = fstatat(d.as_raw_fd(), Path::new("f"), false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.is_regular() && a.size == 3 && a.nlink == 1);
        assert!(a.mtime_ns > 1_000_000_000_000_000_000);
    }
}
