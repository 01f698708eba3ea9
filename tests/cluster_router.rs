//! The router end to end on real `shoal serve` processes on loopback (3 nodes, collections of
//! 3 shards × 3 replicas): merged exact searches equal a single shard's answers for both
//! placements; a killed shard leader loses no acknowledged write; a cut-off node accepts no
//! write and never serves stale strong or session reads, then converges; concurrent upserts of
//! one id through different routers leave it in exactly one shard, alike on every replica; a
//! replica killed while writes land catches up every named vector.

mod common;

use common::cluster::{TestCluster, wait_for};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DIM: usize = 8;

/// Points in a few well-separated clusters (so centroid placement spreads them over shards).
fn vector(i: u64) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let centre = (i % 4) as f32 * 10.0;
    (0..DIM)
        .map(|d| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 2000) as f32 / 1000.0 - 1.0;
            if d == (i % 4) as usize {
                centre + noise
            } else {
                noise
            }
        })
        .collect()
}

fn create(c: &TestCluster, name: &str, shards: u32, rf: u32, placement: &str, distance: &str) {
    let body = json!({
        "vectors": {"size": DIM, "distance": distance},
        "shard_number": shards,
        "replication_factor": rf,
        "placement": placement,
    });
    assert_eq!(
        c.ok(0, "PUT", &format!("/collections/{name}"), body),
        json!(true)
    );
}

/// Upserts through node `via`, retrying while a leader is being elected; returns the token.
fn upsert(c: &TestCluster, via: usize, name: &str, ids: impl Iterator<Item = u64>) -> String {
    let points: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": vector(i), "payload": {"i": i, "m": i % 5}}))
        .collect();
    let v = c.ok(
        via,
        "PUT",
        &format!("/collections/{name}/points?wait=true"),
        json!({ "points": points }),
    );
    v["consistency_token"].as_str().expect("a token").to_owned()
}

fn query(c: &TestCluster, via: usize, name: &str, body: Value, params: &str) -> (u16, Value) {
    c.call(
        via,
        "POST",
        &format!("/collections/{name}/points/query?{params}"),
        Some(body),
    )
}

fn count(c: &TestCluster, via: usize, name: &str, params: &str) -> (u16, Value) {
    c.call(
        via,
        "POST",
        &format!("/collections/{name}/points/count?{params}"),
        Some(json!({})),
    )
}

fn hits(v: &Value) -> Vec<(u64, f64)> {
    v["result"]["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {v}"))
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["score"].as_f64().unwrap()))
        .collect()
}

/// Waits until every replica of every shard holds the same number of points; returns the
/// per-shard counts.
fn converged(c: &TestCluster, name: &str, timeout: Duration) -> Vec<u64> {
    wait_for("replicas to converge", timeout, || {
        let shards = c.replicas(0, name);
        let mut out = Vec::new();
        for reps in &shards {
            let counts: BTreeSet<Option<u64>> = reps.iter().map(|r| r.1).collect();
            if counts.len() != 1 || counts.contains(&None) {
                return None;
            }
            out.push(counts.into_iter().next().flatten()?);
        }
        Some(out)
    })
}

fn exact_search_matches_one_shard(placement: &str) {
    let c = TestCluster::start(3, &[]);
    create(&c, "sharded", 3, 3, placement, "Cosine");
    create(&c, "single", 1, 1, "hash", "Cosine");
    // Writes through every node; the same points into both collections.
    for (b, via) in (0..6u64).zip([0usize, 1, 2].into_iter().cycle()) {
        upsert(&c, via, "sharded", b * 100..(b + 1) * 100);
        upsert(&c, via, "single", b * 100..(b + 1) * 100);
    }
    let (st, v) = count(&c, 1, "sharded", "consistency=strong");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["count"], 600);
    let per_shard = converged(&c, "sharded", Duration::from_secs(20));
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        600,
        "each id in exactly one shard"
    );
    assert!(
        per_shard.iter().filter(|n| **n > 0).count() >= 2,
        "points spread over shards: {per_shard:?}"
    );
    for q in 0..24u64 {
        let mut body = json!({
            "query": vector(10_000 + q),
            "limit": 10,
            "params": {"exact": true},
            "with_payload": true,
        });
        if q % 3 == 1 {
            body["filter"] = json!({"must": [{"key": "m", "match": {"value": q % 5}}]});
        }
        if q % 4 == 2 {
            body["offset"] = json!(5);
        }
        let (s1, a) = query(
            &c,
            (q % 3) as usize,
            "sharded",
            body.clone(),
            "consistency=strong",
        );
        let (s2, b) = query(&c, 0, "single", body, "consistency=strong");
        assert_eq!((s1, s2), (200, 200), "{a} {b}");
        assert_eq!(hits(&a), hits(&b), "query {q}");
        assert_eq!(hits(&a).len(), 10);
        assert_eq!(a["result"]["points"], b["result"]["points"], "payloads too");
    }
    // Scroll walks every id once, in order, across shards.
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    loop {
        let page = c.ok(
            2,
            "POST",
            "/collections/sharded/points/scroll",
            json!({"limit": 64, "offset": offset, "with_payload": false}),
        );
        seen.extend(
            page["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_u64().unwrap()),
        );
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen, (0..600).collect::<Vec<_>>());
    // Get by ids through any node; deletes reach the owning shards.
    let got = c.ok(
        1,
        "POST",
        "/collections/sharded/points",
        json!({"ids": [5, 250, 599, 1000]}),
    );
    assert_eq!(got.as_array().unwrap().len(), 3);
    c.ok(
        2,
        "POST",
        "/collections/sharded/points/delete",
        json!({"points": [5, 250]}),
    );
    c.ok(
        0,
        "POST",
        "/collections/sharded/points/delete",
        json!({"filter": {"must": [{"key": "i", "match": {"value": 599}}]}}),
    );
    let (_, v) = count(&c, 0, "sharded", "consistency=strong");
    assert_eq!(v["result"]["count"], 597);
}

