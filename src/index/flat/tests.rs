use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::index::topk::cmp_neighbors;

const METRICS: [Metric; 3] = [Metric::L2, Metric::Cosine, Metric::Dot];

/// Exact answer in f64, straight from the definitions (no normalised storage, no SIMD).
fn brute(
    data: &[Vec<f32>],
    ids: &[u64],
    q: &[f32],
    k: usize,
    metric: Metric,
    filter: Option<&RowSet>,
) -> Vec<(u64, f64)> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let mut all: Vec<(u64, f64)> = data
        .iter()
        .enumerate()
        .filter(|(r, _)| filter.is_none_or(|f| f.contains(*r)))
        .map(|(r, v)| {
            let dot: f64 = v
                .iter()
                .zip(q)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let d = match metric {
                Metric::L2 => v
                    .iter()
                    .zip(q)
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum(),
                Metric::Cosine => 1.0 - dot / (norm(v) * norm(q)),
                Metric::Dot => -dot,
            };
            (ids[r], d)
        })
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn assert_same(got: &[Neighbor], want: &[(u64, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g.distance) - w.1).abs() < 1e-3 * w.1.abs().max(1.0),
            "{what} #{i}: {g:?} vs {w:?}"
        );
        // Ids may only differ where distances tie within rounding.
        if g.id != w.0 {
            let wd = want.iter().find(|x| x.0 == g.id).map(|x| x.1);
            assert!(
                wd.is_some_and(|d| (d - w.1).abs() < 1e-4 * w.1.abs().max(1.0)),
                "{what} #{i}: {g:?} vs {w:?}"
            );
        }
    }
}

#[test]
fn search_equals_brute_force_for_every_metric_with_and_without_filter() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (n, dim) = (1500, 37);
    let data: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1000).collect();
    let dense = RowSet::from_rows(n, (0..n).filter(|r| r % 3 != 0));
    let sparse = RowSet::from_rows(n, (0..n).filter(|r| r % 97 == 5));
    for metric in METRICS {
        let mut idx = FlatIndex::new(dim, metric);
        for (id, v) in ids.iter().zip(&data) {
            idx.add(*id, v).unwrap();
        }
        assert_eq!(idx.len(), n);
        for _ in 0..10 {
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            for k in [1usize, 10, 100] {
                for (name, f) in [
                    ("none", None),
                    ("dense", Some(&dense)),
                    ("sparse", Some(&sparse)),
                ] {
                    let got = idx.search(&q, k, f);
                    let want = brute(&data, &ids, &q, k, metric, f);
                    assert_same(&got, &want, &format!("{metric:?} k={k} filter={name}"));
                    assert!(got.windows(2).all(|w| cmp_neighbors(&w[0], &w[1]).is_le()));
                }
            }
        }
    }
}

#[test]
fn search_batch_matches_single_queries() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let dim = 16;
    let mut idx = FlatIndex::new(dim, Metric::L2);
    let vecs: Vec<f32> = (0..500 * dim).map(|_| rng.random::<f32>()).collect();
    let ids: Vec<u64> = (0..500).collect();
    assert_eq!(idx.add_batch(&ids, &vecs).unwrap(), 0..500);
    let queries: Vec<f32> = (0..20 * dim).map(|_| rng.random::<f32>()).collect();
    let batch = idx.search_batch(&queries, 7, None);
    assert_eq!(batch.len(), 20);
    for (q, got) in queries.chunks(dim).zip(&batch) {
        assert_eq!(&idx.search(q, 7, None), got);
    }
}

#[test]
fn bad_vectors_are_refused_and_change_nothing() {
    let mut idx = FlatIndex::new(3, Metric::Cosine);
    assert_eq!(
        idx.add(1, &[1.0, 2.0]),
        Err(IndexError::DimensionMismatch {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        idx.add(1, &[1.0, f32::NAN, 0.0]),
        Err(IndexError::NonFinite)
    );
    assert_eq!(
        idx.add(1, &[1.0, f32::INFINITY, 0.0]),
        Err(IndexError::NonFinite)
    );
    assert!(matches!(
        idx.add_batch(&[1, 2], &[0.0; 3]),
        Err(IndexError::LengthMismatch { .. })
    ));
    assert!(matches!(
        idx.add_batch(&[1], &[0.0; 4]),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        idx.add_batch(&[1, 2], &[0.0, 1.0, 2.0, 3.0, f32::NAN, 0.0]),
        Err(IndexError::NonFinite)
    ));
    assert!(idx.is_empty());
    assert_eq!(idx.add(7, &[3.0, 0.0, 4.0]), Ok(0));
    // Cosine stores normalised vectors.
    assert_eq!(idx.vector(0), Some(&[0.6f32, 0.0, 0.8][..]));
    assert!(idx.search(&[1.0, 2.0], 1, None).is_empty());
    assert!(matches!(
        idx.try_search(&[1.0, 2.0], 1, None),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        idx.try_search(&[f32::NAN, 0.0, 0.0], 1, None),
        Err(IndexError::NonFinite)
    ));
}

#[test]
fn edge_cases_k_zero_empty_index_filter_shorter_than_index() {
    let mut idx = FlatIndex::new(2, Metric::L2);
    assert!(idx.search(&[0.0, 0.0], 5, None).is_empty());
    for i in 0..10u64 {
        idx.add(i, &[i as f32, 0.0]).unwrap();
    }
    assert!(idx.search(&[0.0, 0.0], 0, None).is_empty());
    // A filter built when the index had 5 rows excludes later rows.
    let f = RowSet::full(5);
    let got = idx.search(&[9.0, 0.0], 3, Some(&f));
    assert_eq!(got.iter().map(|n| n.id).collect::<Vec<_>>(), vec![4, 3, 2]);
    // Duplicate vectors tie on distance and are ordered by id.
    idx.add(100, &[4.0, 0.0]).unwrap();
    idx.add(50, &[4.0, 0.0]).unwrap();
    let got = idx.search(&[4.0, 0.0], 3, None);
    assert_eq!(
        got.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![4, 50, 100]
    );
}

#[test]
fn from_parts_round_trips_and_refuses_bad_parts() {
    let mut idx = FlatIndex::new(4, Metric::Cosine);
    idx.reserve(10);
    for i in 0..10u64 {
        idx.add(i * 7, &[i as f32, 1.0, -2.0, 0.5]).unwrap();
    }
    let back = FlatIndex::from_parts(
        4,
        Metric::Cosine,
        idx.vectors().to_vec(),
        idx.ids().to_vec(),
    )
    .unwrap();
    let q = [1.0f32, 0.0, 0.0, 1.0];
    assert_eq!(back.search(&q, 5, None), idx.search(&q, 5, None));
    assert!(matches!(
        FlatIndex::from_parts(4, Metric::L2, vec![0.0; 8], vec![1]),
        Err(IndexError::LengthMismatch { .. })
    ));
    assert!(matches!(
        FlatIndex::from_parts(2, Metric::L2, vec![0.0, f32::NAN], vec![1]),
        Err(IndexError::NonFinite)
    ));
    assert!(matches!(
        FlatIndex::from_parts(2, Metric::Cosine, vec![3.0, 4.0], vec![1]),
        Err(IndexError::Corrupted(_))
    ));
    assert!(FlatIndex::from_parts(2, Metric::L2, vec![3.0, 4.0], vec![1]).is_ok());
}
