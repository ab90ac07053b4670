//! borg's lock protocol (repository-format.md §1.3), shared by the repository (`<repo>/lock`)
//! and the client cache (`<cache>/lock`).
//!
//! `P.exclusive/` is a directory used as a mutex: it is created under a temporary name with
//! one empty file `<hostid>.<pid>-<thread hex>` inside and renamed into place. `P.roster` is a
//! JSON object listing the shared and exclusive holders. A shared lock takes the mutex only
//! while adding itself to the roster; an exclusive lock keeps the mutex and waits until no
//! shared holder is left. Holders on this host whose process is gone are stale and removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::errors::{Error, ErrorKind, Result};
use crate::output::{self, Level};

const LOGGER: &str = "borg.locking";

/// Held while this process changes lock files, by the code taking or releasing a lock and by
/// the release a terminating signal runs: the signal's cleanup never sees a half-written
/// roster, and once it ran nothing takes a lock again (`stop_requested`).
static LOCK_OPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    /// Set on the thread releasing locks for a terminating signal.
    static EXIT_CLEANUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A terminating signal arrived: locks are not taken any more (except by its own cleanup).
fn stop_requested() -> bool {
    output::signals::terminating() && !EXIT_CLEANUP.with(|c| c.get())
}

fn lock_ops() -> std::sync::MutexGuard<'static, ()> {
    LOCK_OPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who holds a lock: host id, process id, thread (always 0 in borg).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub host: String,
    pub pid: u32,
    pub thread: u32,
}

impl ProcessId {
    /// This process (`thread` 0, like borg).
    pub fn current() -> ProcessId {
        ProcessId {
            host: host_id().to_string(),
            pid: std::process::id(),
            thread: 0,
        }
    }

    /// Name of the file inside `lock.exclusive/`: `<host>.<pid>-<thread hex>`.
    pub fn lock_file_name(&self) -> String {
        format!("{}.{}-{:x}", self.host, self.pid, self.thread)
    }

    /// Parse a lock file name (host may contain dots and dashes).
    pub fn parse_lock_file_name(name: &str) -> Option<ProcessId> {
        let (host_pid, thread) = name.rsplit_once('-')?;
        let (host, pid) = host_pid.rsplit_once('.')?;
        Some(ProcessId {
            host: host.to_string(),
            pid: pid.parse().ok()?,
            thread: u32::from_str_radix(thread, 16).ok()?,
        })
    }
}

/// `BORG_HOST_ID`, else `<fqdn>@<node>` where node is the MAC address as an integer
/// (what Python's `uuid.getnode()` returns on Linux).
pub fn host_id() -> &'static str {
    static HOST_ID: OnceLock<String> = OnceLock::new();
    HOST_ID.get_or_init(|| match std::env::var("BORG_HOST_ID") {
        Ok(v) if !v.is_empty() => v,
        _ => format!("{}@{}", fqdn(), node_id()),
    })
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The canonical name of our host name (borg's patched `getfqdn`), else the host name.
pub fn fqdn() -> String {
    let name = hostname();
    canonical_name(&name).unwrap_or(name)
}

fn canonical_name(name: &str) -> Option<String> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: plain getaddrinfo call with a zeroed hints struct; the result list is only read
    // while it is alive and freed once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_socktype = libc::SOCK_DGRAM;
        hints.ai_flags = libc::AI_CANONNAME;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 {
            return None;
        }
        let mut found = None;
        let mut p = res;
        while !p.is_null() {
            let cn = (*p).ai_canonname;
            if !cn.is_null() {
                let s = std::ffi::CStr::from_ptr(cn).to_string_lossy().into_owned();
                if !s.is_empty() {
                    found = Some(s);
                    break;
                }
            }
            p = (*p).ai_next;
        }
        libc::freeaddrinfo(res);
        found
    }
}

