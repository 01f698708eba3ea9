//! The distance matrix (`search/matrix/pairs`, `.../offsets`), Qdrant's `GET /cluster` fields,
//! `GET /cluster/telemetry` and `POST /cluster/recover`, over REST against the real binary.
//!
//! The matrix is checked against a brute-force model of the points the test wrote: for the ids
//! the server sampled, every neighbour list must be exactly the model's nearest other sampled
//! ids (distance, then id) with the model's scores; the sample must pass the filter, hold
//! distinct ids, be the whole matching set when `sample` exceeds it, and differ between calls.
//! Collections have several shards (on one node, and on three nodes), so every sample is
//! merged across shards. The cluster fields are checked against what the cluster must show
//! (one metadata leader all nodes agree on, commit growing with metadata writes, send failures
//! appearing for a cut-off peer and clearing once healed).

mod common;

use common::Server;
use common::cluster::{TestCluster, wait_for};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const N: u64 = 300;

/// Sampled id → its neighbours `(id, score)`, best first.
type Rows = BTreeMap<u64, Vec<(u64, f32)>>;

/// Integer-valued vectors: squared distances are exact in `f32`, ties exact too (broken by id
/// on both sides).
fn vector(i: u64) -> Vec<f32> {
    vec![
        (i % 13) as f32,
        ((i * 7) % 11) as f32,
        (i % 4) as f32,
        ((i / 3) % 5) as f32,
    ]
}

fn kind(i: u64) -> u64 {
    i % 3
}

