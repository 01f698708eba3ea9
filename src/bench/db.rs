//! `shoal bench --engine shard`: shoal's shard engine in process, used the way the database uses
//! it, so that it can be compared with another whole database (Qdrant's engine, in
//! `benches/peers/`) without HTTP or Raft in the way.
//!
//! - **Writes** go through the shard's write path: the base is cut into batches, each batch is
//!   one [`ShardCommand::UpsertAt`] (what the router sends for an upsert request), checked with
//!   [`Shard::validate`] as the collection does before logging it, encoded to its log bytes,
//!   decoded and [applied](Shard::apply) at the next log index, as the Raft state machine does.
//!   The shard is opened on a data directory ([`Shard::open`]) as a server replica is, so sealed
//!   segments are written to files and mapped back. Sealing, merging and whatever else the engine
//!   does on its own happen as they would in the server.
//! - **Settling**: after the last write the bench waits until every point is in an indexed
//!   segment and no build or compaction runs, or until `settle` has passed with the engine idle
//!   and points still unindexed (those are then searched exactly, and the report says so).
//! - **Queries** go through [`Shard::search_tuned`] with the collection's search defaults
//!   ([`default_request`], [`default_tuning`]: each sealed segment's calibration at the recall
//!   target unless `nprobe`/`rerank` are fixed), one query per call; with filters, each query carries its own
//!   compiled filter ([`super::filters`]).
//!
//! The collection defaults (`seal_threshold`, `nlist`, `pq_bits`, `nprobe`, `rerank`,
//! `recall_target`) are the server's own [`IndexDefaults`]; flags override them
//! ([`ShardDefaults`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::s;

use super::engine::Workload;
use super::filters::{FilteredWorkload, Selectivity, filtered_recall, payload};
use super::measure::{LatencySummary, median_pass, recall_at_k, run_queries_indexed};
use super::report::BenchReport;
use super::run::report;
use super::{BenchError, QueryResult};
use crate::collection::IndexDefaults;
use crate::collection::config::{UNCALIBRATED_NPROBE, UNCALIBRATED_RERANK};
use crate::index::ivfpq::IvfPqConfig;
use crate::shard::{
    CompactionConfig, CompiledFilter, Filter, PayloadFieldType, PointId, PointWrite, SearchRequest,
    Shard, ShardCommand, ShardConfig, ShardStats, Tuning,
};

/// The collection defaults a database created with only `size` and `distance` gets: the
/// server's own [`IndexDefaults`] (what `shoal serve` uses without flags), and the PQ sub-spaces
/// the server derives from the dimension unless `pq_m` fixes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardDefaults {
    /// `nlist`, `pq_bits`, `seal_threshold`, fixed `nprobe`/`rerank`, `recall_target`.
    pub index: IndexDefaults,
    /// PQ sub-spaces; `None` = the 4-bit fast-scan default for the dimension.
    pub pq_m: Option<usize>,
}

/// How `--engine shard` loads and waits.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The collection defaults.
    pub defaults: ShardDefaults,
    /// Points per upsert command.
    pub batch_size: usize,
    /// Longest wait, after the last write, for the engine to index every point.
    pub settle: Duration,
    /// Filtered workloads to measure after the unfiltered one.
    pub filters: Vec<Selectivity>,
    /// Create an integer payload index per filtered field before the load (`false`:
    /// `--no-payload-index`, every filter read without one).
    pub payload_indexes: bool,
}

