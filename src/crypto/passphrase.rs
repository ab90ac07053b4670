//! Passphrase acquisition (cli.md §12.2 unlock, §12.3 new passphrase).
//!
//! All outside effects (environment, terminal, stderr, passcommand, fd) go through
//! [`PassphraseEnv`], so the rules can be tested without touching the process environment.

use std::io::{BufRead, Read, Write};

use crate::errors::{Error, ErrorKind, Result};
use crate::output;

/// Where passphrases come from. [`SystemEnv`] is the real thing.
pub trait PassphraseEnv {
    /// An environment variable (set-but-empty is `Some("")`).
    fn var(&self, name: &str) -> Option<String>;

    /// Ask for a secret on the terminal; `None` on EOF or when no input is possible.
    fn getpass(&self, prompt: &str) -> Option<String>;

    /// One answer line (without its newline) for a yes/no question; `None` on EOF.
    fn read_line(&self) -> Option<String>;

    /// Text for the user on stderr (no newline added).
    fn write_stderr(&self, text: &str);

    /// Run the split BORG_PASSCOMMAND; stdout on success, else borg's error text.
    fn run_passcommand(&self, argv: &[String]) -> std::result::Result<String, String> {
        run_command(argv)
    }

    /// Read everything from file descriptor `fd` (BORG_PASSPHRASE_FD), closing it.
    fn read_fd(&self, fd: i32) -> std::io::Result<String> {
        use std::os::fd::FromRawFd;
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        }
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        }
        // Safety: the fd was handed to us for exactly this read; like borg, it is closed after.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The process environment, the controlling terminal and stderr.
pub struct SystemEnv;

