//! `borg extract`: restore an archive (or parts of it) into the current directory.

use std::sync::Arc;

use rborg::archive::extract::{extract_archive, ExtractOptions};
use rborg::archive::{Archive, Operation};
use rborg::errors::{Error, Result, WarningKind};
use rborg::fs::RestoreOptions;
use rborg::output;

use super::common::{build_matcher, open_with_manifest, parse_location, ArchiveArg};
use super::Context;
use crate::cli::ExtractArgs;

pub fn run(ctx: &Context, args: &ExtractArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Required)?;
    let opened = open_with_manifest(ctx, &location, false, &[Operation::Read])?;
    let name = location.archive.clone().unwrap_or_default();
    let info = opened.manifest.get_archive(&name)?.clone();
    let archive = Archive::load(opened.repo.as_ref(), &opened.key, &info.id)?;

    let matcher = Arc::new(build_matcher(&args.patterns, &args.paths)?);
    let strip_components = args.strip_components.max(0) as usize;
    let partial = !matcher.is_empty() || strip_components > 0;
    let opts = ExtractOptions {
        dest: std::env::current_dir().map_err(|e| {
            Error::exception(format!("cannot determine the current directory: {e}"))
        })?,
        dry_run: args.dry_run,
        stdout: args.stdout,
        sparse: args.sparse,
        strip_components,
        restore: RestoreOptions {
            numeric_ids: args.numeric_ids,
            noacls: args.noacls,
            noxattrs: args.noxattrs,
            noflags: args.noflags,
        },
        list: args.output_list,
        progress: ctx.common.progress,
        consider_part_files: ctx.common.consider_part_files,
    };
    let selector = {
        let m = matcher.clone();
        move |path: &[u8]| m.match_path(path)
    };
    let _selector = extract_archive(
        opened.repo.clone(),
        opened.key.clone(),
        &archive,
        selector,
        partial,
        &opts,
    )?;
    for pattern in matcher.unmatched_include_patterns() {
        output::warn_kind(
            WarningKind::IncludePatternNeverMatched,
            &format!("Include pattern '{pattern}' never matched."),
        );
    }
    Ok(())
}
