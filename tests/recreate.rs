//! `rborg recreate` against real borg 1.2.4: on copies of the same repository borg and rborg
//! recreate archives with the same options; the results must have the same items, statistics
//! and chunk compression, pass `borg check --verify-data`, extract (with borg and rborg) to
//! the expected tree, and leave a cache whose reference counts match the repository.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use serde_json::Value;

use rborg::archive::item::{ChunkRef, Item};
use rborg::archive::{Archive, ArchiveMeta, Manifest};
use rborg::crypto::{open_key_with, Key, PassphraseEnv};
use rborg::repository::local::LocalRepository;
use rborg::repository::Repository;

use common::*;

/// Passphrase (and keys dir) without touching the process environment.
struct Secrets {
    keys_dir: Option<String>,
}

impl PassphraseEnv for Secrets {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "BORG_PASSPHRASE" => Some(PASSPHRASE.to_string()),
            "BORG_KEYS_DIR" => self.keys_dir.clone(),
            _ => None,
        }
    }
    fn getpass(&self, _: &str) -> Option<String> {
        None
    }
    fn read_line(&self) -> Option<String> {
        None
    }
    fn write_stderr(&self, text: &str) {
        eprint!("{text}");
    }
}

/// A repository read through rborg's library (no lock, nothing written).
struct RepoView {
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
    manifest: Manifest,
}

impl RepoView {
    fn open(path: &Path, keys_dir: Option<&Path>) -> RepoView {
        let repo: Arc<dyn Repository> =
            Arc::new(LocalRepository::open(path, false, 1.0, false, false).unwrap());
        let stored = Manifest::fetch(repo.as_ref()).unwrap();
        let secrets = Secrets {
            keys_dir: keys_dir.map(|d| d.display().to_string()),
        };
        let key = Arc::new(open_key_with(repo.as_ref(), &stored, &secrets).unwrap());
        let manifest = Manifest::decode(repo.as_ref(), &key, &stored, &[]).unwrap();
        RepoView {
            repo,
            key,
            manifest,
        }
    }

    fn names(&self) -> BTreeSet<String> {
        self.manifest
            .archives
            .iter()
            .map(|a| String::from_utf8_lossy(&a.name).into_owned())
            .collect()
    }

    /// The archive, its TAM not checked: borg 1.2.4 renames (and so replaces) an archive
    /// keeping the TAM of its old metadata, which no longer verifies.
    fn archive(&self, name: &str) -> Archive {
        let id = self.manifest.get_archive(name).unwrap().id;
        let stored = self.repo.get(&id).unwrap();
        let plain = self.key.decrypt(Some(&id), &stored).unwrap();
        let meta = ArchiveMeta::from_value(rborg::msgpack::unpack(&plain).unwrap()).unwrap();
        Archive {
            id,
            meta,
            tam_verified: false,
            stored_len: stored.len(),
            plain_len: plain.len(),
        }
    }

    fn meta(&self, name: &str) -> ArchiveMeta {
        self.archive(name).meta
    }

    fn items(&self, name: &str) -> Vec<Item> {
        self.archive(name)
            .items(self.repo.clone(), self.key.clone())
            .map(|i| i.unwrap())
            .collect()
    }

    /// How many distinct data chunks of an archive are stored with each algorithm.
    fn compressions(&self, name: &str) -> BTreeMap<&'static str, usize> {
        let ids: BTreeSet<[u8; 32]> = self
            .items(name)
            .iter()
            .flat_map(|i| i.chunks.clone().unwrap_or_default())
            .map(|c| c.id)
            .collect();
        let mut counts = BTreeMap::new();
        for id in ids {
            let stored = self.repo.get(&id).unwrap();
            let payload = self.key.decrypt_payload(Some(&id), &stored).unwrap();
            let algo = rborg::compress::detect(&payload).unwrap_or("?");
            *counts.entry(algo).or_insert(0) += 1;
        }
        counts
    }
}

/// Items with the stored chunk sizes blanked (lz4 implementations differ in output size).
fn comparable(items: Vec<Item>) -> Vec<Item> {
    let blank = |c: &mut Vec<ChunkRef>| c.iter_mut().for_each(|r| r.csize = 0);
    items
        .into_iter()
        .map(|mut i| {
            i.chunks.as_mut().map(blank);
            i.chunks_healthy.as_mut().map(blank);
            i
        })
        .collect()
}

/// A scratch dir with input data, a repository made by real borg and its base dir.
struct Setup {
    dir: tempfile::TempDir,
}

