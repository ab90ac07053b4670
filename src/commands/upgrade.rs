//! `borg upgrade` (cli.md §4.14): the TAM options of borg 1.4. The Attic / borg 0.xx
//! repository conversion (no TAM option) is not supported.

use std::sync::Arc;

use rborg::archive::objects::ObjectWriter;
use rborg::archive::upgrade::{
    ignore_invalid_archive_tams, load_archive_meta, reauthenticate_archive, set_tam_required_file,
    tam_required_file,
};
use rborg::archive::{ArchiveInfo, Manifest, Operation, Statistics};
use rborg::cache::SecurityManager;
use rborg::compress::CompressionSpec;
use rborg::crypto::{keymanager, open_key, Key};
use rborg::errors::{Error, Result, WarningKind};
use rborg::msgpack::ValueExt;
use rborg::output::{self, human::format_archive_line};
use rmpv::Value;

use super::common::{open_cache, open_repository, parse_location, ArchiveArg, Opened};
use super::Context;
use crate::cli::UpgradeArgs;

pub fn run(ctx: &Context, args: &UpgradeArgs) -> Result<()> {
    if args.archives_tam || args.check_archives_tam {
        ignore_invalid_archive_tams();
        let opened = open(ctx, args, &[Operation::Check], args.force)?;
        archives_tam(ctx, opened, args.check_archives_tam)
    } else if args.tam || args.check_tam {
        ignore_invalid_archive_tams();
        let opened = open(ctx, args, &[Operation::Check], args.force)?;
        manifest_tam(opened, args.check_tam)
    } else if args.disable_tam {
        let opened = open(ctx, args, &[], true)?;
        disable_tam(opened)
    } else {
        Err(Error::generic(
            "Upgrading Attic or borg 0.xx repositories is not supported.",
        ))
    }
}

/// borg's `with_repository(manifest=False, exclusive=True)` followed by its own
/// `Manifest.load(force_tam_not_required=…)`: no security checks here.
fn open(ctx: &Context, args: &UpgradeArgs, ops: &[Operation], force: bool) -> Result<Opened> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let repo = open_repository(ctx, &location, true)?;
    let stored = Manifest::fetch(repo.as_ref())?;
    let key = open_key(repo.as_ref(), &stored)?;
    let manifest = Manifest::decode_with(repo.as_ref(), &key, &stored, ops, force)?;
    Ok(Opened {
        location,
        repo,
        key: Arc::new(key),
        manifest,
    })
}

fn archive_line(info: &ArchiveInfo) -> String {
    format_archive_line(&info.name_lossy(), &info.ts, &hex::encode(info.id))
}

fn archives_by_time(manifest: &Manifest) -> Vec<ArchiveInfo> {
    let mut archives = manifest.archives.clone();
    archives.sort_by_key(|a| a.ts);
    archives
}

fn writer(opened: &Opened) -> ObjectWriter {
    ObjectWriter::new(
        opened.repo.clone(),
        opened.key.clone(),
        CompressionSpec::default(),
    )
}

/// `--check-archives-tam` (`read_only`) / `--archives-tam`: report every archive's TAM and
/// re-authenticate those without a valid one.
fn archives_tam(ctx: &Context, mut opened: Opened, read_only: bool) -> Result<()> {
    let mut cache = open_cache(ctx, &opened)?;
    let writer = writer(&opened);
    let mut stats = Statistics::default();
    let mut issues = 0usize;
    for info in archives_by_time(&opened.manifest) {
        let meta = load_archive_meta(opened.repo.as_ref(), &opened.key, &info.id)?;
        if meta.verified {
            output::stdout_line(&format!("Archive TAM present: {}", archive_line(&info)));
            continue;
        }
        issues += 1;
        if read_only {
            output::stdout_line(&format!("Archive TAM missing: {}", archive_line(&info)));
            continue;
        }
        let new_id = reauthenticate_archive(&writer, &mut cache, &mut stats, &info.id, meta.map)?;
        opened.manifest.set_archive(&info.name, new_id, info.ts);
        output::stdout_line(&format!(
            "Added archive TAM:   {} -> [{}]",
            archive_line(&info),
            hex::encode(new_id)
        ));
    }
    if read_only {
        if issues > 0 {
            output::warn_kind(
                WarningKind::Generic,
                &format!("Found {issues} archives with TAM issues!"),
            );
        } else {
            output::stdout_line("All archives are TAM authenticated.");
        }
        return Ok(());
    }
    opened.manifest.write(&writer)?;
    opened.repo.commit(false, 0.1, false)?;
    cache.commit(&opened.manifest)?;
    if issues > 0 {
        output::stdout_line(&format!("Fixed {issues} archives with TAM issues!"));
        output::stdout_line("All archives are TAM authenticated now.");
    } else {
        output::stdout_line("All archives are TAM authenticated.");
    }
    Ok(())
}

