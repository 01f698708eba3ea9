//! A sealed segment's codes regrouped per indexed payload value, so that a filter on that value
//! scores only its rows' codes: per list ([`SubsetLists`], read in the probed lists), as one
//! run of every row once ([`SubsetCodes`], scored whole with one table), or as the rows alone
//! per list ([`SubsetRows`], scored exactly in the probed lists); and, for the exact scan of a
//! selective filter's matches, the rows in the index's order ([`SubsetMembers`]), with a copy
//! of their 8-bit codes so that the scan reads one run (on 1M × 128 a 0.1% filter ran at 2.1×
//! the QPS it had reading each row's codes at its place in the index,
//! `benches/results/filter-1m-member-copies-2026-12-07.txt`).
//!
//! A filter whose `must` holds an equality on a field with a payload index (`tenant = "a"`,
//! `sel_10 = 3`) matches rows its posting names; those rows never change in a sealed segment
//! (an update writes the point again elsewhere, a delete only clears a live bit). When a
//! search's plan first wants the posting's codes in a form
//! ([`super::planner::Plan::Subset`], [`super::planner::Plan::SubsetCodes`],
//! [`super::planner::Plan::SubsetProbed`]), the segment claims
//! their making ([`SubsetCache::claim`]) and regroups them once on the build pool, keeping them
//! for every later search; meanwhile searches take the best plan without them, so none waits (a
//! 50% value of a 500,000-row segment took 150 ms, a 1% one 20–57 ms per list form on 900,000
//! rows, on the query thread before). The planner prices the per-list form at the posting's share of the full
//! scan (whole blocks of 32 entries a list) and the single run at every code of the posting
//! plus every list's coarse term: the first pays for dense values (measured, a 10% filter ran
//! at 1.0–2.2× the unfiltered QPS where it ran at 0.6–1.1×), the second for values with a few
//! entries a list, which the per-list form would pad to a block each and which the exact plans
//! read vector by vector. The rows alone pay where a value holds a few entries a list and each
//! probed list would make its own table (L2) to score them: on 1M × 128 a 1% filter ran at
//! 1.53× the QPS of the per-list codes (3 rounds alternated, medians), its rows scored exactly
//! from the 8-bit codes instead.
//!
//! Memory is bounded per segment: the subsets a segment keeps, of every form, hold at most
//! [`BUDGET_CODES`] times the bytes of its own codes (about three fields' worth of values: each
//! field's values together hold every row once, with a 4-byte row number per entry beside the
//! codes, and a sparse field's per-list blocks are up to half padding), and the copies of 8-bit
//! codes beside rows per list and members at most [`BUDGET_COPIES`] times more (a 1% field's
//! rows per list, on 1M × 128, hold about 4.1 times the codes, and so do a 0.1% field's members:
//! past the budget, both are made without copies); a value
//! whose lists
//! would hold fewer than [`MIN_ENTRIES_PER_LIST`] entries each is never regrouped per list (its
//! blocks would be mostly padding); and the planner makes one
//! only where it is estimated clearly cheaper than every other plan
//! ([`super::planner::cost::SUBSET_MIN_GAIN`]). Past the budget, no new subset is built and such
//! filters take the plans they took before: nothing is evicted, so a workload cycling through
//! many values never rebuilds. The cache is emptied when the segment's payload indexes are
//! replaced.

use super::filter::{CompiledFilter, Cond};
use super::payload_index::PayloadIndex;
use crate::index::RowSet;
use crate::index::fastscan::BLOCK;
use crate::index::ivfpq::{IvfPqIndex, SubsetCodes, SubsetLists, SubsetMembers, SubsetRows};
use crate::storage::payload_index::PostingKey;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// How many times its own code bytes a segment's subsets may hold (see the module doc). Four
/// held three fields' worth only without padding: on 1M × 128 the 100 values of a 1% field,
/// 17.5 entries a list in 32-entry blocks, took half of it, and the 50% values found no room
/// (their filter then ran at 0.64–0.93× the unfiltered QPS; with six, 1.02–1.10×,
/// `benches/results/filter-ids-2026-12-06.txt`). The copies of 8-bit codes that rows per list
/// keep are held apart ([`BUDGET_COPIES`]).
pub const BUDGET_CODES: usize = 6;

