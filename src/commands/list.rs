//! `borg list`: archives of a repository, or items of an archive.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use rborg::archive::{Archive, Operation};
use rborg::cache::stats::sync_all;
use rborg::crypto::Key;
use rborg::errors::{Error, Result};
use rborg::hashindex::ChunkIndex;
use rborg::output::listing::{
    ArchiveView, ItemExtras, ItemView, ARCHIVE_META_KEYS, DEFAULT_ARCHIVE_FORMAT,
    DEFAULT_ITEM_FORMAT, HASH_KEYS, KEYS_REQUIRING_CHUNK_COUNTS,
};
use rborg::output::{self, FormatTemplate};
use rborg::repository::Repository;

use super::common::{
    archive_filter, basic_json, build_matcher, open_with_manifest, parse_location, print_json,
    ArchiveArg, Opened,
};
use super::Context;
use crate::cli::ListArgs;

pub fn run(ctx: &Context, args: &ListArgs) -> Result<()> {
    let location = parse_location(args.location.as_deref(), ArchiveArg::Optional)?;
    if location.archive.is_some() && args.json {
        return Err(Error::command(
            "The --json option is only valid for listing archives, not archive contents.",
        ));
    }
    if location.archive.is_none() && args.json_lines {
        return Err(Error::command(
            "The --json-lines option is only valid for listing archive contents, not archives.",
        ));
    }
    let opened = open_with_manifest(ctx, &location, false, &[Operation::Read])?;
    match location.archive.clone() {
        Some(name) => list_archive(ctx, args, &opened, &name),
        None => list_repository(args, &opened),
    }
}

fn list_repository(args: &ListArgs, opened: &Opened) -> Result<()> {
    let format = match (&args.format, args.short) {
        (Some(f), _) => f.clone(),
        (None, true) => "{archive}{NL}".to_string(),
        (None, false) => DEFAULT_ARCHIVE_FORMAT.to_string(),
    };
    let template = FormatTemplate::parse(&format)?;
    let keys = template.keys();
    let needs_meta = keys.iter().any(|k| ARCHIVE_META_KEYS.contains(&k.as_str()));
    let filter = archive_filter(&args.filter, args.consider_checkpoints)?;
    let mut json_archives = Vec::new();
    for info in filter.apply(&opened.manifest.archives)? {
        let archive = if needs_meta {
            Some(Archive::load(opened.repo.as_ref(), &opened.key, &info.id)?)
        } else {
            None
        };
        let view = ArchiveView {
            name: &info.name,
            id_hex: hex::encode(info.id),
            start: info.ts,
            meta: archive.as_ref().map(|a| &a.meta),
            tam_verified: archive.as_ref().is_some_and(|a| a.tam_verified),
        };
        if args.json {
            json_archives.push(view.json(&keys));
        } else {
            output::stdout_text(&template.render(&|k| view.value(k))?);
        }
    }
    if args.json {
        let mut data = basic_json(opened)?;
        data.insert("archives".into(), Value::Array(json_archives));
        print_json(data);
    }
    Ok(())
}

fn list_archive(ctx: &Context, args: &ListArgs, opened: &Opened, name: &str) -> Result<()> {
    let info = opened.manifest.get_archive(name)?.clone();
    let format = match (&args.format, args.short) {
        (Some(f), _) => f.clone(),
        (None, true) => "{path}{NL}".to_string(),
        (None, false) => DEFAULT_ITEM_FORMAT.to_string(),
    };
    let template = FormatTemplate::parse(&format)?;
    let keys = template.keys();
    let matcher = build_matcher(&args.patterns, &args.paths)?;
    let hashes: Vec<&'static str> = HASH_KEYS
        .iter()
        .copied()
        .filter(|h| keys.iter().any(|k| k == h))
        .collect();
    let counts = if keys
        .iter()
        .any(|k| KEYS_REQUIRING_CHUNK_COUNTS.contains(&k.as_str()))
    {
        Some(sync_all(&opened.repo, &opened.key, &opened.manifest.archives)?.master)
    } else {
        None
    };
    let archive = Archive::load(opened.repo.as_ref(), &opened.key, &info.id)?;
    let archive_name = rborg::archive::display_bytes(&info.name);
    let archive_id = hex::encode(info.id);
    let consider_parts = ctx.common.consider_part_files;
    for item in archive.items(opened.repo.clone(), opened.key.clone()) {
        let item = item?;
        if item.part.is_some() && !consider_parts {
            continue;
        }
        if !matcher.match_path(&item.path) {
            continue;
        }
        let extras = ItemExtras {
            digests: content_digests(&opened.repo, &opened.key, &item, &hashes)?,
            unique: counts.as_ref().map(|c| unique_chunks(c, &item)),
        };
        let view = ItemView {
            item: &item,
            archive_name: &archive_name,
            archive_id: &archive_id,
            extras: &extras,
        };
        if args.json_lines {
            output::print_json_line(&view.json(&keys));
        } else {
            output::stdout_text(&template.render(&|k| view.value(k))?);
        }
    }
    Ok(())
}

