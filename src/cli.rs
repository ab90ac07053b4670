//! borg's command line: every command and option of borg 1.4 (cli.md §1, §2, §4, §7.1),
//! parsed with clap and made to behave like borg's argparse: long-option prefixes, options
//! at every level (most specific wins), "There can be only one." options, mutually
//! exclusive groups, deprecated spellings, argparse-style error texts (stderr, rc 2).
//!
//! Locations, placeholders, patterns, compression and chunker specs stay text here; the
//! modules that own those formats parse them.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{
    ArgAction, ArgMatches, Args, ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand,
};

use rborg::output::format::python_repr_str;
use rborg::output::Level;

// ───────────────────────────── common options ─────────────────────────────

/// Common options as given at one level of the command line (top level, `key`/`benchmark`/
/// `debug`, or the final command). Use [`CommonOptions`] (the resolved values) instead.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Common options")]
pub struct CommonArgs {
    /// work on log level CRITICAL
    #[arg(long, overrides_with_all = ["error", "warning", "info", "debug"])]
    pub critical: bool,
    /// work on log level ERROR
    #[arg(long, overrides_with_all = ["critical", "warning", "info", "debug"])]
    pub error: bool,
    /// work on log level WARNING (default)
    #[arg(long, overrides_with_all = ["critical", "error", "info", "debug"])]
    pub warning: bool,
    /// work on log level INFO
    #[arg(long, short = 'v', visible_alias = "verbose", overrides_with_all = ["critical", "error", "warning", "debug"])]
    pub info: bool,
    /// enable debug output, work on log level DEBUG
    #[arg(long, overrides_with_all = ["critical", "error", "warning", "info"])]
    pub debug: bool,
    /// enable TOPIC debugging (can be specified multiple times). The logger path is borg.debug.<TOPIC> if TOPIC is not fully qualified.
    #[arg(long = "debug-topic", value_name = "TOPIC", action = ArgAction::Append)]
    pub debug_topics: Vec<String>,
    /// show progress information
    #[arg(short = 'p', long)]
    pub progress: bool,
    /// format using IEC units (1KiB = 1024B)
    #[arg(long)]
    pub iec: bool,
    /// Output one JSON object per log line instead of formatted text.
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// wait at most SECONDS for acquiring a repository/cache lock (default: 1).
    #[arg(long = "lock-wait", value_name = "SECONDS", value_parser = parse_int, allow_negative_numbers = true)]
    pub lock_wait: Option<i64>,
    /// Bypass locking mechanism
    #[arg(long = "bypass-lock")]
    pub bypass_lock: bool,
    /// show/log the borg version
    #[arg(long = "show-version")]
    pub show_version: bool,
    /// show/log the return code (rc)
    #[arg(long = "show-rc")]
    pub show_rc: bool,
    /// set umask to M (local only, default: 0077)
    #[arg(long, value_name = "M", value_parser = parse_octal)]
    pub umask: Option<u32>,
    /// use PATH as borg executable on the remote (default: "borg")
    #[arg(long = "remote-path", value_name = "PATH")]
    pub remote_path: Option<String>,
    /// set network upload rate limit in kiByte/s (default: 0=unlimited)
    #[arg(long = "upload-ratelimit", visible_alias = "remote-ratelimit", value_name = "RATE", value_parser = parse_int)]
    pub upload_ratelimit: Option<i64>,
    /// set network upload buffer size in MiB. (default: 0=no buffer)
    #[arg(long = "upload-buffer", visible_alias = "remote-buffer", value_name = "UPLOAD_BUFFER", value_parser = parse_int)]
    pub upload_buffer: Option<i64>,
    /// treat part files like normal files (e.g. to list/extract them)
    #[arg(long = "consider-part-files")]
    pub consider_part_files: bool,
    /// Write execution profile in Borg format into FILE.
    #[arg(long = "debug-profile", value_name = "FILE")]
    pub debug_profile: Option<PathBuf>,
    /// Use this command to connect to the 'borg serve' process (default: 'ssh')
    #[arg(long, value_name = "RSH")]
    pub rsh: Option<String>,
}

impl CommonArgs {
    fn level(&self) -> Option<Level> {
        [
            (self.critical, Level::Critical),
            (self.error, Level::Error),
            (self.warning, Level::Warning),
            (self.info, Level::Info),
            (self.debug, Level::Debug),
        ]
        .into_iter()
        .find(|(given, _)| *given)
        .map(|(_, l)| l)
    }
}

/// The effective common options (defaults applied; the most specific level wins; debug
/// topics of all levels concatenated).
#[derive(Debug, Clone)]
pub struct CommonOptions {
    pub log_level: Level,
    pub debug_topics: Vec<String>,
    pub progress: bool,
    pub iec: bool,
    pub log_json: bool,
    /// Seconds (default 1).
    pub lock_wait: i64,
    pub bypass_lock: bool,
    pub show_version: bool,
    pub show_rc: bool,
    /// Default 0o077.
    pub umask: u32,
    /// `--remote-path` (None: `BORG_REMOTE_PATH` or `borg`; placeholders not yet expanded).
    pub remote_path: Option<String>,
    /// kiByte/s, None = not given (0 = unlimited).
    pub upload_ratelimit: Option<i64>,
    /// MiB, None = not given.
    pub upload_buffer: Option<i64>,
    pub consider_part_files: bool,
    pub debug_profile: Option<PathBuf>,
    /// `--rsh` (None: `BORG_RSH` or `ssh`).
    pub rsh: Option<String>,
}

impl Default for CommonOptions {
    fn default() -> Self {
        CommonOptions::resolve(&[])
    }
}

impl CommonOptions {
    /// Combine the levels, least specific first.
    pub fn resolve(levels: &[&CommonArgs]) -> CommonOptions {
        fn last<T: Clone>(
            levels: &[&CommonArgs],
            get: impl Fn(&CommonArgs) -> Option<T>,
        ) -> Option<T> {
            levels.iter().rev().find_map(|l| get(l))
        }
        let flag = |get: fn(&CommonArgs) -> bool| levels.iter().any(|l| get(l));
        CommonOptions {
            log_level: last(levels, |l| l.level()).unwrap_or(Level::Warning),
            debug_topics: levels
                .iter()
                .flat_map(|l| l.debug_topics.iter().cloned())
                .collect(),
            progress: flag(|l| l.progress),
            iec: flag(|l| l.iec),
            log_json: flag(|l| l.log_json),
            lock_wait: last(levels, |l| l.lock_wait).unwrap_or(1),
            bypass_lock: flag(|l| l.bypass_lock),
            show_version: flag(|l| l.show_version),
            show_rc: flag(|l| l.show_rc),
            umask: last(levels, |l| l.umask).unwrap_or(0o077),
            remote_path: last(levels, |l| l.remote_path.clone()),
            upload_ratelimit: last(levels, |l| l.upload_ratelimit),
            upload_buffer: last(levels, |l| l.upload_buffer),
            consider_part_files: flag(|l| l.consider_part_files),
            debug_profile: last(levels, |l| l.debug_profile.clone()),
            rsh: last(levels, |l| l.rsh.clone()),
        }
    }
}

// ───────────────────────────── shared option groups ─────────────────────────────

/// `-P/--prefix` and `-a/--glob-archives` (mutually exclusive, each at most once).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Archive filters")]
pub struct ArchiveGlobArgs {
    /// only consider archive names starting with this prefix. (deprecated)
    #[arg(short = 'P', long = "prefix", value_name = "PREFIX", action = ArgAction::Append, conflicts_with = "glob_archives")]
    pub prefix: Option<String>,
    /// only consider archive names matching the glob. sh: rules apply (without actually using the sh: prefix), see "borg help patterns".
    #[arg(short = 'a', long = "glob-archives", value_name = "GLOB", action = ArgAction::Append)]
    pub glob_archives: Option<String>,
}

impl ArchiveGlobArgs {
    /// The effective glob (`--prefix P` is `--glob-archives 'P*'`); placeholders not expanded.
    pub fn glob(&self) -> Option<String> {
        match (&self.prefix, &self.glob_archives) {
            (Some(p), _) => Some(format!("{p}*")),
            (None, g) => g.clone(),
        }
    }
}

/// Archive filters of check, delete, info, list and mount (§7.1).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Archive filters")]
pub struct ArchiveFilterArgs {
    #[command(flatten)]
    pub glob: ArchiveGlobArgs,
    /// Comma-separated list of sorting keys; valid keys are: timestamp, archive, name, id; default is: timestamp
    #[arg(long = "sort-by", value_name = "KEYS", default_value = "timestamp", value_parser = parse_sort_by)]
    pub sort_by: String,
    /// consider first N archives after other filters were applied
    #[arg(long, value_name = "N", value_parser = parse_positive_int, conflicts_with = "last")]
    pub first: Option<u64>,
    /// consider last N archives after other filters were applied
    #[arg(long, value_name = "N", value_parser = parse_positive_int)]
    pub last: Option<u64>,
}

impl ArchiveFilterArgs {
    /// Whether any filter was given (info/delete/check switch to archive mode then).
    pub fn any(&self) -> bool {
        self.glob.prefix.is_some()
            || self.glob.glob_archives.is_some()
            || self.first.is_some()
            || self.last.is_some()
    }

    /// Sort keys in order; `archive` is an alias of `name`.
    pub fn sort_keys(&self) -> Vec<&str> {
        self.sort_by
            .split(',')
            .map(|k| if k == "archive" { "name" } else { k })
            .collect()
    }
}

/// One include/exclude option, in command-line order (order matters: first match wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternOption {
    /// `-e/--exclude PATTERN` (fm: style by default)
    Exclude(OsString),
    /// `--exclude-from EXCLUDEFILE`
    ExcludeFrom(PathBuf),
    /// `--pattern PATTERN` (`+`/`-`/`!`/`R`/`P` prefixed line)
    Pattern(OsString),
    /// `--patterns-from PATTERNFILE`
    PatternsFrom(PathBuf),
}

/// `-e`, `--exclude-from`, `--pattern`, `--patterns-from` (§5.3).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Include/Exclude options")]
pub struct PatternArgs {
    /// exclude paths matching PATTERN
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN", action = ArgAction::Append, value_parser = clap::value_parser!(OsString), allow_hyphen_values = false)]
    pub exclude: Vec<OsString>,
    /// read exclude patterns from EXCLUDEFILE, one per line
    #[arg(long = "exclude-from", value_name = "EXCLUDEFILE", action = ArgAction::Append)]
    pub exclude_from: Vec<PathBuf>,
    /// include/exclude paths matching PATTERN
    #[arg(long = "pattern", value_name = "PATTERN", action = ArgAction::Append, value_parser = clap::value_parser!(OsString))]
    pub pattern: Vec<OsString>,
    /// read include/exclude patterns from PATTERNFILE, one per line
    #[arg(long = "patterns-from", value_name = "PATTERNFILE", action = ArgAction::Append)]
    pub patterns_from: Vec<PathBuf>,
    /// All of the above in command-line order (filled by [`parse`]).
    #[arg(skip)]
    pub ordered: Vec<PatternOption>,
}

impl PatternArgs {
    /// Whether a `--pattern` names a recursion root (`R path` / `r path`).
    pub fn has_root_pattern(&self) -> bool {
        self.pattern.iter().any(|p| {
            let b = p.as_encoded_bytes();
            matches!(b.first(), Some(b'R' | b'r')) && b.len() > 1
        })
    }
}

