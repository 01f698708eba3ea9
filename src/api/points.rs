//! Point and search handlers: each parses and checks its whole request, then hands it to the
//! [`Router`](crate::router::Router), which sends it to the shards that hold the points.
//!
//! Reads accept `?consistency=strong|session|eventual` (Qdrant's `majority`, `quorum`, `all` or
//! a replica count mean `strong`), `?consistency_token=` (also a body field; a token without a
//! level means `session`) and `?allow_partial=true` (also a body field). A partial answer adds
//! `"partial": true` and `"missing_shards": [...]` beside `result`. Writes answer a
//! `consistency_token` to pass back.

use super::error::ApiError;
use super::examples;
use super::parse::{self, PayloadSelector};
use super::types::*;
use super::vectors::{VectorLayout, VectorView};
use super::{AppState, JsonBody, elapsed_now, ok};
use crate::collection::limits::RequestLimits;
use crate::collection::{Metric, SearchQuery};
use crate::router::{Answer, Consistency, ConsistencyToken, ReadOptions, WriteAck};
use crate::shard::{
    Filter, Hit, PointId, PointSelector, PointWrite, Record, ShardCommand, VectorUpdate,
};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// The filter's size against the caps (before anything is compiled), then the filter compiled.
fn check_filter(limits: &RequestLimits, filter: Option<&Filter>) -> Result<(), ApiError> {
    if let Some(f) = filter {
        limits.check_filter(f)?;
        f.compile().map_err(|e| ApiError::bad(e.to_string()))?;
    }
    Ok(())
}

pub(super) fn record_out(r: &Record, sel: &PayloadSelector, vectors: &VectorView) -> RecordOut {
    RecordOut {
        id: r.id.to_json(),
        payload: sel.apply(r.payload.as_deref()),
        vector: vectors.show(r.vector.clone()),
    }
}

/// Qdrant's score from shoal's distance: cosine and dot similarities, euclidean distance.
pub(super) fn score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::L2 => distance.max(0.0).sqrt(),
        Metric::Cosine => 1.0 - distance,
        Metric::Dot => -distance,
    }
}

/// Qdrant's envelope, plus `partial`/`missing_shards` when some shard did not answer.
pub(super) fn answer<T: Serialize>(result: T, missing: &BTreeSet<u32>) -> Response {
    if missing.is_empty() {
        return ok(result);
    }
    axum::Json(serde_json::json!({
        "result": result,
        "status": "ok",
        "time": elapsed_now(),
        "partial": true,
        "missing_shards": missing,
    }))
    .into_response()
}

pub(super) fn write_answer(ack: WriteAck) -> Response {
    ok(update_result(ack))
}

/// What a write answers: applied and durable, and the token a session read passes back.
pub(super) fn update_result(ack: WriteAck) -> UpdateResult {
    UpdateResult {
        operation_id: ack.operation_id,
        status: "completed".into(),
        consistency_token: ack.token.encode(),
    }
}

/// Read options from the query string and the body (body fields win for the level; tokens
/// from both are joined).
pub(super) fn read_options(q: &ReadQuery, body: &ReadFields) -> Result<ReadOptions, ApiError> {
    let token = ConsistencyToken::decode_all(
        q.consistency_token
            .iter()
            .chain(body.consistency_token.iter())
            .map(String::as_str),
    )?;
    let level = match (&body.consistency, &q.consistency) {
        (Some(v), _) if !v.is_null() => Some(Consistency::from_json(v)?),
        (_, Some(s)) => Some(s.parse::<Consistency>()?),
        _ => None,
    };
    let consistency = level.unwrap_or(if token.is_some() {
        Consistency::Session
    } else {
        Consistency::Eventual
    });
    Ok(ReadOptions {
        consistency,
        token,
        allow_partial: body.allow_partial.or(q.allow_partial).unwrap_or(false),
    })
}

