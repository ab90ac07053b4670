//! Remote repositories over a real ssh connection: the test starts its own `sshd` on
//! 127.0.0.1 (own host key, own authorized_keys with a forced `rborg serve
//! --restrict-to-path …` command) and runs rborg's and real borg's clients against
//! `ssh://user@127.0.0.1:port/path`. Skipped when sshd/ssh/ssh-keygen are missing or sshd
//! does not start here.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd and the client side of the connection (key, scratch dirs, environment).
struct SshServer {
    dir: tempfile::TempDir,
    sshd: Child,
    port: u16,
    user: String,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

impl SshServer {
    /// Start sshd with the forced command `serve_command`, or explain why not.
    fn start(serve_command_for: impl Fn(&Path) -> String) -> Result<SshServer, String> {
        if !Path::new(SSHD).is_file() {
            return Err(format!("{SSHD} is not installed"));
        }
        for tool in ["ssh", "ssh-keygen"] {
            if find_on_path(tool).is_none() {
                return Err(format!("{tool} is not installed"));
            }
        }
        let user = current_user().ok_or("the current user has no name")?;
        let dir = tempfile::Builder::new()
            .prefix("rborg-sshd")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = dir.path().canonicalize().map_err(|e| e.to_string())?;
        for d in ["base", "allowed", "outside", "src/sub", "out", "out-borg"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        write_source_tree(&root.join("src"));
        for key in ["host_key", "client_key"] {
            make_key(&root.join(key))?;
        }
        let client_pub = std::fs::read_to_string(root.join("client_key.pub")).unwrap();
        std::fs::write(
            root.join("authorized_keys"),
            format!(
                "command=\"{}\",restrict {}",
                serve_command_for(&root),
                client_pub.trim()
            ),
        )
        .unwrap();
        let port = free_port().ok_or("no free port")?;
        let config = root.join("sshd_config");
        std::fs::write(&config, sshd_config(&root, port)).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            // as root sshd insists on its privilege separation dir (systemd usually makes it)
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let log = std::fs::File::create(root.join("sshd.log")).unwrap();
        let sshd = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
        let server = SshServer {
            dir,
            sshd,
            port,
            user,
        };
        server.wait_listening()?;
        Ok(server)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn wait_listening(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("sshd did not start:\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("sshd.log")).unwrap_or_default()
    }

    /// `ssh://user@127.0.0.1:port/<path>`
    fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        let root = self.root();
        let rsh = format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p {}",
            root.join("client_key").display(),
            self.port
        );
        let base = root.join("base").display().to_string();
        vec![
            ("HOME".into(), base.clone()),
            ("BORG_BASE_DIR".into(), base),
            ("BORG_PASSPHRASE".into(), "secret".into()),
            ("BORG_SHOW_SYSINFO".into(), "no".into()),
            ("BORG_EXIT_CODES".into(), "legacy".into()),
            ("BORG_RSH".into(), rsh),
            ("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING".into(), "YES".into()),
        ]
    }

    /// Run `client` in `cwd`; on failure the message includes sshd's log.
    fn run_ok(&self, client: &Path, args: &[&str], cwd: &Path, what: &str) -> Output {
        let o = run_in(client, args, cwd, &self.env());
        assert!(
            o.status.success(),
            "{what} failed (rc {:?}):\n{}\nsshd log:\n{}",
            o.status.code(),
            stderr(&o),
            self.log()
        );
        o
    }
}

fn current_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn free_port() -> Option<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

fn make_key(path: &Path) -> Result<(), String> {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ssh-keygen failed: {}", stderr(&o)))
    }
}

fn sshd_config(root: &Path, port: u16) -> String {
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {root}/host_key\n\
         AuthorizedKeysFile {root}/authorized_keys\n\
         PidFile {root}/sshd.pid\n\
         StrictModes no\n\
         UsePAM no\n\
         PermitRootLogin yes\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         LogLevel VERBOSE\n",
        root = root.display()
    )
}

fn write_source_tree(src: &Path) {
    // incompressible, several chunks
    let mut seed: u32 = 4242;
    let big: Vec<u8> = (0..2_500_000)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        })
        .collect();
    std::fs::write(src.join("big"), big).unwrap();
    std::fs::write(src.join("sub/small"), b"hello over ssh\n").unwrap();
    std::os::unix::fs::symlink("small", src.join("sub/link")).unwrap();
}

fn start_or_skip(test: &str) -> Option<SshServer> {
    let serve = rborg_bin().display().to_string();
    match SshServer::start(|root| {
        format!(
            "{serve} serve --restrict-to-path {}",
            root.join("allowed").display()
        )
    }) {
        Ok(s) => Some(s),
        Err(reason) => {
            skip(test, &reason);
            None
        }
    }
}

/// init, create, list, extract (compared with the source), check with `client`.
fn cycle(s: &SshServer, client: &Path, repo_name: &str, out: &str) {
    let root = s.root();
    let url = s.url(&root.join("allowed").join(repo_name));
    let archive = format!("{url}::a1");
    s.run_ok(client, &["init", "-e", "repokey", &url], &root, "init");
    s.run_ok(client, &["create", &archive, "src"], &root, "create");
    let list = s.run_ok(client, &["list", "--short", &url], &root, "list");
    assert_eq!(stdout(&list).trim(), "a1");
    let items = s.run_ok(client, &["list", "--short", &archive], &root, "list a1");
    assert!(
        stdout(&items).contains("src/sub/small"),
        "{}",
        stdout(&items)
    );
    s.run_ok(client, &["extract", &archive], &root.join(out), "extract");
    assert_same_tree(&root.join("src"), &root.join(out).join("src"));
    s.run_ok(client, &["check", &url], &root, "check");
}

#[test]
fn rborg_and_borg_clients_over_real_ssh() {
    let test = "rborg_and_borg_clients_over_real_ssh";
    let Some(s) = start_or_skip(test) else {
        return;
    };
    let rb = rborg_bin();
    cycle(&s, &rb, "repo", "out");
    if borg_or_skip(test) {
        cycle(&s, Path::new("borg"), "repo-borg", "out-borg");
        // both clients read each other's repository through the same server
        s.run_ok(
            Path::new("borg"),
            &[
                "check",
                "--verify-data",
                &s.url(&s.root().join("allowed/repo")),
            ],
            &s.root(),
            "borg check of rborg's repository",
        );
        let list = s.run_ok(
            &rb,
            &[
                "list",
                "--short",
                &s.url(&s.root().join("allowed/repo-borg")),
            ],
            &s.root(),
            "rborg list of borg's repository",
        );
        assert_eq!(stdout(&list).trim(), "a1");
    }
}

#[test]
fn path_outside_the_restriction_is_refused_over_real_ssh() {
    let test = "path_outside_the_restriction_is_refused_over_real_ssh";
    let Some(s) = start_or_skip(test) else {
        return;
    };
    let root = s.root();
    let outside = root.join("outside/repo");
    let mut clients = vec![rborg_bin()];
    if borg_or_skip(test) {
        clients.push(PathBuf::from("borg"));
    }
    for client in clients {
        let o = run_in(
            &client,
            &["init", "-e", "none", &s.url(&outside)],
            &root,
            &s.env(),
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}\nsshd log:\n{}",
            client.display(),
            stderr(&o),
            s.log()
        );
        assert!(
            stderr(&o).contains(&format!(
                "Repository path not allowed: {}",
                outside.display()
            )),
            "{}: {}",
            client.display(),
            stderr(&o)
        );
        assert!(!outside.exists());
    }
}
