//! Payload indexes, payload updates and ordered scroll over REST, checked against a model of the
//! same points: the payloads the test itself tracks, filtered and ordered by brute force.

mod common;

use common::Server;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const N: u64 = 300;

fn payload_of(i: u64) -> Value {
    json!({"group": i % 5, "tag": format!("t{}", i % 3), "price": (i * 37 % 101) as f64 / 4.0})
}

/// Ids the model says match `pred`, sorted.
fn model_ids(
    model: &BTreeMap<u64, Map<String, Value>>,
    pred: impl Fn(&Map<String, Value>) -> bool,
) -> Vec<u64> {
    model
        .iter()
        .filter(|(_, p)| pred(p))
        .map(|(id, _)| *id)
        .collect()
}

/// Every point matching `filter`, by scrolling all pages.
fn scroll_ids(s: &Server, filter: Value) -> Vec<u64> {
    let mut out = Vec::new();
    let mut offset = Value::Null;
    loop {
        let page = s.ok(
            "POST",
            "/collections/p/points/scroll",
            json!({"filter": filter, "limit": 64, "offset": offset, "with_payload": false}),
        );
        out.extend(
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
    out.sort_unstable();
    out
}

fn payloads(s: &Server) -> BTreeMap<u64, Map<String, Value>> {
    let page = s.ok(
        "POST",
        "/collections/p/points/scroll",
        json!({"limit": 1000, "with_payload": true}),
    );
    page["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let payload = p["payload"].as_object().cloned().unwrap_or_default();
            (p["id"].as_u64().unwrap(), payload)
        })
        .collect()
}

#[test]
fn payload_indexes_updates_and_order_by_agree_with_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.ok(
        "PUT",
        "/collections/p",
        json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 2}),
    );
    let points: Vec<Value> = (0..N)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, 0.5, (i % 7) as f32], "payload": payload_of(i)}))
        .collect();
    s.ok(
        "PUT",
        "/collections/p/points?wait=true",
        json!({"points": points}),
    );
    let mut model: BTreeMap<u64, Map<String, Value>> = (0..N)
        .map(|i| (i, payload_of(i).as_object().cloned().unwrap()))
        .collect();

    // Indexes: created on every shard, reported in the collection info.
    s.ok(
        "PUT",
        "/collections/p/index?wait=true",
        json!({"field_name": "tag", "field_schema": "keyword"}),
    );
    s.ok(
        "PUT",
        "/collections/p/index?wait=true",
        json!({"field_name": "price", "field_schema": {"type": "float"}}),
    );
    let info = s.ok("GET", "/collections/p", Value::Null);
    assert_eq!(
        info["payload_schema"]["tag"]["data_type"], "keyword",
        "{info}"
    );
    assert_eq!(info["payload_schema"]["tag"]["points"], N);
    assert_eq!(info["payload_schema"]["price"]["data_type"], "float");

    // Filters over indexed fields agree with the model.
    let f = json!({"must": [{"key": "tag", "match": {"value": "t1"}}, {"key": "price", "range": {"gte": 5.0, "lt": 20.0}}]});
    let want = model_ids(&model, |p| {
        p["tag"] == "t1" && (5.0..20.0).contains(&p["price"].as_f64().unwrap())
    });
    assert!(!want.is_empty());
    assert_eq!(scroll_ids(&s, f.clone()), want);
    let count = s.ok("POST", "/collections/p/points/count", json!({"filter": f}));
    assert_eq!(count["count"], want.len());

    // set_payload by filter: merge a key into every t2 point.
    s.ok(
        "POST",
        "/collections/p/points/payload?wait=true",
        json!({"payload": {"tag": "hot", "flag": true}, "filter": {"must": [{"key": "tag", "match": {"value": "t2"}}]}}),
    );
    for p in model.values_mut() {
        if p["tag"] == "t2" {
            p.insert("tag".into(), json!("hot"));
            p.insert("flag".into(), json!(true));
        }
    }
    // overwrite_payload by ids.
    s.ok(
        "PUT",
        "/collections/p/points/payload?wait=true",
        json!({"payload": {"tag": "t1", "price": 99.0}, "points": [3, 4, 5]}),
    );
    for id in [3, 4, 5] {
        model.insert(
            id,
            json!({"tag": "t1", "price": 99.0})
                .as_object()
                .cloned()
                .unwrap(),
        );
    }
    // delete_payload keys by ids, clear_payload by filter.
    s.ok(
        "POST",
        "/collections/p/points/payload/delete?wait=true",
        json!({"keys": ["price"], "points": [10, 11, 12]}),
    );
    for id in [10, 11, 12] {
        model.get_mut(&id).unwrap().remove("price");
    }
    s.ok(
        "POST",
        "/collections/p/points/payload/clear?wait=true",
        json!({"filter": {"must": [{"key": "group", "match": {"value": 4}}]}}),
    );
    for p in model.values_mut() {
        if p.get("group") == Some(&json!(4)) {
            p.clear();
        }
    }
    assert_eq!(payloads(&s), model, "payloads after the updates");

    // The indexes followed the updates.
    for tag in ["t0", "t1", "hot", "t2"] {
        let got = scroll_ids(
            &s,
            json!({"must": [{"key": "tag", "match": {"value": tag}}]}),
        );
        assert_eq!(
            got,
            model_ids(&model, |p| p.get("tag") == Some(&json!(tag))),
            "tag {tag}"
        );
    }
    let got = scroll_ids(
        &s,
        json!({"must": [{"key": "price", "range": {"gt": 20.0}}]}),
    );
    let want = model_ids(&model, |p| {
        p.get("price")
            .and_then(Value::as_f64)
            .is_some_and(|v| v > 20.0)
    });
    assert_eq!(got, want);

    // order_by on the float index, across both shards, both directions, with start_from.
    for (direction, start) in [("asc", Value::Null), ("desc", json!(15.0))] {
        let page = s.ok(
            "POST",
            "/collections/p/points/scroll",
            json!({"limit": 25, "with_payload": true,
                   "order_by": {"key": "price", "direction": direction, "start_from": start}}),
        );
        let got: Vec<(f64, u64)> = page["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["payload"]["price"].as_f64().unwrap(),
                    p["id"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut want: Vec<(f64, u64)> = model
            .iter()
            .filter_map(|(id, p)| p.get("price").and_then(Value::as_f64).map(|v| (v, *id)))
            .filter(|(v, _)| {
                start.as_f64().is_none_or(|s| {
                    if direction == "desc" {
                        *v <= s
                    } else {
                        *v >= s
                    }
                })
            })
            .collect();
        want.sort_by(|a, b| {
            let by = if direction == "desc" {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            };
            by.then(a.1.cmp(&b.1))
        });
        want.truncate(25);
        assert_eq!(got, want, "order_by {direction}");
    }

    // Bad input: a 400 naming the problem, nothing changed.
    for (method, path, body, needle) in [
        (
            "PUT",
            "/collections/p/index",
            json!({"field_name": "x", "field_schema": "geo3d"}),
            "not supported",
        ),
        (
            "PUT",
            "/collections/p/index",
            json!({"field_name": "x"}),
            "field_schema",
        ),
        (
            "PUT",
            "/collections/p/index",
            json!({"field_name": "x", "field_schema": {"type": "keyword", "is_tenant": true}}),
            "is_tenant",
        ),
        (
            "POST",
            "/collections/p/points/payload",
            json!({"payload": {"a": 1}}),
            "exactly one",
        ),
        (
            "POST",
            "/collections/p/points/scroll",
            json!({"order_by": "tag"}),
            "order_by",
        ),
        (
            "POST",
            "/collections/p/points/scroll",
            json!({"order_by": {"key": "price", "direction": "up"}}),
            "direction",
        ),
        (
            "POST",
            "/collections/p/points/scroll",
            json!({"order_by": "price", "offset": 3}),
            "offset",
        ),
    ] {
        let (status, v) = s.call(method, path, Some(body.clone()));
        assert_eq!(status, 400, "{path} {body}: {v}");
        let msg = v["status"]["error"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    let (status, _) = s.call(
        "PUT",
        "/collections/nope/index",
        Some(json!({"field_name": "x", "field_schema": "keyword"})),
    );
    assert_eq!(status, 404);

    // Dropping an index removes it from the schema; filters on the field still work (by scan).
    s.ok("DELETE", "/collections/p/index/tag?wait=true", Value::Null);
    let info = s.ok("GET", "/collections/p", Value::Null);
    assert!(info["payload_schema"].get("tag").is_none(), "{info}");
    let got = scroll_ids(
        &s,
        json!({"must": [{"key": "tag", "match": {"value": "hot"}}]}),
    );
    assert_eq!(
        got,
        model_ids(&model, |p| p.get("tag") == Some(&json!("hot")))
    );
    assert_eq!(payloads(&s), model);
}
