//! The in-process sharded engine of `shoal bench --shards N --placement hash|centroid
//! --shard-probe P`: what a cluster's placement costs or saves in recall and work, measured
//! without the network.
//!
//! The base is split by the placement ([`HashRing`] over row ids, or a [`CentroidPlacement`]
//! trained on a sample of the base) into `N` IVF-PQ indexes, each built with the same per-shard
//! settings. A query asks the `P` shards the placement probes (every shard for `hash`), takes
//! each one's top-k and merges them by (distance, id), as the router does. The shards of one query
//! are searched one after another on the calling thread, so latency and QPS count the whole work
//! of a query (a cluster would search them in parallel on different nodes); `shards_touched_mean`
//! says how much of the cluster a query would occupy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::MultiProgress;
use ndarray::s;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use super::engine::Workload;
use super::measure::{LatencySummary, median_pass, recall_at_k, run_queries};
use super::report::ShardingResult;
use super::run::{bar, report};
use super::sweep::{BuildConfig, SearchConfig, SweepGrid, auto_nlist};
use super::{BenchError, BenchReport, QueryResult};
use crate::cluster::placement::{CentroidPlacement, HashRing};
use crate::index::Neighbor;
use crate::index::ivfpq::{IvfPqConfig, IvfPqIndex, SearchParams};
use crate::shard::PointId;

/// Which placement splits the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlacementKind {
    /// Consistent hashing of the ids: every query asks every shard.
    Hash,
    /// Nearest-centroid: a query asks only the `shard_probe` nearest shards.
    Centroid,
}

impl PlacementKind {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            PlacementKind::Hash => "hash",
            PlacementKind::Centroid => "centroid",
        }
    }
}

/// How to shard the base and which shard probes to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardedOptions {
    /// Number of shards.
    pub shards: u32,
    /// How points are placed.
    pub placement: PlacementKind,
    /// Shards probed per query, each measured; empty = all. Ignored by `hash` (always all).
    pub shard_probe: Vec<usize>,
    /// Clusters of the centroid placement [default: `CentroidPlacement::default_clusters`].
    pub clusters: Option<usize>,
    /// Base rows (drawn at random with the workload's seed) the centroid placement trains on.
    pub sample: usize,
}

impl ShardedOptions {
    /// Default options for `shards` shards placed by `placement`.
    pub fn new(shards: u32, placement: PlacementKind) -> Self {
        ShardedOptions {
            shards,
            placement,
            shard_probe: Vec::new(),
            clusters: None,
            sample: 100_000,
        }
    }

