//! The per-segment filter planner: which rows a filter lets through, and how to search them.
//!
//! **Matching rows** ([`allowed`]): a filter is evaluated over a candidate [`RowSet`] (the live
//! rows), narrowing it condition by condition. A `must` list runs its conditions cheapest first:
//! those a payload index answers ([`super::payload_index::FieldIndex::answer`], cost ∝ postings)
//! before those read from payloads, which then only look at the rows still standing. `should`,
//! `must_not` and `min_should` look only at the rows `must` left. The result is exactly what
//! [`CompiledFilter::matches`] gives per point, with or without indexes.
//!
//! **Search plan** ([`plan_ivf`]): once the matching rows of a built segment are counted, a few
//! matches are searched exactly over their raw vectors (recall 1, cost ∝ matches); otherwise the
//! IVF-PQ index is scanned with the matching rows admitted inside the scan, with `nprobe` widened
//! as the selectivity falls. The filtered k nearest are the nearest of a fraction `s` of the rows:
//! about the `k/s` nearest unfiltered rows, spread over more lists than the unfiltered `k`. Probing
//! `nprobe / sqrt(s)` lists (and at least enough lists that, on average, `4 × k × rerank` matches
//! are in them) keeps recall near the unfiltered one at a cost growing far slower than `1/s`.
//! The exact scan is chosen when it reads fewer vector components than the widened scan reads
//! code bytes (see [`EXACT_COST_FACTOR`]).

use super::filter::{CompiledFilter, Cond};
use super::payload_index::{Answer, PayloadIndex, Sure};
use super::point::{Payload, PointId};
use super::segment::{CHUNK_ROWS, Chunk, IvfSeg, SegBody, Segment};
use crate::index::RowSet;
use crate::index::ivfpq::SearchParams;

/// A run of rows numbered from 0: what the per-row fallback reads.
pub(crate) trait RowSource {
    /// The row's point id.
    fn point(&self, row: usize) -> Option<PointId>;
    /// The row's payload.
    fn payload(&self, row: usize) -> Option<&Payload>;
}

impl RowSource for Chunk {
    fn point(&self, row: usize) -> Option<PointId> {
        self.points.get(row).copied()
    }
    fn payload(&self, row: usize) -> Option<&Payload> {
        self.payloads.get(row)?.as_deref()
    }
}

impl RowSource for IvfSeg {
    fn point(&self, row: usize) -> Option<PointId> {
        self.points.get(row).copied()
    }
    fn payload(&self, row: usize) -> Option<&Payload> {
        self.payloads.get(row)?.as_deref()
    }
}

struct Ctx<'a, S: RowSource> {
    index: &'a PayloadIndex,
    src: &'a S,
}

impl<S: RowSource> Ctx<'_, S> {
    fn answer(&self, c: &Cond) -> Option<Answer> {
        match c {
            Cond::Field(p, pred) => self.index.field(&p.key)?.answer(pred),
            _ => None,
        }
    }

    /// Rows of `cand` where `c` holds.
    fn cond(&self, c: &Cond, cand: &RowSet) -> RowSet {
        self.cond_with(c, self.answer(c).as_ref(), cand)
    }

    /// Rows of `cand` where `c` holds, given the index's answer for it if any.
    fn cond_with(&self, c: &Cond, ans: Option<&Answer>, cand: &RowSet) -> RowSet {
        match c {
            Cond::Always => return cand.clone(),
            Cond::Filter(f) => return self.filter(f, cand.clone()),
            _ => {}
        }
        if let Some(ans) = ans {
            return self.rows_of_answer(c, ans, cand);
        }
        let mut out = RowSet::new(cand.len());
        for r in cand.iter() {
            if let Some(id) = self.src.point(r)
                && c.holds(&id, self.src.payload(r))
            {
                out.insert(r);
            }
        }
        out
    }

    fn rows_of_answer(&self, c: &Cond, ans: &Answer, cand: &RowSet) -> RowSet {
        let mut out = RowSet::new(cand.len());
        let n = cand.len() as u32;
        match &ans.sure {
            Sure::Bitmap(b) if (cand.count() as u64) < b.len() => {
                for r in cand.iter() {
                    if b.contains(r as u32) {
                        out.insert(r);
                    }
                }
            }
            Sure::Bitmap(b) => {
                for r in b.iter().take_while(|r| *r < n) {
                    if cand.contains(r as usize) {
                        out.insert(r as usize);
                    }
                }
            }
            Sure::List(rows) => {
                for &r in rows {
                    if cand.contains(r as usize) {
                        out.insert(r as usize);
                    }
                }
            }
        }
        for r in ans.check.iter().take_while(|r| *r < n) {
            let r = r as usize;
            if cand.contains(r)
                && !out.contains(r)
                && let Some(id) = self.src.point(r)
                && c.holds(&id, self.src.payload(r))
            {
                out.insert(r);
            }
        }
        out
    }

    /// Rows of `cand` passing `f`.
    fn filter(&self, f: &CompiledFilter, mut cur: RowSet) -> RowSet {
        // Indexed conditions first, smallest answer first; the rest read only what is left.
        let mut must: Vec<(&Cond, Option<Answer>)> =
            f.must.iter().map(|c| (c, self.answer(c))).collect();
        must.sort_by_key(|m| m.1.as_ref().map_or(u64::MAX, Answer::estimate));
        for (c, ans) in must {
            if cur.count() == 0 {
                return cur;
            }
            cur = self.cond_with(c, ans.as_ref(), &cur);
        }
        for c in &f.must_not {
            let hit = self.cond(c, &cur);
            cur.difference_with(&hit);
        }
        if !f.should.is_empty() {
            let mut any = RowSet::new(cur.len());
            for c in &f.should {
                let mut rest = cur.clone();
                rest.difference_with(&any);
                any.union_with(&self.cond(c, &rest));
            }
            cur = any;
        }
        if let Some((conds, min)) = &f.min_should
            && *min > 0
        {
            let mut counts = vec![0u32; cur.len()];
            for c in conds {
                for r in self.cond(c, &cur).iter() {
                    counts[r] += 1;
                }
            }
            let mut out = RowSet::new(cur.len());
            for r in cur.iter() {
                if counts[r] as usize >= *min {
                    out.insert(r);
                }
            }
            cur = out;
        }
        cur
    }
}

