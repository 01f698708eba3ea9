//! Compaction: merging sealed segments so a shard holds `O(log N)` of them, and rewriting them
//! so deleted rows stop costing disk, memory and scan time.
//!
//! **Policy**: [`super::merge_policy`], a pure function over segment metadata (log-structured
//! tiers of `seal_threshold × 2^t` live rows; a segment with more than `deleted_fraction` of its
//! rows deleted is rewritten alone). [`CompactionConfig`] holds its settings, with the idle
//! sealing delay ([`super::seal`]).
//!
//! **Job** ([`super::Shard::maybe_compact`]): under the write lock the chosen segments are marked
//! busy and cloned (their rows are immutable; their tombstone sets are copy-on-write snapshots).
//! Outside the lock, on the build pool ([`super::build_pool`]), their live rows are gathered and a
//! new IVF-PQ segment is built (rayon inside the build, `nlist` for its size), calibrated and
//! written to its file. Back under the write lock the new segment replaces the old ones in one
//! step, and every row is live in it only if it is **still** live in the old segment: a delete or
//! an update that landed on an old segment during the merge is carried over, and nothing deleted
//! is resurrected. Writes meanwhile go to the mutable segment and are untouched. Searches hold
//! their own clone of the segment list, so a search running across the swap sees either the old
//! segments or the new one, never both or neither. The old segment files are deleted once the
//! last query or snapshot holding them lets go. One merge runs at a time per shard; the policy is
//! asked again when it (or any build) ends.

use super::merge_policy::{MergePolicy, SegmentMeta, compute_merge_candidates, compute_rest_merge};
use super::segment::{Rows, SegBody, Segment};
use super::{Loc, Shard, State};
use crate::index::RowSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Default cap on a merged segment's live rows: past it, a segment is only purged, never merged
/// (a rebuild of 4M rows already takes minutes; one IVF segment searches that many well).
pub const DEFAULT_MAX_SEGMENT_ROWS: usize = 1 << 22;

/// How a shard maintains its segments in the background.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CompactionConfig {
    /// Merge and purge at all (background, never blocking writes or searches).
    pub enabled: bool,
    /// A sealed segment with more than this fraction of its rows deleted is rewritten.
    pub deleted_fraction: f64,
    /// Most live rows one merge writes (0 = [`DEFAULT_MAX_SEGMENT_ROWS`]); larger segments are
    /// only purged.
    pub max_rows: usize,
    /// Merge sealed segments of the same size tier (off: only purge deleted rows).
    pub tiers: bool,
    /// Seal the mutable segment after this long without writes, so a load leaves no unindexed
    /// tail (0 = only at `seal_threshold`). Local to each replica: see [`super::seal`].
    pub idle_seal_ms: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            deleted_fraction: 0.2,
            max_rows: 0,
            tiers: true,
            idle_seal_ms: super::seal::DEFAULT_IDLE_SEAL_MS,
        }
    }
}

impl CompactionConfig {
    /// The merge policy these settings give a shard sealing at `seal_threshold`.
    pub fn policy(&self, seal_threshold: usize) -> MergePolicy {
        MergePolicy {
            base_rows: seal_threshold.max(super::MIN_SEAL_THRESHOLD),
            max_rows: match self.max_rows {
                0 => DEFAULT_MAX_SEGMENT_ROWS,
                m => m,
            },
            deleted_fraction: self.deleted_fraction,
            tiers: self.tiers,
        }
    }
}

/// The ids of the sealed segments to compact next, if the policy finds work. `segments` is the
/// shard's list, the mutable segment last (never chosen); `at_rest`: the shard has seen no
/// write for its idle-seal delay, so the policy's merges at rest apply too.
pub(super) fn pick(
    segments: &[Segment],
    cfg: &CompactionConfig,
    seal_threshold: usize,
    at_rest: bool,
) -> Option<Vec<u32>> {
    if !cfg.enabled {
        return None;
    }
    let sealed: Vec<SegmentMeta> = segments[..segments.len().saturating_sub(1)]
        .iter()
        .map(|s| SegmentMeta {
            id: s.id,
            rows: s.rows,
            live: s.live_count,
            busy: s.busy,
        })
        .collect();
    let policy = cfg.policy(seal_threshold);
    compute_merge_candidates(&sealed, &policy).or_else(|| {
        at_rest
            .then(|| compute_rest_merge(&sealed, &policy))
            .flatten()
    })
}

impl Shard {
    /// The merge the policy would start next on `segments` ([`pick`] under this shard's
    /// settings).
    pub(super) fn next_merge(&self, segments: &[Segment], at_rest: bool) -> Option<Vec<u32>> {
        let config = &self.inner.config;
        pick(
            segments,
            &config.compaction,
            config.effective_seal_threshold(),
            at_rest,
        )
    }

