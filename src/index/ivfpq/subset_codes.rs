//! The 4-bit codes of a chosen part of an index's rows, every row once, in one run of fast-scan
//! blocks: what a filter on a sparse indexed value scans instead of probing lists.
//!
//! [`SubsetLists`](super::SubsetLists) regroups a value's entries per list, which pays while each
//! list holds a few blocks' worth; a 1% value of a 250,000-row segment with 1,024 lists holds 5
//! entries a list, so its blocks would be mostly padding and a probed list's table would cost more
//! than its codes. Such a filter was served by exact scans of its matches, every one of them a
//! raw (or 8-bit) vector read at a random row.
//!
//! A row's IVF-PQ distance splits into a term of its list and the query, a term of its code
//! alone, and a term of its code and the query through one table that every list shares:
//!
//! * L2: `||q - c - r||² = ||q - c||² + (||r||² + 2 <c, r>) - 2 <q, r>`;
//! * inner products: `-<q, c + r> = -<q, c> - <q, r>`.
//!
//! So rows of different lists can share a block, scored by one table per query, each with its
//! own offset: its list's coarse term plus (L2) its stored code term — FAISS' "precomputed
//! tables" decomposition, taken one step further so that nothing per list is left in the scan.
//! [`SubsetCodes`] keeps the rows in list order, with where each list's rows start. A search
//! scores the coarse term of every list holding rows (the products a probe computes; only those
//! lists' when they are few) and scans every block, each row scored from its own code: in a long
//! run first the blocks holding the rows of the `nprobe` lists nearest the query, nearest first,
//! so the pool's threshold is tight early and the kernel reports few candidates after; then the
//! others (in a short run all of them) in storage order, a stream the hardware prefetcher follows.
//! A block whose smallest offset is past the threshold is skipped (code sums are never negative).
//!
//! Each entry also keeps its id, read in order beside its code: the index's own ids, read per
//! candidate, were a cache miss each (a value's rows are scattered over the segment), 70% of a
//! 1% filter's time on 1M rows in perf.
//!
//! Tried on a 1% value of 1M × 128 rows and not kept: blocks in the order of a lower bound on
//! their estimates, cut at the pool's threshold — by their smallest offset (the first cut), then
//! by the triangle inequality on each row's decoded residual norm — never skipped one block in
//! either form (in 128 dimensions `(||q - c|| - ||r||)²` is far below any neighbour's distance)
//! and read the run in an order no prefetcher follows. Scanning only the probed lists' blocks
//! (the plan's widened `nprobe`) read about a third of the blocks, yet in single runs gave
//! 0.83-0.85x the unfiltered speed at recall 0.95 (1%) and 0.94 (3%, below the target), no
//! better than every block at 0.78-0.83x and 0.97-1.0: a plan widened for exact distances over
//! the probed matches is not one for estimates re-ranked.

use super::scanner::{WithKernel, with_kernel};
use super::{IvfPqIndex, SearchParams, move_code};
use crate::index::fastscan::{self, BLOCK, Kernel};
use crate::index::topk::admits;
use crate::index::{Metric, Neighbor, Reservoir, RowSet};

/// A chosen set of rows' codes in one run of fast-scan blocks, in list order, with what each
/// row's offset needs (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetCodes {
    /// The lists of the index these were made from: a subset of another index answers nothing.
    nlist: usize,
    /// The index row of each entry, ascending (so list by list).
    rows: Vec<u32>,
    /// Each entry's id, which filters name: read in order beside the codes, where the index's
    /// own ids would be a random read per candidate (a cache miss each; perf put 70% of a 1%
    /// filter's time on 1M rows there).
    ids: Vec<u32>,
    /// Each entry's list.
    lists: Vec<u32>,
    /// `nlist + 1` offsets into the entries: list `l`'s rows are entries
    /// `starts[l]..starts[l + 1]`.
    starts: Vec<u32>,
    /// The lists holding entries, ascending: the only coarse terms a search needs.
    filled: Vec<u32>,
    /// L2: each entry's `||r||² + 2 <c, r>` over its decoded residual `r`; inner products: empty.
    terms: Vec<f32>,
    /// The entries' codes in [`fastscan`] blocks.
    codes: Vec<u8>,
}

