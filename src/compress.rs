//! The compression envelope (repository-format.md §5): none, lz4, zstd, zlib, lzma, auto,
//! obfuscate. Decoding dispatches on the 2-byte header (zlib has none).

use std::cell::RefCell;
use std::fmt;
use std::io::Write;

use crate::errors::{Error, ErrorKind, Result};
use crate::repository::MAX_DATA_SIZE;

/// Header of uncompressed payloads (`none`, and the fallback of lz4/zstd/lzma).
pub const HEADER_NONE: [u8; 2] = [0x00, 0x00];
pub const HEADER_LZ4: [u8; 2] = [0x01, 0x00];
pub const HEADER_LZMA: [u8; 2] = [0x02, 0x00];
pub const HEADER_ZSTD: [u8; 2] = [0x03, 0x00];
pub const HEADER_OBFUSCATE: [u8; 2] = [0x04, 0x00];

/// Upper bound for the output of zstd, zlib and lzma bodies. Real objects decompress to at
/// most ~20 MiB (MAX_DATA_SIZE); this only stops hostile "decompression bombs".
pub const MAX_DECOMPRESSED_SIZE: usize = 256 * 1024 * 1024;

/// Nested obfuscation envelopes accepted when decoding (borg only ever writes one).
const MAX_OBFUSCATE_NESTING: u32 = 8;

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

impl Default for CompressionSpec {
    /// borg's default compression: lz4.
    fn default() -> Self {
        CompressionSpec::Lz4
    }
}

/// The argparse-facing failure text of an invalid spec (same for every reason, as borg 1.2
/// reports it: `invalid CompressionSpec value: 'zstd,23'`, cli.md §6.4).
fn invalid_spec(spec: &str) -> Error {
    Error {
        kind: ErrorKind::Error,
        message: format!(
            "invalid CompressionSpec value: {}",
            crate::python::repr(spec)
        ),
    }
}

impl CompressionSpec {
    /// Parse `none`, `lz4`, `zstd[,L]`, `zlib[,L]`, `lzma[,L]`, `auto,SPEC`, `obfuscate,S,SPEC`
    /// with borg's validation (extra fields after `none`/`lz4` are ignored, like borg).
    pub fn parse(spec: &str) -> Result<CompressionSpec> {
        Self::parse_fields(spec).ok_or_else(|| invalid_spec(spec))
    }

    fn parse_fields(spec: &str) -> Option<CompressionSpec> {
        let values: Vec<&str> = spec.split(',').collect();
        let count = values.len();
        let level = |min: i64, max: i64, default: i64| -> Option<i64> {
            match count {
                1 => Some(default),
                2 => crate::python::parse_int(values[1]).filter(|l| (min..=max).contains(l)),
                _ => None,
            }
        };
        match values[0] {
            "none" => Some(CompressionSpec::None),
            "lz4" => Some(CompressionSpec::Lz4),
            "zlib" => level(0, 9, 6).map(|l| CompressionSpec::Zlib(l as u32)),
            "lzma" => level(0, 9, 6).map(|l| CompressionSpec::Lzma(l as u32)),
            "zstd" => level(1, 22, 3).map(|l| CompressionSpec::Zstd(l as i32)),
            "auto" if (2..=3).contains(&count) => {
                let inner = Self::parse_fields(&values[1..].join(","))?;
                Some(CompressionSpec::Auto(Box::new(inner)))
            }
            "obfuscate" if (3..=5).contains(&count) => {
                let level = crate::python::parse_int(values[1])?;
                let valid =
                    (1..=6).contains(&level) || (110..=123).contains(&level) || level == 250;
                if !valid {
                    return None;
                }
                let inner = Self::parse_fields(&values[2..].join(","))?;
                Some(CompressionSpec::Obfuscate(level as u32, Box::new(inner)))
            }
            _ => None,
        }
    }

    /// Compress `data` into a borg envelope (header + body), with borg's fallbacks.
    pub fn compress(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.compress_append(data, &mut out);
        out
    }

