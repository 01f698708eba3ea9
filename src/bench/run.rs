//! Drives a sweep or a tuning search over the in-process engine and gathers the measurements
//! into a [`BenchReport`], with progress bars on a terminal (hidden otherwise).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::engine::{BuiltIndex, InProcess, Workload, build_index, measure};
use super::measure::peak_rss_bytes;
use super::sweep::SweepGrid;
use super::tune::{TuneOptions, TuneOutcome, tune};
use super::{BenchError, BenchReport, QueryResult};
use crate::index::Metric;

/// The metric as reports name it.
pub fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "l2",
        Metric::Cosine => "cosine",
        Metric::Dot => "dot",
    }
}

pub(super) fn bar(multi: &MultiProgress, len: u64, what: &str) -> ProgressBar {
    let pb = multi.add(ProgressBar::new(len));
    let style =
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(what.to_string());
    pb
}

/// A report skeleton for `workload`; rows and build totals are filled by the caller.
pub(super) fn report(
    workload: &Workload<'_>,
    results: Vec<QueryResult>,
    label: Option<String>,
) -> BenchReport {
    // The first row measured on each distinct index stands for that index's build.
    let key = |r: &QueryResult| (r.nlist, r.pq_m, r.pq_bits);
    let mut builds: Vec<&QueryResult> = Vec::new();
    for r in &results {
        if !builds.iter().any(|b| key(b) == key(r)) {
            builds.push(r);
        }
    }
    let single = (builds.len() == 1).then(|| key(builds[0]));
    let build_seconds = builds.iter().filter_map(|b| b.build_seconds).sum();
    let index_bytes = builds.iter().filter_map(|b| b.index_bytes).max();
    BenchReport {
        dataset: workload.name.to_string(),
        n: workload.n(),
        dim: workload.dim(),
        metric: metric_name(workload.metric).to_string(),
        build_seconds,
        index_bytes,
        engine: "shoal".to_string(),
        label,
        k: workload.k,
        threads: workload.threads,
        nlist: single.and_then(|b| b.0),
        pq_m: single.and_then(|b| b.1),
        pq_bits: single.and_then(|b| b.2),
        peak_rss_bytes: peak_rss_bytes(),
        ingest_vectors_per_second: None,
        concurrency: None,
        segments: None,
        indexed_points: None,
        index_wait_seconds: None,
        idle_wait_seconds: None,
        results,
    }
}

/// Builds one index per (`nlist`, `pq_m`, `pq_bits`) of `grid` (which must be
/// [resolved](SweepGrid::resolve)) and measures every (`nprobe`, `rerank`) on each, on all
/// queries. Indexes are dropped as soon as their settings are measured.
pub fn run_sweep(
    workload: &Workload<'_>,
    grid: &SweepGrid,
    label: Option<String>,
) -> Result<BenchReport, BenchError> {
    let builds = grid.builds();
    let total: usize = builds.iter().map(|b| grid.searches(b.nlist).len()).sum();
    let multi = MultiProgress::new();
    let build_bar = bar(&multi, builds.len() as u64, "build");
    let query_bar = bar(&multi, total as u64, "search");
    build_bar.enable_steady_tick(Duration::from_millis(200));
    let mut results = Vec::with_capacity(total);
    for config in builds {
        build_bar.set_message(format!(
            "nlist={} pq_m={} pq_bits={}",
            config.nlist, config.pq_m, config.pq_bits
        ));
        let built = build_index(workload, config)?;
        build_bar.inc(1);
        for search in grid.searches(config.nlist) {
            query_bar.set_message(format!("nprobe={} rerank={}", search.nprobe, search.rerank));
            results.push(measure(workload, &built, search, false)?);
            query_bar.inc(1);
        }
    }
    build_bar.finish_and_clear();
    query_bar.finish_and_clear();
    Ok(report(workload, results, label))
}

/// Runs the tuner with the in-process engine; the report holds every measurement taken (sampled
/// ones included), so that the search can be plotted.
pub fn run_tune(
    workload: &Workload<'_>,
    options: &TuneOptions,
    label: Option<String>,
) -> Result<(TuneOutcome, BenchReport), BenchError> {
    let multi = MultiProgress::new();
    let spinner = multi.add(ProgressBar::new_spinner());
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner.set_message(format!(
        "tuning for recall@{} >= {}",
        workload.k, options.target_recall
    ));
    let builds = std::cell::Cell::new(0usize);
    let on_build = |b: &BuiltIndex| {
        builds.set(builds.get() + 1);
        spinner.set_message(format!(
            "built nlist={} pq_m={} pq_bits={} in {:.1}s ({} builds)",
            b.config.nlist,
            b.config.pq_m,
            b.config.pq_bits,
            b.build_seconds,
            builds.get()
        ));
    };
    let mut eval = InProcess::new(*workload, on_build);
    let outcome = tune(&mut eval, options)?;
    drop(eval);
    spinner.finish_and_clear();
    let report = report(workload, outcome.trace.clone(), label);
    Ok((outcome, report))
}
