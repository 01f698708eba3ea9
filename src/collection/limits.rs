//! The bounds every front end enforces, so that a collection, a search or a point that passes
//! them can be served; and [`validate_name`].
//!
//! Two kinds: fixed bounds of the model (constants: names, dimensions, `limit`, ...), and
//! [`RequestLimits`], the configurable caps on how much one request may ask for (filter size,
//! batch length, scroll page), so that one request, even from a read-only key, cannot take the
//! node's memory or CPU. The router checks both itself; the REST layer checks them earlier only
//! for better messages and maps the refusals to 400.

use super::Error;
use crate::shard::filter::{Condition, Filter};
use crate::shard::{PointSelector, ShardCommand};

/// Longest accepted collection name.
pub const MAX_NAME_LEN: usize = 255;
/// Largest accepted dimension.
pub const MAX_DIM: u64 = 65_536;
/// Largest shard count a collection may ask for.
pub const MAX_SHARDS: u32 = 1024;
/// Largest `nlist` a collection may ask for.
pub const MAX_NLIST: usize = 1 << 20;
/// Largest re-rank factor a search or a collection accepts.
pub const MAX_RERANK: usize = 100;
/// Largest `offset` a search accepts.
pub const MAX_OFFSET: usize = 100_000;
/// Largest `limit` of a search or a scroll page.
pub const MAX_LIMIT: usize = 10_000;

/// Largest `sample` of a distance matrix (`search/matrix/pairs` and `.../offsets`): the router
/// scores every sampled point against every other, `sample² × dim` multiply-adds.
pub const MAX_MATRIX_SAMPLE: usize = 1_000;
/// Largest `sample × dim` of a distance matrix: the sampled vectors every shard sends to the
/// router (4 bytes each, 16 MiB at most per shard).
pub const MAX_MATRIX_FLOATS: usize = 1 << 22;

/// Checks a distance matrix's `sample` (2 to [`MAX_MATRIX_SAMPLE`], and `sample × dim` at
/// most [`MAX_MATRIX_FLOATS`]) and `limit` (at least 1); the error names the bound.
pub fn check_matrix(sample: usize, limit: usize, dim: usize) -> Result<(), Error> {
    if sample < 2 {
        return Err(Error::bad(format!(
            "sample = {sample} must be at least 2 (a point's neighbours are other sampled points)"
        )));
    }
    if sample > MAX_MATRIX_SAMPLE {
        return Err(Error::bad(format!(
            "sample = {sample}: the cap is MAX_MATRIX_SAMPLE = {MAX_MATRIX_SAMPLE}"
        )));
    }
    if sample.saturating_mul(dim) > MAX_MATRIX_FLOATS {
        return Err(Error::bad(format!(
            "sample = {sample} of {dim}-dimensional vectors is {} floats: the cap is MAX_MATRIX_FLOATS = {MAX_MATRIX_FLOATS} (sample at most {} at this dimension)",
            sample.saturating_mul(dim),
            MAX_MATRIX_FLOATS / dim.max(1)
        )));
    }
    if limit == 0 {
        return Err(Error::bad("limit = 0 must be at least 1"));
    }
    Ok(())
}

/// Largest squared L2 norm of a stored or query vector (`1e37`, a norm of about `3.2e18`).
///
/// Components are checked finite one by one, but the distance kernels work in `f32`: a vector
/// with finite components near `3e38` overflows its own squared norm, and the squared distance
/// between two vectors can reach four times the larger squared norm (opposite vectors), or
/// sixteen times it between a PQ residual and a code. This bound keeps every one of those sums
/// finite (16 × 1e37 < 3.4e38), so no score is ever infinite or NaN (which JSON writes as
/// `null`).
pub const MAX_SQUARED_NORM: f64 = 1e37;

/// The configurable caps on one request. Every field is a maximum; the defaults are
/// [`RequestLimits::default`]. A refusal is a [`Error::BadRequest`] naming the cap (its
/// configuration key) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Conditions in one filter, counted at every depth (nested filters, `nested`, `min_should`
    /// included). Key `max_filter_conditions`.
    pub max_filter_conditions: usize,
    /// Ids in `has_id` plus values in `match.any`/`match.except`, summed over one filter. Key
    /// `max_filter_values`.
    pub max_filter_values: usize,
    /// Points in one upsert, ids in one retrieve, delete or payload update by ids. Key
    /// `max_batch_points`.
    pub max_batch_points: usize,
    /// Searches in one `search/batch` or `query/batch`. Key `max_batch_queries`.
    pub max_batch_queries: usize,
    /// `limit` of one scroll page (and of an ordered scroll). Key `max_scroll_limit`.
    pub max_scroll_limit: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_filter_conditions: 1_000,
            max_filter_values: 100_000,
            max_batch_points: 10_000,
            max_batch_queries: 1_000,
            max_scroll_limit: MAX_LIMIT,
        }
    }
}

/// What [`filter_size`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterSize {
    /// Conditions at every depth.
    pub conditions: usize,
    /// Ids in `has_id` and values in `match.any`/`match.except`.
    pub values: usize,
}

