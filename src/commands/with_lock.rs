//! `borg with-lock`: run a command while holding the repository's exclusive lock.

use std::os::unix::process::ExitStatusExt;

use rborg::errors::{self, Error, Result};
use rborg::repository::DEFAULT_COMPACT_THRESHOLD;

use super::common::{open_repository, parse_location, start_noop_transaction, ArchiveArg};
use super::Context;
use crate::cli::WithLockArgs;

pub fn run(ctx: &Context, args: &WithLockArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    // Committed afterwards, so the segment the rewrite went to is never reused (borg 1.2).
    start_noop_transaction(repo.as_ref())?;
    let program = args.program();
    let status = std::process::Command::new(program)
        .args(args.args())
        .status();
    let committed = repo.commit(false, DEFAULT_COMPACT_THRESHOLD, false);
    let status = status.map_err(|e| {
        let name = program.as_encoded_bytes();
        Error::command(format!(
            "Error while trying to run '{}': {}",
            program.to_string_lossy(),
            rborg::fs::python_os_error(&e, Some(name))
        ))
    })?;
    committed?;
    // borg exits with the command's status (128+N when a signal ended it).
    let rc = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    errors::set_exit_code(rc);
    Ok(())
}