/// A search, fully checked, ready to route.
pub(super) struct Prepared {
    pub(super) query: SearchQuery,
    /// The metric of the vector searched (scores follow it).
    pub(super) metric: Metric,
    /// How the hits' vectors are shown.
    vectors: VectorView,
    payload: PayloadSelector,
    score_threshold: Option<f32>,
    /// Example points of a query by example, left out of the answer; the query then asks for
    /// `offset + limit + exclude.len()` hits from 0 and `window` cuts the answer after.
    pub(super) exclude: Vec<PointId>,
    /// `(offset, limit)` applied after the exclusion (only for a query by example).
    pub(super) window: Option<(usize, usize)>,
}

pub(super) struct SearchInput<'a> {
    vector: &'a VectorInput,
    /// The named vector searched (`using`), if the request names one that way.
    using: Option<&'a str>,
    limit: usize,
    offset: Option<usize>,
    filter: Option<&'a Filter>,
    params: Option<&'a SearchParamsReq>,
    with_payload: Option<&'a Value>,
    with_vector: Option<&'a Value>,
    score_threshold: Option<f32>,
}

pub(super) fn prepare(
    limits: &RequestLimits,
    layout: &VectorLayout,
    s: SearchInput<'_>,
    what: &str,
) -> Result<Prepared, ApiError> {
    let (lane, vector) = layout.query(s.vector, s.using, what)?;
    let cfg = &layout.lane_config(lane);
    // Its squared norm too: a finite vector can still overflow the distances.
    crate::collection::limits::check_vector(&vector, cfg.dim(), what)?;
    let params = s.params.cloned().unwrap_or_default();
    let payload = parse::with_payload(s.with_payload, false)?;
    let query = SearchQuery {
        vector,
        limit: s.limit,
        offset: s.offset.unwrap_or(0),
        filter: s.filter.cloned(),
        nprobe: params.nprobe,
        rerank: params.rerank,
        recall_target: params.recall_target,
        exact: params.exact.unwrap_or(false),
        shard_probe: params.shard_probe,
        with_payload: payload.wants(),
        with_vector: parse::with_vector(s.with_vector)?,
        using: layout.using(lane),
    };
    // The model's checks (the router runs them again), here so a batch is refused whole.
    query.check_params(cfg)?;
    if let Some(t) = s.score_threshold
        && !t.is_finite()
    {
        return Err(ApiError::bad("score_threshold must be a finite number"));
    }
    check_filter(limits, s.filter)?;
    Ok(Prepared {
        query,
        metric: cfg.metric(),
        vectors: layout.view(s.with_vector)?,
        payload,
        score_threshold: s.score_threshold,
        exclude: Vec::new(),
        window: None,
    })
}

impl Prepared {
    /// The score threshold as the farthest distance that passes it (the inverse of [`score`]):
    /// what the router's grouping filters on before it groups.
    pub(super) fn max_distance(&self, metric: Metric) -> Option<f32> {
        let t = self.score_threshold?;
        Some(match metric {
            // score = sqrt(distance) <= t; no distance passes a negative threshold.
            Metric::L2 if t < 0.0 => -1.0,
            Metric::L2 => t * t,
            // score = 1 - distance >= t.
            Metric::Cosine => 1.0 - t,
            // score = -distance >= t.
            Metric::Dot => -t,
        })
    }
}

pub(super) fn scored(p: &Prepared, hits: Vec<Hit>) -> Vec<ScoredPoint> {
    let metric = p.metric;
    let (skip, take) = p.window.unwrap_or((0, usize::MAX));
    hits.into_iter()
        .filter(|h| !p.exclude.contains(&h.record.id))
        .skip(skip)
        .take(take)
        .map(|h| ScoredPoint {
            id: h.record.id.to_json(),
            version: 0,
            score: score(metric, h.distance),
            payload: p.payload.apply(h.record.payload.as_deref()),
            vector: p.vectors.show(h.record.vector),
        })
        .filter(|sp| match p.score_threshold {
            None => true,
            Some(t) if metric == Metric::L2 => sp.score <= t,
            Some(t) => sp.score >= t,
        })
        .collect()
}

