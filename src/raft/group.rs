//! Raft groups on a node: [`RaftGroup`] wraps one openraft `Raft` for `(group_id, node_id)`;
//! [`RaftNode`] owns the node's log database, its transport and all its groups, and serves the
//! RPCs other nodes send to them.
//!
//! A group whose core stopped on a storage error stays in the node's map, reported by
//! [`RaftNode::stopped_groups`], and [`RaftNode::restart_group`] starts a new core for it from
//! its persisted log over the same state machine; every clone of its [`RaftGroup`] (held by the
//! cluster layer) sees the new core, because the handle lives behind one shared lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, InitializeError, LinearizableReadError, RaftError};
use openraft::raft::SnapshotResponse;
use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};
use serde::Serialize;

use crate::raft::log_store::{LogDb, LogStoreError};
use crate::raft::network::{
    GroupNetworkFactory, InProcessRouter, NetworkTimeouts, RaftReply, RaftRpc, SendFailure,
    SendFailures, Transport,
};
use crate::raft::state_machine::{
    GroupStateMachine, SnapshotHandle, StateMachineApp, verify_snapshot_dir,
};
use crate::raft::types::{
    Command, GroupId, NodeId, NodeInfo, Raft, SnapshotMeta, TypeConfig, Vote,
};

/// Raft timing and log-retention knobs, shared by every group of a node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// Leader heartbeat period. Heartbeats are not coalesced across groups, so clusters use a
    /// slow one (500 ms): `leaders × followers / heartbeat` RPCs per second.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so short outages catch up from the log.
    pub keep_entries_behind_snapshot: u64,
    /// A follower further behind than this is caught up by snapshot instead of entries.
    pub replication_lag_threshold: u64,
    /// Deadline of one append/vote RPC.
    pub rpc_timeout: Duration,
    /// Deadline of one whole snapshot transfer.
    pub snapshot_timeout: Duration,
    /// Bytes of entries one append call carries at most ([`crate::raft::budget`]).
    pub append_budget_bytes: usize,
    /// Largest command [`RaftGroup::write`] accepts ([`crate::raft::budget::MAX_ENTRY_BYTES`]).
    pub max_entry_bytes: usize,
}

impl Default for RaftConfig {
    /// Cluster settings: 500 ms heartbeat, 1.5–3 s election timeout.
    fn default() -> Self {
        Self {
            heartbeat_ms: 500,
            election_timeout_min_ms: 1500,
            election_timeout_max_ms: 3000,
            snapshot_every_entries: 5000,
            keep_entries_behind_snapshot: 1000,
            replication_lag_threshold: 10_000,
            rpc_timeout: Duration::from_secs(2),
            snapshot_timeout: Duration::from_secs(600),
            append_budget_bytes: crate::raft::budget::APPEND_BUDGET_BYTES,
            max_entry_bytes: crate::raft::budget::MAX_ENTRY_BYTES,
        }
    }
}

impl RaftConfig {
    /// Fast timings for in-process tests (50 ms heartbeat, 200–400 ms election timeout).
    pub fn fast() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            rpc_timeout: Duration::from_millis(500),
            snapshot_timeout: Duration::from_secs(10),
            ..Self::default()
        }
    }

    fn openraft_config(&self, group: GroupId) -> Result<Config, RaftGroupError> {
        let c = Config {
            cluster_name: format!("shoal-group-{group}"),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_behind_snapshot,
            replication_lag_threshold: self.replication_lag_threshold,
            ..Default::default()
        };
        c.validate()
            .map_err(|e| RaftGroupError::Config(e.to_string()))
    }
}

