//! Recall calibration: a built segment measures, on queries drawn from its own data, what recall
//! each `nprobe`/`rerank` gives, so a search can ask for a recall instead of knowing how to tune.
//!
//! **Measurement** ([`calibrate`]). Up to [`SAMPLE_QUERIES`] rows of the segment, spread evenly
//! over it from a seeded offset, are the queries. Each is *held out*: its own row is removed from
//! the exact answer and from the index's answer, so a query never finds itself (which would
//! inflate recall by one hit in `k`). The exact top-[`K`] among the other rows is the truth. For
//! each `nprobe` on a geometric grid (about 25% apart, up to `nlist`), one ADC search returning
//! `K × max rerank` candidates gives the recall of **every** `rerank` at once: re-ranking the
//! best `K × r` ADC candidates exactly keeps exactly the true neighbours among them, so
//! recall@K at `rerank r` is the share of the truth within the first `K × r` ADC candidates
//! (`rerank 0` returns the first `K` ADC candidates: the recall of `rerank 1`, cheaper).
//!
//! **The curve** is every measured `(nprobe, rerank, recall, cost)`. `cost` is a model of the
//! work per query (coarse distances, codes scanned, vectors re-ranked), deterministic so that
//! choices are reproducible. [`Calibration::choose`] picks the cheapest point reaching a target
//! (or the best recall there is); a fixed `nprobe` or `rerank` restricts it to points with that
//! value (the nearest measured one not above it). The whole curve is stored, so a per-query
//! target is answered without measuring again.
//!
//! The measurement costs `SAMPLE_QUERIES × rows` exact distances plus one search per query and
//! grid point, spread over rayon's threads: a few percent of the build it follows.

use crate::index::distance;
use crate::index::ivfpq::{IvfPqIndex, SearchParams};
use crate::index::{Metric, TopK};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Neighbours per calibration query: recall@10, as the benchmarks measure it.
pub const K: usize = 10;
/// Most queries a calibration draws from the segment.
pub const SAMPLE_QUERIES: usize = 256;
/// Fewest rows a segment needs to calibrate (fewer: the sample is too small to mean anything).
pub const MIN_ROWS: usize = 4 * K;
/// The recall a search targets when it names none.
pub const DEFAULT_RECALL_TARGET: f64 = 0.95;
/// Re-rank factors measured (0: ADC distances, no re-ranking).
pub const RERANKS: [usize; 9] = [0, 2, 3, 4, 6, 8, 12, 16, 24];
/// Format version of a stored [`Calibration`].
pub const CALIBRATION_VERSION: u32 = 1;

/// One measured point of the curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Lists probed.
    pub nprobe: usize,
    /// Re-rank factor.
    pub rerank: usize,
    /// Measured recall@[`K`] on the held-out sample.
    pub recall: f64,
    /// Modelled work per query (arbitrary units; only compared within one segment).
    pub cost: f64,
}

/// What a segment measured about itself when it was built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// [`CALIBRATION_VERSION`] of the writer.
    pub version: u32,
    /// Neighbours per query the recall is measured at.
    pub k: usize,
    /// Queries measured.
    pub queries: usize,
    /// Every measured point.
    pub curve: Vec<CurvePoint>,
}

impl Calibration {
    /// Whether `point` reaches `target` with a margin: its recall is an estimate from
    /// [`Self::queries`] held-out queries, and a search meets queries the calibration never saw
    /// (and a replica's own build differs), so the estimate must clear the target by one
    /// standard error of a per-query proportion, `sqrt(r(1 - r) / queries)` (about 0.012 at 0.95
    /// with 256 queries). Measured on the MiniLM set over REST: without the margin the defaults
    /// ended at recall 0.937 on the real queries for a target of 0.95.
    pub fn reaches(&self, point: &CurvePoint, target: f64) -> bool {
        let r = point.recall;
        let margin = (r * (1.0 - r) / self.queries.max(1) as f64).sqrt();
        r - margin >= target
    }

