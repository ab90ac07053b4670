//! The statistics blocks of `info`, `create --stats`, `delete/prune --stats` (cli.md §9.3–9.4).

use serde_json::{json, Value};

use super::human::format_file_size;
use crate::cache::stats::Summary;

/// 78 dashes, borg's DASHES.
pub const DASHES: &str =
    "------------------------------------------------------------------------------";

/// The fixed column header above size rows.
pub const STATS_HEADER: &str =
    "                       Original size      Compressed size    Deduplicated size";

/// `This archive:` / `Deleted data:` row: label padded to 15, sizes right-aligned in 20.
pub fn size_row(label: &str, osize: i64, csize: i64, dsize: i64, iec: bool) -> String {
    format!(
        "{:<15} {:>20} {:>20} {:>20}",
        label,
        format_file_size(osize, iec),
        format_file_size(csize, iec),
        format_file_size(dsize, iec)
    )
}

/// The "All archives" and chunk index lines (borg's CacheStatsMixin string).
pub fn cache_block(s: &Summary, iec: bool) -> String {
    format!(
        "All archives:   {:>20} {:>20} {:>20}\n\n                       Unique chunks         Total chunks\nChunk index:    {:>20} {:>20}",
        format_file_size(s.total_size as i64, iec),
        format_file_size(s.total_csize as i64, iec),
        format_file_size(s.unique_csize as i64, iec),
        s.total_unique_chunks,
        s.total_chunks
    )
}

/// The JSON `cache` object.
pub fn cache_json(path: &str, s: &Summary) -> Value {
    json!({
        "path": path,
        "stats": {
            "total_chunks": s.total_chunks,
            "total_csize": s.total_csize,
            "total_size": s.total_size,
            "total_unique_chunks": s.total_unique_chunks,
            "unique_csize": s.unique_csize,
            "unique_size": s.unique_size,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_like_borg() {
        assert_eq!(
            size_row("This archive:", 100060, 100080, 465, false),
            "This archive:              100.06 kB            100.08 kB                465 B"
        );
        let s = Summary {
            total_size: 800506,
            total_csize: 800626,
            unique_size: 0,
            unique_csize: 105889,
            total_unique_chunks: 18,
            total_chunks: 58,
        };
        assert_eq!(
            cache_block(&s, false),
            "All archives:              800.51 kB            800.63 kB            105.89 kB\n\n                       Unique chunks         Total chunks\nChunk index:                      18                   58"
        );
    }
}
