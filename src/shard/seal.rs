//! When the mutable segment is sealed: at `seal_threshold` rows (during `apply`), and when it has
//! been idle for `compaction.idle_seal_ms` (on the process's idle timer).
//!
//! ## Idle sealing is local to each replica, and that is safe
//! Sealing at the threshold happens inside `apply`, at the same log index on every replica. An
//! idle seal cannot: "idle" is wall-clock time, which replicas do not share (a follower applies
//! the same entries later, a restarted one replays them in a burst). So an idle seal is a purely
//! **physical** change, made by each replica on its own, like merges and index builds already are
//! (they finish at different times on different replicas and rename segments locally). What
//! Raft replicates, and what every replica must agree on, is the **logical** state: which points
//! exist, their vectors, payloads and versions, and the applied index. Sealing changes none of
//! it: the rows keep their numbers and their tombstones; only where a row lives and how it is
//! searched changes. Replicas may therefore hold different segment layouts, as they already
//! could, and approximate answers may differ between replicas the way they already could while
//! one of them is still building an index. A snapshot records the layout of the replica that
//! takes it, and a replica that installs it continues from that layout; a restart replays the log
//! tail into a fresh mutable segment, which seals again at the threshold or when idle.
//!
//! ## What is worth sealing
//! A tail of at most [`EXACT_SCAN_ROWS`] rows is not sealed when idle: a sealed segment that small
//! is scanned exactly by every search anyway (see `search_ivf`), so an index would cost a build
//! and save nothing. `seal_threshold` itself must be 0 (never) or at least
//! [`MIN_SEAL_THRESHOLD`]: below it a seal per handful of points costs a build each and, before
//! merges existed, left thousands of segments (issue 14, finding 9).

use super::{EXACT_SCAN_ROWS, Shard, ShardConfig, ShardError, State, build_pool};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Smallest accepted non-zero `seal_threshold`.
pub const MIN_SEAL_THRESHOLD: usize = 64;

/// Default `compaction.idle_seal_ms`: a few seconds without writes seals the tail.
pub const DEFAULT_IDLE_SEAL_MS: u64 = 3_000;

/// Milliseconds since the first call in this process (a monotonic clock for idle times).
pub(super) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl ShardConfig {
    /// Refuses a shape the shard cannot run well: a `seal_threshold` between 1 and
    /// [`MIN_SEAL_THRESHOLD`] − 1. Whoever creates a collection calls this; a shard opened from
    /// a configuration persisted before the minimum existed is not refused (old data must open)
    /// and seals at [`ShardConfig::effective_seal_threshold`] instead.
    pub fn validate(&self) -> Result<(), ShardError> {
        if self.seal_threshold > 0 && self.seal_threshold < MIN_SEAL_THRESHOLD {
            return Err(ShardError::Config(format!(
                "seal_threshold = {} is below the minimum {MIN_SEAL_THRESHOLD} (0 = never seal)",
                self.seal_threshold
            )));
        }
        Ok(())
    }

    /// The threshold the shard seals at: `seal_threshold`, raised to [`MIN_SEAL_THRESHOLD`] for a
    /// configuration persisted before the minimum existed (so old data still opens).
    pub fn effective_seal_threshold(&self) -> usize {
        match self.seal_threshold {
            0 => 0,
            t => t.max(MIN_SEAL_THRESHOLD),
        }
    }
}

impl Shard {
    /// Freezes the mutable segment once it is full and starts its index build.
    pub(super) fn maybe_seal(&self, state: &mut State) {
        let threshold = self.inner.config.effective_seal_threshold();
        let full = state
            .segments
            .last()
            .is_some_and(|s| threshold > 0 && s.rows >= threshold);
        if full {
            self.seal(state);
        }
    }

    /// Freezes the mutable segment (whatever its size), opens a fresh one and starts the frozen
    /// one's index build.
    fn seal(&self, state: &mut State) {
        let id = state.next_segment;
        state.next_segment += 1;
        state.segments.push(super::empty_segment(id));
        let frozen_id = state.segments[state.segments.len() - 2].id;
        self.start_build(state, frozen_id);
    }

    /// Records that the mutable segment was just written to (its idle time starts again).
    pub(super) fn touch(&self) {
        self.inner.last_write_ms.store(now_ms(), Ordering::SeqCst);
    }

    /// Whether no write reached the shard for `compaction.idle_seal_ms` (never, with idle
    /// sealing off): the merges at rest of [`super::merge_policy`] may then run.
    pub(super) fn at_rest(&self) -> bool {
        let idle_ms = self.inner.config.compaction.idle_seal_ms;
        idle_ms > 0
            && now_ms().saturating_sub(self.inner.last_write_ms.load(Ordering::SeqCst)) >= idle_ms
    }

    /// Seals the mutable segment if no write reached it for `compaction.idle_seal_ms` and it holds
    /// more than [`EXACT_SCAN_ROWS`] rows; otherwise, at rest, starts a merge at rest if the
    /// policy has one. Returns whether it sealed. Called by the idle timer; tests call it
    /// directly.
    pub fn seal_if_idle(&self) -> bool {
        if !self.at_rest() {
            return false;
        }
        let worth = |state: &State| {
            state
                .segments
                .last()
                .is_some_and(|s| s.rows > EXACT_SCAN_ROWS)
        };
        if !worth(&super::read(&self.inner.state)) {
            self.merge_at_rest();
            return false;
        }
        let mut state = super::write(&self.inner.state);
        // A write may have landed between the checks.
        if !worth(&state) || !self.at_rest() {
            return false;
        }
        self.seal(&mut state);
        true
    }

    /// Starts the merge at rest the policy finds, if no compaction runs: looked for under the
    /// read lock on every tick of the idle timer, so the write lock is taken only when there is
    /// one to start.
    fn merge_at_rest(&self) {
        if self.inner.compacting.load(Ordering::SeqCst) > 0 {
            return;
        }
        let wanted = self
            .next_merge(&super::read(&self.inner.state).segments, true)
            .is_some();
        if wanted {
            self.maybe_compact(&mut super::write(&self.inner.state));
        }
    }

    /// Puts the shard on the idle timer when it seals in the background and idle sealing is on.
    /// The timer holds the shard weakly: it forgets a dropped shard at its next tick.
    pub(super) fn watch_idle(&self) {
        if !self.inner.background || self.inner.config.compaction.idle_seal_ms == 0 {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        build_pool::watch(move || match weak.upgrade() {
            Some(inner) => {
                Shard { inner }.seal_if_idle();
                true
            }
            None => false,
        });
    }
}
