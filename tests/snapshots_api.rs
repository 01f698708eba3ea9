//! Qdrant's snapshots API over REST against a model: a collection with payloads, a payload index,
//! deletions and sealed IVF-PQ segments is snapshotted, deleted and recovered (from a `file://`
//! location and from the server's own download URL), and every answer — `exact` queries,
//! counts with and without filters, retrieve with payloads and vectors, the payload schema —
//! equals the original's. Shard snapshots restore one shard while the other keeps its changes;
//! full snapshots are created, listed, downloaded and deleted; snapshots survive a restart; every
//! bad input is a 4xx with Qdrant's JSON error.

mod common;

use common::Server;
use serde_json::{Value, json};
use shoal::cluster::placement::HashRing;
use shoal::shard::PointId;
use std::collections::BTreeMap;

const DIM: usize = 8;
const N: u64 = 500;

fn vector(i: u64) -> Vec<f32> {
    // Deterministic, spread out, no two equal.
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn payload(i: u64, round: u32) -> Value {
    json!({"group": i % 7, "tag": format!("t{}-{round}", i % 3), "price": (i * 37 % 101) as f64 / 4.0})
}

fn create(s: &Server, name: &str, shards: u32) {
    s.ok(
        "PUT",
        &format!("/collections/{name}"),
        json!({"vectors": {"size": DIM, "distance": "Cosine"}, "shard_number": shards,
               "ivf_pq_config": {"nlist": 4, "seal_threshold": 100}}),
    );
}

fn upsert(s: &Server, name: &str, ids: impl Iterator<Item = u64>, round: u32) {
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(128) {
        let points: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": i, "vector": vector(*i), "payload": payload(*i, round)}))
            .collect();
        s.ok(
            "PUT",
            &format!("/collections/{name}/points?wait=true"),
            json!({ "points": points }),
        );
    }
}

/// Everything a client can observe of a collection's data, to compare two collections.
#[derive(Debug, PartialEq)]
struct Observed {
    count: u64,
    filtered_count: u64,
    points: BTreeMap<u64, (Vec<f64>, Value)>,
    queries: Vec<Vec<(u64, f64)>>,
    filtered_queries: Vec<Vec<u64>>,
    schema: Value,
    config: Value,
}

fn observe(s: &Server, name: &str) -> Observed {
    observe_with(&|m: &str, p: &str, b: Value| s.ok(m, p, b), name)
}

/// [`observe`] through any node: `ok(method, path, body)` answers a request's `result`.
fn observe_with(ok: &dyn Fn(&str, &str, Value) -> Value, name: &str) -> Observed {
    let s = Ok { ok };
    let count = s.ok(
        "POST",
        &format!("/collections/{name}/points/count"),
        json!({"exact": true}),
    )["count"]
        .as_u64()
        .unwrap();
    let filtered_count = s.ok(
        "POST",
        &format!("/collections/{name}/points/count"),
        json!({"filter": {"must": [{"key": "group", "match": {"value": 3}}]}}),
    )["count"]
        .as_u64()
        .unwrap();
    let ids: Vec<u64> = (0..N + 50).collect();
    let got = s.ok(
        "POST",
        &format!("/collections/{name}/points"),
        json!({"ids": ids, "with_payload": true, "with_vector": true}),
    );
    let points = got
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let v = p["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (p["id"].as_u64().unwrap(), (v, p["payload"].clone()))
        })
        .collect();
    let mut queries = Vec::new();
    let mut filtered_queries = Vec::new();
    for q in [3u64, 1000, 2001, 77] {
        let hits = s.ok(
            "POST",
            &format!("/collections/{name}/points/query"),
            json!({"query": vector(q), "limit": 10, "params": {"exact": true}}),
        );
        queries.push(
            hits["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    // Scores to 5 decimals: the recovered vectors are the stored (normalised)
                    // ones, normalised again on upsert, which may move the last bit.
                    let score = (h["score"].as_f64().unwrap() * 1e5).round() / 1e5;
                    (h["id"].as_u64().unwrap(), score)
                })
                .collect(),
        );
        let hits = s.ok(
            "POST",
            &format!("/collections/{name}/points/query"),
            json!({"query": vector(q), "limit": 10, "params": {"exact": true},
                   "filter": {"must": [{"key": "group", "match": {"value": 2}}]}}),
        );
        filtered_queries.push(
            hits["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_u64().unwrap())
                .collect(),
        );
    }
    let info = s.ok("GET", &format!("/collections/{name}"), Value::Null);
    let mut config = info["config"].clone();
    // The shards' Raft groups differ between two collections; nothing else may.
    if let Some(o) = config.as_object_mut() {
        o.remove("group_id");
    }
    Observed {
        count,
        filtered_count,
        points,
        queries,
        filtered_queries,
        schema: info["payload_schema"].clone(),
        config,
    }
}

