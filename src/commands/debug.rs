//! `borg debug …` (developer tools, cli.md §4.25): `info`, `get-obj`, `put-obj`,
//! `delete-obj`, `id-hash`, `dump-archive-items`; the others are refused as not supported.

use rborg::archive::Archive;
use rborg::errors::{Error, ErrorKind, Result};
use rborg::output;
use rborg::repository::ObjectId;

use super::common::{open_repository, open_with_manifest, parse_location, ArchiveArg};
use super::Context;
use crate::cli::{
    DebugArchiveArgs, DebugArgs, DebugCommand, DebugObjIdsArgs, DebugObjPathArgs, DebugRepoPathArgs,
};

pub fn run(ctx: &Context, args: &DebugArgs) -> Result<()> {
    let unsupported = |name: &str| {
        Err(Error::generic(format!(
            "borg debug {name} is not supported by rborg."
        )))
    };
    match &args.command {
        Some(DebugCommand::Info(_)) => info(),
        Some(DebugCommand::GetObj(a)) => get_obj(ctx, a),
        Some(DebugCommand::PutObj(a)) => put_obj(ctx, a),
        Some(DebugCommand::DeleteObj(a)) => delete_obj(ctx, a),
        Some(DebugCommand::IdHash(a)) => id_hash(ctx, a),
        Some(DebugCommand::DumpArchiveItems(a)) => dump_archive_items(ctx, a),
        Some(DebugCommand::DumpArchive(_)) => unsupported("dump-archive"),
        Some(DebugCommand::DumpManifest(_)) => unsupported("dump-manifest"),
        Some(DebugCommand::DumpRepoObjs(_)) => unsupported("dump-repo-objs"),
        Some(DebugCommand::SearchRepoObjs(_)) => unsupported("search-repo-objs"),
        Some(DebugCommand::RefcountObj(_)) => unsupported("refcount-obj"),
        Some(DebugCommand::DumpHints(_)) => unsupported("dump-hints"),
        Some(DebugCommand::ConvertProfile(_)) => unsupported("convert-profile"),
        None => Err(Error::generic("debug: a subcommand is required")),
    }
}

/// borg's `sysinfo()` block plus the process id.
fn info() -> Result<()> {
    output::stdout_line(output::sysinfo().trim_end_matches('\n'));
    output::stdout_line(&format!("Process ID: {}", std::process::id()));
    Ok(())
}

/// A 32-byte object id from hex, with the reason borg gives when it is not one.
fn parse_id(hex_id: &str) -> std::result::Result<ObjectId, String> {
    if hex_id.len() % 2 == 1 {
        return Err("Odd-length string".into());
    }
    let bytes = hex::decode(hex_id).map_err(|_| "Non-hexadecimal digit found".to_string())?;
    let len = bytes.len();
    ObjectId::try_from(bytes)
        .map_err(|_| format!("Expected 32 bytes (64 hex digits), got {len} bytes."))
}

fn parse_id_arg(hex_id: &str) -> Result<ObjectId> {
    parse_id(hex_id)
        .map_err(|why| Error::command(format!("object id {hex_id} is invalid [{why}].")))
}

fn os_error(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::exception(format!("{}: {e}", path.display()))
}

/// `get-obj`: the stored (encrypted) object into PATH.
fn get_obj(ctx: &Context, args: &DebugObjPathArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Forbidden)?;
    let id = parse_id_arg(&args.id)?;
    let repo = open_repository(ctx, &location, false)?;
    let data = match repo.get(&id) {
        Ok(d) => d,
        Err(e) if e.is(ErrorKind::RepositoryObjectNotFound) => {
            return Err(Error::runtime(format!("object {} not found.", args.id)));
        }
        Err(e) => return Err(e),
    };
    std::fs::write(&args.path, data).map_err(|e| os_error(&args.path, e))?;
    output::stdout_line(&format!("object {} fetched.", args.id));
    Ok(())
}

/// `put-obj`: PATH's bytes stored as object ID (no encryption), committed.
fn put_obj(ctx: &Context, args: &DebugObjPathArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    let data = std::fs::read(&args.path).map_err(|e| os_error(&args.path, e))?;
    let id = parse_id_arg(&args.id)?;
    repo.put(&id, &data)?;
    output::stdout_line(&format!("object {} put.", args.id));
    repo.commit(false, 0.1, false)
}

/// `delete-obj`: delete the objects, report each, commit if any was deleted.
fn delete_obj(ctx: &Context, args: &DebugObjIdsArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    let mut modified = false;
    for hex_id in &args.ids {
        let Ok(id) = parse_id(hex_id) else {
            output::stdout_line(&format!("object id {hex_id} is invalid."));
            continue;
        };
        match repo.delete(&id) {
            Ok(()) => {
                modified = true;
                output::stdout_line(&format!("object {hex_id} deleted."));
            }
            Err(e) if e.is(ErrorKind::RepositoryObjectNotFound) => {
                output::stdout_line(&format!("object {hex_id} not found."));
            }
            Err(e) => return Err(e),
        }
    }
    if modified {
        repo.commit(false, 0.1, false)?;
    }
    output::stdout_line("Done.");
    Ok(())
}

/// `id-hash`: the key's id hash of PATH's contents.
fn id_hash(ctx: &Context, args: &DebugRepoPathArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Forbidden)?;
    let opened = open_with_manifest(ctx, &location, false, &[])?;
    let data = std::fs::read(&args.path).map_err(|e| os_error(&args.path, e))?;
    output::stdout_line(&hex::encode(opened.key.id_hash(&data)));
    Ok(())
}

/// `dump-archive-items`: each decrypted item metadata chunk into
/// `<index>_<id>.items` in the current directory.
fn dump_archive_items(ctx: &Context, args: &DebugArchiveArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Required)?;
    let opened = open_with_manifest(ctx, &location, false, &[])?;
    let name = location.archive.clone().unwrap_or_default();
    let info = opened.manifest.get_archive(&name)?;
    let archive = Archive::load(opened.repo.as_ref(), &opened.key, &info.id)?;
    for (i, item_id) in archive.meta.items.iter().enumerate() {
        let stored = opened.repo.get(item_id)?;
        let data = opened.key.decrypt(Some(item_id), &stored)?;
        let file = format!("{i:06}_{}.items", hex::encode(item_id));
        output::stdout_line(&format!("Dumping {file}"));
        std::fs::write(&file, data).map_err(|e| os_error(std::path::Path::new(&file), e))?;
    }
    output::stdout_line("Done.");
    Ok(())
}
