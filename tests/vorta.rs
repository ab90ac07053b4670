//! Vorta (the borg GUI) driving rborg: every command line Vorta builds for borg 1.x
//! (src/vorta/borg/*.py), run with the environment its BorgJob sets, through a `borg` on
//! PATH that is rborg (as a packager installs it). Each run is read the way Vorta reads it:
//! its stderr loop (`--log-json` records by `type`), `json.loads` of stdout, and every key
//! its `process_result`/result views use, with the type they need. Vorta gates features on
//! the second word of `borg --version`; that parse and the features it enables are checked.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Vorta's `MIN_BORG_FOR_FEATURE` (_compatibility.py).
const FEATURES: &[(&str, &str)] = &[
    ("BLAKE2", "1.1.4"),
    ("ZSTD", "1.1.4"),
    ("JSON_LOG", "1.1.0"),
    ("DIFF_JSON_LINES", "1.1.16"),
    ("COMPACT_SUBCOMMAND", "1.2.0a1"),
    ("V122", "1.2.2"),
    ("V2", "2.0.0b10"),
    ("CHANGE_PASSPHRASE", "1.1.0"),
];

/// A version as `packaging.version.Version` orders the ones above: release numbers, then a
/// pre-release (`a` < `b` < `rc`) sorting before the final release.
fn pep440(text: &str) -> (Vec<u64>, (u8, u64)) {
    let cut = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let mut release: Vec<u64> = text[..cut]
        .split('.')
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("not a version: {text}"))
        })
        .collect();
    while release.len() < 3 {
        release.push(0);
    }
    let pre = &text[cut..];
    let rank = if pre.is_empty() {
        (3, 0)
    } else {
        let digits = pre.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let kind = match &pre[..pre.len() - digits.len()] {
            "a" => 0,
            "b" => 1,
            "rc" => 2,
            other => panic!("pre-release {other} in {text}"),
        };
        (kind, digits.parse().unwrap_or(0))
    };
    (release, rank)
}

fn feature_on(version: &str, feature: &str) -> bool {
    let min = FEATURES.iter().find(|f| f.0 == feature).unwrap().1;
    pep440(version) >= pep440(min)
}

/// What Vorta's `run()` made of a job: the exit code, stdout as JSON (or the raw text, as
/// `result['data']`), the JSON records of stderr and the lines it could not parse.
struct Job {
    rc: i32,
    data: Value,
    records: Vec<Value>,
    text_lines: Vec<String>,
}

impl Job {
    fn ok(&self, what: &str) -> &Job {
        assert_eq!(
            self.rc, 0,
            "{what}: rc\n{:#?}\n{:?}",
            self.records, self.text_lines
        );
        assert!(
            self.text_lines.is_empty(),
            "{what}: Vorta logs non-JSON stderr as warnings: {:?}",
            self.text_lines
        );
        self
    }

    /// The `log_message`s at WARNING or above (Vorta's `result['errors']`).
    fn errors(&self) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| r["type"] == "log_message")
            .filter(|r| {
                matches!(
                    r["levelname"].as_str(),
                    Some("WARNING" | "ERROR" | "CRITICAL")
                )
            })
            .collect()
    }

    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == kind).collect()
    }
}

/// Vorta's stderr loop: every JSON line must be an object with a `type`, and the keys it
/// reads for that type must be there with the types it uses them as.
fn read_stderr_as_vorta(stderr: &str) -> (Vec<Value>, Vec<String>) {
    let mut records = Vec::new();
    let mut text = Vec::new();
    for line in stderr.split('\n') {
        let Ok(parsed) = serde_json::from_str::<Value>(line) else {
            if !line.trim().is_empty() {
                text.push(line.to_string());
            }
            continue;
        };
        let kind = parsed["type"]
            .as_str()
            .unwrap_or_else(|| panic!("Vorta indexes parsed['type']: {line}"));
        match kind {
            "log_message" => {
                // getattr(logging, levelname)
                assert!(
                    matches!(
                        parsed["levelname"].as_str(),
                        Some("DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL")
                    ),
                    "{line}"
                );
                assert!(parsed["message"].is_string(), "{line}");
                assert!(
                    parsed.get("msgid").is_none() || parsed["msgid"].is_string(),
                    "{line}"
                );
            }
            "file_status" => {
                assert!(
                    parsed["path"].is_string() && parsed["status"].is_string(),
                    "{line}"
                );
            }
            "progress_percent" => {
                assert!(
                    parsed.get("message").is_none() || parsed["message"].is_string(),
                    "{line}"
                );
            }
            "archive_progress" if parsed["finished"] != true => {
                assert!(parsed["nfiles"].is_u64(), "{line}");
                assert!(parsed["original_size"].is_u64(), "{line}");
                assert!(
                    parsed.get("deduplicated_size").is_none_or(Value::is_u64),
                    "{line}"
                );
            }
            _ => {}
        }
        records.push(parsed);
    }
    (records, text)
}

