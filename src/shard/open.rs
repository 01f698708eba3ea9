//! Making a shard: empty in memory, empty over a data directory (whose stale segment files are
//! swept), or around a restored [`State`] ([`super::snapshot`] restores through
//! `with_state`); and the fixed facts of an open shard (its shape, its directory).

#[cfg(test)]
use super::Hooks;
use super::build::Jobs;
use super::{Inner, Shard, ShardConfig, ShardError, State, seal, snapshot};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, RwLock};

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

    pub(super) fn with_state(
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
                job_log: super::optimizations::JobLog::default(),
                building: AtomicUsize::new(0),
                queued_builds: Default::default(),
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
}
