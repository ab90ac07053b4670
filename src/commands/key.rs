//! `borg key export|export-related-secrets|import|change-passphrase|migrate-to-repokey`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::{KeyArgs, KeyCommand};

pub fn run(_ctx: &Context, args: &KeyArgs) -> Result<()> {
    let name = match &args.command {
        Some(KeyCommand::Export(_)) => "key export",
        Some(KeyCommand::ExportRelatedSecrets(_)) => "key export-related-secrets",
        Some(KeyCommand::Import(_)) => "key import",
        Some(KeyCommand::ChangePassphrase(_)) => "key change-passphrase",
        Some(KeyCommand::MigrateToRepokey(_)) => "key migrate-to-repokey",
        None => "key",
    };
    Err(Error::generic(format!("{name} is not implemented yet")))
}
