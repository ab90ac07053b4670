//! `borg break-lock`: remove the repository's and its cache's locks, whoever holds them.

use rborg::cache::Cache;
use rborg::errors::Result;

use super::common::{open_repository_locking, parse_location, ArchiveArg};
use super::Context;
use crate::cli::BreakLockArgs;

pub fn run(ctx: &Context, args: &BreakLockArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    // Opened without taking the lock (borg's `with_repository(lock=False)`).
    let repo = open_repository_locking(ctx, &location, false, false)?;
    repo.break_lock()?;
    Cache::break_lock(&hex::encode(repo.id()))
}
