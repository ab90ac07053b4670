//! `borg info`: repository summary or per-archive details with statistics.

use serde_json::{json, Map, Value};

use rborg::archive::{display_bytes, Archive, Operation};
use rborg::cache::Cache;
use rborg::chunker::ChunkerParams;
use rborg::errors::Result;
use rborg::output;
use rborg::output::human::{format_archive_time, format_timedelta_us, isoformat_archive_time};
use rborg::output::listing::shell_quote;
use rborg::output::stats::{cache_block, cache_json, size_row, DASHES, STATS_HEADER};
use rborg::repository::MAX_DATA_SIZE;

use super::common::{
    archive_filter, basic_json, open_cache, open_with_manifest, parse_location, print_json,
    ArchiveArg, Opened,
};
use super::Context;
use crate::cli::InfoArgs;

pub fn run(ctx: &Context, args: &InfoArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Optional)?;
    let opened = open_with_manifest(ctx, &location, false, &[Operation::Read])?;
    let cache = open_cache(ctx, &opened)?;
    if location.archive.is_some() || args.filter.any() {
        info_archives(ctx, args, &opened, &cache)
    } else {
        info_repository(ctx, args, &opened, &cache)
    }
}

fn cache_path(opened: &Opened) -> String {
    rborg::paths::repo_cache_dir(&hex::encode(opened.repo.id()))
        .display()
        .to_string()
}

fn info_repository(ctx: &Context, args: &InfoArgs, opened: &Opened, cache: &Cache) -> Result<()> {
    let summary = cache.summary()?;
    let id_hex = hex::encode(opened.repo.id());
    let security_dir = rborg::paths::security_dir(&id_hex).display().to_string();
    if args.json {
        let mut data = basic_json(opened)?;
        data.insert("cache".into(), cache_json(&cache_path(opened), &summary));
        data.insert("security_dir".into(), Value::from(security_dir));
        print_json(data);
        return Ok(());
    }
    let key_type = opened.key.key_type();
    let mut text = format!(
        "Repository ID: {}\nLocation: {}\nEncrypted: {}\n",
        id_hex,
        opened.location.canonical_path(),
        key_type.encrypted_line()
    );
    if let Some(kf) = opened.key.keyfile_path() {
        text.push_str(&format!("Key file: {}\n", kf.display()));
    }
    text.push_str(&format!(
        "Cache: {}\nSecurity dir: {}\n",
        cache_path(opened),
        security_dir
    ));
    text.push_str(&format!(
        "{DASHES}\n{STATS_HEADER}\n{}\n",
        cache_block(&summary, ctx.common.iec)
    ));
    output::stdout_text(&text);
    Ok(())
}

/// Seconds between two times at microsecond precision (Python's `total_seconds()`).
fn duration_us(a: &Archive) -> Result<i64> {
    let start = a.meta.start()?;
    let end = a.meta.end()?;
    Ok((end - start).num_microseconds().unwrap_or(0))
}

fn info_archives(ctx: &Context, args: &InfoArgs, opened: &Opened, cache: &Cache) -> Result<()> {
    let selected: Vec<[u8; 32]> = match &opened.location.archive {
        Some(name) => vec![opened.manifest.get_archive(name)?.id],
        None => archive_filter(&args.filter, true)?
            .apply(&opened.manifest.archives)?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    let summary = cache.summary()?;
    let iec = ctx.common.iec;
    let mut json_archives = Vec::new();
    for (i, id) in selected.iter().enumerate() {
        let Some(info) = opened.manifest.archives.iter().find(|a| a.id == *id) else {
            continue;
        };
        let a = Archive::load(opened.repo.as_ref(), &opened.key, id)?;
        let totals = cache.archive_totals(&a)?;
        let (nfiles, osize, csize) = (totals.nfiles, totals.size, totals.csize);
        let dsize = cache
            .archive_index(id)?
            .stats_against(cache.chunks())?
            .unique_csize;
        let meta = &a.meta;
        let start = meta.start()?;
        let end = meta.end()?;
        let duration = duration_us(&a)?;
        let max_archive_size = a.stored_len as f64 / MAX_DATA_SIZE as f64;
        let cmdline: Vec<String> = meta.cmdline.iter().map(|w| display_bytes(w)).collect();
        if args.json {
            let mut m = Map::new();
            let chunker = meta
                .chunker_params
                .as_ref()
                .and_then(|v| ChunkerParams::from_value(v).ok())
                .map(|p| p.to_json())
                .unwrap_or(Value::from(""));
            m.insert("chunker_params".into(), chunker);
            m.insert("command_line".into(), Value::from(cmdline));
            m.insert("comment".into(), Value::from(display_bytes(&meta.comment)));
            if let Some(cwd) = &meta.cwd {
                m.insert("cwd".into(), Value::from(display_bytes(cwd)));
            }
            m.insert("duration".into(), Value::from(duration as f64 / 1e6));
            m.insert("end".into(), Value::from(isoformat_archive_time(&end)));
            m.insert(
                "hostname".into(),
                Value::from(display_bytes(&meta.hostname)),
            );
            m.insert("id".into(), Value::from(hex::encode(id)));
            m.insert(
                "limits".into(),
                json!({ "max_archive_size": max_archive_size }),
            );
            output::json::insert_text_with_b64(&mut m, "name", &info.name);
            m.insert("start".into(), Value::from(isoformat_archive_time(&start)));
            m.insert(
                "stats".into(),
                json!({
                    "compressed_size": csize,
                    "deduplicated_size": dsize,
                    "nfiles": nfiles,
                    "original_size": osize,
                }),
            );
            m.insert(
                "username".into(),
                Value::from(display_bytes(&meta.username)),
            );
            json_archives.push(Value::Object(m));
            continue;
        }
        let mut text = format!(
            "Archive name: {}\nArchive fingerprint: {}\nComment: {}\nHostname: {}\nUsername: {}\n\
             Time (start): {}\nTime (end): {}\nDuration: {}\nNumber of files: {}\n",
            display_bytes(&info.name),
            hex::encode(id),
            display_bytes(&meta.comment),
            display_bytes(&meta.hostname),
            display_bytes(&meta.username),
            format_archive_time(&start),
            format_archive_time(&end),
            format_timedelta_us(duration),
            nfiles,
        );
        if let Some(cwd) = &meta.cwd {
            text.push_str(&format!("Working Directory: {}\n", display_bytes(cwd)));
        }
        let cmd = cmdline
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        text.push_str(&format!(
            "Command line: {}\nUtilization of maximum supported archive size: {:.0}%\n{DASHES}\n{STATS_HEADER}\n{}\n{}\n",
            cmd,
            max_archive_size * 100.0,
            size_row("This archive:", osize as i64, csize as i64, dsize as i64, iec),
            cache_block(&summary, iec)
        ));
        if i + 1 < selected.len() {
            text.push('\n');
        }
        output::stdout_text(&text);
    }
    if args.json {
        let mut data = basic_json(opened)?;
        data.insert("archives".into(), Value::Array(json_archives));
        data.insert("cache".into(), cache_json(&cache_path(opened), &summary));
        print_json(data);
    }
    Ok(())
}
