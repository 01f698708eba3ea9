//! Where a request's CPU work runs: on the runtime's worker thread, or on the blocking pool.
//!
//! Handing work to `spawn_blocking` costs two cross-thread wake-ups (the pool thread, then the
//! worker that polls the answer). For a search at a cheap operating point that was measured at
//! about a fifth of the server's CPU per request on this 2-core machine (perf, `wrk` with 8
//! connections on 200k × 128, nprobe 4): more than the HTTP parsing. The runtime has one worker
//! per core, so running a short search right on the worker also caps concurrent searches at the
//! core count instead of oversubscribing the cores with pool threads.
//!
//! Long work (exact scans, filters evaluated over large segments, scans of many lists, batches)
//! still goes to the blocking pool, so one slow request cannot stall the other connections on
//! its worker for long.
//!
//! ## Bounded, and cancelled while it waits
//! Long work waits for one of a fixed number of permits ([`set_blocking_reads`], the router's
//! `blocking_reads`, default four per core) before it is handed to the pool, and holds it until
//! it returns: however many requests arrive (this node's own, or other nodes' through the data
//! plane), at most that many shard reads occupy the blocking pool, which therefore cannot be
//! exhausted (tokio's pool has 512 threads; the writes, Raft and file work need it too). A read
//! whose caller goes away (the request timed out, the client hung up) while it waits for a
//! permit is dropped without running. A read already running on the pool runs to its end: the
//! shard's search and scan loops have no cancellation points. It keeps its permit until then,
//! so the bound holds even for abandoned work.

use crate::shard::SearchWork;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinHandle};

/// How long a piece of request work is expected to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Tens to a few hundred microseconds: run it on the worker thread.
    Short,
    /// Possibly milliseconds or more: run it on the blocking pool.
    Long,
}

/// Rows searched exactly (flat segments, not yet indexed) above which a search counts as long:
/// 16k distances of 128 dimensions take about 100 µs.
pub const SHORT_FLAT_ROWS: usize = 16_384;
/// PQ codes scanned (indexed rows × nprobe / nlist) above which a search counts as long: the
/// 4-bit scanner takes about 1 ns per code, so this is a few hundred microseconds.
pub const SHORT_SCANNED_CODES: usize = 262_144;
/// Candidates re-ranked exactly (`limit × rerank`) above which a search counts as long.
pub const SHORT_RERANK_ROWS: usize = 4_096;

/// What a search will touch, for [`search_cost`].
#[derive(Debug, Clone, Copy)]
pub struct SearchShape {
    /// `exact` was asked for: every row is scanned.
    pub exact: bool,
    /// A filter is given: it is evaluated over the segments' rows.
    pub filtered: bool,
    /// Rows scanned and re-ranked under the parameters each segment will use
    /// ([`crate::shard::SearchPlan::work`]).
    pub work: SearchWork,
    /// `limit + offset`.
    pub k: usize,
}

/// The expected cost of one search.
pub fn search_cost(s: SearchShape) -> Cost {
    if s.exact || s.filtered {
        return Cost::Long;
    }
    let reranked = s.k.saturating_mul(s.work.rerank.max(1));
    if s.work.flat_rows > SHORT_FLAT_ROWS
        || s.work.scanned_codes > SHORT_SCANNED_CODES
        || reranked > SHORT_RERANK_ROWS
    {
        Cost::Long
    } else {
        Cost::Short
    }
}

/// The default of the router's `blocking_reads`: four per core (at least 8).
pub fn default_blocking_reads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .saturating_mul(4)
        .max(8)
}

/// The permits of long work, and how many there are.
static BLOCKING: Mutex<Option<(usize, Arc<Semaphore>)>> = Mutex::new(None);

fn blocking() -> Arc<Semaphore> {
    let mut g = BLOCKING.lock().unwrap_or_else(|e| e.into_inner());
    let (_, sem) = g.get_or_insert_with(|| {
        let n = default_blocking_reads();
        (n, Arc::new(Semaphore::new(n)))
    });
    sem.clone()
}

/// Sets how many pieces of long work may run on the blocking pool at once, process-wide (0:
/// [`default_blocking_reads`]). Work already holding a permit of the previous bound finishes
/// under it.
pub fn set_blocking_reads(n: usize) {
    let n = if n == 0 { default_blocking_reads() } else { n };
    let mut g = BLOCKING.lock().unwrap_or_else(|e| e.into_inner());
    if g.as_ref().is_none_or(|(m, _)| *m != n) {
        *g = Some((n, Arc::new(Semaphore::new(n))));
    }
}

/// Permits of long work free right now (for tests and metrics).
pub fn blocking_reads_available() -> usize {
    blocking().available_permits()
}

/// A spawned task's handle that aborts the task when dropped: a task spawned for a request
/// stops when the request is abandoned instead of running on without anyone waiting.
/// (`spawn_blocking` work can only be aborted before it starts.)
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `f` on the current worker when `cost` is short, else on the blocking pool once a
/// permit is free (see the module doc); `Err` only when `f` panicked on the pool.
pub async fn run<T: Send + 'static>(
    cost: Cost,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JoinError> {
    match cost {
        Cost::Short => Ok(f()),
        Cost::Long => {
            // Dropped here while waiting: nothing was spawned.
            let permit = blocking()
                .acquire_owned()
                .await
                .expect("the blocking-read semaphore is never closed");
            AbortOnDrop(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                f()
            }))
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Long work that times out while every permit is taken never runs; running work finishes
    /// even when its caller has gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_long_work_does_not_run_and_running_work_finishes() {
        let sem = blocking();
        let n = u32::try_from(sem.available_permits().max(1)).unwrap_or(u32::MAX);
        let all = sem.clone().acquire_many_owned(n).await.unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            run(Cost::Long, move || flag.store(true, Ordering::SeqCst)),
        )
        .await;
        assert!(
            waited.is_err(),
            "no permit was free: the run must still be waiting"
        );
        drop(all);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!ran.load(Ordering::SeqCst), "abandoned work ran anyway");

        // Work already running when its caller goes away runs to its end (no cancellation
        // points in a shard scan); its permit goes back when it returns.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let call = tokio::spawn(run(Cost::Long, move || {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
            flag.store(true, Ordering::SeqCst);
        }));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        call.abort();
        tx.send(()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(done.load(Ordering::SeqCst));
    }
}
