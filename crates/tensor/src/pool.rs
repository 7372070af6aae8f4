//! A persistent thread pool for the forward pass.
//!
//! A decode step runs a few hundred small parallel regions (one per matrix
//! product), so starting work must cost microseconds, not the tens of
//! microseconds of waking sleeping threads through the OS each time. Workers
//! therefore spin briefly on an atomic generation counter after each job,
//! then yield, then sleep on a condition variable. Spinning is bounded so
//! that a pool sharing its cores with another busy process slows down in
//! proportion instead of fighting it for the CPU.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker polls for new work before it goes to sleep.
const SPIN_FOR: Duration = Duration::from_micros(200);
/// Polls between looks at the clock while spinning.
const SPINS_PER_CHECK: u32 = 64;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped by the caller to publish a job; workers run each generation once.
    generation: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// The current job, valid while `pending > 0` for the current generation.
    job: UnsafeCell<Option<*const Job>>,
    shutdown: AtomicBool,
    panicked: AtomicBool,
    sleepers: Mutex<usize>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread that owns the pool, while no
// worker reads it (all workers have finished the previous generation), and
// read by workers only between the publishing of a generation and their
// decrement of `pending`, during which the caller waits and keeps the job
// alive.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A fixed set of worker threads plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

impl ThreadPool {
    /// A pool that runs jobs on `n_threads` threads: the caller and
    /// `n_threads - 1` workers. Zero is taken as one.
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
        });
        let workers = (1..n_threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("lucid-worker-{index}"))
                    .spawn(move || worker(&shared, index))
                    .unwrap_or_else(|e| panic!("cannot start a worker thread: {e}"))
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            n_threads,
        }
    }

    /// The number of threads a job runs on, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `job(i)` once for every thread index `i` in `0..n_threads()`,
    /// concurrently, and returns when all have finished. The caller runs
    /// index 0. A job must not call `run` on the same pool.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 {
            job(0);
            return;
        }
        let shared = &*self.shared;
        // SAFETY: all workers finished the previous generation before the
        // last `run` returned, so nobody reads `job` now. The lifetime is
        // erased; `run` does not return before every worker is done with it.
        unsafe {
            let ptr: *const Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(job);
            *shared.job.get() = Some(ptr);
        }
        shared.pending.store(self.n_threads - 1, Ordering::Release);
        shared.generation.fetch_add(1, Ordering::AcqRel);
        {
            let sleepers = lock(&shared.sleepers);
            if *sleepers > 0 {
                shared.wake.notify_all();
            }
        }
        let own = catch_unwind(AssertUnwindSafe(|| job(0)));
        wait_until(|| shared.pending.load(Ordering::Acquire) == 0);
        // SAFETY: every worker is done with the job.
        unsafe { *shared.job.get() = None };
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::AcqRel) {
            panic!("a worker thread panicked while running a job");
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _sleepers = lock(&self.shared.sleepers);
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spins, then yields, until `done()` holds.
fn wait_until(done: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        for _ in 0..SPINS_PER_CHECK {
            if done() {
                return;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > SPIN_FOR {
            break;
        }
    }
    while !done() {
        std::thread::yield_now();
    }
}

fn worker(shared: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        // Wait for a new generation: spin, then sleep.
        let start = Instant::now();
        let mut current = shared.generation.load(Ordering::Acquire);
        'wait: while current == seen {
            for _ in 0..SPINS_PER_CHECK {
                std::hint::spin_loop();
                current = shared.generation.load(Ordering::Acquire);
                if current != seen {
                    break 'wait;
                }
            }
            if start.elapsed() > SPIN_FOR {
                let mut sleepers = lock(&shared.sleepers);
                *sleepers += 1;
                loop {
                    current = shared.generation.load(Ordering::Acquire);
                    if current != seen {
                        break;
                    }
                    sleepers = shared
                        .wake
                        .wait(sleepers)
                        .unwrap_or_else(|p| p.into_inner());
                }
                *sleepers -= 1;
            }
        }
        seen = current;
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: the job was published before the generation bump we saw
        // (release/acquire) and stays alive until we decrement `pending`.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            // SAFETY: see above.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        shared.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A raw pointer that jobs may share to write disjoint parts of one buffer.
#[derive(Clone, Copy, Debug)]
pub struct SharedMut<T>(*mut T);

// SAFETY: users promise that threads write disjoint elements.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub fn new(slice: &mut [T]) -> SharedMut<T> {
        SharedMut(slice.as_mut_ptr())
    }

    /// # Safety
    /// `start..start + len` must lie inside the slice this was made from, and
    /// no other thread may access those elements while the result lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_once_per_job() {
        for n in 1..=4 {
            let pool = ThreadPool::new(n);
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(&|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn jobs_see_borrowed_data_and_sleeping_workers_wake() {
        let pool = ThreadPool::new(3);
        let mut out = vec![0usize; 3];
        for round in 0..5 {
            // Let the workers fall asleep between some jobs.
            if round % 2 == 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let ptr = SharedMut::new(&mut out);
            pool.run(&|i| unsafe { ptr.slice(i, 1)[0] = i * 10 + round });
            assert_eq!(out, vec![round, 10 + round, 20 + round]);
        }
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(&|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
