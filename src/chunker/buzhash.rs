//! borg's buzhash: the seeded table, the hash, its rolling update and the content-defined
//! chunker (repository-format.md §6.1–§6.3) with boundaries identical to borg's.

use crate::bufpool::BufferPool;
use std::io::{self, Read};
use std::sync::Arc;

use super::{is_all_zero, Chunk};

/// The 256 base values of borg's buzhash table (§6.1); the seed is XOR-ed into every entry.
pub const TABLE_BASE: [u32; 256] = [
    0xe7f831ec, 0xf4026465, 0xafb50cae, 0x6d553c7a, 0xd639efe3, 0x19a7b895, 0x9aba5b21, 0x5417d6d4,
    0x35fd2b84, 0xd1f6a159, 0x3f8e323f, 0xb419551c, 0xf444cebf, 0x21dc3b80, 0xde8d1e36, 0x84a32436,
    0xbeb35a9d, 0xa36f24aa, 0xa4e60186, 0x98d18ffe, 0x3f042f9e, 0xdb228bcd, 0x096474b7, 0x5c20c2f7,
    0xf9eec872, 0xe8625275, 0xb9d38f80, 0xd48eb716, 0x22a950b4, 0x3cbaaeaa, 0xc37cddd3, 0x8fea6f6a,
    0x1d55d526, 0x7fd6d3b3, 0xdaa072ee, 0x4345ac40, 0xa077c642, 0x8f2bd45b, 0x28509110, 0x55557613,
    0xffc17311, 0xd961ffef, 0xe532c287, 0xaab95937, 0x46d38365, 0xb065c703, 0xf2d91d0f, 0x92cd4bb0,
    0x4007c712, 0xf35509dd, 0x505b2f69, 0x557ead81, 0x310f4563, 0xbddc5be8, 0x9760f38c, 0x701e0205,
    0x00157244, 0x14912826, 0xdc4ca32b, 0x67b196de, 0x5db292e8, 0x8c1b406b, 0x01f34075, 0xfa2520f7,
    0x73bc37ab, 0x1e18bc30, 0xfe2c6cb3, 0x20c522d0, 0x5639e3db, 0x942bda35, 0x899af9d1, 0xced44035,
    0x98cc025b, 0x255f5771, 0x70fefa24, 0xe928fa4d, 0x2c030405, 0xb9325590, 0x20cb63bd, 0xa166305d,
    0x80e52c0a, 0xa8fafe2f, 0x1ad13f7d, 0xcfaf3685, 0x6c83a199, 0x7d26718a, 0xde5dfcd9, 0x79cf7355,
    0x8979d7fb, 0xebf8c55e, 0xebe408e4, 0xcd2affba, 0xe483be6e, 0xe239d6de, 0x5dc1e9e0, 0x0473931f,
    0x851b097c, 0xac5db249, 0x09c0f9f2, 0xd8d2f134, 0xe6f38e41, 0xb1c71bf1, 0x52b6e4db, 0x07224424,
    0x6cf73e85, 0x4f25d89c, 0x782a7d74, 0x10a68dcd, 0x3a868189, 0xd570d2dc, 0x69630745, 0x9542ed86,
    0x331cd6b2, 0xa84b5b28, 0x07879c9d, 0x38372f64, 0x7185db11, 0x25ba7c83, 0x01061523, 0xe6792f9f,
    0xe5df07d1, 0x4321b47f, 0x7d2469d8, 0x1a3a4f90, 0x48be29a3, 0x669071af, 0x8ec8dd31, 0x0810bfbf,
    0x813a06b4, 0x68538345, 0x65865ddc, 0x43a71b8e, 0x78619a56, 0x5a34451d, 0x5bdaa3ed, 0x71edc7e9,
    0x17ac9a20, 0x78d10bfa, 0x6c1e7f35, 0xd51839d9, 0x240cbc51, 0x33513cc1, 0xd2b4f795, 0xccaa8186,
    0x0babe682, 0xa33cf164, 0x18c643ea, 0xc1ca105f, 0x9959147a, 0x6d3d94de, 0x0b654fbe, 0xed902ca0,
    0x7d835cb5, 0x99ba1509, 0x6445c922, 0x495e76c2, 0xf07194bc, 0xa1631d7e, 0x677076a5, 0x89fffe35,
    0x1a49bcf3, 0x8e6c948a, 0x0144c917, 0x8d93aea1, 0x16f87ddf, 0xc8f25d49, 0x1fb11297, 0x27e750cd,
    0x2f422da1, 0xdee89a77, 0x1534c643, 0x457b7b8b, 0xaf172f7a, 0x6b9b09d6, 0x33573f7f, 0xf14e15c4,
    0x526467d5, 0xaf488241, 0x87c3ee0d, 0x33be490c, 0x95aa6e52, 0x43ec242e, 0xd77de99b, 0xd018334f,
    0x5b78d407, 0x498eb66b, 0xb1279fa8, 0xb38b0ea6, 0x90718376, 0xe325dee2, 0x8e2f2cba, 0xcaa5bdec,
    0x9d652c56, 0xad68f5cb, 0xa77591af, 0x88e37ee8, 0xf8faa221, 0xfcbbbe47, 0x4f407786, 0xaf393889,
    0xf444a1d9, 0x15ae1a2f, 0x40aa7097, 0x6f9486ac, 0x29d232a3, 0xe47609e9, 0xe8b631ff, 0xba8565f4,
    0x11288749, 0x46c9a838, 0xeb1b7cd8, 0xf516bbb1, 0xfb74fda0, 0x010996e6, 0x4c994653, 0x1d889512,
    0x53dcd9a3, 0xdd074697, 0x1e78e17c, 0x637c98bf, 0x930bb219, 0xcf7f75b0, 0xcb9355fb, 0x9e623009,
    0xe466d82c, 0x28f968d3, 0xfeb385d9, 0x238e026c, 0xb8ed0560, 0x0c6a027a, 0x3d6fec4b, 0xbb4b2ec2,
    0xe715031c, 0xeded011d, 0xcdc4d3b9, 0xc456fc96, 0xdd0eea20, 0xb3df8ec9, 0x12351993, 0xd9cbb01c,
    0x603147a2, 0xcf37d17d, 0xf7fcd9dc, 0xd8556fa3, 0x104c8131, 0x13152774, 0xb4715811, 0x6a72c2c9,
    0xc5ae37bb, 0xa76ce12a, 0x8150d8f3, 0x2ec29218, 0xa35f0984, 0x48c0647e, 0x0b5ff98c, 0x71893f7b,
];

