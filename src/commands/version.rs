//! `borg version [REPOSITORY]`: `<client version> / <server version>`.

use rborg::errors::{Error, Result};
use rborg::output;

use super::Context;
use crate::cli::VersionArgs;

/// Whether a location text names an ssh repository (`ssh://…` or scp-style `host:path`).
fn is_remote(location: &str) -> bool {
    if location.starts_with("ssh://") {
        return true;
    }
    if location.starts_with('/') || location.starts_with("file://") {
        return false;
    }
    match location.find(':') {
        Some(pos) => {
            let host = &location[..pos];
            !host.is_empty() && !host.contains('/') && !location[pos + 1..].starts_with(':')
        }
        None => false,
    }
}

pub fn run(_ctx: &Context, args: &VersionArgs) -> Result<()> {
    let location = args
        .location
        .clone()
        .or_else(|| std::env::var("BORG_REPO").ok());
    if location.as_deref().is_some_and(is_remote) {
        return Err(Error::generic(
            "querying the version of a remote borg server is not implemented yet",
        ));
    }
    let version = rborg::BORG_COMPAT_VERSION;
    output::stdout_line(&format!("{version} / {version}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_remote;

    #[test]
    fn remote_detection() {
        assert!(is_remote("ssh://u@h/repo"));
        assert!(is_remote("host:repo"));
        assert!(is_remote("user@host:/repo"));
        assert!(!is_remote("/abs/repo"));
        assert!(!is_remote("rel/repo"));
        assert!(!is_remote("repo::arch"));
        assert!(!is_remote("file:///repo"));
    }
}
