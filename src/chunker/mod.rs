//! Chunkers (repository-format.md §6): borg's buzhash with identical boundaries, and fixed.
//!
//! [`ChunkerParams`] is `--chunker-params` and the `chunker_params` stored per archive;
//! [`Chunker`] cuts a reader or a file into [`Chunk`]s.

pub mod buzhash;
pub mod fixed;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

use rmpv::Value;

use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::ValueExt;

pub use buzhash::{
    buzhash, buzhash_update, seed_from_chunk_seed, BuzhashChunker, BuzhashChunks, BuzhashCutter,
};
pub use fixed::{sparse_map, FileRange, FixedChunker, FixedChunks};

/// borg's MAX_DATA_SIZE: the largest chunk/block the repository accepts.
pub const MAX_DATA_SIZE: u32 = 20_971_479;

/// `--chunker-params`: `buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW` or `fixed,BLOCK[,HEADER]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkerParams {
    Buzhash {
        min_exp: u32,
        max_exp: u32,
        mask_bits: u32,
        window: u32,
    },
    Fixed {
        block: u32,
        header: u32,
    },
}

/// borg's default for file contents: `buzhash,19,23,21,4095`.
pub const CHUNKER_PARAMS: ChunkerParams = ChunkerParams::Buzhash {
    min_exp: 19,
    max_exp: 23,
    mask_bits: 21,
    window: 4095,
};

/// The params borg uses for archive item metadata streams: `buzhash,15,19,17,4095`.
pub const ITEMS_CHUNKER_PARAMS: ChunkerParams = ChunkerParams::Buzhash {
    min_exp: 15,
    max_exp: 19,
    mask_bits: 17,
    window: 4095,
};

impl Default for ChunkerParams {
    fn default() -> ChunkerParams {
        CHUNKER_PARAMS
    }
}

/// An argparse-style message (the CLI prefixes `argument --chunker-params: `), rc 2.
fn arg_error(message: String) -> Error {
    Error {
        kind: ErrorKind::Error,
        message,
    }
}

