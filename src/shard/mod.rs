//! One replica's engine: the state a shard's log produces, and the queries it answers.
//!
//! A [`Shard`] is fed [`ShardCommand`]s in log order through [`Shard::apply`], which skips every
//! index at or below the last one applied, so replaying a log (after a restore, or when Raft
//! re-delivers entries) is harmless.
//!
//! ## Layout
//! - One **mutable segment**: a [`FlatIndex`] (exact search) that new points are appended to.
//! - Zero or more **sealed segments**. When the mutable segment reaches `seal_threshold` rows it is
//!   frozen (it keeps answering queries, exactly), a fresh mutable segment takes the writes, and a
//!   background thread builds an [`IvfPqIndex`] from the frozen rows (rayon-parallel). The built
//!   index replaces the frozen one under the write lock in one pointer swap; the rows keep their
//!   numbers, so tombstones and payloads written meanwhile stay valid.
//! - An **id map** `PointId → (segment, row)` (a `BTreeMap`, which also gives `scroll` its order).
//! - **Tombstones**: a live-row [`RowSet`] per segment. An update tombstones the old row and appends
//!   a new one; a delete only tombstones.
//!
//! Inside a segment, the index's id of a row is the row number itself, so a hit maps straight back
//! to the segment's point and payload arrays.
//!
//! ## Filters
//! A filter is evaluated into a [`RowSet`] per segment (live rows that match) which is passed
//! **into** the index search, so a filtered query returns `limit` hits whenever that many points
//! match — no post-filtering. A sealed segment answers a selective filter (at most
//! [`EXACT_SCAN_ROWS`] matching rows), or one whose probed lists held too few matches, by an exact
//! scan of the matching rows.
//!
//! ## Concurrency
//! All state sits behind one `RwLock`: commands take it for writing only while they append rows
//! or flip tombstones; queries share it for reading. Index builds run outside the lock.

pub mod command;
pub mod filter;
pub mod point;
pub mod snapshot;

pub use command::{PointWrite, ShardCommand};
pub use filter::{CompiledFilter, Filter, FilterError};
pub use point::{Payload, PointId};

use crate::index::distance;
use crate::index::ivfpq::{IvfPqConfig, IvfPqIndex, SearchParams};
use crate::index::{FlatIndex, IndexError, Metric, Neighbor, RowSet, TopK};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A filter letting at most this many rows of a sealed segment through is answered by scanning
/// those rows exactly: cheaper than probing lists that hold few of them, and it never comes back
/// short of the limit.
pub const EXACT_SCAN_ROWS: usize = 512;

/// How a shard is shaped; fixed for the shard's life (it comes from the collection's config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardConfig {
    /// Vector dimension.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Rows after which the mutable segment is sealed into an IVF-PQ segment (0 = never seal).
    pub seal_threshold: usize,
    /// Inverted lists of sealed segments (lowered for a small segment so training has data).
    pub nlist: usize,
    /// PQ sub-spaces; divides `dim`.
    pub pq_m: usize,
    /// PQ bits per code: 4 or 8.
    pub pq_bits: u8,
    /// Seed for index training, so every replica and every rebuild gets the same index.
    pub seed: u64,
}

impl ShardConfig {
    /// The IVF-PQ build configuration for a sealed segment of `n` rows: `nlist` is capped so that
    /// each list gets training data (about 39 points per list, as FAISS recommends).
    pub fn ivf_config(&self, n: usize) -> IvfPqConfig {
        let mut c = IvfPqConfig::new(
            self.metric,
            self.nlist.min((n / 39).max(1)),
            self.pq_m,
            self.pq_bits,
        );
        c.seed = self.seed;
        c
    }
}