/// How many times its own code bytes the copies of 8-bit codes beside a segment's rows per list
/// ([`SubsetRows`]) and a value's members ([`SubsetMembers`]) may hold, apart from
/// [`BUDGET_CODES`]: they are large (`dim + 4` bytes an entry), and in the budget of every form
/// they took the room of the denser values' per-list codes, which gain more (on 1M × 128, the
/// 10% and 50% filters at 0.73× and 0.80× their QPS). Ten: two sparse fields' worth on 128
/// dimensions (`dim + 4` bytes an entry against 32 of codes; on 1M × 128 a 1% field's rows per
/// list and a 0.1% field's members hold about 4.1 times the codes each) or on 384 (388 against
/// 96). Five holds one: in the bench the 0.1% filter's members, made first, would leave the
/// 1% filter's rows per list without copies (worked out from the sizes, not run). Once it is
/// spent, both forms are made without copies and read the index's codes.
pub const BUDGET_COPIES: usize = 10;

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
    /// Whether the filter is this equality and nothing else: its matches are then exactly the
    /// posting's live rows.
    pub whole: bool,
}

/// Of `f`'s `must` conditions that are an equality a payload index answers with one posting,
/// the one with the fewest rows: every match of `f` is in its posting.
pub(super) fn choose(index: &PayloadIndex, f: &CompiledFilter) -> Option<SubsetChoice> {
    let whole = f.is_single_must();
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
                    whole,
                })
            }
            _ => None,
        })
        .min_by_key(|c| c.rows)
}

/// How a value's rows' codes are regrouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Form {
    /// Per list ([`SubsetLists`]): for values dense enough to fill blocks in every list,
    /// scanned in the probed lists ([`super::planner::Plan::Subset`]).
    Lists,
    /// Every row once in one run of blocks ([`SubsetCodes`]): scanned whole with one table
    /// ([`super::planner::Plan::SubsetCodes`]).
    Codes,
    /// Per list, the entries' rows without codes ([`SubsetRows`]): the probed lists' rows
    /// scored exactly ([`super::planner::Plan::SubsetProbed`]).
    Rows,
    /// The rows, every row once, in the index's order ([`SubsetMembers`]), with a copy of
    /// each one's 8-bit codes while the copies' budget has room: what the exact scan of the
    /// value's matches reads ([`super::planner::Plan::Exact`]) instead of translating each
    /// posting row to its index row per query. Not a plan of its own, so the planner does not
    /// price it.
    Members,
}

impl Form {
    /// The forms the planner prices, in the order [`SubsetCache::forms`] reports them.
    pub const PLANNED: [Form; 3] = [Form::Lists, Form::Codes, Form::Rows];
}

/// One regrouped form of a value's codes, as the cache keeps it.
pub(super) trait Regrouped: Sized {
    /// The form it is.
    const FORM: Form;

    /// Made from the rows whose id is in `rows`, with copies of their 8-bit codes if `copies`
    /// and the form keeps any ([`SubsetRows`], [`SubsetMembers`]); `None` for codes that are
    /// not 4-bit.
    fn build(index: &IvfPqIndex, rows: &RowSet, copies: bool) -> Option<Self>;

    /// Of [`Regrouped::memory_bytes`], the bytes of copies of 8-bit codes
    /// ([`BUDGET_COPIES`]).
    fn copy_bytes(&self) -> usize {
        0
    }

    /// Entries held.
    fn entries(&self) -> usize;

    /// Bytes held.
    fn memory_bytes(&self) -> usize;

    /// As the cache keeps it.
    fn wrap(this: Arc<Self>) -> Kept;

    /// Back from the cache (`None` for another form, which a key never maps to).
    fn unwrap(kept: &Kept) -> Option<Arc<Self>>;
}

impl Regrouped for SubsetLists {
    const FORM: Form = Form::Lists;

