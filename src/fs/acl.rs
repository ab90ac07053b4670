//! POSIX ACLs (Linux) without libacl.
//!
//! borg stores `acl_access`/`acl_default` as libacl's `acl_to_text` output, post-processed:
//! comments (`#effective:…`) are cut together with the spaces before them — but not the tab
//! libacl puts there, so that tab stays in the permission field — and named entries get the
//! numeric id appended as a 4th field. Entries are joined by `\n` without a trailing newline:
//!
//! ```text
//! user::rw-
//! user:nobody:r--:65534
//! group::r-x\t
//! mask::r--
//! other::r--
//! ```
//!
//! The kernel keeps ACLs in the xattrs `system.posix_acl_access`/`_default`: a little-endian
//! u32 version (2) followed by 8-byte entries `{u16 tag, u16 perm, u32 id}`, sorted by tag and id.

use std::io;
use std::path::Path;

use super::ids::{gid2group, group2gid, uid2user, user2uid};
use super::stat::FileStat;
use super::Target;
use crate::archive::item::Item;

pub const ACL_USER_OBJ: u16 = 0x01;
pub const ACL_USER: u16 = 0x02;
pub const ACL_GROUP_OBJ: u16 = 0x04;
pub const ACL_GROUP: u16 = 0x08;
pub const ACL_MASK: u16 = 0x10;
pub const ACL_OTHER: u16 = 0x20;
pub const ACL_READ: u16 = 0x04;
pub const ACL_WRITE: u16 = 0x02;
pub const ACL_EXECUTE: u16 = 0x01;
/// The id of entries that have no qualifier.
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

pub const XATTR_ACL_ACCESS: &[u8] = b"system.posix_acl_access";
pub const XATTR_ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// `(acl_access, acl_default)` as borg stores them.
pub type AclTexts = (Option<Vec<u8>>, Option<Vec<u8>>);

const ACL_EA_VERSION: u32 = 2;
const HEADER_LEN: usize = 4;
const ENTRY_LEN: usize = 8;
/// Size of an ACL that only mirrors the mode bits (3 entries): libacl's "not extended" limit.
const BASE_ACL_LEN: usize = HEADER_LEN + 3 * ENTRY_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    /// uid/gid for `ACL_USER`/`ACL_GROUP`, [`ACL_UNDEFINED_ID`] otherwise.
    pub id: u32,
}

impl AclEntry {
    pub fn new(tag: u16, perm: u16, id: u32) -> AclEntry {
        AclEntry { tag, perm, id }
    }
    fn is_named(&self) -> bool {
        self.tag == ACL_USER || self.tag == ACL_GROUP
    }
    /// Entries whose effective rights are limited by the mask.
    fn in_group_class(&self) -> bool {
        matches!(self.tag, ACL_USER | ACL_GROUP_OBJ | ACL_GROUP)
    }
}

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// Decode the kernel's ACL xattr.
pub fn acl_from_xattr(data: &[u8]) -> io::Result<Vec<AclEntry>> {
    if data.len() < HEADER_LEN || !(data.len() - HEADER_LEN).is_multiple_of(ENTRY_LEN) {
        return Err(invalid());
    }
    let version = u32::from_le_bytes(data[..4].try_into().unwrap_or_default());
    if version != ACL_EA_VERSION {
        return Err(invalid());
    }
    Ok(data[HEADER_LEN..]
        .chunks_exact(ENTRY_LEN)
        .map(|e| AclEntry {
            tag: u16::from_le_bytes([e[0], e[1]]),
            perm: u16::from_le_bytes([e[2], e[3]]),
            id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        })
        .collect())
}