/// What can go wrong with a Raft group operation.
#[derive(Debug, thiserror::Error)]
pub enum RaftGroupError {
    /// This replica is not the leader: retry on `leader` (unknown while an election runs).
    #[error("not the leader of group {group}; leader is {leader_id:?}")]
    ForwardToLeader {
        /// The group.
        group: GroupId,
        /// The current leader, if known.
        leader_id: Option<NodeId>,
        /// Its addresses, if known.
        leader: Option<NodeInfo>,
    },
    /// A command larger than one log entry may be ([`crate::raft::budget::MAX_ENTRY_BYTES`]).
    #[error(
        "a write of {bytes} bytes exceeds the {cap}-byte limit of one log entry in group {group}"
    )]
    TooLarge {
        /// The group.
        group: GroupId,
        /// The command's size.
        bytes: usize,
        /// The limit.
        cap: usize,
    },
    /// The leader changed after the write was proposed: it may or may not be committed.
    #[error("leadership of group {group} changed while writing; the outcome is unknown")]
    OutcomeUnknown {
        /// The group.
        group: GroupId,
    },
    /// `initialize` on a group that already has state.
    #[error("group {group} is already initialized")]
    AlreadyInitialized {
        /// The group.
        group: GroupId,
    },
    /// A membership change was refused (another in progress, unknown learner, …).
    #[error("membership change refused in group {group}: {reason}")]
    Membership {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
    /// The group stopped (shut down, or its core hit a storage error).
    #[error("group {group} stopped: {reason}")]
    Stopped {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
    /// The operation did not finish in time.
    #[error("group {group}: timed out waiting for {what}")]
    Timeout {
        /// The group.
        group: GroupId,
        /// What was awaited.
        what: String,
    },
    /// The group is already running on this node.
    #[error("group {0} is already running on this node")]
    GroupExists(GroupId),
    /// The group is not running on this node.
    #[error("group {0} is not running on this node")]
    NoSuchGroup(GroupId),
    /// Invalid Raft configuration.
    #[error("invalid raft config: {0}")]
    Config(String),
    /// The log database could not be opened.
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    /// Local disk failure (snapshot directory, …).
    #[error("group storage: {0}")]
    Io(#[from] std::io::Error),
}

/// The role a replica plays right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Replicates but does not vote (being caught up before joining).
    Learner,
    /// Voter following a leader.
    Follower,
    /// Voter running an election.
    Candidate,
    /// The leader: accepts writes.
    Leader,
    /// Stopped.
    Shutdown,
}

/// A point-in-time view of one replica, for `/cluster`, routing and health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMetrics {
    /// The group.
    pub group_id: GroupId,
    /// This node.
    pub node_id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader this replica believes in.
    pub leader: Option<NodeId>,
    /// Index of the last entry in the local log.
    pub last_log_index: Option<u64>,
    /// Highest index known committed.
    pub committed: Option<u64>,
    /// Highest index applied to the application.
    pub applied: Option<u64>,
    /// Last index covered by the current snapshot.
    pub snapshot: Option<u64>,
    /// Last index deleted from the log.
    pub purged: Option<u64>,
    /// Voting members.
    pub voters: Vec<NodeId>,
    /// Non-voting members.
    pub learners: Vec<NodeId>,
}

/// The result of a committed, applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The log index the command got (a consistency token for session reads).
    pub index: u64,
    /// What the application's `apply` returned on the leader.
    pub response: Vec<u8>,
}

/// One replica of one Raft group. Cheap to clone.
#[derive(Clone)]
pub struct RaftGroup {
    group_id: GroupId,
    node_id: NodeId,
    /// Largest command [`RaftGroup::write`] accepts.
    max_entry_bytes: usize,
    /// The current openraft core, shared by every clone: a restart after a storage error
    /// replaces it here ([`RaftNode::restart_group`]).
    core: Arc<RwLock<Raft>>,
    sm: GroupStateMachine,
}

fn forward(group: GroupId, f: &openraft::errors::ForwardToLeader<TypeConfig>) -> RaftGroupError {
    RaftGroupError::ForwardToLeader {
        group,
        leader_id: f.leader_id,
        leader: f.leader_node.clone(),
    }
}

fn write_error(
    group: GroupId,
    e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> RaftGroupError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(group, &f),
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            RaftGroupError::OutcomeUnknown { group }
        }
        RaftError::APIError(other) => RaftGroupError::Membership {
            group,
            reason: other.to_string(),
        },
        RaftError::Fatal(f) => RaftGroupError::Stopped {
            group,
            reason: f.to_string(),
        },
    }
}