    fn build(index: &IvfPqIndex, rows: &RowSet, _: bool) -> Option<Self> {
        index.subset_lists(rows)
    }

    fn entries(&self) -> usize {
        SubsetLists::entries(self)
    }

    fn memory_bytes(&self) -> usize {
        SubsetLists::memory_bytes(self)
    }

    fn wrap(this: Arc<Self>) -> Kept {
        Kept::Lists(this)
    }

    fn unwrap(kept: &Kept) -> Option<Arc<Self>> {
        match kept {
            Kept::Lists(s) => Some(Arc::clone(s)),
            _ => None,
        }
    }
}

impl Regrouped for SubsetCodes {
    const FORM: Form = Form::Codes;

    fn build(index: &IvfPqIndex, rows: &RowSet, _: bool) -> Option<Self> {
        index.subset_codes(rows)
    }

    fn entries(&self) -> usize {
        SubsetCodes::entries(self)
    }

    fn memory_bytes(&self) -> usize {
        SubsetCodes::memory_bytes(self)
    }

    fn wrap(this: Arc<Self>) -> Kept {
        Kept::Codes(this)
    }

    fn unwrap(kept: &Kept) -> Option<Arc<Self>> {
        match kept {
            Kept::Codes(s) => Some(Arc::clone(s)),
            _ => None,
        }
    }
}

impl Regrouped for SubsetRows {
    const FORM: Form = Form::Rows;

    fn build(index: &IvfPqIndex, rows: &RowSet, copies: bool) -> Option<Self> {
        Some(index.subset_rows(rows, copies))
    }

    fn entries(&self) -> usize {
        SubsetRows::entries(self)
    }

    fn memory_bytes(&self) -> usize {
        SubsetRows::memory_bytes(self)
    }

    fn copy_bytes(&self) -> usize {
        SubsetRows::copy_memory_bytes(self)
    }

    fn wrap(this: Arc<Self>) -> Kept {
        Kept::Rows(this)
    }

    fn unwrap(kept: &Kept) -> Option<Arc<Self>> {
        match kept {
            Kept::Rows(s) => Some(Arc::clone(s)),
            _ => None,
        }
    }
}

impl Regrouped for SubsetMembers {
    const FORM: Form = Form::Members;

    fn build(index: &IvfPqIndex, rows: &RowSet, copies: bool) -> Option<Self> {
        Some(index.subset_members(rows, copies))
    }

    fn entries(&self) -> usize {
        SubsetMembers::entries(self)
    }

    fn memory_bytes(&self) -> usize {
        SubsetMembers::memory_bytes(self)
    }

    fn copy_bytes(&self) -> usize {
        SubsetMembers::copy_memory_bytes(self)
    }

    fn wrap(this: Arc<Self>) -> Kept {
        Kept::Members(this)
    }

    fn unwrap(kept: &Kept) -> Option<Arc<Self>> {
        match kept {
            Kept::Members(s) => Some(Arc::clone(s)),
            _ => None,
        }
    }
}

/// A kept subset, of any form.
#[derive(Debug)]
pub(super) enum Kept {
    Lists(Arc<SubsetLists>),
    Codes(Arc<SubsetCodes>),
    Rows(Arc<SubsetRows>),
    Members(Arc<SubsetMembers>),
}

/// A segment's subsets by value and form (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct SubsetCache {
    inner: Mutex<Held>,
    /// Signalled whenever a claimed subset is finished or the cache is cleared.
    settled: Condvar,
}

#[derive(Debug, Default)]
struct Held {
    subsets: HashMap<(SubsetKey, Form), Kept>,
    /// Subsets made and then found past the budget (their size was estimated below it): not
    /// made again, or every search for that value would pay for making it.
    refused: HashSet<(SubsetKey, Form)>,
    /// Subsets claimed and being made, with their estimated bytes (held against the budget
    /// until they are finished).
    pending: HashMap<(SubsetKey, Form), usize>,
    bytes: usize,
    pending_bytes: usize,
    /// Bytes of copies of 8-bit codes held and claimed ([`BUDGET_COPIES`]), apart from
    /// `bytes` and `pending_bytes`.
    copy_bytes: usize,
    pending_copy_bytes: usize,
    /// Bumped by [`SubsetCache::clear`]: a subset claimed before is dropped when finished
    /// (it was made from the payload indexes the clear replaced).
    generation: u64,
}

