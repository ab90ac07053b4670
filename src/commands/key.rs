//! `borg key export|export-related-secrets|import|change-passphrase|migrate-to-repokey`
//! (cli.md §4.13). The work is done by `rborg::crypto::keymanager`.

use std::ffi::OsStr;
use std::io::{BufRead, Read};
use std::path::Path;

use rborg::archive::{Manifest, Operation};
use rborg::crypto::keymanager::{self, KeyStorage, PaperKeyConsole};
use rborg::crypto::{RelatedSecrets, SystemEnv};
use rborg::errors::{Error, Result};
use rborg::location::Location;
use rborg::output::{self, prompt};
use rborg::repository::Repository;

use super::common::{
    open_repository, open_repository_locking, open_with_manifest, parse_location, ArchiveArg,
};
use super::Context;
use crate::cli::{
    KeyArgs, KeyCommand, KeyExportArgs, KeyExportRelatedSecretsArgs, KeyImportArgs, KeyRepoArgs,
};

pub fn run(ctx: &Context, args: &KeyArgs) -> Result<()> {
    match &args.command {
        Some(KeyCommand::Export(a)) => export(ctx, a),
        Some(KeyCommand::ExportRelatedSecrets(a)) => export_related_secrets(ctx, a),
        Some(KeyCommand::Import(a)) => import(ctx, a),
        Some(KeyCommand::ChangePassphrase(a)) => change_passphrase(ctx, a),
        Some(KeyCommand::MigrateToRepokey(a)) => migrate_to_repokey(ctx, a),
        None => Err(Error::generic("key: a subcommand is required")),
    }
}

/// borg's `KeyManager(repository)`: no lock, the manifest only tells where the key is.
fn open_for_key_management(
    ctx: &Context,
    location: Option<&str>,
) -> Result<(Location, std::sync::Arc<dyn Repository>, KeyStorage)> {
    let location = parse_location(location, ArchiveArg::Forbidden)?;
    let repo = open_repository_locking(ctx, &location, false, false)?;
    let storage = KeyStorage::of_manifest(&Manifest::fetch(repo.as_ref())?)?;
    Ok((location, repo, storage))
}

fn is_stdio(path: Option<&OsStr>) -> bool {
    path.is_none_or(|p| p == "-")
}

fn os_error(path: &Path, e: std::io::Error) -> Error {
    let errno = e.raw_os_error().unwrap_or(0);
    let desc = nix::errno::Errno::from_raw(errno).desc();
    Error::exception(format!(
        "[Errno {errno}] {desc}: {}",
        rborg::python::repr(&path.display().to_string())
    ))
}

/// Write an export to PATH (created or truncated, mode from the umask) or to stdout.
fn write_export(path: Option<&OsStr>, text: &str) -> Result<()> {
    if is_stdio(path) {
        output::stdout_text(text);
        output::stdout_flush();
        return Ok(());
    }
    let path = Path::new(path.unwrap_or_default());
    std::fs::write(path, text).map_err(|e| os_error(path, e))
}

fn export(ctx: &Context, args: &KeyExportArgs) -> Result<()> {
    let (_, repo, storage) = open_for_key_management(ctx, args.location.as_deref())?;
    let blob = keymanager::load_key_blob(repo.as_ref(), storage, &SystemEnv)?;
    let id = repo.id();
    let path = args.path.as_deref();
    if args.paper {
        return write_export(path, &keymanager::paper_key_text(&id, &blob)?);
    }
    let text = if args.qr_html {
        keymanager::qr_html(&id, &blob)?
    } else {
        keymanager::key_file_text(&id, &blob)
    };
    if let Some(p) = path.filter(|p| !is_stdio(Some(p)) && Path::new(p).is_dir()) {
        return Err(Error::command(format!(
            "'{}' must be a file, not a directory",
            p.to_string_lossy()
        )));
    }
    write_export(path, &text)
}

/// `import --paper` on the terminal: prompts and feedback on stdout, answers from stdin.
struct StdioPaperConsole;

impl PaperKeyConsole for StdioPaperConsole {
    fn input(&mut self, prompt: &str) -> Option<String> {
        output::stdout_text(prompt);
        output::stdout_flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.strip_suffix('\n').unwrap_or(&line).to_string()),
        }
    }

    fn print(&mut self, line: &str) {
        output::stdout_line(line);
        output::stdout_flush();
    }

    fn confirm_abort(&mut self) -> bool {
        prompt::yes(&prompt::Question {
            msg: Some("Abort import? [yN]:"),
            ..Default::default()
        })
    }
}

fn import(ctx: &Context, args: &KeyImportArgs) -> Result<()> {
    let (location, repo, storage) = open_for_key_management(ctx, args.location.as_deref())?;
    let key_file_name = location.key_file_name();
    if args.paper {
        // borg tests the path for truth: an empty PATH counts as none
        if args.path.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(Error::command(
                "with --paper import from file is not supported",
            ));
        }
        let mut console = StdioPaperConsole;
        if let Some(blob) = keymanager::read_paper_key(&repo.id(), &mut console)? {
            keymanager::store_key_blob(repo.as_ref(), storage, &blob, &key_file_name, &SystemEnv)?;
        }
        return Ok(());
    }
    let Some(path) = args.path.as_deref().filter(|p| !p.is_empty()) else {
        return Err(Error::command("expected input file to import key from"));
    };
    let content = if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| Error::exception(format!("<stdin>: {e}")))?;
        buf
    } else {
        let p = Path::new(path);
        if !p.exists() {
            return Err(Error::command(format!(
                "input file does not exist: {}",
                path.to_string_lossy()
            )));
        }
        std::fs::read(p).map_err(|e| os_error(p, e))?
    };
    let blob = keymanager::parse_key_backup(&repo.id(), &content)?;
    keymanager::store_key_blob(repo.as_ref(), storage, &blob, &key_file_name, &SystemEnv)?;
    Ok(())
}

fn change_passphrase(ctx: &Context, args: &KeyRepoArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let opened = open_with_manifest(ctx, &location, false, &[Operation::Check])?;
    let mut key = (*opened.key).clone();
    let key_location = keymanager::change_passphrase(opened.repo.as_ref(), &mut key, &SystemEnv)?;
    output::info("Key updated");
    output::info(&format!("Key location: {key_location}"));
    Ok(())
}

fn migrate_to_repokey(ctx: &Context, args: &KeyRepoArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, false)?;
    let manifest = Manifest::fetch(repo.as_ref())?;
    keymanager::migrate_to_repokey(repo.as_ref(), &manifest, &SystemEnv)?;
    output::info("Key updated");
    Ok(())
}

/// borg 1.4.5: the id key and chunker seed as JSON (`json.dump(…, indent=4)` + newline).
fn export_related_secrets(ctx: &Context, args: &KeyExportRelatedSecretsArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let opened = open_with_manifest(ctx, &location, false, &[Operation::Read])?;
    let secrets = RelatedSecrets::of_key(&opened.key).to_json();
    let text = format!(
        "{}\n",
        rborg::output::json::dumps_with(&secrets, false, Some("    "))
    );
    let Some(path) = args.path.as_deref() else {
        return Err(Error::exception(
            "TypeError: expected str, bytes or os.PathLike object, not NoneType",
        ));
    };
    write_export(Some(path), &text)
}
