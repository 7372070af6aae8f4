//! A persistent thread pool for the forward pass.
//!
//! A decode step runs a few hundred small parallel regions (one per matrix
//! product), so starting work must cost microseconds, not the tens of
//! microseconds of waking sleeping threads through the OS each time. Workers
//! therefore spin briefly on an atomic generation counter after each job,
//! then sleep on a condition variable. Spinning is bounded so that a pool
//! sharing its cores with another busy process slows down in proportion
//! instead of fighting it for the CPU.
//!
//! A job is shared work, not one task per thread: every participant claims
//! pieces of it until none are left (see [`ThreadPool::run`]). The caller
//! never waits for a worker that has not started on the job yet, so a worker
//! that the OS has descheduled costs the job its help, not a time slice.
//!
//! A worker descheduled while it holds a piece does cost a time slice: the
//! caller cannot finish the job without that piece. On a machine whose
//! other processes keep the cores busy this can happen on many jobs, and
//! the caller alone may then be faster than caller and workers together.
//! `Sharing` watches for it: while the caller spends a good part of its
//! time waiting for stalled workers, the pool tries running jobs on the
//! caller alone for a while and keeps whichever way is faster per job. On
//! an idle machine nobody stalls and nothing changes.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Set in `Shared::state` when the current job takes no more workers.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// How long an idle worker polls for new work before it goes to sleep.
const SPIN_FOR: Duration = Duration::from_micros(200);
/// Polls between looks at the clock while spinning.
const SPINS_PER_CHECK: u32 = 64;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped by the caller to publish a job; workers run each generation once.
    generation: AtomicUsize,
    /// Workers inside the current job, plus [`CLOSED`] once the caller has
    /// finished its part and admits nobody new.
    state: AtomicUsize,
    /// The current job, valid while `pending > 0` for the current generation.
    job: UnsafeCell<Option<*const Job>>,
    /// The generation the current job is published under, written with the
    /// job before it opens: a worker that enters a job learns which one it
    /// is from here, not from the generation it saw before entering (the
    /// job opens before its generation is bumped, so a worker that saw the
    /// previous one can enter it, and must not enter it again).
    job_generation: AtomicUsize,
    shutdown: AtomicBool,
    panicked: AtomicBool,
    sleepers: Mutex<usize>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread that owns the pool while the
// previous job is closed and no worker is inside it, and read by a worker
// only after it entered the current job (incremented `state` while it was
// not closed) and before it leaves, during which the caller waits and keeps
// the job alive.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A fixed set of worker threads plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    sharing: Mutex<Sharing>,
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
            state: AtomicUsize::new(CLOSED),
            job: UnsafeCell::new(None),
            job_generation: AtomicUsize::new(0),
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
            sharing: Mutex::new(Sharing::default()),
        }
    }

    /// The number of threads a job runs on, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `job` on the caller (with index 0) and on every worker (with its
    /// own index in `1..n_threads()`) that joins before the caller's call
    /// returns; returns when all participants have. A job must therefore be
    /// shared work that participants claim piece by piece (an atomic
    /// counter), complete even if the caller alone runs it. Indices are
    /// unique among participants, so they can select per-thread scratch. A
    /// job must not call `run` on the same pool.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 {
            job(0);
            return;
        }
        let start = Instant::now();
        if lock(&self.sharing).solo() {
            job(0);
            lock(&self.sharing).record(start.elapsed(), Duration::ZERO);
            return;
        }
        let shared = &*self.shared;
        // SAFETY: the previous job is closed and nobody is inside it, so no
        // worker reads `job` now. The lifetime is erased; `run` does not
        // return before every worker that entered the job has left it.
        unsafe {
            let ptr: *const Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(job);
            *shared.job.get() = Some(ptr);
        }
        // Only the owner bumps the generation: this job's is the next one.
        let generation = shared.generation.load(Ordering::Relaxed).wrapping_add(1);
        shared.job_generation.store(generation, Ordering::Relaxed);
        shared.state.store(0, Ordering::Release);
        shared.generation.fetch_add(1, Ordering::AcqRel);
        {
            let sleepers = lock(&shared.sleepers);
            if *sleepers > 0 {
                shared.wake.notify_all();
            }
        }
        let own = catch_unwind(AssertUnwindSafe(|| job(0)));
        let own_end = Instant::now();
        // Admit nobody new, then wait for those inside to finish.
        shared.state.fetch_or(CLOSED, Ordering::AcqRel);
        wait_until(|| shared.state.load(Ordering::Acquire) == CLOSED);
        let end = Instant::now();
        lock(&self.sharing).record(end - start, end - own_end);
        // SAFETY: every worker that entered has left.
        unsafe { *shared.job.get() = None };
        let worker_panicked = shared.panicked.swap(false, Ordering::AcqRel);
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if worker_panicked {
            panic!("a worker thread panicked while running a job");
        }
    }
}

