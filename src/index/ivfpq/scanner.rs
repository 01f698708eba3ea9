//! The scanner seam between the search loop and the codes, after FAISS' `InvertedListScanner`.
//!
//! A [`ListScanner`] lives for one query. Making it is FAISS' `set_query`: it builds whatever
//! tables depend on the query alone. [`ListScanner::set_list`] adds what depends on the list (the
//! coarse term, or a whole table on the residual query `q - c`), and [`ListScanner::scan_codes`]
//! scores that list's codes, reporting each row that may beat the caller's threshold.
//!
//! Which scanner a query gets depends on three things fixed for the whole query: the code type
//! (8-bit float-table codes or 4-bit fast-scan codes), the table mode the metric and the derived
//! tables allow (one shared table, per-row terms, precomputed per-list terms, or a table per
//! list), and the SIMD level. [`with_scanner`] decides them once and hands the chosen scanner —
//! a concrete type, so the per-code kernels are inlined into it — to a [`ScanWith`]; before this
//! seam the per-list loops of `scan8`/`scan4` re-tested the mode on every list, and a new code
//! type meant editing both. Now it means a new [`ListScanner`] and one arm here.

use super::IvfPqIndex;
use super::SubsetLists;
use super::scan4::{FastScan, PrecomputedL2, ResidualL2, SharedTable};
use super::scan8::{Pq8Residual, Pq8Shared, Pq8Terms};
use crate::index::Metric;
use crate::index::fastscan::{Avx2Kernel, Avx512Kernel, Kernel, ScalarKernel, SimdLevel};

/// Scores the codes of one inverted list at a time for one query (see the module doc).
pub(super) trait ListScanner {
    /// Starts loading `list`'s codes (and its tables) into cache: the search loop calls it for
    /// the next list while scanning this one. Lists are short runs at random places, so the
    /// hardware prefetcher only ramps up inside each.
    fn prefetch_list(&self, list: usize) {
        let _ = list;
    }

    /// Makes `list` current. `coarse` is its probe score: `||q - c||²` for L2, `-<q, c>`
    /// otherwise.
    fn set_list(&mut self, list: usize, coarse: f32);

    /// Scans the current list. For every row whose distance (smaller is closer) may be at most
    /// `threshold`, calls `on_candidate(row, id, distance)` with the row in index order and
    /// where its id is; it returns the threshold for the rest of the scan (lowered as a top-k
    /// fills). A scanner may report rows above the threshold, never skip one at or below it.
    fn scan_codes(
        &mut self,
        threshold: f32,
        on_candidate: impl FnMut(usize, EntryId<'_>, f32) -> f32,
    );
}

/// Where a reported row's id is, read only by a caller that asks ([`EntryId::get`]): an array in
/// the list's own order (its rows' ids, or its spilled entries', see
/// [`IvfPqIndex::list_spill_ids`]), so that a filter on ids reads them beside the codes. Read
/// through the row, a spilled candidate's id was a cache miss each (its row is another list's).
/// Unfiltered re-ranking searches keep rows and never read an id.
#[derive(Clone, Copy)]
pub(super) struct EntryId<'a> {
    ids: &'a [u64],
    at: usize,
}

impl<'a> EntryId<'a> {
    /// The id at `ids[at]`.
    #[inline]
    pub(super) fn new(ids: &'a [u64], at: usize) -> Self {
        EntryId { ids, at }
    }

    /// The id (`u64::MAX` if the index is short of ids, which it checks when loaded).
    #[inline]
    pub(super) fn get(self) -> u64 {
        self.ids.get(self.at).copied().unwrap_or(u64::MAX)
    }
}

/// What a search does with the scanner picked for its query. A trait rather than a closure
/// because it is generic over the scanner type: each scanner gets its own copy of the loop.
pub(super) trait ScanWith {
    /// Runs with the chosen scanner.
    fn run<S: ListScanner>(self, scanner: S);
}

/// Picks the scanner for `index` and query `q` (normalised for cosine) and runs `with` on it:
/// FAISS' `get_InvertedListScanner`, the one place that knows every code type.
///
/// With `subset` (4-bit codes only; ignored otherwise) a 4-bit scanner reads each list's entries
/// in it instead of the list's own ([`SubsetLists`]).
pub(super) fn with_scanner(
    index: &IvfPqIndex,
    q: &[f32],
    subset: Option<&SubsetLists>,
    with: impl ScanWith,
) {
    if index.pq.bits() == 4 {
        with_kernel(
            index.simd,
            FastScanWith {
                index,
                q,
                subset,
                with,
            },
        );
        return;
    }
    match (index.metric, index.code_terms.is_empty()) {
        (Metric::L2, false) => with.run(Pq8Terms::new(index, q)),
        (Metric::L2, true) => with.run(Pq8Residual::new(index, q)),
        (Metric::Cosine | Metric::Dot, _) => with.run(Pq8Shared::new(index, q)),
    }
}

