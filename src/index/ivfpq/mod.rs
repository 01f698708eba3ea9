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
//! * **Spilled copies (SOAR)**: with [`IvfPqConfig::soar_lambda`] every vector is also encoded a
//!   second time, in the list that best covers what its own list's centroid gets wrong (Sun et
//!   al., "SOAR: improved indexing for approximate nearest neighbor search", NeurIPS 2023; ScaNN's
//!   spilling). A true neighbour is then missed only when neither of its two lists is probed, so
//!   a recall target is reached with far fewer lists. Spilled entries sit after a list's own rows
//!   in its fast-scan blocks and name the row they copy; a row can reach the candidates twice, so
//!   the search drops the second before answering. 4-bit codes only.
//!
//! Rows are positions in list order: row `r` has id `ids()[r]`, and a [`RowSet`](super::RowSet)
//! filter is over rows ([`IvfPqIndex::search_ids_in`] takes one over ids instead). Filtered-out
//! rows never become candidates, so a selective filter still yields `k` hits when the probed
//! lists hold them.
//!
//! Every part lives in a [`Slab`] so that [`IvfPqIndex::to_parts`] / [`IvfPqIndex::from_parts`]
//! move an index to and from storage without copies; `from_parts` validates all sizes, so a search
//! on a restored index never indexes out of bounds.
//!
//! # Layout of this module
//! One file per job, as FAISS splits `IndexIVF` from its scanners:
//! * `mod.rs` (here): configuration, the stored parts and the index type with its accessors.
//! * `build.rs`: training and encoding ([`IvfPqIndex::build`]).
//! * `parts.rs`: [`IvfPqIndex::from_parts`] / [`IvfPqIndex::to_parts`], the checks on stored parts
//!   and the tables derived from them at load.
//! * `search.rs`: the search loop — probe, scan each probed list, re-rank — written once for every
//!   code type.
//! * `scanner.rs`: the seam between the two, after FAISS' `InvertedListScanner`: a
//!   `ListScanner` is made for one query (it builds the query's tables),
//!   is told each list in turn (`set_list`, which adds what the list needs: its coarse term, a
//!   table on `q - c`) and scans that list's codes (`scan_codes`). `scanner::with_scanner` picks
//!   the implementation once per query from the code type, the metric's table mode and the SIMD
//!   level, so no per-list loop tests any of them.
//! * `subset.rs`: a chosen part of the rows' 4-bit codes regrouped by list, which a filtered
//!   scan reads instead of the whole lists when a payload index names the part.
//! * `members.rs`: a chosen part's rows alone, ascending, which the exact scan of a selective
//!   filter's matches reads when a payload index names the part.
//! * `subset_codes.rs`: a chosen part of the rows' 4-bit codes as one run, every row once,
//!   scored whole with one table shared by all lists (each row offset by its list's coarse
//!   term): for parts too sparse to fill a block in each list.
//! * `scan8.rs` (8-bit codes, float tables) and `scan4.rs` (4-bit fast-scan codes, u8 tables, one
//!   kernel type per SIMD level): the scanners. A new code type is one more scanner there and one
//!   more arm in `with_scanner`; the search loop does not change.

mod build;
mod members;
pub use members::SubsetMembers;
mod parts;
mod scan4;
mod scan8;
mod scanner;
mod search;
pub use search::GridSearch;
mod spill;
mod subset;
use subset::move_code;
pub use subset::{SubsetLists, SubsetRows};
mod subset_codes;
pub use subset_codes::SubsetCodes;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use super::coarse::CoarseTable;
use super::coarse8::Coarse8;
use super::error::IndexError;
use super::fastscan::{self, SimdLevel};
use super::pq::ProductQuantizer;
use super::sq8::Sq8;
use super::{Metric, Slab};

/// Version of the part layout described by [`IvfPqMeta`]; bump when any part's meaning changes.
/// 2 added spilled entries ([`IvfPqParts::spill_offsets`], [`IvfPqParts::spill_rows`]); a
/// version-1 index has none and still loads.
pub const LAYOUT_VERSION: u32 = 2;

