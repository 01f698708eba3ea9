//! Training and encoding: [`IvfPqIndex::build`] trains the coarse quantiser and the PQ codebooks,
//! orders rows by list and encodes them, then hands the parts to
//! [`IvfPqIndex::from_parts`], so a built and a loaded index are made the same way.

use std::borrow::Cow;

use rayon::prelude::*;

use super::{IvfPqConfig, IvfPqIndex, IvfPqMeta, IvfPqParts, LAYOUT_VERSION, invalid, spill};
use crate::index::distance::{self, normalize};
use crate::index::error::IndexError;
use crate::index::fastscan;
use crate::index::kmeans::{self, KMeansConfig};
use crate::index::pq::{self, ProductQuantizer};
use crate::index::{Metric, Slab};

/// Index of the largest inner product of `x` with each centroid (the assignment that matches how
/// [`Metric::Dot`] queries probe).
fn assign_ip(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    let nlist = centroids.len() / dim;
    data.par_chunks(dim * 64)
        .flat_map_iter(|rows| {
            let mut scores = vec![0.0f32; nlist];
            rows.chunks_exact(dim)
                .map(|x| {
                    distance::dot_batch(x, centroids, dim, &mut scores);
                    let mut best = 0;
                    for (l, &s) in scores.iter().enumerate() {
                        if s > scores[best] {
                            best = l;
                        }
                    }
                    best as u32
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Evenly spaced sample of at most `max` row indices out of `n` (deterministic).
fn sample_rows(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        (0..n).collect()
    } else {
        (0..max)
            .map(|i| (i as u128 * n as u128 / max as u128) as usize)
            .collect()
    }
}

impl IvfPqIndex {
    /// Trains the coarse quantiser and the PQ codebooks on `vectors` (row-major, `dim` per row)
    /// and encodes them all. Uses every rayon thread.
    pub fn build(
        dim: usize,
        vectors: &[f32],
        ids: &[u64],
        config: &IvfPqConfig,
    ) -> Result<Self, IndexError> {
        let (ksub, _) = pq::check_params(dim, config.pq_m, config.pq_bits)?;
        if config.pq_bits == 4 && fastscan::padded_m(config.pq_m) > fastscan::MAX_SUBSPACES {
            return Err(invalid(format!(
                "pq_m = {} is too many sub-spaces for 4-bit codes (at most {})",
                config.pq_m,
                fastscan::MAX_SUBSPACES
            )));
        }
        if !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::DimensionMismatch {
                expected: dim,
                got: vectors.len() % dim,
            });
        }
        let n = vectors.len() / dim;
        if ids.len() != n {
            return Err(IndexError::LengthMismatch {
                vectors: n,
                ids: ids.len(),
            });
        }
        if config.nlist == 0 || config.nlist > u32::MAX as usize {
            return Err(invalid(format!(
                "nlist = {} must be positive",
                config.nlist
            )));
        }
        if config.kmeans_iters == 0 || config.max_points_per_centroid == 0 {
            return Err(invalid(
                "kmeans_iters and max_points_per_centroid must be positive",
            ));
        }
        if let Some(lambda) = config.soar_lambda {
            if config.pq_bits != 4 {
                return Err(invalid(
                    "spilling (soar_lambda) needs 4-bit codes: 8-bit codes are stored in row order",
                ));
            }
            if !lambda.is_finite() || lambda < 0.0 {
                return Err(invalid(format!(
                    "soar_lambda = {lambda} must be a finite number >= 0"
                )));
            }
        }
        let needed = config.nlist.max(ksub);
        if n < needed {
            return Err(IndexError::NotEnoughData { needed, got: n });
        }
        if vectors.iter().any(|v| !v.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        let data: Cow<[f32]> = if config.metric == Metric::Cosine {
            let mut owned = vectors.to_vec();
            owned.par_chunks_mut(dim).for_each(normalize);
            Cow::Owned(owned)
        } else {
            Cow::Borrowed(vectors)
        };

        // Coarse quantiser.
        let kconfig = KMeansConfig {
            k: config.nlist,
            iters: config.kmeans_iters,
            seed: config.seed,
            max_points_per_centroid: config.max_points_per_centroid,
            spherical: config.metric == Metric::Cosine,
        };
        let centroids = kmeans::try_train(&data, dim, &kconfig)?;
        let assign = match config.metric {
            Metric::L2 | Metric::Cosine => kmeans::assign(&data, dim, &centroids),
            Metric::Dot => assign_ip(&data, dim, &centroids),
        };

        // PQ on residuals of a sample.
        let sample = sample_rows(n, config.pq_train_points.max(ksub));
        let mut train = vec![0.0f32; sample.len() * dim];
        train
            .par_chunks_mut(dim)
            .zip(sample.par_iter())
            .for_each(|(out, &r)| {
                let c = &centroids[assign[r] as usize * dim..][..dim];
                for ((o, &x), &cv) in out.iter_mut().zip(&data[r * dim..(r + 1) * dim]).zip(c) {
                    *o = x - cv;
                }
            });
        let pq = ProductQuantizer::train(
            dim,
            config.pq_m,
            config.pq_bits,
            &train,
            config.seed ^ 0x9e37_79b9,
        )?;
        drop(train);

        // Order rows by list (stable counting sort).
        let mut offsets = vec![0u64; config.nlist + 1];
        for &a in &assign {
            offsets[a as usize + 1] += 1;
        }
        for l in 0..config.nlist {
            offsets[l + 1] += offsets[l];
        }
        let mut next: Vec<u64> = offsets[..config.nlist].to_vec();
        let mut order = vec![0usize; n];
        for (r, &a) in assign.iter().enumerate() {
            order[next[a as usize] as usize] = r;
            next[a as usize] += 1;
        }

        // Spilled entries: the second list of every vector, grouped by list like the rows.
        let spill = config
            .soar_lambda
            .map(|lambda| Spill::new(&data, dim, &centroids, &assign, &order, lambda));

        // Encode residuals and lay out ids and vectors in row (list) order.
        let m = config.pq_m;
        let codes = encode_residuals(&data, dim, &centroids, &pq, &order, |e| assign[order[e]]);
        let spill_codes = spill
            .as_ref()
            .map(|s| encode_residuals(&data, dim, &centroids, &pq, &s.sources, |e| s.lists[e]));
        const CHUNK: usize = 256;
        let mut ordered = vec![0.0f32; n * dim];
        ordered
            .par_chunks_mut(dim * CHUNK)
            .zip(order.par_chunks(CHUNK))
            .for_each(|(out, rows)| {
                for (o, &r) in out.chunks_exact_mut(dim).zip(rows) {
                    o.copy_from_slice(&data[r * dim..(r + 1) * dim]);
                }
            });
        let ordered_ids: Vec<u64> = order.iter().map(|&r| ids[r]).collect();
        let codes = if config.pq_bits == 4 {
            // A list's own rows first, then its spilled entries, in the same blocks.
            let mut packed = Vec::new();
            let mut list_codes = Vec::new();
            for l in 0..config.nlist {
                let (s, e) = (offsets[l] as usize, offsets[l + 1] as usize);
                list_codes.clear();
                list_codes.extend_from_slice(&codes[s * m..e * m]);
                if let (Some(spill), Some(spill_codes)) = (&spill, &spill_codes) {
                    let (s, e) = (spill.offsets[l] as usize, spill.offsets[l + 1] as usize);
                    list_codes.extend_from_slice(&spill_codes[s * m..e * m]);
                }
                fastscan::pack_codes(&list_codes, m, &mut packed);
            }
            packed
        } else {
            codes
        };
        // No copy kept (one list, or every other list too far): stored as an index without.
        let (spill_offsets, spill_rows) = match spill {
            Some(s) if !s.rows.is_empty() => (s.offsets, s.rows),
            _ => (Vec::new(), Vec::new()),
        };

        Self::from_parts(IvfPqParts {
            meta: IvfPqMeta {
                version: LAYOUT_VERSION,
                dim,
                metric: config.metric,
                nlist: config.nlist,
                pq_m: m,
                pq_bits: config.pq_bits,
                n,
                spilled: spill_rows.len(),
            },
            centroids: Slab::from(centroids),
            codebooks: pq.codebooks().clone(),
            list_offsets: Slab::from(offsets),
            codes: Slab::from(codes),
            ids: Slab::from(ordered_ids),
            vectors: Slab::from(ordered),
            spill_offsets: Slab::from(spill_offsets),
            spill_rows: Slab::from(spill_rows),
        })
    }
}

/// PQ codes of `data[sources[e]] - centroid[list_of(e)]` for every entry `e`, `m` bytes each.
fn encode_residuals(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    pq: &ProductQuantizer,
    sources: &[usize],
    list_of: impl Fn(usize) -> u32 + Sync,
) -> Vec<u8> {
    const CHUNK: usize = 256;
    let m = pq.m();
    let mut codes = vec![0u8; sources.len() * m];
    codes
        .par_chunks_mut(CHUNK * m)
        .zip(sources.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(chunk, (out, rows))| {
            let mut residual = vec![0.0f32; dim];
            let mut scratch = pq.encode_scratch();
            for (i, (c, &r)) in out.chunks_exact_mut(m).zip(rows).enumerate() {
                let list = list_of(chunk * CHUNK + i) as usize;
                let cent = &centroids[list * dim..][..dim];
                for ((o, &x), &cv) in residual
                    .iter_mut()
                    .zip(&data[r * dim..(r + 1) * dim])
                    .zip(cent)
                {
                    *o = x - cv;
                }
                pq.encode_with(&residual, c, &mut scratch);
            }
        });
    codes
}

/// The spilled entries of a build, grouped by list.
struct Spill {
    /// `nlist + 1` offsets: list `l` holds entries `offsets[l]..offsets[l + 1]`.
    offsets: Vec<u64>,
    /// Per entry, the row (position in list order) it copies.
    rows: Vec<u32>,
    /// Per entry, the input vector it copies.
    sources: Vec<usize>,
    /// Per entry, its list.
    lists: Vec<u32>,
}

impl Spill {
    /// Spills every vector of `data` (whose own lists are `assign`, and which `order` lays out in
    /// list order) to its SOAR list.
    fn new(
        data: &[f32],
        dim: usize,
        centroids: &[f32],
        assign: &[u32],
        order: &[usize],
        lambda: f32,
    ) -> Self {
        let nlist = centroids.len() / dim;
        // Entry `row` of `second` is the spilled list of source row `order[row]`.
        let second = spill::soar_lists(data, dim, centroids, assign, order, lambda);
        let mut offsets = vec![0u64; nlist + 1];
        for l in second.iter().flatten() {
            offsets[*l as usize + 1] += 1;
        }
        for l in 0..nlist {
            offsets[l + 1] += offsets[l];
        }
        let total = offsets[nlist] as usize;
        let mut next: Vec<u64> = offsets[..nlist].to_vec();
        let (mut rows, mut sources, mut lists) =
            (vec![0u32; total], vec![0usize; total], vec![0u32; total]);
        // In row order, so each list's entries are ascending rows.
        for (row, (&r, l)) in order.iter().zip(second).enumerate() {
            if let Some(l) = l {
                let e = next[l as usize] as usize;
                next[l as usize] += 1;
                (rows[e], sources[e], lists[e]) = (row as u32, r, l);
            }
        }
        Spill {
            offsets,
            rows,
            sources,
            lists,
        }
    }
}
