//! Which sealed segments to merge next: a pure function over segment metadata (as tantivy's
//! `merge_policy.rs`), so the policy is tested without building a single index.
//!
//! **Log-structured tiers.** A sealed segment with `live` rows sits in tier
//! `floor(log2(live / base))` (tier 0 below `base`), where `base` is the shard's
//! `seal_threshold`. Whenever one tier holds two or more segments that no job holds, they are
//! merged into one segment of the next tier (or beyond), lowest tier first. At rest every tier
//! then holds at most one segment: like the bits of a binary counter, a shard of `N` live points
//! has at most `log2(N / base) + 1` sealed segments, and a bulk load of `N` ends in `popcount`
//! large segments. Each row is rewritten once per tier it climbs, `log2(N / base)` times in all,
//! and merges stop at `max_rows`: a segment that large is left alone (only purged).
//!
//! **Purging.** A segment with more than `deleted_fraction` of its rows tombstoned is rewritten
//! even when its tier has no partner, so deleted points stop costing memory and scan time. A tier
//! merge drops the deleted rows of the segments it merges too.
//!
//! Segments a job holds (`busy`: still being built, or being merged) are never chosen; the policy
//! is asked again when a job ends, so it converges once the jobs are done.
//!
//! **At rest** ([`compute_rest_merge`]). Tiers leave one segment per tier, and a load whose
//! queued builds were taken together (`build.rs`) ends in segments of any size: 1M points as
//! 550k, 300k and 150k, or 850k and 150k, or 900k and 100k, one per tier, each costing every
//! query its own probe, tables and re-rank (on 1M × 128, two segments answered at 0.64–0.70× the
//! QPS of one). Once a shard has seen no write for its idle-seal delay, its smallest segments
//! are merged into the next larger one whenever together they hold at least a tenth
//! ([`REST_MERGE_SHARE`]) as many rows as it does. Such a merge rewrites a segment only when it
//! grows by a tenth or more, so the rows it writes over a shard's life sum to at most
//! `(1 + 1/10) / (1/10) = 11` times the shard's size (tiers write `log2(N / base)` times it), and
//! a shard that keeps taking writes never pays it. (A quarter, the first rule, bounded that at 5×
//! but left the 850k + 150k and 900k + 100k layouts of 1M loads unmerged; their queries paid
//! 1.4–1.5× for good to save one rewrite of a load's size while the shard was idle.)

/// What the policy knows of one sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The segment's id.
    pub id: u32,
    /// Rows stored, live or deleted.
    pub rows: usize,
    /// Live rows.
    pub live: usize,
    /// Held by a running job (build or merge).
    pub busy: bool,
}

/// The policy's settings (from [`super::CompactionConfig`] and the shard's seal threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergePolicy {
    /// Live rows of a tier-0 segment (the seal threshold).
    pub base_rows: usize,
    /// Most live rows a merged segment may get; segments at least this large are not merged.
    pub max_rows: usize,
    /// Segments with more than this fraction of rows deleted are rewritten.
    pub deleted_fraction: f64,
    /// Merge segments of the same tier (off: only purge deleted rows).
    pub tiers: bool,
}

impl MergePolicy {
    /// The tier of a segment with `live` rows.
    pub fn tier(&self, live: usize) -> u32 {
        let base = self.base_rows.max(1);
        if live < base {
            0
        } else {
            (live / base).ilog2()
        }
    }

    fn is_dirty(&self, s: &SegmentMeta) -> bool {
        s.rows > 0 && (s.rows - s.live) as f64 > self.deleted_fraction * s.rows as f64
    }
}

/// The ids of the sealed segments to merge next (one segment: rewrite it without its deleted
/// rows), or `None` when there is nothing worth doing. `sealed` excludes the mutable segment.
pub fn compute_merge_candidates(sealed: &[SegmentMeta], policy: &MergePolicy) -> Option<Vec<u32>> {
    let free: Vec<&SegmentMeta> = sealed.iter().filter(|s| !s.busy).collect();
    if policy.tiers {
        let mut tiers: Vec<u32> = free
            .iter()
            .filter(|s| s.live < policy.max_rows)
            .map(|s| policy.tier(s.live))
            .collect();
        tiers.sort_unstable();
        tiers.dedup();
        for tier in tiers {
            let mut group = Vec::new();
            let mut total = 0usize;
            for s in free
                .iter()
                .filter(|s| s.live < policy.max_rows && policy.tier(s.live) == tier)
            {
                if total.saturating_add(s.live) > policy.max_rows {
                    continue;
                }
                total += s.live;
                group.push(s.id);
            }
            if group.len() >= 2 {
                return Some(group);
            }
        }
    }
    free.iter().find(|s| policy.is_dirty(s)).map(|s| vec![s.id])
}

