//! `borg help [TOPIC]`: top-level help, a command's help, or a help topic.

use rborg::errors::Result;
use rborg::output;

use super::Context;
use crate::cli::{self, HelpArgs};

const PATTERNS: &str = "\
Include/exclude patterns select which paths a command works on. They are given with
--exclude/-e, --exclude-from, --pattern and --patterns-from, and are matched against
the path without a leading slash. The first matching pattern decides.

Pattern styles (select one with a prefix like `sh:`):

fm:  fnmatch (default for --exclude): `*` matches any text including `/`, `?` one
     character, `[...]` a character class.
sh:  shell style (default for --pattern): like fnmatch, but `*` does not match `/`;
     `**/` matches any number of directory levels.
re:  Python-compatible regular expression, searched anywhere in the path.
pp:  path prefix (default for PATH arguments of extract/list/diff/...): matches the
     path itself and everything below it.
pf:  path full-match: matches exactly this path, fastest for long lists.

Patterns given with --pattern or read with --patterns-from start with a command
character: `+` include, `-` exclude, `!` exclude without recursing into the
directory, `R` add a recursion root (create only), `P` set the default style for the
following lines. Lines starting with `#` are comments.

Examples:

    borg create -e '*.o' repo::arch /src
    borg create --pattern='+/home/user/keep' --pattern='- /home/user/*' repo::arch /home
    borg extract repo::arch home/user/docs
";

const PLACEHOLDERS: &str = "\
Repository/archive locations, --comment, --prefix/--glob-archives and --remote-path
may contain placeholders in braces, expanded before use ({{ and }} give literal braces):

{hostname}      short host name (BORG_HOSTNAME overrides)
{fqdn}          fully qualified host name
{reverse-fqdn}  host name labels reversed, e.g. com.example.host
{now}           local time, default format %Y-%m-%dT%H:%M:%S; {now:FORMAT} uses strftime
{utcnow}        the same in UTC
{unixtime}      seconds since the epoch
{user}          user name (BORG_USERNAME overrides)
{pid}           process id
{uuid4}         a random UUID
{borgversion}   e.g. 1.4.5; also {borgmajor} (1), {borgminor} (1.4), {borgpatch} (1.4.5)

Example:

    borg create /path/to/repo::{hostname}-{user}-{now:%Y-%m-%d} ~
";

const COMPRESSION: &str = "\
-C / --compression selects how chunks are compressed (default: lz4):

none                  no compression
lz4                   very fast, modest ratio
zstd[,L]              levels 1..22 (default 3)
zlib[,L]              levels 0..9 (default 6)
lzma[,L]              levels 0..9 (default 6), slow
auto,C[,L]            try lz4 first; use C only for data that looks compressible
obfuscate,SPEC,C[,L]  add random padding to hide chunk sizes (SPEC 1..6: relative,
                      110..123: absolute, 250: Padme)

Examples:

    borg create --compression zstd,10 repo::arch data
    borg create --compression auto,lzma,6 repo::arch data
";

/// Help topic names in borg's order.
pub const TOPICS: [&str; 3] = ["patterns", "placeholders", "compression"];

fn topic_text(topic: &str) -> Option<&'static str> {
    match topic {
        "patterns" => Some(PATTERNS),
        "placeholders" => Some(PLACEHOLDERS),
        "compression" => Some(COMPRESSION),
        _ => None,
    }
}

pub fn run(ctx: &Context, args: &HelpArgs) -> Result<()> {
    let prog = ctx.prog.as_str();
    let Some(topic) = args.topic.as_deref() else {
        output::stdout_line(cli::render_help(prog, &[]).unwrap_or_default().trim_end());
        return Ok(());
    };
    if let Some(text) = topic_text(topic) {
        output::stdout_line(text);
        return Ok(());
    }
    let commands = cli::command_names();
    if commands.iter().any(|c| c == topic) {
        let help = cli::render_help(prog, &[topic]).unwrap_or_default();
        if args.epilog_only {
            output::stdout_line("");
        } else if args.usage_only {
            let usage = help
                .split("\n\n")
                .find(|p| p.starts_with("Usage:"))
                .unwrap_or(&help);
            output::stdout_line(usage.trim_end());
        } else {
            output::stdout_line(help.trim_end());
        }
        return Ok(());
    }
    // Like argparse's parser.error(): usage and message on stderr, rc 2, nothing else.
    let mut sorted = commands.clone();
    sorted.sort();
    let mut topics = TOPICS.to_vec();
    topics.sort();
    let usage = cli::render_help(prog, &[]).unwrap_or_default();
    let usage = usage
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or("")
        .replacen("Usage:", "usage:", 1);
    output::write_stderr(&format!(
        "{usage}\n{prog}: error: No help available on {topic}.\nTry one of the following:\n    Commands: {}\n    Topics: {}\n",
        sorted.join(", "),
        topics.join(", ")
    ));
    output::stdout_flush();
    std::process::exit(2)
}
