//! Payload indexes: per field, which rows hold which values, so a filter's matching rows come from
//! posting lists instead of a look-up into every point's payload.
//!
//! A [`FieldIndex`] covers the rows of one segment (a sealed segment) or of one chunk of the
//! mutable segment, and reads values exactly as filters do ([`super::values::JsonPath`], arrays
//! flattened), so it can answer a condition only with rows the per-point evaluation would accept:
//! - equality postings ([`RoaringBitmap`]s) per keyword, integer, bool, UUID or text token;
//! - sorted `(value, row)` pairs for ranges over integers, floats and date-times;
//! - `rows`: rows holding at least one value the index took (what `payload_schema` counts);
//! - `other`: rows holding a non-null value the index did not take (a float in an integer index,
//!   a number in a keyword index), which some conditions must still look at;
//! - `dense`: the postings of values held by at least 1/[`DENSE_FRACTION`] of the rows, also as
//!   plain bitsets over the rows. A filter's matching rows are a bitset ([`RowSet`]), and turning
//!   a large posting into one costs a step per member (a 50% posting of 1M rows: 500k steps per
//!   query), where intersecting two bitsets costs a word per 64 rows. Bounded memory: at most
//!   `DENSE_FRACTION` values per field (times values per row) qualify, `rows / 8` bytes each.
//!
//! [`FieldIndex::answer`] turns a condition into an [`Answer`]: rows that surely match, plus rows
//! that may match and must be checked against their payload (a text query's words all occur in
//! the row, but perhaps in different array elements; a UUID spelled in another case). A condition
//! the index cannot answer (a geo radius, an integer match on a keyword index) returns `None` and
//! is evaluated per row. Either way the result is the one the per-point evaluation gives: the
//! planner's tests check index against no index.
//!
//! Indexes live in memory while a segment is used. A sealed segment builds its indexes once, when
//! it is built or compacted (a pass over its payloads, for the schema of that moment), and stores
//! them in its file ([`PayloadIndex::to_stored`], section layout in `storage::payload_index`), so
//! opening it later maps them back ([`PayloadIndex::from_stored`]) instead of reading every
//! payload again. A segment file from before indexes were stored (segment version 1), and a field
//! indexed after the segment was sealed, are built from payloads on load; a stored field the schema
//! no longer has is dropped ([`PayloadIndex::sync`]). The mutable segment's chunks update theirs
//! on every write and are never stored.

use super::filter::{FieldPred, Scalar};
use super::point::Payload;
use super::values::{JsonPath, parse_datetime, tokens};
use crate::index::RowSet;
use crate::storage::payload_index::{PostingKey, StoredField, StoredIndex};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A posting holding at least `1 / DENSE_FRACTION` of a run's rows is also kept as a bitset
/// (see the module doc).
pub(crate) const DENSE_FRACTION: u64 = 32;

/// The kind of a payload index, as Qdrant names it (`field_schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFieldType {
    /// Exact strings: `match` value/any/except.
    Keyword,
    /// Integers: `match` and `range`.
    Integer,
    /// Numbers: `range`.
    Float,
    /// Booleans: `match`.
    Bool,
    /// UUID strings: `match` value/any.
    Uuid,
    /// RFC 3339 date-time strings: `range` with date-time bounds.
    Datetime,
    /// Words of strings: `match` text/phrase.
    Text,
}

impl PayloadFieldType {
    /// The number that stands for the type in a segment file (never renumber: files keep it).
    pub(crate) fn code(self) -> u8 {
        match self {
            PayloadFieldType::Keyword => 0,
            PayloadFieldType::Integer => 1,
            PayloadFieldType::Float => 2,
            PayloadFieldType::Bool => 3,
            PayloadFieldType::Uuid => 4,
            PayloadFieldType::Datetime => 5,
            PayloadFieldType::Text => 6,
        }
    }

    /// The type a segment file's number stands for.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        use PayloadFieldType as T;
        [
            T::Keyword,
            T::Integer,
            T::Float,
            T::Bool,
            T::Uuid,
            T::Datetime,
            T::Text,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }

