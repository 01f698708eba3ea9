use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::datasets::Dataset;
use crate::index::Metric;
use crate::index::distance;
use crate::index::flat::FlatIndex;

/// `n` base vectors and `nq` queries around 40 Gaussian-ish centres, with exact ground truth.
fn clustered(n: usize, nq: usize, dim: usize, k: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let centres: Vec<f32> = (0..40 * dim)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    let mut draw = |rows: usize| {
        let mut a = Array2::<f32>::zeros((rows, dim));
        for mut row in a.rows_mut() {
            let c = rng.random_range(0..40usize);
            for (j, v) in row.iter_mut().enumerate() {
                *v = centres[c * dim + j] + rng.random_range(-1.2f32..1.2);
            }
        }
        a
    };
    let base = draw(n);
    let queries = draw(nq);
    let mut flat = FlatIndex::new(dim, Metric::L2);
    let ids: Vec<u64> = (0..n as u64).collect();
    flat.add_batch(&ids, base.as_slice().unwrap()).unwrap();
    let answers = flat.search_batch(queries.as_slice().unwrap(), k, None);
    let gt = Array2::from_shape_fn((nq, k), |(q, j)| answers[q][j].id as u32);
    Dataset {
        name: "clustered".into(),
        metric: Metric::L2,
        base,
        queries,
        groundtruth: Some(gt),
    }
}

