//! Key files of the keyfile modes (repository-format.md §4.5): lookup, naming, load, save.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::errors::{Error, ErrorKind, Result};
use crate::output;
use crate::paths;
use crate::repository::ObjectId;

/// First word of every key file.
pub const KEY_FILE_ID: &str = "BORG_KEY";

/// Python's `os.path.abspath`: make absolute against the cwd and normalize lexically.
pub(crate) fn abspath(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(p)
    };
    normpath(&joined)
}

/// Python's `os.path.normpath` (lexical: `.`, `..`, duplicate and trailing slashes).
pub(crate) fn normpath(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// `$BORG_KEY_FILE` (when set and non-empty), made absolute.
fn env_key_file() -> Option<PathBuf> {
    std::env::var_os("BORG_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(|v| abspath(Path::new(&v)))
}

/// The keys dir, created (0700) if missing, as borg's get_keys_dir does.
pub fn ensure_keys_dir() -> Result<PathBuf> {
    let dir = paths::keys_dir();
    ensure_private_dir(&dir)?;
    Ok(dir)
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::exception(format!("{}: {e}", dir.display())))
}

/// borg's sanity check of a key file for repository `repo_id`: `KeyfileInvalidError` if it
/// is not a key file, `KeyfileMismatchError` if it belongs to another repository.
pub fn check_key_file(path: &Path, repo_id: &ObjectId, location: &str) -> Result<()> {
    let shown = path.display().to_string();
    let invalid = || Error::new(ErrorKind::KeyfileInvalidError, [location, shown.as_str()]);
    let content = fs::read(path).map_err(|e| Error::exception(format!("{shown}: {e}")))?;
    let magic = format!("{KEY_FILE_ID} ");
    if !content.starts_with(magic.as_bytes()) {
        return Err(invalid());
    }
    let id_hex = hex::encode(repo_id);
    if content.get(magic.len()..magic.len() + id_hex.len()) != Some(id_hex.as_bytes()) {
        return Err(Error::new(
            ErrorKind::KeyfileMismatchError,
            [location, shown.as_str()],
        ));
    }
    // It looks like a key of this repository: check it the way it will be read.
    let warn_invalid = |why: &str| {
        output::warning(&format!("borg key sanity check: {why} [{shown}]"));
        invalid()
    };
    let Ok(text) = std::str::from_utf8(&content) else {
        return Err(invalid());
    };
    let lines = split_lines(text);
    if lines.len() < 2 {
        return Err(warn_invalid("expected 2+ lines total."));
    }
    if lines[0].trim_end().len() > magic.len() + id_hex.len() {
        return Err(warn_invalid("key line 1 seems too long."));
    }
    let body: String = lines[1..].concat();
    match super::keyblob::decode_key_text(body.as_bytes()) {
        None => Err(warn_invalid("key line 2+ does not look like base64.")),
        Some(raw) if raw.len() < 20 => Err(warn_invalid(
            "binary encrypted key data from key line 2+ suspiciously short.",
        )),
        Some(_) => Ok(()),
    }
}

/// Lines with their terminators, split on `\n`, `\r\n` or `\r` (Python universal newlines).
fn split_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\n' => i + 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        lines.push(&text[start..end]);
        start = end;
        i = end;
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Find the key file of a repository: `$BORG_KEY_FILE` (must pass the sanity check), else
/// the first file of the keys dir that starts with `BORG_KEY <id hex>`.
/// `location` is the repository location for error messages.
pub fn find_key_file(repo_id: &ObjectId, location: &str) -> Result<PathBuf> {
    let env_file = std::env::var_os("BORG_KEY_FILE").map(PathBuf::from);
    find_key_file_with(repo_id, location, env_file.as_deref(), &paths::keys_dir())
}

/// [`find_key_file`] with the `BORG_KEY_FILE` value and the keys dir given explicitly.
pub fn find_key_file_with(
    repo_id: &ObjectId,
    location: &str,
    key_file: Option<&Path>,
    keys_dir: &Path,
) -> Result<PathBuf> {
    if let Some(path) = key_file.filter(|p| !p.as_os_str().is_empty()) {
        let path = abspath(path);
        check_key_file(&path, repo_id, location)?;
        return Ok(path);
    }
    ensure_private_dir(keys_dir)?;
    find_key_file_in(keys_dir, repo_id, location)
}

/// Scan `keys_dir` for the key of `repo_id` (file names are irrelevant; sorted for a stable
/// choice). `KeyfileNotFoundError(location, keys_dir)` if none matches.
pub fn find_key_file_in(keys_dir: &Path, repo_id: &ObjectId, location: &str) -> Result<PathBuf> {
    let not_found = || {
        Error::new(
            ErrorKind::KeyfileNotFoundError,
            [location.to_string(), keys_dir.display().to_string()],
        )
    };
    let mut names: Vec<PathBuf> = match fs::read_dir(keys_dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => return Err(not_found()),
    };
    names.sort();
    for path in names {
        if !path.is_file() {
            continue;
        }
        if check_key_file(&path, repo_id, location).is_ok() {
            return Ok(path);
        }
    }
    Err(not_found())
}

/// The key data of a key file: everything after the first line.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let content =
        fs::read(path).map_err(|e| Error::exception(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&content);
    let lines = split_lines(&text);
    Ok(lines.get(1..).unwrap_or(&[]).concat().into_bytes())
}

/// Write a key file atomically with mode 0600: `BORG_KEY <id hex>\n<key text>\n`.
/// With `create`, refuse to overwrite an existing file (borg's guard against a reused
/// BORG_KEY_FILE).
pub fn save_key_file(path: &Path, repo_id: &ObjectId, key_text: &str, create: bool) -> Result<()> {
    if create && path.is_file() {
        return Err(Error::generic(format!(
            "Aborting because key in \"{}\" already exists.",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_private_dir(parent)?;
    }
    let content = format!("{KEY_FILE_ID} {}\n{key_text}\n", hex::encode(repo_id));
    write_file_atomic(path, content.as_bytes(), 0o600)
}

/// Write `data` to a temp file next to `path`, fsync, rename over `path`, fsync the dir.
pub(crate) fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| Error::exception(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{name}-{:08x}.tmp", rand::random::<u32>()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// borg's key file base name for a repository location: every non-word character of the
/// path becomes `_`, leading/trailing `_` stripped; remote repos get `<host>__` in front;
/// at most 100 characters.
pub fn key_file_base_name(path: &str, host: Option<&str>) -> String {
    let sanitize = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = sanitize(path).trim_matches('_').to_string();
    if let Some(host) = host {
        name = format!("{}__{name}", sanitize(host));
    }
    name.chars().take(100).collect()
}

/// Split a repository location into (path, remote host). Understands `ssh://[user@]host[:port]/path`,
/// `file://path`, scp-style `[user@]host:path` and plain local paths.
fn split_location(location: &str) -> (String, Option<String>) {
    let strip_user = |hostpart: &str| -> String {
        let host = hostpart
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(hostpart);
        if let Some(rest) = host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest).to_string();
        }
        host.split(':').next().unwrap_or(host).to_string()
    };
    if let Some(rest) = location.strip_prefix("ssh://") {
        let (hostpart, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        return (normpath_special(path), Some(strip_user(hostpart)));
    }
    if let Some(path) = location.strip_prefix("file://") {
        return (normpath_special(path), None);
    }
    // scp style: host:path, where the part before ':' has no '/'.
    if let Some((hostpart, path)) = location.split_once(':') {
        if !hostpart.is_empty() && !hostpart.contains('/') {
            return (normpath_special(path), Some(strip_user(hostpart)));
        }
    }
    (normpath_special(location), None)
}

/// borg's path normalisation of locations (normpath, keeping the `/./` relative marker).
fn normpath_special(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let relative = p.starts_with("/./");
    let n = normpath(Path::new(p)).to_string_lossy().into_owned();
    if relative {
        format!("/.{n}")
    } else {
        n
    }
}

/// Path for a new key file of `location` in the keys dir: the base name of
/// [`key_file_base_name`], with `.2`, `.3`, … appended while the name is taken.
pub fn key_file_name_for(location: &str) -> PathBuf {
    let (path, host) = split_location(location);
    unique_path(paths::keys_dir().join(key_file_base_name(&path, host.as_deref())))
}

/// Where `borg init` puts a new key file: `$BORG_KEY_FILE` if set, else
/// [`key_file_name_for`] (the keys dir is created if missing).
pub fn new_key_file_path(location: &str) -> Result<PathBuf> {
    let (path, host) = split_location(location);
    new_key_file_path_named(&key_file_base_name(&path, host.as_deref()))
}

/// Where `borg init` puts a new key file whose base name is already known (borg's
/// `Location.to_key_filename`, see `Location::key_file_name`): `$BORG_KEY_FILE` if set, else
/// that name in the keys dir (created if missing), `.2`, `.3`, … appended while taken.
pub fn new_key_file_path_named(base_name: &str) -> Result<PathBuf> {
    if let Some(p) = env_key_file() {
        return Ok(p);
    }
    let dir = ensure_keys_dir()?;
    Ok(unique_path(dir.join(base_name)))
}

fn unique_path(base: PathBuf) -> PathBuf {
    let mut path = base.clone();
    let mut i = 1;
    while path.exists() {
        i += 1;
        let mut s = base.clone().into_os_string();
        s.push(format!(".{i}"));
        path = PathBuf::from(s);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_follow_borg() {
        assert_eq!(key_file_base_name("kf", None), "kf");
        assert_eq!(key_file_base_name("/srv/repo", None), "srv_repo");
        assert_eq!(
            key_file_base_name("/srv/my-repo.borg/", None),
            "srv_my_repo_borg"
        );
        assert_eq!(
            key_file_base_name("/./rel", Some("host.example")),
            "host_example__rel"
        );
        assert_eq!(key_file_base_name(&"a".repeat(150), None).len(), 100);
        let (p, h) = split_location("ssh://user@backup.example:2222/srv/repo");
        assert_eq!(
            (p.as_str(), h.as_deref()),
            ("/srv/repo", Some("backup.example"))
        );
        assert_eq!(split_location("ssh://[::1]:22/r").1.as_deref(), Some("::1"));
        assert_eq!(
            split_location("user@host:repo"),
            ("repo".to_string(), Some("host".to_string()))
        );
        assert_eq!(split_location("/a/./b//c/"), ("/a/b/c".to_string(), None));
        assert_eq!(split_location("kf"), ("kf".to_string(), None));
    }

    #[test]
    fn unique_names_get_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("repo");
        assert_eq!(unique_path(base.clone()), base);
        fs::write(&base, "x").unwrap();
        assert_eq!(unique_path(base.clone()), dir.path().join("repo.2"));
        fs::write(dir.path().join("repo.2"), "x").unwrap();
        assert_eq!(unique_path(base), dir.path().join("repo.3"));
    }

    #[test]
    fn save_find_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let id = [0xab; 32];
        let other = [0xcd; 32];
        let m = crate::crypto::key::KeyMaterial::random(crate::crypto::KeyType::KeyFile, id);
        let text = super::super::keyblob::encrypt_key_blob(&m, "pw");
        let path = dir.path().join("zz-key");
        save_key_file(&path, &id, &text, true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = save_key_file(&path, &id, &text, true).unwrap_err();
        assert!(e.message.contains("already exists"));
        // Noise in the keys dir: another repo's key, garbage, a subdirectory.
        save_key_file(&dir.path().join("aa-other"), &other, &text, true).unwrap();
        fs::write(dir.path().join("bb-garbage"), b"\xff\xfe not a key").unwrap();
        fs::create_dir(dir.path().join("cc-dir")).unwrap();
        assert_eq!(find_key_file_in(dir.path(), &id, "/r").unwrap(), path);
        let e = find_key_file_in(dir.path(), &[1; 32], "/r").unwrap_err();
        assert_eq!(e.kind, ErrorKind::KeyfileNotFoundError);
        assert_eq!(
            e.message,
            format!(
                "No key file for repository /r found in {}.",
                dir.path().display()
            )
        );
        assert_eq!(
            check_key_file(&dir.path().join("aa-other"), &id, "/r")
                .unwrap_err()
                .kind,
            ErrorKind::KeyfileMismatchError
        );
        assert_eq!(
            check_key_file(&dir.path().join("bb-garbage"), &id, "/r")
                .unwrap_err()
                .kind,
            ErrorKind::KeyfileInvalidError
        );
        let short = dir.path().join("short");
        fs::write(&short, format!("BORG_KEY {}\naGVsbG8=\n", hex::encode(id))).unwrap();
        assert_eq!(
            check_key_file(&short, &id, "/r").unwrap_err().kind,
            ErrorKind::KeyfileInvalidError
        );
        // Reading returns the key text after the first line.
        let data = read_key_file(&path).unwrap();
        assert_eq!(String::from_utf8(data).unwrap(), format!("{text}\n"));
    }
}
