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
//! about the `k/s` nearest unfiltered rows, spread over more lists than the unfiltered `k`. How
//! many more each segment measured when it was built (its calibration's filtered curves, see
//! [`super::calibrate`]): `nprobe` is multiplied by the factor measured for `s` at the search's
//! recall target, or by `1/sqrt(s)` for a segment without filtered curves, and is at least enough
//! lists that, on average, `4 × k × rerank` matches are in them.
//! Between the two, the matches in the widened scan's lists can be searched exactly without
//! reading those lists' other rows ([`Plan::Probed`]): each match's lists are looked up, and
//! only the matches in a probed list are scored — the candidates the widened scan would meet,
//! scored exactly. The cheapest of the three by estimated time is chosen, from per-step costs
//! measured on each plan ([`cost`]); the exact scan of all matches wins ties. The two plans that
//! read the matches one by one pay for each its translation from a segment row (what a filter
//! answers) to its index row, a random read that costs several times more in a segment of a
//! million rows than in one whose per-row arrays stay in cache — unless the matches are a whole
//! indexed value's rows, which the segment keeps as index rows ([`MatchRows`]).
//! When the filter's `must` holds an equality on an indexed value, two more plans read only
//! that value's rows' codes, regrouped by the segment ([`super::subsets`]): the widened scan
//! over their entries in the probed lists ([`Plan::Subset`]), or every one of their codes scored
//! with one table, no list probed ([`Plan::SubsetCodes`]); and one reads only its rows, per
//! list, scoring those in the probed lists exactly ([`Plan::SubsetProbed`], the probed plan
//! without a look-up per match). Any of them is taken only where estimated clearly cheaper than
//! the other three, since the segment keeps the copy.
//!
//! The matches are listed rather than put in a set over the segment's rows whenever the plan
//! reads them one by one ([`matches_for_search`]).

use super::column::Column;
use super::filter::{CompiledFilter, Cond};
use super::payload_index::{Answer, DensePosting, PayloadIndex, Sure};
use super::point::{Payload, PointId};
use super::segment::{CHUNK_ROWS, Chunk, IvfSeg, SegBody, Segment};
use super::values::JsonPath;
use crate::index::ivfpq::SearchParams;
use crate::index::{RowSet, fastscan};
use std::sync::Arc;

/// A run of rows numbered from 0: what the per-row fallback reads.
pub(crate) trait RowSource {
    /// The row's point id.
    fn point(&self, row: usize) -> Option<PointId>;
    /// The row's payload.
    fn payload(&self, row: usize) -> Option<&Payload>;
    /// The field at `path` as a column over the rows, decoding it now only if `decode`; `None`
    /// where the rows keep no columns (the mutable segment's chunks, which change).
    fn column(&self, path: &JsonPath, decode: bool) -> Option<Arc<Column>> {
        let _ = (path, decode);
        None
    }
}

/// A column is decoded for a field without an index once a condition on it looks at no fewer
/// than `1 / COLUMN_DECODE_SHARE` of a segment's rows: decoding reads every row once, and every
/// later query reads the column instead of the payloads.
pub const COLUMN_DECODE_SHARE: usize = 16;

