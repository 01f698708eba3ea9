//! The result files of `shoal bench`, in the JSON shape `DESIGN.md` documents.
//!
//! The same shape is written by the peer scripts in `benches/peers/` (FAISS, hnswlib) with
//! `engine` set, so that one plot can compare every engine. Fields beyond the documented ones are
//! therefore optional when reading: a peer report that lacks `nlist` or `peak_rss_bytes` still
//! loads.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BenchError;

/// One benchmark run: a dataset, the index (or indexes) built on it and every search setting
/// measured.
///
/// When a sweep builds several indexes (several `nlist`/`pq_m`/`pq_bits`), the top-level build
/// fields describe the whole run (`build_seconds` is the total, `index_bytes` the largest index,
/// `nlist`/`pq_m`/`pq_bits` are `null`) and every result row carries its own index's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The dataset's name.
    pub dataset: String,
    /// Number of base vectors indexed.
    pub n: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Metric name: `l2`, `cosine` or `dot` (peers may write their own names).
    pub metric: String,
    /// Seconds spent building the index (the sum over indexes for a multi-build sweep).
    pub build_seconds: f64,
    /// Resident bytes of the index (codes, ids, centroids, tables; raw vectors excluded).
    /// `shoal bench` always writes it; a peer that cannot tell (hnswlib) writes `null`.
    #[serde(default)]
    pub index_bytes: Option<u64>,
    /// Which engine produced the numbers: `shoal`, `faiss`, `hnswlib`, ...
    #[serde(default = "default_engine")]
    pub engine: String,
    /// A free label chosen by the user (`--label`) to tell runs apart on a plot.
    #[serde(default)]
    pub label: Option<String>,
    /// Neighbours asked per query; recall is recall@k.
    #[serde(default)]
    pub k: usize,
    /// Client threads issuing queries.
    #[serde(default)]
    pub threads: usize,
    /// IVF list count when the run built a single index.
    #[serde(default)]
    pub nlist: Option<usize>,
    /// PQ sub-quantiser count when the run built a single index.
    #[serde(default)]
    pub pq_m: Option<usize>,
    /// Bits per PQ code when the run built a single index.
    #[serde(default)]
    pub pq_bits: Option<u8>,
    /// Peak resident set size of the benchmarking process (Linux `VmHWM`), if known.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Vectors per second upserted through the REST API (`shoal bench --server` only; over all
    /// builds of a sweep), so that write throughput is reported beside search throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_vectors_per_second: Option<f64>,
    /// Concurrent HTTP clients issuing queries (`shoal bench --server` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Segments of the database after the load settled (`--engine shard`, `--server
    /// --defaults`, the Qdrant peer), so that the layout the queries met is on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<usize>,
    /// Points in indexed segments after the load settled (database modes); the rest were
    /// searched exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_points: Option<usize>,
    /// Seconds from the last write until the database had indexed every point, or until it
    /// stopped building without doing so (database modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_wait_seconds: Option<f64>,
    /// Seconds from the last write until the database ran no build or merge (database modes;
    /// merges may go on after every point is indexed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_wait_seconds: Option<f64>,
    /// One row per measured search setting.
    pub results: Vec<QueryResult>,
}

fn default_engine() -> String {
    "unknown".to_string()
}

/// The measurement of one search setting over every query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Inverted lists probed per query.
    #[serde(default)]
    pub nprobe: usize,
    /// Re-ranking factor: `k * rerank` candidates re-ranked exactly, 0 = none.
    #[serde(default)]
    pub rerank: usize,
    /// Mean recall@k against exact ground truth, in `[0, 1]`.
    pub recall: f64,
    /// Queries per second: queries / wall-clock seconds over all client threads.
    pub qps: f64,
    /// Median per-query latency in milliseconds.
    #[serde(default)]
    pub p50_ms: f64,
    /// 95th-percentile per-query latency in milliseconds.
    #[serde(default)]
    pub p95_ms: f64,
    /// 99th-percentile per-query latency in milliseconds.
    #[serde(default)]
    pub p99_ms: f64,
    /// IVF list count of the index this row ran on.
    #[serde(default)]
    pub nlist: Option<usize>,
    /// PQ sub-quantiser count of the index this row ran on.
    #[serde(default)]
    pub pq_m: Option<usize>,
    /// Bits per PQ code of the index this row ran on.
    #[serde(default)]
    pub pq_bits: Option<u8>,
    /// Build seconds of the index this row ran on.
    #[serde(default)]
    pub build_seconds: Option<f64>,
    /// Resident bytes of the index this row ran on.
    #[serde(default)]
    pub index_bytes: Option<u64>,
    /// How the base was split into shards (`shoal bench --shards`); `None` for an unsharded
    /// index. Its fields sit beside the others in the row's JSON and are absent when `None`.
    /// (Being flattened, it makes serde_json buffer each row when reading, which may change a
    /// float's last digit; reports are measurements, so that is harmless.)
    #[serde(flatten)]
    pub sharding: Option<ShardingResult>,
    /// The fraction of points the row's filters let through (the stated selectivity of a
    /// filtered workload, see `bench::filters`); absent for unfiltered queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectivity: Option<f64>,
    /// Recall@k an IVF with exact lists (IVF-Flat) would reach at this `nlist` and `nprobe`:
    /// the share of the true top k lying in a probed list. It is the ceiling any re-rank can
    /// reach, and it shows how hard the data is for an inverted index (SIFT1M at IVF4096: about
    /// 0.92 at `nprobe` 16). Reported for the in-process index engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ivf_flat_recall: Option<f64>,
}

