//! `borg with-lock`: run a command while holding the repository's exclusive lock.

use std::os::unix::process::ExitStatusExt;

use rborg::errors::{self, Error, Result};
use rborg::repository::{DEFAULT_COMPACT_THRESHOLD, MANIFEST_ID};

use super::common::{open_repository, parse_location, ArchiveArg};
use super::Context;
use crate::cli::WithLockArgs;

pub fn run(ctx: &Context, args: &WithLockArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    // As borg 1.2: rewrite the manifest object as it is (no key needed), which starts a
    // transaction, and commit it afterwards, so the segment it went to is never reused.
    let manifest = repo.get(&MANIFEST_ID)?;
    repo.put(&MANIFEST_ID, &manifest)?;
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
