//! Tests of the Raft layer: openraft's storage suite, a single node across restarts, and
//! in-process 3-node clusters (fail-over, snapshot catch-up, partitioned minority).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use crate::raft::log_store::{GroupLogStore, LogDb};
use crate::raft::state_machine::{GroupStateMachine, StateMachineApp};
use crate::raft::types::TypeConfig;
use crate::raft::{
    InProcessRouter, NodeId, NodeInfo, RaftConfig, RaftGroup, RaftGroupError, RaftNode, Role,
    Transport,
};

/// Test application: an append-only list of `(index, value)`, durable only through snapshots
/// (like the shard engine). Counts applies of an index it already holds.
#[derive(Default)]
pub(super) struct ListApp {
    list: Mutex<Vec<(u64, u64)>>,
    pub(super) duplicate_applies: AtomicU64,
}

impl ListApp {
    pub(super) fn values(&self) -> Vec<u64> {
        self.list.lock().unwrap().iter().map(|(_, v)| *v).collect()
    }
}

impl StateMachineApp for ListApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let mut list = self.list.lock().unwrap();
        if list.last().is_some_and(|(i, _)| *i >= index) {
            self.duplicate_applies.fetch_add(1, Ordering::SeqCst);
            return b"duplicate".to_vec();
        }
        // The value is the first 8 bytes; any more are padding (for tests of large entries).
        let value = u64::from_le_bytes(command[..8].try_into().expect("8-byte command"));
        list.push((index, value));
        (list.len() as u64).to_le_bytes().to_vec()
    }

    fn snapshot(&self, dir: &Path) -> std::io::Result<()> {
        let list = self.list.lock().unwrap();
        let bytes = postcard::to_allocvec(&*list).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(dir.join("list.bin"))?;
        f.write_all(&bytes)?;
        f.sync_all()
    }

    fn restore(&self, dir: &Path) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        std::fs::File::open(dir.join("list.bin"))?.read_to_end(&mut bytes)?;
        *self.list.lock().unwrap() = postcard::from_bytes(&bytes).map_err(std::io::Error::other)?;
        Ok(())
    }
}

struct SuiteBuilder;

