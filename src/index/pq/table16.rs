//! L2 tables of 4-bit codebooks (16 centroids a sub-space), the table a 4-bit L2 scan builds for
//! every probed list from the residual `y = q - c`:
//! `out[j * 16 + k] = ||y_j||² + ||c_jk||² - 2 <y_j, c_jk>`.
//!
//! Why a kernel of its own: the general loop over `ksub` and `dsub` did not vectorise (about
//! 1.2 µs for 64 sub-spaces), and at nlist 4096, nprobe 128 on 1M × 128 the tables were 35% of a
//! query's time (perf, query thread). With 16 centroids a sub-space a row of the transposed
//! codebook is one 512-bit register (two 256-bit ones), so a sub-space is `dsub` broadcast
//! multiply-adds and one combine: about 0.15 µs. Every level does the same IEEE operations in
//! the same order as [`ProductQuantizer::l2_table`]'s general loop (no fused multiply-add), so
//! the tables are bit-identical whichever runs.
//!
//! [`ProductQuantizer::l2_table`]: super::ProductQuantizer::l2_table

use crate::index::distance::SimdLevel;

/// Centroids a 4-bit sub-space has.
pub(super) const KSUB: usize = 16;

/// Writes the L2 table of residual `y` into `out` (see the module doc). `codebooks` is the
/// transposed `[m][dsub][16]` layout, `norms` the `[m][16]` squared centroid norms.
///
/// # Panics
/// If the sizes do not fit together (`m = out.len() / 16` sub-spaces of `dsub` dimensions), or
/// `level` is not supported by this CPU.
pub(super) fn l2_table(
    level: SimdLevel,
    codebooks: &[f32],
    norms: &[f32],
    y: &[f32],
    dsub: usize,
    out: &mut [f32],
) {
    let m = out.len() / KSUB;
    assert!(
        out.len() == m * KSUB
            && norms.len() == m * KSUB
            && y.len() == m * dsub
            && codebooks.len() == m * dsub * KSUB,
        "4-bit L2 table sizes"
    );
    assert!(
        level.is_supported(),
        "{level:?} is not supported by this CPU"
    );
    #[cfg(target_arch = "x86_64")]
    let raw = Raw {
        codebooks: codebooks.as_ptr(),
        norms: norms.as_ptr(),
        y: y.as_ptr(),
        out: out.as_mut_ptr(),
        m,
        dsub,
    };
    match level {
        // SAFETY: sizes asserted above (so `raw` spans `m` sub-spaces of every slice), level
        // supported.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { l2_table_avx512(raw) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { l2_table_avx2(raw) },
        _ => l2_table_portable(codebooks, norms, y, dsub, out),
    }
}

/// The slices of [`l2_table`] as pointers, sizes checked: sub-space `j < m` reads 16 floats at
/// codebook row `j * dsub + d` for `d < dsub`, 16 norms and `dsub` components of `y` at `j`,
/// and writes 16 floats of `out` at `j`.
#[cfg(target_arch = "x86_64")]
struct Raw {
    codebooks: *const f32,
    norms: *const f32,
    y: *const f32,
    out: *mut f32,
    m: usize,
    dsub: usize,
}

/// The addresses a kernel touches, written once. Each is inside its slice for `j < m`, `d < dsub`.
#[cfg(target_arch = "x86_64")]
impl Raw {
    /// Component `d` of sub-space `j` of the query.
    #[inline(always)]
    unsafe fn y(&self, j: usize, d: usize) -> f32 {
        // SAFETY: `j * dsub + d < m * dsub`, the length of `y`.
        unsafe { *self.y.add(j * self.dsub + d) }
    }
    /// The 16 centroid values of sub-space `j`, dimension `d`.
    #[inline(always)]
    unsafe fn row(&self, j: usize, d: usize) -> *const f32 {
        // SAFETY: row `j * dsub + d` of the codebooks starts inside them and holds 16 floats.
        unsafe { self.codebooks.add((j * self.dsub + d) * KSUB) }
    }
    /// The 16 codeword norms of sub-space `j`.
    #[inline(always)]
    unsafe fn norms(&self, j: usize) -> *const f32 {
        // SAFETY: `j < m`; the norms hold 16 per sub-space.
        unsafe { self.norms.add(j * KSUB) }
    }
    /// Where sub-space `j`'s 16 distances go.
    #[inline(always)]
    unsafe fn out(&self, j: usize) -> *mut f32 {
        // SAFETY: `j < m`; the table holds 16 per sub-space.
        unsafe { self.out.add(j * KSUB) }
    }
}

