//! The REST engine of `shoal bench --server URL`: the same sweep as in process, but measured
//! through a running server, so that the numbers include HTTP, JSON, the Raft write path and the
//! shard's segment layout.
//!
//! Per (`nlist`, `pq_m`, `pq_bits`) it creates a collection whose seal threshold is the size of
//! the base, upserts the base in batches (ids = row numbers), which seals the whole base into one
//! IVF-PQ segment when the last row arrives, waits until the server reports the build finished
//! (collection `status` back to `green`), and then runs every (`nprobe`, `rerank`) with one query
//! per `POST /points/query` from `concurrency` client threads, each with its own keep-alive
//! connection. The collection is deleted afterwards unless asked to keep it.

use std::io::Read;
use std::time::{Duration, Instant};

use indicatif::MultiProgress;
use ndarray::s;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::engine::Workload;
use super::filters::{FilteredWorkload, Selectivity, filtered_recall, payload};
use super::measure::{LatencySummary, median_pass, recall_at_k, run_queries_indexed};
use super::run::{bar, report};
use super::sweep::{BuildConfig, SearchConfig, SweepGrid};
use super::{BenchError, BenchReport, QueryResult};
use crate::index::Metric;

/// How to reach and use the server under test.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Base URL, e.g. `http://127.0.0.1:6333` (a trailing `/` is ignored).
    pub url: String,
    /// Concurrent query clients.
    pub concurrency: usize,
    /// Points per upsert request.
    pub batch_size: usize,
    /// Concurrent upsert clients, each with its own connection (what a loader would use: one
    /// client waits on each batch's durable write while the others send theirs).
    pub ingest_concurrency: usize,
    /// Collection name; `None` = `shoal-bench-<dataset>-<nlist>-<pq_m>-<pq_bits>`. With several
    /// builds in a sweep, a given name gets the build settings appended.
    pub collection: Option<String>,
    /// Keep the collections instead of deleting them after measuring.
    pub keep: bool,
    /// Longest wait for the server's index builds after the last upsert.
    pub index_timeout: Duration,
    /// API key sent as `api-key` when the server requires one.
    pub api_key: Option<ApiKey>,
    /// Shards of each collection (`shard_number`, hash placement). With more than one, ids are
    /// chosen so that every shard holds the same number of points and seals them into one
    /// IVF-PQ segment, as the single-shard collection does (see [`balanced_ids`]).
    pub shards: u32,
    /// Queries per request: 1 = `POST /points/query` per query; more = that many per
    /// `POST /points/query/batch`, which spreads one request's HTTP and JSON cost over them.
    pub query_batch: usize,
    /// Longest wait, once the server reports no build running, for it to index every point
    /// (`--defaults`: the collection's own sealing decides when the tail is indexed).
    pub settle: Duration,
    /// Create an integer payload index per filtered field before the load (`false`:
    /// `--no-payload-index`, every filter read without one).
    pub payload_indexes: bool,
}

/// Point ids for `n` rows such that the server's hash ring puts the same number of them
/// (±1) in each of `shards` shards: candidate ids 0, 1, 2, … go, in order, to the next row while
/// their shard still has room. The ring spreads ids only roughly evenly (±6% with 256 virtual
/// nodes), and a shard holding fewer points than the seal threshold would keep them in a flat
/// segment searched exactly, so with row-number ids the sharded collection would be measured
/// on a different segment layout than the single-shard one.
fn balanced_ids(n: usize, shards: u32) -> Vec<u64> {
    if shards <= 1 {
        return (0..n as u64).collect();
    }
    let ring = crate::cluster::placement::HashRing::new(shards);
    let quota = |s: usize| n / shards as usize + usize::from(s < n % shards as usize);
    let mut held = vec![0usize; shards as usize];
    let mut ids = Vec::with_capacity(n);
    let mut candidate = 0u64;
    while ids.len() < n {
        let s = ring.shard_of(&crate::shard::PointId::Num(candidate)) as usize;
        if held[s] < quota(s) {
            held[s] += 1;
            ids.push(candidate);
        }
        candidate += 1;
    }
    ids
}

/// The server's API key as the bench is given it: `Debug` prints `"***"`, so printed options
/// never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiKey(s.to_owned()))
    }
}

/// A blocking HTTP client for one base URL. Each query thread makes its own, so that every
/// client keeps its own connection alive, as separate client processes would.
#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    base: String,
    api_key: Option<String>,
}

/// How long a request answered 503 with `Retry-After` is retried, in all.
const RETRY_503_FOR: Duration = Duration::from_secs(60);
/// The longest single wait between those retries, whatever `Retry-After` says.
const RETRY_503_WAIT: Duration = Duration::from_secs(5);

