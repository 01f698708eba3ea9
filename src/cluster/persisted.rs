//! The persisted form of a collection's configuration inside the metadata formats (the Raft
//! log's [`MetaCommand`](super::MetaCommand)s and `cluster-state.bin`), kept apart from the
//! in-memory model ([`crate::collection::CollectionConfig`]) so that neither the model nor the
//! REST types can change these bytes by accident.
//!
//! Version 1 is the layout the metadata had when the configuration was the REST layer's
//! `CollectionConfig`: postcard is positional, so the field order, the distance names (Qdrant's,
//! `Manhattan` included) and the placement as a string are the format. It stored `nprobe` and
//! `rerank` always; read today, the values that were the built-in defaults then (16, at most
//! nlist, and 4) mean "not fixed" (each segment's calibration decides) and the recall target is
//! the default 0.95, so old collections get what new ones get unless they chose otherwise.
//!
//! Version 2 is typed: the model's metric and placement as enums, `nprobe`/`rerank` optional,
//! and the recall target. New log entries and snapshots are written as version 2; version 1 is
//! still read (the log's `CreateCollection` entries, `cluster-state.bin` version 1). The
//! fixtures under `tests/fixtures/meta/` hold the bytes of both. [`config_v1`] and
//! [`config_v2`] map the model to and from them for `#[serde(with)]`.
//!
//! [`ClusterStateV3`] is the whole state as `cluster-state.bin` versions 2 and 3 held it,
//! before aliases were added at its end (version 4); [`ClusterStateV4`] as version 4 held it,
//! before collections gained their named vectors (version 5, [`named_v1`]); both only read,
//! their collections in [`CollectionMetaV2`]'s layout.

