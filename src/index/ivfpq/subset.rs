//! The 4-bit codes of a chosen part of an index's rows, regrouped by list: what a widened
//! filtered scan reads when the filter is one a payload index answers with a posting (a tenant,
//! a category, a language).
//!
//! A filtered IVF-PQ scan scores every code of every probed list and drops the rows the filter
//! rules out after the fact: at 10% selectivity nine codes in ten are scored for nothing, and the
//! filter needs more lists than an unfiltered query (its `k` nearest are the `k / s` nearest of
//! everything), so the scan costs several times the unfiltered one. [`SubsetLists`] keeps, per
//! list, only the entries of the chosen rows (own and spilled), packed in the same fast-scan
//! blocks: scanning it costs the chosen share of the full scan, with the same tables and the same
//! distances. Qdrant builds extra graph links per indexed payload value for the same reason; this
//! is the inverted-file form of it, derived from the index's own codes (no encoding, no training).
//!
//! [`SubsetRows`] keeps the entries' rows, per list, without their PQ codes: for
//! [`IvfPqIndex::exact_among_probed_subset`], which scores the chosen rows of the probed lists
//! exactly (through the 8-bit codes when the index has them). On L2 every probed list of the
//! coded form makes and quantises its own table (~0.6 µs a list on 1M × 128, 28% of a 1%
//! filter's time in perf) to score ~17 entries; the rows alone are 8 bytes an entry (the row and
//! its own list), and their exact distances need no table at all. When the index has 8-bit
//! codes, each entry also keeps a copy of its row's (`dim` bytes, and the norm on L2), entry
//! beside entry: read from the index, a probed list's chosen rows are one random read each, two
//! or three cache lines at scattered places, and perf put that scan at the limit of how many
//! misses a core keeps in flight; from the copy they are one run per list, read in order, the
//! next list's run prefetched while one is scored. On 1M × 128 a 1% value's probed rows were
//! scored in 0.75–0.83× the time (median 0.79, 13 alternated windows,
//! `benches/results/filter-1m-row-copies-2026-12-07.txt`), for about `dim + 12` bytes an entry;
//! the copies have a budget of their own in the segment's cache, past which rows per list are
//! made without them.
//!
//! [`IvfPqIndex::search_subset_ids_in`] answers exactly what [`IvfPqIndex::search_ids_in`] answers
//! whenever every admitted id is among the subset's rows: the same lists are probed, each
//! admitted row is scored from the same code with the same table, and the top-k keeps the best by
//! `(distance, id)` whatever order they come in.

use super::scanner::EntryId;
use super::search::id_admitted;
use super::{IvfPqIndex, SearchParams};
use crate::index::fastscan::{self, BLOCK};
use crate::index::sq8::{RowCopies, Sq8};
use crate::index::{Neighbor, RowSet};

/// Per list, the entries of a chosen set of rows, with their codes packed (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetLists {
    /// `nlist + 1` offsets into `rows`: list `l` holds `rows[offsets[l]..offsets[l + 1]]`.
    offsets: Vec<u32>,
    /// The index row of each entry, list after list (a row spilled to a second list that is
    /// also chosen appears in both, as in the index).
    rows: Vec<u32>,
    /// `nlist + 1` byte offsets into `codes`: list `l`'s blocks.
    block_offsets: Vec<usize>,
    /// Each list's entries' codes in [`fastscan`] blocks.
    codes: Vec<u8>,
}

impl SubsetLists {
    /// Entries over all lists.
    pub fn entries(&self) -> usize {
        self.rows.len()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.offsets.len() * 4
            + self.rows.len() * 4
            + self.block_offsets.len() * 8
            + self.codes.len()
    }

    /// The index rows of `list`'s entries, in scan order.
    #[inline]
    pub(super) fn list_rows(&self, list: usize) -> &[u32] {
        match self.offsets.get(list..list + 2) {
            Some(&[s, e]) => &self.rows[s as usize..e as usize],
            _ => &[],
        }
    }

    /// `list`'s packed codes.
    #[inline]
    pub(super) fn list_codes(&self, list: usize) -> &[u8] {
        match self.block_offsets.get(list..list + 2) {
            Some(&[s, e]) => &self.codes[s..e],
            _ => &[],
        }
    }
}

