//! Point reads that are not searches: by id ([`Shard::get`]), counts, id-ordered scrolls, and
//! the shard's counters ([`ShardStats`]) and applied position.

use super::planner::{self, allowed};
use super::segment::SegBody;
use super::{CompiledFilter, Loc, Payload, PointId, SegmentCalibration, Shard, read, tuning};
use crate::index::RowSet;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A point as `get` and `scroll` return it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The id.
    pub id: PointId,
    /// The payload, when asked for and present.
    pub payload: Option<Arc<Payload>>,
    /// The stored vector (normalised for cosine), when asked for.
    pub vector: Option<Vec<f32>>,
}

/// Counters for `/metrics` and collection info.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShardStats {
    /// Live points.
    pub points: usize,
    /// Segments, mutable one included.
    pub segments: usize,
    /// Segments with a built IVF-PQ index.
    pub indexed_segments: usize,
    /// Live points in IVF-PQ segments.
    pub indexed_points: usize,
    /// Index builds in progress: seals and merges.
    pub building: usize,
    /// Last applied log index.
    pub last_applied: u64,
    /// Rows stored in segments, live or deleted (what disk and memory pay for).
    pub stored_rows: usize,
    /// Deleted (tombstoned) rows still stored, which a compaction would drop.
    pub deleted_rows: usize,
    /// Compactions in progress.
    pub compacting: usize,
    /// Rows the running compactions are rewriting (their progress unit).
    pub compacting_rows: usize,
    /// Compactions finished since the shard was loaded.
    pub compactions: u64,
    /// Deleted rows dropped by compactions since the shard was loaded.
    pub compacted_deleted_rows: u64,
    /// Per calibrated segment: the choice at the default recall target and the measured curve.
    pub calibrations: Vec<SegmentCalibration>,
    /// Bytes of indexed values' codes regrouped for filtered searches (see `subsets`).
    pub filter_subset_bytes: usize,
    /// Such regroupings queued or running on the build pool.
    pub filter_subsets_being_made: usize,
}

impl Shard {
    /// The last log index applied.
    pub fn last_applied(&self) -> u64 {
        read(&self.inner.state).last_applied
    }

    /// The version recorded for `id` by versioned writes (0 if none touched it).
    pub fn version(&self, id: &PointId) -> u64 {
        read(&self.inner.state)
            .versions
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// The points with these ids that exist, in the order asked (each id once).
    pub fn get(&self, ids: &[PointId], with_payload: bool, with_vector: bool) -> Vec<Record> {
        let state = read(&self.inner.state);
        let mut seen = HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| {
                let loc = *state.ids.get(id)?;
                state.record(*id, loc, with_payload, with_vector)
            })
            .collect()
    }

    /// The live points whose vector was deleted ([`ShardCommand::DeleteVectors`](super::ShardCommand::DeleteVectors)).
    pub fn vectorless_points(&self) -> Vec<PointId> {
        let state = read(&self.inner.state);
        state
            .segments
            .iter()
            .filter(|s| !s.vectorless.is_empty())
            .flat_map(|s| {
                s.vectorless
                    .iter()
                    .filter(|r| s.live.contains(*r))
                    .filter_map(|r| s.body.point(r))
            })
            .collect()
    }

    /// Live points passing the filter.
    pub fn count(&self, filter: Option<&CompiledFilter>) -> usize {
        match filter {
            Some(f) if !f.is_empty() => self
                .view()
                .iter()
                .map(|s| planner::matches(s, Some(f)).count())
                .sum(),
            _ => read(&self.inner.state).ids.len(),
        }
    }

    /// Up to `limit` points with id ≥ `offset` passing the filter, in id order, and the id to
    /// continue from (if any point remains).
    pub fn scroll(
        &self,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<&CompiledFilter>,
        with_payload: bool,
        with_vector: bool,
    ) -> (Vec<Record>, Option<PointId>) {
        let state = read(&self.inner.state);
        let filter = filter.filter(|f| !f.is_empty());
        // The matching rows of each segment, through the payload indexes.
        let sets: HashMap<u32, RowSet> = match filter {
            Some(f) => state
                .segments
                .iter()
                .map(|s| (s.id, allowed(s, Some(f))))
                .collect(),
            None => HashMap::new(),
        };
        let passes = |loc: &Loc| {
            filter.is_none()
                || sets
                    .get(&loc.seg)
                    .is_some_and(|s| s.contains(loc.row as usize))
        };
        let matching: usize = sets.values().map(RowSet::count).sum();
        if filter.is_some() && matching.saturating_mul(8) < state.ids.len() {
            // Few matches: sort their ids instead of walking every id.
            let mut ids: Vec<(PointId, Loc)> = state
                .segments
                .iter()
                .flat_map(|seg| {
                    let set = sets.get(&seg.id);
                    set.into_iter().flat_map(move |s| {
                        s.iter().filter_map(move |row| {
                            let id = seg.body.point(row)?;
                            (offset.is_none_or(|o| id >= o)).then_some((
                                id,
                                Loc {
                                    seg: seg.id,
                                    row: row as u32,
                                },
                            ))
                        })
                    })
                })
                .collect();
            ids.sort_unstable_by_key(|p| p.0);
            let next = ids.get(limit).map(|p| p.0);
            let out = ids
                .into_iter()
                .take(limit)
                .filter_map(|(id, loc)| state.record(id, loc, with_payload, with_vector))
                .collect();
            return (out, next);
        }
        let mut out = Vec::new();
        let range = match offset {
            Some(o) => state.ids.range(o..),
            None => state.ids.range(..),
        };
        for (id, loc) in range {
            if !passes(loc) {
                continue;
            }
            if out.len() == limit {
                return (out, Some(*id));
            }
            if let Some(r) = state.record(*id, *loc, with_payload, with_vector) {
                out.push(r);
            }
        }
        (out, None)
    }

    /// Counts for metrics and collection info.
    pub fn stats(&self) -> ShardStats {
        let state = read(&self.inner.state);
        let mut s = ShardStats {
            points: state.ids.len(),
            segments: state.segments.len(),
            building: self.inner.building.load(Ordering::SeqCst),
            last_applied: state.last_applied,
            compacting: self.inner.compacting.load(Ordering::SeqCst),
            compacting_rows: self.inner.compacting_rows.load(Ordering::SeqCst),
            compactions: self.inner.compactions.load(Ordering::SeqCst),
            compacted_deleted_rows: self.inner.compacted_deleted_rows.load(Ordering::SeqCst),
            calibrations: tuning::calibrations_of(&state.segments),
            ..ShardStats::default()
        };
        for seg in &state.segments {
            s.stored_rows += seg.rows;
            s.deleted_rows += seg.rows - seg.live_count;
            if seg.is_indexed() {
                s.indexed_segments += 1;
                s.indexed_points += seg.live_count;
            }
            if let SegBody::Ivf(ivf) = &seg.body {
                let (bytes, being_made) = ivf.subsets.usage();
                s.filter_subset_bytes += bytes;
                s.filter_subsets_being_made += being_made;
            }
        }
        s
    }
}