use super::meta::{ClusterState, CollectionMeta, ShardMeta};
use super::placement::CentroidPlacement;
use crate::collection::config::{UNCALIBRATED_NPROBE, UNCALIBRATED_RERANK};
use crate::collection::{
    CollectionConfig, IvfPqSettings, Metric, NamedVector, Placement, SearchSettings, VectorSpace,
};
use crate::raft::{GroupId, NodeId, NodeInfo};
use crate::shard::DEFAULT_RECALL_TARGET;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Version 1's distance enum: Qdrant's names, in Qdrant's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum DistanceV1 {
    Cosine,
    Euclid,
    Dot,
    /// Never written (creates refuse it); decoding it fails.
    Manhattan,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VectorsV1 {
    size: u64,
    distance: DistanceV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IvfPqV1 {
    nlist: u64,
    pq_m: u64,
    pq_bits: u8,
    seal_threshold: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SearchV1 {
    nprobe: u64,
    rerank: u64,
    shard_probe: u64,
}

/// Version 1 of a stored collection configuration (`usize` fields are postcard varints, the
/// same bytes as these `u64`s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConfigV1 {
    vectors: VectorsV1,
    shard_number: u32,
    replication_factor: u32,
    placement: String,
    ivf_pq_config: IvfPqV1,
    search_config: SearchV1,
    group_id: u64,
}

impl From<&CollectionConfig> for ConfigV1 {
    fn from(c: &CollectionConfig) -> Self {
        ConfigV1 {
            vectors: VectorsV1 {
                size: c.vectors.dim,
                distance: match c.vectors.metric {
                    Metric::Cosine => DistanceV1::Cosine,
                    Metric::L2 => DistanceV1::Euclid,
                    Metric::Dot => DistanceV1::Dot,
                },
            },
            shard_number: c.shard_number,
            replication_factor: c.replication_factor,
            placement: c.placement.as_str().to_owned(),
            ivf_pq_config: IvfPqV1 {
                nlist: c.ivf_pq.nlist as u64,
                pq_m: c.ivf_pq.pq_m as u64,
                pq_bits: c.ivf_pq.pq_bits,
                seal_threshold: c.ivf_pq.seal_threshold as u64,
            },
            search_config: SearchV1 {
                nprobe: c.search.fallback_nprobe(c.ivf_pq.nlist) as u64,
                rerank: c.search.fallback_rerank() as u64,
                shard_probe: c.search.shard_probe as u64,
            },
            group_id: c.group_id,
        }
    }
}

impl TryFrom<ConfigV1> for CollectionConfig {
    type Error = String;

    fn try_from(c: ConfigV1) -> Result<Self, String> {
        let metric = match c.vectors.distance {
            DistanceV1::Cosine => Metric::Cosine,
            DistanceV1::Euclid => Metric::L2,
            DistanceV1::Dot => Metric::Dot,
            DistanceV1::Manhattan => {
                return Err(
                    "stored collection config has distance Manhattan, which shoal does not serve"
                        .into(),
                );
            }
        };
        let placement = Placement::from_name(&c.placement).ok_or_else(|| {
            format!(
                "stored collection config has unknown placement {:?}",
                c.placement
            )
        })?;
        let size = |v: u64, what: &str| {
            usize::try_from(v)
                .map_err(|_| format!("stored {what} = {v} does not fit this platform"))
        };
        Ok(CollectionConfig {
            vectors: VectorSpace {
                dim: c.vectors.size,
                metric,
            },
            shard_number: c.shard_number,
            replication_factor: c.replication_factor,
            placement,
            ivf_pq: IvfPqSettings {
                nlist: size(c.ivf_pq_config.nlist, "nlist")?,
                pq_m: size(c.ivf_pq_config.pq_m, "pq_m")?,
                pq_bits: c.ivf_pq_config.pq_bits,
                seal_threshold: size(c.ivf_pq_config.seal_threshold, "seal_threshold")?,
            },
            search: {
                let nlist = size(c.ivf_pq_config.nlist, "nlist")?;
                let nprobe = size(c.search_config.nprobe, "nprobe")?;
                let rerank = size(c.search_config.rerank, "rerank")?;
                SearchSettings {
                    nprobe: (nprobe != UNCALIBRATED_NPROBE.min(nlist.max(1))).then_some(nprobe),
                    rerank: (rerank != UNCALIBRATED_RERANK).then_some(rerank),
                    shard_probe: size(c.search_config.shard_probe, "shard_probe")?,
                    recall_target: DEFAULT_RECALL_TARGET,
                }
            },
            group_id: c.group_id,
        })
    }
}

/// `#[serde(with = "config_v1")]`: a [`CollectionConfig`] in version 1's layout.
pub(crate) mod config_v1 {
    use super::ConfigV1;
    use crate::collection::CollectionConfig;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `c` as version 1.
    pub(crate) fn serialize<S: Serializer>(c: &CollectionConfig, s: S) -> Result<S::Ok, S::Error> {
        ConfigV1::from(c).serialize(s)
    }

    /// Reads version 1; a distance or placement the model does not have is an error.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<CollectionConfig, D::Error> {
        CollectionConfig::try_from(ConfigV1::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Version 2's metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum MetricV2 {
    Cosine,
    L2,
    Dot,
}

impl From<Metric> for MetricV2 {
    fn from(m: Metric) -> Self {
        match m {
            Metric::Cosine => MetricV2::Cosine,
            Metric::L2 => MetricV2::L2,
            Metric::Dot => MetricV2::Dot,
        }
    }
}

impl From<MetricV2> for Metric {
    fn from(m: MetricV2) -> Self {
        match m {
            MetricV2::Cosine => Metric::Cosine,
            MetricV2::L2 => Metric::L2,
            MetricV2::Dot => Metric::Dot,
        }
    }
}

/// Version 2's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum PlacementV2 {
    Hash,
    Centroid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SearchV2 {
    nprobe: Option<u64>,
    rerank: Option<u64>,
    shard_probe: u64,
    recall_target: f64,
}

/// Version 2 of a stored collection configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConfigV2 {
    dim: u64,
    metric: MetricV2,
    shard_number: u32,
    replication_factor: u32,
    placement: PlacementV2,
    ivf_pq: IvfPqV1,
    search: SearchV2,
    group_id: u64,
}

impl From<&CollectionConfig> for ConfigV2 {
    fn from(c: &CollectionConfig) -> Self {
        ConfigV2 {
            dim: c.vectors.dim,
            metric: c.vectors.metric.into(),
            shard_number: c.shard_number,
            replication_factor: c.replication_factor,
            placement: match c.placement {
                Placement::Hash => PlacementV2::Hash,
                Placement::Centroid => PlacementV2::Centroid,
            },
            ivf_pq: IvfPqV1 {
                nlist: c.ivf_pq.nlist as u64,
                pq_m: c.ivf_pq.pq_m as u64,
                pq_bits: c.ivf_pq.pq_bits,
                seal_threshold: c.ivf_pq.seal_threshold as u64,
            },
            search: SearchV2 {
                nprobe: c.search.nprobe.map(|n| n as u64),
                rerank: c.search.rerank.map(|n| n as u64),
                shard_probe: c.search.shard_probe as u64,
                recall_target: c.search.recall_target,
            },
            group_id: c.group_id,
        }
    }
}

impl TryFrom<ConfigV2> for CollectionConfig {
    type Error = String;

    fn try_from(c: ConfigV2) -> Result<Self, String> {
        let size = |v: u64, what: &str| {
            usize::try_from(v)
                .map_err(|_| format!("stored {what} = {v} does not fit this platform"))
        };
        let opt = |v: Option<u64>, what: &str| v.map(|v| size(v, what)).transpose();
        Ok(CollectionConfig {
            vectors: VectorSpace {
                dim: c.dim,
                metric: c.metric.into(),
            },
            shard_number: c.shard_number,
            replication_factor: c.replication_factor,
            placement: match c.placement {
                PlacementV2::Hash => Placement::Hash,
                PlacementV2::Centroid => Placement::Centroid,
            },
            ivf_pq: IvfPqSettings {
                nlist: size(c.ivf_pq.nlist, "nlist")?,
                pq_m: size(c.ivf_pq.pq_m, "pq_m")?,
                pq_bits: c.ivf_pq.pq_bits,
                seal_threshold: size(c.ivf_pq.seal_threshold, "seal_threshold")?,
            },
            search: SearchSettings {
                nprobe: opt(c.search.nprobe, "nprobe")?,
                rerank: opt(c.search.rerank, "rerank")?,
                shard_probe: size(c.search.shard_probe, "shard_probe")?,
                recall_target: c.search.recall_target,
            },
            group_id: c.group_id,
        })
    }
}

/// `#[serde(with = "config_v2")]`: a [`CollectionConfig`] in version 2's layout.
pub(crate) mod config_v2 {
    use super::ConfigV2;
    use crate::collection::CollectionConfig;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `c` as version 2.
    pub(crate) fn serialize<S: Serializer>(c: &CollectionConfig, s: S) -> Result<S::Ok, S::Error> {
        ConfigV2::from(c).serialize(s)
    }

    /// Reads version 2.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<CollectionConfig, D::Error> {
        CollectionConfig::try_from(ConfigV2::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A [`CollectionMeta`] as version 1 stored it (the configuration in [`config_v1`]'s layout):
/// what the log's `CreateCollection` entries and `cluster-state.bin` version 1 hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionMetaV1 {
    #[serde(with = "config_v1")]
    config: CollectionConfig,
    shards: Vec<ShardMeta>,
    centroids: Option<CentroidPlacement>,
}

impl From<CollectionMetaV1> for CollectionMeta {
    fn from(m: CollectionMetaV1) -> Self {
        CollectionMeta {
            config: m.config,
            shards: m.shards,
            centroids: m.centroids,
            named: Vec::new(),
        }
    }
}

impl From<CollectionMeta> for CollectionMetaV1 {
    fn from(m: CollectionMeta) -> Self {
        CollectionMetaV1 {
            config: m.config,
            shards: m.shards,
            centroids: m.centroids,
        }
    }
}

/// A [`CollectionMeta`] before named vectors (the configuration in [`config_v2`]'s layout):
/// what the log's `CreateCollectionV2` entries and `cluster-state.bin` versions 2 to 4 hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionMetaV2 {
    #[serde(with = "config_v2")]
    pub(crate) config: CollectionConfig,
    pub(crate) shards: Vec<ShardMeta>,
    pub(crate) centroids: Option<CentroidPlacement>,
}

impl From<CollectionMetaV1> for CollectionMetaV2 {
    /// The same collection: only the configuration's stored layout differs.
    fn from(m: CollectionMetaV1) -> Self {
        CollectionMetaV2 {
            config: m.config,
            shards: m.shards,
            centroids: m.centroids,
        }
    }
}

impl From<CollectionMeta> for CollectionMetaV2 {
    /// Drops the named vectors: only for a collection without them.
    fn from(m: CollectionMeta) -> Self {
        CollectionMetaV2 {
            config: m.config,
            shards: m.shards,
            centroids: m.centroids,
        }
    }
}

impl From<CollectionMetaV2> for CollectionMeta {
    fn from(m: CollectionMetaV2) -> Self {
        CollectionMeta {
            config: m.config,
            shards: m.shards,
            centroids: m.centroids,
            named: Vec::new(),
        }
    }
}

/// Version 1 of a stored named vector (`cluster-state.bin` version 5, `CreateCollectionV3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NamedVectorV1 {
    name: String,
    dim: u64,
    metric: MetricV2,
    pq_m: u64,
}

/// A collection's named vectors in version 1's layout, for `#[serde(with)]`.
pub(crate) mod named_v1 {
    use super::*;
    use serde::{Deserializer, Serializer};

    /// Writes version 1.
    pub(crate) fn serialize<S: Serializer>(v: &[NamedVector], s: S) -> Result<S::Ok, S::Error> {
        let stored: Vec<NamedVectorV1> = v
            .iter()
            .map(|n| NamedVectorV1 {
                name: n.name.clone(),
                dim: n.space.dim,
                metric: MetricV2::from(n.space.metric),
                pq_m: n.pq_m as u64,
            })
            .collect();
        stored.serialize(s)
    }

    /// Reads version 1.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<NamedVector>, D::Error> {
        Vec::<NamedVectorV1>::deserialize(d)?
            .into_iter()
            .map(|n| {
                Ok(NamedVector {
                    name: n.name,
                    space: VectorSpace {
                        dim: n.dim,
                        metric: n.metric.into(),
                    },
                    pq_m: usize::try_from(n.pq_m).map_err(|_| {
                        serde::de::Error::custom(format!("stored pq_m = {} does not fit", n.pq_m))
                    })?,
                })
            })
            .collect()
    }
}