    /// Reads Qdrant's `field_schema`: a type name, or `{"type": name, ...}` (options other than
    /// `type` are refused by name, since none is implemented).
    pub fn from_schema(v: &Value) -> Result<Self, String> {
        let name = match v {
            Value::String(s) => s.as_str(),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| *k != "type") {
                    return Err(format!(
                        "payload index option `{k}` is not supported (only `type`)"
                    ));
                }
                o.get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "field_schema object needs a string `type`".to_string())?
            }
            other => return Err(format!("field_schema must be a type name, got {other}")),
        };
        serde_json::from_value(Value::String(name.to_owned())).map_err(|_| {
            format!(
                "payload index type {name:?} is not supported: use keyword, integer, float, bool, uuid, datetime or text"
            )
        })
    }
}

/// Rows that surely match a condition, and rows that may match and must be checked.
#[derive(Debug)]
pub(crate) struct Answer {
    pub sure: Sure,
    pub check: RoaringBitmap,
}

/// Rows that surely match: postings, a dense posting's bitset, or the rows of a slice of sorted
/// values (taken as they are, in value order, rather than paying for a bitmap of them).
#[derive(Debug)]
pub(crate) enum Sure {
    Bitmap(RoaringBitmap),
    Rows(Arc<DensePosting>),
    List(Vec<u32>),
}

impl Sure {
    pub fn len(&self) -> u64 {
        match self {
            Sure::Bitmap(b) => b.len(),
            Sure::Rows(d) => d.count,
            Sure::List(l) => l.len() as u64,
        }
    }
}

/// A large posting as a bitset over the rows the index covered when it was made (rows appended
/// later are absent from it, as they are from the posting: adding a row under this value drops
/// the bitset).
#[derive(Debug)]
pub(crate) struct DensePosting {
    pub rows: RowSet,
    pub count: u64,
}

impl Answer {
    /// An upper bound of the matching rows.
    pub fn estimate(&self) -> u64 {
        self.sure.len() + self.check.len()
    }
}

/// A posting's value: the storage layer's key type, so stored postings load without conversion.
type Key = PostingKey;

/// One field's index over a run of rows numbered from 0.
#[derive(Debug, Clone)]
pub(crate) struct FieldIndex {
    kind: PayloadFieldType,
    path: JsonPath,
    eq: HashMap<Key, RoaringBitmap>,
    /// Integer and date-time values (micros), sorted.
    ints: Vec<(i64, u32)>,
    /// Float values, sorted.
    floats: Vec<(f64, u32)>,
    rows: RoaringBitmap,
    other: RoaringBitmap,
    /// The postings of `eq` holding at least 1/[`DENSE_FRACTION`] of the rows, as bitsets.
    dense: HashMap<Key, Arc<DensePosting>>,
}

impl FieldIndex {
    fn new(kind: PayloadFieldType, path: JsonPath) -> Self {
        FieldIndex {
            kind,
            path,
            eq: HashMap::new(),
            ints: Vec::new(),
            floats: Vec::new(),
            rows: RoaringBitmap::new(),
            other: RoaringBitmap::new(),
            dense: HashMap::new(),
        }
    }

    /// Keeps the postings of values held by at least 1/[`DENSE_FRACTION`] of `rows` rows also as
    /// bitsets over those rows (see the module doc).
    fn densify(&mut self, rows: usize) {
        self.dense = self
            .eq
            .iter()
            .filter(|(_, b)| rows > 0 && b.len() * DENSE_FRACTION >= rows as u64)
            .map(|(k, b)| {
                let set = RowSet::from_rows(rows, b.iter().map(|r| r as usize));
                let count = set.count() as u64;
                (k.clone(), Arc::new(DensePosting { rows: set, count }))
            })
            .collect();
    }

