//! An ordered parallel executor: jobs are submitted in order from one thread, run on worker
//! threads, and their results are taken in submission order by another thread, with a budget
//! bounding what is in flight (`create`'s chunk processing). Mutex and condition variables
//! only — no spinning, which would steal the cores the work needs.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

type Job<'a, R> = Box<dyn FnOnce() -> R + Send + 'a>;

struct State<'a, R> {
    /// Jobs not started yet, with their sequence numbers.
    queue: VecDeque<(u64, Job<'a, R>)>,
    /// Sequence number of `results[0]`.
    first_seq: u64,
    /// Results in order from `first_seq`; None while running or queued.
    results: VecDeque<Option<R>>,
    costs: VecDeque<u64>,
    in_flight: u64,
    input_done: bool,
    closed: bool,
}

/// Shared between the submitting thread, the workers ([`Ordered::work`]) and the consumer.
pub struct Ordered<'a, R> {
    state: Mutex<State<'a, R>>,
    /// Workers wait here for jobs.
    jobs_ready: Condvar,
    /// The consumer waits here for the head result.
    head_ready: Condvar,
    /// The submitter waits here for budget.
    space: Condvar,
    budget: u64,
    /// The cost of a finished job's result (what it still holds until consumed); without
    /// it a job costs what it was submitted with until consumed.
    weigh: Option<fn(&R) -> u64>,
}

impl<'a, R: Send> Ordered<'a, R> {
    /// `budget`: total cost of submitted but not yet consumed jobs (a single job above it is
    /// admitted alone).
    pub fn new(budget: u64) -> Ordered<'a, R> {
        Ordered {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                first_seq: 0,
                results: VecDeque::new(),
                costs: VecDeque::new(),
                in_flight: 0,
                input_done: false,
                closed: false,
            }),
            jobs_ready: Condvar::new(),
            head_ready: Condvar::new(),
            space: Condvar::new(),
            budget,
            weigh: None,
        }
    }

    /// Like [`Ordered::new`], but a finished job costs what `weigh` says of its result from
    /// then on (its input is gone): the budget then bounds inputs and outputs together.
    pub fn with_weigher(budget: u64, weigh: fn(&R) -> u64) -> Ordered<'a, R> {
        Ordered {
            weigh: Some(weigh),
            ..Ordered::new(budget)
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<'a, R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'g>(cv: &Condvar, g: MutexGuard<'g, State<'a, R>>) -> MutexGuard<'g, State<'a, R>> {
        cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a job; blocks while the budget is used up. False once the consumer closed.
    pub fn submit(&self, cost: u64, job: impl FnOnce() -> R + Send + 'a) -> bool {
        let mut st = self.lock();
        while !st.closed && st.in_flight > 0 && st.in_flight + cost > self.budget {
            st = Self::wait(&self.space, st);
        }
        if st.closed {
            return false;
        }
        let seq = st.first_seq + st.results.len() as u64;
        st.results.push_back(None);
        st.costs.push_back(cost);
        st.in_flight += cost;
        st.queue.push_back((seq, Box::new(job)));
        drop(st);
        self.jobs_ready.notify_one();
        true
    }

    /// Queue an already computed result (kept in order with the jobs around it).
    pub fn submit_ready(&self, result: R) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        let head = st.results.is_empty();
        st.results.push_back(Some(result));
        st.costs.push_back(0);
        drop(st);
        if head {
            self.head_ready.notify_one();
        }
        true
    }

    /// No more jobs will come (the consumer's `next` returns None after the last result).
    pub fn finish_input(&self) {
        self.lock().input_done = true;
        self.head_ready.notify_all();
        self.jobs_ready.notify_all();
    }

    /// The consumer is gone: pending jobs are dropped, the submitter and workers stop.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        drop(st);
        self.space.notify_all();
        self.jobs_ready.notify_all();
    }

    /// Run jobs until input is finished and the queue is empty (or the executor closed).
    /// Call from each worker thread.
    pub fn work(&self) {
        loop {
            let (seq, job) = {
                let mut st = self.lock();
                loop {
                    if st.closed {
                        return;
                    }
                    if let Some(j) = st.queue.pop_front() {
                        break j;
                    }
                    if st.input_done {
                        return;
                    }
                    st = Self::wait(&self.jobs_ready, st);
                }
            };
            let result = job();
            let weight = self.weigh.map(|w| w(&result));
            let mut st = self.lock();
            let index = (seq - st.first_seq) as usize;
            let mut freed = false;
            if let Some(slot) = st.results.get_mut(index) {
                *slot = Some(result);
                if let Some(weight) = weight {
                    let before = std::mem::replace(&mut st.costs[index], weight);
                    st.in_flight = st.in_flight - before + weight;
                    freed = weight < before && st.in_flight <= self.budget / 2;
                }
            }
            drop(st);
            if index == 0 {
                self.head_ready.notify_one();
            }
            if freed {
                self.space.notify_one();
            }
        }
    }

    /// The next result in submission order; None when input is finished and all were taken.
    pub fn next(&self) -> Option<R> {
        let mut st = self.lock();
        loop {
            if matches!(st.results.front(), Some(Some(_))) {
                let result = st.results.pop_front().flatten();
                let cost = st.costs.pop_front().unwrap_or(0);
                st.first_seq += 1;
                st.in_flight -= cost;
                let wake = st.in_flight <= self.budget / 2;
                drop(st);
                if wake && cost > 0 {
                    self.space.notify_one();
                }
                return result;
            }
            if st.results.is_empty() && st.input_done {
                return None;
            }
            st = Self::wait(&self.head_ready, st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn results_in_order_with_ready_ones_between() {
        let ex: Arc<Ordered<'static, u64>> = Arc::new(Ordered::new(10));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let ex = ex.clone();
                std::thread::spawn(move || ex.work())
            })
            .collect();
        let producer = {
            let ex = ex.clone();
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    if i % 7 == 0 {
                        assert!(ex.submit_ready(i));
                    } else {
                        assert!(ex.submit(3, move || {
                            std::thread::sleep(std::time::Duration::from_micros((i * 13) % 50));
                            i
                        }));
                    }
                }
                ex.finish_input();
            })
        };
        let got: Vec<u64> = std::iter::from_fn(|| ex.next()).collect();
        producer.join().unwrap();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn close_stops_a_blocked_submitter() {
        let ex: Arc<Ordered<'static, u64>> = Arc::new(Ordered::new(1));
        assert!(ex.submit(1, || 1));
        let t = {
            let ex = ex.clone();
            std::thread::spawn(move || ex.submit(1, || 2))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        ex.close();
        assert!(!t.join().unwrap());
    }

    #[test]
    fn finished_jobs_cost_what_their_results_weigh() {
        // Each job costs the whole budget but its result weighs nothing: the second job is
        // admitted once the first ran, before anything is consumed.
        let ex: Arc<Ordered<'static, u64>> = Arc::new(Ordered::with_weigher(10, |_| 0));
        let worker = {
            let ex = ex.clone();
            std::thread::spawn(move || ex.work())
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let producer = {
            let ex = ex.clone();
            std::thread::spawn(move || {
                assert!(ex.submit(10, || 1));
                assert!(ex.submit(10, || 2));
                ex.finish_input();
                tx.send(()).unwrap();
            })
        };
        let admitted = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert!(
            admitted.is_ok(),
            "the second job waited for the first to be consumed"
        );
        producer.join().unwrap();
        assert_eq!(ex.next(), Some(1));
        assert_eq!(ex.next(), Some(2));
        assert_eq!(ex.next(), None);
        worker.join().unwrap();
    }
}
