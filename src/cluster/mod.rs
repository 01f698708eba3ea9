//! The cluster: nodes, the metadata Raft group, and each node's shard replica groups.
//!
//! Every `shoal serve` is a [`Cluster`] member; with no cluster flags it is a cluster of one on the
//! same code path. The pieces:
//! - [`meta`]: [`ClusterState`] (members, collections, shard → replica nodes), replicated by the
//!   metadata group (group 0, up to three voters, other nodes learners).
//! - [`bootstrap`]: forming the metadata group (`--peers`, `--join`) and registering this node.
//! - [`rpc`]: the cluster service on the internal port (service 1); requests that must run on
//!   the metadata leader are forwarded to it.
//! - [`admin`]: what the metadata leader does: joins, collection create/delete, replica moves.
//! - [`reconcile`]: every node starts and stops its local shard replicas to match the metadata.
//! - [`status`]: `GET /cluster` and the per-shard metrics; [`telemetry`]: Qdrant's
//!   `GET /cluster/telemetry`.
//! - [`placement`]: which shard holds a point — the consistent-hash ring and centroid placement.
//! - [`snapshots`]: users' collection, shard and full snapshots (one archive file each) of the
//!   shard replicas on this node, and reading them back for a recovery.

pub mod admin;
pub mod bootstrap;
pub mod meta;
mod persisted;
pub mod placement;
pub mod reconcile;
pub mod rpc;
pub mod shard_app;
pub mod snapshots;
pub mod status;
pub mod telemetry;

#[cfg(test)]
mod fixtures;

pub use meta::{
    AliasAction, ClusterState, CollectionMeta, META_GROUP, MetaApp, MetaCommand, ShardMeta,
};
pub use placement::CentroidPlacement;
pub use rpc::{Applied, CLUSTER_SERVICE, ClusterReply, ClusterRequest};
pub use shard_app::ShardApp;

use crate::collection::{CollectionSpec, Error, IndexDefaults, SearchUpdate};
use crate::config::ClusterSettings;
use crate::raft::tcp::{AppService, TcpTransport};
use crate::raft::{
    GroupId, NodeId, NodeInfo, RaftConfig, RaftGroup, RaftGroupError, RaftNode, Role,
    TransportError,
};
use openraft::async_runtime::watch::WatchReceiver;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// This node's replica of a shard group: the Raft handle and the engine it applies to.
#[derive(Clone)]
pub struct LocalShard {
    /// The replica's Raft group.
    pub group: RaftGroup,
    /// The shard engine (`app.shard()` for reads).
    pub app: Arc<ShardApp>,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Raft storage could not be opened.
    #[error(transparent)]
    Raft(#[from] RaftGroupError),
    /// The internal port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    /// The data directory holds a layout this version does not read.
    #[error("{0}")]
    Layout(String),
}

/// Options [`Cluster::start`] needs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Membership flags and the internal port.
    pub settings: ClusterSettings,
    /// The data directory (`raft/` below it holds every group).
    pub data_dir: PathBuf,
    /// Raft timings.
    pub raft: RaftConfig,
    /// Index defaults for new collections.
    pub defaults: IndexDefaults,
}

/// One node's view and control of the cluster. Shared as `Arc<Cluster>`.
pub struct Cluster {
    node_id: NodeId,
    info: NodeInfo,
    settings: ClusterSettings,
    defaults: IndexDefaults,
    /// The node's data directory (users' snapshots live in `snapshots/` below it).
    data_dir: PathBuf,
    node: RaftNode,
    transport: TcpTransport,
    meta: Arc<MetaApp>,
    meta_group: RaftGroup,
    shards: RwLock<HashMap<GroupId, LocalShard>>,
    /// Serialises leader-side admin operations (membership changes must not overlap).
    admin_lock: tokio::sync::Mutex<()>,
    /// Metadata index this node must have applied before it serves (0: not joined yet).
    joined_index: AtomicU64,
    ready: AtomicBool,
    /// Wakes the reconciler (after joining).
    kick: tokio::sync::Notify,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Deadline of one metadata request forwarded to the leader.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a status probe.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(800);

fn legacy_layout(data_dir: &Path) -> Option<PathBuf> {
    let dir = data_dir.join("collections");
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("collection.json"))
        .find(|p| p.is_file())
}

