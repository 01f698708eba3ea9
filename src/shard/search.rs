//! The search path: a query over an immutable view of the segments, each searched with the
//! parameters its plan resolved (exactly over flat chunks; through the IVF-PQ index, or exactly
//! over a filter's matches, in sealed segments), merged by distance then id.

#[cfg(test)]
use super::pause_at;
use super::planner::{self, MatchRows, Matches, matches};
use super::segment::{CHUNK_ROWS, Chunk, IvfSeg, SegBody, Segment};
use super::subsets::{self, SubsetChoice};
use super::{
    CompiledFilter, PointId, Record, SearchPlan, Shard, ShardError, Tuning, check_vector, read,
    record_in,
};
use crate::index::ivfpq::{SearchParams, SubsetCodes, SubsetLists, SubsetMembers, SubsetRows};
use crate::index::{Metric, Neighbor, RowSet, TopK, distance};
use std::borrow::Cow;
use std::sync::Arc;

/// A filter letting at most this many rows of a sealed segment through is answered by scanning
/// those rows exactly: cheaper than probing lists that hold few of them, and it never comes back
/// short of the limit.
pub const EXACT_SCAN_ROWS: usize = 512;

/// A search hit with its distance (smaller is closer, see [`Metric`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The point.
    pub record: Record,
    /// Its distance to the query.
    pub distance: f32,
}

/// A search as the shard runs it.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// The query vector.
    pub vector: &'a [f32],
    /// Hits to return (after `offset`).
    pub limit: usize,
    /// Best hits to skip.
    pub offset: usize,
    /// Only points passing this filter.
    pub filter: Option<&'a CompiledFilter>,
    /// IVF lists to probe in sealed segments ([`Shard::search_tuned`]: only in segments without
    /// a calibration, unless its [`Tuning`] fixes it).
    pub nprobe: usize,
    /// Re-rank factor in sealed segments, 0 = ADC distances (as `nprobe` for `search_tuned`).
    pub rerank: usize,
    /// Scan every row exactly instead of using the IVF-PQ index.
    pub exact: bool,
    /// Return payloads.
    pub with_payload: bool,
    /// Return vectors.
    pub with_vector: bool,
}

impl Shard {
    /// The segments as they are now: an immutable view that queries search without the lock.
    pub(super) fn view(&self) -> Vec<Segment> {
        read(&self.inner.state).segments.clone()
    }

    /// Waits until no segment is regrouping an indexed value's codes on the build pool
    /// ([`super::subsets`]): a benchmark's warm-up, or a test that wants the plans a segment
    /// takes once it keeps them.
    pub fn wait_for_regrouping(&self) {
        for seg in self.view() {
            if let SegBody::Ivf(ivf) = &seg.body {
                ivf.subsets.wait_settled();
            }
        }
    }

    /// The nearest live points to the query, closest first (ties by id), searching sealed
    /// segments with exactly `req.nprobe` and `req.rerank`.
    pub fn search(&self, req: &SearchRequest<'_>) -> Result<Vec<Hit>, ShardError> {
        self.search_tuned(req, &Tuning::explicit(req.nprobe, req.rerank))
    }

    /// The nearest live points to the query, closest first (ties by id), each sealed segment
    /// searched with the parameters `tuning` picks for it (see [`tuning`](super::tuning)); `req.nprobe` and
    /// `req.rerank` serve segments that have no calibration.
    pub fn search_tuned(
        &self,
        req: &SearchRequest<'_>,
        tuning: &Tuning,
    ) -> Result<Vec<Hit>, ShardError> {
        let fallback = SearchParams {
            nprobe: req.nprobe,
            rerank: req.rerank,
        };
        self.search_planned(req, &self.plan_search(tuning, fallback)?)
    }