/// Per list, the rows of a chosen set's entries, without their codes (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetRows {
    /// `nlist + 1` offsets into `rows`: list `l` holds `rows[offsets[l]..offsets[l + 1]]`.
    offsets: Vec<u32>,
    /// Each entry's index row, list after list, as [`SubsetLists`] holds them, with its row's
    /// own list (the entry's list, or for a spilled entry the list it was spilled from): a
    /// search meets a row spilled from a probed list there, and skips it here, so that every
    /// row is scored once without sorting the candidates (sorting and deduplicating them was
    /// 8% of a 1% filter's query on 1M × 128 in perf). Side by side, one stream of lines.
    entries: Vec<[u32; 2]>,
    /// With 8-bit codes in the index: a copy of each entry's row's ([`Sq8::copy_row`]), entry
    /// after entry, so that a probed list's rows are one run read in order instead of one
    /// random read each (see the module doc); empty otherwise.
    copies: RowCopies,
}

impl SubsetRows {
    /// Entries over all lists.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        (self.offsets.len() + 2 * self.entries.len()) * 4 + self.copies.memory_bytes()
    }

    /// About the bytes of the rows of `chosen` of `index`'s rows, before they are made,
    /// without their copies ([`SubsetRows::estimated_copy_bytes`]).
    pub fn estimated_bytes(index: &IvfPqIndex, chosen: usize) -> usize {
        Self::estimated_entries(index, chosen) * 8 + (index.nlist() + 1) * 4
    }

    /// About the bytes of the copies of the 8-bit codes of `chosen` of `index`'s rows' entries
    /// (0 without 8-bit codes).
    pub fn estimated_copy_bytes(index: &IvfPqIndex, chosen: usize) -> usize {
        let per_entry = index.sq8.as_ref().map_or(0, Sq8::copy_bytes);
        Self::estimated_entries(index, chosen) * per_entry
    }

    /// Bytes held by the copies of the entries' 8-bit codes (included in
    /// [`SubsetRows::memory_bytes`]).
    pub fn copy_memory_bytes(&self) -> usize {
        self.copies.memory_bytes()
    }

    /// About how many entries `chosen` of `index`'s rows have.
    fn estimated_entries(index: &IvfPqIndex, chosen: usize) -> usize {
        let share = chosen as f64 / index.len().max(1) as f64;
        (index.entries() as f64 * share) as usize
    }

    /// The index rows of `list`'s entries.
    #[cfg(test)]
    pub(super) fn list_rows(&self, list: usize) -> Vec<u32> {
        self.list_entries(list).iter().map(|e| e[0]).collect()
    }

    /// `list`'s entries: each one's index row and its row's own list.
    #[inline]
    pub(super) fn list_entries(&self, list: usize) -> &[[u32; 2]] {
        let (s, e) = self.list_span(list);
        &self.entries[s..e]
    }

    /// Entry `i`'s copy of its row's 8-bit codes ([`Sq8::copy_row`]), in list order; `None`
    /// where the index has no 8-bit codes.
    #[cfg(test)]
    pub(super) fn entry_copy(&self, i: usize) -> Option<&[u8]> {
        (!self.copies.is_empty()).then(|| self.copies.record(i))
    }

    /// `list`'s entries' places: `list_span(l).0..list_span(l).1`.
    #[inline]
    fn list_span(&self, list: usize) -> (usize, usize) {
        match self.offsets.get(list..list + 2) {
            Some(&[s, e]) => (s as usize, e as usize),
            _ => (0, 0),
        }
    }
}

impl IvfPqIndex {
    /// Calls `on_list(list, entries)` for each list in order with the entries of the rows whose
    /// *id* is in `ids`, as `(place in the list, row)` (own rows first, then spilled entries).
    fn visit_chosen_lists(&self, ids: &RowSet, mut on_list: impl FnMut(usize, &[(usize, u32)])) {
        let chosen = self.id_in(ids);
        let mut picked: Vec<(usize, u32)> = Vec::new();
        for list in 0..self.nlist {
            let (start, end) = self.list_rows(list);
            let spills = self.list_spills(list);
            picked.clear();
            for entry in 0..(end - start) + spills.len() {
                let row = match entry.checked_sub(end - start) {
                    None => start + entry,
                    Some(s) => spills[s] as usize,
                };
                if chosen(row) {
                    picked.push((entry, row as u32));
                }
            }
            on_list(list, &picked);
        }
    }

