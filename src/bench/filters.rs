//! Filtered workloads: payload fields with stated selectivities, the filter each query carries,
//! and the exact ground truth under that filter.
//!
//! For a selectivity of about `1/N` every point gets the integer field `sel_N`, its bucket in
//! `0..N` (see [`bucket`]), and query `q` filters on `sel_N == q % N`. Each query therefore asks
//! a different slice of about `n/N` points, as tenants or categories would, and a run of 1,000
//! queries at 0.1% touches every bucket once. The buckets come from a fixed hash of the row
//! number, not a random generator, so that the Qdrant peer (`benches/peers/qdrant_edge_peer.py`)
//! writes the very same payloads and filters without a file passing between them;
//! [`bucket`]'s pinned values in the tests are the contract between the two.
//!
//! The ground truth is exact: for each bucket a query asks, the matching base rows are gathered
//! and searched by brute force ([`datasets::try_exact_knn`]), and the answers are mapped back to
//! base rows. A bucket with fewer than `k` points pads its row with [`NO_NEIGHBOUR`], which
//! [`filtered_recall`] does not count as a neighbour to find.

use ndarray::{Array2, ArrayView2, Axis};
use serde_json::{Value, json};

use super::BenchError;
use super::measure::recall_at_k;
use crate::datasets;
use crate::index::Metric;
use crate::shard::Payload;

/// Ground-truth padding where fewer than `k` points pass a filter.
pub const NO_NEIGHBOUR: u32 = u32::MAX;

/// One filtered workload's selectivity: a point passes with probability `1 / buckets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selectivity {
    /// Number of distinct values of the field; one of them is asked per query.
    pub buckets: u32,
}

impl Selectivity {
    /// The selectivity closest to `fraction` (in `(0, 1]`) that one value of an integer field
    /// gives: `1 / round(1 / fraction)`.
    pub fn from_fraction(fraction: f64) -> Result<Self, BenchError> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(BenchError::InvalidParameter(format!(
                "filter selectivity {fraction} must be in (0, 1], e.g. 0.001,0.01,0.1,0.5"
            )));
        }
        let buckets = (1.0 / fraction).round();
        if buckets > f64::from(u32::MAX) {
            return Err(BenchError::InvalidParameter(format!(
                "filter selectivity {fraction} is too small"
            )));
        }
        Ok(Selectivity {
            buckets: buckets.max(1.0) as u32,
        })
    }

    /// The payload field holding this selectivity's bucket: `sel_<buckets>`.
    pub fn field(&self) -> String {
        format!("sel_{}", self.buckets)
    }

    /// The fraction of points one value selects, as stated (the measured fraction differs by
    /// sampling noise; see [`FilteredWorkload::matching_fraction`]).
    pub fn fraction(&self) -> f64 {
        1.0 / f64::from(self.buckets)
    }

    /// The bucket query number `q` asks for.
    pub fn value_for_query(&self, q: usize) -> u32 {
        (q % self.buckets as usize) as u32
    }

    /// The filter of query `q`, as Qdrant and shoal's REST API read it.
    pub fn filter_json(&self, q: usize) -> Value {
        json!({"must": [{"key": self.field(), "match": {"value": self.value_for_query(q)}}]})
    }
}

/// Parses `--filters` fractions, refusing duplicates after rounding (two fractions naming the
/// same field would measure the same thing twice under two labels).
pub fn selectivities(fractions: &[f64]) -> Result<Vec<Selectivity>, BenchError> {
    let mut out: Vec<Selectivity> = Vec::with_capacity(fractions.len());
    for &f in fractions {
        let s = Selectivity::from_fraction(f)?;
        if out.contains(&s) {
            return Err(BenchError::InvalidParameter(format!(
                "filter selectivity {f} rounds to 1/{} like another one given",
                s.buckets
            )));
        }
        out.push(s);
    }
    Ok(out)
}

/// SplitMix64's output function: a fixed, well-mixed hash of a 64-bit integer.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bucket of base row `row` for a field of `buckets` values: `splitmix64(row ^ (buckets <<
/// 32)) % buckets`. Every engine's payload must come from this same function.
pub fn bucket(row: u64, buckets: u32) -> u32 {
    (splitmix64(row ^ (u64::from(buckets) << 32)) % u64::from(buckets)) as u32
}

