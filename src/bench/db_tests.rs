//! Checks of the database modes: filtered payloads and ground truth against brute force and
//! against the shard's own exact filtered search, and the rows `--engine shard` reports.

use ndarray::Array2;
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::db::{DbOptions, ShardDefaults, default_request, load, run_shard_db, shard_config};
use super::engine::Workload;
use super::filters::{
    FilteredWorkload, NO_NEIGHBOUR, Selectivity, bucket, filtered_recall, selectivities,
};
use super::{BenchReport, QueryResult};
use crate::collection::IndexDefaults;
use crate::datasets::{Dataset, exact_knn};
use crate::index::Metric;
use crate::shard::{Filter, PointId, SearchRequest, Shard};

/// `n` uniform random vectors and `nq` queries in `dim` dimensions with exact ground truth.
fn uniform(n: usize, nq: usize, dim: usize, metric: Metric) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut draw =
        |rows: usize| Array2::from_shape_fn((rows, dim), |_| rng.random_range(-1.0f32..1.0));
    let base = draw(n);
    let queries = draw(nq);
    let groundtruth = Some(exact_knn(base.view(), queries.view(), 10, metric));
    Dataset {
        name: "uniform".into(),
        metric,
        base,
        queries,
        groundtruth,
    }
}

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum(),
        Metric::Cosine => 1.0 - dot / (norm(a) * norm(b)),
        Metric::Dot => -dot,
    }
}

#[test]
fn buckets_are_the_pinned_cross_language_values() {
    // benches/peers/qdrant_edge_peer.py checks the same values before writing its payloads.
    for (row, buckets, want) in [
        (0, 1000, 67),
        (1, 1000, 957),
        (12345, 1000, 838),
        (7, 100, 2),
        (99, 10, 9),
        (123_456_789, 1000, 426),
    ] {
        assert_eq!(bucket(row, buckets), want, "bucket({row}, {buckets})");
    }
    // And they spread evenly: each of 10 buckets holds 10% of 100,000 rows within 2%.
    let mut held = [0usize; 10];
    for row in 0..100_000 {
        held[bucket(row, 10) as usize] += 1;
    }
    assert!(
        held.iter().all(|&h| (9_800..=10_200).contains(&h)),
        "{held:?}"
    );
}

#[test]
fn selectivities_round_to_one_value_of_a_field() {
    let s = selectivities(&[0.001, 0.01, 0.1, 0.5]).unwrap();
    let buckets: Vec<u32> = s.iter().map(|s| s.buckets).collect();
    assert_eq!(buckets, [1000, 100, 10, 2]);
    assert_eq!(s[0].field(), "sel_1000");
    assert_eq!(s[3].fraction(), 0.5);
    assert_eq!(s[1].value_for_query(250), 50);
    assert_eq!(
        s[2].filter_json(13),
        serde_json::json!({"must": [{"key": "sel_10", "match": {"value": 3}}]})
    );
    assert!(selectivities(&[0.0]).is_err());
    assert!(selectivities(&[1.5]).is_err());
    assert!(selectivities(&[f64::NAN]).is_err());
    assert!(selectivities(&[0.1, 0.1001]).is_err(), "both round to 1/10");
}