impl ChunkerParams {
    /// Parse and validate as borg 1.4.5's argument type does. Errors carry argparse's bare
    /// message, e.g. `required: chunk_min <= chunk_mask <= chunk_max` or
    /// `invalid ChunkerParams value: 'x'` (non-integer fields).
    pub fn parse(text: &str) -> Result<ChunkerParams> {
        let params: Vec<&str> = crate::python::strip(text).split(',').collect();
        let invalid_value = || {
            arg_error(format!(
                "invalid ChunkerParams value: {}",
                crate::python::repr(text)
            ))
        };
        let int = |s: &str| crate::python::parse_int(s).ok_or_else(invalid_value);
        let count = params.len();
        let algo = params[0].to_lowercase();
        if algo == "fixed" && (2..=3).contains(&count) {
            let block = int(params[1])?;
            let header = if count == 3 { int(params[2])? } else { 0 };
            if block < 64 {
                return Err(arg_error(
                    "block_size must not be less than 64 Bytes".into(),
                ));
            }
            if block > MAX_DATA_SIZE as i64 || header > MAX_DATA_SIZE as i64 {
                return Err(arg_error(format!(
                    "block_size and header_size must not exceed MAX_DATA_SIZE [{MAX_DATA_SIZE}]"
                )));
            }
            // borg accepts a negative header (then unused); it cannot be recorded here
            let header = u32::try_from(header).map_err(|_| invalid_value())?;
            return Ok(ChunkerParams::Fixed {
                block: block as u32,
                header,
            });
        }
        if algo == "default" && count == 1 {
            return Ok(CHUNKER_PARAMS);
        }
        if (algo == "buzhash" && count == 5) || count == 4 {
            let mut v = [0i64; 4];
            for (slot, p) in v.iter_mut().zip(&params[count - 4..]) {
                *slot = int(p)?;
            }
            let [min, max, mask, window] = v;
            if !(min <= mask && mask <= max) {
                return Err(arg_error(
                    "required: chunk_min <= chunk_mask <= chunk_max".into(),
                ));
            }
            if min < 6 {
                return Err(arg_error(
                    "min. chunk size exponent must not be less than 6 (2^6 = 64B min. chunk size)"
                        .into(),
                ));
            }
            if max > 23 {
                return Err(arg_error(
                    "max. chunk size exponent must not be more than 23 (2^23 = 8MiB max. chunk size)".into(),
                ));
            }
            if window % 2 == 0 {
                return Err(arg_error(
                    "window_size must be an uneven (odd) number".into(),
                ));
            }
            // borg only finds these when the chunker is built (assertion "too small max_size")
            if window < 0 || window + (1 << min) + 1 > (1 << max) {
                return Err(arg_error("too small max_size".into()));
            }
            return Ok(ChunkerParams::Buzhash {
                min_exp: min as u32,
                max_exp: max as u32,
                mask_bits: mask as u32,
                window: window as u32,
            });
        }
        Err(arg_error("invalid chunker params".into()))
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            ChunkerParams::Buzhash { .. } => "buzhash",
            ChunkerParams::Fixed { .. } => "fixed",
        }
    }

    /// The stored form in archive metadata: `[b'buzhash', 19, 23, 21, 4095]` or
    /// `[b'fixed', 4096, 0]`.
    pub fn to_value(&self) -> Value {
        let algo = crate::msgpack::bytes(self.algorithm().as_bytes());
        let nums: Vec<u32> = match *self {
            ChunkerParams::Buzhash {
                min_exp,
                max_exp,
                mask_bits,
                window,
            } => vec![min_exp, max_exp, mask_bits, window],
            ChunkerParams::Fixed { block, header } => vec![block, header],
        };
        Value::Array(
            std::iter::once(algo)
                .chain(nums.into_iter().map(Value::from))
                .collect(),
        )
    }

    /// Read stored params, including the algorithm-less 4-tuple of borg < 1.2 (buzhash).
    pub fn from_value(value: &Value) -> Result<ChunkerParams> {
        let bad = || {
            Error::generic(format!(
                "invalid chunker_params in archive metadata: {value}"
            ))
        };
        let items = value.as_list().ok_or_else(bad)?;
        let num = |v: &Value| {
            v.as_uint()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)
        };
        if items.len() == 4 && items[0].as_uint().is_some() {
            let [a, b, c, d] = [
                num(&items[0])?,
                num(&items[1])?,
                num(&items[2])?,
                num(&items[3])?,
            ];
            return Ok(ChunkerParams::Buzhash {
                min_exp: a,
                max_exp: b,
                mask_bits: c,
                window: d,
            });
        }
        let algo = items.first().and_then(|v| v.as_bytes()).ok_or_else(bad)?;
        match (algo, items.len()) {
            (b"buzhash", 5) => Ok(ChunkerParams::Buzhash {
                min_exp: num(&items[1])?,
                max_exp: num(&items[2])?,
                mask_bits: num(&items[3])?,
                window: num(&items[4])?,
            }),
            (b"fixed", 2) => Ok(ChunkerParams::Fixed {
                block: num(&items[1])?,
                header: 0,
            }),
            (b"fixed", 3) => Ok(ChunkerParams::Fixed {
                block: num(&items[1])?,
                header: num(&items[2])?,
            }),
            _ => Err(bad()),
        }
    }

    /// The form `info --json` shows: `["buzhash", 19, 23, 21, 4095]`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut items = vec![serde_json::Value::from(self.algorithm())];
        match *self {
            ChunkerParams::Buzhash {
                min_exp,
                max_exp,
                mask_bits,
                window,
            } => items.extend([min_exp, max_exp, mask_bits, window].map(serde_json::Value::from)),
            ChunkerParams::Fixed { block, header } => {
                items.extend([block, header].map(serde_json::Value::from))
            }
        }
        serde_json::Value::Array(items)
    }

    /// Python's repr of borg's params tuple, as in its log lines: `('buzhash', 19, 23, 21, 4095)`.
    pub fn py_repr(&self) -> String {
        match *self {
            ChunkerParams::Buzhash {
                min_exp,
                max_exp,
                mask_bits,
                window,
            } => {
                format!("('buzhash', {min_exp}, {max_exp}, {mask_bits}, {window})")
            }
            ChunkerParams::Fixed { block, header } => format!("('fixed', {block}, {header})"),
        }
    }
}

/// The `--chunker-params` spelling: `buzhash,19,23,21,4095` / `fixed,4096,0` (parses back).
impl fmt::Display for ChunkerParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChunkerParams::Buzhash {
                min_exp,
                max_exp,
                mask_bits,
                window,
            } => {
                write!(f, "buzhash,{min_exp},{max_exp},{mask_bits},{window}")
            }
            ChunkerParams::Fixed { block, header } => write!(f, "fixed,{block},{header}"),
        }
    }
}

