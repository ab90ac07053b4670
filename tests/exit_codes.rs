//! The user's exit-code table (frontend guide "Message IDs", cli.md §13): every msgid maps to
//! its modern rc (rborg's default) and to borg 1.x's legacy rc (2 for errors, 1 for
//! warnings) under `BORG_EXIT_CODES=legacy`. Conditions a user can produce are triggered for
//! real through the binary (rc and the msgid of the `--log-json` record, in both modes);
//! every row is also checked through `rborg::errors`. Then: the final rc when several
//! warnings/errors occur, the `--show-rc` line in both modes (beside borg's), and a signal's
//! 128+N.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use rborg::errors::{Error, ErrorKind, ExitCodeMode, ExitStatus, WarningKind};
use serde_json::Value;

/// One row: msgid, modern rc, warning (true) or error.
type Row = (&'static str, i32, bool);

/// The user's table (seeds; cli.md §13.2/§13.3 adds the rows marked there as 1.4 additions:
/// `Repository.AtticRepository`, the TAM errors and the 1.4.5 extract warnings).
const TABLE: &[Row] = &[
    ("Error", 2, false),
    ("ErrorWithTraceback", 2, false),
    ("Buffer.MemoryLimitExceeded", 2, false),
    ("EfficientCollectionQueue.SizeUnderflow", 2, false),
    ("RTError", 2, false),
    ("CancelledByUser", 3, false),
    ("CommandError", 4, false),
    ("PlaceholderError", 5, false),
    ("InvalidPlaceholder", 6, false),
    ("Repository.AlreadyExists", 10, false),
    ("Repository.AtticRepository", 11, false),
    ("Repository.CheckNeeded", 12, false),
    ("Repository.DoesNotExist", 13, false),
    ("Repository.InsufficientFreeSpaceError", 14, false),
    ("Repository.InvalidRepository", 15, false),
    ("Repository.InvalidRepositoryConfig", 16, false),
    ("Repository.ObjectNotFound", 17, false),
    ("Repository.ParentPathDoesNotExist", 18, false),
    ("Repository.PathAlreadyExists", 19, false),
    ("Repository.StorageQuotaExceeded", 20, false),
    ("Repository.PathPermissionDenied", 21, false),
    ("MandatoryFeatureUnsupported", 25, false),
    ("NoManifestError", 26, false),
    ("UnsupportedManifestError", 27, false),
    ("Archive.AlreadyExists", 30, false),
    ("Archive.DoesNotExist", 31, false),
    ("Archive.IncompatibleFilesystemEncodingError", 32, false),
    ("KeyfileInvalidError", 40, false),
    ("KeyfileMismatchError", 41, false),
    ("KeyfileNotFoundError", 42, false),
    ("NotABorgKeyFile", 43, false),
    ("RepoKeyNotFoundError", 44, false),
    ("RepoIdMismatch", 45, false),
    ("UnencryptedRepo", 46, false),
    ("UnknownKeyType", 47, false),
    ("UnsupportedPayloadError", 48, false),
    ("UnsupportedKeyFormatError", 49, false),
    ("NoPassphraseFailure", 50, false),
    ("PasscommandFailure", 51, false),
    ("PassphraseWrong", 52, false),
    ("PasswordRetriesExceeded", 53, false),
    ("Cache.CacheInitAbortedError", 60, false),
    ("Cache.EncryptionMethodMismatch", 61, false),
    ("Cache.RepositoryAccessAborted", 62, false),
    ("Cache.RepositoryIDNotUnique", 63, false),
    ("Cache.RepositoryReplay", 64, false),
    ("LockError", 70, false),
    ("LockErrorT", 71, false),
    ("LockFailed", 72, false),
    ("LockTimeout", 73, false),
    ("NotLocked", 74, false),
    ("NotMyLock", 75, false),
    ("ConnectionClosed", 80, false),
    ("ConnectionClosedWithHint", 81, false),
    ("InvalidRPCMethod", 82, false),
    ("PathNotAllowed", 83, false),
    ("RemoteRepository.RPCServerOutdated", 84, false),
    ("UnexpectedRPCDataFormatFromClient", 85, false),
    ("UnexpectedRPCDataFormatFromServer", 86, false),
    ("ConnectionBrokenWithHint", 87, false),
    ("IntegrityError", 90, false),
    ("FileIntegrityError", 91, false),
    ("DecompressionError", 92, false),
    ("ArchiveTAMInvalid", 95, false),
    ("ArchiveTAMRequiredError", 96, false),
    ("TAMInvalid", 97, false),
    ("TAMRequiredError", 98, false),
    ("TAMUnsupportedSuiteError", 99, false),
    ("BorgWarning", 1, true),
    ("BackupWarning", 1, true),
    ("FileChangedWarning", 100, true),
    ("IncludePatternNeverMatchedWarning", 101, true),
    ("BackupError", 102, true),
    ("BackupRaceConditionError", 103, true),
    ("BackupOSError", 104, true),
    ("BackupPermissionError", 105, true),
    ("BackupIOError", 106, true),
    ("BackupFileNotFoundError", 107, true),
    ("BackupSymlinkParentError", 108, true),
    ("BackupPathTraversalError", 109, true),
    ("BackupHardlinkSourceError", 110, true),
];

const WARNING_KINDS: &[WarningKind] = &[
    WarningKind::Generic,
    WarningKind::FileChanged,
    WarningKind::IncludePatternNeverMatched,
    WarningKind::BackupError,
    WarningKind::BackupRaceCondition,
    WarningKind::BackupOSError,
    WarningKind::BackupPermissionError,
    WarningKind::BackupIOError,
    WarningKind::BackupFileNotFound,
    WarningKind::BackupSymlinkParent,
    WarningKind::BackupPathTraversal,
    WarningKind::BackupHardlinkSource,
];

/// The warning kind of a table row; borg's generic classes (`BorgWarning`, and
/// `BackupWarning`, which reports the class it wraps) are rborg's `Generic`.
fn warning_kind(msgid: &str) -> Option<WarningKind> {
    if msgid == "BorgWarning" || msgid == "BackupWarning" {
        return Some(WarningKind::Generic);
    }
    WARNING_KINDS
        .iter()
        .copied()
        .find(|k| k.msgid() == Some(msgid))
}

fn error_kind(msgid: &str) -> Option<ErrorKind> {
    ErrorKind::ALL.iter().copied().find(|k| k.msgid() == msgid)
}

#[test]
fn every_row_maps_to_its_codes_in_the_library() {
    for &(msgid, rc, warning) in TABLE {
        if warning {
            let kind = warning_kind(msgid).unwrap_or_else(|| panic!("no warning kind {msgid}"));
            assert_eq!(kind.modern_rc(), rc, "{msgid}");
            let mut status = ExitStatus::new();
            status.add_warning(kind.modern_rc());
            assert_eq!(status.final_rc(ExitCodeMode::Modern), rc, "{msgid}");
            assert_eq!(status.final_rc(ExitCodeMode::Legacy), 1, "{msgid}");
        } else {
            let kind = error_kind(msgid).unwrap_or_else(|| panic!("no error kind {msgid}"));
            assert_eq!(kind.modern_rc(), rc, "{msgid}");
            let e = Error::new(kind, ["x", "y", "z", "w"]);
            assert_eq!(e.msgid(), msgid);
            assert_eq!(e.exit_code(ExitCodeMode::Modern), rc, "{msgid}");
            assert_eq!(e.exit_code(ExitCodeMode::Legacy), 2, "{msgid}");
            let mut status = ExitStatus::new();
            status.set(rc);
            assert_eq!(status.final_rc(ExitCodeMode::Legacy), 2, "{msgid}");
        }
    }
    // ... and rborg has no class the table lacks (besides its own two catch-alls).
    let listed: BTreeSet<&str> = TABLE.iter().map(|r| r.0).collect();
    for kind in ErrorKind::ALL {
        if !matches!(kind, ErrorKind::Exception | ErrorKind::RPCError) {
            assert!(
                listed.contains(kind.msgid()),
                "{} not in the table",
                kind.msgid()
            );
        }
    }
    for kind in WARNING_KINDS {
        if let Some(msgid) = kind.msgid() {
            assert!(listed.contains(msgid), "{msgid} not in the table");
        }
    }
    // The unexpected-failure classes: rc 2 in both modes.
    for kind in [ErrorKind::Exception, ErrorKind::RPCError] {
        let e = Error::new(kind, ["boom"]);
        assert_eq!(e.exit_code(ExitCodeMode::Modern), 2);
        assert_eq!(e.exit_code(ExitCodeMode::Legacy), 2);
    }
}

/// The modern rc of a table row.
fn table_rc(msgid: &str) -> i32 {
    TABLE
        .iter()
        .find(|r| r.0 == msgid)
        .unwrap_or_else(|| panic!("{msgid} not in the table"))
        .1
}

fn is_warning(msgid: &str) -> bool {
    TABLE.iter().any(|r| r.0 == msgid && r.2)
}

/// Records of a `--log-json` stderr stream.
fn records(o: &Output) -> Vec<Value> {
    stderr(o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// msgids of the ERROR/WARNING `log_message`s of a run.
fn msgids(o: &Output) -> Vec<String> {
    records(o)
        .iter()
        .filter(|r| r["type"] == "log_message")
        .filter(|r| r["levelname"] == "ERROR" || r["levelname"] == "WARNING")
        .filter_map(|r| r["msgid"].as_str().map(String::from))
        .collect()
}

/// A scratch area with ready repositories: `rk` (repokey, archive `a`), `nr` (none,
/// archive `a`), `kf` (keyfile, keys in `keys`), `other` (repokey, another id).
struct Lab {
    s: Scratch,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab { s: Scratch::new() };
        let data = lab.s.work().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("file"), b"exit codes\n").unwrap();
        std::fs::write(data.join("sub/other"), b"more\n").unwrap();
        for (repo, mode) in [
            ("rk", "repokey"),
            ("nr", "none"),
            ("kf", "keyfile"),
            ("other", "repokey"),
        ] {
            ok(lab.run(&["init", "-e", mode, &lab.repo(repo)], &[]));
        }
        ok(lab.run(&["create", &format!("{}::a", lab.repo("rk")), "data"], &[]));
        ok(lab.run(&["create", &format!("{}::a", lab.repo("nr")), "data"], &[]));
        lab
    }

    fn path(&self) -> PathBuf {
        self.s.path()
    }

    fn repo(&self, name: &str) -> String {
        self.path().join("repos").join(name).display().to_string()
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = env_with_base(&self.s.base());
        env.push((
            "BORG_KEYS_DIR".into(),
            self.path().join("keys").display().to_string(),
        ));
        env
    }

    /// rborg in `work/` with the lab's environment plus `extra` (value "" removes).
    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut env = self.env();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        rborg(args, &self.s.work(), &env)
    }

    /// A copy of repository `name` (and its client state is shared: same id).
    fn copy(&self, name: &str, new: &str) -> String {
        let dst = self.path().join("repos").join(new);
        copy_tree(&self.path().join("repos").join(name), &dst);
        dst.display().to_string()
    }
}

