//! Coarse-quantiser probing: inner products of one query with every IVF centroid.
//!
//! With one query per call, this is a matrix-vector product over all `nlist * dim` centroid
//! floats, and at small `nprobe` it is a large share of a query. Row-by-row dot products end each
//! row with a horizontal sum; here centroids are stored in blocks of 16, dimension-major inside a
//! block, so one 512-bit FMA advances 16 centroids by one dimension and no horizontal work is
//! needed (the layout FAISS' `fvec_inner_products_ny` reaches for with its transposed kernels).
//! AVX2 covers a block with two 8-lane registers, and the scalar loop is what the compiler makes
//! of the same layout.

use super::distance::{Kernels, SimdLevel};

/// Centroids per block (one AVX-512 register of f32).
const LANES: usize = 16;

/// Blocks the AVX2 kernel advances together: one broadcast of `q[d]` feeds `2 * 4` independent
/// FMA chains, enough to hide FMA latency on two FMA ports, while each chain still sums its
/// dimensions in order (so results differ from the scalar kernel only by FMA rounding).
const AVX2_BLOCKS: usize = 4;

/// A derived, probe-friendly copy of the centroids.
#[derive(Debug, Clone)]
pub struct CoarseTable {
    dim: usize,
    nlist: usize,
    /// `ceil(nlist / 16)` blocks of `dim * 16` floats: block `b`, dimension `d`, lane `i` holds
    /// component `d` of centroid `16 b + i` (zero past `nlist`).
    blocks: Vec<f32>,
    /// Kernel chosen at construction; only ever a level the CPU supports.
    level: SimdLevel,
}

