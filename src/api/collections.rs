//! Qdrant's collection shapes and the collection model: a create request becomes a
//! [`CollectionSpec`] ([`spec_of`]), a resolved [`CollectionConfig`](crate::collection::CollectionConfig)
//! is reported in Qdrant's shape ([`types::CollectionConfig`]).
//!
//! Only the JSON shape is checked here (which fields, which names); the values are checked by
//! the collection model when the metadata leader resolves the spec.

use super::error::ApiError;
use super::types::{self, CreateCollection, Distance, ResolvedIvfPq, ResolvedSearch, VectorParams};
use crate::collection::{
    self, CollectionSpec, IvfPqSpec, Metric, Placement, SearchSpec, VectorSpec,
};

impl TryFrom<Distance> for Metric {
    type Error = ApiError;

    /// Qdrant's distance as the index's metric; `Manhattan` is refused, never approximated.
    fn try_from(d: Distance) -> Result<Metric, ApiError> {
        match d {
            Distance::Cosine => Ok(Metric::Cosine),
            Distance::Euclid => Ok(Metric::L2),
            Distance::Dot => Ok(Metric::Dot),
            Distance::Manhattan => Err(ApiError::bad(
                "distance Manhattan is not supported: use Cosine, Euclid or Dot",
            )),
        }
    }
}

impl From<Metric> for Distance {
    fn from(m: Metric) -> Distance {
        match m {
            Metric::Cosine => Distance::Cosine,
            Metric::L2 => Distance::Euclid,
            Metric::Dot => Distance::Dot,
        }
    }
}

/// The spec a `PUT /collections/{name}` body asks for: `vectors` is required and must be one
/// unnamed vector, `placement` is `hash` or `centroid`.
pub fn spec_of(req: &CreateCollection) -> Result<CollectionSpec, ApiError> {
    let vectors = req.vectors.as_ref().ok_or_else(|| {
        ApiError::bad(
            "missing `vectors`: give {\"size\": N, \"distance\": \"Cosine\"|\"Euclid\"|\"Dot\"}",
        )
    })?;
    let vectors: VectorParams = serde_json::from_value(vectors.clone()).map_err(|e| {
        ApiError::bad(format!(
            "invalid `vectors` ({e}): shoal supports one unnamed vector {{\"size\": N, \"distance\": \"Cosine\"|\"Euclid\"|\"Dot\"}}"
        ))
    })?;
    let metric = Metric::try_from(vectors.distance)?;
    let placement = match req.placement.as_deref() {
        None => None,
        Some(name) => Some(Placement::from_name(name).ok_or_else(|| {
            ApiError::bad(format!("placement {name:?}: use \"hash\" or \"centroid\""))
        })?),
    };
    let ivf = req.ivf_pq_config.clone().unwrap_or_default();
    let search = req.search_config.clone().unwrap_or_default();
    Ok(CollectionSpec {
        vectors: VectorSpec {
            dim: vectors.size,
            metric,
        },
        shard_number: req.shard_number,
        replication_factor: req.replication_factor,
        placement,
        ivf_pq: IvfPqSpec {
            nlist: ivf.nlist,
            pq_m: ivf.pq_m,
            pq_bits: ivf.pq_bits,
            seal_threshold: ivf.seal_threshold,
        },
        search: SearchSpec {
            nprobe: search.nprobe,
            rerank: search.rerank,
            shard_probe: search.shard_probe,
            recall_target: search.recall_target,
        },
    })
}

impl From<&collection::CollectionConfig> for types::CollectionConfig {
    fn from(c: &collection::CollectionConfig) -> Self {
        types::CollectionConfig {
            vectors: VectorParams {
                size: c.vectors.dim,
                distance: c.vectors.metric.into(),
            },
            shard_number: c.shard_number,
            replication_factor: c.replication_factor,
            placement: c.placement.as_str().to_owned(),
            ivf_pq_config: ResolvedIvfPq {
                nlist: c.ivf_pq.nlist,
                pq_m: c.ivf_pq.pq_m,
                pq_bits: c.ivf_pq.pq_bits,
                seal_threshold: c.ivf_pq.seal_threshold,
            },
            search_config: ResolvedSearch {
                nprobe: c.search.nprobe,
                rerank: c.search.rerank,
                shard_probe: c.search.shard_probe,
                recall_target: c.search.recall_target,
            },
            group_id: c.group_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(body: serde_json::Value) -> Result<CollectionSpec, ApiError> {
        spec_of(&serde_json::from_value(body).unwrap())
    }

    #[test]
    fn create_bodies_become_specs() {
        let s = spec(json!({
            "vectors": {"size": 8, "distance": "Euclid"},
            "shard_number": 2, "placement": "centroid",
            "ivf_pq_config": {"nlist": 16, "pq_bits": 8},
            "search_config": {"nprobe": 4, "shard_probe": 2}
        }))
        .unwrap();
        assert_eq!(
            s.vectors,
            VectorSpec {
                dim: 8,
                metric: Metric::L2
            }
        );
        assert_eq!(s.shard_number, Some(2));
        assert_eq!(s.placement, Some(Placement::Centroid));
        assert_eq!(s.ivf_pq.nlist, Some(16));
        assert_eq!(s.ivf_pq.pq_bits, Some(8));
        assert_eq!(s.search.nprobe, Some(4));
        assert_eq!(s.search.shard_probe, Some(2));
    }

    #[test]
    fn manhattan_and_bad_shapes_are_refused_not_approximated() {
        for (body, needle) in [
            (
                json!({"vectors": {"size": 8, "distance": "Manhattan"}}),
                "Manhattan",
            ),
            (json!({}), "missing `vectors`"),
            (
                json!({"vectors": {"a": {"size": 8, "distance": "Dot"}}}),
                "invalid `vectors`",
            ),
            (
                json!({"vectors": {"size": 8, "distance": "Dot"}, "placement": "random"}),
                "placement",
            ),
        ] {
            match spec(body) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("expected a 400 naming {needle}, got {other:?}"),
            }
        }
    }

    #[test]
    fn configs_report_in_qdrants_shape() {
        let c = CollectionSpec::new(8, Metric::Dot)
            .resolve(&collection::IndexDefaults::default(), 3)
            .unwrap();
        let wire = types::CollectionConfig::from(&c);
        assert_eq!(wire.vectors.distance, Distance::Dot);
        assert_eq!(wire.placement, "hash");
        assert_eq!(wire.ivf_pq_config.nlist, c.ivf_pq.nlist);
        assert_eq!(wire.group_id, 3);
    }
}