/// The filtered ground truth is the brute-force answer: for each query, the `k` nearest of the
/// rows in its bucket, by a distance computed here in f64 row by row, padded when fewer pass.
#[test]
fn filtered_ground_truth_equals_brute_force() {
    let k = 10;
    for metric in [Metric::L2, Metric::Cosine] {
        let data = uniform(3000, 40, 12, metric);
        // 1/1000 leaves about 3 rows per bucket: the padding is checked too.
        for buckets in [1000, 100, 10, 2] {
            let sel = Selectivity { buckets };
            let f = FilteredWorkload::new(sel, data.base.view(), data.queries.view(), k, metric)
                .unwrap();
            assert_eq!(f.groundtruth.dim(), (40, k));
            for q in 0..40 {
                let query = data.queries.row(q).to_vec();
                let mut model: Vec<(f64, u32)> = (0..3000u32)
                    .filter(|&r| bucket(u64::from(r), buckets) == sel.value_for_query(q))
                    .map(|r| {
                        (
                            distance(metric, &query, &data.base.row(r as usize).to_vec()),
                            r,
                        )
                    })
                    .collect();
                model.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let mut want: Vec<u32> = model.iter().take(k).map(|m| m.1).collect();
                want.resize(k, NO_NEIGHBOUR);
                assert_eq!(
                    f.groundtruth.row(q).to_vec(),
                    want,
                    "{metric:?} 1/{buckets} query {q}"
                );
            }
        }
    }
}

#[test]
fn filtered_recall_counts_only_real_neighbours() {
    let gt = ndarray::array![[4u32, 7, NO_NEIGHBOUR], [1, 2, 3]];
    // Query 0 has 2 neighbours and finds 1; query 1 finds 3 of 3: 4 of 5.
    let r = filtered_recall(&[vec![4, 9, 8], vec![3, 2, 1]], gt.view(), 3).unwrap();
    assert!((r - 0.8).abs() < 1e-12, "{r}");
    // Without padding it is plain recall@k.
    let full = ndarray::array![[1u32, 2], [3, 4]];
    assert_eq!(
        filtered_recall(&[vec![1], vec![3, 4]], full.view(), 2).unwrap(),
        0.75
    );
    assert!(filtered_recall(&[vec![1]], full.view(), 2).is_err());
}

/// The payloads `load` writes and the filters the bench sends select, in the shard itself, the
/// points the ground truth was computed over: the shard's exact filtered search returns the
/// ground truth's neighbours.
#[test]
fn the_shard_filters_on_the_payloads_the_ground_truth_assumes() {
    let data = uniform(2500, 30, 16, Metric::L2);
    let workload = Workload::new(&data, 10, 1).unwrap();
    let defaults = ShardDefaults {
        index: IndexDefaults {
            seal_threshold: 1000,
            nlist: 8,
            ..IndexDefaults::default()
        },
        ..ShardDefaults::default()
    };
    let shard = Shard::new_inline_builds(shard_config(&workload, &defaults).unwrap());
    let sels = selectivities(&[0.01, 0.5]).unwrap();
    load(&shard, &workload, &sels, 300, true).unwrap();
    assert_eq!(shard.stats().points, 2500);
    assert_eq!(
        shard.stats().indexed_points,
        2000,
        "two sealed segments of 1000"
    );
    for sel in sels {
        let f = FilteredWorkload::new(sel, data.base.view(), data.queries.view(), 10, Metric::L2)
            .unwrap();
        for q in 0..30 {
            let filter: Filter = serde_json::from_value(sel.filter_json(q)).unwrap();
            let compiled = filter.compile().unwrap();
            let query = data.queries.row(q).to_vec();
            let hits = shard
                .search(&SearchRequest {
                    exact: true,
                    ..default_request(&query, 10, Some(&compiled), &defaults)
                })
                .unwrap();
            let got: Vec<u32> = hits
                .iter()
                .map(|h| match h.record.id {
                    PointId::Num(n) => n as u32,
                    PointId::Uuid(_) => panic!("uuid"),
                })
                .collect();
            let want: Vec<u32> = f
                .groundtruth
                .row(q)
                .iter()
                .copied()
                .filter(|&r| r != NO_NEIGHBOUR)
                .collect();
            assert_eq!(got, want, "1/{} query {q}", sel.buckets);
        }
    }
}

