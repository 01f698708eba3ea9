//! IVF-PQ: an inverted-file index over product-quantised residuals, with exact re-ranking.
//!
//! * **Coarse quantiser**: `nlist` k-means centroids; each vector lives in the list of its nearest
//!   centroid (by L2; for [`Metric::Cosine`] vectors are normalised and the centroids spherical,
//!   for [`Metric::Dot`] by largest inner product, as queries probe). A query scans the `nprobe`
//!   lists whose centroids are closest.
//! * **Codes**: the residual `r = x - c` (of the normalised vector for cosine) is product-quantised
//!   ([`ProductQuantizer`]), 8-bit codes scanned with float tables, or 4-bit codes in the
//!   [`fastscan`] block layout scanned 32/64 at a time with byte shuffles.
//! * **Distances (ADC)**: for L2,
//!   `||q - c - r||² = ||q - c||² + Σ_j (||r_j||² + 2<c_j, r_j>) - 2 Σ_j <q_j, r_j>`
//!   (FAISS' derivation in `IndexIVFPQ.cpp`). With 4-bit codes the middle term
//!   is precomputed per list (`nlist * m * 16` floats, kept only while at most a quarter of the
//!   code bytes) and the last is one table per query, so a probed list's table is one vector add;
//!   measured ~1.2x QPS on 1M × 128 at small `nprobe`. With 8-bit codes that table would be
//!   `nlist * m * 256` floats — as large as the codes — so instead the middle term is summed per
//!   row at load (4 bytes a row, for `pq_m >= 8`; ~1.15x QPS at `nprobe 4` on 1M × 128 pq32x8), and
//!   below that a table over `y = q - c` is built per probed list. For inner products,
//!   `<q, c + r> = <q, c> + <q, r>`: one table per query, and the list's `<q, c>` is an offset.
//! * **Scratch**: tables and heaps are allocated per call; allocation and zeroing measured at
//!   about 2% of a query, not worth thread-local state.
//! * **Re-ranking**: with `rerank > 0` the best `k * rerank` candidates by ADC are re-scored with
//!   exact distances from the raw vectors (kept in list order so a storage layer can map them from
//!   disk; they are read only for these candidates).
//!
//! Rows are positions in list order: row `r` has id `ids()[r]`, and a [`RowSet`] filter is over
//! rows ([`IvfPqIndex::search_ids_in`] takes one over ids instead). Filtered-out rows never
//! become candidates, so a selective filter still yields `k` hits when the probed lists hold them.
//!
//! Every part lives in a [`Slab`] so that [`IvfPqIndex::to_parts`] / [`IvfPqIndex::from_parts`]
//! move an index to and from storage without copies; `from_parts` validates all sizes, so a search
//! on a restored index never indexes out of bounds.

use std::borrow::Cow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::coarse::CoarseTable;
use super::distance::{self, normalize};
use super::error::IndexError;
use super::fastscan::{self, SimdLevel};
use super::kmeans::{self, KMeansConfig};
use super::pq::{self, ProductQuantizer};
use super::{Metric, Neighbor, RowSet, Slab, TopK};

/// Version of the part layout described by [`IvfPqMeta`]; bump when any part's meaning changes.
pub const LAYOUT_VERSION: u32 = 1;

/// Build parameters of an [`IvfPqIndex`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IvfPqConfig {
    /// How vectors are compared.
    pub metric: Metric,
    /// Number of inverted lists (coarse centroids). About `4 * sqrt(n)` is a good start.
    pub nlist: usize,
    /// Number of PQ sub-spaces; must divide the dimension. More sub-spaces = finer codes.
    pub pq_m: usize,
    /// Bits per sub-space code: 8 (256 centroids, float-table scan) or 4 (16 centroids, SIMD
    /// fast-scan; use twice or four times the sub-spaces and rely on re-ranking).
    pub pq_bits: u8,
    /// Seed of every random choice made while training, so builds are reproducible.
    pub seed: u64,
    /// k-means iterations for the coarse quantiser.
    pub kmeans_iters: usize,
    /// Training points per coarse centroid (the sample k-means sees is at most `nlist` times this).
    /// Default 256 (as FAISS): on 58k × 384 MiniLM it lifts recall@10 at `nprobe 32` from 0.938
    /// (64 per centroid) to 0.944; more Lloyd iterations barely help, so `kmeans_iters` stays 10.
    pub max_points_per_centroid: usize,
    /// Residuals sampled to train the PQ codebooks.
    pub pq_train_points: usize,
}

impl IvfPqConfig {
    /// A configuration with the given shape and default training effort.
    pub fn new(metric: Metric, nlist: usize, pq_m: usize, pq_bits: u8) -> Self {
        IvfPqConfig {
            metric,
            nlist,
            pq_m,
            pq_bits,
            seed: 0x5ba1,
            kmeans_iters: 10,
            max_points_per_centroid: 256,
            pq_train_points: 65_536,
        }
    }
}

impl IvfPqConfig {
    /// The shape we recommend for `n` vectors of dimension `dim`: 4-bit fast-scan codes with
    /// `pq_m` the largest divisor of `dim` up to `dim / 2` (two dimensions per sub-space; the
    /// coarse 4-bit codes are then rescued by re-ranking), and `nlist ≈ sqrt(n)`: with
    /// fast-scan the lists are cheap to scan, and probing `4 sqrt(n)` centroids per query (the
    /// usual advice for float-table IVF-PQ) costs more than it saves.
    ///
    /// Measured (one core, k = 10, see the ivfpq commit log): 1M × 128 SIFT-like L2 with
    /// `nlist 1024, pq 64x4` reaches recall@10 0.96 at `nprobe 2, rerank 2`; 58k × 384 MiniLM
    /// cosine with `nlist 256, pq 192x4` needs `nprobe ≈ nlist / 5, rerank 3-4` for 0.95.
    pub fn for_size(metric: Metric, dim: usize, n: usize) -> Self {
        let nlist = ((n as f64).sqrt().round() as usize).clamp(1, n.max(1));
        IvfPqConfig::new(metric, nlist, Self::fastscan_pq_m(dim), 4)
    }

