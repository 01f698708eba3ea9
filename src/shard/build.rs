//! Maintenance in the background: the count of running jobs that snapshots, tests and shutdown
//! wait for, and the index build of a frozen segment (train, calibrate, index its payloads,
//! write and map its file, swap it in). Sealing decides when ([`super::seal`]), compaction
//! reuses the build steps ([`super::compaction`]).

use super::segment::{self, Chunk, IvfSeg, Rows, SegBody};
use super::{PayloadSchema, Shard, State, build_pool, calibrate, payload_ops, read, write};
use crate::index::ivfpq::IvfPqIndex;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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

    /// Marks a sealed flat segment busy and builds its index (queued on the build pool, or
    /// inline).
    pub(super) fn start_build(&self, state: &mut State, seg_id: u32) {
        let Some(seg) = state.segment_mut(seg_id) else {
            return;
        };
        let SegBody::Flat(chunks) = &seg.body else {
            return;
        };
        let chunks = chunks.clone();
        let rows = seg.rows;
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
            lock(&self.inner.queued_builds).push((seg_id, rows));
            let shard = self.clone();
            build_pool::submit(move || shard.run_queued_build(seg_id));
        } else {
            self.finish_build(seg_id, &chunks, Some(state));
        }
    }

    /// A queued build's job, run on the pool. It builds `seg_id` together with every other
    /// segment of this shard whose build is still queued (when compaction may merge), as one
    /// segment: a load that outruns the builds then pays one training, one calibration and no
    /// later merge for its backlog, instead of one of each per sealed segment and merges on
    /// top (on a 1M × 128 load over REST, 20 builds of 50,000 rows each spent as long
    /// calibrating as training). A job whose segment an earlier job took returns at once; that
    /// job ends its bookkeeping.
    fn run_queued_build(&self, seg_id: u32) {
        let mut state = write(&self.inner.state);
        let batch = {
            let mut queued = lock(&self.inner.queued_builds);
            let compaction = &self.inner.config.compaction;
            let cap = if compaction.enabled && compaction.tiers {
                compaction
                    .policy(self.inner.config.effective_seal_threshold())
                    .max_rows
            } else {
                0
            };
            claim_queued(&mut queued, seg_id, cap)
        };
        match batch.as_slice() {
            [] => {}
            [one] => match state.segment(*one).map(|s| &s.body) {
                Some(SegBody::Flat(chunks)) => {
                    let chunks = chunks.clone();
                    drop(state);
                    self.finish_build(seg_id, &chunks, None);
                }
                // Gone meanwhile (a snapshot was installed): nothing to build.
                _ => self.end_build(seg_id),
            },
            several => {
                let (new_id, sources) = self.begin_merge(&mut state, several);
                drop(state);
                tracing::debug!(
                    segments = ?several,
                    into = new_id,
                    "queued index builds taken together"
                );
                self.run_compaction(new_id, sources, None);
                for id in several {
                    self.end_build(*id);
                }
            }
        }
    }

    /// Ends the bookkeeping of one segment's index build.
    fn end_build(&self, seg_id: u32) {
        self.inner.building.fetch_sub(1, Ordering::SeqCst);
        self.inner.job_log.finished(seg_id);
        self.end_job();
    }

    /// Builds the IVF-PQ index of a frozen segment and swaps it in. `locked` is the state when the
    /// caller already holds the write lock (inline builds).
    fn finish_build(&self, seg_id: u32, chunks: &[Arc<Chunk>], locked: Option<&mut State>) {
        let rows = Rows::from_chunks(chunks);
        let schema = match &locked {
            Some(state) => state.schema.clone(),
            None => read(&self.inner.state).schema.clone(),
        };
        // Too few rows to train: the segment stays flat (exact: correct, only slower).
        let built = self
            .build_segment(seg_id, rows, &schema, super::JobKind::IndexBuild)
            .unwrap_or(None);
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
        self.end_build(seg_id);
    }

    /// The IVF-PQ segment of `rows`, ready to swap in: trained and encoded, calibrated, its
    /// payloads indexed under `schema` (before the file is written, which stores them), written
    /// and mapped back. Logs what each step took (`shoal::shard::build=debug`), so an operator
    /// can see where a load's indexing time goes. `Err(rows)` when the rows cannot be indexed
    /// (too few to train): the caller keeps them flat. `Ok(None)` only if the index does not
    /// hold exactly the rows (a bug, refused rather than swapped in).
    pub(super) fn build_segment(
        &self,
        seg_id: u32,
        rows: Rows,
        schema: &PayloadSchema,
        job: super::JobKind,
    ) -> Result<Option<IvfSeg>, Rows> {
        let n = rows.len();
        let started = Instant::now();
        let Some(index) = self.build_index(&rows) else {
            return Err(rows);
        };
        let trained = started.elapsed();
        let Some(seg) = IvfSeg::new(index, rows.points, rows.payloads) else {
            return Ok(None);
        };
        let seg = self.calibrated(seg);
        let calibrated = started.elapsed();
        payload_ops::index_ivf(&seg, schema);
        let indexed = started.elapsed();
        let seg = self.persist(seg_id, seg);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            segment = seg_id,
            rows = n,
            job = job.name(),
            train_encode_ms = ms(trained),
            calibrate_ms = ms(calibrated - trained),
            payload_index_ms = ms(indexed - calibrated),
            write_ms = ms(started.elapsed() - indexed),
            "segment built"
        );
        Ok(Some(seg))
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
        if let Some(cal) = &seg.calibration {
            log_calibration(&seg.index, cal);
        }
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

/// Takes `seg_id`'s entry out of the queue of `(segment, rows)` whose builds wait on the pool,
/// with the entries after and before it, oldest first, while their rows stay within `cap` (0:
/// only `seg_id`). Empty when `seg_id` is no longer queued (an earlier job took it).
pub(super) fn claim_queued(queued: &mut Vec<(u32, usize)>, seg_id: u32, cap: usize) -> Vec<u32> {
    let Some(at) = queued.iter().position(|(id, _)| *id == seg_id) else {
        return Vec::new();
    };
    let (_, mut rows) = queued.remove(at);
    let mut taken = vec![seg_id];
    queued.retain(|&(id, r)| {
        if cap > 0 && rows.saturating_add(r) <= cap {
            rows += r;
            taken.push(id);
            false
        } else {
            true
        }
    });
    taken
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs (at debug) what a segment's calibration chose at the default target and the factor its
/// filtered searches widen `nprobe` by at each measured share: what decides a filtered plan's
/// lists, read without a server (`SHOAL_LOG_LEVEL=shoal::shard::build=debug`).
fn log_calibration(index: &IvfPqIndex, cal: &calibrate::Calibration) {
    // The widenings are worked out (and remembered by the calibration) only for the log.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let target = calibrate::DEFAULT_RECALL_TARGET;
    let Some(chosen) = cal.choose(target, None, None) else {
        return;
    };
    let widenings: Vec<String> = cal
        .filtered
        .iter()
        .map(|f| match cal.widening(f.share, target, chosen.rerank) {
            Some(w) => format!("{}: x{w:.2}", f.share),
            None => format!("{}: -", f.share),
        })
        .collect();
    tracing::debug!(
        rows = index.len(),
        nlist = index.nlist(),
        nprobe = chosen.nprobe,
        rerank = chosen.rerank,
        recall = chosen.recall,
        widenings = widenings.join(", "),
        "segment calibrated"
    );
}