    /// Append the envelope of `data` to `out` (the encryption envelope is built around it
    /// in place: no copy of the compressed body).
    pub fn compress_append(&self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            CompressionSpec::None => append_uncompressed(data, out),
            CompressionSpec::Lz4 => lz4_append(data, out),
            CompressionSpec::Zstd(level) => zstd_append(data, *level, out),
            _ if out.is_empty() => *out = self.compress_whole(data),
            _ => out.extend_from_slice(&self.compress_whole(data)),
        }
    }

    /// The envelope of the compressors that build it whole (zlib, lzma, auto, obfuscate).
    fn compress_whole(&self, data: &[u8]) -> Vec<u8> {
        match self {
            CompressionSpec::None | CompressionSpec::Lz4 | CompressionSpec::Zstd(_) => {
                let mut out = Vec::new();
                self.compress_append(data, &mut out);
                out
            }
            CompressionSpec::Zlib(level) => zlib_compress(data, *level),
            CompressionSpec::Lzma(level) => lzma_compress(data, *level),
            CompressionSpec::Auto(inner) => auto_compress(data, inner),
            CompressionSpec::Obfuscate(level, inner) => {
                obfuscate_compress(data, *level, inner, rand::random::<f64>)
            }
        }
    }
}

impl fmt::Display for CompressionSpec {
    /// The canonical spec text, levels always explicit (`zstd,3`, `auto,zlib,6`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionSpec::None => write!(f, "none"),
            CompressionSpec::Lz4 => write!(f, "lz4"),
            CompressionSpec::Zstd(l) => write!(f, "zstd,{l}"),
            CompressionSpec::Zlib(l) => write!(f, "zlib,{l}"),
            CompressionSpec::Lzma(l) => write!(f, "lzma,{l}"),
            CompressionSpec::Auto(inner) => write!(f, "auto,{inner}"),
            CompressionSpec::Obfuscate(level, inner) => write!(f, "obfuscate,{level},{inner}"),
        }
    }
}

impl std::str::FromStr for CompressionSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CompressionSpec::parse(s)
    }
}

fn with_header(header: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

fn store_uncompressed(data: &[u8]) -> Vec<u8> {
    with_header(HEADER_NONE, data)
}

fn append_uncompressed(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(2 + data.len());
    out.extend_from_slice(&HEADER_NONE);
    out.extend_from_slice(data);
}

/// Append `header` + what `compress` writes into a buffer of `bound` bytes, or the data
/// uncompressed (`00 00`+data) unless the body is strictly smaller than the input.
fn append_compressed(
    data: &[u8],
    header: [u8; 2],
    bound: usize,
    out: &mut Vec<u8>,
    compress: impl FnOnce(&mut [u8]) -> Option<usize>,
) {
    let start = out.len();
    out.resize(start + 2 + bound, 0);
    match compress(&mut out[start + 2..]) {
        Some(n) if n < data.len() => {
            out[start..start + 2].copy_from_slice(&header);
            out.truncate(start + 2 + n);
        }
        _ => {
            out.truncate(start);
            append_uncompressed(data, out);
        }
    }
}

/// lz4 block; `00 00`+data unless the body is strictly smaller than the input.
fn lz4_compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lz4_append(data, &mut out);
    out
}

fn lz4_append(data: &[u8], out: &mut Vec<u8>) {
    let bound = lz4_flex::block::get_maximum_output_size(data.len());
    append_compressed(data, HEADER_LZ4, bound, out, |buf| {
        lz4_flex::block::compress_into(data, buf).ok()
    });
}

thread_local! {
    static ZSTD_CCTX: RefCell<zstd::zstd_safe::CCtx<'static>> = RefCell::new(zstd::zstd_safe::CCtx::create());
    static ZSTD_DCTX: RefCell<zstd::zstd_safe::DCtx<'static>> = RefCell::new(zstd::zstd_safe::DCtx::create());
}

/// One zstd frame (ZSTD_compress semantics, so the content size is in the frame header);
/// `00 00`+data unless strictly smaller.
fn zstd_append(data: &[u8], level: i32, out: &mut Vec<u8>) {
    let bound = zstd::zstd_safe::compress_bound(data.len());
    append_compressed(data, HEADER_ZSTD, bound, out, |buf| {
        ZSTD_CCTX
            .with(|cctx| cctx.borrow_mut().compress(buf, data, level))
            .ok()
    });
}

/// A bare zlib stream (no borg header, never falls back), like Python's `zlib.compress`.
fn zlib_compress(data: &[u8], level: u32) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let mut enc = flate2::write::ZlibEncoder::new(out, flate2::Compression::new(level.min(9)));
    // Writing into a Vec cannot fail.
    enc.write_all(data).expect("zlib into memory");
    enc.finish().expect("zlib into memory")
}

/// An `.xz` container without integrity check (Python `lzma.compress(preset=L,
/// check=CHECK_NONE)`); `00 00`+data unless strictly smaller.
fn lzma_compress(data: &[u8], level: u32) -> Vec<u8> {
    let encoded = xz2::stream::Stream::new_easy_encoder(level.min(9), xz2::stream::Check::None)
        .ok()
        .and_then(|stream| {
            let mut out = Vec::with_capacity(data.len() / 2 + 128);
            out.extend_from_slice(&HEADER_LZMA);
            let mut enc = xz2::write::XzEncoder::new_stream(out, stream);
            enc.write_all(data).ok()?;
            enc.finish().ok()
        });
    match encoded {
        Some(out) if out.len() - 2 < data.len() => out,
        _ => store_uncompressed(data),
    }
}