    /// The nearest live points to the query over the segments of `plan`, each sealed one with
    /// the parameters the plan resolved for it ([`Shard::plan_search`]).
    pub fn search_planned(
        &self,
        req: &SearchRequest<'_>,
        plan: &SearchPlan,
    ) -> Result<Vec<Hit>, ShardError> {
        check_vector(self.inner.config.dim, req.vector)?;
        if req.nprobe == 0 {
            return Err(ShardError::Param("nprobe must be at least 1".into()));
        }
        let k = req.limit.saturating_add(req.offset);
        if k == 0 {
            return Ok(Vec::new());
        }
        let metric = self.inner.config.metric;
        let mut query = req.vector.to_vec();
        if metric == Metric::Cosine {
            distance::normalize(&mut query);
        }
        let view = &plan.segments;
        #[cfg(test)]
        pause_at(&self.inner.hooks.search);
        let pq = (self.inner.config.pq_m, self.inner.config.pq_bits);
        let mut all: Vec<(f32, PointId, usize, u32)> = Vec::new();
        for (i, seg) in view.iter().enumerate() {
            // Rows whose vector was deleted are not searched.
            let seg = &*seg.searchable();
            if seg.live_count == 0 {
                continue;
            }
            let filter = req.filter.filter(|f| !f.is_empty());
            // A built segment's search is made once: it looks up the filter's subset.
            let body = match &seg.body {
                SegBody::Ivf(ivf) => Body::Built(BuiltSearch::new(plan, i, ivf, k, pq, filter)),
                SegBody::Flat(chunks) => Body::Flat(chunks),
            };
            let by_posting = match &body {
                // Every row live: the value's rows need no check.
                Body::Built(built) if !req.exact => {
                    built.search_posting(&query, (seg.live_count < seg.rows).then_some(&*seg.live))
                }
                _ => None,
            };
            let hits: Vec<Neighbor> = match by_posting {
                Some(hits) => hits,
                None => {
                    let found = filter.map(|f| match &body {
                        Body::Built(built) => planner::matches_for_search(seg, f, |n| {
                            req.exact || built.reads_matches(n)
                        }),
                        Body::Flat(_) => matches(seg, Some(f)),
                    });
                    let (pass, matching) = match &found {
                        Some(Matches::Set(s)) => (Pass::Set(s), s.count()),
                        Some(Matches::List(l)) => (Pass::List(l), l.len()),
                        Some(Matches::Posting(d)) => (Pass::Set(&d.rows), d.count as usize),
                        None => (Pass::Set(&seg.live), seg.live_count),
                    };
                    if matching == 0 {
                        continue;
                    }
                    match &body {
                        Body::Built(built) => built.search(&query, pass, matching, req.exact),
                        Body::Flat(chunks) => {
                            let set = pass.to_set(seg.rows);
                            search_chunks(chunks, &query, k, (matching < seg.rows).then_some(&*set))
                        }
                    }
                }
            };
            all.extend(hits.into_iter().filter_map(|n| {
                let row = n.id as usize;
                seg.body
                    .point(row)
                    .map(|id| (n.distance, id, i, row as u32))
            }));
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(all
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .filter_map(|(d, id, i, row)| {
                record_in(&view[i], id, row, req.with_payload, req.with_vector).map(|record| Hit {
                    record,
                    distance: d,
                })
            })
            .collect())
    }
}

/// The rows a segment's search may return: a set over its rows, or (a selective filter answered
/// by a payload index, see [`planner::SPARSE_SHARE`]) their ascending list.
#[derive(Clone, Copy)]
enum Pass<'a> {
    Set(&'a RowSet),
    List(&'a [u32]),
}

impl<'a> Pass<'a> {
    /// The rows as a set over `rows` rows (built only for a list).
    fn to_set(self, rows: usize) -> Cow<'a, RowSet> {
        match self {
            Pass::Set(s) => Cow::Borrowed(s),
            Pass::List(l) => Cow::Owned(RowSet::from_rows(rows, l.iter().map(|&r| r as usize))),
        }
    }
}

/// Exact search over a flat segment's chunks; `allowed` (over segment rows) limits the rows.
fn search_chunks(
    chunks: &[Arc<Chunk>],
    query: &[f32],
    k: usize,
    allowed: Option<&RowSet>,
) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    for (c, chunk) in chunks.iter().enumerate() {
        match allowed {
            None => chunk.flat.scan(query, None, &mut top),
            Some(a) => {
                let w0 = c * CHUNK_ROWS / 64;
                let Some(words) = a.words().get(w0..w0 + chunk.len().div_ceil(64)) else {
                    continue;
                };
                let Some(local) = RowSet::from_words(chunk.len(), words.to_vec()) else {
                    continue;
                };
                if local.count() > 0 {
                    chunk.flat.scan(query, Some(&local), &mut top);
                }
            }
        }
    }
    top.into_sorted_vec()
}

