//! Archives: manifest, archive metadata, items and the item stream (repository-format.md §7).

pub mod item;

pub use item::{ChunkRef, Item};