/// The shard's shape for `workload` under `defaults`, as the server derives it from a
/// collection created with only `size` and `distance`.
pub fn shard_config(
    workload: &Workload<'_>,
    defaults: &ShardDefaults,
) -> Result<ShardConfig, BenchError> {
    let dim = workload.dim();
    let pq_m = match (defaults.pq_m, defaults.index.pq_bits) {
        (Some(m), _) => m,
        (None, 4) => IvfPqConfig::fastscan_pq_m(dim),
        (None, bits) => {
            return Err(BenchError::InvalidParameter(format!(
                "--shard-pq-bits {bits} needs --shard-pq-m (only the 4-bit default is known here)"
            )));
        }
    };
    if defaults.index.pq_bits != 4 && defaults.index.pq_bits != 8 {
        return Err(BenchError::InvalidParameter(format!(
            "--shard-pq-bits {}: use 4 or 8",
            defaults.index.pq_bits
        )));
    }
    if pq_m == 0 || !dim.is_multiple_of(pq_m) {
        return Err(BenchError::InvalidParameter(format!(
            "PQ sub-spaces {pq_m} must divide the dimension {dim}"
        )));
    }
    if defaults.index.nlist == 0 || defaults.index.nprobe == Some(0) {
        return Err(BenchError::InvalidParameter(
            "--shard-nlist and --shard-nprobe must be at least 1".into(),
        ));
    }
    Ok(ShardConfig {
        dim,
        metric: workload.metric,
        seal_threshold: defaults.index.seal_threshold,
        nlist: defaults.index.nlist,
        pq_m,
        pq_bits: defaults.index.pq_bits,
        seed: workload.seed,
        compaction: CompactionConfig::default(),
    })
}

/// What a query without params fixes and aims for, as the router resolves it: the collection's
/// fixed `nprobe`/`rerank` if any, else each segment's calibration at the recall target.
pub fn default_tuning(defaults: &ShardDefaults) -> Tuning {
    Tuning {
        nprobe: defaults.index.nprobe.map(|n| n.min(defaults.index.nlist)),
        rerank: defaults.index.rerank,
        recall_target: Some(defaults.index.recall_target),
    }
}

/// The search a query without params becomes: `limit` nearest, no payload or vector returned;
/// its `nprobe`/`rerank` serve segments without calibration ([`default_tuning`] decides the
/// rest). The one place the bench decides what "no params" means.
pub fn default_request<'a>(
    vector: &'a [f32],
    limit: usize,
    filter: Option<&'a CompiledFilter>,
    defaults: &ShardDefaults,
) -> SearchRequest<'a> {
    SearchRequest {
        vector,
        limit,
        offset: 0,
        filter,
        nprobe: defaults
            .index
            .nprobe
            .unwrap_or(UNCALIBRATED_NPROBE)
            .min(defaults.index.nlist),
        rerank: defaults.index.rerank.unwrap_or(UNCALIBRATED_RERANK),
        exact: false,
        with_payload: false,
        with_vector: false,
    }
}

