//! Deleted vectors (Qdrant's `delete_vectors`) against a model of which point has which
//! vector: searches of a lane never return a point without that lane's vector and otherwise
//! answer as brute force over the points that have it; `has_vector` counts what the model
//! counts; reads show exactly the vectors a point has; and all of it survives payload updates,
//! vector updates, upserts, purges (compaction) and a snapshot restored.

use super::filter::Filter;
use super::lanes::{Lanes, is_absent};
use super::tests::{config, point, random_vec, req};
use super::*;
use crate::index::{Metric, distance};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;

const DIMS: [usize; 2] = [8, 6];
const METRICS: [Metric; 2] = [Metric::L2, Metric::Cosine];

fn lanes() -> Lanes {
    Lanes::from_shards(vec![
        Shard::new_inline_builds(config(DIMS[0], METRICS[0], 600)),
        Shard::new_inline_builds(config(DIMS[1], METRICS[1], 600)),
    ])
}

/// A point's vector per lane (`None`: it has none).
type Parts = [Option<Vec<f32>>; 2];

/// Each live point's vectors and its group.
#[derive(Default, Clone)]
struct Model {
    points: BTreeMap<u64, (Parts, u64)>,
}

impl Model {
    fn packed(&self, id: u64) -> Vec<f32> {
        let (parts, _) = &self.points[&id];
        (0..2)
            .flat_map(|l| match &parts[l] {
                Some(v) => v.clone(),
                None => vec![f32::NAN; DIMS[l]],
            })
            .collect()
    }

    fn upsert(&mut self, lanes: &Lanes, index: u64, ids: &[u64], rng: &mut ChaCha8Rng) {
        for &id in ids {
            // Every seventh point comes without lane 1's vector (a NaN part).
            let second = (id % 7 != 3).then(|| random_vec(rng, DIMS[1]));
            self.points
                .insert(id, ([Some(random_vec(rng, DIMS[0])), second], id % 4));
        }
        let points = ids
            .iter()
            .map(|&id| point(id, self.packed(id), id % 4))
            .collect();
        assert!(
            lanes
                .apply(index, &ShardCommand::Upsert { points })
                .unwrap()
        );
    }

    fn has(&self, lane: usize) -> impl Iterator<Item = (u64, &Vec<f32>)> {
        self.points
            .iter()
            .filter_map(move |(id, (parts, _))| parts[lane].as_ref().map(|v| (*id, v)))
    }
}

/// `{"has_vector": ..}` as the router sends it, resolved to `lane` (negated with `not`).
fn has_vector(lane: u32, not: bool) -> Filter {
    let cond = json!({"has_vector": "v"});
    let json = if not {
        json!({ "must_not": [cond] })
    } else {
        json!({ "must": [cond] })
    };
    let mut f: Filter = serde_json::from_value(json).unwrap();
    f.visit_conditions_mut(&mut |c| {
        if c.has_vector.is_some() {
            c.has_vector_lane = Some(lane);
        }
    });
    f
}

fn search(lane: &Shard, q: &[f32], exact: bool, filter: Option<&CompiledFilter>) -> Vec<PointId> {
    let req = SearchRequest {
        rerank: 4,
        ..req(q, 10, filter, exact)
    };
    lane.search(&req)
        .unwrap()
        .iter()
        .map(|h| h.record.id)
        .collect()
}

