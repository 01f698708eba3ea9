//! Queries by example: `query=<point id>` and `{"recommend": {...}}` (average-vector strategy),
//! with `lookup_from`. The examples are read through the router (each id from the shard that
//! holds it) and turned into one query vector; the example points themselves are left out of
//! the answer, as Qdrant does.
//!
//! Qdrant's other recommendation strategies (`best_score`, `sum_scores`) score every candidate
//! against every example inside the graph search; shoal's IVF-PQ scan has no such hook yet, so
//! they are refused with a 400 naming them rather than answered differently.

use super::AppState;
use super::error::ApiError;
use super::parse;
use super::vector_input::VectorInput;
use super::vectors::VectorLayout;
use crate::collection::{CollectionConfig, Metric};
use crate::index::distance;
use crate::router::ReadOptions;
use crate::shard::PointId;
use serde_json::Value;

/// One example: a stored point or a vector given in the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A point, read from the lookup collection.
    Point(PointId),
    /// A vector as sent.
    Vector(VectorInput),
}

/// What a query by example asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Examples {
    /// Points or vectors to search near (at least one).
    pub positive: Vec<Example>,
    /// Points or vectors to search away from.
    pub negative: Vec<Example>,
}

/// The examples a `query` that is neither a vector nor `{"nearest": ...}` names, or a 400 naming
/// what shoal does not serve.
pub fn parse_query(query: &Value) -> Result<Examples, ApiError> {
    let example = |v: &Value, what: &str| -> Result<Example, ApiError> {
        match v {
            Value::Array(_) => Ok(Example::Vector(
                serde_json::from_value(v.clone()).map_err(|e| ApiError::bad(e.to_string()))?,
            )),
            _ => parse::id(v)
                .map(Example::Point)
                .map_err(|e| ApiError::bad(format!("{what}: {e}"))),
        }
    };
    match query {
        Value::Number(_) | Value::String(_) => Ok(Examples {
            positive: vec![example(query, "query")?],
            negative: Vec::new(),
        }),
        Value::Object(m) if m.len() == 1 && m.contains_key("recommend") => {
            let r = &m["recommend"];
            let list = |key: &str| -> Result<Vec<Example>, ApiError> {
                match r.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(a)) => a
                        .iter()
                        .enumerate()
                        .map(|(i, v)| example(v, &format!("recommend.{key}[{i}]")))
                        .collect(),
                    Some(other) => Err(ApiError::bad(format!(
                        "recommend.{key} must be a list of point ids or vectors, got {other}"
                    ))),
                }
            };
            match r.get("strategy").and_then(Value::as_str) {
                None | Some("average_vector") => {}
                Some(other) => {
                    return Err(ApiError::bad(format!(
                        "recommend strategy {other:?} is not supported: use \"average_vector\""
                    )));
                }
            }
            let examples = Examples {
                positive: list("positive")?,
                negative: list("negative")?,
            };
            if examples.positive.is_empty() {
                return Err(ApiError::bad(
                    "recommend needs at least one positive example",
                ));
            }
            Ok(examples)
        }
        Value::Object(m) => {
            let kind = m.keys().next().map_or("{}", String::as_str);
            Err(ApiError::bad(format!(
                "query kind {kind:?} is not supported: use a vector, {{\"nearest\": vector}}, a point id or {{\"recommend\": ...}}"
            )))
        }
        other => Err(ApiError::bad(format!(
            "query must be a vector, a point id or a query object, got {other}"
        ))),
    }
}

/// Where the example ids are read from: a collection and the vector of it (Qdrant's
/// `lookup_from`; by default the queried collection and the vector the query uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup<'a> {
    /// The collection.
    pub collection: &'a str,
    /// The named vector read (`None`: the unnamed one, or the only one).
    pub vector: Option<&'a str>,
}

/// `lookup_from` of a query on `queried` that uses the vector `using`.
pub fn lookup_collection<'a>(
    lookup_from: Option<&'a Value>,
    queried: &'a str,
    using: Option<&'a str>,
) -> Result<Lookup<'a>, ApiError> {
    let Some(l) = lookup_from.filter(|v| !v.is_null()) else {
        return Ok(Lookup {
            collection: queried,
            vector: using,
        });
    };
    let vector = match l.get("vector") {
        None | Some(Value::Null) => using,
        Some(Value::String(v)) => Some(v.as_str()),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "lookup_from.vector must be a vector name, got {other}"
            )));
        }
    };
    let collection = l
        .get("collection")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("lookup_from.collection must be a collection name"))?;
    Ok(Lookup { collection, vector })
}

