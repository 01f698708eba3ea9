//! The client side of Raft networking: openraft's `RaftNetworkV2` for one group, over a
//! [`Transport`] that carries `(group_id, rpc)` between nodes.
//!
//! Two transports implement it: [`InProcessRouter`] (tests: channels between nodes of one
//! process, with cut-off and heal) and [`crate::raft::tcp::TcpTransport`] (one multiplexed TCP
//! connection per peer, shared by every group). The server side of both is
//! [`crate::raft::group::RaftNode::handle_rpc`] and
//! [`crate::raft::group::RaftNode::install_snapshot`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use serde::{Deserialize, Serialize};

use crate::raft::budget;
use crate::raft::group::NodeShared;
use crate::raft::state_machine::SnapshotHandle;
use crate::raft::types::{GroupId, NodeId, NodeInfo, SnapshotMeta, TypeConfig, Vote};

/// A boxed future, as [`Transport`] methods return (the trait is used as `dyn`).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One Raft RPC for one group, as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Replicate entries / heartbeat.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Request a vote.
    Vote(VoteRequest<TypeConfig>),
    /// Pre-vote probe (does not disturb the current leader).
    PreVote(VoteRequest<TypeConfig>),
}

/// The answer to a [`RaftRpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// Answer to [`RaftRpc::Append`].
    Append(AppendEntriesResponse<TypeConfig>),
    /// Answer to [`RaftRpc::Vote`] and [`RaftRpc::PreVote`].
    Vote(VoteResponse<TypeConfig>),
    /// The receiver could not handle it (group not on that node, group stopped, …).
    Error(String),
}

/// Why a transport call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer cannot be reached (down, refused, cut off); openraft backs off.
    #[error("node {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// No answer within the deadline.
    #[error("call to node {0} timed out after {1:?}")]
    Timeout(NodeId, Duration),
    /// The call reached the peer but failed there or on the wire.
    #[error("call to node {0} failed: {1}")]
    Remote(NodeId, String),
}

/// Moves Raft traffic between nodes. Implementations must put a deadline on every call.
pub trait Transport: Send + Sync + 'static {
    /// Send `rpc` for `group` from node `from` to node `target` (reachable at `node`) and wait at
    /// most `timeout` for the reply.
    fn call(
        &self,
        from: NodeId,
        target: NodeId,
        node: &NodeInfo,
        group: GroupId,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> BoxFuture<Result<RaftReply, TransportError>>;

    /// Ship the snapshot in `dir` (described by `meta`) to `target`, which installs it under
    /// `vote`; `timeout` bounds the whole transfer.
    #[allow(clippy::too_many_arguments)]
    fn send_snapshot(
        &self,
        from: NodeId,
        target: NodeId,
        node: &NodeInfo,
        group: GroupId,
        vote: Vote,
        meta: SnapshotMeta,
        dir: PathBuf,
        timeout: Duration,
    ) -> BoxFuture<Result<SnapshotResponse<TypeConfig>, TransportError>>;
}

/// Timeouts the network client applies (openraft's own per-RPC TTL also bounds normal calls).
#[derive(Debug, Clone, Copy)]
pub struct NetworkTimeouts {
    /// Upper bound for one append/vote call.
    pub rpc: Duration,
    /// Upper bound for a whole snapshot transfer.
    pub snapshot: Duration,
}

/// A peer's consecutive failed Raft sends in one group, since its last successful one.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    /// Failed sends in a row.
    pub count: u64,
    /// The last one's error.
    pub latest_error: String,
    /// When the last one failed.
    pub at: std::time::SystemTime,
}

/// Consecutive failed sends per (group, peer) on one node: an entry appears on a failed
/// append, vote or pre-vote call and is removed by the next one that succeeds (Qdrant's
/// `message_send_failures`).
#[derive(Debug, Default)]
pub struct SendFailures {
    map: Mutex<HashMap<(GroupId, NodeId), SendFailure>>,
    /// Entries in `map`: a success with none recorded skips the lock.
    len: std::sync::atomic::AtomicUsize,
}

