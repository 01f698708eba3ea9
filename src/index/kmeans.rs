//! Lloyd's k-means: the coarse quantizer of IVF and the codebooks of PQ are both trained here.
//!
//! Choices, and why:
//! - **Training sample.** At most `k * max_points_per_centroid` points, drawn without replacement
//!   with the seeded RNG (FAISS does the same): more points barely move the centroids but cost
//!   linear time per iteration.
//! - **Init by sampled k-means++.** Random-sample init (FAISS's default) regularly puts two seeds
//!   in one natural cluster and Lloyd never separates them; full k-means++ is `k` sequential
//!   passes over all `n` points, far too slow for `k = 4096`. So k-means++ runs on a random
//!   subsample of `KMEANSPP_POINTS_PER_CENTROID * k` training points; each pass is one parallel
//!   batch-kernel call (the new seed against the subsample).
//! - **Assignment as a matrix product.** `‖x - c‖² = ‖x‖² - 2 x·c + ‖c‖²`: the `x·c` block for a
//!   block of rows is one GEMM (ndarray/matrixmultiply), which reuses each loaded centroid across
//!   many rows and beats pairwise SIMD kernels once `k` is more than a few dozen (see
//!   `benches/kmeans.rs`). Blocks of rows run in parallel on rayon. Few centroids of large
//!   dimension use the pairwise batch kernels instead ([`gemm_pays_off`]). The scan of each GEMM
//!   output row for its minimum is fused with the `‖c‖² - 2 x·c` shift (`kmeans/argmin.rs`).
//! - **Determinism.** Same seed and data give bit-identical centroids whatever the thread count:
//!   blocks of rows have a fixed size, each row's result depends only on its own block, and the
//!   update step sums each cluster's members in row order (points are bucketed by cluster first,
//!   then clusters are averaged in parallel, one task per cluster, in `f64`). Across machines
//!   with different SIMD levels the last bits may differ (different kernels, same maths).
//! - **Empty clusters** are re-seeded by splitting the largest cluster: the empty centroid takes a
//!   copy of the largest one, and the two are nudged apart symmetrically (as FAISS does).
//! - **Spherical** k-means (for cosine) re-normalises centroids after every update.

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

mod argmin;

use self::argmin::argmin;
pub(crate) use self::argmin::argmin_shifted;
use super::distance::{self, Kernels};
use super::{IndexError, Metric};

/// How to train a k-means model.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    /// Number of centroids.
    pub k: usize,
    /// Lloyd iterations (assignment + update); 10-25 is typical.
    pub iters: usize,
    /// Seed of every random choice (sample, init, re-seeding): same seed, same centroids.
    pub seed: u64,
    /// The training sample is capped at `k * max_points_per_centroid` points.
    pub max_points_per_centroid: usize,
    /// Normalise centroids to unit length after each update (for cosine / inner product).
    pub spherical: bool,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            k: 256,
            iters: 20,
            seed: 0x5eed,
            max_points_per_centroid: 256,
            spherical: false,
        }
    }
}

/// How [`assign_with`] computes nearest centroids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignMethod {
    /// GEMM unless `k` is small and the dimension large (see [`gemm_pays_off`]).
    Auto,
    /// `x·c` blocks by matrix multiplication.
    Gemm,
    /// One SIMD batch kernel call (query against all centroids) per row.
    Pairwise,
}

/// Whether GEMM beats the pairwise kernels for `k` centroids of `dim` components.
///
/// Measured (CPU time of one assignment of 32-64k rows, one thread): GEMM wins from `k = 64` at
/// any dimension (d=128: k=256 25 ms vs 39 ms; k=64 a tie) and from `k = 16` at PQ sub-vector
/// dimensions (d=8, k=16: 1.0 ms vs 1.6 ms; d=8, k=256: 5.1 ms vs 22.5 ms), where the batch
/// kernels waste lanes; pairwise wins for few centroids of large dimension (d=128, k=16: 2.1 ms
/// vs 4.9 ms), where packing the rows for GEMM is not amortised.
pub fn gemm_pays_off(dim: usize, k: usize) -> bool {
    k >= 64 || (dim <= 32 && k >= 16)
}

/// Target size of one GEMM output block (rows × k floats): ~1 MiB stays in L2.
const GEMM_BLOCK_FLOATS: usize = 256 * 1024;

