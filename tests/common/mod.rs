//! Shared helpers of the integration tests: locating fixtures, scratch dirs, running rborg
//! and real borg like a user would.
#![allow(dead_code)]

pub mod logjson;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "fixture-passphrase";

pub const MODES: &[&str] = &[
    "none",
    "authenticated",
    "authenticated-blake2",
    "repokey",
    "keyfile",
    "repokey-blake2",
    "keyfile-blake2",
];

/// The borg 1.2 golden fixtures: `$RBORG_FIXTURES` or the copy in `tests/fixtures/borg12`.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RBORG_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/borg12"),
    };
    if dir.join("repos").is_dir() {
        Some(dir.canonicalize().unwrap())
    } else {
        None
    }
}

/// Report a skipped test: printed, and appended to `$RBORG_SKIP_LOG` (scripts/test shows
/// that list at the end, since cargo hides the output of passing tests).
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIP {test}: {reason}");
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("RBORG_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The fixtures, or a printed reason and `None` (the caller returns, i.e. skips).
pub fn fixtures_or_skip(test: &str) -> Option<PathBuf> {
    let d = fixtures_dir();
    if d.is_none() {
        skip(test, "borg12 fixtures not found (set RBORG_FIXTURES)");
    }
    d
}

/// Whether real borg is on PATH; prints a skip reason when not.
pub fn borg_or_skip(test: &str) -> bool {
    let ok = Command::new("borg")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip(test, "real borg is not installed");
    }
    ok
}

/// A scratch area laid out like the fixture generation: `repos/<mode>` copies, `keys/`,
/// `work/` (the cwd of commands) and `base/` (BORG_BASE_DIR).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("rborg-test")
            .tempdir()
            .unwrap();
        for sub in ["repos", "work", "base"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Scratch { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    pub fn work(&self) -> PathBuf {
        self.path().join("work")
    }

    pub fn base(&self) -> PathBuf {
        self.path().join("base")
    }

    /// Copy fixture repo `mode` (and the key files) into `repos/<mode>`; returns its path.
    pub fn copy_fixture(&self, fixtures: &Path, mode: &str) -> PathBuf {
        let dst = self.path().join("repos").join(mode);
        copy_tree(&fixtures.join("repos").join(mode), &dst);
        copy_tree(&fixtures.join("keys"), &self.path().join("keys"));
        dst
    }

    /// Environment for borg/rborg runs against the copied fixtures.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("BORG_PASSPHRASE".into(), PASSPHRASE.into()),
            ("BORG_BASE_DIR".into(), self.base().display().to_string()),
            ("BORG_KEYS_DIR".into(), "../keys".into()),
            ("TZ".into(), "UTC".into()),
            (
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(),
                "yes".into(),
            ),
            ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "yes".into()),
        ]
    }
}

/// `cp -a` then make the copy writable (the fixtures are read-only).
pub fn copy_tree(src: &Path, dst: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        src.display(),
        dst.display()
    );
    let status = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(dst)
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn rborg_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rborg"))
}

/// Run a program with args, cwd and env; returns its output.
pub fn run_in(program: &Path, args: &[&str], cwd: &Path, env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("BORG_REPO")
        .env_remove("BORG_PASSCOMMAND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null());
    cmd.output().unwrap()
}

pub fn rborg(args: &[&str], cwd: &Path, env: &[(String, String)]) -> Output {
    run_in(&rborg_bin(), args, cwd, env)
}

pub fn borg(args: &[&str], cwd: &Path, env: &[(String, String)]) -> Output {
    run_in(Path::new("borg"), args, cwd, env)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success, showing stderr otherwise.
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "command failed (rc {:?}):\n{}",
        o.status.code(),
        stderr(&o)
    );
    o
}

/// Run `mktree.py create` (and `upgrade` for version 2) into `<parent>/tree`.
pub fn make_fixture_tree(fixtures: &Path, parent: &Path, version: u32) -> PathBuf {
    let script = fixtures.join("mktree.py");
    let tree = parent.join("tree");
    let st = Command::new("python3")
        .arg(&script)
        .arg("create")
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    if version == 2 {
        let st = Command::new("python3")
            .arg(&script)
            .arg("upgrade")
            .arg(&tree)
            .status()
            .unwrap();
        assert!(st.success());
    }
    tree
}

