//! Product quantiser: splits a vector into `m` equal sub-vectors and replaces each by the index of
//! its nearest centroid in that sub-space's codebook (`2^bits` centroids), so a 128-d float vector
//! (512 bytes) becomes `m` bytes (8-bit codes) or `m / 2` bytes (4-bit codes).
//!
//! Distances to a code are computed asymmetrically (ADC): the query stays exact and a per-query
//! lookup table holds, for each sub-space and centroid, that sub-space's share of the distance, so
//! the distance to a code is a sum of `m` table entries.
//!
//! Codebooks are stored transposed, `[m][dsub][ksub]`: table construction and encoding then walk
//! `ksub` contiguous centroids per query component, which vectorises (16 lanes of AVX-512 cover a
//! whole 4-bit codebook row).

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

mod table16;

use super::Slab;
use super::distance::{Kernels, SimdLevel};
use super::error::IndexError;
use super::kmeans::{self, KMeansConfig};

/// Largest supported number of centroids per sub-space (8-bit codes).
const MAX_KSUB: usize = 256;

/// Most dot products one encode holds at once (64 KiB): every sub-space of a 4-bit code, 64 of
/// an 8-bit one.
const ENCODE_TABLE_FLOATS: usize = MAX_KSUB * 64;

/// A trained product quantiser. Cheap to clone (the codebooks are a [`Slab`]).
#[derive(Debug, Clone)]
pub struct ProductQuantizer {
    dim: usize,
    m: usize,
    bits: u8,
    ksub: usize,
    dsub: usize,
    /// `[m][dsub][ksub]` centroids, transposed (see the module doc).
    codebooks: Slab<f32>,
    /// `[m][ksub]` squared norms of the centroids, derived from `codebooks`.
    norms: Vec<f32>,
    /// Whether the CPU runs AVX-512F: the table and encoding loops are then compiled for it
    /// (same operations in the same order, so results are identical to the portable build).
    avx512: bool,
    /// The level of the 4-bit L2 table kernel ([`table16`]), the widest the CPU runs.
    table16: SimdLevel,
}

/// Runs `$body` compiled with AVX-512F enabled when `$flag` says the CPU has it, else portably.
/// The body's loops are plain element-wise arithmetic that LLVM vectorises for either target.
macro_rules! multiversion {
    ($flag:expr, $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if $flag {
                // SAFETY: `$flag` is only true when AVX-512F was detected at construction.
                unsafe {
                    wide(
                        #[inline(always)]
                        || $body,
                    )
                }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $flag;
            $body
        }
    }};
}

/// Checks `dim`, `m` and `bits` fit together; returns `(ksub, dsub)`.
pub fn check_params(dim: usize, m: usize, bits: u8) -> Result<(usize, usize), IndexError> {
    if dim == 0 {
        return Err(IndexError::InvalidParameter(
            "dimension must be positive".into(),
        ));
    }
    if m == 0 || !dim.is_multiple_of(m) {
        return Err(IndexError::InvalidParameter(format!(
            "pq_m = {m} must be positive and divide the dimension {dim}"
        )));
    }
    if bits != 4 && bits != 8 {
        return Err(IndexError::InvalidParameter(format!(
            "pq_bits = {bits}: only 4 and 8 are supported"
        )));
    }
    Ok((1usize << bits, dim / m))
}