    /// The shard probes to measure: the flag values clamped to `1..=shards` and deduplicated
    /// in order; every shard for `hash` or when none were given.
    pub fn probes(&self) -> Vec<usize> {
        let n = self.shards as usize;
        if self.placement == PlacementKind::Hash || self.shard_probe.is_empty() {
            return vec![n];
        }
        let mut out: Vec<usize> = Vec::new();
        for p in self.shard_probe.iter().map(|&p| p.clamp(1, n)) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// A trained placement of the base.
#[derive(Debug, Clone)]
pub enum Placement {
    /// By id.
    Hash(HashRing),
    /// By vector.
    Centroid(CentroidPlacement),
}

impl Placement {
    /// Trains the placement `options` asks for on `workload` (centroid: on a random sample of
    /// the base, seeded by the workload's seed).
    pub fn train(workload: &Workload<'_>, options: &ShardedOptions) -> Result<Self, BenchError> {
        if options.shards == 0 {
            return Err(BenchError::InvalidParameter(
                "--shards must be at least 1".into(),
            ));
        }
        match options.placement {
            PlacementKind::Hash => Ok(Placement::Hash(HashRing::new(options.shards))),
            PlacementKind::Centroid => {
                let (n, dim) = (workload.n(), workload.dim());
                let take = options.sample.clamp(1, n);
                let mut rng = ChaCha8Rng::seed_from_u64(workload.seed);
                let mut rows = sample(&mut rng, n, take).into_vec();
                rows.sort_unstable();
                let mut data = Vec::with_capacity(take * dim);
                for r in rows {
                    data.extend(workload.base.row(r).iter());
                }
                let clusters = options
                    .clusters
                    .unwrap_or_else(|| CentroidPlacement::default_clusters(options.shards, take));
                CentroidPlacement::try_train(
                    &data,
                    dim,
                    workload.metric,
                    options.shards,
                    clusters,
                    workload.seed,
                )
                .map(Placement::Centroid)
                .map_err(|e| BenchError::InvalidParameter(e.to_string()))
            }
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        match self {
            Placement::Hash(r) => r.shards() as usize,
            Placement::Centroid(c) => c.shards() as usize,
        }
    }

    /// The shard of base row `row` (its id) with vector `v`.
    pub fn shard_of(&self, row: usize, v: &[f32]) -> usize {
        match self {
            Placement::Hash(r) => r.shard_of(&PointId::Num(row as u64)) as usize,
            Placement::Centroid(c) => c.shard_of(v) as usize,
        }
    }

    /// The shards a query asks: all for hash, the `shard_probe` nearest for centroid.
    pub fn probe(&self, query: &[f32], shard_probe: usize) -> Vec<usize> {
        match self {
            Placement::Hash(r) => (0..r.shards() as usize).collect(),
            Placement::Centroid(c) => c
                .probe(query, shard_probe)
                .into_iter()
                .map(|s| s as usize)
                .collect(),
        }
    }
}

/// The base rows of each shard, in row order.
pub fn split(workload: &Workload<'_>, placement: &Placement) -> Vec<Vec<usize>> {
    let mut rows = vec![Vec::new(); placement.shards()];
    for (r, v) in workload.base.rows().into_iter().enumerate() {
        let owned;
        let v: &[f32] = match v.as_slice() {
            Some(s) => s,
            None => {
                owned = v.to_vec();
                &owned
            }
        };
        rows[placement.shard_of(r, v)].push(r);
    }
    rows
}

/// One index per shard (`None` for a shard the placement left empty).
pub struct ShardedIndex {
    /// The settings every shard was built with.
    pub config: BuildConfig,
    /// The shards' indexes; ids are base row numbers.
    pub shards: Vec<Option<IvfPqIndex>>,
    /// Base vectors per shard.
    pub sizes: Vec<usize>,
    /// Wall-clock seconds of all shard builds.
    pub build_seconds: f64,
    /// Resident bytes of all shard indexes.
    pub index_bytes: u64,
}

/// Builds every shard of `rows` (from [`split`]) with `config`. A non-empty shard smaller than
/// `nlist` (or than the PQ codebook) is refused with a clear error rather than built differently.
pub fn build_sharded(
    workload: &Workload<'_>,
    rows: &[Vec<usize>],
    config: BuildConfig,
) -> Result<ShardedIndex, BenchError> {
    let dim = workload.dim();
    let mut shards = Vec::with_capacity(rows.len());
    let start = Instant::now();
    for (s, shard_rows) in rows.iter().enumerate() {
        if shard_rows.is_empty() {
            shards.push(None);
            continue;
        }
        let mut vectors = Vec::with_capacity(shard_rows.len() * dim);
        for &r in shard_rows {
            vectors.extend(workload.base.row(r).iter());
        }
        let ids: Vec<u64> = shard_rows.iter().map(|&r| r as u64).collect();
        let mut index_config =
            IvfPqConfig::new(workload.metric, config.nlist, config.pq_m, config.pq_bits);
        index_config.seed = workload.seed;
        index_config.soar_lambda = workload.soar_lambda;
        let index = IvfPqIndex::build(dim, &vectors, &ids, &index_config)
            .and_then(|i| if workload.sq8 { i.with_sq8() } else { Ok(i) })
            .map_err(|e| {
                BenchError::InvalidParameter(format!(
                    "shard {s} ({} vectors) cannot be built with nlist {}, pq_m {}, pq_bits {}: {e}",
                    shard_rows.len(),
                    config.nlist,
                    config.pq_m,
                    config.pq_bits
                ))
            })?;
        shards.push(Some(index));
    }
    let build_seconds = start.elapsed().as_secs_f64();
    let index_bytes = shards
        .iter()
        .flatten()
        .map(|i| i.memory_bytes() as u64)
        .sum();
    Ok(ShardedIndex {
        config,
        sizes: rows.iter().map(Vec::len).collect(),
        shards,
        build_seconds,
        index_bytes,
    })
}

impl ShardedIndex {
    /// The merged top-`k` of the shards `placement` probes for `query`, and how many shards
    /// were searched.
    pub fn search(
        &self,
        placement: &Placement,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        shard_probe: usize,
    ) -> (Vec<Neighbor>, usize) {
        let probed = placement.probe(query, shard_probe);
        // As the router asks hash-placed shards (`hash_shard_rerank`).
        let params = match placement {
            Placement::Hash(_) => SearchParams {
                rerank: crate::router::merge::hash_shard_rerank(params.rerank, probed.len()),
                ..*params
            },
            Placement::Centroid(_) => *params,
        };
        let mut lists = Vec::new();
        for s in probed {
            if let Some(Some(index)) = self.shards.get(s) {
                lists.push(index.search(query, k, &params, None));
            }
        }
        let touched = lists.len();
        (merge_top_k(lists, k), touched)
    }
}

/// The `k` best of several shards' answers, ordered by (distance, id) as the router orders
/// them; an id answered twice keeps its best distance.
pub fn merge_top_k(lists: Vec<Vec<Neighbor>>, k: usize) -> Vec<Neighbor> {
    let mut all: Vec<Neighbor> = lists.into_iter().flatten().collect();
    all.sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    let mut seen = std::collections::HashSet::with_capacity(k);
    all.retain(|n| seen.len() < k && seen.insert(n.id));
    all.truncate(k);
    all
}

/// Measures one (`nprobe`, `rerank`, `shard_probe`) on a sharded index over every query.
pub fn measure_sharded(
    workload: &Workload<'_>,
    placement: &Placement,
    built: &ShardedIndex,
    search: SearchConfig,
    shard_probe: usize,
    placement_seconds: f64,
) -> Result<QueryResult, BenchError> {
    let queries = workload.queries;
    let params = SearchParams {
        nprobe: search.nprobe,
        rerank: search.rerank,
    };
    let k = workload.k;
    let touched = AtomicUsize::new(0);
    let run_one = |q: &[f32]| -> Vec<u64> {
        let (hits, t) = built.search(placement, q, k, &params, shard_probe);
        touched.fetch_add(t, Ordering::Relaxed);
        hits.into_iter().map(|n| n.id).collect()
    };
    let nq = queries.nrows();
    run_queries(
        queries.slice(s![..nq.min(64), ..]),
        workload.threads,
        run_one,
    );
    touched.store(0, Ordering::Relaxed);
    let passes = workload.passes.max(1);
    let run = median_pass(passes, || run_queries(queries, workload.threads, run_one));
    let recall = recall_at_k(&run.ids, workload.groundtruth, k)?;
    let latency = LatencySummary::from_seconds(&run.latencies);
    let placement_kind = match placement {
        Placement::Hash(_) => PlacementKind::Hash,
        Placement::Centroid(_) => PlacementKind::Centroid,
    };
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
        sharding: Some(ShardingResult {
            shards: built.shards.len(),
            placement: placement_kind.name().to_string(),
            shard_probe: match placement_kind {
                PlacementKind::Hash => built.shards.len(),
                PlacementKind::Centroid => shard_probe,
            },
            shards_touched_mean: touched.load(Ordering::Relaxed) as f64 / (nq * passes) as f64,
            shard_sizes: built.sizes.clone(),
            placement_seconds,
        }),
        selectivity: None,
        ivf_flat_recall: None,
    })
}

/// The per-shard `nlist` when none is given: the usual rule applied to the mean shard size.
pub fn auto_shard_nlist(n: usize, shards: u32) -> usize {
    auto_nlist((n / shards.max(1) as usize).max(1))
}

/// Trains the placement, splits the base, then for every build of `grid` (resolved; its
/// `nlist` is per shard) builds the shards and measures every search setting at every shard
/// probe.
pub fn run_sharded_sweep(
    workload: &Workload<'_>,
    grid: &SweepGrid,
    options: &ShardedOptions,
    label: Option<String>,
) -> Result<BenchReport, BenchError> {
    let start = Instant::now();
    let placement = Placement::train(workload, options)?;
    let placement_seconds = match placement {
        Placement::Hash(_) => 0.0,
        Placement::Centroid(_) => start.elapsed().as_secs_f64(),
    };
    let rows = split(workload, &placement);
    eprintln!(
        "{} placement over {} shards ({:.2}s): shard sizes {:?}",
        options.placement.name(),
        options.shards,
        placement_seconds,
        rows.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let probes = options.probes();
    let builds = grid.builds();
    let total: usize = builds
        .iter()
        .map(|b| grid.searches(b.nlist).len() * probes.len())
        .sum();
    let multi = MultiProgress::new();
    let build_bar = bar(&multi, builds.len() as u64, "build");
    let query_bar = bar(&multi, total as u64, "search");
    build_bar.enable_steady_tick(Duration::from_millis(200));
    let mut results = Vec::with_capacity(total);
    for config in builds {
        build_bar.set_message(format!(
            "{} shards x nlist={} pq_m={} pq_bits={}",
            options.shards, config.nlist, config.pq_m, config.pq_bits
        ));
        let built = build_sharded(workload, &rows, config)?;
        build_bar.inc(1);
        for search in grid.searches(config.nlist) {
            for &p in &probes {
                query_bar.set_message(format!(
                    "nprobe={} rerank={} shard_probe={p}",
                    search.nprobe, search.rerank
                ));
                results.push(measure_sharded(
                    workload,
                    &placement,
                    &built,
                    search,
                    p,
                    placement_seconds,
                )?);
                query_bar.inc(1);
            }
        }
    }
    build_bar.finish_and_clear();
    query_bar.finish_and_clear();
    let mut out = report(workload, results, label);
    out.build_seconds += placement_seconds;
    Ok(out)
}

/// A fixed-width table of a sharded report (rows without sharding print `-`).
pub fn sharded_table(report: &BenchReport) -> String {
    let mut out = format!(
        "{} ({}): n={} dim={} metric={} k={} threads={} build={:.2}s index={}\n",
        report.dataset,
        report.series_name(),
        report.n,
        report.dim,
        report.metric,
        report.k,
        report.threads,
        report.build_seconds,
        report
            .index_bytes
            .map_or_else(|| "?".to_string(), super::report::human_bytes),
    );
    out.push_str(&format!(
        "{:>9} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>10} {:>9} {:>9}\n",
        "placement",
        "shards",
        "sprobe",
        "touched",
        "nlist",
        "nprobe",
        "rerank",
        "recall",
        "qps",
        "p50_ms",
        "p99_ms"
    ));
    for r in &report.results {
        let (placement, shards, probe, touched) = match &r.sharding {
            Some(s) => (
                s.placement.clone(),
                s.shards.to_string(),
                s.shard_probe.to_string(),
                format!("{:.2}", s.shards_touched_mean),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{:>9} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7.4} {:>10.1} {:>9.3} {:>9.3}\n",
            placement,
            shards,
            probe,
            touched,
            r.nlist.map_or_else(|| "-".to_string(), |v| v.to_string()),
            r.nprobe,
            r.rerank,
            r.recall,
            r.qps,
            r.p50_ms,
            r.p99_ms,
        ));
    }
    out
}

#[cfg(test)]
mod tests;
