//! `borg recreate`: rewrite archives (filter items, recompress, rechunk, change comment or
//! timestamp), cli.md §4.15. The work is done by `rborg::archive::recreate`.

use std::os::unix::ffi::OsStrExt;

use rborg::archive::recreate::{
    is_temporary_archive, Outcome, Recompress, RecreateOptions, Recreated, Recreater,
};
use rborg::archive::Operation;
use rborg::chunker::ChunkerParams;
use rborg::compress::CompressionSpec;
use rborg::errors::{Error, Result};
use rborg::location::replace_placeholders;
use rborg::output::human::{format_archive_time, format_timedelta_us};
use rborg::output::stats::{cache_block, size_row, DASHES};
use rborg::output::{self, Level};
use rborg::repository::MAX_DATA_SIZE;

use super::common::{build_matcher, open_cache, open_with_manifest, parse_location, ArchiveArg};
use super::Context;
use crate::cli::RecreateArgs;

/// borg logs the `--stats` block through `log_multi` of this module, at INFO.
const STATS_LOGGER: &str = "borg.helpers.misc";

pub fn run(ctx: &Context, args: &RecreateArgs) -> Result<()> {
    let mut location = parse_location(args.location.as_deref(), ArchiveArg::Optional)?;
    if let Some(ts) = args.timestamp {
        location = location.with_timestamp(ts)?;
    }
    let matcher = build_matcher(&args.patterns, &args.paths)?;
    let compression = CompressionSpec::parse(&args.compression)?;
    let chunker_params = args
        .chunker_params
        .as_deref()
        .map(ChunkerParams::parse)
        .transpose()?;
    let comment = args
        .comment
        .as_deref()
        .map(|c| replace_placeholders(c, args.timestamp))
        .transpose()?;
    let opened = open_with_manifest(ctx, &location, true, &[Operation::Write])?;
    let cache = open_cache(ctx, &opened)?;
    if let Some(cp) = &chunker_params {
        output::log(
            Level::Debug,
            "borg.archive",
            &format!("Rechunking archives to {}", cp.py_repr()),
            None,
        );
    }
    let opts = options(ctx, args, chunker_params)?;
    let mut recreater = Recreater::new(
        opened.repo.clone(),
        opened.key.clone(),
        opened.manifest.clone(),
        cache,
        matcher,
        compression,
        opts,
    );
    let repository = opened.location.canonical_path();
    if let Some(name) = &location.archive {
        if is_temporary_archive(name) {
            return Err(Error::command(format!(
                "Refusing to work on temporary archive of prior recreate: {name}"
            )));
        }
        let outcome = recreater.recreate(name, comment.as_deref(), args.target.as_deref())?;
        match outcome {
            Outcome::NothingToDo => {
                return Err(Error::command(
                    "Nothing to do. Archive was not processed.\n\
                     Specify at least one pattern, PATH, --comment, re-compression or re-chunking option.",
                ))
            }
            Outcome::DryRun => {}
            Outcome::Recreated(r) => report(ctx, args, &repository, &mut recreater, &r)?,
        }
    } else {
        if args.target.is_some() {
            return Err(Error::command("--target: Need to specify single archive"));
        }
        // the archives as they are now, oldest first
        let mut archives = recreater.manifest().archives.clone();
        archives.sort_by_key(|a| a.ts);
        for info in archives {
            let name = String::from_utf8_lossy(&info.name).into_owned();
            if is_temporary_archive(&name) {
                continue;
            }
            output::stdout_line(&format!("Processing {name}"));
            match recreater.recreate(&name, comment.as_deref(), None)? {
                Outcome::NothingToDo => output::info(&format!(
                    "Skipped archive {name}: Nothing to do. Archive was not processed."
                )),
                Outcome::DryRun => {}
                Outcome::Recreated(r) => report(ctx, args, &repository, &mut recreater, &r)?,
            }
        }
    }
    recreater.commit()
}

fn options(
    ctx: &Context,
    args: &RecreateArgs,
    chunker_params: Option<ChunkerParams>,
) -> Result<RecreateOptions> {
    let recompress = Recompress::from_mode(&args.recompress)
        .ok_or_else(|| Error::generic(format!("invalid recompress mode: {}", args.recompress)))?;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::exception(format!("cannot determine the current directory: {e}")))?;
    Ok(RecreateOptions {
        exclude_caches: args.tags.exclude_caches,
        exclude_if_present: args
            .tags
            .exclude_if_present
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        keep_exclude_tags: args.tags.keep_exclude_tags,
        chunker_params,
        recompress,
        dry_run: args.dry_run,
        list: args.output_list,
        list_filter: args.output_filter.clone(),
        progress: ctx.common.progress,
        // borg: no checkpoints in dry-run mode, and 0 turns them off
        checkpoint_interval: (args.checkpoint_interval > 0 && !args.dry_run)
            .then(|| std::time::Duration::from_secs(args.checkpoint_interval as u64)),
        timestamp: args.timestamp,
        consider_part_files: ctx.common.consider_part_files,
        cmdline: ctx.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        hostname: super::create::hostname(),
        username: super::create::username(),
        cwd: Some(cwd.as_os_str().as_bytes().to_vec()),
    })
}

/// `--stats`: borg logs the new archive's summary line by line (INFO, so only shown with
/// `--info`/`-v`).
fn report(
    ctx: &Context,
    args: &RecreateArgs,
    repository: &str,
    recreater: &mut Recreater,
    r: &Recreated,
) -> Result<()> {
    if !args.stats {
        return Ok(());
    }
    let iec = ctx.common.iec;
    let duration_us = (r.end - r.start).num_microseconds().unwrap_or(0);
    let utilization = r.meta_csize as f64 / MAX_DATA_SIZE as f64;
    let summary = recreater.cache_following_manifest().summary()?;
    let mut lines = vec![
        DASHES.to_string(),
        format!("Repository: {repository}"),
        format!("Archive name: {}", r.name),
        format!("Archive fingerprint: {}", hex::encode(r.id)),
        format!("Time (start): {}", format_archive_time(&r.start)),
        format!("Time (end):   {}", format_archive_time(&r.end)),
        format!("Duration: {}", format_timedelta_us(duration_us)),
        format!("Number of files: {}", r.stats.nfiles),
        format!(
            "Utilization of max. archive size: {:.0}%",
            utilization * 100.0
        ),
        DASHES.to_string(),
        size_row(
            "This archive:",
            r.stats.osize as i64,
            r.stats.csize as i64,
            r.stats.usize as i64,
            iec,
        ),
    ];
    lines.extend(cache_block(&summary, iec).lines().map(str::to_string));
    lines.push(DASHES.to_string());
    for line in lines {
        output::log(Level::Info, STATS_LOGGER, &line, None);
    }
    Ok(())
}