/// Searches of one batch in flight at once: a batch of a thousand takes its turn at the shards'
/// permits a few searches at a time instead of queueing all of them ahead of other requests.
/// Asked once: `available_parallelism` reads the cgroup files on every call (perf showed it, with
/// its path look-ups in the kernel, on every query).
fn batch_parallelism() -> usize {
    static PARALLELISM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PARALLELISM.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, usize::from)
            .saturating_mul(2)
    })
}

/// Runs prepared searches, a few at a time, answers in order; every search's missing shards
/// are collected.
async fn run_all(
    st: &AppState,
    name: &str,
    ps: &[Prepared],
    read: &ReadOptions,
) -> Result<(Vec<Vec<ScoredPoint>>, BTreeSet<u32>), ApiError> {
    // The futures are made before the first await: a closure kept in the stream would make the
    // handler's future not `Send` for every lifetime (a known rustc limitation).
    let searches: Vec<_> = ps
        .iter()
        .map(|p| st.router.search(name, &p.query, read))
        .collect();
    let answers: Vec<_> = stream::iter(searches)
        .buffered(batch_parallelism())
        .collect()
        .await;
    let mut missing = BTreeSet::new();
    let mut out = Vec::with_capacity(ps.len());
    for (p, a) in ps.iter().zip(answers) {
        let a: Answer<Vec<Hit>> = a?;
        missing.extend(a.missing_shards.iter().copied());
        out.push(scored(p, a.value));
    }
    Ok((out, missing))
}