/// Every collection of an older layout in the newer one.
pub(crate) fn upgraded<A: Into<B>, B>(collections: BTreeMap<String, A>) -> BTreeMap<String, B> {
    collections
        .into_iter()
        .map(|(name, c)| (name, c.into()))
        .collect()
}

/// [`ClusterState`] as `cluster-state.bin` versions 2 and 3 held it: the same fields, without
/// the aliases (postcard is positional, so version 4 appended them); only read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterStateV3 {
    pub(crate) members: BTreeMap<NodeId, NodeInfo>,
    pub(crate) collections: BTreeMap<String, CollectionMetaV2>,
    pub(crate) next_group: GroupId,
    pub(crate) reconfigured: BTreeSet<GroupId>,
    pub(crate) applied_index: u64,
}

impl From<ClusterStateV3> for ClusterState {
    fn from(s: ClusterStateV3) -> Self {
        ClusterStateV4 {
            members: s.members,
            collections: s.collections,
            next_group: s.next_group,
            reconfigured: s.reconfigured,
            applied_index: s.applied_index,
            aliases: BTreeMap::new(),
        }
        .into()
    }
}

/// [`ClusterState`] as `cluster-state.bin` version 4 held it: collections without named
/// vectors; only read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterStateV4 {
    pub(crate) members: BTreeMap<NodeId, NodeInfo>,
    pub(crate) collections: BTreeMap<String, CollectionMetaV2>,
    pub(crate) next_group: GroupId,
    pub(crate) reconfigured: BTreeSet<GroupId>,
    pub(crate) applied_index: u64,
    pub(crate) aliases: BTreeMap<String, String>,
}

