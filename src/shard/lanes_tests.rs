//! Lanes against a model: each lane answers as a one-vector shard holding that lane's part of
//! every point would, reads pack every lane's vector, a command one lane refuses changes no
//! lane, and snapshots carry every lane.

use super::lanes::Lanes;
use super::tests::{config, point, random_vec};
use super::*;
use crate::index::{Metric, distance};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const DIMS: [usize; 2] = [8, 6];

fn lanes() -> Lanes {
    Lanes::from_shards(vec![
        Shard::new_inline_builds(config(DIMS[0], Metric::L2, 600)),
        Shard::new_inline_builds(config(DIMS[1], Metric::Cosine, 600)),
    ])
}

/// `n` points, each with a vector per lane, and the packed form.
fn points(n: u64, rng: &mut ChaCha8Rng) -> Vec<(PointWrite, [Vec<f32>; 2])> {
    (0..n)
        .map(|id| {
            let parts = [random_vec(rng, DIMS[0]), random_vec(rng, DIMS[1])];
            let packed = [parts[0].clone(), parts[1].clone()].concat();
            (point(id, packed, id % 3), parts)
        })
        .collect()
}

fn exact_top(lane: &Shard, q: &[f32], k: usize) -> Vec<PointId> {
    let req = SearchRequest {
        vector: q,
        limit: k,
        offset: 0,
        filter: None,
        nprobe: 8,
        rerank: 4,
        exact: true,
        with_payload: false,
        with_vector: false,
    };
    lane.search(&req)
        .unwrap()
        .iter()
        .map(|h| h.record.id)
        .collect()
}

#[test]
fn each_lane_searches_its_own_vectors_and_reads_pack_them_all() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let lanes = lanes();
    assert_eq!(lanes.packed_dim(), 14);
    let pts = points(1300, &mut rng);
    for (i, chunk) in pts.chunks(100).enumerate() {
        let cmd = ShardCommand::Upsert {
            points: chunk.iter().map(|(p, _)| p.clone()).collect(),
        };
        assert!(lanes.apply(i as u64 + 1, &cmd).unwrap());
    }
    // Both lanes sealed and indexed their rows.
    for l in 0..2 {
        let shard = lanes.lane(l).unwrap();
        assert_eq!(shard.stats().points, 1300);
        assert!(
            shard.stats().indexed_segments >= 2,
            "lane {l}: {:?}",
            shard.stats()
        );
    }
    // Exact answers of each lane are the brute-force answers over that lane's part.
    for l in 0..2 {
        let q = random_vec(&mut rng, DIMS[l]);
        let metric = [Metric::L2, Metric::Cosine][l];
        let mut model: Vec<(f32, PointId)> = pts
            .iter()
            .map(|(p, parts)| {
                let mut v = parts[l].clone();
                let mut qq = q.clone();
                if metric == Metric::Cosine {
                    distance::normalize(&mut v);
                    distance::normalize(&mut qq);
                }
                (distance::distance(metric, &qq, &v), p.id)
            })
            .collect();
        model.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<PointId> = model.iter().take(10).map(|m| m.1).collect();
        assert_eq!(exact_top(lanes.lane(l).unwrap(), &q, 10), want, "lane {l}");
    }
    // A read packs the lanes' vectors in lane order (lane 1's normalised for cosine).
    let got = lanes.join_records(lanes.primary().get(&[PointId::Num(7)], true, true));
    let mut second = pts[7].1[1].clone();
    distance::normalize(&mut second);
    let want = [pts[7].1[0].clone(), second].concat();
    let v = got[0].vector.as_ref().unwrap();
    assert_eq!(v.len(), 14);
    for (a, b) in v.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{v:?} vs {want:?}");
    }
    assert!(got[0].payload.is_some());
}