impl SubsetCodes {
    /// Rows held.
    pub fn entries(&self) -> usize {
        self.rows.len()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        (self.rows.len()
            + self.ids.len()
            + self.lists.len()
            + self.starts.len()
            + self.filled.len()
            + self.terms.len())
            * 4
            + self.codes.len()
    }

    /// About the bytes [`IvfPqIndex::subset_codes`] makes of `rows` rows of `index`.
    pub fn estimated_bytes(index: &IvfPqIndex, rows: usize) -> usize {
        let terms = if index.metric == Metric::L2 { 4 } else { 0 };
        fastscan::blocks_for(rows) * index.block_bytes()
            + rows * (12 + terms)
            + (index.nlist + 1 + rows.min(index.nlist)) * 4
    }
}

impl IvfPqIndex {
    /// The codes of the rows whose *id* is in `ids` (ids below `ids.len()`), each row once, in
    /// one run of blocks (see the module doc); `None` for 8-bit codes, which are scored one
    /// table look-up per code whatever their order, and for ids past `u32::MAX`.
    pub fn subset_codes(&self, ids: &RowSet) -> Option<SubsetCodes> {
        if self.pq.bits() != 4 {
            return None;
        }
        let m = self.pq.m();
        let block = fastscan::block_bytes(m);
        if ids.len() > u32::MAX as usize + 1 {
            return None;
        }
        let (chosen, row_ids): (_, &[u64]) = (self.id_in(ids), &self.ids);
        let l2 = self.metric == Metric::L2;
        let (mut rows, mut entry_ids, mut lists, mut terms, mut codes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut starts = Vec::with_capacity(self.nlist + 1);
        let mut filled = Vec::new();
        // The list's `||c_jk||² + 2 <c_j, c_jk>` table, when the index keeps none.
        let mut table = vec![0.0f32; m * 16];
        for list in 0..self.nlist {
            starts.push(rows.len() as u32);
            let (start, end) = self.list_rows(list);
            let packed = &self.codes[self.block_offsets[list]..self.block_offsets[list + 1]];
            let mut table_made = false;
            for row in (start..end).filter(|&row| chosen(row)) {
                let slot = rows.len();
                if slot % BLOCK == 0 {
                    codes.resize(codes.len() + block, 0);
                }
                let mut term = 0.0f32;
                if l2 && !table_made {
                    match self.precomputed.get(list * m * 16..(list + 1) * m * 16) {
                        Some(pre) => table.copy_from_slice(pre),
                        None => self.pq.residual_terms(
                            &self.centroids[list * self.dim..(list + 1) * self.dim],
                            &mut table,
                        ),
                    }
                    table_made = true;
                }
                move_code(packed, row - start, &mut codes, slot, m, |j, code| {
                    term += table[j * 16 + code as usize];
                });
                rows.push(row as u32);
                // Below `ids.len()`, so within u32 (checked above).
                entry_ids.push(row_ids[row] as u32);
                lists.push(list as u32);
                if l2 {
                    terms.push(term);
                }
            }
            if starts.last().is_some_and(|&s| (s as usize) < rows.len()) {
                filled.push(list as u32);
            }
        }
        starts.push(rows.len() as u32);
        Some(SubsetCodes {
            nlist: self.nlist,
            rows,
            ids: entry_ids,
            lists,
            starts,
            filled,
            terms,
            codes,
        })
    }

    /// The `k` nearest rows' ids among those whose *id* is in `ids`, scoring every row of
    /// `subset` from its code — in a long run the blocks of the `params.nprobe` lists nearest
    /// the query first, the others after — and re-ranking the best `k * params.rerank` (none
    /// with `rerank` 0) with exact distances: the whole-list scan's estimate for every admitted
    /// row of the subset, so at least the recall of probing every list, at the cost of the
    /// subset's codes (see the module doc). Rows of `ids` outside the subset are never found;
    /// without `ids` every row of the subset is admitted, and no id is read (a segment without
    /// deleted rows searching a value's rows: the check was a fifth of a 1% filter's scan on 1M
    /// rows). A subset made by another index (another number of lists) answers nothing.
    pub fn search_subset_codes_ids_in(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        subset: &SubsetCodes,
        ids: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        if subset.nlist != self.nlist || self.pq.bits() != 4 {
            return Vec::new();
        }
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        let rerank = params.rerank;
        let mut pool = Reservoir::new(super::search::candidates_for(k, rerank));
        let scan = CodesScan {
            index: self,
            q: &q,
            subset,
            nprobe: params.nprobe.clamp(1, self.nlist),
            pool: &mut pool,
            // The pool keeps rows when re-ranking follows (the vectors are in row order).
            rerank: rerank > 0,
            allowed: ids,
        };
        with_kernel(self.simd, scan);
        if rerank == 0 {
            return pool.into_sorted_vec();
        }
        // Re-ranking re-scores the rows whatever their order: no sort.
        self.reranked(&q, k, &pool.into_vec())
    }
}

/// How many blocks ahead of the scan a [`SubsetCodes`] run's bytes are asked for.
const PREFETCH_BLOCKS: usize = 2;

/// A subset whose entries lie in at most one list in this many takes its coarse terms from those
/// lists' centroid rows ([`IvfPqIndex::coarse_scores_of`]): a row's product ends in a horizontal
/// sum the blocked pass does not pay, so the rows win only when far fewer.
const FEW_LISTS: usize = 4;

/// The nearest lists' blocks go first only in a run of more than this many blocks a probed
/// list: in a shorter run their blocks are most of it anyway, so ordering them (a selection
/// over the lists holding entries, then a sort) buys no tighter threshold, and costs the
/// storage order that the hardware prefetcher follows (a 1% value of MiniLM: 18 blocks, 59
/// lists probed).
const NEAREST_FIRST_BLOCKS_PER_PROBE: usize = 2;

/// The blocks of `subset`'s run in scan order: those holding the rows of the `nprobe` lists
/// nearest the query (by `coarse`), nearest first, so the pool's threshold is tight early and
/// the kernel reports few candidates after; then every other block in storage order.
fn nearest_first(
    subset: &SubsetCodes,
    coarse: &[f32],
    nprobe: usize,
    nblocks: usize,
) -> Vec<usize> {
    let mut nearest: Vec<(f32, u32)> = subset
        .filled
        .iter()
        .map(|&l| (coarse[l as usize], l))
        .collect();
    if nprobe < nearest.len() {
        nearest.select_nth_unstable_by(nprobe, |a, b| a.0.total_cmp(&b.0));
        nearest.truncate(nprobe);
    }
    nearest.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut first = vec![false; nblocks];
    let mut blocks: Vec<usize> = Vec::with_capacity(nblocks);
    for &(_, list) in &nearest {
        let list = list as usize;
        let (start, end) = (
            subset.starts[list] as usize,
            subset.starts[list + 1] as usize,
        );
        let (from, to) = (start / BLOCK, (end - 1) / BLOCK);
        for (b, taken) in first.iter_mut().enumerate().take(to + 1).skip(from) {
            if !*taken {
                *taken = true;
                blocks.push(b);
            }
        }
    }
    blocks.extend((0..nblocks).filter(|&b| !first[b]));
    blocks
}

/// One scan of a [`SubsetCodes`] into a pool (see the module doc).
struct CodesScan<'s> {
    index: &'s IvfPqIndex,
    /// The query as rows are stored.
    q: &'s [f32],
    subset: &'s SubsetCodes,
    /// Lists whose blocks are scanned first.
    nprobe: usize,
    pool: &'s mut Reservoir,
    /// Whether the pool keeps each entry's row (for re-ranking) rather than its id.
    rerank: bool,
    /// The ids that may be hits (the filter); `None`: every entry may, and no id is read.
    allowed: Option<&'s RowSet>,
}

