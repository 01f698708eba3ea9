//! A sealed segment's codes regrouped per indexed payload value ([`SubsetLists`]), so that a
//! filter on that value scans only its rows' codes in the probed lists.
//!
//! A filter whose `must` holds an equality on a field with a payload index (`tenant = "a"`,
//! `sel_10 = 3`) matches rows its posting names; those rows never change in a sealed segment
//! (an update writes the point again elsewhere, a delete only clears a live bit). The segment
//! regroups the posting's entries once, on the first search whose plan wants it
//! ([`super::planner::Plan::Subset`]), and keeps them for every later one. The planner prices the
//! scan of a subset at the posting's share of the full scan (whole blocks of 32 entries a list):
//! measured, a 10% filter then ran at 1.0–2.2× the unfiltered QPS where it ran at 0.6–1.1×.
//!
//! Memory is bounded per segment: the subsets a segment keeps hold at most [`BUDGET_CODES`] times
//! the bytes of its own codes (about three fields' worth of values: each field's values together
//! hold every row once, with a 4-byte row number per entry beside the codes); a value whose lists
//! would hold fewer than [`MIN_ENTRIES_PER_LIST`] entries each is never regrouped (its blocks
//! would be mostly padding); and the planner makes one only where it is estimated clearly
//! cheaper than every other plan ([`super::planner::cost::SUBSET_MIN_GAIN`]). Past the budget,
//! no new subset is built and such filters take the plans they took before: nothing is evicted,
//! so a workload cycling through many values never rebuilds. The cache is emptied when the
//! segment's payload indexes are replaced.

use super::filter::{CompiledFilter, Cond};
use super::payload_index::PayloadIndex;
use crate::index::RowSet;
use crate::index::fastscan::BLOCK;
use crate::index::ivfpq::{IvfPqIndex, SubsetLists};
use crate::storage::payload_index::PostingKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many times its own code bytes a segment's subsets may hold (see the module doc).
pub const BUDGET_CODES: usize = 4;

/// The fewest entries a subset's lists must hold on average for it to be made: a list's codes
/// are scored in blocks of 32, so sparser lists would be mostly padding (a 1% value of a
/// 250,000-row segment with 1,024 lists holds 5 entries a list: six times its codes' bytes in
/// blocks), and a posting that small is served well by the exact plans.
pub const MIN_ENTRIES_PER_LIST: f64 = 16.0;

/// One indexed value: a field's key and the posting key of the value.
pub(super) type SubsetKey = (String, PostingKey);

/// The posting a filter's subset would be made from: its key and how many rows it holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SubsetChoice {
    pub key: SubsetKey,
    pub rows: usize,
}

/// Of `f`'s `must` conditions that are an equality a payload index answers with one posting,
/// the one with the fewest rows: every match of `f` is in its posting.
pub(super) fn choose(index: &PayloadIndex, f: &CompiledFilter) -> Option<SubsetChoice> {
    f.must
        .iter()
        .filter_map(|c| match c {
            Cond::Field(path, pred) => {
                let field = index.field(&path.key)?;
                let key = field.posting_key(pred)?;
                let rows = field.posting_len(&key);
                Some(SubsetChoice {
                    key: (path.key.clone(), key),
                    rows,
                })
            }
            _ => None,
        })
        .min_by_key(|c| c.rows)
}

/// A segment's subsets by value (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct SubsetCache {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    subsets: HashMap<SubsetKey, Arc<SubsetLists>>,
    bytes: usize,
}

impl SubsetCache {
    /// Whether `choice`'s subset is kept already or, as estimated from its rows, is dense
    /// enough to make ([`MIN_ENTRIES_PER_LIST`]) and would fit the budget of `index`.
    pub fn available(&self, index: &IvfPqIndex, choice: &SubsetChoice) -> bool {
        let kept = self.lock();
        kept.subsets.contains_key(&choice.key)
            || (entries_per_list(index, choice.rows) >= MIN_ENTRIES_PER_LIST
                && kept.bytes + estimated_bytes(index, choice.rows) <= budget(index))
    }

