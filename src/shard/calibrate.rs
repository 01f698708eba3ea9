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
//! **Filtered curves.** A filter admitted inside the scan leaves fewer matching rows per list, so a
//! filtered search must probe more lists to find its `K` nearest matches. How many more depends on
//! the data (on text embeddings far fewer than the `1/sqrt(share)` a uniform model suggests), so
//! the segment measures that too: for each share in [`FILTER_SHARES`] that leaves enough rows, a
//! seeded pseudo-random subset of that share of the rows is the filter, the truth is the exact
//! top-`K` within it, and the same grid is measured with the subset admitted inside the scan.
//! [`Calibration::widening`] turns the curves into the factor a filtered search multiplies its
//! `nprobe` by at any share (interpolated in log-log between measured shares). Calibrations
//! stored before filtered curves existed (version 1) have none; the planner then widens by
//! `1/sqrt(share)`.
//!
//! The measurement costs `SAMPLE_QUERIES × rows` exact distances, computed once for the whole
//! segment and every filtered share together as blocked matrix products ([`knn`]), plus, per
//! query and share, one search that widens step by step along the grid and scans each probed
//! list once ([`IvfPqIndex::grid_search`]), up to the step where (nearly) every neighbour is
//! found; spread over rayon's threads. Both replaced a pass per query over the raw vectors and a
//! search from scratch per grid point: on a 1M × 128 load in process, the time from the last
//! write until the engine idles fell by about 45%.

use crate::index::ivfpq::{GridSearch, IvfPqIndex};
use crate::index::{RowSet, knn};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

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
/// Format version of a stored [`Calibration`]. 1: the unfiltered curve. 2: adds
/// [`Calibration::filtered`] (absent from version 1, read as empty).
pub const CALIBRATION_VERSION: u32 = 2;
/// Shares of the rows a filtered curve is measured at (a filter letting this share through).
/// Below about 1% the planner scans the matches exactly, so smaller shares are not measured.
/// 1% is: its filters take the widened plans whose recall the widening sets
/// ([`super::planner::Plan::SubsetProbed`] on 1M × 128), and extrapolated from 3% their recall
/// ranged 0.942–0.979 from build to build, below the target in some.
pub const FILTER_SHARES: [f64; 4] = [0.3, 0.1, 0.03, 0.01];
/// Fewest matching rows a filtered curve needs: fewer are searched exactly, not by the index.
pub const MIN_FILTERED_ROWS: usize = 512;

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
    /// The curves measured under a filter, largest share first (version 2 on).
    #[serde(default)]
    pub filtered: Vec<FilteredCurve>,
    /// [`Calibration::widening`]'s points for each recall target and re-rank factor asked so
    /// far: derived from the curves, never stored. A calibration's curves are not changed once
    /// it is asked for a widening (segments hold it behind an `Arc`).
    #[serde(skip)]
    widening_memo: WideningMemo,
}

/// The `(ln share, ln factor)` points [`Calibration::widening`] interpolates, per `(target,
/// rerank)`. Working them out reads every curve (a few hundred points), which cost 3% of a
/// filtered query on MiniLM when done for each segment of each query; a search asks the same
/// target and re-rank factor almost every time, so each pair is worked out once.
#[derive(Default)]
struct WideningMemo(RwLock<Vec<WideningPoints>>);

/// The points for one `(target, rerank)`, `None` when the unfiltered curve has no answer.
type WideningPoints = ((u64, usize), Option<Arc<[(f64, f64)]>>);

/// How many `(target, rerank)` pairs are remembered; past it, the oldest goes.
const WIDENING_MEMO_PAIRS: usize = 8;

impl WideningMemo {
    /// The points for `(target, rerank)`, worked out with `compute` the first time.
    fn get(
        &self,
        target: f64,
        rerank: usize,
        compute: impl FnOnce() -> Option<Vec<(f64, f64)>>,
    ) -> Option<Arc<[(f64, f64)]>> {
        let key = (target.to_bits(), rerank);
        let read = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, points)) = read.iter().find(|(k, _)| *k == key) {
            return points.clone();
        }
        drop(read);
        let points: Option<Arc<[(f64, f64)]>> = compute().map(Into::into);
        let mut write = self.0.write().unwrap_or_else(|p| p.into_inner());
        if !write.iter().any(|(k, _)| *k == key) {
            if write.len() >= WIDENING_MEMO_PAIRS {
                write.remove(0);
            }
            write.push((key, points.clone()));
        }
        points
    }
}

