//! SIGINT / SIGTERM / SIGHUP handling with borg's outcome: the error record
//! (`Keyboard interrupt`, `Received SIGTERM` / msgid `Signal.SIGTERM`, `Received SIGHUP.` /
//! `Signal.SIGHUP`), the `--show-rc` line and exit code 128+N.
//!
//! The handler only writes the signal number into a pipe; a watcher thread runs registered
//! cleanups (e.g. releasing repository locks), logs and exits. A second signal while that
//! runs ends the process at once. Commands that can stop gracefully on Ctrl-C (create's
//! checkpoint) may defer the first SIGINT and poll [`sigint_pending`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{exit_claimed, log, Level, LOGGER_ARCHIVER};

static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static TERMINATING: AtomicBool = AtomicBool::new(false);
static RECEIVED: AtomicI32 = AtomicI32::new(0);
static DEFER_SIGINT: AtomicBool = AtomicBool::new(false);
static SIGINT_PENDING: AtomicBool = AtomicBool::new(false);
static NEXT_CLEANUP_ID: AtomicU64 = AtomicU64::new(1);

type Cleanup = Box<dyn Fn() + Send + Sync>;

fn cleanups() -> &'static Mutex<BTreeMap<u64, Cleanup>> {
    static CLEANUPS: OnceLock<Mutex<BTreeMap<u64, Cleanup>>> = OnceLock::new();
    CLEANUPS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Handle of a registered cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupId(u64);

/// Register work to do before a signal ends the process (runs in reverse registration
/// order). Remove it with [`remove_cleanup`] when the resource is released normally.
pub fn add_cleanup(f: impl Fn() + Send + Sync + 'static) -> CleanupId {
    let id = NEXT_CLEANUP_ID.fetch_add(1, Ordering::Relaxed);
    cleanups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Box::new(f));
    CleanupId(id)
}

pub fn remove_cleanup(id: CleanupId) {
    cleanups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id.0);
}

/// Defer the first SIGINT: it only sets [`sigint_pending`] (a second one terminates).
pub fn set_sigint_deferred(on: bool) {
    DEFER_SIGINT.store(on, Ordering::Relaxed);
    if !on {
        SIGINT_PENDING.store(false, Ordering::Relaxed);
    }
}

/// A terminating signal is being handled (cleanups run or are about to).
pub fn terminating() -> bool {
    TERMINATING.load(Ordering::SeqCst)
}

/// A deferred SIGINT arrived and was not yet handled.
pub fn sigint_pending() -> bool {
    SIGINT_PENDING.load(Ordering::Relaxed)
}

/// The terminating signal, once one was received.
pub fn received_signal() -> Option<i32> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    if TERMINATING.load(Ordering::Relaxed) {
        // A repeat of the signal being handled is ignored: senders like timeout(1) deliver it
        // twice (to the process and to its group), and exiting at once would abandon the
        // cleanup (lock release) half done. A different signal ends the process now.
        if RECEIVED.load(Ordering::Relaxed) == sig {
            return;
        }
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
    let fd = PIPE_WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe { libc::write(fd, &byte as *const u8 as *const libc::c_void, 1) };
    }
}

/// Install the handlers (once, at startup).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 fills the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return;
        }
        PIPE_WRITE_FD.store(fds[1], Ordering::Relaxed);
        let read_fd = fds[0];
        let spawned = std::thread::Builder::new()
            .name("signal-watcher".into())
            .spawn(move || watch(read_fd));
        if spawned.is_err() {
            return;
        }
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction with our handler and SA_RESTART is valid.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    });
}

fn watch(read_fd: libc::c_int) {
    loop {
        let mut byte = 0u8;
        // SAFETY: reading one byte into a local buffer.
        let n = unsafe { libc::read(read_fd, &mut byte as *mut u8 as *mut libc::c_void, 1) };
        if n == 1 {
            let sig = byte as i32;
            if sig == libc::SIGINT && DEFER_SIGINT.load(Ordering::Relaxed) && !sigint_pending() {
                SIGINT_PENDING.store(true, Ordering::Relaxed);
                continue;
            }
            terminate(sig);
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return;
        }
    }
}

/// Held by whichever path ends the process first (a signal, or the normal exit): the other
/// then waits instead of exiting while the first is still releasing locks.
static EXITING: Mutex<()> = Mutex::new(());

/// Claim the exit: returns only to the first caller; later callers block until the process is
/// gone.
pub fn claim_exit() {
    let guard = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::forget(guard);
}

/// Run (and forget) every registered cleanup, newest first. The normal exit path calls this
/// too: a resource whose owner is still referenced somewhere (say, a repository lock held by an
/// object a worker thread has not dropped yet) is released before the process ends.
pub fn run_cleanups() {
    let pending: Vec<Cleanup> = {
        let mut map = cleanups().lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<u64> = map.keys().rev().copied().collect();
        keys.into_iter().filter_map(|k| map.remove(&k)).collect()
    };
    for f in pending {
        f();
    }
}

/// Ends the process for signal `sig` as borg does.
fn terminate(sig: i32) -> ! {
    RECEIVED.store(sig, Ordering::Relaxed);
    TERMINATING.store(true, Ordering::Relaxed);
    claim_exit();
    run_cleanups();
    let (msg, msgid) = match sig {
        libc::SIGINT => ("Keyboard interrupt", None),
        libc::SIGTERM => ("Received SIGTERM", Some("Signal.SIGTERM")),
        libc::SIGHUP => ("Received SIGHUP.", Some("Signal.SIGHUP")),
        _ => ("Received signal", None),
    };
    log(Level::Error, LOGGER_ARCHIVER, msg, msgid);
    let rc = 128 + sig;
    crate::errors::set_exit_code(rc);
    exit_claimed(rc)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    const CHILD_ENV: &str = "RBORG_TEST_SIGNAL_CHILD";

    /// Runs in a child process only: installs the handlers and waits to be signalled.
    #[test]
    fn signal_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        crate::output::configure(&crate::output::OutputConfig {
            log_json: true,
            show_rc: true,
            ..Default::default()
        });
        super::install();
        super::add_cleanup(|| eprintln!("cleanup ran"));
        println!("ready");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(30));
    }

    #[test]
    fn sigterm_ends_with_borg_record_and_rc_143() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "output::signals::tests::signal_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains("ready") {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "child ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(143));
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("cleanup ran"), "{err}");
        assert!(
            err.contains(r#""message": "Received SIGTERM", "levelname": "ERROR", "name": "borg.archiver", "msgid": "Signal.SIGTERM"}"#),
            "{err}"
        );
        assert!(
            err.contains(r#""message": "terminating with signal status, rc 143""#),
            "{err}"
        );
    }
}