impl StoreBuilder<TypeConfig, GroupLogStore, GroupStateMachine, tempfile::TempDir>
    for SuiteBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, GroupLogStore, GroupStateMachine), StorageError<TypeConfig>>
    {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(&dir.path().join("raft-log.redb")).unwrap();
        let sm =
            GroupStateMachine::open(Arc::new(ListApp::default()), &dir.path().join("sm")).unwrap();
        Ok((dir, db.group(3), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_passes_openraft_suite() {
    Suite::test_all(SuiteBuilder).await.unwrap();
}

/// Route openraft's logs to the test output (`RUST_LOG=openraft=warn` to see them).
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub(super) fn info(id: NodeId) -> NodeInfo {
    NodeInfo::new(format!("node-{id}:6335"), format!("node-{id}:6333"))
}

pub(super) fn cmd(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Open a node, retrying while the previous incarnation's log database is still closing.
pub(super) async fn open_node(
    id: NodeId,
    dir: &Path,
    router: &InProcessRouter,
    config: &RaftConfig,
) -> RaftNode {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RaftNode::open_in_process(id, dir, router, config.clone()) {
            Ok(n) => return n,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot reopen node {id}: {e}"),
        }
    }
}

pub(super) async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) async fn wait_leader(groups: &[&RaftGroup]) -> NodeId {
    let mut leader = None;
    wait_until("a leader", || {
        leader = groups
            .iter()
            .find(|g| g.metrics().role == Role::Leader)
            .map(|g| g.node_id());
        leader.is_some()
    })
    .await;
    leader.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_applies_in_order_and_recovers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let router = InProcessRouter::new();
    let config = RaftConfig::fast();

    let node = open_node(1, dir.path(), &router, &config).await;
    let app = Arc::new(ListApp::default());
    let group = node.start_group(9, app.clone()).await.unwrap();
    group
        .initialize(BTreeMap::from([(1, info(1))]))
        .await
        .unwrap();
    wait_leader(&[&group]).await;

    let mut last_index = 0;
    for v in 0..100u64 {
        let out = group.write(cmd(v)).await.unwrap();
        assert!(out.index > last_index, "indexes increase");
        last_index = out.index;
        assert_eq!(out.response, (v + 1).to_le_bytes().to_vec());
        if v == 59 {
            group.trigger_snapshot().await.unwrap();
        }
    }
    assert_eq!(app.values(), (0..100).collect::<Vec<_>>());
    group.linearizable_read().await.unwrap();
    wait_until("snapshot", || group.metrics().snapshot.is_some()).await;
    let snap_index = group.metrics().snapshot.unwrap();
    assert!(
        snap_index < last_index,
        "entries after the snapshot must come from the log"
    );

    node.shutdown().await;
    drop(group);
    drop(node);

    // Restart with a fresh, empty application: state comes back from snapshot + log replay.
    let node = open_node(1, dir.path(), &router, &config).await;
    let app2 = Arc::new(ListApp::default());
    let group = node.start_group(9, app2.clone()).await.unwrap();
    wait_leader(&[&group]).await;
    wait_until("replay", || group.applied_index() >= Some(last_index)).await;
    assert_eq!(app2.values(), (0..100).collect::<Vec<_>>());
    assert_eq!(app2.duplicate_applies.load(Ordering::SeqCst), 0);
    let out = group.write(cmd(100)).await.unwrap();
    assert!(out.index > last_index);
    assert_eq!(app2.values(), (0..101).collect::<Vec<_>>());
    node.shutdown().await;
}

struct Cluster {
    router: InProcessRouter,
    config: RaftConfig,
    dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<NodeId, RaftNode>,
    apps: BTreeMap<NodeId, Arc<ListApp>>,
}

const GROUP: u64 = 7;

impl Cluster {
    async fn start(config: RaftConfig) -> Self {
        let router = InProcessRouter::new();
        let mut c = Cluster {
            router,
            config,
            dirs: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: BTreeMap::new(),
            apps: BTreeMap::new(),
        };
        for id in 1..=3 {
            c.start_node(id).await;
        }
        let members = (1..=3).map(|id| (id, info(id))).collect();
        c.group(1).initialize(members).await.unwrap();
        c.leader().await;
        c
    }

    async fn start_node(&mut self, id: NodeId) {
        let dir = self.dirs[(id - 1) as usize].path().to_owned();
        let node = open_node(id, &dir, &self.router, &self.config).await;
        let app = Arc::new(ListApp::default());
        node.start_group(GROUP, app.clone()).await.unwrap();
        self.nodes.insert(id, node);
        self.apps.insert(id, app);
    }

    async fn stop_node(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).unwrap();
        node.shutdown().await;
    }

    fn group(&self, id: NodeId) -> RaftGroup {
        self.nodes[&id].group(GROUP).unwrap()
    }

    async fn leader(&self) -> NodeId {
        let groups: Vec<RaftGroup> = self.nodes.keys().map(|id| self.group(*id)).collect();
        let refs: Vec<&RaftGroup> = groups.iter().collect();
        wait_leader(&refs).await
    }

    /// Write through whoever leads, following ForwardToLeader.
    async fn write(&self, v: u64) -> u64 {
        self.write_command(v, cmd(v)).await
    }

    /// [`Self::write`] of `command` (whose first 8 bytes are the value `v`).
    async fn write_command(&self, v: u64, command: Vec<u8>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut target = self.leader().await;
        loop {
            match self.group(target).write(command.clone()).await {
                Ok(out) => return out.index,
                Err(RaftGroupError::ForwardToLeader {
                    leader_id: Some(l), ..
                }) if self.nodes.contains_key(&l) => target = l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "write {v} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    target = self.leader().await;
                }
            }
        }
    }

    async fn wait_applied(&self, id: NodeId, index: u64) {
        self.group(id)
            .wait_applied(index, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("node {id} did not apply {index}: {e}"));
    }

    async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fail_over_without_losing_acknowledged_writes() {
    let mut c = Cluster::start(RaftConfig::fast()).await;
    let mut acked = Vec::new();
    let mut last = 0;
    for v in 0..30 {
        last = c.write(v).await;
        acked.push(v);
    }
    let old_leader = c.leader().await;
    c.stop_node(old_leader).await;

    let new_leader = c.leader().await;
    assert_ne!(new_leader, old_leader);
    for v in 30..60 {
        last = c.write(v).await;
        acked.push(v);
    }

    c.start_node(old_leader).await;
    for id in 1..=3 {
        c.wait_applied(id, last).await;
    }
    for id in 1..=3 {
        assert_eq!(c.apps[&id].values(), acked, "node {id} state");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot() {
    let config = RaftConfig {
        snapshot_every_entries: 20,
        keep_entries_behind_snapshot: 0,
        ..RaftConfig::fast()
    };
    let c = Cluster::start(config).await;
    for v in 0..5 {
        c.write(v).await;
    }
    let leader = c.leader().await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    let lag_index = c.group(lagging).metrics().last_log_index.unwrap();
    c.router.cut(lagging);

    let mut last = 0;
    for v in 5..120 {
        last = c.write(v).await;
    }
    let leader = c.leader().await;
    assert_ne!(leader, lagging);
    c.group(leader).trigger_snapshot().await.unwrap();
    wait_until("leader purged the log the lagging node needs", || {
        c.group(leader)
            .metrics()
            .purged
            .is_some_and(|p| p > lag_index + 1)
    })
    .await;

    c.router.heal(lagging);
    c.wait_applied(lagging, last).await;
    let m = c.group(lagging).metrics();
    assert!(
        m.snapshot.is_some_and(|s| s > lag_index),
        "caught up through an installed snapshot: {m:?}"
    );
    let expected: Vec<u64> = (0..120).collect();
    assert_eq!(c.apps[&lagging].values(), expected);
    assert_eq!(c.apps[&leader].values(), expected);
    c.shutdown().await;
}

/// Issue 14, finding 2: a follower behind by far more bytes than one message may carry catches
/// up. Append calls are cut to the byte budget and openraft resumes after each partial success;
/// before, the same oversized batch was refused by the transport and retried for ever. A command
/// over the entry cap is refused before it reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_many_frames_catches_up_in_budgeted_calls() {
    let config = RaftConfig {
        append_budget_bytes: 64 << 10,
        max_entry_bytes: 32 << 10,
        ..RaftConfig::fast()
    };
    let c = Cluster::start(config).await;
    // Like the TCP frame cap, scaled down: four budgets.
    c.router.set_max_message_bytes(256 << 10);
    c.write(0).await;
    let leader = c.leader().await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    c.router.cut(lagging);
    let mut last = 0;
    // 60 entries of 24 KiB: 1.4 MiB behind, over five times the message cap.
    for v in 1..=60u64 {
        let mut command = vec![0u8; 24 << 10];
        command[..8].copy_from_slice(&v.to_le_bytes());
        last = c.write_command(v, command).await;
    }
    c.router.heal(lagging);
    c.wait_applied(lagging, last).await;
    let expected: Vec<u64> = (0..=60).collect();
    assert_eq!(c.apps[&lagging].values(), expected);

    let leader = c.leader().await;
    let refused = c.group(leader).write(vec![1u8; 40 << 10]).await;
    assert!(
        matches!(refused, Err(RaftGroupError::TooLarge { bytes, cap, .. }) if bytes == 40 << 10 && cap == 32 << 10),
        "{refused:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_minority_cannot_commit() {
    let c = Cluster::start(RaftConfig::fast()).await;
    for v in 0..5 {
        c.write(v).await;
    }
    let old_leader = c.leader().await;
    c.router.cut(old_leader);

    // The isolated leader cannot reach a majority: its write must not succeed.
    let isolated = c.group(old_leader);
    let attempt = tokio::time::timeout(Duration::from_secs(2), isolated.write(cmd(999))).await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "minority write was acknowledged: {attempt:?}"
    );

    // The majority elects a new leader and keeps accepting writes.
    let others: Vec<RaftGroup> = (1..=3)
        .filter(|id| *id != old_leader)
        .map(|id| c.group(id))
        .collect();
    let new_leader = wait_leader(&[&others[0], &others[1]]).await;
    let mut last = 0;
    for v in 5..10 {
        last = c.write_on(new_leader, v).await;
    }

    c.router.heal(old_leader);
    for id in 1..=3 {
        c.wait_applied(id, last).await;
    }
    let expected: Vec<u64> = (0..10).collect();
    for id in 1..=3 {
        assert_eq!(
            c.apps[&id].values(),
            expected,
            "node {id} must not hold the minority write"
        );
    }
    c.shutdown().await;
}

impl Cluster {
    async fn write_on(&self, id: NodeId, v: u64) -> u64 {
        self.group(id).write(cmd(v)).await.unwrap().index
    }
}

/// Write through whichever node leads `group` in `nodes`, following ForwardToLeader.
async fn write_any(nodes: &BTreeMap<NodeId, RaftNode>, v: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = nodes
            .values()
            .filter_map(|n| n.group(GROUP))
            .find(|g| g.metrics().role == Role::Leader);
        if let Some(g) = leader {
            match g.write(cmd(v)).await {
                Ok(out) => return out.index,
                Err(e) => assert!(Instant::now() < deadline, "write {v} failed: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "no leader for write {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_cluster_replicates_and_streams_snapshots_to_a_new_member() {
    use crate::raft::tcp::{TcpTransport, serve};
    init_tracing();

    let config = RaftConfig {
        snapshot_every_entries: 20,
        keep_entries_behind_snapshot: 0,
        ..RaftConfig::fast()
    };
    let secret = b"cluster-secret".to_vec();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = BTreeMap::new();
    let mut apps = BTreeMap::new();
    let mut infos = BTreeMap::new();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let transport = TcpTransport::new(secret.clone(), Duration::from_secs(1));
        let node = RaftNode::open(
            id,
            dirs[(id - 1) as usize].path(),
            Arc::new(transport),
            config.clone(),
        )
        .unwrap();
        let app = Arc::new(ListApp::default());
        node.start_group(GROUP, app.clone()).await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        servers.push(tokio::spawn(serve(
            listener,
            node.clone(),
            secret.clone(),
            async move {
                let _ = stop_rx.await;
            },
        )));
        stops.push(stop_tx);
        infos.insert(id, NodeInfo::new(addr, format!("127.0.0.1:{}", 6333 + id)));
        nodes.insert(id, node);
        apps.insert(id, app);
    }

    // Start with two voters; node 3 joins later, after the log it needs was purged.
    let members: BTreeMap<_, _> = [1, 2].iter().map(|id| (*id, infos[id].clone())).collect();
    nodes[&1]
        .group(GROUP)
        .unwrap()
        .initialize(members)
        .await
        .unwrap();
    let mut last = 0;
    for v in 0..60 {
        last = write_any(&nodes, v).await;
    }
    let leader_id = wait_leader(&[
        &nodes[&1].group(GROUP).unwrap(),
        &nodes[&2].group(GROUP).unwrap(),
    ])
    .await;
    let leader = nodes[&leader_id].group(GROUP).unwrap();
    leader.trigger_snapshot().await.unwrap();
    wait_until("leader purged", || leader.metrics().purged.is_some()).await;

    leader
        .add_learner(3, infos[&3].clone(), true)
        .await
        .unwrap();
    leader
        .change_membership([1, 2, 3].into(), false)
        .await
        .unwrap();
    for v in 60..70 {
        last = write_any(&nodes, v).await;
    }
    for id in 1..=3 {
        nodes[&id]
            .group(GROUP)
            .unwrap()
            .wait_applied(last, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let expected: Vec<u64> = (0..70).collect();
    for id in 1..=3 {
        assert_eq!(apps[&id].values(), expected, "node {id}");
    }
    let m3 = nodes[&3].group(GROUP).unwrap().metrics();
    assert!(
        m3.snapshot.is_some(),
        "node 3 must have installed a streamed snapshot: {m3:?}"
    );
    assert_eq!(m3.voters, vec![1, 2, 3]);

    // A peer with the wrong secret is refused at connect.
    let intruder = TcpTransport::new(b"wrong".to_vec(), Duration::from_secs(1));
    let vote_req = openraft::raft::VoteRequest::new(openraft::Vote::new(99, 9), None);
    let refused = intruder
        .call(
            9,
            1,
            &infos[&1],
            GROUP,
            crate::raft::RaftRpc::Vote(vote_req),
            Duration::from_secs(1),
        )
        .await;
    assert!(
        matches!(refused, Err(crate::raft::TransportError::Unreachable(..))),
        "{refused:?}"
    );

    for stop in stops {
        let _ = stop.send(());
    }
    for s in servers {
        s.await.unwrap();
    }
    for n in nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_or_corrupt_snapshots_are_refused() {
    use crate::raft::state_machine::{MANIFEST_FILE, read_manifest, verify_snapshot_dir};
    use openraft::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;

    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(ListApp::default());
    app.apply(1, &cmd(5));
    let mut sm = GroupStateMachine::open(app, dir.path()).unwrap();
    let snap = sm
        .try_create_snapshot_builder(true)
        .await
        .unwrap()
        .build_snapshot()
        .await
        .unwrap();
    let snap_dir = snap.snapshot.dir.clone();
    verify_snapshot_dir(&snap_dir, &snap.meta).unwrap();
    let len = std::fs::metadata(snap_dir.join("list.bin")).unwrap().len();
    assert_eq!(
        read_manifest(&snap_dir).unwrap().files,
        vec![("list.bin".to_owned(), len)]
    );

    // A copy missing a file (sender's snapshot deleted mid-transfer) is refused.
    let torn = dir.path().join("torn");
    std::fs::create_dir(&torn).unwrap();
    std::fs::copy(snap_dir.join(MANIFEST_FILE), torn.join(MANIFEST_FILE)).unwrap();
    assert!(verify_snapshot_dir(&torn, &snap.meta).is_err());

    // A flipped bit in the manifest is caught by its checksum.
    let mut bytes = std::fs::read(snap_dir.join(MANIFEST_FILE)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(torn.join(MANIFEST_FILE), &bytes).unwrap();
    std::fs::copy(snap_dir.join("list.bin"), torn.join("list.bin")).unwrap();
    assert!(read_manifest(&torn).is_err());

    // Reopening finds the snapshot again and ignores leftovers of interrupted work.
    std::fs::create_dir(dir.path().join("tmp-00000000000000000099")).unwrap();
    drop(sm);
    let mut sm = GroupStateMachine::open(Arc::new(ListApp::default()), dir.path()).unwrap();
    let cur = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.meta, snap.meta);
    assert!(!dir.path().join("tmp-00000000000000000099").exists());
}

/// Write throughput, for the report: `cargo test --lib raft::tests::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints numbers"]
async fn measure_write_throughput() {
    for (label, nodes_n) in [("1 node", 1u64), ("3 nodes in-process", 3)] {
        let router = InProcessRouter::new();
        let dirs: Vec<_> = (0..nodes_n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=nodes_n {
            let n = open_node(
                id,
                dirs[(id - 1) as usize].path(),
                &router,
                &RaftConfig::fast(),
            )
            .await;
            n.start_group(GROUP, Arc::new(ListApp::default()))
                .await
                .unwrap();
            nodes.insert(id, n);
        }
        let members = (1..=nodes_n).map(|id| (id, info(id))).collect();
        nodes[&1]
            .group(GROUP)
            .unwrap()
            .initialize(members)
            .await
            .unwrap();
        write_any(&nodes, 0).await;
        let leader = nodes
            .values()
            .filter_map(|n| n.group(GROUP))
            .find(|g| g.metrics().role == Role::Leader)
            .unwrap();
        for concurrency in [1usize, 64] {
            let total = if concurrency == 1 { 300 } else { 3000 };
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..concurrency {
                let g = leader.clone();
                tasks.spawn(async move {
                    for i in 0..total / concurrency {
                        g.write(cmd((w * 1_000_000 + i) as u64)).await.unwrap();
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{label}: {total} writes, {concurrency} in flight: {:.0} writes/s, {:.2} ms mean latency",
                total as f64 / secs,
                secs * 1000.0 * concurrency as f64 / total as f64
            );
        }
        for n in nodes.values() {
            n.shutdown().await;
        }
    }
}

/// Last log index of `tests/fixtures/raft_snapshot_v1` (a one-node group after five writes).
const FIXTURE_INDEX: u64 = 6;

/// `tests/fixtures/raft_snapshot_v1` is a snapshot directory (manifest format version 1, written
/// before the path checks; never regenerate it): it must open and restore in every later build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_fixture_v1_opens_and_restores() {
    use crate::raft::state_machine::{MANIFEST_FILE, read_manifest, verify_snapshot_dir};
    use openraft::storage::RaftStateMachine;

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/raft_snapshot_v1");
    let dir = tempfile::tempdir().unwrap();
    let snap = dir
        .path()
        .join("snap-00000000000000000007-00000000000000000001");
    std::fs::create_dir(&snap).unwrap();
    for f in [MANIFEST_FILE, "list.bin"] {
        std::fs::copy(fixture.join(f), snap.join(f)).unwrap();
    }
    let m = read_manifest(&snap).unwrap();
    assert_eq!(m.meta.last_log_id.map(|l| l.index), Some(FIXTURE_INDEX));
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].0, "list.bin");
    verify_snapshot_dir(&snap, &m.meta).unwrap();
    let app = Arc::new(ListApp::default());
    let mut sm = GroupStateMachine::open(app.clone(), dir.path()).unwrap();
    let cur = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.meta, m.meta);
    sm.install_snapshot(&cur.meta, cur.snapshot).await.unwrap();
    assert_eq!(app.values(), (0..5).collect::<Vec<_>>());
}

/// Issue 14, finding 5: a manifest naming a path outside the snapshot directory (relative
/// escape or absolute) is refused when it is decoded, before any file system access; the file
/// set must equal the manifest.
#[test]
fn hostile_manifests_are_refused_before_any_file_is_touched() {
    use crate::raft::state_machine::{
        MANIFEST_FILE, Manifest, check_snapshot_path, decode_manifest, encode_manifest,
        verify_snapshot_dir,
    };
    use crate::raft::types::{SnapshotMeta, StoredMembership};

    let meta = SnapshotMeta {
        last_log_id: None,
        last_membership: StoredMembership::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../x",
        "a//b",
        ".",
        "",
        "a\\..\\b",
        MANIFEST_FILE,
    ] {
        assert!(check_snapshot_path(bad).is_err(), "{bad:?} must be refused");
        let bytes = encode_manifest(&Manifest {
            meta: meta.clone(),
            files: vec![(bad.to_owned(), 1234)],
        })
        .unwrap();
        let err = decode_manifest(&bytes).unwrap_err();
        assert!(err.to_string().contains("refused path"), "{bad:?}: {err}");
        std::fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
        let err = verify_snapshot_dir(dir.path(), &meta)
            .unwrap_err()
            .to_string();
        // Nothing about the named file leaks (finding 5 answered with its size).
        assert!(
            err.contains("refused path") && !err.contains("bytes"),
            "{err}"
        );
    }
    check_snapshot_path("a/b.seg").unwrap();
    check_snapshot_path("list.bin").unwrap();

    // The directory must hold exactly the listed files.
    std::fs::write(dir.path().join("list.bin"), b"12345").unwrap();
    let write = |files: Vec<(String, u64)>| {
        let bytes = encode_manifest(&Manifest {
            meta: meta.clone(),
            files,
        })
        .unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), bytes).unwrap();
    };
    write(vec![("list.bin".into(), 5)]);
    verify_snapshot_dir(dir.path(), &meta).unwrap();
    std::fs::write(dir.path().join("extra.bin"), b"x").unwrap();
    let err = verify_snapshot_dir(dir.path(), &meta).unwrap_err();
    assert!(err.to_string().contains("not in the manifest"), "{err}");
    std::fs::remove_file(dir.path().join("extra.bin")).unwrap();
    write(vec![("list.bin".into(), 5), ("more.bin".into(), 1)]);
    assert!(verify_snapshot_dir(dir.path(), &meta).is_err());
    write(vec![("list.bin".into(), 4)]);
    assert!(verify_snapshot_dir(dir.path(), &meta).is_err());
    // Unsorted or duplicated lists are refused too.
    let bytes = encode_manifest(&Manifest {
        meta: meta.clone(),
        files: vec![("b".into(), 1), ("a".into(), 1)],
    })
    .unwrap();
    assert!(decode_manifest(&bytes).is_err());
}

/// Issue 14, finding 5, on a running group: a received snapshot is checked vote first, then its
/// manifest's paths, and only then its files. With a stale vote it is answered with this
/// replica's newer vote and removed unread (the hostile manifest is never looked at); with a
/// current vote the manifest's escaping paths refuse it before any listed file is touched.
/// Either way the group keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_snapshot_is_checked_vote_first_then_manifest_paths() {
    use crate::raft::state_machine::{MANIFEST_FILE, Manifest, encode_manifest};
    use crate::raft::types::{SnapshotMeta, StoredMembership};

    let dir = tempfile::tempdir().unwrap();
    let router = InProcessRouter::new();
    let node = open_node(1, dir.path(), &router, &RaftConfig::fast()).await;
    let app = Arc::new(ListApp::default());
    let group = node.start_group(9, app.clone()).await.unwrap();
    group
        .initialize(BTreeMap::from([(1, info(1))]))
        .await
        .unwrap();
    wait_leader(&[&group]).await;
    group.write(cmd(1)).await.unwrap();

    // A file outside the snapshot directory, named by the manifest both ways.
    let outside = dir.path().join("outside.bin");
    std::fs::write(&outside, b"not yours").unwrap();
    let meta = SnapshotMeta {
        last_log_id: None,
        last_membership: StoredMembership::default(),
    };
    let hostile = |incoming: &Path, escape: String| {
        let bytes = encode_manifest(&Manifest {
            meta: meta.clone(),
            files: vec![(escape, 9)],
        })
        .unwrap();
        std::fs::write(incoming.join(MANIFEST_FILE), bytes).unwrap();
    };
    let escapes = [
        // incoming-* → snapshots → 9 → groups → the data directory.
        "../../../../outside.bin".to_owned(),
        outside.to_str().unwrap().to_owned(),
    ];

    // A stale vote: answered with the current one, the directory removed unread.
    let stale: crate::raft::types::Vote = openraft::Vote::new(0, 2);
    let incoming = node.incoming_snapshot_dir(9).unwrap();
    hostile(&incoming, escapes[0].clone());
    let answer = node
        .install_snapshot(9, stale, meta.clone(), incoming.clone())
        .await
        .expect("a stale vote is answered, not refused as an error");
    assert!(answer.vote > stale, "{:?} vs {stale:?}", answer.vote);
    assert!(!incoming.exists());
    let current = answer.vote;
    assert!(node.stale_snapshot_vote(9, &current).unwrap().is_none());
    assert!(node.stale_snapshot_vote(9, &stale).unwrap().is_some());
    assert!(node.stale_snapshot_vote(77, &stale).is_err());

    // A current vote: the manifest's paths are refused, nothing about the named file leaks.
    for escape in escapes {
        let incoming = node.incoming_snapshot_dir(9).unwrap();
        hostile(&incoming, escape.clone());
        let err = node
            .install_snapshot(9, current, meta.clone(), incoming.clone())
            .await
            .unwrap_err();
        assert!(err.contains("refused path"), "{escape}: {err}");
        assert!(!err.contains("bytes"), "{escape}: {err}");
        assert!(!incoming.exists());
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");
    // The group was never stopped by any of it.
    group.write(cmd(2)).await.unwrap();
    assert_eq!(app.values(), vec![1, 2]);
    node.shutdown().await;
}
