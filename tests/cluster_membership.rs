//! Cluster membership end to end, with real `shoal serve` processes on loopback: forming with
//! `--peers`, joining with `--join`, placing shard replicas, surviving a killed metadata
//! leader, restoring a wiped replica from a snapshot stream, moving replicas and removing a
//! dead member (its metadata vote passing to a learner).

mod common;

use common::cluster::{TestCluster, wait_for};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn member_ids(status: &Value) -> BTreeSet<u64> {
    status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

fn vector(i: u64) -> Vec<f32> {
    (0..4)
        .map(|k| ((i * 7 + k * 13) % 17) as f32 - 8.0)
        .collect()
}

/// Upsert `ids` through the shard leader of single-shard `collection` (the node-local write path).
fn upsert(c: &TestCluster, collection: &str, range: std::ops::Range<u64>) {
    let points: Vec<Value> = range
        .map(|i| json!({"id": i, "vector": vector(i)}))
        .collect();
    wait_for(
        "an upsert through the shard leader",
        Duration::from_secs(20),
        || {
            let leader = c.shard_leader(c.any_running(), collection, 0)?;
            let (status, v) = c.call(
                c.index_of(leader),
                "PUT",
                &format!("/collections/{collection}/points?wait=true"),
                Some(json!({"points": points})),
            );
            (status == 200).then_some(()).or_else(|| {
                eprintln!("upsert via node {leader}: {status} {v}");
                None
            })
        },
    );
}

fn replica<'a>(status: &'a Value, collection: &str, node: u64) -> Option<&'a Value> {
    status["collections"][collection]["shards"][0]["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["node"] == node)
}

#[test]
fn nodes_form_join_place_shards_and_survive_a_killed_metadata_leader() {
    let mut c = TestCluster::start(3, &[]);
    // Every node agrees on the members and the metadata leader.
    let leader = wait_for(
        "one metadata leader seen by all",
        Duration::from_secs(20),
        || {
            let views: Vec<Value> = (0..3).map(|i| c.status(i)).collect();
            let leaders: BTreeSet<_> = views
                .iter()
                .map(|v| v["metadata"]["leader"].as_u64())
                .collect();
            let agree = leaders.len() == 1
                && views
                    .iter()
                    .all(|v| member_ids(v) == BTreeSet::from([1, 2, 3]))
                && views.iter().all(|v| {
                    v["members"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|m| m["reachable"] == true)
                });
            agree
                .then(|| leaders.into_iter().next().flatten())
                .flatten()
        },
    );
    let s = c.status(0);
    assert_eq!(ids(&s["metadata"]["voters"]), BTreeSet::from([1, 2, 3]));
    for i in 0..3 {
        assert_eq!(c.status(i)["node_id"], i as u64 + 1);
    }

    // A fourth node joins through node 2 and becomes a learner of the metadata group.
    let four = c.join(4, 1);
    let s = c.status(four);
    assert_eq!(member_ids(&s), BTreeSet::from([1, 2, 3, 4]));
    assert_eq!(ids(&s["metadata"]["learners"]), BTreeSet::from([4]));
    assert_eq!(s["node_id"], 4);

    // 3 shards x 3 replicas, created through a node that does not lead the metadata.
    let via = (0..4).find(|i| c.nodes[*i].id != leader).unwrap();
    let body = json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 3, "replication_factor": 3});
    assert_eq!(c.ok(via, "PUT", "/collections/c", body), json!(true));
    let (status, v) = c.call(
        via,
        "PUT",
        "/collections/too_many",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}, "replication_factor": 5})),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        c.call(
            via,
            "PUT",
            "/collections/c",
            Some(json!({"vectors": {"size": 4, "distance": "Dot"}}))
        )
        .0,
        409
    );
    let shards = wait_for("every shard has a leader", Duration::from_secs(20), || {
        let s = c.status(3);
        let shards = s["collections"]["c"]["shards"].as_array()?.clone();
        shards
            .iter()
            .all(|sh| sh["leader"].is_u64())
            .then_some(shards)
    });
    assert_eq!(shards.len(), 3);
    let mut leaders = BTreeSet::new();
    for sh in &shards {
        let replicas: BTreeSet<u64> = sh["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["node"].as_u64().unwrap())
            .collect();
        assert_eq!(replicas.len(), 3, "replicas on distinct nodes: {sh}");
        leaders.insert(sh["leader"].as_u64().unwrap());
    }
    assert_eq!(leaders.len(), 3, "leaders spread over nodes: {shards:?}");
    for i in 0..4 {
        assert_eq!(
            c.ok(i, "GET", "/collections", Value::Null)["collections"],
            json!([{"name": "c"}])
        );
        assert_eq!(
            c.ok(i, "GET", "/collections/c", Value::Null)["config"]["params"]["shard_number"],
            3
        );
    }

    // Kill -9 the metadata leader: the others elect a new one and still change metadata.
    let li = c.index_of(leader);
    c.kill9(li);
    let survivor = (0..4).find(|i| *i != li).unwrap();
    wait_for("a new metadata leader", Duration::from_secs(30), || {
        let l = c.status(survivor)["metadata"]["leader"].as_u64()?;
        (l != leader).then_some(l)
    });
    let body = json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 2, "replication_factor": 2});
    assert_eq!(c.ok(survivor, "PUT", "/collections/d", body), json!(true));
    let s = c.status(survivor);
    let down = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == leader)
        .unwrap()
        .clone();
    assert_eq!(down["reachable"], false);
    // Four members, three answer: a create that needs all four is a state that passes (503,
    // retry), not a bad request; one that needs more than the cluster has stays a 400.
    let (status, v) = c.call(
        survivor,
        "PUT",
        "/collections/e",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}, "replication_factor": 4})),
    );
    assert_eq!(status, 503, "{v}");
    assert!(
        v["status"]["error"]
            .as_str()
            .unwrap()
            .contains("3 of the cluster's 4"),
        "{v}"
    );
    assert_eq!(
        c.ok(survivor, "DELETE", "/collections/d", Value::Null),
        json!(true)
    );
    assert_eq!(
        c.ok(survivor, "DELETE", "/collections/d", Value::Null),
        json!(false)
    );
    // The old leader comes back and catches up with the metadata.
    c.restart(li);
    wait_for(
        "the restarted node sees the deletion",
        Duration::from_secs(20),
        || {
            let names = c.ok(li, "GET", "/collections", Value::Null)["collections"].clone();
            (names == json!([{"name": "c"}])).then_some(())
        },
    );
}