impl RaftGroup {
    /// The group id.
    pub fn group_id(&self) -> GroupId {
        self.group_id
    }

    /// This replica's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Bootstrap a new group with `members` as its voters. Call once, on one member, for a
    /// group that has never run; the others learn the membership from the leader.
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, NodeInfo>,
    ) -> Result<(), RaftGroupError> {
        let group = self.group_id;
        self.raft().initialize(members).await.map_err(|e| match e {
            RaftError::APIError(InitializeError::NotAllowed(_)) => {
                RaftGroupError::AlreadyInitialized { group }
            }
            RaftError::APIError(InitializeError::NotInMembers(n)) => RaftGroupError::Membership {
                group,
                reason: n.to_string(),
            },
            RaftError::Fatal(f) => RaftGroupError::Stopped {
                group,
                reason: f.to_string(),
            },
        })
    }

    /// Replicate `command` to a majority (fsynced), apply it, and return its index and the
    /// application's response. On a follower, fails with [`RaftGroupError::ForwardToLeader`].
    /// A command over the configured `max_entry_bytes` is refused with
    /// [`RaftGroupError::TooLarge`] before it reaches the log: no peer could receive it.
    pub async fn write(&self, command: Vec<u8>) -> Result<WriteOutcome, RaftGroupError> {
        let cap = self.max_entry_bytes;
        if command.len() > cap {
            return Err(RaftGroupError::TooLarge {
                group: self.group_id,
                bytes: command.len(),
                cap,
            });
        }
        let resp = self
            .raft()
            .client_write(Command(command))
            .await
            .map_err(|e| write_error(self.group_id, e))?;
        Ok(WriteOutcome {
            index: resp.log_id.index,
            response: resp.data,
        })
    }

    /// Wait until reading local state is linearizable: confirms leadership with a quorum
    /// (ReadIndex) and waits until the state machine has applied up to the read index. Returns
    /// that index. Only the leader can do this.
    pub async fn linearizable_read(&self) -> Result<u64, RaftGroupError> {
        let group = self.group_id;
        let read = self
            .raft()
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| match e {
                RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => {
                    forward(group, &f)
                }
                RaftError::APIError(other) => RaftGroupError::Timeout {
                    group,
                    what: format!("read index: {other}"),
                },
                RaftError::Fatal(f) => RaftGroupError::Stopped {
                    group,
                    reason: f.to_string(),
                },
            })?;
        Ok(read.log_id().index)
    }

    /// Wait until this replica has applied `index` (session reads on followers), at most
    /// `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), RaftGroupError> {
        self.raft()
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "wait_applied")
            .await
            .map(|_| ())
            .map_err(|e| RaftGroupError::Timeout {
                group: self.group_id,
                what: format!("applied index {index}: {e}"),
            })
    }

    /// `Some(answer)` when a snapshot sent under `vote` must be refused unread because this
    /// replica has seen a newer vote: the answer carries that vote, as openraft answers a stale
    /// leader, so the sender steps down instead of retrying.
    pub fn stale_snapshot_vote(&self, vote: &Vote) -> Option<SnapshotResponse<TypeConfig>> {
        let current = self.raft().metrics().borrow_watched().vote;
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        // openraft's own test: a vote is partially ordered
        let stale = !(*vote >= current);
        stale.then(|| SnapshotResponse::new(current))
    }

    /// Index applied to the application on this replica.
    pub fn applied_index(&self) -> Option<u64> {
        self.sm.last_applied_index()
    }

    /// A snapshot of this replica's state: role, term, indexes, leader, members.
    pub fn metrics(&self) -> GroupMetrics {
        let m = self.raft().metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Learner => Role::Learner,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Leader => Role::Leader,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        GroupMetrics {
            group_id: self.group_id,
            node_id: self.node_id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed: m.local_committed.as_ref().map(|l| l.index),
            applied: m.last_applied.as_ref().map(|l| l.index),
            snapshot: m.snapshot.as_ref().map(|l| l.index),
            purged: m.purged.as_ref().map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Add `id` as a learner (leader only). With `blocking`, wait until it has caught up.
    pub async fn add_learner(
        &self,
        id: NodeId,
        node: NodeInfo,
        blocking: bool,
    ) -> Result<(), RaftGroupError> {
        self.raft()
            .add_learner(id, node, blocking)
            .await
            .map(|_| ())
            .map_err(|e| write_error(self.group_id, e))
    }

    /// Make `voters` the voting members (joint consensus, two steps; leader only). Members
    /// must be learners or voters already. With `retain`, removed voters stay as learners.
    /// Membership changes of one group must be serialised by the caller.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<(), RaftGroupError> {
        self.raft()
            .change_membership(voters, retain)
            .await
            .map(|_| ())
            .map_err(|e| write_error(self.group_id, e))
    }

    /// Remove `ids` from the group, voters and learners alike (joint consensus for voters;
    /// leader only). Membership changes of one group must be serialised by the caller.
    pub async fn remove_nodes(&self, ids: BTreeSet<NodeId>) -> Result<(), RaftGroupError> {
        self.raft()
            .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(|e| write_error(self.group_id, e))
    }

    /// Build a snapshot now (and purge the log behind it per the config).
    pub async fn trigger_snapshot(&self) -> Result<(), RaftGroupError> {
        self.raft()
            .trigger()
            .snapshot()
            .await
            .map_err(|e| RaftGroupError::Stopped {
                group: self.group_id,
                reason: e.to_string(),
            })
    }

    /// The underlying openraft handle, for anything not wrapped here (the current core: a
    /// restart replaces it, so do not keep it).
    pub fn raft(&self) -> Raft {
        self.core.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why this replica's core stopped, if it stopped on its own (a storage error, a panic):
    /// `None` while it runs or after a deliberate shutdown.
    pub fn stopped(&self) -> Option<String> {
        let m = self.raft().metrics();
        let m = m.borrow_watched();
        match &m.running_state {
            Err(openraft::errors::Fatal::Stopped) | Ok(()) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Whether the core stopped on a storage error, which a restart can cure once the disk
    /// can be written again (a panic is not retried).
    fn stopped_on_storage(&self) -> bool {
        let m = self.raft().metrics();
        let stopped = matches!(
            m.borrow_watched().running_state,
            Err(openraft::errors::Fatal::StorageError(_))
        );
        stopped
    }

    /// Stop this replica's Raft tasks. The data stays on disk; start the group again to resume.
    pub async fn shutdown(&self) -> Result<(), RaftGroupError> {
        self.raft()
            .shutdown()
            .await
            .map_err(|e| RaftGroupError::Stopped {
                group: self.group_id,
                reason: e.to_string(),
            })
    }
}

/// Node state shared with transports (which hold it weakly to deliver RPCs).
pub(crate) struct NodeShared {
    node_id: NodeId,
    data_dir: PathBuf,
    logs: LogDb,
    transport: Arc<dyn Transport>,
    config: RaftConfig,
    groups: RwLock<HashMap<GroupId, RaftGroup>>,
    /// Failing sends of every group of this node, by peer.
    send_failures: Arc<SendFailures>,
}

impl NodeShared {
    fn group(&self, id: GroupId) -> Option<RaftGroup> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Serve one RPC that a peer sent to `group` on this node.
    pub(crate) async fn handle_rpc(
        node: &Arc<NodeShared>,
        group: GroupId,
        rpc: RaftRpc,
    ) -> RaftReply {
        let Some(g) = node.group(group) else {
            return RaftReply::Error(format!(
                "group {group} is not running on node {}",
                node.node_id
            ));
        };
        let r = match rpc {
            RaftRpc::Append(req) => g.raft().append_entries(req).await.map(RaftReply::Append),
            RaftRpc::Vote(req) => g.raft().vote(req).await.map(RaftReply::Vote),
            RaftRpc::PreVote(req) => g.raft().pre_vote(req).await.map(RaftReply::Vote),
        };
        r.unwrap_or_else(|e| RaftReply::Error(e.to_string()))
    }

    /// Checks `vote` for a snapshot about to be received for `group`: `Ok(Some(answer))` refuses
    /// it unread (stale vote), `Err` when the group does not run here.
    pub(crate) fn stale_snapshot_vote(
        &self,
        group: GroupId,
        vote: &Vote,
    ) -> Result<Option<SnapshotResponse<TypeConfig>>, String> {
        match self.group(group) {
            Some(g) => Ok(g.stale_snapshot_vote(vote)),
            None => Err(format!(
                "group {group} is not running on node {}",
                self.node_id
            )),
        }
    }

    /// A fresh directory where a transport writes a snapshot it receives for `group`.
    pub(crate) fn incoming_snapshot_dir(&self, group: GroupId) -> std::io::Result<PathBuf> {
        match self.group(group) {
            Some(g) => g.sm.incoming_dir(),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("group {group} is not running on node {}", self.node_id),
            )),
        }
    }

    /// Install a snapshot received into `dir` (from [`Self::incoming_snapshot_dir`]).
    pub(crate) async fn install_snapshot(
        node: &Arc<NodeShared>,
        group: GroupId,
        vote: Vote,
        meta: SnapshotMeta,
        dir: PathBuf,
    ) -> Result<SnapshotResponse<TypeConfig>, String> {
        let Some(g) = node.group(group) else {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "group {group} is not running on node {}",
                node.node_id
            ));
        };
        // The vote first, before the manifest or any received file is looked at.
        if let Some(stale) = g.stale_snapshot_vote(&vote) {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(stale);
        }
        // A torn copy (the sender's snapshot was replaced mid-transfer) must be refused here:
        // a failed install inside openraft stops the group.
        let check_dir = dir.clone();
        let check_meta = meta.clone();
        let checked =
            tokio::task::spawn_blocking(move || verify_snapshot_dir(&check_dir, &check_meta))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = checked {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("received snapshot refused: {e}"));
        }
        let snapshot = openraft::type_config::alias::SnapshotOf::<TypeConfig, SnapshotHandle> {
            meta,
            snapshot: SnapshotHandle { dir: dir.clone() },
        };
        let r = g
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string());
        // If openraft declined it (stale vote or older than our state), the directory is ours
        // to remove; an installed one was renamed away.
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }
}