/// A claim to make one subset ([`SubsetCache::claim`]).
#[derive(Debug)]
pub(super) struct Claim {
    key: (SubsetKey, Form),
    estimate: usize,
    /// The estimated bytes of the copies of 8-bit codes it is to keep; 0 for none.
    copy_estimate: usize,
    generation: u64,
}

impl SubsetCache {
    /// Whether `choice`'s subset in `form` is kept now.
    #[cfg(test)]
    pub fn is_kept(&self, choice: &SubsetChoice, form: Form) -> bool {
        self.lock()
            .subsets
            .contains_key(&(choice.key.clone(), form))
    }

    /// For each form of [`Form::PLANNED`] in turn: whether `choice`'s subset in that form is
    /// there to plan with ([`Self::available`]) and whether it is kept now: what a search
    /// plans with, under one look at the cache.
    pub fn forms(&self, index: &IvfPqIndex, choice: &SubsetChoice) -> [(bool, bool); 3] {
        let held = self.lock();
        Form::PLANNED.map(|form| {
            let key = (choice.key.clone(), form);
            (
                Self::plannable(&held, index, &key, choice.rows),
                held.subsets.contains_key(&key),
            )
        })
    }

    /// Whether `choice`'s subset in `form` is kept already, is being made, or, as estimated
    /// from its rows, would be worth making (a per-list subset only when dense enough,
    /// [`MIN_ENTRIES_PER_LIST`]) and would fit the budget of `index` (with what is being made
    /// counted in); not once refused.
    #[cfg(test)]
    pub fn available(&self, index: &IvfPqIndex, choice: &SubsetChoice, form: Form) -> bool {
        let key = (choice.key.clone(), form);
        Self::plannable(&self.lock(), index, &key, choice.rows)
    }

    /// See [`Self::available`]. A form being made counts: a search that wants it takes the
    /// best plan without it until it is kept, and does not ask for the next best form
    /// meanwhile (each query of a value arriving while its form was made asked for another,
    /// and on 1M × 128 a 1% value ended with all four forms: the budget filled with copies
    /// and the 10% values, which gain the most, found no room).
    fn plannable(held: &Held, index: &IvfPqIndex, key: &(SubsetKey, Form), rows: usize) -> bool {
        held.subsets.contains_key(key)
            || held.pending.contains_key(key)
            || Self::room_for(held, index, key, rows).is_some()
    }

    /// The estimated bytes of the subset `key` of `rows` rows when it may be made now: not kept,
    /// not being made, not refused, worth making and within the budget.
    fn room_for(
        held: &Held,
        index: &IvfPqIndex,
        key: &(SubsetKey, Form),
        rows: usize,
    ) -> Option<usize> {
        if held.subsets.contains_key(key)
            || held.refused.contains(key)
            || held.pending.contains_key(key)
        {
            return None;
        }
        let estimate = match key.1 {
            Form::Lists if entries_per_list(index, rows) < MIN_ENTRIES_PER_LIST => return None,
            Form::Lists => estimated_bytes(index, rows),
            Form::Codes => SubsetCodes::estimated_bytes(index, rows),
            Form::Rows => SubsetRows::estimated_bytes(index, rows),
            Form::Members => SubsetMembers::estimated_bytes(rows),
        };
        (held.bytes + held.pending_bytes + estimate <= budget(index)).then_some(estimate)
    }

    /// The subset of `choice` in form `T`, if kept.
    pub fn kept<T: Regrouped>(&self, choice: &SubsetChoice) -> Option<Arc<T>> {
        T::unwrap(self.lock().subsets.get(&(choice.key.clone(), T::FORM))?)
    }