/// Whether jobs run on every thread or on the caller alone, chosen epoch by
/// epoch from how the last ones went.
///
/// Jobs run shared ([`Mode::Shared`]) unless, over an epoch of
/// [`EPOCH_JOBS`] jobs, the caller spent more than [`STALLED_SHARE`] of the
/// time waiting for workers to finish their pieces after its own were done
/// (a worker descheduled mid-piece). Then the next epoch runs on the caller
/// alone as a trial; if its jobs took less time each than the recent shared
/// epochs' (by [`SOLO_MARGIN`]), jobs stay on the caller alone for
/// [`SOLO_EPOCHS`] epochs before sharing is measured again, else sharing
/// resumes and no trial is made for [`SOLO_EPOCHS`] epochs, twice as many
/// after each failed trial in a row (up to [`MAX_HOLD`]).
#[derive(Debug, Default)]
struct Sharing {
    mode: Mode,
    /// Jobs, wall time and time spent waiting for stalled workers in the
    /// current epoch.
    jobs: u32,
    wall: Duration,
    stalled: Duration,
    /// Wall time per job of the recent shared epochs (each epoch's
    /// average with the one before).
    shared_per_job: Option<Duration>,
    /// Epochs to go in the current mode before it is reconsidered.
    hold: u32,
    /// Epochs without a trial after the next failed one: doubled by each
    /// failure, so that an idle machine's rare stalls cost ever fewer
    /// trials.
    fail_hold: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Shared,
    /// A trial epoch on the caller alone.
    Trial,
    /// On the caller alone, having been faster in a trial.
    Solo,
}

/// Jobs per epoch: enough to span several tokens' worth of a decode step's
/// jobs, so that epochs hold the same mix of large and small ones.
const EPOCH_JOBS: u32 = 1024;
/// The share of an epoch's time spent waiting for stalled workers above
/// which running alone is tried.
const STALLED_SHARE: f64 = 0.3;
/// How much faster per job running alone must be to be kept.
const SOLO_MARGIN: f64 = 0.95;
/// Epochs a decision holds.
const SOLO_EPOCHS: u32 = 8;
/// The most epochs without a trial after trials that failed in a row.
const MAX_HOLD: u32 = 64;

impl Sharing {
    fn solo(&self) -> bool {
        self.mode != Mode::Shared
    }

    /// Records a job that took `wall`, of which the caller spent `stalled`
    /// waiting for workers after its own part.
    fn record(&mut self, wall: Duration, stalled: Duration) {
        self.jobs += 1;
        self.wall += wall;
        self.stalled += stalled;
        if self.jobs < EPOCH_JOBS {
            return;
        }
        let per_job = self.wall / self.jobs;
        let stalled_share = self.stalled.as_secs_f64() / self.wall.as_secs_f64().max(1e-9);
        self.mode = match self.mode {
            Mode::Shared => {
                // Epochs differ by a fifth on a busy machine: compare with
                // the recent ones, not the last alone.
                self.shared_per_job = Some(match self.shared_per_job {
                    Some(before) => (before + per_job) / 2,
                    None => per_job,
                });
                if self.hold > 0 {
                    self.hold -= 1;
                    Mode::Shared
                } else if stalled_share > STALLED_SHARE {
                    Mode::Trial
                } else {
                    Mode::Shared
                }
            }
            Mode::Trial => {
                let faster = self
                    .shared_per_job
                    .is_some_and(|s| per_job.as_secs_f64() < s.as_secs_f64() * SOLO_MARGIN);
                if faster {
                    self.hold = SOLO_EPOCHS;
                    self.fail_hold = SOLO_EPOCHS;
                    Mode::Solo
                } else {
                    self.fail_hold = self.fail_hold.clamp(SOLO_EPOCHS, MAX_HOLD);
                    self.hold = self.fail_hold;
                    self.fail_hold = (self.fail_hold * 2).min(MAX_HOLD);
                    Mode::Shared
                }
            }
            Mode::Solo if self.hold > 1 => {
                self.hold -= 1;
                Mode::Solo
            }
            Mode::Solo => {
                self.hold = 0;
                Mode::Shared
            }
        };
        self.jobs = 0;
        self.wall = Duration::ZERO;
        self.stalled = Duration::ZERO;
    }
}

