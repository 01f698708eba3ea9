//! The search loop, written once for every code type: normalise the query, probe the closest
//! lists, hand each to the query's [`ListScanner`] (picked by [`with_scanner`]), keep the best
//! candidates in a [`TopK`], and re-rank them with exact distances when asked.

use std::borrow::Cow;

use super::scanner::{EntryId, ListScanner, ScanWith, with_scanner};
use super::{IvfPqIndex, SearchParams, SubsetLists};
use crate::index::coarse8::Coarse8;
use crate::index::distance::{self, normalize};
use crate::index::sq8::{Sq8, Sq8Query};
use crate::index::topk::cmp_neighbors;
use crate::index::{Metric, Neighbor, Reservoir, RowSet, TopK};

/// A re-rank goes through the 8-bit codes (when the index has them) once its pool holds at
/// least this many candidates per hit asked for. Measured on MiniLM (384-d, nlist 256,
/// `benches/ab.sh` with and without `shoal bench --sq8`, 3 alternated runs): QPS 0.91× at
/// rerank 2, 1.00× at 4, 1.07× at 8 and 1.12–1.16× at 16 — scoring the codes pays off only
/// where they spare many raw reads.
pub const RERANK_THROUGH_CODES_FROM: usize = 8;

impl IvfPqIndex {
    /// The query as rows are stored (normalised for cosine), or `None` when there is nothing to
    /// answer: a query of the wrong dimension or with non-finite values (callers validate input
    /// first), `k` 0 or no rows.
    pub(super) fn prepared<'q>(&self, query: &'q [f32], k: usize) -> Option<Cow<'q, [f32]>> {
        if query.len() != self.dim || k == 0 || self.n == 0 || query.iter().any(|v| !v.is_finite())
        {
            return None;
        }
        Some(if self.metric == Metric::Cosine {
            let mut v = query.to_vec();
            normalize(&mut v);
            Cow::Owned(v)
        } else {
            Cow::Borrowed(query)
        })
    }

    /// The `nprobe` lists closest to `q`, each with its coarse term: `||q - c||²` for L2,
    /// `-<q, c>` otherwise. Empty lists are never probed: under the Dot metric a centroid can win
    /// a query's inner product while owning no point, and probing it would waste one of `nprobe`.
    pub(super) fn probe(&self, q: &[f32], nprobe: usize) -> Vec<(usize, f32)> {
        match &self.coarse8 {
            // Shortlisting pays while it rules out most lists.
            Some(coarse8) if nprobe.saturating_mul(4) <= self.nlist => {
                self.probe_shortlisted(coarse8, q, nprobe).0
            }
            _ => self.probe_exact(q, nprobe),
        }
    }

    /// [`probe`](Self::probe) from exact products with every centroid.
    pub(super) fn probe_exact(&self, q: &[f32], nprobe: usize) -> Vec<(usize, f32)> {
        sorted_probes(self.best_lists(&self.coarse_scores(q), nprobe))
    }

    /// The `nprobe` lists holding rows whose `scores` (one per list) are lowest, kept
    /// unordered: how both probes that score every list select.
    fn best_lists(&self, scores: &[f32], nprobe: usize) -> Reservoir {
        // Bounded selection: most lists fail the first comparison against the kept worst.
        let mut best = Reservoir::new(nprobe);
        for (l, &s) in scores.iter().enumerate() {
            if s <= best.threshold() && self.has_rows(l) {
                best.push(l as u64, s);
            }
        }
        best
    }

    /// Every list's coarse term, from exact products with its centroid: `||q - c||²` for L2,
    /// `-<q, c>` otherwise.
    pub(super) fn coarse_scores(&self, q: &[f32]) -> Vec<f32> {
        let mut scores = vec![0.0f32; self.nlist];
        self.coarse.dots(q, &mut scores);
        self.dots_into_terms(q, &mut scores);
        scores
    }

    /// Turns every list's product with the query, `dots[l] = <q, c_l>`, into its coarse term,
    /// as [`coarse_term`](Self::coarse_term) does, in one pass that vectorises.
    fn dots_into_terms(&self, q: &[f32], dots: &mut [f32]) {
        if self.metric == Metric::L2 {
            let qn = distance::norm_sq(q);
            for (d, &cn) in dots.iter_mut().zip(&self.centroid_norms) {
                *d = qn + cn - 2.0 * *d;
            }
        } else {
            dots.iter_mut().for_each(|d| *d = -*d);
        }
    }

    /// The coarse terms of `lists` alone (as [`coarse_scores`](Self::coarse_scores) gives them,
    /// each a product with its row of centroids), `+inf` at every other list: for a search that
    /// needs only a few lists' terms, where the blocked pass over every centroid costs the
    /// same whether a list is needed or not (a 0.1% value of MiniLM's 1,024 lists touches 58).
    pub(super) fn coarse_scores_of(&self, q: &[f32], lists: &[u32]) -> Vec<f32> {
        let mut scores = vec![f32::INFINITY; self.nlist];
        let qn = if self.metric == Metric::L2 {
            distance::norm_sq(q)
        } else {
            0.0
        };
        let centroids: &[f32] = &self.centroids;
        for &l in lists {
            let l = l as usize;
            let Some(c) = centroids.get(l * self.dim..(l + 1) * self.dim) else {
                continue;
            };
            scores[l] = self.coarse_term(l, distance::dot(q, c), qn);
        }
        scores
    }

    /// List `list`'s coarse term from its centroid's product `dot` with the query, as
    /// [`coarse_scores`](Self::coarse_scores) gives it; `qn` is the query's squared norm (read
    /// for L2 only).
    #[inline]
    fn coarse_term(&self, list: usize, dot: f32, qn: f32) -> f32 {
        if self.metric == Metric::L2 {
            qn + self.centroid_norms[list] - 2.0 * dot
        } else {
            -dot
        }
    }

    /// The `nprobe` lists nearest `q` by their 8-bit centroids' scores alone, in no particular
    /// order, each with that approximate coarse term ([`probe`](Self::probe) without 8-bit
    /// centroids): the lists the plans that score the probed lists' matches exactly read
    /// ([`exact_among_probed`](Self::exact_among_probed) and the subset forms of it).
    ///
    /// Why not [`probe`](Self::probe): those plans are given ~5x the lists of an unfiltered
    /// search, and shortlisting that many (the worst-case cut, then exact products with the
    /// ~100 centroids within it, then a second selection and a sort) was a third of a 1%
    /// filter's query on 1M × 128 (perf). A list picked here instead of an exact one is within
    /// twice the 8-bit error bound of the `nprobe`-th nearest, so it differs from it only at
    /// the edge of the probed region, where lists hold the fewest neighbours; and the plans
    /// score every match of the lists they read exactly, in any order. Measured: the 1%
    /// filter at 1.27x its QPS, recall unchanged (0.962-0.974 both ways).
    pub(super) fn probe_approx(&self, q: &[f32], nprobe: usize) -> Vec<(usize, f32)> {
        match &self.coarse8 {
            Some(coarse8) => self.probe_approx_with(coarse8, q, nprobe),
            None => self.probe(q, nprobe),
        }
    }

    /// [`probe_approx`](Self::probe_approx) through `coarse8`.
    pub(super) fn probe_approx_with(
        &self,
        coarse8: &Coarse8,
        q: &[f32],
        nprobe: usize,
    ) -> Vec<(usize, f32)> {
        let mut scores = vec![0.0f32; self.nlist];
        let bound = coarse8.approx_dots(q, &mut scores);
        if !bound.fixed.is_finite() {
            return self.probe_exact(q, nprobe);
        }
        self.dots_into_terms(q, &mut scores);
        as_probes(self.best_lists(&scores, nprobe).into_vec())
    }

    /// [`probe`](Self::probe) through the 8-bit centroids: the same lists as
    /// [`probe_exact`](Self::probe_exact), from a quarter of the bytes.
    ///
    /// Every list gets an approximate score and a bound on its error ([`Coarse8`]). The
    /// `nprobe`-th best *worst-case* score is a cut no list whose *best-case* score lies above it
    /// can beat, so only the lists within it are scored exactly — typically a small multiple of
    /// `nprobe` out of `nlist`. Also returns how many lists were scored exactly.
    pub(super) fn probe_shortlisted(
        &self,
        coarse8: &Coarse8,
        q: &[f32],
        nprobe: usize,
    ) -> (Vec<(usize, f32)>, usize) {
        let mut dots = vec![0.0f32; self.nlist];
        let bound = coarse8.approx_dots(q, &mut dots);
        if !bound.fixed.is_finite() {
            return (self.probe_exact(q, nprobe), self.nlist);
        }
        let l2 = self.metric == Metric::L2;
        let qn = if l2 { distance::norm_sq(q) } else { 0.0 };
        // A score's error is the product's, doubled for L2, plus float rounding of the sums
        // (covered by a relative slack on their magnitude). `dots` becomes the scores, in one
        // branch-free pass over slices that vectorises (indexed per list, with the metric
        // tested inside, it was scalar: a large share of `probe`'s 15% of a query at nlist
        // 4096 in perf). Doubling is exact, so the values are those of `score` and the bound.
        let factor = if l2 { 2.0 } else { 1.0 };
        let (per, fixed) = (factor * bound.per_abs_code, factor * bound.fixed);
        let mut errors = vec![0.0f32; self.nlist];
        let lists = dots.iter_mut().zip(&mut errors).zip(coarse8.abs_sums());
        if l2 {
            for (((d, e), &abs), &cn) in lists.zip(&self.centroid_norms) {
                *e = (per * abs + fixed) * (1.0 + 1e-3) + 1e-5 * (qn + cn + factor * d.abs());
                *d = qn + cn - 2.0 * *d;
            }
        } else {
            for ((d, e), &abs) in lists {
                *e = (per * abs + fixed) * (1.0 + 1e-3) + 1e-5 * (factor * d.abs());
                *d = -*d;
            }
        }
        let scores = dots;
        // Both selections keep their best unordered and cut back in bulk ([`Reservoir`]): as
        // heaps, a wide probe replaced their worst hundreds of times a query, and the sifts
        // were 12% of a query at nprobe 64 of 2,048 lists (perf; 7% with the reservoirs) and
        // 7% of a 1% filter's on 1M × 128 (nprobe ~40 of ~800 lists a segment).
        let mut worst_case = Reservoir::new(nprobe);
        for (l, (&s, &e)) in scores.iter().zip(&errors).enumerate() {
            if s + e <= worst_case.threshold() && self.has_rows(l) {
                worst_case.push(l as u64, s + e);
            }
        }
        let cut = worst_case.into_kth_distance();
        let centroids: &[f32] = &self.centroids;
        let mut best = Reservoir::new(nprobe);
        let mut scored = 0;
        for (l, (&s, &e)) in scores.iter().zip(&errors).enumerate() {
            if s - e <= cut && self.has_rows(l) {
                scored += 1;
                let d = distance::dot(q, &centroids[l * self.dim..(l + 1) * self.dim]);
                best.push(l as u64, self.coarse_term(l, d, qn));
            }
        }
        (sorted_probes(best), scored)
    }

    /// The lists a search of `query` with `nprobe` scans, closest first; empty for a query the
    /// index would not answer. With [`IvfPqIndex::list_of_each_row`] it tells how much of a true
    /// neighbourhood the probed lists hold: the recall an IVF with exact lists would reach.
    pub fn probed_lists(&self, query: &[f32], nprobe: usize) -> Vec<usize> {
        match self.prepared(query, 1) {
            Some(q) => self.probe(&q, nprobe).into_iter().map(|(l, _)| l).collect(),
            None => Vec::new(),
        }
    }

    /// `(id, list)` for every entry: the inverted list each point was assigned to, and with
    /// spilling ([`IvfPqConfig::soar_lambda`](super::IvfPqConfig::soar_lambda)) also the list
    /// that holds its second copy (after every first assignment).
    pub fn list_of_each_row(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        let own = (0..self.nlist).flat_map(move |l| {
            let (start, end) = self.list_rows(l);
            (start..end).map(move |r| (self.ids[r], l))
        });
        let spilled = (0..self.nlist).flat_map(move |l| {
            self.list_spills(l)
                .iter()
                .map(move |&r| (self.ids[r as usize], l))
        });
        own.chain(spilled)
    }

    /// The `k` nearest rows' ids and distances, sorted by (distance, id), among the rows `filter`
    /// admits (rows in list order; all rows without one). Returns nothing for a query of the
    /// wrong dimension or with non-finite values (callers validate input first).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        filter: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        let allowed =
            |row: usize, _: EntryId<'_>| filter.is_none_or(|f| row < f.len() && f.contains(row));
        self.search_with(query, k, params, None, allowed)
    }

    /// [`search`](Self::search) among the rows whose *id* is in `ids` (ids below `ids.len()`).
    ///
    /// A shard segment's index uses its segment rows as ids, and its tombstones are a set of
    /// segment rows: this checks a candidate's id against them as it is met, where translating
    /// the set into list order first would cost a pass over every row of the segment per query
    /// (one deleted point in a 1M-row segment made every search ~15x slower).
    pub fn search_ids_in(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        ids: &RowSet,
    ) -> Vec<Neighbor> {
        let allowed = |_, id: EntryId<'_>| id_admitted(ids, id.get());
        self.search_with(query, k, params, None, allowed)
    }

    /// Whether a row's *id* is in `ids` (ids below `ids.len()`): how every search and subset
    /// over ids admits a row. The slab of ids is dereferenced once here, not per row (a deref
    /// asks its owner for the bytes).
    pub(super) fn id_in<'a>(&'a self, ids: &'a RowSet) -> impl Fn(usize) -> bool + 'a {
        let row_ids: &[u64] = &self.ids;
        move |row: usize| id_admitted(ids, row_ids[row])
    }

    /// A search that probes more lists step by step: [`GridSearch::advance`] to `nprobe`
    /// returns what [`search_ids_in`](Self::search_ids_in) (or, without `ids`,
    /// [`search`](Self::search)) returns at that `nprobe` without re-ranking (`rerank: 0`),
    /// scanning only the lists the previous steps did not (the lists probed at `nprobe` are the
    /// first `nprobe` of the closest-first probe order). A search per step would scan the first
    /// lists again every time: a segment's calibration measures its recall curve this way.
    /// `max_nprobe` is the last step; `None` when there is nothing to answer (see `prepared`).
    pub fn grid_search<'a>(
        &'a self,
        query: &[f32],
        k: usize,
        max_nprobe: usize,
        ids: Option<&'a RowSet>,
    ) -> Option<GridSearch<'a>> {
        let q = self.prepared(query, k)?.into_owned();
        let probes = self.probe(&q, max_nprobe.clamp(1, self.nlist));
        let pool = Reservoir::new(if self.has_spills() {
            k.saturating_mul(2)
        } else {
            k
        });
        Some(GridSearch {
            index: self,
            q,
            probes,
            pool,
            k,
            ids,
            scanned: 0,
        })
    }

    /// The search: probe, scan each probed list (only its entries in `subset`, when given) for
    /// the rows `allowed(row, id)` admits, re-rank.
    pub(super) fn search_with(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        subset: Option<&SubsetLists>,
        allowed: impl Fn(usize, EntryId<'_>) -> bool,
    ) -> Vec<Neighbor> {
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        let probes = self.probe(&q, params.nprobe.clamp(1, self.nlist));
        let rerank = params.rerank > 0;
        let spilled = self.has_spills();
        // Re-ranking takes the best `k * rerank` distinct rows. A spilled row can be met twice,
        // so the pool is twice that: it still holds the best `w` distinct rows for any `w` it
        // is twice (each takes at most two places, so the j-th best has at most 2(j - 1)
        // entries ahead of its best one).
        let wanted = candidates_for(k, params.rerank);
        let mut pool = Reservoir::new(if spilled {
            wanted.saturating_mul(2)
        } else {
            wanted
        });
        // Without re-ranking the pool holds ids directly; with it, rows (mapped to ids after).
        let key = |row: usize, id: EntryId<'_>| if rerank { row as u64 } else { id.get() };
        with_scanner(
            self,
            &q,
            subset,
            ScanProbes {
                probes: &probes,
                pool: &mut pool,
                key,
                allowed,
            },
        );
        let mut best = if spilled {
            best_of_each_id(pool.into_vec(), wanted)
        } else {
            pool.into_vec()
        };
        if rerank {
            // Re-ranking re-scores the rows whatever their order: no sort.
            return self.reranked(&q, k, &best);
        }
        best.sort_unstable_by(cmp_neighbors);
        best
    }

    /// The exact `k` nearest of the candidate rows `best` (a pool that kept rows, not ids) to
    /// the prepared query `q`: every re-ranking search's last step.
    pub(super) fn reranked(&self, q: &[f32], k: usize, best: &[Neighbor]) -> Vec<Neighbor> {
        let rows: Vec<u32> = best.iter().map(|c| c.id as u32).collect();
        let through_codes = rows.len() >= RERANK_THROUGH_CODES_FROM * k;
        self.exact_top_k_of(q, k, &rows, through_codes)
    }

    /// The exact `k` nearest of `rows` to the prepared query `q`, as `(id, distance)` sorted by
    /// distance. With 8-bit codes, and `through_codes`, the rows are scored through the codes
    /// first and only those that could still be among the `k` are read raw
    /// ([`Sq8::exact_top_k`]): the same answer with a fraction of the raw reads (each a cache
    /// miss at a random row, 4 bytes a dimension against the codes' one). Otherwise every row
    /// is read raw. `rows` is reordered.
    ///
    /// [`Sq8::exact_top_k`]: crate::index::sq8::Sq8::exact_top_k
    pub(super) fn exact_top_k_of(
        &self,
        q: &[f32],
        k: usize,
        rows: &[u32],
        through_codes: bool,
    ) -> Vec<Neighbor> {
        let raw = self.raw_rows();
        let exact = |row: usize| raw.distance(q, row);
        let prefetch = |row: usize| raw.prefetch(row);
        let by_row = match self.sq8.as_ref().filter(|_| through_codes) {
            Some(sq8) => sq8.exact_top_k(q, k, rows, exact, prefetch),
            None => {
                // Raw vectors are read at random rows (and may be memory-mapped): each is asked
                // for `AHEAD` rows early, so their cache misses overlap instead of queueing.
                const AHEAD: usize = 16;
                let rows: Vec<usize> = rows
                    .iter()
                    .map(|&r| r as usize)
                    .filter(|&r| r < self.n)
                    .collect();
                let mut top = TopK::new(k);
                for r in crate::index::prefetched(&rows, AHEAD, prefetch) {
                    top.push(r as u64, exact(r));
                }
                top.into_sorted_vec()
            }
        };
        self.with_ids(by_row)
    }

    /// The exact `k` nearest of rows already scored through copies of their 8-bit codes
    /// (`approx`: approximate distance and index row, any order), re-scored from their raw
    /// vectors as [`Sq8::refine_top_k`] does, named by their ids: the end of every exact scan
    /// that reads copies.
    pub(super) fn refined(
        &self,
        q: &[f32],
        k: usize,
        sq8: &Sq8,
        query: &Sq8Query<'_>,
        approx: Vec<(f32, u32)>,
    ) -> Vec<Neighbor> {
        let raw = self.raw_rows();
        let by_row = sq8.refine_top_k(
            query,
            k,
            approx,
            |row| raw.distance(q, row),
            |row| raw.prefetch(row),
        );
        self.with_ids(by_row)
    }

    /// `by_row` (neighbours named by index row) named by their ids instead.
    pub(super) fn with_ids(&self, by_row: Vec<Neighbor>) -> Vec<Neighbor> {
        let ids: &[u64] = &self.ids;
        by_row
            .into_iter()
            .map(|nb| Neighbor {
                id: ids[nb.id as usize],
                distance: nb.distance,
            })
            .collect()
    }

    /// The stored vectors, looked up once: a slice of stored parts costs a call to its owner
    /// and a checked cast each time, and an exact scan reads many rows.
    pub(super) fn raw_rows(&self) -> RawRows<'_> {
        RawRows {
            vectors: &self.vectors,
            dim: self.dim,
            metric: self.metric,
        }
    }

    /// The exact `k` nearest of the rows `rows` (positions in list order, as
    /// [`IvfPqIndex::vector`] takes them), as `(id, distance)` sorted by distance: the same
    /// answer as exact distances over every one of them. With 8-bit codes
    /// ([`IvfPqIndex::with_sq8`]) the codes are scored first and only the rows that could still
    /// be among the `k` are read raw (see [`Sq8::exact_top_k`](crate::index::sq8::Sq8::exact_top_k));
    /// a scan of scattered rows is bound by memory, and the codes are a quarter of the bytes.
    /// Rows past the end are skipped.
    pub fn exact_among(&self, query: &[f32], k: usize, rows: &[u32]) -> Vec<Neighbor> {
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        self.exact_top_k_of(&q, k, rows, true)
    }

    /// The exact `k` nearest of those of `rows` (positions in list order) that lie in the
    /// `nprobe` lists nearest the query (by `probe_approx`: to the 8-bit
    /// centroids' error), in their own list or the one they are spilled to: the candidates an
    /// IVF scan of those lists would meet among `rows`, scored exactly instead of through their
    /// PQ codes, at a cost that follows the rows rather than the lists' lengths. What a
    /// selective filter's matches need when an exact scan of all of them costs more than
    /// looking up their lists.
    pub fn exact_among_probed(
        &self,
        query: &[f32],
        k: usize,
        nprobe: usize,
        rows: &[u32],
    ) -> Vec<Neighbor> {
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        let probes = self.probe_approx(&q, nprobe.clamp(1, self.nlist));
        let probed = RowSet::from_rows(self.nlist, probes.iter().map(|&(list, _)| list));
        // `u32::MAX` (no spilled copy) is past the set's end: never probed.
        let is_probed = |l: u32| probed.contains(l as usize);
        let lists = self.lists_of_rows();
        // Each look-up is a cache miss at a random row: asked for a few rows ahead.
        const AHEAD: usize = 16;
        let kept: Vec<u32> = crate::index::prefetched(rows, AHEAD, |r| {
            if let Some(l) = lists.get(r as usize) {
                crate::index::prefetch(l);
            }
        })
        .filter(|&r| {
            lists
                .get(r as usize)
                .is_some_and(|&[own, spill]| is_probed(own) || is_probed(spill))
        })
        .collect();
        self.exact_top_k_of(&q, k, &kept, true)
    }

    /// Per row, its own list and the one it is spilled to (`u32::MAX` when none), derived
    /// once from the list offsets and spilled entries.
    fn lists_of_rows(&self) -> &[[u32; 2]] {
        self.lists_of_rows.get_or_init(|| {
            let mut lists = vec![[u32::MAX; 2]; self.n];
            for l in 0..self.nlist {
                let (start, end) = self.list_rows(l);
                for entry in lists.get_mut(start..end).unwrap_or_default() {
                    entry[0] = l as u32;
                }
                for &r in self.list_spills(l) {
                    if let Some(entry) = lists.get_mut(r as usize) {
                        entry[1] = l as u32;
                    }
                }
            }
            lists
        })
    }
}

