//! Exact k nearest neighbours of many queries at once, by blocked matrix products: the yardstick
//! every recall figure is measured against (dataset ground truth, a segment's calibration).
//!
//! Queries × base distances are computed a block of base rows at a time as one matrix product
//! (`ndarray::linalg::general_mat_mul`): `|q - b|² = |q|² + |b|² - 2 q·b` for L2, `1 - q̂·b/|b|`
//! for cosine (queries normalised once), `-q·b` for dot. Query blocks run in parallel on rayon,
//! each keeping a bounded top-k per query, so 10k × 1M × 128 is a few minutes on two cores and
//! needs only one block of distances per thread in memory. A product reads each base block once
//! for a whole block of queries, where a distance per pair streams the whole base once per query:
//! a segment's calibration (256 queries over its own rows) went from memory-bound to
//! compute-bound this way.
//!
//! **Sets.** One pass can answer several questions: the top-k of each query within each of
//! `sets` subsets of the base, a row admitted to a set by the caller's `admit(set, query, row)`.
//! `admit` is asked only for rows close enough to enter that set's top-k, so a sparse subset
//! costs a few calls per query rather than one per row.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

use super::{Metric, TopK};

/// Base rows per block of the distance product: large enough for the GEMM to run at speed, small
/// enough that a block of distances stays in cache-friendly memory.
pub const BASE_BLOCK: usize = 4096;

/// One query's neighbours in one set: `(base row, distance)`, nearest first (ties broken by the
/// smaller row), distances under the metric (smaller is closer: squared L2, `1 - cos`, `-dot`).
pub type Neighbours = Vec<(u32, f32)>;