/// Tag-file exclusion options of create and recreate (§5.5).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Include/Exclude options")]
pub struct ExcludeTagArgs {
    /// exclude directories that contain a CACHEDIR.TAG file (http://www.bford.info/cachedir/spec.html)
    #[arg(long = "exclude-caches")]
    pub exclude_caches: bool,
    /// exclude directories that are tagged by containing a filesystem object with the given NAME
    #[arg(long = "exclude-if-present", value_name = "NAME", action = ArgAction::Append, value_parser = clap::value_parser!(OsString))]
    pub exclude_if_present: Vec<OsString>,
    /// if tag objects are specified with --exclude-if-present, don't omit the tag objects themselves from the backup archive
    #[arg(long = "keep-exclude-tags")]
    pub keep_exclude_tags: bool,
}

// ───────────────────────────── commands ─────────────────────────────

/// The top-level parser.
#[derive(Parser, Debug)]
#[command(
    name = "borg",
    about = "Borg - Deduplicated Backups",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// show version number and exit
    #[arg(short = 'V', long = "version")]
    version: bool,
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// A borg command with its arguments (names as in borg's help).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// benchmark command
    Benchmark(BenchmarkArgs),
    /// Break the repository lock (e.g. in case it was left by a dead borg.
    #[command(name = "break-lock")]
    BreakLock(BreakLockArgs),
    /// verify repository
    Check(CheckArgs),
    /// compact segment files / free space in repo
    Compact(CompactArgs),
    /// get, set, and delete values in a repository or cache config file
    Config(ConfigArgs),
    /// create backup
    Create(CreateArgs),
    /// debugging command (not intended for normal use)
    Debug(DebugArgs),
    /// delete archive
    Delete(DeleteArgs),
    /// find differences in archive contents
    Diff(DiffArgs),
    /// create tarball from archive
    #[command(name = "export-tar")]
    ExportTar(ExportTarArgs),
    /// extract archive contents
    Extract(ExtractArgs),
    /// Extra help
    Help(HelpArgs),
    /// show repository or archive information
    Info(InfoArgs),
    /// display borg client version / borg server version
    Version(VersionArgs),
    /// initialize empty repository
    Init(InitArgs),
    /// manage repository key
    Key(KeyArgs),
    /// list archive or repository contents
    List(ListArgs),
    /// mount repository
    Mount(MountArgs),
    /// prune archives
    Prune(PruneArgs),
    /// recreate archives
    Recreate(RecreateArgs),
    /// rename archive
    Rename(RenameArgs),
    /// start repository server process
    Serve(ServeArgs),
    /// umount repository
    Umount(UmountArgs),
    /// upgrade repository format
    Upgrade(UpgradeArgs),
    /// run user command with lock held
    #[command(name = "with-lock")]
    WithLock(WithLockArgs),
    /// Create a backup archive from a tarball
    #[command(name = "import-tar")]
    ImportTar(ImportTarArgs),
}

#[derive(Args, Debug)]
pub struct BenchmarkArgs {
    #[command(subcommand)]
    pub command: Option<BenchmarkCommand>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Subcommand, Debug)]
pub enum BenchmarkCommand {
    /// benchmarks borg CRUD (create, extract, update, delete).
    Crud(BenchmarkCrudArgs),
}

#[derive(Args, Debug)]
pub struct BenchmarkCrudArgs {
    /// repository to use for benchmark (must exist)
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// path were to create benchmark input data
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct BreakLockArgs {
    /// repository for which to break the locks
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// repository or archive to check consistency of
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    pub location: Option<String>,
    /// only perform repository checks
    #[arg(long = "repository-only")]
    pub repo_only: bool,
    /// only perform archives checks
    #[arg(long = "archives-only")]
    pub archives_only: bool,
    /// perform cryptographic archive data integrity verification (conflicts with --repository-only)
    #[arg(long = "verify-data")]
    pub verify_data: bool,
    /// attempt to repair any inconsistencies found
    #[arg(long)]
    pub repair: bool,
    /// work slower, but using less space
    #[arg(long = "save-space")]
    pub save_space: bool,
    /// do only a partial repo check for max. SECONDS seconds (Default: unlimited)
    #[arg(long = "max-duration", value_name = "SECONDS", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub max_duration: i64,
    #[command(flatten)]
    pub filter: ArchiveFilterArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// repository to compact
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    /// do nothing
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// cleanup commit-only 17-byte segment files
    #[arg(long = "cleanup-commits")]
    pub cleanup_commits: bool,
    /// set minimum threshold for saved space in PERCENT (Default: 10)
    #[arg(long, value_name = "PERCENT", default_value = "10", value_parser = parse_int, allow_negative_numbers = true)]
    pub threshold: i64,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// get and set values from the repo cache
    #[arg(short = 'c', long)]
    pub cache: bool,
    /// delete the key from the config file
    #[arg(short = 'd', long, conflicts_with = "list")]
    pub delete: bool,
    /// list the configuration of the repo
    #[arg(short = 'l', long)]
    pub list: bool,
    /// repository to configure
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    /// name of config key
    #[arg(value_name = "NAME", allow_negative_numbers = true)]
    pub name: Option<String>,
    /// new value for key
    // argparse takes `-5` as a positional value (the parser has no numeric options)
    #[arg(value_name = "VALUE", allow_negative_numbers = true)]
    pub value: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// do not create a backup archive
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// print statistics for the created archive
    #[arg(short = 's', long)]
    pub stats: bool,
    /// print statistics for the created archive, without the repository-wide statistics
    #[arg(long = "quick-stats")]
    pub quick_stats: bool,
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    pub output_list: bool,
    /// only display items with the given status characters (see description)
    #[arg(long = "filter", value_name = "STATUSCHARS", action = ArgAction::Append)]
    pub output_filter: Option<String>,
    /// output stats as JSON. Implies --stats.
    #[arg(long)]
    pub json: bool,
    /// experimental: do not synchronize the cache. Implies not using the files cache.
    #[arg(long = "no-cache-sync")]
    pub no_cache_sync: bool,
    /// use NAME in archive for stdin data (default: 'stdin')
    #[arg(long = "stdin-name", value_name = "NAME", default_value = "stdin")]
    pub stdin_name: String,
    /// set user USER in archive for stdin data (default: name of uid 0)
    #[arg(long = "stdin-user", value_name = "USER")]
    pub stdin_user: Option<String>,
    /// set group GROUP in archive for stdin data (default: name of gid 0)
    #[arg(long = "stdin-group", value_name = "GROUP")]
    pub stdin_group: Option<String>,
    /// set mode to M in archive for stdin data (default: 0660)
    #[arg(long = "stdin-mode", value_name = "M", default_value = "0660", value_parser = parse_octal)]
    pub stdin_mode: u32,
    /// interpret PATH as command and store its stdout. See also section Reading from stdin below.
    #[arg(long = "content-from-command")]
    pub content_from_command: bool,
    /// read DELIM-separated list of paths to back up from stdin. All control is external: it will back up all files given - no more, no less.
    #[arg(long = "paths-from-stdin")]
    pub paths_from_stdin: bool,
    /// interpret PATH as command and treat its output as --paths-from-stdin
    #[arg(long = "paths-from-command")]
    pub paths_from_command: bool,
    /// set path delimiter for --paths-from-stdin and --paths-from-command (default: \n)
    #[arg(long = "paths-delimiter", value_name = "DELIM")]
    pub paths_delimiter: Option<String>,
    /// name of archive to create (must be also a valid directory name)
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    /// paths to archive
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    #[command(flatten)]
    pub patterns: PatternArgs,
    #[command(flatten)]
    pub tags: ExcludeTagArgs,
    /// exclude files flagged NODUMP
    #[arg(long = "exclude-nodump", help_heading = "Include/Exclude options")]
    pub exclude_nodump: bool,
    /// exclude files flagged DATALESS (macOS)
    #[arg(long = "exclude-dataless", help_heading = "Include/Exclude options")]
    pub exclude_dataless: bool,
    /// stay in the same file system and do not store mount points of other file systems
    #[arg(
        short = 'x',
        long = "one-file-system",
        help_heading = "Filesystem options"
    )]
    pub one_file_system: bool,
    /// only store numeric user and group identifiers (--numeric-owner is deprecated)
    #[arg(
        long = "numeric-ids",
        visible_alias = "numeric-owner",
        help_heading = "Filesystem options"
    )]
    pub numeric_ids: bool,
    /// do not store atime into archive (deprecated: this is the default now)
    #[arg(long, help_heading = "Filesystem options")]
    pub noatime: bool,
    /// do store atime into archive
    #[arg(long, help_heading = "Filesystem options")]
    pub atime: bool,
    /// do not store ctime into archive
    #[arg(long, help_heading = "Filesystem options")]
    pub noctime: bool,
    /// do not store birthtime (creation date) into archive
    #[arg(long, help_heading = "Filesystem options")]
    pub nobirthtime: bool,
    /// do not read and store flags (e.g. NODUMP, IMMUTABLE) into archive (--nobsdflags is deprecated)
    #[arg(
        long,
        visible_alias = "nobsdflags",
        help_heading = "Filesystem options"
    )]
    pub noflags: bool,
    /// do not read and store ACLs into archive
    #[arg(long, help_heading = "Filesystem options")]
    pub noacls: bool,
    /// do not read and store xattrs into archive
    #[arg(long, help_heading = "Filesystem options")]
    pub noxattrs: bool,
    /// detect sparse holes in input (supported only by fixed chunker)
    #[arg(long, help_heading = "Filesystem options")]
    pub sparse: bool,
    /// operate files cache in MODE. default: ctime,size,inode. Stored as borg's short code
    /// (letters in alphabetical order, e.g. "cis").
    #[arg(long = "files-cache", value_name = "MODE", default_value = "ctime,size,inode", value_parser = parse_files_cache_mode, action = ArgAction::Append, help_heading = "Filesystem options")]
    pub files_cache: Option<String>,
    /// specify how to detect if a file has changed during backup (ctime, mtime, disabled). default: "ctime"
    #[arg(long = "files-changed", value_name = "MODE", default_value = "ctime", value_parser = PossibleValuesParser::new(["ctime", "mtime", "disabled"]), action = ArgAction::Append, help_heading = "Filesystem options")]
    pub files_changed: Option<String>,
    /// open and read block and char device files as well as FIFOs as if they were regular files. Also follows symlinks pointing to these kinds of files.
    #[arg(long = "read-special", help_heading = "Filesystem options")]
    pub read_special: bool,
    /// add a comment text to the archive (placeholders not yet expanded)
    #[arg(
        long,
        value_name = "COMMENT",
        default_value = "",
        help_heading = "Archive options"
    )]
    pub comment: String,
    /// manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format). Alternatively, give a reference file/directory.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp, help_heading = "Archive options")]
    pub timestamp: Option<DateTime<Utc>>,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(short = 'c', long = "checkpoint-interval", value_name = "SECONDS", default_value = "1800", value_parser = parse_int, allow_negative_numbers = true, help_heading = "Archive options")]
    pub checkpoint_interval: i64,
    /// specify the chunker parameters (ALGO, CHUNK_MIN_EXP, CHUNK_MAX_EXP, HASH_MASK_BITS, HASH_WINDOW_SIZE). default: buzhash,19,23,21,4095
    #[arg(long = "chunker-params", value_name = "PARAMS", default_value = "buzhash,19,23,21,4095", action = ArgAction::Append, help_heading = "Archive options")]
    pub chunker_params: Option<String>,
    /// select compression algorithm, see the output of the "borg help compression" command for details.
    #[arg(
        short = 'C',
        long = "compression",
        value_name = "COMPRESSION",
        default_value = "lz4",
        help_heading = "Archive options"
    )]
    pub compression: String,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub command: Option<DebugCommand>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