/// Fewer rows than this are worked through by the caller alone: waking the
/// workers costs more than a few rows of a norm or a rotation.
const PAR_MIN_ROWS: usize = 8;

impl ThreadPool {
    /// Calls `f(index, row)` for every row of `data` (rows of `width`
    /// elements), over contiguous ranges of rows in parallel when there are
    /// enough rows to pay for it (prefill), on the caller alone otherwise
    /// (decode).
    pub fn rows_mut<T: Send>(
        &self,
        data: &mut [T],
        width: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let n_rows = data.len() / width.max(1);
        if self.n_threads == 1 || n_rows < PAR_MIN_ROWS {
            for (r, row) in data.chunks_exact_mut(width.max(1)).enumerate() {
                f(r, row);
            }
            return;
        }
        let pieces = (self.n_threads * 4).min(n_rows);
        let next = AtomicUsize::new(0);
        let shared = SharedMut::new(data);
        self.run(&|_| {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= pieces {
                    return;
                }
                for r in k * n_rows / pieces..(k + 1) * n_rows / pieces {
                    // SAFETY: row r is inside `data` and belongs to piece k,
                    // which this participant alone claimed.
                    f(r, unsafe { shared.slice(r * width, width) });
                }
            }
        });
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

/// Whether generation `g` comes after `seen` (the counter wraps). A worker
/// may have run a job whose generation is not published yet (see
/// `Shared::job_generation`): the one before it is then not new.
fn newer(g: usize, seen: usize) -> bool {
    (g.wrapping_sub(seen) as isize) > 0
}

fn worker(shared: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        // Wait for a new generation: spin, then sleep.
        let start = Instant::now();
        let mut current = shared.generation.load(Ordering::Acquire);
        'wait: while !newer(current, seen) {
            for _ in 0..SPINS_PER_CHECK {
                std::hint::spin_loop();
                current = shared.generation.load(Ordering::Acquire);
                if newer(current, seen) {
                    break 'wait;
                }
            }
            if start.elapsed() > SPIN_FOR {
                let mut sleepers = lock(&shared.sleepers);
                *sleepers += 1;
                loop {
                    current = shared.generation.load(Ordering::Acquire);
                    if newer(current, seen) {
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
        // Enter the job unless the caller has already closed it.
        let mut state = shared.state.load(Ordering::Acquire);
        let entered = loop {
            if state & CLOSED != 0 {
                break false;
            }
            match shared.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break true,
                Err(now) => state = now,
            }
        };
        if !entered {
            continue;
        }
        // The job entered may be one published after the generation seen
        // above: run each job once.
        seen = shared.job_generation.load(Ordering::Relaxed);
        // SAFETY: the job was published before the generation bump we saw
        // (release/acquire) and stays alive until we leave it.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            // SAFETY: see above.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        shared.state.fetch_sub(1, Ordering::AcqRel);
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

    /// Runs `n_items` items of shared work and returns how often each ran.
    fn run_items(pool: &ThreadPool, n_items: usize) -> Vec<usize> {
        let next = AtomicUsize::new(0);
        let hits: Vec<AtomicUsize> = (0..n_items).map(|_| AtomicUsize::new(0)).collect();
        let indices: Vec<AtomicUsize> =
            (0..pool.n_threads()).map(|_| AtomicUsize::new(0)).collect();
        pool.run(&|i| {
            assert_eq!(
                indices[i].fetch_add(1, Ordering::Relaxed),
                0,
                "index {i} used twice"
            );
            loop {
                let item = next.fetch_add(1, Ordering::Relaxed);
                if item >= n_items {
                    return;
                }
                hits[item].fetch_add(1, Ordering::Relaxed);
            }
        });
        hits.iter().map(|h| h.load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn shared_work_is_done_exactly_once() {
        for n in 1..=4 {
            let pool = ThreadPool::new(n);
            for round in 0..300 {
                assert!(run_items(&pool, round % 50).iter().all(|&h| h == 1));
            }
        }
    }

    #[test]
    fn workers_join_when_there_is_enough_work() {
        let pool = ThreadPool::new(2);
        let seen = AtomicUsize::new(0);
        pool.run(&|i| {
            if i == 1 {
                seen.store(1, Ordering::Relaxed);
            }
            // The caller keeps the job open long enough for the worker to join.
            if i == 0 {
                let start = Instant::now();
                while seen.load(Ordering::Relaxed) == 0 && start.elapsed() < Duration::from_secs(5)
                {
                    std::hint::spin_loop();
                }
            }
        });
        assert_eq!(seen.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn jobs_see_borrowed_data_and_sleeping_workers_wake() {
        let pool = ThreadPool::new(3);
        for round in 0..5 {
            // Let the workers fall asleep before some jobs.
            if round % 2 == 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut out = vec![0usize; 64];
            let ptr = SharedMut::new(&mut out);
            let next = AtomicUsize::new(0);
            pool.run(&|_| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 64 {
                    return;
                }
                unsafe { ptr.slice(i, 1)[0] = i * 10 + round };
            });
            assert!(out.iter().enumerate().all(|(i, v)| *v == i * 10 + round));
        }
    }

    #[test]
    fn rows_mut_visits_every_row_once_with_its_index() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for n_rows in [0, 3, 8, 37] {
                let mut data = vec![0usize; n_rows * 5];
                pool.rows_mut(&mut data, 5, &|r, row| {
                    for v in row.iter_mut() {
                        *v += r + 1;
                    }
                });
                let want: Vec<usize> = (0..n_rows).flat_map(|r| [r + 1; 5]).collect();
                assert_eq!(data, want, "{threads} threads, {n_rows} rows");
            }
        }
    }

    /// An epoch of jobs of `wall` each, `stalled` of it waiting.
    fn epoch(s: &mut Sharing, wall_us: u64, stalled_us: u64) {
        for _ in 0..EPOCH_JOBS {
            s.record(
                Duration::from_micros(wall_us),
                Duration::from_micros(stalled_us),
            );
        }
    }

    #[test]
    fn sharing_stays_while_nobody_stalls() {
        let mut s = Sharing::default();
        for _ in 0..20 {
            epoch(&mut s, 50, 2);
            assert_eq!(s.mode, Mode::Shared);
        }
    }

    #[test]
    fn stalls_bring_a_trial_alone_kept_only_when_faster() {
        let mut s = Sharing::default();
        // Half the time waiting: try alone.
        epoch(&mut s, 60, 30);
        assert_eq!(s.mode, Mode::Trial);
        // Alone is faster per job: kept for SOLO_EPOCHS epochs, then
        // sharing is measured again.
        epoch(&mut s, 45, 0);
        assert_eq!(s.mode, Mode::Solo);
        for _ in 1..SOLO_EPOCHS {
            epoch(&mut s, 45, 0);
            assert_eq!(s.mode, Mode::Solo);
        }
        epoch(&mut s, 45, 0);
        assert_eq!(s.mode, Mode::Shared);
        // Still stalling: another trial, which is slower this time; sharing
        // resumes and no trial comes for SOLO_EPOCHS epochs.
        epoch(&mut s, 60, 30);
        assert_eq!(s.mode, Mode::Trial);
        epoch(&mut s, 70, 0);
        assert_eq!(s.mode, Mode::Shared);
        for _ in 0..SOLO_EPOCHS {
            epoch(&mut s, 60, 30);
            assert_eq!(s.mode, Mode::Shared);
        }
        epoch(&mut s, 60, 30);
        assert_eq!(s.mode, Mode::Trial);
        // Failing again: twice as long without a trial.
        epoch(&mut s, 70, 0);
        for _ in 0..2 * SOLO_EPOCHS {
            epoch(&mut s, 60, 30);
            assert_eq!(s.mode, Mode::Shared);
        }
        epoch(&mut s, 60, 30);
        assert_eq!(s.mode, Mode::Trial);
    }

    #[test]
    fn jobs_run_alone_in_solo_mode() {
        let pool = ThreadPool::new(2);
        {
            let mut s = lock(&pool.sharing);
            s.mode = Mode::Solo;
            s.hold = SOLO_EPOCHS;
        }
        let seen = AtomicUsize::new(0);
        for _ in 0..100 {
            pool.run(&|i| {
                seen.fetch_or(1 << i, Ordering::Relaxed);
            });
        }
        assert_eq!(seen.load(Ordering::Relaxed), 1, "a worker ran a job");
        assert!(run_items(&pool, 37).iter().all(|&h| h == 1));
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(&|_| panic!("boom"))));
        assert!(r.is_err());
        assert!(run_items(&pool, 10).iter().all(|&h| h == 1));
    }
}