impl Client {
    fn new(url: &str, api_key: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(600)))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            base: url.trim_end_matches('/').to_string(),
            api_key,
        }
    }

    /// One request; returns the body of a 2xx answer, or the status and body as an error.
    fn call_bytes(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, BenchError> {
        let err = |message: String| BenchError::Server {
            url: url.to_string(),
            message,
        };
        // A node that is starting, or a group electing a leader, answers 503 with Retry-After:
        // wait as told (at most `RETRY_503_WAIT` a time) for up to `RETRY_503_FOR` in all.
        let started = std::time::Instant::now();
        loop {
            let (status, retry_after, bytes) = self.send(method, url, body).map_err(err)?;
            match retry_after {
                Some(wait) if status == 503 && started.elapsed() < RETRY_503_FOR => {
                    std::thread::sleep(wait.min(RETRY_503_WAIT));
                }
                _ if !(200..300).contains(&status) => {
                    let mut shown = String::from_utf8_lossy(&bytes).trim().to_string();
                    shown.truncate(500);
                    return Err(err(format!("HTTP {status}: {shown}")));
                }
                _ => return Ok(bytes),
            }
        }
    }

    /// Sends one request: the status, the `Retry-After` of the answer if any, and its body.
    fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Option<Duration>, Vec<u8>), String> {
        let with_key = |req: ureq::RequestBuilder<ureq::typestate::WithBody>| match &self.api_key {
            Some(k) => req.header("api-key", k),
            None => req,
        };
        let response = match (method, body) {
            ("GET", _) => {
                let mut req = self.agent.get(url);
                if let Some(k) = &self.api_key {
                    req = req.header("api-key", k);
                }
                req.call()
            }
            ("DELETE", _) => {
                let mut req = self.agent.delete(url);
                if let Some(k) = &self.api_key {
                    req = req.header("api-key", k);
                }
                req.call()
            }
            ("PUT", body) => with_key(self.agent.put(url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_default()),
            (_, body) => with_key(self.agent.post(url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_default()),
        }
        .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, retry_after, bytes))
    }

    /// One request; returns the `result` of a 2xx answer, or the status and body as an error.
    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value, BenchError> {
        let url = format!("{}{}", self.base, path);
        let bytes = self.call_bytes(method, &url, body.as_deref())?;
        let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| BenchError::Server {
            url: url.clone(),
            message: format!(
                "answer is not JSON ({e}): {:.200}",
                String::from_utf8_lossy(&bytes)
            ),
        })?;
        Ok(value
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }
}

/// A query as the bench sends it: the vector's components written as the shortest decimals
/// that read back to the same `f32` (a `serde_json::Value` would widen them to `f64` and
/// print about twice the digits, for the client to format and the server to parse).
#[derive(Serialize)]
struct QueryBody<'a> {
    query: &'a [f32],
    limit: usize,
    /// Absent for a query "without params", as a user sends it (`--defaults`).
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<QueryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a Value>,
}

#[derive(Serialize, Clone, Copy)]
struct QueryParams {
    nprobe: usize,
    rerank: usize,
}

/// A batch of queries as `POST /points/query/batch` reads it.
#[derive(Serialize)]
struct BatchQueryBody<'a> {
    searches: Vec<QueryBody<'a>>,
}

/// The part of a batch answer the bench reads: per query, the ids in order.
#[derive(serde::Deserialize)]
struct BatchAnswer {
    result: Vec<QueryPoints>,
}

/// The part of a query answer the bench reads: the ids, in order (scores and the rest of the
/// envelope are skipped by the parser without being built).
#[derive(serde::Deserialize)]
struct QueryAnswer {
    result: QueryPoints,
}

#[derive(serde::Deserialize)]
struct QueryPoints {
    points: Vec<QueryHit>,
}

#[derive(serde::Deserialize)]
struct QueryHit {
    id: u64,
}

