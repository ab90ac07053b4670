//! `borg prune`: keep the archives the retention rules select (cli.md §8), delete the others.

use chrono::Utc;

use rborg::archive::prune::{decide, is_checkpoint, strip_checkpoint_suffix, Keep, PruneRules};
use rborg::archive::{ArchiveInfo, Manifest, Operation};
use rborg::errors::{Error, Result};
use rborg::output::human::format_archive_line;
use rborg::output::{self, ProgressPercent};

use super::common::{load_manifest, open_repository, parse_location, ArchiveArg};
use super::delete::{print_stats, Deletion};
use super::Context;
use crate::cli::PruneArgs;

/// Width of the `--list` message column (borg 1.4.5; 1.2 used 40).
const MESSAGE_WIDTH: usize = 44;

pub fn run(ctx: &Context, args: &PruneArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    // as borg: the repository is opened (exclusively) before the rules are judged
    let repo = open_repository(ctx, &location, true)?;
    let rules = rules_of(args);
    if !rules.any() {
        return Err(Error::command(
            "At least one of the \"keep-within\", \"keep-last\", \"keep-secondly\", \
             \"keep-minutely\", \"keep-hourly\", \"keep-daily\", \"keep-weekly\", \
             \"keep-monthly\", \"keep-13weekly\", \"keep-3monthly\", or \"keep-yearly\" \
             settings must be specified.",
        ));
    }
    let mut opened = load_manifest(&location, repo, &[Operation::Delete], false)?;
    let candidates = candidates(args, &opened.manifest)?;
    // Bucketing is by local time (TZ honoured), as borg's.
    let decided: Vec<(ArchiveInfo, Option<Keep>)> = decide(&candidates, &rules, Utc::now(), |t| {
        t.with_timezone(&chrono::Local).naive_local()
    })
    .archives
    .into_iter()
    .map(|(a, keep)| (a.clone(), keep))
    .collect();
    log_counts(&opened.manifest, &decided);
    let doomed = decided.iter().filter(|(_, keep)| keep.is_none()).count();
    if args.dry_run {
        if args.output_list {
            for (a, keep) in &decided {
                list_line(&verdict(keep.as_ref(), None), a);
            }
        }
        return Ok(());
    }
    let mut deletion = Deletion::new(
        ctx,
        &mut opened,
        u8::from(args.forced),
        args.checkpoint_interval,
        false,
    )?;
    let mut progress = ctx
        .common
        .progress
        .then(|| ProgressPercent::new(doomed as u64, 5.0, "Pruning archives %3.0f%%", "prune"));
    let mut deleted = 0;
    for (a, keep) in &decided {
        let position = keep.is_none().then(|| {
            deleted += 1;
            (deleted, doomed)
        });
        if args.output_list {
            list_line(&verdict(keep.as_ref(), position), a);
        }
        if keep.is_none() {
            if let Some(p) = progress.as_mut() {
                p.show(None, None);
            }
            deletion.delete(&a.name)?;
        }
    }
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    let (stats, cache) = deletion.finish()?;
    if args.stats || args.quick_stats {
        print_stats(ctx, &stats, (!args.quick_stats).then_some(&cache))?;
    }
    Ok(())
}

fn rules_of(args: &PruneArgs) -> PruneRules {
    PruneRules {
        within: args.within.map(|hours| hours * 3600),
        secondly: args.secondly,
        minutely: args.minutely,
        hourly: args.hourly,
        daily: args.daily,
        weekly: args.weekly,
        monthly: args.monthly,
        quarterly_13weekly: args.quarterly_13weekly,
        quarterly_3monthly: args.quarterly_3monthly,
        yearly: args.yearly,
    }
}

/// The archives the glob selects, checkpoints of selected names included (borg appends an
/// optional checkpoint suffix to the glob).
fn candidates<'m>(args: &PruneArgs, manifest: &'m Manifest) -> Result<Vec<&'m ArchiveInfo>> {
    let matcher = args
        .glob
        .glob()
        .map(|g| rborg::location::replace_placeholders(&g, None))
        .transpose()?
        .as_deref()
        .map(rborg::patterns::archive_glob_regex)
        .transpose()?;
    Ok(manifest
        .archives
        .iter()
        .filter(|a| {
            matcher.as_ref().is_none_or(|re| {
                re.is_match(&a.name)
                    || strip_checkpoint_suffix(&a.name).is_some_and(|base| re.is_match(base))
            })
        })
        .collect())
}

/// borg 1.4's `-v` summary before the list.
fn log_counts(manifest: &Manifest, decided: &[(ArchiveInfo, Option<Keep>)]) {
    let repo_checkpoints = manifest
        .archives
        .iter()
        .filter(|a| is_checkpoint(&a.name))
        .count();
    output::info(&format!(
        "Repository contains {} normal archives and {repo_checkpoints} checkpoint archives.",
        manifest.archives.len() - repo_checkpoints
    ));
    let count = |checkpoint: bool, kept: Option<bool>| {
        decided
            .iter()
            .filter(|(a, k)| {
                is_checkpoint(&a.name) == checkpoint && kept.is_none_or(|kept| k.is_some() == kept)
            })
            .count()
    };
    output::info(&format!(
        "Applying rules to the matching {} archives and {} checkpoints...",
        count(false, None),
        count(true, None)
    ));
    output::info(&format!(
        "Keeping {} archives and {} checkpoints, pruning {} archives and {} checkpoints.",
        count(false, Some(true)),
        count(true, Some(true)),
        count(false, Some(false)),
        count(true, Some(false))
    ));
}

/// The `--list` message for an archive; `position` (i, total) when it is being deleted.
fn verdict(keep: Option<&Keep>, position: Option<(usize, usize)>) -> String {
    match (keep, position) {
        (Some(Keep::Rule(rule, n)), _) => format!("Keeping archive (rule: {rule} #{n}):"),
        (Some(Keep::Checkpoint), _) => "Keeping checkpoint archive:".to_string(),
        (None, Some((i, total))) => format!("Pruning archive ({i}/{total}):"),
        (None, None) => "Would prune:".to_string(),
    }
}

fn list_line(message: &str, a: &ArchiveInfo) {
    let archive = format_archive_line(&a.name_lossy(), &a.ts, &hex::encode(a.id));
    output::list_line(&format!("{message:<MESSAGE_WIDTH$} {archive}"));
}
