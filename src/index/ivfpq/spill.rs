//! The second list of every vector under SOAR (spilling with orthogonality-amplified residuals,
//! Sun et al., NeurIPS 2023), for [`IvfPqConfig::soar_lambda`](super::IvfPqConfig::soar_lambda).
//!
//! A vector `x` in list `p` is missed by a query `q` when `<q, r>` (its residual `r = x - c_p`)
//! makes `c_p` look far from `q` although `x` is near. Its copy helps most where that error does
//! not repeat: in a list `c` whose residual `x - c` is small *and* close to orthogonal to `r`. So
//! the second list minimises `‖x - c‖² + λ <x - c, r̂>²` over every `c ≠ c_p`.
//!
//! A copy is kept only where its residual is at most [`MAX_RESIDUAL_RATIO`] times (squared) the
//! vector's own: a list that much farther is probed by queries far from the vector, and its
//! code, for a residual larger than the codebooks were trained on, would misjudge it.
//!
//! One matrix product per block of rows gives what the loss needs. `X · Cᵀ` gives `<x, c>` for
//! every list, and `<x - c, r̂> = <x, r̂> - <c, r̂>` with `<c, r̂> = (<c, x> - <c, c_p>) / ‖r‖`:
//! the block's rows are taken in list order, so its few own lists' products `C_p · Cᵀ` are a
//! small second product, where stacking the residual directions under the rows (`[X; R̂] · Cᵀ`)
//! doubled the work (0.37 s → 0.26 s of a 58k × 384 MiniLM build at nlist 1024).

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::index::{distance, kmeans};

/// Rows per matrix product: with `k` centroids the products hold at most `2 * ROWS * k` floats.
const ROWS: usize = 128;

/// The largest `‖x - c‖² / ‖x - c_p‖²` of a spilled copy. On 58k × 384 MiniLM at nlist 1024 the
/// ratio's median is 1.4, its 99th percentile 4.4; dropping the copies above 4 (1.4% of them)
/// left the recall of exact lists unchanged at nprobe 16, 32 and 64 and scanned 1% fewer codes,
/// and on data whose clusters are far apart it keeps the copies out of far lists, whose 4-bit
/// codes underestimated their distances and crowded out the true neighbours.
pub(super) const MAX_RESIDUAL_RATIO: f32 = 4.0;

