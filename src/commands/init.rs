//! `borg init`: create an empty repository with a new key (cli.md §4.1).

use std::ffi::OsStr;
use std::io::Read;
use std::sync::Arc;

use rborg::archive::objects::ObjectWriter;
use rborg::archive::Manifest;
use rborg::cache::SecurityManager;
use rborg::compress::CompressionSpec;
use rborg::crypto::{create_key, KeyType, RelatedSecrets, SystemEnv};
use rborg::errors::{Error, Result};
use rborg::location::Location;
use rborg::output;
use rborg::repository::Repository;

use super::common::{create_repository, parse_location, ArchiveArg};
use super::Context;
use crate::cli::InitArgs;

/// borg 1.4's closing advice for every mode with a key (a WARNING, so shown without `-v`).
const KEY_BACKUP_ADVICE: &str = "
IMPORTANT: you will need both KEY AND PASSPHRASE to access this repo!

Key storage location depends on the mode:
- repokey modes: key is stored in the repository directory.
- keyfile modes: key is stored in the home directory of this user.

For any mode, you should:
1. Export the borg key and store the result at a safe place:
   borg key export           REPOSITORY encrypted-key-backup
   borg key export --paper   REPOSITORY encrypted-key-backup.txt
   borg key export --qr-html REPOSITORY encrypted-key-backup.html
2. Write down the borg key passphrase and store it at safe place.
";

pub fn run(ctx: &Context, args: &InitArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Forbidden)?;
    let key_type = KeyType::from_mode_name(&args.encryption).ok_or_else(|| {
        Error::generic(format!("Invalid encryption mode \"{}\"", args.encryption))
    })?;
    // Read before anything is created, so a bad file leaves no half-made repository behind.
    let related = match &args.import_related_secrets {
        Some(path) => Some(read_related_secrets(path)?),
        None => None,
    };
    let repo = create_repository(
        ctx,
        &location,
        args.append_only,
        args.storage_quota,
        args.make_parent_dirs,
    )?;
    // borg shows the path as given (canonical_path of a local location is its path).
    output::info(&format!("Initializing repository at \"{}\"", location.path));
    let key = match create_key(
        repo.as_ref(),
        key_type,
        &location.key_file_name(),
        related.as_ref(),
        &SystemEnv,
    ) {
        Ok(key) => Arc::new(key),
        Err(e) => {
            // no key, no repository: remove what was just created (borg leaves it behind)
            let _ = repo.destroy();
            return Err(e);
        }
    };
    // A new key starts at nonce 0, so the first manifest is encrypted with nonce 0 and the
    // first reservation is written to the repository's and the security dir's nonce files.
    let writer = ObjectWriter::new(repo.clone(), key.clone(), CompressionSpec::default());
    let mut manifest = Manifest::empty();
    manifest.write(&writer)?;
    repo.commit(false, 0.1, false)?;
    remember_repository(
        &location,
        repo.as_ref(),
        &manifest,
        key.key_type(),
        key.tam_required(),
    )?;
    if key.key_type() != KeyType::None {
        output::warning(KEY_BACKUP_ADVICE);
    }
    Ok(())
}

/// What borg's init leaves in the security dir: location, key type and manifest timestamp
/// (so later access to a `none` repository does not prompt), and `tam_required` if the key
/// requires TAM. (The nonce file was written by the first reservation.)
fn remember_repository(
    location: &Location,
    repo: &dyn Repository,
    manifest: &Manifest,
    key_type: KeyType,
    tam_required: bool,
) -> Result<()> {
    let id_hex = hex::encode(repo.id());
    let security = SecurityManager::new(&id_hex, &location.canonical_path());
    security.save(&manifest.timestamp, key_type)?;
    if tam_required {
        let file = security.dir.join("tam_required");
        std::fs::File::create(&file)
            .map_err(|e| Error::exception(format!("{}: {e}", file.display())))?;
    }
    Ok(())
}

/// The `--import-related-secrets` file (`-` = stdin).
fn read_related_secrets(path: &OsStr) -> Result<RelatedSecrets> {
    let shown = path.to_string_lossy();
    let mut bytes = Vec::new();
    let read = if path == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    read.map_err(|e| Error::exception(format!("{shown}: {e}")))?;
    // undecodable text is invalid JSON for borg too
    let text = String::from_utf8(bytes).unwrap_or_default();
    RelatedSecrets::from_json(&text, &shown)
}
