//! [`FlatIndex`]: exact search by scanning every vector.
//!
//! It serves a shard's small mutable segment (points not yet sealed into IVF-PQ), the `exact`
//! query option, and ground truth in tests. It only appends: deletes and updates are tombstones
//! kept by the shard (a [`RowSet`] passed as the complement of `filter`), so rows never move and
//! a row number handed out by [`FlatIndex::add`] stays valid.
//!
//! The scan computes distances for blocks of rows with the batch SIMD kernels, then offers them to
//! a [`TopK`]. A sparse filter switches to visiting only the allowed rows.

use rayon::prelude::*;

use super::distance::{self, Kernels};
use super::{IndexError, Metric, Neighbor, RowSet, TopK};

/// Rows per batch-kernel call during a scan.
const SCAN_BLOCK: usize = 256;

/// A filter allowing fewer than one row in this many is visited row by row instead of scanned.
const SPARSE_FILTER_RATIO: usize = 16;

/// Exact nearest-neighbour index over vectors appended one by one.
#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    metric: Metric,
    vectors: Vec<f32>,
    ids: Vec<u64>,
}

impl FlatIndex {
    /// An empty index for vectors of `dim` components compared under `metric`.
    pub fn new(dim: usize, metric: Metric) -> Self {
        FlatIndex {
            dim,
            metric,
            vectors: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Rebuilds an index from its parts (as [`FlatIndex::vectors`] and [`FlatIndex::ids`] give
    /// them, e.g. read back from storage). Vectors are taken as stored: for cosine they must
    /// already be normalised, which is checked (within 1e-3) along with lengths and finiteness.
    pub fn from_parts(
        dim: usize,
        metric: Metric,
        vectors: Vec<f32>,
        ids: Vec<u64>,
    ) -> Result<Self, IndexError> {
        if vectors.len() != ids.len() * dim {
            return Err(IndexError::LengthMismatch {
                vectors: vectors.len().checked_div(dim).unwrap_or(vectors.len()),
                ids: ids.len(),
            });
        }
        if !vectors.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        if metric == Metric::Cosine && dim > 0 {
            let kernels = Kernels::best();
            if let Some(row) = vectors.chunks_exact(dim).position(|v| {
                let n = kernels.dot(v, v);
                n != 0.0 && (n - 1.0).abs() > 1e-3
            }) {
                return Err(IndexError::Corrupted(format!(
                    "cosine row {row} is not unit length"
                )));
            }
        }
        Ok(FlatIndex {
            dim,
            metric,
            vectors,
            ids,
        })
    }

    /// Reserves room for `additional` more vectors, so a segment of known target size does not
    /// reallocate while it fills.
    pub fn reserve(&mut self, additional: usize) {
        self.vectors.reserve(additional.saturating_mul(self.dim));
        self.ids.reserve(additional);
    }

    /// Checks that `v` can be stored or searched: right length, finite components.
    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                expected: self.dim,
                got: v.len(),
            });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        Ok(())
    }

    /// Appends `vector` under `id` and returns its row. Cosine indexes store the normalised
    /// vector. Ids are not deduplicated (the shard tombstones the old row on update).
    pub fn add(&mut self, id: u64, vector: &[f32]) -> Result<usize, IndexError> {
        self.check(vector)?;
        let row = self.ids.len();
        self.vectors.extend_from_slice(vector);
        if self.metric == Metric::Cosine {
            distance::normalize(&mut self.vectors[row * self.dim..]);
        }
        self.ids.push(id);
        Ok(row)
    }

    /// Appends many vectors (row-major, `ids.len() * dim` floats); all or nothing. Returns the
    /// rows they received.
    pub fn add_batch(
        &mut self,
        ids: &[u64],
        vectors: &[f32],
    ) -> Result<std::ops::Range<usize>, IndexError> {
        if vectors.len() != ids.len() * self.dim {
            if self.dim == 0 || !vectors.len().is_multiple_of(self.dim) {
                return Err(IndexError::DimensionMismatch {
                    expected: self.dim,
                    got: vectors.len(),
                });
            }
            return Err(IndexError::LengthMismatch {
                vectors: vectors.len() / self.dim,
                ids: ids.len(),
            });
        }
        if !vectors.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        let start = self.ids.len();
        let from = self.vectors.len();
        self.vectors.extend_from_slice(vectors);
        if self.metric == Metric::Cosine && self.dim > 0 {
            self.vectors[from..]
                .chunks_mut(self.dim)
                .for_each(distance::normalize);
        }
        self.ids.extend_from_slice(ids);
        Ok(start..self.ids.len())
    }

