//! Aliases, facets and grouped search over REST, on two-shard collections (so every answer is
//! merged across shards), checked against a model of the points the test itself wrote: brute
//! force distances, counts and groups. Aliases: every action, the refusals, an all-or-nothing
//! batch, the atomic swap, an alias used wherever a collection name is, dropped with its
//! collection, and kept across a restart.

mod common;

use common::Server;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const N: u64 = 240;
const TAGS: [&str; 5] = ["red", "green", "blue", "cyan", "gold"];

/// Integer-valued vectors: squared distances are exact in `f32`, so ties are exact too and
/// broken by id on both sides.
fn vector(i: u64, salt: u64) -> Vec<f32> {
    vec![
        (i % 17) as f32,
        ((i * 7 + salt) % 11) as f32,
        (i % 5) as f32,
        1.0,
    ]
}

/// UUIDs a point's `owner` is one of (skewed, so counts differ).
const OWNERS: [&str; 3] = [
    "0b7e5a3c-1f2d-4c5b-9a8e-000000000001",
    "5d1c9e2a-7b3f-4e6d-8c9a-000000000002",
    "a3f09c7e-2d4b-4a1c-b6e8-000000000003",
];

fn payload(i: u64, salt: u64) -> Value {
    // Skewed tags (so counts differ), a second tag on every fourth point, a document id
    // shared by a handful of points, an integer and a bool.
    let tag = TAGS[((i * i + salt) % 7).min(4) as usize];
    let tags = if i.is_multiple_of(4) {
        json!([tag, "extra"])
    } else {
        json!(tag)
    };
    let owner = OWNERS[((i * i + salt) % 5).min(2) as usize];
    json!({"tag": tags, "doc": format!("d{}", (i + salt) % 19), "n": (i % 4) as i64, "flag": i.is_multiple_of(3), "owner": owner})
}

fn fill(s: &Server, name: &str, salt: u64) {
    s.ok(
        "PUT",
        &format!("/collections/{name}"),
        json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 2}),
    );
    let points: Vec<Value> = (0..N)
        .map(|i| json!({"id": i, "vector": vector(i, salt), "payload": payload(i, salt)}))
        .collect();
    s.ok(
        "PUT",
        &format!("/collections/{name}/points?wait=true"),
        json!({"points": points}),
    );
}

/// Point ids by distance to `q` then id (what an exact search answers).
fn ranked(q: &[f32], salt: u64) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = (0..N)
        .map(|i| {
            let v = vector(i, salt);
            (v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().map(|(_, i)| i).collect()
}

fn ids(hits: &Value) -> Vec<u64> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

fn search_ids(s: &Server, name: &str, q: &[f32], limit: usize) -> Vec<u64> {
    let r = s.ok(
        "POST",
        &format!("/collections/{name}/points/query"),
        json!({"query": q, "limit": limit, "params": {"exact": true}}),
    );
    ids(&r["points"])
}

fn aliases(s: &Server, path: &str) -> Vec<(String, String)> {
    let r = s.ok("GET", path, Value::Null);
    r["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alias_name"].as_str().unwrap().to_owned(),
                a["collection_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn change(s: &Server, actions: Value) -> (u16, Value) {
    s.call(
        "POST",
        "/collections/aliases",
        Some(json!({ "actions": actions })),
    )
}

fn pair(a: &str, c: &str) -> (String, String) {
    (a.to_owned(), c.to_owned())
}

/// The model's facet: (value, count) by count descending, then value.
fn model_facet(
    salt: u64,
    key: &str,
    keep: impl Fn(&Value) -> bool,
    limit: usize,
) -> Vec<(Value, u64)> {
    let mut counts: BTreeMap<String, (Value, u64)> = BTreeMap::new();
    for i in 0..N {
        let p = payload(i, salt);
        if !keep(&p) {
            continue;
        }
        let values = match &p[key] {
            Value::Array(a) => a.clone(),
            v => vec![v.clone()],
        };
        let mut seen = Vec::new();
        for v in values {
            if seen.contains(&v) {
                continue;
            }
            seen.push(v.clone());
            counts.entry(v.to_string()).or_insert((v, 0)).1 += 1;
        }
    }
    let mut out: Vec<(Value, u64)> = counts.into_values().collect();
    out.sort_by(|a, b| {
        b.1.cmp(&a.1).then_with(|| match (&a.0, &b.0) {
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (x, y) => x
                .as_i64()
                .cmp(&y.as_i64())
                .then(x.as_bool().cmp(&y.as_bool())),
        })
    });
    out.truncate(limit);
    out
}

fn facet(s: &Server, name: &str, body: Value) -> Vec<(Value, u64)> {
    let r = s.ok("POST", &format!("/collections/{name}/facet"), body);
    r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["value"].clone(), h["count"].as_u64().unwrap()))
        .collect()
}

/// The model's groups of the ranked points by `doc`: (doc, ids) for the best `limit` docs.
fn model_groups(q: &[f32], salt: u64, limit: usize, size: usize) -> Vec<(Value, Vec<u64>)> {
    let mut out: Vec<(Value, Vec<u64>)> = Vec::new();
    for i in ranked(q, salt) {
        let doc = payload(i, salt)["doc"].clone();
        match out.iter().position(|g| g.0 == doc) {
            Some(g) if out[g].1.len() < size => out[g].1.push(i),
            Some(_) => {}
            None if out.len() < limit => out.push((doc, vec![i])),
            None => {}
        }
    }
    out
}

fn groups(r: &Value) -> Vec<(Value, Vec<u64>)> {
    r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["id"].clone(), ids(&g["hits"])))
        .collect()
}

