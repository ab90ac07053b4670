//! `borg create`: back up files into a new archive.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use chrono::Utc;
use serde_json::{json, Value};

use rborg::archive::create::{archive_exists, backup, CreateOptions, CreateOutcome, StdinItem};
use rborg::archive::manifest::{format_timestamp, Manifest};
use rborg::archive::objects::ObjectWriter;
use rborg::archive::{ArchiveMeta, Operation, Statistics};
use rborg::cache::{Cache, CacheOptions, FilesCacheMode};
use rborg::chunker::ChunkerParams;
use rborg::compress::CompressionSpec;
use rborg::errors::{Error, Result};
use rborg::fs::{CaptureOptions, FilesChanged};
use rborg::output;
use rborg::output::human::{format_archive_time, format_timedelta_us, isoformat_archive_time};
use rborg::output::stats::{cache_block, cache_json, size_row, DASHES, STATS_HEADER};
use rborg::patterns::{PatternList, PatternMatcher};
use rborg::repository::{ObjectId, MAX_DATA_SIZE};

use super::common::{
    basic_json, open_with_manifest, parse_location, pattern_args, ArchiveArg, Opened,
};
use super::Context;
use crate::cli::CreateArgs;

pub fn run(ctx: &Context, args: &CreateArgs) -> Result<()> {
    rborg::bufpool::fix_allocator_thresholds();
    let mut location = parse_location(Some(&args.location), ArchiveArg::Required)?;
    if let Some(ts) = args.timestamp {
        location = location.with_timestamp(ts)?;
    }
    let list = PatternList::from_args(&pattern_args(&args.patterns))?;
    let mut input = Input::from_args(args, &list)?;
    let matcher = PatternMatcher::for_create(list.rules);
    let mut opts = create_options(ctx, args, input.roots.clone())?;
    opts.no_recursion = input.no_recursion;
    output::info(&format!("Creating archive at \"{}\"", location.processed));
    if args.dry_run {
        backup(None, None, &matcher, &opts, None, None)?;
        return input.finish();
    }
    let name = location.archive.clone().unwrap_or_default();
    let opened = open_with_manifest(ctx, &location, true, &[Operation::Write])?;
    if opened.manifest.lookup(name.as_bytes()).is_some() {
        return Err(archive_exists(&name));
    }
    let cache_opts = CacheOptions {
        lock_wait: ctx.common.lock_wait as f64,
        files_cache_mode: FilesCacheMode::from_code(args.files_cache.as_deref().unwrap_or("cis")),
        progress: ctx.common.progress,
        consider_part_files: ctx.common.consider_part_files,
        warn_if_unencrypted: true,
    };
    let mut cache = Cache::open(
        opened.repo.clone(),
        opened.key.clone(),
        &opened.manifest,
        &opened.location.canonical_path(),
        &cache_opts,
    )?;
    for dir in [
        Some(cache.path().to_path_buf()),
        Some(location.absolute_path()),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(md) = std::fs::metadata(&dir) {
            opts.skip_inodes.push((md.ino(), md.dev()));
        }
    }
    let compression = CompressionSpec::parse(&args.compression)?;
    let writer = ObjectWriter::new(opened.repo.clone(), opened.key.clone(), compression);
    let started = Utc::now();
    let clock = std::time::Instant::now();
    let mut checkpoints = Checkpoints {
        name: checkpoint_name(&opened.manifest, &name),
        manifest: opened.manifest.clone(),
        last: None,
    };
    let mut write_checkpoint = |items: &[ObjectId], stats: &Statistics| {
        let (start, end) = times(args.timestamp, started, clock.elapsed());
        let meta = archive_meta(
            ctx,
            args,
            &checkpoints.name,
            items,
            stats,
            start,
            end,
            &opts,
        )?;
        checkpoints.save(&writer, &opened, &meta, start)
    };
    // The first Ctrl-C ends the backup with a checkpoint (a second one at once).
    output::signals::set_sigint_deferred(true);
    let outcome = backup(
        Some(&writer),
        Some(&cache),
        &matcher,
        &opts,
        input.pipe.take(),
        Some(&mut write_checkpoint),
    );
    output::signals::set_sigint_deferred(false);
    let mut outcome = outcome?;
    input.finish()?;
    if let Some(id) = checkpoints.last.take() {
        // The last checkpoint goes with the commit of the archive that replaces it.
        opened.repo.delete(&id)?;
    }
    let (start, end) = times(args.timestamp, started, clock.elapsed());
    let meta = archive_meta(
        ctx,
        args,
        &name,
        &outcome.item_chunks,
        &outcome.stats,
        start,
        end,
        &opts,
    )?;
    let (archive_id, meta_csize, meta_size) = meta.store(&writer)?;
    // Without the checkpoint, but after it in time (manifest timestamps only increase).
    let mut manifest = checkpoints.manifest.clone();
    manifest.set_archive(name.as_bytes(), archive_id, start);
    manifest.write(&writer)?;
    opened.repo.commit(false, 0.1, false)?;
    apply_to_cache(
        &mut cache,
        &mut outcome,
        (archive_id, meta_size as u32, meta_csize as u32),
    );
    cache.commit(&manifest)?;
    if args.stats || args.json || args.quick_stats {
        let report = Report {
            name: &name,
            id: archive_id,
            start,
            end,
            stats: &outcome.stats,
            meta_csize,
        };
        print_stats(ctx, args, &opened, &manifest, &cache, &report)?;
    }
    Ok(())
}