/// Why a shard refused a command or a query. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A vector has the wrong dimension.
    #[error("wrong vector dimension: expected {expected}, got {got}")]
    Dimension {
        /// The collection's dimension.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("vector contains NaN or infinite values")]
    NonFinite,
    /// The same id appears twice in one upsert.
    #[error("duplicate point id {0} in one request")]
    DuplicateId(PointId),
    /// A filter is malformed.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A search parameter is out of range.
    #[error("invalid search parameter: {0}")]
    Param(String),
    /// Snapshot or restore I/O failed.
    #[error("snapshot I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot file is damaged or from an unknown format.
    #[error("corrupted snapshot: {0}")]
    Corrupted(String),
    /// The index refused an operation.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// A point as `get` and `scroll` return it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The id.
    pub id: PointId,
    /// The payload, when asked for and present.
    pub payload: Option<Arc<Payload>>,
    /// The stored vector (normalised for cosine), when asked for.
    pub vector: Option<Vec<f32>>,
}

/// A search hit with its distance (smaller is closer, see [`Metric`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The point.
    pub record: Record,
    /// Its distance to the query.
    pub distance: f32,
}

/// A search as the shard runs it.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// The query vector.
    pub vector: &'a [f32],
    /// Hits to return (after `offset`).
    pub limit: usize,
    /// Best hits to skip.
    pub offset: usize,
    /// Only points passing this filter.
    pub filter: Option<&'a CompiledFilter>,
    /// IVF lists to probe in sealed segments.
    pub nprobe: usize,
    /// Re-rank factor in sealed segments (0 = ADC distances).
    pub rerank: usize,
    /// Scan every row exactly instead of using the IVF-PQ index.
    pub exact: bool,
    /// Return payloads.
    pub with_payload: bool,
    /// Return vectors.
    pub with_vector: bool,
}

/// Counters for `/metrics` and collection info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardStats {
    /// Live points.
    pub points: usize,
    /// Segments, mutable one included.
    pub segments: usize,
    /// Segments with a built IVF-PQ index.
    pub indexed_segments: usize,
    /// Live points in IVF-PQ segments.
    pub indexed_points: usize,
    /// Index builds in progress.
    pub building: usize,
    /// Last applied log index.
    pub last_applied: u64,
}

/// What a segment searches with.
#[derive(Debug, Clone)]
enum SegIndex {
    Flat(FlatIndex),
    IvfPq {
        index: Box<IvfPqIndex>,
        /// Segment row → index row (the inverse of `index.ids()`).
        pos: Vec<u32>,
    },
}

/// A segment's rows; frozen segments share it behind an `Arc`.
#[derive(Debug, Clone)]
struct SegmentData {
    points: Vec<PointId>,
    payloads: Vec<Option<Arc<Payload>>>,
    index: SegIndex,
}

impl SegmentData {
    fn empty(config: &ShardConfig) -> Self {
        SegmentData {
            points: Vec::new(),
            payloads: Vec::new(),
            index: SegIndex::Flat(FlatIndex::new(config.dim, config.metric)),
        }
    }

    fn len(&self) -> usize {
        self.points.len()
    }

    fn vector(&self, row: usize) -> Option<&[f32]> {
        match &self.index {
            SegIndex::Flat(f) => f.vector(row),
            SegIndex::IvfPq { index, pos } => index.vector(*pos.get(row)? as usize),
        }
    }

    /// The rows of the segment in row order, flattened (for index builds).
    fn vectors(&self, dim: usize) -> Vec<f32> {
        match &self.index {
            SegIndex::Flat(f) => f.vectors().to_vec(),
            SegIndex::IvfPq { .. } => {
                let mut out = Vec::with_capacity(self.len() * dim);
                for row in 0..self.len() {
                    out.extend_from_slice(self.vector(row).unwrap_or(&[]));
                }
                out
            }
        }
    }
}

#[derive(Debug)]
struct Segment {
    id: u32,
    data: Arc<SegmentData>,
    live: RowSet,
    live_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    seg: u32,
    row: u32,
}

#[derive(Debug)]
struct State {
    last_applied: u64,
    next_segment: u32,
    /// Sealed (frozen or indexed) segments, then the mutable one last.
    segments: Vec<Segment>,
    ids: BTreeMap<PointId, Loc>,
    /// Version of the last `UpsertAt`/`DeleteAt` applied per id.
    versions: std::collections::HashMap<PointId, u64>,
}