    /// Adds `row`'s values; `sorted` keeps range pairs in order (one insert) rather than
    /// appending (bulk builds sort once at the end).
    fn add(&mut self, row: u32, payload: Option<&Payload>, sorted: bool) {
        use PayloadFieldType as T;
        let mut took = false;
        let mut left = false;
        for v in self.path.elements(payload) {
            let mut keys: Vec<Key> = Vec::new();
            let mut int = None;
            let mut float = None;
            match (self.kind, v) {
                (T::Keyword, Value::String(s)) => keys.push(Key::Str(s.clone())),
                (T::Integer, Value::Number(n)) if n.as_i64().is_some() => {
                    let i = n.as_i64().unwrap_or_default();
                    keys.push(Key::Int(i));
                    int = Some(i);
                }
                (T::Float, Value::Number(n)) => float = n.as_f64(),
                (T::Bool, Value::Bool(b)) => keys.push(Key::Bool(*b)),
                (T::Uuid, Value::String(s)) => {
                    if let Ok(u) = uuid::Uuid::parse_str(s) {
                        keys.push(Key::Uuid(u.as_u128()));
                    }
                }
                (T::Datetime, Value::String(s)) => int = parse_datetime(s),
                (T::Text, Value::String(s)) => keys.extend(tokens(s).into_iter().map(Key::Str)),
                _ => {}
            }
            let taken = !keys.is_empty() || int.is_some() || float.is_some();
            for k in keys {
                // The bitset no longer holds every row of the posting.
                self.dense.remove(&k);
                self.eq.entry(k).or_default().insert(row);
            }
            if let Some(i) = int {
                let at = if sorted {
                    self.ints.partition_point(|p| *p < (i, row))
                } else {
                    self.ints.len()
                };
                self.ints.insert(at, (i, row));
            }
            if let Some(f) = float {
                let at = if sorted {
                    self.floats
                        .partition_point(|p| p.0 < f || (p.0 == f && p.1 < row))
                } else {
                    self.floats.len()
                };
                self.floats.insert(at, (f, row));
            }
            took |= taken;
            left |= !taken && !v.is_null();
        }
        if took {
            self.rows.insert(row);
        }
        if left {
            self.other.insert(row);
        }
    }

    /// The index as stored in a segment file (postings in key order).
    fn to_stored(&self, name: &str) -> StoredField {
        let mut postings: Vec<(Key, RoaringBitmap)> = self
            .eq
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        postings.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        StoredField {
            name: name.to_owned(),
            kind: self.kind.code(),
            rows: self.rows.clone(),
            other: self.other.clone(),
            postings,
            ints: self.ints.clone(),
            floats: self.floats.clone(),
        }
    }

    /// An index read from a segment file. The storage decoder has checked bounds and order; this
    /// checks meaning: a known type, a valid path, and only the keys and values that type takes.
    fn from_stored(f: StoredField, rows: usize) -> Result<(String, FieldIndex), String> {
        use PayloadFieldType as T;
        let kind = PayloadFieldType::from_code(f.kind)
            .ok_or_else(|| format!("field {:?}: unknown index type {}", f.name, f.kind))?;
        let path = JsonPath::parse(&f.name)
            .ok_or_else(|| format!("field {:?}: not a payload path", f.name))?;
        let key_fits = |k: &Key| match kind {
            T::Keyword | T::Text => matches!(k, Key::Str(_)),
            T::Integer => matches!(k, Key::Int(_)),
            T::Bool => matches!(k, Key::Bool(_)),
            T::Uuid => matches!(k, Key::Uuid(_)),
            T::Float | T::Datetime => false,
        };
        let ints_fit = matches!(kind, T::Integer | T::Datetime) || f.ints.is_empty();
        let floats_fit = kind == T::Float || f.floats.is_empty();
        if !f.postings.iter().all(|(k, _)| key_fits(k)) || !ints_fit || !floats_fit {
            return Err(format!(
                "field {:?}: values of another type in a {kind:?} index",
                f.name
            ));
        }
        let mut index = FieldIndex {
            kind,
            path,
            eq: f.postings.into_iter().collect(),
            ints: f.ints,
            floats: f.floats,
            rows: f.rows,
            other: f.other,
            dense: HashMap::new(),
        };
        index.densify(rows);
        Ok((f.name, index))
    }

