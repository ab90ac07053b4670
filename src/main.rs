//! The `rborg` binary (also installable as `borg`/`borgfs`): parse argv, set up output,
//! run the command, exit with borg's exit code.

// Parts of the CLI API exist for commands that are still to be implemented.
#[allow(dead_code)]
mod cli;
#[allow(dead_code)]
mod commands;

use std::ffi::OsString;
use std::io::Write;

use rborg::errors::{self, ExitCodeMode};
use rborg::output::{self, Level, OutputConfig};

use cli::Command;
use commands::Context;

/// Basename of argv[0] (`borg` for a `borg` symlink).
fn program_name(argv0: Option<&OsString>) -> String {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "rborg".to_string())
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prog = program_name(argv.first());
    let exit_mode = ExitCodeMode::from_env();

    // Before parsing, as borg does: plain-text warnings for deprecated spellings.
    for warning in cli::deprecation_warnings(argv.get(1..).unwrap_or_default()) {
        eprintln!("{warning}");
    }
    let mut inv = match cli::parse(&argv, &prog) {
        Ok(inv) => inv,
        Err(exit) => {
            let _ = std::io::stdout().write_all(exit.stdout.as_bytes());
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(exit.stderr.as_bytes());
            std::process::exit(exit.code);
        }
    };
    if let Ok(forced) = std::env::var("SSH_ORIGINAL_COMMAND") {
        cli::apply_forced_command(&mut inv, &forced);
    }

    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(inv.common.umask as libc::mode_t) };
    let is_serve = matches!(inv.command, Command::Serve(_));
    output::configure(&OutputConfig {
        level: inv.common.log_level,
        log_json: inv.common.log_json,
        progress: inv.common.progress || is_serve,
        iec: inv.common.iec,
        debug_topics: inv.common.debug_topics.clone(),
        serve: is_serve,
        show_rc: inv.common.show_rc,
    });
    output::signals::install();
    if inv.command.output_list() {
        output::enable_logger(output::LOGGER_LIST);
    }
    if inv.command.stats() || inv.command.quick_stats() {
        output::enable_logger(output::LOGGER_STATS);
    }
    if inv.common.show_version {
        output::enable_logger(output::LOGGER_SHOW_VERSION);
    }
    for warning in inv.command.drop_stats_for_dry_run() {
        output::warning(warning);
    }
    if inv.common.show_version {
        let msg = format!("borgbackup version {}", rborg::BORG_COMPAT_VERSION);
        output::log(Level::Info, output::LOGGER_SHOW_VERSION, &msg, None);
    }

    let ctx = Context {
        common: inv.common.clone(),
        exit_mode,
        prog,
        argv,
    };
    if let Err(e) = commands::run(&ctx, &inv) {
        output::report_error(&e);
        errors::set_exit_code(e.exit_code(exit_mode));
    }
    output::exit_process(errors::final_exit_code(exit_mode))
}
