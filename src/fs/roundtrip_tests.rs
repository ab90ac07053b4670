//! Cross-module tests: every item type created and restored, capture → apply round trips, and
//! interoperability with real borg (skipped when borg/setfacl are not installed).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::archive::item::Item;
use crate::fs::stat::lstat;

const MTIME: i64 = 1_234_567_890_123_456_789;
const ATIME: i64 = 1_111_111_111_987_654_321;

fn raw(name: &[u8]) -> &Path {
    path_from_bytes(name)
}

fn item(path: &[u8], mode: u32) -> Item {
    Item {
        path: path.to_vec(),
        mode: Some(mode),
        uid: Some(0),
        gid: Some(0),
        mtime: MTIME,
        atime: Some(ATIME),
        ..Default::default()
    }
}

fn binary_xattrs() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b"user.bin".to_vec(), b"\x00\xff\x00zero\xff".to_vec()),
        (b"user.empty".to_vec(), Vec::new()),
    ]
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}

#[test]
fn regular_file_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(raw(b"file-\xe9\xff"));
    let mut it = item(b"file-\xe9\xff", 0o100640);
    it.xattrs = Some(binary_xattrs());
    let mut w = FileWriter::create(&p, false).unwrap();
    w.write_chunk(b"hello ").unwrap();
    w.write_chunk(&[0u8; 10]).unwrap();
    w.write_chunk(b"world").unwrap();
    assert_eq!(w.finish().unwrap(), 21);
    let warnings = restore_attrs(&p, &it, &RestoreOptions::default(), Some(w.fd())).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    drop(w);
    let st = lstat(&p).unwrap();
    assert_eq!(st.mode, 0o100640);
    assert_eq!((st.mtime_ns, st.atime_ns), (MTIME, ATIME));
    assert_eq!(st.size, 21);
    let mut expected = b"hello ".to_vec();
    expected.extend_from_slice(&[0; 10]);
    expected.extend_from_slice(b"world");
    assert_eq!(std::fs::read(&p).unwrap(), expected);
    let (x, _) = xattrs::get_all(Target::Path(&p)).unwrap();
    assert_eq!(x, binary_xattrs());
}

#[test]
fn atime_defaults_to_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"").unwrap();
    let mut it = item(b"f", 0o100600);
    it.atime = None;
    restore_attrs(&p, &it, &RestoreOptions::default(), None).unwrap();
    let st = lstat(&p).unwrap();
    assert_eq!((st.mtime_ns, st.atime_ns), (MTIME, MTIME));
}

#[test]
fn sparse_files_get_holes() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<Vec<u8>> = vec![
        vec![7u8; 4096],
        vec![0u8; 1 << 20],
        vec![9u8; 4096],
        vec![0u8; 1 << 20],
    ];
    let mut expected = Vec::new();
    for c in &chunks {
        expected.extend_from_slice(c);
    }
    let mut blocks = Vec::new();
    for sparse in [false, true] {
        let p = dir.path().join(format!("s{sparse}"));
        let mut w = FileWriter::create(&p, sparse).unwrap();
        for c in &chunks {
            w.write_chunk(c).unwrap();
        }
        assert_eq!(w.finish().unwrap(), expected.len() as u64);
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), expected);
        blocks.push(std::fs::metadata(&p).unwrap().blocks());
    }
    // 512-byte blocks: dense needs > 2 MiB, sparse only the two data blocks (plus fs slack)
    assert!(blocks[0] >= 4096, "{blocks:?}");
    assert!(blocks[1] < blocks[0] / 8, "{blocks:?}");
    assert!(is_all_zero(&[0; 9000]) && !is_all_zero(&[0, 0, 1]) && is_all_zero(&[]));
}

