//! The k-way merge of per-shard top-k lists into one answer.
//!
//! Every shard answers its hits best first (ties by id); the router merges those sorted lists
//! with a heap of list heads, so the cost is `O(limit · log shards)` whatever the list lengths.
//! The order is total and deterministic — by key in the metric's direction, then by id — so a
//! sharded collection answers exactly what one shard holding the same points would answer
//! (equal keys are broken by id in both). An id seen twice (during a centroid re-placement it
//! can briefly live in two shards) is kept once, at its best rank.

use crate::index::Metric;
use crate::shard::PointId;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// The re-rank factor each of `shards` hash-placed shards is asked for when a query's factor is
/// `rerank`.
///
/// A single shard re-ranks its `limit · rerank` best PQ candidates exactly. Asked as is, `shards`
/// shards would re-rank `shards` times as many, and exact re-ranking (random reads of raw
/// vectors) is the part of a search that grows with the shard count: 4 shards of 1M × 128 took
/// 0.120 ms against 0.073 ms for one shard scanning as many codes. Hash placement spreads ids
/// uniformly at random, so the collection's `limit · rerank` best candidates fall about evenly
/// on the shards (binomially: for 40 candidates on 4 shards, 10 ± 2.7 each); asking each shard
/// for twice its even share keeps virtually all of them (recall@10 0.9968 against 0.9974 for one
/// shard on that set) at 0.097 ms. Never below 1 (a shard always re-ranks its own top `limit`);
/// 0 (no re-ranking) stays 0. Centroid placement concentrates a query's neighbours in the nearest
/// shards, so it keeps the factor unchanged.
pub fn hash_shard_rerank(rerank: usize, shards: usize) -> usize {
    if rerank == 0 || shards <= 1 {
        return rerank;
    }
    (2 * rerank).div_ceil(shards).clamp(1, rerank)
}

/// Which end of the key is best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smaller keys first: shoal's distances, Euclid scores.
    Ascending,
    /// Larger keys first: cosine and dot scores (similarities).
    Descending,
}

impl Order {
    /// The order of Qdrant-style scores under `metric`: similarities (cosine, dot) are best when
    /// high, Euclidean distances when low.
    pub fn of_scores(metric: Metric) -> Order {
        match metric {
            Metric::L2 => Order::Ascending,
            Metric::Cosine | Metric::Dot => Order::Descending,
        }
    }

    /// Compares two keys so that `Less` means "better". NaN sorts after every number either way
    /// (a NaN never beats a real key).
    pub fn cmp(self, a: f32, b: f32) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => match self {
                Order::Ascending => a.total_cmp(&b),
                Order::Descending => b.total_cmp(&a),
            },
        }
    }
}

/// Something the merge can rank: a key (distance or score) and the id that breaks ties.
pub trait Ranked {
    /// The ranking key.
    fn key(&self) -> f32;
    /// The point's id.
    fn id(&self) -> PointId;
}

/// One list head in the heap: ordered so the best head is the heap's maximum.
struct Head {
    key: f32,
    id: PointId,
    list: usize,
    order: Order,
}

impl Head {
    fn rank(&self, other: &Head) -> Ordering {
        self.order
            .cmp(self.key, other.key)
            .then(self.id.cmp(&other.id))
            .then(self.list.cmp(&other.list))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the maximum: the best head must compare greatest.
        other.rank(self)
    }
}

