//! `rborg check --repair` against real borg 1.2.4: a corruption matrix on fresh copies of one
//! repository. For every kind of damage, one copy is repaired by rborg and an identical one by
//! borg; both must report the same and exit alike, a second repair must again match, and real
//! borg must then see the two repaired repositories alike (`check --verify-data`, `list`,
//! extracted files, zero-filled where chunks were lost).
//!
//! Reports are compared line by line after replacing the repository path with `REPO` (the two
//! copies live in different directories). Nothing else is normalised: the ids in the reports
//! are those of the damaged objects, identical in both copies. The ids of repaired archives do
//! differ (rborg stores them with a fresh archive TAM, borg 1.2.4 keeps the stale one), so
//! archives are listed by name only.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// Small chunks, so the files of a few hundred KB have several chunks each.
const CHUNKER_PARAMS: &str = "15,17,16,4095";

/// Tool runner of `common`: `rborg` or `borg`.
type Tool = fn(&[&str], &Path, &[(String, String)]) -> Output;

type Id = [u8; 32];

/// A copy of the test repository with its own client dirs (no cache, security or
/// relocation state shared with other copies).
struct Copy {
    repo: PathBuf,
    env: Vec<(String, String)>,
}

impl Copy {
    fn new(s: &Scratch, from: &Path, name: &str) -> Copy {
        let repo = s.path().join("repos").join(name);
        copy_tree(from, &repo);
        let base = s.path().join("bases").join(name);
        std::fs::create_dir_all(&base).unwrap();
        Copy {
            repo,
            env: with_var(
                &env_with_base(&base),
                "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING",
                "YES",
            ),
        }
    }

    fn path(&self) -> &str {
        self.repo.to_str().unwrap()
    }

    fn run(&self, tool: Tool, s: &Scratch, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.push(self.path());
        tool(&all, &s.work(), &self.env)
    }

    /// The report (stderr) with the repository path replaced.
    fn report(&self, out: &Output) -> Vec<String> {
        stderr(out)
            .lines()
            .filter(|l| !l.contains("previously located") && !l.contains("Do you want"))
            .map(|l| l.replace(self.path(), "REPO"))
            .collect()
    }

    fn archive_names(&self, s: &Scratch) -> Vec<String> {
        let out = ok(self.run(borg, s, &["list", "--format", "{name}{NL}"]));
        stdout(&out).lines().map(String::from).collect()
    }
}

/// The same command on both copies: same exit code and report. Returns rborg's output.
fn same_outcome(
    s: &Scratch,
    what: &str,
    ours: (&Copy, Tool),
    theirs: (&Copy, Tool),
    args: &[&str],
) -> Output {
    let a = ours.0.run(ours.1, s, args);
    let b = theirs.0.run(theirs.1, s, args);
    assert_eq!(
        a.status.code(),
        b.status.code(),
        "{what}: {args:?}: exit codes differ\nours:\n{}\ntheirs:\n{}",
        stderr(&a),
        stderr(&b)
    );
    assert_eq!(
        ours.0.report(&a),
        theirs.0.report(&b),
        "{what}: {args:?}: reports differ"
    );
    a
}

// ---- building the test repositories ----

/// Source tree: three incompressible files of 300 KB, and 500 symlinks so that the item
/// stream spans several item-metadata chunks.
fn make_source(s: &Scratch) -> PathBuf {
    let src = s.work().join("src");
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..3u32 {
        let mut x = 0x9e37_79b9u32.wrapping_mul(i + 1);
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    // symlinks with long targets make big items: the item stream (2 MB) spans several
    // chunks (at most 512 KiB each) with few files
    let mut x = 12345u32;
    for i in 0..500 {
        let target: String = (0..4000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                char::from(b'a' + (x >> 16) as u8 % 26)
            })
            .collect();
        std::os::unix::fs::symlink(target, src.join(format!("many/link{i:03}"))).unwrap();
    }
    src
}