/// `borg debug …` developer tools.
#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// show system infos for debugging / bug reports (debug)
    Info(DebugInfoArgs),
    /// dump archive items (metadata) (debug)
    #[command(name = "dump-archive-items")]
    DumpArchiveItems(DebugArchiveArgs),
    /// dump decoded archive metadata (debug)
    #[command(name = "dump-archive")]
    DumpArchive(DebugArchivePathArgs),
    /// dump decoded repository metadata (debug)
    #[command(name = "dump-manifest")]
    DumpManifest(DebugRepoPathArgs),
    /// dump repo objects (debug)
    #[command(name = "dump-repo-objs")]
    DumpRepoObjs(DebugDumpRepoObjsArgs),
    /// search repo objects (debug)
    #[command(name = "search-repo-objs")]
    SearchRepoObjs(DebugSearchRepoObjsArgs),
    /// compute id-hash for some file content (debug)
    #[command(name = "id-hash")]
    IdHash(DebugRepoPathArgs),
    /// get object contents from the repository and write it into file (debug)
    #[command(name = "get-obj")]
    GetObj(DebugObjPathArgs),
    /// put file contents into the repository (debug)
    #[command(name = "put-obj")]
    PutObj(DebugObjPathArgs),
    /// delete object from the repository (debug)
    #[command(name = "delete-obj")]
    DeleteObj(DebugObjIdsArgs),
    /// show refcount for object from repository (debug)
    #[command(name = "refcount-obj")]
    RefcountObj(DebugObjIdsArgs),
    /// dump repository hints (debug)
    #[command(name = "dump-hints")]
    DumpHints(DebugRepoPathArgs),
    /// convert Borg profile to Python profile (debug)
    #[command(name = "convert-profile")]
    ConvertProfile(DebugConvertProfileArgs),
}

