//! A shard's shape ([`ShardConfig`]), fixed for its life, and the IVF-PQ build configuration it
//! derives for a sealed segment of a given size. (Its validation and the effective seal threshold
//! sit beside the sealing rules in [`super::seal`].)

use super::compaction::CompactionConfig;
use crate::index::Metric;
use crate::index::ivfpq::IvfPqConfig;

/// The SOAR λ of a sealed segment with 4-bit codes ([`IvfPqConfig::soar_lambda`]); ScaNN's
/// default, and the better of 1 and 1.5 on MiniLM (by under 0.002 recall).
pub const SEGMENT_SOAR_LAMBDA: f32 = 1.5;

/// How a shard is shaped; fixed for the shard's life (it comes from the collection's config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardConfig {
    /// Vector dimension.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Rows after which the mutable segment is sealed into an IVF-PQ segment (0 = never seal;
    /// otherwise at least [`MIN_SEAL_THRESHOLD`](super::MIN_SEAL_THRESHOLD), see [`ShardConfig::validate`]).
    pub seal_threshold: usize,
    /// Inverted lists of a sealed segment of `seal_threshold` rows; other sizes scale it by
    /// `sqrt(rows / seal_threshold)` (see [`ShardConfig::ivf_config`]).
    pub nlist: usize,
    /// PQ sub-spaces; divides `dim`.
    pub pq_m: usize,
    /// PQ bits per code: 4 or 8.
    pub pq_bits: u8,
    /// Seed for index training, so every replica and every rebuild gets the same index.
    pub seed: u64,
    /// Background segment maintenance: idle sealing, tier merges, purging deleted rows (defaults
    /// when absent, so configurations written before compaction existed still load).
    #[serde(default)]
    pub compaction: CompactionConfig,
}

impl ShardConfig {
    /// The IVF-PQ build configuration for a sealed segment of `n` rows. `nlist` follows the
    /// segment's size: `nlist × sqrt(n / seal_threshold)`, the usual `nlist ∝ sqrt(n)` that keeps
    /// coarse search and list scans in proportion as merges grow segments (a segment of
    /// `seal_threshold` rows gets `nlist`, one four times larger twice as many lists). It is
    /// capped so that each list gets training data (about 39 points per list, as FAISS
    /// recommends).
    pub fn ivf_config(&self, n: usize) -> IvfPqConfig {
        let base = self.effective_seal_threshold();
        let scaled = if base == 0 {
            self.nlist
        } else {
            (self.nlist as f64 * (n as f64 / base as f64).sqrt()).round() as usize
        };
        let mut c = IvfPqConfig::new(
            self.metric,
            scaled.clamp(1, 1 << 20).min((n / 39).max(1)),
            self.pq_m,
            self.pq_bits,
        );
        c.seed = self.seed;
        // 4-bit segments store every vector in a second list as well (SOAR): twice the codes,
        // and a recall target is met with a fraction of the lists (see `IvfPqConfig::soar_lambda`).
        if self.pq_bits == 4 {
            c.soar_lambda = Some(SEGMENT_SOAR_LAMBDA);
        }
        c
    }
}
