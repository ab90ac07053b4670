//! Ordered parallel fetching: objects are read, authenticated, decrypted and decompressed on
//! all cores while the consumer receives them in the original order, within a memory budget.
//!
//! Synchronisation is by mutex and condition variable only (no spinning): on a 2-core machine
//! spinning waiters would steal the cores the decryption needs.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

use crate::crypto::{DecryptJob, Key};
use crate::errors::{Error, Result};
use crate::repository::{ObjectId, Repository};

/// Bytes of plaintext that may be in flight (fetched but not yet consumed).
pub const DEFAULT_BUDGET: u64 = 48 * 1024 * 1024;

/// A decrypted object and the length of its stored (encrypted) form.
pub type Fetched = (Vec<u8>, usize);

/// Where a worker writes an object's plaintext itself, instead of handing it over: a file and
/// the offset of this chunk in it (known in advance from the chunk sizes in the item).
#[derive(Clone)]
pub struct WriteTarget {
    pub file: Arc<File>,
    pub offset: u64,
    /// The size the item's chunk list records; the plaintext must have exactly this size.
    pub expected_len: u64,
    /// All-zero chunks become holes (`extract --sparse`).
    pub sparse: bool,
}

/// What a job delivers to the consumer.
pub enum Delivery {
    /// The plaintext itself.
    Data(Vec<u8>),
    /// The plaintext went to its [`WriteTarget`]: its length, and the write error if any.
    Written {
        len: u64,
        error: Option<std::io::Error>,
    },
}

/// One object to fetch for a [`Prefetch`], with its place in that prefetch's order.
struct Job {
    shared: Arc<Shared>,
    seq: u64,
    id: ObjectId,
    target: Option<WriteTarget>,
}

/// Objects a worker takes at once (decrypted side by side: see [`Key::decrypt_many`]).
const BATCH: usize = 4;

/// Objects a worker takes at once from a repository that asks for larger batches
/// ([`Repository::preferred_batch`]: a remote one, whose `get_many` keeps them all in flight).
const MAX_BATCH: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// The process-wide workers that fetch and decrypt (one per core). Jobs never wait for other
/// jobs, so callers on any thread may block on their results.
struct WorkerPool {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

fn pool() -> &'static WorkerPool {
    static POOL: OnceLock<&'static WorkerPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static WorkerPool = Box::leak(Box::new(WorkerPool {
            jobs: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        let n = thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..n {
            thread::Builder::new()
                .name(format!("rborg-fetch-{i}"))
                .spawn(move || pool.work())
                .expect("cannot start a fetch worker thread");
        }
        pool
    })
}

impl WorkerPool {
    fn submit(&self, job: Job) {
        lock(&self.jobs).push_back(job);
        self.ready.notify_one();
    }

    fn work(&self) {
        loop {
            let batch = {
                let mut jobs = lock(&self.jobs);
                while jobs.is_empty() {
                    jobs = wait(&self.ready, jobs);
                }
                // Up to `batch_size` jobs of the same prefetch (same repository and key).
                let batch_size = jobs.front().map_or(BATCH, |j| j.shared.batch_size);
                let mut batch: Vec<Job> = Vec::with_capacity(batch_size);
                while batch.len() < batch_size {
                    match jobs.front() {
                        Some(j)
                            if batch
                                .first()
                                .is_none_or(|f| Arc::ptr_eq(&f.shared, &j.shared)) =>
                        {
                            batch.extend(jobs.pop_front());
                        }
                        _ => break,
                    }
                }
                batch
            };
            if let Some(first) = batch.first() {
                first.shared.clone().fetch(batch);
            }
        }
    }
}

/// Plaintext buffers handed back by consumers, reused for later objects: fresh multi-MiB
/// allocations cost page faults and zeroing on every chunk.
static SPARE_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Bytes of spare buffers kept for reuse.
const SPARE_LIMIT: usize = 16 << 20;

/// Give a consumed plaintext buffer back for reuse.
pub fn recycle(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > 16 << 20 {
        return;
    }
    buf.clear();
    let mut spare = lock(&SPARE_BUFFERS);
    let kept: usize = spare.iter().map(|b| b.capacity()).sum();
    if kept + buf.capacity() <= SPARE_LIMIT {
        spare.push(buf);
    }
}