#[derive(Args, Debug)]
pub struct DebugInfoArgs {
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugArchiveArgs {
    /// archive to dump
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugArchivePathArgs {
    /// archive to dump
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    /// file to dump data into
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugRepoPathArgs {
    /// repository
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// file to read from / dump data into
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugDumpRepoObjsArgs {
    /// repository to dump
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// dump all segment file contents, including deleted/uncommitted objects and commits.
    #[arg(long)]
    pub ghost: bool,
    /// used together with --ghost: limit processing to given segment.
    #[arg(long, value_name = "SEG", value_parser = parse_positive_int)]
    pub segment: Option<u64>,
    /// used together with --ghost: limit processing to given offset.
    #[arg(long, value_name = "OFFS", value_parser = parse_positive_int)]
    pub offset: Option<u64>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugSearchRepoObjsArgs {
    /// repository to search
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// term to search the repo for, either 0x1234abcd hex term or a string
    #[arg(value_name = "WANTED")]
    pub wanted: String,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugObjPathArgs {
    /// repository to use
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// hex object ID
    #[arg(value_name = "ID")]
    pub id: String,
    /// file to read from / write to
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugObjIdsArgs {
    /// repository to use
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// hex object ID(s)
    #[arg(value_name = "IDs", required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DebugConvertProfileArgs {
    /// Borg profile
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    /// Output file
    #[arg(value_name = "OUTPUT")]
    pub output: PathBuf,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// do not change repository
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// output verbose list of archives
    #[arg(long = "list")]
    pub output_list: bool,
    /// print statistics for the deleted archive
    #[arg(short = 's', long)]
    pub stats: bool,
    /// print statistics for the deleted archive, without the repository-wide statistics
    #[arg(long = "quick-stats")]
    pub quick_stats: bool,
    /// delete only the local cache for the given repository
    #[arg(long = "cache-only")]
    pub cache_only: bool,
    /// force deletion of corrupted archives, use "--force --force" in case "--force" does not work.
    #[arg(long = "force", action = ArgAction::Count)]
    pub forced: u8,
    /// keep the local security info when deleting a repository
    #[arg(long = "keep-security-info")]
    pub keep_security_info: bool,
    /// work slower, but using less space
    #[arg(long = "save-space")]
    pub save_space: bool,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(short = 'c', long = "checkpoint-interval", value_name = "SECONDS", default_value = "1800", value_parser = parse_int, allow_negative_numbers = true)]
    pub checkpoint_interval: i64,
    /// repository or archive to delete
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    pub location: Option<String>,
    /// archives to delete
    #[arg(value_name = "ARCHIVE")]
    pub archives: Vec<String>,
    #[command(flatten)]
    pub filter: ArchiveFilterArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// only consider numeric user and group identifiers (--numeric-owner is deprecated)
    #[arg(long = "numeric-ids", visible_alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// Override check of chunker parameters.
    #[arg(long = "same-chunker-params")]
    pub same_chunker_params: bool,
    /// Sort the output lines by file path (deprecated, use --sort-by=path).
    #[arg(long)]
    pub sort: bool,
    /// Advanced sorting: specify field(s) to sort by. Accepts a comma-separated list. Prefix with > for descending or < for ascending (default).
    #[arg(long = "sort-by", value_name = "FIELDS", value_parser = parse_diff_sort_by, action = ArgAction::Append)]
    pub sort_by: Option<String>,
    /// Only compare differences in content (exclude metadata differences)
    #[arg(long = "content-only")]
    pub content_only: bool,
    /// Format output as JSON Lines.
    #[arg(long = "json-lines")]
    pub json_lines: bool,
    /// repository location and ARCHIVE1 name
    #[arg(value_name = "REPO::ARCHIVE1")]
    pub location: String,
    /// ARCHIVE2 name (no repository location allowed)
    #[arg(value_name = "ARCHIVE2")]
    pub archive2: String,
    /// paths of items inside the archives to compare; patterns are supported
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    #[command(flatten)]
    pub patterns: PatternArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ExportTarArgs {
    /// filter program to pipe data through
    #[arg(long = "tar-filter", default_value = "auto")]
    pub tar_filter: String,
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    pub output_list: bool,
    /// archive to export
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    /// output tar file. "-" to write to stdout instead.
    #[arg(value_name = "FILE", value_parser = clap::value_parser!(OsString))]
    pub tarfile: OsString,
    /// paths to extract; patterns are supported
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    #[command(flatten)]
    pub patterns: PatternArgs,
    /// Remove the specified number of leading path elements. Paths with fewer elements will be silently skipped.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value = "0", value_parser = parse_int, allow_negative_numbers = true, help_heading = "Include/Exclude options")]
    pub strip_components: i64,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    pub output_list: bool,
    /// do not actually change any files
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// only obey numeric user and group identifiers (--numeric-owner is deprecated)
    #[arg(long = "numeric-ids", visible_alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// do not extract/set flags (e.g. NODUMP, IMMUTABLE) (--nobsdflags is deprecated)
    #[arg(long, visible_alias = "nobsdflags")]
    pub noflags: bool,
    /// do not extract/set ACLs
    #[arg(long)]
    pub noacls: bool,
    /// do not extract/set xattrs
    #[arg(long)]
    pub noxattrs: bool,
    /// write all extracted data to stdout
    #[arg(long)]
    pub stdout: bool,
    /// create holes in output sparse file from all-zero chunks
    #[arg(long)]
    pub sparse: bool,
    /// archive to extract
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    /// paths to extract; patterns are supported
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    #[command(flatten)]
    pub patterns: PatternArgs,
    /// Remove the specified number of leading path elements. Paths with fewer elements will be silently skipped.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value = "0", value_parser = parse_int, allow_negative_numbers = true, help_heading = "Include/Exclude options")]
    pub strip_components: i64,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct HelpArgs {
    #[arg(long = "epilog-only", hide = true)]
    pub epilog_only: bool,
    #[arg(long = "usage-only", hide = true)]
    pub usage_only: bool,
    /// additional help on TOPIC
    #[arg(value_name = "TOPIC")]
    pub topic: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// repository or archive to display information about
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    pub location: Option<String>,
    /// format output as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: ArchiveFilterArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// repository (used to determine client/server situation)
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

/// Key modes accepted by `init -e`.
pub const ENCRYPTION_MODES: [&str; 7] = [
    "none",
    "keyfile",
    "repokey",
    "authenticated",
    "keyfile-blake2",
    "repokey-blake2",
    "authenticated-blake2",
];

#[derive(Args, Debug)]
pub struct InitArgs {
    /// repository to create
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    /// select encryption key mode **(required)**
    #[arg(short = 'e', long = "encryption", value_name = "MODE", required = true, value_parser = PossibleValuesParser::new(ENCRYPTION_MODES))]
    pub encryption: String,
    /// create an append-only mode repository.
    #[arg(long = "append-only")]
    pub append_only: bool,
    /// Set storage quota of the new repository (e.g. 5G, 1.5T). Default: no quota.
    #[arg(long = "storage-quota", value_name = "QUOTA", value_parser = parse_storage_quota)]
    pub storage_quota: Option<u64>,
    /// create the parent directories of the repository directory, if they are missing.
    #[arg(long = "make-parent-dirs")]
    pub make_parent_dirs: bool,
    /// import related secrets (id key, chunker seed) from the JSON file at PATH
    #[arg(long = "import-related-secrets", value_name = "PATH", value_parser = non_empty_path())]
    pub import_related_secrets: Option<OsString>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: Option<KeyCommand>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// export repository key for backup
    Export(KeyExportArgs),
    /// export related secrets (id key, chunker seed)
    #[command(name = "export-related-secrets")]
    ExportRelatedSecrets(KeyExportRelatedSecretsArgs),
    /// import repository key from backup
    Import(KeyImportArgs),
    /// change repository passphrase
    #[command(name = "change-passphrase")]
    ChangePassphrase(KeyRepoArgs),
    /// migrate passphrase-mode repository to repokey
    #[command(name = "migrate-to-repokey")]
    MigrateToRepokey(KeyRepoArgs),
}

#[derive(Args, Debug)]
pub struct KeyExportArgs {
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    /// where to store the backup
    #[arg(value_name = "PATH")]
    pub path: Option<OsString>,
    /// Create an export suitable for printing and later type-in
    #[arg(long)]
    pub paper: bool,
    /// Create an html file suitable for printing and later type-in or qr scan
    #[arg(long = "qr-html")]
    pub qr_html: bool,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct KeyExportRelatedSecretsArgs {
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    /// where to store the related secrets
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub path: Option<OsString>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct KeyImportArgs {
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    /// path to the backup ('-' to read from stdin)
    #[arg(value_name = "PATH")]
    pub path: Option<OsString>,
    /// interactively import from a backup done with --paper
    #[arg(long)]
    pub paper: bool,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct KeyRepoArgs {
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Show checkpoint archives in the repository contents list (default: hidden).
    #[arg(long = "consider-checkpoints")]
    pub consider_checkpoints: bool,
    /// only print file/directory names, nothing else
    #[arg(long)]
    pub short: bool,
    /// specify format for file or archive listing (default for files: "{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}{NL}"; for archives: "{archive:<36} {time} [{id}]{NL}")
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only valid for listing repository contents. Format output as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only valid for listing archive contents. Format output as JSON Lines.
    #[arg(long = "json-lines")]
    pub json_lines: bool,
    /// repository or archive to list contents of
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    pub location: Option<String>,
    /// paths to list; patterns are supported
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    #[command(flatten)]
    pub filter: ArchiveFilterArgs,
    #[command(flatten)]
    pub patterns: PatternArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// repository or archive to mount
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    pub location: String,
    /// Show checkpoint archives in the repository contents list (default: hidden).
    #[arg(long = "consider-checkpoints")]
    pub consider_checkpoints: bool,
    /// where to mount filesystem
    #[arg(value_name = "MOUNTPOINT", value_parser = clap::value_parser!(OsString))]
    pub mountpoint: OsString,
    /// stay in foreground, do not daemonize
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Extra mount options
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    pub options: Option<String>,
    /// use numeric user and group identifiers from archive(s) (--numeric-owner is deprecated)
    #[arg(long = "numeric-ids", visible_alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// paths to extract; patterns are supported
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    /// Remove the specified number of leading path elements. Paths with fewer elements will be silently skipped.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value = "0", value_parser = parse_int, allow_negative_numbers = true, help_heading = "Include/Exclude options")]
    pub strip_components: i64,
    #[command(flatten)]
    pub filter: ArchiveFilterArgs,
    #[command(flatten)]
    pub patterns: PatternArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// do not change repository
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// force pruning of corrupted archives, use "--force --force" in case "--force" does not work.
    #[arg(long = "force")]
    pub forced: bool,
    /// print statistics for the deleted archive
    #[arg(short = 's', long)]
    pub stats: bool,
    /// print statistics for the deleted archive, without the repository-wide statistics
    #[arg(long = "quick-stats")]
    pub quick_stats: bool,
    /// output verbose list of archives it keeps/prunes
    #[arg(long = "list")]
    pub output_list: bool,
    /// keep all archives within this time interval; stored in hours
    #[arg(long = "keep-within", value_name = "INTERVAL", value_parser = parse_interval)]
    pub within: Option<i64>,
    /// number of secondly archives to keep
    #[arg(long = "keep-last", visible_alias = "keep-secondly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub secondly: i64,
    /// number of minutely archives to keep
    #[arg(long = "keep-minutely", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub minutely: i64,
    /// number of hourly archives to keep
    #[arg(short = 'H', long = "keep-hourly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub hourly: i64,
    /// number of daily archives to keep
    #[arg(short = 'd', long = "keep-daily", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub daily: i64,
    /// number of weekly archives to keep
    #[arg(short = 'w', long = "keep-weekly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub weekly: i64,
    /// number of monthly archives to keep
    #[arg(short = 'm', long = "keep-monthly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub monthly: i64,
    /// number of quarterly archives to keep (13 week strategy)
    #[arg(long = "keep-13weekly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true, conflicts_with = "quarterly_3monthly")]
    pub quarterly_13weekly: i64,
    /// number of quarterly archives to keep (3 month strategy)
    #[arg(long = "keep-3monthly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub quarterly_3monthly: i64,
    /// number of yearly archives to keep
    #[arg(short = 'y', long = "keep-yearly", default_value = "0", value_parser = parse_int, allow_negative_numbers = true)]
    pub yearly: i64,
    /// work slower, but using less space
    #[arg(long = "save-space")]
    pub save_space: bool,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(short = 'c', long = "checkpoint-interval", value_name = "SECONDS", default_value = "1800", value_parser = parse_int, allow_negative_numbers = true)]
    pub checkpoint_interval: i64,
    /// repository to prune
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    #[command(flatten)]
    pub glob: ArchiveGlobArgs,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

/// `--recompress` modes.
pub const RECOMPRESS_MODES: [&str; 3] = ["never", "if-different", "always"];

#[derive(Args, Debug)]
pub struct RecreateArgs {
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    pub output_list: bool,
    /// only display items with the given status characters (listed in borg create --help)
    #[arg(long = "filter", value_name = "STATUSCHARS", action = ArgAction::Append)]
    pub output_filter: Option<String>,
    /// do not change anything
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// print statistics at end
    #[arg(short = 's', long)]
    pub stats: bool,
    /// repository or archive to recreate
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    pub location: Option<String>,
    /// paths to recreate; patterns are supported
    #[arg(value_name = "PATH", value_parser = non_empty_path())]
    pub paths: Vec<OsString>,
    #[command(flatten)]
    pub patterns: PatternArgs,
    #[command(flatten)]
    pub tags: ExcludeTagArgs,
    /// create a new archive with the name ARCHIVE, do not replace existing archive (only applies for a single archive)
    #[arg(long, value_name = "TARGET", value_parser = parse_archive_name, help_heading = "Archive options")]
    pub target: Option<String>,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(short = 'c', long = "checkpoint-interval", value_name = "SECONDS", default_value = "1800", value_parser = parse_int, allow_negative_numbers = true, help_heading = "Archive options")]
    pub checkpoint_interval: i64,
    /// add a comment text to the archive (None: unchanged; placeholders not yet expanded)
    #[arg(long, value_name = "COMMENT", help_heading = "Archive options")]
    pub comment: Option<String>,
    /// manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format). alternatively, give a reference file/directory.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp, help_heading = "Archive options")]
    pub timestamp: Option<DateTime<Utc>>,
    /// select compression algorithm, see the output of the "borg help compression" command for details.
    #[arg(
        short = 'C',
        long = "compression",
        value_name = "COMPRESSION",
        default_value = "lz4",
        value_parser = parse_compression_spec,
        help_heading = "Archive options"
    )]
    pub compression: String,
    /// recompress data chunks according to MODE and --compression. Possible modes are if-different, always, never. If no MODE is given, if-different will be used.
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_value = "never", default_missing_value = "if-different", value_parser = PossibleValuesParser::new(RECOMPRESS_MODES), help_heading = "Archive options")]
    pub recompress: String,
    /// rechunk using given chunker parameters (ALGO, CHUNK_MIN_EXP, CHUNK_MAX_EXP, HASH_MASK_BITS, HASH_WINDOW_SIZE) or `default` to use the chunker defaults. default: do not rechunk
    #[arg(long = "chunker-params", value_name = "PARAMS", action = ArgAction::Append, value_parser = parse_chunker_params, help_heading = "Archive options")]
    pub chunker_params: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    /// archive to rename
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    /// the new archive name to use
    #[arg(value_name = "NEWNAME")]
    pub name: String,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// restrict repository access to PATH. Can be specified multiple times to allow the client access to several directories.
    #[arg(long = "restrict-to-path", value_name = "PATH", action = ArgAction::Append)]
    pub restrict_to_paths: Vec<PathBuf>,
    /// restrict repository access. Only the repository located at PATH (no sub-directories are considered) is accessible.
    #[arg(long = "restrict-to-repository", value_name = "PATH", action = ArgAction::Append)]
    pub restrict_to_repositories: Vec<PathBuf>,
    /// only allow appending to repository segment files.
    #[arg(long = "append-only")]
    pub append_only: bool,
    /// Override storage quota of the repository (e.g. 5G, 1.5T).
    #[arg(long = "storage-quota", value_name = "QUOTA", value_parser = parse_storage_quota)]
    pub storage_quota: Option<u64>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// mountpoint of the filesystem to umount
    #[arg(value_name = "MOUNTPOINT", value_parser = clap::value_parser!(OsString))]
    pub mountpoint: OsString,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// do not change repository
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// rewrite repository in place, with no chance of going back to older versions of the repository.
    #[arg(long)]
    pub inplace: bool,
    /// Force upgrade
    #[arg(long)]
    pub force: bool,
    /// Enable manifest authentication (in key and cache) (Borg 1.0.9 and later).
    #[arg(long)]
    pub tam: bool,
    /// check manifest authentication (in key and cache).
    #[arg(long = "check-tam")]
    pub check_tam: bool,
    /// Disable manifest authentication (in key and cache).
    #[arg(long = "disable-tam")]
    pub disable_tam: bool,
    /// check TAM authentication for all archives.
    #[arg(long = "check-archives-tam")]
    pub check_archives_tam: bool,
    /// add TAM authentication for all archives.
    #[arg(long = "archives-tam")]
    pub archives_tam: bool,
    /// path to the repository to be upgraded
    #[arg(value_name = "REPOSITORY")]
    pub location: Option<String>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct WithLockArgs {
    /// repository to lock
    #[arg(value_name = "REPOSITORY")]
    pub location: String,
    /// command to run, then its arguments (everything after COMMAND is passed on verbatim)
    #[arg(value_name = "COMMAND", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

impl WithLockArgs {
    /// The program to run.
    pub fn program(&self) -> &OsStr {
        self.command
            .first()
            .map(|s| s.as_os_str())
            .unwrap_or_default()
    }

    /// Its arguments.
    pub fn args(&self) -> &[OsString] {
        self.command.get(1..).unwrap_or_default()
    }
}

#[derive(Args, Debug)]
pub struct ImportTarArgs {
    /// filter program to pipe data through
    #[arg(long = "tar-filter", default_value = "auto", action = ArgAction::Append)]
    pub tar_filter: Option<String>,
    /// print statistics for the created archive
    #[arg(short = 's', long)]
    pub stats: bool,
    /// print statistics for the created archive, without the repository-wide statistics
    #[arg(long = "quick-stats")]
    pub quick_stats: bool,
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    pub output_list: bool,
    /// only display items with the given status characters
    #[arg(long = "filter", value_name = "STATUSCHARS", action = ArgAction::Append)]
    pub output_filter: Option<String>,
    /// output stats as JSON (implies --stats)
    #[arg(long)]
    pub json: bool,
    /// ignore zero-filled blocks in the input tarball
    #[arg(long = "ignore-zeros")]
    pub ignore_zeros: bool,
    /// add a comment text to the archive (placeholders not yet expanded)
    #[arg(
        long,
        value_name = "COMMENT",
        default_value = "",
        help_heading = "Archive options"
    )]
    pub comment: String,
    /// manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format). alternatively, give a reference file/directory.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp, help_heading = "Archive options")]
    pub timestamp: Option<DateTime<Utc>>,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(short = 'c', long = "checkpoint-interval", value_name = "SECONDS", default_value = "1800", value_parser = parse_int, allow_negative_numbers = true, help_heading = "Archive options")]
    pub checkpoint_interval: i64,
    /// specify the chunker parameters (ALGO, CHUNK_MIN_EXP, CHUNK_MAX_EXP, HASH_MASK_BITS, HASH_WINDOW_SIZE). default: buzhash,19,23,21,4095
    #[arg(long = "chunker-params", value_name = "PARAMS", default_value = "buzhash,19,23,21,4095", action = ArgAction::Append, help_heading = "Archive options")]
    pub chunker_params: Option<String>,
    /// select compression algorithm, see the output of the "borg help compression" command for details.
    #[arg(
        short = 'C',
        long = "compression",
        value_name = "COMPRESSION",
        default_value = "lz4",
        help_heading = "Archive options"
    )]
    pub compression: String,
    /// name of archive to create (must be also a valid directory name)
    #[arg(value_name = "ARCHIVE")]
    pub location: String,
    /// input tar file. "-" to read from stdin instead.
    #[arg(value_name = "TARFILE", value_parser = clap::value_parser!(OsString))]
    pub tarfile: OsString,
    #[command(flatten)]
    pub level_common: CommonArgs,
}

impl Command {
    /// borg's command name (`export-tar`, `key`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Benchmark(_) => "benchmark",
            Command::BreakLock(_) => "break-lock",
            Command::Check(_) => "check",
            Command::Compact(_) => "compact",
            Command::Config(_) => "config",
            Command::Create(_) => "create",
            Command::Debug(_) => "debug",
            Command::Delete(_) => "delete",
            Command::Diff(_) => "diff",
            Command::ExportTar(_) => "export-tar",
            Command::Extract(_) => "extract",
            Command::Help(_) => "help",
            Command::Info(_) => "info",
            Command::Version(_) => "version",
            Command::Init(_) => "init",
            Command::Key(_) => "key",
            Command::List(_) => "list",
            Command::Mount(_) => "mount",
            Command::Prune(_) => "prune",
            Command::Recreate(_) => "recreate",
            Command::Rename(_) => "rename",
            Command::Serve(_) => "serve",
            Command::Umount(_) => "umount",
            Command::Upgrade(_) => "upgrade",
            Command::WithLock(_) => "with-lock",
            Command::ImportTar(_) => "import-tar",
        }
    }

    /// `--list` of the commands whose item/archive lines go to `borg.output.list`.
    pub fn output_list(&self) -> bool {
        match self {
            Command::Create(a) => a.output_list,
            Command::Extract(a) => a.output_list,
            Command::ExportTar(a) => a.output_list,
            Command::ImportTar(a) => a.output_list,
            Command::Delete(a) => a.output_list,
            Command::Prune(a) => a.output_list,
            Command::Recreate(a) => a.output_list,
            _ => false,
        }
    }

    /// `--stats`.
    pub fn stats(&self) -> bool {
        match self {
            Command::Create(a) => a.stats,
            Command::ImportTar(a) => a.stats,
            Command::Delete(a) => a.stats,
            Command::Prune(a) => a.stats,
            Command::Recreate(a) => a.stats,
            _ => false,
        }
    }

    /// `--quick-stats`.
    pub fn quick_stats(&self) -> bool {
        match self {
            Command::Create(a) => a.quick_stats,
            Command::ImportTar(a) => a.quick_stats,
            Command::Delete(a) => a.quick_stats,
            Command::Prune(a) => a.quick_stats,
            _ => false,
        }
    }

    /// `-n/--dry-run`.
    pub fn dry_run(&self) -> bool {
        match self {
            Command::Create(a) => a.dry_run,
            Command::Extract(a) => a.dry_run,
            Command::Delete(a) => a.dry_run,
            Command::Prune(a) => a.dry_run,
            Command::Recreate(a) => a.dry_run,
            Command::Compact(a) => a.dry_run,
            Command::Upgrade(a) => a.dry_run,
            _ => false,
        }
    }

    /// borg ignores `--stats`/`--quick-stats` with `--dry-run`; returns the warnings to log.
    pub fn drop_stats_for_dry_run(&mut self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if !self.dry_run() {
            return warnings;
        }
        let (stats, quick): (Option<&mut bool>, Option<&mut bool>) = match self {
            Command::Create(a) => (Some(&mut a.stats), Some(&mut a.quick_stats)),
            Command::Delete(a) => (Some(&mut a.stats), Some(&mut a.quick_stats)),
            Command::Prune(a) => (Some(&mut a.stats), Some(&mut a.quick_stats)),
            Command::Recreate(a) => (Some(&mut a.stats), None),
            _ => (None, None),
        };
        if let Some(s) = stats.filter(|s| **s) {
            *s = false;
            warnings.push("Ignoring --stats. It is not supported when using --dry-run.");
        }
        if let Some(q) = quick.filter(|q| **q) {
            *q = false;
            warnings.push("Ignoring --quick-stats. It is not supported when using --dry-run.");
        }
        warnings
    }

    /// Commands that may run with `--bypass-lock`.
    pub fn bypass_lock_allowed(&self) -> bool {
        matches!(
            self,
            Command::Check(_)
                | Command::Config(_)
                | Command::Diff(_)
                | Command::ExportTar(_)
                | Command::Extract(_)
                | Command::Info(_)
                | Command::List(_)
                | Command::Mount(_)
                | Command::Umount(_)
        )
    }

    /// Common options of the intermediate level (key/benchmark/debug) and the final command.
    fn level_commons(&self) -> Vec<&CommonArgs> {
        match self {
            Command::Benchmark(a) => {
                let mut v = vec![&a.level_common];
                if let Some(BenchmarkCommand::Crud(c)) = &a.command {
                    v.push(&c.level_common);
                }
                v
            }
            Command::Key(a) => {
                let mut v = vec![&a.level_common];
                if let Some(c) = &a.command {
                    v.push(match c {
                        KeyCommand::Export(x) => &x.level_common,
                        KeyCommand::ExportRelatedSecrets(x) => &x.level_common,
                        KeyCommand::Import(x) => &x.level_common,
                        KeyCommand::ChangePassphrase(x) => &x.level_common,
                        KeyCommand::MigrateToRepokey(x) => &x.level_common,
                    });
                }
                v
            }
            Command::Debug(a) => {
                let mut v = vec![&a.level_common];
                if let Some(c) = &a.command {
                    v.push(match c {
                        DebugCommand::Info(x) => &x.level_common,
                        DebugCommand::DumpArchiveItems(x) => &x.level_common,
                        DebugCommand::DumpArchive(x) => &x.level_common,
                        DebugCommand::DumpManifest(x)
                        | DebugCommand::IdHash(x)
                        | DebugCommand::DumpHints(x) => &x.level_common,
                        DebugCommand::DumpRepoObjs(x) => &x.level_common,
                        DebugCommand::SearchRepoObjs(x) => &x.level_common,
                        DebugCommand::GetObj(x) | DebugCommand::PutObj(x) => &x.level_common,
                        DebugCommand::DeleteObj(x) | DebugCommand::RefcountObj(x) => {
                            &x.level_common
                        }
                        DebugCommand::ConvertProfile(x) => &x.level_common,
                    });
                }
                v
            }
            Command::BreakLock(a) => vec![&a.level_common],
            Command::Check(a) => vec![&a.level_common],
            Command::Compact(a) => vec![&a.level_common],
            Command::Config(a) => vec![&a.level_common],
            Command::Create(a) => vec![&a.level_common],
            Command::Delete(a) => vec![&a.level_common],
            Command::Diff(a) => vec![&a.level_common],
            Command::ExportTar(a) => vec![&a.level_common],
            Command::Extract(a) => vec![&a.level_common],
            Command::Help(a) => vec![&a.level_common],
            Command::Info(a) => vec![&a.level_common],
            Command::Version(a) => vec![&a.level_common],
            Command::Init(a) => vec![&a.level_common],
            Command::List(a) => vec![&a.level_common],
            Command::Mount(a) => vec![&a.level_common],
            Command::Prune(a) => vec![&a.level_common],
            Command::Recreate(a) => vec![&a.level_common],
            Command::Rename(a) => vec![&a.level_common],
            Command::Serve(a) => vec![&a.level_common],
            Command::Umount(a) => vec![&a.level_common],
            Command::Upgrade(a) => vec![&a.level_common],
            Command::WithLock(a) => vec![&a.level_common],
            Command::ImportTar(a) => vec![&a.level_common],
        }
    }

    fn patterns_mut(&mut self) -> Option<&mut PatternArgs> {
        match self {
            Command::Create(a) => Some(&mut a.patterns),
            Command::Extract(a) => Some(&mut a.patterns),
            Command::ExportTar(a) => Some(&mut a.patterns),
            Command::Diff(a) => Some(&mut a.patterns),
            Command::List(a) => Some(&mut a.patterns),
            Command::Mount(a) => Some(&mut a.patterns),
            Command::Recreate(a) => Some(&mut a.patterns),
            _ => None,
        }
    }
}

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    pub common: CommonOptions,
    pub command: Command,
}

/// What to print and the exit code when parsing ends the run (help, version, errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliExit {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliExit {
    fn out(text: String) -> CliExit {
        CliExit {
            code: 0,
            stdout: text,
            stderr: String::new(),
        }
    }
}