    /// The recommended number of 4-bit sub-spaces for `dim`: the largest divisor of `dim` up to
    /// `dim / 2` and the fast-scan limit (see [`IvfPqConfig::for_size`]).
    pub fn fastscan_pq_m(dim: usize) -> usize {
        let half = (dim / 2).clamp(1, fastscan::MAX_SUBSPACES);
        (1..=half)
            .rev()
            .find(|m| dim.is_multiple_of(*m))
            .unwrap_or(1)
    }
}

/// Per-call search knobs; searching never changes the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Lists to scan (clamped to `1..=nlist`).
    pub nprobe: usize,
    /// 0: return ADC (approximate) distances; otherwise re-rank the best `k * rerank` ADC
    /// candidates with exact distances.
    pub rerank: usize,
}

/// The scalar description of a stored index; with the slabs of [`IvfPqParts`] it is the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IvfPqMeta {
    /// [`LAYOUT_VERSION`] of the writer.
    pub version: u32,
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// Number of inverted lists.
    pub nlist: usize,
    /// PQ sub-spaces.
    pub pq_m: usize,
    /// Bits per PQ code (4 or 8).
    pub pq_bits: u8,
    /// Number of vectors (rows).
    pub n: usize,
}

/// Everything an [`IvfPqIndex`] is made of, for a storage layer to write out and map back.
#[derive(Debug, Clone)]
pub struct IvfPqParts {
    /// Shape and version.
    pub meta: IvfPqMeta,
    /// `nlist * dim` coarse centroids, row-major.
    pub centroids: Slab<f32>,
    /// `pq_m * (dim / pq_m) * 2^pq_bits` PQ centroids, laid out `[m][dsub][ksub]`.
    pub codebooks: Slab<f32>,
    /// `nlist + 1` row offsets: list `l` holds rows `offsets[l]..offsets[l + 1]`.
    pub list_offsets: Slab<u64>,
    /// 8-bit: `n * pq_m` bytes in row order. 4-bit: each list's codes packed in
    /// [`fastscan`] blocks, lists one after another.
    pub codes: Slab<u8>,
    /// `n` external ids in row order.
    pub ids: Slab<u64>,
    /// `n * dim` raw vectors in row order (normalised for cosine), for exact re-ranking.
    pub vectors: Slab<f32>,
}

/// A sealed, immutable IVF-PQ index. Searches take `&self` and share it freely across threads.
#[derive(Debug, Clone)]
pub struct IvfPqIndex {
    dim: usize,
    metric: Metric,
    nlist: usize,
    n: usize,
    pq: ProductQuantizer,
    centroids: Slab<f32>,
    /// Derived copy of the centroids laid out for probing.
    coarse: CoarseTable,
    /// Squared centroid norms (derived), for `||q - c||² = ||q||² + ||c||² - 2<q, c>`.
    centroid_norms: Vec<f32>,
    list_offsets: Slab<u64>,
    /// 4-bit: byte offset of each list's first block (derived); 8-bit: empty.
    block_offsets: Vec<usize>,
    /// L2 with 4-bit codes: `nlist * m * 16` floats of [`ProductQuantizer::residual_terms`] per
    /// list (derived), so a probed list's table is one vector add instead of `dim * 16` flops.
    /// Costs `64 * m * nlist` bytes, a few percent of the codes at the sizes 4-bit codes are for
    /// (8-bit tables would be 16 times larger, as much as the codes: not kept).
    precomputed: Vec<f32>,
    /// L2 with 8-bit codes (`pq_m >= 8`): per row, `||r||² + 2 <c, r>` of its decoded residual
    /// (derived at load, 4 bytes a row), so a query needs one `-2 <q_j, c_jk>` table instead of
    /// a `dim * 256`-flop table per probed list.
    code_terms: Vec<f32>,
    codes: Slab<u8>,
    ids: Slab<u64>,
    vectors: Slab<f32>,
    simd: SimdLevel,
}

fn invalid(msg: impl Into<String>) -> IndexError {
    IndexError::InvalidParameter(msg.into())
}

