//! Segment files (repository-format.md §3.1–§3.3): naming, listing, reading entries (positioned
//! reads through a small cache of open files, safe to use from many threads) and appending
//! entries (borg's `LoggedIO`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ObjectId;
use crate::errors::{Error, Result};
use crate::repository::lock::os_error_text;

pub const MAGIC: &[u8; 8] = b"BORG_SEG";
pub const ATTIC_MAGIC: &[u8; 8] = b"ATTICSEG";
pub const MAGIC_LEN: usize = 8;
pub const TAG_PUT: u8 = 0;
pub const TAG_DELETE: u8 = 1;
pub const TAG_COMMIT: u8 = 2;
/// Highest tag value; larger ones are corruption for recovery code.
pub const MAX_TAG_ID: u8 = 15;
/// crc32, size, tag.
pub const HEADER_SIZE: usize = 9;
/// crc32, size, tag, key.
pub const PUT_HEADER_SIZE: usize = 41;
/// Largest entry (header included).
pub const MAX_OBJECT_SIZE: usize = 20 * 1024 * 1024;
pub const MAX_DATA_SIZE: usize = MAX_OBJECT_SIZE - PUT_HEADER_SIZE;
/// `max_segment_size` must stay below this.
pub const MAX_SEGMENT_SIZE_LIMIT: u64 = (1 << 32) - MAX_OBJECT_SIZE as u64;
pub const DEFAULT_SEGMENTS_PER_DIR: u32 = 1000;
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 500 * 1024 * 1024;
/// The constant 9-byte COMMIT entry.
pub const COMMIT: [u8; 9] = [0x40, 0xf4, 0x3c, 0x25, 0x09, 0x00, 0x00, 0x00, 0x02];
/// Open segment files kept at most this many and this long (borg: 90 files, 4 minutes).
const FD_CAPACITY: usize = 90;
const FD_MAX_AGE: Duration = Duration::from_secs(4 * 60);

fn integrity(msg: String) -> Error {
    Error::integrity(msg)
}

/// One log entry as found while scanning a segment.
#[derive(Debug, Clone)]
pub struct Entry {
    pub tag: u8,
    /// Zero for COMMIT entries.
    pub key: ObjectId,
    pub offset: u32,
    /// Whole entry length, header included.
    pub size: u32,
    /// The value of a PUT when asked for.
    pub data: Option<Vec<u8>>,
}

struct CachedFd {
    file: Arc<File>,
    last_used: Instant,
}

/// Read access to the segments of one repository.
pub struct SegmentStore {
    path: PathBuf,
    segments_per_dir: u32,
    fds: Mutex<FdCache>,
}

#[derive(Default)]
struct FdCache {
    files: HashMap<u32, CachedFd>,
    last_cleanup: Option<Instant>,
}

