//! What `GET /cluster` and `/metrics` show: each node reports its own replicas
//! ([`local_status`], served as the cluster service's `Status`), and [`cluster_view`] asks every
//! member live, with a short deadline, so an unreachable node shows as such instead of stale.

use super::rpc::{ClusterReply, ClusterRequest};
use super::{Cluster, STATUS_TIMEOUT};
use crate::raft::{GroupId, NodeId, RaftGroup, Role};
use crate::shard::PayloadFieldInfo;
use openraft::async_runtime::watch::WatchReceiver;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use utoipa::ToSchema;

/// One replica as its node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The group.
    pub group: GroupId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this replica believes in.
    pub leader: Option<NodeId>,
    /// Last index in the local log.
    pub last_log: Option<u64>,
    /// Highest index known committed.
    pub committed: Option<u64>,
    /// Highest index applied.
    pub applied: Option<u64>,
    /// Last index in the current snapshot.
    pub snapshot: Option<u64>,
    /// Last index purged from the log.
    pub purged: Option<u64>,
    /// Voting members.
    pub voters: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Live points in the replica (shard groups only).
    pub points: Option<u64>,
    /// The replica's segments (shard groups only), for collection info.
    pub segments: Option<SegmentCounts>,
    /// On a leader: follower → entries it lags behind the leader's log.
    pub follower_lag: BTreeMap<NodeId, u64>,
    /// The replica's payload indexes and the points each covers (shard groups only), for
    /// collection info on any node, whether or not it holds a replica (appended last).
    pub payload_schema: Option<BTreeMap<String, PayloadFieldInfo>>,
}

/// How far a shard replica's index is built: what `GET /collections/{name}` sums over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentCounts {
    /// Live points in IVF-PQ segments.
    pub indexed_points: u64,
    /// Segments, mutable and sealed.
    pub segments: u64,
    /// Index builds running now.
    pub building: u64,
}

impl SegmentCounts {
    fn of(stats: &crate::shard::ShardStats) -> Self {
        SegmentCounts {
            indexed_points: stats.indexed_points as u64,
            segments: stats.segments as u64,
            building: stats.building as u64,
        }
    }
}

/// Every replica on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node_id: NodeId,
    /// Whether the node is ready.
    pub ready: bool,
    /// Metadata group replica.
    pub meta: ReplicaStatus,
    /// Shard replicas.
    pub groups: Vec<ReplicaStatus>,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "shutdown",
    }
}

fn replica_status(
    g: &RaftGroup,
    stats: Option<&crate::shard::ShardStats>,
    schema: Option<BTreeMap<String, PayloadFieldInfo>>,
) -> ReplicaStatus {
    let m = g.metrics();
    let follower_lag = {
        let rm = g.raft().metrics();
        let rm = rm.borrow_watched();
        let last = rm.last_log_index.unwrap_or(0);
        rm.replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.node_id)
                    .map(|(id, l)| (*id, last.saturating_sub(l.as_ref().map_or(0, |l| l.index))))
                    .collect()
            })
            .unwrap_or_default()
    };
    ReplicaStatus {
        group: m.group_id,
        role: role_name(m.role).to_owned(),
        term: m.term,
        leader: m.leader,
        last_log: m.last_log_index,
        committed: m.committed,
        applied: m.applied,
        snapshot: m.snapshot,
        purged: m.purged,
        voters: m.voters,
        learners: m.learners,
        points: stats.map(|s| s.points as u64),
        segments: stats.map(SegmentCounts::of),
        follower_lag,
        payload_schema: schema,
    }
}

/// The state of every replica on this node.
pub fn local_status(c: &Cluster) -> NodeStatus {
    NodeStatus {
        node_id: c.node_id(),
        ready: c.is_ready(),
        meta: replica_status(c.meta_group(), None, None),
        groups: c
            .local_shards()
            .iter()
            .map(|(_, s)| {
                let lanes = s.app.lanes();
                let schema = lanes.primary().payload_schema();
                replica_status(&s.group, Some(&lanes.stats()), Some(schema))
            })
            .collect(),
    }
}

/// The metadata group as `GET /cluster` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetaView {
    /// Current metadata leader.
    pub leader: Option<NodeId>,
    /// Current metadata term.
    pub term: u64,
    /// Voters of the metadata group.
    pub voters: Vec<NodeId>,
    /// Learners of the metadata group.
    pub learners: Vec<NodeId>,
    /// Metadata index applied on this node.
    pub applied: u64,
}

