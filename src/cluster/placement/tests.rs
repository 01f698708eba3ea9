use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

// ------------------------------------------------------------------------------------ hash ring

#[test]
fn stable_hash_values_are_pinned() {
    // These values are part of the on-disk/cluster contract: if this test fails, existing
    // collections would see their points move between shards. Do not "fix" it by updating them.
    let got = [
        stable_hash(&PointId::Num(0)),
        stable_hash(&PointId::Num(1)),
        stable_hash(&PointId::Num(u64::MAX)),
        stable_hash(&PointId::Uuid(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)),
        vnode_position(3, 17),
    ];
    assert_eq!(
        got,
        [
            0x934f_1333_3b01_22f0,
            0xe2b7_fc1c_2477_7688,
            0xc878_8613_6f5d_6731,
            0x1419_0d87_584a_8739,
            0x971f_9708_610b_9f92
        ]
    );
    // A numeric id and a UUID with the same value are different points.
    assert_ne!(
        stable_hash(&PointId::Num(7)),
        stable_hash(&PointId::Uuid(7))
    );
}

fn loads(ring: &HashRing, ids: impl Iterator<Item = PointId>) -> Vec<usize> {
    let mut l = vec![0usize; ring.shards() as usize];
    for id in ids {
        l[ring.shard_of(&id) as usize] += 1;
    }
    l
}

fn spread(l: &[usize]) -> (f64, f64) {
    let mean = l.iter().sum::<usize>() as f64 / l.len() as f64;
    let max = *l.iter().max().unwrap() as f64;
    let min = *l.iter().min().unwrap() as f64;
    (max / mean, min / mean)
}

#[test]
fn ring_balances_numeric_and_uuid_ids() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for shards in [3u32, 8, 16] {
        let ring = HashRing::new(shards);
        let num = loads(&ring, (0..100_000u64).map(PointId::Num));
        let uuid = loads(
            &ring,
            (0..100_000).map(|_| PointId::Uuid(rng.random::<u128>())),
        );
        for l in [num, uuid] {
            let (hi, lo) = spread(&l);
            assert!(hi < 1.15 && lo > 0.85, "{shards} shards: loads {l:?}");
        }
    }
}

#[test]
fn few_virtual_nodes_balance_worse() {
    // The balance above comes from the virtual nodes, not from luck.
    let ids = || (0..100_000u64).map(PointId::Num);
    let (one_hi, _) = spread(&loads(&HashRing::with_vnodes(8, 1), ids()));
    let (many_hi, _) = spread(&loads(&HashRing::new(8), ids()));
    assert!(one_hi > 1.3 && many_hi < one_hi, "{one_hi} vs {many_hi}");
}

#[test]
fn adding_a_shard_moves_about_one_over_n_plus_one_of_ids_all_to_it() {
    for n in [1u32, 2, 4, 8, 15] {
        let (old, new) = (HashRing::new(n), HashRing::new(n + 1));
        let mut moved = 0usize;
        let total = 100_000u64;
        for i in 0..total {
            let id = PointId::Num(i);
            let (a, b) = (old.shard_of(&id), new.shard_of(&id));
            if a != b {
                assert_eq!(b, n, "id {i} moved from {a} to an old shard {b}");
                moved += 1;
            }
        }
        let fraction = moved as f64 / total as f64;
        let ideal = 1.0 / f64::from(n + 1);
        assert!(
            (fraction - ideal).abs() < 0.2 * ideal,
            "{n} -> {}: moved {fraction}, ideal {ideal}",
            n + 1
        );
    }
}

