//! Recycled byte buffers for the backup pipeline. Chunk data and stored envelopes are
//! megabytes each and pass between threads; allocating them afresh every time leaves the
//! allocator's per-thread arenas fragmented (resident memory far above what is live) or, with
//! fresh mappings, pays a page fault per 4 KiB. Buffers that go round the pool avoid both.

use std::sync::Mutex;

/// Capacities are rounded up to this, so a buffer fits many later requests.
const GRANULE: usize = 256 << 10;

/// Smaller buffers come from the allocator's arenas, which recycle them well.
const MIN_POOLED: usize = 128 << 10;

#[derive(Debug)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    /// Total capacity the idle buffers may hold.
    max_idle: usize,
}

impl BufferPool {
    pub fn new(max_idle: usize) -> BufferPool {
        BufferPool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An empty buffer with room for at least `len` bytes: the smallest idle one that fits,
    /// else the largest idle one grown (growing keeps the pages it has), else a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len < MIN_POOLED {
            return Vec::with_capacity(len);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let fitting = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let largest = || {
            idle.iter()
                .enumerate()
                .max_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
        };
        let Some(i) = fitting.or_else(largest) else {
            drop(idle);
            return Vec::with_capacity(rounded(len));
        };
        let mut buf = idle.swap_remove(i);
        drop(idle);
        if buf.capacity() < len {
            buf.reserve_exact(rounded(len));
        }
        buf
    }

    /// A copy of `data` in a pooled buffer.
    pub fn copy_of(&self, data: &[u8]) -> Vec<u8> {
        let mut buf = self.take(data.len());
        buf.extend_from_slice(data);
        buf
    }

    /// Return a buffer for reuse; the smallest idle buffers are freed while the pool holds
    /// more than its limit (large ones fit more requests).
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < MIN_POOLED {
            return;
        }
        buf.clear();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(buf);
        let mut held: usize = idle.iter().map(Vec::capacity).sum();
        while held > self.max_idle {
            let smallest = idle
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
                .expect("the pool holds at least one buffer here");
            held -= idle.swap_remove(smallest).capacity();
        }
    }
}

/// glibc raises its mmap threshold to the largest block freed (up to 32 MiB), after which
/// multi-megabyte buffers live in per-thread arenas that fragment and stay resident. A fixed
/// threshold keeps large blocks in their own mappings, returned to the system when freed;
/// the pool spares the hot path the cost of new mappings.
pub fn fix_allocator_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning (it takes the allocator's own lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// `len` rounded up to the pool's granule.
fn rounded(len: usize) -> usize {
    len.div_ceil(GRANULE).max(1) * GRANULE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_smallest_fit_first() {
        let pool = BufferPool::new(8 << 20);
        let big = pool.take(3 << 20);
        let small = pool.take(200 << 10);
        assert!(big.capacity() >= 3 << 20 && small.capacity() >= 100);
        let (big_ptr, small_ptr) = (big.as_ptr(), small.as_ptr());
        pool.give(big);
        pool.give(small);
        let again = pool.take(150 << 10);
        assert_eq!(again.as_ptr(), small_ptr);
        assert!(again.is_empty());
        let big_again = pool.take(2 << 20);
        assert_eq!(big_again.as_ptr(), big_ptr);
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_limit() {
        let pool = BufferPool::new(1 << 20);
        pool.give(Vec::with_capacity(512 << 10));
        pool.give(Vec::with_capacity(768 << 10));
        let idle = pool.idle.lock().unwrap();
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].capacity(), 768 << 10);
    }

    #[test]
    fn without_a_fitting_buffer_the_largest_grows() {
        let pool = BufferPool::new(8 << 20);
        pool.give(Vec::with_capacity(128 << 10));
        pool.give(Vec::with_capacity(512 << 10));
        let grown = pool.take(1 << 20);
        assert!(grown.capacity() >= 1 << 20);
        let idle = pool.idle.lock().unwrap();
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].capacity(), 128 << 10);
    }

    #[test]
    fn copies_hold_the_data() {
        let pool = BufferPool::new(1 << 20);
        assert_eq!(pool.copy_of(b"abc"), b"abc");
    }
}