#[test]
fn aliases_facets_and_groups_agree_with_a_model_across_shards_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    fill(&s, "v1", 0);
    fill(&s, "v2", 3);
    let q = [5.0f32, 4.0, 2.0, 1.0];
    assert_eq!(search_ids(&s, "v1", &q, 10), ranked(&q, 0)[..10]);

    // ---- aliases
    let (code, _) = change(
        &s,
        json!([{"create_alias": {"collection_name": "v1", "alias_name": "live"}}]),
    );
    assert_eq!(code, 200);
    assert_eq!(aliases(&s, "/aliases"), vec![pair("live", "v1")]);
    assert_eq!(
        aliases(&s, "/collections/v1/aliases"),
        vec![pair("live", "v1")]
    );
    assert!(aliases(&s, "/collections/v2/aliases").is_empty());
    // The alias works wherever the collection name does.
    assert_eq!(search_ids(&s, "live", &q, 10), ranked(&q, 0)[..10]);
    let count = s.ok("POST", "/collections/live/points/count", json!({}));
    assert_eq!(count["count"], N);
    let info = s.ok("GET", "/collections/live", Value::Null);
    assert_eq!(info["points_count"], N, "{info}");
    assert_eq!(
        s.ok("GET", "/collections/live/exists", Value::Null)["exists"],
        true
    );
    let page = s.ok(
        "POST",
        "/collections/live/points/scroll",
        json!({"limit": 3}),
    );
    assert_eq!(ids(&page["points"]), vec![0, 1, 2]);
    // A write through the alias lands in its collection.
    s.ok(
        "PUT",
        "/collections/live/points?wait=true",
        json!({"points": [{"id": 100000, "vector": [0.0, 0.0, 0.0, 0.0], "payload": {"tag": "x"}}]}),
    );
    let got = s.ok(
        "POST",
        "/collections/v1/points",
        json!({"ids": [100000], "with_payload": true}),
    );
    assert_eq!(got[0]["payload"]["tag"], "x");
    s.ok(
        "POST",
        "/collections/live/points/delete?wait=true",
        json!({"points": [100000]}),
    );

    // Refusals, each naming what is wrong, and a failing batch changes nothing.
    let (code, body) = change(
        &s,
        json!([{"create_alias": {"collection_name": "nope", "alias_name": "x"}}]),
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body["status"]["error"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let (code, body) = change(
        &s,
        json!([{"create_alias": {"collection_name": "v1", "alias_name": "v2"}}]),
    );
    assert!(code == 409 || code == 400, "{code} {body}");
    assert!(
        body["status"]["error"].as_str().unwrap().contains("v2"),
        "{body}"
    );
    let (code, body) = change(&s, json!([{"delete_alias": {"alias_name": "ghost"}}]));
    assert_eq!(code, 404, "{body}");
    assert!(
        body["status"]["error"].as_str().unwrap().contains("ghost"),
        "{body}"
    );
    let (code, _) = change(
        &s,
        json!([
            {"delete_alias": {"alias_name": "live"}},
            {"create_alias": {"collection_name": "v2", "alias_name": "live"}},
            {"create_alias": {"collection_name": "missing", "alias_name": "other"}},
        ]),
    );
    assert_eq!(code, 404);
    assert_eq!(aliases(&s, "/aliases"), vec![pair("live", "v1")]);
    assert_eq!(search_ids(&s, "live", &q, 10), ranked(&q, 0)[..10]);
    let (code, body) = s.call(
        "PUT",
        "/collections/live",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}})),
    );
    assert!(code == 400 || code == 409, "{code} {body}");

    // The zero-downtime swap: one request moves the alias to the re-indexed collection.
    let (code, body) = change(
        &s,
        json!([
            {"delete_alias": {"alias_name": "live"}},
            {"create_alias": {"collection_name": "v2", "alias_name": "live"}},
        ]),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(aliases(&s, "/aliases"), vec![pair("live", "v2")]);
    assert_eq!(search_ids(&s, "live", &q, 10), ranked(&q, 3)[..10]);
    assert_ne!(ranked(&q, 3)[..10], ranked(&q, 0)[..10]);
    // Rename, and a second alias of v1.
    let (code, _) = change(
        &s,
        json!([
            {"rename_alias": {"old_alias_name": "live", "new_alias_name": "prod"}},
            {"create_alias": {"collection_name": "v1", "alias_name": "old"}},
        ]),
    );
    assert_eq!(code, 200);
    assert_eq!(
        aliases(&s, "/aliases"),
        vec![pair("old", "v1"), pair("prod", "v2")]
    );
    assert_eq!(
        aliases(&s, "/collections/v2/aliases"),
        vec![pair("prod", "v2")]
    );
    let (code, _) = s.call("POST", "/collections/live/points/count", Some(json!({})));
    assert_eq!(code, 404);

    // ---- facets (summed across both shards), through an alias too
    for (field, schema) in [
        ("tag", "keyword"),
        ("n", "integer"),
        ("flag", "bool"),
        ("owner", "uuid"),
    ] {
        s.ok(
            "PUT",
            "/collections/v2/index?wait=true",
            json!({"field_name": field, "field_schema": schema}),
        );
    }
    assert_eq!(
        facet(&s, "v2", json!({"key": "tag"})),
        model_facet(3, "tag", |_| true, 10)
    );
    assert_eq!(
        facet(&s, "prod", json!({"key": "tag", "limit": 2, "exact": true})),
        model_facet(3, "tag", |_| true, 2)
    );
    let filter = json!({"must": [{"key": "flag", "match": {"value": true}}]});
    assert_eq!(
        facet(&s, "v2", json!({"key": "tag", "filter": filter})),
        model_facet(3, "tag", |p| p["flag"] == true, 10)
    );
    assert_eq!(
        facet(&s, "v2", json!({"key": "n"})),
        model_facet(3, "n", |_| true, 10)
    );
    assert_eq!(
        facet(&s, "v2", json!({"key": "flag"})),
        model_facet(3, "flag", |_| true, 10)
    );
    assert_eq!(
        facet(&s, "v2", json!({"key": "owner"})),
        model_facet(3, "owner", |_| true, 10)
    );
    let (code, body) = s.call("POST", "/collections/v2/facet", Some(json!({"key": "doc"})));
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"]["error"].as_str().unwrap().contains("`doc`"),
        "{body}"
    );

    // ---- groups: exact search, grouped by document, across both shards
    for (limit, size) in [(4usize, 3usize), (6, 1), (2, 5)] {
        let want = model_groups(&q, 0, limit, size);
        let r = s.ok(
            "POST",
            "/collections/old/points/query/groups",
            json!({"query": q, "group_by": "doc", "group_size": size, "limit": limit,
                   "params": {"exact": true}, "with_payload": true}),
        );
        assert_eq!(groups(&r), want, "query/groups {limit}x{size}");
        let first = &r["groups"][0]["hits"][0];
        assert_eq!(first["payload"]["doc"], r["groups"][0]["id"]);
        let r = s.ok(
            "POST",
            "/collections/v1/points/search/groups",
            json!({"vector": q, "group_by": "doc", "group_size": size, "limit": limit,
                   "params": {"exact": true}}),
        );
        assert_eq!(groups(&r), want, "search/groups {limit}x{size}");
    }
    // Grouped by an array field: a point joins each of its values' groups.
    let r = s.ok(
        "POST",
        "/collections/v1/points/query/groups",
        json!({"query": q, "group_by": "tag", "group_size": 2, "limit": 10, "params": {"exact": true}}),
    );
    let got = groups(&r);
    assert!(got.iter().any(|g| g.0 == "extra"), "{r}");
    for (tag, members) in &got {
        for id in members {
            let p = payload(*id, 0);
            assert!(p["tag"] == *tag || p["tag"].as_array().is_some_and(|a| a.contains(tag)));
        }
    }

    // ---- deleting a collection drops its aliases; aliases survive a restart
    s.ok("DELETE", "/collections/v1", Value::Null);
    assert_eq!(aliases(&s, "/aliases"), vec![pair("prod", "v2")]);
    assert!(s.terminate().success());
    let s = Server::start(dir.path(), &[]);
    assert_eq!(aliases(&s, "/aliases"), vec![pair("prod", "v2")]);
    assert_eq!(search_ids(&s, "prod", &q, 10), ranked(&q, 3)[..10]);
}

