//! `borg delete`: archives (by name or by filters), or the whole repository.

use std::sync::Arc;
use std::time::Instant;

use rborg::archive::objects::ObjectWriter;
use rborg::archive::{ArchiveInfo, Manifest, Operation, Statistics};
use rborg::cache::{delete_archive, Cache, DeleteOptions, SecurityManager};
use rborg::compress::CompressionSpec;
use rborg::crypto::open_key;
use rborg::errors::{Error, ErrorKind, Result, WarningKind};
use rborg::location::Location;
use rborg::output::human::format_archive_line;
use rborg::output::stats::{cache_block, size_row, DASHES, STATS_HEADER};
use rborg::output::{self, Question};
use rborg::repository::{Repository, DEFAULT_COMPACT_THRESHOLD};

use super::common::{
    archive_filter, load_manifest, open_cache, open_repository, parse_location, ArchiveArg, Opened,
};
use super::Context;
use crate::cli::DeleteArgs;

pub fn run(ctx: &Context, args: &DeleteArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Optional)?;
    // as borg: the repository is opened (exclusively) before the arguments are judged
    let repo = open_repository(ctx, &location, true)?;
    let filtered = args.filter.any();
    let explicit = location.archive.is_some() || !args.archives.is_empty();
    if filtered && explicit {
        return Err(Error::command(
            "Mixing archive filters and explicitly named archives is not supported.",
        ));
    }
    if filtered || explicit {
        delete_archives(ctx, args, &location, repo)
    } else {
        delete_repository(args, &location, repo)
    }
}

/// `format_archive` of borg: the `%-36s %s [%s]` line.
fn archive_line(info: &ArchiveInfo) -> String {
    format_archive_line(&info.name_lossy(), &info.ts, &hex::encode(info.id))
}

/// The archive names to delete, in command-line or filter order.
fn selected_names(args: &DeleteArgs, opened: &Opened) -> Result<Vec<Vec<u8>>> {
    if opened.location.archive.is_some() || !args.archives.is_empty() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        names.extend(
            opened
                .location
                .archive
                .iter()
                .map(|a| a.as_bytes().to_vec()),
        );
        names.extend(args.archives.iter().map(|a| a.as_bytes().to_vec()));
        return Ok(names);
    }
    // filters select checkpoint archives too
    Ok(archive_filter(&args.filter, true)?
        .apply(&opened.manifest.archives)?
        .into_iter()
        .map(|a| a.name.clone())
        .collect())
}

fn not_found(name: &[u8], i: usize, n: usize) {
    output::warn_kind(
        WarningKind::Generic,
        &format!(
            "Archive {} not found ({i}/{n}).",
            rborg::archive::display_bytes(name)
        ),
    );
}

fn delete_archives(
    ctx: &Context,
    args: &DeleteArgs,
    location: &Location,
    repo: Arc<dyn Repository>,
) -> Result<()> {
    // as borg's delete: no security checks here; the cache runs them (not used by --force --force)
    let mut opened = load_manifest(location, repo, &[Operation::Delete], false)?;
    let names = selected_names(args, &opened)?;
    if names.is_empty() {
        return Ok(());
    }
    if args.forced >= 2 {
        return remove_from_manifest(args, &mut opened, &names);
    }
    let mut deletion = Deletion::new(
        ctx,
        &mut opened,
        args.forced,
        args.checkpoint_interval,
        ctx.common.progress,
    )?;
    let verb = if args.dry_run {
        "Would delete archive:"
    } else {
        "Deleting archive:"
    };
    let n = names.len();
    for (i, name) in names.iter().enumerate() {
        let Some(info) = deletion.manifest().lookup(name).cloned() else {
            not_found(name, i + 1, n);
            continue;
        };
        if args.output_list {
            output::list_line(&format!("{verb} {} ({}/{n})", archive_line(&info), i + 1));
        }
        if !args.dry_run {
            deletion.delete(name)?;
        }
    }
    let (stats, cache) = deletion.finish()?;
    if args.stats || args.quick_stats {
        print_stats(ctx, &stats, (!args.quick_stats).then_some(&cache))?;
    }
    Ok(())
}

/// Deletes archives one at a time, committing manifest, repository and cache every
/// `--checkpoint-interval` seconds and after the last one (borg's delete and prune).
pub(crate) struct Deletion<'o> {
    opened: &'o mut Opened,
    cache: Cache,
    writer: ObjectWriter,
    opts: DeleteOptions,
    interval: i64,
    last_commit: Instant,
    uncommitted: bool,
    stats: Statistics,
}

impl<'o> Deletion<'o> {
    /// `progress`: show each archive's `Decrementing references` (delete does, prune not).
    pub(crate) fn new(
        ctx: &Context,
        opened: &'o mut Opened,
        forced: u8,
        interval: i64,
        progress: bool,
    ) -> Result<Deletion<'o>> {
        let cache = open_cache(ctx, opened)?;
        let writer = ObjectWriter::new(
            opened.repo.clone(),
            opened.key.clone(),
            CompressionSpec::default(),
        );
        Ok(Deletion {
            opened,
            cache,
            writer,
            opts: DeleteOptions {
                forced,
                progress,
                consider_part_files: ctx.common.consider_part_files,
            },
            interval,
            last_commit: Instant::now(),
            uncommitted: false,
            stats: Statistics::default(),
        })
    }

    pub(crate) fn manifest(&self) -> &Manifest {
        &self.opened.manifest
    }

    pub(crate) fn delete(&mut self, name: &[u8]) -> Result<()> {
        let manifest = &mut self.opened.manifest;
        delete_archive(&mut self.cache, manifest, name, &mut self.stats, self.opts)?;
        self.uncommitted = true;
        if self.interval > 0 && self.last_commit.elapsed().as_secs_f64() > self.interval as f64 {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let manifest = &mut self.opened.manifest;
        manifest.write(&self.writer)?;
        self.writer
            .repo
            .commit(false, DEFAULT_COMPACT_THRESHOLD, false)?;
        self.cache.commit(manifest)?;
        self.last_commit = Instant::now();
        self.uncommitted = false;
        Ok(())
    }

    /// Commit what is left; the statistics of what was deleted and the cache.
    pub(crate) fn finish(mut self) -> Result<(Statistics, Cache)> {
        if self.uncommitted {
            self.commit()?;
        }
        Ok((self.stats, self.cache))
    }
}

