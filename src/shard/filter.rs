//! Qdrant-style payload filters: the JSON shape clients send, and its checked, compiled form.
//!
//! A [`Filter`] is parsed from JSON exactly as Qdrant writes it
//! (`{"must"|"should"|"must_not": [condition, ...], "min_should": {"conditions": [..],
//! "min_count": n}}`), then [`Filter::compile`] checks every condition once so that evaluation
//! per row never fails. **Nothing is ever silently ignored**: an unknown key anywhere in a filter,
//! a condition naming no kind or several, a value of the wrong type or a malformed bound is
//! refused with a [`FilterError`] that names it.
//!
//! Conditions (every field condition takes a `key`, see [`super::values::JsonPath`] for the
//! `a.b`, `items[].sku` and `a[0]` forms):
//! - `match`: `value` (keyword, integer or bool), `any`, `except`, `text` (every word of the query
//!   is a word of the field: [`super::values::tokens`]), `phrase` (the query's words appear
//!   consecutively, in order);
//! - `range`: `gt`/`gte`/`lt`/`lte`, all numbers, or all RFC 3339 date-times (Qdrant's
//!   `DatetimeRange`, compared as instants in UTC against string values that parse as date-times);
//! - `values_count`: bounds on how many values the key holds (array elements, or 1 for one
//!   non-null value; 0 when missing or null);
//! - `geo_radius`, `geo_bounding_box`, `geo_polygon` on `{"lon", "lat"}` values;
//! - `has_id`, `has_vector` (the router checks the name and gives the condition its lane, and
//!   [`Lanes::resolve_filter`](super::Lanes::resolve_filter) rewrites it into the points that
//!   lack that vector before a filter is compiled; one without a lane, logged before vectors
//!   could be deleted, holds for every point),
//!   `is_empty`, `is_null`, `nested` (`{"key": "items", "filter": {..}}`: the filter must hold for
//!   one array element as a whole), and a filter used as a condition.
//!
//! A condition on an array payload holds when any element satisfies it, as in Qdrant. Evaluation:
//! [`CompiledFilter::matches`] per point; [`super::planner`] evaluates a whole segment at once,
//! through payload indexes where the segment has them, and gives the same answers.

use super::point::{Payload, PointId};
use super::values::{
    GeoPoint, JsonPath, contains_run, elements, in_box, in_ring, parse_datetime, tokens,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use utoipa::ToSchema;

/// Keys given that this build does not know: refused by [`Filter::compile`].
type Unknown = BTreeMap<String, Value>;

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
    /// At least `min_count` of the conditions must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_should: Option<MinShould>,
    /// Anything else: refused by name.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// `min_should`: at least `min_count` of `conditions` hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MinShould {
    /// The conditions counted.
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
    /// How many must hold.
    pub min_count: usize,
}

/// One condition or a list of them (Qdrant accepts both).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A list of conditions.
    Many(Vec<Condition>),
    /// A single condition.
    One(Box<Condition>),
}

/// Parsed by hand so that a bad condition's error says which one it is (serde's untagged enums
/// only say that nothing matched).
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_value(v)
                        .map_err(|e| D::Error::custom(format!("filter condition {i}: {e}")))
                })
                .collect::<Result<_, _>>()
                .map(OneOrMany::Many),
            v @ Value::Object(_) => serde_json::from_value(v)
                .map(|c| OneOrMany::One(Box::new(c)))
                .map_err(|e| D::Error::custom(format!("filter condition: {e}"))),
            other => Err(D::Error::custom(format!(
                "a filter list must be a condition or a list of conditions, got {other}"
            ))),
        }
    }
}

impl OneOrMany {
    fn as_slice(&self) -> &[Condition] {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(c) => std::slice::from_ref(c),
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Condition] {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(c) => std::slice::from_mut(&mut **c),
        }
    }
}

impl Filter {
    /// This filter and `condition`: both must hold.
    pub fn and(self, condition: Condition) -> Filter {
        let this = Condition {
            must: self.must,
            should: self.should,
            must_not: self.must_not,
            min_should: self.min_should,
            ..Condition::default()
        };
        let conditions = if this == Condition::default() {
            vec![condition]
        } else {
            vec![this, condition]
        };
        Filter {
            must: Some(OneOrMany::Many(conditions)),
            unknown: self.unknown,
            ..Filter::default()
        }
    }