/// borg's `auto`: lz4 decides whether the expensive compressor is worth trying.
fn auto_compress(data: &[u8], expensive: &CompressionSpec) -> Vec<u8> {
    let cheap = lz4_compress(data);
    let ratio = cheap.len() as f64 / (data.len() as f64 + 2.0);
    if ratio >= 0.97 {
        return cheap;
    }
    let costly = expensive.compress(data);
    if (costly.len() as f64 / cheap.len() as f64) < 0.99 {
        costly
    } else {
        cheap
    }
}

/// Number of padding bytes for obfuscation level `level` (before capping); `random` yields
/// values in [0, 1) like Python's `random.random()`.
fn obfuscation_padding(level: u32, compr_size: usize, random: impl FnOnce() -> f64) -> usize {
    match level {
        1..=6 => {
            let factor = 0.001 * 10f64.powi(level as i32);
            let r = random().max(0.0001);
            (compr_size as f64 * (factor / r)) as usize
        }
        110..=123 => {
            let max_padding = (1u64 << (level - 100)) as f64;
            (max_padding * random()) as usize
        }
        250 => padme_padding(compr_size),
        _ => 0,
    }
}

/// Padmé: round the size up so that only the top ~log2(log2(size)) bits may be non-zero.
pub fn padme_padding(compr_size: usize) -> usize {
    if compr_size < 2 {
        return 0;
    }
    let e = (usize::BITS - 1 - compr_size.leading_zeros()) as usize; // floor(log2(size))
    let s = (usize::BITS - 1 - e.leading_zeros()) as usize + 1; // floor(log2(e)) + 1
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    ((compr_size + mask) & !mask) - compr_size
}

fn obfuscate_compress(
    data: &[u8],
    level: u32,
    inner: &CompressionSpec,
    random: impl FnOnce() -> f64,
) -> Vec<u8> {
    let compressed = inner.compress(data);
    let compr_size = compressed.len();
    let wanted = obfuscation_padding(level, compr_size, random);
    // Stay away from MAX_DATA_SIZE; padding can only make the payload longer.
    let room = MAX_DATA_SIZE
        .saturating_sub(1024)
        .saturating_sub(compr_size);
    let padding = wanted.min(room);
    let mut out = Vec::with_capacity(2 + 4 + compr_size + padding);
    out.extend_from_slice(&HEADER_OBFUSCATE);
    out.extend_from_slice(&(compr_size as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    out.resize(out.len() + padding, 0);
    out
}

/// Decompress a borg envelope (any algorithm) into the plaintext.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(data, &mut out)?;
    Ok(out)
}

/// Decompress into `out` (cleared first), reusing its allocation.
pub fn decompress_into(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    decompress_nested(data, out, 0)
}

/// The algorithm name of an envelope, as dispatched by [`decompress`] (`none`, `lz4`, `zstd`,
/// `zlib`, `lzma`, `obfuscate`), or `None` if no decompressor matches.
pub fn detect(data: &[u8]) -> Option<&'static str> {
    if data.len() < 2 {
        return None;
    }
    let header = [data[0], data[1]];
    // Same order as borg's COMPRESSOR_LIST: fast ones first, zlib before lzma/obfuscate.
    Some(match header {
        HEADER_LZ4 => "lz4",
        HEADER_ZSTD => "zstd",
        HEADER_NONE => "none",
        _ if is_zlib_header(header) => "zlib",
        HEADER_LZMA => "lzma",
        HEADER_OBFUSCATE => "obfuscate",
        _ => return None,
    })
}

/// zlib's CMF/FLG check: deflate method and a header checksum divisible by 31.
fn is_zlib_header(h: [u8; 2]) -> bool {
    let (cmf, flg) = (h[0] as u32, h[1] as u32);
    cmf & 0x0f == 8 && (cmf * 256 + flg) % 31 == 0
}