    /// The entries of the rows whose *id* is in `ids` (ids below `ids.len()`), regrouped by
    /// list with their codes (see the module doc); `None` for 8-bit codes, which are scored one
    /// table look-up per code and gain nothing from being regrouped.
    pub fn subset_lists(&self, ids: &RowSet) -> Option<SubsetLists> {
        if self.pq.bits() != 4 {
            return None;
        }
        let m = self.pq.m();
        let block = fastscan::block_bytes(m);
        let mut offsets = Vec::with_capacity(self.nlist + 1);
        let mut block_offsets = Vec::with_capacity(self.nlist + 1);
        let mut rows = Vec::new();
        let mut codes: Vec<u8> = Vec::new();
        offsets.push(0);
        block_offsets.push(0);
        self.visit_chosen_lists(ids, |list, picked| {
            let packed = &self.codes[self.block_offsets[list]..self.block_offsets[list + 1]];
            // Each code moved from its nibble in the list's block to its nibble in the
            // subset's, block to block (padding sub-spaces and slots stay 0, as packed).
            let base = codes.len();
            codes.resize(base + fastscan::blocks_for(picked.len()) * block, 0);
            for (slot, &(entry, row)) in picked.iter().enumerate() {
                move_code(packed, entry, &mut codes[base..], slot, m, |_, _| {});
                rows.push(row);
            }
            offsets.push(rows.len() as u32);
            block_offsets.push(codes.len());
        });
        codes.shrink_to_fit();
        rows.shrink_to_fit();
        Some(SubsetLists {
            offsets,
            rows,
            block_offsets,
            codes,
        })
    }

    /// The rows of the entries of the rows whose *id* is in `ids`, regrouped by list without
    /// their PQ codes (see the module doc): any code width, since none is read. With
    /// `with_copies` and 8-bit codes in the index, each entry also keeps a copy of its row's
    /// 8-bit codes ([`Sq8::copy_row`]).
    pub fn subset_rows(&self, ids: &RowSet, with_copies: bool) -> SubsetRows {
        let mut offsets = Vec::with_capacity(self.nlist + 1);
        let mut entries = Vec::new();
        offsets.push(0);
        // Rows are numbered list after list: a row's own list is the last that starts at or
        // before it.
        let own_list = |row: u32| self.list_offsets.partition_point(|&o| o <= u64::from(row)) - 1;
        self.visit_chosen_lists(ids, |list, picked| {
            let (start, end) = self.list_rows(list);
            for &(entry, row) in picked {
                let owner = if entry < end - start {
                    list
                } else {
                    own_list(row)
                };
                entries.push([row, owner as u32]);
            }
            offsets.push(entries.len() as u32);
        });
        entries.shrink_to_fit();
        let sq8 = self.sq8.as_ref().filter(|_| with_copies);
        let copies = RowCopies::of(sq8, entries.iter().map(|&[row, _]| row));
        SubsetRows {
            offsets,
            entries,
            copies,
        }
    }

    /// The exact `k` nearest, as `(id, distance)` sorted by distance, of the rows of `subset`'s
    /// entries in the `nprobe` lists nearest the query (by `probe_approx`)
    /// whose ids are in `ids` (all of them without `ids`): what
    /// [`exact_among_probed`](Self::exact_among_probed) answers for those rows (the candidates
    /// an IVF scan of the probed lists would meet among them, scored exactly), with each probed
    /// list's rows read from `subset` instead of every row's lists looked up. A `subset` made by
    /// another index (another number of lists) answers nothing.
    pub fn exact_among_probed_subset(
        &self,
        query: &[f32],
        k: usize,
        nprobe: usize,
        subset: &SubsetRows,
        ids: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        if subset.offsets.len() != self.nlist + 1 {
            return Vec::new();
        }
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        let admitted = ids.map(|ids| self.id_in(ids));
        let probes = self.probe_approx(&q, nprobe.clamp(1, self.nlist));
        let probed = RowSet::from_rows(self.nlist, probes.iter().map(|&(list, _)| list));
        let kept = |list: usize, [row, owner]: [u32; 2]| {
            // A row spilled here from a probed list is met in its own list.
            let elsewhere = owner as usize != list && probed.contains(owner as usize);
            !elsewhere && admitted.as_ref().is_none_or(|a| a(row as usize))
        };
        // Each list's entries are a short run at a random place, read in a few nanoseconds:
        // all of them are asked for first, so that their cache misses overlap (asked for one
        // list ahead, this loop was 14% of a 1% filter's query on 1M × 128 in perf; so, 7%).
        for &(list, _) in &probes {
            crate::index::prefetch_slice(subset.list_entries(list));
        }
        if let Some(sq8) = self.sq8.as_ref().filter(|_| !subset.copies.is_empty()) {
            return self.exact_among_probed_copies(&q, k, &probes, subset, sq8, kept);
        }
        let mut rows: Vec<u32> = Vec::new();
        for &(list, _) in &probes {
            for &entry in subset.list_entries(list) {
                if kept(list, entry) {
                    rows.push(entry[0]);
                }
            }
        }
        self.exact_top_k_of(&q, k, &rows, true)
    }