    /// Calls `visit` on every condition of the filter, nested ones (in `nested` and in inner
    /// filters) after the condition holding them.
    pub fn visit_conditions(&self, visit: &mut impl FnMut(&Condition)) {
        lists_each(
            &self.must,
            &self.should,
            &self.must_not,
            &self.min_should,
            visit,
        );
    }

    /// Calls `visit` on every condition of the filter, nested ones (in `nested` and in inner
    /// filters) after the condition holding them; `visit` may rewrite a condition in place.
    pub fn visit_conditions_mut(&mut self, visit: &mut impl FnMut(&mut Condition)) {
        lists_mut(
            &mut self.must,
            &mut self.should,
            &mut self.must_not,
            &mut self.min_should,
            visit,
        );
    }
}

fn lists_each(
    must: &Option<OneOrMany>,
    should: &Option<OneOrMany>,
    must_not: &Option<OneOrMany>,
    min_should: &Option<MinShould>,
    visit: &mut impl FnMut(&Condition),
) {
    let lists = [must, should, must_not]
        .into_iter()
        .flatten()
        .flat_map(OneOrMany::as_slice);
    for c in lists.chain(min_should.iter().flat_map(|m| &m.conditions)) {
        visit(c);
        if let Some(n) = &c.nested {
            n.filter.visit_conditions(visit);
        }
        lists_each(&c.must, &c.should, &c.must_not, &c.min_should, visit);
    }
}

fn lists_mut(
    must: &mut Option<OneOrMany>,
    should: &mut Option<OneOrMany>,
    must_not: &mut Option<OneOrMany>,
    min_should: &mut Option<MinShould>,
    visit: &mut impl FnMut(&mut Condition),
) {
    let lists = [must, should, must_not]
        .into_iter()
        .flat_map(|l| l.iter_mut())
        .flat_map(OneOrMany::as_mut_slice);
    let counted = min_should.iter_mut().flat_map(|m| m.conditions.iter_mut());
    for c in lists.chain(counted) {
        visit(c);
        if let Some(n) = &mut c.nested {
            n.filter.visit_conditions_mut(visit);
        }
        lists_mut(
            &mut c.must,
            &mut c.should,
            &mut c.must_not,
            &mut c.min_should,
            visit,
        );
    }
}

/// One filter condition. Exactly one kind must be given: a field condition (`key` with one of
/// `match`, `range`, `values_count`, `geo_radius`, `geo_bounding_box`, `geo_polygon`), `has_id`,
/// `has_vector`, `is_empty`, `is_null`, `nested`, or a filter (`must`/`should`/`must_not`/
/// `min_should`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    /// The payload key a field condition reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Match the field against a value, a list, or text.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Match>,
    /// Numeric or date-time range on the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    /// Bounds on the number of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_count: Option<ValuesCount>,
    /// Within `radius` metres of `center`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_radius: Option<GeoRadius>,
    /// Inside a latitude/longitude box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_bounding_box: Option<GeoBoundingBox>,
    /// Inside a polygon (and outside its holes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_polygon: Option<GeoPolygon>,
    /// The point id is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub has_id: Option<Vec<PointId>>,
    /// The point has this vector (`""`: the unnamed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_vector: Option<String>,
    /// Not for users (the router refuses it in a request): the lane of `has_vector`'s vector,
    /// which the router resolves from the name before the filter goes to the shards, where
    /// [`Lanes::resolve_filter`](super::Lanes::resolve_filter) turns it into the points that
    /// lack that vector. Absent in filters logged before vectors could be deleted, where
    /// `has_vector` holds for every point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub has_vector_lane: Option<u32>,
    /// The field is missing, null or an empty array: `{"key": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_empty: Option<KeyRef>,
    /// The field is present and null: `{"key": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_null: Option<KeyRef>,
    /// A filter that must hold for one element of an array of objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub nested: Option<Nested>,
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
    /// Nested filter: at least `min_count` hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub min_should: Option<MinShould>,
    /// Anything else: refused by name.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// `{"key": "..."}`, as `is_empty` and `is_null` take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyRef {
    /// The payload key.
    pub key: String,
}

/// `nested`: `filter` must hold for one element of the array of objects at `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nested {
    /// The array's key.
    pub key: String,
    /// The filter, with keys relative to an element.
    pub filter: Filter,
}