fn spare_buffer() -> Vec<u8> {
    lock(&SPARE_BUFFERS).pop().unwrap_or_default()
}

/// State shared by a [`Prefetch`], its [`PrefetchFeeder`] and its jobs.
struct Shared {
    state: Mutex<State>,
    /// Signalled when the result at the head lands or input ends (the consumer waits on it).
    head_ready: Condvar,
    /// Signalled when budget frees up or the consumer leaves (the feeder waits on it).
    space: Condvar,
    budget: u64,
    /// Jobs a worker takes at once.
    batch_size: usize,
    repo: Arc<dyn Repository>,
    key: Arc<Key>,
}

#[derive(Default)]
struct State {
    /// Sequence number of `results[0]` (= results consumed so far).
    first_seq: u64,
    /// Outstanding results in order; None while being fetched.
    results: VecDeque<Option<Result<(Delivery, usize)>>>,
    costs: VecDeque<u64>,
    in_flight: u64,
    input_done: bool,
    closed: bool,
    /// The feeder is blocked on the budget.
    feeder_waiting: bool,
}

impl Shared {
    fn fits(&self, st: &State, cost: u64) -> bool {
        st.in_flight == 0 || st.in_flight + cost <= self.budget
    }

    /// Queue `id` for fetching (the caller checked the budget).
    fn schedule(
        self: &Arc<Self>,
        st: &mut State,
        id: ObjectId,
        cost: u64,
        target: Option<WriteTarget>,
    ) {
        let seq = st.first_seq + st.results.len() as u64;
        st.results.push_back(None);
        st.costs.push_back(cost);
        st.in_flight += cost;
        pool().submit(Job {
            shared: self.clone(),
            seq,
            id,
            target,
        });
    }

    /// The stored values of `ids`, one result each: one `get_many` (all in flight on a
    /// remote repository); if that fails for several, each object alone, so that every
    /// object gets its own outcome as with single `get`s.
    fn get_each(&self, ids: &[ObjectId]) -> Vec<Result<Vec<u8>>> {
        match self.repo.get_many(ids) {
            Ok(values) if values.len() == ids.len() => values.into_iter().map(Ok).collect(),
            Err(e) if ids.len() == 1 => vec![Err(e)],
            _ => ids.iter().map(|id| self.repo.get(id)).collect(),
        }
    }

    /// Fetch, authenticate and decrypt a batch of this prefetch's jobs, write those with a
    /// target, and store the results.
    fn fetch(&self, batch: Vec<Job>) {
        if lock(&self.state).closed {
            return;
        }
        let ids: Vec<ObjectId> = batch.iter().map(|j| j.id).collect();
        let stored = self.get_each(&ids);
        let mut decrypts: Vec<DecryptJob> = batch
            .iter()
            .zip(&stored)
            .filter_map(|(j, st)| st.as_ref().ok().map(|st| (j, st)))
            .map(|(j, st)| DecryptJob {
                id: Some(j.id),
                stored: st,
                out: spare_buffer(),
                result: Ok(()),
            })
            .collect();
        self.key.decrypt_many(&mut decrypts);
        let mut decrypted = decrypts.into_iter();
        let results: Vec<(u64, Result<(Delivery, usize)>)> = batch
            .into_iter()
            .zip(&stored)
            .map(|(job, st)| {
                let res = match st {
                    Err(e) => Err(e.clone()),
                    Ok(st) => {
                        let d = decrypted
                            .next()
                            .expect("one decrypt job per fetched object");
                        d.result.map(|()| (deliver(d.out, job.target), st.len()))
                    }
                };
                (job.seq, res)
            })
            .collect();
        let mut st = lock(&self.state);
        let mut head_done = false;
        for (seq, res) in results {
            // The consumer cannot pass an unfinished result, so seq >= first_seq.
            let index = (seq - st.first_seq) as usize;
            if let Some(slot) = st.results.get_mut(index) {
                *slot = Some(res);
                head_done |= index == 0;
            }
        }
        drop(st);
        // Only the head result can unblock the consumer: waking it for others costs a
        // context switch per object.
        if head_done {
            self.head_ready.notify_one();
        }
    }
}

