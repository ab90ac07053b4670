//! User/group name ↔ id lookups with process-wide caches (borg caches them without limit too;
//! they are on the hot path of both create and extract).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::{OnceLock, RwLock};

type Cache<K, V> = OnceLock<RwLock<HashMap<K, V>>>;

static UID_TO_NAME: Cache<u32, Option<Vec<u8>>> = OnceLock::new();
static GID_TO_NAME: Cache<u32, Option<Vec<u8>>> = OnceLock::new();
static NAME_TO_UID: Cache<Vec<u8>, Option<u32>> = OnceLock::new();
static NAME_TO_GID: Cache<Vec<u8>, Option<u32>> = OnceLock::new();

fn cached<K, V, F>(cache: &Cache<K, V>, key: &K, lookup: F) -> V
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
    F: FnOnce(&K) -> V,
{
    let map = cache.get_or_init(|| RwLock::new(HashMap::new()));
    if let Some(v) = map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return v.clone();
    }
    let v = lookup(key);
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), v.clone());
    v
}

/// The user name of `uid`, None if it has none.
pub fn uid2user(uid: u32) -> Option<Vec<u8>> {
    cached(&UID_TO_NAME, &uid, |&uid| {
        lookup_passwd(Key::Id(uid)).map(|(n, _)| n)
    })
}

/// The group name of `gid`, None if it has none.
pub fn gid2group(gid: u32) -> Option<Vec<u8>> {
    cached(&GID_TO_NAME, &gid, |&gid| {
        lookup_group(Key::Id(gid)).map(|(n, _)| n)
    })
}

/// The uid of user `name`, None if unknown (or empty, like borg's `user and …`).
pub fn user2uid(name: &[u8]) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    cached(&NAME_TO_UID, &name.to_vec(), |n| {
        lookup_passwd(Key::Name(n)).map(|(_, id)| id)
    })
}

/// The gid of group `name`, None if unknown (or empty).
pub fn group2gid(name: &[u8]) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    cached(&NAME_TO_GID, &name.to_vec(), |n| {
        lookup_group(Key::Name(n)).map(|(_, id)| id)
    })
}

enum Key<'a> {
    Id(u32),
    Name(&'a [u8]),
}

/// Run a reentrant NSS lookup, growing the scratch buffer on ERANGE.
fn with_buffer<F>(mut call: F) -> Option<(Vec<u8>, u32)>
where
    F: FnMut(&mut [libc::c_char]) -> Result<Option<(Vec<u8>, u32)>, i32>,
{
    let mut size = 1024usize;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            Ok(found) => return found,
            Err(libc::ERANGE) if size < (1 << 24) => size *= 4,
            Err(_) => return None,
        }
    }
}

fn lookup_passwd(key: Key) -> Option<(Vec<u8>, u32)> {
    let cname = match &key {
        Key::Name(n) => Some(CString::new(*n).ok()?),
        Key::Id(_) => None,
    };
    with_buffer(|buf| {
        // SAFETY: passwd is plain old data; the pointers it receives point into `buf`,
        // which outlives their use below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            match (&key, &cname) {
                (Key::Id(uid), _) => {
                    libc::getpwuid_r(*uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
                }
                (Key::Name(_), Some(c)) => libc::getpwnam_r(
                    c.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                _ => return Ok(None),
            }
        };
        if rc != 0 {
            return Err(rc);
        }
        if result.is_null() || pwd.pw_name.is_null() {
            return Ok(None);
        }
        // SAFETY: pw_name is a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }.to_bytes().to_vec();
        Ok(Some((name, pwd.pw_uid)))
    })
}

fn lookup_group(key: Key) -> Option<(Vec<u8>, u32)> {
    let cname = match &key {
        Key::Name(n) => Some(CString::new(*n).ok()?),
        Key::Id(_) => None,
    };
    with_buffer(|buf| {
        // SAFETY: as in lookup_passwd.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            match (&key, &cname) {
                (Key::Id(gid), _) => {
                    libc::getgrgid_r(*gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result)
                }
                (Key::Name(_), Some(c)) => libc::getgrnam_r(
                    c.as_ptr(),
                    &mut grp,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                _ => return Ok(None),
            }
        };
        if rc != 0 {
            return Err(rc);
        }
        if result.is_null() || grp.gr_name.is_null() {
            return Ok(None);
        }
        // SAFETY: gr_name is a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(grp.gr_name) }.to_bytes().to_vec();
        Ok(Some((name, grp.gr_gid)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_round_trips() {
        let name = uid2user(0).expect("uid 0 has a name");
        assert_eq!(user2uid(&name), Some(0));
        let group = gid2group(0).expect("gid 0 has a name");
        assert_eq!(group2gid(&group), Some(0));
        // cached second lookup gives the same
        assert_eq!(uid2user(0), Some(name));
    }

    #[test]
    fn unknown_names_and_ids() {
        assert_eq!(user2uid(b"udoesnotexist"), None);
        assert_eq!(group2gid(b"gdoesnotexist"), None);
        assert_eq!(user2uid(b""), None);
        assert_eq!(user2uid(b"a\0b"), None);
        assert_eq!(uid2user(3_999_999_999), None);
        assert_eq!(gid2group(3_999_999_999), None);
    }
}
