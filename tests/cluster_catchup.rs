//! Issue 14, finding 2, end to end on three real `shoal serve` processes on loopback: a follower
//! cut off while 200 MiB of writes land catches up once healed. Before replication by bytes,
//! openraft sent the whole backlog as one AppendEntries far over the 64 MiB frame cap, the
//! transport closed the shared connection, and the follower stayed behind for ever.
//!
//! The time it takes is printed (a figure for the README, not a timed assertion); the deadline
//! below only bounds a run that would otherwise never end.

mod common;

use common::cluster::{TestCluster, wait_for};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[test]
fn a_follower_cut_off_while_200_mib_land_catches_up() {
    let c = TestCluster::start(3, &[]);
    let body = json!({
        "vectors": {"size": 4, "distance": "Dot"},
        "shard_number": 1,
        "replication_factor": 3,
    });
    assert_eq!(c.ok(0, "PUT", "/collections/big", body), json!(true));
    c.partition(2);
    let blob = "z".repeat(1 << 20);
    let batches = 25u64;
    let per_batch = 8u64;
    let written = Instant::now();
    for b in 0..batches {
        let points: Vec<Value> = (0..per_batch)
            .map(|k| {
                let id = b * per_batch + k;
                json!({"id": id, "vector": [1.0, 0.5, id as f32, -1.0], "payload": {"blob": blob, "id": id}})
            })
            .collect();
        c.ok(
            0,
            "PUT",
            "/collections/big/points?wait=true",
            json!({ "points": points }),
        );
    }
    let total = batches * per_batch;
    eprintln!(
        "wrote {} MiB in {:.1} s with node 3 cut off",
        total,
        written.elapsed().as_secs_f64()
    );
    let healed = Instant::now();
    c.heal();
    let caught_up = wait_for(
        "the cut-off follower to catch up",
        Duration::from_secs(180),
        || {
            let reps = c.replicas(0, "big").swap_remove(0);
            let top = reps.iter().filter_map(|r| r.2).max()?;
            let behind = reps.iter().find(|r| r.0 == 3)?;
            (behind.2 == Some(top) && behind.1 == Some(total)).then_some(behind.2)
        },
    );
    eprintln!(
        "node 3 caught up (applied index {caught_up:?}, {total} points, {total} MiB) {:.1} s after healing",
        healed.elapsed().as_secs_f64()
    );
    // The follower answers from what it holds: every point, payload intact.
    let got = c.ok(
        2,
        "POST",
        "/collections/big/points?consistency=eventual",
        json!({"ids": [0, total - 1], "with_payload": true}),
    );
    for p in got.as_array().unwrap() {
        assert_eq!(p["payload"]["blob"].as_str().map(str::len), Some(1 << 20));
    }
}
