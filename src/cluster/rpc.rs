//! The cluster service (service byte [`CLUSTER_SERVICE`]) on the internal port: requests that
//! must run on the metadata leader (joins, collection create/delete, centroids, replica moves),
//! shard-group membership changes that must run on a shard leader, and the live status of a
//! node's replicas. Messages are postcard; the enums are append-only. A reply carries what its
//! request produced as a typed [`Applied`], never bytes a caller has to interpret by convention.

use super::Cluster;
use super::placement::CentroidPlacement;
use super::status::NodeStatus;
use crate::collection::{CollectionSpec, Error, SearchUpdate};
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
    /// answer `NotLeader`, never forward again (no forwarding loops during elections). It holds
    /// the request's postcard bytes, decoded by [`unwrap_forwarded`] once and refused if it is
    /// itself `Forwarded`: the type does not recurse, so no message can drive the decoder's
    /// stack (a 1 MB payload of nested `Forwarded(Box<..>)` tags overflowed it before).
    Forwarded(Vec<u8>),
    /// (Metadata leader) Remove a member that holds no shard replica: out of the metadata group
    /// (a learner promoted in its place if it voted) and out of the member list.
    RemoveMember {
        /// The node.
        id: NodeId,
    },
    /// (Metadata leader) Change a collection's default search settings.
    UpdateCollection {
        /// Name.
        name: String,
        /// What changes.
        update: SearchUpdate,
    },
    /// (Metadata leader) Apply alias actions, all or none.
    UpdateAliases {
        /// The actions, in order.
        actions: Vec<super::meta::AliasAction>,
    },
    /// (Metadata leader) Create a collection with named vectors: `spec` with each vector's
    /// space in turn ([`crate::collection::named::resolve_named`]).
    CreateNamedCollection {
        /// Name.
        name: String,
        /// What the collection asks for (its own vector space is not used).
        spec: CollectionSpec,
        /// The named vectors.
        named: Vec<crate::collection::NamedVectorSpec>,
    },
}

impl ClusterRequest {
    /// Whether only the metadata leader may run it.
    pub fn needs_meta_leader(&self) -> bool {
        match self {
            ClusterRequest::Status
            | ClusterRequest::ShardAddLearner { .. }
            | ClusterRequest::ShardSetVoters { .. } => false,
            // Unwrapped (and judged) before it is run.
            ClusterRequest::Forwarded(_) => false,
            _ => true,
        }
    }
}

/// What a request produced besides the metadata index to wait for: the result inside
/// [`ClusterReply::Applied`]. Append-only, like every message of the service (a fixture in
/// `tests/fixtures/meta/` pins its encoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// Nothing beyond the change itself.
    Nothing,
    /// [`ClusterRequest::DeleteCollection`]: the shard groups of the deleted collection, whose
    /// local replicas the caller waits to see stopped; empty when there was no such collection.
    Groups(Vec<GroupId>),
    /// [`ClusterRequest::SetCentroids`]: the placement now stored, the first one proposed.
    Centroids(CentroidPlacement),
}

