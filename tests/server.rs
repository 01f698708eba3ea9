//! End-to-end tests of the real `shoal` binary over HTTP: search against brute force, filters,
//! refused bad input, durability across `kill -9`, and restart with sealed segments.

mod common;

use common::{Server, vec_for};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

fn create(s: &Server, name: &str, dim: usize, extra: Value) {
    let mut body = json!({"vectors": {"size": dim, "distance": "Euclid"}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    assert_eq!(
        s.ok("PUT", &format!("/collections/{name}"), body),
        json!(true)
    );
}

fn upsert_range(s: &Server, name: &str, ids: std::ops::Range<u64>, dim: usize) {
    let points: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": vec_for(i, dim), "payload": {"group": i % 4, "tag": format!("t{}", i % 3), "x": i as f64}}))
        .collect();
    s.ok(
        "PUT",
        &format!("/collections/{name}/points?wait=true"),
        json!({"points": points}),
    );
}

fn ids_of(result: &Value) -> Vec<u64> {
    result
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn upsert_then_search_matches_brute_force_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let dim = 8;
    create(&s, "c", dim, json!({}));
    upsert_range(&s, "c", 0..300, dim);
    assert_eq!(
        s.ok("POST", "/collections/c/points/count", json!({}))["count"],
        300
    );
    let q = vec_for(10_000, dim);
    let filter = json!({"must": [{"key": "group", "match": {"value": 1}}], "must_not": [{"key": "tag", "match": {"any": ["t0"]}}]});
    let hits = s.ok(
        "POST",
        "/collections/c/points/search",
        json!({"vector": q, "limit": 10, "filter": filter, "with_payload": true}),
    );
    let mut want: Vec<(f32, u64)> = (0..300u64)
        .filter(|i| i % 4 == 1 && i % 3 != 0)
        .map(|i| (l2(&q, &vec_for(i, dim)), i))
        .collect();
    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    assert_eq!(
        ids_of(&hits),
        want.iter().take(10).map(|w| w.1).collect::<Vec<_>>()
    );
    for (h, w) in hits.as_array().unwrap().iter().zip(&want) {
        assert!((h["score"].as_f64().unwrap() as f32 - w.0).abs() < 1e-4);
        assert_eq!(h["payload"]["group"], 1);
    }
    // query API, range filter, count with the same filter.
    let range = json!({"must": [{"key": "x", "range": {"gte": 100, "lt": 120}}]});
    let res = s.ok(
        "POST",
        "/collections/c/points/query",
        json!({"query": q, "limit": 100, "filter": range}),
    );
    let got: BTreeSet<u64> = ids_of(&res["points"]).into_iter().collect();
    assert_eq!(got, (100..120).collect());
    assert_eq!(
        s.ok(
            "POST",
            "/collections/c/points/count",
            json!({"filter": range})
        )["count"],
        20
    );
    // Delete by filter, then by ids; retrieve and get-one see the result.
    s.ok(
        "POST",
        "/collections/c/points/delete",
        json!({"filter": range}),
    );
    s.ok(
        "POST",
        "/collections/c/points/delete",
        json!({"points": [0, 1]}),
    );
    assert_eq!(
        s.ok("POST", "/collections/c/points/count", json!({}))["count"],
        278
    );
    let got = s.ok(
        "POST",
        "/collections/c/points",
        json!({"ids": [1, 2, 105, 200]}),
    );
    assert_eq!(ids_of(&got), vec![2, 200]);
    assert_eq!(s.call("GET", "/collections/c/points/1", None).0, 404);
    assert_eq!(s.ok("GET", "/collections/c/points/2", json!(null))["id"], 2);
    // Scroll walks every remaining id in order.
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    loop {
        let page = s.ok(
            "POST",
            "/collections/c/points/scroll",
            json!({"limit": 64, "offset": offset}),
        );
        seen.extend(ids_of(&page["points"]));
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    let want: Vec<u64> = (2..300).filter(|i| !(100..120).contains(i)).collect();
    assert_eq!(seen, want);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--body-limit", "65536"]);
    let dim = 4;
    create(&s, "c", dim, json!({"ivf_pq_config": {"nlist": 8}}));
    upsert_range(&s, "c", 0..10, dim);
    let snapshot = |s: &Server| {
        s.ok(
            "POST",
            "/collections/c/points/scroll",
            json!({"limit": 100, "with_vector": true}),
        )
    };
    let before = snapshot(&s);
    let big = vec![json!({"id": 1, "vector": [0.0, 0.0, 0.0, 0.0]}); 5000];
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": [{"id": 50, "vector": [1, 2, 3]}]})).unwrap()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": [{"id": 50, "vector": [1, 2, 3, "NaN"]}]})).unwrap()),
        ("PUT", "/collections/c/points", br#"{"points": [{"id": 50, "vector": [1, 2, 3, 1e39]}]}"#.to_vec()),
        ("PUT", "/collections/c/points", br#"{"points": [{"id": 50, "vector": [1, 2, 3, NaN]}]}"#.to_vec()),
        ("PUT", "/collections/c/points", Vec::new()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": big})).unwrap()),
        ("PUT", "/collections/c/points", b"{\"points\": [".to_vec()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": [{"id": 1, "vector": [0, 0, 0, 1]}, {"id": 1, "vector": [0, 0, 0, 2]}]})).unwrap()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": [{"id": -5, "vector": [0, 0, 0, 1]}]})).unwrap()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": [{"id": 1.5, "vector": [0, 0, 0, 1]}]})).unwrap()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"points": [{"id": "not-a-uuid", "vector": [0, 0, 0, 1]}]})).unwrap()),
        ("PUT", "/collections/c/points", serde_json::to_vec(&json!({"batch": {"ids": [60, 61], "vectors": [[0, 0, 0, 1]]}})).unwrap()),
        ("PUT", "/collections/nope/points", serde_json::to_vec(&json!({"points": [{"id": 60, "vector": [0, 0, 0, 1]}]})).unwrap()),
        ("POST", "/collections/c/points/search", serde_json::to_vec(&json!({"vector": [0, 0, 0, 1], "limit": 0})).unwrap()),
        ("POST", "/collections/c/points/search", serde_json::to_vec(&json!({"vector": [0, 0, 0, 1], "limit": 10001})).unwrap()),
        ("POST", "/collections/c/points/query", serde_json::to_vec(&json!({"query": [0, 0, 0, 1], "params": {"nprobe": 9}})).unwrap()),
        ("POST", "/collections/c/points/query", serde_json::to_vec(&json!({"query": [0, 0, 1]})).unwrap()),
        ("POST", "/collections/c/points/delete", serde_json::to_vec(&json!({"filter": {"must": [{"key": "group", "match": {"value": 1.5}}]}})).unwrap()),
        ("POST", "/collections/c/points/delete", serde_json::to_vec(&json!({"filter": {"must": [{"key": "x", "range": {"gt": "a"}}]}})).unwrap()),
        ("POST", "/collections/c/points/delete", serde_json::to_vec(&json!({"points": ["zz"]})).unwrap()),
        ("POST", "/collections/c/points/count", serde_json::to_vec(&json!({"filter": {"must": [{"key": "tag", "match": {"any": ["a", 1]}}]}})).unwrap()),
        ("PUT", "/collections/bad%20name", serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Dot"}})).unwrap()),
        ("PUT", "/collections/c", serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Dot"}})).unwrap()),
        ("PUT", "/collections/d", serde_json::to_vec(&json!({"vectors": {"size": 0, "distance": "Dot"}})).unwrap()),
        ("PUT", "/collections/d", serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Manhattan"}})).unwrap()),
        ("PUT", "/collections/d", serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Cosine"}, "ivf_pq_config": {"pq_m": 3}})).unwrap()),
        ("PUT", "/collections/d", serde_json::to_vec(&json!({"vectors": {"size": 1024, "distance": "Cosine"}, "ivf_pq_config": {"pq_m": 512, "pq_bits": 4}})).unwrap()),
        ("PUT", "/collections/d", serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Cosine"}, "search_config": {"recall_target": 0}})).unwrap()),
        // A method shoal does not serve on a known path: a JSON 405, not an empty one.
        ("DELETE", "/collections/c/points/count", Vec::new()),
        ("POST", "/healthz", Vec::new()),
    ];
    for (method, path, body) in &cases {
        let (status, out) = s.try_request(method, path, Some(body)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert!(
            (400..500).contains(&status),
            "{method} {path} {}: {status} {v}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(
            v["status"]["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {v}"
        );
    }
    assert_eq!(snapshot(&s), before);
    assert_eq!(
        s.ok("GET", "/collections", json!(null))["collections"],
        json!([{"name": "c"}])
    );
}

#[test]
fn acknowledged_upserts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    let dim = 4;
    create(&s, "c", dim, json!({}));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (addr, acked) = (s.addr.clone(), acked.clone());
        std::thread::spawn(move || {
            for i in 0..100_000u64 {
                let body = serde_json::to_vec(
                    &json!({"points": [{"id": i, "vector": vec_for(i, dim), "payload": {"i": i}}]}),
                )
                .unwrap();
                match common::request(&addr, "PUT", "/collections/c/points?wait=true", Some(&body))
                {
                    Ok((200, _)) => acked.lock().unwrap().push(i),
                    _ => break,
                }
            }
        })
    };
    // Let a stream of writes get acknowledged, then kill the server mid-stream.
    while acked.lock().unwrap().len() < 150 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    s.kill9();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let s = Server::start(dir.path(), &[]);
    let ids: Vec<Value> = acked.iter().map(|i| json!(i)).collect();
    let got = s.ok("POST", "/collections/c/points", json!({"ids": ids}));
    assert_eq!(
        ids_of(&got),
        acked,
        "acknowledged writes lost after kill -9"
    );
    for p in got.as_array().unwrap() {
        assert_eq!(p["payload"]["i"], p["id"]);
    }
}

/// The names in a directory (none if it cannot be read).
fn file_names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the newest Raft snapshot of the group in `group_dir` holds every sealed segment
/// file the shard has (a built segment triggers a snapshot within a couple of seconds).
fn wait_snapshot_of_segments(group_dir: &std::path::Path) {
    let mut last = (Default::default(), Default::default());
    for _ in 0..300 {
        let segments = file_names(&group_dir.join("segments"));
        let newest = file_names(&group_dir.join("snapshots"))
            .into_iter()
            .filter(|n| n.starts_with("snap-"))
            .max()
            .map(|n| file_names(&group_dir.join("snapshots").join(n)))
            .unwrap_or_default();
        if !segments.is_empty() && segments.is_subset(&newest) {
            return;
        }
        last = (segments, newest);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no snapshot holds the built segments (segments, newest snapshot): {last:?}");
}

#[test]
fn restart_with_sealed_segments_serves_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let queries: Vec<Vec<f32>> = (0..10).map(|i| vec_for(50_000 + i, dim)).collect();
    let ask = |s: &Server| -> Vec<Value> {
        queries
            .iter()
            .map(|q| {
                s.ok(
                    "POST",
                    "/collections/c/points/query",
                    json!({"query": q, "limit": 10, "params": {"nprobe": 2, "rerank": 0}}),
                )
            })
            .collect()
    };
    let wait_indexed = |s: &Server| {
        let mut info = Value::Null;
        for _ in 0..600 {
            info = s.ok("GET", "/collections/c", json!(null));
            if info["status"] == "green"
                && info["indexed_vectors_count"].as_u64().unwrap_or(0) >= 1198
            {
                return info;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("segments never indexed: {info}");
    };
    let (before, info) = {
        let mut s = Server::start(dir.path(), &[]);
        create(
            &s,
            "c",
            dim,
            json!({"ivf_pq_config": {"nlist": 8, "seal_threshold": 600}}),
        );
        for start in (0..1500).step_by(250) {
            upsert_range(&s, "c", start..start + 250, dim);
        }
        s.ok(
            "POST",
            "/collections/c/points/delete",
            json!({"points": [3, 700, 1400]}),
        );
        let info = wait_indexed(&s);
        let answers = ask(&s);
        wait_snapshot_of_segments(&dir.path().join("raft/groups/1"));
        assert!(s.terminate().success());
        (answers, info)
    };
    assert_eq!(info["segments_count"], 2);
    let s = Server::start(dir.path(), &[]);
    // The built segments came back from the snapshot: nothing is replayed into a flat segment
    // and indexed again, so the collection is green and indexed as soon as the node is ready.
    let again = s.ok("GET", "/collections/c", json!(null));
    assert_eq!(again["status"], "green", "{again}");
    assert!(
        again["indexed_vectors_count"].as_u64().unwrap() >= 1198,
        "{again}"
    );
    assert_eq!(again["points_count"], 1497);
    assert_eq!(
        ask(&s)
            .iter()
            .map(|a| a["points"].clone())
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|a| a["points"].clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn raft_snapshots_and_log_replay_restore_everything_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let flags = ["--snapshot-every", "10"];
    let queries: Vec<Vec<f32>> = (0..5).map(|i| vec_for(70_000 + i, dim)).collect();
    // Exact answers: they depend only on which points and payloads exist, so any lost write or
    // resurrected delete changes them. Approximate answers depend on how the segments are laid
    // out, which legitimately differs after a restart (idle seals and merges are background work
    // that may or may not have run before the kill); restoring the index files themselves is
    // `restart_with_sealed_segments_serves_the_same_answers`'s job.
    let ask = |s: &Server| -> Vec<Value> {
        queries
            .iter()
            .flat_map(|q| {
                [
                    json!({"vector": q, "limit": 5, "params": {"exact": true}, "with_payload": true}),
                    json!({"vector": q, "limit": 5, "params": {"exact": true},
                           "filter": {"must": [{"key": "group", "match": {"value": 1}}]}}),
                ]
            })
            .map(|body| s.ok("POST", "/collections/c/points/search", body))
            .collect()
    };
    let wait_green = |s: &Server| {
        for _ in 0..600 {
            if s.ok("GET", "/collections/c", json!(null))["status"] == "green" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("index builds never finished");
    };
    let mut s = Server::start(dir.path(), &flags);
    create(
        &s,
        "c",
        dim,
        json!({"ivf_pq_config": {"nlist": 4, "seal_threshold": 300}}),
    );
    // 47 log entries: several snapshots are taken, and the tail after the last one is replayed.
    for start in (0..900).step_by(20) {
        upsert_range(&s, "c", start..start + 20, dim);
    }
    s.ok(
        "POST",
        "/collections/c/points/delete",
        json!({"points": [5, 305, 805]}),
    );
    s.ok(
        "POST",
        "/collections/c/points/delete",
        json!({"filter": {"must": [{"key": "x", "range": {"gte": 890}}]}}),
    );
    wait_green(&s);
    let before = ask(&s);
    let count = s.ok("POST", "/collections/c/points/count", json!({}))["count"].clone();
    assert_eq!(count, 887);
    s.kill9();
    let snapshots = file_names(&dir.path().join("raft/groups/1/snapshots"))
        .iter()
        .filter(|n| n.starts_with("snap-"))
        .count();
    assert!(snapshots >= 1, "no Raft snapshot was taken");
    let s = Server::start(dir.path(), &flags);
    wait_green(&s);
    assert_eq!(
        s.ok("POST", "/collections/c/points/count", json!({}))["count"],
        count
    );
    assert_eq!(ask(&s), before);
    let page = s.ok(
        "POST",
        "/collections/c/points/scroll",
        json!({"limit": 1000}),
    );
    let want: Vec<u64> = (0..890).filter(|i| ![5, 305, 805].contains(i)).collect();
    assert_eq!(ids_of(&page["points"]), want);
}

#[test]
fn api_keys_separate_admin_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--api-key",
            "admin-secret",
            "--read-only-api-key",
            "ro-secret",
        ],
    );
    let call = |method: &str, path: &str, key: Option<&str>, body: &str| -> u16 {
        let mut stream = std::net::TcpStream::connect(&s.addr).unwrap();
        let key = key.map(|k| format!("api-key: {k}\r\n")).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{key}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut stream, req.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stream, &mut out).unwrap();
        out.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let create = r#"{"vectors": {"size": 2, "distance": "Dot"}}"#;
    assert_eq!(call("PUT", "/collections/k", None, create), 401);
    assert_eq!(call("PUT", "/collections/k", Some("wrong"), create), 401);
    assert_eq!(
        call("PUT", "/collections/k", Some("ro-secret"), create),
        403
    );
    assert_eq!(
        call("PUT", "/collections/k", Some("admin-secret"), create),
        200
    );
    let upsert = r#"{"points": [{"id": 1, "vector": [1, 2]}]}"#;
    assert_eq!(
        call("PUT", "/collections/k/points", Some("ro-secret"), upsert),
        403
    );
    assert_eq!(
        call("PUT", "/collections/k/points", Some("admin-secret"), upsert),
        200
    );
    assert_eq!(
        call(
            "POST",
            "/collections/k/points/query",
            Some("ro-secret"),
            r#"{"query": [1, 0]}"#
        ),
        200
    );
    assert_eq!(call("GET", "/collections", Some("ro-secret"), ""), 200);
    assert_eq!(call("GET", "/collections", None, ""), 401);
    assert_eq!(call("GET", "/healthz", None, ""), 200);
    // Metrics count what was answered, per route.
    let mut stream = std::net::TcpStream::connect(&s.addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\napi-key: ro-secret\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut metrics = String::new();
    std::io::Read::read_to_string(&mut stream, &mut metrics).unwrap();
    assert!(
        metrics.contains(
            "shoal_http_requests_total{method=\"PUT\",route=\"/collections/{name}/points\"} 2"
        ),
        "{metrics}"
    );
    // ... of which one was refused (403).
    assert!(
        metrics.contains(
            "shoal_http_errors_total{method=\"PUT\",route=\"/collections/{name}/points\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_collection_points{collection=\"k\"} 1"),
        "{metrics}"
    );
    // What filtered searches' regrouped codes hold (none yet), and none being made: what
    // `shoal bench --server` waits on before its timed filtered passes.
    for gauge in [
        "shoal_collection_filter_subset_bytes",
        "shoal_collection_filter_subsets_being_made",
    ] {
        assert!(
            metrics.contains(&format!("{gauge}{{collection=\"k\"}} 0")),
            "{metrics}"
        );
    }
}

/// A collection created with only size and distance: a query without params uses each sealed
/// segment's own calibration at the recall target (0.95), reported in the collection info, and
/// reaches it against brute force; a query's own target and bad targets behave.
#[test]
fn queries_without_params_reach_the_recall_target_through_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let dim = 16;
    let n = 3000u64;
    create(
        &s,
        "c",
        dim,
        json!({"ivf_pq_config": {"nlist": 32, "seal_threshold": 1000}}),
    );
    for start in (0..n).step_by(500) {
        upsert_range(&s, "c", start..start + 500, dim);
    }
    let mut info = Value::Null;
    for _ in 0..600 {
        info = s.ok("GET", "/collections/c", json!(null));
        if info["status"] == "green" && info["indexed_vectors_count"].as_u64() == Some(n) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(info["indexed_vectors_count"], n, "not all indexed: {info}");
    let search = &info["config"]["search_config"];
    assert_eq!(search["nprobe"], Value::Null, "{search}");
    assert_eq!(search["rerank"], Value::Null, "{search}");
    assert_eq!(search["recall_target"], 0.95);
    let calibration = info["calibration"].as_array().unwrap();
    assert!(!calibration.is_empty(), "no calibration reported: {info}");
    let covered: u64 = calibration
        .iter()
        .map(|c| c["points"].as_u64().unwrap())
        .sum();
    assert!(
        covered >= n,
        "calibrated segments hold {covered} of {n} points"
    );
    for c in calibration {
        let reached = c["measured_recall"].as_f64().unwrap() >= 0.95;
        assert!(reached || c["nprobe"] == c["nlist"], "{c}");
    }
    // Recall@10 against brute force over 40 queries, no params.
    let base: Vec<Vec<f32>> = (0..n).map(|i| vec_for(i, dim)).collect();
    let recall_at = |params: Value| {
        let mut found = 0usize;
        for qi in 0..40u64 {
            let q = vec_for(90_000 + qi, dim);
            let mut body = json!({"query": q, "limit": 10});
            if !params.is_null() {
                body["params"] = params.clone();
            }
            let got = ids_of(&s.ok("POST", "/collections/c/points/query", body)["points"]);
            let mut want: Vec<(f32, u64)> =
                base.iter().zip(0..).map(|(v, i)| (l2(&q, v), i)).collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: BTreeSet<u64> = want.iter().take(10).map(|w| w.1).collect();
            found += got.iter().filter(|i| want.contains(i)).count();
        }
        found as f64 / 400.0
    };
    let default_recall = recall_at(Value::Null);
    assert!(
        default_recall >= 0.9,
        "recall@10 {default_recall} with defaults"
    );
    let strict = recall_at(json!({"recall_target": 1.0}));
    assert!(
        strict >= default_recall - 0.02,
        "target 1.0: {strict} < {default_recall}"
    );
    // Bad targets are refused, on the query and on create.
    for bad in [json!(0.0), json!(1.5), json!(-1)] {
        let (code, body) = s.call(
            "POST",
            "/collections/c/points/query",
            Some(json!({"query": vec_for(1, dim), "params": {"recall_target": bad}})),
        );
        assert_eq!(code, 400, "recall_target {bad}: {body}");
    }
    let (code, body) = s.call(
        "PUT",
        "/collections/d",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}, "search_config": {"recall_target": 2}})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("recall_target"), "{body}");
}

#[test]
fn a_create_sent_while_the_node_starts_gets_503_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::spawn(dir.path(), &[]);
    let body = serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Dot"}})).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut unavailable = 0;
    loop {
        match s.try_request("PUT", "/collections/early", Some(&body)) {
            Err(_) => {} // not listening yet
            Ok((200, _)) => break,
            Ok((503, out)) => {
                // Never a 400 such as "the cluster has 0 reachable member(s)": a state that
                // passes, which the client is told to retry.
                let v: Value = serde_json::from_slice(&out).unwrap();
                assert!(
                    v["status"]["error"].as_str().unwrap().contains("retry"),
                    "{v}"
                );
                unavailable += 1;
            }
            Ok((status, out)) => panic!(
                "a create during start-up answered {status}: {}",
                String::from_utf8_lossy(&out)
            ),
        }
        assert!(std::time::Instant::now() < deadline, "never created");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (status, out) = s.try_request("GET", "/collections/early", None).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    eprintln!("{unavailable} create(s) answered 503 before the node was ready");
}

#[test]
fn a_batch_of_writes_applies_in_order_or_refuses_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    create(&s, "b", 4, json!({"shard_number": 2}));
    let pt = |i: u64| json!({"id": i, "vector": vec_for(i, 4), "payload": {"n": i}});
    let ops = json!({"operations": [
        {"upsert": {"points": (0..10).map(pt).collect::<Vec<_>>()}},
        {"delete": {"points": [1, 2]}},
        {"set_payload": {"payload": {"tag": "x"}, "filter": {"must": [{"key": "n", "range": {"gte": 5}}]}}},
        {"delete_payload": {"keys": ["n"], "points": [9]}},
        {"overwrite_payload": {"payload": {"only": true}, "points": [0]}},
        {"clear_payload": {"points": [3]}},
        {"delete": {"filter": {"must": [{"key": "n", "match": {"value": 4}}]}}},
        {"upsert": {"batch": {"ids": [20], "vectors": [vec_for(20, 4)]}}},
    ]});
    let out = s.ok("POST", "/collections/b/points/batch?wait=true", ops);
    let results = out.as_array().unwrap();
    assert_eq!(results.len(), 8, "{out}");
    assert!(results.iter().all(|r| r["status"] == "completed"), "{out}");
    // The model, applied in the same order.
    let got = s.ok(
        "POST",
        "/collections/b/points/scroll",
        json!({"limit": 100, "with_payload": true}),
    );
    let got: Vec<(u64, Value)> = got["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["payload"].clone()))
        .collect();
    let want = vec![
        (0, json!({"only": true})),
        (3, json!({})),
        (5, json!({"n": 5, "tag": "x"})),
        (6, json!({"n": 6, "tag": "x"})),
        (7, json!({"n": 7, "tag": "x"})),
        (8, json!({"n": 8, "tag": "x"})),
        (9, json!({"tag": "x"})),
        (20, json!({})),
    ];
    assert_eq!(got, want);
    // A bad operation anywhere refuses the whole batch, naming it; nothing is applied.
    for (bad, named) in [
        (
            json!({"delete": {"points": ["not-an-id"]}}),
            "operations[1]",
        ),
        (
            json!({"upsert": {"points": [{"id": 30, "vector": [1.0]}]}}),
            "operations[1]",
        ),
        (json!({"frobnicate": {}}), "frobnicate"),
        (json!({"update_vectors": {"points": []}}), "operations[1]"),
        (
            json!({"delete_vectors": {"points": [1], "vector": ["nope"]}}),
            "\"nope\"",
        ),
    ] {
        let body = json!({"operations": [{"delete": {"points": [0]}}, bad]});
        let (status, out) = s.call("POST", "/collections/b/points/batch", Some(body));
        assert_eq!(status, 400, "{out}");
        let error = out["status"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(named), "{named}: {out}");
    }
    let count = s.ok(
        "POST",
        "/collections/b/points/count",
        json!({"exact": true}),
    );
    assert_eq!(count["count"], 8, "a refused batch deleted point 0");
    let (status, _) = s.call(
        "POST",
        "/collections/missing/points/batch",
        Some(json!({"operations": []})),
    );
    assert_eq!(status, 404);
}

#[test]
fn a_metadata_timeout_is_honoured_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let body = json!({"vectors": {"size": 4, "distance": "Dot"}});
    // A generous timeout changes nothing.
    let (status, out) = s.call("PUT", "/collections/roomy?timeout=30", Some(body.clone()));
    assert_eq!(status, 200, "{out}");
    // No commit through Raft finishes within zero seconds: the answer stops waiting with a
    // 503 naming the operation, and the change itself still lands.
    let (status, out) = s.call("PUT", "/collections/hasty?timeout=0", Some(body));
    assert_eq!(status, 503, "{out}");
    let error = out["status"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("create_collection") && error.contains("timeout=0s"),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.call("GET", "/collections/hasty/exists", None).1["result"]["exists"] != json!(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "the timed-out create never landed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, out) = s.call(
        "POST",
        "/collections/aliases?timeout=0",
        Some(
            json!({"actions": [{"create_alias": {"collection_name": "roomy", "alias_name": "r"}}]}),
        ),
    );
    assert_eq!(status, 503, "{out}");
    let (status, out) = s.call("DELETE", "/collections/roomy?timeout=30", None);
    assert_eq!((status, out["result"].clone()), (200, json!(true)));
    let (status, out) = s.call("PATCH", "/collections/hasty?timeout=abc", Some(json!({})));
    assert_eq!(status, 400, "a timeout that is not a number: {out}");
}

#[test]
fn cli_errors_are_one_line_without_a_backtrace() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["dataset", "info", "/nonexistent/base.fvecs"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("/nonexistent/base.fvecs"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
}

/// The ids nearest to `q` by exact L2 among `0..n`, `exclude` left out.
fn brute_force(q: &[f32], n: u64, dim: usize, exclude: &[u64], k: usize) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = (0..n)
        .filter(|i| !exclude.contains(i))
        .map(|i| (l2(q, &vec_for(i, dim)), i))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, i)| i).collect()
}

#[test]
fn queries_by_example_match_brute_force_and_leave_the_examples_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (dim, n) = (8, 300);
    create(&s, "ex", dim, json!({}));
    upsert_range(&s, "ex", 0..n, dim);
    let query = |body: Value| {
        let mut body = body;
        body["params"] = json!({"exact": true});
        ids_of(&s.ok("POST", "/collections/ex/points/query", body)["points"])
    };

    // A point id, bare or as qdrant-client sends it: its nearest other points.
    assert_eq!(
        query(json!({"query": 5, "limit": 10})),
        brute_force(&vec_for(5, dim), n, dim, &[5], 10)
    );
    assert_eq!(
        query(json!({"query": {"nearest": 5}, "limit": 10})),
        brute_force(&vec_for(5, dim), n, dim, &[5], 10)
    );
    // With an offset, the window is taken after the example is left out.
    assert_eq!(
        query(json!({"query": 5, "limit": 4, "offset": 3})),
        brute_force(&vec_for(5, dim), n, dim, &[5], 7)[3..].to_vec()
    );
    // Recommend, average vector: 2·avg(positive) − avg(negative), examples left out.
    let (a, b, c) = (vec_for(5, dim), vec_for(9, dim), vec_for(11, dim));
    let target: Vec<f32> = (0..dim)
        .map(|j| {
            let p = (a[j] + b[j]) / 2.0;
            p + (p - c[j])
        })
        .collect();
    assert_eq!(
        query(json!({"query": {"recommend": {"positive": [5, 9], "negative": [11]}}, "limit": 10})),
        brute_force(&target, n, dim, &[5, 9, 11], 10)
    );
    // A vector is an example too, and a filter still applies.
    let got = query(json!({
        "query": {"recommend": {"positive": [vec_for(7, dim)]}},
        "filter": {"must": [{"key": "group", "match": {"value": 1}}]},
        "limit": 5
    }));
    let expected: Vec<u64> = brute_force(&vec_for(7, dim), n, dim, &[], n as usize)
        .into_iter()
        .filter(|i| i % 4 == 1)
        .take(5)
        .collect();
    assert_eq!(got, expected);

    // lookup_from: the example is read from another collection and not left out here.
    create(&s, "other", dim, json!({}));
    s.ok(
        "PUT",
        "/collections/other/points?wait=true",
        json!({"points": [{"id": 5, "vector": vec_for(100, dim)}]}),
    );
    assert_eq!(
        query(json!({"query": 5, "lookup_from": {"collection": "other"}, "limit": 3})),
        brute_force(&vec_for(100, dim), n, dim, &[], 3)
    );

    // Batches take examples too.
    let batch = s.ok(
        "POST",
        "/collections/ex/points/query/batch",
        json!({"searches": [{"query": 5, "limit": 3, "params": {"exact": true}},
                            {"query": vec_for(5, dim), "limit": 3, "params": {"exact": true}}]}),
    );
    assert_eq!(
        ids_of(&batch[0]["points"]),
        brute_force(&vec_for(5, dim), n, dim, &[5], 3)
    );
    assert_eq!(
        ids_of(&batch[1]["points"])[0],
        5,
        "a vector query keeps the point"
    );

    // What cannot be answered is named: a missing example, another strategy, other kinds.
    for (body, status, needle) in [
        (json!({"query": 100_000}), 404, "100000"),
        (
            json!({"query": {"recommend": {"positive": [1], "strategy": "best_score"}}}),
            400,
            "best_score",
        ),
        (
            json!({"query": {"discover": {"target": 1}}}),
            400,
            "discover",
        ),
        (
            json!({"query": 5, "lookup_from": {"collection": "nope"}}),
            404,
            "nope",
        ),
        (
            json!({"query": vec![0.0f32; 8], "lookup_from": {"collection": "other"}}),
            400,
            "lookup_from",
        ),
    ] {
        let (got, out) = s
            .try_request(
                "POST",
                "/collections/ex/points/query",
                Some(&serde_json::to_vec(&body).unwrap()),
            )
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
    }
}