/// The points of an upsert body (`points` or `batch`), each checked against the collection's
/// dimension and the request caps; no id twice.
pub(super) fn points_to_write(
    limits: &RequestLimits,
    layout: &VectorLayout,
    req: &UpsertPoints,
) -> Result<Vec<PointWrite>, ApiError> {
    // The cap before any vector is converted (the router checks it again).
    let n = req.points.as_ref().map_or(0, Vec::len) + req.batch.as_ref().map_or(0, |b| b.ids.len());
    limits.check_points(n, "points")?;
    let points: Vec<PointWrite> = match (&req.points, &req.batch) {
        (Some(points), None) => points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let what = format!("points[{i}]");
                Ok(PointWrite {
                    id: parse::id(&p.id).map_err(|e| ApiError::bad(format!("{what}: {e}")))?,
                    vector: layout.point(&p.vector, &what)?,
                    payload: parse::payload(p.payload.as_ref(), &what)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        (None, Some(b)) => {
            let named_short = match &b.vectors {
                BatchVectors::Named(n) => n.iter().any(|(_, l)| l.len() != b.ids.len()),
                BatchVectors::List(_) => false,
            };
            if b.vectors.len() != b.ids.len()
                || named_short
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
                        vector: batch_vector(layout, &b.vectors, i, &what)?,
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
    // Checked here, before any shard sees a part of the batch.
    let mut seen = std::collections::HashSet::new();
    if let Some(p) = points.iter().find(|p| !seen.insert(p.id)) {
        return Err(ApiError::bad(format!(
            "duplicate point id {} in one request",
            p.id
        )));
    }
    Ok(points)
}

/// Point `i`'s vector of an upsert's column form, packed.
fn batch_vector(
    layout: &VectorLayout,
    vectors: &BatchVectors,
    i: usize,
    what: &str,
) -> Result<Vec<f32>, ApiError> {
    match vectors {
        BatchVectors::List(l) => layout.point(&l[i], what),
        BatchVectors::Named(n) => {
            let by_name: Vec<(&str, &VectorInput)> =
                n.iter().map(|(name, l)| (name.as_str(), &l[i])).collect();
            layout.pack(&by_name, what)
        }
    }
}

/// The updates of an `update_vectors` body, checked against the collection's vectors and the
/// request caps; no id twice.
pub(super) fn vector_updates(
    limits: &RequestLimits,
    layout: &VectorLayout,
    req: &UpdateVectors,
) -> Result<Vec<VectorUpdate>, ApiError> {
    limits.check_points(req.points.len(), "points")?;
    if req.shard_key.as_ref().is_some_and(|k| !k.is_null()) {
        return Err(ApiError::bad(
            "shard_key is not supported: shoal has no shard keys",
        ));
    }
    if req.points.is_empty() {
        return Err(ApiError::bad("no points to update"));
    }
    let mut seen = std::collections::HashSet::new();
    req.points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let what = format!("points[{i}]");
            let id = parse::id(&p.id).map_err(|e| ApiError::bad(format!("{what}: {e}")))?;
            if !seen.insert(id) {
                return Err(ApiError::bad(format!(
                    "duplicate point id {id} in one request"
                )));
            }
            Ok(VectorUpdate {
                id,
                vectors: layout.update(&p.vector, &what)?,
            })
        })
        .collect()
}

/// The command of a `delete_vectors` body: the points (ids or a filter, checked against the
/// request caps) and the lanes of the vectors named (each a vector of the collection, none
/// twice).
pub(super) fn vector_deletes(
    limits: &RequestLimits,
    layout: &VectorLayout,
    req: &DeleteVectors,
) -> Result<ShardCommand, ApiError> {
    if req.shard_key.as_ref().is_some_and(|k| !k.is_null()) {
        return Err(ApiError::bad(
            "shard_key is not supported: shoal has no shard keys",
        ));
    }
    if req.vector.is_empty() {
        return Err(ApiError::bad("vector: name at least one vector to delete"));
    }
    let mut lanes = Vec::with_capacity(req.vector.len());
    for name in &req.vector {
        let lane = layout.lane_of(Some(name)).map_err(|e| match e {
            ApiError::BadRequest(m) => ApiError::bad(format!("vector: {m}")),
            other => other,
        })? as u32;
        if lanes.contains(&lane) {
            return Err(ApiError::bad(format!("vector: {name:?} named twice")));
        }
        lanes.push(lane);
    }
    let points = match delete_target(
        limits,
        &DeletePoints {
            points: req.points.clone(),
            filter: req.filter.clone(),
        },
    )? {
        DeleteTarget::Ids(ids) => PointSelector::Ids(ids),
        DeleteTarget::Filter(f) => PointSelector::Filter(f),
    };
    Ok(ShardCommand::DeleteVectors { points, lanes })
}

/// Which points a delete removes.
pub(super) enum DeleteTarget {
    /// These ids.
    Ids(Vec<PointId>),
    /// Every point matching.
    Filter(Filter),
}

/// The target of a delete body, checked against the request caps.
pub(super) fn delete_target(
    limits: &RequestLimits,
    req: &DeletePoints,
) -> Result<DeleteTarget, ApiError> {
    match (&req.points, &req.filter) {
        (Some(ids), None) => {
            limits.check_points(ids.len(), "ids")?;
            Ok(DeleteTarget::Ids(parse::ids(ids)?))
        }
        (None, Some(f)) => {
            check_filter(limits, Some(f))?;
            Ok(DeleteTarget::Filter(f.clone()))
        }
        _ => Err(ApiError::bad(
            "give exactly one of `points` (ids) or `filter`",
        )),
    }
}

/// Deletes `target` from the collection.
pub(super) async fn apply_delete(
    st: &AppState,
    name: &str,
    target: DeleteTarget,
) -> Result<WriteAck, ApiError> {
    Ok(match target {
        DeleteTarget::Ids(ids) => st.router.delete(name, ids).await?,
        DeleteTarget::Filter(f) => st.router.delete_by_filter(name, f).await?,
    })
}

/// Insert or replace points (`points` list or `batch` columns). Committed by a majority of
/// every shard's replicas and applied on its leader before the answer, whatever `wait` says.
#[utoipa::path(put, path = "/collections/{name}/points", tag = "points", request_body = UpsertPoints,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn upsert_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<UpsertPoints>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let points = points_to_write(&st.config.limits, &layout, &req)?;
    Ok(write_answer(st.router.upsert(&name, points).await?))
}

/// Replace vectors of existing points, keeping their payloads (Qdrant's `update_vectors`): the
/// unnamed vector, or any of the named ones; ids the collection does not hold are ignored.
#[utoipa::path(put, path = "/collections/{name}/points/vectors", tag = "points", request_body = UpdateVectors,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn update_vectors(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<UpdateVectors>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let updates = vector_updates(&st.config.limits, &layout, &req)?;
    Ok(write_answer(
        st.router.update_vectors(&name, updates).await?,
    ))
}

