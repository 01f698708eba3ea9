//! How a search picks `nprobe` and `rerank` in each sealed segment: what the caller fixed, and
//! for the rest the segment's own [`Calibration`] at the recall the caller targets.
//!
//! Precedence, per coordinate: an explicit `nprobe`/`rerank` always wins; otherwise the cheapest
//! point of the segment's calibration curve that reaches `recall_target` (default
//! [`DEFAULT_RECALL_TARGET`]) given the fixed coordinate; a segment without a calibration (a file
//! written before calibration existed) uses the request's fallback values. Segments differ in
//! size and `nlist`, so each gets its own choice: a recall target means the same in all of them,
//! a fixed `nprobe` does not.

use super::calibrate::{Calibration, CurvePoint, DEFAULT_RECALL_TARGET};
use super::segment::{IvfSeg, SegBody, Segment};
use super::{Shard, ShardError};
use crate::index::ivfpq::SearchParams;
use std::sync::Arc;

/// A search's choice of IVF-PQ parameters (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tuning {
    /// Lists probed in every sealed segment; `None`: from each segment's calibration.
    pub nprobe: Option<usize>,
    /// Re-rank factor in every sealed segment; `None`: from each segment's calibration.
    pub rerank: Option<usize>,
    /// Recall@10 the calibrated choices aim for, in `(0, 1]`; `None`: 0.95.
    pub recall_target: Option<f64>,
}

impl Tuning {
    /// Both parameters fixed: no calibration consulted (what [`Shard::search`] does).
    pub fn explicit(nprobe: usize, rerank: usize) -> Self {
        Tuning {
            nprobe: Some(nprobe),
            rerank: Some(rerank),
            recall_target: None,
        }
    }

    /// Refuses values out of range (nothing else can go wrong later).
    pub fn check(&self) -> Result<(), ShardError> {
        if self.nprobe == Some(0) {
            return Err(ShardError::Param("nprobe must be at least 1".into()));
        }
        if let Some(t) = self.recall_target
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(ShardError::Param(format!(
                "recall_target = {t} must be in (0, 1]"
            )));
        }
        Ok(())
    }

    /// The target the calibrated choices aim for.
    pub fn target(&self) -> f64 {
        self.recall_target.unwrap_or(DEFAULT_RECALL_TARGET)
    }

    /// The parameters to search `seg` with; `fallback` serves a segment without calibration.
    pub(super) fn params_for(&self, seg: &IvfSeg, fallback: SearchParams) -> SearchParams {
        if let (Some(nprobe), Some(rerank)) = (self.nprobe, self.rerank) {
            return SearchParams { nprobe, rerank };
        }
        let chosen = seg
            .calibration
            .as_deref()
            .and_then(|c| c.choose(self.target(), self.nprobe, self.rerank));
        match chosen {
            Some(p) => SearchParams {
                nprobe: self.nprobe.unwrap_or(p.nprobe),
                rerank: self.rerank.unwrap_or(p.rerank),
            },
            None => SearchParams {
                nprobe: self.nprobe.unwrap_or(fallback.nprobe),
                rerank: self.rerank.unwrap_or(fallback.rerank),
            },
        }
    }
}

/// One sealed segment's calibration as stats report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentCalibration {
    /// The segment.
    pub segment: u32,
    /// Rows stored in it.
    pub rows: usize,
    /// Its inverted lists.
    pub nlist: usize,
    /// The choice at the default target (0.95): `nprobe`, `rerank`, and the recall measured there.
    pub chosen: CurvePoint,
    /// The whole measured curve (shared, not copied).
    pub calibration: Arc<Calibration>,
}

impl SegmentCalibration {
    /// The choice this segment makes for `target` (the REST layer reports it at the collection's
    /// own target).
    pub fn at(&self, target: f64) -> Option<CurvePoint> {
        self.calibration.choose(target, None, None)
    }
}

impl Shard {
    /// Per sealed, calibrated segment: the calibrated choice at the default target and the curve.
    pub fn calibrations(&self) -> Vec<SegmentCalibration> {
        calibrations_of(&super::read(&self.inner.state).segments)
    }
}

/// What one search will touch in a shard under a [`Tuning`]: the router's cost estimate uses it
/// to choose between the async worker and the blocking pool, so it must follow the calibrated
/// choices (a recall target often probes three times the uncalibrated `nprobe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchWork {
    /// Rows of the mutable (flat) segments, scanned exactly.
    pub flat_rows: usize,
    /// PQ codes scanned over every sealed segment (rows × nprobe / nlist).
    pub scanned_codes: usize,
    /// The largest re-rank factor any sealed segment uses.
    pub rerank: usize,
}

/// The segments one search reads and the parameters each sealed one is searched with, resolved
/// once: the router sizes the search from it ([`SearchPlan::work`]) and then runs the search on
/// it ([`Shard::search_planned`]), so each segment's calibration is consulted once a query and
/// the estimate describes the very segments searched (a seal or merge in between cannot make
/// them differ).
#[derive(Debug, Clone)]
pub struct SearchPlan {
    /// The segments as they were when the plan was made.
    pub(super) segments: Vec<Segment>,
    /// Per segment, its IVF-PQ parameters (unused for flat segments).
    pub(super) params: Vec<SearchParams>,
    /// The recall target the parameters were chosen for; a filtered search widens `nprobe`
    /// by what the segment measured it needs to keep it.
    pub(super) target: f64,
}

impl SearchPlan {
    /// What the search touches.
    pub fn work(&self) -> SearchWork {
        let mut work = SearchWork::default();
        for (seg, p) in self.segments.iter().zip(&self.params) {
            match &seg.body {
                SegBody::Flat(_) => work.flat_rows += seg.live_count,
                SegBody::Ivf(ivf) => {
                    let nlist = ivf.index.nlist().max(1);
                    work.scanned_codes = work.scanned_codes.saturating_add(
                        ivf.index.entries().saturating_mul(p.nprobe.min(nlist)) / nlist,
                    );
                    work.rerank = work.rerank.max(p.rerank);
                }
            }
        }
        work
    }
}

impl Shard {
    /// The plan of a search with `tuning` over the segments as they are now (`fallback` serves
    /// uncalibrated segments); refuses a tuning out of range.
    pub fn plan_search(
        &self,
        tuning: &Tuning,
        fallback: SearchParams,
    ) -> Result<SearchPlan, ShardError> {
        tuning.check()?;
        let segments = self.view();
        let params = segments
            .iter()
            .map(|seg| match &seg.body {
                SegBody::Ivf(ivf) => tuning.params_for(ivf, fallback),
                SegBody::Flat(_) => fallback,
            })
            .collect();
        Ok(SearchPlan {
            segments,
            params,
            target: tuning.target(),
        })
    }
}

/// [`Shard::calibrations`] of a segment list.
pub(super) fn calibrations_of(segments: &[Segment]) -> Vec<SegmentCalibration> {
    segments
        .iter()
        .filter_map(|s| match &s.body {
            SegBody::Ivf(ivf) => {
                let c = ivf.calibration.clone()?;
                Some(SegmentCalibration {
                    segment: s.id,
                    rows: s.rows,
                    nlist: ivf.index.nlist(),
                    chosen: c.choose(DEFAULT_RECALL_TARGET, None, None)?,
                    calibration: c,
                })
            }
            SegBody::Flat(_) => None,
        })
        .collect()
}