impl From<ClusterStateV4> for ClusterState {
    fn from(s: ClusterStateV4) -> Self {
        ClusterState {
            members: s.members,
            collections: upgraded(s.collections),
            next_group: s.next_group,
            reconfigured: s.reconfigured,
            applied_index: s.applied_index,
            aliases: s.aliases,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manhattan_and_unknown_placements_do_not_decode() {
        let mut c = ConfigV1 {
            vectors: VectorsV1 {
                size: 4,
                distance: DistanceV1::Manhattan,
            },
            shard_number: 1,
            replication_factor: 1,
            placement: "hash".into(),
            ivf_pq_config: IvfPqV1 {
                nlist: 4,
                pq_m: 2,
                pq_bits: 4,
                seal_threshold: 10,
            },
            search_config: SearchV1 {
                nprobe: 1,
                rerank: 0,
                shard_probe: 1,
            },
            group_id: 1,
        };
        let err = CollectionConfig::try_from(c.clone()).unwrap_err();
        assert!(err.contains("Manhattan"), "{err}");
        c.vectors.distance = DistanceV1::Euclid;
        let model = CollectionConfig::try_from(c.clone()).unwrap();
        assert_eq!(model.vectors.metric, Metric::L2);
        assert_eq!(ConfigV1::from(&model), c);
        // The defaults version 1 always wrote mean "not fixed" today; the bytes stay the same.
        c.search_config = SearchV1 {
            nprobe: 4,
            rerank: 4,
            shard_probe: 1,
        };
        let model = CollectionConfig::try_from(c.clone()).unwrap();
        assert_eq!((model.search.nprobe, model.search.rerank), (None, None));
        assert_eq!(model.search.recall_target, DEFAULT_RECALL_TARGET);
        assert_eq!(ConfigV1::from(&model), c);
        c.placement = "random".into();
        assert!(
            CollectionConfig::try_from(c)
                .unwrap_err()
                .contains("random")
        );
    }
}