#[test]
fn ring_serialises_as_its_parameters_and_rebuilds() {
    let ring = HashRing::with_vnodes(5, 100);
    let bytes = postcard::to_allocvec(&ring).unwrap();
    assert!(bytes.len() <= 4, "{} bytes", bytes.len());
    let back: HashRing = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, ring);
    let json = serde_json::to_string(&ring).unwrap();
    assert_eq!(json, r#"{"shards":5,"vnodes":100}"#);
    assert_eq!(serde_json::from_str::<HashRing>(&json).unwrap(), ring);
    assert!(serde_json::from_str::<HashRing>(r#"{"shards":0,"vnodes":100}"#).is_err());
    assert!(serde_json::from_str::<HashRing>(r#"{"shards":4000000,"vnodes":100}"#).is_err());
    // Zero is clamped to one shard: every id still has a home.
    assert_eq!(HashRing::new(0).shard_of(&PointId::Num(9)), 0);
}

// ---------------------------------------------------------------------------- centroid placement

/// `sizes.len()` Gaussian-ish blobs in `dim` dimensions, blob `b` holding `sizes[b]` points.
/// Returns the points and each point's blob.
fn blobs(sizes: &[usize], dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..sizes.len() * dim)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let mut data = Vec::new();
    let mut blob = Vec::new();
    for (b, &n) in sizes.iter().enumerate() {
        for _ in 0..n {
            for j in 0..dim {
                let g: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum();
                data.push(centres[b * dim + j] + 0.8 * g);
            }
            blob.push(b);
        }
    }
    (data, blob)
}

/// Uneven blob sizes: 24 blobs of 100..=1250 points.
fn uneven_sizes() -> Vec<usize> {
    (0..24).map(|b| 100 + 50 * ((b * 7) % 24)).collect()
}

fn shard_loads(p: &CentroidPlacement, data: &[f32], dim: usize) -> Vec<usize> {
    let mut l = vec![0usize; p.shards() as usize];
    for v in data.chunks(dim) {
        l[p.shard_of(v) as usize] += 1;
    }
    l
}

#[test]
fn centroid_shards_stay_balanced_on_uneven_clustered_data() {
    let dim = 16;
    let (data, _) = blobs(&uneven_sizes(), dim, 3);
    let n = data.len() / dim;
    for shards in [4u32, 8] {
        let clusters = CentroidPlacement::default_clusters(shards, n);
        assert_eq!(
            clusters,
            (shards as usize * CLUSTERS_PER_SHARD).min(n / MIN_POINTS_PER_CLUSTER)
        );
        assert!(clusters >= shards as usize * 16, "{clusters}");
        let p = CentroidPlacement::train(&data, dim, Metric::L2, shards, clusters, 42);
        let l = shard_loads(&p, &data, dim);
        // Placing the training data again reproduces the training loads exactly.
        assert_eq!(
            l.iter().map(|&x| x as u64).collect::<Vec<_>>(),
            p.sample_loads()
        );
        let (hi, lo) = spread(&l);
        assert!(
            hi <= 1.0 + BALANCE_SLACK + 0.03 && lo > 0.8,
            "{shards}: {l:?}"
        );
    }
    // The same data on clusters == shards cannot be balanced this well: the blobs are uneven,
    // which is why there are more clusters than shards.
    let p = CentroidPlacement::train(&data, dim, Metric::L2, 8, 8, 42);
    let (hi, _) = spread(&shard_loads(&p, &data, dim));
    assert!(hi > 1.1, "{hi}");
}

#[test]
fn centroid_shards_keep_neighbours_together() {
    // Most blobs should live on a single shard: the point of centroid placement.
    let dim = 16;
    let (data, blob) = blobs(&uneven_sizes(), dim, 5);
    let p = CentroidPlacement::train(&data, dim, Metric::L2, 8, 128, 1);
    let nb = uneven_sizes().len();
    let mut per_blob = vec![vec![0usize; 8]; nb];
    for (v, &b) in data.chunks(dim).zip(&blob) {
        per_blob[b][p.shard_of(v) as usize] += 1;
    }
    let together: usize = per_blob.iter().map(|s| *s.iter().max().unwrap()).sum();
    let frac = together as f64 / blob.len() as f64;
    assert!(
        frac > 0.8,
        "only {frac} of points share their blob's main shard"
    );
}

#[test]
fn shard_of_is_the_first_probe_and_probes_are_distinct() {
    let dim = 8;
    let (data, _) = blobs(&[300; 10], dim, 9);
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let p = CentroidPlacement::train(&data, dim, metric, 6, 48, 7);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for v in data.chunks(dim).step_by(7) {
            let all = p.probe(v, 6);
            assert_eq!(all[0], p.shard_of(v), "{metric:?}");
            assert_eq!(p.probe(v, 1), vec![p.shard_of(v)]);
            let mut sorted = all.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), all.len(), "duplicates in {all:?}");
            assert_eq!(p.probe(v, 3), all[..3].to_vec(), "prefix property");
            // Random queries too, not only training points.
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-12.0f32..12.0)).collect();
            assert_eq!(p.probe(&q, 2)[0], p.shard_of(&q));
        }
        assert!(p.probe(&data[..dim], 0).is_empty());
        assert!(p.probe(&data[..dim], 100).len() <= 6);
    }
}

#[test]
fn probe_ranks_shards_by_their_nearest_cluster() {
    // Hand-built: 1-d clusters at 0, 1, 5, 6, 10 owned by shards 0, 1, 1, 2, 0.
    let p = CentroidPlacement {
        dim: 1,
        metric: Metric::L2,
        shards: 3,
        centroids: vec![0.0, 1.0, 5.0, 6.0, 10.0],
        owner: vec![0, 1, 1, 2, 0],
        sample_loads: vec![1, 1, 1],
    };
    assert_eq!(p.probe(&[5.4], 3), vec![1, 2, 0]);
    assert_eq!(p.probe(&[9.0], 3), vec![0, 2, 1]);
    assert_eq!(p.shard_of(&[9.0]), 0);
    // Equidistant from clusters 0 (shard 0) and 1 (shard 1): the lower cluster index wins.
    assert_eq!(p.shard_of(&[0.5]), 0);
    assert_eq!(p.probe(&[0.5], 2), vec![0, 1]);
}

