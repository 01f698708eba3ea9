//! The one inner loop of 8-bit scalar-quantised distances: `Σ w_i c_i` over a float weight vector
//! `w` (the query, scaled per dimension) and a row of `u8` codes. Each level widens 16 (AVX-512)
//! or 8 (AVX2) codes to floats and multiplies them into four independent accumulators; the code
//! row is a quarter of the bytes of the raw vector, which is the point: the exact scans this
//! serves are bound by memory, not by arithmetic.
//!
//! Dispatch runs once per process (a cached function pointer), as `distance.rs` does.

use std::sync::OnceLock;

use crate::index::distance::SimdLevel;

type DotU8 = unsafe fn(&[f32], &[u8]) -> f32;

/// `Σ w_i c_i` over the common prefix, with the best kernel the CPU runs.
#[inline]
pub fn dot_u8(w: &[f32], codes: &[u8]) -> f32 {
    debug_assert_eq!(w.len(), codes.len());
    // SAFETY: `best` only returns a kernel whose instructions the CPU supports.
    unsafe { best()(w, codes) }
}

fn best() -> DotU8 {
    static BEST: OnceLock<DotU8> = OnceLock::new();
    *BEST.get_or_init(|| {
        [SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Scalar]
            .into_iter()
            .find_map(for_level)
            .unwrap_or(scalar as DotU8)
    })
}

/// The kernel of `level`, or `None` when the CPU lacks its instructions (tests compare each
/// level with the portable one).
pub fn for_level(level: SimdLevel) -> Option<DotU8> {
    if !level.is_supported() {
        return None;
    }
    match level {
        SimdLevel::Scalar => Some(scalar as DotU8),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => Some(avx2 as DotU8),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Some(avx512 as DotU8),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// Portable reference (four partial sums, which the compiler vectorises).
///
/// # Safety
/// Always safe; `unsafe` only to share the kernels' type.
unsafe fn scalar(w: &[f32], codes: &[u8]) -> f32 {
    let n = w.len().min(codes.len());
    let mut acc = [0.0f32; 4];
    let (w4, wr) = w[..n].split_at(n / 4 * 4);
    let (c4, cr) = codes[..n].split_at(n / 4 * 4);
    for (w, c) in w4.chunks_exact(4).zip(c4.chunks_exact(4)) {
        for j in 0..4 {
            acc[j] += w[j] * f32::from(c[j]);
        }
    }
    let tail: f32 = wr.iter().zip(cr).map(|(w, &c)| w * f32::from(c)).sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(w: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len().min(codes.len());
    let (pw, pc) = (w.as_ptr(), codes.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads 8 floats and 8 bytes at i + 8 <= n.
    unsafe {
        let widen = |at: usize| {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                pc.add(at) as *const __m128i
            )))
        };
        while i + 32 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(at)), widen(at), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(i)), widen(i), acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let mut lanes = [0.0f32; 4];
        _mm_storeu_ps(lanes.as_mut_ptr(), half);
        let tail: f32 = (i..n).map(|t| *pw.add(t) * f32::from(*pc.add(t))).sum();
        lanes.iter().sum::<f32>() + tail
    }
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(w: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len().min(codes.len());
    let (pw, pc) = (w.as_ptr(), codes.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads 16 floats and 16 bytes at i + 16 <= n; the tail is scalar.
    unsafe {
        let widen = |at: usize| {
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                pc.add(at) as *const __m128i
            )))
        };
        while i + 64 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                let at = i + 16 * j;
                *a = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(at)), widen(at), *a);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(i)), widen(i), acc[0]);
            i += 16;
        }
        let tail: f32 = (i..n).map(|t| *pw.add(t) * f32::from(*pc.add(t))).sum();
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        )) + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level the CPU runs agrees with the portable kernel at every length around the
    /// vector widths (full steps, single steps and tails).
    #[test]
    fn every_level_matches_the_portable_kernel() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for n in [
            0, 1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 384, 385, 1536,
        ] {
            let w: Vec<f32> = (0..n)
                .map(|_| next() as f32 / u32::MAX as f32 - 0.25)
                .collect();
            let c: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            // SAFETY: always safe.
            let want = unsafe { scalar(&w, &c) };
            for level in [SimdLevel::Avx2, SimdLevel::Avx512] {
                let Some(kernel) = for_level(level) else {
                    continue;
                };
                // SAFETY: `for_level` checked the CPU.
                let got = unsafe { kernel(&w, &c) };
                let tol = 1e-4 * (1.0 + want.abs());
                assert!(
                    (got - want).abs() <= tol,
                    "{level:?} n={n}: {got} vs {want}"
                );
            }
        }
    }
}
