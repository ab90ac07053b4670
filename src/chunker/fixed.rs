//! The fixed-size chunker `fixed,BLOCK[,HEADER]` (repository-format.md §6.4), optionally
//! sparse-aware: holes found with SEEK_HOLE/SEEK_DATA are reported, not read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

use super::{is_all_zero, Chunk};

/// A byte range of a file: data or a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    pub start: u64,
    pub len: u64,
    pub is_data: bool,
}

/// Range of an unknown file length (borg uses 2^62 for "to the end").
const UNBOUNDED: u64 = 1 << 62;

/// Map of data and hole ranges from `from` to the end of `file`, as borg's `sparsemap`.
/// Fails when the file system or file type does not support SEEK_HOLE/SEEK_DATA.
pub fn sparse_map(file: &File, from: u64) -> io::Result<Vec<FileRange>> {
    let fd = file.as_raw_fd();
    let file_len = file.metadata()?.len();
    let mut ranges = Vec::new();
    let mut start = from;
    let mut is_data = true; // first look for the end of a data range
    loop {
        let whence = if is_data {
            Whence::SeekHole
        } else {
            Whence::SeekData
        };
        let end = match lseek(fd, start as libc::off_t, whence) {
            Ok(pos) => pos as u64,
            Err(Errno::ENXIO) => {
                // past the last data: a trailing hole runs to the end of the file
                if !is_data && start < file_len {
                    ranges.push(FileRange {
                        start,
                        len: file_len - start,
                        is_data,
                    });
                }
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if end > start {
            ranges.push(FileRange {
                start,
                len: end - start,
                is_data,
            });
        }
        start = end;
        is_data = !is_data;
    }
    Ok(ranges)
}

/// The map borg uses for `fixed` chunking: the header as its own range, then the body
/// (from `sparse_map` when `body` is given, else one data range to the end).
pub fn fixed_map(header_size: u64, body: Option<Vec<FileRange>>) -> Vec<FileRange> {
    let mut ranges = Vec::new();
    if header_size > 0 {
        ranges.push(FileRange {
            start: 0,
            len: header_size,
            is_data: true,
        });
    }
    match body {
        Some(body) => ranges.extend(body),
        None => ranges.push(FileRange {
            start: header_size,
            len: UNBOUNDED,
            is_data: true,
        }),
    }
    ranges
}

/// Cuts inputs into blocks of `block_size` bytes, with an optional header block.
#[derive(Debug, Clone)]
pub struct FixedChunker {
    block_size: usize,
    header_size: usize,
}

type SeekFn<R> = fn(&mut R, u64) -> io::Result<u64>;

impl FixedChunker {
    pub fn new(block_size: u32, header_size: u32) -> FixedChunker {
        FixedChunker {
            block_size: block_size.max(1) as usize,
            header_size: header_size as usize,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn header_size(&self) -> usize {
        self.header_size
    }

    /// Cut a stream (no hole detection).
    pub fn chunkify<R: Read>(&self, reader: R) -> FixedChunks<R> {
        let ranges = fixed_map(self.header_size as u64, None);
        FixedChunks {
            block_size: self.block_size,
            reader,
            seek: None,
            ranges,
            index: 0,
            offset: 0,
            done: false,
        }
    }

    /// Cut a seekable input following `ranges` (hole ranges are skipped by seeking and
    /// reported as [`Chunk::Hole`]); ranges are each cut separately into blocks.
    pub fn chunkify_map<R: Read + Seek>(
        &self,
        reader: R,
        ranges: Vec<FileRange>,
    ) -> FixedChunks<R> {
        let seek: SeekFn<R> = |r, pos| r.seek(SeekFrom::Start(pos));
        FixedChunks {
            block_size: self.block_size,
            reader,
            seek: Some(seek),
            ranges,
            index: 0,
            offset: 0,
            done: false,
        }
    }

    /// Cut a file; with `sparse`, holes are detected as borg's `--sparse` does (falling back
    /// to plain reading when the file system cannot report them). Starts at offset 0.
    pub fn chunkify_file<'f>(
        &self,
        file: &'f mut File,
        sparse: bool,
    ) -> io::Result<FixedChunks<&'f mut File>> {
        let header = self.header_size as u64;
        let body = if sparse {
            sparse_map(file, header).ok()
        } else {
            None
        };
        file.seek(SeekFrom::Start(0))?;
        let ranges = fixed_map(header, body);
        Ok(self.chunkify_map(file, ranges))
    }
}

/// The chunks of one input; see [`FixedChunker::chunkify`].
pub struct FixedChunks<R> {
    block_size: usize,
    reader: R,
    seek: Option<SeekFn<R>>,
    ranges: Vec<FileRange>,
    index: usize,
    /// Input position.
    offset: u64,
    done: bool,
}

impl<R: Read> FixedChunks<R> {
    /// The next chunk, `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let result = self.next_inner();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn next_inner(&mut self) -> io::Result<Option<Chunk>> {
        while !self.done {
            let Some(range) = self.ranges.get_mut(self.index) else {
                return Ok(None);
            };
            if range.len == 0 {
                self.index += 1;
                continue;
            }
            if range.start != self.offset {
                // the map does not cover the input contiguously: go to the range start
                if let Some(seek) = self.seek {
                    seek(&mut self.reader, range.start)?;
                }
                self.offset = range.start;
            }
            let wanted = range.len.min(self.block_size as u64) as usize;
            let is_data = range.is_data;
            let chunk = if is_data {
                let data = read_up_to(&mut self.reader, wanted)?;
                if data.len() < wanted {
                    // end of input
                    self.done = true;
                }
                if data.is_empty() {
                    return Ok(None);
                }
                if is_all_zero(&data) {
                    Chunk::Zeros(data.len())
                } else {
                    Chunk::Data(data)
                }
            } else {
                let target = self.offset + wanted as u64;
                if let Some(seek) = self.seek {
                    seek(&mut self.reader, target)?;
                }
                Chunk::Hole(wanted)
            };
            let got = chunk.len() as u64;
            self.offset += got;
            let range = &mut self.ranges[self.index];
            range.start += got;
            range.len -= got;
            return Ok(Some(chunk));
        }
        Ok(None)
    }
}

impl<R: Read> Iterator for FixedChunks<R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// Read `wanted` bytes, fewer only at the end of the input.
fn read_up_to<R: Read>(reader: &mut R, wanted: usize) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(wanted);
    reader.take(wanted as u64).read_to_end(&mut data)?;
    Ok(data)
}