fn condition_size(c: &Condition, out: &mut FilterSize) {
    out.conditions += 1;
    out.values += c.has_id.as_ref().map_or(0, Vec::len);
    if let Some(m) = &c.r#match {
        out.values += m.any.as_ref().map_or(0, Vec::len) + m.except.as_ref().map_or(0, Vec::len);
    }
}

/// The size of a filter: its conditions at every depth and the values it lists. Linear in the
/// filter; the depth is bounded by the JSON parser (128 levels), so the recursion is too.
pub fn filter_size(f: &Filter) -> FilterSize {
    let mut out = FilterSize::default();
    f.visit_conditions(&mut |c| condition_size(c, &mut out));
    out
}

impl RequestLimits {
    /// Checks every cap is at least 1 and the scroll cap at most [`MAX_LIMIT`]; the error names
    /// the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("max_filter_conditions", self.max_filter_conditions),
            ("max_filter_values", self.max_filter_values),
            ("max_batch_points", self.max_batch_points),
            ("max_batch_queries", self.max_batch_queries),
            ("max_scroll_limit", self.max_scroll_limit),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.max_scroll_limit > MAX_LIMIT {
            return Err(format!(
                "max_scroll_limit = {} must be at most {MAX_LIMIT}",
                self.max_scroll_limit
            ));
        }
        Ok(())
    }

    /// Checks a filter against `max_filter_conditions` and `max_filter_values`.
    pub fn check_filter(&self, f: &Filter) -> Result<(), Error> {
        let size = filter_size(f);
        if size.conditions > self.max_filter_conditions {
            return Err(Error::bad(format!(
                "filter has {} conditions: the cap is max_filter_conditions = {}",
                size.conditions, self.max_filter_conditions
            )));
        }
        if size.values > self.max_filter_values {
            return Err(Error::bad(format!(
                "filter lists {} ids and values (has_id, match any/except): the cap is max_filter_values = {}",
                size.values, self.max_filter_values
            )));
        }
        Ok(())
    }

    /// Checks the number of points (or ids) of one request against `max_batch_points`.
    pub fn check_points(&self, n: usize, what: &str) -> Result<(), Error> {
        if n > self.max_batch_points {
            return Err(Error::bad(format!(
                "{what}: {n} in one request: the cap is max_batch_points = {}",
                self.max_batch_points
            )));
        }
        Ok(())
    }

    /// Checks what a payload update selects: the ids against `max_batch_points`, a filter as
    /// [`Self::check_filter`].
    pub fn check_selector(&self, points: &PointSelector) -> Result<(), Error> {
        match points {
            PointSelector::Ids(ids) => self.check_points(ids.len(), "ids"),
            PointSelector::Filter(f) => self.check_filter(f),
        }
    }

    /// Checks the caps a shard command sent to every shard can break (payload updates:
    /// [`Self::check_selector`]).
    pub fn check_command(&self, command: &ShardCommand) -> Result<(), Error> {
        match command {
            ShardCommand::SetPayload { points, .. }
            | ShardCommand::OverwritePayload { points, .. }
            | ShardCommand::DeletePayload { points, .. }
            | ShardCommand::ClearPayload { points }
            | ShardCommand::DeleteVectors { points, .. } => self.check_selector(points),
            ShardCommand::DeleteByFilter { filter } => self.check_filter(filter),
            ShardCommand::Upsert { points } | ShardCommand::UpsertAt { points, .. } => {
                self.check_points(points.len(), "points")
            }
            ShardCommand::Delete { ids } | ShardCommand::DeleteAt { ids, .. } => {
                self.check_points(ids.len(), "ids")
            }
            ShardCommand::UpdateVectors { points } => self.check_points(points.len(), "points"),
            ShardCommand::CreateFieldIndex { .. } | ShardCommand::DeleteFieldIndex { .. } => Ok(()),
        }
    }

    /// Checks the number of searches of one batch against `max_batch_queries`.
    pub fn check_queries(&self, n: usize) -> Result<(), Error> {
        if n > self.max_batch_queries {
            return Err(Error::bad(format!(
                "{n} searches in one batch: the cap is max_batch_queries = {}",
                self.max_batch_queries
            )));
        }
        Ok(())
    }

    /// Checks a scroll `limit`: at least 1, at most `max_scroll_limit`.
    pub fn check_scroll_limit(&self, l: usize) -> Result<usize, Error> {
        if l == 0 || l > self.max_scroll_limit {
            return Err(Error::bad(format!(
                "limit = {l} must be in 1..={} (the cap is max_scroll_limit = {})",
                self.max_scroll_limit, self.max_scroll_limit
            )));
        }
        Ok(l)
    }
}

/// Checks a collection name: 1 to 255 characters of `[A-Za-z0-9_-]` (it names directories and
/// metric labels, so nothing else is allowed).
pub fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::bad(format!(
            "invalid collection name {name:?}: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ -"
        )));
    }
    Ok(())
}

