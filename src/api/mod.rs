//! The REST API: Qdrant's JSON over axum, so `qdrant-client` works against shoal unchanged.
//!
//! Every answer is `{"result": ..., "status": "ok", "time": seconds}`; every error is
//! `{"status": {"error": "..."}, "time": seconds}` with a 4xx/5xx status ([`ApiError`]).
//! Bodies are read as bytes under a size limit and parsed by hand, so empty, oversized and
//! malformed bodies get a clear 4xx too; a body over [`PARSE_OFF_WORKER`] bytes is parsed on the
//! blocking pool (a few at a time), not on the runtime worker that serves other connections.
//! A body on POST/PUT/PATCH/DELETE must be `Content-Type: application/json` (415 otherwise) and
//! heavy reads wait for a slot ([`guard`]); each request has a deadline (`request_timeout`),
//! after which it is answered 503 and its handler dropped: what that cancels is said in
//! [`crate::router::exec`] (shard reads not yet running are dropped; running ones finish;
//! a write already proposed to Raft is still applied). The caps on one request (filter size,
//! batch length, scroll page) are [`crate::collection::limits::RequestLimits`], checked by the
//! router and, earlier for whole batches, here.
//!
//! ## Compatibility with Qdrant
//! Supported: collections (create, list, get, exists, delete), aliases (create, delete, rename
//! in one all-or-nothing batch, list; an alias works wherever a collection name does, [`aliases`]),
//! grouped search (`search/groups`, `query/groups`, [`groups`]), facet counts ([`facet`]), the
//! distance matrix over a random sample (`search/matrix/pairs`, `.../offsets`, [`matrix`]), points (upsert as `points` or
//! `batch`, retrieve, get one, delete by ids or filter, count, scroll), search (`query`,
//! `query/batch`, `search`, `search/batch`) with filters (every Qdrant condition: `must`/
//! `should`/`must_not`/`min_should`, `match` value/any/except/text/phrase, `range` over numbers and
//! date-times, `has_id`, `has_vector`, `is_empty`, `is_null`, `values_count`, `nested`, geo
//! radius/box/polygon; an unknown condition is a 400 naming it), payload indexes
//! (`PUT /collections/{name}/index`, `DELETE .../index/{field}`, reported in `payload_schema`),
//! payload updates (set, overwrite, delete keys, clear; by ids or filter) and scroll `order_by`
//! on an indexed numeric or date-time field ([`payload`]), snapshots (collection, shard and full:
//! create, list, download, delete; recover a collection or a shard, [`snapshots`]). Ids are unsigned integers or UUIDs. Scores follow Qdrant: cosine and dot are similarities (higher is closer), Euclid is
//! the distance (lower is closer).
//!
//! Accepted and ignored (reported with fixed values by `GET /collections/{name}`):
//! `hnsw_config`, `optimizers_config`, `wal_config`, `quantization_config`, `on_disk_payload`,
//! `write_consistency_factor`, `params.hnsw_ef`, `count.exact` (counts are exact), `wait` (every
//! write is applied and durable in the Raft log before it is answered).
//! Named vectors (`vectors` as a map on create, a vector per name on upsert, `using` or the
//! search API's `{"name", "vector"}` on queries, vectors by name in answers; [`vectors`]): every
//! point carries every named vector. Refused with a 400: a point missing one of its named
//! vectors, sparse vectors, `Manhattan`, `prefetch`, non-vector queries, a `replication_factor`
//! above the number of cluster members.
//!
//! shoal's own fields: `ivf_pq_config` and `search_config` on create; `params.nprobe`,
//! `params.rerank`, `params.shard_probe` on searches; `consistency_token` in write answers.
//!
//! ## Serving
//! [`serve`] takes a bound listener and a shutdown future, as mini-redis does: the binary passes
//! ctrl-c/SIGTERM, tests bind `127.0.0.1:0`. On shutdown the server stops accepting and finishes
//! the requests in flight; [`crate::node`] then stops the node under it.
//!
//! This layer holds only Qdrant's wire types ([`types`]), their conversion into the collection
//! model ([`collections`], [`parse`]) and the one mapping of core errors to HTTP ([`error`]); every
//! check of a value lives in [`crate::collection`].

pub mod aliases;
pub mod auth;
pub mod batch;
pub mod cluster;
pub mod collections;
pub mod error;
pub mod examples;
pub mod facet;
pub mod groups;
pub mod guard;
pub mod handlers;
pub mod matrix;
pub mod metrics;
pub mod optimizations;
pub mod parse;
pub mod payload;
pub mod peer;
pub mod points;
pub mod readiness;
pub mod snapshots;
pub mod types;
pub mod vector_input;
pub mod vectors;

