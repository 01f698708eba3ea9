//! 8-bit scalar quantisation of raw vectors, for exact searches that read a quarter of the bytes.
//!
//! Each dimension `i` gets a range `[lo_i, lo_i + 255 step_i]` (the segment's own minimum and
//! maximum), and a vector is stored as one byte a dimension, `c_i = round((x_i - lo_i) / step_i)`,
//! so `x̂_i = lo_i + step_i c_i` is never further than `step_i / 2` from `x_i`.
//!
//! **Why.** A filtered search that matches few rows scans those rows' raw vectors exactly, at
//! scattered places: it is bound by memory, and `f32` rows are four times the bytes of these codes.
//! Scoring the codes first and the raw vectors of only the best few costs about a quarter of the
//! traffic ([`Sq8::exact_top_k`]).
//!
//! **Still exact.** The quantisation error is bounded, so so is the error of every approximate
//! distance ([`Sq8Query::lower_bound`]): for inner products `|<q, x> - <q, x̂>| ≤ Σ |q_i| step_i / 2`,
//! for L2 `|‖q - x‖ - ‖q - x̂‖| ≤ ‖x - x̂‖ ≤ sqrt(Σ (step_i / 2)²)`. [`Sq8::exact_top_k`] re-scores
//! rows with exact distances in the order of their approximate ones and stops at the first row
//! whose lower bound is beyond the `k`-th exact distance found: no row it skips could have
//! entered the top `k`, so the answer is the exact one (same ids, same distances), not an
//! approximation of it.
//!
//! **Distances** (`x̂ = lo + step ∘ c`, one `u8 → f32` multiply-add a dimension,
//! [`kernels::dot_u8`]): inner product and cosine `-<q, x̂> = -<q, lo> - Σ (q_i step_i) c_i`; L2
//! `‖q‖² - 2 <q, x̂> + ‖x̂‖²`, with `‖x̂‖²` stored per row (4 bytes) so L2 costs the same one loop.

pub mod kernels;

use rayon::prelude::*;

use super::error::IndexError;
use super::{Metric, Neighbor, Slab, TopK, prefetched};

/// The stored parts of an [`Sq8`]: what a storage layer writes and maps back.
#[derive(Debug, Clone)]
pub struct Sq8Parts {
    /// `2 * dim` floats: every dimension's `lo`, then every dimension's `step`.
    pub bounds: Slab<f32>,
    /// `n * dim` codes, row-major, rows in the order of the vectors they were made from.
    pub codes: Slab<u8>,
    /// L2: `n` squared norms of the decoded rows, `‖x̂‖²`. Inner product and cosine: empty.
    pub norms: Slab<f32>,
}

/// 8-bit codes of `n` vectors of dimension `dim` (see the module doc).
#[derive(Debug, Clone)]
pub struct Sq8 {
    metric: Metric,
    dim: usize,
    n: usize,
    parts: Sq8Parts,
    /// `sqrt(Σ (step_i / 2)²)`: the largest distance between a vector and its decoding (derived).
    max_error: f32,
}

