//! A collection's resolved settings ([`CollectionConfig`]): every value chosen and checked, as
//! the cluster metadata stores it and every node's shards and router read it.

use super::Metric;
use crate::shard::ShardConfig;
use serde::{Deserialize, Serialize};

/// How points are assigned to a collection's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Placement {
    /// The consistent-hash ring over point ids: a point's shard follows from its id alone.
    #[default]
    Hash,
    /// The nearest coarse centroid of the point's vector (trained on the first upsert): a
    /// search probes only the shards nearest the query.
    Centroid,
}

impl Placement {
    /// The name the API uses (`hash`, `centroid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Hash => "hash",
            Placement::Centroid => "centroid",
        }
    }

    /// The placement called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Placement> {
        match name {
            "hash" => Some(Placement::Hash),
            "centroid" => Some(Placement::Centroid),
            _ => None,
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The vector space: one unnamed dense vector per point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSpace {
    /// Dimension (1..=[`MAX_DIM`](super::limits::MAX_DIM)).
    pub dim: u64,
    /// Distance.
    pub metric: Metric,
}

/// IVF-PQ settings with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvfPqSettings {
    /// Inverted lists per sealed segment.
    pub nlist: usize,
    /// PQ sub-spaces (divides the dimension).
    pub pq_m: usize,
    /// Bits per code: 4 or 8.
    pub pq_bits: u8,
    /// Rows of the mutable segment before it is sealed and indexed.
    pub seal_threshold: usize,
}

/// `nprobe` in a sealed segment that has no calibration (one written before calibration
/// existed) when nothing fixes it: the pre-calibration default.
pub const UNCALIBRATED_NPROBE: usize = 16;
/// `rerank` in a sealed segment without a calibration when nothing fixes it.
pub const UNCALIBRATED_RERANK: usize = 4;

/// Default search settings with defaults filled in.
///
/// `nprobe` and `rerank` are `None` unless the collection fixed them: then every sealed segment
/// picks its own from its calibration, the cheapest that reaches `recall_target`
/// ([`crate::shard::Tuning`]). A fixed value always wins over the calibration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Lists probed per sealed segment (1..=nlist); `None`: each segment's calibrated choice.
    pub nprobe: Option<usize>,
    /// Re-rank factor (0 = PQ distances only); `None`: each segment's calibrated choice.
    pub rerank: Option<usize>,
    /// Shards probed under centroid placement.
    pub shard_probe: usize,
    /// Recall@10 the calibrated choices aim for, in `(0, 1]`.
    pub recall_target: f64,
}

impl SearchSettings {
    /// `nprobe` in a segment without calibration: the fixed value, else
    /// [`UNCALIBRATED_NPROBE`] (at most `nlist`).
    pub fn fallback_nprobe(&self, nlist: usize) -> usize {
        self.nprobe.unwrap_or(UNCALIBRATED_NPROBE.min(nlist.max(1)))
    }

    /// `rerank` in a segment without calibration: the fixed value, else [`UNCALIBRATED_RERANK`].
    pub fn fallback_rerank(&self) -> usize {
        self.rerank.unwrap_or(UNCALIBRATED_RERANK)
    }
}

/// A collection's resolved configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// The vector space.
    pub vectors: VectorSpace,
    /// Shards (1..=[`MAX_SHARDS`](super::limits::MAX_SHARDS)).
    pub shard_number: u32,
    /// Replicas per shard.
    pub replication_factor: u32,
    /// How points are assigned to shards.
    pub placement: Placement,
    /// IVF-PQ settings of every shard.
    pub ivf_pq: IvfPqSettings,
    /// Default search settings.
    pub search: SearchSettings,
    /// The Raft group of the collection's first shard (shard `i` runs as `group_id + i`).
    pub group_id: u64,
}

impl CollectionConfig {
    /// The dimension as a length.
    pub fn dim(&self) -> usize {
        self.vectors.dim as usize
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.vectors.metric
    }

    /// Whether points are placed by centroid: centroid placement over several shards (one
    /// shard holds everything whatever the placement).
    pub fn is_centroid(&self, shards: usize) -> bool {
        self.placement == Placement::Centroid && shards > 1
    }

    /// The shape of the shard that runs as Raft group `group` (its seed differs per group, so
    /// shards train independent quantisers).
    pub fn shard_config(&self, group: u64) -> ShardConfig {
        ShardConfig {
            dim: self.dim(),
            metric: self.vectors.metric,
            seal_threshold: self.ivf_pq.seal_threshold,
            nlist: self.ivf_pq.nlist,
            pq_m: self.ivf_pq.pq_m,
            pq_bits: self.ivf_pq.pq_bits,
            seed: 0x5ba1 ^ group,
            compaction: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_names_round_trip() {
        for p in [Placement::Hash, Placement::Centroid] {
            assert_eq!(Placement::from_name(p.as_str()), Some(p));
        }
        assert_eq!(Placement::from_name("random"), None);
        assert_eq!(Placement::from_name("Hash"), None);
    }
}