/// The chunker seed as borg uses it: the key's signed `chunk_seed` taken modulo 2^32
/// (`-2023406815` → `0x87654321`; pitfall §11.9).
pub fn seed_from_chunk_seed(chunk_seed: i64) -> u32 {
    chunk_seed as u32
}

/// The seeded table `T[i] = TABLE_BASE[i] ^ seed`.
pub fn table(seed: u32) -> [u32; 256] {
    TABLE_BASE.map(|v| v ^ seed)
}

/// buzhash of `data` with the whole slice as the window (borg's `buzhash(data, seed)`).
pub fn buzhash(data: &[u8], seed: u32) -> u32 {
    hash_with_table(&table(seed), data)
}

/// One rolling step for a window of `window` bytes: drop `remove`, append `add`
/// (borg's `buzhash_update(sum, remove, add, len, seed)`).
pub fn buzhash_update(sum: u32, remove: u8, add: u8, window: usize, seed: u32) -> u32 {
    let t = table(seed);
    sum.rotate_left(1) ^ t[remove as usize].rotate_left((window & 31) as u32) ^ t[add as usize]
}

fn hash_with_table(table: &[u32; 256], data: &[u8]) -> u32 {
    let len = data.len();
    data.iter().enumerate().fold(0u32, |sum, (j, &b)| {
        sum ^ table[b as usize].rotate_left(((len - 1 - j) & 31) as u32)
    })
}

/// Precomputed tables for one seed and window size.
#[derive(Clone)]
pub struct Hasher {
    table: [u32; 256],
    /// `rotl(T[i], window mod 32)`: the contribution of a byte leaving the window.
    removal: [u32; 256],
    window: usize,
}

