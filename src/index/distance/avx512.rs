//! AVX-512F kernels: 16 lanes, four accumulators (64 floats per step) to cover FMA latency, and a
//! masked load for the tail so no dimension needs a scalar remainder loop. The batch kernels
//! walk four rows at once so each query chunk is loaded once per four rows and the four
//! accumulator chains run in parallel.
//!
//! Every function here is `unsafe`: the caller must have checked that the CPU supports AVX-512F
//! (the dispatcher in `distance.rs` does, once).

use std::arch::x86_64::*;

#[inline(always)]
fn tail_mask(rem: usize) -> __mmask16 {
    debug_assert!(rem < 16);
    ((1u32 << rem) - 1) as __mmask16
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut acc2 = _mm512_setzero_ps();
    let mut acc3 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: every load reads 16 floats at i < n - 15 (or a masked tail inside 0..n).
    unsafe {
        while i + 64 <= n {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            let d1 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
            );
            let d2 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 32)),
                _mm512_loadu_ps(pb.add(i + 32)),
            );
            let d3 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 48)),
                _mm512_loadu_ps(pb.add(i + 48)),
            );
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            acc2 = _mm512_fmadd_ps(d2, d2, acc2);
            acc3 = _mm512_fmadd_ps(d3, d3, acc3);
            i += 64;
        }
        while i + 16 <= n {
            let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            acc0 = _mm512_fmadd_ps(d, d, acc0);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            let d = _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
            );
            acc1 = _mm512_fmadd_ps(d, d, acc1);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc0, acc1),
        _mm512_add_ps(acc2, acc3),
    ))
}

/// Inner product over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut acc2 = _mm512_setzero_ps();
    let mut acc3 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: as in `l2_sq`.
    unsafe {
        while i + 64 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
            acc2 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 32)),
                _mm512_loadu_ps(pb.add(i + 32)),
                acc2,
            );
            acc3 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 48)),
                _mm512_loadu_ps(pb.add(i + 48)),
                acc3,
            );
            i += 64;
        }
        while i + 16 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            acc1 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc1,
            );
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc0, acc1),
        _mm512_add_ps(acc2, acc3),
    ))
}

/// Horizontal sums of four accumulators at once, `[Σ a0, Σ a1, Σ a2, Σ a3]`: one shuffle tree
/// for four rows instead of four separate reductions.
#[inline(always)]
unsafe fn reduce4(a: [__m512; 4]) -> __m128 {
    // SAFETY: AVX-512F (which implies AVX) is enabled in every caller.
    unsafe {
        let half = |v: __m512| {
            _mm256_add_ps(
                _mm512_castps512_ps256(v),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
            )
        };
        let h01 = _mm256_hadd_ps(half(a[0]), half(a[1]));
        let h23 = _mm256_hadd_ps(half(a[2]), half(a[3]));
        let h = _mm256_hadd_ps(h01, h23);
        _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
    }
}

/// `acc = op(q, v, acc)` for the two kernel kinds, shared by the four-row batch loops.
macro_rules! step {
    (l2, $q:expr, $v:expr, $acc:expr) => {{
        let d = _mm512_sub_ps($v, $q);
        $acc = _mm512_fmadd_ps(d, d, $acc);
    }};
    (dot, $q:expr, $v:expr, $acc:expr) => {{
        $acc = _mm512_fmadd_ps($v, $q, $acc);
    }};
}

macro_rules! batch_kernel {
    ($name:ident, $kind:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn $name(query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
            if dim == 0 {
                out.fill(0.0);
                return;
            }
            let query = &query[..dim.min(query.len())];
            let d = query.len();
            let rows = out.len().min(vectors.len() / dim);
            let pq = query.as_ptr();
            let tail = tail_mask(d % 16);
            let mut r = 0;
            // SAFETY: every row pointer is clamped to a row below `rows` (inside `vectors`), and
            // every load reads lanes i..i+16 with i + 16 <= d, or the masked tail inside 0..d.
            unsafe {
                // A last group of fewer than four rows repeats its last row in the spare lanes:
                // every row goes through the same instructions wherever it sits, so a vector's
                // distance never depends on its position (a sharded collection scores a point
                // exactly as a single one does).
                while r < rows {
                    let row = |k: usize| vectors.as_ptr().add((r + k).min(rows - 1) * dim);
                    let p = [row(0), row(1), row(2), row(3)];
                    let valid = (rows - r).min(4);
                    let mut acc = [_mm512_setzero_ps(); 4];
                    let mut i = 0;
                    while i + 16 <= d {
                        let q = _mm512_loadu_ps(pq.add(i));
                        step!($kind, q, _mm512_loadu_ps(p[0].add(i)), acc[0]);
                        step!($kind, q, _mm512_loadu_ps(p[1].add(i)), acc[1]);
                        step!($kind, q, _mm512_loadu_ps(p[2].add(i)), acc[2]);
                        step!($kind, q, _mm512_loadu_ps(p[3].add(i)), acc[3]);
                        i += 16;
                    }
                    if i < d {
                        let q = _mm512_maskz_loadu_ps(tail, pq.add(i));
                        step!($kind, q, _mm512_maskz_loadu_ps(tail, p[0].add(i)), acc[0]);
                        step!($kind, q, _mm512_maskz_loadu_ps(tail, p[1].add(i)), acc[1]);
                        step!($kind, q, _mm512_maskz_loadu_ps(tail, p[2].add(i)), acc[2]);
                        step!($kind, q, _mm512_maskz_loadu_ps(tail, p[3].add(i)), acc[3]);
                    }
                    let mut sums = [0.0f32; 4];
                    _mm_storeu_ps(sums.as_mut_ptr(), reduce4(acc));
                    out[r..r + valid].copy_from_slice(&sums[..valid]);
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
