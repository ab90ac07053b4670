//! `rborg init` against real borg: every mode gives a repository borg uses without complaint,
//! keys and client state land where borg puts them, texts and errors match borg's.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// Environment of a test user: own base dir, no answers pre-set (so an unexpected prompt
/// fails the command), plus `extra`.
fn user_env(base: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("BORG_BASE_DIR".to_string(), base.display().to_string()),
        ("TZ".to_string(), "UTC".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `[repository] id` of a repository config.
fn repo_id(repo: &Path) -> String {
    config_value(repo, "id").expect("repository id")
}

/// A single-line value of the repository config.
fn config_value(repo: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(repo.join("config")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .map(str::to_string)
}

/// The config options in file order, without the random id and key.
fn config_layout(repo: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(repo.join("config")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('\t') && !l.starts_with("id = ") && !l.starts_with("key = "))
        .map(str::to_string)
        .collect()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn mode_bits(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn is_keyfile_mode(mode: &str) -> bool {
    mode.starts_with("keyfile")
}

fn is_encrypted_mode(mode: &str) -> bool {
    mode.starts_with("keyfile") || mode.starts_with("repokey")
}

/// A small tree with a few files (one spanning several chunks).
fn make_tree(parent: &Path) -> PathBuf {
    let tree = parent.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("small.txt"), b"hello rborg\n").unwrap();
    let mut state = 0x1234_5678_9abc_def0u64;
    let big: Vec<u8> = (0..400_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(tree.join("sub/big.bin"), big).unwrap();
    std::fs::write(tree.join("sub/empty"), b"").unwrap();
    tree
}

/// rborg creates a repository in every mode; borg then reads it, checks it, backs up into it
/// (encrypting with the nonce reservation rborg left), and rborg reads borg's archive back.
/// Keys and security-dir files are what `borg init` leaves for the same mode.
#[test]
fn every_mode_gives_a_repository_borg_uses() {
    let test = "every_mode_gives_a_repository_borg_uses";
    if !borg_or_skip(test) {
        return;
    }
    let ours = Scratch::new();
    let theirs = Scratch::new();
    let tree = make_tree(&ours.work());
    let pass = [("BORG_PASSPHRASE", "pw")];
    let env = user_env(&ours.base(), &pass);
    let borg_env = user_env(&theirs.base(), &pass);
    for mode in MODES {
        let name = format!("repo-{mode}");
        let repo = ours.work().join(&name);
        let out = ok(rborg(&["init", "-e", mode, &name], &ours.work(), &env));
        assert!(out.stdout.is_empty());
        let reference = theirs.work().join(&name);
        ok(borg(
            &["init", "-e", mode, &name],
            &theirs.work(),
            &borg_env,
        ));

        // repository files and config as borg makes them
        assert_eq!(file_names(&repo), file_names(&reference), "{mode}");
        assert_eq!(config_layout(&repo), config_layout(&reference), "{mode}");
        let id = repo_id(&repo);
        let key_in_config = std::fs::read_to_string(repo.join("config"))
            .unwrap()
            .contains("\nkey = ");
        assert_eq!(key_in_config, !is_keyfile_mode(mode) && *mode != "none");
        assert_eq!(mode_bits(&repo.join("config")), 0o600);

        // key files: same name, mode 0600, for the right repository
        let keys = ours.base().join(".config/borg/keys");
        let borg_keys = theirs.base().join(".config/borg/keys");
        if is_keyfile_mode(mode) {
            let file = keys.join(name.replace('-', "_"));
            assert!(borg_keys.join(name.replace('-', "_")).is_file());
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.starts_with(&format!("BORG_KEY {id}\n")), "{text}");
            assert!(text.ends_with('\n'));
            assert_eq!(mode_bits(&file), 0o600);
            assert_eq!(mode_bits(&keys), 0o700);
        }
        assert_eq!(file_names(&keys), file_names(&borg_keys), "{mode}");

        // security dir: the same files as borg leaves, with borg's contents
        let security = ours.base().join(".config/borg/security").join(&id);
        let borg_security = theirs
            .base()
            .join(".config/borg/security")
            .join(repo_id(&reference));
        assert_eq!(file_names(&security), file_names(&borg_security), "{mode}");
        let read = |f: &str| std::fs::read_to_string(security.join(f)).unwrap();
        assert_eq!(read("location"), path_arg(&repo));
        assert_eq!(
            read("key-type"),
            std::fs::read_to_string(borg_security.join("key-type")).unwrap()
        );
        assert_eq!(read("manifest-timestamp").len(), 26);
        if is_encrypted_mode(mode) {
            assert_eq!(
                read("nonce"),
                std::fs::read_to_string(repo.join("nonce")).unwrap()
            );
        }

        // borg uses it (a `none` repo must not prompt: it is known from the security dir)
        let repo_arg = path_arg(&repo);
        let info = ok(borg(&["info", &repo_arg], &ours.work(), &env));
        assert!(stdout(&info).contains(&format!("Repository ID: {id}")));
        let list = ok(borg(&["list", &repo_arg], &ours.work(), &env));
        assert_eq!(stdout(&list), "");
        ok(borg(&["check", &repo_arg], &ours.work(), &env));
        let archive = format!("{repo_arg}::a1");
        ok(borg(&["create", &archive, "tree"], &ours.work(), &env));
        let check = ok(borg(
            &["check", "-v", "--verify-data", &repo_arg],
            &ours.work(),
            &env,
        ));
        let report = stderr(&check);
        assert!(
            report.contains("Finished full repository check, no problems found.")
                && report.contains("with 0 integrity errors.")
                && report.contains("Archive consistency check complete, no problems found."),
            "{mode}: {report}"
        );

        // and rborg reads borg's archive
        let listed = ok(rborg(&["list", "--short", &archive], &ours.work(), &env));
        let borg_listed = ok(borg(&["list", "--short", &archive], &ours.work(), &env));
        assert_eq!(stdout(&listed), stdout(&borg_listed));
        assert_eq!(stdout(&listed).lines().count(), 5);
        let dest = ours.path().join(format!("extract-{mode}"));
        std::fs::create_dir(&dest).unwrap();
        ok(rborg(&["extract", &archive], &dest, &env));
        assert_same_tree(&tree, &dest.join("tree"));
    }
}

/// The nonce semantics of a new encrypted repository: the manifest is encrypted with counter
/// 0, the reservation after it is in the repository's and the security dir's nonce file, and
/// borg continues after it.
#[test]
fn new_repository_nonces() {
    let test = "new_repository_nonces";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = user_env(&s.base(), &[("BORG_PASSPHRASE", "pw")]);
    make_tree(&s.work());
    for mode in ["repokey", "keyfile-blake2"] {
        let repo = s.work().join(mode);
        ok(rborg(&["init", "-e", mode, mode], &s.work(), &env));
        let text = std::fs::read_to_string(repo.join("nonce")).unwrap();
        assert_eq!(text.len(), 16, "{text:?}");
        let reserved = u64::from_str_radix(&text, 16).unwrap();
        let manifest = borg_get_obj(&repo, &"0".repeat(64), &s.work(), &env).unwrap();
        // type byte, 32 bytes MAC, 8 bytes counter (big endian), ciphertext
        let counter = u64::from_be_bytes(manifest[33..41].try_into().unwrap());
        assert_eq!(counter, 0, "{mode}: first manifest counter");
        let blocks = (manifest.len() as u64 - 41).div_ceil(16);
        assert_eq!(reserved, blocks + (1 << 28), "{mode}");
        let security = s
            .base()
            .join(".config/borg/security")
            .join(repo_id(&repo))
            .join("nonce");
        assert_eq!(std::fs::read_to_string(security).unwrap(), text);

        let repo_arg = path_arg(&repo);
        ok(borg(
            &["create", &format!("{repo_arg}::a"), "tree"],
            &s.work(),
            &env,
        ));
        let after = std::fs::read_to_string(repo.join("nonce")).unwrap();
        assert!(u64::from_str_radix(&after, 16).unwrap() > reserved);
        let data = borg_get_obj(&repo, &"0".repeat(64), &s.work(), &env).unwrap();
        let borg_counter = u64::from_be_bytes(data[33..41].try_into().unwrap());
        assert!(borg_counter >= reserved, "borg reused reserved counters");
        ok(borg(
            &["check", "--verify-data", &repo_arg],
            &s.work(),
            &env,
        ));
    }
}

/// borg derives the key file name from the location as given; rborg must pick the same name
/// (and the same `.2`, `.3`, … when it is taken) under the same keys dir.
#[test]
fn key_file_names_follow_borg() {
    let test = "key_file_names_follow_borg";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let keys = s.path().join("keys");
    let abs_repo = s.path().join("abs.repo-dir");
    let abs_arg = path_arg(&abs_repo);
    let env = user_env(
        &s.base(),
        &[
            ("BORG_PASSPHRASE", "pw"),
            ("BORG_KEYS_DIR", &path_arg(&keys)),
        ],
    );
    let cases = [
        ("plain", s.work().join("plain")),
        ("./x/../rel-repo", s.work().join("rel-repo")),
        (abs_arg.as_str(), abs_repo.clone()),
    ];
    for (location, repo_dir) in cases {
        let before = file_names(&keys);
        let out = ok(rborg(
            &["init", "-v", "-e", "keyfile", location],
            &s.work(),
            &env,
        ));
        let new: Vec<String> = file_names(&keys).difference(&before).cloned().collect();
        assert_eq!(new.len(), 1, "{location}: {new:?}");
        let name = new[0].clone();
        assert!(stderr(&out).contains(&format!(
            "Key in \"{}\" created.",
            keys.join(&name).display()
        )));
        // borg, for the same location: the same name, taken, so `.2`; then rborg `.3`
        std::fs::remove_dir_all(&repo_dir).unwrap();
        ok(borg(&["init", "-e", "keyfile", location], &s.work(), &env));
        assert!(keys.join(format!("{name}.2")).is_file(), "{location}");
        std::fs::remove_dir_all(&repo_dir).unwrap();
        ok(rborg(&["init", "-e", "keyfile", location], &s.work(), &env));
        assert!(keys.join(format!("{name}.3")).is_file(), "{location}");
        let id = repo_id(&repo_dir);
        let text = std::fs::read_to_string(keys.join(format!("{name}.3"))).unwrap();
        assert!(text.starts_with(&format!("BORG_KEY {id}\n")));
        std::fs::remove_dir_all(&repo_dir).unwrap();
    }
    let names = file_names(&keys);
    assert!(
        names.contains("plain") && names.contains("rel_repo"),
        "{names:?}"
    );
}

/// `BORG_KEY_FILE` names the new key file; an existing file is never overwritten.
#[test]
fn borg_key_file_is_honoured() {
    let test = "borg_key_file_is_honoured";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = user_env(
        &s.base(),
        &[("BORG_PASSPHRASE", "pw"), ("BORG_KEY_FILE", "my.key")],
    );
    let out = ok(rborg(
        &["init", "-v", "-e", "keyfile-blake2", "r1"],
        &s.work(),
        &env,
    ));
    let key_file = s.work().join("my.key");
    assert!(stderr(&out).contains(&format!("Key in \"{}\" created.", key_file.display())));
    assert_eq!(mode_bits(&key_file), 0o600);
    assert!(!s.base().join(".config/borg/keys").exists());
    ok(borg(&["list", "r1"], &s.work(), &env));

    let again = rborg(&["init", "-e", "keyfile", "r2"], &s.work(), &env);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        stderr(&again),
        format!(
            "Error: Aborting because key in \"{}\" already exists.\n",
            key_file.display()
        )
    );
    // unlike borg, the repository without a key is not left behind
    assert!(!s.work().join("r2").exists());
    ok(borg(&["list", "r1"], &s.work(), &env));
}

/// borg 1.4's advice paragraph, shown for every mode with a key.
const ADVICE_1_4: &str = "
IMPORTANT: you will need both KEY AND PASSPHRASE to access this repo!

Key storage location depends on the mode:
- repokey modes: key is stored in the repository directory.
- keyfile modes: key is stored in the home directory of this user.

For any mode, you should:
1. Export the borg key and store the result at a safe place:
   borg key export           REPOSITORY encrypted-key-backup
   borg key export --paper   REPOSITORY encrypted-key-backup.txt
   borg key export --qr-html REPOSITORY encrypted-key-backup.html
2. Write down the borg key passphrase and store it at safe place.

";

/// What borg 1.2.4 prints that rborg does not: the cache creation lines (rborg's init does
/// not build borg's cache) and, from its TAM notice on, the 1.2 closing paragraphs (rborg
/// prints borg 1.4's advice instead).
fn borg_lines_rborg_shares(stderr: &str) -> String {
    let mut kept = String::new();
    for line in stderr.lines() {
        if line.starts_with("By default repositories initialized") || line.starts_with("IMPORTANT:")
        {
            break;
        }
        let cache_line = line == "Synchronizing chunks cache..."
            || line.starts_with("Archives: 0, w/ cached Idx")
            || line == "Done.";
        if !cache_line {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.trim_end().to_string() + "\n"
}

/// stderr of `init -v` matches borg's for the same location (paths made equal by using the
/// same relative names in two scratch dirs): borg's lines, then borg 1.4's advice.
#[test]
fn init_texts_match_borg() {
    let test = "init_texts_match_borg";
    if !borg_or_skip(test) {
        return;
    }
    let ours = Scratch::new();
    let theirs = Scratch::new();
    for mode in MODES {
        let name = format!("repo-{mode}");
        let env_in = |s: &Scratch| {
            user_env(
                &s.base(),
                &[("BORG_NEW_PASSPHRASE", "pw"), ("BORG_KEYS_DIR", "keys")],
            )
        };
        let mine = ok(rborg(
            &["init", "-v", "-e", mode, &name],
            &ours.work(),
            &env_in(&ours),
        ));
        let real = ok(borg(
            &["init", "-v", "-e", mode, &name],
            &theirs.work(),
            &env_in(&theirs),
        ));
        let normalize = |text: String, s: &Scratch| text.replace(&path_arg(&s.work()), "<WORK>");
        let expected = normalize(borg_lines_rborg_shares(&stderr(&real)), &theirs);
        let mut got = normalize(stderr(&mine), &ours);
        if *mode != "none" {
            assert!(got.ends_with(ADVICE_1_4), "{mode}: {got}");
            got.truncate(got.len() - ADVICE_1_4.len());
        }
        assert_eq!(got, expected, "{mode}");
    }
    // without -v only the advice
    let env = user_env(&ours.base(), &[("BORG_NEW_PASSPHRASE", "pw")]);
    let quiet = ok(rborg(
        &["init", "-e", "repokey", "quiet"],
        &ours.work(),
        &env,
    ));
    assert_eq!(stderr(&quiet), ADVICE_1_4);
    let quiet = ok(rborg(
        &["init", "-e", "none", "quiet-none"],
        &ours.work(),
        &env,
    ));
    assert_eq!(stderr(&quiet), "");
}

/// The passphrase sources of a new key (cli.md §12.3), the interactive double prompt included.
#[test]
fn new_passphrase_sources() {
    let test = "new_passphrase_sources";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let base = s.base();
    let opens_with = |repo: &str, passphrase: &str| {
        let env = user_env(&base, &[("BORG_PASSPHRASE", passphrase)]);
        borg(&["list", repo], &s.work(), &env).status.success()
    };
    // BORG_NEW_PASSPHRASE wins over BORG_PASSPHRASE
    let env = user_env(
        &base,
        &[("BORG_NEW_PASSPHRASE", "new"), ("BORG_PASSPHRASE", "old")],
    );
    ok(rborg(&["init", "-e", "repokey", "r1"], &s.work(), &env));
    assert!(opens_with("r1", "new") && !opens_with("r1", "old"));
    let env = user_env(&base, &[("BORG_PASSPHRASE", "old")]);
    ok(rborg(&["init", "-e", "keyfile", "r2"], &s.work(), &env));
    assert!(opens_with("r2", "old"));

    // interactive: a mismatch, then a match, then the display question answered on stdin;
    // the same dialogue as borg's (minus Python's warning about echoing)
    let dialogue = b"one\ntwo\nsecret\nsecret\nmaybe\ny\n";
    let env = user_env(&base, &[]);
    let mine = run_detached(
        &rborg_bin(),
        &["init", "-e", "repokey", "r3"],
        &s.work(),
        &env,
        dialogue,
    );
    assert!(mine.status.success(), "{}", stderr(&mine));
    assert!(opens_with("r3", "secret"));
    let real = run_detached(
        Path::new("borg"),
        &["init", "-e", "repokey", "r4"],
        &s.work(),
        &env,
        dialogue,
    );
    assert!(real.status.success(), "{}", stderr(&real));
    let dialogue_of = |o: &std::process::Output| -> String {
        stderr(o)
            .lines()
            .filter(|l| !l.contains("GetPassWarning") && !l.starts_with("Warning: Password"))
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(dialogue_of(&mine), dialogue_of(&real));
    let text = stderr(&mine);
    assert!(text.contains("Passphrases do not match"));
    assert!(text.contains("Your passphrase (between double-quotes): \"secret\""));

    // the display question answered from the environment
    let env = user_env(
        &base,
        &[
            ("BORG_DISPLAY_PASSPHRASE", "yes"),
            ("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "no"),
        ],
    );
    let out = run_detached(
        &rborg_bin(),
        &["init", "-v", "-e", "authenticated", "r5"],
        &s.work(),
        &env,
        "pässword\npässword\n".as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains(
        "Do you want your passphrase to be displayed for verification? [yN]: yes (from BORG_DISPLAY_PASSPHRASE)\n"
    ));
    assert!(text.contains("Your passphrase (UTF-8 encoding in hex): 70c3a47373776f7264\n"));
    assert!(text.contains("Remember your passphrase. Your data will be inaccessible without it.\n"));
    assert!(opens_with("r5", "pässword"));

    // no passphrase source at all: borg's NoPassphraseFailure, and no repository left
    let env = user_env(&base, &[("BORG_EXIT_CODES", "modern")]);
    let out = run_detached(
        &rborg_bin(),
        &["init", "-e", "repokey", "r6"],
        &s.work(),
        &env,
        b"",
    );
    assert_eq!(out.status.code(), Some(50), "{}", stderr(&out));
    assert!(stderr(&out).contains(
        "Cannot acquire a passphrase: BORG_PASSPHRASE is not set. BORG_PASSCOMMAND is not set. Interactive password query failed."
    ));
    assert!(!s.work().join("r6").exists());
}

/// Refusals with borg's messages, modern exit codes and legacy 2 (borg 1.2 agrees on the
/// messages; it has only legacy codes).
#[test]
fn init_errors() {
    let test = "init_errors";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let work = s.work();
    let env = user_env(&s.base(), &[("BORG_PASSPHRASE", "pw")]);
    ok(rborg(&["init", "-e", "none", "existing"], &work, &env));
    std::fs::create_dir(work.join("nonempty")).unwrap();
    std::fs::write(work.join("nonempty/file"), b"x").unwrap();
    std::fs::write(work.join("plainfile"), b"x").unwrap();
    let w = path_arg(&work);
    let cases: [(&str, i32, String); 5] = [
        (
            "existing",
            10,
            format!("A repository already exists at {w}/existing."),
        ),
        (
            "existing/inner",
            10,
            format!("A repository already exists at {w}/existing."),
        ),
        (
            "nonempty",
            19,
            format!("There is already something at {w}/nonempty."),
        ),
        (
            "plainfile",
            19,
            format!("There is already something at {w}/plainfile."),
        ),
        (
            "missing/parent/repo",
            18,
            format!(
                "The parent path of the repo directory [{w}/missing/parent/repo] does not exist."
            ),
        ),
    ];
    for (target, modern_rc, message) in &cases {
        for (codes, rc) in [("modern", *modern_rc), ("legacy", 2)] {
            let mut env = env.clone();
            env.push(("BORG_EXIT_CODES".into(), codes.into()));
            let out = rborg(&["init", "-e", "repokey", target], &work, &env);
            assert_eq!(out.status.code(), Some(rc), "{target} {codes}");
            assert_eq!(stderr(&out), format!("{message}\n"), "{target}");
        }
        let real = borg(&["init", "-e", "repokey", target], &work, &env);
        assert_eq!(real.status.code(), Some(2));
        assert_eq!(stderr(&real), format!("{message}\n"), "borg, {target}");
        let mut env = env.clone();
        env.push(("BORG_EXIT_CODES".into(), "modern".into()));
        let json = rborg(&["--log-json", "init", "-e", "none", target], &work, &env);
        let msgid = match modern_rc {
            10 => "Repository.AlreadyExists",
            18 => "Repository.ParentPathDoesNotExist",
            _ => "Repository.PathAlreadyExists",
        };
        assert!(
            stderr(&json).contains(&format!("\"msgid\": \"{msgid}\"")),
            "{}",
            stderr(&json)
        );
    }
    assert!(!work.join("missing").exists());
    // the parent dirs on request
    ok(rborg(
        &[
            "init",
            "-e",
            "none",
            "--make-parent-dirs",
            "missing/parent/repo",
        ],
        &work,
        &env,
    ));
    ok(borg(&["check", "missing/parent/repo"], &work, &env));
    // the mode is required
    let out = rborg(&["init", "r"], &work, &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("the following arguments are required: -e/--encryption"));
}

/// `--append-only` and `--storage-quota` end up in the config as borg writes them, and borg
/// respects them.
#[test]
fn init_options_match_borg() {
    let test = "init_options_match_borg";
    if !borg_or_skip(test) {
        return;
    }
    let ours = Scratch::new();
    let theirs = Scratch::new();
    make_tree(&ours.work());
    let opts = ["--append-only", "--storage-quota", "1.5G"];
    let env = user_env(&ours.base(), &[("BORG_PASSPHRASE", "pw")]);
    let mut args = vec!["init", "-e", "repokey-blake2"];
    args.extend(opts);
    args.push("r");
    ok(rborg(&args, &ours.work(), &env));
    ok(borg(
        &args,
        &theirs.work(),
        &user_env(&theirs.base(), &[("BORG_PASSPHRASE", "pw")]),
    ));
    let repo = ours.work().join("r");
    assert_eq!(
        config_layout(&repo),
        config_layout(&theirs.work().join("r"))
    );
    assert_eq!(config_value(&repo, "append_only").as_deref(), Some("1"));
    assert_eq!(
        config_value(&repo, "storage_quota").as_deref(),
        Some("1500000000")
    );
    ok(borg(&["create", "r::a", "tree"], &ours.work(), &env));
    // append-only: borg keeps a transaction log
    assert!(repo.join("transactions").is_file());
    ok(borg(&["check", "--verify-data", "r"], &ours.work(), &env));
}

/// Chunk-id secrets of another repository (`--import-related-secrets`, borg 1.4.5): the new
/// key has the same id key and chunk seed; a different id-hash family is refused.
#[test]
fn import_related_secrets() {
    let test = "import_related_secrets";
    if !borg_or_skip(test) {
        return;
    }
    let Some(python) = borg_python() else {
        skip(test, "borg's Python modules are not importable");
        return;
    };
    const SECRETS: &str = r#"
import json, sys
from borg.repository import Repository
from borg.helpers import Manifest
from borg.logger import setup_logging
setup_logging()
with Repository(sys.argv[1], exclusive=False) as repository:
    manifest, key = Manifest.load(repository, Manifest.NO_OPERATION_CHECK)
    print(json.dumps({'version': 1, 'id_key': key.id_key.hex(), 'chunk_seed': key.chunk_seed,
                      'key_name': key.NAME}))
"#;
    let s = Scratch::new();
    let env = user_env(&s.base(), &[("BORG_PASSPHRASE", "pw")]);
    let secrets_of = |repo: &str| {
        let out = ok(run_in(&python, &["-c", SECRETS, repo], &s.work(), &env));
        stdout(&out)
    };
    ok(borg(&["init", "-e", "repokey", "source"], &s.work(), &env));
    let exported = secrets_of("source");
    std::fs::write(s.work().join("secrets.json"), &exported).unwrap();
    ok(rborg(
        &[
            "init",
            "-e",
            "keyfile",
            "--import-related-secrets",
            "secrets.json",
            "related",
        ],
        &s.work(),
        &env,
    ));
    let mine: serde_json::Value = serde_json::from_str(&secrets_of("related")).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(mine["id_key"], theirs["id_key"]);
    assert_eq!(mine["chunk_seed"], theirs["chunk_seed"]);
    assert_eq!(mine["key_name"], "key file");

    let mut modern = env.clone();
    modern.push(("BORG_EXIT_CODES".into(), "modern".into()));
    let out = rborg(
        &[
            "init",
            "-e",
            "repokey-blake2",
            "--import-related-secrets",
            "secrets.json",
            "blake",
        ],
        &s.work(),
        &modern,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("You must keep the same ID hash"));
    assert!(!s.work().join("blake").exists());
    std::fs::write(s.work().join("bad.json"), "{\"version\": 2}").unwrap();
    let out = rborg(
        &[
            "init",
            "-e",
            "repokey",
            "--import-related-secrets",
            "bad.json",
            "bad",
        ],
        &s.work(),
        &modern,
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        stderr(&out),
        "Command Error: Unsupported related secrets version: 2\n"
    );
    assert!(!s.work().join("bad").exists());
}