fn create_options(ctx: &Context, args: &CreateArgs, roots: Vec<Vec<u8>>) -> Result<CreateOptions> {
    let chunker = ChunkerParams::parse(
        args.chunker_params
            .as_deref()
            .unwrap_or("buzhash,19,23,21,4095"),
    )
    .map_err(|e| Error::generic(format!("argument --chunker-params: {}", e.message)))?;
    Ok(CreateOptions {
        roots,
        exclude_caches: args.tags.exclude_caches,
        exclude_if_present: args
            .tags
            .exclude_if_present
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        keep_exclude_tags: args.tags.keep_exclude_tags,
        exclude_nodump: args.exclude_nodump,
        one_file_system: args.one_file_system,
        read_special: args.read_special,
        sparse: args.sparse,
        capture: CaptureOptions {
            numeric_ids: args.numeric_ids,
            atime: args.atime,
            noctime: args.noctime,
            nobirthtime: args.nobirthtime,
            noflags: args.noflags,
            noacls: args.noacls,
            noxattrs: args.noxattrs,
        },
        files_changed: FilesChanged::parse(args.files_changed.as_deref().unwrap_or("ctime"))
            .unwrap_or_default(),
        chunker,
        skip_inodes: Vec::new(),
        dry_run: args.dry_run,
        list_filter: args.output_filter.clone(),
        list: args.output_list,
        progress: ctx.common.progress,
        cwd: std::env::current_dir().map_err(|e| {
            Error::exception(format!("cannot determine the current directory: {e}"))
        })?,
        no_recursion: false,
        checkpoint_interval: (args.checkpoint_interval > 0)
            .then(|| std::time::Duration::from_secs(args.checkpoint_interval as u64)),
        stdin: StdinItem {
            name: args.stdin_name.as_bytes().to_vec(),
            user: args.stdin_user.clone().unwrap_or_else(|| root_name(true)),
            group: args.stdin_group.clone().unwrap_or_else(|| root_name(false)),
            mode: args.stdin_mode,
        },
    })
}

/// The names of uid/gid 0 (borg's `--stdin-user/--stdin-group` defaults).
fn root_name(user: bool) -> String {
    let name = if user {
        nix::unistd::User::from_uid(0.into())
            .ok()
            .flatten()
            .map(|u| u.name)
    } else {
        nix::unistd::Group::from_gid(0.into())
            .ok()
            .flatten()
            .map(|g| g.name)
    };
    name.unwrap_or_else(|| "root".to_string())
}

