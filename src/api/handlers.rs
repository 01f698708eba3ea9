//! Route handlers: one function per Qdrant operation. Each parses and checks its whole request
//! before touching the collection, so a refused request changes nothing.

use super::error::ApiError;
use super::parse::{self, PayloadSelector};
use super::types::*;
use super::{AppState, JsonBody, MAX_OFFSET, MAX_RERANK, exec, ok};
use crate::index::Metric;
use crate::shard::{CompiledFilter, Filter, Hit, PointWrite, Record, SearchRequest, ShardCommand};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

fn compile(filter: Option<&Filter>) -> Result<Option<CompiledFilter>, ApiError> {
    filter
        .map(|f| f.compile().map_err(|e| ApiError::bad(e.to_string())))
        .transpose()
}

fn record_out(r: &Record, sel: &PayloadSelector) -> RecordOut {
    RecordOut {
        id: r.id.to_json(),
        payload: sel.apply(r.payload.as_deref()),
        vector: r.vector.clone(),
    }
}

/// Qdrant's score from shoal's distance: cosine and dot similarities, euclidean distance.
fn score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::L2 => distance.max(0.0).sqrt(),
        Metric::Cosine => 1.0 - distance,
        Metric::Dot => -distance,
    }
}

/// A search, fully checked, ready to run.
struct Prepared {
    vector: Vec<f32>,
    limit: usize,
    offset: usize,
    filter: Option<CompiledFilter>,
    nprobe: usize,
    rerank: usize,
    exact: bool,
    payload: PayloadSelector,
    with_vector: bool,
    score_threshold: Option<f32>,
}

struct SearchInput<'a> {
    vector: &'a VectorInput,
    limit: usize,
    offset: Option<usize>,
    filter: Option<&'a Filter>,
    params: Option<&'a SearchParamsReq>,
    with_payload: Option<&'a Value>,
    with_vector: Option<&'a Value>,
    score_threshold: Option<f32>,
}

fn prepare(c: &super::Collection, s: SearchInput<'_>, what: &str) -> Result<Prepared, ApiError> {
    let cfg = &c.config;
    let vector = parse::vector(s.vector, cfg.vectors.size as usize, what)?;
    let limit = parse::limit(s.limit)?;
    let offset = s.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::bad(format!(
            "offset = {offset} must be at most {MAX_OFFSET}"
        )));
    }
    let params = s.params.cloned().unwrap_or_default();
    let nlist = cfg.ivf_pq_config.nlist;
    let nprobe = params.nprobe.unwrap_or(cfg.search_config.nprobe);
    if nprobe == 0 || nprobe > nlist {
        return Err(ApiError::bad(format!(
            "nprobe = {nprobe} must be in 1..=nlist ({nlist})"
        )));
    }
    let rerank = params.rerank.unwrap_or(cfg.search_config.rerank);
    if rerank > MAX_RERANK {
        return Err(ApiError::bad(format!(
            "rerank = {rerank} must be at most {MAX_RERANK}"
        )));
    }
    if let Some(sp) = params.shard_probe
        && sp == 0
    {
        return Err(ApiError::bad("shard_probe must be at least 1"));
    }
    if let Some(t) = s.score_threshold
        && !t.is_finite()
    {
        return Err(ApiError::bad("score_threshold must be a finite number"));
    }
    Ok(Prepared {
        vector,
        limit,
        offset,
        filter: compile(s.filter)?,
        nprobe,
        rerank,
        exact: params.exact.unwrap_or(false),
        payload: parse::with_payload(s.with_payload, false)?,
        with_vector: parse::with_vector(s.with_vector)?,
        score_threshold: s.score_threshold,
    })
}

/// Whether the search can run on the worker thread (see [`exec`]).
fn cost(c: &super::Collection, p: &Prepared) -> exec::Cost {
    exec::search_cost(
        &c.shard(),
        exec::SearchShape {
            exact: p.exact,
            filtered: p.filter.is_some(),
            nprobe: p.nprobe,
            nlist: c.config.ivf_pq_config.nlist,
            k: p.limit.saturating_add(p.offset),
            rerank: p.rerank,
        },
    )
}

