//! `borg rename`: give an archive a new name (cli.md §4.5). The metadata object is stored
//! anew with the new name and a fresh archive TAM, so the archive id changes.

use rborg::archive::objects::ObjectWriter;
use rborg::archive::{Archive, Operation};
use rborg::cache::SecurityManager;
use rborg::compress::CompressionSpec;
use rborg::errors::{Error, ErrorKind, Result};
use rborg::location::validate_archive_name;
use rborg::repository::ObjectId;

use super::common::{open_with_manifest, parse_location, ArchiveArg, Opened};
use super::Context;
use crate::cli::RenameArgs;

pub fn run(ctx: &Context, args: &RenameArgs) -> Result<()> {
    let location = parse_location(Some(&args.location), ArchiveArg::Required)?;
    let new_name = validate_archive_name(&args.name)?;
    let mut opened = open_with_manifest(ctx, &location, true, &[Operation::Check])?;
    let old_name = location.archive.clone().unwrap_or_default();
    let writer = ObjectWriter::new(
        opened.repo.clone(),
        opened.key.clone(),
        CompressionSpec::default(),
    );
    rename_archive(&mut opened, &writer, &old_name, &new_name)?;
    opened.manifest.write(&writer)?;
    opened.repo.commit(false, 0.1, false)?;
    // what borg's cache commit records in the security dir after a write
    let security = SecurityManager::new(&hex::encode(opened.repo.id()), &location.canonical_path());
    security.save(&opened.manifest.timestamp, opened.key.key_type())?;
    Ok(())
}

/// Store the archive's metadata under its new name (borg 1.4's `Archive.rename` /
/// `set_meta`, with a freshly computed TAM), point the manifest at it and delete the old
/// metadata object, which only the manifest referenced. Returns the new archive id; the
/// manifest still has to be written.
fn rename_archive(
    opened: &mut Opened,
    writer: &ObjectWriter,
    old_name: &str,
    new_name: &str,
) -> Result<ObjectId> {
    let info = opened.manifest.get_archive(old_name)?.clone();
    if opened.manifest.lookup(new_name.as_bytes()).is_some() {
        return Err(Error::new(ErrorKind::ArchiveAlreadyExists, [new_name]));
    }
    let archive = Archive::load(opened.repo.as_ref(), &opened.key, &info.id)?;
    let mut meta = archive.meta;
    meta.name = new_name.as_bytes().to_vec();
    let (new_id, _, _) = meta.store(writer)?;
    opened
        .manifest
        .set_archive(new_name.as_bytes(), new_id, info.ts);
    opened.manifest.remove_archive(&info.name);
    opened.repo.delete(&info.id)?;
    Ok(new_id)
}
