//! The scanner for 4-bit fast-scan codes: each list's codes are packed in [`fastscan`] blocks and
//! scored 32/64 rows at a time with byte shuffles over a u8 table.
//!
//! [`FastScan`] is generic over two things fixed for a whole query, so neither is tested per list:
//! the kernel (one type per SIMD level, [`Kernel`]) and how a list's u8 table comes about
//! ([`ListTables`]):
//!
//! * [`SharedTable`] (inner products): one `-<q_j, c_jk>` table quantised once per query; a
//!   list only adds its coarse `-<q, c>` to the offset.
//! * [`PrecomputedL2`] (L2 with the per-list terms derived at load): the list's table is its
//!   precomputed `||c_jk||² + 2 <c_j, c_jk>` plus the query's `-2 <q_j, c_jk>`, one vector add,
//!   then quantised; the coarse `||q - c||²` is the offset.
//! * [`ResidualL2`] (L2 without them): a `||y_j - c_jk||²` table over `y = q - c` per list,
//!   quantised; it holds the whole distance.
//!
//! A row's distance is `bias + scale * sum` with `(scale, bias)` from quantising its list's table
//! ([`fastscan::quantize_lut`]), and the float threshold is turned into a conservative u16 one.

use super::scanner::{EntryId, ListScanner, prefetch_lines};
use super::{IvfPqIndex, SubsetLists};
use crate::index::fastscan::{self, Kernel};

/// How a 4-bit scanner gets the quantised table of each list (see the module doc).
pub(super) trait ListTables {
    /// Fills the u8 table for `list` (whose probe score is `coarse`) and returns
    /// `(scale, bias)`: a row's distance is `bias + scale * sum`.
    fn set_list(&mut self, index: &IvfPqIndex, list: usize, coarse: f32) -> (f32, f32);

    /// The u8 table of the current list (`padded_m * 16` bytes).
    fn qlut(&self) -> &[u8];

    /// Starts loading what [`set_list`](Self::set_list) will read for `list`.
    fn prefetch(&self, index: &IvfPqIndex, list: usize) {
        let _ = (index, list);
    }
}

/// The 4-bit scanner: kernel `K`, tables `T`.
pub(super) struct FastScan<'a, K, T> {
    index: &'a IvfPqIndex,
    kernel: K,
    tables: T,
    /// When set, each list's entries in it are scanned instead of the list's own.
    subset: Option<&'a SubsetLists>,
    /// Every row's id (a subset's entries are named by row, their ids read through it).
    ids: &'a [u64],
    /// The current list: first row, own rows, the rows of its spilled entries (coded after the
    /// own rows), the ids of both in the same order (no spilled ids for a subset's entries),
    /// packed codes, and its `(scale, bias)`.
    start: usize,
    own: usize,
    spills: &'a [u32],
    own_ids: &'a [u64],
    spill_ids: &'a [u64],
    codes: &'a [u8],
    scale: f32,
    bias: f32,
}

impl<'a, K: Kernel, T: ListTables> FastScan<'a, K, T> {
    /// A scanner over `index` (or, with `subset`, over its entries) with the query's tables
    /// `tables`.
    pub(super) fn new(
        index: &'a IvfPqIndex,
        kernel: K,
        tables: T,
        subset: Option<&'a SubsetLists>,
    ) -> Self {
        FastScan {
            index,
            kernel,
            tables,
            subset,
            ids: &index.ids,
            start: 0,
            own: 0,
            spills: &[],
            own_ids: &[],
            spill_ids: &[],
            codes: &[],
            scale: 1.0,
            bias: 0.0,
        }
    }
}

impl<'a, K: Kernel, T: ListTables> FastScan<'a, K, T> {
    /// `list`'s packed codes: the subset's entries, or the list's own.
    #[inline]
    fn list_codes(&self, list: usize) -> &'a [u8] {
        match self.subset {
            Some(subset) => subset.list_codes(list),
            None => {
                let index = self.index;
                &index.codes[index.block_offsets[list]..index.block_offsets[list + 1]]
            }
        }
    }
}

