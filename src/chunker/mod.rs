//! Chunkers (repository-format.md §6): borg's buzhash with identical boundaries, and fixed.

use crate::errors::Result;

/// `--chunker-params`: `buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW` or `fixed,BLOCK[,HEADER]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkerParams {
    Buzhash { min_exp: u32, max_exp: u32, mask_bits: u32, window: u32 },
    Fixed { block: u32, header: u32 },
}

impl ChunkerParams {
    /// Parse and validate as borg's argument parser does.
    pub fn parse(_s: &str) -> Result<ChunkerParams> {
        unimplemented!("chunker::ChunkerParams::parse")
    }
}
