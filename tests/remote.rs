//! Remote repositories (remote-protocol.md): rborg's client against real `borg serve`, real
//! borg's client against `rborg serve`, and rborg against itself, all through a stand-in
//! for ssh that runs the remote command locally (as sshd would, forced commands included).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// A scratch dir with a source tree, a fake ssh and the environment for remote runs.
struct Remote {
    dir: tempfile::TempDir,
    /// The program the client runs on the "server" (`borg` or our binary).
    server: String,
}

impl Remote {
    fn new(server: &str) -> Remote {
        let dir = tempfile::Builder::new()
            .prefix("rborg-remote")
            .tempdir()
            .unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::create_dir_all(root.join("base")).unwrap();
        // incompressible and large enough for several chunks in flight
        let mut seed: u32 = 12345;
        let big: Vec<u8> = (0..3_000_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        std::fs::write(root.join("src/big"), big).unwrap();
        std::fs::write(root.join("src/sub/small"), b"hello remote\n").unwrap();
        // ssh options and the host are dropped, the command runs under sh as sshd does;
        // FAKE_SSH_FORCED_COMMAND acts like an authorized_keys command="…"
        let fake_ssh = root.join("fake-ssh");
        std::fs::write(
            &fake_ssh,
            "#!/bin/sh\n\
             while [ $# -gt 0 ]; do case \"$1\" in -p|-i|-o|-l) shift 2;; -*) shift;; *) break;; esac; done\n\
             shift\n\
             [ -n \"$FAKE_SSH_REMOTE_CWD\" ] && cd \"$FAKE_SSH_REMOTE_CWD\"\n\
             if [ -n \"$FAKE_SSH_FORCED_COMMAND\" ]; then\n\
               SSH_ORIGINAL_COMMAND=\"$*\"; export SSH_ORIGINAL_COMMAND\n\
               exec sh -c \"$FAKE_SSH_FORCED_COMMAND\"\n\
             fi\n\
             exec sh -c \"$*\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        Remote {
            dir,
            server: server.to_string(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let root = self.root().display().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), format!("{root}/base")),
            ("BORG_BASE_DIR".into(), format!("{root}/base")),
            ("BORG_PASSPHRASE".into(), "secret".into()),
            ("BORG_SHOW_SYSINFO".into(), "no".into()),
            ("BORG_EXIT_CODES".into(), "legacy".into()),
            ("BORG_RSH".into(), format!("{root}/fake-ssh")),
            ("BORG_REMOTE_PATH".into(), self.server.clone()),
            ("FAKE_SSH_REMOTE_CWD".into(), root.clone()),
            ("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING".into(), "YES".into()),
            ("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING".into(), "YES".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    fn run(&self, client: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
        run_in(client, args, &self.root(), &self.env(extra))
    }
}

fn rborg_path() -> String {
    rborg_bin().display().to_string()
}

fn expect_ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed (rc {:?}):\n{}",
        o.status.code(),
        stderr(&o)
    );
    o
}

fn expect_rc(o: &Output, rc: i32, what: &str) {
    assert_eq!(o.status.code(), Some(rc), "{what}:\n{}", stderr(o));
}

/// init, create ×2, list, info, diff, key export (compared with borg's local export), extract
/// (compared), check, prune, delete, compact, check
/// with `client` against `r.server`; then real borg checks the repository locally.
fn full_cycle(r: &Remote, client: &Path, verify_with_borg: bool) {
    let url = "ssh://fakehost/./repo";
    let run = |args: &[&str]| r.run(client, args, &[]);
    expect_ok(run(&["init", "-e", "repokey", url]), "init");
    expect_ok(run(&["create", &format!("{url}::a1"), "src"]), "create a1");
    expect_ok(run(&["create", &format!("{url}::a2"), "src"]), "create a2");
    let list = expect_ok(run(&["list", url]), "list");
    let names: Vec<String> = stdout(&list)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["a1", "a2"]);
    let items = expect_ok(run(&["list", "--short", &format!("{url}::a1")]), "list a1");
    assert!(
        stdout(&items).contains("src/sub/small"),
        "{}",
        stdout(&items)
    );
    let info = expect_ok(run(&["info", &format!("{url}::a1")]), "info");
    assert!(
        stdout(&info).contains("Archive name: a1"),
        "{}",
        stdout(&info)
    );
    // a1 and a2 hold the same files: nothing to report
    let diff = expect_ok(run(&["diff", &format!("{url}::a1"), "a2"]), "diff");
    assert_eq!(stdout(&diff), "", "{}", stderr(&diff));
    // the key exported through the server is the one real borg exports locally
    expect_ok(run(&["key", "export", url, "remote.key"]), "key export");
    expect_ok(
        borg(
            &["key", "export", "repo", "local.key"],
            &r.root(),
            &r.env(&[]),
        ),
        "local borg key export",
    );
    assert_eq!(
        std::fs::read(r.root().join("remote.key")).unwrap(),
        std::fs::read(r.root().join("local.key")).unwrap()
    );
    std::fs::create_dir_all(r.root().join("out")).unwrap();
    expect_ok(
        run_in(
            client,
            &["extract", &format!("{url}::a1")],
            &r.root().join("out"),
            &r.env(&[]),
        ),
        "extract",
    );
    assert_same_tree(&r.root().join("src"), &r.root().join("out/src"));
    let check = expect_ok(run(&["check", "--info", url]), "check");
    assert!(
        stderr(&check).contains("Remote: Starting repository check"),
        "{}",
        stderr(&check)
    );
    expect_ok(run(&["prune", "--keep-last", "1", url]), "prune");
    expect_ok(run(&["create", &format!("{url}::a3"), "src"]), "create a3");
    expect_ok(run(&["delete", &format!("{url}::a3")]), "delete a3");
    expect_ok(run(&["compact", url]), "compact");
    expect_ok(run(&["check", url]), "check after compact");
    let list = expect_ok(run(&["list", "--short", url]), "list after prune");
    assert_eq!(stdout(&list).trim(), "a2");
    if verify_with_borg {
        expect_ok(
            borg(&["check", "--verify-data", "repo"], &r.root(), &r.env(&[])),
            "local borg check --verify-data",
        );
    }
    expect_ok(run(&["delete", url]), "delete repository");
    assert!(!r.root().join("repo").exists());
}

