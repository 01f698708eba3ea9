//! The reconciler: every node watches the applied metadata and makes its local shard replicas
//! match it — starts the replicas the metadata places here (`replicas[0]` initialises a new
//! group with all its replicas), destroys those it no longer lists (collection deleted, replica
//! moved away). It also marks the node ready once it has joined and caught up.

use super::Cluster;
use super::LocalShard;
use super::meta::ClusterState;
use super::shard_app::ShardApp;
use crate::raft::{GroupId, NodeInfo, RaftGroupError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Re-run period even without metadata changes (retries failed starts, cleans leftovers).
const PERIOD: Duration = Duration::from_secs(2);

/// Follow the metadata until the node shuts down.
pub async fn run(c: Arc<Cluster>) {
    let mut rx = c.subscribe();
    let mut cleaned = false;
    let mut snapshotted = HashMap::new();
    loop {
        // Check the catch-up before reading the state, so the state read holds it.
        let joined = c.joined_index.load(Ordering::Acquire);
        let caught_up = joined > 0 && c.meta_group.applied_index().unwrap_or(0) >= joined;
        let state = rx.borrow_and_update().clone();
        reconcile_once(&c, &state).await;
        snapshot_new_segments(&c, &mut snapshotted);
        if caught_up {
            if !cleaned {
                cleanup_leftovers(&c, &state).await;
                cleaned = true;
            }
            if !c.ready.swap(true, Ordering::AcqRel) {
                tracing::info!(node = c.node_id, "node ready");
            }
        }
        tokio::select! {
            _ = rx.changed() => {}
            () = c.kick.notified() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
        if *c.stop.borrow() {
            return;
        }
    }
}

async fn reconcile_once(c: &Cluster, state: &ClusterState) {
    let me = c.node_id;
    let mut desired = BTreeSet::new();
    for loc in state.shards() {
        if !loc.meta.replicas.contains(&me) {
            continue;
        }
        let group = loc.meta.group;
        desired.insert(group);
        if c.local_shard(group).is_some() {
            continue;
        }
        // Sealed segment files live beside the group's Raft snapshots (which hard-link them),
        // so destroying the group removes them too.
        let segments = c.node.groups_dir().join(group.to_string()).join("segments");
        let app = match ShardApp::with_lanes(loc.collection_meta.shard_configs(group), &segments) {
            Ok(app) => Arc::new(app),
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot open shard segments");
                continue;
            }
        };
        let raft = match c.node.start_group(group, app.clone()).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot start shard replica");
                continue;
            }
        };
        c.insert_local(
            group,
            LocalShard {
                group: raft.clone(),
                app,
            },
        );
        tracing::info!(
            collection = loc.collection,
            shard = loc.shard,
            group,
            "shard replica started"
        );
        if loc.meta.replicas[0] == me && !state.reconfigured.contains(&group) {
            let members: Option<BTreeMap<_, NodeInfo>> = loc
                .meta
                .replicas
                .iter()
                .map(|n| state.members.get(n).map(|i| (*n, i.clone())))
                .collect();
            match members {
                Some(m) => match raft.initialize(m).await {
                    Ok(()) | Err(RaftGroupError::AlreadyInitialized { .. }) => {}
                    Err(e) => tracing::warn!(group, error = %e, "cannot initialise shard group"),
                },
                None => tracing::warn!(group, "a replica node has no recorded address"),
            }
        }
        if loc.meta.replicas == [me] {
            // A one-replica group: serve only once it has replayed its log.
            let deadline = Instant::now() + Duration::from_secs(30);
            while raft.linearizable_read().await.is_err() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for (group, _) in c.local_shards() {
        if desired.contains(&group) || group >= state.next_group {
            continue;
        }
        destroy(c, group).await;
    }
}

/// Asks for a Raft snapshot of every local replica whose engine swapped in a built or compacted
/// segment since the last look (`seen`: group → [`Shard::segment_changes`]). Without it a
/// replica only snapshots every `snapshot_every` entries, so after a bulk load of fewer entries
/// a restart would replay the whole load and rebuild its indexes; with it the new segment files
/// are the snapshot (hard links), and the log behind it is purged.
///
/// [`Shard::segment_changes`]: crate::shard::Shard::segment_changes
fn snapshot_new_segments(c: &Cluster, seen: &mut HashMap<GroupId, u64>) {
    let local = c.local_shards();
    seen.retain(|group, _| local.iter().any(|(g, _)| g == group));
    for (group, shard) in local {
        let lanes = shard.app.lanes();
        let changes = lanes.segment_changes();
        // A restored engine counts from 0 again: only a count that moved and is not 0 is news.
        if changes == 0 || seen.get(&group) == Some(&changes) {
            seen.insert(group, changes);
            continue;
        }
        // A segment still being built or compacted would go into the snapshot as raw rows (up
        // to `seal_threshold` vectors written out): wait until the engine's jobs are done.
        if lanes.busy() {
            continue;
        }
        seen.insert(group, changes);
        let raft = shard.group.clone();
        tokio::spawn(async move {
            match raft.trigger_snapshot().await {
                Ok(()) => tracing::debug!(group, "snapshot asked for after a segment change"),
                Err(e) => {
                    tracing::warn!(group, error = %e, "cannot snapshot after a segment change")
                }
            }
        });
    }
}

async fn destroy(c: &Cluster, group: GroupId) {
    let Some(local) = c.remove_local(group) else {
        return;
    };
    let lanes = local.app.lanes();
    let _ = tokio::task::spawn_blocking(move || lanes.wait_for_builds()).await;
    match c.node.destroy_group(group).await {
        Ok(()) => tracing::info!(group, "shard replica destroyed"),
        Err(e) => tracing::warn!(group, error = %e, "cannot destroy shard replica"),
    }
}

/// Groups left on disk by collections deleted (or replicas moved away) while this node was
/// down. Only ids below `next_group` are judged: a newer group may be one this node's metadata
/// has not caught up with.
async fn cleanup_leftovers(c: &Cluster, state: &ClusterState) {
    let dir = c.node.groups_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let me = c.node_id;
    let desired: BTreeSet<GroupId> = state
        .shards()
        .filter(|l| l.meta.replicas.contains(&me))
        .map(|l| l.meta.group)
        .collect();
    for e in entries.filter_map(Result::ok) {
        let Some(group) = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<GroupId>().ok())
        else {
            continue;
        };
        if group == super::META_GROUP || group >= state.next_group || desired.contains(&group) {
            continue;
        }
        if c.local_shard(group).is_none() && c.node.group(group).is_none() {
            match c.node.destroy_group(group).await {
                Ok(()) => tracing::info!(group, "leftover shard data removed"),
                Err(e) => tracing::warn!(group, error = %e, "cannot remove leftover shard data"),
            }
        }
    }
}