/// A `match` clause: exactly one of `value`, `any`, `except`, `text`, `phrase`.
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
    /// Every word of this text is a word of the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The words of this text appear in the field consecutively, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
    /// Anything else: refused by name.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// A range; at least one bound, all numbers or all RFC 3339 date-time strings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Range {
    /// Strictly greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub gt: Option<Value>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub gte: Option<Value>,
    /// Strictly less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub lt: Option<Value>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub lte: Option<Value>,
    /// Anything else: refused by name.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Bounds on how many values a key holds; at least one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValuesCount {
    /// Strictly more than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<u64>,
    /// At least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<u64>,
    /// Strictly fewer than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<u64>,
    /// At most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<u64>,
}

/// `geo_radius`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeoRadius {
    /// The centre.
    pub center: GeoPoint,
    /// Metres.
    pub radius: f64,
}

/// `geo_bounding_box`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeoBoundingBox {
    /// North-west corner.
    pub top_left: GeoPoint,
    /// South-east corner.
    pub bottom_right: GeoPoint,
}

/// A closed ring of points (first equals last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeoLineString {
    /// The ring's points.
    pub points: Vec<GeoPoint>,
}

/// `geo_polygon`: inside `exterior` and outside every interior ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeoPolygon {
    /// The outer ring.
    pub exterior: GeoLineString,
    /// Holes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interiors: Option<Vec<GeoLineString>>,
}

/// Why a filter was refused. Every message names the offending key or condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// A condition names no kind, or several.
    #[error(
        "invalid filter condition: give exactly one of key (with match, range, values_count, geo_radius, geo_bounding_box or geo_polygon), has_id, has_vector, is_empty, is_null, nested or a filter (must/should/must_not/min_should){0}"
    )]
    Shape(String),
    /// A match value is not a keyword, an integer or a bool.
    #[error("invalid match value {0} for key `{1}`: expected a string, an integer or a bool")]
    MatchValue(String, String),
    /// An `any`/`except` list mixes kinds or holds something else than strings or integers.
    #[error("invalid match list for key `{0}`: expected only strings or only integers, got {1}")]
    MatchList(String, String),
    /// A range has no bound, or a bound that is not finite or not a date-time.
    #[error(
        "invalid range for key `{0}`: give at least one bound of gt, gte, lt, lte, all finite numbers or all RFC 3339 date-times{1}"
    )]
    Range(String, String),
    /// The key is empty or malformed.
    #[error("invalid filter key {0:?}: expected dotted names, with [] or [n] to reach into arrays")]
    Key(String),
    /// A key this build does not know.
    #[error("unknown field `{field}` in {place}: not a Qdrant filter field shoal knows")]
    Unknown {
        /// The key given.
        field: String,
        /// Where it was.
        place: &'static str,
    },
    /// Any other invalid condition, named.
    #[error("invalid `{0}` condition: {1}")]
    Invalid(&'static str, String),
}

/// A checked filter, ready to evaluate per point or per segment.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    pub(crate) must: Vec<Cond>,
    pub(crate) should: Vec<Cond>,
    pub(crate) must_not: Vec<Cond>,
    /// `(conditions, min_count)`.
    pub(crate) min_should: Option<(Vec<Cond>, usize)>,
}

/// A match operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Keyword(String),
    Integer(i64),
    Bool(bool),
}

/// Inclusive-or-exclusive bounds on a number, as given.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Bounds<T> {
    pub gt: Option<T>,
    pub gte: Option<T>,
    pub lt: Option<T>,
    pub lte: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub fn holds(&self, x: T) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

/// What a field condition asks of the field's values.
#[derive(Debug, Clone)]
pub(crate) enum FieldPred {
    Match(Scalar),
    Any(Vec<Scalar>),
    Except(Vec<Scalar>),
    /// Every token, in one string value.
    Text(Vec<String>),
    /// The tokens as a contiguous run of one string value.
    Phrase(Vec<String>),
    Range(Bounds<f64>),
    /// Microseconds since the epoch, UTC.
    DateRange(Bounds<i64>),
    ValuesCount(Bounds<u64>),
    GeoRadius(GeoPoint, f64),
    GeoBox(GeoPoint, GeoPoint),
    GeoPolygon(Vec<GeoPoint>, Vec<Vec<GeoPoint>>),
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Field(JsonPath, FieldPred),
    HasId(HashSet<PointId>),
    /// Holds for every point (`has_vector` of the unnamed vector).
    Always,
    IsEmpty(JsonPath),
    IsNull(JsonPath),
    Nested(JsonPath, Box<CompiledFilter>),
    Filter(Box<CompiledFilter>),
}

fn path(key: &str) -> Result<JsonPath, FilterError> {
    JsonPath::parse(key).ok_or_else(|| FilterError::Key(key.to_owned()))
}

