//! Archive statistics as borg counts them (`Statistics`): original, compressed and
//! deduplicated sizes and the number of regular files, separately for checkpoint part files.

/// Sizes of one archive (or of a deletion).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    pub osize: u64,
    pub csize: u64,
    /// Deduplicated (compressed) size: chunks first stored by this operation.
    pub usize: u64,
    pub nfiles: u64,
    pub osize_parts: u64,
    pub csize_parts: u64,
    pub usize_parts: u64,
    pub nfiles_parts: u64,
}

impl Statistics {
    /// Count one chunk reference (borg's `update(size, csize, unique, part)`).
    pub fn update(&mut self, size: u64, csize: u64, unique: bool, part: bool) {
        if part {
            self.osize_parts += size;
            self.csize_parts += csize;
            if unique {
                self.usize_parts += csize;
            }
        } else {
            self.osize += size;
            self.csize += csize;
            if unique {
                self.usize += csize;
            }
        }
    }

    /// Sum of two statistics (borg's `__add__`).
    pub fn add(&mut self, other: &Statistics) {
        self.osize += other.osize;
        self.csize += other.csize;
        self.usize += other.usize;
        self.nfiles += other.nfiles;
        self.osize_parts += other.osize_parts;
        self.csize_parts += other.csize_parts;
        self.usize_parts += other.usize_parts;
        self.nfiles_parts += other.nfiles_parts;
    }
}