#[test]
fn rborg_client_against_real_borg_serve() {
    if !borg_or_skip("rborg_client_against_real_borg_serve") {
        return;
    }
    let r = Remote::new("borg");
    full_cycle(&r, &rborg_bin(), true);
}

#[test]
fn real_borg_client_against_rborg_serve() {
    if !borg_or_skip("real_borg_client_against_rborg_serve") {
        return;
    }
    let r = Remote::new(&rborg_path());
    full_cycle(&r, Path::new("borg"), true);
}

#[test]
fn rborg_client_against_rborg_serve() {
    let r = Remote::new(&rborg_path());
    full_cycle(&r, &rborg_bin(), false);
}

#[test]
fn errors_cross_the_wire_as_borg_shows_them() {
    let r = Remote::new(&rborg_path());
    let rb = rborg_bin();
    let o = r.run(&rb, &["list", "ssh://fakehost/./nonexistent"], &[]);
    expect_rc(&o, 2, "list missing repo");
    assert!(
        stderr(&o).contains("Repository ssh://fakehost/./nonexistent does not exist."),
        "{}",
        stderr(&o)
    );
    let o = r.run(
        &rb,
        &["list", "ssh://fakehost/./nonexistent"],
        &[("BORG_EXIT_CODES", "modern")],
    );
    expect_rc(&o, 13, "modern rc of DoesNotExist");
    expect_ok(
        r.run(&rb, &["init", "-e", "none", "ssh://fakehost/./repo"], &[]),
        "init",
    );
    let o = r.run(&rb, &["init", "-e", "none", "ssh://fakehost/./repo"], &[]);
    expect_rc(&o, 2, "init twice");
    assert!(
        stderr(&o).contains("A repository already exists at ssh://fakehost/./repo."),
        "{}",
        stderr(&o)
    );
    let o = r.run(
        &rb,
        &["list", "ssh://fakehost/./repo"],
        &[("BORG_REMOTE_PATH", "borg-does-not-exist")],
    );
    expect_rc(&o, 2, "no remote borg");
    let err = stderr(&o);
    assert!(err.contains("Remote: "), "{err}");
    assert!(
        err.contains("Connection closed by remote host. Is borg working on the server?"),
        "{err}"
    );
    let banner = format!("echo hello-banner; {}", rborg_path());
    let o = r.run(
        &rb,
        &["list", "ssh://fakehost/./repo"],
        &[("BORG_REMOTE_PATH", &banner)],
    );
    expect_rc(&o, 2, "banner");
    assert!(
        stderr(&o).contains("Got unexpected RPC data format from server:\nhello-banner"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serve_restrictions_under_forced_commands() {
    let r = Remote::new(&rborg_path());
    let rb = rborg_bin();
    let root = r.root();
    std::fs::create_dir_all(root.join("allowed")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::os::unix::fs::symlink(root.join("outside"), root.join("allowed/escape")).unwrap();
    let serve = rborg_path();
    let to_path = format!(
        "{serve} serve --restrict-to-path {}/allowed",
        root.display()
    );
    let forced = |cmd: &str| vec![("FAKE_SSH_FORCED_COMMAND", cmd.to_string())];
    let run = |args: &[&str], env: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        r.run(&rb, args, &env)
    };
    expect_ok(
        run(
            &["init", "-e", "none", "ssh://h/./allowed/repo"],
            &forced(&to_path),
        ),
        "init inside the allowed path",
    );
    for (path, shown) in [
        ("ssh://h/./repo", root.join("repo")),
        ("ssh://h/./allowedX", root.join("allowedX")),
        ("ssh://h/./allowed/escape/repo", root.join("outside/repo")),
        ("ssh://h/./allowed/../outside/r", root.join("outside/r")),
    ] {
        let o = run(&["init", "-e", "none", path], &forced(&to_path));
        expect_rc(&o, 2, path);
        assert!(
            stderr(&o).contains(&format!("Repository path not allowed: {}", shown.display())),
            "{path}: {}",
            stderr(&o)
        );
    }
    assert!(!root.join("outside/repo").exists());
    // the client cannot widen the forced command: its --storage-quota is ignored
    let to_repo = format!(
        "{serve} serve --restrict-to-repository {}/only",
        root.display()
    );
    expect_ok(
        run(
            &[
                "init",
                "-e",
                "none",
                "--storage-quota",
                "20M",
                "ssh://h/./only",
            ],
            &forced(&to_repo),
        ),
        "init the one allowed repository",
    );
    let config = std::fs::read_to_string(root.join("only/config")).unwrap();
    assert!(config.contains("storage_quota = 0"), "{config}");
    let o = run(&["list", "ssh://h/./allowed/repo"], &forced(&to_repo));
    expect_rc(&o, 2, "other repository");
    // the client's log level does reach a forced server
    let o = expect_ok(
        run(&["check", "--info", "ssh://h/./only"], &forced(&to_repo)),
        "check --info under a forced command",
    );
    assert!(
        stderr(&o).contains("Remote: Starting repository check"),
        "{}",
        stderr(&o)
    );

    // append-only: archives can be deleted, compaction is a no-op, the repository stays
    let append = format!("{serve} serve --append-only");
    let url = "ssh://h/./allowed/repo";
    expect_ok(
        run(&["create", &format!("{url}::a1"), "src"], &forced(&append)),
        "create append-only",
    );
    expect_ok(
        run(&["delete", &format!("{url}::a1")], &forced(&append)),
        "delete archive append-only",
    );
    expect_ok(
        run(&["compact", url], &forced(&append)),
        "compact append-only",
    );
    let o = run(&["delete", url], &forced(&append));
    expect_rc(&o, 2, "delete repository append-only");
    assert!(
        stderr(&o).contains("is in append-only mode"),
        "{}",
        stderr(&o)
    );
    let o = run(&["check", "--repair", url], &forced(&append));
    expect_rc(&o, 2, "check --repair append-only");
    assert!(root.join("allowed/repo/config").exists());
    // a real borg client sees the same refusals from our server
    if borg_or_skip("serve_restrictions_under_forced_commands (borg client part)") {
        let o = r.run(
            Path::new("borg"),
            &["list", "ssh://h/./repo"],
            &[("FAKE_SSH_FORCED_COMMAND", &to_path)],
        );
        expect_rc(&o, 2, "borg client, path not allowed");
        assert!(
            stderr(&o).contains("Repository path not allowed"),
            "{}",
            stderr(&o)
        );
        let o = r.run(
            Path::new("borg"),
            &["delete", url],
            &[("FAKE_SSH_FORCED_COMMAND", &append)],
        );
        expect_rc(&o, 2, "borg client, append-only destroy");
        assert!(stderr(&o).contains("ValueError: "), "{}", stderr(&o));
    }
}

#[test]
fn async_quota_error_rolls_back() {
    let r = Remote::new(&rborg_path());
    let rb = rborg_bin();
    expect_ok(
        r.run(
            &rb,
            &[
                "init",
                "-e",
                "none",
                "--storage-quota",
                "10M",
                "ssh://h/./q",
            ],
            &[],
        ),
        "init with quota",
    );
    let config = std::fs::read_to_string(r.root().join("q/config")).unwrap();
    assert!(config.contains("storage_quota = 10000000"), "{config}");
    // 4 variants of the 3 MB file (nothing to deduplicate) exceed 10 MB
    for i in 0..4u8 {
        let mut data = std::fs::read(r.root().join("src/big")).unwrap();
        data.iter_mut().for_each(|b| *b ^= i + 1);
        std::fs::write(r.root().join(format!("src/copy{i}")), data).unwrap();
    }
    let o = r.run(&rb, &["create", "ssh://h/./q::x", "src"], &[]);
    expect_rc(&o, 2, "create over quota");
    assert!(
        stderr(&o).contains("The storage quota (10.00 MB) has been exceeded"),
        "{}",
        stderr(&o)
    );
    let o = expect_ok(r.run(&rb, &["list", "ssh://h/./q"], &[]), "list after");
    assert_eq!(stdout(&o), "");
    // the server's own --storage-quota overrides the repository's (here: none)
    expect_ok(
        r.run(&rb, &["init", "-e", "none", "ssh://h/./q2"], &[]),
        "init without quota",
    );
    let forced = format!("{} serve --storage-quota 10M", rborg_path());
    let o = r.run(
        &rb,
        &["create", "ssh://h/./q2::x", "src"],
        &[("FAKE_SSH_FORCED_COMMAND", &forced)],
    );
    expect_rc(&o, 2, "create over the server's quota");
    // without it, and with a small upload buffer and a rate limit, the same backup works
    expect_ok(
        r.run(
            &rb,
            &[
                "create",
                "--upload-buffer",
                "1",
                "--upload-ratelimit",
                "200000",
                "ssh://h/./q2::x",
                "src",
            ],
            &[],
        ),
        "create with upload limits",
    );
}

/// The last transaction id recorded in an append-only repository's `transactions` log.
fn last_transaction(repo: &Path) -> u64 {
    let log = std::fs::read_to_string(repo.join("transactions")).unwrap();
    let last = log.lines().last().expect("transactions log is empty");
    // "transaction <T>, UTC time <timestamp>"
    last.trim_start_matches("transaction ")
        .split(',')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("bad transactions line {last:?}"))
}

/// Borg's documented append-only recovery: drop every segment written after transaction
/// `keep`, and the index, hints and integrity files (they are rebuilt from the segments).
fn roll_back_to_transaction(repo: &Path, keep: u64) {
    for dir in std::fs::read_dir(repo.join("data")).unwrap() {
        for seg in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let seg = seg.unwrap().path();
            let n: u64 = seg.file_name().unwrap().to_str().unwrap().parse().unwrap();
            if n > keep {
                std::fs::remove_file(&seg).unwrap();
            }
        }
    }
    for f in std::fs::read_dir(repo).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if ["index.", "hints.", "integrity."]
            .iter()
            .any(|p| name.starts_with(p))
        {
            std::fs::remove_file(&f).unwrap();
        }
    }
}