/// How a condition is produced: args and env changes (the lab's repositories are ready).
struct Trigger {
    msgid: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// Run detached from any terminal with this stdin (passphrase prompts).
    stdin: Option<&'static [u8]>,
}

fn trigger(msgid: &'static str, args: &[&str]) -> Trigger {
    Trigger {
        msgid,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        stdin: None,
    }
}

impl Trigger {
    fn env(mut self, k: &'static str, v: impl ToString) -> Trigger {
        self.env.push((k, v.to_string()));
        self
    }

    fn stdin(mut self, input: &'static [u8]) -> Trigger {
        self.stdin = Some(input);
        self
    }

    fn run(&self, lab: &Lab, mode: &str) -> Output {
        let mut args = vec!["--log-json".to_string()];
        args.extend(self.args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut extra: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        extra.push(("BORG_EXIT_CODES", mode));
        match self.stdin {
            None => lab.run(&args, &extra),
            Some(input) => {
                let mut env = lab.env();
                for (k, v) in &extra {
                    env.retain(|(name, _)| name != k);
                    if !v.is_empty() {
                        env.push((k.to_string(), v.to_string()));
                    }
                }
                env.retain(|(k, _)| k != "BORG_PASSPHRASE");
                run_detached(&rborg_bin(), &args, &lab.s.work(), &env, input)
            }
        }
    }
}

/// Flip the key-type byte of the manifest object in the latest segment holding it and fix
/// the entry's CRC, so the envelope (not the segment) is what is wrong.
fn unknown_manifest_payload(repo: &Path) {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(repo.join("data/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_str().unwrap().parse().unwrap(), p))
        .collect();
    segments.sort();
    for (_, seg) in segments.iter().rev() {
        let mut bytes = std::fs::read(seg).unwrap();
        let mut at = 8; // after the magic
        let mut found = false;
        while at + 9 <= bytes.len() {
            let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            let tag = bytes[at + 8];
            // a PUT of the all-zero manifest id
            if tag == 0 && bytes[at + 9..at + 41].iter().all(|&b| b == 0) {
                bytes[at + 41] = 0x09;
                let crc = crc32fast::hash(&bytes[at + 4..at + size]);
                bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
                found = true;
            }
            at += size;
        }
        if found {
            std::fs::write(seg, bytes).unwrap();
            return;
        }
    }
    panic!("no manifest in {}", repo.display());
}

fn flip_middle_of_largest_segment(repo: &Path) {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(repo.join("data/0"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (std::fs::metadata(&p).unwrap().len(), p)
        })
        .collect();
    segments.sort();
    let (len, path) = segments.pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[len as usize / 2] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
}

/// Deterministic incompressible bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Whether reading `path` fails with `errno` here (procfs files give errors of each class).
fn read_fails_with(path: &str, errno: i32) -> bool {
    use std::io::Read;
    let result = std::fs::File::open(path).and_then(|mut f| f.read(&mut [0u8; 16]));
    matches!(result, Err(e) if e.raw_os_error() == Some(errno))
}

/// Produce every condition the CLI can produce here; returns the triggers.
fn triggers(lab: &Lab) -> Vec<Trigger> {
    let rk = lab.repo("rk");
    let nr = lab.repo("nr");
    let kf = lab.repo("kf");
    let at = |repo: &str, archive: &str| format!("{repo}::{archive}");
    let root = lab.path();
    let mut t = vec![
        trigger("Error", &["list", "ssh://host:notaport/repo"]),
        trigger("CancelledByUser", &["delete", &rk])
            .env("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "NO"),
        trigger(
            "CommandError",
            &["check", "--repository-only", "--verify-data", &rk],
        ),
        trigger(
            "PlaceholderError",
            &["create", &at(&rk, "{hostname:d}"), "data"],
        ),
        trigger(
            "InvalidPlaceholder",
            &["create", &at(&rk, "{nosuch}"), "data"],
        ),
        trigger("Repository.AlreadyExists", &["init", "-e", "none", &nr]),
    ];

    let attic = lab.copy("nr", "attic");
    let latest = std::fs::read_dir(Path::new(&attic).join("data/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .unwrap();
    let mut seg = std::fs::read(&latest).unwrap();
    seg[..8].copy_from_slice(b"ATTICSEG");
    std::fs::write(&latest, seg).unwrap();
    t.push(trigger("Repository.AtticRepository", &["list", &attic]));

    // an index but no segments at all: beyond the index's transaction
    let gutted = lab.copy("nr", "gutted");
    for e in std::fs::read_dir(Path::new(&gutted).join("data/0")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    t.push(trigger("Repository.CheckNeeded", &["list", &gutted]));
    let missing = root.join("no-such-repo").display().to_string();
    t.push(trigger("Repository.DoesNotExist", &["list", &missing]));

    let full = lab.copy("nr", "full");
    ok(lab.run(&["config", &full, "additional_free_space", "1000T"], &[]));
    t.push(trigger(
        "Repository.InsufficientFreeSpaceError",
        &["create", &at(&full, "b"), "data"],
    ));

    let plain = root.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("x"), b"not a repository").unwrap();
    let plain = plain.display().to_string();
    t.push(trigger("Repository.InvalidRepository", &["list", &plain]));

    let no_id = lab.copy("nr", "no-id");
    let config = std::fs::read_to_string(Path::new(&no_id).join("config")).unwrap();
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("id = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(Path::new(&no_id).join("config"), config).unwrap();
    t.push(trigger(
        "Repository.InvalidRepositoryConfig",
        &["list", &no_id],
    ));

    // the chunk of data/file removed: extract cannot fetch it
    let holed = lab.copy("nr", "holed");
    let id = stdout(&ok(lab.run(&["debug", "id-hash", &holed, "data/file"], &[])));
    ok(lab.run(&["debug", "delete-obj", &holed, id.trim()], &[]));
    t.push(trigger(
        "Repository.ObjectNotFound",
        &["extract", "--dry-run", &at(&holed, "a")],
    ));
    let orphan = root.join("no/parent/repo").display().to_string();
    t.push(trigger(
        "Repository.ParentPathDoesNotExist",
        &["init", "-e", "none", &orphan],
    ));
    t.push(trigger(
        "Repository.PathAlreadyExists",
        &["init", "-e", "none", &plain],
    ));

    let quota = lab.repo("quota");
    ok(lab.run(
        &["init", "-e", "none", "--storage-quota", "10M", &quota],
        &[],
    ));
    std::fs::create_dir_all(lab.s.work().join("big")).unwrap();
    std::fs::write(lab.s.work().join("big/noise"), noise(11 << 20)).unwrap();
    t.push(trigger(
        "Repository.StorageQuotaExceeded",
        &["create", &at(&quota, "big"), "big"],
    ));

    let no_manifest = lab.copy("nr", "no-manifest");
    ok(lab.run(&["debug", "delete-obj", &no_manifest, &"0".repeat(64)], &[]));
    t.push(trigger("NoManifestError", &["list", &no_manifest]));
    t.push(trigger(
        "Archive.AlreadyExists",
        &["create", &at(&rk, "a"), "data"],
    ));
    t.push(trigger("Archive.DoesNotExist", &["info", &at(&rk, "nope")]));

    let keys = root.join("keys");
    let key_file = std::fs::read_dir(&keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bad_keys = root.join("bad-keys");
    std::fs::create_dir_all(&bad_keys).unwrap();
    let text = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(bad_keys.join("kf"), &text[..text.len() / 2]).unwrap();
    t.push(trigger("KeyfileInvalidError", &["list", &kf]).env("BORG_KEYS_DIR", bad_keys.display()));
    let other_kf = lab.repo("other-kf");
    let other_keys = root.join("other-keys");
    ok(lab.run(
        &["init", "-e", "keyfile", &other_kf],
        &[("BORG_KEYS_DIR", other_keys.to_str().unwrap())],
    ));
    let other_key = std::fs::read_dir(&other_keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    t.push(
        trigger("KeyfileMismatchError", &["list", &kf]).env("BORG_KEY_FILE", other_key.display()),
    );
    let no_keys = root.join("no-keys");
    std::fs::create_dir_all(&no_keys).unwrap();
    t.push(trigger("KeyfileNotFoundError", &["list", &kf]).env("BORG_KEYS_DIR", no_keys.display()));

    let not_a_key = root.join("not-a-key.txt");
    std::fs::write(&not_a_key, b"hello\n").unwrap();
    t.push(trigger(
        "NotABorgKeyFile",
        &["key", "import", &rk, not_a_key.to_str().unwrap()],
    ));
    let keyless = lab.copy("rk", "keyless");
    let config = std::fs::read_to_string(Path::new(&keyless).join("config")).unwrap();
    let mut kept = String::new();
    let mut in_key = false;
    for line in config.lines() {
        in_key = line.starts_with("key = ") || (in_key && line.starts_with('\t'));
        if !in_key {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(Path::new(&keyless).join("config"), kept).unwrap();
    t.push(trigger("RepoKeyNotFoundError", &["list", &keyless]));
    let other_export = root.join("other.key").display().to_string();
    ok(lab.run(&["key", "export", &lab.repo("other"), &other_export], &[]));
    t.push(trigger(
        "RepoIdMismatch",
        &["key", "import", &rk, &other_export],
    ));
    t.push(trigger("UnencryptedRepo", &["key", "export", &nr]));
    let odd_payload = lab.copy("rk", "odd-payload");
    unknown_manifest_payload(Path::new(&odd_payload));
    t.push(trigger("UnsupportedPayloadError", &["list", &odd_payload]));

    t.push(trigger("NoPassphraseFailure", &["list", &rk]).stdin(b""));
    t.push(
        trigger("PasscommandFailure", &["list", &rk])
            .env("BORG_PASSPHRASE", "")
            .env("BORG_PASSCOMMAND", "false"),
    );
    t.push(trigger("PassphraseWrong", &["list", &rk]).env("BORG_PASSPHRASE", "wrong"));
    t.push(trigger("PasswordRetriesExceeded", &["list", &rk]).stdin(b"one\ntwo\nthree\n"));

    // client state: a fresh base dir meets the unencrypted repository for the first time
    let fresh = root.join("fresh-base").display().to_string();
    t.push(
        trigger("Cache.CacheInitAbortedError", &["list", &nr])
            .env("BORG_BASE_DIR", &fresh)
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "no"),
    );
    let swapped = lab.copy("rk", "swapped");
    let swapped_base = root.join("swapped-base");
    let swapped_env = [("BORG_BASE_DIR", swapped_base.to_str().unwrap())];
    ok(lab.run(&["list", &swapped], &swapped_env));
    let sec = swapped_base
        .join(".config/borg/security")
        .join(repo_id_hex(Path::new(&swapped)));
    std::fs::write(sec.join("key-type"), "2").unwrap();
    t.push(
        trigger("Cache.EncryptionMethodMismatch", &["list", &swapped])
            .env("BORG_BASE_DIR", swapped_base.display()),
    );
    let moved = lab.copy("rk", "moved");
    t.push(
        trigger("Cache.RepositoryAccessAborted", &["list", &moved])
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "no"),
    );
    // the security dir saw a newer manifest: for an unencrypted repository borg suspects
    // two repositories with one id, for an encrypted one a replay
    let future = "2999-01-01T00:00:00.000000";
    for (repo, msgid) in [
        ("nr", "Cache.RepositoryIDNotUnique"),
        ("rk", "Cache.RepositoryReplay"),
    ] {
        let base = root.join(format!("{repo}-future-base"));
        let env = [("BORG_BASE_DIR", base.to_str().unwrap())];
        ok(lab.run(&["list", &lab.repo(repo)], &env));
        let sec = base
            .join(".config/borg/security")
            .join(repo_id_hex(Path::new(&lab.repo(repo))));
        std::fs::write(sec.join("manifest-timestamp"), future).unwrap();
        t.push(trigger(msgid, &["list", &lab.repo(repo)]).env("BORG_BASE_DIR", base.display()));
    }

    // another host holds the lock (never stale from here)
    let locked = lab.copy("nr", "locked");
    std::fs::create_dir(Path::new(&locked).join("lock.exclusive")).unwrap();
    std::fs::write(
        Path::new(&locked).join("lock.exclusive/elsewhere.example@17.4242-0"),
        b"",
    )
    .unwrap();
    t.push(trigger(
        "LockTimeout",
        &["list", "--lock-wait", "1", &locked],
    ));

    // remote: the "ssh" is a shell command standing in for the connection
    let rborg_path = rborg_bin().display().to_string();
    t.push(
        trigger("ConnectionClosedWithHint", &["list", "ssh://host/repo"]).env("BORG_RSH", "false"),
    );
    t.push(
        trigger("PathNotAllowed", &["list", &format!("ssh://host{nr}")]).env(
            "BORG_RSH",
            format!("sh -c 'exec {rborg_path} serve --restrict-to-path /nowhere' ssh"),
        ),
    );
    t.push(
        trigger(
            "UnexpectedRPCDataFormatFromServer",
            &["list", "ssh://host/repo"],
        )
        .env("BORG_RSH", "sh -c 'echo a banner' ssh"),
    );

    let damaged = lab.copy("nr", "damaged");
    flip_middle_of_largest_segment(Path::new(&damaged));
    t.push(trigger(
        "IntegrityError",
        &["extract", "--dry-run", &at(&damaged, "a")],
    ));
    // warnings
    t.push(trigger(
        "IncludePatternNeverMatchedWarning",
        &["extract", "--dry-run", &at(&rk, "a"), "data/not-there"],
    ));
    for (path, errno, msgid) in [
        ("/proc/self/clear_refs", libc::EINVAL, "BackupOSError"),
        (
            "/proc/sys/vm/drop_caches",
            libc::EACCES,
            "BackupPermissionError",
        ),
        ("/proc/self/mem", libc::EIO, "BackupIOError"),
    ] {
        if read_fails_with(path, errno) {
            let name = format!("{}::w-{msgid}-{{now:%H%M%S%f}}", lab.repo("nr"));
            t.push(trigger(msgid, &["create", &name, path]));
        } else {
            skip(
                "exit_codes",
                &format!("{path} does not fail with errno {errno} here"),
            );
        }
    }
    let name = format!("{}::w-missing-{{now:%H%M%S%f}}", lab.repo("nr"));
    t.push(trigger(
        "BackupFileNotFoundError",
        &["create", &name, "data/not-there"],
    ));
    t
}

#[test]
fn conditions_produced_for_real_give_the_tables_codes() {
    let lab = Lab::new();
    let triggers = triggers(&lab);
    let mut produced = BTreeSet::new();
    for t in &triggers {
        let want = table_rc(t.msgid);
        let out = t.run(&lab, "modern");
        let what = format!("{} ({:?} {:?})", t.msgid, t.args, t.env);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{what}: modern rc\n{}",
            stderr(&out)
        );
        assert!(
            msgids(&out).iter().any(|m| m == t.msgid),
            "{what}: msgid not logged\n{}",
            stderr(&out)
        );
        let legacy = t.run(&lab, "legacy");
        let want = if is_warning(t.msgid) { 1 } else { 2 };
        assert_eq!(
            legacy.status.code(),
            Some(want),
            "{what}: legacy rc\n{}",
            stderr(&legacy)
        );
        assert!(
            msgids(&legacy).iter().any(|m| m == t.msgid),
            "{what}: legacy msgid"
        );
        produced.insert(t.msgid);
    }
    eprintln!(
        "produced for real: {} of {} rows; the others are checked through rborg::errors",
        produced.len(),
        TABLE.len()
    );
    assert!(produced.len() >= 45, "{produced:?}");
}

/// A repository of its own for the tests below: (scratch, repo path, env).
fn small_repo(mode: &str) -> (Scratch, String, Vec<(String, String)>) {
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo = s.path().join("repos/r").display().to_string();
    ok(rborg(&["init", "-e", mode, &repo], &s.work(), &env));
    std::fs::create_dir_all(s.work().join("data")).unwrap();
    std::fs::write(s.work().join("data/file"), b"content\n").unwrap();
    (s, repo, env)
}

fn rc(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed: {}", stderr(o)))
}

/// Back up a file another thread keeps appending to, until the change is noticed (a few
/// tries; the read must overlap a write). `None` if it never was.
fn backup_of_a_changing_file(s: &Scratch, repo: &str, env: &[(String, String)]) -> Option<Output> {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    let file = s.work().join("growing/file");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, noise(16 << 20)).unwrap();
    for attempt in 0..4 {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let file = file.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    f.write_all(b"x").unwrap();
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        };
        let name = format!("{repo}::changing-{attempt}-{{now:%H%M%S%f}}");
        let out = rborg(&["--log-json", "create", &name, "growing"], &s.work(), env);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        if msgids(&out).iter().any(|m| m == "FileChangedWarning") {
            return Some(out);
        }
    }
    None
}

#[test]
fn a_file_changed_during_backup_is_warning_100() {
    let (s, repo, env) = small_repo("none");
    for (mode, want) in [("modern", 100), ("legacy", 1)] {
        let env = with_var(&env, "BORG_EXIT_CODES", mode);
        let Some(out) = backup_of_a_changing_file(&s, &repo, &env) else {
            skip(
                "a_file_changed_during_backup_is_warning_100",
                "the change was never caught while the file was read",
            );
            return;
        };
        assert_eq!(rc(&out), want, "{mode}: {}", stderr(&out));
        let rec = records(&out)
            .into_iter()
            .find(|r| r["msgid"] == "FileChangedWarning")
            .unwrap();
        assert_eq!(
            rec["message"],
            "growing/file: file changed while we backed it up"
        );
        assert_eq!(rec["levelname"], "WARNING");
    }
}

#[test]
fn the_final_rc_follows_borgs_severity_rules() {
    let (s, repo, env) = small_repo("none");
    let run = |mode: &str, args: &[&str]| {
        let mut full = vec!["--log-json"];
        full.extend_from_slice(args);
        rborg(&full, &s.work(), &with_var(&env, "BORG_EXIT_CODES", mode))
    };
    let archive = |n: &str| format!("{repo}::{n}");
    // the same warning twice: its code; legacy 1
    for (mode, want) in [("modern", 107), ("legacy", 1)] {
        let out = run(
            mode,
            &[
                "create",
                &archive(&format!("same-{mode}")),
                "data",
                "nope1",
                "nope2",
            ],
        );
        assert_eq!(rc(&out), want, "{mode}: {}", stderr(&out));
        assert_eq!(msgids(&out), ["BackupFileNotFoundError"; 2]);
    }
    // different warning codes: the generic warning code 1
    if read_fails_with("/proc/self/mem", libc::EIO) {
        for mode in ["modern", "legacy"] {
            let name = archive(&format!("mixed-{mode}"));
            let out = run(mode, &["create", &name, "nope", "/proc/self/mem"]);
            assert_eq!(rc(&out), 1, "{mode}: {}", stderr(&out));
            let mut ids = msgids(&out);
            ids.sort();
            assert_eq!(ids, ["BackupFileNotFoundError", "BackupIOError"]);
        }
    } else {
        skip(
            "the_final_rc_follows_borgs_severity_rules",
            "/proc/self/mem is readable here",
        );
    }
    // a warning, then an error that ends the command: the error's code
    let quota = s.path().join("repos/quota").display().to_string();
    ok(rborg(
        &["init", "-e", "none", "--storage-quota", "10M", &quota],
        &s.work(),
        &env,
    ));
    std::fs::create_dir_all(s.work().join("big")).unwrap();
    std::fs::write(s.work().join("big/noise"), noise(11 << 20)).unwrap();
    for (mode, want) in [("modern", 20), ("legacy", 2)] {
        let name = format!("{quota}::over-{mode}");
        let out = run(mode, &["create", &name, "nope", "big"]);
        assert_eq!(rc(&out), want, "{mode}: {}", stderr(&out));
        assert_eq!(
            msgids(&out),
            ["BackupFileNotFoundError", "Repository.StorageQuotaExceeded"]
        );
    }
    // an unmatched extract PATH alone: 101
    let out = run(
        "modern",
        &["extract", "--dry-run", &archive("same-modern"), "not/there"],
    );
    assert_eq!(rc(&out), 101, "{}", stderr(&out));
}

/// The `--show-rc` line (text: last stderr line; JSON: last record).
fn show_rc_line(o: &Output) -> String {
    stderr(o).lines().last().unwrap_or("").to_string()
}

#[test]
fn show_rc_line_in_both_modes_like_borg() {
    let (s, repo, env) = small_repo("none");
    let missing = s.path().join("missing").display().to_string();
    let with_borg = borg_or_skip("show_rc_line_in_both_modes_like_borg (borg comparison)");
    let borg_env = env_with_base(&s.path().join("borg-base"));
    // (args, modern line, legacy line)
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["list".into(), repo.clone()],
            "terminating with success status, rc 0",
            "terminating with success status, rc 0",
        ),
        (
            vec![
                "create".into(),
                format!("{repo}::w-{{now:%H%M%S%f}}"),
                "data".into(),
                "nope".into(),
            ],
            "terminating with warning status, rc 107",
            "terminating with warning status, rc 1",
        ),
        (
            vec!["list".into(), missing],
            "terminating with error status, rc 13",
            "terminating with error status, rc 2",
        ),
    ];
    for (args, modern, legacy) in &cases {
        let mut full: Vec<&str> = vec!["--show-rc"];
        full.extend(args.iter().map(String::as_str));
        let out = rborg(&full, &s.work(), &env);
        assert_eq!(show_rc_line(&out), *modern, "{args:?}");
        let out = rborg(
            &full,
            &s.work(),
            &with_var(&env, "BORG_EXIT_CODES", "legacy"),
        );
        assert_eq!(show_rc_line(&out), *legacy, "{args:?}");
        if with_borg {
            let theirs = borg(&full, &s.work(), &borg_env);
            assert_eq!(show_rc_line(&theirs), *legacy, "borg {args:?}");
        }
        // --log-json: a log_message of borg.output.show-rc, level by class
        full.insert(0, "--log-json");
        let out = rborg(&full, &s.work(), &env);
        let rec: Value = serde_json::from_str(&show_rc_line(&out)).unwrap();
        assert_eq!(rec["type"], "log_message");
        assert_eq!(rec["name"], "borg.output.show-rc");
        assert_eq!(rec["message"], *modern);
        let level = match rc(&out) {
            0 => "INFO",
            1 | 100..=127 => "WARNING",
            _ => "ERROR",
        };
        assert_eq!(rec["levelname"], level);
        assert!(rec.get("msgid").is_none());
    }
}

/// Start `create REPO::sig -` (reading a stdin that stays open), SIGTERM it once it holds the
/// lock; returns its output.
fn terminated_backup(program: &Path, repo: &str, cwd: &Path, env: &[(String, String)]) -> Output {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(program);
    cmd.args([
        "--log-json",
        "--show-rc",
        "create",
        &format!("{repo}::sig"),
        "-",
    ])
    .current_dir(cwd)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take();
    let started = std::time::Instant::now();
    while !Path::new(repo).join("lock.exclusive").exists() {
        assert!(started.elapsed().as_secs() < 30, "the lock was never taken");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    out
}

#[test]
fn sigterm_during_a_backup_is_rc_143_as_borg() {
    let (s, repo, env) = small_repo("none");
    let mut outputs = vec![(
        "rborg modern",
        terminated_backup(&rborg_bin(), &repo, &s.work(), &env),
    )];
    let legacy = with_var(&env, "BORG_EXIT_CODES", "legacy");
    outputs.push((
        "rborg legacy",
        terminated_backup(&rborg_bin(), &repo, &s.work(), &legacy),
    ));
    if borg_or_skip("sigterm_during_a_backup_is_rc_143_as_borg (borg comparison)") {
        let borg_env = env_with_base(&s.path().join("borg-base"));
        outputs.push((
            "borg",
            terminated_backup(Path::new("borg"), &repo, &s.work(), &borg_env),
        ));
    }
    for (who, out) in &outputs {
        assert_eq!(out.status.code(), Some(143), "{who}: {}", stderr(out));
        let recs = records(out);
        let error = recs
            .iter()
            .find(|r| r["levelname"] == "ERROR" && r["name"] == "borg.archiver")
            .unwrap_or_else(|| panic!("{who}: {}", stderr(out)));
        assert_eq!(error["message"], "Received SIGTERM", "{who}");
        assert_eq!(error["msgid"], "Signal.SIGTERM", "{who}");
        let last = recs.last().unwrap();
        assert_eq!(
            last["message"], "terminating with signal status, rc 143",
            "{who}"
        );
        assert_eq!(last["levelname"], "ERROR");
        assert!(
            !Path::new(&repo).join("lock.exclusive").exists(),
            "{who}: lock left"
        );
    }
}
