//! [`Reservoir`]: the `k` closest candidates of a list scan, kept unordered and cut back in bulk.
//!
//! Why: a fast-scan pool holds `2 × k × rerank` candidates (80-160), and a scan offers it
//! hundreds a query, each better than its worst. As a binary heap ([`TopK`](super::TopK)) every
//! such offer sifts through seven levels of unpredictable branches: `TopK::sift_down` was 12-17%
//! of a query on 1M × 128 in perf, filtered or not. A reservoir appends what beats its threshold
//! and, when it holds twice `k`, keeps the best `k` by one selection (`select_nth_unstable`) and
//! raises the threshold to the worst kept: a few comparisons per offer, amortised, and no
//! branch that depends on the heap's shape (FAISS' fast-scan keeps its results the same way,
//! `ReservoirTopN`).
//!
//! The answer is the one a heap gives: the `k` smallest `(distance, id)` of everything offered.
//! A candidate only ever misses the buffer when at least `k` kept ones beat it, and ties at the
//! threshold are let in, so the id order decides them at the end, as in [`TopK`](super::TopK).
//! Its [`Reservoir::threshold`] is looser between cuts (never below the true `k`-th best), which
//! only lets a scan report a few more candidates.

use super::Neighbor;
use super::topk::{admits, cmp_neighbors};

/// Bounded selection of the `k` smallest `(distance, id)` pairs, kept unordered.
#[derive(Clone, Debug)]
pub struct Reservoir {
    k: usize,
    /// Kept entries that trigger a cut: `2k` (saturating: `k` may come from a request).
    cut_at: usize,
    kept: Vec<Neighbor>,
    /// No kept candidate's distance is above it once `k` are kept; `+inf` before, `-inf` when
    /// `k == 0`. Candidates strictly above it are refused.
    threshold: f32,
}

impl Reservoir {
    /// An empty selection that will keep the `k` best.
    pub fn new(k: usize) -> Self {
        let cut_at = k.saturating_mul(2);
        Reservoir {
            k,
            cut_at,
            // Cap the up-front allocation: `k` may come from a request.
            kept: Vec::with_capacity(cut_at.min(8192)),
            threshold: if k == 0 {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            },
        }
    }

    /// A distance strictly above this cannot be among the `k` best of what was offered so far.
    #[inline(always)]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Offers a candidate; NaN distances are ignored, ids are not deduplicated.
    #[inline(always)]
    pub fn push(&mut self, id: u64, distance: f32) {
        if !admits(distance, self.threshold) {
            return;
        }
        self.kept.push(Neighbor { id, distance });
        if self.kept.len() == self.k {
            // Full for the first time: the worst kept bounds the k-th best already.
            self.threshold = self
                .kept
                .iter()
                .map(|n| n.distance)
                .fold(f32::MIN, f32::max);
        } else if self.kept.len() >= self.cut_at {
            self.cut();
        }
    }

    /// Keeps the best `k`, and their worst as the threshold.
    #[cold]
    fn cut(&mut self) {
        let k = self.k;
        self.kept.select_nth_unstable_by(k - 1, cmp_neighbors);
        self.kept.truncate(k);
        self.threshold = self.kept[k - 1].distance;
    }

    /// The `k` best in no particular order: for a caller that re-scores them anyway (re-ranking
    /// reads them by row), which then pays no sort.
    pub fn into_vec(mut self) -> Vec<Neighbor> {
        // A cut needs `k >= 1`, which holds whenever more than `k` are kept.
        if self.kept.len() > self.k {
            self.cut();
        }
        self.kept
    }

    /// The `k`-th best distance offered: `+inf` while fewer than `k` were kept (`-inf` when
    /// `k == 0`), what a heap of the `k` best reports as its threshold. A selection made in two
    /// passes cuts at it.
    pub fn into_kth_distance(mut self) -> f32 {
        if self.kept.len() > self.k {
            self.cut();
        }
        if self.kept.len() < self.k {
            f32::INFINITY
        } else {
            self.threshold
        }
    }

    /// The `k` best, closest first, ties by id (only those `k` are sorted).
    pub fn into_sorted_vec(self) -> Vec<Neighbor> {
        let mut best = self.into_vec();
        best.sort_unstable_by(cmp_neighbors);
        best
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::index::TopK;

    #[test]
    fn keeps_what_a_heap_keeps() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for k in [0usize, 1, 2, 7, 80, 160, usize::MAX] {
            for n in [0usize, 1, 5, 100, 3000] {
                // Few distinct distances, so ties at the threshold are common; some NaN.
                let cands: Vec<(u64, f32)> = (0..n)
                    .map(|_| {
                        let d = match rng.random_range(0..50) {
                            0 => f32::NAN,
                            v => (v % 23) as f32,
                        };
                        (rng.random_range(0..1000u64), d)
                    })
                    .collect();
                let (mut heap, mut res) = (TopK::new(k), Reservoir::new(k));
                for &(id, d) in &cands {
                    heap.push(id, d);
                    res.push(id, d);
                    assert!(res.threshold() >= heap.threshold(), "k {k} n {n}");
                }
                assert_eq!(
                    res.clone().into_kth_distance(),
                    heap.threshold(),
                    "k {k} n {n}"
                );
                let mut unsorted = res.clone().into_vec();
                unsorted.sort_unstable_by(cmp_neighbors);
                let want = heap.into_sorted_vec();
                assert_eq!(unsorted, want, "k {k} n {n}");
                assert_eq!(res.into_sorted_vec(), want, "k {k} n {n}");
            }
        }
    }

    #[test]
    fn the_threshold_is_the_kth_best_right_after_a_cut() {
        let mut r = Reservoir::new(3);
        for (i, d) in [5.0, 1.0, 4.0].into_iter().enumerate() {
            r.push(i as u64, d);
        }
        assert_eq!(r.threshold(), 5.0, "full: the worst kept");
        for (i, d) in [3.0, 2.0, 6.0, 0.5].into_iter().enumerate() {
            r.push(10 + i as u64, d);
        }
        // 6.0 was refused; the sixth kept (0.5) triggered the cut to {0.5, 1, 2}.
        assert_eq!(r.threshold(), 2.0);
        let ids: Vec<u64> = r.into_sorted_vec().iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![13, 1, 11]);
    }
}
