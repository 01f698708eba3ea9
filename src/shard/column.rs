//! Columns: one payload field of a sealed segment, decoded once into an array over its rows, so a
//! filter on a field *without* a payload index reads a row's values by position instead of
//! walking that row's JSON object (a key look-up, a path walk and an allocation per row).
//!
//! A [`Column`] holds, for every row, the field's elements exactly as a filter sees them
//! ([`JsonPath::collect`], then each found array flattened into its elements, as
//! [`FieldPred::holds`] does), so evaluating a condition over the column gives the answer the
//! per-row evaluation gives, row for row. When every element is an integer the column also keeps
//! them as `i64`, and equality, lists and ranges over integers compare machine words. Conditions
//! whose meaning is not "some element satisfies" (`values_count`, which counts found arrays and
//! nulls differently) are not answered here ([`Column::filter`] returns `None`) and stay per row.
//!
//! Sealed segments never change their payloads (an update writes the point again elsewhere), so a
//! segment decodes a column once and keeps it ([`ColumnCache`]) for every later query. The cache
//! holds at most [`MAX_COLUMNS`] columns a segment; past that it starts again, so filters on ever
//! new keys cannot grow it without bound.

use super::filter::{FieldPred, Scalar};
use super::point::Payload;
use super::values::{JsonPath, elements};
use crate::index::RowSet;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Columns a segment keeps at most (see the module doc).
pub(crate) const MAX_COLUMNS: usize = 16;

/// One field's elements for every row of a segment.
#[derive(Debug)]
pub(crate) struct Column {
    /// Row `r`'s elements are `values[offsets[r]..offsets[r + 1]]`.
    offsets: Vec<u32>,
    values: Vec<Value>,
    /// `values` as integers, when every element is an integer that fits `i64`.
    ints: Option<Vec<i64>>,
}

impl Column {
    /// Decodes the field at `path` over rows `0..rows`, row `r` having payload `payload(r)`.
    /// `None` if the rows hold more elements than a column addresses (`u32`).
    pub fn decode<'a>(
        path: &JsonPath,
        rows: usize,
        payload: impl Fn(usize) -> Option<&'a Payload>,
    ) -> Option<Column> {
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut values = Vec::new();
        let mut found = Vec::new();
        offsets.push(0u32);
        for r in 0..rows {
            found.clear();
            path.collect(payload(r), &mut found);
            for v in &found {
                values.extend(elements(v).iter().cloned());
            }
            offsets.push(u32::try_from(values.len()).ok()?);
        }
        let ints = values.iter().map(Value::as_i64).collect::<Option<Vec<_>>>();
        Some(Column {
            offsets,
            values,
            ints,
        })
    }

    /// Rows covered.
    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    fn span(&self, row: usize) -> std::ops::Range<usize> {
        match (self.offsets.get(row), self.offsets.get(row + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }

    /// The rows of `cand` whose elements satisfy `pred` (some element does), or `None` for a
    /// predicate a column does not answer (see the module doc).
    pub fn filter(&self, pred: &FieldPred, cand: &RowSet) -> Option<RowSet> {
        if matches!(pred, FieldPred::ValuesCount(_)) {
            return None;
        }
        let mut out = RowSet::new(cand.len());
        match (&self.ints, pred) {
            (Some(ints), FieldPred::Match(s)) => {
                let want = int_of(s);
                self.keep(cand, &mut out, |i| want.is_some_and(|w| ints[i] == w));
            }
            (Some(ints), FieldPred::Any(ss)) => {
                let want: Vec<i64> = ss.iter().filter_map(int_of).collect();
                self.keep(cand, &mut out, |i| want.contains(&ints[i]));
            }
            (Some(ints), FieldPred::Except(ss)) => {
                let listed: Vec<i64> = ss.iter().filter_map(int_of).collect();
                self.keep(cand, &mut out, |i| !listed.contains(&ints[i]));
            }
            (Some(ints), FieldPred::Range(b)) => {
                self.keep(cand, &mut out, |i| b.holds(ints[i] as f64));
            }
            _ => self.keep(cand, &mut out, |i| pred.holds_one(&self.values[i])),
        }
        Some(out)
    }

    /// Adds to `out` each row of `cand` with an element `i` where `holds(i)`.
    #[inline]
    fn keep(&self, cand: &RowSet, out: &mut RowSet, holds: impl Fn(usize) -> bool) {
        for r in cand.iter() {
            if self.span(r).any(&holds) {
                out.insert(r);
            }
        }
    }
}

/// The integer a match scalar stands for; `None` for one no integer element equals.
fn int_of(s: &Scalar) -> Option<i64> {
    match s {
        Scalar::Integer(i) => Some(*i),
        Scalar::Keyword(_) | Scalar::Bool(_) => None,
    }
}

/// A sealed segment's decoded columns by key (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct ColumnCache {
    columns: Mutex<HashMap<String, Arc<Column>>>,
}

