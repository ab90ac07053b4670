//! `rborg benchmark crud` with borg's tiny test data sets (`_BORG_BENCHMARK_CRUD_TEST`): the
//! output has borg's layout, the benchmark archives are gone afterwards, borg finds the
//! repository intact.

mod common;

use common::*;

#[test]
fn benchmark_crud_prints_borg_layout_and_cleans_up() {
    let s = Scratch::new();
    let work = s.work();
    let env = with_var(&s.env(), "_BORG_BENCHMARK_CRUD_TEST", "1");
    ok(rborg(&["init", "-e", "repokey", "r"], &work, &env));
    let out = ok(rborg(&["benchmark", "crud", "r", "data"], &work, &env));
    let text = stdout(&out);
    let line = regex::Regex::new(
        r"^([CRUD])-(\S+) +(\d+\.\d\d|inf) MB/s \(1 \* 1 B (all-zero|random) files: \d+\.\d\ds\)$",
    )
    .unwrap();
    let mut seen = Vec::new();
    for l in text.lines() {
        let c = line
            .captures(l)
            .unwrap_or_else(|| panic!("unexpected line {l:?}"));
        // `%s-%-10s %9.2f`: the name is padded to 10, the rate right-aligned in 9
        assert_eq!(&l[12..13], " ", "{l:?}");
        assert_eq!(l.find(" MB/s"), Some(22), "{l:?}");
        seen.push(format!("{}-{} {}", &c[1], &c[2], &c[4]));
    }
    assert_eq!(
        seen,
        [
            "C-Z-TEST all-zero",
            "R-Z-TEST all-zero",
            "U-Z-TEST all-zero",
            "D-Z-TEST all-zero",
            "C-R-TEST random",
            "R-R-TEST random",
            "U-R-TEST random",
            "D-R-TEST random",
        ]
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    // test data removed, no archive left
    assert_eq!(std::fs::read_dir(work.join("data")).unwrap().count(), 0);
    let list = ok(rborg(&["list", "--short", "r"], &work, &env));
    assert_eq!(stdout(&list), "");
    if find_on_path("borg").is_some() {
        ok(borg(&["check", "r"], &work, &env));
        assert_eq!(stdout(&ok(borg(&["list", "r"], &work, &env))), "");
    }
}

/// An existing `borg-test-data` directory is refused and left alone (borg's os.makedirs).
#[test]
fn benchmark_crud_keeps_existing_test_data_dir() {
    let s = Scratch::new();
    let work = s.work();
    let env = with_var(&s.env(), "_BORG_BENCHMARK_CRUD_TEST", "1");
    ok(rborg(&["init", "-e", "none", "r"], &work, &env));
    let mine = work.join("data/borg-test-data/mine");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::write(&mine, b"keep").unwrap();
    let out = rborg(&["benchmark", "crud", "r", "data"], &work, &env);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(&mine).unwrap(), b"keep");
}