    /// The `k` nearest rows to `query` (closest first, ties by id) among the rows in `filter`
    /// (all rows if `None`). A query of the wrong dimension or with non-finite components finds
    /// nothing; use [`FlatIndex::try_search`] to learn why.
    pub fn search(&self, query: &[f32], k: usize, filter: Option<&RowSet>) -> Vec<Neighbor> {
        self.try_search(query, k, filter).unwrap_or_default()
    }

    /// [`FlatIndex::search`], refusing a bad query with an error.
    pub fn try_search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&RowSet>,
    ) -> Result<Vec<Neighbor>, IndexError> {
        self.check(query)?;
        let mut q = query.to_vec();
        if self.metric == Metric::Cosine {
            distance::normalize(&mut q);
        }
        let mut top = TopK::new(k);
        self.scan(&q, filter, &mut top);
        Ok(top.into_sorted_vec())
    }

    /// Offers every (filtered) row's distance to `query` (already normalised for cosine) to
    /// `top`, so callers can merge several segments into one selection.
    pub fn scan(&self, query: &[f32], filter: Option<&RowSet>, top: &mut TopK) {
        let n = self.len();
        if n == 0 || top.k() == 0 || query.len() != self.dim {
            return;
        }
        let kernels = Kernels::best();
        if let Some(f) = filter
            && f.count() * SPARSE_FILTER_RATIO < n
        {
            for row in f.iter().take_while(|&r| r < n) {
                let d = self.row_distance(kernels, query, row);
                top.push(self.ids[row], d);
            }
            return;
        }
        let mut buf = [0.0f32; SCAN_BLOCK];
        for (b, block) in self
            .vectors
            .chunks(SCAN_BLOCK * self.dim.max(1))
            .enumerate()
        {
            let start = b * SCAN_BLOCK;
            let rows = (n - start).min(SCAN_BLOCK);
            let out = &mut buf[..rows];
            self.block_distances(kernels, query, block, out);
            for (i, &d) in out.iter().enumerate() {
                let row = start + i;
                if d <= top.threshold() && filter.is_none_or(|f| f.contains(row)) {
                    top.push(self.ids[row], d);
                }
            }
        }
    }

    #[inline]
    fn row_distance(&self, kernels: &Kernels, query: &[f32], row: usize) -> f32 {
        let v = &self.vectors[row * self.dim..(row + 1) * self.dim];
        match self.metric {
            Metric::L2 => kernels.l2_sq(query, v),
            Metric::Cosine => 1.0 - kernels.dot(query, v),
            Metric::Dot => -kernels.dot(query, v),
        }
    }

    #[inline]
    fn block_distances(&self, kernels: &Kernels, query: &[f32], block: &[f32], out: &mut [f32]) {
        if self.dim == 0 {
            // Every vector is the empty vector: all at distance 0 (1 for cosine: no direction).
            out.fill(if self.metric == Metric::Cosine {
                1.0
            } else {
                0.0
            });
            return;
        }
        match self.metric {
            Metric::L2 => kernels.l2_sq_batch(query, block, self.dim, out),
            Metric::Cosine => {
                kernels.dot_batch(query, block, self.dim, out);
                out.iter_mut().for_each(|d| *d = 1.0 - *d);
            }
            Metric::Dot => {
                kernels.dot_batch(query, block, self.dim, out);
                out.iter_mut().for_each(|d| *d = -*d);
            }
        }
    }

    /// [`FlatIndex::search`] for many queries (row-major, `dim` floats each), in parallel.
    /// Answers come in query order; a bad query gets an empty answer.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        filter: Option<&RowSet>,
    ) -> Vec<Vec<Neighbor>> {
        if self.dim == 0 {
            return Vec::new();
        }
        queries
            .par_chunks(self.dim)
            .map(|q| self.search(q, k, filter))
            .collect()
    }

    /// Number of rows (appended vectors).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no vector was appended.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Distance metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// All stored vectors, row-major (normalised for cosine): what a seal hands to the IVF-PQ
    /// build.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Row → id.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The stored vector of `row`, if it exists.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        (row < self.len()).then(|| &self.vectors[row * self.dim..(row + 1) * self.dim])
    }

    /// Heap bytes held (vectors and ids).
    pub fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * size_of::<f32>() + self.ids.capacity() * size_of::<u64>()
    }
}

#[cfg(test)]
mod tests;