/// Issue 5 must-show 3: behind `serve --append-only`, hostile rborg and borg clients delete,
/// prune and compact; the administrator rolls the repository back to the last good
/// transaction and every earlier archive extracts again, with rborg and with real borg.
#[test]
fn append_only_history_survives_a_hostile_client() {
    let r = Remote::new(&rborg_path());
    let rb = rborg_bin();
    let root = r.root();
    let have_borg = borg_or_skip("append_only_history_survives_a_hostile_client (borg parts)");
    let append = format!("{} serve --append-only", rborg_path());
    let forced = [("FAKE_SSH_FORCED_COMMAND", append.as_str())];
    let url = "ssh://h/./repo";
    let at = |a: &str| format!("{url}::{a}");
    // init through the append-only server makes a normal repository (as borg's)
    expect_ok(r.run(&rb, &["init", "-e", "repokey", url], &forced), "init");
    expect_ok(r.run(&rb, &["create", &at("a1"), "src"], &forced), "a1");
    copy_tree(&root.join("src"), &root.join("src-a1"));
    std::fs::write(root.join("src/sub/small"), b"changed before a2\n").unwrap();
    std::fs::write(root.join("src/sub/new"), b"only in a2\n").unwrap();
    expect_ok(r.run(&rb, &["create", &at("a2"), "src"], &forced), "a2");
    copy_tree(&root.join("src"), &root.join("src-a2"));
    let good = last_transaction(&root.join("repo"));

    // the attack: delete, prune everything but a decoy, compact; destroy and repair refused
    std::fs::write(root.join("src/big"), b"decoy\n").unwrap();
    expect_ok(r.run(&rb, &["delete", &at("a1")], &forced), "delete a1");
    expect_ok(
        r.run(&rb, &["create", &at("decoy"), "src"], &forced),
        "decoy",
    );
    expect_ok(
        r.run(&rb, &["prune", "--keep-last", "1", url], &forced),
        "prune",
    );
    expect_ok(r.run(&rb, &["compact", url], &forced), "compact");
    expect_rc(&r.run(&rb, &["delete", url], &forced), 2, "destroy");
    expect_rc(
        &r.run(&rb, &["check", "--repair", url], &forced),
        2,
        "repair",
    );
    if have_borg {
        let borg_client = Path::new("borg");
        expect_ok(
            r.run(borg_client, &["delete", &at("decoy")], &forced),
            "borg client deletes the decoy",
        );
        expect_ok(
            r.run(borg_client, &["compact", url], &forced),
            "borg client compacts",
        );
    }
    let left = expect_ok(r.run(&rb, &["list", "--short", url], &forced), "list");
    let expect_left = if have_borg { "" } else { "decoy\n" };
    assert_eq!(stdout(&left), expect_left);

    let mut recoverers = vec![rb.clone()];
    if have_borg {
        recoverers.push(PathBuf::from("borg"));
    }
    for tool in recoverers {
        let name = tool.file_name().unwrap().to_string_lossy().to_string();
        let repo = root.join(format!("recovered-by-{name}"));
        copy_tree(&root.join("repo"), &repo);
        roll_back_to_transaction(&repo, good);
        // the administrator works on the server, with client dirs of their own
        let admin = root.join(format!("admin-{name}"));
        std::fs::create_dir_all(&admin).unwrap();
        let admin = admin.display().to_string();
        let env = [("BORG_BASE_DIR", admin.as_str()), ("HOME", admin.as_str())];
        let repo_arg = repo.display().to_string();
        let list = expect_ok(
            r.run(&tool, &["list", "--short", &repo_arg], &env),
            "list after roll-back",
        );
        assert_eq!(stdout(&list), "a1\na2\n", "{name}");
        for a in ["a1", "a2"] {
            let out = root.join(format!("out-{name}-{a}"));
            std::fs::create_dir_all(&out).unwrap();
            expect_ok(
                run_in(
                    &tool,
                    &["extract", &format!("{repo_arg}::{a}")],
                    &out,
                    &r.env(&env),
                ),
                "extract after roll-back",
            );
            assert_same_tree(&root.join(format!("src-{a}")), &out.join("src"));
        }
        expect_ok(
            r.run(&rb, &["check", &repo_arg], &env),
            "rborg check after roll-back",
        );
        if have_borg {
            expect_ok(
                r.run(
                    Path::new("borg"),
                    &["check", "--verify-data", &repo_arg],
                    &env,
                ),
                "borg check after roll-back",
            );
        }
    }
}

