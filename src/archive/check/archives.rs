//! Walking the archives (borg's `rebuild_refcounts`): every archive's metadata, item stream
//! and file chunks are referenced; items are re-read past damaged item-metadata chunks,
//! missing file chunks are replaced (and healed when they reappear), and an archive whose
//! item stream changed is stored anew.

use std::collections::HashSet;

use rmpv::Value;

use super::rebuild::serialized_keys;
use super::robust::RobustUnpacker;
use super::{
    integrity_text, is_integrity_error, log_info, log_warning, ArchiveCheckOptions, Checker,
};
use crate::archive::item::{ITEM_KEYS, S_IFLNK, S_IFMT};
use crate::archive::itembuf::ItemBuffer;
use crate::archive::prefetch::{prefetch, DEFAULT_BUDGET};
use crate::archive::{display_bytes, ArchiveInfo, ArchiveMeta, Manifest};
use crate::errors::{Error, Result};
use crate::msgpack::{self, ValueExt};
use crate::output::ProgressPercent;
use crate::repository::{ObjectId, MANIFEST_ID};

/// Keys every item has.
const REQUIRED_ITEM_KEYS: &[&str] = &["mtime", "path"];

/// One entry of an item's chunk list: id, plaintext size, stored size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkEntry {
    id: ObjectId,
    size: u64,
    csize: u64,
}

impl ChunkEntry {
    fn to_value(self) -> Value {
        Value::Array(vec![
            msgpack::bytes(self.id.to_vec()),
            Value::from(self.size),
            Value::from(self.csize),
        ])
    }
}

fn chunk_list(v: &Value) -> Result<Vec<ChunkEntry>> {
    let bad = || Error::exception("invalid chunk list in item metadata");
    v.as_list()
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            let fields = c.as_list().filter(|f| f.len() == 3).ok_or_else(bad)?;
            Ok(ChunkEntry {
                id: fields[0]
                    .as_bytes()
                    .and_then(|b| ObjectId::try_from(b).ok())
                    .ok_or_else(bad)?,
                size: fields[1].as_uint().ok_or_else(bad)?,
                csize: fields[2].as_uint().ok_or_else(bad)?,
            })
        })
        .collect()
}

/// An item map's entry.
fn entry<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
        .map(|(_, v)| v)
}

fn remove_entry(entries: &mut Vec<(Value, Value)>, key: &str) {
    entries.retain(|(k, _)| k.as_bytes() != Some(key.as_bytes()));
}

fn set_entry(entries: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match entries
        .iter_mut()
        .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
    {
        Some(slot) => slot.1 = value,
        None => entries.push((Value::from(key), value)),
    }
}

/// A map key as borg lists it in messages.
fn key_text(k: &Value) -> String {
    match k.as_bytes() {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => k.to_string(),
    }
}

/// The entries of a well-formed item (the meaningless `acl` key of old attic items
/// dropped), or why it is not one.
fn valid_item(
    v: Value,
    item_keys: &HashSet<Vec<u8>>,
) -> std::result::Result<Vec<(Value, Value)>, String> {
    let Value::Map(mut entries) = v else {
        return Err("not a dictionary".into());
    };
    entries.retain(|(k, _)| k.as_bytes() != Some(b"acl"));
    let mut missing: Vec<&str> = REQUIRED_ITEM_KEYS
        .iter()
        .copied()
        .filter(|k| entry(&entries, k).is_none())
        .collect();
    if !missing.is_empty() {
        // borg shows a set (in no particular order); sorted here
        missing.sort();
        return Err(format!("missing required keys: {}", missing.join(", ")));
    }
    let mut invalid: Vec<String> = entries
        .iter()
        .filter(|(k, _)| !k.as_bytes().is_some_and(|k| item_keys.contains(k)))
        .map(|(k, _)| key_text(k))
        .collect();
    if !invalid.is_empty() {
        invalid.sort();
        invalid.dedup();
        return Err(format!("invalid keys: {}", invalid.join(", ")));
    }
    Ok(entries)
}

