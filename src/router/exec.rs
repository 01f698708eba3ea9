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

use crate::shard::SearchWork;

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
    /// ([`crate::shard::Shard::search_work`]).
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

/// Runs `f` on the current worker when `cost` is short, else on the blocking pool; `Err` only
/// when `f` panicked on the pool.
pub async fn run<T: Send + 'static>(
    cost: Cost,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    match cost {
        Cost::Short => Ok(f()),
        Cost::Long => tokio::task::spawn_blocking(f).await,
    }
}