impl SendFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(GroupId, NodeId), SendFailure>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, group: GroupId, target: NodeId, error: String) {
        let mut map = self.lock();
        let e = map.entry((group, target)).or_insert(SendFailure {
            count: 0,
            latest_error: String::new(),
            at: std::time::SystemTime::now(),
        });
        e.count += 1;
        e.latest_error = error;
        e.at = std::time::SystemTime::now();
        self.len
            .store(map.len(), std::sync::atomic::Ordering::Relaxed);
    }

    fn succeeded(&self, group: GroupId, target: NodeId) {
        if self.len.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.lock();
        map.remove(&(group, target));
        self.len
            .store(map.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The peers `group`'s sends to are failing now, with their failures.
    pub fn of_group(&self, group: GroupId) -> std::collections::BTreeMap<NodeId, SendFailure> {
        self.lock()
            .iter()
            .filter(|((g, _), _)| *g == group)
            .map(|((_, n), f)| (*n, f.clone()))
            .collect()
    }
}

/// openraft's network factory for one group on one node.
pub struct GroupNetworkFactory {
    pub(crate) group: GroupId,
    pub(crate) from: NodeId,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) timeouts: NetworkTimeouts,
    /// Bytes of entries one append call carries at most.
    pub(crate) append_budget: usize,
    /// The node's record of failing sends.
    pub(crate) failures: Arc<SendFailures>,
}

/// A lazy "connection" from one group replica to a peer: the transport owns the real sockets.
pub struct GroupConnection {
    group: GroupId,
    from: NodeId,
    target: NodeId,
    node: NodeInfo,
    transport: Arc<dyn Transport>,
    timeouts: NetworkTimeouts,
    append_budget: usize,
    failures: Arc<SendFailures>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        GroupConnection {
            group: self.group,
            from: self.from,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            timeouts: self.timeouts,
            append_budget: self.append_budget,
            failures: self.failures.clone(),
        }
    }
}

impl GroupConnection {
    fn rpc_error(
        &self,
        e: TransportError,
        action: RPCTypes,
        timeout: Duration,
    ) -> RPCError<TypeConfig> {
        match e {
            TransportError::Unreachable(..) => RPCError::Unreachable(Unreachable::from_string(e)),
            TransportError::Timeout(..) => RPCError::Timeout(Timeout {
                action,
                id: self.from,
                target: self.target,
                timeout,
            }),
            TransportError::Remote(..) => RPCError::Network(NetworkError::from_string(e)),
        }
    }

    async fn call(
        &self,
        rpc: RaftRpc,
        action: RPCTypes,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<TypeConfig>> {
        let timeout = option.hard_ttl().min(self.timeouts.rpc);
        let reply = match self
            .transport
            .call(self.from, self.target, &self.node, self.group, rpc, timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.failures.failed(self.group, self.target, e.to_string());
                return Err(self.rpc_error(e, action, timeout));
            }
        };
        match reply {
            RaftReply::Error(msg) => {
                let msg = format!("node {} group {}: {msg}", self.target, self.group);
                self.failures.failed(self.group, self.target, msg.clone());
                Err(RPCError::Network(NetworkError::from_string(msg)))
            }
            other => {
                self.failures.succeeded(self.group, self.target);
                Ok(other)
            }
        }
    }
}

fn unexpected(reply: RaftReply) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "unexpected reply {reply:?}"
    )))
}

