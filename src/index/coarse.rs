//! Coarse-quantiser probing: inner products of one query with every IVF centroid.
//!
//! With one query per call, this is a matrix-vector product over all `nlist * dim` centroid
//! floats, and at small `nprobe` it is a large share of a query. Row-by-row dot products end each
//! row with a horizontal sum; here centroids are stored in blocks of 16, dimension-major inside a
//! block, so one 512-bit FMA advances 16 centroids by one dimension and no horizontal work is
//! needed (the layout FAISS' `fvec_inner_products_ny` reaches for with its transposed kernels).

/// Centroids per block (one AVX-512 register of f32).
const LANES: usize = 16;

/// A derived, probe-friendly copy of the centroids.
#[derive(Debug, Clone)]
pub struct CoarseTable {
    dim: usize,
    nlist: usize,
    /// `ceil(nlist / 16)` blocks of `dim * 16` floats: block `b`, dimension `d`, lane `i` holds
    /// component `d` of centroid `16 b + i` (zero past `nlist`).
    blocks: Vec<f32>,
    avx512: bool,
}

impl CoarseTable {
    /// Lays out `centroids` (`nlist * dim`, row-major).
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        let nlist = centroids.len() / dim;
        let nblocks = nlist.div_ceil(LANES);
        let mut blocks = vec![0.0f32; nblocks * dim * LANES];
        for (c, row) in centroids.chunks_exact(dim).enumerate() {
            let (b, i) = (c / LANES, c % LANES);
            for (d, &v) in row.iter().enumerate() {
                blocks[(b * dim + d) * LANES + i] = v;
            }
        }
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        CoarseTable {
            dim,
            nlist,
            blocks,
            avx512,
        }
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * 4
    }

    /// `out[l] = <q, centroid l>` for every list (`out.len() == nlist`, `q.len() == dim`).
    pub fn dots(&self, q: &[f32], out: &mut [f32]) {
        assert_eq!(q.len(), self.dim, "query dimension");
        assert_eq!(out.len(), self.nlist, "output length");
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: AVX-512F detected at construction; sizes asserted above.
            unsafe { self.dots_avx512(q, out) };
            return;
        }
        self.dots_scalar(q, out);
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
}