impl Sq8 {
    /// Quantises `vectors` (`n * dim`, row-major, as the index stores them: normalised for
    /// cosine). Each dimension's range is its own minimum to maximum over these rows.
    pub fn encode(metric: Metric, dim: usize, vectors: &[f32]) -> Result<Sq8, IndexError> {
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::InvalidParameter(format!(
                "{} floats are not rows of dimension {dim}",
                vectors.len()
            )));
        }
        let n = vectors.len() / dim;
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        for row in vectors.chunks_exact(dim) {
            for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(v);
                *h = h.max(v);
            }
        }
        if n == 0 {
            lo.fill(0.0);
            hi.fill(0.0);
        }
        let step: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 255.0).collect();
        if lo.iter().chain(&step).any(|v| !v.is_finite()) {
            return Err(IndexError::InvalidParameter(
                "vectors hold a non-finite value".into(),
            ));
        }
        let mut codes = vec![0u8; n * dim];
        codes
            .par_chunks_mut(dim)
            .zip(vectors.par_chunks(dim))
            .for_each(|(out, row)| {
                for (i, (c, &v)) in out.iter_mut().zip(row).enumerate() {
                    *c = if step[i] > 0.0 {
                        ((v - lo[i]) / step[i]).round().clamp(0.0, 255.0) as u8
                    } else {
                        0
                    };
                }
            });
        let mut bounds = lo;
        bounds.extend_from_slice(&step);
        let norms = if metric == Metric::L2 {
            codes
                .par_chunks(dim)
                .map(|c| decoded_norm_sq(&bounds, c))
                .collect()
        } else {
            Vec::new()
        };
        Sq8::from_parts(
            metric,
            dim,
            n,
            Sq8Parts {
                bounds: bounds.into(),
                codes: codes.into(),
                norms: norms.into(),
            },
        )
    }

    /// Rebuilds codes from stored parts, checking every size (a search never reads out of bounds)
    /// and that the ranges are finite.
    pub fn from_parts(
        metric: Metric,
        dim: usize,
        n: usize,
        parts: Sq8Parts,
    ) -> Result<Sq8, IndexError> {
        let bad = |what: String| IndexError::Corrupted(format!("8-bit codes: {what}"));
        if Some(parts.bounds.len()) != dim.checked_mul(2) {
            return Err(bad(format!(
                "{} range floats for dimension {dim}",
                parts.bounds.len()
            )));
        }
        if Some(parts.codes.len()) != n.checked_mul(dim) {
            return Err(bad(format!(
                "{} codes for {n} rows of {dim}",
                parts.codes.len()
            )));
        }
        let want_norms = if metric == Metric::L2 { n } else { 0 };
        if parts.norms.len() != want_norms {
            return Err(bad(format!(
                "{} norms, expected {want_norms}",
                parts.norms.len()
            )));
        }
        let (_, step) = parts.bounds.split_at(dim);
        if parts.bounds.iter().any(|v| !v.is_finite()) || step.iter().any(|s| *s < 0.0) {
            return Err(bad("a range is not finite or is negative".into()));
        }
        let max_error = step
            .iter()
            .map(|s| (s / 2.0) * (s / 2.0))
            .sum::<f32>()
            .sqrt();
        Ok(Sq8 {
            metric,
            dim,
            n,
            parts,
            max_error,
        })
    }

    /// The parts to store; [`Sq8::from_parts`] turns them back into the same codes.
    pub fn to_parts(&self) -> Sq8Parts {
        self.parts.clone()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes held (the codes dominate: one a dimension per row).
    pub fn bytes(&self) -> usize {
        self.parts.codes.len() + 4 * (self.parts.bounds.len() + self.parts.norms.len())
    }

    /// The bytes of one row's copy ([`Sq8::copy_row`]): its codes, and on L2 its decoded
    /// squared norm after them.
    pub fn copy_bytes(&self) -> usize {
        self.dim + if self.metric == Metric::L2 { 4 } else { 0 }
    }

    /// Appends a copy of `row` to `out` ([`Sq8::copy_bytes`] bytes: its codes, then on L2 its
    /// `‖x̂‖²`, little-endian), which [`Sq8Query::approx_of_copy`] scores as
    /// [`Sq8Query::approx`] scores the row: one record, so that a run of copies is one stream.
    /// `row` must be below [`Sq8::len`].
    pub fn copy_row(&self, row: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.parts.codes[row * self.dim..(row + 1) * self.dim]);
        if let Some(n) = self.parts.norms.get(row) {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    #[cfg(test)]
    fn codes_of(&self, row: usize) -> &[u8] {
        &self.parts.codes[row * self.dim..(row + 1) * self.dim]
    }

    /// The per-query weights for `q` (normalised already for cosine, as the index stores rows).
    pub fn query(&self, q: &[f32]) -> Sq8Query<'_> {
        let (lo, step) = self.parts.bounds.split_at(self.dim);
        let q_lo: f32 = q.iter().zip(lo).map(|(a, b)| a * b).sum();
        let scale = if self.metric == Metric::L2 {
            -2.0
        } else {
            -1.0
        };
        let w = q.iter().zip(step).map(|(a, s)| scale * a * s).collect();
        let (base, error) = match self.metric {
            Metric::L2 => (
                q.iter().map(|v| v * v).sum::<f32>() - 2.0 * q_lo,
                self.max_error,
            ),
            Metric::Cosine | Metric::Dot => {
                let e: f32 = q.iter().zip(step).map(|(a, s)| a.abs() * s / 2.0).sum();
                let one = if self.metric == Metric::Cosine {
                    1.0
                } else {
                    0.0
                };
                (one - q_lo, e)
            }
        };
        Sq8Query {
            sq8: self,
            codes: &self.parts.codes,
            norms: &self.parts.norms,
            w,
            base,
            // Room for the rounding of both the approximate and the exact sums.
            error: error * 1.001 + 1e-6,
        }
    }

    /// The exact `k` nearest of `rows` (ids are the rows; sorted by distance, then row), where
    /// `exact(row)` is the row's exact distance under the metric. Scores every row's codes, then
    /// re-scores rows exactly in the order of their approximate distances until the next one's
    /// lower bound is beyond the `k`-th exact distance (see the module doc): the answer equals
    /// the one from exact distances over all of `rows`. `prefetch(row)`
    /// asks for a row's raw vector a few rows before `exact` reads it, so that the raw reads'
    /// cache misses overlap.
    pub fn exact_top_k(
        &self,
        q: &[f32],
        k: usize,
        rows: &[u32],
        exact: impl Fn(usize) -> f32,
        prefetch: impl Fn(usize),
    ) -> Vec<Neighbor> {
        if k == 0 || rows.is_empty() {
            return Vec::new();
        }
        let query = self.query(q);
        // In the order given: sorting the rows into memory order first (for DRAM pages and TLB
        // entries) cost more than it saved at every size measured, 29k x 384 to 1M x 128 rows,
        // 1% of them scattered (`benches/exact_filtered.rs`: 1M x 128, 10k rows, 667 -> 446 µs).
        // Rows ahead whose codes are asked for while this one is scored (0 to 64 measured alike
        // on MiniLM: the pass is bound by DRAM bandwidth, about 8 GB/s on one core here).
        const AHEAD: usize = 8;
        let mut approx: Vec<(f32, u32)> = Vec::with_capacity(rows.len());
        for r in prefetched(rows, AHEAD, |r| query.prefetch(r as usize)) {
            if (r as usize) < self.n {
                approx.push((query.approx(r as usize), r));
            }
        }
        self.refine_top_k(&query, k, approx, exact, prefetch)
    }

    /// The exact `k` nearest of rows already scored through their codes by `query`
    /// (`approx`: each row's approximate distance and the row, in any order), re-scoring them
    /// exactly best first until the next one's lower bound is beyond the `k`-th exact distance:
    /// the second half of [`Sq8::exact_top_k`], for callers that read the codes from a copy of
    /// their own ([`Sq8Query::approx_of_copy`]).
    pub fn refine_top_k(
        &self,
        query: &Sq8Query<'_>,
        k: usize,
        mut approx: Vec<(f32, u32)>,
        exact: impl Fn(usize) -> f32,
        prefetch: impl Fn(usize),
    ) -> Vec<Neighbor> {
        if k == 0 || approx.is_empty() {
            return Vec::new();
        }
        // Rows are re-scored best first: sort only as many as will likely be needed, and the
        // rest only if the bound says they might still matter.
        let head = (4 * k).min(approx.len());
        if head < approx.len() {
            approx.select_nth_unstable_by(head, |a, b| a.0.total_cmp(&b.0));
        }
        let (first, rest) = approx.split_at_mut(head);
        first.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut top = TopK::new(k);
        let full = |top: &TopK| top.len() == k;
        // Raw rows asked for ahead of their exact distance; at most this many beyond the last
        // one read are fetched for nothing.
        const RAW_AHEAD: usize = 4;
        for (d, r) in prefetched(first, RAW_AHEAD, |(_, r)| prefetch(r as usize)) {
            if full(&top) && query.lower_bound(d) > top.threshold() {
                return top.into_sorted_vec();
            }
            top.push(u64::from(r), exact(r as usize));
        }
        for &(d, r) in rest.iter() {
            if !full(&top) || query.lower_bound(d) <= top.threshold() {
                top.push(u64::from(r), exact(r as usize));
            }
        }
        top.into_sorted_vec()
    }
}