/// Exact top-k over the whole base by (distance, id), computed without any index or merge.
fn brute_force(data: &Dataset, q: &[f32], k: usize) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = data
        .base
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            (
                distance::distance(data.metric, q, v.as_slice().unwrap()),
                i as u64,
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

const SHARD_CONFIG: BuildConfig = BuildConfig {
    nlist: 8,
    pq_m: 8,
    pq_bits: 4,
};

#[test]
fn probing_every_shard_with_exact_shards_equals_exact_search() {
    let data = clustered(4000, 60, 16, 10);
    let workload = Workload::new(&data, 10, 1).unwrap();
    // nprobe = nlist and a re-rank pool larger than any shard: each shard answers exactly, so
    // the merged answer must be the exact answer over the whole base.
    let params = SearchParams {
        nprobe: SHARD_CONFIG.nlist,
        rerank: 4000,
    };
    for kind in [PlacementKind::Hash, PlacementKind::Centroid] {
        let placement = Placement::train(&workload, &ShardedOptions::new(4, kind)).unwrap();
        let rows = split(&workload, &placement);
        assert_eq!(rows.iter().map(Vec::len).sum::<usize>(), 4000);
        assert!(rows.iter().all(|r| r.len() > 600), "{kind:?} balance");
        let built = build_sharded(&workload, &rows, SHARD_CONFIG).unwrap();
        for q in data.queries.rows() {
            let q = q.as_slice().unwrap();
            let (hits, touched) = built.search(&placement, q, 10, &params, 4);
            assert_eq!(touched, 4);
            let ids: Vec<u64> = hits.iter().map(|n| n.id).collect();
            assert_eq!(ids, brute_force(&data, q, 10), "{kind:?}");
            assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        }
    }
}

#[test]
fn centroid_probes_only_the_nearest_shards_and_more_probes_find_more() {
    let data = clustered(6000, 200, 16, 10);
    let workload = Workload::new(&data, 10, 1).unwrap();
    let options = ShardedOptions {
        shard_probe: vec![1, 2, 8, 9],
        ..ShardedOptions::new(8, PlacementKind::Centroid)
    };
    assert_eq!(options.probes(), vec![1, 2, 8]);
    let placement = Placement::train(&workload, &options).unwrap();
    let rows = split(&workload, &placement);
    let mut shard_of_row = vec![0usize; 6000];
    for (s, r) in rows.iter().enumerate() {
        for &row in r {
            shard_of_row[row] = s;
        }
    }
    let built = build_sharded(&workload, &rows, SHARD_CONFIG).unwrap();
    let exact = SearchParams {
        nprobe: SHARD_CONFIG.nlist,
        rerank: 6000,
    };
    // Every hit comes from a probed shard, and exactly the probed shards are searched.
    for q in data.queries.rows().into_iter().take(50) {
        let q = q.as_slice().unwrap();
        let probed = placement.probe(q, 2);
        let (hits, touched) = built.search(&placement, q, 10, &exact, 2);
        assert_eq!(touched, 2);
        assert!(
            hits.iter()
                .all(|h| probed.contains(&shard_of_row[h.id as usize]))
        );
    }
    let search = SearchConfig {
        nprobe: SHARD_CONFIG.nlist,
        rerank: 6000,
    };
    let recall = |p: usize| {
        let r = measure_sharded(&workload, &placement, &built, search, p, 0.0).unwrap();
        let s = r.sharding.as_ref().unwrap();
        assert_eq!((s.shards, s.shard_probe), (8, p));
        assert!((s.shards_touched_mean - p as f64).abs() < 1e-9);
        assert_eq!(s.placement, "centroid");
        r.recall
    };
    let (r1, r2, r8) = (recall(1), recall(2), recall(8));
    assert!(r1 < r2 && r2 <= r8, "{r1} {r2} {r8}");
    assert!((r8 - 1.0).abs() < 1e-12, "all shards, exact: {r8}");
    // On clustered data most neighbours live on the nearest shards already.
    assert!(r2 > 0.9, "{r2}");
}

#[test]
fn hash_always_asks_every_shard() {
    let data = clustered(3000, 40, 16, 10);
    let workload = Workload::new(&data, 10, 1).unwrap();
    let options = ShardedOptions {
        shard_probe: vec![1, 2],
        ..ShardedOptions::new(3, PlacementKind::Hash)
    };
    assert_eq!(options.probes(), vec![3]);
    let placement = Placement::train(&workload, &options).unwrap();
    let rows = split(&workload, &placement);
    let built = build_sharded(&workload, &rows, SHARD_CONFIG).unwrap();
    let search = SearchConfig {
        nprobe: 2,
        rerank: 2,
    };
    let r = measure_sharded(&workload, &placement, &built, search, 1, 0.0).unwrap();
    let s = r.sharding.unwrap();
    assert_eq!(
        (s.shards, s.shard_probe, s.placement.as_str()),
        (3, 3, "hash")
    );
    assert!((s.shards_touched_mean - 3.0).abs() < 1e-9);
    assert_eq!(s.shard_sizes.iter().sum::<usize>(), 3000);
}

#[test]
fn merge_orders_by_distance_then_id_and_dedupes() {
    let nb = |id, distance| Neighbor { id, distance };
    let merged = merge_top_k(
        vec![
            vec![nb(5, 0.5), nb(9, 1.0), nb(3, 2.0)],
            vec![nb(2, 0.5), nb(9, 0.7), nb(8, 3.0)],
            vec![],
        ],
        4,
    );
    assert_eq!(merged, vec![nb(2, 0.5), nb(5, 0.5), nb(9, 0.7), nb(3, 2.0)]);
    assert!(merge_top_k(vec![], 3).is_empty());
    assert_eq!(merge_top_k(vec![vec![nb(1, 1.0)]], 3), vec![nb(1, 1.0)]);
}

#[test]
fn sweep_reports_sharding_in_json_and_reads_back() {
    let data = clustered(3000, 50, 16, 10);
    let workload = Workload::new(&data, 10, 2).unwrap();
    let grid = SweepGrid {
        nlist: vec![8],
        pq_m: vec![8],
        pq_bits: vec![4],
        nprobe: vec![2, 8],
        rerank: vec![4],
    }
    .resolve(workload.n(), workload.dim())
    .unwrap();
    let options = ShardedOptions {
        shard_probe: vec![1, 4],
        ..ShardedOptions::new(4, PlacementKind::Centroid)
    };
    let report = run_sharded_sweep(&workload, &grid, &options, None).unwrap();
    assert_eq!(report.results.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sharded.json");
    report.write(&path).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let row = json["results"][0].as_object().unwrap();
    for key in [
        "nprobe",
        "rerank",
        "recall",
        "qps",
        "p50_ms",
        "p99_ms",
        "shards",
        "placement",
        "shard_probe",
        "shards_touched_mean",
        "shard_sizes",
    ] {
        assert!(row.contains_key(key), "missing {key}");
    }
    assert_eq!(row["placement"], "centroid");
    // Reading back keeps every row's sharding (floats to within an ulp or so: a flattened
    // field makes serde_json buffer the row, which parses floats slightly less exactly).
    let back = BenchReport::read(&path).unwrap();
    assert_eq!(back.results.len(), report.results.len());
    for (a, b) in back.results.iter().zip(&report.results) {
        assert_eq!(a.sharding, b.sharding);
        assert_eq!((a.nprobe, a.rerank, a.nlist), (b.nprobe, b.rerank, b.nlist));
        assert!((a.recall - b.recall).abs() < 1e-12 && (a.p95_ms - b.p95_ms).abs() < 1e-9);
    }
    let table = sharded_table(&report);
    assert_eq!(table.lines().count(), 2 + 4);
    assert!(table.contains("centroid"));
    // Unsharded rows keep their old shape: no sharding keys at all.
    let mut plain = report.results[0].clone();
    plain.sharding = None;
    let v = serde_json::to_value(&plain).unwrap();
    assert!(v.get("shards").is_none() && v.get("placement").is_none());
    let back: QueryResult = serde_json::from_value(v).unwrap();
    assert_eq!(back, plain);
}

#[test]
fn default_per_shard_nlist_follows_the_mean_shard() {
    assert_eq!(auto_shard_nlist(200_000, 8), auto_nlist(25_000));
    assert_eq!(auto_shard_nlist(10, 0), auto_nlist(10));
}