/// Encode entries as the kernel's ACL xattr (entries are expected in canonical order).
pub fn acl_to_xattr(entries: &[AclEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * entries.len());
    out.extend_from_slice(&ACL_EA_VERSION.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// The 3-entry ACL equivalent to the permission bits of `mode`.
pub fn acl_from_mode(mode: u32) -> Vec<AclEntry> {
    vec![
        AclEntry::new(ACL_USER_OBJ, ((mode >> 6) & 7) as u16, ACL_UNDEFINED_ID),
        AclEntry::new(ACL_GROUP_OBJ, ((mode >> 3) & 7) as u16, ACL_UNDEFINED_ID),
        AclEntry::new(ACL_OTHER, (mode & 7) as u16, ACL_UNDEFINED_ID),
    ]
}

fn perm_text(perm: u16) -> [u8; 3] {
    [
        if perm & ACL_READ != 0 { b'r' } else { b'-' },
        if perm & ACL_WRITE != 0 { b'w' } else { b'-' },
        if perm & ACL_EXECUTE != 0 { b'x' } else { b'-' },
    ]
}

fn sort_canonical(entries: &mut [AclEntry]) {
    entries.sort_by_key(|e| (e.tag, e.id));
}

/// borg's stored text for an ACL (see the module docs). Names come from the local user and
/// group databases unless `numeric_ids`; ids without a name are written as numbers.
pub fn acl_to_borg_text(entries: &[AclEntry], numeric_ids: bool) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sort_canonical(&mut sorted);
    let mask = sorted.iter().find(|e| e.tag == ACL_MASK).map(|e| e.perm);
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(sorted.len());
    for e in &sorted {
        let tag: &[u8] = match e.tag {
            ACL_USER_OBJ | ACL_USER => b"user",
            ACL_GROUP_OBJ | ACL_GROUP => b"group",
            ACL_MASK => b"mask",
            ACL_OTHER => b"other",
            _ => continue,
        };
        let mut line = tag.to_vec();
        line.push(b':');
        if e.is_named() {
            let name = match (numeric_ids, e.tag) {
                (true, _) => None,
                (false, ACL_USER) => uid2user(e.id),
                (false, _) => gid2group(e.id),
            };
            line.extend_from_slice(&name.unwrap_or_else(|| e.id.to_string().into_bytes()));
        }
        line.push(b':');
        line.extend_from_slice(&perm_text(e.perm));
        // libacl's "\t#effective:…" comment, of which borg's comment stripping keeps the tab
        if let Some(m) = mask {
            if e.in_group_class() && e.perm & m != e.perm {
                line.push(b'\t');
            }
        }
        if e.is_named() {
            line.push(b':');
            line.extend_from_slice(e.id.to_string().as_bytes());
        }
        lines.push(line);
    }
    lines.join(&b'\n')
}

fn parse_perm(field: &[u8]) -> io::Result<u16> {
    let mut perm = 0;
    for &c in field {
        perm |= match c {
            b'r' => ACL_READ,
            b'w' => ACL_WRITE,
            b'x' => ACL_EXECUTE,
            b'-' => 0,
            _ => return Err(invalid()),
        };
    }
    Ok(perm)
}

fn parse_id(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The uid/gid of a named entry: like borg, the stored numeric id with `numeric_ids`, else the
/// local id of the name, falling back to the stored id, then to the name read as a number.
fn resolve_qualifier(tag: u16, name: &[u8], stored: Option<&[u8]>, numeric: bool) -> Option<u32> {
    if numeric {
        if let Some(id) = stored.and_then(parse_id) {
            return Some(id);
        }
    }
    let local = if tag == ACL_USER {
        user2uid(name)
    } else {
        group2gid(name)
    };
    local
        .or_else(|| stored.and_then(parse_id))
        .or_else(|| parse_id(name))
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Parse borg's ACL text (also plain `acl_to_text`/`getfacl` forms: comments, short tags,
/// `,` separators) into canonically ordered entries. Malformed text or an unknown name without
/// a usable id gives EINVAL, as libacl's `acl_from_text` would.
pub fn acl_from_borg_text(text: &[u8], numeric_ids: bool) -> io::Result<Vec<AclEntry>> {
    let mut entries = Vec::new();
    for raw in text.split(|&c| c == b'\n' || c == b',') {
        let line = match raw.iter().position(|&c| c == b'#') {
            Some(pos) => &raw[..pos],
            None => raw,
        };
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|&c| c == b':').map(trim).collect();
        let (tag_field, qualifier, perm_field, stored) = match fields.len() {
            2 => (fields[0], &b""[..], fields[1], None),
            3 => (fields[0], fields[1], fields[2], None),
            4 => (fields[0], fields[1], fields[2], Some(fields[3])),
            _ => return Err(invalid()),
        };
        let perm = parse_perm(perm_field)?;
        let (obj_tag, named_tag) = match tag_field {
            b"user" | b"u" => (ACL_USER_OBJ, Some(ACL_USER)),
            b"group" | b"g" => (ACL_GROUP_OBJ, Some(ACL_GROUP)),
            b"mask" | b"m" => (ACL_MASK, None),
            b"other" | b"o" => (ACL_OTHER, None),
            _ => return Err(invalid()),
        };
        let entry = match (qualifier.is_empty(), named_tag) {
            (true, _) => AclEntry::new(obj_tag, perm, ACL_UNDEFINED_ID),
            (false, Some(tag)) => {
                let id =
                    resolve_qualifier(tag, qualifier, stored, numeric_ids).ok_or_else(invalid)?;
                AclEntry::new(tag, perm, id)
            }
            (false, None) => return Err(invalid()),
        };
        entries.push(entry);
    }
    sort_canonical(&mut entries);
    if entries
        .windows(2)
        .any(|w| w[0].tag == w[1].tag && w[0].id == w[1].id)
    {
        return Err(invalid());
    }
    Ok(entries)
}

/// Read the ACLs of a file system object in borg's stored form: `(acl_access, acl_default)`.
/// Both are None unless the object has an extended access ACL or a default ACL (libacl's
/// `acl_extended_*`); a directory then always gets `acl_default`, empty if it has none.
/// Symlinks have no ACLs. ENOTSUP errors are for the caller to ignore, like borg.
#[cfg(target_os = "linux")]
pub fn acl_get(
    path: &Path,
    st: &FileStat,
    numeric_ids: bool,
    fd: Option<std::os::fd::RawFd>,
) -> io::Result<AclTexts> {
    use super::xattrs::get_one;
    if st.is_symlink() {
        return Ok((None, None));
    }
    let target = match fd {
        Some(fd) => Target::Fd(fd),
        None => Target::Path(path),
    };
    let access_raw = get_one(target, XATTR_ACL_ACCESS)?;
    // only directories can carry a default ACL
    let default_raw = if st.is_dir() {
        get_one(target, XATTR_ACL_DEFAULT)?
    } else {
        None
    };
    let access_extended = access_raw.as_ref().is_some_and(|a| a.len() > BASE_ACL_LEN);
    let has_default = default_raw
        .as_ref()
        .is_some_and(|d| d.len() >= BASE_ACL_LEN);
    if !access_extended && !has_default {
        return Ok((None, None));
    }
    let access = match &access_raw {
        Some(raw) => acl_from_xattr(raw)?,
        None => acl_from_mode(st.mode),
    };
    let access_text = acl_to_borg_text(&access, numeric_ids);
    let default_text = if st.is_dir() {
        let default = match &default_raw {
            Some(raw) => acl_from_xattr(raw)?,
            None => Vec::new(),
        };
        Some(acl_to_borg_text(&default, numeric_ids))
    } else {
        None
    };
    Ok((Some(access_text), default_text))
}

#[cfg(not(target_os = "linux"))]
pub fn acl_get(
    _path: &Path,
    _st: &FileStat,
    _numeric_ids: bool,
    _fd: Option<std::os::fd::RawFd>,
) -> io::Result<AclTexts> {
    Ok((None, None))
}

/// Apply an item's `acl_access`/`acl_default` (empty texts are skipped; symlinks have none).
#[cfg(target_os = "linux")]
pub fn acl_set(
    path: &Path,
    item: &Item,
    numeric_ids: bool,
    fd: Option<std::os::fd::RawFd>,
) -> io::Result<()> {
    use super::xattrs::set_one;
    if item.is_symlink() {
        return Ok(());
    }
    let target = match fd {
        Some(fd) => Target::Fd(fd),
        None => Target::Path(path),
    };
    for (text, name) in [
        (&item.acl_access, XATTR_ACL_ACCESS),
        (&item.acl_default, XATTR_ACL_DEFAULT),
    ] {
        if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
            let entries = acl_from_borg_text(text, numeric_ids)?;
            set_one(target, name, &acl_to_xattr(&entries))?;
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn acl_set(
    _path: &Path,
    _item: &Item,
    _numeric_ids: bool,
    _fd: Option<std::os::fd::RawFd>,
) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::Command;

    const U: u32 = ACL_UNDEFINED_ID;

    fn sample() -> Vec<AclEntry> {
        vec![
            AclEntry::new(ACL_USER_OBJ, 6, U),
            AclEntry::new(ACL_USER, 1, 54321),
            AclEntry::new(ACL_USER, 4, 54322),
            AclEntry::new(ACL_GROUP_OBJ, 4, U),
            AclEntry::new(ACL_GROUP, 6, 54323),
            AclEntry::new(ACL_MASK, 7, U),
            AclEntry::new(ACL_OTHER, 4, U),
        ]
    }

    #[test]
    fn xattr_binary_round_trip_and_layout() {
        let bin = acl_to_xattr(&sample());
        assert_eq!(bin.len(), 4 + 7 * 8);
        assert_eq!(&bin[..4], &[2, 0, 0, 0]);
        // second entry: tag 2, perm 1, id 54321 little endian
        assert_eq!(&bin[12..20], &[2, 0, 1, 0, 0x31, 0xd4, 0, 0]);
        assert_eq!(acl_from_xattr(&bin).unwrap(), sample());
        assert!(acl_from_xattr(&bin[..7]).is_err());
        let mut wrong_version = bin.clone();
        wrong_version[0] = 1;
        assert!(acl_from_xattr(&wrong_version).is_err());
    }

    #[test]
    fn text_form_matches_borg_for_ids_without_names() {
        // ids with no passwd/group entry appear numerically, like borg writes them
        let text = acl_to_borg_text(&sample(), false);
        assert_eq!(
            text,
            b"user::rw-\nuser:54321:--x:54321\nuser:54322:r--:54322\ngroup::r--\n\
group:54323:rw-:54323\nmask::rwx\nother::r--"
                .to_vec()
        );
        assert_eq!(acl_from_borg_text(&text, false).unwrap(), sample());
        assert_eq!(acl_from_borg_text(&text, true).unwrap(), sample());
    }

    #[test]
    fn effective_rights_leave_a_tab_like_borg() {
        // borg 1.4.5 stored this for `setfacl -m u:bin:rx,m::r` on a 0755 directory
        let stored = b"user::rwx\nuser:bin:r-x\t:2\ngroup::r-x\t\nmask::r--\nother::r-x";
        let entries = acl_from_borg_text(stored, true).unwrap();
        assert_eq!(
            entries,
            vec![
                AclEntry::new(ACL_USER_OBJ, 7, U),
                AclEntry::new(ACL_USER, 5, 2),
                AclEntry::new(ACL_GROUP_OBJ, 5, U),
                AclEntry::new(ACL_MASK, 4, U),
                AclEntry::new(ACL_OTHER, 5, U),
            ]
        );
        assert_eq!(
            acl_to_borg_text(&entries, true),
            b"user::rwx\nuser:2:r-x\t:2\ngroup::r-x\t\nmask::r--\nother::r-x".to_vec()
        );
    }

    #[test]
    fn names_resolve_locally_unless_numeric() {
        let root = uid2user(0).unwrap();
        let mut text = b"user::rw-\nuser:".to_vec();
        text.extend_from_slice(&root);
        text.extend_from_slice(b":r--:777\ngroup::r--\nmask::r--\nother::---");
        let local = acl_from_borg_text(&text, false).unwrap();
        assert_eq!(local[1], AclEntry::new(ACL_USER, 4, 0));
        let numeric = acl_from_borg_text(&text, true).unwrap();
        assert_eq!(numeric[1], AclEntry::new(ACL_USER, 4, 777));
        // unknown name: stored id; no id either: error
        let e = acl_from_borg_text(b"user::rw-\nuser:udoesnotexist:r--:4711\nmask::r--", false)
            .unwrap();
        assert_eq!(e[1], AclEntry::new(ACL_USER, 4, 4711));
        assert!(acl_from_borg_text(b"user:udoesnotexist:r--", false).is_err());
        assert!(acl_from_borg_text(b"user::rwz", false).is_err());
        assert!(acl_from_borg_text(b"bogus::rw-", false).is_err());
        assert!(acl_from_borg_text(b"mask:x:rw-", false).is_err());
        assert!(acl_from_borg_text(b"user::rw-\nuser::r--", false).is_err());
    }

    #[test]
    fn getfacl_text_is_accepted() {
        let getfacl = b"# file: x\nuser::rw-\nuser:54321:r--\t#effective:r--\ngroup::r--\nmask::r--\nother::---\n";
        let e = acl_from_borg_text(getfacl, false).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[1], AclEntry::new(ACL_USER, 4, 54321));
    }

    fn have(cmd: &str) -> bool {
        Command::new(cmd).arg("--version").output().is_ok()
    }

    fn getfacl_numeric(path: &Path, default: bool) -> String {
        let mut c = Command::new("getfacl");
        c.args(["-n", "-c", "-E"]);
        c.arg(if default { "-d" } else { "-a" });
        let out = c.arg(path).output().unwrap();
        assert!(out.status.success(), "{:?}", out);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn apply_borg_text_then_getfacl_shows_it() {
        if !have("getfacl") {
            eprintln!("skipped: getfacl not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        // as stored by borg 1.4.5 (with --numeric-ids semantics the 4th field decides)
        let item = Item {
            mode: Some(0o040755),
            acl_access: Some(b"user::rwx\nuser:54321:rw-:54321\ngroup::r-x\ngroup:54323:r--:54323\nmask::rwx\nother::r-x".to_vec()),
            acl_default: Some(b"user::rwx\nuser:54322:r-x:54322\ngroup::r-x\nmask::r-x\nother::r-x".to_vec()),
            ..Default::default()
        };
        acl_set(&d, &item, true, None).unwrap();
        assert_eq!(
            getfacl_numeric(&d, false),
            "user::rwx\nuser:54321:rw-\ngroup::r-x\ngroup:54323:r--\nmask::rwx\nother::r-x"
        );
        assert_eq!(
            getfacl_numeric(&d, true),
            "user::rwx\nuser:54322:r-x\ngroup::r-x\nmask::r-x\nother::r-x"
        );
        // and capture gives borg's text back
        let st = super::super::stat::lstat(&d).unwrap();
        let (a, def) = acl_get(&d, &st, false, None).unwrap();
        assert_eq!(a, item.acl_access);
        assert_eq!(def, item.acl_default);
    }

    #[test]
    fn capture_matches_setfacl_made_acls() {
        if !have("setfacl") {
            eprintln!("skipped: setfacl not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let d = dir.path().join("onlyacc");
        std::fs::create_dir(&d).unwrap();
        let d2 = dir.path().join("onlydef");
        std::fs::create_dir(&d2).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let run = |args: &[&str], p: &Path| {
            let ok = Command::new("setfacl").args(args).arg(p).status().unwrap();
            assert!(ok.success());
        };
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        run(&["-m", "u:54321:r,g:54323:rw,m::r"], &f);
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        run(&["-m", "u:54321:rx"], &d);
        std::fs::set_permissions(&d2, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
        run(&["-m", "d:u:54322:rx"], &d2);
        let get = |p: &Path, numeric| {
            let st = super::super::stat::lstat(p).unwrap();
            acl_get(p, &st, numeric, None).unwrap()
        };
        let (a, def) = get(&f, false);
        assert_eq!(
            String::from_utf8(a.unwrap()).unwrap(),
            "user::rw-\nuser:54321:r--:54321\ngroup::r--\ngroup:54323:rw-\t:54323\nmask::r--\nother::r--"
        );
        assert_eq!(def, None);
        let (a, def) = get(&d, true);
        assert_eq!(
            a.unwrap(),
            b"user::rwx\nuser:54321:r-x:54321\ngroup::r-x\nmask::r-x\nother::r-x".to_vec()
        );
        assert_eq!(def, Some(Vec::new()));
        let (a, def) = get(&d2, true);
        assert_eq!(a.unwrap(), b"user::rwx\ngroup::r-x\nother::---".to_vec());
        assert_eq!(
            def.unwrap(),
            b"user::rwx\nuser:54322:r-x:54322\ngroup::r-x\nmask::r-x\nother::---".to_vec()
        );
        assert_eq!(get(&plain, false), (None, None));
    }
}