/// A request function with [`Server::ok`]'s shape.
struct Ok<'a> {
    ok: &'a dyn Fn(&str, &str, Value) -> Value,
}

impl Ok<'_> {
    fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        (self.ok)(method, path, body)
    }
}

/// Asserts two observations are equal, naming the first difference (not printing both).
fn assert_same(got: &Observed, want: &Observed, what: &str) {
    assert_eq!(got.count, want.count, "{what}: count");
    assert_eq!(
        got.filtered_count, want.filtered_count,
        "{what}: filtered count"
    );
    let keys = |o: &Observed| o.points.keys().copied().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "{what}: point ids");
    for (id, (v, p)) in &want.points {
        let (gv, gp) = &got.points[id];
        assert_eq!(gp, p, "{what}: payload of point {id}");
        // Cosine vectors are stored normalised and normalised again when recovered, which may
        // move the last bit of a component.
        assert_eq!(gv.len(), v.len());
        for (a, b) in gv.iter().zip(v) {
            assert!(
                (a - b).abs() < 1e-6,
                "{what}: vector of point {id}: {gv:?} vs {v:?}"
            );
        }
    }
    assert_eq!(got.queries, want.queries, "{what}: exact queries");
    assert_eq!(
        got.filtered_queries, want.filtered_queries,
        "{what}: filtered queries"
    );
    assert_eq!(got.schema, want.schema, "{what}: payload schema");
    assert_eq!(got.config, want.config, "{what}: config");
}

/// A request that must fail with `status` and Qdrant's JSON error; returns the message.
fn refused(s: &Server, method: &str, path: &str, body: Option<Value>, status: u16) -> String {
    let (got, v) = s.call(method, path, body);
    assert_eq!(got, status, "{method} {path}: {v}");
    let msg = v["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {path}: no JSON error: {v}"))
        .to_owned();
    assert!(v["time"].is_number(), "{v}");
    msg
}

fn download(s: &Server, path: &str) -> Vec<u8> {
    let (status, body) = s.try_request("GET", path, None).unwrap();
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    shoal::storage::archive::hex(&sha2::Sha256::digest(bytes))
}