#[test]
fn directory_attrs_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join(raw(b"dir\xfe"));
    create_dir(&d).unwrap();
    create_dir(&d).unwrap(); // existing: fine
    std::fs::write(d.join("inside"), b"x").unwrap();
    let mut it = item(b"dir\xfe", 0o040751);
    it.xattrs = Some(binary_xattrs());
    restore_attrs(&d, &it, &RestoreOptions::default(), None).unwrap();
    let st = lstat(&d).unwrap();
    assert_eq!(st.mode, 0o040751);
    assert_eq!((st.mtime_ns, st.atime_ns), (MTIME, ATIME));
    assert_eq!(
        xattrs::get_all(Target::Path(&d)).unwrap().0,
        binary_xattrs()
    );
}

#[test]
fn symlinks_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"t").unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let before = lstat(&target).unwrap();
    let l = dir.path().join(raw(b"link\x80"));
    create_symlink(target.as_os_str().as_bytes(), &l).unwrap();
    let mut it = item(b"link\x80", 0o120777);
    it.source = Some(target.as_os_str().as_bytes().to_vec());
    let w = restore_attrs(&l, &it, &RestoreOptions::default(), None).unwrap();
    assert!(w.is_empty());
    let st = lstat(&l).unwrap();
    assert!(st.is_symlink());
    assert_eq!((st.mtime_ns, st.atime_ns), (MTIME, ATIME));
    assert_eq!(std::fs::read_link(&l).unwrap(), target);
    let after = lstat(&target).unwrap();
    assert_eq!(after.mode, before.mode);
    assert_eq!(after.mtime_ns, before.mtime_ns);
    // raw, non-UTF-8 and dangling targets are stored verbatim
    let l2 = dir.path().join("l2");
    create_symlink(b"../no\xffwhere", &l2).unwrap();
    assert_eq!(
        std::fs::read_link(&l2).unwrap().as_os_str().as_bytes(),
        b"../no\xffwhere"
    );
}

#[test]
fn fifo_and_hardlink() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(raw(b"fifo\xff"));
    create_fifo(&f).unwrap();
    let it = item(b"fifo\xff", 0o010604);
    restore_attrs(&f, &it, &RestoreOptions::default(), None).unwrap();
    let st = lstat(&f).unwrap();
    assert_eq!(st.mode, 0o010604);
    assert_eq!(st.mtime_ns, MTIME);
    let master = dir.path().join("master");
    std::fs::write(&master, b"m").unwrap();
    let slave = dir.path().join(raw(b"slave\xfa"));
    hardlink(&master, &slave).unwrap();
    assert_eq!(lstat(&slave).unwrap().ino, lstat(&master).unwrap().ino);
    assert_eq!(lstat(&master).unwrap().nlink, 2);
    let err = hardlink(&master, &slave).unwrap_err();
    assert_eq!(err.error.raw_os_error(), Some(libc::EEXIST));
}

