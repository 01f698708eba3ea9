//! A collection's vectors as the REST layer reads and shows them: one unnamed vector (a list of
//! numbers), or named vectors (`{"image": [..], "text": [..]}`), which travel to the shards
//! packed end to end in lane order ([`crate::collection::named`]).

use super::AppState;
use super::error::ApiError;
use super::parse;
use super::types::{VectorInput, VectorOut};
use crate::collection::CollectionConfig;
use crate::collection::named::{self, CollectionVectors};
use crate::shard::lanes::is_absent;
use serde_json::Value;
use std::collections::BTreeMap;

/// The vectors of one collection, read once per request.
#[derive(Debug, Clone)]
pub struct VectorLayout {
    vectors: CollectionVectors,
    dims: Vec<usize>,
}

impl VectorLayout {
    /// The layout of collection `name` (404 if it does not exist).
    pub fn of(st: &AppState, name: &str) -> Result<Self, ApiError> {
        Ok(Self::new(st.router.collection_vectors(name)?))
    }

    /// The layout of these vectors.
    pub fn new(vectors: CollectionVectors) -> Self {
        let dims = vectors.lane_dims();
        VectorLayout { vectors, dims }
    }

    /// Lane `lane`'s configuration (its vector's dimension and metric).
    pub fn lane_config(&self, lane: usize) -> CollectionConfig {
        self.vectors.lane_config(lane)
    }

    /// The name a query passes as `using` for lane `lane` (`None` for the unnamed vector).
    pub fn using(&self, lane: usize) -> Option<String> {
        self.vectors.named.get(lane).map(|n| n.name.clone())
    }

    /// The lane `using` names.
    pub fn lane_of(&self, using: Option<&str>) -> Result<usize, ApiError> {
        Ok(self.vectors.lane_of(using)?)
    }

    /// A point's vector from an upsert, packed: a list of numbers for the unnamed vector, an
    /// object giving every named vector by name otherwise.
    pub fn point(&self, v: &VectorInput, what: &str) -> Result<Vec<f32>, ApiError> {
        if self.vectors.named.is_empty() {
            return parse::vector(v, self.dims[0], what);
        }
        let VectorInput::Named(entries) = v else {
            return Err(ApiError::bad(format!(
                "{what}: the collection has named vectors ({}): give the vector as {{\"name\": [numbers], ..}}",
                self.vectors.names()
            )));
        };
        let by_name: Vec<(&str, &VectorInput)> =
            entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        self.pack(&by_name, what)
    }