/// A copy starts empty: the memo is derived, and fills again on use.
impl Clone for WideningMemo {
    fn clone(&self) -> Self {
        WideningMemo::default()
    }
}

/// Derived from the curves, so it never tells two calibrations apart.
impl PartialEq for WideningMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for WideningMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WideningMemo")
    }
}

/// The curve measured with a pseudo-random share of the rows admitted inside the scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilteredCurve {
    /// Share of the rows the filter let through (of [`FILTER_SHARES`]).
    pub share: f64,
    /// Queries measured.
    pub queries: usize,
    /// Every measured point (the same grid and re-rank factors as the unfiltered curve).
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
        reaches(self.queries, point, target)
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
        choose(&self.curve, self.queries, target, nprobe, rerank)
    }

    /// The factor by which a search whose filter lets `share` of a segment's rows through
    /// multiplies its `nprobe` to reach `target` at re-rank factor `rerank`, from the filtered
    /// curves: the `nprobe` each measured share needs over the one the unfiltered curve needs,
    /// interpolated linearly in `ln share` against `ln nprobe`, extrapolated below the smallest
    /// share with the slope of the last step (at most that of `1/share`). Never below 1 and
    /// never falling as the share falls. `None` without filtered curves (version 1).
    pub fn widening(&self, share: f64, target: f64, rerank: usize) -> Option<f64> {
        if self.filtered.is_empty() || share.is_nan() || share <= 0.0 {
            return None;
        }
        let points = self
            .widening_memo
            .get(target, rerank, || self.widening_points(target, rerank))?;
        let x = share.min(1.0).ln();
        let at = |(x0, y0): (f64, f64), (x1, y1): (f64, f64)| {
            if x1 == x0 {
                y1
            } else {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            }
        };
        let ln_factor = match points.windows(2).find(|w| x >= w[1].0) {
            Some(w) => at(w[0], w[1]),
            None => {
                // Below the smallest measured share: the last step's slope, at most 1 (the
                // factor of `1/share`, by which the matches thin out).
                let n = points.len();
                let (a, b) = if n >= 2 {
                    (points[n - 2], points[n - 1])
                } else {
                    (points[0], points[0])
                };
                let slope = if b.0 < a.0 {
                    ((b.1 - a.1) / (a.0 - b.0)).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                b.1 + slope * (b.0 - x)
            }
        };
        Some(ln_factor.exp().max(1.0))
    }

    /// The points [`Calibration::widening`] interpolates: `(ln share, ln factor)` from share 1
    /// (factor 1) falling, the factor made non-decreasing; `None` when the unfiltered curve has
    /// no answer for `rerank`.
    fn widening_points(&self, target: f64, rerank: usize) -> Option<Vec<(f64, f64)>> {
        let needed = |curve: &[CurvePoint], queries: usize| {
            choose(curve, queries, target, None, Some(rerank)).map(|p| p.nprobe.max(1) as f64)
        };
        let base = needed(&self.curve, self.queries)?;
        let mut filtered: Vec<&FilteredCurve> = self.filtered.iter().collect();
        filtered.sort_by(|a, b| b.share.total_cmp(&a.share));
        let mut points = vec![(0.0f64, 0.0f64)];
        for f in filtered {
            if f.share.is_nan() || f.share <= 0.0 || f.share >= 1.0 {
                continue;
            }
            let Some(p) = needed(&f.curve, f.queries) else {
                continue;
            };
            let last = points.last().map_or(0.0, |l| l.1);
            points.push((f.share.ln(), (p / base).ln().max(last)));
        }
        Some(points)
    }
}

/// Whether `point` reaches `target`, its recall measured on `queries` queries, with the margin
/// [`Calibration::reaches`] explains.
fn reaches(queries: usize, point: &CurvePoint, target: f64) -> bool {
    let r = point.recall;
    let margin = (r * (1.0 - r) / queries.max(1) as f64).sqrt();
    r - margin >= target
}