/// The `wanted` best `(distance, id)` entries of `hits` after each id keeps only its best entry
/// (a spilled row can be met in two lists), in no particular order. Ids are told apart by a
/// small open-addressing table (the pool is a few hundred entries at most); sorting the entries
/// by distance and then their positions by id was 5-8% of a 1M × 128 query in perf.
fn best_of_each_id(hits: Vec<Neighbor>, wanted: usize) -> Vec<Neighbor> {
    const EMPTY: u32 = u32::MAX;
    let slots = (2 * hits.len()).next_power_of_two().max(16);
    let mask = slots - 1;
    let mut table = vec![EMPTY; slots];
    let mut out: Vec<Neighbor> = Vec::with_capacity(hits.len());
    for h in hits {
        // Fibonacci hashing of the id; the top bits are the best mixed.
        let mut i = (h.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & mask;
        loop {
            match table[i] {
                EMPTY => {
                    table[i] = out.len() as u32;
                    out.push(h);
                    break;
                }
                at if out[at as usize].id == h.id => {
                    let kept = &mut out[at as usize];
                    if cmp_neighbors(&h, kept).is_lt() {
                        *kept = h;
                    }
                    break;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }
    if wanted == 0 {
        out.clear();
    } else if out.len() > wanted {
        out.select_nth_unstable_by(wanted - 1, cmp_neighbors);
        out.truncate(wanted);
    }
    out
}

/// Whether `id` is in `ids` (ids past its end are not): how searches and subsets over ids admit
/// a row.
#[inline]
pub(super) fn id_admitted(ids: &RowSet, id: u64) -> bool {
    id < ids.len() as u64 && ids.contains(id as usize)
}

/// Probed lists as `(list, coarse term)`, closest first: the top-k threshold then tightens sooner.
/// The candidates a search keeps for `k` answers: `k * rerank` to re-rank, or `k` without.
pub(super) fn candidates_for(k: usize, rerank: usize) -> usize {
    if rerank > 0 {
        k.saturating_mul(rerank)
    } else {
        k
    }
}

/// The lists `best` kept, closest first, as `(list, coarse term)`.
fn sorted_probes(best: Reservoir) -> Vec<(usize, f32)> {
    as_probes(best.into_sorted_vec())
}

/// Selected lists (`id` the list) as `(list, coarse term)`, in their order.
fn as_probes(lists: Vec<Neighbor>) -> Vec<(usize, f32)> {
    lists
        .into_iter()
        .map(|nb| (nb.id as usize, nb.distance))
        .collect()
}

/// A search probing more lists step by step ([`IvfPqIndex::grid_search`]).
pub struct GridSearch<'a> {
    index: &'a IvfPqIndex,
    /// The query as rows are stored.
    q: Vec<f32>,
    /// Every list the last step probes, closest first.
    probes: Vec<(usize, f32)>,
    /// The best candidates by code distance over the lists scanned so far (ids).
    pool: Reservoir,
    k: usize,
    ids: Option<&'a RowSet>,
    /// Lists of `probes` scanned so far.
    scanned: usize,
}

impl GridSearch<'_> {
    /// Scans up to the first `nprobe` lists (none again) and returns the `k` best candidates by
    /// code distance so far, sorted by (distance, id).
    pub fn advance(&mut self, nprobe: usize) -> Vec<Neighbor> {
        let index = self.index;
        let upto = nprobe.clamp(1, index.nlist).min(self.probes.len());
        if upto > self.scanned {
            let admits = self.ids;
            with_scanner(
                index,
                &self.q,
                None,
                ScanProbes {
                    probes: &self.probes[self.scanned..upto],
                    pool: &mut self.pool,
                    key: |_, id: EntryId<'_>| id.get(),
                    allowed: |_, id: EntryId<'_>| {
                        admits.is_none_or(|ids| id_admitted(ids, id.get()))
                    },
                },
            );
            self.scanned = upto;
        }
        if !index.has_spills() {
            return self.pool.clone().into_sorted_vec();
        }
        let mut best = best_of_each_id(self.pool.clone().into_vec(), self.k);
        best.sort_unstable_by(cmp_neighbors);
        best
    }
}

/// The probe loop: every probed list, closest first, through one scanner into one pool.
struct ScanProbes<'s, K, A> {
    /// `(list, coarse term)`, closest first.
    probes: &'s [(usize, f32)],
    pool: &'s mut Reservoir,
    /// `(row, id)` → what the pool keeps (the id, or the row itself when re-ranking follows).
    key: K,
    /// Whether a `(row, id)` may be a hit (the filter).
    allowed: A,
}

