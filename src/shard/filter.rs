//! Qdrant-style payload filters: the JSON shape clients send, and its checked, compiled form.
//!
//! A [`Filter`] is parsed from JSON exactly as Qdrant writes it
//! (`{"must"|"should"|"must_not": [condition, ...]}`), then [`Filter::compile`] checks every
//! condition once (a match value must be a keyword, an integer or a bool; `any` lists must not mix
//! kinds; a range needs at least one bound) so that evaluation per row never fails. The shard turns a
//! compiled filter into a [`crate::index::RowSet`] per segment and hands it to the index, so
//! filtered searches return `limit` hits whenever that many points match.
//!
//! Supported conditions: `match` (`value`, `any`, `except`), `range` (`gt`, `gte`, `lt`, `lte`),
//! `has_id`, `is_empty`, `is_null`, and a nested filter as a condition. Keys may be dotted paths
//! into nested objects (`"address.city"`); a condition on an array payload holds when any element
//! satisfies it, as in Qdrant.

use super::point::{Payload, PointId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use utoipa::ToSchema;

/// A payload filter as Qdrant writes it. Every list may also be a single condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Filter {
    /// Every condition must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Condition>>)]
    pub must: Option<OneOrMany>,
    /// At least one condition must hold (when the list is not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Condition>>)]
    pub should: Option<OneOrMany>,
    /// No condition may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Condition>>)]
    pub must_not: Option<OneOrMany>,
}

/// One condition or a list of them (Qdrant accepts both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A list of conditions.
    Many(Vec<Condition>),
    /// A single condition.
    One(Box<Condition>),
}

impl OneOrMany {
    fn as_slice(&self) -> &[Condition] {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(c) => std::slice::from_ref(c),
        }
    }
}

/// One filter condition. Exactly one kind must be given: a field condition (`key` with `match` or
/// `range`), `has_id`, `is_empty`, `is_null`, or a nested filter (`must`/`should`/`must_not`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    /// The payload key (a dotted path) a field condition reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Match the field against a value, any of a list, or none of a list.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Match>,
    /// Numeric range on the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    /// The point id is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub has_id: Option<Vec<PointId>>,
    /// The field is missing, null or an empty array: `{"key": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_empty: Option<KeyRef>,
    /// The field is present and null: `{"key": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_null: Option<KeyRef>,
    /// Nested filter: all must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Condition>>, no_recursion)]
    pub must: Option<OneOrMany>,
    /// Nested filter: at least one must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Condition>>, no_recursion)]
    pub should: Option<OneOrMany>,
    /// Nested filter: none may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Condition>>, no_recursion)]
    pub must_not: Option<OneOrMany>,
}

/// `{"key": "..."}`, as `is_empty` and `is_null` take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyRef {
    /// The payload key.
    pub key: String,
}

/// A `match` clause: exactly one of `value`, `any`, `except`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Match {
    /// The field equals this keyword, integer or bool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    /// The field equals one of these keywords or integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub any: Option<Vec<Value>>,
    /// The field equals none of these keywords or integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub except: Option<Vec<Value>>,
}

/// A numeric range; at least one bound must be given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Range {
    /// Strictly greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// Strictly less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// A condition names no kind, or several.
    #[error(
        "invalid filter condition: give exactly one of key+match, key+range, has_id, is_empty, is_null or a nested filter"
    )]
    Shape,
    /// A match value is not a keyword, an integer or a bool.
    #[error("invalid match value {0} for key `{1}`: expected a string, an integer or a bool")]
    MatchValue(String, String),
    /// An `any`/`except` list mixes kinds or holds something else than strings or integers.
    #[error("invalid match list for key `{0}`: expected only strings or only integers, got {1}")]
    MatchList(String, String),
    /// A range has no bound, or a bound that is not finite.
    #[error("invalid range for key `{0}`: give at least one finite bound of gt, gte, lt, lte")]
    Range(String),
    /// The key is empty.
    #[error("invalid filter: empty key")]
    EmptyKey,
}

/// A checked filter, ready to evaluate per point.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    must: Vec<Cond>,
    should: Vec<Cond>,
    must_not: Vec<Cond>,
}

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Keyword(String),
    Integer(i64),
    Bool(bool),
}

#[derive(Debug, Clone)]
enum Cond {
    Match(Vec<String>, Scalar),
    Any(Vec<String>, Vec<Scalar>),
    Except(Vec<String>, Vec<Scalar>),
    Range(Vec<String>, Range),
    HasId(HashSet<PointId>),
    IsEmpty(Vec<String>),
    IsNull(Vec<String>),
    Nested(Box<CompiledFilter>),
}