impl Hasher {
    pub fn new(seed: u32, window: usize) -> Hasher {
        let table = table(seed);
        let removal = table.map(|v| v.rotate_left((window & 31) as u32));
        Hasher {
            table,
            removal,
            window,
        }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Hash of `data` taken as one window (normally `data.len() == window`).
    pub fn hash(&self, data: &[u8]) -> u32 {
        hash_with_table(&self.table, data)
    }

    /// Move the window one byte to the right.
    #[inline(always)]
    pub fn roll(&self, sum: u32, remove: u8, add: u8) -> u32 {
        // The two table terms do not depend on `sum`: keeping them together shortens the
        // dependency chain of the rolling loop to rotate + xor.
        sum.rotate_left(1) ^ (self.removal[remove as usize] ^ self.table[add as usize])
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Outcome of scanning cut candidates up to a limit.
enum Scan {
    /// A cut before the window starting here.
    Cut(usize),
    /// No candidate below the limit; the window now starts at `q` with hash `sum`
    /// (that candidate is not judged yet).
    Pending { q: usize, sum: u32 },
}

/// The boundary rule of §6.3 for one parameter set and seed.
#[derive(Debug, Clone)]
pub struct BuzhashCutter {
    hasher: Hasher,
    min: usize,
    max: usize,
    mask: u32,
}

impl BuzhashCutter {
    /// Parameters as in `buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW` (validated by
    /// [`super::ChunkerParams::parse`]: `window + 2^min + 1 <= 2^max`, `max_exp <= 23`).
    pub fn new(
        min_exp: u32,
        max_exp: u32,
        mask_bits: u32,
        window: u32,
        seed: u32,
    ) -> BuzhashCutter {
        BuzhashCutter {
            hasher: Hasher::new(seed, window as usize),
            min: 1usize << min_exp,
            max: 1usize << max_exp,
            mask: ((1u64 << mask_bits) - 1) as u32,
        }
    }

    pub fn min_size(&self) -> usize {
        self.min
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    fn window(&self) -> usize {
        self.hasher.window
    }

    /// Bytes needed after a chunk start before any cut is possible (less → the rest is one chunk).
    fn needed(&self) -> usize {
        self.min + self.window() + 1
    }

    /// Judge candidates `q, q+1, …` whose window `data[q..q+w]` ends strictly before `limit`.
    /// `sum` is the hash of the window at `q`. The hot loop of `create`.
    fn scan(&self, data: &[u8], q: usize, sum: u32, limit: usize) -> Scan {
        let w = self.window();
        let count = limit.saturating_sub(q + w);
        let leaving = &data[q..q + count];
        let entering = &data[q + w..q + w + count];
        let mask = self.mask;
        let mut sum = sum;
        for (i, (&out, &inp)) in leaving.iter().zip(entering).enumerate() {
            if sum & mask == 0 {
                return Scan::Cut(q + i);
            }
            sum = self.hasher.roll(sum, out, inp);
        }
        Scan::Pending { q: q + count, sum }
    }

    /// Length of the chunk at the start of `data`, when `data` is all the remaining input.
    pub fn cut_len(&self, data: &[u8]) -> usize {
        let len = data.len();
        if len < self.needed() {
            return len;
        }
        let limit = len.min(self.max);
        let q = self.min;
        let sum = self.hasher.hash(&data[q..q + self.window()]);
        match self.scan(data, q, sum, limit) {
            Scan::Cut(cut) => cut,
            Scan::Pending { .. } => limit,
        }
    }

    /// Chunk lengths of a whole in-memory input (empty input → no chunks).
    pub fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        let mut lengths = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let n = self.cut_len(&data[start..]);
            lengths.push(n);
            start += n;
        }
        lengths
    }
}

/// Content-defined chunker over any reader. Keeps one buffer of about 1.5 × the maximum chunk
/// size, reused for every input given to [`BuzhashChunker::chunkify`].
#[derive(Debug)]
pub struct BuzhashChunker {
    cutter: BuzhashCutter,
    buf: Vec<u8>,
    /// Where chunk copies come from (None: plain allocations).
    pool: Option<Arc<BufferPool>>,
}

/// Upper bound of one `read` call.
const MAX_READ: usize = 1 << 20;

impl BuzhashChunker {
    pub fn new(
        min_exp: u32,
        max_exp: u32,
        mask_bits: u32,
        window: u32,
        seed: u32,
    ) -> BuzhashChunker {
        BuzhashChunker::from_cutter(BuzhashCutter::new(
            min_exp, max_exp, mask_bits, window, seed,
        ))
    }

    pub fn from_cutter(cutter: BuzhashCutter) -> BuzhashChunker {
        BuzhashChunker {
            cutter,
            buf: Vec::new(),
            pool: None,
        }
    }

    /// Copy chunks into buffers from `pool`.
    pub fn use_pool(&mut self, pool: Arc<BufferPool>) {
        self.pool = Some(pool);
    }

    pub fn cutter(&self) -> &BuzhashCutter {
        &self.cutter
    }

    fn capacity(&self) -> usize {
        let max = self.cutter.max;
        max + (max / 2).clamp(64 << 10, MAX_READ)
    }

    /// Cut the stream read from `reader` into chunks.
    pub fn chunkify<R: Read>(&mut self, reader: R) -> BuzhashChunks<'_, R> {
        if self.buf.is_empty() {
            // zeroed allocation: pages are only touched when data is read into them
            self.buf = vec![0u8; self.capacity()];
        }
        BuzhashChunks {
            chunker: self,
            reader,
            start: 0,
            end: 0,
            eof: false,
            done: false,
        }
    }
}

/// The chunks of one input; see [`BuzhashChunker::chunkify`].
pub struct BuzhashChunks<'a, R> {
    chunker: &'a mut BuzhashChunker,
    reader: R,
    /// Start of the current chunk in the buffer.
    start: usize,
    /// End of the buffered data.
    end: usize,
    eof: bool,
    done: bool,
}