/// (dsize, dcsize, unique_chunks): chunks referenced as often repository-wide as in this item.
fn unique_chunks(master: &ChunkIndex, item: &rborg::archive::Item) -> (u64, u64, u64) {
    let Some(chunks) = &item.chunks else {
        return (0, 0, 0);
    };
    let mut here: HashMap<[u8; 32], u32> = HashMap::new();
    for c in chunks {
        *here.entry(c.id).or_default() += 1;
    }
    let mut out = (0, 0, 0);
    for c in chunks {
        if master.get(&c.id).is_some_and(|e| e.refcount == here[&c.id]) {
            out.0 += c.size as u64;
            out.1 += c.csize as u64;
            out.2 += 1;
        }
    }
    out
}

/// Hex digests of an item's content for the hash keys the format uses ("" without content).
fn content_digests(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    item: &rborg::archive::Item,
    hashes: &[&'static str],
) -> Result<HashMap<&'static str, String>> {
    let mut out = HashMap::new();
    if hashes.is_empty() {
        return Ok(out);
    }
    let Some(chunks) = &item.chunks else {
        return Ok(out);
    };
    let mut hashers: Vec<(&'static str, ContentHasher)> =
        hashes.iter().map(|h| (*h, ContentHasher::new(h))).collect();
    for c in chunks {
        let data = key.decrypt(Some(&c.id), &repo.get(&c.id)?)?;
        for (_, h) in hashers.iter_mut() {
            h.update(&data);
        }
    }
    for (name, h) in hashers {
        out.insert(name, h.hex());
    }
    Ok(out)
}

/// One of the content hashes `list --format` offers.
enum ContentHasher {
    Digest(Box<dyn sha2::digest::DynDigest>),
    Xxh64(xxhash_rust::xxh64::Xxh64),
}

impl ContentHasher {
    fn new(name: &str) -> ContentHasher {
        use sha2::digest::Digest;
        let boxed: Box<dyn sha2::digest::DynDigest> = match name {
            "md5" => Box::new(md5::Md5::new()),
            "sha1" => Box::new(sha1::Sha1::new()),
            "sha224" => Box::new(sha2::Sha224::new()),
            "sha256" => Box::new(sha2::Sha256::new()),
            "sha384" => Box::new(sha2::Sha384::new()),
            "sha512" => Box::new(sha2::Sha512::new()),
            "sha3_224" => Box::new(sha3::Sha3_224::new()),
            "sha3_256" => Box::new(sha3::Sha3_256::new()),
            "sha3_384" => Box::new(sha3::Sha3_384::new()),
            "sha3_512" => Box::new(sha3::Sha3_512::new()),
            "blake2b" => Box::new(blake2::Blake2b512::new()),
            "blake2s" => Box::new(blake2::Blake2s256::new()),
            _ => return ContentHasher::Xxh64(xxhash_rust::xxh64::Xxh64::new(0)),
        };
        ContentHasher::Digest(boxed)
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            ContentHasher::Digest(d) => d.update(data),
            ContentHasher::Xxh64(x) => x.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            ContentHasher::Digest(d) => hex::encode(d.finalize()),
            ContentHasher::Xxh64(x) => format!("{:016x}", x.digest()),
        }
    }
}