/// The sharding of one measured row (`shoal bench --shards N --placement P --shard-probe S`):
/// the base was split into `shards` IVF-PQ indexes (the row's `nlist`, `build_seconds` and
/// `index_bytes` are per shard, summed and summed), and each query searched `shard_probe` of
/// them and merged their top-k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardingResult {
    /// Number of shards the base was split into.
    pub shards: usize,
    /// The placement that split it: `hash` or `centroid`.
    pub placement: String,
    /// Shards asked per query (all of them for `hash`).
    pub shard_probe: usize,
    /// Shards actually searched per query, on average (empty shards are skipped).
    pub shards_touched_mean: f64,
    /// Base vectors per shard, so that balance can be judged.
    pub shard_sizes: Vec<usize>,
    /// Seconds spent training the placement (k-means for `centroid`, 0 for `hash`).
    pub placement_seconds: f64,
}

impl BenchReport {
    /// Reads a report written by `shoal bench` or a peer script.
    pub fn read(path: &Path) -> Result<Self, BenchError> {
        let bytes = std::fs::read(path).map_err(|e| BenchError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the report as pretty JSON, through a temporary file renamed into place so that a
    /// reader never sees half a report.
    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        crate::storage::atomic::write_atomic(path, &json)
            .map_err(|e| BenchError::io(path, std::io::Error::other(e)))
    }

    /// The name a plot gives this run: the label if set, else the engine.
    pub fn series_name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.engine.clone())
    }

    /// A fixed-width table of the results, for the terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} ({}): n={} dim={} metric={} k={} threads={} build={:.2}s index={}\n",
            self.dataset,
            self.series_name(),
            self.n,
            self.dim,
            self.metric,
            self.k,
            self.threads,
            self.build_seconds,
            self.index_bytes
                .map_or_else(|| "?".to_string(), human_bytes),
        );
        out.push_str(&format!(
            "{:>6} {:>5} {:>5} {:>6} {:>6} {:>7} {:>10} {:>9} {:>9} {:>9}\n",
            "nlist",
            "pq_m",
            "bits",
            "nprobe",
            "rerank",
            "recall",
            "qps",
            "p50_ms",
            "p95_ms",
            "p99_ms"
        ));
        if let (Some(segments), Some(indexed)) = (self.segments, self.indexed_points) {
            out.insert_str(
                out.find('\n').map_or(out.len(), |i| i + 1),
                &format!(
                    "segments={segments} indexed_points={indexed}/{} index_wait={} idle_wait={}\n",
                    self.n,
                    seconds(self.index_wait_seconds),
                    seconds(self.idle_wait_seconds)
                ),
            );
        }
        if self.results.iter().any(|r| r.selectivity.is_some()) {
            out.truncate(out.trim_end().rfind('\n').map_or(0, |i| i + 1));
            out.push_str(&self.filtered_rows());
            return out;
        }
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let ivf_flat = self.results.iter().any(|r| r.ivf_flat_recall.is_some());
        if ivf_flat {
            out.insert_str(out.len() - 1, &format!(" {:>9}", "ivf_flat"));
        }
        for r in &self.results {
            out.push_str(&format!(
                "{:>6} {:>5} {:>5} {:>6} {:>6} {:>7.4} {:>10.1} {:>9.3} {:>9.3} {:>9.3}",
                dash(r.nlist.or(self.nlist).map(|v| v.to_string())),
                dash(r.pq_m.or(self.pq_m).map(|v| v.to_string())),
                dash(r.pq_bits.or(self.pq_bits).map(|v| v.to_string())),
                r.nprobe,
                r.rerank,
                r.recall,
                r.qps,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
            ));
            if ivf_flat {
                out.push_str(&format!(
                    " {:>9}",
                    dash(r.ivf_flat_recall.map(|v| format!("{v:.4}")))
                ));
            }
            out.push('\n');
        }
        out
    }
}

impl BenchReport {
    /// The unfiltered row this filtered row compares with: the one with the same index and
    /// search settings and no filter.
    pub fn unfiltered_twin(&self, row: &QueryResult) -> Option<&QueryResult> {
        self.results.iter().find(|u| {
            u.selectivity.is_none()
                && u.nprobe == row.nprobe
                && u.rerank == row.rerank
                && u.nlist == row.nlist
                && u.pq_m == row.pq_m
                && u.pq_bits == row.pq_bits
        })
    }