/// Rows per parallel task of the pairwise method.
const PAIRWISE_BLOCK_ROWS: usize = 256;

/// Trains `config.k` centroids on the `n = data.len() / dim` rows of `data` (row-major) and
/// returns them row-major (`k * dim` floats).
///
/// # Panics
/// On arguments [`try_train`] refuses (zero `dim` or `k`, no rows, ragged data, non-finite
/// values): index builders validate their input first, so these are caller bugs. Use
/// [`try_train`] to get an error instead.
pub fn train(data: &[f32], dim: usize, config: &KMeansConfig) -> Vec<f32> {
    match try_train(data, dim, config) {
        Ok(c) => c,
        Err(e) => panic!("kmeans::train: {e}"),
    }
}

/// [`train`], refusing invalid input with an error instead of panicking.
pub fn try_train(data: &[f32], dim: usize, config: &KMeansConfig) -> Result<Vec<f32>, IndexError> {
    validate(data, dim, config)?;
    let n = data.len() / dim;
    let k = config.k;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);

    // Training sample (sorted indices keep memory access in order).
    let cap = k.saturating_mul(config.max_points_per_centroid.max(1));
    let owned;
    let train: &[f32] = if n > cap {
        let mut idx = sample(&mut rng, n, cap).into_vec();
        idx.sort_unstable();
        owned = gather(data, dim, &idx);
        &owned
    } else {
        data
    };
    let nt = train.len() / dim;

    let mut centroids = if nt > k {
        init_kmeanspp_sampled(train, dim, k, &mut rng)
    } else {
        // Every point, then copies: the copies are empty clusters, split on the first update.
        let mut c = Vec::with_capacity(k * dim);
        for i in 0..k {
            let r = i % nt;
            c.extend_from_slice(&train[r * dim..(r + 1) * dim]);
        }
        c
    };
    if config.spherical {
        centroids.chunks_mut(dim).for_each(distance::normalize);
    }

    let mut labels = vec![0u32; nt];
    for _ in 0..config.iters {
        assign_into(
            train,
            dim,
            &centroids,
            AssignMethod::Auto,
            Nearest::L2,
            &mut labels,
            None,
        );
        update(train, dim, &labels, &mut centroids, config.spherical);
    }
    Ok(centroids)
}

fn validate(data: &[f32], dim: usize, config: &KMeansConfig) -> Result<(), IndexError> {
    if dim == 0 {
        return Err(IndexError::InvalidParameter(
            "dimension must be positive".into(),
        ));
    }
    if config.k == 0 {
        return Err(IndexError::InvalidParameter("k must be positive".into()));
    }
    if config.k > u32::MAX as usize {
        return Err(IndexError::InvalidParameter(format!(
            "k = {} is too large",
            config.k
        )));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: data.len() % dim,
        });
    }
    if data.is_empty() {
        return Err(IndexError::NotEnoughData { needed: 1, got: 0 });
    }
    if !data.iter().all(|x| x.is_finite()) {
        return Err(IndexError::NonFinite);
    }
    Ok(())
}

/// k-means++ seeds are drawn from this many subsampled training points per centroid. Init costs
/// `k` passes over `k * this` points. Measured (150k × 128, 4096 blobs, k = 4096, CPU time):
/// 16 → 8.7 s init and MSE 6.65 after 3 iterations; 8 → 4.5 s and 6.58; 4 → 3.1 s and 6.96.
const KMEANSPP_POINTS_PER_CENTROID: usize = 8;

/// Rows per parallel task when updating k-means++ distances.
const KMEANSPP_BLOCK_ROWS: usize = 1024;