#[test]
fn a_wiped_replica_is_restored_from_a_snapshot_stream_and_replicas_move() {
    // Frequent snapshots: the leader's log is purged, so a new replica must get a snapshot.
    let mut c = TestCluster::start(3, &["--snapshot-every", "5"]);
    let body = json!({"vectors": {"size": 4, "distance": "Euclid"}, "replication_factor": 3, "ivf_pq_config": {"nlist": 4, "seal_threshold": 100}});
    assert_eq!(c.ok(0, "PUT", "/collections/c", body), json!(true));
    for b in 0..30 {
        upsert(&c, "c", b * 10..b * 10 + 10);
    }
    let leader = c.shard_leader(0, "c", 0).unwrap();
    // Snapshots and the purge after them are background work: wait for the leader's purge.
    let purged = wait_for("the leader purges its log", Duration::from_secs(20), || {
        let s = c.status(0);
        let purged = replica(&s, "c", leader)?["purged"].as_u64().unwrap_or(0);
        (purged > 0).then_some(purged)
    });

    // Wipe a follower; a fresh node (new id: a wiped node never reuses its Raft identity)
    // joins and takes over its replica, caught up by a snapshot stream.
    let wiped = c
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    let wi = c.index_of(wiped);
    c.wipe(wi);
    let via = c.index_of(leader);
    let four = c.join(4, via);
    assert_eq!(
        c.ok(
            four,
            "POST",
            "/cluster/collections/c/shards/0/move",
            json!({"from": wiped, "to": 4})
        ),
        json!(true)
    );
    let s = c.status(four);
    let replicas: BTreeSet<u64> = s["collections"]["c"]["shards"][0]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_u64().unwrap())
        .collect();
    assert!(replicas.contains(&4) && !replicas.contains(&wiped), "{s}");
    wait_for("node 4 holds every point", Duration::from_secs(30), || {
        let s = c.status(four);
        (replica(&s, "c", 4)?["points"] == 300).then_some(())
    });
    let count = c.ok(four, "POST", "/collections/c/points/count", json!({}));
    assert_eq!(count["count"], 300);
    // The new replica's first log entry after the snapshot is beyond what the leader purged:
    // it can only have been restored from the snapshot.
    let s = c.status(four);
    assert!(
        replica(&s, "c", 4).unwrap()["snapshot"]
            .as_u64()
            .unwrap_or(0)
            >= purged,
        "{s}"
    );

    // Writes go on, and the new replica follows them.
    upsert(&c, "c", 300..320);
    wait_for("node 4 follows new writes", Duration::from_secs(20), || {
        let s = c.status(four);
        (replica(&s, "c", 4)?["points"] == 320).then_some(())
    });

    // Move the leader's own replica to a fifth node on the live cluster, through Qdrant's
    // route this time (qdrant-client's `cluster_collection_update`).
    let five = c.join(5, four);
    let leader = c.shard_leader(four, "c", 0).unwrap();
    assert_eq!(
        c.ok(
            five,
            "POST",
            "/collections/c/cluster",
            json!({"move_shard": {"shard_id": 0, "from_peer_id": leader, "to_peer_id": 5}})
        ),
        json!(true)
    );
    let (status, v) = c.call(
        five,
        "POST",
        "/collections/c/cluster",
        Some(json!({"replicate_shard": {"shard_id": 0, "from_peer_id": 5, "to_peer_id": 4}})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("replicate_shard"), "{v}");
    upsert(&c, "c", 320..330);
    wait_for(
        "every replica holds every point",
        Duration::from_secs(30),
        || {
            let s = c.status(five);
            let reps = s["collections"]["c"]["shards"][0]["replicas"]
                .as_array()?
                .clone();
            let nodes: BTreeSet<u64> = reps.iter().map(|r| r["node"].as_u64().unwrap()).collect();
            (nodes.contains(&5)
                && !nodes.contains(&leader)
                && reps.iter().all(|r| r["points"] == 330))
            .then_some(())
        },
    );
    // Qdrant's view of where the replicas are (qdrant-client's `collection_cluster_info`).
    let info = c.ok(five, "GET", "/collections/c/cluster", Value::Null);
    assert_eq!(info["peer_id"], 5, "{info}");
    assert_eq!(info["local_shards"][0]["shard_id"], 0, "{info}");
    assert_eq!(info["local_shards"][0]["points_count"], 330, "{info}");
    let remote: BTreeSet<u64> = info["remote_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peer_id"].as_u64().unwrap())
        .collect();
    assert!(!remote.contains(&leader) && !remote.contains(&5), "{info}");
    // The old leader destroyed its replica.
    let old = c.index_of(leader);
    wait_for(
        "the moved-away replica is destroyed",
        Duration::from_secs(20),
        || {
            let group = c.status(old)["collections"]["c"]["shards"][0]["group"].as_u64()?;
            let dir = c.nodes[old].dir.join("raft/groups").join(group.to_string());
            (!dir.exists()).then_some(())
        },
    );
    // Bad moves are refused.
    let (status, _) = c.call(
        five,
        "POST",
        "/cluster/collections/c/shards/0/move",
        Some(json!({"from": 5, "to": 5})),
    );
    assert_eq!(status, 400);
    let (status, _) = c.call(
        five,
        "POST",
        "/cluster/collections/c/shards/3/move",
        Some(json!({"from": 5, "to": 1})),
    );
    assert_eq!(status, 400);

    // The wiped node is gone for good: remove it from the cluster. A member that still holds a
    // replica is refused; the wiped one holds none any more, and its metadata vote passes to a
    // live learner (node 4 or 5), so the metadata group survives one more failure.
    let (status, v) = c.call(five, "DELETE", "/cluster/members/4", None);
    assert_eq!(status, 400, "node 4 holds a replica of c: {v}");
    assert!(v.to_string().contains("move"), "{v}");
    assert_eq!(c.call(five, "DELETE", "/cluster/members/99", None).0, 400);
    // Qdrant's `remove_peer` route; `force` (remove with its replicas) is refused by name.
    let (status, v) = c.call(
        five,
        "DELETE",
        &format!("/cluster/peer/{wiped}?force=true"),
        None,
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        c.ok(
            five,
            "DELETE",
            &format!("/cluster/peer/{wiped}"),
            Value::Null
        ),
        json!(true)
    );
    let s = c.status(five);
    assert!(!member_ids(&s).contains(&wiped), "{s}");
    let voters = ids(&s["metadata"]["voters"]);
    assert_eq!(voters.len(), 3, "{s}");
    assert!(!voters.contains(&wiped), "{s}");
    assert!(
        voters.contains(&4) || voters.contains(&5),
        "a learner was promoted: {s}"
    );
    // Kill -9 another of the first three voters: two of the three voters remain, so the
    // metadata still changes (before the removal only one of three would have).
    let second = c.index_of(leader);
    c.kill9(second);
    let via = c.index_of(*voters.iter().find(|v| **v != leader).unwrap());
    wait_for(
        "a collection created after two of the first voters died",
        Duration::from_secs(40),
        || {
            let (status, v) = c.call(
                via,
                "PUT",
                "/collections/after",
                Some(json!({"vectors": {"size": 4, "distance": "Dot"}})),
            );
            (status == 200 || status == 409).then_some(()).or_else(|| {
                eprintln!("create through node {}: {status} {v}", c.nodes[via].id);
                None
            })
        },
    );
}