pub use crate::config::ApiConfig;
pub use error::ApiError;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::serve::ListenerExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use utoipa::OpenApi;

tokio::task_local! {
    static REQUEST_START: Instant;
}

/// Seconds since the current request started (0 outside a request).
pub fn elapsed_now() -> f64 {
    REQUEST_START
        .try_with(|s| s.elapsed().as_secs_f64())
        .unwrap_or(0.0)
}

/// Qdrant's answer envelope, serialised straight from the typed result (no intermediate
/// `serde_json::Value` tree: building one cost more server CPU per search than the HTTP parsing).
#[derive(Serialize)]
struct Envelope<T> {
    result: T,
    status: &'static str,
    time: f64,
}

/// Wraps a result in Qdrant's answer envelope.
pub fn ok<T: Serialize>(result: T) -> Response {
    axum::Json(Envelope {
        result,
        status: "ok",
        time: elapsed_now(),
    })
    .into_response()
}

/// What every handler can reach: one shared allocation, so the copy that every middleware and
/// handler extracts per request is one reference count, not one per field (perf showed the
/// per-field clones and drops at about 1% of a query's server CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The cluster this node belongs to (collections live in its metadata).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Routes point operations to the shards' replicas.
    pub router: Arc<crate::router::Router>,
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// Request counters and latency histograms.
    pub metrics: Arc<metrics::Metrics>,
    /// False once shutdown has begun.
    pub ready: Arc<AtomicBool>,
    /// Slots of heavy reads ([`guard::Admission`]).
    pub admission: Arc<guard::Admission>,
    /// Large bodies parsed at once on the blocking pool.
    pub parses: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// State over a started node's cluster and router.
    pub fn new(
        cluster: Arc<crate::cluster::Cluster>,
        router: Arc<crate::router::Router>,
        config: ApiConfig,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        AppState(Arc::new(Shared {
            cluster,
            router,
            admission: Arc::new(guard::Admission::new(
                config.search_concurrency(),
                config.search_queue,
            )),
            parses: Arc::new(tokio::sync::Semaphore::new(cores)),
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::default()),
            ready: Arc::new(AtomicBool::new(true)),
        }))
    }
}

/// Bodies larger than this are parsed on the blocking pool (at most one per core at once):
/// parsing 1 MiB of JSON takes milliseconds, 32 MiB a good fraction of a second, which would
/// otherwise stall every connection served by the same runtime worker.
pub const PARSE_OFF_WORKER: usize = 1 << 20;

/// A JSON body read under the size limit; every failure is a Qdrant-style 4xx.
pub struct JsonBody<T>(pub T);

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(format!(
                        "request body too large: the limit is {} bytes",
                        state.config.body_limit
                    ))
                } else {
                    ApiError::bad(format!("cannot read body: {}", e.body_text()))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad("empty body: expected a JSON object"));
        }
        if bytes.len() <= PARSE_OFF_WORKER {
            return parse_json(&bytes).map(JsonBody);
        }
        // The permit goes with the parse: one still running after its request timed out keeps
        // counting against the bound until it is done.
        let permit = state
            .parses
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            parse_json(&bytes)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("parsing the body failed: {e}")))?
        .map(JsonBody)
    }
}