fn check(lanes: &Lanes, model: &Model, rng: &mut ChaCha8Rng, when: &str) {
    let group1 = serde_json::from_value::<Filter>(
        json!({"must": [{"key": "group", "match": {"value": 1}}]}),
    )
    .unwrap()
    .compile()
    .unwrap();
    for l in 0..2 {
        let shard = lanes.lane(l).unwrap();
        let metric = METRICS[l];
        for _ in 0..5 {
            let q = random_vec(rng, DIMS[l]);
            let mut qn = q.clone();
            if metric == Metric::Cosine {
                distance::normalize(&mut qn);
            }
            for filter in [None, Some(&group1)] {
                let mut brute: Vec<(f32, PointId)> = model
                    .has(l)
                    .filter(|(id, _)| filter.is_none() || model.points[id].1 == 1)
                    .map(|(id, v)| {
                        let mut v = v.clone();
                        if metric == Metric::Cosine {
                            distance::normalize(&mut v);
                        }
                        (distance::distance(metric, &qn, &v), PointId::Num(id))
                    })
                    .collect();
                brute.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let want: Vec<PointId> = brute.iter().take(10).map(|b| b.1).collect();
                assert_eq!(
                    search(shard, &q, true, filter),
                    want,
                    "{when}: lane {l} exact"
                );
                for id in search(shard, &q, false, filter) {
                    let PointId::Num(n) = id else { panic!() };
                    assert!(
                        model.points[&n].0[l].is_some(),
                        "{when}: lane {l} returned {n}, which has no vector there"
                    );
                }
            }
        }
        // `has_vector` counts the model's points with and without the vector, in every lane.
        let with = model.has(l).count();
        for searched in 0..2 {
            for (not, want) in [(false, with), (true, model.points.len() - with)] {
                let f = has_vector(l as u32, not);
                let f = lanes.resolve_filter(&f).unwrap().compile().unwrap();
                assert_eq!(
                    lanes.lane(searched).unwrap().count(Some(&f)),
                    want,
                    "{when}: has_vector lane {l} (not: {not}) counted in lane {searched}"
                );
            }
        }
    }
    // Reads show a vector exactly where the point has one.
    let ids: Vec<PointId> = model.points.keys().map(|&id| PointId::Num(id)).collect();
    let records = lanes.join_records(lanes.primary().get(&ids, true, true));
    assert_eq!(records.len(), model.points.len(), "{when}");
    for r in records {
        let PointId::Num(n) = r.id else { panic!() };
        let v = r.vector.unwrap();
        let mut start = 0;
        for (l, dim) in DIMS.iter().enumerate() {
            let part = &v[start..start + dim];
            assert_eq!(
                is_absent(part),
                model.points[&n].0[l].is_none(),
                "{when}: point {n} lane {l}"
            );
            start += dim;
        }
        assert!(r.payload.is_some(), "{when}: point {n} kept its payload");
    }
}

#[test]
fn deleted_vectors_are_never_searched_and_are_read_as_missing() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let lanes = lanes();
    let mut model = Model::default();
    let mut index = 0;
    let all: Vec<u64> = (0..1300).collect();
    for chunk in all.chunks(100) {
        index += 1;
        model.upsert(&lanes, index, chunk, &mut rng);
    }
    assert!(lanes.lane(1).unwrap().stats().indexed_segments >= 2);
    check(&lanes, &model, &mut rng, "after the load");

    // Lane 1's vector of every fifth point by id, lane 0's of group 2 by filter.
    let ids: Vec<PointId> = (0..1300).step_by(5).map(PointId::Num).collect();
    index += 1;
    let by_ids = ShardCommand::DeleteVectors {
        points: PointSelector::Ids(ids),
        lanes: vec![1],
    };
    assert!(lanes.apply(index, &by_ids).unwrap());
    let group2: Filter =
        serde_json::from_value(json!({"must": [{"key": "group", "match": {"value": 2}}]})).unwrap();
    index += 1;
    let by_filter = ShardCommand::DeleteVectors {
        points: PointSelector::Filter(group2),
        lanes: vec![0],
    };
    assert!(lanes.apply(index, &by_filter).unwrap());
    for (id, (parts, group)) in model.points.iter_mut() {
        if id % 5 == 0 {
            parts[1] = None;
        }
        if *group == 2 {
            parts[0] = None;
        }
    }
    check(&lanes, &model, &mut rng, "after deleting vectors");

    // A payload update keeps a point without its vector; a vector update or an upsert gives
    // it one again.
    index += 1;
    let set = ShardCommand::SetPayload {
        payload: json!({"tag": "x"}).as_object().cloned().unwrap(),
        points: PointSelector::Ids(vec![PointId::Num(5), PointId::Num(10)]),
        key: None,
    };
    assert!(lanes.apply(index, &set).unwrap());
    check(&lanes, &model, &mut rng, "after a payload update");
    let back = random_vec(&mut rng, DIMS[1]);
    index += 1;
    let update = ShardCommand::UpdateVectors {
        points: vec![VectorUpdate {
            id: PointId::Num(5),
            vectors: vec![(1, back.clone())],
        }],
    };
    assert!(lanes.apply(index, &update).unwrap());
    model.points.get_mut(&5).unwrap().0[1] = Some(back);
    index += 1;
    model.upsert(&lanes, index, &[10, 2], &mut rng);
    check(&lanes, &model, &mut rng, "after giving vectors back");

    // A command's filter sees deleted vectors: lane 0's vector goes from every point that has
    // no lane-1 vector.
    index += 1;
    let chained = ShardCommand::DeleteVectors {
        points: PointSelector::Filter(has_vector(1, true)),
        lanes: vec![0],
    };
    assert!(lanes.apply(index, &chained).unwrap());
    for (parts, _) in model.points.values_mut() {
        if parts[1].is_none() {
            parts[0] = None;
        }
    }
    check(&lanes, &model, &mut rng, "after a delete by has_vector");

    // Purges carry the marks: delete most of the first segments' points.
    let doomed: Vec<u64> = (0..1000).filter(|id| id % 3 != 0).collect();
    index += 1;
    let delete = ShardCommand::Delete {
        ids: doomed.iter().map(|&id| PointId::Num(id)).collect(),
    };
    assert!(lanes.apply(index, &delete).unwrap());
    for id in doomed {
        model.points.remove(&id);
    }
    lanes.wait_for_builds();
    assert!(
        lanes.lane(1).unwrap().stats().compactions > 0,
        "{:?}",
        lanes.lane(1).unwrap().stats()
    );
    check(&lanes, &model, &mut rng, "after purges");

    // A snapshot carries them.
    let dir = tempfile::tempdir().unwrap();
    lanes.snapshot(dir.path()).unwrap();
    let restored = Lanes::restore_into(dir.path(), 2, false, None).unwrap();
    check(&restored, &model, &mut rng, "restored");

    // A lane the shard does not have, or one named twice, is refused.
    for bad in [vec![2], vec![1, 1]] {
        let cmd = ShardCommand::DeleteVectors {
            points: PointSelector::Ids(vec![PointId::Num(3)]),
            lanes: bad,
        };
        assert!(lanes.validate(&cmd).is_err(), "{cmd:?}");
    }
    // An unresolved has_vector lane never reaches a shard's filter unnoticed.
    assert!(has_vector(1, false).compile().is_err());
}