fn config_tam_required(manifest: &Manifest) -> bool {
    manifest
        .config
        .get("tam_required")
        .and_then(|v| v.as_boolean())
        .unwrap_or(false)
}

fn set_config_tam_required(manifest: &mut Manifest, required: bool) {
    let mut entries = match std::mem::replace(&mut manifest.config, Value::Nil) {
        Value::Map(entries) => entries,
        _ => Vec::new(),
    };
    entries.retain(|(k, _)| k.as_bytes() != Some(b"tam_required"));
    entries.push((Value::from("tam_required"), Value::Boolean(required)));
    manifest.config = Value::Map(entries);
}

/// Save the key with its changed `tam_required` and tell where, as borg does.
fn resave_key(opened: &Opened, key: &Key) -> Result<()> {
    let key_location = keymanager::resave_key(opened.repo.as_ref(), key)?;
    output::stdout_line("Key updated");
    output::stdout_line(&format!("Key location: {key_location}"));
    Ok(())
}

/// Rewrite the manifest and commit; record the new manifest timestamp in the security dir.
fn write_manifest(opened: &mut Opened, key: Key) -> Result<()> {
    opened.key = Arc::new(key);
    opened.manifest.write(&writer(opened))?;
    opened.repo.commit(false, 0.1, false)?;
    let security = SecurityManager::new(
        &hex::encode(opened.repo.id()),
        &opened.location.canonical_path(),
    );
    security.save(&opened.manifest.timestamp, opened.key.key_type())
}

/// `--check-tam` (`read_only`) / `--tam`: require manifest authentication in the manifest,
/// the key and the client's security dir.
fn manifest_tam(mut opened: Opened, read_only: bool) -> Result<()> {
    let mut issues = 0usize;
    let mut key = (*opened.key).clone();
    let repo_id = opened.repo.id();
    if !opened.manifest.tam_verified || !config_tam_required(&opened.manifest) {
        if read_only {
            issues += 1;
            output::warn_kind(
                WarningKind::Generic,
                "Repository Manifest is not TAM verified or a TAM is not required!",
            );
        } else {
            output::stdout_line("Manifest contents:");
            for info in archives_by_time(&opened.manifest) {
                output::stdout_line(&archive_line(&info));
            }
            set_config_tam_required(&mut opened.manifest, true);
            write_manifest(&mut opened, key.clone())?;
        }
    }
    // borg can only store keys that have a blob (not the `none` mode)
    if !key.tam_required() && key.key_type().has_key_blob() {
        if read_only {
            issues += 1;
            output::warn_kind(
                WarningKind::Generic,
                "Key does not require TAM authentication!",
            );
        } else {
            key.set_tam_required(true);
            resave_key(&opened, &key)?;
        }
    }
    if !tam_required_file(&repo_id).is_file() {
        if read_only {
            issues += 1;
            output::warn_kind(
                WarningKind::Generic,
                "Client-side security database does not require a TAM!",
            );
        } else {
            set_tam_required_file(&repo_id, true)?;
            output::stdout_line("Updated security database");
        }
    }
    if read_only && issues == 0 {
        output::stdout_line(
            "Manifest authentication setup OK for this client and this repository.",
        );
    }
    Ok(())
}

/// `--disable-tam`: stop requiring manifest authentication (security dir, key, manifest).
fn disable_tam(mut opened: Opened) -> Result<()> {
    let repo_id = opened.repo.id();
    set_tam_required_file(&repo_id, false)?;
    let mut key = (*opened.key).clone();
    if key.tam_required() && key.key_type().has_key_blob() {
        key.set_tam_required(false);
        resave_key(&opened, &key)?;
    }
    set_config_tam_required(&mut opened.manifest, false);
    write_manifest(&mut opened, key)
}
