//! Rebuilding a lost manifest from the archive metadata objects (borg's `rebuild_manifest`).

use rayon::prelude::*;
use rmpv::Value;

use super::robust::valid_msgpacked_dict;
use super::{integrity_text, log_info, log_warning, Checker};
use crate::archive::manifest::parse_timestamp;
use crate::archive::Manifest;
use crate::errors::Result;
use crate::msgpack::{self, ValueExt};
use crate::output::ProgressPercent;
use crate::repository::ObjectId;

/// Keys an archive metadata map may have; its first key must be one of them.
const ARCHIVE_KEYS: &[&str] = &[
    "version",
    "name",
    "items",
    "cmdline",
    "hostname",
    "username",
    "time",
    "time_end",
    "comment",
    "chunker_params",
    "recreate_cmdline",
    "recreate_source_id",
    "recreate_args",
    "recreate_partial_chunks",
    "size",
    "csize",
    "nfiles",
    "size_parts",
    "csize_parts",
    "nfiles_parts",
    // borg 1.4 (rborg writes it too)
    "cwd",
];

/// Keys every archive metadata map has.
const REQUIRED_ARCHIVE_KEYS: &[&str] = &["version", "name", "items", "cmdline", "time"];

/// Objects fetched and decrypted together.
const BATCH: usize = 64;

/// The msgpack form of each name (how it appears as a map key).
pub(super) fn serialized_keys<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    names
        .into_iter()
        .map(|n| msgpack::pack(&msgpack::bytes(n.to_vec())))
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The archive metadata map in `plaintext`, if it looks like one (borg's cheap tests first:
/// a map starting with an archive key, containing `cmdline` and `version: 1`).
fn archive_metadata(plaintext: &[u8], keys_serialized: &[Vec<u8>]) -> Option<Value> {
    if !valid_msgpacked_dict(plaintext, keys_serialized)
        || !contains(plaintext, b"cmdline")
        || !contains(plaintext, b"\xa7version\x01")
    {
        return None;
    }
    let map = msgpack::unpack(plaintext).ok()?;
    let entries = map.as_entries()?;
    let has = |k: &str| {
        entries
            .iter()
            .any(|(key, _)| key.as_bytes() == Some(k.as_bytes()))
    };
    REQUIRED_ARCHIVE_KEYS.iter().all(|k| has(k)).then_some(map)
}

impl Checker {
    /// Scan every object for archive metadata and make a manifest listing those archives;
    /// a name found twice gets a `.1`, `.2`, … suffix.
    pub(super) fn rebuild_manifest(&mut self) -> Result<Manifest> {
        log_info("Rebuilding missing manifest, this might take some time...");
        let mut manifest = Manifest::empty();
        let keys_serialized = serialized_keys(ARCHIVE_KEYS.iter().map(|k| k.as_bytes()));
        let ids: Vec<ObjectId> = self.chunks.iter().map(|(id, _)| id).collect();
        let mut progress = ProgressPercent::new(
            ids.len() as u64,
            0.01,
            "Rebuilding manifest %6.2f%%",
            "check.rebuild_manifest",
        );
        for batch in ids.chunks(BATCH) {
            let stored = self.repo.get_many(batch)?;
            let key = &self.key;
            let decrypted: Vec<_> = batch
                .par_iter()
                .zip(stored.par_iter())
                .map(|(id, stored)| {
                    key.decrypt(Some(id), stored)
                        .map(|plain| archive_metadata(&plain, &keys_serialized))
                })
                .collect();
            for (id, found) in batch.iter().zip(decrypted) {
                progress.show(None, None);
                match found {
                    Err(e) => {
                        self.error(&format!("Skipping corrupted chunk: {}", integrity_text(&e)))
                    }
                    Ok(Some(archive)) => add_found_archive(&mut manifest, id, &archive),
                    Ok(None) => {}
                }
            }
        }
        progress.finish();
        log_info("Manifest rebuild complete.");
        Ok(manifest)
    }
}

fn add_found_archive(manifest: &mut Manifest, id: &ObjectId, archive: &Value) {
    let name = archive
        .get("name")
        .and_then(|n| n.as_bytes())
        .unwrap_or_default()
        .to_vec();
    let time = archive
        .get("time")
        .and_then(|t| t.as_bytes())
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    // borg would keep an unreadable time verbatim; without a time there is no manifest entry
    let Ok(ts) = parse_timestamp(&time) else {
        return;
    };
    let shown = crate::archive::display_bytes(&name);
    log_info(&format!("Found archive {shown}"));
    let mut stored_name = name.clone();
    if manifest.lookup(&name).is_some() {
        let mut i = 1;
        stored_name = loop {
            let mut candidate = name.clone();
            candidate.extend_from_slice(format!(".{i}").as_bytes());
            if manifest.lookup(&candidate).is_none() {
                break candidate;
            }
            i += 1;
        };
        log_warning(&format!(
            "Duplicate archive name {shown}, storing as {}",
            crate::archive::display_bytes(&stored_name)
        ));
    }
    manifest.set_archive(&stored_name, *id, ts);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_map(name: &str) -> Vec<u8> {
        msgpack::pack(&msgpack::sorted_map(vec![
            (Value::from("cmdline"), Value::Array(vec![])),
            (Value::from("items"), Value::Array(vec![])),
            (
                Value::from("name"),
                msgpack::bytes(name.as_bytes().to_vec()),
            ),
            (
                Value::from("time"),
                msgpack::bytes(b"2024-01-02T03:04:05.000006".to_vec()),
            ),
            (Value::from("version"), Value::from(1)),
        ]))
    }

    #[test]
    fn archive_metadata_is_recognised() {
        let keys = serialized_keys(ARCHIVE_KEYS.iter().map(|k| k.as_bytes()));
        assert!(archive_metadata(&archive_map("x"), &keys).is_some());
        // an item map is not an archive
        let item = msgpack::pack(&msgpack::sorted_map(vec![
            (Value::from("mtime"), Value::from(1)),
            (Value::from("path"), msgpack::bytes(b"cmdline".to_vec())),
        ]));
        assert!(archive_metadata(&item, &keys).is_none());
        assert!(archive_metadata(b"\x00\x01", &keys).is_none());
    }

    #[test]
    fn duplicate_names_get_a_number() {
        let mut manifest = Manifest::empty();
        let keys = serialized_keys(ARCHIVE_KEYS.iter().map(|k| k.as_bytes()));
        for i in 0..3u8 {
            let a = archive_metadata(&archive_map("x"), &keys).unwrap();
            add_found_archive(&mut manifest, &[i; 32], &a);
        }
        let names: Vec<&[u8]> = manifest.archives.iter().map(|a| &a.name[..]).collect();
        assert_eq!(names, vec![&b"x"[..], b"x.1", b"x.2"]);
        assert_eq!(manifest.archives[2].id, [2; 32]);
    }
}