// ───────────────────────────── parsing ─────────────────────────────

/// Warnings borg prints (plain text, before parsing) for deprecated spellings (§1.3).
pub fn deprecation_warnings(args: &[OsString]) -> Vec<&'static str> {
    const DEPRECATIONS: [(&str, &str); 7] = [
        ("--noatime", "Warning: \"--noatime\" has been deprecated because it is the default now."),
        ("--nobsdflags", "Warning: \"--nobsdflags\" has been deprecated. Use --noflags instead."),
        ("--numeric-owner", "Warning: \"--numeric-owner\" has been deprecated. Use --numeric-ids instead."),
        ("--remote-ratelimit", "Warning: \"--remote-ratelimit\" has been deprecated. Use --upload-ratelimit instead."),
        ("--remote-buffer", "Warning: \"--remote-buffer\" has been deprecated. Use --upload-buffer instead."),
        ("--prefix", "Warning: \"--prefix\" has been deprecated. Use \"--glob-archives 'yourprefix*'\" (-a) instead."),
        ("--sort", "Warning: \"--sort\" is deprecated. Use \"--sort-by=path\" instead."),
    ];
    let mut out = Vec::new();
    for arg in args {
        let arg = arg.as_encoded_bytes();
        for (old, warning) in DEPRECATIONS {
            let old = old.as_bytes();
            if arg == old || (arg.starts_with(old) && arg.get(old.len()) == Some(&b'=')) {
                out.push(warning);
            }
        }
    }
    out
}

/// The clap command tree with argparse-like settings, named `prog`.
pub fn build_command(prog: &str) -> clap::Command {
    fn tweak(cmd: clap::Command) -> clap::Command {
        let cmd = cmd
            .infer_long_args(true)
            .args_override_self(true)
            .disable_version_flag(true)
            .disable_help_subcommand(true)
            .color(ColorChoice::Never);
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        names.iter().fold(cmd, |c, n| c.mut_subcommand(n, tweak))
    }
    tweak(
        Cli::command()
            .name(prog.to_string())
            .bin_name(prog.to_string()),
    )
}

/// Help text of the (sub)command at `path` (e.g. `["key", "export"]`).
pub fn render_help(prog: &str, path: &[&str]) -> Option<String> {
    let mut cmd = build_command(prog);
    cmd.build();
    let mut current = &mut cmd;
    for name in path {
        current = current.find_subcommand_mut(name)?;
    }
    Some(current.render_help().to_string())
}

/// Names of the top-level commands in borg's order.
pub fn command_names() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect()
}