/// k-means++ (each new seed drawn with probability proportional to its squared distance to the
/// nearest seed so far) on a random subsample of `train`. Needs `train` to hold more than `k` rows.
fn init_kmeanspp_sampled(train: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    use rand::RngExt;
    let nt = train.len() / dim;
    let m = k.saturating_mul(KMEANSPP_POINTS_PER_CENTROID).min(nt);
    let owned;
    let pts: &[f32] = if m < nt {
        let mut idx = sample(rng, nt, m).into_vec();
        idx.sort_unstable();
        owned = gather(train, dim, &idx);
        &owned
    } else {
        train
    };
    let kernels = Kernels::best();
    let mut centroids = Vec::with_capacity(k * dim);
    let mut min_d = vec![f32::INFINITY; m];
    let mut next = rng.random_range(0..m);
    for _ in 0..k {
        let c = &pts[next * dim..(next + 1) * dim];
        centroids.extend_from_slice(c);
        min_d
            .par_chunks_mut(KMEANSPP_BLOCK_ROWS)
            .enumerate()
            .for_each_init(
                || vec![0.0f32; KMEANSPP_BLOCK_ROWS],
                |buf, (b, md)| {
                    let start = b * KMEANSPP_BLOCK_ROWS * dim;
                    let rows = &pts[start..start + md.len() * dim];
                    let buf = &mut buf[..md.len()];
                    kernels.l2_sq_batch(c, rows, dim, buf);
                    for (m, &d) in md.iter_mut().zip(buf.iter()) {
                        *m = m.min(d);
                    }
                },
            );
        // Sequential f64 sums keep the draw independent of the thread count.
        let total: f64 = min_d.iter().map(|&d| f64::from(d)).sum();
        next = if total > 0.0 && total.is_finite() {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0f64;
            let mut pick = m - 1;
            for (i, &d) in min_d.iter().enumerate() {
                acc += f64::from(d);
                if acc > target {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point coincides with a seed: any choice is as good (clusters will be split).
            rng.random_range(0..m)
        };
    }
    centroids
}

fn gather(data: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * dim);
    for &r in rows {
        out.extend_from_slice(&data[r * dim..(r + 1) * dim]);
    }
    out
}

/// Recomputes every non-empty centroid as the mean of its members, then re-seeds empty ones.
fn update(train: &[f32], dim: usize, labels: &[u32], centroids: &mut [f32], spherical: bool) {
    let k = centroids.len() / dim;
    // Bucket rows by cluster (counting sort, stable: members stay in row order).
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let mut offsets = vec![0usize; k + 1];
    for c in 0..k {
        offsets[c + 1] = offsets[c] + counts[c];
    }
    let mut order = vec![0u32; labels.len()];
    let mut next = offsets.clone();
    for (row, &l) in labels.iter().enumerate() {
        order[next[l as usize]] = row as u32;
        next[l as usize] += 1;
    }

    centroids.par_chunks_mut(dim).enumerate().for_each_init(
        || vec![0.0f64; dim],
        |sum, (c, out)| {
            let members = &order[offsets[c]..offsets[c + 1]];
            if members.is_empty() {
                return;
            }
            sum.fill(0.0);
            for &row in members {
                let x = &train[row as usize * dim..(row as usize + 1) * dim];
                for (s, &v) in sum.iter_mut().zip(x) {
                    *s += f64::from(v);
                }
            }
            let inv = 1.0 / members.len() as f64;
            for (o, s) in out.iter_mut().zip(sum.iter()) {
                *o = (s * inv) as f32;
            }
            if spherical {
                distance::normalize(out);
            }
        },
    );

    split_empty_clusters(centroids, dim, &mut counts, spherical);
}

/// Relative nudge applied when splitting a cluster (FAISS uses the same value).
const SPLIT_EPS: f32 = 1.0 / 1024.0;

/// Gives every empty cluster half of the currently largest cluster: copy its centroid, then push
/// the two copies apart along a fixed ± pattern.
fn split_empty_clusters(centroids: &mut [f32], dim: usize, counts: &mut [usize], spherical: bool) {
    let k = counts.len();
    for empty in 0..k {
        if counts[empty] != 0 {
            continue;
        }
        // Largest cluster, lowest index on ties.
        let Some(big) = (0..k).max_by_key(|&c| (counts[c], std::cmp::Reverse(c))) else {
            return;
        };
        if counts[big] == 0 {
            return;
        }
        let src: Vec<f32> = centroids[big * dim..(big + 1) * dim].to_vec();
        let rms = (src.iter().map(|x| x * x).sum::<f32>() / dim as f32).sqrt();
        let rms = if rms > 0.0 && rms.is_finite() {
            rms
        } else {
            1.0
        };
        for (j, &v) in src.iter().enumerate() {
            let delta = SPLIT_EPS * (v.abs() + rms);
            let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
            centroids[empty * dim + j] = v + sign * delta;
            centroids[big * dim + j] = v - sign * delta;
        }
        if spherical {
            distance::normalize(&mut centroids[empty * dim..(empty + 1) * dim]);
            distance::normalize(&mut centroids[big * dim..(big + 1) * dim]);
        }
        counts[empty] = counts[big] / 2;
        counts[big] -= counts[empty];
    }
}

/// The nearest centroid (squared L2, lowest index on ties) of every row of `data`. Parallel.
pub fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    assign_with(data, dim, centroids, AssignMethod::Auto)
}

