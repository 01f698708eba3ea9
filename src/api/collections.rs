//! The collections as the REST handlers see them: a facade over the [`Cluster`] metadata, plus
//! the checks and defaults a create request goes through ([`resolve_config`]).
//!
//! Collections live in the cluster metadata (the metadata Raft group); each shard is a replica
//! group the node's reconciler starts. Until the router serves every collection, the point and
//! search handlers go through [`Collections::get`], which serves a single-shard collection from
//! this node's replica (writes need this node to lead the shard group; a one-node cluster always
//! does).
//!
//! A write is validated against the shard first (so bad input changes nothing and never reaches
//! the log), then appended to the group's log (fsynced on a majority) and applied; only then is
//! it answered.

use super::error::ApiError;
use super::types::{
    CollectionConfig, CreateCollection, Distance, ResolvedIvfPq, ResolvedSearch, VectorParams,
};
use crate::cluster::Cluster;
pub use crate::cluster::ShardApp;
use crate::index::ivfpq::IvfPqConfig;
use crate::index::{Metric, fastscan};
use crate::raft::{RaftGroup, RaftGroupError};
use crate::shard::{Shard, ShardCommand, ShardConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node id of a single-node deployment (the default `--node-id`).
pub const SINGLE_NODE_ID: u64 = 1;
/// Longest accepted collection name.
pub const MAX_NAME_LEN: usize = 255;
/// Largest accepted dimension.
pub const MAX_DIM: u64 = 65_536;

/// Index defaults used when a collection does not set them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexDefaults {
    /// Inverted lists per sealed segment.
    pub nlist: usize,
    /// PQ bits (4 or 8).
    pub pq_bits: u8,
    /// Rows of the mutable segment before it is sealed.
    pub seal_threshold: usize,
    /// Lists probed per search.
    pub nprobe: usize,
    /// Re-rank factor.
    pub rerank: usize,
}

impl Default for IndexDefaults {
    fn default() -> Self {
        IndexDefaults {
            nlist: 256,
            pq_bits: 4,
            seal_threshold: 50_000,
            nprobe: 16,
            rerank: 4,
        }
    }
}

/// One collection: config, engine, Raft group.
pub struct Collection {
    /// The name.
    pub name: String,
    /// The stored configuration.
    pub config: CollectionConfig,
    app: Arc<ShardApp>,
    group: RaftGroup,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collection {
    /// The shard engine (for reads).
    pub fn shard(&self) -> Shard {
        self.app.shard()
    }

    /// Validates, logs (fsynced) and applies a write; returns its log index.
    pub async fn write(&self, command: ShardCommand) -> Result<u64, ApiError> {
        self.shard().validate(&command)?;
        let bytes = command.encode();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.group.write(bytes.clone()).await {
                Ok(out) if out.response.is_empty() => return Ok(out.index),
                Ok(out) => {
                    return Err(ApiError::bad(
                        String::from_utf8_lossy(&out.response).into_owned(),
                    ));
                }
                Err(RaftGroupError::ForwardToLeader {
                    leader_id: Some(l),
                    leader,
                    ..
                }) if l != self.group.node_id() => {
                    return Err(ApiError::Unavailable(format!(
                        "this node does not lead collection `{}`'s shard: node {l} ({}) does",
                        self.name,
                        leader.map_or_else(String::new, |i| i.api_addr)
                    )));
                }
                // The group is between start and its first election: wait for it.
                Err(RaftGroupError::ForwardToLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(ApiError::Unavailable(e.to_string())),
            }
        }
    }
}

/// Checks a collection name: 1 to 255 characters of `[A-Za-z0-9_-]`.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::bad(format!(
            "invalid collection name {name:?}: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ -"
        )));
    }
    Ok(())
}

