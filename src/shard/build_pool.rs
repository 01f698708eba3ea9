//! The one bounded pool every shard of the process runs its index builds and merges on, and the
//! one timer thread that seals idle mutable segments.
//!
//! Before it, every sealed segment started its own OS thread: `seal_threshold: 1` and 2,000
//! points gave 1,987 threads (issue 14, finding 9). Now jobs queue here and at most
//! [`threads`] workers run them, started on demand and kept for the process's life. A build is
//! itself parallel (k-means and encoding use rayon's global pool), so a few workers keep every
//! core busy; more than one lets a small seal's build proceed while a long merge runs.
//!
//! Jobs must not wait for other pool jobs (they would hold a worker while waiting): shard jobs
//! only build, write files and swap results in under the shard's lock.
//!
//! The **idle timer** is one thread for all shards: every [`TICK`] it calls each watcher
//! registered with [`watch`] (a shard checks whether its mutable segment has been idle long
//! enough) and forgets those that answer `false` (their shard was dropped).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How often the idle timer looks at its watchers.
pub const TICK: Duration = Duration::from_millis(50);

type Job = Box<dyn FnOnce() + Send + 'static>;
type Watcher = Box<dyn FnMut() -> bool + Send + 'static>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers started (never more than [`threads`]).
    workers: usize,
    /// Workers waiting for a job.
    idle: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
    threads: usize,
    /// Jobs running now, and the most ever seen running at once.
    running: AtomicUsize,
    peak: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(Queue::default()),
        ready: Condvar::new(),
        threads: std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .clamp(2, 8),
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    })
}

/// Most worker threads the pool starts: half the cores, at least 2 and at most 8.
pub fn threads() -> usize {
    pool().threads
}

/// Worker threads started so far (at most [`threads`]).
pub fn workers() -> usize {
    pool()
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .workers
}

/// The most jobs ever seen running at the same time (at most [`threads`]).
pub fn peak_running() -> usize {
    pool().peak.load(Ordering::SeqCst)
}

/// Queues `job` to run on a pool worker, starting one if none is free and the cap allows.
pub fn submit(job: impl FnOnce() + Send + 'static) {
    let pool = pool();
    let mut q = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
    q.jobs.push_back(Box::new(job));
    if q.idle == 0 && q.workers < pool.threads {
        let spawned = std::thread::Builder::new()
            .name(format!("shoal-build-{}", q.workers))
            .spawn(work);
        match spawned {
            Ok(_) => q.workers += 1,
            // Jobs still run on the workers there are (there is at least one unless the very
            // first spawn failed, which leaves the process without threads anyway).
            Err(e) => tracing::error!(error = %e, "cannot start a build worker"),
        }
    }
    drop(q);
    pool.ready.notify_one();
}

fn work() {
    let pool = pool();
    loop {
        let job = {
            let mut q = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                q.idle += 1;
                q = pool.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                q.idle -= 1;
            }
        };
        let now = pool.running.fetch_add(1, Ordering::SeqCst) + 1;
        pool.peak.fetch_max(now, Ordering::SeqCst);
        // A panicking job must not take the worker with it (the pool would shrink for good).
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a build job panicked");
        }
        pool.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Registers `watcher` with the idle timer: called every [`TICK`] until it returns `false`.
pub fn watch(watcher: impl FnMut() -> bool + Send + 'static) {
    static WATCHERS: OnceLock<Mutex<Vec<Watcher>>> = OnceLock::new();
    let mut started = false;
    let list = WATCHERS.get_or_init(|| {
        started = true;
        Mutex::new(Vec::new())
    });
    list.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(watcher));
    if started {
        let spawned = std::thread::Builder::new()
            .name("shoal-idle-seal".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    // Taken out of the list while they run, so `watch` never waits on a seal.
                    let mut current =
                        std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()));
                    current.retain_mut(|w| w());
                    list.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .append(&mut current);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the idle-seal timer: idle segments stay flat");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    #[test]
    fn many_jobs_run_on_at_most_the_capped_workers() {
        let (tx, rx) = mpsc::channel();
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..500 {
            let (tx, count) = (tx.clone(), Arc::clone(&count));
            submit(move || {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(200));
                tx.send(()).unwrap();
            });
        }
        for _ in 0..500 {
            rx.recv_timeout(Duration::from_secs(60)).unwrap();
        }
        assert_eq!(count.load(Ordering::SeqCst), 500);
        assert!(workers() <= threads(), "{} workers", workers());
        assert!(peak_running() <= threads(), "{} at once", peak_running());
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        submit(|| panic!("on purpose"));
        let (tx, rx) = mpsc::channel();
        for _ in 0..threads() * 2 {
            let tx = tx.clone();
            submit(move || tx.send(()).unwrap());
        }
        for _ in 0..threads() * 2 {
            rx.recv_timeout(Duration::from_secs(60)).unwrap();
        }
    }

    #[test]
    fn watchers_are_called_until_they_decline() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        watch(move || c.fetch_add(1, Ordering::SeqCst) + 1 < 3);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(TICK);
        }
        std::thread::sleep(TICK * 4);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