fn no_unknown(unknown: &Unknown, place: &'static str) -> Result<(), FilterError> {
    match unknown.keys().next() {
        Some(k) => Err(FilterError::Unknown {
            field: k.clone(),
            place,
        }),
        None => Ok(()),
    }
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

fn range(r: &Range, key: &str) -> Result<FieldPred, FilterError> {
    no_unknown(&r.unknown, "range")?;
    let bad = |why: String| FilterError::Range(key.to_owned(), why);
    let given: Vec<&Value> = [&r.gt, &r.gte, &r.lt, &r.lte]
        .into_iter()
        .flatten()
        .collect();
    if given.is_empty() {
        return Err(bad(String::new()));
    }
    if given.iter().all(|v| v.is_number()) {
        let num = |b: &Option<Value>| -> Result<Option<f64>, FilterError> {
            match b.as_ref().and_then(Value::as_f64) {
                Some(x) if !x.is_finite() => Err(bad(format!(": {x} is not finite"))),
                x => Ok(x),
            }
        };
        return Ok(FieldPred::Range(Bounds {
            gt: num(&r.gt)?,
            gte: num(&r.gte)?,
            lt: num(&r.lt)?,
            lte: num(&r.lte)?,
        }));
    }
    let date = |b: &Option<Value>| -> Result<Option<i64>, FilterError> {
        match b {
            None => Ok(None),
            Some(Value::String(s)) => parse_datetime(s)
                .map(Some)
                .ok_or_else(|| bad(format!(": {s:?} is not an RFC 3339 date-time"))),
            Some(v) => Err(bad(format!(": {v} mixes numbers and date-times"))),
        }
    };
    Ok(FieldPred::DateRange(Bounds {
        gt: date(&r.gt)?,
        gte: date(&r.gte)?,
        lt: date(&r.lt)?,
        lte: date(&r.lte)?,
    }))
}

fn geo(p: &GeoPoint, what: &'static str) -> Result<GeoPoint, FilterError> {
    if p.is_valid() {
        Ok(*p)
    } else {
        Err(FilterError::Invalid(
            what,
            format!(
                "point (lon {}, lat {}) out of range (lon -180..=180, lat -90..=90)",
                p.lon, p.lat
            ),
        ))
    }
}

fn ring(r: &GeoLineString) -> Result<Vec<GeoPoint>, FilterError> {
    let pts = r
        .points
        .iter()
        .map(|p| geo(p, "geo_polygon"))
        .collect::<Result<Vec<_>, _>>()?;
    if pts.len() < 4 || pts.first() != pts.last() {
        return Err(FilterError::Invalid(
            "geo_polygon",
            "a ring needs at least 4 points and must be closed (first point = last point)".into(),
        ));
    }
    Ok(pts)
}

impl Filter {
    /// Checks every condition and compiles the filter.
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        no_unknown(&self.unknown, "filter")?;
        compile_lists(&self.must, &self.should, &self.must_not, &self.min_should)
    }
}