impl PassphraseEnv for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }

    fn getpass(&self, prompt: &str) -> Option<String> {
        match rpassword::prompt_password(prompt) {
            Ok(p) => Some(p),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(_) => {
                // No terminal: like Python's getpass, prompt on stderr and read stdin; the
                // newline the user typed is not echoed, so one is written after the answer.
                self.write_stderr(prompt);
                let answer = self.read_line();
                if answer.is_some() {
                    self.write_stderr("\n");
                }
                answer
            }
        }
    }

    fn read_line(&self) -> Option<String> {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.ends_with('\n') {
                    line.pop();
                }
                Some(line)
            }
        }
    }

    fn write_stderr(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

/// Python's repr of a list of strings, for borg's CalledProcessError text.
fn py_list_repr(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| crate::python::repr(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Run a passcommand (no shell) and return its stdout; errors read like Python's.
fn run_command(argv: &[String]) -> std::result::Result<String, String> {
    let Some(program) = argv.first() else {
        return Err("list index out of range".to_string());
    };
    let out = std::process::Command::new(program)
        .args(&argv[1..])
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            let desc = nix::errno::Errno::from_raw(errno).desc();
            format!("[Errno {errno}] {desc}: {}", crate::python::repr(program))
        })?;
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt;
        let cmd = py_list_repr(argv);
        return Err(match (out.status.code(), out.status.signal()) {
            (Some(code), _) => format!("Command '{cmd}' returned non-zero exit status {code}."),
            (None, Some(sig)) => format!("Command '{cmd}' died with signal {sig}."),
            _ => format!("Command '{cmd}' failed."),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The passphrase from BORG_PASSPHRASE, BORG_PASSCOMMAND or BORG_PASSPHRASE_FD (first set
/// wins), or `None` if none is set.
pub fn env_passphrase(env: &dyn PassphraseEnv) -> Result<Option<String>> {
    if let Some(p) = env.var("BORG_PASSPHRASE") {
        return Ok(Some(p));
    }
    if let Some(cmd) = env.var("BORG_PASSCOMMAND") {
        let argv = shlex::split(&cmd)
            .ok_or_else(|| Error::new(ErrorKind::PasscommandFailure, ["No closing quotation"]))?;
        let out = env
            .run_passcommand(&argv)
            .map_err(|msg| Error::new(ErrorKind::PasscommandFailure, [msg]))?;
        return Ok(Some(out.trim_end_matches('\n').to_string()));
    }
    if let Some(fd_text) = env.var("BORG_PASSPHRASE_FD") {
        let Ok(fd) = fd_text.trim().parse::<i32>() else {
            return Ok(None);
        };
        let text = env
            .read_fd(fd)
            .map_err(|e| Error::exception(format!("BORG_PASSPHRASE_FD {fd}: {e}")))?;
        return Ok(Some(text.trim_end_matches('\n').to_string()));
    }
    Ok(None)
}

/// Prompt for a passphrase; EOF gives borg's NoPassphraseFailure.
pub fn getpass(env: &dyn PassphraseEnv, prompt: &str) -> Result<String> {
    match env.getpass(prompt) {
        Some(p) => Ok(p),
        None => {
            if !prompt.is_empty() {
                env.write_stderr("\n");
            }
            let state = |v: &str| {
                if env.var(v).is_some() {
                    "set"
                } else {
                    "not set"
                }
            };
            let msg = format!(
                "BORG_PASSPHRASE is {}. BORG_PASSCOMMAND is {}. Interactive password query failed.",
                state("BORG_PASSPHRASE"),
                state("BORG_PASSCOMMAND")
            );
            Err(Error::new(ErrorKind::NoPassphraseFailure, [msg]))
        }
    }
}

/// Unlock something protected by a passphrase (borg's key detection): a passphrase from the
/// environment is tried once (wrong → PassphraseWrong); otherwise the empty passphrase is tried
/// silently, then up to 3 prompts (→ PasswordRetriesExceeded). `try_load` returns `Ok(None)`
/// for a wrong passphrase. Returns the result and the passphrase that worked.
pub fn unlock_with<T>(
    env: &dyn PassphraseEnv,
    prompt: &str,
    mut try_load: impl FnMut(&str) -> Result<Option<T>>,
) -> Result<(T, String)> {
    if let Some(p) = env_passphrase(env)? {
        return match try_load(&p)? {
            Some(v) => Ok((v, p)),
            None => Err(Error::plain(ErrorKind::PassphraseWrong)),
        };
    }
    if let Some(v) = try_load("")? {
        return Ok((v, String::new()));
    }
    for _ in 0..3 {
        let p = getpass(env, prompt)?;
        if let Some(v) = try_load(&p)? {
            return Ok((v, p));
        }
    }
    Err(Error::plain(ErrorKind::PasswordRetriesExceeded))
}

const TRUISH: [&str; 6] = ["Yes", "YES", "yes", "Y", "y", "1"];
const FALSISH: [&str; 6] = ["No", "NO", "no", "N", "n", "0"];
const DEFAULTISH: [&str; 6] = ["Default", "DEFAULT", "default", "D", "d", ""];

/// borg's `BORG_DISPLAY_PASSPHRASE` question (text mode): env answer first, retries on
/// invalid answers, EOF = no.
fn ask_display_passphrase(env: &dyn PassphraseEnv) -> bool {
    const MSG: &str = "Do you want your passphrase to be displayed for verification? [yN]: ";
    const VAR: &str = "BORG_DISPLAY_PASSPHRASE";
    env.write_stderr(MSG);
    let mut use_env = true;
    loop {
        let from_env = if use_env { env.var(VAR) } else { None };
        let answer = match from_env {
            Some(a) => {
                env.write_stderr(&format!("{a} (from {VAR})\n"));
                a
            }
            None => env.read_line().unwrap_or_else(|| FALSISH[0].to_string()),
        };
        let a = answer.as_str();
        if DEFAULTISH.contains(&a) || FALSISH.contains(&a) {
            return false;
        }
        if TRUISH.contains(&a) {
            return true;
        }
        env.write_stderr("Invalid answer, try again.\n");
        env.write_stderr(MSG);
        use_env = false; // an invalid env answer is not reused
    }
}

fn show_passphrase_if_wanted(env: &dyn PassphraseEnv, passphrase: &str) {
    if !ask_display_passphrase(env) {
        return;
    }
    env.write_stderr(&format!(
        "Your passphrase (between double-quotes): \"{passphrase}\"\n"
    ));
    env.write_stderr("Make sure the passphrase displayed above is exactly what you wanted.\n");
    if !passphrase.is_ascii() {
        env.write_stderr(&format!(
            "Your passphrase (UTF-8 encoding in hex): {}\n",
            hex::encode(passphrase.as_bytes())
        ));
        env.write_stderr(
            "As you have a non-ASCII passphrase, it is recommended to keep the UTF-8 encoding in hex together with the passphrase at a safe place.\n",
        );
    }
}

/// A new passphrase (init, key change-passphrase): BORG_NEW_PASSPHRASE, else the unlock
/// sources, else an interactive double prompt (10 attempts) with the display question.
pub fn new_passphrase(env: &dyn PassphraseEnv, allow_empty: bool) -> Result<String> {
    if let Some(p) = env.var("BORG_NEW_PASSPHRASE") {
        return Ok(p);
    }
    if let Some(p) = env_passphrase(env)? {
        return Ok(p);
    }
    for _ in 0..10 {
        let first = getpass(env, "Enter new passphrase: ")?;
        if !allow_empty && first.is_empty() {
            env.write_stderr("Passphrase must not be blank\n");
            continue;
        }
        let second = getpass(env, "Enter same passphrase again: ")?;
        if first == second {
            show_passphrase_if_wanted(env, &first);
            output::log(
                output::Level::Info,
                super::create::KEY_LOGGER,
                "Remember your passphrase. Your data will be inaccessible without it.",
                None,
            );
            return Ok(first);
        }
        env.write_stderr("Passphrases do not match\n");
    }
    Err(Error::plain(ErrorKind::PasswordRetriesExceeded))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    /// A scripted environment for tests.
    #[derive(Default)]
    pub struct FakeEnv {
        pub vars: HashMap<String, String>,
        pub answers: RefCell<VecDeque<String>>,
        pub lines: RefCell<VecDeque<String>>,
        pub prompts: RefCell<Vec<String>>,
        pub stderr: RefCell<String>,
    }

    impl FakeEnv {
        pub fn with_vars(vars: &[(&str, &str)]) -> FakeEnv {
            FakeEnv {
                vars: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }
        }
        pub fn answering(mut self, answers: &[&str]) -> FakeEnv {
            self.answers = RefCell::new(answers.iter().map(|s| s.to_string()).collect());
            self
        }
    }

    impl PassphraseEnv for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn getpass(&self, prompt: &str) -> Option<String> {
            self.prompts.borrow_mut().push(prompt.to_string());
            self.answers.borrow_mut().pop_front()
        }
        fn read_line(&self) -> Option<String> {
            self.lines.borrow_mut().pop_front()
        }
        fn write_stderr(&self, text: &str) {
            self.stderr.borrow_mut().push_str(text);
        }
    }

    fn checker(good: &'static str) -> impl FnMut(&str) -> Result<Option<&'static str>> {
        move |p| Ok(if p == good { Some("key") } else { None })
    }

    #[test]
    fn env_sources_in_order() {
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", ""), ("BORG_PASSCOMMAND", "false")]);
        assert_eq!(env_passphrase(&env).unwrap(), Some(String::new()));
        let env = FakeEnv::with_vars(&[("BORG_PASSCOMMAND", "printf 'a b\\n\\n'")]);
        assert_eq!(env_passphrase(&env).unwrap(), Some("a b".to_string()));
        let env = FakeEnv::with_vars(&[("BORG_PASSCOMMAND", "false")]);
        let e = env_passphrase(&env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PasscommandFailure);
        assert_eq!(
            e.message,
            "Passcommand supplied in BORG_PASSCOMMAND failed: Command '['false']' returned non-zero exit status 1."
        );
        let env = FakeEnv::with_vars(&[("BORG_PASSCOMMAND", "/nonexistent/cmd x")]);
        let e = env_passphrase(&env).unwrap_err();
        assert!(
            e.message
                .ends_with("[Errno 2] No such file or directory: '/nonexistent/cmd'"),
            "{}",
            e.message
        );
        assert_eq!(env_passphrase(&FakeEnv::default()).unwrap(), None);
    }

    #[test]
    fn passphrase_fd_is_read_and_closed() {
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"from-fd\n\n").unwrap();
        drop(w);
        use std::os::fd::IntoRawFd;
        let fd = r.into_raw_fd();
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE_FD", &fd.to_string())]);
        assert_eq!(env_passphrase(&env).unwrap(), Some("from-fd".to_string()));
        assert!(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err());
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE_FD", "not-a-number")]);
        assert_eq!(env_passphrase(&env).unwrap(), None);
    }

    #[test]
    fn unlock_rules() {
        // Env passphrase wrong → PassphraseWrong, no prompt.
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "bad")]).answering(&["good"]);
        let e = unlock_with(&env, "P: ", checker("good")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PassphraseWrong);
        assert!(env.prompts.borrow().is_empty());
        // Env passphrase right.
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "good")]);
        assert_eq!(unlock_with(&env, "P: ", checker("good")).unwrap().1, "good");
        // Empty passphrase silently first.
        let env = FakeEnv::default();
        assert_eq!(unlock_with(&env, "P: ", checker("")).unwrap().1, "");
        assert!(env.prompts.borrow().is_empty());
        // Then up to 3 prompts.
        let env = FakeEnv::default().answering(&["x", "y", "good"]);
        assert_eq!(unlock_with(&env, "P: ", checker("good")).unwrap().1, "good");
        assert_eq!(env.prompts.borrow().len(), 3);
        let env = FakeEnv::default().answering(&["x", "y", "z", "good"]);
        assert_eq!(
            unlock_with(&env, "P: ", checker("good")).unwrap_err().kind,
            ErrorKind::PasswordRetriesExceeded
        );
        // EOF at the prompt.
        let env = FakeEnv::with_vars(&[("BORG_PASSCOMMAND_UNRELATED", "1")]);
        let e = unlock_with(&env, "P: ", checker("good")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoPassphraseFailure);
        assert_eq!(
            e.message,
            "Cannot acquire a passphrase: BORG_PASSPHRASE is not set. BORG_PASSCOMMAND is not set. Interactive password query failed."
        );
    }

    #[test]
    fn new_passphrase_rules() {
        let env = FakeEnv::with_vars(&[("BORG_NEW_PASSPHRASE", "n"), ("BORG_PASSPHRASE", "o")]);
        assert_eq!(new_passphrase(&env, true).unwrap(), "n");
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "o")]);
        assert_eq!(new_passphrase(&env, true).unwrap(), "o");
        // Interactive: mismatch, then match; display question answered from env.
        let env = FakeEnv::with_vars(&[("BORG_DISPLAY_PASSPHRASE", "y")])
            .answering(&["a", "b", "pä", "pä"]);
        assert_eq!(new_passphrase(&env, true).unwrap(), "pä");
        let err = env.stderr.borrow().clone();
        assert!(err.contains("Passphrases do not match\n"));
        assert!(err.contains("[yN]: y (from BORG_DISPLAY_PASSPHRASE)\n"));
        assert!(err.contains("Your passphrase (between double-quotes): \"pä\"\n"));
        assert!(err.contains("Your passphrase (UTF-8 encoding in hex): 70c3a4\n"));
        // Blank refused when not allowed; display question EOF = no.
        let env = FakeEnv::default().answering(&["", "s", "s"]);
        assert_eq!(new_passphrase(&env, false).unwrap(), "s");
        assert!(env
            .stderr
            .borrow()
            .contains("Passphrase must not be blank\n"));
        assert!(!env.stderr.borrow().contains("between double-quotes"));
        // Invalid display answer from env is not reused; next answer from stdin.
        let env =
            FakeEnv::with_vars(&[("BORG_DISPLAY_PASSPHRASE", "maybe")]).answering(&["s", "s"]);
        env.lines.borrow_mut().push_back("yes".to_string());
        new_passphrase(&env, true).unwrap();
        assert!(env.stderr.borrow().contains("Invalid answer, try again.\n"));
        assert!(env.stderr.borrow().contains("between double-quotes"));
        // Ten mismatches.
        let answers: Vec<&str> = ["a", "b"].iter().cycle().take(20).copied().collect();
        let env = FakeEnv::default().answering(&answers);
        assert_eq!(
            new_passphrase(&env, true).unwrap_err().kind,
            ErrorKind::PasswordRetriesExceeded
        );
    }
}