fn run(c: &super::Collection, p: &Prepared) -> Result<Vec<ScoredPoint>, ApiError> {
    let shard = c.shard();
    let metric = shard.config().metric;
    let hits: Vec<Hit> = shard.search(&SearchRequest {
        vector: &p.vector,
        limit: p.limit,
        offset: p.offset,
        filter: p.filter.as_ref(),
        nprobe: p.nprobe,
        rerank: p.rerank,
        exact: p.exact,
        with_payload: p.payload.wants(),
        with_vector: p.with_vector,
    })?;
    Ok(hits
        .into_iter()
        .map(|h| ScoredPoint {
            id: h.record.id.to_json(),
            version: 0,
            score: score(metric, h.distance),
            payload: p.payload.apply(h.record.payload.as_deref()),
            vector: h.record.vector,
        })
        .filter(|sp| match p.score_threshold {
            None => true,
            Some(t) if metric == Metric::L2 => sp.score <= t,
            Some(t) => sp.score >= t,
        })
        .collect())
}

/// Version banner, unwrapped as Qdrant answers it (qdrant-client's version check reads it).
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, body = VersionInfo)))]
pub async fn root() -> axum::Json<VersionInfo> {
    axum::Json(VersionInfo {
        title: "shoal".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// List collections.
#[utoipa::path(get, path = "/collections", tag = "collections", responses((status = 200, body = CollectionsList)))]
pub async fn list_collections(State(st): State<AppState>) -> Response {
    let collections = st
        .collections
        .all()
        .iter()
        .map(|c| CollectionDescription {
            name: c.name.clone(),
        })
        .collect();
    ok(CollectionsList { collections })
}

/// Create a collection.
#[utoipa::path(put, path = "/collections/{name}", tag = "collections", request_body = CreateCollection,
    params(("name" = String, Path, description = "1-255 characters of A-Z a-z 0-9 _ -")),
    responses((status = 200, body = bool), (status = 400), (status = 409)))]
pub async fn create_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<CreateCollection>,
) -> Result<Response, ApiError> {
    st.collections.create(&name, &req).await?;
    Ok(ok(true))
}

/// Delete a collection (answers `false` if it did not exist, as Qdrant does).
#[utoipa::path(delete, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path)), responses((status = 200, body = bool)))]
pub async fn delete_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(ok(st.collections.delete(&name).await?))
}

/// Whether a collection exists.
#[utoipa::path(get, path = "/collections/{name}/exists", tag = "collections",
    params(("name" = String, Path)), responses((status = 200, body = Exists)))]
pub async fn collection_exists(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    ok(Exists {
        exists: st.collections.get(&name).is_ok(),
    })
}

/// Collection info in Qdrant's shape; Qdrant-only settings are reported with fixed values.
#[utoipa::path(get, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404)))]
pub async fn get_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let s = c.shard().stats();
    let cfg = &c.config;
    Ok(ok(json!({
        "status": if s.building > 0 { "yellow" } else { "green" },
        "optimizer_status": "ok",
        "vectors_count": s.points,
        "indexed_vectors_count": s.indexed_points,
        "points_count": s.points,
        "segments_count": s.segments,
        "config": {
            "params": {
                "vectors": cfg.vectors,
                "shard_number": cfg.shard_number,
                "replication_factor": cfg.replication_factor,
                "write_consistency_factor": 1,
                "on_disk_payload": false,
            },
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0, "on_disk": false},
            "optimizer_config": {
                "deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
                "max_segment_size": null, "memmap_threshold": null,
                "indexing_threshold": cfg.ivf_pq_config.seal_threshold,
                "flush_interval_sec": 5, "max_optimization_threads": null,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": null,
            "placement": cfg.placement,
            "ivf_pq_config": cfg.ivf_pq_config,
            "search_config": cfg.search_config,
        },
        "payload_schema": {},
    })))
}

