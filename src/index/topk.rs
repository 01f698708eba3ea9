//! [`TopK`]: keep the `k` closest candidates seen so far.
//!
//! Every search funnels its candidates through one of these, so it is built for the hot path: a
//! flat binary max-heap whose root is the worst kept candidate, and a cached [`TopK::threshold`]
//! so that the common case — a candidate worse than everything kept — costs one comparison and
//! lets scans skip work (e.g. exact re-ranking or list scans) before computing anything further.
//!
//! Order is total and deterministic: by distance, then by id, so that shards, segments and
//! replicas that see the same candidates return the same answer.

use std::cmp::Ordering;

use super::Neighbor;

#[derive(Clone, Copy, Debug)]
struct Entry {
    distance: f32,
    id: u64,
}

impl Entry {
    /// `(distance, id)` order; distances are never NaN here (NaN is refused on push).
    #[inline(always)]
    fn worse_than(&self, other: &Entry) -> bool {
        self.distance > other.distance || (self.distance == other.distance && self.id > other.id)
    }
}

/// Bounded selection of the `k` smallest `(distance, id)` pairs.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    heap: Vec<Entry>,
    threshold: f32,
}

impl TopK {
    /// An empty selection that will keep at most `k` candidates.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            // Cap the up-front allocation: `k` may come from a request.
            heap: Vec::with_capacity(k.min(4096)),
            threshold: if k == 0 {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            },
        }
    }

    /// How many candidates this selection keeps at most.
    pub fn k(&self) -> usize {
        self.k
    }

    /// How many candidates are kept now.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is kept yet.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether `k` candidates are kept, so that only better ones get in.
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The worst kept distance once full, `+inf` before (and `-inf` when `k == 0`). A candidate
    /// with a distance strictly above this can never enter, so scans may skip it; one *equal*
    /// to it may still enter if its id is smaller.
    #[inline(always)]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Offers a candidate. Kept if fewer than `k` are kept, or if it beats the worst kept one by
    /// `(distance, id)`. NaN distances are ignored. Ids are not deduplicated.
    #[inline(always)]
    pub fn push(&mut self, id: u64, distance: f32) {
        if admits(distance, self.threshold) {
            self.push_slow(Entry { distance, id });
        }
    }

    #[inline]
    fn push_slow(&mut self, e: Entry) {
        if self.heap.len() < self.k {
            self.heap.push(e);
            self.sift_up(self.heap.len() - 1);
            if self.heap.len() == self.k {
                self.threshold = self.heap[0].distance;
            }
            return;
        }
        if !self.heap[0].worse_than(&e) {
            return;
        }
        self.heap[0] = e;
        self.sift_down(0);
        self.threshold = self.heap[0].distance;
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / 2;
            if !e.worse_than(&self.heap[parent]) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = e;
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        let e = self.heap[i];
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.heap[right].worse_than(&self.heap[left]) {
                right
            } else {
                left
            };
            if !self.heap[child].worse_than(&e) {
                break;
            }
            self.heap[i] = self.heap[child];
            i = child;
        }
        self.heap[i] = e;
    }

    /// Offers every neighbour of `other` (merging per-segment or per-shard results).
    pub fn merge(&mut self, other: TopK) {
        for e in other.heap {
            self.push(e.id, e.distance);
        }
    }

    /// The kept candidates, closest first, ties by id.
    pub fn into_sorted_vec(self) -> Vec<Neighbor> {
        let mut v: Vec<Neighbor> = self
            .heap
            .into_iter()
            .map(|e| Neighbor {
                id: e.id,
                distance: e.distance,
            })
            .collect();
        v.sort_unstable_by(cmp_neighbors);
        v
    }
}

impl Extend<Neighbor> for TopK {
    fn extend<I: IntoIterator<Item = Neighbor>>(&mut self, iter: I) {
        for n in iter {
            self.push(n.id, n.distance);
        }
    }
}

/// Whether a candidate at `distance` may enter a selection whose threshold is `threshold`: at
/// or below it, and not NaN, in one comparison (the hot path of every scan).
#[inline(always)]
pub(crate) fn admits(distance: f32, threshold: f32) -> bool {
    distance <= threshold
}

/// The total `(distance, id)` order every result list uses.
pub fn cmp_neighbors(a: &Neighbor, b: &Neighbor) -> Ordering {
    a.distance
        .total_cmp(&b.distance)
        .then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn brute(cands: &[(u64, f32)], k: usize) -> Vec<Neighbor> {
        let mut v: Vec<Neighbor> = cands
            .iter()
            .filter(|c| !c.1.is_nan())
            .map(|&(id, distance)| Neighbor { id, distance })
            .collect();
        v.sort_by(cmp_neighbors);
        v.truncate(k);
        v
    }

    #[test]
    fn matches_sort_and_truncate_with_many_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for k in [0usize, 1, 2, 5, 10, 100, 1000] {
            for n in [0usize, 1, 7, 100, 3000] {
                // Few distinct distances so ties are everywhere; ids shuffled.
                let cands: Vec<(u64, f32)> = (0..n)
                    .map(|_| {
                        (
                            rng.random_range(0..10_000u64),
                            rng.random_range(0..20u32) as f32,
                        )
                    })
                    .collect();
                let mut t = TopK::new(k);
                for &(id, d) in &cands {
                    t.push(id, d);
                }
                assert_eq!(t.len(), k.min(n));
                assert_eq!(t.into_sorted_vec(), brute(&cands, k), "k={k} n={n}");
            }
        }
    }

    #[test]
    fn threshold_is_inf_until_full_then_worst_kept() {
        let mut t = TopK::new(3);
        assert_eq!(t.threshold(), f32::INFINITY);
        t.push(1, 5.0);
        t.push(2, 1.0);
        assert_eq!(t.threshold(), f32::INFINITY);
        t.push(3, 3.0);
        assert!(t.is_full());
        assert_eq!(t.threshold(), 5.0);
        t.push(4, 2.0);
        assert_eq!(t.threshold(), 3.0);
        t.push(5, 10.0);
        assert_eq!(t.threshold(), 3.0);
        // Equal distance, smaller id replaces; larger id does not.
        t.push(0, 3.0);
        t.push(9, 3.0);
        let ids: Vec<u64> = t.into_sorted_vec().iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![2, 4, 0]);
        assert_eq!(TopK::new(0).threshold(), f32::NEG_INFINITY);
    }

    #[test]
    fn nan_and_infinities() {
        let mut t = TopK::new(2);
        t.push(1, f32::NAN);
        t.push(2, f32::INFINITY);
        t.push(3, f32::NEG_INFINITY);
        t.push(4, f32::NAN);
        let v = t.into_sorted_vec();
        assert_eq!(v.iter().map(|n| n.id).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[test]
    fn merge_equals_single_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let cands: Vec<(u64, f32)> = (0..500).map(|i| (i, rng.random::<f32>())).collect();
        let (mut a, mut b, mut all) = (TopK::new(10), TopK::new(10), TopK::new(10));
        for (i, &(id, d)) in cands.iter().enumerate() {
            if i % 2 == 0 {
                a.push(id, d)
            } else {
                b.push(id, d)
            }
            all.push(id, d);
        }
        a.merge(b);
        assert_eq!(a.into_sorted_vec(), all.into_sorted_vec());
    }
}
