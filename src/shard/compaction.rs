//! Compaction: rewriting sealed segments so deleted rows stop costing disk, memory and scan time,
//! and small segments stop costing a probe each.
//!
//! **Policy** ([`CompactionConfig`], [`pick`]): among sealed segments that no other job holds,
//! a segment is *dirty* when more than `deleted_fraction` of its rows are tombstoned, and *small*
//! when it has fewer live rows than `small_fraction × seal_threshold`. A run of dirty or small
//! segments (up to `max_rows` live rows) is compacted when it holds a dirty segment or at least
//! two small ones; one clean small segment alone is left as it is, so the policy settles.
//!
//! **Job** ([`super::Shard::maybe_compact`]): under the write lock the chosen segments are marked
//! busy and cloned (their rows are immutable; their tombstone sets are copy-on-write snapshots).
//! Outside the lock, on a background thread, their live rows are gathered and a new IVF-PQ segment
//! is built (rayon inside the build) and written to its file. Back under the write lock the new
//! segment replaces the old ones in one step, and every row is live in it only if it is **still**
//! live in the old segment: a delete or an update that landed on an old segment during the merge
//! is carried over, and nothing deleted is resurrected. Writes meanwhile go to the mutable segment
//! and are untouched. The old segment files are deleted once the last query or snapshot holding
//! them lets go. One compaction runs at a time per shard; another is considered when it ends.

use super::segment::{Rows, SegBody, Segment};
use super::{IvfSeg, Loc, Shard, State};
use crate::index::RowSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// When a shard compacts its sealed segments.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CompactionConfig {
    /// Compact at all (background, never blocking writes or searches).
    pub enabled: bool,
    /// A sealed segment with more than this fraction of its rows deleted is rewritten.
    pub deleted_fraction: f64,
    /// Sealed segments with fewer live rows than this fraction of `seal_threshold` are merged
    /// with their small neighbours.
    pub small_fraction: f64,
    /// Most live rows one compaction writes (0 = 4 × `seal_threshold`).
    pub max_rows: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            deleted_fraction: 0.2,
            small_fraction: 0.5,
            max_rows: 0,
        }
    }
}

fn is_dirty(seg: &Segment, cfg: &CompactionConfig) -> bool {
    seg.rows > 0 && (seg.rows - seg.live_count) as f64 > cfg.deleted_fraction * seg.rows as f64
}

/// The ids of the sealed segments to compact next, if the policy finds work. `segments` is the
/// shard's list, the mutable segment last (never chosen).
pub(super) fn pick(
    segments: &[Segment],
    cfg: &CompactionConfig,
    seal_threshold: usize,
) -> Option<Vec<u32>> {
    if !cfg.enabled {
        return None;
    }
    let sealed = &segments[..segments.len().saturating_sub(1)];
    let small_rows = (cfg.small_fraction * seal_threshold as f64) as usize;
    let max_rows = match cfg.max_rows {
        0 if seal_threshold == 0 => usize::MAX,
        0 => seal_threshold.saturating_mul(4),
        m => m,
    };
    let mut group = Vec::new();
    let mut total = 0usize;
    let mut dirty = false;
    for seg in sealed.iter().filter(|s| !s.busy) {
        let d = is_dirty(seg, cfg);
        if !d && seg.live_count >= small_rows {
            continue;
        }
        if !group.is_empty() && total.saturating_add(seg.live_count) > max_rows {
            break;
        }
        group.push(seg.id);
        total += seg.live_count;
        dirty |= d;
    }
    (dirty || group.len() >= 2).then_some(group)
}