/// How one segment is searched: exactly over a flat segment's chunks, or through a built one's
/// plan.
enum Body<'a> {
    Flat(&'a [Arc<Chunk>]),
    Built(BuiltSearch<'a>),
}

/// One search of one built segment: what its plan and its scan need besides the query.
struct BuiltSearch<'a> {
    ivf: &'a Arc<IvfSeg>,
    k: usize,
    /// The parameters the search plan resolved for the segment.
    params: &'a SearchParams,
    /// The recall target the widening is read at.
    target: f64,
    /// The collection's `(pq_m, pq_bits)`.
    pq: (usize, u8),
    /// The filter's indexed value whose rows' codes the scan may read alone
    /// ([`super::subsets`]): the forms the segment keeps them in or has room to make, and the
    /// forms it keeps now.
    subset: Option<(SubsetChoice, planner::Regroupable, planner::Regroupable)>,
}

impl<'a> BuiltSearch<'a> {
    /// The search of `plan`'s segment `i`, built as `ivf`, for `filter`.
    fn new(
        plan: &'a SearchPlan,
        i: usize,
        ivf: &'a Arc<IvfSeg>,
        k: usize,
        pq: (usize, u8),
        filter: Option<&CompiledFilter>,
    ) -> Self {
        // Any code width: the planner offers each regrouped form only where it works (the
        // two that score codes need 4-bit ones; the value's rows per list take any).
        let subset = filter
            .and_then(|f| subsets::choose(&ivf.payload_index(), f))
            .map(|c| {
                let [
                    (lists, kept_lists),
                    (codes, kept_codes),
                    (row_lists, kept_row_lists),
                ] = ivf.subsets.forms(&ivf.index, &c);
                let possible = planner::Regroupable {
                    rows: c.rows,
                    lists,
                    codes,
                    row_lists,
                };
                let kept = planner::Regroupable {
                    rows: c.rows,
                    lists: kept_lists,
                    codes: kept_codes,
                    row_lists: kept_row_lists,
                };
                (c, possible, kept)
            });
        BuiltSearch {
            ivf,
            k,
            params: &plan.params[i],
            target: plan.target,
            pq,
            subset,
        }
    }

    /// The shape of the segment, as its plan's costs need it.
    fn shape(&self) -> planner::SegShape {
        let index = &self.ivf.index;
        planner::SegShape {
            rows: index.len(),
            entries: index.entries(),
            nlist: index.nlist(),
            dim: index.dim(),
            pq_m: self.pq.0,
            pq_bits: self.pq.1,
            sq8: index.sq8().is_some(),
            list_tables: index.list_tables(),
        }
    }

    /// Whether the search for `matching` rows reads them one by one
    /// ([`planner::Plan::reads_matches`]), without reading the calibration when a scan of
    /// every list would cost less than that.
    fn reads_matches(&self, matching: usize) -> bool {
        self.shape()
            .reading_matches_possible(self.params, self.k, matching)
            && self.plan(matching, MatchRows::Translated).reads_matches()
    }

    /// How the segment is searched for `matching` of its rows ([`planner::plan_ivf`]), with
    /// `nprobe` widened as its calibration measured for that share at the recall target, the
    /// plans reading the matches one by one reading them `from` there.
    fn plan(&self, matching: usize, from: MatchRows) -> planner::Plan {
        let index = &self.ivf.index;
        let share = matching as f64 / index.len().max(1) as f64;
        let widening = match &self.ivf.calibration {
            Some(c) if matching < index.len() => c.widening(share, self.target, self.params.rerank),
            _ => None,
        };
        let shape = self.shape();
        let plan_with = |subset| {
            planner::plan_ivf(
                self.params,
                self.k,
                matching,
                &shape,
                widening,
                subset,
                from,
            )
        };
        let Some((_, possible, kept)) = &self.subset else {
            return plan_with(None);
        };
        // A subset plan whose form is not kept yet asks for it to be made in the background
        // and takes the best plan without it meanwhile.
        match plan_with(Some(*possible)) {
            planner::Plan::Subset(_) if !kept.lists => self.regroup_later::<SubsetLists>(),
            planner::Plan::SubsetCodes(_) if !kept.codes => self.regroup_later::<SubsetCodes>(),
            planner::Plan::SubsetProbed(_) if !kept.row_lists => self.regroup_later::<SubsetRows>(),
            wanted => return wanted,
        }
        plan_with(Some(*kept).filter(planner::Regroupable::any))
    }

