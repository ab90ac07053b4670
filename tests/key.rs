//! `rborg key export|import|change-passphrase|migrate-to-repokey` against real borg 1.2.4:
//! exports are byte-identical (qr-html: the same key text), keys exported by one tool import
//! into the other, passphrases changed by one tool unlock in the other, errors use borg's
//! rc and messages.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

const MODES: [&str; 6] = [
    "repokey",
    "keyfile",
    "repokey-blake2",
    "keyfile-blake2",
    "authenticated",
    "authenticated-blake2",
];

fn setup(test: &str, mode: &str) -> Option<(Scratch, String)> {
    let fixtures = fixtures_or_skip(test)?;
    if !borg_or_skip(test) {
        return None;
    }
    let s = Scratch::new();
    s.copy_fixture(&fixtures, mode);
    Some((s, format!("../repos/{mode}")))
}

fn legacy(env: &[(String, String)]) -> Vec<(String, String)> {
    with_var(env, "BORG_EXIT_CODES", "legacy")
}

fn modern(env: &[(String, String)]) -> Vec<(String, String)> {
    with_var(env, "BORG_EXIT_CODES", "modern")
}

/// Run with `input` on stdin.
fn run_with_stdin(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    env: &[(String, String)],
    input: &[u8],
) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("BORG_REPO")
        .env_remove("BORG_PASSCOMMAND")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn borg_path() -> PathBuf {
    PathBuf::from("borg")
}

/// The key text inside the `<textarea id="keyfile" …>` of a qr-html export (both tools).
fn textarea(html: &[u8]) -> String {
    rborg::crypto::keymanager::key_text_of_qr_html(&String::from_utf8_lossy(html))
        .expect("textarea with the key")
}

#[test]
fn exports_are_identical_to_borg() {
    for mode in MODES {
        let Some((s, repo)) = setup("exports_are_identical_to_borg", mode) else {
            return;
        };
        let (w, env) = (s.work(), s.env());
        for fmt in [None, Some("--paper")] {
            let mut args = vec!["key", "export"];
            args.extend(fmt);
            args.push(&repo);
            let b = ok(borg(&args, &w, &env));
            let r = ok(rborg(&args, &w, &env));
            assert_eq!(stdout(&r), stdout(&b), "{mode} {fmt:?} to stdout");
            // To a file and to `-`.
            args.push("out");
            ok(rborg(&args, &w, &env));
            assert_eq!(std::fs::read(w.join("out")).unwrap(), b.stdout, "{mode}");
            *args.last_mut().unwrap() = "-";
            assert_eq!(ok(rborg(&args, &w, &env)).stdout, b.stdout);
        }
        let b = ok(borg(&["key", "export", "--qr-html", &repo], &w, &env));
        let r = ok(rborg(&["key", "export", "--qr-html", &repo], &w, &env));
        assert_eq!(textarea(&r.stdout), textarea(&b.stdout), "{mode} qr-html");
        let html = stdout(&r);
        assert!(html.contains("<svg") && !html.contains("<script"));
        let paper = ok(borg(&["key", "export", "--paper", &repo], &w, &env));
        assert!(html.contains(stdout(&paper).lines().nth(3).unwrap()));
    }
}

#[test]
fn export_errors() {
    let Some((s, _)) = setup("export_errors", "none") else {
        return;
    };
    let (w, env) = (s.work(), s.env());
    for tool in [
        borg as fn(&[&str], &Path, &[(String, String)]) -> Output,
        rborg,
    ] {
        let o = tool(&["key", "export", "../repos/none"], &w, &legacy(&env));
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("management not available for unencrypted repositories."));
    }
    let o = rborg(&["key", "export", "../repos/none"], &w, &modern(&env));
    assert_eq!(o.status.code(), Some(46));
    assert_eq!(
        stderr(&o),
        "Key management not available for unencrypted repositories.\n"
    );
    s.copy_fixture(&fixtures_dir().unwrap(), "repokey");
    let o = rborg(
        &["key", "export", "../repos/repokey", "."],
        &w,
        &modern(&env),
    );
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("'.' must be a file, not a directory"));
}

