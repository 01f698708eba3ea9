//! Maintenance in the background: the count of running jobs that snapshots, tests and shutdown
//! wait for, and the index build of a frozen segment (train, calibrate, index its payloads,
//! write and map its file, swap it in). Sealing decides when ([`super::seal`]), compaction
//! reuses the build steps ([`super::compaction`]).

use super::segment::{self, Chunk, IvfSeg, Rows, SegBody};
use super::{Shard, State, build_pool, calibrate, payload_ops, read, write};
use crate::index::ivfpq::IvfPqIndex;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

/// Background jobs (index builds, compactions) in flight, so tests, snapshots and shutdown can
/// wait for them.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    running: Mutex<usize>,
    done: Condvar,
}

impl Shard {
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

    pub(super) fn start_job(&self) {
        *self
            .inner
            .jobs
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
    }

    pub(super) fn end_job(&self) {
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
    pub(super) fn start_build(&self, state: &mut State, seg_id: u32) {
        let Some(seg) = state.segment_mut(seg_id) else {
            return;
        };
        let SegBody::Flat(chunks) = &seg.body else {
            return;
        };
        let chunks = chunks.clone();
        seg.busy = true;
        self.inner.job_log.started(
            super::JobKind::IndexBuild,
            seg_id,
            vec![(seg_id, seg.live_count)],
            seg.rows,
        );
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
        self.inner.job_log.finished(seg_id);
        self.end_job();
    }

    /// Trains an IVF-PQ index over `rows` (ids = row numbers), with 8-bit codes of the rows.
    /// `None` when the rows are too few to train (the segment then stays flat and exact: correct, only slower).
    pub(super) fn build_index(&self, rows: &Rows) -> Option<IvfPqIndex> {
        let config = &self.inner.config;
        let n = rows.len();
        if n == 0 {
            return None;
        }
        let ids: Vec<u64> = (0..n as u64).collect();
        // With 8-bit codes of the raw vectors: a filter's exact scans read them instead.
        match IvfPqIndex::build(config.dim, &rows.vectors, &ids, &config.ivf_config(n))
            .and_then(IvfPqIndex::with_sq8)
        {
            Ok(index) => Some(index),
            Err(e) => {
                tracing::warn!(rows = n, error = %e, "segment kept flat: IVF-PQ build refused");
                None
            }
        }
    }

    /// `seg` with its recall curve measured (see [`calibrate`]), before it is written out.
    pub(super) fn calibrated(&self, mut seg: IvfSeg) -> IvfSeg {
        let c = &self.inner.config;
        seg.calibration = calibrate::calibrate(&seg.index, c.pq_m, c.pq_bits, c.seed).map(Arc::new);
        seg
    }

    /// Writes a built segment to its file in the data directory (if the shard has one) and maps
    /// the index back from it, so the heap copy is freed and snapshots can hard-link the file.
    /// On any failure the segment stays in memory (a snapshot then writes it out).
    pub(super) fn persist(&self, seg_id: u32, mut seg: IvfSeg) -> IvfSeg {
        let Some(dir) = &self.inner.data_dir else {
            return seg;
        };
        let path = dir.join(segment::segment_file_name(seg_id));
        let mapped = segment::write_segment_file(&path, &seg).and_then(|()| {
            let container = crate::storage::Container::open(&path)?;
            let index = segment::mapped_index(&container, segment::segment_version(&container)?)?;
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
}
