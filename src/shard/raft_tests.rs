//! The shard under Raft, as the server runs it: snapshots built by the group's policy hard-link
//! the shard's segment files, the log behind them is purged, and a restart comes back from them.

use super::tests::{config, point, random_vec};
use super::*;
use crate::cluster::ShardApp;
use crate::index::Metric;
use crate::raft::{InProcessRouter, NodeInfo, RaftConfig, RaftNode, Role};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn inodes(dir: &Path) -> HashSet<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().ino())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_snapshots_link_segment_files_and_purge_the_log() {
    let root = tempfile::tempdir().unwrap();
    let (raft_dir, data) = (root.path().join("raft"), root.path().join("segments"));
    let router = InProcessRouter::new();
    let raft = RaftConfig {
        snapshot_every_entries: 10,
        keep_entries_behind_snapshot: 0,
        ..RaftConfig::fast()
    };
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let node = RaftNode::open_in_process(1, &raft_dir, &router, raft.clone()).unwrap();
    let app = Arc::new(ShardApp::with_data_dir(config(dim, Metric::L2, 300), &data).unwrap());
    let group = node.start_group(7, app.clone()).await.unwrap();
    group
        .initialize(BTreeMap::from([(1, NodeInfo::new("local", "local"))]))
        .await
        .unwrap();
    wait_until("leader", || group.metrics().role == Role::Leader).await;
    for b in 0..25u64 {
        let cmd = ShardCommand::Upsert {
            points: (b * 100..b * 100 + 100)
                .map(|i| point(i, random_vec(&mut rng, dim), 0))
                .collect(),
        };
        group.write(cmd.encode()).await.unwrap();
    }
    let cmd = ShardCommand::DeleteAt {
        ids: (0..100).map(PointId::Num).collect(),
        version: 5,
    };
    let last = group.write(cmd.encode()).await.unwrap().index;
    // The policy (every 10 entries) snapshots on its own, and the log behind it is purged.
    wait_until("a snapshot and a purge", || {
        let m = group.metrics();
        m.snapshot.is_some() && m.purged.is_some()
    })
    .await;
    app.shard().wait_for_builds();
    group.trigger_snapshot().await.unwrap();
    wait_until("the last snapshot", || {
        group.metrics().snapshot == Some(last) && group.metrics().purged == Some(last)
    })
    .await;
    let snaps: Vec<PathBuf> = std::fs::read_dir(raft_dir.join("groups/7/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let live = inodes(&data);
    // 8 sealed segments; the compacted one may be too small to train an index (then flat).
    assert!(live.len() >= 7, "{} segment files", live.len());
    assert_eq!(
        inodes(&snaps[0]),
        live,
        "the snapshot links the live segment files"
    );
    let want: Vec<Record> = app.shard().scroll(None, usize::MAX, None, true, true).0;
    assert_eq!(want.len(), 2400);
    node.shutdown().await;
    drop(group);
    drop(node);

    // Restart: the shard comes back from the linked files (and no log: it was purged).
    // Retry while the previous incarnation's log database is still closing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let node = loop {
        match RaftNode::open_in_process(1, &raft_dir, &router, raft.clone()) {
            Ok(n) => break n,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot reopen the node: {e}"),
        }
    };
    let app = Arc::new(ShardApp::with_data_dir(config(dim, Metric::L2, 300), &data).unwrap());
    let group = node.start_group(7, app.clone()).await.unwrap();
    wait_until("leader", || group.metrics().role == Role::Leader).await;
    wait_until("restored", || app.shard().last_applied() >= last).await;
    assert_eq!(
        app.shard().scroll(None, usize::MAX, None, true, true).0,
        want
    );
    assert_eq!(app.shard().version(&PointId::Num(3)), 5);
    assert!(app.shard().stats().indexed_segments >= 7);
    node.shutdown().await;
}