impl ProductQuantizer {
    /// Trains one codebook per sub-space by k-means on `data` (row-major, `dim` per row), the
    /// sub-spaces in parallel.
    pub fn train(
        dim: usize,
        m: usize,
        bits: u8,
        data: &[f32],
        seed: u64,
    ) -> Result<Self, IndexError> {
        let (ksub, dsub) = check_params(dim, m, bits)?;
        if !data.len().is_multiple_of(dim) {
            return Err(IndexError::DimensionMismatch {
                expected: dim,
                got: data.len() % dim,
            });
        }
        let n = data.len() / dim;
        if n < ksub {
            return Err(IndexError::NotEnoughData {
                needed: ksub,
                got: n,
            });
        }
        // 4-bit books are tiny: use more points per centroid for the same cost.
        let per_centroid = if ksub <= 16 { 1024 } else { 256 };
        // One sample of rows for every sub-space, as FAISS draws it: each k-means then trains
        // on all it is given. Drawing a sample per sub-space out of all `n` rows (and copying
        // all `n` sub-vectors first) was about a third of the codebooks' training time on a
        // 384-d 4-bit quantiser (192 sub-spaces: 0.65 s → 0.45 s on MiniLM).
        let rows: Vec<usize> = if n > ksub * per_centroid {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut rows = sample(&mut rng, n, ksub * per_centroid).into_vec();
            rows.sort_unstable();
            rows
        } else {
            (0..n).collect()
        };
        let books: Vec<Vec<f32>> = (0..m)
            .into_par_iter()
            .map(|j| {
                let mut sub = Vec::with_capacity(rows.len() * dsub);
                for &r in &rows {
                    sub.extend_from_slice(&data[r * dim + j * dsub..][..dsub]);
                }
                let config = KMeansConfig {
                    k: ksub,
                    iters: 20,
                    seed: seed.wrapping_add(j as u64),
                    max_points_per_centroid: per_centroid,
                    spherical: false,
                };
                let centroids = kmeans::try_train(&sub, dsub, &config)?;
                // Transpose [ksub][dsub] -> [dsub][ksub].
                let mut t = vec![0.0f32; dsub * ksub];
                for (k, c) in centroids.chunks_exact(dsub).enumerate() {
                    for (d, &v) in c.iter().enumerate() {
                        t[d * ksub + k] = v;
                    }
                }
                Ok(t)
            })
            .collect::<Result<_, IndexError>>()?;
        Self::from_codebooks(dim, m, bits, Slab::from(books.concat()))
    }

