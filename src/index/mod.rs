//! Pure approximate-nearest-neighbour maths: distances, k-means, product quantisation, IVF and
//! exact (flat) search. Nothing here touches files or the network; index parts live in [`Slab`]s
//! so that a caller can hand in memory it owns or a memory map without the index knowing which.

pub mod coarse;
pub mod coarse8;
pub mod distance;
pub mod error;
pub mod fastscan;
pub mod flat;
pub mod ivfpq;
pub mod kmeans;
pub mod knn;
pub mod pq;
pub mod reservoir;
pub mod rowset;
pub mod slab;
pub mod sq8;
pub mod topk;

pub use error::IndexError;
pub use flat::FlatIndex;
pub use reservoir::Reservoir;
pub use rowset::RowSet;
pub use topk::TopK;

pub use slab::{ByteOwner, Slab};

/// Hints the CPU to start loading the cache line holding `value`: for loops that read per-row
/// arrays at scattered rows, where each miss would otherwise wait its turn.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_into::<false, T>(value);
}

/// [`prefetch`] of every 64-byte cache line of `values` (a raw vector, a row of codes).
#[inline(always)]
pub fn prefetch_slice<T>(values: &[T]) {
    prefetch_lines::<false, T>(values);
}

/// [`prefetch_slice`] into the second-level cache instead of the first (`PREFETCHT1`): for a
/// run of a few dozen lines read a little later, as each probed list's run of copied 8-bit
/// codes is read while the one before it is scored. Asked into the first level, a run's
/// prefetches held it up: on 1M × 128 a 1% filter (~50 runs of ~25 lines a query) ran at
/// 1.17× the QPS with this hint in alternated runs of one binary, at every look-ahead of one
/// to four runs alike, and 1.24× in an A/B of builds
/// (`benches/results/filter-1m-prefetch-l2-2026-12-07.txt`).
#[inline(always)]
pub fn prefetch_slice_l2<T>(values: &[T]) {
    prefetch_lines::<true, T>(values);
}

/// Every 64-byte cache line of `values` asked for, into the second-level cache if `L2`, the
/// first otherwise.
#[inline(always)]
fn prefetch_lines<const L2: bool, T>(values: &[T]) {
    let bytes = std::mem::size_of_val(values);
    let start = values.as_ptr() as *const u8;
    for offset in (0..bytes).step_by(64) {
        // SAFETY: `offset` is inside the slice, so the pointer stays in its allocation.
        prefetch_into::<L2, u8>(unsafe { &*start.add(offset) });
    }
}

/// The line holding `value` asked for, into the second-level cache if `L2` (`PREFETCHT1`),
/// the first otherwise (`PREFETCHT0`).
#[inline(always)]
fn prefetch_into<const L2: bool, T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
        let at = value as *const T as *const i8;
        // SAFETY: prefetching is a hint; the address is that of a live reference.
        unsafe {
            if L2 {
                _mm_prefetch::<_MM_HINT_T1>(at);
            } else {
                _mm_prefetch::<_MM_HINT_T0>(at);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// `items` in order, each one's data asked for (`prefetch`) `ahead` items before it is reached:
/// for loops over scattered rows (raw vectors, 8-bit codes, per-row arrays), where each cache
/// miss would otherwise wait its turn. The first `ahead` are asked for at the start.
pub fn prefetched<'a, T: Copy + 'a>(
    items: &'a [T],
    ahead: usize,
    prefetch: impl Fn(T) + 'a,
) -> impl Iterator<Item = T> + 'a {
    items.iter().take(ahead).for_each(|&t| prefetch(t));
    items.iter().enumerate().map(move |(i, &t)| {
        if let Some(&next) = items.get(i + ahead) {
            prefetch(next);
        }
        t
    })
}

use serde::{Deserialize, Serialize};

/// How two vectors are compared. Every metric is turned into "smaller is closer" internally so that
/// one top-k routine serves all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Cosine distance `1 - cos`; vectors are normalised once at insert, then compared by inner
    /// product.
    Cosine,
    /// Negative inner product, so that the largest dot product ranks first.
    Dot,
}

/// One search hit: the point's id and its distance under the index's metric (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    /// The point's external id.
    pub id: u64,
    /// The distance, smaller is closer (see [`Metric`]).
    pub distance: f32,
}
