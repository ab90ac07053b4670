//! Where extracted items go, and borg 1.4.5's refusal of unsafe archive paths.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::path_from_bytes;
use crate::errors::WarningKind;

/// The item path with its first `n` `/`-separated elements dropped (borg's
/// `'/'.join(path.split('/')[n:])`); None if nothing remains (such items are skipped).
pub fn strip_components(path: &[u8], n: usize) -> Option<Vec<u8>> {
    if n == 0 {
        return (!path.is_empty()).then(|| path.to_vec());
    }
    let rest: Vec<&[u8]> = path.split(|&c| c == b'/').skip(n).collect();
    let joined = rest.join(&b'/');
    (!joined.is_empty()).then_some(joined)
}

/// The file system path of an item below `dest_root` after `--strip-components`.
pub fn extract_path(dest_root: &Path, item_path: &[u8], strip: usize) -> Option<PathBuf> {
    let stripped = strip_components(item_path, strip)?;
    Some(dest_root.join(path_from_bytes(&stripped)))
}

/// An item borg 1.4.5 refuses (or skips) for safety: a `BackupError` subclass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupRefusal {
    pub kind: WarningKind,
}

impl BackupRefusal {
    fn new(kind: WarningKind) -> BackupRefusal {
        BackupRefusal { kind }
    }

    /// The warning line borg logs, `path` being the item's path as shown to the user.
    pub fn message(&self, path: &str) -> String {
        let text = match self.kind {
            WarningKind::BackupSymlinkParent => {
                "not extracted, a parent directory is a symlink (malicious or corrupted archive)"
            }
            WarningKind::BackupPathTraversal => {
                "not extracted, path contains \"../\" (malicious or corrupted archive)"
            }
            WarningKind::BackupHardlinkSource => {
                "not extracted, hardlink source path is unsafe (malicious or corrupted archive)"
            }
            WarningKind::BackupRaceCondition => {
                "file type or inode changed while we backed it up (race condition, skipped file)"
            }
            _ => "backup error",
        };
        format!("{path}: {text}")
    }
}

/// The per-extraction safety state (borg's `_check_safe_parent` and `safe_dirs`): directories
/// below the destination that were verified to be real directories during this run.
#[derive(Debug)]
pub struct ExtractGuard {
    root: PathBuf,
    safe_dirs: HashSet<PathBuf>,
}