    /// Rebuilds a quantiser from stored `[m][dsub][ksub]` codebooks, validating their size and
    /// values.
    pub fn from_codebooks(
        dim: usize,
        m: usize,
        bits: u8,
        codebooks: Slab<f32>,
    ) -> Result<Self, IndexError> {
        let (ksub, dsub) = check_params(dim, m, bits)?;
        if codebooks.len() != dim * ksub {
            return Err(IndexError::Corrupted(format!(
                "codebooks hold {} floats, expected {}",
                codebooks.len(),
                dim * ksub
            )));
        }
        if codebooks.iter().any(|v| !v.is_finite()) {
            return Err(IndexError::Corrupted(
                "codebooks contain a non-finite value".into(),
            ));
        }
        let mut norms = vec![0.0f32; m * ksub];
        for j in 0..m {
            let out = &mut norms[j * ksub..(j + 1) * ksub];
            for d in 0..dsub {
                let row = &codebooks[(j * dsub + d) * ksub..(j * dsub + d + 1) * ksub];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v * v;
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        Ok(Self {
            dim,
            m,
            bits,
            ksub,
            dsub,
            codebooks,
            norms,
            avx512,
            table16: Kernels::best().level(),
        })
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of sub-spaces.
    pub fn m(&self) -> usize {
        self.m
    }
    /// Bits per code (4 or 8).
    pub fn bits(&self) -> u8 {
        self.bits
    }
    /// Centroids per sub-space.
    pub fn ksub(&self) -> usize {
        self.ksub
    }
    /// The `[m][dsub][ksub]` codebooks, for storage.
    pub fn codebooks(&self) -> &Slab<f32> {
        &self.codebooks
    }
    /// Bytes held in memory (codebooks and derived norms).
    pub fn memory_bytes(&self) -> usize {
        (self.codebooks.len() + self.norms.len()) * 4
    }

    /// `out[j * ksub + k] = <x_j, c_jk>` for every sub-space `j` and centroid `k`.
    fn dot_table(&self, x: &[f32], out: &mut [f32]) {
        multiversion!(self.avx512, self.dot_table_impl(x, out))
    }

    #[inline(always)]
    fn dot_table_impl(&self, x: &[f32], out: &mut [f32]) {
        let (ksub, dsub) = (self.ksub, self.dsub);
        if ksub == table16::KSUB {
            // 4-bit codes: a row of sixteen is one register. Spelled as arrays so that each
            // dimension is one multiply-add of the row, not a loop with its set-up and tail:
            // with 2-dimensional sub-spaces (MiniLM's 192 of 384) the loop's overhead was most
            // of the table, 8.5% of a 1% filter's query in perf. Same operations, same order.
            let codebooks: &[f32] = &self.codebooks;
            let subspaces = codebooks.chunks_exact(dsub * table16::KSUB);
            let outs = out.chunks_exact_mut(table16::KSUB);
            for ((j, rows), out) in subspaces.enumerate().zip(outs).take(self.m) {
                // A local row, written once: summed in place in `out`, every step was stored
                // back, one lane at a time.
                let mut acc = [0.0f32; table16::KSUB];
                for (&xd, row) in x[j * dsub..(j + 1) * dsub]
                    .iter()
                    .zip(rows.chunks_exact(table16::KSUB))
                {
                    for (a, &c) in acc.iter_mut().zip(row) {
                        *a += xd * c;
                    }
                }
                out.copy_from_slice(&acc);
            }
            return;
        }
        for j in 0..self.m {
            let acc = &mut out[j * ksub..(j + 1) * ksub];
            acc.fill(0.0);
            for d in 0..dsub {
                let xd = x[j * dsub + d];
                let row = &self.codebooks[(j * dsub + d) * ksub..(j * dsub + d + 1) * ksub];
                for (a, &c) in acc.iter_mut().zip(row) {
                    *a += xd * c;
                }
            }
        }
    }

    /// Distance table for squared L2: `out[j * ksub + k] = ||y_j - c_jk||²` (`out.len() == m * ksub`).
    pub fn l2_table(&self, y: &[f32], out: &mut [f32]) {
        if self.ksub == table16::KSUB {
            // 4-bit codes: the table of every probed list on L2, worth a kernel of its own.
            let (codebooks, norms): (&[f32], &[f32]) = (&self.codebooks, &self.norms);
            table16::l2_table(self.table16, codebooks, norms, y, self.dsub, out);
            return;
        }
        multiversion!(self.avx512, self.l2_table_impl(y, out))
    }

    #[inline(always)]
    fn l2_table_impl(&self, y: &[f32], out: &mut [f32]) {
        self.dot_table_impl(y, out);
        let (ksub, dsub) = (self.ksub, self.dsub);
        for j in 0..self.m {
            let yj = &y[j * dsub..(j + 1) * dsub];
            let ny: f32 = yj.iter().map(|v| v * v).sum();
            let norms = &self.norms[j * ksub..(j + 1) * ksub];
            for (o, &nc) in out[j * ksub..(j + 1) * ksub].iter_mut().zip(norms) {
                *o = ny + nc - 2.0 * *o;
            }
        }
    }

    /// The query-independent part of L2 tables over residuals of coarse centroid `c`:
    /// `out[j * ksub + k] = ||c_jk||² + 2 <c_j, c_jk>`, so that
    /// `||q - c - r||² = ||q - c||² + Σ_j (out[j][r_j] - 2 <q_j, c_{j r_j}>)` (FAISS' "term 2").
    pub fn residual_terms(&self, c: &[f32], out: &mut [f32]) {
        self.dot_table(c, out);
        for (o, &n) in out.iter_mut().zip(&self.norms) {
            *o = n + 2.0 * *o;
        }
    }

    /// Distance table for inner products, negated so that smaller is closer:
    /// `out[j * ksub + k] = -<q_j, c_jk>`.
    pub fn neg_dot_table(&self, q: &[f32], out: &mut [f32]) {
        self.dot_table(q, out);
        for o in out.iter_mut() {
            *o = -*o;
        }
    }

    /// Writes the `m` codes (one per byte) of vector `x` to `codes`.
    pub fn encode(&self, x: &[f32], codes: &mut [u8]) {
        let mut scratch = self.encode_scratch();
        self.encode_with(x, codes, &mut scratch);
    }

    /// A buffer for [`ProductQuantizer::encode_with`]: the dot products of as many sub-spaces
    /// as are encoded together.
    pub fn encode_scratch(&self) -> Vec<f32> {
        vec![0.0; self.m.min(ENCODE_TABLE_FLOATS / self.ksub).max(1) * self.ksub]
    }

    /// [`ProductQuantizer::encode`] with a buffer from [`ProductQuantizer::encode_scratch`], for
    /// callers that encode many rows: the buffer is made once, not per row. (A 64 KiB stack
    /// array zeroed on every call had been a tenth of a 1M-row build.)
    pub fn encode_with(&self, x: &[f32], codes: &mut [u8], scratch: &mut [f32]) {
        assert!(
            scratch.len() >= self.ksub,
            "encode_with: a buffer of {} floats holds no table of {}",
            scratch.len(),
            self.ksub
        );
        multiversion!(self.avx512, self.encode_impl(x, codes, scratch))
    }

    #[inline(always)]
    fn encode_impl(&self, x: &[f32], codes: &mut [u8], dots: &mut [f32]) {
        let mut start = 0;
        // Process sub-spaces in chunks whose tables fit the buffer.
        let per_chunk = (dots.len() / self.ksub).max(1);
        while start < self.m {
            let end = (start + per_chunk).min(self.m);
            let (ksub, dsub) = (self.ksub, self.dsub);
            for j in start..end {
                let acc = &mut dots[(j - start) * ksub..(j - start + 1) * ksub];
                acc.fill(0.0);
                for d in 0..dsub {
                    let xd = x[j * dsub + d];
                    let row = &self.codebooks[(j * dsub + d) * ksub..(j * dsub + d + 1) * ksub];
                    for (a, &c) in acc.iter_mut().zip(row) {
                        *a += xd * c;
                    }
                }
            }
            // Every table of the chunk first, then the scans (the SIMD scan of k-means; a
            // branch per centroid was most of an encode): a scan right after its table's
            // stores stalls on the load.
            for j in start..end {
                let acc = &dots[(j - start) * ksub..(j - start + 1) * ksub];
                let norms = &self.norms[j * ksub..(j + 1) * ksub];
                codes[j] = kmeans::argmin_shifted(acc, norms).0 as u8;
            }
            start = end;
        }
    }

    /// Encodes every row of `data` (row-major) into `codes` (`m` bytes per row), in parallel.
    pub fn encode_batch(&self, data: &[f32], codes: &mut [u8]) {
        data.par_chunks(self.dim * 256)
            .zip(codes.par_chunks_mut(self.m * 256))
            .for_each(|(rows, out)| {
                let mut scratch = self.encode_scratch();
                for (x, c) in rows
                    .chunks_exact(self.dim)
                    .zip(out.chunks_exact_mut(self.m))
                {
                    self.encode_with(x, c, &mut scratch);
                }
            });
    }

    /// Reconstructs the vector a code stands for.
    pub fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let (ksub, dsub) = (self.ksub, self.dsub);
        for j in 0..self.m {
            let k = codes[j] as usize;
            for d in 0..dsub {
                out[j * dsub + d] = self.codebooks[(j * dsub + d) * ksub + k];
            }
        }
    }
}

/// Scans 8-bit codes (`m` bytes per vector, one after another) with a float table of `m * 256`
/// entries: the distance of vector `i` is `bias + Σ_j lut[j][code_ij]`. Calls
/// `on_candidate(i, distance)` for every vector whose distance is `<= threshold`; it returns the
/// (possibly lowered) threshold for the rest of the scan.
///
/// The table is taken as `[f32; 256]` rows so that indexing by a `u8` code needs no bounds check;
/// consecutive vectors' sums are independent, so the out-of-order core overlaps their add chains.
pub fn scan_codes8<F>(
    codes: &[u8],
    m: usize,
    lut: &[[f32; 256]],
    bias: f32,
    threshold: f32,
    on_candidate: F,
) where
    F: FnMut(usize, f32) -> f32,
{
    scan8_impl::<false, F>(codes, m, lut, bias, &[], threshold, on_candidate)
}

/// [`scan_codes8`] with a per-vector addend: the distance of vector `i` is
/// `bias + terms[i] + Σ_j lut[j][code_ij]` (`terms.len()` must be the number of vectors).
pub fn scan_codes8_terms<F>(
    codes: &[u8],
    m: usize,
    lut: &[[f32; 256]],
    bias: f32,
    terms: &[f32],
    threshold: f32,
    on_candidate: F,
) where
    F: FnMut(usize, f32) -> f32,
{
    assert_eq!(terms.len() * m, codes.len(), "one term per vector");
    scan8_impl::<true, F>(codes, m, lut, bias, terms, threshold, on_candidate)
}

#[inline(always)]
fn scan8_impl<const TERMS: bool, F>(
    codes: &[u8],
    m: usize,
    lut: &[[f32; 256]],
    bias: f32,
    terms: &[f32],
    mut threshold: f32,
    mut on_candidate: F,
) where
    F: FnMut(usize, f32) -> f32,
{
    let lut = &lut[..m];
    for (i, code) in codes.chunks_exact(m).enumerate() {
        let mut acc = [0.0f32; 4];
        // Eight codes per 64-bit load: one load feeds eight table lookups.
        let mut tables = lut.chunks_exact(8);
        let mut bytes = code.chunks_exact(8);
        for (t, c) in (&mut tables).zip(&mut bytes) {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            acc[0] += t[0][(w & 0xff) as usize];
            acc[1] += t[1][((w >> 8) & 0xff) as usize];
            acc[2] += t[2][((w >> 16) & 0xff) as usize];
            acc[3] += t[3][((w >> 24) & 0xff) as usize];
            acc[0] += t[4][((w >> 32) & 0xff) as usize];
            acc[1] += t[5][((w >> 40) & 0xff) as usize];
            acc[2] += t[6][((w >> 48) & 0xff) as usize];
            acc[3] += t[7][(w >> 56) as usize];
        }
        for (t, &c) in tables.remainder().iter().zip(bytes.remainder()) {
            acc[0] += t[c as usize];
        }
        let base = if TERMS { bias + terms[i] } else { bias };
        let d = base + ((acc[0] + acc[1]) + (acc[2] + acc[3]));
        if d <= threshold {
            threshold = on_candidate(i, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim)
            .map(|_| rng.random_range(-1.0..1.0f32))
            .collect()
    }

    #[test]
    fn scan8_reports_exactly_the_codes_under_the_threshold() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for m in [1usize, 3, 8, 13, 16, 48] {
            let n = 300;
            let codes: Vec<u8> = (0..n * m).map(|_| rng.random()).collect();
            let lut: Vec<[f32; 256]> = (0..m)
                .map(|_| std::array::from_fn(|_| rng.random_range(0.0..1.0f32)))
                .collect();
            let direct: Vec<f32> = codes
                .chunks_exact(m)
                .map(|c| 0.5 + c.iter().zip(&lut).map(|(&k, t)| t[k as usize]).sum::<f32>())
                .collect();
            let threshold = 0.5 + m as f32 * 0.45;
            let mut got = Vec::new();
            scan_codes8(&codes, m, &lut, 0.5, threshold, |i, d| {
                got.push((i, d));
                threshold
            });
            let terms: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3).collect();
            let mut with_terms = Vec::new();
            scan_codes8_terms(&codes, m, &lut, 0.5, &terms, f32::INFINITY, |i, d| {
                with_terms.push((i, d));
                f32::INFINITY
            });
            assert_eq!(with_terms.len(), n);
            for &(i, d) in &with_terms {
                assert!((d - direct[i] - terms[i]).abs() < 1e-4);
            }
            let want: Vec<usize> = (0..n).filter(|&i| direct[i] <= threshold - 1e-4).collect();
            for &i in &want {
                assert!(got.iter().any(|&(j, _)| j == i), "m {m}: vector {i} missed");
            }
            for &(i, d) in &got {
                assert!(
                    (d - direct[i]).abs() < 1e-4 && d <= threshold,
                    "m {m}: {i} {d} vs {}",
                    direct[i]
                );
            }
        }
    }

    /// The 4-bit table kernels give the general loop's tables bit for bit, at every level.
    #[test]
    fn four_bit_l2_tables_match_the_general_loop_at_every_level() {
        for (dim, m) in [(128usize, 64usize), (384, 192), (48, 16), (30, 5)] {
            let d = data(2000, dim, 21);
            let mut pq = ProductQuantizer::train(dim, m, 4, &d, 5).unwrap();
            for q in data(5, dim, 22).chunks_exact(dim) {
                let mut want = vec![0.0f32; m * 16];
                multiversion!(false, pq.l2_table_impl(q, &mut want));
                for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                    if !level.is_supported() {
                        continue;
                    }
                    pq.table16 = level;
                    let mut got = vec![f32::NAN; m * 16];
                    pq.l2_table(q, &mut got);
                    let bits = |t: &[f32]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{level:?} m {m}");
                }
            }
        }
    }