    /// The subset of `choice`, made now from the rows of the posting (`rows`, over segment
    /// rows) if not kept yet; `None` when it would not fit the budget or the codes are 8-bit.
    pub fn get_or_build(
        &self,
        index: &IvfPqIndex,
        choice: &SubsetChoice,
        rows: impl FnOnce() -> Option<RowSet>,
    ) -> Option<Arc<SubsetLists>> {
        if let Some(s) = self.lock().subsets.get(&choice.key) {
            return Some(Arc::clone(s));
        }
        if !self.available(index, choice) {
            return None;
        }
        // Built outside the lock: two searches may build the same subset; one is kept.
        let started = std::time::Instant::now();
        let subset = Arc::new(index.subset_lists(&rows()?)?);
        tracing::debug!(
            field = %choice.key.0,
            rows = choice.rows,
            entries = subset.entries(),
            bytes = subset.memory_bytes(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "regrouped an indexed value's codes"
        );
        let mut kept = self.lock();
        if let Some(s) = kept.subsets.get(&choice.key) {
            return Some(Arc::clone(s));
        }
        if kept.bytes + subset.memory_bytes() > budget(index) {
            return None;
        }
        kept.bytes += subset.memory_bytes();
        kept.subsets.insert(choice.key.clone(), Arc::clone(&subset));
        Some(subset)
    }

    /// Drops every subset (the payload indexes they were chosen by changed).
    pub fn clear(&self) {
        *self.lock() = Kept::default();
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bytes a segment's subsets may hold.
fn budget(index: &IvfPqIndex) -> usize {
    index.code_bytes().saturating_mul(BUDGET_CODES)
}

/// About how many entries each list of a subset of `rows` rows holds.
fn entries_per_list(index: &IvfPqIndex, rows: usize) -> f64 {
    let share = rows as f64 / index.len().max(1) as f64;
    index.entries() as f64 * share / index.nlist().max(1) as f64
}

/// About the bytes of a subset of `rows` rows: each list's whole blocks of codes and a row
/// number (4 bytes) per entry.
fn estimated_bytes(index: &IvfPqIndex, rows: usize) -> usize {
    let per_list = entries_per_list(index, rows);
    let blocks = (per_list / BLOCK as f64).ceil() * index.nlist() as f64;
    (blocks * index.block_bytes() as f64 + per_list * index.nlist() as f64 * 4.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Metric;
    use crate::index::ivfpq::IvfPqConfig;
    use crate::shard::filter::Filter;
    use crate::shard::payload_index::PayloadFieldType;
    use crate::shard::point::Payload;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    fn built_index(n: usize, bits: u8) -> IvfPqIndex {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let data: Vec<f32> = (0..n * 16).map(|_| rng.random_range(-1.0..1.0)).collect();
        let ids: Vec<u64> = (0..n as u64).collect();
        let mut c = IvfPqConfig::new(Metric::L2, 8, 8, bits);
        c.pq_train_points = n;
        IvfPqIndex::build(16, &data, &ids, &c).unwrap()
    }

    fn choice(field: &str, value: i64, rows: usize) -> SubsetChoice {
        SubsetChoice {
            key: (field.into(), PostingKey::Int(value)),
            rows,
        }
    }

    /// Subsets are kept once built, refused past the budget (nothing evicted) or when their
    /// lists would be mostly padding, dropped by `clear`; 8-bit codes get none.
    #[test]
    fn the_cache_keeps_subsets_within_its_budget() {
        let n = 2_000;
        let index = built_index(n, 4);
        let cache = SubsetCache::default();
        let all = || Some(RowSet::from_rows(n, 0..n));
        let first = choice("a", 1, n);
        assert!(cache.available(&index, &first));
        // 50 rows over 8 lists, 6 a list: mostly padding, never made.
        assert!(!cache.available(&index, &choice("sparse", 1, 50)));
        assert!(cache.available(&index, &choice("dense", 1, 200)));
        let built = cache.get_or_build(&index, &first, all).unwrap();
        assert_eq!(built.entries(), n);
        assert!(cache.memory_bytes() <= budget(&index));
        // Kept: the same subset without building (the rows are not asked for).
        let again = cache
            .get_or_build(&index, &first, || panic!("rebuilt"))
            .unwrap();
        assert!(Arc::ptr_eq(&built, &again));
        // Every row once more is past four times the codes with the entries' row numbers.
        let second = choice("a", 2, n);
        let third = choice("b", 1, n);
        let kept = [second, third]
            .iter()
            .filter(|c| cache.get_or_build(&index, c, all).is_some())
            .count();
        assert!(kept < 2, "{kept}");
        assert!(cache.memory_bytes() <= budget(&index));
        assert!(!cache.available(&index, &choice("c", 1, n)));
        assert!(cache.available(&index, &first));
        cache.clear();
        assert_eq!(cache.memory_bytes(), 0);
        assert!(cache.available(&index, &choice("c", 1, n)));
        assert!(
            SubsetCache::default()
                .get_or_build(&built_index(n, 8), &first, all)
                .is_none()
        );
    }

    /// The posting chosen is the smallest equality posting of the `must` conditions; ranges,
    /// unindexed fields and `should` are never chosen.
    #[test]
    fn the_smallest_indexed_equality_is_chosen() {
        let payloads: Vec<Payload> = (0..100)
            .map(|i| {
                json!({"ten": i % 10, "half": i % 2 == 0, "x": i, "free": i % 3})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect();
        let schema = [
            ("ten".to_string(), PayloadFieldType::Integer),
            ("half".to_string(), PayloadFieldType::Bool),
            ("x".to_string(), PayloadFieldType::Integer),
        ]
        .into_iter()
        .collect();
        let mut index = PayloadIndex::default();
        index.sync(&schema, payloads.len(), |r| payloads.get(r));
        let pick = |f: serde_json::Value| {
            let f = serde_json::from_value::<Filter>(f)
                .unwrap()
                .compile()
                .unwrap();
            choose(&index, &f)
        };
        let half = json!({"key": "half", "match": {"value": true}});
        let ten = json!({"key": "ten", "match": {"value": 3}});
        assert_eq!(
            pick(json!({"must": [half, ten]})),
            Some(SubsetChoice {
                key: ("ten".into(), PostingKey::Int(3)),
                rows: 10
            })
        );
        assert_eq!(pick(json!({"must": [half]})).map(|c| c.rows), Some(50));
        assert_eq!(
            pick(json!({"must": [{"key": "x", "range": {"lt": 5}}]})),
            None
        );
        assert_eq!(
            pick(json!({"must": [{"key": "free", "match": {"value": 1}}]})),
            None
        );
        assert_eq!(pick(json!({"should": [ten]})), None);
    }
}
