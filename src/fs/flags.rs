//! Inode flags (`bsdflags`). borg stores BSD flag values; on Linux only NODUMP, IMMUTABLE and
//! APPEND are mapped to and from the ext2-style `FS_IOC_[GS]ETFLAGS` bits.

use std::path::Path;

use super::stat::FileStat;

/// BSD `UF_NODUMP` (also what `--exclude-nodump` tests).
pub const UF_NODUMP: u32 = 0x0000_0001;
pub const UF_IMMUTABLE: u32 = 0x0000_0002;
pub const UF_APPEND: u32 = 0x0000_0004;

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::RawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    pub const FS_APPEND_FL: libc::c_int = 0x20;
    pub const FS_NODUMP_FL: libc::c_int = 0x40;

    /// (BSD flag, Linux flag) pairs borg maps.
    pub const MAPPING: [(u32, libc::c_int); 3] = [
        (super::UF_NODUMP, FS_NODUMP_FL),
        (super::UF_IMMUTABLE, FS_IMMUTABLE_FL),
        (super::UF_APPEND, FS_APPEND_FL),
    ];
    pub const LINUX_MASK: libc::c_int = FS_NODUMP_FL | FS_IMMUTABLE_FL | FS_APPEND_FL;

    /// Open like borg does for flag access: read-only, non-blocking (FIFOs), never a symlink.
    pub fn open_for_flags(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: c is NUL-terminated; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    pub fn ioctl_get(fd: RawFd) -> io::Result<libc::c_int> {
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one int to the given pointer.
        if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(flags)
    }

    pub fn ioctl_set(fd: RawFd, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: FS_IOC_SETFLAGS reads one int from the given pointer.
        if unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The object's flags as BSD values; 0 when unknown. Devices and symlinks are not opened
/// (like borg: opening absent devices can be slow, symlinks can not be opened no-follow).
#[cfg(target_os = "linux")]
pub fn get_flags(path: &Path, st: &FileStat, fd: Option<std::os::fd::RawFd>) -> u32 {
    use std::os::fd::AsRawFd;
    if st.is_blk() || st.is_chr() || st.is_symlink() {
        return 0;
    }
    let owned;
    let fd = match fd {
        Some(fd) => fd,
        None => match linux::open_for_flags(path) {
            Ok(o) => {
                owned = o;
                owned.as_raw_fd()
            }
            Err(_) => return 0,
        },
    };
    let Ok(linux_flags) = linux::ioctl_get(fd) else {
        return 0;
    };
    linux::MAPPING
        .iter()
        .filter(|(_, l)| linux_flags & l != 0)
        .fold(0, |acc, (b, _)| acc | b)
}

#[cfg(not(target_os = "linux"))]
pub fn get_flags(_path: &Path, st: &FileStat, _fd: Option<std::os::fd::RawFd>) -> u32 {
    st.bsd_flags
}

/// Set the mapped flags, keeping all other current flags of the inode (borg #9039). Without a
/// descriptor, devices and symlinks are skipped. If the current flags can not be read, or the
/// file system does not support flags, nothing happens.
#[cfg(target_os = "linux")]
pub fn set_flags(
    path: &Path,
    bsd_flags: u32,
    fd: Option<std::os::fd::RawFd>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let owned;
    let fd = match fd {
        Some(fd) => fd,
        None => {
            let st = super::stat::lstat(path)?;
            if st.is_blk() || st.is_chr() || st.is_symlink() {
                return Ok(());
            }
            owned = linux::open_for_flags(path)?;
            owned.as_raw_fd()
        }
    };
    let Ok(current) = linux::ioctl_get(fd) else {
        return Ok(());
    };
    let wanted = linux::MAPPING
        .iter()
        .filter(|(b, _)| bsd_flags & b != 0)
        .fold(0, |acc, (_, l)| acc | l);
    let new = (current & !linux::LINUX_MASK) | (wanted & linux::LINUX_MASK);
    if new == current {
        return Ok(());
    }
    match linux::ioctl_set(fd, new) {
        // ENOTTY: Linux 6.17 reports unsupported file systems this way
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_flags(
    _path: &Path,
    _bsd_flags: u32,
    _fd: Option<std::os::fd::RawFd>,
) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    #[test]
    fn nodump_round_trips_where_supported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let st = super::super::stat::lstat(&p).unwrap();
        assert_eq!(get_flags(&p, &st, None), 0);
        set_flags(&p, UF_NODUMP, None).unwrap();
        let f = File::open(&p).unwrap();
        if linux::ioctl_get(f.as_raw_fd()).is_err() {
            eprintln!("skipped: file system without inode flags");
            return;
        }
        assert_eq!(get_flags(&p, &st, Some(f.as_raw_fd())), UF_NODUMP);
        set_flags(&p, 0, Some(f.as_raw_fd())).unwrap();
        assert_eq!(get_flags(&p, &st, None), 0);
    }

    #[test]
    fn symlinks_and_devices_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("nowhere", &l).unwrap();
        let st = super::super::stat::lstat(&l).unwrap();
        assert_eq!(get_flags(&l, &st, None), 0);
        set_flags(&l, UF_NODUMP, None).unwrap();
    }
}