#[test]
fn collection_snapshot_recovers_to_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    create(&s, "c", 2);
    s.ok(
        "PUT",
        "/collections/c/index",
        json!({"field_name": "group", "field_schema": "integer"}),
    );
    upsert(&s, "c", 0..N, 0);
    s.ok(
        "POST",
        "/collections/c/points/delete",
        json!({"points": (0..N).step_by(9).collect::<Vec<_>>()}),
    );
    upsert(&s, "c", (1..N).step_by(10), 1);
    // Sealed segments get built (seal threshold 100): wait until the count is stable and the
    // collection has indexed points, so the snapshot holds segment files as well as rows.
    common::cluster::wait_for(
        "indexed segments",
        std::time::Duration::from_secs(60),
        || {
            let info = s.ok("GET", "/collections/c", Value::Null);
            (info["indexed_vectors_count"].as_u64().unwrap_or(0) > 0).then_some(())
        },
    );
    let original = observe(&s, "c");
    let live = (0..N).filter(|i| i % 9 != 0 || i % 10 == 1).count() as u64;
    assert_eq!(original.count, live);
    assert_eq!(original.points.len() as u64, live);
    assert!(
        original.schema["group"].is_object(),
        "{:?}",
        original.schema
    );

    // Create: a description with the file's size and SHA-256.
    let snap = s.ok("POST", "/collections/c/snapshots?wait=true", Value::Null);
    let name = snap["name"].as_str().unwrap().to_owned();
    assert!(
        name.starts_with("c-") && name.ends_with(".snapshot"),
        "{name}"
    );
    let checksum = snap["checksum"].as_str().unwrap().to_owned();
    assert_eq!(checksum.len(), 64);
    assert!(snap["creation_time"].as_str().unwrap().contains('T'));
    let bytes = download(&s, &format!("/collections/c/snapshots/{name}"));
    assert_eq!(bytes.len() as u64, snap["size"].as_u64().unwrap());
    assert_eq!(sha256_hex(&bytes), checksum);
    let file = dir.path().join("snapshots/c").join(&name);
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let listed = s.ok("GET", "/collections/c/snapshots", Value::Null);
    assert_eq!(listed, json!([snap]));

    // Writes after the snapshot are not in it.
    upsert(&s, "c", N..N + 20, 2);

    // Bad inputs, each a 4xx naming the problem; nothing changes.
    refused(&s, "POST", "/collections/nope/snapshots", None, 404);
    refused(&s, "GET", "/collections/nope/snapshots", None, 404);
    let m = refused(
        &s,
        "GET",
        "/collections/c/snapshots/none.snapshot",
        None,
        404,
    );
    assert!(m.contains("none.snapshot"), "{m}");
    refused(
        &s,
        "DELETE",
        "/collections/c/snapshots/none.snapshot",
        None,
        404,
    );
    let m = refused(
        &s,
        "GET",
        "/collections/c/snapshots/..%2F..%2Fcluster-state.bin",
        None,
        400,
    );
    assert!(m.contains("invalid snapshot name"), "{m}");
    refused(
        &s,
        "DELETE",
        "/collections/c/snapshots/..%2Fc%2F..",
        None,
        400,
    );
    refused(&s, "POST", "/collections/c/snapshots?wait=maybe", None, 400);
    let recover = |body: Value| Some(body);
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({"location": "file:///etc/passwd"})),
        400,
    );
    assert!(m.contains("/etc/passwd"), "{m}");
    let outside = format!(
        "file://{}/snapshots/../raft",
        dir.path().canonicalize().unwrap().display()
    );
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({ "location": outside })),
        400,
    );
    assert!(m.contains("snapshots directory"), "{m}");
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({"location": "ftp://example.com/x.snapshot"})),
        400,
    );
    assert!(m.contains("ftp://"), "{m}");
    let location = format!("file://{}", file.display());
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({"location": location, "checksum": "00".repeat(32)})),
        400,
    );
    assert!(m.contains("checksum mismatch"), "{m}");
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({"location": location, "priority": "replica"})),
        400,
    );
    assert!(m.contains("replica"), "{m}");
    refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({"location": location, "bogus": 1})),
        400,
    );
    refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({})),
        400,
    );
    // A file in the snapshots directory that is not a snapshot.
    let not_snapshot = format!("file://{}.checksum", file.display());
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({ "location": not_snapshot })),
        400,
    );
    assert!(m.contains("not a shoal snapshot"), "{m}");
    let m = refused(
        &s,
        "PUT",
        "/collections/bad%20name/snapshots/recover",
        recover(json!({ "location": location })),
        400,
    );
    assert!(m.contains("invalid collection name"), "{m}");
    assert_eq!(observe(&s, "c").count, original.count + 20);

    // Delete the collection, recover it from the file (with its checksum): the same answers.
    s.ok("DELETE", "/collections/c", Value::Null);
    let ok = s.ok(
        "PUT",
        "/collections/c/snapshots/recover?wait=true",
        json!({"location": location, "checksum": checksum, "priority": "snapshot"}),
    );
    assert_eq!(ok, json!(true));
    assert_same(&observe(&s, "c"), &original, "recovered");

    // Recovering over an existing collection replaces it (the 20 later points go again).
    upsert(&s, "c", N..N + 20, 2);
    s.ok(
        "PUT",
        "/collections/c/snapshots/recover",
        json!({ "location": location }),
    );
    assert_same(&observe(&s, "c"), &original, "recovered");

    // From the server's own download URL, into another name.
    let url = format!("http://{}/collections/c/snapshots/{name}", s.addr);
    s.ok(
        "PUT",
        "/collections/copy/snapshots/recover",
        json!({"location": url, "checksum": checksum.to_uppercase()}),
    );
    let mut copy = observe(&s, "copy");
    copy.config = original.config.clone();
    assert_same(&copy, &original, "copy");
    let m = refused(
        &s,
        "PUT",
        "/collections/copy/snapshots/recover",
        recover(
            json!({"location": format!("http://{}/collections/c/snapshots/gone.snapshot", s.addr)}),
        ),
        400,
    );
    assert!(m.contains("404"), "{m}");

    // A snapshot announced larger than the disk's free space is refused before it is written,
    // and nothing of it stays behind.
    let huge = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let huge_url = format!("http://{}/huge.snapshot", huge.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = huge.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = conn.read(&mut request);
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\nSHOALSNP");
    });
    let m = refused(
        &s,
        "PUT",
        "/collections/copy/snapshots/recover",
        recover(json!({ "location": huge_url })),
        413,
    );
    assert!(
        m.contains("1000000000000000000 bytes") && m.contains("room for"),
        "{m}"
    );
    server.join().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("download"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The snapshot survives a restart.
    s.terminate();
    let s = Server::start(dir.path(), &[]);
    let listed = s.ok("GET", "/collections/c/snapshots", Value::Null);
    assert_eq!(listed[0]["name"], json!(name));
    assert_eq!(listed[0]["checksum"], json!(checksum));
    s.ok("DELETE", "/collections/c", Value::Null);
    s.ok(
        "PUT",
        "/collections/c/snapshots/recover",
        json!({ "location": location }),
    );
    assert_same(&observe(&s, "c"), &original, "recovered");

    // Delete: gone from the list and the disk.
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("/collections/c/snapshots/{name}?wait=true"),
            Value::Null
        ),
        json!(true)
    );
    assert_eq!(
        s.ok("GET", "/collections/c/snapshots", Value::Null),
        json!([])
    );
    assert!(!file.exists());
    refused(
        &s,
        "GET",
        &format!("/collections/c/snapshots/{name}"),
        None,
        404,
    );
    let m = refused(
        &s,
        "PUT",
        "/collections/c/snapshots/recover",
        recover(json!({ "location": location })),
        400,
    );
    assert!(m.contains("no snapshot file"), "{m}");
}

