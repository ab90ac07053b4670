//! `borg diff`: compare two archives of one repository (cli.md §4.7, §9.6, §10.4).

use rborg::archive::diff::{
    compare_archives, compare_chunker_params, sort_diffs, ChunkerParamsMatch, DiffOptions,
    ItemDiff, SortField, SortSpec,
};
use rborg::archive::{Archive, Operation};
use rborg::errors::{Error, Result, WarningKind};
use rborg::location::validate_archive_name;
use rborg::output;

use super::common::{build_matcher, open_with_manifest, parse_location, ArchiveArg};
use super::Context;
use crate::cli::DiffArgs;

pub fn run(ctx: &Context, args: &DiffArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Required)?;
    let name2 = validate_archive_name(&args.archive2)?;
    let sort_specs = sort_specs(args)?;
    let opened = open_with_manifest(ctx, &location, false, &[Operation::Read])?;
    let name1 = location.archive.clone().unwrap_or_default();
    let info1 = opened.manifest.get_archive(&name1)?.clone();
    let info2 = opened.manifest.get_archive(&name2)?.clone();
    let archive1 = Archive::load(opened.repo.as_ref(), &opened.key, &info1.id)?;
    let archive2 = Archive::load(opened.repo.as_ref(), &opened.key, &info2.id)?;

    let can_compare_chunk_ids =
        args.same_chunker_params || chunker_params_comparable(&archive1, &archive2);
    let opts = DiffOptions {
        can_compare_chunk_ids,
        content_only: args.content_only,
        // borg accepts --numeric-ids for diff but its comparison always uses names.
        numeric_ids: false,
        consider_part_files: ctx.common.consider_part_files,
    };
    let matcher = build_matcher(&args.patterns, &args.paths)?;
    let select = |path: &[u8]| matcher.match_path(path);
    let mut kept: Vec<ItemDiff> = Vec::new();
    let sorting = !sort_specs.is_empty();
    let json_lines = args.json_lines;
    compare_archives(
        &opened.repo,
        &opened.key,
        &archive1,
        &archive2,
        &select,
        &opts,
        &mut |diff| {
            if diff.equal {
                return Ok(());
            }
            if sorting {
                kept.push(diff);
            } else {
                print_diff(&diff, json_lines);
            }
            Ok(())
        },
    )?;
    if sorting {
        sort_diffs(&mut kept, &sort_specs);
        for diff in &kept {
            print_diff(diff, json_lines);
        }
    }
    for pattern in matcher.unmatched_include_patterns() {
        output::warn_kind(
            WarningKind::IncludePatternNeverMatched,
            &format!("Include pattern '{pattern}' never matched."),
        );
    }
    Ok(())
}

/// `--sort-by` specs; `--sort` alone sorts by path as borg 1.2 did.
fn sort_specs(args: &DiffArgs) -> Result<Vec<SortSpec>> {
    match &args.sort_by {
        Some(text) => SortSpec::parse_list(text)
            .ok_or_else(|| Error::command(format!("Invalid field name in --sort-by: {text}"))),
        None if args.sort => Ok(vec![SortSpec {
            field: SortField::PathRaw,
            descending: false,
        }]),
        None => Ok(Vec::new()),
    }
}

/// Whether chunk ids can be compared, with borg's warnings when they cannot (these
/// warnings leave the exit code alone, as in borg 1.4).
fn chunker_params_comparable(a1: &Archive, a2: &Archive) -> bool {
    match compare_chunker_params(
        a1.meta.chunker_params.as_ref(),
        a2.meta.chunker_params.as_ref(),
    ) {
        ChunkerParamsMatch::Same => true,
        ChunkerParamsMatch::Different => {
            output::warning("--chunker-params are different between archives, diff will be slow.");
            false
        }
        ChunkerParamsMatch::Unknown => {
            output::warning(
                "--chunker-params might be different between archives, diff will be slow.\n\
                 If you know for certain that they are the same, pass --same-chunker-params \
                 to override this check.",
            );
            false
        }
    }
}

fn print_diff(diff: &ItemDiff, json_lines: bool) {
    if json_lines {
        output::stdout_line(&output::dumps_line_sorted(&diff.json()));
    } else {
        output::stdout_line(&diff.text_line());
    }
}