/// The default number of PQ sub-spaces: for 4-bit fast-scan codes the largest divisor of `dim`
/// up to `dim / 2` (and the scanner's limit), since re-ranked 4-bit codes of that size measured
/// about 2x the QPS of 8-bit codes at equal recall (README, Benchmarks); for 8-bit codes the
/// largest divisor that leaves at least 2 dimensions per sub-space, at most 64.
fn default_pq_m(dim: usize, pq_bits: u8) -> usize {
    if pq_bits == 4 {
        return IvfPqConfig::fastscan_pq_m(dim);
    }
    (1..=dim.min(64))
        .rev()
        .find(|m| dim.is_multiple_of(*m) && dim / m >= 2)
        .unwrap_or(1)
}

/// Turns a create request into a stored configuration, checking every value.
pub fn resolve_config(
    req: &CreateCollection,
    defaults: &IndexDefaults,
    group_id: u64,
) -> Result<CollectionConfig, ApiError> {
    let vectors = req.vectors.as_ref().ok_or_else(|| {
        ApiError::bad(
            "missing `vectors`: give {\"size\": N, \"distance\": \"Cosine\"|\"Euclid\"|\"Dot\"}",
        )
    })?;
    let vectors: VectorParams = serde_json::from_value(vectors.clone()).map_err(|e| {
        ApiError::bad(format!(
            "invalid `vectors` ({e}): shoal supports one unnamed vector {{\"size\": N, \"distance\": \"Cosine\"|\"Euclid\"|\"Dot\"}}"
        ))
    })?;
    if vectors.size == 0 || vectors.size > MAX_DIM {
        return Err(ApiError::bad(format!(
            "vectors.size must be in 1..={MAX_DIM}"
        )));
    }
    if vectors.distance == Distance::Manhattan {
        return Err(ApiError::bad(
            "distance Manhattan is not supported: use Cosine, Euclid or Dot",
        ));
    }
    // The cluster checks these against its members when it places the shards.
    let at_least_one = |v: Option<u32>, what: &str| match v {
        None => Ok(1),
        Some(0) => Err(ApiError::bad(format!("{what} must be at least 1"))),
        Some(n) => Ok(n),
    };
    let shard_number = at_least_one(req.shard_number, "shard_number")?;
    let replication_factor = at_least_one(req.replication_factor, "replication_factor")?;
    let placement = req.placement.clone().unwrap_or_else(|| "hash".into());
    if placement != "hash" && placement != "centroid" {
        return Err(ApiError::bad(format!(
            "placement {placement:?}: use \"hash\" or \"centroid\""
        )));
    }
    let dim = vectors.size as usize;
    let ivf = req.ivf_pq_config.clone().unwrap_or_default();
    let pq_bits = ivf.pq_bits.unwrap_or(defaults.pq_bits);
    if pq_bits != 4 && pq_bits != 8 {
        return Err(ApiError::bad(format!(
            "ivf_pq_config.pq_bits = {pq_bits}: use 4 or 8"
        )));
    }
    let pq_m = ivf.pq_m.unwrap_or_else(|| default_pq_m(dim, pq_bits));
    if pq_m == 0 || !dim.is_multiple_of(pq_m) {
        return Err(ApiError::bad(format!(
            "ivf_pq_config.pq_m = {pq_m} must divide the dimension {dim}"
        )));
    }
    if pq_bits == 4 && fastscan::padded_m(pq_m) > fastscan::MAX_SUBSPACES {
        return Err(ApiError::bad(format!(
            "ivf_pq_config.pq_m = {pq_m}: 4-bit codes allow at most {} sub-spaces",
            fastscan::MAX_SUBSPACES
        )));
    }
    let nlist = ivf.nlist.unwrap_or(defaults.nlist);
    if nlist == 0 || nlist > 1 << 20 {
        return Err(ApiError::bad("ivf_pq_config.nlist must be in 1..=1048576"));
    }
    let seal_threshold = ivf.seal_threshold.unwrap_or(defaults.seal_threshold);
    let search = req.search_config.clone().unwrap_or_default();
    let nprobe = search.nprobe.unwrap_or(defaults.nprobe.min(nlist));
    if nprobe == 0 || nprobe > nlist {
        return Err(ApiError::bad(format!(
            "search_config.nprobe = {nprobe} must be in 1..=nlist ({nlist})"
        )));
    }
    let rerank = search.rerank.unwrap_or(defaults.rerank);
    if rerank > super::MAX_RERANK {
        return Err(ApiError::bad(format!(
            "search_config.rerank must be at most {}",
            super::MAX_RERANK
        )));
    }
    Ok(CollectionConfig {
        vectors,
        shard_number,
        replication_factor,
        placement,
        ivf_pq_config: ResolvedIvfPq {
            nlist,
            pq_m,
            pq_bits,
            seal_threshold,
        },
        search_config: ResolvedSearch {
            nprobe,
            rerank,
            shard_probe: 1,
        },
        group_id,
    })
}

