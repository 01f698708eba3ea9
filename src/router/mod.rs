//! The router: every node's entry point to data that lives in shards on many nodes.
//!
//! ## Writes
//! A write is split by placement — `hash`: the consistent-hash ring over ids; `centroid`: the
//! nearest coarse centroid of each vector (the quantiser is trained on a sample of the
//! collection's first upsert and stored in the cluster metadata, first writer wins) — and each
//! part goes to its shard group's leader: a local call when this node leads, else service 2 on
//! the leader's internal port. `ForwardToLeader` answers and leader changes are followed with
//! bounded retries. Every write carries one version from the node's [`hlc::Hlc`]
//! (`UpsertAt`/`DeleteAt`), so re-sending a write after an unknown outcome is harmless and
//! concurrent upserts of one id resolve to the same winner on every replica. Under centroid
//! placement an upsert also sends `DeleteAt{ids, version}` to every other shard, so an id lives
//! in exactly one shard once writes settle, even when its vector moved it.
//!
//! ## Reads
//! Reads fan out in parallel to one replica per needed shard (hash: all shards; centroid: the
//! `shard_probe` shards nearest the query; an exact search visits all), chosen by consistency
//! level — `strong`: the leader
//! (read-index check); `session`: any replica that has applied the caller's token, local first;
//! `eventual`: any healthy replica, least in-flight first, local first — through the
//! [`resilience`] layer (deadline, retry elsewhere, circuit breakers, hedging). Hits are merged
//! by distance then id ([`merge`]). A shard that cannot be reached fails the read with a 503
//! naming it, unless the caller allows partial answers, which then list the missing shards.
//!
//! ## Files
//! `mod.rs` declares the [`Router`]; `topology.rs` makes one and picks replicas, `fanout.rs`
//! sends one call and fans a read out, `search.rs` and `read.rs` are the reads and their merges,
//! `facet.rs`, `groups.rs` and `matrix.rs` (the distance matrix over a random sample) the
//! cross-shard aggregates, `write.rs` the write path, `metrics.rs` the counters, `service.rs` the
//! data-plane server, `snapshots.rs` the recovery of users' snapshots through the write path.

mod config;
pub mod exec;
pub mod facet;
mod fanout;
pub mod groups;
pub mod hlc;
pub mod matrix;
pub mod merge;
mod metrics;
mod read;
pub mod resilience;
pub mod rpc;
mod search;
mod service;
mod snapshots;
pub mod token;
mod topology;
mod write;
pub mod write_split;

#[cfg(test)]
mod tests;

pub use crate::collection::SearchQuery;
pub use config::RouterConfig;
pub use fanout::{Answer, ReadOptions};
pub use read::Page;
pub use resilience::{ResilienceConfig, RoutingStats};
pub use service::ShardService;
pub use token::{Consistency, ConsistencyToken, TokenError};
pub use write::WriteAck;

use crate::cluster::Cluster;
use crate::cluster::placement::HashRing;
use crate::raft::{GroupId, NodeId};
use metrics::Counters;
use resilience::Resilience;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Routes point operations of every collection to shard replicas. One per node.
pub struct Router {
    cluster: Arc<Cluster>,
    config: RouterConfig,
    resilience: Resilience,
    hlc: hlc::Hlc,
    /// Last leader seen per group.
    leaders: Mutex<HashMap<GroupId, NodeId>>,
    rings: Mutex<HashMap<u32, Arc<HashRing>>>,
    /// Serialises centroid training per node (the cluster keeps the first stored one).
    training: tokio::sync::Mutex<()>,
    counters: Counters,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}