impl<K, A> ScanWith for ScanProbes<'_, K, A>
where
    K: Fn(usize, EntryId<'_>) -> u64,
    A: Fn(usize, EntryId<'_>) -> bool,
{
    #[inline]
    fn run<S: ListScanner>(self, mut scanner: S) {
        let ScanProbes {
            probes,
            pool,
            key,
            allowed,
        } = self;
        if let Some(&(first, _)) = probes.first() {
            scanner.prefetch_list(first);
        }
        for (p, &(list, coarse)) in probes.iter().enumerate() {
            // Start loading the next list while this one is scanned: lists are short runs at
            // random places, so the hardware prefetcher only ramps up inside each.
            if let Some(&(next, _)) = probes.get(p + 1) {
                scanner.prefetch_list(next);
            }
            scanner.set_list(list, coarse);
            scanner.scan_codes(pool.threshold(), |row, id, d| {
                if allowed(row, id) {
                    pool.push(key(row, id), d);
                }
                pool.threshold()
            });
        }
    }
}

/// An index's raw vectors as an exact scan reads them ([`IvfPqIndex::raw_rows`]).
pub(super) struct RawRows<'a> {
    vectors: &'a [f32],
    dim: usize,
    metric: Metric,
}

impl RawRows<'_> {
    /// Index row `row`'s vector.
    #[inline]
    fn vector(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }

    /// The exact distance from the prepared query `q` to index row `row`.
    #[inline]
    pub(super) fn distance(&self, q: &[f32], row: usize) -> f32 {
        distance::distance(self.metric, q, self.vector(row))
    }

    /// Asks for index row `row`'s vector ahead of [`RawRows::distance`].
    #[inline]
    pub(super) fn prefetch(&self, row: usize) {
        crate::index::prefetch_slice(self.vector(row));
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn best_of_each_id_keeps_what_sorting_and_deduplicating_keeps() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [0usize, 1, 3, 40, 160, 320] {
            for wanted in [0usize, 1, 10, 80, 400] {
                // Ids repeat (a spilled row met twice) and distances tie.
                let hits: Vec<Neighbor> = (0..n)
                    .map(|_| Neighbor {
                        id: rng.random_range(0..(n as u64 / 2).max(1)),
                        distance: rng.random_range(0..30) as f32,
                    })
                    .collect();
                // The model: sorted, each id's first (best) entry, the first `wanted`.
                let mut want = hits.clone();
                want.sort_unstable_by(cmp_neighbors);
                let mut seen = std::collections::HashSet::new();
                want.retain(|h| seen.insert(h.id));
                want.truncate(wanted);
                let mut got = best_of_each_id(hits, wanted);
                got.sort_unstable_by(cmp_neighbors);
                assert_eq!(got, want, "n {n} wanted {wanted}");
            }
        }
    }
}