impl ExtractGuard {
    pub fn new(root: impl Into<PathBuf>) -> ExtractGuard {
        ExtractGuard {
            root: root.into(),
            safe_dirs: HashSet::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Check an item about to be extracted at `archived_path` (already stripped) and return
    /// its destination. Refused: absolute paths or any `..` component (PathTraversal — borg
    /// only checks the parent components, rborg also the last one), and a parent that exists
    /// as anything but a real directory, e.g. a symlink extracted earlier (SymlinkParent).
    pub fn check_item(&mut self, archived_path: &[u8]) -> Result<PathBuf, BackupRefusal> {
        if archived_path.starts_with(b"/")
            || archived_path.split(|&c| c == b'/').any(|c| c == b"..")
        {
            return Err(BackupRefusal::new(WarningKind::BackupPathTraversal));
        }
        let path = self.root.join(path_from_bytes(archived_path));
        // the item is about to be (re)created: do not trust an earlier verdict about it
        self.safe_dirs.remove(&path);
        self.check_parents(archived_path)
            .map_err(BackupRefusal::new)?;
        Ok(path)
    }

    /// Check a hardlink slave's `source` (the master's archived path, before stripping) and
    /// return where the master was extracted. Any problem is a `BackupHardlinkSource` refusal.
    pub fn check_hardlink_source(
        &mut self,
        source: &[u8],
        strip: usize,
    ) -> Result<PathBuf, BackupRefusal> {
        let refused = || BackupRefusal::new(WarningKind::BackupHardlinkSource);
        let stripped: Vec<&[u8]> = source.split(|&c| c == b'/').skip(strip).collect();
        let stripped = stripped.join(&b'/');
        if source.starts_with(b"/") || stripped.split(|&c| c == b'/').any(|c| c == b"..") {
            return Err(refused());
        }
        self.check_parents(&stripped).map_err(|_| refused())?;
        Ok(self.root.join(path_from_bytes(&stripped)))
    }

    fn check_parents(&mut self, archived_path: &[u8]) -> Result<(), WarningKind> {
        let components: Vec<&[u8]> = archived_path.split(|&c| c == b'/').collect();
        let parents = &components[..components.len().saturating_sub(1)];
        let mut current = self.root.clone();
        for comp in parents.iter().filter(|c| !c.is_empty() && *c != b".") {
            if *comp == b".." {
                return Err(WarningKind::BackupPathTraversal);
            }
            current.push(path_from_bytes(comp));
            if self.safe_dirs.contains(&current) {
                continue;
            }
            match std::fs::symlink_metadata(&current) {
                Ok(m) if m.is_dir() => {
                    self.safe_dirs.insert(current.clone());
                }
                Ok(_) => return Err(WarningKind::BackupSymlinkParent),
                // not there yet: it will be created as a real directory below a safe chain
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Create the missing parent directories of `path` (a destination returned by
    /// [`check_item`](Self::check_item)) and remember the parent as safe.
    pub fn make_parent(&mut self, path: &Path) -> std::io::Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if self.safe_dirs.contains(parent) {
            return Ok(());
        }
        if std::fs::symlink_metadata(parent).is_err() {
            std::fs::create_dir_all(parent)?;
        }
        self.safe_dirs.insert(parent.to_path_buf());
        Ok(())
    }
}

/// Directories whose metadata is restored after their contents (borg keeps a stack and
/// restores each directory once an item outside it comes along, the rest at the end).
#[derive(Debug)]
pub struct DeferredDirs<T> {
    stack: Vec<(Vec<u8>, T)>,
}

impl<T> Default for DeferredDirs<T> {
    fn default() -> Self {
        DeferredDirs { stack: Vec::new() }
    }
}

impl<T> DeferredDirs<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember a directory (by its extracted item path) for later.
    pub fn push(&mut self, item_path: Vec<u8>, value: T) {
        self.stack.push((item_path, value));
    }

    /// The directories that are finished before `next_path` is extracted, innermost first.
    /// Like borg this is a plain prefix test, which only ever keeps directories longer.
    pub fn finished_before(&mut self, next_path: &[u8]) -> Vec<T> {
        let mut done = Vec::new();
        while let Some((top, _)) = self.stack.last() {
            if next_path.starts_with(top) {
                break;
            }
            if let Some((_, v)) = self.stack.pop() {
                done.push(v);
            }
        }
        done
    }

    /// All remaining directories, innermost first.
    pub fn drain(&mut self) -> Vec<T> {
        let mut all: Vec<T> = self.stack.drain(..).map(|(_, v)| v).collect();
        all.reverse();
        all
    }

    pub fn len(&self) -> usize {
        self.stack.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_like_borg() {
        assert_eq!(strip_components(b"a/b/c", 0), Some(b"a/b/c".to_vec()));
        assert_eq!(strip_components(b"a/b/c", 1), Some(b"b/c".to_vec()));
        assert_eq!(strip_components(b"a/b/c", 2), Some(b"c".to_vec()));
        assert_eq!(strip_components(b"a/b/c", 3), None);
        assert_eq!(strip_components(b"a", 1), None);
        assert_eq!(strip_components(b"a//b", 1), Some(b"/b".to_vec()));
        let root = Path::new("/dest");
        assert_eq!(
            extract_path(root, b"x/\xffy", 1),
            Some(root.join(path_from_bytes(b"\xffy")))
        );
        assert_eq!(extract_path(root, b"x", 1), None);
    }

    #[test]
    fn traversal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = ExtractGuard::new(dir.path());
        for bad in [&b"../x"[..], b"a/../../x", b"a/..", b"..", b"/etc/passwd"] {
            let err = g.check_item(bad).unwrap_err();
            assert_eq!(err.kind, WarningKind::BackupPathTraversal, "{bad:?}");
        }
        assert_eq!(g.check_item(b"a/./b").unwrap(), dir.path().join("a/./b"));
        assert_eq!(
            BackupRefusal::new(WarningKind::BackupPathTraversal).message("a/../x"),
            "a/../x: not extracted, path contains \"../\" (malicious or corrupted archive)"
        );
    }

    #[test]
    fn symlinked_parent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut g = ExtractGuard::new(dir.path());
        let d = g.check_item(b"d/f").unwrap();
        g.make_parent(&d).unwrap();
        std::fs::write(&d, b"x").unwrap();
        assert!(dir.path().join("d").is_dir());
        // an archive item "link" → outside, then "link/evil"
        let l = g.check_item(b"link").unwrap();
        std::os::unix::fs::symlink(outside.path(), &l).unwrap();
        let err = g.check_item(b"link/evil").unwrap_err();
        assert_eq!(err.kind, WarningKind::BackupSymlinkParent);
        // a directory replaced by a symlink later in the archive is not trusted either
        let again = g.check_item(b"d").unwrap();
        std::fs::remove_file(dir.path().join("d/f")).unwrap();
        crate::fs::remove_existing(&again);
        std::os::unix::fs::symlink(outside.path(), &again).unwrap();
        assert_eq!(
            g.check_item(b"d/x").unwrap_err().kind,
            WarningKind::BackupSymlinkParent
        );
        // a regular file as parent
        std::fs::write(dir.path().join("file"), b"").unwrap();
        assert_eq!(
            g.check_item(b"file/x").unwrap_err().kind,
            WarningKind::BackupSymlinkParent
        );
    }

    #[test]
    fn hardlink_sources_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut g = ExtractGuard::new(dir.path());
        assert_eq!(
            g.check_hardlink_source(b"top/a/master", 1).unwrap(),
            dir.path().join("a/master")
        );
        for bad in [&b"../etc/shadow"[..], b"/etc/shadow", b"x/../../y"] {
            assert_eq!(
                g.check_hardlink_source(bad, 0).unwrap_err().kind,
                WarningKind::BackupHardlinkSource
            );
        }
        std::os::unix::fs::symlink(outside.path(), dir.path().join("l")).unwrap();
        assert_eq!(
            g.check_hardlink_source(b"l/shadow", 0).unwrap_err().kind,
            WarningKind::BackupHardlinkSource
        );
    }

    #[test]
    fn deferred_dirs_pop_in_borg_order() {
        let mut d = DeferredDirs::new();
        d.push(b"a".to_vec(), 1);
        d.push(b"a/b".to_vec(), 2);
        assert!(d.finished_before(b"a/b/c").is_empty());
        assert_eq!(d.finished_before(b"a/x"), vec![2]);
        // plain prefix test as in borg: "ab" keeps "a" on the stack
        assert!(d.finished_before(b"ab").is_empty());
        d.push(b"ab".to_vec(), 3);
        assert_eq!(d.finished_before(b"z"), vec![3, 1]);
        d.push(b"q".to_vec(), 4);
        d.push(b"q/r".to_vec(), 5);
        assert_eq!(d.drain(), vec![5, 4]);
        assert!(d.is_empty());
    }
}