impl SegmentStore {
    pub fn new(repo_path: &Path, segments_per_dir: u32) -> SegmentStore {
        SegmentStore {
            path: repo_path.to_path_buf(),
            segments_per_dir: segments_per_dir.max(1),
            fds: Mutex::new(FdCache::default()),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    pub fn segments_per_dir(&self) -> u32 {
        self.segments_per_dir
    }

    /// `data/<N // segments_per_dir>/<N>`.
    pub fn segment_filename(&self, segment: u32) -> PathBuf {
        self.data_dir()
            .join((segment / self.segments_per_dir).to_string())
            .join(segment.to_string())
    }

    /// Segment numbers and paths, ascending or descending, from `start` on (inclusive).
    /// Names that are not all digits are ignored. Zero-length files are included.
    pub fn segment_list(&self, start: Option<u32>, reverse: bool) -> Result<Vec<(u32, PathBuf)>> {
        let start = start.unwrap_or(if reverse { u32::MAX } else { 0 });
        let start_dir = start / self.segments_per_dir;
        let data = self.data_dir();
        let mut dirs = numeric_entries(&data)?;
        dirs.retain(|(n, p)| {
            (if reverse {
                *n <= start_dir as u64
            } else {
                *n >= start_dir as u64
            }) && p.is_dir()
        });
        sort_numeric(&mut dirs, reverse);
        let mut out = Vec::new();
        for (_, dir) in dirs {
            let mut files = numeric_entries(&dir)?;
            files.retain(|(n, p)| {
                *n <= u32::MAX as u64
                    && (if reverse {
                        *n <= start as u64
                    } else {
                        *n >= start as u64
                    })
                    && p.is_file()
            });
            sort_numeric(&mut files, reverse);
            out.extend(files.into_iter().map(|(n, p)| (n as u32, p)));
        }
        Ok(out)
    }

    pub fn latest_segment(&self) -> Result<Option<u32>> {
        Ok(self.segment_list(None, true)?.first().map(|(n, _)| *n))
    }

    /// The transaction id: the highest committed segment, searched from the top.
    pub fn segments_transaction_id(&self) -> Result<Option<u32>> {
        for (segment, _) in self.segment_list(None, true)? {
            if self.is_committed_segment(segment)? {
                return Ok(Some(segment));
            }
        }
        Ok(None)
    }

    /// Whether the segment ends with COMMIT, parses cleanly (all CRCs) and has nothing after
    /// a COMMIT (borg's `is_committed_segment`).
    pub fn is_committed_segment(&self, segment: u32) -> Result<bool> {
        let path = self.segment_filename(segment);
        let mut f = File::open(&path).map_err(|e| Error::exception(os_error_text(&e, &path)))?;
        let len = f.metadata()?.len();
        if len < HEADER_SIZE as u64 {
            return Ok(false);
        }
        let mut tail = [0u8; HEADER_SIZE];
        f.seek(SeekFrom::Start(len - HEADER_SIZE as u64))?;
        f.read_exact(&mut tail)?;
        if tail != COMMIT {
            return Ok(false);
        }
        let mut seen_commit = false;
        for entry in self.iter_objects(segment, false)? {
            match entry {
                Err(_) => return Ok(false),
                Ok(e) if e.tag == TAG_COMMIT => seen_commit = true,
                Ok(_) if seen_commit => return Ok(false),
                Ok(_) => {}
            }
        }
        Ok(seen_commit)
    }

    /// Exists with a non-zero size (a truncated-to-zero segment counts as deleted).
    pub fn segment_exists(&self, segment: u32) -> bool {
        fs::metadata(self.segment_filename(segment))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    }

    pub fn segment_size(&self, segment: u32) -> Result<u64> {
        let path = self.segment_filename(segment);
        Ok(fs::metadata(&path)
            .map_err(|e| Error::exception(os_error_text(&e, &path)))?
            .len())
    }

    /// The first 8 bytes of a segment (shorter if the file is).
    pub fn segment_magic(&self, segment: u32) -> Result<Vec<u8>> {
        let f = self.fd(segment)?;
        let mut buf = [0u8; MAGIC_LEN];
        let n = read_at_most(&f, &mut buf, 0)?;
        Ok(buf[..n].to_vec())
    }

    /// An open file for `segment` from the cache (opened on demand).
    pub fn fd(&self, segment: u32) -> Result<Arc<File>> {
        let now = Instant::now();
        let mut cache = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        // drop long-unused files now and then (stale handles on network file systems)
        if cache
            .last_cleanup
            .is_none_or(|t| now.duration_since(t) > FD_MAX_AGE / 8)
        {
            cache.last_cleanup = Some(now);
            cache
                .files
                .retain(|_, c| now.duration_since(c.last_used) <= FD_MAX_AGE);
        }
        let fds = &mut cache.files;
        if let Some(c) = fds.get_mut(&segment) {
            c.last_used = now;
            return Ok(c.file.clone());
        }
        let path = self.segment_filename(segment);
        let file =
            Arc::new(File::open(&path).map_err(|e| Error::exception(os_error_text(&e, &path)))?);
        if fds.len() >= FD_CAPACITY {
            if let Some(oldest) = fds.iter().min_by_key(|(_, c)| c.last_used).map(|(k, _)| *k) {
                fds.remove(&oldest);
            }
        }
        fds.insert(
            segment,
            CachedFd {
                file: file.clone(),
                last_used: now,
            },
        );
        Ok(file)
    }

    /// Drop a cached file (segment deleted or rewritten).
    pub fn forget_fd(&self, segment: u32) {
        self.fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files
            .remove(&segment);
    }

    pub fn close_all(&self) {
        self.fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files
            .clear();
    }

    /// Read the PUT of `id` at (segment, offset) and verify header and CRC; returns the value.
    pub fn read(&self, segment: u32, offset: u32, id: &ObjectId) -> Result<Vec<u8>> {
        let f = self.fd(segment)?;
        let mut header = [0u8; PUT_HEADER_SIZE];
        let n = read_at_most(&f, &mut header, offset as u64)?;
        if n != PUT_HEADER_SIZE {
            return Err(integrity(format!(
                "Invalid segment entry header [segment {segment}, offset {offset}]: unpack requires a buffer of {PUT_HEADER_SIZE} bytes"
            )));
        }
        let (crc, size, tag) = parse_header(&header);
        check_size(size, PUT_HEADER_SIZE, segment, offset)?;
        let length = size as usize - PUT_HEADER_SIZE;
        let mut data = vec![0u8; length];
        let got = read_at_most(&f, &mut data, offset as u64 + PUT_HEADER_SIZE as u64)?;
        if got != length {
            return Err(integrity(format!(
                "Segment entry data short read [segment {segment}, offset {offset}]: expected {length}, got {got} bytes"
            )));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&header[4..]);
        h.update(&data);
        if h.finalize() != crc {
            return Err(integrity(format!(
                "Segment entry checksum mismatch [segment {segment}, offset {offset}]"
            )));
        }
        if tag != TAG_PUT {
            return Err(integrity(format!(
                "Invalid segment entry header, did not get acceptable tag [segment {segment}, offset {offset}]"
            )));
        }
        if header[9..41] != id[..] {
            return Err(integrity(format!(
                "Invalid segment entry header, is not for wanted id [segment {segment}, offset {offset}]"
            )));
        }
        Ok(data)
    }

    /// Size of the PUT of `id` at (segment, offset) from its header only (no CRC check).
    pub fn read_size(&self, segment: u32, offset: u32, id: &ObjectId) -> Result<u32> {
        let f = self.fd(segment)?;
        let mut header = [0u8; PUT_HEADER_SIZE];
        let n = read_at_most(&f, &mut header, offset as u64)?;
        if n != PUT_HEADER_SIZE {
            return Err(integrity(format!(
                "Invalid segment entry header [segment {segment}, offset {offset}]: unpack requires a buffer of {PUT_HEADER_SIZE} bytes"
            )));
        }
        let (_, size, tag) = parse_header(&header);
        check_size(size, PUT_HEADER_SIZE, segment, offset)?;
        if tag != TAG_PUT {
            return Err(integrity(format!(
                "Invalid segment entry header, did not get acceptable tag [segment {segment}, offset {offset}]"
            )));
        }
        if header[9..41] != id[..] {
            return Err(integrity(format!(
                "Invalid segment entry header, is not for wanted id [segment {segment}, offset {offset}]"
            )));
        }
        Ok(size)
    }

    /// Scan a segment from the start, verifying magic and every CRC. `include_data` keeps the
    /// PUT values. The iterator ends after the first error.
    pub fn iter_objects(&self, segment: u32, include_data: bool) -> Result<SegmentIter> {
        self.iter_objects_from(segment, 0, include_data, true)
    }

    /// Scan from `offset` (0 = start, with magic check). Without `verify` the data is skipped
    /// and CRCs are not checked (borg's `read_data=False`).
    pub fn iter_objects_from(
        &self,
        segment: u32,
        offset: u32,
        include_data: bool,
        verify: bool,
    ) -> Result<SegmentIter> {
        let path = self.segment_filename(segment);
        let file = File::open(&path).map_err(|e| Error::exception(os_error_text(&e, &path)))?;
        let len = file.metadata()?.len();
        let mut rd = BufReader::with_capacity(1 << 20, file);
        if offset > 0 {
            rd.seek(SeekFrom::Start(offset as u64))?;
        }
        Ok(SegmentIter {
            rd,
            segment,
            offset: offset as u64,
            len,
            include_data,
            verify,
            check_magic: offset == 0,
            done: false,
            buf: Vec::new(),
        })
    }

    /// Unlink a segment; if the file system is full, truncate it first (only when no other
    /// hard link shares it), as borg's `safe_unlink`. A missing segment is fine.
    pub fn delete_segment(&self, segment: u32) -> Result<()> {
        self.forget_fd(segment);
        let path = self.segment_filename(segment);
        match fs::remove_file(&path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() != Some(libc::ENOSPC) => {
                return Err(Error::exception(os_error_text(&e, &path)))
            }
            Err(_) => {}
        }
        use std::os::unix::fs::MetadataExt;
        let single_link = fs::metadata(&path).map(|m| m.nlink() == 1).unwrap_or(false);
        if single_link {
            if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(0);
            }
        }
        fs::remove_file(&path).map_err(|e| Error::exception(os_error_text(&e, &path)))
    }

    /// Remove segment directories without segment files (borg 1.4 after compaction).
    pub fn clear_empty_dirs(&self) -> Result<()> {
        let data = self.data_dir();
        for (_, dir) in numeric_entries(&data)? {
            if dir.is_dir() {
                let _ = fs::remove_dir(&dir);
            }
        }
        sync_dir(&data)
    }
}

fn parse_header(h: &[u8]) -> (u32, u32, u8) {
    (
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        h[8],
    )
}

fn check_size(size: u32, header_size: usize, segment: u32, offset: u32) -> Result<()> {
    if size as usize > MAX_OBJECT_SIZE {
        return Err(integrity(format!(
            "Invalid segment entry size {size} - too big [segment {segment}, offset {offset}]"
        )));
    }
    if (size as usize) < header_size {
        return Err(integrity(format!(
            "Invalid segment entry size {size} - too small [segment {segment}, offset {offset}]"
        )));
    }
    Ok(())
}

/// Positioned read that fills `buf` unless the file ends first; returns the bytes read.
pub fn read_at_most(f: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

fn read_fully<R: Read>(rd: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match rd.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

fn numeric_entries(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::exception(os_error_text(&e, dir)))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = name.parse::<u64>() {
            out.push((n, e.path()));
        }
    }
    Ok(out)
}

fn sort_numeric(v: &mut [(u64, PathBuf)], reverse: bool) {
    if reverse {
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
    } else {
        v.sort_by_key(|a| a.0);
    }
}

/// Sequential scan of one segment (see [`SegmentStore::iter_objects`]).
pub struct SegmentIter {
    rd: BufReader<File>,
    segment: u32,
    offset: u64,
    len: u64,
    include_data: bool,
    verify: bool,
    check_magic: bool,
    done: bool,
    buf: Vec<u8>,
}

impl SegmentIter {
    /// The next entry, checked against its CRC. With a `sink`, the data of a PUT (after its
    /// key) is appended to it instead of being kept in the entry.
    fn next_entry(&mut self, sink: Option<&mut Vec<u8>>) -> Result<Option<Entry>> {
        let segment = self.segment;
        if self.check_magic {
            self.check_magic = false;
            let mut magic = [0u8; MAGIC_LEN];
            let n = read_fully(&mut self.rd, &mut magic)?;
            if n != MAGIC_LEN || &magic != MAGIC {
                return Err(integrity(format!(
                    "Invalid segment magic [segment {segment}, offset 0]"
                )));
            }
            self.offset = MAGIC_LEN as u64;
        }
        let offset = self.offset as u32;
        let mut header = [0u8; HEADER_SIZE];
        let n = read_fully(&mut self.rd, &mut header)?;
        if n == 0 {
            return Ok(None);
        }
        if n != HEADER_SIZE {
            return Err(integrity(format!(
                "Invalid segment entry header [segment {segment}, offset {offset}]: unpack requires a buffer of {HEADER_SIZE} bytes"
            )));
        }
        let (crc, size, tag) = parse_header(&header);
        check_size(size, HEADER_SIZE, segment, offset)?;
        let has_key = tag == TAG_PUT || tag == TAG_DELETE;
        if has_key && (size as usize) < PUT_HEADER_SIZE {
            return Err(integrity(format!(
                "Invalid segment entry size {size} - too small [segment {segment}, offset {offset}]"
            )));
        }
        let length = size as usize - HEADER_SIZE;
        let mut key = [0u8; 32];
        let mut data = None;
        if let (true, true, Some(sink)) = (self.verify, tag == TAG_PUT, sink) {
            self.read_put_into(&header, &mut key, length, sink, segment, offset)?;
        } else if self.verify {
            let keep = self.include_data && tag == TAG_PUT;
            // scans without data reuse one buffer
            let mut body = if keep {
                vec![0u8; length]
            } else {
                std::mem::take(&mut self.buf)
            };
            body.resize(length, 0);
            let got = read_fully(&mut self.rd, &mut body)?;
            if got != length {
                return Err(integrity(format!(
                    "Segment entry data short read [segment {segment}, offset {offset}]: expected {length}, got {got} bytes"
                )));
            }
            let mut h = crc32fast::Hasher::new();
            h.update(&header[4..]);
            h.update(&body);
            if h.finalize() != crc {
                return Err(integrity(format!(
                    "Segment entry checksum mismatch [segment {segment}, offset {offset}]"
                )));
            }
            if has_key {
                key.copy_from_slice(&body[..32]);
            }
            if keep {
                body.drain(..32);
                data = Some(body);
            } else {
                self.buf = body;
            }
        } else {
            if has_key {
                let got = read_fully(&mut self.rd, &mut key)?;
                if got != 32 {
                    return Err(integrity(format!(
                        "Segment entry key short read [segment {segment}, offset {offset}]: expected 32, got {got} bytes"
                    )));
                }
            }
            let skip = length - if has_key { 32 } else { 0 };
            let end = self.offset + size as u64;
            if end > self.len {
                return Err(integrity(format!(
                    "Segment entry data short seek [segment {segment}, offset {offset}]: expected {skip}, got {} bytes",
                    self.len.saturating_sub(self.offset + HEADER_SIZE as u64 + if has_key { 32 } else { 0 })
                )));
            }
            self.rd.seek_relative(skip as i64)?;
        }
        if !matches!(tag, TAG_PUT | TAG_DELETE | TAG_COMMIT) {
            return Err(integrity(format!(
                "Invalid segment entry header, did not get acceptable tag [segment {segment}, offset {offset}]"
            )));
        }
        self.offset += size as u64;
        Ok(Some(Entry {
            tag,
            key,
            offset,
            size,
            data,
        }))
    }
}

impl SegmentIter {
    /// Read a PUT's key and data (data appended to `sink`) and check its CRC; on any error
    /// the sink is left as it was.
    fn read_put_into(
        &mut self,
        header: &[u8; HEADER_SIZE],
        key: &mut ObjectId,
        length: usize,
        sink: &mut Vec<u8>,
        segment: u32,
        offset: u32,
    ) -> Result<()> {
        let start = sink.len();
        let data_len = length - key.len();
        sink.reserve(data_len);
        // read_to_end fills the spare capacity without zeroing it first
        let got = read_fully(&mut self.rd, key)?
            + (&mut self.rd)
                .take(data_len as u64)
                .read_to_end(sink)
                .inspect_err(|_| sink.truncate(start))?;
        let mut h = crc32fast::Hasher::new();
        h.update(&header[4..]);
        h.update(key);
        h.update(&sink[start..]);
        let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let failure = if got != length {
            Some(format!(
                "Segment entry data short read [segment {segment}, offset {offset}]: expected {length}, got {got} bytes"
            ))
        } else if h.finalize() != crc {
            Some(format!(
                "Segment entry checksum mismatch [segment {segment}, offset {offset}]"
            ))
        } else {
            None
        };
        match failure {
            Some(msg) => {
                sink.truncate(start);
                Err(integrity(msg))
            }
            None => Ok(()),
        }
    }