/// The spilled list of every row of `data` (`dim` floats each), given each row's own list
/// `primary`: the list `c ≠ primary` minimising `‖x - c‖² + lambda * <x - c, r̂>²`. `None` for a
/// row when there is no other list, or when that list's residual is more than
/// [`MAX_RESIDUAL_RATIO`] times its own. Entry `e` of the answer is row `order[e]`'s: `order`
/// holds every row once, grouped by own list (the index's layout, so a block of rows has few own
/// lists). Parallel over blocks of rows.
pub(super) fn soar_lists(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    primary: &[u32],
    order: &[usize],
    lambda: f32,
) -> Vec<Option<u32>> {
    let k = centroids.len() / dim;
    let c_norms: Vec<f32> = centroids.chunks_exact(dim).map(distance::norm_sq).collect();
    let ct = ArrayView2::from_shape((k, dim), centroids).expect("k * dim floats");
    let ct = ct.t();
    let mut by_entry = vec![None; order.len()];
    by_entry
        .par_chunks_mut(ROWS)
        .zip(order.par_chunks(ROWS))
        .for_each_init(
            || {
                (
                    vec![0.0f32; ROWS * dim],
                    vec![0.0f32; ROWS * dim],
                    vec![0.0f32; 2 * ROWS * k],
                    vec![0.0f32; k],
                )
            },
            |(xs, own_lists, products, extra), (out, rows)| {
                let r = rows.len();
                for (x, &row) in xs.chunks_exact_mut(dim).zip(rows) {
                    x.copy_from_slice(&data[row * dim..][..dim]);
                }
                // The block's own lists, each once (rows are sorted by list), and each row's.
                let mut lists: Vec<u32> = Vec::new();
                let mut run = Vec::with_capacity(r);
                for &row in rows {
                    let p = primary[row];
                    if lists.last() != Some(&p) {
                        own_lists[lists.len() * dim..][..dim]
                            .copy_from_slice(&centroids[p as usize * dim..][..dim]);
                        lists.push(p);
                    }
                    run.push(lists.len() - 1);
                }
                let u = lists.len();
                let (xc, gc) = products.split_at_mut(ROWS * k);
                let xv = ArrayView2::from_shape((r, dim), &xs[..r * dim]).expect("r * dim");
                let mut xcv = ArrayViewMut2::from_shape((r, k), &mut xc[..r * k]).expect("r * k");
                ndarray::linalg::general_mat_mul(1.0, &xv, &ct, 0.0, &mut xcv);
                let pv = ArrayView2::from_shape((u, dim), &own_lists[..u * dim]).expect("u * dim");
                let mut gcv = ArrayViewMut2::from_shape((u, k), &mut gc[..u * k]).expect("u * k");
                ndarray::linalg::general_mat_mul(1.0, &pv, &ct, 0.0, &mut gcv);
                for (i, o) in out.iter_mut().enumerate() {
                    let p = lists[run[i]] as usize;
                    let xr = &xs[i * dim..(i + 1) * dim];
                    let cp = &centroids[p * dim..(p + 1) * dim];
                    let residual = distance::l2_sq(xr, cp).sqrt();
                    let inv = if residual > 0.0 { 1.0 / residual } else { 0.0 };
                    let xn = distance::norm_sq(xr);
                    let (xc, gc) = (&xc[i * k..(i + 1) * k], &gc[run[i] * k..(run[i] + 1) * k]);
                    // <x, r̂> = (‖x‖² - <x, c_p>) / ‖r‖.
                    let x_dir = (xn - xc[p]) * inv;
                    // The loss is `extra[c] - 2 <x, c>`: `extra` is one branch-free pass that
                    // vectorises, and the SIMD arg-min of k-means finds the best list (a
                    // branch per list, scalar, had been an eighth of a 1M-row build).
                    for (((e, &cn), &xcc), &gcc) in extra.iter_mut().zip(&c_norms).zip(xc).zip(gc) {
                        let along = x_dir - (xcc - gcc) * inv;
                        *e = xn + cn + lambda * along * along;
                    }
                    extra[p] = f32::INFINITY;
                    let (best, loss) = kmeans::argmin_shifted(xc, &extra[..k]);
                    let best = (loss < f32::INFINITY).then_some((best as usize, loss));
                    let dist = |c: usize| (xn + c_norms[c] - 2.0 * xc[c]).max(0.0);
                    let own = dist(p);
                    *o = best
                        .filter(|&(c, _)| dist(c) <= MAX_RESIDUAL_RATIO * own)
                        .map(|(c, _)| c as u32);
                }
            },
        );
    by_entry
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// The loss of list `c` for row `x` in list `p`, written out directly.
    fn loss(x: &[f32], centroids: &[f32], dim: usize, p: usize, c: usize, lambda: f32) -> f32 {
        let cp = &centroids[p * dim..(p + 1) * dim];
        let cc = &centroids[c * dim..(c + 1) * dim];
        let r: Vec<f32> = x.iter().zip(cp).map(|(a, b)| a - b).collect();
        let rn = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        let d: Vec<f32> = x.iter().zip(cc).map(|(a, b)| a - b).collect();
        let along: f32 = d.iter().zip(&r).map(|(a, b)| a * b / rn).sum();
        d.iter().map(|v| v * v).sum::<f32>() + lambda * along * along
    }

    #[test]
    fn each_row_spills_to_the_list_of_least_soar_loss() {
        let dim = 8;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut next = || rng.random_range(-0.5..0.5f32);
        let centroids: Vec<f32> = (0..20 * dim).map(|_| next()).collect();
        let data: Vec<f32> = (0..300 * dim).map(|_| next()).collect();
        let primary = crate::index::kmeans::assign(&data, dim, &centroids);
        // Grouped by own list, as the index lays rows out.
        let mut order: Vec<usize> = (0..300).collect();
        order.sort_by_key(|&r| primary[r]);
        for lambda in [0.0, 1.5, 4.0] {
            let spilled = soar_lists(&data, dim, &centroids, &primary, &order, lambda);
            assert_eq!(spilled.len(), 300);
            let mut copies = 0;
            for (&i, s) in order.iter().zip(&spilled) {
                let x = &data[i * dim..(i + 1) * dim];
                let p = primary[i] as usize;
                let (best, best_loss) = (0..20)
                    .filter(|&c| c != p)
                    .map(|c| (c, loss(x, &centroids, dim, p, c, lambda)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap();
                let sq = |c: usize| loss(x, &centroids, dim, p, c, 0.0);
                match s {
                    Some(s) => {
                        let s = *s as usize;
                        copies += 1;
                        assert_ne!(s, p);
                        let got = loss(x, &centroids, dim, p, s, lambda);
                        assert!(got <= best_loss + 1e-4, "row {i}: {s} ({got}) vs {best}");
                        assert!(sq(s) <= MAX_RESIDUAL_RATIO * sq(p) * 1.001);
                    }
                    // Left out only when the best list is too far.
                    None => assert!(sq(best) >= MAX_RESIDUAL_RATIO * sq(p) * 0.999),
                }
            }
            assert!(copies > 100, "{copies} of 300 spilled at lambda {lambda}");
        }
        // One list: nowhere to spill.
        let one = soar_lists(&data, dim, &centroids[..dim], &vec![0; 300], &order, 1.0);
        assert!(one.iter().all(Option::is_none));
    }
}