/// At rest, a group of segments joins the next larger one when it holds at least
/// `1 / REST_MERGE_SHARE` of that one's live rows (see the module doc).
pub const REST_MERGE_SHARE: usize = 10;

/// The segments to merge once a shard is at rest (see the module doc), or `None`: starting from
/// each segment in ascending order of live rows, the next larger one joins while the group
/// holds at least a tenth of its rows ([`REST_MERGE_SHARE`]) and stays within `max_rows`; the
/// first group of two or more wins. Only with tier merges on; busy and full segments are never
/// chosen.
pub fn compute_rest_merge(sealed: &[SegmentMeta], policy: &MergePolicy) -> Option<Vec<u32>> {
    if !policy.tiers {
        return None;
    }
    let mut free: Vec<&SegmentMeta> = sealed
        .iter()
        .filter(|s| !s.busy && s.live < policy.max_rows)
        .collect();
    free.sort_by_key(|s| (s.live, s.id));
    (0..free.len()).find_map(|start| {
        let mut total = free[start].live;
        let mut group = vec![free[start].id];
        for s in &free[start + 1..] {
            if total.saturating_mul(REST_MERGE_SHARE) < s.live
                || total.saturating_add(s.live) > policy.max_rows
            {
                break;
            }
            total += s.live;
            group.push(s.id);
        }
        (group.len() >= 2).then_some(group)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u32, rows: usize, live: usize) -> SegmentMeta {
        SegmentMeta {
            id,
            rows,
            live,
            busy: false,
        }
    }

    fn policy() -> MergePolicy {
        MergePolicy {
            base_rows: 100,
            max_rows: 10_000,
            deleted_fraction: 0.2,
            tiers: true,
        }
    }

    /// Applies the policy until it settles, merging as a shard would (deleted rows dropped).
    fn settle(mut segs: Vec<SegmentMeta>, p: &MergePolicy) -> (Vec<SegmentMeta>, usize) {
        let mut next = 1000;
        let mut merges = 0;
        while let Some(ids) = compute_merge_candidates(&segs, p) {
            let live: usize = segs
                .iter()
                .filter(|s| ids.contains(&s.id))
                .map(|s| s.live)
                .sum();
            segs.retain(|s| !ids.contains(&s.id));
            segs.push(meta(next, live, live));
            next += 1;
            merges += 1;
            assert!(merges < 10_000, "the policy does not settle");
        }
        (segs, merges)
    }

    #[test]
    fn tiers_follow_powers_of_two_of_the_base() {
        let p = policy();
        assert_eq!(
            [0, 1, 99, 100, 199, 200, 399, 400, 1600].map(|n| p.tier(n)),
            [0, 0, 0, 0, 0, 1, 1, 2, 4]
        );
    }

    #[test]
    fn nothing_to_do_on_one_segment_per_tier() {
        let segs = [meta(1, 100, 100), meta(2, 250, 250), meta(3, 800, 790)];
        assert_eq!(compute_merge_candidates(&segs, &policy()), None);
        assert_eq!(compute_merge_candidates(&[], &policy()), None);
    }

    #[test]
    fn lowest_tier_with_two_segments_merges_first() {
        let segs = [
            meta(1, 400, 400),
            meta(2, 450, 450),
            meta(3, 100, 100),
            meta(4, 120, 120),
            meta(5, 30, 30),
        ];
        assert_eq!(
            compute_merge_candidates(&segs, &policy()),
            Some(vec![3, 4, 5])
        );
    }

    #[test]
    fn busy_and_full_segments_are_never_chosen() {
        let mut busy = meta(2, 100, 100);
        busy.busy = true;
        assert_eq!(
            compute_merge_candidates(&[meta(1, 100, 100), busy], &policy()),
            None
        );
        let p = MergePolicy {
            max_rows: 500,
            ..policy()
        };
        // Both at the cap: left alone. Two that would exceed it together: not merged either.
        assert_eq!(
            compute_merge_candidates(&[meta(1, 500, 500), meta(2, 600, 600)], &p),
            None
        );
        assert_eq!(
            compute_merge_candidates(&[meta(1, 300, 300), meta(2, 300, 300)], &p),
            None
        );
    }

    #[test]
    fn dirty_segments_are_purged_alone() {
        let segs = [meta(1, 1000, 700), meta(2, 100, 100)];
        assert_eq!(compute_merge_candidates(&segs, &policy()), Some(vec![1]));
        // At most the fraction deleted: clean.
        assert_eq!(
            compute_merge_candidates(&[meta(1, 1000, 800)], &policy()),
            None
        );
        // Without tiers, only purging happens.
        let p = MergePolicy {
            tiers: false,
            ..policy()
        };
        let small = [meta(1, 100, 100), meta(2, 100, 100)];
        assert_eq!(compute_merge_candidates(&small, &p), None);
        assert_eq!(
            compute_merge_candidates(&[meta(1, 100, 100), meta(2, 100, 50)], &p),
            Some(vec![2])
        );
    }

    #[test]
    fn a_bulk_load_ends_in_log_many_segments() {
        let p = policy();
        for seals in [1usize, 2, 3, 7, 8, 20, 64, 99] {
            // Seal one segment at a time and let the policy run after each, as a shard does.
            let mut segs = Vec::new();
            let mut merges = 0;
            for i in 0..seals {
                segs.push(meta(i as u32, 100, 100));
                let (s, m) = settle(segs, &p);
                segs = s;
                merges += m;
            }
            let bound = (seals as f64).log2().floor() as usize + 1;
            assert!(
                segs.len() <= bound,
                "{seals} seals: {} segments",
                segs.len()
            );
            assert_eq!(segs.len(), seals.count_ones() as usize, "{seals} seals");
            assert_eq!(segs.iter().map(|s| s.live).sum::<usize>(), seals * 100);
            // Each row is rewritten at most once per tier.
            assert!(merges <= seals, "{seals} seals: {merges} merges");
        }
    }

    #[test]
    fn at_rest_the_smaller_segments_join_a_larger_one_they_fill_a_tenth_of() {
        let p = MergePolicy {
            max_rows: 100_000,
            ..policy()
        };
        // A backlog built in batches: one segment per tier, all merged at rest.
        let batches = [
            meta(1, 5500, 5500),
            meta(2, 3000, 3000),
            meta(3, 1500, 1500),
        ];
        assert_eq!(compute_merge_candidates(&batches, &p), None);
        assert_eq!(compute_rest_merge(&batches, &p), Some(vec![3, 2, 1]));
        // A binary counter's segments too.
        let binary = [meta(1, 400, 400), meta(2, 200, 200), meta(3, 100, 100)];
        assert_eq!(compute_rest_merge(&binary, &p), Some(vec![3, 2, 1]));
        // A load's tail a ninth of its first merge (1M as 900k + 100k).
        let tail = [meta(1, 9000, 9000), meta(2, 1000, 1000)];
        assert_eq!(compute_rest_merge(&tail, &p), Some(vec![2, 1]));
        // Too small to be worth rewriting the larger ones: left alone, from any start.
        let sparse = [meta(1, 8000, 8000), meta(2, 700, 700), meta(3, 50, 50)];
        assert_eq!(compute_rest_merge(&sparse, &p), None);
        // The smallest alone cannot join, the next two can.
        let later = [meta(1, 50, 50), meta(2, 1000, 1000), meta(3, 3900, 3900)];
        assert_eq!(compute_rest_merge(&later, &p), Some(vec![2, 3]));
        // Busy, over the cap together, or tiers off: not merged.
        let mut busy = meta(2, 3000, 3000);
        busy.busy = true;
        assert_eq!(compute_rest_merge(&[meta(1, 5500, 5500), busy], &p), None);
        let capped = MergePolicy {
            max_rows: 8000,
            ..policy()
        };
        assert_eq!(compute_rest_merge(&batches, &capped), Some(vec![3, 2]));
        let off = MergePolicy { tiers: false, ..p };
        assert_eq!(compute_rest_merge(&batches, &off), None);
        // Settles: every merge leaves fewer segments, and the rows are kept.
        let mut segs: Vec<SegmentMeta> = (1..=12)
            .map(|i| meta(i, 100 * i as usize, 100 * i as usize))
            .collect();
        let mut next = 100;
        while let Some(ids) = compute_rest_merge(&segs, &p) {
            let live: usize = segs
                .iter()
                .filter(|s| ids.contains(&s.id))
                .map(|s| s.live)
                .sum();
            let before = segs.len();
            segs.retain(|s| !ids.contains(&s.id));
            segs.push(meta(next, live, live));
            next += 1;
            assert!(segs.len() < before);
        }
        assert_eq!(segs.iter().map(|s| s.live).sum::<usize>(), 7800);
        assert_eq!(segs.len(), 1, "{segs:?}");
    }

    #[test]
    fn small_idle_seals_climb_into_the_tiers() {
        // Many seals below the base (idle seals of trickling writes) merge into larger segments.
        let p = policy();
        let mut segs = Vec::new();
        for i in 0..50 {
            segs.push(meta(i, 37, 37));
            segs = settle(segs, &p).0;
        }
        assert!(segs.len() <= 5, "{segs:?}");
        assert_eq!(segs.iter().map(|s| s.live).sum::<usize>(), 50 * 37);
    }
}