/// `datetime.fromisoformat` of a borg timestamp (`%Y-%m-%dT%H:%M:%S.%f`, no zone).
fn assert_iso(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v}"));
    assert!(
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok(),
        "{what}: {s}"
    );
}

/// A Vorta installation: `borg` on PATH is rborg; its own client state (BORG_BASE_DIR).
struct Vorta {
    s: Scratch,
}

impl Vorta {
    fn new() -> Vorta {
        let v = Vorta { s: Scratch::new() };
        std::fs::create_dir_all(v.bin_dir()).unwrap();
        std::os::unix::fs::symlink(rborg_bin(), v.borg()).unwrap();
        let src = v.src();
        std::fs::create_dir_all(src.join("docs/cache")).unwrap();
        std::fs::create_dir_all(src.join("photos")).unwrap();
        std::fs::create_dir_all(src.join("skipped")).unwrap();
        std::fs::write(src.join("docs/letter.txt"), b"Dear Vorta,\n").unwrap();
        std::fs::write(src.join("docs/notes.tmp"), b"temporary\n").unwrap();
        std::fs::write(src.join("docs/cache/blob"), b"cached\n").unwrap();
        std::fs::write(src.join("photos/a.jpg"), vec![7u8; 70_000]).unwrap();
        std::fs::write(src.join("photos/b.jpg"), vec![9u8; 3_000]).unwrap();
        std::fs::write(src.join("skipped/.nobackup"), b"").unwrap();
        std::fs::write(src.join("skipped/private"), b"not backed up\n").unwrap();
        v
    }

    fn bin_dir(&self) -> PathBuf {
        self.s.path().join("bin")
    }

    /// `shutil.which('borg')`.
    fn borg(&self) -> PathBuf {
        self.bin_dir().join("borg")
    }

    fn src(&self) -> PathBuf {
        self.s.path().join("home/src")
    }

    fn repo(&self, name: &str) -> String {
        self.s.path().join("repos").join(name).display().to_string()
    }

    /// BorgJob's environment: the user's (here: own base dir, UTC), then its fixed values,
    /// `additional_env`, and BORG_PASSPHRASE (a dummy when there is none).
    fn env(&self, password: Option<&str>, additional: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("BORG_BASE_DIR".into(), self.s.base().display().to_string()),
            ("TZ".into(), "UTC".into()),
            ("BORG_HOSTNAME_IS_UNIQUE".into(), "1".into()),
            ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "1".into()),
            ("BORG_RSH".into(), "ssh".into()),
        ];
        for (k, v) in additional {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env.push((
            "BORG_PASSPHRASE".into(),
            password.unwrap_or("9999999").to_string(),
        ));
        env
    }

    /// Run `cmd` (its first word is `borg`, replaced by the binary found, as Vorta does).
    fn job(&self, cmd: &[&str], env: &[(String, String)], cwd: Option<&Path>) -> Job {
        assert_eq!(cmd[0], "borg");
        let cwd = cwd.map(Path::to_path_buf).unwrap_or_else(|| self.s.work());
        let mut command = std::process::Command::new(self.borg());
        command
            .args(&cmd[1..])
            .current_dir(cwd)
            .env_remove("BORG_REPO")
            .env_remove("BORG_PASSCOMMAND")
            .env_remove("BORG_EXIT_CODES")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        let (records, text_lines) = read_stderr_as_vorta(&stderr(&out));
        let text = stdout(&out);
        let data = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Job {
            rc: out.status.code().expect("exit code"),
            data,
            records,
            text_lines,
        }
    }
}