fn decompress_nested(data: &[u8], out: &mut Vec<u8>, depth: u32) -> Result<()> {
    let body = data.get(2..).unwrap_or(&[]);
    match detect(data) {
        Some("lz4") => lz4_decompress(body, out),
        Some("zstd") => zstd_decompress(body, out),
        Some("none") => {
            out.extend_from_slice(body);
            Ok(())
        }
        Some("zlib") => zlib_decompress(data, out),
        Some("lzma") => lzma_decompress(body, out),
        Some("obfuscate") => {
            if depth >= MAX_OBFUSCATE_NESTING {
                return Err(Error::decompression(
                    "too many nested obfuscation envelopes",
                ));
            }
            let size_bytes: [u8; 4] = body
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Error::decompression("obfuscated data too short"))?;
            let size = u32::from_be_bytes(size_bytes) as usize;
            let inner = body.get(4..4 + size).ok_or_else(|| {
                Error::decompression("obfuscated data shorter than its size header")
            })?;
            decompress_nested(inner, out, depth + 1)
        }
        _ => {
            let head = &data[..data.len().min(2)];
            Err(Error::decompression(format!(
                "No decompressor for this data found: {}.",
                py_bytes_repr(head)
            )))
        }
    }
}

/// Python's `repr()` of a bytes object.
pub(crate) fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::from("b");
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            c if c as char == quote => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7e => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote);
    s
}

/// The largest output buffer borg's lz4 decoder tries before giving up: it starts at
/// max(1.1 × 8 MiB, 3 × input) and grows ×1.5 while the size is ≤ 128 MiB.
fn lz4_output_limit(input_len: usize) -> usize {
    let mut osize = ((1.1 * (1u64 << 23) as f64) as usize).max(input_len.saturating_mul(3));
    while osize <= 1 << 27 {
        osize = (1.5 * osize as f64) as usize;
    }
    osize
}

/// The exact decoded length of an lz4 block, found by walking its sequences (the format
/// stores no size). Fails on truncated or malformed sequences and beyond `limit`.
fn lz4_decoded_len(src: &[u8], limit: usize) -> Result<usize> {
    let corrupt = || Error::decompression("lz4 decompress failed");
    let read_extra = |pos: &mut usize, mut len: usize| -> Result<usize> {
        loop {
            let b = *src.get(*pos).ok_or_else(corrupt)?;
            *pos += 1;
            len = len.checked_add(b as usize).ok_or_else(corrupt)?;
            if b != 255 {
                return Ok(len);
            }
        }
    };
    let mut pos = 0usize;
    let mut total = 0usize;
    loop {
        let token = *src.get(pos).ok_or_else(corrupt)?;
        pos += 1;
        let mut literals = (token >> 4) as usize;
        if literals == 15 {
            literals = read_extra(&mut pos, literals)?;
        }
        if src.len() - pos < literals {
            return Err(corrupt());
        }
        pos += literals;
        total = total.checked_add(literals).ok_or_else(corrupt)?;
        if pos == src.len() {
            return if total <= limit {
                Ok(total)
            } else {
                Err(corrupt())
            };
        }
        if src.len() - pos < 2 {
            return Err(corrupt());
        }
        pos += 2; // match offset
        let mut match_len = (token & 0x0f) as usize;
        if match_len == 15 {
            match_len = read_extra(&mut pos, match_len)?;
        }
        total = total.checked_add(match_len + 4).ok_or_else(corrupt)?;
        if total > limit {
            return Err(corrupt());
        }
    }
}

fn lz4_decompress(body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let size = lz4_decoded_len(body, lz4_output_limit(body.len()))?;
    let start = out.len();
    out.resize(start + size, 0);
    match lz4_flex::block::decompress_into(body, &mut out[start..]) {
        Ok(n) if n == size => Ok(()),
        _ => {
            out.truncate(start);
            Err(Error::decompression("lz4 decompress failed"))
        }
    }
}

fn zstd_decompress(body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    use zstd::zstd_safe;
    let size = match zstd_safe::get_frame_content_size(body) {
        Ok(Some(n)) => n,
        Ok(None) => {
            return Err(Error::decompression(
                "zstd get size failed: original size unknown",
            ))
        }
        Err(_) => {
            return Err(Error::decompression(
                "zstd get size failed: data was not compressed by zstd",
            ))
        }
    };
    if size > MAX_DECOMPRESSED_SIZE as u64 {
        return Err(Error::decompression("MemoryError"));
    }
    let size = size as usize;
    let start = out.len();
    out.resize(start + size, 0);
    let result = ZSTD_DCTX.with(|d| d.borrow_mut().decompress(&mut out[start..], body));
    match result {
        Ok(n) if n == size => Ok(()),
        Ok(_) => {
            out.truncate(start);
            Err(Error::decompression(
                "zstd decompress failed: size mismatch",
            ))
        }
        Err(code) => {
            out.truncate(start);
            Err(Error::decompression(format!(
                "zstd decompress failed: {}",
                zstd_safe::get_error_name(code)
            )))
        }
    }
}