    /// Ends a bulk build over `rows` rows: sorts the range pairs, makes the dense bitsets.
    fn finish_bulk(&mut self, rows: usize) {
        self.ints.sort_unstable();
        self.floats
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        self.densify(rows);
    }

    /// Every value's posting (the rows holding it), in no particular order: what facet
    /// counts are made of.
    pub fn postings(&self) -> impl Iterator<Item = (&Key, &RoaringBitmap)> {
        self.eq.iter()
    }

    /// Rows holding at least one value this index took.
    pub fn rows(&self) -> &RoaringBitmap {
        &self.rows
    }

    /// Rows in sorted order of their values (integer, float or date-time indexes), each
    /// `(value as f64, row)` once per value; `None` for other kinds.
    pub fn ordered(&self) -> Option<Vec<(f64, u32)>> {
        match self.kind {
            PayloadFieldType::Integer | PayloadFieldType::Datetime => {
                Some(self.ints.iter().map(|(i, r)| (*i as f64, *r)).collect())
            }
            PayloadFieldType::Float => Some(self.floats.clone()),
            _ => None,
        }
    }

    /// The rows holding `key`: its bitset when the posting is dense, else the posting.
    fn posting(&self, key: &Key) -> Answer {
        let sure = match self.dense.get(key) {
            Some(d) => Sure::Rows(Arc::clone(d)),
            None => Sure::Bitmap(self.eq.get(key).cloned().unwrap_or_default()),
        };
        Answer {
            sure,
            check: RoaringBitmap::new(),
        }
    }

