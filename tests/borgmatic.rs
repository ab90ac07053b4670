//! borgmatic (Debian's package) drives rborg through `local_path`: init, create, prune,
//! compact, check, list, info, extract, and its default run (issue 6, must-show 3).
//!
//! borgmatic 1.7 probes for an existing repository before `init` with `borg info --json` and
//! expects borg 1.x's legacy rc 2 for "does not exist"; with the modern exit codes (rborg's
//! default) that probe gets 13 and borgmatic gives up. So `init` runs with
//! `BORG_EXIT_CODES=legacy`, as a borgmatic 1.7 user sets it; every other action runs with
//! the defaults.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn borgmatic(config: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new("borgmatic")
        .arg("-c")
        .arg(config)
        // no syslog daemon in test environments: keep its connection errors out
        .args(["--syslog-verbosity", "-1"])
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

fn expect_ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "borgmatic {what} failed (rc {:?}):\n{}\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    o
}

/// The archive names of `borgmatic list --json` (one repository).
fn archive_names(config: &Path, env: &[(String, String)]) -> Vec<String> {
    let o = expect_ok(borgmatic(config, &["list", "--json"], env), "list --json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn borgmatic_runs_every_action_on_rborg() {
    let test = "borgmatic_runs_every_action_on_rborg";
    if find_on_path("borgmatic").is_none() {
        skip(
            test,
            "borgmatic is not installed (apt-get install borgmatic)",
        );
        return;
    }
    let s = Scratch::new();
    let root = s.path();
    let src = root.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), b"hello borgmatic\n").unwrap();
    let big: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("sub/big"), big).unwrap();
    std::os::unix::fs::symlink("a", src.join("link")).unwrap();
    let repo = root.join("repo");
    let config = root.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "location:\n\
             \x20   source_directories:\n\
             \x20       - {src}\n\
             \x20   repositories:\n\
             \x20       - {repo}\n\
             \x20   local_path: {rborg}\n\
             storage:\n\
             \x20   encryption_passphrase: \"borgmatic secret\"\n\
             \x20   borg_base_directory: {base}\n\
             retention:\n\
             \x20   keep_daily: 1\n\
             consistency:\n\
             \x20   checks:\n\
             \x20       - name: repository\n\
             \x20       - name: archives\n",
            src = src.display(),
            repo = repo.display(),
            rborg = rborg_bin().display(),
            base = s.base().display(),
        ),
    )
    .unwrap();
    // borgmatic's own state dir lives under HOME
    let env = vec![
        ("HOME".to_string(), root.display().to_string()),
        ("TZ".to_string(), "UTC".to_string()),
    ];
    let legacy = with_var(&env, "BORG_EXIT_CODES", "legacy");

    expect_ok(
        borgmatic(&config, &["init", "--encryption", "repokey"], &legacy),
        "init",
    );
    assert!(repo.join("config").is_file());
    // init again: the probe finds the repository and borgmatic leaves it alone
    expect_ok(
        borgmatic(&config, &["init", "--encryption", "repokey"], &legacy),
        "init of an existing repository",
    );
    let created = expect_ok(borgmatic(&config, &["create", "--stats"], &env), "create");
    let created = format!("{}{}", stdout(&created), stderr(&created));
    assert!(created.contains("Number of files: 2"), "{created}");
    let json = expect_ok(
        borgmatic(&config, &["create", "--json"], &env),
        "create --json",
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["archive"]["stats"]["nfiles"], 2, "{v}");
    assert_eq!(archive_names(&config, &env).len(), 2);

    // keep_daily 1: the older of today's two archives goes
    let pruned = expect_ok(borgmatic(&config, &["prune", "--list"], &env), "prune");
    let pruned_text = format!("{}{}", stdout(&pruned), stderr(&pruned));
    assert!(pruned_text.contains("Pruning archive"), "{pruned_text}");
    let names = archive_names(&config, &env);
    assert_eq!(names.len(), 1, "{names:?}");
    expect_ok(borgmatic(&config, &["compact"], &env), "compact");
    let checked = expect_ok(borgmatic(&config, &["check", "-v", "1"], &env), "check");
    let checked = format!("{}{}", stdout(&checked), stderr(&checked));
    assert!(
        checked.contains("Archive consistency check complete, no problems found."),
        "{checked}"
    );

    let info = expect_ok(borgmatic(&config, &["info", "--json"], &env), "info --json");
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v[0]["encryption"]["mode"], "repokey", "{v}");
    assert!(v[0]["cache"]["stats"]["total_chunks"].is_u64(), "{v}");
    let info = expect_ok(
        borgmatic(&config, &["info", "--archive", "latest", "--json"], &env),
        "info --archive latest --json",
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v[0]["archives"][0]["name"], names[0].as_str(), "{v}");
    let listed = expect_ok(
        borgmatic(&config, &["list", "--archive", "latest"], &env),
        "list --archive latest",
    );
    assert!(stdout(&listed).contains("sub/big"), "{}", stdout(&listed));

    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    expect_ok(
        borgmatic(
            &config,
            &[
                "extract",
                "--archive",
                "latest",
                "--destination",
                out.to_str().unwrap(),
            ],
            &env,
        ),
        "extract",
    );
    let relative = src.strip_prefix("/").unwrap();
    assert_same_tree(&src, &out.join(relative));

    // the default run: prune, compact, create, check
    expect_ok(borgmatic(&config, &["-v", "1"], &env), "default actions");
    assert_eq!(archive_names(&config, &env).len(), 2);
    // and real borg agrees the repository is sound
    if borg_or_skip(test) {
        let mut borg_env = env.clone();
        borg_env.push(("BORG_PASSPHRASE".into(), "borgmatic secret".into()));
        borg_env.push(("BORG_BASE_DIR".into(), s.base().display().to_string()));
        ok(borg(
            &["check", "--verify-data", repo.to_str().unwrap()],
            &root,
            &borg_env,
        ));
    }
}