/// Where the backup's input comes from: PATH arguments, listed paths, or piped content.
struct Input {
    roots: Vec<Vec<u8>>,
    no_recursion: bool,
    pipe: Option<Box<dyn std::io::Read + Send>>,
    /// The command feeding `--content-from-command` / `--paths-from-command`.
    child: Option<(String, std::process::Child)>,
}

impl Input {
    fn from_args(args: &CreateArgs, list: &PatternList) -> Result<Input> {
        let argv: Vec<String> = args
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if args.content_from_command {
            let mut child = spawn_command(&argv)?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| Error::exception("no command output"))?;
            let pipe: Box<dyn std::io::Read + Send> = Box::new(stdout);
            let program = argv[0].clone();
            return Ok(Input {
                roots: vec![b"-".to_vec()],
                no_recursion: false,
                pipe: Some(pipe),
                child: Some((program, child)),
            });
        }
        if args.paths_from_stdin || args.paths_from_command {
            let delimiter = args
                .paths_delimiter
                .as_deref()
                .map(unescape)
                .unwrap_or_else(|| b"\n".to_vec());
            let mut text = Vec::new();
            let child = if args.paths_from_command {
                let mut child = spawn_command(&argv)?;
                let mut stdout = child
                    .stdout
                    .take()
                    .ok_or_else(|| Error::exception("no command output"))?;
                std::io::Read::read_to_end(&mut stdout, &mut text).map_err(Error::exception)?;
                Some((argv[0].clone(), child))
            } else {
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)
                    .map_err(Error::exception)?;
                None
            };
            return Ok(Input {
                roots: split_paths(&text, &delimiter),
                no_recursion: true,
                pipe: None,
                child,
            });
        }
        let mut roots: Vec<Vec<u8>> = args.paths.iter().map(|p| p.as_bytes().to_vec()).collect();
        roots.extend(list.roots.iter().cloned());
        if roots.is_empty() {
            return Err(Error::command("Need at least one PATH argument."));
        }
        let pipe = roots
            .iter()
            .any(|r| r == b"-")
            .then(|| Box::new(std::io::stdin()) as Box<dyn std::io::Read + Send>);
        Ok(Input {
            roots,
            no_recursion: false,
            pipe,
            child: None,
        })
    }

    /// Wait for the feeding command; a failure is borg's CommandError.
    fn finish(&mut self) -> Result<()> {
        self.pipe = None;
        if let Some((program, mut child)) = self.child.take() {
            let status = child.wait().map_err(Error::exception)?;
            if !status.success() {
                let code = status.code().unwrap_or(-1);
                let program = rborg::python::repr(&program);
                return Err(Error::command(format!(
                    "Command {program} exited with status {code}"
                )));
            }
        }
        Ok(())
    }
}

fn spawn_command(argv: &[String]) -> Result<std::process::Child> {
    let Some(program) = argv.first() else {
        return Err(Error::command("No command given."));
    };
    std::process::Command::new(program)
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            let text = rborg::fs::python_os_error(&e, Some(program.as_bytes()));
            Error::command(format!("Failed to execute command: {text}"))
        })
}

/// Paths separated by `delimiter` (empty entries dropped).
fn split_paths(text: &[u8], delimiter: &[u8]) -> Vec<Vec<u8>> {
    if delimiter.is_empty() {
        return vec![text.to_vec()];
    }
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (part, next) = match rest.windows(delimiter.len()).position(|w| w == delimiter) {
            Some(i) => (&rest[..i], &rest[i + delimiter.len()..]),
            None => (rest, &rest[rest.len()..]),
        };
        if !part.is_empty() {
            out.push(part.to_vec());
        }
        rest = next;
    }
    out
}

/// `--paths-delimiter` escapes (`\n`, `\t`, `\r`, `\0`, `\\`), as borg's `eval_escapes`.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(&mut out, c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('0') => out.push(0),
            Some(other) => {
                if other != '\\' {
                    out.push(b'\\');
                }
                push(&mut out, other);
            }
            None => out.push(b'\\'),
        }
    }
    out
}