/// Insert or replace points (`points` list or `batch` columns). Applied and durable before the
/// answer, whatever `wait` says.
#[utoipa::path(put, path = "/collections/{name}/points", tag = "points", request_body = UpsertPoints,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404)))]
pub async fn upsert_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<UpsertPoints>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let dim = c.config.vectors.size as usize;
    let points: Vec<PointWrite> = match (&req.points, &req.batch) {
        (Some(points), None) => points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let what = format!("points[{i}]");
                Ok(PointWrite {
                    id: parse::id(&p.id).map_err(|e| ApiError::bad(format!("{what}: {e}")))?,
                    vector: parse::vector(&p.vector, dim, &what)?,
                    payload: parse::payload(p.payload.as_ref(), &what)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        (None, Some(b)) => {
            if b.vectors.len() != b.ids.len()
                || b.payloads.as_ref().is_some_and(|p| p.len() != b.ids.len())
            {
                return Err(ApiError::bad(
                    "batch: ids, vectors and payloads must have the same length",
                ));
            }
            (0..b.ids.len())
                .map(|i| {
                    let what = format!("batch item {i}");
                    Ok(PointWrite {
                        id: parse::id(&b.ids[i])
                            .map_err(|e| ApiError::bad(format!("{what}: {e}")))?,
                        vector: parse::vector(&b.vectors[i], dim, &what)?,
                        payload: parse::payload(b.payloads.as_ref().map(|p| &p[i]), &what)?,
                    })
                })
                .collect::<Result<_, ApiError>>()?
        }
        _ => return Err(ApiError::bad("give exactly one of `points` or `batch`")),
    };
    if points.is_empty() {
        return Err(ApiError::bad("no points to upsert"));
    }
    let index = c.write(ShardCommand::Upsert { points }).await?;
    Ok(ok(UpdateResult {
        operation_id: index,
        status: "completed".into(),
        consistency_token: index,
    }))
}

/// Delete points by id (`points`) or by `filter`.
#[utoipa::path(post, path = "/collections/{name}/points/delete", tag = "points", request_body = DeletePoints,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404)))]
pub async fn delete_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<DeletePoints>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let cmd = match (&req.points, &req.filter) {
        (Some(ids), None) => ShardCommand::Delete {
            ids: parse::ids(ids)?,
        },
        (None, Some(f)) => {
            compile(Some(f))?;
            ShardCommand::DeleteByFilter { filter: f.clone() }
        }
        _ => {
            return Err(ApiError::bad(
                "give exactly one of `points` (ids) or `filter`",
            ));
        }
    };
    let index = c.write(cmd).await?;
    Ok(ok(UpdateResult {
        operation_id: index,
        status: "completed".into(),
        consistency_token: index,
    }))
}

/// Fetch points by id (missing ids are skipped).
#[utoipa::path(post, path = "/collections/{name}/points", tag = "points", request_body = RetrieveRequest,
    params(("name" = String, Path)), responses((status = 200, body = Vec<RecordOut>), (status = 400), (status = 404)))]
pub async fn retrieve_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<RetrieveRequest>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let ids = parse::ids(&req.ids)?;
    let sel = parse::with_payload(req.with_payload.as_ref(), true)?;
    let wv = parse::with_vector(req.with_vector.as_ref())?;
    let out = blocking(move || {
        Ok(c.shard()
            .get(&ids, sel.wants(), wv)
            .iter()
            .map(|r| record_out(r, &sel))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok(out))
}

/// Fetch one point (404 if missing).
#[utoipa::path(get, path = "/collections/{name}/points/{id}", tag = "points",
    params(("name" = String, Path), ("id" = String, Path, description = "unsigned integer or UUID")),
    responses((status = 200, body = RecordOut), (status = 404)))]
pub async fn get_point(
    State(st): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let v = match id.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::String(id.clone()),
    };
    let pid = parse::id(&v)?;
    let r = c.shard().get(&[pid], true, true);
    let r = r.first().ok_or(ApiError::PointNotFound(id))?;
    Ok(ok(record_out(r, &PayloadSelector::All)))
}

/// Count points (optionally matching a filter).
#[utoipa::path(post, path = "/collections/{name}/points/count", tag = "points", request_body = CountRequest,
    params(("name" = String, Path)), responses((status = 200, body = CountResponse), (status = 400), (status = 404)))]
pub async fn count_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<CountRequest>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let filter = compile(req.filter.as_ref())?;
    let count = blocking(move || Ok(c.shard().count(filter.as_ref()))).await?;
    Ok(ok(CountResponse { count }))
}

/// Page through points in id order.
#[utoipa::path(post, path = "/collections/{name}/points/scroll", tag = "points", request_body = ScrollRequest,
    params(("name" = String, Path)), responses((status = 200, body = ScrollResponse), (status = 400), (status = 404)))]