fn compile_lists(
    must: &Option<OneOrMany>,
    should: &Option<OneOrMany>,
    must_not: &Option<OneOrMany>,
    min_should: &Option<MinShould>,
) -> Result<CompiledFilter, FilterError> {
    let list = |l: &Option<OneOrMany>| -> Result<Vec<Cond>, FilterError> {
        l.as_ref()
            .map(|l| l.as_slice().iter().map(Condition::compile).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    let min_should = match min_should {
        None => None,
        Some(m) => Some((
            m.conditions
                .iter()
                .map(Condition::compile)
                .collect::<Result<Vec<_>, _>>()?,
            m.min_count,
        )),
    };
    Ok(CompiledFilter {
        must: list(must)?,
        should: list(should)?,
        must_not: list(must_not)?,
        min_should,
    })
}

impl Condition {
    fn compile(&self) -> Result<Cond, FilterError> {
        no_unknown(&self.unknown, "filter condition")?;
        let filter = self.must.is_some()
            || self.should.is_some()
            || self.must_not.is_some()
            || self.min_should.is_some();
        let kinds = [
            ("key", self.key.is_some()),
            ("has_id", self.has_id.is_some()),
            ("has_vector", self.has_vector.is_some()),
            ("is_empty", self.is_empty.is_some()),
            ("is_null", self.is_null.is_some()),
            ("nested", self.nested.is_some()),
            ("a filter", filter),
        ];
        let given: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
        if given.len() != 1 {
            return Err(FilterError::Shape(if given.is_empty() {
                String::new()
            } else {
                format!("; got {}", given.join(" and "))
            }));
        }
        if let Some(key) = &self.key {
            return Ok(Cond::Field(path(key)?, self.field_pred(key)?));
        }
        if let Some(ids) = &self.has_id {
            return Ok(Cond::HasId(ids.iter().copied().collect()));
        }
        if self.has_vector.is_some() {
            if self.has_vector_lane.is_some() {
                // In a request: not a key users write. On a shard: the lanes did not resolve
                // it, and only they know which points lack a vector (guessing would be wrong).
                return Err(FilterError::Invalid(
                    "has_vector",
                    "has_vector_lane is set by the router, never in a request (and resolved by the shard's lanes before a filter is evaluated)".into(),
                ));
            }
            // Logged before vectors could be deleted: every point had every vector.
            return Ok(Cond::Always);
        }
        if let Some(k) = &self.is_empty {
            return Ok(Cond::IsEmpty(path(&k.key)?));
        }
        if let Some(k) = &self.is_null {
            return Ok(Cond::IsNull(path(&k.key)?));
        }
        if let Some(n) = &self.nested {
            let inner = n.filter.compile()?;
            if inner.mentions_point() {
                return Err(FilterError::Invalid(
                    "nested",
                    "has_id and has_vector apply to points, not to array elements".into(),
                ));
            }
            return Ok(Cond::Nested(path(&n.key)?, Box::new(inner)));
        }
        Ok(Cond::Filter(Box::new(compile_lists(
            &self.must,
            &self.should,
            &self.must_not,
            &self.min_should,
        )?)))
    }

    fn field_pred(&self, key: &str) -> Result<FieldPred, FilterError> {
        let kinds = [
            ("match", self.r#match.is_some()),
            ("range", self.range.is_some()),
            ("values_count", self.values_count.is_some()),
            ("geo_radius", self.geo_radius.is_some()),
            ("geo_bounding_box", self.geo_bounding_box.is_some()),
            ("geo_polygon", self.geo_polygon.is_some()),
        ];
        let given: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
        if given.len() != 1 {
            return Err(FilterError::Shape(format!(
                "; key `{key}` needs exactly one of match, range, values_count, geo_radius, geo_bounding_box, geo_polygon{}",
                if given.is_empty() {
                    String::new()
                } else {
                    format!(", got {}", given.join(" and "))
                }
            )));
        }
        if let Some(m) = &self.r#match {
            no_unknown(&m.unknown, "match")?;
            let text = |t: &str, what: &'static str| {
                let words = tokens(t);
                if words.is_empty() {
                    Err(FilterError::Invalid(
                        what,
                        format!("{t:?} for key `{key}` has no word to match"),
                    ))
                } else {
                    Ok(words)
                }
            };
            return match (&m.value, &m.any, &m.except, &m.text, &m.phrase) {
                (Some(v), None, None, None, None) => Ok(FieldPred::Match(scalar(v, key)?)),
                (None, Some(vs), None, None, None) => Ok(FieldPred::Any(scalar_list(vs, key)?)),
                (None, None, Some(vs), None, None) => Ok(FieldPred::Except(scalar_list(vs, key)?)),
                (None, None, None, Some(t), None) => Ok(FieldPred::Text(text(t, "match.text")?)),
                (None, None, None, None, Some(t)) => {
                    Ok(FieldPred::Phrase(text(t, "match.phrase")?))
                }
                _ => Err(FilterError::Invalid(
                    "match",
                    format!("key `{key}`: give exactly one of value, any, except, text, phrase"),
                )),
            };
        }
        if let Some(r) = &self.range {
            return range(r, key);
        }
        if let Some(c) = &self.values_count {
            if [c.gt, c.gte, c.lt, c.lte].iter().all(Option::is_none) {
                return Err(FilterError::Invalid(
                    "values_count",
                    format!("key `{key}`: give at least one of gt, gte, lt, lte"),
                ));
            }
            return Ok(FieldPred::ValuesCount(Bounds {
                gt: c.gt,
                gte: c.gte,
                lt: c.lt,
                lte: c.lte,
            }));
        }
        if let Some(g) = &self.geo_radius {
            if !(g.radius.is_finite() && g.radius >= 0.0) {
                return Err(FilterError::Invalid(
                    "geo_radius",
                    format!("radius {} must be a finite number of metres ≥ 0", g.radius),
                ));
            }
            return Ok(FieldPred::GeoRadius(
                geo(&g.center, "geo_radius")?,
                g.radius,
            ));
        }
        if let Some(b) = &self.geo_bounding_box {
            let (tl, br) = (
                geo(&b.top_left, "geo_bounding_box")?,
                geo(&b.bottom_right, "geo_bounding_box")?,
            );
            if tl.lat < br.lat {
                return Err(FilterError::Invalid(
                    "geo_bounding_box",
                    "top_left must be north of bottom_right".into(),
                ));
            }
            return Ok(FieldPred::GeoBox(tl, br));
        }
        let Some(p) = &self.geo_polygon else {
            return Err(FilterError::Shape(String::new()));
        };
        let interiors = p
            .interiors
            .iter()
            .flatten()
            .map(ring)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FieldPred::GeoPolygon(ring(&p.exterior)?, interiors))
    }
}