const PASSWORD: &str = "vorta-secret";

/// `borg --version` as VersionJob runs it and the features `borg_compat` then enables.
#[test]
fn version_parses_and_enables_the_borg_1x_feature_set() {
    let v = Vorta::new();
    let job = v.job(&["borg", "--version"], &v.env(None, &[]), None);
    assert_eq!(job.rc, 0);
    let data = job.data.as_str().expect("plain text");
    assert!(data.starts_with("borg 1.4."), "{data}");
    // result['data'].strip().split(' ')[1]
    let version = data.trim().split(' ').nth(1).unwrap();
    assert_eq!(version, rborg::BORG_COMPAT_VERSION);
    for (feature, _) in FEATURES {
        // every borg 1.x feature, not the borg 2 command set
        assert_eq!(feature_on(version, feature), *feature != "V2", "{feature}");
    }
    assert!(pep440("1.2.0a1") < pep440("1.2.0"));
    assert!(pep440("2.0.0b10") > pep440("1.4.5"));
}

/// The create command line (create.py `prepare`) for a profile with exclusions.
fn create_cmd<'a>(
    repo_archive: &'a str,
    exclude_file: &'a str,
    sources: &[&'a str],
) -> Vec<&'a str> {
    let mut cmd = vec![
        "borg",
        "create",
        "--list",
        "--progress",
        "--info",
        "--log-json",
        "--json",
        "--filter=AM",
        "-C",
        "lz4",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-from",
        exclude_file,
        repo_archive,
    ];
    cmd.extend_from_slice(sources);
    cmd
}

/// Check what CreateJob.process_result and the progress display read.
fn assert_create_result(job: &Job, name: &str) {
    let archive = &job.data["archive"];
    assert!(archive["id"].is_string(), "{}", job.data);
    assert_eq!(archive["name"], name);
    assert_iso(&archive["start"], "archive.start");
    assert!(archive["duration"].is_f64());
    assert!(archive["stats"]["deduplicated_size"].is_u64());
    let stats = &job.data["cache"]["stats"];
    for key in ["total_size", "unique_size", "total_unique_chunks"] {
        assert!(stats[key].is_u64(), "cache.stats.{key}");
    }
}