/// Merges lists that are each sorted best first (by `order`, then id) into the best
/// `offset + limit` items overall, skips `offset` of them and returns the rest, best first.
/// Duplicate ids keep their first (best) occurrence. An unsorted input list is not an error,
/// but its items then come out in its own order.
pub fn merge_top_k<T: Ranked>(
    lists: Vec<Vec<T>>,
    order: Order,
    offset: usize,
    limit: usize,
) -> Vec<T> {
    let want = offset.saturating_add(limit);
    let mut iters: Vec<std::iter::Peekable<std::vec::IntoIter<T>>> = lists
        .into_iter()
        .map(|l| l.into_iter().peekable())
        .collect();
    let mut heap = BinaryHeap::with_capacity(iters.len());
    for (list, it) in iters.iter_mut().enumerate() {
        if let Some(h) = it.peek() {
            heap.push(Head {
                key: h.key(),
                id: h.id(),
                list,
                order,
            });
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(want.min(1024));
    while out.len() < want {
        let Some(head) = heap.pop() else { break };
        let it = &mut iters[head.list];
        if let Some(item) = it.next()
            && seen.insert(item.id())
        {
            out.push(item);
        }
        if let Some(next) = it.peek() {
            heap.push(Head {
                key: next.key(),
                id: next.id(),
                list: head.list,
                order,
            });
        }
    }
    out.into_iter().skip(offset).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_shards_share_the_rerank_budget_with_a_margin() {
        assert_eq!(hash_shard_rerank(0, 4), 0);
        assert_eq!(hash_shard_rerank(4, 1), 4);
        assert_eq!(hash_shard_rerank(4, 2), 4);
        assert_eq!(hash_shard_rerank(4, 4), 2);
        assert_eq!(hash_shard_rerank(4, 8), 1);
        assert_eq!(hash_shard_rerank(10, 4), 5);
        assert_eq!(hash_shard_rerank(1, 3), 1);
        assert_eq!(hash_shard_rerank(3, 3), 2);
    }

    #[derive(Debug, Clone, PartialEq)]
    struct H(f32, u64);
    impl Ranked for H {
        fn key(&self) -> f32 {
            self.0
        }
        fn id(&self) -> PointId {
            PointId::Num(self.1)
        }
    }

    fn ids(v: &[H]) -> Vec<u64> {
        v.iter().map(|h| h.1).collect()
    }

    #[test]
    fn ascending_merge_takes_the_smallest_keys() {
        let a = vec![H(0.1, 1), H(0.5, 2), H(0.9, 3)];
        let b = vec![H(0.2, 4), H(0.3, 5)];
        let c = vec![];
        let out = merge_top_k(vec![a, b, c], Order::Ascending, 0, 4);
        assert_eq!(ids(&out), vec![1, 4, 5, 2]);
    }

    #[test]
    fn score_direction_follows_the_metric() {
        // Cosine and dot scores are similarities: higher first.
        for m in [Metric::Cosine, Metric::Dot] {
            let a = vec![H(0.9, 1), H(0.2, 2)];
            let b = vec![H(0.95, 3), H(0.5, 4)];
            let out = merge_top_k(vec![a, b], Order::of_scores(m), 0, 3);
            assert_eq!(ids(&out), vec![3, 1, 4], "{m:?}");
        }
        // Euclid scores are distances: lower first.
        let a = vec![H(0.2, 2), H(0.9, 1)];
        let b = vec![H(0.5, 4), H(0.95, 3)];
        let out = merge_top_k(vec![a, b], Order::of_scores(Metric::L2), 0, 3);
        assert_eq!(ids(&out), vec![2, 4, 1]);
    }

    #[test]
    fn ties_break_by_id_whatever_the_list_order() {
        let a = vec![H(1.0, 9), H(2.0, 1)];
        let b = vec![H(1.0, 3), H(1.0, 7)];
        let c = vec![H(1.0, 5)];
        for order in [Order::Ascending, Order::Descending] {
            let mut lists = vec![a.clone(), b.clone(), c.clone()];
            let first = merge_top_k(lists.clone(), order, 0, 10);
            lists.reverse();
            let second = merge_top_k(lists, order, 0, 10);
            assert_eq!(first, second);
        }
        let out = merge_top_k(vec![a, b, c], Order::Ascending, 0, 10);
        assert_eq!(ids(&out), vec![3, 5, 7, 9, 1]);
    }

    #[test]
    fn offset_and_limit_apply_after_the_merge() {
        let a = vec![H(1.0, 1), H(3.0, 3), H(5.0, 5)];
        let b = vec![H(2.0, 2), H(4.0, 4), H(6.0, 6)];
        let out = merge_top_k(vec![a.clone(), b.clone()], Order::Ascending, 2, 3);
        assert_eq!(ids(&out), vec![3, 4, 5]);
        assert!(merge_top_k(vec![a, b], Order::Ascending, 10, 3).is_empty());
    }

    #[test]
    fn duplicate_ids_keep_their_best_occurrence() {
        let a = vec![H(0.1, 7), H(0.4, 2)];
        let b = vec![H(0.3, 7), H(0.5, 3)];
        let out = merge_top_k(vec![a, b], Order::Ascending, 0, 3);
        assert_eq!(out, vec![H(0.1, 7), H(0.4, 2), H(0.5, 3)]);
    }

    #[test]
    fn nan_keys_never_beat_numbers() {
        let a = vec![H(f32::NAN, 1)];
        let b = vec![H(5.0, 2)];
        for order in [Order::Ascending, Order::Descending] {
            let out = merge_top_k(vec![a.clone(), b.clone()], order, 0, 2);
            assert_eq!(ids(&out), vec![2, 1]);
        }
    }

    #[test]
    fn merge_equals_sorting_everything() {
        // A seeded pseudo-random check against the obvious implementation.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut all = Vec::new();
        let mut lists = Vec::new();
        let mut id = 0;
        for _ in 0..5 {
            let mut l: Vec<H> = (0..20)
                .map(|_| {
                    id += 1;
                    H((next() % 16) as f32, id)
                })
                .collect();
            l.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.extend(l.clone());
            lists.push(l);
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let out = merge_top_k(lists, Order::Ascending, 3, 30);
        assert_eq!(out, all[3..33].to_vec());
    }
}
