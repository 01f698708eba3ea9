//! One replica's engine: the state a shard's log produces, and the queries it answers.
//!
//! A [`Shard`] is fed [`ShardCommand`]s in log order through [`Shard::apply`], which skips every
//! index at or below the last one applied, so replaying a log (after a restore, or when Raft
//! re-delivers entries) is harmless.
//!
//! ## Layout
//! - One **mutable segment**: flat chunks (exact search) that new points are appended to
//!   ([`segment`] explains the chunking).
//! - Zero or more **sealed segments**. When the mutable segment reaches `seal_threshold` rows, or
//!   has been idle for `compaction.idle_seal_ms` ([`seal`] explains why that is safe under Raft),
//!   it is frozen (it keeps answering queries, exactly), a fresh mutable segment takes the writes,
//!   and a job on the process's bounded [`build_pool`] builds an IVF-PQ index from the frozen rows
//!   (rayon-parallel, `nlist` following the segment's size), measures its recall curve
//!   ([`calibrate`]), writes it to a segment file in the shard's data directory (when it has one)
//!   and maps it back. The built segment replaces the frozen one under the write lock in one
//!   pointer swap; the rows keep their numbers, so tombstones and payloads written meanwhile stay
//!   valid. Sealed segments are merged in log-structured tiers ([`merge_policy`], [`compaction`]).
//! - A search without explicit `nprobe`/`rerank` uses each segment's calibrated choice for its
//!   recall target ([`tuning`]).
//! - An **id map** `PointId → (segment, row)` (a `BTreeMap`, which also gives `scroll` its order).
//! - **Tombstones**: a live-row [`RowSet`] per segment. An update tombstones the old row and appends
//!   a new one; a delete only tombstones.
//! - **Versions**: `PointId → version` of the last [`ShardCommand::UpsertAt`] or
//!   [`ShardCommand::DeleteAt`] applied to the id (deletes of absent ids included), so writes
//!   ordered by a hybrid logical clock resolve last-writer-wins whatever order they arrive in.
//!
//! Inside a segment, the index's id of a row is the row number itself, so a hit maps straight back
//! to the segment's point and payload arrays.
//!
//! ## Filters
//! A filter is evaluated into a [`RowSet`] per segment (live rows that match), through the
//! segment's payload indexes where the field has one ([`payload_index`], [`planner`]), and passed
//! **into** the index search, so a filtered query returns `limit` hits whenever that many points
//! match — no post-filtering. The planner searches a selective filter's matches exactly and
//! widens `nprobe` for the rest; a segment whose probed lists held too few matches is also
//! scanned exactly over its matching rows. Payload updates and the payload schema are
//! `payload_ops`.
//!
//! ## Concurrency
//! All state sits behind one `RwLock`, but no query holds it while it searches: a query takes the
//! read lock only to clone the segment list (an `Arc` per chunk, index and tombstone set) and then
//! searches that immutable view. Writes take the write lock to append rows or flip tombstones and
//! copy a shared chunk or tombstone set first (copy-on-write), so they never wait for a search.
//! Index builds and compactions ([`compaction`]) run on background threads outside the lock and
//! swap their result in atomically.

pub mod build_pool;
pub mod calibrate;
mod column;
pub mod command;
pub mod compaction;
mod facet;
pub mod filter;
pub mod merge_policy;
pub mod payload_index;
mod payload_ops;
mod planner;
pub mod point;
pub mod seal;
mod segment;
pub mod snapshot;
pub mod tuning;
mod values;

pub use calibrate::DEFAULT_RECALL_TARGET;
pub use command::{PointSelector, PointWrite, ShardCommand};
pub use compaction::CompactionConfig;
pub use facet::FacetValue;
pub use filter::{CompiledFilter, Filter, FilterError};
pub use payload_index::{PayloadFieldInfo, PayloadFieldType, PayloadSchema};
pub use payload_ops::{OrderBy, OrderedRecord};
pub use point::{Payload, PointId};
pub use seal::MIN_SEAL_THRESHOLD;
pub use tuning::{SearchPlan, SearchWork, SegmentCalibration, Tuning};
pub use values::{JsonPath, parse_datetime};

