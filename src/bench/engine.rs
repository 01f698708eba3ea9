//! The in-process engine: builds [`IvfPqIndex`]es on a dataset with every core and measures
//! search settings on them, one query per call from client threads.

use std::time::Instant;

use ndarray::{ArrayView2, s};

use super::measure::{LatencySummary, median_pass, recall_at_k, run_queries};
use super::sweep::{BuildConfig, SearchConfig};
use super::tune::Evaluate;
use super::{BenchError, QueryResult};
use crate::datasets::Dataset;
use crate::index::Metric;
use crate::index::ivfpq::{IvfPqConfig, IvfPqIndex, SearchParams};

/// What every measurement of a run shares: the data, ground truth, `k` and the client threads.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// Dataset name, for reports.
    pub name: &'a str,
    /// Metric the index is built with and the ground truth was computed with.
    pub metric: Metric,
    /// Base vectors (row number = id).
    pub base: ArrayView2<'a, f32>,
    /// Queries.
    pub queries: ArrayView2<'a, f32>,
    /// For each query, the exact nearest base rows, at least `k` of them.
    pub groundtruth: ArrayView2<'a, u32>,
    /// Neighbours asked per query.
    pub k: usize,
    /// Client threads issuing queries.
    pub threads: usize,
    /// Seed of the index builds.
    pub seed: u64,
    /// Queries used when a measurement may be sampled (tuning); all when larger than the set.
    pub sample_queries: usize,
    /// In-process index builds also keep 8-bit codes of the raw vectors
    /// ([`IvfPqIndex::with_sq8`]), as the database's sealed segments do.
    pub sq8: bool,
    /// In-process index builds spill every vector to a second list with this SOAR λ
    /// ([`IvfPqConfig::soar_lambda`]).
    pub soar_lambda: Option<f32>,
    /// Timed passes over the queries per measurement; the pass with the median wall time is
    /// reported ([`median_pass`](super::measure::median_pass)).
    pub passes: usize,
}

impl<'a> Workload<'a> {
    /// A workload over `dataset`, whose ground truth must be present (compute it with
    /// `datasets::exact_knn` first when the files had none) and cover `k` neighbours.
    pub fn new(dataset: &'a Dataset, k: usize, threads: usize) -> Result<Self, BenchError> {
        let groundtruth = dataset.groundtruth.as_ref().ok_or_else(|| {
            BenchError::GroundTruth("the dataset has none; compute it before measuring".into())
        })?;
        if groundtruth.nrows() != dataset.queries.nrows() {
            return Err(BenchError::GroundTruth(format!(
                "has {} rows for {} queries",
                groundtruth.nrows(),
                dataset.queries.nrows()
            )));
        }
        if groundtruth.ncols() < k {
            return Err(BenchError::GroundTruth(format!(
                "holds {} neighbours per query, fewer than k = {k}",
                groundtruth.ncols()
            )));
        }
        if k == 0 || threads == 0 {
            return Err(BenchError::InvalidParameter(
                "k and threads must be at least 1".into(),
            ));
        }
        if dataset.queries.nrows() == 0 || dataset.base.nrows() == 0 {
            return Err(BenchError::InvalidParameter(
                "the dataset has no base vectors or no queries".into(),
            ));
        }
        if dataset.queries.ncols() != dataset.base.ncols() {
            return Err(BenchError::InvalidParameter(format!(
                "queries have dimension {}, base vectors {}",
                dataset.queries.ncols(),
                dataset.base.ncols()
            )));
        }
        Ok(Workload {
            name: &dataset.name,
            metric: dataset.metric,
            base: dataset.base.view(),
            queries: dataset.queries.view(),
            groundtruth: groundtruth.view(),
            k,
            threads,
            seed: 0x5ba1,
            sample_queries: 1000,
            sq8: false,
            soar_lambda: None,
            passes: 1,
        })
    }

    /// Number of base vectors.
    pub fn n(&self) -> usize {
        self.base.nrows()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.base.ncols()
    }
}

/// An index built for measurement, with what building it cost.
pub struct BuiltIndex {
    /// The settings it was built with.
    pub config: BuildConfig,
    /// The index.
    pub index: IvfPqIndex,
    /// Wall-clock seconds the build took.
    pub build_seconds: f64,
    /// [`IvfPqIndex::memory_bytes`].
    pub index_bytes: u64,
    /// The inverted lists of each base row (ids are row numbers): its own and, with spilling,
    /// its copy's ([`NO_LIST`] otherwise), for the IVF-Flat recall of a setting
    /// ([`ivf_flat_recall`]).
    pub list_of_row: Vec<[u32; 2]>,
}

/// No list, in [`BuiltIndex::list_of_row`].
pub const NO_LIST: u32 = u32::MAX;

/// Builds one index over the whole base, ids = row numbers, on rayon's global pool.
pub fn build_index(workload: &Workload<'_>, config: BuildConfig) -> Result<BuiltIndex, BenchError> {
    let base = workload.base.as_standard_layout();
    let vectors = base
        .as_slice()
        .ok_or_else(|| BenchError::InvalidParameter("base vectors are not contiguous".into()))?;
    let ids: Vec<u64> = (0..workload.n() as u64).collect();
    let mut index_config =
        IvfPqConfig::new(workload.metric, config.nlist, config.pq_m, config.pq_bits);
    index_config.seed = workload.seed;
    index_config.soar_lambda = workload.soar_lambda;
    let start = Instant::now();
    let mut index = IvfPqIndex::build(workload.dim(), vectors, &ids, &index_config)?;
    if workload.sq8 {
        index = index.with_sq8()?;
    }
    let build_seconds = start.elapsed().as_secs_f64();
    // Every list a row is in: its own, and its spilled copy's when there is one.
    let mut list_of_row = vec![[NO_LIST; 2]; workload.n()];
    for (id, list) in index.list_of_each_row() {
        let lists = &mut list_of_row[id as usize];
        lists[usize::from(lists[0] != NO_LIST)] = list as u32;
    }
    Ok(BuiltIndex {
        config,
        list_of_row,
        index_bytes: index.memory_bytes() as u64,
        index,
        build_seconds,
    })
}

