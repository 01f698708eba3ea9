//! Route handlers for collections and the service: one function per Qdrant operation. Each
//! parses and checks its whole request before touching the collection, so a refused request
//! changes nothing. Point and search handlers live in [`super::points`].

use super::error::ApiError;
use super::types::*;
use super::{AppState, JsonBody, ok};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::json;

/// The Qdrant REST API level shoal's routes and shapes follow (the operations it serves are
/// those in `api/openapi.json`): what `GET /` reports as `version`, since qdrant-client compares
/// it with its own version and warns when the minor versions are more than one apart.
pub const QDRANT_API_LEVEL: &str = "1.20.0";

/// Version banner, unwrapped as Qdrant answers it (qdrant-client's version check reads it):
/// `version` is the Qdrant API level, `shoal_version` shoal's own.
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, body = VersionInfo)))]
pub async fn root() -> axum::Json<VersionInfo> {
    axum::Json(VersionInfo {
        title: "shoal".into(),
        version: QDRANT_API_LEVEL.into(),
        shoal_version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// List collections.
#[utoipa::path(get, path = "/collections", tag = "collections", responses((status = 200, body = CollectionsList)))]
pub async fn list_collections(State(st): State<AppState>) -> Response {
    let collections = st
        .cluster
        .state()
        .collections
        .keys()
        .map(|name| CollectionDescription { name: name.clone() })
        .collect();
    ok(CollectionsList { collections })
}

/// Create a collection.
#[utoipa::path(put, path = "/collections/{name}", tag = "collections", request_body = CreateCollection,
    params(("name" = String, Path, description = "1-255 characters of A-Z a-z 0-9 _ -"), MetaQuery),
    responses((status = 200, body = bool), (status = 400), (status = 409), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn create_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MetaQuery>,
    JsonBody(req): JsonBody<CreateCollection>,
) -> Result<Response, ApiError> {
    let (spec, named) = super::collections::spec_of(&req)?;
    let cluster = st.cluster.clone();
    let create = async move { cluster.create_named_collection(&name, spec, named).await };
    within(q.timeout, "create_collection", create).await?;
    Ok(ok(true))
}

/// Change a collection's settings (qdrant-client's `update_collection`): shoal's
/// `search_config` takes effect on the next query; Qdrant's engine tunings are accepted with no
/// effect, as on create; what cannot change on a live collection is a 400 naming it.
#[utoipa::path(patch, path = "/collections/{name}", tag = "collections", request_body = UpdateCollection,
    params(("name" = String, Path), MetaQuery),
    responses((status = 200, body = bool), (status = 400), (status = 404), (status = 503)))]
pub async fn update_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MetaQuery>,
    JsonBody(req): JsonBody<UpdateCollection>,
) -> Result<Response, ApiError> {
    let (name, current) = {
        let state = st.cluster.state();
        let (n, c) = state
            .resolve(&name)
            .ok_or_else(|| ApiError::CollectionNotFound(name.clone()))?;
        (n.to_owned(), c.vectors())
    };
    let update = super::collections::update_of(&req, &current)?;
    let cluster = st.cluster.clone();
    let change = async move { cluster.update_collection(&name, update).await };
    within(q.timeout, "update_collection", change).await?;
    Ok(ok(true))
}

/// Delete a collection (answers `false` if it did not exist, as Qdrant does).
#[utoipa::path(delete, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path), MetaQuery), responses((status = 200, body = bool), (status = 503)))]
pub async fn delete_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MetaQuery>,
) -> Result<Response, ApiError> {
    let cluster = st.cluster.clone();
    let delete = async move { cluster.delete_collection(&name).await };
    let deleted = within(q.timeout, "delete_collection", delete).await?;
    Ok(ok(deleted))
}

/// `op` (a change committed through the metadata group), or a 503 once `timeout` seconds have
/// passed: the answer stops waiting and the change itself runs on to the end in its own task, so
/// it may still be applied (Qdrant's meaning of `timeout` on these routes) but is never cut off
/// half-way by the answer giving up or by the client going away.
pub(super) async fn within<T: Send + 'static>(
    timeout: Option<u64>,
    what: &str,
    op: impl std::future::Future<Output = Result<T, crate::collection::Error>> + Send + 'static,
) -> Result<T, ApiError> {
    let task = tokio::spawn(op);
    let finished = match timeout {
        None => task.await,
        Some(secs) => {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
            // The deadline is checked before the task on every wake-up: `tokio::time::timeout`
            // lets an answer that comes after the deadline win while its timer has not fired
            // yet, which made `timeout=0` sometimes wait for the commit.
            match deadline_first(deadline, task).await {
                Some(joined) => joined,
                None => {
                    return Err(crate::collection::Error::unavailable(format!(
                        "{what} was not committed within timeout={secs}s; it may still be applied"
                    ))
                    .into());
                }
            }
        }
    };
    let result = finished.map_err(|e| {
        crate::collection::Error::internal(format!("{what} stopped unexpectedly: {e}"))
    })?;
    Ok(result?)
}