/// What a tree comparison looks at for one entry.
#[derive(Debug, PartialEq)]
pub struct EntryState {
    pub kind: &'static str,
    pub perms: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub content_or_target: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index of the first path (in walk order) sharing this inode, for hardlinks.
    pub link_group: Option<Vec<u8>>,
}

/// Snapshot of a tree: relative raw path → state (sorted by path).
pub fn snapshot(root: &Path) -> Vec<(Vec<u8>, EntryState)> {
    use std::collections::HashMap;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        paths.push(p.clone());
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    paths.sort();
    let mut first_of_inode: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for p in paths {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "chr"
        } else if ft.is_block_device() {
            "blk"
        } else {
            "file"
        };
        let content_or_target = match kind {
            "file" => std::fs::read(&p).unwrap(),
            "symlink" => std::fs::read_link(&p)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
            _ => Vec::new(),
        };
        let mut xattrs = Vec::new();
        if kind != "symlink" {
            if let Ok(names) = xattr::list(&p) {
                for n in names {
                    let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                    xattrs.push((n.as_bytes().to_vec(), v));
                }
            }
        }
        xattrs.sort();
        let link_group = if kind == "file" && md.nlink() > 1 {
            Some(
                first_of_inode
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone(),
            )
        } else {
            None
        };
        let mtime_ns = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        let state = EntryState {
            kind,
            perms: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime_ns,
            content_or_target,
            xattrs,
            link_group,
        };
        out.push((rel, state));
    }
    out
}

/// Assert two trees are identical in everything `snapshot` records.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    compare_snapshots(snapshot(expected), snapshot(actual));
}

/// Like [`assert_same_tree`], but the two root directories themselves are not compared.
pub fn assert_same_children(expected: &Path, actual: &Path) {
    let strip =
        |v: Vec<(Vec<u8>, EntryState)>| v.into_iter().filter(|(p, _)| !p.is_empty()).collect();
    compare_snapshots(strip(snapshot(expected)), strip(snapshot(actual)));
}

fn compare_snapshots(a: Vec<(Vec<u8>, EntryState)>, b: Vec<(Vec<u8>, EntryState)>) {
    let names_a: Vec<_> = a
        .iter()
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    let names_b: Vec<_> = b
        .iter()
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(names_a, names_b, "different entries");
    for ((p, sa), (_, sb)) in a.iter().zip(b.iter()) {
        assert_eq!(sa, sb, "entry {} differs", String::from_utf8_lossy(p));
    }
}