/// Hand the plaintext over, or write it to its target first.
fn deliver(plain: Vec<u8>, target: Option<WriteTarget>) -> Delivery {
    match target {
        Some(t) if plain.len() as u64 == t.expected_len => {
            let len = plain.len() as u64;
            let error = if t.sparse && crate::fs::apply::is_all_zero(&plain) {
                None
            } else {
                t.file.write_all_at(&plain, t.offset).err()
            };
            recycle(plain);
            Delivery::Written { len, error }
        }
        // A chunk whose size differs from the item's record cannot go to a precomputed
        // offset: the consumer gets the data and handles it.
        _ => Delivery::Data(plain),
    }
}

/// Decrypted objects in request order. Dropping it stops the outstanding work.
pub struct Prefetch {
    shared: Arc<Shared>,
    /// Ids still to schedule, when they were all given up front.
    source: Option<Box<dyn Iterator<Item = (ObjectId, u64)> + Send>>,
    /// The next id of `source`, taken out but not yet within the budget.
    stashed: Option<(ObjectId, u64)>,
}

/// Adds ids to a [`Prefetch`] from another thread; dropping it ends the input.
pub struct PrefetchFeeder {
    shared: Arc<Shared>,
}

impl PrefetchFeeder {
    /// Queue an object (with its plaintext size as the budget cost). Blocks while the budget
    /// is used up; false when the consumer is gone.
    pub fn push(&self, id: ObjectId, size_hint: u64) -> bool {
        let cost = size_hint.max(1);
        let mut st = lock(&self.shared.state);
        while !st.closed && !self.shared.fits(&st, cost) {
            st.feeder_waiting = true;
            st = wait(&self.shared.space, st);
        }
        st.feeder_waiting = false;
        if st.closed {
            return false;
        }
        self.shared.schedule(&mut st, id, cost, None);
        true
    }

    /// Queue an object whose plaintext the worker writes to `target` itself (the consumer
    /// then receives [`Delivery::Written`]). Blocks like [`push`](Self::push).
    pub fn push_write(&self, id: ObjectId, target: WriteTarget) -> bool {
        let cost = target.expected_len.max(1);
        let mut st = lock(&self.shared.state);
        while !st.closed && !self.shared.fits(&st, cost) {
            st.feeder_waiting = true;
            st = wait(&self.shared.space, st);
        }
        st.feeder_waiting = false;
        if st.closed {
            return false;
        }
        self.shared.schedule(&mut st, id, cost, Some(target));
        true
    }
}

impl Drop for PrefetchFeeder {
    fn drop(&mut self) {
        lock(&self.shared.state).input_done = true;
        self.shared.head_ready.notify_all();
    }
}

impl Prefetch {
    fn shared(repo: Arc<dyn Repository>, key: Arc<Key>, budget: u64) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State::default()),
            head_ready: Condvar::new(),
            space: Condvar::new(),
            budget,
            batch_size: repo.preferred_batch().clamp(BATCH, MAX_BATCH),
            repo,
            key,
        })
    }

    /// A prefetch fed from another thread through the returned feeder.
    pub fn with_feeder(
        repo: Arc<dyn Repository>,
        key: Arc<Key>,
        budget: u64,
    ) -> (Prefetch, PrefetchFeeder) {
        let shared = Self::shared(repo, key, budget);
        (
            Prefetch {
                shared: shared.clone(),
                source: None,
                stashed: None,
            },
            PrefetchFeeder { shared },
        )
    }

    /// Schedule ids from the up-front list while the budget allows.
    fn fill(&mut self, st: &mut State) {
        let Some(source) = self.source.as_mut() else {
            return;
        };
        while st.results.len() < 1024 {
            let Some((id, hint)) = self.stashed.take().or_else(|| source.next()) else {
                st.input_done = true;
                self.source = None;
                return;
            };
            let cost = hint.max(1);
            if !self.shared.fits(st, cost) {
                self.stashed = Some((id, hint));
                return;
            }
            self.shared.schedule(st, id, cost, None);
        }
    }
}

impl Iterator for Prefetch {
    type Item = Result<Fetched>;

