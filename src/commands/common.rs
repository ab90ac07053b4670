//! What several commands share: locating and opening the repository with its key and manifest
//! (borg's `with_repository`), building matchers and archive filters, JSON basics.

use std::ffi::OsString;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use rborg::archive::{ArchiveFilter, Manifest, Operation};
use rborg::cache::{CacheConfigInfo, SecurityManager};
use rborg::crypto::{open_key, Key};
use rborg::errors::Result;
use rborg::location::{Location, Proto};
use rborg::output::{self, human};
use rborg::patterns::{PatternArg, PatternList, PatternMatcher};
use rborg::remote::{OpenRequest, RemoteOptions, RemoteRepository};
use rborg::repository::local::LocalRepository;
use rborg::repository::Repository;

use super::Context;
use crate::cli::{ArchiveFilterArgs, PatternArgs, PatternOption};

/// A repository opened with its key and manifest, the security checks passed.
pub struct Opened {
    pub location: Location,
    pub repo: Arc<dyn Repository>,
    pub key: Arc<Key>,
    pub manifest: Manifest,
}

/// Whether a location argument must, may or must not name an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveArg {
    Required,
    Optional,
    Forbidden,
}

/// Parse a REPOSITORY / ARCHIVE / REPOSITORY_OR_ARCHIVE argument (BORG_REPO when omitted).
pub fn parse_location(text: Option<&str>, archive: ArchiveArg) -> Result<Location> {
    let text = text.unwrap_or("");
    let want = match archive {
        ArchiveArg::Required => Some(true),
        ArchiveArg::Optional => None,
        ArchiveArg::Forbidden => Some(false),
    };
    Location::validate(text, want, None)
}

/// Open the repository at `location` (shared lock unless `exclusive`; `--bypass-lock` takes none).
pub fn open_repository(
    ctx: &Context,
    location: &Location,
    exclusive: bool,
) -> Result<Arc<dyn Repository>> {
    open_repository_locking(ctx, location, exclusive, !ctx.common.bypass_lock)
}

/// [`open_repository`], taking the lock only if `lock` (borg's `with_repository(lock=…)`).
pub fn open_repository_locking(
    ctx: &Context,
    location: &Location,
    exclusive: bool,
    lock: bool,
) -> Result<Arc<dyn Repository>> {
    match location.proto {
        Proto::Local => {
            let repo = LocalRepository::open(
                &location.absolute_path(),
                exclusive,
                ctx.common.lock_wait as f64,
                lock,
                false,
            )?;
            Ok(Arc::new(repo))
        }
        Proto::Ssh => {
            let request = OpenRequest {
                lock_wait: ctx.common.lock_wait,
                lock,
                exclusive,
                ..OpenRequest::default()
            };
            let repo = RemoteRepository::open(location, &remote_options(ctx, None), &request)?;
            Ok(Arc::new(repo))
        }
    }
}

/// Create a new repository at `location` and open it exclusively (borg init's
/// `Repository(create=True, exclusive=True)`), locally or through `borg serve`.
pub fn create_repository(
    ctx: &Context,
    location: &Location,
    append_only: bool,
    storage_quota: Option<u64>,
    make_parent_dirs: bool,
) -> Result<Arc<dyn Repository>> {
    match location.proto {
        Proto::Local => Ok(Arc::new(LocalRepository::init(
            &location.absolute_path(),
            append_only,
            storage_quota.unwrap_or(0),
            make_parent_dirs,
            ctx.common.lock_wait as f64,
        )?)),
        Proto::Ssh => {
            let request = OpenRequest {
                create: true,
                lock_wait: ctx.common.lock_wait,
                exclusive: true,
                append_only,
                make_parent_dirs,
                ..OpenRequest::default()
            };
            let opts = remote_options(ctx, storage_quota);
            Ok(Arc::new(RemoteRepository::open(location, &opts, &request)?))
        }
    }
}

/// How to reach `borg serve`: the common options that concern it (`--rsh`,
/// `--remote-path`, log level and repository debug topics, upload limits).
fn remote_options(ctx: &Context, storage_quota: Option<u64>) -> RemoteOptions {
    RemoteOptions {
        rsh: ctx.common.rsh.clone(),
        remote_path: ctx.common.remote_path.clone(),
        log_level: Some(ctx.common.log_level),
        debug_topics: ctx.common.debug_topics.clone(),
        storage_quota,
        upload_ratelimit: ctx.common.upload_ratelimit.unwrap_or(0).max(0) as u64,
        upload_buffer: ctx.common.upload_buffer.unwrap_or(0).max(0) as u64,
    }
}

/// Rewrite the manifest object unchanged (no key needed): starts the transaction that
/// `with-lock` and `compact` commit, as borg 1.2 does.
pub fn start_noop_transaction(repo: &dyn Repository) -> Result<()> {
    let manifest = repo.get(&rborg::repository::MANIFEST_ID)?;
    repo.put(&rborg::repository::MANIFEST_ID, &manifest)
}

