//! What the fuzz targets share: a scratch directory per process, copying trees, and a reader
//! that hands out its bytes in small pieces.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

/// A fresh scratch directory under TMPDIR for this process (`name` tells the targets apart);
/// it becomes the working directory and BORG_BASE_DIR, and the engine's log is silenced
/// (errors about bad input would flood the fuzzer's output).
pub fn make_scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("rborg-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("scratch dir");
    let root = root.canonicalize().expect("scratch dir");
    std::env::set_current_dir(&root).expect("cd scratch dir");
    std::env::set_var("BORG_BASE_DIR", &root);
    rborg::output::set_logger_level("borg", rborg::output::Level::Critical);
    root
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A reader handing out the input `chunk` bytes at a time.
pub struct Chunked<'a> {
    pub data: &'a [u8],
    pub chunk: usize,
}

impl<'a> Chunked<'a> {
    /// `cut` 0: everything at once; n: reads of n bytes (frames split at arbitrary points).
    pub fn new(data: &'a [u8], cut: u8) -> Chunked<'a> {
        let chunk = if cut == 0 { usize::MAX } else { cut as usize };
        Chunked { data, chunk }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Write seed files `<dir>/<name>` when RBORG_FUZZ_SEEDS names a directory (scripts/fuzz
/// uses this to regenerate a target's starting corpus from what the target itself builds).
pub fn write_seeds(seeds: &[(String, Vec<u8>)]) {
    let Some(dir) = std::env::var_os("RBORG_FUZZ_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("seed dir");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}