    /// Has the codes of the filter's indexed value's rows regrouped in form `T` on the build
    /// pool, unless they are kept, being made, refused or past the budget: a search never
    /// waits for them (a 50% value of a 500,000-row segment takes 150 ms).
    fn regroup_later<T: subsets::Regrouped>(&self) {
        let Some((choice, ..)) = &self.subset else {
            return;
        };
        let Some(claim) = self.ivf.subsets.claim(&self.ivf.index, choice, T::FORM) else {
            return;
        };
        let ivf = Arc::clone(self.ivf);
        let (field, key) = choice.key.clone();
        super::build_pool::submit(move || {
            ivf.subsets.make::<T>(&ivf.index, claim, || {
                let index = ivf.payload_index();
                Some(index.field(&field)?.posting_rows(&key, ivf.points.len()))
            });
        });
    }

    /// The codes of the filter's indexed value's rows in form `T`, if the segment keeps them.
    fn regrouped<T: subsets::Regrouped>(&self) -> Option<Arc<T>> {
        let (choice, ..) = self.subset.as_ref()?;
        self.ivf.subsets.kept::<T>(choice)
    }

    /// The search of a filter that is one indexed equality and nothing else
    /// ([`SubsetChoice::whole`]) when its plan scores only that value's rows' codes, or is the
    /// exact scan of its rows (all, or those in the probed lists) read from their kept index
    /// rows ([`SubsetMembers`]), planned as such (no match translated): those rows are the
    /// matches, so each candidate is checked against the segment's `live` rows alone,
    /// and no set of the matches is made — a pass over the posting and a set over every row of
    /// the segment, per query, which took a third of a 1% filter's time on 1M rows. `None`
    /// when the plan is another, the segment has no room for the value's codes or rows, or
    /// deletes left fewer than `k` of its rows (the search with the matches then decides).
    fn search_posting(&self, query: &[f32], live: Option<&RowSet>) -> Option<Vec<Neighbor>> {
        let (choice, ..) = self.subset.as_ref().filter(|(c, ..)| c.whole)?;
        let index = &self.ivf.index;
        let plan = self.plan(choice.rows, MatchRows::Index);
        tracing::trace!(
            ?plan,
            posting = choice.rows,
            rows = index.len(),
            "segment plan"
        );
        let hits = match plan {
            // A posting this small is translated per query in a few microseconds; made for
            // each of them, the rows of a field with many small values (an id, a user) would
            // keep the build pool busy with a pass over the index per new value.
            planner::Plan::Exact if choice.rows > EXACT_SCAN_ROWS => {
                self.search_members(query, live)?
            }
            planner::Plan::Probed(p) => match self.search_members_probed(query, p.nprobe, live)? {
                // The probed lists held too few of the value's rows: all of them.
                hits if hits.len() < self.k => self.search_members(query, live)?,
                hits => hits,
            },
            _ => self.search_subset(query, plan, live)?,
        };
        (hits.len() >= self.k).then_some(hits)
    }

    /// The exact scan of the filter's indexed value's rows that `allowed` admits (`None`: all
    /// of them), read from the value's kept index rows; `None` when they are not kept yet
    /// (they are then made in the background: a pass over the index's ids, 4 bytes a row).
    fn search_members(&self, query: &[f32], allowed: Option<&RowSet>) -> Option<Vec<Neighbor>> {
        let members = self.members()?;
        let index = &self.ivf.index;
        Some(index.exact_among_members(query, self.k, &members, allowed))
    }

    /// The exact scan of those of the filter's indexed value's rows that `allowed` admits
    /// (`None`: all of them) in the `nprobe` lists nearest the query, read from the value's
    /// kept index rows; `None` when they are not kept yet (as for [`Self::search_members`]).
    fn search_members_probed(
        &self,
        query: &[f32],
        nprobe: usize,
        allowed: Option<&RowSet>,
    ) -> Option<Vec<Neighbor>> {
        let members = self.members()?;
        let index = &self.ivf.index;
        Some(index.exact_among_probed_members(query, self.k, nprobe, &members, allowed))
    }

    /// The filter's indexed value's kept index rows; `None` when they are not kept yet, after
    /// asking for them to be made in the background (a pass over the index's ids, 4 bytes a
    /// row).
    fn members(&self) -> Option<Arc<SubsetMembers>> {
        let members = self.regrouped::<SubsetMembers>();
        if members.is_none() {
            self.regroup_later::<SubsetMembers>();
        }
        members
    }

