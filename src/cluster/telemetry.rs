//! Qdrant's `GET /cluster/telemetry` (qdrant-client's `cluster_telemetry`): every collection's
//! shards and replicas (their Qdrant state, whether an index build runs, their points) and
//! every peer (answered the status probe just now or not), from one live probe of every member
//! ([`super::status::probe_members`]). The answering node adds its own consensus details
//! (metadata group role, term, commit, pending operations); other peers' `details` are left
//! out, as Qdrant allows, since shoal's status probe does not carry a peer's version.

use super::Cluster;
use super::status::{ConsensusStatus, ReplicaView, assemble, consensus, probe_members};
use crate::raft::NodeId;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A replica's state as Qdrant names it: `Active` (a running voter), `Partial` (a learner
/// still catching up), `Dead` (its node did not answer, or the replica does not run there).
pub fn qdrant_replica_state(r: &ReplicaView) -> &'static str {
    match (r.reachable, r.role.as_deref()) {
        (false, _) | (true, None | Some("shutdown")) => "Dead",
        (true, Some("learner")) => "Partial",
        (true, Some(_)) => "Active",
    }
}

/// Qdrant's `DistributedReplicaTelemetry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaTelemetry {
    /// The node holding it.
    pub peer_id: NodeId,
    /// `Active`, `Partial` or `Dead`.
    pub state: String,
    /// `yellow` while an index build runs on it, `green` otherwise (none when unreachable).
    pub status: Option<String>,
    /// Live points.
    pub num_points: Option<u64>,
    /// Live vectors (one per point).
    pub num_vectors: Option<u64>,
    /// Live points in IVF-PQ segments.
    pub total_optimized_points: Option<u64>,
}

/// Qdrant's `DistributedShardTelemetry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShardTelemetry {
    /// Shard number.
    pub id: u32,
    /// Replicas, in metadata order.
    pub replicas: Vec<ReplicaTelemetry>,
}

/// Qdrant's `DistributedCollectionTelemetry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionTelemetry {
    /// The collection's name.
    pub id: String,
    /// Its shards.
    pub shards: Vec<ShardTelemetry>,
    /// Always empty: a replica move answers only once done, and shoal never reshards.
    #[schema(value_type = Vec<Object>)]
    pub shard_transfers: Vec<serde_json::Value>,
}

/// Qdrant's `DistributedPeerDetails`, for the answering node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PeerDetails {
    /// The Qdrant API level this node serves.
    pub version: String,
    /// Its metadata-group role (`Leader`, `Follower`, `Candidate`).
    pub role: Option<String>,
    /// Whether it votes in the metadata group.
    pub is_voter: bool,
    /// Metadata-group term.
    pub term: u64,
    /// Metadata-group commit index on this node.
    pub commit: u64,
    /// Committed metadata entries not applied yet.
    pub num_pending_operations: u64,
    /// Whether its metadata Raft core runs.
    pub consensus_thread_status: ConsensusStatus,
}

/// Qdrant's `DistributedPeerInfo`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PeerTelemetry {
    /// `http://` and its internal address.
    pub uri: String,
    /// Whether it answered the status probe just now.
    pub responsive: bool,
    /// The answering node's own consensus details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<PeerDetails>,
}

/// Qdrant's `DistributedClusterTelemetry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterTelemetry {
    /// Always true: every shoal node runs the metadata Raft group.
    pub enabled: bool,
    /// Members.
    pub number_of_peers: usize,
    /// Every member by id.
    pub peers: BTreeMap<String, PeerTelemetry>,
}

/// Qdrant's `DistributedTelemetryData`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DistributedTelemetry {
    /// Every collection by name.
    pub collections: BTreeMap<String, CollectionTelemetry>,
    /// The members.
    pub cluster: ClusterTelemetry,
}

/// The telemetry as this node sees it now; `version` is the API level it reports for itself.
pub async fn cluster_telemetry(c: &Cluster, version: &str) -> DistributedTelemetry {
    let statuses = probe_members(c).await;
    let view = assemble(c, &statuses);
    let collections = view
        .collections
        .iter()
        .map(|(name, col)| {
            let shards = col
                .shards
                .iter()
                .map(|s| ShardTelemetry {
                    id: s.shard,
                    replicas: s
                        .replicas
                        .iter()
                        .map(|r| ReplicaTelemetry {
                            peer_id: r.node,
                            state: qdrant_replica_state(r).into(),
                            status: r
                                .segments
                                .map(|g| if g.building > 0 { "yellow" } else { "green" }.into()),
                            num_points: r.points,
                            num_vectors: r.points,
                            total_optimized_points: r.segments.map(|g| g.indexed_points),
                        })
                        .collect(),
                })
                .collect();
            (
                name.clone(),
                CollectionTelemetry {
                    id: name.clone(),
                    shards,
                    shard_transfers: Vec::new(),
                },
            )
        })
        .collect();
    let state = c.state();
    let (raft, consensus_status, _) = consensus(c, &state);
    let me = c.node_id();
    let peers = view
        .members
        .iter()
        .map(|m| {
            let details = (m.id == me).then(|| PeerDetails {
                version: version.to_owned(),
                role: raft.role.clone(),
                is_voter: raft.is_voter,
                term: raft.term,
                commit: raft.commit,
                num_pending_operations: raft.pending_operations,
                consensus_thread_status: consensus_status.clone(),
            });
            (
                m.id.to_string(),
                PeerTelemetry {
                    uri: view
                        .peers
                        .get(&m.id.to_string())
                        .map_or_else(String::new, |p| p.uri.clone()),
                    responsive: m.reachable,
                    details,
                },
            )
        })
        .collect();
    DistributedTelemetry {
        collections,
        cluster: ClusterTelemetry {
            enabled: true,
            number_of_peers: view.members.len(),
            peers,
        },
    }
}

/// The maintenance of this node's replicas of collection `name` (a name or an alias), per
/// shard held here: `(shard, group, optimizations)`. Each replica builds and merges its own
/// segments, so another node's replica of the same shard may be at a different step. `None`
/// for an unknown collection.
pub fn local_optimizations(
    c: &Cluster,
    name: &str,
) -> Option<Vec<(u32, crate::raft::GroupId, crate::shard::Optimizations)>> {
    let state = c.state();
    let (_, meta) = state.resolve(name)?;
    Some(
        meta.shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let local = c.local_shard(s.group)?;
                Some((i as u32, s.group, local.app.shard().optimizations()))
            })
            .collect(),
    )
}