impl<R: Read> BuzhashChunks<'_, R> {
    /// The next chunk, `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        match self.cut_next() {
            Ok(Some(cut)) => {
                let data = &self.chunker.buf[self.start..cut];
                let chunk = if is_all_zero(data) {
                    Chunk::Zeros(data.len())
                } else {
                    Chunk::Data(match &self.chunker.pool {
                        Some(pool) => pool.copy_of(data),
                        None => data.to_vec(),
                    })
                };
                self.start = cut;
                Ok(Some(chunk))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// Find the end of the chunk starting at `self.start`, reading as needed.
    fn cut_next(&mut self) -> io::Result<Option<usize>> {
        let needed = self.chunker.cutter.needed();
        while self.end - self.start < needed && !self.eof {
            self.fill()?;
        }
        if self.end == self.start {
            return Ok(None);
        }
        if self.end - self.start < needed {
            return Ok(Some(self.end));
        }
        let cutter = &self.chunker.cutter;
        let (min, w) = (cutter.min, cutter.window());
        let mut q = self.start + min;
        let mut sum = cutter.hasher.hash(&self.chunker.buf[q..q + w]);
        loop {
            let hard_end = self.start + self.chunker.cutter.max;
            let limit = self.end.min(hard_end);
            match self.chunker.cutter.scan(&self.chunker.buf, q, sum, limit) {
                Scan::Cut(cut) => return Ok(Some(cut)),
                Scan::Pending {
                    q: next_q,
                    sum: next_sum,
                } => {
                    (q, sum) = (next_q, next_sum);
                    if limit == hard_end || self.eof {
                        // a window ending exactly at the end limit is not a candidate
                        return Ok(Some(limit));
                    }
                    q -= self.fill()?;
                }
            }
        }
    }

    /// Read more input after `self.end`; returns by how much the buffer contents moved left.
    fn fill(&mut self) -> io::Result<usize> {
        let cap = self.chunker.buf.len();
        let reserve = cap - self.chunker.cutter.max;
        let mut shift = 0;
        if cap - self.end < reserve / 2 && self.start > 0 {
            shift = self.start;
            self.chunker.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end -= shift;
        }
        let upto = cap.min(self.end + MAX_READ);
        loop {
            match self.reader.read(&mut self.chunker.buf[self.end..upto]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(shift)
    }
}

impl<R: Read> Iterator for BuzhashChunks<'_, R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}
