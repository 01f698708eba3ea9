//! Cluster routes: `GET /cluster` (members, metadata leader, every shard's replicas asked live),
//! `POST /cluster/collections/{name}/shards/{shard}/move` (move a replica between nodes),
//! `DELETE /cluster/members/{id}` (remove a node for good), and,
//! with `--fault-injection` only, `POST /debug/partition` (cut this node off from peers).

use super::error::ApiError;
use super::{AppState, JsonBody, ok};
use crate::raft::NodeId;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /cluster/collections/{name}/shards/{shard}/move`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveReplica {
    /// Node giving up its replica.
    pub from: NodeId,
    /// Node receiving it (a member without a replica of this shard).
    pub to: NodeId,
}

/// `POST /debug/partition`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Partition {
    /// Nodes this node may not talk to (empty heals).
    pub blocked: Vec<NodeId>,
}

/// The cluster as this node sees it: members (probed live), the metadata leader and term, and
/// for every shard its group, leader and replicas with role, term, commit, applied index, lag
/// and points. Unreachable nodes are shown as such.
#[utoipa::path(get, path = "/cluster", tag = "cluster",
    responses((status = 200, body = crate::cluster::status::ClusterView)))]
pub async fn cluster_status(State(st): State<AppState>) -> Response {
    ok(crate::cluster::status::cluster_view(&st.cluster).await)
}

/// Move one replica of a shard to another node, on a live cluster: the new node is added as a
/// learner, caught up from the log or a snapshot stream, made a voter, then the old replica is
/// removed and destroyed. Answers when the move is committed.
#[utoipa::path(post, path = "/cluster/collections/{name}/shards/{shard}/move", tag = "cluster",
    request_body = MoveReplica,
    params(("name" = String, Path), ("shard" = u32, Path)),
    responses((status = 200, body = bool), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn move_replica(
    State(st): State<AppState>,
    Path((name, shard)): Path<(String, u32)>,
    JsonBody(req): JsonBody<MoveReplica>,
) -> Result<Response, ApiError> {
    st.cluster
        .move_replica(&name, shard, req.from, req.to)
        .await?;
    Ok(ok(true))
}

/// Remove a node from the cluster for good (it died, or was stopped and will not return):
/// refused while it holds shard replicas (move them first); if it was a metadata voter, a live
/// learner takes its vote. A removed node may not come back under the same id.
#[utoipa::path(delete, path = "/cluster/members/{id}", tag = "cluster",
    params(("id" = u64, Path)),
    responses((status = 200, body = bool), (status = 400), (status = 503)))]
pub async fn remove_member(
    State(st): State<AppState>,
    Path(id): Path<NodeId>,
) -> Result<Response, ApiError> {
    st.cluster.remove_member(id).await?;
    Ok(ok(true))
}

/// Tests only (`--fault-injection`): drop internal traffic to and from `blocked` nodes until
/// called again with `[]`.
#[utoipa::path(post, path = "/debug/partition", tag = "cluster", request_body = Partition,
    responses((status = 200, body = bool), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn partition(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<Partition>,
) -> Result<Response, ApiError> {
    st.cluster
        .set_blocked(req.blocked.into_iter().collect())
        .await;
    Ok(ok(true))
}
