//! The cluster service (service byte [`CLUSTER_SERVICE`]) on the internal port: requests that
//! must run on the metadata leader (joins, collection create/delete, centroids, replica moves),
//! shard-group membership changes that must run on a shard leader, and the live status of a
//! node's replicas. Messages are postcard; the enums are append-only.

use super::Cluster;
use super::placement::CentroidPlacement;
use super::status::NodeStatus;
use crate::collection::{CollectionSpec, Error};
use crate::raft::tcp::{AppFuture, AppService};
use crate::raft::{GroupId, NodeId, NodeInfo};
use serde::{Deserialize, Serialize};
use std::sync::Weak;

/// Service byte of the cluster service.
pub const CLUSTER_SERVICE: u8 = 1;

/// A request to the cluster service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// (Metadata leader) Add `id` to the metadata group and record its addresses.
    Join {
        /// The joining node.
        id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// (Metadata leader) Create a collection; the leader resolves the spec with its defaults.
    CreateCollection {
        /// Name.
        name: String,
        /// What the collection asks for.
        spec: CollectionSpec,
    },
    /// (Metadata leader) Delete a collection.
    DeleteCollection {
        /// Name.
        name: String,
    },
    /// (Metadata leader) Store centroids unless some are stored.
    SetCentroids {
        /// Collection.
        name: String,
        /// Proposed placement.
        centroids: CentroidPlacement,
    },
    /// (Metadata leader) Move a shard replica from one node to another.
    MoveReplica {
        /// Collection.
        name: String,
        /// Shard number.
        shard: u32,
        /// Node losing the replica.
        from: NodeId,
        /// Node gaining it.
        to: NodeId,
    },
    /// (Any node) The state of every replica on the node.
    Status,
    /// (Shard leader) Add a learner to a shard group and wait until it has caught up.
    ShardAddLearner {
        /// The group.
        group: GroupId,
        /// The new replica's node.
        id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// (Shard leader) Make `voters` the voting members of a shard group.
    ShardSetVoters {
        /// The group.
        group: GroupId,
        /// The voters.
        voters: Vec<NodeId>,
    },
    /// A request a member already forwarded to the node it believes leads: run it here or
    /// answer `NotLeader`, never forward again (no forwarding loops during elections).
    Forwarded(Box<ClusterRequest>),
    /// (Metadata leader) Remove a member that holds no shard replica: out of the metadata group
    /// (a learner promoted in its place if it voted) and out of the member list.
    RemoveMember {
        /// The node.
        id: NodeId,
    },
}

impl ClusterRequest {
    /// Whether only the metadata leader may run it.
    pub fn needs_meta_leader(&self) -> bool {
        match self {
            ClusterRequest::Status
            | ClusterRequest::ShardAddLearner { .. }
            | ClusterRequest::ShardSetVoters { .. } => false,
            ClusterRequest::Forwarded(inner) => inner.needs_meta_leader(),
            _ => true,
        }
    }
}

/// The answer of the cluster service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterReply {
    /// Done; `index` is the metadata log index to wait for locally, `body` any result bytes.
    Done {
        /// Metadata log index that holds the change (or the leader's read index).
        index: u64,
        /// Result bytes (e.g. the stored centroids).
        body: Vec<u8>,
    },
    /// This node cannot run it: ask `leader` (if known).
    NotLeader {
        /// The leader this node believes in.
        leader: Option<NodeId>,
    },
    /// Refused or failed: the core error as the serving node raised it.
    Failed(Error),
    /// Answer to [`ClusterRequest::Status`].
    Status(Box<NodeStatus>),
}

impl ClusterReply {
    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decode from the wire.
    pub fn decode(bytes: &[u8]) -> Self {
        postcard::from_bytes(bytes).unwrap_or_else(|e| {
            ClusterReply::Failed(Error::Internal(format!("undecodable cluster answer: {e}")))
        })
    }
}

/// The server side: decodes a request and runs it on this node.
pub(crate) struct ClusterService {
    pub(crate) cluster: Weak<Cluster>,
}

impl AppService for ClusterService {
    fn handle(&self, _from: NodeId, payload: Vec<u8>) -> AppFuture {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let Some(cluster) = cluster.upgrade() else {
                return ClusterReply::Failed(Error::unavailable("shutting down")).encode();
            };
            let reply = match postcard::from_bytes::<ClusterRequest>(&payload) {
                Ok(ClusterRequest::Forwarded(req)) => cluster.handle_here(*req).await,
                Ok(req) if req.needs_meta_leader() && !cluster.is_meta_leader() => {
                    // One forwarding hop to the leader this node believes in (joins arrive
                    // at whichever member `--join` named).
                    match cluster.meta_group().metrics().leader {
                        Some(l) if l != cluster.node_id() => {
                            let fwd = ClusterRequest::Forwarded(Box::new(req));
                            cluster
                                .call_cluster(l, None, &fwd, super::FORWARD_TIMEOUT)
                                .await
                                .unwrap_or(ClusterReply::NotLeader { leader: Some(l) })
                        }
                        leader => ClusterReply::NotLeader { leader },
                    }
                }
                Ok(req) => cluster.handle_here(req).await,
                Err(e) => ClusterReply::Failed(Error::bad(format!("bad cluster request: {e}"))),
            };
            reply.encode()
        })
    }
}