pub(crate) fn scalar_eq(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Keyword(a), Value::String(b)) => a == b,
        (Scalar::Integer(a), Value::Number(b)) => b.as_i64() == Some(*a),
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

/// How many values a key holds: array elements, 1 for a non-null value, 0 for missing or null.
pub(crate) fn values_count(found: &[&Value]) -> u64 {
    found
        .iter()
        .map(|v| match v {
            Value::Null => 0,
            Value::Array(a) => a.len() as u64,
            _ => 1,
        })
        .sum()
}

impl FieldPred {
    /// Whether the field, with these values found at its path, satisfies the predicate.
    pub(crate) fn holds(&self, found: &[&Value]) -> bool {
        if let FieldPred::ValuesCount(b) = self {
            return b.holds(values_count(found));
        }
        found
            .iter()
            .flat_map(|v| elements(v))
            .any(|x| self.holds_one(x))
    }

    /// Whether one element satisfies the predicate (not for `ValuesCount`).
    pub(crate) fn holds_one(&self, x: &Value) -> bool {
        match self {
            FieldPred::Match(s) => scalar_eq(s, x),
            FieldPred::Any(ss) => ss.iter().any(|s| scalar_eq(s, x)),
            FieldPred::Except(ss) => !x.is_null() && !ss.iter().any(|s| scalar_eq(s, x)),
            FieldPred::Text(words) => x.as_str().is_some_and(|t| {
                let have = tokens(t);
                words.iter().all(|w| have.contains(w))
            }),
            FieldPred::Phrase(words) => x.as_str().is_some_and(|t| contains_run(&tokens(t), words)),
            FieldPred::Range(b) => x.as_f64().is_some_and(|x| b.holds(x)),
            FieldPred::DateRange(b) => x
                .as_str()
                .and_then(parse_datetime)
                .is_some_and(|t| b.holds(t)),
            FieldPred::ValuesCount(_) => false,
            FieldPred::GeoRadius(c, r) => {
                GeoPoint::from_value(x).is_some_and(|p| p.distance_m(c) <= *r)
            }
            FieldPred::GeoBox(tl, br) => {
                GeoPoint::from_value(x).is_some_and(|p| in_box(&p, tl, br))
            }
            FieldPred::GeoPolygon(ext, holes) => GeoPoint::from_value(x)
                .is_some_and(|p| in_ring(&p, ext) && !holes.iter().any(|h| in_ring(&p, h))),
        }
    }
}

impl CompiledFilter {
    /// Whether the point passes the filter.
    pub fn matches(&self, id: &PointId, payload: Option<&Payload>) -> bool {
        let holds = |c: &Cond| c.holds(id, payload);
        self.must.iter().all(holds) && self.passes_all_but_must(holds)
    }

    /// Whether a point on which each condition holds as `holds` says passes `should`,
    /// `must_not` and `min_should` (`must` is the caller's: a planner answers it from indexes).
    pub(crate) fn passes_all_but_must(&self, holds: impl Fn(&Cond) -> bool) -> bool {
        (self.should.is_empty() || self.should.iter().any(&holds))
            && !self.must_not.iter().any(&holds)
            && self
                .min_should
                .as_ref()
                .is_none_or(|(cs, n)| cs.iter().filter(|c| holds(c)).take(*n).count() >= *n)
    }

    /// Whether the filter is one `must` condition and nothing else: its matches are exactly
    /// that condition's.
    pub(crate) fn is_single_must(&self) -> bool {
        self.must.len() == 1
            && self.should.is_empty()
            && self.must_not.is_empty()
            && self.min_should.is_none()
    }