/// Export with `exporter`, then restore with `importer` into a copy whose key is gone, and
/// check that the other tool opens the repository.
fn import_round_trip(mode: &str, paper: bool, exporter: &Path, importer: &Path) {
    let Some((s, repo)) = setup("import_round_trip", mode) else {
        return;
    };
    let (w, env) = (s.work(), s.env());
    let fmt = if paper { "--paper" } else { "--qr-html" };
    let args: Vec<&str> = if paper {
        vec!["key", "export", fmt, &repo, "backup"]
    } else {
        vec!["key", "export", &repo, "backup"]
    };
    ok(run_in(exporter, &args, &w, &env));
    let keyfile_mode = mode.starts_with("keyfile");
    let key_path = s.path().join("keys").join(format!("{mode}.key"));
    let original_key = std::fs::read(&key_path).unwrap_or_default();
    if keyfile_mode {
        std::fs::remove_file(&key_path).unwrap();
    }
    let out = if paper {
        let text = std::fs::read_to_string(w.join("backup")).unwrap();
        let answers: String = text
            .lines()
            .skip(3)
            .map(|l| format!("{}\n", l.split_once(": ").unwrap().1))
            .collect();
        run_with_stdin(
            importer,
            &["key", "import", "--paper", &repo],
            &w,
            &env,
            answers.as_bytes(),
        )
    } else {
        run_in(importer, &["key", "import", &repo, "backup"], &w, &env)
    };
    let out = ok(out);
    if keyfile_mode {
        // Restored under the location's key file name, with the original's content.
        let restored = s
            .path()
            .join("keys")
            .join(format!("repos_{}", mode.replace('-', "_")));
        assert_eq!(std::fs::read(restored).unwrap(), original_key, "{mode}");
    }
    if paper {
        assert!(stdout(&out).starts_with("id:  1:  2: "), "{}", stdout(&out));
    }
    // Both tools open the repository with the restored key.
    ok(borg(&["list", &repo], &w, &env));
    ok(rborg(&["list", &repo], &w, &env));
}

#[test]
fn keys_exported_by_borg_import_into_rborg() {
    for mode in ["repokey", "keyfile-blake2", "authenticated"] {
        import_round_trip(mode, false, &borg_path(), &rborg_bin());
        import_round_trip(mode, true, &borg_path(), &rborg_bin());
    }
}

#[test]
fn keys_exported_by_rborg_import_into_borg() {
    for mode in ["keyfile", "repokey-blake2"] {
        import_round_trip(mode, false, &rborg_bin(), &borg_path());
        import_round_trip(mode, true, &rborg_bin(), &borg_path());
    }
}

#[test]
fn import_writes_what_borg_writes() {
    // Repokey import from stdin: the config borg writes (trailing newline of the blob kept).
    let Some((s, repo)) = setup("import_writes_what_borg_writes", "repokey") else {
        return;
    };
    let (w, env) = (s.work(), s.env());
    let backup = ok(borg(&["key", "export", &repo], &w, &env)).stdout;
    let config = w.join(&repo).join("config");
    let before = std::fs::read(&config).unwrap();
    ok(run_with_stdin(
        &borg_path(),
        &["key", "import", &repo, "-"],
        &w,
        &env,
        &backup,
    ));
    let by_borg = std::fs::read(&config).unwrap();
    std::fs::write(&config, &before).unwrap();
    ok(run_with_stdin(
        &rborg_bin(),
        &["key", "import", &repo, "-"],
        &w,
        &env,
        &backup,
    ));
    assert_eq!(std::fs::read(&config).unwrap(), by_borg);
    // Paper import with typing mistakes: same dialogue, same result.
    let paper = stdout(&ok(borg(&["key", "export", "--paper", &repo], &w, &env)));
    let good: Vec<String> = paper
        .lines()
        .skip(3)
        .map(|l| l.split_once(": ").unwrap().1.to_string())
        .collect();
    let mut answers = vec![
        "1/2/3-00".to_string(),
        "no dash".into(),
        "a/b-c".into(),
        String::new(),
        "maybe".into(),
        "n".into(),
        good[0].clone(),
        "zz - 00".into(),
        "abc - 00".into(),
        good[1].replace(" - ", " - x"),
        good[1].to_uppercase(),
    ];
    answers.extend(good[2..].iter().cloned());
    let input = answers.join("\n") + "\n";
    let mut results = Vec::new();
    for tool in [borg_path(), rborg_bin()] {
        std::fs::write(&config, &before).unwrap();
        let out = ok(run_with_stdin(
            &tool,
            &["key", "import", "--paper", &repo],
            &w,
            &env,
            input.as_bytes(),
        ));
        results.push((out.stdout, out.stderr, std::fs::read(&config).unwrap()));
    }
    assert_eq!(
        String::from_utf8_lossy(&results[1].0),
        String::from_utf8_lossy(&results[0].0)
    );
    assert_eq!(results[1].1, results[0].1);
    assert_eq!(results[1].2, results[0].2);
    // Aborting (blank line, yes) changes nothing and succeeds.
    std::fs::write(&config, &before).unwrap();
    for tool in [borg_path(), rborg_bin()] {
        let out = ok(run_with_stdin(
            &tool,
            &["key", "import", "--paper", &repo],
            &w,
            &env,
            b"\ny\n",
        ));
        assert_eq!(stdout(&out), "id: \n - aborted\n");
        assert_eq!(stderr(&out), "Abort import? [yN]:");
        assert_eq!(std::fs::read(&config).unwrap(), before);
    }
}