/// A member node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    /// Node id.
    pub id: NodeId,
    /// Internal (Raft, node-to-node) address.
    pub internal_addr: String,
    /// REST address.
    pub api_addr: String,
    /// Whether it answered a status probe just now.
    pub reachable: bool,
    /// Whether it reports ready.
    pub ready: bool,
}

/// One replica of a shard.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaView {
    /// The node holding it.
    pub node: NodeId,
    /// Whether the node answered.
    pub reachable: bool,
    /// Role, when reachable and running.
    pub role: Option<String>,
    /// Term.
    pub term: Option<u64>,
    /// Commit index.
    pub commit: Option<u64>,
    /// Applied index.
    pub applied: Option<u64>,
    /// Entries behind the leader's commit index.
    pub lag: Option<u64>,
    /// Last index covered by the replica's snapshot.
    pub snapshot: Option<u64>,
    /// Last index purged from the replica's log.
    pub purged: Option<u64>,
    /// Live points in this replica.
    pub points: Option<u64>,
    /// Its segments and index builds.
    pub segments: Option<SegmentCounts>,
    /// Its payload indexes and the points each covers.
    pub payload_schema: Option<BTreeMap<String, PayloadFieldInfo>>,
}

/// One shard.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShardView {
    /// Shard number.
    pub shard: u32,
    /// Raft group id.
    pub group: GroupId,
    /// Current leader, as the replicas report it.
    pub leader: Option<NodeId>,
    /// Replicas, in metadata order.
    pub replicas: Vec<ReplicaView>,
}

/// One collection's shards.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionView {
    /// Shards.
    pub shard_number: u32,
    /// Replicas per shard.
    pub replication_factor: u32,
    /// `hash` or `centroid`.
    pub placement: String,
    /// Whether centroids are trained (centroid placement).
    pub centroids_trained: bool,
    /// Each shard.
    pub shards: Vec<ShardView>,
}

/// A peer in Qdrant's `PeerInfo` shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QdrantPeer {
    /// `http://` and the node's internal (Raft) address, as Qdrant gives its peers' p2p URIs
    /// (a node without an internal port, a cluster of one: its REST address).
    pub uri: String,
}

/// Qdrant's `RaftInfo`: this node's replica of the metadata Raft group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RaftInfo {
    /// Current term.
    pub term: u64,
    /// Highest index this node knows committed.
    pub commit: u64,
    /// Committed entries not applied yet on this node.
    pub pending_operations: u64,
    /// The leader this node believes in.
    pub leader: Option<NodeId>,
    /// `Leader`, `Follower` or `Candidate` (a learner is a `Follower` with `is_voter` false;
    /// none when the core is stopped).
    pub role: Option<String>,
    /// Whether this node votes in the metadata group.
    pub is_voter: bool,
}

/// Qdrant's `ConsensusThreadStatus`: whether this node's metadata Raft core runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsensusStatus {
    /// `working`, `stopped` (shut down) or `stopped_with_err` (stopped on a storage error or a
    /// panic).
    pub consensus_thread_status: String,
    /// With `working`: on the metadata leader, when a quorum last acknowledged it; elsewhere,
    /// when this answer read the running core's state (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<String>,
    /// With `stopped_with_err`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
}

/// Qdrant's `MessageSendErrors`: consecutive failed metadata-group sends to one peer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageSendErrors {
    /// Failures in a row since the last successful send.
    pub count: u64,
    /// The last failure.
    pub latest_error: Option<String>,
    /// When it happened (RFC 3339, UTC).
    pub latest_error_timestamp: Option<String>,
}

/// RFC 3339 (UTC, microseconds) of a wall-clock time.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, h, m, s) = utc_civil(d.as_secs());
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
        d.subsec_micros()
    )
}

