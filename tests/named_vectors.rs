//! Named vectors over REST against a brute-force model: a collection of two named vectors of
//! different dimensions and metrics, two shards, segments sealed and indexed per vector; every
//! vector searched exactly and approximately (with and without a filter), points read back with
//! all or some of their vectors, every kind of bad input a 400, and the same answers after
//! `kill -9` and a restart. Then points without some of their vectors (`delete_vectors`, and
//! upserts that leave one out) against a model of which point has which vector.

mod common;

use common::Server;
use serde_json::{Value, json};
use std::collections::HashSet;

const N: u64 = 2000;
const DIM_A: usize = 8;
const DIM_B: usize = 6;

/// Point `i`'s vector of `dim` dimensions; the two named vectors of a point come from
/// different streams (a `b` vector is not a prefix of the `a` one).
fn vec_for(i: u64, dim: usize) -> Vec<f32> {
    common::vec_for(i.wrapping_add(dim as u64 * 1_000_003), dim)
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// The ids of the `k` nearest points by vector `name` (`a`: Euclid, `b`: Cosine), among those
/// `keep` accepts, nearest first.
fn brute_force(name: &str, q: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = (0..N)
        .filter(|i| keep(*i))
        .map(|i| {
            let d = if name == "a" {
                vec_for(i, DIM_A)
                    .iter()
                    .zip(q)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f32>()
            } else {
                let (v, q) = (unit(&vec_for(i, DIM_B)), unit(q));
                -v.iter().zip(&q).map(|(x, y)| x * y).sum::<f32>()
            };
            (d, i)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

fn ids(points: &Value) -> Vec<u64> {
    points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

fn load(s: &Server) {
    let created = s.ok(
        "PUT",
        "/collections/nv",
        json!({
            "vectors": {"a": {"size": DIM_A, "distance": "Euclid"},
                        "b": {"size": DIM_B, "distance": "Cosine"}},
            "shard_number": 2,
            "ivf_pq_config": {"nlist": 8, "seal_threshold": 600}
        }),
    );
    assert_eq!(created, json!(true));
    // Half as points, half in the column form with a list per name.
    let points: Vec<Value> = (0..N / 2)
        .map(|i| {
            json!({"id": i, "vector": {"a": vec_for(i, DIM_A), "b": vec_for(i, DIM_B)},
                        "payload": {"group": i % 4}})
        })
        .collect();
    s.ok(
        "PUT",
        "/collections/nv/points?wait=true",
        json!({"points": points}),
    );
    let rest: Vec<u64> = (N / 2..N).collect();
    s.ok(
        "PUT",
        "/collections/nv/points?wait=true",
        json!({"batch": {
            "ids": rest,
            "vectors": {"b": rest.iter().map(|i| vec_for(*i, DIM_B)).collect::<Vec<_>>(),
                        "a": rest.iter().map(|i| vec_for(*i, DIM_A)).collect::<Vec<_>>()},
            "payloads": rest.iter().map(|i| json!({"group": i % 4})).collect::<Vec<_>>()
        }}),
    );
}

fn wait_indexed(s: &Server) {
    let mut info = Value::Null;
    for _ in 0..1200 {
        info = s.ok("GET", "/collections/nv", json!(null));
        if info["status"] == "green" && info["indexed_vectors_count"].as_u64().unwrap_or(0) >= 1190
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("segments never indexed: {info}");
}

/// Exact answers for several queries of each vector, filtered and not.
fn exact_answers(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, dim) in [("a", DIM_A), ("b", DIM_B)] {
        for j in 0..4 {
            let q = vec_for(90_000 + j, dim);
            let filter =
                (j % 2 == 1).then(|| json!({"must": [{"key": "group", "match": {"value": 1}}]}));
            let got = s.ok(
                "POST",
                "/collections/nv/points/query",
                json!({"query": q, "using": name, "limit": 10, "filter": filter,
                       "params": {"exact": true}}),
            );
            let want = brute_force(name, &q, 10, |i| filter.is_none() || i % 4 == 1);
            assert_eq!(ids(&got["points"]), want, "{name} query {j}");
            out.push(got["points"].clone());
        }
    }
    out
}

#[test]
fn named_vectors_over_rest_answer_as_brute_force_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    load(&s);
    wait_indexed(&s);
    let info = s.ok("GET", "/collections/nv", json!(null));
    assert_eq!(
        info["config"]["params"]["vectors"],
        json!({"a": {"size": DIM_A, "distance": "Euclid"}, "b": {"size": DIM_B, "distance": "Cosine"}}),
        "{info}"
    );
    assert_eq!(info["points_count"], N);
    // Each vector's sealed segments report their own calibration, under the vector's name.
    let calibrated: HashSet<&str> = info["calibration"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["vector"].as_str())
        .collect();
    assert_eq!(calibrated, HashSet::from(["a", "b"]), "{info}");
    let before = exact_answers(&s);

    // The indexed search of each vector at the default recall target, against brute force.
    for (name, dim) in [("a", DIM_A), ("b", DIM_B)] {
        let mut found = 0;
        for j in 0..20 {
            let q = vec_for(80_000 + j, dim);
            let got = s.ok(
                "POST",
                "/collections/nv/points/query",
                json!({"query": q, "using": name, "limit": 10}),
            );
            let want: HashSet<u64> = brute_force(name, &q, 10, |_| true).into_iter().collect();
            found += ids(&got["points"])
                .iter()
                .filter(|i| want.contains(i))
                .count();
        }
        let recall = found as f64 / 200.0;
        assert!(recall >= 0.85, "vector {name}: recall@10 {recall}");
    }
    // The search API's named form, `{"name", "vector"}`, and scores in each vector's metric.
    let q = vec_for(70_000, DIM_B);
    let got = s.ok(
        "POST",
        "/collections/nv/points/search",
        json!({"vector": {"name": "b", "vector": q}, "limit": 3, "params": {"exact": true}}),
    );
    let want = brute_force("b", &q, 3, |_| true);
    assert_eq!(ids(&got), want);
    let top = unit(&vec_for(want[0], DIM_B));
    let cos: f32 = top.iter().zip(unit(&q)).map(|(x, y)| x * y).sum();
    assert!(
        (got[0]["score"].as_f64().unwrap() as f32 - cos).abs() < 1e-4,
        "{got}"
    );

    // Reads show every vector by name (cosine ones normalised), or the ones asked for.
    let got = s.ok(
        "POST",
        "/collections/nv/points",
        json!({"ids": [5, 900], "with_vector": true}),
    );
    for p in got.as_array().unwrap() {
        let i = p["id"].as_u64().unwrap();
        let a: Vec<f32> = serde_json::from_value(p["vector"]["a"].clone()).unwrap();
        let b: Vec<f32> = serde_json::from_value(p["vector"]["b"].clone()).unwrap();
        assert_eq!(a, vec_for(i, DIM_A));
        for (x, y) in b.iter().zip(unit(&vec_for(i, DIM_B))) {
            assert!((x - y).abs() < 1e-5);
        }
    }
    let got = s.ok(
        "POST",
        "/collections/nv/points/scroll",
        json!({"limit": 2, "with_vector": ["a"]}),
    );
    for p in got["points"].as_array().unwrap() {
        assert_eq!(p["vector"].as_object().unwrap().len(), 1, "{p}");
        assert!(p["vector"]["a"].is_array());
    }
    // A query by example reads the example's vector of the vector searched.
    let got = s.ok(
        "POST",
        "/collections/nv/points/query",
        json!({"query": 5, "using": "a", "limit": 5, "params": {"exact": true}}),
    );
    let want: Vec<u64> = brute_force("a", &vec_for(5, DIM_A), 6, |i| i != 5)
        .into_iter()
        .take(5)
        .collect();
    assert_eq!(ids(&got["points"]), want);

    // update_vectors replaces one named vector of a point and keeps the other and the payload.
    let far_b = vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    s.ok(
        "PUT",
        "/collections/nv/points/vectors?wait=true",
        json!({"points": [{"id": 7, "vector": {"b": far_b}}]}),
    );
    let got = s.ok(
        "POST",
        "/collections/nv/points",
        json!({"ids": [7], "with_vector": true, "with_payload": true}),
    );
    let a: Vec<f32> = serde_json::from_value(got[0]["vector"]["a"].clone()).unwrap();
    assert_eq!(a, vec_for(7, DIM_A));
    assert_eq!(got[0]["vector"]["b"], json!(far_b));
    assert_eq!(got[0]["payload"], json!({"group": 3}));
    let hit = s.ok(
        "POST",
        "/collections/nv/points/query",
        json!({"query": far_b, "using": "b", "limit": 1, "params": {"exact": true},
               "with_payload": false}),
    );
    assert_eq!(hit["points"][0]["id"], 7);
    assert!((hit["points"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    // Put it back, so the answers after the restart are those of the loaded points.
    s.ok(
        "PUT",
        "/collections/nv/points/vectors?wait=true",
        json!({"points": [{"id": 7, "vector": {"b": vec_for(7, DIM_B)}}]}),
    );

    // Every kind of bad input is a 400 that names the problem.
    let bad = [
        (
            "PUT",
            "/collections/nv/points",
            json!({"points": [{"id": 1, "vector": {"a": vec_for(1, DIM_A), "b": vec_for(1, DIM_B), "c": [1.0]}}]}),
            "\"c\"",
        ),
        (
            "PUT",
            "/collections/nv/points",
            json!({"points": [{"id": 1, "vector": vec_for(1, DIM_A)}]}),
            "named vectors",
        ),
        (
            "PUT",
            "/collections/nv/points",
            json!({"points": [{"id": 1, "vector": {"a": vec_for(1, DIM_B), "b": vec_for(1, DIM_B)}}]}),
            "dimension",
        ),
        (
            "POST",
            "/collections/nv/points/query",
            json!({"query": vec_for(1, DIM_A), "limit": 3}),
            "using",
        ),
        (
            "POST",
            "/collections/nv/points/query",
            json!({"query": vec_for(1, DIM_A), "using": "z", "limit": 3}),
            "\"z\"",
        ),
        (
            "POST",
            "/collections/nv/points/query",
            json!({"query": vec_for(1, DIM_A), "using": "b", "limit": 3}),
            "dimension",
        ),
        (
            "POST",
            "/collections/nv/points",
            json!({"ids": [1], "with_vector": ["z"]}),
            "\"z\"",
        ),
        (
            "PUT",
            "/collections/nv/points/vectors",
            json!({"points": [{"id": 1, "vector": {"c": [1.0]}}]}),
            "\"c\"",
        ),
        (
            "PUT",
            "/collections/nv/points/vectors",
            json!({"points": [{"id": 1, "vector": {"a": [1.0]}}]}),
            "dimension",
        ),
        (
            "PUT",
            "/collections/nv/points/vectors",
            json!({"points": [{"id": 1, "vector": {}}]}),
            "no vector",
        ),
        (
            "PUT",
            "/collections/mixed",
            json!({"vectors": {"": {"size": 4, "distance": "Dot"}, "x": {"size": 4, "distance": "Dot"}}}),
            "empty name",
        ),
        (
            "PUT",
            "/collections/centroid_named",
            json!({"vectors": {"x": {"size": 4, "distance": "Dot"}}, "shard_number": 2, "placement": "centroid"}),
            "centroid",
        ),
        (
            "PUT",
            "/collections/bad_dim",
            json!({"vectors": {"x": {"size": 0, "distance": "Dot"}}}),
            "\"x\"",
        ),
        (
            "POST",
            "/collections/nv/points/count",
            json!({"filter": {"must": [{"has_vector": "c"}]}}),
            "has_vector",
        ),
        (
            "POST",
            "/collections/nv/points/query",
            json!({"query": vec_for(1, DIM_A), "using": "a", "filter": {"should": [{"has_vector": "nope"}]}}),
            "\"nope\"",
        ),
        (
            "POST",
            "/collections/nv/points/delete",
            json!({"filter": {"must_not": [{"must": [{"has_vector": "c"}]}]}}),
            "has_vector",
        ),
    ];
    for (method, path, body, needle) in bad {
        let (status, v) = s.call(method, path, Some(body.clone()));
        assert_eq!(status, 400, "{method} {path} {body}: {v}");
        let message = v["status"]["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(needle), "{path}: {message}");
    }
    assert_eq!(
        s.ok("POST", "/collections/nv/points/count", json!({}))["count"],
        N
    );
    // Every point has both vectors: has_vector of either holds for all of them.
    for name in ["a", "b"] {
        let has = json!({"filter": {"must": [{"has_vector": name}]}});
        assert_eq!(
            s.ok("POST", "/collections/nv/points/count", has)["count"],
            N
        );
        let lacks = json!({"filter": {"must_not": [{"has_vector": name}]}, "exact": true});
        assert_eq!(
            s.ok("POST", "/collections/nv/points/count", lacks)["count"],
            0
        );
    }

    // kill -9: the lanes come back from the Raft snapshot and the log, answering the same.
    s.kill9();
    drop(s);
    let s = Server::start(dir.path(), &[]);
    wait_indexed(&s);
    assert_eq!(exact_answers(&s), before);
    let got = s.ok(
        "POST",
        "/collections/nv/points",
        json!({"ids": [900], "with_vector": ["a"]}),
    );
    let a: Vec<f32> = serde_json::from_value(got[0]["vector"]["a"].clone()).unwrap();
    assert_eq!(a, vec_for(900, DIM_A));
}

/// Which vectors point `i` has after [`delete_some_vectors`]: `a` goes from group 2 (by
/// filter) and point 1, `b` from every fifth point (by id), point 1 and point 3 (upserted
/// without it).
fn has(name: &str, i: u64) -> bool {
    match name {
        "a" => i % 4 != 2 && i != 1,
        _ => !i.is_multiple_of(5) && i != 1 && i != 3,
    }
}

fn delete_some_vectors(s: &Server) {
    let fifth: Vec<u64> = (0..N).step_by(5).collect();
    s.ok(
        "POST",
        "/collections/nv/points/vectors/delete?wait=true",
        json!({"points": fifth, "vector": ["b"]}),
    );
    s.ok(
        "POST",
        "/collections/nv/points/vectors/delete?wait=true",
        json!({"filter": {"must": [{"key": "group", "match": {"value": 2}}]}, "vector": ["a"]}),
    );
    s.ok(
        "POST",
        "/collections/nv/points/batch?wait=true",
        json!({"operations": [{"delete_vectors": {"points": [1], "vector": ["a", "b"]}}]}),
    );
    // Qdrant lets an upsert leave a named vector out: the point has none of it.
    s.ok(
        "PUT",
        "/collections/nv/points?wait=true",
        json!({"points": [{"id": 3, "vector": {"a": vec_for(3, DIM_A)}, "payload": {"group": 3}}]}),
    );
}

/// Every answer that depends on which point has which vector, against [`has`]; returns the
/// ids of the exact answers (a recovered copy's scores may differ in the last bit).
fn check_missing_vectors(s: &Server, c: &str) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for (name, dim) in [("a", DIM_A), ("b", DIM_B)] {
        for j in 0..4 {
            let q = vec_for(60_000 + j, dim);
            let filter =
                (j % 2 == 1).then(|| json!({"must": [{"key": "group", "match": {"value": 1}}]}));
            let exact = s.ok(
                "POST",
                &format!("/collections/{c}/points/query"),
                json!({"query": q, "using": name, "limit": 10, "filter": filter,
                       "params": {"exact": true}}),
            );
            let want = brute_force(name, &q, 10, |i| {
                has(name, i) && (filter.is_none() || i % 4 == 1)
            });
            assert_eq!(ids(&exact["points"]), want, "{c}: {name} query {j}");
            out.push(want);
            let approximate = s.ok(
                "POST",
                &format!("/collections/{c}/points/query"),
                json!({"query": q, "using": name, "limit": 10, "filter": filter}),
            );
            for i in ids(&approximate["points"]) {
                assert!(
                    has(name, i),
                    "{c}: {name} returned {i}, which has no {name}"
                );
            }
        }
        let with = (0..N).filter(|i| has(name, *i)).count() as u64;
        for (filter, want) in [
            (json!({"must": [{"has_vector": name}]}), with),
            (json!({"must_not": [{"has_vector": name}]}), N - with),
        ] {
            let got = s.ok(
                "POST",
                &format!("/collections/{c}/points/count"),
                json!({"filter": filter, "exact": true}),
            );
            assert_eq!(got["count"], want, "{c}: {filter}");
        }
        // The distance matrix samples only points that have the vector compared.
        let m = s.ok(
            "POST",
            &format!("/collections/{c}/points/search/matrix/offsets"),
            json!({"sample": 300, "limit": 2, "using": name}),
        );
        for id in m["ids"].as_array().unwrap() {
            let i = id.as_u64().unwrap();
            assert!(has(name, i), "{c}: the {name} matrix sampled {i}");
        }
    }
    // Reads show each point's vectors, and only those; payloads stay.
    let got = s.ok(
        "POST",
        &format!("/collections/{c}/points"),
        json!({"ids": [0, 1, 2, 3, 4, 6, 10], "with_vector": true, "with_payload": true}),
    );
    for p in got.as_array().unwrap() {
        let i = p["id"].as_u64().unwrap();
        let names: Vec<&str> = p["vector"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let want: Vec<&str> = ["a", "b"].into_iter().filter(|n| has(n, i)).collect();
        assert_eq!(names, want, "{c}: point {i}: {p}");
        assert_eq!(p["payload"], json!({"group": i % 4}), "{c}: {p}");
    }
    out
}

#[test]
fn points_without_some_vectors_over_rest_match_a_model_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    load(&s);
    wait_indexed(&s);
    delete_some_vectors(&s);
    let before = check_missing_vectors(&s, "nv");
    assert_eq!(
        s.ok("POST", "/collections/nv/points/count", json!({}))["count"],
        N,
        "deleting vectors deleted points"
    );
    // A query by example needs the example's vector.
    let (status, v) = s.call(
        "POST",
        "/collections/nv/points/query",
        Some(json!({"query": 5, "using": "b", "limit": 3})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["status"]["error"]
            .as_str()
            .unwrap()
            .contains("has no vector \"b\""),
        "{v}"
    );

    // Bad deletes are 400s naming the problem, and change nothing.
    for (body, needle) in [
        (json!({"points": [1], "vector": []}), "at least one"),
        (json!({"points": [1], "vector": ["z"]}), "\"z\""),
        (json!({"points": [1], "vector": ["a", "a"]}), "twice"),
        (json!({"vector": ["a"]}), "exactly one"),
        (
            json!({"points": [1], "filter": {"must": []}, "vector": ["a"]}),
            "exactly one",
        ),
        (json!({"points": ["x"], "vector": ["a"]}), "x"),
        (json!({"points": [1], "vector": ["a"], "bogus": 1}), "bogus"),
        (
            json!({"filter": {"must": [{"has_vector": "z"}]}, "vector": ["a"]}),
            "\"z\"",
        ),
        (
            json!({"filter": {"must": [{"has_vector": "a", "has_vector_lane": 0}]}, "vector": ["b"]}),
            "has_vector_lane",
        ),
    ] {
        let (status, v) = s.call(
            "POST",
            "/collections/nv/points/vectors/delete",
            Some(body.clone()),
        );
        assert_eq!(status, 400, "{body}: {v}");
        let message = v["status"]["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert_eq!(check_missing_vectors(&s, "nv"), before);

    // A user's snapshot carries the missing vectors, recovered in place and as a copy.
    let snap = s.ok("POST", "/collections/nv/snapshots?wait=true", Value::Null);
    let name = snap["name"].as_str().unwrap();
    let url = format!("http://{}/collections/nv/snapshots/{name}", s.addr);
    s.ok(
        "PUT",
        "/collections/copy/snapshots/recover?wait=true",
        json!({ "location": url }),
    );
    assert_eq!(check_missing_vectors(&s, "copy"), before);

    // kill -9: the same answers from the Raft snapshot and the log.
    s.kill9();
    drop(s);
    let s = Server::start(dir.path(), &[]);
    wait_indexed(&s);
    assert_eq!(check_missing_vectors(&s, "nv"), before);
    // A vector given back is searched again.
    s.ok(
        "PUT",
        "/collections/nv/points/vectors?wait=true",
        json!({"points": [{"id": 5, "vector": {"b": vec_for(5, DIM_B)}}]}),
    );
    let got = s.ok(
        "POST",
        "/collections/nv/points/query",
        json!({"query": vec_for(5, DIM_B), "using": "b", "limit": 1, "params": {"exact": true}}),
    );
    assert_eq!(ids(&got["points"]), vec![5]);
}
