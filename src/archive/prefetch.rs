//! Ordered parallel fetching: objects are read, authenticated, decrypted and decompressed on
//! all cores while the consumer receives them in the original order, within a memory budget.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;

use crossbeam_channel::{bounded, Receiver};

use crate::crypto::Key;
use crate::errors::{Error, Result};
use crate::repository::{ObjectId, Repository};

/// The workers that fetch and decrypt. A pool of its own: callers often run on rayon's global
/// pool themselves and block on these results, which would deadlock a shared pool.
fn fetch_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("rborg-fetch-{i}"))
            .build()
            .expect("cannot start the fetch thread pool")
    })
}

/// Bytes of plaintext that may be in flight (fetched but not yet consumed).
pub const DEFAULT_BUDGET: u64 = 256 * 1024 * 1024;

/// A counting semaphore over bytes that can be closed (so a blocked producer stops).
struct Budget {
    state: Mutex<(u64, bool)>,
    cond: Condvar,
    limit: u64,
}

impl Budget {
    fn new(limit: u64) -> Budget {
        Budget {
            state: Mutex::new((0, false)),
            cond: Condvar::new(),
            limit,
        }
    }

    /// Wait until `n` bytes fit; false when closed. A single request above the limit is
    /// admitted alone so huge objects cannot deadlock.
    fn acquire(&self, n: u64) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.1 && st.0 > 0 && st.0 + n > self.limit {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.1 {
            return false;
        }
        st.0 += n;
        true
    }

    fn release(&self, n: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = st.0.saturating_sub(n);
        self.cond.notify_all();
    }

    fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 = true;
        self.cond.notify_all();
    }
}

/// A decrypted object and the length of its stored (encrypted) form.
pub type Fetched = (Vec<u8>, usize);

type Pending = (u64, Receiver<Result<Fetched>>);

/// Decrypted objects in request order. Dropping it stops the background work.
pub struct Prefetch {
    order: Receiver<Pending>,
    budget: Arc<Budget>,
}

impl Iterator for Prefetch {
    type Item = Result<Fetched>;

    fn next(&mut self) -> Option<Result<Fetched>> {
        let (cost, rx) = self.order.recv().ok()?;
        let res = rx
            .recv()
            .unwrap_or_else(|_| Err(Error::exception("fetch worker vanished")));
        self.budget.release(cost);
        Some(res)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.budget.close();
    }
}

/// Fetch and decrypt `ids` (with a plaintext size hint each) in parallel, yielding them in order.
/// Each object's id is verified against its plaintext.
pub fn prefetch<I>(repo: Arc<dyn Repository>, key: Arc<Key>, ids: I, budget: u64) -> Prefetch
where
    I: IntoIterator<Item = (ObjectId, u64)>,
    I::IntoIter: Send + 'static,
{
    let budget = Arc::new(Budget::new(budget));
    let (order_tx, order_rx) = bounded::<Pending>(1024);
    let producer_budget = budget.clone();
    let ids = ids.into_iter();
    thread::spawn(move || {
        for (id, size_hint) in ids {
            let cost = size_hint.max(1);
            if !producer_budget.acquire(cost) {
                break;
            }
            let (tx, rx) = bounded(1);
            let (repo, key) = (repo.clone(), key.clone());
            fetch_pool().spawn(move || {
                let res = repo.get(&id).and_then(|stored| {
                    key.decrypt(Some(&id), &stored)
                        .map(|plain| (plain, stored.len()))
                });
                let _ = tx.send(res);
            });
            if order_tx.send((cost, rx)).is_err() {
                break;
            }
        }
    });
    Prefetch {
        order: order_rx,
        budget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_admits_oversized_request_alone() {
        let b = Budget::new(10);
        assert!(b.acquire(50));
        b.release(50);
        assert!(b.acquire(6));
        b.close();
        assert!(!b.acquire(6));
    }
}