/// The oldest part layout [`IvfPqIndex::from_parts`] still reads.
pub const OLDEST_LAYOUT_VERSION: u32 = 1;

/// Float centroids of at least this many bytes also get an 8-bit copy ([`Coarse8`]) that
/// shortlists the lists a probe scores exactly. Measured at the edge: on 100k × 128 at nlist 1024
/// (512 KiB, which stays in L2) whole queries ran at the same speed either way — the products
/// are 2.5× faster (criterion `coarse8_dots`), the shortlist's passes and rescoring eat the
/// rest — while at 2 MiB (nlist 4096) queries ran 1.09–1.39× faster. Smaller tables keep the
/// single exact pass.
pub const COARSE8_FROM_BYTES: usize = 512 * 1024;

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
    /// `Some(λ)`: store every vector a second time, in the list chosen by SOAR (see the module
    /// doc): the list `c` minimising `‖x - c‖² + λ <x - c, r̂>²`, with `r̂` the direction of the
    /// vector's residual in its own list, so that the copy's error is as close to orthogonal to
    /// the first as the centroids allow. Doubles the codes; 4-bit codes only. `None`: one list
    /// per vector.
    ///
    /// Measured on 58k × 384 MiniLM at nlist 1024 (IVF with exact lists, recall@10 of the
    /// probed lists): 0.99 needs 256–320 probes (16,000–20,000 codes scanned) with one list,
    /// 64 (9,000 codes) with spilling at λ 1.5; λ 1 and 1.5 differ by under 0.002.
    #[serde(default)]
    pub soar_lambda: Option<f32>,
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
            soar_lambda: None,
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
    /// Number of spilled entries: 0, or up to `n` when built with [`IvfPqConfig::soar_lambda`].
    /// Absent, and 0, in layout version 1.
    #[serde(default)]
    pub spilled: usize,
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
    /// Empty without spilled entries; otherwise `nlist + 1` offsets into `spill_rows`: list `l`
    /// also holds the entries `spill_offsets[l]..spill_offsets[l + 1]`, coded after its rows.
    pub spill_offsets: Slab<u64>,
    /// The row each spilled entry copies (`spilled` of them, each row at most once).
    pub spill_rows: Slab<u32>,
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
    /// Derived 8-bit copy of the centroids that shortlists the lists a probe scores exactly,
    /// when the float centroids are too many bytes to stay in cache (see [`COARSE8_FROM_BYTES`]).
    coarse8: Option<Coarse8>,
    /// Squared centroid norms (derived), for `||q - c||² = ||q||² + ||c||² - 2<q, c>`.
    centroid_norms: Vec<f32>,
    /// Whether each list holds any entry, own or spilled (derived): a probe asks it of every
    /// list that scores well enough, and read through the offsets it was three stored slices
    /// deep (4% of a 1% filter's query on 1M × 128 in perf).
    list_filled: Vec<bool>,
    list_offsets: Slab<u64>,
    /// Spilled entries per list (empty, or `nlist + 1` offsets into `spill_rows`).
    spill_offsets: Slab<u64>,
    /// The row each spilled entry copies.
    spill_rows: Slab<u32>,
    /// The id of each spilled entry's row (derived, 8 bytes an entry), in `spill_rows`' order:
    /// a filtered scan reads a spilled candidate's id beside its code, where reading it through
    /// its row was a cache miss each (the row is another list's).
    spill_ids: Vec<u64>,
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
    /// 8-bit codes of `vectors`, in the same row order, when the owner asked for them
    /// ([`IvfPqIndex::with_sq8`]): exact scans over chosen rows read these first
    /// ([`IvfPqIndex::exact_among`]). Not part of [`IvfPqParts`]; stored beside them.
    sq8: Option<Sq8>,
    /// Per row, its own list and the list it is spilled to (`u32::MAX` when none), derived on
    /// the first search that asks which lists chosen rows are in
    /// ([`IvfPqIndex::exact_among_probed`]): 8 bytes a row, against `4 * dim` for its vector.
    lists_of_rows: OnceLock<Vec<[u32; 2]>>,
    simd: SimdLevel,
}