/// The item keys a valid item may use: borg's plus those the manifest lists.
fn known_item_keys(manifest: &Manifest) -> HashSet<Vec<u8>> {
    ITEM_KEYS
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .chain(manifest.item_keys.iter().cloned())
        .collect()
}

impl Checker {
    /// Check the chosen archives (all, by default) and update the manifest: archives whose
    /// metadata is lost are removed, repaired ones point to their new metadata object.
    pub(super) fn rebuild_refcounts(
        &mut self,
        manifest: &mut Manifest,
        opts: &ArchiveCheckOptions,
    ) -> Result<()> {
        self.chunks.remove(&MANIFEST_ID);
        let Some(infos) = self.archives_to_check(manifest, opts)? else {
            return Ok(());
        };
        let item_keys = known_item_keys(manifest);
        let n = infos.len();
        let mut progress = ProgressPercent::new(
            n as u64,
            0.1,
            "Checking archives %3.1f%%",
            "check.rebuild_refcounts",
        );
        for (i, info) in infos.iter().enumerate() {
            progress.show(Some(i as u64), None);
            log_info(&format!(
                "Analyzing archive {} ({}/{n})",
                info.name_lossy(),
                i + 1
            ));
            match self.check_archive(info, &item_keys)? {
                Some(id) => {
                    if let Some(entry) = manifest.archives.iter_mut().find(|a| a.name == info.name)
                    {
                        entry.id = id;
                    }
                }
                None => {
                    manifest.remove_archive(&info.name);
                }
            }
        }
        progress.finish();
        Ok(())
    }

    /// The archives to check in order; None (after reporting) if the named one is absent.
    fn archives_to_check(
        &mut self,
        manifest: &Manifest,
        opts: &ArchiveCheckOptions,
    ) -> Result<Option<Vec<ArchiveInfo>>> {
        if let Some(name) = &opts.archive {
            let Some(info) = manifest.lookup(name) else {
                self.error(&format!("Archive '{}' not found.", display_bytes(name)));
                return Ok(None);
            };
            return Ok(Some(vec![info.clone()]));
        }
        let filter = &opts.filter;
        let infos: Vec<ArchiveInfo> = filter
            .apply(&manifest.archives)?
            .into_iter()
            .cloned()
            .collect();
        if let Some(glob) = &filter.glob {
            if infos.is_empty() {
                log_warning(&format!(
                    "--glob-archives {glob} does not match any archives"
                ));
            }
        }
        if let Some(first) = filter.first.filter(|&n| infos.len() < n) {
            log_warning(&format!(
                "--first {first} archives: only found {} archives",
                infos.len()
            ));
        }
        if let Some(last) = filter.last.filter(|&n| infos.len() < n) {
            log_warning(&format!(
                "--last {last} archives: only found {} archives",
                infos.len()
            ));
        }
        Ok(Some(infos))
    }