/// The UTC calendar date and time of day of `secs` seconds after the Unix epoch: year, month,
/// day, hour, minute, second (Howard Hinnant's `civil_from_days`). No date crate for two
/// timestamps.
pub(crate) fn utc_civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Qdrant's view of the metadata group on this node: `raft_info`, `consensus_thread_status`
/// and `message_send_failures` (keyed by the peer's internal address).
pub(super) fn consensus(
    c: &Cluster,
    state: &super::ClusterState,
) -> (
    RaftInfo,
    ConsensusStatus,
    BTreeMap<String, MessageSendErrors>,
) {
    let g = c.meta_group();
    let m = g.metrics();
    let committed = m.committed.unwrap_or(0);
    let raft_info = RaftInfo {
        term: m.term,
        commit: committed,
        pending_operations: committed.saturating_sub(m.applied.unwrap_or(0)),
        leader: m.leader,
        role: match m.role {
            Role::Leader => Some("Leader".into()),
            Role::Candidate => Some("Candidate".into()),
            Role::Follower | Role::Learner => Some("Follower".into()),
            Role::Shutdown => None,
        },
        is_voter: m.voters.contains(&m.node_id),
    };
    let status = match (g.stopped(), m.role) {
        (Some(err), _) => ConsensusStatus {
            consensus_thread_status: "stopped_with_err".into(),
            last_update: None,
            err: Some(err),
        },
        (None, Role::Shutdown) => ConsensusStatus {
            consensus_thread_status: "stopped".into(),
            last_update: None,
            err: None,
        },
        (None, _) => {
            // The same figure as `last_quorum_acked`, already as milliseconds ago.
            #[allow(deprecated)]
            let acked = g.raft().metrics().borrow_watched().millis_since_quorum_ack;
            let now = std::time::SystemTime::now();
            let at = acked
                .filter(|_| m.role == Role::Leader)
                .and_then(|ms| now.checked_sub(std::time::Duration::from_millis(ms)))
                .unwrap_or(now);
            ConsensusStatus {
                consensus_thread_status: "working".into(),
                last_update: Some(rfc3339(at)),
                err: None,
            }
        }
    };
    let failures = c
        .raft_node()
        .send_failures(g.group_id())
        .into_iter()
        .map(|(node, f)| {
            let addr = state
                .members
                .get(&node)
                .map_or_else(|| format!("node {node}"), |i| i.internal_addr.clone());
            (
                addr,
                MessageSendErrors {
                    count: f.count,
                    latest_error: Some(f.latest_error),
                    latest_error_timestamp: Some(rfc3339(f.at)),
                },
            )
        })
        .collect();
    (raft_info, status, failures)
}

/// `GET /cluster`: Qdrant's `ClusterStatus` fields (`status` … `message_send_failures`, about
/// the metadata Raft group), then shoal's own view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterView {
    /// Always `enabled`: every shoal node runs the metadata Raft group, a single node too.
    pub status: String,
    /// This node (the same as `node_id`).
    pub peer_id: NodeId,
    /// Every member by id.
    pub peers: BTreeMap<String, QdrantPeer>,
    /// This node's replica of the metadata group.
    pub raft_info: RaftInfo,
    /// Whether this node's metadata Raft core runs.
    pub consensus_thread_status: ConsensusStatus,
    /// Peers the metadata group's messages from this node are failing to reach, by address.
    pub message_send_failures: BTreeMap<String, MessageSendErrors>,
    /// The node that answered.
    pub node_id: NodeId,
    /// The metadata group.
    pub metadata: MetaView,
    /// Members.
    pub members: Vec<MemberView>,
    /// Collections by name.
    pub collections: BTreeMap<String, CollectionView>,
}

/// A collection's data summed over its shards, as `GET /collections/{name}` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionCounts {
    /// Live points.
    pub points: usize,
    /// Live points in IVF-PQ segments.
    pub indexed_points: usize,
    /// Segments, mutable and sealed.
    pub segments: usize,
    /// Index builds running now.
    pub building: usize,
    /// Payload indexes: per field its type and the indexed points, summed over the shards (per
    /// shard the replica covering the most points).
    pub payload_schema: BTreeMap<String, PayloadFieldInfo>,
}

/// The counts of collection `name`, for every collection the same way: per shard the largest
/// figure any replica reports (replicas converge to the same state; a shard counts as building
/// while any replica builds), summed over the shards. Zero for an unknown collection.
pub async fn collection_counts(c: &Cluster, name: &str) -> CollectionCounts {
    let view = cluster_view(c).await;
    let mut counts = CollectionCounts::default();
    for shard in view.collections.get(name).iter().flat_map(|c| &c.shards) {
        let best = |f: &dyn Fn(&ReplicaView) -> Option<u64>| {
            shard.replicas.iter().filter_map(f).max().unwrap_or(0) as usize
        };
        counts.points += best(&|r| r.points);
        counts.indexed_points += best(&|r| r.segments.map(|s| s.indexed_points));
        counts.segments += best(&|r| r.segments.map(|s| s.segments));
        counts.building += best(&|r| r.segments.map(|s| s.building));
        // Every replica applies the same index commands; one that is behind covers fewer points.
        let mut fields: BTreeMap<&String, PayloadFieldInfo> = BTreeMap::new();
        for schema in shard
            .replicas
            .iter()
            .filter_map(|r| r.payload_schema.as_ref())
        {
            for (field, info) in schema {
                fields
                    .entry(field)
                    .and_modify(|f| f.points = f.points.max(info.points))
                    .or_insert(*info);
            }
        }
        for (field, info) in fields {
            counts
                .payload_schema
                .entry(field.clone())
                .and_modify(|f| f.points += info.points)
                .or_insert(info);
        }
    }
    counts
}