/// The OpenAPI description of every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shoal",
        description = "Sharded IVF-PQ vector database; Qdrant-compatible REST API. Answers are wrapped as {\"result\": ..., \"status\": \"ok\", \"time\": seconds}; errors as {\"status\": {\"error\": \"...\"}, \"time\": seconds}."
    ),
    paths(
        handlers::root,
        handlers::list_collections,
        handlers::create_collection,
        handlers::update_collection,
        handlers::get_collection,
        handlers::delete_collection,
        handlers::collection_exists,
        aliases::update_aliases,
        aliases::list_aliases,
        aliases::collection_aliases,
        points::upsert_points,
        points::retrieve_points,
        points::get_point,
        points::delete_points,
        points::update_vectors,
        points::delete_vectors,
        batch::batch_update,
        points::count_points,
        points::scroll_points,
        points::search_points,
        points::search_batch,
        points::query_points,
        points::query_batch,
        groups::search_groups,
        groups::query_groups,
        facet::facet,
        matrix::matrix_pairs,
        matrix::matrix_offsets,
        payload::create_field_index,
        payload::delete_field_index,
        payload::set_payload,
        payload::overwrite_payload,
        payload::delete_payload,
        payload::clear_payload,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        cluster::cluster_status,
        cluster::move_replica,
        cluster::remove_member,
        cluster::collection_cluster_info,
        cluster::collection_cluster_update,
        cluster::remove_peer,
        cluster::partition,
        snapshots::create_snapshot,
        snapshots::list_snapshots,
        snapshots::get_snapshot,
        snapshots::delete_snapshot,
        snapshots::recover_snapshot,
        snapshots::create_shard_snapshot,
        snapshots::list_shard_snapshots,
        snapshots::get_shard_snapshot,
        snapshots::delete_shard_snapshot,
        snapshots::recover_shard_snapshot,
        snapshots::create_full_snapshot,
        snapshots::list_full_snapshots,
        snapshots::get_full_snapshot,
        snapshots::delete_full_snapshot,
        peer::recover_current_peer,
        peer::cluster_telemetry,
        optimizations::get_optimizations,
    ),
    components(schemas(
        crate::shard::filter::Filter,
        crate::shard::filter::Condition,
        types::CollectionConfig,
        types::ResolvedIvfPq,
        types::ResolvedSearch,
        types::VectorParams,
        types::Distance,
        types::ReadFields,
        crate::cluster::status::ClusterView,
        crate::cluster::status::QdrantPeer,
        crate::cluster::status::RaftInfo,
        crate::cluster::status::ConsensusStatus,
        crate::cluster::status::MessageSendErrors,
        crate::cluster::telemetry::DistributedTelemetry,
        crate::cluster::telemetry::CollectionTelemetry,
        crate::cluster::telemetry::ShardTelemetry,
        crate::cluster::telemetry::ReplicaTelemetry,
        crate::cluster::telemetry::ClusterTelemetry,
        crate::cluster::telemetry::PeerTelemetry,
        crate::cluster::telemetry::PeerDetails,
        crate::cluster::status::MetaView,
        crate::cluster::status::MemberView,
        crate::cluster::status::CollectionView,
        crate::cluster::status::ShardView,
        crate::cluster::status::ReplicaView,
        cluster::MoveReplica,
        cluster::Partition,
        cluster::ClusterOperation,
        aliases::ChangeAliases,
        aliases::AliasOperation,
        aliases::CreateAlias,
        aliases::DeleteAlias,
        aliases::RenameAlias,
        aliases::AliasesList,
        aliases::AliasDescription,
        groups::SearchGroupsRequest,
        groups::QueryGroupsRequest,
        groups::PointGroup,
        groups::GroupsResult,
        facet::FacetRequest,
        facet::FacetHit,
        facet::FacetResponse,
        matrix::SearchMatrixRequest,
        matrix::MatrixPair,
        matrix::MatrixPairs,
        matrix::MatrixOffsets,
        batch::BatchUpdate,
        crate::cluster::snapshots::SnapshotDescription,
        snapshots::SnapshotRecover,
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `shoal openapi` prints and `api/openapi.json` holds).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

async fn track(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    // Both are cheap clones (a shared string, a method constant): nothing allocated per request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let deadline = st.config.request_timeout;
    let resp = REQUEST_START
        .scope(start, async move {
            match tokio::time::timeout(deadline, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => ApiError::Unavailable(format!(
                    "request timed out after {} s (a write may still have been applied)",
                    deadline.as_secs_f64()
                ))
                .into_response(),
            }
        })
        .await;
    st.metrics.observe(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NoRoute(req.uri().path().to_owned())
}

/// A known path with a method shoal does not serve on it: Qdrant's JSON error naming both, not
/// an empty 405.
async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
    }
}

