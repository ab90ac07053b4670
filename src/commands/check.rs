//! `borg check`: the repository phase (segments, CRCs, index; `--repair`, `--max-duration`)
//! and the archives phase (manifest, archives, items, chunks, orphans, `--verify-data`,
//! `--repair`).

use std::sync::Arc;

use rborg::archive::check::{check_archives, check_repository_verifying, ArchiveCheckOptions};
use rborg::archive::Manifest;
use rborg::crypto::{open_key, Key, KeyType};
use rborg::errors::{self, Error, ErrorKind, Result, EXIT_WARNING};
use rborg::output::{self, Question};

use super::common::{archive_filter, open_repository, parse_location, ArchiveArg};
use super::Context;
use crate::cli::CheckArgs;

const REPAIR_WARNING: &str = "This is a potentially dangerous function.\n\
check --repair might lead to data loss (for kinds of corruption it is not\n\
capable of dealing with). BE VERY CAREFUL!\n\
\n\
Type 'YES' if you understand this and want to continue: ";

pub fn run(ctx: &Context, args: &CheckArgs) -> Result<()> {
    // as borg: the prompt comes before any other argument check
    if args.repair && !confirmed_repair() {
        return Err(Error::plain(ErrorKind::CancelledByUser));
    }
    validate(args)?;
    let location = parse_location(args.location.as_deref(), ArchiveArg::Optional)?;
    let repo = open_repository(ctx, &location, true)?;
    let mut early_key = None;
    let mut verified_suspects = None;
    if !args.archives_only {
        let ok = match verify_while_checking(args, repo.as_ref())? {
            Some((key, ok, suspects)) => {
                early_key = Some(key);
                verified_suspects = Some(suspects);
                ok
            }
            None => repo.check(args.repair, args.max_duration as f64)?,
        };
        if !ok {
            // problems found: a warning, in both exit-code modes (as borg)
            errors::set_exit_code(EXIT_WARNING);
            return Ok(());
        }
    }
    if args.repo_only {
        return Ok(());
    }
    let filter = archive_filter(&args.filter, true)?;
    let opts = ArchiveCheckOptions {
        verify_data: args.verify_data,
        verified_suspects,
        repair: args.repair,
        archive: location.archive.as_ref().map(|a| a.as_bytes().to_vec()),
        filter,
    };
    // the key the one-pass verification opened already (no second passphrase prompt)
    let open = |stored: &[u8]| match &early_key {
        Some(key) => Ok(Key::clone(key)),
        None => open_key(repo.as_ref(), stored),
    };
    if !check_archives(repo.clone(), &open, &opts)? {
        errors::set_exit_code(EXIT_WARNING);
    }
    Ok(())
}

/// The key, the repository check's result and the objects that failed authentication.
type EarlyVerification = (Arc<Key>, bool, Vec<rborg::repository::ObjectId>);

/// With `--verify-data`, the repository check authenticates every object as it reads it (one
/// pass over the segments instead of borg's two). That needs the key first, unlike borg, which
/// asks for the passphrase after the repository check. None: not possible here (no readable
/// manifest, a repository that cannot hand over its objects); the phases then run as borg's.
fn verify_while_checking(
    args: &CheckArgs,
    repo: &dyn rborg::repository::Repository,
) -> Result<Option<EarlyVerification>> {
    if !args.verify_data {
        return Ok(None);
    }
    let Ok(stored) = Manifest::fetch(repo) else {
        return Ok(None);
    };
    if KeyType::of_object(&stored).is_err() {
        // a damaged manifest: the archives phase finds the key in another object
        return Ok(None);
    }
    let key = Arc::new(open_key(repo, &stored)?);
    Ok(check_repository_verifying(repo, &key, args.repair)?
        .map(|(ok, suspects)| (key, ok, suspects)))
}

fn confirmed_repair() -> bool {
    output::yes(&Question {
        msg: Some(REPAIR_WARNING),
        false_msg: Some("Aborting."),
        invalid_msg: Some("Invalid answer, aborting."),
        truish: output::prompt::ONLY_YES,
        retry: false,
        env_var_override: Some("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING"),
        ..Default::default()
    })
}

fn validate(args: &CheckArgs) -> Result<()> {
    if args.repo_only && (args.verify_data || args.filter.any()) {
        return Err(Error::command(
            "--repository-only contradicts --first, --last, --glob-archives, --prefix and \
             --verify-data arguments.",
        ));
    }
    if args.repair && args.max_duration != 0 {
        return Err(Error::command(
            "--repair does not allow --max-duration argument.",
        ));
    }
    if args.max_duration != 0 && !args.repo_only {
        return Err(Error::command(
            "--repository-only is required for --max-duration support.",
        ));
    }
    Ok(())
}