impl State {
    fn new(config: &ShardConfig) -> Self {
        State {
            last_applied: 0,
            next_segment: 1,
            segments: vec![Segment {
                id: 0,
                data: Arc::new(SegmentData::empty(config)),
                live: RowSet::new(0),
                live_count: 0,
            }],
            ids: BTreeMap::new(),
            versions: std::collections::HashMap::new(),
        }
    }

    fn segment(&self, id: u32) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    fn segment_mut(&mut self, id: u32) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.id == id)
    }

    fn tombstone(&mut self, id: &PointId) -> bool {
        let Some(loc) = self.ids.remove(id) else {
            return false;
        };
        if let Some(seg) = self.segment_mut(loc.seg)
            && seg.live.contains(loc.row as usize)
        {
            seg.live.remove(loc.row as usize);
            seg.live_count -= 1;
        }
        true
    }

    fn record(
        &self,
        id: PointId,
        loc: Loc,
        with_payload: bool,
        with_vector: bool,
    ) -> Option<Record> {
        let seg = self.segment(loc.seg)?;
        let row = loc.row as usize;
        Some(Record {
            id,
            payload: if with_payload {
                seg.data.payloads.get(row).cloned().flatten()
            } else {
                None
            },
            vector: if with_vector {
                seg.data.vector(row).map(<[f32]>::to_vec)
            } else {
                None
            },
        })
    }

    /// Live rows of `seg` passing `filter`, as a set over segment rows.
    fn allowed(seg: &Segment, filter: Option<&CompiledFilter>) -> RowSet {
        match filter {
            None => seg.live.clone(),
            Some(f) if f.is_empty() => seg.live.clone(),
            Some(f) => {
                let mut set = RowSet::new(seg.data.len());
                for row in seg.live.iter() {
                    if f.matches(&seg.data.points[row], seg.data.payloads[row].as_deref()) {
                        set.insert(row);
                    }
                }
                set
            }
        }
    }
}

/// Progress of background builds, so tests and shutdown can wait for them.
#[derive(Debug, Default)]
struct Builds {
    running: Mutex<usize>,
    done: Condvar,
}

#[derive(Debug)]
struct Inner {
    config: ShardConfig,
    state: RwLock<State>,
    builds: Builds,
    /// Builds in flight (mirrors `builds.running` for lock-free reads).
    building: AtomicUsize,
    /// Whether sealing runs the build on a background thread (tests may build inline).
    background: bool,
}

/// One shard replica's engine. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct Shard {
    inner: Arc<Inner>,
}