/// Delete vectors of points, keeping the points and their payloads (Qdrant's `delete_vectors`):
/// the points chosen by id (`points`) or `filter` are no longer found by searches of those
/// vectors, and reads show them without them, until an upsert or `update_vectors` gives them
/// back. A filter's `has_vector` sees the change.
#[utoipa::path(post, path = "/collections/{name}/points/vectors/delete", tag = "points", request_body = DeleteVectors,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn delete_vectors(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<DeleteVectors>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let command = vector_deletes(&st.config.limits, &layout, &req)?;
    Ok(write_answer(
        st.router.write_every_shard(&name, command).await?,
    ))
}

/// Delete points by id (`points`) or by `filter`.
#[utoipa::path(post, path = "/collections/{name}/points/delete", tag = "points", request_body = DeletePoints,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn delete_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<DeletePoints>,
) -> Result<Response, ApiError> {
    st.router.collection_config(&name)?;
    let target = delete_target(&st.config.limits, &req)?;
    Ok(write_answer(apply_delete(&st, &name, target).await?))
}

/// Fetch points by id (missing ids are skipped).
#[utoipa::path(post, path = "/collections/{name}/points", tag = "points", request_body = RetrieveRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = Vec<RecordOut>), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn retrieve_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<RetrieveRequest>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.read)?;
    st.config.limits.check_points(req.ids.len(), "ids")?;
    let ids = parse::ids(&req.ids)?;
    let sel = parse::with_payload(req.with_payload.as_ref(), true)?;
    let wv = parse::with_vector(req.with_vector.as_ref())?;
    let view = layout.view(req.with_vector.as_ref())?;
    let a = st.router.get(&name, &ids, sel.wants(), wv, &read).await?;
    let out: Vec<RecordOut> = a.value.iter().map(|r| record_out(r, &sel, &view)).collect();
    Ok(answer(out, &a.missing_shards.into_iter().collect()))
}

/// Fetch one point (404 if missing).
#[utoipa::path(get, path = "/collections/{name}/points/{id}", tag = "points",
    params(("name" = String, Path), ("id" = String, Path, description = "unsigned integer or UUID"), ReadQuery),
    responses((status = 200, body = RecordOut), (status = 404), (status = 503)))]
pub async fn get_point(
    State(st): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    let view = VectorLayout::of(&st, &name)?.view(None)?;
    let read = read_options(&q, &ReadFields::default())?;
    let v = match id.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::String(id.clone()),
    };
    let pid: PointId = parse::id(&v)?;
    let a = st.router.get(&name, &[pid], true, true, &read).await?;
    let r = a.value.first().ok_or(ApiError::PointNotFound(id))?;
    Ok(answer(
        record_out(r, &PayloadSelector::All, &view),
        &a.missing_shards.into_iter().collect(),
    ))
}

/// Count points (optionally matching a filter).
#[utoipa::path(post, path = "/collections/{name}/points/count", tag = "points", request_body = CountRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = CountResponse), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn count_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<CountRequest>,
) -> Result<Response, ApiError> {
    st.router.collection_config(&name)?;
    let read = read_options(&q, &req.read)?;
    check_filter(&st.config.limits, req.filter.as_ref())?;
    let a = st.router.count(&name, req.filter.clone(), &read).await?;
    Ok(answer(
        CountResponse {
            count: a.value as usize,
        },
        &a.missing_shards.into_iter().collect(),
    ))
}