/// The server's `process_cpu_seconds_total` from `/metrics` (`None` if it reports none).
fn server_cpu_seconds(client: &Client) -> Option<f64> {
    let url = format!("{}/metrics", client.base);
    let text = client.call_bytes("GET", &url, None).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the server's `/metrics` reports no regrouping of `name`'s indexed values queued
/// or running (`shoal_collection_filter_subsets_being_made`), or `limit` passes: `Some(true)`
/// once none is, `Some(false)` at the limit, `None` when the server reports no such gauge.
fn wait_for_regrouping(client: &Client, name: &str, limit: Duration) -> Option<bool> {
    let url = format!("{}/metrics", client.base);
    let prefix = format!("shoal_collection_filter_subsets_being_made{{collection=\"{name}\"}} ");
    let started = Instant::now();
    loop {
        let text = client.call_bytes("GET", &url, None).ok()?;
        let running: usize = String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))?
            .trim()
            .parse()
            .ok()?;
        if running == 0 {
            return Some(true);
        }
        if started.elapsed() >= limit {
            return Some(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Qdrant's distance name for a metric.
fn distance_name(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "Euclid",
        Metric::Cosine => "Cosine",
        Metric::Dot => "Dot",
    }
}

/// A collection name the server accepts (`A-Z a-z 0-9 _ -`, at most 255 characters).
fn collection_name(dataset: &str, given: Option<&str>, config: BuildConfig, many: bool) -> String {
    let suffix = format!("{}-{}-{}", config.nlist, config.pq_m, config.pq_bits);
    let raw = match given {
        Some(name) if many => format!("{name}-{suffix}"),
        Some(name) => name.to_string(),
        None => format!("shoal-bench-{dataset}-{suffix}"),
    };
    valid_name(&raw)
}

/// `raw` with every character the server refuses in a collection name replaced by `-`, cut to
/// 255 characters.
fn valid_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(255);
    name
}

#[derive(Serialize)]
struct BatchBody<'a> {
    batch: BatchColumns<'a>,
}

#[derive(Serialize)]
struct BatchColumns<'a> {
    ids: Vec<u64>,
    vectors: Vec<&'a [f32]>,
    /// The filtered workloads' payload fields, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    payloads: Option<Vec<crate::shard::Payload>>,
}

/// A collection on the server, deleted when dropped unless it is to be kept (so that a failed
/// run does not leave a large collection behind).
struct Remote<'c> {
    client: &'c Client,
    name: String,
    keep: bool,
}

impl Drop for Remote<'_> {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept collection {}", self.name);
        } else if let Err(e) =
            self.client
                .call("DELETE", &format!("/collections/{}", self.name), None)
        {
            eprintln!("warning: could not delete collection {}: {e}", self.name);
        }
    }
}

/// What building one collection through the API cost.
struct Ingested {
    ingest_seconds: f64,
    /// Seconds from the first write until the server reported no build running.
    build_seconds: f64,
    /// Seconds from the first write until every point was first reported indexed, if that
    /// happened before the builds stopped.
    indexed_seconds: Option<f64>,
}

/// Creates the collection with the build settings; an existing collection is refused (never
/// overwritten: the name may be someone's data).
fn create(
    client: &Client,
    workload: &Workload<'_>,
    name: &str,
    config: BuildConfig,
    shards: u32,
) -> Result<(), BenchError> {
    let create = json!({
        "vectors": {"size": workload.dim(), "distance": distance_name(workload.metric)},
        "shard_number": shards,
        "ivf_pq_config": {
            "nlist": config.nlist,
            "pq_m": config.pq_m,
            "pq_bits": config.pq_bits,
            // The mutable segment seals when it holds the shard's whole part of the base (the
            // ids are balanced): one IVF-PQ segment per shard, as the in-process engine builds.
            "seal_threshold": workload.n() / shards.max(1) as usize,
        },
    });
    client
        .call(
            "PUT",
            &format!("/collections/{name}"),
            Some(create.to_string().into_bytes()),
        )
        .map_err(|e| match e {
            BenchError::Server { url, message } if message.starts_with("HTTP 409") => {
                BenchError::Server {
                    url,
                    message: format!(
                        "{message}; delete it or choose another name with --collection"
                    ),
                }
            }
            e => e,
        })?;
    Ok(())
}