/// The query vector of `examples` and the points to leave out of the answer: Qdrant's average
/// vector, `avg(positive) + (avg(positive) - avg(negative))` (just `avg(positive)` without
/// negatives), over vectors normalised first when the metric is cosine. Stored examples are read
/// from `lookup`; they are left out only when `lookup` is the queried collection.
pub async fn resolve(
    st: &AppState,
    queried: &str,
    lookup: &Lookup<'_>,
    examples: &Examples,
    searched: &CollectionConfig,
    read: &ReadOptions,
) -> Result<(Vec<f32>, Vec<PointId>), ApiError> {
    let (metric, dim) = (searched.metric(), searched.dim());
    let from = VectorLayout::of(st, lookup.collection)?;
    let lane = from.lane_of(lookup.vector)?;
    let ids: Vec<PointId> = examples
        .positive
        .iter()
        .chain(&examples.negative)
        .filter_map(|e| match e {
            Example::Point(id) => Some(*id),
            Example::Vector(_) => None,
        })
        .collect();
    let stored = if ids.is_empty() {
        Vec::new()
    } else {
        st.router
            .get(lookup.collection, &ids, false, true, read)
            .await?
            .value
    };
    let vector_of = |e: &Example, what: &str| -> Result<Vec<f32>, ApiError> {
        let mut v = match e {
            Example::Vector(v) => parse::vector(v, dim, what)?,
            Example::Point(id) => {
                let record = stored.iter().find(|r| r.id == *id).ok_or_else(|| {
                    ApiError::PointNotFound(format!(
                        "{} in collection {}",
                        id.to_json(),
                        lookup.collection
                    ))
                })?;
                // A point whose vector was deleted is no example of it.
                record
                    .vector
                    .as_deref()
                    .and_then(|v| from.unpack(v, lane))
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "{what}: point {} has no vector {:?}",
                            id.to_json(),
                            from.using(lane).unwrap_or_default()
                        ))
                    })?
            }
        };
        if v.len() != dim {
            return Err(ApiError::bad(format!(
                "{what}: the example has {} dimensions, the collection {dim}",
                v.len()
            )));
        }
        if metric == Metric::Cosine {
            distance::normalize(&mut v);
        }
        Ok(v)
    };
    let mean = |list: &[Example], what: &str| -> Result<Option<Vec<f32>>, ApiError> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut sum = vec![0f32; dim];
        for (i, e) in list.iter().enumerate() {
            for (s, x) in sum.iter_mut().zip(vector_of(e, &format!("{what}[{i}]"))?) {
                *s += x;
            }
        }
        let n = list.len() as f32;
        Ok(Some(sum.into_iter().map(|s| s / n).collect()))
    };
    let positive = mean(&examples.positive, "positive")?
        .ok_or_else(|| ApiError::bad("a query by example needs at least one positive example"))?;
    let query = match mean(&examples.negative, "negative")? {
        None => positive,
        Some(negative) => positive
            .iter()
            .zip(&negative)
            .map(|(p, n)| p + (p - n))
            .collect(),
    };
    let exclude = if lookup.collection == queried {
        ids
    } else {
        Vec::new()
    };
    Ok((query, exclude))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_recommendations_are_read_and_other_kinds_named() {
        assert_eq!(
            parse_query(&json!(7)).unwrap().positive,
            vec![Example::Point(PointId::Num(7))]
        );
        let r = parse_query(&json!({"recommend": {"positive": [1, [0.5, 1.0]], "negative": [2]}}))
            .unwrap();
        assert_eq!(r.positive.len(), 2);
        assert_eq!(r.negative, vec![Example::Point(PointId::Num(2))]);
        for (q, needle) in [
            (
                json!({"recommend": {"positive": [1], "strategy": "best_score"}}),
                "best_score",
            ),
            (json!({"recommend": {"negative": [1]}}), "positive"),
            (json!({"discover": {"target": 1}}), "discover"),
            (
                json!({"recommend": {"positive": [true]}}),
                "recommend.positive[0]",
            ),
            (json!(true), "query must be"),
        ] {
            match parse_query(&q) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{q}: expected a 400 naming {needle}, got {other:?}"),
            }
        }
    }

    #[test]
    fn lookup_from_names_a_collection_and_its_vector() {
        let at = |collection, vector| Lookup { collection, vector };
        assert_eq!(lookup_collection(None, "c", None).unwrap(), at("c", None));
        assert_eq!(
            lookup_collection(None, "c", Some("img")).unwrap(),
            at("c", Some("img"))
        );
        assert_eq!(
            lookup_collection(Some(&json!({"collection": "d"})), "c", Some("img")).unwrap(),
            at("d", Some("img"))
        );
        assert_eq!(
            lookup_collection(
                Some(&json!({"collection": "d", "vector": "txt"})),
                "c",
                None
            )
            .unwrap(),
            at("d", Some("txt"))
        );
        assert!(lookup_collection(Some(&json!({"vector": ""})), "c", None).is_err());
        assert!(
            lookup_collection(Some(&json!({"collection": "d", "vector": 3})), "c", None).is_err()
        );
    }
}