/// [`Calibration::choose`] over any measured curve.
fn choose(
    curve: &[CurvePoint],
    queries: usize,
    target: f64,
    nprobe: Option<usize>,
    rerank: Option<usize>,
) -> Option<CurvePoint> {
    // The measured value standing for `want` (see `Calibration::choose`), read straight off the
    // curve: this runs for every sealed segment of every query, so it allocates nothing.
    let snap = |want: Option<usize>, value: fn(&CurvePoint) -> usize| -> Option<usize> {
        let want = want?;
        let values = curve.iter().map(value);
        values
            .clone()
            .filter(|v| *v <= want)
            .max()
            .or_else(|| values.min())
    };
    let fixed_p = snap(nprobe, |c| c.nprobe);
    let fixed_r = snap(rerank, |c| c.rerank);
    let candidates = curve
        .iter()
        .filter(|c| fixed_p.is_none_or(|p| c.nprobe == p) && fixed_r.is_none_or(|r| c.rerank == r));
    let mut best: Option<CurvePoint> = None;
    let mut best_reaching: Option<CurvePoint> = None;
    for c in candidates {
        if reaches(queries, c, target) && best_reaching.is_none_or(|b| c.cost < b.cost) {
            best_reaching = Some(*c);
        }
        if best.is_none_or(|b| c.recall > b.recall || (c.recall == b.recall && c.cost < b.cost)) {
            best = Some(*c);
        }
    }
    best_reaching.or(best)
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
    let scanned = nprobe.min(index.nlist()) as f64 * index.entries() as f64 / nlist * per_code;
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
    let queries = SAMPLE_QUERIES.min(n / 4);
    let offset = (seed % (n / queries) as u64) as usize;
    // Index rows of the sample (ids are segment rows; rows are in list order).
    let sample: Vec<usize> = (0..queries).map(|i| offset + i * (n / queries)).collect();
    let grid = nprobe_grid(index.nlist());
    // The filtered subsets big enough to measure; one exact pass finds every query's truth in
    // the whole segment and in each of them.
    let subsets: Vec<(f64, RowSet)> = FILTER_SHARES
        .iter()
        .map(|&share| (share, subset(n, share, seed)))
        .filter(|(_, s)| s.count() >= MIN_FILTERED_ROWS)
        .collect();
    let within: Vec<Option<&RowSet>> = std::iter::once(None)
        .chain(subsets.iter().map(|(_, s)| Some(s)))
        .collect();
    let mut all = exact_truths(index, &sample, &within).into_iter();
    let truths = all.next().unwrap_or_default();
    if truths.is_empty() {
        return None;
    }
    let curve = measure(index, &truths, &grid, None, (pq_m, pq_bits));
    let filtered = subsets
        .iter()
        .zip(all)
        .map(|((share, subset), truths)| {
            let curve = measure(index, &truths, &grid, Some(subset), (pq_m, pq_bits));
            FilteredCurve {
                share: *share,
                queries: truths.len(),
                curve,
            }
        })
        .collect();
    Some(Calibration {
        version: CALIBRATION_VERSION,
        k: K.min(n - 1),
        queries: truths.len(),
        curve,
        filtered,
        widening_memo: WideningMemo::default(),
    })
}

/// One calibration query: its vector, its own id (never counted as found), the ids of its exact
/// top-`K` among the other rows (of `within`, when given).
type Truth = (Vec<f32>, u64, HashSet<u64>);

/// The truth of every query in `sample` (index rows) among the index's other rows, once for each
/// entry of `within` (all rows, or the rows whose id is in the set): `out[i]` for `within[i]`.
/// One blocked exact pass ([`knn::exact_knn_sets`]) answers them all.
fn exact_truths(
    index: &IvfPqIndex,
    sample: &[usize],
    within: &[Option<&RowSet>],
) -> Vec<Vec<Truth>> {
    let n = index.len();
    let dim = index.dim();
    let k = K.min(n - 1);
    let ids = index.ids();
    let Ok(base) = ArrayView2::from_shape((n, dim), index.vectors()) else {
        return vec![Vec::new(); within.len()];
    };
    let queries = Array2::from_shape_fn((sample.len(), dim), |(i, j)| base[[sample[i], j]]);
    let found = knn::exact_knn_sets(
        base,
        queries.view(),
        k,
        index.metric(),
        within.len(),
        |set, query, row| {
            row != sample[query] && within[set].is_none_or(|w| w.contains(ids[row] as usize))
        },
    );
    found
        .into_iter()
        .map(|per_query| {
            per_query
                .into_iter()
                .zip(sample)
                .enumerate()
                .filter_map(|(i, (nearest, &row))| {
                    let truth: HashSet<u64> =
                        nearest.iter().map(|&(r, _)| ids[r as usize]).collect();
                    (!truth.is_empty()).then(|| (queries.row(i).to_vec(), ids[row], truth))
                })
                .collect()
        })
        .collect()
}