/// Upserts the base (row `i` under id `ids[i]`) and waits for the server's index builds.
#[allow(clippy::too_many_arguments)]
fn fill(
    client: &Client,
    workload: &Workload<'_>,
    name: &str,
    config: Option<BuildConfig>,
    options: &RemoteOptions,
    ids: &[u64],
    filters: &[Selectivity],
    multi: &MultiProgress,
) -> Result<Ingested, BenchError> {
    let n = workload.n();
    let base = workload.base.as_standard_layout();
    let dim = workload.dim();
    let flat = base
        .as_slice()
        .ok_or_else(|| BenchError::InvalidParameter("base vectors are not contiguous".into()))?;
    let pb = bar(multi, n as u64, "upsert");
    let path = format!("/collections/{name}/points?wait=true");
    let batches = n.div_ceil(options.batch_size);
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    // Each ingest client takes the next batch until none is left; batches hold distinct ids,
    // so the order in which they land does not matter.
    let upload = |client: &Client| -> Result<(), BenchError> {
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= batches {
                return Ok(());
            }
            let row = b * options.batch_size;
            let end = (row + options.batch_size).min(n);
            let body = BatchBody {
                batch: BatchColumns {
                    ids: ids[row..end].to_vec(),
                    vectors: flat[row * dim..end * dim].chunks_exact(dim).collect(),
                    payloads: (!filters.is_empty())
                        .then(|| (row..end).map(|r| payload(r as u64, filters)).collect()),
                },
            };
            let bytes = serde_json::to_vec(&body)
                .map_err(|e| BenchError::InvalidParameter(format!("encoding a batch: {e}")))?;
            if let Err(e) = client.call("PUT", &path, Some(bytes)) {
                // Stop the other clients too.
                next.store(batches, Ordering::Relaxed);
                return Err(e);
            }
            pb.inc((end - row) as u64);
        }
    };
    let clients = options.ingest_concurrency.clamp(1, batches.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let upload = &upload;
                scope.spawn(move || {
                    if i == 0 {
                        upload(client)
                    } else {
                        upload(&Client::new(&client.base, client.api_key.clone()))
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>, BenchError>>()
    })?;
    let ingest_seconds = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let spinner = bar(multi, 0, "index");
    spinner.enable_steady_tick(Duration::from_millis(200));
    let deadline = Instant::now() + options.index_timeout;
    let mut indexed_seconds = None;
    let info = loop {
        let info = client.call("GET", &format!("/collections/{name}"), None)?;
        if indexed_seconds.is_none() && every_point_indexed(&info) {
            indexed_seconds = Some(start.elapsed().as_secs_f64());
        }
        if info["status"] == "green" {
            break info;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Server {
                url: format!("{}/collections/{name}", client.base),
                message: format!(
                    "index builds still running after {:.0}s (raise --index-timeout)",
                    options.index_timeout.as_secs_f64()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let build_seconds = start.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let indexed = info["indexed_vectors_count"].as_u64().unwrap_or(0);
    let Some(config) = config else {
        // A collection with the server's defaults: whether and when the tail is indexed is the
        // server's business, which `settle_remote` measures.
        return Ok(Ingested {
            ingest_seconds,
            build_seconds,
            indexed_seconds,
        });
    };
    if indexed < n as u64 {
        eprintln!(
            "warning: the server reports {indexed} of {n} points in IVF-PQ segments; the rest \
             are searched exactly (segment too small to train?)"
        );
    }
    let rows = n / options.shards.max(1) as usize;
    if config.nlist > (rows / 39).max(1) {
        eprintln!(
            "warning: the server caps nlist at rows/39 = {} for a segment of {rows} rows, below \
             nlist = {}",
            (rows / 39).max(1),
            config.nlist
        );
    }
    Ok(Ingested {
        ingest_seconds,
        build_seconds,
        indexed_seconds,
    })
}

/// Whether a collection's info reports every point in an indexed segment.
fn every_point_indexed(info: &serde_json::Value) -> bool {
    let count = |key: &str| info[key].as_u64().unwrap_or(0);
    count("indexed_vectors_count") >= count("points_count")
}

/// Runs every query once through `POST /points/query` with `search` settings and summarises
/// recall, throughput and latency, after a short untimed warm-up pass.
#[allow(clippy::too_many_arguments)]
fn measure(
    client: &Client,
    workload: &Workload<'_>,
    name: &str,
    search: Option<SearchConfig>,
    filtered: Option<&FilteredWorkload>,
    concurrency: usize,
    row_of: &std::collections::HashMap<u64, u64>,
    query_batch: usize,
) -> Result<(f64, f64, LatencySummary), BenchError> {
    let batch = query_batch.max(1);
    let url = if batch == 1 {
        format!("{}/collections/{name}/points/query", client.base)
    } else {
        format!("{}/collections/{name}/points/query/batch", client.base)
    };
    let dim = workload.dim();
    let k = workload.k;
    let first_error = std::sync::Mutex::new(None::<BenchError>);
    let params = search.map(|search| QueryParams {
        nprobe: search.nprobe,
        rerank: search.rerank,
    });
    // One filter per bucket the queries ask (query q asks bucket q % buckets).
    let filters: Vec<Value> = filtered.map_or_else(Vec::new, |f| {
        (0..workload.queries.nrows().min(f.selectivity.buckets as usize))
            .map(|q| f.selectivity.filter_json(q))
            .collect()
    });
    let filter_of =
        |q: usize| filtered.map(|f| &filters[f.selectivity.value_for_query(q) as usize]);
    // With batches, each "query" the runner sees is `batch` queries side by side; the answer is
    // their ids, each query's padded to `k` so they can be split again.
    let run_one = |(c, body): &mut (Client, Vec<u8>), row: usize, q: &[f32]| -> Vec<u64> {
        body.clear();
        let one = |(i, v)| QueryBody {
            query: v,
            limit: k,
            params,
            filter: filter_of(row * batch + i),
        };
        let encoded = if batch == 1 {
            serde_json::to_writer(&mut *body, &one((0, q)))
        } else {
            let searches = q.chunks_exact(dim).enumerate().map(one).collect();
            serde_json::to_writer(&mut *body, &BatchQueryBody { searches })
        };
        let answer = encoded
            .map_err(|e| BenchError::InvalidParameter(format!("encoding a query: {e}")))
            .and_then(|()| c.call_bytes("POST", &url, Some(body)))
            .and_then(|bytes| {
                let lists = if batch == 1 {
                    serde_json::from_slice::<QueryAnswer>(&bytes).map(|a| vec![a.result])
                } else {
                    serde_json::from_slice::<BatchAnswer>(&bytes).map(|a| a.result)
                };
                lists
                    .map(|lists| {
                        let mut ids = Vec::with_capacity(lists.len() * k);
                        for l in lists {
                            let n = l.points.len().min(k);
                            ids.extend(l.points.into_iter().take(k).map(|p| p.id));
                            ids.extend(std::iter::repeat_n(u64::MAX, k - n));
                        }
                        ids
                    })
                    .map_err(|e| BenchError::Server {
                        url: url.clone(),
                        message: format!(
                            "answer has no result.points of integer ids ({e}): {:.200}",
                            String::from_utf8_lossy(&bytes)
                        ),
                    })
            });
        match answer {
            Ok(ids) => ids,
            Err(e) => {
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                Vec::new()
            }
        }
    };
    let init = || {
        (
            Client::new(&client.base, client.api_key.clone()),
            Vec::with_capacity(4096),
        )
    };
    // `batch` queries per row (a remainder that does not fill a batch is left out).
    let nq = workload.queries.nrows() / batch * batch;
    let queries = workload.queries.slice(s![..nq, ..]);
    let queries = queries.as_standard_layout();
    let rows = queries
        .view()
        .into_shape_with_order((nq / batch, batch * dim))
        .map_err(|e| BenchError::InvalidParameter(format!("batching the queries: {e}")))?;
    let warm = rows.slice(s![..rows.nrows().min(64usize.div_ceil(batch)), ..]);
    run_queries_indexed(warm, concurrency, init, run_one);
    if let Some(f) = filtered {
        // A fresh server regroups each asked value's codes on its build pool the first time a
        // filter wants them (searches meanwhile take other plans). That first pass is reported
        // on its own; the timed passes then measure a server that has seen these filters, as
        // the in-process bench does.
        let first = run_queries_indexed(rows, concurrency, init, run_one);
        let started = Instant::now();
        let settled = wait_for_regrouping(client, name, Duration::from_secs(300));
        let latency = LatencySummary::from_seconds(&first.latencies);
        eprintln!(
            "filter {}: first pass {:.0} QPS (p50 {:.3} ms, p99 {:.3} ms); {}",
            f.selectivity.field(),
            nq as f64 / first.wall_seconds.max(f64::MIN_POSITIVE),
            latency.p50_ms,
            latency.p99_ms,
            match settled {
                Some(true) => format!(
                    "regrouping done {:.1} s after it",
                    started.elapsed().as_secs_f64()
                ),
                Some(false) => "regrouping still running after 300 s".into(),
                None => "the server reports no regrouping".into(),
            }
        );
    }
    let cpu_before = (server_cpu_seconds(client), crate::process::cpu_seconds());
    let passes = workload.passes.max(1);
    let run = median_pass(passes, || {
        run_queries_indexed(rows, concurrency, init, run_one)
    });
    let cpu_after = (server_cpu_seconds(client), crate::process::cpu_seconds());
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // Where the time went: CPU per query of the server and of this client, which share the
    // machine's cores when both run on it.
    let per_query = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .map(|(a, b)| format!("{:.1} µs", (b - a) * 1e6 / (nq * passes).max(1) as f64))
            .unwrap_or_else(|| "?".into())
    };
    eprintln!(
        "{}{}: CPU per query: server {}, bench client {}",
        search.map_or_else(
            || "no params".to_string(),
            |s| format!("nprobe={} rerank={}", s.nprobe, s.rerank)
        ),
        filtered.map_or_else(String::new, |f| format!(
            ", filter {}",
            f.selectivity.field()
        )),
        per_query(cpu_before.0, cpu_after.0),
        per_query(cpu_before.1, cpu_after.1),
    );
    let qps = nq as f64 / run.wall_seconds.max(f64::MIN_POSITIVE);
    let to_row = |id: &u64| {
        if row_of.is_empty() {
            *id
        } else {
            row_of.get(id).copied().unwrap_or(u64::MAX)
        }
    };
    let answered: Vec<Vec<u64>> = run
        .ids
        .iter()
        .flat_map(|b| {
            b.chunks(k)
                .map(|q| q.iter().filter(|&&id| id != u64::MAX).map(to_row).collect())
        })
        .collect();
    let recall = match filtered {
        Some(f) => filtered_recall(&answered, f.groundtruth.slice(s![..nq, ..]), k)?,
        None => recall_at_k(&answered, workload.groundtruth.slice(s![..nq, ..]), k)?,
    };
    Ok((recall, qps, LatencySummary::from_seconds(&run.latencies)))
}

/// Builds one collection per (`nlist`, `pq_m`, `pq_bits`) of `grid` (which must be
/// [resolved](SweepGrid::resolve)) on the server and measures every (`nprobe`, `rerank`) on it
/// with all queries. The report has `engine` = `shoal-rest`, the ingest rate and the client
/// count; `index_bytes` is `null` because the server does not report index memory.
pub fn run_remote_sweep(
    workload: &Workload<'_>,
    grid: &SweepGrid,
    options: &RemoteOptions,
    label: Option<String>,
) -> Result<BenchReport, BenchError> {
    if options.concurrency == 0 || options.batch_size == 0 || options.ingest_concurrency == 0 {
        return Err(BenchError::InvalidParameter(
            "--concurrency, --ingest-concurrency and --batch-size must be at least 1".into(),
        ));
    }
    let client = Client::new(&options.url, options.api_key.as_ref().map(|k| k.0.clone()));
    let ids = balanced_ids(workload.n(), options.shards);
    // Answers carry ids; recall is computed over rows (empty map: ids are the rows).
    let row_of: std::collections::HashMap<u64, u64> = if options.shards > 1 {
        ids.iter()
            .enumerate()
            .map(|(row, &id)| (id, row as u64))
            .collect()
    } else {
        Default::default()
    };
    let builds = grid.builds();
    let many = builds.len() > 1;
    let total: usize = builds.iter().map(|b| grid.searches(b.nlist).len()).sum();
    let multi = MultiProgress::new();
    let query_bar = bar(&multi, total as u64, "search");
    let mut results = Vec::with_capacity(total);
    let (mut ingest_total, mut vectors_total) = (0.0f64, 0usize);
    for config in builds {
        let name = collection_name(workload.name, options.collection.as_deref(), config, many);
        create(&client, workload, &name, config, options.shards)?;
        // From here on the collection is ours: dropping the guard deletes it, on error too.
        let remote = Remote {
            client: &client,
            name,
            keep: options.keep,
        };
        let ingested = fill(
            &client,
            workload,
            &remote.name,
            Some(config),
            options,
            &ids,
            &[],
            &multi,
        )?;
        ingest_total += ingested.ingest_seconds;
        vectors_total += workload.n();
        for search in grid.searches(config.nlist) {
            query_bar.set_message(format!("nprobe={} rerank={}", search.nprobe, search.rerank));
            let (recall, qps, latency) = measure(
                &client,
                workload,
                &remote.name,
                Some(search),
                None,
                options.concurrency,
                &row_of,
                options.query_batch,
            )?;
            results.push(QueryResult {
                nprobe: search.nprobe,
                rerank: search.rerank,
                recall,
                qps,
                p50_ms: latency.p50_ms,
                p95_ms: latency.p95_ms,
                p99_ms: latency.p99_ms,
                nlist: Some(config.nlist),
                pq_m: Some(config.pq_m),
                pq_bits: Some(config.pq_bits),
                build_seconds: Some(ingested.build_seconds),
                index_bytes: None,
                sharding: None,
                selectivity: None,
                ivf_flat_recall: None,
            });
            query_bar.inc(1);
        }
        drop(remote);
    }
    query_bar.finish_and_clear();
    let mut out = report(workload, results, label);
    out.engine = "shoal-rest".to_string();
    out.threads = options.concurrency;
    out.concurrency = Some(options.concurrency);
    out.index_bytes = None;
    // The bench client's own memory says nothing about the server's.
    out.peak_rss_bytes = None;
    out.ingest_vectors_per_second =
        (ingest_total > 0.0).then(|| vectors_total as f64 / ingest_total);
    Ok(out)
}

/// After the server reports no build running, waits until it has indexed every point, or until
/// `settle` has passed with points still unindexed. Returns the seconds waited, when every point
/// was first indexed (seconds from the call), the segments and the indexed points at the end.
fn settle_remote(
    client: &Client,
    name: &str,
    settle: Duration,
) -> Result<(f64, Option<f64>, usize, usize), BenchError> {
    let start = Instant::now();
    let mut indexed_after = None;
    loop {
        let info = client.call("GET", &format!("/collections/{name}"), None)?;
        let count = |key: &str| info[key].as_u64().unwrap_or(0) as usize;
        let all_indexed = every_point_indexed(&info);
        if indexed_after.is_none() && all_indexed {
            indexed_after = Some(start.elapsed().as_secs_f64());
        }
        let idle = info["status"] == "green";
        if idle && (all_indexed || start.elapsed() >= settle) {
            return Ok((
                start.elapsed().as_secs_f64(),
                indexed_after,
                count("segments_count"),
                count("indexed_vectors_count"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `shoal bench --server URL --defaults`: what a user gets. The collection is created with only
/// `size` and `distance`, the base is upserted through the REST API (with the filtered
/// workloads' payload fields when `filtered` is not empty), the bench waits for the server to
/// settle (see [`settle_remote`]), and the queries are sent without `params`: unfiltered, then
/// under each filter. The report has `engine` = `shoal-rest` and one row per workload.
pub fn run_remote_defaults(
    workload: &Workload<'_>,
    options: &RemoteOptions,
    filtered: &[FilteredWorkload],
    label: Option<String>,
) -> Result<BenchReport, BenchError> {
    if options.concurrency == 0 || options.batch_size == 0 || options.ingest_concurrency == 0 {
        return Err(BenchError::InvalidParameter(
            "--concurrency, --ingest-concurrency and --batch-size must be at least 1".into(),
        ));
    }
    let client = Client::new(&options.url, options.api_key.as_ref().map(|k| k.0.clone()));
    let name = valid_name(
        &options
            .collection
            .clone()
            .unwrap_or_else(|| format!("shoal-bench-{}-defaults", workload.name)),
    );
    let create = json!({
        "vectors": {"size": workload.dim(), "distance": distance_name(workload.metric)},
    });
    client.call(
        "PUT",
        &format!("/collections/{name}"),
        Some(create.to_string().into_bytes()),
    )?;
    let remote = Remote {
        client: &client,
        name,
        keep: options.keep,
    };
    let multi = MultiProgress::new();
    let ids: Vec<u64> = (0..workload.n() as u64).collect();
    let selectivities: Vec<Selectivity> = filtered.iter().map(|f| f.selectivity).collect();
    // One integer payload index per filtered field, created before the load as Qdrant's
    // documentation advises (and as the Qdrant peer does).
    for s in selectivities.iter().filter(|_| options.payload_indexes) {
        let index = json!({"field_name": s.field(), "field_schema": "integer"});
        client.call(
            "PUT",
            &format!("/collections/{}/index?wait=true", remote.name),
            Some(index.to_string().into_bytes()),
        )?;
    }
    let ingested = fill(
        &client,
        workload,
        &remote.name,
        None,
        options,
        &ids,
        &selectivities,
        &multi,
    )?;
    let (waited, indexed_after, segments, indexed) =
        settle_remote(&client, &remote.name, options.settle)?;
    // Seconds from the last write: while the bench waited for the builds, or after.
    let after_load = ingested.build_seconds - ingested.ingest_seconds;
    let index_wait = match (ingested.indexed_seconds, indexed_after) {
        (Some(t), _) => Some(t - ingested.ingest_seconds),
        (None, Some(t)) => Some(after_load + t),
        (None, None) => None,
    };
    eprintln!(
        "loaded {} points in {:.2}s; every point indexed {} later, idle {:.2}s later: \
         {segments} segments, {indexed} points indexed",
        workload.n(),
        ingested.ingest_seconds,
        index_wait.map_or_else(|| "not".to_string(), |s| format!("{s:.2}s")),
        after_load + waited
    );
    let no_map = std::collections::HashMap::new();
    let mut results = Vec::with_capacity(1 + filtered.len());
    for f in std::iter::once(None).chain(filtered.iter().map(Some)) {
        let (recall, qps, latency) = measure(
            &client,
            workload,
            &remote.name,
            None,
            f,
            options.concurrency,
            &no_map,
            options.query_batch,
        )?;
        results.push(QueryResult {
            nprobe: 0,
            rerank: 0,
            recall,
            qps,
            p50_ms: latency.p50_ms,
            p95_ms: latency.p95_ms,
            p99_ms: latency.p99_ms,
            nlist: None,
            pq_m: None,
            pq_bits: None,
            build_seconds: Some(ingested.build_seconds + waited),
            index_bytes: None,
            sharding: None,
            selectivity: f.map(|f| f.selectivity.fraction()),
            ivf_flat_recall: None,
        });
    }
    drop(remote);
    let mut out = report(workload, results, label);
    out.engine = "shoal-rest".to_string();
    out.build_seconds = ingested.build_seconds + waited;
    out.threads = options.concurrency;
    out.concurrency = Some(options.concurrency);
    out.index_bytes = None;
    out.peak_rss_bytes = None;
    out.ingest_vectors_per_second =
        (ingested.ingest_seconds > 0.0).then(|| workload.n() as f64 / ingested.ingest_seconds);
    out.segments = Some(segments);
    out.indexed_points = Some(indexed);
    out.index_wait_seconds = index_wait.or(Some(after_load + waited));
    out.idle_wait_seconds = Some(after_load + waited);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering `answers` in turn, one connection each (`Connection: close`); returns
    /// its URL and the requests' first lines as they arrive.
    fn scripted_server(
        answers: Vec<&'static str>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (conn, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                seen.push(line.trim().to_string());
                // The rest of the head, then the body by its length.
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; length];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                let mut conn = conn;
                conn.write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        (url, server)
    }

    /// The bench waits on the server's gauge of regroupings for its own collection (another
    /// collection's count is not it), and a server without the gauge is not waited on.
    #[test]
    fn the_bench_waits_until_the_server_has_regrouped() {
        const BUSY: &str = "HTTP/1.1 200 OK\r\nContent-Length: 126\r\nConnection: close\r\n\r\nshoal_collection_filter_subsets_being_made{collection=\"c\"} 3\nshoal_collection_filter_subsets_being_made{collection=\"other\"} 0\n";
        const DONE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 126\r\nConnection: close\r\n\r\nshoal_collection_filter_subsets_being_made{collection=\"c\"} 0\nshoal_collection_filter_subsets_being_made{collection=\"other\"} 5\n";
        const NONE: &str =
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nno_gauge 1\n";
        let (url, server) = scripted_server(vec![BUSY, BUSY, DONE, NONE, BUSY]);
        let client = Client::new(&url, None);
        let limit = Duration::from_secs(60);
        assert_eq!(wait_for_regrouping(&client, "c", limit), Some(true));
        assert_eq!(wait_for_regrouping(&client, "c", limit), None);
        assert_eq!(
            wait_for_regrouping(&client, "c", Duration::ZERO),
            Some(false)
        );
        assert_eq!(server.join().unwrap().len(), 5);
    }

    /// A node that is still starting answers 503 with Retry-After: the client waits and asks
    /// again, and a 503 without it (or any other error) is an error at once.
    #[test]
    fn a_503_with_retry_after_is_retried_and_others_are_errors() {
        const STARTING: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"result\": true}\n";
        let (url, server) = scripted_server(vec![STARTING, STARTING, OK]);
        let client = Client::new(&url, None);
        let got = client
            .call("PUT", "/collections/c", Some(b"{}".to_vec()))
            .unwrap();
        assert_eq!(got, serde_json::json!(true));
        assert_eq!(
            server.join().unwrap(),
            vec!["PUT /collections/c HTTP/1.1"; 3]
        );

        const DOWN: &str =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        let (url, server) = scripted_server(vec![DOWN]);
        let err = Client::new(&url, None)
            .call("GET", "/collections", None)
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        assert_eq!(server.join().unwrap().len(), 1);
    }

    #[test]
    fn the_api_key_never_prints() {
        let k: ApiKey = "bench-key-123".parse().unwrap();
        assert_eq!(k.0, "bench-key-123");
        assert_eq!(format!("{:?}", Some(k)), "Some(\"***\")");
    }

    #[test]
    fn collection_names_are_valid_and_distinct_per_build() {
        let a = BuildConfig {
            nlist: 16,
            pq_m: 8,
            pq_bits: 4,
        };
        let b = BuildConfig { nlist: 32, ..a };
        assert_eq!(
            collection_name("sift 1M.hdf5", None, a, false),
            "shoal-bench-sift-1M-hdf5-16-8-4"
        );
        assert_eq!(collection_name("x", Some("mine"), a, false), "mine");
        assert_ne!(
            collection_name("x", Some("mine"), a, true),
            collection_name("x", Some("mine"), b, true)
        );
        assert!(collection_name(&"d".repeat(400), None, a, false).len() <= 255);
    }

    #[test]
    fn balanced_ids_fill_every_shard_equally_on_the_servers_ring() {
        let ring = crate::cluster::placement::HashRing::new(4);
        let ids = balanced_ids(10_002, 4);
        assert_eq!(ids.len(), 10_002);
        let mut held = [0usize; 4];
        for id in &ids {
            held[ring.shard_of(&crate::shard::PointId::Num(*id)) as usize] += 1;
        }
        assert_eq!(held, [2501, 2501, 2500, 2500]);
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert_eq!(balanced_ids(5, 1), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn batches_serialise_as_the_api_reads_them() {
        let v = [1.0f32, 2.5, -3.0, 0.1];
        let body = BatchBody {
            batch: BatchColumns {
                ids: vec![7, 8],
                vectors: v.chunks_exact(2).collect(),
                payloads: None,
            },
        };
        let json: Value = serde_json::to_value(&body).unwrap();
        assert_eq!(json["batch"]["ids"], json!([7, 8]));
        assert_eq!(json["batch"]["vectors"][1][1].as_f64().unwrap() as f32, 0.1);
        assert_eq!(distance_name(Metric::L2), "Euclid");
    }
}