#[test]
fn metrics_are_respected() {
    // Cosine ignores length; dot prefers the larger inner product; L2 the nearer point.
    let base = CentroidPlacement {
        dim: 2,
        metric: Metric::L2,
        shards: 2,
        centroids: vec![1.0, 0.0, 4.0, 0.0],
        owner: vec![0, 1],
        sample_loads: vec![1, 1],
    };
    assert_eq!(base.shard_of(&[1.2, 0.0]), 0);
    let dot = CentroidPlacement {
        metric: Metric::Dot,
        ..base.clone()
    };
    assert_eq!(dot.shard_of(&[1.2, 0.0]), 1);
    let cos = CentroidPlacement {
        metric: Metric::Cosine,
        centroids: vec![1.0, 0.0, 0.0, 1.0],
        ..base
    };
    assert_eq!(cos.shard_of(&[100.0, 1.0]), 0);
    assert_eq!(cos.shard_of(&[0.01, 0.02]), 1);

    // A trained cosine placement: scaling a vector never moves it.
    let dim = 8;
    let (data, _) = blobs(&[200; 8], dim, 4);
    let p = CentroidPlacement::train(&data, dim, Metric::Cosine, 4, 32, 3);
    for v in data.chunks(dim).step_by(5) {
        let scaled: Vec<f32> = v.iter().map(|x| x * 37.5).collect();
        assert_eq!(p.shard_of(v), p.shard_of(&scaled));
    }
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let dim = 16;
    let (data, _) = blobs(&uneven_sizes(), dim, 8);
    let a = CentroidPlacement::train(&data, dim, Metric::L2, 8, 64, 11);
    let b = CentroidPlacement::train(&data, dim, Metric::L2, 8, 64, 11);
    assert_eq!(a, b);
    assert_eq!(a.clusters(), 64);
    assert_eq!(a.cluster_owners().len(), 64);
    assert!(a.cluster_owners().iter().all(|&s| s < 8));
    // Every shard owns a cluster.
    for s in 0..8 {
        assert!(a.cluster_owners().contains(&s), "shard {s} owns nothing");
    }
}

#[test]
fn small_samples_and_bad_input() {
    let dim = 4;
    // Fewer points than shards: still a valid placement with every shard owning a cluster.
    let tiny = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let p = CentroidPlacement::train(&tiny, dim, Metric::L2, 4, 1, 0);
    assert_eq!(p.clusters(), 4);
    assert!(p.shard_of(&tiny[..4]) < 4);
    assert_eq!(CentroidPlacement::default_clusters(4, 2), 4);
    assert_eq!(CentroidPlacement::default_clusters(8, 100_000), 512);
    assert_eq!(CentroidPlacement::default_clusters(8, 39 * 20), 20);
    assert_eq!(CentroidPlacement::default_clusters(0, 0), 1);

    let err = |s: &[f32], d: usize, shards: u32| {
        CentroidPlacement::try_train(s, d, Metric::L2, shards, 4, 0).is_err()
    };
    assert!(err(&[], dim, 2));
    assert!(err(&tiny[..5], dim, 2));
    assert!(err(&tiny, 0, 2));
    assert!(err(&tiny, dim, 0));
    assert!(err(&[1.0, f32::NAN, 0.0, 0.0], dim, 1));
    // A wrong-dimension vector is a caller bug, but never a crash in release builds.
    if !cfg!(debug_assertions) {
        assert!(p.shard_of(&[1.0]) < 4);
    }
}

#[test]
fn centroid_placement_serialises_compactly_and_validates() {
    let dim = 16;
    let (data, _) = blobs(&[250; 12], dim, 6);
    let p = CentroidPlacement::train(&data, dim, Metric::Cosine, 8, 64, 5);
    let bytes = postcard::to_allocvec(&p).unwrap();
    // The floats dominate: 4 bytes each plus a few bytes per cluster and shard.
    let floats = 4 * 64 * dim;
    assert!(
        bytes.len() <= floats + 2 * 64 + 10 * 8 + 16,
        "{} bytes",
        bytes.len()
    );
    let back: CentroidPlacement = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, p);
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<CentroidPlacement>(&json).unwrap(), p);

    // Corrupt metadata is refused rather than trusted.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["owner"][0] = 8.into();
    assert!(serde_json::from_value::<CentroidPlacement>(v.clone()).is_err());
    v["owner"][0] = 0.into();
    assert!(serde_json::from_value::<CentroidPlacement>(v.clone()).is_ok());
    v["centroids"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<CentroidPlacement>(v.clone()).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["sample_loads"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<CentroidPlacement>(v).is_err());
}
