//! AVX2 + FMA kernels: 8 lanes, four accumulators (32 floats per step) to cover FMA latency, and a
//! masked load (`vmaskmovps`, which never faults on masked-off lanes) for the tail. The batch
//! kernels walk four rows at once so each query chunk is loaded once per four rows.
//!
//! Every function here is `unsafe`: the caller must have checked that the CPU supports AVX2 and
//! FMA (the dispatcher in `distance.rs` does, once).

use std::arch::x86_64::*;

#[inline(always)]
unsafe fn tail_mask(rem: usize) -> __m256i {
    debug_assert!(rem < 8);
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rem as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: AVX is enabled in every caller.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: every load reads 8 floats at i <= n - 8, or a masked tail inside 0..n.
    unsafe {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
            );
            let d2 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
            );
            let d3 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
            );
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            acc2 = _mm256_fmadd_ps(d2, d2, acc2);
            acc3 = _mm256_fmadd_ps(d3, d3, acc3);
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc0 = _mm256_fmadd_ps(d, d, acc0);
            i += 8;
        }
        if i < n {
            let m = tail_mask(n - i);
            let d = _mm256_sub_ps(
                _mm256_maskload_ps(pa.add(i), m),
                _mm256_maskload_ps(pb.add(i), m),
            );
            acc1 = _mm256_fmadd_ps(d, d, acc1);
        }
        hsum(_mm256_add_ps(
            _mm256_add_ps(acc0, acc1),
            _mm256_add_ps(acc2, acc3),
        ))
    }
}

/// Inner product over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: as in `l2_sq`.
    unsafe {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            acc2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                acc2,
            );
            acc3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                acc3,
            );
            i += 32;
        }
        while i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        if i < n {
            let m = tail_mask(n - i);
            acc1 = _mm256_fmadd_ps(
                _mm256_maskload_ps(pa.add(i), m),
                _mm256_maskload_ps(pb.add(i), m),
                acc1,
            );
        }
        hsum(_mm256_add_ps(
            _mm256_add_ps(acc0, acc1),
            _mm256_add_ps(acc2, acc3),
        ))
    }
}

/// `acc = op(q, v, acc)` for the two kernel kinds, shared by the four-row batch loops.
macro_rules! step {
    (l2, $q:expr, $v:expr, $acc:expr) => {{
        let d = _mm256_sub_ps($v, $q);
        $acc = _mm256_fmadd_ps(d, d, $acc);
    }};
    (dot, $q:expr, $v:expr, $acc:expr) => {{
        $acc = _mm256_fmadd_ps($v, $q, $acc);
    }};
}

macro_rules! batch_kernel {
    ($name:ident, $kind:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn $name(query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
            if dim == 0 {
                out.fill(0.0);
                return;
            }
            let query = &query[..dim.min(query.len())];
            let d = query.len();
            let rows = out.len().min(vectors.len() / dim);
            let pq = query.as_ptr();
            let mut r = 0;
            // SAFETY: every row pointer is clamped to a row below `rows` (inside `vectors`), and
            // every load reads lanes i..i+8 with i + 8 <= d, or the masked tail inside 0..d.
            unsafe {
                let tail = tail_mask(d % 8);
                // A last group of fewer than four rows repeats its last row in the spare lanes:
                // every row goes through the same instructions wherever it sits, so a vector's
                // distance never depends on its position (a sharded collection scores a point
                // exactly as a single one does).
                while r < rows {
                    let row = |k: usize| vectors.as_ptr().add((r + k).min(rows - 1) * dim);
                    let p = [row(0), row(1), row(2), row(3)];
                    let valid = (rows - r).min(4);
                    let mut acc = [_mm256_setzero_ps(); 4];
                    let mut i = 0;
                    while i + 8 <= d {
                        let q = _mm256_loadu_ps(pq.add(i));
                        step!($kind, q, _mm256_loadu_ps(p[0].add(i)), acc[0]);
                        step!($kind, q, _mm256_loadu_ps(p[1].add(i)), acc[1]);
                        step!($kind, q, _mm256_loadu_ps(p[2].add(i)), acc[2]);
                        step!($kind, q, _mm256_loadu_ps(p[3].add(i)), acc[3]);
                        i += 8;
                    }
                    if i < d {
                        let q = _mm256_maskload_ps(pq.add(i), tail);
                        step!($kind, q, _mm256_maskload_ps(p[0].add(i), tail), acc[0]);
                        step!($kind, q, _mm256_maskload_ps(p[1].add(i), tail), acc[1]);
                        step!($kind, q, _mm256_maskload_ps(p[2].add(i), tail), acc[2]);
                        step!($kind, q, _mm256_maskload_ps(p[3].add(i), tail), acc[3]);
                    }
                    for k in 0..valid {
                        *out.get_unchecked_mut(r + k) = hsum(acc[k]);
                    }
                    r += valid;
                }
            }
        }
    };
}

batch_kernel!(
    l2_sq_batch,
    l2,
    "`out[r] = l2_sq(query, row r)` for every full row of `vectors` that fits in `out`."
);
batch_kernel!(
    dot_batch,
    dot,
    "`out[r] = dot(query, row r)` for every full row of `vectors` that fits in `out`."
);