    /// Starts a compaction if the policy finds work and none is running. Called with the write
    /// lock held, after commands that delete rows and after jobs end.
    pub(super) fn maybe_compact(&self, state: &mut State) {
        if self.inner.compacting.load(Ordering::SeqCst) > 0 {
            return;
        }
        let Some(ids) = self.next_merge(&state.segments, self.at_rest()) else {
            return;
        };
        let (new_id, sources) = self.begin_merge(state, &ids);
        if self.inner.background {
            let shard = self.clone();
            super::build_pool::submit(move || shard.run_compaction(new_id, sources, None));
        } else {
            self.run_compaction(new_id, sources, Some(state));
        }
    }

    /// Books a merge of the segments `ids` into a new segment: marks them busy and counts the
    /// job. Returns the new segment's id and copies of the sources (their rows are immutable;
    /// their tombstones copy-on-write snapshots), for [`Shard::run_compaction`].
    pub(super) fn begin_merge(&self, state: &mut State, ids: &[u32]) -> (u32, Vec<Segment>) {
        let new_id = state.next_segment;
        state.next_segment += 1;
        let mut sources = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(seg) = state.segment_mut(*id) {
                seg.busy = true;
                sources.push(seg.clone());
            }
        }
        let rows: usize = sources.iter().map(|s| s.rows).sum();
        self.inner.job_log.started(
            super::JobKind::Merge,
            new_id,
            sources.iter().map(|s| (s.id, s.live_count)).collect(),
            rows,
        );
        self.inner.compacting.fetch_add(1, Ordering::SeqCst);
        self.inner.building.fetch_add(1, Ordering::SeqCst);
        self.inner.compacting_rows.fetch_add(rows, Ordering::SeqCst);
        self.start_job();
        (new_id, sources)
    }

    /// Merges the live rows of `sources` into segment `new_id` and swaps it in.
    pub(super) fn run_compaction(
        &self,
        new_id: u32,
        sources: Vec<Segment>,
        locked: Option<&mut State>,
    ) {
        let config = &self.inner.config;
        // The merged segment's file stores the indexes of the schema as it is now; one changed
        // meanwhile is brought up to date when the segment is swapped in.
        let schema = match &locked {
            Some(state) => state.schema.clone(),
            None => super::read(&self.inner.state).schema.clone(),
        };
        // Gather the rows live as of the plan; `origin` remembers where each came from.
        let mut rows = Rows::default();
        let mut origin: Vec<(u32, u32)> = Vec::new();
        for seg in &sources {
            for row in seg.live.iter() {
                let (Some(point), Some(vector)) = (seg.body.point(row), seg.body.vector(row))
                else {
                    continue;
                };
                rows.vectors.extend_from_slice(vector);
                rows.points.push(point);
                rows.payloads.push(seg.body.payload(row).cloned());
                origin.push((seg.id, row as u32));
            }
        }
        #[cfg(test)]
        super::pause_at(&self.inner.hooks.compaction);
        let n = rows.len();
        let body = if n == 0 {
            None
        } else {
            match self.build_segment(new_id, rows, &schema, super::JobKind::Merge) {
                Ok(seg) => seg.map(|seg| SegBody::Ivf(Arc::new(seg))),
                Err(rows) => rows
                    .into_chunks(config.dim, config.metric)
                    .ok()
                    .map(SegBody::Flat),
            }
        };
        let stored: usize = sources.iter().map(|s| s.rows).sum();
        let swap = |state: &mut State| {
            // Tombstones and deleted vectors as they are now, not as they were when the rows
            // were gathered.
            let current: HashMap<u32, (Arc<RowSet>, Arc<RowSet>)> = sources
                .iter()
                .filter_map(|s| {
                    state
                        .segment(s.id)
                        .map(|c| (s.id, (Arc::clone(&c.live), Arc::clone(&c.vectorless))))
                })
                .collect();
            let mut live = RowSet::new(n);
            let mut vectorless = RowSet::new(0);
            let mut moved = Vec::new();
            for (j, (sid, row)) in origin.iter().enumerate() {
                let Some((l, v)) = current.get(sid) else {
                    continue;
                };
                if l.contains(*row as usize) {
                    live.insert(j);
                    moved.push(j);
                    if v.contains(*row as usize) {
                        vectorless.resize(n);
                        vectorless.insert(j);
                    }
                }
            }
            let live_count = moved.len();
            let at = state
                .segments
                .iter()
                .position(|s| current.contains_key(&s.id))
                .unwrap_or(0);
            for seg in state
                .segments
                .iter()
                .filter(|s| current.contains_key(&s.id))
            {
                if let SegBody::Ivf(ivf) = &seg.body
                    && let Some(f) = &ivf.file
                {
                    f.retire();
                }
            }
            state.segments.retain(|s| !current.contains_key(&s.id));
            match body {
                Some(body) if live_count > 0 => {
                    for j in moved {
                        if let Some(point) = body.point(j) {
                            state.ids.insert(
                                point,
                                Loc {
                                    seg: new_id,
                                    row: j as u32,
                                },
                            );
                        }
                    }
                    let at = at.min(state.segments.len().saturating_sub(1));
                    let mut seg = Segment {
                        id: new_id,
                        body,
                        live: Arc::new(live),
                        live_count,
                        rows: n,
                        vectorless: Arc::new(vectorless),
                        busy: false,
                    };
                    super::payload_ops::sync_segment(&mut seg, &state.schema);
                    state.segments.insert(at, seg);
                }
                Some(SegBody::Ivf(ivf)) => {
                    if let Some(f) = &ivf.file {
                        f.retire();
                    }
                }
                _ => {}
            }
            self.inner.compactions.fetch_add(1, Ordering::SeqCst);
            self.inner
                .compacted_deleted_rows
                .fetch_add((stored - live_count) as u64, Ordering::SeqCst);
            self.inner.compacting.fetch_sub(1, Ordering::SeqCst);
            self.inner.building.fetch_sub(1, Ordering::SeqCst);
            self.inner
                .compacting_rows
                .fetch_sub(stored, Ordering::SeqCst);
            self.maybe_compact(state);
        };
        match locked {
            Some(state) => swap(state),
            None => swap(&mut super::write(&self.inner.state)),
        }
        // The old segments' files go when the last holder lets go: let go before reporting done.
        drop(sources);
        self.inner.job_log.finished(new_id);
        self.end_job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::segment::SegBody;

    fn seg(id: u32, rows: usize, live: usize) -> Segment {
        Segment {
            id,
            body: SegBody::Flat(Vec::new()),
            live: Arc::new(RowSet::new(0)),
            vectorless: Arc::new(RowSet::new(0)),
            live_count: live,
            rows,
            busy: false,
        }
    }

    #[test]
    fn the_shard_asks_the_policy_about_its_sealed_segments_only() {
        let cfg = CompactionConfig::default();
        // Two segments of one tier merge; the mutable segment (last) is never part of it.
        assert_eq!(
            pick(
                &[seg(1, 1000, 1000), seg(2, 1000, 990), seg(9, 1000, 1000)],
                &cfg,
                1000,
                false
            ),
            Some(vec![1, 2])
        );
        assert_eq!(
            pick(&[seg(1, 1000, 1000), seg(9, 1000, 1000)], &cfg, 1000, true),
            None
        );
        // 30% deleted: rewritten alone.
        assert_eq!(
            pick(
                &[seg(1, 1000, 700), seg(2, 4000, 4000), seg(9, 10, 10)],
                &cfg,
                1000,
                false
            ),
            Some(vec![1])
        );
        // Busy segments are never chosen; disabled: nothing.
        let mut busy = seg(1, 1000, 1000);
        busy.busy = true;
        assert_eq!(
            pick(&[busy, seg(2, 1000, 1000), seg(9, 0, 0)], &cfg, 1000, true),
            None
        );
        let off = CompactionConfig {
            enabled: false,
            ..CompactionConfig::default()
        };
        assert_eq!(
            pick(&[seg(1, 1000, 0), seg(9, 0, 0)], &off, 1000, true),
            None
        );
        // At rest, a smaller segment joins a larger one it fills a tenth of; not before.
        let rest = [seg(1, 4000, 4000), seg(2, 2000, 2000), seg(9, 0, 0)];
        assert_eq!(pick(&rest, &cfg, 1000, false), None);
        assert_eq!(pick(&rest, &cfg, 1000, true), Some(vec![2, 1]));
    }

    #[test]
    fn config_without_compaction_loads_with_defaults() {
        let old = r#"{"dim":4,"metric":"l2","seal_threshold":10,"nlist":2,"pq_m":2,"pq_bits":8,"seed":1}"#;
        let c: crate::shard::ShardConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c.compaction, CompactionConfig::default());
        // Written before tiers and idle sealing existed (with a field since removed).
        let partial: CompactionConfig =
            serde_json::from_str(r#"{"deleted_fraction":0.5,"small_fraction":0.5}"#).unwrap();
        assert_eq!(partial.deleted_fraction, 0.5);
        assert!(partial.enabled && partial.tiers);
        assert_eq!(
            partial.idle_seal_ms,
            crate::shard::seal::DEFAULT_IDLE_SEAL_MS
        );
    }
}
