//! One module per borg command; each has `run(ctx, args) -> Result<()>`. Commands
//! orchestrate the engine (library) and print through `rborg::output`.

use std::ffi::OsString;

use rborg::errors::{ExitCodeMode, Result};

use crate::cli::{Command, CommonOptions, Invocation};

pub mod benchmark;
pub mod break_lock;
pub mod check;
pub mod common;
pub mod compact;
pub mod config;
pub mod create;
pub mod debug;
pub mod delete;
pub mod diff;
pub mod export_tar;
pub mod extract;
pub mod help;
pub mod import_tar;
pub mod info;
pub mod init;
pub mod key;
pub mod list;
pub mod mount;
pub mod prune;
pub mod recreate;
pub mod rename;
pub mod serve;
pub mod umount;
pub mod upgrade;
pub mod version;
pub mod with_lock;

/// What every command may need besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// Effective common options.
    pub common: CommonOptions,
    /// Exit-code table in force (`BORG_EXIT_CODES`).
    pub exit_mode: ExitCodeMode,
    /// Program name as invoked (basename of argv[0]: `borg`, `rborg`, `borgfs`).
    pub prog: String,
    /// The exact command line (stored in archives as `cmdline`, bytes preserved).
    pub argv: Vec<OsString>,
}

impl Context {
    /// The command line as text (undecodable bytes → `?`), e.g. for JSON `command_line`.
    pub fn argv_text(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| rborg::output::json::replace_undecodable(a.as_encoded_bytes()))
            .collect()
    }
}

/// Run the parsed command.
pub fn run(ctx: &Context, inv: &Invocation) -> Result<()> {
    match &inv.command {
        Command::Benchmark(a) => benchmark::run(ctx, a),
        Command::BreakLock(a) => break_lock::run(ctx, a),
        Command::Check(a) => check::run(ctx, a),
        Command::Compact(a) => compact::run(ctx, a),
        Command::Config(a) => config::run(ctx, a),
        Command::Create(a) => create::run(ctx, a),
        Command::Debug(a) => debug::run(ctx, a),
        Command::Delete(a) => delete::run(ctx, a),
        Command::Diff(a) => diff::run(ctx, a),
        Command::ExportTar(a) => export_tar::run(ctx, a),
        Command::Extract(a) => extract::run(ctx, a),
        Command::Help(a) => help::run(ctx, a),
        Command::Info(a) => info::run(ctx, a),
        Command::Version(a) => version::run(ctx, a),
        Command::Init(a) => init::run(ctx, a),
        Command::Key(a) => key::run(ctx, a),
        Command::List(a) => list::run(ctx, a),
        Command::Mount(a) => mount::run(ctx, a),
        Command::Prune(a) => prune::run(ctx, a),
        Command::Recreate(a) => recreate::run(ctx, a),
        Command::Rename(a) => rename::run(ctx, a),
        Command::Serve(a) => serve::run(ctx, a),
        Command::Umount(a) => umount::run(ctx, a),
        Command::Upgrade(a) => upgrade::run(ctx, a),
        Command::WithLock(a) => with_lock::run(ctx, a),
        Command::ImportTar(a) => import_tar::run(ctx, a),
    }
}