/// Fixed-size rows, so the compiler unrolls and vectorises each sub-space.
fn l2_table_portable(codebooks: &[f32], norms: &[f32], y: &[f32], dsub: usize, out: &mut [f32]) {
    for (j, (o, n)) in out
        .chunks_exact_mut(KSUB)
        .zip(norms.chunks_exact(KSUB))
        .enumerate()
    {
        let yj = &y[j * dsub..(j + 1) * dsub];
        let mut acc = [0.0f32; KSUB];
        let mut ny = 0.0f32;
        for (d, &x) in yj.iter().enumerate() {
            let row = &codebooks[(j * dsub + d) * KSUB..(j * dsub + d + 1) * KSUB];
            for (a, &c) in acc.iter_mut().zip(row) {
                *a += x * c;
            }
            ny += x * x;
        }
        for ((o, &n), &a) in o.iter_mut().zip(n).zip(&acc) {
            *o = ny + n - 2.0 * a;
        }
    }
}

/// # Safety
/// AVX-512F available; `raw` as [`l2_table`] builds it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn l2_table_avx512(raw: Raw) {
    use std::arch::x86_64::*;
    // SAFETY: every access goes through `Raw`'s accessors with `j < m`, `d < dsub`.
    unsafe {
        let two = _mm512_set1_ps(2.0);
        for j in 0..raw.m {
            let mut acc = _mm512_setzero_ps();
            let mut ny = 0.0f32;
            for d in 0..raw.dsub {
                let x = raw.y(j, d);
                let row = _mm512_loadu_ps(raw.row(j, d));
                acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x), row));
                ny += x * x;
            }
            let base = _mm512_add_ps(_mm512_set1_ps(ny), _mm512_loadu_ps(raw.norms(j)));
            _mm512_storeu_ps(raw.out(j), _mm512_sub_ps(base, _mm512_mul_ps(two, acc)));
        }
    }
}

/// # Safety
/// AVX2 available; `raw` as [`l2_table`] builds it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn l2_table_avx2(raw: Raw) {
    use std::arch::x86_64::*;
    // SAFETY: every access goes through `Raw`'s accessors with `j < m`, `d < dsub`, each
    // 16-float row read as two halves.
    unsafe {
        let two = _mm256_set1_ps(2.0);
        for j in 0..raw.m {
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut ny = 0.0f32;
            for d in 0..raw.dsub {
                let x = raw.y(j, d);
                let xv = _mm256_set1_ps(x);
                let row = raw.row(j, d);
                lo = _mm256_add_ps(lo, _mm256_mul_ps(xv, _mm256_loadu_ps(row)));
                hi = _mm256_add_ps(hi, _mm256_mul_ps(xv, _mm256_loadu_ps(row.add(8))));
                ny += x * x;
            }
            let nyv = _mm256_set1_ps(ny);
            let (n, o) = (raw.norms(j), raw.out(j));
            let base_lo = _mm256_add_ps(nyv, _mm256_loadu_ps(n));
            let base_hi = _mm256_add_ps(nyv, _mm256_loadu_ps(n.add(8)));
            _mm256_storeu_ps(o, _mm256_sub_ps(base_lo, _mm256_mul_ps(two, lo)));
            _mm256_storeu_ps(o.add(8), _mm256_sub_ps(base_hi, _mm256_mul_ps(two, hi)));
        }
    }
}
