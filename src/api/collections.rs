//! The collections of this node: their stored configuration, their shard engines and the
//! one-member Raft group each shard's writes go through.
//!
//! Layout under `--data-dir`:
//! - `collections/<name>/collection.json` — the [`CollectionConfig`], written atomically.
//! - `raft/` — the node's Raft log (one redb file, fsynced group commits) and each group's
//!   snapshots (`raft/groups/<group id>/snapshots/`), which hold the shard's snapshot files.
//! - `meta.json` — the next Raft group id, so a deleted collection's id is never reused.
//!
//! A write is validated against the shard first (so bad input changes nothing and never reaches
//! the log), then appended to the group's log (fsynced) and applied; only then is it answered. On
//! start every collection's group is started again: openraft installs the latest snapshot and
//! replays the log after it, so an acknowledged write survives a `kill -9`.

use super::error::ApiError;
use super::types::{
    CollectionConfig, CreateCollection, Distance, ResolvedIvfPq, ResolvedSearch, VectorParams,
};
use crate::index::ivfpq::IvfPqConfig;
use crate::index::{Metric, fastscan};
use crate::raft::{NodeInfo, RaftConfig, RaftGroup, RaftGroupError, RaftNode, StateMachineApp};
use crate::shard::snapshot::write_atomic;
use crate::shard::{Shard, ShardCommand, ShardConfig};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The node id of a single-node deployment.
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

/// The shard engine as a Raft state machine: decodes each command and applies it. `restore`
/// swaps in a whole new engine.
#[derive(Debug)]
pub struct ShardApp {
    shard: RwLock<Shard>,
    /// Where the shard keeps its sealed segment files (snapshots hard-link them).
    data_dir: Option<PathBuf>,
}

impl ShardApp {
    /// A state machine over an empty in-memory shard (snapshots write its segments out).
    pub fn new(config: ShardConfig) -> Self {
        ShardApp {
            shard: RwLock::new(Shard::new(config)),
            data_dir: None,
        }
    }

    /// A state machine over an empty shard whose sealed segment files live in `data_dir`.
    pub fn with_data_dir(config: ShardConfig, data_dir: &Path) -> std::io::Result<Self> {
        Ok(ShardApp {
            shard: RwLock::new(Shard::open(config, data_dir).map_err(std::io::Error::other)?),
            data_dir: Some(data_dir.to_owned()),
        })
    }

    /// The current engine (queries run on it; cheap clone).
    pub fn shard(&self) -> Shard {
        self.shard.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Response bytes of `apply`: empty for success, else the error message.
impl StateMachineApp for ShardApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let result = ShardCommand::decode(command)
            .map_err(|e| e.to_string())
            .and_then(|cmd| self.shard().apply(index, &cmd).map_err(|e| e.to_string()));
        match result {
            Ok(_) => Vec::new(),
            Err(msg) => {
                tracing::warn!(index, error = %msg, "shard command refused at apply");
                msg.into_bytes()
            }
        }
    }

    fn snapshot(&self, dir: &Path) -> std::io::Result<()> {
        self.shard()
            .snapshot(dir)
            .map(|_| ())
            .map_err(std::io::Error::other)
    }