impl CoarseTable {
    /// Lays out `centroids` (`nlist * dim`, row-major) for the fastest kernel the CPU runs.
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        Self::build(centroids, dim, Kernels::best().level())
    }

    /// As [`CoarseTable::new`] but with the kernel for `level`, or `None` if the CPU cannot run
    /// it; for benchmarks and tests that compare kernels.
    pub fn with_level(centroids: &[f32], dim: usize, level: SimdLevel) -> Option<Self> {
        level
            .is_supported()
            .then(|| Self::build(centroids, dim, level))
    }

    fn build(centroids: &[f32], dim: usize, level: SimdLevel) -> Self {
        let nlist = centroids.len() / dim;
        let nblocks = nlist.div_ceil(LANES);
        let mut blocks = vec![0.0f32; nblocks * dim * LANES];
        for (c, row) in centroids.chunks_exact(dim).enumerate() {
            let (b, i) = (c / LANES, c % LANES);
            for (d, &v) in row.iter().enumerate() {
                blocks[(b * dim + d) * LANES + i] = v;
            }
        }
        CoarseTable {
            dim,
            nlist,
            blocks,
            level,
        }
    }

    /// The SIMD level [`CoarseTable::dots`] runs at.
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * 4
    }

    /// `out[l] = <q, centroid l>` for every list (`out.len() == nlist`, `q.len() == dim`).
    pub fn dots(&self, q: &[f32], out: &mut [f32]) {
        assert_eq!(q.len(), self.dim, "query dimension");
        assert_eq!(out.len(), self.nlist, "output length");
        match self.level {
            // SAFETY: `level` is supported (checked at construction); sizes asserted above.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => unsafe { self.dots_avx512(q, out) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => unsafe { self.dots_avx2(q, out) },
            _ => self.dots_scalar(q, out),
        }
    }

    fn dots_scalar(&self, q: &[f32], out: &mut [f32]) {
        for (b, block) in self.blocks.chunks_exact(self.dim * LANES).enumerate() {
            let mut acc = [0.0f32; LANES];
            for (&qd, lanes) in q.iter().zip(block.chunks_exact(LANES)) {
                for (a, &c) in acc.iter_mut().zip(lanes) {
                    *a += qd * c;
                }
            }
            let start = b * LANES;
            let n = LANES.min(self.nlist - start);
            out[start..start + n].copy_from_slice(&acc[..n]);
        }
    }

    /// # Safety
    /// AVX2 and FMA available; `q.len() == dim`, `out.len() == nlist`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_avx2(&self, q: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let dim = self.dim;
        let stride = dim * LANES;
        let nblocks = self.nlist.div_ceil(LANES);
        let base = self.blocks.as_ptr();
        let mut b = 0;
        while b < nblocks {
            let g = AVX2_BLOCKS.min(nblocks - b);
            // SAFETY: blocks `b..b + g` exist; every load reads 8 floats at dimension d < dim of
            // one of them, and `q` has `dim` floats.
            let acc = unsafe {
                let mut acc = [_mm256_setzero_ps(); 2 * AVX2_BLOCKS];
                if g == AVX2_BLOCKS {
                    let p = base.add(b * stride);
                    for d in 0..dim {
                        let qd = _mm256_set1_ps(*q.get_unchecked(d));
                        for (j, a) in acc.iter_mut().enumerate() {
                            let c =
                                _mm256_loadu_ps(p.add((j / 2) * stride + d * LANES + (j % 2) * 8));
                            *a = _mm256_fmadd_ps(qd, c, *a);
                        }
                    }
                } else {
                    // At most three trailing blocks, one at a time.
                    for k in 0..g {
                        let p = base.add((b + k) * stride);
                        let (mut lo, mut hi) = (acc[2 * k], acc[2 * k + 1]);
                        for d in 0..dim {
                            let qd = _mm256_set1_ps(*q.get_unchecked(d));
                            lo = _mm256_fmadd_ps(qd, _mm256_loadu_ps(p.add(d * LANES)), lo);
                            hi = _mm256_fmadd_ps(qd, _mm256_loadu_ps(p.add(d * LANES + 8)), hi);
                        }
                        acc[2 * k] = lo;
                        acc[2 * k + 1] = hi;
                    }
                }
                acc
            };
            for k in 0..g {
                let mut lanes = [0.0f32; LANES];
                // SAFETY: `lanes` holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(lanes.as_mut_ptr(), acc[2 * k]);
                    _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[2 * k + 1]);
                }
                let start = (b + k) * LANES;
                let n = LANES.min(self.nlist - start);
                out[start..start + n].copy_from_slice(&lanes[..n]);
            }
            b += g;
        }
    }

    /// # Safety
    /// AVX-512F available; `q.len() == dim`, `out.len() == nlist`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn dots_avx512(&self, q: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let dim = self.dim;
        for (b, block) in self.blocks.chunks_exact(dim * LANES).enumerate() {
            let p = block.as_ptr();
            // SAFETY: every load reads 16 floats at dimension d < dim of this block.
            unsafe {
                // Eight independent chains cover the FMA latency.
                let mut acc = [_mm512_setzero_ps(); 8];
                let mut d = 0;
                while d + 8 <= dim {
                    for (u, a) in acc.iter_mut().enumerate() {
                        let c = _mm512_loadu_ps(p.add((d + u) * LANES));
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(*q.get_unchecked(d + u)), c, *a);
                    }
                    d += 8;
                }
                while d < dim {
                    let c = _mm512_loadu_ps(p.add(d * LANES));
                    acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(*q.get_unchecked(d)), c, acc[0]);
                    d += 1;
                }
                let s = _mm512_add_ps(
                    _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])),
                    _mm512_add_ps(_mm512_add_ps(acc[4], acc[5]), _mm512_add_ps(acc[6], acc[7])),
                );
                let start = b * LANES;
                let n = LANES.min(self.nlist - start);
                let mask: __mmask16 = if n == LANES {
                    0xffff
                } else {
                    ((1u32 << n) - 1) as __mmask16
                };
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(start), mask, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn dots_match_direct_products() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (nlist, dim) in [(1, 3), (15, 8), (16, 17), (33, 128), (100, 384)] {
            let centroids: Vec<f32> = (0..nlist * dim)
                .map(|_| rng.random_range(-1.0..1.0f32))
                .collect();
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0f32)).collect();
            let table = CoarseTable::new(&centroids, dim);
            let mut fast = vec![0.0f32; nlist];
            let mut slow = vec![0.0f32; nlist];
            table.dots(&q, &mut fast);
            table.dots_scalar(&q, &mut slow);
            for (l, c) in centroids.chunks_exact(dim).enumerate() {
                let exact: f64 = c.iter().zip(&q).map(|(a, b)| *a as f64 * *b as f64).sum();
                assert!(
                    (fast[l] as f64 - exact).abs() < 1e-4,
                    "{nlist}x{dim} list {l}"
                );
                assert!((slow[l] as f64 - exact).abs() < 1e-4);
            }
        }
    }

    /// Every SIMD kernel the CPU runs agrees with the scalar one to FMA rounding, including
    /// dimensions off the 8-lane grid, partial last blocks and partial AVX2 block groups.
    #[test]
    fn simd_kernels_match_scalar() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // The AVX2 kernel must really run on hosts that have it.
            assert!(SimdLevel::Avx2.is_supported());
            assert_ne!(CoarseTable::new(&[0.0; 4], 4).level(), SimdLevel::Scalar);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut ran = 0;
        for dim in [1, 7, 8, 33, 128, 384] {
            for nlist in [1, 15, 17, 50, 100, 129, 1000] {
                let centroids: Vec<f32> = (0..nlist * dim)
                    .map(|_| rng.random_range(-1.0..1.0f32))
                    .collect();
                let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0f32)).collect();
                let scalar = CoarseTable::with_level(&centroids, dim, SimdLevel::Scalar).unwrap();
                let mut want = vec![0.0f32; nlist];
                scalar.dots(&q, &mut want);
                for level in [SimdLevel::Avx2, SimdLevel::Avx512] {
                    let Some(table) = CoarseTable::with_level(&centroids, dim, level) else {
                        continue;
                    };
                    ran += 1;
                    let mut got = vec![f32::NAN; nlist];
                    table.dots(&q, &mut got);
                    for (l, c) in centroids.chunks_exact(dim).enumerate() {
                        // Relative to the sum of |products|: a dot near zero by cancellation
                        // keeps the rounding of its terms.
                        let scale: f32 = c.iter().zip(&q).map(|(a, b)| (a * b).abs()).sum();
                        assert!(
                            (got[l] - want[l]).abs() <= 1e-5 * scale.max(f32::MIN_POSITIVE),
                            "{level:?} {nlist}x{dim} list {l}: {} vs {}",
                            got[l],
                            want[l]
                        );
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if SimdLevel::Avx2.is_supported() {
            assert!(ran >= 42, "AVX2 kernel ran {ran} times");
        }
        let _ = ran;
    }
}
