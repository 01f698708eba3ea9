//! Vector distances, the innermost loop of every search and of k-means.
//!
//! The public functions ([`l2_sq`], [`dot`], [`distance`], the `*_batch` kernels) dispatch to the
//! best kernel set the CPU supports: AVX-512F, AVX2+FMA, or portable code. Detection runs once
//! (cached in a `OnceLock`), so a call costs one indirect jump. [`Kernels::for_level`] exposes each
//! set so that tests can check every one against the portable reference and benches can compare
//! them (and against the `simsimd` crate, see [`simsimd_l2_sq`]).
//!
//! The batch kernels compute one query against many contiguous rows (an inverted list, a block of
//! raw vectors for re-ranking, the centroids): walking four rows at a time shares the query loads
//! and keeps four independent FMA chains busy, which a loop over the single-pair kernel cannot.
//!
//! Mismatched lengths are a caller bug (every index checks dimensions on input): the kernels then
//! compare the common prefix, so they never read out of bounds, and debug builds assert.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;

use std::sync::OnceLock;

use super::Metric;

/// A family of SIMD instructions a kernel set is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Portable Rust, vectorised by the compiler for the baseline target.
    Scalar,
    /// x86-64 AVX2 with FMA (8 lanes).
    Avx2,
    /// x86-64 AVX-512F (16 lanes).
    Avx512,
}

impl SimdLevel {
    /// Whether the running CPU can execute this level's kernels.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

type PairFn = unsafe fn(&[f32], &[f32]) -> f32;
type BatchFn = unsafe fn(&[f32], &[f32], usize, &mut [f32]);

/// One complete set of distance kernels for a [`SimdLevel`].
///
/// A `Kernels` value can only be obtained for a level the CPU supports, which is what makes its
/// safe methods sound.
#[derive(Clone, Copy)]
pub struct Kernels {
    level: SimdLevel,
    l2_sq: PairFn,
    dot: PairFn,
    l2_sq_batch: BatchFn,
    dot_batch: BatchFn,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("level", &self.level)
            .finish()
    }
}

impl Kernels {
    /// The kernels for `level`, or `None` when the CPU lacks the instructions.
    pub fn for_level(level: SimdLevel) -> Option<Kernels> {
        if !level.is_supported() {
            return None;
        }
        Some(match level {
            SimdLevel::Scalar => Kernels {
                level,
                l2_sq: scalar::l2_sq,
                dot: scalar::dot,
                l2_sq_batch: scalar::l2_sq_batch,
                dot_batch: scalar::dot_batch,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Kernels {
                level,
                l2_sq: avx2::l2_sq,
                dot: avx2::dot,
                l2_sq_batch: avx2::l2_sq_batch,
                dot_batch: avx2::dot_batch,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => Kernels {
                level,
                l2_sq: avx512::l2_sq,
                dot: avx512::dot,
                l2_sq_batch: avx512::l2_sq_batch,
                dot_batch: avx512::dot_batch,
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => return None,
        })
    }

    /// The best set the running CPU supports, detected once per process.
    pub fn best() -> &'static Kernels {
        static BEST: OnceLock<Kernels> = OnceLock::new();
        BEST.get_or_init(|| {
            [SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Scalar]
                .into_iter()
                .find_map(Kernels::for_level)
                .unwrap_or(Kernels {
                    level: SimdLevel::Scalar,
                    l2_sq: scalar::l2_sq,
                    dot: scalar::dot,
                    l2_sq_batch: scalar::l2_sq_batch,
                    dot_batch: scalar::dot_batch,
                })
        })
    }

    /// Which instruction family these kernels use.
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// Squared Euclidean distance.
    #[inline]
    pub fn l2_sq(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        // SAFETY: a `Kernels` only exists for a level the CPU supports (see `for_level`).
        unsafe { (self.l2_sq)(a, b) }
    }

    /// Inner product.
    #[inline]
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        // SAFETY: as in `l2_sq`.
        unsafe { (self.dot)(a, b) }
    }

    /// `out[r] = l2_sq(query, vectors[r*dim..(r+1)*dim])` for each row `r < out.len()`.
    #[inline]
    pub fn l2_sq_batch(&self, query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
        debug_assert_eq!(query.len(), dim);
        debug_assert!(vectors.len() >= dim * out.len());
        // SAFETY: as in `l2_sq`.
        unsafe { (self.l2_sq_batch)(query, vectors, dim, out) }
    }

    /// `out[r] = dot(query, vectors[r*dim..(r+1)*dim])` for each row `r < out.len()`.
    #[inline]
    pub fn dot_batch(&self, query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
        debug_assert_eq!(query.len(), dim);
        debug_assert!(vectors.len() >= dim * out.len());
        // SAFETY: as in `l2_sq`.
        unsafe { (self.dot_batch)(query, vectors, dim, out) }
    }
}

/// Squared Euclidean distance `Σ (a_i - b_i)²`.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    Kernels::best().l2_sq(a, b)
}