/// About how many posting rows can be walked (a bit test each) for the cost of one look-up of a
/// candidate row in a roaring posting.
const LOOKUP_PER_BIT_TEST: u64 = 8;

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
    fn column(&self, path: &JsonPath, decode: bool) -> Option<Arc<Column>> {
        if let Some(c) = self.columns.get(path) {
            return Some(c);
        }
        if !decode {
            return None;
        }
        let column = Arc::new(Column::decode(path, self.points.len(), |r| {
            self.payloads.get(r).and_then(|p| p.as_deref())
        })?);
        self.columns.put(path, Arc::clone(&column));
        Some(column)
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
            return self.rows_from_answer(c, ans, cand);
        }
        // No index: the field's column, where the rows keep one.
        if let Cond::Field(path, pred) = c
            && let Some(column) = self.src.column(
                path,
                cand.count().saturating_mul(COLUMN_DECODE_SHARE) >= cand.len(),
            )
            && column.rows() == cand.len()
            && let Some(rows) = column.filter(pred, cand)
        {
            return rows;
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

    fn rows_from_answer(&self, c: &Cond, ans: &Answer, cand: &RowSet) -> RowSet {
        let mut out = match &ans.sure {
            // A word per 64 rows, whatever the posting's size.
            Sure::Rows(d) => {
                let mut out = cand.clone();
                out.intersect_with(&d.rows);
                out
            }
            Sure::Bitmap(_) | Sure::List(_) => RowSet::new(cand.len()),
        };
        let n = cand.len() as u32;
        match &ans.sure {
            Sure::Rows(_) => {}
            // Walk the candidates only when they are several times fewer than the posting's
            // rows: each costs a bitmap look-up (a search in a roaring container), each posting
            // row a bit test. Counting the candidates is a pass over their words, which is
            // cheap next to a posting with more rows than that. (Walking every live candidate
            // whenever the posting held more rows than the candidates had words made a 1.6%
            // filter on MiniLM, 920 of 58k rows, 8× slower than a 1.4% one.)
            Sure::Bitmap(b)
                if (cand.words().len() as u64) < b.len()
                    && (cand.count() as u64).saturating_mul(LOOKUP_PER_BIT_TEST) < b.len() =>
            {
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

    /// `f`'s `must` conditions with their index answers, indexed first, smallest answer first.
    fn must_answers<'f>(&self, f: &'f CompiledFilter) -> Vec<(&'f Cond, Option<Answer>)> {
        let mut must: Vec<(&Cond, Option<Answer>)> =
            f.must.iter().map(|c| (c, self.answer(c))).collect();
        must.sort_by_key(|m| m.1.as_ref().map_or(u64::MAX, Answer::estimate));
        must
    }

    /// Rows of `live` passing `f`: listed from the postings of its most selective indexed
    /// `must` condition when `list` says so of their count (an upper bound of the matches), as
    /// a set otherwise.
    fn matches_listing_if(
        &self,
        f: &CompiledFilter,
        live: &RowSet,
        all_live: bool,
        list: impl Fn(usize) -> bool,
    ) -> Matches {
        let must = self.must_answers(f);
        if let Some((_, Some(ans))) = must.first()
            && usize::try_from(ans.estimate()).is_ok_and(list)
        {
            return Matches::List(self.listed(f, &must, live));
        }
        // One indexed condition whose posting is a set over every row and sure of each, and no
        // row deleted: that set is the matches, shared instead of copied and narrowed (for a 50%
        // filter on 1M rows, a 125 KB copy, a pass over it and a count per query, ~15% of the
        // search).
        if all_live
            && f.is_single_must()
            && let Some((_, Some(ans))) = must.first()
            && ans.check.is_empty()
            && let Sure::Rows(dense) = &ans.sure
            && dense.rows.len() == live.len()
        {
            return Matches::Posting(Arc::clone(dense));
        }
        Matches::Set(self.filter_with(f, must, live.clone()))
    }

    /// Rows of `live` passing `f`, ascending, found row by row from the answer of `must[0]`
    /// (which every match is in): no pass over sets of every row.
    fn listed(
        &self,
        f: &CompiledFilter,
        must: &[(&Cond, Option<Answer>)],
        live: &RowSet,
    ) -> Vec<u32> {
        let Some(((first, Some(ans)), rest)) = must.split_first() else {
            return Vec::new();
        };
        let n = live.len() as u32;
        let mut rows: Vec<u32> = match &ans.sure {
            Sure::Bitmap(b) => b.iter().take_while(|r| *r < n).collect(),
            Sure::List(l) => l.iter().copied().filter(|r| *r < n).collect(),
            Sure::Rows(d) => d.rows.iter().map(|r| r as u32).filter(|r| *r < n).collect(),
        };
        // A bitmap's and a set's rows come ascending; a list's in value order.
        let mut ascending = !matches!(ans.sure, Sure::List(_));
        if !ans.check.is_empty() {
            rows.extend(
                ans.check
                    .iter()
                    .take_while(|r| *r < n)
                    .filter(|r| self.holds(first, *r)),
            );
            ascending = false;
        }
        if !ascending {
            rows.sort_unstable();
            rows.dedup();
        }
        rows.retain(|&r| {
            live.contains(r as usize)
                && rest.iter().all(|(c, a)| self.holds_at(c, a.as_ref(), r))
                && f.passes_all_but_must(|c| self.holds(c, r))
        });
        rows
    }

    /// Whether `c` holds at row `r`, read from the payload.
    fn holds(&self, c: &Cond, r: u32) -> bool {
        let r = r as usize;
        self.src
            .point(r)
            .is_some_and(|id| c.holds(&id, self.src.payload(r)))
    }

    /// Whether `c` holds at row `r`, through the index's answer where it can say so at once.
    fn holds_at(&self, c: &Cond, ans: Option<&Answer>, r: u32) -> bool {
        let Some(ans) = ans else {
            return self.holds(c, r);
        };
        let sure = match &ans.sure {
            Sure::Bitmap(b) => b.contains(r),
            Sure::Rows(d) => d.rows.contains(r as usize),
            // Rows in value order: finding one is a walk, the payload is quicker.
            Sure::List(_) => return self.holds(c, r),
        };
        sure || (ans.check.contains(r) && self.holds(c, r))
    }

    /// Rows of `cand` passing `f`.
    fn filter(&self, f: &CompiledFilter, cur: RowSet) -> RowSet {
        let must = self.must_answers(f);
        self.filter_with(f, must, cur)
    }

    /// Rows of `cur` passing `f`, given its `must` conditions as [`Ctx::must_answers`] orders
    /// them: indexed conditions first, smallest answer first; the rest read only what is left.
    fn filter_with(
        &self,
        f: &CompiledFilter,
        must: Vec<(&Cond, Option<Answer>)>,
        mut cur: RowSet,
    ) -> RowSet {
        for (c, ans) in must {
            if cur.words().iter().all(|w| *w == 0) {
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

/// A filter whose most selective indexed `must` condition matches at most one row of a built
/// segment in `SPARSE_SHARE` is evaluated row by row over that condition's postings: the cost
/// follows the matches, not the segment's size (a set over a 333,000-row segment is 41 KB, and
/// cloning, narrowing, counting and walking it cost a selective query more than its scan).
/// Measured on 1M × 128 (3 segments; `benches/ab.sh`, 3 alternated runs): a filter matching
/// 0.1% ran 1.37× as fast listed; at 1% (one row in 100) listing was 0.88× (within the noise,
/// but no gain), so only filters matching at most one row in 256 are listed — where the plan is
/// not known. A search lists whatever its plan will scan exactly ([`matches_for_search`]).
pub const SPARSE_SHARE: usize = 256;

/// The live rows of a segment a filter lets through.
#[derive(Debug, Clone)]
pub(super) enum Matches {
    /// As a set over the segment's rows.
    Set(RowSet),
    /// Ascending, as found from a payload index's postings ([`SPARSE_SHARE`]).
    List(Vec<u32>),
    /// A dense posting's set over the segment's rows, when it is exactly the matches.
    Posting(Arc<DensePosting>),
}

impl Matches {
    /// How many rows match.
    pub fn count(&self) -> usize {
        match self {
            Matches::Set(s) => s.count(),
            Matches::List(l) => l.len(),
            Matches::Posting(d) => d.count as usize,
        }
    }
}

/// Live rows of `seg` passing `filter`: listed when a payload index of a built segment finds
/// them few ([`SPARSE_SHARE`]), as a set over segment rows otherwise.
pub(super) fn matches(seg: &Segment, filter: Option<&CompiledFilter>) -> Matches {
    let live = seg.live.len();
    matches_listing_if(seg, filter, |e| e.saturating_mul(SPARSE_SHARE) <= live)
}

/// Live rows of `seg` passing `filter` for a search whose plan reads `n` matching rows one by
/// one when `reads(n)` ([`Plan::reads_matches`]): listed when a payload index finds at most `n`
/// candidates and the plan for `n` reads them, so the list is all it needs (a set would cost a
/// pass over every row of the segment to build and another to walk). The upper bound decides
/// for the true count: with fewer matches the exact scan costs less and the widened scan more,
/// so a plan that read `n` matches almost always reads fewer; where it does not, the IVF-PQ scan
/// turns the list into a set (the same answer, a little dearer). Otherwise as [`matches`]: the
/// IVF-PQ scan admits its candidates through a set, and a list would only be turned into one.
pub(super) fn matches_for_search(
    seg: &Segment,
    filter: &CompiledFilter,
    reads: impl Fn(usize) -> bool,
) -> Matches {
    let live = seg.live.len();
    matches_listing_if(seg, Some(filter), |e| {
        e.saturating_mul(SPARSE_SHARE) <= live || reads(e)
    })
}

/// [`matches`], listing whenever the filter has an indexed `must` condition, however many
/// rows it matches: so that tests compare the two ways on every filter.
#[cfg(test)]
pub(super) fn matches_listing_any(seg: &Segment, filter: &CompiledFilter) -> Matches {
    matches_listing_if(seg, Some(filter), |_| true)
}

/// [`matches`], listing when `list` says so of the smallest indexed answer's size.
fn matches_listing_if(
    seg: &Segment,
    filter: Option<&CompiledFilter>,
    list: impl Fn(usize) -> bool,
) -> Matches {
    match (&seg.body, filter.filter(|f| !f.is_empty())) {
        (SegBody::Ivf(ivf), Some(f)) => with_ctx(ivf, |ctx| {
            ctx.matches_listing_if(f, &seg.live, seg.live_count == seg.rows, list)
        }),
        _ => Matches::Set(allowed(seg, filter)),
    }
}

/// Runs `run` with the filter context of a built segment (its payload indexes as they are now).
fn with_ctx<T>(ivf: &IvfSeg, run: impl FnOnce(&Ctx<'_, IvfSeg>) -> T) -> T {
    let index = ivf.payload_index();
    run(&Ctx {
        index: &index,
        src: ivf,
    })
}

/// Live rows of `seg` passing `filter`, as a set over segment rows.
pub(super) fn allowed(seg: &Segment, filter: Option<&CompiledFilter>) -> RowSet {
    let Some(f) = filter.filter(|f| !f.is_empty()) else {
        return (*seg.live).clone();
    };
    match &seg.body {
        SegBody::Ivf(ivf) => with_ctx(ivf, |ctx| ctx.filter(f, (*seg.live).clone())),
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

/// Visits each run of `seg`'s rows that has its own payload index, as `(index, first row, rows)`:
/// a built segment's one index over all its rows, or each chunk of a flat segment. Stops at, and
/// returns, the first `None` the visit returns.
pub(super) fn index_runs(
    seg: &Segment,
    mut visit: impl FnMut(&PayloadIndex, usize, usize) -> Option<()>,
) -> Option<()> {
    match &seg.body {
        SegBody::Ivf(ivf) => visit(&ivf.payload_index(), 0, seg.rows),
        SegBody::Flat(chunks) => chunks
            .iter()
            .enumerate()
            .try_for_each(|(c, ch)| visit(&ch.index, c * CHUNK_ROWS, ch.len())),
    }
}

/// How many rows of `seg` hold a value in the indexed field `key` (live rows only).
pub(super) fn indexed_points(seg: &Segment, key: &str) -> usize {
    let mut n = 0;
    index_runs(seg, |index, base, len| {
        if let Some(f) = index.field(key) {
            n += f
                .rows()
                .iter()
                .filter(|r| (*r as usize) < len && seg.live.contains(base + *r as usize))
                .count();
        }
        Some(())
    });
    n
}

/// `(value, row)` of the rows in `rows` holding values in the indexed numeric field `key`, once
/// per value, unsorted; `None` when the segment has no such index for `key`.
pub(super) fn ordered_values(seg: &Segment, key: &str, rows: &RowSet) -> Option<Vec<(f64, usize)>> {
    let mut out = Vec::new();
    index_runs(seg, |index, base, _| {
        let pairs = index.field(key)?.ordered()?;
        out.extend(
            pairs
                .into_iter()
                .map(|(v, r)| (v, base + r as usize))
                .filter(|(_, r)| rows.contains(*r)),
        );
        Some(())
    })?;
    Some(out)
}

/// What one step of each plan costs, in nanoseconds, as measured on a 2-core AMD host with AVX2
/// (MiniLM 384-d, 58k points, 2 segments, `nlist` 256, `pq_m` 192 at 4 bits and 64 at 8 bits;
/// `shoal bench --engine shard --filters 0.01,0.1,0.5` with each plan forced). Only their ratios
/// steer the choice: the exact scan streams scattered raw vectors and is memory-bound, a 4-bit
/// fast-scan code costs a thirteenth of a raw component, an 8-bit table look-up about as much
/// as one.
pub mod cost {
    /// One component of a raw vector read and scored by the exact scan.
    pub const EXACT_NS_PER_COMPONENT: f64 = 0.65;
    /// One component of a row's 8-bit codes read and scored by the exact scan of a segment that
    /// has them (the raw vectors of only the best few rows are read after).
    pub const EXACT_SQ8_NS_PER_COMPONENT: f64 = 0.2;
    /// One 4-bit code (a sub-space of a probed row) scored by the fast-scan kernel.
    pub const FASTSCAN_NS_PER_CODE: f64 = 0.05;
    /// One 8-bit code scored by a table look-up.
    pub const TABLE_NS_PER_CODE: f64 = 0.7;
    /// One component of a centroid scored when the lists to probe are chosen: the centroids
    /// come from memory (the scans evict them), 276 × 384 of them in 11 µs on the 2-core Xeon.
    pub const COARSE_NS_PER_COMPONENT: f64 = 0.1;
    /// One match's lists looked up by the exact scan of the probed lists' matches, before any
    /// of its codes are read, in a segment of at most [`CACHED_ROWS`] rows, whose per-row
    /// arrays stay in cache (with the translation below, 7 ns measured on MiniLM's 58k rows).
    pub const LOOKUP_NS_PER_MATCH: f64 = 5.0;
    /// The same in a segment of [`LARGE_ROWS`] rows or more: a read into 8 bytes a row. On 1M
    /// × 128 with each plan forced (`benches/results/filter-probed-cost-2026-12-07.txt`) the
    /// probed plan took 28–49 ns a match beside its exact scores, translation included.
    pub const LOOKUP_NS_PER_MATCH_LARGE: f64 = 15.0;
    /// One match of a filter's answer (a segment row) translated to its index row before the
    /// plans that read the matches one by one can read it: a read into 4 bytes a row, at a
    /// random place, in a segment of at most [`CACHED_ROWS`] rows. A whole value's kept
    /// members are index rows already and skip it.
    pub const TRANSLATE_NS_PER_MATCH: f64 = 3.0;
    /// The same from [`LARGE_ROWS`] rows: on 1M × 128 the exact scan of a value's matches
    /// translated per query ran 0.18 / 0.50 / 1.38 / 4.01 ms at 0.3 / 1 / 3 / 10% where the
    /// scan of its kept members ran 0.10 / 0.30 / 0.83 / 2.95 ms, 11–24 ns a match.
    pub const TRANSLATE_NS_PER_MATCH_LARGE: f64 = 20.0;
    /// Rows up to which a per-row array read at random stays in cache (its cost at the small
    /// end above).
    pub const CACHED_ROWS: usize = 1 << 17;
    /// Rows from which it costs the large end; between the two a read's cost grows with the
    /// logarithm of the rows.
    pub const LARGE_ROWS: usize = 1 << 20;
    /// The largest share of the matches the probed lists may hold for the exact scan of them
    /// to be chosen over the exact scan of all: below it the saving outweighs the probe and
    /// the look-ups whatever the vectors' size. Measured on the 2-core Xeon (shard engine,
    /// defaults): MiniLM at 1% probed lists holding 0.43 of the matches and ran 0.79× as fast
    /// as the exact scan of all of them (and at recall 0.98, not 1); at 2% they held 0.21 and
    /// ran 1.19×; 1M × 128 at 1%, 0.24 and 1.52×.
    pub const PROBED_MAX_SHARE: f64 = 0.25;
    /// One entry of a probed list's u8 table (`pq_m * 16` of them), for what each probed list
    /// costs beside its codes whatever the metric (its place, its first block, its offset): a
    /// subset's lists are short, so this is a visible part of scanning them.
    pub const LIST_TABLE_NS_PER_ENTRY: f64 = 0.1;
    /// One entry of the float table an L2 list makes for itself and quantises (inner products
    /// share one table over all lists): in perf on 1M × 128 at 1% (the per-list codes, 47 lists
    /// probed), making and quantising the tables took 28% of the query, 0.6 µs a list of
    /// 64 × 16 entries.
    pub const L2_TABLE_NS_PER_ENTRY: f64 = 0.5;
    /// One probed entry of the IVF-PQ scan with a filter admitted inside it, beside its codes:
    /// the candidates the filter turns away keep the threshold loose, so more are reported,
    /// and each has its id read and checked. Measured with the widened scan at 50% (the same
    /// plan as unfiltered but for the filter): 1M × 128 ran 140 µs a query at nprobe 10 where
    /// its codes, tables and re-ranking are 87 µs (3 ns an entry); MiniLM 79 µs against 60
    /// (6.5 ns an entry).
    pub const FILTERED_NS_PER_ENTRY: f64 = 3.0;
    /// One probed list's rows read from a value's rows per list ([`super::Plan::SubsetProbed`]):
    /// its offsets and its run of rows, at a random place (a cache miss or two; not measured
    /// apart, small beside the exact scores of its rows).
    pub const ROWS_NS_PER_LIST: f64 = 20.0;
    /// How many times cheaper than the best other plan the scan of a subset must be estimated
    /// to be chosen: a subset holds a copy of its rows' codes for as long as the segment lives,
    /// so it is made only where it pays clearly. (On MiniLM a 1% filter's subset scan was
    /// estimated about as dear as the exact scan of its matches, and the subsets of every 1%
    /// value filled the memory budget that 10% and 50% filters, which gain 1.6× and 1.3×, then
    /// lacked.)
    pub const SUBSET_MIN_GAIN: f64 = 1.5;
    /// One entry of a value's codes scanned as one run ([`super::Plan::SubsetCodes`]), beside
    /// its codes: its offset made from its list's coarse term, its block's bound and the
    /// candidate check the offsets rule out of the kernel.
    pub const OFFSET_NS_PER_ENTRY: f64 = 1.0;
}

/// How a built segment is searched for a filter letting `matching` of its `rows` through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Plan {
    /// Exact distances over the matching rows.
    Exact,
    /// Exact distances over the matching rows in the `nprobe` lists nearest the query
    /// ([`IvfPqIndex::exact_among_probed`]): the rows the IVF-PQ scan with these parameters
    /// would meet among the matches, without reading the lists' other rows.
    ///
    /// [`IvfPqIndex::exact_among_probed`]: crate::index::ivfpq::IvfPqIndex::exact_among_probed
    Probed(SearchParams),
    /// The IVF-PQ scan with these parameters.
    Ivf(SearchParams),
    /// The IVF-PQ scan with these parameters over only the entries of the rows of the filter's
    /// indexed value ([`super::subsets`]): the candidates of [`Plan::Ivf`], from the posting's
    /// share of the codes.
    Subset(SearchParams),
    /// Every code of the rows of the filter's indexed value scored with one table shared by
    /// all lists, nearest lists first, no list probed ([`super::subsets`]), then the best
    /// `k * rerank` re-ranked: the exact plans' candidates (all the matches), each scored
    /// from its 4-bit code instead of its vector.
    SubsetCodes(SearchParams),
    /// Exact distances over the rows of the filter's indexed value in the `nprobe` lists
    /// nearest the query, each list's read from the value's rows per list ([`super::subsets`],
    /// [`IvfPqIndex::exact_among_probed_subset`]): [`Plan::Probed`] for those rows without
    /// looking up every match's lists.
    ///
    /// [`IvfPqIndex::exact_among_probed_subset`]: crate::index::ivfpq::IvfPqIndex::exact_among_probed_subset
    SubsetProbed(SearchParams),
}

/// The filter's indexed value, as the plans that scan only its rows' codes see it: how many
/// rows its posting holds and which regrouped forms the segment keeps or has room for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Regroupable {
    pub rows: usize,
    /// Per list ([`Plan::Subset`]).
    pub lists: bool,
    /// One run ([`Plan::SubsetCodes`]).
    pub codes: bool,
    /// Rows per list, no codes ([`Plan::SubsetProbed`]).
    pub row_lists: bool,
}

impl Regroupable {
    /// Whether any form is there: otherwise no subset plan can be taken.
    pub fn any(&self) -> bool {
        self.lists || self.codes || self.row_lists
    }
}

/// Where the plans that read the matches one by one ([`Plan::Exact`], [`Plan::Probed`]) get
/// them from: what each match costs before it is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MatchRows {
    /// The filter's answer, segment rows, each translated to its index row per query.
    Translated,
    /// Index rows already: a whole indexed value's members, kept by the segment.
    Index,
}

/// The shape of a built segment, as the plan's costs need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SegShape {
    pub rows: usize,
    /// Coded entries over all lists: `rows`, or twice that with spilled copies.
    pub entries: usize,
    pub nlist: usize,
    pub dim: usize,
    pub pq_m: usize,
    pub pq_bits: u8,
    /// Whether the segment has 8-bit codes of its rows for exact scans.
    pub sq8: bool,
    /// Whether each probed list makes its own table (L2 over residuals; inner products share
    /// one): [`cost::L2_TABLE_NS_PER_ENTRY`] a probed list.
    pub list_tables: bool,
}

impl SegShape {
    /// Estimated nanoseconds of the exact scan of `matching` rows read one by one from `from`:
    /// each translated first unless they are index rows already.
    fn exact_matches_ns(&self, matching: usize, from: MatchRows) -> f64 {
        matching as f64 * self.translate_ns(from) + self.exact_ns(matching)
    }

    /// Estimated nanoseconds of translating one match read from `from` to its index row.
    fn translate_ns(&self, from: MatchRows) -> f64 {
        match from {
            MatchRows::Translated => self.random_read_ns(
                cost::TRANSLATE_NS_PER_MATCH,
                cost::TRANSLATE_NS_PER_MATCH_LARGE,
            ),
            MatchRows::Index => 0.0,
        }
    }

    /// Estimated nanoseconds of one read at a random place of a per-row array: `cached` in a
    /// segment of up to [`cost::CACHED_ROWS`] rows, `large` from [`cost::LARGE_ROWS`], linearly
    /// in `log2(rows)` between.
    fn random_read_ns(&self, cached: f64, large: f64) -> f64 {
        let (lo, hi) = (
            (cost::CACHED_ROWS as f64).log2(),
            (cost::LARGE_ROWS as f64).log2(),
        );
        let t = ((self.rows.max(1) as f64).log2() - lo) / (hi - lo);
        cached + (large - cached) * t.clamp(0.0, 1.0)
    }

    /// Estimated nanoseconds of scoring `matching` rows exactly, index rows at hand.
    fn exact_ns(&self, matching: usize) -> f64 {
        let per = if self.sq8 {
            cost::EXACT_SQ8_NS_PER_COMPONENT
        } else {
            cost::EXACT_NS_PER_COMPONENT
        };
        matching as f64 * self.dim as f64 * per
    }

    /// About what share of a segment's rows lie in `nprobe` of its lists (their own or, with
    /// spilled copies, their second).
    fn probed_share(&self, nprobe: usize) -> f64 {
        let lists_per_row = self.entries as f64 / self.rows.max(1) as f64;
        (nprobe as f64 / self.nlist.max(1) as f64 * lists_per_row).min(1.0)
    }

    /// Whether [`plan_ivf`] could choose to read the matches one by one (the exact scan of
    /// all of them or of the probed lists') for `matching` rows whatever the widening: that
    /// costs no more than probing every list, with the probed lists no fewer than any widening
    /// leaves them. Asked only where the matches are to be listed from the filter's answer, so
    /// each is priced translated ([`MatchRows::Translated`]).
    pub fn reading_matches_possible(
        &self,
        params: &SearchParams,
        k: usize,
        matching: usize,
    ) -> bool {
        let from = MatchRows::Translated;
        let fewest = widened_nprobe(params, k, matching, self, Some(1.0));
        let cheapest = self
            .exact_matches_ns(matching, from)
            .min(self.probed_ns(matching, fewest, from));
        matching <= super::EXACT_SCAN_ROWS || cheapest <= self.ivf_ns(self.nlist, k, params.rerank)
    }

    /// Estimated nanoseconds of re-ranking `rows` raw vectors.
    fn rerank_ns(&self, rows: usize) -> f64 {
        rows as f64 * self.dim as f64 * cost::EXACT_NS_PER_COMPONENT
    }

    /// Estimated nanoseconds of choosing the lists to probe.
    fn coarse_ns(&self) -> f64 {
        self.nlist as f64 * self.dim as f64 * cost::COARSE_NS_PER_COMPONENT
    }

    /// Estimated nanoseconds a probed list costs the 4-bit scan beside its codes: its table
    /// (on L2) and its place.
    fn list_ns(&self) -> f64 {
        let per_entry = if self.list_tables {
            cost::LIST_TABLE_NS_PER_ENTRY + cost::L2_TABLE_NS_PER_ENTRY
        } else {
            cost::LIST_TABLE_NS_PER_ENTRY
        };
        self.pq_m as f64 * 16.0 * per_entry
    }

    /// Estimated nanoseconds of the IVF-PQ scan probing `nprobe` lists with a filter admitted
    /// inside it, then re-ranking `k * rerank` raw vectors.
    fn ivf_ns(&self, nprobe: usize, k: usize, rerank: usize) -> f64 {
        let probed_rows = nprobe as f64 / self.nlist.max(1) as f64 * self.entries as f64;
        let per_code = if self.pq_bits == 4 {
            cost::FASTSCAN_NS_PER_CODE
        } else {
            cost::TABLE_NS_PER_CODE
        };
        let tables = if self.pq_bits == 4 {
            nprobe as f64 * self.list_ns()
        } else {
            0.0
        };
        self.coarse_ns()
            + tables
            + probed_rows * (self.pq_m.max(1) as f64 * per_code + cost::FILTERED_NS_PER_ENTRY)
            + self.rerank_ns(k * rerank)
    }

    /// Estimated nanoseconds of the IVF-PQ scan probing `nprobe` lists for only the entries of
    /// `subset` of the rows ([`Plan::Subset`]), then re-ranking `k * rerank` raw vectors: each
    /// probed list makes its table and scores whole blocks of 32 entries.
    fn subset_ns(&self, nprobe: usize, k: usize, rerank: usize, subset: usize) -> f64 {
        let share = subset as f64 / self.rows.max(1) as f64;
        let per_list = self.entries as f64 * share / self.nlist.max(1) as f64;
        // A list with entries scores at least one block.
        let blocks = if per_list >= 1.0 {
            (per_list / fastscan::BLOCK as f64).ceil()
        } else {
            per_list
        };
        let scan = blocks * fastscan::BLOCK as f64 * self.pq_m as f64 * cost::FASTSCAN_NS_PER_CODE;
        self.coarse_ns() + nprobe as f64 * (self.list_ns() + scan) + self.rerank_ns(k * rerank)
    }

    /// Estimated nanoseconds of the exact scan of the entries of `subset` rows in the `nprobe`
    /// lists nearest the query, read per list ([`Plan::SubsetProbed`]).
    fn subset_probed_ns(&self, nprobe: usize, subset: usize) -> f64 {
        let share = subset as f64 / self.rows.max(1) as f64;
        let probed = nprobe as f64 / self.nlist.max(1) as f64 * self.entries as f64 * share;
        self.coarse_ns()
            + nprobe as f64 * cost::ROWS_NS_PER_LIST
            + self.exact_ns(probed.ceil() as usize)
    }

    /// Estimated nanoseconds of scoring every code of `subset` rows with one table
    /// ([`Plan::SubsetCodes`]; every list's coarse term first), then re-ranking `k * rerank`
    /// raw vectors. The blocks of far lists that the scan skips are not counted: an upper bound.
    fn subset_codes_ns(&self, k: usize, rerank: usize, subset: usize) -> f64 {
        let per_entry = self.pq_m as f64 * cost::FASTSCAN_NS_PER_CODE + cost::OFFSET_NS_PER_ENTRY;
        self.coarse_ns() + subset as f64 * per_entry + self.rerank_ns(k * rerank.max(1))
    }

    /// Estimated nanoseconds of the exact scan of those of `matching` rows, read from `from`,
    /// in the `nprobe` lists nearest the query: each match translated (unless an index row
    /// already) and its lists looked up, then the share of them in a probed list (its own or,
    /// with spilled copies, its second) scanned exactly. Infinite (never chosen) when that
    /// share is above [`cost::PROBED_MAX_SHARE`].
    fn probed_ns(&self, matching: usize, nprobe: usize, from: MatchRows) -> f64 {
        let share = self.probed_share(nprobe);
        if share > cost::PROBED_MAX_SHARE {
            return f64::INFINITY;
        }
        let lookup =
            self.random_read_ns(cost::LOOKUP_NS_PER_MATCH, cost::LOOKUP_NS_PER_MATCH_LARGE);
        self.coarse_ns()
            + matching as f64 * (self.translate_ns(from) + lookup)
            + self.exact_ns((matching as f64 * share).ceil() as usize)
    }
}

/// The lists a search for `matching` of a segment's rows probes: `params.nprobe` widened by
/// `widening` (by `1/sqrt(share)` without one; never narrowed), and at least enough lists to
/// hold `4 × k × rerank` matches on average.
fn widened_nprobe(
    params: &SearchParams,
    k: usize,
    matching: usize,
    seg: &SegShape,
    widening: Option<f64>,
) -> usize {
    let nlist = seg.nlist.max(1);
    let s = matching as f64 / seg.rows.max(1) as f64;
    let widened = (params.nprobe as f64 * widening.unwrap_or(1.0 / s.sqrt()).max(1.0)).ceil();
    let fill = (4 * k * params.rerank.max(1)) as f64 * nlist as f64 / matching.max(1) as f64;
    widened.max(fill.ceil()).min(nlist as f64).max(1.0) as usize
}

/// Chooses the plan for one built segment (see the module doc): of the exact scan of all
/// matches, the exact scan of the probed lists' matches and the widened IVF-PQ scan, the one
/// estimated cheapest, the exact scan of all winning ties; unless a plan over only the entries
/// of the filter's indexed value's `subset` rows (when the segment keeps them or has room for
/// them in its form: the same widened scan over their 4-bit codes per list, every code of them
/// with one table, or the exact scan of those in the probed lists) is estimated
/// [`cost::SUBSET_MIN_GAIN`] times cheaper than all three, the cheapest of those then.
/// `widening` is the factor the segment's
/// calibration measured for this share of matching rows ([`Calibration::widening`]); without
/// one (an uncalibrated segment, or one calibrated before filtered curves existed) `nprobe` is
/// widened by `1/sqrt(share)`.
///
/// [`Calibration::widening`]: super::calibrate::Calibration::widening
pub(super) fn plan_ivf(
    params: &SearchParams,
    k: usize,
    matching: usize,
    seg: &SegShape,
    widening: Option<f64>,
    subset: Option<Regroupable>,
    from: MatchRows,
) -> Plan {
    let rows = seg.rows;
    if matching == 0 || rows == 0 || matching <= super::EXACT_SCAN_ROWS {
        return Plan::Exact;
    }
    if matching == rows {
        // Unfiltered and nothing deleted: the caller's parameters as they are.
        return Plan::Ivf(*params);
    }
    let nprobe = widened_nprobe(params, k, matching, seg, widening);
    let widened = SearchParams {
        nprobe,
        rerank: params.rerank,
    };
    let exact = seg.exact_matches_ns(matching, from);
    let probed = seg.probed_ns(matching, nprobe, from);
    let ivf = seg.ivf_ns(nprobe, k, params.rerank);
    let (lists, codes, rows_probed) = match subset {
        Some(s) => (
            if s.lists && seg.pq_bits == 4 {
                seg.subset_ns(nprobe, k, params.rerank, s.rows)
            } else {
                f64::INFINITY
            },
            if s.codes && seg.pq_bits == 4 {
                seg.subset_codes_ns(k, params.rerank, s.rows)
            } else {
                f64::INFINITY
            },
            if s.row_lists {
                seg.subset_probed_ns(nprobe, s.rows)
            } else {
                f64::INFINITY
            },
        ),
        None => (f64::INFINITY, f64::INFINITY, f64::INFINITY),
    };
    let others = exact.min(probed).min(ivf);
    let regrouped = lists.min(codes).min(rows_probed);
    if regrouped * cost::SUBSET_MIN_GAIN <= others {
        if rows_probed <= lists.min(codes) {
            Plan::SubsetProbed(widened)
        } else if codes <= lists {
            Plan::SubsetCodes(widened)
        } else {
            Plan::Subset(widened)
        }
    } else if exact <= probed.min(ivf) {
        Plan::Exact
    } else if probed <= ivf {
        Plan::Probed(widened)
    } else {
        Plan::Ivf(widened)
    }
}

impl Plan {
    /// Whether the plan reads the matching rows one by one, so that their list is all it
    /// needs of them ([`Matches::List`]).
    pub fn reads_matches(&self) -> bool {
        matches!(self, Plan::Exact | Plan::Probed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MatchRows::{Index, Translated};

    /// The MiniLM segment the costs were measured on: the plans measured fastest there are the
    /// ones chosen (exact at 1%, IVF-PQ at 10% and 50% with 4-bit codes; with 8-bit codes,
    /// whose scan costs 14 times as much a code, exact up to 10%).
    #[test]
    fn plans_follow_the_measured_costs() {
        let params = SearchParams {
            nprobe: 49,
            rerank: 6,
        };
        let four = SegShape {
            rows: 57_922,
            entries: 57_922,
            nlist: 256,
            dim: 384,
            pq_m: 192,
            pq_bits: 4,
            sq8: false,
            list_tables: false,
        };
        let eight = SegShape {
            pq_m: 64,
            pq_bits: 8,
            ..four
        };
        let at = |shape: &SegShape, share: f64| {
            plan_ivf(
                &params,
                10,
                (shape.rows as f64 * share) as usize,
                shape,
                None,
                None,
                Translated,
            )
        };
        assert_eq!(at(&four, 0.01), Plan::Exact);
        assert!(matches!(at(&four, 0.1), Plan::Ivf(p) if p.nprobe == 155 && p.rerank == 6));
        assert!(matches!(at(&four, 0.5), Plan::Ivf(p) if p.nprobe == 70));
        assert_eq!(at(&eight, 0.01), Plan::Exact);
        assert_eq!(at(&eight, 0.1), Plan::Exact);
        assert!(matches!(at(&eight, 0.5), Plan::Ivf(_)));
        // With 8-bit codes the exact scan costs about a third as much: still exact at 1%, and
        // taken at 3% where the widened scan would probe every list, and at 10% where it would
        // probe 155 of the 256 (35,000 entries, each candidate admitted by the filter); not at
        // 10% with the widening measured (1.6×, 79 lists).
        let coded = SegShape { sq8: true, ..four };
        assert_eq!(at(&coded, 0.01), Plan::Exact);
        assert_eq!(at(&coded, 0.03), Plan::Exact);
        assert_eq!(at(&coded, 0.1), Plan::Exact);
        let measured = plan_ivf(
            &params,
            10,
            coded.rows / 10,
            &coded,
            Some(1.6),
            None,
            Translated,
        );
        assert!(
            matches!(measured, Plan::Ivf(p) if p.nprobe == 79),
            "{measured:?}"
        );
        // Few matches are always searched exactly, everything unfiltered as asked.
        assert_eq!(
            plan_ivf(&params, 10, 300, &four, None, None, Translated),
            Plan::Exact
        );
        assert_eq!(
            plan_ivf(&params, 10, four.rows, &four, None, None, Translated),
            Plan::Ivf(params)
        );
        // A 200k-row segment of 1M × 128 with spilled copies and 8-bit codes, as measured: at
        // 1% the 60 probed lists of 512 hold about a quarter of the matches, and the exact scan
        // of just those is chosen; at 0.1% all of them are scanned.
        let sift = SegShape {
            rows: 200_000,
            entries: 400_000,
            nlist: 512,
            dim: 128,
            pq_m: 64,
            pq_bits: 4,
            sq8: true,
            list_tables: true,
        };
        let p = SearchParams {
            nprobe: 10,
            rerank: 4,
        };
        assert_eq!(
            plan_ivf(&p, 10, 2_000, &sift, Some(6.0), None, Translated),
            Plan::Probed(SearchParams { nprobe: 60, ..p })
        );
        assert_eq!(
            plan_ivf(&p, 10, 200, &sift, Some(20.0), None, Translated),
            Plan::Exact
        );
        // `reading_matches_possible` never rules out a plan `plan_ivf` makes read the matches,
        // whatever the widening, and does rule out a 50% filter over 4-bit codes.
        for shape in [four, eight, coded] {
            for matching in (1..=shape.rows).step_by(97) {
                for widening in [None, Some(1.0), Some(4.0), Some(1000.0)] {
                    if plan_ivf(&params, 10, matching, &shape, widening, None, Translated)
                        .reads_matches()
                    {
                        assert!(shape.reading_matches_possible(&params, 10, matching));
                    }
                }
            }
        }
        assert!(!four.reading_matches_possible(&params, 10, four.rows / 2));
        // A measured widening replaces `1/sqrt(share)`: at 10%, 1.6x instead of 3.2x.
        let measured = plan_ivf(
            &params,
            10,
            four.rows / 10,
            &four,
            Some(1.6),
            None,
            Translated,
        );
        assert!(
            matches!(measured, Plan::Ivf(p) if p.nprobe == 79),
            "{measured:?}"
        );
    }

    /// The 1M × 128 L2 segment the plans were measured on: one segment of the SIFT-hard set,
    /// spilled copies, 8-bit codes, 4-bit PQ at 2 dimensions a sub-space.
    fn sift_1m() -> SegShape {
        SegShape {
            rows: 1_000_000,
            entries: 2_000_000,
            nlist: 1145,
            dim: 128,
            pq_m: 64,
            pq_bits: 4,
            sq8: true,
            list_tables: true,
        }
    }

    /// A 1M × 128 L2 segment with spilled copies and 8-bit codes, as measured: a 1% value's
    /// rows (17.5 entries a list) are scored exactly in the 47 probed lists, read per list,
    /// rather than scanned from their codes there, whose tables (one a list on L2) would cost
    /// more than the exact scores; a 10% value (175 entries a list) is scanned from its codes;
    /// with inner products (one table shared by every list) the 1% value is scanned too; and
    /// each plan is taken only from the forms the segment keeps or has room for.
    #[test]
    fn a_sparse_value_s_probed_rows_are_scored_exactly_where_l2_tables_would_dominate() {
        let l2 = sift_1m();
        let inner = SegShape {
            list_tables: false,
            ..l2
        };
        let p = SearchParams {
            nprobe: 10,
            rerank: 6,
        };
        let every = |rows| Regroupable {
            rows,
            lists: true,
            codes: true,
            row_lists: true,
        };
        let widened = |nprobe| SearchParams { nprobe, ..p };
        let at = |shape: &SegShape, rows, widening, forms| {
            plan_ivf(&p, 10, rows, shape, Some(widening), Some(forms), Translated)
        };
        assert_eq!(
            at(&l2, 10_000, 4.7, every(10_000)),
            Plan::SubsetProbed(widened(47))
        );
        assert_eq!(
            at(&l2, 100_000, 2.0, every(100_000)),
            Plan::Subset(widened(20))
        );
        assert_eq!(
            at(&inner, 10_000, 4.7, every(10_000)),
            Plan::Subset(widened(47))
        );
        // Without room for the rows per list, the per-list codes; with no form, the probed
        // plan, which looks up every match's lists.
        let no_rows = Regroupable {
            row_lists: false,
            ..every(10_000)
        };
        assert_eq!(at(&l2, 10_000, 4.7, no_rows), Plan::Subset(widened(47)));
        let none = Regroupable {
            lists: false,
            codes: false,
            ..no_rows
        };
        assert_eq!(at(&l2, 10_000, 4.7, none), Plan::Probed(widened(47)));
    }

    /// A 1M × 128 segment (spilled copies, 8-bit codes) with one indexed value and no
    /// regrouped form takes the plans measured fastest there with each plan forced
    /// (`benches/results/filter-probed-cost-2026-12-07.txt`, ms a query at the calibrated
    /// `nprobe`). Listed from the posting and translated, the matches cost the exact scan
    /// 0.18 / 0.50 / 1.38 ms at 0.3 / 1 / 3% and the probed plan 0.17 / 0.41 / 0.95, against
    /// the IVF scan's 1.08 / 0.59 / 0.51: the probed plan at 0.3% and 1%, the IVF scan from 3%.
    /// Read from the value's kept index rows, no match is translated: the two plans reading
    /// the matches cost less, and take 1% where the IVF scan is dearer, not 3% where it is
    /// cheaper still. A 58k-row segment's per-row arrays stay in cache: their reads cost the
    /// small end.
    #[test]
    fn a_large_segment_prices_each_match_s_translation_and_look_up() {
        let shape = sift_1m();
        let p = SearchParams {
            nprobe: 10,
            rerank: 6,
        };
        let at = |matching, widening, from| {
            plan_ivf(&p, 10, matching, &shape, Some(widening), None, from)
        };
        let widened = |nprobe| SearchParams { nprobe, ..p };
        for from in [Translated, Index] {
            assert_eq!(at(3_000, 9.2, from), Plan::Probed(widened(92)));
            assert_eq!(at(10_000, 4.5, from), Plan::Probed(widened(45)));
            assert_eq!(at(30_000, 3.1, from), Plan::Ivf(widened(31)));
            assert_eq!(at(100_000, 2.0, from), Plan::Ivf(widened(20)));
        }
        // Translation is what the kept index rows save, in the exact scan and the probed plan.
        let saved =
            shape.exact_matches_ns(10_000, Translated) - shape.exact_matches_ns(10_000, Index);
        assert!((190_000.0..200_000.0).contains(&saved), "{saved}");
        let saved = shape.probed_ns(10_000, 45, Translated) - shape.probed_ns(10_000, 45, Index);
        assert!((190_000.0..200_000.0).contains(&saved), "{saved}");
        let small = SegShape {
            rows: 57_922,
            ..shape
        };
        let (lookup, translate) = (cost::LOOKUP_NS_PER_MATCH, cost::TRANSLATE_NS_PER_MATCH);
        assert_eq!(
            small.random_read_ns(lookup, cost::LOOKUP_NS_PER_MATCH_LARGE),
            lookup
        );
        assert_eq!(small.translate_ns(Translated), translate);
        let mid = SegShape {
            rows: 400_000,
            ..shape
        };
        let t = mid.translate_ns(Translated);
        assert!(
            t > translate && t < cost::TRANSLATE_NS_PER_MATCH_LARGE,
            "{t}"
        );
    }
}
