//! What the metadata leader does for the cluster (joins, collection create and delete,
//! centroids, replica moves), and the shard-group membership changes a shard leader runs for a
//! move. Leader-side operations hold the admin lock, so membership changes never overlap.

use super::meta::{self, AliasAction, AliasRefusal, CollectionMeta, MetaCommand, ShardMeta};
use super::rpc::{Applied, ClusterReply, ClusterRequest};
use super::{Cluster, STATUS_TIMEOUT};
use crate::cluster::placement::CentroidPlacement;
use crate::collection::{CollectionSpec, Error, NamedVectorSpec, SearchUpdate, validate_name};
use crate::raft::{GroupId, NodeId, NodeInfo, RaftGroupError, Role};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Most voters of the metadata group; later nodes stay learners.
pub const META_VOTERS: usize = 3;
/// How long a create waits for every new shard group to elect a leader.
const LEADER_WAIT: Duration = Duration::from_secs(20);

/// A request's metadata index (to wait for) and its typed result.
type Outcome = Result<(u64, Applied), Error>;

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

/// Add node `id` to the metadata group (learner, then voter while there are fewer than three)
/// and record its addresses.
pub(crate) async fn join(c: &Cluster, id: NodeId, info: NodeInfo) -> Outcome {
    let _admin = c.admin_lock.lock().await;
    let m = c.meta_group.metrics();
    if !m.voters.contains(&id) && !m.learners.contains(&id) {
        tracing::info!(node = id, %info, "adding node to the metadata group");
        tokio::time::timeout(
            Duration::from_secs(60),
            c.meta_group.add_learner(id, info.clone(), true),
        )
        .await
        .map_err(|_| unavailable(format!("node {id} did not catch up with the metadata")))?
        .map_err(unavailable)?;
    }
    let m = c.meta_group.metrics();
    if !m.voters.contains(&id) && m.voters.len() < META_VOTERS {
        let mut voters: BTreeSet<NodeId> = m.voters.iter().copied().collect();
        voters.insert(id);
        c.meta_group
            .change_membership(voters, false)
            .await
            .map_err(unavailable)?;
    }
    if c.state().members.get(&id) != Some(&info) {
        let (index, _) = c.propose(MetaCommand::PutMember { id, info }).await?;
        return Ok((index, Applied::Nothing));
    }
    nothing_changed(c).await
}

/// Remove node `id` from the cluster for good: refused while it holds a shard replica (move
/// them first, `POST /cluster/collections/{name}/shards/{shard}/move`); if it voted in the
/// metadata group, a live learner is promoted in its place so that a replaced node restores the
/// group's fault tolerance; then it leaves the metadata group and the member list.
pub(crate) async fn remove_member(c: &Cluster, id: NodeId) -> Outcome {
    let _admin = c.admin_lock.lock().await;
    let state = c.state();
    let m = c.meta_group.metrics();
    let in_group = m.voters.contains(&id) || m.learners.contains(&id);
    if !state.members.contains_key(&id) && !in_group {
        return Err(Error::bad(format!(
            "node {id} is not a member of the cluster"
        )));
    }
    let held: Vec<String> = state
        .collections
        .iter()
        .flat_map(|(name, coll)| {
            coll.shards
                .iter()
                .enumerate()
                .filter(|(_, s)| s.replicas.contains(&id))
                .map(move |(i, _)| format!("{name}/{i}"))
        })
        .collect();
    if !held.is_empty() {
        return Err(Error::bad(format!(
            "node {id} still holds replicas of shards {}; move each to another node first \
             (POST /cluster/collections/{{name}}/shards/{{shard}}/move)",
            held.join(", ")
        )));
    }
    if m.voters.contains(&id) {
        let mut voters: BTreeSet<NodeId> = m.voters.iter().copied().filter(|v| *v != id).collect();
        let reachable: BTreeSet<NodeId> = super::status::cluster_view(c)
            .await
            .members
            .iter()
            .filter(|m| m.reachable)
            .map(|m| m.id)
            .collect();
        if let Some(learner) = m
            .learners
            .iter()
            .copied()
            .find(|l| *l != id && reachable.contains(l))
        {
            tracing::info!(
                node = learner,
                replacing = id,
                "promoting a learner to metadata voter"
            );
            voters.insert(learner);
        }
        if voters.is_empty() {
            return Err(Error::bad("cannot remove the last metadata voter"));
        }
        c.meta_group
            .change_membership(voters, false)
            .await
            .map_err(unavailable)?;
    }
    if c.meta_group.metrics().learners.contains(&id) {
        c.meta_group
            .remove_nodes(BTreeSet::from([id]))
            .await
            .map_err(unavailable)?;
    }
    tracing::info!(node = id, "member removed");
    let (index, _) = c.propose(MetaCommand::RemoveMember { id }).await?;
    Ok((index, Applied::Nothing))
}