#[test]
fn devices_need_root() {
    if !is_root() {
        eprintln!("skipped: mknod needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("null-like");
    let rdev = libc::makedev(1, 3);
    create_device(&c, 0o020640, rdev).unwrap();
    let mut it = item(b"null-like", 0o020640);
    it.rdev = Some(rdev);
    restore_attrs(&c, &it, &RestoreOptions::default(), None).unwrap();
    let st = lstat(&c).unwrap();
    assert!(st.is_chr());
    assert_eq!((st.mode, st.rdev, st.mtime_ns), (0o020640, rdev, MTIME));
    let b = dir.path().join("blk");
    create_device(&b, 0o060600, libc::makedev(7, 200)).unwrap();
    assert!(lstat(&b).unwrap().is_blk());
}

#[test]
fn mknod_without_privilege_is_a_permission_warning() {
    // EPERM is what an unprivileged mknod of a char device gets
    let e = BackupOsError::new(
        "mknod",
        std::io::Error::from_raw_os_error(libc::EPERM),
        None,
    );
    assert_eq!(e.kind(), crate::errors::WarningKind::BackupPermissionError);
}

#[test]
fn owner_mapping_and_chown_as_root() {
    // names win over ids unless --numeric-ids; unknown names fall back to ids
    let mut it = item(b"x", 0o100600);
    it.uid = Some(54321);
    it.gid = Some(54322);
    it.user = crate::fs::ids::uid2user(0);
    it.group = crate::fs::ids::gid2group(0);
    assert_eq!(item_uid_gid(&it, false), (0, 0));
    assert_eq!(item_uid_gid(&it, true), (54321, 54322));
    it.user = Some(b"udoesnotexist".to_vec());
    it.group = Some(b"gdoesnotexist".to_vec());
    assert_eq!(item_uid_gid(&it, false), (54321, 54322));
    it.uid = None;
    it.gid = None;
    assert_eq!(item_uid_gid(&it, false), (0, 0));
    if !is_root() {
        eprintln!("skipped: chown to other users needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("owned");
    std::fs::write(&p, b"").unwrap();
    let mut it = item(b"owned", 0o104755);
    it.uid = Some(54321);
    it.gid = Some(54322);
    it.user = Some(b"udoesnotexist".to_vec());
    restore_attrs(&p, &it, &RestoreOptions::default(), None).unwrap();
    let st = lstat(&p).unwrap();
    // chmod after chown keeps the setuid bit
    assert_eq!((st.uid, st.gid, st.mode), (54321, 54322, 0o104755));
    let l = dir.path().join("l");
    create_symlink(b"owned", &l).unwrap();
    let mut li = item(b"l", 0o120777);
    li.uid = Some(4242);
    li.gid = Some(4243);
    restore_attrs(
        &l,
        &li,
        &RestoreOptions {
            numeric_ids: true,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        (lstat(&l).unwrap().uid, lstat(&p).unwrap().uid),
        (4242, 54321)
    );
}

#[test]
fn noxattrs_and_noacls_skip_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"").unwrap();
    let mut it = item(b"f", 0o100644);
    it.xattrs = Some(binary_xattrs());
    it.acl_access =
        Some(b"user::rw-\nuser:54321:r--:54321\ngroup::r--\nmask::r--\nother::r--".to_vec());
    let opts = RestoreOptions {
        noxattrs: true,
        noacls: true,
        ..Default::default()
    };
    restore_attrs(&p, &it, &opts, None).unwrap();
    let st = lstat(&p).unwrap();
    let (acc, _) = acl::acl_get(&p, &st, true, None).unwrap();
    assert_eq!(acc, None);
    assert!(xattrs::get_all(Target::Path(&p)).unwrap().0.is_empty());
}

/// Build a tree with one object of each kind and rich metadata (listed depth-first, like an
/// archive).
fn build_source(root: &Path) -> Vec<(Vec<u8>, PathBuf)> {
    let mut out = Vec::new();
    let mut add = |rel: &[u8]| {
        let p = root.join(raw(rel));
        out.push((rel.to_vec(), p.clone()));
        p
    };
    let d = add(b"dir\xff");
    std::fs::create_dir(&d).unwrap();
    let f = add(b"dir\xff/file\xe9");
    std::fs::write(&f, b"content").unwrap();
    xattr::set(&f, "user.bin", b"\x00\x01\xff").unwrap();
    xattr::set(&f, "user.empty", b"").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o2751)).unwrap();
    let l = add(b"dir\xff/link");
    std::os::unix::fs::symlink("file\u{e9}", &l).unwrap();
    let acl_file = add(b"acl");
    std::fs::write(&acl_file, b"").unwrap();
    let acl_text = b"user::rw-\nuser:54321:r-x\t:54321\ngroup::r--\nmask::r--\nother::---";
    let acl_item = Item {
        mode: Some(0o100640),
        acl_access: Some(acl_text.to_vec()),
        ..Default::default()
    };
    acl::acl_set(&acl_file, &acl_item, true, None).unwrap();
    let acl_dir = add(b"acldir");
    std::fs::create_dir(&acl_dir).unwrap();
    let acl_dir_item = Item {
        mode: Some(0o040750),
        acl_default: Some(
            b"user::rwx\nuser:54322:r-x:54322\ngroup::r-x\nmask::r-x\nother::---".to_vec(),
        ),
        ..Default::default()
    };
    acl::acl_set(&acl_dir, &acl_dir_item, true, None).unwrap();
    let fifo = add(b"fifo");
    create_fifo(&fifo).unwrap();
    let empty = add(b"empty");
    std::fs::write(&empty, b"").unwrap();
    // distinct ns timestamps on everything (symlinks included)
    for (i, (_, p)) in out.iter().enumerate() {
        apply::set_times(p, None, ATIME + i as i64, MTIME + 7 * i as i64).unwrap();
    }
    out
}

#[test]
fn capture_then_apply_gives_identical_metadata() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let objects = build_source(src.path());
    let copts = CaptureOptions {
        atime: true,
        ..Default::default()
    };
    let mut items = Vec::new();
    for (rel, p) in &objects {
        let st = lstat(p).unwrap();
        let (it, w) = stat_item(rel, p, &st, &copts, None).unwrap();
        assert!(w.is_empty());
        items.push(it);
    }
    let acl_item = items.iter().find(|i| i.path == b"acl").unwrap();
    assert!(acl_item
        .acl_access
        .as_ref()
        .unwrap()
        .ends_with(b"other::---"));
    let acl_dir_item = items.iter().find(|i| i.path == b"acldir").unwrap();
    assert!(acl_dir_item.acl_default.is_some());
    // the walker's part: symlink targets and file contents (read without touching atime)
    let mut contents = Vec::new();
    for (it, (_, p)) in items.iter_mut().zip(&objects) {
        if it.is_symlink() {
            it.source = Some(
                std::fs::read_link(p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            );
        }
        let mut data = Vec::new();
        if it.is_regular() {
            let fd = open_item(None, p, OpenKind::Normal, true).unwrap();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).unwrap();
        }
        contents.push(data);
    }
    // extract like the extract command: dirs first, their attrs after their contents
    let mut guard = ExtractGuard::new(dst.path());
    let mut dirs = DeferredDirs::new();
    let ropts = RestoreOptions::default();
    for (it, data) in items.iter().zip(&contents) {
        for (p, di) in dirs.finished_before(&it.path) {
            let (p, di): (PathBuf, &Item) = (p, di);
            restore_attrs(&p, di, &ropts, None).unwrap();
        }
        let p = guard.check_item(&it.path).unwrap();
        guard.make_parent(&p).unwrap();
        remove_existing(&p);
        if it.is_dir() {
            create_dir(&p).unwrap();
            dirs.push(it.path.clone(), (p, it));
        } else if it.is_symlink() {
            create_symlink(it.source.as_deref().unwrap(), &p).unwrap();
            restore_attrs(&p, it, &ropts, None).unwrap();
        } else if it.is_fifo() {
            create_fifo(&p).unwrap();
            restore_attrs(&p, it, &ropts, None).unwrap();
        } else {
            let mut w = FileWriter::create(&p, true).unwrap();
            w.write_chunk(data).unwrap();
            w.finish().unwrap();
            restore_attrs(&p, it, &ropts, Some(w.fd())).unwrap();
        }
    }
    for (p, di) in dirs.drain() {
        restore_attrs(&p, di, &ropts, None).unwrap();
    }
    for (it, data) in items.iter().zip(&contents) {
        let dp = dst.path().join(raw(&it.path));
        let b = lstat(&dp).unwrap();
        let what = String::from_utf8_lossy(&it.path);
        assert_eq!(Some(b.mode), it.mode, "{what}");
        assert_eq!((Some(b.uid), Some(b.gid)), (it.uid, it.gid), "{what}");
        assert_eq!(
            (b.mtime_ns, Some(b.atime_ns)),
            (it.mtime, it.atime),
            "{what}"
        );
        if it.is_regular() {
            assert_eq!(std::fs::read(&dp).unwrap(), *data, "{what}");
        }
        // capturing the copy gives the same item again (ctime is the extraction's)
        let (mut again, w) = stat_item(&it.path, &dp, &b, &copts, None).unwrap();
        assert!(w.is_empty());
        again.ctime = it.ctime;
        again.source = it.source.clone();
        assert_eq!(&again, it, "{what}");
    }
}