    fn union<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for k in keys {
            if let Some(b) = self.eq.get(k) {
                out |= b;
            }
        }
        out
    }

    fn int_range(&self, lo: i64, lo_incl: bool, hi: i64, hi_incl: bool) -> Vec<u32> {
        let start = self
            .ints
            .partition_point(|p| if lo_incl { p.0 < lo } else { p.0 <= lo });
        let end = self
            .ints
            .partition_point(|p| if hi_incl { p.0 <= hi } else { p.0 < hi });
        self.ints
            .get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .map(|p| p.1)
            .collect()
    }

    /// The one posting holding exactly the rows `pred` matches, when `pred` is an equality this
    /// index answers that way (a keyword, an integer, a bool); `None` otherwise (UUIDs, whose
    /// postings are checked against the text, lists, ranges, other kinds).
    pub fn posting_key(&self, pred: &FieldPred) -> Option<Key> {
        use PayloadFieldType as T;
        match (self.kind, pred) {
            (T::Keyword, FieldPred::Match(s @ Scalar::Keyword(_)))
            | (T::Integer, FieldPred::Match(s @ Scalar::Integer(_)))
            | (T::Bool, FieldPred::Match(s @ Scalar::Bool(_))) => scalar_key(s),
            _ => None,
        }
    }

    /// How many rows the posting of `key` holds.
    pub fn posting_len(&self, key: &Key) -> usize {
        self.eq.get(key).map_or(0, |b| b.len() as usize)
    }

    /// The rows of `key`'s posting below `rows`, as a set over `rows` rows.
    pub fn posting_rows(&self, key: &Key, rows: usize) -> RowSet {
        match (self.dense.get(key), self.eq.get(key)) {
            (Some(d), _) if d.rows.len() == rows => d.rows.clone(),
            (_, Some(b)) => {
                RowSet::from_rows(rows, b.iter().map(|r| r as usize).take_while(|r| *r < rows))
            }
            _ => RowSet::new(rows),
        }
    }

    /// The rows matching `pred` as far as this index can tell; `None` when it cannot answer.
    pub fn answer(&self, pred: &FieldPred) -> Option<Answer> {
        use PayloadFieldType as T;
        let sure = |sure| {
            Some(Answer {
                sure: Sure::Bitmap(sure),
                check: RoaringBitmap::new(),
            })
        };
        let list = |rows| {
            Some(Answer {
                sure: Sure::List(rows),
                check: RoaringBitmap::new(),
            })
        };
        match (self.kind, pred) {
            (T::Keyword, FieldPred::Match(s @ Scalar::Keyword(_))) => {
                Some(self.posting(&scalar_key(s)?))
            }
            (T::Keyword, FieldPred::Any(ss)) if matches!(ss.first(), Some(Scalar::Keyword(_))) => {
                let keys: Vec<Key> = ss.iter().filter_map(scalar_key).collect();
                sure(self.union(&keys))
            }
            (T::Integer, FieldPred::Match(s @ Scalar::Integer(_)))
            | (T::Bool, FieldPred::Match(s @ Scalar::Bool(_))) => {
                Some(self.posting(&scalar_key(s)?))
            }
            (T::Integer, FieldPred::Any(ss)) if matches!(ss.first(), Some(Scalar::Integer(_))) => {
                let keys: Vec<Key> = ss.iter().filter_map(scalar_key).collect();
                sure(self.union(&keys))
            }
            // Every value not listed, and every value of another kind, passes `except`.
            (T::Keyword, FieldPred::Except(ss))
                if matches!(ss.first(), Some(Scalar::Keyword(_))) =>
            {
                self.except(ss)
            }
            (T::Integer, FieldPred::Except(ss))
                if matches!(ss.first(), Some(Scalar::Integer(_))) =>
            {
                self.except(ss)
            }
            // A UUID may be spelled several ways: its posting is checked against the exact text.
            (T::Uuid, FieldPred::Match(Scalar::Keyword(s))) => Some(self.uuid_answer([s])),
            (T::Uuid, FieldPred::Any(ss)) if matches!(ss.first(), Some(Scalar::Keyword(_))) => {
                Some(self.uuid_answer(ss.iter().filter_map(|s| match s {
                    Scalar::Keyword(k) => Some(k),
                    _ => None,
                })))
            }
            (T::Integer, FieldPred::Range(b)) => {
                // Integers answered exactly; other numbers in the field are checked.
                let lo = match (b.gt, b.gte) {
                    (Some(g), Some(ge)) if g >= ge => (g, false),
                    (_, Some(ge)) => (ge, true),
                    (Some(g), None) => (g, false),
                    (None, None) => (f64::NEG_INFINITY, true),
                };
                let hi = match (b.lt, b.lte) {
                    (Some(l), Some(le)) if l <= le => (l, false),
                    (_, Some(le)) => (le, true),
                    (Some(l), None) => (l, false),
                    (None, None) => (f64::INFINITY, true),
                };
                // Integer bounds equivalent to the float ones.
                let lo_i = if lo.1 {
                    lo.0.ceil()
                } else {
                    lo.0.floor() + 1.0
                };
                let hi_i = if hi.1 {
                    hi.0.floor()
                } else {
                    hi.0.ceil() - 1.0
                };
                let sure_rows = if lo_i > hi_i {
                    Vec::new()
                } else {
                    self.int_range(clamp_i64(lo_i), true, clamp_i64(hi_i), true)
                };
                // Bounds beyond 2^53 compare integers through f64 per row: check those.
                let small = |x: f64| x.is_infinite() || x.abs() < 9.0e15;
                let exact = small(lo_i) && small(hi_i);
                let mut check = self.other.clone();
                if !exact {
                    check |= &self.rows;
                }
                Some(Answer {
                    sure: Sure::List(if exact { sure_rows } else { Vec::new() }),
                    check,
                })
            }
            (T::Float, FieldPred::Range(b)) => {
                let start = match (b.gt, b.gte) {
                    (None, None) => 0,
                    (gt, gte) => {
                        let lo = gt.into_iter().chain(gte).fold(f64::NEG_INFINITY, f64::max);
                        self.floats.partition_point(|p| p.0 < lo)
                    }
                };
                let rows: Vec<u32> = self.floats[start..]
                    .iter()
                    .take_while(|p| b.lt.is_none_or(|l| p.0 < l) && b.lte.is_none_or(|l| p.0 <= l))
                    .filter(|p| b.holds(p.0))
                    .map(|p| p.1)
                    .collect();
                list(rows)
            }
            (T::Datetime, FieldPred::DateRange(b)) => {
                let lo = match (b.gt, b.gte) {
                    (Some(g), Some(ge)) => g.saturating_add(1).max(ge),
                    (Some(g), None) => g.saturating_add(1),
                    (None, Some(ge)) => ge,
                    (None, None) => i64::MIN,
                };
                let hi = match (b.lt, b.lte) {
                    (Some(l), Some(le)) => l.saturating_sub(1).min(le),
                    (Some(l), None) => l.saturating_sub(1),
                    (None, Some(le)) => le,
                    (None, None) => i64::MAX,
                };
                list(if lo > hi {
                    Vec::new()
                } else {
                    self.int_range(lo, true, hi, true)
                })
            }
            (T::Text, FieldPred::Text(words) | FieldPred::Phrase(words)) => {
                let mut check: Option<RoaringBitmap> = None;
                for w in words {
                    let posting = self
                        .eq
                        .get(&Key::Str(w.clone()))
                        .cloned()
                        .unwrap_or_default();
                    check = Some(match check {
                        Some(c) => c & posting,
                        None => posting,
                    });
                }
                Some(Answer {
                    sure: Sure::List(Vec::new()),
                    check: check.unwrap_or_default(),
                })
            }
            _ => None,
        }
    }

    fn except(&self, ss: &[Scalar]) -> Option<Answer> {
        let listed: Vec<Key> = ss.iter().filter_map(scalar_key).collect();
        let mut sure = self.other.clone();
        for (k, b) in &self.eq {
            if !listed.contains(k) {
                sure |= b;
            }
        }
        Some(Answer {
            sure: Sure::Bitmap(sure),
            check: RoaringBitmap::new(),
        })
    }

    fn uuid_answer<'a>(&self, texts: impl IntoIterator<Item = &'a String>) -> Answer {
        let mut check = RoaringBitmap::new();
        let mut unparsed = false;
        for t in texts {
            match uuid::Uuid::parse_str(t) {
                Ok(u) => {
                    if let Some(b) = self.eq.get(&Key::Uuid(u.as_u128())) {
                        check |= b;
                    }
                }
                Err(_) => unparsed = true,
            }
        }
        if unparsed {
            check |= &self.other;
        }
        Answer {
            sure: Sure::List(Vec::new()),
            check,
        }
    }
}