/// A repository with archives `a` (src) and `b` (src plus one more file), written by `tool`.
fn make_repository(s: &Scratch, tool: Tool, name: &str) -> PathBuf {
    let repo = s.path().join("repos").join(name);
    let repo_s = repo.to_str().unwrap();
    let env = env_with_base(&s.base());
    ok(tool(&["init", "-e", "repokey", repo_s], &s.work(), &env));
    let src = s.work().join("src");
    if !src.exists() {
        make_source(s);
    }
    let create = |archive: &str| {
        ok(tool(
            &[
                "create",
                "--chunker-params",
                CHUNKER_PARAMS,
                &format!("{repo_s}::{archive}"),
                "src",
            ],
            &s.work(),
            &env,
        ))
    };
    create("a");
    let more = src.join("more");
    std::fs::write(&more, b"only in the second archive").unwrap();
    create("b");
    std::fs::remove_file(more).unwrap();
    repo
}

/// What `borg debug dump-archive` tells about an archive.
struct ArchiveLayout {
    id: Id,
    items: Vec<Id>,
    /// path → chunk ids
    files: Vec<(String, Vec<Id>)>,
}

fn id_of(v: &serde_json::Value) -> Id {
    // dump-archive shows bytes as "\u007f" + hex
    let text = v.as_str().unwrap();
    hex::decode(text.trim_start_matches('\u{7f}'))
        .unwrap()
        .try_into()
        .unwrap()
}

fn layout(s: &Scratch, repo: &Path, archive: &str) -> ArchiveLayout {
    let env = env_with_base(&s.base());
    let file = s.work().join(format!("dump-{archive}.json"));
    ok(borg(
        &[
            "debug",
            "dump-archive",
            &format!("{}::{archive}", repo.display()),
            file.to_str().unwrap(),
        ],
        &s.work(),
        &env,
    ));
    let dump: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let items = dump["_meta"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    let files = dump["_items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| {
            let chunks = item.get("chunks")?.as_array()?;
            let ids = chunks.iter().map(|c| id_of(&c[0])).collect();
            Some((item["path"].as_str()?.to_string(), ids))
        })
        .collect();
    ArchiveLayout {
        id: id_of(&dump["_manifest_entry"]["id"]),
        items,
        files,
    }
}

impl ArchiveLayout {
    fn chunks_of(&self, path: &str) -> &[Id] {
        &self.files.iter().find(|(p, _)| p == path).unwrap().1
    }
}

// ---- damaging segments ----

/// One entry of a segment file.
struct SegmentEntry {
    segment: PathBuf,
    offset: usize,
    size: usize,
    tag: u8,
    id: Option<Id>,
}