    /// The cheapest point that [reaches](Self::reaches) `target`, or the best recall measured
    /// when none does. `nprobe`/`rerank`, when given, fix that coordinate (to the nearest measured value not
    /// above it; the caller then searches with its own value).
    pub fn choose(
        &self,
        target: f64,
        nprobe: Option<usize>,
        rerank: Option<usize>,
    ) -> Option<CurvePoint> {
        let snap = |want: Option<usize>, values: Vec<usize>| -> Option<usize> {
            let want = want?;
            values
                .iter()
                .copied()
                .filter(|v| *v <= want)
                .max()
                .or_else(|| values.iter().copied().min())
        };
        let fixed_p = snap(nprobe, self.curve.iter().map(|c| c.nprobe).collect());
        let fixed_r = snap(rerank, self.curve.iter().map(|c| c.rerank).collect());
        let candidates = self.curve.iter().filter(|c| {
            fixed_p.is_none_or(|p| c.nprobe == p) && fixed_r.is_none_or(|r| c.rerank == r)
        });
        let mut best: Option<CurvePoint> = None;
        let mut best_reaching: Option<CurvePoint> = None;
        for c in candidates {
            if self.reaches(c, target) && best_reaching.is_none_or(|b| c.cost < b.cost) {
                best_reaching = Some(*c);
            }
            if best.is_none_or(|b| c.recall > b.recall || (c.recall == b.recall && c.cost < b.cost))
            {
                best = Some(*c);
            }
        }
        best_reaching.or(best)
    }
}

/// The `nprobe` values measured for `nlist` lists: 1, 2, 3, … growing about 25% a step, and
/// `nlist` itself.
pub fn nprobe_grid(nlist: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut p = 1usize;
    while p < nlist {
        out.push(p);
        p = (p + 1).max((p as f64 * 1.25).round() as usize);
    }
    out.push(nlist.max(1));
    out
}

/// The modelled work of one query at `nprobe`/`rerank` on `index` (see the module doc): coarse
/// distances over every centroid, the codes of the probed lists (4-bit fast-scan codes cost about
/// an eighth of 8-bit ones per sub-space), and one exact distance per re-ranked candidate plus a
/// cache miss.
pub fn cost(index: &IvfPqIndex, pq_m: usize, pq_bits: u8, nprobe: usize, rerank: usize) -> f64 {
    let dim = index.dim() as f64;
    let nlist = index.nlist().max(1) as f64;
    let per_code = if pq_bits == 4 {
        pq_m as f64 / 8.0
    } else {
        pq_m as f64
    };
    let coarse = nlist * dim;
    let scanned = nprobe.min(index.nlist()) as f64 * index.len() as f64 / nlist * per_code;
    let reranked = if rerank == 0 {
        0.0
    } else {
        (K * rerank) as f64 * (dim + 64.0)
    };
    coarse + scanned + reranked
}

/// Measures `index` (ids = segment rows; see the module doc). `None` when the segment is too
/// small to measure.
pub fn calibrate(index: &IvfPqIndex, pq_m: usize, pq_bits: u8, seed: u64) -> Option<Calibration> {
    let n = index.len();
    if n < MIN_ROWS {
        return None;
    }
    let metric = index.metric();
    let queries = SAMPLE_QUERIES.min(n / 4);
    let offset = (seed % (n / queries) as u64) as usize;
    // Index rows of the sample (ids are segment rows; rows are in list order).
    let sample: Vec<usize> = (0..queries).map(|i| offset + i * (n / queries)).collect();
    let k = K.min(n - 1);
    let max_rerank = *RERANKS.iter().max().unwrap_or(&1);
    let grid = nprobe_grid(index.nlist());
    // Per query: its vector, its own id, the truth.
    let truths: Vec<(Vec<f32>, u64, HashSet<u64>)> = sample
        .par_iter()
        .filter_map(|&row| {
            let q = index.vector(row)?.to_vec();
            let own = index.ids()[row];
            let mut top = TopK::new(k);
            for r in 0..n {
                if r == row {
                    continue;
                }
                if let Some(v) = index.vector(r) {
                    top.push(index.ids()[r], exact(metric, &q, v));
                }
            }
            let truth = top.into_sorted_vec().into_iter().map(|nb| nb.id).collect();
            Some((q, own, truth))
        })
        .collect();
    if truths.is_empty() {
        return None;
    }
    let total = (truths.len() * k) as f64;
    let mut curve = Vec::new();
    for &nprobe in &grid {
        let params = SearchParams { nprobe, rerank: 0 };
        // hits[r] = true neighbours within the first k·r ADC candidates, summed over queries.
        let hits: Vec<usize> = truths
            .par_iter()
            .map(|(q, own, truth)| {
                let got = index.search(q, k * max_rerank + 1, &params, None);
                let ranked: Vec<u64> = got.iter().map(|nb| nb.id).filter(|id| id != own).collect();
                RERANKS
                    .iter()
                    .map(|&r| {
                        ranked
                            .iter()
                            .take(k * r.max(1))
                            .filter(|id| truth.contains(id))
                            .count()
                    })
                    .collect::<Vec<_>>()
            })
            .reduce(
                || vec![0; RERANKS.len()],
                |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
            );
        let mut saturated = false;
        for (i, &rerank) in RERANKS.iter().enumerate() {
            let recall = hits[i] as f64 / total;
            saturated |= recall >= 0.999;
            curve.push(CurvePoint {
                nprobe,
                rerank,
                recall,
                cost: cost(index, pq_m, pq_bits, nprobe, rerank),
            });
        }
        // Probing more lists cannot find more once (nearly) every neighbour is found.
        if saturated {
            break;
        }
    }
    Some(Calibration {
        version: CALIBRATION_VERSION,
        k,
        queries: truths.len(),
        curve,
    })
}