fn path(key: &str) -> Result<Vec<String>, FilterError> {
    if key.is_empty() {
        return Err(FilterError::EmptyKey);
    }
    Ok(key.split('.').map(str::to_owned).collect())
}

fn scalar(v: &Value, key: &str) -> Result<Scalar, FilterError> {
    match v {
        Value::String(s) => Ok(Scalar::Keyword(s.clone())),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(Scalar::Integer)
            .ok_or_else(|| FilterError::MatchValue(v.to_string(), key.to_owned())),
        _ => Err(FilterError::MatchValue(v.to_string(), key.to_owned())),
    }
}

fn scalar_list(vs: &[Value], key: &str) -> Result<Vec<Scalar>, FilterError> {
    let all_str = vs.iter().all(Value::is_string);
    let all_int = vs.iter().all(|v| v.as_i64().is_some());
    if !(all_str || all_int) {
        let shown = serde_json::to_string(vs).unwrap_or_default();
        return Err(FilterError::MatchList(key.to_owned(), shown));
    }
    vs.iter().map(|v| scalar(v, key)).collect()
}

impl Filter {
    /// Checks every condition and compiles the filter.
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        compile_lists(&self.must, &self.should, &self.must_not)
    }
}

fn compile_lists(
    must: &Option<OneOrMany>,
    should: &Option<OneOrMany>,
    must_not: &Option<OneOrMany>,
) -> Result<CompiledFilter, FilterError> {
    let list = |l: &Option<OneOrMany>| -> Result<Vec<Cond>, FilterError> {
        l.as_ref()
            .map(|l| l.as_slice().iter().map(Condition::compile).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    Ok(CompiledFilter {
        must: list(must)?,
        should: list(should)?,
        must_not: list(must_not)?,
    })
}

impl Condition {
    fn compile(&self) -> Result<Cond, FilterError> {
        let nested = self.must.is_some() || self.should.is_some() || self.must_not.is_some();
        let kinds = [
            self.key.is_some(),
            self.has_id.is_some(),
            self.is_empty.is_some(),
            self.is_null.is_some(),
            nested,
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(FilterError::Shape);
        }
        if let Some(key) = &self.key {
            let p = path(key)?;
            return match (&self.r#match, &self.range) {
                (Some(m), None) => match (&m.value, &m.any, &m.except) {
                    (Some(v), None, None) => Ok(Cond::Match(p, scalar(v, key)?)),
                    (None, Some(vs), None) => Ok(Cond::Any(p, scalar_list(vs, key)?)),
                    (None, None, Some(vs)) => Ok(Cond::Except(p, scalar_list(vs, key)?)),
                    _ => Err(FilterError::Shape),
                },
                (None, Some(r)) => {
                    let bounds = [r.gt, r.gte, r.lt, r.lte];
                    if bounds.iter().all(Option::is_none)
                        || bounds.iter().flatten().any(|b| !b.is_finite())
                    {
                        return Err(FilterError::Range(key.clone()));
                    }
                    Ok(Cond::Range(p, *r))
                }
                _ => Err(FilterError::Shape),
            };
        }
        if let Some(ids) = &self.has_id {
            return Ok(Cond::HasId(ids.iter().copied().collect()));
        }
        if let Some(k) = &self.is_empty {
            return Ok(Cond::IsEmpty(path(&k.key)?));
        }
        if let Some(k) = &self.is_null {
            return Ok(Cond::IsNull(path(&k.key)?));
        }
        Ok(Cond::Nested(Box::new(compile_lists(
            &self.must,
            &self.should,
            &self.must_not,
        )?)))
    }
}

fn lookup<'a>(payload: Option<&'a Payload>, path: &[String]) -> Option<&'a Value> {
    let payload = payload?;
    if path.len() > 1 {
        // A key that itself contains dots wins over the nested reading.
        if let Some(v) = payload.get(&path.join(".")) {
            return Some(v);
        }
    }
    let (first, rest) = path.split_first()?;
    let mut v = payload.get(first)?;
    for p in rest {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// The field's values: an array's elements, or the single value.
fn values(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    }
}

fn scalar_eq(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Keyword(a), Value::String(b)) => a == b,
        (Scalar::Integer(a), Value::Number(b)) => b.as_i64() == Some(*a),
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

fn in_range(r: &Range, x: f64) -> bool {
    r.gt.is_none_or(|b| x > b)
        && r.gte.is_none_or(|b| x >= b)
        && r.lt.is_none_or(|b| x < b)
        && r.lte.is_none_or(|b| x <= b)
}

impl CompiledFilter {
    /// Whether the point passes the filter.
    pub fn matches(&self, id: &PointId, payload: Option<&Payload>) -> bool {
        self.must.iter().all(|c| c.holds(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.holds(id, payload)))
            && !self.must_not.iter().any(|c| c.holds(id, payload))
    }

    /// Whether the filter lets every point through (so that no row set needs building).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }
}

impl Cond {
    fn holds(&self, id: &PointId, payload: Option<&Payload>) -> bool {
        match self {
            Cond::Match(p, s) => {
                lookup(payload, p).is_some_and(|v| values(v).iter().any(|x| scalar_eq(s, x)))
            }
            Cond::Any(p, ss) => lookup(payload, p)
                .is_some_and(|v| values(v).iter().any(|x| ss.iter().any(|s| scalar_eq(s, x)))),
            Cond::Except(p, ss) => lookup(payload, p).is_some_and(|v| {
                values(v)
                    .iter()
                    .any(|x| !x.is_null() && !ss.iter().any(|s| scalar_eq(s, x)))
            }),
            Cond::Range(p, r) => lookup(payload, p).is_some_and(|v| {
                values(v)
                    .iter()
                    .any(|x| x.as_f64().is_some_and(|x| in_range(r, x)))
            }),
            Cond::HasId(ids) => ids.contains(id),
            Cond::IsEmpty(p) => match lookup(payload, p) {
                None | Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            },
            Cond::IsNull(p) => matches!(lookup(payload, p), Some(Value::Null)),
            Cond::Nested(f) => f.matches(id, payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Result<CompiledFilter, FilterError> {
        serde_json::from_value::<Filter>(v).unwrap().compile()
    }

    fn pl(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn evaluates_qdrant_conditions() {
        let p = pl(json!({"city": "London", "n": 5, "f": 2.5, "ok": true,
                          "tags": ["a", "b"], "addr": {"zip": 123}, "nul": null}));
        let id = PointId::Num(1);
        let yes = |f: Value| assert!(compile(f.clone()).unwrap().matches(&id, Some(&p)), "{f}");
        let no = |f: Value| assert!(!compile(f.clone()).unwrap().matches(&id, Some(&p)), "{f}");
        yes(json!({"must": [{"key": "city", "match": {"value": "London"}}]}));
        no(json!({"must": [{"key": "city", "match": {"value": "Paris"}}]}));
        yes(json!({"must": {"key": "n", "match": {"value": 5}}}));
        yes(json!({"must": [{"key": "ok", "match": {"value": true}}]}));
        no(json!({"must": [{"key": "ok", "match": {"value": false}}]}));
        yes(json!({"must": [{"key": "tags", "match": {"value": "b"}}]}));
        yes(json!({"must": [{"key": "city", "match": {"any": ["Paris", "London"]}}]}));
        no(json!({"must": [{"key": "city", "match": {"except": ["Paris", "London"]}}]}));
        yes(json!({"must": [{"key": "f", "range": {"gt": 2.0, "lte": 2.5}}]}));
        no(json!({"must": [{"key": "f", "range": {"lt": 2.5}}]}));
        yes(json!({"must": [{"key": "n", "range": {"gte": 5}}]}));
        yes(json!({"must": [{"key": "addr.zip", "match": {"value": 123}}]}));
        yes(
            json!({"should": [{"key": "n", "match": {"value": 1}}, {"key": "n", "match": {"value": 5}}]}),
        );
        no(json!({"should": [{"key": "n", "match": {"value": 1}}]}));
        no(json!({"must_not": [{"key": "n", "match": {"value": 5}}]}));
        yes(json!({"must": [{"has_id": [1, 2]}]}));
        no(json!({"must": [{"has_id": [2]}]}));
        yes(json!({"must": [{"is_empty": {"key": "missing"}}, {"is_null": {"key": "nul"}}]}));
        yes(json!({"must": [{"must_not": [{"key": "n", "match": {"value": 4}}]}]}));
        yes(json!({}));
        // A missing field never matches a value.
        assert!(
            !compile(json!({"must": [{"key": "n", "match": {"value": 5}}]}))
                .unwrap()
                .matches(&id, None)
        );
    }

    #[test]
    fn refuses_wrong_types() {
        for bad in [
            json!({"must": [{"key": "n", "match": {"value": 1.5}}]}),
            json!({"must": [{"key": "n", "match": {"value": {"a": 1}}}]}),
            json!({"must": [{"key": "n", "match": {"any": ["a", 1]}}]}),
            json!({"must": [{"key": "n", "range": {}}]}),
            json!({"must": [{"key": "n"}]}),
            json!({"must": [{"foo": 1}]}),
            json!({"must": [{"key": "n", "match": {"value": 1}, "has_id": [1]}]}),
        ] {
            assert!(compile(bad.clone()).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<Filter>(json!({"must": [{"key": "n", "range": {"gt": "x"}}]}))
                .is_err()
        );
    }
}
