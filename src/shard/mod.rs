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
//! widens `nprobe` for the rest, scanning only the entries of an indexed value's rows where the
//! filter requires one ([`subsets`]); a segment whose probed lists held too few matches is also
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
//!
//! ## Files
//! `mod.rs` declares the [`Shard`] and what it holds; `open.rs` makes one, `apply.rs` is the write
//! path, `search.rs` the search path, `query.rs` the other reads and the counters, `sample.rs` the
//! random sample of the distance matrix, `build.rs` the
//! background index builds, `state.rs` the state behind the lock, `config.rs` and `error.rs` the
//! shape and the refusals. A replica runs one shard per vector of its collection ([`lanes`]).

mod apply;
mod build;
pub mod build_pool;
pub mod calibrate;
mod column;
pub mod command;
pub mod compaction;
mod config;
mod error;
mod facet;
pub mod filter;
pub mod lanes;
pub mod merge_policy;
mod open;
pub mod optimizations;
pub mod payload_index;
mod payload_ops;
mod planner;
pub mod point;
mod query;
mod sample;
pub mod seal;
mod search;
mod segment;
pub mod snapshot;
mod state;
mod subsets;
pub mod tuning;
mod values;

pub use apply::check_vector;
pub use calibrate::DEFAULT_RECALL_TARGET;
pub use command::{PointSelector, PointWrite, ShardCommand, VectorUpdate};
pub use compaction::CompactionConfig;
pub use config::ShardConfig;
pub use error::ShardError;
pub use facet::FacetValue;
pub use filter::{CompiledFilter, Filter, FilterError};
pub use lanes::Lanes;
pub use optimizations::{JobKind, JobRecord, Optimizations};
pub use payload_index::{PayloadFieldInfo, PayloadFieldType, PayloadSchema};
pub use payload_ops::{OrderBy, OrderedRecord};
pub use point::{Payload, PointId};
pub use query::{Record, ShardStats};
pub use sample::{SampledPoint, sample_key};
pub use seal::MIN_SEAL_THRESHOLD;
pub use search::{EXACT_SCAN_ROWS, Hit, SearchRequest};
pub use tuning::{SearchPlan, SearchWork, SegmentCalibration, Tuning};
pub use values::{JsonPath, parse_datetime};

use build::Jobs;
use state::{Loc, State, empty_segment, read, record_in, write};
use std::path::PathBuf;
#[cfg(test)]
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, RwLock};

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

/// What every clone of a [`Shard`] shares: its shape, the state behind the lock, the counters of
/// background work.
#[derive(Debug)]
struct Inner {
    config: ShardConfig,
    state: RwLock<State>,
    jobs: Jobs,
    /// Running and recently finished jobs, for `get_optimizations`.
    job_log: optimizations::JobLog,
    /// Index builds in flight.
    building: AtomicUsize,
    /// Sealed segments (with their rows) whose index build waits on the pool, oldest first: the
    /// first of their jobs to run builds them together (`build.rs`). Locked only under the state
    /// lock.
    queued_builds: std::sync::Mutex<Vec<(u32, usize)>>,
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

#[cfg(test)]
mod lanes_tests;
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
#[cfg(test)]
mod vectorless_tests;