/// The exact top-`k` of every query within every set: `out[set][query]`. Each set gets the `k`
/// nearest base rows that `admit(set, query, row)` lets in (fewer when fewer are admitted).
/// A row with non-finite distance ranks last (as +inf) and only fills a top-k not yet full.
///
/// The caller checks that `queries` and `base` have the same number of columns and that the
/// base's rows fit `u32`.
pub fn exact_knn_sets(
    base: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    k: usize,
    metric: Metric,
    sets: usize,
    admit: impl Fn(usize, usize, usize) -> bool + Sync,
) -> Vec<Vec<Neighbours>> {
    let nb = base.nrows();
    let nq = queries.nrows();
    debug_assert_eq!(base.ncols(), queries.ncols());
    let k = k.min(nb);
    if k == 0 || nq == 0 || sets == 0 {
        return vec![vec![Vec::new(); nq]; sets];
    }

    // Queries: normalised for cosine; squared norms for L2.
    let mut q = queries.as_standard_layout().into_owned();
    if metric == Metric::Cosine {
        q.axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut row| {
                let n = row.dot(&row).sqrt();
                if n > 0.0 {
                    row.mapv_inplace(|v| v / n);
                }
            });
    }
    let qnorm: Vec<f32> = q.axis_iter(Axis(0)).map(|r| r.dot(&r)).collect();
    // Base: squared norms (L2) or inverse norms (cosine; a zero vector gets 0, so distance 1).
    let bnorm: Vec<f32> = base
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|r| {
            let sq = r.dot(&r);
            match metric {
                Metric::L2 => sq,
                Metric::Cosine if sq > 0.0 => 1.0 / sq.sqrt(),
                Metric::Cosine | Metric::Dot => 0.0,
            }
        })
        .collect();

    let threads = rayon::current_num_threads().max(1);
    let qblock = (nq / (threads * 4)).clamp(8, 256);
    // Per query block: [query in block][set] top-k.
    let blocks: Vec<Vec<Vec<Neighbours>>> = q
        .axis_chunks_iter(Axis(0), qblock)
        .into_par_iter()
        .enumerate()
        .map(|(bi, qb)| {
            let q0 = bi * qblock;
            let rows = qb.nrows();
            let mut heaps: Vec<Vec<TopK>> = (0..rows)
                .map(|_| (0..sets).map(|_| TopK::new(k)).collect())
                .collect();
            let mut g = Array2::<f32>::zeros((rows, BASE_BLOCK.min(nb)));
            let mut b0 = 0;
            while b0 < nb {
                let b1 = (b0 + BASE_BLOCK).min(nb);
                let bb = base.slice(s![b0..b1, ..]);
                let mut gv = g.slice_mut(s![.., ..b1 - b0]);
                general_mat_mul(1.0, &qb, &bb.t(), 0.0, &mut gv);
                for (i, per_set) in heaps.iter_mut().enumerate() {
                    let query = q0 + i;
                    let row = gv.row(i);
                    let qn = qnorm[query];
                    let norms = &bnorm[b0..b1];
                    // Most rows enter no set: one compare against the loosest set's threshold
                    // (+inf while some set is not full) passes them over.
                    let mut loosest = loosest_threshold(per_set);
                    for (j, (&dot, &bn)) in row.iter().zip(norms).enumerate() {
                        let d = match metric {
                            Metric::L2 => {
                                let d = qn + bn - 2.0 * dot;
                                if d < 0.0 { 0.0 } else { d }
                            }
                            Metric::Cosine => 1.0 - dot * bn,
                            Metric::Dot => -dot,
                        };
                        // NaN fails this compare: it only fills a heap that is not full yet
                        // (as +inf, below), so every query still gets k neighbours.
                        if !(d < loosest || loosest == f32::INFINITY) {
                            continue;
                        }
                        for (set, heap) in per_set.iter_mut().enumerate() {
                            if (d < heap.threshold() || !heap.is_full())
                                && admit(set, query, b0 + j)
                            {
                                heap.push(
                                    (b0 + j) as u64,
                                    if d.is_nan() { f32::INFINITY } else { d },
                                );
                            }
                        }
                        loosest = loosest_threshold(per_set);
                    }
                }
                b0 = b1;
            }
            heaps
                .into_iter()
                .map(|per_set| {
                    per_set
                        .into_iter()
                        .map(|top| {
                            // Rows fit u32 (the caller's contract).
                            top.into_sorted_vec()
                                .into_iter()
                                .map(|n| (n.id as u32, n.distance))
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut out: Vec<Vec<Neighbours>> = (0..sets).map(|_| Vec::with_capacity(nq)).collect();
    for per_query in blocks.into_iter().flatten() {
        for (set, found) in per_query.into_iter().enumerate() {
            out[set].push(found);
        }
    }
    out
}

/// The largest threshold among `heaps`: a distance at or above it enters none of them.
fn loosest_threshold(heaps: &[TopK]) -> f32 {
    heaps
        .iter()
        .map(TopK::threshold)
        .fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Every set's answer equals a brute-force top-k over the rows that set admits, across
    /// several base blocks and query blocks, for every metric.
    #[test]
    fn each_set_equals_brute_force_over_its_admitted_rows() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (nb, nq, dim, k) = (BASE_BLOCK + 901, 37, 16, 10);
        let base = Array2::from_shape_fn((nb, dim), |_| rng.random_range(-1.0f32..1.0));
        let queries = Array2::from_shape_fn((nq, dim), |_| rng.random_range(-1.0f32..1.0));
        // Set 0: every row but the query's own number; set 1: every third row; set 2: 20 rows.
        let admit = |set: usize, query: usize, row: usize| match set {
            0 => row != query,
            1 => row.is_multiple_of(3),
            _ => row % (nb / 20) == 7,
        };
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let got = exact_knn_sets(base.view(), queries.view(), k, metric, 3, admit);
            assert_eq!(got.len(), 3);
            for (set, per_query) in got.iter().enumerate() {
                assert_eq!(per_query.len(), nq);
                for (qi, found) in per_query.iter().enumerate() {
                    let q = queries.row(qi);
                    let qn = q.dot(&q).sqrt();
                    let mut want: Vec<(f32, u32)> = (0..nb)
                        .filter(|&r| admit(set, qi, r))
                        .map(|r| {
                            let b = base.row(r);
                            let d = match metric {
                                Metric::L2 => q.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
                                Metric::Cosine => 1.0 - q.dot(&b) / (qn * b.dot(&b).sqrt()),
                                Metric::Dot => -q.dot(&b),
                            };
                            (d, r as u32)
                        })
                        .collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    want.truncate(k);
                    assert_eq!(found.len(), want.len(), "{metric:?} set {set} q{qi}");
                    for (rank, (&(id, d), &(wd, wid))) in found.iter().zip(&want).enumerate() {
                        assert!(
                            admit(set, qi, id as usize),
                            "set {set} got a row it refuses"
                        );
                        assert!(
                            id == wid || (d - wd).abs() < 1e-4,
                            "{metric:?} set {set} q{qi} rank {rank}: {id} ({d}) vs {wid} ({wd})"
                        );
                        assert!(
                            (d - wd).abs() < 1e-3 * (1.0 + wd.abs()),
                            "{metric:?} distance"
                        );
                    }
                }
            }
        }
    }

    /// `admit` is only asked about rows close enough to enter a set's top-k: a sparse set costs
    /// calls in proportion to what it could take, not to the base.
    #[test]
    fn admit_is_asked_only_for_contenders() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (nb, dim) = (20_000, 8);
        let base = Array2::from_shape_fn((nb, dim), |_| rng.random_range(-1.0f32..1.0));
        let queries = base.slice(s![..4, ..]).to_owned();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        exact_knn_sets(base.view(), queries.view(), 10, Metric::L2, 1, |_, _, _| {
            asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            true
        });
        let asked = asked.into_inner();
        assert!(
            asked < 4 * nb / 10,
            "asked {asked} times for 4 queries over {nb} rows"
        );
    }

    #[test]
    fn no_queries_no_sets_or_an_empty_base_answer_empty() {
        let base = Array2::<f32>::zeros((5, 3));
        let none = Array2::<f32>::zeros((0, 3));
        assert_eq!(
            exact_knn_sets(base.view(), none.view(), 3, Metric::L2, 2, |_, _, _| true),
            vec![Vec::<Neighbours>::new(); 2]
        );
        let q = Array2::<f32>::zeros((2, 3));
        assert!(exact_knn_sets(base.view(), q.view(), 3, Metric::L2, 0, |_, _, _| true).is_empty());
        let empty = Array2::<f32>::zeros((0, 3));
        assert_eq!(
            exact_knn_sets(empty.view(), q.view(), 3, Metric::L2, 1, |_, _, _| true),
            vec![vec![Vec::new(); 2]]
        );
    }
}