/// What runs with the fast-scan kernel of an index's SIMD level. A trait rather than a closure
/// because it is generic over the kernel type: each kernel gets its own copy of the loop.
pub(super) trait WithKernel {
    /// Runs with the chosen kernel.
    fn run<K: Kernel>(self, kernel: K);
}

/// Runs `with` on the kernel of `level`. Each level is a distinct kernel type; constructing one
/// checks the CPU, which `set_simd_level` has already checked, so the scalar fallback is never
/// taken.
pub(super) fn with_kernel(level: SimdLevel, with: impl WithKernel) {
    match level {
        SimdLevel::Avx512 => match Avx512Kernel::new() {
            Some(k) => with.run(k),
            None => with.run(ScalarKernel),
        },
        SimdLevel::Avx2 => match Avx2Kernel::new() {
            Some(k) => with.run(k),
            None => with.run(ScalarKernel),
        },
        SimdLevel::Scalar => with.run(ScalarKernel),
    }
}

/// [`with_fastscan`] as a [`WithKernel`].
struct FastScanWith<'a, W> {
    index: &'a IvfPqIndex,
    q: &'a [f32],
    subset: Option<&'a SubsetLists>,
    with: W,
}

impl<W: ScanWith> WithKernel for FastScanWith<'_, W> {
    fn run<K: Kernel>(self, kernel: K) {
        with_fastscan(self.index, self.q, self.subset, kernel, self.with);
    }
}

/// The 4-bit scanner with kernel `K`, by table mode.
fn with_fastscan<K: Kernel>(
    index: &IvfPqIndex,
    q: &[f32],
    subset: Option<&SubsetLists>,
    kernel: K,
    with: impl ScanWith,
) {
    match (index.metric, index.precomputed.is_empty()) {
        (Metric::L2, false) => with.run(FastScan::new(
            index,
            kernel,
            PrecomputedL2::new(index, q, kernel),
            subset,
        )),
        (Metric::L2, true) => with.run(FastScan::new(
            index,
            kernel,
            ResidualL2::new(index, q, kernel),
            subset,
        )),
        (Metric::Cosine | Metric::Dot, _) => with.run(FastScan::new(
            index,
            kernel,
            SharedTable::new(index, q, kernel),
            subset,
        )),
    }
}

impl IvfPqIndex {
    /// Offset added to a list's code distances when the table is shared by all lists (inner
    /// products): the coarse `-<q, c>`, plus 1 for cosine (`1 - cos`). 0 for L2, whose tables
    /// hold the coarse term themselves.
    pub(super) fn list_bias(&self, coarse: f32) -> f32 {
        match self.metric {
            Metric::L2 => 0.0,
            Metric::Cosine => 1.0 + coarse,
            Metric::Dot => coarse,
        }
    }

    /// The rows `start..end` of `list`.
    pub(super) fn list_rows(&self, list: usize) -> (usize, usize) {
        (
            self.list_offsets[list] as usize,
            self.list_offsets[list + 1] as usize,
        )
    }

    /// The rows `list` holds as spilled entries, coded after its own rows (empty without
    /// spilling).
    #[inline]
    pub(super) fn list_spills(&self, list: usize) -> &[u32] {
        match self.spill_offsets.get(list..list + 2) {
            Some(&[s, e]) => &self.spill_rows[s as usize..e as usize],
            _ => &[],
        }
    }

    /// The ids of `list`'s spilled entries, in [`list_spills`](Self::list_spills)' order.
    #[inline]
    pub(super) fn list_spill_ids(&self, list: usize) -> &[u64] {
        match self.spill_offsets.get(list..list + 2) {
            Some(&[s, e]) => self
                .spill_ids
                .get(s as usize..e as usize)
                .unwrap_or_default(),
            _ => &[],
        }
    }

    /// Whether `list` holds any row, its own or spilled (empty lists are never probed).
    #[inline]
    pub(super) fn has_rows(&self, list: usize) -> bool {
        self.list_filled.get(list).copied().unwrap_or(false)
    }

    /// `y = q - c_list`, the query as a residual of `list`'s centroid.
    pub(super) fn residual_query(&self, q: &[f32], list: usize, y: &mut [f32]) {
        let c = &self.centroids[list * self.dim..(list + 1) * self.dim];
        for ((o, &a), &b) in y.iter_mut().zip(q).zip(c) {
            *o = a - b;
        }
    }
}

/// Hints the CPU to start loading every cache line of `data`.
#[inline]
pub(super) fn prefetch_lines<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = std::mem::size_of_val(data);
        let base = data.as_ptr() as *const i8;
        for off in (0..bytes).step_by(64) {
            // SAFETY: prefetching is a hint; `off` stays inside the slice.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