/// Aliases are cluster metadata: made through one node (forwarded to the metadata leader),
/// swapped through another, seen and used by every node; facets and groups through an alias
/// on a node that holds only some of the shards.
#[test]
fn aliases_facets_and_groups_in_a_three_node_cluster() {
    use common::cluster::{TestCluster, wait_for};
    use std::time::Duration;
    let c = TestCluster::start(3, &[]);
    for (name, salt) in [("c1", 0u64), ("c2", 3)] {
        c.ok(
            0,
            "PUT",
            &format!("/collections/{name}"),
            json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 3, "replication_factor": 1}),
        );
        let points: Vec<Value> = (0..N)
            .map(|i| json!({"id": i, "vector": vector(i, salt), "payload": payload(i, salt)}))
            .collect();
        c.ok(
            1,
            "PUT",
            &format!("/collections/{name}/points?wait=true"),
            json!({ "points": points }),
        );
        c.ok(
            2,
            "PUT",
            &format!("/collections/{name}/index?wait=true"),
            json!({"field_name": "tag", "field_schema": "keyword"}),
        );
    }
    // Every node reports the whole collection's payload schema, each shard counted from its
    // replica wherever it lives (a node holds one of the three shards).
    for i in 0..3 {
        wait_for("the schema on every node", Duration::from_secs(10), || {
            let info = c.ok(i, "GET", "/collections/c1", Value::Null);
            let tag = &info["payload_schema"]["tag"];
            (tag["data_type"] == "keyword" && tag["points"] == N).then_some(())
        });
    }
    let seen_by = |i: usize, want: Vec<(String, String)>| {
        wait_for("the alias on every node", Duration::from_secs(10), || {
            let r = c.ok(i, "GET", "/aliases", Value::Null);
            let got: Vec<(String, String)> = r["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    pair(
                        a["alias_name"].as_str().unwrap(),
                        a["collection_name"].as_str().unwrap(),
                    )
                })
                .collect();
            (got == want).then_some(())
        })
    };
    c.ok(
        1,
        "POST",
        "/collections/aliases",
        json!({"actions": [{"create_alias": {"collection_name": "c1", "alias_name": "live"}}]}),
    );
    for i in 0..3 {
        seen_by(i, vec![pair("live", "c1")]);
    }
    let q = [5.0f32, 4.0, 2.0, 1.0];
    for i in 0..3 {
        let r = c.ok(
            i,
            "POST",
            "/collections/live/points/query",
            json!({"query": q, "limit": 10, "params": {"exact": true}}),
        );
        assert_eq!(ids(&r["points"]), ranked(&q, 0)[..10], "node {i}");
    }
    c.ok(
        2,
        "POST",
        "/collections/aliases",
        json!({"actions": [
            {"delete_alias": {"alias_name": "live"}},
            {"create_alias": {"collection_name": "c2", "alias_name": "live"}},
        ]}),
    );
    for i in 0..3 {
        seen_by(i, vec![pair("live", "c2")]);
        let r = c.ok(
            i,
            "POST",
            "/collections/live/facet",
            json!({"key": "tag", "limit": 3}),
        );
        let got: Vec<(Value, u64)> = r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["value"].clone(), h["count"].as_u64().unwrap()))
            .collect();
        assert_eq!(got, model_facet(3, "tag", |_| true, 3), "node {i}");
        let r = c.ok(
            i,
            "POST",
            "/collections/live/points/query/groups",
            json!({"query": q, "group_by": "doc", "group_size": 2, "limit": 3, "params": {"exact": true}}),
        );
        assert_eq!(groups(&r), model_groups(&q, 3, 3, 2), "node {i}");
    }
}