    /// Claims the making of `choice`'s subset in `form`: `None` when it is kept, being made,
    /// refused, not worth making or past the budget. Whoever holds the claim makes it and hands
    /// it to [`finish`](Self::finish).
    pub fn claim(&self, index: &IvfPqIndex, choice: &SubsetChoice, form: Form) -> Option<Claim> {
        let mut held = self.lock();
        let key = (choice.key.clone(), form);
        let estimate = Self::room_for(&held, index, &key, choice.rows)?;
        held.pending.insert(key.clone(), estimate);
        held.pending_bytes += estimate;
        let copy_estimate = match form {
            Form::Rows => SubsetRows::estimated_copy_bytes(index, choice.rows),
            Form::Members => SubsetMembers::estimated_copy_bytes(index, choice.rows),
            _ => 0,
        };
        // Copies only while their own budget has room: the rows alone otherwise.
        let copy_estimate =
            if held.copy_bytes + held.pending_copy_bytes + copy_estimate <= copy_budget(index) {
                copy_estimate
            } else {
                0
            };
        held.pending_copy_bytes += copy_estimate;
        Some(Claim {
            key,
            estimate,
            copy_estimate,
            generation: held.generation,
        })
    }

    /// Makes the subset `claim` is for from the posting's rows (`rows`, over segment rows) and
    /// keeps it if it fits the budget (else refuses it for good): what the claim's holder runs.
    pub fn make<T: Regrouped>(
        &self,
        index: &IvfPqIndex,
        claim: Claim,
        rows: impl FnOnce() -> Option<RowSet>,
    ) {
        debug_assert_eq!(claim.key.1, T::FORM);
        let started = std::time::Instant::now();
        let copies = claim.copy_estimate > 0;
        let made = rows()
            .and_then(|rows| T::build(index, &rows, copies))
            .map(Arc::new);
        if let Some(subset) = &made {
            tracing::debug!(
                field = %claim.key.0.0,
                form = ?T::FORM,
                entries = subset.entries(),
                bytes = subset.memory_bytes(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "regrouped an indexed value's codes"
            );
        }
        let mut held = self.lock();
        if held.generation == claim.generation {
            held.pending.remove(&claim.key);
            held.pending_bytes -= claim.estimate;
            held.pending_copy_bytes -= claim.copy_estimate;
            match made {
                Some(subset)
                    if held.bytes + (subset.memory_bytes() - subset.copy_bytes())
                        <= budget(index)
                        && held.copy_bytes + subset.copy_bytes() <= copy_budget(index) =>
                {
                    held.bytes += subset.memory_bytes() - subset.copy_bytes();
                    held.copy_bytes += subset.copy_bytes();
                    held.subsets.insert(claim.key, T::wrap(subset));
                }
                _ => {
                    held.refused.insert(claim.key);
                }
            }
        }
        drop(held);
        self.settled.notify_all();
    }

    /// The subset of `choice` in form `T`, made now if not kept yet; `None` when it cannot be
    /// (see [`claim`](Self::claim)) or is being made elsewhere.
    #[cfg(test)]
    pub fn get_or_build<T: Regrouped>(
        &self,
        index: &IvfPqIndex,
        choice: &SubsetChoice,
        rows: impl FnOnce() -> Option<RowSet>,
    ) -> Option<Arc<T>> {
        if let Some(kept) = self.kept::<T>(choice) {
            return Some(kept);
        }
        let claim = self.claim(index, choice, T::FORM)?;
        self.make::<T>(index, claim, rows);
        self.kept::<T>(choice)
    }

    /// Waits until no subset is being made.
    pub fn wait_settled(&self) {
        let mut held = self.lock();
        while !held.pending.is_empty() {
            held = self.settled.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Drops every subset (the payload indexes they were chosen by changed); those being made
    /// are dropped when finished.
    pub fn clear(&self) {
        let mut held = self.lock();
        *held = Held {
            generation: held.generation + 1,
            ..Held::default()
        };
        drop(held);
        self.settled.notify_all();
    }

    /// Bytes held and subsets being made: what the shard's stats report, so an operator sees
    /// what regrouping costs in memory and when a fresh server has finished it.
    pub fn usage(&self) -> (usize, usize) {
        let held = self.lock();
        (held.bytes + held.copy_bytes, held.pending.len())
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bytes a segment's subsets may hold, copies of 8-bit codes apart.
fn budget(index: &IvfPqIndex) -> usize {
    index.code_bytes().saturating_mul(BUDGET_CODES)
}

/// The bytes of copies of 8-bit codes a segment's rows per list may hold.
fn copy_budget(index: &IvfPqIndex) -> usize {
    index.code_bytes().saturating_mul(BUDGET_COPIES)
}

/// About how many entries each list of a subset of `rows` rows holds.
fn entries_per_list(index: &IvfPqIndex, rows: usize) -> f64 {
    let share = rows as f64 / index.len().max(1) as f64;
    index.entries() as f64 * share / index.nlist().max(1) as f64
}

/// About the bytes of a per-list subset of `rows` rows: each list's whole blocks of codes and
/// a row number (4 bytes) per entry.
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
            whole: true,
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
        assert!(cache.available(&index, &first, Form::Lists));
        // 50 rows over 8 lists, 6 a list: mostly padding, never made.
        assert!(!cache.available(&index, &choice("sparse", 1, 50), Form::Lists));
        assert!(cache.available(&index, &choice("dense", 1, 200), Form::Lists));
        let built = cache
            .get_or_build::<SubsetLists>(&index, &first, all)
            .unwrap();
        assert_eq!(built.entries(), n);
        assert!(cache.usage().0 <= budget(&index));
        // Kept: the same subset without building (the rows are not asked for).
        let again = cache
            .get_or_build::<SubsetLists>(&index, &first, || panic!("rebuilt"))
            .unwrap();
        assert!(Arc::ptr_eq(&built, &again));
        // Every row `BUDGET_CODES` times more is past the budget: each holds the codes, and the
        // entries' row numbers beside them.
        let more: Vec<SubsetChoice> = (0..BUDGET_CODES as i64)
            .map(|v| choice("b", v, n))
            .collect();
        let kept = more
            .iter()
            .filter(|c| cache.get_or_build::<SubsetLists>(&index, c, all).is_some())
            .count();
        assert!(kept < BUDGET_CODES, "{kept}");
        // One refused is never made again, whether refused before or after it was made.
        for c in &more {
            let again = cache.get_or_build::<SubsetLists>(&index, c, || panic!("made again"));
            assert_eq!(again.is_some(), cache.available(&index, c, Form::Lists));
        }
        assert!(cache.usage().0 <= budget(&index));
        assert!(!cache.available(&index, &choice("c", 1, n), Form::Lists));
        assert!(cache.available(&index, &first, Form::Lists));
        cache.clear();
        assert_eq!(cache.usage().0, 0);
        assert!(cache.available(&index, &choice("c", 1, n), Form::Lists));
        assert!(
            SubsetCache::default()
                .get_or_build::<SubsetLists>(&built_index(n, 8), &first, all)
                .is_none()
        );
    }

    /// A value too sparse for per-list blocks is still made as one run of codes, which holds
    /// every row once (no padding per list) and shares the budget with the per-list form.
    #[test]
    fn sparse_values_are_kept_as_one_run() {
        let n = 2_000;
        let index = built_index(n, 4);
        let cache = SubsetCache::default();
        let sparse = choice("sparse", 1, 50);
        assert!(!cache.available(&index, &sparse, Form::Lists));
        assert!(cache.available(&index, &sparse, Form::Codes));
        let rows = || Some(RowSet::from_rows(n, (0..n).step_by(40)));
        let codes = cache
            .get_or_build::<SubsetCodes>(&index, &sparse, rows)
            .unwrap();
        assert_eq!(codes.entries(), 50);
        assert!(codes.memory_bytes() <= SubsetCodes::estimated_bytes(&index, 50));
        assert_eq!(cache.usage().0, codes.memory_bytes());
        // Kept under its own form: the per-list form of the same value is another subset.
        let again = cache
            .get_or_build::<SubsetCodes>(&index, &sparse, || panic!("rebuilt"))
            .unwrap();
        assert!(Arc::ptr_eq(&codes, &again));
        assert!(
            cache
                .get_or_build::<SubsetLists>(&index, &sparse, || panic!("built"))
                .is_none()
        );
        // The budget is shared: runs of half the rows fill it.
        let tries = 2 * BUDGET_CODES as i64;
        let kept = (0..tries)
            .filter(|&v| {
                cache
                    .get_or_build::<SubsetCodes>(&index, &choice("half", v, n / 2), || {
                        Some(RowSet::from_rows(n, 0..n / 2))
                    })
                    .is_some()
            })
            .count();
        assert!((1..tries as usize).contains(&kept), "{kept}");
        assert!(cache.usage().0 <= budget(&index));
        assert!(
            SubsetCache::default()
                .get_or_build::<SubsetCodes>(&built_index(n, 8), &sparse, rows)
                .is_none()
        );
    }

    /// A value's rows per list are made at any density (no blocks to pad), hold each entry's
    /// row and own list and each list's offset (4 bytes each, within their estimate), share the
    /// budget with the coded forms, and are made for 8-bit codes too (no code is read).
    #[test]
    fn rows_per_list_are_kept_at_any_density_and_share_the_budget() {
        let n = 2_000;
        let index = built_index(n, 4);
        let cache = SubsetCache::default();
        let sparse = choice("sparse", 1, 50);
        assert!(!cache.available(&index, &sparse, Form::Lists));
        assert!(cache.available(&index, &sparse, Form::Rows));
        let rows = || Some(RowSet::from_rows(n, (0..n).step_by(40)));
        let kept = cache
            .get_or_build::<SubsetRows>(&index, &sparse, rows)
            .unwrap();
        assert_eq!(kept.entries(), 50);
        assert_eq!(kept.memory_bytes(), (2 * 50 + index.nlist() + 1) * 4);
        assert!(kept.memory_bytes() <= SubsetRows::estimated_bytes(&index, 50));
        assert_eq!(cache.usage().0, kept.memory_bytes());
        let again = cache
            .get_or_build::<SubsetRows>(&index, &sparse, || panic!("rebuilt"))
            .unwrap();
        assert!(Arc::ptr_eq(&kept, &again));
        // The rows of dense values fill the budget, which then has no room for either form.
        let tries = 64;
        let kept_rows = (0..tries)
            .filter(|&v| {
                cache
                    .get_or_build::<SubsetRows>(&index, &choice("all", v, n), || {
                        Some(RowSet::from_rows(n, 0..n))
                    })
                    .is_some()
            })
            .count();
        assert!((1..tries as usize).contains(&kept_rows), "{kept_rows}");
        let room = budget(&index) - cache.usage().0;
        assert!(SubsetRows::estimated_bytes(&index, n) > room);
        assert!(!cache.available(&index, &choice("dense", 1, n), Form::Rows));
        assert!(!cache.available(&index, &choice("dense", 1, n), Form::Codes));
        let eight = built_index(n, 8);
        let kept = SubsetCache::default()
            .get_or_build::<SubsetRows>(&eight, &sparse, rows)
            .unwrap();
        assert_eq!(kept.entries(), 50);
    }

    /// With 8-bit codes, rows per list and a value's members keep copies of them, counted
    /// against their own budget ([`BUDGET_COPIES`]) and not against the one every form shares;
    /// once it is spent, rows per list are still made, without copies.
    #[test]
    fn copies_of_8_bit_codes_have_a_budget_of_their_own() {
        let n = 2_000;
        let index = built_index(n, 4).with_sq8().unwrap();
        let cache = SubsetCache::default();
        let value = |v: i64| choice("sel", v, n / 10);
        let rows = |v: i64| move || Some(RowSet::from_rows(n, (v as usize..n).step_by(10)));
        let members = cache
            .get_or_build::<SubsetMembers>(&index, &value(0), rows(0))
            .unwrap();
        let member_copies = members.copy_memory_bytes();
        assert_eq!(members.entries(), n / 10);
        assert_eq!(member_copies, members.entries() * (16 + 4));
        let first = cache
            .get_or_build::<SubsetRows>(&index, &value(0), rows(0))
            .unwrap();
        let copies = first.copy_memory_bytes();
        assert_eq!(copies, first.entries() * (16 + 4));
        // The shared budget holds the rows alone; usage reports both.
        assert_eq!(
            cache.usage().0,
            first.memory_bytes() + members.memory_bytes()
        );
        assert_eq!(
            cache.lock().bytes,
            first.memory_bytes() - copies + members.memory_bytes() - member_copies
        );
        assert!(copies > 0 && copies + member_copies <= copy_budget(&index));
        // More values than the copies' budget holds: the later ones are kept without copies.
        let made: Vec<Arc<SubsetRows>> = (1..30)
            .map(|v| {
                cache
                    .get_or_build::<SubsetRows>(&index, &value(v), rows(v))
                    .unwrap()
            })
            .collect();
        let with = made.iter().filter(|r| r.copy_memory_bytes() > 0).count();
        assert!(with < made.len(), "{with} of {} with copies", made.len());
        assert!(made.iter().any(|r| r.copy_memory_bytes() == 0));
        let held = cache.lock();
        assert!(held.copy_bytes <= copy_budget(&index));
        assert_eq!(
            held.copy_bytes,
            member_copies + copies + made.iter().map(|r| r.copy_memory_bytes()).sum::<usize>()
        );
        assert!(held.bytes <= budget(&index));
    }

    /// A subset is claimed by one maker at a time, held against the budget and planned with
    /// (not kept) while made, kept when made, and dropped when the cache was cleared meanwhile
    /// (it was made from postings the clear replaced); waiting for the cache to settle waits
    /// for the maker.
    #[test]
    fn a_claimed_subset_is_made_once_and_dropped_if_cleared_meanwhile() {
        let n = 2_000;
        let index = Arc::new(built_index(n, 4));
        let cache = Arc::new(SubsetCache::default());
        // A quarter of the rows each: two such runs fit the budget together.
        let all = move || Some(RowSet::from_rows(n, 0..n / 4));
        let a = choice("a", 1, n / 4);
        let claim = cache.claim(&index, &a, Form::Codes).unwrap();
        assert!(cache.claim(&index, &a, Form::Codes).is_none());
        // Being made, it is still the form a search plans with (not kept yet): so the search
        // does not ask for the next best form meanwhile.
        assert!(cache.available(&index, &a, Form::Codes));
        let codes = Form::PLANNED
            .iter()
            .position(|&f| f == Form::Codes)
            .unwrap();
        assert_eq!(cache.forms(&index, &a)[codes], (true, false));
        let maker = {
            let (index, cache) = (Arc::clone(&index), Arc::clone(&cache));
            std::thread::spawn(move || cache.make::<SubsetCodes>(&index, claim, all))
        };
        cache.wait_settled();
        assert!(cache.is_kept(&a, Form::Codes));
        assert_eq!(cache.kept::<SubsetCodes>(&a).unwrap().entries(), n / 4);
        maker.join().unwrap();
        let b = choice("b", 1, n / 4);
        let claim = cache.claim(&index, &b, Form::Codes).unwrap();
        cache.clear();
        cache.make::<SubsetCodes>(&index, claim, all);
        assert!(!cache.is_kept(&b, Form::Codes));
        assert_eq!(cache.usage().0, 0);
        assert!(cache.available(&index, &b, Form::Codes));
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
                rows: 10,
                whole: false,
            })
        );
        assert_eq!(
            pick(json!({"must": [half]})).map(|c| (c.rows, c.whole)),
            Some((50, true))
        );
        let not_x = json!({"must_not": [{"key": "x", "match": {"value": 1}}]});
        let mut with_not = not_x.clone();
        with_not["must"] = json!([ten]);
        assert_eq!(pick(with_not).map(|c| c.whole), Some(false));
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