fn read(lock: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write(lock: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Checks a vector for the shard's dimension and finiteness.
pub fn check_vector(dim: usize, v: &[f32]) -> Result<(), ShardError> {
    if v.len() != dim {
        return Err(ShardError::Dimension {
            expected: dim,
            got: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(ShardError::NonFinite);
    }
    Ok(())
}

impl Shard {
    /// An empty shard. Sealed segments are indexed on a background thread.
    pub fn new(config: ShardConfig) -> Self {
        Self::with_state(config, None, true)
    }

    /// An empty shard that builds sealed segments inline during `apply` (deterministic tests).
    pub fn new_inline_builds(config: ShardConfig) -> Self {
        Self::with_state(config, None, false)
    }

    fn with_state(config: ShardConfig, state: Option<State>, background: bool) -> Self {
        let state = state.unwrap_or_else(|| State::new(&config));
        Shard {
            inner: Arc::new(Inner {
                config,
                state: RwLock::new(state),
                builds: Builds::default(),
                building: AtomicUsize::new(0),
                background,
            }),
        }
    }

    /// The shard's shape.
    pub fn config(&self) -> &ShardConfig {
        &self.inner.config
    }

    /// The last log index applied.
    pub fn last_applied(&self) -> u64 {
        read(&self.inner.state).last_applied
    }

    /// Checks a command without applying it, so that callers can refuse bad input before it is
    /// logged. `apply` runs the same checks.
    pub fn validate(&self, command: &ShardCommand) -> Result<(), ShardError> {
        match command {
            ShardCommand::Upsert { points } | ShardCommand::UpsertAt { points, .. } => {
                let mut seen = HashSet::with_capacity(points.len());
                for p in points {
                    check_vector(self.inner.config.dim, &p.vector)?;
                    if !seen.insert(p.id) {
                        return Err(ShardError::DuplicateId(p.id));
                    }
                }
                Ok(())
            }
            ShardCommand::Delete { .. } | ShardCommand::DeleteAt { .. } => Ok(()),
            ShardCommand::DeleteByFilter { filter } => {
                filter.compile()?;
                Ok(())
            }
        }
    }

    /// Applies the command at log `index`. Indices at or below the last applied are skipped (and
    /// return `Ok(false)`), so replay is idempotent. An invalid command changes nothing but the
    /// applied index, so every replica skips it the same way.
    pub fn apply(&self, index: u64, command: &ShardCommand) -> Result<bool, ShardError> {
        let mut state = write(&self.inner.state);
        if index <= state.last_applied {
            return Ok(false);
        }
        state.last_applied = index;
        self.validate(command)?;
        let newer = |state: &State, id: &PointId, version: u64| {
            version >= state.versions.get(id).copied().unwrap_or(0)
        };
        let versioned: Vec<PointWrite>;
        let points: &[PointWrite] = match command {
            ShardCommand::Upsert { points } => points,
            ShardCommand::UpsertAt { points, version } => {
                versioned = points
                    .iter()
                    .filter(|p| newer(&state, &p.id, *version))
                    .cloned()
                    .collect();
                for p in &versioned {
                    state.versions.insert(p.id, *version);
                }
                &versioned
            }
            _ => &[],
        };
        match command {
            ShardCommand::Upsert { .. } | ShardCommand::UpsertAt { .. } => {
                for p in points {
                    state.tombstone(&p.id);
                    let Some(seg) = state.segments.last_mut() else {
                        continue;
                    };
                    let seg_id = seg.id;
                    let row = seg.data.len();
                    // Only a snapshot in progress can share the mutable segment's data (queries
                    // borrow it under the read lock we now exclude), so `make_mut` copies rarely.
                    let data = Arc::make_mut(&mut seg.data);
                    if let SegIndex::Flat(flat) = &mut data.index {
                        flat.add(row as u64, &p.vector)?;
                    }
                    data.points.push(p.id);
                    data.payloads.push(p.payload.clone().map(Arc::new));
                    seg.live.resize(row + 1);
                    seg.live.insert(row);
                    seg.live_count += 1;
                    state.ids.insert(
                        p.id,
                        Loc {
                            seg: seg_id,
                            row: row as u32,
                        },
                    );
                    self.maybe_seal(&mut state);
                }
            }
            ShardCommand::Delete { ids } => {
                for id in ids {
                    state.tombstone(id);
                }
            }
            ShardCommand::DeleteAt { ids, version } => {
                for id in ids {
                    if newer(&state, id, *version) {
                        state.versions.insert(*id, *version);
                        state.tombstone(id);
                    }
                }
            }
            ShardCommand::DeleteByFilter { filter } => {
                let filter = filter.compile()?;
                let doomed: Vec<PointId> = state
                    .segments
                    .iter()
                    .flat_map(|seg| {
                        State::allowed(seg, Some(&filter))
                            .iter()
                            .map(|row| seg.data.points[row])
                            .collect::<Vec<_>>()
                    })
                    .collect();
                for id in &doomed {
                    state.tombstone(id);
                }
            }
        }
        Ok(true)
    }

    /// Freezes the mutable segment once it is full and starts its index build.
    fn maybe_seal(&self, state: &mut State) {
        let threshold = self.inner.config.seal_threshold;
        let full = state
            .segments
            .last()
            .is_some_and(|s| threshold > 0 && s.data.len() >= threshold);
        if !full {
            return;
        }
        let id = state.next_segment;
        state.next_segment += 1;
        state.segments.push(Segment {
            id,
            data: Arc::new(SegmentData::empty(&self.inner.config)),
            live: RowSet::new(0),
            live_count: 0,
        });
        let frozen_idx = state.segments.len() - 2;
        let frozen = Arc::clone(&state.segments[frozen_idx].data);
        let frozen_id = state.segments[frozen_idx].id;
        *self
            .inner
            .builds
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
        self.inner.building.fetch_add(1, Ordering::SeqCst);
        if self.inner.background {
            let shard = self.clone();
            std::thread::spawn(move || shard.finish_build(frozen_id, &frozen, None));
        } else {
            self.finish_build(frozen_id, &frozen, Some(state));
        }
    }

    /// Builds the IVF-PQ index of a frozen segment and swaps it in. `locked` is the state when the
    /// caller already holds the write lock (inline builds).
    fn finish_build(&self, seg_id: u32, frozen: &SegmentData, locked: Option<&mut State>) {
        let built = build_ivfpq(&self.inner.config, frozen);
        let swap = |state: &mut State| {
            if let (Some(index), Some(seg)) = (built, state.segment_mut(seg_id)) {
                seg.data = Arc::new(SegmentData {
                    points: frozen.points.clone(),
                    payloads: frozen.payloads.clone(),
                    index,
                });
            }
        };
        match locked {
            Some(state) => swap(state),
            None => swap(&mut write(&self.inner.state)),
        }
        self.inner.building.fetch_sub(1, Ordering::SeqCst);
        let mut running = self
            .inner
            .builds
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        self.inner.builds.done.notify_all();
    }

    /// Blocks until no index build is running (tests, shutdown, snapshots).
    pub fn wait_for_builds(&self) {
        let mut running = self
            .inner
            .builds
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while *running > 0 {
            running = self
                .inner
                .builds
                .done
                .wait(running)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The nearest live points to the query, closest first (ties by id).
    pub fn search(&self, req: &SearchRequest<'_>) -> Result<Vec<Hit>, ShardError> {
        check_vector(self.inner.config.dim, req.vector)?;
        if req.nprobe == 0 {
            return Err(ShardError::Param("nprobe must be at least 1".into()));
        }
        let k = req.limit.saturating_add(req.offset);
        if k == 0 {
            return Ok(Vec::new());
        }
        let metric = self.inner.config.metric;
        let mut query = req.vector.to_vec();
        if metric == Metric::Cosine {
            distance::normalize(&mut query);
        }
        let params = SearchParams {
            nprobe: req.nprobe,
            rerank: req.rerank,
        };
        let state = read(&self.inner.state);
        let mut all: Vec<(f32, PointId, u32, u32)> = Vec::new();
        for seg in &state.segments {
            if seg.live_count == 0 {
                continue;
            }
            let allowed = State::allowed(seg, req.filter);
            if allowed.count() == 0 {
                continue;
            }
            let hits: Vec<Neighbor> = match &seg.data.index {
                SegIndex::Flat(flat) => flat.search(&query, k, Some(&allowed)),
                SegIndex::IvfPq { index, .. } => {
                    let matching = allowed.count();
                    let approx = if req.exact || matching <= EXACT_SCAN_ROWS {
                        None
                    } else if matching == index.len() {
                        // Every row is live and passes: no row set to translate.
                        Some(index.search(&query, k, &params, None))
                    } else {
                        // The index filters by its own rows, which are in list order.
                        let rows = RowSet::from_rows(
                            index.len(),
                            index
                                .ids()
                                .iter()
                                .enumerate()
                                .filter(|(_, local)| allowed.contains(**local as usize))
                                .map(|(r, _)| r),
                        );
                        Some(index.search(&query, k, &params, Some(&rows)))
                    };
                    match approx {
                        // The probed lists held enough matching rows.
                        Some(hits) if hits.len() >= k.min(matching) => hits,
                        // Exact requested, a selective filter, or too few matches in the probed
                        // lists: scan the allowed rows exactly so the limit is still filled.
                        _ => {
                            let mut top = TopK::new(k);
                            for row in allowed.iter() {
                                if let Some(v) = seg.data.vector(row) {
                                    top.push(row as u64, distance::distance(metric, &query, v));
                                }
                            }
                            top.into_sorted_vec()
                        }
                    }
                }
            };
            all.extend(hits.into_iter().filter_map(|n| {
                let row = n.id as usize;
                seg.data
                    .points
                    .get(row)
                    .map(|id| (n.distance, *id, seg.id, row as u32))
            }));
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(all
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .filter_map(|(d, id, seg, row)| {
                state
                    .record(id, Loc { seg, row }, req.with_payload, req.with_vector)
                    .map(|record| Hit {
                        record,
                        distance: d,
                    })
            })
            .collect())
    }

    /// The points with these ids that exist, in the order asked (each id once).
    pub fn get(&self, ids: &[PointId], with_payload: bool, with_vector: bool) -> Vec<Record> {
        let state = read(&self.inner.state);
        let mut seen = HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| {
                let loc = *state.ids.get(id)?;
                state.record(*id, loc, with_payload, with_vector)
            })
            .collect()
    }

    /// Live points passing the filter.
    pub fn count(&self, filter: Option<&CompiledFilter>) -> usize {
        let state = read(&self.inner.state);
        match filter {
            Some(f) if !f.is_empty() => state
                .segments
                .iter()
                .map(|s| State::allowed(s, Some(f)).count())
                .sum(),
            _ => state.ids.len(),
        }
    }

    /// Up to `limit` points with id ≥ `offset` passing the filter, in id order, and the id to
    /// continue from (if any point remains).
    pub fn scroll(
        &self,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<&CompiledFilter>,
        with_payload: bool,
        with_vector: bool,
    ) -> (Vec<Record>, Option<PointId>) {
        let state = read(&self.inner.state);
        let mut out = Vec::new();
        let range = match offset {
            Some(o) => state.ids.range(o..),
            None => state.ids.range(..),
        };
        for (id, loc) in range {
            let Some(seg) = state.segment(loc.seg) else {
                continue;
            };
            let row = loc.row as usize;
            if let Some(f) = filter
                && !f.matches(id, seg.data.payloads[row].as_deref())
            {
                continue;
            }
            if out.len() == limit {
                return (out, Some(*id));
            }
            if let Some(r) = state.record(*id, *loc, with_payload, with_vector) {
                out.push(r);
            }
        }
        (out, None)
    }

    /// Counts for metrics and collection info.
    pub fn stats(&self) -> ShardStats {
        let state = read(&self.inner.state);
        let mut s = ShardStats {
            points: state.ids.len(),
            segments: state.segments.len(),
            building: self.inner.building.load(Ordering::SeqCst),
            last_applied: state.last_applied,
            ..ShardStats::default()
        };
        for seg in &state.segments {
            if matches!(seg.data.index, SegIndex::IvfPq { .. }) {
                s.indexed_segments += 1;
                s.indexed_points += seg.live_count;
            }
        }
        s
    }
}

/// Trains an IVF-PQ index over a frozen segment. `None` when the segment is too small to train
/// (it then stays a flat, exact segment — correct, only slower).
fn build_ivfpq(config: &ShardConfig, frozen: &SegmentData) -> Option<SegIndex> {
    let n = frozen.len();
    let vectors = frozen.vectors(config.dim);
    let ids: Vec<u64> = (0..n as u64).collect();
    match IvfPqIndex::build(config.dim, &vectors, &ids, &config.ivf_config(n)) {
        Ok(index) => {
            let mut pos = vec![0u32; n];
            for (r, local) in index.ids().iter().enumerate() {
                if let Some(p) = pos.get_mut(*local as usize) {
                    *p = r as u32;
                }
            }
            Some(SegIndex::IvfPq {
                index: Box::new(index),
                pos,
            })
        }
        Err(e) => {
            tracing::warn!(rows = n, error = %e, "segment kept flat: IVF-PQ build refused");
            None
        }
    }
}

#[cfg(test)]
mod tests;