/// Runs every query (or the first `workload.sample_queries` when `sample`) once with `search`
/// settings and summarises recall, throughput and latency. A short untimed warm-up pass runs
/// first so that the first setting measured is not penalised by cold caches.
pub fn measure(
    workload: &Workload<'_>,
    built: &BuiltIndex,
    search: SearchConfig,
    sample: bool,
) -> Result<QueryResult, BenchError> {
    let nq = if sample {
        workload.sample_queries.clamp(1, workload.queries.nrows())
    } else {
        workload.queries.nrows()
    };
    let queries = workload.queries.slice(s![..nq, ..]);
    let groundtruth = workload.groundtruth.slice(s![..nq, ..]);
    let params = SearchParams {
        nprobe: search.nprobe,
        rerank: search.rerank,
    };
    let k = workload.k;
    let run_one = |q: &[f32]| -> Vec<u64> {
        built
            .index
            .search(q, k, &params, None)
            .into_iter()
            .map(|n| n.id)
            .collect()
    };
    let warm = queries.slice(s![..nq.min(64), ..]);
    run_queries(warm, workload.threads, run_one);
    let run = median_pass(workload.passes, || {
        run_queries(queries, workload.threads, run_one)
    });
    let recall = recall_at_k(&run.ids, groundtruth, k)?;
    let ivf_flat = ivf_flat_recall(built, queries, groundtruth, k, search.nprobe);
    let latency = LatencySummary::from_seconds(&run.latencies);
    Ok(QueryResult {
        nprobe: search.nprobe,
        rerank: search.rerank,
        recall,
        qps: run.qps(),
        p50_ms: latency.p50_ms,
        p95_ms: latency.p95_ms,
        p99_ms: latency.p99_ms,
        nlist: Some(built.config.nlist),
        pq_m: Some(built.config.pq_m),
        pq_bits: Some(built.config.pq_bits),
        build_seconds: Some(built.build_seconds),
        index_bytes: Some(built.index_bytes),
        sharding: None,
        selectivity: None,
        ivf_flat_recall: Some(ivf_flat),
    })
}

/// Recall@k of an IVF with exact lists at `nprobe` on `built`'s coarse quantiser: the share of
/// each query's true top `k` whose list is probed (an exact scan of the probed lists finds
/// exactly those). Untimed.
pub fn ivf_flat_recall(
    built: &BuiltIndex,
    queries: ArrayView2<'_, f32>,
    groundtruth: ArrayView2<'_, u32>,
    k: usize,
    nprobe: usize,
) -> f64 {
    let mut probed = vec![false; built.index.nlist()];
    let mut found = 0usize;
    for (q, truth) in queries.outer_iter().zip(groundtruth.outer_iter()) {
        let q = q.as_standard_layout();
        let lists = built
            .index
            .probed_lists(q.as_slice().unwrap_or(&[]), nprobe);
        lists.iter().for_each(|&l| probed[l] = true);
        found += truth
            .iter()
            .take(k)
            .filter(|&&row| {
                let lists = built.list_of_row.get(row as usize).copied();
                lists.is_some_and(|ls| ls.iter().any(|&l| l != NO_LIST && probed[l as usize]))
            })
            .count();
        lists.iter().for_each(|&l| probed[l] = false);
    }
    found as f64 / (queries.nrows() * k).max(1) as f64
}

/// [`Evaluate`] over in-process indexes, keeping the two most recently used builds so that the
/// tuner can return to its best index without rebuilding it.
pub struct InProcess<'a, F> {
    workload: Workload<'a>,
    cache: Vec<BuiltIndex>,
    on_build: F,
}

impl<'a, F: FnMut(&BuiltIndex)> InProcess<'a, F> {
    /// An evaluator over `workload`; `on_build` is told of every index built (progress, logs).
    pub fn new(workload: Workload<'a>, on_build: F) -> Self {
        InProcess {
            workload,
            cache: Vec::new(),
            on_build,
        }
    }

    /// Every index built so far that is still cached, oldest first.
    pub fn cached(&self) -> &[BuiltIndex] {
        &self.cache
    }
}

impl<F: FnMut(&BuiltIndex)> Evaluate for InProcess<'_, F> {
    fn evaluate(
        &mut self,
        build: BuildConfig,
        search: SearchConfig,
        sample: bool,
    ) -> Result<QueryResult, BenchError> {
        let pos = match self.cache.iter().position(|b| b.config == build) {
            Some(pos) => pos,
            None => {
                if self.cache.len() == 2 {
                    self.cache.remove(0);
                }
                let built = build_index(&self.workload, build)?;
                (self.on_build)(&built);
                self.cache.push(built);
                self.cache.len() - 1
            }
        };
        let built = self.cache.remove(pos);
        let result = measure(&self.workload, &built, search, sample);
        self.cache.push(built);
        result
    }
}
