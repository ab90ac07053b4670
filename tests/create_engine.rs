//! The backup engine against real borg: archives rborg's engine writes into a repository real
//! borg made are checked (`borg check --verify-data`) and restored (`borg extract`) by borg.
//! Runs the library directly with an in-memory chunk index (no client cache involved).

mod common;

use std::path::Path;
use std::sync::Arc;

use rborg::archive::create::{backup, BackupIndex, CreateOptions};
use rborg::archive::manifest::format_timestamp;
use rborg::archive::objects::ObjectWriter;
use rborg::archive::{ArchiveMeta, Manifest, Operation};
use rborg::chunker::ChunkerParams;
use rborg::compress::CompressionSpec;
use rborg::crypto::{open_key_with, Key, PassphraseEnv};
use rborg::fs::{CaptureOptions, FileStat, FilesChanged};
use rborg::hashindex::{ChunkIndex, ChunkIndexEntry};
use rborg::patterns::PatternMatcher;
use rborg::repository::local::LocalRepository;
use rborg::repository::{ObjectId, Repository};

use common::*;

/// The chunk index of everything in the repository, no files cache.
struct MemIndex(ChunkIndex);

impl BackupIndex for MemIndex {
    fn chunk(&self, id: &ObjectId) -> Option<ChunkIndexEntry> {
        self.0.get(id)
    }
    fn file_known_and_unchanged(
        &self,
        _: &ObjectId,
        _: &FileStat,
    ) -> (bool, Option<Vec<ObjectId>>) {
        (false, None)
    }
}

/// Passphrase from a fixed string (no environment involved).
struct Fixed;

impl PassphraseEnv for Fixed {
    fn var(&self, name: &str) -> Option<String> {
        (name == "BORG_PASSPHRASE").then(|| PASSPHRASE.to_string())
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

fn engine_backup(
    repo_path: &Path,
    src_parent: &Path,
    name: &str,
    chunker: &str,
    compression: &str,
) {
    let repo: Arc<dyn Repository> =
        Arc::new(LocalRepository::open(repo_path, true, 1.0, true, false).unwrap());
    let stored = Manifest::fetch(repo.as_ref()).unwrap();
    let key: Arc<Key> = Arc::new(open_key_with(repo.as_ref(), &stored, &Fixed).unwrap());
    let mut manifest = Manifest::decode(repo.as_ref(), &key, &stored, &[Operation::Write]).unwrap();
    let archives = manifest.archives.clone();
    let index = MemIndex(
        rborg::cache::stats::sync_all(&repo, &key, &archives)
            .unwrap()
            .master,
    );
    let writer = ObjectWriter::new(
        repo.clone(),
        key.clone(),
        CompressionSpec::parse(compression).unwrap(),
    );
    let opts = CreateOptions {
        roots: vec![b"tree".to_vec()],
        exclude_caches: false,
        exclude_if_present: vec![],
        keep_exclude_tags: false,
        exclude_nodump: false,
        one_file_system: false,
        read_special: false,
        sparse: false,
        capture: CaptureOptions::default(),
        files_changed: FilesChanged::Ctime,
        chunker: ChunkerParams::parse(chunker).unwrap(),
        skip_inodes: vec![],
        dry_run: false,
        list_filter: None,
        list: false,
        progress: false,
        cwd: src_parent.to_path_buf(),
        no_recursion: false,
        checkpoint_interval: None,
        stdin: Default::default(),
    };
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(src_parent).unwrap();
    let outcome = backup(
        Some(&writer),
        Some(&index),
        &PatternMatcher::for_create(vec![]),
        &opts,
        None,
        None,
    );
    std::env::set_current_dir(cwd).unwrap();
    let outcome = outcome.unwrap();
    let now = chrono::Utc::now();
    let meta = ArchiveMeta {
        version: 1,
        name: name.as_bytes().to_vec(),
        items: outcome.item_chunks.clone(),
        cmdline: vec![b"rborg".to_vec(), b"create".to_vec()],
        hostname: b"host".to_vec(),
        username: b"user".to_vec(),
        time: format_timestamp(&now),
        time_end: Some(format_timestamp(&now)),
        comment: vec![],
        chunker_params: Some(opts.chunker.to_value()),
        size: Some(outcome.stats.osize),
        csize: Some(outcome.stats.csize),
        nfiles: Some(outcome.stats.nfiles),
        size_parts: Some(0),
        csize_parts: Some(0),
        nfiles_parts: Some(0),
        recreate_cmdline: None,
        cwd: None,
        raw: rmpv::Value::Map(vec![]),
    };
    let (id, _, _) = meta.store(&writer).unwrap();
    manifest.set_archive(name.as_bytes(), id, now);
    manifest.write(&writer).unwrap();
    repo.commit(false, 0.1, false).unwrap();
}

#[test]
fn engine_archives_pass_borg_check_and_extract() {
    let test = "engine_archives_pass_borg_check_and_extract";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    if !borg_or_skip(test) {
        return;
    }
    for (mode, chunker, compression) in [
        ("repokey-blake2", "buzhash,10,16,12,4095", "lz4"),
        ("keyfile", "buzhash,19,23,21,4095", "zstd,3"),
        ("none", "fixed,4096,512", "auto,zlib,6"),
        ("authenticated", "buzhash,12,16,14,4095", "obfuscate,3,lz4"),
    ] {
        let s = Scratch::new();
        let mut env = s.env();
        env.retain(|(k, _)| k != "BORG_KEYS_DIR");
        std::env::set_var("BORG_BASE_DIR", s.base());
        let repo = s.path().join("repos").join(mode);
        ok(borg(
            &["init", "-e", mode, repo.to_str().unwrap()],
            &s.work(),
            &env,
        ));
        let src = s.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        make_fixture_tree(&fx, &src, 1);
        engine_backup(&repo, &src, "first", chunker, compression);
        // a second archive of a changed tree deduplicates against the first
        let st = std::process::Command::new("python3")
            .arg(fx.join("mktree.py"))
            .arg("upgrade")
            .arg(src.join("tree"))
            .status()
            .unwrap();
        assert!(st.success());
        engine_backup(&repo, &src, "second", chunker, compression);
        let repo_s = repo.to_str().unwrap();
        let out = ok(borg(&["check", "--verify-data", repo_s], &s.work(), &env));
        assert!(!stderr(&out).contains("error"), "{mode}: {}", stderr(&out));
        let dest = s.work().join(format!("out-{mode}"));
        std::fs::create_dir_all(&dest).unwrap();
        ok(borg(
            &["extract", &format!("{repo_s}::second")],
            &dest,
            &env,
        ));
        assert_same_tree(&src.join("tree"), &dest.join("tree"));
        let list_borg = ok(borg(
            &["list", "--json-lines", &format!("{repo_s}::second")],
            &s.work(),
            &env,
        ));
        let list_rborg = ok(rborg(
            &["list", "--json-lines", &format!("{repo_s}::second")],
            &s.work(),
            &env,
        ));
        assert_eq!(
            stdout(&list_borg).lines().count(),
            stdout(&list_rborg).lines().count(),
            "{mode}: borg and rborg list the same items"
        );
    }
}