pub async fn scroll_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ScrollRequest>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let offset = match &req.offset {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse::id(v)?),
    };
    let limit = parse::limit(req.limit.unwrap_or(10))?;
    let filter = compile(req.filter.as_ref())?;
    let sel = parse::with_payload(req.with_payload.as_ref(), true)?;
    let wv = parse::with_vector(req.with_vector.as_ref())?;
    let out = blocking(move || {
        let (records, next) = c
            .shard()
            .scroll(offset, limit, filter.as_ref(), sel.wants(), wv);
        Ok(ScrollResponse {
            points: records.iter().map(|r| record_out(r, &sel)).collect(),
            next_page_offset: next.map(|n| n.to_json()),
        })
    })
    .await?;
    Ok(ok(out))
}

fn search_input(r: &SearchRequestBody) -> SearchInput<'_> {
    SearchInput {
        vector: &r.vector,
        limit: r.limit,
        offset: r.offset,
        filter: r.filter.as_ref(),
        params: r.params.as_ref(),
        with_payload: r.with_payload.as_ref(),
        with_vector: r.with_vector.as_ref(),
        score_threshold: r.score_threshold,
    }
}

/// Nearest neighbours (Qdrant's older search API).
#[utoipa::path(post, path = "/collections/{name}/points/search", tag = "search", request_body = SearchRequestBody,
    params(("name" = String, Path)), responses((status = 200, body = Vec<ScoredPoint>), (status = 400), (status = 404)))]
pub async fn search_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SearchRequestBody>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let p = prepare(&c, search_input(&req), "query vector")?;
    let cost = cost(&c, &p);
    Ok(ok(exec::run(cost, move || run(&c, &p)).await?))
}

/// Several searches; all are checked before any runs.
#[utoipa::path(post, path = "/collections/{name}/points/search/batch", tag = "search", request_body = SearchBatch,
    params(("name" = String, Path)), responses((status = 200, body = Vec<Vec<ScoredPoint>>), (status = 400), (status = 404)))]
pub async fn search_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SearchBatch>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let ps = req
        .searches
        .iter()
        .enumerate()
        .map(|(i, r)| prepare(&c, search_input(r), &format!("searches[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ok(blocking(move || {
        ps.iter().map(|p| run(&c, p)).collect::<Result<Vec<_>, _>>()
    })
    .await?))
}

fn prepare_query(
    c: &super::Collection,
    q: &QueryRequest,
    what: &str,
) -> Result<Prepared, ApiError> {
    let vector = parse::query_vector(q)?;
    prepare(
        c,
        SearchInput {
            vector,
            limit: q.limit.unwrap_or(10),
            offset: q.offset,
            filter: q.filter.as_ref(),
            params: q.params.as_ref(),
            with_payload: q.with_payload.as_ref(),
            with_vector: q.with_vector.as_ref(),
            score_threshold: q.score_threshold,
        },
        what,
    )
}

/// Nearest neighbours (Qdrant's universal query API, vector queries only).
#[utoipa::path(post, path = "/collections/{name}/points/query", tag = "search", request_body = QueryRequest,
    params(("name" = String, Path)), responses((status = 200, body = QueryResponse), (status = 400), (status = 404)))]
pub async fn query_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<QueryRequest>,
) -> Result<Response, ApiError> {
    let c = st.collections.get(&name)?;
    let p = prepare_query(&c, &req, "query")?;
    let cost = cost(&c, &p);
    Ok(ok(QueryResponse {
        points: exec::run(cost, move || run(&c, &p)).await?,
    }))
}

/// Several queries; all are checked before any runs.
#[utoipa::path(post, path = "/collections/{name}/points/query/batch", tag = "search", request_body = QueryBatch,
    params(("name" = String, Path)), responses((status = 200, body = Vec<QueryResponse>), (status = 400), (status = 404)))]
pub async fn query_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<QueryBatch>,
) -> Result<Response, ApiError> {
    let c: Arc<super::Collection> = st.collections.get(&name)?;
    let ps = req
        .searches
        .iter()
        .enumerate()
        .map(|(i, q)| prepare_query(&c, q, &format!("searches[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let out = blocking(move || {
        ps.iter()
            .map(|p| run(&c, p).map(|points| QueryResponse { points }))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(ok(out))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: collections recovered and not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, body = String), (status = 503)))]
pub async fn readyz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    if st.ready.load(std::sync::atomic::Ordering::SeqCst) {
        Ok("ready")
    } else {
        Err(ApiError::Unavailable("shutting down".into()))
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    use axum::response::IntoResponse;
    let text = st.metrics.render(&st.collections);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}
