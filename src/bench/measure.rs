//! The measurements themselves: recall against ground truth, latency percentiles, throughput and
//! peak memory. Kept free of any index type so that the maths can be checked on hand-made inputs
//! and reused for any engine (in process today, through the REST server later).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ndarray::ArrayView2;

use super::BenchError;

/// Mean recall@k: for each query, the fraction of its `k` true nearest neighbours (the first `k`
/// ground-truth columns, base row numbers) found among the first `k` ids returned.
///
/// Returns an error when the shapes disagree, so that a truncated ground-truth file cannot
/// silently inflate or deflate the number.
pub fn recall_at_k(
    results: &[Vec<u64>],
    groundtruth: ArrayView2<'_, u32>,
    k: usize,
) -> Result<f64, BenchError> {
    if k == 0 {
        return Err(BenchError::InvalidParameter("k must be at least 1".into()));
    }
    if groundtruth.ncols() < k {
        return Err(BenchError::GroundTruth(format!(
            "holds {} neighbours per query, fewer than k = {k}",
            groundtruth.ncols()
        )));
    }
    if groundtruth.nrows() != results.len() {
        return Err(BenchError::GroundTruth(format!(
            "has {} rows for {} queries",
            groundtruth.nrows(),
            results.len()
        )));
    }
    if results.is_empty() {
        return Err(BenchError::InvalidParameter("no queries to measure".into()));
    }
    let mut found_total = 0usize;
    let mut truth: Vec<u64> = Vec::with_capacity(k);
    for (q, got) in results.iter().enumerate() {
        truth.clear();
        truth.extend(groundtruth.row(q).iter().take(k).map(|&id| u64::from(id)));
        truth.sort_unstable();
        let mut seen: Vec<u64> = got.iter().take(k).copied().collect();
        seen.sort_unstable();
        seen.dedup();
        found_total += seen
            .iter()
            .filter(|id| truth.binary_search(id).is_ok())
            .count();
    }
    Ok(found_total as f64 / (results.len() * k) as f64)
}

/// The `p`-th percentile (0 < p ≤ 100) of **sorted** samples, by the nearest-rank method: the
/// smallest sample such that at least `p`% of the samples are at or below it. No interpolation,
/// so the answer is always a latency that some query actually had.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency percentiles of one measured setting, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl LatencySummary {
    /// Summarises per-query latencies given in seconds, in any order.
    pub fn from_seconds(latencies: &[f64]) -> Self {
        let mut sorted: Vec<f64> = latencies.iter().map(|s| s * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        LatencySummary {
            p50_ms: percentile(&sorted, 50.0),
            p95_ms: percentile(&sorted, 95.0),
            p99_ms: percentile(&sorted, 99.0),
        }
    }
}

/// What running every query once produced.
#[derive(Debug, Clone)]
pub struct QueryRun {
    /// Ids returned per query, in query order.
    pub ids: Vec<Vec<u64>>,
    /// Seconds each query took, in query order.
    pub latencies: Vec<f64>,
    /// Wall-clock seconds from the first query's start to the last one's end, over all threads.
    pub wall_seconds: f64,
}

impl QueryRun {
    /// Queries per second over the whole run.
    pub fn qps(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            self.ids.len() as f64 / self.wall_seconds
        } else {
            f64::INFINITY
        }
    }
}