    /// Whether the filter lets every point through (so that no row set needs building).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty()
            && self.should.is_empty()
            && self.must_not.is_empty()
            && self.min_should.is_none()
    }

    /// Whether a condition reads the point rather than its payload (refused inside `nested`).
    fn mentions_point(&self) -> bool {
        let lists = [&self.must, &self.should, &self.must_not];
        lists
            .into_iter()
            .flatten()
            .chain(self.min_should.iter().flat_map(|m| &m.0))
            .any(|c| match c {
                Cond::HasId(_) | Cond::Always => true,
                Cond::Filter(f) => f.mentions_point(),
                _ => false,
            })
    }
}

impl Cond {
    pub(crate) fn holds(&self, id: &PointId, payload: Option<&Payload>) -> bool {
        match self {
            Cond::Field(p, pred) => {
                let mut found = Vec::new();
                p.collect(payload, &mut found);
                pred.holds(&found)
            }
            Cond::HasId(ids) => ids.contains(id),
            Cond::Always => true,
            Cond::IsEmpty(p) => p.elements(payload).iter().all(|v| v.is_null()),
            Cond::IsNull(p) => {
                let mut found = Vec::new();
                p.collect(payload, &mut found);
                found.iter().any(|v| v.is_null())
            }
            Cond::Nested(p, f) => p
                .elements(payload)
                .into_iter()
                .any(|e| e.as_object().is_some_and(|o| f.matches(id, Some(o)))),
            Cond::Filter(f) => f.matches(id, payload),
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
            assert!(
                serde_json::from_value::<Filter>(bad.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|f| f.compile().map_err(|e| e.to_string()))
                    .is_err(),
                "{bad}"
            );
        }
        assert!(compile(json!({"must": [{"key": "n", "range": {"gt": "x"}}]})).is_err());
    }

