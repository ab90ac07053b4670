//! `borg config`: get, set, delete or list values of the repository config (or, with
//! `--cache`, of the client cache config). Local repositories only; exclusive lock.

use std::sync::Arc;

use rborg::archive::Operation;
use rborg::errors::{self, Result, EXIT_WARNING};
use rborg::location::{Location, Proto};
use rborg::output;
use rborg::repository::config_edit::{
    edit_cache_config, edit_repository_config, ConfigFile, ConfigOutcome, ConfigRequest,
};
use rborg::repository::local::LocalRepository;

use super::common::{load_manifest, open_cache};
use super::Context;
use crate::cli::ConfigArgs;

pub fn run(ctx: &Context, args: &ConfigArgs) -> Result<()> {
    let text = args.location.as_deref().unwrap_or("");
    let location = Location::validate(text, Some(false), Some(Proto::Local))?;
    let repo = Arc::new(LocalRepository::open(
        &location.absolute_path(),
        true,
        ctx.common.lock_wait as f64,
        !ctx.common.bypass_lock,
        false,
    )?);
    let file = if args.cache {
        ConfigFile::Cache
    } else {
        ConfigFile::Repository
    };
    let request = ConfigRequest::from_args(
        file,
        args.list,
        args.delete,
        args.name.as_deref(),
        args.value.as_deref(),
    )?;
    let outcome = match file {
        ConfigFile::Repository => edit_repository_config(&repo, &request)?,
        ConfigFile::Cache => {
            let opened = load_manifest(&location, repo.clone(), &[Operation::Write], true)?;
            let cache = open_cache(ctx, &opened)?;
            edit_cache_config(cache.path(), &location.canonical_path(), &request)?
        }
    };
    match outcome {
        ConfigOutcome::Print(text) => output::stdout_text(&text),
        // borg 1.2 prints configparser's message (not a log record) and returns a warning
        ConfigOutcome::Missing(why) => {
            output::write_stderr(&format!("{why}\n"));
            errors::set_exit_code(EXIT_WARNING);
        }
        ConfigOutcome::Changed => {}
    }
    Ok(())
}