impl<K: Kernel, T: ListTables> ListScanner for FastScan<'_, K, T> {
    /// Prefetches the first 2 KiB of the list's codes and what its table needs.
    #[inline]
    fn prefetch_list(&self, list: usize) {
        let index = self.index;
        let codes = self.list_codes(list);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            for line in codes.chunks(64).take(32) {
                // SAFETY: prefetching is a hint; the address is inside a live slice.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = codes;
        self.tables.prefetch(index, list);
    }

    fn set_list(&mut self, list: usize, coarse: f32) {
        let index = self.index;
        if let Some(subset) = self.subset {
            // Every entry named by its row, as spilled entries are.
            (self.start, self.own) = (0, 0);
            self.spills = subset.list_rows(list);
            (self.own_ids, self.spill_ids) = (&[], &[]);
        } else {
            let (start, end) = index.list_rows(list);
            self.start = start;
            self.own = end - start;
            self.spills = index.list_spills(list);
            self.own_ids = &self.ids[start..end];
            self.spill_ids = index.list_spill_ids(list);
        }
        self.codes = self.list_codes(list);
        (self.scale, self.bias) = self.tables.set_list(index, list, coarse);
    }

    #[inline]
    fn scan_codes(
        &mut self,
        threshold: f32,
        mut on_candidate: impl FnMut(usize, EntryId<'_>, f32) -> f32,
    ) {
        let (start, own, spills) = (self.start, self.own, self.spills);
        let (ids, own_ids, spill_ids) = (self.ids, self.own_ids, self.spill_ids);
        let (scale, bias) = (self.scale, self.bias);
        self.kernel.scan_list(
            self.codes,
            own + spills.len(),
            self.index.pq.m(),
            self.tables.qlut(),
            fastscan::u16_threshold(threshold, scale, bias),
            |i, sum| {
                // Only rows that may beat the threshold get here: the branch is off the scan.
                let (row, id) = match i.checked_sub(own) {
                    None => (start + i, EntryId::new(own_ids, i)),
                    // A subset's entries: named by row alone.
                    Some(s) if spill_ids.is_empty() => {
                        let row = spills[s] as usize;
                        (row, EntryId::new(ids, row))
                    }
                    Some(s) => (spills[s] as usize, EntryId::new(spill_ids, s)),
                };
                let next = on_candidate(row, id, bias + scale * sum as f32);
                fastscan::u16_threshold(next, scale, bias)
            },
        );
    }
}

/// Inner products: one table quantised per query.
pub(super) struct SharedTable {
    qlut: Vec<u8>,
    scale: f32,
    qbias: f32,
}

impl SharedTable {
    /// Builds and quantises the query's `-<q_j, c_jk>` table.
    pub(super) fn new<K: Kernel>(index: &IvfPqIndex, q: &[f32], kernel: K) -> Self {
        let m = index.pq.m();
        let mut lut = vec![0.0f32; m * 16];
        let mut qlut = vec![0u8; fastscan::padded_m(m) * 16];
        index.pq.neg_dot_table(q, &mut lut);
        let (scale, qbias) = kernel.quantize_lut(&lut, m, &mut qlut);
        SharedTable { qlut, scale, qbias }
    }
}

impl ListTables for SharedTable {
    fn set_list(&mut self, index: &IvfPqIndex, _list: usize, coarse: f32) -> (f32, f32) {
        (self.scale, index.list_bias(coarse) + self.qbias)
    }

    fn qlut(&self) -> &[u8] {
        &self.qlut
    }
}

/// L2 with per-list terms precomputed at load: a list's table is one vector add.
pub(super) struct PrecomputedL2<K> {
    kernel: K,
    /// `-2 <q_j, c_jk>`, shared by every list.
    qterm: Vec<f32>,
    lut: Vec<f32>,
    qlut: Vec<u8>,
}

impl<K: Kernel> PrecomputedL2<K> {
    /// Builds the query's `-2 <q_j, c_jk>` table.
    pub(super) fn new(index: &IvfPqIndex, q: &[f32], kernel: K) -> Self {
        let m = index.pq.m();
        let mut qterm = vec![0.0f32; m * 16];
        index.pq.neg_dot_table(q, &mut qterm);
        qterm.iter_mut().for_each(|v| *v *= 2.0);
        PrecomputedL2 {
            kernel,
            qterm,
            lut: vec![0.0f32; m * 16],
            qlut: vec![0u8; fastscan::padded_m(m) * 16],
        }
    }
}

impl<K: Kernel> ListTables for PrecomputedL2<K> {
    fn set_list(&mut self, index: &IvfPqIndex, list: usize, coarse: f32) -> (f32, f32) {
        let per_list = self.lut.len();
        let pre = &index.precomputed[list * per_list..(list + 1) * per_list];
        for ((o, &a), &b) in self.lut.iter_mut().zip(pre).zip(&self.qterm) {
            *o = a + b;
        }
        let (scale, qbias) = self
            .kernel
            .quantize_lut(&self.lut, index.pq.m(), &mut self.qlut);
        // The table leaves out the coarse ||q - c||²: it is the list's offset.
        (scale, coarse + qbias)
    }

    fn qlut(&self) -> &[u8] {
        &self.qlut
    }

    fn prefetch(&self, index: &IvfPqIndex, list: usize) {
        let per_list = self.lut.len();
        prefetch_lines(&index.precomputed[list * per_list..(list + 1) * per_list]);
    }
}

/// L2 with a table per list over the residual query `y = q - c`.
pub(super) struct ResidualL2<'q, K> {
    kernel: K,
    q: &'q [f32],
    y: Vec<f32>,
    lut: Vec<f32>,
    qlut: Vec<u8>,
}

impl<'q, K: Kernel> ResidualL2<'q, K> {
    /// Allocates the per-list tables; nothing depends on the query alone.
    pub(super) fn new(index: &IvfPqIndex, q: &'q [f32], kernel: K) -> Self {
        let m = index.pq.m();
        ResidualL2 {
            kernel,
            q,
            y: vec![0.0f32; index.dim],
            lut: vec![0.0f32; m * 16],
            qlut: vec![0u8; fastscan::padded_m(m) * 16],
        }
    }
}

impl<K: Kernel> ListTables for ResidualL2<'_, K> {
    fn set_list(&mut self, index: &IvfPqIndex, list: usize, _coarse: f32) -> (f32, f32) {
        index.residual_query(self.q, list, &mut self.y);
        index.pq.l2_table(&self.y, &mut self.lut);
        // The table holds the whole distance: no offset beyond the quantisation's.
        self.kernel
            .quantize_lut(&self.lut, index.pq.m(), &mut self.qlut)
    }

    fn qlut(&self) -> &[u8] {
        &self.qlut
    }
}