/// The pass with the median wall time of `passes` runs of `run` (at least one): a set of a
/// thousand queries answered at tens of thousands a second is timed over tens of milliseconds,
/// where a page fault or a neighbour's burst on a shared machine moves the figure by a tenth.
/// Each pass answers the same queries, so any pass's answers serve for recall.
pub fn median_pass(passes: usize, mut run: impl FnMut() -> QueryRun) -> QueryRun {
    let mut runs: Vec<QueryRun> = (0..passes.max(1)).map(|_| run()).collect();
    runs.sort_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Runs every query exactly once, one query per call to `search`, from `threads` client threads
/// that take the next query from a shared cursor (as independent clients would, rather than
/// pre-split batches that finish unevenly). Each call is timed on its own.
pub fn run_queries<F>(queries: ArrayView2<'_, f32>, threads: usize, search: F) -> QueryRun
where
    F: Fn(&[f32]) -> Vec<u64> + Sync,
{
    run_queries_with(queries, threads, || (), |_, q| search(q))
}

/// [`run_queries`] where every client thread first makes its own state with `init` (an HTTP
/// connection, a scratch buffer) and passes it to each of its `search` calls, so that clients
/// share nothing, as independent processes would not.
pub fn run_queries_with<S, I, F>(
    queries: ArrayView2<'_, f32>,
    threads: usize,
    init: I,
    search: F,
) -> QueryRun
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, &[f32]) -> Vec<u64> + Sync,
{
    run_queries_indexed(queries, threads, init, |state, _, q| search(state, q))
}

/// [`run_queries_with`] where `search` is also told the query's number, for workloads in which
/// each query carries its own filter.
pub fn run_queries_indexed<S, I, F>(
    queries: ArrayView2<'_, f32>,
    threads: usize,
    init: I,
    search: F,
) -> QueryRun
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize, &[f32]) -> Vec<u64> + Sync,
{
    let n = queries.nrows();
    let threads = threads.clamp(1, n.max(1));
    let cursor = AtomicUsize::new(0);
    let start = Instant::now();
    let per_thread: Vec<Vec<(usize, Vec<u64>, f64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = init();
                    let mut done = Vec::new();
                    let mut owned = Vec::new();
                    loop {
                        let q = cursor.fetch_add(1, Ordering::Relaxed);
                        if q >= n {
                            break;
                        }
                        let row = queries.row(q);
                        let query: &[f32] = match row.as_slice() {
                            Some(slice) => slice,
                            None => {
                                owned.clear();
                                owned.extend(row.iter().copied());
                                &owned
                            }
                        };
                        let t = Instant::now();
                        let ids = search(&mut state, q, query);
                        done.push((q, ids, t.elapsed().as_secs_f64()));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let wall_seconds = start.elapsed().as_secs_f64();
    let mut ids = vec![Vec::new(); n];
    let mut latencies = vec![0.0; n];
    for (q, found, secs) in per_thread.into_iter().flatten() {
        ids[q] = found;
        latencies[q] = secs;
    }
    QueryRun {
        ids,
        latencies,
        wall_seconds,
    }
}

/// Peak resident set size of this process in bytes (`VmHWM` in `/proc/self/status`), or `None`
/// where that file does not exist (non-Linux) or lacks the line.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn the_pass_with_the_median_wall_time_is_reported() {
        let run = |wall: f64| QueryRun {
            ids: vec![vec![wall as u64]],
            latencies: vec![wall],
            wall_seconds: wall,
        };
        let mut walls = [3.0, 1.0, 5.0, 2.0, 4.0].into_iter();
        let median = median_pass(5, || run(walls.next().unwrap()));
        assert_eq!(median.wall_seconds, 3.0);
        assert_eq!(median.ids, vec![vec![3]]);
        assert!(walls.next().is_none(), "every pass ran");
        // No passes asked still runs one.
        let mut calls = 0;
        median_pass(0, || {
            calls += 1;
            run(1.0)
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn recall_counts_overlap_with_the_first_k_truths() {
        let gt = array![[1u32, 2, 3, 9], [4, 5, 6, 9]];
        // Query 0 finds 2 of {1,2,3}; query 1 finds all of {4,5,6}, in another order.
        let results = vec![vec![1, 3, 7], vec![6, 4, 5]];
        let r = recall_at_k(&results, gt.view(), 3).unwrap();
        assert!((r - 5.0 / 6.0).abs() < 1e-12, "{r}");
        // Only the first k returned ids count, and a truth beyond k does not count.
        let results = vec![vec![7, 8, 9, 1], vec![9, 9, 9]];
        assert_eq!(recall_at_k(&results, gt.view(), 3).unwrap(), 0.0);
        // Duplicate ids are counted once, and short answers simply miss.
        let results = vec![vec![1, 1, 1], vec![4]];
        let r = recall_at_k(&results, gt.view(), 3).unwrap();
        assert!((r - 2.0 / 6.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn recall_refuses_mismatched_ground_truth() {
        let gt = array![[1u32, 2], [3, 4]];
        assert!(matches!(
            recall_at_k(&[vec![1], vec![3]], gt.view(), 3),
            Err(BenchError::GroundTruth(_))
        ));
        assert!(matches!(
            recall_at_k(&[vec![1]], gt.view(), 2),
            Err(BenchError::GroundTruth(_))
        ));
        assert!(recall_at_k(&[vec![1], vec![3]], gt.view(), 0).is_err());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 95.0), 95.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        let small = [10.0, 20.0, 30.0];
        assert_eq!(percentile(&small, 50.0), 20.0);
        assert_eq!(percentile(&small, 99.0), 30.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn latency_summary_sorts_and_converts_to_ms() {
        let secs: Vec<f64> = (1..=100).rev().map(|i| f64::from(i) / 1000.0).collect();
        let s = LatencySummary::from_seconds(&secs);
        assert!((s.p50_ms - 50.0).abs() < 1e-9);
        assert!((s.p95_ms - 95.0).abs() < 1e-9);
        assert!((s.p99_ms - 99.0).abs() < 1e-9);
    }

    #[test]
    fn every_query_runs_once_and_answers_land_in_order() {
        let queries = Array2::from_shape_fn((257, 3), |(i, j)| (i * 10 + j) as f32);
        let calls = AtomicUsize::new(0);
        for threads in [1, 4] {
            calls.store(0, Ordering::Relaxed);
            let run = run_queries(queries.view(), threads, |q| {
                calls.fetch_add(1, Ordering::Relaxed);
                vec![q[0] as u64 / 10]
            });
            assert_eq!(calls.load(Ordering::Relaxed), 257);
            assert_eq!(run.ids.len(), 257);
            assert!(
                run.ids
                    .iter()
                    .enumerate()
                    .all(|(i, ids)| ids == &vec![i as u64])
            );
            assert_eq!(run.latencies.len(), 257);
            assert!(run.latencies.iter().all(|&s| s >= 0.0));
            assert!(run.qps() > 0.0);
        }
        // Column views (non-contiguous rows) are copied, not misread.
        let t = queries.t();
        let run = run_queries(t.slice(ndarray::s![.., ..5]), 2, |q| vec![q.len() as u64]);
        assert!(run.ids.iter().all(|ids| ids == &vec![5]));
    }

    #[test]
    fn vm_hwm_is_parsed_in_bytes() {
        let status = "Name:\tshoal\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB\n"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