    /// Packs vectors given by name (each checked against its dimension, none unknown; a
    /// vector not given is one the point does not have).
    pub fn pack(&self, by_name: &[(&str, &VectorInput)], what: &str) -> Result<Vec<f32>, ApiError> {
        if let Some((k, _)) = by_name
            .iter()
            .find(|(k, _)| !self.vectors.named.iter().any(|n| n.name == *k))
        {
            return Err(ApiError::bad(format!(
                "{what}: the collection has no vector named {k:?} (it has {})",
                self.vectors.names()
            )));
        }
        let by_lane = self
            .vectors
            .named
            .iter()
            .zip(&self.dims)
            .map(|(n, dim)| {
                by_name
                    .iter()
                    .find(|(k, _)| *k == n.name)
                    .map(|(_, v)| parse::vector(v, *dim, &format!("{what}.{}", n.name)))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        named::pack(&self.vectors.named, by_lane).map_err(|e| ApiError::bad(format!("{what}: {e}")))
    }

    /// The new vectors of an update, by lane: a list for the unnamed vector, or a map of some of
    /// the named vectors.
    pub fn update(&self, v: &VectorInput, what: &str) -> Result<Vec<(u32, Vec<f32>)>, ApiError> {
        if self.vectors.named.is_empty() {
            return Ok(vec![(0, parse::vector(v, self.dims[0], what)?)]);
        }
        let VectorInput::Named(entries) = v else {
            return Err(ApiError::bad(format!(
                "{what}: the collection has named vectors ({}): give the new vectors as {{\"name\": [numbers], ..}}",
                self.vectors.names()
            )));
        };
        if entries.is_empty() {
            return Err(ApiError::bad(format!("{what}: no vector to update")));
        }
        entries
            .iter()
            .map(|(name, v)| {
                let lane = self
                    .vectors
                    .lane_of(Some(name))
                    .map_err(|e| ApiError::bad(format!("{what}: {e}")))?;
                let v = parse::vector(v, self.dims[lane], &format!("{what}.{name}"))?;
                Ok((lane as u32, v))
            })
            .collect()
    }

    /// The lane and the vector of a search: Qdrant's `{"name": .., "vector": [..]}` (the search
    /// API's form for a named vector), or a vector with `using` naming its vector.
    pub fn query(
        &self,
        v: &VectorInput,
        using: Option<&str>,
        what: &str,
    ) -> Result<(usize, Vec<f32>), ApiError> {
        let field = |key: &str| match v {
            VectorInput::Named(entries) if entries.len() == 2 => {
                entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        };
        let (using, v) = match (field("name"), field("vector")) {
            (Some(name), Some(vector)) => {
                let VectorInput::Other(Value::String(name)) = name else {
                    return Err(ApiError::bad(format!(
                        "{what}: `name` must be a vector name"
                    )));
                };
                (Some(name.as_str()), vector)
            }
            _ => (using, v),
        };
        let lane = self
            .vectors
            .lane_of(using)
            .map_err(|e| ApiError::bad(format!("{what}: {e}")))?;
        Ok((lane, parse::vector(v, self.dims[lane], what)?))
    }

    /// Lane `lane`'s part of a packed vector.
    pub fn unpack<'v>(&self, packed: &'v [f32], lane: usize) -> Option<&'v [f32]> {
        named::unpack(&self.dims, packed, lane)
    }

    /// How answers show this collection's vectors under `with_vector` (`true`, or a list of
    /// vector names, each of which must exist).
    pub fn view(&self, with_vector: Option<&Value>) -> Result<VectorView, ApiError> {
        let select = match with_vector {
            Some(Value::Array(a)) if !self.vectors.named.is_empty() => {
                let names = a
                    .iter()
                    .map(|v| {
                        let name = v.as_str().ok_or_else(|| {
                            ApiError::bad("with_vector must be a bool or a list of vector names")
                        })?;
                        self.vectors.lane_of(Some(name))?;
                        Ok(name.to_owned())
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                Some(names)
            }
            _ => None,
        };
        Ok(VectorView {
            names: self.vectors.named.iter().map(|n| n.name.clone()).collect(),
            dims: self.dims.clone(),
            select,
        })
    }
}

/// How an answer shows packed vectors: the unnamed vector as a list, named vectors as an object
/// by name (only the selected ones). The default view shows the unnamed vector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorView {
    names: Vec<String>,
    dims: Vec<usize>,
    select: Option<Vec<String>>,
}

impl VectorView {
    /// The vector to show of a record (none if it was not read).
    pub fn show(&self, packed: Option<Vec<f32>>) -> Option<VectorOut> {
        let v = packed?;
        if self.names.is_empty() {
            return (!is_absent(&v)).then_some(VectorOut::Dense(v));
        }
        // A vector the point does not have (deleted, or never given) is left out.
        let mut out = BTreeMap::new();
        let mut start = 0;
        for (name, dim) in self.names.iter().zip(&self.dims) {
            let part = v.get(start..start + dim)?;
            if self.select.as_ref().is_none_or(|s| s.contains(name)) && !is_absent(part) {
                out.insert(name.clone(), part.to_vec());
            }
            start += dim;
        }
        Some(VectorOut::Named(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::named::resolve_named;
    use crate::collection::{CollectionSpec, IndexDefaults, Metric, NamedVectorSpec, VectorSpec};
    use serde_json::json;

    fn layout() -> VectorLayout {
        let spec = |name: &str, dim| NamedVectorSpec {
            name: name.into(),
            vectors: VectorSpec {
                dim,
                metric: Metric::Dot,
            },
        };
        let (config, named) = resolve_named(
            &CollectionSpec::new(1, Metric::L2),
            &[spec("text", 2), spec("image", 3)],
            &IndexDefaults::default(),
            1,
        )
        .unwrap();
        VectorLayout::new(CollectionVectors { config, named })
    }

    fn input(v: Value) -> VectorInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_points_pack_in_name_order_and_show_back() {
        let l = layout();
        let packed = l
            .point(&input(json!({"text": [1, 2], "image": [3, 4, 5]})), "p")
            .unwrap();
        assert_eq!(packed, vec![3.0, 4.0, 5.0, 1.0, 2.0]);
        let all = l
            .view(Some(&json!(true)))
            .unwrap()
            .show(Some(packed.clone()));
        assert_eq!(
            serde_json::to_value(all).unwrap(),
            json!({"image": [3.0, 4.0, 5.0], "text": [1.0, 2.0]})
        );
        let some = l.view(Some(&json!(["text"]))).unwrap().show(Some(packed));
        assert_eq!(
            serde_json::to_value(some).unwrap(),
            json!({"text": [1.0, 2.0]})
        );
        assert!(l.view(Some(&json!(["audio"]))).is_err());
    }

    #[test]
    fn named_points_with_unknown_or_wrong_sized_vectors_are_refused() {
        let l = layout();
        // A point may leave a named vector out: its part is NaNs, shown as no vector.
        let packed = l.point(&input(json!({"text": [1, 2]})), "p").unwrap();
        assert_eq!(packed.len(), 5);
        assert_eq!(l.unpack(&packed, 1), Some(&[1.0, 2.0][..]));
        assert_eq!(l.unpack(&packed, 0), None);
        let shown = l.view(None).unwrap().show(Some(packed));
        assert_eq!(
            shown,
            Some(VectorOut::Named(BTreeMap::from([(
                "text".to_owned(),
                vec![1.0, 2.0]
            )])))
        );
        for (v, needle) in [
            (json!([1, 2]), "named vectors"),
            (
                json!({"text": [1, 2], "image": [3, 4, 5], "audio": [1]}),
                "\"audio\"",
            ),
            (json!({"text": [1], "image": [3, 4, 5]}), "p.text"),
        ] {
            let e = l.point(&input(v.clone()), "p").unwrap_err().to_string();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn queries_name_their_vector_by_using_or_the_named_form() {
        let l = layout();
        assert_eq!(
            l.query(&input(json!([1, 2])), Some("text"), "q").unwrap(),
            (1, vec![1.0, 2.0])
        );
        assert_eq!(
            l.query(
                &input(json!({"name": "image", "vector": [1, 2, 3]})),
                None,
                "q"
            )
            .unwrap(),
            (0, vec![1.0, 2.0, 3.0])
        );
        assert!(l.query(&input(json!([1, 2])), None, "q").is_err());
        assert!(
            l.query(&input(json!([1, 2, 3])), Some("text"), "q")
                .is_err()
        );
        assert_eq!(
            l.unpack(&[3.0, 4.0, 5.0, 1.0, 2.0], 1),
            Some(&[1.0, 2.0][..])
        );
    }
}
