//! `borg compact`: rewrite sparse segments to free the space of deleted objects.

use rborg::errors::Result;
use rborg::repository::MANIFEST_ID;

use super::common::{open_repository, parse_location, ArchiveArg};
use super::Context;
use crate::cli::CompactArgs;

pub fn run(ctx: &Context, args: &CompactArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    if args.dry_run {
        return Ok(());
    }
    // As borg 1.2: rewrite the manifest object unchanged (no key needed) to start the
    // transaction the compacting commit ends.
    let manifest = repo.get(&MANIFEST_ID)?;
    repo.put(&MANIFEST_ID, &manifest)?;
    repo.commit(true, args.threshold as f64 / 100.0, args.cleanup_commits)
}