/// Live rows of `seg` passing `filter`, as a set over segment rows.
pub(super) fn allowed(seg: &Segment, filter: Option<&CompiledFilter>) -> RowSet {
    let Some(f) = filter.filter(|f| !f.is_empty()) else {
        return (*seg.live).clone();
    };
    match &seg.body {
        SegBody::Ivf(ivf) => {
            let index = ivf.payload_index();
            Ctx {
                index: &index,
                src: &**ivf,
            }
            .filter(f, (*seg.live).clone())
        }
        SegBody::Flat(chunks) => {
            let live = seg.live.words();
            let mut words = vec![0u64; seg.rows.div_ceil(64)];
            for (c, chunk) in chunks.iter().enumerate() {
                let w0 = c * CHUNK_ROWS / 64;
                let nw = chunk.len().div_ceil(64);
                let Some(src) = live.get(w0..w0 + nw) else {
                    continue;
                };
                let Some(cand) = RowSet::from_words(chunk.len(), src.to_vec()) else {
                    continue;
                };
                let out = Ctx {
                    index: &chunk.index,
                    src: &**chunk,
                }
                .filter(f, cand);
                words[w0..w0 + nw].copy_from_slice(out.words());
            }
            RowSet::from_words(seg.rows, words).unwrap_or_else(|| RowSet::new(seg.rows))
        }
    }
}

/// How many rows of `seg` hold a value in the indexed field `key` (live rows only).
pub(super) fn indexed_points(seg: &Segment, key: &str) -> usize {
    let count = |index: &PayloadIndex, base: usize, len: usize| {
        index.field(key).map_or(0, |f| {
            f.rows()
                .iter()
                .filter(|r| (*r as usize) < len && seg.live.contains(base + *r as usize))
                .count()
        })
    };
    match &seg.body {
        SegBody::Ivf(ivf) => count(&ivf.payload_index(), 0, seg.rows),
        SegBody::Flat(chunks) => chunks
            .iter()
            .enumerate()
            .map(|(c, ch)| count(&ch.index, c * CHUNK_ROWS, ch.len()))
            .sum(),
    }
}

/// `(value, row)` of the rows in `rows` holding values in the indexed numeric field `key`, once
/// per value, unsorted; `None` when the segment has no such index for `key`.
pub(super) fn ordered_values(seg: &Segment, key: &str, rows: &RowSet) -> Option<Vec<(f64, usize)>> {
    let collect = |index: &PayloadIndex, base: usize, out: &mut Vec<(f64, usize)>| {
        let pairs = index.field(key)?.ordered()?;
        out.extend(
            pairs
                .into_iter()
                .map(|(v, r)| (v, base + r as usize))
                .filter(|(_, r)| rows.contains(*r)),
        );
        Some(())
    };
    let mut out = Vec::new();
    match &seg.body {
        SegBody::Ivf(ivf) => collect(&ivf.payload_index(), 0, &mut out)?,
        SegBody::Flat(chunks) => {
            for (c, ch) in chunks.iter().enumerate() {
                collect(&ch.index, c * CHUNK_ROWS, &mut out)?;
            }
        }
    }
    Some(out)
}

/// An exact scan over the matching rows reads `dim` floats a row; the widened IVF-PQ scan reads
/// about one code byte per sub-space a probed row plus the re-ranked vectors. The exact scan is
/// chosen while `matching × dim ≤ EXACT_COST_FACTOR × probed rows × pq_m`: exact reads are
/// sequential SIMD over whole vectors, code reads are table look-ups.
pub const EXACT_COST_FACTOR: f64 = 2.0;

/// How a built segment is searched for a filter letting `matching` of its `rows` through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Plan {
    /// Exact distances over the matching rows.
    Exact,
    /// The IVF-PQ scan with these parameters.
    Ivf(SearchParams),
}

/// Chooses the plan for one built segment (see the module doc).
pub(super) fn plan_ivf(
    params: &SearchParams,
    k: usize,
    matching: usize,
    rows: usize,
    nlist: usize,
    dim: usize,
    pq_m: usize,
) -> Plan {
    if matching == 0 || rows == 0 || matching <= super::EXACT_SCAN_ROWS {
        return Plan::Exact;
    }
    if matching == rows {
        // Unfiltered and nothing deleted: the caller's parameters as they are.
        return Plan::Ivf(*params);
    }
    let nlist = nlist.max(1);
    let s = matching as f64 / rows as f64;
    let widened = (params.nprobe as f64 / s.sqrt()).ceil();
    let fill = (4 * k * params.rerank.max(1)) as f64 * nlist as f64 / matching as f64;
    let nprobe = widened.max(fill.ceil()).min(nlist as f64).max(1.0) as usize;
    let probed_rows = nprobe as f64 / nlist as f64 * rows as f64;
    let exact_cost = matching as f64 * dim as f64;
    if exact_cost <= EXACT_COST_FACTOR * probed_rows * pq_m.max(1) as f64 {
        return Plan::Exact;
    }
    Plan::Ivf(SearchParams {
        nprobe,
        rerank: params.rerank,
    })
}