/// Remote `check --repair` of a damaged manifest segment reports and repairs as a local one
/// does (the client's reads sent with `open` are dropped once the repair may change things).
#[test]
fn remote_repair_of_a_damaged_manifest_is_the_local_one() {
    let r = Remote::new(&rborg_path());
    let rb = rborg_bin();
    let root = r.root();
    let local = |args: &[&str]| r.run(&rb, args, &[]);
    expect_ok(local(&["init", "-e", "repokey", "repo"]), "init");
    expect_ok(local(&["create", "repo::a1", "src"]), "a1");
    expect_ok(local(&["create", "repo::a2", "src"]), "a2");
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    for dir in std::fs::read_dir(root.join("repo/data")).unwrap() {
        for seg in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let seg = seg.unwrap().path();
            let n = seg.file_name().unwrap().to_str().unwrap().parse().unwrap();
            segs.push((n, seg));
        }
    }
    segs.sort();
    // the manifest is the last object before the commit segment
    let manifest_segment = &segs[segs.len() - 2].1;
    let mut bytes = std::fs::read(manifest_segment).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    std::fs::write(manifest_segment, bytes).unwrap();
    copy_tree(&root.join("repo"), &root.join("copy"));
    let by_server = r.run(&rb, &["check", "--repair", "ssh://h/./repo"], &[]);
    let by_local = local(&["check", "--repair", "copy"]);
    assert_eq!(by_server.status.code(), by_local.status.code());
    let strip = |o: &Output| stderr(o).replace("Remote: ", "").replace("copy", "repo");
    assert_eq!(strip(&by_server), strip(&by_local));
    let moved = [("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")];
    let list = expect_ok(
        r.run(&rb, &["list", "--short", "ssh://h/./repo"], &moved),
        "list after the repair",
    );
    assert_eq!(stdout(&list), "a1\na2\n");
    expect_ok(
        r.run(&rb, &["check", "ssh://h/./repo"], &moved),
        "check after the repair",
    );
}