use crate::index::distance;
use crate::index::ivfpq::{IvfPqConfig, IvfPqIndex, SearchParams};
use crate::index::{FlatIndex, IndexError, Metric, Neighbor, RowSet, TopK};
use segment::{CHUNK_ROWS, Chunk, IvfSeg, Rows, SegBody, Segment};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Rows after which the mutable segment is sealed into an IVF-PQ segment (0 = never seal;
    /// otherwise at least [`MIN_SEAL_THRESHOLD`], see [`ShardConfig::validate`]).
    pub seal_threshold: usize,
    /// Inverted lists of a sealed segment of `seal_threshold` rows; other sizes scale it by
    /// `sqrt(rows / seal_threshold)` (see [`ShardConfig::ivf_config`]).
    pub nlist: usize,
    /// PQ sub-spaces; divides `dim`.
    pub pq_m: usize,
    /// PQ bits per code: 4 or 8.
    pub pq_bits: u8,
    /// Seed for index training, so every replica and every rebuild gets the same index.
    pub seed: u64,
    /// Background segment maintenance: idle sealing, tier merges, purging deleted rows (defaults
    /// when absent, so configurations written before compaction existed still load).
    #[serde(default)]
    pub compaction: CompactionConfig,
}

impl ShardConfig {
    /// The IVF-PQ build configuration for a sealed segment of `n` rows. `nlist` follows the
    /// segment's size: `nlist × sqrt(n / seal_threshold)`, the usual `nlist ∝ sqrt(n)` that keeps
    /// coarse search and list scans in proportion as merges grow segments (a segment of
    /// `seal_threshold` rows gets `nlist`, one four times larger twice as many lists). It is
    /// capped so that each list gets training data (about 39 points per list, as FAISS
    /// recommends).
    pub fn ivf_config(&self, n: usize) -> IvfPqConfig {
        let base = self.effective_seal_threshold();
        let scaled = if base == 0 {
            self.nlist
        } else {
            (self.nlist as f64 * (n as f64 / base as f64).sqrt()).round() as usize
        };
        let mut c = IvfPqConfig::new(
            self.metric,
            scaled.clamp(1, 1 << 20).min((n / 39).max(1)),
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
    /// A shard configuration is out of range.
    #[error("invalid shard configuration: {0}")]
    Config(String),
    /// Snapshot or restore I/O failed.
    #[error("snapshot I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot file is damaged or from an unknown format.
    #[error("corrupted snapshot: {0}")]
    Corrupted(String),
    /// The index refused an operation.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A payload index or payload update request is invalid.
    #[error("invalid payload request: {0}")]
    Payload(String),
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
    /// IVF lists to probe in sealed segments ([`Shard::search_tuned`]: only in segments without
    /// a calibration, unless its [`Tuning`] fixes it).
    pub nprobe: usize,
    /// Re-rank factor in sealed segments, 0 = ADC distances (as `nprobe` for `search_tuned`).
    pub rerank: usize,
    /// Scan every row exactly instead of using the IVF-PQ index.
    pub exact: bool,
    /// Return payloads.
    pub with_payload: bool,
    /// Return vectors.
    pub with_vector: bool,
}

/// Counters for `/metrics` and collection info.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShardStats {
    /// Live points.
    pub points: usize,
    /// Segments, mutable one included.
    pub segments: usize,
    /// Segments with a built IVF-PQ index.
    pub indexed_segments: usize,
    /// Live points in IVF-PQ segments.
    pub indexed_points: usize,
    /// Index builds in progress: seals and merges.
    pub building: usize,
    /// Last applied log index.
    pub last_applied: u64,
    /// Rows stored in segments, live or deleted (what disk and memory pay for).
    pub stored_rows: usize,
    /// Deleted (tombstoned) rows still stored, which a compaction would drop.
    pub deleted_rows: usize,
    /// Compactions in progress.
    pub compacting: usize,
    /// Rows the running compactions are rewriting (their progress unit).
    pub compacting_rows: usize,
    /// Compactions finished since the shard was loaded.
    pub compactions: u64,
    /// Deleted rows dropped by compactions since the shard was loaded.
    pub compacted_deleted_rows: u64,
    /// Per calibrated segment: the choice at the default recall target and the measured curve.
    pub calibrations: Vec<SegmentCalibration>,
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
    /// Version of the last versioned write of each id (deletes of absent ids included).
    versions: HashMap<PointId, u64>,
    /// Indexed payload fields ([`payload_ops`]).
    schema: PayloadSchema,
}

impl State {
    fn new() -> Self {
        State {
            last_applied: 0,
            next_segment: 1,
            segments: vec![empty_segment(0)],
            ids: BTreeMap::new(),
            versions: HashMap::new(),
            schema: PayloadSchema::new(),
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
            // Copies the set only if a query still reads the old one.
            Arc::make_mut(&mut seg.live).remove(loc.row as usize);
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
        record_in(
            self.segment(loc.seg)?,
            id,
            loc.row,
            with_payload,
            with_vector,
        )
    }

    /// Whether a versioned write of `id` at `version` wins over what was applied before.
    fn wins(&self, id: &PointId, version: u64) -> bool {
        version >= self.versions.get(id).copied().unwrap_or(0)
    }
}

fn empty_segment(id: u32) -> Segment {
    Segment {
        id,
        body: SegBody::Flat(Vec::new()),
        live: Arc::new(RowSet::new(0)),
        live_count: 0,
        rows: 0,
        busy: false,
    }
}

fn record_in(
    seg: &Segment,
    id: PointId,
    row: u32,
    with_payload: bool,
    with_vector: bool,
) -> Option<Record> {
    let row = row as usize;
    if row >= seg.rows {
        return None;
    }
    Some(Record {
        id,
        payload: if with_payload {
            seg.body.payload(row).cloned()
        } else {
            None
        },
        vector: if with_vector {
            seg.body.vector(row).map(<[f32]>::to_vec)
        } else {
            None
        },
    })
}

use planner::allowed;

/// Background jobs (index builds, compactions) in flight, so tests, snapshots and shutdown can
/// wait for them.
#[derive(Debug, Default)]
struct Jobs {
    running: Mutex<usize>,
    done: Condvar,
}

/// Test hooks: points where a background job or a search stops until the test lets it go.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// A search, once it holds its view, sends on the first channel and waits on the second.
    pub search: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
    /// A compaction, once it has gathered its rows, sends on the first and waits on the second.
    pub compaction: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

#[cfg(test)]
fn pause_at(slot: &Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>) {
    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((reached, go)) = taken {
        let _ = reached.send(());
        let _ = go.recv();
    }
}

#[derive(Debug)]
struct Inner {
    config: ShardConfig,
    state: RwLock<State>,
    jobs: Jobs,
    /// Index builds in flight.
    building: AtomicUsize,
    /// Compactions in flight, and the rows they rewrite.
    compacting: AtomicUsize,
    compacting_rows: AtomicUsize,
    compactions: AtomicU64,
    compacted_deleted_rows: AtomicU64,
    /// Index builds swapped in (see [`Shard::segment_changes`]).
    builds_swapped: AtomicU64,
    /// Whether sealing and compaction run on the build pool (tests may run them inline).
    background: bool,
    /// When the mutable segment was last written ([`seal::now_ms`]), for idle sealing.
    last_write_ms: AtomicU64,
    /// Where sealed segment files are written (none: segments stay in memory and snapshots write
    /// them out).
    data_dir: Option<PathBuf>,
    #[cfg(test)]
    hooks: Hooks,
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
    /// An empty shard without a data directory: sealed segments are indexed on a background
    /// thread and stay in memory (snapshots write them out).
    pub fn new(config: ShardConfig) -> Self {
        Self::with_state(config, None, true, None)
    }