fn run_borg(cwd: &Path, args: &[&OsStr]) -> std::process::Output {
    let out = Command::new("borg")
        .args(args)
        .current_dir(cwd)
        .env("BORG_BASE_DIR", cwd.join("base"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "borg {args:?}: {out:?}");
    out
}

/// Items of an archive via `borg debug dump-archive-items` (unencrypted repo).
fn borg_items(work: &Path, archive: &str) -> Vec<Item> {
    let dump = work.join(format!("dump-{archive}"));
    std::fs::create_dir(&dump).unwrap();
    let spec = format!("{}::{}", work.join("repo").display(), archive);
    let out = Command::new("borg")
        .args(["debug", "dump-archive-items", &spec])
        .current_dir(&dump)
        .env("BORG_BASE_DIR", work.join("base"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<_> = std::fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut unpacker = crate::msgpack::StreamUnpacker::new();
    for f in files {
        unpacker.feed(&std::fs::read(f).unwrap());
    }
    let mut items = Vec::new();
    while let Some(v) = unpacker.next_value().unwrap() {
        items.push(Item::from_value(&v).unwrap());
    }
    items
}

#[test]
fn capture_matches_real_borg() {
    if !have("borg") || !have("setfacl") {
        eprintln!("skipped: needs borg and setfacl");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let objects = build_source(&src);
    // a named-user ACL with effective-rights comment, as setfacl makes it
    let f = src.join("named");
    std::fs::write(&f, b"n").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let ok = Command::new("setfacl")
        .args(["-m", "u:0:rw,u:54321:x,g:0:rwx,m::r"])
        .arg(&f)
        .status()
        .unwrap();
    assert!(ok.success());
    let repo = work.path().join("repo");
    run_borg(
        work.path(),
        &[
            OsStr::new("init"),
            OsStr::new("-e"),
            OsStr::new("none"),
            repo.as_os_str(),
        ],
    );
    for (archive, extra) in [("names", None), ("numeric", Some("--numeric-ids"))] {
        let mut args: Vec<&OsStr> = vec![OsStr::new("create")];
        if let Some(e) = extra {
            args.push(OsStr::new(e));
        }
        let spec = format!("{}::{}", repo.display(), archive);
        args.push(OsStr::new(&spec));
        args.push(OsStr::new("src"));
        run_borg(work.path(), &args);
        let opts = CaptureOptions {
            numeric_ids: extra.is_some(),
            ..Default::default()
        };
        let borg = borg_items(work.path(), archive);
        let mut checked = 0;
        let mut rels: Vec<Vec<u8>> = objects.iter().map(|(r, _)| r.clone()).collect();
        rels.push(b"named".to_vec());
        for rel in rels {
            let mut archived = b"src/".to_vec();
            archived.extend_from_slice(&rel);
            let b = borg
                .iter()
                .find(|i| i.path == archived)
                .expect("item in archive");
            let p = src.join(raw(&rel));
            let st = lstat(&p).unwrap();
            let (mut mine, _) = stat_item(&archived, &p, &st, &opts, None).unwrap();
            mine.chunks = b.chunks.clone();
            mine.size = b.size;
            mine.hardlink_master = b.hardlink_master;
            mine.source = b.source.clone();
            assert_eq!(&mine, b, "{}", String::from_utf8_lossy(&rel));
            checked += 1;
        }
        assert_eq!(checked, objects.len() + 1);
        let named = borg.iter().find(|i| i.path == b"src/named").unwrap();
        let text = named.acl_access.as_ref().unwrap();
        assert!(
            text.windows(2).any(|w| w == b"\t:"),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn borg_extract_items_apply_like_borg_extract() {
    if !have("borg") || !have("getfacl") {
        eprintln!("skipped: needs borg and getfacl");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_source(&src);
    let repo = work.path().join("repo");
    run_borg(
        work.path(),
        &[
            OsStr::new("init"),
            OsStr::new("-e"),
            OsStr::new("none"),
            repo.as_os_str(),
        ],
    );
    let spec = format!("{}::a", repo.display());
    run_borg(
        work.path(),
        &[OsStr::new("create"), OsStr::new(&spec), OsStr::new("src")],
    );
    // borg's own extraction …
    let by_borg = work.path().join("by_borg");
    std::fs::create_dir(&by_borg).unwrap();
    let out = Command::new("borg")
        .args(["extract", &spec])
        .current_dir(&by_borg)
        .env("BORG_BASE_DIR", work.path().join("base"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // … and ours from the same items (file content copied from the source)
    let ours = work.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    let items = borg_items(work.path(), "a");
    let mut guard = ExtractGuard::new(&ours);
    let mut dirs: DeferredDirs<(PathBuf, Item)> = DeferredDirs::new();
    let ropts = RestoreOptions::default();
    for it in &items {
        for (p, di) in dirs.finished_before(&it.path) {
            restore_attrs(&p, &di, &ropts, None).unwrap();
        }
        let p = guard.check_item(&it.path).unwrap();
        guard.make_parent(&p).unwrap();
        if it.is_dir() {
            create_dir(&p).unwrap();
            dirs.push(it.path.clone(), (p, it.clone()));
        } else if it.is_symlink() {
            create_symlink(it.source.as_deref().unwrap(), &p).unwrap();
            restore_attrs(&p, it, &ropts, None).unwrap();
        } else if it.is_fifo() {
            create_fifo(&p).unwrap();
            restore_attrs(&p, it, &ropts, None).unwrap();
        } else {
            let content = std::fs::read(work.path().join(raw(&it.path))).unwrap();
            let mut w = FileWriter::create(&p, false).unwrap();
            w.write_chunk(&content).unwrap();
            w.finish().unwrap();
            restore_attrs(&p, it, &ropts, Some(w.fd())).unwrap();
        }
    }
    for (p, di) in dirs.drain() {
        restore_attrs(&p, &di, &ropts, None).unwrap();
    }
    for it in &items {
        let a = by_borg.join(raw(&it.path));
        let b = ours.join(raw(&it.path));
        let (sa, sb) = (lstat(&a).unwrap(), lstat(&b).unwrap());
        let what = String::from_utf8_lossy(&it.path);
        assert_eq!(
            (sa.mode, sa.uid, sa.gid),
            (sb.mode, sb.uid, sb.gid),
            "{what}"
        );
        assert_eq!((sa.mtime_ns, sa.size), (sb.mtime_ns, sb.size), "{what}");
        if !sa.is_symlink() {
            assert_eq!(
                xattrs::get_all(Target::Path(&a)).unwrap().0,
                xattrs::get_all(Target::Path(&b)).unwrap().0,
                "{what}"
            );
            for default in [false, true] {
                if default && !sa.is_dir() {
                    continue;
                }
                let facl = |p: &Path| {
                    let mut c = Command::new("getfacl");
                    c.args(["-n", "-c", "-E"]);
                    c.arg(if default { "-d" } else { "-a" });
                    String::from_utf8(c.arg(p).output().unwrap().stdout).unwrap()
                };
                assert_eq!(facl(&a), facl(&b), "{what}");
            }
        }
    }
}
