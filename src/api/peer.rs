//! Qdrant's node-level cluster routes for qdrant-client: `POST /cluster/recover`
//! (`recover_current_peer`: restart this node's Raft storage now, [`crate::cluster::Cluster::recover_now`])
//! and `GET /cluster/telemetry` (`cluster_telemetry`: collections, shards, replicas and peers
//! probed live, [`crate::cluster::telemetry`]).

use super::error::ApiError;
use super::handlers::QDRANT_API_LEVEL;
use super::{AppState, ok};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

/// `GET /cluster/telemetry`'s query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// Qdrant's level of detail; accepted, every level answers the same.
    pub details_level: Option<u32>,
    /// Accepted; each member's status probe has its own deadline (0.8 s).
    pub timeout: Option<u64>,
}

/// Qdrant's `recover_current_peer`. If this node's Raft log failed or some of its Raft groups
/// stopped on a storage error (a full disk), prove the disk writable, reopen the log and
/// restart those groups now (the node also does this by itself every second). `true` once the
/// node's Raft storage runs (also when nothing had failed); 503 with the reason while the disk
/// still cannot take writes.
#[utoipa::path(post, path = "/cluster/recover", tag = "cluster",
    responses((status = 200, body = bool), (status = 503)))]
pub async fn recover_current_peer(State(st): State<AppState>) -> Result<Response, ApiError> {
    match st.cluster.recover_now().await {
        Ok(restarted) => {
            if restarted > 0 {
                tracing::info!(restarted, "recover_current_peer: raft groups restarted");
            }
            Ok(ok(true))
        }
        Err(why) => Err(ApiError::Unavailable(format!(
            "recover_current_peer: this node's raft storage cannot be written yet: {why}"
        ))),
    }
}

/// Qdrant's `cluster_telemetry`: every collection's shards and replicas (state, index build
/// running or not, points) and every peer (answered just now or not; this node's consensus
/// details), from a live probe of every member.
#[utoipa::path(get, path = "/cluster/telemetry", tag = "cluster", params(TelemetryQuery),
    responses((status = 200, body = crate::cluster::telemetry::DistributedTelemetry)))]
pub async fn cluster_telemetry(
    State(st): State<AppState>,
    Query(_q): Query<TelemetryQuery>,
) -> Response {
    ok(crate::cluster::telemetry::cluster_telemetry(&st.cluster, QDRANT_API_LEVEL).await)
}