fn clamp_i64(x: f64) -> i64 {
    x.clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

fn scalar_key(s: &Scalar) -> Option<Key> {
    Some(match s {
        Scalar::Keyword(k) => Key::Str(k.clone()),
        Scalar::Integer(i) => Key::Int(*i),
        Scalar::Bool(b) => Key::Bool(*b),
    })
}

/// The payload schema: which fields are indexed, and how.
pub type PayloadSchema = BTreeMap<String, PayloadFieldType>;

/// What `payload_schema` reports for one indexed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayloadFieldInfo {
    /// The index type.
    pub data_type: PayloadFieldType,
    /// Live points holding at least one value of that type in the field.
    pub points: usize,
}

/// The indexes of one run of rows (a sealed segment, or a chunk of the mutable segment), one per
/// field of the schema.
#[derive(Debug, Clone, Default)]
pub(crate) struct PayloadIndex {
    fields: BTreeMap<String, FieldIndex>,
}

impl PayloadIndex {
    /// The field's index, if any.
    pub fn field(&self, key: &str) -> Option<&FieldIndex> {
        self.fields.get(key)
    }

    /// Whether the index has exactly the schema's fields.
    pub fn follows(&self, schema: &PayloadSchema) -> bool {
        self.fields.len() == schema.len()
            && schema
                .iter()
                .all(|(k, t)| self.fields.get(k).is_some_and(|f| f.kind == *t))
    }