impl RaftNetworkV2<TypeConfig> for GroupConnection {
    type SnapshotData = SnapshotHandle;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // Replication by bytes: send at most the budget and tell openraft how far it got; it
        // sends the rest next (see [`budget`]).
        let mut rpc = rpc;
        let cut = budget::trim(&mut rpc, self.append_budget);
        match self
            .call(RaftRpc::Append(rpc), RPCTypes::AppendEntries, &option)
            .await?
        {
            RaftReply::Append(AppendEntriesResponse::Success) if cut.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(cut))
            }
            RaftReply::Append(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRpc::Vote(rpc), RPCTypes::Vote, &option)
            .await?
        {
            RaftReply::Vote(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRpc::PreVote(rpc), RPCTypes::Vote, &option)
            .await?
        {
            RaftReply::Vote(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotHandle>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let timeout = self.timeouts.snapshot;
        let send = self.transport.send_snapshot(
            self.from,
            self.target,
            &self.node,
            self.group,
            vote,
            snapshot.meta,
            snapshot.snapshot.dir,
            timeout,
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => r.map_err(|e| match e {
                TransportError::Unreachable(..) => StreamingError::Unreachable(Unreachable::from_string(e)),
                TransportError::Timeout(..) => StreamingError::Timeout(Timeout {
                    action: RPCTypes::InstallSnapshot,
                    id: self.from,
                    target: self.target,
                    timeout,
                }),
                TransportError::Remote(..) => StreamingError::Network(NetworkError::from_string(e)),
            }),
        }
    }
}

/// Copy the regular files of a snapshot directory (recursively) into `dst`.
pub(crate) fn copy_snapshot_files(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_snapshot_files(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// An in-process transport for tests: nodes registered in one router talk through it, every
/// message round-trips through the same postcard encoding as the TCP wire, and any node can be
/// cut off (both directions) and healed.
#[derive(Default, Clone)]
pub struct InProcessRouter {
    inner: Arc<RouterInner>,
}

#[derive(Default)]
struct RouterInner {
    nodes: Mutex<HashMap<NodeId, Weak<NodeShared>>>,
    cut: Mutex<HashSet<NodeId>>,
    /// Largest encoded RPC carried (0: no cap); like the TCP frame cap, a larger one fails.
    max_message_bytes: std::sync::atomic::AtomicUsize,
}

impl InProcessRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make `node` reachable through this router (called by `RaftNode::open_in_process`).
    pub(crate) fn register(&self, id: NodeId, node: &Arc<NodeShared>) {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(id, Arc::downgrade(node));
    }

    /// Isolate `node`: every message to or from it fails as unreachable until [`Self::heal`].
    pub fn cut(&self, node: NodeId) {
        self.inner
            .cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node);
    }

    /// Refuse RPCs that encode to more than `bytes`, as the TCP transport refuses frames over
    /// [`crate::raft::tcp::MAX_FRAME`] (scaled down for tests; 0 lifts the cap).
    pub fn set_max_message_bytes(&self, bytes: usize) {
        self.inner
            .max_message_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Undo [`Self::cut`].
    pub fn heal(&self, node: NodeId) {
        self.inner
            .cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node);
    }

    fn target(&self, from: NodeId, target: NodeId) -> Result<Arc<NodeShared>, TransportError> {
        let cut = self.inner.cut.lock().unwrap_or_else(|p| p.into_inner());
        if cut.contains(&from) || cut.contains(&target) {
            return Err(TransportError::Unreachable(target, "cut off".into()));
        }
        drop(cut);
        let nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .get(&target)
            .and_then(Weak::upgrade)
            .ok_or_else(|| TransportError::Unreachable(target, "not running".into()))
    }
}

/// `v` through the wire encoding, refused when it encodes to more than `cap` bytes (0: no cap).
fn roundtrip<T: Serialize + serde::de::DeserializeOwned>(
    v: &T,
    peer: NodeId,
    cap: usize,
) -> Result<T, TransportError> {
    let bytes =
        postcard::to_allocvec(v).map_err(|e| TransportError::Remote(peer, e.to_string()))?;
    if cap > 0 && bytes.len() > cap {
        return Err(TransportError::Remote(
            peer,
            format!(
                "message of {} bytes exceeds the limit of {cap}",
                bytes.len()
            ),
        ));
    }
    postcard::from_bytes(&bytes).map_err(|e| TransportError::Remote(peer, e.to_string()))
}

impl Transport for InProcessRouter {
    fn call(
        &self,
        from: NodeId,
        target: NodeId,
        _node: &NodeInfo,
        group: GroupId,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> BoxFuture<Result<RaftReply, TransportError>> {
        let router = self.clone();
        Box::pin(async move {
            let node = router.target(from, target)?;
            let cap = router
                .inner
                .max_message_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
            let rpc = roundtrip(&rpc, target, cap)?;
            let reply = tokio::time::timeout(timeout, NodeShared::handle_rpc(&node, group, rpc))
                .await
                .map_err(|_| TransportError::Timeout(target, timeout))?;
            // The reply can be lost too if a cut happened meanwhile.
            router.target(from, target)?;
            roundtrip(&reply, target, 0)
        })
    }

    fn send_snapshot(
        &self,
        from: NodeId,
        target: NodeId,
        _node: &NodeInfo,
        group: GroupId,
        vote: Vote,
        meta: SnapshotMeta,
        dir: PathBuf,
        timeout: Duration,
    ) -> BoxFuture<Result<SnapshotResponse<TypeConfig>, TransportError>> {
        let router = self.clone();
        Box::pin(async move {
            let node = router.target(from, target)?;
            let work = async {
                let incoming = node
                    .incoming_snapshot_dir(group)
                    .map_err(|e| TransportError::Remote(target, e.to_string()))?;
                let src = dir.clone();
                let dst = incoming.clone();
                tokio::task::spawn_blocking(move || copy_snapshot_files(&src, &dst))
                    .await
                    .map_err(|e| TransportError::Remote(target, e.to_string()))?
                    .map_err(|e| TransportError::Remote(target, e.to_string()))?;
                NodeShared::install_snapshot(&node, group, vote, meta, incoming)
                    .await
                    .map_err(|e| TransportError::Remote(target, e))
            };
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| TransportError::Timeout(target, timeout))?
        })
    }
}