/// [`assign`] with an explicit method (for benchmarks and tests).
pub fn assign_with(data: &[f32], dim: usize, centroids: &[f32], method: AssignMethod) -> Vec<u32> {
    let mut labels = vec![0u32; rows_of(data, dim)];
    assign_into(data, dim, centroids, method, Nearest::L2, &mut labels, None);
    labels
}

/// The centroid with the largest inner product (lowest index on ties) for every row of `data`:
/// the assignment that matches how [`Metric::Dot`] queries probe lists. Parallel, GEMM-based
/// like [`assign`].
pub fn assign_inner_product(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    let mut labels = vec![0u32; rows_of(data, dim)];
    let method = AssignMethod::Auto;
    assign_into(
        data,
        dim,
        centroids,
        method,
        Nearest::InnerProduct,
        &mut labels,
        None,
    );
    labels
}

/// What "nearest centroid" means for an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nearest {
    /// Smallest squared L2 distance; reported distances are squared L2.
    L2,
    /// Largest inner product; reported distances are `-dot`.
    InnerProduct,
}

/// [`assign`] that also returns each row's squared L2 distance to its centroid (e.g. to measure
/// quantization error).
pub fn assign_with_distances(data: &[f32], dim: usize, centroids: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let n = rows_of(data, dim);
    let mut labels = vec![0u32; n];
    let mut dists = vec![0.0f32; n];
    assign_into(
        data,
        dim,
        centroids,
        AssignMethod::Auto,
        Nearest::L2,
        &mut labels,
        Some(&mut dists),
    );
    (labels, dists)
}

fn rows_of(data: &[f32], dim: usize) -> usize {
    data.len().checked_div(dim).unwrap_or(0)
}

fn assign_into(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    method: AssignMethod,
    nearest: Nearest,
    labels: &mut [u32],
    dists: Option<&mut [f32]>,
) {
    let k = centroids.len().checked_div(dim).unwrap_or(0);
    if k == 0 {
        labels.fill(0);
        if let Some(d) = dists {
            d.fill(f32::INFINITY);
        }
        return;
    }
    let n = labels.len();
    let mut scratch_dists;
    let dists = match dists {
        Some(d) => d,
        None => {
            scratch_dists = vec![0.0f32; n];
            &mut scratch_dists[..]
        }
    };
    let gemm = match method {
        AssignMethod::Auto => gemm_pays_off(dim, k),
        AssignMethod::Gemm => true,
        AssignMethod::Pairwise => false,
    };
    if gemm {
        assign_gemm(data, dim, centroids, nearest, labels, dists);
    } else {
        assign_pairwise(data, dim, centroids, nearest, labels, dists);
    }
}

fn assign_pairwise(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    nearest: Nearest,
    labels: &mut [u32],
    dists: &mut [f32],
) {
    let k = centroids.len() / dim;
    let kernels = Kernels::best();
    labels
        .par_chunks_mut(PAIRWISE_BLOCK_ROWS)
        .zip(dists.par_chunks_mut(PAIRWISE_BLOCK_ROWS))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; k],
            |buf, (b, (lab, dis))| {
                let start = b * PAIRWISE_BLOCK_ROWS;
                for (i, (l, d)) in lab.iter_mut().zip(dis.iter_mut()).enumerate() {
                    let row = start + i;
                    let x = &data[row * dim..(row + 1) * dim];
                    if nearest == Nearest::L2 {
                        kernels.l2_sq_batch(x, centroids, dim, buf);
                    } else {
                        kernels.dot_batch(x, centroids, dim, buf);
                        buf.iter_mut().for_each(|v| *v = -*v);
                    }
                    let (best, bd) = argmin(buf);
                    *l = best;
                    *d = bd;
                }
            },
        );
}

