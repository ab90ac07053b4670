//! Archives: manifest, archive metadata, items and the item stream (repository-format.md §7).

pub mod check;
pub mod create;
pub mod diff;
pub mod extract;
pub mod item;
pub mod itembuf;
pub mod manifest;
pub mod meta;
pub mod objects;
pub mod ordered;
pub mod prefetch;
pub mod prune;
pub mod recreate;
pub mod stats;
pub mod upgrade;

pub use item::{ChunkRef, Item};
pub use manifest::{ArchiveFilter, ArchiveInfo, Manifest, Operation};
pub use meta::{Archive, ArchiveMeta, ItemIter};
pub use stats::Statistics;

/// Bytes as text the way borg displays them: valid UTF-8 as is, every undecodable byte as `?`.
pub fn display_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push('?');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_replaces_each_bad_byte() {
        assert_eq!(super::display_bytes(b"latin1-\xe9.txt"), "latin1-?.txt");
        assert_eq!(super::display_bytes("ü€".as_bytes()), "ü€");
        assert_eq!(super::display_bytes(b"\xff\xfe"), "??");
    }
}