const CACHE_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n";

impl Setup {
    /// `src/data` (see [`make_tree`]), then borg: `init -e repokey-blake2`, archive `a1`
    /// (lz4) and `a2` (zstd,3, all chunks shared with `a1`).
    fn new(test: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("rborg-recreate")
            .tempdir()
            .unwrap();
        let s = Setup { dir };
        make_tree(&s.path().join("src"), test_seed(test));
        let env = s.env_of(&s.path());
        let repo = path_arg(&s.path().join("repo"));
        ok(borg(
            &["init", "-e", "repokey-blake2", &repo],
            &s.path(),
            &env,
        ));
        let src = s.path().join("src");
        ok(borg(
            &["create", &format!("{repo}::a1"), "data"],
            &src,
            &env,
        ));
        ok(borg(
            &["create", "-C", "zstd,3", &format!("{repo}::a2"), "data"],
            &src,
            &env,
        ));
        s
    }

    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn data(&self) -> PathBuf {
        self.path().join("src/data")
    }

    /// Environment with `<dir>/base` as BORG_BASE_DIR.
    fn env_of(&self, dir: &Path) -> Vec<(String, String)> {
        env_with_base(&dir.join("base"))
    }

    /// Copy the repository to `<name>/repo` (its base dir starts empty: no relocation
    /// question); returns `<name>`.
    fn copy(&self, name: &str) -> PathBuf {
        let dst = self.path().join(name);
        std::fs::create_dir(&dst).unwrap();
        copy_tree(&self.path().join("repo"), &dst.join("repo"));
        dst
    }
}