/// The shard shape a collection config implies.
pub fn shard_config(c: &CollectionConfig) -> ShardConfig {
    ShardConfig {
        dim: c.vectors.size as usize,
        metric: match c.vectors.distance {
            Distance::Euclid => Metric::L2,
            Distance::Dot => Metric::Dot,
            _ => Metric::Cosine,
        },
        seal_threshold: c.ivf_pq_config.seal_threshold,
        nlist: c.ivf_pq_config.nlist,
        pq_m: c.ivf_pq_config.pq_m,
        pq_bits: c.ivf_pq_config.pq_bits,
        seed: 0x5ba1 ^ c.group_id,
    }
}

/// Every collection, as the REST handlers reach them.
pub struct Collections {
    cluster: Arc<Cluster>,
}

impl Collections {
    /// Collections over the cluster's metadata.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Collections { cluster }
    }

    /// The cluster underneath.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The collection served from this node's replica: 404 if unknown, 503 if it has several
    /// shards or no replica here.
    pub fn get(&self, name: &str) -> Result<Arc<Collection>, ApiError> {
        let state = self.cluster.state();
        let meta = state
            .collections
            .get(name)
            .ok_or_else(|| ApiError::CollectionNotFound(name.to_owned()))?;
        let [shard] = meta.shards.as_slice() else {
            return Err(ApiError::Unavailable(format!(
                "collection `{name}` has {} shards: this node serves single-shard collections only",
                meta.shards.len()
            )));
        };
        let local = self.cluster.local_shard(shard.group).ok_or_else(|| {
            ApiError::Unavailable(format!(
                "this node holds no replica of collection `{name}`: nodes {:?} do",
                shard.replicas
            ))
        })?;
        let mut config = meta.config.clone();
        config.group_id = shard.group;
        Ok(Arc::new(Collection {
            name: name.to_owned(),
            config,
            app: local.app,
            group: local.group,
        }))
    }

    /// Whether the collection exists (anywhere in the cluster).
    pub fn exists(&self, name: &str) -> bool {
        self.cluster.state().collections.contains_key(name)
    }

    /// Every collection name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.cluster.state().collections.keys().cloned().collect()
    }

    /// Every collection this node serves from a local replica, by name.
    pub fn all(&self) -> Vec<Arc<Collection>> {
        self.names()
            .iter()
            .filter_map(|n| self.get(n).ok())
            .collect()
    }

    /// Creates a collection through the metadata leader (409 if it exists) and waits until its
    /// shard groups have leaders and this node's replicas run.
    pub async fn create(&self, name: &str, req: &CreateCollection) -> Result<(), ApiError> {
        validate_name(name)?;
        let body = serde_json::to_string(req).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.cluster.create_collection(name, body).await
    }

    /// Deletes a collection everywhere; `false` if it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, ApiError> {
        self.cluster.delete_collection(name).await
    }

    /// Stops every Raft group (their logs are already durable).
    pub async fn shutdown(&self) {
        self.cluster.shutdown().await;
    }
}