    /// Check one archive; its (possibly new) metadata id, or None if its metadata is lost.
    fn check_archive(
        &mut self,
        info: &ArchiveInfo,
        item_keys: &HashSet<Vec<u8>>,
    ) -> Result<Option<ObjectId>> {
        let id = info.id;
        if !self.chunks.contains(&id) {
            self.error(&format!(
                "Archive metadata block {} is missing!",
                hex::encode(id)
            ));
            return Ok(None);
        }
        self.mark_as_possibly_superseded(&id);
        let stored = self.repo.get(&id)?;
        // borg 1.2 does not look at archive TAMs here; an archive stored anew gets a valid one
        let unpacked = self
            .key
            .decrypt(Some(&id), &stored)
            .and_then(|plain| self.key.unpack_and_verify_archive_with(&plain, true, true));
        let (map, _verified, salt) = match unpacked {
            Ok(unpacked) => unpacked,
            Err(e) if is_integrity_error(&e) => {
                self.error(&format!(
                    "Archive metadata block {} is corrupted: {}",
                    hex::encode(id),
                    integrity_text(&e)
                ));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let meta = ArchiveMeta::from_value(map)?;
        let name = info.name_lossy();
        let items = self.rewrite_items(&name, &meta.items, item_keys)?;
        for previous in &meta.items {
            self.mark_as_possibly_superseded(previous);
        }
        if items == meta.items {
            // kept as stored: borg 1.2.4 packs an unchanged archive to the same bytes again
            self.add_existing_reference(&id);
            return Ok(Some(id));
        }
        let mut map = meta.raw;
        if let Value::Map(entries) = &mut map {
            let ids = items.iter().map(|i| msgpack::bytes(i.to_vec())).collect();
            set_entry(entries, "items", Value::Array(ids));
        }
        let salt = salt.and_then(|s| <[u8; 64]>::try_from(s).ok());
        let packed = self
            .key
            .pack_and_authenticate_metadata(map, b"archive", salt);
        let new_id = self.key.id_hash(&packed);
        self.add_reference(&new_id, &packed)?;
        Ok(Some(new_id))
    }

    /// Re-read the item stream `ids` (skipping and reporting what is missing or unreadable,
    /// resynchronising after a gap), check each item's chunks and store the items as a new
    /// item stream; its chunk ids.
    fn rewrite_items(
        &mut self,
        archive_name: &str,
        ids: &[ObjectId],
        item_keys: &HashSet<Vec<u8>>,
    ) -> Result<Vec<ObjectId>> {
        let mut keys: Vec<&[u8]> = item_keys.iter().map(|k| &k[..]).collect();
        keys.sort();
        let mut unpacker = RobustUnpacker::new(serialized_keys(keys));
        let mut buffer = ItemBuffer::new(self.key.chunk_seed());
        let mut chunk_no = 0;
        let mut first_run = true;
        let present: Vec<bool> = ids.iter().map(|id| self.chunks.contains(id)).collect();
        let mut start = 0;
        while start < ids.len() {
            let end = (start..ids.len())
                .find(|&i| present[i] != present[start])
                .unwrap_or(ids.len());
            let run = &ids[start..end];
            let run_present = present[start];
            start = end;
            let after_gap = !std::mem::take(&mut first_run);
            if !run_present {
                for id in run {
                    self.report_item_chunk("item metadata chunk missing", id, chunk_no);
                    chunk_no += 1;
                }
                continue;
            }
            if after_gap {
                unpacker.resync();
            }
            let hinted: Vec<(ObjectId, u64)> = run.iter().map(|id| (*id, 512 * 1024)).collect();
            let fetched = prefetch(
                self.repo.clone(),
                self.key.clone(),
                hinted,
                DEFAULT_BUDGET / 4,
            );
            for (id, data) in run.iter().zip(fetched) {
                match data {
                    Ok((data, _)) => {
                        unpacker.feed(&data);
                        self.unpack_items(
                            archive_name,
                            &mut unpacker,
                            item_keys,
                            &mut buffer,
                            id,
                            chunk_no,
                        )?;
                    }
                    Err(e) if is_integrity_error(&e) => {
                        self.report_item_chunk(&integrity_text(&e), id, chunk_no)
                    }
                    Err(e) => return Err(e),
                }
                chunk_no += 1;
            }
        }
        buffer.flush(true, &mut |chunk| self.store_item_chunk(chunk))?;
        Ok(buffer.chunks)
    }

    /// Take the items now complete in the unpacker.
    fn unpack_items(
        &mut self,
        archive_name: &str,
        unpacker: &mut RobustUnpacker,
        item_keys: &HashSet<Vec<u8>>,
        buffer: &mut ItemBuffer,
        id: &ObjectId,
        chunk_no: usize,
    ) -> Result<()> {
        loop {
            match unpacker.next_value() {
                Ok(Some(v)) => match valid_item(v, item_keys) {
                    Ok(entries) => self.add_item(archive_name, entries, buffer)?,
                    Err(reason) => self.report_item_chunk(
                        &format!(
                            "Did not get expected metadata dict when unpacking item metadata ({reason})"
                        ),
                        id,
                        chunk_no,
                    ),
                },
                Ok(None) => return Ok(()),
                Err(_) => {
                    self.report_item_chunk(
                        "Unpacker crashed while unpacking item metadata, trying to resync...",
                        id,
                        chunk_no,
                    );
                    unpacker.resync();
                    return Ok(());
                }
            }
        }
    }

    /// A problem with item-stream chunk number `chunk_no` (named as `debug
    /// dump-archive-items` names its files).
    fn report_item_chunk(&mut self, msg: &str, id: &ObjectId, chunk_no: usize) {
        self.error(&format!("{msg} [chunk: {chunk_no:06}_{}]", hex::encode(id)));
    }

    fn store_item_chunk(&mut self, chunk: &[u8]) -> Result<ObjectId> {
        let id = self.key.id_hash(chunk);
        self.add_reference(&id, chunk)?;
        Ok(id)
    }

    /// Check a valid item's chunks and append it (keys sorted, as borg writes items).
    fn add_item(
        &mut self,
        archive_name: &str,
        mut entries: Vec<(Value, Value)>,
        buffer: &mut ItemBuffer,
    ) -> Result<()> {
        if entry(&entries, "chunks").is_some() {
            self.verify_file_chunks(archive_name, &mut entries)?;
        }
        let item = msgpack::sorted_map(entries);
        buffer.add_value(&item, &mut |chunk| self.store_item_chunk(chunk))
    }

    /// Reference the item's chunks. A missing chunk is replaced by an all-zero chunk of its
    /// size (the original list is kept as `chunks_healthy`); a chunk missing before that is
    /// present again takes its place back.
    fn verify_file_chunks(
        &mut self,
        archive_name: &str,
        entries: &mut Vec<(Value, Value)>,
    ) -> Result<()> {
        let path = display_bytes(
            entry(entries, "path")
                .and_then(|p| p.as_bytes())
                .unwrap_or_default(),
        );
        let current_value = entry(entries, "chunks").cloned().unwrap_or(Value::Nil);
        let current = chunk_list(&current_value)?;
        let mut has_healthy = entry(entries, "chunks_healthy").is_some();
        let mut healthy = match entry(entries, "chunks_healthy") {
            Some(v) => chunk_list(v)?,
            None => current.clone(),
        };
        if has_healthy && healthy.len() != current.len() {
            log_warning(&format!(
                "{archive_name}: {path}: Invalid chunks_healthy metadata removed!"
            ));
            remove_entry(entries, "chunks_healthy");
            has_healthy = false;
            healthy = current.clone();
        }
        let mut list = Vec::with_capacity(current.len());
        let mut replaced = false;
        let mut offset = 0u64;
        for (cur, heal) in current.iter().zip(&healthy) {
            let range = format!("Byte {offset}-{}", offset + heal.size);
            let chunk = if !self.chunks.contains(&heal.id) {
                if cur == heal {
                    self.error(&format!(
                        "{archive_name}: {path}: New missing file chunk detected ({range}, \
                         Chunk {}). Replacing with all-zero chunk.",
                        hex::encode(heal.id)
                    ));
                    replaced = true;
                    self.replacement_chunk(heal.size)?
                } else {
                    log_info(&format!(
                        "{archive_name}: {path}: Previously missing file chunk is still missing \
                         ({range}, Chunk {}). It has an all-zero replacement chunk already.",
                        hex::encode(heal.id)
                    ));
                    if self.chunks.contains(&cur.id) {
                        self.add_existing_reference(&cur.id);
                        *cur
                    } else {
                        log_warning(&format!(
                            "{archive_name}: {path}: Missing all-zero replacement chunk detected \
                             (Byte {offset}-{}, Chunk {}). Generating new replacement chunk.",
                            offset + cur.size,
                            hex::encode(cur.id)
                        ));
                        self.error_found = true;
                        replaced = true;
                        self.replacement_chunk(cur.size)?
                    }
                }
            } else {
                self.add_existing_reference(&heal.id);
                if cur != heal {
                    log_info(&format!(
                        "{archive_name}: {path}: Healed previously missing file chunk! \
                         ({range}, Chunk {}).",
                        hex::encode(heal.id)
                    ));
                    // the all-zero replacement may have lost its last reference
                    self.mark_as_possibly_superseded(&cur.id);
                }
                *heal
            };
            offset += chunk.size;
            list.push(chunk);
        }
        if replaced && !has_healthy {
            // the first repair of this file remembers its real chunks, to heal it later
            entries.push((Value::from("chunks_healthy"), current_value));
        }
        if has_healthy && list == healthy {
            log_info(&format!(
                "{archive_name}: {path}: Completely healed previously damaged file!"
            ));
            remove_entry(entries, "chunks_healthy");
        }
        let size_from_chunks: u64 = list.iter().map(|c| c.size).sum();
        set_entry(
            entries,
            "chunks",
            Value::Array(list.into_iter().map(ChunkEntry::to_value).collect()),
        );
        self.check_item_size(archive_name, &path, entries, size_from_chunks);
        Ok(())
    }

    /// Warn when the item's recorded size differs from its chunks' (kept as is, so that
    /// extract warns too).
    fn check_item_size(
        &self,
        archive_name: &str,
        path: &str,
        entries: &[(Value, Value)],
        size_from_chunks: u64,
    ) {
        let Some(size) = entry(entries, "size").and_then(|s| s.as_uint()) else {
            return;
        };
        let mode = entry(entries, "mode")
            .and_then(|m| m.as_uint())
            .unwrap_or(0) as u32;
        let chunks_size = if mode & S_IFMT == S_IFLNK {
            entry(entries, "source")
                .and_then(|s| s.as_bytes())
                .map_or(0, |s| s.len() as u64)
        } else {
            size_from_chunks
        };
        if size != chunks_size {
            log_warning(&format!(
                "{archive_name}: {path}: size inconsistency detected: size {size}, chunks size {chunks_size}"
            ));
        }
    }

    /// An all-zero chunk of `size` bytes, referenced (and stored when repairing and new).
    fn replacement_chunk(&mut self, size: u64) -> Result<ChunkEntry> {
        let zeros = vec![0u8; size as usize];
        let id = self.key.id_hash(&zeros);
        // the stored size as borg records it: this chunk encrypted now
        let stored = match &self.writer {
            Some(writer) => Some(writer.encrypt(&zeros)?),
            None => None,
        };
        let csize = stored.as_ref().map_or(0, |s| s.len() as u64);
        if self.chunks.incref(&id).is_none() {
            if let Some(stored) = &stored {
                self.repo.put(&id, stored)?;
            }
            self.chunks.insert(
                &id,
                crate::hashindex::ChunkIndexEntry {
                    refcount: 1,
                    size: size as u32,
                    csize: csize as u32,
                },
            );
        }
        Ok(ChunkEntry { id, size, csize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> HashSet<Vec<u8>> {
        ITEM_KEYS.iter().map(|k| k.as_bytes().to_vec()).collect()
    }

    #[test]
    fn items_need_path_and_mtime_and_known_keys() {
        let map = |pairs: Vec<(&str, Value)>| {
            Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), v))
                    .collect(),
            )
        };
        assert_eq!(
            valid_item(Value::from(3), &keys()).unwrap_err(),
            "not a dictionary"
        );
        assert_eq!(
            valid_item(map(vec![("user", Value::from("x"))]), &keys()).unwrap_err(),
            "missing required keys: mtime, path"
        );
        let odd = map(vec![
            ("path", Value::from("p")),
            ("mtime", Value::from(1)),
            ("zz", Value::from(1)),
            ("aa", Value::from(1)),
        ]);
        assert_eq!(
            valid_item(odd, &keys()).unwrap_err(),
            "invalid keys: aa, zz"
        );
        let attic = map(vec![
            ("path", Value::from("p")),
            ("mtime", Value::from(1)),
            ("acl", Value::Nil),
        ]);
        assert_eq!(valid_item(attic, &keys()).unwrap().len(), 2);
    }

    #[test]
    fn chunk_lists_round_trip() {
        let entry = ChunkEntry {
            id: [7; 32],
            size: 10,
            csize: 51,
        };
        let v = Value::Array(vec![entry.to_value(), entry.to_value()]);
        assert_eq!(chunk_list(&v).unwrap(), vec![entry, entry]);
        assert!(chunk_list(&Value::from(1)).is_err());
    }
}