/// A directory for the shard's segment files, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, BenchError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("shoal-bench-shard-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| BenchError::io(&path, e))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the base into `shard` (row `i` as point id `i`, with the filtered workloads' payload
/// fields when there are any) in batches of `batch_size`, each applied as the server's state
/// machine applies a logged upsert. Returns the seconds the writes took.
pub fn load(
    shard: &Shard,
    workload: &Workload<'_>,
    filters: &[Selectivity],
    batch_size: usize,
    payload_indexes: bool,
) -> Result<f64, BenchError> {
    if batch_size == 0 {
        return Err(BenchError::InvalidParameter(
            "--batch-size must be at least 1".into(),
        ));
    }
    let n = workload.n();
    let start = Instant::now();
    // One integer payload index per filtered field, created before the load as Qdrant's
    // documentation advises (and as the Qdrant peer does).
    let mut index = 0u64;
    let mut log = |command: ShardCommand| -> Result<(), BenchError> {
        index += 1;
        shard.validate(&command)?;
        let logged = ShardCommand::decode(&command.encode())
            .map_err(|e| BenchError::InvalidParameter(format!("log round trip: {e}")))?;
        shard.apply(index, &logged)?;
        Ok(())
    };
    for s in filters.iter().filter(|_| payload_indexes) {
        log(ShardCommand::CreateFieldIndex {
            field: s.field(),
            field_type: PayloadFieldType::Integer,
        })?;
    }
    for (b, first) in (0..n).step_by(batch_size).enumerate() {
        let end = (first + batch_size).min(n);
        let points = (first..end)
            .map(|row| PointWrite {
                id: PointId::Num(row as u64),
                vector: workload.base.row(row).to_vec(),
                payload: (!filters.is_empty()).then(|| payload(row as u64, filters)),
            })
            .collect();
        log(ShardCommand::UpsertAt {
            points,
            version: b as u64 + 1,
        })?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// How the engine settled after the last write: when every point was first in an indexed
/// segment (merges may still have been running then), when it went idle, and its counters then.
#[derive(Debug, Clone)]
pub struct Settled {
    /// Seconds until every point was in an indexed segment (`None`: not within `settle`).
    pub indexed_after: Option<f64>,
    /// Seconds until no build or compaction ran (with every point indexed, or `settle` passed).
    pub idle_after: f64,
    /// The engine's counters at the end.
    pub stats: ShardStats,
}

/// Waits until `shard` has indexed every point with no build or compaction running, or until
/// `settle` has passed since the call with points still unindexed, printing its progress every
/// few seconds. Records when every point was first indexed: what a user waits for before every
/// query meets an index (merges after that only change how many segments a query visits).
pub fn settle(shard: &Shard, settle: Duration) -> Settled {
    let start = Instant::now();
    let mut indexed_after = None;
    let mut shown = Instant::now();
    loop {
        let stats = shard.stats();
        let idle = stats.building == 0 && stats.compacting == 0;
        if indexed_after.is_none() && stats.indexed_points >= stats.points {
            indexed_after = Some(start.elapsed().as_secs_f64());
        }
        if idle && (stats.indexed_points >= stats.points || start.elapsed() >= settle) {
            return Settled {
                indexed_after,
                idle_after: start.elapsed().as_secs_f64(),
                stats,
            };
        }
        if shown.elapsed() >= SETTLE_PROGRESS_EVERY {
            shown = Instant::now();
            eprintln!(
                "  {:.0}s after the last write: {}/{} points indexed, {} segments, {} builds and \
                 {} merges running",
                start.elapsed().as_secs_f64(),
                stats.indexed_points,
                stats.points,
                stats.segments,
                stats.building,
                stats.compacting
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How often [`settle`] reports its progress.
const SETTLE_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs every query once through [`Shard::search`] with [`default_request`] (each with its
/// filter when `filtered` is given) after a short untimed warm-up (with a filter, a whole
/// untimed pass and the regrouping it asked for), and summarises it.
fn measure(
    shard: &Shard,
    workload: &Workload<'_>,
    config: &ShardConfig,
    defaults: &ShardDefaults,
    filtered: Option<&FilteredWorkload>,
) -> Result<QueryResult, BenchError> {
    let k = workload.k;
    let nq = workload.queries.nrows();
    // One compiled filter per bucket the queries ask (query q asks bucket q % buckets).
    let compiled: Vec<CompiledFilter> = match filtered {
        Some(f) => (0..nq.min(f.selectivity.buckets as usize))
            .map(|q| {
                serde_json::from_value::<Filter>(f.selectivity.filter_json(q))
                    .map_err(|e| BenchError::InvalidParameter(format!("filter: {e}")))
                    .and_then(|filter| filter.compile().map_err(|e| BenchError::Shard(e.into())))
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let tuning = default_tuning(defaults);
    let first_error = Mutex::new(None::<BenchError>);
    let run_one = |_: &mut (), q: usize, vector: &[f32]| -> Vec<u64> {
        let filter = filtered.map(|f| &compiled[f.selectivity.value_for_query(q) as usize]);
        match shard.search_tuned(&default_request(vector, k, filter, defaults), &tuning) {
            Ok(hits) => hits
                .iter()
                .map(|h| match h.record.id {
                    PointId::Num(id) => id,
                    PointId::Uuid(_) => u64::MAX,
                })
                .collect(),
            Err(e) => {
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e.into());
                Vec::new()
            }
        }
    };
    let warm = workload.queries.slice(s![..nq.min(64), ..]);
    run_queries_indexed(warm, workload.threads, || (), run_one);
    if filtered.is_some() {
        // Every query once more untimed, so that each value a filter asks for has been
        // regrouped on the build pool where its plan wants it (as in a server that has seen
        // these filters before), and no regrouping competes with the timed passes.
        run_queries_indexed(workload.queries, workload.threads, || (), run_one);
        shard.wait_for_regrouping();
    }
    let run = median_pass(workload.passes, || {
        run_queries_indexed(workload.queries, workload.threads, || (), run_one)
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let recall = match filtered {
        Some(f) => filtered_recall(&run.ids, f.groundtruth.view(), k)?,
        None => recall_at_k(&run.ids, workload.groundtruth, k)?,
    };
    let latency = LatencySummary::from_seconds(&run.latencies);
    // Reported: what the largest segment searches with (the calibrated choice, or the fixed
    // value), since every segment may choose differently.
    let fallback = default_request(&[], k, None, defaults);
    let largest = shard.calibrations().into_iter().max_by_key(|c| c.rows);
    let chosen = largest.and_then(|c| c.at(defaults.index.recall_target));
    Ok(QueryResult {
        nprobe: tuning
            .nprobe
            .or(chosen.map(|p| p.nprobe))
            .unwrap_or(fallback.nprobe),
        rerank: tuning
            .rerank
            .or(chosen.map(|p| p.rerank))
            .unwrap_or(fallback.rerank),
        recall,
        qps: run.qps(),
        p50_ms: latency.p50_ms,
        p95_ms: latency.p95_ms,
        p99_ms: latency.p99_ms,
        nlist: Some(config.nlist),
        pq_m: Some(config.pq_m),
        pq_bits: Some(config.pq_bits),
        build_seconds: None,
        index_bytes: None,
        sharding: None,
        selectivity: filtered.map(|f| f.selectivity.fraction()),
        ivf_flat_recall: None,
    })
}

/// Exact filtered ground truth for every selectivity, computed before the database is built so
/// that the brute force does not share the machine with index builds.
pub fn filtered_workloads(
    workload: &Workload<'_>,
    filters: &[Selectivity],
) -> Result<Vec<FilteredWorkload>, BenchError> {
    filters
        .iter()
        .map(|&s| {
            let f = FilteredWorkload::new(
                s,
                workload.base,
                workload.queries,
                workload.k,
                workload.metric,
            )?;
            eprintln!(
                "filter {}: {:.4}% of the points pass on average (stated {:.4}%)",
                s.field(),
                f.matching_fraction * 100.0,
                s.fraction() * 100.0
            );
            Ok(f)
        })
        .collect()
}

/// Loads the base into a fresh shard as the database would, waits for it to settle, and
/// measures the queries without params: unfiltered, then under each filter. The report has
/// `engine` = `shoal-shard` and one row per workload (`selectivity` set on filtered rows).
pub fn run_shard_db(
    workload: &Workload<'_>,
    options: &DbOptions,
    label: Option<String>,
) -> Result<BenchReport, BenchError> {
    let config = shard_config(workload, &options.defaults)?;
    let filtered = filtered_workloads(workload, &options.filters)?;
    let dir = ScratchDir::new()?;
    let shard = Shard::open(config.clone(), &dir.0)?;
    let start = Instant::now();
    let ingest_seconds = load(
        &shard,
        workload,
        &options.filters,
        options.batch_size,
        options.payload_indexes,
    )?;
    let settled = settle(&shard, options.settle);
    let (waited, stats) = (settled.idle_after, settled.stats);
    let build_seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "loaded {} points in {ingest_seconds:.2}s; every point indexed {} later, idle {waited:.2}s \
         later: {} segments, {} points indexed",
        workload.n(),
        settled
            .indexed_after
            .map_or_else(|| "not".to_string(), |s| format!("{s:.2}s")),
        stats.segments,
        stats.indexed_points
    );
    let mut results = vec![measure(&shard, workload, &config, &options.defaults, None)?];
    for f in &filtered {
        results.push(measure(
            &shard,
            workload,
            &config,
            &options.defaults,
            Some(f),
        )?);
    }
    let mut out = report(workload, results, label);
    out.engine = "shoal-shard".to_string();
    out.build_seconds = build_seconds;
    out.index_bytes = None;
    out.nlist = Some(config.nlist);
    out.pq_m = Some(config.pq_m);
    out.pq_bits = Some(config.pq_bits);
    out.ingest_vectors_per_second =
        (ingest_seconds > 0.0).then(|| workload.n() as f64 / ingest_seconds);
    out.segments = Some(stats.segments);
    out.indexed_points = Some(stats.indexed_points);
    out.index_wait_seconds = settled.indexed_after.or(Some(waited));
    out.idle_wait_seconds = Some(waited);
    drop(shard);
    drop(dir);
    Ok(out)
}