/// `borg` or `rborg` of `common`.
type Tool = fn(&[&str], &Path, &[(String, String)]) -> std::process::Output;

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// The input tree `<parent>/data`: random and text files (some multi-chunk with small
/// chunker params), zeros, an empty file, a symlink, a hardlink across directories, a cache
/// dir and a dir tagged with `.nobackup`.
fn make_tree(parent: &Path, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = parent.join("data");
    let write = |rel: &str, content: &[u8]| {
        let p = data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    let random: Vec<u8> = (0..600_000).map(|_| rng.gen()).collect();
    write("sub/rand.bin", &random);
    write("sub/zeros.bin", &vec![0u8; 300_000]);
    let text: String = (0..12_000)
        .map(|i| format!("line {i} {}\n", rng.gen_range(0..1000)))
        .collect();
    write("text.txt", text.as_bytes());
    write("empty", b"");
    // created first: the lower inode, met first by borg, is the hardlink master
    write("a_dir/master.txt", &text.as_bytes()[..5000]);
    std::fs::create_dir_all(data.join("z_dir")).unwrap();
    std::fs::hard_link(data.join("a_dir/master.txt"), data.join("z_dir/link.txt")).unwrap();
    std::os::unix::fs::symlink("text.txt", data.join("link")).unwrap();
    write("cache/CACHEDIR.TAG", CACHE_TAG);
    write("cache/junk", b"cached junk");
    write("tagged/.nobackup", b"");
    write("tagged/secret", b"not for the backup");
}

/// Copy `data` to `<dest>/data` without `removed` (relative paths), directory times kept.
fn expected_tree(data: &Path, dest: &Path, removed: &[&str]) -> PathBuf {
    let out = dest.join("data");
    std::fs::create_dir_all(dest).unwrap();
    copy_tree(data, &out);
    for r in removed {
        let p = out.join(r);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    for (rel, _) in snapshot(&out).iter().filter(|(_, st)| st.kind == "dir") {
        let rel = std::str::from_utf8(rel).unwrap();
        let mtime = std::fs::metadata(data.join(rel))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::open(out.join(rel))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    out
}

/// `borg info --json` of one archive.
fn borg_info(dir: &Path, archive: &str) -> Value {
    let env = env_with_base(&dir.join("base"));
    let out = ok(borg(
        &[
            "info",
            "--json",
            &format!("{}::{archive}", path_arg(&dir.join("repo"))),
        ],
        dir,
        &env,
    ));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["archives"][0].clone()
}

/// The fields of `info --json` that borg's and rborg's results must share.
fn info_summary(v: &Value) -> Value {
    let stats = &v["stats"];
    serde_json::json!({
        "name": v["name"],
        "original_size": stats["original_size"],
        "nfiles": stats["nfiles"],
        "chunker_params": v["chunker_params"],
        "comment": v["comment"],
        "start": v["start"],
        "command_line": v["command_line"],
        "hostname": v["hostname"],
        "username": v["username"],
    })
}

/// Run `args` (with `REPO` standing for the repository) through borg on one copy and rborg
/// on another; returns both dirs.
fn recreate_both(s: &Setup, label: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let (b, r, _, _) = recreate_both_output(s, label, args);
    (b, r)
}

/// [`recreate_both`], also returning borg's and rborg's stderr.
fn recreate_both_output(
    s: &Setup,
    label: &str,
    args: &[&str],
) -> (PathBuf, PathBuf, String, String) {
    let b = s.copy(&format!("{label}-borg"));
    let r = s.copy(&format!("{label}-rborg"));
    let with_repo = |dir: &Path| -> Vec<String> {
        let repo = path_arg(&dir.join("repo"));
        args.iter().map(|a| a.replace("REPO", &repo)).collect()
    };
    let b_args = with_repo(&b);
    let r_args = with_repo(&r);
    let mut b_cmd = vec!["recreate"];
    b_cmd.extend(b_args.iter().map(String::as_str));
    let mut r_cmd = vec!["recreate"];
    r_cmd.extend(r_args.iter().map(String::as_str));
    let b_out = stderr(&ok(borg(&b_cmd, &b, &s.env_of(&b))));
    let r_out = stderr(&ok(rborg(&r_cmd, &r, &s.env_of(&r))));
    (b, r, b_out, r_out)
}

/// A `--stats` block with what depends on the run (paths, ids, times, sizes) replaced.
fn stats_shape(text: &str, dir: &Path) -> Vec<String> {
    let start = text.find("-----").expect("a stats block");
    text[start..]
        .replace(&path_arg(dir), "<DIR>")
        .lines()
        .map(|l| match l.split_once(':') {
            Some((label, _))
                if [
                    "Archive fingerprint",
                    "Time (start)",
                    "Time (end)",
                    "Duration",
                ]
                .contains(&label)
                    || label.ends_with(" archive")
                    || label == "All archives" =>
            {
                format!("{label}: …")
            }
            _ => l.to_string(),
        })
        .collect()
}

/// borg's and rborg's results agree on `archive`: items, statistics, metadata, compression
/// (and the end time unless `--timestamp` made it depend on the run's duration).
fn assert_same_result(b: &Path, r: &Path, archive: &str, timestamped: bool) {
    let bv = RepoView::open(&b.join("repo"), None);
    let rv = RepoView::open(&r.join("repo"), None);
    assert_eq!(rv.names(), bv.names());
    assert_eq!(
        comparable(rv.items(archive)),
        comparable(bv.items(archive)),
        "items of {archive}"
    );
    assert_eq!(
        rv.compressions(archive),
        bv.compressions(archive),
        "chunk compression of {archive}"
    );
    let (bm, rm) = (bv.meta(archive), rv.meta(archive));
    if !timestamped {
        assert_eq!(rm.time_end, bm.time_end);
    }
    assert!(rm.recreate_cmdline.is_some() && bm.recreate_cmdline.is_some());
    assert_eq!(
        info_summary(&borg_info(r, archive)),
        info_summary(&borg_info(b, archive)),
        "info of {archive}"
    );
}

/// `borg check --verify-data` finds nothing (no orphans either), and rborg's cache has the
/// reference counts a fresh synchronisation computes.
fn assert_consistent(dir: &Path) {
    let env = env_with_base(&dir.join("base"));
    let repo = path_arg(&dir.join("repo"));
    let out = ok(borg(&["check", "-v", "--verify-data", &repo], dir, &env));
    let report = stderr(&out);
    assert!(
        report.contains("with 0 integrity errors.")
            && report.contains("Archive consistency check complete, no problems found."),
        "{report}"
    );
    let id = repo_id_hex(&dir.join("repo"));
    let kept = cache_chunks(&dir.join("base/.cache/borg").join(&id));
    let fresh_base = dir.join("fresh-base");
    ok(rborg(&["info", &repo], dir, &env_with_base(&fresh_base)));
    let fresh = cache_chunks(&fresh_base.join(".cache/borg").join(&id));
    // (a sync takes stored sizes from the archives' chunk lists: after recompression those
    // of other archives still name the old size)
    let refs = |m: std::collections::HashMap<[u8; 32], rborg::hashindex::ChunkIndexEntry>| {
        m.into_iter()
            .map(|(id, e)| (id, (e.refcount, e.size)))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        refs(kept),
        refs(fresh),
        "cache after recreate vs. a fresh sync"
    );
}

/// borg and rborg both extract `archive` of `<dir>/repo` to `expected`.
fn assert_extracts(dir: &Path, archive: &str, expected: &Path) {
    let env = env_with_base(&dir.join("base"));
    let location = format!("{}::{archive}", path_arg(&dir.join("repo")));
    for (tool, run) in [("borg", borg as Tool), ("rborg", rborg)] {
        let out = dir.join(format!("extract-{tool}-{archive}"));
        std::fs::create_dir(&out).unwrap();
        ok(run(&["extract", &location], &out, &env));
        assert_same_tree(expected, &out.join("data"));
    }
}

#[test]
fn recompress_and_rechunk_like_borg() {
    let test = "recompress_and_rechunk_like_borg";
    if !borg_or_skip(test) {
        return;
    }
    let s = Setup::new(test);
    let scenarios: [(&str, &[&str]); 4] = [
        ("zstd", &["REPO::a1", "--recompress", "-C", "zstd,3"]),
        (
            "none",
            &["REPO::a1", "--recompress", "always", "-C", "none"],
        ),
        (
            "buzhash",
            &["REPO::a1", "--chunker-params", "buzhash,10,23,16,4095"],
        ),
        ("fixed", &["REPO::a1", "--chunker-params", "fixed,4194304"]),
    ];
    for (label, args) in scenarios {
        let (b, r) = recreate_both(&s, label, args);
        assert_same_result(&b, &r, "a1", false);
        assert_consistent(&r);
        assert_extracts(&r, "a1", &s.data());
    }
    // the compression each one asked for
    let view = |label: &str| RepoView::open(&s.path().join(label).join("repo"), None);
    let zstd = view("zstd-rborg").compressions("a1");
    assert!(
        zstd.contains_key("zstd") && !zstd.contains_key("lz4"),
        "{zstd:?}"
    );
    let none = view("none-rborg").compressions("a1");
    assert_eq!(none.into_keys().collect::<Vec<_>>(), vec!["none"]);
    let meta = view("fixed-rborg").meta("a1");
    assert_eq!(
        rborg::chunker::ChunkerParams::from_value(&meta.chunker_params.unwrap()).unwrap(),
        rborg::chunker::ChunkerParams::Fixed {
            block: 4194304,
            header: 0
        }
    );
}

#[test]
fn excludes_and_tags_like_borg() {
    let test = "excludes_and_tags_like_borg";
    if !borg_or_skip(test) {
        return;
    }
    let s = Setup::new(test);
    let args = [
        "--list",
        "REPO::a1",
        "-e",
        "data/sub",
        "-e",
        "data/a_dir",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--keep-exclude-tags",
    ];
    let (b, r) = recreate_both(&s, "excl", &args);
    assert_same_result(&b, &r, "a1", false);
    assert_consistent(&r);
    let expected = expected_tree(
        &s.data(),
        &s.path().join("expected"),
        &["sub", "a_dir", "cache/junk", "tagged/secret"],
    );
    assert_extracts(&r, "a1", &expected);
    // the link took over the content of its excluded master
    let items = RepoView::open(&r.join("repo"), None).items("a1");
    let link = items
        .iter()
        .find(|i| i.path == b"data/z_dir/link.txt")
        .unwrap();
    assert!(link.source.is_none() && link.chunks.is_some());

    // --list: the same lines as borg (status letters, `x` for excluded items)
    let list = |tool: Tool, dir: &Path| {
        let repo = path_arg(&dir.join("repo"));
        let mut a = vec![
            "recreate".to_string(),
            "--list".into(),
            format!("{repo}::a2"),
        ];
        a.extend(["-e", "data/sub", "--exclude-caches"].map(String::from));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        stderr(&ok(tool(&a, dir, &env_with_base(&dir.join("base")))))
    };
    let listed = list(rborg, &r);
    assert_eq!(listed, list(borg, &b));
    assert!(listed.contains("x data/sub/rand.bin\n") && listed.contains("A data/text.txt\n"));
}

#[test]
fn dry_run_changes_nothing() {
    let test = "dry_run_changes_nothing";
    if !borg_or_skip(test) {
        return;
    }
    let s = Setup::new(test);
    let (b, r) = (s.copy("b"), s.copy("r"));
    let before = dir_contents(&r.join("repo"));
    let run = |tool: Tool, dir: &Path| {
        let repo = path_arg(&dir.join("repo"));
        let archive = format!("{repo}::a1");
        let args = [
            "recreate",
            "--dry-run",
            "--list",
            "--stats",
            &archive,
            "-e",
            "data/sub",
            "--recompress",
            "-C",
            "zstd,3",
            "--chunker-params",
            "fixed,4096",
            "--comment",
            "c",
        ];
        let out = ok(tool(&args, dir, &env_with_base(&dir.join("base"))));
        (stdout(&out), stderr(&out))
    };
    let ours = run(rborg, &r);
    assert_eq!(ours, run(borg, &b));
    assert!(ours.1.contains("x data/sub\n") && ours.1.contains("- data/text.txt\n"));
    assert_eq!(dir_contents(&r.join("repo")), before, "repository changed");
    // the whole repository too
    let repo = path_arg(&r.join("repo"));
    ok(rborg(
        &["recreate", "-n", &repo, "--recompress", "-C", "none"],
        &r,
        &s.env_of(&r),
    ));
    assert_eq!(dir_contents(&r.join("repo")), before, "repository changed");
}

#[test]
fn target_comment_and_timestamp_like_borg() {
    let test = "target_comment_and_timestamp_like_borg";
    if !borg_or_skip(test) {
        return;
    }
    let s = Setup::new(test);
    let original = RepoView::open(&s.path().join("repo"), None);
    let a1_id = original.manifest.lookup(b"a1").unwrap().id;
    let args = [
        "REPO::a1",
        "--target",
        "t1",
        "--comment",
        "new comment",
        "--timestamp",
        "2021-02-03T04:05:06",
        "--stats",
        "--info",
    ];
    let (b, r, b_out, r_out) = recreate_both_output(&s, "target", &args);
    assert_same_result(&b, &r, "t1", true);
    // borg's --stats block (shown with --info): same lines but the run's numbers
    let shape = stats_shape(&r_out, &r);
    assert_eq!(shape, stats_shape(&b_out, &b));
    assert!(shape.contains(&"Archive name: t1".to_string()), "{shape:?}");
    assert!(
        shape.contains(&"Number of files: 9".to_string()),
        "{shape:?}"
    );
    let view = RepoView::open(&r.join("repo"), None);
    assert_eq!(view.names(), ["a1", "a2", "t1"].map(String::from).into());
    // the original is untouched
    assert_eq!(view.manifest.lookup(b"a1").unwrap().id, a1_id);
    let info = borg_info(&r, "t1");
    assert_eq!(info["comment"], "new comment");
    assert_eq!(info["start"], "2021-02-03T04:05:06.000000");
    assert!(info["end"].as_str().unwrap() >= "2021-02-03T04:05:06");
    assert_eq!(info["command_line"], borg_info(&r, "a1")["command_line"]);
    let meta = view.meta("t1");
    assert!(meta.recreate_cmdline.unwrap()[0].ends_with(b"rborg"));
    assert_consistent(&r);
    assert_extracts(&r, "t1", &s.data());

    // in place: a new id, the times kept, the archive count the same
    let (b, r) = recreate_both(&s, "inplace", &["REPO::a2", "--comment", "x"]);
    assert_same_result(&b, &r, "a2", false);
    let after = RepoView::open(&r.join("repo"), None);
    assert_eq!(after.names(), ["a1", "a2"].map(String::from).into());
    let old = original.manifest.lookup(b"a2").unwrap();
    let new = after.manifest.lookup(b"a2").unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(new.ts, old.ts);
    assert_eq!(after.meta("a2").time_end, original.meta("a2").time_end);
    assert_eq!(after.meta("a2").comment, b"x");
    assert_consistent(&r);
}

#[test]
fn refusals_and_repository_runs() {
    let test = "refusals_and_repository_runs";
    if !borg_or_skip(test) {
        return;
    }
    let s = Setup::new(test);
    let dir = s.copy("r");
    let env = s.env_of(&dir);
    let repo = path_arg(&dir.join("repo"));
    let fails = |args: &[&str], rc: i32, msg: &str| {
        let out = rborg(args, &dir, &env);
        assert_eq!(out.status.code(), Some(rc), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    };
    let a1 = format!("{repo}::a1");
    fails(
        &["recreate", &a1],
        4,
        "Command Error: Nothing to do. Archive was not processed.\nSpecify at least one pattern, PATH, --comment, re-compression or re-chunking option.\n",
    );
    fails(
        &[
            "recreate",
            &format!("{repo}::a1.recreate"),
            "--comment",
            "x",
        ],
        4,
        "Refusing to work on temporary archive of prior recreate: a1.recreate",
    );
    fails(
        &["recreate", &repo, "--target", "x", "--comment", "x"],
        4,
        "--target: Need to specify single archive",
    );
    fails(
        &["recreate", &a1, "--target", "a2"],
        30,
        "Archive a2 already exists",
    );
    fails(
        &["recreate", &format!("{repo}::nope"), "--comment", "x"],
        31,
        "Archive nope does not exist",
    );
    fails(
        &["recreate", &a1, "-C", "zstd,99"],
        2,
        "invalid CompressionSpec value: 'zstd,99'",
    );

    // a leftover temporary is skipped by a repository run; nothing to do is reported per archive
    ok(rborg(
        &["recreate", &a1, "--target", "gone.recreate"],
        &dir,
        &env,
    ));
    let out = ok(rborg(&["recreate", "-v", &repo], &dir, &env));
    assert_eq!(stdout(&out), "Processing a1\nProcessing a2\n");
    assert!(stderr(&out).contains(
        "Skipped archive a1: Nothing to do. Archive was not processed.\n\
         Skipped archive a2: Nothing to do. Archive was not processed.\n"
    ));
    // ... but one named like an archive's temporary blocks recreating it, as in borg
    ok(rborg(
        &["recreate", &a1, "--target", "a2.recreate"],
        &dir,
        &env,
    ));
    fails(
        &["recreate", &repo, "--comment", "c"],
        30,
        "Archive a2.recreate already exists",
    );
    // a1 was recreated and committed as a1.recreate; its replacement was not committed
    let names = RepoView::open(&dir.join("repo"), None).names();
    let expected = ["a1", "a1.recreate", "a2", "a2.recreate", "gone.recreate"];
    assert_eq!(names, expected.map(String::from).into());
}

/// Repositories written by borg 1.2.4 in several modes (lzma, fixed chunker, obfuscation):
/// every archive recompressed and re-chunked like borg does it; borg checks and restores.
#[test]
fn recreate_fixture_repositories() {
    let test = "recreate_fixture_repositories";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    for mode in ["repokey", "keyfile-blake2"] {
        let s = Scratch::new();
        let copies: Vec<PathBuf> = ["b", "r"]
            .iter()
            .map(|c| {
                let dir = s.path().join(c);
                std::fs::create_dir(&dir).unwrap();
                copy_tree(&fx.join("repos").join(mode), &dir.join("repo"));
                dir
            })
            .collect();
        copy_tree(&fx.join("keys"), &s.path().join("keys"));
        let keys = s.path().join("keys");
        let args = |dir: &Path| {
            vec![
                "recreate".to_string(),
                path_arg(&dir.join("repo")),
                "--recompress".into(),
                "-C".into(),
                "zstd,3".into(),
                "--chunker-params".into(),
                "buzhash,12,20,14,4095".into(),
            ]
        };
        let env = |dir: &Path| {
            with_var(
                &env_with_base(&dir.join("base")),
                "BORG_KEYS_DIR",
                &path_arg(&keys),
            )
        };
        let (b, r) = (&copies[0], &copies[1]);
        let a = args(b);
        ok(borg(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            b,
            &env(b),
        ));
        let a = args(r);
        let out = ok(rborg(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            r,
            &env(r),
        ));
        assert_eq!(stdout(&out), "Processing a1\nProcessing a2\n");
        let bv = RepoView::open(&b.join("repo"), Some(&keys));
        let rv = RepoView::open(&r.join("repo"), Some(&keys));
        assert_eq!(rv.names(), bv.names());
        for archive in ["a1", "a2"] {
            assert_eq!(
                comparable(rv.items(archive)),
                comparable(bv.items(archive)),
                "{mode} {archive}"
            );
            assert_eq!(rv.compressions(archive), bv.compressions(archive));
            assert_eq!(rv.meta(archive).size, bv.meta(archive).size);
            assert_eq!(rv.meta(archive).nfiles, bv.meta(archive).nfiles);
        }
        let check = ok(borg(
            &["check", "--verify-data", &path_arg(&r.join("repo"))],
            r,
            &env(r),
        ));
        assert!(check.stderr.is_empty(), "{}", stderr(&check));
        let tree = make_fixture_tree(&fx, &s.path().join("expected"), 2);
        let out = s.path().join(format!("out-{mode}"));
        std::fs::create_dir(&out).unwrap();
        ok(borg(
            &["extract", &format!("{}::a2", path_arg(&r.join("repo")))],
            &out,
            &env(r),
        ));
        assert_same_tree(&tree, &out.join("tree"));
    }
}
