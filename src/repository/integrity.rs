//! Whole-file digests with borg's framing (repository-format.md §3.6).
//!
//! A digest covers the file's base name, its content and named "parts": at a part the name and
//! the current length are fed into the running hash and the hash state is recorded (the state is
//! not reset). Every file ends with the part `final`, whose length is the file length. Index
//! files also have a `HashHeader` part after their 18-byte header.
//!
//! The digests are stored as JSON (`{"algorithm": "XXH64", "digests": {...}}`): in the
//! repository's `integrity.T` msgpack map, in the cache config, or in a `<file>.integrity` side
//! file ([`read_detached`], [`write_detached`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};
use xxhash_rust::xxh64::Xxh64;

use crate::errors::{Error, Result};
use crate::output;

/// Algorithm names borg understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Xxh64,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Xxh64 => "XXH64",
            Algorithm::Sha512 => "SHA512",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "XXH64" => Some(Algorithm::Xxh64),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

enum Hasher {
    Xxh64(Box<Xxh64>),
    Sha512(Box<Sha512>),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Xxh64 => Hasher::Xxh64(Box::new(Xxh64::new(0))),
            Algorithm::Sha512 => Hasher::Sha512(Box::default()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Xxh64(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn hexdigest(&self) -> String {
        match self {
            Hasher::Xxh64(h) => format!("{:016x}", h.digest()),
            Hasher::Sha512(h) => hex::encode((**h).clone().finalize()),
        }
    }
}

/// The running digest of one file: base-name framing, content, parts.
pub struct FileHasher {
    algorithm: Algorithm,
    hasher: Hasher,
}

impl FileHasher {
    /// Start a digest for a file whose base name is `filename` (borg hashes the final name,
    /// e.g. `index.5` while writing `index.5.tmp`).
    pub fn new(algorithm: Algorithm, filename: &str) -> FileHasher {
        let mut h = FileHasher {
            algorithm,
            hasher: Hasher::new(algorithm),
        };
        h.feed_name(filename);
        h
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn feed_name(&mut self, name: &str) {
        self.hasher.update(format!("{:10}", name.len()).as_bytes());
        self.hasher.update(name.as_bytes());
    }

    /// Feed file content.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Close a part: feed its framed name and `length` (decimal), return the hex digest so far.
    pub fn part(&mut self, name: &str, length: u64) -> String {
        self.feed_name(name);
        self.hasher.update(length.to_string().as_bytes());
        self.hasher.hexdigest()
    }
}

/// Parsed digest JSON: algorithm and `part name → hex digest`, in stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub algorithm: Algorithm,
    pub parts: Vec<(String, String)>,
}

impl Digests {
    pub fn get(&self, part: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(k, _)| k == part)
            .map(|(_, v)| v.as_str())
    }

    /// Parse borg's digest JSON for the file at `path` (used in messages).
    /// `Ok(None)`: unknown algorithm (borg warns and skips verification).
    /// Malformed JSON or no `final` digest → FileIntegrityError, as borg.
    pub fn parse(path: &str, json: &str) -> Result<Option<Digests>> {
        let bad = |why: &str| {
            output::warning(&format!("Could not parse integrity data for {path}: {why}"));
            Error::file_integrity(path)
        };
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
        let name = v
            .get("algorithm")
            .and_then(|a| a.as_str())
            .ok_or_else(|| bad("'algorithm'"))?;
        let Some(algorithm) = Algorithm::from_name(name) else {
            output::warning(&format!(
                "Cannot verify integrity of {path}: Unknown algorithm {name:?}"
            ));
            return Ok(None);
        };
        let map = v
            .get("digests")
            .and_then(|d| d.as_object())
            .ok_or_else(|| bad("'digests'"))?;
        let mut parts = Vec::with_capacity(map.len());
        for (k, v) in map {
            let s = v.as_str().ok_or_else(|| bad("digest is not a string"))?;
            parts.push((k.clone(), s.to_string()));
        }
        let d = Digests { algorithm, parts };
        if d.get("final").is_none() {
            return Err(bad("'final'"));
        }
        Ok(Some(d))
    }

    /// The JSON text as borg's `json.dumps` writes it.
    pub fn to_json(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
            .collect();
        format!(
            "{{\"algorithm\": {}, \"digests\": {{{}}}}}",
            json_str(self.algorithm.name()),
            parts.join(", ")
        )
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Compare digests without an early exit (borg uses `compare_digest`).
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A reader that verifies digests while the caller reads the file front to back.
/// Without digests it is a plain reader (nothing is hashed).
pub struct IntegrityReader<R: Read + Seek> {
    inner: R,
    path: String,
    hasher: Option<FileHasher>,
    digests: Option<Digests>,
    pos: u64,
}

impl<R: Read + Seek> IntegrityReader<R> {
    /// `path` names the file in errors; `filename` is the base name that was hashed.
    pub fn new(inner: R, path: &str, filename: &str, digests: Option<Digests>) -> Self {
        let hasher = digests
            .as_ref()
            .map(|d| FileHasher::new(d.algorithm, filename));
        IntegrityReader {
            inner,
            path: path.to_string(),
            hasher,
            digests,
            pos: 0,
        }
    }

    /// Whether digests are being verified.
    pub fn is_verifying(&self) -> bool {
        self.hasher.is_some()
    }

    /// Position = bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Total length of the underlying file (does not move the read position).
    pub fn file_len(&mut self) -> Result<u64> {
        let len = self.inner.seek(SeekFrom::End(0))?;
        self.inner.seek(SeekFrom::Start(self.pos))?;
        Ok(len)
    }

    fn check_part(&mut self, name: &str, length: u64) -> Result<()> {
        let (Some(h), Some(d)) = (self.hasher.as_mut(), self.digests.as_ref()) else {
            return Ok(());
        };
        let got = h.part(name, length);
        if !same_digest(d.get(name).unwrap_or(""), &got) {
            return Err(Error::file_integrity(&self.path));
        }
        Ok(())
    }

    /// Verify an intermediate part at the current position (e.g. `HashHeader`).
    pub fn hash_part(&mut self, name: &str) -> Result<()> {
        let pos = self.pos;
        self.check_part(name, pos)
    }

    /// Verify the `final` part (length = whole file length) and return the reader.
    pub fn finish(mut self) -> Result<R> {
        if self.hasher.is_some() {
            let len = self.file_len()?;
            self.check_part("final", len)?;
            output::debug(&format!("Verified integrity of {}", self.path));
        }
        Ok(self.inner)
    }
}

impl<R: Read + Seek> Read for IntegrityReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A writer that computes digests of what is written.
pub struct IntegrityWriter<W: Write> {
    inner: W,
    hasher: FileHasher,
    parts: Vec<(String, String)>,
    pos: u64,
}

impl<W: Write> IntegrityWriter<W> {
    /// `filename` is the base name to hash (the final name, not a temp name).
    pub fn new(inner: W, filename: &str) -> Self {
        IntegrityWriter {
            inner,
            hasher: FileHasher::new(Algorithm::Xxh64, filename),
            parts: Vec::new(),
            pos: 0,
        }
    }

    /// Record an intermediate part at the current position.
    pub fn hash_part(&mut self, name: &str) {
        let d = self.hasher.part(name, self.pos);
        self.parts.push((name.to_string(), d));
    }

    /// Record `final` and return the inner writer and the digests.
    pub fn finish(mut self) -> Result<(W, Digests)> {
        self.inner.flush()?;
        self.hash_part("final");
        Ok((
            self.inner,
            Digests {
                algorithm: self.hasher.algorithm(),
                parts: self.parts,
            },
        ))
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for IntegrityWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Path of the side file holding the digests of `path`.
pub fn detached_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".integrity");
    PathBuf::from(s)
}

/// Digests of `path` from its `<path>.integrity` side file; `None` if there is none
/// (borg logs that at info level and skips verification).
pub fn read_detached(path: &Path) -> Result<Option<Digests>> {
    let side = detached_path(path);
    let shown = path.display().to_string();
    match std::fs::read(&side) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            Digests::parse(&shown, &text)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            output::info(&format!("No integrity file found for {shown}"));
            Ok(None)
        }
        Err(e) => {
            output::warning(&format!("Could not read integrity file for {shown}: {e}"));
            Err(Error::file_integrity(shown))
        }
    }
}

/// Write the `<path>.integrity` side file.
pub fn write_detached(path: &Path, digests: &Digests) -> Result<()> {
    std::fs::write(detached_path(path), digests.to_json())?;
    Ok(())
}

/// Read a whole (small) file and verify it against optional digest JSON.
/// `filename` overrides the hashed base name (default: the base name of `path`).
pub fn read_verified(path: &Path, filename: Option<&str>, json: Option<&str>) -> Result<Vec<u8>> {
    let shown = path.display().to_string();
    let digests = match json {
        Some(j) => Digests::parse(&shown, j)?,
        None => None,
    };
    let name = filename
        .map(str::to_string)
        .unwrap_or_else(|| base_name(path));
    let file = File::open(path)?;
    let mut rd = IntegrityReader::new(file, &shown, &name, digests);
    let mut data = Vec::new();
    rd.read_to_end(&mut data)?;
    rd.finish()?;
    Ok(data)
}

/// Digests of an in-memory file content (same as writing it through [`IntegrityWriter`]).
pub fn digest_bytes(filename: &str, content: &[u8]) -> Digests {
    let mut w = IntegrityWriter::new(io::sink(), filename);
    // writing to a sink cannot fail
    let _ = w.write_all(content);
    w.hash_part("final");
    Digests {
        algorithm: Algorithm::Xxh64,
        parts: w.parts,
    }
}

pub(crate) fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn empty_xxh64_matches_spec() {
        let h = Xxh64::new(0);
        assert_eq!(format!("{:016x}", h.digest()), "ef46db3751d8e999");
    }

