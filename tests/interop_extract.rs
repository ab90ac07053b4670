//! Randomized interop: real borg backs up a random tree in each of the seven encryption modes,
//! rborg extracts it, and the trees must be identical (content, modes, times, xattrs,
//! hardlinks, symlinks, fifos, non-UTF-8 names). The seed is printed; set RBORG_TEST_SEED to
//! replay a run.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;

fn random_name(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(1..24);
    let mut name: Vec<u8> = match rng.gen_range(0..4) {
        // arbitrary bytes: often not UTF-8
        0 => (0..len)
            .map(|_| rng.gen_range(1..=255u8))
            .filter(|&b| b != b'/')
            .collect(),
        // UTF-8 with non-ASCII characters
        1 => {
            let chars = ['ü', '€', 'ß', '日', '本', 'é', 'a', 'b', ' ', '-'];
            (0..len)
                .map(|_| chars[rng.gen_range(0..chars.len())])
                .collect::<String>()
                .into_bytes()
        }
        _ => (0..len)
            .map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789_.-"[rng.gen_range(0..39)])
            .collect(),
    };
    if name.is_empty() || name == b"." || name == b".." {
        name = b"x".to_vec();
    }
    name
}

fn random_content(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    if size == 0 {
        return data;
    }
    match rng.gen_range(0..3) {
        0 => rng.fill(&mut data[..]),
        // compressible: repeated words
        1 => {
            let words = b"borg rborg chunk archive repository backup ";
            for (i, b) in data.iter_mut().enumerate() {
                *b = words[i % words.len()];
            }
        }
        // sparse-ish: zeros with random islands
        _ => {
            for _ in 0..(size / 4096).max(1) {
                let at = rng.gen_range(0..size);
                data[at] = rng.gen();
            }
        }
    }
    data
}

fn file_size(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..100) {
        0..=9 => 0,
        10..=69 => rng.gen_range(1..8192),
        70..=94 => rng.gen_range(8192..1 << 20),
        _ => rng.gen_range(1 << 20..=20 << 20),
    }
}

fn set_mtime(path: &Path, ns: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: ns / 1_000_000_000,
        tv_nsec: ns % 1_000_000_000,
    };
    let times = [ts, ts];
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Build a random tree under `root`; returns nothing, the tree is the reference.
fn make_random_tree(rng: &mut StdRng, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let mut dirs = vec![root.to_path_buf()];
    for _ in 0..8 {
        let parent = dirs[rng.gen_range(0..dirs.len())].clone();
        let d = parent.join(OsStr::from_bytes(&random_name(rng)));
        if std::fs::create_dir(&d).is_ok() {
            dirs.push(d);
        }
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for _ in 0..70 {
        let dir = &dirs[rng.gen_range(0..dirs.len())];
        let p = dir.join(OsStr::from_bytes(&random_name(rng)));
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match rng.gen_range(0..20) {
            0..=1 => std::os::unix::fs::symlink(OsStr::from_bytes(&random_name(rng)), &p).unwrap(),
            2 => {
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            }
            3..=4 if !files.is_empty() => {
                let target = files[rng.gen_range(0..files.len())].clone();
                std::fs::hard_link(&target, &p).unwrap();
            }
            _ => {
                let size = file_size(rng);
                std::fs::write(&p, random_content(rng, size)).unwrap();
                if rng.gen_bool(0.2) {
                    let mut value = vec![0u8; rng.gen_range(0..40)];
                    rng.fill(&mut value[..]);
                    let name = format!("user.rborg{}", rng.gen_range(0..3));
                    xattr::set(&p, name, &value).unwrap();
                }
                files.push(p.clone());
            }
        }
    }
    // Metadata last, deepest first, so directory mtimes stay as set.
    let mut all: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        all.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in all {
        let md = std::fs::symlink_metadata(&p).unwrap();
        if !md.file_type().is_symlink() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if md.is_dir() { 0o700 } else { 0o600 }
                | rng.gen_range(0..0o100)
                | (rng.gen_range(0..8) << 3);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        set_mtime(
            &p,
            rng.gen_range(0..2_000_000_000i64) * 1_000_000_000 + rng.gen_range(0..1_000_000_000),
        );
    }
}

const COMPRESSIONS: &[&str] = &[
    "lz4",
    "zstd,3",
    "zlib,6",
    "lzma,1",
    "none",
    "auto,zstd,5",
    "obfuscate,3,lz4",
];

#[test]
fn borg_backs_up_random_trees_rborg_restores_them() {
    let test = "borg_backs_up_random_trees_rborg_restores_them";
    if !borg_or_skip(test) {
        return;
    }
    let seed: u64 = std::env::var("RBORG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: RBORG_TEST_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let s = Scratch::new();
    let src = s.work().join("src");
    make_random_tree(&mut rng, &src.join("tree"));
    for (i, mode) in MODES.iter().enumerate() {
        let mut env = s.env();
        env.retain(|(k, _)| k != "BORG_KEYS_DIR");
        env.push((
            "BORG_KEYS_DIR".into(),
            s.path().join("keys").display().to_string(),
        ));
        let repo = s.path().join("repos").join(mode);
        let repo_s = repo.to_str().unwrap();
        ok(borg(&["init", "-e", mode, repo_s], &s.work(), &env));
        let compression =
            COMPRESSIONS[(i + rng.gen_range(0..COMPRESSIONS.len())) % COMPRESSIONS.len()];
        let chunker = if rng.gen_bool(0.5) {
            "buzhash,10,16,12,4095"
        } else {
            "fixed,4096,512"
        };
        let archive = format!("{repo_s}::random");
        ok(borg(
            &[
                "create",
                "-C",
                compression,
                "--chunker-params",
                chunker,
                &archive,
                "tree",
            ],
            &src,
            &env,
        ));
        let dest = s.work().join(format!("out-{mode}"));
        std::fs::create_dir_all(&dest).unwrap();
        let out = rborg(&["extract", &archive], &dest, &env);
        assert!(
            out.status.success(),
            "{mode} ({compression}, {chunker}, seed {seed}): {}",
            stderr(&out)
        );
        assert_same_tree(&src.join("tree"), &dest.join("tree"));
    }
}