#[test]
fn exact_search_matches_a_single_shard_with_hash_placement() {
    exact_search_matches_one_shard("hash");
}

#[test]
fn exact_search_matches_a_single_shard_with_centroid_placement() {
    exact_search_matches_one_shard("centroid");
}

#[test]
fn killing_a_shard_leader_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, &[]);
    create(&c, "c", 3, 3, "hash", "Euclid");
    upsert(&c, 0, "c", 0..30);
    let old = wait_for("a leader of shard 0", Duration::from_secs(20), || {
        c.shard_leader(0, "c", 0)
    });
    let victim = c.index_of(old);
    let via = (0..3).find(|i| *i != victim).unwrap();
    // A stream of single-point upserts through a surviving node; ids acknowledged are kept.
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let api = c.nodes[via].api.clone();
        std::thread::spawn(move || {
            let mut i = 1000u64;
            let mut failures = 0;
            while !stop.load(Ordering::SeqCst) {
                let body = serde_json::to_vec(&json!({"points": [{"id": i, "vector": vector(i)}]}))
                    .unwrap();
                match common::request(&api, "PUT", "/collections/c/points?wait=true", Some(&body)) {
                    Ok((200, out)) => {
                        let v: Value = serde_json::from_slice(&out).unwrap();
                        let t = v["result"]["consistency_token"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        acked.lock().unwrap().push((i, t));
                    }
                    _ => failures += 1,
                }
                i += 1;
            }
            failures
        })
    };
    wait_for("some acknowledged writes", Duration::from_secs(20), || {
        (acked.lock().unwrap().len() >= 20).then_some(())
    });
    let killed_at = Instant::now();
    let before = acked.lock().unwrap().len();
    c.kill9(victim);
    // A new leader takes over within seconds and writes flow again.
    let new = wait_for("a new leader of shard 0", Duration::from_secs(15), || {
        c.shard_leader(via, "c", 0).filter(|l| *l != old)
    });
    wait_for("writes after the kill", Duration::from_secs(15), || {
        (acked.lock().unwrap().len() >= before + 30).then_some(())
    });
    let takeover = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let failures = writer.join().unwrap();
    eprintln!(
        "leader {old} killed; new leader {new}; writes flowing again after {takeover:?}; {failures} writes failed"
    );
    assert!(takeover < Duration::from_secs(15));
    // No acknowledged write is lost (strong reads, through the survivors).
    let acked = acked.lock().unwrap().clone();
    let ids: Vec<u64> = acked.iter().map(|a| a.0).collect();
    for i in [via, 3 - via - victim] {
        let got = c.ok(
            i,
            "POST",
            "/collections/c/points?consistency=strong",
            json!({"ids": ids}),
        );
        let found: BTreeSet<u64> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        let missing: Vec<_> = ids.iter().filter(|i| !found.contains(i)).collect();
        assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    }
    // The old node restarts and catches up: its replicas reach the others' applied indexes and
    // a session read through it with the last token sees every acknowledged write.
    c.restart(victim);
    // The session's token: every acknowledged write's token merged, as a client keeping one
    // session token does (each write answer covers only the shard groups it wrote).
    let token = shoal::router::ConsistencyToken::decode_all(acked.iter().map(|a| a.1.as_str()))
        .expect("tokens the server issued decode")
        .expect("at least one write was acknowledged")
        .encode();
    let token = &token;
    let v = wait_for(
        "the restarted node to serve the session",
        Duration::from_secs(30),
        || {
            let (st, v) = c.call(
                victim,
                "POST",
                &format!("/collections/c/points?consistency=session&consistency_token={token}"),
                Some(json!({"ids": ids})),
            );
            (st == 200).then_some(v)
        },
    );
    assert_eq!(v["result"].as_array().unwrap().len(), ids.len());
    // Every replica converges on the same points; a write whose answer was lost with the
    // leader may have been applied too, so the total is at least the acknowledged ones.
    let per_shard = converged(&c, "c", Duration::from_secs(30));
    let (_, v) = count(&c, victim, "c", "consistency=strong");
    let total = v["result"]["count"].as_u64().unwrap();
    assert_eq!(per_shard.iter().sum::<u64>(), total);
    assert!(total >= 30 + ids.len() as u64);
}