    /// Like `next`, but a PUT's data goes to the end of `sink` (the entry's `data` stays
    /// None): several objects read into one buffer, as `check --verify-data` batches them.
    pub fn next_into(&mut self, sink: &mut Vec<u8>) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        let next = self.next_entry(Some(sink));
        self.finish_step(next)
    }

    fn finish_step(&mut self, next: Result<Option<Entry>>) -> Option<Result<Entry>> {
        match next {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for SegmentIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        let next = self.next_entry(None);
        self.finish_step(next)
    }
}

/// fsync a directory (EINVAL from file systems that cannot is ignored, as borg).
pub fn sync_dir(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::exception(os_error_text(&e, path)))?;
    match f.sync_all() {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Build a PUT entry.
pub fn put_entry(id: &ObjectId, data: &[u8]) -> Vec<u8> {
    [put_header(id, data).as_slice(), data].concat()
}

/// The 41-byte header of a PUT entry for `data` (crc32, size, tag, id).
pub fn put_header(id: &ObjectId, data: &[u8]) -> [u8; PUT_HEADER_SIZE] {
    let size = (data.len() + PUT_HEADER_SIZE) as u32;
    let mut header = [0u8; PUT_HEADER_SIZE];
    header[4..8].copy_from_slice(&size.to_le_bytes());
    header[8] = TAG_PUT;
    header[9..].copy_from_slice(id);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[4..]);
    crc.update(data);
    header[..4].copy_from_slice(&crc.finalize().to_le_bytes());
    header
}

/// Write all of `parts` with as few system calls as the kernel allows.
fn write_all_parts(f: &mut File, parts: &mut [std::io::IoSlice<'_>]) -> std::io::Result<()> {
    let mut parts = parts;
    while !parts.is_empty() {
        match f.write_vectored(parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Build a DELETE entry (always 41 bytes).
pub fn delete_entry(id: &ObjectId) -> [u8; PUT_HEADER_SIZE] {
    let mut out = [0u8; PUT_HEADER_SIZE];
    out[4..8].copy_from_slice(&(PUT_HEADER_SIZE as u32).to_le_bytes());
    out[8] = TAG_DELETE;
    out[9..].copy_from_slice(id);
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Appends entries to segments (the write half of borg's `LoggedIO`). Not shared between
/// threads; the repository serializes writers.
pub struct SegmentWriter {
    /// Number of the segment being written (or to be written next).
    pub segment: u32,
    /// Current length of that segment (0 = not open yet).
    pub offset: u64,
    limit: u64,
    file: Option<File>,
    /// Offset up to which writeback of the open segment was started.
    written_back: u64,
}

/// Writeback of a segment is started after every this many bytes (see `start_writeback`).
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// `raise_full` writes refuse to start a new segment (compaction wants to commit first).
#[derive(Debug)]
pub enum WriteError {
    SegmentFull,
    Failed(Error),
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Failed(e)
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Failed(e.into())
    }
}

impl SegmentWriter {
    pub fn new(next_segment: u32, max_segment_size: u64) -> SegmentWriter {
        SegmentWriter {
            segment: next_segment,
            offset: 0,
            limit: max_segment_size,
            file: None,
            written_back: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn write_fd(
        &mut self,
        store: &SegmentStore,
        no_new: bool,
        want_new: bool,
        raise_full: bool,
    ) -> std::result::Result<&mut File, WriteError> {
        if !no_new && (want_new || (self.offset > 0 && self.offset > self.limit)) {
            if raise_full {
                return Err(WriteError::SegmentFull);
            }
            self.close_segment(store)?;
        }
        if self.file.is_none() {
            if self.segment > crate::hashindex::MAX_VALUE {
                return Err(WriteError::Failed(Error::exception(
                    "maximum number of segments reached",
                )));
            }
            let dir = store
                .data_dir()
                .join((self.segment / store.segments_per_dir()).to_string());
            if !dir.exists() {
                fs::create_dir(&dir).map_err(|e| Error::exception(os_error_text(&e, &dir)))?;
                sync_dir(&store.data_dir())?;
            }
            let path = store.segment_filename(self.segment);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::exception(os_error_text(&e, &path)))?;
            f.write_all(MAGIC)?;
            self.offset = MAGIC_LEN as u64;
            self.written_back = 0;
            store.forget_fd(self.segment);
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("segment file is open"))
    }

    /// Append a PUT; returns (segment, offset). A manifest PUT starts a new segment.
    pub fn write_put(
        &mut self,
        store: &SegmentStore,
        id: &ObjectId,
        data: &[u8],
        raise_full: bool,
    ) -> std::result::Result<(u32, u32), WriteError> {
        if data.len() > MAX_DATA_SIZE {
            return Err(WriteError::Failed(Error::integrity(format!(
                "More than allowed put data [{} > {MAX_DATA_SIZE}]",
                data.len()
            ))));
        }
        let header = put_header(id, data);
        let f = self.write_fd(store, false, *id == super::MANIFEST_ID, raise_full)?;
        write_all_parts(
            f,
            &mut [std::io::IoSlice::new(&header), std::io::IoSlice::new(data)],
        )?;
        let offset = self.offset as u32;
        self.offset += (header.len() + data.len()) as u64;
        self.start_writeback();
        Ok((self.segment, offset))
    }

    /// Start the kernel writing what was appended since the last call, once a window's
    /// worth, so the fdatasync closing the segment finds little left to wait for (borg's
    /// SyncFile does the same with sync_file_range). Durability still comes from that fsync.
    fn start_writeback(&mut self) {
        if self.offset - self.written_back < WRITEBACK_WINDOW {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.file {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on an open descriptor; no memory is passed. Only a
            // hint: its result changes nothing about what is durable, so it is ignored.
            unsafe {
                libc::sync_file_range(
                    f.as_raw_fd(),
                    self.written_back as i64,
                    (self.offset - self.written_back) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.written_back = self.offset;
    }

    /// Append a DELETE; returns (segment, entry size 41).
    pub fn write_delete(
        &mut self,
        store: &SegmentStore,
        id: &ObjectId,
        raise_full: bool,
    ) -> std::result::Result<(u32, u32), WriteError> {
        let entry = delete_entry(id);
        let f = self.write_fd(store, false, *id == super::MANIFEST_ID, raise_full)?;
        f.write_all(&entry)?;
        self.offset += entry.len() as u64;
        Ok((self.segment, PUT_HEADER_SIZE as u32))
    }

    /// Append a COMMIT and close the segment; returns its number. A final commit goes into a
    /// new segment of its own, an intermediate one (compaction) ends the current segment.
    pub fn write_commit(&mut self, store: &SegmentStore, intermediate: bool) -> Result<u32> {
        let f = match self.write_fd(store, intermediate, !intermediate, false) {
            Ok(f) => f,
            Err(WriteError::Failed(e)) => return Err(e),
            Err(WriteError::SegmentFull) => return Err(Error::exception("segment full")),
        };
        if intermediate {
            f.sync_data()?;
        }
        f.write_all(&COMMIT)?;
        self.close_segment(store)?;
        Ok(self.segment - 1)
    }

    /// fdatasync, drop from the page cache, close, fsync the directory; next segment number.
    pub fn close_segment(&mut self, store: &SegmentStore) -> Result<()> {
        if let Some(f) = self.file.take() {
            let path = store.segment_filename(self.segment);
            self.segment += 1;
            self.offset = 0;
            f.sync_data()?;
            crate::fs::drop_page_cache(std::os::fd::AsRawFd::as_raw_fd(&f));
            drop(f);
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Forget the open segment without syncing (rollback); the file stays as uncommitted.
    pub fn abandon(&mut self) {
        self.file = None;
        self.offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_constant_matches_crc() {
        let crc = crc32fast::hash(&COMMIT[4..]);
        assert_eq!(crc.to_le_bytes(), COMMIT[..4]);
        let d = delete_entry(&[0u8; 32]);
        assert_eq!(d.len(), 41);
        assert_eq!(crc32fast::hash(&d[4..]).to_le_bytes(), d[..4]);
    }

    #[test]
    fn objects_are_read_side_by_side_into_a_sink() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        let store = SegmentStore::new(dir.path(), 10);
        let mut w = SegmentWriter::new(0, 1 << 20);
        w.write_put(&store, &[1u8; 32], b"hello", false).unwrap();
        w.write_delete(&store, &[9u8; 32], false).unwrap();
        w.write_put(&store, &[2u8; 32], b"world!", false).unwrap();
        w.write_commit(&store, false).unwrap();
        let mut sink = b"xx".to_vec();
        let mut it = store.iter_objects(0, false).unwrap();
        let mut tags = Vec::new();
        while let Some(e) = it.next_into(&mut sink) {
            let e = e.unwrap();
            assert!(e.data.is_none());
            tags.push((e.tag, e.key[0]));
        }
        // (the commit tag went into a segment of its own)
        assert_eq!(tags, [(TAG_PUT, 1), (TAG_DELETE, 9), (TAG_PUT, 2)]);
        assert_eq!(sink, b"xxhelloworld!");

        // a damaged entry: error, and the sink keeps only what was intact
        let path = store.segment_filename(0);
        let mut bytes = fs::read(&path).unwrap();
        let second_put = 8 + (9 + 32 + 5) + (9 + 32);
        bytes[second_put + 9 + 32] ^= 1;
        fs::write(&path, bytes).unwrap();
        let mut sink = Vec::new();
        let mut it = store.iter_objects(0, false).unwrap();
        assert!(it.next_into(&mut sink).unwrap().is_ok());
        assert!(it.next_into(&mut sink).unwrap().is_ok());
        let e = it.next_into(&mut sink).unwrap().unwrap_err();
        assert!(e.message.contains("Segment entry checksum mismatch"), "{e}");
        assert_eq!(sink, b"hello");
        assert!(it.next_into(&mut sink).is_none());
    }

    #[test]
    fn write_scan_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        let store = SegmentStore::new(dir.path(), 3);
        let mut w = SegmentWriter::new(0, 100);
        let id1 = [1u8; 32];
        let id2 = [2u8; 32];
        assert_eq!(w.write_put(&store, &id1, b"hello", false).unwrap(), (0, 8));
        assert_eq!(
            w.write_put(&store, &id2, &[7u8; 80], false).unwrap(),
            (0, 54)
        );
        // over the limit now → next entry starts segment 1
        assert_eq!(w.write_delete(&store, &id1, false).unwrap(), (1, 41));
        assert!(matches!(
            w.write_put(&store, &crate::repository::MANIFEST_ID, b"m", true),
            Err(WriteError::SegmentFull)
        ));
        assert_eq!(w.write_commit(&store, false).unwrap(), 2);
        // a fresh writer commits into its first segment; segment 3 lives in data/1/
        let mut w2 = SegmentWriter::new(3, 100);
        assert_eq!(w2.write_commit(&store, false).unwrap(), 3);
        assert!(dir.path().join("data/1/3").exists());
        assert_eq!(
            store
                .segment_list(None, false)
                .unwrap()
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            store
                .segment_list(None, true)
                .unwrap()
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            vec![3, 2, 1, 0]
        );
        assert_eq!(
            store
                .segment_list(Some(1), true)
                .unwrap()
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            vec![1, 0]
        );
        assert_eq!(store.segments_transaction_id().unwrap(), Some(3));
        assert!(store.is_committed_segment(2).unwrap());
        assert!(!store.is_committed_segment(0).unwrap());
        assert_eq!(store.read(0, 8, &id1).unwrap(), b"hello");
        assert_eq!(store.read_size(0, 54, &id2).unwrap(), 121);
        let e = store.read(0, 8, &id2).unwrap_err();
        assert_eq!(e.message, "Data integrity error: Invalid segment entry header, is not for wanted id [segment 0, offset 8]");
        let entries: Vec<Entry> = store
            .iter_objects(0, true)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].data.as_deref(), Some(&[7u8; 80][..]));
        let entries: Vec<Entry> = store
            .iter_objects_from(0, 0, false, false)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(entries[1].size, 121);
    }
}