/// All Raft groups of one node, their shared log database (`<data_dir>/raft-log.redb`) and
/// transport. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    shared: Arc<NodeShared>,
}

impl RaftNode {
    /// Open the node's Raft storage under `data_dir` and use `transport` to reach peers. The
    /// server side of the transport must route incoming calls to [`Self::handle_rpc`] and
    /// [`Self::install_snapshot`].
    pub fn open(
        node_id: NodeId,
        data_dir: &Path,
        transport: Arc<dyn Transport>,
        config: RaftConfig,
    ) -> Result<Self, RaftGroupError> {
        std::fs::create_dir_all(data_dir.join("groups"))?;
        let logs = LogDb::open(&data_dir.join("raft-log.redb"))?;
        Ok(Self {
            shared: Arc::new(NodeShared {
                node_id,
                data_dir: data_dir.to_owned(),
                logs,
                transport,
                config,
                groups: RwLock::new(HashMap::new()),
                send_failures: Arc::default(),
            }),
        })
    }

    /// Open a node that talks through an [`InProcessRouter`] (tests).
    pub fn open_in_process(
        node_id: NodeId,
        data_dir: &Path,
        router: &InProcessRouter,
        config: RaftConfig,
    ) -> Result<Self, RaftGroupError> {
        let node = Self::open(node_id, data_dir, Arc::new(router.clone()), config)?;
        router.register(node_id, &node.shared);
        Ok(node)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The directory holding the node's log database and its groups' snapshots.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.groups_dir().join(group.to_string())
    }