    /// The 4-bit inner-product table (the sixteen-wide path: one register row a sub-space) holds
    /// the plain sums over each sub-space's dimensions in their order, bit for bit, for the query
    /// tables and the residual terms alike.
    #[test]
    fn four_bit_dot_tables_are_the_plain_sums() {
        for (dim, m) in [(128usize, 64usize), (384, 192), (48, 16), (30, 5)] {
            let d = data(2000, dim, 23);
            let pq = ProductQuantizer::train(dim, m, 4, &d, 5).unwrap();
            let (dsub, books): (usize, &[f32]) = (dim / m, &pq.codebooks);
            for x in data(3, dim, 24).chunks_exact(dim) {
                let mut want = vec![0.0f32; m * 16];
                for j in 0..m {
                    for d in 0..dsub {
                        for k in 0..16 {
                            want[j * 16 + k] += x[j * dsub + d] * books[(j * dsub + d) * 16 + k];
                        }
                    }
                }
                let bits = |t: &[f32]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let mut got = vec![f32::NAN; m * 16];
                pq.neg_dot_table(x, &mut got);
                let negated: Vec<f32> = want.iter().map(|v| -v).collect();
                assert_eq!(bits(&got), bits(&negated), "m {m}");
                pq.residual_terms(x, &mut got);
                let terms: Vec<f32> = want
                    .iter()
                    .zip(&pq.norms)
                    .map(|(v, n)| n + 2.0 * v)
                    .collect();
                assert_eq!(bits(&got), bits(&terms), "m {m}");
            }
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        let d = data(300, 8, 1);
        assert!(matches!(
            ProductQuantizer::train(8, 3, 8, &d, 0),
            Err(IndexError::InvalidParameter(_))
        ));
        assert!(matches!(
            ProductQuantizer::train(8, 0, 8, &d, 0),
            Err(IndexError::InvalidParameter(_))
        ));
        assert!(matches!(
            ProductQuantizer::train(8, 4, 6, &d, 0),
            Err(IndexError::InvalidParameter(_))
        ));
        assert!(matches!(
            ProductQuantizer::train(8, 4, 8, &d[..80], 0),
            Err(IndexError::NotEnoughData { .. })
        ));
        assert!(ProductQuantizer::from_codebooks(8, 4, 4, Slab::from(vec![0.0f32; 10])).is_err());
        assert!(
            ProductQuantizer::from_codebooks(8, 4, 4, Slab::from(vec![f32::NAN; 128])).is_err()
        );
    }

    #[test]
    fn encoding_picks_the_nearest_centroid_and_tables_match_decoded_distances() {
        for bits in [4u8, 8] {
            let (dim, m) = (16, 4);
            let d = data(3000, dim, 2);
            let pq = ProductQuantizer::train(dim, m, bits, &d, 7).unwrap();
            let mut codes = vec![0u8; 3000 * m];
            pq.encode_batch(&d, &mut codes);
            let q = data(1, dim, 3);
            let mut l2 = vec![0.0f32; m * pq.ksub()];
            let mut ip = vec![0.0f32; m * pq.ksub()];
            pq.l2_table(&q, &mut l2);
            pq.neg_dot_table(&q, &mut ip);
            let mut rec = vec![0.0f32; dim];
            let mut err = 0.0f64;
            let mut norm = 0.0f64;
            for (x, c) in d.chunks_exact(dim).zip(codes.chunks_exact(m)).take(200) {
                pq.decode(c, &mut rec);
                // The chosen centroid is the nearest one in each sub-space.
                let mut other = vec![0u8; m];
                pq.encode(&rec, &mut other);
                assert_eq!(c, &other[..]);
                let exact_l2: f32 = q.iter().zip(&rec).map(|(a, b)| (a - b) * (a - b)).sum();
                let exact_ip: f32 = -q.iter().zip(&rec).map(|(a, b)| a * b).sum::<f32>();
                let adc_l2: f32 = (0..m).map(|j| l2[j * pq.ksub() + c[j] as usize]).sum();
                let adc_ip: f32 = (0..m).map(|j| ip[j * pq.ksub() + c[j] as usize]).sum();
                assert!((exact_l2 - adc_l2).abs() < 1e-4, "{exact_l2} {adc_l2}");
                assert!((exact_ip - adc_ip).abs() < 1e-4);
                err += x
                    .iter()
                    .zip(&rec)
                    .map(|(a, b)| ((a - b) * (a - b)) as f64)
                    .sum::<f64>();
                norm += x.iter().map(|a| (a * a) as f64).sum::<f64>();
            }
            // Uniform data in 4-d sub-spaces: 16 centroids cut the error well below the energy.
            assert!(
                err < norm * if bits == 8 { 0.25 } else { 0.6 },
                "bits {bits}: {err} vs {norm}"
            );
        }
    }
}