fn invalid(msg: impl Into<String>) -> IndexError {
    IndexError::InvalidParameter(msg.into())
}

fn corrupted(msg: impl Into<String>) -> IndexError {
    IndexError::Corrupted(msg.into())
}

impl IvfPqIndex {
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
    /// Whether vectors are also stored in a second list ([`IvfPqConfig::soar_lambda`]).
    pub fn has_spills(&self) -> bool {
        !self.spill_rows.is_empty()
    }
    /// Coded entries over all lists: the rows plus their spilled copies. A probe of `nprobe`
    /// lists scans about `entries() * nprobe / nlist` codes.
    pub fn entries(&self) -> usize {
        self.n + self.spill_rows.len()
    }
    /// Raw vector of a row (normalised for cosine).
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        self.vectors.get(row * self.dim..(row + 1) * self.dim)
    }
    /// Every row's raw vector, row after row (`len() * dim()` floats, rows in list order).
    pub fn vectors(&self) -> &[f32] {
        &self.vectors[..self.n * self.dim]
    }
    /// Adds 8-bit codes of the raw vectors ([`Sq8`], a quarter of their bytes), which
    /// [`IvfPqIndex::exact_among`] scores first.
    pub fn with_sq8(mut self) -> Result<Self, IndexError> {
        self.sq8 = Some(Sq8::encode(self.metric, self.dim, &self.vectors)?);
        Ok(self)
    }
    /// Attaches 8-bit codes read back from storage; refused unless they describe these rows.
    pub fn attach_sq8(&mut self, sq8: Sq8) -> Result<(), IndexError> {
        if sq8.len() != self.n || sq8.dim() != self.dim {
            return Err(corrupted(format!(
                "8-bit codes of {} rows of {} for an index of {} rows of {}",
                sq8.len(),
                sq8.dim(),
                self.n,
                self.dim
            )));
        }
        self.sq8 = Some(sq8);
        Ok(())
    }
    /// The 8-bit codes, if the index has them.
    pub fn sq8(&self) -> Option<&Sq8> {
        self.sq8.as_ref()
    }
    /// Whether each probed list makes and quantises a table of its own: L2 distances are over
    /// the query's residual to the list's centroid; inner products share one table.
    pub fn list_tables(&self) -> bool {
        self.metric == Metric::L2
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

    /// Bytes of the codes (the part of the index a scan reads).
    pub fn code_bytes(&self) -> usize {
        self.codes.len()
    }

    /// Bytes of one [`fastscan`] block of 32 entries' codes (4-bit codes; 0 for 8-bit ones).
    pub fn block_bytes(&self) -> usize {
        if self.pq.bits() == 4 {
            fastscan::block_bytes(self.pq.m())
        } else {
            0
        }
    }

    /// Resident bytes: codes, ids, centroids, codebooks and derived tables. The raw vectors and
    /// their 8-bit codes are excluded: they are meant to be memory-mapped and are read only for
    /// re-ranking and for exact scans of a filter's matches.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len()
            + self.ids.len() * 8
            + (self.centroids.len() + self.centroid_norms.len()) * 4
            + self.coarse.memory_bytes()
            + self.coarse8.as_ref().map_or(0, Coarse8::memory_bytes)
            + self.list_filled.len()
            + (self.list_offsets.len() + self.spill_offsets.len()) * 8
            + self.spill_rows.len() * 4
            + self.spill_ids.len() * 8
            + self.block_offsets.len() * size_of::<usize>()
            + (self.precomputed.len() + self.code_terms.len()) * 4
            + self.pq.memory_bytes()
    }
}