    #[test]
    fn framing_matches_spec_example() {
        // hashed stream: '%10d' % len(name), name, content, '%10d' % 5, 'final', str(len)
        let content = b"hello hints";
        let mut raw = Vec::new();
        raw.extend_from_slice(b"         7hints.9");
        raw.extend_from_slice(content);
        raw.extend_from_slice(b"         5final11");
        let expect = format!("{:016x}", xxhash_rust::xxh64::xxh64(&raw, 0));
        let d = digest_bytes("hints.9", content);
        assert_eq!(d.get("final"), Some(expect.as_str()));
    }

    #[test]
    fn reader_verifies_and_detects_mismatch() {
        let content = b"some file content".to_vec();
        let d = digest_bytes("f", &content);
        let mut rd =
            IntegrityReader::new(Cursor::new(content.clone()), "/x/f", "f", Some(d.clone()));
        let mut buf = Vec::new();
        rd.read_to_end(&mut buf).unwrap();
        rd.finish().unwrap();
        let mut bad = content.clone();
        bad[0] ^= 1;
        let mut rd = IntegrityReader::new(Cursor::new(bad), "/x/f", "f", Some(d.clone()));
        rd.read_to_end(&mut buf).unwrap();
        let e = rd.finish().unwrap_err();
        assert!(e.is(crate::errors::ErrorKind::FileIntegrityError));
        assert_eq!(e.message, "File failed integrity check: /x/f");
        // another hashed name gives another digest
        let mut rd = IntegrityReader::new(Cursor::new(content), "/x/g", "g", Some(d));
        rd.read_to_end(&mut buf).unwrap();
        assert!(rd.finish().is_err());
    }

    #[test]
    fn json_roundtrip_and_errors() {
        let d = Digests {
            algorithm: Algorithm::Xxh64,
            parts: vec![
                ("HashHeader".into(), "1e7b5372ec4f7b80".into()),
                ("final".into(), "2aeee047ae71e07e".into()),
            ],
        };
        let j = d.to_json();
        assert_eq!(
            j,
            r#"{"algorithm": "XXH64", "digests": {"HashHeader": "1e7b5372ec4f7b80", "final": "2aeee047ae71e07e"}}"#
        );
        assert_eq!(Digests::parse("p", &j).unwrap(), Some(d));
        assert!(Digests::parse("p", "{").is_err());
        assert!(Digests::parse("p", r#"{"algorithm": "XXH64", "digests": {}}"#).is_err());
        assert_eq!(
            Digests::parse("p", r#"{"algorithm": "MD5", "digests": {}}"#).unwrap(),
            None
        );
    }

    #[test]
    fn sha512_is_supported() {
        let mut h = FileHasher::new(Algorithm::Sha512, "x");
        h.update(b"abc");
        assert_eq!(h.part("final", 3).len(), 128);
    }
}
