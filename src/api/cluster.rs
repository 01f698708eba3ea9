//! Cluster routes: `GET /cluster` (members, metadata leader, every shard's replicas asked live),
//! `POST /cluster/collections/{name}/shards/{shard}/move` (move a replica between nodes),
//! `DELETE /cluster/members/{id}` (remove a node for good), and,
//! with `--fault-injection` only, `POST /debug/partition` (cut this node off from peers).
//!
//! The same operations in Qdrant's shapes, for qdrant-client: `GET /collections/{name}/cluster`
//! (`collection_cluster_info`: this node's and the other nodes' replicas of each shard),
//! `POST /collections/{name}/cluster` (`cluster_collection_update`: `move_shard`; the other
//! operations — replicate, drop, abort or restart a transfer, shard keys — are refused by name,
//! shoal has no such operation) and `DELETE /cluster/peer/{id}` (`remove_peer`).

use super::error::ApiError;
use super::{AppState, JsonBody, ok};
use crate::cluster::status::cluster_view;
use crate::cluster::telemetry::qdrant_replica_state;
use crate::raft::NodeId;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
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

/// The collection's name behind `name` (an alias resolves), or a 404.
fn collection_name(st: &AppState, name: &str) -> Result<String, ApiError> {
    st.cluster
        .state()
        .resolve(name)
        .map(|(n, _)| n.to_owned())
        .ok_or_else(|| ApiError::CollectionNotFound(name.to_owned()))
}

/// Where each shard's replicas are, in Qdrant's shape (qdrant-client's
/// `collection_cluster_info`): replicas on this node are `local_shards`, the others
/// `remote_shards` with their node as `peer_id`. Transfers are not listed: a move answers only
/// once it is done.
#[utoipa::path(get, path = "/collections/{name}/cluster", tag = "cluster",
    params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404)))]
pub async fn collection_cluster_info(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = collection_name(&st, &name)?;
    let view = cluster_view(&st.cluster).await;
    let col = view
        .collections
        .get(&name)
        .ok_or_else(|| ApiError::CollectionNotFound(name.clone()))?;
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for shard in &col.shards {
        for r in &shard.replicas {
            let state = qdrant_replica_state(r);
            if r.node == view.node_id {
                local.push(json!({"shard_id": shard.shard, "points_count": r.points.unwrap_or(0), "state": state}));
            } else {
                remote.push(json!({"shard_id": shard.shard, "peer_id": r.node, "state": state}));
            }
        }
    }
    Ok(ok(json!({
        "peer_id": view.node_id,
        "shard_count": col.shard_number,
        "local_shards": local,
        "remote_shards": remote,
        "shard_transfers": [],
    })))
}

/// `POST /collections/{name}/cluster`: one operation, `{"<kind>": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterOperation {
    /// `{"shard_id", "from_peer_id", "to_peer_id"}`: move a replica (the only kind served).
    #[schema(value_type = Option<Object>)]
    pub move_shard: Option<Value>,
    /// Every other kind Qdrant has is refused by name.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: serde_json::Map<String, Value>,
}

/// `move_shard`'s body.
#[derive(Debug, Deserialize)]
struct MoveShard {
    shard_id: u32,
    from_peer_id: NodeId,
    to_peer_id: NodeId,
    /// Qdrant's transfer method; shoal streams a snapshot and then the log, whatever is asked.
    #[serde(default)]
    #[allow(dead_code)]
    method: Option<Value>,
}

/// Qdrant's cluster operation on a collection (qdrant-client's `cluster_collection_update`):
/// `move_shard` moves a replica as `POST /cluster/collections/{name}/shards/{shard}/move` does
/// and answers once the move is committed.
#[utoipa::path(post, path = "/collections/{name}/cluster", tag = "cluster",
    request_body = ClusterOperation, params(("name" = String, Path)),
    responses((status = 200, body = bool), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn collection_cluster_update(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ClusterOperation>,
) -> Result<Response, ApiError> {
    let name = collection_name(&st, &name)?;
    if let Some(kind) = req.other.keys().next() {
        return Err(ApiError::bad(format!(
            "cluster operation `{kind}` is not supported: shoal moves replicas (`move_shard`) and keeps each shard's replica count"
        )));
    }
    let Some(body) = req.move_shard else {
        return Err(ApiError::bad(
            "give one cluster operation, e.g. `move_shard`",
        ));
    };
    let m: MoveShard =
        serde_json::from_value(body).map_err(|e| ApiError::bad(format!("move_shard: {e}")))?;
    st.cluster
        .move_replica(&name, m.shard_id, m.from_peer_id, m.to_peer_id)
        .await?;
    Ok(ok(true))
}

/// `DELETE /cluster/peer/{id}`'s query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemovePeerQuery {
    /// Qdrant removes a peer that still holds replicas with `force`; shoal refuses it (move
    /// the replicas first), so `force=true` is a 400 rather than a silent no.
    pub force: Option<bool>,
}

/// Qdrant's `remove_peer`: `DELETE /cluster/members/{id}` under Qdrant's path.
#[utoipa::path(delete, path = "/cluster/peer/{id}", tag = "cluster",
    params(("id" = u64, Path), RemovePeerQuery),
    responses((status = 200, body = bool), (status = 400), (status = 503)))]
pub async fn remove_peer(
    State(st): State<AppState>,
    Path(id): Path<NodeId>,
    Query(q): Query<RemovePeerQuery>,
) -> Result<Response, ApiError> {
    if q.force == Some(true) {
        return Err(ApiError::bad(
            "force is not supported: move the node's replicas off it first, then remove it",
        ));
    }
    st.cluster.remove_member(id).await?;
    Ok(ok(true))
}
