//! Qdrant's collection shapes and the collection model: a create request becomes a
//! [`CollectionSpec`] ([`spec_of`]), a resolved [`CollectionConfig`](crate::collection::CollectionConfig)
//! is reported in Qdrant's shape ([`types::CollectionConfig`]).
//!
//! Only the JSON shape is checked here (which fields, which names); the values are checked by
//! the collection model when the metadata leader resolves the spec.

use super::error::ApiError;
use super::types::{
    self, CreateCollection, Distance, IvfPqParams, ResolvedIvfPq, ResolvedSearch, UpdateCollection,
    VectorParams, VectorsConfig,
};
use crate::collection::{
    self, CollectionSpec, CollectionVectors, IvfPqSpec, Metric, NamedVectorSpec, Placement,
    SearchSpec, SearchUpdate, VectorSpec,
};
use serde_json::Value;

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

/// The spec a `PUT /collections/{name}` body asks for and its named vectors (none for one
/// unnamed vector): `vectors` is required, either one vector `{"size", "distance"}` (or Qdrant's
/// named form with only the empty name, its unnamed vector) or named vectors
/// `{"name": {"size", "distance"}, ..}`; `placement` is `hash` or `centroid`.
pub fn spec_of(req: &CreateCollection) -> Result<(CollectionSpec, Vec<NamedVectorSpec>), ApiError> {
    let vectors = req.vectors.as_ref().ok_or_else(|| {
        ApiError::bad(
            "missing `vectors`: give {\"size\": N, \"distance\": \"Cosine\"|\"Euclid\"|\"Dot\"}",
        )
    })?;
    let (vector, named) = match vectors.as_object() {
        // LangChain's Qdrant store creates collections so: `{"": {"size": ..}}`.
        Some(named) if named.len() == 1 && named.get("").is_some_and(Value::is_object) => {
            (vector_spec(&named[""], "vectors")?, Vec::new())
        }
        Some(named)
            if !named.is_empty()
                && !named.contains_key("size")
                && named.values().all(Value::is_object) =>
        {
            if named.contains_key("") {
                return Err(ApiError::bad(
                    "vectors: the empty name is the unnamed vector; it cannot be mixed with named vectors",
                ));
            }
            let named = named
                .iter()
                .map(|(name, v)| {
                    Ok(NamedVectorSpec {
                        name: name.clone(),
                        vectors: vector_spec(v, &format!("vectors.{name}"))?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            (named[0].vectors, named)
        }
        _ => (vector_spec(vectors, "vectors")?, Vec::new()),
    };
    if !is_blank(&req.sparse_vectors) {
        return Err(ApiError::bad("sparse_vectors are not supported by shoal"));
    }
    let placement = match req.placement.as_deref() {
        None => None,
        Some(name) => Some(Placement::from_name(name).ok_or_else(|| {
            ApiError::bad(format!("placement {name:?}: use \"hash\" or \"centroid\""))
        })?),
    };
    let ivf = req.ivf_pq_config.clone().unwrap_or_default();
    let search = req.search_config.clone().unwrap_or_default();
    let spec = CollectionSpec {
        vectors: vector,
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
    };
    Ok((spec, named))
}

/// One vector's `{"size", "distance", ..}` (`what` names it in errors). A setting serde would
/// drop silently (multivectors, another datatype) is refused by name: a collection must never
/// be created without what it asked for.
fn vector_spec(json: &Value, what: &str) -> Result<VectorSpec, ApiError> {
    let params: VectorParams = serde_json::from_value(json.clone()).map_err(|e| {
        ApiError::bad(format!(
            "invalid `{what}` ({e}): give {{\"size\": N, \"distance\": \"Cosine\"|\"Euclid\"|\"Dot\"}}"
        ))
    })?;
    if let Some(fields) = json.as_object() {
        for (field, value) in fields {
            match field.as_str() {
                "size" | "distance" | "on_disk" | "hnsw_config" | "quantization_config" => {}
                "datatype" if value.is_null() || value == "float32" => {}
                "multivector_config" if value.is_null() => {}
                other => {
                    return Err(ApiError::bad(format!(
                        "{what}.{other} = {value} is not supported by shoal (dense float32 vectors)"
                    )));
                }
            }
        }
    }
    Ok(VectorSpec {
        dim: params.size,
        metric: Metric::try_from(params.distance)?,
    })
}

/// Whether a JSON value asks for nothing (absent, `null`, `{}` or `[]`).
fn is_blank(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The search-settings change a `PATCH /collections/{name}` body asks of a collection now
/// configured as `current`, or a 400 naming the first setting shoal cannot change live (see
/// [`UpdateCollection`]). Settings restated with their current value are not changes.
pub fn update_of(
    req: &UpdateCollection,
    vectors: &CollectionVectors,
) -> Result<SearchUpdate, ApiError> {
    let current = &vectors.config;
    for (field, value) in [
        ("sparse_vectors", &req.sparse_vectors),
        ("strict_mode_config", &req.strict_mode_config),
        ("metadata", &req.metadata),
    ] {
        if !is_blank(value) {
            return Err(ApiError::bad(format!("{field} is not supported by shoal")));
        }
    }
    if !is_blank(&req.ivf_pq_config) {
        let asked: IvfPqParams =
            serde_json::from_value(req.ivf_pq_config.clone().unwrap_or_default())
                .map_err(|e| ApiError::bad(format!("invalid `ivf_pq_config`: {e}")))?;
        let now = &current.ivf_pq;
        for (field, asked, now) in [
            ("nlist", asked.nlist, now.nlist),
            ("pq_m", asked.pq_m, now.pq_m),
            (
                "pq_bits",
                asked.pq_bits.map(usize::from),
                usize::from(now.pq_bits),
            ),
            ("seal_threshold", asked.seal_threshold, now.seal_threshold),
        ] {
            if asked.is_some_and(|a| a != now) {
                return Err(ApiError::bad(format!(
                    "ivf_pq_config.{field} cannot change on a live collection (it is {now}; its segments are built with it): create a new collection and load it"
                )));
            }
        }
    }
    if let Some(params) = req.params.as_ref().filter(|p| !p.is_null()) {
        let params = params
            .as_object()
            .ok_or_else(|| ApiError::bad("`params` must be an object"))?;
        for (key, value) in params {
            match key.as_str() {
                "replication_factor" | "shard_number" => {
                    let now = if key == "replication_factor" {
                        current.replication_factor
                    } else {
                        current.shard_number
                    };
                    if !value.is_null() && value.as_u64() != Some(u64::from(now)) {
                        return Err(ApiError::bad(format!(
                            "params.{key} cannot change on a live collection yet (it is {now}): move replicas with POST /cluster/collections/{{name}}/shards/{{shard}}/move, or create a new collection"
                        )));
                    }
                }
                // Qdrant's write and read fan-out and payload storage: no effect in shoal.
                "write_consistency_factor" | "read_fan_out_factor" | "on_disk_payload" => {}
                other => {
                    return Err(ApiError::bad(format!(
                        "params.{other} is not a collection parameter shoal knows"
                    )));
                }
            }
        }
    }
    if let Some(changed) = req.vectors.as_ref().filter(|v| !v.is_null()) {
        let changed = changed
            .as_object()
            .ok_or_else(|| ApiError::bad("`vectors` must be an object"))?;
        for (name, diff) in changed {
            let exists = if name.is_empty() {
                vectors.named.is_empty()
            } else {
                vectors.named.iter().any(|n| &n.name == name)
            };
            if !exists {
                return Err(ApiError::bad(format!(
                    "vectors.{name:?}: the collection has no such vector"
                )));
            }
            let fields = diff
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>());
            for field in fields.unwrap_or_default() {
                if !matches!(
                    field.as_str(),
                    "hnsw_config" | "quantization_config" | "on_disk"
                ) {
                    return Err(ApiError::bad(format!(
                        "vectors.{name:?}.{field} cannot be changed by shoal"
                    )));
                }
            }
        }
    }
    let search = req.search_config.clone().unwrap_or_default();
    Ok(SearchUpdate {
        nprobe: search.nprobe,
        rerank: search.rerank,
        shard_probe: search.shard_probe,
        recall_target: search.recall_target,
    })
}

/// A collection's configuration in Qdrant's shape: `vectors` one vector, or named vectors by
/// name.
pub fn config_out(v: &CollectionVectors) -> types::CollectionConfig {
    let mut out = types::CollectionConfig::from(&v.config);
    if !v.named.is_empty() {
        out.vectors = VectorsConfig::Named(
            v.named
                .iter()
                .map(|n| {
                    let params = VectorParams {
                        size: n.space.dim,
                        distance: n.space.metric.into(),
                    };
                    (n.name.clone(), params)
                })
                .collect(),
        );
    }
    out
}

impl From<&collection::CollectionConfig> for types::CollectionConfig {
    fn from(c: &collection::CollectionConfig) -> Self {
        types::CollectionConfig {
            vectors: VectorsConfig::Single(VectorParams {
                size: c.vectors.dim,
                distance: c.vectors.metric.into(),
            }),
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
        let (spec, named) = spec_of(&serde_json::from_value(body).unwrap())?;
        assert!(named.is_empty(), "{named:?}");
        Ok(spec)
    }

    #[test]
    fn a_map_of_vectors_is_named_vectors() {
        let (_, named) = spec_of(
            &serde_json::from_value(json!({"vectors": {
                "text": {"size": 8, "distance": "Cosine", "on_disk": true},
                "image": {"size": 4, "distance": "Dot"}
            }}))
            .unwrap(),
        )
        .unwrap();
        let got: Vec<(&str, u64, Metric)> = named
            .iter()
            .map(|n| (n.name.as_str(), n.vectors.dim, n.vectors.metric))
            .collect();
        assert!(got.contains(&("text", 8, Metric::Cosine)), "{got:?}");
        assert!(got.contains(&("image", 4, Metric::Dot)), "{got:?}");
        let bad = spec_of(
            &serde_json::from_value(json!({"vectors": {
                "text": {"size": 8, "distance": "Cosine", "datatype": "uint8"}
            }}))
            .unwrap(),
        );
        match bad {
            Err(ApiError::BadRequest(m)) => assert!(m.contains("vectors.text.datatype"), "{m}"),
            other => panic!("{other:?}"),
        }
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
                json!({"vectors": {"": {"size": 8, "distance": "Dot"}, "b": {"size": 2, "distance": "Dot"}}}),
                "empty name",
            ),
            (
                json!({"vectors": {"": {"size": 8, "distance": "Dot", "datatype": "uint8"}}}),
                "vectors.datatype",
            ),
            (
                json!({"vectors": {"size": 8, "distance": "Dot"}, "placement": "random"}),
                "placement",
            ),
            (
                json!({"vectors": {"size": 8, "distance": "Dot",
                    "multivector_config": {"comparator": "max_sim"}}}),
                "vectors.multivector_config",
            ),
            (
                json!({"vectors": {"size": 8, "distance": "Dot", "datatype": "uint8"}}),
                "vectors.datatype",
            ),
            (
                json!({"vectors": {"size": 8, "distance": "Dot"},
                    "sparse_vectors": {"text": {}}}),
                "sparse_vectors",
            ),
        ] {
            match spec(body) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("expected a 400 naming {needle}, got {other:?}"),
            }
        }
    }

    #[test]
    fn what_qdrant_client_sends_with_defaults_still_creates() {
        let s = spec(json!({
            "vectors": {"size": 8, "distance": "Cosine", "on_disk": null, "datatype": null,
                "multivector_config": null, "hnsw_config": null},
            "sparse_vectors": null, "hnsw_config": {"m": 16}
        }));
        assert!(s.is_ok(), "{s:?}");
    }

    #[test]
    fn the_empty_name_is_the_unnamed_vector() {
        // LangChain's Qdrant store: `vectors_config={"": VectorParams(..)}`, `sparse_vectors_config={}`.
        let s = spec(json!({
            "vectors": {"": {"size": 24, "distance": "Cosine"}},
            "sparse_vectors": {}
        }))
        .unwrap();
        assert_eq!((s.vectors.dim, s.vectors.metric), (24, Metric::Cosine));
    }

    #[test]
    fn updates_apply_search_settings_and_name_what_cannot_change() {
        let c = CollectionSpec::new(8, Metric::Dot)
            .resolve(&collection::IndexDefaults::default(), 3)
            .unwrap();
        let v = CollectionVectors {
            config: c,
            named: Vec::new(),
        };
        let update =
            |body: serde_json::Value| update_of(&serde_json::from_value(body).unwrap(), &v);
        let u = update(json!({
            "search_config": {"nprobe": 8, "rerank": null, "recall_target": 0.99},
            "optimizers_config": {"indexing_threshold": 10000},
            "hnsw_config": {"m": 32},
            "params": {"replication_factor": 1, "on_disk_payload": true},
            "vectors": {"": {"on_disk": true}}
        }))
        .unwrap();
        assert_eq!(u.nprobe, Some(Some(8)));
        assert_eq!(u.rerank, Some(None), "null: back to the calibration");
        assert_eq!(u.recall_target, Some(0.99));
        assert_eq!(u.shard_probe, None, "absent: unchanged");
        assert!(update(json!({})).unwrap().is_empty());
        let nlist = c.ivf_pq.nlist;
        assert!(
            update(json!({"ivf_pq_config": {"nlist": nlist}}))
                .unwrap()
                .is_empty()
        );
        for (body, needle) in [
            (
                json!({"params": {"replication_factor": 3}}),
                "params.replication_factor",
            ),
            (
                json!({"params": {"shard_number": 2}}),
                "params.shard_number",
            ),
            (json!({"params": {"wal": 1}}), "params.wal"),
            (
                json!({"ivf_pq_config": {"nlist": nlist + 1}}),
                "ivf_pq_config.nlist",
            ),
            (
                json!({"vectors": {"text": {"on_disk": true}}}),
                "no such vector",
            ),
            (json!({"sparse_vectors": {"text": {}}}), "sparse_vectors"),
            (json!({"metadata": {"owner": "me"}}), "metadata"),
        ] {
            match update(body) {
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
        match &wire.vectors {
            VectorsConfig::Single(v) => assert_eq!(v.distance, Distance::Dot),
            other => panic!("{other:?}"),
        }
        assert_eq!(wire.placement, "hash");
        assert_eq!(wire.ivf_pq_config.nlist, c.ivf_pq.nlist);
        assert_eq!(wire.group_id, 3);
    }
}