/// A one-vector shard: a point may lose its only vector (Qdrant's `delete_vectors` of `""`),
/// and a point without one — as a recovered snapshot writes it back, NaNs — is taken too.
#[test]
fn a_one_vector_shard_keeps_points_without_their_vector() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let lanes = Lanes::single(Shard::new_inline_builds(config(DIMS[0], Metric::L2, 600)));
    let mut points: Vec<PointWrite> = (0..700)
        .map(|id| point(id, random_vec(&mut rng, DIMS[0]), id % 4))
        .collect();
    points[699].vector = vec![f32::NAN; DIMS[0]];
    // Queries at the lost vectors: were they searched, they would be the nearest.
    let queries = [points[3].vector.clone(), points[650].vector.clone()];
    assert!(lanes.apply(1, &ShardCommand::Upsert { points }).unwrap());
    let delete = ShardCommand::DeleteVectors {
        points: PointSelector::Ids(vec![PointId::Num(3), PointId::Num(650)]),
        lanes: vec![0],
    };
    assert!(lanes.apply(2, &delete).unwrap());
    // A NaN anywhere but in a whole vector is still refused.
    let mut half = point(800, random_vec(&mut rng, DIMS[0]), 0);
    half.vector[1] = f32::NAN;
    assert!(
        lanes
            .validate(&ShardCommand::Upsert { points: vec![half] })
            .is_err()
    );
    let lacking = [3u64, 650, 699].map(PointId::Num);
    let check = |lanes: &Lanes, when: &str| {
        let shard = lanes.primary();
        assert_eq!(shard.count(None), 700, "{when}");
        let without = lanes
            .resolve_filter(&has_vector(0, true))
            .unwrap()
            .compile()
            .unwrap();
        assert_eq!(shard.count(Some(&without)), 3, "{when}");
        for exact in [true, false] {
            for q in &queries {
                let found = search(shard, q, exact, None);
                assert_eq!(found.len(), 10, "{when}");
                assert!(found.iter().all(|id| !lacking.contains(id)), "{when}");
            }
        }
        for r in shard.get(&lacking, true, true) {
            assert!(is_absent(r.vector.as_ref().unwrap()), "{when}: {:?}", r.id);
            assert!(r.payload.is_some(), "{when}");
        }
    };
    check(&lanes, "applied");
    let dir = tempfile::tempdir().unwrap();
    lanes.snapshot(dir.path()).unwrap();
    check(
        &Lanes::restore_into(dir.path(), 1, false, None).unwrap(),
        "restored",
    );
}