    /// The scan of a subset plan over the value's kept codes for the rows `allowed` admits
    /// (`None`: all of them); `None` for another plan, or when the segment does not keep the
    /// codes in the plan's form.
    fn search_subset(
        &self,
        query: &[f32],
        plan: planner::Plan,
        allowed: Option<&RowSet>,
    ) -> Option<Vec<Neighbor>> {
        let (index, k) = (&self.ivf.index, self.k);
        match plan {
            planner::Plan::Subset(p) => {
                let lists = self.regrouped::<SubsetLists>()?;
                Some(index.search_subset_ids_in(query, k, &p, &lists, allowed))
            }
            planner::Plan::SubsetCodes(p) => {
                let codes = self.regrouped::<SubsetCodes>()?;
                Some(index.search_subset_codes_ids_in(query, k, &p, &codes, allowed))
            }
            planner::Plan::SubsetProbed(p) => {
                let rows = self.regrouped::<SubsetRows>()?;
                Some(index.exact_among_probed_subset(query, k, p.nprobe, &rows, allowed))
            }
            _ => None,
        }
    }

    /// The search: the index with the allowed rows passed in, an exact scan of those of them
    /// in the probed lists, or an exact scan of all of them when asked, when the filter is
    /// selective or when the probed lists held too few.
    fn search(
        &self,
        query: &[f32],
        allowed: Pass<'_>,
        matching: usize,
        exact: bool,
    ) -> Vec<Neighbor> {
        let (ivf, k) = (self.ivf, self.k);
        let index = &ivf.index;
        let plan = self.plan(matching, MatchRows::Translated);
        tracing::trace!(?plan, matching, rows = index.len(), "segment plan");
        let positions = || match allowed {
            Pass::Set(s) => ivf.positions(s.iter()),
            Pass::List(l) => ivf.positions(l.iter().map(|&r| r as usize)),
        };
        let mut read = None;
        let approx = match plan {
            _ if exact => None,
            planner::Plan::Exact => None,
            planner::Plan::Probed(p) => {
                let rows: &[u32] = read.insert(positions());
                Some(index.exact_among_probed(query, k, p.nprobe, rows))
            }
            // Every row is live and passes: nothing to check per candidate.
            planner::Plan::Ivf(p) if matching == index.len() => {
                Some(index.search(query, k, &p, None))
            }
            // The index's ids are segment rows: it checks each candidate against the allowed rows.
            planner::Plan::Ivf(p) => {
                Some(index.search_ids_in(query, k, &p, &allowed.to_set(index.len())))
            }
            planner::Plan::Subset(p)
            | planner::Plan::SubsetCodes(p)
            | planner::Plan::SubsetProbed(p) => {
                let allowed = allowed.to_set(index.len());
                // Not kept after all (the cache was cleared meanwhile): the whole lists.
                Some(
                    self.search_subset(query, plan, Some(&allowed))
                        .unwrap_or_else(|| index.search_ids_in(query, k, &p, &allowed)),
                )
            }
        };
        match approx {
            // The probed lists held enough matching rows.
            Some(hits) if hits.len() >= k.min(matching) => hits,
            // Exact requested, a selective filter, or too few matches in the probed lists: scan the
            // allowed rows exactly so the limit is still filled (through the 8-bit codes when the
            // segment has them: the same answer, a quarter of the memory traffic).
            _ => index.exact_among(query, k, &read.unwrap_or_else(positions)),
        }
    }
}

#[cfg(test)]
impl Shard {
    /// The plan each built segment takes for `req`, with `req.nprobe` and `req.rerank` as its
    /// parameters: so that tests can see which plan answered (a filter that is one indexed
    /// value reads its matches from the value's index rows once the segment keeps them).
    pub(super) fn plans(&self, req: &SearchRequest<'_>) -> Vec<planner::Plan> {
        let fallback = SearchParams {
            nprobe: req.nprobe,
            rerank: req.rerank,
        };
        let Ok(plan) = self.plan_search(&Tuning::explicit(req.nprobe, req.rerank), fallback) else {
            return Vec::new();
        };
        let pq = (self.inner.config.pq_m, self.inner.config.pq_bits);
        let k = req.limit.saturating_add(req.offset);
        plan.segments
            .iter()
            .enumerate()
            .filter_map(|(i, seg)| match &seg.body {
                SegBody::Ivf(ivf) => {
                    let built = BuiltSearch::new(&plan, i, ivf, k, pq, req.filter);
                    let members = built.subset.as_ref().is_some_and(|(c, ..)| c.whole)
                        && built.regrouped::<SubsetMembers>().is_some();
                    let from = if members {
                        MatchRows::Index
                    } else {
                        MatchRows::Translated
                    };
                    Some(built.plan(matches(seg, req.filter).count(), from))
                }
                SegBody::Flat(_) => None,
            })
            .collect()
    }
}