#[test]
fn vorta_session_against_rborg() {
    let v = Vorta::new();
    let repo = v.repo("vorta");
    let pw = Some(PASSWORD);
    // InitJob (additional_env BORG_RSH), then the repository check Vorta does when adding
    let init_env = v.env(
        pw,
        &[("BORG_RSH", "ssh -oStrictHostKeyChecking=accept-new")],
    );
    v.job(
        &[
            "borg",
            "init",
            "--info",
            "--log-json",
            "--encryption=repokey-blake2",
            &repo,
        ],
        &init_env,
        None,
    )
    .ok("init");
    let info_env = v.env(
        pw,
        &[
            ("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes"),
            ("BORG_RSH", "ssh -oStrictHostKeyChecking=accept-new"),
        ],
    );
    let info = v.job(
        &["borg", "info", "--info", "--json", "--log-json", &repo],
        &info_env,
        None,
    );
    info.ok("info repo");
    for key in ["total_size", "unique_size", "total_unique_chunks"] {
        assert!(
            info.data["cache"]["stats"][key].is_u64(),
            "{key}: {}",
            info.data
        );
    }
    assert_eq!(info.data["encryption"]["mode"], "repokey-blake2");

    // CreateJob: exclusions as Vorta writes them (one per line), sources as absolute paths
    let env = v.env(pw, &[]);
    let exclude_file = v.s.path().join("excludes");
    let src = v.src();
    std::fs::write(
        &exclude_file,
        format!("*.tmp\n{}", src.join("docs/cache").display()),
    )
    .unwrap();
    let exclude = exclude_file.display().to_string();
    let docs = src.join("docs").display().to_string();
    let photos = src.join("photos").display().to_string();
    let skipped = src.join("skipped").display().to_string();
    let sources = [docs.as_str(), photos.as_str(), skipped.as_str()];
    let first = format!("{repo}::host-2024-05-01-100000");
    let job = v.job(&create_cmd(&first, &exclude, &sources), &env, None);
    job.ok("create");
    assert_create_result(&job, "host-2024-05-01-100000");
    let listed: Vec<&str> = job
        .of_type("file_status")
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    // --filter=AM: files only; the exclusions held
    assert!(
        listed.iter().any(|p| p.ends_with("docs/letter.txt")),
        "{listed:?}"
    );
    assert!(listed
        .iter()
        .all(|p| !p.contains("notes.tmp") && !p.contains("cache/blob")));
    assert!(listed.iter().all(|p| !p.contains("skipped/private")));
    assert!(!job.of_type("archive_progress").is_empty());

    std::fs::write(src.join("docs/letter.txt"), b"Dear Vorta, again\n").unwrap();
    std::fs::remove_file(src.join("photos/b.jpg")).unwrap();
    let second = format!("{repo}::host-2024-05-02-100000");
    let job = v.job(&create_cmd(&second, &exclude, &sources), &env, None);
    job.ok("second create");
    assert_create_result(&job, "host-2024-05-02-100000");

    // ListRepoJob
    let job = v.job(
        &["borg", "list", "--info", "--log-json", "--json", &repo],
        &env,
        None,
    );
    job.ok("list repo");
    let archives = job.data["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 2);
    for a in archives {
        assert!(a["id"].is_string() && a["name"].is_string());
        assert_iso(&a["time"], "archives[].time");
    }

    // ListArchiveJob (V122: isomtime) and the extract dialog's parse_json_lines
    let job = v.job(
        &[
            "borg",
            "list",
            "--info",
            "--log-json",
            "--json-lines",
            "--format",
            "{mode}{user}{group}{size}{isomtime}{path}{source}{health}{NL}",
            &first,
        ],
        &env,
        None,
    );
    assert_eq!(job.rc, 0);
    let Value::String(lines) = &job.data else {
        panic!("JSON lines are not one JSON document: {}", job.data)
    };
    let items: Vec<Value> = lines
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // docs, letter.txt, photos, a.jpg, b.jpg: the tagged root and the excluded files are out
    assert_eq!(items.len(), 5, "{items:?}");
    for item in &items {
        assert!(item["path"].is_string() && item["size"].is_u64(), "{item}");
        let mode = item["mode"].as_str().unwrap();
        // FileType(mode[0])
        assert!("-dlcbps".contains(&mode[..1]), "{item}");
        assert!(item["user"].is_string() && item["group"].is_string());
        assert!(item["healthy"].is_boolean());
        assert!(item["source"].is_string());
        assert_iso(&item["isomtime"], "isomtime");
    }

    // InfoArchiveJob
    let job = v.job(
        &["borg", "info", "--log-json", "--json", &second],
        &env,
        None,
    );
    job.ok("info archive");
    let a = &job.data["archives"][0];
    assert!(a["id"].is_string() && a["name"].is_string());
    assert!(a["duration"].is_f64());
    assert!(a["stats"]["deduplicated_size"].is_u64());
    assert!(job.data["cache"]["stats"]["total_unique_chunks"].is_u64());

    // DiffJob (DIFF_JSON_LINES) and parse_diff_json: only change types it knows
    let job = v.job(
        &[
            "borg",
            "diff",
            "--info",
            "--log-json",
            "--json-lines",
            &first,
            "host-2024-05-02-100000",
        ],
        &env,
        None,
    );
    assert_eq!(job.rc, 0, "{:?}", job.records);
    let diff_lines: Vec<Value> = match &job.data {
        Value::String(s) => s
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        one => vec![one.clone()],
    };
    // letter.txt modified, b.jpg removed, photos/ changed times
    assert_eq!(diff_lines.len(), 3, "{diff_lines:?}");
    for d in &diff_lines {
        assert!(d["path"].is_string());
        for c in d["changes"].as_array().unwrap() {
            let t = c["type"].as_str().unwrap();
            match t {
                "modified" => {
                    assert!(c["added"].is_u64() && c["removed"].is_u64(), "{c}")
                }
                "mode" => assert!(c["old_mode"].is_string() && c["new_mode"].is_string()),
                "owner" => {
                    for k in ["old_user", "old_group", "new_user", "new_group"] {
                        assert!(c.get(k).is_some(), "{c}");
                    }
                }
                "ctime" | "mtime" => {}
                _ if t == "changed link" || t.starts_with("added") || t.starts_with("removed") => {
                    assert!(c.get("size").is_none_or(Value::is_u64), "{c}")
                }
                other => panic!("Vorta raises on change type {other}"),
            }
        }
    }

    // ExtractJob: Vorta's patterns file, run in the destination folder
    let patterns = v.s.path().join("patterns");
    let letter = items
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .find(|p| p.ends_with("docs/letter.txt"))
        .unwrap()
        .to_string();
    std::fs::write(&patterns, format!("P pf\n+ {letter}\n- fm:*\n")).unwrap();
    let dest = v.s.path().join("restore");
    std::fs::create_dir_all(&dest).unwrap();
    let job = v.job(
        &[
            "borg",
            "extract",
            "--list",
            "--info",
            "--log-json",
            &first,
            "--patterns-from",
            patterns.to_str().unwrap(),
        ],
        &env,
        Some(&dest),
    );
    job.ok("extract");
    assert_eq!(std::fs::read(dest.join(&letter)).unwrap(), b"Dear Vorta,\n");
    let restored = dir_contents(&dest);
    assert_eq!(restored.len(), 1, "{restored:?}");

    // RenameJob
    v.job(
        &[
            "borg",
            "rename",
            "--info",
            "--log-json",
            &second,
            "host-2024-05-02-renamed",
        ],
        &env,
        None,
    )
    .ok("rename");

    // more archives for PruneJob (V122: -a with Vorta's expanded prefix and `*`)
    for day in 3..=6 {
        let name = format!("{repo}::host-2024-05-0{day}-100000");
        let job = v.job(&create_cmd(&name, &exclude, &sources), &env, None);
        job.ok("create for prune");
    }
    let job = v.job(
        &[
            "borg",
            "prune",
            "--list",
            "--info",
            "--log-json",
            "--keep-hourly",
            "2",
            "--keep-daily",
            "3",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "6",
            "--keep-yearly",
            "2",
            "-a",
            "host-*",
            "--keep-within",
            "10H",
            &repo,
        ],
        &env,
        None,
    );
    job.ok("prune");
    assert!(job.records.iter().any(|r| r["name"] == "borg.output.list"));

    // CheckJob, CompactJob (both read only the exit code and the error messages)
    let job = v.job(
        &["borg", "check", "--info", "--log-json", "--progress", &repo],
        &env,
        None,
    );
    job.ok("check");
    assert!(job.errors().is_empty(), "{:?}", job.errors());
    assert!(!job.of_type("progress_percent").is_empty());
    v.job(
        &[
            "borg",
            "--info",
            "--log-json",
            "compact",
            "--progress",
            &repo,
        ],
        &env,
        None,
    )
    .ok("compact");

    // DeleteJob: the first archive names the repository, the others follow
    let job = v.job(
        &["borg", "list", "--info", "--log-json", "--json", &repo],
        &env,
        None,
    );
    let names: Vec<String> = job.data["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    let first_target = format!("{repo}::{}", names[0]);
    v.job(
        &[
            "borg",
            "delete",
            "--info",
            "--log-json",
            &first_target,
            &names[1],
        ],
        &env,
        None,
    )
    .ok("delete");

    // BreakLockJob
    v.job(
        &["borg", "break-lock", "--info", "--log-json", &repo],
        &env,
        None,
    )
    .ok("break-lock");

    // ChangePassphraseJob, then the new passphrase is the one that works
    let new_pw = "vorta-new-secret";
    let job = v.job(
        &[
            "borg",
            "--info",
            "--log-json",
            "key",
            "change-passphrase",
            &repo,
        ],
        &v.env(pw, &[("BORG_NEW_PASSPHRASE", new_pw)]),
        None,
    );
    job.ok("change-passphrase");
    let list = [
        "borg",
        "list",
        "--info",
        "--log-json",
        "--json",
        repo.as_str(),
    ];
    let job = v.job(&list, &v.env(Some(new_pw), &[]), None);
    job.ok("list with the new passphrase");
    let job = v.job(&list, &v.env(pw, &[]), None);
    assert_ne!(job.rc, 0);
    assert!(job.errors().iter().any(|r| r["msgid"] == "PassphraseWrong"));
}

/// CreateJob accepts rc 0 and 1 (warnings: "Backup finished with warnings"). rborg's
/// default modern codes give a warning its own code (107 for a vanished file), which Vorta
/// treats as a failure; with `BORG_EXIT_CODES=legacy` in the environment Vorta passes on,
/// it gets borg 1.x's 1.
#[test]
fn create_warnings_need_legacy_exit_codes_for_vorta() {
    let v = Vorta::new();
    let repo = v.repo("warn");
    v.job(
        &[
            "borg",
            "init",
            "--info",
            "--log-json",
            "--encryption=none",
            &repo,
        ],
        &v.env(None, &[]),
        None,
    )
    .ok("init");
    let exclude_file = v.s.path().join("excludes");
    std::fs::write(&exclude_file, "*.tmp\n").unwrap();
    let exclude = exclude_file.display().to_string();
    let docs = v.src().join("docs").display().to_string();
    let gone = v.src().join("vanished").display().to_string();
    for (mode, want) in [(None, 107), (Some("legacy"), 1)] {
        let name = format!("{repo}::warn-{}", mode.unwrap_or("modern"));
        let extra: Vec<(&str, &str)> = mode.map(|m| ("BORG_EXIT_CODES", m)).into_iter().collect();
        let job = v.job(
            &create_cmd(&name, &exclude, &[&docs, &gone]),
            &v.env(None, &extra),
            None,
        );
        assert_eq!(job.rc, want, "{mode:?}: {:?}", job.records);
        // the archive is written either way, with the JSON Vorta stores
        assert!(job.data["archive"]["id"].is_string());
        let warning = job.errors()[0];
        assert_eq!(warning["msgid"], "BackupFileNotFoundError");
    }
}

/// MountJob / UmountJob: the command lines must get past the argument parser. They are run
/// against a repository that does not exist, so nothing is ever mounted, whether or not
/// rborg implements mount yet (it answers "not implemented" or the repository error).
#[test]
fn mount_and_umount_command_lines_parse() {
    let v = Vorta::new();
    let mount_point = v.s.path().join("mnt");
    std::fs::create_dir_all(&mount_point).unwrap();
    let mnt = mount_point.display().to_string();
    let missing_repo = v.repo("missing");
    let missing = format!("{missing_repo}::some-archive");
    let uid = format!("umask=0277,uid={}", nix::unistd::getuid());
    let env = v.env(Some(PASSWORD), &[]);
    for cmd in [
        vec![
            "borg",
            "--log-json",
            "mount",
            missing.as_str(),
            mnt.as_str(),
        ],
        vec![
            "borg",
            "--log-json",
            "mount",
            "-o",
            uid.as_str(),
            missing.as_str(),
            mnt.as_str(),
        ],
        vec![
            "borg",
            "--log-json",
            "mount",
            "-o",
            uid.as_str(),
            missing_repo.as_str(),
            mnt.as_str(),
        ],
        vec!["borg", "umount", "--log-json", mnt.as_str()],
    ] {
        let job = v.job(&cmd, &env, None);
        let all = format!("{:?} {:?}", job.records, job.text_lines);
        assert!(
            !all.contains("usage:") && !all.contains("unrecognized arguments"),
            "{cmd:?}: {all}"
        );
        assert_ne!(job.rc, 0, "{cmd:?}: nothing can be mounted here");
        let messages: Vec<&str> = job
            .errors()
            .iter()
            .filter_map(|r| r["message"].as_str())
            .collect();
        let not_implemented = messages.iter().any(|m| m.contains("not implemented"));
        if not_implemented {
            eprintln!("NOTE {cmd:?}: rborg answers \"not implemented\"; only the parse is checked");
        } else if cmd[2] == "mount" {
            assert!(
                job.errors()
                    .iter()
                    .any(|r| r["msgid"] == "Repository.DoesNotExist"),
                "{cmd:?}: {all}"
            );
        }
    }
}
