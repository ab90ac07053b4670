//! Archives: manifest, archive metadata, items and the item stream.