    /// An empty shard that builds sealed segments and compacts inline during `apply`
    /// (deterministic tests).
    pub fn new_inline_builds(config: ShardConfig) -> Self {
        Self::with_state(config, None, false, None)
    }

    /// An empty shard whose sealed segments are written to files in `data_dir` (created if
    /// missing), so snapshots can hard-link them. Segment files left there by an earlier run are
    /// removed: an empty shard refers to none (a restore brings back the ones it needs).
    pub fn open(config: ShardConfig, data_dir: &Path) -> Result<Self, ShardError> {
        std::fs::create_dir_all(data_dir)?;
        snapshot::sweep_segment_dir(data_dir, &HashSet::new())?;
        Ok(Self::with_state(
            config,
            None,
            true,
            Some(data_dir.to_path_buf()),
        ))
    }

    fn with_state(
        config: ShardConfig,
        state: Option<State>,
        background: bool,
        data_dir: Option<PathBuf>,
    ) -> Self {
        let state = state.unwrap_or_else(State::new);
        if let Err(e) = config.validate() {
            // Refused when a collection is created; a shard persisted before the minimum existed
            // still opens, sealing at the minimum.
            tracing::warn!(error = %e, seal_threshold = config.effective_seal_threshold(), "sealing at the minimum");
        }
        let shard = Shard {
            inner: Arc::new(Inner {
                config,
                state: RwLock::new(state),
                jobs: Jobs::default(),
                building: AtomicUsize::new(0),
                compacting: AtomicUsize::new(0),
                compacting_rows: AtomicUsize::new(0),
                compactions: AtomicU64::new(0),
                compacted_deleted_rows: AtomicU64::new(0),
                builds_swapped: AtomicU64::new(0),
                background,
                last_write_ms: AtomicU64::new(seal::now_ms()),
                data_dir,
                #[cfg(test)]
                hooks: Hooks::default(),
            }),
        };
        shard.watch_idle();
        shard
    }

