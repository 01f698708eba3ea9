//! Facet counts (Qdrant's `POST /collections/{name}/facet`): how many live points passing a
//! filter hold each value of an indexed keyword, integer, bool or uuid field. A point counts once per
//! distinct value it holds. Counts come from the payload index's postings (intersected with the
//! rows the filter lets through), so a facet costs a pass over postings, not over payloads; a
//! run of rows whose index is not built yet (a field indexed a moment ago) is read from its
//! payloads instead, with the same meaning. Every shard answers all its values: the router sums
//! them, since a per-shard top-k of counts would not add up to the collection's.

use super::filter::CompiledFilter;
use super::payload_index::{PayloadFieldType, PayloadIndex};
use super::planner;
use super::segment::Segment;
use super::values::JsonPath;
use super::{Shard, ShardError};
use crate::index::RowSet;
use crate::storage::payload_index::PostingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A facet value. The derived order (strings, then integers, then booleans, then UUIDs; each by
/// value) is the tie-break between equal counts. It crosses the internal port inside the
/// router's facet answers: variants are appended, never reordered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FacetValue {
    /// A keyword.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A UUID, as its 128-bit value (answered in its hyphenated form).
    Uuid(u128),
}

impl FacetValue {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        match self {
            FacetValue::Str(s) => Value::String(s.clone()),
            FacetValue::Int(i) => Value::from(*i),
            FacetValue::Bool(b) => Value::Bool(*b),
            FacetValue::Uuid(u) => {
                Value::String(uuid::Uuid::from_u128(*u).hyphenated().to_string())
            }
        }
    }

    fn from_key(k: &PostingKey) -> Option<FacetValue> {
        match k {
            PostingKey::Str(s) => Some(FacetValue::Str(s.clone())),
            PostingKey::Int(i) => Some(FacetValue::Int(*i)),
            PostingKey::Bool(b) => Some(FacetValue::Bool(*b)),
            PostingKey::Uuid(u) => Some(FacetValue::Uuid(*u)),
        }
    }

    fn from_json(kind: PayloadFieldType, v: &Value) -> Option<FacetValue> {
        match (kind, v) {
            (PayloadFieldType::Keyword, Value::String(s)) => Some(FacetValue::Str(s.clone())),
            (PayloadFieldType::Integer, Value::Number(n)) => n.as_i64().map(FacetValue::Int),
            (PayloadFieldType::Bool, Value::Bool(b)) => Some(FacetValue::Bool(*b)),
            (PayloadFieldType::Uuid, Value::String(s)) => uuid::Uuid::parse_str(s)
                .ok()
                .map(|u| FacetValue::Uuid(u.as_u128())),
            _ => None,
        }
    }
}

/// Adds the counts of the rows `base..base + len` of `seg` (a sealed segment's whole index, or
/// one chunk of the mutable segment) that are in `rows`.
#[allow(clippy::too_many_arguments)]
fn count_run(
    index: &PayloadIndex,
    seg: &Segment,
    base: usize,
    len: usize,
    rows: &RowSet,
    path: &JsonPath,
    kind: PayloadFieldType,
    out: &mut BTreeMap<FacetValue, u64>,
) {
    if let Some(field) = index.field(&path.key) {
        for (key, posting) in field.postings() {
            let Some(value) = FacetValue::from_key(key) else {
                continue;
            };
            let n = posting
                .iter()
                .filter(|r| (*r as usize) < len && rows.contains(base + *r as usize))
                .count() as u64;
            if n > 0 {
                *out.entry(value).or_default() += n;
            }
        }
        return;
    }
    for row in (base..base + len).filter(|r| rows.contains(*r)) {
        let payload = seg.body.payload(row).map(|p| &**p);
        let distinct: BTreeSet<FacetValue> = path
            .elements(payload)
            .into_iter()
            .filter_map(|v| FacetValue::from_json(kind, v))
            .collect();
        for v in distinct {
            *out.entry(v).or_default() += 1;
        }
    }
}

impl Shard {
    /// Every value of the indexed field `key` among the live points passing `filter`, with how
    /// many points hold it. Refused unless `key` has a keyword, integer, bool or uuid index
    /// (as in Qdrant, float and datetime fields have no facets: their values rarely repeat).
    pub fn facet(
        &self,
        key: &str,
        filter: Option<&CompiledFilter>,
    ) -> Result<BTreeMap<FacetValue, u64>, ShardError> {
        use PayloadFieldType as T;
        let kind = super::read(&self.inner.state).schema.get(key).copied();
        let kind = match kind {
            Some(k @ (T::Keyword | T::Integer | T::Bool | T::Uuid)) => k,
            _ => {
                return Err(ShardError::Payload(format!(
                    "facet key `{key}` needs a keyword, integer, bool or uuid payload index (create one with PUT /collections/{{name}}/index)"
                )));
            }
        };
        let path = JsonPath::parse(key).ok_or_else(|| {
            ShardError::Payload(format!("facet key `{key}` is not a payload path"))
        })?;
        let mut out = BTreeMap::new();
        for seg in self.view() {
            let rows = planner::allowed(&seg, filter);
            planner::index_runs(&seg, |index, base, len| {
                count_run(index, &seg, base, len, &rows, &path, kind, &mut out);
                Some(())
            });
        }
        Ok(out)
    }
}