/// The host name borg stores (BORG_HOSTNAME overrides, 1.4.5).
pub(super) fn hostname() -> Vec<u8> {
    if let Some(h) = std::env::var_os("BORG_HOSTNAME").filter(|h| !h.is_empty()) {
        return h.as_bytes().to_vec();
    }
    nix::unistd::gethostname()
        .map(|h| h.as_bytes().to_vec())
        .unwrap_or_default()
}

/// The user name borg stores (BORG_USERNAME overrides, 1.4.5).
pub(super) fn username() -> Vec<u8> {
    if let Some(u) = std::env::var_os("BORG_USERNAME").filter(|u| !u.is_empty()) {
        return u.as_bytes().to_vec();
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name.into_bytes(),
        _ => uid.to_string().into_bytes(),
    }
}

/// Start and end of an archive: `--timestamp` is the start; else it ends now.
fn times(
    timestamp: Option<chrono::DateTime<Utc>>,
    started: chrono::DateTime<Utc>,
    elapsed: std::time::Duration,
) -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let duration = chrono::Duration::from_std(elapsed).unwrap_or_default();
    match timestamp {
        Some(ts) => (ts, ts + duration),
        None => {
            let end = Utc::now().max(started);
            (end - duration, end)
        }
    }
}

/// `<name>.checkpoint`, or `.checkpoint.N` with the first N not taken (borg's choice).
fn checkpoint_name(manifest: &Manifest, name: &str) -> String {
    let mut candidate = format!("{name}.checkpoint");
    let mut n = 1;
    while manifest.lookup(candidate.as_bytes()).is_some() {
        candidate = format!("{name}.checkpoint.{n}");
        n += 1;
    }
    candidate
}

/// Checkpoint archives of this run: each replaces the previous one (borg's
/// `write_checkpoint`).
struct Checkpoints {
    name: String,
    /// The manifest as opened; a checkpoint is added to a copy of it.
    manifest: Manifest,
    /// The checkpoint archive committed last (deleted with the next commit).
    last: Option<ObjectId>,
}

