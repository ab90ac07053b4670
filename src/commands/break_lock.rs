//! `borg break-lock`: remove the repository's and its cache's locks, whoever holds them.

use rborg::cache::Cache;
use rborg::errors::{Error, Result};
use rborg::location::Proto;
use rborg::repository::LocalRepository;

use super::common::{parse_location, ArchiveArg};
use super::Context;
use crate::cli::BreakLockArgs;

pub fn run(ctx: &Context, args: &BreakLockArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    if location.proto != Proto::Local {
        return Err(Error::generic(
            "remote repositories (ssh://) are not supported yet",
        ));
    }
    // Opened without taking the lock (borg's `with_repository(lock=False)`).
    let repo = LocalRepository::open(
        &location.absolute_path(),
        false,
        ctx.common.lock_wait as f64,
        false,
        false,
    )?;
    rborg::repository::Repository::break_lock(&repo)?;
    Cache::break_lock(&hex::encode(rborg::repository::Repository::id(&repo)))
}
