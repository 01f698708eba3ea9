//! The 4-bit codes of a chosen part of an index's rows, every row once, in one run of fast-scan
//! blocks: what a filter on a sparse indexed value scans whole, with no list probed.
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
//! [`SubsetCodes`] keeps the rows in list order. A search scores every list's coarse term (the
//! products a probe computes), bounds each block from below by its smallest offset (code sums
//! are never negative), and scans the blocks lowest bound first until the bound passes the
//! pool's threshold: every row of the value is considered, each scored from its own code, and
//! the blocks of far lists are never read.

use super::scanner::{WithKernel, with_kernel};
use super::{IvfPqIndex, move_code};
use crate::index::fastscan::{self, BLOCK, Kernel};
use crate::index::{Metric, Neighbor, RowSet, TopK};

/// A chosen set of rows' codes in one run of fast-scan blocks, in list order, with what each
/// row's offset needs (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetCodes {
    /// The lists of the index these were made from: a subset of another index answers nothing.
    nlist: usize,
    /// The index row of each entry, ascending (so list by list).
    rows: Vec<u32>,
    /// Each entry's list.
    lists: Vec<u32>,
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
        (self.rows.len() + self.lists.len() + self.terms.len()) * 4 + self.codes.len()
    }

    /// About the bytes [`IvfPqIndex::subset_codes`] makes of `rows` rows of `index`.
    pub fn estimated_bytes(index: &IvfPqIndex, rows: usize) -> usize {
        let terms = if index.metric == Metric::L2 { 4 } else { 0 };
        fastscan::blocks_for(rows) * index.block_bytes() + rows * (8 + terms)
    }
}

impl IvfPqIndex {
    /// The codes of the rows whose *id* is in `ids` (ids below `ids.len()`), each row once, in
    /// one run of blocks (see the module doc); `None` for 8-bit codes, which are scored one
    /// table look-up per code whatever their order.
    pub fn subset_codes(&self, ids: &RowSet) -> Option<SubsetCodes> {
        if self.pq.bits() != 4 {
            return None;
        }
        let m = self.pq.m();
        let block = fastscan::block_bytes(m);
        let chosen = self.id_in(ids);
        let l2 = self.metric == Metric::L2;
        let (mut rows, mut lists, mut terms, mut codes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The list's `||c_jk||² + 2 <c_j, c_jk>` table, when the index keeps none.
        let mut table = vec![0.0f32; m * 16];
        for list in 0..self.nlist {
            let (start, end) = self.list_rows(list);
            let packed = &self.codes[self.block_offsets[list]..self.block_offsets[list + 1]];
            let mut table_made = false;
            for row in start..end {
                if !chosen(row) {
                    continue;
                }
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
                lists.push(list as u32);
                if l2 {
                    terms.push(term);
                }
            }
        }
        Some(SubsetCodes {
            nlist: self.nlist,
            rows,
            lists,
            terms,
            codes,
        })
    }

    /// The `k` nearest rows' ids among those whose *id* is in `ids`, scoring every row of
    /// `subset` from its code and re-ranking the best `k * rerank` (none with `rerank` 0) with
    /// exact distances: the whole-list scan's estimate for every admitted row of the subset, so
    /// at least the recall of probing every list, at the cost of the subset's codes (see the
    /// module doc). Rows of `ids` outside the subset are never found; a subset made by another
    /// index (another number of lists) answers nothing.
    pub fn search_subset_codes_ids_in(
        &self,
        query: &[f32],
        k: usize,
        rerank: usize,
        subset: &SubsetCodes,
        ids: &RowSet,
    ) -> Vec<Neighbor> {
        self.search_subset_codes(query, k, rerank, subset, ids, true)
    }

    /// [`search_subset_codes_ids_in`](Self::search_subset_codes_ids_in); `prune: false` scans
    /// every block (the tests' reference for the pruning).
    pub(super) fn search_subset_codes(
        &self,
        query: &[f32],
        k: usize,
        rerank: usize,
        subset: &SubsetCodes,
        ids: &RowSet,
        prune: bool,
    ) -> Vec<Neighbor> {
        if subset.nlist != self.nlist || self.pq.bits() != 4 {
            return Vec::new();
        }
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        let wanted = if rerank > 0 {
            k.saturating_mul(rerank)
        } else {
            k
        };
        let mut pool = TopK::new(wanted);
        let row_ids: &[u64] = &self.ids;
        let scan = CodesScan {
            index: self,
            q: &q,
            subset,
            pool: &mut pool,
            key: |row: usize| if rerank > 0 { row as u64 } else { row_ids[row] },
            allowed: self.id_in(ids),
            prune,
        };
        with_kernel(self.simd, scan);
        let best = pool.into_sorted_vec();
        if rerank == 0 {
            return best;
        }
        let rows: Vec<u32> = best.iter().map(|c| c.id as u32).collect();
        let through_codes = rows.len() >= super::search::RERANK_THROUGH_CODES_FROM * k;
        self.exact_top_k_of(&q, k, &rows, through_codes)
    }
}

/// One scan of a [`SubsetCodes`] into a pool (see the module doc).
struct CodesScan<'s, K, A> {
    index: &'s IvfPqIndex,
    /// The query as rows are stored.
    q: &'s [f32],
    subset: &'s SubsetCodes,
    pool: &'s mut TopK,
    /// Row → what the pool keeps (the id, or the row itself when re-ranking follows).
    key: K,
    /// Whether a row may be a hit (the filter).
    allowed: A,
    /// Whether blocks whose bound is past the threshold are skipped.
    prune: bool,
}