impl Checkpoints {
    fn save(
        &mut self,
        writer: &ObjectWriter,
        opened: &Opened,
        meta: &ArchiveMeta,
        start: chrono::DateTime<Utc>,
    ) -> Result<()> {
        if let Some(id) = self.last.take() {
            opened.repo.delete(&id)?;
        }
        let (id, _, _) = meta.store(writer)?;
        let mut manifest = self.manifest.clone();
        manifest.set_archive(self.name.as_bytes(), id, start);
        manifest.write(writer)?;
        opened.repo.commit(false, 0.1, false)?;
        self.manifest.timestamp = manifest.timestamp;
        self.last = Some(id);
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn archive_meta(
    ctx: &Context,
    args: &CreateArgs,
    name: &str,
    items: &[ObjectId],
    stats: &Statistics,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
    opts: &CreateOptions,
) -> Result<ArchiveMeta> {
    let comment = rborg::location::replace_placeholders(&args.comment, args.timestamp)?;
    Ok(ArchiveMeta {
        version: 1,
        name: name.as_bytes().to_vec(),
        items: items.to_vec(),
        cmdline: ctx.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        hostname: hostname(),
        username: username(),
        time: format_timestamp(&start),
        time_end: Some(format_timestamp(&end)),
        comment: comment.into_bytes(),
        chunker_params: Some(opts.chunker.to_value()),
        size: Some(stats.osize),
        csize: Some(stats.csize),
        nfiles: Some(stats.nfiles),
        size_parts: Some(stats.osize_parts),
        csize_parts: Some(stats.csize_parts),
        nfiles_parts: Some(stats.nfiles_parts),
        recreate_cmdline: None,
        cwd: Some(opts.cwd.as_os_str().as_bytes().to_vec()),
        raw: rmpv::Value::Map(Vec::new()),
    })
}

/// Record in the cache what the backup referenced: chunks it stored, further references,
/// the archive's metadata object, and the files it read.
fn apply_to_cache(
    cache: &mut Cache,
    outcome: &mut CreateOutcome,
    meta_chunk: (ObjectId, u32, u32),
) {
    let mut scratch = Statistics::default();
    for (id, size, csize) in &outcome.new_chunks {
        cache.add_chunk(id, *size, *csize, &mut scratch, false);
    }
    for id in &outcome.increfs {
        cache.chunk_incref(id, &mut scratch, false);
    }
    cache.add_chunk(
        &meta_chunk.0,
        meta_chunk.1,
        meta_chunk.2,
        &mut scratch,
        false,
    );
    cache.memorize_files(std::mem::take(&mut outcome.memorize));
}

/// What `--stats` / `--json` report about the new archive.
struct Report<'a> {
    name: &'a str,
    id: ObjectId,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
    stats: &'a Statistics,
    meta_csize: usize,
}

fn print_stats(
    ctx: &Context,
    args: &CreateArgs,
    opened: &super::common::Opened,
    manifest: &rborg::archive::Manifest,
    cache: &Cache,
    r: &Report,
) -> Result<()> {
    let duration_us = (r.end - r.start).num_microseconds().unwrap_or(0);
    let max_archive_size = r.meta_csize as f64 / MAX_DATA_SIZE as f64;
    if args.json {
        let reopened = super::common::Opened {
            location: opened.location.clone(),
            repo: opened.repo.clone(),
            key: opened.key.clone(),
            manifest: manifest.clone(),
        };
        let mut data = basic_json(&reopened)?;
        let mut archive = serde_json::Map::new();
        archive.insert("command_line".into(), Value::from(ctx.argv_text()));
        archive.insert("duration".into(), Value::from(duration_us as f64 / 1e6));
        archive.insert("end".into(), Value::from(isoformat_archive_time(&r.end)));
        archive.insert("id".into(), Value::from(hex::encode(r.id)));
        archive.insert(
            "limits".into(),
            json!({ "max_archive_size": max_archive_size }),
        );
        output::json::insert_text_with_b64(&mut archive, "name", r.name.as_bytes());
        archive.insert(
            "start".into(),
            Value::from(isoformat_archive_time(&r.start)),
        );
        archive.insert(
            "stats".into(),
            json!({
                "compressed_size": r.stats.csize,
                "deduplicated_size": r.stats.usize,
                "nfiles": r.stats.nfiles,
                "original_size": r.stats.osize,
            }),
        );
        data.insert("archive".into(), Value::Object(archive));
        if !args.quick_stats {
            data.insert(
                "cache".into(),
                cache_json(&cache.path().display().to_string(), &cache.summary()?),
            );
        }
        super::common::print_json(data);
        return Ok(());
    }
    let iec = ctx.common.iec;
    let mut lines = vec![
        DASHES.to_string(),
        format!("Repository: {}", opened.location.canonical_path()),
        format!("Archive name: {}", r.name),
        format!("Archive fingerprint: {}", hex::encode(r.id)),
        format!("Time (start): {}", format_archive_time(&r.start)),
        format!("Time (end):   {}", format_archive_time(&r.end)),
        format!("Duration: {}", format_timedelta_us(duration_us)),
        format!("Number of files: {}", r.stats.nfiles),
        format!(
            "Utilization of max. archive size: {:.0}%",
            max_archive_size * 100.0
        ),
        DASHES.to_string(),
        STATS_HEADER.to_string(),
        size_row(
            "This archive:",
            r.stats.osize as i64,
            r.stats.csize as i64,
            r.stats.usize as i64,
            iec,
        ),
    ];
    if !args.quick_stats {
        lines.push(cache_block(&cache.summary()?, iec));
    }
    lines.push(DASHES.to_string());
    // one record per line (borg's log_multi): a `--log-json` reader gets one object each
    for line in lines.join("\n").lines() {
        output::stats_line(line);
    }
    Ok(())
}