    /// The shard's shape.
    pub fn config(&self) -> &ShardConfig {
        &self.inner.config
    }

    /// The directory sealed segment files are written to, if any.
    pub fn data_dir(&self) -> Option<&Path> {
        self.inner.data_dir.as_deref()
    }

    /// How many built or compacted segments this engine has swapped in since it was opened.
    ///
    /// The cluster snapshots a replica when this moves: the new segment files then become the
    /// snapshot, so a restart maps them instead of replaying every write since the previous
    /// snapshot into a flat segment and building its index again (minutes for millions of
    /// points, with exact scans meanwhile).
    pub fn segment_changes(&self) -> u64 {
        self.inner.builds_swapped.load(Ordering::SeqCst)
            + self.inner.compactions.load(Ordering::SeqCst)
    }

    /// The last log index applied.
    pub fn last_applied(&self) -> u64 {
        read(&self.inner.state).last_applied
    }

    /// The version recorded for `id` by versioned writes (0 if none touched it).
    pub fn version(&self, id: &PointId) -> u64 {
        read(&self.inner.state)
            .versions
            .get(id)
            .copied()
            .unwrap_or(0)
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
            _ => payload_ops::validate(command),
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
        if matches!(
            command,
            ShardCommand::Upsert { .. } | ShardCommand::UpsertAt { .. }
        ) {
            self.touch();
        }
        let mut tombstoned = false;
        match command {
            ShardCommand::Upsert { points } => {
                for p in points {
                    tombstoned |= self.append(&mut state, p)?;
                }
            }
            ShardCommand::UpsertAt { points, version } => {
                for p in points {
                    if state.wins(&p.id, *version) {
                        state.versions.insert(p.id, *version);
                        tombstoned |= self.append(&mut state, p)?;
                    }
                }
            }
            ShardCommand::Delete { ids } => {
                for id in ids {
                    tombstoned |= state.tombstone(id);
                }
            }
            ShardCommand::DeleteAt { ids, version } => {
                for id in ids {
                    if state.wins(id, *version) {
                        state.versions.insert(*id, *version);
                        tombstoned |= state.tombstone(id);
                    }
                }
            }
            ShardCommand::DeleteByFilter { filter } => {
                let filter = filter.compile()?;
                let doomed: Vec<PointId> = state
                    .segments
                    .iter()
                    .flat_map(|seg| {
                        allowed(seg, Some(&filter))
                            .iter()
                            .filter_map(|row| seg.body.point(row))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                for id in &doomed {
                    tombstoned |= state.tombstone(id);
                }
            }
            _ => tombstoned |= self.apply_payload(&mut state, command)?,
        }
        if tombstoned {
            self.maybe_compact(&mut state);
        }
        Ok(true)
    }

    /// Appends one point to the mutable segment (tombstoning its old row); returns whether an
    /// old row was tombstoned.
    fn append(&self, state: &mut State, p: &PointWrite) -> Result<bool, ShardError> {
        let replaced = state.tombstone(&p.id);
        let config = &self.inner.config;
        let Some(seg) = state.segments.last_mut() else {
            return Ok(replaced);
        };
        let SegBody::Flat(chunks) = &mut seg.body else {
            return Ok(replaced);
        };
        let row = seg.rows;
        if chunks.last().is_none_or(|c| c.len() >= CHUNK_ROWS) {
            let mut chunk = Chunk::new(FlatIndex::new(config.dim, config.metric));
            chunk.index.sync(&state.schema, 0, |_| None);
            chunks.push(Arc::new(chunk));
        }
        if let Some(last) = chunks.last_mut() {
            // Copies the chunk only if a query still reads it (at most CHUNK_ROWS rows).
            let chunk = Arc::make_mut(last);
            chunk.flat.add(row as u64, &p.vector)?;
            chunk.index.add_row(chunk.points.len(), p.payload.as_ref());
            chunk.points.push(p.id);
            chunk.payloads.push(p.payload.clone().map(Arc::new));
        }
        let live = Arc::make_mut(&mut seg.live);
        live.resize(row + 1);
        live.insert(row);
        seg.rows += 1;
        seg.live_count += 1;
        let seg_id = seg.id;
        state.ids.insert(
            p.id,
            Loc {
                seg: seg_id,
                row: row as u32,
            },
        );
        self.maybe_seal(state);
        Ok(replaced)
    }

    fn start_job(&self) {
        *self
            .inner
            .jobs
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn end_job(&self) {
        let mut running = self
            .inner
            .jobs
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        self.inner.jobs.done.notify_all();
    }

    /// Marks a sealed flat segment busy and builds its index (in the background or inline).
    fn start_build(&self, state: &mut State, seg_id: u32) {
        let Some(seg) = state.segment_mut(seg_id) else {
            return;
        };
        let SegBody::Flat(chunks) = &seg.body else {
            return;
        };
        let chunks = chunks.clone();
        seg.busy = true;
        self.start_job();
        self.inner.building.fetch_add(1, Ordering::SeqCst);
        if self.inner.background {
            let shard = self.clone();
            build_pool::submit(move || shard.finish_build(seg_id, &chunks, None));
        } else {
            self.finish_build(seg_id, &chunks, Some(state));
        }
    }

    /// Builds the IVF-PQ index of a frozen segment and swaps it in. `locked` is the state when the
    /// caller already holds the write lock (inline builds).
    fn finish_build(&self, seg_id: u32, chunks: &[Arc<Chunk>], locked: Option<&mut State>) {
        let rows = Rows::from_chunks(chunks);
        let schema = match &locked {
            Some(state) => state.schema.clone(),
            None => read(&self.inner.state).schema.clone(),
        };
        // Payload indexes are built before the file is written, which stores them.
        let built = self
            .build_index(&rows)
            .and_then(|index| IvfSeg::new(index, rows.points, rows.payloads))
            .map(|seg| {
                let seg = self.calibrated(seg);
                payload_ops::index_ivf(&seg, &schema);
                self.persist(seg_id, seg)
            });
        let swap = |state: &mut State| {
            match state.segment_mut(seg_id) {
                Some(seg) => {
                    if let Some(built) = built {
                        seg.body = SegBody::Ivf(Arc::new(built));
                        self.inner.builds_swapped.fetch_add(1, Ordering::SeqCst);
                    }
                    seg.busy = false;
                }
                None => {
                    if let Some(f) = built.as_ref().and_then(|b| b.file.as_ref()) {
                        f.retire();
                    }
                }
            }
            // The schema may have changed during the build.
            let State {
                segments, schema, ..
            } = &mut *state;
            if let Some(seg) = segments.iter_mut().find(|s| s.id == seg_id) {
                payload_ops::sync_segment(seg, schema);
            }
            self.maybe_compact(state);
        };
        match locked {
            Some(state) => swap(state),
            None => swap(&mut write(&self.inner.state)),
        }
        self.inner.building.fetch_sub(1, Ordering::SeqCst);
        self.end_job();
    }

    /// Trains an IVF-PQ index over `rows` (ids = row numbers). `None` when the rows are too few
    /// to train (the segment then stays flat and exact: correct, only slower).
    fn build_index(&self, rows: &Rows) -> Option<IvfPqIndex> {
        let config = &self.inner.config;
        let n = rows.len();
        if n == 0 {
            return None;
        }
        let ids: Vec<u64> = (0..n as u64).collect();
        match IvfPqIndex::build(config.dim, &rows.vectors, &ids, &config.ivf_config(n)) {
            Ok(index) => Some(index),
            Err(e) => {
                tracing::warn!(rows = n, error = %e, "segment kept flat: IVF-PQ build refused");
                None
            }
        }
    }

    /// `seg` with its recall curve measured (see [`calibrate`]), before it is written out.
    fn calibrated(&self, mut seg: IvfSeg) -> IvfSeg {
        let c = &self.inner.config;
        seg.calibration = calibrate::calibrate(&seg.index, c.pq_m, c.pq_bits, c.seed).map(Arc::new);
        seg
    }

    /// Writes a built segment to its file in the data directory (if the shard has one) and maps
    /// the index back from it, so the heap copy is freed and snapshots can hard-link the file.
    /// On any failure the segment stays in memory (a snapshot then writes it out).
    fn persist(&self, seg_id: u32, mut seg: IvfSeg) -> IvfSeg {
        let Some(dir) = &self.inner.data_dir else {
            return seg;
        };
        let path = dir.join(segment::segment_file_name(seg_id));
        let mapped = segment::write_segment_file(&path, &seg).and_then(|()| {
            let container = crate::storage::Container::open(&path)?;
            let index = crate::storage::segment::index_from_container(&container)?;
            let file = segment::SegFile::open(path.clone())
                .map_err(|e| crate::storage::StorageError::io(&path, e))?;
            Ok((index, file))
        });
        match mapped {
            Ok((index, file)) if index.len() == seg.index.len() => {
                seg.index = index;
                seg.file = Some(file);
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(path = %path.display(), error = %e, "segment kept in memory: file not written");
                }
                let _ = std::fs::remove_file(&path);
            }
        }
        seg
    }

    /// Blocks until no background job (index build, compaction) is running (tests, shutdown,
    /// snapshots).
    pub fn wait_for_builds(&self) {
        let mut running = self
            .inner
            .jobs
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while *running > 0 {
            running = self
                .inner
                .jobs
                .done
                .wait(running)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The segments as they are now: an immutable view that queries search without the lock.
    fn view(&self) -> Vec<Segment> {
        read(&self.inner.state).segments.clone()
    }

    /// The nearest live points to the query, closest first (ties by id), searching sealed
    /// segments with exactly `req.nprobe` and `req.rerank`.
    pub fn search(&self, req: &SearchRequest<'_>) -> Result<Vec<Hit>, ShardError> {
        self.search_tuned(req, &Tuning::explicit(req.nprobe, req.rerank))
    }

    /// The nearest live points to the query, closest first (ties by id), each sealed segment
    /// searched with the parameters `tuning` picks for it (see [`tuning`]); `req.nprobe` and
    /// `req.rerank` serve segments that have no calibration.
    pub fn search_tuned(
        &self,
        req: &SearchRequest<'_>,
        tuning: &Tuning,
    ) -> Result<Vec<Hit>, ShardError> {
        let fallback = SearchParams {
            nprobe: req.nprobe,
            rerank: req.rerank,
        };
        self.search_planned(req, &self.plan_search(tuning, fallback)?)
    }

    /// The nearest live points to the query over the segments of `plan`, each sealed one with
    /// the parameters the plan resolved for it ([`Shard::plan_search`]).
    pub fn search_planned(
        &self,
        req: &SearchRequest<'_>,
        plan: &SearchPlan,
    ) -> Result<Vec<Hit>, ShardError> {
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
        let view = &plan.segments;
        #[cfg(test)]
        pause_at(&self.inner.hooks.search);
        let mut all: Vec<(f32, PointId, usize, u32)> = Vec::new();
        for (i, seg) in view.iter().enumerate() {
            if seg.live_count == 0 {
                continue;
            }
            let filtered = req.filter.is_some_and(|f| !f.is_empty());
            let filtered_rows;
            let pass: &RowSet = if filtered {
                filtered_rows = allowed(seg, req.filter);
                &filtered_rows
            } else {
                &seg.live
            };
            let matching = if filtered {
                pass.count()
            } else {
                seg.live_count
            };
            if matching == 0 {
                continue;
            }
            let hits: Vec<Neighbor> = match &seg.body {
                SegBody::Flat(chunks) => {
                    search_chunks(chunks, &query, k, (matching < seg.rows).then_some(pass))
                }
                SegBody::Ivf(ivf) => search_ivf(
                    ivf,
                    metric,
                    &query,
                    k,
                    (&plan.params[i], plan.target),
                    pass,
                    matching,
                    req.exact,
                    (self.inner.config.pq_m, self.inner.config.pq_bits),
                ),
            };
            all.extend(hits.into_iter().filter_map(|n| {
                let row = n.id as usize;
                seg.body
                    .point(row)
                    .map(|id| (n.distance, id, i, row as u32))
            }));
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(all
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .filter_map(|(d, id, i, row)| {
                record_in(&view[i], id, row, req.with_payload, req.with_vector).map(|record| Hit {
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
        match filter {
            Some(f) if !f.is_empty() => self
                .view()
                .iter()
                .map(|s| allowed(s, Some(f)).count())
                .sum(),
            _ => read(&self.inner.state).ids.len(),
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
        let filter = filter.filter(|f| !f.is_empty());
        // The matching rows of each segment, through the payload indexes.
        let sets: HashMap<u32, RowSet> = match filter {
            Some(f) => state
                .segments
                .iter()
                .map(|s| (s.id, allowed(s, Some(f))))
                .collect(),
            None => HashMap::new(),
        };
        let passes = |loc: &Loc| {
            filter.is_none()
                || sets
                    .get(&loc.seg)
                    .is_some_and(|s| s.contains(loc.row as usize))
        };
        let matching: usize = sets.values().map(RowSet::count).sum();
        if filter.is_some() && matching.saturating_mul(8) < state.ids.len() {
            // Few matches: sort their ids instead of walking every id.
            let mut ids: Vec<(PointId, Loc)> = state
                .segments
                .iter()
                .flat_map(|seg| {
                    let set = sets.get(&seg.id);
                    set.into_iter().flat_map(move |s| {
                        s.iter().filter_map(move |row| {
                            let id = seg.body.point(row)?;
                            (offset.is_none_or(|o| id >= o)).then_some((
                                id,
                                Loc {
                                    seg: seg.id,
                                    row: row as u32,
                                },
                            ))
                        })
                    })
                })
                .collect();
            ids.sort_unstable_by_key(|p| p.0);
            let next = ids.get(limit).map(|p| p.0);
            let out = ids
                .into_iter()
                .take(limit)
                .filter_map(|(id, loc)| state.record(id, loc, with_payload, with_vector))
                .collect();
            return (out, next);
        }
        let mut out = Vec::new();
        let range = match offset {
            Some(o) => state.ids.range(o..),
            None => state.ids.range(..),
        };
        for (id, loc) in range {
            if !passes(loc) {
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
            compacting: self.inner.compacting.load(Ordering::SeqCst),
            compacting_rows: self.inner.compacting_rows.load(Ordering::SeqCst),
            compactions: self.inner.compactions.load(Ordering::SeqCst),
            compacted_deleted_rows: self.inner.compacted_deleted_rows.load(Ordering::SeqCst),
            calibrations: tuning::calibrations_of(&state.segments),
            ..ShardStats::default()
        };
        for seg in &state.segments {
            s.stored_rows += seg.rows;
            s.deleted_rows += seg.rows - seg.live_count;
            if seg.is_indexed() {
                s.indexed_segments += 1;
                s.indexed_points += seg.live_count;
            }
        }
        s
    }
}

/// Exact search over a flat segment's chunks; `allowed` (over segment rows) limits the rows.
fn search_chunks(
    chunks: &[Arc<Chunk>],
    query: &[f32],
    k: usize,
    allowed: Option<&RowSet>,
) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    for (c, chunk) in chunks.iter().enumerate() {
        match allowed {
            None => chunk.flat.scan(query, None, &mut top),
            Some(a) => {
                let w0 = c * CHUNK_ROWS / 64;
                let Some(words) = a.words().get(w0..w0 + chunk.len().div_ceil(64)) else {
                    continue;
                };
                let Some(local) = RowSet::from_words(chunk.len(), words.to_vec()) else {
                    continue;
                };
                if local.count() > 0 {
                    chunk.flat.scan(query, Some(&local), &mut top);
                }
            }
        }
    }
    top.into_sorted_vec()
}

/// Search of a built segment: the index with the allowed rows passed in, or an exact scan of
/// them when asked, when the filter is selective or when the probed lists held too few.
#[allow(clippy::too_many_arguments)]
fn search_ivf(
    ivf: &IvfSeg,
    metric: Metric,
    query: &[f32],
    k: usize,
    (params, target): (&SearchParams, f64),
    allowed: &RowSet,
    matching: usize,
    exact: bool,
    (pq_m, pq_bits): (usize, u8),
) -> Vec<Neighbor> {
    let index = &ivf.index;
    let shape = planner::SegShape {
        rows: index.len(),
        nlist: index.nlist(),
        dim: index.dim(),
        pq_m,
        pq_bits,
    };
    let share = matching as f64 / index.len().max(1) as f64;
    let widening = match &ivf.calibration {
        Some(c) if matching < index.len() => c.widening(share, target, params.rerank),
        _ => None,
    };
    let plan = planner::plan_ivf(params, k, matching, &shape, widening);
    let approx = match plan {
        _ if exact => None,
        planner::Plan::Exact => None,
        // Every row is live and passes: nothing to check per candidate.
        planner::Plan::Ivf(p) if matching == index.len() => Some(index.search(query, k, &p, None)),
        // The index's ids are segment rows: it checks each candidate against the allowed rows.
        planner::Plan::Ivf(p) => Some(index.search_ids_in(query, k, &p, allowed)),
    };
    match approx {
        // The probed lists held enough matching rows.
        Some(hits) if hits.len() >= k.min(matching) => hits,
        // Exact requested, a selective filter, or too few matches in the probed lists: scan the
        // allowed rows exactly so the limit is still filled.
        _ => {
            let mut top = TopK::new(k);
            for row in allowed.iter() {
                if let Some(v) = ivf.vector(row) {
                    top.push(row as u64, distance::distance(metric, query, v));
                }
            }
            top.into_sorted_vec()
        }
    }
}

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod payload_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod raft_tests;
#[cfg(test)]
mod tests;
