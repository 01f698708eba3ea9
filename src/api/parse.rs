//! Hand-checked parts of request bodies: ids, vectors, payloads, payload selectors.
//! Each error names the offending item so a client can fix its request.

use super::error::ApiError;
use super::types::{QueryInput, QueryRequest, VectorInput};
use crate::shard::{Payload, PointId};
use serde_json::Value;

/// A point id from JSON.
pub fn id(v: &Value) -> Result<PointId, ApiError> {
    PointId::from_json(v).map_err(|e| ApiError::bad(e.to_string()))
}

/// Ids from JSON.
pub fn ids(vs: &[Value]) -> Result<Vec<PointId>, ApiError> {
    vs.iter().map(id).collect()
}

/// A dense vector from a request: a list of finite numbers of the collection's dimension.
/// `what` names the vector in errors (e.g. "point 3").
pub fn vector(v: &VectorInput, dim: usize, what: &str) -> Result<Vec<f32>, ApiError> {
    match v {
        VectorInput::Dense(d) if d.len() == dim => Ok(d.clone()),
        VectorInput::Dense(d) => Err(ApiError::bad(format!(
            "{what}: wrong vector dimension: expected {dim}, got {}",
            d.len()
        ))),
        // Qdrant's named-vector form with the unnamed (default) vector only.
        VectorInput::Named(entries) if entries.len() == 1 && entries[0].0.is_empty() => {
            vector(&entries[0].1, dim, what)
        }
        VectorInput::Named(_) => Err(ApiError::bad(format!(
            "{what}: the vector must be a list of {dim} numbers (the collection has one unnamed vector)"
        ))),
        VectorInput::Other(v) => vector_json(v, dim, what),
    }
}

