//! The nearest centroid from a row of GEMM output: `argmin_j ‖c_j‖² - 2 x·c_j`.
//!
//! After the GEMM, this scan is the rest of an assignment's cost (about a quarter of it when
//! done naively with a branch per element). The AVX-512 version fuses the `‖c‖² - 2 x·c`
//! transform with a lane-wise running minimum and index, so each row is read once and never
//! written; the portable version does the same in two vectorisable passes.
//!
//! Both return the lowest index among equal minima and ignore NaN (all-NaN gives `(0, +inf)`).

use std::sync::OnceLock;

/// `argmin_j c_norms[j] - 2 dots[j]` over the common length, with its value.
pub fn argmin_shifted(dots: &[f32], c_norms: &[f32]) -> (u32, f32) {
    static AVX512: OnceLock<bool> = OnceLock::new();
    #[cfg(target_arch = "x86_64")]
    if *AVX512.get_or_init(|| is_x86_feature_detected!("avx512f")) {
        // SAFETY: AVX-512F was detected on this CPU.
        return unsafe { avx512::argmin_shifted(dots, c_norms) };
    }
    let _ = &AVX512;
    portable_argmin_shifted(dots, c_norms)
}

/// Portable [`argmin_shifted`] (also the reference in tests).
pub fn portable_argmin_shifted(dots: &[f32], c_norms: &[f32]) -> (u32, f32) {
    const LANES: usize = 16;
    let n = dots.len().min(c_norms.len());
    let (dots, c_norms) = (&dots[..n], &c_norms[..n]);
    let value = |j: usize| c_norms[j] - 2.0 * dots[j];
    let mut m = [f32::INFINITY; LANES];
    let full = n / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        for (l, m) in m.iter_mut().enumerate() {
            let v = value(base + l);
            *m = if v < *m { v } else { *m };
        }
    }
    let mut best = f32::INFINITY;
    for v in m.into_iter().chain((full..n).map(value)) {
        if v < best {
            best = v;
        }
    }
    if best == f32::INFINITY {
        return (0, f32::INFINITY);
    }
    match (0..n).find(|&j| value(j) == best) {
        Some(j) => (j as u32, best),
        None => (0, f32::INFINITY),
    }
}

/// Index and value of the smallest element (lowest index on ties, NaN ignored).
pub fn argmin(v: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x < best.1 {
            best = (i as u32, x);
        }
    }
    best
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn argmin_shifted(dots: &[f32], c_norms: &[f32]) -> (u32, f32) {
        let n = dots.len().min(c_norms.len());
        let (pd, pc) = (dots.as_ptr(), c_norms.as_ptr());
        let minus_two = _mm512_set1_ps(-2.0);
        if n <= 16 {
            // One vector (a 4-bit PQ codebook): one reduction and the lowest lane equal to it,
            // half the dependent steps of the running minimum and index below, which matters
            // when this is called once per sub-space of every encoded vector.
            let m = ((1u32 << n) - 1) as __mmask16;
            // SAFETY: masked loads read lanes inside 0..n.
            let v = unsafe {
                _mm512_fmadd_ps(
                    minus_two,
                    _mm512_maskz_loadu_ps(m, pd),
                    _mm512_maskz_loadu_ps(m, pc),
                )
            };
            // Lanes past n and NaN lanes become +inf, so neither can be the minimum.
            let ordered = _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(m, v, v);
            let v = _mm512_mask_mov_ps(_mm512_set1_ps(f32::INFINITY), ordered, v);
            let min = _mm512_reduce_min_ps(v);
            if min == f32::INFINITY {
                return (0, f32::INFINITY);
            }
            let eq = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(ordered, v, _mm512_set1_ps(min));
            return (u32::from(eq).trailing_zeros(), min);
        }
        let mut best_v = _mm512_set1_ps(f32::INFINITY);
        let mut best_i = _mm512_setzero_si512();
        let mut idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(16);
        let mut j = 0;
        // SAFETY: loads read lanes j..j+16 with j + 16 <= n, or a masked tail inside 0..n.
        unsafe {
            while j + 16 <= n {
                let v = _mm512_fmadd_ps(
                    minus_two,
                    _mm512_loadu_ps(pd.add(j)),
                    _mm512_loadu_ps(pc.add(j)),
                );
                let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, best_v);
                best_v = _mm512_mask_mov_ps(best_v, lt, v);
                best_i = _mm512_mask_mov_epi32(best_i, lt, idx);
                idx = _mm512_add_epi32(idx, step);
                j += 16;
            }
            if j < n {
                let m = ((1u32 << (n - j)) - 1) as __mmask16;
                let v = _mm512_fmadd_ps(
                    minus_two,
                    _mm512_maskz_loadu_ps(m, pd.add(j)),
                    _mm512_maskz_loadu_ps(m, pc.add(j)),
                );
                let lt = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(m, v, best_v);
                best_v = _mm512_mask_mov_ps(best_v, lt, v);
                best_i = _mm512_mask_mov_epi32(best_i, lt, idx);
            }
        }
        let min = _mm512_reduce_min_ps(best_v);
        if min == f32::INFINITY {
            return (0, f32::INFINITY);
        }
        // Several lanes may hold the minimum: the lowest index wins, as in the scalar scan.
        let eq = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(best_v, _mm512_set1_ps(min));
        let i = _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(
            _mm512_set1_epi32(i32::MAX),
            eq,
            best_i,
        ));
        (i as u32, min)
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn brute(dots: &[f32], cn: &[f32]) -> (u32, f32) {
        let v: Vec<f32> = dots.iter().zip(cn).map(|(&d, &c)| c - 2.0 * d).collect();
        argmin(&v)
    }

    #[test]
    fn dispatched_and_portable_match_brute_force_with_ties_and_nan() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for n in [0usize, 1, 2, 15, 16, 17, 31, 33, 100, 1024, 1030] {
            for _ in 0..20 {
                // Small integers: exact arithmetic and many ties.
                let dots: Vec<f32> = (0..n).map(|_| rng.random_range(0..8u32) as f32).collect();
                let mut cn: Vec<f32> = (0..n).map(|_| rng.random_range(0..8u32) as f32).collect();
                if n > 3 {
                    cn[rng.random_range(0..n)] = f32::NAN;
                }
                let want = brute(&dots, &cn);
                assert_eq!(portable_argmin_shifted(&dots, &cn), want, "portable n={n}");
                assert_eq!(argmin_shifted(&dots, &cn), want, "dispatched n={n}");
            }
        }
        let nan = vec![f32::NAN; 20];
        assert_eq!(argmin_shifted(&nan, &nan), (0, f32::INFINITY));
        assert_eq!(portable_argmin_shifted(&nan, &nan), (0, f32::INFINITY));
    }
}