#[test]
fn shard_snapshot_restores_one_shard_and_full_snapshots_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    create(&s, "h", 2);
    upsert(&s, "h", 0..300, 0);
    let before = observe(&s, "h");
    let ring = HashRing::new(2);
    let shard_of = |i: u64| ring.shard_of(&PointId::Num(i));

    let snap = s.ok("POST", "/collections/h/shards/1/snapshots", Value::Null);
    let name = snap["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("h-shard-1-"), "{name}");
    assert_eq!(
        s.ok("GET", "/collections/h/shards/1/snapshots", Value::Null),
        json!([snap])
    );
    assert_eq!(
        s.ok("GET", "/collections/h/shards/0/snapshots", Value::Null),
        json!([])
    );
    // Shard snapshots are not the collection's.
    assert_eq!(
        s.ok("GET", "/collections/h/snapshots", Value::Null),
        json!([])
    );
    let bytes = download(&s, &format!("/collections/h/shards/1/snapshots/{name}"));
    assert_eq!(sha256_hex(&bytes), snap["checksum"].as_str().unwrap());
    refused(&s, "POST", "/collections/h/shards/2/snapshots", None, 404);
    refused(&s, "GET", "/collections/h/shards/x/snapshots", None, 400);
    refused(
        &s,
        "GET",
        &format!("/collections/h/shards/0/snapshots/{name}"),
        None,
        404,
    );

    // Change both shards: new payloads for every point, some deleted, some added.
    upsert(&s, "h", 0..300, 1);
    s.ok(
        "POST",
        "/collections/h/points/delete",
        json!({"points": (0..300).step_by(4).collect::<Vec<_>>()}),
    );
    upsert(&s, "h", 300..340, 1);
    let changed = observe(&s, "h");

    let location = format!(
        "file://{}",
        dir.path()
            .join("snapshots/h/shards/1")
            .join(&name)
            .display()
    );
    // A shard snapshot is not a collection snapshot, and goes to its own shard only.
    let m = refused(
        &s,
        "PUT",
        "/collections/h/snapshots/recover",
        Some(json!({ "location": location })),
        400,
    );
    assert!(m.contains("shard snapshot"), "{m}");
    refused(
        &s,
        "PUT",
        "/collections/h/shards/0/snapshots/recover",
        Some(json!({ "location": location })),
        400,
    );
    refused(
        &s,
        "PUT",
        "/collections/h/shards/5/snapshots/recover",
        Some(json!({ "location": location })),
        404,
    );
    assert_eq!(
        s.ok(
            "PUT",
            "/collections/h/shards/1/snapshots/recover?wait=true",
            json!({"location": location, "checksum": snap["checksum"]}),
        ),
        json!(true)
    );
    // The model: shard 1's points as they were at the snapshot, shard 0's as they are now.
    let now = observe(&s, "h");
    let want: BTreeMap<u64, (Vec<f64>, Value)> = before
        .points
        .iter()
        .filter(|(id, _)| shard_of(**id) == 1)
        .chain(changed.points.iter().filter(|(id, _)| shard_of(**id) == 0))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(now.points.len(), want.len());
    for (id, (v, p)) in &want {
        let (gv, gp) = &now.points[id];
        assert_eq!(gp, p, "payload of {id}");
        for (a, b) in gv.iter().zip(v) {
            assert!((a - b).abs() < 1e-6, "vector of {id}");
        }
    }
    assert_eq!(now.count, want.len() as u64);

    // Delete the shard snapshot.
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("/collections/h/shards/1/snapshots/{name}"),
            Value::Null
        ),
        json!(true)
    );
    assert_eq!(
        s.ok("GET", "/collections/h/shards/1/snapshots", Value::Null),
        json!([])
    );

    // Full snapshots: every collection.
    create(&s, "other", 1);
    upsert(&s, "other", 0..10, 0);
    let full = s.ok("POST", "/snapshots", Value::Null);
    let full_name = full["name"].as_str().unwrap().to_owned();
    assert!(full_name.starts_with("full-snapshot-"), "{full_name}");
    assert_eq!(s.ok("GET", "/snapshots", Value::Null), json!([full]));
    let bytes = download(&s, &format!("/snapshots/{full_name}"));
    assert_eq!(sha256_hex(&bytes), full["checksum"].as_str().unwrap());
    let archive = shoal::storage::archive::decode(&bytes, bytes.len() as u64).unwrap();
    let meta: shoal::cluster::snapshots::SnapshotMeta =
        serde_json::from_str(&archive.manifest.meta).unwrap();
    let names: Vec<&str> = meta.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["h", "other"]);
    assert_eq!(meta.collections[0].shards, [0, 1]);
    // A full snapshot is not a collection snapshot.
    let m = refused(
        &s,
        "PUT",
        "/collections/x/snapshots/recover",
        Some(
            json!({"location": format!("file://{}", dir.path().join("snapshots").join(&full_name).display())}),
        ),
        400,
    );
    assert!(m.contains("full snapshot"), "{m}");
    refused(&s, "DELETE", "/snapshots/nothing.snapshot", None, 404);
    refused(&s, "GET", "/snapshots/..", None, 400);
    assert_eq!(
        s.ok("DELETE", &format!("/snapshots/{full_name}"), Value::Null),
        json!(true)
    );
    assert_eq!(s.ok("GET", "/snapshots", Value::Null), json!([]));

    // wait=false: accepted at once, done in the background.
    let (status, v) = s.call("POST", "/collections/other/snapshots?wait=false", None);
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "accepted");
    common::cluster::wait_for(
        "the background snapshot",
        std::time::Duration::from_secs(30),
        || {
            let l = s.ok("GET", "/collections/other/snapshots", Value::Null);
            (l.as_array().unwrap().len() == 1).then_some(())
        },
    );
}