/// [`vector`] of a vector that was not a plain list of `f32`s: says what is wrong with it.
fn vector_json(v: &Value, dim: usize, what: &str) -> Result<Vec<f32>, ApiError> {
    let list = match v {
        Value::Array(a) => a,
        // Qdrant's named-vector form with the unnamed (default) vector only.
        Value::Object(m) if m.len() == 1 && m.contains_key("") => {
            return vector_json(&m[""], dim, what);
        }
        _ => {
            return Err(ApiError::bad(format!(
                "{what}: the vector must be a list of {dim} numbers (named vectors are not supported)"
            )));
        }
    };
    if list.len() != dim {
        return Err(ApiError::bad(format!(
            "{what}: wrong vector dimension: expected {dim}, got {}",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(dim);
    for (i, x) in list.iter().enumerate() {
        let f = x
            .as_f64()
            .ok_or_else(|| ApiError::bad(format!("{what}: component {i} is {x}, not a number")))?;
        let f32v = f as f32;
        if !f32v.is_finite() {
            return Err(ApiError::bad(format!(
                "{what}: component {i} ({x}) is not a finite 32-bit float"
            )));
        }
        out.push(f32v);
    }
    Ok(out)
}

/// What every universal query must be: single-stage (`using` is checked against the
/// collection's vectors where the query is prepared).
pub fn query_shape(q: &QueryRequest) -> Result<(), ApiError> {
    if q.prefetch.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(ApiError::bad(
            "prefetch (multi-stage queries) is not supported",
        ));
    }
    Ok(())
}

/// The vector of a universal query: a bare vector or `{"nearest": vector}` (a query by example
/// is [`super::examples`]'s). Multi-stage queries are refused.
pub fn query_vector(q: &QueryRequest) -> Result<&VectorInput, ApiError> {
    query_shape(q)?;
    match &q.query {
        Some(QueryInput::Vector(v) | QueryInput::Nearest(v)) => Ok(v),
        Some(QueryInput::Other(_)) => Err(ApiError::bad(
            "query must be a vector or {\"nearest\": vector} here; queries by example are resolved first",
        )),
        None => Err(ApiError::bad(
            "missing `query` (queries without a vector are not supported)",
        )),
    }
}

/// A payload from JSON: an object, or null/absent.
pub fn payload(v: Option<&Value>, what: &str) -> Result<Option<Payload>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(other) => Err(ApiError::bad(format!(
            "{what}: payload must be a JSON object, got {other}"
        ))),
    }
}

/// Which payload keys to return.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSelector {
    /// None.
    Nothing,
    /// All keys.
    All,
    /// Only these keys.
    Include(Vec<String>),
    /// All but these keys.
    Exclude(Vec<String>),
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Reads `with_payload`: bool, list of keys, or `{"include"|"exclude": [...]}`.
pub fn with_payload(v: Option<&Value>, default: bool) -> Result<PayloadSelector, ApiError> {
    let bad = || {
        ApiError::bad(
            "with_payload must be a bool, a list of keys, or {\"include\"|\"exclude\": [keys]}",
        )
    };
    Ok(match v {
        None | Some(Value::Null) => {
            if default {
                PayloadSelector::All
            } else {
                PayloadSelector::Nothing
            }
        }
        Some(Value::Bool(true)) => PayloadSelector::All,
        Some(Value::Bool(false)) => PayloadSelector::Nothing,
        Some(v @ Value::Array(_)) => PayloadSelector::Include(strings(v).ok_or_else(bad)?),
        Some(Value::Object(m)) => match (m.get("include"), m.get("exclude")) {
            (Some(i), None) => PayloadSelector::Include(strings(i).ok_or_else(bad)?),
            (None, Some(e)) => PayloadSelector::Exclude(strings(e).ok_or_else(bad)?),
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    })
}

impl PayloadSelector {
    /// Whether any payload is returned.
    pub fn wants(&self) -> bool {
        *self != PayloadSelector::Nothing
    }

    /// The selected part of a payload (an empty object when the point has none).
    pub fn apply(&self, p: Option<&Payload>) -> Option<Value> {
        let empty = Payload::new();
        let p = p.unwrap_or(&empty);
        match self {
            PayloadSelector::Nothing => None,
            PayloadSelector::All => Some(Value::Object(p.clone())),
            PayloadSelector::Include(keys) => Some(Value::Object(
                p.iter()
                    .filter(|(k, _)| keys.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
            PayloadSelector::Exclude(keys) => Some(Value::Object(
                p.iter()
                    .filter(|(k, _)| !keys.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
        }
    }
}

/// Reads `with_vector`/`with_vectors`: a bool, or a list of vector names (only the unnamed one
/// exists, so a non-empty list means yes).
pub fn with_vector(v: Option<&Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Array(a)) => Ok(!a.is_empty()),
        Some(_) => Err(ApiError::bad(
            "with_vector must be a bool or a list of vector names",
        )),
    }
}

/// Qdrant's scroll `order_by`: a key, or `{"key", "direction": "asc"|"desc", "start_from"}` with
/// a number or an RFC 3339 date-time (microseconds since the epoch, as the shard orders them).
pub fn order_by(v: &Value) -> Result<crate::router::rpc::WireOrderBy, ApiError> {
    let (key, direction, start) = match v {
        Value::String(k) => (k.clone(), None, None),
        Value::Object(o) => {
            if let Some(k) = o
                .keys()
                .find(|k| !matches!(k.as_str(), "key" | "direction" | "start_from"))
            {
                return Err(ApiError::bad(format!("unknown `order_by` field `{k}`")));
            }
            let key = o
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad("`order_by.key` must be a string"))?;
            (key.to_owned(), o.get("direction"), o.get("start_from"))
        }
        other => {
            return Err(ApiError::bad(format!(
                "`order_by` must be a key or an object, got {other}"
            )));
        }
    };
    if key.is_empty() {
        return Err(ApiError::bad("`order_by.key` must not be empty"));
    }
    let descending = match direction {
        None | Some(Value::Null) => false,
        Some(Value::String(d)) if d.eq_ignore_ascii_case("asc") => false,
        Some(Value::String(d)) if d.eq_ignore_ascii_case("desc") => true,
        Some(d) => {
            return Err(ApiError::bad(format!(
                "`order_by.direction` must be \"asc\" or \"desc\", got {d}"
            )));
        }
    };
    let start_from = match start {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(t)) => Some(crate::shard::parse_datetime(t).ok_or_else(|| {
            ApiError::bad(format!(
                "`order_by.start_from` {t:?} is not an RFC 3339 date-time"
            ))
        })? as f64),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "`order_by.start_from` must be a number or a date-time, got {other}"
            )));
        }
    };
    Ok(crate::router::rpc::WireOrderBy {
        key,
        descending,
        start_from,
    })
}