    /// [`exact_among_probed_subset`](Self::exact_among_probed_subset) over `subset`'s own copy
    /// of its rows' 8-bit codes: each probed list's entries scored in one run, then the best
    /// re-scored exactly as [`Sq8::exact_top_k`](crate::index::sq8::Sq8::exact_top_k) does: the
    /// same distances from the same codes, so the same answer.
    fn exact_among_probed_copies(
        &self,
        q: &[f32],
        k: usize,
        probes: &[(usize, f32)],
        subset: &SubsetRows,
        sq8: &Sq8,
        kept: impl Fn(usize, [u32; 2]) -> bool,
    ) -> Vec<Neighbor> {
        let query = sq8.query(q);
        let run = |list: usize| {
            let (s, e) = subset.list_span(list);
            subset.copies.run(s, e)
        };
        // Every probed list's first line of copies asked for at once (its entries are, by the
        // caller), so that their cache misses overlap.
        for &(list, _) in probes {
            if let Some(first) = run(list).first() {
                crate::index::prefetch(first);
            }
        }
        let mut approx: Vec<(f32, u32)> = Vec::new();
        if let Some(&(first, _)) = probes.first() {
            crate::index::prefetch_slice_l2(run(first));
        }
        for (p, &(list, _)) in probes.iter().enumerate() {
            // The next list's whole run asked for while this one is scored: left to the hardware
            // prefetcher, the scan waited on the first line of each record (runs of ~18 on
            // 1M × 128 are too short for it), and the copies took 0.885x the time of the
            // index's codes where they take 0.79x so. Into the second-level cache: the 1%
            // filter ran at 1.17-1.24x the QPS of asking it into the first (`prefetch_slice_l2`).
            if let Some(&(next, _)) = probes.get(p + 1) {
                crate::index::prefetch_slice_l2(run(next));
            }
            let (s, e) = subset.list_span(list);
            for i in s..e {
                let entry = subset.entries[i];
                if kept(list, entry) {
                    let d = query.approx_of_copy(subset.copies.record(i));
                    approx.push((d, entry[0]));
                }
            }
        }
        self.refined(q, k, sq8, &query, approx)
    }

    /// [`search_ids_in`](Self::search_ids_in) scanning only `subset`'s entries of the probed
    /// lists: the same answer whenever every id in `ids` is one of the rows `subset` was made
    /// from, at the cost of scoring only those rows' codes; without `ids` every row of the
    /// subset is admitted, and no id is read. A `subset` made by another index (another number
    /// of lists) answers nothing.
    pub fn search_subset_ids_in(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        subset: &SubsetLists,
        ids: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        if subset.offsets.len() != self.nlist + 1 || self.pq.bits() != 4 {
            return Vec::new();
        }
        match ids {
            Some(ids) => {
                let allowed = |_, id: EntryId<'_>| id_admitted(ids, id.get());
                self.search_with(query, k, params, Some(subset), allowed)
            }
            None => self.search_with(query, k, params, Some(subset), |_, _| true),
        }
    }
}

/// Ors the `m` 4-bit codes of entry `from` of the packed blocks `src` into entry `to` of the
/// packed blocks `dst` (zero there before), nibble to nibble without unpacking, calling
/// `on_code(j, code)` for each sub-space's code on the way: how both subset forms are made.
#[inline]
pub(super) fn move_code(
    src: &[u8],
    from: usize,
    dst: &mut [u8],
    to: usize,
    m: usize,
    mut on_code: impl FnMut(usize, u8),
) {
    let block = fastscan::block_bytes(m);
    let src = &src[(from / BLOCK) * block..][..block];
    let dst = &mut dst[(to / BLOCK) * block..][..block];
    let (from, from_shift) = nibble(from % BLOCK);
    let (to, to_shift) = nibble(to % BLOCK);
    for j in 0..m {
        let code = (src[j * 16 + from] >> from_shift) & 15;
        dst[j * 16 + to] |= code << to_shift;
        on_code(j, code);
    }
}

/// Where slot `i` (0..32) of a fast-scan block keeps its code in each sub-space's 16 bytes: the
/// byte, and the shift of its nibble (see [`fastscan`]'s layout).
#[inline]
fn nibble(i: usize) -> (usize, u32) {
    if i < 16 { (i, 0) } else { (i - 16, 4) }
}
