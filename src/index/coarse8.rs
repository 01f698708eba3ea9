//! 8-bit coarse probing: approximate inner products of one query with every IVF centroid, each
//! with a bound on its error, so that a probe can shortlist lists from a quarter of the bytes and
//! score only the shortlist exactly.
//!
//! Why: at nlist 4096 × 128 dimensions the float centroids are 2 MiB, more than a core's share of
//! L2 once the codes stream through it, so the exact coarse pass of every query reads them from
//! L3 — measured at 55–75 µs a query on a Xeon (AVX-512), a third or more of a query at recall
//! 0.95. As bytes they are 512 KiB and stay in L2, and an integer dot product of 4 bytes a lane
//! is one instruction (`vpdpbusd`), or two (`vpmaddubsw` + `vpmaddwd`) with AVX2.
//!
//! Centroids are coded per dimension, `c[l][d] ≈ s_d k[l][d]` with `k` in `-127..=127` and
//! `s_d = max_l |c[l][d]| / 127`. A query is folded into those scales and coded in 7 bits,
//! `q_d s_d ≈ lo + α u_d` with `u` in `0..=127` (7 bits, not 8, so AVX2's 16-bit pair sums cannot
//! saturate and every kernel computes the same integers). Then
//! `<q, c_l> ≈ lo Σ_d k[l][d] + α Σ_d u_d k[l][d]`, and the error is at most
//! `α/2 Σ_d |k[l][d]| + ½ Σ_d |q_d| s_d` (half a step of each code times what it multiplies),
//! which [`Coarse8::approx_dots`] reports per list. A list whose best possible score cannot reach
//! the `nprobe`-th best worst possible score is then certainly not probed, and the lists that
//! remain are scored exactly: the probe is the exact one.
//!
//! Layout: blocks of 16 centroids; inside a block, one 64-byte group per 4 dimensions, lane `i`
//! holding the 4 codes of centroid `16 b + i` (what one `vpdpbusd` consumes).

use super::distance::SimdLevel;

/// Centroids per block (one 512-bit register of i32 sums).
const LANES: usize = 16;
/// Dimensions per group (the bytes one 32-bit lane of `vpdpbusd` multiplies).
const GROUP: usize = 4;
/// Largest query code: 7 bits (see the module doc).
const QMAX: f32 = 127.0;

/// The centroids as 8-bit codes, with what their error bounds need.
#[derive(Debug, Clone)]
pub struct Coarse8 {
    dim: usize,
    nlist: usize,
    /// Dimension groups (`dim` rounded up to a multiple of 4, over 4).
    groups: usize,
    /// `s_d`: component `d` of a centroid is about `s_d` times its code.
    scales: Vec<f32>,
    /// `ceil(nlist / 16)` blocks of `groups * 64` codes (see the module doc); zero padding.
    blocks: Vec<i8>,
    /// `Σ_d k[l][d]` per list.
    code_sums: Vec<i32>,
    /// `Σ_d |k[l][d]|` per list (the error bound's share of each query step).
    abs_sums: Vec<f32>,
    /// Kernel chosen at construction; only ever a level the CPU supports.
    level: Level,
}

/// Which integer kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Portable code (the reference the others are tested against).
    Scalar,
    /// `vpmaddubsw` + `vpmaddwd` over 256 bits (x86-64 AVX2).
    Avx2,
    /// `vpdpbusd` over 512 bits (x86-64 AVX-512F + AVX-512 VNNI).
    Avx512Vnni,
}

impl Level {
    /// Whether the running CPU can execute this level's kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => SimdLevel::Avx2.is_supported(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest level this CPU runs, if any SIMD one does: without SIMD the 8-bit pass is no
    /// cheaper than the float one it would replace.
    pub fn best() -> Option<Self> {
        [Level::Avx512Vnni, Level::Avx2]
            .into_iter()
            .find(|l| l.is_supported())
    }
}

/// What [`Coarse8::approx_dots`] reports besides the products: list `l`'s error bound is
/// `per_abs_code * abs_sums()[l] + fixed`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorBound {
    /// Half the query's step (`α / 2`).
    pub per_abs_code: f32,
    /// Half a centroid step in every dimension, weighted by the query (`½ Σ_d |q_d| s_d`).
    pub fixed: f32,
}