    /// Brings the index to `schema`: drops fields no longer in it and builds the missing ones over
    /// `rows` (row `r` has payload `payload(r)`).
    pub fn sync<'a>(
        &mut self,
        schema: &PayloadSchema,
        rows: usize,
        payload: impl Fn(usize) -> Option<&'a Payload>,
    ) {
        self.fields
            .retain(|k, f| schema.get(k).is_some_and(|t| *t == f.kind));
        for (key, kind) in schema {
            if self.fields.contains_key(key) {
                continue;
            }
            let Some(path) = JsonPath::parse(key) else {
                continue;
            };
            let mut f = FieldIndex::new(*kind, path);
            for r in 0..rows {
                f.add(r as u32, payload(r), false);
            }
            f.finish_bulk(rows);
            self.fields.insert(key.clone(), f);
        }
    }

    /// The indexes as stored in the file of a segment of `rows` rows.
    pub fn to_stored(&self, rows: u32) -> StoredIndex {
        StoredIndex {
            rows,
            fields: self
                .fields
                .iter()
                .map(|(name, f)| f.to_stored(name))
                .collect(),
        }
    }

    /// Indexes read from the file of a segment of `rows` rows (see [`FieldIndex::from_stored`]).
    pub fn from_stored(stored: StoredIndex, rows: usize) -> Result<PayloadIndex, String> {
        if stored.rows as usize != rows {
            return Err(format!(
                "payload index covers {} rows, the segment has {rows}",
                stored.rows
            ));
        }
        let mut fields = BTreeMap::new();
        for f in stored.fields {
            let (name, index) = FieldIndex::from_stored(f, rows)?;
            fields.insert(name, index);
        }
        Ok(PayloadIndex { fields })
    }

    /// Indexes a new row (appended at `row`) in every field.
    pub fn add_row(&mut self, row: usize, payload: Option<&Payload>) {
        for f in self.fields.values_mut() {
            f.add(row as u32, payload, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stored index goes back to the same index; one whose keys, pairs or size do not fit its
    /// type or segment is refused by name.
    #[test]
    fn stored_indexes_round_trip_and_mismatches_are_refused() {
        use crate::storage::payload_index::{decode, encode};
        let payloads: Vec<Payload> = (0..50)
            .map(|i| {
                json!({"k": format!("w{}", i % 7), "n": i % 5, "f": i as f64 / 3.0, "t": "fox dog"})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect();
        let schema: PayloadSchema = [
            ("k".to_string(), PayloadFieldType::Keyword),
            ("n".to_string(), PayloadFieldType::Integer),
            ("f".to_string(), PayloadFieldType::Float),
            ("t".to_string(), PayloadFieldType::Text),
        ]
        .into();
        let mut index = PayloadIndex::default();
        index.sync(&schema, 50, |r| payloads.get(r));
        let stored = index.to_stored(50);
        let back = PayloadIndex::from_stored(decode(&encode(&stored)).unwrap(), 50).unwrap();
        assert!(back.follows(&schema));
        assert_eq!(back.to_stored(50), stored);

        assert!(
            PayloadIndex::from_stored(stored.clone(), 49)
                .unwrap_err()
                .contains("50 rows")
        );
        let mut wrong = stored.clone();
        // `f` (the first field) holds float pairs, which a keyword index cannot.
        wrong.fields[0].kind = PayloadFieldType::Keyword.code();
        assert!(PayloadIndex::from_stored(wrong, 50).is_err());
        let mut wrong = stored.clone();
        wrong.fields[1].kind = 99;
        assert!(
            PayloadIndex::from_stored(wrong, 50)
                .unwrap_err()
                .contains("unknown index type 99")
        );
        let mut wrong = stored;
        wrong.fields[2].name = "a..b".into();
        assert!(PayloadIndex::from_stored(wrong, 50).is_err());
    }

    #[test]
    fn field_schema_forms() {
        assert_eq!(
            PayloadFieldType::from_schema(&json!("keyword")),
            Ok(PayloadFieldType::Keyword)
        );
        assert_eq!(
            PayloadFieldType::from_schema(&json!({"type": "datetime"})),
            Ok(PayloadFieldType::Datetime)
        );
        assert!(
            PayloadFieldType::from_schema(&json!("geo"))
                .unwrap_err()
                .contains("\"geo\"")
        );
        assert!(
            PayloadFieldType::from_schema(&json!({"type": "text", "tokenizer": "word"}))
                .unwrap_err()
                .contains("tokenizer")
        );
    }
}