/// The `Deleted data` block (sizes were subtracted from zero: read them as signed).
pub(crate) fn print_stats(ctx: &Context, stats: &Statistics, cache: Option<&Cache>) -> Result<()> {
    let iec = ctx.common.iec;
    let mut lines = vec![
        DASHES.to_string(),
        STATS_HEADER.to_string(),
        size_row(
            "Deleted data:",
            stats.osize as i64,
            stats.csize as i64,
            stats.usize as i64,
            iec,
        ),
    ];
    if let Some(cache) = cache {
        lines.extend(
            cache_block(&cache.summary()?, iec)
                .lines()
                .map(str::to_string),
        );
    }
    lines.push(DASHES.to_string());
    for line in lines {
        output::stats_line(&line);
    }
    Ok(())
}

/// `--force --force`: drop the archives from the manifest without touching their data.
fn remove_from_manifest(args: &DeleteArgs, opened: &mut Opened, names: &[Vec<u8>]) -> Result<()> {
    let mut deleted = false;
    let n = names.len();
    for (i, name) in names.iter().enumerate() {
        let Some(info) = opened.manifest.lookup(name).cloned() else {
            not_found(name, i + 1, n);
            continue;
        };
        opened.manifest.remove_archive(name);
        deleted = true;
        if args.output_list {
            let verb = if args.dry_run {
                "Would delete:"
            } else {
                "Deleted archive:"
            };
            output::list_line(&format!("{verb} {} ({}/{n})", archive_line(&info), i + 1));
        }
    }
    if args.dry_run {
        output::info("Finished dry-run.");
    } else if deleted {
        let writer = ObjectWriter::new(
            opened.repo.clone(),
            opened.key.clone(),
            CompressionSpec::default(),
        );
        opened.manifest.write(&writer)?;
        opened
            .repo
            .commit(false, DEFAULT_COMPACT_THRESHOLD, false)?;
        output::warning("Done. Run \"borg check --repair\" to clean up the mess.");
    } else {
        output::warning("Aborted.");
    }
    Ok(())
}

/// The confirmation text of a repository deletion (borg's `_delete_repository`).
fn confirmation_text(
    args: &DeleteArgs,
    repo: &Arc<dyn Repository>,
    location: &Location,
) -> Result<String> {
    let manifest = match Manifest::fetch(repo.as_ref()) {
        Ok(stored) => {
            let key = open_key(repo.as_ref(), &stored)?;
            Some(Manifest::decode(repo.as_ref(), &key, &stored, &[])?)
        }
        Err(e) if e.is(ErrorKind::NoManifestError) => None,
        Err(e) => return Err(e),
    };
    let mut msg = vec![match &manifest {
        Some(m) => format!(
            "You requested to completely DELETE the following repository *including* {} archives it contains:",
            m.archives.len()
        ),
        None => "You requested to completely DELETE the following repository *including* all archives it may contain:".to_string(),
    }];
    msg.push(DASHES.to_string());
    msg.push(format!("Repository ID: {}", hex::encode(repo.id())));
    msg.push(format!("Location: {}", location.canonical_path()));
    if args.output_list {
        msg.push(String::new());
        msg.push("Archives:".to_string());
        match &manifest {
            Some(m) if m.archives.is_empty() => {
                msg.push("This repository seems to not have any archives.".to_string())
            }
            Some(m) => {
                let mut archives = m.archives.clone();
                archives.sort_by_key(|a| a.ts);
                msg.extend(archives.iter().map(archive_line));
            }
            None => msg.push(
                "This repository seems to have no manifest, so we can't tell anything about its contents."
                    .to_string(),
            ),
        }
    }
    msg.push(DASHES.to_string());
    msg.push("Type 'YES' if you understand this and want to continue: ".to_string());
    Ok(msg.join("\n"))
}

fn delete_repository(
    args: &DeleteArgs,
    location: &Location,
    repo: Arc<dyn Repository>,
) -> Result<()> {
    let id_hex = hex::encode(repo.id());
    if !args.cache_only {
        if args.forced == 0 {
            let msg = confirmation_text(args, &repo, location)?;
            let confirmed = output::yes(&Question {
                msg: Some(&msg),
                false_msg: Some("Aborting."),
                invalid_msg: Some("Invalid answer, aborting."),
                truish: output::prompt::ONLY_YES,
                retry: false,
                env_var_override: Some("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING"),
                ..Default::default()
            });
            if !confirmed {
                return Err(Error::plain(ErrorKind::CancelledByUser));
            }
        }
        if !args.dry_run {
            repo.destroy()?;
            output::info("Repository deleted.");
            if !args.keep_security_info {
                SecurityManager::new(&id_hex, &location.canonical_path()).destroy()?;
            }
        } else {
            output::info("Would delete repository.");
            output::info(&format!(
                "Would {} security info.",
                if args.keep_security_info {
                    "keep"
                } else {
                    "delete"
                }
            ));
        }
    }
    if !args.dry_run {
        Cache::destroy(&id_hex)?;
        output::info("Cache deleted.");
    } else {
        output::info("Would delete cache.");
    }
    Ok(())
}
