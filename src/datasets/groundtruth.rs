//! Exact k-nearest-neighbour ground truth, the yardstick every recall number is measured against:
//! [`crate::index::knn`]'s blocked matrix products, with the checks a dataset tool needs.

use ndarray::{Array2, ArrayView2};

use super::DatasetError;
use crate::index::Metric;
use crate::index::knn::exact_knn_sets;

/// Exact top-`k` neighbours of every query: row `i` holds base row numbers, nearest first (ties
/// broken by the smaller row number). When the base has fewer than `k` rows, every row is
/// returned.
///
/// # Panics
/// When `base` and `queries` have different dimensions; [`try_exact_knn`] returns that as an
/// error instead.
pub fn exact_knn(
    base: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    k: usize,
    metric: Metric,
) -> Array2<u32> {
    match try_exact_knn(base, queries, k, metric) {
        Ok((ids, _)) => ids,
        Err(e) => panic!("exact_knn: {e}"),
    }
}

/// Like [`exact_knn`], also returning each neighbour's distance under `metric` (smaller is
/// closer: squared L2, `1 - cos`, `-dot`), and refusing mismatched dimensions with an error.
pub fn try_exact_knn(
    base: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    k: usize,
    metric: Metric,
) -> Result<(Array2<u32>, Array2<f32>), DatasetError> {
    let (nb, dim) = base.dim();
    let nq = queries.nrows();
    if queries.ncols() != dim {
        return Err(DatasetError::InvalidArgument(format!(
            "queries have dimension {}, base has {dim}",
            queries.ncols()
        )));
    }
    if k == 0 {
        return Err(DatasetError::InvalidArgument("k must be at least 1".into()));
    }
    if nb > u32::MAX as usize {
        return Err(DatasetError::InvalidArgument(format!(
            "{nb} base rows do not fit u32 ids"
        )));
    }
    let k = k.min(nb);
    if k == 0 || nq == 0 {
        return Ok((Array2::zeros((nq, k)), Array2::zeros((nq, k))));
    }

    let found = exact_knn_sets(base, queries, k, metric, 1, |_, _, _| true)
        .pop()
        .unwrap_or_default();
    let mut ids = Vec::with_capacity(nq * k);
    let mut dists = Vec::with_capacity(nq * k);
    for (id, d) in found.into_iter().flatten() {
        ids.push(id);
        dists.push(d);
    }
    let ids = Array2::from_shape_vec((nq, k), ids)
        .map_err(|e| DatasetError::InvalidArgument(e.to_string()))?;
    let dists = Array2::from_shape_vec((nq, k), dists)
        .map_err(|e| DatasetError::InvalidArgument(e.to_string()))?;
    Ok((ids, dists))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::knn::BASE_BLOCK;
    use ndarray::s;
    use rand::{RngExt, SeedableRng};

    fn brute(
        base: &Array2<f32>,
        queries: &Array2<f32>,
        k: usize,
        metric: Metric,
    ) -> Vec<Vec<(f32, u32)>> {
        queries
            .rows()
            .into_iter()
            .map(|q| {
                let qn = q.dot(&q).sqrt();
                let mut all: Vec<(f32, u32)> = base
                    .rows()
                    .into_iter()
                    .enumerate()
                    .map(|(j, b)| {
                        let d = match metric {
                            Metric::L2 => q
                                .iter()
                                .zip(b.iter())
                                .map(|(x, y)| (x - y) * (x - y))
                                .sum::<f32>(),
                            Metric::Cosine => {
                                let bn = b.dot(&b).sqrt();
                                if qn == 0.0 || bn == 0.0 {
                                    1.0
                                } else {
                                    1.0 - q.dot(&b) / (qn * bn)
                                }
                            }
                            Metric::Dot => -q.dot(&b),
                        };
                        (d, j as u32)
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all.truncate(k);
                all
            })
            .collect()
    }

    fn random(n: usize, dim: usize, seed: u64) -> Array2<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((n, dim), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn equals_brute_force_for_every_metric() {
        // More than one base block and several query blocks, to cover the block edges.
        let base = random(BASE_BLOCK + 777, 24, 1);
        let queries = random(70, 24, 2);
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let k = 15;
            let (ids, dists) = try_exact_knn(base.view(), queries.view(), k, metric).unwrap();
            let want = brute(&base, &queries, k, metric);
            for (i, w) in want.iter().enumerate() {
                for (j, &(wd, wid)) in w.iter().enumerate() {
                    let got = ids[[i, j]];
                    // Ties aside: a different id is only accepted at an equal (within rounding)
                    // brute-force distance.
                    if got != wid {
                        let gd = brute_one(&base, &queries, i, got as usize, metric);
                        assert!(
                            (gd - wd).abs() < 1e-4,
                            "{metric:?} q{i} rank {j}: {got} ({gd}) vs {wid} ({wd})"
                        );
                    }
                    assert!(
                        (dists[[i, j]] - wd).abs() < 1e-3 * (1.0 + wd.abs()),
                        "{metric:?} distance"
                    );
                }
            }
        }
    }

    fn brute_one(
        base: &Array2<f32>,
        queries: &Array2<f32>,
        qi: usize,
        bi: usize,
        metric: Metric,
    ) -> f32 {
        let b1 = base.slice(s![bi..bi + 1, ..]).to_owned();
        let q1 = queries.slice(s![qi..qi + 1, ..]).to_owned();
        brute(&b1, &q1, 1, metric)[0][0].0
    }

    #[test]
    fn nan_vectors_rank_last_and_every_query_still_gets_k() {
        let mut base = random(20, 4, 7);
        base.row_mut(3).fill(f32::NAN);
        let queries = random(3, 4, 8);
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let ids = exact_knn(base.view(), queries.view(), 20, metric);
            assert_eq!(ids.dim(), (3, 20));
            assert!(ids.rows().into_iter().all(|r| r[19] == 3), "{metric:?}");
        }
    }

    #[test]
    fn k_larger_than_base_returns_every_row_and_mismatch_is_an_error() {
        let base = random(5, 3, 3);
        let queries = random(2, 3, 4);
        let ids = exact_knn(base.view(), queries.view(), 10, Metric::L2);
        assert_eq!(ids.dim(), (2, 5));
        let mut row: Vec<u32> = ids.row(0).to_vec();
        row.sort();
        assert_eq!(row, vec![0, 1, 2, 3, 4]);
        assert!(try_exact_knn(base.view(), random(2, 4, 5).view(), 3, Metric::L2).is_err());
    }

    #[test]
    fn a_base_vector_is_its_own_nearest_neighbour() {
        let base = random(300, 16, 6);
        let queries = base.slice(s![..40, ..]).to_owned();
        for metric in [Metric::L2, Metric::Cosine] {
            let ids = exact_knn(base.view(), queries.view(), 1, metric);
            for i in 0..40 {
                assert_eq!(ids[[i, 0]], i as u32, "{metric:?}");
            }
        }
    }
}