/// The curve of `truths` over `grid` (see the module doc), with `filter` (segment rows)
/// admitted inside the scan when given.
fn measure(
    index: &IvfPqIndex,
    truths: &[Truth],
    grid: &[usize],
    filter: Option<&RowSet>,
    (pq_m, pq_bits): (usize, u8),
) -> Vec<CurvePoint> {
    let k = K.min(index.len().saturating_sub(1));
    let max_rerank = *RERANKS.iter().max().unwrap_or(&1);
    let total = truths.iter().map(|t| t.2.len()).sum::<usize>().max(1) as f64;
    let want = k * max_rerank + 1;
    let last = grid.iter().copied().max().unwrap_or(1);
    // One search per query, probing more lists at each step of the grid.
    let mut searches: Vec<Option<GridSearch>> = truths
        .par_iter()
        .map(|(q, _, _)| index.grid_search(q, want, last, filter))
        .collect();
    let mut curve = Vec::new();
    for &nprobe in grid {
        // hits[r] = true neighbours within the first k·r ADC candidates, summed over queries.
        let hits: Vec<usize> = searches
            .par_iter_mut()
            .zip(truths.par_iter())
            .map(|(search, (_, own, truth))| {
                let got = search
                    .as_mut()
                    .map(|s| s.advance(nprobe))
                    .unwrap_or_default();
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
    curve
}

/// A pseudo-random `share` of the segment rows `0..n`, fixed by `seed` (a filter uncorrelated
/// with the vectors, as the filtered curves model it).
fn subset(n: usize, share: f64, seed: u64) -> RowSet {
    let cut = (share.clamp(0.0, 1.0) * u32::MAX as f64) as u64;
    RowSet::from_rows(
        n,
        (0..n).filter(|&r| (splitmix(seed ^ (r as u64).wrapping_mul(0x9E37_79B9)) >> 32) < cut),
    )
}

/// SplitMix64's finaliser: a well-mixed hash of one word.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
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
            filtered: Vec::new(),
            widening_memo: WideningMemo::default(),
        }
    }

    /// A filtered curve on which re-rank 4 reaches 0.95 at `nprobe` (and nothing cheaper).
    fn needing(share: f64, nprobe: usize) -> FilteredCurve {
        FilteredCurve {
            share,
            queries: 10_000,
            curve: vec![point(nprobe / 2, 4, 0.90, 1.0), point(nprobe, 4, 0.97, 2.0)],
        }
    }

    #[test]
    fn the_widening_interpolates_the_measured_shares() {
        // Unfiltered, re-rank 4 reaches 0.95 at nprobe 4.
        let mut c = curve();
        assert_eq!(
            c.widening(0.1, 0.95, 4),
            None,
            "no filtered curves: no measured widening"
        );
        c.filtered = vec![needing(0.1, 16), needing(0.3, 8), needing(0.03, 32)];
        let w = |c: &Calibration, share| c.widening(share, 0.95, 4).unwrap();
        assert!((w(&c, 1.0) - 1.0).abs() < 1e-9);
        assert!((w(&c, 0.3) - 2.0).abs() < 1e-9);
        assert!((w(&c, 0.1) - 4.0).abs() < 1e-9);
        assert!((w(&c, 0.03) - 8.0).abs() < 1e-9);
        // Between measured shares, log-log: halfway from 0.3 to 0.1 is between 2 and 4.
        let mid = w(&c, (0.3f64 * 0.1).sqrt());
        assert!((mid - 8f64.sqrt()).abs() < 1e-9, "{mid}");
        // Below the smallest share, the last step's slope (here 2x per 1/0.3 of the share).
        assert!(
            w(&c, 0.01) > 8.0 && w(&c, 0.01) < 8.0 / (0.01f64 / 0.03),
            "{}",
            w(&c, 0.01)
        );
        // Never below 1, never falling as the share falls, even on noisy curves.
        // (A new calibration: the memo holds the points of the curves it first saw.)
        let c = Calibration {
            filtered: vec![needing(0.3, 2), needing(0.1, 16), needing(0.03, 8)],
            ..curve()
        };
        assert!((w(&c, 0.3) - 1.0).abs() < 1e-9);
        assert!((w(&c, 0.03) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_version_1_calibration_reads_without_filtered_curves() {
        let v1 = r#"{"version":1,"k":10,"queries":256,"curve":[{"nprobe":4,"rerank":4,"recall":0.96,"cost":45.0}]}"#;
        let c: Calibration = serde_json::from_str(v1).unwrap();
        assert!(c.filtered.is_empty());
        assert_eq!(c.choose(0.9, None, None).map(|p| p.nprobe), Some(4));
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