fn corrupted(msg: impl Into<String>) -> IndexError {
    IndexError::Corrupted(msg.into())
}

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

        // Encode residuals and lay out ids and vectors in row (list) order.
        let m = config.pq_m;
        let mut codes = vec![0u8; n * m];
        const CHUNK: usize = 256;
        codes
            .par_chunks_mut(CHUNK * m)
            .zip(order.par_chunks(CHUNK))
            .for_each(|(out, rows)| {
                let mut residual = vec![0.0f32; dim];
                for (c, &r) in out.chunks_exact_mut(m).zip(rows) {
                    let cent = &centroids[assign[r] as usize * dim..][..dim];
                    for ((o, &x), &cv) in residual
                        .iter_mut()
                        .zip(&data[r * dim..(r + 1) * dim])
                        .zip(cent)
                    {
                        *o = x - cv;
                    }
                    pq.encode(&residual, c);
                }
            });
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
            let mut packed = Vec::new();
            for l in 0..config.nlist {
                let (s, e) = (offsets[l] as usize, offsets[l + 1] as usize);
                fastscan::pack_codes(&codes[s * m..e * m], m, &mut packed);
            }
            packed
        } else {
            codes
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
            },
            centroids: Slab::from(centroids),
            codebooks: pq.codebooks().clone(),
            list_offsets: Slab::from(offsets),
            codes: Slab::from(codes),
            ids: Slab::from(ordered_ids),
            vectors: Slab::from(ordered),
        })
    }

    /// Rebuilds an index from stored parts, checking that every size agrees with the metadata.
    pub fn from_parts(parts: IvfPqParts) -> Result<Self, IndexError> {
        let IvfPqParts {
            meta,
            centroids,
            codebooks,
            list_offsets,
            codes,
            ids,
            vectors,
        } = parts;
        if meta.version != LAYOUT_VERSION {
            return Err(corrupted(format!(
                "layout version {} (expected {LAYOUT_VERSION})",
                meta.version
            )));
        }
        let IvfPqMeta {
            dim,
            metric,
            nlist,
            pq_m,
            pq_bits,
            n,
            ..
        } = meta;
        pq::check_params(dim, pq_m, pq_bits).map_err(|e| corrupted(e.to_string()))?;
        if nlist == 0 {
            return Err(corrupted("nlist is 0"));
        }
        if pq_bits == 4 && fastscan::padded_m(pq_m) > fastscan::MAX_SUBSPACES {
            return Err(corrupted("too many sub-spaces for 4-bit codes"));
        }
        let expect = |what: &str, got: usize, want: Option<usize>| match want {
            Some(w) if w == got => Ok(()),
            _ => Err(corrupted(format!(
                "{what}: {got} elements, expected {want:?}"
            ))),
        };
        expect("centroids", centroids.len(), nlist.checked_mul(dim))?;
        if centroids.iter().any(|v| !v.is_finite()) {
            return Err(corrupted("centroids contain a non-finite value"));
        }
        let pq = ProductQuantizer::from_codebooks(dim, pq_m, pq_bits, codebooks)?;
        expect("list offsets", list_offsets.len(), nlist.checked_add(1))?;
        if list_offsets[0] != 0
            || list_offsets.windows(2).any(|w| w[0] > w[1])
            || list_offsets[nlist] != n as u64
        {
            return Err(corrupted("list offsets are not increasing from 0 to n"));
        }
        expect("ids", ids.len(), Some(n))?;
        expect("vectors", vectors.len(), n.checked_mul(dim))?;
        let mut block_offsets = Vec::new();
        if pq_bits == 4 {
            let bb = fastscan::block_bytes(pq_m);
            let mut at = 0usize;
            block_offsets.reserve(nlist + 1);
            for l in 0..nlist {
                block_offsets.push(at);
                let len = (list_offsets[l + 1] - list_offsets[l]) as usize;
                at = fastscan::blocks_for(len)
                    .checked_mul(bb)
                    .and_then(|b| b.checked_add(at))
                    .ok_or_else(|| corrupted("code size overflows"))?;
            }
            block_offsets.push(at);
            expect("codes", codes.len(), Some(at))?;
        } else {
            expect("codes", codes.len(), n.checked_mul(pq_m))?;
        }
        let centroid_norms = centroids.chunks_exact(dim).map(distance::norm_sq).collect();
        let coarse = CoarseTable::new(&centroids, dim);
        let mut precomputed = Vec::new();
        // Keep the tables only while they are small next to the codes (at most a quarter), so
        // that resident memory stays close to codes + ids + centroids.
        let table_bytes = nlist * pq_m * 16 * 4;
        if metric == Metric::L2 && pq_bits == 4 && table_bytes <= codes.len() / 4 {
            let per_list = pq_m * 16;
            precomputed = vec![0.0f32; nlist * per_list];
            precomputed
                .par_chunks_mut(per_list)
                .zip(centroids.par_chunks(dim))
                .for_each(|(out, c)| pq.residual_terms(c, out));
        }
        let mut code_terms = Vec::new();
        if metric == Metric::L2 && pq_bits == 8 && pq_m >= 8 {
            let per_vector: Vec<Vec<f32>> = (0..nlist)
                .into_par_iter()
                .map(|l| {
                    let (s, e) = (list_offsets[l] as usize, list_offsets[l + 1] as usize);
                    let mut table = vec![[0.0f32; 256]; pq_m];
                    pq.residual_terms(&centroids[l * dim..(l + 1) * dim], table.as_flattened_mut());
                    codes[s * pq_m..e * pq_m]
                        .chunks_exact(pq_m)
                        .map(|c| c.iter().zip(&table).map(|(&k, t)| t[k as usize]).sum())
                        .collect()
                })
                .collect();
            code_terms = per_vector.concat();
        }
        Ok(IvfPqIndex {
            dim,
            metric,
            nlist,
            n,
            pq,
            centroids,
            coarse,
            centroid_norms,
            list_offsets,
            block_offsets,
            precomputed,
            code_terms,
            codes,
            ids,
            vectors,
            simd: SimdLevel::detect(),
        })
    }

    /// The parts to store; [`IvfPqIndex::from_parts`] turns them back into the same index.
    pub fn to_parts(&self) -> IvfPqParts {
        IvfPqParts {
            meta: IvfPqMeta {
                version: LAYOUT_VERSION,
                dim: self.dim,
                metric: self.metric,
                nlist: self.nlist,
                pq_m: self.pq.m(),
                pq_bits: self.pq.bits(),
                n: self.n,
            },
            centroids: self.centroids.clone(),
            codebooks: self.pq.codebooks().clone(),
            list_offsets: self.list_offsets.clone(),
            codes: self.codes.clone(),
            ids: self.ids.clone(),
            vectors: self.vectors.clone(),
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.n
    }
    /// Whether the index holds no vectors (never true for a built index).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// Number of inverted lists.
    pub fn nlist(&self) -> usize {
        self.nlist
    }
    /// Row → external id.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
    /// Raw vector of a row (normalised for cosine).
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        self.vectors.get(row * self.dim..(row + 1) * self.dim)
    }
    /// The fast-scan kernel level in use.
    pub fn simd_level(&self) -> SimdLevel {
        self.simd
    }
    /// Forces a fast-scan kernel level (benchmarks, tests); refused if the CPU lacks it.
    pub fn set_simd_level(&mut self, level: SimdLevel) -> Result<(), IndexError> {
        if !SimdLevel::available().contains(&level) {
            return Err(invalid(format!(
                "SIMD level {level:?} is not supported by this CPU"
            )));
        }
        self.simd = level;
        Ok(())
    }

    /// Resident bytes: codes, ids, centroids, codebooks and derived tables. The raw vectors are
    /// excluded: they are meant to be memory-mapped and are read only for re-ranking.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len()
            + self.ids.len() * 8
            + (self.centroids.len() + self.centroid_norms.len()) * 4
            + self.coarse.memory_bytes()
            + self.list_offsets.len() * 8
            + self.block_offsets.len() * size_of::<usize>()
            + (self.precomputed.len() + self.code_terms.len()) * 4
            + self.pq.memory_bytes()
    }

    /// The `nprobe` lists closest to `q`, each with its coarse term: `||q - c||²` for L2,
    /// `-<q, c>` otherwise.
    fn probe(&self, q: &[f32], nprobe: usize) -> Vec<(usize, f32)> {
        let mut scores = vec![0.0f32; self.nlist];
        self.coarse.dots(q, &mut scores);
        if self.metric == Metric::L2 {
            let qn = distance::norm_sq(q);
            for (s, &cn) in scores.iter_mut().zip(&self.centroid_norms) {
                *s = qn + cn - 2.0 * *s;
            }
        } else {
            scores.iter_mut().for_each(|s| *s = -*s);
        }
        // Bounded selection: most lists fail the first comparison against the heap's worst.
        // Empty lists are never probed: under the Dot metric a centroid can win a query's
        // inner product while owning no point, and probing it would waste one of `nprobe`.
        let mut best = TopK::new(nprobe);
        for (l, &s) in scores.iter().enumerate() {
            if s <= best.threshold() && self.list_offsets[l + 1] > self.list_offsets[l] {
                best.push(l as u64, s);
            }
        }
        // Sorted, closest lists first: the top-k threshold tightens sooner.
        best.into_sorted_vec()
            .into_iter()
            .map(|nb| (nb.id as usize, nb.distance))
            .collect()
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
        self.search_where(query, k, params, |row: usize| {
            filter.is_none_or(|f| row < f.len() && f.contains(row))
        })
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
        self.search_where(query, k, params, |row: usize| {
            let id = self.ids[row];
            id < ids.len() as u64 && ids.contains(id as usize)
        })
    }

    fn search_where(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        allowed: impl Fn(usize) -> bool,
    ) -> Vec<Neighbor> {
        if query.len() != self.dim || k == 0 || self.n == 0 || query.iter().any(|v| !v.is_finite())
        {
            return Vec::new();
        }
        let q: Cow<[f32]> = if self.metric == Metric::Cosine {
            let mut v = query.to_vec();
            normalize(&mut v);
            Cow::Owned(v)
        } else {
            Cow::Borrowed(query)
        };
        let probes = self.probe(&q, params.nprobe.clamp(1, self.nlist));
        let rerank = params.rerank > 0;
        let mut pool = TopK::new(if rerank {
            k.saturating_mul(params.rerank)
        } else {
            k
        });
        // Without re-ranking the pool holds ids directly; with it, rows (mapped to ids after).
        let key = |row: usize| if rerank { row as u64 } else { self.ids[row] };
        if self.pq.bits() == 4 {
            self.scan4(&q, &probes, &mut pool, key, allowed);
        } else {
            self.scan8(&q, &probes, &mut pool, key, allowed);
        }
        if !rerank {
            return pool.into_sorted_vec();
        }
        // Raw vectors are read at random rows (and may be memory-mapped): ask for all of them up
        // front so their cache misses overlap instead of queueing one by one.
        let rows: Vec<usize> = pool
            .into_sorted_vec()
            .iter()
            .map(|c| c.id as usize)
            .collect();
        for &row in &rows {
            self.prefetch_vector(row);
        }
        let (ids, vectors) = (&*self.ids, &*self.vectors);
        let mut best = TopK::new(k);
        for &row in &rows {
            let v = &vectors[row * self.dim..(row + 1) * self.dim];
            best.push(ids[row], distance::distance(self.metric, &q, v));
        }
        best.into_sorted_vec()
    }

    /// Hints the CPU to start loading the first 2 KiB of a 4-bit list's codes.
    #[inline]
    fn prefetch_codes(&self, list: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let codes = &self.codes[self.block_offsets[list]..self.block_offsets[list + 1]];
            for line in codes.chunks(64).take(32) {
                // SAFETY: prefetching is a hint; the address is inside a live slice.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = list;
    }

    /// Hints the CPU to start loading a row's raw vector.
    #[inline]
    fn prefetch_vector(&self, row: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let v = &self.vectors[row * self.dim..(row + 1) * self.dim];
            for line in v.chunks(16) {
                // SAFETY: prefetching is a hint; the address is inside a live slice.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = row;
    }

    /// Offset added to a list's code distances: 0 for L2 (the table is built on `q - c`), the
    /// coarse `-<q, c>` (plus 1 for cosine) for inner products.
    fn list_bias(&self, coarse: f32) -> f32 {
        match self.metric {
            Metric::L2 => 0.0,
            Metric::Cosine => 1.0 + coarse,
            Metric::Dot => coarse,
        }
    }

    fn list_rows(&self, list: usize) -> (usize, usize) {
        (
            self.list_offsets[list] as usize,
            self.list_offsets[list + 1] as usize,
        )
    }

    fn residual_query(&self, q: &[f32], list: usize, y: &mut [f32]) {
        let c = &self.centroids[list * self.dim..(list + 1) * self.dim];
        for ((o, &a), &b) in y.iter_mut().zip(q).zip(c) {
            *o = a - b;
        }
    }

    fn scan8(
        &self,
        q: &[f32],
        probes: &[(usize, f32)],
        pool: &mut TopK,
        key: impl Fn(usize) -> u64,
        allowed: impl Fn(usize) -> bool,
    ) {
        let m = self.pq.m();
        let mut lut = vec![[0.0f32; 256]; m];
        let mut y = vec![0.0f32; self.dim];
        if self.metric != Metric::L2 {
            self.pq.neg_dot_table(q, lut.as_flattened_mut());
        }
        if !self.code_terms.is_empty() {
            // L2 with per-row terms: d = ||q - c||² + term(row) + Σ_j -2 <q_j, c_j,code>.
            self.pq.neg_dot_table(q, lut.as_flattened_mut());
            lut.as_flattened_mut().iter_mut().for_each(|v| *v *= 2.0);
            for &(list, coarse) in probes {
                let (start, end) = self.list_rows(list);
                let codes = &self.codes[start * m..end * m];
                let terms = &self.code_terms[start..end];
                pq::scan_codes8_terms(codes, m, &lut, coarse, terms, pool.threshold(), |i, d| {
                    if allowed(start + i) {
                        pool.push(key(start + i), d);
                    }
                    pool.threshold()
                });
            }
            return;
        }
        for &(list, coarse) in probes {
            if self.metric == Metric::L2 {
                self.residual_query(q, list, &mut y);
                self.pq.l2_table(&y, lut.as_flattened_mut());
            }
            let bias = self.list_bias(coarse);
            let (start, end) = self.list_rows(list);
            let codes = &self.codes[start * m..end * m];
            pq::scan_codes8(codes, m, &lut, bias, pool.threshold(), |i, d| {
                if allowed(start + i) {
                    pool.push(key(start + i), d);
                }
                pool.threshold()
            });
        }
    }

    fn scan4(
        &self,
        q: &[f32],
        probes: &[(usize, f32)],
        pool: &mut TopK,
        key: impl Fn(usize) -> u64,
        allowed: impl Fn(usize) -> bool,
    ) {
        let m = self.pq.m();
        let per_list = m * 16;
        let mut lut = vec![0.0f32; per_list];
        let mut qterm = vec![0.0f32; per_list];
        let mut qlut = vec![0u8; fastscan::padded_m(m) * 16];
        let mut shared = (1.0f32, 0.0f32);
        let l2 = self.metric == Metric::L2;
        if let (Some(&(first, _)), false) = (probes.first(), self.precomputed.is_empty()) {
            prefetch_lines(&self.precomputed[first * per_list..(first + 1) * per_list]);
        }
        let mut y = Vec::new();
        if l2 && self.precomputed.is_empty() {
            y = vec![0.0f32; self.dim];
        } else if l2 {
            // -2 <q_j, c_jk>, shared by every list; the list part is precomputed.
            self.pq.neg_dot_table(q, &mut qterm);
            qterm.iter_mut().for_each(|v| *v *= 2.0);
        } else {
            self.pq.neg_dot_table(q, &mut lut);
            shared = fastscan::quantize_lut_with(self.simd, &lut, m, &mut qlut);
        }
        for (p, &(list, coarse)) in probes.iter().enumerate() {
            // Start loading the next list's first blocks (and its precomputed table) while this
            // one is scanned: lists are short runs at random places, so the hardware prefetcher
            // only ramps up inside each.
            if let Some(&(next, _)) = probes.get(p + 1) {
                self.prefetch_codes(next);
                if !self.precomputed.is_empty() {
                    prefetch_lines(&self.precomputed[next * per_list..(next + 1) * per_list]);
                }
            }
            let (scale, qbias) = if l2 && self.precomputed.is_empty() {
                self.residual_query(q, list, &mut y);
                self.pq.l2_table(&y, &mut lut);
                fastscan::quantize_lut_with(self.simd, &lut, m, &mut qlut)
            } else if l2 {
                let pre = &self.precomputed[list * per_list..(list + 1) * per_list];
                for ((o, &a), &b) in lut.iter_mut().zip(pre).zip(&qterm) {
                    *o = a + b;
                }
                fastscan::quantize_lut_with(self.simd, &lut, m, &mut qlut)
            } else {
                shared
            };
            // With precomputed terms the coarse ||q - c||² is added here; a table built on
            // q - c holds the whole distance.
            let bias = match (l2, self.precomputed.is_empty()) {
                (true, true) => 0.0,
                (true, false) => coarse,
                (false, _) => self.list_bias(coarse),
            } + qbias;
            let (start, end) = self.list_rows(list);
            let codes = &self.codes[self.block_offsets[list]..self.block_offsets[list + 1]];
            let threshold = fastscan::u16_threshold(pool.threshold(), scale, bias);
            fastscan::scan_list(
                self.simd,
                codes,
                end - start,
                m,
                &qlut,
                threshold,
                |i, sum| {
                    let row = start + i;
                    if allowed(row) {
                        pool.push(key(row), bias + scale * sum as f32);
                    }
                    fastscan::u16_threshold(pool.threshold(), scale, bias)
                },
            );
        }
    }
}

/// Hints the CPU to start loading every cache line of `data`.
#[inline]
fn prefetch_lines<T>(data: &[T]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const DIM: usize = 32;

    /// Clustered data: `clusters` Gaussian blobs of different spreads around random centres.
    fn clustered(n: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..clusters * DIM)
            .map(|_| rng.random_range(-4.0..4.0f32))
            .collect();
        let mut out = Vec::with_capacity(n * DIM);
        for _ in 0..n {
            let c = rng.random_range(0..clusters);
            let spread = 0.5 + (c % 3) as f32 * 0.3;
            for d in 0..DIM {
                // Sum of uniforms: cheap, roughly Gaussian.
                let g: f32 = (0..4).map(|_| rng.random_range(-1.0..1.0f32)).sum::<f32>() * spread;
                out.push(centres[c * DIM + d] + g);
            }
        }
        out
    }

    fn exact(
        metric: Metric,
        data: &[f32],
        ids: &[u64],
        q: &[f32],
        k: usize,
        allowed: impl Fn(usize) -> bool,
    ) -> Vec<Neighbor> {
        let mut q = q.to_vec();
        if metric == Metric::Cosine {
            normalize(&mut q);
        }
        let mut top = TopK::new(k);
        for (r, x) in data.chunks_exact(DIM).enumerate() {
            if !allowed(r) {
                continue;
            }
            let mut x = x.to_vec();
            if metric == Metric::Cosine {
                normalize(&mut x);
            }
            top.push(ids[r], distance::distance(metric, &q, &x));
        }
        top.into_sorted_vec()
    }

    fn config(metric: Metric, bits: u8) -> IvfPqConfig {
        let mut c = IvfPqConfig::new(metric, 64, if bits == 4 { 16 } else { 8 }, bits);
        c.pq_train_points = 8192;
        c
    }

    struct Fixture {
        data: Vec<f32>,
        ids: Vec<u64>,
        queries: Vec<f32>,
    }

    fn fixture() -> Fixture {
        let n = 20_000;
        let data = clustered(n, 50, 11);
        // Ids unrelated to row order, to catch row/id mix-ups.
        let ids = (0..n as u64).map(|i| i * 7 + 1_000_003).collect();
        let queries = clustered(50, 50, 12);
        Fixture { data, ids, queries }
    }

    fn recall(index: &IvfPqIndex, f: &Fixture, metric: Metric, params: SearchParams) -> f64 {
        let k = 10;
        let mut hits = 0;
        for q in f.queries.chunks_exact(DIM) {
            let truth: Vec<u64> = exact(metric, &f.data, &f.ids, q, k, |_| true)
                .iter()
                .map(|n| n.id)
                .collect();
            let got = index.search(q, k, &params, None);
            assert_eq!(got.len(), k);
            assert!(
                got.windows(2).all(|w| w[0].distance <= w[1].distance),
                "results sorted"
            );
            hits += got.iter().filter(|n| truth.contains(&n.id)).count();
        }
        hits as f64 / (k * f.queries.len() / DIM) as f64
    }

    #[test]
    fn recall_at_10_for_every_metric_and_code_size() {
        let f = fixture();
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            for bits in [4u8, 8] {
                let index = IvfPqIndex::build(DIM, &f.data, &f.ids, &config(metric, bits)).unwrap();
                assert_eq!(index.len(), 20_000);
                let r = recall(
                    &index,
                    &f,
                    metric,
                    SearchParams {
                        nprobe: 16,
                        rerank: 10,
                    },
                );
                assert!(
                    r >= 0.9,
                    "{metric:?} {bits}-bit: recall@10 {r} with nprobe 16, rerank 10"
                );
                let approx = recall(
                    &index,
                    &f,
                    metric,
                    SearchParams {
                        nprobe: 16,
                        rerank: 0,
                    },
                );
                assert!(
                    approx >= 0.3,
                    "{metric:?} {bits}-bit: ADC-only recall@10 {approx}"
                );
            }
        }
    }

    #[test]
    fn precomputed_l2_tables_match_per_list_tables() {
        let f = fixture();
        // Few lists: the precomputed tables are small next to the codes and get built.
        let mut c = config(Metric::L2, 4);
        c.nlist = 16;
        let index = IvfPqIndex::build(DIM, &f.data, &f.ids, &c).unwrap();
        assert!(!index.precomputed.is_empty());
        // The same index without them scans with tables built on q - c: same ADC up to rounding.
        let mut plain = index.clone();
        plain.precomputed = Vec::new();
        let r = recall(
            &index,
            &f,
            Metric::L2,
            SearchParams {
                nprobe: 16,
                rerank: 10,
            },
        );
        let r_plain = recall(
            &plain,
            &f,
            Metric::L2,
            SearchParams {
                nprobe: 16,
                rerank: 10,
            },
        );
        assert!(
            r >= 0.85 && (r - r_plain).abs() < 0.03,
            "recall@10 {r} vs {r_plain} without tables"
        );
        let p = SearchParams {
            nprobe: 4,
            rerank: 0,
        };
        let mut same = 0;
        for q in f.queries.chunks_exact(DIM) {
            let a = index.search(q, 10, &p, None);
            let b = plain.search(q, 10, &p, None);
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x.distance - y.distance).abs() <= 0.02 * x.distance.abs().max(1.0),
                    "{x:?} {y:?}"
                );
            }
            same += a.iter().filter(|x| b.iter().any(|y| y.id == x.id)).count();
        }
        assert!(same >= 450, "{same} of 500 ADC results agree");
    }

    #[test]
    fn per_row_l2_terms_match_per_list_tables() {
        let f = fixture();
        let index = IvfPqIndex::build(DIM, &f.data, &f.ids, &config(Metric::L2, 8)).unwrap();
        assert_eq!(index.code_terms.len(), index.len());
        let mut plain = index.clone();
        plain.code_terms = Vec::new();
        let p = SearchParams {
            nprobe: 8,
            rerank: 0,
        };
        let mut same = 0;
        for q in f.queries.chunks_exact(DIM) {
            let a = index.search(q, 10, &p, None);
            let b = plain.search(q, 10, &p, None);
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x.distance - y.distance).abs() <= 1e-3 * x.distance.abs().max(1.0),
                    "{x:?} {y:?}"
                );
            }
            same += a.iter().filter(|x| b.iter().any(|y| y.id == x.id)).count();
        }
        assert!(same >= 490, "{same} of 500 ADC results agree");
        let r = recall(
            &index,
            &f,
            Metric::L2,
            SearchParams {
                nprobe: 16,
                rerank: 10,
            },
        );
        assert!(r >= 0.9, "recall@10 {r}");
    }

    #[test]
    fn probing_everything_with_full_rerank_is_exact() {
        let f = fixture();
        for (metric, bits) in [(Metric::L2, 4u8), (Metric::Cosine, 8), (Metric::Dot, 4)] {
            let index = IvfPqIndex::build(DIM, &f.data, &f.ids, &config(metric, bits)).unwrap();
            let params = SearchParams {
                nprobe: 64,
                rerank: 20_000,
            };
            for q in f.queries.chunks_exact(DIM).take(10) {
                assert_eq!(
                    index.search(q, 10, &params, None),
                    exact(metric, &f.data, &f.ids, q, 10, |_| true)
                );
            }
        }
    }

    #[test]
    fn filters_admit_only_allowed_rows_and_still_fill_k() {
        let f = fixture();
        for bits in [4u8, 8] {
            let index = IvfPqIndex::build(DIM, &f.data, &f.ids, &config(Metric::L2, bits)).unwrap();
            let n = index.len();
            let every7 = RowSet::from_rows(n, (0..n).step_by(7));
            let rare = RowSet::from_rows(n, (0..n).step_by(2_000));
            for q in f.queries.chunks_exact(DIM).take(10) {
                for rerank in [0, 10] {
                    let got =
                        index.search(q, 10, &SearchParams { nprobe: 16, rerank }, Some(&every7));
                    assert_eq!(got.len(), 10);
                    for nb in &got {
                        let row = index.ids().iter().position(|&id| id == nb.id).unwrap();
                        assert!(every7.contains(row));
                    }
                    // Ten allowed rows in all: probing every list finds all of them.
                    let got =
                        index.search(q, 10, &SearchParams { nprobe: 64, rerank }, Some(&rare));
                    let mut rows: Vec<usize> = got
                        .iter()
                        .map(|nb| index.ids().iter().position(|&id| id == nb.id).unwrap())
                        .collect();
                    rows.sort_unstable();
                    assert_eq!(rows, (0..n).step_by(2_000).collect::<Vec<_>>());
                }
            }
            let none = RowSet::new(n);
            assert!(
                index
                    .search(
                        &f.queries[..DIM],
                        10,
                        &SearchParams {
                            nprobe: 64,
                            rerank: 4
                        },
                        Some(&none)
                    )
                    .is_empty()
            );
        }
    }

    #[test]
    fn an_id_filter_admits_what_the_same_rows_admit() {
        // As a shard segment builds it: ids are the segment's rows, tombstones a set of them.
        let f = fixture();
        let n = f.data.len() / DIM;
        let ids: Vec<u64> = (0..n as u64).collect();
        for bits in [4u8, 8] {
            let index = IvfPqIndex::build(DIM, &f.data, &ids, &config(Metric::L2, bits)).unwrap();
            let live = RowSet::from_rows(n, (0..n).filter(|i| i % 5 != 3));
            let rows = RowSet::from_rows(
                n,
                (0..n).filter(|&r| live.contains(index.ids()[r] as usize)),
            );
            for q in f.queries.chunks_exact(DIM).take(10) {
                for rerank in [0, 4] {
                    let p = SearchParams { nprobe: 8, rerank };
                    let by_id = index.search_ids_in(q, 10, &p, &live);
                    assert_eq!(by_id.len(), 10);
                    assert!(by_id.iter().all(|nb| live.contains(nb.id as usize)));
                    assert_eq!(by_id, index.search(q, 10, &p, Some(&rows)));
                }
            }
            // A set shorter than the ids admits none of those beyond it.
            let short = RowSet::from_rows(10, 0..10);
            let p = SearchParams {
                nprobe: 64,
                rerank: 0,
            };
            let got = index.search_ids_in(&f.queries[..DIM], 20, &p, &short);
            assert!(got.iter().all(|nb| nb.id < 10), "{got:?}");
        }
    }

    #[test]
    fn parts_round_trip_and_corruption_is_refused() {
        let f = fixture();
        for bits in [4u8, 8] {
            let index =
                IvfPqIndex::build(DIM, &f.data, &f.ids, &config(Metric::Cosine, bits)).unwrap();
            let parts = index.to_parts();
            let meta_json = serde_json::to_string(&parts.meta).unwrap();
            let mut restored_parts = parts.clone();
            restored_parts.meta = serde_json::from_str(&meta_json).unwrap();
            let restored = IvfPqIndex::from_parts(restored_parts).unwrap();
            assert_eq!(restored.memory_bytes(), index.memory_bytes());
            for q in f.queries.chunks_exact(DIM).take(10) {
                for rerank in [0, 8] {
                    let p = SearchParams { nprobe: 8, rerank };
                    assert_eq!(
                        index.search(q, 10, &p, None),
                        restored.search(q, 10, &p, None)
                    );
                }
            }

            let mut bad = parts.clone();
            bad.codes = Slab::from(parts.codes[..parts.codes.len() - 1].to_vec());
            assert!(matches!(
                IvfPqIndex::from_parts(bad),
                Err(IndexError::Corrupted(_))
            ));
            let mut bad = parts.clone();
            let mut offsets = parts.list_offsets.to_vec();
            offsets.swap(3, 4);
            offsets[3] += 1_000_000;
            bad.list_offsets = Slab::from(offsets);
            assert!(matches!(
                IvfPqIndex::from_parts(bad),
                Err(IndexError::Corrupted(_))
            ));
            let mut bad = parts.clone();
            bad.meta.version += 1;
            assert!(IvfPqIndex::from_parts(bad).is_err());
            let mut bad = parts.clone();
            bad.meta.pq_m = 5;
            assert!(IvfPqIndex::from_parts(bad).is_err());
            let mut bad = parts.clone();
            bad.ids = Slab::from(vec![0u64; 3]);
            assert!(IvfPqIndex::from_parts(bad).is_err());
            let mut bad = parts.clone();
            bad.meta.n += 1;
            assert!(IvfPqIndex::from_parts(bad).is_err());
            let mut bad = parts;
            bad.centroids = Slab::from(vec![f32::NAN; 64 * DIM]);
            assert!(IvfPqIndex::from_parts(bad).is_err());
        }
    }

    #[test]
    fn recommended_shapes_are_valid() {
        let c = IvfPqConfig::for_size(Metric::L2, 128, 1_000_000);
        assert_eq!((c.nlist, c.pq_m, c.pq_bits), (1000, 64, 4));
        assert_eq!(IvfPqConfig::for_size(Metric::Cosine, 384, 57_922).pq_m, 192);
        assert_eq!(IvfPqConfig::for_size(Metric::L2, 1536, 100).pq_m, 256);
        assert_eq!(IvfPqConfig::for_size(Metric::L2, 7, 100).pq_m, 1);
        assert_eq!(IvfPqConfig::for_size(Metric::L2, 100, 100).pq_m, 50);
        let data = clustered(3_000, 10, 4);
        let ids: Vec<u64> = (0..3_000).collect();
        let c = IvfPqConfig::for_size(Metric::L2, DIM, 3_000);
        assert!(IvfPqIndex::build(DIM, &data, &ids, &c).is_ok());
    }

    #[test]
    fn bad_parameters_are_errors() {
        let data = clustered(2_000, 10, 3);
        let ids: Vec<u64> = (0..2_000).collect();
        let build = |c: &IvfPqConfig| IvfPqIndex::build(DIM, &data, &ids, c);
        let ok = IvfPqConfig::new(Metric::L2, 16, 8, 4);
        assert!(matches!(
            build(&IvfPqConfig {
                pq_m: 5,
                ..ok.clone()
            }),
            Err(IndexError::InvalidParameter(_))
        ));
        assert!(matches!(
            build(&IvfPqConfig {
                pq_bits: 5,
                ..ok.clone()
            }),
            Err(IndexError::InvalidParameter(_))
        ));
        assert!(matches!(
            build(&IvfPqConfig {
                nlist: 0,
                ..ok.clone()
            }),
            Err(IndexError::InvalidParameter(_))
        ));
        assert!(matches!(
            build(&IvfPqConfig {
                nlist: 5_000,
                ..ok.clone()
            }),
            Err(IndexError::NotEnoughData { .. })
        ));
        assert!(matches!(
            IvfPqIndex::build(DIM, &data, &ids[1..], &ok),
            Err(IndexError::LengthMismatch { .. })
        ));
        assert!(matches!(
            IvfPqIndex::build(DIM, &data[1..], &ids, &ok),
            Err(IndexError::DimensionMismatch { .. })
        ));
        let mut nan = data.clone();
        nan[77] = f32::NAN;
        assert_eq!(
            IvfPqIndex::build(DIM, &nan, &ids, &ok).err(),
            Some(IndexError::NonFinite)
        );
        let index = build(&ok).unwrap();
        let p = SearchParams {
            nprobe: 4,
            rerank: 2,
        };
        assert!(index.search(&[0.0; DIM - 1], 10, &p, None).is_empty());
        assert!(index.search(&data[..DIM], 0, &p, None).is_empty());
        // Absurd knobs are clamped, not fatal.
        assert_eq!(
            index
                .search(
                    &data[..DIM],
                    5,
                    &SearchParams {
                        nprobe: 1 << 40,
                        rerank: usize::MAX
                    },
                    None
                )
                .len(),
            5
        );
    }

    #[test]
    fn concurrent_searches_share_the_index() {
        let f = fixture();
        let index = IvfPqIndex::build(DIM, &f.data, &f.ids, &config(Metric::Dot, 4)).unwrap();
        let p = SearchParams {
            nprobe: 8,
            rerank: 4,
        };
        let serial: Vec<_> = f
            .queries
            .chunks_exact(DIM)
            .map(|q| index.search(q, 10, &p, None))
            .collect();
        let parallel: Vec<_> = f
            .queries
            .par_chunks_exact(DIM)
            .map(|q| index.search(q, 10, &p, None))
            .collect();
        assert_eq!(serial, parallel);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (q, want) in f.queries.chunks_exact(DIM).zip(&serial) {
                        assert_eq!(&index.search(q, 10, &p, None), want);
                    }
                });
            }
        });
    }

    #[test]
    fn every_simd_level_gives_the_same_answers() {
        let f = fixture();
        let mut index = IvfPqIndex::build(DIM, &f.data, &f.ids, &config(Metric::L2, 4)).unwrap();
        let p = SearchParams {
            nprobe: 8,
            rerank: 0,
        };
        let reference: Vec<_> = f
            .queries
            .chunks_exact(DIM)
            .map(|q| index.search(q, 10, &p, None))
            .collect();
        for level in SimdLevel::available() {
            index.set_simd_level(level).unwrap();
            for (q, want) in f.queries.chunks_exact(DIM).zip(&reference) {
                assert_eq!(&index.search(q, 10, &p, None), want, "{level:?}");
            }
        }
    }
}
