//! `borg benchmark crud` (cli.md §4.22): time create, extract (dry run), a no-change update
//! and delete of archives `borg-benchmark-crud1/2/3` over generated test files, by running
//! the real commands as borg does.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rand::RngCore;
use rborg::errors::{Error, Result};
use rborg::location::Location;
use rborg::output::{self, human::format_file_size};

use super::Context;
use crate::cli::{self, BenchmarkArgs, BenchmarkCommand, BenchmarkCrudArgs};

pub fn run(ctx: &Context, args: &BenchmarkArgs) -> Result<()> {
    match &args.command {
        Some(BenchmarkCommand::Crud(a)) => crud(ctx, a),
        None => Err(Error::generic("benchmark: a subcommand is required")),
    }
}

/// One data set: name, file count, file size, random (else all-zero) contents.
struct DataSet {
    name: &'static str,
    count: usize,
    size: usize,
    random: bool,
}

/// borg's data sets; `_BORG_BENCHMARK_CRUD_TEST` selects its tiny test sets.
fn data_sets() -> Vec<DataSet> {
    let set = |name, count, size, random| DataSet {
        name,
        count,
        size,
        random,
    };
    if std::env::var_os("_BORG_BENCHMARK_CRUD_TEST").is_some() {
        return vec![set("Z-TEST", 1, 1, false), set("R-TEST", 1, 1, true)];
    }
    vec![
        set("Z-BIG", 10, 100_000_000, false),
        set("R-BIG", 10, 100_000_000, true),
        set("Z-MEDIUM", 1000, 1_000_000, false),
        set("R-MEDIUM", 1000, 1_000_000, true),
        set("Z-SMALL", 10000, 10_000, false),
        set("R-SMALL", 10000, 10_000, true),
    ]
}

fn crud(ctx: &Context, args: &BenchmarkCrudArgs) -> Result<()> {
    let location = Location::validate(&args.location, Some(false), None)?;
    let archive = format!("{}::borg-benchmark-crud", location.canonical_path());
    for set in data_sets() {
        let dir = args.path.join("borg-test-data");
        // as borg's os.makedirs: an existing directory is an error (and is left alone)
        std::fs::create_dir_all(&args.path)?;
        std::fs::create_dir(&dir)?;
        let timings = write_test_files(&dir, &set)
            .and_then(|()| measurement_run(ctx, &archive, &dir.to_string_lossy()));
        let _ = std::fs::remove_dir_all(&dir);
        let [create, update, extract, delete] = timings?;
        let total_mb = (set.count * set.size) as f64 / 1e6;
        let size = format_file_size(set.size as i64, false);
        let content = if set.random { "random" } else { "all-zero" };
        for (letter, dt) in [("C", create), ("R", extract), ("U", update), ("D", delete)] {
            output::stdout_line(&format!(
                "{letter}-{:<10} {:>9.2} MB/s ({} * {size} {content} files: {dt:.2}s)",
                set.name,
                total_mb / dt,
                set.count,
            ));
        }
    }
    Ok(())
}

/// `PATH/borg-test-data/file_<i>`, synced to disk (borg writes them with `SyncFile`).
fn write_test_files(dir: &Path, set: &DataSet) -> Result<()> {
    let mut data = vec![0u8; set.size];
    for i in 0..set.count {
        if set.random {
            rand::thread_rng().fill_bytes(&mut data);
        }
        let mut file = std::fs::File::create(dir.join(format!("file_{i}")))?;
        file.write_all(&data)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Seconds for: create without files cache, no-change update, dry-run extract, delete.
fn measurement_run(ctx: &Context, archive: &str, path: &str) -> Result<[f64; 4]> {
    let none = "--compression=none";
    let timed = |argv: &[&str]| -> Result<f64> {
        let start = Instant::now();
        run_command(ctx, argv)?;
        Ok(start.elapsed().as_secs_f64())
    };
    let a1 = format!("{archive}1");
    let a2 = format!("{archive}2");
    let a3 = format!("{archive}3");
    let create = timed(&["create", none, "--files-cache=disabled", &a1, path])?;
    // build the files cache
    run_command(ctx, &["create", none, &a2, path])?;
    run_command(ctx, &["delete", &a2])?;
    let update = timed(&["create", none, &a3, path])?;
    run_command(ctx, &["delete", &a3])?;
    let extract = timed(&["extract", "--dry-run", &a1])?;
    let delete = timed(&["delete", &a1])?;
    Ok([create, update, extract, delete])
}

/// Parse and run one borg command line, passing on `--rsh` / `--remote-path` (as borg).
fn run_command(ctx: &Context, argv: &[&str]) -> Result<()> {
    let mut full: Vec<OsString> = vec![ctx.prog.clone().into(), argv[0].into()];
    if let Some(rsh) = &ctx.common.rsh {
        full.extend(["--rsh".into(), rsh.into()]);
    }
    if let Some(remote_path) = &ctx.common.remote_path {
        full.extend(["--remote-path".into(), remote_path.into()]);
    }
    full.extend(argv[1..].iter().map(OsString::from));
    let inv = cli::parse(&full, &ctx.prog).map_err(|e| Error::generic(e.stderr.trim()))?;
    let sub = Context {
        common: inv.common.clone(),
        exit_mode: ctx.exit_mode,
        prog: ctx.prog.clone(),
        argv: full,
    };
    super::run(&sub, &inv)
}