/// The payload of base row `row`: one `sel_N` field per selectivity.
pub fn payload(row: u64, selectivities: &[Selectivity]) -> Payload {
    selectivities
        .iter()
        .map(|s| (s.field(), Value::from(bucket(row, s.buckets))))
        .collect()
}

/// One selectivity's queries: the bucket each asks and its exact filtered neighbours.
#[derive(Debug, Clone)]
pub struct FilteredWorkload {
    /// The selectivity.
    pub selectivity: Selectivity,
    /// Per query, its `k` nearest base rows among those in its bucket, nearest first, padded
    /// with [`NO_NEIGHBOUR`].
    pub groundtruth: Array2<u32>,
    /// Mean fraction of the base that passes the queries' filters (measured, not stated).
    pub matching_fraction: f64,
}

impl FilteredWorkload {
    /// Exact filtered ground truth for `queries` over `base` by brute force over each bucket's
    /// points.
    pub fn new(
        selectivity: Selectivity,
        base: ArrayView2<'_, f32>,
        queries: ArrayView2<'_, f32>,
        k: usize,
        metric: Metric,
    ) -> Result<Self, BenchError> {
        let buckets = selectivity.buckets as usize;
        let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); buckets];
        for row in 0..base.nrows() {
            rows_of[bucket(row as u64, selectivity.buckets) as usize].push(row);
        }
        let nq = queries.nrows();
        let mut queries_of: Vec<Vec<usize>> = vec![Vec::new(); buckets];
        for q in 0..nq {
            queries_of[selectivity.value_for_query(q) as usize].push(q);
        }
        let mut groundtruth = Array2::from_elem((nq, k), NO_NEIGHBOUR);
        let mut matching = 0usize;
        for (value, qs) in queries_of.iter().enumerate() {
            let rows = &rows_of[value];
            matching += rows.len() * qs.len();
            if qs.is_empty() || rows.is_empty() {
                continue;
            }
            let sub_base = base.select(Axis(0), rows);
            let sub_queries = queries.select(Axis(0), qs);
            let (ids, _) = datasets::try_exact_knn(sub_base.view(), sub_queries.view(), k, metric)?;
            for (i, &q) in qs.iter().enumerate() {
                for (j, &local) in ids.row(i).iter().enumerate() {
                    groundtruth[[q, j]] = rows[local as usize] as u32;
                }
            }
        }
        Ok(FilteredWorkload {
            selectivity,
            groundtruth,
            matching_fraction: matching as f64 / (nq.max(1) * base.nrows().max(1)) as f64,
        })
    }
}

/// Mean recall@k under a filter: the fraction of each query's true filtered neighbours (at most
/// `k`, fewer when fewer points pass) found among the first `k` answers.
pub fn filtered_recall(
    results: &[Vec<u64>],
    groundtruth: ArrayView2<'_, u32>,
    k: usize,
) -> Result<f64, BenchError> {
    if !groundtruth.iter().any(|&id| id == NO_NEIGHBOUR) {
        return recall_at_k(results, groundtruth, k);
    }
    if groundtruth.nrows() != results.len() || groundtruth.ncols() < k {
        return Err(BenchError::GroundTruth(format!(
            "has {}x{} for {} queries at k = {k}",
            groundtruth.nrows(),
            groundtruth.ncols(),
            results.len()
        )));
    }
    let (mut found, mut expected) = (0usize, 0usize);
    for (got, truth) in results.iter().zip(groundtruth.rows()) {
        let truth: Vec<u64> = truth
            .iter()
            .take(k)
            .filter(|&&id| id != NO_NEIGHBOUR)
            .map(|&id| u64::from(id))
            .collect();
        expected += truth.len();
        let mut seen: Vec<u64> = got.iter().take(k).copied().collect();
        seen.sort_unstable();
        seen.dedup();
        found += seen.iter().filter(|id| truth.contains(id)).count();
    }
    Ok(if expected == 0 {
        1.0
    } else {
        found as f64 / expected as f64
    })
}