/// Parse a full argv (including argv[0]) as borg does. `prog` is the program name used in
/// messages (basename of argv[0]). Invoked as `borgfs`, the command line is `borg mount`'s.
pub fn parse(argv: &[OsString], prog: &str) -> Result<Invocation, CliExit> {
    let mut args: Vec<OsString> = argv.get(1..).unwrap_or_default().to_vec();
    if prog == "borgfs" {
        args.insert(0, "mount".into());
    }
    let mut cmd = build_command(prog);
    if args.is_empty() {
        return Err(CliExit::out(cmd.render_help().to_string()));
    }
    let mut full = vec![OsString::from(prog)];
    full.extend(args.iter().cloned());
    let path = subcommand_path(&cmd, &args);
    check_ambiguous_prefixes(&mut cmd, prog, &args)?;
    let matches = match cmd.try_get_matches_from_mut(full) {
        Ok(m) => m,
        Err(e) => return Err(clap_error_exit(&e, &mut cmd, prog, &path, &args)),
    };
    check_highlander(&matches, &mut cmd, prog, &path)?;
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| clap_error_exit(&e, &mut cmd, prog, &path, &args))?;
    if cli.version {
        return Err(CliExit::out(format!(
            "{prog} {} (rborg {})\n",
            rborg::BORG_COMPAT_VERSION,
            env!("CARGO_PKG_VERSION")
        )));
    }
    let Some(mut command) = cli.command else {
        return Err(CliExit::out(cmd.render_help().to_string()));
    };
    // `borg key` / `borg benchmark` / `borg debug` without a subcommand: their help.
    let incomplete = match &command {
        Command::Key(a) => a.command.is_none(),
        Command::Benchmark(a) => a.command.is_none(),
        Command::Debug(a) => a.command.is_none(),
        _ => false,
    };
    if incomplete {
        let help = render_help(prog, &[command.name()]).unwrap_or_default();
        return Err(CliExit::out(help));
    }
    if let Some(p) = command.patterns_mut() {
        p.ordered = ordered_patterns(leaf_matches(&matches), p);
    }
    validate(&command, &mut cmd, prog, &path)?;
    let mut levels = vec![&cli.common];
    levels.extend(command.level_commons());
    let common = CommonOptions::resolve(&levels);
    if common.bypass_lock && !command.bypass_lock_allowed() {
        return Err(CliExit {
            code: 2,
            stdout: String::new(),
            stderr: "Error: Not allowed to bypass locking mechanism for chosen command\n".into(),
        });
    }
    Ok(Invocation { common, command })
}

/// `borg serve` started as an ssh forced command: the client's own `borg serve` command line
/// (`SSH_ORIGINAL_COMMAND`) may set `--debug-topic`, `--lock-wait` and the log level; all
/// else comes from the forced command (borg's allowlist).
pub fn apply_forced_command(inv: &mut Invocation, ssh_original_command: &str) {
    if !matches!(inv.command, Command::Serve(_)) {
        return;
    }
    let Some(words) = shlex::split(ssh_original_command) else {
        return;
    };
    let words: Vec<OsString> = words
        .into_iter()
        .skip_while(|w| w.contains('='))
        .map(OsString::from)
        .collect();
    let Some(prog) = words.first().map(|w| w.to_string_lossy().to_string()) else {
        return;
    };
    if let Ok(client) = parse(&words, &prog) {
        if matches!(client.command, Command::Serve(_)) {
            inv.common.debug_topics = client.common.debug_topics;
            inv.common.lock_wait = client.common.lock_wait;
            inv.common.log_level = client.common.log_level;
        }
    }
}

/// The matches of the innermost subcommand.
fn leaf_matches(matches: &ArgMatches) -> &ArgMatches {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m
}

/// The pattern options in command-line order.
fn ordered_patterns(m: &ArgMatches, p: &PatternArgs) -> Vec<PatternOption> {
    let mut indexed: Vec<(usize, PatternOption)> = Vec::new();
    let mut collect = |id: &str, make: &dyn Fn(usize) -> PatternOption| {
        if let Ok(Some(indices)) = m.try_get_raw(id).map(|_| m.indices_of(id)) {
            for (n, idx) in indices.enumerate() {
                indexed.push((idx, make(n)));
            }
        }
    };
    collect("exclude", &|n| PatternOption::Exclude(p.exclude[n].clone()));
    collect("exclude_from", &|n| {
        PatternOption::ExcludeFrom(p.exclude_from[n].clone())
    });
    collect("pattern", &|n| PatternOption::Pattern(p.pattern[n].clone()));
    collect("patterns_from", &|n| {
        PatternOption::PatternsFrom(p.patterns_from[n].clone())
    });
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, o)| o).collect()
}

/// Options that may be given at most once (borg's `Highlander` action), per command.
fn highlander_ids(command: &str) -> &'static [&'static str] {
    match command {
        "create" | "recreate" | "import-tar" => &[
            "output_filter",
            "files_cache",
            "files_changed",
            "chunker_params",
            "tar_filter",
        ],
        "diff" => &["sort_by"],
        "mount" => &["options", "prefix", "glob_archives"],
        "check" | "delete" | "info" | "list" | "prune" => &["prefix", "glob_archives"],
        _ => &[],
    }
}

fn check_highlander(
    matches: &ArgMatches,
    cmd: &mut clap::Command,
    prog: &str,
    path: &[String],
) -> Result<(), CliExit> {
    let Some(command) = path.first() else {
        return Ok(());
    };
    let leaf = leaf_matches(matches);
    for id in highlander_ids(command) {
        // Unknown ids (options this command lacks) are skipped; defaults do not count.
        let Ok(Some(occurrences)) = leaf.try_get_raw_occurrences(id) else {
            continue;
        };
        let given = matches!(
            leaf.value_source(id),
            Some(clap::parser::ValueSource::CommandLine)
        );
        if given && occurrences.count() > 1 {
            let name = find_arg(cmd, path, |a| a.get_id() == *id).map(|a| argparse_name(&a));
            let name = name.unwrap_or_else(|| format!("--{id}"));
            return Err(usage_error(
                cmd,
                prog,
                path,
                &format!("argument {name}: There can be only one."),
            ));
        }
    }
    Ok(())
}

/// Checks borg makes after argparse (`parse_args`).
fn validate(
    command: &Command,
    cmd: &mut clap::Command,
    prog: &str,
    path: &[String],
) -> Result<(), CliExit> {
    // borg raises these through the top-level parser ("borg: error: ...").
    let _ = path;
    let fail = |cmd: &mut clap::Command, msg: &str| Err(usage_error(cmd, prog, &[], msg));
    if let Command::Create(a) = command {
        if !a.paths.is_empty() && a.paths_from_stdin {
            return fail(cmd, "Must not pass PATH with ``--paths-from-stdin``.");
        }
        if a.paths.is_empty() {
            if a.content_from_command || a.paths_from_command {
                return fail(cmd, "No command given.");
            }
            // Roots may also come from patterns (`R path`); files are checked by create.
            let roots_possible =
                a.patterns.has_root_pattern() || !a.patterns.patterns_from.is_empty();
            if !a.paths_from_stdin && !roots_possible {
                return fail(cmd, "Need at least one PATH argument.");
            }
        }
    }
    if command.stats() && command.quick_stats() {
        return fail(cmd, "--stats and --quick-stats are mutually exclusive.");
    }
    Ok(())
}

/// argparse refuses a long-option prefix that fits several options (aliases included),
/// which clap's inference would resolve silently.
fn check_ambiguous_prefixes(
    cmd: &mut clap::Command,
    prog: &str,
    args: &[OsString],
) -> Result<(), CliExit> {
    let mut path: Vec<String> = Vec::new();
    for arg in args {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        let current = find_command(cmd, &path);
        if current.find_subcommand(text).is_some() {
            path.push(text.to_string());
            continue;
        }
        let Some(prefix) = text.strip_prefix("--") else {
            continue;
        };
        let prefix = prefix.split('=').next().unwrap_or(prefix);
        if prefix.is_empty() {
            continue;
        }
        current.build();
        let mut names: Vec<&str> = Vec::new();
        for a in current.get_arguments() {
            names.extend(a.get_long());
            names.extend(a.get_all_aliases().unwrap_or_default());
        }
        if names.contains(&prefix) {
            continue;
        }
        let hits: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| format!("--{n}"))
            .collect();
        if hits.len() > 1 {
            let msg = format!(
                "ambiguous option: --{prefix} could match {}",
                hits.join(", ")
            );
            return Err(usage_error(cmd, prog, &path, &msg));
        }
    }
    Ok(())
}

/// The subcommand names in `args` (e.g. `["key", "export"]`), found by walking the tree.
fn subcommand_path(cmd: &clap::Command, args: &[OsString]) -> Vec<String> {
    let mut path = Vec::new();
    let mut current = cmd;
    for arg in args {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if let Some(sub) = current.find_subcommand(text) {
            path.push(text.to_string());
            current = sub;
        }
    }
    path
}

fn find_command<'a>(cmd: &'a mut clap::Command, path: &[String]) -> &'a mut clap::Command {
    let mut current = cmd;
    for name in path {
        if current.find_subcommand(name).is_none() {
            break;
        }
        current = current.find_subcommand_mut(name).expect("checked above");
    }
    current
}

fn find_arg(
    cmd: &mut clap::Command,
    path: &[String],
    pred: impl Fn(&clap::Arg) -> bool,
) -> Option<clap::Arg> {
    let c = find_command(cmd, path);
    c.build();
    c.get_arguments().find(|a| pred(a)).cloned()
}

/// argparse's name of an option (`-e/--encryption`) or positional (`ARCHIVE`).
fn argparse_name(arg: &clap::Arg) -> String {
    if arg.is_positional() {
        return arg
            .get_value_names()
            .and_then(|v| v.first().map(|s| s.to_string()))
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    }
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("--{l}"));
    }
    if let Some(aliases) = arg.get_visible_aliases() {
        names.extend(aliases.into_iter().map(|a| format!("--{a}")));
    }
    names.join("/")
}

/// Turn clap's display of an argument (`--first <N>`, `<ARCHIVE>`, `-P <PREFIX>`) into
/// argparse's name.
fn display_to_argparse(cmd: &mut clap::Command, path: &[String], display: &str) -> String {
    let token = display.split_whitespace().next().unwrap_or(display);
    if let Some(long) = token.strip_prefix("--") {
        let long = long.split('=').next().unwrap_or(long);
        if let Some(a) = find_arg(cmd, path, |a| {
            a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|v| v.contains(&long))
        }) {
            return argparse_name(&a);
        }
    } else if let Some(short) = token.strip_prefix('-').and_then(|s| s.chars().next()) {
        if let Some(a) = find_arg(cmd, path, |a| a.get_short() == Some(short)) {
            return argparse_name(&a);
        }
    }
    token
        .trim_end_matches("...")
        .trim_matches(['<', '>', '[', ']'])
        .to_string()
}