/// `‖x̂‖²` of one code row.
fn decoded_norm_sq(bounds: &[f32], codes: &[u8]) -> f32 {
    let (lo, step) = bounds.split_at(codes.len());
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let x = lo[i] + step[i] * f32::from(c);
            x * x
        })
        .sum()
}

/// Copies of some rows' 8-bit codes ([`Sq8::copy_row`]), record after record: what a value's
/// regrouped rows keep so that a scan reads them as one run instead of each row's codes at its
/// place in the index. Empty when made without 8-bit codes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowCopies {
    bytes: Vec<u8>,
    /// Bytes of one record ([`Sq8::copy_bytes`]); 0 when empty.
    size: usize,
}

impl RowCopies {
    /// A copy of each of `rows` (below [`Sq8::len`]) in their order; empty without `sq8`.
    pub fn of(sq8: Option<&Sq8>, rows: impl IntoIterator<Item = u32>) -> Self {
        let Some(sq8) = sq8 else {
            return Self::default();
        };
        let mut bytes = Vec::new();
        for row in rows {
            sq8.copy_row(row as usize, &mut bytes);
        }
        bytes.shrink_to_fit();
        Self {
            bytes,
            size: sq8.copy_bytes(),
        }
    }

    /// Whether no row is copied.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Record `i`, as [`Sq8Query::approx_of_copy`] scores it.
    #[inline]
    pub fn record(&self, i: usize) -> &[u8] {
        self.run(i, i + 1)
    }

