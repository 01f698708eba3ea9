//! What the router knows of the cluster's shape: making a router, resolving a collection name or
//! alias to its metadata, the hash ring of a shard count, whether a collection places by
//! centroid, and which replica of a shard to try first (the leader seen last, then by
//! consistency level, load and locality).

use super::resilience::Resilience;
use super::{Consistency, Counters, Router, RouterConfig, RoutingStats, exec, hlc};
use crate::cluster::placement::HashRing;
use crate::cluster::{Cluster, CollectionMeta, ShardMeta};
use crate::collection::{CollectionConfig, CollectionVectors, Error};
use crate::raft::{GroupId, NodeId};
use crate::shard::{Filter, SegmentCalibration, ShardCommand};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The calibrations of one local shard replica's sealed segments, for one of its vectors.
#[derive(Debug, Clone)]
pub struct ShardCalibrations {
    /// The shard.
    pub shard: u32,
    /// The named vector (`None`: the unnamed one).
    pub vector: Option<String>,
    /// Each sealed segment's calibration.
    pub segments: Vec<SegmentCalibration>,
}

impl Router {
    /// A router over `cluster`. Other nodes' routers reach this node's replicas through
    /// [`ShardService`](super::ShardService), which the node registers beside it.
    pub fn new(cluster: Arc<Cluster>, config: RouterConfig) -> Arc<Self> {
        exec::set_blocking_reads(config.blocking_reads);
        Arc::new(Router {
            hlc: hlc::Hlc::new(cluster.node_id()),
            resilience: Resilience::new(config.resilience.clone()),
            cluster: cluster.clone(),
            config,
            leaders: Mutex::new(HashMap::new()),
            rings: Mutex::new(HashMap::new()),
            training: tokio::sync::Mutex::new(()),
            counters: Counters::default(),
        })
    }

    /// Routing counters (fan-out, retries, hedges, breakers, partial answers).
    pub fn stats(&self) -> &RoutingStats {
        &self.resilience.stats
    }

    /// The collection `collection` names, directly or as an alias (the one place the router
    /// resolves names, so every read and write accepts an alias).
    pub(super) fn meta(&self, collection: &str) -> Result<CollectionMeta, Error> {
        self.cluster
            .state()
            .resolve(collection)
            .map(|(_, meta)| meta.clone())
            .ok_or_else(|| Error::NotFound(collection.to_owned()))
    }

    /// A filter sent to `meta`'s collection, checked (its size against the request caps) and
    /// resolved against the collection's vectors ([`CollectionVectors::resolve_filter`]):
    /// what the shards are sent.
    ///
    /// [`CollectionVectors::resolve_filter`]: crate::collection::named::CollectionVectors::resolve_filter
    pub(super) fn check_filter(
        &self,
        meta: &CollectionMeta,
        filter: Option<Filter>,
    ) -> Result<Option<Filter>, Error> {
        let Some(f) = filter else { return Ok(None) };
        self.config.limits.check_filter(&f)?;
        meta.vectors().resolve_filter(&f).map(Some)
    }

    /// [`Self::check_filter`] of the filter a command sent to every shard carries (payload
    /// updates, deletes by filter, vector deletes), after the command's own caps.
    pub(super) fn check_command(
        &self,
        meta: &CollectionMeta,
        mut command: ShardCommand,
    ) -> Result<ShardCommand, Error> {
        self.config.limits.check_command(&command)?;
        if let Some(f) = command.filter_mut() {
            *f = meta.vectors().resolve_filter(f)?;
        }
        Ok(command)
    }

    /// The configuration of a collection (404 if unknown).
    pub fn collection_config(&self, collection: &str) -> Result<CollectionConfig, Error> {
        Ok(self.meta(collection)?.config)
    }

    /// The vectors of a collection: its configuration and named vectors (404 if unknown).
    pub fn collection_vectors(&self, collection: &str) -> Result<CollectionVectors, Error> {
        Ok(self.meta(collection)?.vectors())
    }

    pub(super) fn ring(&self, shards: u32) -> Arc<HashRing> {
        self.rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(shards)
            .or_insert_with(|| Arc::new(HashRing::new(shards)))
            .clone()
    }

    pub(super) fn is_centroid(meta: &CollectionMeta) -> bool {
        meta.config.is_centroid(meta.shards.len())
    }

    // ---------------------------------------------------------------- replica choice

    pub(super) fn leader_guess(&self, shard: &ShardMeta) -> NodeId {
        if let Some(l) = self
            .leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&shard.group)
            && shard.replicas.contains(l)
        {
            return *l;
        }
        if let Some(local) = self.cluster.local_shard(shard.group)
            && let Some(l) = local.group.metrics().leader
            && shard.replicas.contains(&l)
        {
            return l;
        }
        shard.replicas.first().copied().unwrap_or(0)
    }

    pub(super) fn set_leader(&self, group: GroupId, leader: NodeId) {
        self.leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, leader);
    }

    /// Replicas of `shard` in the order a read at `consistency` should try them.
    pub(super) fn read_candidates(
        &self,
        shard: &ShardMeta,
        consistency: Consistency,
    ) -> Vec<NodeId> {
        let me = self.cluster.node_id();
        let leader = self.leader_guess(shard);
        let mut rest: Vec<NodeId> = shard.replicas.clone();
        match consistency {
            Consistency::Strong => {
                rest.sort_by_key(|n| (*n != leader, *n != me, *n));
            }
            Consistency::Session => {
                // The local replica usually has the caller's writes (and costs no hop); the
                // leader surely has them.
                rest.sort_by_key(|n| (*n != me, *n != leader, self.resilience.in_flight(*n), *n));
            }
            Consistency::Eventual => {
                rest.sort_by_key(|n| {
                    (
                        !self.resilience.is_available(*n),
                        self.resilience.in_flight(*n),
                        *n != me,
                        *n,
                    )
                });
            }
        }
        rest
    }

    pub(super) fn all_shards(meta: &CollectionMeta) -> Vec<u32> {
        (0..meta.shards.len() as u32).collect()
    }

    /// Per shard held on this node (shard number, the local replica's calibrations): what each
    /// sealed segment measured about itself when it was built. Replicas build their own
    /// segments, so another node's replica of the same shard may have chosen differently.
    ///
    /// With named vectors each vector's segments are listed, under its name.
    pub fn calibrations(&self, collection: &str) -> Result<Vec<ShardCalibrations>, Error> {
        let meta = self.meta(collection)?;
        let mut out = Vec::new();
        for (i, shard) in meta.shards.iter().enumerate() {
            let Some(local) = self.cluster.local_shard(shard.group) else {
                continue;
            };
            let lanes = local.app.lanes();
            for lane in 0..lanes.len() {
                let Some(engine) = lanes.lane(lane) else {
                    continue;
                };
                out.push(ShardCalibrations {
                    shard: i as u32,
                    vector: meta.named.get(lane).map(|n| n.name.clone()),
                    segments: engine.calibrations(),
                });
            }
        }
        Ok(out)
    }
}