/// borg's `with_repository(manifest=True)`: open, unlock the key, load and check the manifest,
/// run the security-dir checks.
pub fn open_with_manifest(
    ctx: &Context,
    location: &Location,
    exclusive: bool,
    ops: &[Operation],
) -> Result<Opened> {
    let repo = open_repository(ctx, location, exclusive)?;
    load_manifest(location, repo, ops, true)
}

/// The manifest part of [`open_with_manifest`] for an already opened repository: unlock the
/// key, load and check the manifest, and with `secure` run the security-dir checks (borg's
/// `with_repository(manifest=False)` commands load the manifest themselves and leave the
/// checks to the cache).
pub fn load_manifest(
    location: &Location,
    repo: Arc<dyn Repository>,
    ops: &[Operation],
    secure: bool,
) -> Result<Opened> {
    let stored = Manifest::fetch(repo.as_ref())?;
    let key = open_key(repo.as_ref(), &stored)?;
    let manifest = Manifest::decode(repo.as_ref(), &key, &stored, ops)?;
    if secure {
        let id_hex = hex::encode(repo.id());
        let security = SecurityManager::new(&id_hex, &location.canonical_path());
        let cache_config = CacheConfigInfo::read(&rborg::paths::repo_cache_dir(&id_hex));
        security.assert_secure(&manifest, &key, cache_config.as_ref())?;
    }
    Ok(Opened {
        location: location.clone(),
        repo,
        key: Arc::new(key),
        manifest,
    })
}

/// Open the persistent cache of an opened repository with the common options (files cache
/// disabled: every command but `create` uses it so).
pub fn open_cache(ctx: &Context, opened: &Opened) -> Result<rborg::cache::Cache> {
    let opts = rborg::cache::CacheOptions {
        lock_wait: ctx.common.lock_wait as f64,
        progress: ctx.common.progress,
        consider_part_files: ctx.common.consider_part_files,
        ..Default::default()
    };
    rborg::cache::Cache::open(
        opened.repo.clone(),
        opened.key.clone(),
        &opened.manifest,
        &opened.location.canonical_path(),
        &opts,
    )
}

/// The include/exclude options in command-line order.
pub fn pattern_args(p: &PatternArgs) -> Vec<PatternArg> {
    p.ordered
        .iter()
        .map(|o| match o {
            PatternOption::Exclude(s) => PatternArg::Exclude(s.as_encoded_bytes().to_vec()),
            PatternOption::ExcludeFrom(f) => PatternArg::ExcludeFrom(f.clone()),
            PatternOption::Pattern(s) => PatternArg::Pattern(s.as_encoded_bytes().to_vec()),
            PatternOption::PatternsFrom(f) => PatternArg::PatternsFrom(f.clone()),
        })
        .collect()
}

/// borg's `build_matcher` for commands with PATH arguments (extract, list, diff, …): the
/// patterns, then the PATHs (and `R` roots of patterns files) as `pp:` includes.
pub fn build_matcher(patterns: &PatternArgs, paths: &[OsString]) -> Result<PatternMatcher> {
    let list = PatternList::from_args(&pattern_args(patterns))?;
    let mut include: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| p.as_encoded_bytes().to_vec())
        .collect();
    include.extend(list.roots.iter().cloned());
    PatternMatcher::build(list.rules, &include)
}

/// The archive selection options as the engine's filter (placeholders expanded).
pub fn archive_filter(
    args: &ArchiveFilterArgs,
    consider_checkpoints: bool,
) -> Result<ArchiveFilter> {
    let glob = args
        .glob
        .glob()
        .map(|g| rborg::location::replace_placeholders(&g, None))
        .transpose()?;
    Ok(ArchiveFilter {
        glob,
        sort_by: args.sort_keys().join(","),
        first: args.first.map(|n| n as usize),
        last: args.last.map(|n| n as usize),
        consider_checkpoints,
    })
}

/// The `repository` and `encryption` objects every `--json` output starts with
/// (borg's `basic_json_data`).
pub fn basic_json(opened: &Opened) -> Result<Map<String, Value>> {
    let mut data = Map::new();
    let last_modified = opened.manifest.last_modified()?;
    data.insert(
        "repository".into(),
        json!({
            "id": hex::encode(opened.repo.id()),
            "last_modified": human::isoformat_archive_time(&last_modified),
            "location": opened.location.canonical_path(),
        }),
    );
    let mut enc = Map::new();
    enc.insert(
        "mode".into(),
        Value::from(opened.key.key_type().mode_name()),
    );
    if let Some(kf) = opened.key.keyfile_path() {
        enc.insert("keyfile".into(), Value::from(kf.display().to_string()));
    }
    data.insert("encryption".into(), Value::Object(enc));
    Ok(data)
}

/// Print a `--json` document.
pub fn print_json(data: Map<String, Value>) {
    output::print_json(&Value::Object(data));
}
