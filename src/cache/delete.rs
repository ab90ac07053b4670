//! Deleting an archive (borg's `Archive.delete`): every chunk it references loses one
//! reference through the cache (objects left without references are deleted from the
//! repository), then the archive leaves the manifest. The caller writes the manifest and
//! commits repository and cache.

use crate::archive::{Archive, Manifest, Statistics};
use crate::errors::{ErrorKind, Result};
use crate::output;
use crate::output::progress::ProgressPercent;
use crate::repository::ObjectId;

use super::sync::{item_chunk_refs, ItemStream, StreamEvent};
use super::Cache;

/// How to delete.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOptions {
    /// `--force` count: 1 tolerates a damaged item stream and missing objects.
    pub forced: u8,
    /// Show `Decrementing references` progress (msgid `archive.delete`).
    pub progress: bool,
    /// Count part files as regular files in the statistics.
    pub consider_part_files: bool,
}

/// Whether an error may be ignored in forced mode (damaged data, missing objects).
fn tolerable(forced: u8, e: &crate::errors::Error) -> bool {
    forced > 0
        && (e.is(ErrorKind::RepositoryObjectNotFound)
            || e.is(ErrorKind::IntegrityError)
            || e.is(ErrorKind::DecompressionError)
            || e.is(ErrorKind::Exception))
}

/// Delete the archive called `name` from the repository (through `cache`) and `manifest`.
/// Deleted sizes go into `stats` as borg's negative update (see [`Cache::chunk_decref`]).
/// Returns false when forced mode had to skip damaged parts (then `check --repair` frees
/// the rest).
pub fn delete_archive(
    cache: &mut Cache,
    manifest: &mut Manifest,
    name: &[u8],
    stats: &mut Statistics,
    opts: DeleteOptions,
) -> Result<bool> {
    let info = manifest.lookup(name).cloned().ok_or_else(|| {
        crate::errors::Error::new(
            ErrorKind::ArchiveDoesNotExist,
            [crate::archive::display_bytes(name)],
        )
    })?;
    let archive = Archive::load(cache.repo.as_ref(), &cache.key, &info.id)?;
    let mut damaged = false;
    let forced = opts.forced;
    let decref = |cache: &mut Cache,
                  id: &ObjectId,
                  stats: &mut Statistics,
                  part: bool,
                  damaged: &mut bool| {
        match cache.chunk_decref_part(id, stats, part) {
            // the object is gone already: fine when forced
            Err(e) if e.is(ErrorKind::RepositoryObjectNotFound) && forced > 0 => {
                *damaged = true;
                Ok(())
            }
            other => other,
        }
    };
    let ids = archive.meta.items.clone();
    let mut pi = ProgressPercent::new(
        ids.len() as u64,
        5.0,
        "Decrementing references %3.0f%%",
        "archive.delete",
    );
    let mut stream = ItemStream::new(&cache.repo, &cache.key, &ids);
    let mut chunk_no = 0u64;
    while let Some(event) = stream.next_event() {
        let event = match event {
            Ok(ev) => ev,
            Err(e) if tolerable(opts.forced, &e) => {
                damaged = true;
                break;
            }
            Err(e) => return Err(e),
        };
        match event {
            StreamEvent::Chunk(id, _, _) => {
                if opts.progress {
                    pi.show(Some(chunk_no), None);
                }
                chunk_no += 1;
                decref(cache, &id, stats, false, &mut damaged)?;
            }
            StreamEvent::Item(v) => {
                let (chunks, has_part) = match item_chunk_refs(&v) {
                    Ok(r) => r,
                    Err(e) if tolerable(opts.forced, &e) => {
                        damaged = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let part = has_part && !opts.consider_part_files;
                for (id, _, _) in chunks.unwrap_or_default() {
                    decref(cache, &id, stats, part, &mut damaged)?;
                }
            }
        }
    }
    if opts.progress {
        pi.finish();
    }
    // even when the items were damaged, the metadata object and the manifest entry go
    decref(cache, &info.id, stats, false, &mut damaged)?;
    manifest.remove_archive(name);
    if damaged {
        output::warning("forced deletion succeeded, but the deleted archive was corrupted.");
        output::warning("borg check --repair is required to free all space.");
    }
    Ok(!damaged)
}