/// Page through points in id order.
#[utoipa::path(post, path = "/collections/{name}/points/scroll", tag = "points", request_body = ScrollRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = ScrollResponse), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn scroll_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<ScrollRequest>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.read)?;
    let offset = match &req.offset {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse::id(v)?),
    };
    let limit = st
        .config
        .limits
        .check_scroll_limit(req.limit.unwrap_or(10))?;
    check_filter(&st.config.limits, req.filter.as_ref())?;
    let sel = parse::with_payload(req.with_payload.as_ref(), true)?;
    let wv = parse::with_vector(req.with_vector.as_ref())?;
    let view = layout.view(req.with_vector.as_ref())?;
    if let Some(order_by) = &req.order_by {
        if offset.is_some() {
            return Err(ApiError::bad(
                "`offset` cannot be used with `order_by`: page with `order_by.start_from`",
            ));
        }
        let order = parse::order_by(order_by)?;
        let a = st
            .router
            .scroll_ordered(
                &name,
                order,
                limit,
                req.filter.clone(),
                sel.wants(),
                wv,
                &read,
            )
            .await?;
        let points = a.value.iter().map(|r| record_out(r, &sel, &view)).collect();
        return Ok(answer(
            ScrollResponse {
                points,
                next_page_offset: None,
            },
            &a.missing_shards.into_iter().collect(),
        ));
    }
    let a = st
        .router
        .scroll(
            &name,
            offset,
            limit,
            req.filter.clone(),
            sel.wants(),
            wv,
            &read,
        )
        .await?;
    Ok(answer(
        ScrollResponse {
            points: a
                .value
                .records
                .iter()
                .map(|r| record_out(r, &sel, &view))
                .collect(),
            next_page_offset: a.value.next.map(|n| n.to_json()),
        },
        &a.missing_shards.into_iter().collect(),
    ))
}

pub(super) fn search_input(r: &SearchRequestBody) -> SearchInput<'_> {
    SearchInput {
        vector: &r.vector,
        using: None,
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
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = Vec<ScoredPoint>), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn search_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<SearchRequestBody>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.read)?;
    let p = prepare(
        &st.config.limits,
        &layout,
        search_input(&req),
        "query vector",
    )?;
    let (mut out, missing) = run_all(&st, &name, std::slice::from_ref(&p), &read).await?;
    Ok(answer(out.pop().unwrap_or_default(), &missing))
}

/// Several searches; all are checked before any runs.
#[utoipa::path(post, path = "/collections/{name}/points/search/batch", tag = "search", request_body = SearchBatch,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = Vec<Vec<ScoredPoint>>), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn search_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<SearchBatch>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.read)?;
    st.config.limits.check_queries(req.searches.len())?;
    let ps = req
        .searches
        .iter()
        .enumerate()
        .map(|(i, r)| {
            prepare(
                &st.config.limits,
                &layout,
                search_input(r),
                &format!("searches[{i}]"),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (out, missing) = run_all(&st, &name, &ps, &read).await?;
    Ok(answer(out, &missing))
}

/// A universal query checked and ready: a vector query as it is; a query by example
/// ([`examples`]) once its examples are read and averaged into a vector.
pub(super) async fn prepare_query(
    st: &AppState,
    name: &str,
    layout: &VectorLayout,
    q: &QueryRequest,
    read: &ReadOptions,
    what: &str,
) -> Result<Prepared, ApiError> {
    // `{"nearest": <point id>}` is how qdrant-client sends `query=<id>`.
    let example = match &q.query {
        Some(QueryInput::Other(query)) => Some(query),
        Some(QueryInput::Nearest(VectorInput::Other(id))) if id.is_number() || id.is_string() => {
            Some(id)
        }
        _ => None,
    };
    let Some(query) = example else {
        if q.lookup_from.as_ref().is_some_and(|l| !l.is_null()) {
            return Err(ApiError::bad(
                "lookup_from applies to queries by example (a point id or recommend)",
            ));
        }
        return prepare(
            &st.config.limits,
            layout,
            query_input(q, parse::query_vector(q)?),
            what,
        );
    };
    parse::query_shape(q)?;
    let ex = examples::parse_query(query).map_err(|e| in_query(e, what))?;
    let lane = layout.lane_of(q.using.as_deref())?;
    let lookup = examples::lookup_collection(q.lookup_from.as_ref(), name, q.using.as_deref())?;
    let (vector, exclude) =
        examples::resolve(st, name, &lookup, &ex, &layout.lane_config(lane), read).await?;
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(10));
    // Enough hits that `limit` remain once the examples are left out.
    let mut p = prepare(
        &st.config.limits,
        layout,
        query_input(q, &VectorInput::Dense(vector)),
        what,
    )?;
    p.query.offset = 0;
    p.query.limit = offset.saturating_add(limit).saturating_add(exclude.len());
    p.query.check_params(&layout.lane_config(lane))?;
    p.exclude = exclude;
    p.window = Some((offset, limit));
    Ok(p)
}

/// The search a universal query asks for, with `vector` as its vector.
fn query_input<'a>(q: &'a QueryRequest, vector: &'a VectorInput) -> SearchInput<'a> {
    SearchInput {
        vector,
        using: q.using.as_deref(),
        limit: q.limit.unwrap_or(10),
        offset: q.offset,
        filter: q.filter.as_ref(),
        params: q.params.as_ref(),
        with_payload: q.with_payload.as_ref(),
        with_vector: q.with_vector.as_ref(),
        score_threshold: q.score_threshold,
    }
}

/// `e` with `what` (e.g. `searches[2]`) in front when it is a 400.
fn in_query(e: ApiError, what: &str) -> ApiError {
    match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("{what}: {m}")),
        other => other,
    }
}

