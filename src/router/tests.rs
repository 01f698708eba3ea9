//! The replica side of the data plane ([`rpc::execute`]) on a real in-process 3-node Raft group:
//! writes only on the leader, strong reads only on the leader, session reads wait for the token
//! or answer "stale", eventual reads answer from local state at once.

use super::read::merge_pages;
use super::rpc::{self, ErrorKind, ReadSpec, ShardRequest, ShardResponse, ShardSearch};
use super::token::Consistency;
use crate::cluster::ShardApp;
use crate::index::Metric;
use crate::raft::{InProcessRouter, NodeId, NodeInfo, RaftConfig, RaftGroup, RaftNode, Role};
use crate::shard::Record;
use crate::shard::{PointId, PointWrite, ShardCommand, ShardConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUP: u64 = 11;

struct Replicas {
    router: InProcessRouter,
    _dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<NodeId, RaftNode>,
    groups: BTreeMap<NodeId, (RaftGroup, Arc<ShardApp>)>,
}

fn shard_config() -> ShardConfig {
    ShardConfig {
        dim: 2,
        metric: Metric::L2,
        seal_threshold: 0,
        nlist: 4,
        pq_m: 1,
        pq_bits: 8,
        seed: 1,
        compaction: Default::default(),
    }
}

impl Replicas {
    async fn start() -> Self {
        let router = InProcessRouter::new();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for id in 1..=3u64 {
            let node = RaftNode::open_in_process(
                id,
                dirs[(id - 1) as usize].path(),
                &router,
                RaftConfig::fast(),
            )
            .unwrap();
            let app = Arc::new(ShardApp::new(shard_config()));
            let g = node.start_group(GROUP, app.clone()).await.unwrap();
            nodes.insert(id, node);
            groups.insert(id, (g, app));
        }
        let members = (1..=3)
            .map(|id| (id, NodeInfo::new(format!("n{id}"), format!("n{id}"))))
            .collect();
        groups[&1].0.initialize(members).await.unwrap();
        let r = Replicas {
            router,
            _dirs: dirs,
            nodes,
            groups,
        };
        r.leader().await;
        r
    }

    async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((id, _)) = self
                .groups
                .iter()
                .find(|(_, (g, _))| g.metrics().role == Role::Leader)
            {
                return *id;
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn exec(&self, node: NodeId, req: ShardRequest) -> ShardResponse {
        let (g, app) = &self.groups[&node];
        rpc::execute(g, app, req).await
    }
}

fn upsert(id: u64, version: u64) -> ShardRequest {
    ShardRequest::Write {
        group: GROUP,
        command: ShardCommand::UpsertAt {
            points: vec![PointWrite {
                id: PointId::Num(id),
                vector: vec![id as f32, 0.0],
                payload: None,
            }],
            version,
        }
        .encode(),
    }
}

fn count(consistency: Consistency, min_applied: u64, wait_ms: u64) -> ShardRequest {
    ShardRequest::Count {
        group: GROUP,
        read: ReadSpec {
            consistency,
            min_applied,
            wait_ms,
        },
        filter: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_each_consistency_level_honestly() {
    let r = Replicas::start().await;
    let leader = r.leader().await;
    let follower = (1..=3).find(|n| *n != leader).unwrap();

    // Writes: a follower names the leader; the leader commits.
    assert_eq!(
        r.exec(follower, upsert(1, 10)).await,
        ShardResponse::ForwardToLeader {
            leader: Some(leader)
        }
    );
    let i1 = match r.exec(leader, upsert(1, 10)).await {
        ShardResponse::Written { index } => index,
        other => panic!("{other:?}"),
    };
    // Bad input is refused before it reaches the log.
    let bad = ShardRequest::Write {
        group: GROUP,
        command: ShardCommand::Upsert {
            points: vec![PointWrite {
                id: PointId::Num(9),
                vector: vec![1.0, 2.0, 3.0],
                payload: None,
            }],
        }
        .encode(),
    };
    assert!(matches!(
        r.exec(leader, bad).await,
        ShardResponse::Error {
            kind: ErrorKind::BadRequest,
            ..
        }
    ));

    // Strong: only the leader answers.
    assert_eq!(
        r.exec(follower, count(Consistency::Strong, 0, 0)).await,
        ShardResponse::ForwardToLeader {
            leader: Some(leader)
        }
    );
    assert_eq!(
        r.exec(leader, count(Consistency::Strong, 0, 0)).await,
        ShardResponse::Count(1)
    );
    // Session: the follower waits for the token's index.
    assert_eq!(
        r.exec(follower, count(Consistency::Session, i1, 5000))
            .await,
        ShardResponse::Count(1)
    );

    // Cut the follower off; the majority commits a second point.
    r.router.cut(follower);
    let i2 = match r.exec(leader, upsert(2, 20)).await {
        ShardResponse::Written { index } => index,
        other => panic!("{other:?}"),
    };
    // A session read needing it on the cut replica fails rather than answering stale...
    let started = Instant::now();
    match r.exec(follower, count(Consistency::Session, i2, 300)).await {
        ShardResponse::Error {
            kind: ErrorKind::Stale,
            ..
        } => {}
        other => panic!("stale session read answered: {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    // ...while an eventual read answers the old state at once.
    assert_eq!(
        r.exec(follower, count(Consistency::Eventual, 0, 0)).await,
        ShardResponse::Count(1)
    );
    // Healed, the follower catches up and the session read succeeds.
    r.router.heal(follower);
    assert_eq!(
        r.exec(follower, count(Consistency::Session, i2, 10_000))
            .await,
        ShardResponse::Count(2)
    );

    // A search on any replica answers best first with distances.
    let search = ShardRequest::Search {
        group: GROUP,
        read: ReadSpec::eventual(),
        search: ShardSearch {
            vector: vec![2.1, 0.0],
            limit: 5,
            filter: None,
            nprobe: 1,
            rerank: 0,
            exact: true,
            with_payload: false,
            with_vector: true,
        },
    };
    match r.exec(follower, search).await {
        ShardResponse::Hits(h) => {
            let ids: Vec<PointId> = h.iter().map(|h| h.record.id).collect();
            assert_eq!(ids, vec![PointId::Num(2), PointId::Num(1)]);
            assert!(h[0].distance < h[1].distance);
            assert_eq!(h[0].record.vector, Some(vec![2.0, 0.0]));
        }
        other => panic!("{other:?}"),
    }
    for node in r.nodes.values() {
        node.shutdown().await;
    }
}

fn rec(n: u64) -> Record {
    Record {
        id: PointId::Num(n),
        payload: None,
        vector: None,
    }
}

#[test]
fn scroll_pages_merge_by_id_and_continue_at_the_first_id_left_out() {
    // Shard A returned 1,4 (next 6); shard B returned 2,3 (next 5); limit 3.
    let all: BTreeMap<PointId, Record> = [1, 4, 2, 3]
        .into_iter()
        .map(|n| (PointId::Num(n), rec(n)))
        .collect();
    let p = merge_pages(all.clone(), Some(PointId::Num(5)), 3);
    assert_eq!(
        p.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        [1, 2, 3].map(PointId::Num)
    );
    assert_eq!(p.next, Some(PointId::Num(4)));
    // Everything fits: the smallest id a shard still holds.
    let p = merge_pages(all.clone(), Some(PointId::Num(5)), 10);
    assert_eq!(p.records.len(), 4);
    assert_eq!(p.next, Some(PointId::Num(5)));
    // Nothing left anywhere.
    assert_eq!(merge_pages(all, None, 10).next, None);
}