impl Shard {
    /// Starts a compaction if the policy finds work and none is running. Called with the write
    /// lock held, after commands that delete rows and after jobs end.
    pub(super) fn maybe_compact(&self, state: &mut State) {
        let config = &self.inner.config;
        if self.inner.compacting.load(Ordering::SeqCst) > 0 {
            return;
        }
        let Some(ids) = pick(&state.segments, &config.compaction, config.seal_threshold) else {
            return;
        };
        let new_id = state.next_segment;
        state.next_segment += 1;
        let mut sources = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(seg) = state.segment_mut(*id) {
                seg.busy = true;
                sources.push(seg.clone());
            }
        }
        let rows: usize = sources.iter().map(|s| s.rows).sum();
        self.inner.compacting.fetch_add(1, Ordering::SeqCst);
        self.inner.compacting_rows.fetch_add(rows, Ordering::SeqCst);
        self.start_job();
        if self.inner.background {
            let shard = self.clone();
            std::thread::spawn(move || shard.run_compaction(new_id, sources, None));
        } else {
            self.run_compaction(new_id, sources, Some(state));
        }
    }

    /// Merges the live rows of `sources` into segment `new_id` and swaps it in.
    fn run_compaction(&self, new_id: u32, sources: Vec<Segment>, locked: Option<&mut State>) {
        let config = &self.inner.config;
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
        } else if let Some(index) = self.build_index(&rows) {
            IvfSeg::new(index, rows.points, rows.payloads)
                .map(|seg| SegBody::Ivf(Arc::new(self.persist(new_id, seg))))
        } else {
            rows.into_chunks(config.dim, config.metric)
                .ok()
                .map(SegBody::Flat)
        };
        let stored: usize = sources.iter().map(|s| s.rows).sum();
        let swap = |state: &mut State| {
            // Tombstones as they are now, not as they were when the rows were gathered.
            let current: HashMap<u32, Arc<RowSet>> = sources
                .iter()
                .filter_map(|s| state.segment(s.id).map(|c| (s.id, Arc::clone(&c.live))))
                .collect();
            let mut live = RowSet::new(n);
            let mut moved = Vec::new();
            for (j, (sid, row)) in origin.iter().enumerate() {
                if current.get(sid).is_some_and(|l| l.contains(*row as usize)) {
                    live.insert(j);
                    moved.push(j);
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
            live_count: live,
            rows,
            busy: false,
        }
    }

    #[test]
    fn policy_picks_dirty_and_runs_of_small_segments() {
        let cfg = CompactionConfig::default();
        let mutable = seg(99, 10, 10);
        // Clean, full segments: nothing to do.
        assert_eq!(
            pick(
                &[seg(1, 1000, 1000), seg(2, 1000, 950), mutable.clone()],
                &cfg,
                1000
            ),
            None
        );
        // 30% deleted: rewritten alone.
        assert_eq!(
            pick(
                &[seg(1, 1000, 700), seg(2, 1000, 1000), mutable.clone()],
                &cfg,
                1000
            ),
            Some(vec![1])
        );
        // One small clean segment alone stays; two are merged.
        assert_eq!(
            pick(
                &[seg(1, 300, 300), seg(2, 1000, 1000), mutable.clone()],
                &cfg,
                1000
            ),
            None
        );
        assert_eq!(
            pick(
                &[
                    seg(1, 300, 300),
                    seg(2, 1000, 1000),
                    seg(3, 200, 200),
                    mutable.clone()
                ],
                &cfg,
                1000
            ),
            Some(vec![1, 3])
        );
        // The mutable segment and busy segments are never chosen.
        let mut busy = seg(1, 1000, 100);
        busy.busy = true;
        assert_eq!(pick(&[busy, seg(5, 10, 0)], &cfg, 1000), None);
        // Disabled: nothing.
        let off = CompactionConfig {
            enabled: false,
            ..CompactionConfig::default()
        };
        assert_eq!(pick(&[seg(1, 1000, 0), mutable], &off, 1000), None);
    }

    #[test]
    fn config_without_compaction_loads_with_defaults() {
        let old = r#"{"dim":4,"metric":"l2","seal_threshold":10,"nlist":2,"pq_m":2,"pq_bits":8,"seed":1}"#;
        let c: crate::shard::ShardConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c.compaction, CompactionConfig::default());
        let partial: CompactionConfig =
            serde_json::from_str(r#"{"deleted_fraction":0.5}"#).unwrap();
        assert_eq!(partial.deleted_fraction, 0.5);
        assert!(partial.enabled);
    }
}