/// Inner product `Σ a_i b_i`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    Kernels::best().dot(a, b)
}

/// Squared Euclidean norm `Σ v_i²`.
#[inline]
pub fn norm_sq(v: &[f32]) -> f32 {
    dot(v, v)
}

/// The distance under `metric`, smaller is closer (see [`Metric`]). For [`Metric::Cosine`] both
/// vectors must already be normalised (indexes normalise once on insert and per query).
#[inline]
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => l2_sq(a, b),
        Metric::Cosine => 1.0 - dot(a, b),
        Metric::Dot => -dot(a, b),
    }
}

/// `out[r] = l2_sq(query, vectors[r*dim..(r+1)*dim])` for each row `r < out.len()`.
#[inline]
pub fn l2_sq_batch(query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
    Kernels::best().l2_sq_batch(query, vectors, dim, out)
}

/// `out[r] = dot(query, vectors[r*dim..(r+1)*dim])` for each row `r < out.len()`.
#[inline]
pub fn dot_batch(query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
    Kernels::best().dot_batch(query, vectors, dim, out)
}

/// `out[r] = distance(metric, query, row r)` for each row `r < out.len()` of `vectors`.
pub fn distance_batch(metric: Metric, query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
    match metric {
        Metric::L2 => l2_sq_batch(query, vectors, dim, out),
        Metric::Cosine => {
            dot_batch(query, vectors, dim, out);
            out.iter_mut().for_each(|d| *d = 1.0 - *d);
        }
        Metric::Dot => {
            dot_batch(query, vectors, dim, out);
            out.iter_mut().for_each(|d| *d = -*d);
        }
    }
}

/// Scales `v` to unit length in place, so that cosine distance becomes `1 - dot`. A zero vector
/// stays zero (it has no direction; its cosine distance to anything is then 1). Vectors whose
/// squared norm overflows or underflows `f32` are handled in `f64`.
pub fn normalize(v: &mut [f32]) {
    let n2 = norm_sq(v);
    if n2.is_finite() && n2 >= f32::MIN_POSITIVE {
        let inv = 1.0 / n2.sqrt();
        v.iter_mut().for_each(|x| *x *= inv);
        return;
    }
    let n2: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if n2 > 0.0 && n2.is_finite() {
        let inv = 1.0 / n2.sqrt();
        v.iter_mut().for_each(|x| *x = (f64::from(*x) * inv) as f32);
    }
}

/// Squared Euclidean distance by the portable kernel, whatever the CPU: a reference for tests
/// and benches.
pub fn scalar_l2(a: &[f32], b: &[f32]) -> f32 {
    scalar::l2_sq(a, b)
}

/// Squared Euclidean distance computed by the `simsimd` crate (its own runtime dispatch, `f64`
/// result), kept to benchmark our kernels against. Returns `NaN` on a length mismatch.
pub fn simsimd_l2_sq(a: &[f32], b: &[f32]) -> f32 {
    use simsimd::SpatialSimilarity;
    f32::l2sq(a, b).map_or(f32::NAN, |d| d as f32)
}

/// Inner product computed by the `simsimd` crate, kept to benchmark our kernels against.
/// Returns `NaN` on a length mismatch.
pub fn simsimd_dot(a: &[f32], b: &[f32]) -> f32 {
    use simsimd::SpatialSimilarity;
    f32::dot(a, b).map_or(f32::NAN, |d| d as f32)
}

#[cfg(test)]
mod tests;