fn segment_files(repo: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(repo.join("data/0"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let n = p.file_name()?.to_str()?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    segs.sort();
    segs.into_iter().map(|(_, p)| p).collect()
}

/// Entries: crc32 (4), size (4, whole entry), tag (1), id (32, PUT and DELETE), data.
fn segment_entries(repo: &Path) -> Vec<SegmentEntry> {
    let mut out = Vec::new();
    for segment in segment_files(repo) {
        let bytes = std::fs::read(&segment).unwrap();
        let mut offset = 8;
        while offset + 9 <= bytes.len() {
            let size =
                u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap()) as usize;
            let tag = bytes[offset + 8];
            let id = (tag <= 1).then(|| bytes[offset + 9..offset + 41].try_into().unwrap());
            out.push(SegmentEntry {
                segment: segment.clone(),
                offset,
                size,
                tag,
                id,
            });
            offset += size;
        }
    }
    out
}

/// The live PUT of `id` (the last one).
fn put_of(repo: &Path, id: &Id) -> SegmentEntry {
    segment_entries(repo)
        .into_iter()
        .rfind(|e| e.tag == 0 && e.id.as_ref() == Some(id))
        .unwrap_or_else(|| panic!("no PUT of {}", hex::encode(id)))
}

/// Flip one bit of the data of `id`'s entry, `at` bytes into it; with `fix_crc` the entry's
/// CRC is recomputed, so only decryption (`--verify-data`) notices.
fn flip_object(repo: &Path, id: &Id, at: usize, fix_crc: bool) {
    let e = put_of(repo, id);
    let mut bytes = std::fs::read(&e.segment).unwrap();
    let data_start = e.offset + 41;
    assert!(data_start + at < e.offset + e.size);
    bytes[data_start + at] ^= 0x10;
    if fix_crc {
        let crc = crc32fast::hash(&bytes[e.offset + 4..e.offset + e.size]);
        bytes[e.offset..e.offset + 4].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&e.segment, bytes).unwrap();
}

fn delete_object(s: &Scratch, repo: &Path, id: &Id) {
    ok(borg(
        &[
            "debug",
            "delete-obj",
            repo.to_str().unwrap(),
            &hex::encode(id),
        ],
        &s.work(),
        &env_with_base(&s.base()),
    ));
}

// ---- the comparison ----

/// The check without `--repair` on both (unchanged) copies. Where borg 1.2.4 crashes (a
/// metadata chunk failing authentication escapes its error handling: "Local Exception",
/// rc 2), rborg reports the problem and finishes with rc 1 instead.
fn read_only_check(s: &Scratch, what: &str, ours: &Copy, theirs: &Copy, args: &[&str]) {
    let b = theirs.run(borg, s, args);
    if b.status.code() == Some(2) && stderr(&b).contains("borg.crypto.low_level.IntegrityError") {
        let a = ours.run(rborg, s, args);
        assert_eq!(a.status.code(), Some(1), "{what}: {}", stderr(&a));
        assert!(stderr(&a).contains("Archive consistency check complete, problems found."));
        return;
    }
    same_outcome(s, what, (ours, rborg), (theirs, borg), args);
}

/// Damage a copy of `pristine`, repair one copy with rborg and one with borg, and compare
/// everything real borg sees afterwards. `args` are extra check arguments.
fn compare_repairs(
    s: &Scratch,
    pristine: &Path,
    what: &str,
    args: &[&str],
    damage: &dyn Fn(&Path),
) {
    let slug: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let ours = Copy::new(s, pristine, &format!("{slug}-rborg"));
    damage(&ours.repo);
    let theirs = Copy::new(s, &ours.repo, &format!("{slug}-borg"));

    let check: Vec<&str> = ["check", "-v"].iter().chain(args).copied().collect();
    let repair: Vec<&str> = ["check", "-v", "--repair"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let rb = (&ours, rborg as Tool);
    let bb = (&theirs, borg as Tool);
    read_only_check(s, what, &ours, &theirs, &check);
    let first = same_outcome(s, what, rb, bb, &repair);
    assert!(
        stderr(&first).contains("Archive consistency check complete"),
        "{what}: {}",
        stderr(&first)
    );
    same_outcome(s, &format!("{what} (second repair)"), rb, bb, &repair);

    // real borg on both repaired copies
    let (o, t) = ((&ours, borg as Tool), (&theirs, borg as Tool));
    same_outcome(
        s,
        &format!("{what} (borg check after)"),
        o,
        t,
        &["check", "-v", "--verify-data"],
    );
    let names = ours.archive_names(s);
    assert_eq!(names, theirs.archive_names(s), "{what}: archives");
    // rborg reads its repaired archives too (their TAMs verify)
    for name in &names {
        let archive = format!("{}::{name}", ours.path());
        ok(rborg(&["list", &archive], &s.work(), &ours.env));
    }
    // borg extract warns (rc 1) about files with all-zero replacement chunks: compared too
    for name in &names {
        let extract = |c: &Copy| {
            let dir = s
                .path()
                .join("extracted")
                .join(&slug)
                .join(c.repo.file_name().unwrap())
                .join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let out = borg(&["extract", &format!("{}::{name}", c.path())], &dir, &c.env);
            (dir, out.status.code(), c.report(&out))
        };
        let (ours_dir, ours_rc, ours_report) = extract(&ours);
        let (theirs_dir, theirs_rc, theirs_report) = extract(&theirs);
        assert_eq!(
            ours_rc, theirs_rc,
            "{what}: extract {name}: {ours_report:?}"
        );
        assert_eq!(ours_report, theirs_report, "{what}: extract {name}");
        assert_same_extraction(&ours_dir, &theirs_dir);
    }
}

/// Extracted trees are the same; directories are compared without their mtime (a directory
/// whose item was lost is made by extract, at the time of extraction).
fn assert_same_extraction(ours: &Path, theirs: &Path) {
    let tree = |root: &Path| {
        let mut entries = snapshot(root);
        entries.retain(|(path, _)| !path.is_empty());
        for (_, state) in entries.iter_mut() {
            if state.kind == "dir" {
                state.mtime_ns = 0;
            }
        }
        entries
    };
    let (a, b) = (tree(ours), tree(theirs));
    let names = |t: &[(Vec<u8>, EntryState)]| -> Vec<String> {
        t.iter()
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect()
    };
    assert_eq!(names(&a), names(&b), "extracted entries differ");
    for ((path, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{} differs", String::from_utf8_lossy(path));
    }
}

#[test]
fn repairs_of_an_rborg_repository_match_borgs() {
    let test = "repairs_of_an_rborg_repository_match_borgs";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let pristine = make_repository(&s, rborg, "pristine");
    let a = layout(&s, &pristine, "a");
    let b = layout(&s, &pristine, "b");
    let f1 = a.chunks_of("src/f1");
    assert!(f1.len() > 2, "f1 should have several chunks");
    assert!(
        b.items.len() > 2,
        "b's item stream should span several chunks"
    );
    let shared_chunk = f1[1];
    let first_chunk = a.chunks_of("src/f0")[0];
    let last_chunk = *a.chunks_of("src/f2").last().unwrap();
    let middle_item_chunk = b.items[b.items.len() / 2];
    let (a_id, b_id) = (a.id, b.id);

    compare_repairs(&s, &pristine, "bit flip in a file chunk", &[], &|r| {
        flip_object(r, &shared_chunk, 100, false)
    });
    compare_repairs(&s, &pristine, "bit flip in archive metadata", &[], &|r| {
        flip_object(r, &a_id, 50, false)
    });
    compare_repairs(
        &s,
        &pristine,
        "bit flip in an item metadata chunk",
        &[],
        &|r| flip_object(r, &middle_item_chunk, 50, false),
    );
    compare_repairs(&s, &pristine, "bit flip in the manifest", &[], &|r| {
        flip_object(r, &[0; 32], 50, false)
    });
    compare_repairs(&s, &pristine, "manifest altered, crc fixed", &[], &|r| {
        flip_object(r, &[0; 32], 50, true)
    });
    compare_repairs(&s, &pristine, "truncated segment", &[], &|r| {
        let largest = segment_files(r)
            .into_iter()
            .max_by_key(|p| p.metadata().unwrap().len())
            .unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&largest)
            .unwrap();
        f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    });
    compare_repairs(&s, &pristine, "missing segment", &[], &|r| {
        std::fs::remove_file(put_of(r, &b_id).segment).unwrap()
    });
    compare_repairs(&s, &pristine, "chunk deleted", &[], &|r| {
        delete_object(&s, r, &first_chunk)
    });
    compare_repairs(
        &s,
        &pristine,
        "file chunk altered, crc fixed",
        &["--verify-data"],
        &|r| flip_object(r, &last_chunk, 1000, true),
    );
    compare_repairs(
        &s,
        &pristine,
        "item chunk altered, crc fixed",
        &["--verify-data"],
        &|r| flip_object(r, &middle_item_chunk, 10, true),
    );
}

#[test]
fn repairs_of_a_borg_repository_match_borgs() {
    let test = "repairs_of_a_borg_repository_match_borgs";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let pristine = make_repository(&s, borg, "pristine");
    let a = layout(&s, &pristine, "a");
    let chunk = a.chunks_of("src/f1")[1];
    let item_chunk = a.items[0];
    compare_repairs(
        &s,
        &pristine,
        "chunk deleted, item chunk flipped",
        &[],
        &|r| {
            delete_object(&s, r, &chunk);
            flip_object(r, &item_chunk, 20, false);
        },
    );
}

/// After a repair, a new backup brings the lost chunk back (the client cache must not trust
/// its pre-repair state); the next repair heals the files as borg's does, and both rborg and
/// borg can still back up into the repository.
#[test]
fn lost_chunks_are_healed_as_borg_heals_them() {
    let test = "lost_chunks_are_healed_as_borg_heals_them";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let pristine = make_repository(&s, rborg, "pristine");
    let chunk = layout(&s, &pristine, "a").chunks_of("src/f0")[1];
    let ours = Copy::new(&s, &pristine, "healed");
    let archive = |name: &str| format!("{}::{name}", ours.path());
    let create = |tool: Tool, name: &str| {
        let args = [
            "create",
            "--chunker-params",
            CHUNKER_PARAMS,
            &archive(name),
            "src",
        ];
        ok(tool(&args, &s.work(), &ours.env))
    };
    // a client cache in sync with the repository, counting the chunk about to be lost
    create(rborg, "before");
    delete_object(&s, &ours.repo, &chunk);
    ok(ours.run(rborg, &s, &["check", "--repair"]));
    // the repair changed the manifest: the cache resyncs and the lost chunk is stored again
    create(rborg, "after");

    let theirs = Copy::new(&s, &ours.repo, "healed-by-borg");
    let heal = same_outcome(
        &s,
        "healing",
        (&ours, rborg),
        (&theirs, borg),
        &["check", "-v", "--repair"],
    );
    let report = stderr(&heal);
    assert!(
        report.contains("src/f0: Healed previously missing file chunk!"),
        "{report}"
    );
    assert!(
        report.contains("src/f0: Completely healed previously damaged file!"),
        "{report}"
    );

    // healed: archive a extracts as the source again
    let dir = s.path().join("extracted/healed");
    std::fs::create_dir_all(&dir).unwrap();
    ok(borg(&["extract", &archive("a"), "src/f0"], &dir, &ours.env));
    assert_eq!(
        std::fs::read(dir.join("src/f0")).unwrap(),
        std::fs::read(s.work().join("src/f0")).unwrap()
    );
    // both tools keep working on the repaired repository
    create(borg, "d");
    create(rborg, "e");
    let checked = ok(ours.run(borg, &s, &["check", "-v"]));
    assert!(
        stderr(&checked).contains("no problems found"),
        "{}",
        stderr(&checked)
    );
}

/// borg 1.2.4 crashes (uncaught MAC error) when archive or item metadata fails to
/// authenticate without `--verify-data`; rborg reports it as borg means to and repairs.
#[test]
fn metadata_failing_authentication_is_reported_and_repaired() {
    let test = "metadata_failing_authentication_is_reported_and_repaired";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let pristine = make_repository(&s, rborg, "pristine");
    let a = layout(&s, &pristine, "a");
    let b = layout(&s, &pristine, "b");
    let item_chunk = b.items[b.items.len() / 2];
    let copy = Copy::new(&s, &pristine, "mac");
    flip_object(&copy.repo, &a.id, 30, true);
    flip_object(&copy.repo, &item_chunk, 30, true);
    let out = copy.run(rborg, &s, &["check", "-v", "--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = copy.report(&out);
    let archive_line = format!(
        "Archive metadata block {} is corrupted: MAC Authentication failed",
        hex::encode(a.id)
    );
    assert!(report.contains(&archive_line), "{report:?}");
    assert!(
        report
            .iter()
            .any(|l| l.starts_with("MAC Authentication failed [chunk: ")
                && l.ends_with(&format!("_{}]", hex::encode(item_chunk)))),
        "{report:?}"
    );
    assert_eq!(copy.archive_names(&s), ["b"]);
    let after = ok(copy.run(borg, &s, &["check", "-v", "--verify-data"]));
    assert!(
        stderr(&after).contains("no problems found"),
        "{}",
        stderr(&after)
    );
}
