//! The server side of the data plane: service 2 runs shard requests from other nodes' routers on
//! this node's replicas.

use super::rpc::{self, ErrorKind, ShardRequest, ShardResponse};
use crate::cluster::Cluster;
use crate::raft::NodeId;
use crate::raft::tcp::{AppFuture, AppService};
use std::sync::{Arc, Weak};

/// Service [`rpc::SERVICE`]: runs shard requests from other nodes' routers on this node's
/// replicas.
pub struct ShardService {
    cluster: Weak<Cluster>,
}

impl ShardService {
    /// The service byte to register it under.
    pub const SERVICE: u8 = rpc::SERVICE;

    /// The data-plane service over `cluster`'s replicas (holding the cluster weakly: it answers
    /// "shutting down" once the node is gone).
    pub fn new(cluster: &Arc<Cluster>) -> Arc<Self> {
        Arc::new(ShardService {
            cluster: Arc::downgrade(cluster),
        })
    }
}

impl AppService for ShardService {
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> AppFuture {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let resp = match (ShardRequest::decode(&payload), cluster.upgrade()) {
                (Err(e), _) => ShardResponse::Error {
                    kind: ErrorKind::BadRequest,
                    message: format!("undecodable shard request from node {from}: {e}"),
                },
                (Ok(_), None) => ShardResponse::Error {
                    kind: ErrorKind::Unavailable,
                    message: "node shutting down".into(),
                },
                (Ok(req), Some(cluster)) => match cluster.local_shard(req.group()) {
                    Some(local) => rpc::execute(&local.group, &local.app, req).await,
                    None => rpc::no_shard(req.group(), cluster.node_id()),
                },
            };
            resp.encode()
        })
    }
}