/// Place `shards` shards of `rf` replicas on `members`: replicas of a shard on distinct nodes,
/// first replicas (the initial leaders) round-robin from `start`.
pub fn place(members: &[NodeId], shards: u32, rf: u32, start: usize) -> Vec<Vec<NodeId>> {
    let n = members.len();
    (0..shards as usize)
        .map(|s| {
            (0..rf as usize)
                .map(|k| members[(start + s + k) % n])
                .collect()
        })
        .collect()
}

/// Create collection `name` as `spec` asks: the one place a create's name is checked and its
/// spec resolved (with this leader's defaults and the next free group ids).
pub(crate) async fn create_collection(
    c: &Cluster,
    name: &str,
    spec: &CollectionSpec,
    named: &[NamedVectorSpec],
) -> Outcome {
    validate_name(name)?;
    let _admin = c.admin_lock.lock().await;
    let state = c.state();
    if state.collections.contains_key(name) {
        return Err(Error::Exists(name.to_owned()));
    }
    if let Some(target) = state.aliases.get(name) {
        return Err(Error::bad(format!(
            "`{name}` is an alias of collection `{target}`; a collection cannot take an alias's name (delete the alias first)"
        )));
    }
    // Place on the members that answer now: a group whose first replica is down could not
    // even be initialised.
    let members = live_members(c, &state).await;
    let first = state.next_group.max(1);
    let (config, named) = if named.is_empty() {
        (spec.resolve(&c.defaults, first)?, Vec::new())
    } else {
        crate::collection::named::resolve_named(spec, named, &c.defaults, first)?
    };
    let rf = config.replication_factor;
    if rf as usize > members.len() && rf as usize <= state.members.len() {
        // Enough members exist but some do not answer now (starting, restarting, cut off):
        // a state that passes, so a client should retry rather than change its request.
        return Err(Error::Unavailable(format!(
            "replication_factor = {rf} needs {rf} reachable nodes; {} of the cluster's {} member(s) answer now",
            members.len(),
            state.members.len()
        )));
    }
    if rf == 0 || rf as usize > members.len() {
        return Err(Error::bad(format!(
            "replication_factor = {rf} needs {rf} distinct nodes; the cluster has {} reachable member(s) of {}",
            members.len(),
            state.members.len()
        )));
    }
    // Start the round-robin where the group ids are, so successive collections spread their
    // leaders too.
    let start = (first as usize) % members.len();
    let shards: Vec<ShardMeta> = place(&members, config.shard_number, rf, start)
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| ShardMeta {
            group: first + i as u64,
            replicas,
        })
        .collect();
    let (index, _) = c
        .propose(MetaCommand::create(
            name.to_owned(),
            CollectionMeta {
                config,
                shards: shards.clone(),
                centroids: None,
                named,
            },
        ))
        .await?;
    tracing::info!(
        collection = name,
        shards = shards.len(),
        "collection created"
    );
    let deadline = Instant::now() + LEADER_WAIT;
    for s in &shards {
        while group_leader(c, s.group, &s.replicas).await.is_none() {
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "collection `{name}` created, but shard group {} elected no leader within {LEADER_WAIT:?}",
                    s.group
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok((index, Applied::Nothing))
}

/// The answer of a request that changed nothing: the leader's read index, so the caller waits
/// until its node has applied everything the leader had when it answered.
async fn nothing_changed(c: &Cluster) -> Outcome {
    let index = c
        .meta_group
        .linearizable_read()
        .await
        .map_err(unavailable)?;
    Ok((index, Applied::Nothing))
}

/// Change `name`'s default search settings as `update` asks, checked against its configuration
/// as on create. An update that changes nothing is still answered (and logs nothing).
pub(crate) async fn update_collection(c: &Cluster, name: &str, update: &SearchUpdate) -> Outcome {
    let _admin = c.admin_lock.lock().await;
    let Some(coll) = c.state().collections.get(name).cloned() else {
        return Err(Error::NotFound(name.to_owned()));
    };
    let config = update.apply(&coll.config)?;
    if config == coll.config {
        return nothing_changed(c).await;
    }
    let (index, _) = c
        .propose(MetaCommand::UpdateConfig {
            name: name.to_owned(),
            config,
        })
        .await?;
    tracing::info!(collection = name, search = ?config.search, "collection search settings changed");
    Ok((index, Applied::Nothing))
}

/// Apply a batch of alias actions, all or nothing: tried first on a copy of the state (under the
/// admin lock, so nothing changes between the trial and the proposal) for a typed refusal, then
/// logged as one [`MetaCommand::UpdateAliases`], which every node applies the same way.
pub(crate) async fn update_aliases(c: &Cluster, actions: &[AliasAction]) -> Outcome {
    for a in actions {
        match a {
            AliasAction::Create { alias, .. } | AliasAction::Delete { alias } => {
                validate_name(alias)?
            }
            AliasAction::Rename { old, new } => {
                validate_name(old)?;
                validate_name(new)?;
            }
        }
    }
    let _admin = c.admin_lock.lock().await;
    let mut trial = (*c.state()).clone();
    trial.apply_aliases(actions).map_err(|e| match e {
        AliasRefusal::NoCollection(name) => Error::NotFound(name),
        AliasRefusal::IsCollection(name) => Error::Exists(name),
        AliasRefusal::NoAlias(_) => Error::AliasNotFound(e.to_string()),
    })?;
    if actions.is_empty() {
        return nothing_changed(c).await;
    }
    let (index, _) = c
        .propose(MetaCommand::UpdateAliases {
            actions: actions.to_vec(),
        })
        .await?;
    tracing::info!(?actions, "aliases changed");
    Ok((index, Applied::Nothing))
}

pub(crate) async fn delete_collection(c: &Cluster, name: &str) -> Outcome {
    let _admin = c.admin_lock.lock().await;
    let Some(coll) = c.state().collections.get(name).cloned() else {
        return nothing_changed(c).await;
    };
    let (index, _) = c
        .propose(MetaCommand::DeleteCollection {
            name: name.to_owned(),
        })
        .await?;
    tracing::info!(collection = name, "collection deleted");
    let groups = coll.shards.iter().map(|s| s.group).collect();
    Ok((index, Applied::Groups(groups)))
}

pub(crate) async fn set_centroids(
    c: &Cluster,
    name: &str,
    centroids: CentroidPlacement,
) -> Outcome {
    if !c.state().collections.contains_key(name) {
        return Err(Error::NotFound(name.to_owned()));
    }
    let (index, answer) = c
        .propose(MetaCommand::SetCentroids {
            name: name.to_owned(),
            centroids,
        })
        .await?;
    Ok((index, Applied::Centroids(meta::stored_centroids(&answer)?)))
}

/// Members answering a status probe now, by id.
async fn live_members(c: &Cluster, state: &super::ClusterState) -> Vec<NodeId> {
    let probes = state.members.keys().map(|id| async move {
        let r = c
            .call_cluster(*id, None, &ClusterRequest::Status, STATUS_TIMEOUT)
            .await;
        matches!(r, Ok(ClusterReply::Status(_))).then_some(*id)
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The leader of shard group `group` as its replicas report it (None if none is known or
/// none answers).
pub(crate) async fn group_leader(
    c: &Cluster,
    group: GroupId,
    replicas: &[NodeId],
) -> Option<NodeId> {
    for node in replicas {
        let Ok(ClusterReply::Status(st)) = c
            .call_cluster(*node, None, &ClusterRequest::Status, STATUS_TIMEOUT)
            .await
        else {
            continue;
        };
        if let Some(r) = st.groups.iter().find(|g| g.group == group) {
            if r.role == "leader" {
                return Some(*node);
            }
            if let Some(l) = r.leader {
                return Some(l);
            }
        }
    }
    None
}

/// Run a shard-group membership request on the group's leader, retrying while the leader is
/// unknown or changes, until `timeout`.
async fn on_shard_leader(
    c: &Cluster,
    group: GroupId,
    replicas: &[NodeId],
    req: ClusterRequest,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no leader");
    loop {
        if let Some(leader) = group_leader(c, group, replicas).await {
            let left = deadline.saturating_duration_since(Instant::now());
            match c
                .call_cluster(leader, None, &req, left.max(Duration::from_secs(1)))
                .await
            {
                Ok(ClusterReply::Applied { .. } | ClusterReply::Done { .. }) => return Ok(()),
                Ok(ClusterReply::Failed(f)) => last = format!("{f:?}"),
                Ok(other) => last = format!("{other:?}"),
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Unavailable(format!("shard group {group}: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn move_replica(
    c: &Cluster,
    name: &str,
    shard: u32,
    from: NodeId,
    to: NodeId,
) -> Outcome {
    let _admin = c.admin_lock.lock().await;
    let state = c.state();
    let coll = state
        .collections
        .get(name)
        .ok_or_else(|| Error::NotFound(name.to_owned()))?;
    let s = coll
        .shards
        .get(shard as usize)
        .ok_or_else(|| Error::bad(format!("collection `{name}` has no shard {shard}")))?
        .clone();
    let to_info = state
        .members
        .get(&to)
        .cloned()
        .ok_or_else(|| Error::bad(format!("node {to} is not a member of the cluster")))?;
    if !s.replicas.contains(&from) {
        return Err(Error::bad(format!(
            "node {from} holds no replica of shard {shard} (replicas: {:?})",
            s.replicas
        )));
    }
    if from == to {
        return Err(Error::bad("from and to are the same node"));
    }
    // 1. Announce the new replica so `to` starts an (uninitialised) replica of the group. A
    //    move that failed half-way finds `to` listed already and resumes.
    if !s.replicas.contains(&to) {
        let mut with_to = s.replicas.clone();
        with_to.push(to);
        let (index, _) = c
            .propose(MetaCommand::SetReplicas {
                name: name.to_owned(),
                shard,
                replicas: with_to,
            })
            .await?;
        tracing::info!(collection = name, shard, from, to, index, "moving replica");
    }
    let others: Vec<NodeId> = s.replicas.iter().copied().filter(|n| *n != to).collect();
    // 2. Learner, caught up from the log or a snapshot stream.
    on_shard_leader(
        c,
        s.group,
        &others,
        ClusterRequest::ShardAddLearner {
            group: s.group,
            id: to,
            info: to_info,
        },
        Duration::from_secs(240),
    )
    .await?;
    // 3. Voter in place of `from`.
    let voters: Vec<NodeId> = s
        .replicas
        .iter()
        .map(|n| if *n == from { to } else { *n })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut ask: Vec<NodeId> = voters.clone();
    ask.push(from);
    on_shard_leader(
        c,
        s.group,
        &ask,
        ClusterRequest::ShardSetVoters {
            group: s.group,
            voters,
        },
        Duration::from_secs(60),
    )
    .await?;
    // 4. Record the final replica set; `from`'s reconciler destroys its old replica.
    let replicas: Vec<NodeId> = s
        .replicas
        .iter()
        .filter(|n| **n != to)
        .map(|n| if *n == from { to } else { *n })
        .collect();
    let (index, _) = c
        .propose(MetaCommand::SetReplicas {
            name: name.to_owned(),
            shard,
            replicas,
        })
        .await?;
    Ok((index, Applied::Nothing))
}

fn leader_shard(c: &Cluster, group: GroupId) -> Result<crate::raft::RaftGroup, Error> {
    let local = c
        .local_shard(group)
        .ok_or_else(|| Error::Unavailable(format!("group {group} does not run here")))?;
    if local.group.metrics().role != Role::Leader {
        return Err(Error::Unavailable(format!(
            "node {} does not lead group {group}",
            c.node_id
        )));
    }
    Ok(local.group)
}

pub(crate) async fn shard_add_learner(
    c: &Cluster,
    group: GroupId,
    id: NodeId,
    info: NodeInfo,
) -> Outcome {
    let g = leader_shard(c, group)?;
    let m = g.metrics();
    if !m.voters.contains(&id) {
        g.add_learner(id, info, true).await.map_err(unavailable)?;
    }
    Ok((0, Applied::Nothing))
}

pub(crate) async fn shard_set_voters(c: &Cluster, group: GroupId, voters: Vec<NodeId>) -> Outcome {
    let g = leader_shard(c, group)?;
    let want: BTreeSet<NodeId> = voters.into_iter().collect();
    let m = g.metrics();
    let now: BTreeSet<NodeId> = m.voters.iter().copied().collect();
    if now != want {
        match g.change_membership(want, false).await {
            Ok(()) => {}
            // The leader removed itself: the change committed before it stepped down.
            Err(RaftGroupError::ForwardToLeader { .. }) => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok((0, Applied::Nothing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_first_replicas_and_keeps_replicas_distinct() {
        let p = place(&[1, 2, 3], 3, 3, 0);
        assert_eq!(p, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
        let p = place(&[1, 2, 3, 4], 8, 2, 1);
        for r in &p {
            assert_ne!(r[0], r[1]);
        }
        let mut firsts = [0; 5];
        for r in &p {
            firsts[r[0] as usize] += 1;
        }
        assert_eq!(&firsts[1..], &[2, 2, 2, 2]);
    }
}