impl Applied {
    /// The result a node of an earlier version meant by [`ClusterReply::Done`]'s `body`, read
    /// by the request it answered: the one place those bytes are still interpreted (eight
    /// little-endian bytes per group id for a delete, postcard centroids, otherwise nothing).
    pub fn from_legacy(request: &ClusterRequest, body: &[u8]) -> Result<Applied, Error> {
        Ok(match request {
            ClusterRequest::DeleteCollection { .. } => Applied::Groups(
                body.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            ClusterRequest::SetCentroids { .. } => {
                Applied::Centroids(postcard::from_bytes(body).map_err(|e| {
                    Error::Internal(format!("undecodable centroids in a cluster answer: {e}"))
                })?)
            }
            _ => Applied::Nothing,
        })
    }
}

/// The answer of the cluster service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterReply {
    /// Done, as nodes before [`ClusterReply::Applied`] answered: `body` held result bytes whose
    /// meaning depended on the request. No longer sent; still decoded (and read by
    /// [`Applied::from_legacy`]) so that a node answered by one of an earlier version copes.
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
    /// Done: `index` is the metadata log index to wait for locally (or the leader's read index;
    /// 0 for a shard-group change), `result` what the request produced.
    Applied {
        /// Metadata log index that holds the change (or the leader's read index).
        index: u64,
        /// The request's result.
        result: Applied,
    },
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

/// The request inside a [`ClusterRequest::Forwarded`]: one decode, and never another forwarded
/// request (a member forwards at most once).
pub fn unwrap_forwarded(bytes: &[u8]) -> Result<ClusterRequest, Error> {
    match postcard::from_bytes::<ClusterRequest>(bytes) {
        Ok(ClusterRequest::Forwarded(_)) => Err(Error::bad(
            "a forwarded cluster request may not carry another forwarded request",
        )),
        Ok(req) => Ok(req),
        Err(e) => Err(Error::bad(format!("bad forwarded cluster request: {e}"))),
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
                Ok(ClusterRequest::Forwarded(bytes)) => match unwrap_forwarded(&bytes) {
                    Ok(req) => cluster.handle_here(req).await,
                    Err(e) => ClusterReply::Failed(e),
                },
                Ok(req) if req.needs_meta_leader() && !cluster.is_meta_leader() => {
                    // One forwarding hop to the leader this node believes in (joins arrive
                    // at whichever member `--join` named).
                    match cluster.meta_group().metrics().leader {
                        Some(l) if l != cluster.node_id() => {
                            let fwd = ClusterRequest::Forwarded(
                                postcard::to_allocvec(&req).unwrap_or_default(),
                            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The message that aborted a node with a stack overflow: a megabyte of `Forwarded` tags.
    /// Today it decodes (or fails to) in one flat pass, and a forwarded request that carries
    /// another is refused.
    #[test]
    fn nested_forwarded_requests_neither_recurse_nor_run() {
        let tag = ClusterRequest::Forwarded(Vec::new()).encode_for_test()[0];
        let attack = vec![tag; 1 << 20];
        let _ = postcard::from_bytes::<ClusterRequest>(&attack);
        // Forwarded inside Forwarded, a thousand deep, built the honest way.
        let mut bytes = ClusterRequest::Status.encode_for_test();
        for _ in 0..1000 {
            bytes = ClusterRequest::Forwarded(bytes).encode_for_test();
        }
        match postcard::from_bytes::<ClusterRequest>(&bytes).unwrap() {
            ClusterRequest::Forwarded(inner) => match unwrap_forwarded(&inner) {
                Err(Error::BadRequest(m)) => assert!(m.contains("may not carry"), "{m}"),
                other => panic!("nested forward accepted: {other:?}"),
            },
            other => panic!("decoded {other:?}"),
        }
        // One level is what members send, and it unwraps to the request.
        let once = ClusterRequest::Forwarded(ClusterRequest::Status.encode_for_test());
        match once {
            ClusterRequest::Forwarded(inner) => {
                assert!(matches!(
                    unwrap_forwarded(&inner),
                    Ok(ClusterRequest::Status)
                ));
                assert!(unwrap_forwarded(&[0xff, 0xff]).is_err());
            }
            _ => unreachable!(),
        }
    }

    /// A reply of a node before typed results still decodes, and its bytes read as the typed
    /// result of the request they answered.
    #[test]
    fn legacy_done_replies_read_as_typed_results() {
        let delete = ClusterRequest::DeleteCollection { name: "c".into() };
        let body: Vec<u8> = [3u64, 4].iter().flat_map(|g| g.to_le_bytes()).collect();
        let old = postcard::to_allocvec(&ClusterReply::Done { index: 9, body }).unwrap();
        match ClusterReply::decode(&old) {
            ClusterReply::Done { index: 9, body } => assert_eq!(
                Applied::from_legacy(&delete, &body).unwrap(),
                Applied::Groups(vec![3, 4])
            ),
            other => panic!("decoded {other:?}"),
        }
        assert_eq!(
            Applied::from_legacy(&ClusterRequest::Status, &[]).unwrap(),
            Applied::Nothing
        );
        let sample: Vec<f32> = (0..64).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let c = CentroidPlacement::train(&sample, 8, crate::index::Metric::Dot, 2, 2, 7);
        let set = ClusterRequest::SetCentroids {
            name: "c".into(),
            centroids: c.clone(),
        };
        let body = postcard::to_allocvec(&c).unwrap();
        assert_eq!(
            Applied::from_legacy(&set, &body).unwrap(),
            Applied::Centroids(c)
        );
        assert!(Applied::from_legacy(&set, &[0xff]).is_err());
    }

    impl ClusterRequest {
        fn encode_for_test(&self) -> Vec<u8> {
            postcard::to_allocvec(self).unwrap()
        }
    }
}
