//! Client-side directories as borg finds them (repository-format.md §8, cli.md §14).

use std::env;
use std::path::PathBuf;

fn env_nonempty(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

/// `$BORG_BASE_DIR`, else `$HOME`, else the home directory of the running user, else `~`.
pub fn base_dir() -> PathBuf {
    if let Some(b) = env_nonempty("BORG_BASE_DIR") {
        return PathBuf::from(b);
    }
    if let Some(h) = env_nonempty("HOME") {
        return PathBuf::from(h);
    }
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::getuid()) {
        return u.dir;
    }
    PathBuf::from("~")
}

/// `$BORG_CONFIG_DIR`, or `$XDG_CONFIG_HOME/borg` (only without BORG_BASE_DIR), or
/// `<base>/.config/borg`.
pub fn config_dir() -> PathBuf {
    if let Some(d) = env_nonempty("BORG_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    if env_nonempty("BORG_BASE_DIR").is_none() {
        if let Some(x) = env_nonempty("XDG_CONFIG_HOME") {
            return PathBuf::from(x).join("borg");
        }
    }
    base_dir().join(".config").join("borg")
}

/// `$BORG_CACHE_DIR`, or `$XDG_CACHE_HOME/borg` (only without BORG_BASE_DIR), or
/// `<base>/.cache/borg`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = env_nonempty("BORG_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if env_nonempty("BORG_BASE_DIR").is_none() {
        if let Some(x) = env_nonempty("XDG_CACHE_HOME") {
            return PathBuf::from(x).join("borg");
        }
    }
    base_dir().join(".cache").join("borg")
}

/// `$BORG_KEYS_DIR` or `<config dir>/keys`.
pub fn keys_dir() -> PathBuf {
    match env_nonempty("BORG_KEYS_DIR") {
        Some(d) => PathBuf::from(d),
        None => config_dir().join("keys"),
    }
}

/// `$BORG_SECURITY_DIR` or `<config dir>/security`.
pub fn security_root() -> PathBuf {
    match env_nonempty("BORG_SECURITY_DIR") {
        Some(d) => PathBuf::from(d),
        None => config_dir().join("security"),
    }
}

/// `<security root>/<repo id hex>`.
pub fn security_dir(repo_id_hex: &str) -> PathBuf {
    security_root().join(repo_id_hex)
}

/// `<cache root>/<repo id hex>`.
pub fn repo_cache_dir(repo_id_hex: &str) -> PathBuf {
    cache_dir().join(repo_id_hex)
}
