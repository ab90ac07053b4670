//! A repository's own files as a hostile or broken disk could leave them: segment files (with
//! their CRCs recomputed or not), `index.T`, `hints.T` and `integrity.T`. Each input replaces
//! one file of a small committed repository in a scratch directory, which is then opened,
//! read object by object, checked, and checked with repair.
//!
//! Input layout: the first byte picks the file (low 3 bits: 0 a data segment, 1 the commit
//! segment, 2 index, 3 hints, 4 integrity), bit 7 whether the segment's entry CRCs are
//! recomputed after the change (so the parser behind the CRC check is reached too), bit 6
//! whether `check --repair` runs as well; the rest is the file's new content. Replacing index or hints also drops `integrity.T` (borg then
//! reads them unverified).
//! Seeds: run once with RBORG_FUZZ_SEEDS=<dir> to write the template's files as inputs.
#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rborg::repository::local::OpenOptions;
use rborg::repository::{LocalRepository, Repository};

const FIX_CRCS: u8 = 0x80;
/// Also run `check --repair` (slow: it commits, with fsyncs).
const REPAIR: u8 = 0x40;

fn scratch() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = common::make_scratch("repo-files");
        let template = root.join("template");
        make_template(&template);
        common::write_seeds(&seeds(&template));
        root
    })
}

fn writer(path: &Path) -> LocalRepository {
    let opts = OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    };
    LocalRepository::open_with(path, &opts).expect("open template")
}

/// Two transactions: puts, then more puts, an overwrite and a delete without compaction,
/// so the hints hold compaction data and a shadow index.
fn make_template(path: &Path) {
    LocalRepository::create(path, false, 0, false).expect("create template");
    let repo = writer(path);
    for i in 0..3u8 {
        repo.put(&[i; 32], &vec![i; 100 + i as usize]).expect("put");
    }
    repo.commit(false, 0.1, false).expect("commit");
    repo.close();
    let repo = writer(path);
    repo.put(&[9; 32], b"second transaction").expect("put");
    repo.put(&[1; 32], b"overwritten").expect("put");
    repo.delete(&[2; 32]).expect("delete");
    repo.commit(false, 0.1, false).expect("commit");
    repo.close();
}

/// The segment files, oldest first.
fn segments(repo: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    for dir in std::fs::read_dir(repo.join("data")).expect("data dir") {
        for seg in std::fs::read_dir(dir.expect("entry").path()).expect("segment dir") {
            let seg = seg.expect("entry").path();
            if let Some(n) = seg.file_name().and_then(|n| n.to_str()?.parse().ok()) {
                segs.push((n, seg));
            }
        }
    }
    segs.sort();
    segs.into_iter().map(|(_, p)| p).collect()
}

/// `repo/<prefix>T` of the last transaction.
fn transaction_file(repo: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(repo)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
}

fn target_file(repo: &Path, which: u8) -> Option<PathBuf> {
    let segs = segments(repo);
    match which {
        0 => segs.first().cloned(),
        1 => segs.last().cloned(),
        2 => transaction_file(repo, "index."),
        3 => transaction_file(repo, "hints."),
        _ => transaction_file(repo, "integrity."),
    }
}

fn seeds(template: &Path) -> Vec<(String, Vec<u8>)> {
    (0..5u8)
        .filter_map(|which| {
            let bytes = std::fs::read(target_file(template, which)?).ok()?;
            let selector = if which < 2 { which | FIX_CRCS } else { which };
            Some([selector, selector | REPAIR].map(|selector| {
                let mut seed = vec![selector];
                seed.extend_from_slice(&bytes);
                (format!("file-{which}-{selector:02x}"), seed)
            }))
        })
        .flatten()
        .collect()
}

/// Recompute each entry's CRC32 (over size, tag and body) where the size field allows.
fn fix_crcs(segment: &mut [u8]) {
    let mut pos = 8; // after the BORG_SEG magic
    while pos + 9 <= segment.len() {
        let size = u32::from_le_bytes(segment[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if size < 9 || pos + size > segment.len() {
            return;
        }
        let crc = crc32fast::hash(&segment[pos + 4..pos + size]);
        segment[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos += size;
    }
}

fn exercise(path: &Path, repair: bool) {
    let Ok(repo) = LocalRepository::open_with(
        path,
        &OpenOptions {
            exclusive: true,
            lock_wait: Some(0.0),
            ..OpenOptions::default()
        },
    ) else {
        return;
    };
    if let Ok(ids) = repo.list(1000, None) {
        for id in &ids {
            let _ = repo.get(id);
        }
    }
    let _ = repo.check(false, 0.0);
    if repair {
        let _ = repo.check(true, 0.0);
    }
    if let Ok(ids) = repo.list(1000, None) {
        for id in &ids {
            let _ = repo.get(id);
        }
    }
    repo.close();
}

fuzz_target!(|data: &[u8]| {
    let root = scratch();
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let work = root.join("work");
    let _ = std::fs::remove_dir_all(&work);
    let repo = work.join("repo");
    common::copy_dir(&root.join("template"), &repo);
    let which = (selector & 7) % 5;
    let Some(file) = target_file(&repo, which) else {
        return;
    };
    let mut content = content.to_vec();
    if which < 2 && selector & FIX_CRCS != 0 {
        fix_crcs(&mut content);
    }
    std::fs::write(&file, &content).expect("write");
    if which == 2 || which == 3 {
        if let Some(integrity) = transaction_file(&repo, "integrity.") {
            let _ = std::fs::remove_file(integrity);
        }
    }
    exercise(&repo, selector & REPAIR != 0);
});