impl Cluster {
    /// Open this node's Raft storage, start its metadata replica and internal port, and start
    /// joining the cluster in the background; [`Self::wait_ready`] tells when it can serve.
    pub async fn start(opts: ClusterOptions) -> Result<Arc<Cluster>, ClusterError> {
        if let Some(old) = legacy_layout(&opts.data_dir) {
            return Err(ClusterError::Layout(format!(
                "{} was written by the single-node layout of an earlier shoal (collections/<name>/collection.json); \
                 this version keeps collections in the cluster metadata. Start the earlier version on it and export \
                 the points (scroll), or move the directory away and start on an empty data dir",
                old.display()
            )));
        }
        let s = opts.settings.clone();
        let transport = TcpTransport::new(s.secret.clone(), Duration::from_secs(1));
        transport.set_node_id(s.node_id);
        let node = RaftNode::open(
            s.node_id,
            &opts.data_dir.join("raft"),
            Arc::new(transport.clone()),
            opts.raft.clone(),
        )?;
        let meta = Arc::new(MetaApp::default());
        let meta_group = node.start_group(META_GROUP, meta.clone()).await?;
        let listener = match &s.internal_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| ClusterError::Bind(addr.clone(), e))?,
            ),
            None => None,
        };
        let cluster = Arc::new(Cluster {
            node_id: s.node_id,
            info: NodeInfo::new(s.advertise_internal.clone(), s.advertise_api.clone()),
            settings: s,
            defaults: opts.defaults,
            data_dir: opts.data_dir.clone(),
            node: node.clone(),
            transport: transport.clone(),
            meta,
            meta_group,
            shards: RwLock::new(HashMap::new()),
            admin_lock: tokio::sync::Mutex::new(()),
            joined_index: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            kick: tokio::sync::Notify::new(),
            tasks: Mutex::new(Vec::new()),
            stop: tokio::sync::watch::Sender::new(false),
        });
        transport.register_service(
            CLUSTER_SERVICE,
            Arc::new(rpc::ClusterService {
                cluster: Arc::downgrade(&cluster),
            }),
        );
        let mut tasks = Vec::new();
        if let Some(listener) = listener {
            let mut stop = cluster.stop.subscribe();
            let t = transport.clone();
            tasks.push(tokio::spawn(async move {
                t.serve(listener, node, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            }));
        }
        {
            // Reopens the shared log and restarts stopped groups after a full disk is freed.
            let mut stop = cluster.stop.subscribe();
            let node = cluster.node.clone();
            tasks.push(tokio::spawn(crate::raft::recovery::supervise(
                node,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )));
        }
        tasks.push(tokio::spawn(bootstrap::run(cluster.clone())));
        tasks.push(tokio::spawn(reconcile::run(cluster.clone())));
        *cluster.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(cluster)
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node's advertised addresses.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The membership flags this node started with.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Index defaults for new collections.
    pub fn defaults(&self) -> &IndexDefaults {
        &self.defaults
    }

    /// The latest metadata applied on this node.
    pub fn state(&self) -> Arc<ClusterState> {
        self.meta.state()
    }

    /// A receiver of every newly applied metadata state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<ClusterState>> {
        self.meta.subscribe()
    }

    /// This node's replica of shard group `group`, if it runs here.
    pub fn local_shard(&self, group: GroupId) -> Option<LocalShard> {
        self.shards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    /// Every shard replica running on this node.
    pub fn local_shards(&self) -> Vec<(GroupId, LocalShard)> {
        let mut v: Vec<_> = self
            .shards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(g, s)| (*g, s.clone()))
            .collect();
        v.sort_by_key(|(g, _)| *g);
        v
    }

    /// The node's Raft groups (metadata included).
    pub fn raft_node(&self) -> &RaftNode {
        &self.node
    }

    /// This node's replica of the metadata group.
    pub fn meta_group(&self) -> &RaftGroup {
        &self.meta_group
    }

    /// Serve `service` on this node's internal port with `handler`.
    pub fn register_service(&self, service: u8, handler: Arc<dyn AppService>) {
        self.transport.register_service(service, handler);
    }

    /// Whether this node has joined, caught up with the metadata and started its replicas.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Qdrant's `recover_current_peer`, done now rather than at the supervisor's next look:
    /// if the Raft log failed or groups stopped on a storage error, prove the disk writable,
    /// reopen the log and restart those groups ([`crate::raft::recovery::recover_once`]).
    /// `Ok(restarted groups)`, or why the disk cannot take writes yet.
    pub async fn recover_now(&self) -> Result<usize, String> {
        match crate::raft::recovery::recover_once(&self.node).await {
            crate::raft::recovery::Recovery::Healthy => Ok(0),
            crate::raft::recovery::Recovery::Restarted(n) => Ok(n),
            crate::raft::recovery::Recovery::Waiting(why) => Err(why),
        }
    }

    /// Why this node cannot make writes durable now, if it cannot: its Raft log failed (a full
    /// disk) and has not been reopened, or groups stopped on a storage error (named, with
    /// why). `None` when every local group runs. The supervisor
    /// ([`crate::raft::recovery::supervise`]) clears it once the disk takes writes again.
    pub fn storage_trouble(&self) -> Option<String> {
        let stopped = self.node.stopped_groups();
        let failure = self.node.log_failure();
        if stopped.is_empty() && failure.is_none() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(f) = failure {
            parts.push(format!("the raft log cannot be written ({f})"));
        }
        if !stopped.is_empty() {
            let groups: Vec<String> = stopped.iter().map(|(g, _)| g.to_string()).collect();
            parts.push(format!(
                "raft groups stopped: {} ({})",
                groups.join(", "),
                stopped[0].1
            ));
        }
        Some(format!(
            "{}; they restart by themselves once the disk takes writes again",
            parts.join("; ")
        ))
    }

    /// Wait until [`Self::is_ready`], at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Fault injection: cut this node off from `nodes` (empty heals).
    pub async fn set_blocked(&self, nodes: HashSet<NodeId>) {
        self.transport.set_blocked(nodes).await;
    }

    /// The internal address of `node`: from the metadata, else `--peers`, else the metadata
    /// group's membership.
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        if let Some(m) = self.state().members.get(&node) {
            return Some(m.internal_addr.clone());
        }
        if let Some(a) = self.settings.peers.get(&node) {
            return Some(a.clone());
        }
        let m = self.meta_group.raft().metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.internal_addr.clone())
    }

    /// Call `service` on `node` (this node included) with `payload`, at most `timeout`.
    pub async fn call(
        &self,
        node: NodeId,
        service: u8,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        if node == self.node_id {
            let handler = self.transport.service(service).ok_or_else(|| {
                TransportError::Remote(node, format!("no service {service} on this node"))
            })?;
            return tokio::time::timeout(timeout, handler.handle(node, payload))
                .await
                .map_err(|_| TransportError::Timeout(node, timeout));
        }
        let addr = self
            .addr_of(node)
            .ok_or_else(|| TransportError::Unreachable(node, "unknown node".into()))?;
        self.transport
            .call_app(node, &addr, service, payload, timeout)
            .await
    }

    /// Send a cluster request to `node` (or to the internal address `addr` when the node id is
    /// not known yet, as when joining).
    pub(crate) async fn call_cluster(
        &self,
        node: NodeId,
        addr: Option<&str>,
        req: &ClusterRequest,
        timeout: Duration,
    ) -> Result<ClusterReply, TransportError> {
        let payload = postcard::to_allocvec(req).unwrap_or_default();
        let bytes = match addr {
            Some(a) => {
                self.transport
                    .call_app(node, a, CLUSTER_SERVICE, payload, timeout)
                    .await?
            }
            None => self.call(node, CLUSTER_SERVICE, payload, timeout).await?,
        };
        Ok(ClusterReply::decode(&bytes))
    }

    /// Whether this node leads the metadata group.
    pub fn is_meta_leader(&self) -> bool {
        self.meta_group.metrics().role == Role::Leader
    }

    /// Run a request that must execute on the metadata leader: here if this node leads, else
    /// forwarded to the leader (following `NotLeader` hints), retrying until `timeout`.
    pub async fn meta_request(
        &self,
        req: ClusterRequest,
        timeout: Duration,
    ) -> Result<(u64, Applied), Error> {
        let deadline = Instant::now() + timeout;
        let mut hint: Option<NodeId> = None;
        let mut attempt = 0usize;
        let mut last_err = String::from("no metadata leader yet");
        loop {
            attempt += 1;
            // A stopped metadata replica that is the group's only voter: no other node can
            // take the write, so answer now instead of retrying until the deadline.
            if let Some(why) = self.meta_group.stopped()
                && self.meta_group.metrics().voters == [self.node_id]
            {
                return Err(Error::Unavailable(format!(
                    "the metadata group is stopped on this node, its only voter ({why}); it restarts once the disk takes writes again"
                )));
            }
            let reply = if self.is_meta_leader() {
                self.handle_here(req.clone()).await
            } else {
                let target = hint.take().or_else(|| self.meta_group.metrics().leader);
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100));
                let r = match target {
                    Some(t) if t != self.node_id => {
                        self.call_cluster(t, None, &req, left.min(FORWARD_TIMEOUT))
                            .await
                    }
                    _ => match self.settings.join.as_deref() {
                        // Not in the metadata group yet: ask the node given by --join.
                        Some(addr) if self.joined_index.load(Ordering::Acquire) == 0 => {
                            self.call_cluster(u64::MAX, Some(addr), &req, left.min(FORWARD_TIMEOUT))
                                .await
                        }
                        _ => {
                            let peers: Vec<NodeId> = self
                                .settings
                                .peers
                                .keys()
                                .copied()
                                .filter(|p| *p != self.node_id)
                                .collect();
                            match peers.get(attempt % peers.len().max(1)) {
                                Some(p) => {
                                    self.call_cluster(*p, None, &req, left.min(FORWARD_TIMEOUT))
                                        .await
                                }
                                None => Err(TransportError::Unreachable(
                                    self.node_id,
                                    "no metadata leader known".into(),
                                )),
                            }
                        }
                    },
                };
                match r {
                    Ok(reply) => reply,
                    Err(e) => {
                        last_err = e.to_string();
                        ClusterReply::NotLeader { leader: None }
                    }
                }
            };
            match reply {
                ClusterReply::Applied { index, result } => return Ok((index, result)),
                ClusterReply::Done { index, body } => {
                    return Ok((index, Applied::from_legacy(&req, &body)?));
                }
                ClusterReply::Failed(e) => return Err(e),
                ClusterReply::Status(_) => {
                    return Err(Error::Internal("unexpected status answer".into()));
                }
                ClusterReply::NotLeader { leader } => {
                    hint = leader.filter(|l| *l != self.node_id);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "no metadata leader answered within {timeout:?}: {last_err}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50 + 50 * attempt.min(6) as u64)).await;
        }
    }

    /// Serve a cluster request on this node (the server side of [`rpc::ClusterService`]).
    pub(crate) async fn handle_here(&self, req: ClusterRequest) -> ClusterReply {
        if req.needs_meta_leader() && !self.is_meta_leader() {
            return ClusterReply::NotLeader {
                leader: self.meta_group.metrics().leader,
            };
        }
        let result = match req {
            ClusterRequest::Forwarded(bytes) => match rpc::unwrap_forwarded(&bytes) {
                Ok(inner) => return Box::pin(self.handle_here(inner)).await,
                Err(e) => Err(e),
            },
            ClusterRequest::Status => {
                return ClusterReply::Status(Box::new(status::local_status(self)));
            }
            ClusterRequest::Join { id, info } => admin::join(self, id, info).await,
            ClusterRequest::RemoveMember { id } => admin::remove_member(self, id).await,
            ClusterRequest::CreateCollection { name, spec } => {
                admin::create_collection(self, &name, &spec, &[]).await
            }
            ClusterRequest::CreateNamedCollection { name, spec, named } => {
                admin::create_collection(self, &name, &spec, &named).await
            }
            ClusterRequest::DeleteCollection { name } => {
                admin::delete_collection(self, &name).await
            }
            ClusterRequest::UpdateCollection { name, update } => {
                admin::update_collection(self, &name, &update).await
            }
            ClusterRequest::SetCentroids { name, centroids } => {
                admin::set_centroids(self, &name, centroids).await
            }
            ClusterRequest::UpdateAliases { actions } => {
                admin::update_aliases(self, &actions).await
            }
            ClusterRequest::MoveReplica {
                name,
                shard,
                from,
                to,
            } => admin::move_replica(self, &name, shard, from, to).await,
            ClusterRequest::ShardAddLearner { group, id, info } => {
                admin::shard_add_learner(self, group, id, info).await
            }
            ClusterRequest::ShardSetVoters { group, voters } => {
                admin::shard_set_voters(self, group, voters).await
            }
        };
        match result {
            Ok((index, result)) => ClusterReply::Applied { index, result },
            Err(e) => ClusterReply::Failed(e),
        }
    }

    /// Append a metadata command (this node must lead the metadata group); returns its index
    /// and the state machine's answer.
    pub(crate) async fn propose(&self, cmd: MetaCommand) -> Result<(u64, Vec<u8>), Error> {
        let out = self
            .meta_group
            .write(cmd.encode())
            .await
            .map_err(|e| Error::Unavailable(format!("metadata write failed: {e}")))?;
        match meta::decode_outcome(&out.response) {
            Ok(body) => Ok((out.index, body)),
            Err(refusal) => Err(Error::bad(refusal)),
        }
    }

    /// Wait until this node has applied metadata index `index` (Raft's applied index: a read
    /// index may point at a membership or blank entry, which changes no [`ClusterState`]).
    pub async fn wait_meta_applied(&self, index: u64, timeout: Duration) -> Result<(), Error> {
        self.meta_group
            .wait_applied(index, timeout)
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "this node has not applied metadata index {index} within {timeout:?}: {e}"
                ))
            })
    }

    /// Create a collection (through the metadata leader, which checks the name and resolves
    /// the spec) and wait until this node's replicas of it run.
    pub async fn create_collection(&self, name: &str, spec: CollectionSpec) -> Result<(), Error> {
        self.create_named_collection(name, spec, Vec::new()).await
    }

    /// [`Self::create_collection`] with named vectors (none: one unnamed vector, `spec`'s).
    pub async fn create_named_collection(
        &self,
        name: &str,
        spec: CollectionSpec,
        named: Vec<crate::collection::NamedVectorSpec>,
    ) -> Result<(), Error> {
        // A create without named vectors stays the request every node version understands.
        let request = if named.is_empty() {
            ClusterRequest::CreateCollection {
                name: name.to_owned(),
                spec,
            }
        } else {
            ClusterRequest::CreateNamedCollection {
                name: name.to_owned(),
                spec,
                named,
            }
        };
        let (index, _) = self.meta_request(request, FORWARD_TIMEOUT).await?;
        self.wait_meta_applied(index, Duration::from_secs(10))
            .await?;
        self.wait_local_replicas(name, Duration::from_secs(15))
            .await
    }

    /// Change a collection's default search settings (through the metadata leader); they take
    /// effect on this node's next query once this returns, on the others as they apply it.
    pub async fn update_collection(&self, name: &str, update: SearchUpdate) -> Result<(), Error> {
        let (index, _) = self
            .meta_request(
                ClusterRequest::UpdateCollection {
                    name: name.to_owned(),
                    update,
                },
                FORWARD_TIMEOUT,
            )
            .await?;
        self.wait_meta_applied(index, Duration::from_secs(10)).await
    }

    /// Apply alias actions (through the metadata leader), all or none; once this returns,
    /// this node resolves names with them.
    pub async fn update_aliases(&self, actions: Vec<AliasAction>) -> Result<(), Error> {
        let (index, _) = self
            .meta_request(ClusterRequest::UpdateAliases { actions }, FORWARD_TIMEOUT)
            .await?;
        self.wait_meta_applied(index, Duration::from_secs(10)).await
    }

    /// Delete a collection (through the metadata leader); `false` if it did not exist.
    pub async fn delete_collection(&self, name: &str) -> Result<bool, Error> {
        let (index, result) = self
            .meta_request(
                ClusterRequest::DeleteCollection {
                    name: name.to_owned(),
                },
                FORWARD_TIMEOUT,
            )
            .await?;
        self.wait_meta_applied(index, Duration::from_secs(10))
            .await?;
        // Let the local reconciler stop this node's replicas before answering.
        let deadline = Instant::now() + Duration::from_secs(10);
        let groups = match result {
            Applied::Groups(groups) => groups,
            _ => Vec::new(),
        };
        while groups.iter().any(|g| self.local_shard(*g).is_some()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(!groups.is_empty())
    }

    /// Store the centroid placement of `collection` unless one is stored: the first writer wins
    /// and every caller gets the stored one.
    pub async fn set_centroids(
        &self,
        collection: &str,
        c: CentroidPlacement,
    ) -> Result<CentroidPlacement, Error> {
        let (index, result) = self
            .meta_request(
                ClusterRequest::SetCentroids {
                    name: collection.to_owned(),
                    centroids: c,
                },
                FORWARD_TIMEOUT,
            )
            .await?;
        self.wait_meta_applied(index, Duration::from_secs(10))
            .await?;
        match result {
            Applied::Centroids(stored) => Ok(stored),
            other => Err(Error::Internal(format!(
                "a centroid proposal was answered with {other:?}"
            ))),
        }
    }

    /// Move the replica of shard `shard` of `collection` from node `from` to node `to`: learner,
    /// catch up (log or snapshot stream), voter, old replica removed.
    pub async fn move_replica(
        &self,
        collection: &str,
        shard: u32,
        from: NodeId,
        to: NodeId,
    ) -> Result<(), Error> {
        let (index, _) = self
            .meta_request(
                ClusterRequest::MoveReplica {
                    name: collection.to_owned(),
                    shard,
                    from,
                    to,
                },
                Duration::from_secs(300),
            )
            .await?;
        self.wait_meta_applied(index, Duration::from_secs(10)).await
    }

    /// Remove member `id` (see `admin::remove_member`), through the metadata leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), Error> {
        let (index, _) = self
            .meta_request(
                ClusterRequest::RemoveMember { id },
                Duration::from_secs(120),
            )
            .await?;
        self.wait_meta_applied(index, Duration::from_secs(10)).await
    }

    async fn wait_local_replicas(&self, name: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state();
            let missing = state
                .collections
                .get(name)
                .map(|c| {
                    c.shards
                        .iter()
                        .filter(|s| s.replicas.contains(&self.node_id))
                        .any(|s| self.local_shard(s.group).is_none())
                })
                .unwrap_or(false);
            if !missing {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "collection `{name}` created, but this node's replicas did not start within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn insert_local(&self, group: GroupId, shard: LocalShard) {
        self.shards
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, shard);
    }

    pub(crate) fn remove_local(&self, group: GroupId) -> Option<LocalShard> {
        self.shards
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group)
    }

    /// Stop background tasks and every Raft group (logs are already durable).
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.node.shutdown().await;
    }
}