impl WithKernel for CodesScan<'_> {
    fn run<Kern: Kernel>(self, kernel: Kern) {
        let CodesScan {
            index,
            q,
            subset,
            nprobe,
            pool,
            rerank,
            allowed,
        } = self;
        let m = index.pq.m();
        let n = subset.rows.len();
        // The coarse term of every list holding entries, as a probe scores it: from those lists'
        // centroid rows when they are few, else by the blocked pass over every centroid, which
        // costs the same whether a list is needed or not.
        let coarse = if subset.filled.len() * FEW_LISTS <= index.nlist {
            index.coarse_scores_of(q, &subset.filled)
        } else {
            index.coarse_scores(q)
        };
        let nblocks = fastscan::blocks_for(n);
        let blocks = if nblocks > NEAREST_FIRST_BLOCKS_PER_PROBE * nprobe {
            nearest_first(subset, &coarse, nprobe, nblocks)
        } else {
            (0..nblocks).collect()
        };
        // The shared table: `-<q_j, c_jk>`, doubled for L2.
        let l2 = index.metric == Metric::L2;
        let mut lut = vec![0.0f32; m * 16];
        index.pq.neg_dot_table(q, &mut lut);
        if l2 {
            lut.iter_mut().for_each(|v| *v *= 2.0);
        }
        let mut qlut = vec![0u8; fastscan::padded_m(m) * 16];
        let (scale, qbias) = kernel.quantize_lut(&lut, m, &mut qlut);
        let block = fastscan::block_bytes(m);
        let mut bias = [0.0f32; BLOCK];
        for (j, &b) in blocks.iter().enumerate() {
            // The blocks of the nearest lists lie anywhere in the run, and a value's run is read
            // from memory no earlier query warmed: ask for a later block's bytes now.
            if let Some(&next) = blocks.get(j + PREFETCH_BLOCKS) {
                crate::index::prefetch_slice(&subset.codes[next * block..(next + 1) * block]);
                let (from, to) = (next * BLOCK, n.min((next + 1) * BLOCK));
                crate::index::prefetch_slice(&subset.lists[from..to]);
                crate::index::prefetch_slice(
                    &subset.terms[from.min(subset.terms.len())..to.min(subset.terms.len())],
                );
            }
            let base = b * BLOCK;
            let len = BLOCK.min(n - base);
            // Each entry's offset: its list's coarse term, its code term (L2), the table's bias.
            let mut floor = f32::INFINITY;
            for (i, out) in bias[..len].iter_mut().enumerate() {
                let list = subset.lists[base + i] as usize;
                let offset = if l2 {
                    coarse[list] + subset.terms[base + i]
                } else {
                    index.list_bias(coarse[list])
                };
                *out = offset + qbias;
                floor = floor.min(*out);
            }
            if floor > pool.threshold() {
                // Code sums are never negative: nothing here can enter the pool.
                continue;
            }
            let rows = &subset.rows[base..base + len];
            let ids = &subset.ids[base..base + len];
            let threshold = |t: f32| fastscan::u16_threshold(t, scale, floor);
            let mut bound = threshold(pool.threshold());
            kernel.scan_list(
                &subset.codes[b * block..(b + 1) * block],
                len,
                m,
                &qlut,
                bound,
                |i, sum| {
                    let estimate = bias[i] + scale * sum as f32;
                    // The kernel's bound is the block's smallest offset's, so most rows it lets
                    // through lie in farther lists and miss the pool: they are dropped here,
                    // and the bound (a division) is worked out again only after a push
                    // (per candidate it was 9% of a 1% filter's query on MiniLM in perf).
                    // Ids past the set's end are not in it (`RowSet::contains`).
                    if admits(estimate, pool.threshold())
                        && allowed.is_none_or(|allowed| allowed.contains(ids[i] as usize))
                    {
                        let key = if rerank { rows[i] } else { ids[i] };
                        pool.push(key as u64, estimate);
                        bound = threshold(pool.threshold());
                    }
                    bound
                },
            );
        }
    }
}