#[test]
fn import_errors() {
    let Some((s, repo)) = setup("import_errors", "repokey") else {
        return;
    };
    let (w, env) = (s.work(), s.env());
    s.copy_fixture(&fixtures_dir().unwrap(), "keyfile");
    std::fs::write(w.join("garbage"), "no key here\n").unwrap();
    ok(borg(
        &["key", "export", "../repos/keyfile", "other"],
        &w,
        &env,
    ));
    let cases: [(&[&str], i32, &str, &str); 5] = [
        (
            &["key", "import", &repo, "garbage"],
            43,
            "This file is not a borg key backup, aborting.",
            "This file is not a Borg key backup, aborting.",
        ),
        (
            &["key", "import", &repo, "other"],
            45,
            "This key backup seems to be for a different backup repository, aborting.",
            "This key backup seems to be for a different backup repository, aborting.",
        ),
        (
            &["key", "import", &repo, "missing"],
            4,
            "input file does not exist: missing",
            "Command Error: input file does not exist: missing",
        ),
        (
            &["key", "import", &repo],
            4,
            "input file to import key from expected",
            "Command Error: expected input file to import key from",
        ),
        (
            &["key", "import", "--paper", &repo, "other"],
            4,
            "with --paper import from file is not supported",
            "Command Error: with --paper import from file is not supported",
        ),
    ];
    let config = std::fs::read(w.join(&repo).join("config")).unwrap();
    for (args, rc, borg_msg, rborg_msg) in cases {
        let b = borg(args, &w, &env);
        assert_eq!(
            (b.status.code(), stderr(&b)),
            (Some(2), format!("{borg_msg}\n"))
        );
        let r = rborg(args, &w, &legacy(&env));
        assert_eq!(
            (r.status.code(), stderr(&r)),
            (Some(2), format!("{rborg_msg}\n"))
        );
        assert_eq!(rborg(args, &w, &modern(&env)).status.code(), Some(rc));
    }
    assert_eq!(std::fs::read(w.join(&repo).join("config")).unwrap(), config);
    // A paper key of another repository.
    let paper = stdout(&ok(borg(
        &["key", "export", "--paper", "../repos/keyfile"],
        &w,
        &env,
    )));
    let id_line = paper.lines().nth(3).unwrap().strip_prefix("id: ").unwrap();
    let input = format!("{id_line}\n");
    for tool in [borg_path(), rborg_bin()] {
        let o = run_with_stdin(
            &tool,
            &["key", "import", "--paper", &repo],
            &w,
            &legacy(&env),
            input.as_bytes(),
        );
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(stdout(&o), "id: ");
        assert!(stderr(&o).contains("different backup repository"));
    }
}

/// Change the passphrase with `changer`, then open with `opener` using the new one only.
fn change_and_open(mode: &str, changer: &Path, opener: &Path) {
    let Some((s, repo)) = setup("change_and_open", mode) else {
        return;
    };
    let (w, env) = (s.work(), s.env());
    let env_new = with_var(&env, "BORG_NEW_PASSPHRASE", "brand new");
    let out = ok(run_in(
        changer,
        &["key", "change-passphrase", "-v", &repo],
        &w,
        &env_new,
    ));
    // borg shows the key file under the keys dir as given (BORG_KEYS_DIR=../keys)
    let location = if mode.starts_with("keyfile") {
        PathBuf::from(format!("../keys/{mode}.key"))
    } else {
        w.join(&repo).canonicalize().unwrap()
    };
    let expected = format!("Key updated\nKey location: {}\n", location.display());
    assert!(
        stderr(&out).ends_with(&expected),
        "{mode}: {}",
        stderr(&out)
    );
    let env_after = with_var(&env, "BORG_PASSPHRASE", "brand new");
    ok(run_in(opener, &["list", &repo], &w, &env_after));
    let old = run_in(opener, &["list", &repo], &w, &legacy(&env));
    assert_eq!(
        old.status.code(),
        Some(2),
        "old passphrase still works ({mode})"
    );
}

#[test]
fn passphrase_changed_by_rborg_works_in_borg() {
    for mode in MODES {
        change_and_open(mode, &rborg_bin(), &borg_path());
    }
}

#[test]
fn passphrase_changed_by_borg_works_in_rborg() {
    for mode in ["repokey", "keyfile-blake2"] {
        change_and_open(mode, &borg_path(), &rborg_bin());
    }
}

