//! Scanners for 8-bit codes: `m` bytes per row in row order, scored with float tables of
//! `m * 256` entries by [`pq::scan_codes8`]. One scanner per table mode, so that none of them
//! asks per list which mode it is in:
//!
//! * [`Pq8Shared`] (inner products): `<q, c + r> = <q, c> + <q, r>`, so one `-<q_j, c_jk>` table
//!   serves every list and the list's `-<q, c>` is an offset.
//! * [`Pq8Terms`] (L2, `pq_m >= 8`): `||q - c - r||² = ||q - c||² + term(row) - 2 Σ_j <q_j, r_j>`
//!   with the per-row term derived at load, so again one table per query.
//! * [`Pq8Residual`] (L2 without per-row terms): a `||y_j - c_jk||²` table over `y = q - c`,
//!   built for each probed list.

use super::IvfPqIndex;
use super::scanner::{EntryId, ListScanner};
use crate::index::pq;

/// The current list of an 8-bit scanner: its first row, its codes and its rows' ids.
struct List<'a> {
    start: usize,
    codes: &'a [u8],
    ids: &'a [u64],
}

impl<'a> List<'a> {
    fn new() -> Self {
        List {
            start: 0,
            codes: &[],
            ids: &[],
        }
    }

    fn set(&mut self, index: &'a IvfPqIndex, list: usize) {
        let m = index.pq.m();
        let (start, end) = index.list_rows(list);
        self.start = start;
        self.codes = &index.codes[start * m..end * m];
        self.ids = &index.ids[start..end];
    }

    /// Where the id of the list's `i`-th row is.
    #[inline]
    fn id(&self, i: usize) -> EntryId<'a> {
        EntryId::new(self.ids, i)
    }
}

/// Inner products (cosine, dot): one table for the query, the coarse term as a list offset.
pub(super) struct Pq8Shared<'a> {
    index: &'a IvfPqIndex,
    lut: Vec<[f32; 256]>,
    list: List<'a>,
    bias: f32,
}

impl<'a> Pq8Shared<'a> {
    /// Builds the query's `-<q_j, c_jk>` table.
    pub(super) fn new(index: &'a IvfPqIndex, q: &[f32]) -> Self {
        let mut lut = vec![[0.0f32; 256]; index.pq.m()];
        index.pq.neg_dot_table(q, lut.as_flattened_mut());
        Pq8Shared {
            index,
            lut,
            list: List::new(),
            bias: 0.0,
        }
    }
}

impl ListScanner for Pq8Shared<'_> {
    fn set_list(&mut self, list: usize, coarse: f32) {
        self.list.set(self.index, list);
        self.bias = self.index.list_bias(coarse);
    }

    #[inline]
    fn scan_codes(
        &mut self,
        threshold: f32,
        mut on_candidate: impl FnMut(usize, EntryId<'_>, f32) -> f32,
    ) {
        let (start, list) = (self.list.start, &self.list);
        pq::scan_codes8(
            self.list.codes,
            self.index.pq.m(),
            &self.lut,
            self.bias,
            threshold,
            |i, d| on_candidate(start + i, list.id(i), d),
        );
    }
}

/// L2 with per-row terms: `d = ||q - c||² + term(row) + Σ_j -2 <q_j, c_j,code>`.
pub(super) struct Pq8Terms<'a> {
    index: &'a IvfPqIndex,
    lut: Vec<[f32; 256]>,
    list: List<'a>,
    terms: &'a [f32],
    coarse: f32,
}

impl<'a> Pq8Terms<'a> {
    /// Builds the query's `-2 <q_j, c_jk>` table.
    pub(super) fn new(index: &'a IvfPqIndex, q: &[f32]) -> Self {
        let mut lut = vec![[0.0f32; 256]; index.pq.m()];
        index.pq.neg_dot_table(q, lut.as_flattened_mut());
        lut.as_flattened_mut().iter_mut().for_each(|v| *v *= 2.0);
        Pq8Terms {
            index,
            lut,
            list: List::new(),
            terms: &[],
            coarse: 0.0,
        }
    }
}

impl ListScanner for Pq8Terms<'_> {
    fn set_list(&mut self, list: usize, coarse: f32) {
        self.list.set(self.index, list);
        let (start, end) = self.index.list_rows(list);
        self.terms = &self.index.code_terms[start..end];
        self.coarse = coarse;
    }

    #[inline]
    fn scan_codes(
        &mut self,
        threshold: f32,
        mut on_candidate: impl FnMut(usize, EntryId<'_>, f32) -> f32,
    ) {
        let (start, list) = (self.list.start, &self.list);
        pq::scan_codes8_terms(
            self.list.codes,
            self.index.pq.m(),
            &self.lut,
            self.coarse,
            self.terms,
            threshold,
            |i, d| on_candidate(start + i, list.id(i), d),
        );
    }
}

/// L2 with a table per list over the residual query `y = q - c`; the table holds the whole
/// distance, so no offset.
pub(super) struct Pq8Residual<'a> {
    index: &'a IvfPqIndex,
    q: &'a [f32],
    y: Vec<f32>,
    lut: Vec<[f32; 256]>,
    list: List<'a>,
}

impl<'a> Pq8Residual<'a> {
    /// Allocates the per-list table; nothing depends on the query alone.
    pub(super) fn new(index: &'a IvfPqIndex, q: &'a [f32]) -> Self {
        Pq8Residual {
            index,
            q,
            y: vec![0.0f32; index.dim],
            lut: vec![[0.0f32; 256]; index.pq.m()],
            list: List::new(),
        }
    }
}

impl ListScanner for Pq8Residual<'_> {
    fn set_list(&mut self, list: usize, _coarse: f32) {
        self.list.set(self.index, list);
        self.index.residual_query(self.q, list, &mut self.y);
        self.index.pq.l2_table(&self.y, self.lut.as_flattened_mut());
    }

    #[inline]
    fn scan_codes(
        &mut self,
        threshold: f32,
        mut on_candidate: impl FnMut(usize, EntryId<'_>, f32) -> f32,
    ) {
        let (start, list) = (self.list.start, &self.list);
        pq::scan_codes8(
            self.list.codes,
            self.index.pq.m(),
            &self.lut,
            0.0,
            threshold,
            |i, d| on_candidate(start + i, list.id(i), d),
        );
    }
}