    /// Records `start..end`, one after the other.
    #[inline]
    pub fn run(&self, start: usize, end: usize) -> &[u8] {
        &self.bytes[start * self.size..end * self.size]
    }

    /// Every record, in order.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks_exact(self.size.max(1))
    }
}

/// One query's weights over an [`Sq8`]'s codes.
#[derive(Debug)]
pub struct Sq8Query<'a> {
    sq8: &'a Sq8,
    /// The slabs dereferenced once per query (a deref asks the owner for its bytes).
    codes: &'a [u8],
    norms: &'a [f32],
    w: Vec<f32>,
    base: f32,
    /// Inner product and cosine: the bound on `|d - d̂|`. L2: the bound on `|‖q - x‖ - ‖q - x̂‖|`.
    error: f32,
}

impl Sq8Query<'_> {
    /// The approximate distance to `row` (the metric's distance to the decoded row), smaller is
    /// closer. `row` must be below [`Sq8::len`].
    #[inline]
    pub fn approx(&self, row: usize) -> f32 {
        let dim = self.sq8.dim;
        let norm = match self.sq8.metric {
            Metric::L2 => self.norms[row],
            Metric::Cosine | Metric::Dot => 0.0,
        };
        self.approx_of(&self.codes[row * dim..(row + 1) * dim], norm)
    }

    /// The approximate distance to a row copied by [`Sq8::copy_row`] into `copy`: what
    /// [`Sq8Query::approx`] gives for the row itself.
    #[inline]
    pub fn approx_of_copy(&self, copy: &[u8]) -> f32 {
        let (codes, norm) = copy.split_at(self.sq8.dim.min(copy.len()));
        let norm = match norm {
            &[a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
            _ => 0.0,
        };
        self.approx_of(codes, norm)
    }

    /// The approximate distance to a row whose codes are `codes` and (L2; ignored otherwise)
    /// whose decoded squared norm is `norm`.
    #[inline]
    fn approx_of(&self, codes: &[u8], norm: f32) -> f32 {
        let d = self.base + kernels::dot_u8(&self.w, codes);
        match self.sq8.metric {
            Metric::L2 => d + norm,
            Metric::Cosine | Metric::Dot => d,
        }
    }

    /// Hints the CPU to start loading a row's codes.
    #[inline]
    fn prefetch(&self, row: usize) {
        let dim = self.sq8.dim;
        if let Some(c) = self.codes.get(row * dim..(row + 1) * dim) {
            crate::index::prefetch_slice(c);
        }
        // L2 reads the row's norm too, from an array as scattered as the codes.
        if let Some(n) = self.norms.get(row) {
            crate::index::prefetch(n);
        }
    }

    /// A distance no larger than the exact distance of a row whose approximate one is `approx`.
    #[inline]
    pub fn lower_bound(&self, approx: f32) -> f32 {
        match self.sq8.metric {
            Metric::L2 => {
                let r = (approx.max(0.0).sqrt() - self.error).max(0.0);
                // Relative room for the rounding of sums of large squares.
                r * r * (1.0 - 1e-4)
            }
            Metric::Cosine | Metric::Dot => approx - self.error - 1e-6 * approx.abs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::distance::{distance, normalize};

    fn data(n: usize, dim: usize, seed: u64, cosine: bool) -> Vec<f32> {
        let mut s = seed;
        let mut v: Vec<f32> = (0..n * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // A few clusters' worth of structure: values bunch, with some outliers.
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                (u - 0.5)
                    * if (s >> 20).is_multiple_of(17) {
                        8.0
                    } else {
                        1.0
                    }
            })
            .collect();
        if cosine {
            v.chunks_exact_mut(dim).for_each(normalize);
        }
        v
    }

    /// Every decoded value is within half a step of the original.
    #[test]
    fn decoding_is_within_half_a_step() {
        let dim = 24;
        let v = data(300, dim, 3, false);
        let sq = Sq8::encode(Metric::L2, dim, &v).unwrap();
        let (lo, step) = sq.parts.bounds.split_at(dim);
        for (r, row) in v.chunks_exact(dim).enumerate() {
            let c = sq.codes_of(r);
            for i in 0..dim {
                let x = lo[i] + step[i] * f32::from(c[i]);
                assert!(
                    (x - row[i]).abs() <= step[i] / 2.0 + 1e-5,
                    "row {r} dim {i}"
                );
            }
        }
    }

    /// A row's copy ([`Sq8::copy_row`]) is scored as the row is, at every metric.
    #[test]
    fn a_copied_row_scores_as_the_row() {
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let dim = 24;
            let v = data(200, dim, 5, metric == Metric::Cosine);
            let sq = Sq8::encode(metric, dim, &v).unwrap();
            let q = data(1, dim, 77, metric == Metric::Cosine);
            let query = sq.query(&q);
            for row in 0..200 {
                let mut copy = Vec::new();
                sq.copy_row(row, &mut copy);
                assert_eq!(copy.len(), sq.copy_bytes(), "{metric:?}");
                assert_eq!(&copy[..dim], sq.codes_of(row), "{metric:?} row {row}");
                assert_eq!(
                    query.approx_of_copy(&copy),
                    query.approx(row),
                    "{metric:?} row {row}"
                );
            }
        }
    }

    /// The answer over every metric, every `k` and subsets of rows is the exact one: the same
    /// rows with the same distances, ties broken by row, as brute force over `f32` vectors.
    #[test]
    fn exact_top_k_is_brute_force() {
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let dim = 48;
            let n = 2_000;
            let v = data(n, dim, 11, metric == Metric::Cosine);
            let sq = Sq8::encode(metric, dim, &v).unwrap();
            let queries = data(20, dim, 99, metric == Metric::Cosine);
            for (qi, q) in queries.chunks_exact(dim).enumerate() {
                let exact = |r: usize| distance(metric, q, &v[r * dim..(r + 1) * dim]);
                for (k, step) in [(1, 1), (10, 1), (10, 7), (100, 3), (5_000, 2)] {
                    let rows: Vec<u32> = (0..n as u32).step_by(step).rev().collect();
                    let mut want = TopK::new(k);
                    for &r in &rows {
                        want.push(u64::from(r), exact(r as usize));
                    }
                    let got = sq.exact_top_k(q, k, &rows, exact, |_| {});
                    assert_eq!(
                        got,
                        want.into_sorted_vec(),
                        "{metric:?} q{qi} k{k} step{step}"
                    );
                }
            }
        }
    }

    /// Stored parts of the wrong size, or ranges that are not finite, are refused.
    #[test]
    fn damaged_parts_are_refused() {
        let dim = 8;
        let v = data(10, dim, 5, false);
        let good = Sq8::encode(Metric::L2, dim, &v).unwrap().to_parts();
        assert!(Sq8::from_parts(Metric::L2, dim, 10, good.clone()).is_ok());
        assert!(Sq8::from_parts(Metric::L2, dim, 11, good.clone()).is_err());
        assert!(Sq8::from_parts(Metric::Dot, dim, 10, good.clone()).is_err());
        let mut bounds = good.bounds.to_vec();
        bounds[dim] = f32::NAN;
        let bad = Sq8Parts {
            bounds: bounds.into(),
            ..good
        };
        assert!(Sq8::from_parts(Metric::L2, dim, 10, bad).is_err());
    }
}