/// One piece of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Bytes read from the input (not all zero).
    Data(Vec<u8>),
    /// This many bytes were read and all are zero (borg's CH_ALLOC).
    Zeros(usize),
    /// This many zero bytes of a sparse-file hole, not read (borg's CH_HOLE).
    Hole(usize),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Data(d) => d.len(),
            Chunk::Zeros(n) | Chunk::Hole(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All-zero content (read or hole).
    pub fn is_zero(&self) -> bool {
        !matches!(self, Chunk::Data(_))
    }

    /// The content, materialising zeros.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Chunk::Data(d) => d,
            Chunk::Zeros(n) | Chunk::Hole(n) => vec![0u8; n],
        }
    }
}

/// Whether every byte is zero (fast path over 16-byte words).
pub fn is_all_zero(data: &[u8]) -> bool {
    let words = data.chunks_exact(16);
    let tail = words.remainder();
    tail.iter().all(|&b| b == 0)
        && words.fold(0u128, |acc, w| {
            acc | u128::from_ne_bytes(w.try_into().unwrap_or([0xff; 16]))
        }) == 0
}

/// A chunker for one parameter set and seed; reusable for many inputs.
#[derive(Debug)]
pub enum Chunker {
    Buzhash(Box<BuzhashChunker>),
    Fixed(FixedChunker),
}

/// The chunks of one input; an iterator of `io::Result<Chunk>`.
pub enum Chunks<'a, R> {
    Buzhash(BuzhashChunks<'a, R>),
    Fixed(FixedChunks<R>),
}

impl Chunker {
    /// `seed` is the key's chunk seed as u32 (see [`seed_from_chunk_seed`]); fixed ignores it.
    /// Copy chunks into buffers from `pool` (buzhash; the fixed chunker reads into its own).
    pub fn use_pool(&mut self, pool: std::sync::Arc<crate::bufpool::BufferPool>) {
        if let Chunker::Buzhash(c) = self {
            c.use_pool(pool);
        }
    }

    pub fn new(params: &ChunkerParams, seed: u32) -> Chunker {
        match *params {
            ChunkerParams::Buzhash {
                min_exp,
                max_exp,
                mask_bits,
                window,
            } => Chunker::Buzhash(Box::new(BuzhashChunker::new(
                min_exp, max_exp, mask_bits, window, seed,
            ))),
            ChunkerParams::Fixed { block, header } => {
                Chunker::Fixed(FixedChunker::new(block, header))
            }
        }
    }

    /// Cut a stream.
    pub fn chunkify<R: Read>(&mut self, reader: R) -> Chunks<'_, R> {
        match self {
            Chunker::Buzhash(c) => Chunks::Buzhash(c.chunkify(reader)),
            Chunker::Fixed(c) => Chunks::Fixed(c.chunkify(reader)),
        }
    }

    /// Cut a regular file from offset 0; `sparse` (borg's `--sparse`) only affects the fixed
    /// chunker, which then reports holes as [`Chunk::Hole`] without reading them.
    pub fn chunkify_file<'a>(
        &'a mut self,
        file: &'a mut File,
        sparse: bool,
    ) -> io::Result<Chunks<'a, &'a mut File>> {
        Ok(match self {
            Chunker::Buzhash(c) => Chunks::Buzhash(c.chunkify(file)),
            Chunker::Fixed(c) => Chunks::Fixed(c.chunkify_file(file, sparse)?),
        })
    }

    /// Chunk lengths of an in-memory input (e.g. an item metadata stream).
    pub fn chunk_lengths(&mut self, data: &[u8]) -> Vec<usize> {
        match self {
            Chunker::Buzhash(c) => c.cutter().chunk_lengths(data),
            Chunker::Fixed(c) => c
                .chunkify(data)
                .map(|r| r.map(|ch| ch.len()).unwrap_or(0))
                .filter(|&n| n > 0)
                .collect(),
        }
    }
}

impl<R: Read> Chunks<'_, R> {
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        match self {
            Chunks::Buzhash(c) => c.next_chunk(),
            Chunks::Fixed(c) => c.next_chunk(),
        }
    }
}

impl<R: Read> Iterator for Chunks<'_, R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// Chunk lengths of `data` for `params` and `seed` (a convenience over [`Chunker`]).
pub fn chunk_lengths(params: &ChunkerParams, seed: u32, data: &[u8]) -> Vec<usize> {
    Chunker::new(params, seed).chunk_lengths(data)
}

#[cfg(test)]
mod tests;
