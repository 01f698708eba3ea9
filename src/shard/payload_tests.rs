//! Filters, payload indexes and payload updates against a brute-force model: random payloads
//! (every value kind, type mismatches, arrays, nested objects), random filters of every condition
//! kind, checked through count, scroll and search, without indexes, with indexes, after seals,
//! payload updates, compaction and a snapshot restore.

use super::segment::SegBody;
use super::tests::{config, random_vec};
use super::*;
use crate::index::Metric;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const WORDS: [&str; 8] = [
    "red", "green", "blue", "black", "white", "fox", "dog", "the",
];
const UUIDS: [&str; 3] = [
    "550e8400-e29b-41d4-a716-446655440000",
    "550E8400-E29B-41D4-A716-446655440000",
    "9b2f5a4c-0c1e-4a57-8d0e-5c1e2f3a4b5c",
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn datetime(rng: &mut ChaCha8Rng) -> String {
    format!(
        "2024-03-{:02}T{:02}:{:02}:00{}",
        rng.random_range(1..29),
        rng.random_range(0..24),
        rng.random_range(0..60),
        *pick(rng, &["Z", "+02:00", ""])
    )
}

fn text(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(1..6);
    (0..n)
        .map(|_| *pick(rng, &WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A payload with every kind of value, wrong types and missing keys included.
fn payload(rng: &mut ChaCha8Rng) -> Value {
    let mut p = serde_json::Map::new();
    let mut maybe = |rng: &mut ChaCha8Rng, key: &str, v: Value| {
        if rng.random_range(0..10) < 8 {
            p.insert(key.into(), v);
        }
    };
    let kw = match rng.random_range(0..10) {
        0 => json!([*pick(rng, &WORDS), *pick(rng, &WORDS)]),
        1 => json!(rng.random_range(0..3)),
        2 => Value::Null,
        _ => json!(*pick(rng, &WORDS)),
    };
    maybe(rng, "kw", kw);
    let n = match rng.random_range(0..10) {
        0 => json!(rng.random_range(0..20) as f64 + 0.5),
        1 => json!([rng.random_range(0..20), rng.random_range(0..20)]),
        2 => json!("7"),
        _ => json!(rng.random_range(0..20)),
    };
    maybe(rng, "n", n);
    let f = json!(rng.random_range(-10.0f64..10.0));
    maybe(rng, "f", f);
    let b = json!(rng.random_range(0..2) == 1);
    maybe(rng, "b", b);
    let u = json!(*pick(rng, &UUIDS));
    maybe(rng, "u", u);
    let t = match rng.random_range(0..8) {
        0 => json!("not a date"),
        1 => json!([datetime(rng), datetime(rng)]),
        _ => json!(datetime(rng)),
    };
    maybe(rng, "t", t);
    let txt = match rng.random_range(0..6) {
        0 => json!([text(rng), text(rng)]),
        _ => json!(text(rng)),
    };
    maybe(rng, "txt", txt);
    let items: Vec<Value> = (0..rng.random_range(0..4))
        .map(|_| json!({"sku": *pick(rng, &WORDS), "qty": rng.random_range(0..5)}))
        .collect();
    maybe(rng, "items", Value::Array(items));
    let loc =
        json!({"lon": rng.random_range(-1.0f64..1.0), "lat": rng.random_range(50.0f64..52.0)});
    maybe(rng, "loc", loc);
    let addr = json!({"city": *pick(rng, &WORDS)});
    maybe(rng, "addr", addr);
    Value::Object(p)
}

fn bounds(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> Value {
    let a = rng.random_range(lo..hi);
    let b = a + rng.random_range(0.0..(hi - lo) / 2.0);
    match rng.random_range(0..4) {
        0 => json!({"gte": a, "lt": b}),
        1 => json!({"gt": a}),
        2 => json!({"lte": b}),
        _ => json!({"gt": a.floor(), "lte": b.floor()}),
    }
}

/// One random condition of any kind; `depth` bounds nested filters.
fn condition(rng: &mut ChaCha8Rng, depth: u32) -> Value {
    let kinds = if depth == 0 { 19 } else { 22 };
    match rng.random_range(0..kinds) {
        0 => json!({"key": "kw", "match": {"value": *pick(rng, &WORDS)}}),
        1 => json!({"key": "kw", "match": {"any": [*pick(rng, &WORDS), *pick(rng, &WORDS)]}}),
        2 => json!({"key": "kw", "match": {"except": [*pick(rng, &WORDS), *pick(rng, &WORDS)]}}),
        3 => json!({"key": "n", "match": {"value": rng.random_range(0..20)}}),
        4 => json!({"key": "n", "range": bounds(rng, 0.0, 20.0)}),
        5 => json!({"key": "f", "range": bounds(rng, -10.0, 10.0)}),
        6 => json!({"key": "b", "match": {"value": rng.random_range(0..2) == 1}}),
        7 => json!({"key": "u", "match": {"value": *pick(rng, &UUIDS)}}),
        8 => {
            let (a, b) = (datetime(rng), datetime(rng));
            let (a, b) = if values::parse_datetime(&a) <= values::parse_datetime(&b) {
                (a, b)
            } else {
                (b, a)
            };
            json!({"key": "t", "range": {"gte": a, "lt": b}})
        }
        9 => json!({"key": "txt", "match": {"text": *pick(rng, &WORDS)}}),
        10 => {
            json!({"key": "txt", "match": {"phrase": format!("{} {}", pick(rng, &WORDS), pick(rng, &WORDS))}})
        }
        11 => json!({"key": "items[].sku", "match": {"value": *pick(rng, &WORDS)}}),
        12 => json!({"key": "items", "values_count": {"gte": rng.random_range(0..4)}}),
        13 => json!({"is_empty": {"key": *pick(rng, &["kw", "items", "n"])}}),
        14 => json!({"is_null": {"key": "kw"}}),
        15 => {
            json!({"key": "loc", "geo_radius": {"center": {"lon": 0.0, "lat": 51.0}, "radius": rng.random_range(10_000.0..80_000.0)}})
        }
        16 => {
            json!({"key": "loc", "geo_bounding_box": {"top_left": {"lon": -0.5, "lat": 51.5}, "bottom_right": {"lon": rng.random_range(0.0..1.0), "lat": 50.5}}})
        }
        17 => json!({"key": "loc", "geo_polygon": {"exterior": {"points": [
                {"lon": -1.0, "lat": 50.0}, {"lon": 1.0, "lat": 50.0}, {"lon": 0.0, "lat": 52.0}, {"lon": -1.0, "lat": 50.0}]},
            "interiors": [{"points": [{"lon": -0.2, "lat": 50.5}, {"lon": 0.2, "lat": 50.5}, {"lon": 0.0, "lat": 51.0}, {"lon": -0.2, "lat": 50.5}]}]}}),
        18 => json!({"has_id": (0..20).map(|_| rng.random_range(0..3000)).collect::<Vec<u64>>()}),
        19 => json!({"nested": {"key": "items", "filter": {"must": [
                {"key": "sku", "match": {"value": *pick(rng, &WORDS)}},
                {"key": "qty", "range": {"gte": rng.random_range(0..5)}}]}}}),
        _ => filter(rng, depth - 1),
    }
}

fn list(rng: &mut ChaCha8Rng, depth: u32) -> Vec<Value> {
    (0..rng.random_range(1..4))
        .map(|_| condition(rng, depth))
        .collect()
}

/// A random filter: some of must, should, must_not, min_should.
fn filter(rng: &mut ChaCha8Rng, depth: u32) -> Value {
    let mut f = serde_json::Map::new();
    for (i, key) in ["must", "should", "must_not", "min_should"]
        .iter()
        .enumerate()
    {
        if rng.random_range(0..3) == 0 || (i == 0 && f.is_empty() && rng.random_range(0..2) == 0) {
            let l = list(rng, depth);
            let v = if *key == "min_should" {
                let n = rng.random_range(1..=l.len());
                json!({"conditions": l, "min_count": n})
            } else {
                Value::Array(l)
            };
            f.insert((*key).into(), v);
        }
    }
    if f.is_empty() {
        f.insert("must".into(), Value::Array(list(rng, depth)));
    }
    Value::Object(f)
}

/// The live points, as the model sees them.
type Points = BTreeMap<PointId, (Vec<f32>, Payload)>;

fn check(shard: &Shard, model: &Points, rng: &mut ChaCha8Rng, rounds: usize, what: &str) {
    assert_eq!(shard.count(None), model.len(), "{what}: count");
    for round in 0..rounds {
        let json = filter(rng, 1);
        let f: Filter = serde_json::from_value(json.clone()).unwrap();
        let c = f.compile().unwrap_or_else(|e| panic!("{json}: {e}"));
        let expected: Vec<PointId> = model
            .iter()
            .filter(|(id, (_, p))| c.matches(id, Some(p)))
            .map(|(id, _)| *id)
            .collect();
        let ctx = || format!("{what}, round {round}: {json}");
        assert_eq!(shard.count(Some(&c)), expected.len(), "count: {}", ctx());
        let (page, next) = shard.scroll(None, expected.len() + 1, Some(&c), false, false);
        let got: Vec<PointId> = page.iter().map(|r| r.id).collect();
        assert_eq!(got, expected, "scroll: {}", ctx());
        assert_eq!(next, None);
        if expected.len() > 3 {
            let (page, next) = shard.scroll(Some(expected[1]), 2, Some(&c), false, false);
            assert_eq!(
                page.iter().map(|r| r.id).collect::<Vec<_>>(),
                expected[1..3]
            );
            assert_eq!(next, expected.get(3).copied());
        }
        // Exact search returns the model's nearest matching points; the approximate one fills
        // the limit with matching points.
        let q = random_vec(rng, shard.config().dim);
        let mut model_hits: Vec<(f32, PointId)> = model
            .iter()
            .filter(|(id, (_, p))| c.matches(id, Some(p)))
            .map(|(id, (v, _))| (crate::index::distance::distance(Metric::L2, &q, v), *id))
            .collect();
        model_hits.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for exact in [true, false] {
            let hits = shard
                .search(&super::tests::req(&q, 5, Some(&c), exact))
                .unwrap();
            assert_eq!(hits.len(), expected.len().min(5), "search: {}", ctx());
            for h in &hits {
                assert!(
                    expected.binary_search(&h.record.id).is_ok(),
                    "search: {}",
                    ctx()
                );
            }
            if exact {
                let ids: Vec<PointId> = hits.iter().map(|h| h.record.id).collect();
                let want: Vec<PointId> = model_hits.iter().take(5).map(|h| h.1).collect();
                assert_eq!(ids, want, "exact search: {}", ctx());
            }
        }
    }
}

fn upsert(
    shard: &Shard,
    model: &mut Points,
    index: &mut u64,
    rng: &mut ChaCha8Rng,
    ids: std::ops::Range<u64>,
) {
    let dim = shard.config().dim;
    let points: Vec<PointWrite> = ids
        .map(|id| PointWrite {
            id: PointId::Num(id),
            vector: random_vec(rng, dim),
            payload: payload(rng).as_object().cloned(),
        })
        .collect();
    for chunk in points.chunks(200) {
        *index += 1;
        shard
            .apply(
                *index,
                &ShardCommand::Upsert {
                    points: chunk.to_vec(),
                },
            )
            .unwrap();
    }
    for p in points {
        model.insert(p.id, (p.vector, p.payload.unwrap_or_default()));
    }
}

/// Applies a random payload update to the shard and to the model.
/// Deletes every third id below `n` from the shard (one command) and from the model: enough to
/// trigger compaction.
fn delete_every_third(shard: &Shard, model: &mut Points, index: &mut u64, n: u64) {
    *index += 1;
    let doomed: Vec<PointId> = (0..n).filter(|i| i % 3 == 0).map(PointId::Num).collect();
    shard
        .apply(
            *index,
            &ShardCommand::Delete {
                ids: doomed.clone(),
            },
        )
        .unwrap();
    for id in &doomed {
        model.remove(id);
    }
}

fn update(shard: &Shard, model: &mut Points, index: &mut u64, rng: &mut ChaCha8Rng) {
    let selector = if rng.random_range(0..2) == 0 {
        PointSelector::Ids(
            (0..50)
                .map(|_| PointId::Num(rng.random_range(0..3200)))
                .collect(),
        )
    } else {
        PointSelector::Filter(serde_json::from_value(filter(rng, 0)).unwrap())
    };
    let fresh = payload(rng).as_object().cloned().unwrap_or_default();
    let cmd = match rng.random_range(0..5) {
        0 => ShardCommand::SetPayload {
            payload: fresh,
            points: selector.clone(),
            key: None,
        },
        1 => ShardCommand::SetPayload {
            payload: json!({"city": *pick(rng, &WORDS)})
                .as_object()
                .cloned()
                .unwrap(),
            points: selector.clone(),
            key: Some("addr".into()),
        },
        2 => ShardCommand::OverwritePayload {
            payload: fresh,
            points: selector.clone(),
        },
        3 => ShardCommand::DeletePayload {
            keys: vec![(*pick(rng, &["kw", "n", "t", "txt", "addr.city"])).into()],
            points: selector.clone(),
        },
        _ => ShardCommand::ClearPayload {
            points: selector.clone(),
        },
    };
    let targets: Vec<PointId> = match &selector {
        PointSelector::Ids(ids) => ids
            .iter()
            .filter(|id| model.contains_key(id))
            .copied()
            .collect(),
        PointSelector::Filter(f) => {
            let c = f.compile().unwrap();
            model
                .iter()
                .filter(|(id, (_, p))| c.matches(id, Some(p)))
                .map(|(id, _)| *id)
                .collect()
        }
    };
    for id in targets {
        let Some((_, p)) = model.get_mut(&id) else {
            continue;
        };
        match &cmd {
            ShardCommand::SetPayload {
                payload, key: None, ..
            } => {
                p.extend(payload.clone());
            }
            ShardCommand::SetPayload {
                payload,
                key: Some(k),
                ..
            } => {
                let slot = p.entry(k.clone()).or_insert_with(|| json!({}));
                if !slot.is_object() {
                    *slot = json!({});
                }
                slot.as_object_mut().unwrap().extend(payload.clone());
            }
            ShardCommand::OverwritePayload { payload, .. } => *p = payload.clone(),
            ShardCommand::DeletePayload { keys, .. } => {
                for k in keys {
                    if p.remove(k).is_none()
                        && let Some((a, b)) = k.split_once('.')
                        && let Some(o) = p.get_mut(a).and_then(Value::as_object_mut)
                    {
                        o.remove(b);
                    }
                }
            }
            _ => p.clear(),
        }
    }
    *index += 1;
    shard.apply(*index, &cmd).unwrap();
}

fn index_all(shard: &Shard, index: &mut u64) {
    use PayloadFieldType as T;
    for (field, t) in [
        ("kw", T::Keyword),
        ("n", T::Integer),
        ("f", T::Float),
        ("b", T::Bool),
        ("u", T::Uuid),
        ("t", T::Datetime),
        ("txt", T::Text),
        ("items[].sku", T::Keyword),
    ] {
        *index += 1;
        shard
            .apply(
                *index,
                &ShardCommand::CreateFieldIndex {
                    field: field.into(),
                    field_type: t,
                },
            )
            .unwrap();
    }
}

#[test]
fn every_filter_kind_agrees_with_the_model_through_indexes_updates_compaction_and_restore() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let dim = 8;
    let shard = Shard::new_inline_builds(config(dim, Metric::L2, 1000));
    let mut model = Points::new();
    let mut index = 0;
    upsert(&shard, &mut model, &mut index, &mut rng, 0..2500);
    assert!(shard.stats().indexed_segments >= 2, "sealed segments built");
    check(&shard, &model, &mut rng, 120, "no index");

    index_all(&shard, &mut index);
    let schema = shard.payload_schema();
    assert_eq!(schema.len(), 8);
    let with_kw = model
        .values()
        .filter(|(_, p)| {
            values::JsonPath::parse("kw")
                .unwrap()
                .elements(Some(p))
                .iter()
                .any(|v| v.is_string())
        })
        .count();
    assert_eq!(schema["kw"].points, with_kw);
    check(&shard, &model, &mut rng, 120, "indexed");

    // Writes after the indexes exist (the mutable segment's chunks and a new seal), and updates.
    upsert(&shard, &mut model, &mut index, &mut rng, 2000..3200);
    for _ in 0..40 {
        update(&shard, &mut model, &mut index, &mut rng);
    }
    check(&shard, &model, &mut rng, 120, "after payload updates");

    // Deletes enough to compact.
    delete_every_third(&shard, &mut model, &mut index, 3200);
    assert!(shard.stats().compactions > 0, "compacted");
    check(&shard, &model, &mut rng, 120, "after compaction");

    // One index dropped: the field is read from payloads again, with the same answers.
    index += 1;
    shard
        .apply(index, &ShardCommand::DeleteFieldIndex { field: "n".into() })
        .unwrap();
    assert!(!shard.payload_schema().contains_key("n"));
    check(&shard, &model, &mut rng, 60, "one index dropped");

    // Restart: snapshot, restore into a data directory, indexes rebuilt from the schema.
    let dir = tempfile::tempdir().unwrap();
    shard.snapshot(&dir.path().join("snap")).unwrap();
    let restored = Shard::restore_into(
        &dir.path().join("snap"),
        false,
        Some(&dir.path().join("data")),
    )
    .unwrap();
    assert_eq!(restored.payload_schema(), shard.payload_schema());
    check(&restored, &model, &mut rng, 120, "restored");
}

/// A filter's matches listed row by row from the postings of its most selective indexed
/// condition (what a selective filter takes, see `planner::SPARSE_SHARE`) are the rows the
/// set-at-a-time evaluation finds, for every kind of filter, deleted rows excluded.
#[test]
fn matches_listed_from_postings_are_the_matches_of_the_whole_segment() {
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    let shard = Shard::new_inline_builds(config(4, Metric::L2, 1000));
    let mut model = Points::new();
    let mut index = 0;
    upsert(&shard, &mut model, &mut index, &mut rng, 0..2500);
    index_all(&shard, &mut index);
    delete_every_third(&shard, &mut model, &mut index, 900);
    let (mut listed, mut nonempty) = (0, 0);
    for round in 0..400 {
        let json = filter(&mut rng, 1);
        let f: Filter = serde_json::from_value(json.clone()).unwrap();
        let c = f.compile().unwrap();
        for seg in shard.view() {
            let SegBody::Ivf(_) = &seg.body else {
                continue;
            };
            let set = planner::allowed(&seg, Some(&c));
            match planner::matches_listing_any(&seg, &c) {
                planner::Matches::List(rows) => {
                    let want: Vec<u32> = set.iter().map(|r| r as u32).collect();
                    assert_eq!(rows, want, "round {round}: {json}");
                    listed += 1;
                    nonempty += usize::from(!rows.is_empty());
                }
                planner::Matches::Set(s) => assert_eq!(s, set),
                planner::Matches::Posting(d) => assert_eq!(d.rows, set),
            }
        }
    }
    assert!(
        listed > 200 && nonempty > 100,
        "{listed} listed, {nonempty} found rows"
    );
}

/// A filter that is one indexed condition answered by a dense posting, in a segment with no
/// row deleted, takes the posting's own set as its matches (shared, not copied), and that set
/// is the matches; once a row is deleted the matches are a set of their own again, without it.
#[test]
fn a_dense_posting_is_the_matches_until_a_row_is_deleted() {
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    let shard = Shard::new_inline_builds(config(8, Metric::L2, 1000));
    let (mut model, mut index) = (Points::new(), 0);
    upsert(&shard, &mut model, &mut index, &mut rng, 0..1500);
    index_all(&shard, &mut index);
    let single: CompiledFilter = serde_json::from_value::<Filter>(json!({
        "must": [{"key": "b", "match": {"value": true}}]
    }))
    .unwrap()
    .compile()
    .unwrap();
    let with_more: CompiledFilter = serde_json::from_value::<Filter>(json!({
        "must": [{"key": "b", "match": {"value": true}}],
        "must_not": [{"key": "n", "range": {"lt": 0}}]
    }))
    .unwrap()
    .compile()
    .unwrap();
    let built = |shard: &Shard| {
        shard
            .view()
            .into_iter()
            .find(|s| matches!(s.body, SegBody::Ivf(_)))
            .expect("a sealed segment")
    };
    let seg = built(&shard);
    let want = planner::allowed(&seg, Some(&single));
    assert!(want.count() * 32 >= seg.rows, "the posting is dense");
    match planner::matches(&seg, Some(&single)) {
        planner::Matches::Posting(d) => {
            assert_eq!(d.rows, want);
            assert_eq!(d.count as usize, want.count());
        }
        other => panic!("expected the posting's set, got {other:?}"),
    }
    // More than the one condition: a set of its own, with the same rows where `n` is never
    // negative.
    assert!(matches!(
        planner::matches(&seg, Some(&with_more)),
        planner::Matches::Set(_)
    ));

    let doomed = (0..seg.rows)
        .find(|&r| want.contains(r))
        .and_then(|r| seg.body.point(r))
        .unwrap();
    index += 1;
    shard
        .apply(index, &ShardCommand::Delete { ids: vec![doomed] })
        .unwrap();
    let seg = built(&shard);
    let want = planner::allowed(&seg, Some(&single));
    match planner::matches(&seg, Some(&single)) {
        planner::Matches::Set(s) => assert_eq!(s, want),
        other => panic!("expected a set without the deleted row, got {other:?}"),
    }
    assert_eq!(
        shard.count(Some(&single)),
        model
            .iter()
            .filter(|(id, (_, p))| **id != doomed && single.matches(id, Some(p)))
            .count()
    );
}

#[test]
fn order_by_walks_an_indexed_field() {
    let shard = Shard::new_inline_builds(config(4, Metric::L2, 64));
    let points: Vec<PointWrite> = (0..150u64)
        .map(|i| PointWrite {
            id: PointId::Num(i),
            vector: vec![i as f32, 0.0, 1.0, 2.0],
            payload: json!({"n": (i * 37) % 101, "g": i % 2})
                .as_object()
                .cloned(),
        })
        .collect();
    shard.apply(1, &ShardCommand::Upsert { points }).unwrap();
    let order = OrderBy {
        key: "n".into(),
        descending: false,
        start_from: Some(10.0),
    };
    assert!(matches!(
        shard.scroll_ordered(&order, 5, None, true, false),
        Err(ShardError::Payload(m)) if m.contains("`n`")
    ));
    shard
        .apply(
            2,
            &ShardCommand::CreateFieldIndex {
                field: "n".into(),
                field_type: PayloadFieldType::Integer,
            },
        )
        .unwrap();
    let even: Filter =
        serde_json::from_value(json!({"must": [{"key": "g", "match": {"value": 0}}]})).unwrap();
    let even = even.compile().unwrap();
    for descending in [false, true] {
        let order = OrderBy {
            descending,
            ..order.clone()
        };
        let got = shard
            .scroll_ordered(&order, 20, Some(&even), true, false)
            .unwrap();
        let mut want: Vec<(u64, u64)> = (0..150u64)
            .filter(|i| i % 2 == 0)
            .map(|i| ((i * 37) % 101, i))
            .filter(|(n, _)| if descending { *n <= 10 } else { *n >= 10 })
            .collect();
        want.sort_by(|a, b| {
            if descending {
                b.0.cmp(&a.0)
            } else {
                a.0.cmp(&b.0)
            }
            .then(a.1.cmp(&b.1))
        });
        let want: Vec<PointId> = want.iter().take(20).map(|p| PointId::Num(p.1)).collect();
        assert_eq!(
            got.iter().map(|r| r.record.id).collect::<Vec<_>>(),
            want,
            "descending {descending}"
        );
        assert!(
            got.iter()
                .all(|r| r.record.payload.as_ref().unwrap()["n"].as_f64() == Some(r.value))
        );
    }
}

#[test]
fn invalid_payload_commands_are_refused_by_name() {
    let shard = Shard::new(config(4, Metric::L2, 0));
    let bad_index = ShardCommand::CreateFieldIndex {
        field: "a..b".into(),
        field_type: PayloadFieldType::Keyword,
    };
    assert!(
        shard
            .validate(&bad_index)
            .unwrap_err()
            .to_string()
            .contains("a..b")
    );
    let bad_key = ShardCommand::DeletePayload {
        keys: vec!["items[].sku".into()],
        points: PointSelector::Ids(vec![]),
    };
    assert!(
        shard
            .validate(&bad_key)
            .unwrap_err()
            .to_string()
            .contains("items[].sku")
    );
    let bad_filter = ShardCommand::ClearPayload {
        points: PointSelector::Filter(serde_json::from_value(json!({"must": [{"key": "a", "geo_radius": {"center": {"lon": 0.0, "lat": 0.0}, "radius": -1.0}}]})).unwrap()),
    };
    assert!(
        shard
            .validate(&bad_filter)
            .unwrap_err()
            .to_string()
            .contains("geo_radius")
    );
}

/// The sealed segment files in `dir`: each one's stored payload indexes follow `schema` and equal,
/// field by field and posting by posting, the ones a fresh pass over its payloads builds.
/// Returns how many files there were.
fn stored_indexes_equal_fresh(dir: &std::path::Path, schema: &PayloadSchema) -> usize {
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != segment::SEGMENT_EXT) {
            continue;
        }
        let seg = segment::open_segment_file(&path).unwrap();
        let loaded = seg.payload_index();
        assert!(loaded.follows(schema), "{}", path.display());
        let rows = seg.points.len();
        let mut fresh = payload_index::PayloadIndex::default();
        fresh.sync(schema, rows, |r| seg.payloads[r].as_deref());
        same_fields(&loaded, &fresh, rows, &path.display().to_string());
        files += 1;
    }
    files
}

/// Whether two indexes of `rows` rows are equal field by field (naming the first that is not).
fn same_fields(
    a: &payload_index::PayloadIndex,
    b: &payload_index::PayloadIndex,
    rows: usize,
    what: &str,
) {
    let (a, b) = (a.to_stored(rows as u32), b.to_stored(rows as u32));
    assert_eq!(a.fields.len(), b.fields.len(), "{what}");
    for (x, y) in a.fields.iter().zip(&b.fields) {
        assert!(x == y, "{what}: field {} differs", x.name);
    }
}

fn schema_of(shard: &Shard) -> PayloadSchema {
    read(&shard.inner.state).schema.clone()
}

fn set_index(shard: &Shard, index: &mut u64, field: &str, t: Option<PayloadFieldType>) {
    *index += 1;
    let cmd = match t {
        Some(field_type) => ShardCommand::CreateFieldIndex {
            field: field.into(),
            field_type,
        },
        None => ShardCommand::DeleteFieldIndex {
            field: field.into(),
        },
    };
    shard.apply(*index, &cmd).unwrap();
}

/// Payload indexes stored in segment files: what a file gives back equals what a pass over its
/// payloads builds, and the shard answers random filters as brute force does, from built
/// segments, after a restart (indexes read from the files), after compaction (the merged file
/// stores its own), and after the schema changed since the files were written (a field indexed
/// later is built on load, a dropped one ignored).
#[test]
fn stored_indexes_answer_as_fresh_ones_and_as_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(1313);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let shard = Shard::with_state(config(8, Metric::L2, 1000), None, false, Some(data.clone()));
    let mut model = Points::new();
    let mut index = 0;
    index_all(&shard, &mut index);
    upsert(&shard, &mut model, &mut index, &mut rng, 0..2500);
    assert_eq!(shard.stats().indexed_segments, 2);
    let schema = schema_of(&shard);
    assert_eq!(stored_indexes_equal_fresh(&data, &schema), 2);
    check(&shard, &model, &mut rng, 80, "built with stored indexes");

    // Restart: the files are linked into a new data directory and their indexes read back.
    let restart = |shard: &Shard, name: &str| {
        let snap = root.path().join(format!("snap-{name}"));
        shard.snapshot(&snap).unwrap();
        let data = root.path().join(format!("data-{name}"));
        let restored = Shard::restore_into(&snap, false, Some(&data)).unwrap();
        (restored, data)
    };
    let (restored, data2) = restart(&shard, "1");
    assert_eq!(stored_indexes_equal_fresh(&data2, &schema), 2);
    check(&restored, &model, &mut rng, 80, "restored");

    // Compaction writes the merged segment's indexes into its file.
    delete_every_third(&restored, &mut model, &mut index, 2500);
    assert!(restored.stats().compactions > 0, "compacted");
    assert!(stored_indexes_equal_fresh(&data2, &schema) >= 1);
    check(&restored, &model, &mut rng, 80, "compacted");

    // The schema changes after the files were written: `n` dropped, `addr.city` added.
    set_index(&restored, &mut index, "n", None);
    set_index(&restored, &mut index, "kw", None);
    set_index(&restored, &mut index, "kw", Some(PayloadFieldType::Integer));
    set_index(
        &restored,
        &mut index,
        "addr.city",
        Some(PayloadFieldType::Keyword),
    );
    let (again, _) = restart(&restored, "2");
    let schema = schema_of(&again);
    assert!(!schema.contains_key("n") && schema["kw"] == PayloadFieldType::Integer);
    let view = again.view();
    for seg in &view {
        if let SegBody::Ivf(ivf) = &seg.body {
            let loaded = ivf.payload_index();
            assert!(loaded.follows(&schema));
            let mut fresh = payload_index::PayloadIndex::default();
            fresh.sync(&schema, seg.rows, |r| ivf.payloads[r].as_deref());
            same_fields(&loaded, &fresh, seg.rows, "after the schema changed");
        }
    }
    check(
        &again,
        &model,
        &mut rng,
        80,
        "schema changed since the files",
    );
}

/// Time to open a shard of 100,000 sealed points with four indexed fields, from its snapshot:
/// with the indexes read from the segment files, and with them built from payloads (the files
/// written before the fields were indexed, which is what every open cost before indexes were
/// stored). Median of 3. Run by hand:
/// `cargo test --lib shard::payload_tests::open_time -- --ignored --nocapture` (the test profile
/// is optimised).
#[test]
#[ignore = "a measurement"]
fn open_time() {
    let n = 100_000u64;
    let root = tempfile::tempdir().unwrap();
    let fields = [
        ("kw", PayloadFieldType::Keyword),
        ("n", PayloadFieldType::Integer),
        ("f", PayloadFieldType::Float),
        ("t", PayloadFieldType::Datetime),
    ];
    let mut medians = Vec::new();
    for stored in [true, false] {
        let data = root.path().join(format!("data-{stored}"));
        std::fs::create_dir_all(&data).unwrap();
        let shard = Shard::with_state(config(16, Metric::L2, 25_000), None, false, Some(data));
        let mut index = 0;
        let create = |index: &mut u64| {
            for (f, t) in fields {
                set_index(&shard, index, f, Some(t));
            }
        };
        if stored {
            create(&mut index);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for start in (0..n).step_by(1000) {
            let points: Vec<PointWrite> = (start..start + 1000)
                .map(|i| PointWrite {
                    id: PointId::Num(i),
                    vector: random_vec(&mut rng, 16),
                    payload: json!({
                        "kw": WORDS[(i % 8) as usize],
                        "n": i % 1000,
                        "f": (i as f64).sqrt(),
                        "t": format!("2024-03-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24),
                        "other": format!("point {i}"),
                    })
                    .as_object()
                    .cloned(),
                })
                .collect();
            index += 1;
            shard
                .apply(index, &ShardCommand::Upsert { points })
                .unwrap();
        }
        if !stored {
            create(&mut index);
        }
        assert_eq!(shard.stats().indexed_points, n as usize);
        let snap = root.path().join(format!("snap-{stored}"));
        shard.snapshot(&snap).unwrap();
        let mut times = Vec::new();
        for run in 0..3 {
            let to = root.path().join(format!("open-{stored}-{run}"));
            let t = std::time::Instant::now();
            let opened = Shard::restore_into(&snap, false, Some(&to)).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(opened.payload_schema().len(), 4);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "open {n} sealed points, 4 indexed fields, indexes {}: {:.1} ms median of {times:.1?}",
            if stored {
                "stored in the files"
            } else {
                "built from payloads"
            },
            times[1]
        );
        medians.push(times[1]);
    }
    println!("speed-up: {:.2}x", medians[1] / medians[0]);
}