impl Coarse8 {
    /// Codes `centroids` (`nlist * dim`, row-major) for the fastest kernel the CPU runs, or
    /// `None` when it runs no SIMD kernel.
    pub fn new(centroids: &[f32], dim: usize) -> Option<Self> {
        Level::best().map(|level| Self::build(centroids, dim, level))
    }

    /// As [`Coarse8::new`] with the kernel for `level`, or `None` if the CPU cannot run it; for
    /// tests and benchmarks that compare kernels.
    pub fn with_level(centroids: &[f32], dim: usize, level: Level) -> Option<Self> {
        level
            .is_supported()
            .then(|| Self::build(centroids, dim, level))
    }

    fn build(centroids: &[f32], dim: usize, level: Level) -> Self {
        assert!(
            dim > 0 && centroids.len().is_multiple_of(dim),
            "centroid shape"
        );
        let nlist = centroids.len() / dim;
        let groups = dim.div_ceil(GROUP);
        let mut scales = vec![0.0f32; dim];
        for row in centroids.chunks_exact(dim) {
            for (s, &v) in scales.iter_mut().zip(row) {
                *s = s.max(v.abs());
            }
        }
        for s in &mut scales {
            // A dimension that is zero in every centroid codes as zero whatever its scale.
            *s = if *s > 0.0 && s.is_finite() {
                *s / 127.0
            } else {
                1.0
            };
        }
        let block_len = groups * LANES * GROUP;
        let mut blocks = vec![0i8; nlist.div_ceil(LANES) * block_len];
        let mut code_sums = vec![0i32; nlist];
        let mut abs_sums = vec![0.0f32; nlist];
        for (l, row) in centroids.chunks_exact(dim).enumerate() {
            let (b, lane) = (l / LANES, l % LANES);
            let (mut sum, mut abs) = (0i32, 0i32);
            for (d, (&v, &s)) in row.iter().zip(&scales).enumerate() {
                let k = (v / s).round().clamp(-127.0, 127.0) as i8;
                let (g, i) = (d / GROUP, d % GROUP);
                blocks[b * block_len + g * LANES * GROUP + lane * GROUP + i] = k;
                sum += k as i32;
                abs += (k as i32).abs();
            }
            code_sums[l] = sum;
            abs_sums[l] = abs as f32;
        }
        Coarse8 {
            dim,
            nlist,
            groups,
            scales,
            blocks,
            code_sums,
            abs_sums,
            level,
        }
    }