impl<K: Fn(usize) -> u64, A: Fn(usize) -> bool> WithKernel for CodesScan<'_, K, A> {
    fn run<Kern: Kernel>(self, kernel: Kern) {
        let CodesScan {
            index,
            q,
            subset,
            pool,
            key,
            allowed,
            prune,
        } = self;
        let m = index.pq.m();
        // Every list's coarse term, as a probe scores it, then as the offset of its rows (the
        // same for L2, whose coarse term is the offset).
        let mut offsets = index.coarse_scores(q);
        let l2 = index.metric == Metric::L2;
        if !l2 {
            offsets.iter_mut().for_each(|s| *s = index.list_bias(*s));
        }
        // The shared table: `-<q_j, c_jk>`, doubled for L2.
        let mut lut = vec![0.0f32; m * 16];
        index.pq.neg_dot_table(q, &mut lut);
        if l2 {
            lut.iter_mut().for_each(|v| *v *= 2.0);
        }
        let mut qlut = vec![0u8; fastscan::padded_m(m) * 16];
        let (scale, qbias) = kernel.quantize_lut(&lut, m, &mut qlut);
        // Each entry's offset, and each block's smallest.
        let n = subset.rows.len();
        let bias: Vec<f32> = (0..n)
            .map(|i| {
                let term = subset.terms.get(i).copied().unwrap_or(0.0);
                offsets[subset.lists[i] as usize] + term + qbias
            })
            .collect();
        let mut order: Vec<(f32, usize)> = bias
            .chunks(BLOCK)
            .map(|b| b.iter().copied().fold(f32::INFINITY, f32::min))
            .enumerate()
            .map(|(b, low)| (low, b))
            .collect();
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let block = fastscan::block_bytes(m);
        for (low, b) in order {
            if prune && low > pool.threshold() {
                // Blocks are in order of their bound: none after this one can do better.
                break;
            }
            let base = b * BLOCK;
            let len = BLOCK.min(n - base);
            let rows = &subset.rows[base..base + len];
            let bias = &bias[base..base + len];
            let floor = if prune { low } else { f32::NEG_INFINITY };
            let threshold = |t: f32| {
                if prune {
                    fastscan::u16_threshold(t, scale, floor)
                } else {
                    u16::MAX
                }
            };
            kernel.scan_list(
                &subset.codes[b * block..(b + 1) * block],
                len,
                m,
                &qlut,
                threshold(pool.threshold()),
                |i, sum| {
                    let row = rows[i] as usize;
                    if allowed(row) {
                        pool.push(key(row), bias[i] + scale * sum as f32);
                    }
                    threshold(pool.threshold())
                },
            );
        }
    }
}