    fn next(&mut self) -> Option<Result<Fetched>> {
        Some(self.next_delivery()?.map(|(d, stored_len)| match d {
            Delivery::Data(plain) => (plain, stored_len),
            Delivery::Written { .. } => (Vec::new(), stored_len),
        }))
    }
}

impl Prefetch {
    /// The next result in order, as delivered (data, or written to its target).
    pub fn next_delivery(&mut self) -> Option<Result<(Delivery, usize)>> {
        let shared = self.shared.clone();
        let mut st = lock(&shared.state);
        loop {
            self.fill(&mut st);
            if matches!(st.results.front(), Some(Some(_))) {
                let res = st.results.pop_front().flatten();
                let cost = st.costs.pop_front().unwrap_or(0);
                st.first_seq += 1;
                st.in_flight -= cost;
                // Wake a blocked feeder only once half the budget is free (fewer switches).
                let wake = st.feeder_waiting && st.in_flight <= shared.budget / 2;
                drop(st);
                if wake {
                    shared.space.notify_one();
                }
                return res;
            }
            if st.results.is_empty() && st.input_done {
                return None;
            }
            st = wait(&shared.head_ready, st);
        }
    }
}

impl Drop for Prefetch {
    /// Unqueue this prefetch's jobs and wait (boundedly) for the ones being fetched: the
    /// repository they hold must be free when the caller goes on (`benchmark crud` runs
    /// commands one after the other in one process; the next one takes the lock).
    fn drop(&mut self) {
        let feeder_alive = {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            !st.input_done
        };
        self.shared.space.notify_all();
        lock(&pool().jobs).retain(|j| !Arc::ptr_eq(&j.shared, &self.shared));
        let others = 1 + usize::from(feeder_alive);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&self.shared) > others && std::time::Instant::now() < deadline {
            thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Fetch and decrypt `ids` (with a plaintext size hint each) in parallel, yielding them in order.
/// Each object's id is verified against its plaintext.
pub fn prefetch<I>(repo: Arc<dyn Repository>, key: Arc<Key>, ids: I, budget: u64) -> Prefetch
where
    I: IntoIterator<Item = (ObjectId, u64)>,
    I::IntoIter: Send + 'static,
{
    let shared = Prefetch::shared(repo, key, budget);
    Prefetch {
        shared,
        source: Some(Box::new(ids.into_iter())),
        stashed: None,
    }
}

/// An error for a result that can never arrive.
pub fn fetch_stopped() -> Error {
    Error::exception("chunk fetcher stopped early")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::compress::CompressionSpec;

    /// An in-memory repository of plaintext-mode objects.
    struct MemRepo(HashMap<ObjectId, Vec<u8>>);

    impl Repository for MemRepo {
        fn id(&self) -> ObjectId {
            [0; 32]
        }
        fn location(&self) -> String {
            "mem".into()
        }
        fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
            self.0
                .get(id)
                .cloned()
                .ok_or_else(|| Error::exception("missing"))
        }
        fn contains(&self, id: &ObjectId) -> Result<bool> {
            Ok(self.0.contains_key(id))
        }
        fn len(&self) -> Result<usize> {
            Ok(self.0.len())
        }
        fn list(&self, _: usize, _: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
            Ok(self.0.keys().copied().collect())
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn append_only(&self) -> bool {
            false
        }
    }

    /// A repository, its key, and the objects' ids and plaintexts in order.
    type Fixture = (Arc<dyn Repository>, Arc<Key>, Vec<(ObjectId, Vec<u8>)>);

    fn repo_with(n: usize) -> Fixture {
        let key = Key::plaintext([0; 32]);
        let mut objects = HashMap::new();
        let mut order = Vec::new();
        for i in 0..n {
            let data = format!("object {i} ").repeat(i % 50 + 1).into_bytes();
            let id = key.id_hash(&data);
            let stored = key
                .compress_and_encrypt(&CompressionSpec::Lz4, &data, None)
                .unwrap();
            objects.insert(id, stored);
            order.push((id, data));
        }
        (Arc::new(MemRepo(objects)), Arc::new(key), order)
    }

    #[test]
    fn results_arrive_in_order_within_a_tiny_budget() {
        let (repo, key, order) = repo_with(300);
        let ids: Vec<(ObjectId, u64)> = order.iter().map(|(id, d)| (*id, d.len() as u64)).collect();
        let got: Vec<Vec<u8>> = prefetch(repo, key, ids, 100)
            .map(|r| r.unwrap().0)
            .collect();
        let want: Vec<Vec<u8>> = order.into_iter().map(|(_, d)| d).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn feeder_mode_orders_and_ends() {
        let (repo, key, order) = repo_with(200);
        let (fetch, feeder) = Prefetch::with_feeder(repo, key, 1000);
        let ids: Vec<ObjectId> = order.iter().map(|(id, _)| *id).collect();
        let t = std::thread::spawn(move || {
            for id in ids {
                assert!(feeder.push(id, 500));
            }
        });
        let got: Vec<Vec<u8>> = fetch.map(|r| r.unwrap().0).collect();
        t.join().unwrap();
        assert_eq!(got, order.into_iter().map(|(_, d)| d).collect::<Vec<_>>());
    }

    /// A repository that wants batches (like a remote one) and counts its calls.
    struct BatchingRepo {
        inner: Arc<dyn Repository>,
        get_many_calls: std::sync::atomic::AtomicUsize,
        ids_in_get_many: std::sync::atomic::AtomicUsize,
    }

    impl Repository for BatchingRepo {
        fn id(&self) -> ObjectId {
            self.inner.id()
        }
        fn location(&self) -> String {
            "ssh://batching".into()
        }
        fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
            self.inner.get(id)
        }
        fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
            use std::sync::atomic::Ordering::Relaxed;
            self.get_many_calls.fetch_add(1, Relaxed);
            self.ids_in_get_many.fetch_add(ids.len(), Relaxed);
            self.inner.get_many(ids)
        }
        fn preferred_batch(&self) -> usize {
            16
        }
        fn contains(&self, id: &ObjectId) -> Result<bool> {
            self.inner.contains(id)
        }
        fn len(&self) -> Result<usize> {
            self.inner.len()
        }
        fn list(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
            self.inner.list(limit, marker)
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            self.inner.load_key()
        }
        fn append_only(&self) -> bool {
            false
        }
    }

    fn batching(inner: Arc<dyn Repository>) -> Arc<BatchingRepo> {
        Arc::new(BatchingRepo {
            inner,
            get_many_calls: Default::default(),
            ids_in_get_many: Default::default(),
        })
    }

    #[test]
    fn batching_repositories_are_read_with_get_many() {
        use std::sync::atomic::Ordering::Relaxed;
        let (repo, key, order) = repo_with(200);
        let repo = batching(repo);
        let ids: Vec<(ObjectId, u64)> = order.iter().map(|(id, d)| (*id, d.len() as u64)).collect();
        let got: Vec<Vec<u8>> = prefetch(repo.clone(), key, ids, u64::MAX)
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(got, order.into_iter().map(|(_, d)| d).collect::<Vec<_>>());
        // every object went through get_many (how many per call depends on the timing)
        assert!(repo.get_many_calls.load(Relaxed) <= 200);
        assert_eq!(repo.ids_in_get_many.load(Relaxed), 200);
    }

    #[test]
    fn a_failed_get_many_still_gives_each_object_its_own_result() {
        let (repo, key, order) = repo_with(40);
        let repo = batching(repo);
        let mut ids: Vec<(ObjectId, u64)> = order.iter().map(|(id, _)| (*id, 1)).collect();
        ids[17] = ([9; 32], 1);
        let got: Vec<bool> = prefetch(repo, key, ids, u64::MAX)
            .map(|r| r.is_ok())
            .collect();
        let want: Vec<bool> = (0..40).map(|i| i != 17).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn errors_are_delivered_in_place() {
        let (repo, key, order) = repo_with(3);
        let ids = vec![(order[0].0, 1), ([9; 32], 1), (order[2].0, 1)];
        let got: Vec<bool> = prefetch(repo, key, ids, 10).map(|r| r.is_ok()).collect();
        assert_eq!(got, vec![true, false, true]);
    }
}