/// Like [`run_in`], with `stdin` fed to the child and the child in a new session without a
/// controlling terminal, so passphrase prompts read stdin (as in a script or cron job).
pub fn run_detached(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    env: &[(String, String)],
    stdin: &[u8],
) -> Output {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("BORG_REPO")
        .env_remove("BORG_PASSCOMMAND")
        .env_remove("BORG_PASSPHRASE")
        .env_remove("BORG_NEW_PASSPHRASE")
        .env_remove("BORG_DISPLAY_PASSPHRASE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setsid is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // the child may exit before reading everything
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Where a program is on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Python interpreter that runs real borg (its `#!` line), if it can import borg.
pub fn borg_python() -> Option<PathBuf> {
    let script = std::fs::read(find_on_path("borg")?).ok()?;
    let first = script.split(|&b| b == b'\n').next()?;
    let interpreter = std::str::from_utf8(first.strip_prefix(b"#!")?).ok()?.trim();
    let interpreter = PathBuf::from(interpreter.split_whitespace().next()?);
    let works = Command::new(&interpreter)
        .args(["-c", "import borg.helpers"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    works.then_some(interpreter)
}

/// Check the TAM of archive `name` in `repo` with borg's own key code (its HKDF key
/// derivation, the hmac over the stored plaintext with the hmac bytes zeroed). `None` when
/// borg's Python modules are not importable; else whether it verifies.
pub fn borg_verifies_archive_tam(
    repo: &Path,
    name: &str,
    cwd: &Path,
    env: &[(String, String)],
) -> Option<bool> {
    const SCRIPT: &str = r#"
import hmac, sys
from borg.repository import Repository
from borg.helpers import Manifest
from borg.helpers import msgpack
from borg.logger import setup_logging
setup_logging()
with Repository(sys.argv[1], exclusive=False) as repository:
    manifest, key = Manifest.load(repository, Manifest.NO_OPERATION_CHECK)
    archive_id = manifest.archives[sys.argv[2]].id
    data = key.decrypt(archive_id, repository.get(archive_id))
    meta = msgpack.unpackb(data)
    tam = meta[b'tam']
    assert meta[b'name'] == sys.argv[2].encode(), meta[b'name']
    buf = bytearray(data)
    at = buf.index(tam[b'hmac'])
    buf[at:at + 64] = bytes(64)
    expected = hmac.digest(key._tam_key(tam[b'salt'], b'archive'), bytes(buf), 'sha512')
    print('verified' if hmac.compare_digest(expected, tam[b'hmac']) else 'mismatch')
"#;
    let python = borg_python()?;
    let out = run_in(
        &python,
        &["-c", SCRIPT, &repo.display().to_string(), name],
        cwd,
        env,
    );
    assert!(out.status.success(), "TAM check script: {}", stderr(&out));
    Some(stdout(&out).trim() == "verified")
}

/// The stored (encrypted) form of object `id_hex` via `borg debug get-obj`; `None` if the
/// repository has no such object.
pub fn borg_get_obj(
    repo: &Path,
    id_hex: &str,
    cwd: &Path,
    env: &[(String, String)],
) -> Option<Vec<u8>> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = borg(
        &[
            "debug",
            "get-obj",
            &repo.display().to_string(),
            id_hex,
            &file.path().display().to_string(),
        ],
        cwd,
        env,
    );
    if !out.status.success() {
        // borg prints this on stdout
        let said = stdout(&out) + &stderr(&out);
        assert!(said.contains("not found"), "{said}");
        return None;
    }
    Some(std::fs::read(file.path()).unwrap())
}

/// Environment for borg/rborg runs with their own `BORG_BASE_DIR` (passphrase, UTC, no
/// prompts about unknown or moved repositories).
pub fn env_with_base(base: &Path) -> Vec<(String, String)> {
    vec![
        ("BORG_PASSPHRASE".into(), PASSPHRASE.into()),
        ("BORG_BASE_DIR".into(), base.display().to_string()),
        ("TZ".into(), "UTC".into()),
        (
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(),
            "yes".into(),
        ),
        ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "yes".into()),
    ]
}

/// `env` with one variable added or replaced.
pub fn with_var(env: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env.iter().filter(|(k, _)| k != name).cloned().collect();
    out.push((name.into(), value.into()));
    out
}

/// Seed for randomized tests: `$RBORG_TEST_SEED` or the clock (printed to replay a run).
pub fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("RBORG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: RBORG_TEST_SEED={seed}");
    seed
}

/// Add, change and remove files of a tree of random content under `root` (created if
/// missing): some files share content (deduplication), some span several chunks.
pub fn mutate_random_tree(root: &Path, rng: &mut rand::rngs::StdRng) {
    use rand::Rng;
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let shared: Vec<u8> = (0..rng.gen_range(1000..200_000))
        .map(|_| rng.gen())
        .collect();
    for i in 0..rng.gen_range(8..20) {
        let dir = if rng.gen_bool(0.3) {
            root.join("sub")
        } else {
            root.to_path_buf()
        };
        let name = dir.join(format!("f{}", rng.gen_range(0..30)));
        match rng.gen_range(0..10) {
            0 => {
                let _ = std::fs::remove_file(&name);
            }
            1..=3 => std::fs::write(&name, &shared).unwrap(),
            _ => {
                let size = if i % 5 == 0 {
                    rng.gen_range(100_000..3_000_000)
                } else {
                    rng.gen_range(0..20_000)
                };
                let data: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
                std::fs::write(&name, data).unwrap();
            }
        }
    }
}

/// The repository id (hex) from a local repository's `config`.
pub fn repo_id_hex(repo: &Path) -> String {
    let text = std::fs::read_to_string(repo.join("config")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("id = "))
        .unwrap()
        .trim()
        .to_string()
}

/// The chunks index of a cache dir (verified against its config), as a map.
pub fn cache_chunks(
    cache_dir: &Path,
) -> std::collections::HashMap<[u8; 32], rborg::hashindex::ChunkIndexEntry> {
    let config = rborg::cache::CacheConfig::load(cache_dir, "").unwrap();
    rborg::hashindex::ChunkIndex::read_path(
        &cache_dir.join("chunks"),
        config.integrity_of("chunks"),
        false,
    )
    .unwrap()
    .iter()
    .collect()
}

/// Files of a directory (recursively) with their contents, sorted by relative path.
pub fn dir_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