/// Nearest neighbours (Qdrant's universal query API, vector queries only).
#[utoipa::path(post, path = "/collections/{name}/points/query", tag = "search", request_body = QueryRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = QueryResponse), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn query_points(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<QueryRequest>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.read)?;
    let p = prepare_query(&st, &name, &layout, &req, &read, "query").await?;
    let (mut out, missing) = run_all(&st, &name, std::slice::from_ref(&p), &read).await?;
    Ok(answer(
        QueryResponse {
            points: out.pop().unwrap_or_default(),
        },
        &missing,
    ))
}

/// Several queries; all are checked before any runs.
#[utoipa::path(post, path = "/collections/{name}/points/query/batch", tag = "search", request_body = QueryBatch,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = Vec<QueryResponse>), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn query_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<QueryBatch>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.read)?;
    st.config.limits.check_queries(req.searches.len())?;
    let mut ps = Vec::with_capacity(req.searches.len());
    for (i, q) in req.searches.iter().enumerate() {
        ps.push(prepare_query(&st, &name, &layout, q, &read, &format!("searches[{i}]")).await?);
    }
    let (out, missing) = run_all(&st, &name, &ps, &read).await?;
    let out: Vec<QueryResponse> = out
        .into_iter()
        .map(|points| QueryResponse { points })
        .collect();
    Ok(answer(out, &missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_options_combine_query_and_body() {
        let mut t = ConsistencyToken::new();
        t.observe(4, 10);
        let q = ReadQuery {
            consistency: None,
            consistency_token: Some(t.encode()),
            allow_partial: Some(true),
        };
        let r = read_options(&q, &ReadFields::default()).unwrap();
        assert_eq!(
            r.consistency,
            Consistency::Session,
            "a token implies session"
        );
        assert_eq!(r.token, Some(t.clone()));
        assert!(r.allow_partial);

        let body = ReadFields {
            consistency: Some(serde_json::json!("majority")),
            consistency_token: None,
            allow_partial: Some(false),
        };
        let r = read_options(&q, &body).unwrap();
        assert_eq!(r.consistency, Consistency::Strong);
        assert!(!r.allow_partial, "the body wins");

        let r = read_options(&ReadQuery::default(), &ReadFields::default()).unwrap();
        assert_eq!(r.consistency, Consistency::Eventual);
        assert_eq!(r.token, None);

        let bad = ReadQuery {
            consistency_token: Some("garbage!".into()),
            ..ReadQuery::default()
        };
        let e = read_options(&bad, &ReadFields::default()).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        let bad = ReadQuery {
            consistency: Some("sometimes".into()),
            ..ReadQuery::default()
        };
        assert!(read_options(&bad, &ReadFields::default()).is_err());
    }
}