    /// The directory holding one sub-directory per group that ran here (named by group id).
    pub fn groups_dir(&self) -> PathBuf {
        self.shared.data_dir.join("groups")
    }

    /// Start this node's replica of `group`, applying to `app`. Recovers from the group's log
    /// and latest snapshot if it ran here before; a new group waits for `initialize` (on one
    /// member) or for a leader to contact it.
    pub async fn start_group(
        &self,
        group: GroupId,
        app: Arc<dyn StateMachineApp>,
    ) -> Result<RaftGroup, RaftGroupError> {
        if self.shared.group(group).is_some() {
            return Err(RaftGroupError::GroupExists(group));
        }
        let sm = GroupStateMachine::open(app, &self.group_dir(group).join("snapshots"))?;
        let raft = self.new_core(group, &sm).await?;
        let g = RaftGroup {
            group_id: group,
            node_id: self.shared.node_id,
            max_entry_bytes: self.shared.config.max_entry_bytes,
            core: Arc::new(RwLock::new(raft)),
            sm,
        };
        let inserted = {
            let mut groups = self
                .shared
                .groups
                .write()
                .unwrap_or_else(|p| p.into_inner());
            match groups.entry(group) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(g.clone());
                    true
                }
            }
        };
        if !inserted {
            let _ = g.raft().shutdown().await;
            return Err(RaftGroupError::GroupExists(group));
        }
        Ok(g)
    }

    /// A new openraft core for `group` over `sm`, recovering from the group's persisted log
    /// and the state machine's snapshot and applied state.
    async fn new_core(
        &self,
        group: GroupId,
        sm: &GroupStateMachine,
    ) -> Result<Raft, RaftGroupError> {
        let config = Arc::new(self.shared.config.openraft_config(group)?);
        let network = GroupNetworkFactory {
            group,
            from: self.shared.node_id,
            transport: self.shared.transport.clone(),
            timeouts: NetworkTimeouts {
                rpc: self.shared.config.rpc_timeout,
                snapshot: self.shared.config.snapshot_timeout,
            },
            append_budget: self.shared.config.append_budget_bytes,
            failures: self.shared.send_failures.clone(),
        };
        Raft::new(
            self.shared.node_id,
            config,
            network,
            self.shared.logs.group(group),
            sm.clone(),
        )
        .await
        .map_err(|e| RaftGroupError::Stopped {
            group,
            reason: e.to_string(),
        })
    }

    /// A handle to every group in this node's map, taken under the lock and used after it.
    fn group_handles(&self) -> Vec<RaftGroup> {
        self.shared
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The groups in this node's map whose core stopped on its own, with why
    /// ([`RaftGroup::stopped`]). A group stopped on purpose leaves the map first.
    pub fn stopped_groups(&self) -> Vec<(GroupId, String)> {
        let mut out: Vec<_> = self
            .group_handles()
            .iter()
            .filter_map(|g| g.stopped().map(|why| (g.group_id, why)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The groups whose core stopped on a storage error: the ones a restart can cure.
    pub fn groups_stopped_on_storage(&self) -> Vec<GroupId> {
        let mut out: Vec<_> = self
            .group_handles()
            .iter()
            .filter(|g| g.stopped_on_storage())
            .map(|g| g.group_id)
            .collect();
        out.sort_unstable();
        out
    }

    /// Why the node's shared log cannot be written, if a write failed and no reopen succeeded
    /// since.
    pub fn log_failure(&self) -> Option<String> {
        self.shared.logs.failure()
    }

    /// The peers `group`'s Raft messages from this node are failing to reach now, each with
    /// its consecutive failures since the last success.
    pub fn send_failures(&self, group: GroupId) -> std::collections::BTreeMap<NodeId, SendFailure> {
        self.shared.send_failures.of_group(group)
    }

    /// Reopens of the shared log after a storage failure, since the process started.
    pub fn log_reopens(&self) -> u64 {
        self.shared.logs.reopens()
    }

    /// After a storage failure: close and reopen the shared log (a durable write proves it
    /// writable). Blocking; does nothing when no failure is recorded.
    pub fn reopen_log(&self) -> Result<(), RaftGroupError> {
        Ok(self.shared.logs.reopen()?)
    }

    /// Start a new core for `group` if its core stopped on a storage error: from the persisted
    /// log, over the same state machine (whose applied state and snapshot stay as they were,
    /// so only committed entries beyond them are applied). Returns whether it restarted. A
    /// group stopped or destroyed meanwhile is left alone.
    pub async fn restart_group(&self, group: GroupId) -> Result<bool, RaftGroupError> {
        let Some(g) = self.shared.group(group) else {
            return Ok(false);
        };
        if !g.stopped_on_storage() {
            return Ok(false);
        }
        // Joins the stopped core's task; its state-machine worker ends when the core drops
        // its channel, and an apply still in flight is skipped by the new core's worker (the
        // state machine ignores indexes it has applied).
        let _ = g.raft().shutdown().await;
        let raft = self.new_core(group, &g.sm).await?;
        let current = self.shared.group(group);
        let same = current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.core, &g.core));
        if !same {
            let _ = raft.shutdown().await;
            return Ok(false);
        }
        *g.core.write().unwrap_or_else(|p| p.into_inner()) = raft;
        tracing::info!(
            group,
            node = self.shared.node_id,
            "raft group restarted after a storage failure"
        );
        Ok(true)
    }

    /// The running replica of `group`, if any.
    pub fn group(&self, group: GroupId) -> Option<RaftGroup> {
        self.shared.group(group)
    }

    /// Ids of the groups running on this node.
    pub fn group_ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<_> = self
            .shared
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Stop the replica of `group` on this node, keeping its data (it can be started again).
    pub async fn stop_group(&self, group: GroupId) -> Result<(), RaftGroupError> {
        let g = self
            .shared
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group)
            .ok_or(RaftGroupError::NoSuchGroup(group))?;
        g.shutdown().await
    }

    /// Stop the replica of `group` and delete its log and snapshots from this node (after it
    /// was removed from the group's membership). Never start it again under this node id.
    pub async fn destroy_group(&self, group: GroupId) -> Result<(), RaftGroupError> {
        if self.shared.group(group).is_some() {
            self.stop_group(group).await?;
        }
        self.shared.logs.drop_group(group).await?;
        let dir = self.group_dir(group);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Stop every group on this node.
    pub async fn shutdown(&self) {
        let groups: Vec<RaftGroup> = self
            .shared
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, g)| g)
            .collect();
        for g in groups {
            if let Err(e) = g.shutdown().await {
                tracing::warn!(group = g.group_id, error = %e, "group shutdown failed");
            }
        }
    }

    /// Serve an RPC a peer sent to `group` (server side of a transport).
    pub async fn handle_rpc(&self, group: GroupId, rpc: RaftRpc) -> RaftReply {
        NodeShared::handle_rpc(&self.shared, group, rpc).await
    }

    /// Checked by a transport when a snapshot transfer begins, before it receives any file:
    /// `Ok(Some(answer))` means `vote` is older than this replica's and the transfer is answered
    /// with `answer` unread; `Err` when `group` does not run here.
    pub fn stale_snapshot_vote(
        &self,
        group: GroupId,
        vote: &Vote,
    ) -> Result<Option<SnapshotResponse<TypeConfig>>, String> {
        self.shared.stale_snapshot_vote(group, vote)
    }

    /// A fresh directory where a transport writes the files of a snapshot it receives for
    /// `group`, before calling [`Self::install_snapshot`].
    pub fn incoming_snapshot_dir(&self, group: GroupId) -> std::io::Result<PathBuf> {
        self.shared.incoming_snapshot_dir(group)
    }

    /// Install a fully received snapshot (server side of a transport).
    pub async fn install_snapshot(
        &self,
        group: GroupId,
        vote: Vote,
        meta: SnapshotMeta,
        dir: PathBuf,
    ) -> Result<SnapshotResponse<TypeConfig>, String> {
        NodeShared::install_snapshot(&self.shared, group, vote, meta, dir).await
    }
}
