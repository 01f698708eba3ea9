//! What the shard's background maintenance is doing, has queued and has done (Qdrant's
//! `get_optimizations`): index builds of sealed segments and merges (compactions) run as jobs
//! on the build pool; each is recorded here from its start to its end with the segments it
//! takes, and the last [`COMPLETED_KEPT`] finished ones are kept. The queue is the merge the
//! policy would start next ([`super::compaction::pick`]); idle segments are the sealed
//! segments no job holds or would take.

use super::{Shard, read};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

/// Finished jobs kept per shard.
pub const COMPLETED_KEPT: usize = 64;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Trains and writes the IVF-PQ index of one sealed segment (it keeps its id).
    IndexBuild,
    /// Merges segments into a new one, dropping deleted rows.
    Merge,
}

impl JobKind {
    /// The name Qdrant's `optimizer` field shows.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::IndexBuild => "index_build",
            JobKind::Merge => "merge",
        }
    }
}

/// One background job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// What it does.
    pub kind: JobKind,
    /// The segment it produces (an index build: the segment it indexes).
    pub output: u32,
    /// The segments it takes, each with its live points when the job started.
    pub sources: Vec<(u32, usize)>,
    /// Rows it reads.
    pub rows: usize,
    /// When it started.
    pub started: SystemTime,
    /// When it finished (finished jobs only).
    pub finished: Option<SystemTime>,
}

/// The running and recently finished jobs of one shard.
#[derive(Debug, Default)]
pub(super) struct JobLog {
    running: Mutex<BTreeMap<u32, JobRecord>>,
    completed: Mutex<VecDeque<JobRecord>>,
}

impl JobLog {
    pub(super) fn started(
        &self,
        kind: JobKind,
        output: u32,
        sources: Vec<(u32, usize)>,
        rows: usize,
    ) {
        let rec = JobRecord {
            kind,
            output,
            sources,
            rows,
            started: SystemTime::now(),
            finished: None,
        };
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(output, rec);
    }

    pub(super) fn finished(&self, output: u32) {
        let rec = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&output);
        if let Some(mut rec) = rec {
            rec.finished = Some(SystemTime::now());
            let mut done = self.completed.lock().unwrap_or_else(|e| e.into_inner());
            if done.len() == COMPLETED_KEPT {
                done.pop_front();
            }
            done.push_back(rec);
        }
    }
}

/// A shard's maintenance now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Optimizations {
    /// Jobs running, oldest first.
    pub running: Vec<JobRecord>,
    /// The merge the policy would start next: its segments with their live points.
    pub queued: Vec<Vec<(u32, usize)>>,
    /// Sealed segments no job holds or would take, with their live points.
    pub idle: Vec<(u32, usize)>,
    /// Finished jobs, most recent first (at most [`COMPLETED_KEPT`]).
    pub completed: Vec<JobRecord>,
}

impl Shard {
    /// The shard's running, queued and finished maintenance jobs and its idle segments.
    pub fn optimizations(&self) -> Optimizations {
        let mut running: Vec<JobRecord> = self
            .inner
            .job_log
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        running.sort_by_key(|r| (r.started, r.output));
        let completed = self
            .inner
            .job_log
            .completed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        let state = read(&self.inner.state);
        let next = self
            .next_merge(&state.segments, self.at_rest())
            .unwrap_or_default();
        let live = |id: u32| state.segment(id).map_or(0, |s| s.live_count);
        let queued = if next.is_empty() {
            Vec::new()
        } else {
            vec![next.iter().map(|id| (*id, live(*id))).collect()]
        };
        // Sealed segments: every one but the mutable segment, last.
        let sealed = &state.segments[..state.segments.len().saturating_sub(1)];
        let idle = sealed
            .iter()
            .filter(|s| !s.busy && !next.contains(&s.id))
            .map(|s| (s.id, s.live_count))
            .collect();
        Optimizations {
            running,
            queued,
            idle,
            completed,
        }
    }
}