    fn err(v: Value) -> String {
        match serde_json::from_value::<Filter>(v.clone()) {
            Ok(f) => f.compile().expect_err(&v.to_string()).to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn nothing_is_silently_ignored() {
        // Unknown keys anywhere are refused by name.
        assert!(err(json!({"must": [], "min_shuld": 1})).contains("`min_shuld`"));
        assert!(
            err(json!({"must": [{"key": "a", "match": {"value": 1}, "geo": 1}]})).contains("`geo`")
        );
        assert!(
            err(json!({"must": [{"key": "a", "match": {"text_any": "x"}}]})).contains("`text_any`")
        );
        assert!(
            err(json!({"must": [{"key": "a", "range": {"gte": 1, "ge": 2}}]})).contains("`ge`")
        );
        // A bad condition inside a list says which one.
        assert!(
            err(json!({"must": [{"key": "a", "match": {"value": 1}}, {"has_id": "x"}]}))
                .contains("condition 1")
        );
        assert!(
            err(json!({"must": [{"key": "a", "range": {"gt": 1, "lt": "2024-01-01"}}]}))
                .contains("mixes")
        );
        assert!(
            err(json!({"must": [{"key": "a", "range": {"gt": "yesterday"}}]}))
                .contains("yesterday")
        );
        assert!(
            err(json!({"must": [{"key": "a", "match": {"text": "  "}}]})).contains("match.text")
        );
        assert!(err(json!({"must": [{"key": "a", "values_count": {}}]})).contains("values_count"));
        assert!(
            err(
                json!({"must": [{"key": "a", "geo_polygon": {"exterior": {"points": [
            {"lon": 0, "lat": 0}, {"lon": 1, "lat": 0}, {"lon": 1, "lat": 1}]}}}]})
            )
            .contains("closed")
        );
        assert!(err(json!({"must": [{"key": "a", "geo_radius": {"center": {"lon": 200, "lat": 0}, "radius": 1}}]})).contains("out of range"));
        assert!(
            err(json!({"must": [{"nested": {"key": "a", "filter": {"must": [{"has_id": [1]}]}}}]}))
                .contains("nested")
        );
        assert!(
            err(json!({"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}))
                .contains("match and range")
        );
        assert!(err(json!({"must": [{"key": "a[x]", "match": {"value": 1}}]})).contains("a[x]"));
    }

    #[test]
    fn evaluates_the_newer_conditions() {
        let p = pl(json!({
            "items": [{"sku": "a1", "qty": 2}, {"sku": "b2", "qty": 5}],
            "tags": ["x", "y", "z"],
            "when": "2024-05-01T10:00:00+02:00",
            "bio": "The quick brown Fox jumps",
            "loc": {"lon": 2.3522, "lat": 48.8566},
            "n": 3
        }));
        let id = PointId::Num(1);
        let yes = |f: Value| assert!(compile(f.clone()).unwrap().matches(&id, Some(&p)), "{f}");
        let no = |f: Value| assert!(!compile(f.clone()).unwrap().matches(&id, Some(&p)), "{f}");
        // min_should: at least n of the conditions.
        let ms = |n: usize| {
            json!({"min_should": {"min_count": n, "conditions": [
            {"key": "n", "match": {"value": 3}}, {"key": "tags", "match": {"value": "y"}},
            {"key": "n", "match": {"value": 4}}]}})
        };
        yes(ms(1));
        yes(ms(2));
        no(ms(3));
        // Keys into arrays of objects.
        yes(json!({"must": [{"key": "items[].sku", "match": {"value": "b2"}}]}));
        no(json!({"must": [{"key": "items[].sku", "match": {"value": "c3"}}]}));
        yes(json!({"must": [{"key": "items[0].qty", "range": {"lt": 3}}]}));
        // nested: both conditions on the same element.
        let nested = |sku: &str, qty: i64| {
            json!({"must": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "sku", "match": {"value": sku}}, {"key": "qty", "range": {"gte": qty}}]}}}]})
        };
        yes(nested("b2", 5));
        no(nested("a1", 5));
        // values_count.
        yes(json!({"must": [{"key": "tags", "values_count": {"gte": 3, "lt": 4}}]}));
        no(json!({"must": [{"key": "tags", "values_count": {"gt": 3}}]}));
        yes(json!({"must": [{"key": "missing", "values_count": {"lt": 1}}]}));
        // Datetime ranges compare instants.
        yes(
            json!({"must": [{"key": "when", "range": {"gte": "2024-05-01T08:00:00Z", "lte": "2024-05-01 08:00"}}]}),
        );
        no(json!({"must": [{"key": "when", "range": {"gt": "2024-05-01T08:00:00Z"}}]}));
        // Text and phrase.
        yes(json!({"must": [{"key": "bio", "match": {"text": "fox QUICK"}}]}));
        no(json!({"must": [{"key": "bio", "match": {"text": "fox cat"}}]}));
        yes(json!({"must": [{"key": "bio", "match": {"phrase": "brown fox"}}]}));
        no(json!({"must": [{"key": "bio", "match": {"phrase": "fox brown"}}]}));
        // has_vector of the unnamed vector, or of a named one (the collection checks names).
        yes(json!({"must": [{"has_vector": ""}]}));
        no(json!({"must_not": [{"has_vector": ""}]}));
        yes(json!({"must": [{"has_vector": "image"}]}));
        // Geo.
        yes(
            json!({"must": [{"key": "loc", "geo_radius": {"center": {"lon": 2.35, "lat": 48.85}, "radius": 1000.0}}]}),
        );
        no(
            json!({"must": [{"key": "loc", "geo_radius": {"center": {"lon": -0.1276, "lat": 51.5072}, "radius": 300000.0}}]}),
        );
        yes(
            json!({"must": [{"key": "loc", "geo_bounding_box": {"top_left": {"lon": 2.0, "lat": 49.0}, "bottom_right": {"lon": 3.0, "lat": 48.0}}}]}),
        );
        yes(
            json!({"must": [{"key": "loc", "geo_polygon": {"exterior": {"points": [
            {"lon": 2.0, "lat": 48.0}, {"lon": 3.0, "lat": 48.0}, {"lon": 3.0, "lat": 49.0}, {"lon": 2.0, "lat": 49.0}, {"lon": 2.0, "lat": 48.0}]}}}]}),
        );
        no(
            json!({"must": [{"key": "loc", "geo_polygon": {"exterior": {"points": [
            {"lon": 2.0, "lat": 48.0}, {"lon": 3.0, "lat": 48.0}, {"lon": 3.0, "lat": 49.0}, {"lon": 2.0, "lat": 49.0}, {"lon": 2.0, "lat": 48.0}]},
            "interiors": [{"points": [{"lon": 2.3, "lat": 48.8}, {"lon": 2.4, "lat": 48.8}, {"lon": 2.4, "lat": 48.9}, {"lon": 2.3, "lat": 48.9}, {"lon": 2.3, "lat": 48.8}]}]}}]}),
        );
        // The JSON written back parses to the same filter (commands carry filters as JSON).
        let f: Filter = serde_json::from_value(ms(2)).unwrap();
        let again: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(f, again);
    }
}
