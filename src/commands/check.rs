//! `borg check`: the repository phase (segments, CRCs, index; `--repair`, `--max-duration`)
//! and the archives phase (manifest, archives, items, chunks, orphans, `--verify-data`;
//! its repair is still to come).

use std::sync::Arc;

use rborg::archive::check::{check_archives, check_repository_verifying, ArchiveCheckOptions};
use rborg::archive::{ArchiveInfo, Manifest, Operation};
use rborg::crypto::open_key;
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
    if args.repair {
        return Err(Error::generic(
            "check --repair of the archives is not implemented yet (use --repository-only)",
        ));
    }
    let stored = match Manifest::fetch(repo.as_ref()) {
        Ok(stored) => stored,
        Err(e) if e.is(ErrorKind::NoManifestError) => {
            output::info("Starting archive consistency check...");
            output::error("Repository manifest not found!");
            output::error("Archive consistency check complete, problems found.");
            errors::set_exit_code(EXIT_WARNING);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let key = match early_key {
        Some(key) => key,
        None => Arc::new(open_key(repo.as_ref(), &stored)?),
    };
    let selected = selected_archives(args, &location, repo.as_ref(), &key)?;
    let opts = ArchiveCheckOptions {
        verify_data: args.verify_data,
        verified_suspects,
        selected,
    };
    if !check_archives(repo, key, &opts)? {
        errors::set_exit_code(EXIT_WARNING);
    }
    Ok(())
}

/// The key, the repository check's result and the objects that failed authentication.
type EarlyVerification = (
    Arc<rborg::crypto::Key>,
    bool,
    Vec<rborg::repository::ObjectId>,
);

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
    let key = Arc::new(open_key(repo, &stored)?);
    Ok(check_repository_verifying(repo, &key, args.repair)?
        .map(|(ok, suspects)| (key, ok, suspects)))
}

/// The archives an ARCHIVE argument or filters choose (None: all, orphans checked too).
fn selected_archives(
    args: &CheckArgs,
    location: &rborg::location::Location,
    repo: &dyn rborg::repository::Repository,
    key: &rborg::crypto::Key,
) -> Result<Option<Vec<ArchiveInfo>>> {
    if location.archive.is_none() && !args.filter.any() {
        return Ok(None);
    }
    // An unreadable manifest is reported by the check itself.
    let Ok(manifest) = Manifest::load(repo, key, &[Operation::Check]) else {
        return Ok(None);
    };
    if let Some(name) = &location.archive {
        return Ok(Some(
            manifest
                .lookup(name.as_bytes())
                .cloned()
                .into_iter()
                .collect(),
        ));
    }
    let filter = archive_filter(&args.filter, true)?;
    Ok(Some(
        filter
            .apply(&manifest.archives)?
            .into_iter()
            .cloned()
            .collect(),
    ))
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
