//! `borg compact`: rewrite sparse segments to free the space of deleted objects.

use rborg::errors::Result;

use super::common::{open_repository, parse_location, start_noop_transaction, ArchiveArg};
use super::Context;
use crate::cli::CompactArgs;

pub fn run(ctx: &Context, args: &CompactArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    if args.dry_run {
        return Ok(());
    }
    start_noop_transaction(repo.as_ref())?;
    repo.commit(true, args.threshold as f64 / 100.0, args.cleanup_commits)
}