/// The application: every route, the body limit, authentication, metrics.
pub fn router(state: AppState) -> Router {
    use handlers::*;
    use points::*;
    let api = Router::new()
        .route("/", get(root))
        .route("/collections", get(list_collections))
        .route("/collections/aliases", post(aliases::update_aliases))
        .route("/aliases", get(aliases::list_aliases))
        .route(
            "/collections/{name}/aliases",
            get(aliases::collection_aliases),
        )
        .route(
            "/collections/{name}",
            get(get_collection)
                .put(create_collection)
                .patch(update_collection)
                .delete(delete_collection),
        )
        .route("/collections/{name}/exists", get(collection_exists))
        .route(
            "/collections/{name}/optimizations",
            get(optimizations::get_optimizations),
        )
        .route(
            "/collections/{name}/points",
            axum::routing::put(upsert_points).post(retrieve_points),
        )
        .route("/collections/{name}/points/delete", post(delete_points))
        .route(
            "/collections/{name}/points/vectors",
            put(points::update_vectors),
        )
        .route(
            "/collections/{name}/points/vectors/delete",
            post(points::delete_vectors),
        )
        .route(
            "/collections/{name}/points/batch",
            post(batch::batch_update),
        )
        .route(
            "/collections/{name}/index",
            put(payload::create_field_index),
        )
        .route(
            "/collections/{name}/index/{field}",
            delete(payload::delete_field_index),
        )
        .route(
            "/collections/{name}/points/payload",
            post(payload::set_payload).put(payload::overwrite_payload),
        )
        .route(
            "/collections/{name}/points/payload/delete",
            post(payload::delete_payload),
        )
        .route(
            "/collections/{name}/points/payload/clear",
            post(payload::clear_payload),
        )
        .route("/collections/{name}/points/count", post(count_points))
        .route("/collections/{name}/points/scroll", post(scroll_points))
        .route("/collections/{name}/points/search", post(search_points))
        .route(
            "/collections/{name}/points/search/batch",
            post(search_batch),
        )
        .route("/collections/{name}/points/query", post(query_points))
        .route("/collections/{name}/points/query/batch", post(query_batch))
        .route(
            "/collections/{name}/points/query/groups",
            post(groups::query_groups),
        )
        .route(
            "/collections/{name}/points/search/groups",
            post(groups::search_groups),
        )
        .route("/collections/{name}/facet", post(facet::facet))
        .route(
            "/collections/{name}/snapshots",
            get(snapshots::list_snapshots).post(snapshots::create_snapshot),
        )
        .route(
            "/collections/{name}/snapshots/recover",
            put(snapshots::recover_snapshot),
        )
        .route(
            "/collections/{name}/snapshots/{snapshot_name}",
            get(snapshots::get_snapshot).delete(snapshots::delete_snapshot),
        )
        .route(
            "/collections/{name}/shards/{shard_id}/snapshots",
            get(snapshots::list_shard_snapshots).post(snapshots::create_shard_snapshot),
        )
        .route(
            "/collections/{name}/shards/{shard_id}/snapshots/recover",
            put(snapshots::recover_shard_snapshot),
        )
        .route(
            "/collections/{name}/shards/{shard_id}/snapshots/{snapshot_name}",
            get(snapshots::get_shard_snapshot).delete(snapshots::delete_shard_snapshot),
        )
        .route(
            "/snapshots",
            get(snapshots::list_full_snapshots).post(snapshots::create_full_snapshot),
        )
        .route(
            "/snapshots/{snapshot_name}",
            get(snapshots::get_full_snapshot).delete(snapshots::delete_full_snapshot),
        )
        .route(
            "/collections/{name}/points/search/matrix/pairs",
            post(matrix::matrix_pairs),
        )
        .route(
            "/collections/{name}/points/search/matrix/offsets",
            post(matrix::matrix_offsets),
        )
        .route("/collections/{name}/points/{id}", get(get_point))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster::cluster_status))
        .route("/cluster/recover", post(peer::recover_current_peer))
        .route("/cluster/telemetry", get(peer::cluster_telemetry))
        .route(
            "/cluster/collections/{name}/shards/{shard}/move",
            post(cluster::move_replica),
        )
        .route("/cluster/members/{id}", delete(cluster::remove_member))
        .route("/cluster/peer/{id}", delete(cluster::remove_peer))
        .route(
            "/collections/{name}/cluster",
            get(cluster::collection_cluster_info).post(cluster::collection_cluster_update),
        );
    let api = if state.cluster.settings().fault_injection {
        api.route("/debug/partition", post(cluster::partition))
    } else {
        api
    };
    let api = api
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Innermost first: a heavy read's slot, the body's media type, the start-up gate for writes,
    // API keys (every route and the fallbacks), then the deadline and metrics around all of it.
    api.route_layer(middleware::from_fn_with_state(state.clone(), guard::admit))
        .route_layer(middleware::from_fn(guard::content_type))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            readiness::gate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), auth::check))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in
/// flight. Stopping the node underneath is the caller's ([`crate::node`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let ready = state.ready.clone();
    // Answers go out without waiting for the peer's ACK of the previous segment (Nagle): with
    // keep-alive connections and a client that delays its ACKs, a response split over two
    // writes could otherwise wait up to 40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await;
    tracing::info!("HTTP drained");
    result
}