fn assign_gemm(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    nearest: Nearest,
    labels: &mut [u32],
    dists: &mut [f32],
) {
    use ndarray::{ArrayView2, ArrayViewMut2};
    let k = centroids.len() / dim;
    let kernels = Kernels::best();
    // argmin ‖c‖² - 2 x·c for L2; with zero "norms" the same scan is argmax x·c.
    let c_norms: Vec<f32> = match nearest {
        Nearest::L2 => centroids
            .chunks_exact(dim)
            .map(|c| kernels.dot(c, c))
            .collect(),
        Nearest::InnerProduct => vec![0.0; k],
    };
    let c_view = ArrayView2::from_shape((k, dim), &centroids[..k * dim]).expect("k*dim floats");
    let ct = c_view.t();
    let (block, chunk) = gemm_blocking(k);
    labels
        .par_chunks_mut(block)
        .zip(dists.par_chunks_mut(block))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; block * chunk],
            |buf, (b, (lab, dis))| {
                let rows = lab.len();
                let x = &data[b * block * dim..(b * block + rows) * dim];
                let xv = ArrayView2::from_shape((rows, dim), x).expect("rows*dim floats");
                // Each row's best so far over the chunks of centroids (`dis` holds the shifted
                // value until the end); ties keep the lowest index, as one scan would.
                lab.fill(0);
                dis.fill(f32::INFINITY);
                for c0 in (0..k).step_by(chunk) {
                    let kc = chunk.min(k - c0);
                    let mut out = ArrayViewMut2::from_shape((rows, kc), &mut buf[..rows * kc])
                        .expect("rows*kc floats");
                    let cts = ct.slice(ndarray::s![.., c0..c0 + kc]);
                    ndarray::linalg::general_mat_mul(1.0, &xv, &cts, 0.0, &mut out);
                    for (i, (l, d)) in lab.iter_mut().zip(dis.iter_mut()).enumerate() {
                        let (best, bv) =
                            argmin_shifted(&buf[i * kc..(i + 1) * kc], &c_norms[c0..c0 + kc]);
                        if bv < *d {
                            *l = c0 as u32 + best;
                            *d = bv;
                        }
                    }
                }
                for (i, d) in dis.iter_mut().enumerate() {
                    *d = match nearest {
                        Nearest::L2 => {
                            let xr = &x[i * dim..(i + 1) * dim];
                            (kernels.dot(xr, xr) + *d).max(0.0)
                        }
                        Nearest::InnerProduct => 0.5 * *d,
                    };
                }
            },
        );
}

/// Rows per block and centroids per matrix product of [`assign_gemm`], for `k` centroids.
///
/// Each product packs its centroids (`k × dim` floats) for the block's rows, so with all of
/// them in one product the block must be short for its output to stay in L2, and packing
/// becomes the cost: at `k = 4096` a block was 64 rows, and packing 21% of a 1M-row build
/// (perf), beside 63% in the multiply. Past [`GEMM_CHUNK_CENTROIDS`] the centroids are taken
/// in chunks of that many and a block holds as many rows, so each pack serves 8× the rows; the
/// running minimum over chunks is the one scan's answer.
fn gemm_blocking(k: usize) -> (usize, usize) {
    if k <= 2 * GEMM_CHUNK_CENTROIDS {
        ((GEMM_BLOCK_FLOATS / k).clamp(16, 1024), k)
    } else {
        (
            GEMM_BLOCK_FLOATS / GEMM_CHUNK_CENTROIDS,
            GEMM_CHUNK_CENTROIDS,
        )
    }
}

/// Centroids per matrix product of [`assign_gemm`] when there are many (see [`gemm_blocking`]).
const GEMM_CHUNK_CENTROIDS: usize = 512;

/// The `n` centroids closest to `query` under `metric`, closest first (ties by index), as
/// `(centroid index, distance)`: the nprobe lists an IVF search visits.
pub fn nearest_centroids(
    query: &[f32],
    centroids: &[f32],
    dim: usize,
    n: usize,
    metric: Metric,
) -> Vec<(u32, f32)> {
    let k = rows_of(centroids, dim);
    let mut d = vec![0.0f32; k];
    distance::distance_batch(metric, query, centroids, dim, &mut d);
    let mut idx: Vec<(u32, f32)> = d
        .into_iter()
        .enumerate()
        .map(|(i, x)| (i as u32, x))
        .collect();
    let cmp = |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    let n = n.min(k);
    if n == 0 {
        return Vec::new();
    }
    if n < k {
        idx.select_nth_unstable_by(n - 1, cmp);
        idx.truncate(n);
    }
    idx.sort_unstable_by(cmp);
    idx
}

#[cfg(test)]
mod tests;