fn prog_path(prog: &str, path: &[String]) -> String {
    std::iter::once(prog.to_string())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// argparse's error form: usage, then `<prog> <command>: error: <msg>`; rc 2.
fn usage_error(cmd: &mut clap::Command, prog: &str, path: &[String], msg: &str) -> CliExit {
    let sub = find_command(cmd, path);
    sub.build();
    let usage = sub.render_usage().to_string();
    let usage = usage
        .strip_prefix("Usage: ")
        .map(|u| format!("usage: {u}"))
        .unwrap_or(usage);
    CliExit {
        code: 2,
        stdout: String::new(),
        stderr: format!(
            "{}\n{}: error: {}\n",
            usage.trim_end(),
            prog_path(prog, path),
            msg
        ),
    }
}

/// Index of the first argv word that spells the option `name` (`-a/--glob-archives`):
/// the option itself, `--opt=value`, an abbreviation, or a short-option cluster.
fn position_of(args: &[OsString], name: &str) -> Option<usize> {
    args.iter().position(|word| {
        let Some(word) = word.to_str() else {
            return false;
        };
        name.split('/').any(|n| {
            if n.starts_with("--") {
                let w = word.split('=').next().unwrap_or(word);
                w.len() > 2 && w.starts_with("--") && n.starts_with(w)
            } else {
                let short = n.trim_start_matches('-');
                !word.starts_with("--") && word.starts_with('-') && word[1..].starts_with(short)
            }
        })
    })
}

fn context_str(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

fn context_strings(err: &clap::Error, kind: ContextKind) -> Vec<String> {
    match err.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    }
}

/// Render a clap error the way argparse words it.
fn clap_error_exit(
    err: &clap::Error,
    cmd: &mut clap::Command,
    prog: &str,
    path: &[String],
    args: &[OsString],
) -> CliExit {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return CliExit::out(err.to_string());
        }
        ErrorKind::DisplayVersion => return CliExit::out(err.to_string()),
        _ => {}
    }
    let invalid_arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
    let msg = match err.kind() {
        ErrorKind::UnknownArgument => {
            let ambiguous = invalid_arg.strip_prefix("--").and_then(|prefix| {
                let prefix = prefix.split('=').next().unwrap_or(prefix);
                let sub = find_command(cmd, path);
                let mut hits: Vec<String> = sub
                    .get_arguments()
                    .flat_map(|a| {
                        let mut names: Vec<&str> = a.get_long().into_iter().collect();
                        names.extend(a.get_all_aliases().unwrap_or_default());
                        names
                    })
                    .filter(|l| l.starts_with(prefix))
                    .map(|l| format!("--{l}"))
                    .collect();
                hits.dedup();
                (hits.len() > 1).then(|| {
                    format!(
                        "ambiguous option: --{prefix} could match {}",
                        hits.join(", ")
                    )
                })
            });
            ambiguous.unwrap_or_else(|| format!("unrecognized arguments: {invalid_arg}"))
        }
        ErrorKind::InvalidSubcommand => {
            let invalid_arg =
                context_str(err, ContextKind::InvalidSubcommand).unwrap_or(invalid_arg);
            let sub = find_command(cmd, path);
            let choices: Vec<String> = sub
                .get_subcommands()
                .map(|s| python_repr_str(s.get_name(), false))
                .collect();
            format!(
                "argument <command>: invalid choice: {} (choose from {})",
                python_repr_str(&invalid_arg, false),
                choices.join(", ")
            )
        }
        ErrorKind::MissingRequiredArgument => {
            let names: Vec<String> = context_strings(err, ContextKind::InvalidArg)
                .iter()
                .map(|d| display_to_argparse(cmd, path, d))
                .collect();
            format!("the following arguments are required: {}", names.join(", "))
        }
        ErrorKind::MissingSubcommand => {
            "the following arguments are required: <command>".to_string()
        }
        ErrorKind::InvalidValue => {
            let name = display_to_argparse(cmd, path, &invalid_arg);
            let value = context_str(err, ContextKind::InvalidValue).unwrap_or_default();
            let valid = context_strings(err, ContextKind::ValidValue);
            if valid.is_empty() && value.is_empty() {
                format!("argument {name}: expected one argument")
            } else {
                let choices: Vec<String> =
                    valid.iter().map(|v| python_repr_str(v, false)).collect();
                format!(
                    "argument {name}: invalid choice: {} (choose from {})",
                    python_repr_str(&value, false),
                    choices.join(", ")
                )
            }
        }
        ErrorKind::ValueValidation => {
            let name = display_to_argparse(cmd, path, &invalid_arg);
            // The error belongs to the parser level where the option was given.
            if let Some(pos) = position_of(args, &name) {
                let level = subcommand_path(cmd, &args[..pos]);
                if level.len() < path.len() {
                    let detail = std::error::Error::source(err)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return usage_error(cmd, prog, &level, &format!("argument {name}: {detail}"));
                }
            }
            let detail = std::error::Error::source(err)
                .map(|s| s.to_string())
                .unwrap_or_else(|| {
                    let value = context_str(err, ContextKind::InvalidValue).unwrap_or_default();
                    format!("invalid value: {}", python_repr_str(&value, false))
                });
            format!("argument {name}: {detail}")
        }
        ErrorKind::ArgumentConflict => {
            let mut name = display_to_argparse(cmd, path, &invalid_arg);
            let prior = context_str(err, ContextKind::PriorArg).unwrap_or_default();
            let mut prior = display_to_argparse(cmd, path, &prior);
            // argparse blames the option that comes later on the command line.
            if position_of(args, &prior) > position_of(args, &name) {
                std::mem::swap(&mut name, &mut prior);
            }
            format!("argument {name}: not allowed with argument {prior}")
        }
        ErrorKind::NoEquals | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            let name = display_to_argparse(cmd, path, &invalid_arg);
            format!("argument {name}: expected one argument")
        }
        ErrorKind::TooManyValues => {
            let value = context_str(err, ContextKind::InvalidValue).unwrap_or_default();
            format!("unrecognized arguments: {value}")
        }
        ErrorKind::InvalidUtf8 => "invalid (non-UTF-8) argument".to_string(),
        _ => {
            let text = err
                .kind()
                .as_str()
                .map(|s| s.to_string())
                .unwrap_or_else(|| err.to_string());
            text.lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string()
        }
    };
    usage_error(cmd, prog, path, &msg)
}

// ───────────────────────────── value parsers (argparse `type=` functions) ─────────────────────────────

fn repr(s: &str) -> String {
    python_repr_str(s, false)
}

fn parse_int(s: &str) -> Result<i64, String> {
    rborg::python::parse_int(s).ok_or_else(|| format!("invalid int value: {}", repr(s)))
}

/// `-C` of recreate, checked as borg's argparse type does (the text is kept).
fn parse_compression_spec(s: &str) -> Result<String, String> {
    rborg::compress::CompressionSpec::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.message)
}

/// `--chunker-params` of recreate, checked as borg's argparse type does (the text is kept).
fn parse_chunker_params(s: &str) -> Result<String, String> {
    rborg::chunker::ChunkerParams::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.message)
}

/// `--target` of recreate: borg's `archivename_validator` (placeholders expanded).
fn parse_archive_name(s: &str) -> Result<String, String> {
    rborg::location::validate_archive_name(s).map_err(|e| e.message)
}

fn parse_positive_int(s: &str) -> Result<u64, String> {
    let v = rborg::python::parse_int(s)
        .ok_or_else(|| format!("invalid positive_int_validator value: {}", repr(s)))?;
    if v <= 0 {
        return Err(format!("A positive integer is required: {s}"));
    }
    Ok(v as u64)
}

/// `int(s, 8)`.
fn parse_octal(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    u32::from_str_radix(&t.replace('_', ""), 8)
        .map_err(|_| format!("invalid <lambda> value: {}", repr(s)))
}

/// borg's `SortBySpec`: comma list of timestamp, archive, name, id.
fn parse_sort_by(s: &str) -> Result<String, String> {
    for token in s.split(',') {
        if !["timestamp", "archive", "name", "id"].contains(&token) {
            return Err(format!("Invalid sort key: {token}"));
        }
    }
    Ok(s.to_string())
}

/// borg's diff `--sort-by` validator.
fn parse_diff_sort_by(s: &str) -> Result<String, String> {
    const ALLOWED: [&str; 13] = [
        "path",
        "size_added",
        "size_removed",
        "size_diff",
        "size",
        "user",
        "group",
        "uid",
        "gid",
        "ctime",
        "mtime",
        "ctime_diff",
        "mtime_diff",
    ];
    let parts: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("unsupported sort field: empty spec".into());
    }
    for spec in parts {
        let field = spec.strip_prefix(['>', '<']).unwrap_or(spec);
        if !ALLOWED.contains(&field) {
            return Err(format!("unsupported sort field: {field}"));
        }
    }
    Ok(s.to_string())
}

/// borg's `FilesCacheMode`: returns the short code (`ctime,size,inode` → `cis`).
fn parse_files_cache_mode(s: &str) -> Result<String, String> {
    const ENTRIES: [(&str, char); 6] = [
        ("ctime", 'c'),
        ("mtime", 'm'),
        ("size", 's'),
        ("inode", 'i'),
        ("rechunk", 'r'),
        ("disabled", 'd'),
    ];
    const VALID: [&str; 8] = ["cis", "ims", "cs", "ms", "cr", "mr", "d", "s"];
    let mut letters = Vec::new();
    for entry in s.trim().split(',') {
        match ENTRIES.iter().find(|(name, _)| *name == entry) {
            Some((_, c)) => {
                if !letters.contains(c) {
                    letters.push(*c)
                }
            }
            None => {
                return Err("cache mode must be a comma-separated list of: ctime,disabled,inode,mtime,rechunk,size".into())
            }
        }
    }
    letters.sort();
    let mode: String = letters.into_iter().collect();
    if !VALID.contains(&mode.as_str()) {
        return Err(format!(
            "cache mode short must be one of: {}",
            VALID.join(",")
        ));
    }
    Ok(mode)
}

/// borg's `interval`: `<int><H|d|w|m|y>` → hours.
fn parse_interval(s: &str) -> Result<i64, String> {
    let multiplier = |c: char| match c {
        'H' => Some(1),
        'd' => Some(24),
        'w' => Some(24 * 7),
        'm' => Some(24 * 31),
        'y' => Some(24 * 365),
        _ => None,
    };
    let last = s.chars().last();
    let Some(factor) = last.and_then(multiplier) else {
        let unit = last.map(|c| c.to_string()).unwrap_or_default();
        return Err(format!(
            "Unexpected interval time unit \"{unit}\": expected one of ['H', 'd', 'w', 'm', 'y']"
        ));
    };
    let number = &s[..s.len() - last.map(char::len_utf8).unwrap_or(0)];
    let hours = rborg::python::parse_int(number)
        .map(|n| n * factor)
        .unwrap_or(-1);
    if hours <= 0 {
        return Err(format!(
            "Unexpected interval number \"{number}\": expected an integer greater than 0"
        ));
    }
    Ok(hours)
}

/// borg's `parse_file_size` (suffixes K M G T P = powers of 1000).
pub fn parse_file_size(s: &str) -> Option<u64> {
    let (number, factor) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        'T' => (&s[..s.len() - 1], 1e12),
        'P' => (&s[..s.len() - 1], 1e15),
        _ => (s, 1.0),
    };
    let v: f64 = number.trim().parse().ok()?;
    let total = v * factor;
    (total.is_finite() && total >= 0.0).then_some(total as u64)
}

/// borg's `parse_storage_quota`: 0 or at least 10M.
fn parse_storage_quota(s: &str) -> Result<u64, String> {
    let v = parse_file_size(s)
        .ok_or_else(|| format!("invalid parse_storage_quota value: {}", repr(s)))?;
    if v != 0 && v < 10_000_000 {
        return Err(format!(
            "quota is too small ({s}). At least 10M are required."
        ));
    }
    Ok(v)
}

/// borg's `timestamp`: a file's mtime, or one of the accepted UTC formats.
fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(meta) = std::fs::metadata(s) {
        use std::os::unix::fs::MetadataExt;
        let secs = meta.mtime().clamp(0, rborg::output::human::MAX_S);
        if let Some(t) = DateTime::<Utc>::from_timestamp(secs, meta.mtime_nsec() as u32) {
            return Ok(t);
        }
    }
    const DATETIME_FORMATS: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%SZ",
        "%Y-%m-%dT%H:%M:%S+00:00",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    for f in DATETIME_FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    for f in ["%Y-%m-%d", "%Y-%j"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        }
    }
    Err(format!("invalid timestamp value: {}", repr(s)))
}