    /// Header and rows of a report with filtered workloads: the selectivity and each row's QPS
    /// as a multiple of the same settings' unfiltered QPS.
    fn filtered_rows(&self) -> String {
        let mut out = format!(
            "{:>9} {:>6} {:>6} {:>7} {:>10} {:>9} {:>9} {:>9}\n",
            "filter", "nprobe", "rerank", "recall", "qps", "x_unfilt", "p50_ms", "p99_ms"
        );
        for r in &self.results {
            let ratio = match (r.selectivity, self.unfiltered_twin(r)) {
                (Some(_), Some(u)) if u.qps > 0.0 => format!("{:.2}", r.qps / u.qps),
                (None, _) => "1.00".to_string(),
                _ => "-".to_string(),
            };
            out.push_str(&format!(
                "{:>9} {:>6} {:>6} {:>7.4} {:>10.1} {:>9} {:>9.3} {:>9.3}\n",
                r.selectivity
                    .map_or_else(|| "none".to_string(), |s| format!("{:.3}%", s * 100.0)),
                r.nprobe,
                r.rerank,
                r.recall,
                r.qps,
                ratio,
                r.p50_ms,
                r.p99_ms,
            ));
        }
        out
    }
}

/// Bytes in binary units with one decimal, for tables.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1.25s`, or `?` when not measured.
fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "?".to_string(), |s| format!("{s:.2}s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BenchReport {
        BenchReport {
            dataset: "synthetic".into(),
            n: 1000,
            dim: 16,
            metric: "l2".into(),
            build_seconds: 0.5,
            index_bytes: Some(12345),
            engine: "shoal".into(),
            label: Some("m8".into()),
            k: 10,
            threads: 2,
            nlist: Some(32),
            pq_m: Some(8),
            pq_bits: Some(4),
            peak_rss_bytes: Some(1 << 20),
            ingest_vectors_per_second: None,
            concurrency: None,
            segments: None,
            indexed_points: None,
            index_wait_seconds: None,
            idle_wait_seconds: None,
            results: vec![QueryResult {
                nprobe: 4,
                rerank: 2,
                recall: 0.9,
                qps: 1000.0,
                p50_ms: 0.5,
                p95_ms: 0.8,
                p99_ms: 1.0,
                nlist: Some(32),
                pq_m: Some(8),
                pq_bits: Some(4),
                build_seconds: Some(0.5),
                index_bytes: Some(12345),
                sharding: None,
                selectivity: None,
                ivf_flat_recall: None,
            }],
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let value = serde_json::to_value(sample()).unwrap();
        let top = value.as_object().unwrap();
        for key in [
            "dataset",
            "n",
            "dim",
            "metric",
            "build_seconds",
            "index_bytes",
            "results",
            "engine",
            "label",
            "k",
            "threads",
            "nlist",
            "pq_m",
            "pq_bits",
            "peak_rss_bytes",
        ] {
            assert!(top.contains_key(key), "missing top-level key {key}");
        }
        assert_eq!(top["metric"], "l2");
        assert_eq!(top["engine"], "shoal");
        let row = value["results"][0].as_object().unwrap();
        for key in [
            "nprobe", "rerank", "recall", "qps", "p50_ms", "p95_ms", "p99_ms",
        ] {
            assert!(row.contains_key(key), "missing result key {key}");
        }
        assert_eq!(row["nprobe"], 4);
        assert_eq!(row["recall"], 0.9);
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        sample().write(&path).unwrap();
        assert_eq!(BenchReport::read(&path).unwrap(), sample());
        assert!(!dir.path().join("r.json.tmp").exists());
    }

    #[test]
    fn a_minimal_peer_report_loads() {
        let json = r#"{"dataset":"sift","n":10,"dim":4,"metric":"euclidean","build_seconds":1.0,
            "index_bytes":null,"engine":"hnswlib","hnsw_m":16,
            "results":[{"recall":0.5,"qps":10.0,"ef":32}]}"#;
        let report: BenchReport = serde_json::from_str(json).unwrap();
        assert_eq!(report.engine, "hnswlib");
        assert_eq!(report.series_name(), "hnswlib");
        assert_eq!(report.results[0].nprobe, 0);
        assert!(report.nlist.is_none() && report.index_bytes.is_none());
    }

    #[test]
    fn a_report_without_results_is_refused() {
        let json =
            r#"{"dataset":"x","n":1,"dim":1,"metric":"l2","build_seconds":0,"index_bytes":0}"#;
        assert!(serde_json::from_str::<BenchReport>(json).is_err());
    }

    #[test]
    fn table_lists_every_row() {
        let table = sample().table();
        assert_eq!(table.lines().count(), 3);
        assert!(table.contains("0.9000"));
        assert_eq!(human_bytes(12345), "12.1 KiB");
        assert_eq!(human_bytes(10), "10 B");
    }
}