/// Checks a `limit`: 1 to [`MAX_LIMIT`].
pub fn check_limit(l: usize) -> Result<usize, Error> {
    if l == 0 || l > MAX_LIMIT {
        return Err(Error::bad(format!(
            "limit = {l} must be in 1..={MAX_LIMIT}"
        )));
    }
    Ok(l)
}

/// Checks a vector against a collection's dimension: the right length, every component finite,
/// the squared norm at most [`MAX_SQUARED_NORM`].
pub fn check_vector(v: &[f32], dim: usize, what: &str) -> Result<(), Error> {
    if v.len() != dim {
        return Err(Error::bad(format!(
            "{what}: wrong vector dimension: expected {dim}, got {}",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::bad(format!(
            "{what}: component {i} ({}) is not a finite 32-bit float",
            v[i]
        )));
    }
    // In f64: the sum of squares of finite f32s cannot overflow it.
    let norm2: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if norm2 > MAX_SQUARED_NORM {
        return Err(Error::bad(format!(
            "{what}: the vector's squared norm {norm2:e} is above {MAX_SQUARED_NORM:e}: distances \
             would overflow 32-bit floats (scale the vectors down)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "A-z_0", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", ".", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(
                matches!(validate_name(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn vectors_and_limits_are_checked() {
        assert!(check_vector(&[1.0, 2.0], 2, "q").is_ok());
        assert!(check_vector(&[1.0], 2, "q").is_err());
        assert!(check_vector(&[1.0, f32::NAN], 2, "q").is_err());
        assert!(check_vector(&[f32::INFINITY, 0.0], 2, "q").is_err());
        assert_eq!(check_limit(1).unwrap(), 1);
        assert!(check_limit(0).is_err());
        assert!(check_limit(MAX_LIMIT + 1).is_err());
        // Finite components, but a squared norm that overflows f32 (issue 14, finding 10).
        let e = check_vector(&[3e38, 0.0], 2, "points[0] (id 7)").unwrap_err();
        assert!(e.to_string().contains("points[0] (id 7)"), "{e}");
        assert!(e.to_string().contains("squared norm"), "{e}");
        assert!(check_vector(&[-3e38, 3e38], 2, "q").is_err());
        assert!(check_vector(&[2.2e18, 2.2e18], 2, "q").is_ok());
        assert!(check_vector(&[2.3e18, 2.3e18], 2, "q").is_err());
    }

    fn filter(v: serde_json::Value) -> Filter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn filter_sizes_count_every_depth() {
        let f = filter(serde_json::json!({
            "must": [{"key": "a", "match": {"any": [1, 2, 3]}}, {"has_id": [1, 2]}],
            "should": {"must_not": [{"key": "b", "match": {"except": ["x"]}}]},
            "min_should": {"conditions": [{"nested": {"key": "n", "filter": {"must": [
                {"key": "c", "range": {"gt": 1}}, {"is_empty": {"key": "d"}}]}}}], "min_count": 1}
        }));
        // must: 2, should: 1 (a filter) + 1 inside, min_should: 1 nested + 2 inside.
        assert_eq!(
            filter_size(&f),
            FilterSize {
                conditions: 7,
                values: 6
            }
        );
        let limits = RequestLimits {
            max_filter_conditions: 7,
            max_filter_values: 6,
            ..RequestLimits::default()
        };
        assert!(limits.check_filter(&f).is_ok());
        let tight = RequestLimits {
            max_filter_conditions: 6,
            ..limits
        };
        let e = tight.check_filter(&f).unwrap_err().to_string();
        assert!(e.contains("max_filter_conditions = 6"), "{e}");
        let tight = RequestLimits {
            max_filter_values: 5,
            ..limits
        };
        let e = tight.check_filter(&f).unwrap_err().to_string();
        assert!(
            e.contains("max_filter_values = 5") && e.contains("has_id"),
            "{e}"
        );
    }

    #[test]
    fn request_caps_name_themselves() {
        let l = RequestLimits::default();
        assert!(l.validate().is_ok());
        assert!(l.check_points(l.max_batch_points, "points").is_ok());
        let e = l
            .check_points(l.max_batch_points + 1, "points")
            .unwrap_err();
        assert!(e.to_string().contains("max_batch_points = 10000"), "{e}");
        assert!(l.check_queries(l.max_batch_queries).is_ok());
        let e = l.check_queries(l.max_batch_queries + 1).unwrap_err();
        assert!(e.to_string().contains("max_batch_queries = 1000"), "{e}");
        assert_eq!(l.check_scroll_limit(10).unwrap(), 10);
        assert!(l.check_scroll_limit(0).is_err());
        let e = l.check_scroll_limit(l.max_scroll_limit + 1).unwrap_err();
        assert!(e.to_string().contains("max_scroll_limit"), "{e}");
        let zero = RequestLimits {
            max_batch_queries: 0,
            ..l
        };
        assert!(zero.validate().unwrap_err().contains("max_batch_queries"));
    }
}