/// Exact distance as the index ranks it (vectors are stored normalised for cosine).
fn exact(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    distance::distance(metric, q, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(nprobe: usize, rerank: usize, recall: f64, cost: f64) -> CurvePoint {
        CurvePoint {
            nprobe,
            rerank,
            recall,
            cost,
        }
    }

    fn curve() -> Calibration {
        Calibration {
            version: CALIBRATION_VERSION,
            k: 10,
            // Many queries: a margin of at most 0.005, below the gaps these tests probe.
            queries: 10_000,
            curve: vec![
                point(1, 0, 0.50, 10.0),
                point(1, 4, 0.60, 20.0),
                point(4, 0, 0.80, 30.0),
                point(4, 4, 0.96, 45.0),
                point(8, 0, 0.85, 50.0),
                point(8, 4, 0.99, 70.0),
            ],
        }
    }

    #[test]
    fn the_cheapest_point_reaching_the_target_wins() {
        let c = curve();
        assert_eq!(c.choose(0.95, None, None), Some(point(4, 4, 0.96, 45.0)));
        assert_eq!(c.choose(0.97, None, None), Some(point(8, 4, 0.99, 70.0)));
        assert_eq!(c.choose(0.49, None, None), Some(point(1, 0, 0.50, 10.0)));
        // Out of reach: the best recall there is.
        assert_eq!(c.choose(0.999, None, None), Some(point(8, 4, 0.99, 70.0)));
    }

    #[test]
    fn few_queries_ask_for_a_margin_above_the_target() {
        let mut c = curve();
        c.queries = 100;
        // 0.96 from 100 queries: one standard error is 0.0196, so 0.95 is not reached with
        // confidence; 0.99 (standard error 0.01) is.
        assert!(!c.reaches(&point(4, 4, 0.96, 45.0), 0.95));
        assert_eq!(c.choose(0.95, None, None), Some(point(8, 4, 0.99, 70.0)));
        assert_eq!(c.choose(0.9, None, None), Some(point(4, 4, 0.96, 45.0)));
    }

    #[test]
    fn a_fixed_coordinate_restricts_the_choice() {
        let c = curve();
        assert_eq!(c.choose(0.95, None, Some(0)), Some(point(8, 0, 0.85, 50.0)));
        assert_eq!(c.choose(0.95, Some(8), None), Some(point(8, 4, 0.99, 70.0)));
        // 6 is not measured: the nearest measured value below it (4) stands for it.
        assert_eq!(c.choose(0.9, Some(6), None), Some(point(4, 4, 0.96, 45.0)));
        // Below every measured value: the smallest.
        assert_eq!(c.choose(0.9, None, Some(1)), Some(point(8, 0, 0.85, 50.0)));
    }

    #[test]
    fn the_grid_is_geometric_and_ends_at_nlist() {
        assert_eq!(nprobe_grid(1), vec![1]);
        assert_eq!(nprobe_grid(8), vec![1, 2, 3, 4, 5, 6, 8]);
        let g = nprobe_grid(1024);
        assert_eq!(g.last(), Some(&1024));
        assert!(g.len() < 40, "{g:?}");
        assert!(g.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn stored_calibrations_read_back() {
        let c = curve();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&text).unwrap(), c);
    }
}