#[test]
fn a_cut_off_node_takes_no_writes_and_serves_nothing_stale() {
    let c = TestCluster::start(3, &[]);
    create(&c, "c", 3, 3, "hash", "Dot");
    let t0 = upsert(&c, 0, "c", 0..60);
    converged(&c, "c", Duration::from_secs(20));
    let cut = 2;
    c.partition(cut);
    // The majority keeps accepting writes (after elections for the groups the cut node led).
    let token = wait_for(
        "a write through the majority",
        Duration::from_secs(20),
        || {
            let points: Vec<Value> = (60..90)
                .map(|i| json!({"id": i, "vector": vector(i)}))
                .collect();
            let (st, v) = c.call(
                0,
                "PUT",
                "/collections/c/points?wait=true",
                Some(json!({"points": points})),
            );
            (st == 200).then(|| {
                v["result"]["consistency_token"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        },
    );
    let (st, v) = count(&c, 1, "c", "consistency=strong");
    assert_eq!((st, v["result"]["count"].as_u64()), (200, Some(90)), "{v}");
    // Through the cut node: writes fail; strong and session reads fail rather than answer stale.
    let started = Instant::now();
    let (st, v) = c.call(
        cut,
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": [{"id": 500, "vector": vector(500)}]})),
    );
    assert_eq!(st, 503, "a write through the cut node: {v}");
    eprintln!(
        "write through the cut node failed after {:?}",
        started.elapsed()
    );
    let (st, v) = count(&c, cut, "c", "consistency=strong");
    assert_eq!(st, 503, "strong read on the cut node: {v}");
    assert!(
        v["status"]["error"].as_str().unwrap().contains("shard"),
        "{v}"
    );
    let (st, v) = count(&c, cut, "c", &format!("consistency_token={token}"));
    assert_eq!(st, 503, "session read on the cut node: {v}");
    // Its older token is satisfiable locally: the session read answers (all 60 first points).
    let (st, v) = count(
        &c,
        cut,
        "c",
        &format!("consistency=session&consistency_token={t0}"),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v["result"]["count"].as_u64().unwrap() >= 60);
    // Session reads elsewhere see the caller's own writes at once.
    for via in 0..2 {
        let t = upsert(
            &c,
            via,
            "c",
            (100 + via as u64 * 10)..(110 + via as u64 * 10),
        );
        let (st, v) = count(&c, 1 - via, "c", &format!("consistency_token={t}"));
        assert_eq!(st, 200, "{v}");
        let got = c.ok(
            1 - via,
            "POST",
            &format!("/collections/c/points?consistency_token={t}"),
            json!({"ids": (100 + via as u64 * 10..110 + via as u64 * 10).collect::<Vec<_>>()}),
        );
        assert_eq!(got.as_array().unwrap().len(), 10);
    }
    // allow_partial: the cut node answers from what it can reach, flagged.
    let (st, v) = query(
        &c,
        cut,
        "c",
        json!({"query": vector(3), "limit": 5, "allow_partial": true}),
        "consistency=strong",
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["partial"], true, "{v}");
    assert!(!v["missing_shards"].as_array().unwrap().is_empty());
    // Healed, it converges and serves the session with the newest token.
    c.heal();
    let v = wait_for(
        "the healed node to catch up",
        Duration::from_secs(30),
        || {
            let (st, v) = count(
                &c,
                cut,
                "c",
                &format!("consistency=session&consistency_token={token}"),
            );
            (st == 200).then_some(v)
        },
    );
    assert_eq!(v["result"]["count"], 110);
    let per_shard = converged(&c, "c", Duration::from_secs(30));
    assert_eq!(per_shard.iter().sum::<u64>(), 110);
}

#[test]
fn concurrent_upserts_of_one_id_leave_it_in_exactly_one_shard() {
    let c = TestCluster::start(3, &[]);
    create(&c, "c", 3, 3, "centroid", "Euclid");
    // Train the placement on well-spread points.
    upsert(&c, 0, "c", 0..400);
    let ids: Vec<u64> = (10_000..10_030).collect();
    // Three routers write each id at once, each with a vector from a different cluster.
    let threads: Vec<_> = (0..3usize)
        .map(|r| {
            let api = c.nodes[r].api.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                for id in ids {
                    // Router r writes a vector of cluster r: a different shard's territory.
                    let v: Vec<f32> = vector(r as u64)
                        .iter()
                        .map(|x| x + id as f32 * 1e-4)
                        .collect();
                    let body = serde_json::to_vec(
                        &json!({"points": [{"id": id, "vector": v, "payload": {"router": r}}]}),
                    )
                    .unwrap();
                    let (st, out) = common::request(
                        &api,
                        "PUT",
                        "/collections/c/points?wait=true",
                        Some(&body),
                    )
                    .unwrap();
                    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&out));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Once writes settle: each id lives in exactly one shard, and every replica agrees.
    let per_shard = converged(&c, "c", Duration::from_secs(30));
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        400 + ids.len() as u64,
        "{per_shard:?}"
    );
    let (st, v) = count(&c, 2, "c", "consistency=strong");
    assert_eq!((st, v["result"]["count"].as_u64()), (200, Some(430)));
    // Every router reads the same winner for every id.
    let mut winners: BTreeMap<u64, Value> = BTreeMap::new();
    for via in 0..3 {
        let got = c.ok(
            via,
            "POST",
            "/collections/c/points?consistency=strong",
            json!({"ids": ids, "with_vector": true}),
        );
        for p in got.as_array().unwrap() {
            let id = p["id"].as_u64().unwrap();
            let prev = winners.insert(id, p.clone());
            if let Some(prev) = prev {
                assert_eq!(prev, *p, "routers disagree on id {id}");
            }
        }
    }
    assert_eq!(winners.len(), ids.len());
}

/// Named vectors on three nodes: a replica killed while writes land catches up every lane, and
/// exact searches of each vector through each node (session reads, served by the node's own
/// replica once it has the writes) equal brute force over all the points.
#[test]
fn a_follower_catches_up_every_named_vector() {
    let mut c = TestCluster::start(3, &[]);
    let body = json!({
        "vectors": {"a": {"size": DIM, "distance": "Euclid"},
                    "b": {"size": DIM, "distance": "Cosine"}},
        "shard_number": 1,
        "replication_factor": 3,
    });
    assert_eq!(c.ok(0, "PUT", "/collections/nv", body), json!(true));
    let b_of = |i: u64| vector(i + 1_000_003);
    let write = |c: &TestCluster, ids: std::ops::Range<u64>| -> String {
        let points: Vec<Value> = ids
            .map(|i| json!({"id": i, "vector": {"a": vector(i), "b": b_of(i)}, "payload": {"m": i % 5}}))
            .collect();
        let v = c.ok(
            0,
            "PUT",
            "/collections/nv/points?wait=true",
            json!({ "points": points }),
        );
        v["consistency_token"].as_str().expect("a token").to_owned()
    };
    write(&c, 0..300);
    let victim = 2;
    c.kill9(victim);
    write(&c, 300..450);
    let token = write(&c, 450..600);
    c.restart(victim);
    let unit = |v: Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    for (using, q) in [("a", vector(7_777)), ("b", b_of(8_888))] {
        let mut model: Vec<(f32, u64)> = (0..600)
            .map(|i| {
                let d = if using == "a" {
                    vector(i)
                        .iter()
                        .zip(&q)
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum()
                } else {
                    let (v, q) = (unit(b_of(i)), unit(q.clone()));
                    -v.iter().zip(&q).map(|(x, y)| x * y).sum::<f32>()
                };
                (d, i)
            })
            .collect();
        model.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let want: Vec<u64> = model.iter().take(10).map(|m| m.1).collect();
        for node in 0..3 {
            let v = wait_for(
                "a session read through the node",
                Duration::from_secs(30),
                || {
                    let (st, v) = query(
                        &c,
                        node,
                        "nv",
                        json!({"query": q, "using": using, "limit": 10,
                               "params": {"exact": true}}),
                        &format!("consistency=session&consistency_token={token}"),
                    );
                    (st == 200).then_some(v)
                },
            );
            let got: Vec<u64> = hits(&v).into_iter().map(|h| h.0).collect();
            assert_eq!(got, want, "vector {using} through node {node}");
        }
    }
    // Every replica holds every point.
    assert_eq!(converged(&c, "nv", Duration::from_secs(30)), vec![600]);
}