/// `fut`'s output, or `None` when `deadline` has passed by the time `fut` is polled.
async fn deadline_first<F: std::future::Future>(
    deadline: tokio::time::Instant,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut sleep = std::pin::pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        use std::task::Poll;
        if tokio::time::Instant::now() >= deadline || sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Whether a collection exists.
#[utoipa::path(get, path = "/collections/{name}/exists", tag = "collections",
    params(("name" = String, Path)), responses((status = 200, body = Exists)))]
pub async fn collection_exists(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    ok(Exists {
        exists: st.cluster.state().resolve(&name).is_some(),
    })
}

/// Collection info in Qdrant's shape; Qdrant-only settings are reported with fixed values.
#[utoipa::path(get, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404)))]
pub async fn get_collection(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let state = st.cluster.state();
    // An alias shows the collection it names.
    let (name, meta) = state
        .resolve(&name)
        .map(|(n, m)| (n.to_owned(), m))
        .ok_or_else(|| ApiError::CollectionNotFound(name.clone()))?;
    let cfg = super::collections::config_out(&meta.vectors());
    // One path for every collection, one shard or many: per shard the largest figures any
    // replica reports, summed over the shards.
    let counts = crate::cluster::status::collection_counts(&st.cluster, &name).await;
    let (points, indexed, segments, building) = (
        counts.points,
        counts.indexed_points,
        counts.segments,
        counts.building,
    );
    // Qdrant's shape: field -> {data_type, params, points}, from every shard's replicas (this
    // node may hold none of them).
    let payload_schema: serde_json::Map<String, serde_json::Value> = counts
        .payload_schema
        .into_iter()
        .map(|(field, info)| {
            let v = json!({"data_type": info.data_type, "params": null, "points": info.points});
            (field, v)
        })
        .collect();
    // Each sealed segment's own choice at the collection's recall target, measured when it was
    // built on held-out points of its own (replicas on this node).
    let target = cfg.search_config.recall_target;
    let calibration: Vec<serde_json::Value> = st
        .router
        .calibrations(&name)?
        .into_iter()
        .flat_map(|sc| {
            let (shard, vector) = (sc.shard, sc.vector);
            sc.segments.into_iter().map(move |c| {
                let at = c.at(target);
                // How much a filtered search widens `nprobe` here, per measured share.
                let filtered: Vec<serde_json::Value> = at
                    .map(|p| {
                        c.calibration
                            .filtered
                            .iter()
                            .map(|f| {
                                let factor = c.calibration.widening(f.share, target, p.rerank);
                                json!({"share": f.share, "nprobe_factor": factor})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut entry = json!({
                    "shard": shard,
                    "segment": c.segment,
                    "points": c.rows,
                    "nlist": c.nlist,
                    "recall_target": target,
                    "nprobe": at.map(|p| p.nprobe),
                    "rerank": at.map(|p| p.rerank),
                    "measured_recall": at.map(|p| p.recall),
                    "filtered": filtered,
                });
                if let Some(name) = &vector {
                    entry["vector"] = json!(name);
                }
                entry
            })
        })
        .collect();
    Ok(ok(json!({
        "status": if building > 0 { "yellow" } else { "green" },
        "optimizer_status": "ok",
        "vectors_count": points,
        "indexed_vectors_count": indexed,
        "points_count": points,
        "segments_count": segments,
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
        "payload_schema": payload_schema,
        "calibration": calibration,
    })))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: joined the cluster, metadata caught up, replicas started, not shutting down.
// Also 503 while writes cannot be made durable (a Raft group stopped on a storage error, such as
// a full disk; the answer names the stopped groups). Kept out of the doc comment, which is the
// OpenAPI summary.
#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, body = String), (status = 503)))]
pub async fn readyz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    if !st.ready.load(std::sync::atomic::Ordering::SeqCst) {
        Err(ApiError::Unavailable("shutting down".into()))
    } else if !st.cluster.is_ready() {
        Err(ApiError::Unavailable(
            "joining the cluster and starting replicas".into(),
        ))
    } else if let Some(why) = st.cluster.storage_trouble() {
        Err(ApiError::Unavailable(format!(
            "writes cannot be made durable: {why}"
        )))
    } else {
        Ok("ready")
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    use axum::response::IntoResponse;
    let mut text = st
        .metrics
        .render(&crate::cluster::status::local_collection_stats(&st.cluster));
    text.push_str(&crate::cluster::status::render_metrics(&st.cluster));
    text.push_str(&st.router.render_metrics());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}