#[test]
fn change_passphrase_of_unencrypted_repo() {
    let Some((s, repo)) = setup("change_passphrase_of_unencrypted_repo", "none") else {
        return;
    };
    let (w, env) = (s.work(), s.env());
    let b = borg(&["key", "change-passphrase", &repo], &w, &env);
    assert_eq!(b.status.code(), Some(2));
    assert_eq!(
        stdout(&b),
        "This repository is not encrypted, cannot change the passphrase.\n"
    );
    let r = rborg(&["key", "change-passphrase", &repo], &w, &modern(&env));
    assert_eq!(r.status.code(), Some(4));
    assert_eq!(
        stderr(&r),
        "Command Error: This repository is not encrypted, cannot change the passphrase.\n"
    );
}

/// Turn a fresh repokey repository into a borg < 1.0 "passphrase" mode one: manifest with
/// type byte 0x01 under the key derived from `passphrase`, no key in the config.
fn make_legacy_passphrase_repo(repo_dir: &Path, passphrase: &str) {
    use rborg::compress::CompressionSpec;
    use rborg::crypto::keymanager::legacy_passphrase_material;
    use rborg::crypto::{Key, KeySource, KeyType};
    use rborg::repository::local::LocalRepository;
    use rborg::repository::{Repository, MANIFEST_ID};
    let repo = LocalRepository::open(repo_dir, true, 1.0, true, false).unwrap();
    let blob = repo.load_key().unwrap();
    let material = rborg::crypto::decrypt_key_blob(&blob, common::PASSPHRASE)
        .unwrap()
        .unwrap();
    let current = Key::from_material(KeyType::RepoKey, material, KeySource::Nowhere).unwrap();
    let stored = repo.get(&MANIFEST_ID).unwrap();
    let plain = current.decrypt(None, &stored).unwrap();
    let (mut manifest, _) = current.unpack_and_verify_manifest(&plain, false).unwrap();
    if let rmpv::Value::Map(entries) = &mut manifest {
        entries.retain(|(k, _)| k.as_str() != Some("tam"));
    }
    let legacy_material = legacy_passphrase_material(&repo.id(), passphrase);
    let legacy = Key::from_material(KeyType::RepoKey, legacy_material, KeySource::Nowhere).unwrap();
    let packed = legacy.pack_and_authenticate_metadata(manifest, b"manifest", None);
    let mut data = legacy.encrypt(&CompressionSpec::Lz4.compress(&packed), 1 << 20);
    data[0] = KeyType::Passphrase.byte();
    repo.put(&MANIFEST_ID, &data).unwrap();
    repo.commit(false, 0.1, false).unwrap();
    repo.save_key(b"").unwrap();
}

#[test]
fn migrate_to_repokey_like_borg() {
    if !borg_or_skip("migrate_to_repokey_like_borg") {
        return;
    }
    for tool in [borg_path(), rborg_bin()] {
        let s = Scratch::new();
        let w = s.work();
        let env = with_var(&env_with_base(&s.base()), "BORG_NEW_PASSPHRASE", "migrated");
        ok(borg(
            &["init", "-e", "repokey", "repo"],
            &w,
            &env_with_base(&s.base()),
        ));
        make_legacy_passphrase_repo(&w.join("repo"), "old secret");
        // Wrong passphrase: borg 1.2.4 fails on the MAC at once (a traceback), rborg too.
        let wrong = with_var(&legacy(&env), "BORG_PASSPHRASE", "wrong");
        let o = run_with_stdin(
            &tool,
            &["key", "migrate-to-repokey", "repo"],
            &w,
            &wrong,
            b"x\ny\nz\n",
        );
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("MAC Authentication failed"),
            "{}",
            stderr(&o)
        );
        let old = with_var(&env, "BORG_PASSPHRASE", "old secret");
        let out = ok(run_in(
            &tool,
            &["key", "migrate-to-repokey", "-v", "repo"],
            &w,
            &old,
        ));
        assert!(stderr(&out).ends_with("Key updated\n"), "{}", stderr(&out));
        // The repokey holds the legacy secrets; both tools open the repository with it.
        let after = with_var(&env, "BORG_PASSPHRASE", "migrated");
        let base2 = s.path().join("base2");
        let after2 = with_var(&after, "BORG_BASE_DIR", &base2.display().to_string());
        ok(borg(&["list", "repo"], &w, &after2));
        ok(rborg(&["list", "repo"], &w, &after2));
    }
}

#[test]
fn migrate_modern_repo_fails_like_borg() {
    let Some((s, repo)) = setup("migrate_modern_repo_fails_like_borg", "repokey") else {
        return;
    };
    let (w, env) = (s.work(), legacy(&s.env()));
    for tool in [borg_path(), rborg_bin()] {
        let o = run_with_stdin(&tool, &["key", "migrate-to-repokey", &repo], &w, &env, b"");
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o)
                .to_lowercase()
                .contains("an not acquire a passphrase")
                || stderr(&o).contains("Cannot acquire a passphrase"),
            "{}",
            stderr(&o)
        );
    }
}