/// Grow `out` for a streaming decoder, refusing to pass the decompression limit.
fn grow_output(out: &mut Vec<u8>, start: usize) -> Result<()> {
    let produced = out.len() - start;
    if produced >= MAX_DECOMPRESSED_SIZE {
        return Err(Error::decompression("MemoryError"));
    }
    let extra = produced
        .max(64 * 1024)
        .min(MAX_DECOMPRESSED_SIZE - produced);
    out.reserve(extra);
    Ok(())
}

/// A zlib stream (the whole envelope is the stream). Data after the stream end is ignored,
/// like Python's `zlib.decompress`.
fn zlib_decompress(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    use flate2::{Decompress, FlushDecompress, Status};
    let start = out.len();
    let mut dec = Decompress::new(true);
    out.reserve((data.len().saturating_mul(4)).clamp(1024, 16 << 20));
    loop {
        let consumed = dec.total_in() as usize;
        let produced = dec.total_out();
        let status = dec
            .decompress_vec(&data[consumed..], out, FlushDecompress::None)
            .map_err(|e| Error::decompression(format!("Error -3 while decompressing data: {e}")));
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => {
                if out.len() == out.capacity() {
                    if let Err(e) = grow_output(out, start) {
                        out.truncate(start);
                        return Err(e);
                    }
                } else if dec.total_in() as usize == consumed && dec.total_out() == produced {
                    out.truncate(start);
                    return Err(Error::decompression(
                        "Error -5 while decompressing data: incomplete or truncated stream",
                    ));
                }
            }
        }
    }
}

/// Memory the lzma decoder may use. borg compresses with presets 0–9 (dictionaries of at most
/// 64 MiB, ~65 MiB to decode); a stream asking for more is hostile or broken (a header
/// claiming a 4 GiB dictionary would otherwise be allocated).
const LZMA_MEMLIMIT: u64 = 256 << 20;

/// Decode one `.xz` (or legacy `.lzma`) stream from `input` into `out`; returns the number of
/// input bytes it used.
fn lzma_decode_stream(input: &[u8], out: &mut Vec<u8>, start: usize) -> Result<usize> {
    use xz2::stream::{Action, Status, Stream};
    let mut stream = Stream::new_auto_decoder(LZMA_MEMLIMIT, 0)
        .map_err(|e| Error::decompression(e.to_string()))?;
    loop {
        let consumed = stream.total_in() as usize;
        let produced = stream.total_out();
        if out.len() == out.capacity() {
            grow_output(out, start)?;
        }
        let status = stream
            .process_vec(&input[consumed..], out, Action::Finish)
            .map_err(|e| Error::decompression(e.to_string()))?;
        match status {
            Status::StreamEnd => return Ok(stream.total_in() as usize),
            _ => {
                let stalled =
                    stream.total_in() as usize == consumed && stream.total_out() == produced;
                if stalled && out.len() < out.capacity() {
                    return Err(Error::decompression(
                        "Compressed data ended before the end-of-stream marker was reached",
                    ));
                }
            }
        }
    }
}