#[test]
fn a_command_one_lane_refuses_changes_no_lane() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let lanes = lanes();
    let pts = points(10, &mut rng);
    let all = ShardCommand::Upsert {
        points: pts.iter().map(|(p, _)| p.clone()).collect(),
    };
    lanes.apply(1, &all).unwrap();
    // Lane 1's part is not finite: refused whole, before lane 0 applies its (valid) part.
    let mut bad = pts[0].0.clone();
    bad.id = PointId::Num(99);
    bad.vector[DIMS[0] + 1] = f32::NAN;
    let cmd = ShardCommand::Upsert { points: vec![bad] };
    assert!(lanes.validate(&cmd).is_err());
    assert!(lanes.apply(2, &cmd).is_err());
    // A packed vector of the wrong length is refused with the packed dimension.
    let short = ShardCommand::Upsert {
        points: vec![point(100, vec![0.5; DIMS[0]], 0)],
    };
    match lanes.validate(&short) {
        Err(ShardError::Dimension { expected, got }) => assert_eq!((expected, got), (14, 8)),
        other => panic!("{other:?}"),
    }
    for l in 0..2 {
        let shard = lanes.lane(l).unwrap();
        assert_eq!(shard.stats().points, 10, "lane {l}");
        assert_eq!(
            shard.last_applied(),
            2,
            "lane {l} records the refused index"
        );
        assert!(shard.get(&[PointId::Num(99)], false, false).is_empty());
    }
    // Deletes and payload updates reach every lane.
    lanes
        .apply(
            3,
            &ShardCommand::Delete {
                ids: vec![PointId::Num(1), PointId::Num(2)],
            },
        )
        .unwrap();
    for l in 0..2 {
        assert_eq!(lanes.lane(l).unwrap().stats().points, 8, "lane {l}");
    }
}

#[test]
fn a_snapshot_carries_every_lane() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let lanes = lanes();
    let pts = points(300, &mut rng);
    lanes
        .apply(
            1,
            &ShardCommand::Upsert {
                points: pts.iter().map(|(p, _)| p.clone()).collect(),
            },
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(lanes.snapshot(dir.path()).unwrap(), 1);
    let restored = Lanes::restore_into(dir.path(), 2, false, None).unwrap();
    assert_eq!(restored.len(), 2);
    let ids: Vec<PointId> = (0..300).map(PointId::Num).collect();
    let read = |l: &Lanes| l.join_records(l.primary().get(&ids, true, true));
    assert_eq!(read(&restored), read(&lanes));
    for l in 0..2 {
        assert_eq!(
            restored.lane(l).unwrap().config(),
            lanes.lane(l).unwrap().config()
        );
    }
    // A snapshot of one lane does not restore as two.
    let one = tempfile::tempdir().unwrap();
    Lanes::single(lanes.primary().clone())
        .snapshot(one.path())
        .unwrap();
    assert!(Lanes::restore_into(one.path(), 2, false, None).is_err());
}

#[test]
fn a_vector_update_changes_only_the_lanes_it_names_and_keeps_the_payload() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let lanes = lanes();
    let pts = points(20, &mut rng);
    lanes
        .apply(
            1,
            &ShardCommand::Upsert {
                points: pts.iter().map(|(p, _)| p.clone()).collect(),
            },
        )
        .unwrap();
    let new_b = vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    let update = ShardCommand::UpdateVectors {
        points: vec![
            VectorUpdate {
                id: PointId::Num(4),
                vectors: vec![(1, new_b.clone())],
            },
            // Unknown ids are ignored.
            VectorUpdate {
                id: PointId::Num(999),
                vectors: vec![(0, vec![0.0; DIMS[0]])],
            },
        ],
    };
    assert!(lanes.apply(2, &update).unwrap());
    let got = lanes.join_records(lanes.primary().get(&[PointId::Num(4)], true, true));
    let v = got[0].vector.as_ref().unwrap();
    assert_eq!(&v[..DIMS[0]], pts[4].1[0].as_slice(), "lane 0 unchanged");
    assert_eq!(&v[DIMS[0]..], new_b.as_slice(), "lane 1 replaced");
    assert_eq!(
        got[0].payload,
        pts[4].0.payload.clone().map(std::sync::Arc::new)
    );
    for l in 0..2 {
        assert_eq!(lanes.lane(l).unwrap().stats().points, 20, "lane {l}");
    }
    // The new vector is what lane 1 searches.
    assert_eq!(
        exact_top(lanes.lane(1).unwrap(), &new_b, 1),
        vec![PointId::Num(4)]
    );
    // A lane the shard does not have, or one named twice, is refused before anything applies.
    for vectors in [
        vec![(2, vec![0.0; 3])],
        vec![(1, new_b.clone()), (1, new_b.clone())],
        vec![(1, vec![1.0; 2])],
    ] {
        let bad = ShardCommand::UpdateVectors {
            points: vec![VectorUpdate {
                id: PointId::Num(4),
                vectors,
            }],
        };
        assert!(lanes.validate(&bad).is_err(), "{bad:?}");
    }
}