    fn restore(&self, dir: &Path) -> std::io::Result<()> {
        let shard = Shard::restore_into(dir, true, self.data_dir.as_deref())
            .map_err(std::io::Error::other)?;
        *self.shard.write().unwrap_or_else(|e| e.into_inner()) = shard;
        Ok(())
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
                // A single-node group is between start and its first election: wait for it.
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
    let one = |v: Option<u32>, what: &str| match v {
        None | Some(1) => Ok(1),
        Some(n) => Err(ApiError::bad(format!(
            "{what} = {n}: this single-node server holds exactly one shard replica per collection"
        ))),
    };
    let shard_number = one(req.shard_number, "shard_number")?;
    let replication_factor = one(req.replication_factor, "replication_factor")?;
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
        compaction: Default::default(),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    next_group_id: u64,
}

/// Every collection of the node.
pub struct Collections {
    data_dir: PathBuf,
    node: RaftNode,
    defaults: IndexDefaults,
    map: RwLock<HashMap<String, Arc<Collection>>>,
    /// Serialises create and delete (they touch files and the group id counter).
    admin: tokio::sync::Mutex<()>,
}

fn io_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Collections {
    /// Opens the data directory and starts every stored collection's Raft group, waiting until
    /// each has replayed its log and can serve.
    pub async fn open(
        data_dir: &Path,
        defaults: IndexDefaults,
        raft: RaftConfig,
    ) -> Result<Self, ApiError> {
        std::fs::create_dir_all(data_dir.join("collections")).map_err(io_err)?;
        let router = crate::raft::InProcessRouter::new();
        let node = RaftNode::open_in_process(SINGLE_NODE_ID, &data_dir.join("raft"), &router, raft)
            .map_err(io_err)?;
        let me = Collections {
            data_dir: data_dir.to_owned(),
            node,
            defaults,
            map: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
        };
        let mut entries: Vec<_> = std::fs::read_dir(data_dir.join("collections"))
            .map_err(io_err)?
            .filter_map(Result::ok)
            .filter(|e| e.path().join("collection.json").is_file())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path().join("collection.json")).map_err(io_err)?;
            let config: CollectionConfig = serde_json::from_str(&text).map_err(|err| {
                ApiError::Internal(format!("collection {name}: bad collection.json: {err}"))
            })?;
            let c = me.start(&name, config).await?;
            tracing::info!(collection = %name, points = c.shard().stats().points, "collection recovered");
            me.map
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, c);
        }
        Ok(me)
    }

    async fn start(
        &self,
        name: &str,
        config: CollectionConfig,
    ) -> Result<Arc<Collection>, ApiError> {
        let segments = self
            .data_dir
            .join("collections")
            .join(name)
            .join("segments");
        let app =
            Arc::new(ShardApp::with_data_dir(shard_config(&config), &segments).map_err(io_err)?);
        let group = self
            .node
            .start_group(config.group_id, app.clone())
            .await
            .map_err(io_err)?;
        let members = BTreeMap::from([(SINGLE_NODE_ID, NodeInfo::new("local", "local"))]);
        match group.initialize(members).await {
            Ok(()) | Err(RaftGroupError::AlreadyInitialized { .. }) => {}
            Err(e) => return Err(io_err(e)),
        }
        // Wait for leadership and for the log to be applied up to the commit point.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match group.linearizable_read().await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(ApiError::Unavailable(e.to_string()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        Ok(Arc::new(Collection {
            name: name.to_owned(),
            config,
            app,
            group,
        }))
    }

    /// The collection, or 404.
    pub fn get(&self, name: &str) -> Result<Arc<Collection>, ApiError> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::CollectionNotFound(name.to_owned()))
    }

    /// Every collection, by name.
    pub fn all(&self) -> Vec<Arc<Collection>> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Creates a collection (409 if it exists).
    pub async fn create(&self, name: &str, req: &CreateCollection) -> Result<(), ApiError> {
        validate_name(name)?;
        let _admin = self.admin.lock().await;
        if self.get(name).is_ok() {
            return Err(ApiError::CollectionExists(name.to_owned()));
        }
        let meta_path = self.data_dir.join("meta.json");
        let next = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
            .map_or(1, |m| m.next_group_id);
        let config = resolve_config(req, &self.defaults, next)?;
        let meta = serde_json::to_vec(&Meta {
            next_group_id: next + 1,
        })
        .map_err(io_err)?;
        write_atomic(&meta_path, &meta).map_err(io_err)?;
        let dir = self.data_dir.join("collections").join(name);
        let text = serde_json::to_vec_pretty(&config).map_err(io_err)?;
        write_atomic(&dir.join("collection.json"), &text).map_err(io_err)?;
        let c = self.start(name, config).await?;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), c);
        tracing::info!(collection = %name, "collection created");
        Ok(())
    }

    /// Deletes a collection and its data; `false` if it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, ApiError> {
        let _admin = self.admin.lock().await;
        let Some(c) = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
        else {
            return Ok(false);
        };
        // The config goes first: a crash after this leaves only orphaned Raft data, never a
        // collection without its log.
        std::fs::remove_dir_all(self.data_dir.join("collections").join(name)).map_err(io_err)?;
        c.shard().wait_for_builds();
        self.node
            .destroy_group(c.config.group_id)
            .await
            .map_err(io_err)?;
        tracing::info!(collection = %name, "collection deleted");
        Ok(true)
    }

    /// Stops every Raft group (their logs are already durable).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}