impl ColumnCache {
    /// The column of `path`, if decoded already.
    pub fn get(&self, path: &JsonPath) -> Option<Arc<Column>> {
        self.lock().get(&path.key).cloned()
    }

    /// Keeps `column` as the column of `path`.
    pub fn put(&self, path: &JsonPath, column: Arc<Column>) {
        let mut columns = self.lock();
        if columns.len() >= MAX_COLUMNS && !columns.contains_key(&path.key) {
            columns.clear();
        }
        columns.insert(path.key.clone(), column);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Column>>> {
        self.columns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::filter::Filter;
    use crate::shard::point::PointId;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    /// Payloads mixing every shape a field takes: integers, floats, strings, arrays (of scalars
    /// and of objects), nulls, nested objects, and the field missing.
    fn payloads(n: usize, seed: u64) -> Vec<Option<Payload>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let v = match rng.random_range(0..9) {
                    0 => return None,
                    1 => json!({"n": rng.random_range(0..5), "s": "a"}),
                    2 => json!({"n": rng.random_range(0..5) as f64 + 0.5, "s": ["a", "b"]}),
                    3 => json!({"n": [1, rng.random_range(0..5)], "s": "c"}),
                    4 => json!({"n": null, "s": null}),
                    5 => json!({"n": "3", "s": 3}),
                    6 => json!({"items": [{"n": rng.random_range(0..5)}, {"n": 9}]}),
                    7 => json!({"a": {"n": rng.random_range(0..5)}}),
                    _ => json!({"s": format!("w{}", i % 4), "n": rng.random_range(0..5)}),
                };
                v.as_object().cloned()
            })
            .collect()
    }

    /// Every condition a column answers gives, row for row, what the per-row evaluation gives:
    /// on integer-only columns (the `i64` path) and on mixed ones.
    #[test]
    fn column_filters_agree_with_the_per_row_evaluation() {
        let n = 600;
        let conditions = [
            json!({"key": "n", "match": {"value": 3}}),
            json!({"key": "n", "match": {"any": [1, 4]}}),
            json!({"key": "n", "match": {"except": [1, 4]}}),
            json!({"key": "n", "range": {"gte": 1.5, "lt": 4}}),
            json!({"key": "s", "match": {"value": "a"}}),
            json!({"key": "s", "match": {"any": ["b", "w2"]}}),
            json!({"key": "s", "match": {"except": ["a"]}}),
            json!({"key": "s", "match": {"text": "w1"}}),
            json!({"key": "items[].n", "match": {"value": 9}}),
            json!({"key": "items[].n", "range": {"lt": 3}}),
            json!({"key": "a.n", "match": {"any": [0, 2]}}),
            json!({"key": "missing", "match": {"value": 1}}),
        ];
        for seed in 0..4 {
            let ps = payloads(n, seed);
            // Seed 0 also gets a column of integers only (the `i64` path).
            let ints: Vec<Option<Payload>> = (0..n)
                .map(|i| {
                    json!({"n": (i * 7) % 5, "items": [{"n": i % 11}]})
                        .as_object()
                        .cloned()
                })
                .collect();
            for set in [&ps, &ints] {
                let mut cand = RowSet::new(n);
                for r in (0..n).filter(|r| r % 3 != 1) {
                    cand.insert(r);
                }
                for c in &conditions {
                    let f: Filter = serde_json::from_value(json!({"must": [c]})).unwrap();
                    let compiled = f.compile().unwrap();
                    let Some(super::super::filter::Cond::Field(path, pred)) = compiled.must.first()
                    else {
                        panic!("{c} is not a field condition");
                    };
                    let column = Column::decode(path, n, |r| set[r].as_ref()).unwrap();
                    assert_eq!(column.rows(), n);
                    let got = column.filter(pred, &cand).unwrap();
                    let want = RowSet::from_rows(
                        n,
                        cand.iter().filter(|r| {
                            compiled.matches(&PointId::Num(*r as u64), set[*r].as_ref())
                        }),
                    );
                    assert_eq!(got, want, "{c} (seed {seed})");
                }
            }
        }
    }

    #[test]
    fn values_count_is_left_to_the_rows_and_the_cache_is_bounded() {
        let path = JsonPath::parse("n").unwrap();
        let column = Arc::new(Column::decode(&path, 3, |_| None).unwrap());
        let f: Filter =
            serde_json::from_value(json!({"must": [{"key": "n", "values_count": {"gt": 1}}]}))
                .unwrap();
        let compiled = f.compile().unwrap();
        let Some(super::super::filter::Cond::Field(_, pred)) = compiled.must.first() else {
            panic!("not a field condition");
        };
        assert!(column.filter(pred, &RowSet::full(3)).is_none());

        let cache = ColumnCache::default();
        for i in 0..MAX_COLUMNS + 3 {
            let p = JsonPath::parse(&format!("k{i}")).unwrap();
            cache.put(&p, Arc::clone(&column));
            assert!(cache.get(&p).is_some());
            assert!(cache.lock().len() <= MAX_COLUMNS);
        }
    }
}
