//! Prometheus metrics in the text exposition format, kept by hand (no registry crate): request
//! counts, error counts and latency histograms per route, and per collection the points,
//! segments, indexed segments and index builds in progress.

use crate::process::cpu_seconds as process_cpu_seconds;
use crate::shard::ShardStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// A per-collection gauge: name, help text, and how to read it from the shard's stats.
type Gauge = (&'static str, &'static str, fn(&ShardStats) -> usize);

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct RouteStats {
    requests: u64,
    errors: u64,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
}

/// Request statistics per method, then per route.
#[derive(Debug, Default)]
pub struct Metrics {
    // Nested by method so that a request finds its entry by `&str` without allocating a key;
    // only the first request of a (method, route) inserts one.
    routes: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
}

impl Metrics {
    /// Records one answered request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if !routes.contains_key(method) {
            routes.insert(method.to_owned(), BTreeMap::new());
        }
        let Some(by_route) = routes.get_mut(method) else {
            return;
        };
        if !by_route.contains_key(route) {
            by_route.insert(route.to_owned(), RouteStats::default());
        }
        let Some(s) = by_route.get_mut(route) else {
            return;
        };
        s.requests += 1;
        if status >= 400 {
            s.errors += 1;
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                s.buckets[i] += 1;
            }
        }
        s.sum += seconds;
    }

    /// The exposition text; `collections` holds, per collection, the stats of this node's
    /// replicas of its shards (each gauge is their sum).
    pub fn render(&self, collections: &BTreeMap<String, Vec<ShardStats>>) -> String {
        let mut out = String::new();
        let routes: Vec<((String, String), RouteStats)> = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|(m, by_route)| {
                by_route
                    .iter()
                    .map(move |(r, s)| ((m.clone(), r.clone()), s.clone()))
            })
            .collect();
        let _ = writeln!(
            out,
            "# HELP shoal_http_requests_total HTTP requests answered.\n# TYPE shoal_http_requests_total counter"
        );
        for ((m, r), s) in &routes {
            let _ = writeln!(
                out,
                "shoal_http_requests_total{{method=\"{m}\",route=\"{r}\"}} {}",
                s.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP shoal_http_errors_total HTTP requests answered with a 4xx or 5xx.\n# TYPE shoal_http_errors_total counter"
        );
        for ((m, r), s) in &routes {
            let _ = writeln!(
                out,
                "shoal_http_errors_total{{method=\"{m}\",route=\"{r}\"}} {}",
                s.errors
            );
        }
        let _ = writeln!(
            out,
            "# HELP shoal_http_request_duration_seconds Request latency.\n# TYPE shoal_http_request_duration_seconds histogram"
        );
        for ((m, r), s) in &routes {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "shoal_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "shoal_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"+Inf\"}} {}",
                s.requests
            );
            let _ = writeln!(
                out,
                "shoal_http_request_duration_seconds_sum{{method=\"{m}\",route=\"{r}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "shoal_http_request_duration_seconds_count{{method=\"{m}\",route=\"{r}\"}} {}",
                s.requests
            );
        }
        if let Some(cpu) = process_cpu_seconds() {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total User and system CPU time of the server process.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
            );
        }
        let gauges: [Gauge; 10] = [
            ("shoal_collection_points", "Live points.", |s| s.points),
            (
                "shoal_collection_segments",
                "Segments, mutable one included.",
                |s| s.segments,
            ),
            (
                "shoal_collection_indexed_segments",
                "Segments with a built IVF-PQ index.",
                |s| s.indexed_segments,
            ),
            (
                "shoal_collection_index_builds_running",
                "IVF-PQ builds in progress.",
                |s| s.building,
            ),
            (
                "shoal_collection_deleted_rows",
                "Deleted rows still stored, until a compaction drops them.",
                |s| s.deleted_rows,
            ),
            (
                "shoal_collection_compactions_running",
                "Segment compactions in progress.",
                |s| s.compacting,
            ),
            (
                "shoal_collection_compacting_rows",
                "Rows the running compactions are rewriting.",
                |s| s.compacting_rows,
            ),
            (
                "shoal_collection_compactions",
                "Compactions finished since the collection was loaded.",
                |s| s.compactions as usize,
            ),
            (
                "shoal_collection_filter_subset_bytes",
                "Bytes of indexed values' codes regrouped for filtered searches.",
                |s| s.filter_subset_bytes,
            ),
            (
                "shoal_collection_filter_subsets_being_made",
                "Regroupings of indexed values' codes queued or running.",
                |s| s.filter_subsets_being_made,
            ),
        ];
        for (name, help, f) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (c, shards) in collections {
                let v: usize = shards.iter().map(f).sum();
                let _ = writeln!(out, "{name}{{collection=\"{c}\"}} {v}");
            }
        }
        out
    }
}