fn fill(upsert: impl Fn(&str, Value), create: impl Fn(Value), shards: u32) {
    create(json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": shards}));
    let points: Vec<Value> = (0..N)
        .map(|i| json!({"id": i, "vector": vector(i), "payload": {"kind": kind(i)}}))
        .collect();
    upsert("?wait=true", json!({ "points": points }));
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The model: for `sampled`, each id's `limit` nearest other sampled ids with Euclid scores.
fn model(sampled: &[u64], limit: usize) -> Rows {
    sampled
        .iter()
        .map(|&a| {
            let mut row: Vec<(f32, u64)> = sampled
                .iter()
                .filter(|&&b| b != a)
                .map(|&b| (l2(&vector(a), &vector(b)), b))
                .collect();
            row.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            row.truncate(limit);
            (a, row.into_iter().map(|(d, b)| (b, d.sqrt())).collect())
        })
        .collect()
}

/// `{"pairs": ...}` as rows: a → [(b, score)] in answer order, and the sampled ids in order.
fn pairs_rows(r: &Value) -> (Vec<u64>, Rows) {
    let mut order = Vec::new();
    let mut rows = Rows::new();
    for p in r["pairs"].as_array().unwrap() {
        let a = p["a"].as_u64().unwrap();
        if order.last() != Some(&a) {
            assert!(!order.contains(&a), "pairs of {a} are not contiguous: {r}");
            order.push(a);
        }
        rows.entry(a).or_default().push((
            p["b"].as_u64().unwrap(),
            p["score"].as_f64().unwrap() as f32,
        ));
    }
    (order, rows)
}

/// `{"ids", "offsets_row", "offsets_col", "scores"}` as rows.
fn offsets_rows(r: &Value) -> (Vec<u64>, Rows) {
    let ids: Vec<u64> = r["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let col = |k: &str| -> Vec<usize> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let (rows_i, cols_i) = (col("offsets_row"), col("offsets_col"));
    let scores: Vec<f32> = r["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(rows_i.len(), cols_i.len());
    assert_eq!(rows_i.len(), scores.len());
    let mut rows = Rows::new();
    for k in 0..scores.len() {
        rows.entry(ids[rows_i[k]])
            .or_default()
            .push((ids[cols_i[k]], scores[k]));
    }
    (ids, rows)
}

/// Every sampled id distinct and passing `keep`; every row exactly the model's.
fn check_against_model(sampled: &[u64], rows: &Rows, limit: usize, keep: impl Fn(u64) -> bool) {
    let set: BTreeSet<u64> = sampled.iter().copied().collect();
    assert_eq!(set.len(), sampled.len(), "sampled ids repeat: {sampled:?}");
    for &id in sampled {
        assert!(id < N && keep(id), "id {id} should not have been sampled");
    }
    let want = model(sampled, limit);
    for (a, row) in &want {
        let got = rows.get(a).cloned().unwrap_or_default();
        let got_ids: Vec<u64> = got.iter().map(|p| p.0).collect();
        let want_ids: Vec<u64> = row.iter().map(|p| p.0).collect();
        assert_eq!(got_ids, want_ids, "neighbours of {a} among {sampled:?}");
        for ((_, g), (_, w)) in got.iter().zip(row) {
            assert!((g - w).abs() < 1e-4, "score of {a}: {g} vs {w}");
        }
    }
    assert!(
        rows.keys().all(|a| set.contains(a)),
        "a row for an unsampled id"
    );
}

fn matrix_checks(call: &dyn Fn(&str, Value) -> (u16, Value)) {
    let ok = |kind: &str, body: Value| {
        let (s, v) = call(kind, body.clone());
        assert_eq!(s, 200, "{kind} {body}: {v}");
        v["result"].clone()
    };
    // Pairs and offsets, no filter: 40 of 300 points, 5 neighbours each.
    let mut samples = Vec::new();
    for _ in 0..3 {
        let (order, rows) = pairs_rows(&ok("pairs", json!({"sample": 40, "limit": 5})));
        assert_eq!(order.len(), 40);
        check_against_model(&order, &rows, 5, |_| true);
        samples.push(order.iter().copied().collect::<BTreeSet<u64>>());
        let (ids, rows) = offsets_rows(&ok("offsets", json!({"sample": 40, "limit": 5})));
        assert_eq!(ids.len(), 40);
        check_against_model(&ids, &rows, 5, |_| true);
        samples.push(ids.iter().copied().collect());
    }
    // A new random sample each call (six samples of 40 out of 300 all equal: impossible).
    assert!(
        samples.iter().any(|s| *s != samples[0]),
        "the same sample every call"
    );
    // Every shard contributes: 60 samples of 40 points cover points of every shard; with
    // sample = N, the whole collection is the sample.
    let (ids, rows) = offsets_rows(&ok("offsets", json!({"sample": N, "limit": 3})));
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<u64>>(),
        (0..N).collect()
    );
    check_against_model(&ids, &rows, 3, |_| true);
    // Defaults: sample 10, limit 3.
    let (order, rows) = pairs_rows(&ok("pairs", json!({})));
    assert_eq!(order.len(), 10);
    check_against_model(&order, &rows, 3, |_| true);
    // With a filter: only kind 1 is sampled.
    let filter = json!({"must": [{"key": "kind", "match": {"value": 1}}]});
    for endpoint in ["pairs", "offsets"] {
        let r = ok(
            endpoint,
            json!({"sample": 25, "limit": 4, "filter": filter.clone()}),
        );
        let (ids, rows) = if endpoint == "pairs" {
            pairs_rows(&r)
        } else {
            offsets_rows(&r)
        };
        assert_eq!(ids.len(), 25);
        check_against_model(&ids, &rows, 4, |i| kind(i) == 1);
    }
    // Fewer matches than `sample`: exactly the matching points; `limit` beyond them: all others.
    let few: Vec<u64> = vec![3, 17, 40, 41, 99, 150, 151, 222, 280, 299];
    let r = ok(
        "offsets",
        json!({"sample": 50, "limit": 20, "filter": {"must": [{"has_id": few.clone()}]}}),
    );
    let (ids, rows) = offsets_rows(&r);
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<u64>>(),
        few.iter().copied().collect()
    );
    check_against_model(&ids, &rows, 20, |i| few.contains(&i));
    assert!(rows.values().all(|r| r.len() == few.len() - 1));
    // One match: no pairs.
    let r = ok(
        "pairs",
        json!({"sample": 5, "filter": {"must": [{"has_id": [7]}]}}),
    );
    assert_eq!(r["pairs"], json!([]));
    let r = ok(
        "offsets",
        json!({"sample": 5, "filter": {"must": [{"has_id": [7]}]}}),
    );
    assert_eq!(r["ids"], json!([7]));
    assert_eq!(r["scores"], json!([]));
}

fn bad_matrix_inputs(call: &dyn Fn(&str, Value) -> (u16, Value)) {
    for (body, needle) in [
        (json!({"sample": 1}), "sample = 1"),
        (json!({"sample": 0}), "sample = 0"),
        (json!({"sample": 1001}), "MAX_MATRIX_SAMPLE = 1000"),
        (json!({"limit": 0}), "limit = 0"),
        (json!({"sample": -3}), "invalid JSON body"),
        (json!({"sample": "ten"}), "invalid JSON body"),
        (json!({"using": "image"}), "\"image\""),
        (json!({"shard_key": "eu"}), "shard_key"),
        (
            json!({"filter": {"must": [{"key": "kind", "colour": 1}]}}),
            "colour",
        ),
    ] {
        for endpoint in ["pairs", "offsets"] {
            let (status, v) = call(endpoint, body.clone());
            assert_eq!(status, 400, "{endpoint} {body}: {v}");
            let msg = v["status"]["error"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{endpoint} {body}: {msg}");
        }
    }
}

#[test]
fn distance_matrix_matches_brute_force_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    fill(
        |q, body| {
            s.ok("PUT", &format!("/collections/m/points{q}"), body);
        },
        |body| {
            s.ok("PUT", "/collections/m", body);
        },
        3,
    );
    let call = |endpoint: &str, body: Value| {
        s.call(
            "POST",
            &format!("/collections/m/points/search/matrix/{endpoint}"),
            Some(body),
        )
    };
    matrix_checks(&call);
    bad_matrix_inputs(&call);
    // Through an alias, with a read consistency in the query string.
    s.ok(
        "POST",
        "/collections/aliases",
        json!({"actions": [{"create_alias": {"collection_name": "m", "alias_name": "mm"}}]}),
    );
    let r = s.ok(
        "POST",
        "/collections/mm/points/search/matrix/pairs?consistency=strong",
        json!({"sample": 12, "limit": 2}),
    );
    let (order, rows) = pairs_rows(&r);
    check_against_model(&order, &rows, 2, |_| true);
    // Unknown collection: 404 in Qdrant's shape.
    let (status, v) = s.call(
        "POST",
        "/collections/nope/points/search/matrix/pairs",
        Some(json!({})),
    );
    assert_eq!(status, 404, "{v}");
    assert!(v["status"]["error"].as_str().unwrap().contains("nope"));
    // sample × dim capped: 1000 vectors of 8192 components are refused by name.
    s.ok(
        "PUT",
        "/collections/wide",
        json!({"vectors": {"size": 8192, "distance": "Dot"}}),
    );
    let (status, v) = s.call(
        "POST",
        "/collections/wide/points/search/matrix/offsets",
        Some(json!({"sample": 1000})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["status"]["error"]
            .as_str()
            .unwrap()
            .contains("MAX_MATRIX_FLOATS"),
        "{v}"
    );
    // Cosine: scores are cosine similarities of the vectors as given.
    s.ok(
        "PUT",
        "/collections/cos",
        json!({"vectors": {"size": 3, "distance": "Cosine"}, "shard_number": 2}),
    );
    let cv = |i: u64| -> Vec<f32> {
        vec![
            1.0 + (i % 5) as f32,
            (i % 7) as f32 - 3.0,
            0.5 * (i % 3) as f32,
        ]
    };
    let points: Vec<Value> = (0..60).map(|i| json!({"id": i, "vector": cv(i)})).collect();
    s.ok(
        "PUT",
        "/collections/cos/points?wait=true",
        json!({ "points": points }),
    );
    let r = s.ok(
        "POST",
        "/collections/cos/points/search/matrix/pairs",
        json!({"sample": 60, "limit": 3}),
    );
    let cos = |a: &[f32], b: &[f32]| {
        let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        d / (n(a) * n(b))
    };
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 180);
    for p in pairs {
        let (a, b) = (p["a"].as_u64().unwrap(), p["b"].as_u64().unwrap());
        let want = cos(&cv(a), &cv(b));
        let got = p["score"].as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() < 1e-4,
            "cos({a},{b}) = {want}, got {got}"
        );
        // Best first: nothing outside the row scores higher than its last pair.
        let row: Vec<&Value> = pairs.iter().filter(|q| q["a"] == p["a"]).collect();
        let worst = row
            .iter()
            .map(|q| q["score"].as_f64().unwrap() as f32)
            .fold(f32::INFINITY, f32::min);
        let inside: BTreeSet<u64> = row.iter().map(|q| q["b"].as_u64().unwrap()).collect();
        for c in (0..60).filter(|c| *c != a && !inside.contains(c)) {
            assert!(
                cos(&cv(a), &cv(c)) <= worst + 1e-4,
                "{c} beats the row of {a}"
            );
        }
    }
}

/// Qdrant's `ClusterStatus` fields, real, and shoal's own view still there.
fn check_qdrant_fields(v: &Value, me: u64) {
    assert_eq!(v["status"], "enabled", "{v}");
    assert_eq!(v["peer_id"], me);
    assert_eq!(v["node_id"], me);
    let ri = &v["raft_info"];
    assert_eq!(ri["term"], v["metadata"]["term"], "{v}");
    assert!(ri["term"].as_u64().unwrap() >= 1);
    assert!(ri["commit"].as_u64().unwrap() >= 1);
    assert!(ri["pending_operations"].as_u64().is_some());
    assert_eq!(ri["leader"], v["metadata"]["leader"]);
    assert!(ri["is_voter"].is_boolean());
    let cts = &v["consensus_thread_status"];
    assert_eq!(cts["consensus_thread_status"], "working", "{v}");
    let at = cts["last_update"].as_str().unwrap();
    assert!(
        at.ends_with('Z') && at.len() == 27 && at.starts_with("20"),
        "{at}"
    );
    assert!(v["message_send_failures"].is_object());
    for m in v["members"].as_array().unwrap() {
        let id = m["id"].as_u64().unwrap().to_string();
        let uri = v["peers"][&id]["uri"].as_str().unwrap();
        let addr = match m["internal_addr"].as_str().unwrap() {
            // A cluster of one has no internal port: its REST address.
            "local" => m["api_addr"].as_str().unwrap(),
            a => a,
        };
        assert_eq!(uri, format!("http://{addr}/"));
    }
    assert!(v["collections"].is_object() && v["metadata"]["voters"].is_array());
}

#[test]
fn cluster_status_telemetry_and_recover_on_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let v = s.ok("GET", "/cluster", Value::Null);
    check_qdrant_fields(&v, 1);
    assert_eq!(v["raft_info"]["role"], "Leader");
    assert_eq!(v["raft_info"]["leader"], 1);
    assert_eq!(v["raft_info"]["is_voter"], true);
    assert_eq!(v["message_send_failures"], json!({}));
    let commit = v["raft_info"]["commit"].as_u64().unwrap();
    // A metadata write (a collection) moves the commit index.
    fill(
        |q, body| {
            s.ok("PUT", &format!("/collections/t/points{q}"), body);
        },
        |body| {
            s.ok("PUT", "/collections/t", body);
        },
        2,
    );
    let v = s.ok("GET", "/cluster", Value::Null);
    check_qdrant_fields(&v, 1);
    assert!(v["raft_info"]["commit"].as_u64().unwrap() > commit, "{v}");
    assert_eq!(v["raft_info"]["pending_operations"], 0);
    // Telemetry: the collection's shards and points, this node responsive with its details.
    let t = s.ok("GET", "/cluster/telemetry?details_level=3", Value::Null);
    let c = &t["collections"]["t"];
    assert_eq!(c["id"], "t");
    let shards = c["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let mut points = 0;
    for (i, sh) in shards.iter().enumerate() {
        assert_eq!(sh["id"], i as u64);
        let r = &sh["replicas"][0];
        assert_eq!(r["peer_id"], 1);
        assert_eq!(r["state"], "Active");
        assert!(["green", "yellow"].contains(&r["status"].as_str().unwrap()));
        points += r["num_points"].as_u64().unwrap();
    }
    assert_eq!(points, N);
    assert_eq!(t["cluster"]["enabled"], true);
    assert_eq!(t["cluster"]["number_of_peers"], 1);
    let me = &t["cluster"]["peers"]["1"];
    assert_eq!(me["responsive"], true);
    assert_eq!(me["details"]["role"], "Leader");
    assert_eq!(me["details"]["term"], v["raft_info"]["term"]);
    assert_eq!(
        me["details"]["consensus_thread_status"]["consensus_thread_status"],
        "working"
    );
    // Recover: the node's Raft storage runs, so it answers true at once.
    assert_eq!(s.ok("POST", "/cluster/recover", Value::Null), true);
    let (status, _) = s.call("GET", "/cluster/recover", None);
    assert_eq!(status, 405);
}

#[test]
fn three_nodes_matrix_and_consensus_fields() {
    let c = TestCluster::start(3, &[]);
    c.ok(
        0,
        "PUT",
        "/collections/m",
        json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 3, "replication_factor": 1}),
    );
    let points: Vec<Value> = (0..N)
        .map(|i| json!({"id": i, "vector": vector(i), "payload": {"kind": kind(i)}}))
        .collect();
    c.ok(
        1,
        "PUT",
        "/collections/m/points?wait=true",
        json!({ "points": points }),
    );
    // The three shards sit on different nodes: each node's sample spans them all.
    for i in 0..3 {
        let call = |endpoint: &str, body: Value| {
            c.call(
                i,
                "POST",
                &format!("/collections/m/points/search/matrix/{endpoint}"),
                Some(body),
            )
        };
        let (status, v) = call("offsets", json!({"sample": N, "limit": 2}));
        assert_eq!(status, 200, "{v}");
        let (ids, rows) = offsets_rows(&v["result"]);
        assert_eq!(
            ids.iter().copied().collect::<BTreeSet<u64>>(),
            (0..N).collect()
        );
        check_against_model(&ids, &rows, 2, |_| true);
        let (status, v) = call(
            "pairs",
            json!({"sample": 30, "limit": 4, "filter": {"must": [{"key": "kind", "match": {"value": 2}}]}}),
        );
        assert_eq!(status, 200, "{v}");
        let (order, rows) = pairs_rows(&v["result"]);
        assert_eq!(order.len(), 30);
        check_against_model(&order, &rows, 4, |i| kind(i) == 2);
    }
    // One metadata leader, the same term and leader on every node; the others follow.
    let views: Vec<Value> = (0..3).map(|i| c.status(i)).collect();
    let leader = views[0]["raft_info"]["leader"].as_u64().unwrap();
    for (i, v) in views.iter().enumerate() {
        check_qdrant_fields(v, c.nodes[i].id);
        assert_eq!(v["raft_info"]["leader"], leader);
        assert_eq!(v["raft_info"]["term"], views[0]["raft_info"]["term"]);
        assert_eq!(v["raft_info"]["is_voter"], true);
        let role = if c.nodes[i].id == leader {
            "Leader"
        } else {
            "Follower"
        };
        assert_eq!(v["raft_info"]["role"], role, "{v}");
        assert_eq!(v["peers"].as_object().unwrap().len(), 3);
    }
    // Cut a follower off: the leader's sends to it fail and are counted under its address;
    // telemetry on the leader shows it unresponsive. Healed, the failures clear.
    let li = c.index_of(leader);
    let fi = (0..3).find(|&i| i != li).unwrap();
    let addr = c.nodes[fi].internal.clone();
    c.partition(fi);
    let failures = wait_for(
        "send failures to the cut-off node",
        Duration::from_secs(20),
        || {
            let v = c.status(li);
            let f = &v["message_send_failures"][&addr];
            (f["count"].as_u64().unwrap_or(0) >= 1).then(|| f.clone())
        },
    );
    assert!(!failures["latest_error"].as_str().unwrap().is_empty());
    assert!(
        failures["latest_error_timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let t = c.ok(li, "GET", "/cluster/telemetry", Value::Null);
    let fid = c.nodes[fi].id.to_string();
    assert_eq!(t["cluster"]["peers"][&fid]["responsive"], false, "{t}");
    assert_eq!(
        t["cluster"]["peers"][&leader.to_string()]["responsive"],
        true
    );
    c.heal();
    wait_for("send failures cleared", Duration::from_secs(20), || {
        c.status(li)["message_send_failures"]
            .as_object()
            .unwrap()
            .is_empty()
            .then_some(())
    });
}

/// `get_optimizations`: index builds of sealed segments show as completed jobs with the rows
/// they read, the idle sealed segments hold exactly the indexed points, and the UUIDs name the
/// collection's shard groups.
#[test]
fn optimizations_report_the_builds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.ok(
        "PUT",
        "/collections/o",
        json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 2,
               "ivf_pq_config": {"nlist": 4, "seal_threshold": 64}}),
    );
    let empty = s.ok("GET", "/collections/o/optimizations", Value::Null);
    assert_eq!(empty["running"], json!([]));
    assert_eq!(empty["summary"]["idle_segments"], 0);
    assert!(empty.get("completed").is_none() && empty.get("queued").is_none());
    for chunk in 0..6u64 {
        let points: Vec<Value> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| json!({"id": i, "vector": vector(i)}))
            .collect();
        s.ok(
            "PUT",
            "/collections/o/points?wait=true",
            json!({ "points": points }),
        );
    }
    // Every build done: nothing runs, and the idle sealed segments hold the indexed points.
    let (o, indexed) = wait_for("builds finished", Duration::from_secs(60), || {
        let o = s.ok(
            "GET",
            "/collections/o/optimizations?with=queued,completed,idle_segments",
            Value::Null,
        );
        let info = s.ok("GET", "/collections/o", Value::Null);
        let indexed = info["indexed_vectors_count"].as_u64().unwrap_or(0);
        (o["running"] == json!([]) && indexed > 0 && info["status"] == "green")
            .then_some((o, indexed))
    });
    let idle = o["idle_segments"].as_array().unwrap();
    let idle_points: u64 = idle
        .iter()
        .map(|g| g["points_count"].as_u64().unwrap())
        .sum();
    assert_eq!(idle_points, indexed, "{o}");
    assert_eq!(o["summary"]["idle_segments"], idle.len());
    let completed = o["completed"].as_array().unwrap();
    let builds: Vec<&Value> = completed
        .iter()
        .filter(|j| j["optimizer"] == "index_build")
        .collect();
    assert!(!builds.is_empty(), "{o}");
    let groups: BTreeSet<u64> = s.ok("GET", "/cluster", Value::Null)["collections"]["o"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sh| sh["group"].as_u64().unwrap())
        .collect();
    let group_of = |uuid: &str| u64::from_str_radix(&uuid.replace('-', "")[..16], 16).unwrap();
    for j in &builds {
        assert_eq!(j["status"], "done");
        let p = &j["progress"];
        assert!(p["total"].as_u64().unwrap() >= 64, "{j}");
        assert_eq!(p["done"], p["total"]);
        assert!(p["started_at"].as_str().unwrap() <= p["finished_at"].as_str().unwrap());
        assert!(p["duration_sec"].as_f64().unwrap() >= 0.0);
        // An index build keeps its segment: the job's UUID is its one segment's.
        assert_eq!(j["segments"].as_array().unwrap().len(), 1);
        assert_eq!(j["segments"][0]["uuid"], j["uuid"]);
        assert!(groups.contains(&group_of(j["uuid"].as_str().unwrap())));
    }
    for g in idle {
        assert!(groups.contains(&group_of(g["uuid"].as_str().unwrap())));
    }
    // The queue is what the merge policy would start next (empty at rest) and the summary
    // counts it.
    assert_eq!(
        o["summary"]["queued_optimizations"],
        o["queued"].as_array().unwrap().len()
    );
    // completed_limit caps the list (and implies `completed`).
    let one = s.ok(
        "GET",
        "/collections/o/optimizations?completed_limit=1",
        Value::Null,
    );
    assert_eq!(one["completed"].as_array().unwrap().len(), 1);
    assert_eq!(one["completed"][0], completed[0]);
    let (status, v) = s.call("GET", "/collections/o/optimizations?with=history", None);
    assert_eq!(status, 400, "{v}");
    assert!(v["status"]["error"].as_str().unwrap().contains("history"));
    let (status, _) = s.call("GET", "/collections/none/optimizations", None);
    assert_eq!(status, 404);
}