/// Python `lzma.decompress`: concatenated streams are decoded; trailing bytes that are not a
/// valid stream after at least one good stream are ignored.
fn lzma_decompress(body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.reserve((body.len().saturating_mul(4)).clamp(1024, 16 << 20));
    let mut pos = match lzma_decode_stream(body, out, start) {
        Ok(n) => n,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    while pos < body.len() {
        let keep = out.len();
        match lzma_decode_stream(&body[pos..], out, start) {
            Ok(n) if n > 0 => pos += n,
            _ => {
                out.truncate(keep);
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/envelope: after an empty `.lzma` stream, trailing bytes whose header asks
    /// for a 4 GiB dictionary. The decoder's memory limit refuses that stream (trailing data,
    /// ignored as Python's lzma does: the result is the empty first stream) instead of
    /// allocating 4 GiB; `cargo +nightly fuzz run envelope <this file>` checks the allocation.
    #[test]
    fn lzma_stream_needing_huge_memory_is_refused() {
        let input = include_bytes!("../fuzz/regressions/envelope-lzma-huge-dictionary");
        let payload = &input[1..]; // after the fuzz target's selector byte
        assert_eq!(&payload[..2], &[0x02, 0x00]);
        assert_eq!(decompress(payload).unwrap(), b"");
        // borg's strongest preset still decodes
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let packed = CompressionSpec::Lzma(9).compress(&data);
        assert_eq!(decompress(&packed).unwrap(), data);
    }

    fn sample_text(n: usize) -> Vec<u8> {
        let words = b"borg backup deduplicating archiver with compression and encryption ";
        words.iter().cycle().take(n).copied().collect()
    }

    fn sample_random(n: usize, seed: u64) -> Vec<u8> {
        // SplitMix64 (spec §10.1): incompressible, deterministic.
        let mut state = seed;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            state = state.wrapping_add(0x9E3779B97F4A7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            out.extend_from_slice(&z.to_le_bytes());
        }
        out.truncate(n);
        out
    }

    #[test]
    fn parse_defaults_and_levels() {
        let p = |s: &str| CompressionSpec::parse(s).unwrap();
        assert_eq!(p("none"), CompressionSpec::None);
        assert_eq!(p("lz4"), CompressionSpec::Lz4);
        assert_eq!(p("lz4,9"), CompressionSpec::Lz4); // extra fields ignored, like borg
        assert_eq!(p("zstd"), CompressionSpec::Zstd(3));
        assert_eq!(p("zstd,22"), CompressionSpec::Zstd(22));
        assert_eq!(p("zlib"), CompressionSpec::Zlib(6));
        assert_eq!(p("zlib,0"), CompressionSpec::Zlib(0));
        assert_eq!(p("lzma"), CompressionSpec::Lzma(6));
        assert_eq!(p("lzma,9"), CompressionSpec::Lzma(9));
        assert_eq!(
            p("auto,zlib,6"),
            CompressionSpec::Auto(Box::new(CompressionSpec::Zlib(6)))
        );
        assert_eq!(
            p("auto,lz4"),
            CompressionSpec::Auto(Box::new(CompressionSpec::Lz4))
        );
        assert_eq!(
            p("obfuscate,110,zstd,3"),
            CompressionSpec::Obfuscate(110, Box::new(CompressionSpec::Zstd(3)))
        );
        assert_eq!(
            p("obfuscate,3,auto,zstd,10"),
            CompressionSpec::Obfuscate(
                3,
                Box::new(CompressionSpec::Auto(Box::new(CompressionSpec::Zstd(10))))
            )
        );
        assert_eq!(
            p("obfuscate,250,none"),
            CompressionSpec::Obfuscate(250, Box::new(CompressionSpec::None))
        );
        assert_eq!(p("zstd, 5"), CompressionSpec::Zstd(5)); // Python int() strips blanks
        let nested = CompressionSpec::Auto(Box::new(CompressionSpec::Auto(Box::new(
            CompressionSpec::Lz4,
        ))));
        assert_eq!(p("auto,auto,lz4"), nested); // borg accepts this too
    }

    #[test]
    fn parse_rejects_what_borg_rejects() {
        for bad in [
            "",
            "foo",
            "zstd,0",
            "zstd,23",
            "zstd,abc",
            "zlib,10",
            "lzma,-1",
            "zstd,3,1",
            "auto",
            "auto,zlib,6,1",
            "auto,foo",
            "obfuscate,1",
            "obfuscate,7,lz4",
            "obfuscate,109,lz4",
            "obfuscate,124,lz4",
            "obfuscate,x,lz4",
            "obfuscate,1,lz4,1,2,3",
            "auto,auto",
        ] {
            let err = CompressionSpec::parse(bad).unwrap_err();
            assert_eq!(
                err.message,
                format!("invalid CompressionSpec value: '{bad}'"),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_is_canonical() {
        for (spec, text) in [
            ("none", "none"),
            ("lz4,1", "lz4"),
            ("zstd", "zstd,3"),
            ("zlib", "zlib,6"),
            ("lzma,1", "lzma,1"),
            ("auto,zlib", "auto,zlib,6"),
            ("obfuscate,250,auto,lz4", "obfuscate,250,auto,lz4"),
        ] {
            let parsed = CompressionSpec::parse(spec).unwrap();
            assert_eq!(parsed.to_string(), text);
            assert_eq!(CompressionSpec::parse(text).unwrap(), parsed);
        }
    }

    #[test]
    fn round_trips_every_spec() {
        let specs = [
            "none",
            "lz4",
            "zstd,1",
            "zstd,3",
            "zstd,19",
            "zlib,0",
            "zlib,6",
            "zlib,9",
            "lzma,0",
            "lzma,6",
            "auto,lz4",
            "auto,zstd,3",
            "auto,zlib,6",
            "auto,lzma,1",
            "obfuscate,1,lz4",
            "obfuscate,6,zstd,3",
            "obfuscate,110,zlib,6",
            "obfuscate,250,auto,lzma,1",
        ];
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"x".to_vec(),
            sample_text(100_000),
            sample_random(50_000, 7),
            vec![0u8; 300_000],
        ];
        for spec in specs {
            let spec = CompressionSpec::parse(spec).unwrap();
            for data in &inputs {
                let c = spec.compress(data);
                assert_eq!(decompress(&c).unwrap(), *data, "{spec} len {}", data.len());
            }
        }
    }

    #[test]
    fn headers_and_fallbacks() {
        let text = sample_text(20_000);
        let random = sample_random(20_000, 1);
        let c = |s: &str, d: &[u8]| CompressionSpec::parse(s).unwrap().compress(d);
        assert_eq!(&c("none", &text)[..2], &HEADER_NONE);
        assert_eq!(&c("lz4", &text)[..2], &HEADER_LZ4);
        assert_eq!(&c("zstd", &text)[..2], &HEADER_ZSTD);
        assert_eq!(&c("lzma", &text)[..2], &HEADER_LZMA);
        assert_eq!(c("zlib", &text)[0], 0x78);
        assert_eq!(&c("obfuscate,110,none", &text)[..2], &HEADER_OBFUSCATE);
        // Incompressible data: lz4/zstd/lzma store it as none; zlib never falls back.
        for s in ["lz4", "zstd,3", "lzma,1", "auto,zlib,6", "auto,lz4"] {
            let out = c(s, &random);
            assert_eq!(&out[..2], &HEADER_NONE, "{s}");
            assert_eq!(&out[2..], &random[..], "{s}");
        }
        let z = c("zlib,6", &random);
        assert!(is_zlib_header([z[0], z[1]]));
        assert!(z.len() > random.len());
        // Empty input: nothing gets smaller.
        assert_eq!(c("lz4", b""), vec![0, 0]);
        assert_eq!(c("zstd", b""), vec![0, 0]);
        assert_eq!(c("lzma", b""), vec![0, 0]);
        assert_eq!(decompress(&c("zlib", b"")).unwrap(), b"");
    }

    #[test]
    fn zlib_matches_python_stream() {
        // python3 -c "import zlib; print(zlib.compress(b'hello hello hello hello', 6).hex())"
        let py = hex::decode("789ccb48cdc9c957c8402701680308b1").unwrap();
        assert_eq!(decompress(&py).unwrap(), b"hello hello hello hello");
        assert_eq!(zlib_compress(b"hello hello hello hello", 6), py);
    }

    #[test]
    fn zstd_frame_carries_content_size() {
        let text = sample_text(70_000);
        let out = CompressionSpec::Zstd(3).compress(&text);
        let size = zstd::zstd_safe::get_frame_content_size(&out[2..]).unwrap();
        assert_eq!(size, Some(70_000));
        // A frame without content size is refused, as borg does.
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&text).unwrap();
        let frame = enc.finish().unwrap();
        let env = with_header(HEADER_ZSTD, &frame);
        let err = decompress(&env).unwrap_err();
        assert_eq!(err.kind, ErrorKind::DecompressionError);
        assert!(err.message.contains("original size unknown"));
    }

    #[test]
    fn lzma_matches_python_container() {
        // python3 -c "import lzma; print(lzma.compress(b'a'*100, preset=1, check=lzma.CHECK_NONE).hex())"
        let py = hex::decode(concat!(
            "fd377a585a000000ff12d9410200210110000000a8708e86e0006300065d0030ee9e00",
            "000000000000011a64b1ea74da06729e7a010000000000595a",
        ))
        .unwrap();
        let mut env = HEADER_LZMA.to_vec();
        env.extend_from_slice(&py);
        assert_eq!(decompress(&env).unwrap(), vec![b'a'; 100]);
        assert_eq!(
            &CompressionSpec::Lzma(1).compress(&[b'a'; 100])[2..],
            &py[..]
        );
    }

    #[test]
    fn obfuscate_padding_rules() {
        // Padmé examples: 9 → 10? (E=3,S=2 → round to 2), 1000 → 1024 (E=9, S=4, 5 bits)
        assert_eq!(padme_padding(0), 0);
        assert_eq!(padme_padding(1), 0);
        assert_eq!(padme_padding(9), 1);
        assert_eq!(padme_padding(1000), 24);
        assert_eq!(padme_padding(1024), 0);
        assert_eq!(obfuscation_padding(110, 5, || 0.5), 512);
        assert_eq!(
            obfuscation_padding(123, 5, || 0.999),
            (8388608.0f64 * 0.999) as usize
        );
        assert_eq!(obfuscation_padding(1, 1000, || 1.0 - f64::EPSILON), 10);
        assert_eq!(obfuscation_padding(1, 1000, || 0.0), 100_000); // r floored at 0.0001
                                                                   // Encoded form: header, u32be inner size, inner envelope, zero padding.
        let data = sample_text(5000);
        let out = obfuscate_compress(&data, 110, &CompressionSpec::Lz4, || 0.25);
        let inner = CompressionSpec::Lz4.compress(&data);
        assert_eq!(&out[..2], &HEADER_OBFUSCATE);
        assert_eq!(&out[2..6], &(inner.len() as u32).to_be_bytes());
        assert_eq!(&out[6..6 + inner.len()], &inner[..]);
        assert_eq!(out.len(), 6 + inner.len() + 256);
        assert!(out[6 + inner.len()..].iter().all(|b| *b == 0));
        assert_eq!(decompress(&out).unwrap(), data);
        // Padding is capped below MAX_DATA_SIZE.
        let big = obfuscate_compress(&data, 6, &CompressionSpec::Lz4, || 0.0);
        assert_eq!(big.len(), 6 + MAX_DATA_SIZE - 1024);
    }

    #[test]
    fn auto_rules() {
        let text = sample_text(100_000);
        let auto = CompressionSpec::parse("auto,zlib,9")
            .unwrap()
            .compress(&text);
        assert!(is_zlib_header([auto[0], auto[1]])); // zlib beats lz4 by >1 % on text
        let half = [sample_random(60_000, 3), vec![0u8; 40_000]].concat();
        let mixed = CompressionSpec::parse("auto,none").unwrap().compress(&half);
        assert_eq!(&mixed[..2], &HEADER_LZ4); // none is never better than lz4
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x01],
            vec![0x05, 0x00, 1, 2, 3],
            vec![0x01, 0x00],
            vec![0x01, 0x00, 0xff],
            vec![0x01, 0x00, 0xf0, 0xff, 0xff, 0xff],
            vec![0x01, 0x00, 0x1f, b'a', 0xff, 0xff, 0x0f], // offset beyond output
            vec![0x03, 0x00, 0x28, 0xb5, 0x2f, 0xfd],
            vec![0x02, 0x00, 0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
            vec![0x78, 0x9c, 0xff, 0xff],
            vec![0x78, 0x9c],
            vec![0x04, 0x00, 0x00],
            vec![0x04, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
        ];
        // A zstd frame claiming an absurd content size.
        let mut huge = vec![0x03, 0x00, 0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        huge.extend_from_slice(&u64::MAX.to_le_bytes()[..7]);
        huge.extend_from_slice(&[0x7f, 0, 0, 0]);
        cases.push(huge);
        // Truncations of valid envelopes of every kind.
        let text = sample_text(10_000);
        for spec in ["lz4", "zstd", "zlib", "lzma", "obfuscate,110,lz4"] {
            let c = CompressionSpec::parse(spec).unwrap().compress(&text);
            let cut = if spec.starts_with("obfuscate") {
                12
            } else {
                c.len() / 2
            };
            cases.push(c[..cut].to_vec());
        }
        for case in cases {
            match decompress(&case) {
                Err(e) => assert_eq!(e.kind, ErrorKind::DecompressionError, "{case:02x?}"),
                Ok(v) => panic!("accepted garbage {case:02x?} -> {} bytes", v.len()),
            }
        }
        // Deterministic fuzz: random bytes behind every header never panic.
        for i in 0..400u64 {
            let mut d = sample_random(64 + (i as usize % 200), i);
            d[0] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x78][i as usize % 6];
            d[1] = if d[0] == 0x78 { 0x9c } else { 0 };
            let _ = decompress(&d);
        }
    }

    #[test]
    fn lz4_size_scan_matches_decoder() {
        for data in [
            sample_text(1),
            sample_text(17),
            sample_text(70_000),
            vec![7u8; 1 << 20],
        ] {
            let body = lz4_flex::block::compress(&data);
            assert_eq!(lz4_decoded_len(&body, usize::MAX).unwrap(), data.len());
        }
        assert_eq!(lz4_output_limit(0), 157_659_939);
        assert!(lz4_decoded_len(&lz4_flex::block::compress(&vec![0u8; 1 << 20]), 1000).is_err());
    }

    #[test]
    fn decompress_into_appends_after_clear() {
        let mut out = b"stale".to_vec();
        decompress_into(
            &CompressionSpec::Zstd(3).compress(&sample_text(1000)),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, sample_text(1000));
        assert_eq!(detect(&[0x78, 0x01]), Some("zlib"));
        assert_eq!(detect(&[0x78, 0x02]), None);
        assert_eq!(detect(&[0x08, 0x1d]), Some("zlib"));
    }
}