/// borg's `PathSpec`: any path but the empty string (kept as raw OS bytes).
fn non_empty_path() -> impl TypedValueParser<Value = OsString> {
    clap::builder::OsStringValueParser::new().try_map(|v: OsString| {
        if v.is_empty() {
            Err("Empty strings are not accepted as paths.".to_string())
        } else {
            Ok(v)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("borg")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn ok(words: &[&str]) -> Invocation {
        parse(&argv(words), "borg").unwrap_or_else(|e| panic!("{words:?}: {e:?}"))
    }

    fn err(words: &[&str]) -> CliExit {
        parse(&argv(words), "borg").expect_err("should fail")
    }

    #[test]
    fn clap_definition_is_consistent() {
        build_command("borg").debug_assert();
    }

    #[test]
    fn most_specific_level_wins() {
        let inv = ok(&[
            "--debug",
            "--lock-wait",
            "5",
            "list",
            "--info",
            "--debug-topic",
            "x",
            "/r",
        ]);
        assert_eq!(inv.common.log_level, Level::Info);
        assert_eq!(inv.common.lock_wait, 5);
        let inv = ok(&[
            "--debug-topic",
            "a",
            "key",
            "--debug-topic",
            "b",
            "export",
            "--debug-topic",
            "c",
        ]);
        assert_eq!(inv.common.debug_topics, ["a", "b", "c"]);
        let inv = ok(&["list", "--info", "--error"]);
        assert_eq!(inv.common.log_level, Level::Error);
        let inv = ok(&["list"]);
        assert_eq!(inv.common.log_level, Level::Warning);
        assert_eq!(inv.common.umask, 0o077);
        assert_eq!(inv.common.lock_wait, 1);
    }

    #[test]
    fn abbreviations_and_clusters() {
        let inv = ok(&[
            "create",
            "--stat",
            "--comm=hi",
            "-svp",
            "-Czstd",
            "/r::a",
            "p",
        ]);
        let Command::Create(c) = &inv.command else {
            panic!()
        };
        assert!(c.stats);
        assert_eq!(c.comment, "hi");
        assert_eq!(c.compression, "zstd");
        assert!(inv.common.progress);
        assert_eq!(inv.common.log_level, Level::Info);
        assert_eq!(c.files_cache.as_deref(), Some("cis"));
        assert_eq!(c.chunker_params.as_deref(), Some("buzhash,19,23,21,4095"));
        let e = err(&["list", "--numeric"]);
        assert!(
            e.stderr.contains("unrecognized arguments") || e.stderr.contains("ambiguous"),
            "{}",
            e.stderr
        );
    }

    #[test]
    fn highlander_and_exclusive_errors() {
        let e = err(&["create", "--filter", "A", "--filter", "M", "/r::a", "p"]);
        assert_eq!(e.code, 2);
        assert!(
            e.stderr
                .ends_with("borg create: error: argument --filter: There can be only one.\n"),
            "{}",
            e.stderr
        );
        let e = err(&["list", "-a", "x*", "-a", "y*", "/r"]);
        assert!(
            e.stderr
                .contains("argument -a/--glob-archives: There can be only one."),
            "{}",
            e.stderr
        );
        let e = err(&["list", "--first", "1", "--last", "2", "/r"]);
        assert!(
            e.stderr
                .contains("error: argument --last: not allowed with argument --first"),
            "{}",
            e.stderr
        );
        let e = err(&["list", "-P", "x", "-a", "y", "/r"]);
        assert!(
            e.stderr.contains("not allowed with argument"),
            "{}",
            e.stderr
        );
        // non-Highlander options: the last one wins
        let inv = ok(&["create", "--comment", "a", "--comment", "b", "/r::a", "p"]);
        let Command::Create(c) = &inv.command else {
            panic!()
        };
        assert_eq!(c.comment, "b");
    }

    #[test]
    fn argparse_style_errors() {
        let e = err(&["init", "/r"]);
        assert!(
            e.stderr.contains(
                "borg init: error: the following arguments are required: -e/--encryption"
            ),
            "{}",
            e.stderr
        );
        let e = err(&["init", "-e", "bogus", "/r"]);
        assert!(
            e.stderr
                .contains("argument -e/--encryption: invalid choice: 'bogus' (choose from 'none'"),
            "{}",
            e.stderr
        );
        let e = err(&["frobnicate"]);
        assert!(e.stderr.contains("argument <command>: invalid choice: 'frobnicate' (choose from 'benchmark', 'break-lock'"), "{}", e.stderr);
        let e = err(&["list", "--first", "0", "/r"]);
        assert!(
            e.stderr
                .contains("argument --first: A positive integer is required: 0"),
            "{}",
            e.stderr
        );
        let e = err(&["--lock-wait", "x", "list"]);
        assert!(
            e.stderr
                .contains("argument --lock-wait: invalid int value: 'x'"),
            "{}",
            e.stderr
        );
        let e = err(&["create", "/r::a"]);
        assert!(e.stderr.contains("error: Need at least one PATH argument."));
        let e = err(&["create", "/r::a", ""]);
        assert!(
            e.stderr
                .contains("Empty strings are not accepted as paths."),
            "{}",
            e.stderr
        );
        let e = err(&["create", "-s", "--quick-stats", "/r::a", "p"]);
        assert!(e
            .stderr
            .contains("--stats and --quick-stats are mutually exclusive."));
        let e = err(&["create", "--bypass-lock", "/r::a", "p"]);
        assert_eq!(
            e.stderr,
            "Error: Not allowed to bypass locking mechanism for chosen command\n"
        );
        let e = err(&["prune", "--keep-within", "3x", "/r"]);
        assert!(
            e.stderr.contains("Unexpected interval time unit \"x\""),
            "{}",
            e.stderr
        );
        let e = err(&["create", "--files-cache", "foo", "/r::a", "p"]);
        assert!(
            e.stderr
                .contains("cache mode must be a comma-separated list of"),
            "{}",
            e.stderr
        );
        assert!(err(&["diff", "--sort-by", "bogus", "/r::a", "b"])
            .stderr
            .contains("unsupported sort field: bogus"));
    }

    #[test]
    fn help_and_version() {
        let e = err(&[]);
        assert_eq!(e.code, 0);
        assert!(e.stdout.contains("Usage"));
        let e = err(&["create", "-h"]);
        assert_eq!(e.code, 0);
        assert!(e.stdout.contains("--checkpoint-interval"));
        let e = err(&["key"]);
        assert_eq!(e.code, 0);
        assert!(e.stdout.contains("export"));
        let e = err(&["-V"]);
        assert_eq!(
            e.stdout,
            format!("borg 1.4.5 (rborg {})\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn values_and_defaults() {
        let inv = ok(&[
            "prune",
            "--keep-daily",
            "-1",
            "-w",
            "4",
            "--keep-within",
            "2d",
            "--keep-last",
            "3",
            "/r",
        ]);
        let Command::Prune(p) = &inv.command else {
            panic!()
        };
        assert_eq!(
            (p.daily, p.weekly, p.within, p.secondly),
            (-1, 4, Some(48), 3)
        );
        let inv = ok(&["recreate", "/r", "--recompress"]);
        let Command::Recreate(r) = &inv.command else {
            panic!()
        };
        assert_eq!(r.recompress, "if-different");
        let inv = ok(&["recreate", "/r"]);
        let Command::Recreate(r) = &inv.command else {
            panic!()
        };
        assert_eq!(r.recompress, "never");
        let inv = ok(&["with-lock", "/r", "ls", "-la", "--info"]);
        let Command::WithLock(w) = &inv.command else {
            panic!()
        };
        assert_eq!(w.program(), "ls");
        assert_eq!(w.args(), [OsString::from("-la"), OsString::from("--info")]);
        assert_eq!(inv.common.log_level, Level::Warning);
        let inv = ok(&[
            "--umask",
            "0027",
            "create",
            "--timestamp",
            "2024-01-02T03:04:05",
            "/r::a",
            "p",
        ]);
        assert_eq!(inv.common.umask, 0o027);
        let Command::Create(c) = &inv.command else {
            panic!()
        };
        assert_eq!(c.timestamp.map(|t| t.timestamp()), Some(1704164645));
        assert_eq!(c.stdin_mode, 0o660);
        let inv = ok(&["delete", "--force", "--force", "/r::a", "b", "c"]);
        let Command::Delete(d) = &inv.command else {
            panic!()
        };
        assert_eq!(d.forced, 2);
        assert_eq!(d.archives, ["b", "c"]);
        let inv = ok(&["init", "-e", "none", "--storage-quota", "1.5T"]);
        let Command::Init(i) = &inv.command else {
            panic!()
        };
        assert_eq!(i.storage_quota, Some(1_500_000_000_000));
        assert!(i.location.is_none());
        assert!(err(&["init", "-e", "none", "--storage-quota", "5M"])
            .stderr
            .contains("quota is too small (5M)"));
    }

    #[test]
    fn pattern_order_is_kept() {
        let inv = ok(&[
            "extract",
            "--pattern",
            "+a",
            "-e",
            "b",
            "--patterns-from",
            "f",
            "-e",
            "c",
            "/r::a",
        ]);
        let Command::Extract(x) = &inv.command else {
            panic!()
        };
        assert_eq!(
            x.patterns.ordered,
            [
                PatternOption::Pattern("+a".into()),
                PatternOption::Exclude("b".into()),
                PatternOption::PatternsFrom("f".into()),
                PatternOption::Exclude("c".into()),
            ]
        );
        // an R pattern stands in for PATH
        ok(&["create", "--pattern", "R /data", "/r::a"]);
    }

    #[test]
    fn deprecations_are_textual() {
        let args: Vec<OsString> = [
            "--numeric-owner",
            "--prefix=x",
            "--sort-by",
            "--sort",
            "--numeric-own",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            deprecation_warnings(&args),
            [
                "Warning: \"--numeric-owner\" has been deprecated. Use --numeric-ids instead.",
                "Warning: \"--prefix\" has been deprecated. Use \"--glob-archives 'yourprefix*'\" (-a) instead.",
                "Warning: \"--sort\" is deprecated. Use \"--sort-by=path\" instead.",
            ]
        );
        let inv = ok(&["extract", "--numeric-owner", "--nobsdflags", "/r::a"]);
        let Command::Extract(x) = &inv.command else {
            panic!()
        };
        assert!(x.numeric_ids && x.noflags);
    }

    #[test]
    fn forced_command_allowlist() {
        let mut inv = ok(&["serve", "--restrict-to-path", "/srv", "--umask", "0022"]);
        apply_forced_command(
            &mut inv,
            "FOO=1 borg serve --debug --lock-wait 9 --umask 0000 --append-only",
        );
        assert_eq!(inv.common.log_level, Level::Debug);
        assert_eq!(inv.common.lock_wait, 9);
        assert_eq!(inv.common.umask, 0o022);
        let Command::Serve(s) = &inv.command else {
            panic!()
        };
        assert!(!s.append_only);
        assert_eq!(s.restrict_to_paths, [PathBuf::from("/srv")]);
    }
}
