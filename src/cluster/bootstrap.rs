//! Forming the metadata group and registering this node.
//!
//! - No `--peers`, no `--join`: a cluster of one; this node initialises the metadata group with
//!   itself.
//! - `--peers`: the lowest node id initialises the metadata group with the (up to three) lowest
//!   ids as voters; every node then registers itself through the metadata leader, which adds
//!   the others as learners.
//! - `--join host:port`: the node asks that member, which forwards to the metadata leader; the
//!   leader adds it as a learner, promotes it to voter while there are fewer than three, and
//!   records it as a member.
//!
//! Registration is repeated on every start (it is idempotent), so a restarted node updates its
//! addresses. The node is ready once it has applied the metadata index its registration
//! returned and started its replicas.

use super::Cluster;
use super::admin::META_VOTERS;
use super::rpc::ClusterRequest;
use crate::raft::{NodeInfo, RaftGroupError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Join the cluster (retrying until it works or the node stops).
pub async fn run(c: Arc<Cluster>) {
    let me = c.node_id;
    let peers = &c.settings.peers;
    let seed = if c.settings.join.is_some() {
        false
    } else {
        peers.keys().next().is_none_or(|first| *first == me)
    };
    if seed {
        let voters: BTreeMap<_, _> = if peers.is_empty() {
            BTreeMap::from([(me, c.info.clone())])
        } else {
            peers
                .iter()
                .take(META_VOTERS)
                .map(|(id, addr)| {
                    let info = if *id == me {
                        c.info.clone()
                    } else {
                        NodeInfo::new(addr.clone(), String::new())
                    };
                    (*id, info)
                })
                .collect()
        };
        match c.meta_group.initialize(voters).await {
            Ok(()) => tracing::info!(node = me, "metadata group initialised"),
            Err(RaftGroupError::AlreadyInitialized { .. }) => {}
            Err(e) => tracing::error!(error = %e, "cannot initialise the metadata group"),
        }
    }
    let mut wait = Duration::from_millis(100);
    loop {
        let req = ClusterRequest::Join {
            id: me,
            info: c.info.clone(),
        };
        match c.meta_request(req, Duration::from_secs(20)).await {
            Ok((index, _)) => {
                if c.wait_meta_applied(index, Duration::from_secs(30))
                    .await
                    .is_ok()
                {
                    c.joined_index.store(index.max(1), Ordering::Release);
                    c.kick.notify_one();
                    tracing::info!(node = me, index, "joined the cluster");
                    return;
                }
            }
            Err(e) => tracing::warn!(node = me, error = %e, "joining the cluster, retrying"),
        }
        if *c.stop.borrow() {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}
