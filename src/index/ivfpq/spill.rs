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
//! Both products come from one matrix product per block of rows: `[X; R̂] · Cᵀ` gives `<x, c>`
//! and `<r̂, c>`, and `<x - c, r̂> = <x, r̂> - <c, r̂>`; the rest is a pass over the centroids.

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::index::distance;

/// Rows per matrix product: with `k` centroids the product holds `2 * ROWS * k` floats.
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
/// [`MAX_RESIDUAL_RATIO`] times its own. Parallel over blocks of rows.
pub(super) fn soar_lists(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    primary: &[u32],
    lambda: f32,
) -> Vec<Option<u32>> {
    let k = centroids.len() / dim;
    let c_norms: Vec<f32> = centroids.chunks_exact(dim).map(distance::norm_sq).collect();
    let ct = ArrayView2::from_shape((k, dim), centroids).expect("k * dim floats");
    let ct = ct.t();
    let mut out = vec![None; primary.len()];
    out.par_chunks_mut(ROWS)
        .zip(primary.par_chunks(ROWS))
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; 2 * ROWS * dim], vec![0.0f32; 2 * ROWS * k]),
            |(stacked, products), (b, (out, own))| {
                let rows = own.len();
                let x = &data[b * ROWS * dim..(b * ROWS + rows) * dim];
                // The first `rows` rows of `stacked` are the vectors, the next their residual
                // directions.
                let (xs, dirs) = stacked.split_at_mut(ROWS * dim);
                xs[..rows * dim].copy_from_slice(x);
                for ((d, xr), &p) in dirs.chunks_exact_mut(dim).zip(x.chunks_exact(dim)).zip(own) {
                    let c = &centroids[p as usize * dim..][..dim];
                    for ((o, &a), &b) in d.iter_mut().zip(xr).zip(c) {
                        *o = a - b;
                    }
                    let norm = distance::norm_sq(d).sqrt();
                    let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                    d.iter_mut().for_each(|v| *v *= inv);
                }
                let both = ArrayView2::from_shape((2 * ROWS, dim), &stacked[..])
                    .expect("2 * ROWS * dim floats");
                let mut prod = ArrayViewMut2::from_shape((2 * ROWS, k), &mut products[..])
                    .expect("2 * ROWS * k floats");
                ndarray::linalg::general_mat_mul(1.0, &both, &ct, 0.0, &mut prod);
                let (xc, rc) = products.split_at(ROWS * k);
                for (i, (o, &p)) in out.iter_mut().zip(own).enumerate() {
                    let xr = &x[i * dim..(i + 1) * dim];
                    let dir = &stacked[(ROWS + i) * dim..(ROWS + i + 1) * dim];
                    let x_dir = distance::dot(xr, dir);
                    let xn = distance::norm_sq(xr);
                    let (xc, rc) = (&xc[i * k..(i + 1) * k], &rc[i * k..(i + 1) * k]);
                    let dist = |c: usize| (xn + c_norms[c] - 2.0 * xc[c]).max(0.0);
                    let mut best: Option<(usize, f32)> = None;
                    for (c, &r_c) in rc.iter().enumerate() {
                        if c == p as usize {
                            continue;
                        }
                        let along = x_dir - r_c;
                        let loss = dist(c) + lambda * along * along;
                        if best.is_none_or(|(_, b)| loss < b) {
                            best = Some((c, loss));
                        }
                    }
                    let own = dist(p as usize);
                    *o = best
                        .filter(|&(c, _)| dist(c) <= MAX_RESIDUAL_RATIO * own)
                        .map(|(c, _)| c as u32);
                }
            },
        );
    out
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
        for lambda in [0.0, 1.5, 4.0] {
            let spilled = soar_lists(&data, dim, &centroids, &primary, lambda);
            let mut copies = 0;
            for (i, (s, &p)) in spilled.iter().zip(&primary).enumerate() {
                let x = &data[i * dim..(i + 1) * dim];
                let p = p as usize;
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
        let one = soar_lists(&data, dim, &centroids[..dim], &vec![0; 300], 1.0);
        assert!(one.iter().all(Option::is_none));
    }
}