/// The 48-bit node id: MAC of the first interface with an IPv4 address and a non-zero MAC
/// (libuuid's choice), else of the first non-loopback interface, else a random value kept in
/// the config dir.
pub fn node_id() -> u64 {
    let mut candidates = ipv4_interfaces();
    candidates.extend(all_interfaces());
    for name in candidates {
        if let Some(mac) = read_mac(&name) {
            return mac;
        }
    }
    persisted_random_node()
}

fn read_mac(interface: &str) -> Option<u64> {
    let text =
        fs::read_to_string(Path::new("/sys/class/net").join(interface).join("address")).ok()?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    if bytes.len() != 6 || bytes.iter().all(|&b| b == 0) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
}

fn ipv4_interfaces() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: getifaddrs fills a linked list that we only read and then free.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return names;
        }
        let mut p = list;
        while !p.is_null() {
            let addr = (*p).ifa_addr;
            if !addr.is_null()
                && (*addr).sa_family as i32 == libc::AF_INET
                && !(*p).ifa_name.is_null()
            {
                let name = std::ffi::CStr::from_ptr((*p).ifa_name)
                    .to_string_lossy()
                    .into_owned();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    names
}

fn all_interfaces() -> Vec<String> {
    let mut found: Vec<(u64, String)> = fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .map(|n| {
                    let idx = fs::read_to_string(format!("/sys/class/net/{n}/ifindex"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(u64::MAX);
                    (idx, n)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

fn persisted_random_node() -> u64 {
    let path = crate::paths::config_dir().join("rborg-node-id");
    if let Some(v) = fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        return v;
    }
    // like Python's random node: 48 random bits with the multicast bit set
    let v = (rand::thread_rng().gen::<u64>() & 0xffff_ffff_ffff) | (1 << 40);
    let _ = fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
    let _ = fs::write(&path, v.to_string());
    v
}

/// Whether the holder may still be alive: other hosts and non-zero threads always are.
pub fn process_alive(host: &str, pid: u32, thread: u32) -> bool {
    if host != host_id() || thread != 0 {
        return true;
    }
    local_pid_alive(pid)
}

pub fn local_pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e != nix::errno::Errno::ESRCH,
    }
}

/// Python's `str(OSError)`: `[Errno N] <strerror>: '<path>'`.
pub fn os_error_text(e: &io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(code) => format!(
            "[Errno {code}] {}: '{}'",
            nix::errno::Errno::from_raw(code).desc(),
            path.display()
        ),
        None => format!("{e}: '{}'", path.display()),
    }
}

/// Timeout bookkeeping (borg's TimeoutTimer): `None` = wait forever.
struct Timer {
    end: Option<Instant>,
    sleep: Duration,
}

impl Timer {
    fn start(timeout: Option<f64>, sleep: Option<f64>) -> Timer {
        let sleep = sleep.unwrap_or(match timeout {
            None => 1.0,
            Some(t) => (t / 10.0).min(60.0),
        });
        // Timeouts come from clients too (`open`'s lock_wait): one too large to represent
        // never ends, as in Python; NaN and negative ones end at once.
        Timer {
            end: timeout.and_then(|t| Instant::now().checked_add(seconds(t)?)),
            sleep: seconds(sleep).unwrap_or(Duration::from_secs(60)),
        }
    }

    fn timed_out_or_sleep(&self) -> bool {
        if self.end.is_some_and(|e| Instant::now() >= e) {
            return true;
        }
        std::thread::sleep(self.sleep);
        false
    }
}

/// `t` seconds (at least 0; NaN counts as 0), `None` when too large for a Duration.
fn seconds(t: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(t.max(0.0)).ok()
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// The `P.exclusive` directory mutex.
pub struct ExclusiveLock {
    path: PathBuf,
    id: ProcessId,
    unique_name: PathBuf,
    timeout: Option<f64>,
    sleep: Option<f64>,
    pub kill_stale_locks: bool,
}

impl ExclusiveLock {
    pub fn new(path: &Path, timeout: Option<f64>, id: ProcessId) -> ExclusiveLock {
        let path = crate::repository::abspath(path);
        let unique_name = path.join(id.lock_file_name());
        ExclusiveLock {
            path,
            id,
            unique_name,
            timeout,
            sleep: None,
            kill_stale_locks: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn path_text(&self) -> String {
        self.path.display().to_string()
    }

    pub fn acquire(&self) -> Result<()> {
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        let base = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp_dir = parent.join(format!("{base}.{}.tmp", random_suffix()));
        let temp_file = temp_dir.join(self.id.lock_file_name());
        let created = fs::create_dir(&temp_dir)
            .map_err(|e| os_error_text(&e, &temp_dir))
            .and_then(|()| {
                set_mode(&temp_dir, 0o700);
                fs::File::create(&temp_file)
                    .map(|_| ())
                    .map_err(|e| os_error_text(&e, &temp_file))
            });
        if let Err(text) = created {
            let _ = fs::remove_dir(&temp_dir);
            return Err(Error::new(ErrorKind::LockFailed, [self.path_text(), text]));
        }
        let timer = Timer::start(self.timeout, self.sleep);
        let result = loop {
            match fs::rename(&temp_dir, &self.path) {
                Ok(()) => return Ok(()),
                Err(_) => {
                    if self.by_me() {
                        break Ok(());
                    }
                    self.kill_stale_lock();
                    if stop_requested() || timer.timed_out_or_sleep() {
                        break Err(Error::new(ErrorKind::LockTimeout, [self.path_text()]));
                    }
                }
            }
        };
        let _ = fs::remove_file(&temp_file);
        let _ = fs::remove_dir(&temp_dir);
        result
    }

    pub fn release(&self) -> Result<()> {
        if !self.is_locked() {
            return Err(Error::new(ErrorKind::NotLocked, [self.path_text()]));
        }
        if !self.by_me() {
            return Err(Error::new(ErrorKind::NotMyLock, [self.path_text()]));
        }
        fs::remove_file(&self.unique_name)
            .map_err(|e| Error::exception(os_error_text(&e, &self.unique_name)))?;
        if let Err(e) = fs::remove_dir(&self.path) {
            // another locker may already have put its own file in; that is fine
            let benign = matches!(
                e.raw_os_error(),
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) | Some(libc::ENOENT)
            );
            if !benign {
                return Err(Error::exception(os_error_text(&e, &self.path)));
            }
        }
        Ok(())
    }

    pub fn is_locked(&self) -> bool {
        self.path.exists()
    }

    pub fn by_me(&self) -> bool {
        self.unique_name.exists()
    }

    /// Remove lock files of dead processes of this host; true if the lock dir is gone after.
    pub fn kill_stale_lock(&self) -> bool {
        let names: Vec<String> = match fs::read_dir(&self.path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        for name in names {
            let Some(holder) = ProcessId::parse_lock_file_name(&name) else {
                output::log(
                    Level::Error,
                    LOGGER,
                    &format!(
                        "Found malformed lock {name} in {}. Please check/fix manually.",
                        self.path_text()
                    ),
                    None,
                );
                return false;
            };
            if process_alive(&holder.host, holder.pid, holder.thread) {
                return false;
            }
            if !self.kill_stale_locks {
                return false;
            }
            match fs::remove_file(self.path.join(&name)) {
                Ok(()) => output::log(
                    Level::Warning,
                    LOGGER,
                    &format!("Killed stale lock {name}."),
                    None,
                ),
                Err(e) => {
                    output::log(
                        Level::Error,
                        LOGGER,
                        &format!("Found stale lock {name}, but cannot delete due to {e}"),
                        None,
                    );
                    return false;
                }
            }
        }
        fs::remove_dir(&self.path).is_ok()
    }

    /// Remove the lock whoever holds it (`borg break-lock`).
    pub fn break_lock(&self) -> Result<()> {
        if let Ok(rd) = fs::read_dir(&self.path) {
            for e in rd.flatten() {
                fs::remove_file(e.path())?;
            }
            fs::remove_dir(&self.path)?;
        }
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

const SHARED: &str = "shared";
const EXCLUSIVE: &str = "exclusive";

type RosterEntries = Vec<(String, Vec<ProcessId>)>;

/// The `P.roster` JSON file. Only modify it while holding the `P.exclusive` mutex.
pub struct LockRoster {
    path: PathBuf,
    id: ProcessId,
    pub kill_stale_locks: bool,
}

impl LockRoster {
    pub fn new(path: &Path, id: ProcessId) -> LockRoster {
        LockRoster {
            path: path.to_path_buf(),
            id,
            kill_stale_locks: true,
        }
    }

    /// Load the roster; a missing or malformed file is empty. Stale entries are dropped.
    fn load(&self) -> RosterEntries {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let Some(mut data) = parse_roster(&text) else {
            return Vec::new();
        };
        if self.kill_stale_locks {
            for (key, entries) in data.iter_mut() {
                entries.retain(|p| {
                    let alive = process_alive(&p.host, p.pid, p.thread);
                    if !alive {
                        output::log(
                            Level::Warning,
                            LOGGER,
                            &format!(
                                "Removed stale {key} roster lock for host {} pid {} thread {}.",
                                p.host, p.pid, p.thread
                            ),
                            None,
                        );
                    }
                    alive
                });
            }
        }
        data
    }

    fn save(&self, data: &RosterEntries) -> Result<()> {
        fs::write(&self.path, roster_json(data))
            .map_err(|e| Error::exception(os_error_text(&e, &self.path)))
    }

    pub fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }

    /// Holders listed under `key` ("shared" / "exclusive").
    pub fn get(&self, key: &str) -> Vec<ProcessId> {
        self.load()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    pub fn empty(&self, keys: &[&str]) -> bool {
        let data = self.load();
        keys.iter().all(|k| {
            data.iter()
                .find(|(n, _)| n == k)
                .is_none_or(|(_, v)| v.is_empty())
        })
    }

    /// Add or remove ourselves under `key`.
    fn modify(&self, key: &str, add: bool) -> Result<()> {
        let mut data = self.load();
        let pos = match data.iter().position(|(k, _)| k == key) {
            Some(p) => p,
            None => {
                data.push((key.to_string(), Vec::new()));
                data.len() - 1
            }
        };
        let entries = &mut data[pos].1;
        entries.retain(|p| *p != self.id);
        if add {
            entries.push(self.id.clone());
        }
        self.save(&data)
    }
}

fn parse_roster(text: &str) -> Option<RosterEntries> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let obj = v.as_object()?;
    let mut out = Vec::new();
    for (k, entries) in obj {
        let mut list = Vec::new();
        for e in entries.as_array()? {
            let t = e.as_array()?;
            if t.len() != 3 {
                return None;
            }
            list.push(ProcessId {
                host: t[0].as_str()?.to_string(),
                pid: t[1].as_u64()? as u32,
                thread: t[2].as_u64()? as u32,
            });
        }
        out.push((k.clone(), list));
    }
    Some(out)
}

/// JSON as Python's `json.dump` writes it (", " and ": " separators).
fn roster_json(data: &RosterEntries) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let sections: Vec<String> = data
        .iter()
        .map(|(k, entries)| {
            let items: Vec<String> = entries
                .iter()
                .map(|p| format!("[{}, {}, {}]", quote(&p.host), p.pid, p.thread))
                .collect();
            format!("{}: [{}]", quote(k), items.join(", "))
        })
        .collect();
    format!("{{{}}}", sections.join(", "))
}

/// A shared or exclusive lock on a resource path `P` (e.g. `<repo>/lock`). Released on drop.
pub struct Lock {
    path: PathBuf,
    is_exclusive: bool,
    timeout: Option<f64>,
    sleep: Option<f64>,
    roster: LockRoster,
    mutex: ExclusiveLock,
    held: bool,
    /// What a signal must release: 0 nothing, 1 shared, 2 exclusive (shared with the cleanup).
    held_mode: Arc<AtomicU8>,
    /// The release registered to run when a signal ends the process.
    cleanup: Option<crate::output::signals::CleanupId>,
}

impl Lock {
    /// `timeout` in seconds (`None` = wait forever), as borg's `--lock-wait`.
    pub fn new(path: &Path, exclusive: bool, timeout: Option<f64>) -> Lock {
        Lock::with_id(path, exclusive, timeout, ProcessId::current())
    }

    /// A lock acting for another holder id (tests, lock migration).
    pub fn with_id(path: &Path, exclusive: bool, timeout: Option<f64>, id: ProcessId) -> Lock {
        let mut roster_path = path.as_os_str().to_owned();
        roster_path.push(".roster");
        let mut mutex_path = path.as_os_str().to_owned();
        mutex_path.push(".exclusive");
        Lock {
            path: path.to_path_buf(),
            is_exclusive: exclusive,
            timeout,
            sleep: None,
            roster: LockRoster::new(Path::new(&roster_path), id.clone()),
            mutex: ExclusiveLock::new(Path::new(&mutex_path), timeout, id),
            held: false,
            held_mode: Arc::new(AtomicU8::new(0)),
            cleanup: None,
        }
    }

    /// Make sure a terminating signal (Ctrl-C, SIGTERM, SIGHUP) still releases this lock, as
    /// borg's exit handling does: other hosts would otherwise see it held forever.
    fn register_cleanup(&mut self) {
        if self.cleanup.is_some() {
            return;
        }
        let path = self.path.clone();
        let id = self.roster.id.clone();
        let mode = self.held_mode.clone();
        self.cleanup = Some(crate::output::signals::add_cleanup(move || {
            // a release running on another thread finishes before the process exits
            drop(lock_ops());
            let exclusive = match mode.load(Ordering::SeqCst) {
                1 => false,
                2 => true,
                _ => return,
            };
            let mut lock = Lock::with_id(&path, exclusive, Some(1.0), id.clone());
            lock.held = true;
            EXIT_CLEANUP.with(|c| c.set(true));
            let _ = lock.release();
        }));
    }

    /// Acquire in the mode given at construction.
    pub fn acquire(mut self) -> Result<Lock> {
        let exclusive = self.is_exclusive;
        self.acquire_mode(exclusive, None)?;
        Ok(self)
    }

    fn acquire_mode(&mut self, exclusive: bool, remove: Option<&str>) -> Result<()> {
        let _ops = lock_ops();
        if stop_requested() {
            return Err(Error::new(ErrorKind::LockTimeout, [self.mutex.path_text()]));
        }
        // Registered before the lock files change: a signal arriving in between must still
        // remove what this process wrote (removing entries it has not written is harmless).
        let previous = self
            .held_mode
            .swap(if exclusive { 2 } else { 1 }, Ordering::SeqCst);
        self.register_cleanup();
        let acquired = self.acquire_files(exclusive, remove);
        if acquired.is_err() {
            self.held_mode.store(previous, Ordering::SeqCst);
        }
        acquired
    }

    fn acquire_files(&mut self, exclusive: bool, remove: Option<&str>) -> Result<()> {
        if exclusive {
            self.wait_for_readers_finishing(remove)?;
            if let Err(e) = self.roster.modify(EXCLUSIVE, true) {
                let _ = self.mutex.release();
                return Err(e);
            }
        } else {
            self.mutex.acquire()?;
            let r = (|| {
                if let Some(key) = remove {
                    self.roster.modify(key, false)?;
                }
                self.roster.modify(SHARED, true)
            })();
            self.mutex.release()?;
            r?;
        }
        self.is_exclusive = exclusive;
        self.held = true;
        Ok(())
    }

    fn wait_for_readers_finishing(&self, remove: Option<&str>) -> Result<()> {
        let timer = Timer::start(self.timeout, Some(self.sleep.unwrap_or(0.2)));
        loop {
            self.mutex.acquire()?;
            let step = (|| -> Result<bool> {
                if let Some(key) = remove {
                    self.roster.modify(key, false)?;
                }
                if self.roster.get(SHARED).is_empty() {
                    return Ok(true);
                }
                if let Some(key) = remove {
                    self.roster.modify(key, true)?;
                }
                Ok(false)
            })();
            match step {
                Ok(true) => return Ok(()), // we keep the mutex
                Ok(false) => self.mutex.release()?,
                Err(e) => {
                    let _ = self.mutex.release();
                    return Err(e);
                }
            }
            if stop_requested() || timer.timed_out_or_sleep() {
                return Err(Error::new(
                    ErrorKind::LockTimeout,
                    [self.path.display().to_string()],
                ));
            }
        }
    }

    pub fn release(&mut self) -> Result<()> {
        if !self.held {
            return Ok(());
        }
        let _ops = lock_ops();
        self.held = false;
        self.held_mode.store(0, Ordering::SeqCst);
        // the exit cleanup stays registered until the roster is edited: an exit meanwhile
        // waits for this release (see the cleanup) instead of cutting it short
        let cleanup = self.cleanup.take();
        let released = self.release_files();
        if let Some(id) = cleanup {
            crate::output::signals::remove_cleanup(id);
        }
        released
    }

    fn release_files(&mut self) -> Result<()> {
        if self.is_exclusive {
            self.roster.modify(EXCLUSIVE, false)?;
            if self.roster.empty(&[EXCLUSIVE, SHARED]) {
                self.roster.remove();
            }
            self.mutex.release()
        } else {
            self.mutex.acquire()?;
            let r = self.roster.modify(SHARED, false).map(|()| {
                if self.roster.empty(&[EXCLUSIVE, SHARED]) {
                    self.roster.remove();
                }
            });
            self.mutex.release()?;
            r
        }
    }

    /// Shared → exclusive (waits for other readers; deadlocks if two readers both upgrade,
    /// as in borg, unless a timeout is set).
    pub fn upgrade(&mut self) -> Result<()> {
        if !self.is_exclusive {
            self.acquire_mode(true, Some(SHARED))?;
        }
        Ok(())
    }

    /// Exclusive → shared.
    pub fn downgrade(&mut self) -> Result<()> {
        if self.is_exclusive {
            // we hold the mutex already, so taking it again succeeds at once
            self.acquire_mode(false, Some(EXCLUSIVE))?;
        }
        Ok(())
    }

    pub fn is_exclusive(&self) -> bool {
        self.is_exclusive
    }

    pub fn got_exclusive_lock(&self) -> bool {
        self.held && self.is_exclusive && self.mutex.is_locked() && self.mutex.by_me()
    }

    /// Set the timeout used by later upgrades.
    pub fn set_timeout(&mut self, timeout: Option<f64>) {
        self.timeout = timeout;
        self.mutex.timeout = timeout;
    }

    /// Remove roster and mutex whoever holds them (`borg break-lock`).
    pub fn break_lock(&self) -> Result<()> {
        self.roster.remove();
        self.mutex.break_lock()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(thread: u32) -> ProcessId {
        // a non-zero thread is never considered stale, so this acts as "another live process"
        ProcessId {
            host: host_id().to_string(),
            pid: std::process::id(),
            thread,
        }
    }

    #[test]
    fn timeouts_of_any_float_value_are_accepted() {
        for t in [f64::NAN, -1.0, 0.0] {
            assert!(Timer::start(Some(t), None).timed_out_or_sleep(), "{t}");
        }
        for t in [f64::INFINITY, 1e300, 1.8e19, 1e17] {
            let timer = Timer::start(Some(t), None);
            assert!(timer.sleep <= Duration::from_secs(60), "{t}");
        }
        assert!(Timer::start(Some(1e300), None).end.is_none());
        assert_eq!(
            Timer::start(Some(1.0), Some(f64::INFINITY)).sleep,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn lock_file_names_roundtrip() {
        let p = ProcessId {
            host: "my-host.example.com@1234".into(),
            pid: 42,
            thread: 255,
        };
        assert_eq!(p.lock_file_name(), "my-host.example.com@1234.42-ff");
        assert_eq!(
            ProcessId::parse_lock_file_name(&p.lock_file_name()),
            Some(p)
        );
        assert!(ProcessId::parse_lock_file_name("garbage").is_none());
        assert!(host_id().contains('@') || std::env::var("BORG_HOST_ID").is_ok());
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let a = Lock::with_id(&p, true, Some(0.3), other(1))
            .acquire()
            .unwrap();
        assert!(a.got_exclusive_lock());
        let roster = fs::read_to_string(d.path().join("lock.roster")).unwrap();
        assert_eq!(
            roster,
            format!(
                "{{\"exclusive\": [[\"{}\", {}, 1]]}}",
                host_id(),
                std::process::id()
            )
        );
        let e = Lock::with_id(&p, false, Some(0.3), other(2))
            .acquire()
            .err()
            .unwrap();
        assert!(e.is(ErrorKind::LockTimeout));
        assert_eq!(
            e.message,
            format!(
                "Failed to create/acquire the lock {}.exclusive (timeout).",
                p.display()
            )
        );
        drop(a);
        assert!(!d.path().join("lock.exclusive").exists());
        assert!(!d.path().join("lock.roster").exists());
        let s1 = Lock::with_id(&p, false, Some(0.3), other(3))
            .acquire()
            .unwrap();
        let mut s2 = Lock::with_id(&p, false, Some(0.3), other(4))
            .acquire()
            .unwrap();
        assert!(!d.path().join("lock.exclusive").exists());
        assert_eq!(
            LockRoster::new(&d.path().join("lock.roster"), other(0))
                .get(SHARED)
                .len(),
            2
        );
        // an exclusive locker waits for readers
        let e = Lock::with_id(&p, true, Some(0.3), other(5))
            .acquire()
            .err()
            .unwrap();
        assert!(e.is(ErrorKind::LockTimeout));
        assert_eq!(
            e.message,
            format!(
                "Failed to create/acquire the lock {} (timeout).",
                p.display()
            )
        );
        // upgrade fails while another reader is there, works once it left
        assert!(s2.upgrade().is_err());
        drop(s1);
        s2.upgrade().unwrap();
        assert!(s2.got_exclusive_lock());
        s2.downgrade().unwrap();
        assert!(!s2.got_exclusive_lock());
        assert!(!d.path().join("lock.exclusive").exists());
        drop(s2);
        assert!(!d.path().join("lock.roster").exists());
    }

    #[test]
    fn stale_locks_of_dead_local_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        // a pid that cannot be alive
        let dead = ProcessId {
            host: host_id().to_string(),
            pid: 0x7fff_fff0,
            thread: 0,
        };
        fs::create_dir(d.path().join("lock.exclusive")).unwrap();
        fs::write(
            d.path().join("lock.exclusive").join(dead.lock_file_name()),
            b"",
        )
        .unwrap();
        fs::write(
            d.path().join("lock.roster"),
            format!("{{\"exclusive\": [[\"{}\", {}, 0]]}}", dead.host, dead.pid),
        )
        .unwrap();
        let l = Lock::new(&p, true, Some(1.0)).acquire().unwrap();
        assert!(l.got_exclusive_lock());
        let roster = LockRoster::new(&d.path().join("lock.roster"), ProcessId::current());
        assert_eq!(roster.get(EXCLUSIVE), vec![ProcessId::current()]);
        drop(l);
        // a lock of another host is never stale
        let foreign = ProcessId {
            host: "elsewhere@1".into(),
            pid: 0x7fff_fff0,
            thread: 0,
        };
        let f = Lock::with_id(&p, true, None, foreign).acquire().unwrap();
        assert!(Lock::new(&p, true, Some(0.2)).acquire().is_err());
        drop(f);
    }

    #[test]
    fn lock_failed_when_dir_missing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing").join("lock");
        let e = Lock::new(&p, false, Some(0.1)).acquire().err().unwrap();
        assert!(e.is(ErrorKind::LockFailed));
        assert!(e.message.contains("No such file or directory"));
    }
}