/// The engine statistics of this node's replicas, by collection (every collection with a
/// replica here, one shard or many): what the per-collection `/metrics` gauges sum.
pub fn local_collection_stats(c: &Cluster) -> BTreeMap<String, Vec<crate::shard::ShardStats>> {
    let state = c.state();
    let mut out: BTreeMap<String, Vec<crate::shard::ShardStats>> = BTreeMap::new();
    for (group, local) in c.local_shards() {
        if let Some(loc) = state.find_group(group) {
            out.entry(loc.collection.to_owned())
                .or_default()
                .push(local.app.lanes().stats());
        }
    }
    out
}

/// Ask every member for its replicas (in parallel, [`STATUS_TIMEOUT`] each) and assemble the
/// cluster as this node sees it.
pub async fn cluster_view(c: &Cluster) -> ClusterView {
    let statuses = probe_members(c).await;
    assemble(c, &statuses)
}

/// Every member's status, asked live in parallel ([`STATUS_TIMEOUT`] each); `None` for a
/// member that did not answer.
pub async fn probe_members(c: &Cluster) -> BTreeMap<NodeId, Option<NodeStatus>> {
    let state = c.state();
    let probes = state.members.keys().map(|id| async move {
        let r = c
            .call_cluster(*id, None, &ClusterRequest::Status, STATUS_TIMEOUT)
            .await;
        match r {
            Ok(ClusterReply::Status(s)) => (*id, Some(*s)),
            _ => (*id, None),
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .collect()
}

/// The cluster view from the members' statuses.
pub(super) fn assemble(
    c: &Cluster,
    statuses: &BTreeMap<NodeId, Option<NodeStatus>>,
) -> ClusterView {
    let state = c.state();
    let meta = c.meta_group().metrics();
    let members = state
        .members
        .iter()
        .map(|(id, info)| {
            let st = statuses.get(id).and_then(Option::as_ref);
            MemberView {
                id: *id,
                internal_addr: info.internal_addr.clone(),
                api_addr: info.api_addr.clone(),
                reachable: st.is_some(),
                ready: st.is_some_and(|s| s.ready),
            }
        })
        .collect();
    let find = |node: NodeId, group: GroupId| {
        statuses
            .get(&node)
            .and_then(Option::as_ref)
            .and_then(|s| s.groups.iter().find(|g| g.group == group))
    };
    let collections = state
        .collections
        .iter()
        .map(|(name, coll)| {
            let shards = coll
                .shards
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let leader = s
                        .replicas
                        .iter()
                        .find(|n| find(**n, s.group).is_some_and(|r| r.role == "leader"))
                        .copied();
                    let leader_commit = leader
                        .and_then(|l| find(l, s.group))
                        .and_then(|r| r.committed);
                    let replicas = s
                        .replicas
                        .iter()
                        .map(|n| {
                            let reachable = statuses.get(n).is_some_and(Option::is_some);
                            let r = find(*n, s.group);
                            ReplicaView {
                                node: *n,
                                reachable,
                                role: r.map(|r| r.role.clone()),
                                term: r.map(|r| r.term),
                                commit: r.and_then(|r| r.committed),
                                applied: r.and_then(|r| r.applied),
                                lag: leader_commit.and_then(|lc| {
                                    r.map(|r| lc.saturating_sub(r.applied.unwrap_or(0)))
                                }),
                                snapshot: r.and_then(|r| r.snapshot),
                                purged: r.and_then(|r| r.purged),
                                points: r.and_then(|r| r.points),
                                segments: r.and_then(|r| r.segments),
                                payload_schema: r.and_then(|r| r.payload_schema.clone()),
                            }
                        })
                        .collect();
                    ShardView {
                        shard: i as u32,
                        group: s.group,
                        leader,
                        replicas,
                    }
                })
                .collect();
            (
                name.clone(),
                CollectionView {
                    shard_number: coll.config.shard_number,
                    replication_factor: coll.config.replication_factor,
                    placement: coll.config.placement.as_str().to_owned(),
                    centroids_trained: coll.centroids.is_some(),
                    shards,
                },
            )
        })
        .collect();
    let peers = state
        .members
        .iter()
        .map(|(id, info)| {
            // A cluster of one opens no internal port (its address is `local`): its REST
            // address then.
            let addr = if info.internal_addr.is_empty() || info.internal_addr == "local" {
                &info.api_addr
            } else {
                &info.internal_addr
            };
            (
                id.to_string(),
                QdrantPeer {
                    uri: format!("http://{addr}/"),
                },
            )
        })
        .collect();
    let (raft_info, consensus_thread_status, message_send_failures) = consensus(c, &state);
    ClusterView {
        status: "enabled".into(),
        peer_id: c.node_id(),
        peers,
        raft_info,
        consensus_thread_status,
        message_send_failures,
        node_id: c.node_id(),
        metadata: MetaView {
            leader: meta.leader,
            term: meta.term,
            voters: meta.voters,
            learners: meta.learners,
            applied: state.applied_index,
        },
        members,
        collections,
    }
}

/// Prometheus lines for this node's replicas: role, term, commit and applied index, and on
/// leaders the replication lag of each follower.
pub fn render_metrics(c: &Cluster) -> String {
    let state = c.state();
    let mut rows: Vec<(String, String, ReplicaStatus)> = vec![(
        "_metadata".into(),
        "0".into(),
        replica_status(c.meta_group(), None, None),
    )];
    for (group, s) in c.local_shards() {
        let (coll, shard) = state.find_group(group).map_or_else(
            || ("?".to_owned(), "?".to_owned()),
            |l| (l.collection.to_owned(), l.shard.to_string()),
        );
        rows.push((coll, shard, replica_status(&s.group, None, None)));
    }
    let mut out = String::new();
    type Gauge = (&'static str, &'static str, fn(&ReplicaStatus) -> u64);
    let gauges: [Gauge; 6] = [
        (
            "shoal_shard_stopped",
            "1 if this replica's Raft core stopped on a storage error (it restarts once the disk takes writes again).",
            |r| u64::from(r.role == "shutdown"),
        ),
        (
            "shoal_shard_is_leader",
            "1 if this replica leads its group.",
            |r| u64::from(r.role == "leader"),
        ),
        (
            "shoal_shard_is_voter",
            "1 if this replica votes in its group.",
            |r| u64::from(r.role != "learner"),
        ),
        ("shoal_shard_term", "Current Raft term.", |r| r.term),
        (
            "shoal_shard_commit_index",
            "Highest log index known committed.",
            |r| r.committed.unwrap_or(0),
        ),
        (
            "shoal_shard_applied_index",
            "Highest log index applied.",
            |r| r.applied.unwrap_or(0),
        ),
    ];
    for (name, help, f) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (coll, shard, r) in &rows {
            let _ = writeln!(
                out,
                "{name}{{collection=\"{coll}\",shard=\"{shard}\",group=\"{}\",role=\"{}\"}} {}",
                r.group,
                r.role,
                f(r)
            );
        }
    }
    let node = c.raft_node();
    let _ = writeln!(
        out,
        "# HELP shoal_raft_groups_stopped Raft groups of this node stopped on a storage error.\n# TYPE shoal_raft_groups_stopped gauge\nshoal_raft_groups_stopped {}",
        node.stopped_groups().len()
    );
    let _ = writeln!(
        out,
        "# HELP shoal_raft_log_failed 1 while the node's Raft log cannot be written (a failed write not yet recovered).\n# TYPE shoal_raft_log_failed gauge\nshoal_raft_log_failed {}",
        u8::from(node.log_failure().is_some())
    );
    let _ = writeln!(
        out,
        "# HELP shoal_raft_log_reopens_total Reopens of the Raft log after a storage failure.\n# TYPE shoal_raft_log_reopens_total counter\nshoal_raft_log_reopens_total {}",
        node.log_reopens()
    );
    let name = "shoal_shard_replication_lag";
    let _ = writeln!(
        out,
        "# HELP {name} Entries a follower lags behind the leader's log (reported by leaders).\n# TYPE {name} gauge"
    );
    for (coll, shard, r) in &rows {
        for (follower, lag) in &r.follower_lag {
            let _ = writeln!(
                out,
                "{name}{{collection=\"{coll}\",shard=\"{shard}\",group=\"{}\",follower=\"{follower}\"}} {lag}",
                r.group
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_micros(951_782_400_000_001 + 3_723_000_000);
        assert_eq!(super::rfc3339(leap), "2000-02-29T01:02:03.000001Z");
    }
}