    /// The kernel [`Coarse8::approx_dots`] runs.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() + self.scales.len() * 4 + self.nlist * 8
    }

    /// `Σ_d |k[l][d]|` of every list, in list order: list `l`'s error bound is
    /// `per_abs_code * abs_sums()[l] + fixed`.
    pub fn abs_sums(&self) -> &[f32] {
        &self.abs_sums
    }

    /// `out[l] ≈ <q, centroid l>` for every list (`out.len() == nlist`, `q.len() == dim`), each
    /// within the returned bound of the exact product. A query with a non-finite value gets an
    /// infinite bound.
    pub fn approx_dots(&self, q: &[f32], out: &mut [f32]) -> ErrorBound {
        assert_eq!(q.len(), self.dim, "query dimension");
        assert_eq!(out.len(), self.nlist, "output length");
        let mut folded = vec![0.0f32; self.dim];
        let (mut lo, mut hi, mut fixed) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f32);
        for ((f, &v), &s) in folded.iter_mut().zip(q).zip(&self.scales) {
            *f = v * s;
            lo = lo.min(*f);
            hi = hi.max(*f);
            fixed += 0.5 * v.abs() * s;
        }
        let alpha = (hi - lo) / QMAX;
        let mut codes = vec![0u8; self.groups * GROUP];
        if alpha > 0.0 && alpha.is_finite() {
            let inv = 1.0 / alpha;
            for (c, &f) in codes.iter_mut().zip(&folded) {
                *c = ((f - lo) * inv).round().clamp(0.0, QMAX) as u8;
            }
        }
        let mut sums = vec![0i32; self.nlist.div_ceil(LANES) * LANES];
        self.integer_dots(&codes, &mut sums);
        let alpha = if alpha.is_finite() { alpha } else { 0.0 };
        for ((o, &s), &cs) in out.iter_mut().zip(&sums).zip(&self.code_sums) {
            *o = lo * cs as f32 + alpha * s as f32;
        }
        let bound = ErrorBound {
            per_abs_code: 0.5 * alpha,
            fixed,
        };
        if lo.is_finite() && hi.is_finite() && fixed.is_finite() {
            bound
        } else {
            ErrorBound {
                fixed: f32::INFINITY,
                ..bound
            }
        }
    }

    /// `sums[l] = Σ_d u_d k[l][d]` (exact integers: every level gives the same).
    fn integer_dots(&self, u: &[u8], sums: &mut [i32]) {
        match self.level {
            // SAFETY: `level` is supported (checked at construction); `u` holds `groups * 4`
            // bytes and `sums` a whole number of blocks (both sized by `approx_dots`).
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => unsafe { self.integer_dots_vnni(u, sums) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.integer_dots_avx2(u, sums) },
            _ => self.integer_dots_scalar(u, sums),
        }
    }

    fn integer_dots_scalar(&self, u: &[u8], sums: &mut [i32]) {
        let block_len = self.groups * LANES * GROUP;
        for (block, out) in self
            .blocks
            .chunks_exact(block_len)
            .zip(sums.chunks_exact_mut(LANES))
        {
            out.fill(0);
            for (g, group) in block.chunks_exact(LANES * GROUP).enumerate() {
                let ug = &u[g * GROUP..(g + 1) * GROUP];
                for (o, codes) in out.iter_mut().zip(group.chunks_exact(GROUP)) {
                    *o += codes
                        .iter()
                        .zip(ug)
                        .map(|(&k, &q)| k as i32 * q as i32)
                        .sum::<i32>();
                }
            }
        }
    }

    /// # Safety
    /// AVX2 available; `u.len() == groups * 4`, `sums.len()` a multiple of 16 covering `nlist`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn integer_dots_avx2(&self, u: &[u8], sums: &mut [i32]) {
        use std::arch::x86_64::*;
        let block_len = self.groups * LANES * GROUP;
        let qp = u.as_ptr() as *const i32;
        for (b, block) in self.blocks.chunks_exact(block_len).enumerate() {
            let p = block.as_ptr();
            // SAFETY: group g < groups of this block is 64 bytes at `p + 64 g`; `u` holds
            // `groups` 4-byte words; block `b`'s 16 sums are inside `sums`.
            unsafe {
                let ones = _mm256_set1_epi16(1);
                let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for g in 0..self.groups {
                    let q = _mm256_set1_epi32(qp.add(g).read_unaligned());
                    let c0 = _mm256_loadu_si256(p.add(g * 64) as *const __m256i);
                    let c1 = _mm256_loadu_si256(p.add(g * 64 + 32) as *const __m256i);
                    // u7 × s8 pair sums stay within i16 (2 × 127 × 127 < 32768).
                    lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_maddubs_epi16(q, c0), ones));
                    hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, c1), ones));
                }
                let out = sums.as_mut_ptr().add(b * LANES);
                _mm256_storeu_si256(out as *mut __m256i, lo);
                _mm256_storeu_si256(out.add(8) as *mut __m256i, hi);
            }
        }
    }

    /// # Safety
    /// AVX-512F and AVX-512 VNNI available; sizes as for [`Coarse8::integer_dots_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn integer_dots_vnni(&self, u: &[u8], sums: &mut [i32]) {
        use std::arch::x86_64::*;
        let block_len = self.groups * LANES * GROUP;
        let qp = u.as_ptr() as *const i32;
        for (b, block) in self.blocks.chunks_exact(block_len).enumerate() {
            let p = block.as_ptr();
            // SAFETY: as in the AVX2 kernel.
            unsafe {
                // Four independent chains cover `vpdpbusd`'s latency.
                let mut acc = [_mm512_setzero_si512(); 4];
                let mut g = 0;
                while g + 4 <= self.groups {
                    for (i, a) in acc.iter_mut().enumerate() {
                        let q = _mm512_set1_epi32(qp.add(g + i).read_unaligned());
                        let c = _mm512_loadu_si512(p.add((g + i) * 64) as *const _);
                        *a = _mm512_dpbusd_epi32(*a, q, c);
                    }
                    g += 4;
                }
                while g < self.groups {
                    let q = _mm512_set1_epi32(qp.add(g).read_unaligned());
                    let c = _mm512_loadu_si512(p.add(g * 64) as *const _);
                    acc[0] = _mm512_dpbusd_epi32(acc[0], q, c);
                    g += 1;
                }
                let s = _mm512_add_epi32(
                    _mm512_add_epi32(acc[0], acc[1]),
                    _mm512_add_epi32(acc[2], acc[3]),
                );
                _mm512_storeu_si512(sums.as_mut_ptr().add(b * LANES) as *mut _, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize, spread: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-spread..spread)).collect()
    }

    /// Every product is within its reported bound of the exact one. (That the bound is tight
    /// enough to rule out most lists is checked on clustered data where the index probes:
    /// `ivfpq::tests::shortlisted_probes_are_the_exact_probes`.)
    #[test]
    fn approximate_products_stay_within_their_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for (nlist, dim) in [(1, 3), (15, 8), (16, 17), (33, 128), (300, 384), (1000, 5)] {
            let mut centroids = random(&mut rng, nlist * dim, 1.0);
            // Dimensions of very different ranges, one of them zero everywhere.
            for row in centroids.chunks_exact_mut(dim) {
                row[0] *= 50.0;
                row[dim - 1] = 0.0;
            }
            let table = Coarse8::new(&centroids, dim)
                .unwrap_or_else(|| Coarse8::with_level(&centroids, dim, Level::Scalar).unwrap());
            for _ in 0..20 {
                let q = random(&mut rng, dim, 3.0);
                let mut approx = vec![f32::NAN; nlist];
                let bound = table.approx_dots(&q, &mut approx);
                for (l, c) in centroids.chunks_exact(dim).enumerate() {
                    let exact: f64 = c.iter().zip(&q).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let b = bound.per_abs_code * table.abs_sums()[l] + bound.fixed;
                    let err = (approx[l] as f64 - exact).abs();
                    assert!(
                        err <= b as f64 * 1.0001 + 1e-4,
                        "{nlist}x{dim} list {l}: error {err} above bound {b}"
                    );
                }
            }
        }
    }

    /// The SIMD kernels compute the same integers as the scalar one (bit-identical products).
    #[test]
    fn every_level_gives_identical_products() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut ran = 0;
        for dim in [1, 3, 4, 7, 16, 33, 128, 384] {
            for nlist in [1, 15, 17, 100, 1000] {
                let centroids = random(&mut rng, nlist * dim, 2.0);
                let q = random(&mut rng, dim, 1.0);
                let scalar = Coarse8::with_level(&centroids, dim, Level::Scalar).unwrap();
                let mut want = vec![0.0f32; nlist];
                let want_bound = scalar.approx_dots(&q, &mut want);
                for level in [Level::Avx2, Level::Avx512Vnni] {
                    let Some(table) = Coarse8::with_level(&centroids, dim, level) else {
                        continue;
                    };
                    ran += 1;
                    let mut got = vec![f32::NAN; nlist];
                    let bound = table.approx_dots(&q, &mut got);
                    assert_eq!(
                        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{level:?} {nlist}x{dim}"
                    );
                    assert_eq!(bound.fixed.to_bits(), want_bound.fixed.to_bits());
                }
            }
        }
        if Level::Avx2.is_supported() {
            assert!(ran >= 40, "SIMD kernels ran {ran} times");
        }
    }

    #[test]
    fn non_finite_queries_get_an_infinite_bound() {
        let centroids = vec![1.0f32, -2.0, 0.5, 3.0];
        let table = Coarse8::with_level(&centroids, 2, Level::Scalar).unwrap();
        let mut out = vec![0.0f32; 2];
        assert!(
            table
                .approx_dots(&[f32::NAN, 1.0], &mut out)
                .fixed
                .is_infinite()
        );
        assert!(
            table
                .approx_dots(&[f32::INFINITY, 1.0], &mut out)
                .fixed
                .is_infinite()
        );
        let b = table.approx_dots(&[0.0, 0.0], &mut out);
        assert_eq!(out, vec![0.0, 0.0]);
        assert_eq!(b.fixed, 0.0);
    }
}