/// In a cluster: a collection snapshot on a node without every shard is refused by name (never
/// partial); with every shard replicated everywhere, a snapshot taken on one node is recovered
/// on another from the first's download URL, and every replica of the recovered collection
/// holds every point (the recovery went through the Raft logs), answering as the original.
#[test]
fn snapshots_in_a_three_node_cluster() {
    use common::cluster::{TestCluster, wait_for};
    use std::time::Duration;
    let c = TestCluster::start(3, &[]);
    let body = |shards: u32, rf: u32| {
        json!({"vectors": {"size": DIM, "distance": "Cosine"}, "shard_number": shards,
               "replication_factor": rf, "ivf_pq_config": {"nlist": 4, "seal_threshold": 100}})
    };
    let points = |range: std::ops::Range<u64>| {
        let p: Vec<Value> = range
            .map(|i| json!({"id": i, "vector": vector(i), "payload": payload(i, 0)}))
            .collect();
        json!({ "points": p })
    };
    c.ok(0, "PUT", "/collections/part", body(3, 1));
    c.ok(
        1,
        "PUT",
        "/collections/part/points?wait=true",
        points(0..60),
    );
    let holders: Vec<u64> = c.replicas(0, "part").iter().map(|r| r[0].0).collect();
    for i in 0..3 {
        let id = c.nodes[i].id;
        let (status, v) = c.call(i, "POST", "/collections/part/snapshots", None);
        assert_eq!(status, 400, "node {id}: {v}");
        let m = v["status"]["error"].as_str().unwrap();
        assert!(m.contains("has no replica on this node"), "{m}");
        let (status, _) = c.call(i, "POST", "/snapshots", None);
        assert_eq!(status, 400);
        // A shard snapshot works where the shard is, and only there.
        for (s, holder) in holders.iter().enumerate() {
            let (status, v) = c.call(
                i,
                "POST",
                &format!("/collections/part/shards/{s}/snapshots"),
                None,
            );
            assert_eq!(status == 200, *holder == id, "node {id} shard {s}: {v}");
        }
    }

    c.ok(0, "PUT", "/collections/all", body(2, 3));
    c.ok(
        1,
        "PUT",
        "/collections/all/index?wait=true",
        json!({"field_name": "group", "field_schema": "integer"}),
    );
    for chunk in (0..300u64).collect::<Vec<_>>().chunks(100) {
        c.ok(
            2,
            "PUT",
            "/collections/all/points?wait=true",
            points(chunk[0]..chunk[0] + 100),
        );
    }
    let settled = |name: &str, n: u64| {
        wait_for(
            "every replica holds every point",
            Duration::from_secs(30),
            || {
                let r = c.replicas(0, name);
                let total: Vec<u64> = (0..3)
                    .map(|node| {
                        r.iter()
                            .map(|sh| {
                                sh.iter()
                                    .filter(|x| x.0 == node + 1)
                                    .map(|x| x.1.unwrap_or(0))
                                    .sum::<u64>()
                            })
                            .sum()
                    })
                    .collect();
                total.iter().all(|t| *t == n).then_some(())
            },
        )
    };
    settled("all", 300);
    let c = &c;
    let on = |i: usize| move |m: &str, p: &str, b: Value| c.ok(i, m, p, b);
    let original = observe_with(&on(0), "all");
    assert_eq!(original.count, 300);
    let snap = c.ok(2, "POST", "/collections/all/snapshots", Value::Null);
    let name = snap["name"].as_str().unwrap();
    let url = format!("http://{}/collections/all/snapshots/{name}", c.nodes[2].api);
    c.ok(
        1,
        "PUT",
        "/collections/restored/snapshots/recover",
        json!({"location": url, "checksum": snap["checksum"]}),
    );
    settled("restored", 300);
    for i in 0..3 {
        let mut got = observe_with(&on(i), "restored");
        got.config = original.config.clone();
        assert_same(
            &got,
            &original,
            &format!("restored, read on node {}", i + 1),
        );
    }
    // Over the existing collection, on a third node: replaced.
    c.ok(
        0,
        "PUT",
        "/collections/all/points?wait=true",
        points(300..320),
    );
    c.ok(
        0,
        "PUT",
        "/collections/all/snapshots/recover",
        json!({ "location": url }),
    );
    settled("all", 300);
    for i in 0..3 {
        assert_same(
            &observe_with(&on(i), "all"),
            &original,
            &format!("replaced, node {}", i + 1),
        );
    }
}