fn row_keys(row: &QueryResult) -> serde_json::Map<String, serde_json::Value> {
    serde_json::to_value(row)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// `--engine shard` end to end on a small set: the base written through the shard's write path
/// seals into indexed segments, the report has one unfiltered row and one row per selectivity
/// with the layout the queries met, and the recall is measured against the right ground truth
/// (a filter that selected other points than the ground truth's would score near 0).
#[test]
fn shard_engine_reports_a_row_per_workload() {
    let data = uniform(3000, 60, 16, Metric::L2);
    let workload = Workload::new(&data, 10, 1).unwrap();
    let options = DbOptions {
        defaults: ShardDefaults {
            index: IndexDefaults {
                seal_threshold: 1000,
                nlist: 16,
                ..IndexDefaults::default()
            },
            ..ShardDefaults::default()
        },
        batch_size: 256,
        settle: std::time::Duration::from_secs(5),
        filters: selectivities(&[0.01, 0.1, 0.5]).unwrap(),
        payload_indexes: true,
    };
    let report = run_shard_db(&workload, &options, Some("db".into())).unwrap();
    assert_eq!(report.engine, "shoal-shard");
    assert_eq!(report.label.as_deref(), Some("db"));
    assert_eq!(
        (report.n, report.dim, report.k, report.threads),
        (3000, 16, 10, 1)
    );
    assert_eq!(
        (report.nlist, report.pq_m, report.pq_bits),
        (Some(16), Some(8), Some(4))
    );
    assert_eq!(
        report.indexed_points,
        Some(3000),
        "every point sealed and indexed"
    );
    assert!(report.segments.is_some_and(|s| s >= 2));
    assert!(report.index_wait_seconds.is_some());
    assert!(report.ingest_vectors_per_second.is_some_and(|v| v > 0.0));
    let selectivity: Vec<Option<f64>> = report.results.iter().map(|r| r.selectivity).collect();
    assert_eq!(selectivity, [None, Some(0.01), Some(0.1), Some(0.5)]);
    for r in &report.results {
        // The server's defaults: nothing fixed, so the largest segment's calibrated choice at
        // recall 0.95 is reported: within its 16 lists, a measured rerank.
        assert!((1..=16).contains(&r.nprobe), "{r:?}");
        assert!(
            crate::shard::calibrate::RERANKS.contains(&r.rerank),
            "{r:?}"
        );
        assert!(
            r.qps > 0.0 && r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms,
            "{r:?}"
        );
        assert!(r.recall >= 0.9, "{r:?}");
        assert!(report.unfiltered_twin(r).is_some());
        assert_eq!(
            row_keys(r).contains_key("selectivity"),
            r.selectivity.is_some()
        );
    }
    let json = serde_json::to_value(&report).unwrap();
    for key in ["segments", "indexed_points", "index_wait_seconds"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let back: BenchReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    let table = report.table();
    assert!(
        table.contains("x_unfilt") && table.contains("segments="),
        "{table}"
    );
    assert!(
        table.contains("50.000%") && table.contains("1.000%"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 3 + 4, "{table}");
}

/// A load that leaves points unindexed (today: the tail under `seal_threshold`) is waited for
/// only `settle`, and the report says how many points were indexed.
#[test]
fn an_unindexed_tail_is_reported_not_waited_for() {
    let data = uniform(1500, 20, 8, Metric::L2);
    let workload = Workload::new(&data, 10, 1).unwrap();
    let options = DbOptions {
        defaults: ShardDefaults {
            index: IndexDefaults {
                seal_threshold: 1000,
                nlist: 8,
                ..IndexDefaults::default()
            },
            ..ShardDefaults::default()
        },
        batch_size: 500,
        settle: std::time::Duration::from_millis(200),
        filters: Vec::new(),
        payload_indexes: true,
    };
    let report = run_shard_db(&workload, &options, None).unwrap();
    let indexed = report.indexed_points.unwrap();
    let waited = report.index_wait_seconds.unwrap();
    assert!(
        indexed == 1500 || waited >= 0.2,
        "{indexed} indexed after {waited}s"
    );
    assert!(waited < 30.0);
    assert_eq!(report.results.len(), 1);
    assert!(report.results[0].recall >= 0.9);
}
