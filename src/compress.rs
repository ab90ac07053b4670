//! The compression envelope (repository-format.md §5): none, lz4, zstd, zlib, lzma, auto,
//! obfuscate. Decoding dispatches on the 2-byte header (zlib has none).

use crate::errors::Result;

/// A parsed `-C/--compression` spec.
#[derive(Debug, Clone, PartialEq)]
pub enum CompressionSpec {
    None,
    Lz4,
    Zstd(i32),
    Zlib(u32),
    Lzma(u32),
    Auto(Box<CompressionSpec>),
    Obfuscate(u32, Box<CompressionSpec>),
}

impl CompressionSpec {
    /// Parse `none`, `lz4`, `zstd[,L]`, `zlib[,L]`, `lzma[,L]`, `auto,SPEC`, `obfuscate,S,SPEC`.
    pub fn parse(_spec: &str) -> Result<CompressionSpec> {
        unimplemented!("compress::CompressionSpec::parse")
    }

    /// Compress `data` into a borg envelope (header + body), with borg's fallbacks.
    pub fn compress(&self, _data: &[u8]) -> Vec<u8> {
        unimplemented!("compress::CompressionSpec::compress")
    }
}

/// Decompress a borg envelope (any algorithm) into the plaintext.
pub fn decompress(_data: &[u8]) -> Result<Vec<u8>> {
    unimplemented!("compress::decompress")
}
